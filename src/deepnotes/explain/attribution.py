"""Local explanations of an image classifier: which pixels of *this* input its decision for a class depends on.

Sources:
- ML2021 (Hung-yi Lee), "機器學習模型的可解釋性 (Explainable ML) (上)": local explanation ("if changing or
  deleting a part changes the decision, that part is the reason"), the saliency map ``|dy_k/dx|``, SmoothGrad,
  and gradient saturation (past a certain length an elephant's trunk no longer changes the score, so its
  gradient says the trunk does not matter: the motivation for integrated gradients); its HW9 (Explainable AI)
  computes LIME, saliency, SmoothGrad and integrated-gradient maps.
- EE-559 (F. Fleuret) 9-3 "Visualizing in input": guided back-propagation ``1{s>0} 1{dl/dx>0} dl/dx`` "keeps only
  units which have a positive contribution and activation", and Grad-CAM "a sum of the activations weighted by the
  average gradient of the output of interest w.r.t. individual channels".
- Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks" (saliency);
  Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise";
  Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep Networks" (integrated gradients);
  Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks" (occlusion);
  Springenberg et al. 2015, "Striving for Simplicity: The All Convolutional Net" (guided backprop);
  Selvaraju et al. 2017, "Grad-CAM"; Ribeiro, Singh & Guestrin 2016, "Why Should I Trust You?" (LIME).

Conventions: ``model`` maps images ``x`` (B, C, H, W) to logits (B, K); ``target`` is an int (the same class for
every image) or a (B,) integer tensor; the "score" explained is the target logit (LIME uses the softmax
probability, as the paper). Maps are returned detached, with the shape of ``x`` unless said otherwise. During a
call the model is put in eval mode with its parameters' ``requires_grad`` off (gradients are taken with respect
to the input only); both are restored on exit, even on error, and no ``.grad`` or hook is left on the model.
Gradients of a batch are taken through the sum of the per-image scores, which assumes the images of a batch do
not interact (true in eval mode).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from itertools import product
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["LimeResult", "grad_cam", "guided_backprop", "integrated_gradients", "lime", "occlusion", "saliency",
           "smoothgrad"]

IG_METHODS = ("riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle", "gausslegendre")


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float tensor of shape (B, C, H, W), got {shape}")


def _targets(target: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """``target`` as a (batch,) int64 tensor on ``device``."""
    if isinstance(target, int) and not isinstance(target, bool):
        t = torch.full((batch,), target, dtype=torch.long, device=device)
    elif (isinstance(target, torch.Tensor) and target.shape == (batch,)
          and not target.is_floating_point() and not target.is_complex() and target.dtype != torch.bool):
        t = target.to(device=device, dtype=torch.long)
    else:
        got = tuple(target.shape) if isinstance(target, torch.Tensor) else repr(target)
        raise ValueError(f"target must be an int or a ({batch},) integer tensor of class indices, got {got}")
    if batch and int(t.min()) < 0:
        raise ValueError(f"target must be class indices >= 0, got {int(t.min())}")
    return t


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _logits(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model's logits (B, K), checked against the targets."""
    logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model must map x of shape {tuple(x.shape)} to logits (B, K), got {got}")
    if len(t) and int(t.max()) >= logits.shape[1]:
        raise ValueError(f"target {int(t.max())} is not a class of a model with {logits.shape[1]} outputs")
    return logits


def _scores(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B,) logit of each image's target class."""
    return _logits(model, x, t).gather(1, t[:, None]).squeeze(1)


def _probabilities(model: nn.Module, x: torch.Tensor, t: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) softmax probability of each image's target class, ``batch_size`` images per forward pass."""
    out = [_logits(model, x[i:i + batch_size], t[i:i + batch_size]).softmax(dim=1)
           .gather(1, t[i:i + batch_size, None]).squeeze(1) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else x.new_zeros(0)


@contextmanager
def _inspecting(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration; every module's mode and ``requires_grad`` restored."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def _input_gradients(model: nn.Module, x: torch.Tensor, t: torch.Tensor, batch_size: int) -> torch.Tensor:
    """d score_b / d x_b for each image, ``batch_size`` images per pass (the model is already being inspected)."""
    grads = []
    for i in range(0, len(x), batch_size):
        xi = x[i:i + batch_size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(_scores(model, xi, t[i:i + batch_size]).sum(), xi, materialize_grads=True)
        grads.append(g)
    return torch.cat(grads)


def _baseline_like(baseline: float | torch.Tensor | None, x: torch.Tensor, name: str = "baseline") -> torch.Tensor:
    """``baseline`` (None = zeros, a number, or a tensor broadcastable to ``x``) as a tensor of x's shape."""
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(device=x.device, dtype=x.dtype).expand_as(x)
        except RuntimeError:
            pass
    got = tuple(baseline.shape) if isinstance(baseline, torch.Tensor) else repr(baseline)
    raise ValueError(f"{name} must be None, a number or a tensor broadcastable to {tuple(x.shape)}, got {got}")


def saliency(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, *, abs: bool = True,
             batch_size: int = 64) -> torch.Tensor:
    """Saliency map: the gradient of the target logit with respect to each input pixel (Simonyan et al. 2014).

    ``M = |d y_target / d x|`` (``abs=True``, the lecture's map) or the signed gradient. Simonyan et al. show
    one value per pixel, the maximum over channels: ``saliency(...).amax(dim=1)``.

    Args:
        model: maps x (B, C, H, W) to logits (B, K).
        x: (B, C, H, W) float images.
        target: the class to explain, an int or a (B,) integer tensor.
        abs: return the absolute value of the gradient. Default True.
        batch_size: images per forward/backward pass. Default 64.

    Returns:
        (B, C, H, W) detached map, in logit units per pixel unit.

    Raises:
        ValueError: x is not (B, C, H, W) float, target is not a valid class, batch_size < 1, or the model does
            not return (B, K) logits.
    """
    _check_images(x)
    _check_positive("batch_size", batch_size)
    t = _targets(target, len(x), x.device)
    with _inspecting(model):
        g = _input_gradients(model, x, t, batch_size)
    return g.abs() if abs else g


def smoothgrad(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, *, n_samples: int = 50,
               sigma: float = 0.15, relative: bool = True, generator: torch.Generator | None = None,
               squared: bool = False, abs: bool = True, batch_size: int = 64) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the saliency map averaged over noisy copies of the input.

    ``M(x) = 1/n sum_i S(x + e_i)``, ``e_i ~ N(0, std^2)`` i.i.d. per pixel, with ``S`` the (absolute, ``abs=True``)
    gradient of the target logit, or ``S^2`` when ``squared`` (the "SmoothGrad-Squared" variant). The paper's
    noise level is ``std / (x_max - x_min)`` and it recommends 10-20 %, hence the default: with ``relative=True``
    ``std = sigma * (max(x_b) - min(x_b))`` per image, with ``relative=False`` ``std = sigma`` in pixel units.

    The noise of all samples is drawn up front as one (B * n_samples, C, H, W) standard-normal tensor from
    ``generator``, sample ``i`` of image ``b`` at row ``b * n_samples + i`` (the order captum's ``NoiseTunnel``
    uses), so a batch split into several passes gives the same numbers.

    Args:
        model: maps x (B, C, H, W) to logits (B, K).
        x: (B, C, H, W) float images.
        target: the class to explain, an int or a (B,) integer tensor.
        n_samples: noisy copies per image. Default 50 (the paper's choice).
        sigma: noise standard deviation, relative to each image's range or absolute (see ``relative``). Default 0.15.
        relative: ``sigma`` is a fraction of ``max(x_b) - min(x_b)`` (True, the paper) or in pixel units (False).
        generator: source of the noise (None: torch's default generator).
        squared: average the squared gradients instead. Default False.
        abs: average the absolute gradients (True, the lecture's saliency map) or the signed ones. Default True.
        batch_size: noisy images per forward/backward pass. Default 64.

    Returns:
        (B, C, H, W) detached map.

    Raises:
        ValueError: n_samples or batch_size < 1, sigma < 0, or the errors of :func:`saliency`.
    """
    _check_images(x)
    _check_positive("n_samples", n_samples)
    _check_positive("batch_size", batch_size)
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    t = _targets(target, len(x), x.device)
    std = x.new_full((len(x),), float(sigma))
    if relative:
        std = std * (x.flatten(1).amax(dim=1) - x.flatten(1).amin(dim=1))
    noise_device = generator.device if generator is not None else x.device
    noise = torch.randn((len(x) * n_samples, *x.shape[1:]), generator=generator, device=noise_device,
                        dtype=x.dtype).to(x.device)
    std = std.repeat_interleave(n_samples)[:, None, None, None]
    noisy = x.detach().repeat_interleave(n_samples, dim=0) + noise * std
    with _inspecting(model):
        g = _input_gradients(model, noisy, t.repeat_interleave(n_samples), batch_size)
    if abs:
        g = g.abs()
    if squared:
        g = g * g
    return g.view(len(x), n_samples, *x.shape[1:]).mean(dim=1)


def _quadrature(method: str, steps: int) -> tuple[list[float], list[float]]:
    """Points ``alpha_i`` in [0, 1] and weights ``w_i`` (summing to <= 1) of the rule for ``int_0^1 f(alpha)``."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
        return (0.5 * (nodes + 1)).tolist(), (0.5 * weights).tolist()
    if method == "riemann_trapezoid":
        alphas = [i / (steps - 1) for i in range(steps)]
        weights = [1 / steps] * steps
        weights[0] /= 2
        weights[-1] /= 2
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return [(i + offset) / steps for i in range(steps)], [1 / steps] * steps


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, *,
                         baseline: float | torch.Tensor | None = None, steps: int = 50,
                         method: str = "riemann_trapezoid", batch_size: int = 64,
                         return_delta: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients (Sundararajan et al. 2017): gradients averaged along the straight path from a baseline.

    ``IG_j(x) = (x_j - x'_j) * int_0^1 dF(x' + a (x - x')) / dx_j da``, the integral by a quadrature rule with
    ``steps`` points: ``riemann_trapezoid`` (a_i = i / (steps - 1), the end points weighted by half; the weights
    sum to 1 - 1/steps as in captum, so the rule is exact only in the limit), ``riemann_left`` / ``_middle`` /
    ``_right`` (a_i = (i + 0 / 0.5 / 1) / steps), or ``gausslegendre`` (Gauss-Legendre nodes mapped to [0, 1]).
    Unlike the plain gradient it does not vanish where the model saturates (the lecture's elephant trunk).

    Completeness: ``sum_j IG_j(x) = F(x) - F(x')`` for the exact integral; ``return_delta`` also returns the
    quadrature's error ``delta = sum_j IG_j - (F(x) - F(x'))`` per image (F = the target logit).

    Args:
        model: maps x (B, C, H, W) to logits (B, K).
        x: (B, C, H, W) float images.
        target: the class to explain, an int or a (B,) integer tensor.
        baseline: x', None (black image, zeros), a number, or a tensor broadcastable to x. Default None.
        steps: quadrature points. Default 50.
        method: one of ``IG_METHODS``. Default ``"riemann_trapezoid"``.
        batch_size: path images per forward/backward pass. Default 64.
        return_delta: also return the completeness delta. Default False.

    Returns:
        (B, C, H, W) detached map, or ``(map, delta)`` with delta (B,) when ``return_delta``.

    Raises:
        ValueError: unknown method, steps < 1 (< 2 for riemann_trapezoid), a baseline of the wrong shape, or the
            errors of :func:`saliency`.
    """
    _check_images(x)
    if method not in IG_METHODS:
        raise ValueError(f"method must be one of {IG_METHODS}, got {method!r}")
    _check_positive("steps", steps, 2 if method == "riemann_trapezoid" else 1)
    _check_positive("batch_size", batch_size)
    t = _targets(target, len(x), x.device)
    x = x.detach()
    base = _baseline_like(baseline, x).detach()
    alphas, weights = _quadrature(method, steps)
    diff = x - base
    total = torch.zeros_like(x)  # sum_i w_i dF/dx at x' + a_i (x - x')
    per_pass = max(1, batch_size // max(1, len(x)))  # whole steps per pass, so memory stays bounded
    with _inspecting(model):
        for i in range(0, steps, per_pass):
            chunk = range(i, min(i + per_pass, steps))
            path = torch.cat([base + alphas[k] * diff for k in chunk])  # step-major: rows j*B .. hold step i+j
            grads = _input_gradients(model, path, t.repeat(len(chunk)), batch_size).view(len(chunk), *x.shape)
            for j, k in enumerate(chunk):
                total += weights[k] * grads[j]
        attribution = diff * total
        if not return_delta:
            return attribution
        with torch.no_grad():
            gap = _scores(model, x, t) - _scores(model, base, t)
    return attribution, attribution.flatten(1).sum(dim=1) - gap


def _window(window: int | tuple[int, ...], channels: int) -> tuple[int, int, int]:
    if isinstance(window, int) and not isinstance(window, bool):
        return channels, window, window
    if isinstance(window, tuple) and len(window) == 2:
        return channels, *window
    if isinstance(window, tuple) and len(window) == 3:
        return window
    raise ValueError(f"window must be an int, (h, w) or (c, h, w), got {window!r}")


def occlusion(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, *, window: int | tuple[int, ...] = 4,
              stride: int | tuple[int, ...] | None = None, baseline: float | torch.Tensor = 0.0,
              batch_size: int = 64) -> torch.Tensor:
    """Occlusion (Zeiler & Fergus 2014): how much the target logit drops when a patch is hidden.

    A (c, h, w) window slides over the (C, H, W) image with the given strides; for every position the window's
    pixels are replaced by ``baseline`` and the drop ``F(x) - F(x_occluded)`` of the target logit is added to each
    covered pixel; each pixel's total is divided by the number of windows that covered it. Positions along a
    dimension of size D are ``0, s, 2s, ...`` up to the first that reaches the end, ``ceil((D - w) / s) + 1`` of
    them, the last one clipped at the border (captum's ``Occlusion``), so every pixel is covered.

    Args:
        model: maps x (B, C, H, W) to logits (B, K).
        x: (B, C, H, W) float images.
        target: the class to explain, an int or a (B,) integer tensor.
        window: the patch: an int k for a (C, k, k) square through all channels (the paper's grey square),
            (h, w) for a (C, h, w) one, or (c, h, w). Default 4.
        stride: an int for every dimension or a tuple like ``window``; None: the window size (patches tile the
            image without overlap). Each stride must be between 1 and the window's size along its dimension
            (larger would skip pixels), except along a dimension the window spans whole.
        baseline: the occluding value, a number or a tensor broadcastable to x. Default 0.0 (black).
        batch_size: occluded images per forward pass. Default 64.

    Returns:
        (B, C, H, W) detached map, in logit units (positive: hiding the pixel lowers the score).

    Raises:
        ValueError: a window larger than the image or non-positive, a stride out of range, or the errors of
            :func:`saliency`.
    """
    _check_images(x)
    _check_positive("batch_size", batch_size)
    dims = tuple(x.shape[1:])
    win = _window(window, dims[0])
    if stride is None:
        strides = win
    elif isinstance(stride, int) and not isinstance(stride, bool):
        strides = (stride,) * 3
    elif isinstance(stride, tuple) and len(stride) in (2, 3):
        strides = (win[0], *stride) if len(stride) == 2 else stride
    else:
        raise ValueError(f"stride must be None, an int, (h, w) or (c, h, w), got {stride!r}")
    if not all(isinstance(w, int) and 1 <= w <= d for w, d in zip(win, dims)):
        raise ValueError(f"window {win} must be positive and fit in the image {dims}")
    # A stride longer than the window would skip pixels, unless the window spans the whole dimension.
    if not all(isinstance(s, int) and s >= 1 and (s <= w or w == d) for s, w, d in zip(strides, win, dims)):
        raise ValueError(f"stride {strides} must be between 1 and the window {win} in every dimension")
    t = _targets(target, len(x), x.device)
    base = _baseline_like(baseline, x)
    starts = [range(0, (math.ceil((d - w) / s) + 1) * s, s) for d, w, s in zip(dims, win, strides)]
    windows = [tuple(slice(a, a + w) for a, w in zip(corner, win)) for corner in product(*starts)]
    total = torch.zeros_like(x)
    counts = x.new_zeros(dims)
    per_pass = max(1, batch_size // len(x)) if len(x) else 1
    with _inspecting(model), torch.no_grad():
        reference = _scores(model, x, t)
        for i in range(0, len(windows), per_pass):
            chunk = windows[i:i + per_pass]
            occluded = x.repeat(len(chunk), 1, 1, 1)  # window-major: rows j*B .. (j+1)*B - 1 hide window j
            for j, (c, h, w) in enumerate(chunk):
                rows = slice(j * len(x), (j + 1) * len(x))
                occluded[rows, c, h, w] = base[:, c, h, w]
            drops = reference.repeat(len(chunk)) - _scores(model, occluded, t.repeat(len(chunk)))
            for j, (c, h, w) in enumerate(chunk):
                total[:, c, h, w] += drops[j * len(x):(j + 1) * len(x), None, None, None]
                counts[c, h, w] += 1
    return total / counts


def _clamp_gradient(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp(min=0)


def _guided_relu_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
    # The gradient reaching the ReLU's output is clamped at 0 before the ReLU's own backward multiplies it by
    # 1{input > 0}: together 1{s > 0} 1{g > 0} g. Works for inplace ReLUs: the hook sits on the output node.
    if output.requires_grad:
        output.register_hook(_clamp_gradient)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, *,
                    batch_size: int = 64) -> torch.Tensor:
    """Guided back-propagation (Springenberg et al. 2015): a gradient whose ReLUs pass back only positive signals.

    Through each ``nn.ReLU`` module the backward pass sends ``1{s > 0} 1{g > 0} g`` (EE-559 9-3), with ``s`` the
    ReLU's input in the forward pass and ``g`` the gradient arriving at its output: where the plain gradient
    ``1{s > 0} g`` lets negative signals through, guided backprop also zeroes them, "keeping only units which have
    a positive contribution and activation". Only
    ``nn.ReLU`` modules (inplace or not) are changed, not ``F.relu`` calls, as in captum's ``GuidedBackprop``.

    Args:
        model: maps x (B, C, H, W) to logits (B, K); must contain ``nn.ReLU`` modules.
        x: (B, C, H, W) float images.
        target: the class to explain, an int or a (B,) integer tensor.
        batch_size: images per forward/backward pass. Default 64.

    Returns:
        (B, C, H, W) detached map (signed).

    Raises:
        ValueError: the model has no ``nn.ReLU`` module (the result would be the plain gradient), or the errors of
            :func:`saliency`.
    """
    _check_images(x)
    _check_positive("batch_size", batch_size)
    t = _targets(target, len(x), x.device)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("guided_backprop needs a model with nn.ReLU modules; this one has none")
    handles = []
    try:
        for m in relus:
            handles.append(m.register_forward_hook(_guided_relu_hook))
        with _inspecting(model):
            return _input_gradients(model, x, t, batch_size)
    finally:
        for handle in handles:
            handle.remove()


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int | torch.Tensor, *,
             upsample: bool = True) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): a layer's feature maps weighted by their average gradient.

    With ``A`` the layer's output (B, D, h, w) and ``y`` the target logit: ``w_k = mean_{i,j} dy / dA_kij`` and
    ``L = ReLU(sum_k w_k A_k)``, a coarse (h, w) map of the regions that raise the class score. The ReLU keeps
    the regions in favour of the class (captum's ``LayerGradCam`` needs ``relu_attributions=True`` for it).

    Args:
        model: maps x (B, C, H, W) to logits (B, K).
        layer: a submodule of ``model`` that runs once per forward pass and returns a (B, D, h, w) tensor; usually
            the last convolutional block. Its output is cloned in the forward pass, so a later inplace operation
            (an inplace ReLU after a convolution) does not change the ``A`` used here.
        x: (B, C, H, W) float images.
        target: the class to explain, an int or a (B,) integer tensor.
        upsample: bilinearly resize the map to (H, W) (``align_corners=False``). Default True.

    Returns:
        (B, 1, H, W) detached map if ``upsample`` else (B, 1, h, w).

    Raises:
        ValueError: ``layer`` is not a submodule of ``model``, does not run exactly once, or its output is not a
            4-d tensor; or the errors of :func:`saliency`.
    """
    _check_images(x)
    t = _targets(target, len(x), x.device)
    if not any(m is layer for m in model.modules()):
        raise ValueError("layer must be a submodule of model")
    outputs: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        outputs.append(output)
        return output.clone() if isinstance(output, torch.Tensor) else output

    handle = layer.register_forward_hook(keep)
    try:
        with _inspecting(model), torch.enable_grad():
            score = _scores(model, x.detach().clone().requires_grad_(True), t)
            if len(outputs) != 1:
                raise ValueError(f"layer must run once per forward pass, it ran {len(outputs)} times")
            activations = outputs[0]
            if not isinstance(activations, torch.Tensor) or activations.dim() != 4:
                got = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations)
                raise ValueError(f"layer must return a (B, D, h, w) tensor, got {got}")
            (grads,) = torch.autograd.grad(score.sum(), activations)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    if upsample:
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return cam


class LimeResult(NamedTuple):
    """What :func:`lime` found; ``map`` and ``weights`` first.

    Attributes:
        map: (C, H, W) each pixel's segment weight (the explanation as an image).
        weights: (S,) the surrogate's coefficient of each segment: the change of the target probability when the
            segment is shown rather than hidden.
        intercept: the surrogate's intercept (the probability with every segment hidden).
        segments: (H, W) int64 segment index of each pixel, 0 .. S-1.
        samples: (N, S) the sampled on/off masks z (row 0 is the unperturbed image, all ones).
        probs: (N,) the model's target probability on each perturbed image.
        sample_weights: (N,) the kernel weight pi(z) of each sample in the regression.
    """

    map: torch.Tensor
    weights: torch.Tensor
    intercept: float
    segments: torch.Tensor
    samples: torch.Tensor
    probs: torch.Tensor
    sample_weights: torch.Tensor


def _superpixels(image: torch.Tensor, n_segments: int, compactness: float | None) -> np.ndarray:
    from skimage.segmentation import slic

    pixels = image.detach().cpu().double().numpy()
    if compactness is None:
        compactness = 10.0 if len(pixels) == 3 else 0.1
    if len(pixels) == 1:
        return slic(pixels[0], n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=None)
    return slic(pixels.transpose(1, 2, 0), n_segments=n_segments, compactness=compactness, start_label=0,
                channel_axis=-1, convert2lab=len(pixels) == 3)


def lime(model: nn.Module, image: torch.Tensor, target: int, *, n_segments: int = 50, n_samples: int = 1000,
         kernel_width: float = 0.25, generator: torch.Generator | None = None,
         segments: torch.Tensor | np.ndarray | None = None, baseline: float | torch.Tensor | None = None,
         compactness: float | None = None, alpha: float = 1.0, batch_size: int = 64) -> LimeResult:
    """LIME (Ribeiro et al. 2016) for one image: a weighted linear surrogate over superpixels switched on and off.

    1. Segment the image into S superpixels (SLIC from scikit-image, or the given ``segments``).
    2. Draw N binary vectors z in {0, 1}^S, each segment on with probability 1/2 (row 0: all on, the image itself).
    3. Perturbed image: segments with z_s = 0 replaced by the baseline; record the model's softmax probability
       ``f(z)`` of the target class.
    4. Weight each sample by the exponential kernel of its cosine distance to the all-ones vector:
       ``d = 1 - sqrt(|z| / S)``, ``pi(z) = sqrt(exp(-d^2 / kernel_width^2))`` (the ``lime`` package's image
       explainer, kernel width 0.25).
    5. Fit ``f(z) ~ b + sum_s w_s z_s`` by ridge regression (scikit-learn ``Ridge(alpha)``, intercept fitted,
       sample weights pi); ``w_s`` is segment s's importance.

    Follows ``lime.lime_image`` (used by ML2021 HW9) for the sampling, the kernel, the hidden segments' colour
    (their mean colour, ``baseline=None``) and the ridge penalty, without its feature selection (every segment is
    kept).

    Args:
        model: maps x (B, C, H, W) to logits (B, K).
        image: (C, H, W) float image.
        target: the class to explain (an int).
        n_segments: approximate number of SLIC superpixels (ignored when ``segments`` is given). Default 50.
        n_samples: N, including the unperturbed image. Default 1000.
        kernel_width: width of the similarity kernel on the cosine distance. Default 0.25.
        generator: source of the masks (None: torch's default generator).
        segments: (H, W) integer labels to use instead of SLIC; relabelled 0 .. S-1 in sorted order.
        baseline: colour of a hidden segment: None (each segment's mean colour per channel), a number, or a
            (C, H, W)-broadcastable tensor. Default None.
        compactness: SLIC compactness; None: 10 for 3-channel images (SLIC in Lab space) and 0.1 otherwise
            (intensities in [0, 1]).
        alpha: ridge penalty. Default 1.0.
        batch_size: perturbed images per forward pass. Default 64.

    Returns:
        :class:`LimeResult` (map, weights, intercept, segments, samples, probs, sample_weights).

    Raises:
        ValueError: image is not (C, H, W) float, segments of the wrong shape, n_samples < 2, n_segments < 1,
            kernel_width <= 0, alpha < 0, or a target/model error as in :func:`saliency`.
    """
    from sklearn.linear_model import Ridge

    if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.is_floating_point():
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a float tensor of shape (C, H, W), got {shape}")
    if isinstance(target, torch.Tensor) and target.dim() == 0:
        target = int(target)
    _check_positive("n_samples", n_samples, 2)
    _check_positive("n_segments", n_segments)
    _check_positive("batch_size", batch_size)
    if not kernel_width > 0:
        raise ValueError(f"kernel_width must be > 0, got {kernel_width!r}")
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    t = _targets(target, 1, image.device)
    height, width = image.shape[1:]
    if segments is None:
        labels = _superpixels(image, n_segments, compactness)
    else:
        labels = segments.detach().cpu().numpy() if isinstance(segments, torch.Tensor) else np.asarray(segments)
        if labels.shape != (height, width) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"segments must be ({height}, {width}) integer labels, got {labels.shape} "
                             f"of {labels.dtype}")
    _, inverse = np.unique(labels, return_inverse=True)
    seg = torch.as_tensor(inverse.reshape(height, width), dtype=torch.long, device=image.device)
    n_seg = int(seg.max()) + 1
    image = image.detach()
    if baseline is None:
        flat = seg.flatten()
        sums = image.new_zeros(len(image), n_seg).index_add_(1, flat, image.flatten(1))
        sizes = torch.bincount(flat, minlength=n_seg).to(image.dtype)
        hidden = (sums / sizes)[:, seg]
    else:
        hidden = _baseline_like(baseline, image[None], "baseline")[0]
    gen_device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randint(0, 2, (n_samples, n_seg), generator=generator, device=gen_device).to(image.device)
    z[0] = 1
    with _inspecting(model), torch.no_grad():
        probs = []
        for i in range(0, n_samples, batch_size):
            shown = z[i:i + batch_size][:, seg][:, None].to(image.dtype)  # (n, 1, H, W)
            perturbed = image * shown + hidden * (1 - shown)
            probs.append(_probabilities(model, perturbed, t.expand(len(perturbed)), batch_size))
    f = torch.cat(probs)
    distance = 1 - torch.sqrt(z.sum(dim=1).double() / n_seg)
    kernel = torch.sqrt(torch.exp(-distance**2 / kernel_width**2))
    surrogate = Ridge(alpha=alpha, fit_intercept=True)
    surrogate.fit(z.cpu().double().numpy(), f.cpu().double().numpy(), sample_weight=kernel.cpu().numpy())
    weights = torch.as_tensor(surrogate.coef_, dtype=image.dtype, device=image.device)
    return LimeResult(map=weights[seg].expand_as(image).clone(), weights=weights,
                      intercept=float(surrogate.intercept_), segments=seg, samples=z.to(image.dtype),
                      probs=f, sample_weights=kernel.to(device=image.device, dtype=image.dtype))
