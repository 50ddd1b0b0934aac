"""Model selection: candidates with baselines and ensemble, cross-validation bookkeeping, the capacity ladder."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepnotes.analysis.model_selection import capacity_ladder, cross_validate, fit_candidates


def test_fit_candidates_trains_in_folders_and_adds_ensemble_and_baselines(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 10 + 0.1 * rng.normal(size=60)
    rows = {"train": np.arange(40), "valid": np.arange(40, 50), "test": np.arange(50, 60)}
    specs = {"linear": {"name": "linear"}, "mlp": {"name": "mlp", "width": 8, "depth": 1}}
    preds, fits, models, times = fit_candidates(specs, lambda r: x[r], y, rows["train"], rows, tmp_path, "cpu",
                                                persistence=lambda r: y[r] - 1.0, seed=0, epochs=5, batch_size=16, lr=1e-2)
    assert list(preds) == ["linear", "mlp", "ensemble", "least squares", "persistence"]
    assert set(fits) == set(times) == {"linear", "mlp"} and all(len(f.history) == 5 for f in fits.values())
    assert (tmp_path / "linear" / "fit.json").is_file() and (tmp_path / "mlp" / "model.safetensors").is_file()
    assert not (tmp_path / "mlp" / "checkpoints").exists()  # a finished fit keeps its result, not its checkpoints
    for split, r in rows.items():
        np.testing.assert_allclose(preds["ensemble"][split], (preds["linear"][split] + preds["mlp"][split]) / 2)
        np.testing.assert_array_equal(preds["persistence"][split], y[r] - 1.0)
        assert np.mean((preds["least squares"][split] - y[r]) ** 2) < 0.05  # the closed form fits the linear data
    torch.manual_seed(0)  # each model starts from the seed: the same linear model again
    again, *_ = fit_candidates({"linear": specs["linear"]}, lambda r: x[r], y, rows["train"], rows, tmp_path / "again",
                               "cpu", seed=0, epochs=5, batch_size=16, lr=1e-2)
    np.testing.assert_array_equal(again["linear"]["test"], preds["linear"]["test"])


def test_cross_validate_collects_each_candidates_fold_scores():
    seen = []

    def score(fold, train, valid):
        seen.append((fold, len(train), len(valid)))
        return {"a": float(fold), "b": 1.0}

    cv = cross_validate(10, 5, 0, score)
    assert [s[0] for s in seen] == [0, 1, 2, 3, 4] and all(t + v == 10 for _, t, v in seen)
    assert cv["a"] == {"mean": 2.0, "std": pytest.approx(np.std([0, 1, 2, 3, 4])), "folds": [0.0, 1.0, 2.0, 3.0, 4.0]}
    assert cv["b"]["std"] == 0.0


def test_capacity_ladder_scales_and_summarizes():
    def train(width):
        model = torch.nn.Linear(width, 1)
        history = [{"epoch": 1, "train_mse": 4.0, "valid_mse": 3.0}, {"epoch": 2, "train_mse": 1.0, "valid_mse": 5.0}]
        return model, SimpleNamespace(history=history)

    lines = []
    rungs, histories = capacity_ladder([2, 8], 3, train, scale=2.0, log=lines.append)
    assert [r["parameters"] for r in rungs] == [3, 9] and rungs[0]["depth"] == 3
    assert rungs[1] == {"width": 8, "depth": 3, "parameters": 9, "final_train_mse": 2.0, "final_valid_mse": 10.0,
                        "best_valid_mse": 6.0, "best_epoch": 1}
    assert set(histories) == {"ladder-width-2", "ladder-width-8"} and len(lines) == 2
