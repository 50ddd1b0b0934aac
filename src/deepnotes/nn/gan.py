"""GAN objectives from the equations: minimax, non-saturating, hinge and Wasserstein losses, weight clipping and
the gradient penalty.

Sources: EE-559 11-1 "Adversarial Networks" (Fleuret's toy GAN: the discriminator minimizes
``-log D(x) - log(1 - D(G(z)))``, the generator ``log(1 - D(G(z)))``) and 11-2 "Wasserstein GAN"
(``W(mu, mu') = max_{||f||_L <= 1} E_mu[f(X)] - E_mu'[f(X)]``); ML2021 "GAN (2): theory and WGAN" (the optimal
discriminator's objective is a JS divergence; JS is ``log 2`` for distributions that do not overlap, which is why
WGAN). Papers: Goodfellow et al. 2014 (minimax game, section 4.1: ``max_D V(G, D) = -log 4 + 2 JS(p_data || p_g)``;
section 3: the non-saturating ``max log D(G(z))``), Arjovsky et al. 2017 (WGAN: critic loss, clipping to
``[-c, c]``), Gulrajani et al. 2017 (WGAN-GP, Algorithm 1: ``lambda E[(||grad f(x_hat)||_2 - 1)^2]`` on
``x_hat = eps x + (1 - eps) x_fake``, ``eps ~ U[0, 1]`` per sample), Lim & Ye 2017 / Miyato et al. 2018 (hinge loss).

Every loss takes the discriminator's raw outputs: **logits** ``l`` for the sigmoid losses (``D(x) = sigmoid(l)``,
so ``-log D = softplus(-l)`` and ``-log(1 - D) = softplus(l)``, finite for any logit) and **scores** ``f(x)`` for
the critic losses. Every loss is a mean over the batch, to be **minimized** (the discriminator's and the
generator's both).

* :func:`d_loss_minimax` (also the non-saturating GAN's discriminator loss), :func:`g_loss_minimax`,
  :func:`g_loss_nonsaturating`;
* :func:`d_loss_hinge`, :func:`g_loss_hinge`;
* :func:`critic_loss_wasserstein`, :func:`g_loss_wasserstein`, :func:`clip_weights_`, :func:`gradient_penalty`;
* :data:`GAN_LOSSES`: name -> (discriminator loss, generator loss).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GAN_LOSSES", "clip_weights_", "critic_loss_wasserstein", "d_loss_hinge", "d_loss_minimax",
           "g_loss_hinge", "g_loss_minimax", "g_loss_nonsaturating", "g_loss_wasserstein", "gradient_penalty",
           "interpolates"]


def d_loss_minimax(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The discriminator's loss of the minimax GAN: ``-E[log D(x)] - E[log(1 - D(G(z)))]``, i.e. ``-V(D, G)``.

    The binary cross-entropy of "real" (1) on real data and "fake" (0) on generated data, each averaged over its
    own batch; the non-saturating GAN trains its discriminator with the same loss. With the optimal discriminator
    ``D* = p_data / (p_data + p_g)`` it equals ``log 4 - 2 JS(p_data || p_g)`` (Goodfellow et al. 2014, Thm 1).

    Args:
        real_logits: the discriminator's logits on real samples (any shape, e.g. (B,) or (B, 1)).
        fake_logits: its logits on generated samples (any shape).

    Returns:
        A scalar: ``mean(softplus(-real_logits)) + mean(softplus(fake_logits))``.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss_minimax(fake_logits: Tensor) -> Tensor:
    """The generator's loss of the minimax GAN: ``E[log(1 - D(G(z)))]`` (Fleuret's ``(1 - D(fake)).log().mean()``).

    It *saturates*: where the discriminator rejects the samples (``D(G(z)) -> 0``, a large negative logit) its
    gradient vanishes (``d/dl log(1 - sigmoid(l)) = -sigmoid(l) -> 0``), so a generator that starts badly learns
    slowly (Goodfellow et al. 2014, section 3).

    Args:
        fake_logits: the discriminator's logits on generated samples (any shape).

    Returns:
        A scalar: ``-mean(softplus(fake_logits))`` (at most 0).
    """
    return -F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """The non-saturating generator loss ``-E[log D(G(z))]``: the same fixed point as the minimax game, strong
    gradients early in training (``d/dl -log sigmoid(l) = sigmoid(l) - 1 -> -1`` where ``D`` rejects the samples).

    Args:
        fake_logits: the discriminator's logits on generated samples (any shape).

    Returns:
        A scalar: ``mean(softplus(-fake_logits))``.
    """
    return F.softplus(-fake_logits).mean()


def d_loss_hinge(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """The discriminator's hinge loss ``E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]`` (Lim & Ye 2017; used by
    Miyato et al. 2018 for SN-GANs).

    Args:
        real_scores, fake_scores: the discriminator's raw outputs on real and generated samples (any shapes).
    """
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def g_loss_hinge(fake_scores: Tensor) -> Tensor:
    """The generator's loss that goes with :func:`d_loss_hinge`: ``-E[D(G(z))]``."""
    return -fake_scores.mean()


def critic_loss_wasserstein(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """The WGAN critic's loss ``E[f(G(z))] - E[f(x)]``: minus the Kantorovich-Rubinstein estimate of the
    Wasserstein-1 distance, valid while ``f`` is 1-Lipschitz (clipping, :func:`clip_weights_`, or the gradient
    penalty, :func:`gradient_penalty`, keep it near that).

    Args:
        real_scores, fake_scores: the critic's outputs ``f(x)`` on real and generated samples (any shapes).
    """
    return fake_scores.mean() - real_scores.mean()


def g_loss_wasserstein(fake_scores: Tensor) -> Tensor:
    """The WGAN generator's loss ``-E[f(G(z))]`` (the critic's real term does not depend on the generator)."""
    return -fake_scores.mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, clip_value: float) -> None:
    """Clamp every parameter of ``module`` to ``[-clip_value, clip_value]`` in place (WGAN, Arjovsky et al. 2017,
    Algorithm 1, after each critic update: a crude way to keep the critic K-Lipschitz for some K).

    Args:
        module: the critic.
        clip_value: ``c > 0`` (the paper: 0.01).

    Raises:
        ValueError: ``clip_value <= 0``.
    """
    if not clip_value > 0:
        raise ValueError(f"clip_value must be > 0, got {clip_value}")
    for p in module.parameters():
        p.clamp_(-clip_value, clip_value)


def interpolates(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``x_hat = eps x + (1 - eps) x_fake`` with one ``eps ~ U[0, 1]`` per sample (Gulrajani et al. 2017, Alg. 1).

    Args:
        real, fake: (B, ...) real and generated samples of the same shape (``fake`` is used detached).
        generator: the source of ``eps``; default None uses torch's global generator.

    Returns:
        (B, ...) points on the segments between paired real and generated samples, detached from both.

    Raises:
        ValueError: the shapes differ.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)  # (B, 1, ..., 1): one eps per sample
    eps = torch.rand(shape, generator=generator, dtype=real.dtype, device="cpu").to(real.device)
    return (eps * real.detach() + (1 - eps) * fake.detach()).detach()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, weight: float = 10.0,
                     generator: torch.Generator | None = None, points: Tensor | None = None) -> Tensor:
    """WGAN-GP's penalty ``lambda E_{x_hat}[(||grad_x f(x_hat)||_2 - 1)^2]`` (Gulrajani et al. 2017, eq. 3).

    The gradient is taken with ``create_graph=True``, so the penalty's own gradient reaches the critic's weights
    (a second-order term) when it is added to :func:`critic_loss_wasserstein`.

    Args:
        critic: ``f``, mapping (B, ...) inputs to (B,) or (B, 1) scores.
        real, fake: (B, ...) samples; the penalty is taken at :func:`interpolates` of them.
        weight: ``lambda`` (the paper: 10).
        generator: the source of the interpolation coefficients; default None: torch's global generator.
        points: (B, ...) the points ``x_hat`` themselves, instead of drawing interpolates (e.g. a test's).

    Returns:
        A scalar.

    Raises:
        ValueError: ``weight < 0`` or ``real`` and ``fake`` of different shapes.
    """
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    x_hat = interpolates(real, fake, generator) if points is None else points.detach()
    x_hat.requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # sum: each score's own input gradient
    norms = grad.flatten(1).norm(2, dim=1)  # (B,) ||grad_x f(x_hat_i)||_2
    return weight * ((norms - 1.0) ** 2).mean()


# name -> (discriminator loss(real, fake), generator loss(fake)), all on the discriminator's raw outputs
GAN_LOSSES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "minimax": (d_loss_minimax, g_loss_minimax),
    "nonsaturating": (d_loss_minimax, g_loss_nonsaturating),
    "hinge": (d_loss_hinge, g_loss_hinge),
    "wasserstein": (critic_loss_wasserstein, g_loss_wasserstein),
}
