"""Lab ``gan-toy``: Fleuret's 2-D GAN on 8 Gaussians on a ring and 25 on a grid, five objectives, mode collapse.

EE-559 11-1 "Adversarial Networks" (Fleuret's toy GAN in the notes: MLPs for G and D, Adam, alternating updates)
and 11-2 "Wasserstein GAN" (WGAN, spectral normalization); ML2021 "GAN (2): theory and WGAN" (JS divergence, the
Wasserstein distance) and "GAN (3): evaluation" (quality, diversity, mode collapse and mode dropping).

Data: the mixtures of :mod:`deepnotes.data.toy2d`, drawn afresh for every batch (the benchmark's infinite data):
``ring`` (Metz et al. 2017: 8 modes on a circle of radius 2, std 0.02) and ``grid`` (VEEGAN / PacGAN: 25 modes on
``{-4, -2, 0, 2, 4}^2``, std 0.05).

Models: Fleuret's MLPs widened and deepened a little for the 25 modes (``--hidden`` units, ``--depth`` hidden
ReLU layers each; z ~ N(0, I) of ``--z-dim``), the same for every variant. Variants (:data:`VARIANTS`):

* ``minimax``: Goodfellow et al. 2014, G minimizes ``E[log(1 - D(G(z)))]`` (Fleuret's code);
* ``nonsaturating``: G minimizes ``-E[log D(G(z))]``;
* ``wgan-clip``: Arjovsky et al. 2017, critic loss ``E[f(fake)] - E[f(real)]``, weights clipped to
  ``[-c, c]`` after every critic update, ``--n-critic`` critic updates per generator update, RMSprop;
* ``wgan-gp``: Gulrajani et al. 2017, the same critic loss plus ``lambda E[(||grad f(x_hat)|| - 1)^2]`` on
  per-sample interpolates, ``--n-critic`` updates, Adam(beta1 0.5, beta2 0.9) as in the paper, ``lambda`` =
  ``--gp-weight`` 0.1 as in the paper's code for its toy mixtures ("smaller lambda seems to help for toy tasks"; 10
  for images);
* ``sngan``: Miyato et al. 2018, spectral normalization (:mod:`deepnotes.nn.spectral`) on every layer of D, with
  the paper's hinge recipe: hinge loss, ``--sn-n-critic`` 5 D updates per G update, Adam (0, 0.9). With
  ``--sn-loss nonsaturating --sn-n-critic 1 --sn-betas 0.5,0.999`` the only difference from ``nonsaturating`` is
  the Lipschitz constraint on D, a pair that isolates what spectral normalization does (it dropped more modes on
  the grid: docs/labs/gan-toy.md).

Every model trains through :class:`deepnotes.train.Trainer` with :class:`deepnotes.train.gan.GANTask` (manual
optimization with two named optimizers, ``generator`` and ``discriminator``): a Trainer "update" is one generator
update preceded by its discriminator updates; an epoch is ``--steps-per-epoch`` updates, after which the model's
samples are scored (VEEGAN's protocol, :func:`deepnotes.data.toy2d.mode_metrics`, on ``--n-samples`` samples from a
fixed z) and saved as a density snapshot; each model keeps its Trainer folder, so ``--resume`` continues where it
stopped.

Files it leaves in the run folder (beside config.json):
    models/<dataset>/<variant>-seed<k>/   metrics.csv, checkpoints/, model.safetensors, snapshots/epoch-NNN.safetensors
                                          (the generated samples after every epoch), result.json
    results.json                          per dataset and variant: modes captured and high-quality share (mean, std,
                                          per seed, per epoch), the checks
    report.md + *.png                     snapshots_<dataset>.png, modes_over_training.png

Over 400 lines: five GAN variants on two mixtures, a per-epoch snapshot callback and two figure builders. The
losses, spectral norm and metrics live in :mod:`deepnotes.nn.gan`, :mod:`deepnotes.nn.spectral` and
:mod:`deepnotes.data.toy2d`; the training step (:class:`~deepnotes.train.gan.GANTask`) and the variants' record
(:class:`~deepnotes.train.gan.GANVariant`) in :mod:`deepnotes.train.gan`, shared with the Fashion-MNIST ``gan`` lab.
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

from deepnotes.data.toy2d import MIXTURES, Mixture2D, get_mixture, mode_metrics, sample_mixture
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.nn.spectral import spectral_norm
from deepnotes.report import new_figure, save_figure
from deepnotes.train import Callback, Trainer
from deepnotes.train.batches import seed_for
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.gan import GANTask, GANVariant

NAME = "gan-toy"


VARIANTS: dict[str, GANVariant] = {
    "minimax": GANVariant("minimax GAN", "minimax", source="Goodfellow et al. 2014; Fleuret's EE-559 code"),
    "nonsaturating": GANVariant("non-saturating GAN", "nonsaturating", source="Goodfellow et al. 2014, section 3"),
    "wgan-clip": GANVariant("WGAN (clipping)", "wasserstein", repeat_critic=True, clip=True, optimizer="rmsprop",
                         source="Arjovsky et al. 2017 (RMSprop, c = 0.01, 5 critic updates)"),
    "wgan-gp": GANVariant("WGAN-GP", "wasserstein", repeat_critic=True, gp=True, betas=(0.5, 0.9),
                          source="Gulrajani et al. 2017 (Adam (0.5, 0.9); lambda 0.1, their toy code's; 5 critic "
                                 "updates)"),
    "sngan": GANVariant("SN-GAN", "hinge", spectral=True, betas=(0.0, 0.9),
                        source="Miyato et al. 2018 (hinge loss; 5 D updates, Adam (0, 0.9))"),
}


@dataclass(frozen=True)
class GanToyConfig(TrainConfig):
    seed: int = option(0, "unused: every model's weights, data and noise come from its seed in --seeds")
    epochs: int = option(10, "epochs per model; the samples are scored and saved after every epoch")
    steps_per_epoch: int = option(250, "generator updates per epoch (each after its discriminator updates)",
                                  range="[1, 1000000]")
    batch_size: int = option(256, "real and generated samples per discriminator or generator update")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "unused: the variants set their optimizers (Adam; RMSprop "
                                                "for wgan-clip)")
    lr: float = option(1e-3, "learning rate of G and D, every variant (Fleuret's 1e-3)")
    momentum: float = option(0.5, "Adam's beta1 (DCGAN's 0.5); wgan-gp uses (0.5, 0.9), sngan --sn-betas")
    weight_decay: float = option(0.0, "unused (no weight decay in GAN training)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "constant", "learning-rate schedule over all updates")
    warmup: float = option(0.0, "share of all updates warming the learning rate up")
    datasets: tuple[str, ...] = option(tuple(MIXTURES), f"mixtures (comma-separated) from: {', '.join(MIXTURES)}",
                                       nonempty=True)
    variants: tuple[str, ...] = option(tuple(VARIANTS), f"GAN variants from: {', '.join(VARIANTS)}", nonempty=True)
    seeds: tuple[int, ...] = option((0, 1, 2), "seeds; every variant is trained once per seed and dataset",
                                    range="[0, 2147483647]", nonempty=True)
    z_dim: int = option(8, "dimension of the generator's Gaussian input (Fleuret: 8)", range="[1, 1024]")
    hidden: int = option(128, "units of every hidden layer of G and D (Fleuret: 100)", range="[1, 4096]")
    depth: int = option(2, "hidden ReLU layers of G and of D (Fleuret: 1)", range="[1, 8]")
    n_critic: int = option(5, "critic updates per generator update for wgan-clip and wgan-gp (the papers: 5)",
                           range="[1, 100]")
    clip_value: float = option(0.01, "wgan-clip's weight clipping c (Arjovsky et al.: 0.01)", range="(0, 10]")
    gp_weight: float = option(0.1, "wgan-gp's penalty weight lambda (Gulrajani et al.'s toy code: 0.1; images: 10)",
                              range="[0, 1000]")
    sn_loss: Literal["nonsaturating", "hinge"] = option(
        "hinge", "sngan's loss: hinge (Miyato et al.) or nonsaturating (with --sn-n-critic 1 --sn-betas 0.5,0.999: "
        "the nonsaturating GAN plus spectral norm)")
    sn_n_critic: int = option(5, "sngan's discriminator updates per generator update (Miyato et al.: 5)",
                              range="[1, 100]")
    sn_betas: tuple[float, float] = option((0.0, 0.9), "sngan's Adam betas (Miyato et al.: 0, 0.9)", range="[0, 1)")
    n_samples: int = option(2500, "generated samples scored per snapshot (the protocol: 2,500)", range="[10, 1000000]")
    min_count: int = option(1, "high-quality samples a mode needs to be captured (VEEGAN's protocol: 1)",
                            range="[1, 1000000]")

    def check(self) -> None:
        super().check()
        for name, values, known in (("--datasets", self.datasets, MIXTURES), ("--variants", self.variants, VARIANTS)):
            bad = [v for v in values if v not in known]
            if bad:
                raise UserError(f"{name}: unknown {', '.join(bad)}; choose from {', '.join(known)}")
        if len(set(self.datasets)) < len(self.datasets) or len(set(self.variants)) < len(self.variants) \
                or len(set(self.seeds)) < len(self.seeds):
            raise UserError("--datasets, --variants and --seeds must not repeat a value")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 2, "steps_per_epoch": 15, "batch_size": 64, "seeds": (0,), "datasets": ("ring",),
             "n_samples": 500, "hidden": 32, "n_critic": 2, "sn_n_critic": 3},
}


# ------------------------------------------------------------------------------------------------- models
def mlp(n_in: int, hidden: int, n_out: int, depth: int, spectral: bool = False,
        generator: torch.Generator | None = None) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``hidden`` units (Fleuret's G and D have one of 100); every linear layer
    spectrally normalized when ``spectral`` (its power iteration's start drawn from ``generator``)."""
    layers: list[nn.Module] = []
    sizes = [n_in] + [hidden] * depth + [n_out]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        layers.append(spectral_norm(linear, generator=generator) if spectral else linear)
        if i < depth:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_gan(cfg: GanToyConfig, variant: str, seed: int) -> nn.ModuleDict:
    """``{"generator": z -> x (2-D), "discriminator": x -> one logit or score}``, initialized from ``seed``."""
    torch.manual_seed(seed)  # torch's default initialization of nn.Linear draws from the global generator
    gen = torch.Generator().manual_seed(seed_for(seed, 7))
    return nn.ModuleDict({
        "generator": mlp(cfg.z_dim, cfg.hidden, 2, cfg.depth),
        "discriminator": mlp(2, cfg.hidden, 1, cfg.depth, spectral=VARIANTS[variant].spectral, generator=gen),
    })


# ------------------------------------------------------------------------------------------------- training
class MixtureBatches:
    """Fresh real samples for every update: ``(n_critic, B, 2)`` per update, epoch ``e`` drawn from a generator
    seeded by ``(seed, e)`` only (so a resumed run draws the same ones).

    Args:
        mixture: the data. batch_size: B. n_critic: discriminator updates per update. steps: updates per epoch.
        seed: the data seed.
    """

    def __init__(self, mixture: Mixture2D, batch_size: int, n_critic: int, steps: int, seed: int):
        self.mixture, self.batch_size, self.n_critic, self.steps, self.seed = mixture, batch_size, n_critic, steps, seed

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(seed_for(self.seed, epoch, 2))
        for _ in range(self.steps):
            x, _ = sample_mixture(self.mixture, self.n_critic * self.batch_size, g)
            yield x.view(self.n_critic, self.batch_size, 2)  # (n_critic, B, 2)


def fixed_noise(cfg: GanToyConfig, seed: int) -> torch.Tensor:
    """The z of every snapshot of the model trained with ``seed``: (n_samples, z_dim)."""
    return torch.randn(cfg.n_samples, cfg.z_dim, generator=torch.Generator().manual_seed(seed_for(seed, 11)))


class Snapshots(Callback):
    """After every epoch: the generator's samples of a fixed z, scored (row keys ``modes``, ``high_quality``,
    ``effective_modes``) and saved to ``folder/epoch-NNN.safetensors``."""

    def __init__(self, generator: nn.Module, z: torch.Tensor, mixture: Mixture2D, min_count: int, folder: Path):
        self.generator, self.z, self.mixture, self.min_count, self.folder = generator, z, mixture, min_count, folder

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        with torch.no_grad():
            x = self.generator(self.z.to(trainer.device)).float().cpu().contiguous()
        m = mode_metrics(x, self.mixture.means, self.mixture.std, min_count=self.min_count)
        row.update(modes=m["modes"], high_quality=m["high_quality"], effective_modes=m["effective_modes"])
        if trainer.info.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.folder / f"epoch-{row['epoch']:03d}.safetensors") as tmp:
                save_file({"samples": x}, str(tmp))


def variant_of(cfg: GanToyConfig, variant: str) -> GANVariant:
    """The :data:`VARIANTS` entry, with ``--sn-loss`` and ``--sn-betas`` for the spectrally normalized variant."""
    v = VARIANTS[variant]
    return dataclasses.replace(v, loss=cfg.sn_loss, betas=cfg.sn_betas) if v.spectral else v


def model_dir(dataset: str, variant: str, seed: int) -> str:
    return f"models/{dataset}/{variant}-seed{seed}"


def train_model(cfg: GanToyConfig, dataset: str, variant: str, seed: int, ctx: RunContext) -> None:
    """Train one GAN into its folder (kept when a resumed run finished it); write its result.json."""
    folder = ctx.run_dir / model_dir(dataset, variant, seed)
    tag = f"[{dataset} {variant} seed {seed}]"
    if ctx.resume and (folder / "result.json").is_file():
        ctx.main_log(f"{tag} finished in an earlier session; kept")
        return
    v, mixture = variant_of(cfg, variant), get_mixture(dataset)
    model = build_gan(cfg, variant, seed).to(ctx.device)
    n_critic = cfg.n_critic if v.repeat_critic else cfg.sn_n_critic if v.spectral else 1
    task = GANTask(model, v, cfg.z_dim, cfg.lr, cfg.momentum, cfg.clip_value, cfg.gp_weight)
    z = fixed_noise(cfg, seed)
    trainer = Trainer(dataclasses.replace(cfg, seed=seed), task, folder,
                      MixtureBatches(mixture, cfg.batch_size, n_critic, cfg.steps_per_epoch, seed), {}, ctx.device,
                      ctx.info, ctx.main_log,
                      callbacks=[Snapshots(model["generator"], z, mixture, cfg.min_count, folder / "snapshots")])
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    ctx.main_log(f"{tag} training")
    trainer.fit()
    if ctx.info.is_main:
        with torch.no_grad():
            x = model["generator"](z.to(ctx.device)).float().cpu()
        m = mode_metrics(x, mixture.means, mixture.std, min_count=cfg.min_count)
        Run(folder).write_json("result.json", {
            "dataset": dataset, "variant": variant, "seed": seed, **m, "n_modes": mixture.n_modes,
            "curve_modes": [r["modes"] for r in trainer.history],
            "curve_high_quality": [r["high_quality"] for r in trainer.history],
            "generator_updates": trainer.step, "discriminator_updates": trainer.step * n_critic,
            "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history)})


# ------------------------------------------------------------------------------------------------- summary
def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def collapse_seen(curve: list[int], n_modes: int) -> bool:
    """Mode collapse in one run: the final snapshot drops modes, or the modes captured fall back by >= 1 between
    snapshots (the generator moving from mode to mode instead of covering them)."""
    return curve[-1] < n_modes or any(b < a for a, b in zip(curve[:-1], curve[1:]))


def summarize(run: Run, cfg: GanToyConfig) -> dict[str, Any]:
    """results.json from the models' result.json files, with the issue's two checks per dataset."""
    out: dict[str, Any] = {"seeds": list(cfg.seeds), "datasets": {}}
    for dataset in cfg.datasets:
        rows: dict[str, Any] = {}
        n_modes = get_mixture(dataset).n_modes
        for variant in cfg.variants:
            res = [run.read_json(f"{model_dir(dataset, variant, s)}/result.json") for s in cfg.seeds]
            modes, hq = [r["modes"] for r in res], [r["high_quality"] for r in res]
            (m_mean, m_std), (q_mean, q_std) = mean_std(modes), mean_std(hq)
            rows[variant] = {
                "modes": modes, "modes_mean": m_mean, "modes_std": m_std, "high_quality": hq,
                "high_quality_mean": q_mean, "high_quality_std": q_std,
                "effective_modes_mean": statistics.fmean(r["effective_modes"] for r in res),
                "curve_modes": [statistics.fmean(c) for c in zip(*(r["curve_modes"] for r in res))],
                "collapse_runs": sum(collapse_seen(r["curve_modes"], n_modes) for r in res),
                "train_time_s": sum(r["train_time_s"] for r in res)}
        row: dict[str, Any] = {"n_modes": n_modes, "variants": rows}
        if "minimax" in rows:
            mm = rows["minimax"]
            row["minimax_collapse"] = mm["modes_mean"] < n_modes or mm["collapse_runs"] > 0
            for other in ("wgan-gp", "sngan"):
                if other in rows:
                    row[f"{other}_fewer_dropped"] = rows[other]["modes_mean"] > mm["modes_mean"]
        out["datasets"][dataset] = row
    checks = [r for r in out["datasets"].values() if "minimax_collapse" in r]
    if checks:
        out["minimax_collapse"] = all(r["minimax_collapse"] for r in checks)
        pairs = [r[k] for r in checks for k in ("wgan-gp_fewer_dropped", "sngan_fewer_dropped") if k in r]
        out["fewer_dropped_than_minimax"] = bool(pairs) and all(pairs)
    return out


def run(cfg: GanToyConfig, ctx: RunContext) -> dict[str, Any]:
    """``deepnotes run gan-toy``: every variant per dataset and seed, the summary, the report."""
    for dataset in cfg.datasets:
        for seed in cfg.seeds:
            for variant in cfg.variants:
                train_model(cfg, dataset, variant, seed, ctx)
    if not ctx.info.is_main:
        return {}
    run_folder = Run(ctx.run_dir)
    results = summarize(run_folder, cfg)
    run_folder.write_json("results.json", results)
    ctx.log("modes captured (mean over seeds): " + "; ".join(
        f"{d}: " + ", ".join(f"{v} {r['variants'][v]['modes_mean']:.1f}/{r['n_modes']}" for v in cfg.variants)
        for d, r in results["datasets"].items()) + f"; report: {report(run_folder)}")
    return {f"{d} {v} modes": r["variants"][v]["modes_mean"] for d, r in results["datasets"].items()
            for v in cfg.variants}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data ring|grid]``: every saved generator re-scored on ``n_samples`` fresh z (a seed
    the run never used), on its own mixture (``--data`` picks one of the run's mixtures)."""
    cfg = run.config
    datasets = cfg.datasets if data is None else (data,)
    for d in datasets:
        if d not in cfg.datasets:
            raise UserError(f"--data {d}: this run trained on {', '.join(cfg.datasets)}; a GAN is scored against the "
                            f"mixture it learned")
    metrics: dict[str, Any] = {"data": ",".join(datasets) + " (fresh z)", "samples": cfg.n_samples}
    for d in datasets:
        mixture = get_mixture(d)
        for variant in cfg.variants:
            modes, hq = [], []
            for s in cfg.seeds:
                model = run.load_weights(build_gan(cfg, variant, s), f"{model_dir(d, variant, s)}/model.safetensors")
                z = torch.randn(cfg.n_samples, cfg.z_dim, generator=torch.Generator().manual_seed(seed_for(s, 13)))
                with torch.no_grad():
                    x = model.eval().to(device)["generator"](z.to(device)).cpu()
                m = mode_metrics(x, mixture.means, mixture.std, min_count=cfg.min_count)
                modes.append(m["modes"])
                hq.append(m["high_quality"])
            metrics[f"{d} {variant} modes"] = statistics.fmean(modes)
            metrics[f"{d} {variant} high quality"] = statistics.fmean(hq)
    run.write_eval("fresh-z", metrics)
    return metrics


# ------------------------------------------------------------------------------------------------- report
def _picked_epochs(folder: Path, k: int = 5) -> list[int]:
    epochs = sorted(int(p.stem.split("-")[1]) for p in folder.glob("epoch-*.safetensors"))
    return sorted({epochs[round(i * (len(epochs) - 1) / (k - 1))] for i in range(k)}) if epochs else []


def plot_snapshots(run: Run, cfg: GanToyConfig, dataset: str) -> str:
    """snapshots_<dataset>.png: samples of every variant (rows) after several epochs (columns), first seed, over the
    true modes; its file name."""
    mixture, seed = get_mixture(dataset), cfg.seeds[0]
    epochs = _picked_epochs(run / model_dir(dataset, cfg.variants[0], seed) / "snapshots")
    lim = float(mixture.means.abs().max()) + 1.5
    fig = new_figure(2.3 * max(1, len(epochs)), 2.3 * len(cfg.variants))
    axes = fig.subplots(len(cfg.variants), max(1, len(epochs)), squeeze=False)
    for i, variant in enumerate(cfg.variants):
        folder = run / model_dir(dataset, variant, seed) / "snapshots"
        for j, epoch in enumerate(epochs):
            ax = axes[i][j]
            x = load_file(str(folder / f"epoch-{epoch:03d}.safetensors"))["samples"]
            m = mode_metrics(x, mixture.means, mixture.std, min_count=cfg.min_count)
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.25, color="tab:blue", rasterized=True)
            ax.scatter(mixture.means[:, 0], mixture.means[:, 1], s=12, marker="x", color="tab:red", linewidths=0.8)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"epoch {epoch}: {m['modes']}/{mixture.n_modes}, {100 * m['high_quality']:.0f}% HQ",
                         fontsize=7)
            if j == 0:
                ax.set_ylabel(VARIANTS[variant].label, fontsize=8)
    fig.suptitle(f"{dataset}: generated samples (blue) over the {mixture.n_modes} modes (red), seed {seed}",
                 fontsize=9)
    png = f"snapshots_{dataset}.png"
    save_figure(fig, run / png)
    return png


def plot_modes_curves(run: Run, cfg: GanToyConfig, res: dict[str, Any]) -> str:
    """modes_over_training.png: modes captured per epoch (mean over seeds), one panel per dataset."""
    datasets = [d for d in cfg.datasets if d in res["datasets"]]
    fig = new_figure(4.2 * len(datasets), 3.2)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, d in zip(axes, datasets):
        row = res["datasets"][d]
        for variant in cfg.variants:
            curve = row["variants"][variant]["curve_modes"]
            ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=VARIANTS[variant].label)
        ax.axhline(row["n_modes"], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("modes captured (mean over seeds)")
        ax.set_title(d, fontsize=9)
    axes[0].legend(fontsize=7)
    save_figure(fig, run / "modes_over_training.png")
    return "modes_over_training.png"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from results.json and the snapshots."""
    cfg, res = run.config, run.read_json("results.json")
    datasets = [d for d in cfg.datasets if d in res["datasets"]]
    n = len(cfg.seeds)
    report_ = Report(run, f"{NAME}: five GAN objectives on 2-D Gaussian mixtures", intro=(
        f"EE-559 11-1/11-2 (Fleuret's toy GAN, WGAN, spectral normalization); ML2021 GAN lectures 2-3 (JS "
        f"divergence, WGAN, mode collapse and mode dropping). Mixtures: "
        f"{', '.join(get_mixture(d).source for d in datasets)}. "
        f"G and D: MLPs with {cfg.depth} hidden ReLU layer(s) of {cfg.hidden} units, z ~ N(0, I_{cfg.z_dim}); "
        f"{cfg.epochs} x {cfg.steps_per_epoch} generator updates of batch {cfg.batch_size} (WGANs: {cfg.n_critic} "
        f"critic updates each; SN-GAN: {cfg.sn_loss} loss, {cfg.sn_n_critic} D updates each, Adam betas "
        f"{tuple(cfg.sn_betas)}), {n} seed(s). Metrics (VEEGAN's protocol) on "
        f"{cfg.n_samples} samples: a sample is "
        f"high quality within 3 std of its nearest mode; a mode is captured by >= {cfg.min_count} high-quality "
        f"sample(s)."))
    rows = []
    for d in datasets:
        r = res["datasets"][d]
        for variant in cfg.variants:
            v = r["variants"][variant]
            rows.append([d, VARIANTS[variant].label, f"{v['modes_mean']:.1f} ± {v['modes_std']:.1f} / {r['n_modes']}",
                         f"{100 * v['high_quality_mean']:.1f}% ± {100 * v['high_quality_std']:.1f}",
                         f"{v['effective_modes_mean']:.1f}", f"{v['collapse_runs']}/{n}"])
    checks = []
    for d in datasets:
        r = res["datasets"][d]
        if "minimax_collapse" in r:
            checks.append(f"{d}: mode collapse visible and measured for the minimax GAN: "
                          f"**{yes_no(r['minimax_collapse'])}**")
            for other, label in (("wgan-gp", "WGAN-GP"), ("sngan", "SN-GAN")):
                if f"{other}_fewer_dropped" in r:
                    checks.append(f"{d}: fewer dropped modes with {label} than with minimax: "
                                  f"**{yes_no(r[f'{other}_fewer_dropped'])}**")
    report_.results(rows, headers=("dataset", "variant", "modes captured", "high-quality samples",
                                   "effective modes", "runs with collapse"),
                    note=f"Mean ± standard deviation over {n} seed(s), after the last epoch. Effective modes: "
                         "exp(entropy) of the high-quality samples' distribution over the modes (K when spread "
                         "evenly, 1 when collapsed onto one). A run shows collapse when its last snapshot misses "
                         "modes or its modes captured fall between snapshots.\n\n" + "\n".join(
                             f"- {c}" for c in checks))
    for d in datasets:
        report_.figure(f"Density snapshots over training: {d}", plot_snapshots(run, cfg, d))
    report_.figure("Modes captured over training", plot_modes_curves(run, cfg, res))
    report_.table("Per seed", ["dataset", "variant", "source", *(f"modes, seed {s}" for s in cfg.seeds),
                               *(f"HQ, seed {s}" for s in cfg.seeds), "training time (all seeds)"],
                  [[d, VARIANTS[v].label, VARIANTS[v].source, *res["datasets"][d]["variants"][v]["modes"],
                    *(f"{100 * q:.1f}%" for q in res["datasets"][d]["variants"][v]["high_quality"]),
                    f"{res['datasets'][d]['variants'][v]['train_time_s']:.0f} s"] for d in datasets
                   for v in cfg.variants])
    return report_.write()


LAB = Lab(
    name=NAME,
    summary="minimax, non-saturating, WGAN, WGAN-GP and SN-GAN on 8 and 25 Gaussians: modes captured, sample quality",
    source="EE-559 11-1/11-2 (Fleuret's toy GAN); ML2021 GAN lectures; VEEGAN's protocol",
    default_dataset="ring",
    metric="modes captured and high-quality share per variant",
    config_cls=GanToyConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
