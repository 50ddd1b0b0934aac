"""Spatial transformer: a localization network, a sampling grid and a differentiable bilinear sampler.

Source: ML2021 Spring (Hung-yi Lee), "Spatial Transformer Layer" (使 CNN 具有旋转平移不变性: it gives a CNN
invariance to rotation, translation and scale; the notes of seed 000). Paper: Jaderberg, Simonyan, Zisserman and
Kavukcuoglu 2015, "Spatial Transformer Networks" (NeurIPS), section 3:

- eq. (1), the grid generator: each output pixel's normalized target coordinates ``(x^t, y^t)`` are mapped to source
  coordinates ``(x^s, y^s) = A_θ (x^t, y^t, 1)^T`` with ``A_θ`` a 2x3 affine matrix. Coordinates are normalized to
  ``[-1, 1]`` (-1 = left/top, +1 = right/bottom) so θ does not depend on the image size. Section 3.2 also allows a
  projective ``T_θ`` (8 parameters): ``(x', y', w) = H (x^t, y^t, 1)^T`` and ``(x^s, y^s) = (x'/w, y'/w)``.
- eqs. (3)-(5), the sampler: ``V_i = Σ_n Σ_m U_nm max(0, 1 - |x^s_i - m|) max(0, 1 - |y^s_i - n|)``, the bilinear
  kernel, with ``(x^s_i, y^s_i)`` in pixel units; pixels outside the image count as zero.
- eqs. (6)-(7), its (sub-)gradients: ``∂V/∂U_nm`` is the kernel weight, and ``∂V/∂x^s`` is
  ``Σ U_nm max(0, 1 - |y^s - n|) · (+1 if m >= x^s else -1)`` over the two neighbouring columns. Here they come
  from autograd through the gathers of :func:`grid_sample`: the weight ``x^s - floor(x^s)`` has derivative 1, the
  floor has derivative 0, which is exactly the paper's sub-gradient (tested equal to ``F.grid_sample``'s).
- Section 4.2: the regression layers "are initialised to predict the identity transform" (here: zero weights,
  identity bias), so training begins by classifying the untouched input.

Pixel conventions follow ``torch.nn.functional.affine_grid`` / ``grid_sample`` exactly (both ``align_corners``
values), so the readable functions here and the fast library ones are interchangeable and tested equal:
``align_corners=True`` puts -1 and +1 on the centres of the corner pixels, ``False`` (the default) on their outer
edges. Grids are ``(B, H, W, 2)`` with the last dimension ``(x, y)``: x indexes columns (W), y rows (H).

Deliberate differences from the paper: no thin-plate-spline transform (affine and projective only); the
projective division clamps ``|w|`` to at least ``eps`` so a degenerate homography cannot divide by zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Number of regressed parameters per transform: an affine 2x3 matrix, a projective 3x3 matrix with h33 = 1.
TRANSFORMS: dict[str, int] = {"affine": 6, "projective": 8}


def _check_size(size: tuple[int, ...] | torch.Size, batch: int) -> tuple[int, int]:
    if len(size) != 4:
        raise ValueError(f"size must be (B, C, H, W), got {tuple(size)}")
    if size[0] != batch:
        raise ValueError(f"size[0] = {size[0]} must equal the batch of the transform ({batch})")
    if size[2] < 1 or size[3] < 1:
        raise ValueError(f"size must have H, W >= 1, got {tuple(size)}")
    return int(size[2]), int(size[3])


def _normalized_coords(n: int, align_corners: bool, like: Tensor) -> Tensor:
    """The normalized coordinates of ``n`` pixel centres along one axis, (n,) in the dtype/device of ``like``.

    ``align_corners=True``: ``-1 + 2 j / (n - 1)`` (first and last centres at -1 and +1);
    ``False``: ``(2 j + 1) / n - 1`` (image edges at -1 and +1). A single pixel sits at 0.
    """
    if n == 1:
        return torch.zeros(1, dtype=like.dtype, device=like.device)
    coords = torch.linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device)
    return coords if align_corners else coords * (n - 1) / n


def _base_grid(h: int, w: int, align_corners: bool, like: Tensor) -> Tensor:
    """Homogeneous target coordinates ``(x^t, y^t, 1)`` of every output pixel, (H, W, 3)."""
    xs = _normalized_coords(w, align_corners, like)  # (W,)
    ys = _normalized_coords(h, align_corners, like)  # (H,)
    grid = torch.ones(h, w, 3, dtype=like.dtype, device=like.device)
    grid[..., 0] = xs  # broadcast over rows
    grid[..., 1] = ys[:, None]  # broadcast over columns
    return grid


def affine_grid(theta: Tensor, size: tuple[int, ...] | torch.Size, align_corners: bool = False) -> Tensor:
    """Sampling grid of an affine transform (eq. 1): source coordinates ``A_θ (x^t, y^t, 1)^T`` per output pixel.

    Args:
        theta: (B, 2, 3) float, the affine matrices ``A_θ`` acting on normalized coordinates.
        size: the output's (B, C, H, W) (C is ignored).
        align_corners: whether -1 and +1 are the corner pixels' centres (True) or their outer edges (False,
            the default, as in ``torch.nn.functional.affine_grid``).

    Returns:
        (B, H, W, 2) source coordinates ``(x^s, y^s)`` in normalized [-1, 1] units, for :func:`grid_sample`.

    Raises:
        ValueError: ``theta`` is not (B, 2, 3), or ``size`` is not a matching (B, C, H, W).

    Example::

        identity = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
        grid = affine_grid(identity, (1, 1, 28, 28))  # grid_sample(x, grid) == x
    """
    if theta.dim() != 3 or theta.shape[1:] != (2, 3):
        raise ValueError(f"theta must be (B, 2, 3), got shape {tuple(theta.shape)}")
    h, w = _check_size(size, theta.shape[0])
    base = _base_grid(h, w, align_corners, theta)  # (H, W, 3)
    grid = base.reshape(1, h * w, 3) @ theta.transpose(1, 2)  # (B, H*W, 2)
    return grid.reshape(theta.shape[0], h, w, 2)


def projective_grid(homography: Tensor, size: tuple[int, ...] | torch.Size, align_corners: bool = False,
                    eps: float = 1e-6) -> Tensor:
    """Sampling grid of a projective transform (section 3.2): ``(x', y', w) = H (x^t, y^t, 1)^T``, then
    ``(x^s, y^s) = (x' / w, y' / w)``.

    With last row ``(0, 0, 1)``, ``w = 1`` and this is :func:`affine_grid` of the first two rows.

    Args:
        homography: (B, 3, 3) float, the matrices ``H`` acting on normalized homogeneous coordinates.
        size: the output's (B, C, H, W) (C is ignored).
        align_corners: as in :func:`affine_grid`. Default False.
        eps: ``|w|`` is clamped to at least ``eps`` (keeping its sign) before dividing. Default 1e-6.

    Returns:
        (B, H, W, 2) source coordinates in normalized [-1, 1] units.

    Raises:
        ValueError: ``homography`` is not (B, 3, 3), ``size`` does not match, or ``eps <= 0``.
    """
    if homography.dim() != 3 or homography.shape[1:] != (3, 3):
        raise ValueError(f"homography must be (B, 3, 3), got shape {tuple(homography.shape)}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    h, w = _check_size(size, homography.shape[0])
    base = _base_grid(h, w, align_corners, homography)  # (H, W, 3)
    points = base.reshape(1, h * w, 3) @ homography.transpose(1, 2)  # (B, H*W, 3)
    denom = points[..., 2:]  # (B, H*W, 1)
    denom = torch.where(denom >= 0, denom.clamp(min=eps), denom.clamp(max=-eps))
    return (points[..., :2] / denom).reshape(homography.shape[0], h, w, 2)


def _unnormalize(coord: Tensor, n: int, align_corners: bool) -> Tensor:
    """Normalized [-1, 1] coordinates -> pixel units (0 = centre of the first pixel), the inverse of the grids'."""
    if align_corners:
        return (coord + 1) / 2 * (n - 1)
    return ((coord + 1) * n - 1) / 2


def grid_sample(input: Tensor, grid: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear sampling with zero padding (eqs. 3-5): ``V_i = Σ_nm U_nm max(0, 1-|x_i-m|) max(0, 1-|y_i-n|)``.

    Only the four pixels around ``(x_i, y_i)`` have a non-zero kernel weight, so each output pixel gathers
    ``U`` at ``(floor(x), floor(y))`` and its three neighbours, weighted by the kernel; neighbours outside the image
    contribute zero. Values and gradients (w.r.t. ``input`` and ``grid``, eqs. 6-7) equal
    ``torch.nn.functional.grid_sample(input, grid, mode="bilinear", padding_mode="zeros")``.

    Args:
        input: (B, C, H_in, W_in) float, the feature map ``U``.
        grid: (B, H_out, W_out, 2) float, source coordinates ``(x, y)`` in normalized [-1, 1] units
            (from :func:`affine_grid` or :func:`projective_grid`); values outside [-1, 1] sample the zero padding.
        align_corners: the normalization convention of ``grid`` (see :func:`affine_grid`). Default False.

    Returns:
        (B, C, H_out, W_out), the output ``V``, in ``input``'s dtype.

    Raises:
        ValueError: ``input`` is not 4-D, ``grid`` is not (B, H_out, W_out, 2) with ``input``'s batch.
    """
    if input.dim() != 4:
        raise ValueError(f"input must be (B, C, H, W), got shape {tuple(input.shape)}")
    if grid.dim() != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(f"grid must be (B, H_out, W_out, 2) with B = {input.shape[0]}, got {tuple(grid.shape)}")
    b, c, h, w = input.shape
    h_out, w_out = grid.shape[1:3]
    # Pixel coordinates; clamping to [-2, size + 1] keeps the integer casts safe and changes nothing: a point
    # beyond the clamp has all four neighbours outside the image (value 0, gradient 0) before and after it.
    x = _unnormalize(grid[..., 0], w, align_corners).clamp(-2, w + 1)  # (B, H_out, W_out)
    y = _unnormalize(grid[..., 1], h, align_corners).clamp(-2, h + 1)
    x0, y0 = torch.floor(x), torch.floor(y)
    wx1, wy1 = x - x0, y - y0  # kernel weights of the right / lower neighbours, eq. (5)
    wx0, wy0 = 1 - wx1, 1 - wy1
    x0, y0 = x0.long(), y0.long()
    flat = input.reshape(b, c, h * w)  # (B, C, H*W)
    out = input.new_zeros(b, c, h_out * w_out)
    for xi, yi, weight in ((x0, y0, wx0 * wy0), (x0 + 1, y0, wx1 * wy0),
                           (x0, y0 + 1, wx0 * wy1), (x0 + 1, y0 + 1, wx1 * wy1)):
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)  # (B, H_out, W_out), zero padding elsewhere
        index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(b, 1, -1).expand(b, c, -1)  # (B, C, HW_out)
        values = flat.gather(2, index)  # (B, C, H_out*W_out)
        out = out + values * (weight * inside).reshape(b, 1, -1)
    return out.reshape(b, c, h_out, w_out)


class LocalizationNet(nn.Module):
    """Default localization network: a small CNN from images to features (the regression layer is separate).

    pool2 -> conv5x5(8) -> pool2 -> ReLU -> conv5x5(10) -> ReLU -> adaptive average pool to 3x3 -> linear(32)
    -> ReLU. The first pooling halves the resolution it looks at (enough to find pose); the adaptive pooling
    makes it work for any input of at least 20x20 pixels.

    Args:
        in_channels: C. Default 1. features: the output width F. Default 32.

    Shapes:
        x: (B, C, H, W), H, W >= 20 -> (B, F).
    """

    def __init__(self, in_channels: int = 1, features: int = 32):
        super().__init__()
        self.features = features
        self.net = nn.Sequential(
            nn.MaxPool2d(2),  # (B, C, H/2, W/2)
            nn.Conv2d(in_channels, 8, kernel_size=5),  # (B, 8, H/2 - 4, W/2 - 4)
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 10, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(3),  # (B, 10, 3, 3)
            nn.Flatten(),  # (B, 90)
            nn.Linear(90, features),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] < 20 or x.shape[-2] < 20:
            raise ValueError(f"LocalizationNet needs images of at least 20x20 pixels, got shape {tuple(x.shape)}")
        return self.net(x)


class SpatialTransformer(nn.Module):
    """Spatial transformer module: localization net -> θ -> sampling grid -> bilinear sampler (section 3).

    ``forward(U)`` regresses θ from ``U`` (6 affine or 8 projective parameters), builds the grid of an output of
    ``output_size`` and samples ``U`` there. The regression layer starts at the identity transform (zero weights,
    identity bias), so an untrained module returns its input (resampled to ``output_size``).

    Args:
        in_channels: C of the input. Default 1.
        transform: ``"affine"`` (θ is 2x3) or ``"projective"`` (θ is 3x3 with h33 = 1). Default "affine".
        output_size: (H_out, W_out) or an int for a square output; None (the default) keeps the input's size.
            A smaller output lets the transformer zoom in on part of a large canvas (60x60 -> 30x30).
        localization: a module mapping (B, C, H, W) -> (B, localization_features); None (the default) uses
            :class:`LocalizationNet`.
        localization_features: the width of ``localization``'s output; required with a custom ``localization``.
        fast: sample with ``F.affine_grid`` / ``F.grid_sample`` (True, the default) instead of this module's
            readable :func:`affine_grid` / :func:`grid_sample` (False). Both give the same values and gradients.
        align_corners: the grid convention (see :func:`affine_grid`). Default False.

    Attributes:
        last_theta: the transforms of the latest forward pass, detached: (B, 2, 3) affine or (B, 3, 3) projective
            (None before the first call), for plots.

    Shapes:
        x: (B, C, H, W) float -> (B, C, H_out, W_out).

    Raises:
        ValueError: unknown ``transform``, a custom ``localization`` without ``localization_features``, or a
            non-positive ``output_size``.

    Example::

        st = SpatialTransformer(in_channels=1, output_size=30)
        y = st(torch.rand(8, 1, 60, 60))  # (8, 1, 30, 30); st.last_theta is (8, 2, 3)
    """

    def __init__(self, in_channels: int = 1, transform: str = "affine",
                 output_size: int | tuple[int, int] | None = None, localization: nn.Module | None = None,
                 localization_features: int | None = None, fast: bool = True, align_corners: bool = False):
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if output_size is not None and (len(output_size) != 2 or min(output_size) < 1):
            raise ValueError(f"output_size must be an int or (H_out, W_out) >= 1, got {output_size}")
        if localization is None:
            localization = LocalizationNet(in_channels)
            localization_features = localization.features
        elif localization_features is None:
            raise ValueError("localization_features (the width of the custom localization's output) is required")
        self.transform, self.output_size, self.fast, self.align_corners = transform, output_size, fast, align_corners
        self.localization = localization
        self.regressor = nn.Linear(localization_features, TRANSFORMS[transform])
        self.reset_regressor()
        self.last_theta: Tensor | None = None

    def reset_regressor(self) -> None:
        """Initialize the regression layer to the identity transform: zero weights, identity bias (section 4.2)."""
        nn.init.zeros_(self.regressor.weight)
        with torch.no_grad():
            self.regressor.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0][:TRANSFORMS[self.transform]]))

    def theta(self, x: Tensor) -> Tensor:
        """The transforms regressed from ``x`` (B, C, H, W): (B, 2, 3) affine or (B, 3, 3) projective."""
        params = self.regressor(self.localization(x))  # (B, 6) or (B, 8)
        if self.transform == "affine":
            return params.reshape(-1, 2, 3)
        ones = params.new_ones(params.shape[0], 1)
        return torch.cat([params, ones], dim=1).reshape(-1, 3, 3)  # h33 = 1

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"SpatialTransformer expects (B, C, H, W), got shape {tuple(x.shape)}")
        theta = self.theta(x)
        h_out, w_out = self.output_size if self.output_size is not None else x.shape[-2:]
        size = (x.shape[0], x.shape[1], h_out, w_out)
        if self.transform == "projective":
            grid = projective_grid(theta, size, self.align_corners)
        elif self.fast:
            grid = F.affine_grid(theta, list(size), align_corners=self.align_corners)
        else:
            grid = affine_grid(theta, size, self.align_corners)
        self.last_theta = theta.detach()
        if self.fast:
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=self.align_corners)
        return grid_sample(x, grid, self.align_corners)
