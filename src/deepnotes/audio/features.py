r"""Spectrogram, mel spectrogram, log-mel and MFCC (+ deltas) as batched torch modules, from the equations.

Sources:

* seed 000, PyTorch "Audio Classification with Spectrogram" (Speech Commands): waveform -> spectrogram
  -> mel spectrogram -> MFCC; a one-second 16 kHz clip gives a (201, 81) spectrogram
  (``n_fft=400``, hop 200: :class:`Spectrogram`'s defaults).
* seed 002, ML2022 HW2 (framewise phoneme classification): a frame is 25 ms (400 samples at 16 kHz),
  hopped by 10 ms, described by a 39-dim MFCC = 13 coefficients + deltas + delta-deltas
  (:class:`MFCCWithDeltas`, :func:`mfcc_with_deltas`).
* Davis & Mermelstein 1980 (MFCC: a cosine transform of log mel-filterbank energies); Slaney's
  Auditory Toolbox (the "slaney" mel scale and area-normalized filters); the HTK book
  (mel = 2595 log10(1 + f/700); the delta regression formula, deltas of deltas for accelerations).

The pipeline, one line per stage, for a waveform x[n] (every stage takes ``(..., time)`` input,
any leading batch dimensions, and works on any device, float32 or float64)::

    frames    x_t[n] = x[t h + n],  n = 0..N-1           (centered: x padded by N/2 each side first)
    STFT      X[k, t] = Σ_n w[n] x_t[n] e^{-2πi kn/N},  k = 0..N/2     (torch.fft.rfft does the Σ)
    power     S[k, t] = |X[k, t]|^p                      (p = 2: power, p = 1: magnitude)
    mel       M[m, t] = Σ_k F[m, k] S[k, t]              (F: triangular filters, equally spaced in mel)
    log       L[m, t] = 10 log10(max(M, amin))           (dB; optional floor at max - top_db)
    MFCC      c[j, t] = Σ_m D[j, m] L[m, t]              (D: orthonormal DCT-II, first n_mfcc rows)
    deltas    d[j, t] = Σ_{n=1}^{K} n (c[j, t+n] - c[j, t-n]) / (2 Σ_{n=1}^{K} n²)

Framing and windowing are written out (``Tensor.unfold`` makes the overlapping frames as a view), and
``torch.fft.rfft`` computes the DFT of each windowed frame: the lesson is the STFT equation, not the
FFT algorithm. Every constant matrix (window, filterbank, DCT) is built in float64 from its formula and
cast to the input's dtype in ``forward``. The reference for every stage is librosa (tests/audio).

Two paths compute the same equations (``fast=True``, the default, or ``fast=False`` on every module):

* the readable one: each stage above on the whole batch, one tensor per stage (also the path whenever
  autograd records the input, or the input is not on the CPU);
* the fast one (CPU, no autograd): the pipeline runs on blocks of a few clips, so that frames, spectrum
  and power stay in the cache between stages instead of streaming tens of MB through memory, and the
  stages work in place. Three further savings: only the frames that overlap the centre padding are built
  from padded copies (no padded copy of the batch); |X|² is the square of ``view_as_real(X)`` in place,
  its (re², im²) pairs summed by the mel matmul (each filterbank row appears twice); and the mel matmul
  skips most zeros of the filterbank, one small matmul per group of 16 neighbouring filters over the FFT
  bins they cover. Tests check both paths against librosa (benchmarks/audio_features.py times them).

Deliberate differences from librosa (all documented where they occur):

* :class:`Spectrogram`'s default hop is ``win_length // 2`` (torchaudio, the seed's (201, 81));
  librosa's is ``win_length // 4``. :class:`MelSpectrogram` and :class:`MFCC` default to 10 ms at 16 kHz.
* :func:`to_db`'s ``top_db`` floor uses the maximum of each spectrogram (last two dimensions), so a
  batch gives the same result as its clips one by one; librosa takes the maximum over the whole array.
* The mel defaults are HTK's (``mel_scale="htk"``, ``norm=None``, as torchaudio); librosa's are
  ``htk=False, norm="slaney"``. Both are available.
* :func:`add_deltas` (the HW2 39-dim features) takes the delta-delta as the delta of the deltas
  (HTK, Kaldi); ``librosa.feature.delta(order=2)`` is a different filter (the second derivative of
  a local quadratic fit), available here as ``compute_deltas(..., order=2)``.
"""

from __future__ import annotations

import math
import warnings
from typing import overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WINDOWS = ("hann", "hamming", "boxcar")
PAD_MODES = ("constant", "reflect")
MEL_SCALES = ("htk", "slaney")
MEL_NORMS = (None, "slaney")
DELTA_MODES = ("interp", "nearest")

# Slaney's Auditory Toolbox mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above,
# with 27 steps per factor 6.4 in frequency (so 1 kHz = 15 mel, 6.4 kHz = 42 mel).
_SLANEY_F_SP = 200.0 / 3
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # 15
_SLANEY_LOGSTEP = math.log(6.4) / 27.0

#: The fast path's block size: clips whose windowed frames take about this many bytes go through the whole
#: pipeline together, so that frames, spectrum and power stay in the cache (L2 is 2 MiB a core here; 4 MiB
#: blocks, 2 MiB a thread on 2 threads, were the fastest of 1, 2, 4 and 8 MiB).
_BLOCK_BYTES = 2 ** 22
#: Mel filters per matmul in the fast path (each group's band of FFT bins is narrow, see _mel_bands).
_BAND_MELS = 16


def _use_fast_path(fast: bool, x: Tensor) -> bool:
    """The blocked path runs on the CPU and without autograd (it works in place); otherwise the readable one."""
    return fast and x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled())


def _in_blocks(fn, x: Tensor, bytes_per_clip: int) -> Tensor:
    """``fn(block, out)`` on consecutive blocks of clips of about ``_BLOCK_BYTES``: (B, T) -> (B, ...).

    ``fn`` maps (c, T) clips to (c, ...) features, written into ``out`` (the block's rows of the result)
    when given, else into a new tensor; the first block's result sets the shape of the whole.
    """
    step = max(1, _BLOCK_BYTES // max(1, bytes_per_clip))
    first = fn(x[:step], None)
    if x.shape[0] <= step:
        return first
    out = first.new_empty(x.shape[0], *first.shape[1:])
    out[:step] = first
    for s in range(step, x.shape[0], step):
        fn(x[s:s + step], out[s:s + step])
    return out


# ----------------------------------------------------------------------------------------------
# Windows and the short-time Fourier transform
# ----------------------------------------------------------------------------------------------

def window_function(name: str, win_length: int, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> Tensor:
    r"""A periodic ("DFT-even") analysis window of ``win_length`` samples.

    With N = ``win_length`` and n = 0..N-1::

        hann     w[n] = 0.5  - 0.5  cos(2π n / N)
        hamming  w[n] = 0.54 - 0.46 cos(2π n / N)
        boxcar   w[n] = 1

    The denominator is N, not N - 1 (the symmetric filter-design window): the periodic window is the
    one whose shifted copies at hop N/2 (hann) sum to a constant, and it is what
    ``scipy.signal.get_window(name, N, fftbins=True)``, ``librosa`` and ``torch.hann_window`` give
    (all of which also give [1] for N = 1).

    Args:
        name: ``"hann"``, ``"hamming"`` or ``"boxcar"`` (rectangular).
        win_length: N >= 1.
        dtype, device: of the result. Default float64 on the CPU.

    Returns:
        (N,) tensor.

    Raises:
        ValueError: unknown ``name``; ``win_length < 1``.
    """
    if name not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS} or a 1-D tensor, got {name!r}")
    if int(win_length) != win_length or win_length < 1:
        raise ValueError(f"win_length must be an integer >= 1, got {win_length}")
    n = torch.arange(win_length, dtype=torch.float64)
    if name == "boxcar" or win_length == 1:  # a 1-sample window is [1] (scipy, torch.hann_window)
        w = torch.ones(win_length, dtype=torch.float64)
    else:
        a = 0.5 if name == "hann" else 0.54
        w = a - (1 - a) * torch.cos(2 * math.pi * n / win_length)
    return w.to(dtype=dtype, device=device)


class Spectrogram(nn.Module):
    r"""Short-time Fourier transform power (or magnitude, or complex) spectrogram of a batch of waveforms.

    ::

        x_t[n] = x[t·hop + n],    n = 0..n_fft-1,  t = 0..n_frames-1    (x padded by n_fft//2 if center)
        X[k, t] = Σ_n w[n] x_t[n] exp(-2πi k n / n_fft),   k = 0..n_fft//2
        S[k, t] = |X[k, t]|^power                                          (X itself if power is None)

    with ``n_frames = 1 + (T' - n_fft) // hop`` for a padded length T'. A window shorter than
    ``n_fft`` is zero-padded on both sides to ``n_fft`` (centred), as librosa and torch.stft do.
    Frames come from ``unfold`` (a strided view, no copy), the DFT of each windowed frame from
    ``torch.fft.rfft`` (only k <= n_fft/2: the rest are complex conjugates for a real signal).

    Args:
        n_fft: DFT size N (frequency bins ``n_fft // 2 + 1``). Default 400 (25 ms at 16 kHz).
        win_length: window length, ``<= n_fft``. Default None = ``n_fft``.
        hop_length: samples between frame starts. Default None = ``win_length // 2`` (torchaudio's
            default and the seed's (201, 81) for 1 s at 16 kHz; librosa's is ``win_length // 4``).
        window: ``"hann"`` (periodic, default), ``"hamming"``, ``"boxcar"`` or a 1-D tensor of
            ``win_length`` values. See :func:`window_function`.
        power: exponent of the magnitude: 2.0 (power, default), 1.0 (magnitude), any p > 0, or None
            for the complex STFT.
        center: pad ``n_fft // 2`` samples on both sides so that frame t is centred at sample
            ``t * hop_length``. Default True.
        pad_mode: ``"constant"`` (zeros, librosa's default) or ``"reflect"`` (mirror without the edge
            sample, torchaudio's default). Only used when ``center``.
        normalized: divide X by sqrt(Σ w[n]²) (torchaudio's ``normalized=True``), so that a
            white noise of variance σ² has expected power σ² in every bin. Default False.
        fast: the blocked CPU path (default True) or the readable one; same values up to rounding
            (see the module docstring).

    Shapes:
        waveform: (..., T) real -> (..., n_fft // 2 + 1, n_frames), real (complex if ``power`` is None).

    Raises:
        ValueError: bad arguments; a non-floating or 0-D input; a clip shorter than ``n_fft`` (after
            padding), or not longer than ``n_fft // 2`` with ``pad_mode="reflect"``.

    Example::

        spec = Spectrogram()(torch.randn(8, 16000))   # (8, 201, 81)
    """

    def __init__(self, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
                 window: str | Tensor = "hann", power: float | None = 2.0, center: bool = True,
                 pad_mode: str = "constant", normalized: bool = False, fast: bool = True):
        super().__init__()
        if int(n_fft) != n_fft or n_fft < 1:
            raise ValueError(f"n_fft must be an integer >= 1, got {n_fft}")
        win_length = n_fft if win_length is None else win_length
        if int(win_length) != win_length or not 1 <= win_length <= n_fft:
            raise ValueError(f"win_length must be an integer in [1, n_fft={n_fft}], got {win_length}")
        hop_length = max(win_length // 2, 1) if hop_length is None else hop_length
        if int(hop_length) != hop_length or hop_length < 1:
            raise ValueError(f"hop_length must be an integer >= 1, got {hop_length}")
        if power is not None and not power > 0:
            raise ValueError(f"power must be > 0 (2 = power, 1 = magnitude) or None (complex), got {power}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        if isinstance(window, Tensor):
            if window.dim() != 1 or window.numel() != win_length:
                raise ValueError(f"a window tensor must be 1-D of win_length={win_length} values, "
                                 f"got shape {tuple(window.shape)}")
            w = window.detach().to(torch.float64)
        else:
            w = window_function(window, win_length)
        left = (n_fft - win_length) // 2  # centre a short window in the n_fft frame (librosa's pad_center)
        w = F.pad(w, (left, n_fft - win_length - left))  # (n_fft,)
        self.n_fft, self.win_length, self.hop_length = int(n_fft), int(win_length), int(hop_length)
        self.power, self.center, self.pad_mode, self.normalized = power, center, pad_mode, normalized
        self.fast = bool(fast)
        self.window_name = window if isinstance(window, str) else "tensor"
        self.register_buffer("window", w, persistent=False)  # float64, cast to the input's dtype in forward

    def extra_repr(self) -> str:
        return (f"n_fft={self.n_fft}, win_length={self.win_length}, hop_length={self.hop_length}, "
                f"window={self.window_name!r}, power={self.power}, center={self.center}, "
                f"pad_mode={self.pad_mode!r}, normalized={self.normalized}, fast={self.fast}")

    def _clips(self, waveform: Tensor) -> tuple[Tensor, torch.Size]:
        """Checks the input; returns it as (B, T) clips (B = all leading dims together) and the leading shape."""
        if not waveform.is_floating_point():
            raise ValueError(f"waveform must be a floating-point tensor (float32/float64), got {waveform.dtype}; "
                             "convert int16 PCM with x.float() / 32768")
        if waveform.dim() < 1:
            raise ValueError("waveform must have a time dimension: shape (..., T)")
        T, p = waveform.shape[-1], self.n_fft // 2
        if self.center and self.pad_mode == "reflect" and T <= p:
            raise ValueError(f"pad_mode='reflect' needs more than n_fft // 2 = {p} samples, got T={T}; "
                             "use pad_mode='constant' or a smaller n_fft")
        if T + (2 * p if self.center else 0) < self.n_fft:
            raise ValueError(f"the clip has {T + (2 * p if self.center else 0)} samples"
                             f"{' after padding' if self.center else ''}, fewer than n_fft={self.n_fft}; "
                             "use center=True or a smaller n_fft")
        return waveform.reshape(-1, T), waveform.shape[:-1]

    def stft(self, waveform: Tensor) -> Tensor:
        """The complex STFT, time-major: (..., T) -> (..., n_frames, n_fft // 2 + 1). The readable path."""
        x, lead = self._clips(waveform)  # (B, T)
        if self.center:
            p = self.n_fft // 2
            x = F.pad(x.unsqueeze(1), (p, p), mode=self.pad_mode).squeeze(1)  # (B, T + 2p)
        frames = x.unfold(-1, self.n_fft, self.hop_length)  # (B, n_frames, n_fft), a strided view
        w = self.window.to(dtype=x.dtype, device=x.device)
        spec = torch.fft.rfft(frames * w, dim=-1)  # (B, n_frames, n_fft // 2 + 1) complex
        if self.normalized:
            spec = spec / w.pow(2).sum().sqrt()
        return spec.reshape(*lead, *spec.shape[-2:])

    def _power(self, spec: Tensor, out: Tensor | None = None) -> Tensor:
        """|X|^power of a complex spectrum (X itself if power is None), into ``out`` if given."""
        if self.power is None:
            return spec if out is None else out.copy_(spec)
        if self.power == 2.0:
            # re² + im²: no sqrt (a gradient at 0 too), and 3x faster than view_as_real(spec).pow(2).sum(-1)
            return torch.addcmul(spec.real.square(), spec.imag, spec.imag, out=out)
        return torch.pow(spec.abs(), self.power, out=out)

    # -- the fast path (see the module docstring): blocks of clips, frames written once

    def _fast_window(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The window in the input's dtype; ``normalized`` folded in (rfft is linear: X / c = rfft(w / c · x))."""
        w = self.window.to(dtype=dtype, device=device)
        return w / w.pow(2).sum().sqrt() if self.normalized else w

    def _frames(self, x: Tensor, w: Tensor) -> Tensor:
        """Windowed frames w[n] x_t[n] of a block of clips without a padded copy: (c, T) -> (c, n_frames, n_fft).

        Frame t reads samples t·hop - p .. t·hop - p + n_fft - 1 of x (p = n_fft // 2 when centred). The frames
        lo..hi-1 inside the clip are read from x directly; only the few at each end come from padded copies
        of the clip's ends (the same padding as :meth:`stft`: reflect needs p + 1 samples, hence the margins).
        """
        n, hop = self.n_fft, self.hop_length
        if not self.center:
            return x.unfold(-1, n, hop) * w
        p, T = n // 2, x.shape[-1]
        n_frames = (T + 2 * p - n) // hop + 1
        lo, hi = -(-p // hop), (T + p - n) // hop + 1  # first frame with t·hop >= p; one past the last inside
        if lo >= hi:  # a short clip: every frame reaches into the padding
            return F.pad(x.unsqueeze(1), (p, p), mode=self.pad_mode).squeeze(1).unfold(-1, n, hop) * w
        out = x.new_empty(x.shape[0], n_frames, n)
        torch.mul(x[:, lo * hop - p:].unfold(-1, n, hop)[:, :hi - lo], w, out=out[:, lo:hi])
        if lo > 0:  # frames 0..lo-1: the clip's start padded on the left
            head = F.pad(x[:, :max((lo - 1) * hop - p + n, p + 1)].unsqueeze(1), (p, 0), mode=self.pad_mode)
            torch.mul(head.squeeze(1).unfold(-1, n, hop)[:, :lo], w, out=out[:, :lo])
        if hi < n_frames:  # frames hi..: the clip's end padded on the right
            start = min(hi * hop - p, T - p - 1)
            tail = F.pad(x[:, start:].unsqueeze(1), (0, p), mode=self.pad_mode).squeeze(1)
            torch.mul(tail[:, hi * hop - p - start:].unfold(-1, n, hop), w, out=out[:, hi:])
        return out

    def _blockwise(self, waveform: Tensor, fn) -> Tensor:
        """The fast path's driver: ``fn(block, out)`` on blocks of clips (see _in_blocks); (..., T) -> (..., ...)."""
        x, lead = self._clips(waveform)
        n_frames = (x.shape[-1] + (self.n_fft // 2 * 2 if self.center else 0) - self.n_fft) // self.hop_length + 1
        y = _in_blocks(fn, x, n_frames * self.n_fft * x.element_size())
        return y.reshape(*lead, *y.shape[1:])

    def time_major(self, waveform: Tensor) -> Tensor:
        """:meth:`forward` without the final transpose: (..., T) -> (..., n_frames, n_freqs)."""
        if _use_fast_path(self.fast, waveform):
            w = self._fast_window(waveform.dtype, waveform.device)
            return self._blockwise(waveform, lambda x, out: self._power(torch.fft.rfft(self._frames(x, w)), out))
        return self._power(self.stft(waveform))

    def forward(self, waveform: Tensor) -> Tensor:
        return self.time_major(waveform).transpose(-1, -2)  # (..., n_freqs, n_frames)


# ----------------------------------------------------------------------------------------------
# Mel scale and filterbank
# ----------------------------------------------------------------------------------------------

@overload
def hz_to_mel(freq: float, mel_scale: str = ...) -> float: ...
@overload
def hz_to_mel(freq: Tensor, mel_scale: str = ...) -> Tensor: ...


def hz_to_mel(freq, mel_scale: str = "htk"):
    r"""Frequency in Hz to mels.

    ::

        htk:     m = 2595 log10(1 + f / 700)                            (HTK book; O'Shaughnessy 1987)
        slaney:  m = 3 f / 200                          for f < 1000 Hz  (Slaney's Auditory Toolbox)
                 m = 15 + 27 ln(f / 1000) / ln(6.4)      for f >= 1000 Hz

    Args:
        freq: a float or a tensor of frequencies (Hz).
        mel_scale: ``"htk"`` (default) or ``"slaney"``.

    Returns:
        Mels, a float for a float, a tensor of ``freq``'s shape for a tensor.

    Raises:
        ValueError: unknown ``mel_scale``.
    """
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"mel_scale must be one of {MEL_SCALES}, got {mel_scale!r}")
    if isinstance(freq, Tensor):
        if mel_scale == "htk":
            return 2595.0 * torch.log10(1.0 + freq / 700.0)
        log_part = (_SLANEY_MIN_LOG_MEL
                    + torch.log(freq.clamp(min=_SLANEY_MIN_LOG_HZ) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP)
        return torch.where(freq >= _SLANEY_MIN_LOG_HZ, log_part, freq / _SLANEY_F_SP)
    freq = float(freq)
    if mel_scale == "htk":
        return 2595.0 * math.log10(1.0 + freq / 700.0)
    if freq >= _SLANEY_MIN_LOG_HZ:
        return _SLANEY_MIN_LOG_MEL + math.log(freq / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return freq / _SLANEY_F_SP


@overload
def mel_to_hz(mel: float, mel_scale: str = ...) -> float: ...
@overload
def mel_to_hz(mel: Tensor, mel_scale: str = ...) -> Tensor: ...


def mel_to_hz(mel, mel_scale: str = "htk"):
    r"""Mels to frequency in Hz, the inverse of :func:`hz_to_mel`.

    ::

        htk:     f = 700 (10^(m / 2595) - 1)
        slaney:  f = 200 m / 3                          for m < 15
                 f = 1000 exp(ln(6.4) (m - 15) / 27)     for m >= 15

    Args:
        mel: a float or a tensor of mels.
        mel_scale: ``"htk"`` (default) or ``"slaney"``.

    Returns:
        Hz, a float for a float, a tensor of ``mel``'s shape for a tensor.

    Raises:
        ValueError: unknown ``mel_scale``.
    """
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"mel_scale must be one of {MEL_SCALES}, got {mel_scale!r}")
    if isinstance(mel, Tensor):
        if mel_scale == "htk":
            return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)
        log_part = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mel - _SLANEY_MIN_LOG_MEL))
        return torch.where(mel >= _SLANEY_MIN_LOG_MEL, log_part, _SLANEY_F_SP * mel)
    mel = float(mel)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if mel >= _SLANEY_MIN_LOG_MEL:
        return _SLANEY_MIN_LOG_HZ * math.exp(_SLANEY_LOGSTEP * (mel - _SLANEY_MIN_LOG_MEL))
    return _SLANEY_F_SP * mel


def _check_mel_args(sample_rate: float, n_mels: int, f_min: float, f_max: float | None, mel_scale: str,
                    norm: str | None) -> float:
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be > 0 (Hz), got {sample_rate}")
    if int(n_mels) != n_mels or n_mels < 1:
        raise ValueError(f"n_mels must be an integer >= 1, got {n_mels}")
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2} (Nyquist), "
                         f"got f_min={f_min}, f_max={f_max}")
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"mel_scale must be one of {MEL_SCALES}, got {mel_scale!r}")
    if norm not in MEL_NORMS:
        raise ValueError(f"norm must be one of {MEL_NORMS}, got {norm!r}")
    return float(f_max)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
                   mel_scale: str = "htk", norm: str | None = None, *, dtype: torch.dtype = torch.float64,
                   device: torch.device | str | None = None) -> Tensor:
    r"""Triangular mel filters F (n_mels, n_fft // 2 + 1): mel energies are ``F @ power_spectrum``.

    ``n_mels + 2`` edge frequencies f_0 < f_1 < ... are equally spaced in mel between ``f_min`` and
    ``f_max``; filter m rises linearly from 0 at f_m to 1 at f_{m+1} and falls back to 0 at f_{m+2}.
    At FFT bin k (frequency f = k · sample_rate / n_fft)::

        F[m, k] = max(0, min((f - f_m) / (f_{m+1} - f_m), (f_{m+2} - f) / (f_{m+2} - f_{m+1})))

    and with ``norm="slaney"`` each row is scaled by 2 / (f_{m+2} - f_m), so that every triangle has
    unit area in Hz (constant energy per channel, Slaney's Auditory Toolbox). Same as
    ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=mel_scale == "htk", norm=norm).``

    Args:
        sample_rate: Hz.
        n_fft: DFT size (the filters cover its ``n_fft // 2 + 1`` bins).
        n_mels: number of filters.
        f_min, f_max: band edges in Hz, ``0 <= f_min < f_max <= sample_rate / 2``.
            Defaults 0 and None (= sample_rate / 2).
        mel_scale: ``"htk"`` (default) or ``"slaney"``: see :func:`hz_to_mel`.
        norm: None (peak 1, default) or ``"slaney"`` (unit area).
        dtype, device: of the result. Default float64 on the CPU.

    Returns:
        (n_mels, n_fft // 2 + 1) tensor, non-negative.

    Raises:
        ValueError: bad arguments. Warns (UserWarning) when a filter falls between two FFT bins and is
            all zero (too many mels for this ``n_fft``).

    Example::

        fb = mel_filterbank(16000, 400, 40)   # (40, 201)
    """
    f_max = _check_mel_args(sample_rate, n_mels, f_min, f_max, mel_scale, norm)
    if int(n_fft) != n_fft or n_fft < 1:
        raise ValueError(f"n_fft must be an integer >= 1, got {n_fft}")
    fft_freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)  # (K,) Hz of bin k
    mels = torch.linspace(hz_to_mel(float(f_min), mel_scale), hz_to_mel(f_max, mel_scale), n_mels + 2,
                          dtype=torch.float64)
    f_pts = mel_to_hz(mels, mel_scale)  # (n_mels + 2,) edge frequencies in Hz
    f_diff = f_pts[1:] - f_pts[:-1]  # (n_mels + 1,)
    ramps = f_pts[:, None] - fft_freqs[None, :]  # (n_mels + 2, K): f_i - f
    rising = -ramps[:-2] / f_diff[:-1, None]  # (n_mels, K): (f - f_m) / (f_{m+1} - f_m)
    falling = ramps[2:] / f_diff[1:, None]  # (n_mels, K): (f_{m+2} - f) / (f_{m+2} - f_{m+1})
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (f_pts[2:] - f_pts[:-2]))[:, None]
    if (fb.amax(dim=1) == 0).any():
        empty = (fb.amax(dim=1) == 0).nonzero().flatten().tolist()
        warnings.warn(f"mel filters {empty} are all zero: n_mels={n_mels} is too many for n_fft={n_fft} "
                      f"between {f_min} and {f_max} Hz; use fewer mels or a larger n_fft", UserWarning, stacklevel=2)
    return fb.to(dtype=dtype, device=device)


def _mel_bands(fb: Tensor, group: int = _BAND_MELS) -> list[tuple[int, int, int, int]]:
    """(m0, m1, k0, k1) per group of ``group`` neighbouring filters: rows m0..m1-1 of ``fb`` are zero outside
    FFT bins k0..k1-1 (k0 = k1 = 0 for a group of empty filters). A triangle spans a few bins, so with groups
    of 16 the bands cover 26% of a 64-mel filterbank at n_fft 400: the fast path's mel matmul skips the rest
    (smaller groups skip more zeros, with more and smaller matmuls: 16 was the fastest of 8, 16 and 64 here)."""
    bands = []
    for m0 in range(0, fb.shape[0], group):
        m1 = min(m0 + group, fb.shape[0])
        k = (fb[m0:m1] != 0).any(dim=0).nonzero().flatten().tolist()
        bands.append((m0, m1, k[0], k[-1] + 1) if k else (m0, m1, 0, 0))
    return bands


def _banded_matmul(s: Tensor, fbt: Tensor, bands: list[tuple[int, int, int, int]], rows_per_bin: int,
                   out: Tensor | None = None) -> Tensor:
    """``s @ fbt`` for a filterbank that is zero outside ``bands``: (..., K') @ (K', n_mels) -> (..., n_mels),
    with K' = rows_per_bin · K (2 when each FFT bin has a re² row and an im² row); into ``out`` if given."""
    out = s.new_empty(*s.shape[:-1], fbt.shape[1]) if out is None else out
    for m0, m1, k0, k1 in bands:
        k0, k1 = k0 * rows_per_bin, k1 * rows_per_bin
        if k1 > k0:
            torch.matmul(s[..., k0:k1], fbt[k0:k1, m0:m1], out=out[..., m0:m1])
        else:
            out[..., m0:m1] = 0.0
    return out


class MelSpectrogram(nn.Module):
    r"""Mel spectrogram: a :class:`Spectrogram` followed by the mel filterbank, M = F S.

    Args:
        sample_rate: Hz. Default 16000.
        n_fft, win_length, window, center, pad_mode, normalized, power: as :class:`Spectrogram`
            (defaults 400, None = n_fft, "hann", True, "constant", False, 2.0).
        hop_length: default 160 (10 ms at 16 kHz).
        n_mels: default 64.
        f_min, f_max, mel_scale, norm: as :func:`mel_filterbank` (defaults 0, None = Nyquist, "htk", None).
        fast: the blocked CPU path (default True) or the readable one (see the module docstring).

    Shapes:
        waveform: (..., T) -> (..., n_mels, n_frames).

    Raises:
        ValueError: bad arguments or input (see :class:`Spectrogram`, :func:`mel_filterbank`).

    Example::

        mel = MelSpectrogram(n_mels=40)(torch.randn(8, 16000))   # (8, 40, 101)
    """

    def __init__(self, sample_rate: float = 16000, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int | None = 160, n_mels: int = 64, f_min: float = 0.0, f_max: float | None = None,
                 window: str | Tensor = "hann", power: float = 2.0, center: bool = True, pad_mode: str = "constant",
                 normalized: bool = False, mel_scale: str = "htk", norm: str | None = None, fast: bool = True):
        super().__init__()
        if power is None:
            raise ValueError("MelSpectrogram needs a real spectrogram: power must be > 0, not None")
        self.spectrogram = Spectrogram(n_fft=n_fft, win_length=win_length, hop_length=hop_length, window=window,
                                       power=power, center=center, pad_mode=pad_mode, normalized=normalized,
                                       fast=fast)
        self.sample_rate, self.n_mels, self.f_min, self.f_max = sample_rate, n_mels, f_min, f_max
        self.mel_scale, self.norm = mel_scale, norm
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm)  # (n_mels, n_freqs)
        self.register_buffer("fb", fb, persistent=False)  # float64, cast to the input's dtype in forward
        self.bands = _mel_bands(fb)  # the fast path's: which FFT bins each group of filters covers

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, f_min={self.f_min}, f_max={self.f_max}, "
                f"mel_scale={self.mel_scale!r}, norm={self.norm!r}")

    def _fast_constants(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """The window and Fᵀ (K, n_mels) in the input's dtype; for power 2, each row of Fᵀ twice (re², im²)."""
        fbt = self.fb.T
        if self.spectrogram.power == 2.0:
            fbt = fbt.repeat_interleave(2, dim=0)  # (2K, n_mels): row 2k for re[k]², row 2k + 1 for im[k]²
        return self.spectrogram._fast_window(dtype, device), fbt.to(dtype=dtype, device=device).contiguous()

    def _fast_block(self, x: Tensor, constants: tuple[Tensor, Tensor], out: Tensor | None = None) -> Tensor:
        """The fast path on a block of clips: (c, T) -> (c, n_frames, n_mels), into ``out`` if given."""
        w, fbt = constants
        spec = torch.fft.rfft(self.spectrogram._frames(x, w))  # (c, n_frames, K) complex
        if self.spectrogram.power == 2.0:  # |X|² = re² + im²: the sum is done by the matmul
            return _banded_matmul(torch.view_as_real(spec).square_().flatten(-2), fbt, self.bands, 2, out)
        return _banded_matmul(self.spectrogram._power(spec), fbt, self.bands, 1, out)

    def time_major(self, waveform: Tensor) -> Tensor:
        """:meth:`forward` without the final transpose: (..., T) -> (..., n_frames, n_mels)."""
        if _use_fast_path(self.spectrogram.fast, waveform):
            constants = self._fast_constants(waveform.dtype, waveform.device)
            return self.spectrogram._blockwise(waveform, lambda x, out: self._fast_block(x, constants, out))
        spec = self.spectrogram.time_major(waveform)  # (..., n_frames, n_freqs)
        return spec @ self.fb.to(dtype=spec.dtype, device=spec.device).T  # (..., n_frames, n_mels)

    def forward(self, waveform: Tensor) -> Tensor:
        return self.time_major(waveform).transpose(-1, -2)  # (..., n_mels, n_frames)


# ----------------------------------------------------------------------------------------------
# Decibels
# ----------------------------------------------------------------------------------------------

def _check_db_args(ref: float, amin: float, top_db: float | None) -> None:
    if not amin > 0:
        raise ValueError(f"amin must be > 0 (the floor inside the log), got {amin}")
    if not ref > 0:
        raise ValueError(f"ref must be > 0 (the value mapped to 0 dB), got {ref}")
    if top_db is not None and not top_db >= 0:
        raise ValueError(f"top_db must be >= 0 or None, got {top_db}")


def _floor_top(y: Tensor, drop: float) -> Tensor:
    """max(y, max(y) - drop), the maximum taken per spectrogram (last two dims; all of a 1-D input)."""
    dims = (-2, -1) if y.dim() >= 2 else (-1,)
    return torch.maximum(y, y.amax(dim=dims, keepdim=True) - drop)


def _to_db_(x: Tensor, ref: float, amin: float, top_db: float | None) -> Tensor:
    """:func:`to_db` (power) in place on a block of spectrograms (c, n_frames, n_bins): the fast path's."""
    y = x.clamp_(min=amin).log10_().mul_(10.0)
    offset = 10.0 * math.log10(max(ref, amin))
    if offset:
        y.sub_(offset)
    if top_db is not None:
        torch.maximum(y, y.amax(dim=(-2, -1), keepdim=True).sub_(top_db), out=y)
    return y


def to_db(x: Tensor, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = None,
          stype: str = "power") -> Tensor:
    r"""Decibels: ``10 log10(max(x, amin) / max(ref, amin))`` for power, ``20 log10(...)`` for magnitude.

    With ``top_db``, values are floored at ``max - top_db`` (a dynamic range of ``top_db`` dB), the max
    taken over each spectrogram: the last two dimensions ``(n_freqs_or_mels, n_frames)`` (a 1-D input:
    all of it). For one spectrogram this is ``librosa.power_to_db(x, ref=ref, amin=amin, top_db=top_db)``
    (``librosa.amplitude_to_db`` for ``stype="magnitude"``, whose default ``amin`` is 1e-5); for a
    batch, librosa takes the max over the whole array, here each clip keeps its own.

    Args:
        x: power (or magnitude) values, >= 0.
        ref: the value that maps to 0 dB, > 0. Default 1.0.
        amin: floor inside the log, > 0, in the units of ``x``. Default 1e-10.
        top_db: dynamic range in dB (>= 0), or None (no floor; default). librosa's default is 80.
        stype: ``"power"`` (10 log10, default) or ``"magnitude"`` (20 log10).

    Shapes:
        x: (..., n_freqs_or_mels, n_frames) -> same.

    Raises:
        ValueError: bad ``ref``, ``amin``, ``top_db`` or ``stype``.
    """
    _check_db_args(ref, amin, top_db)
    if stype not in ("power", "magnitude"):
        raise ValueError(f"stype must be 'power' or 'magnitude', got {stype!r}")
    mult = 10.0 if stype == "power" else 20.0
    y = mult * torch.log10(torch.clamp(x, min=amin)) - mult * math.log10(max(ref, amin))
    return y if top_db is None else _floor_top(y, top_db)


class AmplitudeToDB(nn.Module):
    """:func:`to_db` as a module. Args, shapes and errors as :func:`to_db`."""

    def __init__(self, stype: str = "power", ref: float = 1.0, amin: float = 1e-10, top_db: float | None = None):
        super().__init__()
        _check_db_args(ref, amin, top_db)
        if stype not in ("power", "magnitude"):
            raise ValueError(f"stype must be 'power' or 'magnitude', got {stype!r}")
        self.stype, self.ref, self.amin, self.top_db = stype, ref, amin, top_db

    def extra_repr(self) -> str:
        return f"stype={self.stype!r}, ref={self.ref}, amin={self.amin}, top_db={self.top_db}"

    def forward(self, x: Tensor) -> Tensor:
        return to_db(x, self.ref, self.amin, self.top_db, self.stype)


class LogMelSpectrogram(nn.Module):
    r"""Log-mel spectrogram in dB: ``to_db(MelSpectrogram(x), ref, amin, top_db)``.

    The usual input of an audio CNN (the seed's Speech Commands classifier). Equals
    ``librosa.power_to_db(librosa.feature.melspectrogram(...), ref=ref, amin=amin, top_db=top_db)``
    for one clip with matching settings.

    Args:
        ref, amin, top_db: as :func:`to_db` (defaults 1.0, 1e-10, None).
        everything else: as :class:`MelSpectrogram` (keywords; n_mels default 64; ``fast``: the blocked path).

    Shapes:
        waveform: (..., T) -> (..., n_mels, n_frames).

    Raises:
        ValueError: bad arguments or input.

    Example::

        logmel = LogMelSpectrogram(top_db=80.0)(torch.randn(8, 16000))   # (8, 64, 101)
    """

    def __init__(self, sample_rate: float = 16000, *, ref: float = 1.0, amin: float = 1e-10,
                 top_db: float | None = None, **mel_kwargs):
        super().__init__()
        _check_db_args(ref, amin, top_db)
        self.mel = MelSpectrogram(sample_rate, **mel_kwargs)
        self.ref, self.amin, self.top_db = ref, amin, top_db

    def extra_repr(self) -> str:
        return f"ref={self.ref}, amin={self.amin}, top_db={self.top_db}"

    def forward(self, waveform: Tensor) -> Tensor:
        if _use_fast_path(self.mel.spectrogram.fast, waveform):
            constants = self.mel._fast_constants(waveform.dtype, waveform.device)
            y = self.mel.spectrogram._blockwise(waveform, lambda x, out: _to_db_(
                self.mel._fast_block(x, constants, out), self.ref, self.amin, self.top_db))
            return y.transpose(-1, -2)  # (..., n_mels, n_frames)
        return to_db(self.mel(waveform), self.ref, self.amin, self.top_db)


# ----------------------------------------------------------------------------------------------
# DCT and MFCC
# ----------------------------------------------------------------------------------------------

def dct_matrix(n_out: int, n_in: int, norm: str | None = "ortho", *, dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> Tensor:
    r"""The DCT-II as a matrix D (n_out, n_in): ``D @ x`` is the DCT of x along its first axis, truncated.

    ::

        y[k] = s_k Σ_{n=0}^{N-1} x[n] cos(π k (2n + 1) / (2N)),   k = 0..n_out-1,  N = n_in

    with s_k = 2 (``norm=None``, scipy's unnormalized DCT-II) or, for ``norm="ortho"``,
    s_0 = sqrt(1/N) and s_k = sqrt(2/N) otherwise: then D has orthonormal rows (D Dᵀ = I) and keeps
    the energy of the log-mel vector. Same as ``scipy.fft.dct(x, type=2, norm=norm, axis=0)[:n_out]``.

    Args:
        n_out: coefficients kept (``n_mfcc``), ``1 <= n_out <= n_in``.
        n_in: input length (``n_mels``).
        norm: ``"ortho"`` (default) or None.
        dtype, device: of the result. Default float64 on the CPU.

    Returns:
        (n_out, n_in) tensor.

    Raises:
        ValueError: bad sizes or ``norm``.
    """
    if int(n_in) != n_in or n_in < 1:
        raise ValueError(f"n_in must be an integer >= 1, got {n_in}")
    if int(n_out) != n_out or not 1 <= n_out <= n_in:
        raise ValueError(f"n_out (n_mfcc) must be an integer in [1, n_in={n_in}], got {n_out}")
    if norm not in ("ortho", None):
        raise ValueError(f"norm must be 'ortho' or None, got {norm!r}")
    k = torch.arange(n_out, dtype=torch.float64)[:, None]  # (n_out, 1)
    n = torch.arange(n_in, dtype=torch.float64)[None, :]  # (1, n_in)
    d = torch.cos(math.pi * k * (2 * n + 1) / (2 * n_in))  # (n_out, n_in)
    if norm == "ortho":
        d = d * math.sqrt(2.0 / n_in)
        d[0] = d[0] / math.sqrt(2.0)
    else:
        d = 2.0 * d
    return d.to(dtype=dtype, device=device)


class MFCC(nn.Module):
    r"""Mel-frequency cepstral coefficients (Davis & Mermelstein 1980): a DCT of the log mel spectrogram.

    ::

        L[m, t] = to_db(M[m, t], top_db)                    (log="db", librosa's choice)
                  ln(max(M[m, t], amin)), floored likewise   (log="natural", HTK/Kaldi's choice)
        c[j, t] = Σ_m D[j, m] L[m, t],  j = 0..n_mfcc-1     (D: :func:`dct_matrix`)
        c[j, t] ← (1 + (lifter / 2) sin(π (j + 1) / lifter)) c[j, t]     if lifter > 0

    With ``log="db"`` this is ``librosa.feature.mfcc(y=..., n_mfcc, dct_type=2, norm=dct_norm, lifter,
    mel_norm=norm, htk=mel_scale == "htk", ...)`` for one clip with matching STFT/mel settings
    (librosa also uses ``power_to_db`` with top_db=80). ``log="natural"`` is the same times ln(10)/10
    (top_db still counts in dB). The DCT decorrelates the overlapping filter outputs and the first
    coefficients keep the smooth spectral envelope (the vocal tract), dropping the pitch harmonics.

    Args:
        sample_rate: Hz. Default 16000.
        n_mfcc: coefficients kept, ``<= n_mels``. Default 13.
        n_mels: default 40. Other STFT/mel keywords as :class:`MelSpectrogram` (hop default 160).
        log: ``"db"`` (default) or ``"natural"``.
        top_db: dynamic-range floor in dB per clip, or None. Default 80.0 (librosa's).
        amin: floor inside the log. Default 1e-10.
        dct_norm: ``"ortho"`` (default) or None: see :func:`dct_matrix`.
        lifter: cepstral liftering L >= 0 (0 = none, default; HTK uses 22). librosa's indexing (j + 1).
        fast: the blocked CPU path (default True) or the readable one (see the module docstring).

    Shapes:
        waveform: (..., T) -> (..., n_mfcc, n_frames).

    Raises:
        ValueError: bad arguments or input.

    Example::

        mfcc = MFCC()(torch.randn(8, 16000))   # (8, 13, 101)
    """

    def __init__(self, sample_rate: float = 16000, n_mfcc: int = 13, n_fft: int = 400, win_length: int | None = None,
                 hop_length: int | None = 160, n_mels: int = 40, f_min: float = 0.0, f_max: float | None = None,
                 window: str | Tensor = "hann", power: float = 2.0, center: bool = True, pad_mode: str = "constant",
                 mel_scale: str = "htk", norm: str | None = None, log: str = "db", top_db: float | None = 80.0,
                 amin: float = 1e-10, dct_norm: str | None = "ortho", lifter: float = 0.0, fast: bool = True):
        super().__init__()
        if log not in ("db", "natural"):
            raise ValueError(f"log must be 'db' or 'natural', got {log!r}")
        if not lifter >= 0:
            raise ValueError(f"lifter must be >= 0 (0 = no liftering), got {lifter}")
        _check_db_args(1.0, amin, top_db)
        self.mel = MelSpectrogram(sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
                                  n_mels=n_mels, f_min=f_min, f_max=f_max, window=window, power=power, center=center,
                                  pad_mode=pad_mode, mel_scale=mel_scale, norm=norm, fast=fast)  # validates them
        if int(n_mfcc) != n_mfcc or not 1 <= n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be an integer in [1, n_mels={n_mels}], got {n_mfcc}")
        self.n_mfcc, self.log, self.top_db, self.amin = n_mfcc, log, top_db, amin
        self.dct_norm, self.lifter = dct_norm, lifter
        dct = dct_matrix(n_mfcc, n_mels, dct_norm)  # (n_mfcc, n_mels)
        if lifter > 0:
            j = torch.arange(1, n_mfcc + 1, dtype=torch.float64)
            dct = dct * (1 + (lifter / 2) * torch.sin(math.pi * j / lifter))[:, None]  # fold the lifter into D
        self.register_buffer("dct", dct, persistent=False)  # float64, cast to the input's dtype in forward

    def extra_repr(self) -> str:
        return (f"n_mfcc={self.n_mfcc}, log={self.log!r}, top_db={self.top_db}, amin={self.amin}, "
                f"dct_norm={self.dct_norm!r}, lifter={self.lifter}")

    def _fast_block(self, x: Tensor, constants: tuple[tuple[Tensor, Tensor], Tensor],
                    out: Tensor | None = None) -> Tensor:
        """The fast path on a block of clips: (c, T) -> (c, n_frames, n_mfcc), into ``out`` if given."""
        mel_constants, dct_t = constants
        mel = self.mel._fast_block(x, mel_constants)  # (c, n_frames, n_mels)
        if self.log == "db":
            logmel = _to_db_(mel, 1.0, self.amin, self.top_db)
        else:
            logmel = mel.clamp_(min=self.amin).log_()
            if self.top_db is not None:
                drop = self.top_db * math.log(10.0) / 10.0  # dB -> nepers of power
                torch.maximum(logmel, logmel.amax(dim=(-2, -1), keepdim=True).sub_(drop), out=logmel)
        return torch.matmul(logmel, dct_t, out=out)

    def _fast_constants(self, dtype: torch.dtype, device: torch.device) -> tuple[tuple[Tensor, Tensor], Tensor]:
        """The mel path's constants and Dᵀ (n_mels, n_mfcc), in the input's dtype."""
        return self.mel._fast_constants(dtype, device), self.dct.T.to(dtype=dtype, device=device)

    def time_major(self, waveform: Tensor) -> Tensor:
        """:meth:`forward` without the final transpose: (..., T) -> (..., n_frames, n_mfcc)."""
        if _use_fast_path(self.mel.spectrogram.fast, waveform):
            constants = self._fast_constants(waveform.dtype, waveform.device)
            return self.mel.spectrogram._blockwise(waveform, lambda x, out: self._fast_block(x, constants, out))
        mel = self.mel.time_major(waveform)  # (..., n_frames, n_mels)
        if self.log == "db":
            logmel = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
            drop = self.top_db
        else:
            logmel = torch.log(torch.clamp(mel, min=self.amin))
            drop = None if self.top_db is None else self.top_db * math.log(10.0) / 10.0  # dB -> nepers of power
        if drop is not None:
            logmel = _floor_top(logmel, drop)  # per clip: max over (frames, mels)
        return logmel @ self.dct.to(dtype=logmel.dtype, device=logmel.device).T  # (..., n_frames, n_mfcc)

    def forward(self, waveform: Tensor) -> Tensor:
        return self.time_major(waveform).transpose(-1, -2)  # (..., n_mfcc, n_frames)


# ----------------------------------------------------------------------------------------------
# Deltas
# ----------------------------------------------------------------------------------------------

def delta_coefficients(width: int, order: int = 1, *, dtype: torch.dtype = torch.float64,
                       device: torch.device | str | None = None) -> Tensor:
    r"""The (width,) filter g with ``delta[t] = Σ_{n=-K}^{K} g[n + K] x[t + n]``, K = (width - 1) / 2.

    ``order=1``: the slope of the least-squares line through the window (HTK's regression formula)::

        g[n] = n / Σ_{n=-K}^{K} n²

    ``order=2``: the second derivative of the least-squares parabola (librosa's ``order=2``,
    a Savitzky-Golay filter), with m₂ = mean of n² over the window::

        g[n] = 2 (n² - m₂) / Σ (n² - m₂)²

    Raises:
        ValueError: ``width`` not an odd integer >= 3; ``order`` not 1 or 2.
    """
    if int(width) != width or width < 3 or width % 2 != 1:
        raise ValueError(f"width must be an odd integer >= 3 (width = 2K + 1, K frames each side), got {width}")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    n = torch.arange(width, dtype=torch.float64) - (width - 1) // 2  # -K..K
    if order == 1:
        g = n / n.pow(2).sum()
    else:
        u = n.pow(2) - n.pow(2).mean()
        g = 2 * u / u.pow(2).sum()
    return g.to(dtype=dtype, device=device)


def _pad_edges(x: Tensor, k: int) -> Tensor:
    """Repeat the first and last entries of the last dim k times: (..., T) -> (..., T + 2k)."""
    return torch.cat([x[..., :1].expand(*x.shape[:-1], k), x, x[..., -1:].expand(*x.shape[:-1], k)], dim=-1)


def compute_deltas(x: Tensor, width: int = 9, order: int = 1, mode: str = "interp") -> Tensor:
    r"""Time derivatives of features along the last dimension (frames), with edges as librosa's.

    In the interior (order 1, K = (width - 1) / 2; HTK book, "delta coefficients")::

        d[t] = Σ_{n=1}^{K} n (x[t+n] - x[t-n]) / (2 Σ_{n=1}^{K} n²)

    Edges (the first and last K frames), as ``librosa.feature.delta(x, width=width, order=order, mode=mode)``:

    * ``"interp"`` (librosa's default): a polynomial of degree ``order`` is fitted to the first (last)
      ``width`` frames and its derivative taken at the edge frames. That derivative is a constant,
      the value at the window's centre, so the edge frames repeat the first (last) full-window delta.
      Needs at least ``width`` frames.
    * ``"nearest"``: the first (last) frame is repeated K times before filtering (HTK, Kaldi and
      torchaudio's ``compute_deltas``).

    Args:
        x: features, frames last.
        width: 2K + 1, odd >= 3. Default 9 (librosa's); HTK/Kaldi use 5 (K = 2).
        order: 1 (default) or 2 (second derivative of a local parabola, librosa's ``order=2``; not
            the delta of the delta: for that, call this twice, see :func:`add_deltas`).
        mode: ``"interp"`` (default) or ``"nearest"``.

    Shapes:
        x: (..., T) -> (..., T).

    Raises:
        ValueError: bad ``width``, ``order`` or ``mode``; a 0-D input; ``mode="interp"`` with fewer than
            ``width`` frames.

    Example::

        d = compute_deltas(torch.randn(8, 13, 101), width=5)   # (8, 13, 101)
    """
    g = delta_coefficients(width, order)  # validates width and order
    if mode not in DELTA_MODES:
        raise ValueError(f"mode must be one of {DELTA_MODES}, got {mode!r}")
    if x.dim() < 1:
        raise ValueError("x must have a frame dimension: shape (..., T)")
    k, T = (width - 1) // 2, x.shape[-1]
    if mode == "interp" and T < width:
        raise ValueError(f"mode='interp' needs at least width={width} frames, got {T}; "
                         "use a smaller width or mode='nearest'")
    if mode == "nearest":
        x = _pad_edges(x, k)  # (..., T + 2K)
    # Σ_j g[j] x[t + j - K] over the frames with a full window, as width shifted slices (one pass each:
    # faster than unfold @ g, which batches a tiny matmul per row, and the same in any memory layout)
    n_out, taps = x.shape[-1] - 2 * k, g.tolist()
    d = x[..., :n_out] * taps[0]
    for j in range(1, width):
        if taps[j] != 0.0:  # order 1: the centre tap is 0
            d = d.add_(x[..., j:j + n_out], alpha=taps[j])
    return d if mode == "nearest" else _pad_edges(d, k)  # interp: the edge frames take the nearest full value


class Deltas(nn.Module):
    """:func:`compute_deltas` as a module. Args, shapes and errors as :func:`compute_deltas`."""

    def __init__(self, width: int = 9, order: int = 1, mode: str = "interp"):
        super().__init__()
        delta_coefficients(width, order)  # validates width and order
        if mode not in DELTA_MODES:
            raise ValueError(f"mode must be one of {DELTA_MODES}, got {mode!r}")
        self.width, self.order, self.mode = width, order, mode

    def extra_repr(self) -> str:
        return f"width={self.width}, order={self.order}, mode={self.mode!r}"

    def forward(self, x: Tensor) -> Tensor:
        return compute_deltas(x, self.width, self.order, self.mode)


def add_deltas(features: Tensor, width: int = 5, mode: str = "interp") -> Tensor:
    r"""Append deltas and delta-deltas (accelerations) to features: (..., C, T) -> (..., 3C, T).

    ``[c; Δc; Δ(Δc)]`` stacked along the feature dimension, with Δ = :func:`compute_deltas` (order 1).
    The delta-delta is the regression formula applied to the deltas, as in the HTK book and Kaldi's
    ``add-deltas`` (not librosa's ``order=2`` filter). With 13 MFCCs this is HW2's 39-dim frame vector.

    Args:
        features: (..., C, T), frames last.
        width: regression window 2K + 1. Default 5 (K = 2, HTK's DELTAWINDOW and Kaldi's default).
        mode: edge handling, ``"interp"`` (default) or ``"nearest"``: see :func:`compute_deltas`.

    Raises:
        ValueError: as :func:`compute_deltas`; an input with fewer than 2 dimensions.
    """
    if features.dim() < 2:
        raise ValueError(f"features must be (..., C, T), got shape {tuple(features.shape)}")
    d1 = compute_deltas(features, width, 1, mode)
    d2 = compute_deltas(d1, width, 1, mode)
    return torch.cat([features, d1, d2], dim=-2)


class MFCCWithDeltas(nn.Module):
    r"""HW2's frame features: n_mfcc MFCCs + deltas + delta-deltas (39-dim for 13), 25 ms / 10 ms frames.

    ``add_deltas(MFCC(x), delta_width, delta_mode)`` with ``win_length = n_fft = round(win_ms · sr / 1000)``
    (400 at 16 kHz) and ``hop_length = round(hop_ms · sr / 1000)`` (160). Defaults follow HTK-style
    speech front ends: Hamming window, HTK mel scale without area normalization, 40 mels, regression
    window 5. The TAs' HW2 features came from a Kaldi-style front end (pre-emphasis, dithering,
    povey window, natural log, lifter 22): close in spirit, not bit-identical.

    Args:
        sample_rate: Hz. Default 16000.
        n_mfcc: default 13 (-> 3 · 13 = 39 features).
        win_ms, hop_ms: frame length and hop in milliseconds. Defaults 25.0 and 10.0.
        n_mels, f_min, f_max, window, center, pad_mode, mel_scale, norm, log, top_db, amin, dct_norm,
            lifter: as :class:`MFCC` (defaults 40, 0, None, "hamming", True, "constant", "htk", None,
            "db", 80.0, 1e-10, "ortho", 0).
        delta_width, delta_mode: as :func:`add_deltas` (defaults 5, "interp").
        fast: the blocked CPU path (default True) or the readable one (see the module docstring).

    Shapes:
        waveform: (..., T) -> (..., 3 n_mfcc, n_frames); 1 s at 16 kHz -> (39, 101).

    Raises:
        ValueError: bad arguments or input (a clip shorter than ``delta_width`` frames with "interp").

    Example::

        feats = MFCCWithDeltas()(torch.randn(8, 16000))   # (8, 39, 101)
    """

    def __init__(self, sample_rate: float = 16000, n_mfcc: int = 13, win_ms: float = 25.0, hop_ms: float = 10.0,
                 n_mels: int = 40, f_min: float = 0.0, f_max: float | None = None, window: str | Tensor = "hamming",
                 center: bool = True, pad_mode: str = "constant", mel_scale: str = "htk", norm: str | None = None,
                 log: str = "db", top_db: float | None = 80.0, amin: float = 1e-10, dct_norm: str | None = "ortho",
                 lifter: float = 0.0, delta_width: int = 5, delta_mode: str = "interp", fast: bool = True):
        super().__init__()
        if not sample_rate > 0:
            raise ValueError(f"sample_rate must be > 0 (Hz), got {sample_rate}")
        if not (win_ms > 0 and hop_ms > 0):
            raise ValueError(f"win_ms and hop_ms must be > 0, got {win_ms} and {hop_ms}")
        delta_coefficients(delta_width)  # validates delta_width
        if delta_mode not in DELTA_MODES:
            raise ValueError(f"delta_mode must be one of {DELTA_MODES}, got {delta_mode!r}")
        win_length = max(1, round(win_ms * sample_rate / 1000))
        hop_length = max(1, round(hop_ms * sample_rate / 1000))
        self.mfcc = MFCC(sample_rate, n_mfcc=n_mfcc, n_fft=win_length, hop_length=hop_length, n_mels=n_mels,
                         f_min=f_min, f_max=f_max, window=window, center=center, pad_mode=pad_mode,
                         mel_scale=mel_scale, norm=norm, log=log, top_db=top_db, amin=amin, dct_norm=dct_norm,
                         lifter=lifter, fast=fast)
        self.delta_width, self.delta_mode = delta_width, delta_mode

    def extra_repr(self) -> str:
        return f"delta_width={self.delta_width}, delta_mode={self.delta_mode!r}"

    def _fast_block(self, x: Tensor, constants: tuple[tuple[Tensor, Tensor], Tensor],
                    out: Tensor | None = None) -> Tensor:
        """The fast path on a block of clips: (c, T) -> (c, 3 n_mfcc, n_frames), into ``out`` if given."""
        c = self.mfcc._fast_block(x, constants).transpose(-1, -2)  # (c, n_mfcc, n_frames)
        d1 = compute_deltas(c, self.delta_width, 1, self.delta_mode)
        d2 = compute_deltas(d1, self.delta_width, 1, self.delta_mode)
        return torch.cat([c, d1, d2], dim=-2, out=out)  # add_deltas

    def forward(self, waveform: Tensor) -> Tensor:
        if _use_fast_path(self.mfcc.mel.spectrogram.fast, waveform):
            constants = self.mfcc._fast_constants(waveform.dtype, waveform.device)
            return self.mfcc.mel.spectrogram._blockwise(waveform, lambda x, out: self._fast_block(x, constants, out))
        return add_deltas(self.mfcc(waveform), self.delta_width, self.delta_mode)  # (..., 3 n_mfcc, n_frames)


def mfcc_with_deltas(waveform: Tensor, sample_rate: float = 16000) -> Tensor:
    """HW2's 39-dim frame features with :class:`MFCCWithDeltas`' defaults: (..., T) -> (..., 39, n_frames).

    25 ms frames (400 samples at 16 kHz) every 10 ms (160), 13 MFCCs + deltas + delta-deltas. Builds
    the module each call (its constants are small); keep an :class:`MFCCWithDeltas` for repeated use.
    """
    return MFCCWithDeltas(sample_rate).to(waveform.device)(waveform)
