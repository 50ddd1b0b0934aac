"""Lab ``generalization``: how often a sampled training set is bad, against |H| * 2 exp(-2 N eps^2).

Source: ML2022 "why more parameters overfit" (为什么用了验证集结果还是过拟合 / 鱼与熊掌兼得): for a finite
hypothesis class H and a training set D_train of N examples drawn from D_all, D_train is *bad* when
some h in H has ``|L(h, D_train) - L(h, D_all)| > eps``; Hoeffding's inequality and the union bound
give ``P(bad) <= |H| * 2 exp(-2 N eps^2)``. More data (N) or a smaller class (|H|) make bad
training sets rare; a small class may however contain no good hypothesis (鱼与熊掌).

Data: seattle-weather (Seattle's daily weather 2012-2015, 1,461 days, shipped with the pip package
``vega_datasets``, so offline). Task: did it rain that day (precipitation > 0, 43% of days), predicted from one
precipitation-free feature (default the day's maximum temperature). It is a real, noisy 1-D problem: the best
threshold still errs on about 30% of the days and the error rate changes slowly with the threshold, which is
where the gap between training and real loss matters (sklearn's digits, in contrast, give near-perfect
separable thresholds for easy pairs, so every training set would look good).

The class: thresholds ``h_t(x) = 1[x > t]`` and the flipped ``1[x <= t]`` on a grid of |H|/2
thresholds over the feature's range. For each N and |H|, ``--trials`` training sets are drawn with
replacement from D_all (i.i.d., as the bound assumes); the same training sets serve every |H|
(:mod:`deepnotes.analysis.generalization`).

Files it leaves in the run folder (beside config.json):
    results.json            per (|H|, N): share of bad D_train, its standard error, the bound,
                            and the training-optimal hypothesis' gaps; per |H|: distinct behaviours
    report.md + *.png       the report
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepnotes.analysis.generalization import above_bound, bad_training_sets, plot_bad_share, plot_erm_gap, plot_threshold_losses
from deepnotes.data.tabular import SEATTLE_WEATHER, load_seattle_weather
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunConfig, RunContext, option

NAME = "generalization"
FEATURES = ("temp_max", "temp_min", "wind")


@dataclass(frozen=True)
class GeneralizationConfig(RunConfig):
    feature: Literal["temp_max", "temp_min", "wind"] = option(
        "temp_max", "seattle-weather column the thresholds act on (label: precipitation > 0)")
    sizes: tuple[int, ...] = option((10, 20, 50, 100, 200, 500, 1000), "training-set sizes N (comma-separated)",
                                    range="[1, 10000000]", nonempty=True)
    hypotheses: tuple[int, ...] = option((2, 10, 50, 250, 1250), "class sizes |H| (even: |H|/2 thresholds x 2 signs; "
                                         "comma-separated)", range="[2, 10000000]", nonempty=True)
    eps: float = option(0.1, "tolerance: D_train is bad when some h has |L(h, D_train) - L(h, D_all)| > eps", range="(0, 1)")
    trials: int = option(1000, "training sets sampled per N", range="[1, 10000000]")
    delta: float = option(0.05, "failure probability for the plotted eps(N) = sqrt(ln(2|H|/delta) / (2N))", range="(0, 1)")
    device: Literal["auto", "cpu", "cuda"] = option("cpu", "where the matrix products run (the CPU is enough)")

    def check(self) -> None:
        odd = [h for h in self.hypotheses if h % 2]
        if odd:
            raise UserError(f"--hypotheses must be even numbers (two signs per threshold), e.g. 2,10,50; got {odd[0]}")


PRESETS: dict[str, dict[str, Any]] = {"fast": {"sizes": (10, 100, 500), "hypotheses": (2, 10, 50), "trials": 200}}


def load_data(feature: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Seattle weather: x (n,) float64 the feature, y (n,) int64 1 if precipitation > 0; and a source line.

    Raises:
        UserError: vega_datasets is not installed, or ``feature`` is not a column.
    """
    if feature not in FEATURES:
        raise UserError(f"--feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    d = load_seattle_weather()
    import vega_datasets

    x = torch.tensor(d[feature].to_numpy(), dtype=torch.float64)
    y = torch.tensor((d["precipitation"] > 0).to_numpy()).long()
    return x, y, f"vega_datasets {vega_datasets.__version__} seattle_weather() (NOAA, Seattle daily weather 2012-2015)"


def run(cfg: GeneralizationConfig, ctx: RunContext) -> dict[str, Any]:
    """Sample the training sets, measure, write ``results.json`` and the report."""
    x, y, source = load_data(cfg.feature)
    ctx.log(f"seattle-weather: {len(y)} days, rain on {100 * float(y.float().mean()):.1f}%, feature {cfg.feature}; "
            f"{cfg.trials} training sets per N")
    out = bad_training_sets(x, y, cfg.hypotheses, cfg.sizes, cfg.trials, cfg.eps, cfg.seed, ctx.device)
    out.update(source=source, n_all=len(y), positive_share=float(y.float().mean()), feature=cfg.feature)
    Run(ctx.run_dir).write_json("results.json", out)
    for c in out["cells"]:
        if c["n"] == max(cfg.sizes):
            ctx.log(f"|H|={c['hypotheses']}, N={c['n']}: P(bad) {c['bad_share']:.4f}, bound {c['bound']:.3g}, "
                    f"mean gap of h_train {c['gap_mean']:.4f}")
    ctx.log(f"report: {report(Run(ctx.run_dir))}")
    return out


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
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
    cfg = run.config
    feature = data or cfg.feature
    x, y, source = load_data(feature)
    cells = bad_training_sets(x, y, cfg.hypotheses, cfg.sizes, cfg.trials, cfg.eps, cfg.seed + 1, device)["cells"]
    metrics: dict[str, Any] = {"feature": feature, "source": source, "trials": cfg.trials,
                               "violations": sum(above_bound(c, cfg.trials) for c in cells), "cells": cells}
    if feature == cfg.feature:
        old = run.read_json("results.json")["cells"]
        metrics["max_abs_diff"] = max(abs(a["bad_share"] - b["bad_share"]) for a, b in zip(old, cells))
    run.write_eval(feature, metrics)
    return metrics


def report(run: Run) -> Path:
    """Render ``report.md``, ``bad_share.png``, ``erm_gap.png`` and ``data.png``; return the report's path."""
    run = run if isinstance(run, Run) else Run(run)
    cfg, results = run.config, run.read_json("results.json")
    cells, classes = results["cells"], results["classes"]
    plot_bad_share(cells, cfg.hypotheses, cfg.sizes, cfg.eps, cfg.trials, run / "bad_share.png")
    plot_erm_gap(cells, cfg.hypotheses, cfg.sizes, cfg.delta, run / "erm_gap.png")
    x, y, _ = load_data(cfg.feature)
    plot_threshold_losses(x, y, cfg.feature, max(cfg.hypotheses), min(c["best_all_loss"] for c in classes),
                          run / "data.png")

    over = [c for c in cells if above_bound(c, cfg.trials)]
    big_n, small_n, mid_n = max(cfg.sizes), min(cfg.sizes), sorted(cfg.sizes)[len(cfg.sizes) // 2]
    small_h, big_h = min(cfg.hypotheses), max(cfg.hypotheses)
    cell = {(c["hypotheses"], c["n"]): c for c in cells}
    below_one = [c for c in cells if c["bound"] < 1]
    if below_one:
        tight = max(below_one, key=lambda c: c["bad_share"] / c["bound"])
        tightest = (f"; where the bound is below 1, the measured share is at most {tight['bad_share'] / tight['bound']:.3g} "
                    f"of it (|H|={tight['hypotheses']}, N={tight['n']}: {tight['bad_share']:.4f} vs {tight['bound']:.3g})")
    else:
        tightest = "; the bound is 1 (vacuous) in every cell: increase --sizes or --eps"
    first, last = classes[0], classes[-1]

    def verdict(holds: bool, yes: str = "holds here", no: str = "does not hold here") -> str:
        return yes if holds else no

    claims = [
        ["P(bad D_train) <= |H| 2 exp(-2 N eps^2)",
         f"{len(over)} of {len(cells)} cells above the bound beyond 3 standard errors{tightest}", verdict(not over)],
        ["larger N: fewer bad training sets",
         f"|H|={big_h}: {cell[(big_h, small_n)]['bad_share']:.3f} at N={small_n} vs "
         f"{cell[(big_h, big_n)]['bad_share']:.4f} at N={big_n}",
         verdict(cell[(big_h, big_n)]["bad_share"] <= cell[(big_h, small_n)]["bad_share"])],
        ["larger |H|: more bad training sets",
         f"N={mid_n}: {cell[(small_h, mid_n)]['bad_share']:.4f} at |H|={small_h} vs "
         f"{cell[(big_h, mid_n)]['bad_share']:.4f} at |H|={big_h}",
         verdict(cell[(big_h, mid_n)]["bad_share"] >= cell[(small_h, mid_n)]["bad_share"])],
        ["but a small |H| may hold no good h (鱼与熊掌)",
         f"best L(h, D_all): {first['best_all_loss']:.4f} at |H|={first['hypotheses']} vs "
         f"{last['best_all_loss']:.4f} at |H|={last['hypotheses']}",
         verdict(first["best_all_loss"] > last["best_all_loss"],
                 f"holds here, by {100 * (first['best_all_loss'] - last['best_all_loss']):.1f} points", "not on this feature")],
    ]
    rep = Report(run, f"{NAME}: bad training sets of a finite hypothesis class ({cfg.feature} -> rain, Seattle)", intro=(
        "ML2022, why more parameters overfit (为什么用了验证集结果还是过拟合 / 鱼与熊掌兼得). "
        f"D_all: {results['source']}, {results['n_all']} days, rain (precipitation > 0) on "
        f"{100 * results['positive_share']:.1f}% of them. H: the thresholds h(x) = 1[x > t] and 1[x <= t] on "
        f"{cfg.feature}, |H|/2 thresholds evenly spaced over its range. For each N, {cfg.trials} training sets "
        "D_train are drawn i.i.d. (with replacement) from D_all, the same ones for every |H|. "
        f"D_train is bad when some h in H has |L(h, D_train) - L(h, D_all)| > eps = {cfg.eps:g} (L: error rate)."))
    rep.results(claims, ["claim", "this run", "verdict"], note=(
        "The lecture's claims beside this run. The bound is loose here for two reasons the plots make visible: the "
        "union bound counts every h, but on D_all the class has far fewer distinct behaviours (table below: the "
        "feature takes few distinct values, and the flipped h deviates exactly as much as its twin); and the "
        "deviations of nearby thresholds are strongly correlated, so they are bad together rather than one after another."))
    rep.figure("Share of bad training sets vs the bound", "bad_share.png")
    rep.table("The hypothesis classes", ["|H|", "thresholds", "distinct behaviours on D_all", "best L(h, D_all)",
                                         "best h (sign, t)"],
              [[c["hypotheses"], c["thresholds"], c["distinct_behaviours"], f"{c['best_all_loss']:.4f}",
                f"{c['best_all_sign']} at {c['best_all_threshold']:.2f}"] for c in classes])
    rep.figure("Feature histogram and loss landscape", "data.png")
    rep.figure("The training-optimal hypothesis", "erm_gap.png", alt="gap of the training-optimal hypothesis", note=(
        "h_train = argmin over H of L(h, D_train). Left: how much worse it is on D_all than it looked on D_train "
        "(the gap that a validation/test set reveals); right: how much worse it is than h_all, the best h on D_all. "
        "When D_train is good, the excess is at most 2 eps."))
    rep.table("All cells", ["|H|", "N", "P(bad) ± s.e.", "bound", "mean sup gap", "L(h_train, D_train)",
                            "L(h_train, D_all)", "gap", "excess over h_all"],
              [[c["hypotheses"], c["n"], f"{c['bad_share']:.4f} ± {c['bad_stderr']:.4f}", f"{c['bound']:.3g}",
                f"{c['sup_gap_mean']:.4f}", f"{c['erm_train_mean']:.4f}", f"{c['erm_all_mean']:.4f}",
                f"{c['gap_mean']:.4f}", f"{c['excess_mean']:.4f}"] for c in cells])
    return rep.write(eval_row=lambda e: {
        "feature (fresh training sets, seed + 1)": e.get("feature"), "trials": e.get("trials"),
        "cells above the bound": e.get("violations"),
        "max |share - run's share|": f"{e['max_abs_diff']:.4f}" if "max_abs_diff" in e else ""})


LAB = Lab(name=NAME, default_dataset=SEATTLE_WEATHER.name, metric="P(D_train bad) vs |H| 2 exp(-2 N eps^2)",
            summary="share of bad training sets of a finite threshold class vs the Hoeffding + union bound, for several N and |H|",
            source="ML2022, why more parameters overfit (鱼与熊掌兼得)",
            config_cls=GeneralizationConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
