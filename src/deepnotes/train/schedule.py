"""Learning-rate schedules as pure functions of the update count.

A schedule that is a function of the step alone has no hidden state: resuming a run only needs the
step number, and the curve can be drawn before training (the report plots it).

Source: ML2021 lecture 2 ("adaptive learning rate": learning-rate decay and warm-up); Loshchilov &
Hutter 2017 (cosine annealing); Smith & Topin 2019 (one-cycle: linear warm-up to the peak, then
cosine annealing to ~0); Smith 2017, "Cyclical learning rates" (the triangular cycle: linear up, linear
down), with the end points of Jordan 2024's airbench94.
"""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, lr: float, schedule: str, warmup: float = 0.0, min_lr: float = 0.0) -> float:
    """Learning rate for update number ``step`` (0-based) out of ``total_steps``.

    Schedules:
        - ``constant``: ``lr``.
        - ``step``: ``lr`` times 0.1 after 50% and again after 75% of the updates.
        - ``cosine``: linear warm-up from 0 over ``warmup * total_steps`` updates, then
          ``min_lr + (lr - min_lr) (1 + cos(pi * t)) / 2`` with t going from 0 to 1 (``min_lr``: the floor,
          default 0; nanoGPT's character config decays to lr / 10).
        - ``onecycle``: linear warm-up from ``lr / 25`` to ``lr`` over ``warmup * total_steps``
          updates, then cosine annealing down to ``lr / 1e4``.
        - ``triangular``: linear from ``0.2 lr`` to ``lr`` over ``warmup * total_steps`` updates, then
          linear down to ``0.07 lr`` at the last update (one triangular cycle; airbench94 uses warmup 0.23).

    Raises:
        ValueError: unknown ``schedule``, or ``total_steps < 1``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    progress = min(step, total_steps - 1) / max(1, total_steps - 1)  # in [0, 1]
    warm = warmup * total_steps
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * (0.1 ** (int(progress >= 0.5) + int(progress >= 0.75)))
    if schedule == "cosine":
        if step < warm:
            return lr * (step + 1) / warm
        t = (step - warm) / max(1.0, total_steps - warm)
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if schedule == "onecycle":
        start, end = lr / 25.0, lr / 1e4
        if step < warm:
            return start + (lr - start) * step / warm
        t = (step - warm) / max(1.0, total_steps - 1 - warm)
        return end + (lr - end) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    if schedule == "triangular":
        start, end = 0.2 * lr, 0.07 * lr
        if step < warm:
            return start + (lr - start) * step / warm
        t = (step - warm) / max(1.0, total_steps - 1 - warm)
        return lr + (end - lr) * min(t, 1.0)
    raise ValueError(f"unknown schedule {schedule!r}; choose constant, step, cosine, onecycle or triangular")
