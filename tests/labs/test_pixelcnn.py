"""The pixelcnn lab end to end through the CLI on Fashion-MNIST (fast preset): files, results, report re-render,
eval on the whole test split and on another dataset, resume of a finished run, and one-line errors for bad flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from deepnotes.cli import main
from deepnotes.data import get_image_dataset

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None,
                                reason="Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)")

MODELS = ("independent", "fvsbn", "nade", "pixelcnn", "gated-pixelcnn")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "pixelcnn", "--preset", "fast", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    (run,) = list((out / "pixelcnn").iterdir())
    return run


def test_run_folder_results_and_report(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "nll_curves.png", "samples.png",
                 "probabilities.png", "samples.npz", "probabilities.npz",
                 *(f"models/{m}/model.safetensors" for m in MODELS)):
        assert (run_dir / name).is_file(), name
    for m in MODELS[1:]:
        assert (run_dir / f"models/{m}/metrics.csv").is_file(), m  # trained with the Trainer
    res = json.loads((run_dir / "results.json").read_text())
    for m in MODELS:
        r = res[m]
        assert 0 < r["test_nll"] < 784 * math.log(2) * 1.5, m  # positive; not far above a coin per pixel
        assert r["test_bpd"] == pytest.approx(r["test_nll"] / (784 * math.log(2)))
        assert r["parameters"] > 0 and r["train_time_s"] >= 0
    assert res["independent"]["parameters"] == 784
    assert res["fvsbn"]["parameters"] == 784 * 784 + 784
    assert res["best_by_validation"] == min(MODELS, key=lambda m: res[m]["val_nll"])
    data = json.loads((run_dir / "data.json").read_text())
    assert data["binarize"] == "stochastic" and 0.1 < data["train_on"] < 0.6
    samples = np.load(run_dir / "samples.npz")
    assert set(samples.files) == set(MODELS)
    assert samples["gated-pixelcnn"].shape == (2, 1, 28, 28)
    assert set(np.unique(samples["fvsbn"]).tolist()) <= {0.0, 1.0}
    probs = np.load(run_dir / "probabilities.npz")
    assert probs["images"].shape == (8, 1, 28, 28) and 0 <= probs["pixelcnn"].min() <= probs["pixelcnn"].max() <= 1
    text = (run_dir / "report.md").read_text()
    assert "| gated-pixelcnn" in text and "samples.png" in text and "81.30" in text


def test_report_rerenders_and_eval_rescores_every_model(run_dir):
    (run_dir / "report.md").unlink()
    (run_dir / "samples.png").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").is_file() and (run_dir / "samples.png").is_file()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    ev = json.loads((run_dir / "eval" / "fashion-mnist.json").read_text())
    res = json.loads((run_dir / "results.json").read_text())
    assert ev["n"] == 10000  # the whole test split; the run scored its first 200
    for m in MODELS:
        assert abs(ev[f"{m}_nll"] - res[m]["test_nll"]) < 0.1 * res[m]["test_nll"], m  # same model, more images
    assert main(["eval", str(run_dir), "--data", "mnist-subset", "--device", "cpu"]) == 0
    digits = json.loads((run_dir / "eval" / "mnist-subset.json").read_text())
    assert digits["n"] == 1000 and all(digits[f"{m}_nll"] > 0 for m in MODELS)
    assert "mnist-subset" in (run_dir / "report.md").read_text() or main(["report", str(run_dir)]) == 0


def test_eval_of_the_same_images_reproduces_the_run(tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "pixelcnn", "--preset", "fast", "--limit-test", "0", "--models", "independent,fvsbn",
                 "--samples", "0", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    (run,) = list((out / "pixelcnn").iterdir())
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    ev = json.loads((run / "eval" / "fashion-mnist.json").read_text())
    res = json.loads((run / "results.json").read_text())
    for m in ("independent", "fvsbn"):
        assert ev[f"{m}_nll"] == pytest.approx(res[m]["test_nll"], abs=2e-3), m  # the same bits, the same score
    assert not (run / "samples.png").exists()


def test_resume_of_a_finished_run_keeps_every_model(run_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    old = json.loads((run_dir / "results.json").read_text())
    assert main(["run", "pixelcnn", "--resume", str(run_dir), "--no-progress", "--threads", "1"]) == 0
    after = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    assert before == after and len(after) == len(MODELS)  # nothing refitted
    res = json.loads((run_dir / "results.json").read_text())
    for m in MODELS:
        assert res[m]["test_nll"] == pytest.approx(old[m]["test_nll"], rel=1e-6), m
        assert res[m]["train_time_s"] == pytest.approx(old[m]["train_time_s"], rel=1e-3, abs=1e-3), m
    assert "epoch 1/" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--models", "fvsbn,boss"], "--models must be distinct names"),
    (["--kernel-size", "4"], "--kernel-size 4 must be odd"),
    (["--binarize", "median"], "--binarize"),
    (["--channels", "0"], "--channels"),
    (["--dataset", "cifar-100"], "cifar-100"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    try:
        code = main(["run", "pixelcnn", "--preset", "fast", "--out", str(tmp_path), *flags])
    except SystemExit as e:  # argparse rejects a choice outside a Literal's itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "pixelcnn").exists() or not any((tmp_path / "pixelcnn").iterdir())
