"""Lab ``generalization``: how often a sampled training set is bad, against |H| * 2 exp(-2 N eps^2).

Source: ML2022 "why more parameters overfit" (为什么用了验证集结果还是过拟合 / 鱼与熊掌兼得): for a finite
hypothesis class H and a training set D_train of N examples drawn from D_all, D_train is *bad* when
some h in H has ``|L(h, D_train) - L(h, D_all)| > eps``; Hoeffding's inequality and the union bound
give ``P(bad) <= |H| * 2 exp(-2 N eps^2)``. More data (N) or a smaller class (|H|) make bad
training sets rare; a small class may however contain no good hypothesis (鱼与熊掌).

Data: Seattle's daily weather 2012-2015 (``vega_datasets.local_data.seattle_weather()``, 1,461
days, shipped with the pip package, so offline). Task: did it rain that day (precipitation > 0,
43% of days), predicted from one precipitation-free feature (default the day's maximum
temperature). It is a real, noisy 1-D problem: the best threshold still errs on about 30% of the
days and the error rate changes slowly with the threshold, which is where the gap between
training and real loss matters (sklearn's digits, in contrast, give near-perfect separable
thresholds for easy pairs, so every training set would look good).

The class: thresholds ``h_t(x) = 1[x > t]`` and the flipped ``1[x <= t]`` on a grid of |H|/2
thresholds over the feature's range (:mod:`deepnotes.analysis.generalization`). For each N and
|H|, ``--trials`` training sets are drawn with replacement from D_all (i.i.d., as the bound
assumes); the same training sets serve every |H|.

Files it leaves in the run folder (beside config.json):
    results.json            per (|H|, N): share of bad D_train, its standard error, the bound,
                            and the training-optimal hypothesis' gaps; per |H|: distinct behaviours
    report.md + *.png       the report
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepnotes.analysis.generalization import (
    bad_probability_stderr,
    hoeffding_union_bound,
    sample_counts,
    simulate,
    threshold_grid,
    threshold_losses,
)
from deepnotes.errors import UserError
from deepnotes.io import write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, read_run_json
from deepnotes.report import markdown_image, markdown_table, new_figure, save_figure
from deepnotes.train.config import option

NAME = "generalization"
FEATURES = ("temp_max", "temp_min", "wind")


@dataclass(frozen=True)
class GeneralizationConfig:
    feature: Literal["temp_max", "temp_min", "wind"] = option(
        "temp_max", "seattle-weather column the thresholds act on (label: precipitation > 0)")
    sizes: tuple[int, ...] = option((10, 20, 50, 100, 200, 500, 1000), "training-set sizes N (comma-separated)")
    hypotheses: tuple[int, ...] = option((2, 10, 50, 250, 1250),
                                         "class sizes |H| (even: |H|/2 thresholds x 2 signs; comma-separated)")
    eps: float = option(0.1, "tolerance: D_train is bad when some h has |L(h, D_train) - L(h, D_all)| > eps")
    trials: int = option(1000, "training sets sampled per N")
    delta: float = option(0.05, "failure probability for the plotted eps(N) = sqrt(ln(2|H|/delta) / (2N))")
    seed: int = option(0, "random seed of the sampled training sets")
    device: Literal["auto", "cpu", "cuda"] = option("cpu", "where the matrix products run (the CPU is enough)")
    progress: bool = option(True, "(no progress bar here; accepted for symmetry with the training labs)")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"sizes": (10, 100, 500), "hypotheses": (2, 10, 50), "trials": 200},
}


# ----------------------------------------------------------------------------------- data
def load_data(feature: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Seattle weather: x (n,) float64 the feature, y (n,) int64 1 if precipitation > 0; and a source line.

    Raises:
        UserError: vega_datasets is not installed, or ``feature`` is not a column.
    """
    if feature not in FEATURES:
        raise UserError(f"--feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    try:
        import vega_datasets
        from vega_datasets import local_data
    except ImportError as e:
        raise UserError("the generalization lab needs the pip package vega_datasets: pip install vega_datasets") from e
    d = local_data.seattle_weather()
    x = torch.tensor(d[feature].to_numpy(), dtype=torch.float64)
    y = torch.tensor((d["precipitation"] > 0).to_numpy()).long()
    return x, y, f"vega_datasets {vega_datasets.__version__} seattle_weather() (NOAA, Seattle daily weather 2012-2015)"


def _validate(cfg: GeneralizationConfig) -> None:
    if not cfg.sizes or any(n < 1 for n in cfg.sizes):
        raise UserError("--sizes must be positive training-set sizes, e.g. 10,100,1000")
    if not cfg.hypotheses or any(h < 2 or h % 2 for h in cfg.hypotheses):
        raise UserError("--hypotheses must be even numbers >= 2 (two signs per threshold), e.g. 2,10,50")
    if not 0 < cfg.eps < 1:
        raise UserError("--eps must be in (0, 1), e.g. 0.1")
    if cfg.trials < 1:
        raise UserError("--trials must be >= 1")
    if not 0 < cfg.delta < 1:
        raise UserError("--delta must be in (0, 1), e.g. 0.05")


# ----------------------------------------------------------------------------------- experiment
def experiment(cfg: GeneralizationConfig, x: torch.Tensor, y: torch.Tensor, seed: int, device: torch.device) -> dict[str, Any]:
    """Share of bad training sets and the training-optimal hypothesis' gaps for every (|H|, N).

    Returns:
        ``{"classes": [...per |H|...], "cells": [...per (|H|, N)...]}``, JSON-ready.
    """
    g = torch.Generator().manual_seed(seed)
    n_all = len(y)
    losses = {}
    classes = []
    for h in cfg.hypotheses:
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
    for n in cfg.sizes:
        counts = sample_counts(n_all, n, cfg.trials, g).to(device)  # the same D_train for every |H|
        for h in cfg.hypotheses:
            res = simulate(losses[h], counts)
            p = res.bad_share(cfg.eps)
            gap = (res.erm_all - res.erm_train).cpu().numpy()  # L(h_train, D_all) - L(h_train, D_train)
            excess = (res.erm_all - res.best_all).cpu().numpy()  # L(h_train, D_all) - L(h_all, D_all)
            cells.append({
                "hypotheses": h, "n": n, "bad_share": p, "bad_stderr": bad_probability_stderr(p, cfg.trials),
                "bound": float(hoeffding_union_bound(h, n, cfg.eps)),
                "sup_gap_mean": float(res.sup_gap.mean()),
                "gap_mean": float(gap.mean()), "gap_p10": float(np.percentile(gap, 10)),
                "gap_p90": float(np.percentile(gap, 90)),
                "excess_mean": float(excess.mean()), "excess_p90": float(np.percentile(excess, 90)),
                "excess_over_2eps": float((excess > 2 * cfg.eps).mean()),
                "erm_train_mean": float(res.erm_train.mean()), "erm_all_mean": float(res.erm_all.mean()),
            })
    return {"classes": classes, "cells": cells}


def run(cfg: GeneralizationConfig, ctx: RunContext) -> dict[str, Any]:
    """Sample the training sets, measure, write ``results.json`` and the report."""
    _validate(cfg)
    x, y, source = load_data(cfg.feature)
    ctx.log(f"seattle-weather: {len(y)} days, rain on {100 * float(y.float().mean()):.1f}%, feature {cfg.feature}; "
            f"{cfg.trials} training sets per N")
    out = experiment(cfg, x, y, cfg.seed, ctx.device)
    out.update(source=source, n_all=len(y), positive_share=float(y.float().mean()), feature=cfg.feature)
    write_json_atomic(ctx.run_dir / "results.json", out)
    for c in out["cells"]:
        if c["n"] == max(cfg.sizes):
            ctx.log(f"|H|={c['hypotheses']}, N={c['n']}: P(bad) {c['bad_share']:.4f}, bound {c['bound']:.3g}, "
                    f"mean gap of h_train {c['gap_mean']:.4f}")
    path = report(ctx.run_dir)
    ctx.log(f"report: {path}")
    return out


# ----------------------------------------------------------------------------------- evaluate
def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: repeat the experiment with fresh training sets (seed + 1), on the run's feature or another.

    Args:
        data: None (the run's feature) or another feature name (temp_max, temp_min, wind).
    Returns:
        ``{"feature", "cells", "violations", "max_abs_diff"}``: the new cells; how many cells have a
        share above the bound by more than 3 standard errors (expected 0); and, for the run's own
        feature, the largest difference from the run's shares (Monte-Carlo noise). Also saved as
        ``eval/<feature>.json``.
    Raises:
        UserError: not a run folder of this lab, or an unknown feature.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    feature = data or cfg.feature
    x, y, source = load_data(feature)
    out = experiment(cfg, x, y, cfg.seed + 1, device)
    cells = out["cells"]
    violations = sum(c["bad_share"] > c["bound"] + 3 * bad_probability_stderr(c["bound"], cfg.trials) + 1 / cfg.trials
                     for c in cells)
    metrics: dict[str, Any] = {"feature": feature, "source": source, "trials": cfg.trials, "violations": violations,
                               "cells": cells}
    if feature == cfg.feature:
        old = read_run_json(run_dir / "results.json")["cells"]
        metrics["max_abs_diff"] = max(abs(a["bad_share"] - b["bad_share"]) for a, b in zip(old, cells))
    write_json_atomic(run_dir / "eval" / f"{feature}.json", metrics)
    return metrics


# ----------------------------------------------------------------------------------- report
def _colors(hs):
    cmap = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    return {h: cmap[i % len(cmap)] for i, h in enumerate(hs)}


def plot_bad_share(cfg: GeneralizationConfig, cells: list[dict], path: Path) -> None:
    """One panel per |H|: the measured P(bad) (dots, +-2 standard errors) and the bound (line), log y."""
    hs = list(cfg.hypotheses)
    cols = min(3, len(hs) + 1)
    rows = math.ceil((len(hs) + 1) / cols)
    fig = new_figure(4.6 * cols, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    floor = 0.3 / cfg.trials
    n_grid = np.unique(np.geomspace(min(cfg.sizes), max(cfg.sizes), 200).round())
    colors = _colors(hs)
    for ax, h in zip(axes, hs):
        cs = [c for c in cells if c["hypotheses"] == h]
        ns = np.array([c["n"] for c in cs])
        p = np.array([c["bad_share"] for c in cs])
        se = np.array([c["bad_stderr"] for c in cs])
        ax.plot(n_grid, hoeffding_union_bound(h, torch.tensor(n_grid), cfg.eps).numpy(), color="black",
                label=r"bound min(1, |H| 2 exp(-2 N $\epsilon^2$))")
        pos = p > 0
        ax.errorbar(ns[pos], p[pos], yerr=2 * se[pos], fmt="o", color=colors[h], capsize=3, label="measured P(bad)")
        if (~pos).any():
            ax.plot(ns[~pos], np.full((~pos).sum(), floor), "v", color=colors[h], mfc="white",
                    label=f"no bad set in {cfg.trials}")
        ax.set(xscale="log", yscale="log", ylim=(floor / 2, 2), xlabel="training-set size N",
               ylabel="P(D_train is bad)", title=f"|H| = {h}")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower left")
    ax = axes[len(hs)]
    for h in hs:
        cs = [c for c in cells if c["hypotheses"] == h]
        ax.plot([c["n"] for c in cs], [max(c["bad_share"], floor) for c in cs], "o-", color=colors[h], label=f"|H|={h}")
    ax.set(xscale="log", yscale="log", ylim=(floor / 2, 2), xlabel="training-set size N", ylabel="measured P(bad)",
           title=f"all classes, eps = {cfg.eps:g}")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    for ax in axes[len(hs) + 1:]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path)


def plot_erm_gap(cfg: GeneralizationConfig, cells: list[dict], path: Path) -> None:
    """The training-optimal h's gap L(h, D_all) - L(h, D_train) and its excess loss over h_all, vs N."""
    hs = list(cfg.hypotheses)
    colors = _colors(hs)
    fig = new_figure(11, 4)
    ax_gap, ax_ex = fig.subplots(1, 2)
    n_grid = np.geomspace(min(cfg.sizes), max(cfg.sizes), 100)
    for h in hs:
        cs = [c for c in cells if c["hypotheses"] == h]
        ns = [c["n"] for c in cs]
        ax_gap.plot(ns, [c["gap_mean"] for c in cs], "o-", color=colors[h], label=f"|H|={h}: mean gap")
        ax_gap.fill_between(ns, [c["gap_p10"] for c in cs], [c["gap_p90"] for c in cs], color=colors[h], alpha=0.12)
        ax_gap.plot(n_grid, np.sqrt(np.log(2 * h / cfg.delta) / (2 * n_grid)), ":", color=colors[h])
        ax_ex.plot(ns, [c["excess_mean"] for c in cs], "o-", color=colors[h], label=f"|H|={h}: mean")
        ax_ex.plot(ns, [c["excess_p90"] for c in cs], "^--", color=colors[h], alpha=0.6)
    ax_gap.set(xscale="log", xlabel="training-set size N", ylabel="L(h_train, D_all) - L(h_train, D_train)",
               title="gap of the training-optimal h (band: 10-90%)\n"
                     rf"dotted: $\epsilon(N)$ that the bound guarantees with prob. {1 - cfg.delta:g}")
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


def plot_data(cfg: GeneralizationConfig, results: dict, path: Path) -> None:
    """The feature's histogram per class, and L(h, D_all) of the + and - threshold hypotheses."""
    x, y, _ = load_data(cfg.feature)
    x, y = x.numpy(), y.numpy()
    fig = new_figure(11, 3.8)
    ax_h, ax_l = fig.subplots(1, 2)
    bins = np.linspace(x.min(), x.max(), 40)
    ax_h.hist(x[y == 0], bins=bins, alpha=0.6, label=f"dry ({(y == 0).sum()} days)", color="tab:orange")
    ax_h.hist(x[y == 1], bins=bins, alpha=0.6, label=f"rain ({(y == 1).sum()} days)", color="tab:blue")
    ax_h.set(xlabel=cfg.feature, ylabel="days", title=f"D_all: Seattle 2012-2015, {cfg.feature} by label")
    ax_h.legend(fontsize=8)
    t = threshold_grid(torch.tensor(x), max(cfg.hypotheses))
    l_all = threshold_losses(torch.tensor(x), torch.tensor(y), t).double().mean(0).numpy()
    k = len(t)
    ax_l.plot(t.numpy(), l_all[:k], label="h(x) = 1[x > t]  (rain when warm)")
    ax_l.plot(t.numpy(), l_all[k:], label="h(x) = 1[x <= t]  (rain when cold)")
    best = min(results["classes"], key=lambda c: c["best_all_loss"])
    ax_l.axhline(best["best_all_loss"], color="gray", ls=":", lw=1)
    ax_l.set(xlabel="threshold t", ylabel="L(h, D_all) (error rate)",
             title=f"loss landscape of the class; best {best['best_all_loss']:.3f}")
    ax_l.grid(True, alpha=0.3)
    ax_l.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def report(run_dir: Path) -> Path:
    """Render ``report.md``, ``bad_share.png``, ``erm_gap.png`` and ``data.png``; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    results = read_run_json(run_dir / "results.json")
    cells = results["cells"]
    plot_bad_share(cfg, cells, run_dir / "bad_share.png")
    plot_erm_gap(cfg, cells, run_dir / "erm_gap.png")
    plot_data(cfg, results, run_dir / "data.png")

    over = [c for c in cells if c["bad_share"] > c["bound"] + 3 * bad_probability_stderr(c["bound"], cfg.trials)
            + 1 / cfg.trials]
    table = [[c["hypotheses"], c["n"], f"{c['bad_share']:.4f} ± {c['bad_stderr']:.4f}", f"{c['bound']:.3g}",
              f"{c['sup_gap_mean']:.4f}", f"{c['erm_train_mean']:.4f}", f"{c['erm_all_mean']:.4f}",
              f"{c['gap_mean']:.4f}", f"{c['excess_mean']:.4f}"] for c in cells]
    class_rows = [[c["hypotheses"], c["thresholds"], c["distinct_behaviours"], f"{c['best_all_loss']:.4f}",
                   f"{c['best_all_sign']} at {c['best_all_threshold']:.2f}"] for c in results["classes"]]
    big_n = max(cfg.sizes)
    small_h, big_h = min(cfg.hypotheses), max(cfg.hypotheses)
    cell = {(c["hypotheses"], c["n"]): c for c in cells}
    mid_n = sorted(cfg.sizes)[len(cfg.sizes) // 2]
    below_one = [c for c in cells if c["bound"] < 1]
    if below_one:
        tight = max(below_one, key=lambda c: c["bad_share"] / c["bound"])
        tightest = (f"; where the bound is below 1, the measured share is at most {tight['bad_share'] / tight['bound']:.3g} "
                    f"of it (|H|={tight['hypotheses']}, N={tight['n']}: {tight['bad_share']:.4f} vs {tight['bound']:.3g})")
    else:
        tightest = "; the bound is 1 (vacuous) in every cell: increase --sizes or --eps"
    first, last = results["classes"][0], results["classes"][-1]
    claims = [
        ["P(bad D_train) <= |H| 2 exp(-2 N eps^2)",
         f"{len(over)} of {len(cells)} cells above the bound beyond 3 standard errors{tightest}",
         "holds here" if not over else "does not hold here"],
        ["larger N: fewer bad training sets",
         f"|H|={big_h}: {cell[(big_h, min(cfg.sizes))]['bad_share']:.3f} at N={min(cfg.sizes)} vs "
         f"{cell[(big_h, big_n)]['bad_share']:.4f} at N={big_n}",
         "holds here" if cell[(big_h, big_n)]["bad_share"] <= cell[(big_h, min(cfg.sizes))]["bad_share"] else "does not hold here"],
        ["larger |H|: more bad training sets",
         f"N={mid_n}: {cell[(small_h, mid_n)]['bad_share']:.4f} at |H|={small_h} vs "
         f"{cell[(big_h, mid_n)]['bad_share']:.4f} at |H|={big_h}",
         "holds here" if cell[(big_h, mid_n)]["bad_share"] >= cell[(small_h, mid_n)]["bad_share"] else "does not hold here"],
        ["but a small |H| may hold no good h (鱼与熊掌)",
         f"best L(h, D_all): {first['best_all_loss']:.4f} at |H|={first['hypotheses']} vs "
         f"{last['best_all_loss']:.4f} at |H|={last['hypotheses']}",
         f"holds here, by {100 * (first['best_all_loss'] - last['best_all_loss']):.1f} points"
         if first["best_all_loss"] > last["best_all_loss"] else "not on this feature"],
    ]
    lines = [
        f"# {NAME}: bad training sets of a finite hypothesis class ({cfg.feature} -> rain, Seattle)",
        "",
        "ML2022, why more parameters overfit (为什么用了验证集结果还是过拟合 / 鱼与熊掌兼得). "
        f"D_all: {results['source']}, {results['n_all']} days, rain (precipitation > 0) on "
        f"{100 * results['positive_share']:.1f}% of them. H: the thresholds h(x) = 1[x > t] and 1[x <= t] on "
        f"{cfg.feature}, |H|/2 thresholds evenly spaced over its range. For each N, {cfg.trials} training sets "
        "D_train are drawn i.i.d. (with replacement) from D_all, the same ones for every |H|. "
        f"D_train is bad when some h in H has |L(h, D_train) - L(h, D_all)| > eps = {cfg.eps:g} (L: error rate).",
        "",
        "## The lecture's claims beside this run",
        "",
        markdown_table(["claim", "this run", "verdict"], claims),
        "",
        "The bound is loose here for two reasons the plots make visible: the union bound counts every h, but "
        "on D_all the class has far fewer distinct behaviours (table below: the feature takes few distinct values, "
        "and the flipped h deviates exactly as much as its twin); and the deviations of nearby thresholds "
        "are strongly correlated, so they are bad together rather than one after another.",
        "",
        markdown_image("share of bad training sets vs the bound", "bad_share.png"),
        "",
        "## The hypothesis classes",
        "",
        markdown_table(["|H|", "thresholds", "distinct behaviours on D_all", "best L(h, D_all)", "best h (sign, t)"],
                       class_rows),
        "",
        markdown_image("feature histogram and loss landscape", "data.png"),
        "",
        "## The training-optimal hypothesis",
        "",
        "h_train = argmin over H of L(h, D_train). Left: how much worse it is on D_all than it looked on D_train "
        "(the gap that a validation/test set reveals); right: how much worse it is than h_all, the best h on D_all. "
        "When D_train is good, the excess is at most 2 eps.",
        "",
        markdown_image("gap of the training-optimal hypothesis", "erm_gap.png"),
        "",
        "## All cells",
        "",
        markdown_table(["|H|", "N", "P(bad) ± s.e.", "bound", "mean sup gap", "L(h_train, D_train)",
                        "L(h_train, D_all)", "gap", "excess over h_all"], table),
        "",
    ]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        ev_rows = []
        for p in evals:
            e = json.loads(p.read_text())
            ev_rows.append([e["feature"], e["trials"], e["violations"],
                            f"{e['max_abs_diff']:.4f}" if "max_abs_diff" in e else ""])
        lines += ["## `deepnotes eval` results (fresh training sets, seed + 1)", "",
                  markdown_table(["feature", "trials", "cells above the bound", "max |share - run's share|"], ev_rows), ""]
    config_rows = [[k, v] for k, v in json.loads((run_dir / "config.json").read_text())["config"].items()]
    lines += ["## Configuration", "", markdown_table(["field", "value"], config_rows), ""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="share of bad training sets of a finite threshold class vs the Hoeffding + union bound, for several N and |H|",
    source="ML2022, why more parameters overfit (鱼与熊掌兼得)",
    default_dataset="seattle-weather (vega_datasets)",
    metric="P(D_train bad) vs |H| 2 exp(-2 N eps^2)",
    config_cls=GeneralizationConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
