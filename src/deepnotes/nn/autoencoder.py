"""Auto-encoders for small grey images: the conv encoder and decoder, the plain and the denoising auto-encoder.

Sources: ML2021 "自編碼器 (Auto-encoder) (上)/(下)" and ML2022 lecture 8 (Hung-yi Lee: an encoder squeezes the
image into a low-dimensional code, a decoder rebuilds it, "reconstruction" is the training signal; the code is a
representation for downstream tasks, the self-supervised view; the de-noising auto-encoder rebuilds the clean image
from a corrupted one); EE-559 (Fleuret) lecture 7 (autoencoders, denoising autoencoders). Papers: Vincent et al.
2008, "Extracting and Composing Robust Features with Denoising Autoencoders" (corrupt x into x~ by *masking noise*,
a random share nu of the pixels set to 0, and minimize the reconstruction cross-entropy of the *clean* x from
f(x~); section 2.3 also has additive Gaussian noise).

The likelihood used in this project: the decoder outputs one **logit per pixel** and the reconstruction loss is the
Bernoulli negative log-likelihood (binary cross-entropy with logits) summed over pixels, in nats per image, on
pixel intensities in [0, 1]. For binary images this is a true log-likelihood; for grey levels it is the common
practice of Kingma & Welling 2014's MNIST code, but not a normalized density: the continuous Bernoulli
(Loaiza-Ganem & Cunningham 2019) adds a normalizer log C(lambda) per pixel that it leaves out, so these nats are a
cross-entropy comparable between models on the same images, not with published log-likelihoods of binarized MNIST.

* :class:`ConvEncoder`, :class:`ConvDecoder`: (B, C, S, S) <-> (B, F), two stride-2 convolutions each way.
* :func:`bernoulli_nll`, :func:`squared_error`: a score per image (anomaly detection reads these).
* :func:`corrupt`: masking or Gaussian noise drawn from a given generator (exact resumption).
* :class:`Autoencoder`: ``encode`` -> z, ``decode`` -> logits; used as the plain and the denoising AE (the
  difference is the task's input, :class:`deepnotes.models.autoencoder.AutoencoderTask`).

Every image model of this family (also :class:`~deepnotes.nn.vae.VAE`, :class:`~deepnotes.nn.vq.VQVAE`,
:class:`~deepnotes.nn.gumbel.GumbelVAE`) has ``code(x) -> (B, F)`` (the representation a linear probe reads),
``reconstruct(x) -> logits`` (deterministic) and ``decode(z) -> logits``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Autoencoder", "ConvDecoder", "ConvEncoder", "bernoulli_nll", "corrupt", "squared_error"]


def _check_sizes(image_size: int, in_channels: int, width: int, **sizes: int) -> None:
    if image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a positive multiple of 4 (two stride-2 layers), got {image_size}")
    for name, value in {"in_channels": in_channels, "width": width, **sizes}.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


class ConvEncoder(nn.Module):
    """(B, C, S, S) -> (B, out_features): conv 4x4 stride 2 (C -> w), ReLU, conv 4x4 stride 2 (w -> 2w), ReLU,
    flatten, linear (2w (S/4)^2 -> hidden), ReLU, linear (hidden -> out_features).

    Args:
        out_features: size of the output (the code, or what a head splits: mu and logvar, N slots...).
        in_channels: image channels. Default 1.
        width: w, channels of the first convolution. Default 32.
        hidden: units of the hidden linear layer. Default 256.
        image_size: S, a multiple of 4. Default 28.

    Shapes:
        x (B, C, S, S) -> (B, out_features).

    Raises:
        ValueError: a size below 1, or ``image_size`` not a multiple of 4.
    """

    def __init__(self, out_features: int, in_channels: int = 1, width: int = 32, hidden: int = 256,
                 image_size: int = 28):
        super().__init__()
        _check_sizes(image_size, in_channels, width, out_features=out_features, hidden=hidden)
        s = image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.ReLU(),  # (B, w, S/2, S/2)
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),  # (B, 2w, S/4, S/4)
            nn.Flatten(),  # (B, 2w (S/4)^2)
            nn.Linear(2 * width * s * s, hidden), nn.ReLU(),
            nn.Linear(hidden, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, C, S, S) logits, the mirror of :class:`ConvEncoder` (transposed convolutions).

    Args:
        in_features: size of the code it reads.
        out_channels: image channels. Default 1.
        width, hidden, image_size: as :class:`ConvEncoder`.

    Shapes:
        z (B, in_features) -> logits (B, C, S, S); ``sigmoid(logits)`` are the Bernoulli means (pixels in [0, 1]).

    Raises:
        ValueError: as :class:`ConvEncoder`.
    """

    def __init__(self, in_features: int, out_channels: int = 1, width: int = 32, hidden: int = 256,
                 image_size: int = 28):
        super().__init__()
        _check_sizes(image_size, out_channels, width, in_features=in_features, hidden=hidden)
        s = image_size // 4
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * width * s * s), nn.ReLU(),
            nn.Unflatten(1, (2 * width, s, s)),  # (B, 2w, S/4, S/4)
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),  # (B, w, S/2, S/2)
            nn.ConvTranspose2d(width, out_channels, 4, 2, 1))  # (B, C, S, S)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def bernoulli_nll(logits: Tensor, x: Tensor, reduction: str = "none") -> Tensor:
    """``-log p(x | z)`` of independent Bernoulli pixels with means ``sigmoid(logits)``, summed over each image:
    ``sum_i softplus(l_i) - x_i l_i`` (binary cross-entropy with logits), finite for any logit, in nats. With grey
    ``x`` in [0, 1] it is the cross-entropy (see the module docstring for the continuous-Bernoulli caveat); with
    binary ``x`` and an autoregressive model's logits (:mod:`deepnotes.nn.pixelcnn`) it is ``-log p(x)``.

    Args:
        logits: (B, ...) decoder outputs (float16 / bfloat16 are computed in float32; other dtypes kept).
        x: (B, ...) targets in [0, 1], the same shape, any dtype.
        reduction: ``"none"`` (default: (B,) nats per image), ``"mean"`` over the batch, or ``"sum"``.

    Returns:
        (B,), or a scalar for ``"mean"`` / ``"sum"``.

    Raises:
        ValueError: the shapes differ, or an unknown ``reduction``.
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have the same shape, got {tuple(logits.shape)} and {tuple(x.shape)}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    per_image = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none").flatten(1).sum(1)
    return per_image if reduction == "none" else per_image.mean() if reduction == "mean" else per_image.sum()


def squared_error(logits: Tensor, x: Tensor) -> Tensor:
    """Mean squared error per pixel between ``sigmoid(logits)`` and ``x``, one number per image.

    Shapes:
        logits, x (B, ...) -> (B,).

    Raises:
        ValueError: the shapes differ.
    """
    if logits.shape != x.shape:
        raise ValueError(f"logits and x must have the same shape, got {tuple(logits.shape)} and {tuple(x.shape)}")
    return (torch.sigmoid(logits.float()) - x.float()).pow(2).flatten(1).mean(1)


def corrupt(x: Tensor, kind: Literal["mask", "gaussian"] = "mask", level: float = 0.25,
            generator: torch.Generator | None = None) -> Tensor:
    """The denoising auto-encoder's corruption x -> x~ (Vincent et al. 2008, section 2.3).

    * ``"mask"``: each pixel is set to 0 with probability ``level`` (masking noise; the paper destroys a fixed
      share nu of the components, a Bernoulli draw per pixel has that share in expectation);
    * ``"gaussian"``: x + level * N(0, 1), clipped to [0, 1].

    The noise is drawn on the generator's device (the Trainer's CPU generator) and moved to ``x``'s, so a run
    resumed from a checkpoint draws the same noise.

    Args:
        x: (B, ...) pixels in [0, 1].
        kind: ``"mask"`` (default) or ``"gaussian"``.
        level: masking probability in [0, 1], or the noise's standard deviation (>= 0). Default 0.25.
        generator: default None: torch's global generator.

    Returns:
        x~, the shape of ``x``.

    Raises:
        ValueError: unknown ``kind``; ``level`` outside its range.
    """
    if kind not in ("mask", "gaussian"):
        raise ValueError(f"kind must be 'mask' or 'gaussian', got {kind!r}")
    if level < 0 or (kind == "mask" and level > 1):
        raise ValueError(f"level must be in [0, 1] for masking noise and >= 0 for Gaussian noise, got {level}")
    device = generator.device if generator is not None else x.device
    if kind == "mask":
        keep = torch.rand(x.shape, generator=generator, device=device) >= level
        return x * keep.to(x.device, x.dtype)
    noise = torch.randn(x.shape, generator=generator, device=device).to(x.device, x.dtype)
    return (x + level * noise).clamp(0, 1)


class Autoencoder(nn.Module):
    """The deterministic auto-encoder: z = enc(x), logits = dec(z) (ML2021: the encoder's output is "the code").

    Args:
        latent_dim: size of z. Default 16.
        in_channels: image channels. Default 1.
        width, hidden, image_size: as :class:`ConvEncoder`.

    Shapes:
        forward: x (B, C, S, S) -> logits (B, C, S, S). encode / code: (B, latent_dim).

    Raises:
        ValueError: as :class:`ConvEncoder`.

    Example::

        ae = Autoencoder(latent_dim=16)
        loss = bernoulli_nll(ae(x), x).mean()       # x (B, 1, 28, 28) in [0, 1]
        score = bernoulli_nll(ae.reconstruct(x), x)  # (B,): high for images unlike the training set
    """

    def __init__(self, latent_dim: int = 16, in_channels: int = 1, width: int = 32, hidden: int = 256,
                 image_size: int = 28):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = ConvEncoder(latent_dim, in_channels, width, hidden, image_size)
        self.decoder = ConvDecoder(latent_dim, in_channels, width, hidden, image_size)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def code(self, x: Tensor) -> Tensor:
        """The representation: z."""
        return self.encode(x)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Logits of the reconstruction of ``x``."""
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)
