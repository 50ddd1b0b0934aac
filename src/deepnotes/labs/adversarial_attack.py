"""Lab ``adversarial-attack`` (ML2021/2022 "Adversarial Attack", HW10): white-box and transfer attacks, defenses.

Trains a zoo of Fashion-MNIST classifiers that read pixels in [0, 1] (:mod:`deepnotes.models.pixels`): the source
models (``--sources``, attacked as an ensemble, HW10's proxy models) and a held-out ``--target`` the attacker never
touches; then measures, on ``--attack-images`` test images (choices made on as many validation images):

* white box: FGSM and PGD-20 against every model at each ``--white-box-eps`` (accuracy against eps);
* HW10's ladder on the held-out model at ``--eps``: FGSM on one proxy (simple) > I-FGSM on the ensemble (medium) >
  MI-FGSM with input diversity on the ensemble (strong) > the boss (the best of several stronger transfer attacks,
  chosen on validation); each rung must leave the held-out model less accurate than the one below (at 8/255 the
  transfer rungs lie within 2 points of each other; at 0.1 FGSM on one proxy beats I-FGSM on the ensemble: see
  benchmarks/RESULTS.md);
* passive defenses in front of the held-out model (Gaussian and median smoothing, JPEG, random resize-and-pad), against
  the boss's transfer images and against an adaptive white-box attacker (PGD through the defense; BPDA for JPEG, EOT
  for the random one), and the proactive one: adversarial training (PGD-AT) of ``--at-model`` at ``--at-eps``;
* MobileNetV2 (ImageNet weights) on scikit-image's photos: white-box PGD at 4/255 and 8/255, top-1 before and after.

The attacks are :mod:`deepnotes.attacks`, adversarial training :class:`deepnotes.attacks.training.AdversarialTrainingTask`,
scoring :mod:`deepnotes.metrics.robustness`. Over 400 lines: it trains six models and runs seven studies (white box,
the ladder, passive defenses, PGD-AT, one pixel, universal, photos), each a short function and a report section.

Files it leaves in the run folder (beside config.json):
    models/<key>/          one Trainer folder per model (metrics.csv, checkpoints/, model.safetensors, result.json)
    data.json              dataset, split sizes, pixel mean/std
    attacks.json           white-box curves, the ladder (validation and test), defenses, adversarial training, photos
    report.md + *.png      the report
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from deepnotes.attacks import Defended, Ensemble, fgsm, gaussian_blur, ifgsm, jpeg_compress, median_filter, mifgsm, pgd
from deepnotes.attacks import fooling_rate, one_pixel, random_resize_pad, universal_perturbation
from deepnotes.attacks.training import AdversarialTrainingTask
from deepnotes.data.image_batches import pixel_preparer
from deepnotes.data.images import HeldOutImages, load_held_out, to_pixels
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.metrics.robustness import accuracy, attack_images, predict
from deepnotes.models.pixels import ZOO, ZooName, build_pixel_model
from deepnotes.report.attack_plots import plot_accuracy_vs_eps, plot_adversarial_triples, plot_bars
from deepnotes.train import EvalBatches, TensorBatches, Trainer, supervised_trainer
from deepnotes.train.config import TrainConfig, option

NAME = "adversarial-attack"
DEFENSES = ("gaussian", "median", "jpeg", "resize-pad")
HW10_BASELINES = [("simple (FGSM)", "<= 0.70"), ("medium (I-FGSM + ensemble)", "<= 0.50"),
                  ("strong (MI-FGSM + DIM + ensemble)", "<= 0.30"), ("boss", "<= 0.15")]


@dataclass(frozen=True)
class AdversarialConfig(TrainConfig):
    epochs: int = option(4, "passes over the training set for each model of the zoo")
    batch_size: int = option(128, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(2e-3, "peak learning rate")
    dataset: Literal["fashion-mnist", "mnist-subset"] = option("fashion-mnist", "dataset")
    data_dir: str | None = option(None, "folder with the dataset's four IDX files, read instead of the default places")
    limit_train: int = option(0, "use the first N training images (0 = all)", range="[0, 1000000000]")
    val_fraction: float = option(0.1, "share of each class of the training images held out", range="(0, 0.5]")
    sources: tuple[str, ...] = option(("lenet5", "mlp", "resnet"), "the attacker's proxy models (the ensemble), "
                                      f"from: {', '.join(ZOO)}", nonempty=True)
    target: ZooName = option("airbench", "the held-out model the transfer attacks are scored on")
    attack_images: int = option(1000, "test (and validation) images attacked", range="[1, 100000]")
    eps: float = option(8 / 255, "L-inf budget of the ladder and the passive defenses, pixel units", range="(0, 1]")
    steps: int = option(10, "iterations of I-FGSM and MI-FGSM (step eps / steps, HW10's setting)", range="[1, 1000]")
    boss_steps: int = option(50, "iterations of the boss candidates", range="[1, 5000]")
    white_box_eps: tuple[float, ...] = option((2 / 255, 4 / 255, 8 / 255, 0.05, 0.1, 0.2), "white-box budgets",
                                              range="(0, 1]", nonempty=True)
    pgd_steps: int = option(20, "PGD steps of the white-box and adaptive attacks", range="[1, 1000]")
    defense: tuple[str, ...] = option(DEFENSES + ("pgd-at",), "defenses to measure (comma-separated; none: empty), "
                                      f"from: {', '.join(DEFENSES)}, pgd-at")
    at_model: ZooName = option("lenet5-wide", "PGD-AT: the network trained adversarially (and normally, to compare)")
    at_eps: float = option(0.1, "PGD-AT: L-inf radius in training and in the robust test", range="(0, 1]")
    at_steps: int = option(7, "PGD-AT: PGD steps per training batch (step 2.5 eps / steps)", range="[1, 100]")
    at_epochs: int = option(10, "PGD-AT: passes over the training set", range="[1, 1000]")
    photos: bool = option(True, "attack MobileNetV2 (ImageNet weights) on scikit-image's photos")
    one_pixel_images: int = option(50, "one-pixel attack: test images of the held-out model (0: skip)",
                                   range="[0, 10000]")
    one_pixel_counts: tuple[int, ...] = option((1, 3, 5), "one-pixel attack: pixels changed", range="[1, 784]",
                                               nonempty=True)
    uap_eps: float = option(0.15, "universal perturbation: L-inf radius (0: skip)", range="[0, 1]")
    uap_images: int = option(500, "universal perturbation: validation images it is computed on", range="[1, 100000]")

    def check(self) -> None:
        super().check()
        bad = [s for s in self.sources if s not in ZOO] + [d for d in self.defense if d not in DEFENSES + ("pgd-at",)]
        if bad:
            raise UserError(f"--sources/--defense: unknown {', '.join(bad)}; models: {', '.join(ZOO)}; defenses: "
                            f"{', '.join(DEFENSES)}, pgd-at")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 1, "limit_train": 1500, "sources": ("lenet5", "mlp"), "target": "lenet5", "attack_images": 48,
             "steps": 3, "boss_steps": 4, "white_box_eps": (4 / 255, 0.1), "pgd_steps": 3, "at_model": "lenet5",
             "at_steps": 2, "at_epochs": 1, "photos": False,
             "one_pixel_images": 3, "one_pixel_counts": (1,), "uap_images": 20},
}


def load_model(run: Run, key: str, name: str) -> nn.Module:
    """Model ``models/<key>/`` of a run folder, in eval mode."""
    d = run.read_json("data.json")
    model = build_pixel_model(name, len(d["classes"]), d["mean"], d["std"])
    return run.load_weights(model, f"models/{key}/model.safetensors").eval()


def train_zoo_model(cfg: AdversarialConfig, key: str, name: str, data: HeldOutImages, ctx: RunContext,
                    seed: int, adversarial: bool = False) -> nn.Module:
    """Train zoo model ``name`` into ``models/<key>/`` (or load it when a resumed run finished it)."""
    folder = ctx.run_dir / "models" / key
    mcfg = dataclasses.replace(cfg, seed=seed, epochs=cfg.at_epochs if adversarial else cfg.epochs)
    torch.manual_seed(seed)
    model = build_pixel_model(name, len(data.train.classes), data.mean, data.std, data.train.images[:5000])
    model = model.to(ctx.device)
    if ctx.resume and (folder / "result.json").is_file():
        ctx.main_log(f"[{key}] finished in an earlier session; kept")
        return Run(folder).load_weights(model).eval()
    to_device = pixel_preparer(ctx.device)
    train, val = (data.train.images, data.train.labels), (data.val.images, data.val.labels)
    if adversarial:
        task = AdversarialTrainingTask(model, cfg.at_eps, 2.5 * cfg.at_eps / cfg.at_steps, cfg.at_steps, to_device)
        trainer = Trainer(mcfg, task, folder, TensorBatches(train, cfg.batch_size, seed, ctx.info),
                          {"val": EvalBatches(val, 1000, ctx.info)}, ctx.device, ctx.info, ctx.main_log)
    else:
        trainer = supervised_trainer(mcfg, model, folder, train, to_device, {"val": val}, ctx.device, ctx.info,
                                     ctx.main_log)
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    trainer.fit()
    seconds = sum(float(r["epoch_time_s"]) for r in trainer.history)
    Run(folder).write_json("result.json", {"model": name, "adversarial": adversarial, "train_time_s": seconds,
                                           "parameters": sum(p.numel() for p in model.parameters())})
    return model.eval()


def ladder_attacks(cfg: AdversarialConfig) -> dict[str, tuple[str, Callable]]:
    """HW10's rungs and the boss candidates: name -> (surrogate: "proxy" or "ensemble", attack)."""
    eps, n, g = cfg.eps, cfg.steps, torch.Generator().manual_seed(cfg.seed)
    di = {"diversity_prob": 0.5, "resize_rate": 0.9, "generator": g}
    k = cfg.boss_steps
    return {
        "simple: FGSM, one proxy": ("proxy", functools.partial(fgsm, eps=eps)),
        "medium: I-FGSM, ensemble": ("ensemble", functools.partial(ifgsm, eps=eps, alpha=eps / n, steps=n)),
        "strong: MI-DI-FGSM, ensemble": ("ensemble", functools.partial(mifgsm, eps=eps, alpha=eps / n, steps=n, **di)),
        f"boss A: MI-DI-FGSM, {k} steps": ("ensemble", functools.partial(mifgsm, eps=eps, alpha=eps / n, steps=k, **di)),
        f"boss B: MI-DI-FGSM, {k} steps, EOT 4": ("ensemble", functools.partial(
            mifgsm, eps=eps, alpha=eps / n, steps=k, eot_samples=4, **di)),
    }


def run_ladder(cfg: AdversarialConfig, proxy: nn.Module, ensemble: nn.Module, target: nn.Module,
               sets: dict[str, tuple[torch.Tensor, torch.Tensor]],
               boss: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Target accuracy under each rung on each set; the boss is the candidate lowest on validation, or ``boss`` (the
    rung a run chose), the only candidate then attacked (no validation set needed)."""
    attacks = {k: v for k, v in ladder_attacks(cfg).items() if boss is None or not k.startswith("boss") or k == boss}
    rows, adv_test = [], {}
    for name, (surrogate, attack) in attacks.items():
        row: dict[str, Any] = {"rung": name, "surrogate": surrogate}
        for split, (x, y) in sets.items():
            t0 = time.perf_counter()
            adv = attack_images(attack, proxy if surrogate == "proxy" else ensemble, x, y)
            row[f"{split}_acc"] = accuracy(target, adv, y)
            row[f"{split}_surrogate_acc"] = accuracy(proxy if surrogate == "proxy" else ensemble, adv, y)
            row[f"{split}_seconds"] = time.perf_counter() - t0
            if split == "test":
                adv_test[name] = adv
        rows.append(row)
    candidates = rows[3:]
    chosen = candidates[0] if boss is not None else min(candidates, key=lambda r: r["validation_acc"])
    ladder = rows[:3] + [dict(chosen, chosen_from=[r["rung"] for r in candidates])]
    accs = [r["test_acc"] for r in ladder]
    return {"eps": cfg.eps, "rows": rows, "ladder": ladder, "holds": all(a > b for a, b in zip(accs, accs[1:]))}, \
        {"boss": adv_test[chosen["rung"]]}


def run_defenses(cfg: AdversarialConfig, target: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 boss_adv: torch.Tensor) -> list[dict[str, Any]]:
    """Clean, transfer (the boss's images) and adaptive white-box accuracy of the target behind each defense."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    transforms = {"none": (lambda t: t, 1), "gaussian": (functools.partial(gaussian_blur, sigma=1.0), 1),
                  "median": (functools.partial(median_filter, size=3), 1),
                  "jpeg": (functools.partial(jpeg_compress, quality=50), 1),
                  "resize-pad": (functools.partial(random_resize_pad, generator=g), 8)}
    rows = []
    for name in ("none",) + tuple(d for d in cfg.defense if d in DEFENSES):
        transform, eot = transforms[name]
        model = Defended(target, transform).eval()
        attack = functools.partial(pgd, eps=cfg.eps, alpha=2.5 * cfg.eps / cfg.pgd_steps, steps=cfg.pgd_steps,
                                   eot_samples=eot, generator=g)
        rows.append({"defense": name, "clean_acc": accuracy(model, x, y), "transfer_acc": accuracy(model, boss_adv, y),
                     "adaptive_acc": accuracy(model, attack_images(attack, model, x, y), y),
                     "adaptive": {"none": "PGD", "jpeg": "PGD + BPDA (identity backward)", "resize-pad": f"PGD + EOT {eot}"}.get(
                         name, "PGD through the filter")})
    return rows


def run_white_box(cfg: AdversarialConfig, models: dict[str, nn.Module], x: torch.Tensor,
                  y: torch.Tensor) -> dict[str, Any]:
    """Clean accuracy and accuracy under FGSM and PGD (random start, step 2.5 eps / steps) at each budget."""
    g = torch.Generator().manual_seed(cfg.seed + 2)
    out: dict[str, Any] = {"eps": list(cfg.white_box_eps), "models": {}}
    for key, model in models.items():
        curves: dict[str, list[float]] = {"FGSM": [], f"PGD-{cfg.pgd_steps}": []}
        for eps in cfg.white_box_eps:
            curves["FGSM"].append(accuracy(model, attack_images(functools.partial(fgsm, eps=eps), model, x, y), y))
            attack = functools.partial(pgd, eps=eps, alpha=2.5 * eps / cfg.pgd_steps, steps=cfg.pgd_steps, generator=g)
            curves[f"PGD-{cfg.pgd_steps}"].append(accuracy(model, attack_images(attack, model, x, y), y))
        out["models"][key] = {"clean_acc": accuracy(model, x, y), **curves}
    return out


def run_adversarial_training(cfg: AdversarialConfig, robust: nn.Module, standard: nn.Module, test: tuple,
                             x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """PGD-AT against the same network trained normally: clean accuracy on the whole test set, FGSM and PGD at
    ``--at-eps`` on the attacked images."""
    g = torch.Generator().manual_seed(cfg.seed + 3)
    eps = cfg.at_eps
    attacks = {"FGSM": functools.partial(fgsm, eps=eps),
               f"PGD-{cfg.pgd_steps}": functools.partial(pgd, eps=eps, alpha=2.5 * eps / cfg.pgd_steps,
                                                         steps=cfg.pgd_steps, generator=g)}
    rows = {}
    for key, model in {"PGD-AT": robust, "standard": standard}.items():
        rows[key] = {"clean_acc": accuracy(model, *test)}
        for name, attack in attacks.items():
            rows[key][f"{name}_acc"] = accuracy(model, attack_images(attack, model, x, y), y)
    pgd_key = f"PGD-{cfg.pgd_steps}_acc"
    return {"eps": eps, "model": cfg.at_model, "rows": rows,
            "target_met": rows["PGD-AT"][pgd_key] >= 0.70 and rows["PGD-AT"]["clean_acc"] >= 0.85
            and rows["standard"][pgd_key] < 0.10}


def run_one_pixel(cfg: AdversarialConfig, target: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Su et al. 2019 on the held-out model: accuracy when ``k`` pixels may change (differential evolution)."""
    n = cfg.one_pixel_images
    out = {"images": n, "clean_acc": accuracy(target, x[:n], y[:n]), "acc": {}}
    for k in cfg.one_pixel_counts:
        adv = one_pixel(target, x[:n], y[:n], pixels=k, seed=cfg.seed)
        out["acc"][str(k)] = accuracy(target, adv, y[:n])
    return out


def run_universal(cfg: AdversarialConfig, models: dict[str, nn.Module], val: tuple, test: tuple,
                  run_folder: Run) -> dict[str, Any]:
    """Moosavi-Dezfooli et al. 2017: one perturbation from the held-out model's validation images, then the
    fooling rate (share of test images whose label changes) on that model and on the others (transfer)."""
    g = torch.Generator().manual_seed(cfg.seed + 5)
    v = universal_perturbation(models["target"], val[0][:cfg.uap_images], eps=cfg.uap_eps, generator=g)
    with atomic_path(run_folder / "universal.safetensors") as tmp:
        save_file({"v": v.contiguous()}, str(tmp))
    x, y = test
    return {"eps": cfg.uap_eps, "images": min(cfg.uap_images, len(val[0])),
            "fooling_rate": {k: fooling_rate(m, x, v) for k, m in models.items()},
            "acc": {k: accuracy(m, (x + v).clamp(0, 1), y) for k, m in models.items()}}


def run(cfg: AdversarialConfig, ctx: RunContext) -> dict[str, Any]:
    """Train the zoo, run the four studies, write attacks.json and the report."""
    log, t0 = ctx.main_log, time.perf_counter()
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, 0, cfg.val_fraction, cfg.seed)
    run_folder = Run(ctx.run_dir)
    if ctx.info.is_main:
        run_folder.write_json("data.json", data.info(cfg.dataset))
    log(f"{cfg.dataset}: {len(data.train):,} train / {len(data.val):,} validation / {len(data.test):,} test images")
    sources = {s: train_zoo_model(cfg, s, s, data, ctx, cfg.seed + i) for i, s in enumerate(cfg.sources)}
    target = train_zoo_model(cfg, "target", cfg.target, data, ctx, cfg.seed + 100)
    robust = standard = None
    if "pgd-at" in cfg.defense:
        standard = train_zoo_model(cfg, "standard", cfg.at_model, data, ctx, cfg.seed + 200)
        robust = train_zoo_model(cfg, "pgd-at", cfg.at_model, data, ctx, cfg.seed + 200, adversarial=True)
    if not ctx.info.is_main:
        return {}
    sets = data.sample(cfg.attack_images, cfg.seed)
    x, y = sets["test"]
    test_all = (to_pixels(data.test.images), data.test.labels)
    results: dict[str, Any] = {"clean_test_acc": {k: accuracy(m, *test_all) for k, m in
                                                  {**sources, "target": target}.items()}}
    log("white box: FGSM and PGD against every model")
    results["white_box"] = run_white_box(cfg, {**sources, "target": target}, x, y)
    log("HW10's ladder: transfer attacks on the held-out model")
    ensemble = Ensemble(list(sources.values())).eval()
    results["ladder"], adv = run_ladder(cfg, sources[cfg.sources[0]], ensemble, target, sets)
    boss_examples = {"clean": x[:8], "adversarial": adv["boss"][:8], "labels": y[:8]}
    results["defenses"] = run_defenses(cfg, target, x, y, adv["boss"]) if set(cfg.defense) & set(DEFENSES) else []
    if robust is not None:
        log(f"adversarial training: PGD-AT {cfg.at_model} against the same network trained normally")
        results["adversarial_training"] = run_adversarial_training(cfg, robust, standard, test_all, x, y)
    if cfg.one_pixel_images:
        log(f"one-pixel attack on {cfg.one_pixel_images} images")
        results["one_pixel"] = run_one_pixel(cfg, target, x, y)
    if cfg.uap_eps:
        log("universal adversarial perturbation")
        results["universal"] = run_universal(cfg, {**sources, "target": target}, sets["validation"], (x, y),
                                             run_folder)
    if cfg.photos:
        log("MobileNetV2 on scikit-image's photos: white-box PGD")
        results["photos"] = run_photos(cfg, run_folder)
    results["seconds"] = time.perf_counter() - t0
    run_folder.write_json("attacks.json", results)
    with atomic_path(run_folder / "examples.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in boss_examples.items()}, str(tmp))
    lad = results["ladder"]["ladder"]
    log("ladder (held-out accuracy): " + " > ".join(f"{100 * r['test_acc']:.1f}%" for r in lad)
        + f"; report: {report(run_folder)}")
    return {"ladder_test_acc": [r["test_acc"] for r in lad], "ladder_holds": results["ladder"]["holds"]}


def run_photos(cfg: AdversarialConfig, run_folder: Run) -> dict[str, Any]:
    """MobileNetV2 (ImageNet) on scikit-image's photos: its top-5, then white-box PGD away from its own top-1 at
    4/255 and 8/255; the figure of the 8/255 images."""
    from deepnotes.models.mobilenet import (imagenet_class_names, imagenet_classifier, imagenet_photo_batch,
                                            load_pretrained_mobilenet_v2)

    names = imagenet_class_names()
    model = imagenet_classifier(load_pretrained_mobilenet_v2()).eval()
    photos, x = imagenet_photo_batch()  # (N, 3, 224, 224) in [0, 1]
    with torch.no_grad():
        prob = model(x).softmax(-1)
    top1 = prob.argmax(-1)
    out: dict[str, Any] = {"photos": list(photos), "clean": [
        [[names[int(i)], float(p)] for p, i in zip(*prob[k].topk(5))] for k in range(len(photos))], "attacks": {}}
    g = torch.Generator().manual_seed(cfg.seed + 4)
    for eps in (4 / 255, 8 / 255):
        adv = pgd(model, x, top1, eps, 2.5 * eps / 10, 10, generator=g)
        with torch.no_grad():
            p_adv = model(adv).softmax(-1)
        out["attacks"][f"{round(255 * eps)}/255"] = [
            {"top1": names[int(p_adv[k].argmax())], "p": float(p_adv[k].max()),
             "p_clean_class": float(p_adv[k, top1[k]]), "fooled": bool(p_adv[k].argmax() != top1[k])}
            for k in range(len(photos))]
    plot_adversarial_triples(x, adv, [names[int(i)] for i in top1], [names[int(p.argmax())] for p in p_adv],
                             run_folder / "photos_pgd.png", title="MobileNetV2, PGD-10 at 8/255 (top-1 above)")
    return out


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data DATASET|FOLDER]``: the saved models' ladder and PGD-AT figures on a test split."""
    from deepnotes.data.images import load_test_split

    cfg, d = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, d["classes"], cfg.data_dir)
    load = lambda key, zoo: load_model(run, key, zoo).to(device)  # noqa: E731
    sources = {s: load(s, s) for s in cfg.sources}
    target = load("target", cfg.target)
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(split), generator=g)[:cfg.attack_images]
    x, y = to_pixels(split.images[idx]), split.labels[idx]
    boss = run.read_json("attacks.json")["ladder"]["ladder"][3]["rung"]  # chosen on validation by the run
    ladder, _ = run_ladder(cfg, sources[cfg.sources[0]], Ensemble(list(sources.values())).eval(), target,
                           {"test": (x, y)}, boss=boss)
    metrics: dict[str, Any] = {"data": name, "images": len(y), "target_clean_acc": accuracy(target, x, y)}
    metrics |= {r["rung"].split(":")[0]: r["test_acc"] for r in ladder["ladder"]}
    if "pgd-at" in cfg.defense and (run / "models" / "pgd-at" / "model.safetensors").is_file():
        at = run_adversarial_training(cfg, load("pgd-at", cfg.at_model), load("standard", cfg.at_model),
                                      (x, y), x, y)
        metrics |= {f"{k} {m}": v for k, row in at["rows"].items() for m, v in row.items()}
    run.write_eval(name, metrics)
    return metrics


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def eps_text(eps: float) -> str:
    """8/255 for a whole number of grey levels, else the number (0.1)."""
    return f"{round(255 * eps)}/255" if abs(255 * eps - round(255 * eps)) < 1e-6 else f"{eps:g}"


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from attacks.json and examples.safetensors."""
    cfg, res = run.config, run.read_json("attacks.json")
    lad, wb = res["ladder"], res["white_box"]
    eps_txt = eps_text(cfg.eps)
    plot_accuracy_vs_eps({k: {a: v[a] for a in v if a != "clean_acc"} for k, v in wb["models"].items()}, wb["eps"],
                         run / "white_box.png", title="white-box accuracy against the L-inf budget")
    plot_bars([r["rung"].split(":")[0] for r in lad["ladder"]], [r["test_acc"] for r in lad["ladder"]],
              run / "ladder.png", "held-out accuracy (%)", title=f"HW10's ladder at eps {eps_txt} ({cfg.target})")
    ex = load_file(str(run / "examples.safetensors"))
    classes = run.read_json("data.json")["classes"]
    report_ = Report(run, f"{NAME}: attacks on {cfg.dataset} classifiers and on MobileNetV2", intro=(
        f"ML2021/2022 'Adversarial Attack', HW10. Sources (the attacker's ensemble): {', '.join(cfg.sources)}; "
        f"held-out target: {cfg.target}; {len(ex['labels']) and cfg.attack_images} test images attacked."))
    report_.results([[r["rung"], pct(r["validation_acc"]), pct(r["test_acc"])] for r in lad["ladder"]],
                    headers=("rung (held-out model's accuracy)", "validation", "test"),
                    note=f"Each rung below the one above: **{'holds' if lad['holds'] else 'does not hold'}** "
                         f"(eps {eps_txt}; boss chosen on validation from {', '.join(lad['ladder'][3]['chosen_from'])}).")
    report_.baselines([[a, b] for a, b in HW10_BASELINES], headers=("HW10 (CIFAR-10, eps 8/255; not comparable)",
                                                                    "accuracy"))
    report_.table("Every candidate", ["attack", "surrogate", "surrogate acc (test)", "held-out acc (val)",
                                      "held-out acc (test)", "seconds (test)"],
                  [[r["rung"], r["surrogate"], pct(r["test_surrogate_acc"]), pct(r["validation_acc"]),
                    pct(r["test_acc"]), f"{r['test_seconds']:.1f}"] for r in lad["rows"]])
    report_.figure("The ladder", "ladder.png")
    plot_adversarial_triples(ex["clean"], ex["adversarial"], [classes[int(i)] for i in ex["labels"]],
                             [classes[int(i)] for i in predict(load_model(run, "target", cfg.target), ex["adversarial"])],
                             run / "boss_examples.png", title=f"the boss's transfer images at {eps_txt}")
    report_.figure("Transfer examples (true class above, held-out model's prediction below)", "boss_examples.png")
    report_.table("White box", ["model", "clean"] + [f"{a} @ {eps_text(e)}" for a in ("FGSM", f"PGD-{cfg.pgd_steps}")
                                                      for e in wb["eps"]],
                  [[k, pct(v["clean_acc"])] + [pct(a) for a in v["FGSM"] + v[f"PGD-{cfg.pgd_steps}"]]
                   for k, v in wb["models"].items()])
    report_.figure("Accuracy against eps", "white_box.png")
    if res["defenses"]:
        d = res["defenses"]
        report_.table(f"Passive defenses in front of the held-out model (eps {eps_txt})",
                      ["defense", "clean", "transfer (boss)", "adaptive white box", "adaptive attack",
                       "falls to the adaptive attacker"],
                      [[r["defense"], pct(r["clean_acc"]), pct(r["transfer_acc"]), pct(r["adaptive_acc"]),
                        r["adaptive"], "" if r["defense"] == "none" else
                        "yes" if r["adaptive_acc"] < r["transfer_acc"] - 0.10 else "no"] for r in d],
                      note="A defense falls when the attacker who knows it (white box through the filter, BPDA for "
                           "JPEG, EOT for the random one) takes its accuracy more than 10 points below what the "
                           "transfer attack left.")
    if "adversarial_training" in res:
        at = res["adversarial_training"]
        report_.table(f"Adversarial training (PGD-AT, {at['model']}, eps {at['eps']:g})",
                      ["model", "clean (all test images)", f"FGSM @ {at['eps']:g}", f"PGD-{cfg.pgd_steps} @ {at['eps']:g}"],
                      [[k, pct(row["clean_acc"]), pct(row["FGSM_acc"]), pct(row[f"PGD-{cfg.pgd_steps}_acc"])]
                       for k, row in at["rows"].items()],
                      note=f"Target (>= 70% under PGD, clean >= 85%, undefended < 10%): "
                           f"**{'met' if at['target_met'] else 'not met'}**.")
    if "one_pixel" in res:
        op = res["one_pixel"]
        report_.table(f"One-pixel attack (Su et al. 2019) on the held-out model, {op['images']} test images",
                      ["pixels changed", "accuracy"], [["0 (clean)", pct(op["clean_acc"])]]
                      + [[k, pct(a)] for k, a in op["acc"].items()])
    if "universal" in res:
        un = res["universal"]
        v = load_file(str(run / "universal.safetensors"))["v"]
        plot_adversarial_triples(ex["clean"][:4], (ex["clean"][:4] + v).clamp(0, 1), ["clean"] * 4, ["+ v"] * 4,
                                 run / "universal.png", title=f"one universal perturbation, eps {un['eps']:g}")
        report_.table(f"Universal perturbation (Moosavi-Dezfooli et al. 2017), eps {un['eps']:g}, from "
                      f"{un['images']} validation images of the held-out model", ["model", "fooling rate", "accuracy"],
                      [[k, pct(un["fooling_rate"][k]), pct(un["acc"][k])] for k in un["acc"]])
        report_.figure("The universal perturbation", "universal.png")
    if "photos" in res:
        ph = res["photos"]
        rows = [[p, ", ".join(f"{n} {100 * q:.0f}%" for n, q in ph["clean"][k])]
                + [f"{a[k]['top1']} {100 * a[k]['p']:.0f}%" for a in ph["attacks"].values()]
                for k, p in enumerate(ph["photos"])]
        report_.table("MobileNetV2 on scikit-image's photos (white-box PGD-10 away from its own top-1)",
                      ["photo", "clean top-5"] + [f"top-1 after PGD {e}" for e in ph["attacks"]], rows)
        report_.figure("MobileNetV2, 8/255", "photos_pgd.png")
    return report_.write()


LAB = Lab(
    name=NAME,
    summary="white-box and transfer attacks, HW10's ladder, defenses and PGD-AT, MobileNetV2 on photos",
    source="ML2021/2022 Adversarial Attack, HW10",
    default_dataset="fashion-mnist",
    metric="held-out accuracy under the boss attack",
    config_cls=AdversarialConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
