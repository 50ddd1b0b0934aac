"""Hessian, HVP and the second-order test against finite differences and hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.analysis.hessian import (
    DEGENERATE,
    LOCAL_MAXIMUM,
    LOCAL_MINIMUM,
    SADDLE_POINT,
    analyze_critical_point,
    classify_critical_point,
    flat_loss_function,
    flatten_parameters,
    gradient_norm,
    hessian_eigen,
    hessian_vector_product,
    load_flat_parameters,
    loss_gradient,
    loss_hessian,
    minimum_ratio,
)

F64 = torch.float64


class Point(nn.Module):
    """A "model" whose only parameter is the point (x, y); the loss is a function of it alone."""

    def __init__(self, x: float, y: float):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([x, y], dtype=F64))

    def forward(self, _inputs):
        return self.p


def saddle(p, _t):  # f(x, y) = x^2 - y^2
    return p[0] ** 2 - p[1] ** 2


def bowl(p, _t):  # f(x, y) = x^2 + 3 y^2 + x y
    return p[0] ** 2 + 3 * p[1] ** 2 + p[0] * p[1]


DUMMY = torch.zeros(1, dtype=F64)


def tiny_mlp_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(10, 3, generator=g, dtype=F64)
    y = torch.randint(0, 2, (10,), generator=g)
    return model, nn.functional.cross_entropy, x, y


def test_hessian_matches_central_differences_of_the_gradient():
    model, loss_fn, x, y = tiny_mlp_problem()
    H = loss_hessian(model, loss_fn, x, y)
    P = sum(p.numel() for p in model.parameters())
    assert H.shape == (P, P) == (26, 26)
    theta0 = flatten_parameters(model)
    f, _ = flat_loss_function(model, loss_fn, x, y)
    grad_f = torch.func.grad(f)
    eps = 1e-5
    H_fd = torch.empty(P, P, dtype=F64)
    for i in range(P):
        e = torch.zeros(P, dtype=F64)
        e[i] = eps
        H_fd[:, i] = (grad_f(theta0 + e) - grad_f(theta0 - e)) / (2 * eps)
    # central differences: error O(eps^2 * third derivative) + O(rounding / eps) ~ 1e-10 in float64
    torch.testing.assert_close(H, H_fd, rtol=0, atol=1e-7)
    torch.testing.assert_close(H, H.T, rtol=0, atol=1e-12)
    # the model itself is untouched
    torch.testing.assert_close(flatten_parameters(model), theta0, rtol=0, atol=0)


def test_gradient_matches_autograd_backward():
    model, loss_fn, x, y = tiny_mlp_problem(1)
    loss_fn(model(x), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(loss_gradient(model, loss_fn, x, y), expected)
    assert gradient_norm(model, loss_fn, x, y) == pytest.approx(float(expected.norm()), rel=1e-12)


def test_saddle_x2_minus_y2_at_the_origin():
    cp = analyze_critical_point(Point(0.0, 0.0), saddle, DUMMY, DUMMY)
    torch.testing.assert_close(cp.eigenvalues, torch.tensor([-2.0, 2.0], dtype=F64))
    assert cp.kind == SADDLE_POINT and cp.min_ratio == 0.5 and cp.grad_norm == 0.0 and cp.loss == 0.0
    # the escape direction is ±y, and stepping along it lowers the loss by ½ λ η² = -η²
    u = cp.escape_direction
    torch.testing.assert_close(u.abs(), torch.tensor([0.0, 1.0], dtype=F64))
    moved = Point(*(0.3 * u).tolist())
    assert float(saddle(moved.p.detach(), None)) == pytest.approx(-0.09)


def test_quadratic_bowl_is_a_minimum_and_its_negation_a_maximum():
    cp = analyze_critical_point(Point(0.0, 0.0), bowl, DUMMY, DUMMY)
    # H = [[2, 1], [1, 6]]: eigenvalues 4 ± sqrt(5)
    torch.testing.assert_close(cp.eigenvalues, torch.tensor([4 - 5**0.5, 4 + 5**0.5], dtype=F64))
    assert cp.kind == LOCAL_MINIMUM and cp.min_ratio == 1.0
    neg = analyze_critical_point(Point(0.0, 0.0), lambda p, t: -bowl(p, t), DUMMY, DUMMY)
    assert neg.kind == LOCAL_MAXIMUM and neg.min_ratio == 0.0 and neg.escape_direction is not None
    # away from the critical point the Hessian is the same (quadratic) but the gradient is not zero
    off = analyze_critical_point(Point(1.0, -2.0), bowl, DUMMY, DUMMY)
    assert off.grad_norm == pytest.approx(float(torch.tensor([2 - 2, 1 - 12.0]).norm()))


def test_classification_with_zero_eigenvalues_and_tolerance():
    lam = torch.tensor([-1e-9, 1.0, 2.0], dtype=F64)
    assert classify_critical_point(lam, tol=1e-6) == DEGENERATE  # the -1e-9 counts as zero
    assert classify_critical_point(lam, tol=0.0) == SADDLE_POINT
    assert classify_critical_point(torch.tensor([0.0, -1.0, 1.0])) == SADDLE_POINT
    assert classify_critical_point(torch.zeros(3)) == DEGENERATE
    # relative tolerance: the same eigenvalues in other units give the same answer
    lam2 = torch.tensor([1e-5, 1.0, 2.0], dtype=F64)
    assert classify_critical_point(lam2, tol=1e-4) == classify_critical_point(1e3 * lam2, tol=1e-4) == DEGENERATE
    assert classify_critical_point(1e3 * lam2, tol=1e-4, relative=False) == LOCAL_MINIMUM
    assert minimum_ratio(torch.tensor([-1.0, 0.0, 1.0, 3.0])) == 0.5
    with pytest.raises(ValueError, match="tol must be >= 0"):
        classify_critical_point(lam, tol=-1.0)
    with pytest.raises(ValueError, match="eigenvalues is empty"):
        minimum_ratio(torch.zeros(0))


def test_hessian_vector_product_equals_H_times_v():
    model, loss_fn, x, y = tiny_mlp_problem(2)
    H = loss_hessian(model, loss_fn, x, y)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(H.shape[0], generator=g, dtype=F64)
        torch.testing.assert_close(hessian_vector_product(model, loss_fn, x, y, v), H @ v, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"v must have shape \(26,\)"):
        hessian_vector_product(model, loss_fn, x, y, torch.zeros(5, dtype=F64))


def test_eigen_decomposition_reconstructs_H_and_errors():
    model, loss_fn, x, y = tiny_mlp_problem(3)
    H = loss_hessian(model, loss_fn, x, y)
    lam, U = hessian_eigen(H)
    assert torch.all(lam[1:] >= lam[:-1])
    torch.testing.assert_close(U @ torch.diag(lam) @ U.T, H, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="square"):
        hessian_eigen(torch.zeros(2, 3))


def test_load_flat_parameters_round_trip_and_shape_error():
    model, *_ = tiny_mlp_problem()
    theta = torch.arange(26, dtype=F64)
    load_flat_parameters(model, theta)
    torch.testing.assert_close(flatten_parameters(model), theta)
    assert float(model[0].weight[0, 1].detach()) == 1.0  # row-major, parameters in named_parameters() order
    with pytest.raises(ValueError, match=r"theta must have shape \(26,\)"):
        load_flat_parameters(model, torch.zeros(3, dtype=F64))
