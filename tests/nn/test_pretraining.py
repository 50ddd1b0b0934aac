"""BERT's pre-training objectives (masked LM, next-sentence prediction) on hand cases and large-batch statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.nn.pretraining import IGNORE_INDEX, MLMHead, NSPHead, mask_tokens, mlm_loss, nsp_loss, nsp_pairs

PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
SPECIAL = (PAD, UNK, CLS, SEP, MASK)
V = 1000


def _batch(B: int = 2048, T: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] w... [SEP] [PAD]... with random lengths; words drawn from [200, V) so no special id occurs by chance."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(200, V, (B, T), generator=g)
    lengths = torch.randint(3, T + 1, (B,), generator=g)  # tokens incl. [CLS], [SEP]
    pos = torch.arange(T)[None, :]
    ids[:, 0] = CLS
    ids[pos == (lengths[:, None] - 1)] = SEP
    attention = (pos < lengths[:, None]).long()
    ids[attention == 0] = PAD
    return ids, attention


def test_masking_chooses_exactly_15_percent_of_eligible_tokens_and_never_specials_or_pads():
    ids, attention = _batch()
    corrupted, labels = mask_tokens(ids, MASK, V, special_ids=SPECIAL, attention_mask=attention,
                                    generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE_INDEX
    eligible = (attention == 1) & (ids != CLS) & (ids != SEP)
    assert not (chosen & ~eligible).any()  # exactly zero on [CLS], [SEP], [PAD]
    n = eligible.sum(1)
    expected = torch.tensor([max(1, round(0.15 * int(k))) for k in n])  # the reference code's count
    assert torch.equal(chosen.sum(1), expected)
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(corrupted[~chosen], ids[~chosen])  # nothing else is touched

    c, o = corrupted[chosen], ids[chosen]
    total = c.numel()
    assert total > 6000
    masked = (c == MASK).float().mean().item()
    kept = (c == o).float().mean().item()
    rand = ((c != MASK) & (c != o)).float().mean().item()
    # 80/10/10 (+ a random draw equal to [MASK] or to the original, each 0.1/V); std of a share <= 0.005 here
    assert masked == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1, abs=0.02)
    assert rand == pytest.approx(0.1, abs=0.02)
    # the random replacements spread over the vocabulary, specials included (uniform on [0, V))
    r = c[(c != MASK) & (c != o)]
    assert r.min() < 200 and r.max() >= 800


def test_masking_picks_positions_uniformly():
    ids = torch.randint(200, V, (4000, 20), generator=torch.Generator().manual_seed(0))
    _, labels = mask_tokens(ids, MASK, V, generator=torch.Generator().manual_seed(2))
    freq = (labels != IGNORE_INDEX).float().mean(0)  # (T,) each position: 3 of 20 chosen -> 0.15
    assert torch.allclose(freq, torch.full((20,), 0.15), atol=0.02)


def test_masking_hand_cases():
    ids = torch.tensor([[CLS, 7, 8, 9, SEP, PAD], [CLS, SEP, PAD, PAD, PAD, PAD]])
    attention = (ids != PAD).long()
    corrupted, labels = mask_tokens(ids, MASK, V, special_ids=SPECIAL, attention_mask=attention, probability=1.0,
                                    mask_ratio=1.0, random_ratio=0.0)
    assert corrupted.tolist() == [[CLS, MASK, MASK, MASK, SEP, PAD], [CLS, SEP, PAD, PAD, PAD, PAD]]
    assert labels.tolist() == [[-100, 7, 8, 9, -100, -100], [-100] * 6]  # a row with nothing eligible: no label
    # kept: the chosen tokens stay, but still carry labels
    corrupted, labels = mask_tokens(ids, MASK, V, special_ids=SPECIAL, attention_mask=attention, probability=1.0,
                                    mask_ratio=0.0, random_ratio=0.0)
    assert torch.equal(corrupted, ids) and labels[0, 1:4].tolist() == [7, 8, 9]
    # at least one prediction per sequence even when 15% rounds to 0, and the cap
    short = torch.tensor([[CLS, 7, 8, SEP]])
    _, labels = mask_tokens(short, MASK, V, special_ids=SPECIAL)
    assert (labels != IGNORE_INDEX).sum() == 1
    _, labels = mask_tokens(torch.randint(200, V, (3, 100)), MASK, V, max_predictions=5)
    assert (labels != IGNORE_INDEX).sum(1).tolist() == [5, 5, 5]


def test_masking_is_reproducible_through_the_generator():
    ids, attention = _batch(B=8)
    a = mask_tokens(ids, MASK, V, SPECIAL, attention, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, MASK, V, SPECIAL, attention, generator=torch.Generator().manual_seed(5))
    c = mask_tokens(ids, MASK, V, SPECIAL, attention, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(probability=0.0), "probability"), (dict(mask_ratio=0.9, random_ratio=0.2), "mask_ratio"),
    (dict(vocab_size=50), "mask_token_id"), (dict(max_predictions=0), "max_predictions"),
])
def test_masking_rejects_bad_arguments(kwargs, match):
    args = dict(mask_token_id=MASK, vocab_size=V) | kwargs
    with pytest.raises(ValueError, match=match):
        mask_tokens(torch.zeros(2, 3, dtype=torch.long), **args)
    with pytest.raises(ValueError, match="input_ids"):
        mask_tokens(torch.zeros(2, 3), MASK, V)
    with pytest.raises(ValueError, match="attention_mask"):
        mask_tokens(torch.zeros(2, 3, dtype=torch.long), MASK, V, attention_mask=torch.ones(2, 4))


def test_mlm_loss_is_cross_entropy_over_chosen_positions_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, requires_grad=True)
    labels = torch.full((3, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 4], labels[2, 0] = 3, 10, 0
    loss = mlm_loss(logits, labels)
    ref = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, ref)
    # by hand: the mean of -log softmax at the three chosen positions
    hand = -sum(math.log(torch.softmax(logits[i, t], 0)[y].item()) for i, t, y in ((0, 1, 3), (1, 4, 10), (2, 0, 0)))
    assert loss.item() == pytest.approx(hand / 3, rel=1e-6)
    # a change at an unchosen position's logits changes nothing, and gets no gradient
    other = logits.detach().clone()
    other[0, 0] += 100.0
    other[2, 3] = -50.0
    assert mlm_loss(other, labels).item() == loss.item()
    loss.backward()
    assert logits.grad[labels == IGNORE_INDEX].abs().sum() == 0
    assert logits.grad[labels != IGNORE_INDEX].abs().sum() > 0
    # no chosen position: zero, still differentiable
    zero = mlm_loss(logits, torch.full((3, 5), IGNORE_INDEX))
    assert zero.item() == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match="logits"):
        mlm_loss(logits, labels[:, :4])


def test_mlm_head_is_bert_formula_with_decoder_tied_to_embeddings():
    torch.manual_seed(0)
    emb = nn.Embedding(17, 8)
    head = MLMHead(8, emb, eps=1e-12)
    with torch.no_grad():
        head.norm.weight.normal_(), head.norm.bias.normal_(), head.decoder.bias.normal_()
    assert head.decoder.weight is emb.weight  # one tensor, not a copy
    assert head.decoder.weight.data_ptr() == emb.weight.data_ptr()
    h = torch.randn(2, 3, 8)
    t = F.layer_norm(F.gelu(h @ head.transform.weight.T + head.transform.bias), (8,), head.norm.weight,
                     head.norm.bias, eps=1e-12)
    torch.testing.assert_close(head(h), t @ emb.weight.T + head.decoder.bias)
    # gradients of the input embedding and of the decoder add up in the one Parameter
    ids = torch.tensor([[1, 2, 3]])
    head(emb(ids)).sum().backward()
    assert emb.weight.grad[5].abs().sum() > 0  # row 5 is used only by the decoder
    assert sum(p.numel() for p in head.parameters()) == 8 * 8 + 8 + 8 + 8 + 17 * 8 + 17
    with pytest.raises(ValueError, match="width"):
        MLMHead(4, emb)
    with pytest.raises(ValueError, match="activation"):
        MLMHead(8, emb, activation="swish")


def test_nsp_pairs_are_true_next_or_from_another_document():
    docs = [[f"d{d}s{i}" for i in range(20)] for d in range(30)]
    pairs = nsp_pairs(docs, generator=torch.Generator().manual_seed(0))
    assert len(pairs) == 30 * 19
    for a, b, label in pairs:
        da, ia = a[1:].split("s")
        db, ib = b[1:].split("s")
        if label == 0:
            assert (db, int(ib)) == (da, int(ia) + 1)
        else:
            assert db != da
    share = sum(label == 0 for _, _, label in pairs) / len(pairs)
    assert share == pytest.approx(0.5, abs=0.06)  # 570 pairs: std 0.021
    # random Bs spread over the other documents
    assert len({b[1:].split("s")[0] for _, b, label in pairs if label == 1}) == 30
    again = nsp_pairs(docs, generator=torch.Generator().manual_seed(0))
    assert again == pairs


def test_nsp_pairs_single_document_and_errors():
    doc = [list(range(i, i + 3)) for i in range(10)]  # any sentence type (here id lists)
    pairs = nsp_pairs([doc], probability_next=0.0, generator=torch.Generator().manual_seed(1))
    assert all(label == 1 and b != doc[doc.index(a) + 1] for a, b, label in pairs)
    assert all(label == 0 for *_, label in nsp_pairs([doc], probability_next=1.0))
    with pytest.raises(ValueError, match="probability_next"):
        nsp_pairs([doc], probability_next=1.5)
    with pytest.raises(ValueError, match="another document"):
        nsp_pairs([["a", "b"], []], probability_next=0.0)


def test_nsp_head_and_loss():
    torch.manual_seed(0)
    head = NSPHead(6)
    pooled = torch.randn(4, 6)
    logits = head(pooled)
    torch.testing.assert_close(logits, pooled @ head.classifier.weight.T + head.classifier.bias)
    y = torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(nsp_loss(logits, y), F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        nsp_loss(torch.randn(4, 3), y)
