"""BERT's fine-tuning heads, span decoding and the soft-F1 loss: against F.linear / F.cross_entropy, a brute-force
search over spans, scikit-learn's macro F1, and hand cases."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from deepnotes.nn.bert_heads import (IGNORE_INDEX, PairClassificationHead, SequenceClassificationHead,
                                     SpanExtractionHead, TokenClassificationHead, align_word_labels, best_span,
                                     soft_f1_loss, span_loss)


def test_classification_heads_are_linear_maps_in_eval():
    torch.manual_seed(0)
    pooled, hidden = torch.randn(4, 8), torch.randn(4, 5, 8)
    for head in (SequenceClassificationHead(8, 3), PairClassificationHead(8, 3)):
        head.eval()
        ref = F.linear(pooled, head.classifier.weight, head.classifier.bias)
        torch.testing.assert_close(head(pooled), ref)
    tok = TokenClassificationHead(8, 7).eval()
    torch.testing.assert_close(tok(hidden), hidden @ tok.classifier.weight.T + tok.classifier.bias)
    assert tok(hidden).shape == (4, 5, 7)
    head = SequenceClassificationHead(8, 3, dropout=0.5).train()
    assert not torch.equal(head(pooled), head(pooled))  # dropout is active in training
    with pytest.raises(ValueError, match="num_labels"):
        SequenceClassificationHead(8, 1)


def test_align_word_labels_first_piece_only():
    assert align_word_labels([None, 0, 1, 1, 2, None], [0, 3, 1]) == [-100, 0, 3, -100, 1, -100]
    assert align_word_labels([None, 0, 0, 0, None, None], [5]) == [-100, 5, -100, -100, -100, -100]
    with pytest.raises(ValueError, match="word id 2"):
        align_word_labels([0, 2], [1, 1])


def test_span_head_and_loss():
    torch.manual_seed(0)
    head = SpanExtractionHead(6)
    h = torch.randn(2, 5, 6)
    s, e = head(h)
    z = h @ head.qa_outputs.weight.T + head.qa_outputs.bias
    torch.testing.assert_close(s, z[..., 0])
    torch.testing.assert_close(e, z[..., 1])
    start, end = torch.tensor([1, 0]), torch.tensor([3, 0])
    ref = (-F.log_softmax(s, 1)[torch.arange(2), start] - F.log_softmax(e, 1)[torch.arange(2), end]).mean() / 2
    torch.testing.assert_close(span_loss(s, e, start, end), ref)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    ref = (F.cross_entropy(s[0:1, :4], start[:1]) + F.cross_entropy(e[0:1, :4], end[:1])
           + F.cross_entropy(s[1:, :3], start[1:]) + F.cross_entropy(e[1:, :3], end[1:])) / 4
    torch.testing.assert_close(span_loss(s, e, start, end, mask), ref)  # padding left out of the softmax
    with pytest.raises(ValueError, match="end_positions"):
        span_loss(s, e, start, torch.tensor([0, 5]))


def test_best_span_hand_cases():
    ctx = torch.tensor([[False, True, True, True, True, False]])  # [CLS] c c c c [SEP]
    # argmax start (4) is after argmax end (2): the constrained best is not the pair of argmaxes
    s = torch.tensor([[9.0, 1.0, 0.0, 0.0, 5.0, 0.0]])
    e = torch.tensor([[9.0, 0.0, 4.0, 0.0, 0.0, 9.0]])
    sp = best_span(s, e, ctx, max_answer_length=10)
    assert (sp.start.item(), sp.end.item()) == (1, 2) and sp.score.item() == 5.0  # 1+4 beats 5+0 (4, 4)
    sp = best_span(s, e, ctx, max_answer_length=1)  # one token only: (4, 4) 5+0 beats (2, 2) 0+4
    assert (sp.start.item(), sp.end.item()) == (4, 4)
    none = best_span(s, e, torch.zeros_like(ctx), max_answer_length=3)  # no context: no span
    assert none.score.item() == float("-inf") and (none.start.item(), none.end.item()) == (0, 0)
    with pytest.raises(ValueError, match="max_answer_length"):
        best_span(s, e, ctx, 0)


def test_best_span_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    s, e = torch.randn(20, 9, generator=g), torch.randn(20, 9, generator=g)
    ctx = torch.rand(20, 9, generator=g) > 0.3
    sp = best_span(s, e, ctx, max_answer_length=3)
    for b in range(20):
        cands = [(float(s[b, i] + e[b, j]), i, j) for i, j in itertools.product(range(9), range(9))
                 if i <= j < i + 3 and ctx[b, i] and ctx[b, j]]
        if not cands:
            assert sp.score[b] == float("-inf")
            continue
        score, i, j = max(cands)
        assert (sp.start[b].item(), sp.end[b].item()) == (i, j) and sp.score[b].item() == pytest.approx(score)


def test_soft_f1_equals_one_minus_macro_f1_on_hard_predictions():
    g = torch.Generator().manual_seed(0)
    for K in (2, 4):
        y = torch.randint(0, K, (40,), generator=g)
        pred = torch.randint(0, K, (40,), generator=g)
        logits = 100.0 * F.one_hot(pred, K).float()  # softmax is one-hot to float precision
        ref = f1_score(y.numpy(), pred.numpy(), average="macro", labels=list(range(K)), zero_division=0)
        assert soft_f1_loss(logits, y).item() == pytest.approx(1 - ref, abs=1e-6)
    # a class nobody predicts nor holds counts as F1 = 0 (labels=range(K), zero_division=0)
    y, pred = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1])
    ref = f1_score(y.numpy(), pred.numpy(), average="macro", labels=[0, 1, 2], zero_division=0)
    assert soft_f1_loss(100.0 * F.one_hot(pred, 3).float(), y).item() == pytest.approx(1 - ref, abs=1e-6)
    # -100 targets are left out
    y2 = torch.tensor([0, 0, 1, IGNORE_INDEX])
    logits2 = 100.0 * F.one_hot(torch.tensor([0, 1, 1, 0]), 3).float()
    assert soft_f1_loss(logits2, y2).item() == pytest.approx(1 - ref, abs=1e-6)


def test_soft_f1_gradients_flow_and_descend():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 3, generator=g, requires_grad=True)
    y = torch.randint(0, 3, (30,), generator=g)
    loss = soft_f1_loss(logits, y)
    loss.backward()
    assert 0 < loss.item() < 1 and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with torch.no_grad():  # a small step against the gradient lowers the loss
        assert soft_f1_loss(logits - 0.5 * logits.grad, y) < loss
    # gradient check against finite differences, in float64 through the float path's formula
    torch.autograd.gradcheck(lambda z: soft_f1_loss(z, y[:6]), (torch.randn(6, 3, dtype=torch.float64,
                                                                                 requires_grad=True),),
                             eps=1e-6, atol=1e-3)
    with pytest.raises(ValueError, match="targets"):
        soft_f1_loss(logits, torch.full((30,), 3))
