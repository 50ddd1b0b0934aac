"""maximize_activation and EE-559's multi-scale prior: h against scipy, optima known in closed form, the prior's
effect on high frequencies, hooks and model state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from deepnotes.explain.maximize import (class_objective, filter_objective, first_layer_filters, maximize_activation,
                                        multiscale_edge_energy)
from deepnotes.models.cnn import LeNet5


def _h_reference(x: np.ndarray, scales, sigma: float) -> np.ndarray:
    """h with scipy's Gaussian filter (replicated borders, radius int(2 sigma + 0.5)) and 2x2 block means."""
    out = np.zeros(x.shape[0])
    u = x
    for s in range(max(scales).bit_length()):
        if s:
            h, w = u.shape[2] // 2 * 2, u.shape[3] // 2 * 2
            u = u[:, :, :h, :w].reshape(u.shape[0], u.shape[1], h // 2, 2, w // 2, 2).mean((3, 5))
        if 2**s in scales:
            blurred = gaussian_filter(u, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=2.0)
            out += ((u - blurred) ** 2).reshape(u.shape[0], -1).sum(1)
    return out


@pytest.mark.parametrize("shape,scales,sigma", [((2, 3, 28, 28), (1, 2, 4, 8), 1.0), ((1, 1, 27, 30), (1, 4), 0.7),
                                                ((3, 2, 16, 16), (2,), 1.6)])
def test_prior_equals_scipy_reference(shape, scales, sigma):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = _h_reference(x.numpy(), scales, sigma)
    np.testing.assert_allclose(multiscale_edge_energy(x, scales, sigma).numpy(), expected, rtol=1e-10)


def test_prior_is_zero_on_constant_images_and_grows_with_frequency():
    assert float(multiscale_edge_energy(torch.full((1, 1, 28, 28), 0.7)).abs().max()) < 1e-10
    i = torch.arange(28.0)
    slow = (torch.sin(2 * torch.pi * i / 28)[:, None] * torch.ones(28)).view(1, 1, 28, 28)
    fast = (torch.sin(2 * torch.pi * i * 5 / 28)[:, None] * torch.ones(28)).view(1, 1, 28, 28)
    assert float(multiscale_edge_energy(fast)) > 20 * float(multiscale_edge_energy(slow))


def _linear_model(d: int = 64, k: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, k)).double()
    return model


def test_linear_class_model_reaches_the_closed_form_optimum():
    # max_x w_c . x + b_c - lam ||x||^2  ->  x* = w_c / (2 lam), along the class's weight vector.
    model, lam = _linear_model(), 0.5
    x = maximize_activation(model, class_objective(1), (1, 1, 8, 8), steps=400, lr=0.02, prior_weight=0.0,
                            l2_weight=lam, clamp=None)
    w = model[1].weight[1].detach()
    cos = torch.nn.functional.cosine_similarity(x.flatten(), w, dim=0)
    assert cos > 0.999
    torch.testing.assert_close(x.flatten(), w / (2 * lam), atol=2e-3, rtol=0)


def test_linear_class_model_with_prior_reaches_the_closed_form_optimum():
    # h is a quadratic form x^T Q x (Q = Hessian / 2), so the optimum is x* = (2 lam I + 2 mu Q)^-1 w_c:
    # smoother than w_c, and no longer along it.
    model, lam, mu = _linear_model(), 0.5, 2.0
    hess = torch.autograd.functional.hessian(
        lambda v: multiscale_edge_energy(v.view(1, 1, 8, 8), (1, 2), 1.0).sum(), torch.zeros(64, dtype=torch.float64))
    w = model[1].weight[1].detach()
    expected = torch.linalg.solve(2 * lam * torch.eye(64, dtype=torch.float64) + mu * hess, w)
    x = maximize_activation(model, class_objective(1), (1, 1, 8, 8), steps=600, lr=0.02, prior_weight=mu,
                            l2_weight=lam, scales=(1, 2), clamp=None)
    torch.testing.assert_close(x.flatten(), expected, atol=3e-3, rtol=0)
    assert torch.nn.functional.cosine_similarity(expected, w, dim=0) < 0.95  # the prior did change the answer


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 49, 10))


def test_objective_increases_over_steps():
    model = _small_cnn()

    def gain(x):
        with torch.no_grad():
            return float((model(x)[:, 3] - 0.1 * multiscale_edge_energy(x)).mean())

    gains = [gain(maximize_activation(model, class_objective(3), (2, 1, 28, 28), steps=n, prior_weight=0.1,
                                      generator=torch.Generator().manual_seed(1))) for n in (0, 10, 60)]
    assert gains[0] < gains[1] < gains[2]
    assert gains[2] - gains[0] > 0.1


def _high_frequency_share(x: torch.Tensor) -> float:
    """Share of the (non-DC) spectral power at radial frequency > 0.25 cycles per pixel."""
    power = torch.fft.fft2(x).abs() ** 2  # (B, C, H, W)
    fy, fx = torch.fft.fftfreq(x.shape[2]), torch.fft.fftfreq(x.shape[3])
    r = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
    return float((power[..., r > 0.25].sum(-1) / power[..., r > 0].sum(-1)).mean())


def test_multiscale_prior_removes_high_frequencies():
    model = _small_cnn()
    kw = dict(shape=(4, 1, 28, 28), steps=150, generator=None)
    plain = maximize_activation(model, class_objective(3), prior_weight=0.0, **kw)
    smooth = maximize_activation(model, class_objective(3), prior_weight=0.1, **kw)
    assert _high_frequency_share(smooth) < 0.5 * _high_frequency_share(plain)
    start = maximize_activation(model, class_objective(3), steps=0, shape=(4, 1, 28, 28))
    with torch.no_grad():
        assert float(model(smooth)[:, 3].mean()) > float(model(start)[:, 3].mean())


def test_reproducible_with_the_same_generator():
    model = _small_cnn()
    a, b, c = (maximize_activation(model, class_objective(0), (2, 1, 28, 28), steps=5,
                                   generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_filter_objective_reads_the_layer_before_inplace_relu_and_removes_its_hook():
    model = LeNet5()  # ReLU(inplace=True) right after features.0
    objective = filter_objective(model, "features.0", 2)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with objective:
        assert _hook_count(model) == 1
        out = model(x)
        value = objective(out)
    assert _hook_count(model) == 0
    torch.testing.assert_close(value, model.features[0](x)[:, 2].mean((1, 2)))  # pre-activation, not relu'd

    before = float(value.detach().mean())
    xs = maximize_activation(model, filter_objective(model, "features.0", 2), (3, 1, 28, 28), steps=30,
                             generator=torch.Generator().manual_seed(0))
    assert _hook_count(model) == 0
    with torch.no_grad():
        assert float(model.features[0](xs)[:, 2].mean()) > before


def test_model_state_restored_and_hooks_removed_on_error():
    model = _small_cnn().train()
    model[0].weight.requires_grad_(False)
    maximize_activation(model, filter_objective(model, "3", 5), steps=3)
    assert model.training and not model[0].weight.requires_grad and model[3].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="channel must be in"):
        maximize_activation(model, filter_objective(model, "3", 16), steps=3)
    assert _hook_count(model) == 0 and model.training
    with pytest.raises(RuntimeError, match="no activation"):
        filter_objective(model, "3", 0)(torch.zeros(1))


def test_first_layer_filters():
    model = LeNet5()
    filters = first_layer_filters(model)
    assert filters.shape == (6, 1, 5, 5) and torch.equal(filters, model.features[0].weight)
    filters += 1  # a copy
    assert not torch.equal(filters, model.features[0].weight)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        first_layer_filters(nn.Sequential(nn.Linear(2, 2)))


def test_bad_arguments():
    model = _small_cnn()
    with pytest.raises(ValueError, match="powers of two"):
        multiscale_edge_energy(torch.rand(1, 1, 8, 8), (1, 3))
    with pytest.raises(ValueError, match="leaves no pixel"):
        multiscale_edge_energy(torch.rand(1, 1, 8, 8), (1, 16))
    with pytest.raises(ValueError, match="sigma"):
        multiscale_edge_energy(torch.rand(1, 1, 8, 8), sigma=0.0)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        filter_objective(model, "nope", 0)
    with pytest.raises(ValueError, match="K > 12"):
        maximize_activation(model, class_objective(12), steps=1)
    with pytest.raises(ValueError, match="one score per image"):
        maximize_activation(model, lambda out: out, steps=1)
    with pytest.raises(ValueError, match="shape"):
        maximize_activation(model, class_objective(0), (28, 28))
    with pytest.raises(ValueError, match="init"):
        maximize_activation(model, class_objective(0), init=torch.zeros(1, 1, 8, 8))
