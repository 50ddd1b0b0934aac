"""Regression models of lecture 1: shapes, the hard-sigmoid model is piecewise linear, linear = least squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression as SkLinearRegression

from deepnotes.errors import UserError
from deepnotes.models.registry import create_model
from deepnotes.models.regression import (
    EpochShuffle,
    LeastSquares,
    LinearRegression,
    MLPRegressor,
    SumOfSigmoids,
    best_so_far,
    fit_regressor,
    hard_sigmoid,
    l2_penalty,
    predict,
)
from deepnotes.train import TrainingDiverged


@pytest.mark.parametrize("model", [LinearRegression(7), SumOfSigmoids(7, 5), SumOfSigmoids(7, 5, hard=True),
                                   MLPRegressor(7, 16, 3), MLPRegressor(7, 16, 0)])
def test_shapes(model):
    assert model(torch.randn(11, 7)).shape == (11,)
    assert model(torch.randn(1, 7)).shape == (1,)


def test_models_by_name_and_errors():
    assert isinstance(create_model("regression-linear", in_features=3), LinearRegression)
    assert create_model("regression-sigmoids", in_features=3, num_sigmoids=4, hard_sigmoid=True).hard
    mlp = create_model("regression-mlp", in_features=3, width=8, depth=2, activation="tanh")
    assert len([m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]) == 3
    assert len([m for m in mlp.modules() if isinstance(m, torch.nn.Tanh)]) == 2
    with pytest.raises(UserError, match="unknown model"):
        create_model("regression-svm", in_features=3)
    with pytest.raises(UserError, match="num_sigmoids"):
        create_model("regression-sigmoids", in_features=3, num_sigmoids=0)
    with pytest.raises(ValueError, match="activation"):
        MLPRegressor(3, activation="gelu")


def test_hard_sigmoid_matches_torch_hardsigmoid_rescaled():
    z = torch.linspace(-3, 4, 701)
    torch.testing.assert_close(hard_sigmoid(z), F.hardsigmoid(6 * z - 3))
    assert hard_sigmoid(torch.tensor([-1.0, 0.25, 2.0])).tolist() == [0.0, 0.25, 1.0]


def test_sum_of_sigmoids_formula():
    torch.manual_seed(0)
    m = SumOfSigmoids(3, 4)
    x = torch.randn(5, 3)
    W, bi = m.hidden.weight, m.hidden.bias
    c, b = m.out.weight[0], m.out.bias
    expected = b + (c * torch.sigmoid(bi + x @ W.T)).sum(-1)
    torch.testing.assert_close(m(x), expected)


def test_hard_sigmoid_model_is_piecewise_linear():
    """Along a line in input space the output has a constant slope between the K*2 kinks."""
    torch.manual_seed(0)
    m = SumOfSigmoids(1, 3, hard=True).double()
    with torch.no_grad():
        m.hidden.weight.copy_(torch.tensor([[1.0], [2.0], [-1.0]]))
        m.hidden.bias.copy_(torch.tensor([0.0, -3.0, 1.5]))
    # Kinks where b_i + w_i x in {0, 1}: x = 0, 1, 1.5, 2, 0.5, 1.5.
    kinks = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    x = torch.linspace(-1, 3, 4001, dtype=torch.float64)
    with torch.no_grad():
        y = m(x[:, None])
    slope = torch.diff(y) / torch.diff(x)
    mid = ((x[1:] + x[:-1]) / 2).numpy()
    piece = np.searchsorted(kinks, mid)
    away = np.min(np.abs(mid[:, None] - kinks[None, :]), axis=1) > 2e-3
    for p in np.unique(piece):
        s = slope[torch.from_numpy((piece == p) & away)]
        torch.testing.assert_close(s, s[:1].expand_as(s), atol=1e-9, rtol=0)
    # ... and it is not one straight line (the soft-sigmoid model has no constant pieces at all).
    assert len(torch.unique(slope[torch.from_numpy(away)].round(decimals=6))) >= 4
    soft = SumOfSigmoids(1, 3).double()
    soft.load_state_dict(m.state_dict())
    with torch.no_grad():
        ys = soft(x[:, None])
    s2 = torch.diff(torch.diff(ys))
    assert (s2.abs() > 1e-12).float().mean() > 0.9


def test_linear_model_trained_to_convergence_matches_sklearn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6))
    y = x @ rng.normal(size=6) + 0.5 + 0.3 * rng.normal(size=300)
    ref = SkLinearRegression().fit(x, y)
    torch.manual_seed(0)
    m = LinearRegression(6).double()
    res = fit_regressor(m, torch.from_numpy(x), torch.from_numpy(y), epochs=600, batch_size=0, lr=0.05)
    assert len(res.history) == 600 and res.best_valid_mse is None
    np.testing.assert_allclose(m.linear.weight.detach().numpy()[0], ref.coef_, atol=1e-4)
    np.testing.assert_allclose(float(m.linear.bias.detach()), ref.intercept_, atol=1e-4)


def test_l2_penalty_shrinks_weights_not_biases_and_early_stopping():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(200, 4)))
    y = x @ torch.tensor([2.0, -1.0, 0.5, 0.0], dtype=torch.float64) + 3.0
    m = LinearRegression(4).double()
    assert float(l2_penalty(m).detach()) == pytest.approx(float(m.linear.weight.detach().pow(2).sum()))
    fit_regressor(m, x, y, epochs=400, batch_size=0, lr=0.05, weight_decay=1.0)
    # Ridge with lambda=1 on MSE: w = (X^T X / N + I)^-1 X^T y / N (centred), strictly smaller than OLS.
    xc, yc = x - x.mean(0), y - y.mean()
    ridge = torch.linalg.solve(xc.T @ xc / len(x) + torch.eye(4, dtype=torch.float64), xc.T @ yc / len(x))
    torch.testing.assert_close(m.linear.weight[0].detach(), ridge, atol=2e-3, rtol=0)
    assert float(m.linear.bias.detach()) == pytest.approx(float(y.mean() - x.mean(0) @ ridge), abs=2e-3)

    # Early stopping: a big MLP on 30 noisy rows, patience 3 -> stops early and keeps the best epoch.
    torch.manual_seed(0)
    xs, ys = torch.randn(30, 4), torch.randn(30)
    xv, yv = torch.randn(30, 4), torch.randn(30)
    big = MLPRegressor(4, 128, 2)
    res = fit_regressor(big, xs, ys, xv, yv, epochs=300, batch_size=8, lr=1e-2, patience=3)
    assert res.stopped_early and len(res.history) < 300
    best = min(h["valid_mse"] for h in res.history)
    assert res.best_valid_mse == pytest.approx(best)
    assert float(torch.mean((predict(big, xv) - yv) ** 2)) == pytest.approx(best, rel=1e-5)


def test_fit_errors():
    m = LinearRegression(2)
    with pytest.raises(ValueError, match="optimizer"):
        fit_regressor(m, torch.zeros(3, 2), torch.zeros(3), optimizer="lbfgs")
    with pytest.raises(TrainingDiverged, match="Lower --lr"):
        fit_regressor(m, torch.randn(20, 2) * 1e3, torch.randn(20), optimizer="sgd", lr=10.0, epochs=50, batch_size=0)


def test_epoch_shuffle_is_one_seeded_pass_per_epoch():
    x, y = torch.arange(10.0)[:, None], torch.arange(10.0)
    src = EpochShuffle(x, y, 4, seed=3)
    assert len(src) == 3
    batches = list(src.epoch(0))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    order = torch.cat([b[1] for b in batches])
    assert sorted(order.tolist()) == list(range(10))
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + 1)).float()
    assert torch.equal(order, expected)  # the order of every run of this lab so far: seed * 1_000_003 + epoch (1-based)
    assert not torch.equal(torch.cat([b[1] for b in src.epoch(1)]), order)


def test_best_so_far_counts_strict_improvements_only():
    assert best_so_far([3.0, 2.0, 2.0, float("nan"), 1.0, 1.5]) == (5, 1.0, 1)
    assert best_so_far([2.0, 2.0, 2.0]) == (1, 2.0, 2)
    assert best_so_far([]) == (0, float("inf"), 0)


def test_fit_in_a_folder_resumes_exactly_after_a_kill(tmp_path, monkeypatch):
    """Killed inside epoch 4 (by a KeyboardInterrupt from a step), resumed: the same weights, history and early
    stop as an uninterrupted fit; a finished fit resumed again just loads its result."""
    from deepnotes.models import regression

    torch.manual_seed(0)
    x, y, xv, yv = torch.randn(40, 3), torch.randn(40), torch.randn(20, 3), torch.randn(20)
    kw = dict(epochs=30, batch_size=8, lr=1e-2, patience=3, weight_decay=1e-3, seed=5)
    torch.manual_seed(1)
    full_model = MLPRegressor(3, 32, 2)
    full = fit_regressor(full_model, x, y, xv, yv, run_dir=tmp_path / "full", **kw)
    assert full.stopped_early

    real_step, calls = regression.RegressorTask.training_step, []

    def dying_step(self, model, batch, step):
        calls.append(1)
        if len(calls) == 5 * 3 + 2:  # 5 updates per epoch: inside epoch 4
            raise KeyboardInterrupt
        return real_step(self, model, batch, step)

    monkeypatch.setattr(regression.RegressorTask, "training_step", dying_step)
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        fit_regressor(MLPRegressor(3, 32, 2), x, y, xv, yv, run_dir=tmp_path / "killed", **kw)
    monkeypatch.setattr(regression.RegressorTask, "training_step", real_step)
    assert not (tmp_path / "killed" / "fit.json").exists()
    torch.manual_seed(1)
    resumed_model = MLPRegressor(3, 32, 2)
    resumed = fit_regressor(resumed_model, x, y, xv, yv, run_dir=tmp_path / "killed", resume=True, **kw)
    assert resumed == full
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
    again = MLPRegressor(3, 32, 2)
    assert fit_regressor(again, x, y, xv, yv, run_dir=tmp_path / "killed", resume=True, **kw) == full
    assert all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), again.state_dict().values()))


def test_least_squares_module_matches_sklearn():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    ls = LeastSquares(3).fit(x, y)
    ref = SkLinearRegression().fit(x, y)
    np.testing.assert_array_equal(ls.predict(x), ref.predict(x))
    assert set(ls.state_dict()) == {"coef", "intercept"}
