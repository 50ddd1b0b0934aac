"""Tests for deepnotes.report.metrics_csv: round trip, widened header, atomic rewrite."""

import math
import os

import numpy as np
import pytest

from deepnotes.errors import DataError
from deepnotes.report import append_metrics_row, read_metrics_csv
from deepnotes.report import metrics_csv


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_round_trip_parses_numbers(tmp_path):
    path = tmp_path / "run" / "metrics.csv"  # parent created on first write
    rows = [
        {"epoch": 1, "step": 469, "lr": 0.1, "train_loss": 0.6931471805599453, "val_acc": 0.9123, "note": "warm"},
        {"epoch": 2, "step": 938, "lr": 1e-05, "train_loss": float("nan"), "val_acc": None, "note": "a,b \"q\""},
    ]
    for r in rows:
        append_metrics_row(path, r)
    got = read_metrics_csv(path)
    assert list(got[0]) == ["epoch", "step", "lr", "train_loss", "val_acc", "note"]
    assert got[0] == rows[0]  # floats are written exactly (repr) and read back equal
    assert isinstance(got[0]["epoch"], int) and isinstance(got[0]["lr"], float)
    assert got[1]["lr"] == 1e-05
    assert math.isnan(got[1]["train_loss"])
    assert got[1]["val_acc"] is None  # empty cell
    assert got[1]["note"] == 'a,b "q"'  # quoted by csv, comes back whole
    assert path.read_text().splitlines()[0] == "epoch,step,lr,train_loss,val_acc,note"
    assert _leftovers(path.parent) == []


def test_numpy_and_bool_values(tmp_path):
    path = tmp_path / "m.csv"
    append_metrics_row(path, {"epoch": np.int64(3), "loss": np.float32(0.5), "best": True})
    assert read_metrics_csv(path) == [{"epoch": 3, "loss": 0.5, "best": 1}]


def test_widened_header_keeps_order_and_old_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    append_metrics_row(path, {"epoch": 1, "train_loss": 1.0})
    append_metrics_row(path, {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "val_acc": 0.8})
    append_metrics_row(path, {"val_acc": 0.9, "epoch": 3})  # other key order, a column missing
    lines = path.read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_loss,val_acc"
    assert lines[1] == "1,1.0,,"
    assert lines[3] == "3,,,0.9"
    got = read_metrics_csv(path)
    assert [r["epoch"] for r in got] == [1, 2, 3]
    assert got[0]["val_loss"] is None and got[1]["val_loss"] == 0.7 and got[2]["train_loss"] is None
    assert _leftovers(tmp_path) == []


def test_short_rows_read_as_none(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("epoch,loss,acc\n1,0.5\n\n2,0.4,0.9\n")
    assert read_metrics_csv(path) == [{"epoch": 1, "loss": 0.5, "acc": None}, {"epoch": 2, "loss": 0.4, "acc": 0.9}]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    append_metrics_row(path, {"epoch": 1, "loss": 1.0})
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(metrics_csv.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        append_metrics_row(path, {"epoch": 2, "loss": 0.5, "acc": 0.9})
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    assert os.listdir(tmp_path) == ["metrics.csv"]


def test_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_metrics_csv(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="no header"):
        read_metrics_csv(tmp_path / "empty.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2,3\n")
    with pytest.raises(DataError, match="line 2"):
        read_metrics_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="row is empty"):
        append_metrics_row(tmp_path / "m.csv", {})
    with pytest.raises(ValueError, match="row has key"):
        append_metrics_row(tmp_path / "m.csv", {"": 1})
