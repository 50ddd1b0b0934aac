"""Deletion/insertion curves on models whose answer is known, the blur against scipy, and cascading randomization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepnotes.explain.attribution import guided_backprop, saliency
from deepnotes.explain.faithfulness import (deletion_curve, gaussian_blur, insertion_curve, model_randomization,
                                            random_order_auc)


class MeanOfPixels(nn.Module):
    """Two classes with p(class 0) = mean of x over ``pixels`` (a (H, W) bool mask): logits log p, log(1 - p)."""

    def __init__(self, pixels: torch.Tensor):
        super().__init__()
        self.pixels = pixels
        self.scale = nn.Parameter(torch.ones(()))  # something for the hygiene checks to look at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = (self.scale * x[:, 0][:, self.pixels].mean(dim=1)).clamp(1e-9, 1 - 1e-9)
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def test_deletion_of_a_mean_pixel_model_is_a_straight_line_with_area_one_half():
    # p = mean of all pixels of a white image: after deleting a fraction f of the pixels p = 1 - f in any order.
    model = MeanOfPixels(torch.ones(6, 6, dtype=torch.bool)).double()
    x = torch.ones(2, 1, 6, 6, dtype=torch.float64)
    attribution = torch.rand(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    curve = deletion_curve(model, x, 0, attribution, steps=4)
    torch.testing.assert_close(curve.fractions, torch.tensor([0, 9, 18, 27, 36], dtype=torch.float64) / 36)
    torch.testing.assert_close(curve.probs, (1 - curve.fractions).clamp(1e-9, 1 - 1e-9).expand(2, -1))
    torch.testing.assert_close(curve.auc, torch.full((2,), 0.5, dtype=torch.float64), rtol=0, atol=1e-8)
    # Uneven steps: 36 pixels in 5 steps changes 7, 14, 21, 28, 36: still the line, still 1/2.
    curve = deletion_curve(model, x, 0, attribution, steps=5)
    assert (curve.fractions * 36).round().tolist() == [0, 7, 14, 21, 28, 36]
    torch.testing.assert_close(curve.auc, torch.full((2,), 0.5, dtype=torch.float64), rtol=0, atol=1e-8)


def _known_pixels_case():
    pixels = torch.zeros(8, 8, dtype=torch.bool)
    pixels[2:4, 1:6] = True  # the model reads only these 10 of 64 pixels
    model = MeanOfPixels(pixels)
    # Bright read pixels on a dark background, so that the blur of the insertion's start image dims them.
    x = torch.full((3, 1, 8, 8), 0.1)
    x[:, 0, pixels] = 0.6 + 0.4 * torch.rand(3, 10, generator=torch.Generator().manual_seed(0))
    return model, x, pixels.float().expand(3, 8, 8)


def test_the_true_attribution_beats_random_orders():
    model, x, truth = _known_pixels_case()
    deletion = deletion_curve(model, x, 0, truth, steps=16)
    random_deletion = random_order_auc(model, x, 0, n_orders=5, steps=16, generator=torch.Generator().manual_seed(0))
    # Deleting the 10 read pixels first empties p by f = 12/64 (steps of 4 pixels), and p never rises.
    assert (deletion.auc < deletion.probs[:, 0] * 12 / 64).all()
    assert (deletion.auc < random_deletion - 0.2).all()
    assert (deletion.probs[:, 3:] < 1e-6).all()  # 3/16 of the pixels > 10/64: all read pixels are gone
    insertion = insertion_curve(model, x, 0, truth, steps=16)
    random_insertion = random_order_auc(model, x, 0, curve="insertion", n_orders=5, steps=16,
                                        generator=torch.Generator().manual_seed(0))
    assert (insertion.auc > random_insertion + 0.1).all()
    torch.testing.assert_close(insertion.probs[:, -1], model(x).softmax(dim=1)[:, 0].detach())
    # The reversed order is worse than random on both curves.
    assert (deletion_curve(model, x, 0, -truth, steps=16).auc > random_deletion).all()
    assert (insertion_curve(model, x, 0, -truth, steps=16).auc < random_insertion).all()


def test_insertion_starts_from_the_blurred_image_or_a_constant():
    model, x, truth = _known_pixels_case()
    blurred = gaussian_blur(x)
    curve = insertion_curve(model, x, 0, truth, steps=8)
    torch.testing.assert_close(curve.probs[:, 0], model(blurred).softmax(dim=1)[:, 0].detach())
    black = insertion_curve(model, x, 0, truth, steps=8, start=0.0)
    assert (black.probs[:, 0] < 1e-6).all()


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(2, 3, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = gaussian_blur(x, sigma=2.0, size=7).numpy()
    # scipy's radius is round(truncate * sigma) = 3 -> a 7-tap kernel; mode "nearest" = replicate padding
    ref = gaussian_filter(x.numpy(), sigma=(0, 0, 2.0, 2.0), truncate=1.5, mode="nearest")
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian_blur(torch.full((1, 1, 12, 12), 0.3)), torch.full((1, 1, 12, 12), 0.3))


def test_curve_arguments_are_checked():
    model, x, truth = _known_pixels_case()
    with pytest.raises(ValueError, match="attribution"):
        deletion_curve(model, x, 0, truth[:, :4])
    with pytest.raises(ValueError, match="steps"):
        deletion_curve(model, x, 0, truth, steps=65)
    with pytest.raises(ValueError, match="start"):
        insertion_curve(model, x, 0, truth, start="noise")
    with pytest.raises(ValueError, match="curve"):
        random_order_auc(model, x, 0, curve="both")


def test_curves_leave_the_model_alone():
    model, x, truth = _known_pixels_case()
    model.train()
    deletion_curve(model, x, 0, truth, steps=4)
    insertion_curve(model, x, 0, truth, steps=4)
    assert model.training and model.scale.requires_grad and model.scale.grad is None


# ---- cascading randomization -------------------------------------------------------------------------------------

def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4),
        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 16), nn.ReLU(), nn.Linear(16, 3),
    ).double().eval()


def test_randomization_order_is_top_down_and_saliency_decorrelates():
    model = small_cnn()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows = model_randomization(model, x, 1, saliency, generator=torch.Generator().manual_seed(0))
    assert [name for name, _ in rows] == ["original", "8", "6", "3", "2", "0"]
    rhos = [rho for _, rho in rows]
    assert rhos[0] == pytest.approx(1.0, abs=1e-12)
    assert rhos[-1] < 0.5 and min(rhos[1:]) < 0.9
    # Reproducible, and the model and the global RNG are untouched.
    state = [p.clone() for p in model.state_dict().values()]
    rng = torch.get_rng_state()
    again = model_randomization(model, x, 1, saliency, generator=torch.Generator().manual_seed(0))
    assert again == rows
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) for a, b in zip(state, model.state_dict().values()))


def test_randomization_of_a_method_that_ignores_the_model_keeps_rho_one():
    # An edge detector passes for an explanation by eye but does not depend on the weights (Adebayo et al.).
    def edges(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
        return (x[..., 1:, :] - x[..., :-1, :]).abs()

    model = small_cnn()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rows = model_randomization(model, x, 0, edges, generator=torch.Generator().manual_seed(0))
    assert len(rows) == 6 and all(rho == pytest.approx(1.0, abs=1e-12) for _, rho in rows)


def test_randomization_of_chosen_layers_and_the_layer_weights_really_change():
    model = small_cnn()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    seen = []

    def record(m: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
        seen.append(m[6].weight.detach().clone())
        return guided_backprop(m, x, target)

    rows = model_randomization(model, x, 2, record, layers=["6"], generator=torch.Generator().manual_seed(0))
    assert [name for name, _ in rows] == ["original", "6"]
    assert torch.equal(seen[0], model[6].weight) and torch.equal(seen[1], model[6].weight)
    assert not torch.equal(seen[2], model[6].weight)
    bound = 1 / np.sqrt(4 * 64)  # nn.Linear's default initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert seen[2].abs().max() <= bound and seen[2].std() > bound / 3
    with pytest.raises(ValueError, match="layers"):
        model_randomization(model, x, 2, saliency, layers=["1"])  # a ReLU has nothing to randomize
    with pytest.raises(ValueError, match="layers"):
        model_randomization(model, x, 2, saliency, layers=["nope"])


def test_rank_correlation_of_a_constant_map_is_zero_not_nan():
    from deepnotes.explain.faithfulness import _rank_correlation

    ref = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert _rank_correlation(ref, torch.zeros_like(ref)) == 0.0
    assert _rank_correlation(torch.zeros_like(ref), torch.zeros_like(ref)) == 1.0
    assert _rank_correlation(ref, 2 * ref) == pytest.approx(1.0)
