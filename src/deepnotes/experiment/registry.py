"""The Lab protocol and the registry that finds a lab by name.

A lab is a module of :mod:`deepnotes.labs` that defines ``LAB = Lab(...)`` (or several ``Lab`` objects): a config
class, presets, and three entry points the command line calls:

* ``run(cfg, ctx: RunContext) -> dict``: train, evaluate, write the report (``deepnotes run LAB``);
* ``evaluate(run: Run, data: str | None, device) -> dict``: score a finished run (``deepnotes eval RUN``);
* ``report(run: Run) -> Path``: re-render ``report.md`` (``deepnotes report RUN``).

The registry lists lab modules by name (:data:`LAB_MODULES`) and imports them on first use, so this package never
imports :mod:`deepnotes.labs` at import time (labs build on the kit, not the other way round).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from deepnotes.errors import UserError
from deepnotes.train import distributed as distr

# Lab modules in the order `deepnotes list` shows them (curriculum order); each defines LAB or LABS.
LAB_MODULES = (
    "deepnotes.labs.image_classification",  # lecture 3 (CNN), HW3
    "deepnotes.labs.regression",  # lecture 1, HW1
    "deepnotes.labs.critical_points",  # lecture 2: local minima and saddle points
    "deepnotes.labs.batch_and_momentum",  # lecture 2: batch and momentum
    "deepnotes.labs.optimizers",  # lecture 2: adaptive learning rate, schedules
    "deepnotes.labs.generalization",  # ML2022: why more parameters overfit
    "deepnotes.labs.word2vec",  # EE-559 12-3: CBOW with negative sampling
    "deepnotes.labs.char_lm",  # ML2021/2022 Transformer, GPT; EE-559 12-2 LSTM
    "deepnotes.labs.keyword_spotting",  # seed 000: Speech Commands exercise
    "deepnotes.labs.translation",  # ML2021/2022 HW5: machine translation
    "deepnotes.labs.phoneme_classification",  # ML2021/2022 HW2: framewise phoneme classification
    "deepnotes.labs.speaker_identification",  # ML2022 lecture 4 and HW4: speaker classification
    "deepnotes.labs.adversarial_attack",  # ML2021/2022 HW10: adversarial attacks and defenses
    "deepnotes.labs.explain",  # ML2021/2022 HW9: explainable ML
    "deepnotes.labs.domain_adaptation",  # ML2021 HW11: domain adaptation
    "deepnotes.labs.spatial_transformer",  # ML2021 Spatial Transformer Layer; Jaderberg et al. 2015
    "deepnotes.labs.stable_learning",  # seed 000: StableNet (Zhang et al. CVPR 2021)
    "deepnotes.labs.gan_toy",  # EE-559 GAN (Fleuret's toy); ML2021 GAN lectures
    "deepnotes.labs.gan",  # EE-559 11-1/11-2; ML2021 GAN lectures: DCGAN, WGAN-GP, SN-GAN, cGAN on Fashion-MNIST
    "deepnotes.labs.image_translation",  # EE-559 pix2pix; ML2021 GAN (4): pix2pix and CycleGAN
    "deepnotes.labs.bert",  # ML2021/2022 self-supervised learning: BERT, HW7
    "deepnotes.labs.vit_mae",  # ML2022 self-supervised learning; seed 004: ViT and MAE
    "deepnotes.labs.autoencoder",  # ML2021 auto-encoders; EE-559 autoencoders; seed 004 Gumbel-softmax
    "deepnotes.labs.pixelcnn",  # EE-559 autoregression; van den Oord et al. 2016 (PixelCNN, gated PixelCNN)
    "deepnotes.labs.anomaly_detection",  # ML2021/2022 HW8: anomaly detection; Ruff et al. 2018 (Deep SVDD)
)


@dataclass(frozen=True)
class RunContext:
    """What a lab's ``run`` gets besides its config: the run folder, device, rank, and whether to resume."""

    run_dir: Path
    device: torch.device
    info: distr.DistInfo = distr.DistInfo()
    resume: bool = False
    log: Callable[[str], None] = print

    @property
    def main_log(self) -> Callable[[str], None]:
        """``log`` on rank 0, a no-op on the other processes."""
        return self.log if self.info.is_main else (lambda _msg: None)


@dataclass(frozen=True)
class Lab:
    """One lab: name, what it teaches, and its entry points (see the module docstring)."""

    name: str
    summary: str
    source: str
    default_dataset: str
    metric: str
    config_cls: type
    run: Callable[[Any, RunContext], dict]
    evaluate: Callable[..., dict]
    report: Callable[..., Path]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # generative labs: sample(run_dir, prompt, n_chars, temperature, top_k, top_p, seed, device) -> text
    sample: Callable[..., str] | None = None


_LABS: dict[str, Lab] | None = None


def _registry() -> dict[str, Lab]:
    global _LABS
    if _LABS is None:
        labs: dict[str, Lab] = {}
        for name in LAB_MODULES:
            module = importlib.import_module(name)  # an ImportError here is a bug or a missing dependency: let it show
            found = list(getattr(module, "LABS", ())) or [module.LAB]
            for lab in found:
                labs[lab.name] = lab
        _LABS = labs
    return _LABS


def get_lab(name: str) -> Lab:
    """The lab called ``name``.

    Raises:
        UserError: unknown name (the message lists the labs).
    """
    labs = _registry()
    if name not in labs:
        raise UserError(f"unknown lab {name!r}; `deepnotes list` shows the labs: {', '.join(sorted(labs))}")
    return labs[name]


def all_labs() -> list[Lab]:
    """Every lab, in curriculum order."""
    return list(_registry().values())
