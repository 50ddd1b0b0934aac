"""Markdown snippets for run reports: tables of numbers and image links (GitHub-flavoured Markdown)."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import PurePath
from typing import Any, Sequence

__all__ = ["format_number", "markdown_table", "markdown_image"]


def format_number(value: Any, digits: int = 4) -> str:
    """Text for one table cell.

    * ``None`` -> ``""``; strings pass through; bools -> ``True``/``False``; ints as they are.
    * floats: ``digits`` significant digits (``0.123456`` -> ``0.1235``, ``1e-05`` stays short),
      except magnitudes in ``[1e4, 1e15)`` which are rounded to an integer (``12345.6`` ->
      ``12346``, e.g. throughput in images/s) instead of going to ``1.235e+04``;
      ``nan``/``inf`` as ``nan``/``inf``/``-inf``.
    * numpy scalars and 0-d tensors are unwrapped with ``.item()``.
    """
    if value is None:
        return ""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        x = float(value)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if 1e4 <= abs(x) < 1e15:
            return f"{x:.0f}"
        return f"{x:.{digits}g}"
    return str(value)


def _escape_cell(text: str) -> str:
    return text.replace("\\|", "|").replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def _is_numeric(value: Any) -> bool:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    return isinstance(value, Real) and not isinstance(value, bool)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table, columns padded so the raw text also reads well.

    Numbers go through :func:`format_number` (``digits`` significant digits, default 4);
    strings pass through with ``|`` escaped and newlines turned into spaces; ``None`` is an
    empty cell. A column whose non-empty cells are all numbers is right-aligned.

    Args:
        headers: column titles, e.g. ``["epoch", "val_loss", "val_acc"]``.
        rows: one sequence per row, each as long as ``headers``.
        digits: significant digits for floats.

    Returns:
        The table, lines joined with ``"\\n"``, ending in a newline.

    Raises:
        ValueError: ``headers`` is empty, or a row's length differs from ``len(headers)``
            (the message names the row index).

    Example::

        >>> print(markdown_table(["model", "acc"], [["mlp", 0.97812], ["cnn", 0.99125]]), end="")
        | model |    acc |
        | :---- | -----: |
        | mlp   | 0.9781 |
        | cnn   | 0.9912 |
    """
    headers = [str(h) for h in headers]
    if not headers:
        raise ValueError("headers is empty: pass at least one column title")
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"rows[{i}] has {len(row)} cells but headers has {len(headers)} columns")
    cells = [[_escape_cell(format_number(v, digits)) for v in row] for row in rows]
    numeric = [any(row[j] is not None for row in rows)
               and all(row[j] is None or _is_numeric(row[j]) for row in rows)
               for j in range(len(headers))]
    heads = [_escape_cell(h) for h in headers]
    widths = [max([len(heads[j]), 3] + [len(r[j]) for r in cells]) for j in range(len(headers))]

    def line(parts: list[str]) -> str:
        return "| " + " | ".join(parts) + " |"

    def pad(text: str, j: int) -> str:
        return text.rjust(widths[j]) if numeric[j] else text.ljust(widths[j])

    sep = [("-" * (widths[j] - 1) + ":") if numeric[j] else (":" + "-" * (widths[j] - 1)) for j in range(len(headers))]
    out = [line([pad(h, j) for j, h in enumerate(heads)]), line(sep)]
    out += [line([pad(c, j) for j, c in enumerate(r)]) for r in cells]
    return "\n".join(out) + "\n"


def markdown_image(alt: str, relpath: str | os.PathLike[str]) -> str:
    """``![alt](relpath)``: an image link, relative to the Markdown file that holds it.

    ``relpath`` is written with forward slashes; a path containing spaces or parentheses is
    wrapped in ``<...>`` so Markdown renderers keep it whole; ``[``/``]`` in ``alt`` are escaped.

    Example::

        >>> markdown_image("learning curves", "figures/curves.png")
        '![learning curves](figures/curves.png)'
    """
    path = PurePath(relpath).as_posix() if isinstance(relpath, os.PathLike) else str(relpath).replace("\\", "/")
    if any(ch in path for ch in " ()<>"):
        path = "<" + path.replace("<", "%3C").replace(">", "%3E") + ">"
    alt_text = str(alt).replace("[", "\\[").replace("]", "\\]").replace("\n", " ")
    return f"![{alt_text}]({path})"
