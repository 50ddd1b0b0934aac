"""Finding the critical points of a small network's loss, telling minima from saddles, and escaping a saddle.

Source: ML2021 "類神經網路訓練不起來怎麼辦 (一): 局部最小值 (local minima) 與鞍點 (saddle point)": at a critical
point (∇L = 0) the Hessian's eigenvalues decide (:mod:`deepnotes.analysis.hessian`); the lecture's plot of the
*minimum ratio* (# positive eigenvalues / # eigenvalues) against the training loss shows that training rarely
ends at a true minimum; at a saddle, a step along an eigenvector u with eigenvalue λ < 0 lowers the loss as
L(θ* + t·u) ≈ L(θ*) + ½λt².

Everything works on a flat loss ``f(θ)`` (:func:`deepnotes.analysis.hessian.flat_loss_function`), θ of shape (P,):

* :func:`gradient_descent`: full-batch θ <- θ - lr ∇L(θ);
* :func:`gradient_norm_search`: minimizes ½||∇L(θ)||² by Levenberg-Marquardt (damped Gauss-Newton on ∇L = 0,
  whose Jacobian is the Hessian), which reaches the nearest critical point of any kind;
* :func:`point_summary`: a point's class, counting it "not critical" when ||∇L|| is not small;
* :func:`zero_weight_saddle` and :func:`saddle_escape`: the exact saddle of a one-hidden-layer network with
  zero weights, and the loss along the most negative eigenvector with gradient descent continued from both;
* plots of the minimum ratio vs the loss, the Hessian spectra and the escapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from deepnotes.analysis.hessian import (DEGENERATE, LOCAL_MAXIMUM, LOCAL_MINIMUM, SADDLE_POINT, CriticalPoint, LossFn,
                                        analyze_critical_point, flat_loss_function, flatten_parameters,
                                        load_flat_parameters)
from deepnotes.report import new_figure, save_figure

NOT_CRITICAL = "not critical"
KINDS = [LOCAL_MINIMUM, SADDLE_POINT, LOCAL_MAXIMUM, DEGENERATE, NOT_CRITICAL]
KIND_COLORS = {LOCAL_MINIMUM: "tab:green", SADDLE_POINT: "tab:red", LOCAL_MAXIMUM: "tab:purple",
               DEGENERATE: "tab:orange", NOT_CRITICAL: "tab:gray"}


def gradient_descent(f: Callable[[Tensor], Tensor], theta: Tensor, lr: float, steps: int) -> tuple[Tensor, list[float]]:
    """Full-batch GD θ <- θ - lr ∇L(θ); returns the last θ and the loss before each step and after the last."""
    grad_f = torch.func.grad_and_value(f)
    losses = []
    for _ in range(steps):
        g, loss = grad_f(theta)
        losses.append(float(loss))
        theta = theta - lr * g
    losses.append(float(f(theta)))
    return theta, losses


def gradient_norm_search(f: Callable[[Tensor], Tensor], theta: Tensor, steps: int,
                         tol: float = 1e-12) -> tuple[Tensor, int]:
    """Minimize ½||∇L(θ)||² by Levenberg-Marquardt: θ <- θ - (H^T H + μI)^{-1} H^T g.

    The residual is g = ∇L(θ) and its Jacobian is the Hessian H, so this is damped Gauss-Newton on
    ∇L = 0: it converges to the nearest critical point of any kind (saddles included), as
    gradient-norm minimization is meant to. μ is divided by 3 after a step that lowers ||g|| and
    multiplied by 3 (step retried) otherwise. Stops at ||g|| < tol, μ > 1e8 or after ``steps``.

    Returns:
        (θ, iterations done).
    """
    grad_f, hess_f = torch.func.grad(f), torch.func.hessian(f)
    g = grad_f(theta)
    g_norm = float(g.norm())
    eye = torch.eye(theta.numel(), dtype=theta.dtype)
    mu = 1e-3
    it = 0
    for it in range(1, steps + 1):
        if g_norm < tol:
            return theta, it - 1
        H = hess_f(theta)
        while mu <= 1e8:
            candidate = theta - torch.linalg.solve(H.T @ H + mu * eye, H.T @ g)
            g_new = grad_f(candidate)
            if float(g_new.norm()) < g_norm:
                theta, g, g_norm = candidate, g_new, float(g_new.norm())
                mu = max(mu / 3, 1e-12)
                break
            mu *= 3
        if mu > 1e8:
            break
    return theta, it


def point_summary(cp: CriticalPoint, eig_tol: float, grad_tol: float) -> dict[str, Any]:
    """A point's loss, gradient norm, class (:data:`NOT_CRITICAL` unless ||∇L|| < ``grad_tol``), minimum ratio,
    eigenvalue counts (|λ| <= ``eig_tol`` max|λ| counts as zero) and the ends of the spectrum."""
    lam = cp.eigenvalues
    zero = eig_tol * float(lam.abs().max())
    return {"loss": cp.loss, "grad_norm": cp.grad_norm,
            "kind": cp.kind if cp.grad_norm < grad_tol else NOT_CRITICAL, "hessian_kind": cp.kind,
            "min_ratio": cp.min_ratio, "n_positive": int((lam > zero).sum()), "n_negative": int((lam < -zero).sum()),
            "n_zero": int((lam.abs() <= zero).sum()), "lambda_min": float(lam[0]), "lambda_max": float(lam[-1])}


def zero_weight_saddle(model: nn.Module, y: Tensor) -> Tensor:
    """θ of a one-hidden-layer network with every weight and hidden bias 0 and the output bias = mean(y):
    ∇L = 0 exactly there (mean-squared error).

    Hidden units output tanh(0) = 0 (sigmoid: ½ each, absorbed by the mean), so ∂L/∂W2 = 0 and,
    with W2 = 0, ∂L/∂W1 = ∂L/∂b1 = 0; ∂L/∂b2 = 2 mean(b2 - y) = 0. The W1-W2 block of the Hessian
    is nonzero whenever a feature correlates with y, which makes it a saddle (lecture: the origin of
    y = w1 w2 x).
    """
    theta = torch.zeros_like(flatten_parameters(model))
    theta[-1] = y.mean()  # the last parameter is the output bias
    return theta


def saddle_escape(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, theta: Tensor, label: str, lr: float,
                  escape_step: float, gd_steps: int, eig_tol: float) -> dict[str, Any]:
    """Loss along the most negative eigenvector u at θ, and GD continued from θ vs θ + t·u.

    t is the lowest-loss point of a 161-point grid over [-escape_step, escape_step] (a line search
    along ±u; near θ both signs go down as ½λt², further out higher-order terms take over).
    ``model`` gives the architecture (its parameters are set to θ).
    """
    load_flat_parameters(model, theta)
    cp = analyze_critical_point(model, loss_fn, x, y, tol=eig_tol)
    u = cp.eigenvectors[:, 0]
    lam = float(cp.eigenvalues[0])
    f, _ = flat_loss_function(model, loss_fn, x, y)
    ts = torch.linspace(-escape_step, escape_step, 161, dtype=theta.dtype)
    with torch.no_grad():
        slice_loss = [float(f(theta + t * u)) for t in ts]
    best = int(np.argmin(slice_loss))  # line search along ±u on the grid
    step = float(ts[best])
    _, from_saddle = gradient_descent(f, theta, lr, gd_steps)
    _, from_escaped = gradient_descent(f, theta + step * u, lr, gd_steps)
    return {"label": label, "kind": cp.kind, "loss": cp.loss, "grad_norm": cp.grad_norm, "lambda_min": lam,
            "n_negative": int((cp.eigenvalues < -eig_tol * float(cp.eigenvalues.abs().max())).sum()),
            "parameters": theta.numel(), "escape_step": step,
            "loss_after_step": slice_loss[best], "predicted_change": 0.5 * lam * step**2,
            "slice_t": ts.tolist(), "slice_loss": slice_loss,
            "gd_from_saddle": from_saddle, "gd_from_escaped": from_escaped}


# ----------------------------------------------------------------------------------- figures
def plot_minimum_ratio_vs_loss(trials: list[dict[str, Any]], path: Path, title: str) -> None:
    """The lecture's scatter: minimum ratio (x) vs training loss (y), one point per trial (``kind``,
    ``min_ratio``, ``loss``, ``gd_steps``), colored by class, one marker per gradient-descent budget."""
    fig = new_figure(6.4, 4.4)
    ax = fig.subplots()
    markers = ["o", "s", "^", "D", "v", "P"]
    budgets = sorted({t["gd_steps"] for t in trials})
    for kind in KINDS:
        pts = [t for t in trials if t["kind"] == kind]
        for j, b in enumerate(budgets):
            sel = [t for t in pts if t["gd_steps"] == b]
            if sel:
                ax.scatter([t["min_ratio"] for t in sel], [t["loss"] for t in sel], c=KIND_COLORS[kind],
                           marker=markers[j % len(markers)], s=40, alpha=0.8, edgecolors="black", linewidths=0.4)
    for kind in KINDS:  # legend: classes by colour, GD budgets by marker
        n = sum(t["kind"] == kind for t in trials)
        if n:
            ax.scatter([], [], c=KIND_COLORS[kind], marker="o", s=40, edgecolors="black", linewidths=0.4, label=f"{kind} ({n})")
    for j, b in enumerate(budgets):
        ax.scatter([], [], facecolors="none", edgecolors="black", marker=markers[j % len(markers)], s=40, label=f"{b} GD steps")
    ax.axvline(1.0, color="tab:green", lw=0.8, ls=":")
    ax.set(xlabel="minimum ratio = # positive eigenvalues / # eigenvalues", ylabel="training loss (MSE, standardized target)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


def plot_saddle_escape(escapes: list[dict[str, Any]], path: Path) -> None:
    """Per saddle (a :func:`saddle_escape` result): the 1-D loss slice along u (with ½λt²) and GD continued from the
    saddle vs the escaped point."""
    fig = new_figure(10.5, 3.6 * len(escapes))
    axes = fig.subplots(len(escapes), 2, squeeze=False)
    for row, e in zip(axes, escapes):
        t = np.asarray(e["slice_t"])
        ax = row[0]
        ax.plot(t, e["slice_loss"], lw=1.8, color="tab:blue", label="L(θ* + t·u)")
        ax.plot(t, e["loss"] + 0.5 * e["lambda_min"] * t**2, lw=1.2, ls="--", color="tab:gray",
                label=f"L(θ*) + ½λt², λ = {e['lambda_min']:.3g}")
        ax.plot([0], [e["loss"]], "o", color="tab:red", label="saddle θ*")
        ax.plot([e["escape_step"]], [e["loss_after_step"]], "*", ms=12, color="tab:green", mec="black", mew=0.5,
                label="escape step")
        ax.set(xlabel="step t along the unit eigenvector u of the most negative eigenvalue", ylabel="training loss")
        ax.set_title(f"{e['label']}: loss along u", fontsize=10)
        ax.set_ylim(min(e["slice_loss"]) - 0.05 * (max(e["slice_loss"]) - min(e["slice_loss"]) + 1e-12),
                    max(e["slice_loss"]) + 0.1 * (max(e["slice_loss"]) - min(e["slice_loss"]) + 1e-12))
        ax.legend(fontsize=7.5, loc="best")
        ax = row[1]
        steps = np.arange(len(e["gd_from_saddle"]))
        ax.plot(steps, e["gd_from_saddle"], lw=1.8, color="tab:red", label="GD from the saddle θ*")
        ax.plot(steps, e["gd_from_escaped"], lw=1.8, color="tab:green", label=f"GD from θ* + ({e['escape_step']:.3g})·u")
        ax.set(xlabel="gradient-descent step", ylabel="training loss")
        ax.set_title(f"{e['label']}: training continued", fontsize=10)
        ax.legend(fontsize=8, loc="best")
        for ax in row:
            ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def plot_spectra(eigenvalues: Tensor, trials: list[dict[str, Any]], path: Path) -> None:
    """Sorted Hessian eigenvalues (T, P) of every trial (symmetric-log axis), coloured by the trial's class."""
    fig = new_figure(6.4, 3.8)
    ax = fig.subplots()
    for lam, t in zip(eigenvalues.numpy(), trials):
        ax.plot(np.arange(1, len(lam) + 1), lam, lw=0.9, marker=".", ms=3, alpha=0.7, color=KIND_COLORS[t["kind"]])
    for kind in KINDS:
        if any(t["kind"] == kind for t in trials):
            ax.plot([], [], color=KIND_COLORS[kind], label=kind)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set(xlabel="eigenvalue index (ascending)", ylabel="Hessian eigenvalue")
    ax.set_title("Hessian spectra at the points found", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
