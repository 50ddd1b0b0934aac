"""Generators and discriminators for 28x28 grey images (Fashion-MNIST, MNIST), created by name.

Sources: EE-559 11-1 "Adversarial Networks" (Fleuret's DCGAN for MNIST-sized images) and 11-2 (Wasserstein GAN,
spectral normalization); Radford et al. 2016 (DCGAN: transposed convolutions with batch norm and ReLU in G, a tanh
output, strided convolutions with LeakyReLU(0.2) in D, weights from N(0, 0.02)); Gulrajani et al. 2017 (the
WGAN-GP critic has no batch norm: the penalty is per sample); Miyato et al. 2018 (SN-GAN: spectral normalization on
every layer of D, :mod:`deepnotes.nn.spectral`); Miyato & Koyama 2018 (conditional batch norm in G, the projection
discriminator, :mod:`deepnotes.nn.conditional_gan`); Odena et al. 2017 (AC-GAN: D also classifies its input).

Shapes (``w`` = ``width``)::

    G: z (B, z_dim) [+ one_hot(y)] -> Linear -> (B, 2w, 7, 7) -> BN, ReLU -> ConvT 4x4/2 -> (B, w, 14, 14) -> BN,
       ReLU -> ConvT 4x4/2 -> (B, 1, 28, 28) -> tanh                    (BN: conditional on y when num_classes > 0)
    D: x (B, 1, 28, 28) -> Conv 4x4/2 -> (B, w, 14, 14) -> LReLU -> Conv 4x4/2 -> (B, 2w, 7, 7) -> [BN] -> LReLU
       -> flatten: phi(x) (B, 2w*49) -> psi(phi) [+ embed(y)^T phi]  -> (B,)
                                       [-> aux(phi) (B, K): AC-GAN's auxiliary classifier, aux_classes > 0]

Registered: ``gan-generator`` and ``gan-discriminator`` (``norm``: ``batch`` for DCGAN, ``none`` for the WGAN-GP
critic, ``spectral`` for SN-GAN; ``num_classes > 0`` makes either conditional). The generator's images are in
[-1, 1]: ``(x + 1) / 2`` gives pixels in [0, 1].
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.models.registry import register_model
from deepnotes.nn.conditional_gan import ConditionalBatchNorm2d, ProjectionHead
from deepnotes.nn.spectral import power_iteration, spectral_norm, weight_matrix

__all__ = ["Discriminator28", "Generator28", "dcgan_init_", "generate_pixels", "interpolate_latents"]


@torch.no_grad()
def dcgan_init_(module: nn.Module) -> None:
    """DCGAN's initialization (Radford et al. 2016, section 4): convolution and linear weights from N(0, 0.02),
    biases 0, batch-norm scales from N(1, 0.02) (a conditional batch norm's per-class scales too)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ConditionalBatchNorm2d):
            nn.init.normal_(m.gamma.weight, 1.0, 0.02)


class Generator28(nn.Module):
    """DCGAN generator for 28x28 images: z (and a class) -> an image in [-1, 1].

    Args:
        z_dim: size of z (>= 1). width: w, the channels at 14x14 (2w at 7x7). out_channels: image channels.
        num_classes: K > 0 makes it class-conditional: ``one_hot(y)`` concatenated to z (Mirza & Osindero 2014)
            and conditional batch norm (Miyato & Koyama 2018); 0: unconditional.

    Shapes:
        z: (B, z_dim), y: (B,) int64 (conditional only) -> (B, out_channels, 28, 28).

    Raises:
        ValueError: a size below 1, ``num_classes < 0``; a conditional generator called without labels.
    """

    def __init__(self, z_dim: int = 64, width: int = 32, out_channels: int = 1, num_classes: int = 0):
        super().__init__()
        if min(z_dim, width, out_channels) < 1 or num_classes < 0:
            raise ValueError(f"z_dim, width and out_channels must be >= 1 and num_classes >= 0, got {z_dim}, "
                             f"{width}, {out_channels}, {num_classes}")
        self.z_dim, self.width, self.num_classes = z_dim, width, num_classes
        self.fc = nn.Linear(z_dim + num_classes, 2 * width * 7 * 7, bias=False)  # [z, one_hot(y)] when conditional
        self.up1 = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False)
        self.up2 = nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1)
        if num_classes:
            self.bn0: nn.Module = ConditionalBatchNorm2d(2 * width, num_classes)
            self.bn1: nn.Module = ConditionalBatchNorm2d(width, num_classes)
        else:
            self.bn0, self.bn1 = nn.BatchNorm2d(2 * width), nn.BatchNorm2d(width)
        self.act = nn.ReLU()

    def _norm(self, bn: nn.Module, h: Tensor, y: Tensor | None) -> Tensor:
        if self.num_classes:
            if y is None:
                raise ValueError("this generator is class-conditional: call it as G(z, y)")
            return bn(h, y)
        return bn(h)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            if y is None:
                raise ValueError("this generator is class-conditional: call it as G(z, y)")
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)  # (B, z_dim + K)
        h = self.fc(z).view(len(z), 2 * self.width, 7, 7)  # (B, 2w, 7, 7)
        h = self.act(self._norm(self.bn0, h, y))
        h = self.act(self._norm(self.bn1, self.up1(h), y))  # (B, w, 14, 14)
        return torch.tanh(self.up2(h))  # (B, C, 28, 28) in [-1, 1]


Norm = Literal["batch", "none", "spectral"]


class Discriminator28(nn.Module):
    """DCGAN-style discriminator (or WGAN critic) for 28x28 images, optionally a projection discriminator.

    Args:
        width: w, the channels at 14x14 (2w at 7x7). in_channels: image channels.
        norm: ``batch`` (DCGAN: batch norm after the second convolution), ``none`` (the WGAN-GP critic), or
            ``spectral`` (SN-GAN: every convolution, the linear map and the class embedding spectrally normalized,
            no batch norm).
        num_classes: K > 0: a projection discriminator, ``psi(phi(x)) + embed(y)^T phi(x)``; 0: ``psi(phi(x))``.
        aux_classes: K' > 0: also an auxiliary classifier ``aux(phi(x))`` (Odena et al. 2017, AC-GAN: class logits
            from the same features; spectrally normalized with ``norm="spectral"``), read by :meth:`forward_aux`;
            0 (default): none.
        slope: LeakyReLU's negative slope (DCGAN: 0.2).
        generator: the source of the spectral norm's initial power-iteration vectors.

    Shapes:
        x: (B, in_channels, 28, 28), y: (B,) or None -> (B,) logits or scores; :meth:`features`: (B, 2w*49);
        :meth:`forward_aux`: ((B,), (B, K')).

    Raises:
        ValueError: a size below 1, an unknown ``norm``, ``num_classes < 0`` or ``aux_classes < 0``.
    """

    def __init__(self, width: int = 32, in_channels: int = 1, norm: Norm = "batch", num_classes: int = 0,
                 slope: float = 0.2, generator: torch.Generator | None = None, aux_classes: int = 0):
        super().__init__()
        if min(width, in_channels) < 1 or num_classes < 0 or aux_classes < 0:
            raise ValueError(f"width and in_channels must be >= 1, num_classes and aux_classes >= 0, got {width}, "
                             f"{in_channels}, {num_classes}, {aux_classes}")
        if norm not in ("batch", "none", "spectral"):
            raise ValueError(f"norm must be 'batch', 'none' or 'spectral', got {norm!r}")
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, width, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=norm != "batch")
        self.bn = nn.BatchNorm2d(2 * width) if norm == "batch" else nn.Identity()
        self.act = nn.LeakyReLU(slope)
        self.head = ProjectionHead(2 * width * 7 * 7, num_classes, spectral=norm == "spectral", generator=generator)
        self.aux = nn.Linear(2 * width * 7 * 7, aux_classes) if aux_classes else None
        if norm == "spectral":
            for layer in (self.conv1, self.conv2, *([self.aux] if self.aux is not None else [])):
                spectral_norm(layer, generator=generator)

    def features(self, x: Tensor) -> Tensor:
        """phi(x): (B, C, 28, 28) -> (B, 2w*49)."""
        h = self.act(self.conv1(x))  # (B, w, 14, 14)
        h = self.act(self.bn(self.conv2(h)))  # (B, 2w, 7, 7)
        return h.flatten(1)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes and y is None:
            raise ValueError("this discriminator is class-conditional (projection): call it as D(x, y)")
        return self.head(self.features(x), y)

    def forward_aux(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(D(x, y), aux(phi(x)))`` from one pass through the features: (B,) logits and (B, K') class logits.

        Raises:
            ValueError: built without ``aux_classes``; as :meth:`forward`.
        """
        if self.aux is None:
            raise ValueError("this discriminator has no auxiliary classifier: build it with aux_classes > 0")
        if self.num_classes and y is None:
            raise ValueError("this discriminator is class-conditional (projection): call it as D(x, y)")
        phi = self.features(x)  # (B, 2w*49)
        return self.head(phi, y), self.aux(phi)


@register_model("gan-generator")
def gan_generator(z_dim: int = 64, width: int = 32, out_channels: int = 1, num_classes: int = 0) -> Generator28:
    """:class:`Generator28`, DCGAN's initialization applied."""
    g = Generator28(z_dim, width, out_channels, num_classes)
    dcgan_init_(g)
    return g


@register_model("gan-discriminator")
def gan_discriminator(width: int = 32, in_channels: int = 1, norm: Norm = "batch", num_classes: int = 0,
                      generator: torch.Generator | None = None, aux_classes: int = 0) -> Discriminator28:
    """:class:`Discriminator28`, DCGAN's initialization applied (before spectral normalization's first
    iterations are re-run on the new weights)."""
    d = Discriminator28(width, in_channels, norm, num_classes, generator=generator, aux_classes=aux_classes)
    dcgan_init_(d)
    if norm == "spectral":  # the stored singular vectors were found for the old weights: iterate on the new ones
        for m in d.modules():
            if hasattr(m, "parametrizations"):
                sn = m.parametrizations.weight[0]
                power_iteration(weight_matrix(m.parametrizations.weight.original.detach(), sn.dim), sn._u, sn._v, 15)
    return d


@torch.no_grad()
def generate_pixels(generator: nn.Module, z: Tensor, y: Tensor | None = None, batch_size: int = 500) -> Tensor:
    """The generator's images for ``z`` (and labels ``y``) as pixels in [0, 1] on the CPU, in eval mode (batch norm
    with its running statistics, so a sample does not depend on the rest of its batch), ``batch_size`` at a time.

    Shapes:
        z: (N, z_dim), y: (N,) or None -> (N, C, 28, 28) float32 in [0, 1].
    """
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    out = []
    try:
        for s in range(0, len(z), batch_size):
            zb = z[s:s + batch_size].to(device)
            x = generator(zb) if y is None else generator(zb, y[s:s + batch_size].to(device))
            out.append(((x.float() + 1) / 2).clamp(0, 1).cpu())  # tanh's [-1, 1] -> [0, 1]
    finally:
        generator.train(was_training)
    return torch.cat(out)


def interpolate_latents(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """Points on the segments from each ``z0`` to its ``z1``: ``(1 - t) z0 + t z1``, ``t = 0, 1/(steps-1), ..., 1``
    (Radford et al. 2016, 6.1: walking in the latent space).

    Shapes:
        z0, z1: (R, z_dim) -> (R * steps, z_dim), row r's points consecutive.

    Raises:
        ValueError: ``steps < 2`` or shapes that differ.
    """
    if steps < 2 or z0.shape != z1.shape:
        raise ValueError(f"steps must be >= 2 and z0, z1 of one shape, got {steps}, {tuple(z0.shape)}, "
                         f"{tuple(z1.shape)}")
    t = torch.linspace(0, 1, steps, dtype=z0.dtype).view(1, steps, 1)  # (1, steps, 1)
    return ((1 - t) * z0[:, None] + t * z1[:, None]).reshape(-1, z0.shape[1])  # (R * steps, z_dim)
