"""PNG figures for run reports: learning curves, confusion matrix, image grid, LR schedule.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg canvas), never through
``pyplot``: no display is needed, no global backend is switched, and no figure outlives the call.
Each function writes one PNG atomically through :func:`deepnotes.io.atomic_path` (the file is
either the previous version or the complete new one) and returns the path it wrote.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from deepnotes.io import atomic_path
from deepnotes.metrics.classification import mistakes_first_order, to_numpy

__all__ = ["DPI", "plot_learning_curves", "plot_confusion_matrix", "plot_image_grid", "plot_lr_schedule"]

DPI = 110
"""Resolution of every PNG written here."""

# One colour per data split, the same in every panel, so "val" is the same colour for loss and acc.
_SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "valid": "tab:orange", "test": "tab:green"}
_OTHER_COLORS = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]
_CORRECT_COLOR = "#1a7f37"  # dark green, readable on white
_MISTAKE_COLOR = "#d1242f"  # red


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure of ``width`` x ``height`` inches at :data:`DPI`, on the Agg canvas (no GUI, thread-safe)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (temporary name, then rename); return the path."""
    final = Path(path)
    with atomic_path(final) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return final


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _series(rows: Sequence[Mapping[str, Any]], xs: list[float], key: str) -> tuple[list[float], list[float]]:
    """(x, y) for the rows whose ``key`` is a finite number; None/""/nan are skipped."""
    px, py = [], []
    for x, r in zip(xs, rows):
        v = r.get(key)
        if _is_number(v):
            px.append(x)
            py.append(float(v))
    return px, py


def _color_for(key: str, suffix: str, others: dict[str, str]) -> str:
    split = key[: -len(suffix)] if key.endswith(suffix) else key
    if split in _SPLIT_COLORS:
        return _SPLIT_COLORS[split]
    if split not in others:
        others[split] = _OTHER_COLORS[len(others) % len(_OTHER_COLORS)]
    return others[split]


def _use_log_scale(values: Sequence[float]) -> bool:
    pos = [v for v in values if v > 0]
    return len(pos) == len(values) and len(pos) > 1 and max(pos) / min(pos) > 50


def _last_row_per_epoch(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows sorted by epoch, keeping the last row written for each epoch (a resumed run may
    repeat epochs); rows without a numeric epoch keep their place after the others."""
    if not any(_is_number(r.get("epoch")) for r in rows):
        return list(rows)
    by_epoch: dict[float, Mapping[str, Any]] = {}
    rest = []
    for r in rows:
        if _is_number(r.get("epoch")):
            by_epoch[float(r["epoch"])] = r
        else:
            rest.append(r)
    return [by_epoch[e] for e in sorted(by_epoch)] + rest


def plot_learning_curves(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
                         title: str | None = None) -> Path:
    """Plot a run's learning curves as one PNG with up to three panels side by side.

    * **loss**: every column ending in ``_loss`` (``train_loss``, ``val_loss``, ...) against epoch.
    * **accuracy (%)**: every column ending in ``_acc``. If no accuracy value exceeds 1.0 the
      values are taken as fractions and multiplied by 100; otherwise they are taken as percent
      already. The best value of each ``val*``/``test*`` accuracy is marked and labelled.
    * **learning rate**: the ``lr`` column, if there is one (linear axis, so warm-up and cosine
      shapes read as they are).

    The loss axis turns logarithmic when the plotted losses span more than 50x (all positive).

    Rows are sorted by epoch; when an epoch appears more than once (a run resumed from an
    earlier checkpoint) the last row written for it wins. A panel is left out when it has no column. Each split keeps its colour across panels
    (train blue, val orange, test green). Cells that are ``None``, empty or not finite are
    skipped, so a validation run every few epochs plots fine.

    Args:
        rows: metrics rows, e.g. from :func:`read_metrics_csv`, one dict per epoch.
        path: the PNG to write (parent directories are created).
        title: figure title (default: none).

    Returns:
        ``Path(path)``.

    Shapes:
        x axis: the ``epoch`` column when present, else the row number starting at 1.

    Raises:
        ValueError: ``rows`` is empty, or has no ``*_loss``, ``*_acc`` or ``lr`` column with a number.

    Example::

        plot_learning_curves(read_metrics_csv(run / "metrics.csv"), run / "curves.png", title="MNIST MLP")
    """
    if not rows:
        raise ValueError("rows is empty: there are no metrics to plot (did the run finish an epoch?)")
    rows = _last_row_per_epoch(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    xs = [float(r["epoch"]) if _is_number(r.get("epoch")) else float(i + 1) for i, r in enumerate(rows)]
    xlabel = "epoch" if any(_is_number(r.get("epoch")) for r in rows) else "row"

    def numeric_cols(suffix: str) -> list[str]:
        return [k for k in keys if k.endswith(suffix) and _series(rows, xs, k)[1]]

    loss_cols = numeric_cols("_loss")
    acc_cols = numeric_cols("_acc")
    has_lr = "lr" in keys and bool(_series(rows, xs, "lr")[1])
    panels = [name for name, on in (("loss", loss_cols), ("acc", acc_cols), ("lr", has_lr)) if on]
    if not panels:
        raise ValueError(
            f"rows has no numeric *_loss, *_acc or lr column to plot (columns: {', '.join(keys) or 'none'})"
        )

    fig = new_figure(4.6 * len(panels), 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    others: dict[str, str] = {}
    marker = "o" if len(rows) <= 30 else None
    for ax, panel in zip(axes, panels):
        if panel == "loss":
            all_y: list[float] = []
            for k in loss_cols:
                px, py = _series(rows, xs, k)
                all_y += py
                ax.plot(px, py, marker=marker, ms=3, lw=1.6, color=_color_for(k, "_loss", others), label=k)
            if _use_log_scale(all_y):
                ax.set_yscale("log")
            ax.set_title("loss")
            ax.set_ylabel("loss")
        elif panel == "acc":
            series = {k: _series(rows, xs, k) for k in acc_cols}
            scale = 100.0 if max(max(py) for _, py in series.values()) <= 1.0 else 1.0
            for k, (px, py) in series.items():
                pct = [scale * v for v in py]
                color = _color_for(k, "_acc", others)
                ax.plot(px, pct, marker=marker, ms=3, lw=1.6, color=color, label=k)
                if k.startswith(("val", "test")):
                    i = int(np.argmax(pct))
                    ax.plot([px[i]], [pct[i]], marker="*", ms=12, color=color, mec="black", mew=0.6, zorder=5)
                    ax.annotate(f"best {pct[i]:.2f}%", (px[i], pct[i]), textcoords="offset points", xytext=(0, -14),
                                ha="right" if px[i] > (min(xs) + max(xs)) / 2 else "left", fontsize=8, color=color)
            ax.set_title("accuracy")
            ax.set_ylabel("accuracy (%)")
        else:
            px, py = _series(rows, xs, "lr")
            ax.plot(px, py, marker=marker, ms=3, lw=1.6, color="tab:gray", label="lr")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
            ax.set_title("learning rate")
            ax.set_ylabel("lr")
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if panel != "lr":
            ax.legend(fontsize=8, loc="best")
        if xlabel == "epoch" and max(xs) - min(xs) <= 20:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(cm: Any, classes: Sequence[str], path: str | os.PathLike[str],
                          title: str | None = None) -> Path:
    """Plot a confusion matrix as a heat map: rows true class, columns predicted class.

    Each cell's colour is its row-normalized rate ``cm[i, j] / cm[i].sum()`` (so the diagonal
    is the per-class recall, and classes of different sizes compare fairly; a class with no
    samples is a row of zeros); the raw count is written in the cell (omitted when K > 40, where
    the text would not fit). Zero cells are left blank. Column names are rotated 45 degrees.
    The title line gives the overall accuracy and N.

    Args:
        cm: (K, K) counts, e.g. from :func:`confusion_matrix`; numpy array, list or tensor.
        classes: K class names, in label order.
        path: the PNG to write.
        title: text before the accuracy in the title (default: ``"confusion matrix"``).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``cm`` is not a square 2-D matrix, has negative entries, or ``len(classes)``
            differs from K.
    """
    m = to_numpy(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"cm must be a square (K, K) matrix of counts, got shape {tuple(m.shape)}")
    k = m.shape[0]
    if len(classes) != k:
        raise ValueError(f"classes has {len(classes)} names but cm is {k}x{k}; pass one name per class")
    if np.any(m < 0):
        raise ValueError("cm has negative entries; it must hold counts")
    row_sums = m.sum(axis=1, keepdims=True).astype(np.float64)
    rate = np.divide(m, row_sums, out=np.zeros(m.shape, dtype=np.float64), where=row_sums > 0)

    side = min(max(4.5, 0.45 * k + 2.5), 22.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.subplots()
    im = ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of the true class (row-normalized)")

    # Cells stay about 0.45 in wide up to K ~ 43 (the figure grows with K), so fonts need not shrink much.
    label_size = 10 if k <= 25 else 9
    names = [str(c) for c in classes]
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor", fontsize=label_size)
    ax.set_yticklabels(names, fontsize=label_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 40:
        count_size = 9 if k <= 12 else 8
        for i in range(k):
            for j in range(k):
                if m[i, j] == 0:
                    continue
                ax.text(j, i, f"{int(m[i, j])}" if float(m[i, j]).is_integer() else f"{m[i, j]:.3g}", ha="center",
                        va="center", fontsize=count_size, color="white" if rate[i, j] > 0.5 else "black")
    total = float(m.sum())
    acc = float(np.trace(m)) / total if total > 0 else float("nan")
    head = title or "confusion matrix"
    ax.set_title(f"{head}\naccuracy {100 * acc:.2f}%  (N={int(total)})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _images_hwc(images: Any) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) -> float (N, H, W, C) in [0, 1]."""
    a = to_numpy(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C in {{1, 3}} (or (N, H, W)), got shape {tuple(a.shape)}")
    if a.dtype == np.uint8:
        out = a.astype(np.float32) / 255.0
    else:
        out = a.astype(np.float32)
        finite = out[np.isfinite(out)]
        if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
            # Not in [0, 1] (e.g. normalized by mean/std): stretch each image to [0, 1] for display.
            lo = np.nanmin(out, axis=(1, 2, 3), keepdims=True)
            hi = np.nanmax(out, axis=(1, 2, 3), keepdims=True)
            out = (out - lo) / np.where(hi > lo, hi - lo, 1.0)
        out = np.clip(np.nan_to_num(out), 0.0, 1.0)
    return out.transpose(0, 2, 3, 1)


def _short(name: str, limit: int = 12) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_image_grid(images: Any, true: Any, pred: Any, classes: Sequence[str] | None, path: str | os.PathLike[str],
                    ncols: int = 8, max_images: int = 48, title: str | None = None) -> Path:
    """Plot a grid of sample images with their predictions, mistakes first.

    Samples are ordered by :func:`mistakes_first_order` (misclassified ones first, then correct
    ones, each group in original order) and the first ``max_images`` are drawn, ``ncols`` per
    row. Each tile is titled ``"pred / true"``: red for a mistake, dark green when correct.
    The figure title says how many are shown and how many of them are mistakes.

    Pixel values: ``uint8`` is shown as 0..255; floats already in [0, 1] as they are; other
    floats (e.g. mean/std-normalized inputs) are min-max stretched per image. C=1 is drawn in
    grayscale (white = 1), C=3 as RGB.

    Args:
        images: (N, C, H, W) with C in {1, 3}, or (N, H, W); uint8 or float; array or tensor.
        true: (N,) true labels.
        pred: (N,) predicted labels.
        classes: names indexed by label; ``None`` writes the label numbers.
        path: the PNG to write.
        ncols: tiles per row (default 8).
        max_images: at most this many tiles (default 48).
        title: text before the counts in the figure title (default: none).

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``images`` has a wrong shape or is empty; ``true``/``pred`` length differs
            from N; ``ncols`` or ``max_images`` < 1.
    """
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    imgs = to_numpy(images)
    n = imgs.shape[0] if imgs.ndim else 0
    if n == 0:
        raise ValueError("images is empty: pass at least one (C, H, W) image")
    t = to_numpy(true).reshape(-1)
    p = to_numpy(pred).reshape(-1)
    if t.shape[0] != n:
        raise ValueError(f"true has {t.shape[0]} labels but images has {n}")
    if p.shape[0] != n:
        raise ValueError(f"pred has {p.shape[0]} labels but images has {n}")
    order = mistakes_first_order(t, p)[:max_images]
    hwc = _images_hwc(imgs[order])
    t, p = t[order].astype(np.int64), p[order].astype(np.int64)

    def name(label: int) -> str:
        if classes is not None and 0 <= label < len(classes):
            return _short(str(classes[label]))
        return str(label)

    shown = len(order)
    cols = min(ncols, shown)
    nrows = math.ceil(shown / cols)
    tile = 1.45
    fig = new_figure(cols * tile, nrows * (tile + 0.22) + 0.5)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for idx, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if idx >= shown:
            continue
        img = hwc[idx]
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        wrong = t[idx] != p[idx]
        ax.set_title(f"{name(p[idx])} / {name(t[idx])}", fontsize=8, color=_MISTAKE_COLOR if wrong else _CORRECT_COLOR,
                     fontweight="bold" if wrong else "normal")
    n_wrong = int(np.sum(t != p))
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}pred / true — {shown} of {n} shown, {n_wrong} mistakes first (red)",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_lr_schedule(lrs: Sequence[float], path: str | os.PathLike[str], title: str | None = None,
                     log_y: bool = False) -> Path:
    """Plot a learning-rate schedule: ``lrs[i]`` is the LR used at optimizer step ``i``.

    Args:
        lrs: one LR per step (any sequence of numbers, array or tensor).
        path: the PNG to write.
        title: figure title (default: ``"learning-rate schedule"``).
        log_y: logarithmic LR axis (default False: linear, which shows warm-up and cosine
            shapes as they are; use True for step decays over several decades). Ignored when
            some LR is <= 0.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: ``lrs`` is empty or not 1-D.
    """
    y = to_numpy(lrs).astype(np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"lrs must be a non-empty 1-D sequence of learning rates, got shape {tuple(y.shape)}")
    fig = new_figure(5.5, 3.2)
    ax = fig.subplots()
    ax.plot(np.arange(y.size), y, lw=1.6, color="tab:blue")
    if log_y and np.all(y > 0):
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title or "learning-rate schedule", fontsize=11)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
