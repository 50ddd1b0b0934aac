"""Lab ``image-classification``: a CNN on real 28x28 images (lecture 3, CNN; HW3).

Trains a LeNet-5-style CNN, a small bottleneck ResNet or Jordan's airbench94 network (frozen whitening
layer, dirac-initialized conv groups) on mnist-subset (5,000 real MNIST digits, the embedded default),
Fashion-MNIST or full MNIST, with random-crop (and, for clothes, mirror) augmentation, and reports test
accuracy with and without AlexNet's test-time augmentation.

Files it leaves in the run folder (beside config.json, metrics.csv, model.safetensors):
    data.json                 dataset, classes, split sizes, pixel mean/std used to normalize
    test_metrics.json         test accuracy/loss, with and without TTA, confusion matrix, timings
    predictions.safetensors   test labels and predictions; the images of the report's grid
    report.md + *.png         the report
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from deepnotes.data import ImageSplit, get_image_dataset, load_idx_folder
from deepnotes.data.splits import stratified_holdout
from deepnotes.data.augment import random_crop, random_erasing, random_hflip, tta_probabilities
from deepnotes.errors import UserError
from deepnotes.io import atomic_path, write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, load_run_weights, read_run_json
from deepnotes.models.cnn import AirbenchConfig, AirbenchNet, LeNet5, ResNet, ResNetConfig
from deepnotes.metrics import confusion_matrix, mistakes_first_order
from deepnotes.report import (
    markdown_image,
    markdown_table,
    plot_confusion_matrix,
    plot_image_grid,
    plot_learning_curves,
    plot_lr_schedule,
    read_metrics_csv,
)
from deepnotes.train import supervised_trainer, validate_train_config
from deepnotes.train.engine import make_optimizer as engine_make_optimizer, use_cpu_bf16
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.schedule import lr_at

NAME = "image-classification"


@dataclass(frozen=True)
class ImageClassificationConfig(TrainConfig):
    # Defaults of the training engine, re-tuned for this lab (measured in README.md).
    epochs: int = option(15, "number of passes over the training set")
    batch_size: int = option(64, "examples per update, summed over all processes")
    lr: float = option(0.05, "peak learning rate")
    dataset: str = option("mnist-subset", "dataset name (see `deepnotes data list`)")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    model: Literal["lenet5", "resnet", "airbench"] = option(
        "resnet", "network: LeNet-5-style CNN, small bottleneck ResNet, or airbench94's whitened conv net (Jordan 2024)")
    widths: tuple[int, ...] = option((32, 64, 128), "ResNet: channels of each stage; airbench: of its 3 conv groups "
                                     "(comma-separated)")
    blocks: tuple[int, ...] = option((2, 2, 2), "ResNet: bottleneck blocks per stage (comma-separated)")
    stem_channels: int = option(32, "ResNet: channels of the 3x3 stem convolution")
    stem_pool: bool = option(False, "ResNet: 2x2 max pooling after the stem, stages at half resolution (about 4x cheaper)")
    expansion: int = option(2, "ResNet: bottleneck ratio (block output channels / inner channels)")
    dropout: float = option(0.0, "dropout before the classifier")
    crop_padding: int = option(2, "random-crop augmentation: pad by this many pixels, crop back (0 disables); also the TTA shift")
    random_erasing: float = option(0.0, "augmentation: probability of filling a random rectangle of each training "
                                   "image with noise (Zhong et al. 2017; 0 disables)")
    low_res: int = option(0, "progressive resizing: train the first --low-res-epochs epochs on images downscaled to "
                          "this many pixels a side (cheaper updates; 0 disables)")
    low_res_epochs: int = option(0, "progressive resizing: how many of the first epochs train at --low-res pixels")
    hflip: Literal["auto", "on", "off"] = option("auto", "mirror augmentation and TTA; auto = on for clothes, off for digits")
    tta: bool = option(True, "also report test accuracy with test-time augmentation (AlexNet: crops and mirrors averaged)")
    val_fraction: float = option(0.1, "share of the training images held out for validation (stratified)")
    limit_train: int = option(0, "train on only the first N training images (0 = all); for smoke runs")
    limit_test: int = option(0, "evaluate on only the first N test images (0 = all); for smoke runs")
    monitor_test: bool = option(False, "also measure test accuracy after every epoch (time-to-accuracy benchmarks; never used to choose anything)")
    channels_last: bool = option(True, "NHWC memory layout (faster convolutions on CPU and GPU)")
    norm_bias_lr_scale: float = option(1.0, "learning-rate multiplier for batch-norm shifts (beta), whose weight decay is "
                                       "divided by it (airbench: 64)")
    whiten_images: int = option(5000, "airbench: training images whose 2x2 patches set the frozen whitening layer")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline that still learns (91.8% test accuracy on mnist-subset after
    # 3 s of training on one core): the pooled stem triples the images/s, and about 87 small updates let batch norm's
    # running statistics settle (one epoch of 8 updates left them unsettled: 8% test accuracy).
    "fast": {"epochs": 3, "limit_train": 1024, "limit_test": 500, "batch_size": 32, "stem_pool": True},
    # The Fashion-MNIST recipe measured in README.md and benchmarks/RESULTS.md: airbench94's network at about a third
    # of its CIFAR-10 width, and its optimizer (Jordan 2024): batch 1024; Nesterov SGD, momentum 0.85, its lr 11.5 and
    # weight decay 0.0153 "per 1024 examples" of a summed loss are 1.5 and 0.0153 / 11.5 for our mean loss; batch-norm
    # shifts at 64x the rate; a triangular schedule peaking at 23% of the updates; label smoothing 0.2; Lookahead every
    # 5 updates with alpha ramping to 1 - 0.95^5. bfloat16 autocast where the CPU has native bf16 instructions.
    "fashion-mnist": {"dataset": "fashion-mnist", "model": "airbench", "widths": (32, 128, 128), "epochs": 16,
                      "batch_size": 1024, "lr": 1.5, "momentum": 0.85, "weight_decay": 1.33e-3, "schedule": "triangular",
                      "warmup": 0.23, "label_smoothing": 0.2, "norm_bias_lr_scale": 64.0, "lookahead_steps": 5,
                      "lookahead_alpha": round(1 - 0.95**5, 4), "lookahead_ramp": True, "cpu_bf16": "auto"},
    # The ResNet recipe that was the fashion-mnist preset until 2026-12-03 (93.56% over 3 seeds in 13 min 48 s).
    "fashion-mnist-resnet": {"dataset": "fashion-mnist", "epochs": 28, "batch_size": 128, "lr": 0.1,
                             "label_smoothing": 0.1, "stem_pool": True, "widths": (64, 128, 256), "blocks": (1, 1, 1),
                             "cpu_bf16": "auto"},
}


# ----------------------------------------------------------------------------------- data
def _hflip_enabled(cfg: ImageClassificationConfig) -> bool:
    if cfg.hflip == "auto":
        return get_image_dataset(cfg.dataset).hflip_ok
    return cfg.hflip == "on"


def _load_split(cfg: ImageClassificationConfig, split: str) -> ImageSplit:
    info = get_image_dataset(cfg.dataset)
    return info.load(split, data_dir=Path(cfg.data_dir) if cfg.data_dir else None)


class BatchPreparer:
    """uint8 batch -> augmented, normalized float batch on the device (the engine's ``prepare_batch``).

    Progressive resizing (``low_res`` > 0): while ``epoch()`` (the trainer's count of finished epochs) is below
    ``low_res_epochs``, training batches are downscaled to ``low_res`` x ``low_res`` pixels after augmentation
    (bilinear with antialiasing), so early updates cost less; later epochs and every evaluation use full size
    (Howard's progressive resizing for DAWNBench, 2018; Touvron et al., "Fixing the train-test resolution
    discrepancy", 2019, on why the last epochs should see the test resolution).
    """

    def __init__(self, mean: float, std: float, padding: int, hflip: bool, device: torch.device, channels_last: bool,
                 cpu_bf16: bool = False, erasing: float = 0.0, low_res: int = 0, low_res_epochs: int = 0):
        self.mean, self.std, self.padding, self.hflip, self.erasing = mean, std, padding, hflip, erasing
        self.low_res, self.low_res_epochs = low_res, low_res_epochs
        self.epoch: Callable[[], int] = lambda: 0  # the lab points it at the trainer's epoch counter
        self.device = device
        self.cpu_bf16 = cpu_bf16  # evaluate under bfloat16 autocast on the CPU, as training did
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def __call__(self, x, y, train, generator):
        if train:
            x = random_crop(x, self.padding, generator)
            if self.hflip:
                x = random_hflip(x, 0.5, generator)
            if self.erasing > 0:
                x = random_erasing(x, self.erasing, generator=generator)
            if self.low_res and self.epoch() < self.low_res_epochs:
                x = F.interpolate(self.normalize(x), size=(self.low_res, self.low_res), mode="bilinear",
                                  antialias=True, align_corners=False)  # (B, C, low_res, low_res)
                return x.contiguous(memory_format=self.memory_format), y.to(self.device, non_blocking=True)
        return self.normalize(x), y.to(self.device, non_blocking=True)


def build_model(cfg: ImageClassificationConfig, num_classes: int) -> torch.nn.Module:
    if cfg.model == "lenet5":
        model: torch.nn.Module = LeNet5(1, num_classes, dropout=cfg.dropout)
    elif cfg.model == "resnet":
        rc = ResNetConfig(widths=cfg.widths, blocks=cfg.blocks, stem_channels=cfg.stem_channels,
                          stem_pool=cfg.stem_pool, expansion=cfg.expansion, dropout=cfg.dropout)
        try:
            model = ResNet(1, num_classes, rc)
        except ValueError as e:
            raise UserError(f"--widths/--blocks: {e}") from e
    elif cfg.model == "airbench":
        if len(cfg.widths) != 3:
            raise UserError(f"--widths: airbench has 3 conv groups, so 3 widths (e.g. 32,128,128), got {cfg.widths}")
        model = AirbenchNet(1, num_classes, AirbenchConfig(widths=tuple(cfg.widths)))
    else:
        raise UserError(f"--model must be lenet5, resnet or airbench, got {cfg.model!r}")
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def _validate(cfg: ImageClassificationConfig) -> None:
    validate_train_config(cfg)
    get_image_dataset(cfg.dataset)  # unknown name -> UserError listing the datasets
    if not 0 <= cfg.val_fraction < 0.9:
        raise UserError("--val-fraction must be in [0, 0.9)")
    if cfg.crop_padding < 0:
        raise UserError("--crop-padding must be >= 0")
    if cfg.low_res and not 8 <= cfg.low_res <= 28:
        raise UserError(f"--low-res must be 0 (off) or 8-28 pixels, got {cfg.low_res}")
    if not 0 <= cfg.low_res_epochs <= cfg.epochs:
        raise UserError(f"--low-res-epochs must be in [0, --epochs={cfg.epochs}], got {cfg.low_res_epochs}")
    if cfg.low_res and cfg.model == "lenet5":
        raise UserError("--low-res needs --model resnet or airbench (LeNet-5's classifier expects 28 x 28 inputs)")
    if cfg.low_res and cfg.model == "airbench" and cfg.low_res < 9:
        raise UserError(f"--low-res: airbench halves the image three times after its 2x2 whitening, so it needs at "
                        f"least 9 pixels, got {cfg.low_res}")
    if cfg.low_res_epochs and not cfg.low_res:
        raise UserError("--low-res-epochs needs --low-res PIXELS (the size of the early epochs' images)")
    if not 0 <= cfg.random_erasing <= 1:
        raise UserError("--random-erasing must be in [0, 1] (a probability; 0 disables)")
    if cfg.limit_train < 0 or cfg.limit_test < 0:
        raise UserError("--limit-train and --limit-test must be >= 0 (0 = all)")
    if cfg.norm_bias_lr_scale <= 0:
        raise UserError("--norm-bias-lr-scale must be > 0 (1 = the same learning rate as the weights)")
    if cfg.whiten_images < 1:
        raise UserError("--whiten-images must be >= 1")


def make_optimizer(model: torch.nn.Module, cfg: ImageClassificationConfig) -> torch.optim.Optimizer | None:
    """The engine's optimizer with the batch-norm shifts at ``lr * norm_bias_lr_scale`` and weight decay
    ``weight_decay / norm_bias_lr_scale`` (airbench94's "bias scaler" of 64, Jordan 2024; see
    :func:`deepnotes.train.engine.make_optimizer`). Returns None (the engine's default) when the scale is 1."""
    if cfg.norm_bias_lr_scale == 1.0:
        return None
    norm_biases = [m.bias for m in model.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.bias is not None]
    return engine_make_optimizer(model, cfg, scaled=norm_biases, lr_scale=cfg.norm_bias_lr_scale)


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model, prep: BatchPreparer, images: torch.Tensor, tta: bool, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities (N, K) for uint8 images (N, 1, H, W); with ``tta`` averaged over AlexNet's views."""
    model.eval()
    out = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prep.cpu_bf16 and prep.device.type == "cpu"):
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            if tta:
                out.append(tta_probabilities(model, x, prep.padding, prep.hflip, prep.normalize).float().cpu())
            else:
                out.append(model(prep.normalize(x)).float().softmax(-1).cpu())
    return torch.cat(out)


def evaluate_split(model, prep: BatchPreparer, split: ImageSplit, tta: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Accuracy, loss and confusion matrix on ``split``, with and without TTA; plus the arrays to keep."""
    y = split.labels
    K = len(split.classes)
    t0 = time.perf_counter()
    probs = predict(model, prep, split.images, tta=False)
    pred = probs.argmax(-1)
    metrics: dict[str, Any] = {
        "n": len(y),
        "acc": float((pred == y).float().mean()),
        "loss": float(torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), y)),
        "confusion_matrix": confusion_matrix(y.numpy(), pred.numpy(), K).tolist(),
        "eval_time_s": time.perf_counter() - t0,
    }
    arrays = {"labels": y, "pred": pred}
    if tta:
        t0 = time.perf_counter()
        probs_tta = predict(model, prep, split.images, tta=True)
        pred_tta = probs_tta.argmax(-1)
        metrics["acc_tta"] = float((pred_tta == y).float().mean())
        metrics["tta_views"] = (5 if prep.padding > 0 else 1) * (2 if prep.hflip else 1)
        metrics["tta_time_s"] = time.perf_counter() - t0
        arrays["pred_tta"] = pred_tta
    order = mistakes_first_order(y.numpy(), pred.numpy())[:48]
    idx = torch.from_numpy(np.ascontiguousarray(order)).long()
    arrays.update(grid_images=split.images[idx].contiguous(), grid_labels=y[idx], grid_pred=pred[idx])
    return metrics, arrays


def _load_trained(run_dir: Path, device: torch.device):
    from deepnotes.experiment import load_config

    _, cfg = load_config(run_dir)
    data_info = read_run_json(run_dir / "data.json")
    model = load_run_weights(build_model(cfg, len(data_info["classes"])), run_dir / "model.safetensors", run_dir)
    model.to(device)
    hflip = data_info["hflip"]
    prep = BatchPreparer(data_info["mean"], data_info["std"], cfg.crop_padding, hflip, device, cfg.channels_last,
                         use_cpu_bf16(cfg, device))
    return cfg, data_info, model, prep


def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: test accuracy of a finished run on its test split, another dataset, or a folder.

    Args:
        data: None (the run's own test split), a dataset name (``deepnotes data list``), or a
            folder holding t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].
    Returns:
        The metrics, also saved as ``eval/<name>.json`` in the run folder.
    """
    run_dir = Path(run_dir)
    cfg, data_info, model, prep = _load_trained(run_dir, device)
    if data is None:
        split, name = _load_split(cfg, "test"), cfg.dataset
    elif Path(data).is_dir():
        split, name = load_idx_folder(Path(data), "test", tuple(data_info["classes"])), Path(data).resolve().name
    else:
        split, name = get_image_dataset(data).load("test"), data
    if len(split.classes) != len(data_info["classes"]) or int(split.labels.max()) >= len(data_info["classes"]):
        raise UserError(f"--data {data}: its labels do not fit the run's {len(data_info['classes'])} classes")
    metrics, _ = evaluate_split(model, prep, split, cfg.tta)
    metrics.update(data=name, source=split.source)
    write_json_atomic(run_dir / "eval" / f"{name}.json", metrics)
    return metrics


# ----------------------------------------------------------------------------------- run
def run(cfg: ImageClassificationConfig, ctx: RunContext) -> dict[str, Any]:
    """Train, evaluate on the test split (with and without TTA), and write the report."""
    _validate(cfg)
    log = ctx.log if ctx.info.is_main else (lambda _m: None)
    torch.manual_seed(cfg.seed)
    train_split = _load_split(cfg, "train")
    test_split = _load_split(cfg, "test")
    x, y = train_split.images, train_split.labels
    if cfg.limit_train:
        x, y = x[: cfg.limit_train], y[: cfg.limit_train]
    if cfg.limit_test:
        test_split = ImageSplit(test_split.images[: cfg.limit_test], test_split.labels[: cfg.limit_test],
                                test_split.classes, test_split.source)
    tr_idx, val_idx = stratified_holdout(y, cfg.val_fraction, cfg.seed)
    x_tr, y_tr, x_val, y_val = x[tr_idx], y[tr_idx], x[val_idx], y[val_idx]
    pixels = x_tr.float().div(255)
    mean, std = float(pixels.mean()), float(pixels.std())
    hflip = _hflip_enabled(cfg)
    data_info = {
        "dataset": cfg.dataset, "source": train_split.source, "classes": list(train_split.classes),
        "n_train": len(y_tr), "n_val": len(y_val), "n_test": len(test_split), "mean": mean, "std": std, "hflip": hflip,
    }
    if ctx.info.is_main:
        write_json_atomic(ctx.run_dir / "data.json", data_info)
    log(f"{cfg.dataset}: {len(y_tr)} train / {len(y_val)} val / {len(test_split)} test images from {train_split.source}")

    model = build_model(cfg, len(train_split.classes))
    log(f"model {cfg.model}: {sum(p.numel() for p in model.parameters()):,} parameters; device {ctx.device}"
        + (f"; {ctx.info.world_size} processes" if ctx.info.enabled else ""))
    prep = BatchPreparer(mean, std, cfg.crop_padding, hflip, ctx.device, cfg.channels_last, use_cpu_bf16(cfg, ctx.device),
                         cfg.random_erasing, cfg.low_res, cfg.low_res_epochs)
    if isinstance(model, AirbenchNet):  # the frozen first layer whitens the patches of these training images
        model.init_whitening(prep.normalize(x_tr[: cfg.whiten_images]))
    eval_sets = {"val": (x_val, y_val)} if len(y_val) else {}
    if cfg.monitor_test:
        eval_sets["test"] = (test_split.images, test_split.labels)
    trainer = supervised_trainer(cfg, model, ctx.run_dir, (x_tr, y_tr), prep, eval_sets, ctx.device, ctx.info, log,
                      optimizer=make_optimizer(model, cfg))
    prep.epoch = lambda: trainer.epoch  # progressive resizing follows the trainer (also after --resume)
    if ctx.resume:
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit()
    train_time = time.perf_counter() - t0

    if not ctx.info.is_main:
        return {}
    metrics, arrays = evaluate_split(model, prep, test_split, cfg.tta)
    metrics["train_time_s"] = sum(row["epoch_time_s"] for row in trainer.history)
    metrics["this_session_time_s"] = train_time
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    write_json_atomic(ctx.run_dir / "test_metrics.json", metrics)
    with atomic_path(ctx.run_dir / "predictions.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in arrays.items()}, str(tmp))
    report_path = report(ctx.run_dir)
    tta = f", with TTA {100 * metrics['acc_tta']:.2f}%" if "acc_tta" in metrics else ""
    log(f"test accuracy {100 * metrics['acc']:.2f}%{tta}; trained in {metrics['train_time_s']:.0f}s")
    log(f"report: {report_path}")
    return metrics


# ----------------------------------------------------------------------------------- report
BASELINES = {
    "fashion-mnist": [
        ("pytorch/examples MNIST recipe (2 conv + 2 fc, Adadelta, StepLR), 10 epochs, this machine's 2 cores, 581 s",
         0.9295),
        ("small CNNs of the Fashion-MNIST benchmark table", "0.925-0.926"),
    ],
}


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    data_info = read_run_json(run_dir / "data.json")
    metrics = read_run_json(run_dir / "test_metrics.json")
    classes = data_info["classes"]
    rows = read_metrics_csv(run_dir / "metrics.csv")
    plot_learning_curves(rows, run_dir / "learning_curves.png", title=f"{cfg.model} on {cfg.dataset}")
    steps = int(rows[-1]["step"]) if rows else 1
    plot_lr_schedule([lr_at(s, steps, cfg.lr, cfg.schedule, cfg.warmup) for s in range(steps)],
                     run_dir / "lr_schedule.png", title=f"{cfg.schedule} schedule")
    cm = np.asarray(metrics["confusion_matrix"])
    plot_confusion_matrix(cm, classes, run_dir / "confusion_matrix.png", title="test split, no TTA")
    arrays = load_file(str(run_dir / "predictions.safetensors"))
    plot_image_grid(arrays["grid_images"], arrays["grid_labels"], arrays["grid_pred"], classes,
                    run_dir / "test_images.png", title="test split, single view")

    result_rows = [["test accuracy (single view)", f"{100 * metrics['acc']:.2f}%"]]
    if "acc_tta" in metrics:
        result_rows.append([f"test accuracy with TTA ({metrics['tta_views']} views averaged)", f"{100 * metrics['acc_tta']:.2f}%"])
    result_rows += [
        ["test loss (single view)", f"{metrics['loss']:.4f}"],
        ["test images", metrics["n"]],
        ["training time (all epochs)", f"{metrics['train_time_s']:.0f} s"],
        ["parameters", f"{metrics['parameters']:,}"],
    ]
    if rows and rows[-1].get("val_acc") is not None:
        result_rows.insert(2, ["validation accuracy, last epoch", f"{100 * float(rows[-1]['val_acc']):.2f}%"])
    baselines = BASELINES.get(cfg.dataset, [])
    config_rows = [[k, v] for k, v in json.loads((run_dir / "config.json").read_text())["config"].items()]
    lines = [
        f"# {NAME}: {cfg.model} on {cfg.dataset}",
        "",
        f"Lecture 3 (CNN) and HW3 of ML2021/2022; EE-559 8-2. Data: {data_info['source']} "
        f"({data_info['n_train']} train / {data_info['n_val']} validation / {data_info['n_test']} test images). "
        f"Augmentation: random crop with {cfg.crop_padding}-pixel padding" + (", horizontal flips" if data_info["hflip"] else "")
        + ". Test-time augmentation averages the softmax over the centre view, the four corner shifts and their mirrors"
        " (AlexNet's test protocol, mirrors only where they keep the class).",
        "",
        "## Results",
        "",
        markdown_table(["metric", "value"], result_rows),
        "",
    ]
    if baselines:
        lines += ["Published or measured baselines on the same data:", "",
                  markdown_table(["baseline", "test accuracy"], [[n, v] for n, v in baselines]), ""]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        ev_rows = []
        for p in evals:
            e = json.loads(p.read_text())
            ev_rows.append([e.get("data", p.stem), e["n"], f"{100 * e['acc']:.2f}%",
                            f"{100 * e['acc_tta']:.2f}%" if "acc_tta" in e else ""])
        lines += ["## `deepnotes eval` results", "", markdown_table(["data", "images", "accuracy", "with TTA"], ev_rows), ""]
    lines += [
        "## Learning curves", "", markdown_image("learning curves", "learning_curves.png"), "",
        markdown_image("learning-rate schedule", "lr_schedule.png"), "",
        "## Confusion matrix (test)", "", markdown_image("confusion matrix", "confusion_matrix.png"), "",
        "## Test images, mistakes first", "", markdown_image("test images", "test_images.png"), "",
        "## Per-epoch metrics", "",
        markdown_table(list(rows[0].keys()), [list(r.values()) for r in rows]) if rows else "(none)", "",
        "## Configuration", "", markdown_table(["field", "value"], config_rows), "",
    ]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="CNN (LeNet-5 or bottleneck ResNet) with crop/flip augmentation and test-time augmentation",
    source="ML2021/2022 lecture 3 (CNN), HW3; EE-559 8-2",
    default_dataset="mnist-subset",
    metric="test accuracy",
    config_cls=ImageClassificationConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
