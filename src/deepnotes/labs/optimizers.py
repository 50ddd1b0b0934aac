"""Lab ``optimizers``: the same CNN trained with each optimizer, and with each learning-rate schedule.

Source: ML2021/2022 lecture 2, "類神經網路訓練不起來怎麼辦 (三): 自動調整學習速率 (Learning Rate)":
one learning rate for all parameters is hard to tune (too large: the loss oscillates across a
valley; too small: it crawls along it), so Adagrad and RMSProp divide each parameter's step by the
root mean square of its past gradients, and Adam adds momentum to RMSProp; on top of that, the
learning rate itself is scheduled over time: decay as training nears the end, and warm-up ("first
larger, then smaller") as in the Transformer and BERT. AdamW (Loshchilov & Hutter 2019) decouples
the weight decay from Adam's adaptive scaling.

The lab trains LeNet-5 from the *same initial weights* on the *same batches* (same seed) with each of
our optimizers (:mod:`deepnotes.optim`, tested equal to ``torch.optim``) at a learning rate that
suits it (the table :data:`OPTIMIZERS`), with a constant learning rate; then one optimizer
(``--schedule-optimizer``, Adam by default) with each schedule of :mod:`deepnotes.optim.schedules`,
all peaking at the same learning rate (by default 3x the optimizer's constant rate: a rate too large
to settle at, which is where decay and warm-up matter). Data: mnist-subset (4,000 training / 1,000 test real MNIST
digits, embedded, offline); 10% of the training images are held out for validation; no augmentation,
so only the update rule differs.

Files it leaves in the run folder (beside config.json):
    configs/<name>/           one folder per configuration: the Trainer's metrics.csv (per epoch),
                              model.safetensors, updates.csv (training loss of every update) and
                              result.json (test accuracy/loss, final training loss, wall time)
    data.json                 dataset, split sizes, pixel mean/std
    results.json              all configurations' results together
    report.md + *.png         the report
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.ticker import MaxNLocator

from deepnotes import optim
from deepnotes.data import get_image_dataset
from deepnotes.errors import UserError
from deepnotes.io import write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, load_run_weights, read_run_json
from deepnotes.data.splits import stratified_holdout
from deepnotes.labs.image_classification import BatchPreparer
from deepnotes.models.cnn import LeNet5
from deepnotes.report import markdown_image, markdown_table, new_figure, read_metrics_csv, save_figure
from deepnotes.train import EvalBatches, supervised_trainer, TrainingDiverged
from deepnotes.train.checkpoint import CHECKPOINT_DIR
from deepnotes.train.config import TrainConfig, option

NAME = "optimizers"


# ----------------------------------------------------------------------------------- what is compared
@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer of the comparison: how to build it and the learning rate it is run at."""

    label: str
    lr: float
    build: Callable[[Any, float, "OptimizersConfig"], torch.optim.Optimizer]


OPTIMIZERS: dict[str, OptimizerSpec] = {
    # Learning rates: the usual ones for a small CNN with each method (SGD's 0.1 and momentum's 0.01
    # take the same effective step lr / (1 - momentum); Adam-family methods: Kingma & Ba's 1e-3).
    "sgd": OptimizerSpec("SGD", 0.1, lambda p, lr, c: optim.SGD(p, lr=lr)),
    "momentum": OptimizerSpec("SGD + momentum 0.9", 0.01, lambda p, lr, c: optim.SGD(p, lr=lr, momentum=0.9)),
    "nesterov": OptimizerSpec("SGD + Nesterov 0.9", 0.01,
                              lambda p, lr, c: optim.SGD(p, lr=lr, momentum=0.9, nesterov=True)),
    "adagrad": OptimizerSpec("Adagrad", 0.02, lambda p, lr, c: optim.Adagrad(p, lr=lr)),
    "rmsprop": OptimizerSpec("RMSprop", 1e-3, lambda p, lr, c: optim.RMSprop(p, lr=lr, alpha=0.99)),
    "adam": OptimizerSpec("Adam", 1e-3, lambda p, lr, c: optim.Adam(p, lr=lr)),
    "adamw": OptimizerSpec("AdamW", 1e-3, lambda p, lr, c: optim.AdamW(p, lr=lr, weight_decay=c.weight_decay)),
}

SCHEDULES = ("constant", "step", "cosine", "warmup-cosine", "warmup-linear", "noam")

SCHEDULE_LR_FACTOR = 3.0
"""Default peak LR of the schedule comparison, relative to the optimizer's own LR: schedules matter
where a constant rate is too large to settle into a minimum, so they are compared at a larger peak."""


def make_schedule(name: str, peak: float, total_steps: int, warmup: float) -> optim.schedules.Schedule:
    """The schedule ``name`` peaking at ``peak`` for a run of ``total_steps`` updates.

    * ``constant``: ``peak`` throughout.
    * ``step``: ``peak``, times 0.3 after each third of the run (:class:`~deepnotes.optim.StepDecay`).
    * ``cosine``: cosine annealing from ``peak`` to 0 (:class:`~deepnotes.optim.CosineDecay`).
    * ``warmup-cosine`` / ``warmup-linear``: linear warm-up over ``warmup * total_steps`` updates,
      then cosine / linear decay to 0 (:class:`~deepnotes.optim.WarmupDecay`).
    * ``noam``: the Transformer's schedule with ``d_model = 512`` and ``warmup * total_steps`` warm-up
      updates; its scale factor is set so that its peak is ``peak`` (the paper's factor 1 gives
      ``(512 * warmup)^-0.5``, tuned for a Transformer, not for this CNN).

    Raises:
        UserError: unknown ``name`` (the message lists the choices).
    """
    w = max(1, int(round(warmup * total_steps)))
    if name == "constant":
        return optim.ConstantLR(peak)
    if name == "step":
        return optim.StepDecay(peak, step_size=max(1, math.ceil(total_steps / 3)), gamma=0.3)
    if name == "cosine":
        return optim.CosineDecay(peak)
    if name in ("warmup-cosine", "warmup-linear"):
        return optim.WarmupDecay(peak, warmup_steps=w, decay=name.split("-")[1])
    if name == "noam":
        return optim.NoamSchedule(d_model=512, warmup=w, factor=peak * math.sqrt(512 * w))
    raise UserError(f"--schedules: unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class OptimizersConfig:
    """The lab's flags (``deepnotes run optimizers --help``); not a :class:`~deepnotes.train.TrainConfig`,
    because the optimizer, its learning rate and the schedule are what the lab varies (the engine's
    config for each run is built in :func:`_train_one`)."""

    epochs: int = option(10, "passes over the training set, for every configuration")
    batch_size: int = option(64, "examples per update")
    dataset: str = option("mnist-subset", "dataset name (see `deepnotes data list`); 28x28 grey-scale digits or clothes")
    optimizers: tuple[str, ...] = option(("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"),
                                         f"optimizers to compare, comma-separated, from: {', '.join(OPTIMIZERS)}")
    schedules: tuple[str, ...] = option(("constant", "step", "cosine", "warmup-cosine", "noam"),
                                        f"learning-rate schedules to compare, comma-separated, from: {', '.join(SCHEDULES)}")
    schedule_optimizer: Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"] = option(
        "adam", "the optimizer the schedules are compared with")
    schedule_lr: float | None = option(None, "peak learning rate of the schedule comparison; "
                                       f"None = {SCHEDULE_LR_FACTOR:g}x that optimizer's LR in the optimizer comparison")
    lr_scale: float = option(1.0, "multiply every optimizer's learning rate by this (to explore too large / too small rates)")
    warmup: float = option(0.1, "share of the updates spent warming up (warmup-* and noam schedules), in (0, 1)")
    weight_decay: float = option(0.05, "AdamW's decoupled weight decay (the other optimizers use none)")
    val_fraction: float = option(0.1, "share of the training images held out for validation (stratified)")
    limit_train: int = option(0, "train on only the first N training images (0 = all); for smoke runs")
    limit_test: int = option(0, "evaluate on only the first N test images (0 = all); for smoke runs")
    seed: int = option(0, "random seed: the same initial weights and batch order for every configuration")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where to train: auto picks CUDA when available")
    progress: bool = option(True, "show a progress bar (only on a terminal)")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline: all six optimizers and five schedules, 1 epoch.
    "fast": {"epochs": 1, "limit_train": 320, "limit_test": 200, "batch_size": 32},
}


@dataclass(frozen=True)
class RunSpec:
    """One training run: a sub-folder name, an optimizer, a schedule, a peak learning rate."""

    name: str
    optimizer: str
    schedule: str
    lr: float


def plan(cfg: OptimizersConfig) -> tuple[list[RunSpec], dict[str, str], dict[str, str]]:
    """The runs to make, and which run each optimizer / schedule of the report reads.

    A schedule run that would repeat an optimizer run (``constant`` at the same optimizer and LR)
    is not trained twice: both rows of the report read the same folder.

    Returns:
        (runs, optimizer name -> run name, schedule name -> run name).
    """
    runs: dict[tuple[str, str, float], RunSpec] = {}

    def add(name: str, opt: str, sched: str, lr: float) -> str:
        key = (opt, sched, lr)
        if key not in runs:
            runs[key] = RunSpec(name, opt, sched, lr)
        return runs[key].name

    by_opt = {o: add(f"opt-{o}", o, "constant", OPTIMIZERS[o].lr * cfg.lr_scale) for o in cfg.optimizers}
    peak = (cfg.schedule_lr if cfg.schedule_lr is not None
            else SCHEDULE_LR_FACTOR * OPTIMIZERS[cfg.schedule_optimizer].lr * cfg.lr_scale)
    by_sched = {s: add(f"sched-{cfg.schedule_optimizer}-{s}", cfg.schedule_optimizer, s, peak) for s in cfg.schedules}
    return list(runs.values()), by_opt, by_sched


def _validate(cfg: OptimizersConfig) -> None:
    checks = [
        (cfg.epochs >= 1, "--epochs must be >= 1"),
        (cfg.batch_size >= 1, "--batch-size must be >= 1"),
        (len(cfg.optimizers) + len(cfg.schedules) > 0, "--optimizers and --schedules are both empty: nothing to train"),
        (cfg.schedule_lr is None or cfg.schedule_lr > 0, "--schedule-lr must be > 0"),
        (cfg.lr_scale > 0, "--lr-scale must be > 0"),
        (0 < cfg.warmup < 1, "--warmup must be in (0, 1)"),
        (cfg.weight_decay >= 0, "--weight-decay must be >= 0"),
        (0 <= cfg.val_fraction < 0.9, "--val-fraction must be in [0, 0.9)"),
        (cfg.limit_train >= 0 and cfg.limit_test >= 0, "--limit-train and --limit-test must be >= 0 (0 = all)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    for o in cfg.optimizers:
        if o not in OPTIMIZERS:
            raise UserError(f"--optimizers: unknown optimizer {o!r}; choose from {', '.join(OPTIMIZERS)}")
    for s in cfg.schedules:
        if s not in SCHEDULES:
            raise UserError(f"--schedules: unknown schedule {s!r}; choose from {', '.join(SCHEDULES)}")
    if len(set(cfg.optimizers)) != len(cfg.optimizers) or len(set(cfg.schedules)) != len(cfg.schedules):
        raise UserError("--optimizers / --schedules: a name is given twice")
    get_image_dataset(cfg.dataset)  # unknown name -> UserError listing the datasets


# ----------------------------------------------------------------------------------- training
class UpdateLossRecorder:
    """Records the training loss of every update without changing the Trainer.

    It wraps the Trainer's ``prepare_batch`` (which sees each training batch's targets) and hooks the
    model's forward pass (which sees the logits), and computes the same cross-entropy the Trainer
    minimizes (no label smoothing here), detached.
    """

    def __init__(self, model: torch.nn.Module, prepare_batch: Callable):
        self.prepare_batch = prepare_batch
        self.losses: list[float] = []
        self._targets: torch.Tensor | None = None
        self._handle = model.register_forward_hook(self._hook)

    def __call__(self, x, y, train, generator):
        xb, yb = self.prepare_batch(x, y, train, generator)
        self._targets = yb if train else None
        return xb, yb

    def _hook(self, module, inputs, output):
        if module.training and self._targets is not None:
            self.losses.append(float(F.cross_entropy(output.detach().float(), self._targets)))
            self._targets = None

    def close(self) -> None:
        self._handle.remove()


def _train_one(spec: RunSpec, cfg: OptimizersConfig, run_root: Path, data: dict[str, Any], ctx: RunContext,
               log: Callable[[str], None]) -> dict[str, Any]:
    folder = run_root / "configs" / spec.name
    if folder.exists():  # an unfinished run of this configuration (interrupted): start it again
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.manual_seed(cfg.seed)  # the same initial weights for every configuration
    model = LeNet5(1, len(data["classes"])).to(ctx.device)
    optimizer = OPTIMIZERS[spec.optimizer].build(model.parameters(), spec.lr, cfg)
    n_train = len(data["y_tr"])
    total = math.ceil(n_train / cfg.batch_size) * cfg.epochs
    schedule = make_schedule(spec.schedule, spec.lr, total, cfg.warmup)
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=spec.lr, schedule="constant",
                            warmup=0.0, weight_decay=0.0, grad_clip=0.0, label_smoothing=0.0, seed=cfg.seed,
                            device=cfg.device, progress=cfg.progress)
    prep = BatchPreparer(data["mean"], data["std"], 0, False, ctx.device, channels_last=False)
    recorder = UpdateLossRecorder(model, prep)
    eval_sets = {"val": (data["x_val"], data["y_val"])} if len(data["y_val"]) else {}
    trainer = supervised_trainer(train_cfg, model, folder, (data["x_tr"], data["y_tr"]), recorder, eval_sets, ctx.device,
                      ctx.info, lambda m: log(f"  [{spec.name}] {m}"), optimizer=optimizer, lr_schedule=schedule)
    t0 = time.perf_counter()
    diverged = None
    try:
        trainer.fit()
    except TrainingDiverged as e:  # a learning rate too large for this method: a result, not a crash
        diverged = str(e).split(";")[0]
        log(f"  [{spec.name}] diverged: {diverged}")
    wall = time.perf_counter() - t0
    recorder.close()
    shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)  # model.safetensors is what is kept
    write_text_atomic(folder / "updates.csv",
                      "step,train_loss,lr\n" + "".join(f"{i + 1},{loss!r},{trainer.lr_for(i)!r}\n"
                                                       for i, loss in enumerate(recorder.losses)))
    result = {
        "name": spec.name, "optimizer": spec.optimizer, "schedule": spec.schedule, "peak_lr": spec.lr,
        "test_acc": None, "test_loss": None, "final_train_loss": None, "final_train_acc": None, "val_acc": None,
        "updates": len(recorder.losses), "wall_time_s": wall, "n_test": len(data["y_test"]), "diverged": diverged,
    }
    if diverged is None:
        test = trainer.evaluate(EvalBatches((data["x_test"], data["y_test"])))
        last = trainer.history[-1]
        result.update(test_acc=test["acc"], test_loss=test["loss"], final_train_loss=last["train_loss"],
                      final_train_acc=last["train_acc"], val_acc=last.get("val_acc"))
    write_json_atomic(folder / "result.json", result)
    return result


def _load_data(cfg: OptimizersConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    info = get_image_dataset(cfg.dataset)
    train, test = info.load("train"), info.load("test")
    x, y = train.images, train.labels
    if cfg.limit_train:
        x, y = x[: cfg.limit_train], y[: cfg.limit_train]
    x_test, y_test = test.images, test.labels
    if cfg.limit_test:
        x_test, y_test = x_test[: cfg.limit_test], y_test[: cfg.limit_test]
    tr_idx, val_idx = stratified_holdout(y, cfg.val_fraction, cfg.seed)
    pixels = x[tr_idx].float().div(255)
    mean, std = float(pixels.mean()), float(pixels.std())
    data = {"x_tr": x[tr_idx], "y_tr": y[tr_idx], "x_val": x[val_idx], "y_val": y[val_idx],
            "x_test": x_test, "y_test": y_test, "classes": list(train.classes), "mean": mean, "std": std}
    data_info = {"dataset": cfg.dataset, "source": train.source, "classes": list(train.classes),
                 "n_train": len(tr_idx), "n_val": len(val_idx), "n_test": len(y_test), "mean": mean, "std": std}
    return data, data_info


def run(cfg: OptimizersConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every configuration (skipping those a resumed run already finished) and write the report."""
    _validate(cfg)
    if ctx.info.enabled:
        raise UserError("the optimizers lab trains its configurations one after another in one process; "
                        "run it without torchrun")
    log = ctx.log
    data, data_info = _load_data(cfg)
    write_json_atomic(ctx.run_dir / "data.json", data_info)
    log(f"{cfg.dataset}: {data_info['n_train']} train / {data_info['n_val']} val / {data_info['n_test']} test "
        f"images from {data_info['source']}; device {ctx.device}")
    runs, _, _ = plan(cfg)
    results = {}
    for i, spec in enumerate(runs, 1):
        done = ctx.run_dir / "configs" / spec.name / "result.json"
        if ctx.resume and done.is_file():
            results[spec.name] = json.loads(done.read_text())
            log(f"[{i}/{len(runs)}] {spec.name}: already finished, kept")
            continue
        log(f"[{i}/{len(runs)}] {spec.name}: {OPTIMIZERS[spec.optimizer].label}, lr {spec.lr:g}, {spec.schedule} schedule")
        r = _train_one(spec, cfg, ctx.run_dir, data, ctx, log)
        results[spec.name] = r
        if r["diverged"] is None:
            log(f"[{i}/{len(runs)}] {spec.name}: test accuracy {100 * r['test_acc']:.2f}%, final train loss "
                f"{r['final_train_loss']:.4f}, {r['wall_time_s']:.1f}s")
    write_json_atomic(ctx.run_dir / "results.json", results)
    path = report(ctx.run_dir)
    log(f"report: {path}")
    return results


# ----------------------------------------------------------------------------------- evaluate
def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: test accuracy of every saved model of the run, on its test split or another dataset.

    Args:
        run_dir: a finished run folder of this lab.
        data: None (the run's dataset) or a dataset name (``deepnotes data list``) with the same classes.
        device: where to evaluate.

    Returns:
        ``{"data", "n", "acc_<config>"..., "loss_<config>"...}``, also saved as ``eval/<data>.json``.

    Raises:
        UserError: not a finished run folder, a damaged weights file, or a dataset whose classes differ.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    data_info = read_run_json(run_dir / "data.json")
    name = data or cfg.dataset
    split = get_image_dataset(name).load("test")
    if len(split.classes) != len(data_info["classes"]):
        raise UserError(f"--data {name}: {len(split.classes)} classes, but the run's models have {len(data_info['classes'])}")
    prep = BatchPreparer(data_info["mean"], data_info["std"], 0, False, device, channels_last=False)
    runs, _, _ = plan(cfg)
    metrics: dict[str, Any] = {"data": name, "n": len(split.labels)}
    for spec in runs:
        result = read_run_json(run_dir / "configs" / spec.name / "result.json")
        if result.get("diverged"):
            continue  # no weights worth evaluating
        model = load_run_weights(LeNet5(1, len(data_info["classes"])),
                                 run_dir / "configs" / spec.name / "model.safetensors", run_dir)
        model.to(device).eval()
        correct, loss_sum = 0, 0.0
        with torch.no_grad():
            for start in range(0, len(split.labels), 1000):
                xb, yb = prep(split.images[start:start + 1000], split.labels[start:start + 1000], False, None)
                logits = model(xb).float()
                loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
                correct += int((logits.argmax(-1) == yb).sum())
        metrics[f"acc_{spec.name}"] = correct / len(split.labels)
        metrics[f"loss_{spec.name}"] = loss_sum / len(split.labels)
    write_json_atomic(run_dir / "eval" / f"{name}.json", metrics)
    return metrics


# ----------------------------------------------------------------------------------- report
def _read_updates(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, train_loss, lr) arrays from a configuration's updates.csv."""
    arr = np.loadtxt(folder / "updates.csv", delimiter=",", skiprows=1, ndmin=2)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` updates (shorter at the start)."""
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def _loss_panel(ax, curves: list[tuple[str, np.ndarray, np.ndarray]], steps_per_epoch: int, title: str) -> None:
    window = max(1, steps_per_epoch // 4)
    for i, (label, steps, loss) in enumerate(curves):
        color = f"C{i % 10}"
        x = steps / steps_per_epoch
        ax.plot(x, loss, color=color, lw=0.6, alpha=0.2)
        ax.plot(x, _smooth(loss, window), color=color, lw=1.6, ls="--" if i % 2 else "-", label=label)
    values = np.concatenate([loss for _, _, loss in curves])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() > 20:  # log scale only where the losses span decades
        ax.set_yscale("log")
    ax.set_xlabel("epoch (updates / updates per epoch)")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    data_info = read_run_json(run_dir / "data.json")
    runs, by_opt, by_sched = plan(cfg)
    results = {spec.name: read_run_json(run_dir / "configs" / spec.name / "result.json") for spec in runs}
    updates = {spec.name: _read_updates(run_dir / "configs" / spec.name) for spec in runs}
    epochs_rows = {spec.name: read_metrics_csv(run_dir / "configs" / spec.name / "metrics.csv")
                   if (run_dir / "configs" / spec.name / "metrics.csv").is_file() else []  # none: diverged in epoch 1
                   for spec in runs}
    steps_per_epoch = math.ceil(data_info["n_train"] / cfg.batch_size)
    sched_label = OPTIMIZERS[cfg.schedule_optimizer].label

    opt_curves = [(f"{OPTIMIZERS[o].label} (lr {results[n]['peak_lr']:g})", *updates[n][:2]) for o, n in by_opt.items()]
    sched_curves = [(s, *updates[n][:2]) for s, n in by_sched.items()]
    panels = [(c, t) for c, t in [(opt_curves, "optimizers, constant learning rate"),
                                  (sched_curves, f"schedules ({sched_label})")] if c]
    fig = new_figure(6.0 * len(panels), 4.2)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (curves, title) in zip(axes, panels):
        _loss_panel(ax, curves, steps_per_epoch, title)
    fig.suptitle(f"LeNet-5 on {cfg.dataset}: training loss of every update (faint) and its moving average", fontsize=11)
    fig.tight_layout()
    save_figure(fig, run_dir / "loss_curves.png")

    fig = new_figure(6.0 * len(panels), 3.8)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (group, title) in zip(axes, [(g, t) for g, t in [(by_opt, "optimizers"), (by_sched, f"schedules ({sched_label})")] if g]):
        for i, (key, name) in enumerate(group.items()):
            rows = [r for r in epochs_rows[name] if r.get("val_acc") is not None]
            ax.plot([r["epoch"] for r in rows], [100 * r["val_acc"] for r in rows], "o-", color=f"C{i % 10}", ms=3,
                    label=OPTIMIZERS[key].label if group is by_opt else key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "val_accuracy.png")

    if by_sched:
        fig = new_figure(6.5, 3.6)
        ax = fig.subplots()
        for i, (s, n) in enumerate(by_sched.items()):
            steps, _, lr = updates[n]
            ax.plot(steps, lr, color=f"C{i % 10}", lw=1.6, ls="--" if i % 2 else "-", label=s)
        ax.set_xlabel("update")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        ax.set_title(f"learning-rate schedules ({sched_label}, {int(steps[-1])} updates, warm-up {cfg.warmup:.0%})",
                     fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, run_dir / "lr_schedules.png")

    def row(label: str, r: dict[str, Any]) -> list[Any]:
        pct = lambda v: 100 * v if v is not None else None  # noqa: E731
        if r.get("diverged"):
            label = f"{label} (diverged at update {r['updates']})"
        return [label, r["peak_lr"], r["schedule"], pct(r["test_acc"]), r["test_loss"], r["final_train_loss"],
                pct(r.get("val_acc")), round(r["wall_time_s"], 1)]

    headers = ["configuration", "peak lr", "schedule", "test accuracy (%)", "test loss", "final train loss",
               "val accuracy (%)", "wall time (s)"]
    n_test = next(iter(results.values()))["n_test"] if results else 0
    lines = [
        f"# {NAME}: optimizers and learning-rate schedules, LeNet-5 on {cfg.dataset}",
        "",
        "ML2021/2022 lecture 2, 自動調整學習速率 (adaptive learning rate: Adagrad, RMSProp, Adam; learning-rate "
        "decay and warm-up). Every configuration starts from the same initial weights and sees the same batches "
        f"(seed {cfg.seed}); only the update rule and the learning rate differ. Data: {data_info['source']} "
        f"({data_info['n_train']} train / {data_info['n_val']} validation / {data_info['n_test']} test images), "
        f"{cfg.epochs} epochs of {steps_per_epoch} updates (batch {cfg.batch_size}), no augmentation. "
        "Final train loss: mean over the last epoch's updates. Test: the model after the last update.",
        "",
    ]
    if by_opt:
        lines += ["## Optimizers (constant learning rate)", "",
                  markdown_table(headers, [row(OPTIMIZERS[o].label, results[n]) for o, n in by_opt.items()]), ""]
    if by_sched:
        lines += [f"## Schedules ({sched_label})", "",
                  "Every schedule peaks at the same learning rate (by default 3x the optimizer's constant rate "
                  "above, too large to settle at without decay). `step`: x0.3 after each third; `cosine`: to 0; "
                  f"`warmup-*`: linear warm-up over {cfg.warmup:.0%} of the updates, then decay to 0; `noam`: the "
                  "Transformer's d_model^-0.5 min(n^-0.5, n warmup^-1.5), scaled to the same peak.", "",
                  markdown_table(headers, [row(s, results[n]) for s, n in by_sched.items()]), ""]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    for p in evals:
        e = read_run_json(p)
        lines += [f"## `deepnotes eval` on {e['data']} ({e['n']} test images)", "",
                  markdown_table(["configuration", "accuracy", "loss"],
                                 [[s.name, f"{100 * e[f'acc_{s.name}']:.2f}%", e[f"loss_{s.name}"]]
                                  for s in runs if f"acc_{s.name}" in e]), ""]
    lines += ["## Training loss", "", markdown_image("training loss curves", "loss_curves.png"), "",
              "## Validation accuracy", "", markdown_image("validation accuracy per epoch", "val_accuracy.png"), ""]
    if by_sched:
        lines += ["## Learning-rate schedules", "", markdown_image("learning-rate schedules", "lr_schedules.png"), ""]
    config_rows = [[k, ",".join(map(str, v)) if isinstance(v, list) else v]
                   for k, v in read_run_json(run_dir / "config.json")["config"].items()]
    lines += [f"Test accuracy is on {n_test} test images.", "", "## Configuration", "",
              markdown_table(["field", "value"], config_rows), ""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="LeNet-5 trained with SGD, momentum, Adagrad, RMSprop, Adam, AdamW (ours) and with LR schedules incl. warm-up and Noam",
    source="ML2021/2022 lecture 2 (adaptive learning rate, learning-rate scheduling, warm-up)",
    default_dataset="mnist-subset",
    metric="test accuracy per optimizer / schedule",
    config_cls=OptimizersConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
