"""Is an explanation faithful to the model? Deletion/insertion curves and the model-randomization sanity check.

Sources:
- ML2021 (Hung-yi Lee), "機器學習模型的可解釋性 (Explainable ML) (上)": a part of the input is a reason for the
  decision if changing or deleting it changes the decision; the deletion curve makes that a number.
- Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of Black-box Models": the deletion
  metric (remove pixels from the most to the least important, the target probability should fall fast: low area
  under the curve) and the insertion metric (start from a blurred image and insert the original pixels in that
  order: the probability should rise fast, high area).
- Adebayo et al. 2018, "Sanity Checks for Saliency Maps": cascading randomization. Re-initialize the weights
  layer by layer from the logits downward; a map that depends on what the model learned must change (its rank
  correlation with the original map falls), one that stays the same explains the input, not the model (an edge
  detector passes for a saliency map by eye).

Conventions as in :mod:`deepnotes.explain.attribution`: images (B, C, H, W), ``target`` an int or a (B,) integer
tensor, the model left in its mode with its ``requires_grad`` flags (the randomization works on a deep copy).
"""

from __future__ import annotations

import copy
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from deepnotes.explain.attribution import _baseline_like, _check_images, _check_positive, _inspecting, \
    _probabilities, _targets

__all__ = ["Curve", "deletion_curve", "gaussian_blur", "insertion_curve", "model_randomization", "random_order_auc"]


class Curve(NamedTuple):
    """A deletion or insertion curve.

    Attributes:
        fractions: (S+1,) share of the pixels changed at each point, 0 .. 1.
        probs: (B, S+1) target-class probability of each image at each point.
        auc: (B,) area under the curve by the trapezoid rule over ``fractions`` (in [0, 1]).
    """

    fractions: torch.Tensor
    probs: torch.Tensor
    auc: torch.Tensor


def _pixel_order(attribution: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, H*W) pixel indices by decreasing attribution (summed over channels), ties in raster order."""
    batch, _, height, width = x.shape
    if attribution.dim() == 3:
        attribution = attribution[:, None]
    if attribution.dim() != 4 or attribution.shape[0] != batch or attribution.shape[2:] != (height, width):
        raise ValueError(f"attribution must be (B, C, H, W), (B, 1, H, W) or (B, H, W) with B, H, W = {batch}, "
                         f"{height}, {width}; got {tuple(attribution.shape)}")
    scores = attribution.detach().to(x.device).sum(dim=1).flatten(1)
    return torch.argsort(scores, dim=1, descending=True, stable=True)


def _curve(model: nn.Module, start: torch.Tensor, end: torch.Tensor, t: torch.Tensor, order: torch.Tensor,
           steps: int, batch_size: int) -> Curve:
    """Probabilities while the pixels go from ``start`` to ``end`` in ``order``, ``(k * P) // steps`` at step k."""
    _check_positive("steps", steps)
    _check_positive("batch_size", batch_size)
    batch, _, height, width = start.shape
    n_pixels = height * width
    if steps > n_pixels:
        raise ValueError(f"steps must be at most the number of pixels {n_pixels}, got {steps}")
    changed = torch.arange(steps + 1, device=start.device) * n_pixels // steps  # (S+1,)
    probs = []
    with _inspecting(model), torch.no_grad():
        for b in range(batch):
            rank = torch.empty_like(order[b])
            rank[order[b]] = torch.arange(n_pixels, device=start.device)
            moved = (rank[None] < changed[:, None]).view(steps + 1, 1, height, width)  # (S+1, 1, H, W)
            images = torch.where(moved, end[b], start[b])
            probs.append(_probabilities(model, images, t[b].expand(steps + 1), batch_size))
    fractions = changed.to(start.dtype) / n_pixels
    p = torch.stack(probs) if probs else start.new_zeros(0, steps + 1)
    return Curve(fractions=fractions, probs=p, auc=torch.trapezoid(p, fractions, dim=1))


def deletion_curve(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, attribution: torch.Tensor, *,
                   steps: int = 50, baseline: float | torch.Tensor = 0.0, batch_size: int = 64) -> Curve:
    """Deletion metric (Petsiuk et al. 2018): replace the most important pixels first, watch the probability fall.

    Pixels (all channels at once) are ranked by decreasing attribution, summed over channels; at step k the first
    ``(k * H * W) // steps`` are set to ``baseline``, k = 0 .. steps. A faithful map gives a low area under the
    curve of the target probability (softmax of the logits).

    Args:
        model: maps x (B, C, H, W) to logits (B, K).
        x: (B, C, H, W) float images.
        target: the class, an int or a (B,) integer tensor.
        attribution: (B, C, H, W), (B, 1, H, W) or (B, H, W) importance of each pixel (upsample a coarse map
            first).
        steps: number of steps (the curve has steps + 1 points). Default 50.
        baseline: the value of a deleted pixel, a number or a tensor broadcastable to x. Default 0.0 (black).
        batch_size: images per forward pass. Default 64.

    Returns:
        :class:`Curve` (fractions, probs, auc).

    Raises:
        ValueError: an attribution of the wrong shape, steps outside 1 .. H*W, a bad baseline, or the target and
            model errors of :func:`deepnotes.explain.attribution.saliency`.
    """
    _check_images(x)
    t = _targets(target, len(x), x.device)
    order = _pixel_order(attribution, x)
    return _curve(model, x.detach(), _baseline_like(baseline, x).detach(), t, order, steps, batch_size)


def gaussian_blur(x: torch.Tensor, sigma: float = 5.0, size: int = 11) -> torch.Tensor:
    """Each channel convolved with a normalized ``size`` x ``size`` Gaussian of std ``sigma`` (replicate padding).

    RISE's insertion start image uses size 11 and sigma 5 with zero padding; replicate padding here keeps the
    borders from darkening. Raises ValueError for sigma <= 0 or an even or non-positive size.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd positive int, got {size!r}")
    offsets = torch.arange(size, dtype=x.dtype, device=x.device) - size // 2
    g = torch.exp(-offsets**2 / (2 * sigma**2))
    g = g / g.sum()
    channels = x.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, size, size)
    padded = F.pad(x, (size // 2,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, groups=channels)


def _start_image(start: str | float | torch.Tensor, x: torch.Tensor, blur_sigma: float,
                 blur_size: int) -> torch.Tensor:
    if isinstance(start, str):
        if start != "blur":
            raise ValueError(f"start must be 'blur', a number or a tensor, got {start!r}")
        return gaussian_blur(x, blur_sigma, blur_size)
    return _baseline_like(start, x, "start")


def insertion_curve(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, attribution: torch.Tensor, *,
                    steps: int = 50, start: str | float | torch.Tensor = "blur", blur_sigma: float = 5.0,
                    blur_size: int = 11, batch_size: int = 64) -> Curve:
    """Insertion metric (Petsiuk et al. 2018): from a blurred image, put back the most important pixels first.

    At step k the first ``(k * H * W) // steps`` pixels by decreasing attribution (summed over channels) take
    their values in ``x``, the others those of the start image. A faithful map gives a high area under the curve
    of the target probability.

    Args:
        model, x, target, attribution, steps, batch_size: as in :func:`deletion_curve`.
        start: the image before any insertion: ``"blur"`` (:func:`gaussian_blur` of x, RISE's choice), a number
            or a tensor broadcastable to x. Default ``"blur"``.
        blur_sigma, blur_size: the blur's Gaussian std and kernel size in pixels. Defaults 5.0 and 11 (RISE).

    Returns:
        :class:`Curve` (fractions, probs, auc).

    Raises:
        ValueError: as :func:`deletion_curve`, or a bad start or blur setting.
    """
    _check_images(x)
    t = _targets(target, len(x), x.device)
    order = _pixel_order(attribution, x)
    x = x.detach()
    return _curve(model, _start_image(start, x, blur_sigma, blur_size).detach(), x, t, order, steps, batch_size)


def random_order_auc(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, *, curve: str = "deletion",
                     n_orders: int = 1, generator: torch.Generator | None = None, steps: int = 50,
                     baseline: float | torch.Tensor = 0.0, start: str | float | torch.Tensor = "blur",
                     batch_size: int = 64) -> torch.Tensor:
    """Baseline for the curves: the mean AUC over ``n_orders`` uniformly random pixel orders.

    An attribution is only informative if its deletion AUC is below (insertion AUC above) this value.

    Args:
        model, x, target, steps, batch_size: as in :func:`deletion_curve`.
        curve: ``"deletion"`` (uses ``baseline``) or ``"insertion"`` (uses ``start``). Default ``"deletion"``.
        n_orders: random orders averaged. Default 1.
        generator: source of the orders (None: torch's default generator).
        baseline, start: as in :func:`deletion_curve` and :func:`insertion_curve`.

    Returns:
        (B,) mean AUC.

    Raises:
        ValueError: an unknown curve, n_orders < 1, or the errors of the curve.
    """
    _check_images(x)
    _check_positive("n_orders", n_orders)
    if curve not in ("deletion", "insertion"):
        raise ValueError(f"curve must be 'deletion' or 'insertion', got {curve!r}")
    device = generator.device if generator is not None else x.device
    total = x.new_zeros(len(x))
    for _ in range(n_orders):
        order = torch.rand((len(x), *x.shape[2:]), generator=generator, device=device).to(x.device)
        if curve == "deletion":
            result = deletion_curve(model, x, target, order, steps=steps, baseline=baseline, batch_size=batch_size)
        else:
            result = insertion_curve(model, x, target, order, steps=steps, start=start, batch_size=batch_size)
        total += result.auc
    return total / n_orders


def _randomizable(module: nn.Module) -> bool:
    return hasattr(module, "reset_parameters") and any(True for _ in module.parameters(recurse=False))


def _reinitialize(layer: nn.Module, generator: torch.Generator | None) -> None:
    """The layer's own initialization (``reset_parameters``), drawn from ``generator``; the global RNG unchanged."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)
        fresh = copy.deepcopy(layer).cpu()  # on the CPU, so the CPU generator draws whatever the layer's device
        fresh.reset_parameters()
        layer.load_state_dict(fresh.state_dict())


def _rank_correlation(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Spearman's rho between the absolute maps, per image, averaged over the batch; a constant map (e.g. Grad-CAM
    all zero once the weights are random) shares no ranking with the other: rho 0 (1 if both are constant)."""
    from scipy.stats import spearmanr

    def rho(u: np.ndarray, v: np.ndarray) -> float:
        flat_u, flat_v = bool(np.ptp(u) == 0), bool(np.ptp(v) == 0)
        return float(flat_u and flat_v) if flat_u or flat_v else float(spearmanr(u, v).statistic)

    a = reference.detach().abs().flatten(1).cpu().double().numpy()
    b = other.detach().abs().flatten(1).cpu().double().numpy()
    if a.shape != b.shape:
        raise ValueError(f"method returned maps of shape {tuple(other.shape)}, expected {tuple(reference.shape)}")
    return float(np.mean([rho(u, v) for u, v in zip(a, b)]))


def model_randomization(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                        method: Callable[[nn.Module, torch.Tensor, int | torch.Tensor], torch.Tensor], *,
                        layers: Sequence[str] | None = None,
                        generator: torch.Generator | None = None) -> list[tuple[str, float]]:
    """Cascading model-parameter randomization (Adebayo et al. 2018), on a deep copy of the model.

    The map ``method(model, x, target)`` is computed on the trained model; then, on a copy, the layers are
    re-initialized one after another (cumulatively) from the logits downward, and after each the map is computed
    again and compared with the original by Spearman's rank correlation of the absolute values (scipy's
    ``spearmanr``, per image, averaged over the batch). The first row, ``"original"``, compares the map of the
    untouched copy (1 for a deterministic method).

    Re-initializing uses the layer's own ``reset_parameters`` (PyTorch's default initialization; batch norm goes
    back to weight 1, bias 0 and fresh running statistics), with random numbers from ``generator``.

    Args:
        model: maps x (B, C, H, W) to logits (B, K); not modified.
        x: (B, C, H, W) float images.
        target: the class, an int or a (B,) integer tensor.
        method: ``method(model, x, target) -> map``, e.g. :func:`~deepnotes.explain.attribution.saliency`; a method
            needing a layer must look it up in the model it receives (the copy), e.g.
            ``lambda m, x, t: grad_cam(m, m.features[3], x, t)``; a stochastic method must fix its own seed.
        layers: names (as in ``model.named_modules()``) to re-initialize, in this order; None: every module with
            parameters of its own and a ``reset_parameters`` method, from the last registered to the first (the
            top-down order when modules are registered in forward order).
        generator: source of the new weights (None: torch's default generator).

    Returns:
        ``[("original", rho), (name, rho), ...]``, one row per randomized layer (rho is nan for a constant map).

    Raises:
        ValueError: a name in ``layers`` that is not a module of the model or cannot be re-initialized, no layer to
            randomize, or a method whose maps change shape.
    """
    _check_images(x)
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    if layers is None:
        names = [name for name, m in reversed(list(modules.items())) if _randomizable(m)]
    else:
        names = list(layers)
        for name in names:
            if name not in modules or not _randomizable(modules[name]):
                raise ValueError(f"layers: {name!r} is not a module of the model with its own parameters and a "
                                 "reset_parameters method")
    if not names:
        raise ValueError("the model has no layer to randomize (no module with parameters and reset_parameters)")
    reference = method(model, x, target)
    rows = [("original", _rank_correlation(reference, method(clone, x, target)))]
    for name in names:
        _reinitialize(modules[name], generator)
        rows.append((name, _rank_correlation(reference, method(clone, x, target))))
    return rows
