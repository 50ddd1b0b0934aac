"""Lab ``spatial-transformer``: a CNN and an ST-CNN with the same budget on Jaderberg et al.'s distorted digits.

ML2021 Spring (Hung-yi Lee), "Spatial Transformer Layer" (seed 000 of the notes: the layer makes a CNN invariant
to rotation, translation and scale); Jaderberg et al. 2015, "Spatial Transformer Networks", section 4.1, Table 1.

Data: mnist-subset's real digits (4,000 train / 1,000 test), a stratified ``--val-fraction`` of each class of the
training digits held out for validation (:func:`deepnotes.data.images.load_held_out`). Each split is distorted by
:mod:`deepnotes.data.distorted` (R, RTS, P, E, TC) with its own seed, ``seed_for(--seed, distortion, split)``, so
the three splits never share a draw; with ``--redraw`` (the default) the training digits are distorted anew every
epoch (:class:`RedrawnBatches`, seeded by the epoch), and every model and seed sees the same draws.

Models (:mod:`deepnotes.models.stn`): ``st-cnn``, a spatial transformer (:mod:`deepnotes.nn.spatial`) in front of a
two-convolution CNN, and ``st-cnn-plain``, the same CNN with widths chosen to have the ST-CNN's parameter count.
For each distortion in ``--distortions`` and each seed in ``--seeds`` both are trained with the same optimizer,
schedule, epochs and batch order, each in its own Trainer folder, so ``--resume`` keeps the finished ones. After
every epoch the ST-CNN's transformer outputs for 8 fixed validation images are saved (the figure "over training").

``deepnotes eval RUN [--data mnist-subset|digits-8x8|FOLDER]`` re-scores the saved models on a fresh distorted
draw (a seed the run never used) of a test split: mnist-subset's own test digits by default, or other digits
(digits-8x8: other writers, another scanner).

Files it leaves in the run folder (beside config.json):
    data.json                               split sizes, the distortions' seeds, parameter counts
    models/<distortion>/<model>-seed<k>/    a Trainer folder per model (metrics.csv, checkpoints/, model.safetensors,
                                            result.json; the ST-CNN's snapshots/ of transformer outputs)
    results.json                            test errors per seed, mean and std, per distortion and model; curves
    report.md + *.png                       the report: errors.png, curves.png, st_<distortion>.png
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deepnotes.data.distorted import DISTORTIONS, JADERBERG_TABLE1, JADERBERG_TC, OUTPUT_SIZE, distort
from deepnotes.data.image_batches import pixel_preparer
from deepnotes.data.images import DIGITS, HeldOutImages, load_held_out, load_test_split, to_pixels
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.models.registry import create_model
from deepnotes.report import read_metrics_csv
from deepnotes.report.stn_plots import plot_error_bars, plot_error_curves, plot_transformer_outputs
from deepnotes.train import Callback, ClassificationTask, EvalBatches, TensorBatches, Trainer
from deepnotes.train.batches import seed_for
from deepnotes.train.distributed import DistInfo
from deepnotes.train.config import TrainConfig, option

NAME = "spatial-transformer"
MODELS = {"CNN": ("cnn", "st-cnn-plain"), "ST-CNN": ("st-cnn", "st-cnn")}  # label -> (folder prefix, model name)
SPLITS = ("train", "val", "test", "eval")  # the last: the fresh draw of `deepnotes eval`
SNAPSHOT_IMAGES = 8


@dataclass(frozen=True)
class SpatialTransformerConfig(TrainConfig):
    seed: int = option(0, "seed of the data: the validation split and the distortions' draws (models: --seeds)")
    epochs: int = option(15, "passes over the training set for every model")
    batch_size: int = option(64, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(2e-3, "peak learning rate")
    weight_decay: float = option(0.0, "weight decay on weights (not on biases)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule over all updates")
    warmup: float = option(0.05, "share of all updates warming the learning rate up")
    distortions: tuple[str, ...] = option(DISTORTIONS, f"distortions (comma-separated), from: {', '.join(DISTORTIONS)}",
                                          nonempty=True)
    seeds: tuple[int, ...] = option((0, 1, 2), "seeds; both models are trained once per seed and distortion",
                                    range="[0, 2147483647]", nonempty=True)
    transform: Literal["affine", "projective"] = option("affine", "the spatial transformer's transform")
    tc_output_size: int = option(60, "side of the transformer's output on the 60x60 TC images (60: the two CNNs "
                                 "see as many pixels; 30: the transformer must zoom in)", range="[20, 60]")
    limit_train: int = option(0, "use the first N of the 4,000 training digits (0 = all)", range="[0, 4000]")
    limit_test: int = option(0, "use the first N of the 1,000 test digits (0 = all)", range="[0, 1000]")
    val_fraction: float = option(0.1, "share of each class of the training digits held out for validation",
                                 range="(0, 0.5]")
    redraw: bool = option(True, "distort the training digits anew every epoch (a fresh draw per epoch, seeded); "
                          "--no-redraw: one fixed draw")

    def check(self) -> None:
        super().check()
        bad = [d for d in self.distortions if d not in DISTORTIONS]
        if bad:
            raise UserError(f"--distortions: unknown {', '.join(bad)}; choose from {', '.join(DISTORTIONS)}")
        if len(set(self.distortions)) < len(self.distortions) or len(set(self.seeds)) < len(self.seeds):
            raise UserError("--distortions and --seeds must not repeat a value")
        if 0 < self.limit_train < 50 or 0 < self.limit_test < 10:
            raise UserError("--limit-train must be 0 or >= 50, --limit-test 0 or >= 10 (TC clutters each digit with "
                            "crops of the others)")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 1, "limit_train": 300, "limit_test": 200, "distortions": ("R", "TC"), "seeds": (0,),
             "batch_size": 32},
}


def model_kwargs(cfg: SpatialTransformerConfig, kind: str) -> dict[str, Any]:
    """The keyword arguments both models of distortion ``kind`` are built with (one set: the same budget)."""
    return {"image_size": OUTPUT_SIZE[kind], "transform": cfg.transform,
            "output_size": cfg.tc_output_size if kind == "TC" else None}


def build_model(cfg: SpatialTransformerConfig, kind: str, label: str) -> nn.Module:
    return create_model(MODELS[label][1], in_channels=1, num_classes=len(DIGITS), **model_kwargs(cfg, kind))


def model_dir(kind: str, label: str, seed: int) -> str:
    return f"models/{kind}/{MODELS[label][0]}-seed{seed}"


def split_seed(seed: int, kind: str, split: str) -> int:
    """The seed of ``distort`` for one split (train, val, test, eval) of distortion ``kind``."""
    return seed_for(seed, DISTORTIONS.index(kind), SPLITS.index(split))


def distorted_sets(digits: HeldOutImages, kind: str, seed: int,
                   splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{split: (uint8 (N, 1, S, S), labels (N,))}`` for ``splits`` of train / val / test: each split distorted
    with its own seed."""
    parts = {"train": digits.train, "val": digits.val, "test": digits.test}
    return {name: (distort(parts[name].images, kind, split_seed(seed, kind, name)), parts[name].labels)
            for name in splits}


class RedrawnBatches:
    """Training batches whose digits are distorted anew every epoch: epoch e distorts all of them with seed
    ``seed_for(data_seed, e)``, then batches them in the order of ``TensorBatches(seed)``; so an epoch's batches
    depend only on (data_seed, seed, e) and a resumed run sees the same ones.

    Args:
        digits: (N, 1, 28, 28) uint8. labels: (N,). kind: a distortion. data_seed: seed of the draws.
        batch_size, seed, info: as for :class:`~deepnotes.train.batches.TensorBatches`.
    """

    def __init__(self, digits: torch.Tensor, labels: torch.Tensor, kind: str, data_seed: int, batch_size: int,
                 seed: int, info: DistInfo):
        self.digits, self.labels, self.kind, self.data_seed = digits, labels, kind, data_seed
        self.order = TensorBatches((labels,), batch_size, seed, info)

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x = distort(self.digits, self.kind, seed_for(self.data_seed, epoch))
        for idx in self.order.indices(epoch):
            yield x[idx], self.labels[idx]


@torch.no_grad()
def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """Share of the uint8 ``images`` whose predicted class is not the label, 500 at a time."""
    model.eval()
    wrong = sum(int((model(to_pixels(images[i:i + 500]).to(device)).argmax(-1).cpu() != labels[i:i + 500]).sum())
                for i in range(0, len(labels), 500))
    return wrong / len(labels)


class TransformerSnapshots(Callback):
    """After every epoch, the ST-CNN's transformer outputs for fixed images -> ``folder/epoch-<e>.safetensors``.

    Args:
        model: an :class:`~deepnotes.models.stn.STCNN`. images: (N, 1, S, S) pixels in [0, 1]. folder: where.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, folder: Path):
        self.model, self.images, self.folder = model, images, folder

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if not trainer.info.is_main:
            return
        with torch.no_grad():
            out = self.model.transformed(self.images.to(trainer.device)).float().cpu().contiguous()
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"epoch-{row['epoch']:03d}.safetensors") as tmp:
            save_file({"outputs": out}, str(tmp))


def train_model(cfg: SpatialTransformerConfig, kind: str, label: str, seed: int, digits: HeldOutImages,
                sets: dict[str, tuple[torch.Tensor, torch.Tensor]], ctx: RunContext) -> None:
    """Train model ``label`` on distortion ``kind`` with ``seed`` into its folder (kept when a resumed run finished
    it); write its result.json (validation and test error, parameters, training time)."""
    folder = ctx.run_dir / model_dir(kind, label, seed)
    if ctx.resume and (folder / "result.json").is_file():
        ctx.main_log(f"[{kind} {label} seed {seed}] finished in an earlier session; kept")
        return
    torch.manual_seed(seed)
    model = build_model(cfg, kind, label).to(ctx.device)
    callbacks = []
    if label == "ST-CNN":
        shown = to_pixels(sets["val"][0][:SNAPSHOT_IMAGES])
        if ctx.info.is_main:
            (folder / "snapshots").mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / "snapshots" / "inputs.safetensors") as tmp:
                save_file({"inputs": shown.contiguous(), "labels": sets["val"][1][:SNAPSHOT_IMAGES].contiguous()},
                          str(tmp))
        callbacks.append(TransformerSnapshots(model, shown, folder / "snapshots"))
    if cfg.redraw:
        batches = RedrawnBatches(digits.train.images, digits.train.labels, kind, split_seed(cfg.seed, kind, "train"),
                                 cfg.batch_size, seed, ctx.info)
    else:
        batches = TensorBatches(sets["train"], cfg.batch_size, seed, ctx.info)
    task = ClassificationTask(model, pixel_preparer(ctx.device), label_smoothing=cfg.label_smoothing)
    trainer = Trainer(dataclasses.replace(cfg, seed=seed), task, folder, batches,
                      {"val": EvalBatches(sets["val"], 1000, ctx.info)}, ctx.device, ctx.info, ctx.main_log,
                      callbacks=callbacks)
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    ctx.main_log(f"[{kind} {label} seed {seed}] training")
    trainer.fit()
    if ctx.info.is_main:
        Run(folder).write_json("result.json", {
            "distortion": kind, "model": label, "seed": seed, "val_error": error_rate(model, *sets["val"], ctx.device),
            "test_error": error_rate(model, *sets["test"], ctx.device), "n_test": len(sets["test"][1]),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history)})


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(run: Run, cfg: SpatialTransformerConfig) -> dict[str, Any]:
    """results.json from the models' result.json and metrics.csv files."""
    out: dict[str, Any] = {"seeds": list(cfg.seeds), "distortions": {}}
    for kind in cfg.distortions:
        row: dict[str, Any] = {}
        for label in MODELS:
            results = [run.read_json(f"{model_dir(kind, label, s)}/result.json") for s in cfg.seeds]
            errors = [r["test_error"] for r in results]
            csvs = [read_metrics_csv(run / model_dir(kind, label, s) / "metrics.csv") for s in cfg.seeds]
            curves = [[1 - float(r["val_acc"]) for r in rows] for rows in csvs]
            mean, std = mean_std(errors)
            row[label] = {"test_errors": errors, "mean": mean, "std": std, "parameters": results[0]["parameters"],
                          "val_errors": [r["val_error"] for r in results],
                          "train_time_s": sum(r["train_time_s"] for r in results),
                          "val_error_curve": [statistics.fmean(c) for c in zip(*curves)]}
        row["st_beats_cnn"] = row["ST-CNN"]["mean"] < row["CNN"]["mean"]
        out["distortions"][kind] = row
    out["st_beats_cnn_everywhere"] = all(r["st_beats_cnn"] for r in out["distortions"].values())
    return out


def run(cfg: SpatialTransformerConfig, ctx: RunContext) -> dict[str, Any]:
    """``deepnotes run spatial-transformer``: both models per distortion and seed, the summary, the report."""
    digits = load_held_out("mnist-subset", None, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)
    run_folder = Run(ctx.run_dir)
    if ctx.info.is_main:
        run_folder.write_json("data.json", {
            **digits.info("mnist-subset"),
            "distortion_seeds": {k: {s: split_seed(cfg.seed, k, s) for s in SPLITS} for k in cfg.distortions},
            "parameters": {k: {label: sum(p.numel() for p in build_model(cfg, k, label).parameters())
                               for label in MODELS} for k in cfg.distortions}})
    for kind in cfg.distortions:
        sets = distorted_sets(digits, kind, cfg.seed, ("val", "test") if cfg.redraw else ("train", "val", "test"))
        for seed in cfg.seeds:
            for label in MODELS:
                train_model(cfg, kind, label, seed, digits, sets, ctx)
    if not ctx.info.is_main:
        return {}
    results = summarize(run_folder, cfg)
    run_folder.write_json("results.json", results)
    ctx.log("test error CNN -> ST-CNN: " + ", ".join(
        f"{k} {pct(r['CNN']['mean'])} -> {pct(r['ST-CNN']['mean'])}" for k, r in results["distortions"].items())
        + f"; report: {report(run_folder)}")
    return {"st_beats_cnn_everywhere": results["st_beats_cnn_everywhere"],
            **{f"{k} {m}": r[m]["mean"] for k, r in results["distortions"].items() for m in MODELS}}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data DATASET|FOLDER]``: every saved model on a fresh distorted draw of a test split
    (mnist-subset's by default; digits of 28x28 grey images)."""
    cfg = run.config
    split, name = load_test_split(data, "mnist-subset", DIGITS)
    if tuple(split.images.shape[1:]) != (1, 28, 28):
        raise UserError(f"--data {data}: the distortions start from grey 28x28 digits, its images are "
                        f"{tuple(split.images.shape[1:])}")
    metrics: dict[str, Any] = {"data": f"{name} (new draw)", "images": len(split)}
    for kind in cfg.distortions:
        x = distort(split.images, kind, split_seed(cfg.seed, kind, "eval"))
        for label in MODELS:
            errors = [error_rate(run.load_weights(build_model(cfg, kind, label),
                                                  f"{model_dir(kind, label, s)}/model.safetensors").to(device),
                                 x, split.labels, device) for s in cfg.seeds]
            metrics[f"{kind} {label}"] = statistics.fmean(errors)
    metrics["ST-CNN lower everywhere"] = all(metrics[f"{k} ST-CNN"] < metrics[f"{k} CNN"] for k in cfg.distortions)
    run.write_eval(f"{name}-new-draw", metrics)
    return metrics


def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def paper_errors(cfg: SpatialTransformerConfig, kind: str) -> tuple[float, float]:
    """Jaderberg et al.'s test errors (%) of the CNN and of the ST-CNN with ``cfg.transform`` on ``kind``."""
    if kind == "TC":
        return JADERBERG_TC["CNN"], JADERBERG_TC["ST-CNN"]
    st = "ST-CNN Aff" if cfg.transform == "affine" else "ST-CNN Proj"
    return JADERBERG_TABLE1["CNN"][kind], JADERBERG_TABLE1[st][kind]


def snapshot_figure(run: Run, cfg: SpatialTransformerConfig, kind: str) -> str:
    """st_<kind>.png: the inputs and the transformer's outputs after a few epochs (first seed); its file name."""
    folder = run / model_dir(kind, "ST-CNN", cfg.seeds[0]) / "snapshots"
    shown = load_file(str(folder / "inputs.safetensors"))
    epochs = sorted(int(p.stem.split("-")[1]) for p in folder.glob("epoch-*.safetensors"))
    picked = sorted({epochs[round(i * (len(epochs) - 1) / 3)] for i in range(4)}) if epochs else []
    outputs = {f"epoch {e}": load_file(str(folder / f"epoch-{e:03d}.safetensors"))["outputs"] for e in picked}
    png = f"st_{kind}.png"
    plot_transformer_outputs(shown["inputs"], outputs, run / png, labels=[DIGITS[int(i)] for i in shown["labels"]],
                             title=f"{kind}: validation inputs and the ST-CNN's transformer outputs (seed "
                                   f"{cfg.seeds[0]})")
    return png


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from results.json and the models' folders."""
    cfg, res, data = run.config, run.read_json("results.json"), run.read_json("data.json")
    kinds = [k for k in cfg.distortions if k in res["distortions"]]  # the flag's order (JSON sorts its keys)
    rows = res["distortions"]
    plot_error_bars(kinds, {m: ([rows[k][m]["mean"] for k in kinds], [rows[k][m]["std"] for k in kinds])
                            for m in MODELS}, run / "errors.png",
                    references={m: [paper_errors(cfg, k)[i] for k in kinds] for i, m in enumerate(MODELS)},
                    title=f"test error, mean +- std over {len(cfg.seeds)} seed(s)")
    plot_error_curves({k: {m: rows[k][m]["val_error_curve"] for m in MODELS} for k in kinds}, run / "curves.png",
                      title="validation error per epoch (mean over seeds)")
    n = len(cfg.seeds)
    report_ = Report(run, f"{NAME}: CNN vs ST-CNN ({cfg.transform}) on distorted digits", intro=(
        f"ML2021 'Spatial Transformer Layer'; Jaderberg et al. 2015, section 4.1. mnist-subset's real digits "
        f"({data['n_train']} train / {data['n_val']} validation / {data['n_test']} test), distorted as the paper's "
        f"{', '.join(kinds)} sets ({'a fresh draw of the training digits every epoch' if cfg.redraw else 'one draw'}"
        f"); a plain CNN and an ST-CNN with the same number of parameters, the same optimizer, schedule and "
        f"{cfg.epochs} epoch(s), {n} seed(s) each."))
    report_.results(
        [[k, f"{pct(rows[k]['CNN']['mean'])} ± {100 * rows[k]['CNN']['std']:.2f}",
          f"{pct(rows[k]['ST-CNN']['mean'])} ± {100 * rows[k]['ST-CNN']['std']:.2f}",
          "yes" if rows[k]["st_beats_cnn"] else "no", *(f"{e:g}%" for e in paper_errors(cfg, k))] for k in kinds],
        headers=("distortion", "CNN test error", "ST-CNN test error", "ST-CNN lower",
                 "paper CNN", f"paper ST-CNN {'Aff' if cfg.transform == 'affine' else 'Proj'}"),
        note=f"Mean ± standard deviation over {n} seed(s). ST-CNN beats the CNN on every distortion: "
             f"**{'yes' if res['st_beats_cnn_everywhere'] else 'no'}**. The paper's errors (Table 1; TC from the "
             f"text) come from networks trained on all 60,000 MNIST digits: they are not comparable with ours, "
             f"trained on {data['n_train']}, and are listed for scale.")
    report_.figure("Test error per distortion", "errors.png")
    for k in kinds:
        report_.figure(f"What the transformer does: {k}", snapshot_figure(run, cfg, k))
    report_.figure("Validation error over training", "curves.png")
    report_.table("Per seed", ["distortion", "model", "parameters", *(f"test error, seed {s}" for s in cfg.seeds),
                               "training time (all seeds)"],
                  [[k, m, rows[k][m]["parameters"], *(pct(e) for e in rows[k][m]["test_errors"]),
                    f"{rows[k][m]['train_time_s']:.0f} s"] for k in kinds for m in MODELS])
    return report_.write()


LAB = Lab(
    name=NAME,
    summary="a CNN and an ST-CNN with the same budget on rotated, scaled, projective, elastic and cluttered digits",
    source="ML2021 Spatial Transformer Layer; Jaderberg et al. 2015",
    default_dataset="mnist-subset",
    metric="test error per distortion, CNN vs ST-CNN",
    config_cls=SpatialTransformerConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
