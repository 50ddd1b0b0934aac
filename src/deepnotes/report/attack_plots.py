"""Figures of adversarial attacks: accuracy against the budget, and clean / perturbation / adversarial triples."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from deepnotes.report.plots import new_figure, save_figure


def plot_accuracy_vs_eps(curves: Mapping[str, Mapping[str, Sequence[float]]], eps: Sequence[float],
                         path: str | os.PathLike[str], title: str = "") -> Path:
    """One panel per model (``curves[model][attack]`` = accuracies at ``eps``), an attack per line; eps in /255."""
    n = len(curves)
    fig = new_figure(3.2 * n, 2.8)
    axes = fig.subplots(1, n, squeeze=False)[0]
    xs = [255 * e for e in eps]
    for ax, (model, by_attack) in zip(axes, curves.items()):
        for attack, accs in by_attack.items():
            ax.plot(xs, [100 * a for a in accs], marker="o", label=attack)
        ax.set(title=model, xlabel="eps (grey levels of 255)", ylim=(-3, 103))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_bars(labels: Sequence[str], values: Sequence[float], path: str | os.PathLike[str], ylabel: str,
              title: str = "", references: Sequence[float] = ()) -> Path:
    """A bar per label (values in [0, 1], shown in %) with the value written on it; ``references`` as grey lines."""
    fig = new_figure(max(4.0, 1.1 * len(labels)), 3.0)
    ax = fig.subplots()
    bars = ax.bar(range(len(labels)), [100 * v for v in values], color="tab:blue")
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, 100 * v + 1, f"{100 * v:.1f}", ha="center", fontsize=8)
    for r in references:
        ax.axhline(100 * r, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=15)
    ax.set(ylabel=ylabel, ylim=(0, 105), title=title)
    return save_figure(fig, path)


def plot_adversarial_triples(clean: torch.Tensor, adversarial: torch.Tensor, clean_labels: Sequence[str],
                             adversarial_labels: Sequence[str], path: str | os.PathLike[str], title: str = "",
                             amplify: float | None = None) -> Path:
    """Rows: clean image (title: its prediction), perturbation (amplified to fill the grey range), adversarial image
    (title: its prediction, red when it changed). Columns: the images.

    Args:
        clean, adversarial: (N, C, H, W) pixels in [0, 1], C in {1, 3}.
        clean_labels, adversarial_labels: N strings each.
        amplify: the factor on the perturbation; default None: 0.5 / max|delta| (so the largest change reaches
            black or white around mid grey).
    """
    n = len(clean)
    delta = (adversarial - clean).float()
    gain = amplify if amplify is not None else 0.5 / max(float(delta.abs().max()), 1e-12)
    rows = [("clean", clean, clean_labels), (f"perturbation x{gain:.0f}", (0.5 + gain * delta).clamp(0, 1), None),
            ("adversarial", adversarial, adversarial_labels)]
    fig = new_figure(1.6 * n, 5.0)
    axes = fig.subplots(3, n, squeeze=False)
    for r, (name, images, labels) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            img = images[c].detach().cpu().permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if labels is not None:
                changed = r == 2 and adversarial_labels[c] != clean_labels[c]
                ax.set_title(labels[c][:18], fontsize=7, color="#d1242f" if changed else "black")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
