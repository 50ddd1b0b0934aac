r"""Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi and Frossard 2017, Algorithm 1).

Source: ML2021 (Hung-yi Lee) "來自人類的惡意攻擊 (Adversarial Attack) (下)", "Universal Adversarial Attack":
one perturbation v, the same for every image, that makes the model err on most of them (a sticker that
works on any camera frame). Algorithm 1 of the paper::

    v = 0
    while fooling_rate(X, v) < target and passes < max_iter:
        for x_i in X (in a random order):
            if k(x_i + v) == k(x_i):
                dv = DeepFool's minimal perturbation of x_i + v          (a point with k != k(x_i))
                v  = P_{p, eps}(v + dv)                                  (project onto the eps ball)

where ``k`` is the predicted label and ``P_{p, eps}`` the projection onto the L-p ball of radius eps
(L-inf: clip each coordinate to [-eps, eps]; L2: rescale to norm eps when larger). As in the authors' code,
``dv`` is used only when DeepFool did flip the label. Deliberate difference: images stay valid, so a
perturbed image is ``clip_[0,1](x + v)`` throughout (the paper adds v unclipped).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from deepnotes.attacks._checks import check_count, check_images, check_positive, check_probability, predict
from deepnotes.attacks.gradient import deepfool

__all__ = ["fooling_rate", "project_perturbation", "universal_perturbation"]


def project_perturbation(v: Tensor, eps: float, norm: Literal["linf", "l2"] = "linf") -> Tensor:
    """``P_{p, eps}(v)``: the nearest point of the L-inf or L2 ball of radius eps (the whole tensor is one vector).

    Args:
        v: a perturbation of any shape, e.g. (C, H, W).
        eps: the radius, >= 0.
        norm: ``"linf"`` (default) or ``"l2"``.

    Returns:
        Tensor of the shape of ``v``.

    Raises:
        ValueError: if ``eps`` < 0 or ``norm`` is unknown.
    """
    check_positive(eps, "eps", allow_zero=True)
    if norm == "linf":
        return v.clamp(-eps, eps)
    if norm == "l2":
        length = v.norm(p=2)
        return v * (eps / length) if length > eps else v
    raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")


def fooling_rate(model: nn.Module, x: Tensor, v: Tensor, *, batch_size: int = 256) -> float:
    """Share of images whose predicted label changes when ``v`` is added: mean of ``k(clip(x + v)) != k(x)``.

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) images in [0, 1].
        v: (C, H, W) perturbation (broadcast over the batch).
        batch_size: images per forward pass. Default 256.

    Returns:
        The fooling rate in [0, 1].

    Raises:
        ValueError: on a bad ``x``, or a ``v`` whose shape is not ``x.shape[1:]``.
    """
    check_images(x)
    if v.shape != x.shape[1:]:
        raise ValueError(f"v must have shape {tuple(x.shape[1:])}, got {tuple(v.shape)}")
    clean = predict(model, x, batch_size)
    perturbed = predict(model, (x + v).clamp(0, 1), batch_size)
    return (clean != perturbed).float().mean().item()


def universal_perturbation(model: nn.Module, x: Tensor, *, eps: float, norm: Literal["linf", "l2"] = "linf",
                           max_iter: int = 5, target_fooling_rate: float = 0.8, overshoot: float = 0.02,
                           deepfool_steps: int = 50, num_classes: int = 10,
                           generator: torch.Generator | None = None) -> Tensor:
    r"""One perturbation ``v`` with ``||v||_p <= eps`` that changes the model's label on most images of ``x``.

    Algorithm 1 of Moosavi-Dezfooli et al. 2017 (see the module docstring): passes over the images in a
    random order, each unfooled image adding DeepFool's minimal perturbation (:func:`deepfool`, the L2
    version, also for ``norm="linf"`` as in the paper) followed by the projection onto the eps ball;
    stops after a pass whose fooling rate reaches ``target_fooling_rate`` (the paper's 1 - delta), or after
    ``max_iter`` passes.

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (N, C, H, W) images in [0, 1] (the paper's X).
        eps: the radius xi of the ball, in pixel units (L-inf) or the L2 norm of v, >= 0.
        norm: ``"linf"`` (default) or ``"l2"``.
        max_iter: most passes over ``x``, >= 1. Default 5.
        target_fooling_rate: stop once this share of ``x`` is fooled, in [0, 1]. Default 0.8.
        overshoot: DeepFool's overshoot. Default 0.02.
        deepfool_steps: DeepFool's most steps per image. Default 50.
        num_classes: classes DeepFool considers (the top ones). Default 10.
        generator: draws the order of the images in each pass (None: torch's default generator). Default None.

    Returns:
        v, a detached (C, H, W) tensor with ``||v||_p <= eps``.

    Raises:
        ValueError: on a bad ``x``, ``eps`` < 0, unknown ``norm``, ``max_iter`` < 1 or ``target_fooling_rate``
        outside [0, 1].
    """
    check_images(x)
    check_positive(eps, "eps", allow_zero=True)
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    check_count(max_iter, "max_iter")
    check_probability(target_fooling_rate, "target_fooling_rate")
    x = x.detach()
    clean = predict(model, x)
    v = torch.zeros_like(x[0])
    where = generator.device if generator is not None else None  # the order is drawn on the generator's device
    for _ in range(max_iter):
        for i in torch.randperm(x.shape[0], generator=generator, device=where).tolist():
            perturbed = (x[i:i + 1] + v).clamp(0, 1)
            if predict(model, perturbed)[0] != clean[i]:
                continue
            moved = deepfool(model, perturbed, steps=deepfool_steps, overshoot=overshoot, num_classes=num_classes)
            if predict(model, moved)[0] != clean[i]:
                v = project_perturbation(v + (moved - perturbed)[0], eps, norm)
        if fooling_rate(model, x, v) >= target_fooling_rate:
            break
    return v
