"""Adversarial training (a proactive defense, ML2021 lecture "Adversarial Attack"; Madry et al. 2018, "Towards Deep
Learning Models Resistant to Adversarial Attacks").

Madry et al. write robust training as a saddle point problem::

    min_θ  E_(x, y) [ max_{||δ||_∞ <= ε} L(f_θ(x + δ), y) ]

and solve the inner maximization approximately with PGD from a random start in the ε-ball (the "universal first-order
adversary"), then take an SGD step on the loss at that point. The lecture's reading: find the attacked images, label
them correctly, and train on them (a data augmentation that keeps up with the model).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from deepnotes.attacks.gradient import pgd
from deepnotes.train.task import ClassificationTask, PrepareBatch, Step, StepOutput, classification_sums


class AdversarialTrainingTask(ClassificationTask):
    """Cross-entropy on PGD adversarial examples of each training batch (PGD-AT); evaluation stays on clean images.

    A batch is ``(x, y)``; ``prepare_batch`` brings it to pixels in [0, 1] on the device; the model maps pixels to
    logits. For each training batch the model is switched to eval mode (batch-norm statistics are not updated by the
    attack's forward passes), PGD runs ``steps`` steps of size ``alpha`` from a uniform random start in the
    L-infinity ball of radius ``eps`` (drawn from the Trainer's seeded generator, so ``--resume`` stays exact), and
    the loss ``(1 - clean_weight) * L(x_adv) + clean_weight * L(x)`` is returned for the Trainer's step.
    Epoch metrics: ``loss`` and ``acc`` on the adversarial examples in training, on clean images in evaluation.

    Args:
        model: a classifier of pixels in [0, 1].
        eps: radius of the L-infinity ball, pixel units, >= 0.
        alpha: PGD step size, > 0 (Madry et al.: 2.5 eps / steps).
        steps: PGD steps, >= 1.
        prepare_batch: as for :class:`~deepnotes.train.task.ClassificationTask`.
        clean_weight: weight of the clean loss in [0, 1]; default 0 (Madry et al.'s pure adversarial loss).

    Raises:
        ValueError: an argument out of its range.
    """

    def __init__(self, model: nn.Module, eps: float, alpha: float, steps: int,
                 prepare_batch: PrepareBatch | None = None, clean_weight: float = 0.0):
        if eps < 0 or alpha <= 0 or steps < 1 or not 0 <= clean_weight <= 1:
            raise ValueError(f"AdversarialTrainingTask needs eps >= 0, alpha > 0, steps >= 1, clean_weight in [0, 1], "
                             f"got {eps}, {alpha}, {steps}, {clean_weight}")
        super().__init__(model, prepare_batch)
        self.eps, self.alpha, self.steps, self.clean_weight = eps, alpha, steps, clean_weight

    def training_step(self, model: nn.Module, batch: Any, step: Step) -> StepOutput:
        if not step.train:
            return super().training_step(model, batch, step)
        x, y = self.prepare_batch(batch[0], batch[1], step.train, step.generator)
        model.eval()
        try:
            x_adv = pgd(model, x, y, self.eps, self.alpha, self.steps, random_start=True, generator=step.generator)
        finally:
            model.train()
        with step.autocast():
            logits = model(x_adv).float()
            loss = F.cross_entropy(logits, y)
            if self.clean_weight:
                loss = (1 - self.clean_weight) * loss + self.clean_weight * F.cross_entropy(model(x).float(), y)
        return classification_sums(loss, logits.detach(), y)
