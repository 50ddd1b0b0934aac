"""The anomaly-detection lab end to end through the CLI on Fashion-MNIST (fast preset): files, AUROCs recomputed from
the saved scores, Deep SVDD starting from its pre-training encoder with its centre saved, report re-render, eval,
resume of a finished run, and one-line errors for bad flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data import get_image_dataset
from deepnotes.metrics.anomaly import auroc

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None,
                                reason="Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)")

LAB = "anomaly-detection"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", LAB, "--preset", "fast", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    (run,) = list((out / LAB).iterdir())
    return run


def test_run_folder_results_and_report(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "auroc_per_class.png",
                 "scores/0.npz", "scores/1.npz"):
        assert (run_dir / name).is_file(), name
    for k in ("0", "1"):
        for method in ("ae", "vae", "dcae", "svdd"):
            assert (run_dir / "models" / k / method / "model.safetensors").is_file(), (k, method)
    res = json.loads((run_dir / "results.json").read_text())
    assert set(res["per_class"]) == {"0", "1"}
    for k, methods in res["per_class"].items():
        assert set(methods) == {"pca", "ae", "vae", "vae-rec", "dcae", "svdd"}
        scores = np.load(run_dir / "scores" / f"{k}.npz")
        target = scores["labels"] != int(k)
        assert 0 < target.mean() < 1
        for method, r in methods.items():
            assert r["test_auroc"] == pytest.approx(auroc(scores[method], target), abs=1e-6), (k, method)
    assert res["mean"]["pca"]["test_auroc"] == pytest.approx(
        np.mean([res["per_class"][k]["pca"]["test_auroc"] for k in ("0", "1")]))
    deep = ("ae", "vae", "vae-rec", "dcae", "svdd")
    assert res["best_deep"] == max(deep, key=lambda m: res["mean"][m]["val_auroc"])
    best = res["mean"][res["best_deep"]]["test_auroc"]
    assert res["best_deep_beats_pca"] == (best > res["mean"]["pca"]["test_auroc"])
    # PCA with 8 directions separates trousers from the rest far better than chance, even on 3,000 images
    assert res["per_class"]["1"]["pca"]["test_auroc"] > 0.8
    text = (run_dir / "report.md").read_text()
    assert "| 1 Trouser" in text and "**mean (test)**" in text and "roc_" in text


def test_svdd_keeps_its_centre_and_starts_from_the_pretrained_encoder(run_dir):
    svdd = load_file(str(run_dir / "models/0/svdd/model.safetensors"))
    dcae = load_file(str(run_dir / "models/0/dcae/model.safetensors"))
    assert bool(svdd["center_set"]) and svdd["center"].shape == (16,)
    assert (svdd["center"].abs() >= 0.1 - 1e-6).all()  # Ruff et al.'s eps rule
    assert not [k for k in svdd if k.endswith("bias")]
    shared = [k for k in svdd if k.startswith("net.") and "encoder." + k[4:] in dcae]
    assert len(shared) >= 3  # conv1, conv2, fc (and the norms' statistics)
    # the first convolution moves little from the pre-trained one at Deep SVDD's small learning rate
    first, pre = svdd["net.conv1.weight"], dcae["encoder.conv1.weight"]
    assert torch.linalg.norm(first - pre) < 0.5 * torch.linalg.norm(pre)


def test_report_rerenders_and_eval_matches_the_run(run_dir):
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "report.md").is_file()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    ev = json.loads((run_dir / "eval" / "fashion-mnist.json").read_text())
    res = json.loads((run_dir / "results.json").read_text())
    assert ev["n"] == 10000  # eval scores the whole test split; the run scored its first 1,000
    for k in ("0", "1"):
        for method in ("ae", "vae", "vae-rec", "dcae", "svdd"):
            assert abs(ev[f"{k}_{method}_auroc"] - res["per_class"][k][method]["test_auroc"]) < 0.1, (k, method)


def test_resume_of_a_finished_run_keeps_every_model(run_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/*/model.safetensors")}
    res_before = json.loads((run_dir / "results.json").read_text())
    assert main(["run", LAB, "--resume", str(run_dir), "--no-progress", "--threads", "1"]) == 0
    after = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/*/model.safetensors")}
    assert before == after and len(before) == 8  # nothing retrained
    res = json.loads((run_dir / "results.json").read_text())
    for k in ("0", "1"):
        for method in ("pca", "ae", "vae", "vae-rec", "dcae", "svdd"):
            assert res["per_class"][k][method]["test_auroc"] == pytest.approx(
                res_before["per_class"][k][method]["test_auroc"], abs=1e-9), (k, method)
    assert "epoch 1/" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--methods", "pca,knn"], "--methods"),
    (["--rep-dim", "24"], "--rep-dim 24 must be a multiple of 16"),
    (["--normal-classes", "1,1"], "--normal-classes repeats"),
    (["--normal-classes", "12"], "--normal-classes 12 is not a class"),
    (["--nu", "0"], "--nu"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["run", LAB, "--preset", "fast", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / LAB).exists() or not any((tmp_path / LAB).iterdir())
