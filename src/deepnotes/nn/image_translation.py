"""Image-to-image translation objectives from the equations: pix2pix (conditional GAN + L1) and CycleGAN (two
adversarial games + cycle consistency + identity), with the least-squares GAN losses CycleGAN trains with.

Sources: EE-559 (Fleuret) "conditional GAN" and pix2pix slides; ML2021 (Hung-yi Lee) "GAN (4)": conditional
generation, and unsupervised conditional generation with CycleGAN. Papers:

* Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017 (pix2pix).
  Eq. (1): ``L_cGAN(G, D) = E_{x,y}[log D(x, y)] + E_{x,z}[log(1 - D(x, G(x, z)))]`` (D sees the input x beside
  the real y or the output G(x)); eq. (3): ``L_L1(G) = E_{x,y,z}[||y - G(x, z)||_1]``; eq. (4):
  ``G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G)`` with ``lambda = 100`` (section 4). Section 3.3: G is
  trained to maximize ``log D(x, G(x, z))`` (the non-saturating loss), and D's objective is divided by 2.
* Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks", ICCV 2017
  (CycleGAN). Eq. (1): the adversarial loss ``L_GAN(G, D_Y, X, Y)`` of G: X -> Y (and ``L_GAN(F, D_X, Y, X)``);
  eq. (2): ``L_cyc(G, F) = E_x[||F(G(x)) - x||_1] + E_y[||G(F(y)) - y||_1]``; eq. (3): ``L = L_GAN(G, D_Y, X, Y)
  + L_GAN(F, D_X, Y, X) + lambda L_cyc(G, F)`` with ``lambda = 10``; section 4 (training details): the negative
  log-likelihood is replaced by a least-squares loss, G minimizing ``E_x[(D(G(x)) - 1)^2]`` and D minimizing
  ``E_y[(D(y) - 1)^2] + E_x[D(G(x))^2]`` (Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017,
  eq. (2) with the 0-1 coding a = 0, b = c = 1); section 5.2: the identity loss
  ``L_identity(G, F) = E_y[||G(y) - y||_1] + E_x[||F(x) - x||_1]`` (Taigman et al. 2017), weighted
  ``0.5 lambda``.

The sigmoid GAN losses (minimax, non-saturating) are :mod:`deepnotes.nn.gan`'s (:data:`GAN_LOSSES`), reused here;
this module adds the least-squares pair and the reconstruction terms. Every loss is a mean over all its elements
(over the batch and, for a PatchGAN's ``(B, 1, P, P)`` map, over the patches too), to be **minimized**. Images
are compared in whatever units they are given (the lab uses [-1, 1], the generators' tanh range).

* :func:`d_loss_least_squares`, :func:`g_loss_least_squares`, :data:`TRANSLATION_LOSSES`;
* :func:`l1_distance` (eq. 3), :func:`pix2pix_generator_loss` (eq. 4);
* :func:`cycle_consistency_loss` (eq. 2), :func:`identity_loss`, :func:`cyclegan_generator_loss` (eq. 3 + identity).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from torch import Tensor

from deepnotes.nn.gan import GAN_LOSSES, g_loss_nonsaturating

__all__ = ["GeneratorLoss", "TRANSLATION_LOSSES", "cycle_consistency_loss", "cyclegan_generator_loss",
           "d_loss_least_squares", "g_loss_least_squares", "identity_loss", "l1_distance", "pix2pix_generator_loss"]


def d_loss_least_squares(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """The least-squares discriminator loss ``E[(D(y) - 1)^2] + E[D(G(x))^2]`` (CycleGAN, section 4; Mao et al.
    2017, eq. (2) with targets 1 for real and 0 for generated, without the paper's 1/2 factors).

    Args:
        real_scores, fake_scores: the discriminator's raw outputs on real and generated images (any shapes, e.g.
            (B, 1, P, P) patch scores; each is averaged over all its elements).

    Returns:
        A scalar.
    """
    return ((real_scores - 1.0) ** 2).mean() + (fake_scores ** 2).mean()


def g_loss_least_squares(fake_scores: Tensor) -> Tensor:
    """The least-squares generator loss ``E[(D(G(x)) - 1)^2]`` (CycleGAN, section 4; Mao et al. 2017, eq. (2), c = 1).

    Args:
        fake_scores: the discriminator's raw outputs on generated images (any shape).

    Returns:
        A scalar.
    """
    return ((fake_scores - 1.0) ** 2).mean()


#: name -> (discriminator loss(real, fake), generator loss(fake)) on the discriminator's raw outputs:
#: :data:`deepnotes.nn.gan.GAN_LOSSES` and ``least-squares``.
TRANSLATION_LOSSES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    **GAN_LOSSES,
    "least-squares": (d_loss_least_squares, g_loss_least_squares),
}


def _same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")


def l1_distance(output: Tensor, target: Tensor) -> Tensor:
    """``E[||y - G(x)||_1]`` (pix2pix eq. 3) as a mean over every pixel and channel: ``mean(|target - output|)``.

    Args:
        output, target: (B, C, H, W) (or any equal shapes), in the same units.

    Returns:
        A scalar, in the images' units per pixel (``torch.nn.functional.l1_loss`` with its default mean).

    Raises:
        ValueError: the shapes differ (no broadcasting: a (B, 1, H, W) target against a (B, 3, H, W) output is
            a bug, not a comparison).
    """
    _same_shape(output, target, "l1_distance")
    return (target - output).abs().mean()


class GeneratorLoss(NamedTuple):
    """A generator objective and its parts (scalars): ``total = adversarial + weighted reconstruction terms``."""

    total: Tensor
    adversarial: Tensor
    reconstruction: Tensor
    identity: Tensor


def pix2pix_generator_loss(fake_logits: Tensor | None, output: Tensor, target: Tensor, l1_weight: float = 100.0,
                           adversarial_loss: Callable[[Tensor], Tensor] = g_loss_nonsaturating) -> GeneratorLoss:
    """pix2pix's generator objective, eq. (4): ``adversarial_loss(D(x, G(x))) + lambda ||y - G(x)||_1``.

    Args:
        fake_logits: D's outputs on ``(x, G(x))`` (e.g. (B, 1, P, P) patch logits); None for the L1-only
            ablation (Isola et al., section 4.2, Table 1 "L1"), whose adversarial term is 0.
        output: G(x), (B, C, H, W). target: y, (B, C, H, W), the paired real image.
        l1_weight: lambda (the paper: 100), >= 0.
        adversarial_loss: the generator's GAN loss on D's outputs (default: the non-saturating
            ``-E[log D(x, G(x))]``, section 3.3).

    Returns:
        :class:`GeneratorLoss` (``reconstruction`` is the unweighted L1; ``identity`` is 0).

    Raises:
        ValueError: ``l1_weight < 0``; output and target of different shapes.
    """
    if l1_weight < 0:
        raise ValueError(f"l1_weight must be >= 0, got {l1_weight}")
    l1 = l1_distance(output, target)
    adversarial = adversarial_loss(fake_logits) if fake_logits is not None else output.new_zeros(())
    return GeneratorLoss(adversarial + l1_weight * l1, adversarial, l1, output.new_zeros(()))


def cycle_consistency_loss(real_a: Tensor, reconstructed_a: Tensor, real_b: Tensor,
                           reconstructed_b: Tensor) -> Tensor:
    """CycleGAN eq. (2): ``E_a[||F(G(a)) - a||_1] + E_b[||G(F(b)) - b||_1]``, each a mean over its pixels.

    Args:
        real_a: (B, C_a, H, W) images of domain A; reconstructed_a: F(G(a)), the same shape.
        real_b: (B', C_b, H, W) images of domain B; reconstructed_b: G(F(b)), the same shape.

    Returns:
        A scalar; 0 exactly when F inverts G on the a's and G inverts F on the b's.

    Raises:
        ValueError: a reconstruction's shape differs from its image's.
    """
    return l1_distance(reconstructed_a, real_a) + l1_distance(reconstructed_b, real_b)


def identity_loss(real_a: Tensor, f_of_a: Tensor, real_b: Tensor, g_of_b: Tensor) -> Tensor:
    """CycleGAN's identity loss (section 5.2, from Taigman et al. 2017): ``E_b[||G(b) - b||_1] + E_a[||F(a) -
    a||_1]``: each generator, given an image already in its output domain, should leave it as it is.

    Args:
        real_a: (B, C_a, H, W) images of domain A; f_of_a: F applied to them (the caller adapts the channels when
            the domains differ in channels), the same shape as ``real_a``.
        real_b: (B', C_b, H, W) images of domain B; g_of_b: G applied to them, the same shape as ``real_b``.

    Returns:
        A scalar.

    Raises:
        ValueError: an output's shape differs from its image's.
    """
    return l1_distance(f_of_a, real_a) + l1_distance(g_of_b, real_b)


def cyclegan_generator_loss(fake_b_scores: Tensor, fake_a_scores: Tensor, cycle: Tensor,
                            identity: Tensor | None = None, cycle_weight: float = 10.0, identity_weight: float = 5.0,
                            adversarial_loss: Callable[[Tensor], Tensor] = g_loss_least_squares) -> GeneratorLoss:
    """CycleGAN's generator objective, eq. (3) plus the identity term: ``adv(D_B(G(a))) + adv(D_A(F(b))) +
    lambda_cyc L_cyc + lambda_id L_identity`` (both generators are trained on this one sum).

    Args:
        fake_b_scores: D_B's outputs on G(a); fake_a_scores: D_A's outputs on F(b) (any shapes).
        cycle: :func:`cycle_consistency_loss`. identity: :func:`identity_loss`, or None (weight 0).
        cycle_weight: lambda_cyc (the paper: 10), >= 0. identity_weight: lambda_id (the paper: 0.5 lambda_cyc = 5),
            >= 0.
        adversarial_loss: the generators' GAN loss (default the least-squares ``E[(D(G(a)) - 1)^2]``).

    Returns:
        :class:`GeneratorLoss` (``adversarial``: both games' sum; ``reconstruction``: the unweighted cycle loss;
        ``identity``: the unweighted identity loss, 0 when None).

    Raises:
        ValueError: a negative weight.
    """
    if cycle_weight < 0 or identity_weight < 0:
        raise ValueError(f"cycle_weight and identity_weight must be >= 0, got {cycle_weight} and {identity_weight}")
    adversarial = adversarial_loss(fake_b_scores) + adversarial_loss(fake_a_scores)
    identity = cycle.new_zeros(()) if identity is None else identity
    total = adversarial + cycle_weight * cycle + identity_weight * identity
    return GeneratorLoss(total, adversarial, cycle, identity)
