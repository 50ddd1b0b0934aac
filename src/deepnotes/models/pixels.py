"""Classifiers that read pixels in [0, 1]: the input normalization sits inside the model.

An attack's budget ``eps`` is then in pixel units (8/255 means 8 grey levels), as in HW10 and the papers, and the
clip to the valid image range is a clip to [0, 1]; the same model object serves training, attacks and explanations.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from torch import nn

from deepnotes.models.registry import create_model

# name -> (registered model, keyword arguments): the 28x28 grey-image classifiers the attack and explanation labs train
ZOO: dict[str, tuple[str, dict[str, Any]]] = {
    "lenet5": ("lenet5", {}),
    "lenet5-wide": ("lenet5", {"width": 4}),
    "mlp": ("image-mlp", {"hidden": (256, 256)}),
    "resnet": ("resnet", {"widths": (16, 32, 64), "blocks": (1, 1, 1), "stem_channels": 16, "expansion": 2}),
    "airbench": ("airbench", {}),
}
ZooName = Literal["lenet5", "lenet5-wide", "mlp", "resnet", "airbench"]


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel, with fixed statistics (buffers, saved in the state dict).

    Args:
        mean, std: one value per channel, or one value for all; std > 0.

    Shapes:
        x: (B, C, H, W) pixels in [0, 1] -> (B, C, H, W).

    Raises:
        ValueError: a std <= 0, or mean and std of different lengths.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]):
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if len(m) != len(s) or bool((s <= 0).any()):
            raise ValueError(f"Standardize needs as many means as stds and every std > 0, got {m.tolist()}, {s.tolist()}")
        self.register_buffer("mean", m.reshape(1, -1, 1, 1))
        self.register_buffer("std", s.reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def pixel_classifier(net: nn.Module, mean: float | Sequence[float], std: float | Sequence[float]) -> nn.Sequential:
    """``Sequential(Standardize(mean, std), net)``: a classifier of pixels in [0, 1]; ``net`` is its item 1."""
    return nn.Sequential(Standardize(mean, std), net)


def build_pixel_model(name: str, num_classes: int, mean: float, std: float,
                      whiten: torch.Tensor | None = None, in_channels: int = 1) -> nn.Sequential:
    """:data:`ZOO` model ``name`` behind ``Standardize(mean, std)``: pixels (B, C, 28, 28) in [0, 1] -> logits (B, K).

    Args:
        whiten: uint8 training images (N, C, 28, 28) that set airbench's frozen whitening layer; None when weights
            will be loaded.
        in_channels: C, the images' channels (1: grey; 3: e.g. the MNIST-M blends).

    Raises:
        KeyError: an unknown name.
    """
    kind, kw = ZOO[name]
    net = create_model(kind, in_channels=in_channels, num_classes=num_classes, **kw)
    if kind == "airbench" and whiten is not None:  # its frozen first layer whitens 2x2 patches of the inputs
        net.init_whitening((whiten.float() / 255 - mean) / std)
    return pixel_classifier(net, mean, std)
