"""Lab ``autoencoder``: AE, denoising AE, VAE, VQ-VAE and a Gumbel-softmax discrete VAE on Fashion-MNIST.

Sources: ML2021 auto-encoder lectures (the code as a compressed representation; de-noising; the self-supervised
view: the encoder's code for a downstream task) and seed 004's digests of reparameterization and Gumbel-softmax;
EE-559 lecture 7 (autoencoders, VAE). Papers: Vincent et al. 2008, Kingma & Welling 2014, van den Oord et al. 2017,
Jang et al. 2017 / Maddison et al. 2017. The networks: :mod:`deepnotes.nn.autoencoder`, :mod:`deepnotes.nn.vae`,
:mod:`deepnotes.nn.vq`, :mod:`deepnotes.nn.gumbel`; their tasks, scores and latent walks:
:mod:`deepnotes.models.autoencoder`.

Every model has the same conv encoder and decoder (Bernoulli likelihood on pixels in [0, 1], or on binarized pixels
with ``--binarize``) and the same budget (epochs, batch, learning rate). Latents: 16 real numbers for the AE, DAE and
VAE (``--latent-dim``); 16 categorical variables over 64 values for the VQ-VAE (16 code vectors, a codebook of 64)
and the Gumbel VAE (``--num-latents``, ``--num-codes``).

Files it leaves in the run folder (beside config.json):
    data.json                   dataset, split sizes
    models/<model>/             each model's Trainer folder (metrics.csv, checkpoints/, model.safetensors)
    results.json                per model: test reconstruction error (MSE per pixel, BCE nats/image), negative ELBO,
                                codebook usage and perplexity, linear-probe accuracy, training time, parameters;
                                the raw-pixel probe as the baseline row
    figures.npz                 what the figures are drawn from (reconstructions, 2-D maps, walks, prior samples)
    report.md + *.png           reconstructions.png, latent_pca.png, latent_tsne.png, interpolations.png,
                                samples.png, loss_curves.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepnotes.analysis.probing import linear_probe
from deepnotes.data.images import load_held_out, load_test_split, to_pixels
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.metrics.embeddings import project_2d
from deepnotes.models.autoencoder import (AUTOENCODERS, autoencoder_task, interpolate, latent_codes, sample_prior,
                                          score_images)
from deepnotes.models.registry import create_model
from deepnotes.nn.vq import perplexity
from deepnotes.report import new_figure, read_metrics_csv, save_figure
from deepnotes.report.explain_plots import plot_embedding, plot_image_rows
from deepnotes.train import EvalBatches, TensorBatches, TrainConfig, Trainer, option

NAME = "autoencoder"


@dataclass(frozen=True)
class AutoencoderConfig(TrainConfig):
    epochs: int = option(8, "epochs of each model over the training images")
    batch_size: int = option(128, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate of every model")
    weight_decay: float = option(0.0, "weight decay on weight matrices (codebook included when not EMA)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule over all updates (see deepnotes.train.schedule)")
    warmup: float = option(0.05, "share of all updates warming the learning rate up")
    dataset: str = option("fashion-mnist", "dataset name (see `deepnotes data list`)")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    limit_train: int = option(0, "use only the first N training images (0 = all); for smoke runs",
                              range="[0, 1000000000]")
    limit_test: int = option(0, "score only the first N test images (0 = all)", range="[0, 1000000000]")
    val_fraction: float = option(0.1, "share of the training images held out for validation (stratified)",
                                 range="(0, 0.9)")
    binarize: bool = option(False, "threshold pixels at 0.5: a Bernoulli likelihood of binary images (a true bound)")
    models: tuple[str, ...] = option(AUTOENCODERS, "models to train: ae, dae, vae, vq-vae, gumbel-vae "
                                                   "(comma-separated)", nonempty=True)
    width: int = option(16, "channels of the first convolution (the second has twice as many)", range="[1, 1024]")
    hidden: int = option(256, "units of the hidden linear layer of the encoder and the decoder", range="[1, 65536]")
    latent_dim: int = option(16, "AE, DAE, VAE: size of the code z", range="[1, 4096]")
    num_latents: int = option(16, "VQ-VAE, Gumbel VAE: categorical variables (code vectors) per image",
                              range="[1, 4096]")
    num_codes: int = option(64, "VQ-VAE codebook size K; the Gumbel VAE's categories per variable", range="[2, 65536]")
    code_dim: int = option(16, "VQ-VAE: size D of each code vector", range="[1, 4096]")
    ae_loss: Literal["bce", "mse"] = option("bce", "AE and DAE loss: Bernoulli cross-entropy or squared error")
    noise: Literal["mask", "gaussian"] = option("mask", "DAE corruption: masking noise or additive Gaussian noise")
    noise_level: float = option(0.25, "DAE: masking probability, or the Gaussian noise's std", range="[0, 1]")
    commitment_cost: float = option(0.25, "VQ-VAE: beta, weight of the commitment loss", range="[0, 100]")
    vq_ema: bool = option(True, "VQ-VAE: update the codebook by moving averages (the paper's appendix A.1)")
    vq_decay: float = option(0.99, "VQ-VAE: decay gamma of the codebook's moving averages", range="[0, 1)")
    tau0: float = option(1.0, "Gumbel VAE: temperature at the first update", range="(0, 100]")
    tau_min: float = option(0.5, "Gumbel VAE: temperature at the last update (annealed exponentially)",
                            range="(0, 100]")
    gumbel_hard: bool = option(False, "Gumbel VAE: straight-through samples (one-hot forward, soft gradient)")
    probe_train: int = option(10000, "training images whose codes train the linear probe (0 = all)",
                              range="[0, 1000000000]")
    map_points: int = option(2000, "test images on the 2-D maps (PCA, t-SNE)", range="[10, 100000]")

    def check(self) -> None:
        super().check()
        unknown = [m for m in self.models if m not in AUTOENCODERS]
        if unknown or len(set(self.models)) < len(self.models):
            raise UserError(f"--models must be distinct names among {', '.join(AUTOENCODERS)}; "
                            f"got {','.join(self.models)}")
        if self.tau_min > self.tau0:
            raise UserError(f"--tau-min {self.tau_min:g} must not exceed --tau0 {self.tau0:g}")


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: the whole pipeline on 1,500 images, 2 epochs, a narrow network
    "fast": {"limit_train": 1500, "limit_test": 300, "epochs": 2, "width": 8, "hidden": 64, "probe_train": 0,
             "map_points": 100},
}


def build_model(cfg: AutoencoderConfig, name: str, in_channels: int) -> torch.nn.Module:
    sizes = dict(in_channels=in_channels, width=cfg.width, hidden=cfg.hidden)
    kwargs = {"ae": dict(latent_dim=cfg.latent_dim), "dae": dict(latent_dim=cfg.latent_dim),
              "vae": dict(latent_dim=cfg.latent_dim),
              "vq-vae": dict(num_latents=cfg.num_latents, num_codes=cfg.num_codes, code_dim=cfg.code_dim,
                             commitment_cost=cfg.commitment_cost, ema=cfg.vq_ema, decay=cfg.vq_decay),
              "gumbel-vae": dict(num_latents=cfg.num_latents, categories=cfg.num_codes, hard=cfg.gumbel_hard)}
    return create_model(name, **sizes, **kwargs[name])


def pixels(cfg: AutoencoderConfig, images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> what the models read: pixels in [0, 1], thresholded at 0.5 with ``--binarize``."""
    x = to_pixels(images)
    return (x > 0.5).float() if cfg.binarize else x




def score_model(cfg: AutoencoderConfig, model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Mean test scores (:func:`deepnotes.models.autoencoder.score_images`) and, for the VQ-VAE, codebook usage."""
    scores = score_images(model, x, seed=cfg.seed, noise=(cfg.noise, cfg.noise_level))
    out: dict[str, Any] = {"mse": float(scores["mse"].mean()), "bce": float(scores["bce"].mean()),
                           "denoise_bce": float(scores["denoise_bce"].mean())}
    if "negative_elbo" in scores:
        out["negative_elbo"] = float(scores["negative_elbo"].mean())
    if "codes" in scores:
        used = torch.bincount(scores["codes"].reshape(-1), minlength=cfg.num_codes)
        out.update(codes_used=int((used > 0).sum()), num_codes=cfg.num_codes,
                   perplexity=float(perplexity(scores["codes"], cfg.num_codes)))
    return out


def run(cfg: AutoencoderConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every model, score the test split, probe the codes, draw the figures' data, write the report."""
    if ctx.info.world_size > 1:
        raise UserError("the autoencoder lab runs in one process; launch it without torchrun")
    log, folder = ctx.main_log, Run(ctx.run_dir)
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)
    train, val, test = data.train, data.val, data.test
    folder.write_json("data.json", {**data.info(cfg.dataset), "binarize": cfg.binarize})
    log(f"{cfg.dataset}: {len(train)} training, {len(val)} validation, {len(test)} test images")
    prep = lambda x, y, training, generator: (pixels(cfg, x).to(ctx.device), y)  # noqa: E731
    x_test = pixels(cfg, test.images)
    g = torch.Generator().manual_seed(cfg.seed)
    probe_idx = torch.randperm(len(train), generator=g)[:cfg.probe_train or len(train)]
    x_probe, y_probe = pixels(cfg, train.images[probe_idx]), train.labels[probe_idx]
    map_idx = torch.randperm(len(test), generator=g)[:cfg.map_points]
    pair = _interpolation_pair(test.labels)
    probe = lambda f_train, f_test: linear_probe(  # noqa: E731
        torch.cat([f_train, f_test]), torch.cat([y_probe, test.labels]), np.arange(len(f_train)),
        np.arange(len(f_train), len(f_train) + len(f_test)), seed=cfg.seed)
    results: dict[str, Any] = {"pixels": {"probe_acc": probe(x_probe.flatten(1), x_test.flatten(1)),
                                          "code_size": x_test[0].numel()}}
    log(f"linear probe on raw pixels: {100 * results['pixels']['probe_acc']:.2f}%")
    figures: dict[str, np.ndarray] = {"test_images": x_test[:8].numpy(), "map_labels": test.labels[map_idx].numpy(),
                                      "pair": np.array(pair), "pair_labels": test.labels[list(pair)].numpy()}
    for name in cfg.models:
        model_dir = ctx.run_dir / "models" / name
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, name, x_test.shape[1]).to(ctx.device)
        task = autoencoder_task(name, model, prep, cfg.seed, loss=cfg.ae_loss, noise=cfg.noise,
                                noise_level=cfg.noise_level, tau0=cfg.tau0, tau_min=cfg.tau_min)
        trainer = Trainer(cfg, task, model_dir, TensorBatches((train.images, train.labels), cfg.batch_size, cfg.seed,
                                                              ctx.info),
                          {"val": EvalBatches((val.images, val.labels), 1000, ctx.info)}, ctx.device, ctx.info,
                          lambda m, n=name: log(f"[{n}] {m}"))
        seconds = trainer.fit_or_load(ctx.resume)
        res = score_model(cfg, model, x_test)
        codes_test = latent_codes(model, x_test)
        res.update(probe_acc=probe(latent_codes(model, x_probe), codes_test), code_size=codes_test.shape[1],
                   train_time_s=seconds, parameters=sum(p.numel() for p in model.parameters()))
        results[name] = res
        log(f"{name}: test MSE {res['mse']:.5f}/pixel, BCE {res['bce']:.2f} nats/image"
            + (f", -ELBO {res['negative_elbo']:.2f} nats" if "negative_elbo" in res else "")
            + f", linear probe {100 * res['probe_acc']:.2f}%")
        figures[f"{name}/recon"] = torch.sigmoid(model.reconstruct(x_test[:8].to(ctx.device)).float()).detach().cpu(
        ).numpy()
        codes_map = codes_test[map_idx].numpy()
        figures[f"{name}/pca"] = project_2d(codes_map, "pca", cfg.seed)[0]
        figures[f"{name}/tsne"] = project_2d(codes_map, "tsne", cfg.seed)[0]
        figures[f"{name}/walk"] = interpolate(model, x_test[pair[0]], x_test[pair[1]], 8).numpy()
        if name in ("vae", "vq-vae", "gumbel-vae"):
            figures[f"{name}/samples"] = sample_prior(model, 8, torch.Generator().manual_seed(cfg.seed)).numpy()
    _save_npz(figures, ctx.run_dir / "figures.npz")
    folder.write_json("results.json", results)
    log(f"report: {report(folder)}")
    return results


def _interpolation_pair(labels: torch.Tensor) -> tuple[int, int]:
    """The first test image and the first one of another class."""
    other = torch.nonzero(labels != labels[0]).flatten()
    return 0, int(other[0]) if len(other) else min(1, len(labels) - 1)


def _save_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data X]``: every trained model's test scores on the run's test split or on ``X``."""
    cfg = run.config
    info = run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"], cfg.data_dir)
    x = pixels(cfg, split.images)
    out: dict[str, Any] = {"data": name, "n": len(split)}
    for model_name in cfg.models:
        weights = Path("models") / model_name / "model.safetensors"
        if not (run / str(weights)).is_file():
            continue
        model = run.load_weights(build_model(cfg, model_name, x.shape[1]), str(weights)).to(device)
        for key, value in score_model(cfg, model, x).items():
            if key in ("mse", "bce", "denoise_bce", "negative_elbo", "perplexity"):
                out[f"{model_name}_{key}"] = value
    run.write_eval(name, out)
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its figures from the run folder."""
    cfg, res, info = run.config, run.read_json("results.json"), run.read_json("data.json")
    fig = np.load(run / "figures.npz")
    names = [m for m in cfg.models if m in res]
    rows = [[m, f"{res[m]['mse']:.5f}", f"{res[m]['bce']:.1f}", _fmt(res[m].get("denoise_bce"), ".1f"),
             _fmt(res[m].get("negative_elbo"), ".1f"),
             f"{res[m]['codes_used']} / {res[m]['num_codes']} ({res[m]['perplexity']:.1f})" if "perplexity" in res[m]
             else "-", f"{100 * res[m]['probe_acc']:.2f}%", res[m]["code_size"], f"{res[m]['parameters']:,}",
             f"{res[m]['train_time_s']:.0f} s"] for m in names]
    rows.append(["raw pixels", "-", "-", "-", "-", "-", f"{100 * res['pixels']['probe_acc']:.2f}%",
                 res["pixels"]["code_size"], "-", "-"])
    classes = info["classes"]
    plot_image_rows({"test": torch.from_numpy(fig["test_images"]),
                     **{m: torch.from_numpy(fig[f"{m}/recon"]) for m in names}}, run / "reconstructions.png",
                    title="test images and each model's reconstruction")
    for method, title in (("pca", "PCA"), ("tsne", "t-SNE")):
        plot_embedding({m: fig[f"{m}/{method}"] for m in names}, fig["map_labels"], classes,
                       run / f"latent_{method}.png", title=f"{title} of the test codes, coloured by class")
    plot_image_rows({m: torch.from_numpy(fig[f"{m}/walk"]) for m in names}, run / "interpolations.png",
                    title="from test image {} ({}) to test image {} ({})".format(
                        *[v for i in (0, 1) for v in (int(fig["pair"][i]), classes[int(fig["pair_labels"][i])])]))
    sampled = [m for m in names if f"{m}/samples" in fig]
    if sampled:
        plot_image_rows({m: torch.from_numpy(fig[f"{m}/samples"]) for m in sampled}, run / "samples.png",
                        title="decoded samples of the prior")
    plot = new_figure(6, 4)
    axes = plot.subplots()
    for m in names:
        rows_csv = read_metrics_csv(run / f"models/{m}/metrics.csv")
        axes.plot([r["epoch"] for r in rows_csv], [r["val_loss"] for r in rows_csv], marker="o", label=m)
    axes.set(xlabel="epoch", ylabel="validation loss (nats per image)", title="each model's own objective")
    axes.legend()
    save_figure(plot, run / "loss_curves.png")
    likelihood = "binarized pixels (> 0.5)" if cfg.binarize else "grey levels in [0, 1] (a cross-entropy, see docs)"
    report = (Report(run, f"{NAME}: {len(names)} auto-encoders on {cfg.dataset}",
                     intro=f"Each model trained {cfg.epochs} epochs on {info['n_train']} images (Bernoulli decoder on "
                           f"{likelihood}); scores on {info['n_test']} test images. The linear probe is "
                           f"scikit-learn's logistic regression on the codes of {cfg.probe_train or info['n_train']} "
                           "training images.")
              .results(rows, headers=["model", "test MSE / pixel", "test BCE (nats / image)",
                                      f"BCE from {cfg.noise}-noised input ({cfg.noise_level:g})",
                                      "test -ELBO (nats / image)", "codes used (perplexity)", "linear probe",
                                      "code size", "parameters", "training time"])
              .baselines([["course baseline", "none published"]])
              .figure("Reconstructions (first row: test images)", "reconstructions.png")
              .figure("2-D maps of the codes: PCA", "latent_pca.png")
              .figure("2-D maps of the codes: t-SNE", "latent_tsne.png")
              .figure("Walks between two test images in each code space", "interpolations.png"))
    if sampled:
        report = report.figure("Samples of the prior", "samples.png",
                               note="VQ-VAE: uniform codes; its real prior is learned afterwards (a PixelCNN).")
    return report.figure("Validation loss per epoch", "loss_curves.png").write()


LAB = Lab(name=NAME, default_dataset="fashion-mnist", metric="test reconstruction, -ELBO and linear probe per model",
          summary="AE, denoising AE, VAE, VQ-VAE and Gumbel-softmax VAE: reconstructions, ELBO, codes as features",
          source="ML2021 auto-encoder lectures; EE-559 autoencoders; seed 004 reparameterization and Gumbel-softmax",
          config_cls=AutoencoderConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
