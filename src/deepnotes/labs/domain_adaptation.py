"""Lab ``domain-adaptation`` (ML2021 "Domain Adaptation", HW11): domain-adversarial training (DANN) on real shifts.

For each ``--shifts`` pair ``SOURCE:TARGET`` of image datasets (default: MNIST digits -> MNIST-M, MNIST digits ->
scikit-learn's 8x8 digits, Fashion-MNIST -> Fashion-M; :mod:`deepnotes.data.shift`) and each of ``--seeds``, trains
Ganin and Lempitsky's digit network (:class:`deepnotes.nn.domain.DANN`) three ways with the same updates:

* source only: labelled source images (the lower bound; the domain classifier learns beside, as a probe);
* DANN: the same, plus unlabelled target images behind the gradient reversal layer (λ from 0 to 1 by Ganin's
  schedule, learning rate mu_0 / (1 + 10 p)^0.75);
* trained on the target: the target's labelled training images (the upper bound);

and scores each on the target's test images. The share of the gap DANN closes is (DANN - source only) / (target -
source only), from the means over seeds. Then the lecture's other cases: DANN with only ``--few-target`` unlabelled
target images, and domain generalization (``--dg-domains``: train on all but one domain, test on the one left out).
t-SNE of the source and target features before and after adaptation is the lecture's figure.

Images are read as pixels in [-1, 1], grey ones repeated to three channels, so every domain fits one network.
Nothing is chosen on the target's test images: the hyperparameters are Ganin's and the last epoch is kept.

Files it leaves in the run folder (beside config.json):
    models/<shift>/<method>-seed<k>/   one Trainer folder per model (metrics.csv, checkpoints/, model.safetensors)
    adaptation.json                    every accuracy, the gaps, few-target and domain-generalization results
    tsne.safetensors                   the t-SNE coordinates of the figures
    report.md + *.png                  the report
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.manifold import TSNE

from deepnotes.data.images import get_image_dataset, load_held_out, to_pixels
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.nn.domain import DANN, DANNTask, dann_lr
from deepnotes.report.attack_plots import plot_bars
from deepnotes.report.explain_plots import plot_embedding
from deepnotes.train import EvalBatches, TensorBatches, Trainer
from deepnotes.train.config import TrainConfig, option

NAME = "domain-adaptation"
METHODS = ("source-only", "dann", "target")
# Ganin & Lempitsky 2015, Table 1 (MNIST -> MNIST-M): source only, DANN, trained on target.
GANIN_MNIST_M = (0.5225, 0.7666, 0.9596)
HW11_BASELINES = [("simple", "0.446"), ("medium", "0.646"), ("strong", "0.758"), ("boss", "0.806")]


@dataclass(frozen=True)
class DomainAdaptationConfig(TrainConfig):
    epochs: int = option(10, "passes of --steps-per-epoch updates for each model")
    batch_size: int = option(64, "source images per update (as many target images are drawn beside)")
    optimizer: Literal["sgd", "adamw"] = option("sgd", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(0.01, "mu_0 of Ganin's schedule mu_0 / (1 + 10 p)^0.75 (p: training progress)")
    weight_decay: float = option(0.0, "weight decay on weights (not on biases)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "constant", "unused: the lab follows Ganin's learning-rate schedule")
    shifts: tuple[str, ...] = option(("mnist-subset:mnist-m", "mnist-subset:digits-8x8", "fashion-mnist:fashion-m"),
                                     "SOURCE:TARGET image datasets (see `deepnotes data list`)", nonempty=True)
    seeds: tuple[int, ...] = option((0, 1, 2), "seeds; every model is trained once per seed", range="[0, 2147483647]",
                                    nonempty=True)
    steps_per_epoch: int = option(100, "updates per epoch", range="[1, 100000]")
    gamma: float = option(10.0, "gamma of Ganin's lambda schedule 2 / (1 + exp(-gamma p)) - 1", range="(0, 1000]")
    limit_train: int = option(10000, "use the first N training images of each dataset (0 = all)",
                              range="[0, 1000000000]")
    val_fraction: float = option(0.1, "share of each class of the training images held out for validation",
                                 range="(0, 0.5]")
    entropy_weight: float = option(0.0, "DANN: weight of the target predictions' entropy (0: Ganin's DANN)",
                                   range="[0, 100]")
    few_target: int = option(100, "DANN again with only this many unlabelled target images (0: skip)",
                             range="[0, 100000]")
    dg_domains: tuple[str, ...] = option(("mnist-subset", "mnist-m", "digits-8x8"), "domain generalization: train "
                                         "on all of these but one, test on that one (empty: skip)")
    tsne_images: int = option(400, "test images of each domain in the t-SNE maps (0: skip)", range="[0, 10000]")

    def check(self) -> None:
        super().check()
        pairs = [s.split(":") for s in self.shifts]
        names = [n for p in pairs for n in p] + list(self.dg_domains)
        bad = [s for s, p in zip(self.shifts, pairs) if len(p) != 2 or p[0] == p[1]]
        if bad:
            raise UserError(f"--shifts: {', '.join(bad)} is not SOURCE:TARGET with two different datasets")
        for n in names:
            get_image_dataset(n, "--shifts/--dg-domains")
        if self.dg_domains and len(set(self.dg_domains)) < 2:
            raise UserError("--dg-domains: give at least two different datasets, or none to skip")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 32, "shifts": ("mnist-subset:digits-8x8",),
             "seeds": (0,), "limit_train": 600, "few_target": 20, "dg_domains": ("mnist-subset", "digits-8x8"),
             "tsne_images": 30},
}


def gap_closed(source_only: float, dann: float, target: float) -> float | None:
    """The share of the source-only -> target-trained gap DANN closes, ``(dann - source_only) / (target -
    source_only)``; None when the target-trained model is not better than source only (no gap to close)."""
    return (dann - source_only) / (target - source_only) if target > source_only else None


def key_of(shift: str) -> str:
    """``mnist-subset:mnist-m`` -> ``mnist-subset-to-mnist-m`` (a folder name)."""
    return shift.replace(":", "-to-")


def rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3} -> (N, 3, H, W): grey repeated, colour kept."""
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images


def load_domain(name: str, cfg: DomainAdaptationConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train" | "val" | "test": (uint8 (N, 3, 28, 28), labels (N,))}`` of image dataset ``name``."""
    data = load_held_out(name, None, cfg.limit_train, 0, cfg.val_fraction, cfg.seeds[0])
    return {k: (rgb(s.images), s.labels) for k, s in (("train", data.train), ("val", data.val), ("test", data.test))}


def inputs(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images -> the network's inputs on ``device``: pixels mapped from [0, 1] to [-1, 1] (centred, as Ganin
    subtracts the mean pixel)."""
    return (2 * to_pixels(images) - 1).to(device)


def prepare_for(device: torch.device):
    """:func:`inputs` on ``device`` as a one-argument function (for :class:`DANNTask`)."""
    return lambda x: inputs(x, device)


@torch.no_grad()
def accuracy(model: DANN, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    """Share of ``images`` (uint8) whose predicted class is the label, 1,000 at a time."""
    model.eval()
    correct = sum(int((model(inputs(images[i:i + 1000], device))[0].argmax(-1).cpu() == labels[i:i + 1000])
                      .sum()) for i in range(0, len(labels), 1000))
    return correct / len(labels)


def train_model(cfg: DomainAdaptationConfig, folder: Path, seed: int, train: tuple, val: tuple,
                target_pool: torch.Tensor, adapt: bool, ctx: RunContext) -> DANN:
    """One DANN network trained on ``train`` (labelled) with ``target_pool`` behind the reversal layer when
    ``adapt``; kept from an earlier session when ``folder`` holds its finished weights and ``--resume`` is given."""
    torch.manual_seed(seed)
    model = DANN.for_digits(in_channels=3, num_classes=10).to(ctx.device)
    if ctx.resume and (folder / "model.safetensors").is_file():
        return Run(folder).load_weights(model).eval()
    task = DANNTask(model, target_pool, prepare_for(ctx.device), adapt=adapt, gamma=cfg.gamma,
                    entropy_weight=cfg.entropy_weight)
    total = cfg.epochs * cfg.steps_per_epoch
    trainer = Trainer(dataclasses.replace(cfg, seed=seed), task, folder,
                      TensorBatches(train, cfg.batch_size, seed, ctx.info, steps_per_epoch=cfg.steps_per_epoch),
                      {"val": EvalBatches(val, 1000, ctx.info)}, ctx.device, ctx.info, lambda _msg: None,
                      lr_schedule=lambda step, _total: dann_lr(step / max(1, total - 1), lr0=cfg.lr))
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    trainer.fit()
    return model.eval()


def features(model: DANN, images: torch.Tensor, device: torch.device) -> np.ndarray:
    """G_f's (N, 768) features of uint8 images."""
    with torch.no_grad():
        return model.feature_extractor(inputs(images, device)).cpu().numpy()


def run_shift(cfg: DomainAdaptationConfig, shift: str, ctx: RunContext, tsne: dict[str, torch.Tensor]
              ) -> dict[str, Any]:
    """The three methods (and DANN with few target images) on one shift, every seed; t-SNE of seed 0's features."""
    source_name, target_name = shift.split(":")
    src, tgt = load_domain(source_name, cfg), load_domain(target_name, cfg)
    out: dict[str, Any] = {"source": source_name, "target": target_name, "n_source_train": len(src["train"][1]),
                           "n_target_train": len(tgt["train"][1]), "target_acc": {}, "source_acc": {}}
    methods = METHODS + (("dann-few",) if cfg.few_target else ())
    for seed in cfg.seeds:
        few = tgt["train"][0][torch.randperm(len(tgt["train"][1]), generator=torch.Generator().manual_seed(seed))
                              [:cfg.few_target]]
        for method in methods:
            folder = ctx.run_dir / "models" / key_of(shift) / f"{method}-seed{seed}"
            train, val = (tgt["train"], tgt["val"]) if method == "target" else (src["train"], src["val"])
            pool = few if method == "dann-few" else tgt["train"][0]
            model = train_model(cfg, folder, seed, train, val, pool, method.startswith("dann"), ctx)
            out["target_acc"].setdefault(method, []).append(accuracy(model, *tgt["test"], ctx.device))
            out["source_acc"].setdefault(method, []).append(accuracy(model, *src["test"], ctx.device))
            ctx.main_log(f"[{shift}] {method} seed {seed}: target {100 * out['target_acc'][method][-1]:.1f}%, "
                         f"source {100 * out['source_acc'][method][-1]:.1f}%")
            if seed == cfg.seeds[0] and method in ("source-only", "dann") and cfg.tsne_images:
                n = cfg.tsne_images
                z = np.concatenate([features(model, src["test"][0][:n], ctx.device),
                                    features(model, tgt["test"][0][:n], ctx.device)])
                xy = TSNE(2, init="pca", random_state=cfg.seeds[0], perplexity=min(30, len(z) // 4)).fit_transform(z)
                tsne[f"{key_of(shift)}/{method}"] = torch.from_numpy(xy.astype(np.float32))
                tsne[f"{key_of(shift)}/labels"] = torch.cat([src["test"][1][:n], tgt["test"][1][:n]])
                tsne[f"{key_of(shift)}/domain"] = torch.cat([torch.zeros(min(n, len(src["test"][1])), dtype=torch.long),
                                                             torch.ones(min(n, len(tgt["test"][1])), dtype=torch.long)])
    mean = {m: float(np.mean(v)) for m, v in out["target_acc"].items()}
    out["mean_target_acc"] = mean
    out["gap_closed"] = gap_closed(mean["source-only"], mean["dann"], mean["target"])
    return out


def run_generalization(cfg: DomainAdaptationConfig, ctx: RunContext) -> list[dict[str, Any]]:
    """Domain generalization: for each domain of ``--dg-domains``, a network trained on the others pooled (no
    target image seen), scored on its test images."""
    domains = {d: load_domain(d, cfg) for d in cfg.dg_domains}
    rows = []
    for held_out in cfg.dg_domains:
        others = [d for d in cfg.dg_domains if d != held_out]
        train = tuple(torch.cat([domains[d]["train"][i] for d in others]) for i in (0, 1))
        val = tuple(torch.cat([domains[d]["val"][i] for d in others]) for i in (0, 1))
        accs = []
        for seed in cfg.seeds:
            folder = ctx.run_dir / "models" / f"dg-without-{held_out}" / f"pooled-seed{seed}"
            model = train_model(cfg, folder, seed, train, val, train[0], False, ctx)
            accs.append(accuracy(model, *domains[held_out]["test"], ctx.device))
        rows.append({"held_out": held_out, "trained_on": others, "acc": accs, "mean_acc": float(np.mean(accs))})
        ctx.main_log(f"[generalization] without {held_out}: {100 * rows[-1]['mean_acc']:.1f}%")
    return rows


def run(cfg: DomainAdaptationConfig, ctx: RunContext) -> dict[str, Any]:
    """Every shift, the few-target case and domain generalization; write adaptation.json and the report."""
    tsne: dict[str, torch.Tensor] = {}
    results: dict[str, Any] = {"shifts": {}}
    for shift in cfg.shifts:
        results["shifts"][shift] = run_shift(cfg, shift, ctx, tsne)
    results["generalization"] = run_generalization(cfg, ctx) if cfg.dg_domains else []
    if not ctx.info.is_main:
        return {}
    run_folder = Run(ctx.run_dir)
    if tsne:
        with atomic_path(run_folder / "tsne.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in tsne.items()}, str(tmp))
    results["all_closed_half"] = all(s["gap_closed"] is not None and s["gap_closed"] >= 0.5
                                     for s in results["shifts"].values())
    run_folder.write_json("adaptation.json", results)
    report(run_folder)
    return {f"{s} gap closed": r["gap_closed"] for s, r in results["shifts"].items()}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data DATASET]``: every shift's saved models on DATASET's test images (default: each
    shift's own target), e.g. MNIST-M rebuilt from photos the builders do not use (``mnist-m-held-out``). With
    ``--data``, only the shifts whose target has DATASET's classes (digits or clothes) are scored.

    Raises:
        UserError: ``--data`` names an unknown dataset, or one whose classes no shift's target has.
    """
    cfg = run.config
    metrics: dict[str, Any] = {"data": data or "each shift's target"}
    shifts = cfg.shifts
    if data:
        classes = get_image_dataset(data, "--data").classes
        shifts = tuple(s for s in cfg.shifts if get_image_dataset(s.split(":")[1]).classes == classes)
        if not shifts:
            raise UserError(f"--data {data}: no shift of this run has a target with its classes "
                            f"({', '.join(cfg.shifts)}); give a dataset of digits or of clothes as its targets are")
    for shift in shifts:
        name = data or shift.split(":")[1]
        x, y = load_domain(name, cfg)["test"]
        for method in METHODS:
            accs = []
            for seed in cfg.seeds:
                model = DANN.for_digits(in_channels=3, num_classes=10).to(device)
                Run(run / "models" / key_of(shift) / f"{method}-seed{seed}").load_weights(model)
                accs.append(accuracy(model, x, y, device))
            metrics[f"{shift} {method}"] = float(np.mean(accs))
        metrics[f"{shift} gap closed"] = gap_closed(metrics[f"{shift} source-only"], metrics[f"{shift} dann"],
                                                    metrics[f"{shift} target"])
    run.write_eval(data or "targets", metrics)
    return metrics


def pm(values: list[float]) -> str:
    """``mean ± std`` in percent."""
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}%"


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from adaptation.json and tsne.safetensors."""
    cfg, res = run.config, run.read_json("adaptation.json")
    shifts = res["shifts"]
    rep = Report(run, f"{NAME}: domain-adversarial training on {len(shifts)} shifts", intro=(
        f"ML2021 'Domain Adaptation', HW11; Ganin & Lempitsky 2015. Seeds {', '.join(map(str, cfg.seeds))}; "
        f"{cfg.epochs * cfg.steps_per_epoch} updates of {cfg.batch_size} source (+ {cfg.batch_size} target) images "
        "per model; accuracy on the target's test images, mean ± std over seeds."))
    rows = [[s, pm(r["target_acc"]["source-only"]), pm(r["target_acc"]["dann"]), pm(r["target_acc"]["target"]),
             "n/a" if r["gap_closed"] is None else f"{100 * r['gap_closed']:.0f}%"] for s, r in shifts.items()]
    rep.results(rows, headers=("shift", "source only", "DANN", "trained on target", "gap closed"),
                note=f"DANN closes at least half the gap on every shift: "
                     f"**{'yes' if res['all_closed_half'] else 'no'}**.")
    rep.baselines([["Ganin & Lempitsky 2015, MNIST -> MNIST-M (60k digits, BSDS500)",
                    " / ".join(f"{100 * v:.2f}%" for v in GANIN_MNIST_M)]]
                  + [[f"HW11 {a} (real images -> drawings, not comparable)", b] for a, b in HW11_BASELINES],
                  headers=("baseline", "source only / DANN / target"))
    plot_bars([f"{key_of(s)}\n{m}" for s, r in shifts.items() for m in METHODS],
              [r["mean_target_acc"][m] for r in shifts.values() for m in METHODS], run / "accuracy.png",
              "target test accuracy (%)", title="source only, DANN, trained on target")
    rep.figure("Target accuracy by method", "accuracy.png")
    if cfg.few_target:
        rep.table(f"Little target data: DANN with {cfg.few_target} unlabelled target images",
                  ["shift", "source only", f"DANN, {cfg.few_target} images", "DANN, all"],
                  [[s, pm(r["target_acc"]["source-only"]), pm(r["target_acc"]["dann-few"]), pm(r["target_acc"]["dann"])]
                   for s, r in shifts.items()])
    rep.table("Source accuracy (does adapting cost the source?)", ["shift"] + list(METHODS),
              [[s] + [pm(r["source_acc"][m]) for m in METHODS] for s, r in shifts.items()])
    if res["generalization"]:
        rep.table("Domain generalization: no target image seen", ["held-out domain", "trained on", "accuracy"],
                  [[g["held_out"], " + ".join(g["trained_on"]), pm(g["acc"])] for g in res["generalization"]])
    if (run / "tsne.safetensors").is_file():
        t = load_file(str(run / "tsne.safetensors"))
        for s in shifts:
            k = key_of(s)
            if f"{k}/dann" in t:
                plot_embedding({"source only": t[f"{k}/source-only"].numpy(), "DANN": t[f"{k}/dann"].numpy()},
                               t[f"{k}/domain"].numpy(), ["source", "target"], run / f"tsne_{k}.png",
                               title=f"t-SNE of G_f's features, {s}")
                rep.figure(f"Features of source and target, {s}: before (source only) and after (DANN)",
                           f"tsne_{k}.png")
    return rep.write()


LAB = Lab(
    name=NAME,
    summary="domain-adversarial training (DANN) on real shifts: MNIST -> MNIST-M, -> 8x8 digits, Fashion -> Fashion-M",
    source="ML2021 Domain Adaptation, HW11; Ganin & Lempitsky 2015",
    default_dataset="mnist-m",
    metric="share of the source-only -> target-trained gap DANN closes",
    config_cls=DomainAdaptationConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
