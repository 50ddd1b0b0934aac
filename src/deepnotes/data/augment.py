"""Data augmentation on batches of images, and the test-time augmentation of AlexNet.

Source: EE-559 8-2 "image classification", AlexNet (Krizhevsky et al. 2012): "data augmentation
during training to reduce over-fitting", and "during test: the prediction is averaged over five
random crops and their horizontal reflections". Here the five crops are the centre and the four
corners of the image padded by ``padding`` pixels (the AlexNet crops of a 256-pixel image scaled to
a 28-pixel one), and the reflections are used only where a mirror image is still a valid example
of its class (Fashion-MNIST: yes; digits: no, a mirrored 2 is not a 2).

All functions take and return batched tensors (B, C, H, W) and run on any device.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad each image by ``padding`` pixels, then cut a random H x W window from it.

    Equivalent to shifting every image by an independent random offset in
    ``[-padding, padding]`` pixels along each axis and filling the uncovered border with zeros.

    Args:
        x: (B, C, H, W) images, any dtype.
        padding: pixels of zero padding on each side (0 returns ``x`` unchanged).
        generator: CPU generator for the offsets (seeded by the engine per epoch).

    Returns:
        (B, C, H, W) tensor of the same dtype.

    Raises:
        ValueError: ``padding`` is negative.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    B, C, H, W = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    oy = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[b, c, rows, cols]  # (B, C, H, W)


def random_hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``. Shapes: (B, C, H, W) -> same."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erasing(x: torch.Tensor, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.4), ratio: float = 0.3,
                   value_range: tuple[float, float] = (0.0, 255.0), generator: torch.Generator | None = None,
                   max_tries: int = 32) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017, Algorithm 1): with probability ``p``, fill one random rectangle of
    each image with uniform random values.

    The rectangle has area ``S_e ~ U(scale) * H * W`` and aspect ratio ``r_e ~ U(ratio, 1 / ratio)``, so
    ``H_e = sqrt(S_e r_e)`` and ``W_e = sqrt(S_e / r_e)`` (rounded to pixels), at a top-left corner drawn
    uniformly over the image; a draw that does not fit inside the image is redrawn. Algorithm 1
    redraws until one fits; here at most ``max_tries`` draws are made and an image none of whose
    draws fits is left unchanged (at most 1% of erasures with the defaults on a 28 x 28 image).
    All channels share the rectangle; each pixel of it gets an independent value.

    Args:
        x: (B, C, H, W) images, any dtype (integer dtypes get rounded values).
        p: erasing probability per image, in [0, 1] (the paper: 0.5).
        scale: (s_l, s_h), the share of the image area erased (the paper: 0.02, 0.4).
        ratio: r_1 in (0, 1], the aspect-ratio bound (the paper: 0.3).
        value_range: the fill values are uniform in this interval (the paper: the pixel range).
        generator: CPU generator for all draws (seeded by the engine per epoch).
        max_tries: draws per image.

    Returns:
        (B, C, H, W) tensor of the same dtype and device.

    Raises:
        ValueError: ``p``, ``scale`` or ``ratio`` outside their ranges.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"scale must be (s_l, s_h) with 0 < s_l <= s_h <= 1, got {scale}")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    if p == 0.0:
        return x
    B, C, H, W = x.shape
    area = torch.empty(B, max_tries).uniform_(scale[0], scale[1], generator=generator) * (H * W)
    r = torch.empty(B, max_tries).uniform_(ratio, 1.0 / ratio, generator=generator)
    h, w = (area * r).sqrt().round().long(), (area / r).sqrt().round().long()
    y0 = (torch.rand(B, max_tries, generator=generator) * H).long()
    x0 = (torch.rand(B, max_tries, generator=generator) * W).long()
    fits = (h >= 1) & (w >= 1) & (y0 + h <= H) & (x0 + w <= W)
    erase = (torch.rand(B, generator=generator) < p) & fits.any(dim=1)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first draw that fits
    h, w, y0, x0 = (t.gather(1, first) for t in (h, w, y0, x0))  # (B, 1) each
    rows, cols = torch.arange(H), torch.arange(W)
    inside_y = (rows >= y0) & (rows < y0 + h)  # (B, H)
    inside_x = (cols >= x0) & (cols < x0 + w)  # (B, W)
    mask = (inside_y[:, :, None] & inside_x[:, None, :] & erase[:, None, None])[:, None]  # (B, 1, H, W)
    fill = torch.empty(B, C, H, W).uniform_(value_range[0], value_range[1], generator=generator)
    if not x.dtype.is_floating_point:
        fill = fill.round()
    return torch.where(mask.to(x.device), fill.to(device=x.device, dtype=x.dtype), x)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate every image by (dy, dx) pixels, filling with zeros: the crop at offset (p+dy, p+dx) of the padded image."""
    if dy == 0 and dx == 0:
        return x
    H, W = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p))
    return padded[..., p - dy : p - dy + H, p - dx : p - dx + W]


def tta_views(x: torch.Tensor, padding: int, hflip: bool) -> list[torch.Tensor]:
    """The test-time views: the image and its four corner crops (shifts by +-padding), and their mirrors.

    Returns:
        A list of 1, 2, 5 or 10 tensors shaped like ``x`` (the first is ``x`` itself).
    """
    offsets = [(0, 0)]
    if padding > 0:
        offsets += [(-padding, -padding), (-padding, padding), (padding, -padding), (padding, padding)]
    views = [shift(x, dy, dx) for dy, dx in offsets]
    if hflip:
        views += [v.flip(-1) for v in views]
    return views


@torch.no_grad()
def tta_probabilities(model: torch.nn.Module, x: torch.Tensor, padding: int, hflip: bool,
                      normalize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Average of ``softmax(model(normalize(view)))`` over :func:`tta_views` of the raw images ``x``.

    The views are cut from the *raw* images (uint8 or [0, 1] pixels), so the border a shift uncovers
    is black, exactly as in :func:`random_crop` during training; ``normalize`` is then applied to each
    view. (Shifting already-normalized images would fill the border with the mean pixel instead.)

    Shapes:
        x: (B, C, H, W) -> (B, K).
    """
    normalize = normalize or (lambda v: v)
    views = tta_views(x, padding, hflip)
    probs = sum(model(normalize(view)).float().softmax(dim=-1) for view in views)
    return probs / len(views)
