"""Lab ``pixelcnn``: autoregressive models of binary images, from independent pixels to the gated PixelCNN.

Sources: EE-559 (Fleuret) autoregression lecture (p(x) = Π_i p(x_i | x_<i), masked convolutions, sampling pixel by
pixel); van den Oord et al. 2016, "Pixel Recurrent Neural Networks" (PixelCNN, masks A and B) and "Conditional
Image Generation with PixelCNN Decoders" (gated PixelCNN, no blind spot); Frey 1998 (FVSBN); Larochelle & Murray
2011 (NADE). The models: :mod:`deepnotes.nn.pixelcnn`; the training task: :mod:`deepnotes.models.pixelcnn`.

Data: a grey image dataset (``--dataset``, Fashion-MNIST by default), binarized by :func:`deepnotes.data.images.
binarize` (``--binarize``: a fixed, seeded stochastic binarization, or a threshold at 0.5); ``--val-fraction`` of the
training images held out for validation. Every model in ``--models`` is fitted to the same bits and scored by its
negative log-likelihood (NLL) on the test images, in nats per image and bits per dimension:

* ``independent``: one Bernoulli per pixel, fitted in closed form (the log-odds of the training mean);
* ``fvsbn`` / ``nade``: fully visible logistic autoregression / NADE, trained ``--baseline-epochs`` at
  ``--baseline-lr``;
* ``pixelcnn`` / ``gated-pixelcnn``: the masked-convolution networks, trained ``--epochs`` at ``--lr``.

Files it leaves in the run folder (beside config.json):
    data.json                   dataset, binarization, split sizes, share of pixels on
    models/<model>/             each model's Trainer folder (metrics.csv, checkpoints/, model.safetensors)
    results.json                per model: test and validation NLL (nats/image, bits/dim), parameters, training time
    samples.npz                 ``--samples`` images drawn from each model, pixel by pixel
    probabilities.npz           eight test images and each model's p(x_i = 1 | x_<i) on them
    report.md + *.png           nll_curves.png, samples.png, probabilities.png
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from deepnotes.data.images import BINARIZE_SEED, binarize, load_held_out, load_test_split
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.models.pixelcnn import LikelihoodTask
from deepnotes.models.registry import create_model
from deepnotes.nn.autoencoder import bernoulli_nll
from deepnotes.nn.pixelcnn import bits_per_dim, sample
from deepnotes.report import new_figure, read_metrics_csv, save_figure
from deepnotes.train import EvalBatches, TensorBatches, TrainConfig, Trainer, option

NAME = "pixelcnn"
MODELS = ("independent", "fvsbn", "nade", "pixelcnn", "gated-pixelcnn")
NETWORKS = ("pixelcnn", "gated-pixelcnn")  # trained with --epochs / --lr; the others with the baseline budget
SPLIT_SEEDS = {"train": BINARIZE_SEED, "val": BINARIZE_SEED + 1, "test": BINARIZE_SEED + 2}  # one stream per split


@dataclass(frozen=True)
class PixelCNNConfig(TrainConfig):
    # The PixelCNNs' training; FVSBN and NADE have their own epochs and lr below, the independent model none.
    epochs: int = option(2, "epochs of each PixelCNN over the training images")
    batch_size: int = option(64, "images per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate of the PixelCNNs")
    weight_decay: float = option(0.0, "weight decay on weight matrices")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule over all updates (see deepnotes.train.schedule)")
    warmup: float = option(0.02, "share of all updates warming the learning rate up")
    cpu_bf16: Literal["auto", "on", "off"] = option(
        "auto", "bfloat16 autocast of training on CPU (scores are float32); auto = where the CPU has native bf16")
    dataset: str = option("fashion-mnist", "dataset name (see `deepnotes data list`)")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    binarize: Literal["stochastic", "threshold"] = option(
        "stochastic", "pixels on with probability intensity/255 (fixed seed), or on above 0.5")
    limit_train: int = option(0, "use only the first N training images (0 = all); for smoke runs",
                              range="[0, 1000000000]")
    limit_test: int = option(0, "score only the first N test images (0 = all)", range="[0, 1000000000]")
    val_fraction: float = option(0.1, "share of the training images held out for validation (stratified)",
                                 range="(0, 0.9)")
    models: tuple[str, ...] = option(("independent", "fvsbn", "gated-pixelcnn"),
                                     "models to fit: independent, fvsbn, nade, pixelcnn, gated-pixelcnn "
                                     "(comma-separated)", nonempty=True)
    channels: int = option(32, "PixelCNNs: feature channels", range="[1, 1024]")
    num_layers: int = option(6, "PixelCNNs: layers after the first (mask A) one", range="[0, 64]")
    kernel_size: int = option(7, "PixelCNNs: the first layer's kernel size (odd)", range="[1, 27]")
    hidden_kernel_size: int = option(3, "PixelCNNs: the later layers' kernel size (odd)", range="[1, 27]")
    nade_hidden: int = option(500, "NADE: hidden units", range="[1, 100000]")
    baseline_epochs: int = option(10, "FVSBN and NADE: training epochs", range="[1, 100000]")
    baseline_lr: float = option(3e-3, "FVSBN and NADE: peak learning rate", range="(0, inf)")
    smoothing: float = option(1.0, "independent model: pseudo-count added to each pixel value", range="[0, inf)")
    samples: int = option(16, "images drawn from each model for the report (0 = none)", range="[0, 256]")
    eval_batch: int = option(500, "images per forward pass when scoring", range="[1, 100000]")

    def check(self) -> None:
        super().check()
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or len(set(self.models)) < len(self.models):
            raise UserError(f"--models must be distinct names among {', '.join(MODELS)}; got {','.join(self.models)}")
        for flag, k in (("--kernel-size", self.kernel_size), ("--hidden-kernel-size", self.hidden_kernel_size)):
            if k % 2 == 0:
                raise UserError(f"{flag} {k} must be odd (a masked kernel is centred on its pixel)")


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: every model on 600 training images, a 2-layer network, 4 samples each
    "fast": {"limit_train": 600, "limit_test": 200, "epochs": 1, "baseline_epochs": 1, "batch_size": 32,
             "channels": 8, "num_layers": 2, "kernel_size": 3, "nade_hidden": 16, "samples": 2, "models": MODELS},
}


def build_model(cfg: PixelCNNConfig, name: str) -> torch.nn.Module:
    if name == "independent":
        return create_model("independent-bernoulli", image_size=(28, 28))
    if name == "nade":
        return create_model("nade", image_size=(28, 28), hidden=cfg.nade_hidden)
    if name == "fvsbn":
        return create_model("fvsbn", image_size=(28, 28))
    return create_model(name, channels=cfg.channels, num_layers=cfg.num_layers, kernel_size=cfg.kernel_size,
                        hidden_kernel_size=cfg.hidden_kernel_size)


@torch.no_grad()
def score(model: torch.nn.Module, x: torch.Tensor, batch: int, device: torch.device) -> dict[str, float]:
    """Mean NLL of binary images ``x`` (N, 1, H, W) in nats per image and bits per dimension, in float32."""
    model.eval()
    total = sum(float(bernoulli_nll(model(x[i : i + batch].to(device).float()).float(),
                                    x[i : i + batch].to(device).float(), "sum")) for i in range(0, len(x), batch))
    nats = total / len(x)
    return {"nll": nats, "bpd": bits_per_dim(nats, x[0].numel())}


def _fit(cfg: PixelCNNConfig, name: str, model: torch.nn.Module, train: torch.Tensor, val: torch.Tensor,
         folder: Path, ctx: RunContext) -> float:
    """Fit ``model`` (closed form, or with a Trainer in ``folder``); with ``--resume`` a finished model is loaded.
    Returns the training time in seconds."""
    if name == "independent":
        if ctx.resume and (folder / "model.safetensors").is_file():  # fitted in an earlier session
            Run(folder).load_weights(model)
            return float(Run(folder).read_json("fit.json")["train_time_s"])
        start = time.perf_counter()
        model.fit(train, alpha=cfg.smoothing)
        seconds = time.perf_counter() - start
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        Run(folder).write_json("fit.json", {"train_time_s": seconds, "smoothing": cfg.smoothing})
        return seconds
    sub = cfg if name in NETWORKS else dataclasses.replace(cfg, epochs=cfg.baseline_epochs, lr=cfg.baseline_lr)
    unused = lambda x: torch.zeros(len(x), dtype=torch.long)  # noqa: E731  (batches carry (x, y); y is unused)
    trainer = Trainer(sub, LikelihoodTask(model, ctx.device), folder,
                      TensorBatches((train, unused(train)), cfg.batch_size, cfg.seed, ctx.info),
                      {"val": EvalBatches((val, unused(val)), cfg.eval_batch, ctx.info)},
                      ctx.device, ctx.info, lambda m: ctx.main_log(f"[{name}] {m}"))
    return trainer.fit_or_load(ctx.resume)


def run(cfg: PixelCNNConfig, ctx: RunContext) -> dict[str, Any]:
    """Fit every model of ``--models`` on the binarized training images; score validation and test; sample."""
    import numpy as np

    if ctx.info.world_size > 1:
        raise UserError("the pixelcnn lab runs in one process; launch it without torchrun")
    log, folder = ctx.main_log, Run(ctx.run_dir)
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)
    train, val, test = (binarize(part.images, cfg.binarize, SPLIT_SEEDS[s])
                        for s, part in (("train", data.train), ("val", data.val), ("test", data.test)))
    folder.write_json("data.json", {**data.info(cfg.dataset), "binarize": cfg.binarize,
                                    "seeds": SPLIT_SEEDS if cfg.binarize == "stochastic" else None,
                                    "train_on": float(train.float().mean()), "test_on": float(test.float().mean())})
    log(f"{cfg.dataset}, {cfg.binarize} binarization: {len(train)} training, {len(val)} validation, "
        f"{len(test)} test images; {100 * float(train.float().mean()):.1f}% of the training pixels on")
    results: dict[str, Any] = {}
    drawn: dict[str, np.ndarray] = {}
    probs: dict[str, np.ndarray] = {"images": test[:8].float().numpy()}
    for name in cfg.models:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, name).to(ctx.device)
        seconds = _fit(cfg, name, model, train, val, ctx.run_dir / "models" / name, ctx)
        t, v = score(model, test, cfg.eval_batch, ctx.device), score(model, val, cfg.eval_batch, ctx.device)
        results[name] = {"test_nll": t["nll"], "test_bpd": t["bpd"], "val_nll": v["nll"], "val_bpd": v["bpd"],
                         "parameters": sum(p.numel() for p in model.parameters()), "train_time_s": seconds}
        log(f"{name}: test NLL {t['nll']:.2f} nats/image ({t['bpd']:.4f} bits/dim); validation {v['nll']:.2f}")
        with torch.no_grad():
            probs[name] = torch.sigmoid(model(test[:8].to(ctx.device).float()).float()).cpu().numpy()
        if cfg.samples:
            start = time.perf_counter()
            drawn[name] = sample(model, cfg.samples, (1, 28, 28), torch.Generator().manual_seed(cfg.seed),
                                 ctx.device).numpy()
            results[name]["sample_time_s"] = time.perf_counter() - start
    results["best_by_validation"] = min(cfg.models, key=lambda m: results[m]["val_nll"])
    for name, arrays in (("samples.npz", drawn), ("probabilities.npz", probs)):
        with atomic_path(ctx.run_dir / name) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    folder.write_json("results.json", results)
    log(f"report: {report(folder)}")
    return results


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data X]``: every fitted model's test NLL on the run's test split or on ``X``."""
    cfg, info = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"], cfg.data_dir)
    x = binarize(split.images, cfg.binarize, SPLIT_SEEDS["test"])
    out: dict[str, Any] = {"data": name, "n": len(x), "binarize": cfg.binarize}
    for model_name in cfg.models:
        weights = Path("models") / model_name / "model.safetensors"
        if (run / str(weights)).is_file():
            model = run.load_weights(build_model(cfg, model_name), str(weights)).to(device)
            s = score(model, x, cfg.eval_batch, device)
            out[f"{model_name}_nll"], out[f"{model_name}_bpd"] = round(s["nll"], 3), round(s["bpd"], 5)
    run.write_eval(name, out)
    return out


def _grid(rows: list[tuple[str, Any]], path: Path, cols: int) -> None:
    """One row of grey images per (label, images (N, 1, H, W)) pair."""
    fig = new_figure(1.1 * cols + 0.8, 1.1 * len(rows))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c < len(images):
                ax.imshow(images[c, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    save_figure(fig, path)


def _seconds(t: float) -> str:
    return f"{t:,.0f} s" if t >= 10 else f"{t:.2f} s"


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its figures from the run folder."""
    import numpy as np

    cfg, res, info = run.config, run.read_json("results.json"), run.read_json("data.json")
    names = [m for m in cfg.models if m in res]
    best = res.get("best_by_validation")
    rows = [[f"**{m}**" if m == best else m, f"{res[m]['test_nll']:.2f}", f"{res[m]['test_bpd']:.4f}",
             f"{res[m]['val_nll']:.2f}", f"{res[m]['parameters']:,}", _seconds(res[m]["train_time_s"])]
            for m in names]
    fig = new_figure(6.5, 4)
    axes = fig.subplots()
    for m in names:
        path = run / f"models/{m}/metrics.csv"
        history = read_metrics_csv(path) if path.is_file() else []
        if history:
            line, = axes.plot(range(1, len(history) + 1), [float(r["val_loss"]) for r in history], marker="o",
                              label=f"{m} (validation)")
            axes.plot(range(1, len(history) + 1), [float(r["train_loss"]) for r in history], "--",
                      color=line.get_color(), label=f"{m} (training)")
        else:  # fitted in closed form: one level
            axes.axhline(res[m]["val_nll"], color="grey", ls=":", label=f"{m} (validation)")
    axes.set_xlabel("epoch")
    axes.set_ylabel("NLL (nats per image)")
    axes.legend(fontsize=7)
    save_figure(fig, run / "nll_curves.png")
    body = Report(run, f"{NAME}: autoregressive models of binarized {cfg.dataset}",
                  intro=f"{info['n_train']} training, {info['n_val']} validation and {info['n_test']} test images, "
                        f"{cfg.binarize} binarization ({100 * info['train_on']:.1f}% of the training pixels on). "
                        f"Lower is better; the best model by validation NLL is in bold (the test split chooses "
                        f"nothing). The PixelCNNs: {cfg.channels} channels, 1 + {cfg.num_layers} layers, "
                        f"{cfg.epochs} epochs.")
    body.results(rows, headers=["model", "test NLL (nats/image)", "test bits/dim", "validation NLL",
                                "parameters", "training time"])
    body.baselines([["PixelCNN, binarized MNIST (van den Oord et al. 2016, Table 4)", "81.30 nats"],
                    ["NADE, binarized MNIST (Larochelle & Murray 2011, Table 2)", "88.86 nats"],
                    ["FVSBN, binarized MNIST (Larochelle & Murray 2011, Table 2)", "97.45 nats"]],
                   note="Published numbers, for scale only: other data (full 60,000-digit MNIST, its own "
                        "binarization), larger networks and budgets.")
    body.figure("NLL per epoch", "nll_curves.png")
    if (run / "samples.npz").is_file():
        samples = np.load(run / "samples.npz")
        if samples.files:
            _grid([(m, samples[m]) for m in names if m in samples.files], run / "samples.png",
                  max(len(samples[f]) for f in samples.files))
            body.figure("Samples, drawn pixel by pixel", "samples.png")
    probs = np.load(run / "probabilities.npz")
    _grid([("test image", probs["images"])] + [(m, probs[m]) for m in names
                                                if m in probs.files], run / "probabilities.png", 8)
    body.figure("Test images and each model's per-pixel probability", "probabilities.png",
                note="Each pixel's probability given the pixels before it (white: surely on).")
    return body.write()


LAB = Lab(name=NAME, default_dataset="fashion-mnist", metric="test NLL (nats per image) per model",
          summary="autoregressive image models: independent pixels, FVSBN, NADE, PixelCNN, gated PixelCNN",
          source="EE-559 autoregression; van den Oord et al. 2016 (PixelCNN, gated PixelCNN)",
          config_cls=PixelCNNConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
