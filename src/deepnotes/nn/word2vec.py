r"""Word2vec CBOW with negative sampling, written from the equations.

Source: EE-559 (Fleuret) lecture 12-3 "Word embeddings and translation". A word ``k`` has an input
embedding ``E_k`` and an output embedding ``M_k`` (``E, M`` in R^{W x D}, W the vocabulary size).
The Continuous Bag of Words (CBOW) model predicts the word ``k_t`` at position t from the average of
the input embeddings of its 2C neighbours::

    h_t    = 1/(2C) sum_{0 < |c| <= C} E_{k_{t+c}}          (the context average, D values)
    psi(t) = M h_t                                           (one score per vocabulary word, W values)

The softmax cross-entropy ``-log softmax(psi(t))_{k_t}`` costs O(W) per word, so the lecture replaces
it by *negative sampling*: the true word against Q words ``lambda_{t,1..Q}`` drawn from a noise
distribution, each a binary logistic problem::

    loss_t = log(1 + exp(-psi(t)_{k_t})) + sum_q log(1 + exp(psi(t)_{lambda_{t,q}}))
           = -log sigma(M_{k_t} . h_t) - sum_q log sigma(-M_{lambda_{t,q}} . h_t)

which is the binary cross-entropy with label 1 for the true word and 0 for the noise words.

From the papers (Mikolov et al. 2013, "Efficient Estimation of Word Representations in Vector
Space" for CBOW; "Distributed Representations of Words and Phrases and their Compositionality" for
negative sampling): the noise distribution is the unigram distribution raised to the power 3/4
(:func:`noise_distribution`), and frequent words are randomly discarded before the windows are
built (:func:`subsample_keep_prob`).

Deliberate differences from the lecture/papers:

* Near the ends of a sequence (a verse, for the KJV lab) fewer than 2C neighbours exist; the
  average is over the neighbours that do (``context_mask``), as in the reference C code.
* :func:`cbow_windows` always takes C words on each side; the C code shrinks the window to a random size
  per position, which weights near neighbours more (:class:`deepnotes.data.text.CBOWBatches` ``shrink=True``
  does, and the lab by default).
* The noise words are not filtered: a draw may equal the true word (the C code skips such a draw;
  here it stays, which is rare with thousands of words and only adds a little noise to the loss).
* Initialisation follows the C code: ``E ~ U(-0.5/D, 0.5/D)``, ``M = 0``; the loss of the untrained
  model is therefore exactly ``(1 + Q) log 2``.

Two update paths. The readable one: :class:`CBOW`'s forward pass, autograd and an optimizer (Adam). The fast
one, word2vec's own (:func:`cbow_sgd_step`): the gradient written out in closed form and plain SGD applied
only to the rows of ``E`` and ``M`` a batch touched, the learning rate decaying linearly as in the C code
(:func:`word2vec_lr`); :func:`cbow_loss` is its forward pass alone. Noise words are drawn with Walker's alias
method (:func:`alias_table`, :func:`sample_alias`), O(1) per draw, instead of ``torch.multinomial``, and may be
shared by a group of examples (``group``; Ji et al. 2016). With the C code's update of the context words (the
error vector added to each of them undivided, ``context_update="word2vec"``) and its random window
(:class:`deepnotes.data.text.CBOWBatches` ``shrink=True``) this is what the word2vec lab runs by default.
Tested equal: :func:`cbow_loss` to :class:`CBOW`'s loss, and :func:`cbow_sgd_step` with
``context_update="gradient"`` to ``torch.optim.SGD`` on :class:`CBOW`'s summed loss through autograd.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.losses import Reduction, reduce_loss
from deepnotes.train.task import Step, StepOutput, Task

__all__ = ["CBOW", "NegativeSamplingTask", "alias_table", "analogy", "cbow_hogwild_steps", "cbow_loss",
           "cbow_sgd_step", "cbow_windows", "cosine_neighbours", "negative_sampling_loss", "noise_distribution",
           "sample_alias", "sample_negatives", "subsample_keep_prob", "word2vec_lr"]

ContextUpdate = Literal["word2vec", "gradient"]

# ----------------------------------------------------------------------------------- distributions
def noise_distribution(counts: Tensor, power: float = 0.75) -> Tensor:
    r"""The negative-sampling noise distribution ``P_n(w) = count(w)^power / sum_v count(v)^power``.

    Args:
        counts: (W,) non-negative word counts (any real or integer dtype).
        power: exponent; 0.75 (default, Mikolov et al. 2013) flattens the unigram distribution so rare
            words are drawn more often than their frequency; 1 is the unigram, 0 the uniform distribution.

    Returns:
        (W,) float64 probabilities summing to 1.

    Raises:
        ValueError: counts not 1-D, negative or all zero; power negative.

    Example::

        noise_distribution(torch.tensor([16, 1, 0]))  # tensor([0.8889, 0.1111, 0.0000]): 16^.75 = 8
    """
    if counts.dim() != 1:
        raise ValueError(f"counts must be 1-D (one count per word), got shape {tuple(counts.shape)}")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    c = counts.to(torch.float64)
    if (c < 0).any():
        raise ValueError("counts must be non-negative")
    if not (c > 0).any():
        raise ValueError("counts must have at least one positive entry")
    weights = torch.where(c > 0, c.pow(power), torch.zeros_like(c))  # 0^0 would be 1: keep unseen words at 0
    return weights / weights.sum()


def subsample_keep_prob(counts: Tensor, t: float = 1e-3) -> Tensor:
    r"""Probability of keeping each occurrence of a word in Mikolov's subsampling of frequent words.

    With ``f = count / total`` the word's frequency, the reference C code keeps an occurrence with::

        P_keep(w) = min(1, (sqrt(f/t) + 1) * t / f)

    (the paper writes the discard probability ``1 - sqrt(t/f)``; the code's form adds ``t/f`` and
    keeps somewhat more). Words with ``f <= t`` roughly are always kept; ``t = 0`` disables subsampling.

    Args:
        counts: (W,) non-negative word counts.
        t: the threshold; the C code's default 1e-3 (the paper suggests ~1e-5 for billion-word corpora).

    Returns:
        (W,) float64 probabilities in (0, 1]; words with count 0 get 1.

    Raises:
        ValueError: counts not 1-D, negative or all zero; ``t`` negative.
    """
    if counts.dim() != 1:
        raise ValueError(f"counts must be 1-D (one count per word), got shape {tuple(counts.shape)}")
    if t < 0:
        raise ValueError(f"t must be >= 0 (0 disables subsampling), got {t}")
    c = counts.to(torch.float64)
    if (c < 0).any() or not (c > 0).any():
        raise ValueError("counts must be non-negative with at least one positive entry")
    if t == 0:
        return torch.ones_like(c)
    f = c / c.sum()
    keep = (torch.sqrt(f / t) + 1) * t / f  # inf where f == 0
    return keep.clamp(max=1.0)


def sample_negatives(noise: Tensor, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Draw noise words i.i.d. from ``noise`` (with replacement).

    Args:
        noise: (W,) probabilities (e.g. from :func:`noise_distribution`).
        shape: the shape of the result, e.g. ``(B, Q)``.
        generator: for reproducible draws.

    Returns:
        int64 word ids of the given shape.
    """
    n = math.prod(shape)
    if n == 0:
        return torch.empty(shape, dtype=torch.long)
    return torch.multinomial(noise, n, replacement=True, generator=generator).view(shape)


def alias_table(probs: Tensor) -> tuple[Tensor, Tensor]:
    r"""Walker's alias table of a discrete distribution (Vose's construction), for O(1) draws (:func:`sample_alias`).

    The W outcomes are split into W equal columns of height 1/W; column i keeps outcome i with probability
    ``accept[i]`` and gives the rest to outcome ``alias[i]``, so that::

        P(i) = (accept[i] + sum_{j: alias[j] = i} (1 - accept[j])) / W

    Source: Walker 1977, "An efficient method for generating discrete random variables with general
    distributions"; Vose 1991, "A linear algorithm for generating random numbers with a given distribution".

    Args:
        probs: (W,) non-negative probabilities summing to 1 (e.g. :func:`noise_distribution`).

    Returns:
        ``(accept, alias)``: (W,) float64 in [0, 1] and (W,) int64 outcome ids.

    Raises:
        ValueError: probs not 1-D, negative, or not summing to 1 (to 1e-6).

    Example::

        accept, alias = alias_table(torch.tensor([0.5, 0.25, 0.25]))  # accept [1, 0.75, 0.75], alias [0, 0, 0]
    """
    if probs.dim() != 1 or len(probs) == 0:
        raise ValueError(f"probs must be 1-D and non-empty, got shape {tuple(probs.shape)}")
    p = probs.to(torch.float64)
    if (p < 0).any() or abs(float(p.sum()) - 1.0) > 1e-6:
        raise ValueError(f"probs must be non-negative and sum to 1, got sum {float(p.sum()):.6g}")
    n = len(p)
    scaled = (p * n).tolist()  # column heights in units of 1/W
    accept, alias = [1.0] * n, list(range(n))
    small = [i for i, q in enumerate(scaled) if q < 1.0]
    large = [i for i, q in enumerate(scaled) if q >= 1.0]
    while small and large:
        lo, hi = small.pop(), large.pop()
        accept[lo], alias[lo] = scaled[lo], hi  # column lo: lo itself, topped up with hi
        scaled[hi] -= 1.0 - scaled[lo]
        (small if scaled[hi] < 1.0 else large).append(hi)
    # the outcomes left (rounding) fill their own column: accept 1
    return torch.tensor(accept, dtype=torch.float64), torch.tensor(alias, dtype=torch.long)


def sample_alias(accept: Tensor, alias: Tensor, shape: tuple[int, ...],
                 generator: torch.Generator | None = None) -> Tensor:
    """Draw i.i.d. outcomes from an alias table (:func:`alias_table`): a uniform column i, then i with
    probability ``accept[i]``, else ``alias[i]``. Two random numbers per draw, whatever the number of outcomes.

    Args:
        accept, alias: (W,) the table.
        shape: the shape of the result, e.g. ``(B, Q)``.
        generator: for reproducible draws (an integer and a float64 uniform per draw, in that order).

    Returns:
        int64 outcome ids of the given shape.
    """
    column = torch.randint(len(accept), shape, generator=generator)
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.where(u < accept[column], column, alias[column])


def cbow_windows(ids: Tensor, segment: Tensor, window: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every (context, target) example of a token stream, contexts never crossing a segment boundary.

    Position t gets the context ``ids[t-C .. t-1, t+1 .. t+C]`` restricted to positions in the same
    segment (e.g. the same verse); positions with no neighbour at all (one-word segments) are dropped.

    Args:
        ids: (N,) int64 word ids of the stream.
        segment: (N,) int64 segment number of each token, non-decreasing (tokens of a segment are contiguous).
        window: C >= 1, neighbours on each side.

    Returns:
        ``(context, mask, target)``: (T, 2C) int64 ids (0 where padded), (T, 2C) bool (True for a real
        neighbour), (T,) int64 target ids; T <= N, in stream order. Context columns are the offsets
        ``-C..-1, 1..C`` in that order.

    Raises:
        ValueError: window < 1, or ids and segment of different shapes or not 1-D.

    Example::

        ctx, mask, tgt = cbow_windows(torch.tensor([5, 6, 7]), torch.tensor([0, 0, 0]), 1)
        # tgt [5, 6, 7]; ctx [[0, 6], [5, 7], [6, 0]]; mask [[F, T], [T, T], [T, F]]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if ids.dim() != 1 or ids.shape != segment.shape:
        raise ValueError(f"ids and segment must be 1-D of the same length, got {tuple(ids.shape)} and "
                         f"{tuple(segment.shape)}")
    n = ids.shape[0]
    offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)])  # (2C,)
    pos = torch.arange(n).unsqueeze(1) + offsets  # (N, 2C) neighbour positions
    inside = (pos >= 0) & (pos < n)
    pos_c = pos.clamp(0, max(n - 1, 0))
    mask = inside & (segment[pos_c] == segment.unsqueeze(1)) if n else inside  # (N, 2C)
    context = torch.where(mask, ids[pos_c], torch.zeros((), dtype=ids.dtype)) if n else pos_c
    keep = mask.any(1)  # (N,) at least one neighbour
    return context[keep], mask[keep], ids[keep]


# ----------------------------------------------------------------------------------- the loss
def negative_sampling_loss(h: Tensor, m_pos: Tensor, m_neg: Tensor, reduction: Reduction = "mean") -> Tensor:
    r"""``-log sigma(m_w . h) - sum_k log sigma(-m_{n_k} . h)`` per example (EE-559 12-3).

    Args:
        h: (B, D) context vectors.
        m_pos: (B, D) output embeddings of the true words.
        m_neg: (B, Q, D) output embeddings of the Q noise words of each example.
        reduction: ``"mean"`` (default) or ``"sum"`` over the batch, or ``"none"``.

    Returns:
        A scalar, or (B,) with ``reduction="none"``.

    Shapes:
        h (B, D), m_pos (B, D), m_neg (B, Q, D) -> () or (B,).

    Raises:
        ValueError: mismatched shapes or an unknown reduction.
    """
    if h.dim() != 2 or m_pos.shape != h.shape:
        raise ValueError(f"h and m_pos must both be (B, D), got {tuple(h.shape)} and {tuple(m_pos.shape)}")
    if m_neg.dim() != 3 or m_neg.shape[0] != h.shape[0] or m_neg.shape[2] != h.shape[1]:
        raise ValueError(f"m_neg must be (B, Q, D) = ({h.shape[0]}, Q, {h.shape[1]}), got {tuple(m_neg.shape)}")
    pos = (m_pos * h).sum(-1)  # (B,) score of the true word
    neg = torch.bmm(m_neg, h.unsqueeze(-1)).squeeze(-1)  # (B, Q) scores of the noise words
    loss = -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)  # (B,)
    return reduce_loss(loss, reduction)


# ----------------------------------------------------------------------------------- the model
class CBOW(nn.Module):
    r"""Continuous Bag of Words with input embeddings ``E`` and output embeddings ``M`` (EE-559 12-3).

    Args:
        vocab_size: W, the number of words.
        embedding_dim: D.
        sparse: sparse gradients for both embedding tables (for ``torch.optim.SparseAdam``, which
            then updates only the rows a batch touched). Default False.

    Attributes:
        E: ``nn.Embedding(W, D)``, the input embeddings (the word vectors one usually keeps).
        M: ``nn.Embedding(W, D)``, the output embeddings.

    Shapes:
        context: (B, 2C) int64 word ids; context_mask: (B, 2C) bool, True where ``context`` is a real
        neighbour (padding elsewhere; default all True); target: (B,); negatives: (B, Q).

    Raises:
        ValueError: non-positive sizes; a row of ``context_mask`` with no neighbour; mismatched shapes.

    Example::

        model = CBOW(5000, 100)
        loss = model(context, target, negatives, context_mask)  # scalar, mean over the batch
        loss.backward()
    """

    def __init__(self, vocab_size: int, embedding_dim: int, sparse: bool = False):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        self.vocab_size, self.embedding_dim = vocab_size, embedding_dim
        self.E = nn.Embedding(vocab_size, embedding_dim, sparse=sparse)
        self.M = nn.Embedding(vocab_size, embedding_dim, sparse=sparse)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """The C code's initialisation: ``E ~ U(-0.5/D, 0.5/D)``, ``M = 0``."""
        bound = 0.5 / self.embedding_dim
        with torch.no_grad():
            nn.init.uniform_(self.E.weight, -bound, bound, generator=generator)
            nn.init.zeros_(self.M.weight)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, embedding_dim={self.embedding_dim}, sparse={self.E.sparse}"

    def context_vector(self, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """``h = mean of E over the real neighbours``: (B, 2C) ids (+ mask) -> (B, D)."""
        if context.dim() != 2:
            raise ValueError(f"context must be (B, 2C) word ids, got shape {tuple(context.shape)}")
        e = self.E(context)  # (B, 2C, D)
        if context_mask is None:
            return e.mean(1)
        if context_mask.shape != context.shape:
            raise ValueError(f"context_mask must have the shape of context {tuple(context.shape)}, "
                             f"got {tuple(context_mask.shape)}")
        w = context_mask.to(e.dtype)  # (B, 2C)
        n = w.sum(1, keepdim=True)  # (B, 1) neighbours per example
        if (n == 0).any():
            raise ValueError("every row of context_mask needs at least one True (a word with no neighbour has no "
                             "context)")
        return (e * w.unsqueeze(-1)).sum(1) / n  # (B, D)

    def scores(self, context: Tensor, candidates: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """``psi(t)`` restricted to some words: (B, 2C) context, (B, K) candidate ids -> (B, K) logits."""
        h = self.context_vector(context, context_mask)  # (B, D)
        return torch.bmm(self.M(candidates), h.unsqueeze(-1)).squeeze(-1)  # (B, K)

    def forward(self, context: Tensor, target: Tensor, negatives: Tensor, context_mask: Tensor | None = None,
                reduction: Reduction = "mean") -> Tensor:
        """The negative-sampling loss of predicting ``target`` from ``context`` against ``negatives``."""
        if target.dim() != 1 or target.shape[0] != context.shape[0]:
            raise ValueError(f"target must be (B,) = ({context.shape[0]},), got {tuple(target.shape)}")
        if negatives.dim() != 2 or negatives.shape[0] != context.shape[0]:
            raise ValueError(f"negatives must be (B, Q) with B = {context.shape[0]}, got {tuple(negatives.shape)}")
        h = self.context_vector(context, context_mask)  # (B, D)
        return negative_sampling_loss(h, self.M(target), self.M(negatives), reduction)


# ----------------------------------------------------------------------------------- the fast update
def word2vec_lr(step: int, total_steps: int, lr: float) -> float:
    """The C code's learning rate: linear decay from ``lr`` to 0 over the run, floored at ``lr * 1e-4``
    (``alpha = starting_alpha * (1 - progress)``; gensim decays to ``min_alpha = 1e-4`` likewise).

    Args:
        step: updates done (0-based index of this update); total_steps: updates of the run (>= 1); lr: the start.

    Raises:
        ValueError: total_steps < 1.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return lr * max(1.0 - step / total_steps, 1e-4)


class _Forward(NamedTuple):
    n: Tensor  # (B,) neighbours per example
    words: Tensor  # (N,) the real neighbours, example by example
    example: Tensor  # (N,) the example of each
    h: Tensor  # (B, D) context averages
    h_groups: Tensor  # (G, group, D) the same, by group (zero rows pad the last group)
    m_pos: Tensor  # (B, D) output vectors of the true words
    m_neg: Tensor  # (G, Q, D) output vectors of each group's noise words
    s_pos: Tensor  # (B,) scores of the true words
    s_neg: Tensor  # (G, group, Q) scores of the noise words
    loss: Tensor  # (B,)


def _cbow_forward(E: Tensor, M: Tensor, context: Tensor, context_mask: Tensor, target: Tensor, negatives: Tensor,
                  group: int) -> _Forward:
    """The fast path's forward pass (:func:`cbow_loss`), with what :func:`cbow_sgd_step` needs for its update."""
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    if context.dim() != 2 or context_mask.shape != context.shape:
        raise ValueError(f"context and context_mask must both be (B, 2C), got {tuple(context.shape)} and "
                         f"{tuple(context_mask.shape)}")
    B, D = context.shape[0], E.shape[1]
    groups = -(-B // group)
    if target.shape != (B,):
        raise ValueError(f"target must be (B,) = ({B},), got {tuple(target.shape)}")
    if negatives.dim() != 2 or negatives.shape[0] != groups:
        raise ValueError(f"negatives must be (ceil(B / group), Q) = ({groups}, Q), got {tuple(negatives.shape)}")
    n = context_mask.sum(1)  # (B,) neighbours per example
    if (n == 0).any():
        raise ValueError("every row of context_mask needs at least one True (a word with no neighbour has no context)")
    flat = context_mask.reshape(-1).nonzero().squeeze(1)  # (N,) positions of the real neighbours in (B * 2C)
    words = context.reshape(-1).index_select(0, flat)  # (N,) their word ids, example by example
    example = flat.div(context.shape[1], rounding_mode="floor")  # (N,) the example of each
    h = F.embedding_bag(words, E, n.cumsum(0) - n, mode="mean")  # (B, D) context averages
    m_pos = F.embedding(target, M)  # (B, D)
    m_neg = F.embedding(negatives, M)  # (G, Q, D) one set per group
    pad = groups * group - B
    h_groups = (F.pad(h, (0, 0, 0, pad)) if pad else h).view(groups, group, D)  # (G, group, D), zero rows pad
    s_pos = torch.linalg.vecdot(h, m_pos)  # (B,) scores of the true words
    s_neg = torch.bmm(h_groups, m_neg.transpose(1, 2))  # (G, group, Q) scores of the noise words
    loss = F.softplus(-s_pos) + F.softplus(s_neg).sum(2).view(-1)[:B]  # -log sigma(s) = softplus(-s)
    return _Forward(n, words, example, h, h_groups, m_pos, m_neg, s_pos, s_neg, loss)


@torch.no_grad()
def cbow_loss(E: Tensor, M: Tensor, context: Tensor, context_mask: Tensor, target: Tensor, negatives: Tensor,
              group: int = 1) -> Tensor:
    """The negative-sampling loss of each example, computed as :func:`cbow_sgd_step` does (no update, no autograd):
    the flat context through ``F.embedding_bag``, each group's noise vectors gathered once. Equal to
    :class:`CBOW`'s ``forward(..., reduction="none")`` with every example's row of noise words.

    Args:
        E, M: (W, D) input and output embeddings.
        context, context_mask: (B, 2C); target: (B,); negatives: (ceil(B / group), Q), one row per group.
        group: examples per group sharing noise words (default 1).

    Returns:
        (B,) ``-log sigma(M_target . h) - sum_q log sigma(-M_noise_q . h)``.

    Raises:
        ValueError: as :func:`cbow_sgd_step`.
    """
    return _cbow_forward(E, M, context, context_mask, target, negatives, group).loss


def _add_rows(table: Tensor, index: Tensor, rows: Tensor) -> None:
    """``table[index[i]] += rows[i]`` for every i, repeated indices summed: ``table.index_add_(0, index, rows)``.
    Written as ``scatter_add_`` with the index expanded over the row, which torch runs on several threads (it
    sorts the index, then sums each table row's additions in their order); ``index_add_`` on the CPU loops over
    the rows one at a time. The same sums, in the same order."""
    table.scatter_add_(0, index.unsqueeze(1).expand(-1, table.shape[1]), rows)


@torch.no_grad()
def cbow_sgd_step(E: Tensor, M: Tensor, context: Tensor, context_mask: Tensor, target: Tensor, negatives: Tensor,
                  lr: float, group: int = 1, context_update: ContextUpdate = "word2vec") -> Tensor:
    r"""One step of word2vec's stochastic gradient descent on a batch, in place, on the rows the batch touches.

    The gradient of the negative-sampling loss written out (EE-559 12-3; Mikolov et al. 2013, and the
    reference C code ``word2vec.c``). For example b with the n_b context words c, the true word ``k_0``
    (label y = 1) and the noise words ``k_1..k_Q`` (y = 0)::

        h_b    = 1/n_b sum_c E_c                          (the context average)
        s_bq   = M_{k_q} . h_b                            (scores)
        err_bq = sigma(s_bq) - y_q                        (d loss_b / d s_bq)
        M_{k_q} <- M_{k_q} - lr err_bq h_b                (the gradient w.r.t. M_{k_q})
        E_c     <- E_c - lr g sum_q err_bq M_{k_q}        (g = 1, or 1/n_b for the exact gradient)

    All from the values before the step: the batch's updates are summed (SGD on the *sum* of the per-example
    losses, as in the lecture's ``loss = sum_t ...``; with one example per batch it is the C code's step).
    ``context_update="word2vec"`` (default) adds the error vector to every context word undivided, as the C
    code and gensim (``cbow_mean=1``) do: n_b times the exact gradient, a larger step for the input vectors;
    ``"gradient"`` divides by n_b, and the step then equals ``torch.optim.SGD`` on :class:`CBOW`'s loss with
    ``reduction="sum"``.

    Shared noise words (``group`` > 1): each run of ``group`` consecutive examples shares its Q noise words
    (one row of ``negatives`` per group; the last group may be shorter). Every example's noise words are still
    Q draws from the noise distribution, so the expected loss and gradient are unchanged; the draws are only
    correlated within a group. The noise vectors are then gathered once per group, and the scores and their
    updates are small matrix products (Ji et al. 2016, "Parallelizing Word2Vec in Shared and Distributed
    Memory", share the noise words of a window's targets in the same way). ``group=1``: independent draws.

    Only the rows of the batch's words are read and written (added as ``index_add_`` would); the context is
    gathered as a flat list of the real neighbours (``F.embedding_bag``), so padding costs nothing.

    Args:
        E, M: (W, D) input and output embeddings (e.g. ``model.E.weight``), updated in place.
        context: (B, 2C) int64 word ids; context_mask: (B, 2C) bool, True for a real neighbour.
        target: (B,) int64 true words.
        negatives: (ceil(B / group), Q) int64 noise words, one row per group of examples.
        lr: the learning rate of this step.
        group: examples per group sharing noise words (default 1: one row of ``negatives`` per example).
        context_update: ``"word2vec"`` (default) or ``"gradient"``, see above.

    Returns:
        (B,) the loss of each example before the step, ``-log sigma(s_b0) - sum_q log sigma(-s_bq)``.

    Shapes:
        E, M (W, D); context, context_mask (B, 2C); target (B,); negatives (ceil(B / group), Q) -> (B,).

    Raises:
        ValueError: mismatched shapes, a row of ``context_mask`` with no neighbour, ``group`` < 1, an unknown
        context_update.
    """
    if context_update not in ("word2vec", "gradient"):
        raise ValueError(f"context_update must be 'word2vec' or 'gradient', got {context_update!r}")
    f = _cbow_forward(E, M, context, context_mask, target, negatives, group)
    B, D = len(target), E.shape[1]
    h, h_groups, m_pos, m_neg, s_pos, s_neg = f.h, f.h_groups, f.m_pos, f.m_neg, f.s_pos, f.s_neg
    step_pos = torch.sigmoid(s_pos).sub_(1.0).mul_(-lr)  # (B,) -lr d loss / d s (scaled here, on few numbers)
    step_neg = torch.sigmoid(s_neg).mul_(-lr)  # (G, group, Q)
    step_h = torch.bmm(step_neg, m_neg).view(-1, D)[:B].addcmul_(step_pos.unsqueeze(1), m_pos)  # (B, D) -lr dL/dh
    if context_update == "gradient":
        step_h /= f.n.unsqueeze(1)
    _add_rows(M, target, h * step_pos.unsqueeze(1))  # M_k += -lr err h for the true words ...
    _add_rows(M, negatives.reshape(-1), torch.bmm(step_neg.transpose(1, 2), h_groups).view(-1, D))  # ... and noise
    _add_rows(E, f.words, step_h.index_select(0, f.example))  # E_c += -lr g sum_q err M_q for every context word
    return f.loss


def cbow_hogwild_steps(E: Tensor, M: Tensor, batches: Sequence[tuple[Tensor, Tensor, Tensor, Tensor]], lr: float,
                       workers: int, group: int = 1, context_update: ContextUpdate = "word2vec",
                       pool: ThreadPoolExecutor | None = None) -> Tensor:
    r""":func:`cbow_sgd_step` on several batches at once from ``workers`` threads, without locks (Hogwild!).

    Thread i takes batches i, i + workers, i + 2 workers, ... and steps through them in place on the shared
    ``E`` and ``M``; a thread may read a row while another adds to it, and two additions to the same row at
    the same moment may lose one of them. Recht, Re, Wright & Niu 2011, "Hogwild!: A lock-free approach to
    parallelizing stochastic gradient descent", show that SGD converges nearly as well when the updates are
    sparse, as word2vec's are (a batch touches a few thousand of the rows); word2vec.c (its ``-threads``) and
    gensim (``workers``) train this way. The result depends on the threads' timing: two runs with the same seed
    differ in the last digits and beyond (one worker is :func:`cbow_sgd_step` in a loop, deterministic).

    Torch's operations release Python's lock while they compute, so with one torch thread per worker
    (``torch.set_num_threads(1)``) the workers run on separate cores.

    Args:
        E, M: (W, D) input and output embeddings, updated in place.
        batches: ``(context, context_mask, target, negatives)`` per batch, as :func:`cbow_sgd_step` takes them
            (``negatives`` one row per group).
        lr: the learning rate of every step.
        workers: threads, >= 1 (the caller's thread is one of them).
        group, context_update: as :func:`cbow_sgd_step`.
        pool: an executor with at least ``workers - 1`` threads (default: one made for this call).

    Returns:
        (sum of B,) the loss of each example before its batch's step, batch after batch.

    Raises:
        ValueError: ``workers`` < 1, and as :func:`cbow_sgd_step`.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    losses: list[Tensor | None] = [None] * len(batches)

    def work(first: int) -> None:
        for i in range(first, len(batches), workers):
            context, mask, target, negatives = batches[i]
            losses[i] = cbow_sgd_step(E, M, context, mask, target, negatives, lr, group, context_update)

    helpers = min(workers, len(batches)) - 1
    if helpers > 0:
        own = pool is None
        pool = pool or ThreadPoolExecutor(helpers)
        try:
            futures = [pool.submit(work, i) for i in range(1, helpers + 1)]
            work(0)
            for f in futures:
                f.result()  # re-raises a worker's error
        finally:
            if own:
                pool.shutdown()
    else:
        work(0)
    return torch.cat(losses) if losses else torch.zeros(0)


class NegativeSamplingTask(Task):
    """Training CBOW with :class:`deepnotes.train.Trainer`: the negative-sampling loss of a batch
    ``(context, mask, target, negatives)`` (:class:`deepnotes.data.text.CBOWBatches`), moved to ``device``.

    Two update paths (``update``):

    * ``"autograd"``: the readable path. Training minimizes the batch mean of :class:`CBOW`'s loss with Adam on the
      full tables, or SparseAdam when the model has sparse gradients.
    * ``"sgd"`` (manual optimization): word2vec's own update, :func:`cbow_sgd_step` on the sum of the batch's
      losses, touching only the batch's rows. The optimizer the Trainer holds is a stateless ``torch.optim.SGD``
      that only carries the learning rate; the step reads it from ``step.lr``.

    Either way the learning rate is ``cfg.lr`` as the Trainer schedules it, and the epoch metric ``loss`` is the
    mean per example (before each update in training). Evaluation sums per batch the same loss, through
    :class:`CBOW`'s forward pass (``"autograd"``) or :func:`cbow_loss` (``"sgd"``; equal up to rounding).

    Args:
        model: the CBOW model.
        device: where batches go.
        update: ``"autograd"`` (default) or ``"sgd"``.
        shared_negatives: the batches' runs of this many consecutive examples share their noise words
            (``CBOWBatches(share_negatives=...)``); the sgd path then reads one row of noise words per group
            (default 1: every example its own).
        context_update: of the ``"sgd"`` path (:func:`cbow_sgd_step`): ``"word2vec"`` (default) or ``"gradient"``.
        workers: of the ``"sgd"`` path: with more than 1, a training batch is a list of batches
            (:class:`deepnotes.train.batches.ChunkedBatches`) that ``workers`` threads step through at once without
            locks (:func:`cbow_hogwild_steps`), all at the Trainer's lr of that step; not reproducible run to run.
            Default 1.

    Raises:
        ValueError: an unknown update or context_update, shared_negatives < 1, workers < 1, or workers > 1 with
        the autograd update.
    """

    def __init__(self, model: CBOW, device: torch.device | str = "cpu", update: Literal["autograd", "sgd"] = "autograd",
                 shared_negatives: int = 1, context_update: ContextUpdate = "word2vec", workers: int = 1):
        super().__init__(model)
        if workers < 1 or (workers > 1 and update != "sgd"):
            raise ValueError(f"workers must be >= 1, and 1 with the autograd update; got {workers} ({update})")
        if update not in ("autograd", "sgd"):
            raise ValueError(f"update must be 'autograd' or 'sgd', got {update!r}")
        if context_update not in ("word2vec", "gradient"):
            raise ValueError(f"context_update must be 'word2vec' or 'gradient', got {context_update!r}")
        if shared_negatives < 1:
            raise ValueError(f"shared_negatives must be >= 1, got {shared_negatives}")
        self.device = torch.device(device)
        self.update, self.shared_negatives, self.context_update = update, shared_negatives, context_update
        self.manual_optimization = update == "sgd"
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers - 1) if workers > 1 else None  # kept for the whole run

    def configure_optimizers(self, cfg) -> torch.optim.Optimizer:
        if self.update == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=cfg.lr)  # no state: it carries the lr
        if self.model.E.sparse:
            return torch.optim.SparseAdam(list(self.model.parameters()), lr=cfg.lr)
        return torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def _loss(self, model: nn.Module, batch, reduction: Reduction) -> tuple[Tensor, int]:
        context, mask, target, negatives = (t.to(self.device) for t in batch)
        return model(context, target, negatives, mask, reduction=reduction), len(target)

    def training_step(self, model: nn.Module, batch, step: Step) -> StepOutput:
        if self.workers > 1:  # a list of batches, stepped through by several threads at once
            g = self.shared_negatives
            chunk = [(c, m, t, n[::g]) for c, m, t, n in ((x.to(self.device) for x in b) for b in batch)]
            losses = cbow_hogwild_steps(self.model.E.weight, self.model.M.weight, chunk, step.lr, self.workers, g,
                                        self.context_update, self._pool)
            total = losses.sum()
            return StepOutput(total / len(losses), {"loss": float(total)}, len(losses))
        if self.update == "sgd":
            context, mask, target, negatives = (t.to(self.device) for t in batch)
            cbow, g = self.model, self.shared_negatives  # the parameters themselves (one process: no wrapper)
            total = cbow_sgd_step(cbow.E.weight, cbow.M.weight, context, mask, target, negatives[::g], step.lr, g,
                                  self.context_update).sum()
            return StepOutput(total / len(target), {"loss": float(total)}, len(target))
        loss, n = self._loss(model, batch, "mean")
        return StepOutput(loss, {"loss": float(loss.detach()) * n}, n)

    def evaluation_step(self, model: nn.Module, batch, step: Step | None = None) -> StepOutput:
        if self.update == "sgd":  # the same loss through the fast path's forward pass (cbow_loss)
            context, mask, target, negatives = (t.to(self.device) for t in batch)
            total = cbow_loss(model.E.weight, model.M.weight, context, mask, target, negatives).sum()
            return StepOutput(total, {"loss": float(total)}, len(target))
        loss, n = self._loss(model, batch, "sum")
        return StepOutput(loss, {"loss": float(loss.detach())}, n)

    @torch.no_grad()
    def mean_loss(self, batches) -> float:
        """Mean loss per example of ``model`` over ``batches``, in eval mode (NaN when there are none)."""
        self.model.to(self.device).eval()
        outs = [self.evaluation_step(self.model, b) for b in batches]
        n = sum(o.count for o in outs)
        return sum(o.sums["loss"] for o in outs) / n if n else float("nan")


# ----------------------------------------------------------------------------------- using the vectors
def cosine_neighbours(embeddings: Tensor, queries: Tensor, k: int = 10, exclude: Tensor | None = None
                      ) -> tuple[Tensor, Tensor]:
    """The ``k`` words most cosine-similar to each query vector.

    Args:
        embeddings: (W, D) word vectors.
        queries: (Q, D) query vectors, or (Q,) int64 word ids (then each word itself is excluded).
        k: neighbours per query.
        exclude: optional (Q, X) int64 ids to leave out per query (e.g. the words of an analogy).

    Returns:
        ``(ids, sims)``, both (Q, k): neighbour ids and their cosine similarities, most similar first.

    Raises:
        ValueError: ``k`` not in [1, W - excluded].
    """
    W = embeddings.shape[0]
    unit = F.normalize(embeddings.double(), dim=1)  # (W, D)
    if queries.dim() == 1:
        ids = queries.long()
        q = unit[ids]
        own = ids.unsqueeze(1)
        exclude = own if exclude is None else torch.cat([own, exclude], 1)
    else:
        q = F.normalize(queries.double(), dim=1)
    n_ex = 0 if exclude is None else exclude.shape[1]
    if not 1 <= k <= W - n_ex:
        raise ValueError(f"k must be in [1, {W - n_ex}] (vocabulary minus excluded words), got {k}")
    sims = q @ unit.T  # (Q, W)
    if exclude is not None:
        sims.scatter_(1, exclude.long(), float("-inf"))
    top = sims.topk(k, dim=1)
    return top.indices, top.values


def analogy(embeddings: Tensor, a: Tensor, b: Tensor, c: Tensor, k: int = 1) -> Tensor:
    """``a : b :: c : ?`` by 3CosAdd: the ``k`` words nearest to ``b - a + c`` (unit vectors), a, b, c excluded.

    Args:
        embeddings: (W, D); a, b, c: (Q,) int64 ids.

    Returns:
        (Q, k) int64 ids, best first.
    """
    unit = F.normalize(embeddings.double(), dim=1)
    target = unit[b] - unit[a] + unit[c]  # (Q, D)
    ids, _ = cosine_neighbours(embeddings, target, k, exclude=torch.stack([a, b, c], 1))
    return ids
