r"""Passive defenses: transform the input before the model (blur, median, JPEG, random resize and pad).

Source: ML2021 (Hung-yi Lee) "來自人類的惡意攻擊 (Adversarial Attack) (下)", "passive defense": put a filter
in front of the model (模糊化, blurring; image compression; a generator that redraws the image) so that the
carefully tuned attack signal is changed while the image barely is. The notes go on: if the attacker knows
the defense, the attack can include it too, so add randomness (Xie et al. 2018, "Mitigating Adversarial
Effects Through Randomization"). HW10 evaluates such defenses. Sources of each transform: Gaussian blur
(the lecture's smoothing), median filtering (Xu et al. 2018, "Feature Squeezing"), JPEG compression
(Dziugaite et al. 2016; Das et al. 2017), random resizing and padding (Xie et al. 2018).

All transforms take and return (B, C, H, W) images in [0, 1] with the same shape, and are differentiable so
that an attacker can attack through them (:class:`Defended`): blur and median exactly (the median passes the
gradient to the selected pixel), random resize-and-pad through the interpolation, and JPEG with the
straight-through estimator (BPDA, Athalye et al. 2018: the forward pass is JPEG, the backward pass the
identity).

The filters extend the border like scipy.ndimage (``mode``: ``"reflect"`` = half-sample symmetric
``d c b a | a b c d``, scipy's default; ``"mirror"`` = ``d c b | a b c d``; ``"nearest"``; ``"wrap"``;
``"constant"`` = zeros), so they equal ``scipy.ndimage.gaussian_filter`` and ``median_filter`` applied to
each channel.
"""

from __future__ import annotations

import io
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from deepnotes.attacks._checks import check_count, check_images, check_positive

__all__ = ["Defended", "gaussian_blur", "jpeg_compress", "median_filter", "random_resize_pad"]

BorderMode = Literal["reflect", "mirror", "nearest", "wrap", "constant"]


def _extend_indices(n: int, pad: int, mode: BorderMode, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """Source index of each of the n + 2 * pad positions of a line extended by ``pad`` on each side.

    Returns the (n + 2 pad,) indices and, for ``"constant"``, a float mask that zeroes the outside.
    """
    i = torch.arange(-pad, n + pad, device=device)
    mask = None
    if mode == "reflect":  # period 2n: a b c d | d c b a
        i = i % (2 * n)
        i = torch.where(i >= n, 2 * n - 1 - i, i)
    elif mode == "mirror":  # period 2n - 2: a b c d | c b
        period = max(2 * n - 2, 1)
        i = i % period
        i = torch.where(i >= n, period - i, i)
    elif mode == "nearest":
        i = i.clamp(0, n - 1)
    elif mode == "wrap":
        i = i % n
    elif mode == "constant":
        mask = ((i >= 0) & (i < n)).float()
        i = i.clamp(0, n - 1)
    else:
        raise ValueError(f"mode must be one of reflect, mirror, nearest, wrap, constant; got {mode!r}")
    return i, mask


def _extend(x: Tensor, pad: int, mode: BorderMode, dim: int) -> Tensor:
    """Extend ``x`` by ``pad`` positions on both sides of dimension ``dim``, as scipy.ndimage's ``mode``."""
    index, mask = _extend_indices(x.shape[dim], pad, mode, x.device)
    out = x.index_select(dim, index)
    if mask is not None:
        shape = [1] * x.dim()
        shape[dim] = -1
        out = out * mask.to(x.dtype).view(shape)
    return out


def gaussian_blur(x: Tensor, sigma: float, kernel_size: int | None = None, *, mode: BorderMode = "reflect") -> Tensor:
    r"""Separable Gaussian smoothing of each channel: ``k(t) ∝ exp(-t^2 / (2 sigma^2))``, t = -r..r, normalized.

    Equals ``scipy.ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode=mode, radius=r)`` (rows, then
    columns). The kernel is built in float64 and cast to ``x.dtype``.

    Args:
        x: (B, C, H, W) images in [0, 1].
        sigma: standard deviation in pixels, > 0.
        kernel_size: odd width 2r + 1; None uses scipy's ``r = int(4 sigma + 0.5)``. Default None.
        mode: border extension (module docstring). Default ``"reflect"`` (scipy's default).

    Returns:
        (B, C, H, W) blurred images.

    Raises:
        ValueError: on a bad ``x``, ``sigma`` <= 0, an even or non-positive ``kernel_size``, or unknown ``mode``.
    """
    check_images(x)
    check_positive(sigma, "sigma")
    if kernel_size is None:
        radius = int(4.0 * sigma + 0.5)
    elif isinstance(kernel_size, int) and kernel_size > 0 and kernel_size % 2 == 1:
        radius = kernel_size // 2
    else:
        raise ValueError(f"kernel_size must be a positive odd integer or None, got {kernel_size!r}")
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 / sigma**2 * t**2)
    kernel = (kernel / kernel.sum()).to(x.dtype).to(x.device)
    b, c, h, w = x.shape
    flat = x.reshape(b * c, 1, h, w)
    flat = F.conv2d(_extend(flat, radius, mode, -2), kernel.view(1, 1, -1, 1))
    flat = F.conv2d(_extend(flat, radius, mode, -1), kernel.view(1, 1, 1, -1))
    return flat.reshape(b, c, h, w)


def median_filter(x: Tensor, size: int = 3, *, mode: BorderMode = "reflect") -> Tensor:
    """Median of each ``size`` x ``size`` window of each channel (Xu et al. 2018's median smoothing).

    Equals ``scipy.ndimage.median_filter(x, size=(1, 1, size, size), mode=mode)``.

    Args:
        x: (B, C, H, W) images in [0, 1].
        size: odd window side, >= 1. Default 3.
        mode: border extension (module docstring). Default ``"reflect"`` (scipy's default).

    Returns:
        (B, C, H, W) filtered images.

    Raises:
        ValueError: on a bad ``x``, an even or non-positive ``size``, or unknown ``mode``.
    """
    check_images(x)
    check_count(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd, got {size}")
    b, c, h, w = x.shape
    padded = _extend(_extend(x.reshape(b * c, 1, h, w), size // 2, mode, -2), size // 2, mode, -1)
    windows = F.unfold(padded, kernel_size=size)  # (B C, size^2, H W)
    return windows.median(dim=1).values.reshape(b, c, h, w)


def jpeg_compress(x: Tensor, quality: int = 75, *, subsampling: int | None = None) -> Tensor:
    """JPEG round trip of each image with Pillow (the forward pass), identity in the backward pass (BPDA).

    Each image is rounded to uint8 (``round(255 x)``), saved as a grayscale (C = 1) or RGB (C = 3) JPEG at
    ``quality``, decoded, and divided by 255. The result is ``x + (jpeg(x) - x).detach()``: its values are
    the JPEG image's and its gradient is the identity.

    Args:
        x: (B, C, H, W) images in [0, 1], C in {1, 3}.
        quality: Pillow's JPEG quality, 1..100. Default 75.
        subsampling: chroma subsampling of RGB images, Pillow's code (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0);
            None keeps Pillow's default, 4:2:0 at every quality, so even quality 100 blurs colors. Default None.

    Returns:
        (B, C, H, W) images in [0, 1] (multiples of 1/255).

    Raises:
        ValueError: on a bad ``x``, C not in {1, 3}, ``quality`` outside 1..100 or ``subsampling`` not in
        {None, 0, 1, 2}.
    """
    check_images(x)
    if x.shape[1] not in (1, 3):
        raise ValueError(f"x must have 1 or 3 channels for JPEG, got {x.shape[1]}")
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in 1..100, got {quality!r}")
    if subsampling not in (None, 0, 1, 2):
        raise ValueError(f"subsampling must be None, 0, 1 or 2, got {subsampling!r}")
    options = {} if subsampling is None else {"subsampling": subsampling}
    pixels = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="JPEG",
                                                                               quality=quality, **options)
        buffer.seek(0)
        decoded.append(np.asarray(Image.open(buffer)).reshape(image.shape))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255
    return x + (out - x).detach()


def random_resize_pad(x: Tensor, *, max_scale: float = 1.15, mode: str = "nearest",
                      generator: torch.Generator | None = None) -> Tensor:
    r"""Random resizing and padding (Xie et al. 2018), resized back so the model sees its usual size.

    With ``H' = round(H * max_scale)`` (``W'`` alike): resize the batch to ``r x r_w`` with r drawn uniformly
    from the integers ``[H, H')`` and ``r_w = round(r * W / H)`` (capped at ``W' - 1``), zero-pad it at a
    random offset (top in ``[0, H' - r)``, left in ``[0, W' - r_w)``, as the authors' code) to ``H' x W'``,
    then resize back to ``H x W``. The paper (299 -> [299, 331) -> 331, about ``max_scale = 1.107``) feeds the
    padded image to the network directly; the last resize keeps the input size for any model here, so the
    net effect is a random shrink by ``r / H'`` plus a random shift, with zeros around. One draw (r, top,
    left, in that order) for the whole batch, as in the authors' code. Differentiable in ``x``.

    Args:
        x: (B, C, H, W) images in [0, 1].
        max_scale: ``H' / H``, with ``round(H * max_scale) > H``. Default 1.15.
        mode: ``F.interpolate`` mode for both resizes. Default ``"nearest"`` (the paper's).
        generator: for the draws (None: torch's default generator). Default None.

    Returns:
        (B, C, H, W) transformed images.

    Raises:
        ValueError: on a bad ``x`` or a ``max_scale`` too small to leave room for padding.
    """
    check_images(x)
    h, w = x.shape[-2:]
    h_out, w_out = round(h * max_scale), round(w * max_scale)
    if h_out <= h or w_out <= w:
        raise ValueError(f"max_scale={max_scale} leaves no room to pad images of size {h}x{w}")
    where = generator.device if generator is not None else None  # scalar draws: on the generator's device
    r = int(torch.randint(h, h_out, (1,), generator=generator, device=where))
    r_w = min(round(r * w / h), w_out - 1)
    top = int(torch.randint(0, h_out - r, (1,), generator=generator, device=where))
    left = int(torch.randint(0, w_out - r_w, (1,), generator=generator, device=where))
    resized = F.interpolate(x, size=(r, r_w), mode=mode)
    padded = F.pad(resized, [left, w_out - r_w - left, top, h_out - r - top], value=0)
    return F.interpolate(padded, size=(h, w), mode=mode)


class Defended(nn.Module):
    r"""``model(transform(x))``: a model behind an input-transformation defense, attackable end to end.

    A random transform draws from the generator the module holds: pass ``generator`` and every forward pass
    calls ``transform(x, generator=self.generator)``, so successive calls see fresh draws and re-seeding
    (``defended.generator.manual_seed(s)``) replays them. Without ``generator`` the transform is called as
    ``transform(x)`` (a deterministic transform, or a random one using torch's default generator).
    Attack a random defense with ``eot_samples > 1`` (Expectation over Transformation).

    Example::

        Defended(model, functools.partial(gaussian_blur, sigma=1.0))
        Defended(model, random_resize_pad, generator=torch.Generator().manual_seed(0))

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K).
        transform: maps images to images of the same shape; it must accept a ``generator`` keyword when
            ``generator`` is given.
        generator: the generator the transform draws from. Default None.

    Shapes:
        x: (B, C, H, W) in [0, 1] -> logits (B, K).
    """

    def __init__(self, model: nn.Module, transform: Callable[..., Tensor], *,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.model = model
        self.transform = transform
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        if self.generator is None:
            return self.model(self.transform(x))
        return self.model(self.transform(x, generator=self.generator))
