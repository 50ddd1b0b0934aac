"""Lab ``gan``: DCGAN, WGAN-GP, SN-GAN and a class-conditional GAN on Fashion-MNIST, scored as in the lecture.

Sources: EE-559 11-1/11-2 (DCGAN, WGAN, spectral normalization); ML2021 "GAN (1)-(4)" (the game, WGAN, evaluation
by a classifier: quality, diversity, mode collapse and dropping, FID, memorization; conditional generation). Papers:
Radford et al. 2016 (DCGAN), Gulrajani et al. 2017 (WGAN-GP), Miyato et al. 2018 (SN-GAN, hinge loss), Miyato &
Koyama 2018 (projection discriminator, conditional batch norm), Odena et al. 2017 (AC-GAN), Heusel et al. 2017
(FID), Salimans et al. 2016 (IS).

Variants (:data:`VARIANTS`; networks :mod:`deepnotes.models.gan`, the game :class:`deepnotes.train.gan.GANTask`):
``dcgan`` (batch norm in G and D, non-saturating loss), ``wgan-gp`` (critic without batch norm, ``--n-critic``
updates, penalty ``--gp-weight``, Adam betas (0.5, 0.9)), ``sn-gan`` (spectral norm on every layer of D,
``--sn-loss``, ``--sn-n-critic`` updates of D, Adam ``--sn-betas`` (0, 0.9): Miyato et al.'s recipe) and ``cgan``
(SN-GAN's D as a projection discriminator with AC-GAN's class head beside it, ``--cgan-aux-weight``; G reads
``one_hot(y)`` beside z and has conditional batch norm; the same recipe). Every model gets the same budget in
generator updates (``--epochs`` x ``--steps-per-epoch`` of batch ``--batch-size``), trains in its own Trainer
folder, and is scored every epoch (FID on ``--curve-samples``) and at the end.

The judge (:mod:`deepnotes.metrics.generative`): a ``--classifier`` from :data:`deepnotes.models.pixels.ZOO` trained
once per run on the training images (its test accuracy recorded); its penultimate features give FID, its softmax the
Inception-style score and the class histogram. FID is taken against half A of the test set (a seeded split), with
``--n-samples`` samples (at most the half's size); the other half B against A is the real-vs-real floor. Memorization:
each sample's nearest training image in pixel space against the same for half B's real images.

Files it leaves in the run folder (beside config.json):
    data.json                         dataset, split sizes, classes, the test halves' sizes
    models/classifier/                the judge's Trainer folder and result.json (test accuracy)
    models/<variant>-seed<k>/         Trainer folder (metrics.csv with a per-epoch fid column), result.json,
                                      samples.safetensors (grid, interpolations, nearest neighbours)
    results.json                      per variant: FID per seed, mean, std; IS; histogram; neighbours; the checks
    report.md + *.png                 samples.png, interpolations.png, class_histograms.png, fid_curves.png,
                                      neighbours.png

Over 400 lines: four variants x seeds, a judge, five figures and an ``eval`` that re-scores every generator; the
techniques live in :mod:`deepnotes.metrics.generative`, :mod:`deepnotes.models.gan`, :mod:`deepnotes.train.gan` and
:mod:`deepnotes.report.gan_plots`.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deepnotes.data.image_batches import pixel_preparer
from deepnotes.data.images import load_held_out, load_test_split, to_pixels
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.metrics import generative as gm
from deepnotes.models.gan import generate_pixels, interpolate_latents
from deepnotes.models.pixels import ZooName, build_pixel_model
from deepnotes.models.registry import create_model
from deepnotes.report import markdown_table
from deepnotes.report.gan_plots import plot_class_histograms, plot_curves, plot_image_panels, plot_neighbours
from deepnotes.train import EpochScores, TensorBatches, Trainer, supervised_trainer
from deepnotes.train.batches import seed_for
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.gan import CriticBatches, GANTask, GANVariant

NAME = "gan"
VARIANTS: dict[str, GANVariant] = {
    "dcgan": GANVariant("DCGAN", "nonsaturating", source="Radford et al. 2016 (batch norm in G and D)"),
    "wgan-gp": GANVariant("WGAN-GP", "wasserstein", repeat_critic=True, gp=True, betas=(0.5, 0.9),
                          source="Gulrajani et al. 2017 (no batch norm in the critic; lambda 10; 5 critic updates)"),
    "sn-gan": GANVariant("SN-GAN", "hinge", spectral=True, betas=(0.0, 0.9),
                         source="Miyato et al. 2018 (SN on every layer of D; hinge; 5 D updates, Adam (0, 0.9))"),
    "cgan": GANVariant("cGAN (projection)", "hinge", spectral=True, conditional=True, betas=(0.0, 0.9),
                       source="Miyato & Koyama 2018 (projection D with SN); G: one-hot y input, conditional BN"),
}  # variant_of() adds the flags: the cgan's AC-GAN head (--cgan-aux-weight) relabels it "cGAN (projection + AC)"
GRID = 8  # samples per grid row


@dataclass(frozen=True)
class GanConfig(TrainConfig):
    seed: int = option(0, "seed of the judge classifier and of the test halves; the GANs use --seeds")
    epochs: int = option(8, "epochs per GAN; FID on --curve-samples after each")
    steps_per_epoch: int = option(200, "generator updates per epoch (each after its discriminator updates)",
                                  range="[1, 1000000]")
    batch_size: int = option(64, "real and generated images per discriminator or generator update")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "the judge classifier's optimizer (the GANs use Adam)")
    lr: float = option(2e-4, "learning rate of G and D, every variant (DCGAN's 2e-4)")
    momentum: float = option(0.5, "Adam's beta1 (DCGAN's 0.5); wgan-gp uses (0.5, 0.9), sn-gan and cgan --sn-betas")
    weight_decay: float = option(0.0, "weight decay of the judge classifier (none in GAN training)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "constant", "learning-rate schedule of the GANs' updates")
    warmup: float = option(0.0, "share of all updates warming the learning rate up")
    dataset: str = option("fashion-mnist", "dataset name (see `deepnotes data list`)")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    limit_train: int = option(0, "use only the first N training images (0 = all)", range="[0, 1000000000]")
    limit_test: int = option(0, "use only the first N test images (0 = all)", range="[0, 1000000000]")
    variants: tuple[str, ...] = option(tuple(VARIANTS), f"GAN variants from: {', '.join(VARIANTS)}", nonempty=True)
    seeds: tuple[int, ...] = option((0, 1, 2), "seeds; every variant is trained once per seed",
                                    range="[0, 2147483647]", nonempty=True)
    z_dim: int = option(64, "size of the generator's Gaussian input z", range="[1, 1024]")
    g_width: int = option(32, "generator channels at 14x14 (twice that at 7x7)", range="[1, 1024]")
    d_width: int = option(32, "discriminator channels at 14x14 (twice that at 7x7)", range="[1, 1024]")
    n_critic: int = option(5, "wgan-gp's critic updates per generator update (Gulrajani et al.: 5)", range="[1, 100]")
    gp_weight: float = option(10.0, "wgan-gp's penalty weight lambda (Gulrajani et al.: 10)", range="[0, 1000]")
    sn_loss: Literal["hinge", "nonsaturating"] = option("hinge", "loss of sn-gan and cgan (Miyato et al.: hinge)")
    sn_n_critic: int = option(5, "sn-gan's and cgan's discriminator updates per generator update (Miyato et al.: 5)",
                              range="[1, 100]")
    sn_betas: tuple[float, float] = option((0.0, 0.9), "Adam's betas for sn-gan and cgan (Miyato et al.: 0, 0.9)",
                                           range="[0, 1)")
    sn_d_lr_scale: float = option(1.0, "sn-gan's and cgan's discriminator learning rate over --lr (TTUR: 4)",
                                  range="(0, 100]")
    cgan_aux_weight: float = option(1.0, "cgan: weight of AC-GAN's auxiliary classification loss (Odena et al. "
                                    "2017: 1), a class head on D's features beside the projection (0 = off)",
                                    range="[0, 100]")
    classifier: ZooName = option("lenet5-wide", "the judge: a Fashion-MNIST classifier whose penultimate features "
                                 "give FID")
    classifier_epochs: int = option(3, "the judge's epochs over the training images", range="[1, 1000]")
    classifier_lr: float = option(2e-3, "the judge's peak learning rate (AdamW, one-cycle)", range="(0, inf)")
    n_samples: int = option(5000, "samples per model for FID, IS and the histogram (at most half the test set)",
                            range="[10, 1000000]")
    is_splits: int = option(10, "parts the samples are cut into for the Inception-style score (the paper: 10)",
                            range="[1, 100]")
    curve_samples: int = option(1000, "samples for the per-epoch FID (0 = no curve)", range="[0, 1000000]")
    nn_samples: int = option(1000, "samples (and real test images) searched for their nearest training image",
                             range="[1, 100000]")
    min_share: float = option(0.1, "a class is covered when it holds this share of its fair 1/K of the samples",
                              range="(0, 1]")
    asked_share: float = option(0.9, "the check: share of cgan's samples the judge puts in the asked class",
                                range="[0, 1]")

    def check(self) -> None:
        super().check()
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise UserError(f"--variants: unknown {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
        if len(set(self.variants)) < len(self.variants) or len(set(self.seeds)) < len(self.seeds):
            raise UserError("--variants and --seeds must not repeat a value")
        if 0 < self.limit_test < 20:
            raise UserError(f"--limit-test {self.limit_test}: FID needs at least 10 images in each test half")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 16, "seeds": (0,), "limit_train": 600,
             "limit_test": 200, "g_width": 4, "d_width": 4, "z_dim": 8, "n_critic": 2, "sn_n_critic": 3,
             "classifier": "lenet5",
             "classifier_epochs": 1, "n_samples": 100, "is_splits": 2, "curve_samples": 50, "nn_samples": 20},
}


# ------------------------------------------------------------------------------------------------- models
def model_dir(variant: str, seed: int) -> str:
    return f"models/{variant}-seed{seed}"


def build_gan(cfg: GanConfig, variant: str, seed: int, num_classes: int) -> nn.ModuleDict:
    """``{"generator", "discriminator"}`` of ``variant``, initialized from ``seed``."""
    v = variant_of(cfg, variant)
    k = num_classes if v.conditional else 0
    torch.manual_seed(seed)
    norm = "spectral" if v.spectral else "none" if v.gp else "batch"
    return nn.ModuleDict({
        "generator": create_model("gan-generator", z_dim=cfg.z_dim, width=cfg.g_width, num_classes=k),
        "discriminator": create_model("gan-discriminator", width=cfg.d_width, norm=norm, num_classes=k,
                                      generator=torch.Generator().manual_seed(seed_for(seed, 7)),
                                      aux_classes=k if v.aux_weight else 0)})


def variant_of(cfg: GanConfig, variant: str) -> GANVariant:
    """VARIANTS[variant] with the flags that change it: the spectral variants' loss, betas and D learning rate, the
    conditional one's AC-GAN weight."""
    v = VARIANTS[variant]
    if v.spectral:
        v = dataclasses.replace(v, loss=cfg.sn_loss, betas=cfg.sn_betas, d_lr_scale=cfg.sn_d_lr_scale)
    if v.conditional and cfg.cgan_aux_weight:
        v = dataclasses.replace(v, aux_weight=cfg.cgan_aux_weight, label="cGAN (projection + AC)",
                                source=v.source + f"; AC-GAN's class head on D, weight {cfg.cgan_aux_weight:g} "
                                "(Odena et al. 2017)")
    return v


def critic_updates(cfg: GanConfig, v: GANVariant) -> int:
    """Discriminator updates per generator update: ``--n-critic`` (WGAN-GP), ``--sn-n-critic`` (spectral), else 1."""
    return cfg.n_critic if v.repeat_critic else cfg.sn_n_critic if v.spectral else 1


def fixed_latents(cfg: GanConfig, n: int, seed: int, conditional: bool, k: int, tag: int = 11
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """z (n, z_dim) from (seed, tag) and, for a conditional model, the classes asked for in turn (i mod K)."""
    z = torch.randn(n, cfg.z_dim, generator=torch.Generator().manual_seed(seed_for(seed, tag)))
    return z, (torch.arange(n) % k if conditional else None)


# ------------------------------------------------------------------------------------------------- the judge
@dataclass
class Judge:
    """The classifier and the real images' references: half A's feature statistics, half B's scores."""

    model: nn.Module
    ref: tuple[Any, Any]
    real_shares: list[float]
    real_nn: torch.Tensor  # (nn_samples,) half B's distances to their nearest training image
    train_pixels: torch.Tensor  # (N, 1, 28, 28) in [0, 1]

    def score(self, cfg: GanConfig, pixels: torch.Tensor, asked: torch.Tensor | None,
              train_ref: tuple[Any, Any] | None = None) -> dict[str, Any]:
        """FID against half A, IS, the class histogram, nearest training images, the asked class's share; with
        ``train_ref`` (training images' feature statistics) also ``fid_train``, the FID against those."""
        feats, logits = gm.classifier_features(self.model, pixels)
        probs = gm.probabilities(logits)
        pred = logits.argmax(1)
        is_mean, is_std = gm.inception_score(probs, min(cfg.is_splits, len(pixels)))
        hist = gm.class_histogram(pred, logits.shape[1], cfg.min_share, self.real_shares)
        d, _ = gm.nearest_neighbours(pixels[:cfg.nn_samples], self.train_pixels)
        out = {"fid": gm.frechet_distance(*gm.gaussian_stats(feats), *self.ref), "is_mean": is_mean, "is_std": is_std,
               "histogram": hist, "nn": gm.memorization_stats(d[:, 0], self.real_nn), "n": len(pixels)}
        if train_ref is not None:
            out["fid_train"] = gm.frechet_distance(*gm.gaussian_stats(feats), *train_ref)
        if asked is not None:
            hit = (pred == asked).double()
            out["asked_share"] = float(hit.mean())
            out["asked_share_per_class"] = [float(hit[asked == c].mean()) for c in range(logits.shape[1])]
        return out


def train_judge(cfg: GanConfig, data: Any, ctx: RunContext) -> tuple[nn.Module, dict[str, Any]]:
    """The judge classifier in ``models/classifier/`` (kept when a resumed run finished it) and its result."""
    folder = ctx.run_dir / "models" / "classifier"
    torch.manual_seed(cfg.seed)
    model = build_pixel_model(cfg.classifier, len(data.train.classes), data.mean, data.std,
                              data.train.images[:5000]).to(ctx.device)
    if ctx.resume and (folder / "result.json").is_file():
        return Run(folder).load_weights(model).eval(), Run(folder).read_json("result.json")
    ccfg = dataclasses.replace(cfg, epochs=cfg.classifier_epochs, lr=cfg.classifier_lr, batch_size=128,
                               schedule="onecycle", warmup=0.2, momentum=0.9)
    trainer = supervised_trainer(ccfg, model, folder, (data.train.images, data.train.labels),
                                 pixel_preparer(ctx.device), {}, ctx.device, ctx.info, ctx.main_log)
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    trainer.fit()
    _, logits = gm.classifier_features(model, to_pixels(data.test.images))
    hit = (logits.argmax(1) == data.test.labels).float()
    res = {"model": cfg.classifier, "test_acc": float(hit.mean()),
           "test_acc_per_class": [float(hit[data.test.labels == c].mean()) for c in range(len(data.train.classes))],
           "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history),
           "features": int(gm.classifier_features(model, to_pixels(data.test.images[:2]))[0].shape[1])}
    Run(folder).write_json("result.json", res)
    return model.eval(), res


def split_test_halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Half A (the FID reference) and half B (the floor) of ``n`` test images: a permutation seeded by ``seed``."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed_for(seed, 17)))
    return perm[:n // 2], perm[n // 2:2 * (n // 2)]


# ------------------------------------------------------------------------------------------------- training
def train_gan(cfg: GanConfig, variant: str, seed: int, train: tuple[torch.Tensor, torch.Tensor], k: int,
              judge: Judge, ctx: RunContext) -> None:
    """Train one GAN on ``train`` (images in [-1, 1], labels in [0, k)) into its folder (kept when a resumed run
    finished it), score it, save its samples."""
    folder = ctx.run_dir / model_dir(variant, seed)
    if ctx.resume and (folder / "result.json").is_file():
        ctx.main_log(f"[{variant} seed {seed}] finished in an earlier session; kept")
        return
    v = variant_of(cfg, variant)
    model = build_gan(cfg, variant, seed, k).to(ctx.device)
    n_critic = critic_updates(cfg, v)
    task = GANTask(model, v, cfg.z_dim, cfg.lr, cfg.momentum, gp_weight=cfg.gp_weight, num_classes=k)
    batches = CriticBatches(TensorBatches(train, n_critic * cfg.batch_size, seed, ctx.info, cfg.steps_per_epoch),
                            n_critic)
    G = model["generator"]
    callbacks = []
    if cfg.curve_samples >= 2:  # after every epoch: FID of curve_samples samples of a fixed z (column fid)
        cz, cy = fixed_latents(cfg, cfg.curve_samples, seed, v.conditional, k, 12)
        callbacks.append(EpochScores(lambda m: {"fid": gm.frechet_distance(*gm.gaussian_stats(
            gm.classifier_features(judge.model, generate_pixels(m["generator"], cz, cy))[0]), *judge.ref)}))
    trainer = Trainer(dataclasses.replace(cfg, seed=seed), task, folder, batches, {}, ctx.device, ctx.info,
                      lambda m: ctx.main_log(f"[{variant} seed {seed}] {m}"), callbacks=callbacks)
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    trainer.fit()
    if not ctx.info.is_main:
        return
    z, y = fixed_latents(cfg, cfg.n_samples, seed, v.conditional, k)
    scores = judge.score(cfg, generate_pixels(G, z, y), y)
    seconds = sum(float(r["epoch_time_s"]) for r in trainer.history)
    Run(folder).write_json("result.json", {
        "variant": variant, "seed": seed, **scores, "curve_fid": [r.get("fid") for r in trainer.history],
        "generator_updates": trainer.step, "discriminator_updates": trainer.step * n_critic, "train_time_s": seconds,
        "generated_per_s": trainer.step * cfg.batch_size / seconds,
        "real_per_s": trainer.step * n_critic * cfg.batch_size / seconds})
    save_samples(cfg, G, seed, v.conditional, k, judge, folder / "samples.safetensors")


def save_samples(cfg: GanConfig, G: nn.Module, seed: int, conditional: bool, k: int, judge: Judge,
                 path: Path) -> None:
    """The report's pictures as tensors: a grid, latent interpolations, four samples with their 3 nearest
    training images."""
    rows = k if conditional else GRID
    z, y = fixed_latents(cfg, rows * GRID, seed, conditional, k, 11)
    y = None if y is None else torch.arange(rows).repeat_interleave(GRID)  # one class per row
    ends = torch.randn(2, 4, cfg.z_dim, generator=torch.Generator().manual_seed(seed_for(seed, 13)))
    zi = interpolate_latents(ends[0], ends[1], GRID + 1)
    yi = torch.tensor([0, 1, 7, 9]).remainder(k).repeat_interleave(GRID + 1) if conditional else None
    grid, interp = generate_pixels(G, z, y), generate_pixels(G, zi, yi)
    d, i = gm.nearest_neighbours(grid[:4], judge.train_pixels, k=3)
    with atomic_path(path) as tmp:
        save_file({"grid": grid.contiguous(), "interpolations": interp.contiguous(), "nn_queries": grid[:4].clone(),
                   "nn_images": judge.train_pixels[i.reshape(-1)].contiguous(), "nn_distances": d.contiguous()},
                  str(tmp))


# ------------------------------------------------------------------------------------------------- summary
def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(run: Run, cfg: GanConfig, base: dict[str, Any]) -> dict[str, Any]:
    """results.json from the models' result.json files, with the issue's checks."""
    out: dict[str, Any] = {**base, "seeds": list(cfg.seeds), "variants": {}}
    for variant in cfg.variants:
        res = [run.read_json(f"{model_dir(variant, s)}/result.json") for s in cfg.seeds]
        fids = [r["fid"] for r in res]
        row: dict[str, Any] = {"fid": fids, **dict(zip(("fid_mean", "fid_std"), mean_std(fids)))}
        for key, get in (("is", lambda r: r["is_mean"]), ("covered", lambda r: r["histogram"]["covered"]),
                         ("effective_classes", lambda r: r["histogram"]["effective_classes"]),
                         ("tv", lambda r: r["histogram"]["tv"]), ("nn_ratio", lambda r: r["nn"]["ratio"]),
                         ("share_closer", lambda r: r["nn"]["share_closer"]),
                         ("generated_per_s", lambda r: r["generated_per_s"])):
            row[f"{key}_mean"] = statistics.fmean(get(r) for r in res)
        row["shares"] = [statistics.fmean(s) for s in zip(*(r["histogram"]["shares"] for r in res))]
        curves = [r["curve_fid"] for r in res if r["curve_fid"] and None not in r["curve_fid"]]
        row["curve_fid"] = [statistics.fmean(c) for c in zip(*curves)] if curves else []
        row["train_time_s"] = sum(r["train_time_s"] for r in res)
        if "asked_share" in res[0]:
            row["asked_share"] = [r["asked_share"] for r in res]
            row["asked_share_mean"] = statistics.fmean(row["asked_share"])
            row["asked_share_per_class"] = [statistics.fmean(c) for c in zip(*(r["asked_share_per_class"]
                                                                               for r in res))]
        out["variants"][variant] = row
    rows, checks = out["variants"], {}
    for other in ("wgan-gp", "sn-gan"):
        if other in rows and "dcgan" in rows:
            checks[f"{other}_beats_dcgan"] = rows[other]["fid_mean"] < rows["dcgan"]["fid_mean"]
            checks[f"{other}_seed_wins"] = sum(a < b for a, b in zip(rows[other]["fid"], rows["dcgan"]["fid"]))
    if "cgan" in rows:
        checks["cgan_asked_class"] = rows["cgan"]["asked_share_mean"] >= cfg.asked_share
    out["checks"] = checks
    return out


def prepare(cfg: GanConfig, model: nn.Module, train_images: torch.Tensor, test_images: torch.Tensor
            ) -> tuple[Judge, dict[str, Any]]:
    """The judge's references: half A's feature statistics, half B's floor, scores and nearest-neighbour distances."""
    a, b = split_test_halves(len(test_images), cfg.seed)
    test_px = to_pixels(test_images)
    fa, _ = gm.classifier_features(model, test_px[a])
    fb, lb = gm.classifier_features(model, test_px[b])
    train_px = to_pixels(train_images)
    real_nn = gm.nearest_neighbours(test_px[b][:cfg.nn_samples], train_px)[0][:, 0]
    real_hist = gm.class_histogram(lb.argmax(1), lb.shape[1], cfg.min_share)
    judge = Judge(model, gm.gaussian_stats(fa), real_hist["shares"], real_nn, train_px)
    is_mean, is_std = gm.inception_score(gm.probabilities(lb), min(cfg.is_splits, len(b)))
    base = {"half_size": len(a),
            "floor": {"fid": gm.frechet_distance(*gm.gaussian_stats(fb), *judge.ref), "n": len(b)},
            "real": {"is_mean": is_mean, "is_std": is_std, "histogram": real_hist,
                     "nn_median": float(real_nn.median())}}
    return judge, base


def run(cfg: GanConfig, ctx: RunContext) -> dict[str, Any]:
    """``deepnotes run gan``: the judge, every variant per seed, the summary, the report."""
    if ctx.info.world_size > 1:
        raise UserError("the gan lab runs in one process; launch it without torchrun")
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, cfg.limit_test, 0.0, cfg.seed)
    folder = Run(ctx.run_dir)
    folder.write_json("data.json", data.info(cfg.dataset))
    model, cres = train_judge(cfg, data, ctx)
    judge, base = prepare(cfg, model, data.train.images, data.test.images)
    base["classifier"] = cres
    n = min(cfg.n_samples, base["half_size"])
    cfg_n = dataclasses.replace(cfg, n_samples=n)
    ctx.main_log(f"judge {cfg.classifier}: test accuracy {100 * base['classifier']['test_acc']:.2f}%; "
                 f"real-vs-real FID floor {base['floor']['fid']:.3f} ({base['half_size']} vs {base['floor']['n']})")
    train = (data.train.images.float().div(127.5).sub(1), data.train.labels)  # pixels in [-1, 1], G's tanh range
    for seed in cfg.seeds:
        for variant in cfg.variants:
            train_gan(cfg_n, variant, seed, train, len(data.train.classes), judge, ctx)
    results = summarize(folder, cfg, {**base, "n_samples": n})
    folder.write_json("results.json", results)
    ctx.log("FID (mean over seeds): " + ", ".join(f"{v} {r['fid_mean']:.3f}" for v, r in results["variants"].items())
            + f"; floor {base['floor']['fid']:.3f}; report: {report(folder)}")
    return {f"{v} fid": r["fid_mean"] for v, r in results["variants"].items()}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data X]``: every saved generator re-scored on fresh z (a seed the run never used),
    FID against half A of the run's test split or of ``X``'s; and FID against training images (``fid vs train``:
    as many as the test half holds, a seeded draw), the score to compare settings on without the test set."""
    cfg, info = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"], cfg.data_dir)
    if data is None:  # the run's own test images, as many as it used: the same halves and floor
        split = split.head(cfg.limit_test)
    train = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, 1, 0.0, cfg.seed).train
    judge_model = build_pixel_model(cfg.classifier, len(info["classes"]), info["mean"], info["std"])
    judge_model = run.load_weights(judge_model, "models/classifier/model.safetensors").to(device).eval()
    judge, base = prepare(cfg, judge_model, train.images, split.images)
    n, k = min(cfg.n_samples, base["half_size"]), len(info["classes"])
    pick = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(seed_for(cfg.seed, 23)))
    train_ref = gm.gaussian_stats(gm.classifier_features(judge_model, to_pixels(train.images[pick[:n]]))[0])
    out: dict[str, Any] = {"data": f"{name} (fresh z)", "samples": n, "floor fid": base["floor"]["fid"]}
    for variant in cfg.variants:
        scores = []
        for s in cfg.seeds:
            gan = run.load_weights(build_gan(cfg, variant, s, k), f"{model_dir(variant, s)}/model.safetensors")
            z, y = fixed_latents(cfg, n, s, VARIANTS[variant].conditional, k, tag=19)
            scores.append(judge.score(cfg, generate_pixels(gan.to(device)["generator"], z, y), y, train_ref))
        out[f"{variant} fid"] = statistics.fmean(r["fid"] for r in scores)
        out[f"{variant} fid vs train"] = statistics.fmean(r["fid_train"] for r in scores)
        out[f"{variant} is"] = statistics.fmean(r["is_mean"] for r in scores)
        if "asked_share" in scores[0]:
            out[f"{variant} asked class"] = statistics.fmean(r["asked_share"] for r in scores)
    run.write_eval(f"{name}-fresh-z", out)
    return out


# ------------------------------------------------------------------------------------------------- report
def _grids(run: Run, cfg: GanConfig, key: str, cols: int) -> dict[str, tuple[torch.Tensor, int]]:
    seed = cfg.seeds[0]
    return {f"{variant_of(cfg, v).label}, seed {seed}":
            (load_file(str(run / model_dir(v, seed) / "samples.safetensors"))[key], cols) for v in cfg.variants}


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from results.json and the saved samples."""
    cfg, res, info = run.config, run.read_json("results.json"), run.read_json("data.json")
    classes = info["classes"]
    rows_v = {v: res["variants"][v] for v in cfg.variants}  # the command line's order (the JSON's keys are sorted)
    floor, real = res["floor"], res["real"]
    labels = {f"{variant_of(cfg, v).label}, seed {cfg.seeds[0]}": [c[:10] for c in classes] for v in cfg.variants
              if VARIANTS[v].conditional}
    plot_image_panels(_grids(run, cfg, "grid", GRID), run / "samples.png", "samples of a fixed z (cGAN: one class "
                      "per row)", row_labels=labels)
    plot_image_panels(_grids(run, cfg, "interpolations", GRID + 1), run / "interpolations.png",
                      "latent interpolations: (1 - t) z0 + t z1 (cGAN: classes 0, 1, 7, 9)")
    plot_class_histograms({**{variant_of(cfg, v).label: r["shares"] for v, r in rows_v.items()},
                           "real (test half B)": real["histogram"]["shares"]}, classes, run / "class_histograms.png",
                          "classes the judge gives the samples (mean over seeds)")
    plot_curves({variant_of(cfg, v).label: r["curve_fid"] for v, r in rows_v.items()}, run / "fid_curves.png",
                f"FID on {cfg.curve_samples} samples (mean over seeds)", floor["fid"])
    nn_rows = {}
    for v in cfg.variants:
        t = load_file(str(run / model_dir(v, cfg.seeds[0]) / "samples.safetensors"))
        for j in range(2):
            nn_rows[f"{v} #{j + 1}"] = (t["nn_queries"][j], t["nn_images"][3 * j:3 * j + 3], t["nn_distances"][j])
    plot_neighbours(nn_rows, run / "neighbours.png", "samples and their 3 nearest training images (pixel distance)")
    fmt = lambda x: f"{x:.3f}"  # noqa: E731
    table = [[variant_of(cfg, v).label, f"{fmt(r['fid_mean'])} ± {fmt(r['fid_std'])}", f"{r['is_mean']:.2f}",
              f"{r['covered_mean']:.1f}/{len(classes)}", f"{r['effective_classes_mean']:.2f}", f"{r['tv_mean']:.3f}",
              f"{r['nn_ratio_mean']:.2f}", f"{100 * r['asked_share_mean']:.1f}%" if "asked_share_mean" in r else "-"]
             for v, r in rows_v.items()]
    table.append(["real test half B", f"{fmt(floor['fid'])} (floor)", f"{real['is_mean']:.2f}",
                  f"{real['histogram']['covered']}/{len(classes)}", f"{real['histogram']['effective_classes']:.2f}",
                  "0", "1", "-"])
    ch, yes = res["checks"], lambda b: "**yes**" if b else "**no**"  # noqa: E731
    notes = [f"WGAN-GP's mean FID below DCGAN's: {yes(ch['wgan-gp_beats_dcgan'])} (lower in "
             f"{ch['wgan-gp_seed_wins']}/{len(cfg.seeds)} seeds)" if "wgan-gp_beats_dcgan" in ch else "",
             f"SN-GAN's mean FID below DCGAN's: {yes(ch['sn-gan_beats_dcgan'])} (lower in "
             f"{ch['sn-gan_seed_wins']}/{len(cfg.seeds)} seeds)" if "sn-gan_beats_dcgan" in ch else "",
             f"cGAN: >= {100 * cfg.asked_share:.0f}% of its samples judged the class asked for: "
             f"{yes(ch['cgan_asked_class'])}" if "cgan_asked_class" in ch else ""]
    judge = res["classifier"]
    rep = Report(run, f"{NAME}: four GANs on {cfg.dataset}, judged by a classifier", intro=(
        f"EE-559 11-1/11-2 and ML2021 GAN lectures 1-4. Each GAN: {cfg.epochs} x {cfg.steps_per_epoch} generator "
        f"updates of batch {cfg.batch_size} (WGAN-GP: {cfg.n_critic} critic updates each; SN-GAN and cGAN: "
        f"{cfg.sn_loss} loss, {cfg.sn_n_critic} D updates each, Adam betas {tuple(cfg.sn_betas)}"
        + (f", D's learning rate x{cfg.sn_d_lr_scale:g}" if cfg.sn_d_lr_scale != 1 else "")
        + f"), z of size {cfg.z_dim}, widths G {cfg.g_width} / D {cfg.d_width}, {len(cfg.seeds)} "
        f"seed(s), {info['n_train']} training images. The judge: {judge['model']} trained {cfg.classifier_epochs} "
        f"epoch(s), test accuracy {100 * judge['test_acc']:.2f}%; FID on its {judge['features']} penultimate features, "
        f"{res['n_samples']} samples against half A ({res['half_size']} test images)."))
    rep.results(table, headers=("variant", "FID (mean ± std over seeds)", "IS", "classes covered",
                                "effective classes", "TV to real histogram", "NN distance ratio",
                                "cGAN: judged as asked"),
                note="FID and IS are on the judge's scale (a small Fashion-MNIST classifier, not Inception-v3): "
                     "compare them with each other and with the real-vs-real floor. Classes covered: classes holding "
                     f">= {cfg.min_share:g} of their fair share of samples; effective classes: exp(entropy) of the "
                     "histogram; NN distance ratio: median pixel distance of a sample to its nearest training image "
                     "over the same for unseen test images (well below 1: memorization).\n\n"
                     + "\n".join(f"- {n}" for n in notes if n))
    rep.baselines([["course baseline", "none published (no FID for these networks in the course)"]])
    rep.figure("Samples", "samples.png").figure("Latent interpolations", "interpolations.png")
    rep.figure("Class histograms (mode dropping)", "class_histograms.png")
    rep.figure("FID over training", "fid_curves.png")
    rep.figure("Nearest training images (memorization)", "neighbours.png")
    rep.table("FID per seed", ["variant", "source", *(f"seed {s}" for s in cfg.seeds), "training (all seeds)",
                               "generated images/s"],
              [[variant_of(cfg, v).label, variant_of(cfg, v).source, *(fmt(f) for f in r["fid"]),
                f"{r['train_time_s']:.0f} s",
                f"{r['generated_per_s_mean']:.0f}"] for v, r in rows_v.items()])
    if "cgan" in rows_v:
        rows = [["cGAN samples judged as asked", *(f"{100 * a:.0f}%" for a in rows_v["cgan"]["asked_share_per_class"])]]
        if "test_acc_per_class" in judge:  # the ceiling: a sample as recognizable as a real image scores this
            rows.append(["the judge on real test images", *(f"{100 * a:.0f}%" for a in judge["test_acc_per_class"])])
        rep.section("cGAN: share judged as the class asked for", markdown_table(["", *classes], rows))
    return rep.write()


LAB = Lab(
    name=NAME,
    summary="DCGAN, WGAN-GP, SN-GAN and a projection cGAN on Fashion-MNIST: FID, IS, mode dropping, memorization",
    source="EE-559 11-1/11-2; ML2021 GAN lectures 1-4",
    default_dataset="fashion-mnist",
    metric="FID (the lab's own classifier's features) per variant",
    config_cls=GanConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
