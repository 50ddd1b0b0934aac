"""Class-conditional GAN layers: conditional batch normalization for G, the projection head for D.

Sources: ML2021 "GAN (4): conditional generation" (Hung-yi Lee: G takes the condition y with z; D must judge both
"is x realistic" and "do x and y match"); Miyato & Koyama 2018, "cGANs with Projection Discriminator": with
``phi(x)`` D's features, ``D(x, y) = psi(phi(x)) + embed(y)^T phi(x)`` (eq. 3: the log-likelihood ratio of a
conditional model whose class posterior is log-linear in ``phi``, instead of concatenating y to x), and their
generator's conditional batch normalization (de Vries et al. 2017; Dumoulin et al. 2017): the normalized
activations are scaled and shifted by per-class ``gamma_y``, ``beta_y``.

* :class:`ConditionalBatchNorm2d`: ``gamma_y (x - mu_B) / sqrt(var_B + eps) + beta_y``;
* :func:`projection_logit` (the formula) and :class:`ProjectionHead` (the module, with spectral normalization as an
  option on both its linear map and its embedding, as in the paper's SN-GAN discriminator).

Deliberate difference: the paper's ``phi`` is a ResNet's output after global sum pooling; here it is whatever
features the discriminator hands the head (the ``gan`` lab: its flattened last convolution).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepnotes.nn.spectral import spectral_norm

__all__ = ["ConditionalBatchNorm2d", "ProjectionHead", "projection_logit"]


class ConditionalBatchNorm2d(nn.Module):
    """Batch normalization whose scale and shift are chosen by the class label.

    ``y_out = gamma[y] * (x - mu_B) / sqrt(var_B + eps) + beta[y]``: the statistics are those of ``nn.BatchNorm2d``
    without its affine part (batch statistics in training, running ones in evaluation); ``gamma`` starts at 1 and
    ``beta`` at 0 for every class, so the layer starts as a plain batch norm.

    Args:
        num_features: C. num_classes: K (>= 1). eps, momentum: as ``nn.BatchNorm2d``.

    Shapes:
        x: (B, C, H, W), y: (B,) int64 in [0, K) -> (B, C, H, W).

    Raises:
        ValueError: ``num_features`` or ``num_classes`` below 1.
    """

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if num_features < 1 or num_classes < 1:
            raise ValueError(f"num_features and num_classes must be >= 1, got {num_features}, {num_classes}")
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.bn(x)  # (B, C, H, W) normalized
        return self.gamma(y)[:, :, None, None] * h + self.beta(y)[:, :, None, None]


def projection_logit(features: Tensor, y: Tensor, psi: nn.Linear, embed: nn.Embedding) -> Tensor:
    """``psi(phi) + <embed(y), phi>`` (Miyato & Koyama 2018, eq. 3).

    Args:
        features: phi(x), (B, C). y: (B,) labels. psi: ``Linear(C, 1)``. embed: ``Embedding(K, C)``.

    Returns:
        (B,) logits (or scores).
    """
    return psi(features).squeeze(1) + (embed(y) * features).sum(dim=1)  # (B,) + (B,)


class ProjectionHead(nn.Module):
    """The projection discriminator's output layer: ``D(x, y) = psi(phi(x)) + embed(y)^T phi(x)``; without a
    label (``y=None``) only ``psi(phi(x))`` (an unconditional head with the same ``psi``).

    Args:
        in_features: C, the size of phi(x). num_classes: K (0: no embedding, unconditional).
        spectral: spectrally normalize ``psi`` and the embedding (the paper's SN-GAN D); default False.
        generator: the source of the spectral norm's initial vectors.

    Shapes:
        features: (B, C), y: (B,) or None -> (B,).

    Raises:
        ValueError: ``in_features < 1`` or ``num_classes < 0``; a label given to an unconditional head.
    """

    def __init__(self, in_features: int, num_classes: int = 0, spectral: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        if in_features < 1 or num_classes < 0:
            raise ValueError(f"in_features must be >= 1 and num_classes >= 0, got {in_features}, {num_classes}")
        self.psi = nn.Linear(in_features, 1)
        self.embed = nn.Embedding(num_classes, in_features) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=0.02)
        if spectral:
            spectral_norm(self.psi, generator=generator)
            if self.embed is not None:
                spectral_norm(self.embed, generator=generator)

    def forward(self, features: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            return self.psi(features).squeeze(1)
        if self.embed is None:
            raise ValueError("this head is unconditional (num_classes=0); call it without labels")
        return projection_logit(features, y, self.psi, self.embed)
