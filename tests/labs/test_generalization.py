"""The generalization lab end to end through the CLI on the real Seattle weather (fast preset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepnotes.analysis.generalization import hoeffding_union_bound
from deepnotes.cli import main
from deepnotes.experiment import get_lab


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "generalization", "--preset", "fast", "--out", str(out), "--no-progress"]) == 0
    (run,) = list((out / "generalization").iterdir())
    return run


def test_run_folder_has_report_and_plots(run_dir):
    for name in ("config.json", "results.json", "report.md", "bad_share.png", "erm_gap.png", "data.png"):
        assert (run_dir / name).is_file(), name
        if name.endswith(".png"):
            assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (run_dir / "report.md").read_text()
    for png in ("bad_share.png", "erm_gap.png", "data.png"):
        assert f"]({png})" in report
    assert "1461 days" in report


def test_results_have_every_cell_with_its_bound(run_dir):
    fast = get_lab("generalization").presets["fast"]
    res = json.loads((run_dir / "results.json").read_text())
    assert res["n_all"] == 1461
    cells = {(c["hypotheses"], c["n"]): c for c in res["cells"]}
    assert set(cells) == {(h, n) for h in fast["hypotheses"] for n in fast["sizes"]}
    for (h, n), c in cells.items():
        assert c["bound"] == pytest.approx(float(hoeffding_union_bound(h, n, 0.1)))
        assert 0 <= c["bad_share"] <= 1
        assert c["excess_mean"] >= 0  # h_all is the best on D_all
    # N = 10 with eps = 0.1: most training sets are bad; N = 500: none of 200 for these classes
    assert cells[(10, 10)]["bad_share"] > 0.5
    assert cells[(10, 500)]["bad_share"] <= cells[(10, 10)]["bad_share"]
    classes = {c["hypotheses"]: c for c in res["classes"]}
    assert all(c["distinct_behaviours"] <= h for h, c in classes.items())


def test_eval_repeats_with_fresh_training_sets(run_dir):
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    e = json.loads((run_dir / "eval" / "temp_max.json").read_text())
    assert e["violations"] == 0
    assert 0 <= e["max_abs_diff"] < 0.25  # Monte-Carlo noise of 200 trials, not a different experiment
    assert main(["report", str(run_dir)]) == 0
    assert "`deepnotes eval` results" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "flags, message",
    [(["--hypotheses", "3"], "--hypotheses must be even numbers"), (["--hypotheses", "0"], "--hypotheses must be in"),
     (["--eps", "0"], "--eps must be in (0, 1), got 0.0"), (["--sizes", "0"], "each value of --sizes must be in"),
     (["--sizes", ""], "--sizes needs at least one value"), (["--trials", "0"], "--trials must be in"),
     (["--delta", "1"], "--delta must be in (0, 1), got 1.0")],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["run", "generalization", "--preset", "fast", "--out", str(tmp_path / "runs"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
