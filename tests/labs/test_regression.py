"""The regression lab end to end through the CLI: seattle-weather fast preset, and HW1-format CSV files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from deepnotes.cli import main
from deepnotes.train.checkpoint import list_checkpoints

FAST = ["--preset", "fast", "--no-progress"]


def _only_run(out: Path) -> Path:
    (run_dir,) = list((out / "regression").iterdir())
    return run_dir


@pytest.fixture(scope="module")
def weather_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weather")
    assert main(["run", "regression", *FAST, "--out", str(out)]) == 0
    return _only_run(out)


def test_fast_preset_writes_the_run_folder(weather_run):
    for name in ("config.json", "data.json", "model.safetensors", "history.json", "test_metrics.json",
                 "predictions.csv", "report.md", "predictions.png", "learning_curves.png", "capacity_ladder.png"):
        assert (weather_run / name).is_file(), name
    assert not list(weather_run.rglob("*.tmp"))
    data = json.loads((weather_run / "data.json").read_text())
    assert data["kind"] == "weather" and len(data["all_feature_names"]) == 44 and len(data["feature_names"]) == 12
    assert data["train_rows"][1] < data["valid_rows"][0] <= data["valid_rows"][1] < data["test_rows"][0]
    m = json.loads((weather_run / "test_metrics.json").read_text())
    assert set(m["models"]) == {"linear", "sigmoids", "hard-sigmoids", "mlp", "ensemble"}
    # the ensemble is the mean of the four models' test predictions
    with open(weather_run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    members = np.array([[float(r[k]) for k in ("linear", "sigmoids", "hard-sigmoids", "mlp")] for r in rows])
    np.testing.assert_allclose(members.mean(axis=1), [float(r["ensemble"]) for r in rows], atol=1e-3)
    assert "ensemble" in m["cross_validation"]
    assert set(m["baselines"]) == {"least squares", "persistence"}
    assert m["best_model"] in m["models"]
    assert m["n_test"] == data["n_test"] == 291
    assert set(m["cross_validation"]) >= {"linear", "least squares", "persistence"}
    for r in [*m["models"].values(), *m["baselines"].values()]:
        assert np.isfinite(r["test_mse"]) and r["test_mse"] > 0
    # Persistence on the test days, recomputed from the raw data: MSE of temp_max(day) vs temp_max(day before).
    from vega_datasets import local_data

    t = local_data.seattle_weather().sort_values("date")["temp_max"].to_numpy()
    pers = np.mean((t[-291:] - t[-292:-1]) ** 2)
    assert m["baselines"]["persistence"]["test_mse"] == pytest.approx(pers)
    report = (weather_run / "report.md").read_text()
    assert "persistence" in report and "least squares" in report and "2.28" in report and "0.86" in report
    assert "beat" in report and "predictions.png" in report


def test_eval_reloads_weights_and_report_rerenders(weather_run, tmp_path, capsys):
    m = json.loads((weather_run / "test_metrics.json").read_text())
    assert main(["eval", str(weather_run)]) == 0
    ev = json.loads((weather_run / "eval" / "test.json").read_text())
    for key, r in m["models"].items():
        assert ev[f"mse_{key}"] == pytest.approx(r["test_mse"], rel=1e-5)
    assert ev["mse_least_squares"] == pytest.approx(m["baselines"]["least squares"]["test_mse"], rel=1e-9)
    # Another CSV of the same format: the last 100 days.
    from vega_datasets import local_data

    path = tmp_path / "recent.csv"
    local_data.seattle_weather().tail(100).to_csv(path, index=False)
    assert main(["eval", str(weather_run), "--data", str(path)]) == 0
    assert json.loads((weather_run / "eval" / "recent.json").read_text())["n"] == 96
    assert main(["report", str(weather_run)]) == 0
    assert "recent" in (weather_run / "report.md").read_text()


def _without_times(obj):
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if k not in ("train_time_s", "wall_time_s")}
    return obj


def test_resume_after_kill_equals_uninterrupted(weather_run, tmp_path, monkeypatch):
    """Ctrl-C inside the second model's 4th epoch (a KeyboardInterrupt from a training step), then --resume: the
    finished model is reloaded, the interrupted one continues from its checkpoint, and the run ends with the
    weights, histories and metrics of the uninterrupted run."""
    from safetensors.torch import load_file

    from deepnotes.models import regression as models

    real_step, calls = models.RegressorTask.training_step, []

    def dying_step(self, model, batch, step):
        calls.append(1)
        if len(calls) == 8 * 16 + 3 * 16 + 5:  # linear: 8 epochs of 16 updates; then sigmoids' epoch 4
            raise KeyboardInterrupt
        return real_step(self, model, batch, step)

    monkeypatch.setattr(models.RegressorTask, "training_step", dying_step)
    out = tmp_path / "runs"
    assert main(["run", "regression", *FAST, "--out", str(out)]) == 130
    monkeypatch.setattr(models.RegressorTask, "training_step", real_step)
    run_dir = _only_run(out)
    assert (run_dir / "models" / "linear" / "fit.json").is_file() and not (run_dir / "test_metrics.json").exists()
    sigmoids = run_dir / "models" / "sigmoids"
    assert [p.name for p in list_checkpoints(sigmoids)] == ["epoch-0002", "epoch-0003"]
    assert not (sigmoids / "fit.json").exists()
    assert main(["run", "regression", "--resume", str(run_dir), "--no-progress"]) == 0
    for name in ("test_metrics.json", "history.json", "data.json"):
        assert _without_times(json.loads((run_dir / name).read_text())) == \
            _without_times(json.loads((weather_run / name).read_text())), name
    assert (run_dir / "predictions.csv").read_text() == (weather_run / "predictions.csv").read_text()
    resumed, full = load_file(str(run_dir / "model.safetensors")), load_file(str(weather_run / "model.safetensors"))
    assert resumed.keys() == full.keys() and all(np.array_equal(resumed[k], full[k]) for k in full)


@pytest.mark.parametrize("flags, message", [
    (["--features", "temp_max_d9"], "--features: unknown name(s) temp_max_d9"),
    (["--split", "0.5,0.1,0.1"], "--split must be three positive fractions summing to 1"),
    (["--split", "0.7,0,0.3"], "each value of --split must be in (0, 1), got 0.0"),
    (["--folds", "1"], "--folds must be 0 (off) or >= 2"),
    (["--lr", "0"], "--lr must be in (0, inf), got 0.0"),
    (["--batch-size", "-1"], "--batch-size must be in [0, 100000000], got -1"),
    (["--ladder-widths", "4,0"], "each value of --ladder-widths must be in [1, 100000], got 0"),
    (["--data", "nope.csv"], "nope.csv: no such file"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["run", "regression", *FAST, "--out", str(tmp_path / "runs"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no run folder left behind


# ----------------------------------------------------------------------------------- HW1 format
def _write_covid_pair(folder: Path, n_train: int = 160, n_test: int = 30, seed: int = 0) -> Path:
    states = [f"S{i}" for i in range(37)]
    feats = [f"f{j}" for j in range(15)] + ["tested_positive"]
    cols = ["id", *states, *[n if d == 0 else f"{n}.{d}" for d in range(5) for n in feats]]
    rng = np.random.default_rng(seed)

    def rows(n: int, start: int, with_target: bool) -> list[str]:
        x = rng.uniform(0, 10, size=(n, 16 * 5))
        x[:, 31::16] = x[:, 15::16][:, :1] + rng.normal(0, 0.3, size=(n, 4)).cumsum(1)  # tested_positive trend
        state = np.eye(37)[rng.integers(0, 37, n)]
        body = np.concatenate([state, x], 1)
        if not with_target:
            body = body[:, :-1]
        return [",".join([str(start + i)] + [f"{v:.5f}" for v in r]) for i, r in enumerate(body)]

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "covid.train.csv").write_text("\n".join([",".join(cols), *rows(n_train, 0, True)]) + "\n")
    (folder / "covid.test.csv").write_text("\n".join([",".join(cols[:-1]), *rows(n_test, 0, False)]) + "\n")
    return folder / "covid.train.csv"


def test_covid_format_end_to_end_writes_a_submission(tmp_path):
    train = _write_covid_pair(tmp_path / "hw1")
    out = tmp_path / "runs"
    assert main(["run", "regression", *FAST, "--folds", "0", "--ladder-widths", "", "--k-best", "20", "--data", str(train), "--out", str(out)]) == 0
    run_dir = _only_run(out)
    data = json.loads((run_dir / "data.json").read_text())
    assert data["kind"] == "covid" and data["persistence_feature"] == "tested_positive.3"
    assert len(data["feature_names"]) == 20 and data["n_train"] + data["n_valid"] + data["n_test"] == 160
    lines = (run_dir / "submission.csv").read_text().splitlines()
    assert lines[0] == "id,tested_positive" and len(lines) == 31
    assert [int(l.split(",")[0]) for l in lines[1:]] == list(range(30))
    assert all(np.isfinite(float(l.split(",")[1])) for l in lines[1:])
    assert (run_dir / "report.md").is_file() and (run_dir / "predictions.png").is_file()
    # eval on the unlabelled test file -> predictions; on the labelled train file -> MSEs.
    assert main(["eval", str(run_dir), "--data", str(train.with_name("covid.test.csv"))]) == 0
    assert (run_dir / "eval" / "covid.test-submission.csv").read_text().splitlines()[0] == "id,tested_positive"
    assert main(["eval", str(run_dir), "--data", str(train)]) == 0
    assert json.loads((run_dir / "eval" / "covid.train.json").read_text())["n"] == 160


def test_covid_malformed_row_is_a_user_error(tmp_path, capsys):
    train = _write_covid_pair(tmp_path / "hw1", n_train=40, n_test=5)
    lines = train.read_text().splitlines()
    cells = lines[7].split(",")
    cells[50] = "abc"
    lines[7] = ",".join(cells)
    train.write_text("\n".join(lines) + "\n")
    assert main(["run", "regression", *FAST, "--data", str(train), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "covid.train.csv: line 8, column 'f12'" in err and "not a number" in err


def test_a_bad_date_in_a_weather_csv_is_one_line(tmp_path, capsys):
    from vega_datasets import local_data

    frame = local_data.seattle_weather().head(60).astype({"date": str})
    frame.loc[9, "date"] = "2012-13-45"
    path = tmp_path / "weather.csv"
    frame.to_csv(path, index=False)
    assert main(["run", "regression", *FAST, "--data", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "You might want to try" not in err
    assert f"{path}: line 11, column date: '2012-13-45' is not a date; write every date as YEAR-MONTH-DAY" in err
    assert not (tmp_path / "runs").exists()
