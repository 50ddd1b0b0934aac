"""The training contract: a task owns its loss and its optimizers, the Trainer owns the loop.

Lightning's split without the dependency (and nanoGPT's ``forward(x, targets) -> logits, loss`` +
``configure_optimizers``): :class:`deepnotes.train.Trainer` draws batches, sets the learning rate, runs
autocast, backward, clipping, the optimizer step, the weight average, Lookahead, checkpoints and processes; it
knows nothing about what a batch holds or what is minimized. A :class:`Task` does:

* ``training_step(model, batch, step) -> StepOutput``: the loss of one batch (the Trainer calls backward on
  ``StepOutput.loss``) and the numbers to average over the epoch (``sums`` / ``count``: ``train_<key>``);
* ``evaluation_step(model, batch, step) -> StepOutput``: the same numbers without gradients (``<set>_<key>``);
* ``configure_optimizers(cfg)``: one optimizer, or a dict of named ones (e.g. a GAN's generator and
  discriminator); with ``manual_optimization = True`` the task calls backward and ``step()`` itself, on
  ``step.optimizers``, and returns ``StepOutput(loss=None, ...)``.

``model`` is the task's ``model`` as the Trainer runs it (wrapped for data parallelism, or the weight average
during evaluation): call it, not ``self.model``, in the steps.

Ready-made tasks: :class:`ClassificationTask` (cross-entropy over classes, or over tokens for language models
and sequence-to-sequence decoders) and :class:`RegressionTask` (mean squared error).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Mapping

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # a target equal to this (padding) is ignored, as by F.cross_entropy

# prepare_batch(x, y, train, generator) -> (inputs on device, targets on device)
PrepareBatch = Callable[[Any, torch.Tensor, bool, torch.Generator | None], tuple[Any, torch.Tensor]]


@dataclass
class Step:
    """Where the loop stands when a task's step is called.

    Attributes:
        epoch: 0-based epoch.
        step: updates done before this one (0-based index of this update).
        total_steps: updates of the whole run.
        lr: the learning rate set for this update (before any group's ``lr_scale``).
        train: True in ``training_step``, False in ``evaluation_step``.
        generator: seeded by (seed, epoch, rank) for augmentation in training; None in evaluation.
        autocast: ``with step.autocast():`` runs the forward pass in the Trainer's mixed precision.
        optimizers: name -> optimizer (manual optimization); ``""`` is the single optimizer's name.
    """

    epoch: int
    step: int
    total_steps: int
    lr: float = 0.0
    train: bool = True
    generator: torch.Generator | None = None
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    optimizers: Mapping[str, torch.optim.Optimizer] = field(default_factory=dict)


@dataclass
class StepOutput:
    """What a step returns.

    Attributes:
        loss: the scalar to minimize (None when the task optimized by itself).
        sums: key -> sum over the batch's ``count`` items (examples or tokens) of a metric; the epoch's value is
            ``sum / count`` over all batches and processes (e.g. ``{"loss": loss * n, "acc": correct}``).
        count: how many items the sums cover.
    """

    loss: torch.Tensor | None
    sums: dict[str, float]
    count: float


class Task:
    """The base of every task: holds ``model``; see the module docstring for the contract.

    Args:
        model: every trainable module of the task (a ``ModuleDict`` for several); checkpointed and saved.
    """

    manual_optimization: bool = False

    def __init__(self, model: nn.Module):
        self.model = model

    def configure_optimizers(self, cfg: Any) -> torch.optim.Optimizer | dict[str, torch.optim.Optimizer]:
        """Default: SGD or AdamW from ``cfg`` with weight decay on weight matrices only
        (:func:`deepnotes.train.engine.make_optimizer`)."""
        from deepnotes.train.engine import make_optimizer

        return make_optimizer(self.model, cfg)

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        raise NotImplementedError(f"{type(self).__name__} must define training_step(model, batch, step)")

    def evaluation_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        """Default: :meth:`training_step` (the Trainer runs it under ``torch.no_grad`` in eval mode)."""
        return self.training_step(model, batch, step)


def flatten_tokens(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, V), (B, T)`` -> ``(B*T, V), (B*T,)``; classification shapes ``(B, K), (B,)`` pass through."""
    if logits.ndim == 3:
        return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return logits, y


def classification_sums(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> StepOutput:
    """``StepOutput`` of a mean cross-entropy ``loss`` over the targets of ``y`` that are not :data:`IGNORE_INDEX`:
    sums ``loss * n`` and the count of correct argmaxes, count ``n``.

    Shapes: logits (N, K), y (N,).
    """
    counted = y != IGNORE_INDEX  # padding targets take no part in the loss or the accuracy
    n = int(counted.sum())
    correct = float(((logits.argmax(dim=-1) == y) & counted).sum())
    return StepOutput(loss, {"loss": float(loss.detach()) * n, "acc": correct}, n)


class ClassificationTask(Task):
    """Cross-entropy over classes ``(B, K)`` or over tokens ``(B, T, V)`` (language models, seq2seq decoders).

    A batch is ``(x, y)``; ``prepare_batch(x, y, train, generator)`` (default: identity) augments and moves it to
    the device; ``model(inputs)`` gives logits. Targets equal to :data:`IGNORE_INDEX` (padding) count in neither the
    loss nor the accuracy. Epoch metrics: ``loss`` (mean per example or token) and ``acc``.

    Args:
        model: the network.
        prepare_batch: see above; default None passes the batch through.
        label_smoothing: of the training loss (evaluation uses none), in [0, 1); default 0.
        optimizer: a ready optimizer over ``model`` (e.g. one of :mod:`deepnotes.optim`); default None builds
            SGD or AdamW from the config.
    """

    def __init__(self, model: nn.Module, prepare_batch: PrepareBatch | None = None, label_smoothing: float = 0.0,
                 optimizer: torch.optim.Optimizer | None = None):
        super().__init__(model)
        self.prepare_batch = prepare_batch or (lambda x, y, train, generator: (x, y))
        self.label_smoothing = label_smoothing
        self.optimizer = optimizer

    def configure_optimizers(self, cfg: Any) -> torch.optim.Optimizer:
        return self.optimizer if self.optimizer is not None else super().configure_optimizers(cfg)

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, y = self.prepare_batch(batch[0], batch[1], step.train, step.generator)
        with step.autocast():
            logits, y = flatten_tokens(model(x), y)  # (B, K), or (B*T, V) for sequences
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing if step.train else 0.0,
                                   ignore_index=IGNORE_INDEX)
        return classification_sums(loss, logits.detach(), y)


class RegressionTask(Task):
    """Mean squared error of ``model(x)`` against real targets ``y`` (ML2021 lecture 1, HW1).

    A batch is ``(x, y)`` with x (B, C) and y (B,) or (B, D). Epoch metric: ``loss`` (mean squared error).

    Args:
        model: the regression model.
        optimizer: a ready optimizer over ``model``; default None builds SGD or AdamW from the config.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None):
        super().__init__(model)
        self.optimizer = optimizer

    def configure_optimizers(self, cfg: Any) -> torch.optim.Optimizer:
        return self.optimizer if self.optimizer is not None else super().configure_optimizers(cfg)

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        x, y = batch
        with step.autocast():
            pred = model(x).float().reshape(y.shape)
        loss = F.mse_loss(pred, y.float())
        return StepOutput(loss, {"loss": float(loss.detach()) * len(y)}, len(y))
