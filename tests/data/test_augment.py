"""Batch augmentation and AlexNet-style test-time augmentation."""

import pytest
import torch

from deepnotes.data.augment import random_crop, random_erasing, random_hflip, shift, tta_probabilities, tta_views


def _images(B=6, C=2, H=5, W=7):
    return torch.arange(B * C * H * W, dtype=torch.float32).reshape(B, C, H, W) + 1


def test_shift_hand_computed():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert shift(x, 1, 0).tolist() == [[[[0.0, 0.0], [1.0, 2.0]]]]  # down by one row
    assert shift(x, 0, -1).tolist() == [[[[2.0, 0.0], [4.0, 0.0]]]]  # left by one column
    assert torch.equal(shift(x, 0, 0), x)


def test_random_crop_is_a_shift_within_the_padding():
    x = _images()
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    for b in range(x.shape[0]):
        candidates = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                      if torch.equal(shift(x[b : b + 1], dy, dx), out[b : b + 1])]
        assert len(candidates) == 1  # every image is one shift of itself, same for all channels


def test_random_crop_is_seeded_and_zero_padding_is_identity():
    x = _images()
    a = random_crop(x, 3, torch.Generator().manual_seed(1))
    b = random_crop(x, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(random_crop(x, 0), x)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        random_crop(x, -1)


def test_random_hflip_mirrors_some_images():
    x = _images(B=64)
    out = random_hflip(x, 0.5, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_tta_views_count_and_average():
    x = _images(B=3, C=1)
    assert len(tta_views(x, 2, hflip=False)) == 5
    assert len(tta_views(x, 2, hflip=True)) == 10
    assert len(tta_views(x, 0, hflip=False)) == 1
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(35, 4))
    norm = lambda v: (v - 50.0) / 10.0
    got = tta_probabilities(model, x, 1, True, norm)
    want = torch.stack([model(norm(v)).softmax(-1) for v in tta_views(x, 1, True)]).mean(0)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(3))
    # Views are cut before normalization: the uncovered border is black (0), not the normalized 0.
    assert (tta_views(x, 1, False)[1][..., -1, :] == 0).all()  # view 1: shifted up-left by 1


def test_random_erasing_fills_one_rectangle_of_the_drawn_size():
    x = torch.full((400, 2, 28, 28), 7, dtype=torch.uint8)
    out = random_erasing(x, p=0.5, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    changed = (out != x).any(dim=1)  # (B, H, W); a fill value of exactly 7 is rare and inside the box anyway
    erased = changed.flatten(1).any(dim=1)
    assert 0.4 < float(erased.float().mean()) < 0.6  # p = 0.5 (binomial sd 0.025), a few draws may not fit
    for b in erased.nonzero().flatten().tolist():
        ys, xs = changed[b].nonzero(as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        box = out[b, :, y0:y1, x0:x1]
        assert (box != 7).float().mean() > 0.9  # the whole bounding box is noise: one rectangle
        assert (out[b, :, :y0] == 7).all() and (out[b, :, y1:] == 7).all()
        hh, ww = y1 - y0, x1 - x0
        assert 0.02 * 784 - 2 * max(hh, ww) <= hh * ww <= 0.4 * 784 + 2 * max(hh, ww) + 1  # rounding slack
        assert 0.3 * hh - 1 <= ww <= hh / 0.3 + 1  # aspect ratio within [r_1, 1 / r_1]
    # the same generator seed gives the same images; p = 0 is the identity, p = 1 erases (almost) all
    again = random_erasing(x, p=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(random_erasing(x, p=0.0), x)
    all_erased = (random_erasing(x, p=1.0, generator=torch.Generator().manual_seed(1)) != x).flatten(1).any(1)
    assert float(all_erased.float().mean()) > 0.97
    with pytest.raises(ValueError, match="ratio"):
        random_erasing(x, ratio=1.5)
