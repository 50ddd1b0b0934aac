"""The spatial-transformer lab end to end through the CLI (fast preset: R and TC, one seed, one epoch): files, the
summary agrees with the models it saved (a saved model re-scored on the test split rebuilt from data.json's seeds
gives its recorded error), equal budgets, the transformer snapshots, eval on fresh draws and on other digits, report
re-render, resume keeps finished models, a run stopped after an epoch ends like an uninterrupted one, one-line
errors."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data.distorted import distort
from deepnotes.data.images import load_held_out, to_pixels
from deepnotes.models.registry import create_model

LAB = "spatial-transformer"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", LAB, "--preset", "fast", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    (run,) = list((out / LAB).iterdir())
    return run


def test_files_and_report(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "errors.png", "curves.png", "st_R.png",
                 "st_TC.png"):
        assert (run_dir / name).is_file(), name
    for kind in ("R", "TC"):
        for model in ("cnn", "st-cnn"):
            folder = run_dir / "models" / kind / f"{model}-seed0"
            for name in ("model.safetensors", "result.json", "metrics.csv"):
                assert (folder / name).is_file(), (kind, model, name)
    report = (run_dir / "report.md").read_text()
    for section in ("## Results", "paper ST-CNN Aff", "## Test error per distortion",
                    "## What the transformer does: TC", "## Per seed", "](st_R.png)"):
        assert section in report, section


def test_results_agree_with_the_saved_models(run_dir):
    res = json.loads((run_dir / "results.json").read_text())
    data = json.loads((run_dir / "data.json").read_text())
    assert set(res["distortions"]) == {"R", "TC"} and res["seeds"] == [0]
    assert data["n_train"] + data["n_val"] == 300 and data["n_test"] == 200
    for kind, row in res["distortions"].items():
        for label in ("CNN", "ST-CNN"):
            m = row[label]
            assert all(0 <= e <= 1 for e in m["test_errors"]) and m["mean"] == statistics.fmean(m["test_errors"])
            assert m["std"] == 0 and len(m["val_error_curve"]) == 1
        assert row["st_beats_cnn"] == (row["ST-CNN"]["mean"] < row["CNN"]["mean"])
        cnn, st = row["CNN"]["parameters"], row["ST-CNN"]["parameters"]
        assert abs(cnn - st) / st < 0.05, (kind, cnn, st)  # the same budget
    assert res["st_beats_cnn_everywhere"] == all(r["st_beats_cnn"] for r in res["distortions"].values())
    # A saved ST-CNN, re-scored on the test split distorted again from data.json's seed, gives its recorded error.
    test = load_held_out("mnist-subset", None, 300, 200, 0.1, 0).test
    x = to_pixels(distort(test.images, "TC", data["distortion_seeds"]["TC"]["test"]))
    model = create_model("st-cnn", image_size=60, output_size=60, transform="affine")
    model.load_state_dict(load_file(str(run_dir / "models" / "TC" / "st-cnn-seed0" / "model.safetensors")))
    with torch.no_grad():
        error = int((model.eval()(x).argmax(-1) != test.labels).sum()) / len(test.labels)
    assert error == pytest.approx(res["distortions"]["TC"]["ST-CNN"]["test_errors"][0], abs=1e-9)
    seeds = data["distortion_seeds"]["R"]
    assert len(set(seeds.values())) == 4  # train, val, test and eval draws never share a seed


def test_transformer_snapshots(run_dir):
    snaps = run_dir / "models" / "TC" / "st-cnn-seed0" / "snapshots"
    shown = load_file(str(snaps / "inputs.safetensors"))
    out = load_file(str(snaps / "epoch-001.safetensors"))["outputs"]
    assert shown["inputs"].shape == (8, 1, 60, 60) and out.shape == (8, 1, 60, 60)  # --tc-output-size 60
    assert 0 <= float(out.min()) and float(out.max()) <= 1 + 1e-5
    assert not (run_dir / "models" / "TC" / "cnn-seed0" / "snapshots").exists()


def test_eval_report_and_resume(run_dir, capsys):
    assert main(["eval", str(run_dir)]) == 0
    metrics = json.loads((run_dir / "eval" / "mnist-subset-new-draw.json").read_text())
    assert metrics["images"] == 1000  # the whole test split, distorted with the run's unused "eval" seed
    assert {"R CNN", "R ST-CNN", "TC CNN", "TC ST-CNN"} <= set(metrics)
    assert all(0 <= metrics[k] <= 1 for k in ("R CNN", "R ST-CNN", "TC CNN", "TC ST-CNN"))
    assert main(["eval", str(run_dir), "--data", "digits-8x8"]) == 0  # other writers, another scanner
    assert json.loads((run_dir / "eval" / "digits-8x8-new-draw.json").read_text())["images"] == 359
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", "mnist-m"]) == 2  # colour images: no distortion of them
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data mnist-m" in err[0]
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "digits-8x8 (new draw)" in (run_dir / "report.md").read_text()
    weights = run_dir / "models" / "R" / "st-cnn-seed0" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["run", LAB, "--resume", str(run_dir), "--no-progress"]) == 0
    assert weights.read_bytes() == before


def test_run_stopped_after_an_epoch_ends_like_an_uninterrupted_one(tmp_path):
    args = ["run", LAB, "--preset", "fast", "--distortions", "R", "--epochs", "2", "--no-progress", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    (full,) = list((tmp_path / "full" / LAB).iterdir())
    stopped = tmp_path / "stopped"
    shutil.copytree(full, stopped)
    folder = stopped / "models" / "R" / "st-cnn-seed0"  # as if killed after the first epoch of the second model
    for name in ("result.json", "model.safetensors"):
        (folder / name).unlink()
    shutil.rmtree(folder / "checkpoints" / "epoch-0002")
    (folder / "snapshots" / "epoch-002.safetensors").unlink()
    (stopped / "results.json").unlink()
    assert main(["run", LAB, "--resume", str(stopped), "--no-progress"]) == 0
    assert (folder / "model.safetensors").read_bytes() == (full / folder.relative_to(stopped) / "model.safetensors"
                                                           ).read_bytes()
    resumed, uninterrupted = (json.loads((d / "results.json").read_text())["distortions"]["R"] for d in (stopped, full))
    for label in ("CNN", "ST-CNN"):
        for key in ("test_errors", "val_errors", "val_error_curve"):
            assert resumed[label][key] == uninterrupted[label][key], (label, key)


@pytest.mark.parametrize("flag,value", [("--distortions", "R,XY"), ("--seeds", "-1"), ("--tc-output-size", "10"),
                                        ("--epochs", "0"), ("--limit-train", "20"), ("--seeds", "1,1")])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value):
    assert main(["run", LAB, "--preset", "fast", flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag.lstrip("-").split("-")[0] in err[0]
    assert not (tmp_path / LAB).exists()
