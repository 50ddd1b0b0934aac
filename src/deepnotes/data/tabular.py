"""Tabular data: past days -> tomorrow arranged like ML2021 HW1, and the small tables shipped in pip packages.

Source: ML2021 lecture 1 (predict tomorrow's value from the past days) and HW1 (COVID-19 cases
prediction: ``covid.train.csv`` / ``covid.test.csv``, features of 5 consecutive days, predict day 5's
``tested_positive`` from days 1-4 and day 5's other features).

Two sources, one layout ``X (N, C)``, ``y (N,)``:

* **seattle-weather** (:func:`load_seattle_weather`, 1,461 real days 2012-2015 shipped with
  ``vega_datasets``; columns precipitation (mm), temp_max, temp_min (degrees C), wind (m/s), weather
  label). :func:`day_features` turns each day into numbers (the label one-hot encoded) and
  :func:`make_windows` arranges windows of ``days`` consecutive days the HW1 way: every feature of
  days 1..days-1, and day ``days``'s features except the target.
* **HW1's own CSV files** (:func:`read_covid_csv`): header, ``id``, 37 state one-hot columns, 16
  features x 5 days; the training file has day 5's ``tested_positive`` last (2,699 x 118), the test
  file lacks it (1,078 x 117). :func:`write_submission` writes Kaggle's ``id,tested_positive`` file.

:func:`load_regression_table` reads either source with its train/valid/test split
(:mod:`deepnotes.data.splits`: date order for the weather, seeded rows for HW1). :class:`Standardizer`
is fitted on the training rows only; :func:`k_best_by_correlation` ranks features by
``|corr(x_j, y)|`` on the training rows. :func:`load_diabetes` reads scikit-learn's diabetes set (Efron et
al. 2004). :data:`SEATTLE_WEATHER` and :data:`DIABETES` are their ``deepnotes data`` entries.

Errors a user can fix (missing file, wrong column count, a non-numeric cell) raise
:class:`~deepnotes.errors.DataError` naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deepnotes.data.splits import chronological_split, random_split
from deepnotes.errors import DataError, UserError
from deepnotes.io import write_text_atomic

WEATHER_NUMERIC = ("precipitation", "temp_max", "temp_min", "wind")
"""Numeric columns of seattle-weather, in the file's order (units: mm, degrees C, degrees C, m/s)."""
WEATHER_CLASSES = ("drizzle", "fog", "rain", "snow", "sun")
"""The five weather labels of seattle-weather, one-hot encoded in this order."""


# ----------------------------------------------------------------------------------- seattle-weather
def load_seattle_weather(path: str | os.PathLike[str] | None = None):
    """The seattle-weather table as a pandas DataFrame sorted by date.

    Args:
        path: a CSV with columns ``date, precipitation, temp_max, temp_min, wind, weather`` (one row a
            day); None (default) reads the copy shipped with ``vega_datasets`` (1,461 days, 2012-2015).

    Raises:
        DataError: vega_datasets is not installed, or the file is missing, lacks a column, or has a bad date or
            a non-numeric or missing value (one line naming the file, the line and the fix).
    """
    import pandas as pd

    if path is None:
        frame = pd.read_csv(SEATTLE_WEATHER.build())
        where = "vega_datasets seattle-weather"
    else:
        where = str(path)
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError as e:
            raise DataError(f"{where}: no such file; pass a seattle-weather CSV with --data") from e
        except (OSError, ValueError) as e:
            raise DataError(f"{where}: cannot read as CSV ({e})") from e
    missing = [c for c in ("date", *WEATHER_NUMERIC, "weather") if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; expected date,{','.join(WEATHER_NUMERIC)},weather")
    frame = frame.copy()
    dates = pd.to_datetime(frame["date"], errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        raise DataError(f"{where}: line {bad[0] + 2}, column date: {frame['date'].iloc[bad[0]]!r} is not a date; "
                        "write every date as YEAR-MONTH-DAY, e.g. 2012-01-31")
    frame["date"] = dates
    for col in WEATHER_NUMERIC:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            raise DataError(f"{where}: line {bad[0] + 2}, column {col}: {frame[col].iloc[bad[0]]!r} is not a number")
        frame[col] = values.astype(float)
    unknown = sorted(set(frame["weather"].astype(str)) - set(WEATHER_CLASSES))
    if unknown:
        raise DataError(f"{where}: column weather has unknown label(s) {unknown}; expected one of {list(WEATHER_CLASSES)}")
    return frame.sort_values("date").reset_index(drop=True)


def day_features(frame) -> tuple[np.ndarray, list[str]]:
    """One row of numbers per day: the numeric columns, then the weather label one-hot.

    Returns:
        ``(F, names)``: ``F`` float64 of shape (T, 9) for T days; names
        ``precipitation, temp_max, temp_min, wind, weather=drizzle, ..., weather=sun``.
    """
    numeric = frame[list(WEATHER_NUMERIC)].to_numpy(dtype=np.float64)
    labels = frame["weather"].astype(str).to_numpy()
    onehot = (labels[:, None] == np.asarray(WEATHER_CLASSES)[None, :]).astype(np.float64)
    names = list(WEATHER_NUMERIC) + [f"weather={c}" for c in WEATHER_CLASSES]
    return np.concatenate([numeric, onehot], axis=1), names


def make_windows(day_matrix: np.ndarray, names: Sequence[str], target: str,
                 days: int = 5) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Windows of ``days`` consecutive days arranged like HW1.

    Window ``i`` covers days ``i .. i+days-1``. Its features are every column of days 1..days-1 and
    every column but ``target`` of the last day; its label is the last day's ``target``. Feature names
    carry the day: ``temp_max_d1`` ... ``temp_min_d5``.

    Args:
        day_matrix: (T, F) one row per day, in date order.
        names: the F column names.
        target: the column to predict (must be in ``names``).
        days: window length (default 5, as in HW1), at least 2.

    Returns:
        ``(X, y, feature_names)`` with X (T-days+1, days*F - 1), y (T-days+1,). Row i's label is
        day ``i + days - 1``.

    Raises:
        UserError: unknown target, ``days`` < 2, or fewer than ``days`` days.
    """
    names = list(names)
    if target not in names:
        raise UserError(f"--target {target!r} is not a column; choose one of {', '.join(names)}")
    if days < 2:
        raise UserError(f"--days must be >= 2 (got {days})")
    T, F = day_matrix.shape
    if T < days:
        raise UserError(f"only {T} days of data; a window needs {days}")
    t = names.index(target)
    keep_last = [j for j in range(F) if j != t]
    N = T - days + 1
    parts, feat_names = [], []
    for d in range(days):
        block = day_matrix[d : d + N]  # (N, F): day d+1 of every window
        cols = range(F) if d < days - 1 else keep_last
        parts.append(block[:, list(cols)])
        feat_names += [f"{names[j]}_d{d + 1}" for j in cols]
    X = np.concatenate(parts, axis=1)
    y = day_matrix[days - 1 :, t].copy()
    return X, y, feat_names


def weather_windows(frame, target: str, days: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """:func:`make_windows` of a seattle-weather table; returns ``(X, y, feature_names, target_dates)``."""
    x, y, names = make_windows(*day_features(frame), target, days)
    return x, y, names, [str(d.date()) for d in frame["date"].iloc[days - 1 :]]


# ----------------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / std`` per column, with statistics from the training rows only.

    Constant columns (std 0) get std 1, so they map to 0 instead of NaN.

    Shapes:
        mean, std: (C,); ``transform`` takes (N, C) and returns (N, C).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        return cls(mean, np.where(std > 1e-12, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def tensor(self, x: np.ndarray, device: Any = "cpu") -> Any:
        """:meth:`transform` as a float32 torch tensor on ``device`` (a 1-D ``x`` of a one-column standardizer stays 1-D)."""
        import torch

        return torch.as_tensor(self.transform(x), dtype=torch.float32, device=device)


def k_best_by_correlation(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` columns of ``x`` with the largest ``|Pearson corr(x_j, y)|``, in column order.

    Constant columns have correlation 0. Use the training rows only (HW1's "medium" hint: feature
    selection). Shapes: x (N, C), y (N,) -> (k,) int64.

    Raises:
        UserError: ``k`` not in ``1..C``.
    """
    C = x.shape[1]
    if not 1 <= k <= C:
        raise UserError(f"--k-best must be in 1..{C} (the number of features), or 0 for all; got {k}")
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
    corr = np.divide(xc.T @ yc, denom, out=np.zeros(C), where=denom > 0)
    return np.sort(np.argsort(-np.abs(corr), kind="stable")[:k])


# ----------------------------------------------------------------------------------- HW1 CSV files
@dataclass(frozen=True)
class CovidTable:
    """One HW1 CSV file read into arrays.

    Attributes:
        ids: (N,) int64, the ``id`` column.
        x: (N, C) float64, every column but ``id`` and (train file) the target.
        y: (N,) float64 day 5's ``tested_positive``, or None for the test file.
        feature_names: the C column names, in file order.
        target_name: name of the target column (the training file's last column).
        path: the file read.
    """

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    target_name: str | None
    path: str


def read_covid_csv(path: str | os.PathLike[str], has_target: bool,
                   feature_names: Sequence[str] | None = None) -> CovidTable:
    """Read ``covid.train.csv`` (``has_target=True``) or ``covid.test.csv`` (False) of ML2021/2022 HW1.

    Layout: a header line, then one row per sample: ``id``, the features (37 state one-hots and 16
    features x 5 days in the course's files), and for the training file the target
    (``tested_positive`` of day 5) as the last column. Any number of feature columns is accepted; pass
    ``feature_names`` (the training file's) to require the test file to have the same columns.

    Returns:
        :class:`CovidTable`.

    Raises:
        DataError: missing or empty file; header without ``id`` first; test columns different from
            the training columns; a row with the wrong number of cells; an empty or non-numeric
            cell (the message names the file, the line number and the column).
    """
    path = Path(path)
    role = "training" if has_target else "test"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such file; pass the HW1 {role} CSV (covid.{'train' if has_target else 'test'}.csv)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    if not rows or not rows[0]:
        raise DataError(f"{path}: empty file; expected a header line starting with id")
    header = [h.strip() for h in rows[0]]
    if header[0] != "id":
        raise DataError(f"{path}: line 1: the header must start with 'id' (got {header[0]!r}); is this a HW1 CSV?")
    min_cols = 3 if has_target else 2
    if len(header) < min_cols:
        raise DataError(f"{path}: line 1: {len(header)} columns; a HW1 {role} file has id, features"
                        + (" and the target" if has_target else ""))
    names = header[1:-1] if has_target else header[1:]
    if feature_names is not None and list(feature_names) != names:
        raise DataError(f"{path}: its {len(names)} feature columns differ from the training file's "
                        f"{len(feature_names)}; a test file has the training header without the last column")
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(c.strip() for c in r)]
    if not body:
        raise DataError(f"{path}: no data rows after the header")
    values = np.empty((len(body), len(header)), dtype=np.float64)
    for r, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: {len(row)} cells, expected {len(header)} as in the header")
        for c, cell in enumerate(row):
            try:
                values[r, c] = float(cell)
            except ValueError:
                raise DataError(f"{path}: line {line}, column {header[c]!r}: {cell!r} is not a number") from None
            if not np.isfinite(values[r, c]):
                raise DataError(f"{path}: line {line}, column {header[c]!r}: {cell!r} is not a finite number")
    ids = values[:, 0].astype(np.int64)
    if has_target:
        return CovidTable(ids, values[:, 1:-1], values[:, -1].copy(), names, header[-1], str(path))
    return CovidTable(ids, values[:, 1:], None, names, None, str(path))


def persistence_column(feature_names: Sequence[str], target_name: str) -> int | None:
    """Index of the latest earlier-day copy of the target among the features, or None.

    HW1 names a feature's day-k copy ``name.k-1`` (``tested_positive``, ``tested_positive.1``, ...,
    the target being the last); the weather windows name it ``name_dk``. The persistence baseline
    predicts the target with this column ("tomorrow = today").
    """

    def base(name: str) -> str:
        stem, _, suffix = name.rpartition(".")
        if stem and suffix.isdigit():
            return stem
        stem, _, suffix = name.rpartition("_d")
        if stem and suffix.isdigit():
            return stem
        return name

    want = base(target_name)
    hits = [j for j, n in enumerate(feature_names) if base(n) == want]
    return hits[-1] if hits else None


def write_predictions(path: str | os.PathLike[str], rows: Sequence[str], truth: np.ndarray,
                      predictions: dict[str, np.ndarray]) -> None:
    """Write ``predictions.csv`` atomically: columns ``row, true`` and one per model, 6 significant digits."""
    lines = [",".join(["row", "true", *predictions])]
    lines += [",".join([r, f"{truth[i]:.6g}", *(f"{p[i]:.6g}" for p in predictions.values())]) for i, r in enumerate(rows)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_predictions(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """What :func:`write_predictions` wrote: the row labels, and column -> values (``true`` and each model)."""
    with open(path, newline="") as f:
        header, *body = list(csv.reader(f))
    return [r[0] for r in body], {h: np.asarray([float(r[i]) for r in body]) for i, h in enumerate(header) if i > 0}


def write_submission(path: str | os.PathLike[str], ids: Sequence[int], predictions: Sequence[float],
                     target_name: str = "tested_positive") -> Path:
    """Write Kaggle's submission file atomically: header ``id,tested_positive``, one ``id,value`` a line.

    Raises:
        ValueError: ``ids`` and ``predictions`` differ in length.
    """
    ids = np.asarray(ids).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if len(ids) != len(predictions):
        raise ValueError(f"ids has {len(ids)} entries but predictions has {len(predictions)}")
    lines = [f"id,{target_name}"] + [f"{int(i)},{float(p):.6f}" for i, p in zip(ids, predictions)]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return Path(path)


def is_covid_csv(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a HW1 CSV (its header starts with ``id``) rather than a seattle-weather one.

    Raises:
        UserError: the file is missing or unreadable (``--data`` names it).
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except FileNotFoundError as e:
        raise UserError(f"--data {path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--data {path}: cannot read ({e})") from e
    return bool(header) and header[0].strip() == "id"


# ----------------------------------------------------------------------------------- the regression lab's rows
@dataclass
class RegressionTable:
    """The rows of a regression run: x (N, C) float64, y (N,), and the (train, valid, test) row indices.

    ``kind`` is ``weather`` or ``covid``; ``row_labels`` the target day's date or the HW1 id;
    ``test_table`` HW1's unlabelled test file, when there is one.
    """

    kind: str
    source: str
    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    row_labels: list[str]
    splits: tuple[np.ndarray, np.ndarray, np.ndarray]
    test_table: CovidTable | None = None

    def describe(self, cols: np.ndarray, days: int, sx: "Standardizer", sy: "Standardizer") -> dict[str, Any]:
        """What a run's data.json keeps: source, feature names (all, and the ``cols`` used), the persistence
        feature, split sizes (and first/last dates for weather), the standardization statistics ``sx``, ``sy``."""
        pers = persistence_column(self.feature_names, self.target_name)
        return {
            "kind": self.kind, "source": self.source, "target": self.target_name, "days": days,
            "all_feature_names": self.feature_names, "feature_names": [self.feature_names[j] for j in cols],
            "feature_index": cols.tolist(), "persistence_feature": None if pers is None else self.feature_names[pers],
            **{f"n_{s}": len(r) for s, r in zip(("train", "valid", "test"), self.splits)},
            **{f"{s}_rows": [self.row_labels[r[0]], self.row_labels[r[-1]]] if self.kind == "weather" else None
               for s, r in zip(("train", "valid", "test"), self.splits)},
            "x_mean": sx.mean.tolist(), "x_std": sx.std.tolist(), "y_mean": float(sy.mean[0]), "y_std": float(sy.std[0]),
        }


def describe_rows(info: dict[str, Any]) -> str:
    """One paragraph on a run's rows, from its data.json (:meth:`RegressionTable.describe`)."""
    d, target = info["days"], info["target"]
    if info["kind"] == "weather":
        return (f"Data: {info['source']} (Seattle, one row a day). Each row is a window of {d} days arranged like HW1: "
                f"all features of days 1-{d - 1} (precipitation mm, temp_max/temp_min °C, wind m/s, weather one-hot) and "
                f"day {d}'s features except the target; label: day {d}'s `{target}`. Split by date: " + ", ".join(
                    f"{s} {info[f'{s}_rows'][0]}..{info[f'{s}_rows'][1]} ({info[f'n_{s}']} rows)" for s in ("train", "valid", "test")) + ".")
    return (f"Data: HW1 file {info['source']} ({info['n_train']} train / {info['n_valid']} valid / {info['n_test']} "
            f"test rows, split at random with the run's seed); target: `{target}`.")


def load_regression_table(data: str | None, test_data: str | None, target: str, days: int,
                          split: Sequence[float], seed: int) -> RegressionTable:
    """seattle-weather windows (``data`` None or a CSV in its format; split in date order) or HW1's training
    file (split at random with ``seed``; ``test_data``, or a ``covid.test.csv`` beside it, read as the test table).

    Raises:
        UserError / DataError: unreadable or malformed files, too few rows.
    """
    if data is None or not is_covid_csv(data):
        x, y, names, dates = weather_windows(load_seattle_weather(data), target, days)
        source = "vega_datasets seattle-weather" if data is None else str(data)
        return RegressionTable("weather", source, x, y, names, target, dates, chronological_split(len(y), split))
    table = read_covid_csv(data, has_target=True)
    test_path = Path(test_data) if test_data else Path(data).with_name("covid.test.csv")
    test_table = None
    if test_data or (test_path.is_file() and test_path.resolve() != Path(data).resolve()):
        test_table = read_covid_csv(test_path, has_target=False, feature_names=table.feature_names)
    return RegressionTable("covid", str(data), table.x, table.y, table.feature_names, table.target_name or "target",
                           [str(i) for i in table.ids], random_split(len(table.y), split, seed), test_table)


def select_features(names: Sequence[str], features: Sequence[str], k_best: int, x_train: np.ndarray,
                    y_train: np.ndarray) -> np.ndarray:
    """Column indices to use (int64, ascending): the ``features`` named (``--features``), else the ``k_best`` most
    correlated with the target on the training rows, else (k_best 0) all.

    Raises:
        UserError: an unknown feature name, or ``k_best`` above the number of columns.
    """
    names = list(names)
    if features:
        unknown = [f for f in features if f not in names]
        if unknown:
            raise UserError(f"--features: unknown name(s) {', '.join(unknown)}; the names are "
                            f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''} (all in data.json of a run)")
        return np.asarray(sorted(names.index(f) for f in features), dtype=np.int64)
    if k_best:
        return k_best_by_correlation(x_train, y_train, k_best)
    return np.arange(len(names), dtype=np.int64)


def read_rows_like(path: str, kind: str, feature_names: Sequence[str], target: str,
                   days: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Rows of another file in a run's format: ``(x, y or None, HW1 ids or None)``. A seattle-weather CSV gives
    every window; a HW1 file is labelled when it has one column more than ``id`` + ``feature_names``.

    Raises:
        UserError / DataError: unreadable file, or not of the run's format.
    """
    if kind == "weather":
        x, y, _, _ = weather_windows(load_seattle_weather(path), target, days)
        return x, y, None
    if not is_covid_csv(path):
        raise UserError(f"--data {path}: not a HW1 CSV (header must start with id), as this run was trained on")
    with open(path, newline="", encoding="utf-8") as f:
        labelled = len(next(csv.reader(f))) == len(feature_names) + 2
    table = read_covid_csv(path, has_target=labelled, feature_names=feature_names)
    return table.x, table.y, table.ids


def load_diabetes(features: int = 10) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's diabetes set (Efron et al. 2004, "Least Angle Regression"): 442 patients, the first
    ``features`` of age, sex, bmi, bp, s1..s6 -> disease progression one year after baseline.

    Returns:
        ``(x (442, features), y (442,), feature names)``, float64, as scikit-learn gives them (not standardized).
    """
    DIABETES.build()
    from sklearn.datasets import load_diabetes as sk_load

    d = sk_load()
    return np.asarray(d.data[:, :features], dtype=np.float64), np.asarray(d.target, dtype=np.float64), \
        list(d.feature_names[:features])


# ----------------------------------------------------------------------------------- deepnotes data entries
@dataclass(frozen=True)
class PackagedDataset:
    """A data file shipped inside a pip package (nothing to download), as ``deepnotes data`` shows it: ``file``
    (a path inside the installed package ``module``, which pip installs as ``pip``), and where it comes from."""

    name: str
    description: str
    pip: str
    module: str
    file: str
    source: str

    def locate(self) -> Path | None:
        """The data file, or None when the package is not installed or lacks it (nothing is imported)."""
        spec = importlib.util.find_spec(self.module)
        path = None if spec is None or spec.origin is None else Path(spec.origin).parent / self.file
        return path if path is not None and path.is_file() else None

    def status(self) -> str:
        path = self.locate()
        return f"present at {path}" if path else f"missing (pip install {self.pip})"

    def how_to_get(self) -> str:
        return "\n".join([f"{self.name}: {self.description}", f"Shipped with the pip package {self.pip}:",
                          f"  pip install {self.pip}", f"Source: {self.source}."])

    def build(self) -> Path:
        """The data file (nothing to build: it comes with the package).

        Raises:
            DataError: the package is not installed (the message names the pip command).
        """
        path = self.locate()
        if path is None:
            raise DataError(f"{self.name} comes with the pip package {self.pip}, which is not installed here: "
                            f"pip install {self.pip}")
        return path


SEATTLE_WEATHER = PackagedDataset(
    "seattle-weather", "Seattle's daily weather 2012-2015: 1,461 days of precipitation, temperatures, wind and "
    "a weather label (regression, generalization)", "vega_datasets", "vega_datasets", "_data/seattle-weather.csv",
    "NOAA, as packaged by vega_datasets")
DIABETES = PackagedDataset(
    "diabetes", "442 diabetes patients: 10 baseline measurements -> disease progression after one year "
    "(critical-points)", "scikit-learn", "sklearn", "datasets/data/diabetes_data_raw.csv.gz",
    "Efron, Hastie, Johnstone, Tibshirani 2004, 'Least Angle Regression', as packaged by scikit-learn")
