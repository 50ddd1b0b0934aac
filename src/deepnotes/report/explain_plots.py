"""Figures of explanations: attribution maps over their images, rows of images, lines, a 2-D embedding."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from deepnotes.report.plots import new_figure, save_figure


def _hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) grey or (H, W, 3) colour for imshow."""
    img = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


def _heat(attribution: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, H, W) attribution -> (H, W) |map| summed over channels, scaled to [0, 1] by its 99th
    percentile (one saturated pixel does not wash out the rest)."""
    a = attribution.detach().float().cpu().abs().sum(0).numpy()
    top = float(np.percentile(a, 99)) or float(a.max()) or 1.0
    return np.clip(a / top, 0, 1)


def plot_attribution_maps(images: torch.Tensor, maps: Mapping[str, torch.Tensor], path: str | os.PathLike[str],
                          column_titles: Sequence[str] = (), title: str = "") -> Path:
    """Row 0 the images, then one row per method: its |map| as a heat map over the faded image.

    Args:
        images: (N, C, H, W) pixels in [0, 1]. maps: method -> (N, C or 1, H, W) attributions.
    """
    n, rows = len(images), 1 + len(maps)
    fig = new_figure(1.35 * n + 0.8, 1.35 * rows)
    axes = fig.subplots(rows, n, squeeze=False)
    for c in range(n):
        axes[0][c].imshow(_hwc(images[c]), cmap="gray", vmin=0, vmax=1)
        if c < len(column_titles):
            axes[0][c].set_title(column_titles[c][:16], fontsize=7)
        for r, (method, m) in enumerate(maps.items(), start=1):
            axes[r][c].imshow(_hwc(images[c]), cmap="gray", vmin=0, vmax=1, alpha=0.35)
            axes[r][c].imshow(_heat(m[c]), cmap="inferno", vmin=0, vmax=1, alpha=0.75)
    for r, name in enumerate(["input", *maps]):
        axes[r][0].set_ylabel(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_image_rows(rows: Mapping[str, torch.Tensor], path: str | os.PathLike[str], column_titles: Sequence[str] = (),
                    title: str = "", stretch: bool = False) -> Path:
    """One row of images per entry (N, C, H, W); ``stretch`` min-max scales each image (filters, signed values)."""
    n = max(len(v) for v in rows.values())
    fig = new_figure(1.1 * n + 0.8, 1.2 * len(rows))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            img = images[c].detach().float().cpu()
            if stretch:
                img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)
            ax.imshow(_hwc(img), cmap="gray", vmin=0, vmax=1)
            if r == 0 and c < len(column_titles):
                ax.set_title(column_titles[c][:14], fontsize=7)
        axes[r][0].set_ylabel(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_lines(series: Mapping[str, tuple[Sequence, Sequence[float]]], path: str | os.PathLike[str], xlabel: str,
               ylabel: str, title: str = "", ylim: tuple[float, float] | None = None) -> Path:
    """One line per series (x labels may be strings: the layers of a network)."""
    fig = new_figure(6.0, 3.2)
    ax = fig.subplots()
    for name, (xs, ys) in series.items():
        ax.plot(range(len(xs)), ys, marker="o", label=name)
        ticks = list(xs)
    ax.set_xticks(range(len(ticks)), [str(t) for t in ticks], rotation=30, fontsize=7, ha="right")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_embedding(points: Mapping[str, np.ndarray], labels: np.ndarray, classes: Sequence[str],
                   path: str | os.PathLike[str], title: str = "") -> Path:
    """One panel per 2-D embedding (name -> (N, 2)), points coloured by class."""
    fig = new_figure(4.2 * len(points), 4.0)
    axes = fig.subplots(1, len(points), squeeze=False)[0]
    for ax, (name, xy) in zip(axes, points.items()):
        for k, cls in enumerate(classes):
            sel = labels == k
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, label=cls)
        ax.set(title=name, xticks=[], yticks=[])
    axes[-1].legend(fontsize=6, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
