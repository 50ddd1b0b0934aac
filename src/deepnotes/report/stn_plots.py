"""Figures of the spatial-transformer lab: inputs beside the transformer's outputs, and errors per distortion.

Source: Jaderberg et al. 2015, "Spatial Transformer Networks", figure 3 (distorted digits and what the transformer
made of them) and Table 1 (test error per distortion); ML2021 Spring (Hung-yi Lee), "Spatial Transformer Layer".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from deepnotes.report.plots import new_figure, save_figure

_MODEL_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def plot_transformer_outputs(inputs: torch.Tensor, outputs: Mapping[str, torch.Tensor], path: str | os.PathLike[str],
                             title: str = "", labels: Sequence[str] = ()) -> Path:
    """A grid: the first row holds the inputs, each next row the transformer's outputs for them at one moment.

    Args:
        inputs: (N, 1, H, W) pixels in [0, 1].
        outputs: row name (``"epoch 3"``) -> (N, 1, H', W') pixels of the same N images; H' may differ from H.
        path: the PNG written.
        title: the figure's title; default none.
        labels: N strings shown above the inputs (e.g. the classes); default none.

    Raises:
        ValueError: an output row with another number of images than ``inputs``.
    """
    n = len(inputs)
    for name, images in outputs.items():
        if len(images) != n:
            raise ValueError(f"outputs[{name!r}] holds {len(images)} images, inputs {n}")
    rows = [("input", inputs)] + list(outputs.items())
    fig = new_figure(1.0 * n + 0.6, 1.05 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c, 0].detach().float().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and labels:
                ax.set_title(str(labels[c]), fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_error_bars(groups: Sequence[str], errors: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                    path: str | os.PathLike[str], references: Mapping[str, Sequence[float | None]] | None = None,
                    title: str = "") -> Path:
    """Grouped bars: for each group (distortion) a bar per model, its mean error with a +-std whisker.

    Args:
        groups: the groups' names, in order (``("R", "RTS", ...)``).
        errors: model -> (means, stds), each one value per group, errors in [0, 1] (shown in %).
        path: the PNG written.
        references: model -> a published error per group (in %, None where there is none), drawn as a black
            marker over that model's bar; default none.
        title: the figure's title; default none.
    """
    models = list(errors)
    width = 0.8 / max(len(models), 1)
    fig = new_figure(max(4.0, 1.2 * len(groups) + 1.5), 3.2)
    ax = fig.subplots()
    for m, model in enumerate(models):
        means, stds = errors[model]
        xs = [g + (m - (len(models) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [100 * v for v in means], width, yerr=[100 * s for s in stds], capsize=3, label=model,
               color=_MODEL_COLORS[m % len(_MODEL_COLORS)])
        refs = (references or {}).get(model)
        if refs:
            pts = [(x, r) for x, r in zip(xs, refs) if r is not None]
            ax.scatter([x for x, _ in pts], [r for _, r in pts], marker="D", s=18, zorder=3, edgecolors="black",
                       color=_MODEL_COLORS[m % len(_MODEL_COLORS)], label=f"{model}, paper (60k digits)")
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set(ylabel="test error (%)", title=title)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_error_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike[str],
                      title: str = "") -> Path:
    """One panel per group (distortion), one line per model: validation error (in [0, 1], shown in %) per epoch.

    Args:
        curves: group -> model -> the error after each epoch (epoch 1 first).
        path: the PNG written.
        title: the figure's title; default none.
    """
    n = len(curves)
    fig = new_figure(2.6 * n + 0.4, 2.6)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (group, by_model) in zip(axes, curves.items()):
        for m, (model, errs) in enumerate(by_model.items()):
            ax.plot(range(1, len(errs) + 1), [100 * e for e in errs], marker="o", ms=3, label=model,
                    color=_MODEL_COLORS[m % len(_MODEL_COLORS)])
        ax.set(title=group, xlabel="epoch")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation error (%)")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9, y=1.04)
    return save_figure(fig, path)
