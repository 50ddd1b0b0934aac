"""Learning-rate schedules as small callables ``schedule(step, total_steps) -> lr``.

``step`` is the 0-based index of the update about to be made and ``total_steps`` the number of
updates of the whole run, which is exactly what :class:`deepnotes.train.engine.Trainer` passes to its
``lr_schedule=`` argument. A schedule has no state besides its hyper-parameters, so resuming a run
needs only the step number and the whole curve can be drawn before training (:func:`lr_curve`).

Source: ML2021/2022 lecture 2, "自動調整學習速率": learning-rate decay ("as the end nears, lower η"),
and warm-up ("first larger, then smaller", as in the Transformer and BERT). Papers: Loshchilov & Hutter
2017 (SGDR, cosine annealing); Vaswani et al. 2017, "Attention is all you need", section 5.3 (the
Noam schedule); Goyal et al. 2017 (linear warm-up). The torch twins that exist are tested equal in
``tests/optim/test_schedules.py``: StepLR, CosineAnnealingLR, LambdaLR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

Schedule = Callable[[int, int], float]


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class ConstantLR:
    """``lr`` at every step.

    Args:
        lr: the learning rate (> 0).

    Raises:
        ValueError: ``lr <= 0``.
    """

    lr: float

    def __post_init__(self):
        _positive("lr", self.lr)

    def __call__(self, step: int, total_steps: int) -> float:
        return self.lr


@dataclass(frozen=True)
class StepDecay:
    """Step decay: ``lr * gamma ** (step // step_size)``; the twin of ``torch.optim.lr_scheduler.StepLR``
    stepped once per update.

    Args:
        lr: initial learning rate (> 0).
        step_size: updates between two decays (>= 1).
        gamma: multiplicative factor of each decay, in (0, 1]. Default 0.1.

    Raises:
        ValueError: an argument out of range (named in the message).

    Example::

        StepDecay(0.1, step_size=100)(250, 400)  # 0.1 * 0.1**2 = 0.001
    """

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        _positive("lr", self.lr)
        if self.step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {self.step_size!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")

    def __call__(self, step: int, total_steps: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class CosineDecay:
    """Cosine annealing from ``lr`` to ``min_lr`` over the run (no restarts)::

        lr_t = min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2,   T = total_steps

    The twin of ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total_steps, eta_min=min_lr)``
    stepped once per update (the last update still uses a small non-zero rate).
    Source: Loshchilov & Hutter 2017 (SGDR), eq. 5.

    Args:
        lr: initial (peak) learning rate (> 0).
        min_lr: final learning rate (>= 0, <= lr). Default 0.

    Raises:
        ValueError: an argument out of range.
    """

    lr: float
    min_lr: float = 0.0

    def __post_init__(self):
        _positive("lr", self.lr)
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")

    def __call__(self, step: int, total_steps: int) -> float:
        t = min(step, total_steps) / max(1, total_steps)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class WarmupDecay:
    """Linear warm-up from ~0 to ``lr``, then linear or cosine decay to ``min_lr`` at the end of the run.

    ::

        step < W:   lr_t = lr * (step + 1) / W
        step >= W:  p = (step - W) / (total_steps - W)            (0 -> 1)
                    linear: lr_t = min_lr + (lr - min_lr) * (1 - p)
                    cosine: lr_t = min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2

    with ``W = warmup_steps`` if it is given, else ``round(warmup_fraction * total_steps)``.
    This is the "warm-up then decay" of BERT (linear) and of most vision recipes (cosine).

    Args:
        lr: peak learning rate (> 0).
        warmup_fraction: share of the run spent warming up, in [0, 1). Default 0.1.
        warmup_steps: absolute number of warm-up updates (overrides the fraction). Default None.
        decay: ``"linear"`` or ``"cosine"``. Default ``"cosine"``.
        min_lr: learning rate reached at the end (>= 0, <= lr). Default 0.

    Raises:
        ValueError: an argument out of range, or an unknown ``decay``.
    """

    lr: float
    warmup_fraction: float = 0.1
    warmup_steps: int | None = None
    decay: Literal["linear", "cosine"] = "cosine"
    min_lr: float = 0.0

    def __post_init__(self):
        _positive("lr", self.lr)
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.decay not in ("linear", "cosine"):
            raise ValueError(f"decay must be 'linear' or 'cosine', got {self.decay!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr!r}")

    def warmup_for(self, total_steps: int) -> int:
        """W, the number of warm-up updates in a run of ``total_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(round(self.warmup_fraction * total_steps))

    def __call__(self, step: int, total_steps: int) -> float:
        w = self.warmup_for(total_steps)
        if step < w:
            return self.lr * (step + 1) / w
        p = min(1.0, (step - w) / max(1, total_steps - w))
        if self.decay == "linear":
            return self.min_lr + (self.lr - self.min_lr) * (1.0 - p)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass(frozen=True)
class NoamSchedule:
    """The Transformer's warm-up schedule (Vaswani et al. 2017, section 5.3, eq. 3)::

        lr = factor * d_model^-0.5 * min(n^-0.5, n * warmup^-1.5),   n = step + 1

    It rises linearly for ``warmup`` updates, peaks at ``factor * (d_model * warmup)^-0.5`` and then
    decays as ``1 / sqrt(n)``. It ignores ``total_steps``. ("Noam" after Noam Shazeer, the name used
    by tensor2tensor and The Annotated Transformer.)

    Args:
        d_model: model width (> 0); the paper's 512.
        warmup: warm-up updates (>= 1); the paper's 4000.
        factor: scale factor (> 0). Default 1.

    Raises:
        ValueError: an argument out of range.
    """

    d_model: int
    warmup: int
    factor: float = 1.0

    def __post_init__(self):
        _positive("d_model", self.d_model)
        _positive("factor", self.factor)
        if self.warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {self.warmup!r}")

    @property
    def peak(self) -> float:
        """The largest learning rate, reached at update ``warmup`` (n = warmup)."""
        return self.factor * (self.d_model * self.warmup) ** -0.5

    def __call__(self, step: int, total_steps: int = 0) -> float:
        n = step + 1
        return self.factor * self.d_model**-0.5 * min(n**-0.5, n * self.warmup**-1.5)


SCHEDULE_NAMES = ("constant", "step", "cosine", "warmup-cosine", "warmup-linear", "noam")


def named_schedule(name: str, peak: float, total_steps: int, warmup: float) -> Schedule:
    """The schedule ``name`` (one of :data:`SCHEDULE_NAMES`) peaking at ``peak`` for a run of ``total_steps`` updates.

    * ``constant``: ``peak`` throughout.
    * ``step``: ``peak``, times 0.3 after each third of the run (:class:`StepDecay`).
    * ``cosine``: cosine annealing from ``peak`` to 0 (:class:`CosineDecay`).
    * ``warmup-cosine`` / ``warmup-linear``: linear warm-up over ``warmup * total_steps`` updates (at least 1),
      then cosine / linear decay to 0 (:class:`WarmupDecay`).
    * ``noam``: the Transformer's schedule with ``d_model = 512`` and ``warmup * total_steps`` warm-up updates,
      its factor set so that it peaks at ``peak`` (the paper's factor 1 peaks at ``(512 * warmup)^-0.5``).

    Raises:
        ValueError: unknown ``name``, or ``peak <= 0``.
    """
    w = max(1, int(round(warmup * total_steps)))
    if name == "constant":
        return ConstantLR(peak)
    if name == "step":
        return StepDecay(peak, step_size=max(1, math.ceil(total_steps / 3)), gamma=0.3)
    if name == "cosine":
        return CosineDecay(peak)
    if name in ("warmup-cosine", "warmup-linear"):
        return WarmupDecay(peak, warmup_steps=w, decay=name.split("-")[1])
    if name == "noam":
        return NoamSchedule(d_model=512, warmup=w, factor=peak * math.sqrt(512 * w))
    raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULE_NAMES)}")


def lr_curve(schedule: Schedule, total_steps: int) -> list[float]:
    """``[schedule(s, total_steps) for s in range(total_steps)]``: the learning rate of every update.

    Raises:
        ValueError: ``total_steps < 1``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return [float(schedule(s, total_steps)) for s in range(total_steps)]
