"""Convolutional image classifiers: a LeNet-5-style CNN and a small bottleneck ResNet.

Sources:
- Lecture 3 of ML2021/2022 (Hung-yi Lee), "Convolutional Neural Networks": receptive fields,
  parameter sharing, pooling, "the whole CNN" = (conv -> pool)* -> flatten -> fully connected.
- EE-559 (F. Fleuret) 8-2 "image classification": LeNet-5, 1x1 convolutions that reduce the number
  of channels before the expensive 3x3 convolution, pass-through (residual) connections.
- LeCun et al. 1998 (LeNet-5); He et al. 2016, "Deep Residual Learning for Image Recognition"
  (bottleneck block: 1x1 reduce -> 3x3 -> 1x1 expand, added to an identity or 1x1 projection).

Deliberate differences from the papers: LeNet-5 uses ReLU and max pooling (the modern reading in
the notes: "everybody loves ReLU") instead of tanh and subsampling, and pads its first convolution
so that 28x28 inputs play the role of the paper's 32x32. The ResNet is sized for 28x28 grayscale
images (a 3x3 stem, three stages at 28, 14 and 7 pixels) rather than ImageNet's 7x7 stem; batch
normalization follows every convolution as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """LeNet-5-style CNN: conv5x5(6) -> pool -> conv5x5(16) -> pool -> fc120 -> fc84 -> fc(classes).

    Args:
        in_channels: input channels C (1 for grayscale). Default 1.
        num_classes: number of classes K. Default 10.
        width: multiplier on the channel and unit counts (1 = the paper's 6/16/120/84). Default 1.
        dropout: dropout probability before the last two fully connected layers. Default 0.

    Shapes:
        x: (B, C, 28, 28) float, normalized pixels -> logits (B, K).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 1, dropout: float = 0.0):
        super().__init__()
        c1, c2, f1, f2 = 6 * width, 16 * width, 120 * width, 84 * width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2),  # (B, c1, 28, 28)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, kernel_size=5),  # (B, c2, 10, 10)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c2, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, c2 * 25)
            nn.Linear(c2 * 25, f1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(f1, f2),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(f2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (28, 28):
            raise ValueError(f"LeNet5 expects 28x28 images, got x of shape {tuple(x.shape)}")
        return self.classifier(self.features(x))


class Bottleneck(nn.Module):
    """Residual bottleneck block: y = relu(F(x) + shortcut(x)).

    F = conv1x1(C_in -> M) -> BN -> ReLU -> conv3x3(M -> M, stride) -> BN -> ReLU -> conv1x1(M -> C_out) -> BN,
    with M = C_out // expansion. The shortcut is the identity when shapes match, else a strided 1x1
    convolution + BN (the paper's "projection shortcut", option B).

    Args:
        in_channels: C_in. out_channels: C_out. stride: 1 or 2 (2 halves H and W).
        expansion: C_out / M, the bottleneck ratio. Default 4 (as in ResNet-50).

    Shapes:
        x: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 4):
        super().__init__()
        mid = max(1, out_channels // expansion)
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, M, H, W)
        out = F.relu(self.bn2(self.conv2(out)))  # (B, M, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, C_out, H/s, W/s)
        return F.relu(out + self.shortcut(x))


@dataclass(frozen=True)
class ResNetConfig:
    """Shape of :class:`ResNet`.

    Attributes:
        widths: output channels of each stage; stage i > 0 starts with a stride-2 block. Default (64, 128, 256).
        blocks: number of bottleneck blocks per stage. Default (1, 2, 2).
        stem_channels: channels of the 3x3 stem convolution. Default 32.
        stem_pool: follow the stem with 2x2 max pooling, so the stages run at half the resolution
            (the role of ImageNet ResNet's stride-2 stem and pooling; about 4x cheaper). Default False.
        expansion: bottleneck ratio C_out / M. Default 4.
        dropout: dropout before the final linear layer. Default 0.
    """

    widths: tuple[int, ...] = (64, 128, 256)
    blocks: tuple[int, ...] = (1, 2, 2)
    stem_channels: int = 32
    stem_pool: bool = False
    expansion: int = 4
    dropout: float = 0.0


class ResNet(nn.Module):
    """Small bottleneck ResNet for 28x28 images: stem -> stages of bottleneck blocks -> global average pool -> linear.

    Args:
        in_channels: C. Default 1. num_classes: K. Default 10. config: a :class:`ResNetConfig`.

    Shapes:
        x: (B, C, H, W) float -> logits (B, K). Any H, W >= 4 works (global pooling at the end).

    Raises:
        ValueError: if ``config.widths`` and ``config.blocks`` differ in length.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, config: ResNetConfig = ResNetConfig()):
        super().__init__()
        if len(config.widths) != len(config.blocks):
            raise ValueError(
                f"ResNetConfig.widths {config.widths} and blocks {config.blocks} must have the same length"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, config.stem_channels, 3, padding=1, bias=False),  # (B, stem, H, W)
            nn.BatchNorm2d(config.stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2) if config.stem_pool else nn.Identity(),  # (B, stem, H/2, W/2) when pooling
        )
        layers: list[nn.Module] = []
        c_in = config.stem_channels
        for i, (width, n_blocks) in enumerate(zip(config.widths, config.blocks)):
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(Bottleneck(c_in, width, stride=stride, expansion=config.expansion))
                c_in = width
        self.stages = nn.Sequential(*layers)  # (B, widths[-1], H / 2^(S-1), W / 2^(S-1))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),  # (B, C_last, 1, 1)
            nn.Flatten(),  # (B, C_last)
            nn.Dropout(config.dropout),
            nn.Linear(c_in, num_classes),  # (B, K)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
