"""Spectral normalization against ``torch.nn.utils.parametrizations.spectral_norm`` (same weights, same starting
u and v: the normalized weights after several training forwards and in eval mode, the gradients), and sigma
against the largest singular value from ``torch.linalg.svdvals``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

from deepnotes.nn.spectral import SpectralNorm, power_iteration, spectral_norm, weight_matrix


def twins(layer: nn.Module, n_power_iterations: int = 1) -> tuple[nn.Module, nn.Module]:
    """(ours, torch's) on copies of ``layer``, both restarted from the same random u and v (far from the singular
    vectors, so that every step of the iteration shows in sigma)."""
    ours = spectral_norm(copy.deepcopy(layer), n_power_iterations=n_power_iterations,
                         generator=torch.Generator().manual_seed(0))
    ref = torch_spectral_norm(copy.deepcopy(layer), n_power_iterations=n_power_iterations)
    ours_p, ref_p = ours.parametrizations.weight[0], ref.parametrizations.weight[0]
    g = torch.Generator().manual_seed(5)
    u, v = torch.randn(ref_p._u.shape, generator=g), torch.randn(ref_p._v.shape, generator=g)
    with torch.no_grad():
        for p in (ours_p, ref_p):
            p._u.copy_(u / u.norm())
            p._v.copy_(v / v.norm())
    return ours, ref


@pytest.mark.parametrize("make,shape", [(lambda: nn.Linear(7, 5), (3, 7)),
                                        (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6)),
                                        (lambda: nn.ConvTranspose2d(4, 3, 3), (2, 4, 5, 5))])
@pytest.mark.parametrize("n_iter", [1, 3])
def test_matches_torch_in_train_and_eval(make, shape, n_iter):
    torch.manual_seed(1)
    ours, ref = twins(make(), n_iter)
    x = torch.randn(shape)
    for _ in range(4):  # each training forward runs n_iter power-iteration steps on both
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
        assert torch.allclose(ours.weight, ref.weight, atol=1e-6)  # (accessing .weight iterates again, on both)
    ours_p, ref_p = ours.parametrizations.weight[0], ref.parametrizations.weight[0]
    assert torch.allclose(ours_p._u, ref_p._u, atol=1e-6) and torch.allclose(ours_p._v, ref_p._v, atol=1e-6)
    ours.eval()
    ref.eval()
    u_before = ours_p._u.clone()
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    assert torch.equal(ours_p._u, u_before)  # no iteration in eval mode


def test_gradients_match_torch():
    torch.manual_seed(2)
    ours, ref = twins(nn.Linear(6, 4))
    x = torch.randn(5, 6)
    ours(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    g_ours = ours.parametrizations.weight.original.grad
    g_ref = ref.parametrizations.weight.original.grad
    assert torch.allclose(g_ours, g_ref, atol=1e-6)


def test_sigma_converges_to_the_largest_singular_value():
    torch.manual_seed(3)
    w = torch.randn(20, 30)
    p = SpectralNorm(w, generator=torch.Generator().manual_seed(0))  # 15 iterations at construction
    power_iteration(w, p._u, p._v, 200)
    top = torch.linalg.svdvals(w)[0]
    assert p.sigma(w).item() == pytest.approx(top.item(), rel=1e-4)
    assert torch.linalg.svdvals(p(w))[0].item() == pytest.approx(1.0, rel=1e-3)  # W / sigma has spectral norm 1
    # one step per forward on a fixed weight: sigma rises to the top singular value (a lower bound all along)
    layer = spectral_norm(nn.Linear(30, 20), generator=torch.Generator().manual_seed(0))
    sigmas = []
    for _ in range(100):
        _ = layer.weight
        sigmas.append(layer.parametrizations.weight[0].sigma(layer.parametrizations.weight.original).item())
    top = torch.linalg.svdvals(layer.parametrizations.weight.original.detach())[0].item()
    assert all(s <= top * (1 + 1e-5) for s in sigmas) and sigmas[-1] == pytest.approx(top, rel=1e-3)


def test_conv_weight_is_reshaped_to_out_by_rest_and_buffers_are_saved():
    conv = spectral_norm(nn.Conv2d(3, 8, 3))
    p = conv.parametrizations.weight[0]
    assert p._u.shape == (8,) and p._v.shape == (27,)
    assert weight_matrix(torch.zeros(3, 8, 2, 2), dim=1).shape == (8, 12)
    keys = set(conv.state_dict())
    assert {"parametrizations.weight.0._u", "parametrizations.weight.0._v"} <= keys
    one_d = SpectralNorm(torch.tensor([3.0, 4.0]))
    assert torch.allclose(one_d(torch.tensor([3.0, 4.0])), torch.tensor([0.6, 0.8]))


def test_errors():
    with pytest.raises(ValueError, match="n_power_iterations"):
        SpectralNorm(torch.randn(3, 3), n_power_iterations=0)
    with pytest.raises(ValueError, match="dim"):
        SpectralNorm(torch.randn(3, 3), dim=2)
    with pytest.raises(ValueError, match="no parameter"):
        spectral_norm(nn.ReLU())
