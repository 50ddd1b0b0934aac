"""The pictures of the seed's "Audio Classification with Spectrogram" exercise, as PNG files.

* :func:`plot_waveforms`: one clip resampled to several rates ("plot waveform with different sample rate").
* :func:`plot_features`: its dB spectrogram (201, 81), 40-band log-mel spectrogram and MFCC 1-12.
* :func:`plot_inputs`: what a model sees, clean and after one training draw of the augmentation.
* :func:`plot_accuracy_bars`: a horizontal bar per class (e.g. test accuracy per word), best first.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from deepnotes.audio.features import MFCC, LogMelSpectrogram, Spectrogram, to_db
from deepnotes.data.speech import resample
from deepnotes.report import new_figure, save_figure


def plot_waveforms(wave: np.ndarray, path: str | os.PathLike[str], sample_rate: int = 16000,
                   rates: Sequence[int] = (16000, 8000, 4000, 2000)) -> None:
    """One clip (T,) at ``sample_rate``, resampled with soxr to each of ``rates``, one panel each."""
    fig = new_figure(8, 1.6 * len(rates))
    for i, rate in enumerate(rates):
        ax = fig.add_subplot(len(rates), 1, i + 1)
        w = resample(wave.astype(np.float32), sample_rate, rate)
        ax.plot(np.arange(len(w)) / rate, w, lw=0.6)
        ax.set_ylabel(f"{rate // 1000} kHz")
        ax.set_xlim(0, 1)
        if i == 0:
            ax.set_title("one clip at several sample rates (resampled with soxr)")
    ax.set_xlabel("time (s)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_features(wave: np.ndarray, path: str | os.PathLike[str], sample_rate: int = 16000) -> None:
    """Spectrogram (dB), mel spectrogram (dB) and MFCC 1-12 of one clip (T,)."""
    w = torch.from_numpy(wave.astype(np.float32)).double()
    panels = [
        ("spectrogram (dB), n_fft 400, hop 200: (201, 81)", to_db(Spectrogram()(w), amin=1e-10, top_db=80.0),
         "frequency bin"),
        ("mel spectrogram (dB), 40 mels, 25 ms / 10 ms", LogMelSpectrogram(sample_rate, top_db=80.0, n_mels=40)(w),
         "mel band"),
        ("MFCC 1-12 (c0, the log energy, left out: it would take the whole colour scale)", MFCC(sample_rate)(w)[1:],
         "coefficient"),
    ]
    fig = new_figure(8, 7.5)
    for i, (title, img, ylabel) in enumerate(panels):
        ax = fig.add_subplot(3, 1, i + 1)
        extent = (-0.5, img.shape[-1] - 0.5, 0.5, img.shape[-2] + 0.5) if i == 2 else None  # MFCC rows 1..12
        im = ax.imshow(img.numpy(), origin="lower", aspect="auto", cmap="magma", extent=extent)
        fig.colorbar(im, ax=ax)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    ax.set_xlabel("frame")
    fig.tight_layout()
    save_figure(fig, path)


def plot_inputs(clean: torch.Tensor, aug: torch.Tensor, path: str | os.PathLike[str], spectral: bool) -> None:
    """A model input, clean and augmented: images of (..., F, T) features, or curves of waveforms."""
    fig = new_figure(8, 5)
    for i, (title, x) in enumerate((("model input, clean", clean), ("one training draw: shift + noise"
                                                                     + (" + SpecAugment" if spectral else ""), aug))):
        ax = fig.add_subplot(2, 1, i + 1)
        if spectral:
            im = ax.imshow(x.reshape(x.shape[-2], x.shape[-1]).numpy(), origin="lower", aspect="auto", cmap="magma")
            fig.colorbar(im, ax=ax)
        else:
            ax.plot(x.flatten().numpy(), lw=0.5)
        ax.set_title(title + " (normalized)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_accuracy_bars(acc: dict[str, float | None], path: str | os.PathLike[str],
                       title: str = "accuracy per word (test split)") -> None:
    """One bar per name (accuracy in [0, 1], None drawn empty), sorted from best to worst."""
    items = sorted(((a if a is not None else float("nan"), w) for w, a in acc.items()), reverse=True)
    fig = new_figure(7, 0.22 * len(items) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([w for _, w in items], [100 * a for a, _ in items], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%)")
    lo = min((a for a, _ in items if a == a), default=0.0)
    ax.set_xlim(max(0.0, 100 * lo - 5), 100)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
