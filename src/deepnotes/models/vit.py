"""ViT and MAE by name, and the task that pre-trains an MAE with :class:`deepnotes.train.Trainer`.

The networks are :mod:`deepnotes.nn.vit`'s (Dosovitskiy et al. 2021; He et al. 2022; the ML2022 self-supervised
lectures and seed 004's ViT and MAE digests). :class:`MAEPretrainTask` is the masked-patch reconstruction loss as a
:class:`~deepnotes.train.task.Task`: a batch ``(x, y)`` of images (labels unused), prepared by the lab's
``prepare_batch``; the masking draws from the Trainer's seeded generator in training and, in evaluation, from a
generator seeded by the batch's contents, so that the validation loss of a batch is the same at every epoch and after
``--resume``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepnotes.models.registry import register_model
from deepnotes.nn.vit import MAE, ViT
from deepnotes.train.batches import seed_for
from deepnotes.train.task import PrepareBatch, Step, StepOutput, Task


@register_model("vit")
def vit(in_channels: int = 1, num_classes: int = 10, **kwargs: Any) -> ViT:
    """:class:`deepnotes.nn.vit.ViT`; keyword arguments are its own (``image_size``, ``patch_size``, ``d_model``,
    ``depth``, ``n_heads``, ...)."""
    return ViT(in_channels=in_channels, num_classes=num_classes, **kwargs)


@register_model("mae")
def mae(in_channels: int = 1, **kwargs: Any) -> MAE:
    """:class:`deepnotes.nn.vit.MAE`; keyword arguments are its own (``mask_ratio``, ``decoder_d_model``, ...)."""
    return MAE(in_channels=in_channels, **kwargs)


class MAEPretrainTask(Task):
    """The MAE objective (mean squared error on the masked patches) for the Trainer. Epoch metric: ``loss``.

    Args:
        model: the :class:`~deepnotes.nn.vit.MAE`.
        prepare_batch: ``(x, y, train, generator) -> (images, y)`` on the device (augmentation, normalization).
        seed: the run's seed; evaluation masks each batch with a generator seeded by (seed, the batch's pixel sum).
    """

    def __init__(self, model: MAE, prepare_batch: PrepareBatch, seed: int = 0):
        super().__init__(model)
        self.prepare_batch, self.seed = prepare_batch, seed

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        images, _ = self.prepare_batch(batch[0], batch[1], step.train, step.generator)
        generator = step.generator
        if generator is None:  # evaluation: the same masks for the same batch, every time
            generator = torch.Generator().manual_seed(seed_for(self.seed, int(batch[0].sum())))
        with step.autocast():
            loss, _, _ = model(images, generator=generator)
        loss = loss.float()
        n = len(images)
        return StepOutput(loss, {"loss": float(loss.detach()) * n}, n)
