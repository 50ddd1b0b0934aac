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
(``--schedule-optimizer``, Adam by default) with each schedule of :func:`deepnotes.optim.named_schedule`,
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

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from deepnotes import optim
from deepnotes.data import get_image_dataset
from deepnotes.data.image_batches import ImageBatchPreparer
from deepnotes.data.images import HeldOutImages, load_held_out, load_test_split
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunConfig, RunContext
from deepnotes.io import write_text_atomic
from deepnotes.metrics.image_eval import mean_loss_accuracy
from deepnotes.models.registry import create_model
from deepnotes.optim.schedules import SCHEDULE_NAMES, named_schedule
from deepnotes.report import new_figure, read_metrics_csv, save_figure
from deepnotes.train import ClassificationTask, EvalBatches, TensorBatches, TrainConfig, Trainer, TrainingDiverged
from deepnotes.train.checkpoint import CHECKPOINT_DIR
from deepnotes.train.config import option

NAME = "optimizers"


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

SCHEDULE_LR_FACTOR = 3.0
"""Default peak LR of the schedule comparison, relative to the optimizer's own LR: schedules matter
where a constant rate is too large to settle into a minimum, so they are compared at a larger peak."""


@dataclass(frozen=True)
class OptimizersConfig(RunConfig):
    """The lab's flags; not a :class:`~deepnotes.train.TrainConfig`, because the optimizer, its learning rate and
    the schedule are what the lab varies (each configuration's engine config is built in :func:`_train_one`)."""

    epochs: int = option(10, "passes over the training set, for every configuration", range="[1, 100000]")
    batch_size: int = option(64, "examples per update", range="[1, 1000000]")
    dataset: str = option("mnist-subset", "dataset name (see `deepnotes data list`); 28x28 grey-scale digits or clothes")
    optimizers: tuple[str, ...] = option(("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"),
                                         f"optimizers to compare, comma-separated, from: {', '.join(OPTIMIZERS)}")
    schedules: tuple[str, ...] = option(("constant", "step", "cosine", "warmup-cosine", "noam"), "learning-rate "
                                        f"schedules to compare, comma-separated, from: {', '.join(SCHEDULE_NAMES)}")
    schedule_optimizer: Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"] = option(
        "adam", "the optimizer the schedules are compared with")
    schedule_lr: float | None = option(None, "peak learning rate of the schedule comparison; None = "
                                       f"{SCHEDULE_LR_FACTOR:g}x that optimizer's LR in the optimizer comparison",
                                       range="(0, inf)")
    lr_scale: float = option(1.0, "multiply every optimizer's learning rate by this (to explore too large / too small "
                             "rates)", range="(0, inf)")
    warmup: float = option(0.1, "share of the updates spent warming up (warmup-* and noam schedules)", range="(0, 1)")
    weight_decay: float = option(0.05, "AdamW's decoupled weight decay (the other optimizers use none)", range="[0, 10]")
    val_fraction: float = option(0.1, "share of the training images held out for validation (stratified)",
                                 range="[0, 0.9)")
    limit_train: int = option(0, "train on only the first N training images (0 = all); for smoke runs",
                              range="[0, 1000000000]")
    limit_test: int = option(0, "evaluate on only the first N test images (0 = all); for smoke runs",
                             range="[0, 1000000000]")

    def check(self) -> None:
        for flag, names, known in (("--optimizers", self.optimizers, tuple(OPTIMIZERS)),
                                   ("--schedules", self.schedules, SCHEDULE_NAMES)):
            for name in names:
                if name not in known:
                    raise UserError(f"{flag}: unknown name {name!r}; choose from {', '.join(known)}")
            if len(set(names)) != len(names):
                raise UserError(f"{flag}: a name is given twice")
        if not self.optimizers and not self.schedules:
            raise UserError("--optimizers and --schedules are both empty: nothing to train")
        get_image_dataset(self.dataset, flag="--dataset")


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
        return runs.setdefault((opt, sched, lr), RunSpec(name, opt, sched, lr)).name

    by_opt = {o: add(f"opt-{o}", o, "constant", OPTIMIZERS[o].lr * cfg.lr_scale) for o in cfg.optimizers}
    peak = (cfg.schedule_lr if cfg.schedule_lr is not None
            else SCHEDULE_LR_FACTOR * OPTIMIZERS[cfg.schedule_optimizer].lr * cfg.lr_scale)
    by_sched = {s: add(f"sched-{cfg.schedule_optimizer}-{s}", cfg.schedule_optimizer, s, peak) for s in cfg.schedules}
    return list(runs.values()), by_opt, by_sched


class _RecordingTask(ClassificationTask):
    """Cross-entropy classification that also keeps the training loss of every update (also a diverging one)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.losses: list[float] = []

    def training_step(self, model, batch, step):
        out = super().training_step(model, batch, step)
        if step.train:
            self.losses.append(float(out.loss.detach()))
        return out


def _train_one(spec: RunSpec, cfg: OptimizersConfig, run_root: Path, data: HeldOutImages, ctx: RunContext,
               log: Callable[[str], None]) -> dict[str, Any]:
    folder = run_root / "configs" / spec.name
    if folder.exists():  # an unfinished run of this configuration (interrupted): start it again
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    torch.manual_seed(cfg.seed)  # the same initial weights for every configuration
    model = create_model("lenet5", in_channels=1, num_classes=len(data.test.classes)).to(ctx.device)
    optimizer = OPTIMIZERS[spec.optimizer].build(model.parameters(), spec.lr, cfg)
    total = math.ceil(len(data.train) / cfg.batch_size) * cfg.epochs
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=spec.lr, schedule="constant",
                            warmup=0.0, weight_decay=0.0, grad_clip=0.0, label_smoothing=0.0, seed=cfg.seed,
                            device=cfg.device, progress=cfg.progress)
    prep = ImageBatchPreparer(data.mean, data.std, 0, False, ctx.device, channels_last=False)
    task = _RecordingTask(model, prep, optimizer=optimizer)
    evals = {"val": EvalBatches((data.val.images, data.val.labels), 1000, ctx.info)} if len(data.val) else {}
    batches = TensorBatches((data.train.images, data.train.labels), cfg.batch_size, cfg.seed, ctx.info)
    trainer = Trainer(train_cfg, task, folder, batches, evals, ctx.device, ctx.info, lambda m: log(f"  [{spec.name}] {m}"),
                      lr_schedule=named_schedule(spec.schedule, spec.lr, total, cfg.warmup))
    t0 = time.perf_counter()
    diverged = None
    try:
        trainer.fit()
    except TrainingDiverged as e:  # a learning rate too large for this method: a result, not a crash
        diverged = str(e).split(";")[0]
        log(f"  [{spec.name}] diverged: {diverged}")
    wall = time.perf_counter() - t0
    shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)  # model.safetensors is what is kept
    write_text_atomic(folder / "updates.csv", "step,train_loss,lr\n" + "".join(
        f"{i + 1},{loss!r},{trainer.lr_for(i)!r}\n" for i, loss in enumerate(task.losses)))
    result = {"name": spec.name, "optimizer": spec.optimizer, "schedule": spec.schedule, "peak_lr": spec.lr,
              "test_acc": None, "test_loss": None, "final_train_loss": None, "final_train_acc": None, "val_acc": None,
              "updates": len(task.losses), "wall_time_s": wall, "n_test": len(data.test), "diverged": diverged}
    if diverged is None:
        test = trainer.evaluate(EvalBatches((data.test.images, data.test.labels)))
        last = trainer.history[-1]
        result.update(test_acc=test["acc"], test_loss=test["loss"], final_train_loss=last["train_loss"],
                      final_train_acc=last["train_acc"], val_acc=last.get("val_acc"))
    Run(run_root).write_json(f"configs/{spec.name}/result.json", result)
    return result


def run(cfg: OptimizersConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every configuration (skipping those a resumed run already finished) and write the report."""
    if ctx.info.enabled:
        raise UserError("the optimizers lab trains its configurations one after another in one process; "
                        "run it without torchrun")
    log, folder = ctx.log, Run(ctx.run_dir)
    data = load_held_out(cfg.dataset, None, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)
    info = data.info(cfg.dataset)
    folder.write_json("data.json", info)
    log(f"{cfg.dataset}: {info['n_train']} train / {info['n_val']} val / {info['n_test']} test images from "
        f"{info['source']}; device {ctx.device}")
    runs, _, _ = plan(cfg)
    results = {}
    for i, spec in enumerate(runs, 1):
        if ctx.resume and (ctx.run_dir / "configs" / spec.name / "result.json").is_file():
            results[spec.name] = folder.read_json(f"configs/{spec.name}/result.json")
            log(f"[{i}/{len(runs)}] {spec.name}: already finished, kept")
            continue
        log(f"[{i}/{len(runs)}] {spec.name}: {OPTIMIZERS[spec.optimizer].label}, lr {spec.lr:g}, {spec.schedule} schedule")
        r = results[spec.name] = _train_one(spec, cfg, ctx.run_dir, data, ctx, log)
        if r["diverged"] is None:
            log(f"[{i}/{len(runs)}] {spec.name}: test accuracy {100 * r['test_acc']:.2f}%, final train loss "
                f"{r['final_train_loss']:.4f}, {r['wall_time_s']:.1f}s")
    folder.write_json("results.json", results)
    log(f"report: {report(folder)}")
    return results


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: test accuracy and loss of every saved model of the run.

    Args:
        data: None (the run's dataset), a dataset name (``deepnotes data list``) with the same classes, or a folder
            holding t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].

    Returns:
        ``{"data", "n", "acc_<config>"..., "loss_<config>"...}`` (diverged configurations left out), also saved as
        ``eval/<data>.json``.

    Raises:
        UserError: not a finished run folder, a damaged weights file, or a dataset whose classes differ.
    """
    cfg, info = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"])
    prep = ImageBatchPreparer(info["mean"], info["std"], 0, False, device, channels_last=False)
    metrics: dict[str, Any] = {"data": name, "n": len(split)}
    for spec in plan(cfg)[0]:
        if run.read_json(f"configs/{spec.name}/result.json").get("diverged"):
            continue  # no weights worth evaluating
        model = create_model("lenet5", in_channels=1, num_classes=len(info["classes"]))
        model = run.load_weights(model, f"configs/{spec.name}/model.safetensors").to(device)
        loss, metrics[f"acc_{spec.name}"] = mean_loss_accuracy(model, prep, split.images, split.labels)
        metrics[f"loss_{spec.name}"] = loss
    run.write_eval(name, metrics)
    return metrics


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` updates (shorter at the start)."""
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def _panels(path: Path, height: float, panels: list[tuple[str, dict[str, str]]], draw: Callable,
            suptitle: str = "") -> None:
    """One figure of panels side by side, ``draw(ax, i, label, run name)`` once per line of each panel."""
    fig = new_figure(6.0 * len(panels) if len(panels) > 1 else 6.5, height)
    for ax, (title, lines) in zip(fig.subplots(1, len(panels), sharey=True, squeeze=False)[0], panels):
        for i, (label, name) in enumerate(lines.items()):
            draw(ax, i, label, name)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)


def report(run: Run) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    cfg, info = run.config, run.read_json("data.json")
    runs, by_opt, by_sched = plan(cfg)
    results = {s.name: run.read_json(f"configs/{s.name}/result.json") for s in runs}
    updates = {s.name: np.loadtxt(run / "configs" / s.name / "updates.csv", delimiter=",", skiprows=1, ndmin=2).T
               for s in runs}  # step, train_loss, lr
    epochs = {s.name: read_metrics_csv(run / "configs" / s.name / "metrics.csv")
              if (run / "configs" / s.name / "metrics.csv").is_file() else [] for s in runs}  # none: diverged at once
    per_epoch = math.ceil(info["n_train"] / cfg.batch_size)
    sched_label = OPTIMIZERS[cfg.schedule_optimizer].label
    opt_lines = {f"{OPTIMIZERS[o].label} (lr {results[n]['peak_lr']:g})": n for o, n in by_opt.items()}
    panels = [(t, g) for t, g in [("optimizers, constant learning rate", opt_lines),
                                  (f"schedules ({sched_label})", by_sched)] if g]

    def loss_line(ax, i, label, name):
        steps, loss = updates[name][0] / per_epoch, updates[name][1]
        ax.plot(steps, loss, color=f"C{i % 10}", lw=0.6, alpha=0.2)
        ax.plot(steps, _smooth(loss, max(1, per_epoch // 4)), color=f"C{i % 10}", lw=1.6, ls="--" if i % 2 else "-",
                label=label)
        ax.set(xlabel="epoch (updates / updates per epoch)", ylabel="training loss (cross-entropy)")
        values = np.concatenate([updates[n][1] for _, g in panels for n in g.values()])
        values = values[np.isfinite(values) & (values > 0)]
        if values.size and values.max() / values.min() > 20:  # log scale only where the losses span decades
            ax.set_yscale("log")

    def val_line(ax, i, label, name):
        rows = [r for r in epochs[name] if r.get("val_acc") is not None]
        ax.plot([r["epoch"] for r in rows], [100 * r["val_acc"] for r in rows], "o-", color=f"C{i % 10}", ms=3,
                label=label.split(" (lr")[0])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="validation accuracy (%)")

    def lr_line(ax, i, label, name):
        ax.plot(updates[name][0], updates[name][2], color=f"C{i % 10}", lw=1.6, ls="--" if i % 2 else "-", label=label)
        ax.set(xlabel="update", ylabel="learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))

    _panels(run / "loss_curves.png", 4.2, panels, loss_line,
            f"LeNet-5 on {cfg.dataset}: training loss of every update (faint) and its moving average")
    _panels(run / "val_accuracy.png", 3.8, panels, val_line)
    if by_sched:
        n_updates = int(updates[next(iter(by_sched.values()))][0][-1])
        _panels(run / "lr_schedules.png", 3.6, [(f"learning-rate schedules ({sched_label}, {n_updates} updates, "
                                                 f"warm-up {cfg.warmup:.0%})", by_sched)], lr_line)

    def row(label: str, r: dict[str, Any]) -> list[Any]:
        pct = lambda v: 100 * v if v is not None else None  # noqa: E731
        if r.get("diverged"):
            label = f"{label} (diverged at update {r['updates']})"
        return [label, r["peak_lr"], r["schedule"], pct(r["test_acc"]), r["test_loss"], r["final_train_loss"],
                pct(r.get("val_acc")), round(r["wall_time_s"], 1)]

    headers = ["configuration", "peak lr", "schedule", "test accuracy (%)", "test loss", "final train loss",
               "val accuracy (%)", "wall time (s)"]
    intro = ("ML2021/2022 lecture 2, 自動調整學習速率 (adaptive learning rate: Adagrad, RMSProp, Adam; learning-rate "
             "decay and warm-up). Every configuration starts from the same initial weights and sees the same batches "
             f"(seed {cfg.seed}); only the update rule and the learning rate differ. Data: {info['source']} "
             f"({info['n_train']} train / {info['n_val']} validation / {info['n_test']} test images), "
             f"{cfg.epochs} epochs of {per_epoch} updates (batch {cfg.batch_size}), no augmentation. "
             "Final train loss: mean over the last epoch's updates. Test: the model after the last update.")
    rep = Report(run, f"{NAME}: optimizers and learning-rate schedules, LeNet-5 on {cfg.dataset}", intro)
    if by_opt:
        rep.table("Optimizers (constant learning rate)", headers,
                  [row(OPTIMIZERS[o].label, results[n]) for o, n in by_opt.items()])
    if by_sched:
        rep.table(f"Schedules ({sched_label})", headers, [row(s, results[n]) for s, n in by_sched.items()],
                  note="Every schedule peaks at the same learning rate (by default 3x the optimizer's constant rate "
                  "above, too large to settle at without decay). `step`: x0.3 after each third; `cosine`: to 0; "
                  f"`warmup-*`: linear warm-up over {cfg.warmup:.0%} of the updates, then decay to 0; `noam`: the "
                  "Transformer's d_model^-0.5 min(n^-0.5, n warmup^-1.5), scaled to the same peak.")
    rep.figure("Training loss", "loss_curves.png")
    rep.figure("Validation accuracy", "val_accuracy.png", alt="validation accuracy per epoch",
               note=f"Test accuracy above is on {info['n_test']} test images.")
    if by_sched:
        rep.figure("Learning-rate schedules", "lr_schedules.png")
    return rep.write(eval_row=lambda e: {"data": e.get("data", e["file"]), "images": e["n"], **{
        s.name: f"{100 * e[f'acc_{s.name}']:.2f}%" for s in runs if f"acc_{s.name}" in e}})


LAB = Lab(name=NAME, default_dataset="mnist-subset", metric="test accuracy per optimizer / schedule",
            summary="LeNet-5 trained with SGD, momentum, Adagrad, RMSprop, Adam, AdamW (ours) and with LR schedules incl. warm-up and Noam",
            source="ML2021/2022 lecture 2 (adaptive learning rate, learning-rate scheduling, warm-up)",
            config_cls=OptimizersConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
