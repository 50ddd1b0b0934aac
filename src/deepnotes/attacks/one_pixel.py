r"""One-pixel attack (Su, Vargas and Sakurai 2019, "One Pixel Attack for Fooling Deep Neural Networks").

Source: ML2021 (Hung-yi Lee) "來自人類的惡意攻擊 (Adversarial Attack) (下)": the "one pixel attack" changes a
single pixel and still changes the decision; it is a black-box attack, it only needs the model's output
probabilities. The search is differential evolution (DE) over candidate perturbations, each a vector of
``pixels`` tuples ``(row, col, v_1, ..., v_C)``: the pixel at ``(floor(row), floor(col))`` takes the values v.
The fitness to *minimize* is the model's probability of the true class (untargeted) or ``1 - p(target)``
(targeted), as in the paper and torchattacks ``OnePixel``. Settings follow the paper: population 400,
mutation F = 0.5, no crossover (recombination 1: the trial is the mutant), ``rand1bin``, positions drawn
uniformly and values from N(0.5, 0.5) (the paper's N(128, 127) on 0..255) clipped to [0, 1], stop as soon
as the best candidate fools the model (the paper stops on a probability threshold instead).

Deliberate differences from torchattacks ``OnePixel`` (not compared for equality: it uses its own DE with
``popsize`` a per-parameter multiplier and scipy's random initialization): ``popsize`` here is the total
population, as in the paper, and the search is scipy's ``differential_evolution`` with vectorized fitness
(one forward pass per generation) and a seed.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import differential_evolution
from torch import Tensor, nn

from deepnotes.attacks._checks import check_count, check_images, check_labels, predict

__all__ = ["one_pixel", "one_pixel_fitness", "perturb_pixels"]


def perturb_pixels(image: Tensor, candidates: np.ndarray | Tensor) -> Tensor:
    """Copies of ``image`` with the pixels of each candidate overwritten.

    Args:
        image: (C, H, W) image in [0, 1].
        candidates: (S, P * (2 + C)): for each of the S candidates, P tuples ``(row, col, v_1..v_C)`` with
            ``row`` in [0, H], ``col`` in [0, W] (floored, the upper edge mapped to the last pixel) and values
            in [0, 1]. When two tuples hit the same pixel, the later one wins.

    Returns:
        (S, C, H, W) perturbed images.

    Raises:
        ValueError: if ``candidates`` is not (S, P * (2 + C)).
    """
    c, h, w = image.shape
    cand = torch.as_tensor(candidates, dtype=image.dtype, device=image.device)
    if cand.dim() != 2 or cand.shape[1] == 0 or cand.shape[1] % (2 + c):
        raise ValueError(f"candidates must have shape (S, P * {2 + c}), got {tuple(cand.shape)}")
    s = cand.shape[0]
    tuples = cand.view(s, -1, 2 + c)  # (S, P, 2 + C)
    rows = tuples[..., 0].floor().long().clamp(0, h - 1)
    cols = tuples[..., 1].floor().long().clamp(0, w - 1)
    out = image.expand(s, c, h, w).clone()
    for p in range(tuples.shape[1]):  # in order, so that a repeated pixel keeps the last tuple's values
        out[torch.arange(s), :, rows[:, p], cols[:, p]] = tuples[:, p, 2:]
    return out


def one_pixel_fitness(model: nn.Module, image: Tensor, label: int, candidates: np.ndarray | Tensor, *,
                      targeted: bool = False, batch_size: int = 1024) -> np.ndarray:
    """The quantity DE minimizes: ``p(label)`` of each perturbed image, or ``1 - p(label)`` when targeted.

    The softmax is taken in float64 so that a confident model's probabilities do not all round to 1.

    Args:
        model: maps (S, C, H, W) in [0, 1] to logits (S, K).
        image: (C, H, W) image in [0, 1].
        label: the true class, or the target class when ``targeted``.
        candidates: (S, P * (2 + C)), see :func:`perturb_pixels`.
        targeted: return ``1 - p(label)``. Default False.
        batch_size: images per forward pass. Default 1024.

    Returns:
        (S,) float64 fitness values.
    """
    with torch.no_grad():
        images = perturb_pixels(image, candidates)
        probs = torch.cat([model(chunk).double().softmax(dim=1)[:, label] for chunk in images.split(batch_size)])
    return (1 - probs if targeted else probs).cpu().numpy()


def one_pixel(model: nn.Module, x: Tensor, y: Tensor, *, pixels: int = 1, steps: int = 75, popsize: int = 400,
              targeted: bool = False, seed: int = 0) -> Tensor:
    r"""Change at most ``pixels`` pixels of each image so that the model errs (or predicts the target).

    One DE run per image (Su et al. 2019; see the module docstring): up to ``steps`` generations of
    ``popsize`` candidates, stopped early when the best candidate succeeds; the best candidate is returned
    whether or not it succeeded. An image the model already gets wrong (untargeted) or already assigns to
    the target (targeted) is returned unchanged. Only the model's probabilities are used (no gradients).

    Args:
        model: maps (B, C, H, W) in [0, 1] to logits (B, K); used in its current mode.
        x: (B, C, H, W) clean images in [0, 1].
        y: (B,) int64 true labels, or target labels when ``targeted``.
        pixels: pixels changed per image, >= 1. Default 1.
        steps: most DE generations, >= 1. Default 75.
        popsize: total DE population, >= 5. Default 400 (the paper's).
        targeted: make the model predict ``y``. Default False.
        seed: seeds the initial populations and DE's draws (a numpy ``default_rng``). Default 0.

    Returns:
        (B, C, H, W) detached images in [0, 1] differing from ``x`` in at most ``pixels`` pixel positions.

    Raises:
        ValueError: on a bad ``x``, ``y``, ``pixels`` < 1, ``steps`` < 1 or ``popsize`` < 5.
    """
    check_images(x)
    check_labels(y, x)
    check_count(pixels, "pixels")
    check_count(steps, "steps")
    check_count(popsize, "popsize", minimum=5)
    rng = np.random.default_rng(seed)
    _, c, h, w = x.shape
    bounds = [(0, h), (0, w)] + [(0, 1)] * c
    out = x.detach().clone()
    pred = predict(model, out)
    for i in range(x.shape[0]):
        image, label = out[i], int(y[i])
        if (int(pred[i]) == label) == targeted:
            continue
        init = np.concatenate([rng.uniform(0, h, (popsize, pixels, 1)), rng.uniform(0, w, (popsize, pixels, 1)),
                               np.clip(rng.normal(0.5, 0.5, (popsize, pixels, c)), 0, 1)], axis=2)

        def fitness(candidates: np.ndarray) -> np.ndarray:  # candidates (N, S) when vectorized
            return one_pixel_fitness(model, image, label, candidates.T, targeted=targeted)

        def succeeded(intermediate_result) -> bool:
            best = int(predict(model, perturb_pixels(image, intermediate_result.x[None]))[0])
            return (best == label) == targeted

        result = differential_evolution(fitness, bounds * pixels, maxiter=steps, init=init.reshape(popsize, -1),
                                        strategy="rand1bin", mutation=0.5, recombination=1.0, tol=0, atol=-1,
                                        polish=False, updating="deferred", vectorized=True, callback=succeeded,
                                        rng=rng)
        out[i] = perturb_pixels(image, result.x[None])[0]
    return out
