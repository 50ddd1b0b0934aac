"""Batched rotation and scaling (deepnotes.data.affine): quarter turns against torch.rot90, any angle and scale
against the scipy-based rotate_scale_translate, the identity, per-image parameters, uint8, seeded draws, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepnotes.data.affine import affine_warp, random_affine
from deepnotes.data.distorted import rotate_scale_translate


def _images(n: int = 4, size: int = 28) -> torch.Tensor:
    """Random float images with a black 5-pixel border, like digits (so border conventions do not matter)."""
    x = torch.zeros(n, 1, size, size, dtype=torch.float64)
    x[..., 5:-5, 5:-5] = torch.rand(n, 1, size - 10, size - 10, generator=torch.Generator().manual_seed(0),
                                    dtype=torch.float64)
    return x


def test_quarter_turns_equal_rot90_counter_clockwise():
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    for k, angle in ((1, 90.0), (2, 180.0), (-1, -90.0)):
        out = affine_warp(x, torch.full((3,), angle), torch.ones(3))
        torch.testing.assert_close(out, x.rot90(k, dims=(-2, -1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle, scale", [(17.0, 1.1), (-8.0, 0.9), (0.0, 1.25), (33.0, 1.0)])
def test_matches_the_scipy_reference(angle, scale):
    x = _images(2)
    out = affine_warp(x, torch.full((2,), angle), torch.full((2,), scale))
    for i in range(2):
        ref = rotate_scale_translate(x[i, 0].numpy(), angle, scale)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-6)


def test_each_image_gets_its_own_angle_and_scale():
    x = _images(3)
    degrees, scale = torch.tensor([0.0, 12.0, -20.0]), torch.tensor([1.0, 0.95, 1.08])
    out = affine_warp(x, degrees, scale)
    torch.testing.assert_close(out[0], x[0])  # angle 0, scale 1: the identity
    for i in (1, 2):
        torch.testing.assert_close(out[i : i + 1], affine_warp(x[i : i + 1], degrees[i : i + 1], scale[i : i + 1]))


def test_uint8_images_stay_uint8_and_round_the_float_result():
    x = (_images(2) * 255).round().to(torch.uint8)
    degrees, scale = torch.tensor([7.0, -11.0]), torch.tensor([1.05, 0.92])
    out = affine_warp(x, degrees, scale)
    assert out.dtype == torch.uint8
    expected = affine_warp(x.double(), degrees, scale).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(out, expected)


def test_random_affine_draws_within_the_ranges_from_the_generator():
    x = _images(64)
    a = random_affine(x, 10.0, 0.1, torch.Generator().manual_seed(5))
    assert torch.equal(a, random_affine(x, 10.0, 0.1, torch.Generator().manual_seed(5)))  # seeded: reproducible
    assert not torch.equal(a, random_affine(x, 10.0, 0.1, torch.Generator().manual_seed(6)))
    # the same draws, made by hand: angle ~ U(-10, 10) degrees, then scale ~ U(0.9, 1.1), one per image
    g = torch.Generator().manual_seed(5)
    angle = (torch.rand(64, generator=g, dtype=torch.float64) * 2 - 1) * 10.0
    factor = 1 + (torch.rand(64, generator=g, dtype=torch.float64) * 2 - 1) * 0.1
    assert angle.abs().max() <= 10.0 and (factor - 1).abs().max() <= 0.1 and angle.std() > 3.0
    torch.testing.assert_close(a, affine_warp(x, angle, factor))
    assert random_affine(x, 0.0, 0.0) is x


@pytest.mark.parametrize("kwargs, match", [({"degrees": -1.0}, "degrees"), ({"degrees": 181.0}, "degrees"),
                                           ({"scale": 1.0}, "scale"), ({"scale": -0.1}, "scale")])
def test_random_affine_rejects_ranges(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_affine(_images(1), **kwargs)


def test_affine_warp_rejects_bad_parameters():
    x = _images(2)
    with pytest.raises(ValueError, match="must be \\(2,\\)"):
        affine_warp(x, torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        affine_warp(x, torch.zeros(2), torch.tensor([1.0, 0.0]))
