"""Keyword-spotting models: shapes, parameter counts (by hand, the M5 tutorial's, the BC-ResNet paper's),
sub-spectral norm against its equations, the broadcasted residual block on a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepnotes.audio import Spectrogram, to_db
from deepnotes.errors import UserError
from deepnotes.models.kws import M5, BCResBlock, BCResNet, BCResNetConfig, SpectrogramCNN, SubSpectralNorm
from deepnotes.models.registry import create_model


def _count(m):
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------- the exercise's CNN
def test_spectrogram_cnn_parameter_count_by_hand():
    K = 35
    conv1, conv2 = 32 * (1 * 25 + 1), 64 * (32 * 25 + 1)
    fc1, fc2 = 51136 * 50 + 50, 50 * K + K  # 51,136 = 64 x 47 x 17, the exercise's flattened size
    assert _count(SpectrogramCNN(K)) == conv1 + conv2 + fc1 + fc2


def test_spectrogram_cnn_forward_on_waveform_batch():
    torch.manual_seed(0)
    wave = torch.randn(3, 16000) * 0.1  # (B, 16000): 1 s at 16 kHz
    spec = to_db(Spectrogram(n_fft=400, hop_length=200)(wave), amin=1e-6).unsqueeze(1)
    assert spec.shape == (3, 1, 201, 81)  # the exercise's (201, 81)
    logits = SpectrogramCNN(35)(spec)
    assert logits.shape == (3, 35) and torch.isfinite(logits).all()


def test_spectrogram_cnn_resizes_other_sizes_like_interpolate():
    torch.manual_seed(0)
    m = SpectrogramCNN(5).eval()
    x = torch.randn(2, 1, 100, 40)
    resized = F.interpolate(x, size=(201, 81), mode="bilinear", align_corners=False)
    torch.testing.assert_close(m(x), m(resized))
    with pytest.raises(ValueError, match=r"expects \(B, 1, H, W\)"):
        m(torch.randn(2, 3, 201, 81))
    with pytest.raises(ValueError, match="input_size"):
        SpectrogramCNN(5, input_size=(10, 81))
    with pytest.raises(ValueError, match="dropout"):
        SpectrogramCNN(5, dropout=1.0)


def test_spectrogram_cnn_logits_can_be_negative():
    # the exercise's code applied ReLU to its logits; ours are plain linear outputs
    torch.manual_seed(1)
    m = SpectrogramCNN(8).eval()
    with torch.no_grad():
        m.fc2.bias.fill_(-5.0)
    assert (m(torch.randn(2, 1, 201, 81)) < 0).any()


# ----------------------------------------------------------------------------------- M5
def test_m5_parameter_count_matches_tutorial_and_hand_count():
    m = M5(35)
    assert _count(m) == 26915  # "Number of parameters: 26915" in PyTorch's Speech Commands tutorial
    n = 32
    by_hand = (n * 80 + n) + (n * n * 3 + n) + (2 * n * n * 3 + 2 * n) + (4 * n * n * 3 + 2 * n) \
        + 2 * (n + n + 2 * n + 2 * n) + (2 * n * 35 + 35)  # 4 convs, 4 batch norms (weight + bias), fc
    assert _count(m) == by_hand


def test_m5_forward_on_waveform_batch_and_channel_dim():
    torch.manual_seed(0)
    m = M5(35).eval()
    x = torch.randn(4, 16000)
    out = m(x)
    assert out.shape == (4, 35)
    torch.testing.assert_close(out, m(x.unsqueeze(1)))  # (B, T) == (B, 1, T)
    torch.testing.assert_close(out[1:2], m(x[1:2]))  # batched == one by one (eval mode)


def test_m5_min_length():
    m = M5(3).eval()
    n = m.min_length()
    # conv1 output (n - 80) // 16 + 1 must survive 4 x (pool 4) with 3 convs (kernel 3) between
    length = (n - 80) // 16 + 1
    for _ in range(3):
        length = length // 4 - 2
    assert length // 4 == 1
    assert m(torch.randn(1, n)).shape == (1, 3)
    with pytest.raises(ValueError, match="at least"):
        m(torch.randn(1, n - 16))
    with pytest.raises(ValueError, match="M5 expects"):
        m(torch.randn(2, 2, 16000))


# ----------------------------------------------------------------------------------- sub-spectral norm
def test_subspectral_norm_matches_per_band_batch_norm_equations():
    torch.manual_seed(0)
    C, S, Fq = 3, 4, 8
    ssn = SubSpectralNorm(C, S).double()
    with torch.no_grad():
        ssn.bn.weight.copy_(torch.rand(C * S) + 0.5)
        ssn.bn.bias.copy_(torch.randn(C * S))
    x = torch.randn(5, C, Fq, 6, dtype=torch.float64) * 2 + 1
    y = ssn(x)
    band = Fq // S
    for c in range(C):
        for s in range(S):
            xs = x[:, c, s * band:(s + 1) * band]  # (B, band, T)
            mu, var = xs.mean(), xs.var(unbiased=False)
            g, b = ssn.bn.weight[c * S + s], ssn.bn.bias[c * S + s]
            torch.testing.assert_close(y[:, c, s * band:(s + 1) * band], g * (xs - mu) / torch.sqrt(var + 1e-5) + b)
    # running statistics: per (channel, band), momentum 0.1, unbiased variance
    mu = x.reshape(5, C, S, band, 6).mean(dim=(0, 3, 4)).reshape(-1)
    torch.testing.assert_close(ssn.bn.running_mean, 0.1 * mu)


def test_subspectral_norm_with_one_band_is_batch_norm_and_errors():
    torch.manual_seed(0)
    ssn, bn = SubSpectralNorm(4, 1), torch.nn.BatchNorm2d(4)
    x = torch.randn(3, 4, 5, 7)
    torch.testing.assert_close(ssn(x), bn(x))
    with pytest.raises(ValueError, match="divisible by 5"):
        SubSpectralNorm(4, 5)(torch.randn(2, 4, 8, 3))
    with pytest.raises(ValueError, match="sub_bands"):
        SubSpectralNorm(4, 0)


# ----------------------------------------------------------------------------------- BC-ResBlock and BC-ResNet
def test_bcres_block_hand_computed_case():
    """Identity kernels and fresh (eval) norms: out = relu(x + a + silu(mean_F(a') )) with a = x / sqrt(1 + eps)."""
    torch.manual_seed(0)
    C = 4
    blk = BCResBlock(C, C, stride=1, dilation=2, sub_bands=2).double().eval()
    with torch.no_grad():
        blk.freq_conv.weight.zero_()
        blk.freq_conv.weight[:, 0, 1, 0] = 1.0  # centre tap: identity in frequency
        blk.time_conv.weight.zero_()
        blk.time_conv.weight[:, 0, 0, 1] = 1.0  # identity in time
        blk.pointwise.weight.copy_(torch.eye(C).view(C, C, 1, 1))
    x = torch.randn(2, C, 6, 9, dtype=torch.float64)
    s = 1 / math.sqrt(1 + 1e-5)  # BN in eval with running mean 0, var 1
    aux = x * s  # f2(x)
    h = F.silu(aux.mean(dim=2, keepdim=True) * s)  # f1 on the frequency average, broadcast over F
    torch.testing.assert_close(blk(x), F.relu(x + aux + h))


def test_bcres_transition_block_shapes_and_no_identity():
    blk = BCResBlock(8, 12, stride=2, dilation=1, sub_bands=5)
    assert blk.transition
    assert blk(torch.randn(2, 8, 20, 11)).shape == (2, 12, 10, 11)
    assert not BCResBlock(8, 8).transition
    with pytest.raises(ValueError, match="stride"):
        BCResBlock(8, 8, stride=3)


@pytest.mark.parametrize("width,paper_k", [(1, 9.2), (2, 27.3), (3, 54.2), (6, 188), (8, 321)])
def test_bcresnet_parameter_counts_match_paper_table(width, paper_k):
    # Kim et al. 2021, Table 1 (12 classes: 10 commands + unknown + silence)
    n = _count(BCResNet(12, BCResNetConfig(width=width)))
    digits = 1 if paper_k < 100 else 0
    assert round(n / 1000, digits) == paper_k


def test_bcresnet_shapes_dilations_and_invariances():
    torch.manual_seed(0)
    m = BCResNet(35).eval()
    x = torch.randn(3, 1, 40, 101)
    out = m(x)
    assert out.shape == (3, 35)
    torch.testing.assert_close(m(x[:, 0]), out)  # (B, n_mels, T) accepted
    torch.testing.assert_close(m(x[2:3]), out[2:3], atol=1e-5, rtol=1e-5)  # batched == one by one
    mcl = m.to(memory_format=torch.channels_last)
    torch.testing.assert_close(mcl(x.contiguous(memory_format=torch.channels_last)), out, atol=1e-5, rtol=1e-5)
    assert m(torch.randn(2, 1, 40, 37)).shape == (2, 35)  # any number of frames
    dil = [b.time_conv.dilation[1] for b in m.blocks]
    assert dil == [1, 1, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8]  # 2^stage, blocks (2, 2, 4, 4)
    strides = [b.freq_conv.stride[0] for b in m.blocks]
    assert strides == [1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1]  # first block of stages 1 and 2
    assert BCResNet(10, BCResNetConfig(n_mels=80))(torch.randn(1, 1, 80, 50)).shape == (1, 10)


def test_bcresnet_errors():
    with pytest.raises(ValueError, match="n_mels=64"):
        BCResNet(10, BCResNetConfig(n_mels=64))
    with pytest.raises(ValueError, match="blocks"):
        BCResNet(10, BCResNetConfig(blocks=(2, 2, 4)))
    with pytest.raises(ValueError, match="width"):
        BCResNet(10, BCResNetConfig(width=0.05))
    with pytest.raises(ValueError, match=r"expects \(B, 1, 40, T\)"):
        BCResNet(10)(torch.randn(2, 1, 64, 101))


def test_models_by_name_match_their_classes():
    for name, make in (("spectrogram-cnn", lambda: SpectrogramCNN(12, dropout=0.3)), ("m5", lambda: M5(12)),
                       ("bcresnet", lambda: BCResNet(12, BCResNetConfig(width=2.0, dropout=0.2)))):
        torch.manual_seed(0)
        kw = {"dropout": 0.3} if name == "spectrogram-cnn" else {"width": 2.0, "dropout": 0.2} if name == "bcresnet" else {}
        a = create_model(name, num_classes=12, **kw)
        torch.manual_seed(0)
        b = make()
        assert type(a) is type(b)
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert create_model("spectrogram-cnn", in_channels=3).in_channels == 3
    with pytest.raises(UserError, match="n_mels=64"):
        create_model("bcresnet", n_mels=64)
    with pytest.raises(UserError, match="in_channels"):
        create_model("bcresnet", in_channels=2)
