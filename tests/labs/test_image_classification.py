"""The image-classification lab end to end: kill + resume equals an uninterrupted run; the accuracy targets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["run", "image-classification", "--epochs", "3", "--limit-train", "2500", "--limit-test", "500",
        "--no-progress", "--seed", "3"]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepnotes", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _only_run(out: Path) -> Path:
    (run_dir,) = list((out / "image-classification").iterdir())
    return run_dir


def test_killed_run_resumed_ends_like_uninterrupted(tmp_path):
    full = _start(*ARGS, "--out", str(tmp_path / "full"))
    assert full.wait(timeout=600) == 0, full.stderr.read()

    killed = _start(*ARGS, "--out", str(tmp_path / "killed"))
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline and killed.poll() is None:
        dirs = list((tmp_path / "killed" / "image-classification").glob("*/checkpoints/epoch-0001"))
        if dirs:
            run_dir = dirs[0].parent.parent
            break
        time.sleep(0.02)
    assert run_dir is not None and killed.poll() is None, "the run ended before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)  # no clean-up handlers run, as with a power cut
    killed.wait()
    assert not (run_dir / "model.safetensors").exists()

    resumed = _start("run", "image-classification", "--resume", str(run_dir))
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "resumed from" in out

    a = json.loads((_only_run(tmp_path / "full") / "test_metrics.json").read_text())
    b = json.loads((run_dir / "test_metrics.json").read_text())
    for key in ("acc", "acc_tta", "loss", "confusion_matrix", "val_acc", "val_acc_tta"):
        assert a[key] == b[key], key
    rows_a = (_only_run(tmp_path / "full") / "metrics.csv").read_text().splitlines()
    rows_b = (run_dir / "metrics.csv").read_text().splitlines()
    def strip(rows):  # drop the timing columns
        return [r.rsplit(",", 2)[0] for r in rows]

    assert strip(rows_a) == strip(rows_b)
    # drop_last (the default): floor(N / B) full batches an epoch, not ceil(N / B) with a partial one at the end
    n_train = json.loads((run_dir / "data.json").read_text())["n_train"]
    assert [int(r.split(",")[1]) for r in rows_a[1:]] == [e * (n_train // 128) for e in (1, 2, 3)]
    assert n_train % 128 != 0  # so that the check above tells drop_last from a partial last batch


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_reaches_target_on_mnist_subset(tmp_path, seed):
    """Issue 29's target: the default run (what `make demo` runs) reaches >= 98.5% test accuracy (single view) for
    seeds 0, 1, 2. The time part of the target (<= 60 s of training on 2 idle cores) is printed, not asserted: wall
    time on a shared machine says little."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "deepnotes", "run", "image-classification", "--no-progress",
                           "--seed", str(seed), "--out", str(tmp_path)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((_only_run(tmp_path) / "test_metrics.json").read_text())
    print(f"demo seed {seed}: test accuracy {metrics['acc']:.4f} (TTA {metrics['acc_tta']:.4f}), validation "
          f"{metrics['val_acc']:.4f}; training {metrics['train_time_s']:.0f} s, whole command {time.time() - t0:.0f} s")
    assert metrics["acc"] >= 0.985


# The lab's defaults before issue 29 made them the airbench demo (every field but the run's own: seed, device,
# progress, threads), and the presets as they were: they must still resolve to exactly these configurations.
OLD_DEFAULTS = dict(
    epochs=15, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, beta2=0.999,
    optimizer_impl="fused", weight_decay=5e-4, schedule="onecycle", min_lr=0.0, warmup=0.2, grad_clip=0.0,
    label_smoothing=0.0, ema_decay=0.0, lookahead_steps=0, lookahead_alpha=0.5, lookahead_ramp=False, amp=True,
    cpu_bf16="off", compile="off", dataset="mnist-subset", data_dir=None, model="resnet", widths=(32, 64, 128),
    blocks=(2, 2, 2), stem_channels=32, stem_pool=False, expansion=2, dropout=0.0, crop_padding=2, random_erasing=0.0,
    low_res=0, low_res_epochs=0, hflip="auto", tta=True, val_fraction=0.1, limit_train=0, limit_test=0,
    monitor_test=False, channels_last=True, norm_bias_lr_scale=1.0, whiten_images=5000, drop_last=False, norm_eps=1e-12,
    rotation=0.0, scaling=0.0)
OLD_PRESETS = {
    "mnist-resnet": {},
    "fast": {"epochs": 3, "limit_train": 1024, "limit_test": 500, "batch_size": 32, "stem_pool": True},
    "fashion-mnist": {"dataset": "fashion-mnist", "model": "airbench", "widths": (32, 128, 128), "epochs": 16,
                      "batch_size": 1024, "lr": 1.5, "momentum": 0.85, "weight_decay": 1.33e-3,
                      "schedule": "triangular", "warmup": 0.23, "label_smoothing": 0.2, "norm_bias_lr_scale": 64.0,
                      "lookahead_steps": 5, "lookahead_alpha": 0.2262, "lookahead_ramp": True, "cpu_bf16": "auto"},
    "fashion-mnist-resnet": {"dataset": "fashion-mnist", "epochs": 28, "batch_size": 128, "lr": 0.1,
                             "label_smoothing": 0.1, "stem_pool": True, "widths": (64, 128, 256), "blocks": (1, 1, 1),
                             "cpu_bf16": "auto"},
}


@pytest.mark.parametrize("name", sorted(OLD_PRESETS))
def test_presets_run_as_before_the_demo_changed_the_defaults(name):
    import dataclasses

    from deepnotes.experiment.config import make_config
    from deepnotes.labs.image_classification import PRESETS, ImageClassificationConfig
    from deepnotes.train.config import TrainConfig

    got = dataclasses.asdict(make_config(ImageClassificationConfig, dict(PRESETS[name])))
    for key in ("seed", "device", "progress", "threads"):
        del got[key]
    expected = {**OLD_DEFAULTS, **OLD_PRESETS[name]}
    engine = TrainConfig()  # the engine's own defaults (e.g. optimizer_impl) follow the engine, not this lab
    expected.update({key: getattr(engine, key) for key in OLD_DEFAULTS
                     if key not in ImageClassificationConfig.__annotations__ and key not in OLD_PRESETS[name]})
    assert got == expected


def test_defaults_are_the_airbench_demo():
    from deepnotes.labs.image_classification import ImageClassificationConfig

    cfg = ImageClassificationConfig()
    assert (cfg.model, cfg.dataset, cfg.cpu_bf16, cfg.drop_last) == ("airbench", "mnist-subset", "auto", True)
    assert cfg.lookahead_steps == 5 and cfg.norm_bias_lr_scale == 64.0 and cfg.schedule == "triangular"


def test_digits_batch_norm_epsilon_silences_constant_channels():
    """Why the demo's airbench has --norm-eps 1e-5: on a digit's constant background a channel can be constant up to
    rounding; with airbench94's 1e-12 batch norm multiplies that rounding noise by about 1e6, with 1e-5 it stays ~0.
    The fashion-mnist preset keeps 1e-12 (its model unchanged)."""
    import dataclasses

    import torch

    from deepnotes.experiment.config import make_config
    from deepnotes.labs.image_classification import PRESETS, ImageClassificationConfig, build_model
    from deepnotes.models.cnn import ScaleFreeBatchNorm2d

    gen = torch.Generator().manual_seed(0)
    x = torch.full((64, 1, 3, 3), 0.7) + 1e-7 * torch.randn(64, 1, 3, 3, generator=gen)  # constant up to rounding
    assert ScaleFreeBatchNorm2d(1, eps=1e-12)(x).std() > 0.05  # noise of std ~1e-7 comes out 1e6 times larger
    assert ScaleFreeBatchNorm2d(1, eps=1e-5)(x).abs().max() < 1e-3

    def epsilons(cfg):
        return {m.eps for m in build_model(cfg, 10).modules() if isinstance(m, torch.nn.BatchNorm2d)}

    small = dict(widths=(8, 16, 16))
    assert epsilons(ImageClassificationConfig(**small)) == {1e-5}
    fashion = make_config(ImageClassificationConfig, {**PRESETS["fashion-mnist"], **small})
    assert epsilons(fashion) == {1e-12}
    a = build_model(fashion, 10).state_dict()
    b = build_model(dataclasses.replace(fashion, norm_eps=1e-5), 10).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}  # same weights file either way


@pytest.mark.slow
def test_fashion_mnist_preset_reaches_target(tmp_path):
    """The issue's Fashion-MNIST target: the preset reaches >= 94.0% test accuracy (single view). About 10 minutes on
    2 cores (the wall-clock part of the target is measured in benchmarks/RESULTS.md, not here)."""
    from deepnotes.data import get_image_dataset
    from deepnotes.errors import UserError

    try:
        get_image_dataset("fashion-mnist").load("test")
    except UserError as e:
        pytest.skip(f"Fashion-MNIST is not installed here: {e}")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "deepnotes", "run", "image-classification", "--preset",
                           "fashion-mnist", "--no-progress", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((_only_run(tmp_path) / "test_metrics.json").read_text())
    print(f"fashion-mnist preset: test accuracy {metrics['acc']:.4f} (TTA {metrics['acc_tta']:.4f}) "
          f"in {time.time() - t0:.0f} s")
    assert metrics["acc"] >= 0.940


@pytest.mark.parametrize("flags, named", [(["--low-res", "4", "--low-res-epochs", "1"], "--low-res"),
                                          (["--low-res", "16", "--low-res-epochs", "9"], "--low-res-epochs"),
                                          (["--low-res-epochs", "1"], "--low-res PIXELS")])
def test_bad_progressive_resizing_flags_exit_2(tmp_path, flags, named):
    proc = subprocess.run([sys.executable, "-m", "deepnotes", "run", "image-classification", "--preset", "fast",
                           "--epochs", "2", *flags, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "image-classification").exists() or not any((tmp_path / "image-classification").iterdir())


def test_progressive_resizing_run_trains_and_switches_to_full_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deepnotes", "run", "image-classification", "--preset",
                           "mnist-resnet", "--epochs", "3", "--limit-train", "1500", "--limit-test", "300",
                           "--no-progress", "--seed", "3", "--no-tta", "--stem-pool", "--low-res", "16",
                           "--low-res-epochs", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = _only_run(tmp_path)
    assert '"low_res": 16' in (run_dir / "config.json").read_text()
    val = [float(r.split(",")[6]) for r in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert len(val) == 3
    # Evaluation is always at 28 x 28: after the two 16 x 16 epochs the batch-norm statistics do not fit yet;
    # the full-size epoch recovers (digits: chance is 10%).
    assert val[2] > max(0.5, val[1])
    assert json.loads((run_dir / "test_metrics.json").read_text())["acc"] > 0.5


def test_norm_bias_group_gets_scaled_lr_and_matching_decay(tmp_path):
    import dataclasses

    import torch

    from deepnotes.labs.image_classification import PRESETS, ImageClassificationConfig
    from deepnotes.models.cnn import batch_norm_shifts
    from deepnotes.models.registry import create_model
    from deepnotes.train import supervised_trainer
    from deepnotes.train.engine import make_optimizer

    cfg = dataclasses.replace(ImageClassificationConfig(), **{**PRESETS["fashion-mnist"], "widths": (8, 16, 16),
                                                             "epochs": 1, "batch_size": 16, "progress": False})
    model = create_model("airbench", in_channels=1, num_classes=10, widths=cfg.widths)
    opt = make_optimizer(model, cfg, scaled=batch_norm_shifts(model), lr_scale=cfg.norm_bias_lr_scale)
    weights, other, biases = opt.param_groups
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in biases["params"]} == bn_biases and len(bn_biases) == 6
    assert biases["lr_scale"] == 64.0 and biases["weight_decay"] * 64.0 == pytest.approx(weights["weight_decay"])
    assert all(p.ndim > 1 for p in weights["params"]) and other["weight_decay"] == 0.0
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for g in opt.param_groups for p in g["params"]}  # every trainable parameter, once
    assert id(model.whiten.weight) not in trainable  # the whitening filters stay frozen

    x, y = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (32,))
    def prep(xb, yb, train, gen):
        return xb.float().div(255), yb

    trainer = supervised_trainer(cfg, model, tmp_path, (x, y), prep, {}, torch.device("cpu"), log=lambda _m: None,
                                 optimizer=opt)
    w0 = model.whiten.weight.clone()
    trainer.fit()
    last = trainer.lr_for(trainer.step - 1)  # the engine set every group's rate before the last update
    assert weights["lr"] == pytest.approx(last) and biases["lr"] == pytest.approx(64 * last)
    assert torch.equal(model.whiten.weight, w0)


@pytest.fixture(scope="module")
def airbench_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    proc = subprocess.run([sys.executable, "-m", "deepnotes", "run", "image-classification", "--model", "airbench",
                           "--widths", "16,32,32", "--norm-bias-lr-scale", "64", "--lr", "0.3", "--momentum", "0.85",
                           "--schedule", "triangular", "--batch-size", "64", "--epochs", "3", "--limit-train", "1500",
                           "--limit-test", "300", "--no-progress", "--seed", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return _only_run(out)


def test_airbench_run_trains_and_bad_widths_exit_2(airbench_run, tmp_path):
    metrics = json.loads((airbench_run / "test_metrics.json").read_text())
    assert metrics["acc"] > 0.85  # digits after 3 short epochs (chance is 10%; 94.3% measured)
    bad = subprocess.run([sys.executable, "-m", "deepnotes", "run", "image-classification", "--model", "airbench",
                          "--widths", "16,32", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--widths" in bad.stderr and "3 widths" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("flags, named", [
    (["--widths", "0,0,0"], "--widths"),
    (["--expansion", "0"], "--expansion"),
    (["--stem-channels", "0"], "--stem-channels"),
    (["--model", "lenet5", "--dropout", "1.5"], "--dropout"),
    (["--dropout", "1.5"], "--dropout"),
    (["--model", "airbench", "--dropout", "1.5"], "--dropout"),
    (["--blocks", "0,1,1"], "--blocks"),
    (["--widths", "8,16", "--blocks", "1,1,1"], "--widths and --blocks"),
    (["--crop-padding", "-1"], "--crop-padding"),
    (["--random-erasing", "1.5"], "--random-erasing"),
    (["--val-fraction", "0.95"], "--val-fraction"),
    (["--limit-train", "-5"], "--limit-train"),
    (["--whiten-images", "0"], "--whiten-images"),
    (["--norm-bias-lr-scale", "0"], "--norm-bias-lr-scale"),
    (["--dataset", "cifar"], "--dataset"),
])
def test_bad_values_exit_2_naming_the_flag_before_any_run_folder(tmp_path, capsys, flags, named):
    from deepnotes.cli import main

    assert main(["run", "image-classification", "--preset", "fast", *flags, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1 and "Traceback" not in err
    if named == "--dropout":
        assert "--blocks" not in err
    assert not (tmp_path / "runs").exists()  # rejected before the run folder is made


def test_eval_names_a_missing_folder_and_an_empty_idx_file(airbench_run, tmp_path, capsys):
    import numpy as np

    from deepnotes.cli import main
    from deepnotes.data import write_idx

    assert main(["eval", str(airbench_run), "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "the folder does not exist" in err and "unknown image dataset" not in err and err.count("\n") == 1
    empty = tmp_path / "empty"
    write_idx(empty / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))  # a valid header, 0 items
    write_idx(empty / "t10k-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    assert main(["eval", str(airbench_run), "--data", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz" in err and "no images" in err and err.count("\n") == 1
    assert "torch.cat" not in err


def test_eval_and_report_use_the_run_folder(airbench_run, capsys):
    from deepnotes.cli import main

    assert main(["eval", str(airbench_run), "--device", "cpu"]) == 0
    ev = json.loads((airbench_run / "eval" / "mnist-subset.json").read_text())
    assert ev["n"] == 1000 and ev["data"] == "mnist-subset" and "acc_tta" in ev
    assert main(["report", str(airbench_run)]) == 0
    text = (airbench_run / "report.md").read_text()
    metrics = json.loads((airbench_run / "test_metrics.json").read_text())
    assert 0.5 < metrics["val_acc"] <= 1 and 0.5 < metrics["val_acc_tta"] <= 1  # the validation split, both ways
    assert re.search(rf"\| validation accuracy with TTA +\| {100 * metrics['val_acc_tta']:.2f}% +\|", text)
    evals = text.split("## `deepnotes eval` results")[1].split("\n## ")[0]
    assert "mnist-subset" in evals and "1000" in evals
    for png in ("lr_schedule.png", "confusion_matrix.png", "test_images.png", "learning_curves.png"):
        assert f"]({png})" in text and (airbench_run / png).is_file()
