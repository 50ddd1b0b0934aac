"""Conformer pieces: relative-position attention against an O(T^2) loop over (i, j), the convolution module's
causality and padding, and the block's shapes, padding invariance and gradients (float64, seeded, CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.nn.attention import padding_mask
from deepnotes.nn.conformer import (
    ConformerBlock,
    ConformerEncoder,
    ConvolutionModule,
    FeedForwardModule,
    RelativePositionalEncoding,
    RelPositionMultiHeadAttention,
    relative_shift,
)

DT = torch.float64


def _x(N=2, T=6, C=8, seed=0):
    return torch.randn(N, T, C, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _perturb(module, seed=1):
    """Non-trivial weights everywhere (biases start at 0, norms at 1/0, BatchNorm's running stats at 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return module


# ---------------------------------------------------------------------------------- relative positions
def test_relative_positional_encoding_rows_are_distances():
    d_model, T = 6, 4
    r = RelativePositionalEncoding(d_model)(T, dtype=DT)
    assert r.shape == (2 * T - 1, d_model)
    for m in range(2 * T - 1):
        dist = T - 1 - m
        for c in range(0, d_model, 2):
            w = 1.0 / 10000 ** (c / d_model)
            assert r[m, c].item() == pytest.approx(math.sin(dist * w), abs=1e-12)
            assert r[m, c + 1].item() == pytest.approx(math.cos(dist * w), abs=1e-12)
    torch.testing.assert_close(r[T - 1], torch.tensor([0.0, 1.0] * 3, dtype=DT))  # distance 0
    with pytest.raises(ValueError, match="T must be >= 1"):
        RelativePositionalEncoding(4)(0)


def test_relative_shift_picks_the_right_distance():
    T = 5
    x = torch.randn(2, 3, T, 2 * T - 1, dtype=DT)
    out = relative_shift(x)
    assert out.shape == (2, 3, T, T)
    for i in range(T):
        for j in range(T):
            torch.testing.assert_close(out[..., i, j], x[..., i, T - 1 - i + j])
    with pytest.raises(ValueError, match="2T-1"):
        relative_shift(torch.zeros(3, 4))


def _sinusoid(dist: int, c: int, d_model: int) -> float:
    """Component c of the encoding of distance ``dist``: sin for even c, cos for odd, frequency 1/10000^(2⌊c/2⌋/d)."""
    angle = dist / 10000 ** ((c - c % 2) / d_model)
    return math.sin(angle) if c % 2 == 0 else math.cos(angle)


def _hand_attention(attn: RelPositionMultiHeadAttention, x, key_padding_mask=None, causal=False):
    """The scores pair by pair from their distance i - j: the equation, with no shift and no batching tricks."""
    N, T, d_model = x.shape
    H, D = attn.n_heads, attn.head_dim
    q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)  # (N, T, d_model)
    u, vb = attn.pos_bias_u, attn.pos_bias_v  # (H, D)
    out = torch.zeros(N, T, d_model, dtype=x.dtype)
    for n in range(N):
        for h in range(H):
            sl = slice(h * D, (h + 1) * D)
            for i in range(T):
                scores = []
                for j in range(T):
                    if (key_padding_mask is not None and key_padding_mask[n, j]) or (causal and j > i):
                        scores.append(torch.tensor(float("-inf"), dtype=x.dtype))
                        continue
                    dist = i - j
                    r = torch.tensor([_sinusoid(dist, c, d_model) for c in range(d_model)], dtype=x.dtype)
                    wr = (attn.pos_proj.weight @ r)[sl]  # W_pos r_{i-j}, this head
                    scores.append(((q[n, i, sl] + u[h]) @ k[n, j, sl] + (q[n, i, sl] + vb[h]) @ wr) / math.sqrt(D))
                w = torch.softmax(torch.stack(scores), dim=0)
                out[n, i, sl] = sum(w[j] * v[n, j, sl] for j in range(T))
    return attn.out_proj(out)


@pytest.mark.parametrize("use_fused", [False, True])
def test_rel_attention_matches_the_hand_loop(use_fused):
    torch.manual_seed(0)
    d_model, H, T = 6, 2, 4
    attn = _perturb(RelPositionMultiHeadAttention(d_model, H).to(DT)).eval()
    x = _x(2, T, d_model)
    kpm = padding_mask([4, 3], 4)
    pos = RelativePositionalEncoding(d_model)(T, dtype=DT)
    with torch.no_grad():
        for causal in (False, True):
            ours, _ = attn(x, pos, key_padding_mask=kpm, is_causal=causal, use_fused=use_fused)
            torch.testing.assert_close(ours, _hand_attention(attn, x, kpm, causal))


def test_rel_attention_weights_and_errors():
    attn = RelPositionMultiHeadAttention(8, 2).to(DT)
    x = _x(2, 5, 8)
    pos = RelativePositionalEncoding(8)(5, dtype=DT)
    _, w = attn(x, pos, key_padding_mask=padding_mask([5, 2]), need_weights=True)
    assert w.shape == (2, 2, 5, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5, dtype=DT))
    assert torch.all(w[1, :, :, 2:] == 0)  # padded keys get no weight
    with pytest.raises(ValueError, match="pos_emb"):
        attn(x, pos[:-1])
    with pytest.raises(ValueError, match="key_padding_mask"):
        attn(x, pos, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of n_heads"):
        RelPositionMultiHeadAttention(10, 3)


def test_rel_attention_fully_padded_row_is_zero_not_nan():
    attn = RelPositionMultiHeadAttention(4, 2).to(DT)
    x = _x(1, 3, 4)
    out, _ = attn(x, RelativePositionalEncoding(4)(3, dtype=DT), key_padding_mask=padding_mask([0], 3))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, attn.out_proj.bias.expand(1, 3, 4))


# --------------------------------------------------------------------------------------- convolution
def test_convolution_module_causal_output_ignores_the_future():
    conv = _perturb(ConvolutionModule(4, kernel_size=4, dropout=0.0, causal=True).to(DT)).eval()
    x = _x(1, 10, 4)
    t = 5
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(1, 10 - t - 1, 4, dtype=DT)
    y, y2 = conv(x), conv(x2)
    torch.testing.assert_close(y[:, : t + 1], y2[:, : t + 1])
    assert not torch.allclose(y[:, t + 1:], y2[:, t + 1:])  # the change did reach later frames


def test_convolution_module_non_causal_sees_both_sides_and_keeps_length():
    conv = _perturb(ConvolutionModule(4, kernel_size=5, dropout=0.0).to(DT)).eval()
    x = _x(2, 7, 4)
    y = conv(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 4] = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=DT)  # not a constant shift: LayerNorm would remove it
    changed = (conv(x2) - y).abs().sum(dim=(0, 2)) > 1e-9  # (T,) which outputs moved
    assert changed.tolist() == [False, False, True, True, True, True, True]  # frames 2..6 = 4 -/+ 2


def test_convolution_module_padding_does_not_leak():
    conv = _perturb(ConvolutionModule(4, kernel_size=5, dropout=0.0).to(DT)).eval()
    x = _x(1, 6, 4)
    padded = torch.cat([x, 100 * torch.randn(1, 3, 4, dtype=DT)], dim=1)  # loud garbage in the padding
    y_pad = conv(padded, key_padding_mask=padding_mask([6], 9))
    torch.testing.assert_close(y_pad[:, :6], conv(x))
    assert not torch.allclose(conv(padded)[:, :6], conv(x))  # without the mask it would leak


@pytest.mark.parametrize("k, causal, match", [(4, False, "odd kernel_size"), (0, False, ">= 1"), (0, True, ">= 1")])
def test_convolution_module_invalid_kernel_sizes(k, causal, match):
    with pytest.raises(ValueError, match=match):
        ConvolutionModule(8, kernel_size=k, causal=causal)


def test_feed_forward_module_equation():
    ff = _perturb(FeedForwardModule(4, ff_mult=2, dropout=0.0).to(DT))
    x = _x(2, 3, 4)
    h = torch.nn.functional.layer_norm(x, (4,), ff.norm.weight, ff.norm.bias, 1e-5)
    h = ff.linear1(h)
    expected = ff.linear2(h * torch.sigmoid(h))
    torch.testing.assert_close(ff(x), expected)
    assert ff.linear1.out_features == 8


# -------------------------------------------------------------------------------------------- block
def test_block_shapes_and_residual_structure():
    block = _perturb(ConformerBlock(8, 2, ff_mult=2, kernel_size=3, dropout=0.0).to(DT)).eval()
    x = _x(3, 7, 8)
    y = block(x)
    assert y.shape == (3, 7, 8)
    # eq. 1 written out by hand from the sub-modules
    h = x + 0.5 * block.ff1(x)
    pos = RelativePositionalEncoding(8)(7, dtype=DT)
    h = h + block.self_attn(block.norm_attn(h), pos)[0]
    h = h + block.conv(h)
    h = h + 0.5 * block.ff2(h)
    torch.testing.assert_close(y, block.norm_out(h))


@pytest.mark.parametrize("causal", [False, True])
def test_block_padding_invariance(causal):
    torch.manual_seed(0)
    block = _perturb(ConformerBlock(8, 2, ff_mult=2, kernel_size=3, dropout=0.1, causal=causal).to(DT)).eval()
    a, b = _x(1, 5, 8, seed=1), _x(1, 8, 8, seed=2)
    batch = torch.cat([torch.cat([a, 50 * torch.ones(1, 3, 8, dtype=DT)], dim=1), b])  # a padded with garbage
    y = block(batch, key_padding_mask=padding_mask([5, 8]))
    torch.testing.assert_close(y[0, :5], block(a)[0])
    torch.testing.assert_close(y[1], block(b)[0])


def test_causal_block_ignores_the_future():
    block = _perturb(ConformerBlock(8, 2, ff_mult=2, kernel_size=4, dropout=0.0, causal=True).to(DT)).eval()
    x = _x(1, 9, 8)
    x2 = x.clone()
    x2[:, 6:] = -x2[:, 6:]
    torch.testing.assert_close(block(x)[:, :6], block(x2)[:, :6])
    assert not torch.allclose(block(x)[:, 6:], block(x2)[:, 6:])


def test_block_gradients_reach_every_parameter_and_the_input():
    block = ConformerBlock(8, 2, ff_mult=2, kernel_size=3, dropout=0.1).to(DT).train()
    x = _x(2, 6, 8).requires_grad_()
    block(x, key_padding_mask=padding_mask([6, 4])).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------ encoder
def test_encoder_stacks_blocks_and_fused_path_agrees():
    enc = _perturb(ConformerEncoder(2, 8, 2, ff_mult=2, kernel_size=3, dropout=0.0).to(DT)).eval()
    assert len(enc.layers) == 2
    x, kpm = _x(2, 6, 8), padding_mask([6, 3])
    y = enc(x, key_padding_mask=kpm)
    h = x
    for layer in enc.layers:
        h = layer(h, key_padding_mask=kpm)
    torch.testing.assert_close(y, h)
    for layer in enc.layers:
        layer.use_fused = True
    torch.testing.assert_close(enc(x, key_padding_mask=kpm)[0], y[0])
    torch.testing.assert_close(enc(x, key_padding_mask=kpm)[1, :3], y[1, :3])
    with pytest.raises(ValueError, match="num_layers"):
        ConformerEncoder(0, 8, 2)
    with pytest.raises(ValueError, match=r"\(N, T, 8\)"):
        enc(torch.zeros(2, 6, 4, dtype=DT))


def test_conv_subsampling_quarters_the_frames_and_their_mask():
    from deepnotes.nn.conformer import ConvSubsampling, subsample_mask

    sub = ConvSubsampling(40, 32, channels=8)
    x = torch.randn(2, 200, 40)
    mask = torch.arange(200)[None, :] >= torch.tensor([200, 120])[:, None]
    h, m = sub(x, mask)
    assert h.shape == (2, 49, 32) and m.shape == (2, 49)  # ((200 - 1) // 2 - 1) // 2
    # output frame t reads input frames 4t .. 4t + 6: padding as soon as one of them is
    expected = torch.tensor([[4 * t + 6 >= n for t in range(49)] for n in (200, 120)])
    assert torch.equal(m, expected)
    assert torch.equal(subsample_mask(torch.tensor([[False] * 5 + [True] * 2])), torch.tensor([[False, False, True]]))
    # frames beyond the mask do not reach the unpadded outputs
    x2 = x.clone()
    x2[1, 120:] = 100.0
    h2, _ = sub(x2, mask)
    assert torch.allclose(h2[1][~m[1]], h[1][~m[1]]) and not torch.allclose(h2[1][m[1]], h[1][m[1]])
    with pytest.raises(ValueError, match="T >= 7"):
        sub(torch.randn(1, 6, 40))
