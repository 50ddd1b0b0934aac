"""Training configuration shared by every lab.

A lab's config is a frozen dataclass that subclasses :class:`TrainConfig`; every field becomes a
command-line flag (``--batch-size 128``) whose help text is the field's ``metadata["help"]``.
Use :func:`option` to declare a field with its help text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a default value and the help text its command-line flag shows."""
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass(frozen=True)
class TrainConfig:
    """Fields of the training engine (:mod:`deepnotes.train.engine`) that every lab has."""

    epochs: int = option(10, "number of passes over the training set")
    batch_size: int = option(128, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("sgd", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(0.1, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum (0 disables); beta1 for AdamW")
    nesterov: bool = option(True, "use Nesterov momentum with SGD")
    weight_decay: float = option(5e-4, "L2 weight decay on weights (not on biases or norm scales)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "onecycle", "learning-rate schedule over all updates (see deepnotes.train.schedule)"
    )
    warmup: float = option(0.2, "share of all updates spent warming up the LR linearly (from lr/25 for onecycle, "
                          "0 for cosine, lr/5 for triangular)")
    grad_clip: float = option(0.0, "clip the global gradient norm to this value (0 disables)")
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy loss, in [0, 1)")
    ema_decay: float = option(
        0.0, "keep an exponential moving average of the weights and batch-norm statistics, theta_ema <- d * theta_ema "
        "+ (1 - d) * theta after every update (d warms up as min(d, (1 + n) / (10 + n)) after n updates), and "
        "evaluate and save it instead of the raw weights; d in [0, 1), 0 disables (e.g. 0.999)")
    lookahead_steps: int = option(
        0, "Lookahead (Zhang et al. 2019): every k updates move slow weights toward the trained ones, phi <- phi + "
        "alpha (theta - phi), and continue from them, theta <- phi; the run ends on phi (batch-norm statistics "
        "included). k, 0 disables (airbench94: 5)")
    lookahead_alpha: float = option(0.5, "Lookahead's step alpha in (0, 1] (the paper's 0.5; airbench94: 1 - 0.95^5)")
    lookahead_ramp: bool = option(False, "Lookahead's alpha falls from 1 (no effect) to --lookahead-alpha as "
                                  "1 - (1 - alpha) (t / T)^3 over the run's T updates (airbench94)")
    amp: bool = option(True, "mixed precision (bfloat16/float16 autocast) when running on CUDA; ignored on CPU")
    cpu_bf16: Literal["auto", "on", "off"] = option(
        "off", "bfloat16 autocast on CPU (1.5-1.7x faster ResNets measured where the CPU has native bf16 instructions, "
        "slower elsewhere); auto = on only where /proc/cpuinfo shows avx512_bf16 or amx_bf16"
    )
    seed: int = option(0, "random seed (weights, data order, augmentation)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where to train: auto picks CUDA when available")
    progress: bool = option(True, "show a progress bar (only on a terminal)")


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The dataclass fields of a config class, in declaration order (base class first)."""
    return list(dataclasses.fields(cls))


def validate_train_config(cfg: TrainConfig) -> None:
    """Check ranges of the common fields.

    Raises:
        UserError: naming the flag and the allowed range.
    """
    from deepnotes.errors import UserError

    checks = [
        (cfg.epochs >= 1, "--epochs must be >= 1"),
        (cfg.batch_size >= 1, "--batch-size must be >= 1"),
        (cfg.lr > 0, "--lr must be > 0"),
        (0 <= cfg.momentum < 1, "--momentum must be in [0, 1)"),
        (cfg.weight_decay >= 0, "--weight-decay must be >= 0"),
        (0 <= cfg.warmup < 1, "--warmup must be in [0, 1)"),
        (cfg.grad_clip >= 0, "--grad-clip must be >= 0 (0 disables clipping)"),
        (0 <= cfg.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
        (0 <= cfg.ema_decay < 1, "--ema-decay must be in [0, 1) (0 disables the weight average)"),
        (cfg.lookahead_steps >= 0, "--lookahead-steps must be >= 0 (0 disables Lookahead)"),
        (0 < cfg.lookahead_alpha <= 1, "--lookahead-alpha must be in (0, 1]"),
        (not (cfg.ema_decay > 0 and cfg.lookahead_steps > 0),
         "--ema-decay and --lookahead-steps cannot be combined: each decides the final weights; choose one"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
