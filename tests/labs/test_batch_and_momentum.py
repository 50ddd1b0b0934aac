"""The batch-and-momentum lab end to end through the CLI on the real digits (fast preset)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deepnotes.cli import main
from deepnotes.labs.batch_and_momentum import PRESETS, SETTINGS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "batch-and-momentum", "--preset", "fast", "--out", str(out), "--no-progress"]) == 0
    (run,) = list((out / "batch-and-momentum").iterdir())
    return run


def test_run_folder_has_report_plots_and_per_setting_files(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "curves.png", "sharpness.png"):
        assert (run_dir / name).is_file(), name
    for key, _, _ in SETTINGS:
        for name in ("metrics.csv", "model.safetensors", "result.json"):
            assert (run_dir / "settings" / key / name).is_file(), (key, name)
    for png in ("curves.png", "sharpness.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run_dir / "report.md").read_text()
    assert "](curves.png)" in report and "](sharpness.png)" in report
    assert "The lecture's claims beside this run" in report


def test_results_count_updates_and_measure_each_setting(run_dir):
    fast = PRESETS["fast"]
    results = {r["key"]: r for r in json.loads((run_dir / "results.json").read_text())["settings"]}
    assert set(results) == {k for k, _, _ in SETTINGS}
    n = fast["limit_train"]
    for key, size, with_momentum in SETTINGS:
        r = results[key]
        batch = 16 if size == "small" else fast["large_batch"]
        assert r["batch_size"] == batch
        assert r["momentum"] == (0.9 if with_momentum else 0.0)
        assert r["updates_per_epoch"] == math.ceil(n / batch)
        assert r["updates"] == fast["epochs"] * r["updates_per_epoch"]
        assert r["update_time_ms"] == pytest.approx(1000 * r["epoch_time_s"] / r["updates_per_epoch"])
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["train_acc"] <= 1
        s = r["sharpness"]
        assert s["radii"] == list(fast["radii"]) and len(s["mean"]) == len(s["max"]) == len(fast["radii"])
        assert all(mx >= m for m, mx in zip(s["mean"], s["max"]))
        rows = (run_dir / "settings" / key / "metrics.csv").read_text().splitlines()
        assert len(rows) == 1 + fast["epochs"]


def test_eval_and_report_commands(run_dir, capsys):
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    e = json.loads((run_dir / "eval" / "mnist-subset.json").read_text())
    assert e["n"] == 1000 and all(0 <= e[f"{k}_acc"] <= 1 for k, _, _ in SETTINGS)
    assert main(["report", str(run_dir)]) == 0
    assert "`deepnotes eval` results" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--radii", "-0.1"], "--radii"),
        (["--momentum", "0"], "--momentum must be > 0"),
        (["--large-batch", "-1"], "--large-batch"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["run", "batch-and-momentum", "--preset", "fast", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("flags, named", [
    (["--radii", "0.1,0"], "--radii"),
    (["--radii", ""], "--radii"),
    (["--directions", "0"], "--directions"),
    (["--sharpness-examples", "-1"], "--sharpness-examples"),
    (["--limit-train", "-1"], "--limit-train"),
    (["--momentum", "1"], "--momentum"),
    (["--lr", "0"], "--lr"),
    (["--dataset", "cifar"], "--dataset"),
])
def test_bad_values_exit_2_before_any_run_folder(tmp_path, capsys, flags, named):
    assert main(["run", "batch-and-momentum", "--preset", "fast", *flags, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_eval_of_a_missing_folder_says_so(run_dir, tmp_path, capsys):
    assert main(["eval", str(run_dir), "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "the folder does not exist" in err and "Traceback" not in err
