"""The domain-adaptation lab end to end through the CLI (fast preset, MNIST digits -> 8x8 digits): files, every method
scored on every seed, the gap arithmetic, eval on a dataset outside the run, report re-render, resume keeps the
finished models, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepnotes.cli import main
from deepnotes.labs import domain_adaptation as da


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "domain-adaptation", "--preset", "fast", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    (run,) = list((out / "domain-adaptation").iterdir())
    return run


def test_files_and_report(run_dir):
    for name in ("config.json", "adaptation.json", "tsne.safetensors", "report.md", "accuracy.png",
                 "tsne_mnist-subset-to-digits-8x8.png"):
        assert (run_dir / name).is_file(), name
    for method in ("source-only", "dann", "target", "dann-few"):
        assert (run_dir / "models" / "mnist-subset-to-digits-8x8" / f"{method}-seed0" / "model.safetensors").is_file()
    report = (run_dir / "report.md").read_text()
    for section in ("## Results", "Ganin & Lempitsky", "## Domain generalization", "](tsne_mnist-subset-to"):
        assert section in report, section


def test_numbers_are_consistent(run_dir):
    res = json.loads((run_dir / "adaptation.json").read_text())
    shift = res["shifts"]["mnist-subset:digits-8x8"]
    for method in ("source-only", "dann", "target", "dann-few"):
        assert len(shift["target_acc"][method]) == 1 and 0 <= shift["target_acc"][method][0] <= 1
    m = shift["mean_target_acc"]
    if m["target"] > m["source-only"]:
        assert shift["gap_closed"] == pytest.approx((m["dann"] - m["source-only"]) / (m["target"] - m["source-only"]))
    else:
        assert shift["gap_closed"] is None
    assert [g["held_out"] for g in res["generalization"]] == ["mnist-subset", "digits-8x8"]
    assert res["all_closed_half"] == (shift["gap_closed"] is not None and shift["gap_closed"] >= 0.5)


def test_gap_closed():
    assert da.gap_closed(0.4, 0.6, 0.9) == pytest.approx(0.4)
    assert da.gap_closed(0.4, 0.3, 0.9) == pytest.approx(-0.2)  # DANN below source only: negative
    assert da.gap_closed(0.4, 0.6, 0.4) is None and da.gap_closed(0.4, 0.6, 0.2) is None  # no gap to close


def test_eval_on_other_data_report_and_resume(run_dir):
    assert main(["eval", str(run_dir), "--data", "mnist-m-held-out"]) == 0
    (ev,) = list((run_dir / "eval").glob("*.json"))
    metrics = json.loads(ev.read_text())
    assert {"mnist-subset:digits-8x8 dann", "mnist-subset:digits-8x8 gap closed"} <= set(metrics)
    assert main(["eval", str(run_dir), "--data", "fashion-m"]) == 2  # clothes: no shift of the run has them
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "report.md").is_file()
    weights = run_dir / "models" / "mnist-subset-to-digits-8x8" / "dann-seed0" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["run", "domain-adaptation", "--resume", str(run_dir), "--no-progress"]) == 0
    assert weights.read_bytes() == before


@pytest.mark.parametrize("flag,value", [("--shifts", "mnist-subset"), ("--shifts", "mnist-subset:svhn"),
                                        ("--dg-domains", "mnist-m"), ("--few-target", "-1")])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value):
    assert main(["run", "domain-adaptation", "--preset", "fast", flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag.lstrip("-").split("-")[0] in err[0]
    assert not (tmp_path / "domain-adaptation").exists()
