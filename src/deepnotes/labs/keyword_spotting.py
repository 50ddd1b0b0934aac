"""Lab ``keyword-spotting``: which of 35 words was said, on voices never heard in training (seed 000).

The curriculum's "Audio Classification with Spectrogram" exercise (seed 000): Speech Commands, plots of a
clip's waveform at several sample rates, its spectrogram, mel spectrogram and MFCC, then "spectrogram
resized to (201, 81) -> CNN and linear classifier", train 91 % / validation 90 %. Here on the
``speech-keywords`` set (the 35 Speech Commands v2 words said by Debian's speech synthesizers, split by
voice: :mod:`deepnotes.data.speech_build`) or on any folder in the Speech Commands layout (``--data-dir``),
with three models chosen by ``--model`` (:mod:`deepnotes.models.kws`):

* ``bcresnet`` (default): BC-ResNet-τ (Kim et al., Interspeech 2021) on 40 log-mel bands, 10 ms hop; by default
  τ = 2 (28.8k parameters) trained with AdamW for 10 epochs, which learnt far faster than BC-ResNet-1 with
  the paper's SGD in the same CPU budget (measured on the validation voices);
* ``cnn``: the exercise's CNN on the (201, 81) dB spectrogram (n_fft 400, hop 200);
* ``m5``: M5 on the raw waveform, the baseline of PyTorch's Speech Commands tutorial.

Augmentation (training only), computed per batch on the device inside the engine's ``prepare_batch`` and
drawn from its seeded generator, so that a resumed run repeats the same draws: optionally speed perturbation
(Ko et al., Interspeech 2015), a random time shift (zero-filled), background noise from ``_background_noise_/``
mixed at a random SNR, optionally vocal tract length perturbation (VTLP: Jaitly & Hinton 2013, a random warp of
the frequency axis), and SpecAugment masks (Park et al., Interspeech 2019) on the spectrogram models' features.
Speed perturbation and VTLP mimic speakers with other vocal tracts, the gap between the training and test
voices. ``--feature-norm`` picks the normalization: one mean/std from the training set, or per clip (its own
mean/std, the default, or per frequency band over time: cepstral mean and variance normalization, which removes a
voice's or channel's fixed spectral colouring).

Files it leaves in the run folder (beside config.json, metrics.csv, model.safetensors):
    data.json                 data folder, classes, split sizes, feature mean/std, the report's example clip
    test_metrics.json         test accuracy/loss, per word, per engine, with noise, confusion matrix, timings,
                              and the pocketsphinx baseline where Debian's pocketsphinx is installed
    predictions.safetensors   test labels and predictions; the example clip and one augmented view of it
    report.md + *.png         the report
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from deepnotes.audio import MFCC, LogMelSpectrogram, Spectrogram, to_db
from deepnotes.data.speech import (
    BACKGROUND_NOISE_DIR,
    SAMPLE_RATE,
    TESTING_LIST,
    load_background_noise,
    load_clip,
    load_speech_commands,
    resample,
    word_folders,
)
from deepnotes.errors import DataError, UserError
from deepnotes.io import atomic_path, write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, load_run_weights, read_run_json
from deepnotes.models.kws import M5, BCResNet, BCResNetConfig, SpectrogramCNN
from deepnotes.metrics import confusion_matrix
from deepnotes.report import (
    markdown_image,
    markdown_table,
    new_figure,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_lr_schedule,
    read_metrics_csv,
    save_figure,
)
from deepnotes.train import supervised_trainer, validate_train_config
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.engine import use_cpu_bf16
from deepnotes.train.schedule import lr_at

NAME = "keyword-spotting"
SPEECH_DATASETS = ("speech-keywords", "speech-keywords-small")
#: The exercise's published figures (seed 000), on real Speech Commands recordings.
EXERCISE_TRAIN_ACC, EXERCISE_VAL_ACC = 0.91, 0.90
#: Sample rates of the report's waveform figure (the exercise: "plot waveform with different sample rate").
FIGURE_RATES = (16000, 8000, 4000, 2000)
#: Log floor of the spectrogram features (power), -60 dB: the zero padding of a clip reads as -60 dB, not -100.
FEATURE_AMIN = 1e-6
#: VTLP's boundary frequency (Hz): below it frequencies scale by alpha, above it the warp joins Nyquist (Jaitly & Hinton).
VTLP_BOUNDARY_HZ = 4800.0


@dataclass(frozen=True)
class KeywordSpottingConfig(TrainConfig):
    # Engine defaults re-tuned for this lab (measured: see the module's report and benchmarks).
    epochs: int = option(10, "number of passes over the training set")
    batch_size: int = option(64, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW "
                                                "(AdamW learnt much faster here in a 10-epoch budget)")
    lr: float = option(0.003, "peak learning rate")
    weight_decay: float = option(1e-2, "weight decay on weights (not on biases or norm scales)")
    dataset: str = option("speech-keywords", "speech-keywords (20,790 clips) or speech-keywords-small (350, for tests); "
                          "see `deepnotes data list`")
    data_dir: str | None = option(None, "a folder in the Speech Commands layout (word folders, validation_list.txt, "
                                  "testing_list.txt), read instead of --dataset; e.g. speech_commands_v0.02")
    model: Literal["bcresnet", "cnn", "m5"] = option(
        "bcresnet", "network: BC-ResNet on log-mels, the exercise's CNN on the (201, 81) spectrogram, or M5 on the waveform")
    width: float = option(2.0, "BC-ResNet: width multiplier tau (channels 8 tau ... 32 tau; BC-ResNet-1 has 9.2k "
                          "parameters, BC-ResNet-2 28.8k with 35 words)")
    n_mels: int = option(40, "BC-ResNet: mel bands of the log-mel input (40 or 80)")
    dropout: float = option(0.1, "BC-ResNet: channel dropout in each block; the CNN: its two dropouts")
    speed_perturb: float = option(0.1, "augmentation: play each clip faster or slower by a random factor in "
                                  "[1 - x, 1 + x] (Ko et al. 2015; 0 disables; 0.1: validation 63.7% vs 56.4% at 0)")
    vtlp: float = option(0.1, "augmentation: vocal tract length perturbation, warp each clip's frequency axis by a "
                         "random factor in [1 - x, 1 + x] (Jaitly & Hinton 2013; 0 disables; spectrogram models)")
    tta_warps: tuple[float, ...] = option((), "test-time augmentation: also report validation and test accuracy with "
                                          "the class probabilities averaged over the clip's frequency axis warped "
                                          "by each of these VTLP factors (e.g. 0.85,0.9,0.95,1,1.05,1.1,1.15; "
                                          "spectrogram models; empty = off; those 7: test 89.56% vs 89.45%, validation "
                                          "66.8% vs 63.7%, benchmarks/RESULTS.md)")
    feature_norm: Literal["global", "utterance", "band"] = option(
        "utterance", "feature normalization: one mean/std from the training set, each clip's own mean/std, or each "
        "clip's mean/std per frequency band over time (cepstral mean and variance normalization); utterance is the "
        "default, chosen on the validation voices over seeds 0-2 (mean 68.9% vs band 66.9%, global 63.6%; "
        "benchmarks/RESULTS.md)")
    engine_power: float = option(1.0, "re-balance the synthesizers: each engine's share of the training draws is "
                                 "proportional to its clip count to this power (1 = as in the data, one pass per "
                                 "epoch; 0 = equal shares, drawn with replacement); needs a speech-keywords manifest")
    time_shift_ms: float = option(100.0, "augmentation: shift each clip by up to this many ms either way (0 disables)")
    noise_prob: float = option(0.8, "augmentation: share of training clips mixed with background noise (0 disables)")
    snr_db: tuple[float, ...] = option((5.0, 30.0), "augmentation: the noise's signal-to-noise ratio, uniform in this "
                                       "range in dB (comma-separated low,high)")
    freq_masks: int = option(2, "SpecAugment: frequency masks per clip (0 disables; spectrogram models only)")
    max_freq_mask: float = option(0.15, "SpecAugment: widest frequency mask, as a share of the frequency bins")
    time_masks: int = option(2, "SpecAugment: time masks per clip (0 disables)")
    max_time_mask: float = option(0.2, "SpecAugment: widest time mask, as a share of the frames")
    noisy_test_snr: float = option(10.0, "also report test accuracy with background noise mixed in at this SNR (dB)")
    pocketsphinx: bool = option(True, "baseline: Debian's pocketsphinx on the test split (35-word grammar), if installed")
    pocketsphinx_max_files: int = option(1000, "pocketsphinx: decode a seeded random subset of at most this many test "
                                         "clips (0 = all; about 25 ms a clip on 2 cores)")
    limit_train: int = option(0, "train on only N clips spread over the training split (0 = all); for smoke runs")
    limit_test: int = option(0, "evaluate on only N clips spread over the test split (0 = all); for smoke runs")
    channels_last: bool = option(True, "NHWC memory layout for the 2-D models (faster depthwise convolutions on CPU)")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long run of the whole pipeline on the 350-clip build (the tests run it).
    "fast": {"dataset": "speech-keywords-small", "epochs": 2, "batch_size": 32, "pocketsphinx_max_files": 35},
    # The exercise's network and optimizer (Adam); it trains several times slower than the default on a CPU.
    # Both keep the training set's one mean/std (--feature-norm global): the per-clip default was chosen with the
    # default model (BC-ResNet-2) only.
    "exercise": {"model": "cnn", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "dropout": 0.5,
                 "batch_size": 64, "epochs": 6, "feature_norm": "global"},
    # M5 as in the tutorial (Adam, lr 0.01, weight decay 1e-4).
    "m5": {"model": "m5", "optimizer": "adamw", "lr": 0.01, "weight_decay": 1e-4, "epochs": 20, "feature_norm": "global"},
}


# ----------------------------------------------------------------------------------- augmentation
def time_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each clip by a uniform random integer number of samples in ``[-max_shift, max_shift]``, zero-filled.

    ``y[b, t] = x[b, t - s_b]`` where ``0 <= t - s_b < T``, else 0 (the clip moves later in time for s > 0).

    Args:
        x: (B, T) float waveforms. max_shift: samples, >= 0. generator: CPU generator for the draws.

    Returns:
        (B, T), on ``x``'s device.

    Raises:
        ValueError: ``max_shift < 0`` or ``x`` not 2-D.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if x.dim() != 2:
        raise ValueError(f"x must be (B, T) waveforms, got shape {tuple(x.shape)}")
    B, T = x.shape
    s = torch.randint(-max_shift, max_shift + 1, (B, 1), generator=generator).to(x.device)
    src = torch.arange(T, device=x.device).unsqueeze(0) - s  # (B, T): which sample lands at t
    valid = (src >= 0) & (src < T)
    return x.gather(1, src.clamp(0, T - 1)) * valid


def speed_perturb(x: torch.Tensor, max_change: float, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Play each clip faster or slower by a random factor r uniform in ``[1 - max_change, 1 + max_change]``.

    Speed perturbation (Ko, Peddinti, Povey & Khudanpur, "Audio Augmentation for Speech Recognition",
    Interspeech 2015): resampling changes duration, pitch and formant frequencies together by r, which
    mimics speakers with shorter or longer vocal tracts. The clip is stretched about its centre c, with
    linear interpolation between samples and zeros outside::

        y[t] = x(c + (t - c) r),   x(s) = (1 - {s}) x[⌊s⌋] + {s} x[⌊s⌋ + 1]

    (no anti-aliasing filter: for r <= 1.1 only content above 7.3 kHz folds back, where speech has little).

    Args:
        x: (B, T) float waveforms. max_change: in [0, 1). generator: CPU generator for the draws.

    Returns:
        (B, T) on ``x``'s device.

    Raises:
        ValueError: ``max_change`` outside [0, 1), or ``x`` not 2-D.
    """
    if not 0 <= max_change < 1:
        raise ValueError(f"max_change must be in [0, 1), got {max_change}")
    if x.dim() != 2:
        raise ValueError(f"x must be (B, T) waveforms, got shape {tuple(x.shape)}")
    B, T = x.shape
    r = 1 + max_change * (2 * torch.rand(B, 1, generator=generator, dtype=torch.float64) - 1)
    c = (T - 1) / 2
    src = (c + (torch.arange(T, dtype=torch.float64) - c) * r).to(x.device)  # (B, T) fractional source positions
    lo = src.floor()
    frac = (src - lo).to(x.dtype)
    lo = lo.long()
    padded = F.pad(x, (1, 1))  # index i + 1 of padded is sample i; -1 and T read zeros
    a = padded.gather(1, (lo + 1).clamp(0, T + 1))
    b = padded.gather(1, (lo + 2).clamp(0, T + 1))
    inside = (lo >= -1) & (lo <= T - 1)
    return ((1 - frac) * a + frac * b) * inside


def vtlp_warp(spec: torch.Tensor, alpha: torch.Tensor, sample_rate: float = SAMPLE_RATE,
              boundary_hz: float = VTLP_BOUNDARY_HZ) -> torch.Tensor:
    r"""Vocal tract length perturbation of linear spectrograms: stretch each clip's frequency axis by its α.

    Jaitly & Hinton, "Vocal Tract Length Perturbation (VTLP) improves speech recognition", ICML 2013 WDLASL:
    a speaker with a shorter vocal tract has formants at higher frequencies, roughly by a constant factor.
    Their piecewise-linear warp moves frequency f to α f up to a boundary, then joins the Nyquist frequency
    N linearly so the band stays [0, N]. Here the spectrogram is resampled along frequency (linear
    interpolation between bins) so that what was at f appears at φ(f)::

        y[k] = x(φ⁻¹(f_k)),   φ⁻¹(g) = g / α                          for g <= b
                              φ⁻¹(g) = b/α + (g - b)(N - b/α)/(N - b)  for g > b

    with b = ``boundary_hz`` (4.8 kHz, as the paper's F_hi). Deliberate difference: the paper warps the mel
    filterbank's centre frequencies; warping the spectrogram itself does the same for any later filterbank.

    Args:
        spec: (B, K, T) power (or magnitude) spectrograms with K = n_fft // 2 + 1 bins from 0 to N.
        alpha: (B,) warp factors > 0 (1: unchanged; > 1 moves energy up).
        sample_rate: Hz. Default 16000. boundary_hz: b, in (0, N). Default 4800.

    Returns:
        (B, K, T), same dtype and device.

    Raises:
        ValueError: ``spec`` not 3-D, ``alpha`` not (B,) and positive, or ``boundary_hz`` outside (0, N).
    """
    nyq = sample_rate / 2
    if spec.dim() != 3:
        raise ValueError(f"spec must be (B, K, T) spectrograms, got shape {tuple(spec.shape)}")
    if alpha.shape != spec.shape[:1] or not bool((alpha > 0).all()):
        raise ValueError(f"alpha must be ({spec.shape[0]},) positive factors, got shape {tuple(alpha.shape)}")
    if not 0 < boundary_hz < nyq:
        raise ValueError(f"boundary_hz must be in (0, {nyq:g}), got {boundary_hz}")
    B, K, T = spec.shape
    g = torch.linspace(0, nyq, K, dtype=torch.float64).unsqueeze(0)  # (1, K) output frequencies
    a = alpha.detach().to("cpu", torch.float64).unsqueeze(1)  # (B, 1)
    low = g / a
    high = boundary_hz / a + (g - boundary_hz) * (nyq - boundary_hz / a) / (nyq - boundary_hz)
    src = torch.where(g <= boundary_hz, low, high).clamp(0, nyq) * ((K - 1) / nyq)  # (B, K) source bin
    lo = src.floor().long().clamp(max=K - 2)
    frac = (src - lo).to(spec.device, spec.dtype).unsqueeze(-1)  # (B, K, 1)
    lo = lo.to(spec.device).unsqueeze(-1).expand(B, K, T)
    return (1 - frac) * spec.gather(1, lo) + frac * spec.gather(1, lo + 1)


def mix_noise(x: torch.Tensor, noise: Sequence[torch.Tensor], snr_db: tuple[float, float], prob: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Add a random crop of a random noise recording to a random share ``prob`` of the clips, at a random SNR.

    For a chosen clip x and noise crop n (same length), with SNR s uniform in ``snr_db``::

        y = x + g n,   g = sqrt(P_x / (P_n 10^{s/10})),   P = mean over the clip of the squared samples

    so that ``10 log10(P_x / P_{gn}) = s``. A silent clip (P_x = 0) stays silent.

    Args:
        x: (B, T) float waveforms.
        noise: recordings, each a 1-D tensor of at least T samples (``_background_noise_``).
        snr_db: (low, high) in dB, low <= high.
        prob: share of the clips that get noise, in [0, 1].
        generator: CPU generator for the draws.

    Returns:
        (B, T) on ``x``'s device.

    Raises:
        ValueError: empty ``noise`` or a recording shorter than T; bad ``snr_db`` or ``prob``.
    """
    if not noise:
        raise ValueError("noise must hold at least one recording")
    if len(snr_db) != 2 or snr_db[0] > snr_db[1]:
        raise ValueError(f"snr_db must be (low, high) with low <= high, got {tuple(snr_db)}")
    if not 0 <= prob <= 1:
        raise ValueError(f"prob must be in [0, 1], got {prob}")
    B, T = x.shape
    if min(len(n) for n in noise) < T:
        raise ValueError(f"every noise recording must have at least T={T} samples")
    which = torch.randint(len(noise), (B,), generator=generator)
    u = torch.rand(B, generator=generator)
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(B, generator=generator)
    apply = torch.rand(B, generator=generator) < prob
    crops = torch.stack([noise[int(i)][int(f * (len(noise[int(i)]) - T + 1)):][:T] for i, f in zip(which, u)])
    crops = crops.to(x.device, x.dtype)  # (B, T)
    p_x = x.pow(2).mean(dim=1)
    p_n = crops.pow(2).mean(dim=1).clamp_min(1e-12)
    gain = torch.sqrt(p_x / (p_n * 10 ** (snr.to(x.device, x.dtype) / 10))) * apply.to(x.device, x.dtype)
    return x + gain.unsqueeze(1) * crops


def spec_augment(feats: torch.Tensor, freq_masks: int, max_freq: int, time_masks: int, max_time: int,
                 generator: torch.Generator | None = None, value: float = 0.0) -> torch.Tensor:
    """SpecAugment's frequency and time masking (Park et al. 2019; no time warping), per clip.

    Each mask has a width w uniform in ``{0, ..., max}`` and a start uniform in ``{0, ..., size - w}``; the
    masked rows (frequency) or columns (time) are set to ``value`` (0: the mean of normalized features).

    Args:
        feats: (B, F, T) or (B, 1, F, T) features.
        freq_masks, time_masks: masks per clip (>= 0). max_freq, max_time: widest mask (bins, frames).
        generator: CPU generator for the draws.

    Returns:
        A masked copy, same shape and device.

    Raises:
        ValueError: negative counts or widths, or a width larger than its axis.
    """
    if min(freq_masks, time_masks, max_freq, max_time) < 0:
        raise ValueError("mask counts and widths must be >= 0")
    Fq, T = feats.shape[-2:]
    if max_freq > Fq or max_time > T:
        raise ValueError(f"mask widths ({max_freq}, {max_time}) exceed the feature size ({Fq}, {T})")
    B = feats.shape[0]
    mask = torch.zeros(B, Fq, T, dtype=torch.bool, device=feats.device)
    for n, width, size, axis in ((freq_masks, max_freq, Fq, 1), (time_masks, max_time, T, 2)):
        pos = torch.arange(size, device=feats.device).unsqueeze(0)  # (1, size)
        for _ in range(n):
            w = torch.randint(0, width + 1, (B, 1), generator=generator)
            start = (torch.rand(B, 1, generator=generator) * (size - w + 1)).floor().long()
            w, start = w.to(feats.device), start.to(feats.device)
            hit = (pos >= start) & (pos < start + w)  # (B, size)
            mask |= hit.unsqueeze(2) if axis == 1 else hit.unsqueeze(1)
    return feats.masked_fill(mask.view(B, *([1] * (feats.dim() - 3)), Fq, T), value)


# ----------------------------------------------------------------------------------- features and batches
class FeatureExtractor(torch.nn.Module):
    """Waveforms (B, T) -> the chosen model's input: log-mel (B, 1, n_mels, T'), dB spectrogram (B, 1, 201, 81)
    or the waveform itself, normalized by the training set's mean and std (one scalar each)."""

    def __init__(self, model: str, n_mels: int = 40, mean: float = 0.0, std: float = 1.0,
                 norm: str = "global"):
        super().__init__()
        if norm not in ("global", "utterance", "band"):
            raise ValueError(f"norm must be global, utterance or band, got {norm!r}")
        if norm == "band" and model == "m5":
            raise ValueError("norm='band' needs a spectrogram model (bcresnet or cnn), not m5")
        self.kind, self.norm = model, norm
        self.mean, self.std = mean, std
        if model == "bcresnet":  # 30 ms windows (n_fft 512), 10 ms hop, as the BC-ResNet paper
            self.transform: torch.nn.Module | None = LogMelSpectrogram(
                SAMPLE_RATE, amin=FEATURE_AMIN, n_fft=512, win_length=480, hop_length=160, n_mels=n_mels)
        elif model == "cnn":  # the exercise's (201, 81): n_fft 400, hop 200
            self.transform = Spectrogram(n_fft=400, hop_length=200)
        else:
            self.transform = None

    @property
    def is_spectral(self) -> bool:
        return self.transform is not None

    def raw(self, wave: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Un-normalized features: (B, T) -> (B, 1, F, T') in dB, or (B, T). ``alpha`` (B,): VTLP factors
        (:func:`vtlp_warp` on the linear spectrogram first; spectrogram models only)."""
        if alpha is not None and self.transform is None:
            raise ValueError("VTLP (alpha) needs a spectrogram model, not m5")
        if self.kind == "bcresnet":
            if alpha is None:
                return self.transform(wave).unsqueeze(1)
            mel = self.transform.mel
            spec = vtlp_warp(mel.spectrogram(wave), alpha)  # (B, K, T')
            return to_db(mel.fb.to(spec.dtype) @ spec, amin=FEATURE_AMIN).unsqueeze(1)  # (B, 1, n_mels, T')
        if self.kind == "cnn":
            spec = self.transform(wave)
            if alpha is not None:
                spec = vtlp_warp(spec, alpha)
            return to_db(spec, amin=FEATURE_AMIN).unsqueeze(1)
        return wave

    def forward(self, wave: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        f = self.raw(wave, alpha)
        if self.norm == "global":
            return (f - self.mean) / self.std
        dims = (-1,) if self.norm == "band" else tuple(range(1, f.dim()))  # band: over time, per frequency row
        mean, var = f.mean(dim=dims, keepdim=True), f.var(dim=dims, keepdim=True, unbiased=False)
        return (f - mean) / (var + 1e-5).sqrt()


class BatchPreparer:
    """int16 clips -> augmented, normalized model inputs on the device (the engine's ``prepare_batch``)."""

    def __init__(self, cfg: KeywordSpottingConfig, features: FeatureExtractor, noise: list[torch.Tensor],
                 device: torch.device, cpu_bf16: bool = False):
        self.cfg, self.features, self.noise, self.device = cfg, features.to(device), noise, device
        self.cpu_bf16 = cpu_bf16
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    def wave(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True).float().div_(32768.0)

    def augment_wave(self, w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        cfg = self.cfg
        if cfg.speed_perturb > 0:
            w = speed_perturb(w, cfg.speed_perturb, generator)
        shift = round(cfg.time_shift_ms * SAMPLE_RATE / 1000)
        if shift > 0:
            w = time_shift(w, shift, generator)
        if cfg.noise_prob > 0 and self.noise:
            w = mix_noise(w, self.noise, (cfg.snr_db[0], cfg.snr_db[1]), cfg.noise_prob, generator)
        return w

    def augment_features(self, f: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        cfg = self.cfg
        if not self.features.is_spectral or (cfg.freq_masks == 0 and cfg.time_masks == 0):
            return f
        Fq, T = f.shape[-2:]
        return spec_augment(f, cfg.freq_masks, int(cfg.max_freq_mask * Fq), cfg.time_masks,
                            int(cfg.max_time_mask * T), generator)

    def inputs(self, w: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized model inputs of waveforms (B, T), without augmentation; ``alpha`` (B,): VTLP factors."""
        f = self.features(w, alpha)
        return f.contiguous(memory_format=self.memory_format) if f.dim() == 4 else f

    def warp_factors(self, n: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """VTLP factors (n,) uniform in [1 - vtlp, 1 + vtlp], or None when VTLP is off or the model is M5."""
        if self.cfg.vtlp <= 0 or not self.features.is_spectral:
            return None
        return 1 + self.cfg.vtlp * (2 * torch.rand(n, generator=generator) - 1)

    def __call__(self, x, y, train, generator):
        w = self.wave(x)
        with torch.no_grad():
            if train:
                w = self.augment_wave(w, generator)
                f = self.augment_features(self.features(w, self.warp_factors(len(w), generator)), generator)
                f = f.contiguous(memory_format=self.memory_format) if f.dim() == 4 else f
            else:
                f = self.inputs(w)
        return f, y.to(self.device, non_blocking=True)


# ----------------------------------------------------------------------------------- data
@dataclass
class SpeechSplit:
    """One split in memory: int16 clips (N, 16000), labels (N,), class names, relative file paths, source."""

    clips: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    files: list[str]
    root: Path

    def subset(self, n: int) -> "SpeechSplit":
        """``n`` clips spread evenly over the split (every k-th; all words stay in)."""
        if not n or n >= len(self.labels):
            return self
        idx = torch.linspace(0, len(self.labels) - 1, n).round().long()
        return SpeechSplit(self.clips[idx], self.labels[idx], self.classes, [self.files[i] for i in idx], self.root)


def _to_int16(x: torch.Tensor) -> torch.Tensor:
    return (x * 32768.0).round_().clamp_(-32768, 32767).to(torch.int16)


def data_folder(cfg: KeywordSpottingConfig) -> Path:
    """The Speech Commands-layout folder the run reads: ``--data-dir`` or the built ``--dataset``.

    Raises:
        UserError: an unknown dataset, or one not built yet (with the command that builds it).
    """
    if cfg.data_dir:
        root = Path(cfg.data_dir).expanduser()
        if not root.is_dir():
            raise UserError(f"--data-dir {root} is not a folder; pass a Speech Commands folder (word folders, "
                            "validation_list.txt, testing_list.txt)")
        return root
    from deepnotes.data.registry import get_dataset

    if cfg.dataset not in SPEECH_DATASETS:
        get_dataset(cfg.dataset)  # an unknown name -> UserError listing the datasets
        raise UserError(f"--dataset {cfg.dataset} is not a speech dataset; use {' or '.join(SPEECH_DATASETS)}, "
                        "or --data-dir FOLDER for a Speech Commands folder")
    from deepnotes.data.speech_build import SPEECH_PACKAGES

    info = get_dataset(cfg.dataset)
    if not info.is_current():
        what = "is not built yet" if not info.manifest_path().is_file() else "was built from an older grid of voices"
        raise UserError(f"--dataset {cfg.dataset} {what} ({info.status()}); build it with `deepnotes data build "
                        f"{cfg.dataset}` (needs: `sudo apt-get install {' '.join(SPEECH_PACKAGES)}`), or pass its "
                        "folder as --data-dir to use it as it is")
    return info.cache_dir()


def load_split(root: Path, split: str, classes: Sequence[str] | None = None) -> SpeechSplit:
    """One split of a Speech Commands folder as int16 clips (``deepnotes.data.speech.load_speech_commands``)."""
    x, y, cls, files = load_speech_commands(root, split, words=classes, log=lambda _m: None)
    return SpeechSplit(_to_int16(x), y, list(cls), files, root)


def load_eval_folder(root: Path, classes: Sequence[str]) -> SpeechSplit:
    """The clips of a folder for ``deepnotes eval --data``: its test split when it has ``testing_list.txt``,
    else every WAV of its word folders; labels index the run's ``classes``; other sample rates are resampled.

    Raises:
        UserError: a word folder that is not one of the run's classes (names them), or no clip.
    """
    words = word_folders(root)
    unknown = [w for w in words if w not in classes]
    if unknown:
        raise UserError(f"--data {root}: word folder(s) {', '.join(unknown)} are not among the run's "
                        f"{len(classes)} classes ({', '.join(classes[:6])}, ...)")
    if (root / TESTING_LIST).is_file():
        x, y, _, files = load_speech_commands(root, "test", words=words, log=lambda _m: None)
        labels = torch.tensor([list(classes).index(words[int(i)]) for i in y], dtype=torch.int64)
        return SpeechSplit(_to_int16(x), labels, list(classes), files, root)
    files = [f"{w}/{p.name}" for w in words for p in sorted((root / w).glob("*.wav"))]
    clips = torch.stack([torch.from_numpy(load_clip(root / f)) for f in files])
    labels = torch.tensor([list(classes).index(f.split("/")[0]) for f in files], dtype=torch.int64)
    return SpeechSplit(_to_int16(clips), labels, list(classes), files, root)


def engines_of(root: Path, files: Sequence[str]) -> list[str] | None:
    """The synthesizer of each clip from the folder's ``manifest.json`` (speech-keywords builds), else None."""
    try:
        manifest = json.loads((Path(root) / "manifest.json").read_text())
        by_hash = {v["voice_hash"]: v["engine"] for v in manifest["grid"]["voices"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [by_hash.get(Path(f).name.split("_nohash_")[0], "other") for f in files]


def engine_weights(root: Path, files: Sequence[str], power: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-clip sampling weights (N,) that give engine e the share ``n_e ** power / sum_f n_f ** power``,
    and those shares by engine name.

    Each clip of engine e weighs ``n_e ** (power - 1)``: power 1 gives equal weights (the data's own
    shares), 0 equal shares per engine (the temperature sampling of multilingual training).

    Raises:
        UserError: the folder has no speech-keywords ``manifest.json`` saying which engine made each clip.
    """
    engines = engines_of(root, files)
    if engines is None:
        raise UserError(f"--engine-power needs {Path(root) / 'manifest.json'} (a `deepnotes data build speech-keywords` "
                        "folder) to know each clip's synthesizer; use --engine-power 1 with other folders")
    counts = Counter(engines)
    total = sum(float(n) ** power for n in counts.values())
    shares = {e: float(n) ** power / total for e, n in sorted(counts.items())}
    return torch.tensor([float(counts[e]) ** (power - 1.0) for e in engines], dtype=torch.float64), shares


def load_noise(root: Path, log) -> list[torch.Tensor]:
    """The folder's background-noise recordings, each at least 1 s (an empty list when it has none)."""
    if not (root / BACKGROUND_NOISE_DIR).is_dir():
        log(f"{root} has no {BACKGROUND_NOISE_DIR}/: background-noise augmentation is off")
        return []
    noise = [n for n in load_background_noise(root, log=log).values() if len(n) >= SAMPLE_RATE]
    if not noise:
        log(f"{root / BACKGROUND_NOISE_DIR} has no recording of 1 s or more: background-noise augmentation is off")
    return noise


# ----------------------------------------------------------------------------------- model
def build_model(cfg: KeywordSpottingConfig, num_classes: int) -> torch.nn.Module:
    try:
        if cfg.model == "bcresnet":
            model: torch.nn.Module = BCResNet(num_classes, BCResNetConfig(width=cfg.width, n_mels=cfg.n_mels,
                                                                          dropout=cfg.dropout))
        elif cfg.model == "cnn":
            model = SpectrogramCNN(num_classes, dropout=cfg.dropout)
        elif cfg.model == "m5":
            model = M5(num_classes)
        else:
            raise UserError(f"--model must be bcresnet, cnn or m5, got {cfg.model!r}")
    except ValueError as e:
        raise UserError(f"--width/--n-mels/--dropout: {e}") from e
    if cfg.channels_last and cfg.model != "m5":
        model = model.to(memory_format=torch.channels_last)
    return model


def _validate(cfg: KeywordSpottingConfig) -> None:
    validate_train_config(cfg)
    checks = [
        (cfg.time_shift_ms >= 0, "--time-shift-ms must be >= 0"),
        (0 <= cfg.speed_perturb < 0.5, "--speed-perturb must be in [0, 0.5)"),
        (0 <= cfg.vtlp < 0.5, "--vtlp must be in [0, 0.5)"),
        (not (cfg.feature_norm == "band" and cfg.model == "m5"),
         "--feature-norm band needs a spectrogram model (--model bcresnet or cnn); use global or utterance with m5"),
        (0 <= cfg.engine_power <= 1, "--engine-power must be in [0, 1] (1 = no re-balancing)"),
        (0 <= cfg.noise_prob <= 1, "--noise-prob must be in [0, 1]"),
        (len(cfg.snr_db) == 2 and cfg.snr_db[0] <= cfg.snr_db[1], "--snr-db must be two values low,high with low <= high"),
        (cfg.freq_masks >= 0 and cfg.time_masks >= 0, "--freq-masks and --time-masks must be >= 0"),
        (0 <= cfg.max_freq_mask <= 1 and 0 <= cfg.max_time_mask <= 1, "--max-freq-mask and --max-time-mask must be in [0, 1]"),
        (cfg.limit_train >= 0 and cfg.limit_test >= 0, "--limit-train and --limit-test must be >= 0 (0 = all)"),
        (cfg.pocketsphinx_max_files >= 0, "--pocketsphinx-max-files must be >= 0 (0 = all)"),
        (cfg.width > 0, "--width must be > 0"),
        (0 <= cfg.dropout < 1, "--dropout must be in [0, 1)"),
        (all(0.5 <= a <= 1.5 for a in cfg.tta_warps), "--tta-warps must be factors in [0.5, 1.5] (1 = no warp)"),
        (not (cfg.tta_warps and cfg.model == "m5"), "--tta-warps warps a spectrogram: use --model bcresnet or cnn"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    build_model(cfg, 2)  # bad model options fail here, before any data is read


def feature_stats(features: FeatureExtractor, clips: torch.Tensor, n: int = 2000, batch: int = 500) -> tuple[float, float]:
    """Mean and standard deviation of the un-normalized features of up to ``n`` clips spread over ``clips``."""
    idx = torch.linspace(0, len(clips) - 1, min(n, len(clips))).round().long()
    s = s2 = count = 0.0
    with torch.no_grad():
        for start in range(0, len(idx), batch):
            f = features.raw(clips[idx[start:start + batch]].float() / 32768.0).double()
            s, s2, count = s + float(f.sum()), s2 + float(f.pow(2).sum()), count + f.numel()
    mean = s / count
    return mean, math.sqrt(max(s2 / count - mean * mean, 1e-12))


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model, prep: BatchPreparer, clips: torch.Tensor, batch_size: int = 256,
            noise_snr: float | None = None, seed: int = 0, warps: Sequence[float] = ()) -> torch.Tensor:
    """Class probabilities (N, K) for int16 clips (N, T); with ``noise_snr``, every clip gets background noise
    at that SNR (seeded by ``seed``) first. With ``warps`` (test-time augmentation), the mean of the
    probabilities over the clip's spectrogram warped by each VTLP factor (:func:`vtlp_warp`; 1 = none)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prep.cpu_bf16 and prep.device.type == "cpu"):
        for start in range(0, len(clips), batch_size):
            w = prep.wave(clips[start:start + batch_size])
            if noise_snr is not None:
                w = mix_noise(w, prep.noise, (noise_snr, noise_snr), 1.0, g)
            if warps:
                views = [prep.inputs(w, None if a == 1 else torch.full((len(w),), float(a))) for a in warps]
                out.append(sum(model(v).float().softmax(-1) for v in views).cpu() / len(views))
            else:
                out.append(model(prep.inputs(w)).float().softmax(-1).cpu())
    return torch.cat(out)


def _accuracy_by(groups: Sequence[str], correct: torch.Tensor) -> dict[str, float]:
    out: dict[str, list[float]] = {}
    for g, c in zip(groups, correct.tolist()):
        out.setdefault(g, []).append(c)
    return {g: sum(v) / len(v) for g, v in sorted(out.items())}


def worst_words_by_engine(engines: Sequence[str], labels: torch.Tensor, pred: torch.Tensor, classes: Sequence[str],
                          k: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Per engine, the ``k`` words of lowest accuracy (ties: alphabetical), each with its clip count and the
    word it was most often taken for: ``{engine: [{"word", "acc", "n", "confused_with"}, ...]}``. The voices of
    an engine say a word alike at every rate and pitch, so a voice tends to miss all clips of a word or none."""
    groups: dict[str, dict[int, list[int]]] = {}
    for e, t, p in zip(engines, labels.tolist(), pred.tolist()):
        groups.setdefault(e, {}).setdefault(t, []).append(p)
    out: dict[str, list[dict[str, Any]]] = {}
    for e, words in sorted(groups.items()):
        rows = []
        for t, preds in words.items():
            wrong = Counter(p for p in preds if p != t)
            rows.append({"word": classes[t], "acc": sum(p == t for p in preds) / len(preds), "n": len(preds),
                         "confused_with": classes[wrong.most_common(1)[0][0]] if wrong else None})
        out[e] = sorted(rows, key=lambda r: (r["acc"], r["word"]))[:k]
    return out


def evaluate_split(model, prep: BatchPreparer, split: SpeechSplit, noisy_snr: float | None = None,
                   seed: int = 0, tta_warps: Sequence[float] = ()) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Accuracy, loss, per-word and per-engine accuracy and confusion matrix on ``split``; the arrays to keep.
    With ``tta_warps`` also ``acc_tta`` (and ``per_engine_acc_tta``): probabilities averaged over those warps."""
    y, K = split.labels, len(split.classes)
    t0 = time.perf_counter()
    probs = predict(model, prep, split.clips)
    pred = probs.argmax(-1)
    correct = (pred == y).double()
    cm = confusion_matrix(y.numpy(), pred.numpy(), K)
    rows = cm.sum(axis=1)
    metrics: dict[str, Any] = {
        "n": len(y),
        "acc": float(correct.mean()),
        "loss": float(F.nll_loss(probs.clamp_min(1e-12).log(), y)),
        "per_word_acc": {w: (float(cm[i, i] / rows[i]) if rows[i] else None) for i, w in enumerate(split.classes)},
        "confusion_matrix": cm.tolist(),
        "eval_time_s": time.perf_counter() - t0,
    }
    engines = engines_of(split.root, split.files)
    if engines is not None:
        metrics["per_engine_acc"] = _accuracy_by(engines, correct)
        metrics["per_engine_worst_words"] = worst_words_by_engine(engines, y, pred, split.classes)
    if tta_warps:
        correct_tta = (predict(model, prep, split.clips, warps=tta_warps).argmax(-1) == y).double()
        metrics["tta_warps"] = list(tta_warps)
        metrics["acc_tta"] = float(correct_tta.mean())
        if engines is not None:
            metrics["per_engine_acc_tta"] = _accuracy_by(engines, correct_tta)
    if noisy_snr is not None and prep.noise:
        noisy = predict(model, prep, split.clips, noise_snr=noisy_snr, seed=seed).argmax(-1)
        metrics["noisy_snr_db"] = noisy_snr
        metrics["noisy_acc"] = float((noisy == y).double().mean())
    return metrics, {"labels": y, "pred": pred}


def pocketsphinx_baseline(split: SpeechSplit, pred: torch.Tensor, max_files: int, seed: int) -> dict[str, Any]:
    """Debian's pocketsphinx (35-word JSGF grammar) on a seeded random subset of the split, and the model's
    accuracy on the same clips; ``{"skipped": reason}`` when pocketsphinx is missing or fails."""
    from deepnotes.data.speech_build import pocketsphinx_recognize

    if shutil.which("pocketsphinx_batch") is None:
        return {"skipped": "pocketsphinx is not installed (sudo apt-get install pocketsphinx pocketsphinx-en-us)"}
    n = len(split.files)
    idx = torch.arange(n)
    subset = "all"
    if max_files and n > max_files:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_files].sort().values
        subset = f"seeded random subset ({max_files} of {n}, seed {seed})"
    files = [split.files[i] for i in idx]
    t0 = time.perf_counter()
    try:
        hyps = pocketsphinx_recognize([split.root / f for f in files], split.classes)
    except (DataError, ValueError) as e:
        return {"skipped": f"pocketsphinx failed: {e}"}
    truth = [f.split("/")[0] for f in files]
    ps_correct = torch.tensor([float(h == t) for h, t in zip(hyps, truth)], dtype=torch.float64)
    model_correct = (pred[idx] == split.labels[idx]).double()
    out: dict[str, Any] = {"n": len(files), "subset": subset, "acc": float(ps_correct.mean()),
                           "no_word": sum(h is None for h in hyps), "model_acc_same_clips": float(model_correct.mean()),
                           "time_s": time.perf_counter() - t0}
    engines = engines_of(split.root, files)
    if engines is not None:
        out["per_engine_acc"] = _accuracy_by(engines, ps_correct)
        out["model_per_engine_acc"] = _accuracy_by(engines, model_correct)
    return out


def load_trained(run_dir: Path, device: torch.device):
    """A finished run's config, data.json, trained model (on ``device``) and batch preparer.

    Use: ``cfg, info, model, prep = load_trained(run, device)``, then ``predict(model, prep, clips)`` gives the
    (N, 35) class probabilities of int16 clips (N, 16000) in the order of ``info["classes"]``.

    Raises:
        UserError: ``run_dir`` is not a finished run (no config.json, data.json or model.safetensors).
    """
    from deepnotes.experiment import load_config

    _, cfg = load_config(run_dir)
    data_info = read_run_json(run_dir / "data.json")
    model = load_run_weights(build_model(cfg, len(data_info["classes"])), run_dir / "model.safetensors", run_dir)
    model.to(device)
    features = FeatureExtractor(cfg.model, cfg.n_mels, data_info["feature_mean"], data_info["feature_std"],
                                cfg.feature_norm)
    root = Path(data_info["root"])
    noise = load_noise(root, lambda _m: None) if root.is_dir() else []
    prep = BatchPreparer(cfg, features, noise, device, use_cpu_bf16(cfg, device))
    return cfg, data_info, model, prep


def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: accuracy of a finished run on its test split, another built dataset, or a folder.

    Args:
        data: None (the run's own test split), ``speech-keywords`` / ``speech-keywords-small``, or a folder in
            the Speech Commands layout: its test split if it has ``testing_list.txt``, else every WAV of its
            word folders (any sample rate: resampled to 16 kHz; shorter clips zero-padded to 1 s).
    Returns:
        The metrics, also saved as ``eval/<name>.json`` in the run folder.

    Raises:
        UserError: not a finished run; a folder whose words are not the run's classes; a dataset not built.
    """
    run_dir = Path(run_dir)
    cfg, data_info, model, prep = load_trained(run_dir, device)
    classes = data_info["classes"]
    if data is None:
        split, name = load_split(Path(data_info["root"]), "test", classes), "test"
    elif Path(data).is_dir():
        split, name = load_eval_folder(Path(data), classes), Path(data).resolve().name
    else:
        root = data_folder(dataclasses.replace(cfg, dataset=data, data_dir=None))
        split, name = load_split(root, "test", classes), data
    metrics, _ = evaluate_split(model, prep, split, cfg.noisy_test_snr, cfg.seed, cfg.tta_warps)
    metrics.update(data=name, source=str(split.root))
    write_json_atomic(run_dir / "eval" / f"{name}.json", metrics)
    return metrics


# ----------------------------------------------------------------------------------- run
def _example_index(split: SpeechSplit) -> int:
    """The report's example clip: the first test clip of "yes" (the exercise's word), else the first clip."""
    for i, f in enumerate(split.files):
        if f.startswith("yes/"):
            return i
    return 0


def run(cfg: KeywordSpottingConfig, ctx: RunContext) -> dict[str, Any]:
    """Train, evaluate on the test split (clean, per word, per engine, with noise), run the baseline, write the report."""
    _validate(cfg)
    log = ctx.log if ctx.info.is_main else (lambda _m: None)
    torch.manual_seed(cfg.seed)
    root = data_folder(cfg)
    t_load = time.perf_counter()
    train = load_split(root, "train").subset(cfg.limit_train)
    classes = train.classes
    val = load_split(root, "validation", classes)
    test = load_split(root, "test", classes).subset(cfg.limit_test)
    noise = load_noise(root, log)
    features = FeatureExtractor(cfg.model, cfg.n_mels, norm=cfg.feature_norm)
    features.mean, features.std = feature_stats(features, train.clips)
    ex = _example_index(test)
    data_info = {
        "root": str(root.resolve()), "dataset": cfg.data_dir or cfg.dataset, "classes": classes,
        "n_train": len(train.labels), "n_val": len(val.labels), "n_test": len(test.labels),
        "noise": len(noise), "feature_mean": features.mean, "feature_std": features.std,
        "example_file": test.files[ex], "load_time_s": time.perf_counter() - t_load,
    }
    if ctx.info.is_main:
        write_json_atomic(ctx.run_dir / "data.json", data_info)
    log(f"{data_info['dataset']}: {len(train.labels)} train / {len(val.labels)} val / {len(test.labels)} test clips, "
        f"{len(classes)} words, {len(noise)} noise recordings, from {root}")

    model = build_model(cfg, len(classes))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {cfg.model}: {n_params:,} parameters; device {ctx.device}"
        + (f"; {ctx.info.world_size} processes" if ctx.info.enabled else ""))
    prep = BatchPreparer(cfg, features, noise, ctx.device, use_cpu_bf16(cfg, ctx.device))
    weights = None
    if cfg.engine_power != 1.0:
        weights, shares = engine_weights(root, train.files, cfg.engine_power)
        log("training draws per engine: " + ", ".join(f"{e} {100 * v:.1f}%" for e, v in shares.items()))
    trainer = supervised_trainer(cfg, model, ctx.run_dir, (train.clips, train.labels), prep,
                      {"val": (val.clips, val.labels)}, ctx.device, ctx.info, log, eval_batch_size=256,
                      sample_weights=weights)
    if ctx.resume:
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit()
    session_time = time.perf_counter() - t0
    if not ctx.info.is_main:
        return {}

    metrics, arrays = evaluate_split(model, prep, test, cfg.noisy_test_snr, cfg.seed, cfg.tta_warps)
    if cfg.tta_warps:  # the validation voices, to judge the test-time augmentation without the test set
        y_val = val.labels
        metrics["val_acc"] = float((predict(model, prep, val.clips).argmax(-1) == y_val).double().mean())
        metrics["val_acc_tta"] = float((predict(model, prep, val.clips, warps=cfg.tta_warps).argmax(-1) == y_val)
                                       .double().mean())
    metrics["train_time_s"] = sum(row["epoch_time_s"] for row in trainer.history)
    metrics["this_session_time_s"] = session_time
    metrics["parameters"] = n_params
    if cfg.pocketsphinx:
        log("pocketsphinx baseline on the test split ...")
        metrics["pocketsphinx"] = pocketsphinx_baseline(test, arrays["pred"], cfg.pocketsphinx_max_files, cfg.seed)
    write_json_atomic(ctx.run_dir / "test_metrics.json", metrics)
    example = test.clips[ex].float() / 32768.0
    g = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        clean = prep.inputs(prep.wave(test.clips[ex:ex + 1]))
        aug_wave = prep.augment_wave(prep.wave(test.clips[ex:ex + 1]), g)
        aug = prep.augment_features(prep.features(aug_wave, prep.warp_factors(1, g)), g)
    arrays.update(example_wave=example.contiguous(), example_input=clean.float().cpu().contiguous(),
                  example_augmented=aug.float().cpu().contiguous())
    with atomic_path(ctx.run_dir / "predictions.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in arrays.items()}, str(tmp))
    report_path = report(ctx.run_dir)
    engines = ", ".join(f"{e} {100 * a:.2f}%" for e, a in metrics.get("per_engine_acc", {}).items())
    log(f"test accuracy {100 * metrics['acc']:.2f}%" + (f" ({engines})" if engines else "")
        + f"; trained in {metrics['train_time_s']:.0f}s")
    if "acc_tta" in metrics:
        log(f"with the probabilities averaged over VTLP warps {', '.join(f'{a:g}' for a in cfg.tta_warps)}: test "
            f"{100 * metrics['acc_tta']:.2f}% (validation {100 * metrics['val_acc_tta']:.2f}% vs "
            f"{100 * metrics['val_acc']:.2f}%)")
    ps = metrics.get("pocketsphinx", {})
    if "acc" in ps:
        log(f"pocketsphinx on {ps['n']} test clips: {100 * ps['acc']:.2f}% (the model on the same clips: "
            f"{100 * ps['model_acc_same_clips']:.2f}%)")
    log(f"report: {report_path}")
    return metrics


# ----------------------------------------------------------------------------------- report
def _plot_waveforms(wave: np.ndarray, path: Path) -> None:
    fig = new_figure(8, 1.6 * len(FIGURE_RATES))
    for i, rate in enumerate(FIGURE_RATES):
        ax = fig.add_subplot(len(FIGURE_RATES), 1, i + 1)
        w = resample(wave.astype(np.float32), SAMPLE_RATE, rate)
        ax.plot(np.arange(len(w)) / rate, w, lw=0.6)
        ax.set_ylabel(f"{rate // 1000} kHz")
        ax.set_xlim(0, 1)
        if i == 0:
            ax.set_title("one clip at several sample rates (resampled with soxr)")
    ax.set_xlabel("time (s)")
    fig.tight_layout()
    save_figure(fig, path)


def _plot_features(wave: np.ndarray, path: Path) -> None:
    w = torch.from_numpy(wave.astype(np.float32)).double()
    panels = [
        ("spectrogram (dB), n_fft 400, hop 200: (201, 81)", to_db(Spectrogram()(w), amin=1e-10, top_db=80.0), "frequency bin"),
        ("mel spectrogram (dB), 40 mels, 25 ms / 10 ms", LogMelSpectrogram(SAMPLE_RATE, top_db=80.0, n_mels=40)(w), "mel band"),
        ("MFCC 1-12 (c0, the log energy, left out: it would take the whole colour scale)", MFCC(SAMPLE_RATE)(w)[1:],
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


def _plot_augmentation(clean: torch.Tensor, aug: torch.Tensor, path: Path, spectral: bool) -> None:
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


def _plot_per_word(per_word: dict[str, float | None], path: Path) -> None:
    items = sorted(((a if a is not None else float("nan"), w) for w, a in per_word.items()), reverse=True)
    fig = new_figure(7, 0.22 * len(items) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([w for _, w in items], [100 * a for a, _ in items], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%)")
    lo = min((a for a, _ in items if a == a), default=0.0)
    ax.set_xlim(max(0.0, 100 * lo - 5), 100)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("accuracy per word (test split)")
    fig.tight_layout()
    save_figure(fig, path)


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else ""


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    data_info = read_run_json(run_dir / "data.json")
    metrics = read_run_json(run_dir / "test_metrics.json")
    classes = data_info["classes"]
    rows = read_metrics_csv(run_dir / "metrics.csv")
    arrays = load_file(str(run_dir / "predictions.safetensors"))
    model_name = {"bcresnet": f"BC-ResNet-{cfg.width:g}", "cnn": "the exercise's CNN", "m5": "M5"}[cfg.model]
    plot_learning_curves(rows, run_dir / "learning_curves.png", title=f"{model_name} on {data_info['dataset']}")
    steps = int(rows[-1]["step"]) if rows else 1
    plot_lr_schedule([lr_at(s, steps, cfg.lr, cfg.schedule, cfg.warmup) for s in range(steps)],
                     run_dir / "lr_schedule.png", title=f"{cfg.schedule} schedule")
    plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]), classes, run_dir / "confusion_matrix.png",
                          title="test split")
    _plot_per_word(metrics["per_word_acc"], run_dir / "per_word_accuracy.png")
    wave = arrays["example_wave"].numpy()
    _plot_waveforms(wave, run_dir / "waveforms.png")
    _plot_features(wave, run_dir / "features.png")
    _plot_augmentation(arrays["example_input"], arrays["example_augmented"], run_dir / "augmentation.png",
                       cfg.model != "m5")

    result_rows: list[list[Any]] = [["test accuracy (unseen voices)", _pct(metrics["acc"])]]
    for engine, acc in metrics.get("per_engine_acc", {}).items():
        result_rows.append([f"test accuracy, {engine} voices", _pct(acc)])
    if "acc_tta" in metrics:
        warps = ", ".join(f"{a:g}" for a in metrics["tta_warps"])
        result_rows.append([f"test accuracy, probabilities averaged over VTLP warps {warps} (TTA)",
                            _pct(metrics["acc_tta"])])
        for engine, acc in metrics.get("per_engine_acc_tta", {}).items():
            result_rows.append([f"test accuracy with TTA, {engine} voices", _pct(acc)])
        if "val_acc_tta" in metrics:
            result_rows.append(["validation accuracy without / with TTA (final weights)",
                                f"{_pct(metrics['val_acc'])} / {_pct(metrics['val_acc_tta'])}"])
    if "noisy_acc" in metrics:
        result_rows.append([f"test accuracy with background noise at {metrics['noisy_snr_db']:g} dB SNR",
                            _pct(metrics["noisy_acc"])])
    if rows and rows[-1].get("val_acc") is not None:
        result_rows.append(["validation accuracy, last epoch (unseen voices)", _pct(float(rows[-1]["val_acc"]))])
        result_rows.append(["training accuracy, last epoch (augmented clips)", _pct(float(rows[-1]["train_acc"]))])
    result_rows += [
        ["test loss", f"{metrics['loss']:.4f}"],
        ["test clips", metrics["n"]],
        ["training time (all epochs)", f"{metrics['train_time_s']:.0f} s"],
        ["parameters", f"{metrics['parameters']:,}"],
    ]
    baseline_rows: list[list[Any]] = [
        ["the exercise (seed 000): CNN on (201, 81) spectrogram images of real Speech Commands recordings",
         f"train {_pct(EXERCISE_TRAIN_ACC)}, validation {_pct(EXERCISE_VAL_ACC)}"],
    ]
    ps = metrics.get("pocketsphinx")
    ps_lines: list[str] = []
    if ps is not None and "acc" in ps:
        per = ps.get("per_engine_acc", {})
        mper = ps.get("model_per_engine_acc", {})
        baseline_rows.append([f"Debian pocketsphinx (CMU Sphinx en-us, grammar of the {len(classes)} words), "
                              f"{ps['n']} test clips ({ps['subset']})", _pct(ps["acc"])])
        baseline_rows.append([f"this model on the same {ps['n']} clips", _pct(ps["model_acc_same_clips"])])
        if per:
            ps_lines = ["Per engine on the pocketsphinx clips:", "",
                        markdown_table(["engine", "pocketsphinx", "this model"],
                                       [[e, _pct(per[e]), _pct(mper.get(e))] for e in per]), ""]
    elif ps is not None:
        ps_lines = [f"pocketsphinx baseline skipped: {ps['skipped']}.", ""]
    per_word = metrics["per_word_acc"]
    worst = sorted((a, w) for w, a in per_word.items() if a is not None)[:5]
    config_rows = [[k, v] for k, v in json.loads((run_dir / "config.json").read_text())["config"].items()]
    aug = [f"speed perturbation by a factor in [{1 - cfg.speed_perturb:g}, {1 + cfg.speed_perturb:g}]"
           if cfg.speed_perturb > 0 else None,
           f"VTLP by a factor in [{1 - cfg.vtlp:g}, {1 + cfg.vtlp:g}]" if cfg.vtlp > 0 and cfg.model != "m5" else None,
           f"time shift up to {cfg.time_shift_ms:g} ms" if cfg.time_shift_ms > 0 else None,
           f"background noise ({data_info['noise']} recordings) on {100 * cfg.noise_prob:g}% of the clips at "
           f"{cfg.snr_db[0]:g}-{cfg.snr_db[1]:g} dB SNR" if cfg.noise_prob > 0 and data_info["noise"] else None,
           f"SpecAugment: {cfg.freq_masks} frequency masks up to {100 * cfg.max_freq_mask:g}% of the bins, "
           f"{cfg.time_masks} time masks up to {100 * cfg.max_time_mask:g}% of the frames"
           if cfg.model != "m5" and (cfg.freq_masks or cfg.time_masks) else None]
    aug_text = "; ".join(a for a in aug if a) or "none"
    inputs = {"bcresnet": f"{cfg.n_mels} log-mel bands (30 ms windows, 10 ms hop)",
              "cnn": "the (201, 81) dB spectrogram (n_fft 400, hop 200)", "m5": "the raw 16 kHz waveform"}[cfg.model]
    lines = [
        f"# {NAME}: {model_name} on {data_info['dataset']}",
        "",
        "The Speech Commands exercise of the curriculum notes (seed 000: waveform, spectrogram, mel spectrogram "
        "and MFCC, then a CNN on the spectrogram; train 91%, validation 90%). "
        f"Data: {data_info['root']} ({data_info['n_train']} train / {data_info['n_val']} validation / "
        f"{data_info['n_test']} test clips, {len(classes)} words). In the synthesized speech-keywords set, validation "
        "and test are voices never heard in training. "
        f"Model input: {inputs}. Augmentation: {aug_text}.",
        "",
        "## Results",
        "",
        markdown_table(["metric", "value"], result_rows),
        "",
        "Baselines:",
        "",
        markdown_table(["baseline", "accuracy"], baseline_rows),
        "",
        *ps_lines,
    ]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        ev_rows = []
        for p in evals:
            e = json.loads(p.read_text())
            ev_rows.append([e.get("data", p.stem), e["n"], _pct(e["acc"]), _pct(e.get("noisy_acc"))])
        lines += ["## `deepnotes eval` results", "",
                  markdown_table(["data", "clips", "accuracy", "with noise"], ev_rows), ""]
    lines += [
        "## The exercise's pictures", "",
        f"One test clip ({data_info['example_file']}) at several sample rates, and its features:", "",
        markdown_image("waveform at several sample rates", "waveforms.png"), "",
        markdown_image("spectrogram, mel spectrogram, MFCC", "features.png"), "",
        "What the model sees, clean and augmented:", "",
        markdown_image("augmentation", "augmentation.png"), "",
        "## Accuracy per word", "",
        "Hardest words: " + ", ".join(f"{w} ({_pct(a)})" for a, w in worst) + ".", "",
        *(["Hardest words per engine (accuracy over that engine's test clips of the word; most frequent wrong "
           "answer):", "",
           markdown_table(["engine", "words"], [[e, ", ".join(
               f"{r['word']} {_pct(r['acc'])}" + (f" (-> {r['confused_with']})" if r["confused_with"] else "")
               for r in ws)] for e, ws in metrics["per_engine_worst_words"].items()]), ""]
          if metrics.get("per_engine_worst_words") else []),
        markdown_image("per-word accuracy", "per_word_accuracy.png"), "",
        markdown_table(["word", "test accuracy"], [[w, _pct(a)] for w, a in per_word.items()]), "",
        "## Confusion matrix (test)", "", markdown_image("confusion matrix", "confusion_matrix.png"), "",
        "## Learning curves", "", markdown_image("learning curves", "learning_curves.png"), "",
        markdown_image("learning-rate schedule", "lr_schedule.png"), "",
        "## Per-epoch metrics", "",
        markdown_table(list(rows[0].keys()), [list(r.values()) for r in rows]) if rows else "(none)", "",
        "## Configuration", "", markdown_table(["field", "value"], config_rows), "",
    ]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="35 spoken words on unseen voices: BC-ResNet on log-mels, the exercise's spectrogram CNN, or M5 on "
            "waveforms; shift/noise/SpecAugment augmentation; pocketsphinx baseline",
    source="seed 000 Speech Commands exercise; Kim et al. 2021 (BC-ResNet); PyTorch M5 tutorial",
    default_dataset="speech-keywords",
    metric="test accuracy",
    config_cls=KeywordSpottingConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
