"""Tabular data: HW1-style windows, chronological splits and folds, the HW1 CSV reader and submission writer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepnotes.data import tabular
from deepnotes.data.splits import chronological_split, contiguous_folds
from deepnotes.errors import DataError, UserError


def _frame(n: int = 7) -> pd.DataFrame:
    return pd.DataFrame({
        "date": pd.date_range("2020-01-01", periods=n)[::-1],  # given newest first: the loader sorts
        "precipitation": np.arange(n, dtype=float)[::-1] * 1.0,
        "temp_max": 10.0 + np.arange(n)[::-1],
        "temp_min": 0.5 * np.arange(n)[::-1],
        "wind": 100.0 + np.arange(n)[::-1],
        "weather": (["sun", "rain", "fog", "snow", "drizzle", "sun", "rain"] * 3)[:n][::-1],
    })


def test_day_features_one_hot_and_window_arrangement_on_a_hand_made_frame(tmp_path):
    path = tmp_path / "w.csv"
    _frame().to_csv(path, index=False)
    frame = tabular.load_seattle_weather(path)
    assert list(frame["temp_max"]) == [10.0 + i for i in range(7)]  # sorted by date
    days, names = tabular.day_features(frame)
    assert days.shape == (7, 9)
    assert names[4:] == [f"weather={c}" for c in tabular.WEATHER_CLASSES]
    np.testing.assert_array_equal(days[:, 4:].sum(axis=1), 1.0)
    assert days[1, 4 + tabular.WEATHER_CLASSES.index("rain")] == 1.0

    x, y, feat = tabular.make_windows(days, names, "temp_max", days=3)
    assert x.shape == (5, 3 * 9 - 1) and y.shape == (5,)
    assert len(feat) == x.shape[1] and "temp_max_d3" not in feat and "temp_max_d2" in feat and "temp_min_d3" in feat
    # Row i: days i, i+1 complete, day i+2 without temp_max; label temp_max of day i+2.
    for i in range(5):
        np.testing.assert_array_equal(x[i, :9], days[i])
        np.testing.assert_array_equal(x[i, 9:18], days[i + 1])
        np.testing.assert_array_equal(x[i, 18:], np.delete(days[i + 2], 1))
        assert y[i] == days[i + 2, 1]
    # Persistence column = yesterday's target.
    j = tabular.persistence_column(feat, "temp_max")
    assert feat[j] == "temp_max_d2"
    np.testing.assert_array_equal(x[:, j], y - 1.0)


def test_windows_and_loader_errors(tmp_path):
    days, names = tabular.day_features(_frame())
    with pytest.raises(UserError, match="--target"):
        tabular.make_windows(days, names, "humidity")
    with pytest.raises(UserError, match="--days"):
        tabular.make_windows(days, names, "wind", days=1)
    _frame().to_csv(tmp_path / "bad.csv", index=False)
    lines = (tmp_path / "bad.csv").read_text().splitlines()
    cells = lines[4].split(",")
    cells[4] = "windy"  # the wind column
    lines[4] = ",".join(cells)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad.csv: line 5, column wind: 'windy'"):
        tabular.load_seattle_weather(tmp_path / "bad.csv")
    _frame().drop(columns="wind").to_csv(tmp_path / "nowind.csv", index=False)
    with pytest.raises(DataError, match="missing column.*wind"):
        tabular.load_seattle_weather(tmp_path / "nowind.csv")


def test_real_seattle_weather_windows():
    frame = tabular.load_seattle_weather()
    assert len(frame) == 1461 and frame["date"].is_monotonic_increasing
    x, y, feat = tabular.make_windows(*tabular.day_features(frame), "temp_max")
    assert x.shape == (1457, 44) and np.isfinite(x).all()


@pytest.mark.parametrize("n", [10, 101, 1457])
def test_chronological_split_is_contiguous_without_overlap(n):
    tr, va, te = chronological_split(n, (0.7, 0.1, 0.2))
    assert len(set(tr) | set(va) | set(te)) == n == len(tr) + len(va) + len(te)
    assert tr.max() < va.min() and va.max() < te.min()  # date order: train < valid < test
    for part in (tr, va, te):
        np.testing.assert_array_equal(np.diff(part), 1)
    with pytest.raises(UserError, match="sum"):
        chronological_split(n, (0.5, 0.1, 0.1))


def test_contiguous_folds_cover_once_and_keep_a_gap():
    folds = contiguous_folds(23, 4, gap=2)
    valid = np.concatenate([v for _, v in folds])
    np.testing.assert_array_equal(valid, np.arange(23))
    for train, va in folds:
        np.testing.assert_array_equal(np.diff(va), 1)
        assert not set(train) & set(va)
        assert all(t < va.min() - 2 or t > va.max() + 2 for t in train)
    with pytest.raises(UserError, match="--folds"):
        contiguous_folds(23, 1)


def test_standardizer_and_k_best():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 2, 3, 4, 5] + 7
    x[:, 3] = 1.0  # constant
    s = tabular.Standardizer.fit(x)
    z = s.transform(x)
    np.testing.assert_allclose(z[:, [0, 1, 2, 4]].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, [0, 1, 2, 4]].std(0), 1, atol=1e-12)
    assert np.all(z[:, 3] == 0)
    np.testing.assert_allclose(s.inverse(z), x)
    y = 3 * x[:, 4] - 2.0 * x[:, 1] + 0.01 * rng.normal(size=200)
    np.testing.assert_array_equal(tabular.k_best_by_correlation(x, y, 2), [1, 4])
    with pytest.raises(UserError, match="--k-best"):
        tabular.k_best_by_correlation(x, y, 9)


# ----------------------------------------------------------------------------------- HW1 CSV
def _covid_header(train: bool) -> list[str]:
    states = [f"S{i}" for i in range(37)]
    feats = [f"f{j}" for j in range(15)] + ["tested_positive"]
    days = [n if d == 0 else f"{n}.{d}" for d in range(5) for n in feats]
    cols = ["id", *states, *days]
    return cols if train else cols[:-1]


def _write_covid(path, n, train=True, seed=0, mutate=None):
    header = _covid_header(train)
    rng = np.random.default_rng(seed)
    rows = [[str(i)] + [f"{v:.4f}" for v in rng.uniform(0, 20, len(header) - 1)] for i in range(n)]
    if mutate:
        mutate(rows)
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")
    return path


def test_covid_reader_shapes_and_values(tmp_path):
    assert len(_covid_header(True)) == 118 and len(_covid_header(False)) == 117
    train = tabular.read_covid_csv(_write_covid(tmp_path / "covid.train.csv", 6), has_target=True)
    assert train.x.shape == (6, 116) and train.y.shape == (6,) and train.target_name == "tested_positive.4"
    raw = np.loadtxt(tmp_path / "covid.train.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(train.ids, np.arange(6))
    np.testing.assert_allclose(train.x, raw[:, 1:-1])
    np.testing.assert_allclose(train.y, raw[:, -1])
    assert train.feature_names[tabular.persistence_column(train.feature_names, train.target_name)] == "tested_positive.3"
    test = tabular.read_covid_csv(_write_covid(tmp_path / "covid.test.csv", 4, train=False), has_target=False,
                                  feature_names=train.feature_names)
    assert test.x.shape == (4, 116) and test.y is None


def test_covid_reader_names_file_row_and_column_of_bad_cells(tmp_path):
    def short(rows):
        rows[2] = rows[2][:-1]

    def text(rows):
        rows[1][5] = "n/a"

    p = _write_covid(tmp_path / "a.csv", 5, mutate=short)
    with pytest.raises(DataError, match=r"a.csv: line 4: 117 cells, expected 118"):
        tabular.read_covid_csv(p, has_target=True)
    p = _write_covid(tmp_path / "b.csv", 5, mutate=text)
    with pytest.raises(DataError, match=r"b.csv: line 3, column 'S4': 'n/a' is not a number"):
        tabular.read_covid_csv(p, has_target=True)
    with pytest.raises(DataError, match="no such file"):
        tabular.read_covid_csv(tmp_path / "missing.csv", has_target=True)
    p = _write_covid(tmp_path / "t.csv", 3, train=True)
    with pytest.raises(DataError, match="differ from the training"):
        tabular.read_covid_csv(p, has_target=False, feature_names=_covid_header(True)[1:-1])
    (tmp_path / "noid.csv").write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="start with 'id'"):
        tabular.read_covid_csv(tmp_path / "noid.csv", has_target=True)


def test_write_submission_format_and_atomicity(tmp_path):
    path = tabular.write_submission(tmp_path / "sub" / "submission.csv", [0, 1, 2], [1.5, 2.25, 3.0])
    lines = path.read_text().splitlines()
    assert lines[0] == "id,tested_positive"
    assert [tuple(map(float, l.split(","))) for l in lines[1:]] == [(0, 1.5), (1, 2.25), (2, 3.0)]
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="predictions"):
        tabular.write_submission(tmp_path / "x.csv", [0, 1], [1.0])


def test_a_bad_date_is_one_line_naming_the_file_the_line_and_the_fix(tmp_path):
    path = tmp_path / "weather.csv"
    frame = _frame().astype({"date": str})
    frame.loc[2, "date"] = "2012-13-45"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        tabular.load_seattle_weather(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line 4, column date: '2012-13-45' is not a date")
    assert "YEAR-MONTH-DAY" in message


def test_regression_table_of_the_weather_and_of_hw1_files(tmp_path):
    data = tabular.load_regression_table(None, None, "temp_max", 5, (0.7, 0.1, 0.2), seed=0)
    assert data.kind == "weather" and data.x.shape == (1457, 44) and [len(s) for s in data.splits] == [1020, 146, 291]
    assert data.row_labels[data.splits[2][0]] > data.row_labels[data.splits[1][-1]]  # the test days come last
    cols = tabular.select_features(data.feature_names, (), 12, data.x[data.splits[0]], data.y[data.splits[0]])
    assert len(cols) == 12 and list(cols) == sorted(cols)
    assert list(tabular.select_features(data.feature_names, ("wind_d4", "temp_max_d1"), 12, data.x, data.y)) == \
        sorted([data.feature_names.index("wind_d4"), data.feature_names.index("temp_max_d1")])
    with pytest.raises(UserError, match="--features: unknown name"):
        tabular.select_features(data.feature_names, ("humidity_d1",), 0, data.x, data.y)
    sx, sy = tabular.Standardizer.fit(data.x[:, cols]), tabular.Standardizer.fit(data.y[:, None])
    info = data.describe(cols, 5, sx, sy)
    assert info["n_test"] == 291 and info["persistence_feature"] == "temp_max_d4" and len(info["x_mean"]) == 12
    assert "Split by date: train 2012-01-05.." in tabular.describe_rows(info)
    z = sy.tensor(data.y)  # a 1-D target stays 1-D
    assert z.shape == (1457,) and z.dtype.is_floating_point and abs(float(z.mean())) < 1e-5
    np.testing.assert_allclose(sy.inverse(z.double().numpy()), data.y, atol=1e-5)  # float32 round trip
    # HW1 files: rows split at random, the test file beside the training file is found
    train = _write_covid(tmp_path / "covid.train.csv", 20)
    _write_covid(tmp_path / "covid.test.csv", 4, train=False)
    hw1 = tabular.load_regression_table(str(train), None, "temp_max", 5, (0.5, 0.25, 0.25), seed=0)
    assert hw1.kind == "covid" and hw1.test_table is not None and len(hw1.test_table.ids) == 4
    assert sorted(np.concatenate(hw1.splits)) == list(range(20))
    x, y, ids = tabular.read_rows_like(str(tmp_path / "covid.test.csv"), "covid", hw1.feature_names, "", 5)
    assert x.shape == (4, 116) and y is None and list(ids) == [0, 1, 2, 3]
    with pytest.raises(UserError, match="no such file"):
        tabular.load_regression_table(str(tmp_path / "nope.csv"), None, "temp_max", 5, (0.7, 0.1, 0.2), 0)


def test_predictions_csv_round_trip(tmp_path):
    preds = {"linear": np.array([1.0, 2.5]), "least squares": np.array([0.5, 1e-7])}
    tabular.write_predictions(tmp_path / "p.csv", ["2015-01-01", "2015-01-02"], np.array([1.0, 2.0]), preds)
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "row,true,linear,least squares"
    rows, cols = tabular.read_predictions(tmp_path / "p.csv")
    assert rows == ["2015-01-01", "2015-01-02"] and list(cols) == ["true", "linear", "least squares"]
    np.testing.assert_allclose(cols["least squares"], [0.5, 1e-7])
