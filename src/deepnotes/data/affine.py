"""Small random rotations and scalings of image batches: augmentation for digits, where mirrors are not allowed.

Source: ML2021/2022 lecture 3 (CNN) and its notes on overfitting: "data augmentation (flips, enlarging, but it has
to be reasonable: hardly a 180-degree rotation)", and "CNN is not invariant to scaling and rotation" -- so the
network has to see them; Simard, Steinkraus & Platt 2003, "Best practices for convolutional neural networks applied
to visual document analysis" (affine distortions of MNIST digits in training).

An image is turned by an angle theta and scaled by s about its centre: with pixel coordinates (x right, y down)
measured from the centre, the point q goes to p = s R q, R = [[cos theta, sin theta], [-sin theta, cos theta]], so a
positive angle turns the image counter-clockwise on the screen (as ``np.rot90`` and ``scipy.ndimage.rotate``). Each
output pixel p reads the input at q = R^T p / s by bilinear interpolation (:func:`torch.nn.functional.grid_sample`,
pixel centres as the sampling points), and is 0 (black) where q falls outside the image. The batched twin of
:func:`deepnotes.data.distorted.rotate_scale_translate` (one numpy image at a time, through scipy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def affine_warp(x: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Turn image i by ``degrees[i]`` (counter-clockwise on screen) and scale it by ``scale[i]`` about its centre.

    Args:
        x: (B, C, H, W) images, any dtype (integer dtypes are rounded and clamped back to their range).
        degrees: (B,) angles in degrees.
        scale: (B,) positive scale factors (> 1 enlarges).

    Returns:
        (B, C, H, W) tensor of ``x``'s dtype and device; bilinear interpolation, black outside the image.

    Raises:
        ValueError: ``degrees`` or ``scale`` is not (B,), or a scale is not positive.
    """
    B = x.shape[0]
    if degrees.shape != (B,) or scale.shape != (B,):
        raise ValueError(f"degrees and scale must be ({B},) for x of shape {tuple(x.shape)}, got "
                         f"{tuple(degrees.shape)} and {tuple(scale.shape)}")
    if not bool((scale > 0).all()):
        raise ValueError(f"scale must be positive, got min {float(scale.min())}")
    theta = torch.deg2rad(degrees.double())
    cos, sin, inv = torch.cos(theta), torch.sin(theta), 1.0 / scale.double()
    zero = torch.zeros_like(cos)
    # q = R^T p / s in the normalized coordinates of affine_grid ((-1, -1) top left, (1, 1) bottom right), whose
    # x and y units are W / 2 and H / 2 pixels
    ratio = x.shape[-1] / x.shape[-2]
    inverse = torch.stack([torch.stack([cos * inv, -sin * inv / ratio, zero], 1),
                           torch.stack([sin * inv * ratio, cos * inv, zero], 1)], 1)  # (B, 2, 3)
    work = x if x.dtype.is_floating_point else x.float()
    grid = F.affine_grid(inverse.to(work.dtype).to(x.device), list(x.shape), align_corners=False)  # (B, H, W, 2)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if x.dtype.is_floating_point:
        return out
    info = torch.iinfo(x.dtype)
    return out.round().clamp(info.min, info.max).to(x.dtype)


def random_affine(x: torch.Tensor, degrees: float = 10.0, scale: float = 0.1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Turn each image by an angle drawn from U(-degrees, degrees) and scale it by a factor drawn from
    U(1 - scale, 1 + scale), independently per image (:func:`affine_warp`).

    Args:
        x: (B, C, H, W) images, any dtype.
        degrees: the largest angle in degrees, in [0, 180]. Default 10.
        scale: the largest relative change of size, in [0, 1). Default 0.1.
        generator: CPU generator for the draws (seeded by the engine per epoch).

    Returns:
        (B, C, H, W) tensor of ``x``'s dtype; ``x`` itself when both ranges are 0.

    Raises:
        ValueError: ``degrees`` or ``scale`` outside its range.
    """
    if not 0.0 <= degrees <= 180.0:
        raise ValueError(f"degrees must be in [0, 180], got {degrees}")
    if not 0.0 <= scale < 1.0:
        raise ValueError(f"scale must be in [0, 1), got {scale}")
    if degrees == 0.0 and scale == 0.0:
        return x
    B = x.shape[0]
    angle = (torch.rand(B, generator=generator, dtype=torch.float64) * 2 - 1) * degrees
    factor = 1 + (torch.rand(B, generator=generator, dtype=torch.float64) * 2 - 1) * scale
    return affine_warp(x, angle, factor)

