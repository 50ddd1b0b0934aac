"""Training configuration shared by every lab that trains with :class:`deepnotes.train.Trainer`.

A lab's config is a frozen dataclass that subclasses :class:`TrainConfig` (itself a
:class:`deepnotes.experiment.RunConfig`); every field becomes a command-line flag (``--batch-size 128``)
whose help text and accepted values come from :func:`option`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deepnotes.errors import UserError
from deepnotes.experiment.config import RunConfig, option

__all__ = ["TrainConfig", "option"]


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Fields of the training engine (:mod:`deepnotes.train.engine`) that every lab has."""

    epochs: int = option(10, "number of passes over the training set", range="[1, 100000]")
    batch_size: int = option(128, "examples per update, summed over all processes", range="[1, 1000000]")
    optimizer: Literal["sgd", "adamw"] = option("sgd", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(0.1, "peak learning rate", range="(0, inf)")
    momentum: float = option(0.9, "SGD momentum (0 disables); beta1 for AdamW", range="[0, 1)")
    nesterov: bool = option(True, "use Nesterov momentum with SGD")
    beta2: float = option(0.999, "AdamW's beta2, the decay of its squared-gradient average", range="[0, 1)")
    optimizer_impl: Literal["fused", "foreach", "for-loop"] = option(
        "foreach", "optimizer step: foreach (one call per operation), one fused kernel, or torch's readable loop")
    weight_decay: float = option(5e-4, "L2 weight decay on weights (not on biases or norm scales)", range="[0, 10]")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "onecycle", "learning-rate schedule over all updates (see deepnotes.train.schedule)"
    )
    min_lr: float = option(0.0, "the cosine schedule's floor (nanoGPT's character config: lr / 10)", range="[0, inf)")
    warmup: float = option(0.2, "share of all updates warming the LR up linearly (onecycle from lr/25, cosine from 0, "
                           "triangular from lr/5)", range="[0, 1)")
    grad_clip: float = option(0.0, "clip the global gradient norm to this value (0 disables)", range="[0, inf)")
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy loss", range="[0, 1)")
    ema_decay: float = option(0.0, "evaluate and save an exponential moving average of the weights with this decay "
                              "(0 disables; e.g. 0.999)", range="[0, 1)")
    lookahead_steps: int = option(0, "Lookahead (Zhang et al. 2019): sync slow weights every k updates (0 disables; "
                                  "airbench94: 5)", range="[0, 100000]")
    lookahead_alpha: float = option(0.5, "Lookahead's step alpha (the paper: 0.5)", range="(0, 1]")
    lookahead_ramp: bool = option(False, "ramp Lookahead's alpha from 1 down to --lookahead-alpha (airbench94)")
    amp: bool = option(True, "mixed precision (bfloat16/float16 autocast) when running on CUDA; ignored on CPU")
    cpu_bf16: Literal["auto", "on", "off"] = option(
        "off", "bfloat16 autocast on CPU; auto = only where the CPU has native bf16 (avx512_bf16, amx_bf16)"
    )
    compile: Literal["auto", "on", "off"] = option(
        "off", "torch.compile the training forward and backward (inductor; a C++ compiler on CPU); auto = where one "
        "is found, else eager with one warning"
    )

    def check(self) -> None:
        if self.ema_decay > 0 and self.lookahead_steps > 0:
            raise UserError("--ema-decay and --lookahead-steps cannot be combined: each decides the final weights; "
                            "choose one")

