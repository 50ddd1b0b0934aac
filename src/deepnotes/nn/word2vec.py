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
* The window is always C words on each side; the C code shrinks it to a random size per position,
  which weights near neighbours more.
* The noise words are not filtered: a draw may equal the true word (the C code skips such a draw;
  here it stays, which is rare with thousands of words and only adds a little noise to the loss).
* Initialisation follows the C code: ``E ~ U(-0.5/D, 0.5/D)``, ``M = 0``; the loss of the untrained
  model is therefore exactly ``(1 + Q) log 2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.losses import Reduction, reduce_loss
from deepnotes.train.task import Step, StepOutput, Task

__all__ = ["CBOW", "NegativeSamplingTask", "analogy", "cbow_windows", "cosine_neighbours", "negative_sampling_loss",
           "noise_distribution", "sample_negatives", "subsample_keep_prob"]

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
        raise ValueError(f"ids and segment must be 1-D of the same length, got {tuple(ids.shape)} and {tuple(segment.shape)}")
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
            raise ValueError("every row of context_mask needs at least one True (a word with no neighbour has no context)")
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


class NegativeSamplingTask(Task):
    """Training CBOW with :class:`deepnotes.train.Trainer`: the negative-sampling loss of a batch
    ``(context, mask, target, negatives)`` (:class:`deepnotes.data.text.CBOWBatches`), moved to ``device``.

    Training minimizes the batch mean; the epoch metric ``loss`` is the mean per example (evaluation sums
    per batch). Optimizer: Adam on the full tables, or SparseAdam when the model has sparse gradients;
    learning rate ``cfg.lr`` (the Trainer sets it before every update).
    """

    def __init__(self, model: CBOW, device: torch.device | str = "cpu"):
        super().__init__(model)
        self.device = torch.device(device)

    def configure_optimizers(self, cfg) -> torch.optim.Optimizer:
        if self.model.E.sparse:
            return torch.optim.SparseAdam(list(self.model.parameters()), lr=cfg.lr)
        return torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def _loss(self, model: nn.Module, batch, reduction: Reduction) -> tuple[Tensor, int]:
        context, mask, target, negatives = (t.to(self.device) for t in batch)
        return model(context, target, negatives, mask, reduction=reduction), len(target)

    def training_step(self, model: nn.Module, batch, step: Step) -> StepOutput:
        loss, n = self._loss(model, batch, "mean")
        return StepOutput(loss, {"loss": float(loss.detach()) * n}, n)

    def evaluation_step(self, model: nn.Module, batch, step: Step | None = None) -> StepOutput:
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
