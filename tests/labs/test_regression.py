"""The regression lab end to end through the CLI: seattle-weather fast preset, and HW1-format CSV files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from deepnotes.cli import main

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


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "regression", *FAST, "--out", str(tmp_path), "--features", "temp_max_d9"]) == 2
    assert "--features" in capsys.readouterr().err
    assert main(["run", "regression", *FAST, "--out", str(tmp_path), "--data", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


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
