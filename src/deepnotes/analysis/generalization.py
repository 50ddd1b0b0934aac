"""How often a sampled training set is "bad" for a finite hypothesis class, against the Hoeffding + union bound.

Source: ML2022 "why more parameters overfit" (为什么用了验证集结果还是过拟合 / 鱼与熊掌兼得). With a loss
``L(h, D)`` (here the 0-1 error rate of classifier ``h`` on data ``D``) and a finite class ``H``, a
training set ``D_train`` of ``N`` examples drawn i.i.d. from ``D_all`` is *bad* when::

    sup_{h in H} |L(h, D_train) - L(h, D_all)| > eps

For one ``h``, Hoeffding's inequality gives ``P(|L(h, D_train) - L(h, D_all)| > eps) <= 2 exp(-2 N eps^2)``
(the loss is an average of N independent values in [0, 1]); the union bound over ``H`` then gives::

    P(D_train is bad) <= |H| * 2 exp(-2 N eps^2)

If ``D_train`` is good, the hypothesis that is best on ``D_train`` is at most ``2 eps`` worse on
``D_all`` than the best hypothesis on ``D_all``. So: more data (``N``) or fewer hypotheses (``|H|``).

The hypothesis class here: threshold classifiers on one real-valued feature, ``h_{t,+}(x) = 1[x > t]``
and the flipped ``h_{t,-}(x) = 1[x <= t]``, for ``K`` thresholds, so ``|H| = 2K``.

Deliberate choices: ``D_train`` is drawn *with replacement* from ``D_all``, so its examples are
exactly i.i.d. from the uniform distribution on ``D_all`` and the bound applies as stated. The
flipped hypotheses have ``L(h_{t,-}, D) = 1 - L(h_{t,+}, D)``, the same deviation, so they never
change the supremum: the union bound counts them anyway (one of the reasons it is loose).

Everything is vectorized: a (n, |H|) 0-1 loss matrix ``M``, training sets as multiplicity
counts ``C`` (T, n), and all training losses at once as ``C @ M / N`` (T, |H|).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "SimulationResult",
    "bad_probability_stderr",
    "hoeffding_union_bound",
    "sample_counts",
    "simulate",
    "threshold_grid",
    "threshold_losses",
]


def threshold_grid(x: torch.Tensor, num_hypotheses: int) -> torch.Tensor:
    """``K = num_hypotheses / 2`` thresholds evenly spaced inside the range of ``x``.

    ``t_k = min(x) + (k + 1/2) (max(x) - min(x)) / K`` for ``k = 0..K-1`` (cell centres, so no
    threshold sits on the ends where every example falls on one side).

    Args:
        x: (n,) the feature values.
        num_hypotheses: |H|, an even number >= 2 (each threshold gives two hypotheses).

    Returns:
        (K,) float64 thresholds, increasing.

    Raises:
        ValueError: ``num_hypotheses`` odd or < 2; ``x`` empty or constant.
    """
    if num_hypotheses < 2 or num_hypotheses % 2:
        raise ValueError(f"num_hypotheses must be an even number >= 2 (two signs per threshold), got {num_hypotheses}")
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.numel() == 0 or float(x.max()) == float(x.min()):
        raise ValueError("x must hold at least two different values to place thresholds between them")
    K = num_hypotheses // 2
    lo, hi = float(x.min()), float(x.max())
    return lo + (torch.arange(K, dtype=torch.float64) + 0.5) * (hi - lo) / K


def threshold_losses(x: torch.Tensor, y: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The 0-1 loss of every threshold hypothesis on every example.

    Columns ``0..K-1`` are ``h_{t_k,+}(x) = 1[x > t_k]``, columns ``K..2K-1`` the flipped
    ``h_{t_k,-}(x) = 1[x <= t_k]``.

    Args:
        x: (n,) feature values.
        y: (n,) binary labels in {0, 1} (bool or int).
        thresholds: (K,) thresholds.

    Returns:
        (n, 2K) float32 matrix ``M[i, h] = 1[h(x_i) != y_i]``.

    Raises:
        ValueError: ``x`` and ``y`` of different lengths, or labels other than 0/1.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("y must be binary labels 0/1")
    y = y.bool()
    pred_pos = x[:, None] > torch.as_tensor(thresholds, dtype=torch.float64)[None, :]  # (n, K)
    err_pos = pred_pos != y[:, None]  # (n, K)
    return torch.cat([err_pos, ~err_pos], dim=1).float()  # (n, 2K)


def hoeffding_union_bound(num_hypotheses: int, n: int | torch.Tensor, eps: float) -> torch.Tensor:
    """``min(1, |H| * 2 exp(-2 N eps^2))``: the bound on P(D_train is bad).

    Args:
        num_hypotheses: |H|.
        n: N, the training-set size (an int or a tensor of sizes).
        eps: the tolerance, > 0.

    Returns:
        float64 tensor of the shape of ``n``.
    """
    n = torch.as_tensor(n, dtype=torch.float64)
    return torch.clamp(num_hypotheses * 2.0 * torch.exp(-2.0 * n * eps**2), max=1.0)


def sample_counts(n: int, size: int, trials: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``trials`` training sets of ``size`` examples drawn i.i.d. (with replacement) from ``n``, as counts.

    Returns:
        (trials, n) float32; row ``j`` counts how often each example is in training set ``j``
        (each row sums to ``size``).
    """
    idx = torch.randint(n, (trials, size), generator=generator)  # (T, N)
    counts = torch.zeros(trials, n)
    return counts.scatter_add_(1, idx, torch.ones(trials, size))


@dataclass(frozen=True)
class SimulationResult:
    """Per training set (T of them): the largest deviation and what the training-optimal hypothesis does.

    Attributes:
        sup_gap: (T,) ``max_h |L(h, D_train) - L(h, D_all)|``.
        erm_index: (T,) column of ``h_train = argmin_h L(h, D_train)`` (first on ties).
        erm_train: (T,) ``L(h_train, D_train)``.
        erm_all: (T,) ``L(h_train, D_all)``.
        best_all: ``min_h L(h, D_all)``, the loss of ``h_all``.
    """

    sup_gap: torch.Tensor
    erm_index: torch.Tensor
    erm_train: torch.Tensor
    erm_all: torch.Tensor
    best_all: float

    def bad_share(self, eps: float) -> float:
        """Share of training sets with ``sup_gap > eps`` (the empirical P(D_train is bad))."""
        return float((self.sup_gap > eps).double().mean())


def simulate(losses: torch.Tensor, counts: torch.Tensor) -> SimulationResult:
    """All training losses at once and the deviations from the losses on ``D_all``.

    Args:
        losses: (n, |H|) 0-1 losses (:func:`threshold_losses`) of each hypothesis on each example of D_all.
        counts: (T, n) multiplicities of the examples in each training set (:func:`sample_counts`).

    Returns:
        A :class:`SimulationResult`.

    Raises:
        ValueError: shapes that do not fit, or an empty training set.

    Example:
        >>> M = torch.tensor([[0., 1.], [1., 0.]])          # 2 examples, 2 hypotheses
        >>> res = simulate(M, torch.tensor([[2., 0.]]))   # D_train = example 0 twice
        >>> res.sup_gap.tolist()                            # |0 - 0.5| and |1 - 0.5|
        [0.5]
    """
    if losses.ndim != 2 or counts.ndim != 2 or counts.shape[1] != losses.shape[0]:
        raise ValueError(f"losses must be (n, H) and counts (T, n); got {tuple(losses.shape)} and {tuple(counts.shape)}")
    sizes = counts.sum(dim=1, keepdim=True).double()  # (T, 1)
    if bool((sizes == 0).any()):
        raise ValueError("every training set needs at least one example (a row of counts sums to 0)")
    # counts and losses hold small integers, exact in float32; the division is done in float64
    train = (counts.float() @ losses.float()).double() / sizes  # (T, H) L(h, D_train)
    all_ = losses.double().mean(dim=0)  # (H,) L(h, D_all)
    sup_gap = (train - all_).abs().amax(dim=1)  # (T,)
    erm = train.argmin(dim=1)  # (T,)
    return SimulationResult(
        sup_gap=sup_gap,
        erm_index=erm,
        erm_train=train.gather(1, erm[:, None])[:, 0],
        erm_all=all_[erm],
        best_all=float(all_.min()),
    )


def bad_probability_stderr(p: float, trials: int) -> float:
    """Monte-Carlo standard error ``sqrt(p (1 - p) / trials)`` of an estimated probability."""
    return math.sqrt(max(p * (1 - p), 0.0) / trials)
