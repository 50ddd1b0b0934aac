"""The critical-points lab end to end on the real diabetes data (fast preset), plus its search and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepnotes.analysis.critical_points import KINDS
from deepnotes.analysis.hessian import SADDLE_POINT
from deepnotes.cli import main


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "critical-points", "--preset", "fast", "--out", str(out), "--no-progress"]) == 0
    (run_dir,) = list((out / "critical-points").iterdir())
    return run_dir


def test_fast_preset_writes_the_run_folder(fast_run):
    for name in ("config.json", "data.json", "results.json", "escape.json", "critical_points.safetensors",
                 "report.md", "minimum_ratio_vs_loss.png", "saddle_escape.png", "hessian_spectra.png"):
        assert (fast_run / name).is_file(), name
    results = json.loads((fast_run / "results.json").read_text())
    trials = results["trials"]
    assert len(trials) == 3
    assert sum(results["counts"].values()) == len(trials)
    assert set(results["counts"]) == set(KINDS)
    for t in trials:
        assert 0.0 <= t["min_ratio"] <= 1.0
        assert t["n_positive"] + t["n_negative"] + t["n_zero"] == results["parameters"] == 4 * 6 + 1
        # the gradient-norm search never makes the gradient larger than gradient descent left it
        assert t["grad_norm"] <= t["grad_norm_after_gd"] * (1 + 1e-9)
    report = (fast_run / "report.md").read_text()
    assert "minimum_ratio_vs_loss.png" in report and "saddle_escape.png" in report
    assert not list(fast_run.rglob("*.tmp"))


def test_escape_from_the_saddle_lowers_the_loss(fast_run):
    escapes = json.loads((fast_run / "escape.json").read_text())["escapes"]
    zero = escapes[0]
    assert zero["kind"] == SADDLE_POINT and zero["grad_norm"] < 1e-12 and zero["lambda_min"] < 0
    for e in escapes:
        assert e["loss_after_step"] < e["loss"]
        assert e["gd_from_escaped"][-1] < e["gd_from_saddle"][-1]
    # gradient descent cannot leave the zero-weight point (its gradient is exactly zero) ...
    assert max(zero["gd_from_saddle"]) - min(zero["gd_from_saddle"]) < 1e-12
    # ... and along u the loss drops on both sides, as ½ λ t² says for small t
    t, loss = torch.tensor(zero["slice_t"]), torch.tensor(zero["slice_loss"])
    mid = len(t) // 2
    assert abs(float(t[mid])) < 1e-12 and loss[mid - 1] < loss[mid] and loss[mid + 1] < loss[mid]
    assert float(loss[mid + 1] - loss[mid]) == pytest.approx(0.5 * zero["lambda_min"] * float(t[mid + 1]) ** 2, rel=0.05)


def test_eval_recomputes_the_same_classes(fast_run, capsys):
    assert main(["eval", str(fast_run)]) == 0
    ev = json.loads((fast_run / "eval" / "diabetes.json").read_text())
    assert ev["points"] == 3 and ev["classes_agree"] == 3
    assert ev["max_eigenvalue_difference"] < 1e-10
    assert main(["eval", str(fast_run), "--data", "mnist"]) == 2
    assert "--data mnist" in capsys.readouterr().err
    assert main(["report", str(fast_run)]) == 0
    report = (fast_run / "report.md").read_text()
    assert "## `deepnotes eval` results" in report and "| diabetes |" in report and "## Configuration" in report


@pytest.mark.parametrize("flag, value, message", [
    ("--trials", "0", "--trials must be in [1, 100000], got 0"),
    ("--features", "11", "--features must be in [1, 10], got 11"),
    ("--gd-steps", "-5", "each value of --gd-steps must be in [0, 100000000], got -5"),
    ("--gd-steps", "", "--gd-steps needs at least one value"),
    ("--grad-tol", "0", "--grad-tol must be in (0, inf), got 0.0"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flag, value, message):
    assert main(["run", "critical-points", "--preset", "fast", flag, value, "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
