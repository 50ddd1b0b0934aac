"""Lab ``anomaly-detection`` (HW8): one-class anomaly detection on Fashion-MNIST, PCA against three deep detectors.

Sources: ML2021/2022 HW8 and the auto-encoder lecture's anomaly-detection part (train on normal data only; an
anomaly is what the model reconstructs badly, or what lands far from where normal data lands); Ruff et al. 2018
(Deep SVDD, and its pre-training auto-encoder DCAE); Golan & El-Yaniv 2018 (the one-class protocol on
Fashion-MNIST: each class in turn is normal, the nine others are anomalies; AUROC per class and the mean).

Detectors, each trained on the normal class's training images only (labels of other classes never seen):

* ``pca``: reconstruction error off the principal subspace
  (:func:`deepnotes.metrics.anomaly.pca_reconstruction_scores`);
* ``ae``: squared reconstruction error of a convolutional auto-encoder (:mod:`deepnotes.nn.autoencoder`);
* ``vae``: the negative ELBO of a VAE (:mod:`deepnotes.nn.vae`), one posterior sample per image; the same VAE's
  reconstruction error from the posterior mean is scored too (``vae-rec``: likelihood against reconstruction);
* ``svdd``: Deep SVDD's distance to the centre (:mod:`deepnotes.nn.svdd`), its network pre-trained as the encoder of
  Ruff et al.'s bias-free auto-encoder, whose own reconstruction error is reported too (``dcae``).

The validation split (``--val-fraction`` of the training images, every class) scores each detector the same way as
the test split; the "best deep detector" is the one with the highest mean validation AUROC, and only then is its
test AUROC compared with PCA's.

Files it leaves in the run folder (beside config.json):
    data.json                  dataset, split sizes, the normal classes
    models/<class>/<method>/   each deep detector's Trainer folder (metrics.csv, model.safetensors)
    scores/<class>.npz         test anomaly scores of every detector (and the test labels)
    results.json               per class and detector: validation and test AUROC, training time; means; the verdict
    report.md + *.png          auroc_per_class.png, roc_<class>.png, extremes_<class>.png
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepnotes.data.image_batches import pixel_preparer
from deepnotes.data.images import ImageSplit, load_held_out, load_test_split, to_pixels
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.metrics.anomaly import auroc, one_class_targets, pca_reconstruction_scores
from deepnotes.models.autoencoder import AutoencoderTask, autoencoder_task, score_images
from deepnotes.models.registry import create_model
from deepnotes.nn.svdd import BiasFreeLeNet, BiasFreeLeNetAutoencoder, DeepSVDD, DeepSVDDTask
from deepnotes.report import new_figure, save_figure
from deepnotes.train import EvalBatches, TensorBatches, TrainConfig, Trainer, option

NAME = "anomaly-detection"
METHODS = ("pca", "ae", "vae", "svdd")
MODELS = ("ae", "vae", "dcae", "svdd")  # trained networks; dcae: svdd's pre-training auto-encoder
DEEP = ("ae", "vae", "vae-rec", "dcae", "svdd")  # their scores (vae-rec: the VAE's reconstruction error)


@dataclass(frozen=True)
class AnomalyConfig(TrainConfig):
    epochs: int = option(20, "epochs of every deep detector over its normal class's training images")
    batch_size: int = option(128, "examples per update")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate of the auto-encoders (ae, vae, and svdd's pre-training)")
    weight_decay: float = option(1e-6, "weight decay on weight matrices (Ruff et al.: 5e-7)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule over all updates (see deepnotes.train.schedule)")
    warmup: float = option(0.05, "share of all updates warming the learning rate up")
    dataset: str = option("fashion-mnist", "dataset name (see `deepnotes data list`)")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    normal_classes: tuple[int, ...] = option((), "classes taken in turn as normal (comma-separated; empty = all)",
                                             range="[0, 999]")
    methods: tuple[str, ...] = option(METHODS, "detectors: pca, ae, vae, svdd (comma-separated)", nonempty=True)
    pca_components: int = option(32, "principal directions of the PCA detector", range="[1, 784]")
    latent_dim: int = option(32, "code size of the ae and vae detectors", range="[1, 4096]")
    rep_dim: int = option(32, "Deep SVDD's representation size (a multiple of 16)", range="[16, 4096]")
    svdd_lr: float = option(1e-4, "Deep SVDD's peak learning rate (after pre-training)", range="(0, inf)")
    svdd_objective: Literal["one-class", "soft-boundary"] = option("one-class", "Deep SVDD's objective")
    nu: float = option(0.1, "soft boundary: share of training images allowed outside the sphere", range="(0, 1]")
    val_fraction: float = option(0.1, "share of the training images held out for validation (stratified)",
                                 range="(0, 0.9)")
    limit_train: int = option(0, "use only the first N training images (0 = all); for smoke runs",
                              range="[0, 1000000000]")
    limit_test: int = option(0, "score only the first N test images (0 = all)", range="[0, 1000000000]")

    def check(self) -> None:
        super().check()
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or len(set(self.methods)) < len(self.methods):
            raise UserError(f"--methods must be distinct names among {', '.join(METHODS)}; "
                            f"got {','.join(self.methods)}")
        if self.rep_dim % 16:
            raise UserError(f"--rep-dim {self.rep_dim} must be a multiple of 16 (Deep SVDD's decoder reshapes it)")
        if len(set(self.normal_classes)) < len(self.normal_classes):
            raise UserError(f"--normal-classes repeats a class: {','.join(map(str, self.normal_classes))}")


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: two normal classes, 3,000 training images, every detector for one epoch
    "fast": {"limit_train": 3000, "limit_test": 1000, "normal_classes": (0, 1), "epochs": 1, "batch_size": 64,
             "pca_components": 8, "latent_dim": 8, "rep_dim": 16},
}




@torch.no_grad()
def _svdd_scores(model: DeepSVDD, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    device = model.center.device
    return torch.cat([model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


def _build(cfg: AnomalyConfig, method: str, in_channels: int) -> torch.nn.Module:
    if method in ("ae", "vae"):
        return create_model(method, in_channels=in_channels, latent_dim=cfg.latent_dim)
    if method == "dcae":
        return BiasFreeLeNetAutoencoder(in_channels, cfg.rep_dim)
    return DeepSVDD(BiasFreeLeNet(in_channels, cfg.rep_dim), cfg.svdd_objective, cfg.nu)


def _scores(method: str, model: torch.nn.Module, pixels: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """Detector name -> anomaly scores (higher = more anomalous) of ``pixels`` (N, C, H, W) in [0, 1] by the trained
    network ``method``: the VAE gives two (its negative ELBO, and ``vae-rec``, its reconstruction error)."""
    if method == "svdd":
        return {"svdd": _svdd_scores(model, pixels).numpy()}
    s = score_images(model, pixels, seed)
    if method == "vae":
        return {"vae": s["negative_elbo"].numpy(), "vae-rec": s["mse"].numpy()}
    return {method: s["mse"].numpy()}


def train_detectors(cfg: AnomalyConfig, ctx: RunContext, k: int, normal: torch.Tensor,
                    val_normal: torch.Tensor) -> tuple[dict[str, torch.nn.Module], dict[str, float]]:
    """Train every deep detector of ``cfg.methods`` on the uint8 images ``normal`` of class ``k``; returns the models
    and their training times (s). Each has its own Trainer folder ``models/<k>/<method>/``."""
    prep = pixel_preparer(ctx.device)
    labels = torch.zeros(len(normal), dtype=torch.long)
    val = {"val": EvalBatches((val_normal, torch.zeros(len(val_normal), dtype=torch.long)), 1000, ctx.info)}
    in_channels = normal.shape[1]
    wanted = [m for m in ("ae", "vae") if m in cfg.methods] + (["dcae", "svdd"] if "svdd" in cfg.methods else [])
    models: dict[str, torch.nn.Module] = {}
    seconds: dict[str, float] = {}
    for method in wanted:
        folder = ctx.run_dir / "models" / str(k) / method
        torch.manual_seed(cfg.seed)
        model = _build(cfg, method, in_channels).to(ctx.device)
        method_cfg = cfg
        if method == "svdd":  # φ starts as the pre-trained encoder; c from one pass over the normal images
            model.net.load_state_dict(models["dcae"].encoder.state_dict())
            model.init_center(to_pixels(normal[i:i + 1000]).to(ctx.device) for i in range(0, len(normal), 1000))
            task = DeepSVDDTask(model, prep)
            method_cfg = dataclasses.replace(cfg, lr=cfg.svdd_lr)
        elif method == "dcae":
            task = AutoencoderTask(model, prep, cfg.seed, loss="mse")
        else:
            task = autoencoder_task(method, model, prep, cfg.seed)
        trainer = Trainer(method_cfg, task, folder, TensorBatches((normal, labels), cfg.batch_size, cfg.seed, ctx.info),
                          val, ctx.device, ctx.info, lambda m, name=f"{k}/{method}": ctx.main_log(f"[{name}] {m}"))
        seconds[method] = trainer.fit_or_load(ctx.resume)
        models[method] = model
    return models, seconds


def run(cfg: AnomalyConfig, ctx: RunContext) -> dict[str, Any]:
    """Each normal class in turn: fit every detector on its training images, score validation and test."""
    if ctx.info.world_size > 1:
        raise UserError("the anomaly-detection lab runs in one process; launch it without torchrun")
    log, folder = ctx.main_log, Run(ctx.run_dir)
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)
    classes = data.test.classes
    normal_classes = cfg.normal_classes or tuple(range(len(classes)))
    bad = [k for k in normal_classes if k >= len(classes)]
    if bad:
        raise UserError(f"--normal-classes {bad[0]} is not a class of {cfg.dataset} (0..{len(classes) - 1})")
    folder.write_json("data.json", {**data.info(cfg.dataset), "normal_classes": list(normal_classes)})
    val_x, test_x = to_pixels(data.val.images), to_pixels(data.test.images)
    flat = lambda x: x.flatten(1).numpy()  # noqa: E731
    per_class: dict[str, Any] = {}
    (ctx.run_dir / "scores").mkdir(exist_ok=True)
    for k in normal_classes:
        start = time.perf_counter()
        normal = data.train.images[data.train.labels == k]
        if len(normal) == 0:
            raise UserError(f"class {k} has no training image left (raise --limit-train)")
        val_normal = data.val.images[data.val.labels == k]
        val_t, test_t = one_class_targets(data.val.labels, k), one_class_targets(data.test.labels, k)
        scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        seconds: dict[str, float] = {}
        if "pca" in cfg.methods:
            t0 = time.perf_counter()
            both = pca_reconstruction_scores(flat(to_pixels(normal)), np.concatenate([flat(val_x), flat(test_x)]),
                                             min(cfg.pca_components, len(normal)), cfg.seed)
            scores["pca"], seconds["pca"] = (both[:len(val_x)], both[len(val_x):]), time.perf_counter() - t0
        models, trained = train_detectors(cfg, ctx, k, normal, val_normal)
        seconds.update(trained)
        for method, model in models.items():
            val_s, test_s = _scores(method, model, val_x, cfg.seed), _scores(method, model, test_x, cfg.seed)
            scores.update({name: (val_s[name], test_s[name]) for name in val_s})
            seconds.update({name: seconds[method] for name in val_s})
        per_class[str(k)] = {m: {"val_auroc": auroc(v, val_t), "test_auroc": auroc(t, test_t),
                                 "train_time_s": seconds[m]} for m, (v, t) in scores.items()}
        tmp = ctx.run_dir / "scores" / f"{k}.tmp.npz"
        np.savez(tmp, labels=data.test.labels.numpy(), **{m: t.astype(np.float32) for m, (_, t) in scores.items()})
        tmp.replace(ctx.run_dir / "scores" / f"{k}.npz")
        log(f"class {k} ({classes[k]}) normal, {len(normal)} training images, {time.perf_counter() - start:.0f} s: "
            + ", ".join(f"{m} {r['test_auroc']:.4f}" for m, r in per_class[str(k)].items()) + " test AUROC")
    results = summarize(per_class)
    folder.write_json("results.json", results)
    if results.get("best_deep") and "pca" in results["mean"]:
        best = results["best_deep"]
        log(f"mean test AUROC: best deep detector on validation, {best}, "
            f"{results['mean'][best]['test_auroc']:.4f} vs PCA {results['mean']['pca']['test_auroc']:.4f}")
    log(f"report: {report(folder)}")
    return results


def summarize(per_class: dict[str, Any]) -> dict[str, Any]:
    """Means over the normal classes; the deep detector with the best mean validation AUROC, and whether its mean
    test AUROC beats PCA's (the issue's check)."""
    methods = list(dict.fromkeys(m for r in per_class.values() for m in r))
    mean = {m: {s: float(np.mean([r[m][s] for r in per_class.values()])) for s in ("val_auroc", "test_auroc")}
            for m in methods}
    deep = [m for m in methods if m in DEEP]
    best = max(deep, key=lambda m: mean[m]["val_auroc"]) if deep else None
    beats = (mean[best]["test_auroc"] > mean["pca"]["test_auroc"]) if best and "pca" in mean else None
    return {"per_class": per_class, "mean": mean, "best_deep": best, "best_deep_beats_pca": beats}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data X]``: every saved deep detector's AUROC per normal class on the run's test split or
    on ``X`` (a test split with the same classes)."""
    cfg, info = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"], cfg.data_dir)
    x = to_pixels(split.images)
    out: dict[str, Any] = {"data": name, "n": len(split)}
    for k in info["normal_classes"]:
        if not (split.labels == k).any():
            continue
        target = one_class_targets(split.labels, k)
        for method in MODELS:
            weights = Path("models") / str(k) / method / "model.safetensors"
            if (run / str(weights)).is_file():
                model = run.load_weights(_build(cfg, method, x.shape[1]), str(weights)).to(device)
                for detector, s in _scores(method, model, x, cfg.seed).items():
                    out[f"{k}_{detector}_auroc"] = auroc(s, target)
    for method in DEEP:
        values = [v for key, v in out.items() if key.endswith(f"_{method}_auroc")]
        if values:
            out[f"mean_{method}_auroc"] = float(np.mean(values))
    run.write_eval(name, out)
    return out


def _roc_figure(run: Run, k: str, classes: list[str]) -> str:
    from sklearn.metrics import roc_curve

    s = np.load(run / f"scores/{k}.npz")
    target = s["labels"] != int(k)
    fig = new_figure(5, 5)
    axes = fig.subplots()
    for method in s.files:
        if method != "labels":
            fpr, tpr, _ = roc_curve(target, s[method])
            axes.plot(fpr, tpr, label=f"{method} ({auroc(s[method], target):.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axes.set_xlabel("false-positive rate (normal images flagged)")
    axes.set_ylabel("true-positive rate (anomalies flagged)")
    axes.set_title(f"normal class: {classes[int(k)]}")
    axes.legend()
    save_figure(fig, run / f"roc_{k}.png")
    return f"roc_{k}.png"


def _extremes_figure(run: Run, k: str, method: str, test: ImageSplit | None) -> str | None:
    """The 8 test images ``method`` finds most normal and the 8 it finds most anomalous."""
    if test is None:
        return None
    s = np.load(run / f"scores/{k}.npz")[method]
    order = np.argsort(s)
    fig = new_figure(12, 3.4)
    axes = fig.subplots(2, 8, squeeze=False)
    for row, idx in enumerate((order[:8], order[::-1][:8])):
        for i, j in enumerate(idx):
            axes[row][i].imshow(test.images[j, 0].numpy(), cmap="gray")
            axes[row][i].set_title(test.classes[int(test.labels[j])], fontsize=7)
            axes[row][i].axis("off")
    fig.suptitle(f"{method}, normal class {test.classes[int(k)]}: most normal (top), most anomalous (bottom)")
    save_figure(fig, run / f"extremes_{k}.png")
    return f"extremes_{k}.png"


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its figures from the run folder."""
    cfg, res, info = run.config, run.read_json("results.json"), run.read_json("data.json")
    classes, per_class, mean = info["classes"], res["per_class"], res["mean"]
    methods = [m for m in ("pca",) + DEEP if m in mean]
    rows = [[f"{k} {classes[int(k)]}"] + [f"{per_class[k][m]['test_auroc']:.4f}" if m in per_class[k] else "-"
                                         for m in methods] for k in per_class]
    rows.append(["**mean (test)**"] + [f"**{mean[m]['test_auroc']:.4f}**" for m in methods])
    rows.append(["mean (validation)"] + [f"{mean[m]['val_auroc']:.4f}" for m in methods])
    rows.append(["training time per class"] + [
        f"{np.mean([per_class[k][m]['train_time_s'] for k in per_class if m in per_class[k]]):.0f} s" for m in methods])
    best, beats = res.get("best_deep"), res.get("best_deep_beats_pca")
    verdict = ("" if best is None or beats is None else
               f"Best deep detector on validation: **{best}**; its mean test AUROC "
               f"{'beats' if beats else 'does not beat'} PCA's ({mean[best]['test_auroc']:.4f} vs "
               f"{mean['pca']['test_auroc']:.4f}).")
    fig = new_figure(10, 4)
    axes = fig.subplots()
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        axes.bar(np.arange(len(per_class)) + i * width, [per_class[k].get(m, {}).get("test_auroc", np.nan)
                                                          for k in per_class], width, label=m)
    axes.set_xticks(np.arange(len(per_class)) + 0.4 - width / 2, [classes[int(k)] for k in per_class], fontsize=8)
    axes.set_ylim(0.5, 1.0)
    axes.set_ylabel("test AUROC")
    axes.legend(ncol=len(methods))
    save_figure(fig, run / "auroc_per_class.png")
    hardest = min(per_class, key=lambda k: np.mean([r["test_auroc"] for r in per_class[k].values()]))
    rep = (Report(run, f"{NAME}: one-class anomaly detection on {cfg.dataset}",
                  intro=f"Each class in turn is normal: the detectors see only its training images and rank the "
                        f"{info.get('n_test')} test images (AUROC: normal = the class, anomaly = the other classes).")
           .results(rows, headers=["normal class"] + methods, note=verdict)
           .baselines([["Golan & El-Yaniv 2018 (Table 1), Fashion-MNIST mean AUROC, OC-SVM on raw pixels "
                        "(its hyper-parameters picked in hindsight on the test AUROC)", "0.928"],
                       ["Golan & El-Yaniv 2018, their geometric-transformation detector", "0.935"],
                       ["HW8 (human faces; not comparable)", "0.530 / 0.729 / 0.772 / 0.795"]])
           .figure("Test AUROC per normal class", "auroc_per_class.png")
           .figure(f"ROC curves of the hardest class ({classes[int(hardest)]})", _roc_figure(run, hardest, classes)))
    test = None
    try:
        test = load_test_split(None, cfg.dataset, classes, cfg.data_dir)[0].head(cfg.limit_test)
    except Exception:  # the images are only needed for a figure; the report stands without it
        pass
    extremes = _extremes_figure(run, hardest, best or methods[0], test)
    if extremes:
        rep.figure("What the best deep detector finds most normal and most anomalous (hardest class)", extremes)
    return rep.write()


LAB = Lab(name=NAME, default_dataset="fashion-mnist", metric="mean test AUROC over the normal classes",
          summary="one-class anomaly detection: PCA vs auto-encoder, VAE and Deep SVDD (HW8)",
          source="ML2021/2022 HW8 and the auto-encoder lecture; Ruff et al. 2018 (Deep SVDD)", config_cls=AnomalyConfig,
          run=run, evaluate=evaluate, report=report, presets=PRESETS)
