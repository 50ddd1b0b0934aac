"""Lab ``critical-points``: local minima vs saddle points of small trained networks (Hessian analysis).

Source: ML2021 "類神經網路訓練不起來怎麼辦 (一): 局部最小值 (local minima) 與鞍點 (saddle point)".
At a critical point (∇L = 0) the Hessian's eigenvalues tell a local minimum (all > 0) from a saddle
point (mixed signs); the lecture's empirical plot of *minimum ratio* = (# positive eigenvalues) /
(# eigenvalues) against training loss shows that the critical points training reaches are rarely
true minima, and that a saddle is escaped along an eigenvector with a negative eigenvalue.

What it does, on real data (scikit-learn's diabetes regression set, 442 patients, the first
``--features`` standardized features -> standardized disease progression, mean-squared error):

1. ``--trials`` times (seeds seed, seed+1, ...): a 1-hidden-layer MLP with a few tens of parameters
   is trained by full-batch gradient descent for a budget taken in turn from ``--gd-steps``;
2. the critical point near there is found by minimizing the gradient norm ||∇L||² (``--search
   gradnorm``, the lecture's recipe for reaching small gradients), here with Levenberg-Marquardt
   steps (damped Gauss-Newton on ∇L = 0, whose Jacobian is the Hessian H), since plain gradient
   descent on ||∇L||² is too ill-conditioned to get there;
3. a point with ||∇L|| < ``--grad-tol`` is classified from its Hessian eigenvalues (local minimum /
   saddle point / local maximum / degenerate, zero tolerance ``--eig-tol`` relative to max|λ|),
   others are "not critical"; the scatter plot is the lecture's;
4. saddle escape: at the zero-weight point (all weights 0, output bias = mean target: gradient
   exactly 0, a saddle by symmetry, as the origin of the lecture's y = w1 w2 x example) and at the
   lowest-loss saddle found in step 3, the loss along the most negative eigenvector (both signs)
   and gradient descent continued from the saddle vs from the saddle + t·u (t: the lowest loss on the slice, |t| <= ``--escape-step``).

Deliberate differences from the lecture: real small networks on a small real data set, in float64
on the CPU (eigenvalue signs near zero need the precision; ``--device`` is ignored).

Files it leaves in the run folder (beside config.json):
    data.json                     data set, sizes, feature names, reference losses
    results.json                  per trial: steps, loss, gradient norm, class, minimum ratio, spectrum ends
    critical_points.safetensors   per trial: parameters theta (T, P) and Hessian eigenvalues (T, P)
    escape.json                   both saddle escapes: eigenvalue, 1-D loss slice, continued-training curves
    report.md + *.png             the report
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepnotes.analysis.hessian import (
    DEGENERATE,
    LOCAL_MAXIMUM,
    LOCAL_MINIMUM,
    SADDLE_POINT,
    analyze_critical_point,
    flat_loss_function,
    flatten_parameters,
    load_flat_parameters,
)
from deepnotes.errors import UserError
from deepnotes.io import atomic_path, write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, read_run_json
from deepnotes.report import markdown_image, markdown_table, new_figure, save_figure
from deepnotes.train.config import option

NAME = "critical-points"
DATASET = "diabetes"
NOT_CRITICAL = "not critical"
KINDS = [LOCAL_MINIMUM, SADDLE_POINT, LOCAL_MAXIMUM, DEGENERATE, NOT_CRITICAL]
KIND_COLORS = {LOCAL_MINIMUM: "tab:green", SADDLE_POINT: "tab:red", LOCAL_MAXIMUM: "tab:purple",
               DEGENERATE: "tab:orange", NOT_CRITICAL: "tab:gray"}
DTYPE = torch.float64


@dataclass(frozen=True)
class CriticalPointsConfig:
    trials: int = option(30, "number of networks trained (seeds seed, seed+1, ...); one point each in the scatter plot")
    features: int = option(4, "use the first N of the 10 diabetes features (age, sex, bmi, bp, s1..s6), 1-10")
    hidden: int = option(4, "hidden units of the 1-hidden-layer MLP (parameters: hidden * (features + 2) + 1)")
    activation: Literal["tanh", "sigmoid"] = option("tanh", "hidden activation (smooth, so the Hessian is defined everywhere)")
    lr: float = option(0.2, "learning rate of full-batch gradient descent")
    gd_steps: tuple[int, ...] = option((300, 1000, 3000), "gradient-descent steps before the critical-point search; trial i uses entry i mod length (comma-separated)")
    search: Literal["gradnorm", "none"] = option("gradnorm", "after gradient descent, minimize ||grad L||^2 (Levenberg-Marquardt) to reach a critical point; none = classify where GD stopped")
    search_steps: int = option(100, "iterations of the gradient-norm search (each computes one Hessian)")
    grad_tol: float = option(1e-3, "a point is critical when ||grad L|| < this; others count as 'not critical'")
    eig_tol: float = option(1e-6, "eigenvalues with |lambda| <= eig_tol * max|lambda| count as zero")
    escape_step: float = option(2.0, "saddle escape: the loss is sliced along the unit eigenvector u of the most negative eigenvalue for steps t in [-this, this]; the escape takes the t of lowest loss")
    escape_gd_steps: int = option(1000, "gradient-descent steps continued from each saddle and from its escaped point")
    seed: int = option(0, "random seed of the first trial (weights)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "ignored: this lab computes in float64 on the CPU")
    progress: bool = option(True, "print one line per trial")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline.
    "fast": {"trials": 3, "gd_steps": (100, 300), "search_steps": 10, "escape_gd_steps": 100},
}


def _validate(cfg: CriticalPointsConfig) -> None:
    checks = [
        (cfg.trials >= 1, "--trials must be >= 1"),
        (1 <= cfg.features <= 10, "--features must be in 1..10 (the diabetes set has 10 features)"),
        (1 <= cfg.hidden <= 64, "--hidden must be in 1..64 (the full Hessian is (P, P))"),
        (cfg.lr > 0, "--lr must be > 0"),
        (len(cfg.gd_steps) >= 1 and all(s >= 0 for s in cfg.gd_steps), "--gd-steps must be one or more integers >= 0, e.g. 300,1000,3000"),
        (cfg.search_steps >= 0, "--search-steps must be >= 0"),
        (cfg.grad_tol > 0, "--grad-tol must be > 0"),
        (cfg.eig_tol >= 0, "--eig-tol must be >= 0"),
        (cfg.escape_step > 0, "--escape-step must be > 0"),
        (cfg.escape_gd_steps >= 1, "--escape-gd-steps must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


# ----------------------------------------------------------------------------------- data and model
def load_data(features: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Diabetes (Efron et al. 2004, shipped with scikit-learn): x (442, features), y (442,), both standardized."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    x = np.asarray(d.data[:, :features], dtype=np.float64)
    y = np.asarray(d.target, dtype=np.float64)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    # reference: least squares on the same features (what a linear model reaches)
    design = np.c_[x, np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    linear_mse = float(np.mean((design @ coef - y) ** 2))
    info = {"dataset": DATASET, "source": "scikit-learn load_diabetes (Efron et al. 2004, 'Least Angle Regression')",
            "n": len(y), "features": list(d.feature_names[:features]),
            "target": "disease progression one year after baseline, standardized",
            "mean_predictor_mse": float(np.mean(y**2)), "linear_regression_mse": linear_mse}
    return torch.from_numpy(x), torch.from_numpy(y), info


def build_model(cfg: CriticalPointsConfig) -> nn.Module:
    act = nn.Tanh() if cfg.activation == "tanh" else nn.Sigmoid()
    return nn.Sequential(nn.Linear(cfg.features, cfg.hidden), act, nn.Linear(cfg.hidden, 1)).to(DTYPE)


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean-squared error; out (B, 1), y (B,)."""
    return nn.functional.mse_loss(out.squeeze(-1), y)


# ----------------------------------------------------------------------------------- optimization
def gradient_descent(f, theta: torch.Tensor, lr: float, steps: int) -> tuple[torch.Tensor, list[float]]:
    """Full-batch GD θ <- θ - lr ∇L(θ); returns the last θ and the loss before each step and after the last."""
    grad_f = torch.func.grad_and_value(f)
    losses = []
    for _ in range(steps):
        g, loss = grad_f(theta)
        losses.append(float(loss))
        theta = theta - lr * g
    losses.append(float(f(theta)))
    return theta, losses


def gradient_norm_search(f, theta: torch.Tensor, steps: int, tol: float = 1e-12) -> tuple[torch.Tensor, int]:
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


def _point_summary(cp, eig_tol: float, grad_tol: float) -> dict[str, Any]:
    lam = cp.eigenvalues
    zero = eig_tol * float(lam.abs().max())
    return {
        "loss": cp.loss, "grad_norm": cp.grad_norm,
        "kind": cp.kind if cp.grad_norm < grad_tol else NOT_CRITICAL, "hessian_kind": cp.kind,
        "min_ratio": cp.min_ratio, "n_positive": int((lam > zero).sum()), "n_negative": int((lam < -zero).sum()),
        "n_zero": int((lam.abs() <= zero).sum()), "lambda_min": float(lam[0]), "lambda_max": float(lam[-1]),
    }


def run_trial(cfg: CriticalPointsConfig, x, y, trial: int) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Train one network, search the nearby critical point, analyze it. Returns (summary, θ, eigenvalues)."""
    seed = cfg.seed + trial
    torch.manual_seed(seed)
    model = build_model(cfg)
    f, theta = flat_loss_function(model, mse, x, y)
    steps = cfg.gd_steps[trial % len(cfg.gd_steps)]
    t0 = time.perf_counter()
    theta, losses = gradient_descent(f, theta, cfg.lr, steps)
    grad_after_gd = float(torch.func.grad(f)(theta).norm())
    iters = 0
    if cfg.search == "gradnorm":
        theta, iters = gradient_norm_search(f, theta, cfg.search_steps)
    load_flat_parameters(model, theta)
    cp = analyze_critical_point(model, mse, x, y, tol=cfg.eig_tol)
    summary = {"trial": trial, "seed": seed, "gd_steps": steps, "loss_after_gd": losses[-1],
               "grad_norm_after_gd": grad_after_gd, "search_iterations": iters,
               **_point_summary(cp, cfg.eig_tol, cfg.grad_tol), "time_s": time.perf_counter() - t0}
    return summary, theta.detach(), cp.eigenvalues


def zero_weight_saddle(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """θ with every weight and hidden bias 0 and the output bias = mean(y): ∇L = 0 exactly there.

    Hidden units output tanh(0) = 0 (sigmoid: ½ each, absorbed by the mean), so ∂L/∂W2 = 0 and,
    with W2 = 0, ∂L/∂W1 = ∂L/∂b1 = 0; ∂L/∂b2 = 2 mean(b2 - y) = 0. The W1-W2 block of the Hessian
    is nonzero whenever a feature correlates with y, which makes it a saddle (lecture: the origin of
    y = w1 w2 x).
    """
    theta = torch.zeros_like(flatten_parameters(model))
    theta[-1] = y.mean()  # the last parameter is the output bias of nn.Linear(hidden, 1)
    return theta


def saddle_escape(cfg: CriticalPointsConfig, x, y, theta: torch.Tensor, label: str) -> dict[str, Any]:
    """Loss along the most negative eigenvector u at θ, and GD continued from θ vs θ + t·u.

    t is the lowest-loss point of a 161-point grid over [-escape_step, escape_step] (a line search
    along ±u; near θ both signs go down as ½λt², further out higher-order terms take over).
    """
    model = build_model(cfg)
    load_flat_parameters(model, theta)
    cp = analyze_critical_point(model, mse, x, y, tol=cfg.eig_tol)
    u = cp.eigenvectors[:, 0]
    lam = float(cp.eigenvalues[0])
    f, _ = flat_loss_function(model, mse, x, y)
    ts = torch.linspace(-cfg.escape_step, cfg.escape_step, 161, dtype=DTYPE)
    with torch.no_grad():
        slice_loss = [float(f(theta + t * u)) for t in ts]
    best = int(np.argmin(slice_loss))  # line search along ±u on the grid
    step = float(ts[best])
    escaped = theta + step * u
    _, from_saddle = gradient_descent(f, theta, cfg.lr, cfg.escape_gd_steps)
    _, from_escaped = gradient_descent(f, escaped, cfg.lr, cfg.escape_gd_steps)
    return {
        "label": label, "kind": cp.kind, "loss": cp.loss, "grad_norm": cp.grad_norm, "lambda_min": lam,
        "n_negative": int((cp.eigenvalues < -cfg.eig_tol * float(cp.eigenvalues.abs().max())).sum()),
        "parameters": theta.numel(), "escape_step": step,
        "loss_after_step": slice_loss[best], "predicted_change": 0.5 * lam * step**2,
        "slice_t": ts.tolist(), "slice_loss": slice_loss,
        "gd_from_saddle": from_saddle, "gd_from_escaped": from_escaped,
    }


# ----------------------------------------------------------------------------------- run
def run(cfg: CriticalPointsConfig, ctx: RunContext) -> dict[str, Any]:
    """All trials, the two saddle escapes, then the report."""
    _validate(cfg)
    log = ctx.log
    x, y, data_info = load_data(cfg.features)
    write_json_atomic(ctx.run_dir / "data.json", data_info)
    P = sum(p.numel() for p in build_model(cfg).parameters())
    log(f"{DATASET}: {data_info['n']} patients, features {', '.join(data_info['features'])}; "
        f"MLP {cfg.features}-{cfg.hidden}-1 ({cfg.activation}), {P} parameters, Hessian {P}x{P}")
    t0 = time.perf_counter()
    trials, thetas, eigs = [], [], []
    for i in range(cfg.trials):
        summary, theta, lam = run_trial(cfg, x, y, i)
        trials.append(summary)
        thetas.append(theta)
        eigs.append(lam)
        if cfg.progress:
            log(f"trial {i + 1}/{cfg.trials}: {summary['gd_steps']} GD steps, loss {summary['loss']:.4f}, "
                f"|grad| {summary['grad_norm']:.1e}, {summary['kind']}, minimum ratio {summary['min_ratio']:.3f}")
    with atomic_path(ctx.run_dir / "critical_points.safetensors") as tmp:
        save_file({"theta": torch.stack(thetas).contiguous(), "eigenvalues": torch.stack(eigs).contiguous()}, str(tmp))
    counts = {k: sum(t["kind"] == k for t in trials) for k in KINDS}

    escapes = [saddle_escape(cfg, x, y, zero_weight_saddle(build_model(cfg), y), "zero-weight point")]
    saddles = [t for t in trials if t["kind"] == SADDLE_POINT]
    if saddles:
        best = min(saddles, key=lambda t: t["loss"])
        escapes.append(saddle_escape(cfg, x, y, thetas[best["trial"]], f"saddle of trial {best['trial']}"))
    write_json_atomic(ctx.run_dir / "escape.json", {"escapes": escapes})
    results = {"parameters": P, "trials": trials, "counts": counts, "time_s": time.perf_counter() - t0}
    write_json_atomic(ctx.run_dir / "results.json", results)
    report_path = report(ctx.run_dir)
    log("critical points: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + f" (of {cfg.trials})")
    for e in escapes:
        log(f"escape from {e['label']} ({e['kind']}, lambda_min {e['lambda_min']:.3g}): loss {e['loss']:.4f} -> "
            f"{e['loss_after_step']:.4f} after the step; after {cfg.escape_gd_steps} GD steps "
            f"{e['gd_from_escaped'][-1]:.4f} vs {e['gd_from_saddle'][-1]:.4f} from the saddle itself")
    log(f"done in {results['time_s']:.0f}s; report: {report_path}")
    return {"counts": counts, "time_s": results["time_s"]}


# ----------------------------------------------------------------------------------- evaluate
def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: recompute every saved point's Hessian from its parameters and re-classify.

    Args:
        data: None or ``"diabetes"`` (the only data set of this lab).
        device: ignored (float64 on the CPU).
    Returns:
        Counts per class, how many classes agree with the run's, and the largest eigenvalue
        difference; also saved as ``eval/diabetes.json``.
    Raises:
        UserError: another ``--data``, or a missing/damaged critical_points.safetensors.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    if data not in (None, DATASET):
        raise UserError(f"--data {data}: this lab's points are critical points of the {DATASET} loss; drop --data")
    path = run_dir / "critical_points.safetensors"
    try:
        saved = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise UserError(f"cannot load {path}: {e}; the run did not finish or the file is damaged") from e
    results = read_run_json(run_dir / "results.json")
    x, y, _ = load_data(cfg.features)
    model = build_model(cfg)
    kinds, max_diff = [], 0.0
    for theta, lam_saved in zip(saved["theta"], saved["eigenvalues"]):
        load_flat_parameters(model, theta)
        cp = analyze_critical_point(model, mse, x, y, tol=cfg.eig_tol)
        kinds.append(_point_summary(cp, cfg.eig_tol, cfg.grad_tol)["kind"])
        max_diff = max(max_diff, float((cp.eigenvalues - lam_saved).abs().max()))
    agree = sum(k == t["kind"] for k, t in zip(kinds, results["trials"]))
    metrics = {"data": DATASET, "points": len(kinds), "counts": {k: kinds.count(k) for k in KINDS},
               "classes_agree": agree, "max_eigenvalue_difference": max_diff}
    write_json_atomic(run_dir / "eval" / f"{DATASET}.json", metrics)
    return metrics


# ----------------------------------------------------------------------------------- report
def plot_minimum_ratio_vs_loss(trials: list[dict[str, Any]], path: Path, title: str) -> None:
    """The lecture's scatter: minimum ratio (x) vs training loss (y), one point per trial, colored by class."""
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
    ax.set_xlabel("minimum ratio = # positive eigenvalues / # eigenvalues")
    ax.set_ylabel("training loss (MSE, standardized target)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


def plot_saddle_escape(escapes: list[dict[str, Any]], path: Path) -> None:
    """Per saddle: the 1-D loss slice along u (with ½λt²) and GD continued from the saddle vs the escaped point."""
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
        ax.set_xlabel("step t along the unit eigenvector u of the most negative eigenvalue")
        ax.set_ylabel("training loss")
        ax.set_title(f"{e['label']}: loss along u", fontsize=10)
        ax.set_ylim(min(e["slice_loss"]) - 0.05 * (max(e["slice_loss"]) - min(e["slice_loss"]) + 1e-12),
                    max(e["slice_loss"]) + 0.1 * (max(e["slice_loss"]) - min(e["slice_loss"]) + 1e-12))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7.5, loc="best")
        ax = row[1]
        steps = np.arange(len(e["gd_from_saddle"]))
        ax.plot(steps, e["gd_from_saddle"], lw=1.8, color="tab:red", label="GD from the saddle θ*")
        ax.plot(steps, e["gd_from_escaped"], lw=1.8, color="tab:green", label=f"GD from θ* + ({e['escape_step']:.3g})·u")
        ax.set_xlabel("gradient-descent step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{e['label']}: training continued", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def plot_spectra(eigenvalues: torch.Tensor, trials: list[dict[str, Any]], path: Path) -> None:
    """Sorted Hessian eigenvalues of every trial (symmetric-log axis), coloured by class."""
    fig = new_figure(6.4, 3.8)
    ax = fig.subplots()
    for lam, t in zip(eigenvalues.numpy(), trials):
        ax.plot(np.arange(1, len(lam) + 1), lam, lw=0.9, marker=".", ms=3, alpha=0.7, color=KIND_COLORS[t["kind"]])
    for kind in KINDS:
        if any(t["kind"] == kind for t in trials):
            ax.plot([], [], color=KIND_COLORS[kind], label=kind)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("eigenvalue index (ascending)")
    ax.set_ylabel("Hessian eigenvalue")
    ax.set_title("Hessian spectra at the points found", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    data_info = read_run_json(run_dir / "data.json")
    results = read_run_json(run_dir / "results.json")
    escapes = read_run_json(run_dir / "escape.json")["escapes"]
    try:
        eigs = load_file(str(run_dir / "critical_points.safetensors"))["eigenvalues"]
    except (OSError, SafetensorError, KeyError) as e:
        raise UserError(f"cannot load {run_dir / 'critical_points.safetensors'}: {e}; re-run the lab") from e
    trials, counts, P = results["trials"], results["counts"], results["parameters"]
    plot_minimum_ratio_vs_loss(trials, run_dir / "minimum_ratio_vs_loss.png",
                               f"{cfg.trials} MLPs {cfg.features}-{cfg.hidden}-1 ({P} parameters) on {DATASET}")
    plot_saddle_escape(escapes, run_dir / "saddle_escape.png")
    plot_spectra(eigs, trials, run_dir / "hessian_spectra.png")

    critical = [t for t in trials if t["kind"] != NOT_CRITICAL]
    count_rows = []
    for kind in KINDS:
        sel = [t for t in trials if t["kind"] == kind]
        count_rows.append([kind, len(sel), f"{100 * len(sel) / len(trials):.0f}%",
                           min((t["loss"] for t in sel), default=None), max((t["loss"] for t in sel), default=None),
                           float(np.mean([t["min_ratio"] for t in sel])) if sel else None])
    count_rows.append(["total", len(trials), "100%", None, None, None])
    esc_rows = [[e["label"], e["kind"], f"{e['grad_norm']:.1e}", e["lambda_min"], e["n_negative"], e["loss"],
                 e["escape_step"], e["loss_after_step"], e["predicted_change"], e["gd_from_saddle"][-1], e["gd_from_escaped"][-1]]
                for e in escapes]
    trial_rows = [[t["trial"], t["gd_steps"], t["loss_after_gd"], f"{t['grad_norm_after_gd']:.1e}", t["search_iterations"],
                   t["loss"], f"{t['grad_norm']:.1e}", t["kind"], t["min_ratio"], t["n_negative"], t["n_zero"],
                   f"{t['lambda_min']:.2e}", t["lambda_max"]] for t in trials]
    search = ("then minimized the gradient norm ||∇L||² (the lecture's way of reaching small gradients) with "
              f"up to {cfg.search_steps} Levenberg-Marquardt iterations (damped Gauss-Newton on ∇L = 0; its Jacobian is H)"
              if cfg.search == "gradnorm" else "and classified where gradient descent stopped (no gradient-norm search)")
    config_rows = [[k, v] for k, v in json.loads((run_dir / "config.json").read_text())["config"].items()]
    lines = [
        f"# {NAME}: local minima vs saddle points of {cfg.trials} small networks",
        "",
        "ML2021 lecture 類神經網路訓練不起來怎麼辦 (一): 局部最小值與鞍點. At a critical point (∇L ≈ 0) the loss is "
        "L(θ) ≈ L(θ*) + ½(θ-θ*)ᵀH(θ-θ*): all Hessian eigenvalues positive = local minimum, mixed signs = saddle point. "
        "Minimum ratio = # positive eigenvalues / # eigenvalues.",
        "",
        f"Data: {data_info['source']}: {data_info['n']} patients, features {', '.join(data_info['features'])} "
        f"(standardized) -> {data_info['target']}. Loss: mean-squared error (1.0 = predicting the mean; "
        f"least-squares linear regression on the same features: {data_info['linear_regression_mse']:.4f}). "
        f"Model: MLP {cfg.features}-{cfg.hidden}-1 with {cfg.activation}, {P} parameters, float64. "
        f"Each trial: PyTorch default initialization (seed {cfg.seed} + trial), full-batch gradient descent "
        f"(lr {cfg.lr}, {', '.join(map(str, cfg.gd_steps))} steps in turn), {search}. "
        f"A point counts as critical when ||∇L|| < {cfg.grad_tol:g}; eigenvalues with |λ| ≤ {cfg.eig_tol:g}·max|λ| count as zero.",
        "",
        "## Critical points found",
        "",
        markdown_table(["class", "trials", "share", "lowest loss", "highest loss", "mean minimum ratio"], count_rows),
        "",
        f"{len(critical)} of {len(trials)} trials reached a critical point; "
        f"{counts.get(LOCAL_MINIMUM, 0)} of them a strict local minimum. "
        f"{sum(t['grad_norm'] < 1e-8 for t in critical)} of the critical points have ||∇L|| < 1e-8 (critical up to "
        f"rounding); the others are approximate critical points (||∇L|| < {cfg.grad_tol:g}, like the lecture's "
        "study), where the sign of eigenvalues much smaller than ||∇L|| is less certain.",
        "",
        markdown_image("minimum ratio vs training loss", "minimum_ratio_vs_loss.png"),
        "",
        "The lecture's plot: each point is one trained network; x = minimum ratio, y = training loss. "
        "Points left of 1.0 still have directions in which the loss goes down.",
        "",
        markdown_image("Hessian spectra", "hessian_spectra.png"),
        "",
        "## Escaping a saddle point",
        "",
        "At a saddle θ* with eigenvalue λ < 0 and unit eigenvector u, L(θ* + t·u) ≈ L(θ*) + ½λt² < L(θ*) for both "
        "signs of t; the step t is the lowest-loss point of the slice (a line search along ±u). The zero-weight point (all weights 0, output bias = mean target) has gradient exactly 0: "
        "gradient descent started there never moves, while one step along u lets it train. "
        + ("The second row starts from the lowest-loss saddle the trials found." if len(escapes) > 1 else
           "No trial ended at a saddle, so only the constructed one is shown."),
        "",
        markdown_table(["saddle", "class", "‖∇L‖", "λ_min", "# λ<0", "loss at θ*", "step t", "loss at θ*+t·u",
                        "½λt²", f"loss after {cfg.escape_gd_steps} GD steps from θ*", "... from θ*+step·u"], esc_rows),
        "",
        markdown_image("saddle escape", "saddle_escape.png"),
        "",
        "## Every trial",
        "",
        markdown_table(["trial", "GD steps", "loss after GD", "‖∇L‖ after GD", "search its", "loss", "‖∇L‖", "class",
                        "min ratio", "# λ<0", "# λ≈0", "λ_min", "λ_max"], trial_rows),
        "",
        f"Run time: {results['time_s']:.0f} s.",
        "",
        "## Configuration",
        "",
        markdown_table(["field", "value"], config_rows),
        "",
    ]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="Hessian eigenvalues at the critical points of small trained MLPs: minimum ratio vs loss, saddle escape",
    source="ML2021 類神經網路訓練不起來怎麼辦 (一): local minima and saddle points",
    default_dataset=DATASET,
    metric="share of critical points that are local minima",
    config_cls=CriticalPointsConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
