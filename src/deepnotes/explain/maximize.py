"""Global explanation by optimizing the input: the image a class or a filter likes most, under a "realistic" prior.

Source: EE-559 (Fleuret) 9-3 "Visualizing in input", *Optimizing inputs* (seed 003): "Since f is trained in a
discriminative manner, a sample x maximizing it has no reason to be realistic. We can mitigate this by adding a
penalty h corresponding to a realistic prior", that is compute::

    x* = argmax_x  f(x; w) - h(x),      h(x) = sum_{s >= 0} || delta^s(x) - g * delta^s(x) ||^2

"where g is a Gaussian kernel, and delta is a downscale-by-two operator": h "penalizes too much energy in the high
frequencies by integrating edge amplitude at multiple scales", and "the quadratic form of this penalty makes it
lower when the energy is spread-out across terms". ML2021 "Explainable ML (下): 機器心中的貓長什麼樣子?" (seed 001)
asks the same question, "What does a filter detect?": find the input that makes a filter's output (or a class's
score) as large as possible, and notes that without a prior the result looks like noise (an attack), so that a
readable picture needs "a lot of knowledge and processing" (the prior, or a generator); its lecture calls this a
*global* explanation (of the model), against the *local* ones of one input (ML2022 lecture 9, seed 002).

Here, with images (B, C, H, W) in pixels:

* :func:`multiscale_edge_energy` is h: ``delta`` is 2 x 2 average pooling (the notes do not name the operator; this
  is the plain one, and it floors odd sizes as ``avg_pool2d``), ``g`` a normalized sampled Gaussian of standard
  deviation ``sigma`` and radius ``int(2 sigma + 0.5)`` applied to each channel with replicated borders (as
  ``scipy.ndimage.gaussian_filter(mode="nearest", truncate=2.0)``, which the tests compare against), so that a
  constant image costs nothing; ``scales`` are the factors ``2^s`` kept (default 1, 2, 4, 8: s = 0 .. 3).
* :func:`maximize_activation` runs gradient ascent (Adam) on
  ``objective(model(x)) - prior_weight * h(x) - l2_weight * ||x||^2``, the second penalty being the L2 term of
  Simonyan et al., "Deep Inside Convolutional Networks: Visualising Image Classification Models and Saliency
  Maps" (2013); pixels are clamped to [0, 1] after each step by default.
* :func:`class_objective` (a class's logit) and :func:`filter_objective` (a channel's mean activation at a layer,
  read by a forward hook that lives only while the optimization runs).
* :func:`first_layer_filters`: the first convolution's kernels, the other classic look at what filters detect
  (EE-559 9-1 shows the first layer's filters as images; the seed summarizes only 9-2 and 9-3).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ActivationObjective", "class_objective", "filter_objective", "first_layer_filters",
           "gaussian_kernel1d", "maximize_activation", "multiscale_edge_energy"]


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """(2r + 1,) normalized samples of exp(-t^2 / (2 sigma^2)) at t = -r .. r, r = int(2 sigma + 0.5).

    Raises:
        ValueError: ``sigma`` not > 0.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    r = int(2 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-t**2 / (2 * sigma**2))
    return (k / k.sum()).to(dtype)


def _check_scales(scales: Sequence[int]) -> list[int]:
    levels = []
    for f in scales:
        if not isinstance(f, int) or f < 1 or f & (f - 1):
            raise ValueError(f"scales must be distinct powers of two (1, 2, 4, ...), got {tuple(scales)}")
        levels.append(f.bit_length() - 1)
    if not levels or len(set(levels)) != len(levels):
        raise ValueError(f"scales must be a non-empty set of distinct powers of two, got {tuple(scales)}")
    return levels


def _blur(u: Tensor, kernel: Tensor) -> Tensor:
    """Separable Gaussian blur of each channel of (B, C, H, W), replicated borders."""
    B, C, H, W = u.shape
    r = (len(kernel) - 1) // 2
    v = u.reshape(B * C, 1, H, W)
    v = F.conv2d(F.pad(v, (0, 0, r, r), mode="replicate"), kernel.view(1, 1, -1, 1))
    v = F.conv2d(F.pad(v, (r, r, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return v.reshape(B, C, H, W)


def multiscale_edge_energy(x: Tensor, scales: Sequence[int] = (1, 2, 4, 8), sigma: float = 1.0) -> Tensor:
    """EE-559's prior h(x) = sum_s ||delta^s(x) - g * delta^s(x)||^2, one value per image.

    Args:
        x: (B, C, H, W) images.
        scales: downscale factors 2^s to include; distinct powers of two. Default (1, 2, 4, 8).
        sigma: standard deviation of the Gaussian g, in pixels of each scale. Default 1.

    Returns:
        (B,) the energy of ``u - blur(u)`` summed over channels and pixels and over the scales, where ``u`` is
        ``x`` average-pooled 2 x 2 ``s`` times.

    Raises:
        ValueError: ``x`` not 4-D, bad ``scales`` or ``sigma``, or a scale that leaves no pixel.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    levels = _check_scales(scales)
    kernel = gaussian_kernel1d(sigma, x.dtype).to(x.device)
    if min(x.shape[2:]) >> max(levels) < 1:
        raise ValueError(f"scales: factor {2 ** max(levels)} leaves no pixel of a {x.shape[2]}x{x.shape[3]} image")
    total = x.new_zeros(x.shape[0])
    u = x
    for s in range(max(levels) + 1):
        if s:
            u = F.avg_pool2d(u, 2)
        if s in levels:
            total = total + (u - _blur(u, kernel)).pow(2).flatten(1).sum(1)
    return total


# ---------------------------------------------------------------------------------------------- objectives
def class_objective(class_index: int) -> Callable[[Tensor], Tensor]:
    """The objective "logit of class ``class_index``": maps logits (B, K) to (B,).

    The returned callable raises ValueError for an output that is not (B, K) with K > ``class_index``.
    """
    if class_index < 0:
        raise ValueError(f"class_index must be >= 0, got {class_index}")

    def objective(logits: Tensor) -> Tensor:
        if logits.ndim != 2 or not class_index < logits.shape[1]:
            raise ValueError(f"class_objective({class_index}) needs logits (B, K) with K > {class_index}, "
                             f"got shape {tuple(logits.shape)}")
        return logits[:, class_index]

    return objective


class ActivationObjective(AbstractContextManager):
    """The mean activation of one channel at one layer, read by a forward hook (see :func:`filter_objective`).

    Inside ``with objective:`` a forward hook on ``layer`` records, at each forward, the channel's activation
    averaged over its other dimensions (``act[:, channel]`` reshaped to (B, -1) and averaged: a (B, C, H, W) map
    gives its spatial mean, a (B, D) layer unit ``channel``). It is computed when the layer runs, so an in-place
    operation that follows (``ReLU(inplace=True)``) does not change it. Calling the objective with the model's
    output returns the value (B,) of the last forward. Leaving the ``with`` removes the hook.

    Raises:
        RuntimeError: called with no forward through ``layer`` inside ``with``.
        ValueError: ``channel`` outside the layer's channels, or a layer output that is not a tensor of >= 2 dims.
    """

    def __init__(self, layer: nn.Module, channel: int, name: str = ""):
        self.layer, self.channel, self.name = layer, channel, name or type(layer).__name__
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._value: Tensor | None = None

    def _hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if not isinstance(output, Tensor) or output.ndim < 2:
            raise ValueError(f"filter_objective: layer {self.name!r} must output a tensor (B, C, ...), got "
                             f"{type(output).__name__} {tuple(getattr(output, 'shape', ()))}")
        if not 0 <= self.channel < output.shape[1]:
            raise ValueError(f"filter_objective: channel must be in [0, {output.shape[1]}) for layer "
                             f"{self.name!r}, got {self.channel}")
        self._value = output[:, self.channel].reshape(output.shape[0], -1).mean(1)

    def __enter__(self) -> "ActivationObjective":
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._value = None, None

    def __call__(self, output: Tensor) -> Tensor:
        if self._value is None:
            raise RuntimeError(f"filter_objective: no activation of {self.name!r} recorded; call the model inside "
                               "`with objective:` (maximize_activation does)")
        return self._value


def filter_objective(model: nn.Module, layer: str, channel: int) -> ActivationObjective:
    """The objective "mean activation of channel ``channel`` of the module named ``layer``" (ML2021: what does a
    filter detect?).

    Args:
        model: the network; ``layer`` is one of its ``named_modules`` names (e.g. ``"features.0"``).
        channel: the channel (filter) index of that module's output.

    Returns:
        An :class:`ActivationObjective`: :func:`maximize_activation` enters it, so its hook lives only while the
        optimization runs.

    Raises:
        ValueError: no module named ``layer``, or a negative ``channel``.
    """
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(f"filter_objective: no module named {layer!r}; known: {', '.join(names)}") from None
    if channel < 0:
        raise ValueError(f"channel must be >= 0, got {channel}")
    return ActivationObjective(module, channel, layer)


# ---------------------------------------------------------------------------------------------- optimization
def maximize_activation(model: nn.Module, objective: Callable[[Tensor], Tensor],
                        shape: Sequence[int] = (1, 1, 28, 28), *, steps: int = 200, lr: float = 0.05,
                        prior_weight: float = 0.1, l2_weight: float = 0.0, scales: Sequence[int] = (1, 2, 4, 8),
                        sigma: float = 1.0, clamp: tuple[float, float] | None = (0.0, 1.0), init: Tensor | None = None,
                        generator: torch.Generator | None = None) -> Tensor:
    """The input that maximizes ``objective(model(x)) - prior_weight h(x) - l2_weight ||x||^2`` (EE-559 9-3).

    Gradient ascent with Adam (learning rate ``lr``, in pixels per step) on each image of the batch
    independently (the loss is the sum over images), ``h`` being :func:`multiscale_edge_energy`; after each step
    the pixels are clamped to ``clamp``. The model runs in eval mode with its parameters' ``requires_grad`` off;
    both are restored afterwards and no ``.grad`` is left on them. An ``objective`` that is a context manager (as
    :func:`filter_objective`'s) is entered around the whole run, so its hooks are removed afterwards, also on error.

    Args:
        model: maps (B, C, H, W) to an output that ``objective`` reads.
        objective: maps the model's output to one score per image (B,), e.g. :func:`class_objective`.
        shape: (B, C, H, W) of the images to optimize. Default (1, 1, 28, 28).
        steps: ascent steps (>= 0; 0 returns the starting images). Default 200.
        lr: Adam's step size. Default 0.05.
        prior_weight: weight of h (>= 0; 0 = no prior). Default 0.1 (h is ~50 for a 28 x 28 image of uniform
            noise, ~2 for the default start; a trained LeNet-5's logits are ~10-30).
        l2_weight: weight of ``||x||^2`` per image (>= 0). Default 0.
        scales, sigma: of h (see :func:`multiscale_edge_energy`).
        clamp: (low, high) pixel range after each step, or None for none. Default (0, 1).
        init: starting images of ``shape``; default ``0.5 + 0.1 u``, u uniform in [-1, 1) drawn from ``generator``.
        generator: the random source of the default start (None: a fixed one, seed 0). Same generator state,
            same result.

    Returns:
        (B, C, H, W) the optimized images, detached, on the model's device and dtype.

    Raises:
        ValueError: bad ``shape``, ``steps``, ``lr``, weights, ``clamp`` or ``init``; an objective whose
            output is not (B,).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"shape must be (B, C, H, W) of positive sizes, got {shape}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if prior_weight < 0 or l2_weight < 0:
        raise ValueError(f"prior_weight and l2_weight must be >= 0, got {prior_weight} and {l2_weight}")
    if clamp is not None and not clamp[0] < clamp[1]:
        raise ValueError(f"clamp must be (low, high) with low < high, or None; got {clamp}")
    if prior_weight:
        _check_scales(scales)
    p = next(model.parameters(), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    if init is None:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        x0 = 0.5 + 0.1 * (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1)
    else:
        if tuple(init.shape) != shape:
            raise ValueError(f"init must have shape {shape}, got {tuple(init.shape)}")
        x0 = init.detach()
    x = x0.to(device=device, dtype=dtype).clone()
    if clamp is not None:
        x.clamp_(*clamp)
    x.requires_grad_(True)

    was_training = model.training
    requires = [q.requires_grad for q in model.parameters()]
    context = objective if isinstance(objective, AbstractContextManager) else nullcontext()
    try:
        model.eval()
        for q in model.parameters():
            q.requires_grad_(False)
        opt = torch.optim.Adam([x], lr=lr)
        with context:
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                score = objective(model(x))
                if score.shape != (shape[0],):
                    raise ValueError(f"objective must return one score per image ({shape[0]},), got "
                                     f"{tuple(score.shape)}")
                gain = score
                if prior_weight:
                    gain = gain - prior_weight * multiscale_edge_energy(x, scales, sigma)
                if l2_weight:
                    gain = gain - l2_weight * x.pow(2).flatten(1).sum(1)
                (-gain.sum()).backward()
                opt.step()
                if clamp is not None:
                    with torch.no_grad():
                        x.clamp_(*clamp)
    finally:
        model.train(was_training)
        for q, r in zip(model.parameters(), requires):
            q.requires_grad_(r)
    return x.detach()


def first_layer_filters(model: nn.Module) -> Tensor:
    """The weights of the model's first ``Conv2d`` (in ``modules()`` order), for a grid of small images.

    Returns:
        (C_out, C_in, kH, kW) a detached copy; scale each filter to [0, 1] for display (their sign matters:
        a filter responds to inputs that look like it).

    Raises:
        ValueError: the model has no ``Conv2d``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().clone()
    raise ValueError(f"first_layer_filters: {type(model).__name__} has no nn.Conv2d")
