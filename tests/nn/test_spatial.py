"""Spatial transformer pieces from the equations against torch.nn.functional: grids, bilinear sampler (values and
gradients), gradcheck, identity initialization, projective -> affine reduction, hand-computed shifts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.nn.spatial import LocalizationNet, SpatialTransformer, affine_grid, grid_sample, projective_grid

IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _random_theta(b: int, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    return (IDENTITY + 0.4 * torch.randn(b, 2, 3, generator=g)).to(dtype)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(3, 2, 5, 7), (2, 1, 28, 28), (2, 3, 6, 2)])
def test_affine_grid_matches_torch(align_corners, size):
    g = torch.Generator().manual_seed(0)
    theta = _random_theta(size[0], g)
    ours = affine_grid(theta, size, align_corners)
    torch.testing.assert_close(ours, F.affine_grid(theta, list(size), align_corners=align_corners), atol=1e-6,
                               rtol=0)


def test_affine_grid_hand_computed_identity():
    # 2 pixels per axis: centres at -0.5, +0.5 (edges at -1, 1) or at -1, +1 (align_corners=True)
    grid = affine_grid(IDENTITY[None], (1, 1, 2, 2))
    torch.testing.assert_close(grid[0, :, :, 0], torch.tensor([[-0.5, 0.5], [-0.5, 0.5]]))
    torch.testing.assert_close(grid[0, :, :, 1], torch.tensor([[-0.5, -0.5], [0.5, 0.5]]))
    grid = affine_grid(IDENTITY[None], (1, 1, 2, 2), align_corners=True)
    torch.testing.assert_close(grid[0, :, :, 0], torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))


@pytest.mark.parametrize("align_corners", [False, True])
def test_projective_grid_reduces_to_affine(align_corners):
    g = torch.Generator().manual_seed(1)
    theta = _random_theta(3, g)
    homography = torch.cat([theta, torch.tensor([0.0, 0.0, 1.0]).expand(3, 1, 3)], dim=1)  # (3, 3, 3)
    size = (3, 1, 9, 11)
    torch.testing.assert_close(projective_grid(homography, size, align_corners),
                               affine_grid(theta, size, align_corners), atol=1e-6, rtol=0)


def test_projective_grid_divides_by_third_coordinate():
    g = torch.Generator().manual_seed(2)
    homography = torch.eye(3, dtype=torch.float64) + 0.3 * torch.randn(1, 3, 3, generator=g, dtype=torch.float64)
    grid = projective_grid(homography, (1, 1, 4, 5))
    # pixel (row 1, col 3) of a 4x5 output: x^t = (2*3+1)/5 - 1, y^t = (2*1+1)/4 - 1
    point = homography[0] @ torch.tensor([7 / 5 - 1, 3 / 4 - 1, 1.0], dtype=torch.float64)
    torch.testing.assert_close(grid[0, 1, 3], point[:2] / point[2])
    grid2 = projective_grid(homography * 2.5, (1, 1, 4, 5))  # a homography is defined up to scale
    torch.testing.assert_close(grid2, grid)


def _sample_both(x, grid, align_corners, g):
    """Values and (input, grid) gradients of ours and torch's, under the same random upstream gradient."""
    results = []
    upstream = None
    for fn in (lambda a, b: grid_sample(a, b, align_corners),
               lambda a, b: F.grid_sample(a, b, mode="bilinear", padding_mode="zeros", align_corners=align_corners)):
        xi, gi = x.clone().requires_grad_(), grid.clone().requires_grad_()
        out = fn(xi, gi)
        if upstream is None:
            upstream = torch.randn(out.shape, generator=g, dtype=out.dtype)
        (out * upstream).sum().backward()
        results.append((out.detach(), xi.grad, gi.grad))
    return results


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape,out_hw", [((2, 3, 5, 7), (6, 4)), ((3, 1, 28, 28), (28, 28)), ((1, 2, 1, 4), (3, 3))])
def test_grid_sample_matches_torch_values_and_gradients(align_corners, shape, out_hw):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(shape, generator=g)
    grid = torch.rand(shape[0], *out_hw, 2, generator=g) * 2.6 - 1.3  # includes points outside [-1, 1]
    (v1, gx1, gg1), (v2, gx2, gg2) = _sample_both(x, grid, align_corners, g)
    torch.testing.assert_close(v1, v2, atol=1e-6, rtol=0)
    torch.testing.assert_close(gx1, gx2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gg1, gg2, atol=1e-4, rtol=1e-5)  # d/dgrid carries a factor W/2 (up to 14 here)
    assert gg2.abs().max() > 0.1  # the comparison is not vacuous


@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_of_an_affine_warp_matches_torch(align_corners):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 2, 12, 10, generator=g)
    theta = _random_theta(4, g)
    grid = affine_grid(theta, (4, 2, 9, 8), align_corners)
    (v1, gx1, gg1), (v2, gx2, gg2) = _sample_both(x, grid, align_corners, g)
    torch.testing.assert_close(v1, v2, atol=1e-6, rtol=0)
    torch.testing.assert_close(gx1, gx2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gg1, gg2, atol=1e-4, rtol=1e-5)


def test_grid_sample_far_outside_is_zero_with_zero_gradient():
    x = torch.rand(1, 1, 4, 4)
    grid = torch.tensor([[[[5.0, 0.0], [-1e6, 3.0]]]], requires_grad=True)  # (1, 1, 2, 2)
    out = grid_sample(x, grid)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(1, 1, 1, 2))
    assert torch.equal(grid.grad, torch.zeros_like(grid))


@pytest.mark.parametrize("align_corners", [False, True])
def test_gradcheck_float64(align_corners):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(1, 2, 3, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: grid_sample(a, b, align_corners), (x, grid))
    homography = (torch.eye(3, dtype=torch.float64) + 0.1 * torch.randn(1, 3, 3, generator=g, dtype=torch.float64))
    homography.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, h: grid_sample(a, projective_grid(h, (1, 2, 3, 3), align_corners), align_corners), (x, homography))


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_transform_gives_the_image_back(align_corners):
    x = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(6))
    grid = affine_grid(IDENTITY.expand(2, 2, 3), x.shape, align_corners)
    torch.testing.assert_close(grid_sample(x, grid, align_corners), x, atol=1e-6, rtol=0)


def test_translation_shifts_by_whole_pixels():
    # x^s = x^t + 2k/W samples column j + k: the image moves k pixels to the left, zeros enter on the right
    x = torch.arange(1.0, 25.0).reshape(1, 1, 4, 6)
    theta = torch.tensor([[[1.0, 0.0, 2 * 2 / 6], [0.0, 1.0, 0.0]]])
    out = grid_sample(x, affine_grid(theta, x.shape))
    expected = torch.cat([x[..., 2:], torch.zeros(1, 1, 4, 2)], dim=-1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("transform", ["affine", "projective"])
@pytest.mark.parametrize("fast", [True, False])
def test_spatial_transformer_starts_at_identity(transform, fast):
    torch.manual_seed(0)
    st = SpatialTransformer(1, transform=transform, fast=fast)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(st(x), x, atol=1e-5, rtol=0)
    expected = torch.eye(3)[:2] if transform == "affine" else torch.eye(3)
    torch.testing.assert_close(st.last_theta, expected.expand(3, -1, -1))
    assert torch.count_nonzero(st.regressor.weight) == 0


def test_spatial_transformer_fast_and_readable_paths_agree():
    torch.manual_seed(0)
    fast = SpatialTransformer(1, output_size=(20, 24))
    nn.init.normal_(fast.regressor.weight, std=0.05)  # move away from the identity
    slow = SpatialTransformer(1, output_size=(20, 24), fast=False)
    slow.load_state_dict(fast.state_dict())
    x = torch.rand(4, 1, 30, 30, generator=torch.Generator().manual_seed(8))
    ya, yb = fast(x), slow(x)
    assert ya.shape == (4, 1, 20, 24)
    torch.testing.assert_close(ya, yb, atol=1e-6, rtol=0)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (name, pa), pb in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_spatial_transformer_zooms_to_a_smaller_output():
    torch.manual_seed(0)
    st = SpatialTransformer(1, output_size=30)
    x = torch.rand(2, 1, 60, 60)
    with torch.no_grad():  # theta = 0.5 I: the central half of the canvas at full resolution
        st.regressor.bias.copy_(torch.tensor([0.5, 0, 0, 0, 0.5, 0]))
    torch.testing.assert_close(st(x), x[..., 15:45, 15:45], atol=1e-5, rtol=0)


def test_custom_localization_and_errors():
    loc = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 5), nn.Tanh())
    st = SpatialTransformer(2, transform="projective", localization=loc, localization_features=5)
    assert st(torch.rand(3, 2, 8, 8)).shape == (3, 2, 8, 8) and st.last_theta.shape == (3, 3, 3)
    with pytest.raises(ValueError, match="localization_features"):
        SpatialTransformer(2, localization=loc)
    with pytest.raises(ValueError, match="transform"):
        SpatialTransformer(1, transform="tps")
    with pytest.raises(ValueError, match="output_size"):
        SpatialTransformer(1, output_size=0)
    with pytest.raises(ValueError, match="20x20"):
        LocalizationNet()(torch.rand(1, 1, 12, 12))
    with pytest.raises(ValueError, match="theta"):
        affine_grid(torch.zeros(1, 3, 3), (1, 1, 4, 4))
    with pytest.raises(ValueError, match="size"):
        affine_grid(torch.zeros(2, 2, 3), (1, 1, 4, 4))
    with pytest.raises(ValueError, match="grid"):
        grid_sample(torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4))
