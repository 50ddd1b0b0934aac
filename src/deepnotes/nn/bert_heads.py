"""The four fine-tuning heads of the BERT lecture, span decoding, and a differentiable soft-F1 loss.

Sources: ML2021 "Self-supervised learning" (BERT slides, digested in seed 004), the four ways to use BERT:

* case 1, sequence -> class (sentiment analysis): a linear classifier on the [CLS] output
  (:class:`SequenceClassificationHead`, over BERT's tanh pooler as Devlin et al. 2019 §4.1 and Hugging Face's
  ``BertForSequenceClassification``);
* case 2, sequence -> as many labels (POS tagging): one linear classifier on every token's output
  (:class:`TokenClassificationHead`); a word split into several word pieces is labelled on its first piece
  only, the other pieces get -100 and no loss (:func:`align_word_labels`; Devlin et al. 2019 §5.3, Hugging Face's
  token-classification recipe);
* case 3, two sequences -> class (NLI): the same classifier on ``[CLS] A [SEP] B [SEP]``
  (:class:`PairClassificationHead`);
* case 4, extraction-based QA (HW7): two vectors, "start" and "end", dotted with every context token's output
  and softmaxed over the positions; the answer is the span ``d_s .. d_e`` (:class:`SpanExtractionHead`,
  :func:`span_loss`, :func:`best_span`; Devlin et al. 2019 §4.2: the score of span (i, j) is ``S·T_i + E·T_j``,
  with j >= i, and the best one is the prediction).

Soft F1 (:func:`soft_f1_loss`): seed 004's "accuracy as a loss" (the Gumbel-softmax digest: the metric one cares
about, accuracy or F1, is not differentiable because of the argmax, so replace the hard prediction by the
probabilities and optimise a smooth version of the metric). With ``p_nk = softmax(z_n)_k`` and ``y_nk`` one-hot::

    TP_k = Σ_n p_nk y_nk,   FP_k = Σ_n p_nk (1 - y_nk),   FN_k = Σ_n (1 - p_nk) y_nk
    F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)          L = 1 - (1/K) Σ_k F1_k        (macro)

On one-hot (hard) predictions it is exactly ``1 - macro-F1``; with probabilities every term is differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["IGNORE_INDEX", "PairClassificationHead", "SequenceClassificationHead", "Span", "SpanExtractionHead",
           "TokenClassificationHead", "align_word_labels", "best_span", "soft_f1_loss", "span_loss"]

IGNORE_INDEX = -100  # a label that carries no loss (F.cross_entropy's default ignore_index)


class SequenceClassificationHead(nn.Module):
    """Case 1: ``logits = W Dropout(pooled) + b``, a linear classifier on BERT's pooled [CLS] output.

    Args:
        hidden_size: C.
        num_labels: K classes (>= 2).
        dropout: before the classifier (BERT's hidden_dropout_prob). Default 0.1.

    Shapes:
        pooled (B, C) -> logits (B, K).

    Raises:
        ValueError: hidden_size < 1, num_labels < 2, dropout outside [0, 1).
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        _check_sizes(hidden_size, num_labels, dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)  # BERT's initializer_range
        nn.init.zeros_(self.classifier.bias)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.classifier(self.dropout(pooled))


class PairClassificationHead(SequenceClassificationHead):
    """Case 3: the sequence classifier of case 1 on a pair's input ``[CLS] A [SEP] B [SEP]`` (segments 0 then 1).

    Nothing differs but the input: the tokenizer builds the pair (``tokenizer(a_list, b_list)``), BERT's
    self-attention lets every token of A see B, and the [CLS] output decides (e.g. "is B the sentence after A").

    Shapes:
        pooled (B, C) -> logits (B, K).
    """


class TokenClassificationHead(nn.Module):
    """Case 2: ``logits_t = W Dropout(h_t) + b`` for every token t.

    Args, Raises: as :class:`SequenceClassificationHead`.

    Shapes:
        hidden (B, T, C) -> logits (B, T, K).
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        _check_sizes(hidden_size, num_labels, dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.classifier(self.dropout(hidden))


def align_word_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Word labels -> word-piece labels: each word's label on its first piece, -100 on its other pieces and on
    special tokens (``None`` word ids: [CLS], [SEP], [PAD]).

    Args:
        word_ids: for each piece, the index of the word it comes from, or None (a special token); the pieces of
            one word are consecutive.
        word_labels: one label per word.

    Returns:
        One label per piece.

    Raises:
        ValueError: a word id outside ``word_labels``.

    Example::

        align_word_labels([None, 0, 1, 1, 2, None], [0, 3, 1]) == [-100, 0, 3, -100, 1, -100]
    """
    out, previous = [], None
    for w in word_ids:
        if w is None:
            out.append(IGNORE_INDEX)
        else:
            if not 0 <= w < len(word_labels):
                raise ValueError(f"word id {w} has no label (only {len(word_labels)} word labels)")
            out.append(word_labels[w] if w != previous else IGNORE_INDEX)
        previous = w
    return out


class SpanExtractionHead(nn.Module):
    """Case 4: start and end scores of every token, ``[s_t, e_t] = W h_t + b`` with W (2, C): the lecture's two
    vectors (orange "start", blue "end") dotted with each token's output.

    Args:
        hidden_size: C.

    Shapes:
        hidden (B, T, C) -> (start_logits (B, T), end_logits (B, T)).
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        _check_sizes(hidden_size, 2, 0.0)
        self.qa_outputs = nn.Linear(hidden_size, 2)
        nn.init.normal_(self.qa_outputs.weight, std=0.02)
        nn.init.zeros_(self.qa_outputs.bias)

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        start, end = self.qa_outputs(hidden).unbind(dim=-1)  # (B, T) each
        return start, end


def span_loss(start_logits: Tensor, end_logits: Tensor, start_positions: Tensor, end_positions: Tensor,
              attention_mask: Tensor | None = None) -> Tensor:
    """``(CE(softmax_t s_t, start) + CE(softmax_t e_t, end)) / 2``, Hugging Face's ``BertForQuestionAnswering`` loss.

    A window without the answer points both positions at [CLS] (index 0), as BERT does for SQuAD 2.0 and HW7's
    document stride. Padded positions (``attention_mask`` 0) are excluded from the softmax.

    Shapes:
        start_logits, end_logits (B, T); start_positions, end_positions (B,) int64 in [0, T);
        attention_mask (B, T) or None -> scalar.

    Raises:
        ValueError: shapes that do not agree, positions outside [0, T).
    """
    if start_logits.shape != end_logits.shape or start_logits.dim() != 2:
        raise ValueError(f"start_logits and end_logits must both be (B, T), got {tuple(start_logits.shape)} and "
                         f"{tuple(end_logits.shape)}")
    B, T = start_logits.shape
    for name, p in (("start_positions", start_positions), ("end_positions", end_positions)):
        if p.shape != (B,):
            raise ValueError(f"{name} must be ({B},), got {tuple(p.shape)}")
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= T):
            raise ValueError(f"{name} must be in [0, {T}), got {p.tolist()}")
    if attention_mask is not None:
        pad = ~attention_mask.bool()
        start_logits = start_logits.masked_fill(pad, float("-inf"))
        end_logits = end_logits.masked_fill(pad, float("-inf"))
    return (F.cross_entropy(start_logits, start_positions) + F.cross_entropy(end_logits, end_positions)) / 2


class Span(NamedTuple):
    """The best span of each row: ``start``, ``end`` (B,) token indices (end >= start) and its ``score``
    ``s_start + e_end`` (B,); -inf (and start = end = 0) where no span is allowed."""

    start: Tensor
    end: Tensor
    score: Tensor


def best_span(start_logits: Tensor, end_logits: Tensor, context_mask: Tensor, max_answer_length: int) -> Span:
    """The span (i, j) maximising ``s_i + e_j`` subject to ``i <= j < i + max_answer_length`` and both ends inside
    the context (Devlin et al. 2019 §4.2; HW7's postprocessing).

    Compared with taking argmax s and argmax e separately, this never returns an end before the start, an
    over-long span, or an end in the question or padding.

    Args:
        start_logits, end_logits: (B, T) scores.
        context_mask: (B, T) bool, True at the context's tokens (not the question, [CLS], [SEP] or padding).
        max_answer_length: the longest span in tokens (>= 1).

    Returns:
        :class:`Span` with (B,) start, end and score.

    Raises:
        ValueError: shapes that differ, max_answer_length < 1.
    """
    if not (start_logits.shape == end_logits.shape == context_mask.shape) or start_logits.dim() != 2:
        raise ValueError(f"start_logits, end_logits and context_mask must all be (B, T), got "
                         f"{tuple(start_logits.shape)}, {tuple(end_logits.shape)}, {tuple(context_mask.shape)}")
    if max_answer_length < 1:
        raise ValueError(f"max_answer_length must be >= 1, got {max_answer_length}")
    B, T = start_logits.shape
    i = torch.arange(T, device=start_logits.device)
    offset = i[None, :] - i[:, None]  # (T, T): j - i
    allowed = (offset >= 0) & (offset < max_answer_length)  # (T, T)
    ctx = context_mask.bool()
    allowed = allowed[None] & ctx[:, :, None] & ctx[:, None, :]  # (B, T, T): start i and end j in the context
    scores = (start_logits[:, :, None] + end_logits[:, None, :]).float().masked_fill(~allowed, float("-inf"))
    best, flat = scores.reshape(B, T * T).max(dim=1)  # (B,)
    start, end = flat // T, flat % T
    none = torch.isinf(best) & (best < 0)
    return Span(start.masked_fill(none, 0), end.masked_fill(none, 0), best)


def soft_f1_loss(logits: Tensor, targets: Tensor, eps: float = 1e-8) -> Tensor:
    """Macro soft-F1 loss ``1 - (1/K) Σ_k 2TP_k / (2TP_k + FP_k + FN_k)`` from the softmax probabilities.

    See the module docstring. A class with neither targets nor probability mass in the batch has F1_k = 0 (the
    scikit-learn convention ``zero_division=0`` with ``labels=range(K)``); it adds a constant, not a gradient.
    Targets equal to -100 are left out.

    Args:
        logits: (N, K) scores.
        targets: (N,) class indices in [0, K) or -100.
        eps: added to each denominator. Default 1e-8.

    Returns:
        Scalar in [0, 1].

    Raises:
        ValueError: logits not (N, K) with K >= 2, targets not (N,), a target outside [0, K).
    """
    if logits.dim() != 2 or logits.shape[1] < 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"need logits (N, K >= 2) and targets (N,), got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    keep = targets != IGNORE_INDEX
    logits, targets = logits[keep], targets[keep]
    K = logits.shape[1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= K):
        raise ValueError(f"targets must be in [0, {K}) or -100, got {sorted(set(targets.tolist()))}")
    p = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=1)  # (N, K)
    y = F.one_hot(targets, K).to(p.dtype)  # (N, K)
    tp = (p * y).sum(0)  # (K,)
    fp = (p * (1 - y)).sum(0)
    fn = ((1 - p) * y).sum(0)
    f1 = 2 * tp / (2 * tp + fp + fn + eps)  # (K,)
    return 1 - f1.mean()


def _check_sizes(hidden_size: int, num_labels: int, dropout: float) -> None:
    if hidden_size < 1:
        raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
    if num_labels < 2:
        raise ValueError(f"num_labels must be >= 2, got {num_labels}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
