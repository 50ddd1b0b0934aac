"""perturbation_sharpness on quadratics whose answer is known by hand, and on a tiny network."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.analysis.sharpness import perturbation_sharpness


def _quadratic(A: torch.Tensor, w: torch.Tensor, w_star: torch.Tensor):
    return lambda: 0.5 * (w - w_star) @ A @ (w - w_star)


def test_isotropic_quadratic_every_direction_rises_by_half_c_r_squared():
    # A = c I: u^T A u = c for every unit u, so each increase is exactly 0.5 c r^2.
    c, d = 3.0, 7
    w = torch.zeros(d, dtype=torch.float64)
    res = perturbation_sharpness(_quadratic(c * torch.eye(d, dtype=torch.float64), w, torch.zeros(d)), [w],
                                 [0.0, 0.1, 0.5], n_directions=5, relative=False,
                                 generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([0.0, 0.5 * c * 0.01, 0.5 * c * 0.25], dtype=torch.float64)
    torch.testing.assert_close(res.increases, expected[:, None].expand(3, 5), rtol=1e-12, atol=1e-12)
    assert res.base_loss == 0.0


def test_mean_increase_is_half_r_squared_trace_over_d():
    # E[0.5 r^2 u^T A u] = 0.5 r^2 tr(A)/d for u uniform on the sphere (hand-computed expectation).
    g = torch.Generator().manual_seed(1)
    d, r, M = 6, 0.3, 4000
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    eig = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    A = Q @ torch.diag(eig) @ Q.T
    w = torch.zeros(d, dtype=torch.float64)
    res = perturbation_sharpness(_quadratic(A, w, torch.zeros(d)), [w], [r], n_directions=M, relative=False,
                                 generator=torch.Generator().manual_seed(2))
    expected = 0.5 * r**2 * float(eig.sum()) / d
    inc = res.increases[0]
    stderr = float(inc.std()) / math.sqrt(M)
    assert abs(float(res.mean[0]) - expected) < 4 * stderr
    # every direction lies between the smallest and the largest curvature
    assert float(inc.min()) >= 0.5 * r**2 * 0.1 - 1e-12
    assert float(res.max[0]) <= 0.5 * r**2 * 8.0 + 1e-12


def test_relative_radius_scales_with_the_weight_norm_and_weights_are_restored():
    # Minimum at w* != 0, several parameter tensors: rho = r ||w*||, increase = 0.5 c rho^2.
    c = 2.0
    a = torch.tensor([3.0, 0.0], requires_grad=True)
    b = torch.tensor([[4.0]], requires_grad=True)
    a0, b0 = a.detach().clone(), b.detach().clone()

    def loss():
        return 0.5 * c * (((a - a0) ** 2).sum() + ((b - b0) ** 2).sum())

    res = perturbation_sharpness(loss, [a, b], [0.1, 0.2], n_directions=3, generator=torch.Generator().manual_seed(0))
    assert res.weight_norm == pytest.approx(5.0)
    torch.testing.assert_close(res.norms, torch.tensor([0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(res.mean, torch.tensor([0.5 * c * 0.25, 0.5 * c * 1.0], dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    assert torch.equal(a.detach(), a0) and torch.equal(b.detach(), b0)


def test_weights_restored_when_the_loss_raises():
    w = torch.ones(3)
    calls = []

    def loss():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("boom")
        return w.sum()

    with pytest.raises(RuntimeError, match="boom"):
        perturbation_sharpness(loss, [w], [0.5], n_directions=2)
    assert torch.equal(w, torch.ones(3))


def test_network_sharpness_is_seeded_and_grows_with_radius():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    loss = lambda: torch.nn.functional.cross_entropy(net(x), y)
    before = [p.detach().clone() for p in net.parameters()]
    r1 = perturbation_sharpness(loss, list(net.parameters()), [0.01, 0.1, 1.0], 4, generator=torch.Generator().manual_seed(5))
    r2 = perturbation_sharpness(loss, list(net.parameters()), [0.01, 0.1, 1.0], 4, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(r1.increases, r2.increases)
    assert float(r1.mean[2]) > float(r1.mean[0].abs())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"params": []}, "params is empty"),
        ({"n_directions": 0}, "n_directions"),
        ({"radii": [-0.1]}, "radii"),
        ({"radii": []}, "radii"),
        ({"relative": True}, "relative=False"),
    ],
)
def test_errors(kwargs, match):
    w = torch.zeros(2)
    args = {"loss_fn": lambda: w.sum(), "params": [w], "radii": [0.1], "n_directions": 2, "relative": False}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        perturbation_sharpness(**args)
