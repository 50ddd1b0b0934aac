"""The variational auto-encoder: reparameterization, the closed-form Gaussian KL, the ELBO.

Sources: ML2021 auto-encoder and generation lectures (the VAE as an auto-encoder whose code is a distribution:
the encoder gives a mean and a variance, noise is added, a KL term keeps the variance from collapsing); seed 004's
digest of the reparameterization trick; Kingma & Welling 2014, "Auto-Encoding Variational Bayes":

* the ELBO, eq. (3): ``log p(x) >= L(x) = E_{q(z|x)}[log p(x | z)] - KL(q(z | x) || p(z))``, with
  ``q(z | x) = N(mu(x), diag(sigma^2(x)))`` and the prior ``p(z) = N(0, I)``;
* reparameterization, section 2.4: ``z = mu + sigma * eps``, ``eps ~ N(0, I)``, so the sample is a differentiable
  function of (mu, sigma) and the noise carries no parameter;
* the KL in closed form, Appendix B: ``-KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)``.

The encoder outputs ``logvar = log sigma^2`` (any real number) rather than sigma, as the paper's code does. The
expectation is estimated with one sample per image (the paper's L = 1 for batches of 100). The decoder is
Bernoulli (:func:`deepnotes.nn.autoencoder.bernoulli_nll`; see that module for grey levels), so ``-L(x)`` is in
nats per image and, for binary images, an upper bound on ``-log p(x)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from deepnotes.nn.autoencoder import ConvDecoder, ConvEncoder, bernoulli_nll

__all__ = ["VAE", "gaussian_kl", "reparameterize"]


def _check_pair(mu: Tensor, logvar: Tensor) -> None:
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` in closed form (Kingma & Welling 2014, Appendix B), per example.

    ``1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)``, summed over the last dimension.

    Args:
        mu: (..., D) means.
        logvar: (..., D) log variances.

    Returns:
        (...,) nats, >= 0 (0 exactly at mu = 0, logvar = 0).

    Raises:
        ValueError: the shapes differ.
    """
    _check_pair(mu, logvar)
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A sample ``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` (Kingma & Welling 2014, section 2.4).

    The gradient flows to ``mu`` (dz/dmu = 1) and ``logvar`` (dz/dlogvar = eps sigma / 2); eps is drawn from
    ``generator`` on its device and moved to ``mu``'s, so a seeded generator gives the same sample on any device.

    Args:
        mu, logvar: (..., D).
        generator: default None: torch's global generator.

    Returns:
        z, the shape of ``mu``.

    Raises:
        ValueError: the shapes differ.
    """
    _check_pair(mu, logvar)
    device = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


class VAE(nn.Module):
    """A VAE for small images: a conv encoder giving (mu, logvar), a Gaussian code z, a Bernoulli conv decoder.

    Args:
        latent_dim: D, size of z. Default 16.
        in_channels: image channels. Default 1.
        width, hidden, image_size: as :class:`~deepnotes.nn.autoencoder.ConvEncoder`.
        beta: weight of the KL term in :meth:`loss_terms` (1: the ELBO; other values: beta-VAE, no longer a bound).
            Default 1.

    Shapes:
        encode: x (B, C, S, S) -> mu, logvar (B, D). decode: z (B, D) -> logits (B, C, S, S).

    Raises:
        ValueError: as :class:`~deepnotes.nn.autoencoder.ConvEncoder`; ``beta`` < 0.

    Example::

        vae = VAE(latent_dim=16)
        terms = vae.loss_terms(x, generator=g)      # nll, kl, loss: (B,) nats
        terms["loss"].mean().backward()             # the negative ELBO
        samples = torch.sigmoid(vae.decode(torch.randn(64, 16)))
    """

    def __init__(self, latent_dim: int = 16, in_channels: int = 1, width: int = 32, hidden: int = 256,
                 image_size: int = 28, beta: float = 1.0):
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.latent_dim, self.beta = latent_dim, beta
        self.encoder = ConvEncoder(2 * latent_dim, in_channels, width, hidden, image_size)
        self.decoder = ConvDecoder(latent_dim, in_channels, width, hidden, image_size)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x): ``(mu, logvar)``, each (B, D)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def code(self, x: Tensor) -> Tensor:
        """The representation: the posterior mean mu."""
        return self.encode(x)[0]

    def reconstruct(self, x: Tensor) -> Tensor:
        """Logits of the decoder at the posterior mean (deterministic)."""
        return self.decode(self.code(x))

    def loss_terms(self, x: Tensor, target: Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One-sample estimate of the negative ELBO of each image.

        Args:
            x: (B, C, S, S) input in [0, 1].
            target: what the decoder must explain (default ``x``).
            generator: draws eps.

        Returns:
            ``nll`` ``-log p(target | z)``, ``kl`` ``KL(q(z | x) || N(0, I))``, ``loss`` ``nll + beta kl``
            (the negative ELBO when beta = 1): each (B,) nats; ``logits`` (B, C, S, S).
        """
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        logits = self.decode(z)
        nll = bernoulli_nll(logits, x if target is None else target)
        kl = gaussian_kl(mu, logvar)
        return {"nll": nll, "kl": kl, "loss": nll + self.beta * kl, "logits": logits}

    def negative_elbo(self, x: Tensor, generator: torch.Generator | None = None, samples: int = 1) -> Tensor:
        """``-L(x)`` per image, the expectation averaged over ``samples`` draws (an anomaly score; an upper bound
        on ``-log p(x)`` in expectation for binary x).

        Raises:
            ValueError: ``samples`` < 1.
        """
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        mu, logvar = self.encode(x)
        nll = sum(bernoulli_nll(self.decode(reparameterize(mu, logvar, generator)), x) for _ in range(samples))
        return nll / samples + gaussian_kl(mu, logvar)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Logits of the decoder at one sample z ~ q(z | x)."""
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, generator))
