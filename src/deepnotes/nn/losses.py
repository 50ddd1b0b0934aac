"""Classification losses from the equations: a stable log-sum-exp, softmax cross-entropy, and MSE on one-hot targets.

Source: ML2021/2022 lecture 2, "類神經網路訓練不起來怎麼辦 (四): 損失函數 (Loss) 也可能有影響":
classification as regression on one-hot vectors; softmax maps any scores to probabilities;
minimizing cross-entropy is maximizing likelihood; and MSE gets stuck where the loss is large
because its gradient is almost zero there (cross-entropy's is not). PyTorch's ``cross_entropy``
contains the softmax, and so does ours. Label smoothing: Szegedy et al. 2016 (Inception v3), 7.

The log-softmax is computed as ``z - logsumexp(z)`` with the maximum subtracted first, so logits of
1e4 stay finite (``exp(1e4)`` overflows float32, and ``log(softmax(z))`` gives ``log(0) = -inf``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]


def logsumexp(x: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """``log(sum(exp(x), dim))`` computed stably as ``m + log(sum(exp(x - m)))`` with ``m = max(x, dim)``.

    Rows that are all ``-inf`` give ``-inf`` (not NaN); a ``+inf`` entry gives ``+inf``.

    Args:
        x: any float tensor.
        dim: the dimension to reduce. Default -1.
        keepdim: keep ``dim`` with size 1. Default False.

    Shapes:
        x: (*, K, *) -> x's shape without ``dim`` (or with size 1 there if ``keepdim``).

    Example::

        logsumexp(torch.tensor([1e4, 1e4]))  # 1e4 + log 2, where torch.exp would overflow
    """
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()  # all -inf rows: shift by 0
    out = m + torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


def log_softmax(logits: Tensor, dim: int = -1) -> Tensor:
    """``log softmax(z) = z - logsumexp(z)`` along ``dim`` (same shape as ``logits``).

    Computed as ``(z - m) - log(sum(exp(z - m)))`` with ``m = max(z)``: the same value, but the
    shifted logits are subtracted before the large ``m`` is added back, so no digits are lost to
    rounding when the logits are huge (1e4 in float32 has a spacing of ~1e-3).
    """
    m = logits.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
    shifted = logits - m
    return shifted - logsumexp(shifted, dim=dim, keepdim=True)


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """``loss`` (per example) averaged (``"mean"``), summed (``"sum"``) or as is (``"none"``), as torch's losses.

    Raises:
        ValueError: another ``reduction``.
    """
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(logits: Tensor, target: Tensor, reduction: Reduction = "mean", label_smoothing: float = 0.0) -> Tensor:
    r"""Softmax cross-entropy between logits and class indices, as ``torch.nn.functional.cross_entropy``.

    Per example, with K classes, ``log p = logits - logsumexp(logits)`` and smoothing ε::

        loss = -(1 - ε) log p[y] - (ε / K) Σ_k log p[k]

    (ε = 0: the negative log-likelihood of the true class, ``-log softmax(z)[y]``.)

    Args:
        logits: unnormalized scores, class dimension 1 (as torch).
        target: int64 class indices in [0, K).
        reduction: ``"mean"`` (over all examples/positions), ``"sum"`` or ``"none"``. Default "mean".
        label_smoothing: ε in [0, 1]. Default 0.

    Shapes:
        logits: (B, K) or (B, K, d1, ...); target: (B,) or (B, d1, ...).
        Returns: a scalar, or (B,) / (B, d1, ...) with ``reduction="none"``.

    Raises:
        ValueError: shapes that do not fit, a target outside [0, K), bad reduction or label_smoothing.
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if logits.dim() < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"logits (B, K, ...) and target (B, ...) do not fit: {tuple(logits.shape)} and {tuple(target.shape)}")
    K = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= K):
        raise ValueError(f"target must hold class indices in [0, {K}), got values in [{int(target.min())}, {int(target.max())}]")
    logp = log_softmax(logits, dim=1)  # (B, K, ...)
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)  # (B, ...)
    loss = nll
    if label_smoothing > 0:
        smooth = -logp.mean(dim=1)  # (B, ...): cross-entropy with the uniform distribution
        loss = (1 - label_smoothing) * nll + label_smoothing * smooth
    return reduce_loss(loss, reduction)


def mse_one_hot(logits_or_probs: Tensor, target: Tensor, num_classes: int, from_logits: bool = True,
                reduction: Reduction = "mean") -> Tensor:
    """Mean squared error between softmax outputs and one-hot targets: classification as regression.

    ``loss = mean_k (softmax(z)_k - onehot(y)_k)²`` (``from_logits=False``: the input is already
    probabilities and is used as is). "mean" averages over all B*K entries, like
    ``F.mse_loss(softmax(z), one_hot(y).float())``. The lecture's point: when a wrong class has
    probability ~1, the softmax saturates and this loss's gradient vanishes, while cross-entropy's
    gradient ``softmax(z) - onehot(y)`` stays large.

    Args:
        logits_or_probs: (B, K) scores (or probabilities with ``from_logits=False``).
        target: (B,) int64 class indices in [0, num_classes).
        num_classes: K.
        from_logits: apply the softmax first. Default True.
        reduction: ``"mean"`` (over B*K), ``"sum"``, or ``"none"`` (returns (B, K)). Default "mean".

    Raises:
        ValueError: shapes that do not fit, a target out of range, or a bad reduction.
    """
    if logits_or_probs.dim() != 2 or logits_or_probs.shape[1] != num_classes or target.shape != logits_or_probs.shape[:1]:
        raise ValueError(f"expected logits (B, {num_classes}) and target (B,), got {tuple(logits_or_probs.shape)} "
                         f"and {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"target must hold class indices in [0, {num_classes})")
    probs = torch.exp(log_softmax(logits_or_probs, dim=1)) if from_logits else logits_or_probs
    one_hot = torch.zeros_like(probs).scatter_(1, target.unsqueeze(1), 1.0)  # (B, K)
    return reduce_loss((probs - one_hot).pow(2), reduction)
