"""Accuracy of a classifier on clean and attacked images, a batch at a time (HW10's measure of an attack).

An attack is any callable ``attack(model, x, y) -> x_adv`` (e.g. ``functools.partial(deepnotes.attacks.pgd, eps=...,
alpha=..., steps=...)``); the attacked model and the scored model may differ (a black-box transfer attack crafts on a
surrogate and scores on the held-out model).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Arg-max classes (N,) int64 of ``model`` (in eval mode, restored after) on pixels x (N, C, H, W)."""
    was = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        return torch.cat([model(x[i:i + batch_size].to(dev)).argmax(-1).cpu() for i in range(0, len(x), batch_size)])
    finally:
        model.train(was)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Share of ``x`` (N, C, H, W) that ``model`` classifies as ``y`` (N,); 0 for N = 0."""
    return float((predict(model, x, batch_size) == y).float().mean()) if len(y) else 0.0


def attack_images(attack: Attack, surrogate: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  batch_size: int = 250) -> torch.Tensor:
    """``attack(surrogate, x, y)`` a batch at a time, with ``surrogate`` in eval mode (restored after); on the CPU.

    Shapes: x (N, C, H, W) pixels in [0, 1], y (N,) -> adversarial images (N, C, H, W).
    """
    was = surrogate.training
    surrogate.eval()
    try:
        dev = next(surrogate.parameters()).device
        return torch.cat([attack(surrogate, x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)).cpu()
                          for i in range(0, len(x), batch_size)])
    finally:
        surrogate.train(was)
