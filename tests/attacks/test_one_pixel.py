"""One-pixel attack: the perturbation and fitness against torchattacks OnePixel's own, and attacks that must succeed.

torchattacks' search (its own DE) is not compared: the populations differ by design (module docstring).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from deepnotes.attacks.one_pixel import one_pixel, one_pixel_fitness, perturb_pixels


class OnePixelDecides(nn.Module):
    """3 classes on (B, 3, 6, 6): class 0 unless the green value of pixel (4, 1) is high (1) or low (2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 1, 4, 1]
        return torch.stack([torch.zeros_like(v), 30 * (v - 0.8), 30 * (0.1 - v)], dim=1)


def _candidates(rng: np.random.Generator, s: int, pixels: int, c: int, h: int, w: int) -> np.ndarray:
    parts = [rng.uniform(0, h, (s, pixels, 1)), rng.uniform(0, w, (s, pixels, 1)), rng.random((s, pixels, c))]
    return np.concatenate(parts, axis=2).reshape(s, -1)


def test_perturb_pixels_matches_torchattacks(model_factory):
    rng = np.random.default_rng(0)
    image = torch.rand(1, 3, 12, 12)
    candidates = _candidates(rng, 6, 2, 3, 12, 12)
    reference = torchattacks.OnePixel(model_factory(0, in_channels=3), pixels=2)._perturb(image, candidates)
    torch.testing.assert_close(perturb_pixels(image[0], candidates), reference, rtol=0, atol=0)


@pytest.mark.parametrize("targeted", [False, True])
def test_fitness_is_torchattacks_loss_and_the_class_probability(model_factory, targeted):
    model = model_factory(1, in_channels=3)
    rng = np.random.default_rng(1)
    image = torch.rand(1, 3, 12, 12)
    candidates = _candidates(rng, 9, 1, 3, 12, 12)
    attack = torchattacks.OnePixel(model, pixels=1)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    ours = one_pixel_fitness(model, image[0], 4, candidates, targeted=targeted)
    np.testing.assert_allclose(ours, attack._loss(image, torch.tensor([4]), candidates), rtol=0, atol=1e-6)
    with torch.no_grad():
        probs = model(perturb_pixels(image[0], candidates)).softmax(1)[:, 4].numpy()
    np.testing.assert_allclose(ours, 1 - probs if targeted else probs, atol=1e-6)


def test_one_pixel_finds_the_deciding_pixel():
    model = OnePixelDecides()
    x = torch.full((3, 3, 6, 6), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    adv = one_pixel(model, x, y, steps=30, popsize=60, seed=0)
    changed = (adv != x).any(dim=1)  # (B, H, W) positions changed in any channel
    assert (changed.flatten(1).sum(1) == 1).all() and changed[:, 4, 1].all()
    assert (model(adv).argmax(1) != 0).all()
    target = torch.full((3,), 2)
    adv_t = one_pixel(model, x, target, steps=30, popsize=60, targeted=True, seed=1)
    assert (model(adv_t).argmax(1) == 2).all() and (adv_t[:, 1, 4, 1] < 0.1).all()


def test_one_pixel_changes_at_most_pixels_and_is_reproducible(model_factory):
    model = model_factory(3, in_channels=3)
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    y[0] = (y[0] + 1) % 10  # already misclassified: returned unchanged
    adv = one_pixel(model, x, y, pixels=2, steps=3, popsize=20, seed=5)
    assert ((adv != x).any(dim=1).flatten(1).sum(1) <= 2).all()
    assert torch.equal(adv[0], x[0]) and not torch.equal(adv[1:], x[1:])
    assert adv.min() >= 0 and adv.max() <= 1
    torch.testing.assert_close(adv, one_pixel(model, x, y, pixels=2, steps=3, popsize=20, seed=5), rtol=0, atol=0)


def test_one_pixel_rejects_bad_arguments(tiny_cnn, batch):
    x, y = batch
    with pytest.raises(ValueError, match="pixels"):
        one_pixel(tiny_cnn, x, y, pixels=0)
    with pytest.raises(ValueError, match="popsize"):
        one_pixel(tiny_cnn, x, y, popsize=3)
    with pytest.raises(ValueError, match="candidates"):
        perturb_pixels(x[0], np.zeros((2, 4)))
