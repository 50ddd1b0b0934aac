"""Critical-point search and saddle escape on the diabetes loss of a small float64 MLP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepnotes.analysis.critical_points import (
    NOT_CRITICAL,
    gradient_descent,
    gradient_norm_search,
    point_summary,
    saddle_escape,
    zero_weight_saddle,
)
from deepnotes.analysis.hessian import SADDLE_POINT, analyze_critical_point, flat_loss_function, load_flat_parameters
from deepnotes.data.tabular import load_diabetes
from deepnotes.models.registry import create_model


def _data(features: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, names = load_diabetes(features)
    assert x.shape == (442, features) and names[:2] == ["age", "sex"]
    return torch.from_numpy((x - x.mean(0)) / x.std(0)), torch.from_numpy((y - y.mean()) / y.std())


def _mlp(hidden: int = 4, activation: str = "tanh", features: int = 4) -> nn.Module:
    return create_model("regression-mlp", in_features=features, width=hidden, depth=1, activation=activation).double()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out, y)


def test_gradient_norm_search_reaches_a_critical_point():
    x, y = _data()
    torch.manual_seed(1)
    f, theta0 = flat_loss_function(_mlp(), _mse, x, y)
    g0 = float(torch.func.grad(f)(theta0).norm())
    theta, iters = gradient_norm_search(f, theta0, steps=40)
    assert float(torch.func.grad(f)(theta).norm()) < 1e-3 * g0 and iters >= 1


def test_gradient_descent_lowers_the_loss_and_records_every_step():
    x, y = _data()
    torch.manual_seed(0)
    f, theta0 = flat_loss_function(_mlp(), _mse, x, y)
    theta, losses = gradient_descent(f, theta0, lr=0.2, steps=50)
    assert len(losses) == 51 and losses[-1] < losses[0] and losses[-1] == pytest.approx(float(f(theta)))


def test_zero_weight_point_is_an_exact_saddle_and_escaping_it_trains():
    x, y = _data()
    model = _mlp(hidden=3, activation="sigmoid")
    theta = zero_weight_saddle(model, y)
    load_flat_parameters(model, theta)
    cp = analyze_critical_point(model, _mse, x, y)
    assert cp.grad_norm < 1e-12 and cp.kind == SADDLE_POINT and cp.min_ratio < 1
    summary = point_summary(cp, eig_tol=1e-6, grad_tol=1e-3)
    assert summary["kind"] == SADDLE_POINT and summary["n_negative"] >= 1
    assert summary["n_positive"] + summary["n_negative"] + summary["n_zero"] == theta.numel()
    assert point_summary(cp, eig_tol=1e-6, grad_tol=1e-20)["kind"] == NOT_CRITICAL  # ||grad|| not below the tolerance
    e = saddle_escape(model, _mse, x, y, theta, "zero", lr=0.2, escape_step=2.0, gd_steps=50, eig_tol=1e-6)
    assert e["loss_after_step"] < e["loss"] and e["gd_from_escaped"][-1] < e["gd_from_saddle"][-1]
    assert np.ptp(e["gd_from_saddle"]) < 1e-12  # gradient descent cannot leave a point of zero gradient
