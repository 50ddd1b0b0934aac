"""Lab ``batch-and-momentum``: small vs large batches, with and without momentum, and the sharpness of the minima.

Source: ML2021 "類神經網路訓練不起來怎麼辦 (二): 批次 (batch) 與動量 (momentum)". The lecture's claims:

1. A large batch makes fewer updates per epoch; on parallel hardware (a GPU) one update on a large
   batch costs little more than one on a small batch, so a large-batch *epoch* is faster.
2. With the same number of epochs, small batches reach a better training accuracy: the noisy
   gradient of a small batch helps the optimization ("noisy" updates escape critical points).
3. Small batches also generalize better (better test accuracy even when the training accuracy is
   similar); one explanation is that they end in *flat* minima, large batches in *sharp* ones
   (Keskar et al., ICLR 2017).
4. Momentum (movement = minus the gradient plus the previous movement) speeds up training and can
   roll over small bumps and saddle points.

The lab trains the same network (default: an MLP 784-256-256-10, as Keskar et al.'s MNIST network is
an MLP) from the same initial weights four times (small/large batch x without/with momentum, same
epochs, same learning rate, constant schedule) on the real digits of mnist-subset (4,000 training /
1,000 test MNIST images, embedded, so the lab runs offline in a few minutes on two CPU cores;
sklearn's 8x8 digits would be faster but too easy to show differences). The learning rate is shared,
as in the lecture, so momentum 0.9 multiplies the effective step by about 10: 0.02 is the largest
round value at which every setting trains (LeNet-5 with momentum at B=16 collapses to chance at 0.02).
It measures time per epoch, updates per epoch, time per update, final training and test accuracy,
and the sharpness of each minimum reached (:mod:`deepnotes.analysis.sharpness`).

Files it leaves in the run folder (beside config.json):
    settings/<key>/           one folder per setting: the Trainer's metrics.csv, checkpoints/,
                              model.safetensors, and result.json (timings, accuracies, sharpness)
    data.json                 dataset, split sizes, pixel mean/std
    results.json              the four settings' results together
    report.md + *.png         the report
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepnotes.analysis.sharpness import perturbation_sharpness
from deepnotes.data import get_image_dataset
from deepnotes.data.image_batches import ImageBatchPreparer
from deepnotes.data.images import load_held_out, load_test_split
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.metrics.image_eval import mean_loss_accuracy
from deepnotes.models.registry import create_model
from deepnotes.report import markdown_image, markdown_table, new_figure, read_metrics_csv, save_figure
from deepnotes.train import TrainConfig, supervised_trainer
from deepnotes.train.checkpoint import list_checkpoints
from deepnotes.train.config import option

NAME = "batch-and-momentum"
MAX_ITEMS = "[0, 1000000000]"


@dataclass(frozen=True)
class BatchMomentumConfig(TrainConfig):
    epochs: int = option(30, "passes over the training set, the same for every setting")
    batch_size: int = option(16, "the SMALL batch size (examples per update of the small-batch runs)")
    large_batch: int = option(500, "the LARGE batch size (0 = full batch: the whole training set per update)",
                              range="[0, 1000000]")
    lr: float = option(0.02, "learning rate, the same for every setting (constant schedule)")
    momentum: float = option(0.9, "momentum of the 'with momentum' runs (the other runs use 0)")
    nesterov: bool = option(False, "Nesterov momentum instead of the lecture's (heavy-ball) momentum")
    weight_decay: float = option(0.0, "L2 weight decay on weights")
    schedule: Literal["constant", "step", "cosine", "onecycle"] = option(
        "constant", "learning-rate schedule (constant keeps the comparison about batch size and momentum)")
    dataset: str = option("mnist-subset", "dataset name (see `deepnotes data list`)")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    model: Literal["mlp", "lenet5"] = option("mlp", "network: MLP 784-256-256-10 (ReLU), or LeNet-5-style CNN")
    radii: tuple[float, ...] = option((0.05, 0.1, 0.2, 0.4), "sharpness: perturbation norms as fractions of the "
                                      "weights' norm (comma-separated)", range="(0, 10]", nonempty=True)
    directions: int = option(10, "sharpness: random directions per radius", range="[1, 100000]")
    sharpness_examples: int = option(2000, "sharpness: training examples the perturbed loss is measured on (0 = all)",
                                     range=MAX_ITEMS)
    limit_train: int = option(0, "train on only the first N training images (0 = all); for smoke runs", range=MAX_ITEMS)
    limit_test: int = option(0, "evaluate on only the first N test images (0 = all); for smoke runs", range=MAX_ITEMS)

    def check(self) -> None:
        super().check()
        if self.momentum <= 0:
            raise UserError("--momentum must be > 0: it is the momentum of the 'with momentum' runs (e.g. 0.9)")
        get_image_dataset(self.dataset, flag="--dataset")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline.
    "fast": {"epochs": 2, "limit_train": 512, "limit_test": 200, "large_batch": 256, "directions": 2,
             "radii": (0.02, 0.1), "sharpness_examples": 256},
}

SETTINGS = (  # (key, small or large batch, momentum on)
    ("small-sgd", "small", False),
    ("small-momentum", "small", True),
    ("large-sgd", "large", False),
    ("large-momentum", "large", True),
)


def build_model(cfg: BatchMomentumConfig, num_classes: int) -> torch.nn.Module:
    """The MLP (:class:`deepnotes.models.cnn.ImageMLP`) or LeNet-5, by name from the model registry."""
    return create_model("image-mlp" if cfg.model == "mlp" else "lenet5", in_channels=1, num_classes=num_classes)


def setting_config(cfg: BatchMomentumConfig, size: str, with_momentum: bool, n_train: int) -> TrainConfig:
    """The engine config one setting trains with: its batch size and momentum, everything else shared."""
    batch = cfg.batch_size if size == "small" else (cfg.large_batch or n_train)
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**shared, "batch_size": min(batch, n_train),
                          "momentum": cfg.momentum if with_momentum else 0.0})


def label(batch_size: int, momentum: float) -> str:
    return f"B={batch_size}, " + (f"momentum {momentum:g}" if momentum > 0 else "no momentum")


def _train_setting(cfg, key, size, with_momentum, data, prep, num_classes, ctx, log) -> dict[str, Any]:
    x_tr, y_tr, x_te, y_te = data
    scfg = setting_config(cfg, size, with_momentum, len(y_tr))
    folder, sdir = Run(ctx.run_dir), ctx.run_dir / "settings" / key
    if ctx.resume and (sdir / "result.json").is_file():
        log(f"{key}: finished before, kept")
        return folder.read_json(f"settings/{key}/result.json")
    sdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)  # the same initial weights for every setting
    model = build_model(cfg, num_classes)
    trainer = supervised_trainer(scfg, model, sdir, (x_tr, y_tr), prep, {"test": (x_te, y_te)}, ctx.device,
                                 ctx.info, lambda m: log(f"  [{key}] {m}"))
    if ctx.resume and list_checkpoints(sdir):
        trainer.resume()
    log(f"{key}: {label(scfg.batch_size, scfg.momentum)}, {trainer.steps_per_epoch} updates per epoch")
    trainer.fit()
    epoch_train_s = [len(y_tr) / row["throughput"] for row in trainer.history]  # training only, no evaluation
    epoch_s = statistics.median(epoch_train_s)
    train_loss, train_acc = mean_loss_accuracy(model, prep, x_tr, y_tr)
    test_loss, test_acc = mean_loss_accuracy(model, prep, x_te, y_te)

    n_sharp = cfg.sharpness_examples or len(y_tr)
    xs, ys = x_tr[:n_sharp], y_tr[:n_sharp]
    t0 = time.perf_counter()
    sharp = perturbation_sharpness(lambda: mean_loss_accuracy(model, prep, xs, ys)[0], list(model.parameters()),
                                   cfg.radii, cfg.directions, relative=True,
                                   generator=torch.Generator().manual_seed(cfg.seed + 1))  # same directions for all
    result = {
        "key": key, "label": label(scfg.batch_size, scfg.momentum), "batch_size": scfg.batch_size,
        "momentum": scfg.momentum, "epochs": cfg.epochs, "updates_per_epoch": trainer.steps_per_epoch,
        "updates": trainer.step, "epoch_time_s": epoch_s, "update_time_ms": 1000 * epoch_s / trainer.steps_per_epoch,
        "epoch_times_s": epoch_train_s, "train_loss": train_loss, "train_acc": train_acc,
        "test_loss": test_loss, "test_acc": test_acc,
        "sharpness": {"radii": list(cfg.radii), "examples": n_sharp, "directions": cfg.directions,
                      "base_loss": sharp.base_loss, "weight_norm": sharp.weight_norm,
                      "mean": sharp.mean.tolist(), "max": sharp.max.tolist(),
                      "time_s": time.perf_counter() - t0},
    }
    folder.write_json(f"settings/{key}/result.json", result)
    log(f"{key}: train acc {100 * train_acc:.2f}%, test acc {100 * test_acc:.2f}%, "
        f"{epoch_s:.2f} s/epoch, {result['update_time_ms']:.1f} ms/update, "
        f"sharpness at r={cfg.radii[-1]:g}: mean {sharp.mean[-1]:.4f}")
    return result


def run(cfg: BatchMomentumConfig, ctx: RunContext) -> dict[str, Any]:
    """Train the four settings, measure timings, accuracies and sharpness, and write the report."""
    if ctx.info.enabled:
        raise UserError(f"{NAME} times single-process training; run it without torchrun")
    log, folder = ctx.log, Run(ctx.run_dir)
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, cfg.limit_test)  # no validation part
    train, test = data.train, data.test
    folder.write_json("data.json", {**data.info(cfg.dataset), "device": str(ctx.device),
                                    "torch_threads": torch.get_num_threads()})
    log(f"{cfg.dataset}: {len(train)} train / {len(test)} test images; model {cfg.model}; device {ctx.device}")
    prep = ImageBatchPreparer(data.mean, data.std, 0, False, ctx.device, channels_last=False)
    data = (train.images, train.labels, test.images, test.labels)
    results = [_train_setting(cfg, key, size, mom, data, prep, len(train.classes), ctx, log)
               for key, size, mom in SETTINGS]
    folder.write_json("results.json", {"settings": results})
    log(f"report: {report(folder)}")
    return {"settings": results}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: test accuracy of each setting's final model.

    Args:
        data: None (the run's own test split), a dataset name (``deepnotes data list``), or a
            folder holding t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz].
    Returns:
        ``{"data": name, "n": images, "<key>_acc": accuracy, "<key>_loss": loss, ...}``, also
        saved as ``eval/<name>.json``.
    Raises:
        UserError: unfinished run, damaged weights, a missing folder, labels that do not fit the run's classes.
    """
    cfg, info = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"], cfg.data_dir)
    prep = ImageBatchPreparer(info["mean"], info["std"], 0, False, device, channels_last=False)
    metrics: dict[str, Any] = {"data": name, "n": len(split), "source": split.source}
    for key, _size, _mom in SETTINGS:
        model = run.load_weights(build_model(cfg, len(info["classes"])), f"settings/{key}/model.safetensors")
        loss, acc = mean_loss_accuracy(model.to(device), prep, split.images, split.labels)
        metrics[f"{key}_acc"], metrics[f"{key}_loss"] = acc, loss
    run.write_eval(name, metrics)
    return metrics


# ----------------------------------------------------------------------------------- report
COLORS = {"small-sgd": "tab:blue", "small-momentum": "tab:cyan", "large-sgd": "tab:red", "large-momentum": "tab:orange"}
STYLES = {"small-sgd": "-", "small-momentum": "--", "large-sgd": "-", "large-momentum": "--"}


def plot_curves(results: list[dict], histories: dict[str, list[dict]], path: Path) -> None:
    """Training loss per epoch, per update (log x), and test accuracy per epoch, one line per setting."""
    fig = new_figure(15, 4.2)
    ax_e, ax_u, ax_a = fig.subplots(1, 3)
    for r in results:
        rows = histories[r["key"]]
        ep = [int(x["epoch"]) for x in rows]
        kw = {"color": COLORS[r["key"]], "linestyle": STYLES[r["key"]], "label": r["label"], "marker": "."}
        ax_e.plot(ep, [x["train_loss"] for x in rows], **kw)
        ax_u.plot([int(x["step"]) for x in rows], [x["train_loss"] for x in rows], **kw)
        ax_a.plot(ep, [100 * x["test_acc"] for x in rows], **kw)
    ax_e.set(xlabel="epoch", ylabel="training loss (mean over the epoch's batches)", yscale="log",
             title="training loss vs epochs")
    ax_u.set(xlabel="updates (log)", ylabel="training loss", xscale="log", yscale="log", title="training loss vs updates")
    ax_a.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy (monitored, never used to choose)")
    for ax in (ax_e, ax_u, ax_a):
        ax.grid(True, alpha=0.3, which="both")
    ax_e.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_sharpness(results: list[dict], path: Path) -> None:
    """Mean (line) and max (dotted) training-loss increase vs perturbation radius, one colour per setting."""
    fig = new_figure(6.5, 4.5)
    ax = fig.subplots()
    for r in results:
        s = r["sharpness"]
        ax.plot(s["radii"], s["mean"], color=COLORS[r["key"]], linestyle=STYLES[r["key"]], marker="o",
                label=f"{r['label']} (mean)")
        ax.plot(s["radii"], s["max"], color=COLORS[r["key"]], linestyle=":", marker="^", alpha=0.6)
    ax.set(xscale="log", xlabel="perturbation norm / weight norm", ylabel="training-loss increase",
           title="sharpness of the minimum reached\n(lines: mean over directions, dotted: max)")
    ax.set_yscale("symlog", linthresh=1e-3)
    lowest = min(min(r["sharpness"]["mean"]) for r in results)
    ax.set_ylim(bottom=min(0.0, lowest * 1.5))
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _claims(results: dict[str, dict], radius: float) -> list[list[str]]:
    """The lecture's claims beside this run's numbers, each marked as holding here or not."""
    def acc(k, split):
        return f"{100 * results[k][f'{split}_acc']:.2f}%"

    def verdict(ok: bool) -> str:
        return "holds here" if ok else "does not hold here"

    s, l, sm, lm = (results[k] for k in ("small-sgd", "large-sgd", "small-momentum", "large-momentum"))
    rows = [
        ["a large batch makes fewer updates per epoch",
         f"{s['updates_per_epoch']} vs {l['updates_per_epoch']} updates", verdict(l["updates_per_epoch"] < s["updates_per_epoch"])],
        ["one large-batch update takes about as long as a small one (parallel hardware)",
         f"{s['update_time_ms']:.1f} ms vs {l['update_time_ms']:.1f} ms per update "
         f"(ratio {l['update_time_ms'] / s['update_time_ms']:.1f}, batch ratio {l['batch_size'] / s['batch_size']:.0f})",
         verdict(l["update_time_ms"] / s["update_time_ms"] < 0.5 * l["batch_size"] / s["batch_size"])],
        ["so a large-batch epoch is faster",
         f"{s['epoch_time_s']:.2f} s vs {l['epoch_time_s']:.2f} s per epoch", verdict(l["epoch_time_s"] < s["epoch_time_s"])],
        ["same epochs: the small batch optimizes better (training accuracy)",
         f"{acc('small-sgd', 'train')} vs {acc('large-sgd', 'train')}", verdict(s["train_acc"] > l["train_acc"])],
        ["the small batch is better on test data", f"{acc('small-sgd', 'test')} vs {acc('large-sgd', 'test')}",
         verdict(s["test_acc"] > l["test_acc"])],
        [f"the small batch ends in a flatter minimum (mean loss increase at r={radius:g})",
         f"{s['sharpness']['mean'][-1]:.4f} vs {l['sharpness']['mean'][-1]:.4f}",
         verdict(s["sharpness"]["mean"][-1] < l["sharpness"]["mean"][-1])],
        ["momentum speeds up training (final training loss, small batch)",
         f"{sm['train_loss']:.4f} with vs {s['train_loss']:.4f} without", verdict(sm["train_loss"] < s["train_loss"])],
        ["momentum speeds up training (final training loss, large batch)",
         f"{lm['train_loss']:.4f} with vs {l['train_loss']:.4f} without", verdict(lm["train_loss"] < l["train_loss"])],
    ]
    return rows


def timing_note(results: dict[str, dict], device: str) -> str:
    """A paragraph reading the timings: how much parallelism the hardware gave, and what differs from the lecture."""
    s, l = results["small-sgd"], results["large-sgd"]
    cost = l["update_time_ms"] / s["update_time_ms"]
    ratio = l["batch_size"] / s["batch_size"]
    return (f"On {device}, a {ratio:.0f}x larger batch made one update {cost:.1f}x slower (1 would be perfectly "
            f"parallel, {ratio:.0f} not parallel at all). The lecture's demonstration uses a GPU, where the factor stays "
            "near 1 up to batches of thousands, so there the large-batch epoch wins by far more. "
            "Timings on a machine shared with other processes are noisy (medians over "
            "epochs are reported). The accuracy and sharpness comparisons hold the number of epochs fixed, as in the "
            "lecture, so the large-batch runs make far fewer updates and may end at a higher training loss; a minimum "
            "of a higher loss is not directly comparable in sharpness (train the large batch longer with --epochs to "
            "compare minima of similar training loss).")


def report(run: Run) -> Path:
    """Render ``report.md``, ``curves.png`` and ``sharpness.png`` from a run folder; return the report's path."""
    cfg, info = run.config, run.read_json("data.json")
    results = run.read_json("results.json")["settings"]
    histories = {r["key"]: read_metrics_csv(run / "settings" / r["key"] / "metrics.csv") for r in results}
    plot_curves(results, histories, run / "curves.png")
    plot_sharpness(results, run / "sharpness.png")
    by_key = {r["key"]: r for r in results}
    table = [[r["label"], r["updates_per_epoch"], r["updates"], f"{r['epoch_time_s']:.3f}", f"{r['update_time_ms']:.2f}",
              f"{r['train_loss']:.4f}", f"{100 * r['train_acc']:.2f}%", f"{100 * r['test_acc']:.2f}%",
              f"{100 * (r['train_acc'] - r['test_acc']):.2f}"] for r in results]
    sharp_rows = [[r["label"], f"{r['sharpness']['base_loss']:.4f}", f"{r['sharpness']['weight_norm']:.2f}"]
                  + [f"{m:.4f} / {x:.4f}" for m, x in zip(r["sharpness"]["mean"], r["sharpness"]["max"])] for r in results]
    intro = ("ML2021 lecture 2, 類神經網路訓練不起來怎麼辦 (二): 批次 (batch) 與動量 (momentum). "
             f"Data: {info['source']} ({info['n_train']} train / {info['n_test']} test images). "
             f"The same network from the same initial weights, {cfg.epochs} epochs, SGD with learning rate {cfg.lr:g} "
             f"({cfg.schedule} schedule) for every setting; only the batch size and the momentum change. "
             f"Timed on {info['device']} ({info.get('torch_threads', '?')} CPU threads); "
             "time per epoch is the median over epochs of the training time alone (no evaluation, no checkpoint).")
    rep = Report(run, f"{NAME}: small vs large batch, with and without momentum ({cfg.model} on {cfg.dataset})", intro)
    rep.results(table, headers=["setting", "updates/epoch", "updates", "time/epoch (s)", "time/update (ms)",
                                "train loss", "train acc", "test acc", "train-test gap (points)"])
    rep.section("The lecture's claims beside this run",
                markdown_table(["claim (lecture)", "small vs large batch (this run)", "verdict"],
                               _claims(by_key, cfg.radii[-1])), timing_note(by_key, info["device"]))
    rep.figure("Training curves", "curves.png", alt="training loss and test accuracy per setting")
    s0 = results[0]["sharpness"]
    rep.section("Sharpness of the minima",
                f"Training loss on {s0['examples']} training images after moving all weights by a random vector of "
                f"norm r x ||w|| ({s0['directions']} directions per radius, the same directions for every setting), "
                "minus the loss at the minimum (deepnotes.analysis.sharpness). Flat minimum: small increase.",
                markdown_table(["setting", "loss at w", "||w||"] + [f"r={r:g}: mean / max increase" for r in cfg.radii],
                               sharp_rows), markdown_image("sharpness vs radius", "sharpness.png"))
    return rep.write(eval_row=lambda e: {"data": e.get("data", e["file"]), "images": e["n"], **{
        by_key[k]["label"]: f"{100 * e[f'{k}_acc']:.2f}%" for k, _, _ in SETTINGS}})


LAB = Lab(name=NAME, default_dataset="mnist-subset", metric="test accuracy; loss increase under weight perturbation",
            summary="small vs large batch, with and without momentum: time per epoch/update, accuracy, sharpness of the minimum",
            source="ML2021 lecture 2, 類神經網路訓練不起來怎麼辦 (二): batch and momentum",
            config_cls=BatchMomentumConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
