"""Tabular regression data: past days -> tomorrow, arranged like ML2021 HW1.

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

Splits: :func:`chronological_split` (contiguous blocks in date order, no shuffling: the model never
sees the future) and :func:`contiguous_folds` (N-fold cross-validation with folds contiguous in
time, training windows that share days with the validation fold left out). :class:`Standardizer`
is fitted on the training rows only; :func:`k_best_by_correlation` ranks features by
``|corr(x_j, y)|`` on the training rows.

Errors a user can fix (missing file, wrong column count, a non-numeric cell) raise
:class:`~deepnotes.errors.DataError` naming the file, the row and the column.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

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
        DataError: the file is missing, lacks a column, or has a non-numeric or missing value.
    """
    import pandas as pd

    if path is None:
        from vega_datasets import local_data

        frame = local_data.seattle_weather()
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
    try:
        frame["date"] = pd.to_datetime(frame["date"])
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: column date: {e}") from e
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


def make_windows(
    day_matrix: np.ndarray, names: Sequence[str], target: str, days: int = 5
) -> tuple[np.ndarray, np.ndarray, list[str]]:
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


# ----------------------------------------------------------------------------------- splits
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
