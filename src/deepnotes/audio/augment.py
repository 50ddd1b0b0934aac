r"""Audio augmentations on batches of waveforms and spectrograms, each from its paper's equations.

Every function draws its random numbers from the CPU ``generator`` it is given (a fixed order of draws per
call, so a seeded run repeats them) and works on any device.

* :func:`speed_perturb`: Ko, Peddinti, Povey & Khudanpur, "Audio Augmentation for Speech Recognition",
  Interspeech 2015: resample each clip by a factor r (duration, pitch and formants change together).
* :func:`time_shift`: a random shift in time, zero-filled (the Speech Commands tutorials' augmentation).
* :func:`mix_noise`: background noise added at a random signal-to-noise ratio,
  ``y = x + g n`` with ``10 log10(P_x / P_{gn}) = SNR``.
* :func:`vtlp_warp`, :func:`uniform_factors`: Jaitly & Hinton, "Vocal Tract Length Perturbation (VTLP)
  improves speech recognition", ICML 2013 WDLASL: a piecewise-linear warp of the frequency axis.
* :func:`spec_augment`: Park et al., "SpecAugment: A Simple Data Augmentation Method for Automatic Speech
  Recognition", Interspeech 2019: frequency and time masks (no time warping).
* :func:`random_eq`: a random smooth gain over frequency (in dB), the channel / equalizer difference between
  two microphones or two synthesizers' vocoders; the channel-simulation idea of e.g. Cui, Goel & Kingsbury,
  "Data Augmentation for Deep Neural Network Acoustic Modeling", IEEE/ACM TASLP 2015.

Shapes: waveforms (B, T); spectrograms (B, K, T) or features (B, F, T) / (B, 1, F, T).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

#: VTLP's boundary frequency F_hi (Hz): below it frequencies scale by alpha, above it the warp joins Nyquist.
VTLP_BOUNDARY_HZ = 4800.0


def _check_waves(x: torch.Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must be (B, T) waveforms, got shape {tuple(x.shape)}")


def time_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each clip by a uniform random integer number of samples in ``[-max_shift, max_shift]``, zero-filled.

    ``y[b, t] = x[b, t - s_b]`` where ``0 <= t - s_b < T``, else 0 (the clip moves later in time for s > 0);
    the length T is kept.

    Args:
        x: (B, T) float waveforms. max_shift: samples, >= 0. generator: CPU generator for the draws.

    Returns:
        (B, T), on ``x``'s device.

    Raises:
        ValueError: ``max_shift < 0`` or ``x`` not 2-D.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    _check_waves(x)
    B, T = x.shape
    s = torch.randint(-max_shift, max_shift + 1, (B, 1), generator=generator).to(x.device)
    src = torch.arange(T, device=x.device).unsqueeze(0) - s  # (B, T): which sample lands at t
    valid = (src >= 0) & (src < T)
    return x.gather(1, src.clamp(0, T - 1)) * valid


def speed_perturb(x: torch.Tensor, max_change: float, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Play each clip faster or slower by a random factor r uniform in ``[1 - max_change, 1 + max_change]``.

    Speed perturbation (Ko et al. 2015): resampling changes duration, pitch and formant frequencies together
    by r, which mimics speakers with shorter or longer vocal tracts. The clip is stretched about its centre
    c = (T - 1) / 2, with linear interpolation between samples and zeros outside::

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
    _check_waves(x)
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


def uniform_factors(n: int, max_change: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) float32 factors uniform in ``[1 - max_change, 1 + max_change]`` (VTLP's alpha), one draw each."""
    return 1 + max_change * (2 * torch.rand(n, generator=generator) - 1)


def vtlp_warp(spec: torch.Tensor, alpha: torch.Tensor, sample_rate: float = 16000,
              boundary_hz: float = VTLP_BOUNDARY_HZ) -> torch.Tensor:
    r"""Vocal tract length perturbation of linear spectrograms: stretch each clip's frequency axis by its α.

    Jaitly & Hinton 2013: a speaker with a shorter vocal tract has formants at higher frequencies, roughly by
    a constant factor. Their piecewise-linear warp moves frequency f to α f up to a boundary b, then joins the
    Nyquist frequency N linearly so the band stays [0, N]. The spectrogram is resampled along frequency
    (linear interpolation between bins) so that what was at f appears at φ(f)::

        y[k] = x(φ⁻¹(f_k)),   φ⁻¹(g) = g / α                          for g <= b
                              φ⁻¹(g) = b/α + (g - b)(N - b/α)/(N - b)  for g > b

    Deliberate difference: the paper warps the mel filterbank's centre frequencies; warping the spectrogram
    itself does the same for any later filterbank.

    Args:
        spec: (B, K, T) power (or magnitude) spectrograms with K = n_fft // 2 + 1 bins from 0 to N.
        alpha: (B,) warp factors > 0 (1: unchanged; > 1 moves energy up).
        sample_rate: Hz. Default 16000. boundary_hz: b, in (0, N). Default 4800 (the paper's F_hi).

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

    so that ``10 log10(P_x / P_{gn}) = s``. A silent clip (P_x = 0) stays silent. Draws, in this order:
    the recording (B,), the crop's start (B,), the SNR (B,), whether to mix (B,).

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
    Frequency masks are drawn first, then time masks; per mask the widths (B,), then the starts (B,).

    Args:
        feats: (B, F, T) or (B, 1, F, T) features.
        freq_masks, time_masks: masks per clip (>= 0). max_freq, max_time: widest mask (bins, frames).
        generator: CPU generator for the draws.
        value: what masked cells become. Default 0.

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


def random_eq(feats: torch.Tensor, max_db: float, generator: torch.Generator | None = None,
              n_terms: int = 4) -> torch.Tensor:
    r"""A random smooth equalizer per clip on dB features: ``y[b, f, t] = x[b, f, t] + g_b(f)``.

    The gain curve over the F frequency rows is a sum of the first ``n_terms`` cosines of a DCT-II basis
    (a tilt, a bump, ...), rescaled so that its largest magnitude is a random level::

        c_{b,k} ~ N(0, 1),  h_b(f) = sum_{k=1}^{K} c_{b,k} cos(pi k (f + 1/2) / F)
        g_b(f) = u_b * max_db * h_b(f) / max_f |h_b(f)|,   u_b ~ U(0, 1)

    so every clip gets a gain between -max_db and +max_db dB whose shape changes slowly with frequency, as a
    channel (microphone, loudspeaker, vocoder) would. Draws: the coefficients (B, K), then the levels (B,).

    Args:
        feats: (B, F, T) or (B, 1, F, T) features in dB (before any normalization).
        max_db: the largest gain magnitude (dB, >= 0; 0 returns ``feats`` unchanged, no draws).
        generator: CPU generator for the draws.
        n_terms: K, the cosines summed (>= 1). Default 4.

    Returns:
        A copy with the gains added, same shape, dtype and device.

    Raises:
        ValueError: ``max_db < 0`` or ``n_terms < 1``.
    """
    if max_db < 0 or n_terms < 1:
        raise ValueError(f"max_db must be >= 0 and n_terms >= 1; got {max_db}, {n_terms}")
    if max_db == 0:
        return feats
    B, Fq = feats.shape[0], feats.shape[-2]
    coef = torch.randn(B, n_terms, generator=generator)
    level = torch.rand(B, generator=generator)
    k = torch.arange(1, n_terms + 1, dtype=torch.float32).unsqueeze(1)  # (K, 1)
    basis = torch.cos(torch.pi * k * (torch.arange(Fq, dtype=torch.float32) + 0.5) / Fq)  # (K, F)
    h = coef @ basis  # (B, F)
    g = (level * max_db).unsqueeze(1) * h / h.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    return feats + g.to(feats.device, feats.dtype).view(B, *([1] * (feats.dim() - 3)), Fq, 1)
