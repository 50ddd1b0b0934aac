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
counts ``C`` (T, n), and all training losses at once as ``C @ M / N`` (T, |H|). :func:`bad_training_sets` runs
the whole experiment over several N and |H|; :func:`plot_bad_share`, :func:`plot_erm_gap` and
:func:`plot_threshold_losses` draw it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from deepnotes.report import new_figure, save_figure

__all__ = ["SimulationResult", "above_bound", "bad_probability_stderr", "bad_training_sets", "hoeffding_union_bound",
           "plot_bad_share", "plot_erm_gap", "plot_threshold_losses", "sample_counts", "simulate", "threshold_grid",
           "threshold_losses"]


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
    return SimulationResult(sup_gap=sup_gap, erm_index=erm, erm_train=train.gather(1, erm[:, None])[:, 0],
                            erm_all=all_[erm], best_all=float(all_.min()))


def bad_probability_stderr(p: float, trials: int) -> float:
    """Monte-Carlo standard error ``sqrt(p (1 - p) / trials)`` of an estimated probability."""
    return math.sqrt(max(p * (1 - p), 0.0) / trials)


def above_bound(cell: dict[str, Any], trials: int) -> bool:
    """Whether a measured share of bad training sets lies above its bound by more than Monte-Carlo noise:
    3 standard errors of the bound and one trial."""
    return cell["bad_share"] > cell["bound"] + 3 * bad_probability_stderr(cell["bound"], trials) + 1 / trials


def bad_training_sets(x: torch.Tensor, y: torch.Tensor, hypotheses: Sequence[int], sizes: Sequence[int], trials: int,
                      eps: float, seed: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Share of bad training sets and the training-optimal hypothesis' gaps for every (|H|, N).

    Args:
        x, y: D_all: the feature (n,) and the 0/1 labels (n,).
        hypotheses: class sizes |H| (even: |H|/2 thresholds x 2 signs).
        sizes: training-set sizes N; ``trials`` sets of each, the same sets for every |H|.
        eps: D_train is bad when some h has |L(h, D_train) - L(h, D_all)| > eps.
        seed: of the sampled training sets.

    Returns:
        ``{"classes": [...per |H|...], "cells": [...per (|H|, N)...]}``, JSON-ready.
    """
    g = torch.Generator().manual_seed(seed)
    losses, classes = {}, []
    for h in hypotheses:
        t = threshold_grid(x, h)
        M = threshold_losses(x, y, t)  # (n, |H|)
        losses[h] = M.to(device)
        l_all = M.double().mean(0)
        classes.append({
            "hypotheses": h, "thresholds": len(t),
            "distinct_behaviours": int(torch.unique(M, dim=1).shape[1]),  # different columns on D_all
            "best_all_loss": float(l_all.min()),
            "best_all_threshold": float(t[int(l_all.argmin()) % len(t)]),
            "best_all_sign": "+" if int(l_all.argmin()) < len(t) else "-",
        })
    cells = []
    for n in sizes:
        counts = sample_counts(len(y), n, trials, g).to(device)  # the same D_train for every |H|
        for h in hypotheses:
            res = simulate(losses[h], counts)
            p = res.bad_share(eps)
            gap = (res.erm_all - res.erm_train).cpu().numpy()  # L(h_train, D_all) - L(h_train, D_train)
            excess = (res.erm_all - res.best_all).cpu().numpy()  # L(h_train, D_all) - L(h_all, D_all)
            cells.append({
                "hypotheses": h, "n": n, "bad_share": p, "bad_stderr": bad_probability_stderr(p, trials),
                "bound": float(hoeffding_union_bound(h, n, eps)),
                "sup_gap_mean": float(res.sup_gap.mean()),
                "gap_mean": float(gap.mean()), "gap_p10": float(np.percentile(gap, 10)),
                "gap_p90": float(np.percentile(gap, 90)),
                "excess_mean": float(excess.mean()), "excess_p90": float(np.percentile(excess, 90)),
                "excess_over_2eps": float((excess > 2 * eps).mean()),
                "erm_train_mean": float(res.erm_train.mean()), "erm_all_mean": float(res.erm_all.mean()),
            })
    return {"classes": classes, "cells": cells}


# ----------------------------------------------------------------------------------- figures
def _colors(hs: Sequence[int]) -> dict[int, str]:
    cmap = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    return {h: cmap[i % len(cmap)] for i, h in enumerate(hs)}


def plot_bad_share(cells: list[dict], hypotheses: Sequence[int], sizes: Sequence[int], eps: float, trials: int,
                   path: Path) -> None:
    """One panel per |H|: the measured P(bad) (dots, +-2 standard errors) and the bound (line), log y; and all
    classes together. ``cells`` as :func:`bad_training_sets` returns them."""
    hs = list(hypotheses)
    cols = min(3, len(hs) + 1)
    rows = math.ceil((len(hs) + 1) / cols)
    fig = new_figure(4.6 * cols, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    floor = 0.3 / trials
    n_grid = np.unique(np.geomspace(min(sizes), max(sizes), 200).round())
    colors = _colors(hs)
    for ax, h in zip(axes, hs):
        cs = [c for c in cells if c["hypotheses"] == h]
        ns = np.array([c["n"] for c in cs])
        p = np.array([c["bad_share"] for c in cs])
        se = np.array([c["bad_stderr"] for c in cs])
        ax.plot(n_grid, hoeffding_union_bound(h, torch.tensor(n_grid), eps).numpy(), color="black",
                label=r"bound min(1, |H| 2 exp(-2 N $\epsilon^2$))")
        pos = p > 0
        ax.errorbar(ns[pos], p[pos], yerr=2 * se[pos], fmt="o", color=colors[h], capsize=3, label="measured P(bad)")
        if (~pos).any():
            ax.plot(ns[~pos], np.full((~pos).sum(), floor), "v", color=colors[h], mfc="white",
                    label=f"no bad set in {trials}")
        ax.set(xscale="log", yscale="log", ylim=(floor / 2, 2), xlabel="training-set size N",
               ylabel="P(D_train is bad)", title=f"|H| = {h}")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower left")
    ax = axes[len(hs)]
    for h in hs:
        cs = [c for c in cells if c["hypotheses"] == h]
        ax.plot([c["n"] for c in cs], [max(c["bad_share"], floor) for c in cs], "o-", color=colors[h], label=f"|H|={h}")
    ax.set(xscale="log", yscale="log", ylim=(floor / 2, 2), xlabel="training-set size N", ylabel="measured P(bad)",
           title=f"all classes, eps = {eps:g}")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    for ax in axes[len(hs) + 1:]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path)


def plot_erm_gap(cells: list[dict], hypotheses: Sequence[int], sizes: Sequence[int], delta: float, path: Path) -> None:
    """The training-optimal h's gap L(h, D_all) - L(h, D_train) (with the eps(N) the bound guarantees with
    probability 1 - delta) and its excess loss over h_all, vs N."""
    colors = _colors(hypotheses)
    fig = new_figure(11, 4)
    ax_gap, ax_ex = fig.subplots(1, 2)
    n_grid = np.geomspace(min(sizes), max(sizes), 100)
    for h in hypotheses:
        cs = [c for c in cells if c["hypotheses"] == h]
        ns = [c["n"] for c in cs]
        ax_gap.plot(ns, [c["gap_mean"] for c in cs], "o-", color=colors[h], label=f"|H|={h}: mean gap")
        ax_gap.fill_between(ns, [c["gap_p10"] for c in cs], [c["gap_p90"] for c in cs], color=colors[h], alpha=0.12)
        ax_gap.plot(n_grid, np.sqrt(np.log(2 * h / delta) / (2 * n_grid)), ":", color=colors[h])
        ax_ex.plot(ns, [c["excess_mean"] for c in cs], "o-", color=colors[h], label=f"|H|={h}: mean")
        ax_ex.plot(ns, [c["excess_p90"] for c in cs], "^--", color=colors[h], alpha=0.6)
    ax_gap.set(xscale="log", xlabel="training-set size N", ylabel="L(h_train, D_all) - L(h_train, D_train)",
               title="gap of the training-optimal h (band: 10-90%)\n"
                     rf"dotted: $\epsilon(N)$ that the bound guarantees with prob. {1 - delta:g}")
    ax_gap.set_ylim(bottom=min(0.0, min(c["gap_p10"] for c in cells)) - 0.01,
                    top=max(0.6, max(c["gap_p90"] for c in cells) * 1.2))
    ax_ex.set(xscale="log", xlabel="training-set size N", ylabel="L(h_train, D_all) - L(h_all, D_all)",
              title="excess loss of h_train over the best h in H\n(solid: mean, dashed: 90th percentile)")
    for ax in (ax_gap, ax_ex):
        ax.axhline(0, color="gray", lw=0.8)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def plot_threshold_losses(x: torch.Tensor, y: torch.Tensor, feature: str, num_hypotheses: int, best_loss: float,
                          path: Path) -> None:
    """The feature's histogram per label, and L(h, D_all) of the + and - thresholds of a class of
    ``num_hypotheses`` (a dotted line at ``best_loss``)."""
    x, y = x.numpy(), y.numpy()
    fig = new_figure(11, 3.8)
    ax_h, ax_l = fig.subplots(1, 2)
    bins = np.linspace(x.min(), x.max(), 40)
    ax_h.hist(x[y == 0], bins=bins, alpha=0.6, label=f"dry ({(y == 0).sum()} days)", color="tab:orange")
    ax_h.hist(x[y == 1], bins=bins, alpha=0.6, label=f"rain ({(y == 1).sum()} days)", color="tab:blue")
    ax_h.set(xlabel=feature, ylabel="days", title=f"D_all: Seattle 2012-2015, {feature} by label")
    ax_h.legend(fontsize=8)
    t = threshold_grid(torch.tensor(x), num_hypotheses)
    l_all = threshold_losses(torch.tensor(x), torch.tensor(y), t).double().mean(0).numpy()
    k = len(t)
    ax_l.plot(t.numpy(), l_all[:k], label="h(x) = 1[x > t]  (rain when warm)")
    ax_l.plot(t.numpy(), l_all[k:], label="h(x) = 1[x <= t]  (rain when cold)")
    ax_l.axhline(best_loss, color="gray", ls=":", lw=1)
    ax_l.set(xlabel="threshold t", ylabel="L(h, D_all) (error rate)", title=f"loss landscape of the class; best {best_loss:.3f}")
    ax_l.grid(True, alpha=0.3)
    ax_l.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
