"""Sharpness of a minimum: how much the training loss rises under random weight perturbations.

Source: ML2021 "類神經網路訓練不起來怎麼辦 (二): 批次 (batch) 與動量 (momentum)": small batches
generalize better, one explanation being that they end in *flat* minima while large batches end in
*sharp* ones (Keskar et al., "On Large-Batch Training for Deep Learning: Generalization Gap and
Sharp Minima", ICLR 2017). A minimum is flat when moving the weights a little barely changes the
loss, so the small shift between the training and the test loss surface costs little.

The measure (the random-direction variant; Keskar et al. maximize over a box instead)::

    u ~ uniform on the unit sphere of R^d        (a Gaussian vector, normalized)
    delta = rho * u,   rho = r * ||w||  (relative=True)   or   rho = r  (relative=False)
    increase(u) = L(w + delta) - L(w)

reported as the mean and the maximum over ``n_directions`` directions, for each radius ``r``.
For a quadratic ``L(w) = 0.5 (w - w*)^T A (w - w*)`` at ``w = w*``,
``increase(u) = 0.5 rho^2 u^T A u`` and ``E[u^T A u] = tr(A) / d``, so the expected increase is
``0.5 rho^2 tr(A) / d``: the mean curvature over all directions (the tests check this).

Deliberate differences: one global norm over all parameters (``||w||`` of the concatenated
vector), not filter-wise normalization (Li et al. 2018); random directions, not the worst case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

__all__ = ["SharpnessResult", "perturbation_sharpness"]


@dataclass(frozen=True)
class SharpnessResult:
    """What :func:`perturbation_sharpness` measured.

    Attributes:
        radii: (R,) the radii as given (relative to ``||w||`` when ``relative``).
        norms: (R,) the absolute perturbation norms ``rho`` used.
        base_loss: ``L(w)`` at the unperturbed weights.
        increases: (R, M) ``L(w + delta) - L(w)`` for each radius and direction.
        weight_norm: ``||w||`` over all parameters.
    """

    radii: torch.Tensor
    norms: torch.Tensor
    base_loss: float
    increases: torch.Tensor
    weight_norm: float

    @property
    def mean(self) -> torch.Tensor:
        """(R,) mean increase over the directions."""
        return self.increases.mean(dim=1)

    @property
    def max(self) -> torch.Tensor:
        """(R,) largest increase over the directions."""
        return self.increases.max(dim=1).values


@torch.no_grad()
def perturbation_sharpness(loss_fn: Callable[[], torch.Tensor | float], params: Sequence[torch.Tensor],
                           radii: Sequence[float], n_directions: int = 10, relative: bool = True,
                           generator: torch.Generator | None = None) -> SharpnessResult:
    """Mean and max rise of ``loss_fn()`` when ``params`` move by random vectors of norm ``rho``.

    The parameters are changed in place for each evaluation and restored exactly afterwards (also
    when ``loss_fn`` raises). The same directions are used for every radius, so the curves over
    radius are smooth and comparable between models with the same number of parameters.

    Args:
        loss_fn: evaluates the loss at the current values of ``params`` (e.g. the mean
            cross-entropy of a model in eval mode over the training set); called ``1 + R * M``
            times, under ``torch.no_grad``.
        params: the tensors to perturb (e.g. ``list(model.parameters())``); d = total elements.
        radii: R perturbation radii, each >= 0; relative to ``||w||`` when ``relative``.
        n_directions: M random directions per radius. Default 10.
        relative: radius as a fraction of the weights' norm (default True; the weights' norm
            differs between runs) or as an absolute norm.
        generator: seeds the directions (on the CPU); default: the global RNG.

    Returns:
        A :class:`SharpnessResult`; ``.mean`` and ``.max`` are (R,) tensors.

    Raises:
        ValueError: no parameters, ``n_directions < 1``, a negative radius, or ``relative`` with
            all-zero weights (use ``relative=False``).

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 3.0]))
        >>> w = torch.zeros(2)
        >>> res = perturbation_sharpness(lambda: 0.5 * w @ A @ w, [w], [0.1], 1000, relative=False)
        >>> round(float(res.mean[0]), 3)  # 0.5 * 0.1**2 * tr(A) / d = 0.01
        0.01
    """
    params = list(params)
    if not params:
        raise ValueError("params is empty: pass the tensors to perturb, e.g. list(model.parameters())")
    if n_directions < 1:
        raise ValueError(f"n_directions must be >= 1, got {n_directions}")
    radii_t = torch.tensor([float(r) for r in radii], dtype=torch.float64)
    if radii_t.numel() == 0 or bool((radii_t < 0).any()):
        raise ValueError(f"radii must be a non-empty list of numbers >= 0, got {list(radii)}")
    weight_norm = float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params)))
    if relative and weight_norm == 0.0:
        raise ValueError("relative=True needs non-zero weights (||w|| = 0); pass relative=False for absolute radii")
    norms = radii_t * weight_norm if relative else radii_t

    originals = [p.detach().clone() for p in params]
    base_loss = float(loss_fn())
    increases = torch.zeros(len(radii_t), n_directions, dtype=torch.float64)
    try:
        for j in range(n_directions):
            # u: a uniform direction on the unit sphere of R^d, split into the parameters' shapes
            u = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]
            u_norm = torch.sqrt(sum((t**2).sum() for t in u))
            for i, rho in enumerate(norms.tolist()):
                for p, p0, t in zip(params, originals, u):
                    p.copy_(p0 + (rho / u_norm * t).to(device=p.device, dtype=p.dtype))
                increases[i, j] = float(loss_fn()) - base_loss
    finally:
        for p, p0 in zip(params, originals):
            p.copy_(p0)
    return SharpnessResult(radii=radii_t, norms=norms, base_loss=base_loss, increases=increases,
                           weight_norm=weight_norm)
