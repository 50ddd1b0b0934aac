"""Lab ``regression``: predict tomorrow from the past days (ML2021 lecture 1; HW1 COVID-19 cases).

Default data: seattle-weather (1,461 real days) arranged like HW1: the features of 4 past days plus day 5's
features except the target -> day 5's target (``temp_max`` by default), split by date 70/10/20%. With
``--data covid.train.csv`` the lab reads HW1's own files instead (rows split at random, seeded) and writes
Kaggle's submission for ``covid.test.csv`` (:mod:`deepnotes.data.tabular`).

Models (:mod:`deepnotes.models.regression`: linear, sum of (hard) sigmoids, ReLU MLP), each trained by
``fit_regressor`` (the Trainer: MSE, optional L2, Adam or SGD, early stopping on the validation MSE) in a folder of
its own, are compared with *persistence* (tomorrow = today) and *least squares* on the test rows; ``ensemble`` is
the mean of their predictions. A width ladder of ReLU MLPs without early stopping shows overfitting as the model
grows. Models are chosen by validation MSE only (the cross-validation mean when ``--folds`` > 0;
:mod:`deepnotes.analysis.model_selection`).

Files it leaves in the run folder (beside config.json):
    data.json             data source, feature names, split sizes, standardization statistics
    model.safetensors     weights of every model (``<model>.<parameter>``) and the least-squares fit
    history.json          per-epoch train/valid MSE of each model and of the width ladder
    test_metrics.json     valid/test MSE (and cross-validation mean/std) of models and baselines
    predictions.csv       the test rows: true value and every model's prediction
    submission.csv        (HW1 data with a test file) Kaggle's ``id,tested_positive`` file
    models/, cv/fold-K/, ladder/   one folder per trained model (checkpoints: ``--resume`` continues a run)
    report.md + *.png     the report
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from deepnotes.analysis import model_selection as selection
from deepnotes.data import tabular
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunConfig, RunContext, option
from deepnotes.models.regression import (ENSEMBLE, LEAST_SQUARES, build_regressors, fit_regressor, predict_regressors,
                                         save_weights)
from deepnotes.models.registry import create_model
from deepnotes.report import markdown_image, markdown_table

NAME = "regression"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class RegressionConfig(RunConfig):
    data: str | None = option(None, "HW1 covid.train.csv, or a CSV in seattle-weather's format; default: seattle-weather")
    test_data: str | None = option(None, "HW1 covid.test.csv (default: covid.test.csv beside --data, if present)")
    target: Literal["temp_max", "temp_min", "precipitation", "wind"] = option("temp_max", "weather column to predict for day 5")
    days: int = option(5, "days per window: days-1 past days and the target day (HW1: 5)", range="[2, 10000]")
    split: tuple[float, ...] = option((0.7, 0.1, 0.2), "train,valid,test fractions (in date order for weather data)",
                                      range="(0, 1)")
    folds: int = option(5, "N-fold cross-validation on train+valid, folds contiguous in time (0 = off)", range="[0, 10000]")
    model: Literal["all", "linear", "sigmoids", "mlp"] = option("all", "model to train; all = linear, sum of sigmoids (soft and hard) and MLP")
    num_sigmoids: int = option(32, "sigmoids: number K of sigmoids in b + sum_i c_i sigmoid(b_i + w_i . x)", range="[1, 100000]")
    hard_sigmoid: bool = option(False, "sigmoids: use the hard sigmoid (piecewise linear) when --model sigmoids")
    width: int = option(64, "mlp: units per hidden layer", range="[1, 100000]")
    depth: int = option(2, "mlp: number of hidden ReLU layers", range="[0, 1000]")
    features: tuple[str, ...] = option((), "use only these features (comma-separated names, as in data.json); overrides --k-best")
    k_best: int = option(12, "use the k features most correlated with the target on the train rows (0 = all)", range="[0, 100000]")
    weight_decay: float = option(1e-3, "L2 regularization: lambda in MSE + lambda * sum ||W||^2 (target standardized)", range="[0, inf)")
    optimizer: Literal["adam", "sgd"] = option("adam", "optimizer")
    lr: float = option(1e-3, "learning rate", range="(0, inf)")
    momentum: float = option(0.9, "SGD momentum", range="[0, 1)")
    epochs: int = option(400, "maximum epochs per model", range="[1, 100000]")
    batch_size: int = option(64, "rows per update (0 = full batch)", range="[0, 100000000]")
    patience: int = option(40, "early stopping: stop after this many epochs without a better valid MSE (0 = off)", range="[0, 100000]")
    ladder_widths: tuple[int, ...] = option((1, 4, 16, 64, 256), "capacity ladder: MLP widths (comma-separated; empty = skip)", range="[1, 100000]")
    ladder_depth: int = option(3, "capacity ladder: hidden layers of each MLP", range="[1, 1000]")
    ladder_epochs: int = option(300, "capacity ladder: epochs, no early stopping, no L2", range="[1, 100000]")
    device: Literal["auto", "cpu", "cuda"] = option("cpu", "where to train (these models are small: cpu is fastest)")

    def check(self) -> None:
        if len(self.split) != 3 or abs(sum(self.split) - 1) > 1e-6:
            raise UserError(f"--split must be three positive fractions summing to 1, got {','.join(map(str, self.split))}")
        if self.folds == 1:
            raise UserError("--folds must be 0 (off) or >= 2, got 1")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline.
    "fast": {"epochs": 8, "patience": 5, "folds": 2, "ladder_widths": (2, 32), "ladder_epochs": 5,
             "num_sigmoids": 8, "width": 16},
}

HW1_BASELINES = [("simple (sample code)", 2.28), ("medium (feature selection)", 1.49),
                 ("strong (architecture, optimizer)", 1.06), ("boss (L2, more tuning)", 0.86)]


def model_specs(cfg: RegressionConfig) -> dict[str, dict[str, Any]]:
    """Name -> spec (``name`` = ``regression-<name>`` in the model registry, and its keyword arguments)."""
    sigmoids = {"name": "sigmoids", "num_sigmoids": cfg.num_sigmoids}
    specs = {"linear": {"name": "linear"}, "sigmoids": {**sigmoids, "hard_sigmoid": False},
             "hard-sigmoids": {**sigmoids, "hard_sigmoid": True}, "mlp": {"name": "mlp", "width": cfg.width, "depth": cfg.depth}}
    if cfg.model == "all":
        return specs
    key = ("hard-sigmoids" if cfg.hard_sigmoid else "sigmoids") if cfg.model == "sigmoids" else cfg.model
    return {key: specs[key]}


def _fit_options(cfg: RegressionConfig, resume: bool, **changes: Any) -> dict[str, Any]:
    return {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer,
            "momentum": cfg.momentum, "weight_decay": cfg.weight_decay, "patience": cfg.patience, "seed": cfg.seed,
            "resume": resume, "progress": cfg.progress, **changes}


def run(cfg: RegressionConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every model, compare with persistence and least squares on the test rows, write the report."""
    log = ctx.log if cfg.progress else (lambda _m: None)
    t_start = time.perf_counter()
    data = tabular.load_regression_table(cfg.data, cfg.test_data, cfg.target, cfg.days, cfg.split, cfg.seed)
    tr, va, te = data.splits
    cols = tabular.select_features(data.feature_names, cfg.features, cfg.k_best, data.x[tr], data.y[tr])
    x_sel = data.x[:, cols]
    sx, sy = tabular.Standardizer.fit(x_sel[tr]), tabular.Standardizer.fit(data.y[tr][:, None])
    score = dict(zip(SPLITS, data.splits))
    folder = Run(ctx.run_dir)
    folder.write_json("data.json", {**data.describe(cols, cfg.days, sx, sy), "models": model_specs(cfg)})
    log(f"{data.source}: {len(tr)} train / {len(va)} valid / {len(te)} test rows, {len(cols)} features, target {data.target_name}")
    pers = tabular.persistence_column(data.feature_names, data.target_name)
    yesterday = None if pers is None else (lambda rows: data.x[rows, pers])
    preds, fits, models, times = selection.fit_candidates(model_specs(cfg), lambda rows: x_sel[rows], data.y, tr, score,
                                                          ctx.run_dir / "models", ctx.device, yesterday, **_fit_options(cfg, ctx.resume))
    mses = {k: {f"{s}_mse": float(np.mean((p[s] - data.y[score[s]]) ** 2)) for s in SPLITS} for k, p in preds.items()}
    results = {k: {**mses[k], "best_epoch": f.best_epoch, "epochs_run": len(f.history), "stopped_early": f.stopped_early,
                   "parameters": sum(p.numel() for p in models[k].parameters()), "train_time_s": times[k]}
               for k, f in fits.items()}
    if ENSEMBLE in preds:  # a candidate like the others, chosen by CV or not
        results[ENSEMBLE] = {**mses[ENSEMBLE], "best_epoch": None, "epochs_run": None, "stopped_early": None, "members": list(fits),
                             "parameters": sum(r["parameters"] for r in results.values()), "train_time_s": sum(times.values())}
    baselines = {k: mses[k] for k in ("least squares", "persistence") if k in preds}
    for k in mses:
        log(f"{k:>14}: valid MSE {mses[k]['valid_mse']:.3f}, test MSE {mses[k]['test_mse']:.3f}"
            + (f" (best epoch {fits[k].best_epoch}/{len(fits[k].history)}, {times[k]:.1f}s)" if k in fits else ""))

    cv = {}
    if cfg.folds:
        t0, pool = time.perf_counter(), np.concatenate(data.splits[:2])

        def score_fold(f: int, tr_i: np.ndarray, va_i: np.ndarray) -> dict[str, float]:
            p, *_ = selection.fit_candidates(model_specs(cfg), lambda rows: data.x[rows][:, cols], data.y, pool[tr_i],
                                             {"valid": pool[va_i]}, ctx.run_dir / "cv" / f"fold-{f + 1}", ctx.device,
                                             yesterday, **_fit_options(cfg, ctx.resume))
            return {k: float(np.mean((v["valid"] - data.y[pool[va_i]]) ** 2)) for k, v in p.items()}

        cv = selection.cross_validate(len(pool), cfg.folds, cfg.days - 1 if data.kind == "weather" else 0, score_fold)
        log(f"{cfg.folds}-fold cross-validation ({time.perf_counter() - t0:.0f}s): "
            + ", ".join(f"{k} {v['mean']:.3f}+-{v['std']:.3f}" for k, v in cv.items()))

    def train_rung(width: int):
        torch.manual_seed(cfg.seed)
        model = create_model("regression-mlp", in_features=len(cols), width=width, depth=cfg.ladder_depth).to(ctx.device)
        return model, fit_regressor(model, sx.tensor(x_sel[tr], ctx.device), sy.tensor(data.y[tr], ctx.device),
                                    sx.tensor(x_sel[va], ctx.device), sy.tensor(data.y[va], ctx.device),
                                    run_dir=ctx.run_dir / "ladder" / f"width-{width}", **_fit_options(
                                        cfg, ctx.resume, epochs=cfg.ladder_epochs, weight_decay=0.0, patience=0,
                                        restore_best=False))

    ladder, ladder_histories = selection.capacity_ladder(cfg.ladder_widths, cfg.ladder_depth, train_rung, float(sy.std[0]) ** 2, log)
    # Choose by validation only: the cross-validation mean when there is one (more rows, less noise), else valid MSE.
    chosen_by = f"{cfg.folds}-fold CV MSE" if cv else "valid MSE"
    best_key = min(results, key=lambda k: cv[k]["mean"] if cv else results[k]["valid_mse"])
    beats = {k: results[best_key]["test_mse"] < v["test_mse"] for k, v in baselines.items()}
    metrics = {"models": results, "baselines": baselines, "cross_validation": cv, "ladder": ladder, "best_model": best_key,
               "chosen_by": chosen_by, "best_model_test_mse": results[best_key]["test_mse"], "best_beats": beats,
               "beats_all_baselines": all(beats.values()), "n_test": len(te), "target": data.target_name,
               "wall_time_s": time.perf_counter() - t_start}
    save_weights(models, ctx.run_dir / "model.safetensors")
    folder.write_json("history.json", {**{k: f.history for k, f in fits.items()}, **ladder_histories})
    folder.write_json("test_metrics.json", metrics)
    tabular.write_predictions(ctx.run_dir / "predictions.csv", [data.row_labels[i] for i in te], data.y[te],
                              {k: p["test"] for k, p in preds.items()})
    if data.test_table is not None:
        members = nn.ModuleDict({k: models[k] for k in [*(fits if best_key == ENSEMBLE else [best_key]), LEAST_SQUARES]})
        x_test = data.test_table.x[:, cols]
        sub = predict_regressors(members, x_test, sx.tensor(x_test, ctx.device), sy.inverse)[best_key]
        tabular.write_submission(ctx.run_dir / "submission.csv", data.test_table.ids, sub)
        log(f"submission for {data.test_table.path} ({best_key}): {ctx.run_dir / 'submission.csv'}")
    path = report(folder)
    ctx.log(f"best model by {chosen_by}: {best_key}, test MSE {results[best_key]['test_mse']:.3f}; it "
            f"{'beats' if metrics['beats_all_baselines'] else 'does NOT beat'} "
            + " and ".join(f"{k} ({v['test_mse']:.3f})" for k, v in baselines.items()))
    ctx.log(f"report: {path}")
    return metrics


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: reload the saved weights and recompute the MSE of every model and baseline.

    Args:
        data: None (the run's own test rows), or a CSV of the run's format: for weather runs a
            seattle-weather CSV (every window is evaluated); for HW1 runs a labelled file like
            covid.train.csv (every row evaluated) or an unlabelled one like covid.test.csv (then
            only predictions are written, as ``eval/<name>-submission.csv``).
    Returns:
        Flat metrics (``mse_<model>``), also saved as ``eval/<name>.json`` in the run folder.
    """
    cfg, info = run.config, run.read_json("data.json")
    cols = np.asarray(info["feature_index"], dtype=np.int64)
    models = run.load_weights(build_regressors(info["models"], len(cols)))
    ids = None
    if data is None:
        d = tabular.load_regression_table(cfg.data, cfg.test_data, cfg.target, cfg.days, cfg.split, cfg.seed)
        x, y, name = d.x[d.splits[2]], d.y[d.splits[2]], "test"
    else:
        x, y, ids = tabular.read_rows_like(data, info["kind"], info["all_feature_names"], cfg.target, cfg.days)
        name = Path(data).stem
    pers, sx = info["persistence_feature"], tabular.Standardizer(np.asarray(info["x_mean"]), np.asarray(info["x_std"]))
    preds = predict_regressors(models, x[:, cols], sx.tensor(x[:, cols], device),
                               lambda p: p.astype(np.float64) * info["y_std"] + info["y_mean"],
                               None if pers is None else x[:, info["all_feature_names"].index(pers)])
    metrics: dict[str, Any] = {"data": name, "n": int(len(x))}
    if y is None:
        best = run.read_json("test_metrics.json")["best_model"]
        sub = tabular.write_submission(run / "eval" / f"{name}-submission.csv", ids, preds[best])
        metrics.update(model=best, submission=str(sub))
    else:
        metrics.update({f"mse_{k.replace(' ', '_')}": float(np.mean((p - y) ** 2)) for k, p in preds.items()})
    run.write_eval(name, metrics)
    return metrics


def report(run: Run) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    run = run if isinstance(run, Run) else Run(run)
    cfg, info, m, histories = run.config, run.read_json("data.json"), run.read_json("test_metrics.json"), run.read_json("history.json")
    rows, cols = tabular.read_predictions(run / "predictions.csv")
    best, target, weather, cv = m["best_model"], info["target"], info["kind"] == "weather", m.get("cross_validation") or {}
    chosen_by = m.get("chosen_by", "valid MSE")
    selection.plot_predictions(rows, cols, best, weather, target, run / "predictions.png")
    selection.plot_fit_curves(histories, [k for k in m["models"] if k in histories], run / "learning_curves.png")

    def row(key: str, r: dict, params: str, kept: str) -> list[Any]:
        cv_cell = f"{cv[key]['mean']:.3f} ± {cv[key]['std']:.3f}" if key in cv else ""
        return [key, params, f"{r['train_mse']:.3f}", f"{r['valid_mse']:.3f}", cv_cell, f"{r['test_mse']:.3f}", kept]

    table = [row(k + (f" (chosen by {chosen_by})" if k == best else ""), r, f"{r['parameters']:,}",
                 f"{r['best_epoch']}/{r['epochs_run']}" if r.get("best_epoch") is not None else "mean of " + ", ".join(r.get("members", [])))
             for k, r in m["models"].items()]
    table += [row(f"baseline: {k}", r, f"{len(info['feature_names']) + 1:,}" if k == "least squares" else "0", "")
              for k, r in m["baselines"].items()]
    verdict = (f"**The best model by {chosen_by}, `{best}`, reaches test MSE {m['best_model_test_mse']:.3f}** and "
               + ("beats" if m["beats_all_baselines"] else "does **not** beat every baseline: ")
               + ", ".join(f"{k} ({m['baselines'][k]['test_mse']:.3f}: {'beaten' if b else 'not beaten'})" for k, b in m["best_beats"].items())
               + ". The models were chosen and tuned on the validation rows only; the test rows were used once, here.")
    rep = Report(run, f"{NAME}: predict day {info['days']}'s {target} from the past days", intro=(
        "ML2021 lecture 1 (linear model, sum of sigmoids, hard sigmoid and ReLU, deeper models, overfitting) and HW1. "
        + tabular.describe_rows(info) + (" Kaggle submission: `submission.csv`." if (run / "submission.csv").is_file() else "")
        + f" Features used: {len(info['feature_names'])}" + (f" (selected: {', '.join(info['feature_names'])})"
                                                             if len(info["feature_names"]) < len(info["all_feature_names"]) else " (all)")
        + f". Standardized with train statistics; L2 coefficient {cfg.weight_decay:g} on the standardized target; "
        f"{cfg.optimizer}, lr {cfg.lr:g}, batch {cfg.batch_size or 'full'}, early stopping with patience {cfg.patience}."))
    rep.results(table, ["model", "parameters", "train MSE", "valid MSE", f"{cfg.folds}-fold CV MSE (mean ± std)" if cv
                        else "CV MSE", "test MSE", "kept epoch / run"], note=(
        "MSE in the target's units squared. " + verdict + "\n\nPersistence predicts the target by its value on the day before"
        + (f" (`{info['persistence_feature']}`)" if info["persistence_feature"] else "")
        + "; least squares is scikit-learn's closed-form `LinearRegression` on the same features."
        + (f" Cross-validation: the train+valid rows cut into {cfg.folds} folds contiguous in time; each fold is "
           "validated by models trained on the other folds (standardization refitted per fold"
           + ("; windows sharing a day with the validation fold left out" if weather else "")
           + "; the feature selection is the run's, made on the train rows)." if cv else "")))
    rep.baselines([[n, v] for n, v in HW1_BASELINES], ["HW1 baseline", "MSE"], note=(
        "Course baselines of HW1 (COVID-19 data, for reference only): Kaggle MSE thresholds of ML2022 HW1 on "
        "covid.test.csv; not comparable with the weather numbers above."))
    rep.figure("Predicted vs true on the test rows", "predictions.png")
    rep.figure("Training curves (early stopping keeps the best valid epoch)", "learning_curves.png", alt="learning curves")
    if m["ladder"]:
        selection.plot_capacity_ladder(m["ladder"], histories, run / "capacity_ladder.png")
        lad = [[r["width"], r["depth"], f"{r['parameters']:,}", f"{r['final_train_mse']:.3f}", f"{r['final_valid_mse']:.3f}",
                f"{r['best_valid_mse']:.3f} (epoch {r['best_epoch']})"] for r in m["ladder"]]
        rep.section("Capacity ladder: overfitting as the model grows",
                    f"ReLU MLPs with {m['ladder'][0]['depth']} hidden layers of growing width, trained {cfg.ladder_epochs} "
                    "epochs without early stopping or L2: the training MSE keeps falling with size while the "
                    "validation MSE stops following it.",
                    markdown_table(["width", "depth", "parameters", "train MSE (last)", "valid MSE (last)",
                                    "valid MSE (best)"], lad), markdown_image("capacity ladder", "capacity_ladder.png"))
    return rep.write(eval_row=lambda e: {"data": e.get("data", e["file"]), "rows": e.get("n"), "MSE": ", ".join(
        f"{k[4:]} {v:.3f}" for k, v in e.items() if k.startswith("mse_")) or f"predictions: {e.get('submission', '')}"})


LAB = Lab(name=NAME, default_dataset=tabular.SEATTLE_WEATHER.name, metric="test MSE",
            summary="tomorrow from the past days: linear, sum of (hard) sigmoids, ReLU MLP vs persistence and least squares",
            source="ML2021 lecture 1 (regression, model bias, sigmoids, ReLU, overfitting), HW1",
            config_cls=RegressionConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
