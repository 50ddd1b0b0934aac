"""Gumbel-softmax (Concrete) relaxation of categorical samples, and the discrete VAE built on it.

Sources: seed 004's digest of reparameterization and Gumbel-softmax; Jang, Gu & Poole 2017, "Categorical
Reparameterization with Gumbel-Softmax", and Maddison, Mnih & Teh 2017, "The Concrete Distribution":

* the Gumbel-max trick: ``argmax_k (log pi_k + g_k)``, ``g_k = -log(-log u_k)``, ``u_k ~ U(0, 1)``, is a sample of
  Categorical(pi) (Jang et al. eq. (1));
* the relaxation, eq. (2): ``y_k = softmax((log pi + g) / tau)_k``, a point of the simplex, differentiable in the
  logits; as tau -> 0 it becomes the one-hot sample, at larger tau it is smoother (lower-variance gradients, but
  the gradient of a relaxed objective: biased for the discrete one);
* straight-through Gumbel-softmax (section 2.2): the forward value is ``one_hot(argmax y)``, the backward pass uses
  the gradient of the soft y (``y_hard - sg[y] + y``);
* the annealing of section 4: tau from 1 towards 0.5, ``tau = max(0.5, exp(-r t))`` over updates t.

The discrete VAE (Jang et al. section 4.2, 20-30 categorical variables of 10 classes on MNIST; also Rolfe 2017,
"Discrete Variational Autoencoders"): q(y | x) is a product of N categoricals over K classes, the prior is uniform,
so ``KL(q || p) = sum_n sum_k q_nk log(q_nk K)`` exactly; the decoder reads the N relaxed one-hot vectors during
training. The negative ELBO this module reports (:meth:`GumbelVAE.negative_elbo`) decodes true one-hot samples of q
(the Gumbel-max trick), so it is a bound of the discrete model, not of the relaxed one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.autoencoder import ConvDecoder, ConvEncoder, bernoulli_nll

__all__ = ["GumbelVAE", "categorical_kl_uniform", "gumbel_softmax", "sample_gumbel", "tau_schedule"]


def sample_gumbel(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Tensor:
    """Standard Gumbel noise ``-log(-log u)``, ``u ~ U(0, 1)`` (clamped away from 0), drawn on ``generator``'s device
    and moved to ``device``.

    Returns:
        float32 tensor of ``shape``.
    """
    where = generator.device if generator is not None else (device or "cpu")
    u = torch.rand(shape, generator=generator, device=where).clamp_min(torch.finfo(torch.float32).tiny)
    g = -torch.log(-torch.log(u))
    return g if device is None else g.to(device)


def gumbel_softmax(logits: Tensor, tau: float = 1.0, hard: bool = False, generator: torch.Generator | None = None,
                   dim: int = -1) -> Tensor:
    """A Gumbel-softmax sample ``softmax((logits + g) / tau)`` (Jang et al. 2017 eq. (2)), or its straight-through
    one-hot version.

    Args:
        logits: (..., K) unnormalized log-probabilities log pi (+ any constant).
        tau: temperature > 0. Default 1.
        hard: return ``one_hot(argmax)`` in the forward pass with the soft sample's gradient. Default False.
        generator: default None: torch's global generator.
        dim: the categories' dimension. Default -1.

    Returns:
        The shape of ``logits``: points of the simplex (soft), or one-hot vectors (hard) distributed as
        Categorical(softmax(logits)).

    Raises:
        ValueError: ``tau`` <= 0.

    Example::

        y = gumbel_softmax(logits, tau=0.5, hard=True, generator=g)   # one-hot forward, soft gradient
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    g = sample_gumbel(logits.shape, generator, logits.device)
    y = torch.softmax((logits.float() + g) / tau, dim=dim).to(logits.dtype)
    if not hard:
        return y
    index = y.argmax(dim=dim, keepdim=True)
    y_hard = torch.zeros_like(y).scatter_(dim, index, 1.0)
    return y_hard - y.detach() + y  # forward: one-hot; backward: d y_soft


def categorical_kl_uniform(logits: Tensor) -> Tensor:
    """``KL(Categorical(softmax(logits)) || Uniform(K)) = sum_k q_k log q_k + log K`` over the last dimension.

    Args:
        logits: (..., K).

    Returns:
        (...) nats, in [0, log K].
    """
    log_q = F.log_softmax(logits.float(), dim=-1)
    return (log_q.exp() * log_q).sum(-1) + math.log(logits.shape[-1])


def tau_schedule(step: int, total_steps: int, tau0: float = 1.0, tau_min: float = 0.5) -> float:
    """Jang et al.'s annealing ``tau = max(tau_min, tau0 exp(-r t))``, with r chosen so that tau reaches
    ``tau_min`` at the last update (the paper fixes r = 1e-5 or 1e-4 for 100k+ updates).

    Args:
        step: update t (0-based). total_steps: updates of the run (>= 1).
        tau0: the first temperature (> 0). Default 1. tau_min: the floor (0 < tau_min <= tau0). Default 0.5.

    Raises:
        ValueError: ``total_steps`` < 1, or the temperatures out of order.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 < tau_min <= tau0:
        raise ValueError(f"need 0 < tau_min <= tau0, got tau_min {tau_min} and tau0 {tau0}")
    r = math.log(tau0 / tau_min) / max(total_steps - 1, 1)
    return max(tau_min, tau0 * math.exp(-r * step))


class GumbelVAE(nn.Module):
    """A VAE with N categorical latents of K classes each, trained through Gumbel-softmax samples.

    Args:
        num_latents: N. Default 16.
        categories: K. Default 64.
        in_channels: image channels. Default 1.
        width, hidden, image_size: as :class:`~deepnotes.nn.autoencoder.ConvEncoder`.
        hard: straight-through samples in training (one-hot forward, soft gradient). Default False.

    Shapes:
        x (B, C, S, S); encode -> logits (B, N, K); decode: (B, N, K) one-hot or relaxed -> image logits.

    Raises:
        ValueError: as :class:`~deepnotes.nn.autoencoder.ConvEncoder`; N or K below 1 (K below 2).
    """

    def __init__(self, num_latents: int = 16, categories: int = 64, in_channels: int = 1, width: int = 32,
                 hidden: int = 256, image_size: int = 28, hard: bool = False):
        super().__init__()
        if num_latents < 1 or categories < 2:
            raise ValueError(f"num_latents must be >= 1 and categories >= 2, got {num_latents} and {categories}")
        self.num_latents, self.categories, self.hard = num_latents, categories, hard
        self.encoder = ConvEncoder(num_latents * categories, in_channels, width, hidden, image_size)
        self.decoder = ConvDecoder(num_latents * categories, in_channels, width, hidden, image_size)

    def encode(self, x: Tensor) -> Tensor:
        """Logits of q(y | x): (B, N, K)."""
        return self.encoder(x).reshape(len(x), self.num_latents, self.categories)

    def decode(self, y: Tensor) -> Tensor:
        return self.decoder(y.flatten(1))

    def code(self, x: Tensor) -> Tensor:
        """The representation: the probabilities q(y | x) flattened, (B, N K)."""
        return torch.softmax(self.encode(x).float(), -1).flatten(1)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Logits of the decoder at the mode of q (one-hot argmax of each variable)."""
        logits = self.encode(x)
        return self.decode(F.one_hot(logits.argmax(-1), self.categories).to(logits.dtype))

    def loss_terms(self, x: Tensor, tau: float, target: Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The relaxed negative ELBO per image: ``nll`` of the decoder at a Gumbel-softmax sample (temperature
        ``tau``; straight-through when ``hard``), ``kl`` to the uniform prior, ``loss = nll + kl``: each (B,)."""
        logits = self.encode(x)
        y = gumbel_softmax(logits, tau, self.hard, generator)
        nll = bernoulli_nll(self.decode(y), x if target is None else target)
        kl = categorical_kl_uniform(logits).sum(-1)
        return {"nll": nll, "kl": kl, "loss": nll + kl}

    def negative_elbo(self, x: Tensor, generator: torch.Generator | None = None, samples: int = 1) -> Tensor:
        """``-L(x)`` of the discrete model per image: one-hot samples of q (Gumbel-max), averaged over
        ``samples`` draws, plus the exact KL (an anomaly score).

        Raises:
            ValueError: ``samples`` < 1.
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        logits = self.encode(x)
        nll = sum(bernoulli_nll(self.decode(gumbel_softmax(logits, 1.0, True, generator)), x) for _ in range(samples))
        return nll / samples + categorical_kl_uniform(logits).sum(-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)
