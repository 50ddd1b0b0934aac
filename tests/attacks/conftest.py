"""Tiny models shared by the attack tests (normalization inside the model, so torchattacks needs none)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyCNN(nn.Module):
    """(B, C, 12, 12) in [0, 1] -> normalize -> conv3x3(6) -> ReLU -> maxpool -> conv3x3(8) -> tanh -> fc(K)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), 0.25))
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(72, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def make_tiny_cnn(seed: int = 0, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return TinyCNN(in_channels, num_classes).eval()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine two threads' barriers cost 5-10x; restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cnn() -> nn.Module:
    """A 1-channel, 10-class TinyCNN in eval mode (seeded)."""
    return make_tiny_cnn(0)


@pytest.fixture
def model_factory():
    """make_tiny_cnn itself, for tests that need several models or other channel counts."""
    return make_tiny_cnn


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """8 random 1x12x12 images in [0, 1] and random labels."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 12, 12, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    return x, y
