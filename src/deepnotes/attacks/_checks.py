"""Argument checks shared by the attacks and defenses (each raises ValueError naming the argument)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_images(x: Tensor, name: str = "x") -> None:
    """``x`` must be a float (B, C, H, W) tensor with pixels in [0, 1]."""
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor of shape (B, C, H, W), got {shape}")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must hold pixels in [0, 1], got values in [{x.min():.4g}, {x.max():.4g}]")


def check_labels(y: Tensor, x: Tensor, name: str = "y") -> None:
    """``y`` must be an integer (B,) tensor matching the batch of ``x``."""
    if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{name} must be an integer tensor of shape ({x.shape[0]},), got {shape}")


def check_positive(value: float | int, name: str, *, allow_zero: bool = False) -> None:
    """``value`` must be > 0 (>= 0 with ``allow_zero``)."""
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check_count(value: int, name: str, *, minimum: int = 1) -> None:
    """``value`` must be an int >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_probability(value: float, name: str) -> None:
    """``value`` must lie in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def predict(model: torch.nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    """(B,) arg-max class of ``model`` on ``x``, without gradients, in chunks of ``batch_size``."""
    with torch.no_grad():
        return torch.cat([model(chunk).argmax(dim=1) for chunk in x.split(batch_size)])
