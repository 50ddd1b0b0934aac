"""Audio augmentations against their definitions: hand-computed cases, invariances (length, silence, identity at
zero strength), the asked SNR, mask widths, the warp's inverse, and seeded draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepnotes.audio.augment import (mix_noise, random_eq, spec_augment, speed_perturb, time_shift, uniform_factors,
                                     vtlp_warp)


# ----------------------------------------------------------------------------------- time shift
def test_time_shift_hand_case():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    g = torch.Generator().manual_seed(0)
    s = int(torch.randint(-2, 3, (1, 1), generator=torch.Generator().manual_seed(0)))
    y = time_shift(x, 2, g)
    expected = {-2: [3.0, 4.0, 0.0, 0.0], -1: [2.0, 3.0, 4.0, 0.0], 0: [1.0, 2.0, 3.0, 4.0],
                1: [0.0, 1.0, 2.0, 3.0], 2: [0.0, 0.0, 1.0, 2.0]}[s]
    assert y.tolist() == [expected]


def test_time_shift_moves_each_clip_by_its_draw_zero_filled():
    x = torch.arange(1, 41, dtype=torch.float32).view(4, 10)
    y = time_shift(x, 3, torch.Generator().manual_seed(5))
    assert y.shape == x.shape  # the length is kept
    shifts = torch.randint(-3, 4, (4, 1), generator=torch.Generator().manual_seed(5)).flatten().tolist()
    for row, s in zip(range(4), shifts):
        expected = torch.zeros(10)
        if s >= 0:
            expected[s:] = x[row, :10 - s]
        else:
            expected[:10 + s] = x[row, -s:]
        torch.testing.assert_close(y[row], expected)
    assert len(set(shifts)) > 1
    torch.testing.assert_close(time_shift(x, 0), x)  # no shift: unchanged
    assert time_shift(x, 50).abs().sum() <= x.abs().sum()  # a shift past the end leaves zeros, never new samples
    with pytest.raises(ValueError, match="max_shift"):
        time_shift(x, -1)
    with pytest.raises(ValueError, match="waveforms"):
        time_shift(x[0], 1)


# ----------------------------------------------------------------------------------- speed perturbation
def test_speed_perturb_is_linear_interpolation_about_the_centre():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 301, generator=g, dtype=torch.float64)
    y = speed_perturb(x, 0.2, torch.Generator().manual_seed(7))
    assert y.shape == x.shape
    r = 1 + 0.2 * (2 * torch.rand(3, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64) - 1)
    grid = np.arange(-1, 302)  # zeros one sample beyond each end
    for b in range(3):
        src = 150 + (np.arange(301) - 150) * float(r[b])
        expected = np.interp(src, grid, np.concatenate([[0.0], x[b].numpy(), [0.0]]), left=0.0, right=0.0)
        np.testing.assert_allclose(y[b].numpy(), expected, atol=1e-12)
    torch.testing.assert_close(speed_perturb(x, 0.0), x)  # r = 1: unchanged
    with pytest.raises(ValueError, match="max_change"):
        speed_perturb(x, 1.0)


def test_speed_perturb_scales_a_tone_frequency():
    t = torch.arange(16000, dtype=torch.float64) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t).unsqueeze(0).repeat(64, 1)
    y = speed_perturb(tone, 0.1, torch.Generator().manual_seed(1))
    r = 1 + 0.1 * (2 * torch.rand(64, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1)
    peak = torch.fft.rfft(y[:, 4000:12000]).abs().argmax(-1).double() * 2  # 8000-sample window: 2 Hz bins
    assert (peak - 1000 * r.flatten()).abs().max() <= 2.0  # a 1 kHz tone played r times faster is r kHz


# ----------------------------------------------------------------------------------- noise mixing
def test_mix_noise_reaches_the_drawn_snr():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 400, generator=g) * torch.linspace(0.1, 1.0, 6).unsqueeze(1)
    noise = [torch.randn(1000, generator=g), torch.randn(700, generator=g) * 3]
    y = mix_noise(x, noise, (12.0, 12.0), 1.0, torch.Generator().manual_seed(1))
    n = y - x
    snr = 10 * torch.log10(x.pow(2).mean(1) / n.pow(2).mean(1))
    torch.testing.assert_close(snr, torch.full((6,), 12.0), atol=1e-3, rtol=0)
    # every added signal is a scaled crop of one recording: cosine similarity 1 with some crop
    for row in n:
        best = max(float(torch.cosine_similarity(rec.unfold(0, 400, 1), row.unsqueeze(0), dim=1).max()) for rec in noise)
        assert best > 1 - 1e-5
    torch.testing.assert_close(mix_noise(x, noise, (0.0, 20.0), 0.0), x)  # prob 0: unchanged
    silent = mix_noise(torch.zeros(2, 400), noise, (5.0, 5.0), 1.0)
    assert silent.abs().max() == 0  # a silent clip stays silent
    with pytest.raises(ValueError, match="at least T"):
        mix_noise(x, [torch.randn(100)], (5.0, 5.0), 1.0)
    with pytest.raises(ValueError, match="low <= high"):
        mix_noise(x, noise, (20.0, 5.0), 1.0)
    with pytest.raises(ValueError, match="prob"):
        mix_noise(x, noise, (5.0, 5.0), 1.5)


def test_mix_noise_snr_range_and_share():
    x = torch.randn(2000, 200, generator=torch.Generator().manual_seed(0))
    noise = [torch.randn(5000, generator=torch.Generator().manual_seed(1))]
    y = mix_noise(x, noise, (0.0, 30.0), 0.5, torch.Generator().manual_seed(2))
    mixed = (y - x).abs().amax(1) > 0
    assert 0.45 < mixed.double().mean() < 0.55  # about half the clips
    snr = 10 * torch.log10(x[mixed].pow(2).mean(1) / (y - x)[mixed].pow(2).mean(1))
    assert snr.min() >= -1e-3 and snr.max() <= 30 + 1e-3 and snr.std() > 5  # spread over [0, 30] dB


# ----------------------------------------------------------------------------------- VTLP
def test_vtlp_warp_reads_each_bin_from_the_inverse_warp():
    # a spectrum equal to its own frequency axis, f_k, comes back as phi^-1(f_k): linear interpolation is exact
    K, nyq, b = 257, 8000.0, 4800.0
    f = torch.linspace(0, nyq, K, dtype=torch.float64)
    spec = f.view(1, K, 1).repeat(3, 1, 2)
    alpha = torch.tensor([0.9, 1.0, 1.1], dtype=torch.float64)
    y = vtlp_warp(spec, alpha)
    for i, a in enumerate(alpha.tolist()):
        expected = torch.where(f <= b, f / a, b / a + (f - b) * (nyq - b / a) / (nyq - b))
        torch.testing.assert_close(y[i, :, 0], expected.clamp(0, nyq))
    torch.testing.assert_close(y[1], spec[1])  # alpha 1: unchanged
    assert y[0, -1, 0] == nyq and y[2, -1, 0] == nyq  # the band stays [0, Nyquist]


def test_vtlp_warp_moves_a_formant_by_alpha():
    K = 257
    spec = torch.zeros(2, K, 1)
    spec[:, 64] = 1.0  # 2 kHz, below the boundary
    y = vtlp_warp(spec, torch.tensor([1.1, 0.9]))
    peak = (y[:, :, 0] * torch.arange(K)).sum(1) / y[:, :, 0].sum(1)  # centre of mass, in bins
    torch.testing.assert_close(peak, torch.tensor([64 * 1.1, 64 * 0.9]), atol=0.6, rtol=0)
    with pytest.raises(ValueError, match="alpha"):
        vtlp_warp(spec, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="alpha"):
        vtlp_warp(spec, torch.ones(3))
    with pytest.raises(ValueError, match="boundary_hz"):
        vtlp_warp(spec, torch.ones(2), boundary_hz=9000.0)


def test_uniform_factors_stay_in_range_and_repeat_with_the_seed():
    a = uniform_factors(1000, 0.1, torch.Generator().manual_seed(3))
    assert a.shape == (1000,) and a.min() >= 0.9 and a.max() <= 1.1 and a.std() > 0.04
    assert torch.equal(a, uniform_factors(1000, 0.1, torch.Generator().manual_seed(3)))
    assert torch.equal(uniform_factors(5, 0.0), torch.ones(5))


# ----------------------------------------------------------------------------------- SpecAugment
def test_spec_augment_masks_whole_rows_and_columns():
    feats = torch.rand(8, 1, 40, 101) + 1.0  # no zeros before masking
    y = spec_augment(feats, 2, 6, 2, 20, torch.Generator().manual_seed(3))
    assert y.shape == feats.shape
    masked = y[:, 0] == 0
    for b in range(8):
        rows = masked[b].all(dim=1)  # frequency bins masked at every frame
        cols = masked[b].all(dim=0)  # frames masked at every bin
        assert rows.sum() <= 12 and cols.sum() <= 40
        # every masked cell lies in a fully masked row or column; the rest is untouched
        assert (masked[b] == (rows.unsqueeze(1) | cols.unsqueeze(0))).all()
        torch.testing.assert_close(y[b, 0][~masked[b]], feats[b, 0][~masked[b]])
    assert masked.any()
    torch.testing.assert_close(spec_augment(feats, 0, 6, 0, 20), feats)
    same = spec_augment(feats, 2, 6, 2, 20, torch.Generator().manual_seed(3))
    torch.testing.assert_close(same, y)  # seeded: the same draws
    with pytest.raises(ValueError, match="exceed"):
        spec_augment(feats, 1, 41, 1, 5)
    with pytest.raises(ValueError, match=">= 0"):
        spec_augment(feats, -1, 4, 1, 5)


def test_spec_augment_masks_have_the_drawn_widths_and_starts():
    # one frequency mask per clip, no time mask: each clip's masked rows are one run of the drawn width at the drawn start
    B, Fq, T, W = 64, 40, 7, 8
    feats = torch.ones(B, Fq, T)
    y = spec_augment(feats, 1, W, 0, 0, torch.Generator().manual_seed(9), value=-1.0)
    g = torch.Generator().manual_seed(9)
    w = torch.randint(0, W + 1, (B, 1), generator=g).flatten()
    start = (torch.rand(B, 1, generator=g) * (Fq - w.unsqueeze(1) + 1)).floor().long().flatten()
    rows = (y == -1).all(dim=2)  # (B, Fq)
    for b in range(B):
        assert rows[b].sum() == w[b] and (w[b] == 0 or rows[b, start[b]: start[b] + w[b]].all())
        assert 0 <= start[b] <= Fq - w[b]
    assert set(w.tolist()) == set(range(W + 1))  # every width 0..W occurs; none wider
    # a time mask only: whole frames
    y = spec_augment(feats, 0, 0, 1, 3, torch.Generator().manual_seed(1))
    cols = (y == 0).all(dim=1)
    assert ((y == 0) == cols.unsqueeze(1)).all() and cols.sum(1).max() <= 3


# ----------------------------------------------------------------------------------- random equalizer
def test_random_eq_is_the_drawn_cosine_sum_scaled_to_its_level():
    x = torch.randn(3, 1, 8, 5)
    y = random_eq(x, 6.0, torch.Generator().manual_seed(4), n_terms=2)
    g = torch.Generator().manual_seed(4)
    coef, level = torch.randn(3, 2, generator=g), torch.rand(3, generator=g)
    f = torch.arange(8, dtype=torch.float64) + 0.5
    for b in range(3):  # by hand, one clip at a time
        h = coef[b, 0].double() * torch.cos(torch.pi * f / 8) + coef[b, 1].double() * torch.cos(2 * torch.pi * f / 8)
        gain = level[b].double() * 6.0 * h / h.abs().max()
        torch.testing.assert_close((y - x)[b, 0].double(), gain.unsqueeze(1).expand(8, 5), atol=1e-5, rtol=0)
        assert abs(float((y - x)[b].abs().max()) - 6.0 * float(level[b])) < 1e-5  # the peak gain is the level


def test_random_eq_stays_within_max_db_repeats_with_the_seed_and_zero_is_identity():
    x = torch.zeros(64, 40, 7)
    a = random_eq(x, 10.0, torch.Generator().manual_seed(1))
    assert a.abs().max() <= 10.0 + 1e-5 and a.abs().max() > 5.0
    assert torch.equal(a, random_eq(x, 10.0, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, random_eq(x, 10.0, torch.Generator().manual_seed(2)))
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    assert random_eq(x, 0.0, g) is x and torch.equal(g.get_state(), state)  # no draws at 0 dB
    with pytest.raises(ValueError, match="max_db"):
        random_eq(x, -1.0)
    with pytest.raises(ValueError, match="n_terms"):
        random_eq(x, 1.0, n_terms=0)
