"""Lab ``regression``: predict tomorrow from the past days (ML2021 lecture 1; HW1 COVID-19 cases).

Default data: seattle-weather (1,461 real days, shipped with ``vega_datasets``) arranged like HW1:
the features of 4 past days plus day 5's features except the target -> day 5's target (``temp_max``
by default). Split by date: the first 70% of windows train, the next 10% validate, the last 20% test.
With ``--data covid.train.csv`` the lab reads HW1's own files instead (rows split at random,
seeded, since HW1 rows have no date), and writes Kaggle's submission for ``covid.test.csv``.

Models, all trained by :func:`deepnotes.models.regression.fit_regressor` (MSE, optional L2, Adam or
SGD, early stopping on the validation MSE) and compared with two baselines on the test rows:
*persistence* (tomorrow's value = today's value) and *least squares* (scikit-learn's
``LinearRegression`` on the same features, closed form). A width ladder of ReLU MLPs trained without
early stopping shows overfitting as the model grows. One more candidate, ``ensemble``, is the mean of
the trained models' predictions (averaging models with different errors lowers the variance part of
the error; it is scored in cross-validation like the others). Models are chosen by validation MSE
only (the cross-validation mean when ``--folds`` > 0).

Files it leaves in the run folder (beside config.json):
    data.json             data source, feature names, split sizes, standardization statistics
    model.safetensors     weights of every model (``<model>.<parameter>``) and the least-squares fit
    history.json          per-epoch train/valid MSE of each model and of the width ladder
    test_metrics.json     valid/test MSE (and cross-validation mean/std) of models and baselines
    predictions.csv       the test rows: true value and every model's prediction
    submission.csv        (HW1 data with a test file) Kaggle's ``id,tested_positive`` file
    report.md + *.png     the report
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deepnotes.data import tabular
from deepnotes.data.splits import chronological_split, contiguous_folds, random_split
from deepnotes.errors import UserError
from deepnotes.io import atomic_path, write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, read_run_json
from deepnotes.models.regression import build_regressor, fit_regressor, predict
from deepnotes.report import markdown_image, markdown_table, new_figure, save_figure
from deepnotes.train.checkpoint import cpu_state_dict
from deepnotes.train.config import option

NAME = "regression"
ENSEMBLE = "ensemble"  # the mean of the trained models' predictions (when more than one model is trained)


@dataclass(frozen=True)
class RegressionConfig:
    data: str | None = option(None, "HW1 covid.train.csv, or a CSV in seattle-weather's format; default: seattle-weather from vega_datasets")
    test_data: str | None = option(None, "HW1 covid.test.csv (default: covid.test.csv beside --data, if present)")
    target: Literal["temp_max", "temp_min", "precipitation", "wind"] = option("temp_max", "weather column to predict for day 5")
    days: int = option(5, "days per window: days-1 past days and the target day (HW1: 5)")
    split: tuple[float, ...] = option((0.7, 0.1, 0.2), "train,valid,test fractions (in date order for weather data)")
    folds: int = option(5, "N-fold cross-validation on train+valid, folds contiguous in time (0 = off)")
    model: Literal["all", "linear", "sigmoids", "mlp"] = option("all", "model to train; all = linear, sum of sigmoids (soft and hard) and MLP")
    num_sigmoids: int = option(32, "sigmoids: number K of sigmoids in b + sum_i c_i sigmoid(b_i + w_i . x)")
    hard_sigmoid: bool = option(False, "sigmoids: use the hard sigmoid (piecewise linear) when --model sigmoids")
    width: int = option(64, "mlp: units per hidden layer")
    depth: int = option(2, "mlp: number of hidden ReLU layers")
    features: tuple[str, ...] = option((), "use only these features (comma-separated names, as in data.json); overrides --k-best")
    k_best: int = option(12, "use the k features most correlated with the target on the train rows (0 = all; 12 chosen by 5-fold CV)")
    weight_decay: float = option(1e-3, "L2 regularization: lambda in MSE + lambda * sum ||W||^2 (target standardized)")
    optimizer: Literal["adam", "sgd"] = option("adam", "optimizer")
    lr: float = option(1e-3, "learning rate")
    momentum: float = option(0.9, "SGD momentum")
    epochs: int = option(400, "maximum epochs per model")
    batch_size: int = option(64, "rows per update (0 = full batch)")
    patience: int = option(40, "early stopping: stop after this many epochs without a better valid MSE")
    ladder_widths: tuple[int, ...] = option((1, 4, 16, 64, 256), "capacity ladder: MLP widths (comma-separated; empty = skip)")
    ladder_depth: int = option(3, "capacity ladder: hidden layers of each MLP")
    ladder_epochs: int = option(300, "capacity ladder: epochs, no early stopping, no L2")
    seed: int = option(0, "random seed (weights, data order, HW1 row split)")
    device: Literal["auto", "cpu", "cuda"] = option("cpu", "where to train (these models are small: cpu is fastest)")
    progress: bool = option(True, "print a line per model")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline.
    "fast": {"epochs": 8, "patience": 5, "folds": 2, "ladder_widths": (2, 32), "ladder_epochs": 5,
             "num_sigmoids": 8, "width": 16},
}

HW1_BASELINES = [
    ("simple (sample code)", 2.28), ("medium (feature selection)", 1.49),
    ("strong (architecture, optimizer)", 1.06), ("boss (L2, more tuning)", 0.86),
]


# ----------------------------------------------------------------------------------- data
@dataclass
class Data:
    kind: str  # "weather" or "covid"
    source: str
    x: np.ndarray  # (N, C_all)
    y: np.ndarray  # (N,)
    feature_names: list[str]
    target_name: str
    row_labels: list[str]  # date of the target day, or the HW1 id
    splits: tuple[np.ndarray, np.ndarray, np.ndarray]
    test_table: tabular.CovidTable | None = None


def _is_covid_csv(path: Path) -> bool:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except FileNotFoundError as e:
        raise UserError(f"--data {path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--data {path}: cannot read ({e})") from e
    return bool(header) and header[0].strip() == "id"


def _weather_windows(frame, cfg: RegressionConfig):
    days, names = tabular.day_features(frame)
    x, y, feat = tabular.make_windows(days, names, cfg.target, cfg.days)
    dates = [str(d.date()) for d in frame["date"].iloc[cfg.days - 1 :]]
    return x, y, feat, dates


def load_data(cfg: RegressionConfig) -> Data:
    """The rows of the run: seattle-weather windows or HW1's training file, with the train/valid/test split.

    Raises:
        UserError / DataError: unreadable or malformed files, too few rows.
    """
    if cfg.data is None or not _is_covid_csv(Path(cfg.data)):
        frame = tabular.load_seattle_weather(cfg.data)
        x, y, feat, dates = _weather_windows(frame, cfg)
        source = "vega_datasets seattle-weather" if cfg.data is None else str(cfg.data)
        return Data("weather", source, x, y, feat, cfg.target, dates, chronological_split(len(y), cfg.split))
    table = tabular.read_covid_csv(cfg.data, has_target=True)
    test_path = Path(cfg.test_data) if cfg.test_data else Path(cfg.data).with_name("covid.test.csv")
    test_table = None
    if cfg.test_data or (test_path.is_file() and test_path.resolve() != Path(cfg.data).resolve()):
        test_table = tabular.read_covid_csv(test_path, has_target=False, feature_names=table.feature_names)
    splits = random_split(len(table.y), cfg.split, cfg.seed)
    return Data("covid", str(cfg.data), table.x, table.y, table.feature_names, table.target_name or "target",
                [str(i) for i in table.ids], splits, test_table)


def select_features(cfg: RegressionConfig, data: Data) -> np.ndarray:
    """Column indices to use: ``--features`` names if given, else ``--k-best`` by correlation on the train rows, else all."""
    names = data.feature_names
    if cfg.features:
        unknown = [f for f in cfg.features if f not in names]
        if unknown:
            raise UserError(f"--features: unknown name(s) {', '.join(unknown)}; the names are "
                            f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''} (all in data.json of a run)")
        return np.asarray(sorted(names.index(f) for f in cfg.features), dtype=np.int64)
    if cfg.k_best:
        tr = data.splits[0]
        return tabular.k_best_by_correlation(data.x[tr], data.y[tr], cfg.k_best)
    return np.arange(len(names), dtype=np.int64)


def _validate(cfg: RegressionConfig) -> None:
    checks = [
        (cfg.epochs >= 1, "--epochs must be >= 1"),
        (cfg.batch_size >= 0, "--batch-size must be >= 0 (0 = full batch)"),
        (cfg.lr > 0, "--lr must be > 0"),
        (0 <= cfg.momentum < 1, "--momentum must be in [0, 1)"),
        (cfg.weight_decay >= 0, "--weight-decay must be >= 0"),
        (cfg.patience >= 0, "--patience must be >= 0 (0 = no early stopping)"),
        (cfg.folds == 0 or cfg.folds >= 2, "--folds must be 0 (off) or >= 2"),
        (cfg.num_sigmoids >= 1, "--num-sigmoids must be >= 1"),
        (cfg.width >= 1 and cfg.depth >= 0, "--width must be >= 1 and --depth >= 0"),
        (all(w >= 1 for w in cfg.ladder_widths) and cfg.ladder_depth >= 1 and cfg.ladder_epochs >= 1,
         "--ladder-widths must be >= 1, --ladder-depth and --ladder-epochs >= 1"),
        (cfg.k_best >= 0, "--k-best must be >= 0 (0 = all features)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


# ----------------------------------------------------------------------------------- models
def model_specs(cfg: RegressionConfig) -> dict[str, dict[str, Any]]:
    """Name -> keyword arguments of :func:`build_regressor` for the models this run trains."""
    specs = {
        "linear": {"name": "linear"},
        "sigmoids": {"name": "sigmoids", "num_sigmoids": cfg.num_sigmoids, "hard_sigmoid": False},
        "hard-sigmoids": {"name": "sigmoids", "num_sigmoids": cfg.num_sigmoids, "hard_sigmoid": True},
        "mlp": {"name": "mlp", "width": cfg.width, "depth": cfg.depth},
    }
    if cfg.model == "all":
        return specs
    if cfg.model == "sigmoids":
        key = "hard-sigmoids" if cfg.hard_sigmoid else "sigmoids"
        return {key: specs[key]}
    return {cfg.model: specs[cfg.model]}


def _make(spec: dict[str, Any], in_features: int) -> torch.nn.Module:
    spec = dict(spec)
    return build_regressor(spec.pop("name"), in_features, **spec)


def _fit(cfg: RegressionConfig, model, xs, ys, seed: int, **overrides):
    kw = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, optimizer=cfg.optimizer, momentum=cfg.momentum,
              weight_decay=cfg.weight_decay, patience=cfg.patience, seed=seed)
    kw.update(overrides)
    try:
        return fit_regressor(model, xs[0], ys[0], xs[1], ys[1], **kw)
    except FloatingPointError as e:
        raise UserError(f"training diverged ({e}); try a smaller --lr") from e


def _tensor(a: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)


def _least_squares(x_tr: np.ndarray, y_tr: np.ndarray):
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(x_tr, y_tr)


def _cross_validate(cfg: RegressionConfig, data: Data, cols: np.ndarray, device) -> dict[str, dict[str, float]]:
    """Mean and std of the valid MSE over contiguous folds of the train+valid rows, per model and baseline."""
    pool = np.concatenate(data.splits[:2])
    gap = cfg.days - 1 if data.kind == "weather" else 0
    pers = tabular.persistence_column(data.feature_names, data.target_name)
    scores: dict[str, list[float]] = {}
    for f, (tr_i, va_i) in enumerate(contiguous_folds(len(pool), cfg.folds, gap)):
        tr, va = pool[tr_i], pool[va_i]
        x_tr, x_va = data.x[tr][:, cols], data.x[va][:, cols]
        sx, sy = tabular.Standardizer.fit(x_tr), tabular.Standardizer.fit(data.y[tr][:, None])
        xs = (_tensor(sx.transform(x_tr), device), _tensor(sx.transform(x_va), device))
        ys = (_tensor(sy.transform(data.y[tr][:, None])[:, 0], device), _tensor(sy.transform(data.y[va][:, None])[:, 0], device))
        fold_preds = []
        for key, spec in model_specs(cfg).items():
            torch.manual_seed(cfg.seed)
            model = _make(spec, len(cols)).to(device)
            _fit(cfg, model, xs, ys, cfg.seed)
            pred = sy.inverse(predict(model, xs[1]).cpu().numpy()[:, None])[:, 0]
            fold_preds.append(pred)
            scores.setdefault(key, []).append(float(np.mean((pred - data.y[va]) ** 2)))
        if len(fold_preds) >= 2:
            scores.setdefault(ENSEMBLE, []).append(float(np.mean((np.mean(fold_preds, axis=0) - data.y[va]) ** 2)))
        ls = _least_squares(x_tr, data.y[tr])
        scores.setdefault("least squares", []).append(float(np.mean((ls.predict(x_va) - data.y[va]) ** 2)))
        if pers is not None:
            scores.setdefault("persistence", []).append(float(np.mean((data.x[va, pers] - data.y[va]) ** 2)))
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v} for k, v in scores.items()}


# ----------------------------------------------------------------------------------- run
def run(cfg: RegressionConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every model, compare with persistence and least squares on the test rows, write the report."""
    _validate(cfg)
    if ctx.resume:
        raise UserError("the regression lab trains in seconds and keeps no checkpoints; start a new run instead of --resume")
    log = ctx.log if cfg.progress else (lambda _m: None)
    device = ctx.device
    t_start = time.perf_counter()
    data = load_data(cfg)
    cols = select_features(cfg, data)
    tr, va, te = data.splits
    x_sel = data.x[:, cols]
    sx = tabular.Standardizer.fit(x_sel[tr])
    sy = tabular.Standardizer.fit(data.y[tr][:, None])
    z = sx.transform(x_sel)
    zy = sy.transform(data.y[:, None])[:, 0]
    X = {s: _tensor(z[i], device) for s, i in zip(("train", "valid", "test"), data.splits)}
    Y = {s: _tensor(zy[i], device) for s, i in zip(("train", "valid", "test"), data.splits)}
    pers = tabular.persistence_column(data.feature_names, data.target_name)
    names = [data.feature_names[j] for j in cols]
    data_info = {
        "kind": data.kind, "source": data.source, "target": data.target_name, "days": cfg.days,
        "all_feature_names": data.feature_names, "feature_names": names, "feature_index": cols.tolist(),
        "persistence_feature": data.feature_names[pers] if pers is not None else None,
        "n_train": len(tr), "n_valid": len(va), "n_test": len(te),
        "train_rows": [data.row_labels[tr[0]], data.row_labels[tr[-1]]] if data.kind == "weather" else None,
        "valid_rows": [data.row_labels[va[0]], data.row_labels[va[-1]]] if data.kind == "weather" else None,
        "test_rows": [data.row_labels[te[0]], data.row_labels[te[-1]]] if data.kind == "weather" else None,
        "x_mean": sx.mean.tolist(), "x_std": sx.std.tolist(), "y_mean": float(sy.mean[0]), "y_std": float(sy.std[0]),
        "models": model_specs(cfg),
    }
    write_json_atomic(ctx.run_dir / "data.json", data_info)
    log(f"{data.source}: {len(tr)} train / {len(va)} valid / {len(te)} test rows, {len(cols)} features, target {data.target_name}")

    def to_units(pred_std: torch.Tensor) -> np.ndarray:
        return sy.inverse(pred_std.cpu().numpy()[:, None])[:, 0]

    def split_mse(pred: np.ndarray, rows: np.ndarray) -> float:
        return float(np.mean((pred - data.y[rows]) ** 2))

    results: dict[str, dict[str, Any]] = {}
    preds: dict[str, np.ndarray] = {}
    histories: dict[str, list[dict]] = {}
    weights: dict[str, torch.Tensor] = {}
    outs: dict[str, dict[str, np.ndarray]] = {}
    for key, spec in model_specs(cfg).items():
        torch.manual_seed(cfg.seed)
        model = _make(spec, len(cols)).to(device)
        t0 = time.perf_counter()
        fit = _fit(cfg, model, (X["train"], X["valid"]), (Y["train"], Y["valid"]), cfg.seed)
        out = {s: to_units(predict(model, X[s])) for s in ("train", "valid", "test")}
        results[key] = {
            "train_mse": split_mse(out["train"], tr), "valid_mse": split_mse(out["valid"], va),
            "test_mse": split_mse(out["test"], te), "best_epoch": fit.best_epoch, "epochs_run": len(fit.history),
            "stopped_early": fit.stopped_early, "parameters": sum(p.numel() for p in model.parameters()),
            "train_time_s": time.perf_counter() - t0,
        }
        preds[key] = out["test"]
        outs[key] = out
        histories[key] = fit.history
        weights.update({f"{key}.{k}": v for k, v in cpu_state_dict(model).items()})
        log(f"{key:>14}: valid MSE {results[key]['valid_mse']:.3f}, test MSE {results[key]['test_mse']:.3f} "
            f"(best epoch {fit.best_epoch}/{len(fit.history)}, {results[key]['train_time_s']:.1f}s)")

    if len(outs) >= 2:  # the mean of the models' predictions, a candidate like the others (chosen by CV or not)
        mean_out = {s: np.mean([o[s] for o in outs.values()], axis=0) for s in ("train", "valid", "test")}
        results[ENSEMBLE] = {
            "train_mse": split_mse(mean_out["train"], tr), "valid_mse": split_mse(mean_out["valid"], va),
            "test_mse": split_mse(mean_out["test"], te), "best_epoch": None, "epochs_run": None, "stopped_early": None,
            "parameters": sum(r["parameters"] for r in results.values()), "members": list(outs),
            "train_time_s": sum(r["train_time_s"] for r in results.values()),
        }
        preds[ENSEMBLE] = mean_out["test"]
        log(f"{ENSEMBLE:>14}: valid MSE {results[ENSEMBLE]['valid_mse']:.3f}, test MSE {results[ENSEMBLE]['test_mse']:.3f} "
            f"(mean of {', '.join(outs)})")

    ls = _least_squares(x_sel[tr], data.y[tr])
    weights["least_squares.coef"] = torch.as_tensor(ls.coef_, dtype=torch.float64).contiguous()
    weights["least_squares.intercept"] = torch.as_tensor([float(ls.intercept_)], dtype=torch.float64)
    baselines = {"least squares": {s: split_mse(ls.predict(x_sel[i]), i) for s, i in (("train_mse", tr), ("valid_mse", va), ("test_mse", te))}}
    preds["least squares"] = ls.predict(x_sel[te])
    if pers is not None:
        baselines["persistence"] = {s: split_mse(data.x[i, pers], i) for s, i in (("train_mse", tr), ("valid_mse", va), ("test_mse", te))}
        preds["persistence"] = data.x[te, pers]
    for k, v in baselines.items():
        log(f"{k:>14}: valid MSE {v['valid_mse']:.3f}, test MSE {v['test_mse']:.3f}")

    cv = {}
    if cfg.folds:
        t0 = time.perf_counter()
        cv = _cross_validate(cfg, data, cols, device)
        log(f"{cfg.folds}-fold cross-validation ({time.perf_counter() - t0:.0f}s): "
            + ", ".join(f"{k} {v['mean']:.3f}+-{v['std']:.3f}" for k, v in cv.items()))

    ladder = []
    for w in cfg.ladder_widths:
        torch.manual_seed(cfg.seed)
        model = build_regressor("mlp", len(cols), width=w, depth=cfg.ladder_depth).to(device)
        fit = _fit(cfg, model, (X["train"], X["valid"]), (Y["train"], Y["valid"]), cfg.seed,
                   epochs=cfg.ladder_epochs, weight_decay=0.0, patience=0, restore_best=False)
        scale = float(sy.std[0]) ** 2  # standardized MSE -> target units
        hist = [{"epoch": h["epoch"], "train_mse": h["train_mse"] * scale, "valid_mse": h["valid_mse"] * scale} for h in fit.history]
        best = min(hist, key=lambda h: h["valid_mse"])
        ladder.append({"width": w, "depth": cfg.ladder_depth, "parameters": sum(p.numel() for p in model.parameters()),
                       "final_train_mse": hist[-1]["train_mse"], "final_valid_mse": hist[-1]["valid_mse"],
                       "best_valid_mse": best["valid_mse"], "best_epoch": best["epoch"]})
        histories[f"ladder-width-{w}"] = hist
        log(f"ladder width {w:>4}: train MSE {hist[-1]['train_mse']:.3f}, valid MSE {hist[-1]['valid_mse']:.3f} "
            f"(best {best['valid_mse']:.3f} at epoch {best['epoch']})")

    # Choose by validation only: the cross-validation mean when there is one (more rows, less noise), else valid MSE.
    chosen_by = f"{cfg.folds}-fold CV MSE" if cv else "valid MSE"
    best_key = min(results, key=lambda k: cv[k]["mean"] if cv else results[k]["valid_mse"])
    beats = {k: results[best_key]["test_mse"] < v["test_mse"] for k, v in baselines.items()}
    metrics = {
        "models": results, "baselines": baselines, "cross_validation": cv, "ladder": ladder,
        "best_model": best_key, "chosen_by": chosen_by, "best_model_test_mse": results[best_key]["test_mse"],
        "best_beats": beats, "beats_all_baselines": all(beats.values()),
        "n_test": len(te), "target": data.target_name, "wall_time_s": time.perf_counter() - t_start,
    }
    with atomic_path(ctx.run_dir / "model.safetensors") as tmp:
        save_file(weights, str(tmp))
    write_json_atomic(ctx.run_dir / "history.json", histories)
    write_json_atomic(ctx.run_dir / "test_metrics.json", metrics)
    _write_predictions(ctx.run_dir / "predictions.csv", [data.row_labels[i] for i in te], data.y[te], preds)
    if data.test_table is not None:
        z_test = _tensor(sx.transform(data.test_table.x[:, cols]), device)
        members = list(outs) if best_key == ENSEMBLE else [best_key]
        sub_preds = []
        for key in members:
            model = _make(model_specs(cfg)[key], len(cols)).to(device)
            model.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(key + ".")})
            sub_preds.append(to_units(predict(model, z_test)))
        tabular.write_submission(ctx.run_dir / "submission.csv", data.test_table.ids, np.mean(sub_preds, axis=0))
        log(f"submission for {data.test_table.path} ({best_key}): {ctx.run_dir / 'submission.csv'}")
    path = report(ctx.run_dir)
    verdict = "beats" if metrics["beats_all_baselines"] else "does NOT beat"
    ctx.log(f"best model by {chosen_by}: {best_key}, test MSE {results[best_key]['test_mse']:.3f}; it {verdict} "
            + " and ".join(f"{k} ({v['test_mse']:.3f})" for k, v in baselines.items()))
    ctx.log(f"report: {path}")
    return metrics


def _write_predictions(path: Path, rows: list[str], truth: np.ndarray, preds: dict[str, np.ndarray]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "true", *preds])
    for i, r in enumerate(rows):
        w.writerow([r, f"{truth[i]:.6g}", *(f"{p[i]:.6g}" for p in preds.values())])
    write_text_atomic(path, buf.getvalue())


# ----------------------------------------------------------------------------------- evaluate
def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: reload the saved weights and recompute the MSE of every model and baseline.

    Args:
        data: None (the run's own test rows), or a CSV of the run's format: for weather runs a
            seattle-weather CSV (every window is evaluated); for HW1 runs a labelled file like
            covid.train.csv (every row evaluated) or an unlabelled one like covid.test.csv (then
            only predictions are written, as ``eval/<name>-submission.csv``).
    Returns:
        Flat metrics (``mse_<model>``), also saved as ``eval/<name>.json`` in the run folder.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    info = read_run_json(run_dir / "data.json")
    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise UserError(f"{run_dir} has no model.safetensors: the run did not finish; start it again")
    try:
        weights = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise UserError(f"cannot load {path}: {e}; the file is damaged") from e
    cols = np.asarray(info["feature_index"], dtype=np.int64)
    ids = None
    if data is None:
        d = load_data(cfg)
        x, y, name = d.x[d.splits[2]], d.y[d.splits[2]], "test"
    elif info["kind"] == "weather":
        frame = tabular.load_seattle_weather(data)
        x, y, feat, _ = _weather_windows(frame, cfg)
        name = Path(data).stem
    else:
        if not _is_covid_csv(Path(data)):
            raise UserError(f"--data {data}: not a HW1 CSV (header must start with id), as this run was trained on")
        with open(data, newline="", encoding="utf-8") as f:
            n_cols = len(next(csv.reader(f)))
        labelled = n_cols == len(info["all_feature_names"]) + 2
        table = tabular.read_covid_csv(data, has_target=labelled, feature_names=info["all_feature_names"])
        x, y, ids, name = table.x, table.y, table.ids, Path(data).stem
    x_sel = x[:, cols]
    z = _tensor((x_sel - np.asarray(info["x_mean"])) / np.asarray(info["x_std"]), device)
    preds: dict[str, np.ndarray] = {}
    for key, spec in info["models"].items():
        model = _make(spec, len(cols)).to(device)
        try:
            model.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(key + ".")})
        except RuntimeError as e:
            raise UserError(f"cannot load {key} from {path}: {e}; the file is from another run") from e
        preds[key] = predict(model, z).cpu().numpy().astype(np.float64) * info["y_std"] + info["y_mean"]
    if len(preds) >= 2:
        preds[ENSEMBLE] = np.mean(list(preds.values()), axis=0)
    preds["least squares"] = x_sel @ weights["least_squares.coef"].numpy() + float(weights["least_squares.intercept"][0])
    pers = info["persistence_feature"]
    if pers is not None:
        preds["persistence"] = x[:, info["all_feature_names"].index(pers)]
    metrics: dict[str, Any] = {"data": name, "n": int(len(x))}
    if y is None:
        best = read_run_json(run_dir / "test_metrics.json")["best_model"]
        sub = tabular.write_submission(run_dir / "eval" / f"{name}-submission.csv", ids, preds[best])
        metrics.update(model=best, submission=str(sub))
    else:
        for key, p in preds.items():
            metrics[f"mse_{key.replace(' ', '_')}"] = float(np.mean((p - y) ** 2))
    write_json_atomic(run_dir / "eval" / f"{name}.json", metrics)
    return metrics


# ----------------------------------------------------------------------------------- report
def _read_predictions(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = {h: np.asarray([float(r[i]) for r in body]) for i, h in enumerate(header) if i > 0}
    return [r[0] for r in body], cols


def _plot_predictions(rows: list[str], cols: dict[str, np.ndarray], best: str, kind: str, target: str, path: Path) -> None:
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
    if kind == "weather":
        ticks = np.linspace(0, len(rows) - 1, 7).round().astype(int)
        ax1.set_xticks(ticks)
        ax1.set_xticklabels([rows[i] for i in ticks], fontsize=8)
        ax1.set_xlabel("target day")
    else:
        ax1.set_xlabel("test row")
    ax1.set_ylabel(target)
    ax1.set_title("test rows: predicted vs true")
    ax1.legend(fontsize=8, loc="best")
    ax1.grid(True, alpha=0.3)
    ax2.scatter(truth, cols[best], s=6, alpha=0.6, color="tab:red")
    lo, hi = float(min(truth.min(), cols[best].min())), float(max(truth.max(), cols[best].max()))
    ax2.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--")
    ax2.set_xlabel(f"true {target}")
    ax2.set_ylabel(f"predicted ({best})")
    ax2.set_title(f"chosen model: {best}")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_ladder(ladder: list[dict], histories: dict[str, list[dict]], path: Path) -> None:
    fig = new_figure(12, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for i, rung in enumerate(ladder):
        hist = histories[f"ladder-width-{rung['width']}"]
        ep = [h["epoch"] for h in hist]
        color = cmap(i / max(len(ladder) - 1, 1))
        ax1.plot(ep, [h["train_mse"] for h in hist], color=color, lw=1.0, ls="--")
        ax1.plot(ep, [h["valid_mse"] for h in hist], color=color, lw=1.5, label=f"width {rung['width']} ({rung['parameters']:,} params)")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("MSE")
    ax1.set_title("valid (solid) and train (dashed) MSE")
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3, which="both")
    params = [r["parameters"] for r in ladder]
    ax2.plot(params, [r["final_train_mse"] for r in ladder], "o--", color="tab:blue", label="train, last epoch")
    ax2.plot(params, [r["final_valid_mse"] for r in ladder], "o-", color="tab:orange", label="valid, last epoch")
    ax2.plot(params, [r["best_valid_mse"] for r in ladder], "x:", color="tab:orange", label="valid, best epoch")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel(f"parameters (ReLU MLP, {ladder[0]['depth']} hidden layers)")
    ax2.set_ylabel("MSE")
    ax2.set_title("capacity ladder: overfitting as the model grows")
    ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3, which="both")
    fig.tight_layout()
    save_figure(fig, path)


def _plot_curves(histories: dict[str, list[dict]], models: list[str], path: Path) -> None:
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


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    info = read_run_json(run_dir / "data.json")
    m = read_run_json(run_dir / "test_metrics.json")
    histories = read_run_json(run_dir / "history.json")
    rows, cols = _read_predictions(run_dir / "predictions.csv")
    best = m["best_model"]
    target = info["target"]
    _plot_predictions(rows, cols, best, info["kind"], target, run_dir / "predictions.png")
    _plot_curves(histories, [k for k in m["models"] if k in histories], run_dir / "learning_curves.png")
    if m["ladder"]:
        _plot_ladder(m["ladder"], histories, run_dir / "capacity_ladder.png")
    cv = m.get("cross_validation") or {}

    def cv_cell(key: str) -> str:
        return f"{cv[key]['mean']:.3f} ± {cv[key]['std']:.3f}" if key in cv else ""

    table = []
    for key, r in m["models"].items():
        kept = f"{r['best_epoch']}/{r['epochs_run']}" if r.get("best_epoch") is not None else "mean of " + ", ".join(r.get("members", []))
        table.append([key + (f" (chosen by {m.get('chosen_by', 'valid MSE')})" if key == best else ""), f"{r['parameters']:,}", f"{r['train_mse']:.3f}",
                      f"{r['valid_mse']:.3f}", cv_cell(key), f"{r['test_mse']:.3f}", kept])
    for key, r in m["baselines"].items():
        params = f"{len(info['feature_names']) + 1:,}" if key == "least squares" else "0"
        table.append([f"baseline: {key}", params, f"{r['train_mse']:.3f}", f"{r['valid_mse']:.3f}", cv_cell(key),
                      f"{r['test_mse']:.3f}", ""])
    headers = ["model", "parameters", "train MSE", "valid MSE", f"{cfg.folds}-fold CV MSE (mean ± std)" if cv else "CV MSE",
               "test MSE", "kept epoch / run"]
    beats = m["best_beats"]
    verdict = (f"**The best model by {m.get('chosen_by', 'valid MSE')}, `{best}`, reaches test MSE {m['best_model_test_mse']:.3f}** and "
               + ("beats" if m["beats_all_baselines"] else "does **not** beat every baseline: ")
               + ", ".join(f"{k} ({m['baselines'][k]['test_mse']:.3f}: {'beaten' if b else 'not beaten'})" for k, b in beats.items())
               + ". The models were chosen and tuned on the validation rows only; the test rows were used once, here.")
    if info["kind"] == "weather":
        data_line = (f"Data: {info['source']} (Seattle, one row a day). Each row is a window of {info['days']} days arranged like "
                     f"HW1: all features of days 1-{info['days'] - 1} (precipitation mm, temp_max/temp_min °C, wind m/s, "
                     f"weather one-hot) and day {info['days']}'s features except the target; label: day {info['days']}'s "
                     f"`{target}`. Split by date: train {info['train_rows'][0]}..{info['train_rows'][1]} ({info['n_train']} rows), "
                     f"valid {info['valid_rows'][0]}..{info['valid_rows'][1]} ({info['n_valid']}), "
                     f"test {info['test_rows'][0]}..{info['test_rows'][1]} ({info['n_test']}).")
    else:
        data_line = (f"Data: HW1 file {info['source']} ({info['n_train']} train / {info['n_valid']} valid / {info['n_test']} "
                     "test rows, split at random with the run's seed); target: "
                     f"`{target}`." + (" Kaggle submission: `submission.csv`." if (run_dir / "submission.csv").is_file() else ""))
    lines = [
        f"# {NAME}: predict day {info['days']}'s {target} from the past days",
        "",
        "ML2021 lecture 1 (linear model, sum of sigmoids, hard sigmoid and ReLU, deeper models, overfitting) and HW1. "
        + data_line,
        f" Features used: {len(info['feature_names'])}"
        + (f" (selected: {', '.join(info['feature_names'])})" if len(info['feature_names']) < len(info["all_feature_names"]) else " (all)")
        + f". Standardized with train statistics; L2 coefficient {cfg.weight_decay:g} on the standardized target; "
        f"{cfg.optimizer}, lr {cfg.lr:g}, batch {cfg.batch_size or 'full'}, early stopping with patience {cfg.patience}.",
        "",
        "## Results (MSE in the target's units squared)",
        "",
        markdown_table(headers, table),
        "",
        verdict,
        "",
        "Persistence predicts the target by its value on the day before"
        + (f" (`{info['persistence_feature']}`)" if info["persistence_feature"] else "")
        + "; least squares is scikit-learn's closed-form `LinearRegression` on the same features."
        + (f" Cross-validation: the train+valid rows cut into {cfg.folds} folds contiguous in time; each fold is "
           "validated by models trained on the other folds (standardization refitted per fold"
           + (f"; windows sharing a day with the validation fold left out" if info["kind"] == "weather" else "")
           + "; the feature selection is the run's, made on the train rows)." if cv else ""),
        "",
        "## Predicted vs true on the test rows", "", markdown_image("predictions", "predictions.png"), "",
        "## Training curves (early stopping keeps the best valid epoch)", "", markdown_image("learning curves", "learning_curves.png"), "",
    ]
    if m["ladder"]:
        lad = [[r["width"], r["depth"], f"{r['parameters']:,}", f"{r['final_train_mse']:.3f}", f"{r['final_valid_mse']:.3f}",
                f"{r['best_valid_mse']:.3f} (epoch {r['best_epoch']})"] for r in m["ladder"]]
        lines += ["## Capacity ladder: overfitting as the model grows", "",
                  f"ReLU MLPs with {m['ladder'][0]['depth']} hidden layers of growing width, trained {cfg.ladder_epochs} "
                  "epochs without early stopping or L2: the training MSE keeps falling with size while the "
                  "validation MSE stops following it.", "",
                  markdown_table(["width", "depth", "parameters", "train MSE (last)", "valid MSE (last)", "valid MSE (best)"], lad), "",
                  markdown_image("capacity ladder", "capacity_ladder.png"), ""]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        ev_rows = []
        for p in evals:
            e = json.loads(p.read_text())
            ev_rows.append([e.get("data", p.stem), e["n"], ", ".join(f"{k[4:]} {v:.3f}" for k, v in e.items() if k.startswith("mse_"))
                            or f"predictions: {e.get('submission', '')}"])
        lines += ["## `deepnotes eval` results", "", markdown_table(["data", "rows", "MSE"], ev_rows), ""]
    lines += [
        "## Course baselines of HW1 (COVID-19 data, for reference only)", "",
        "Kaggle MSE thresholds of ML2022 HW1 on covid.test.csv; not comparable with the weather numbers above.", "",
        markdown_table(["HW1 baseline", "MSE"], [[n, v] for n, v in HW1_BASELINES]), "",
        "## Configuration", "",
        markdown_table(["field", "value"], [[k, v] for k, v in json.loads((run_dir / "config.json").read_text())["config"].items()]), "",
    ]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="tomorrow from the past days: linear, sum of (hard) sigmoids, ReLU MLP vs persistence and least squares",
    source="ML2021 lecture 1 (regression, model bias, sigmoids, ReLU, overfitting), HW1",
    default_dataset="seattle-weather",
    metric="test MSE",
    config_cls=RegressionConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
