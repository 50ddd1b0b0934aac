"""The vit-mae lab end to end through the CLI on Fashion-MNIST (fast preset): files, the MAE's weights reaching the
finetune and probe rungs, the probe training only its head, report re-render, eval, resume of a finished run, and
one-line errors for bad flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data import get_image_dataset

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None,
                                reason="Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "vit-mae", "--preset", "fast", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    (run,) = list((out / "vit-mae").iterdir())
    return run


def test_run_folder_results_and_report(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "reconstructions.png", "rung_curves.png",
                 "models/mae/model.safetensors", "models/scratch/model.safetensors",
                 "models/finetune/model.safetensors", "models/probe/model.safetensors"):
        assert (run_dir / name).is_file(), name
    res = json.loads((run_dir / "results.json").read_text())
    for rung in ("scratch", "finetune", "probe"):
        assert 0.0 <= res[rung]["test_acc"] <= 1.0 and 0.0 <= res[rung]["val_acc"] <= 1.0
    assert res["probe"]["trainable"] == 32 * 10 + 10  # the head alone: d_model x classes + bias
    assert res["scratch"]["trainable"] > 10 * res["probe"]["trainable"]
    assert res["mae"]["val_loss"] < res["mae"]["train_loss"] * 2  # finite and of the training loss's scale
    assert json.loads((run_dir / "data.json").read_text())["labelled"] in range(490, 511)  # --labelled 500
    text = (run_dir / "report.md").read_text()
    assert "| probe" in text and "reconstructions.png" in text


def test_finetune_and_probe_start_from_the_mae_encoder(run_dir):
    mae = load_file(str(run_dir / "models/mae/model.safetensors"))
    probe = load_file(str(run_dir / "models/probe/model.safetensors"))
    finetune = load_file(str(run_dir / "models/finetune/model.safetensors"))
    scratch = load_file(str(run_dir / "models/scratch/model.safetensors"))
    shared = [k for k in probe if not k.startswith("head.") and k in mae]
    assert len(shared) > 10  # patch embedding, class token, positions, blocks, final norm
    for k in shared:
        assert torch.equal(probe[k], mae[k]), k  # frozen: still exactly the MAE's
    moved = [k for k in shared if not torch.equal(finetune[k], mae[k])]
    assert moved  # fine-tuning trains the encoder too
    assert all(not torch.equal(scratch[k], mae[k]) for k in shared if mae[k].dim() > 1)  # its own weights


def test_report_rerenders_and_eval_scores_every_rung(run_dir):
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "report.md").is_file()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    ev = json.loads((run_dir / "eval" / "fashion-mnist.json").read_text())
    res = json.loads((run_dir / "results.json").read_text())
    assert ev["n"] == 10000  # eval scores the whole test split; the run scored its first 500
    for rung in ("scratch", "finetune", "probe"):
        assert abs(ev[f"{rung}_acc"] - res[rung]["test_acc"]) < 0.08, rung  # the same model on more images


def test_resume_of_a_finished_run_keeps_every_model(run_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    assert main(["run", "vit-mae", "--resume", str(run_dir), "--no-progress", "--threads", "1"]) == 0
    after = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    assert before == after  # nothing retrained
    res = json.loads((run_dir / "results.json").read_text())
    assert all(res[rung]["train_time_s"] > 0 for rung in ("mae", "scratch", "finetune", "probe"))  # read from file
    assert res["mae"]["val_loss"] > 0
    assert "epoch 1/" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--d-model", "30", "--n-heads", "4"], "--d-model 30 must be divisible by --n-heads 4"),
    (["--patch-size", "5"], "--patch-size 5 must divide"),
    (["--rungs", "scratch,boss"], "--rungs"),
    (["--mask-ratio", "1"], "--mask-ratio"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["run", "vit-mae", "--preset", "fast", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "vit-mae").exists() or not any((tmp_path / "vit-mae").iterdir())
