"""Choosing a model with validation data only, and the figures of such a study.

Source: ML2021 lecture 1 and HW1 (validation set, N-fold cross-validation; a model that fits the training
rows better may predict unseen rows worse, and only validation rows may choose), ML2022 (more parameters
overfit).

* :func:`fit_candidates`: train a set of regressors (:mod:`deepnotes.models.regression`) on some rows and predict
  others, with the baselines (least squares, persistence) and the ensemble of the trained models.
* :func:`cross_validate`: the mean and standard deviation of each candidate's validation score over
  contiguous folds (:func:`deepnotes.data.splits.contiguous_folds`).
* :func:`capacity_ladder`: models of growing width trained alike: the final and best train/valid errors.
* :func:`plot_fit_curves`: train and valid error per epoch of each model, with the epoch early stopping kept.
* :func:`plot_capacity_ladder`: models of growing size: train error keeps falling, valid error does not.
* :func:`plot_predictions`: predicted vs true on held-out rows, over time and as a scatter.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deepnotes.data.splits import contiguous_folds
from deepnotes.data.tabular import Standardizer
from deepnotes.models.regression import LEAST_SQUARES, build_regressors, fit_regressor, predict_regressors
from deepnotes.report import new_figure, save_figure


def fit_candidates(specs: dict[str, dict[str, Any]], take: Callable[[np.ndarray], np.ndarray], y: np.ndarray,
                   train: np.ndarray, score: dict[str, np.ndarray], folder: Path, device: Any,
                   persistence: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 0, **fit_options: Any):
    """Train the regressors of ``specs`` on the ``train`` rows (inputs and target standardized with those rows'
    statistics; each initialized after ``torch.manual_seed(seed)``; early stopping on ``score["valid"]``), each in
    ``folder/<name>`` by :func:`~deepnotes.models.regression.fit_regressor` with ``fit_options``; fit least squares;
    predict the rows of every split of ``score`` in the target's units.

    Args:
        take: ``take(rows)`` -> the features (len(rows), C) of those rows.
        y: (N,) the target of every row.
        persistence: ``persistence(rows)`` -> the persistence baseline's predictions (yesterday's target), or None.

    Returns:
        ``(predictions[candidate][split], fit results, models (with least squares), seconds per model)``.
    """
    sx, sy = Standardizer.fit(take(train)), Standardizer.fit(y[train][:, None])
    models, fits, times = build_regressors(specs, take(train).shape[1], seed).to(device), {}, {}
    for key, model in [(k, m) for k, m in models.items() if k != LEAST_SQUARES]:
        t0 = time.perf_counter()
        fits[key] = fit_regressor(model, sx.tensor(take(train), device), sy.tensor(y[train], device),
                                  sx.tensor(take(score["valid"]), device), sy.tensor(y[score["valid"]], device),
                                  run_dir=folder / key, seed=seed, **fit_options)
        times[key] = time.perf_counter() - t0
    models[LEAST_SQUARES].fit(take(train), y[train])
    split = {s: predict_regressors(models, take(rows), sx.tensor(take(rows), device), sy.inverse,
                                   None if persistence is None else persistence(rows)) for s, rows in score.items()}
    return {k: {s: split[s][k] for s in score} for k in split[next(iter(score))]}, fits, models, times


def cross_validate(n: int, folds: int, gap: int,
                   score_fold: Callable[[int, np.ndarray, np.ndarray], dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Score candidates on ``folds`` contiguous folds of ``n`` rows.

    Args:
        n: rows to cut into folds (positions 0..n-1 in time order).
        folds: number of folds (>= 2).
        gap: rows left out of training on each side of the validation fold (windows sharing its days).
        score_fold: ``(fold, train_positions, valid_positions) -> {candidate: validation score}``.

    Returns:
        ``{candidate: {"mean", "std", "folds": [score per fold]}}`` in the order the candidates first appear.

    Raises:
        UserError: ``folds`` < 2 or more folds than rows (from :func:`contiguous_folds`).
    """
    scores: dict[str, list[float]] = {}
    for f, (train, valid) in enumerate(contiguous_folds(n, folds, gap)):
        for key, value in score_fold(f, train, valid).items():
            scores.setdefault(key, []).append(value)
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v} for k, v in scores.items()}


def capacity_ladder(widths: Sequence[int], depth: int, train: Callable[[int], tuple[Any, Any]], scale: float = 1.0,
                    log: Callable[[str], None] = lambda _m: None) -> tuple[list[dict[str, Any]], dict[str, list[dict]]]:
    """Train one model per width and summarize its per-epoch errors.

    Args:
        widths: hidden units of each rung.
        depth: hidden layers (reported only).
        train: ``width -> (model, fit)`` where ``fit.history`` holds ``epoch``, ``train_mse``, ``valid_mse``.
        scale: multiplies every error (e.g. the target's variance, back from a standardized target).
        log: one line per rung.

    Returns:
        ``(rungs, histories)``: per rung ``width, depth, parameters, final_train_mse, final_valid_mse,
        best_valid_mse, best_epoch``; ``histories["ladder-width-W"]`` the scaled per-epoch errors.
    """
    rungs, histories = [], {}
    for w in widths:
        model, fit = train(w)
        hist = [{"epoch": h["epoch"], "train_mse": h["train_mse"] * scale, "valid_mse": h["valid_mse"] * scale}
                for h in fit.history]
        best = min(hist, key=lambda h: h["valid_mse"])
        rungs.append({"width": w, "depth": depth, "parameters": sum(p.numel() for p in model.parameters()),
                      "final_train_mse": hist[-1]["train_mse"], "final_valid_mse": hist[-1]["valid_mse"],
                      "best_valid_mse": best["valid_mse"], "best_epoch": best["epoch"]})
        histories[f"ladder-width-{w}"] = hist
        log(f"ladder width {w:>4}: train MSE {hist[-1]['train_mse']:.3f}, valid MSE {hist[-1]['valid_mse']:.3f} "
            f"(best {best['valid_mse']:.3f} at epoch {best['epoch']})")
    return rungs, histories


def plot_predictions(rows: Sequence[str], cols: dict[str, np.ndarray], best: str, dated: bool, target: str,
                     path: Path) -> None:
    """Left: the true series (``cols["true"]``) and the chosen model's, least squares' and persistence's
    predictions with their MSE; right: the chosen model's predictions against the truth. ``rows`` label the x axis
    (dates when ``dated``)."""
    fig = new_figure(13, 4.2)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.4, 1]})
    x = np.arange(len(rows))
    truth = cols["true"]
    ax1.plot(x, truth, color="black", lw=1.4, label="true")
    styles = {best: ("tab:red", 1.2), "least squares": ("tab:blue", 0.9), "persistence": ("tab:gray", 0.8)}
    for key, (color, lw) in styles.items():
        if key in cols:
            mse = float(np.mean((cols[key] - truth) ** 2))
            ax1.plot(x, cols[key], color=color, lw=lw, alpha=0.85, label=f"{key} (MSE {mse:.2f})")
    if dated:
        ticks = np.linspace(0, len(rows) - 1, 7).round().astype(int)
        ax1.set_xticks(ticks)
        ax1.set_xticklabels([rows[i] for i in ticks], fontsize=8)
    ax1.set(xlabel="target day" if dated else "test row", ylabel=target, title="test rows: predicted vs true")
    ax1.legend(fontsize=8, loc="best")
    ax1.grid(True, alpha=0.3)
    ax2.scatter(truth, cols[best], s=6, alpha=0.6, color="tab:red")
    lo, hi = float(min(truth.min(), cols[best].min())), float(max(truth.max(), cols[best].max()))
    ax2.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
    ax2.set(xlabel=f"true {target}", ylabel=f"predicted ({best})", title=f"chosen model: {best}")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_capacity_ladder(ladder: list[dict], histories: dict[str, list[dict]], path: Path) -> None:
    """Left: train (dashed) and valid (solid) MSE per epoch of each rung (``histories["ladder-width-W"]``);
    right: last-epoch train and valid MSE and the best valid MSE against the number of parameters."""
    fig = new_figure(12, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for i, rung in enumerate(ladder):
        hist = histories[f"ladder-width-{rung['width']}"]
        ep = [h["epoch"] for h in hist]
        color = cmap(i / max(len(ladder) - 1, 1))
        ax1.plot(ep, [h["train_mse"] for h in hist], color=color, lw=1.0, ls="--")
        ax1.plot(ep, [h["valid_mse"] for h in hist], color=color, lw=1.5,
                 label=f"width {rung['width']} ({rung['parameters']:,} params)")
    ax1.set(yscale="log", xlabel="epoch", ylabel="MSE", title="valid (solid) and train (dashed) MSE")
    params = [r["parameters"] for r in ladder]
    ax2.plot(params, [r["final_train_mse"] for r in ladder], "o--", color="tab:blue", label="train, last epoch")
    ax2.plot(params, [r["final_valid_mse"] for r in ladder], "o-", color="tab:orange", label="valid, last epoch")
    ax2.plot(params, [r["best_valid_mse"] for r in ladder], "x:", color="tab:orange", label="valid, best epoch")
    ax2.set(xscale="log", yscale="log", xlabel=f"parameters (ReLU MLP, {ladder[0]['depth']} hidden layers)",
            ylabel="MSE", title="capacity ladder: overfitting as the model grows")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path)


def plot_fit_curves(histories: dict[str, list[dict]], models: list[str], path: Path) -> None:
    """One panel per model: train and valid MSE per epoch (log scale), a dotted line at the best valid epoch."""
    fig = new_figure(4.0 * len(models), 3.6)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, key in zip(axes, models):
        hist = histories[key]
        ep = [h["epoch"] for h in hist]
        ax.plot(ep, [h["train_mse"] for h in hist], color="tab:blue", label="train")
        ax.plot(ep, [h["valid_mse"] for h in hist], color="tab:orange", label="valid")
        best = min(hist, key=lambda h: h["valid_mse"])
        ax.axvline(best["epoch"], color="gray", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_title(f"{key} (kept epoch {best['epoch']})", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3, which="both")
    axes[0].set_ylabel("MSE (standardized target)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
