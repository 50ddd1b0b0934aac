"""Causal convolutions and TCNs: exact causality, measured receptive field vs the formula, torch references."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.nn.tcn import TCN, CausalConv1d, TemporalBlock, receptive_field

DT = torch.float64
TOL = dict(atol=1e-12, rtol=1e-12)

TCN_CONFIGS = [  # (in_channels, channels, kernel_size, dropout, weight_norm)
    (3, [6, 6, 6], 2, 0.0, False),
    (2, [5, 7], 3, 0.0, False),
    (1, [4, 4, 4, 4], 2, 0.2, False),  # dropout (training mode) must not break causality
    (3, [6, 4, 6], 3, 0.0, True),
]


def _tcn(cfg, seed=0):
    in_c, channels, k, p, wn = cfg
    torch.manual_seed(seed)
    return TCN(in_c, channels, kernel_size=k, dropout=p, weight_norm=wn).to(DT)


def test_receptive_field_formula():
    assert receptive_field(2, 4) == 31  # 1 + 2*1*(1+2+4+8)
    assert receptive_field(3, 3) == 1 + 2 * 2 * 7
    assert receptive_field(5, 2, convs_per_block=1) == 1 + 4 * 3
    assert receptive_field(2, 0) == 1
    assert receptive_field(1, 6) == 1  # kernel 1: no context
    assert TCN(1, [4, 4, 4], kernel_size=3).receptive_field == 1 + 2 * 2 * 7


@pytest.mark.parametrize("cfg", TCN_CONFIGS)
def test_output_depends_on_past_only(cfg):
    tcn = _tcn(cfg).train()
    L = 32
    x = torch.randn(2, cfg[0], L, dtype=DT, requires_grad=True)
    for t in (0, 9, 22, L - 2):
        torch.manual_seed(1)  # the same dropout masks for every t
        y = tcn(x)
        (grad,) = torch.autograd.grad(y[..., t].sum(), x)
        assert grad[..., t + 1:].abs().max() == 0, f"y[{t}] depends on the future"
        assert grad[..., :t + 1].abs().max() > 0  # and it does depend on the past (not a vacuous check)


@pytest.mark.parametrize("cfg", TCN_CONFIGS)
def test_changing_the_future_leaves_the_past_unchanged(cfg):
    tcn = _tcn(cfg).eval()
    x = torch.randn(1, cfg[0], 30, dtype=DT)
    x2 = x.clone()
    x2[..., 20:] = torch.randn_like(x2[..., 20:]) * 10
    y, y2 = tcn(x), tcn(x2)
    torch.testing.assert_close(y[..., :20], y2[..., :20], atol=0, rtol=0)
    assert not torch.allclose(y[..., 20:], y2[..., 20:])


@pytest.mark.parametrize("in_c,channels,k", [(3, [8, 8, 8], 2), (2, [8, 8], 3), (1, [8, 8, 8, 8], 2), (4, [8], 5)])
def test_measured_receptive_field_equals_formula(in_c, channels, k):
    torch.manual_seed(0)
    tcn = TCN(in_c, channels, kernel_size=k).to(DT).eval()
    R = receptive_field(k, len(channels))
    assert tcn.receptive_field == R
    L = R + 15  # longer than the receptive field, so its start is visible
    depends = torch.zeros(L, dtype=torch.bool)
    for seed in range(3):  # union over inputs, in case ReLUs are dead on one of them
        x = torch.randn(2, in_c, L, dtype=DT, generator=torch.Generator().manual_seed(seed), requires_grad=True)
        (grad,) = torch.autograd.grad(tcn(x)[..., -1].sum(), x)
        depends |= grad.abs().sum(dim=(0, 1)) > 0
    idx = depends.nonzero().flatten()
    span = L - int(idx.min())  # from the earliest input with non-zero gradient to the last one
    assert int(idx.max()) == L - 1
    assert span == R


@pytest.mark.parametrize("k,d,bias", [(1, 1, True), (2, 1, True), (3, 2, False), (4, 5, True)])
def test_causal_conv_equals_conv1d_with_left_zero_padding(k, d, bias):
    torch.manual_seed(0)
    ref = nn.Conv1d(3, 5, k, dilation=d, bias=bias).to(DT)
    ours = CausalConv1d(3, 5, k, dilation=d, bias=bias).to(DT)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 12, dtype=DT)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = ours(xa)
    yb = ref(torch.cat([torch.zeros(2, 3, (k - 1) * d, dtype=DT), xb], dim=-1))  # explicit left zeros
    assert ya.shape == (2, 5, 12)
    torch.testing.assert_close(ya, yb, **TOL)
    w = torch.randn(ya.shape, dtype=DT)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, **TOL)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **TOL)
    # unbatched input
    torch.testing.assert_close(ours(x[0]), ya[0].detach(), **TOL)


def test_causal_conv_hand_computed():
    conv = CausalConv1d(1, 1, kernel_size=2, dilation=2, bias=False).to(DT)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[10.0, 1.0]]]))  # y[t] = 10 x[t-2] + x[t]
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]], dtype=DT)
    torch.testing.assert_close(conv(x), torch.tensor([[[1.0, 2.0, 13.0, 24.0, 35.0]]], dtype=DT))


class _BaiTemporalBlock(nn.Module):
    """Bai et al.'s reference code: symmetric padding (k-1)d, then chomp the last (k-1)d outputs."""

    def __init__(self, c_in, c_out, k, d):
        super().__init__()
        p = (k - 1) * d
        self.conv1 = nn.Conv1d(c_in, c_out, k, padding=p, dilation=d)
        self.conv2 = nn.Conv1d(c_out, c_out, k, padding=p, dilation=d)
        self.downsample = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None
        self.p = p

    def forward(self, x):
        chomp = (lambda z: z[..., :-self.p]) if self.p else (lambda z: z)
        out = torch.relu(chomp(self.conv1(x)))
        out = torch.relu(chomp(self.conv2(out)))
        res = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + res)


@pytest.mark.parametrize("c_in,c_out,k,d", [(3, 5, 2, 1), (4, 4, 3, 2), (2, 6, 3, 4)])
def test_temporal_block_matches_bai_reference(c_in, c_out, k, d):
    torch.manual_seed(0)
    ref = _BaiTemporalBlock(c_in, c_out, k, d).to(DT)
    ours = TemporalBlock(c_in, c_out, k, d).to(DT)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    assert (ours.downsample is None) == (c_in == c_out)
    x = torch.randn(2, c_in, 20, dtype=DT)
    torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_weight_norm_block_starts_equal_to_plain_block():
    torch.manual_seed(0)
    plain = TemporalBlock(3, 5, 3, 2).to(DT)
    torch.manual_seed(0)
    wn = TemporalBlock(3, 5, 3, 2, weight_norm=True).to(DT)
    assert hasattr(wn.conv1, "parametrizations") and not hasattr(plain.conv1, "parametrizations")
    x = torch.randn(2, 3, 16, dtype=DT)
    torch.testing.assert_close(wn(x), plain(x), atol=1e-6, rtol=1e-6)  # g = ||v|| at init: w = v (float32 g, v)
    wn.init_weights(0.01)
    assert wn.conv1.parametrizations.weight.original1.std() < 0.05


@pytest.mark.parametrize("cfg", TCN_CONFIGS)
def test_shapes(cfg):
    tcn = _tcn(cfg)
    assert tcn(torch.randn(4, cfg[0], 13, dtype=DT)).shape == (4, cfg[1][-1], 13)
    assert tcn(torch.randn(cfg[0], 7, dtype=DT)).shape == (cfg[1][-1], 7)
    assert tcn.out_channels == cfg[1][-1]
    assert [b.dilation for b in tcn.network] == [2 ** i for i in range(len(cfg[1]))]


def test_errors():
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        CausalConv1d(2, 3, 0)
    with pytest.raises(ValueError, match="dilation must be a positive int"):
        CausalConv1d(2, 3, 2, dilation=0)
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\)"):
        TemporalBlock(2, 3, 2, 1, dropout=1.0)
    with pytest.raises(ValueError, match="channels must be a non-empty sequence"):
        TCN(2, [])
    with pytest.raises(ValueError, match="channels must be a non-empty sequence"):
        TCN(2, 16)
    with pytest.raises(ValueError, match=r"channels\[1\] must be a positive int"):
        TCN(2, [4, 0])
    with pytest.raises(ValueError, match="n_blocks must be an int >= 0"):
        receptive_field(2, -1)
    with pytest.raises(ValueError, match="got 5 channels"):
        TCN(2, [4])(torch.randn(1, 5, 10))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, C_in, L\)"):
        CausalConv1d(2, 3, 2)(torch.randn(10))
