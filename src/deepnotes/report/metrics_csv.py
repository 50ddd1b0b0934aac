"""The per-epoch metrics file of a run: one CSV row per epoch, read back with numbers parsed.

The training engine calls :func:`append_metrics_row` once per epoch with keys such as ``epoch``,
``step``, ``lr``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``epoch_time_s`` and
``throughput`` (images/s). The report reads the file with :func:`read_metrics_csv`.

Every write rewrites the whole file through :func:`deepnotes.io.atomic_path` (temporary file +
rename), so a run killed mid-write leaves the previous, complete file. The file stays small (one
row per epoch), so the rewrite costs nothing that matters.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

from deepnotes.errors import DataError
from deepnotes.io import atomic_path

__all__ = ["read_metrics_csv", "append_metrics_row"]

Cell = float | int | str | None

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|nan|inf|infinity)$", re.I)


def _parse_cell(text: str) -> Cell:
    """``""`` -> None, ``"3"`` -> 3, ``"0.25"``/``"1e-3"``/``"nan"`` -> float, anything else -> str."""
    s = text.strip()
    if s == "":
        return None
    if _INT_RE.match(s):
        return int(s)
    if _FLOAT_RE.match(s):
        return float(s)
    return text


def _format_cell(value: Any) -> str:
    """Text for one CSV cell: floats in shortest round-trip form, None -> empty, bool -> 0/1."""
    if value is None:
        return ""
    if hasattr(value, "item") and callable(value.item):  # numpy scalar or 0-d torch tensor
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)
    return str(value)


def read_metrics_csv(path: str | os.PathLike[str]) -> list[dict[str, Cell]]:
    """Read a metrics CSV written by :func:`append_metrics_row`.

    Args:
        path: the CSV file; the first line is the header.

    Returns:
        One dict per data row, keys in header order. Integers become ``int``, other numbers
        (``1e-3``, ``nan``, ``inf``) ``float``, empty cells ``None``, anything else stays ``str``.
        A row shorter than the header (written before a column was added) gets ``None`` for
        the missing cells.

    Raises:
        DataError: the file does not exist, has no header, or a row has more cells than the header.

    Example::

        rows = read_metrics_csv("runs/mnist-mlp/metrics.csv")
        best = max(r["val_acc"] for r in rows if r["val_acc"] is not None)
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"metrics file not found: {p} (train the run first, or check the run directory)")
    header, rows = _read_cells(p, header_required=True)
    return [{k: _parse_cell(c) for k, c in zip(header, cells)} for cells in rows]


def _read_cells(p: Path, header_required: bool) -> tuple[list[str], list[list[str]]]:
    """The header and the non-empty rows of the CSV ``p``, each row padded with "" to the header's length.

    Raises:
        DataError: no header (when ``header_required``), or a row has more cells than the header.
    """
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        if not header and header_required:
            raise DataError(f"metrics file {p} is empty or has no header line")
        rows = []
        for line_no, cells in enumerate(reader, start=2):
            if len(cells) > len(header):
                raise DataError(f"metrics file {p}, line {line_no}: {len(cells)} cells but the header has "
                                f"{len(header)} columns (the file is corrupt; delete the line or the file)")
            if cells:
                rows.append(cells + [""] * (len(header) - len(cells)))
    return header, rows


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def append_metrics_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """Append one row to the metrics CSV at ``path``, atomically.

    A new file gets a header made of ``row``'s keys in their order. For an existing file the
    columns keep their order; keys of ``row`` that are not in the header are added at the end
    (earlier rows get empty cells there) and the file is rewritten with the widened header.
    Keys of the header missing from ``row`` get empty cells. Values: ``None`` -> empty cell,
    floats in shortest exact form, bools as 0/1, numpy scalars and 0-d tensors via ``.item()``.

    Args:
        path: the CSV file (its directory is created if needed).
        row: column name -> value, e.g. ``{"epoch": 3, "train_loss": 0.21, "val_acc": 0.97}``.

    Raises:
        ValueError: ``row`` is empty or has a key that is not a non-empty string.
        DataError: the existing file cannot be read as a metrics CSV (see :func:`read_metrics_csv`).
    """
    if not row:
        raise ValueError("row is empty: pass at least one column, e.g. {'epoch': 1, 'train_loss': 0.5}")
    for key in row:
        if not isinstance(key, str) or not key:
            raise ValueError(f"row has key {key!r}; column names must be non-empty strings")
    p = Path(path)
    header, old_rows = _read_cells(p, header_required=False) if p.is_file() and p.stat().st_size > 0 else ([], [])
    header = header + [k for k in row if k not in header]
    old_rows = [cells + [""] * (len(header) - len(cells)) for cells in old_rows]
    new_cells = [_format_cell(row.get(k)) for k in header]
    text = _csv_text(header, old_rows + [new_cells])
    with atomic_path(p) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
