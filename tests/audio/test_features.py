"""Audio features from the equations against librosa (float64): STFT, mel filters, mel spectrogram, dB, MFCC, deltas.

Tolerances: float64 comparisons use rtol=1e-9 with an absolute floor scaled to the data (1e-9 of the
largest value), since the only differences are summation order (rfft vs pocketfft, matmul vs einsum).
float32 runs are compared with the float64 result at rtol=1e-4.

Both paths (``fast=True``, the blocked CPU path and the default, and ``fast=False``, the readable one) are
compared with librosa; the fast path is also compared with the readable one on the framing's edge cases
(short clips, reflect padding, hops longer than half a frame) and with several blocks per batch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import torch

import deepnotes.audio.features as features_module

librosa = pytest.importorskip("librosa")

from deepnotes.audio import (  # noqa: E402
    MFCC,
    AmplitudeToDB,
    Deltas,
    LogMelSpectrogram,
    MelSpectrogram,
    MFCCWithDeltas,
    Spectrogram,
    add_deltas,
    compute_deltas,
    dct_matrix,
    delta_coefficients,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    mfcc_with_deltas,
    to_db,
    window_function,
)

SR = 16000


def _wave(*shape: int, seed: int = 0) -> torch.Tensor:
    """A float64 test signal: two tones plus noise, so the spectrum has peaks and a floor."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(shape[-1], dtype=torch.float64) / SR
    tones = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 3100 * t + 1.0)
    return tones + 0.1 * torch.randn(*shape, generator=g, dtype=torch.float64)


def _close(ours: torch.Tensor, ref: np.ndarray, rtol: float = 1e-9) -> None:
    ref_t = torch.from_numpy(np.asarray(ref))
    assert ours.shape == ref_t.shape, (ours.shape, ref_t.shape)
    atol = rtol * float(ref_t.abs().max()) + 1e-12
    torch.testing.assert_close(ours, ref_t.to(ours.dtype), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------- windows, STFT

@pytest.mark.parametrize("name", ["hann", "hamming", "boxcar"])
@pytest.mark.parametrize("n", [1, 7, 400])
def test_window_is_periodic_like_scipy(name, n):
    _close(window_function(name, n), scipy.signal.get_window(name, n, fftbins=True), rtol=1e-12)


STFT_CASES = [  # n_fft, win_length, hop_length
    (400, None, 160),
    (256, 200, 64),  # a window shorter than n_fft is centred and zero-padded
    (255, None, 100),  # odd n_fft
]


@pytest.mark.parametrize("n_fft,win_length,hop", STFT_CASES)
@pytest.mark.parametrize("center,pad_mode", [(True, "constant"), (True, "reflect"), (False, "constant")])
@pytest.mark.parametrize("power", [None, 1.0, 2.0])
@pytest.mark.parametrize("fast", [True, False])
def test_stft_matches_librosa(n_fft, win_length, hop, center, pad_mode, power, fast):
    x = _wave(3001)
    ours = Spectrogram(n_fft, win_length, hop, power=power, center=center, pad_mode=pad_mode, fast=fast)(x)
    ref = librosa.stft(x.numpy(), n_fft=n_fft, hop_length=hop, win_length=win_length, window="hann",
                       center=center, pad_mode=pad_mode)
    if power is not None:
        ref = np.abs(ref) ** power
    _close(ours, ref)


@pytest.mark.parametrize("window", ["hamming", "boxcar"])
def test_stft_other_windows_and_normalized(window):
    x = _wave(2000)
    w = scipy.signal.get_window(window, 320, fftbins=True)
    ref = np.abs(librosa.stft(x.numpy(), n_fft=512, hop_length=128, win_length=320, window=window)) ** 2
    _close(Spectrogram(512, 320, 128, window=window)(x), ref)
    _close(Spectrogram(512, 320, 128, window=window, normalized=True)(x), ref / np.sum(w**2))
    w_t = torch.from_numpy(w)  # a window given as a tensor
    _close(Spectrogram(512, 320, 128, window=w_t)(x), ref)


def test_spectrogram_default_shape_is_the_seeds_201_by_81():
    assert Spectrogram()(torch.randn(2, SR)).shape == (2, 201, 81)  # n_fft 400, hop 200, centred


def test_stft_hand_computed_cosine_at_a_bin():
    n_fft, k = 64, 5
    x = torch.cos(2 * math.pi * k * torch.arange(n_fft, dtype=torch.float64) / n_fft)
    mag = Spectrogram(n_fft, window="boxcar", power=1.0, center=False)(x)[:, 0]  # one frame
    expected = torch.zeros(n_fft // 2 + 1, dtype=torch.float64)
    expected[k] = n_fft / 2  # Σ cos² = N/2, every other bin cancels
    torch.testing.assert_close(mag, expected, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------------------------- mel scale and filters

@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
def test_hz_mel_match_librosa_and_round_trip(mel_scale):
    f = torch.tensor([0.0, 20.0, 440.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0, 22050.0], dtype=torch.float64)
    m = hz_to_mel(f, mel_scale)
    _close(m, librosa.hz_to_mel(f.numpy(), htk=mel_scale == "htk"), rtol=1e-12)
    torch.testing.assert_close(mel_to_hz(m, mel_scale), f, rtol=1e-12, atol=1e-9)
    for v in (0.0, 440.0, 1000.0, 6400.0):  # the float path agrees with the tensor path
        assert math.isclose(mel_to_hz(hz_to_mel(v, mel_scale), mel_scale), v, rel_tol=1e-12, abs_tol=1e-9)
        assert math.isclose(hz_to_mel(v, mel_scale), float(hz_to_mel(torch.tensor(v, dtype=torch.float64), mel_scale)),
                            rel_tol=1e-12, abs_tol=1e-12)


def test_mel_hand_values():
    assert math.isclose(hz_to_mel(1000.0, "slaney"), 15.0)  # linear part: 3 mel per 200 Hz
    assert math.isclose(hz_to_mel(500.0, "slaney"), 7.5)
    assert math.isclose(hz_to_mel(6400.0, "slaney"), 42.0)  # 27 log-steps per factor 6.4
    assert math.isclose(hz_to_mel(700.0, "htk"), 2595 * math.log10(2))
    assert abs(hz_to_mel(1000.0, "htk") - 1000.0) < 0.02  # the HTK scale is ~1000 mel at 1 kHz


FB_CASES = [  # sample_rate, n_fft, n_mels, f_min, f_max
    (16000, 400, 40, 0.0, None),
    (16000, 512, 64, 20.0, 7600.0),
    (22050, 2048, 128, 0.0, None),
    (8000, 255, 20, 100.0, 3500.0),  # odd n_fft: bin k is at k sr / n_fft, not linspace(0, sr/2)
]


@pytest.mark.parametrize("sr,n_fft,n_mels,f_min,f_max", FB_CASES)
@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
def test_mel_filterbank_matches_librosa(sr, n_fft, n_mels, f_min, f_max, mel_scale, norm):
    ours = mel_filterbank(sr, n_fft, n_mels, f_min, f_max, mel_scale, norm)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=mel_scale == "htk",
                              norm=norm, dtype=np.float64)
    _close(ours, ref, rtol=1e-9)
    if norm is None:
        assert float(ours.max()) <= 1.0 + 1e-12


def test_mel_filterbank_warns_on_empty_filters():
    with pytest.warns(UserWarning, match="all zero"):
        mel_filterbank(16000, 64, 128)


@pytest.mark.parametrize("mel_scale,norm", [("htk", None), ("slaney", "slaney")])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
@pytest.mark.parametrize("fast", [True, False])
def test_melspectrogram_matches_librosa(mel_scale, norm, pad_mode, fast):
    x = _wave(4000)
    ours = MelSpectrogram(SR, n_fft=512, win_length=400, hop_length=160, n_mels=40, f_min=30.0, f_max=7000.0,
                          pad_mode=pad_mode, mel_scale=mel_scale, norm=norm, fast=fast)(x)
    ref = librosa.feature.melspectrogram(y=x.numpy(), sr=SR, n_fft=512, win_length=400, hop_length=160, n_mels=40,
                                         fmin=30.0, fmax=7000.0, pad_mode=pad_mode, htk=mel_scale == "htk",
                                         norm=norm, dtype=np.float64)
    _close(ours, ref)


# ---------------------------------------------------------------------------------------------- decibels

@pytest.mark.parametrize("ref,amin,top_db",
                         [(1.0, 1e-10, None), (1.0, 1e-10, 80.0), (3.0, 1e-5, 30.0), (0.5, 1e-3, None)])
def test_to_db_matches_librosa(ref, amin, top_db):
    s = MelSpectrogram(n_mels=32)(_wave(3000))
    s[:, :3] = 0.0  # silent frames exercise the amin floor
    want = librosa.power_to_db(s.numpy(), ref=ref, amin=amin, top_db=top_db)
    _close(to_db(s, ref, amin, top_db), want, rtol=1e-12)
    _close(AmplitudeToDB("power", ref, amin, top_db)(s), want, rtol=1e-12)
    mag = s.sqrt()
    _close(to_db(mag, ref, amin, top_db, stype="magnitude"),
           librosa.amplitude_to_db(mag.numpy(), ref=ref, amin=amin, top_db=top_db), rtol=1e-12)


@pytest.mark.parametrize("fast", [True, False])
def test_logmel_matches_librosa(fast):
    x = _wave(5000)
    ours = LogMelSpectrogram(SR, top_db=80.0, n_mels=64, fast=fast)(x)
    mel = librosa.feature.melspectrogram(y=x.numpy(), sr=SR, n_fft=400, hop_length=160, n_mels=64, htk=True,
                                         norm=None, dtype=np.float64)
    _close(ours, librosa.power_to_db(mel, top_db=80.0))


# ---------------------------------------------------------------------------------------------- DCT and MFCC

@pytest.mark.parametrize("norm", ["ortho", None])
def test_dct_matrix_matches_scipy(norm):
    x = torch.randn(40, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _close(dct_matrix(13, 40, norm) @ x, scipy.fft.dct(x.numpy(), type=2, norm=norm, axis=0)[:13], rtol=1e-12)


def test_dct_ortho_is_orthonormal():
    d = dct_matrix(24, 24)
    torch.testing.assert_close(d @ d.T, torch.eye(24, dtype=torch.float64), atol=1e-12, rtol=0)


MFCC_CASES = [  # our keywords, librosa's keywords
    ({}, {"htk": True, "mel_norm": None}),
    ({"mel_scale": "slaney", "norm": "slaney", "n_mels": 64, "n_mfcc": 20, "lifter": 22.0},
     {"htk": False, "mel_norm": "slaney", "n_mels": 64, "n_mfcc": 20, "lifter": 22.0}),
    ({"window": "hamming", "pad_mode": "reflect", "top_db": None, "f_min": 20.0, "dct_norm": None},
     {"htk": True, "mel_norm": None, "window": "hamming", "pad_mode": "reflect", "fmin": 20.0, "norm": None,
      "top_db": None}),  # librosa.feature.mfcc has no top_db: this case passes S = power_to_db(mel, top_db=None)
]


@pytest.mark.parametrize("ours_kw,ref_kw", MFCC_CASES)
@pytest.mark.parametrize("fast", [True, False])
def test_mfcc_matches_librosa(ours_kw, ref_kw, fast):
    x = _wave(6000)
    ours = MFCC(SR, **ours_kw, fast=fast)(x)
    ref_kw = {"n_mfcc": 13, "n_mels": 40, **ref_kw}
    if "top_db" in ref_kw:
        top_db, n_mfcc, norm = ref_kw.pop("top_db"), ref_kw.pop("n_mfcc"), ref_kw.pop("norm")
        ref_kw["norm"] = ref_kw.pop("mel_norm")
        mel = librosa.feature.melspectrogram(y=x.numpy(), sr=SR, n_fft=400, hop_length=160, dtype=np.float64, **ref_kw)
        ref = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=top_db), n_mfcc=n_mfcc, norm=norm)
    else:
        ref = librosa.feature.mfcc(y=x.numpy(), sr=SR, n_fft=400, hop_length=160, dtype=np.float64, **ref_kw)
    _close(ours, ref)


@pytest.mark.parametrize("top_db", [None, 50.0])
def test_mfcc_natural_log_is_db_times_ln10_over_10(top_db):
    x = _wave(3000)
    x[:800] = 0.0  # silence, so that amin and top_db bite
    db = MFCC(SR, top_db=top_db, log="db")(x)
    nat = MFCC(SR, top_db=top_db, log="natural")(x)
    torch.testing.assert_close(nat, db * math.log(10) / 10, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------- deltas

@pytest.mark.parametrize("width", [3, 5, 9])
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("mode", ["interp", "nearest"])
def test_deltas_match_librosa(width, order, mode):
    c = torch.randn(2, 13, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(width))
    ref = librosa.feature.delta(c.numpy(), width=width, order=order, mode=mode)
    _close(compute_deltas(c, width, order, mode), ref, rtol=1e-9)
    _close(Deltas(width, order, mode)(c), ref, rtol=1e-9)


def test_deltas_regression_formula_by_hand():
    g = delta_coefficients(5)  # K = 2: n / (2 (1 + 4)) for n = -2..2
    torch.testing.assert_close(g, torch.tensor([-2, -1, 0, 1, 2], dtype=torch.float64) / 10)
    ramp = 3.0 * torch.arange(12, dtype=torch.float64) + 1.0  # slope 3
    torch.testing.assert_close(compute_deltas(ramp, 5), torch.full((12,), 3.0, dtype=torch.float64))  # edges too
    near = compute_deltas(ramp, 5, mode="nearest")  # replicated frames flatten the ends
    torch.testing.assert_close(near[2:-2], torch.full((8,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(near[0], torch.tensor(1.5, dtype=torch.float64))  # (1·(4-1) + 2·(7-1)) / 10
    quad = torch.arange(12, dtype=torch.float64) ** 2  # second derivative 2 everywhere
    torch.testing.assert_close(compute_deltas(quad, 7, order=2), torch.full((12,), 2.0, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["interp", "nearest"])
@pytest.mark.parametrize("fast", [True, False])
def test_mfcc39_matches_librosa_pipeline(mode, fast):
    x = _wave(SR)
    ours = MFCCWithDeltas(SR, delta_mode=mode, fast=fast)(x)
    assert ours.shape == (39, 101)  # 1 s: 25 ms frames every 10 ms, centred
    c = librosa.feature.mfcc(y=x.numpy(), sr=SR, n_mfcc=13, n_fft=400, hop_length=160, n_mels=40, window="hamming",
                             htk=True, mel_norm=None, dtype=np.float64)
    d1 = librosa.feature.delta(c, width=5, mode=mode)
    d2 = librosa.feature.delta(d1, width=5, mode=mode)  # HTK: the delta of the delta
    _close(ours, np.concatenate([c, d1, d2], axis=0))
    torch.testing.assert_close(add_deltas(MFCCWithDeltas(SR).mfcc(x)), MFCCWithDeltas(SR)(x))
    torch.testing.assert_close(mfcc_with_deltas(x), MFCCWithDeltas(SR)(x))


# ---------------------------------------------------------------------------------------------- batching, dtypes, grads

BATCH_MODULES = [
    lambda: Spectrogram(256, hop_length=100, pad_mode="reflect"),
    lambda: LogMelSpectrogram(SR, top_db=60.0, n_mels=32),
    lambda: MFCC(SR, top_db=40.0),
    lambda: MFCCWithDeltas(SR),
]


@pytest.mark.parametrize("make", BATCH_MODULES)
@pytest.mark.parametrize("fast", [True, False])
def test_batched_equals_per_clip(make, fast, monkeypatch):
    monkeypatch.setattr(features_module, "_BLOCK_BYTES", 220_000)  # the fast path: blocks of 4 clips and 2 clips
    m = make()
    for mod in m.modules():
        if isinstance(mod, Spectrogram):
            mod.fast = fast
    x = _wave(2, 3, 2500)
    x[1, 2] *= 100.0  # a loud clip: top_db must use each clip's own maximum
    y = m(x)
    assert y.shape[:2] == (2, 3)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(y[i, j], m(x[i, j]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", BATCH_MODULES)
def test_float32_close_to_float64(make):
    m = make()
    x = _wave(2, 4000)
    y64, y32 = m(x), m(x.float())
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32, y64.float(), rtol=1e-4, atol=1e-4 * float(y64.abs().max()))


# ---------------------------------------------------------------------------------------------- fast path

FRAMING_CASES = [  # n_fft, win_length, hop, T: the framing's edge cases (p = n_fft // 2 samples of padding)
    (400, None, 160, 16000),  # the benchmark's: 2 head frames, 2 tail frames
    (400, None, 160, 400),  # T = n_fft: one frame inside the clip
    (400, None, 160, 399),  # no frame inside the clip: all from the padded copy
    (400, None, 160, 201),  # reflect's shortest clip (T = p + 1)
    (64, None, 48, 500),  # hop > p: one head frame, and the tail's reflect needs the margin
    (64, None, 64, 256),  # hop = n_fft, T a multiple of it
    (255, 200, 37, 1001),  # odd n_fft, a short window, a hop that does not divide anything
    (16, None, 1, 40),  # hop 1: p head frames
    (1, None, 3, 10),  # n_fft 1: no padding at all
]


@pytest.mark.parametrize("n_fft,win_length,hop,T", FRAMING_CASES)
@pytest.mark.parametrize("center,pad_mode", [(True, "constant"), (True, "reflect"), (False, "constant")])
@pytest.mark.parametrize("power", [None, 1.0])
def test_fast_stft_equals_readable_on_edge_cases(n_fft, win_length, hop, T, center, pad_mode, power, monkeypatch):
    if not center and T < n_fft:
        pytest.skip("no frame without centring")
    monkeypatch.setattr(features_module, "_BLOCK_BYTES", 1)  # one clip per block: the blocks write into the result
    x = _wave(3, T)
    fast = Spectrogram(n_fft, win_length, hop, power=power, center=center, pad_mode=pad_mode)
    readable = Spectrogram(n_fft, win_length, hop, power=power, center=center, pad_mode=pad_mode, fast=False)
    ours, ref = fast.time_major(x), readable.time_major(x)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))
    w = fast._fast_window(x.dtype, x.device)  # the frames themselves: only multiplications, so exactly equal
    p = n_fft // 2 if center else 0
    padded = torch.nn.functional.pad(x.unsqueeze(1), (p, p), mode=pad_mode).squeeze(1)
    assert torch.equal(fast._frames(x, w), padded.unfold(-1, n_fft, hop) * w)


@pytest.mark.parametrize("kw", [
    {"power": 1.0},  # |X|, a dense spectrum through the banded matmul
    {"power": 2.0, "normalized": True},  # the normalization folded into the window
    {"n_fft": 512, "win_length": 480, "n_mels": 40, "f_min": 50.0, "f_max": 4000.0, "mel_scale": "slaney",
     "norm": "slaney"},  # bins above f_max: the last band stops early
    {"n_fft": 64, "n_mels": 48, "hop_length": 16},  # empty filters (warned): their band is (0, 0), zeros
])
def test_fast_mel_equals_readable(kw, monkeypatch):
    monkeypatch.setattr(features_module, "_BLOCK_BYTES", 1)
    x = _wave(2, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the empty filters of the last case
        fast, readable = MelSpectrogram(SR, **kw), MelSpectrogram(SR, **kw, fast=False)
    ref = readable(x)
    torch.testing.assert_close(fast(x), ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))
    covered = torch.zeros_like(fast.fb, dtype=torch.bool)
    for m0, m1, k0, k1 in fast.bands:
        covered[m0:m1, k0:k1] = True
    assert not fast.fb[~covered].any()  # the bands hold every non-zero of the filterbank


@pytest.mark.parametrize("ref,amin,top_db", [(1.0, 1e-10, 80.0), (3.0, 1e-5, 30.0), (0.5, 1e-3, None)])
def test_fast_logmel_equals_readable(ref, amin, top_db):
    x = _wave(3, 3000)
    x[1, :1000] = 0.0  # silence: the amin floor
    kw = dict(ref=ref, amin=amin, top_db=top_db, n_mels=40)
    want = LogMelSpectrogram(SR, **kw, fast=False)(x)
    torch.testing.assert_close(LogMelSpectrogram(SR, **kw)(x), want, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("log,top_db", [("db", None), ("natural", 30.0)])
def test_fast_mfcc_equals_readable_with_many_blocks(log, top_db, monkeypatch):
    monkeypatch.setattr(features_module, "_BLOCK_BYTES", 1)  # one clip per block
    x = _wave(5, 3000)
    x[3] *= 1000.0  # a loud clip: each block floors at its own clips' maxima
    for make in (lambda f: MFCC(SR, log=log, top_db=top_db, lifter=22.0, fast=f),
                 lambda f: MFCCWithDeltas(SR, log=log, top_db=top_db, fast=f)):
        ref = make(False)(x)
        torch.testing.assert_close(make(True)(x), ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max()))


def test_fast_path_only_without_autograd(monkeypatch):
    calls = []
    frames = Spectrogram._frames
    monkeypatch.setattr(Spectrogram, "_frames", lambda self, x, w: calls.append(1) or frames(self, x, w))
    m, x = LogMelSpectrogram(SR, top_db=80.0), _wave(2, 3000)
    y_fast = m(x)
    assert calls, "no autograd: the fast path"
    calls.clear()
    y_grad = m(x.clone().requires_grad_())
    assert not calls and y_grad.requires_grad, "autograd: the readable path"
    torch.testing.assert_close(y_fast, y_grad.detach(), rtol=1e-12, atol=1e-9)
    LogMelSpectrogram(SR, fast=False)(x)
    assert not calls, "fast=False: the readable path"


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_melspectrogram_gradcheck(pad_mode):
    m = MelSpectrogram(8000, n_fft=16, hop_length=8, n_mels=4, pad_mode=pad_mode)
    x = torch.randn(2, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


def test_mfcc39_gradient_flows():
    x = _wave(2, 1600).requires_grad_()
    MFCCWithDeltas(SR, top_db=None)(x).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    m, x = MFCCWithDeltas(SR), _wave(2, 4000)
    torch.testing.assert_close(m.to("cuda")(x.cuda()).cpu(), m.cpu()(x), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("make,match", [
    (lambda: Spectrogram(0), "n_fft"),
    (lambda: Spectrogram(400, win_length=500), "win_length"),
    (lambda: Spectrogram(400, hop_length=0), "hop_length"),
    (lambda: Spectrogram(400, window="kaiser"), "window"),
    (lambda: Spectrogram(400, window=torch.ones(300)), "window tensor"),
    (lambda: Spectrogram(400, power=0.0), "power"),
    (lambda: Spectrogram(400, pad_mode="edge"), "pad_mode"),
    (lambda: MelSpectrogram(SR, f_max=9000.0), "Nyquist"),
    (lambda: MelSpectrogram(SR, f_min=5000.0, f_max=4000.0), "f_min"),
    (lambda: MelSpectrogram(SR, n_mels=0), "n_mels"),
    (lambda: MelSpectrogram(SR, mel_scale="bark"), "mel_scale"),
    (lambda: MelSpectrogram(SR, norm="l2"), "norm"),
    (lambda: MelSpectrogram(-1), "sample_rate"),
    (lambda: MFCC(SR, n_mfcc=41, n_mels=40), "n_mfcc"),
    (lambda: MFCC(SR, log="log2"), "log"),
    (lambda: MFCC(SR, lifter=-1.0), "lifter"),
    (lambda: LogMelSpectrogram(SR, top_db=-1.0), "top_db"),
    (lambda: AmplitudeToDB(amin=0.0), "amin"),
    (lambda: AmplitudeToDB(stype="energy"), "stype"),
    (lambda: Deltas(width=4), "odd"),
    (lambda: Deltas(order=3), "order"),
    (lambda: Deltas(mode="wrap"), "mode"),
    (lambda: MFCCWithDeltas(win_ms=0.0), "win_ms"),
    (lambda: dct_matrix(5, 4), "n_mfcc"),
    (lambda: hz_to_mel(100.0, "bark"), "mel_scale"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="floating-point"):
        Spectrogram()(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="fewer than n_fft"):
        Spectrogram(400, center=False)(torch.randn(300))
    with pytest.raises(ValueError, match="reflect"):
        Spectrogram(400, pad_mode="reflect")(torch.randn(150))
    with pytest.raises(ValueError, match="at least width"):
        compute_deltas(torch.randn(13, 4), width=5)
    assert compute_deltas(torch.randn(13, 4), width=5, mode="nearest").shape == (13, 4)  # fine without interp
    with pytest.raises(ValueError, match="ref"):
        to_db(torch.ones(3), ref=0.0)
