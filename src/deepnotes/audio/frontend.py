"""The keyword-spotting front end: int16 clips -> augmented, normalized model inputs, one batch at a time.

* :class:`FeatureExtractor`: waveforms (B, T) -> log-mel (B, 1, n_mels, T') (BC-ResNet's 30 ms windows, 10 ms
  hop), the exercise's (B, 1, 201, 81) dB spectrogram (n_fft 400, hop 200), or the waveform itself (M5); then
  a normalization: one mean/std from the training set (:func:`feature_stats`), each clip's own mean/std, or
  each clip's mean/std per frequency band over time (cepstral mean and variance normalization).
* :class:`SpeechAugment` + :class:`BatchPreparer`: the training pipeline of :mod:`deepnotes.audio.augment`,
  drawn from the Trainer's seeded generator in a fixed order (speed perturbation, time shift, background
  noise, VTLP factors, SpecAugment masks), so that a resumed run repeats the same draws.
* :func:`predict`: class probabilities of clips, optionally with noise at a fixed SNR or averaged over VTLP
  warps (test-time augmentation).

Source: seed 000 "Audio Classification with Spectrogram"; Kim et al., Interspeech 2021 (BC-ResNet's input);
the augmentations' papers are cited in :mod:`deepnotes.audio.augment`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from deepnotes.audio.augment import (mix_noise, random_eq, spec_augment, speed_perturb, time_shift, uniform_factors,
                                     vtlp_warp)
from deepnotes.audio.features import LogMelSpectrogram, Spectrogram, to_db

#: Log floor of the spectrogram features (power), -60 dB: the zero padding of a clip reads as -60 dB, not -100.
FEATURE_AMIN = 1e-6
INPUT_KINDS = ("logmel", "spectrogram", "waveform")


class FeatureExtractor(torch.nn.Module):
    """Waveforms (B, T) at ``sample_rate`` -> normalized model inputs.

    Args:
        kind: ``"logmel"`` (B, 1, n_mels, T'), ``"spectrogram"`` (B, 1, 201, 81) for 1 s at 16 kHz, or
            ``"waveform"`` (B, T).
        n_mels: mel bands of ``"logmel"``. Default 40.
        mean, std: the ``"global"`` normalization's scalars (from :func:`feature_stats`). Default 0, 1.
        norm: ``"global"`` (default), ``"utterance"`` (each clip's mean/std) or ``"band"`` (each clip's
            mean/std per frequency row, over time; spectral kinds only).
        sample_rate: Hz. Default 16000.

    Raises:
        ValueError: an unknown ``kind`` or ``norm``, or ``norm="band"`` on waveforms.
    """

    def __init__(self, kind: Literal["logmel", "spectrogram", "waveform"], n_mels: int = 40, mean: float = 0.0,
                 std: float = 1.0, norm: Literal["global", "utterance", "band"] = "global", sample_rate: int = 16000):
        super().__init__()
        if kind not in INPUT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(INPUT_KINDS)}, got {kind!r}")
        if norm not in ("global", "utterance", "band"):
            raise ValueError(f"norm must be global, utterance or band, got {norm!r}")
        if norm == "band" and kind == "waveform":
            raise ValueError("norm='band' needs spectral features (logmel or spectrogram), not the waveform")
        self.kind, self.norm, self.sample_rate = kind, norm, sample_rate
        self.mean, self.std = mean, std
        if kind == "logmel":  # 30 ms windows (n_fft 512), 10 ms hop, as the BC-ResNet paper
            self.transform: torch.nn.Module | None = LogMelSpectrogram(
                sample_rate, amin=FEATURE_AMIN, n_fft=512, win_length=480, hop_length=160, n_mels=n_mels)
        elif kind == "spectrogram":  # the exercise's (201, 81): n_fft 400, hop 200
            self.transform = Spectrogram(n_fft=400, hop_length=200)
        else:
            self.transform = None

    @property
    def is_spectral(self) -> bool:
        return self.transform is not None

    def raw(self, wave: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Un-normalized features: (B, T) -> (B, 1, F, T') in dB, or (B, T). ``alpha`` (B,): VTLP factors
        (:func:`~deepnotes.audio.augment.vtlp_warp` on the linear spectrogram first; spectral kinds only).

        Raises:
            ValueError: ``alpha`` given for waveform features.
        """
        if alpha is not None and self.transform is None:
            raise ValueError("VTLP (alpha) needs spectral features, not the waveform (m5)")
        if self.kind == "logmel":
            if alpha is None:
                return self.transform(wave).unsqueeze(1)
            mel = self.transform.mel
            spec = vtlp_warp(mel.spectrogram(wave), alpha, self.sample_rate)  # (B, K, T')
            return to_db(mel.fb.to(spec.dtype) @ spec, amin=FEATURE_AMIN).unsqueeze(1)  # (B, 1, n_mels, T')
        if self.kind == "spectrogram":
            spec = self.transform(wave)
            if alpha is not None:
                spec = vtlp_warp(spec, alpha, self.sample_rate)
            return to_db(spec, amin=FEATURE_AMIN).unsqueeze(1)
        return wave

    def forward(self, wave: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        return self.normalize(self.raw(wave, alpha))

    def normalize(self, f: torch.Tensor) -> torch.Tensor:
        """Un-normalized features (of :meth:`raw`) -> model inputs, by ``norm``."""
        if self.norm == "global":
            return (f - self.mean) / self.std
        dims = (-1,) if self.norm == "band" else tuple(range(1, f.dim()))  # band: over time, per frequency row
        mean, var = f.mean(dim=dims, keepdim=True), f.var(dim=dims, keepdim=True, unbiased=False)
        return (f - mean) / (var + 1e-5).sqrt()


def feature_stats(features: FeatureExtractor, clips: torch.Tensor, n: int = 2000, batch: int = 500) -> tuple[float, float]:
    """Mean and standard deviation of the un-normalized features of up to ``n`` int16 clips (N, T) spread
    evenly over ``clips`` (the ``"global"`` normalization's scalars)."""
    idx = torch.linspace(0, len(clips) - 1, min(n, len(clips))).round().long()
    s = s2 = count = 0.0
    with torch.no_grad():
        for start in range(0, len(idx), batch):
            f = features.raw(clips[idx[start:start + batch]].float() / 32768.0).double()
            s, s2, count = s + float(f.sum()), s2 + float(f.pow(2).sum()), count + f.numel()
    mean = s / count
    return mean, math.sqrt(max(s2 / count - mean * mean, 1e-12))


@dataclass(frozen=True)
class SpeechAugment:
    """Settings of the training augmentation (0 disables each).

    Attributes:
        speed_perturb: speed factor in [1 - x, 1 + x], x in [0, 1).
        vtlp: VTLP factor in [1 - x, 1 + x] (spectral features only).
        time_shift_ms: shift up to this many ms either way.
        noise_prob: share of clips mixed with background noise, in [0, 1].
        snr_db: the noise's SNR range (low, high) in dB.
        freq_masks, time_masks: SpecAugment masks per clip (spectral features only).
        max_freq_mask, max_time_mask: widest mask, as a share of the bins / frames, in [0, 1].
        eq_db: a random smooth equalizer of up to this many dB (:func:`random_eq`; spectral features only).
    """

    speed_perturb: float = 0.0
    vtlp: float = 0.0
    time_shift_ms: float = 0.0
    noise_prob: float = 0.0
    snr_db: tuple[float, ...] = (5.0, 30.0)
    freq_masks: int = 0
    max_freq_mask: float = 0.0
    time_masks: int = 0
    max_time_mask: float = 0.0
    eq_db: float = 0.0

    @classmethod
    def of(cls, cfg: object) -> "SpeechAugment":
        """The settings from any object with attributes of the same names (a lab's config); a missing one keeps
        its default (0: off)."""
        return cls(**{k: getattr(cfg, k, f.default) for k, f in cls.__dataclass_fields__.items()})

    def describe(self, spectral: bool = True, n_noise: int = 1) -> str:
        """One line naming each augmentation that runs (with ``n_noise`` recordings, on spectral features or not)."""
        parts = [f"speed perturbation by a factor in [{1 - self.speed_perturb:g}, {1 + self.speed_perturb:g}]"
                 if self.speed_perturb > 0 else "",
                 f"VTLP by a factor in [{1 - self.vtlp:g}, {1 + self.vtlp:g}]" if self.vtlp > 0 and spectral else "",
                 f"a random smooth equalizer up to {self.eq_db:g} dB" if self.eq_db > 0 and spectral else "",
                 f"time shift up to {self.time_shift_ms:g} ms" if self.time_shift_ms > 0 else "",
                 f"background noise ({n_noise} recordings) on {100 * self.noise_prob:g}% of the clips at "
                 f"{self.snr_db[0]:g}-{self.snr_db[1]:g} dB SNR" if self.noise_prob > 0 and n_noise else "",
                 f"SpecAugment: {self.freq_masks} frequency masks up to {100 * self.max_freq_mask:g}% of the bins, "
                 f"{self.time_masks} time masks up to {100 * self.max_time_mask:g}% of the frames"
                 if spectral and (self.freq_masks or self.time_masks) else ""]
        return "; ".join(p for p in parts if p) or "none"


class BatchPreparer:
    """int16 clips (B, T) -> augmented (training) or plain, normalized model inputs on ``device``; the
    ``prepare_batch(x, y, train, generator)`` of :class:`deepnotes.train.ClassificationTask`.

    Training draws, in this order: :func:`speed_perturb`, :func:`time_shift`, :func:`mix_noise`, the VTLP
    factors, :func:`random_eq` (on the dB features, before normalization), :func:`spec_augment`.

    Args:
        features: the :class:`FeatureExtractor` (moved to ``device``).
        augment: the :class:`SpeechAugment` settings.
        noise: background-noise recordings (1-D, >= 1 s); empty: no noise mixing.
        device: where the inputs go.
        cpu_bf16: :func:`predict` runs under CPU bfloat16 autocast (as training with ``--cpu-bf16``).
        channels_last: 4-D inputs in NHWC memory layout (faster depthwise convolutions on CPU). Default True.
    """

    def __init__(self, features: FeatureExtractor, augment: SpeechAugment, noise: list[torch.Tensor],
                 device: torch.device, cpu_bf16: bool = False, channels_last: bool = True):
        self.features, self.augment, self.noise, self.device = features.to(device), augment, noise, device
        self.cpu_bf16 = cpu_bf16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def wave(self, x: torch.Tensor) -> torch.Tensor:
        """int16 clips -> float waveforms in [-1, 1) on the device."""
        return x.to(self.device, non_blocking=True).float().div_(32768.0)

    def augment_wave(self, w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        a = self.augment
        if a.speed_perturb > 0:
            w = speed_perturb(w, a.speed_perturb, generator)
        shift = round(a.time_shift_ms * self.features.sample_rate / 1000)
        if shift > 0:
            w = time_shift(w, shift, generator)
        if a.noise_prob > 0 and self.noise:
            w = mix_noise(w, self.noise, (a.snr_db[0], a.snr_db[1]), a.noise_prob, generator)
        return w

    def augment_features(self, f: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        a = self.augment
        if not self.features.is_spectral or (a.freq_masks == 0 and a.time_masks == 0):
            return f
        Fq, T = f.shape[-2:]
        return spec_augment(f, a.freq_masks, int(a.max_freq_mask * Fq), a.time_masks, int(a.max_time_mask * T),
                            generator)

    def warp_factors(self, n: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """VTLP factors (n,), or None when VTLP is off or the features are the waveform."""
        if self.augment.vtlp <= 0 or not self.features.is_spectral:
            return None
        return uniform_factors(n, self.augment.vtlp, generator)

    def layout(self, f: torch.Tensor) -> torch.Tensor:
        return f.contiguous(memory_format=self.memory_format) if f.dim() == 4 else f

    def inputs(self, w: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized model inputs of waveforms (B, T), without augmentation; ``alpha`` (B,): VTLP factors."""
        return self.layout(self.features(w, alpha))

    def augmented(self, w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One training draw of the model inputs of waveforms (B, T)."""
        w = self.augment_wave(w, generator)
        f = self.features.raw(w, self.warp_factors(len(w), generator))
        if self.augment.eq_db > 0 and self.features.is_spectral:
            f = random_eq(f, self.augment.eq_db, generator)
        return self.layout(self.augment_features(self.features.normalize(f), generator))

    def __call__(self, x, y, train, generator):
        with torch.no_grad():
            f = self.augmented(self.wave(x), generator) if train else self.inputs(self.wave(x))
        return f, y.to(self.device, non_blocking=True)


@torch.no_grad()
def predict(model: torch.nn.Module, prep: BatchPreparer, clips: torch.Tensor, batch_size: int = 256,
            noise_snr: float | None = None, seed: int = 0, warps: Sequence[float] = ()) -> torch.Tensor:
    """Class probabilities (N, K) of int16 clips (N, T), in eval mode.

    With ``noise_snr``, every clip gets background noise at that SNR (seeded by ``seed``) first. With
    ``warps`` (test-time augmentation), the mean of the probabilities over the clip's spectrogram warped by
    each VTLP factor (1 = none).
    """
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
