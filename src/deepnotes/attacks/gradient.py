r"""White-box gradient attacks: FGSM, I-FGSM, PGD (L-inf, L2), MI-FGSM and its DI/TI/VMI/SI-NI variants, DeepFool.

Source: ML2021 (Hung-yi Lee) "來自人類的惡意攻擊 (Adversarial Attack) (上) – 基本概念" and "(下)", and HW10
(adversarial attack on CIFAR-10 classifiers: FGSM, I-FGSM, MI-FGSM, DI-FGSM, attacking an ensemble to
transfer to an unknown black box). The lecture's recipe: find x* = argmin_{d(x0, x) <= eps} L(x), with
L(x) = -e(y, y_true) (non-targeted: make the true class unlikely) or L(x) = -e(y, y_true) + e(y, y_target)
(targeted); d is the L-inf distance, "non-perceivable" when eps is small; solve it by gradient descent that
is projected back onto the eps ball ("fix" x_t) after every step. Here every attack *ascends* the
attacker's objective

    J(x) = CE(f(x), y)           (untargeted, y the true labels)
    J(x) = -CE(f(x), y_target)   (targeted)

where CE is the cross-entropy of the model's logits f(x). The pieces, each from its paper:

* FGSM (Goodfellow et al. 2015, "Explaining and Harnessing Adversarial Examples"): one step
  x' = clip_[0,1](x + eps * sign(grad J(x))).
* I-FGSM / BIM (Kurakin et al. 2017, "Adversarial Examples in the Physical World"): ``steps`` steps of
  size alpha, each followed by the projection x' = clip_[x-eps, x+eps] and clip_[0,1].
* PGD (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"): I-FGSM from a
  random start in the eps ball. L2 variant: step alpha * g / ||g||_2, projection by rescaling the
  perturbation onto the L2 ball.
* MI-FGSM (Dong et al. 2018, "Boosting Adversarial Attacks with Momentum"): g_{t+1} = mu g_t + grad / ||grad||_1
  (per image; the mean absolute value, as torchattacks, differs from the L1 norm by a constant that the
  sign ignores), step alpha * sign(g_{t+1}).
* DI-FGSM (Xie et al. 2019, "Improving Transferability of Adversarial Examples with Input Diversity"): the
  gradient is taken through a random resize-and-pad of the input, applied with probability p.
* TI-FGSM (Dong et al. 2019, "Evading Defenses to Transferable Adversarial Examples by Translation-Invariant
  Attacks"): the gradient convolved with a Gaussian kernel W (each channel on its own), an approximation of the
  gradient averaged over translated copies of the image, so the perturbation depends less on where the surrogates
  look.
* VMI-FGSM (Wang & He 2021, "Enhancing the Transferability of Adversarial Attacks through Variance Tuning"): the
  gradient of each step is corrected by the previous step's variance v = (1/N) sum_j grad J(x + r_j) - grad J(x),
  r_j uniform in [-beta eps, beta eps]^d; with Nesterov's look-ahead, VNI-FGSM.
* SI-NI-FGSM (Lin et al. 2020, "Nesterov Accelerated Gradient and Scale Invariance for Adversarial Attacks"): the
  gradient at the look-ahead point x + alpha mu g (NI), averaged over the scaled copies x / 2^i, i < m (SI).
* EOT (Athalye et al. 2018, "Synthesizing Robust Adversarial Examples" / "Obfuscated Gradients Give a False
  Sense of Security"): against a randomized model or defense, average the gradient over ``eot_samples``
  forward passes, an estimate of grad E_t[J(t(x))].
* DeepFool (Moosavi-Dezfooli et al. 2016): the smallest L2 step across the linearized nearest decision
  boundary, repeated until the label changes.
* Ensemble (HW10): the mean of several models' logits, attacked as one model so that the examples transfer.

All attacks: ``model`` maps images (B, C, H, W) in [0, 1] to logits (B, K) (normalization inside the model,
so eps and alpha are in pixel units); the model is used in whatever train/eval mode it is in (set eval
first), and its parameters' ``requires_grad`` and ``.grad`` are left untouched (gradients are taken with
``torch.autograd.grad`` with respect to the input only). Results are detached, in [0, 1], within the bound.

Checked against torchattacks 3.5.1 (FGSM, BIM, PGD, PGDL2, MIFGSM, DIFGSM, TIFGSM, VMIFGSM, VNIFGSM, NIFGSM,
SINIFGSM, EOTPGD, DeepFool) with identical starts; deliberate differences from torchattacks:

* the gradient is that of the *summed* per-image cross-entropy (each image's own gradient, independent of
  the batch), where torchattacks differentiates the batch mean; every update here uses the sign or a
  normalized gradient, so the images are the same;
* randomness comes from an explicit ``generator`` (torchattacks uses the global RNG; a
  ``torch.Generator().manual_seed(s)`` draws the same numbers as ``torch.manual_seed(s)`` on the CPU);
* ``deepfool`` takes no labels: it starts from the model's own prediction, and like the authors' code it
  considers only the ``num_classes`` classes with the highest clean logits;
* VMI-FGSM's neighbours are drawn as ``uniform_`` samples; torchattacks writes ``randn_like(x).uniform_(...)``,
  which first spends a normal draw of the global RNG on each neighbour and then overwrites it, so the same seed
  gives other (equally distributed) neighbours there;
* TI's convolution is depthwise over any number of channels (torchattacks' ``groups=3`` takes RGB only), with an
  odd kernel size, and its width is given as the Gaussian's standard deviation in pixels (torchattacks' ``nsig``
  is the kernel's half-width in standard deviations: ``ti_sigma = (ti_kernel - 1) / (2 nsig)``).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.attacks._checks import (check_count, check_images, check_labels, check_positive,
                                       check_probability)

__all__ = ["Ensemble", "deepfool", "fgsm", "gaussian_kernel", "ifgsm", "input_diversity", "loss_gradient", "mifgsm",
           "pgd"]


def loss_gradient(model: nn.Module, x: Tensor, y: Tensor, *, targeted: bool = False, eot_samples: int = 1,
                  transform: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    r"""Gradient of the attacker's objective ``J`` with respect to the input, and ``J`` itself.

    ``J = CE(model(x), y)`` per image (untargeted) or ``J = -CE(model(x), y)`` (targeted: ``y`` holds the
    target labels), so *ascending* the gradient always helps the attacker. Each row is the gradient of that
    image's own loss (the summed loss is differentiated; the batch does not rescale it).

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) images in [0, 1].
        y: (B,) int64 true labels, or target labels when ``targeted``.
        targeted: flip the sign (see above). Default False.
        eot_samples: number of forward passes whose gradients and objectives are averaged (Expectation over
            Transformation, Athalye et al. 2018), for models or transforms that are random. Default 1.
        transform: optional differentiable map applied to the input before the model on every pass (e.g.
            :func:`input_diversity`). Default None.

    Returns:
        ``(grad, loss)``: grad (B, C, H, W), loss (B,) the objective ``J`` per image, both detached and
        averaged over the ``eot_samples`` passes.

    Raises:
        ValueError: if ``x`` is not (B, C, H, W) in [0, 1], ``y`` is not (B,) integers, or ``eot_samples`` < 1.
    """
    check_images(x)
    check_labels(y, x)
    check_count(eot_samples, "eot_samples")
    return _loss_gradient(model, x, y, targeted, eot_samples, transform)


def _loss_gradient(model: nn.Module, x: Tensor, y: Tensor, targeted: bool, eot_samples: int,
                   transform: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """:func:`loss_gradient` without the argument checks (the attacks check once, not at every step)."""
    grad_sum = torch.zeros_like(x)
    loss_sum = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    with torch.enable_grad():
        x_in = x.detach().clone().requires_grad_(True)
        for _ in range(eot_samples):
            logits = model(x_in if transform is None else transform(x_in))
            loss = F.cross_entropy(logits, y, reduction="none")
            if targeted:
                loss = -loss
            (grad,) = torch.autograd.grad(loss.sum(), x_in)
            grad_sum += grad
            loss_sum += loss.detach()
    return grad_sum / eot_samples, loss_sum / eot_samples


def _project_linf(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Nearest point of the L-inf ball of radius eps around x, intersected with the [0, 1] box."""
    delta = torch.clamp(x_adv - x, min=-eps, max=eps)
    return torch.clamp(x + delta, min=0, max=1).detach()


def _project_l2(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Rescale each perturbation onto the L2 ball of radius eps (if outside it), then clip to [0, 1]."""
    delta = x_adv - x
    norms = delta.flatten(1).norm(p=2, dim=1)
    factor = torch.where(norms > eps, eps / norms, torch.ones_like(norms))
    return torch.clamp(x + delta * factor.view(-1, 1, 1, 1), min=0, max=1).detach()


def _check_attack(x: Tensor, y: Tensor, eps: float, eot_samples: int) -> None:
    check_images(x)
    check_labels(y, x)
    check_positive(eps, "eps", allow_zero=True)
    check_count(eot_samples, "eot_samples")


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, targeted: bool = False,
         eot_samples: int = 1) -> Tensor:
    r"""Fast Gradient Sign Method (Goodfellow et al. 2015): ``x' = clip_[0,1](x + eps * sign(grad J(x)))``.

    The one-step attack of the lecture ("only update once"): the L-inf steepest-ascent step of size eps.

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) clean images in [0, 1].
        y: (B,) int64 true labels, or target labels when ``targeted``.
        eps: L-inf budget in pixel units (e.g. 8/255), >= 0.
        targeted: move towards ``y`` instead of away from it. Default False.
        eot_samples: gradient averaged over this many forward passes (see :func:`loss_gradient`). Default 1.

    Returns:
        (B, C, H, W) detached adversarial images in [0, 1] with ``|x' - x| <= eps``.

    Raises:
        ValueError: on a bad ``x``, ``y``, ``eps`` < 0 or ``eot_samples`` < 1.
    """
    _check_attack(x, y, eps, eot_samples)
    grad, _ = _loss_gradient(model, x, y, targeted, eot_samples)
    return torch.clamp(x.detach() + eps * grad.sign(), min=0, max=1).detach()


def ifgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, *, targeted: bool = False,
          eot_samples: int = 1) -> Tensor:
    r"""Iterative FGSM / Basic Iterative Method (Kurakin et al. 2017), from the clean image.

    ``x_{t+1} = Proj(x_t + alpha * sign(grad J(x_t)))`` where Proj clips to ``[x - eps, x + eps]`` and to
    [0, 1]. Equals torchattacks ``BIM`` (and ``PGD`` without random start).

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) clean images in [0, 1].
        y: (B,) int64 true labels, or target labels when ``targeted``.
        eps: L-inf budget in pixel units, >= 0.
        alpha: step size in pixel units, > 0 (e.g. eps / 4).
        steps: number of steps, >= 1.
        targeted: move towards ``y`` instead of away from it. Default False.
        eot_samples: gradient averaged over this many forward passes per step. Default 1.

    Returns:
        (B, C, H, W) detached adversarial images in [0, 1] with ``|x' - x| <= eps``.

    Raises:
        ValueError: on a bad ``x``, ``y``, ``eps`` < 0, ``alpha`` <= 0, ``steps`` < 1 or ``eot_samples`` < 1.
    """
    return pgd(model, x, y, eps, alpha, steps, norm="linf", random_start=False, targeted=targeted,
               eot_samples=eot_samples)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, *,
        norm: Literal["linf", "l2"] = "linf", random_start: bool = True, targeted: bool = False,
        eot_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
    r"""Projected Gradient Descent (Madry et al. 2018) in the L-inf or L2 ball.

    L-inf: start at ``clip_[0,1](x + U(-eps, eps))`` (or at x), then ``steps`` times
    ``x <- Proj(x + alpha * sign(g))``. L2: start at ``clip_[0,1](x + r * eps * z / ||z||)`` with z ~ N(0, I)
    and r ~ U(0, 1) per image (as torchattacks ``PGDL2`` draws it: uniform radius, not uniform in the ball),
    step ``alpha * g / (||g|| + 1e-10)``, and project by ``delta <- delta * min(1, eps / ||delta||)``.
    Projections end by clipping to [0, 1].

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) clean images in [0, 1].
        y: (B,) int64 true labels, or target labels when ``targeted``.
        eps: budget in pixel units (L-inf, e.g. 8/255; or the L2 norm of the whole perturbation), >= 0.
        alpha: step size (same units), > 0.
        steps: number of steps, >= 1.
        norm: ``"linf"`` (default) or ``"l2"``.
        random_start: start from a random point of the ball (default True); False gives I-FGSM.
        targeted: move towards ``y`` instead of away from it. Default False.
        eot_samples: gradient averaged over this many forward passes per step. Default 1.
        generator: draws the random start, on its own device (None: torch's default generator). Default None.

    Returns:
        (B, C, H, W) detached adversarial images in [0, 1] within the ``norm`` ball of radius eps around x.

    Raises:
        ValueError: on a bad ``x``, ``y``, ``eps`` < 0, ``alpha`` <= 0, ``steps`` < 1, ``eot_samples`` < 1,
        or an unknown ``norm``.
    """
    _check_attack(x, y, eps, eot_samples)
    check_positive(alpha, "alpha")
    check_count(steps, "steps")
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    x = x.detach()
    x_adv = x.clone()
    where = generator.device if generator is not None else x.device  # draw where the generator lives
    if random_start and norm == "linf":
        noise = torch.empty(x.shape, dtype=x.dtype, device=where).uniform_(-eps, eps, generator=generator)
        x_adv = torch.clamp(x_adv + noise.to(x.device), min=0, max=1)
    elif random_start:
        delta = torch.empty(x.shape, dtype=x.dtype, device=where).normal_(generator=generator)
        n = delta.flatten(1).norm(p=2, dim=1).view(-1, 1, 1, 1)
        r = torch.zeros_like(n).uniform_(0, 1, generator=generator)
        delta *= r / n * eps
        x_adv = torch.clamp(x_adv + delta.to(x.device), min=0, max=1)
    for _ in range(steps):
        grad, _ = _loss_gradient(model, x_adv, y, targeted, eot_samples)
        if norm == "linf":
            x_adv = _project_linf(x_adv + alpha * grad.sign(), x, eps)
        else:
            grad_norms = grad.flatten(1).norm(p=2, dim=1) + 1e-10
            x_adv = _project_l2(x_adv + alpha * grad / grad_norms.view(-1, 1, 1, 1), x, eps)
    return x_adv


def input_diversity(x: Tensor, *, resize_rate: float = 0.9, diversity_prob: float = 0.5,
                    generator: torch.Generator | None = None) -> Tensor:
    r"""DI-FGSM's random input transform (Xie et al. 2019), drawn once for the whole batch as torchattacks does.

    With W the image side and ``W' = int(W * resize_rate)``: for ``resize_rate < 1`` the image is resized
    (bilinear) to a random side ``r`` in ``[W', W)`` and zero-padded at a random offset back to W x W; for
    ``resize_rate > 1`` it is resized to ``r`` in ``[W, W')`` and padded to W' x W' (the model must accept
    that size). The pad before the image is drawn in ``[0, rem)``, ``rem`` = total padding. The transformed
    batch is returned with probability ``diversity_prob``, else ``x`` itself. The draws, in torchattacks'
    order: r, top pad, left pad, then the coin; all four are drawn every call. Differentiable in ``x``.

    Args:
        x: (B, C, W, W) square images.
        resize_rate: ratio of the smallest (or largest) size, != 1 with ``int(W * resize_rate) != W``.
            Default 0.9.
        diversity_prob: probability of transforming, in [0, 1]. Default 0.5.
        generator: for the draws (None: torch's default generator). Default None.

    Returns:
        (B, C, S, S) with S = W when ``resize_rate < 1``, else ``int(W * resize_rate)``.

    Raises:
        ValueError: if ``x`` is not a square (B, C, W, W) batch, ``diversity_prob`` is outside [0, 1], or
        ``resize_rate`` leaves no size to draw.
    """
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must be a batch of square images (B, C, W, W), got {tuple(x.shape)}")
    check_probability(diversity_prob, "diversity_prob")
    size = x.shape[-1]
    low, high = sorted((size, int(size * resize_rate)))
    if low == high:
        raise ValueError(f"resize_rate={resize_rate} gives no size to draw for images of side {size}")
    where = generator.device if generator is not None else None  # scalar draws: on the generator's device
    rnd = int(torch.randint(low=low, high=high, size=(1,), generator=generator, device=where))
    rescaled = F.interpolate(x, size=[rnd, rnd], mode="bilinear", align_corners=False)
    rem = high - rnd
    pad_top = int(torch.randint(low=0, high=rem, size=(1,), generator=generator, device=where))
    pad_left = int(torch.randint(low=0, high=rem, size=(1,), generator=generator, device=where))
    padded = F.pad(rescaled, [pad_left, rem - pad_left, pad_top, rem - pad_top], value=0)
    return padded if torch.rand(1, generator=generator, device=where) < diversity_prob else x


def gaussian_kernel(size: int, sigma: float, *, channels: int = 1, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    r"""TI-FGSM's Gaussian kernel (Dong et al. 2019), as the weight of a depthwise ``F.conv2d``.

    ``W[i, j] = exp(-(i^2 + j^2) / (2 sigma^2)) / Z`` for offsets ``i, j`` in ``[-(size-1)/2, (size-1)/2]``, with
    ``Z`` making the entries sum to 1 (the paper's ``1 / (2 pi sigma^2)`` before the truncation to the window).
    Equals torchattacks' ``TIFGSM.gkern(size, nsig)`` for ``sigma = (size - 1) / (2 nsig)``.

    Args:
        size: the kernel's side in pixels, odd, >= 3.
        sigma: the standard deviation in pixels, > 0.
        channels: copies stacked for a depthwise convolution (``groups=channels``). Default 1.
        dtype: of the result. Default float32.
        device: of the result. Default None (the default device).

    Returns:
        (channels, 1, size, size), each (size, size) slice summing to 1.

    Raises:
        ValueError: if ``size`` is not an odd integer >= 3, ``sigma`` <= 0 or ``channels`` < 1.
    """
    check_count(size, "size", minimum=3)
    if size % 2 == 0:
        raise ValueError(f"size must be odd, got {size}")
    check_positive(sigma, "sigma")
    check_count(channels, "channels")
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    line = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = torch.outer(line, line)
    kernel = (kernel / kernel.sum()).to(dtype=dtype, device=device)
    return kernel.expand(channels, 1, size, size).contiguous()


def _scaled(transform: Callable[[Tensor], Tensor] | None, factor: float) -> Callable[[Tensor], Tensor] | None:
    """``transform(z * factor)`` (``z * factor`` without a transform; the transform itself when ``factor`` is 1)."""
    if factor == 1:
        return transform
    if transform is None:
        return lambda z: z * factor
    return lambda z: transform(z * factor)


def mifgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, *, decay: float = 1.0,
           diversity_prob: float = 0.0, resize_rate: float = 0.9, ti_kernel: int = 0, ti_sigma: float | None = None,
           variance_samples: int = 0, variance_bound: float = 1.5, nesterov: bool = False, scales: int = 1,
           targeted: bool = False, eot_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
    r"""Momentum Iterative FGSM (Dong et al. 2018) and the transfer attacks built on it: DI, TI, VMI, NI, SI.

    From the clean image, with ``m = v = 0`` at the start, ``steps`` times::

        z  = x_t + decay * alpha * m  if nesterov (NI-FGSM)  else  x_t
        g  = G(z)
        d  = W * (g + v)                   (TI: W the Gaussian kernel, per channel; without TI, d = g + v)
        m  = d / mean(|d|) + decay * m     (per image)
        v  = (1/N) sum_j G(x_t + r_j) - g,   r_j ~ U[-variance_bound * eps, variance_bound * eps]^d
                                           (VMI, N = variance_samples; v stays 0 when N = 0)
        x_{t+1} = Proj(x_t + alpha * sign(m))    (L-inf ball of radius eps, and [0, 1])

    where ``G(z) = (1/S) sum_{i<S} grad_z J(T(z / 2^i))`` is the gradient averaged over S = ``scales`` copies
    scaled by 2^-i (SI; S = 1: the plain gradient), each one the mean over ``eot_samples`` passes, and T is
    :func:`input_diversity` (drawn anew at every pass, the neighbours' included) when ``diversity_prob > 0``, the
    identity otherwise. The options combine freely; the papers' attacks:

    * MI-FGSM: the defaults (Dong et al. 2018); ``decay = 0`` gives I-FGSM, and with ``diversity_prob > 0``,
      DI-FGSM. Matches torchattacks ``MIFGSM`` and ``DIFGSM`` (``random_start=False``).
    * TI-(MI-DI-)FGSM: ``ti_kernel`` > 0 (Dong et al. 2019: 15 x 15 on 299 x 299 ImageNet images, torchattacks'
      default). Matches torchattacks ``TIFGSM``.
    * VMI-FGSM / VNI-FGSM: ``variance_samples`` = N > 0 (Wang & He 2021, Algorithm 1: N = 20, beta = 1.5), with
      ``nesterov`` for VNI; the neighbours lie around x_t, not the look-ahead point. Matches torchattacks
      ``VMIFGSM`` / ``VNIFGSM`` given the same uniform draws (see the module's notes).
    * SI-NI-FGSM: ``nesterov=True, scales=5`` (Lin et al. 2020, Algorithm 1); ``scales=1`` gives NI-FGSM.
      Matches torchattacks ``SINIFGSM`` and ``NIFGSM``.

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) clean images in [0, 1] (square when ``diversity_prob > 0``).
        y: (B,) int64 true labels, or target labels when ``targeted``.
        eps: L-inf budget in pixel units, >= 0.
        alpha: step size in pixel units, > 0.
        steps: number of steps, >= 1.
        decay: momentum factor mu, >= 0. Default 1.0.
        diversity_prob: probability of the input-diversity transform at each pass. Default 0 (no DI).
        resize_rate: see :func:`input_diversity`. Default 0.9.
        ti_kernel: side of TI's Gaussian kernel in pixels, odd >= 3, or 0 for no TI (see :func:`gaussian_kernel`;
            the convolution zero-pads to keep the image size). Default 0.
        ti_sigma: its standard deviation in pixels, > 0; None gives ``(ti_kernel - 1) / 6`` (the kernel spans
            +-3 sigma, as in the authors' code and torchattacks' ``nsig=3``). Default None.
        variance_samples: VMI's number of neighbours N, >= 0 (0: no variance tuning). Default 0.
        variance_bound: VMI's beta > 0, the neighbours' half-width in units of eps. Default 1.5.
        nesterov: take the gradient at NI's look-ahead point. Default False.
        scales: SI's number of scaled copies m, >= 1 (1: no SI). Default 1.
        targeted: move towards ``y`` instead of away from it. Default False.
        eot_samples: gradient averaged over this many forward passes per copy and point. Default 1.
        generator: draws the input-diversity transforms and the VMI neighbours (None: torch's default generator).
            Default None.

    Returns:
        (B, C, H, W) detached adversarial images in [0, 1] with ``|x' - x| <= eps``.

    Raises:
        ValueError: on a bad ``x``, ``y``, ``eps`` < 0, ``alpha`` <= 0, ``steps`` < 1, ``decay`` < 0,
        ``diversity_prob`` outside [0, 1], ``ti_kernel`` neither 0 nor odd >= 3, ``ti_sigma`` <= 0,
        ``variance_samples`` < 0, ``variance_bound`` <= 0, ``scales`` < 1 or ``eot_samples`` < 1.
    """
    _check_attack(x, y, eps, eot_samples)
    check_positive(alpha, "alpha")
    check_count(steps, "steps")
    check_positive(decay, "decay", allow_zero=True)
    check_probability(diversity_prob, "diversity_prob")
    check_count(ti_kernel, "ti_kernel", minimum=0)
    if ti_kernel and (ti_kernel < 3 or ti_kernel % 2 == 0):
        raise ValueError(f"ti_kernel must be 0 (no TI) or odd and >= 3, got {ti_kernel}")
    if ti_sigma is not None:
        check_positive(ti_sigma, "ti_sigma")
    check_count(variance_samples, "variance_samples", minimum=0)
    check_positive(variance_bound, "variance_bound")
    check_count(scales, "scales")
    transform = None
    if diversity_prob > 0:
        def transform(images: Tensor) -> Tensor:
            return input_diversity(images, resize_rate=resize_rate, diversity_prob=diversity_prob,
                                   generator=generator)
    copies = [_scaled(transform, 2.0 ** -i) for i in range(scales)]

    def gradient(point: Tensor) -> Tensor:  # G: the mean over the scaled copies
        total = _loss_gradient(model, point, y, targeted, eot_samples, copies[0])[0]
        for copy in copies[1:]:
            total += _loss_gradient(model, point, y, targeted, eot_samples, copy)[0]
        return total / scales

    kernel = None
    if ti_kernel:
        kernel = gaussian_kernel(ti_kernel, (ti_kernel - 1) / 6 if ti_sigma is None else ti_sigma,
                                 channels=x.shape[1], dtype=x.dtype, device=x.device)
    x = x.detach()
    x_adv = x.clone()
    momentum = torch.zeros_like(x)
    variance = torch.zeros_like(x)
    tiny = torch.finfo(x.dtype).tiny
    where = generator.device if generator is not None else x.device  # draw where the generator lives
    for _ in range(steps):
        grad = gradient(x_adv + decay * alpha * momentum if nesterov else x_adv)
        tuned = grad + variance
        if kernel is not None:
            tuned = F.conv2d(tuned, kernel, padding=ti_kernel // 2, groups=x.shape[1])
        momentum = tuned / tuned.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(tiny) + momentum * decay
        if variance_samples:
            neighbours = torch.zeros_like(x)
            for _ in range(variance_samples):
                noise = torch.empty(x.shape, dtype=x.dtype, device=where)
                noise.uniform_(-variance_bound * eps, variance_bound * eps, generator=generator)
                neighbours += gradient(x_adv + noise.to(x.device))
            variance = neighbours / variance_samples - grad
        x_adv = _project_linf(x_adv + alpha * momentum.sign(), x, eps)
    return x_adv


def deepfool(model: nn.Module, x: Tensor, *, steps: int = 50, overshoot: float = 0.02,
             num_classes: int = 10) -> Tensor:
    r"""DeepFool (Moosavi-Dezfooli et al. 2016, Algorithm 2): the minimal L2 step over the nearest linearized boundary.

    Let l be the model's prediction on the clean image and k range over the ``num_classes - 1`` other
    classes with the highest clean logits. At the current point x_i, with ``f'_k = f_k - f_l`` and
    ``w'_k = grad f_k - grad f_l``::

        k* = argmin_k |f'_k| / ||w'_k||_2,      r_i = |f'_k*| / ||w'_k*||^2 * w'_k*
        x_{i+1} = clip_[0,1](x_i + (1 + overshoot) * r_i)

    until the prediction is no longer l, for at most ``steps`` steps per image. Without the clip this equals
    the paper's ``x_0 + (1 + overshoot) * sum_i r_i``; the clip keeps the image valid, as torchattacks
    ``DeepFool`` does (which it matches when ``num_classes`` >= K and it is given the model's predictions as
    labels). Images are processed as a batch (each has its own linearization, so the model must treat the
    images of a batch independently: eval mode for batch norm); finished images stop moving.

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) images in [0, 1].
        steps: most linearization steps per image, >= 1. Default 50.
        overshoot: eta >= 0, the extra fraction of each step that crosses the boundary. Default 0.02.
        num_classes: classes considered, the top ones by clean logit (min(num_classes, K)), >= 2. Default 10.

    Returns:
        (B, C, H, W) detached images in [0, 1], misclassified unless DeepFool ran out of ``steps``.

    Raises:
        ValueError: on a bad ``x``, ``steps`` < 1, ``overshoot`` < 0 or ``num_classes`` < 2.
    """
    check_images(x)
    check_count(steps, "steps")
    check_positive(overshoot, "overshoot", allow_zero=True)
    check_count(num_classes, "num_classes", minimum=2)
    x_adv = x.detach().clone()
    with torch.no_grad():
        logits = model(x_adv)
    classes = logits.argsort(dim=1, descending=True)[:, :min(num_classes, logits.shape[1])]  # (B, n); [:, 0] = l
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(steps):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        with torch.enable_grad():
            xi = x_adv[idx].requires_grad_(True)
            logits = model(xi)
            still = logits.argmax(dim=1) == classes[idx, 0]
            f = logits.gather(1, classes[idx])  # (m, n) logits of the considered classes
            grads = torch.stack([torch.autograd.grad(f[:, j].sum(), xi, retain_graph=j + 1 < f.shape[1])[0]
                                 for j in range(f.shape[1])], dim=1)  # (m, n, C, H, W)
        active[idx[~still]] = False
        f_prime = (f[:, 1:] - f[:, :1]).detach()  # (m, n-1)
        w_prime = grads[:, 1:] - grads[:, :1]  # (m, n-1, C, H, W)
        w_norms = w_prime.flatten(2).norm(p=2, dim=2)  # (m, n-1)
        best = (f_prime.abs() / w_norms.clamp_min(tiny)).argmin(dim=1)  # k*
        rows = torch.arange(best.shape[0], device=x.device)
        w_best = w_prime[rows, best]
        scale = f_prime[rows, best].abs() / (w_norms[rows, best] ** 2).clamp_min(tiny)
        stepped = torch.clamp(xi.detach() + (1 + overshoot) * scale.view(-1, 1, 1, 1) * w_best, min=0, max=1)
        x_adv[idx[still]] = stepped[still]
    return x_adv


class Ensemble(nn.Module):
    r"""The mean of several models' logits, ``f(x) = (1/M) sum_m f_m(x)`` (HW10's ensemble attack).

    Attacking the ensemble as one white-box model gives examples that transfer better to an unseen (black
    box) model (Liu et al. 2017, "Delving into Transferable Adversarial Examples and Black-box Attacks").

    Args:
        models: M >= 1 modules mapping the same inputs to logits of the same shape (B, K).

    Shapes:
        x: whatever the members take, e.g. (B, C, H, W) in [0, 1] -> logits (B, K).

    Raises:
        ValueError: if ``models`` is empty.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        if len(models) == 0:
            raise ValueError("models must hold at least one model")
        self.models = nn.ModuleList(models)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([model(x) for model in self.models]).mean(dim=0)
