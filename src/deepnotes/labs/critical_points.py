"""Lab ``critical-points``: local minima vs saddle points of small trained networks (Hessian analysis).

Source: ML2021 "類神經網路訓練不起來怎麼辦 (一): 局部最小值 (local minima) 與鞍點 (saddle point)".
At a critical point (∇L = 0) the Hessian's eigenvalues tell a local minimum (all > 0) from a saddle
point (mixed signs); the lecture's empirical plot of *minimum ratio* = (# positive eigenvalues) /
(# eigenvalues) against training loss shows that the critical points training reaches are rarely
true minima, and that a saddle is escaped along an eigenvector with a negative eigenvalue.

What it does, on real data (scikit-learn's diabetes regression set, 442 patients, the first
``--features`` standardized features -> standardized disease progression, mean-squared error):

1. ``--trials`` times (seeds seed, seed+1, ...): a 1-hidden-layer MLP (``regression-mlp`` of the model
   registry) with a few tens of parameters is trained by full-batch gradient descent for a budget taken in
   turn from ``--gd-steps``;
2. the critical point near there is found by minimizing the gradient norm ||∇L||² (``--search
   gradnorm``, Levenberg-Marquardt; :mod:`deepnotes.analysis.critical_points`);
3. a point with ||∇L|| < ``--grad-tol`` is classified from its Hessian eigenvalues (local minimum /
   saddle point / local maximum / degenerate, zero tolerance ``--eig-tol`` relative to max|λ|),
   others are "not critical"; the scatter plot is the lecture's;
4. saddle escape: at the zero-weight point (gradient exactly 0, a saddle by symmetry, as the origin of the
   lecture's y = w1 w2 x example) and at the lowest-loss saddle found in step 3, the loss along the most
   negative eigenvector and gradient descent continued from the saddle vs from the saddle + t·u.

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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from deepnotes.analysis.critical_points import (KINDS, NOT_CRITICAL, gradient_descent, gradient_norm_search, plot_minimum_ratio_vs_loss,
                                                 plot_saddle_escape, plot_spectra, point_summary, saddle_escape, zero_weight_saddle)
from deepnotes.analysis.hessian import LOCAL_MINIMUM, SADDLE_POINT, analyze_critical_point, flat_loss_function, load_flat_parameters
from deepnotes.data.tabular import DIABETES, load_diabetes
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunConfig, RunContext, option
from deepnotes.io import atomic_path
from deepnotes.models.registry import create_model
from deepnotes.report import markdown_image, markdown_table

NAME = "critical-points"
DATASET = DIABETES.name
DTYPE = torch.float64


@dataclass(frozen=True)
class CriticalPointsConfig(RunConfig):
    trials: int = option(30, "number of networks trained (seeds seed, seed+1, ...); one point each in the scatter plot", range="[1, 100000]")
    features: int = option(4, "use the first N of the 10 diabetes features (age, sex, bmi, bp, s1..s6)", range="[1, 10]")
    hidden: int = option(4, "hidden units of the 1-hidden-layer MLP (parameters: hidden * (features + 2) + 1)", range="[1, 64]")
    activation: Literal["tanh", "sigmoid"] = option("tanh", "hidden activation (smooth, so the Hessian is defined everywhere)")
    lr: float = option(0.2, "learning rate of full-batch gradient descent", range="(0, inf)")
    gd_steps: tuple[int, ...] = option((300, 1000, 3000), "gradient-descent steps before the critical-point search; trial i uses entry i mod length (comma-separated)", range="[0, 100000000]", nonempty=True)
    search: Literal["gradnorm", "none"] = option("gradnorm", "after gradient descent, minimize ||grad L||^2 (Levenberg-Marquardt) to reach a critical point; none = classify where GD stopped")
    search_steps: int = option(100, "iterations of the gradient-norm search (each computes one Hessian)", range="[0, 1000000]")
    grad_tol: float = option(1e-3, "a point is critical when ||grad L|| < this; others count as 'not critical'", range="(0, inf)")
    eig_tol: float = option(1e-6, "eigenvalues with |lambda| <= eig_tol * max|lambda| count as zero", range="[0, inf)")
    escape_step: float = option(2.0, "saddle escape: steps t in [-this, this] along the most negative eigenvector; the escape takes the t of lowest loss", range="(0, inf)")
    escape_gd_steps: int = option(1000, "gradient-descent steps continued from each saddle and from its escaped point", range="[1, 100000000]")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline.
    "fast": {"trials": 3, "gd_steps": (100, 300), "search_steps": 10, "escape_gd_steps": 100},
}


def load_data(features: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Diabetes: x (442, features), y (442,), both standardized, and what data.json says about them."""
    x, y, names = load_diabetes(features)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    design = np.c_[x, np.ones(len(x))]  # reference: least squares on the same features (what a linear model reaches)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    info = {"dataset": DATASET, "source": "scikit-learn load_diabetes (Efron et al. 2004, 'Least Angle Regression')",
            "n": len(y), "features": names, "target": "disease progression one year after baseline, standardized",
            "mean_predictor_mse": float(np.mean(y**2)), "linear_regression_mse": float(np.mean((design @ coef - y) ** 2))}
    return torch.from_numpy(x), torch.from_numpy(y), info


def build_model(cfg: CriticalPointsConfig) -> nn.Module:
    """MLP features-hidden-1 with the smooth activation, float64 (weights from torch's global RNG)."""
    return create_model("regression-mlp", in_features=cfg.features, width=cfg.hidden, depth=1,
                        activation=cfg.activation).to(DTYPE)


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean-squared error; out (B,) or (B, 1), y (B,)."""
    return nn.functional.mse_loss(out.reshape(y.shape), y)


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
               **point_summary(cp, cfg.eig_tol, cfg.grad_tol), "time_s": time.perf_counter() - t0}
    return summary, theta.detach(), cp.eigenvalues


def run(cfg: CriticalPointsConfig, ctx: RunContext) -> dict[str, Any]:
    """All trials, the two saddle escapes, then the report."""
    log, run_ = ctx.log, Run(ctx.run_dir)
    x, y, data_info = load_data(cfg.features)
    run_.write_json("data.json", data_info)
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

    def escape(theta: torch.Tensor, label: str) -> dict[str, Any]:
        return saddle_escape(build_model(cfg), mse, x, y, theta, label, cfg.lr, cfg.escape_step, cfg.escape_gd_steps,
                             cfg.eig_tol)

    escapes = [escape(zero_weight_saddle(build_model(cfg), y), "zero-weight point")]
    saddles = [t for t in trials if t["kind"] == SADDLE_POINT]
    if saddles:
        best = min(saddles, key=lambda t: t["loss"])
        escapes.append(escape(thetas[best["trial"]], f"saddle of trial {best['trial']}"))
    run_.write_json("escape.json", {"escapes": escapes})
    results = {"parameters": P, "trials": trials, "counts": counts, "time_s": time.perf_counter() - t0}
    run_.write_json("results.json", results)
    report_path = report(run_)
    log("critical points: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + f" (of {cfg.trials})")
    for e in escapes:
        log(f"escape from {e['label']} ({e['kind']}, lambda_min {e['lambda_min']:.3g}): loss {e['loss']:.4f} -> "
            f"{e['loss_after_step']:.4f} after the step; after {cfg.escape_gd_steps} GD steps "
            f"{e['gd_from_escaped'][-1]:.4f} vs {e['gd_from_saddle'][-1]:.4f} from the saddle itself")
    log(f"done in {results['time_s']:.0f}s; report: {report_path}")
    return {"counts": counts, "time_s": results["time_s"]}


def _saved_points(run: Run) -> dict[str, torch.Tensor]:
    path = run / "critical_points.safetensors"
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise UserError(f"cannot load {path}: {e}; the run did not finish or the file is damaged: re-run the lab") from e


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
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
    cfg = run.config
    if data not in (None, DATASET):
        raise UserError(f"--data {data}: this lab's points are critical points of the {DATASET} loss; drop --data")
    saved, results = _saved_points(run), run.read_json("results.json")
    x, y, _ = load_data(cfg.features)
    model = build_model(cfg)
    kinds, max_diff = [], 0.0
    for theta, lam_saved in zip(saved["theta"], saved["eigenvalues"]):
        load_flat_parameters(model, theta)
        cp = analyze_critical_point(model, mse, x, y, tol=cfg.eig_tol)
        kinds.append(point_summary(cp, cfg.eig_tol, cfg.grad_tol)["kind"])
        max_diff = max(max_diff, float((cp.eigenvalues - lam_saved).abs().max()))
    agree = sum(k == t["kind"] for k, t in zip(kinds, results["trials"]))
    metrics = {"data": DATASET, "points": len(kinds), "counts": {k: kinds.count(k) for k in KINDS},
               "classes_agree": agree, "max_eigenvalue_difference": max_diff}
    run.write_eval(DATASET, metrics)
    return metrics


def report(run: Run) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    run = run if isinstance(run, Run) else Run(run)
    cfg, data_info, results = run.config, run.read_json("data.json"), run.read_json("results.json")
    escapes = run.read_json("escape.json")["escapes"]
    trials, counts, P = results["trials"], results["counts"], results["parameters"]
    plot_minimum_ratio_vs_loss(trials, run / "minimum_ratio_vs_loss.png",
                               f"{cfg.trials} MLPs {cfg.features}-{cfg.hidden}-1 ({P} parameters) on {DATASET}")
    plot_saddle_escape(escapes, run / "saddle_escape.png")
    plot_spectra(_saved_points(run)["eigenvalues"], trials, run / "hessian_spectra.png")

    critical = [t for t in trials if t["kind"] != NOT_CRITICAL]
    count_rows = []
    for kind in KINDS:
        sel = [t for t in trials if t["kind"] == kind]
        count_rows.append([kind, len(sel), f"{100 * len(sel) / len(trials):.0f}%",
                           min((t["loss"] for t in sel), default=None), max((t["loss"] for t in sel), default=None),
                           float(np.mean([t["min_ratio"] for t in sel])) if sel else None])
    count_rows.append(["total", len(trials), "100%", None, None, None])
    search = ("then minimized the gradient norm ||∇L||² (the lecture's way of reaching small gradients) with "
              f"up to {cfg.search_steps} Levenberg-Marquardt iterations (damped Gauss-Newton on ∇L = 0; its Jacobian is H)"
              if cfg.search == "gradnorm" else "and classified where gradient descent stopped (no gradient-norm search)")
    rep = Report(run, f"{NAME}: local minima vs saddle points of {cfg.trials} small networks", intro=(
        "ML2021 lecture 類神經網路訓練不起來怎麼辦 (一): 局部最小值與鞍點. At a critical point (∇L ≈ 0) the loss is "
        "L(θ) ≈ L(θ*) + ½(θ-θ*)ᵀH(θ-θ*): all Hessian eigenvalues positive = local minimum, mixed signs = saddle point. "
        "Minimum ratio = # positive eigenvalues / # eigenvalues.\n\n"
        f"Data: {data_info['source']}: {data_info['n']} patients, features {', '.join(data_info['features'])} "
        f"(standardized) -> {data_info['target']}. Loss: mean-squared error (1.0 = predicting the mean; "
        f"least-squares linear regression on the same features: {data_info['linear_regression_mse']:.4f}). "
        f"Model: MLP {cfg.features}-{cfg.hidden}-1 with {cfg.activation}, {P} parameters, float64. "
        f"Each trial: PyTorch default initialization (seed {cfg.seed} + trial), full-batch gradient descent "
        f"(lr {cfg.lr}, {', '.join(map(str, cfg.gd_steps))} steps in turn), {search}. "
        f"A point counts as critical when ||∇L|| < {cfg.grad_tol:g}; eigenvalues with |λ| ≤ {cfg.eig_tol:g}·max|λ| count as zero."))
    rep.results(count_rows, ["class", "trials", "share", "lowest loss", "highest loss", "mean minimum ratio"], note=(
        f"{len(critical)} of {len(trials)} trials reached a critical point; "
        f"{counts.get(LOCAL_MINIMUM, 0)} of them a strict local minimum. "
        f"{sum(t['grad_norm'] < 1e-8 for t in critical)} of the critical points have ||∇L|| < 1e-8 (critical up to "
        f"rounding); the others are approximate critical points (||∇L|| < {cfg.grad_tol:g}, like the lecture's "
        "study), where the sign of eigenvalues much smaller than ||∇L|| is less certain."))
    rep.figure("Minimum ratio vs training loss", "minimum_ratio_vs_loss.png", note=(
        "The lecture's plot: each point is one trained network; x = minimum ratio, y = training loss. "
        "Points left of 1.0 still have directions in which the loss goes down."))
    rep.figure("Hessian spectra", "hessian_spectra.png")
    rep.section("Escaping a saddle point", (
        "At a saddle θ* with eigenvalue λ < 0 and unit eigenvector u, L(θ* + t·u) ≈ L(θ*) + ½λt² < L(θ*) for both "
        "signs of t; the step t is the lowest-loss point of the slice (a line search along ±u). The zero-weight point "
        "(all weights 0, output bias = mean target) has gradient exactly 0: gradient descent started there never "
        "moves, while one step along u lets it train. "
        + ("The second row starts from the lowest-loss saddle the trials found." if len(escapes) > 1 else
           "No trial ended at a saddle, so only the constructed one is shown.")),
        markdown_table(["saddle", "class", "‖∇L‖", "λ_min", "# λ<0", "loss at θ*", "step t", "loss at θ*+t·u", "½λt²",
                        f"loss after {cfg.escape_gd_steps} GD steps from θ*", "... from θ*+step·u"],
                       [[e["label"], e["kind"], f"{e['grad_norm']:.1e}", e["lambda_min"], e["n_negative"], e["loss"],
                         e["escape_step"], e["loss_after_step"], e["predicted_change"], e["gd_from_saddle"][-1],
                         e["gd_from_escaped"][-1]] for e in escapes]),
        markdown_image("saddle escape", "saddle_escape.png"))
    rep.table("Every trial", ["trial", "GD steps", "loss after GD", "‖∇L‖ after GD", "search its", "loss", "‖∇L‖",
                              "class", "min ratio", "# λ<0", "# λ≈0", "λ_min", "λ_max"],
              [[t["trial"], t["gd_steps"], t["loss_after_gd"], f"{t['grad_norm_after_gd']:.1e}", t["search_iterations"],
                t["loss"], f"{t['grad_norm']:.1e}", t["kind"], t["min_ratio"], t["n_negative"], t["n_zero"],
                f"{t['lambda_min']:.2e}", t["lambda_max"]] for t in trials], note=f"Run time: {results['time_s']:.0f} s.")
    return rep.write(eval_row=lambda e: {"data": e.get("data"), "points": e.get("points"),
                                         "classes agree": e.get("classes_agree"),
                                         "max eigenvalue difference": e.get("max_eigenvalue_difference"),
                                         **{k: v for k, v in e.get("counts", {}).items()}})


LAB = Lab(name=NAME, default_dataset=DATASET, metric="share of critical points that are local minima",
            summary="Hessian eigenvalues at the critical points of small trained MLPs: minimum ratio vs loss, saddle escape",
            source="ML2021 類神經網路訓練不起來怎麼辦 (一): local minima and saddle points",
            config_cls=CriticalPointsConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
