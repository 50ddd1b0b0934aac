"""The optimizers lab end to end on the real digits (fast preset), plus its planning and loss recording."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from deepnotes.cli import main
from deepnotes.labs import optimizers as lab
from deepnotes.optim import SCHEDULE_NAMES, lr_curve, named_schedule


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "optimizers", "--preset", "fast", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    (run_dir,) = list((out / "optimizers").iterdir())
    return run_dir


def test_fast_preset_writes_the_run_folder(fast_run):
    for name in ("config.json", "data.json", "results.json", "report.md", "loss_curves.png", "val_accuracy.png",
                 "lr_schedules.png"):
        assert (fast_run / name).is_file(), name
    results = json.loads((fast_run / "results.json").read_text())
    # six optimizers + five schedules of Adam (at 3x Adam's LR, so the constant one is a run of its own)
    assert len(results) == 11 and results["sched-adam-constant"]["peak_lr"] == 3 * results["opt-adam"]["peak_lr"]
    data = json.loads((fast_run / "data.json").read_text())
    for name, r in results.items():
        folder = fast_run / "configs" / name
        for f in ("metrics.csv", "model.safetensors", "updates.csv", "result.json"):
            assert (folder / f).is_file(), (name, f)
        assert not (folder / "checkpoints").exists()
        assert 0.0 <= r["test_acc"] <= 1.0 and r["n_test"] == 200 and math.isfinite(r["final_train_loss"])
        lines = (folder / "updates.csv").read_text().splitlines()
        assert len(lines) - 1 == r["updates"] == math.ceil(data["n_train"] / 32)
    report = (fast_run / "report.md").read_text()
    for text in ("## Optimizers", "## Schedules (Adam)", "AdamW", "noam", "loss_curves.png", "lr_schedules.png"):
        assert text in report
    assert not list(fast_run.rglob("*.tmp"))


def test_optimizers_end_in_different_weights_adamw_next_to_adam(fast_run):
    from safetensors.torch import load_file

    sgd = load_file(str(fast_run / "configs" / "opt-sgd" / "model.safetensors"))
    adam = load_file(str(fast_run / "configs" / "opt-adam" / "model.safetensors"))
    adamw = load_file(str(fast_run / "configs" / "opt-adamw" / "model.safetensors"))
    assert any(not torch.equal(sgd[k], adam[k]) for k in sgd)
    # AdamW = Adam + a small decoupled decay: close but not equal after the same batches
    diff = max((adam[k] - adamw[k]).abs().max().item() for k in adam)
    assert 0 < diff < 1e-2


def test_eval_recomputes_the_stored_test_accuracy(fast_run, capsys):
    assert main(["eval", str(fast_run), "--device", "cpu"]) == 0
    ev = json.loads((fast_run / "eval" / "mnist-subset.json").read_text())
    assert ev["n"] == 1000  # eval uses the whole test split; the run used its first 200 images
    assert set(k for k in ev if k.startswith("acc_")) == {f"acc_{n}" for n in
                                                         json.loads((fast_run / "results.json").read_text())}
    assert "acc_opt-sgd" in capsys.readouterr().out


def test_report_rerenders_from_files(fast_run):
    (fast_run / "report.md").unlink()
    (fast_run / "loss_curves.png").unlink()
    assert main(["report", str(fast_run)]) == 0
    assert (fast_run / "loss_curves.png").is_file()
    assert "deepnotes eval" in (fast_run / "report.md").read_text()  # the eval results are included


def test_bad_flags_are_user_errors(tmp_path, capsys):
    assert main(["run", "optimizers", "--optimizers", "sgd,lion", "--out", str(tmp_path)]) == 2
    assert "--optimizers" in capsys.readouterr().err
    assert main(["run", "optimizers", "--warmup", "1.5", "--out", str(tmp_path)]) == 2
    assert "--warmup" in capsys.readouterr().err


def test_plan_shares_the_constant_schedule_run_only_at_the_same_lr():
    cfg = lab.OptimizersConfig(optimizers=("sgd", "adam"), schedules=("constant", "cosine"),
                               schedule_lr=lab.OPTIMIZERS["adam"].lr)
    runs, by_opt, by_sched = lab.plan(cfg)
    assert by_sched["constant"] == by_opt["adam"] and len(runs) == 3
    runs, _, by_sched = lab.plan(lab.OptimizersConfig(optimizers=("adam",), schedules=("constant",), schedule_lr=0.01))
    assert len(runs) == 2 and by_sched["constant"] != "opt-adam"


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_every_schedule_peaks_at_the_given_lr(name):
    curve = lr_curve(named_schedule(name, 0.004, 200, warmup=0.1), 200)
    assert max(curve) == pytest.approx(0.004)
    if name.startswith("warmup") or name == "noam":
        assert curve.index(max(curve)) == 19  # the 20th update ends the warm-up
    with pytest.raises(ValueError, match="unknown schedule"):
        named_schedule("linear-ish", 0.1, 10, 0.1)


def test_updates_csv_holds_the_losses_the_trainer_averaged(fast_run):
    """Each update's recorded loss is the loss the Trainer minimized: their mean is the epoch's train_loss."""
    import csv

    for name in ("opt-sgd", "sched-adam-noam"):
        folder = fast_run / "configs" / name
        losses = [float(r["train_loss"]) for r in csv.DictReader((folder / "updates.csv").open())]
        (row,) = list(csv.DictReader((folder / "metrics.csv").open()))  # one epoch
        # every batch holds 32 images (the last one is filled up from the next permutation), so the epoch's loss
        # is the plain mean of the updates' losses
        assert sum(losses) / len(losses) == pytest.approx(float(row["train_loss"]), rel=1e-6)


@pytest.mark.parametrize("flags, named", [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--optimizers", "sgd,sgd"], "--optimizers"),
    (["--schedules", "cosine,zigzag"], "--schedules"),
    (["--optimizers", "", "--schedules", ""], "nothing to train"),
    (["--schedule-lr", "0"], "--schedule-lr"),
    (["--lr-scale", "-1"], "--lr-scale"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--val-fraction", "1"], "--val-fraction"),
    (["--limit-test", "-1"], "--limit-test"),
    (["--dataset", "cifar"], "--dataset"),
])
def test_bad_values_exit_2_before_any_run_folder(tmp_path, capsys, flags, named):
    assert main(["run", "optimizers", "--preset", "fast", *flags, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_config_extends_the_run_config():
    from deepnotes.experiment import RunConfig

    assert issubclass(lab.OptimizersConfig, RunConfig)
    assert lab.OptimizersConfig(seed=3, threads=1).threads == 1


def test_a_diverging_optimizer_is_reported_not_fatal(tmp_path, capsys):
    assert main(["run", "optimizers", "--preset", "fast", "--optimizers", "sgd,adam", "--schedules", "",
                 "--lr-scale", "1e9", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]) == 0
    (run_dir,) = list((tmp_path / "optimizers").iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert results["opt-sgd"]["diverged"] and results["opt-sgd"]["test_acc"] is None  # SGD at lr 1e8
    assert "(diverged at update" in (run_dir / "report.md").read_text()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0  # skips the diverged model
    assert "acc_opt-sgd" not in json.loads((run_dir / "eval" / "mnist-subset.json").read_text())


def test_resume_keeps_finished_configurations_and_redoes_the_rest(tmp_path, capsys):
    args = ["--preset", "fast", "--optimizers", "sgd,adam", "--schedules", "", "--no-progress", "--device", "cpu"]
    assert main(["run", "optimizers", *args, "--out", str(tmp_path)]) == 0
    (run_dir,) = list((tmp_path / "optimizers").iterdir())
    before = json.loads((run_dir / "results.json").read_text())
    (run_dir / "configs" / "opt-adam" / "result.json").unlink()  # as if killed while training Adam
    capsys.readouterr()
    assert main(["run", "optimizers", "--resume", str(run_dir), "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "opt-sgd: already finished, kept" in out and "opt-adam: Adam" in out
    after = json.loads((run_dir / "results.json").read_text())
    assert after["opt-sgd"] == before["opt-sgd"]
    # retrained from the same seed: the same result (timings aside)
    assert after["opt-adam"]["test_acc"] == before["opt-adam"]["test_acc"]
    assert after["opt-adam"]["final_train_loss"] == pytest.approx(before["opt-adam"]["final_train_loss"], rel=1e-6)
