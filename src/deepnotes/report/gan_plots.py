"""Figures of the image-GAN lab: sample grids, latent interpolations, class histograms, FID over training, and
samples beside their nearest training images.

Source: ML2021 "GAN (3): evaluation of generation" (look at the samples; the class histogram shows mode collapse
and mode dropping; nearest training images show memorization); Radford et al. 2016, section 6.1 (walking in the
latent space: smooth transitions mean the generator has not memorized).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from deepnotes.report.plots import new_figure, save_figure

__all__ = ["plot_class_histograms", "plot_curves", "plot_image_panels", "plot_neighbours"]


def _tile(images: torch.Tensor, cols: int) -> np.ndarray:
    """(N, 1, H, W) pixels in [0, 1] -> one (rows*H, cols*W) mosaic, a one-pixel grey line between images."""
    n, _, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 0.5, dtype=np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = images[k, 0].float().clamp(0, 1).numpy()
    return out


def plot_image_panels(panels: Mapping[str, tuple[torch.Tensor, int]], path: str | os.PathLike[str],
                      title: str = "", row_labels: Mapping[str, Sequence[str]] | None = None) -> Path:
    """One mosaic per panel, side by side: e.g. every variant's samples, or its latent interpolations.

    Args:
        panels: panel title -> (images (N, 1, H, W) pixels in [0, 1], columns).
        path: the PNG written. title: the figure's title.
        row_labels: panel title -> a label per mosaic row (e.g. the class asked for); default none.

    Raises:
        ValueError: no panel.
    """
    if not panels:
        raise ValueError("plot_image_panels needs at least one panel")
    fig = new_figure(3.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, (images, cols)) in zip(axes, panels.items()):
        mosaic = _tile(images, cols)
        ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        labels = (row_labels or {}).get(name)
        if labels:
            h = images.shape[-2] + 1
            ax.set_yticks([h * i + h / 2 - 1 for i in range(len(labels))])
            ax.set_yticklabels(labels, fontsize=6)
        else:
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_class_histograms(shares: Mapping[str, Sequence[float]], classes: Sequence[str],
                          path: str | os.PathLike[str], title: str = "") -> Path:
    """Grouped bars: the share of samples a classifier puts in each class, one colour per source (variants, real).

    Args:
        shares: source name -> K shares. classes: K class names. path: the PNG. title: the axes' title.
    """
    k = len(classes)
    fig = new_figure(max(6.0, 0.75 * k + 1.5), 3.4)
    ax = fig.subplots()
    width = 0.8 / max(1, len(shares))
    for i, (name, s) in enumerate(shares.items()):
        ax.bar(np.arange(k) + (i - (len(shares) - 1) / 2) * width, s, width, label=name)
    ax.axhline(1 / k, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(k))
    ax.set_xticklabels([c[:10] for c in classes], rotation=30, fontsize=7)
    ax.set_ylabel("share of samples")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_curves(curves: Mapping[str, Sequence[float]], path: str | os.PathLike[str], ylabel: str,
                floor: float | None = None, title: str = "", log: bool | None = None) -> Path:
    """One line per name over epochs (1-based), and an optional dotted floor (e.g. the real-vs-real FID). ``log``:
    a logarithmic y axis; None: log when every value is positive (FID, losses), False for accuracies."""
    fig = new_figure(5.5, 3.4)
    ax = fig.subplots()
    for name, ys in curves.items():
        if ys:
            ax.plot(range(1, len(ys) + 1), ys, marker="o", markersize=3, label=name)
    if floor is not None:
        ax.axhline(floor, color="grey", linestyle=":", linewidth=1, label="real vs real")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    positive = any(ys for ys in curves.values()) and min(min(ys) for ys in curves.values() if ys) > 0
    if positive if log is None else log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_neighbours(rows: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                    path: str | os.PathLike[str], title: str = "") -> Path:
    """Each row: a sample, then its nearest training images with their distances.

    Args:
        rows: row label -> (sample (1, H, W), neighbours (k, 1, H, W), distances (k,)).
        path: the PNG. title: the figure's title.
    """
    k = max(len(n) for _, n, _ in rows.values())
    fig = new_figure(1.0 * (k + 1) + 1.2, 1.05 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), k + 1, squeeze=False)
    for r, (label, (sample, neigh, dist)) in enumerate(rows.items()):
        axes[r][0].imshow(sample[0].float().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_ylabel(label, fontsize=6)
        for j in range(k + 1):
            axes[r][j].set_xticks([])
            axes[r][j].set_yticks([])
        for j in range(len(neigh)):
            axes[r][j + 1].imshow(neigh[j, 0].float().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r][j + 1].set_title(f"d = {float(dist[j]):.2f}", fontsize=6)
    axes[0][0].set_title("sample", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
