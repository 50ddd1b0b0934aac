"""Lab ``image-translation``: pix2pix on paired images (Fashion-MNIST edge maps -> images) and CycleGAN on unpaired
ones (MNIST digits <-> MNIST-M-style photo-textured digits), scored by whether the class survives translation.

Sources: EE-559 (Fleuret) conditional GAN and pix2pix slides; ML2021 (Hung-yi Lee) "GAN (4)": conditional
generation and CycleGAN. Isola et al., CVPR 2017 (pix2pix: U-Net, PatchGAN on the (input, output) pair,
lambda_L1 = 100, the L1-only ablation); Zhu et al., ICCV 2017 (CycleGAN: G: A -> B, F: B -> A, two PatchGANs,
least-squares loss, lambda_cyc = 10, identity weight 0.5 lambda_cyc). Techniques: :mod:`deepnotes.nn.image_translation`
(objectives), :mod:`deepnotes.models.image_translation` (``unet-generator``, ``patchgan-discriminator``),
:mod:`deepnotes.train.image_translation` (the tasks), :mod:`deepnotes.data.edges` (Canny), and
:func:`deepnotes.data.shift.blend_with_photos` (the MNIST-M recipe, shared with the domain-adaptation lab).

Paired task: ``--dataset`` (Fashion-MNIST) training images (``--limit-train``, ``--val-fraction`` held out for the
per-epoch curves) and their Canny edge maps (``--edge-sigma``). Models: ``pix2pix`` and ``l1-unet`` (the same U-Net,
L1 only). Test scores: L1 and SSIM (scikit-image, data_range 1) of the outputs to the real images, in pixels in
[0, 1]; the judge's accuracy on them. Baselines: the edge map itself, the mean training image, the real images.

Unpaired task: mnist-subset's training digits minus a validation share, cut in two disjoint halves (seeded): domain
A = half A's digits (1 channel), domain B = half B's digits blended with photo crops (3 channels, the seed of
dataset ``mnist-m``), so no digit appears in both. Test A = mnist-subset's test digits, test B = dataset ``mnist-m``'s
test split (the same digits blended). Model ``cyclegan``. Judges: a classifier trained on domain A, one on domain B.
Scores: judge B on G(test A), judge A on F(test B), against the untranslated images (the domain-shift drop) and the
judges' own domains; cycle L1; and F(test B) against the digit it was blended from (L1, SSIM).

Files it leaves in the run folder (beside config.json):
    data.json                      split sizes and sources
    models/<judge>/                judge-paired, judge-a, judge-b: Trainer folders and result.json (val/test accuracy)
    models/<model>/                pix2pix, l1-unet, cyclegan: Trainer folders (metrics.csv with per-epoch validation
                                   columns), result.json (test scores), samples.safetensors (the report's examples)
    results.json                   everything above in one file, with the checks
    report.md + *.png              paired_samples.png, unpaired_samples.png, val_l1.png, cycle_val_acc.png

Over 400 lines: two tasks (paired and unpaired), three judges, the baselines, an ``eval`` that re-scores both tasks,
and a colour figure (the shared image-panel plot draws grey images only); the techniques live one floor down.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from skimage.metrics import structural_similarity
from torch import nn

from deepnotes.data.edges import canny_edges
from deepnotes.data.image_batches import pixel_preparer
from deepnotes.data.images import get_image_dataset, load_held_out, load_test_split, to_pixels
from deepnotes.data.shift import SHIFT_DATASETS, blend_with_photos
from deepnotes.data.splits import stratified_holdout
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.metrics.robustness import accuracy
from deepnotes.models.pixels import ZooName, build_pixel_model
from deepnotes.models.registry import create_model
from deepnotes.report.gan_plots import plot_curves, plot_image_panels
from deepnotes.report.plots import new_figure, save_figure
from deepnotes.train import EpochScores, TensorBatches, Trainer, supervised_trainer
from deepnotes.train.batches import seed_for
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.image_translation import CycleGANTask, Pix2PixTask, UnpairedBatches, match_channels, to_signed

NAME = "image-translation"
MODELS = ("pix2pix", "l1-unet", "cyclegan")
SHOW = 8  # examples per figure


@dataclass(frozen=True)
class ImageTranslationConfig(TrainConfig):
    epochs: int = option(8, "pix2pix and L1-only epochs over the paired training images")
    batch_size: int = option(64, "paired images per update (pix2pix, L1-only)")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "the judges' optimizer (the translators use Adam)")
    lr: float = option(2e-4, "Adam's learning rate of every generator and discriminator (the papers': 2e-4)")
    momentum: float = option(0.5, "Adam's beta1 of the translators (the papers': 0.5)")
    weight_decay: float = option(0.0, "the judges' weight decay (none for the translators)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "constant", "learning-rate schedule of the translators")
    warmup: float = option(0.0, "share of all updates warming the learning rate up")
    models: tuple[str, ...] = option(MODELS, f"models to train, from: {', '.join(MODELS)}", nonempty=True)
    dataset: str = option("fashion-mnist", "the paired task's grey 28x28 dataset (see `deepnotes data list`)")
    limit_train: int = option(20000, "paired task: the first N training images (0 = all)", range="[0, 1000000000]")
    limit_test: int = option(0, "paired task: the first N test images (0 = all)", range="[0, 1000000000]")
    val_fraction: float = option(0.1, "share of each class's training images held out for validation (both tasks)",
                                 range="(0, 0.5]")
    val_samples: int = option(1000, "validation images scored after every epoch", range="[10, 100000]")
    edge_sigma: float = option(1.0, "Canny's Gaussian smoothing, in pixels", range="[0, 10]")
    width: int = option(32, "paired U-Net channels at 28x28 (2x at 14x14, 4x at 7x7)", range="[1, 512]")
    d_width: int = option(32, "PatchGAN channels of its first layer (2x after), both tasks", range="[1, 512]")
    patch_layers: int = option(1, "PatchGAN's extra 3x3 layers (0: 10x10 patches; +8 pixels each)", range="[0, 4]")
    l1_weight: float = option(100.0, "pix2pix's lambda_L1 (Isola et al.: 100)", range="[0, 10000]")
    gan_loss: Literal["nonsaturating", "least-squares"] = option("nonsaturating", "pix2pix's GAN loss")
    cycle_epochs: int = option(15, "CycleGAN epochs", range="[1, 100000]")
    cycle_steps: int = option(300, "CycleGAN updates per epoch", range="[1, 1000000]")
    cycle_batch_size: int = option(16, "CycleGAN images of each domain per update", range="[1, 4096]")
    cycle_width: int = option(16, "CycleGAN U-Nets' channels at 28x28", range="[1, 512]")
    cycle_weight: float = option(10.0, "CycleGAN's lambda_cyc (Zhu et al.: 10)", range="[0, 10000]")
    identity_weight: float = option(5.0, "CycleGAN's identity weight (Zhu et al.: 0.5 lambda_cyc)", range="[0, 10000]")
    classifier: ZooName = option("lenet5", "the judges' architecture (each trained on its own domain)")
    classifier_epochs: int = option(8, "paired judge's epochs", range="[1, 1000]")
    digit_classifier_epochs: int = option(10, "domain A and B judges' epochs", range="[1, 1000]")
    classifier_lr: float = option(2e-3, "the judges' peak learning rate (AdamW, one-cycle)", range="(0, inf)")

    def check(self) -> None:
        super().check()
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            raise UserError(f"--models: unknown {', '.join(bad)}; choose from {', '.join(MODELS)}")
        if len(set(self.models)) < len(self.models):
            raise UserError("--models must not repeat a value")
        get_image_dataset(self.dataset, "--dataset")
        if 0 < self.limit_train < 100:
            raise UserError(f"--limit-train {self.limit_train}: the paired task needs at least 100 training images")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 1, "batch_size": 32, "limit_train": 400, "limit_test": 100, "val_samples": 20, "width": 4,
             "d_width": 4, "cycle_epochs": 2, "cycle_steps": 3, "cycle_batch_size": 8, "cycle_width": 4,
             "classifier_epochs": 1, "digit_classifier_epochs": 1},
}


# ------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Domains:
    """The unpaired task's images (uint8) and labels: train halves A and B, validation and test of each domain."""

    train_a: tuple[torch.Tensor, torch.Tensor]
    train_b: tuple[torch.Tensor, torch.Tensor]
    val_a: tuple[torch.Tensor, torch.Tensor]
    val_b: tuple[torch.Tensor, torch.Tensor]
    test_a: tuple[torch.Tensor, torch.Tensor]
    test_b: tuple[torch.Tensor, torch.Tensor]


def load_domains(cfg: ImageTranslationConfig) -> Domains:
    """Disjoint halves of mnist-subset's training digits (A raw, B blended as MNIST-M), validation digits of each
    domain (blended with another seed), and the test digits raw and as dataset ``mnist-m``'s test split."""
    mm = SHIFT_DATASETS["mnist-m"]
    digits = get_image_dataset("mnist-subset")
    train, test, test_b = digits.load("train"), digits.load("test"), mm.load("test")
    rest, val = stratified_holdout(train.labels, cfg.val_fraction, cfg.seed)
    perm = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed_for(cfg.seed, 31)))]
    a, b = perm[:len(perm) // 2], perm[len(perm) // 2:]
    blend = lambda idx, s: blend_with_photos(train.images[idx], mm.photos, s, mm.short_side)  # noqa: E731
    return Domains((train.images[a], train.labels[a]), (blend(b, mm.seed), train.labels[b]),
                   (train.images[val], train.labels[val]), (blend(val, mm.seed + 2), train.labels[val]),
                   (test.images, test.labels), (test_b.images, test_b.labels))


# ------------------------------------------------------------------------------------------------- scoring
@torch.no_grad()
def translate(G: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """uint8 (N, C, 28, 28) -> G's outputs as pixels in [0, 1] (N, C', 28, 28), in eval mode."""
    was, device = G.training, next(G.parameters()).device
    G.eval()
    out = torch.cat([G(to_signed(images[i:i + batch], device)).float().cpu() for i in range(0, len(images), batch)])
    G.train(was)
    return out.add(1).div(2).clamp(0, 1)


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> uint8 0-255 (a translation saved as an 8-bit image, e.g. before translating it back)."""
    return pixels.mul(255).round().to(torch.uint8)


def image_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean L1 and mean SSIM (skimage, data_range 1, 7x7 windows, channel axis for colour) over images; pixels in
    [0, 1], (N, C, H, W) each."""
    p, t = pred.permute(0, 2, 3, 1).double().numpy(), target.permute(0, 2, 3, 1).double().numpy()
    ssim = [structural_similarity(a, b, data_range=1.0, channel_axis=2) for a, b in zip(p, t)]
    return {"l1": float(np.abs(p - t).mean()), "ssim": float(np.mean(ssim))}


# ------------------------------------------------------------------------------------------------- training
def judge_model(cfg: ImageTranslationConfig, channels: int, images: torch.Tensor) -> nn.Module:
    """A :data:`~deepnotes.models.pixels.ZOO` classifier of ``channels``-channel pixels in [0, 1], normalized by the
    pixel mean and std of ``images`` (uint8)."""
    px = to_pixels(images)
    return build_pixel_model(cfg.classifier, 10, float(px.mean()), float(px.std()), images[:5000], channels)


def train_judge(cfg: ImageTranslationConfig, name: str, train: tuple[torch.Tensor, torch.Tensor], epochs: int,
                held_out: dict[str, tuple[torch.Tensor, torch.Tensor]], ctx: RunContext) -> tuple[nn.Module, dict]:
    """The classifier in ``models/<name>/`` (kept when a resumed run finished it) and its accuracies."""
    folder = ctx.run_dir / "models" / name
    torch.manual_seed(cfg.seed)
    model = judge_model(cfg, train[0].shape[1], train[0]).to(ctx.device)
    if ctx.resume and (folder / "result.json").is_file():
        return Run(folder).load_weights(model).eval(), Run(folder).read_json("result.json")
    jcfg = dataclasses.replace(cfg, epochs=epochs, lr=cfg.classifier_lr, batch_size=128, schedule="onecycle",
                               warmup=0.2, momentum=0.9)
    trainer = supervised_trainer(jcfg, model, folder, train, pixel_preparer(ctx.device), {}, ctx.device, ctx.info,
                                 lambda m: ctx.main_log(f"[{name}] {m}"))
    trainer.fit_or_load(ctx.resume)
    res = {f"{k}_acc": accuracy(model, to_pixels(x), y) for k, (x, y) in held_out.items()}
    Run(folder).write_json("result.json", res)
    return model.eval(), res


def fit(cfg: ImageTranslationConfig, name: str, model: nn.ModuleDict, task: Any, batches: Any, score: Any,
        ctx: RunContext) -> float:
    folder = ctx.run_dir / "models" / name
    trainer = Trainer(cfg, task, folder, batches, {}, ctx.device, ctx.info, lambda m: ctx.main_log(f"[{name}] {m}"),
                      callbacks=[EpochScores(score)])
    return trainer.fit_or_load(ctx.resume)


def paired_scores(G: nn.Module, edges: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                  judge: nn.Module) -> dict[str, float]:
    out = translate(G, edges)
    return {**image_scores(out, to_pixels(images)), "acc": accuracy(judge, out, labels)}


def build_paired(cfg: ImageTranslationConfig, name: str) -> nn.ModuleDict:
    """``pix2pix``: a U-Net and a conditional PatchGAN; ``l1-unet``: the U-Net alone."""
    torch.manual_seed(seed_for(cfg.seed, 41))
    nets = {"generator": create_model("unet-generator", width=cfg.width)}
    if name == "pix2pix":
        nets["discriminator"] = create_model("patchgan-discriminator", cond_channels=1, width=cfg.d_width,
                                             extra_layers=cfg.patch_layers)
    return nn.ModuleDict(nets)


def build_cyclegan(cfg: ImageTranslationConfig, ca: int, cb: int) -> nn.ModuleDict:
    """G: A -> B, F: B -> A (U-Nets) and PatchGANs D_A, D_B for domains of ``ca`` and ``cb`` channels."""
    torch.manual_seed(seed_for(cfg.seed, 43))
    unet = lambda i, o: create_model("unet-generator", in_channels=i, out_channels=o, width=cfg.cycle_width)  # noqa
    patch = lambda c: create_model("patchgan-discriminator", in_channels=c, width=cfg.d_width,  # noqa: E731
                                   extra_layers=cfg.patch_layers)
    return nn.ModuleDict({"g_ab": unet(ca, cb), "g_ba": unet(cb, ca), "d_a": patch(ca), "d_b": patch(cb)})


def train_paired(cfg: ImageTranslationConfig, name: str, data: dict[str, Any], judge: nn.Module,
                 ctx: RunContext) -> None:
    """pix2pix or the L1-only U-Net on (edges, images): trained, scored on the test split, examples saved."""
    folder = ctx.run_dir / "models" / name
    if ctx.resume and (folder / "result.json").is_file():
        return ctx.main_log(f"[{name}] finished in an earlier session; kept")
    model = build_paired(cfg, name).to(ctx.device)
    task = Pix2PixTask(model, cfg.l1_weight, cfg.lr, (cfg.momentum, cfg.beta2), cfg.gan_loss)
    ve, vi, vy = (t[:cfg.val_samples] for t in data["val"])
    score = lambda m: {f"val_{k}": v for k, v in paired_scores(m["generator"], ve, vi, vy, judge).items()}  # noqa
    seconds = fit(cfg, name, model, task, TensorBatches(data["train"][:2], cfg.batch_size, cfg.seed, ctx.info),
                  score, ctx)
    G = model["generator"]
    edges, images, labels = data["test"]
    Run(folder).write_json("result.json", {**paired_scores(G, edges, images, labels, judge), "train_time_s": seconds})
    with atomic_path(folder / "samples.safetensors") as tmp:
        save_file({"output": translate(G, edges[:SHOW]).contiguous(), "edges": to_pixels(edges[:SHOW]),
                   "real": to_pixels(images[:SHOW])}, str(tmp))


def train_cyclegan(cfg: ImageTranslationConfig, dom: Domains, judges: dict[str, nn.Module], ctx: RunContext) -> None:
    """CycleGAN on the disjoint halves: trained, scored on the test digits, examples saved."""
    folder = ctx.run_dir / "models" / "cyclegan"
    if ctx.resume and (folder / "result.json").is_file():
        return ctx.main_log("[cyclegan] finished in an earlier session; kept")
    model = build_cyclegan(cfg, dom.train_a[0].shape[1], dom.train_b[0].shape[1]).to(ctx.device)
    task = CycleGANTask(model, cfg.cycle_weight, cfg.identity_weight, cfg.lr, (cfg.momentum, cfg.beta2))
    batches = UnpairedBatches(dom.train_a[0], dom.train_b[0], cfg.cycle_batch_size, cfg.seed, cfg.cycle_steps)
    n = cfg.val_samples

    def score(m: nn.ModuleDict) -> dict[str, float]:
        return {"val_acc_ab": accuracy(judges["b"], translate(m["g_ab"], dom.val_a[0][:n]), dom.val_a[1][:n]),
                "val_acc_ba": accuracy(judges["a"], translate(m["g_ba"], dom.val_b[0][:n]), dom.val_b[1][:n])}
    seconds = fit(dataclasses.replace(cfg, epochs=cfg.cycle_epochs, batch_size=cfg.cycle_batch_size), "cyclegan",
                  model, task, batches, score, ctx)
    Run(folder).write_json("result.json", {**cycle_scores(model, dom.test_a, dom.test_b, judges),
                                           "train_time_s": seconds})
    a, b = dom.test_a[0][:SHOW], dom.test_b[0][:SHOW]
    ga, fb = translate(model["g_ab"], a), translate(model["g_ba"], b)
    with atomic_path(folder / "samples.safetensors") as tmp:
        save_file({"a": to_pixels(a), "g_a": ga, "f_g_a": translate(model["g_ba"], to_uint8(ga)), "b": to_pixels(b),
                   "f_b": fb, "g_f_b": translate(model["g_ab"], to_uint8(fb))}, str(tmp))


def cycle_scores(model: nn.ModuleDict, test_a: tuple, test_b: tuple, judges: dict[str, nn.Module]) -> dict[str, Any]:
    """Judge B on G(a), judge A on F(b), the untranslated and own-domain baselines, cycle L1, F(b) vs its digit."""
    (a, ya), (b, yb) = test_a, test_b
    ga, fb = translate(model["g_ab"], a), translate(model["g_ba"], b)
    pa, pb = to_pixels(a), to_pixels(b)
    return {"acc_b_on_g_a": accuracy(judges["b"], ga, ya),
            "acc_b_on_a": accuracy(judges["b"], match_channels(pa, 3), ya),
            "acc_b_on_b": accuracy(judges["b"], pb, yb),
            "acc_a_on_f_b": accuracy(judges["a"], fb, yb),
            "acc_a_on_b": accuracy(judges["a"], match_channels(pb, 1), yb),
            "acc_a_on_a": accuracy(judges["a"], pa, ya),
            "cycle_l1_a": float((translate(model["g_ba"], to_uint8(ga)) - pa).abs().mean()),
            "cycle_l1_b": float((translate(model["g_ab"], to_uint8(fb)) - pb).abs().mean()),
            "f_b_vs_digit": image_scores(fb, pa) if len(a) == len(b) else None,
            "grey_b_vs_digit": image_scores(match_channels(pb, 1), pa) if len(a) == len(b) else None}


# ------------------------------------------------------------------------------------------------- run
def paired_data(cfg: ImageTranslationConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    data = load_held_out(cfg.dataset, None, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)
    split = lambda s: (canny_edges(s.images, cfg.edge_sigma), s.images, s.labels)  # noqa: E731
    return {"train": split(data.train), "val": split(data.val), "test": split(data.test)}, data.info(cfg.dataset)


def run(cfg: ImageTranslationConfig, ctx: RunContext) -> dict[str, Any]:
    """``deepnotes run image-translation``: judges, pix2pix and L1-only U-Net, CycleGAN, the summary, the report."""
    if ctx.info.world_size > 1:
        raise UserError("the image-translation lab runs in one process; launch it without torchrun")
    folder = Run(ctx.run_dir)
    data, info = paired_data(cfg)
    dom = load_domains(cfg)
    info.update({"n_train_a": len(dom.train_a[1]), "n_train_b": len(dom.train_b[1]), "n_val_digits": len(dom.val_a[1]),
                 "n_test_digits": len(dom.test_a[1])})
    folder.write_json("data.json", info)
    judge, jres = train_judge(cfg, "judge-paired", data["train"][1:], cfg.classifier_epochs,
                              {"val": data["val"][1:], "test": data["test"][1:]}, ctx)
    for name in ("pix2pix", "l1-unet"):
        if name in cfg.models:
            train_paired(cfg, name, data, judge, ctx)
    if "cyclegan" in cfg.models:
        judges = {k: train_judge(cfg, f"judge-{k}", getattr(dom, f"train_{k}"), cfg.digit_classifier_epochs,
                                 {"val": getattr(dom, f"val_{k}"), "test": getattr(dom, f"test_{k}")}, ctx)[0]
                  for k in ("a", "b")}
        train_cyclegan(cfg, dom, judges, ctx)
    results = summarize(folder, cfg, data)
    folder.write_json("results.json", results)
    ctx.log(f"report: {report(folder)}")
    return {f"{m} {k}": v for m, r in results["models"].items() for k, v in r.items() if isinstance(v, float)}


def summarize(run: Run, cfg: ImageTranslationConfig, data: dict[str, Any]) -> dict[str, Any]:
    """results.json: the judges, every model's result, the paired baselines and the checks."""
    edges, images, labels = data["test"]
    px = to_pixels(images)
    mean_image = to_pixels(data["train"][1]).mean(0, keepdim=True).expand_as(px)
    judge = run.read_json("models/judge-paired/result.json")
    out: dict[str, Any] = {"judges": {"paired": judge}, "models": {}}
    judge_net = run.load_weights(judge_model(cfg, 1, images), "models/judge-paired/model.safetensors")
    out["baselines"] = {"edges": {**image_scores(to_pixels(edges), px), "acc": accuracy(judge_net, to_pixels(edges),
                                                                                        labels)},
                        "mean image": {**image_scores(mean_image, px), "acc": accuracy(judge_net, mean_image, labels)},
                        "real": {"l1": 0.0, "ssim": 1.0, "acc": judge["test_acc"]}}
    for m in cfg.models:
        out["models"][m] = run.read_json(f"models/{m}/result.json")
    if "cyclegan" in cfg.models:
        out["judges"].update({k: run.read_json(f"models/judge-{k}/result.json") for k in ("a", "b")})
    ms, checks = out["models"], {}
    for m in ("pix2pix", "l1-unet"):
        if m in ms:
            checks[f"{m}_beats_edges_ssim"] = ms[m]["ssim"] > out["baselines"]["edges"]["ssim"]
            checks[f"{m}_beats_edges_acc"] = ms[m]["acc"] > out["baselines"]["edges"]["acc"]
    if "cyclegan" in ms:
        c = ms["cyclegan"]
        checks["g_beats_untranslated"] = c["acc_b_on_g_a"] > c["acc_b_on_a"]
        checks["f_beats_untranslated"] = c["acc_a_on_f_b"] > c["acc_a_on_b"]
    out["checks"] = checks
    return out


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data X]``: the paired models re-scored on the run's test split or on ``X``'s (edges
    made the same way); without ``--data``, CycleGAN re-scored on the test digits too."""
    cfg, info = run.config, run.read_json("data.json")
    split, name = load_test_split(data, cfg.dataset, info["classes"])
    if data is None:
        split = split.head(cfg.limit_test)
    edges = canny_edges(split.images, cfg.edge_sigma)
    load = lambda net, path: run.load_weights(net, path).to(device).eval()  # noqa: E731
    judge = load(judge_model(cfg, 1, split.images), "models/judge-paired/model.safetensors")
    out: dict[str, Any] = {"data": name, "n": len(split)}
    for m in ("pix2pix", "l1-unet"):
        if m in cfg.models:
            G = load(build_paired(cfg, m), f"models/{m}/model.safetensors")["generator"]
            out.update({f"{m} {k}": v for k, v in paired_scores(G, edges, split.images, split.labels, judge).items()})
    if "cyclegan" in cfg.models and data is None:
        dom = load_domains(cfg)
        judges = {k: load(judge_model(cfg, getattr(dom, f"test_{k}")[0].shape[1], getattr(dom, f"test_{k}")[0]),
                          f"models/judge-{k}/model.safetensors") for k in ("a", "b")}
        model = load(build_cyclegan(cfg, dom.test_a[0].shape[1], dom.test_b[0].shape[1]),
                     "models/cyclegan/model.safetensors")
        out.update({f"cyclegan {k}": v for k, v in cycle_scores(model, dom.test_a, dom.test_b, judges).items()
                    if isinstance(v, float)})
    run.write_eval(name, out)
    return out


# ------------------------------------------------------------------------------------------------- report
def plot_rgb_rows(rows: dict[str, torch.Tensor], path: Path, title: str) -> Path:
    """One strip of images per row (pixels in [0, 1], (N, 1 or 3, H, W)), grey images shown grey."""
    fig = new_figure(1.0 + 0.75 * max(len(v) for v in rows.values()), 0.8 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (name, imgs) in zip(axes, rows.items()):
        imgs = imgs.expand(-1, 3, -1, -1) if imgs.shape[1] == 1 else imgs
        strip = torch.cat([torch.nn.functional.pad(i, (1, 1, 1, 1), value=1.0) for i in imgs], 2)  # (3, H+2, N(W+2))
        ax.imshow(strip.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from results.json and the saved samples."""
    cfg, res, info = run.config, run.read_json("results.json"), run.read_json("data.json")
    ms, base, pct = res["models"], res["baselines"], lambda x: f"{100 * x:.1f}%"  # noqa: E731
    rep = Report(run, f"{NAME}: pix2pix on {cfg.dataset} edge maps, CycleGAN between MNIST and MNIST-M", intro=(
        f"EE-559 pix2pix slides; ML2021 GAN (4). Paired: {info['n_train']} training images and their Canny edge "
        f"maps (sigma {cfg.edge_sigma}), U-Net width {cfg.width}, PatchGAN width {cfg.d_width}, {cfg.epochs} "
        f"epoch(s) of batch {cfg.batch_size}, lambda_L1 {cfg.l1_weight:g}. Unpaired: {info['n_train_a']} digits (A) "
        f"and {info['n_train_b']} other digits blended with photos (B), {cfg.cycle_epochs} x {cfg.cycle_steps} "
        f"updates of batch {cfg.cycle_batch_size}, U-Net width {cfg.cycle_width}, lambda_cyc {cfg.cycle_weight:g}, "
        f"identity {cfg.identity_weight:g}."))
    rows = [[m, f"{r['l1']:.4f}", f"{r['ssim']:.3f}", pct(r["acc"])] for m, r in ms.items() if m != "cyclegan"]
    rows += [[f"baseline: {k}", f"{r['l1']:.4f}", f"{r['ssim']:.3f}", pct(r["acc"])] for k, r in base.items()]
    rep.results(rows, headers=("paired test (edges -> image)", "L1 (pixels in [0, 1])", "SSIM", "judge accuracy"),
                note=f"The judge: {cfg.classifier} trained on the real training images (test accuracy "
                     f"{pct(res['judges']['paired']['test_acc'])}); its accuracy on a model's outputs says whether "
                     "the class survives translation.")
    if "cyclegan" in ms:
        c = ms["cyclegan"]
        rep.table("Unpaired test (CycleGAN)", ["direction", "judge", "translated", "untranslated", "judge's own domain",
                                               "cycle L1"],
                  [["A -> B: G(digit)", "trained on B", pct(c["acc_b_on_g_a"]), pct(c["acc_b_on_a"]),
                    pct(c["acc_b_on_b"]), f"{c['cycle_l1_a']:.4f}"],
                   ["B -> A: F(blend)", "trained on A", pct(c["acc_a_on_f_b"]), pct(c["acc_a_on_b"]),
                    pct(c["acc_a_on_a"]), f"{c['cycle_l1_b']:.4f}"]],
                  note="Untranslated: the other domain's image shown to the judge as is (grey repeated over 3 "
                       "channels, or the mean of the 3): the domain-shift drop translation should undo. F(blend) "
                       "against the digit it was made from: " + (
                           f"L1 {c['f_b_vs_digit']['l1']:.4f}, SSIM {c['f_b_vs_digit']['ssim']:.3f} (the blend's "
                           f"grey mean: L1 {c['grey_b_vs_digit']['l1']:.4f}, SSIM {c['grey_b_vs_digit']['ssim']:.3f})."
                           if c["f_b_vs_digit"] else "-"))
    rep.baselines([["course baseline", "none published (no numbers for these tasks in the course)"]])
    rep.section("Checks", "\n".join(f"- {k}: **{'yes' if v else 'no'}**" for k, v in res["checks"].items()))
    paired = [m for m in ("l1-unet", "pix2pix") if m in ms]
    if paired:
        samples = {m: load_file(str(run / f"models/{m}/samples.safetensors")) for m in paired}
        panels = {"edge map": (samples[paired[0]]["edges"], 2)}
        panels.update({m: (samples[m]["output"], 2) for m in paired})
        panels["real"] = (samples[paired[0]]["real"], 2)
        plot_image_panels(panels, run / "paired_samples.png", "test edge maps, outputs and the real images")
        rep.figure("Paired task: edges -> image", "paired_samples.png")
        curves = {m: [float(r["val_l1"]) for r in _metrics(run, m)] for m in paired}
        plot_curves(curves, run / "val_l1.png", "validation L1 (pixels in [0, 1])")
        rep.figure("Validation L1 over training", "val_l1.png")
    if "cyclegan" in ms:
        s = load_file(str(run / "models/cyclegan/samples.safetensors"))
        plot_rgb_rows({"digit a": s["a"], "G(a)": s["g_a"], "F(G(a))": s["f_g_a"], "blend b": s["b"], "F(b)": s["f_b"],
                       "G(F(b))": s["g_f_b"]}, run / "unpaired_samples.png", "CycleGAN on test digits")
        rep.figure("Unpaired task: translations and cycles", "unpaired_samples.png")
        hist = _metrics(run, "cyclegan")
        plot_curves({"judge B on G(val A)": [float(r["val_acc_ab"]) for r in hist],
                     "judge A on F(val B)": [float(r["val_acc_ba"]) for r in hist]}, run / "cycle_val_acc.png",
                    "validation accuracy of the judges on translations", log=False)
        rep.figure("CycleGAN: validation accuracy over training", "cycle_val_acc.png")
    return rep.write()


def _metrics(run: Run, model: str) -> list[dict[str, Any]]:
    from deepnotes.report import read_metrics_csv
    return read_metrics_csv(run / "models" / model / "metrics.csv")


LAB = Lab(
    name=NAME,
    summary="pix2pix (edges -> Fashion-MNIST) and CycleGAN (MNIST <-> MNIST-M), judged by whether the class survives",
    source="EE-559 pix2pix; ML2021 GAN (4); Isola et al. 2017; Zhu et al. 2017",
    default_dataset="fashion-mnist",
    metric="paired test SSIM and judge accuracy; CycleGAN judge accuracy",
    config_cls=ImageTranslationConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
