"""Attention from the equations against torch: F.scaled_dot_product_attention, nn.MultiheadAttention, masks, PE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.nn.attention import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    window_mask,
)

DT = torch.float64


def _qkv(B=2, H=3, L=4, S=5, E=6, Ev=7, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, n, d, generator=g, dtype=DT) for n, d in ((L, E), (S, E), (S, Ev)))
    if grad:
        q, k, v = (t.requires_grad_() for t in (q, k, v))
    return q, k, v


def _random_bool_mask(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g) > 0.4
    m[..., 0] = True  # keep every row attendable (fully-masked rows are tested separately)
    return m


# ------------------------------------------------------------------------------------------ masks
def test_causal_mask_values():
    m = causal_mask(3, 4)
    assert m.dtype == torch.bool and m.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert bool(m[i, j]) == (j <= i)
    torch.testing.assert_close(causal_mask(5), torch.ones(5, 5, dtype=torch.bool).tril())


def test_padding_mask_values_and_errors():
    m = padding_mask(torch.tensor([3, 1, 0]), max_len=4)
    expected = torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, expected)
    assert padding_mask([2, 5]).shape == (2, 5)
    with pytest.raises(ValueError, match="max_len"):
        padding_mask([3, 6], max_len=5)
    with pytest.raises(ValueError, match=">= 0"):
        padding_mask([3, -1])
    with pytest.raises(ValueError, match="integers"):
        padding_mask(torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [0, 1, 3])
def test_window_mask_semantics(window, causal):
    L = 7
    m = window_mask(L, window, causal=causal)
    for i in range(L):
        for j in range(L):
            want = (0 <= i - j <= window) if causal else abs(i - j) <= window
            assert bool(m[i, j]) == want, (i, j)
    assert m.diagonal().all()  # every position sees itself: no fully-masked rows


def test_window_mask_limits_receptive_field():
    """With a window-w mask, output i is unaffected by changing inputs farther than w away."""
    torch.manual_seed(0)
    L, w = 8, 2
    x = torch.randn(1, L, 4, dtype=DT)
    m = window_mask(L, w)
    out, _ = scaled_dot_product_attention(x, x, x, attn_mask=m)
    x2 = x.clone()
    x2[:, 7] += 5.0  # position 7 is visible only from positions 5..7
    out2, _ = scaled_dot_product_attention(x2, x2, x2, attn_mask=m)
    torch.testing.assert_close(out[:, :5], out2[:, :5])
    assert not torch.allclose(out[:, 5:], out2[:, 5:])
    with pytest.raises(ValueError, match="window"):
        window_mask(4, -1)


# ---------------------------------------------------------------------------------- the attention op
def test_sdpa_hand_computed_case():
    q = torch.tensor([[1.0, 0.0]], dtype=DT)  # (L=1, E=2)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=DT)
    v = torch.tensor([[10.0], [20.0]], dtype=DT)
    out, w = scaled_dot_product_attention(q, k, v)
    e = math.exp(1 / math.sqrt(2))  # scores 1/sqrt(2) and 0
    want_w = torch.tensor([[e / (e + 1), 1 / (e + 1)]], dtype=DT)
    torch.testing.assert_close(w, want_w)
    torch.testing.assert_close(out, want_w @ v)


def _masks():
    L, S = 4, 5
    bool_m = _random_bool_mask((L, S))
    g = torch.Generator().manual_seed(3)
    float_m = torch.randn(L, S, generator=g, dtype=DT)
    float_m[1, 2] = float("-inf")
    per_batch = _random_bool_mask((2, 1, L, S), seed=4)  # broadcast over heads
    return {"none": None, "bool": bool_m, "float": float_m, "bool_per_batch": per_batch}


@pytest.mark.parametrize("mask_name", ["none", "bool", "float", "bool_per_batch"])
@pytest.mark.parametrize("is_causal", [False, True])
def test_sdpa_matches_torch(mask_name, is_causal):
    mask = _masks()[mask_name]
    q, k, v = _qkv(grad=True)
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    if is_causal and mask is not None:  # torch refuses both at once: give it the combined mask
        ref_mask = (mask & causal_mask(4, 5)) if mask.dtype == torch.bool else mask.masked_fill(
            ~causal_mask(4, 5), float("-inf"))
        ref = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=ref_mask)
    else:
        ref = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=mask, is_causal=is_causal)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4, dtype=DT))  # rows of weights sum to 1
    if is_causal:
        assert (w[..., causal_mask(4, 5).logical_not()] == 0).all()
    go = torch.randn_like(out)
    (out * go).sum().backward()
    (ref * go).sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, b.grad)
    fused, none_w = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, use_fused=True)
    assert none_w is None
    torch.testing.assert_close(fused, out)


def test_sdpa_fully_masked_rows_give_zeros_like_torch():
    """torch 2.13's F.scaled_dot_product_attention (CPU) returns 0 for rows with no allowed key; so do we."""
    q, k, v = _qkv(grad=True)
    mask = _random_bool_mask((4, 5))
    mask[2] = False  # query 2 may attend nothing
    fmask = torch.zeros(4, 5, dtype=DT).masked_fill(~mask, float("-inf"))
    for m in (mask, fmask):
        out, w = scaled_dot_product_attention(q, k, v, attn_mask=m)
        assert torch.isfinite(out).all()
        assert (out[..., 2, :] == 0).all() and (w[..., 2, :] == 0).all()
        q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
        ref = F.scaled_dot_product_attention(q2, k2, v2, attn_mask=m)
        torch.testing.assert_close(out, ref)  # torch agrees, so compare the whole output and the gradients
        out.sum().backward()
        ref.sum().backward()
        for a, b in ((q, q2), (k, k2), (v, v2)):
            torch.testing.assert_close(a.grad, b.grad)
            assert torch.isfinite(a.grad).all()
        assert (q.grad[..., 2, :] == 0).all()
        for t in (q, k, v):
            t.grad = None


def test_sdpa_causal_output_at_t_ignores_the_future():
    q, k, v = _qkv(L=6, S=6)
    out, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
    t = 3
    k2, v2, q2 = k.clone(), v.clone(), q.clone()
    k2[..., t + 1:, :] += torch.randn_like(k2[..., t + 1:, :])
    v2[..., t + 1:, :] += 3.0
    q2[..., t + 1:, :] -= 1.0
    out2, _ = scaled_dot_product_attention(q2, k2, v2, is_causal=True)
    torch.testing.assert_close(out[..., : t + 1, :], out2[..., : t + 1, :])
    assert not torch.allclose(out[..., t + 1:, :], out2[..., t + 1:, :])


def test_sdpa_dropout_only_in_training():
    q, k, v = _qkv()
    base, _ = scaled_dot_product_attention(q, k, v)
    off, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=False)
    torch.testing.assert_close(off, base)
    torch.manual_seed(0)
    on, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, training=True)
    assert not torch.allclose(on, base)
    assert (w == 0).any()  # dropped weights
    kept = w[w != 0]
    _, w0 = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(kept, (w0 * 2)[w != 0])  # survivors scaled by 1 / (1 - p)


def test_sdpa_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="feature size E"):
        scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="same length S"):
        scaled_dot_product_attention(q, k, v[..., :2, :])
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


# ------------------------------------------------------------------------------ multi-head attention
def _mha_pair(E=12, H=3, kdim=None, vdim=None, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim, batch_first=True, dtype=DT)
    with torch.no_grad():  # torch initialises biases to 0: make them non-trivial
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = MultiHeadAttention(E, H, bias=bias, kdim=kdim, vdim=vdim).to(DT).load_from_torch(ref)
    return ours, ref


def _compare_mha(ours, ref, q, k, v, our_kw, ref_kw, check_grads=True):
    ins = [t.clone().requires_grad_() for t in (q, k, v)]
    ins2 = [t.clone().requires_grad_() for t in (q, k, v)]
    out, w = ours(*ins, need_weights=True, **our_kw)
    rout, rw = ref(*ins2, need_weights=True, **ref_kw)
    torch.testing.assert_close(out, rout)
    torch.testing.assert_close(w, rw)
    if check_grads:
        g = torch.randn_like(out)
        ((out * g).sum() + w.sum() * 0.3).backward()
        ((rout * g).sum() + rw.sum() * 0.3).backward()
        for a, b in zip(ins, ins2):
            torch.testing.assert_close(a.grad, b.grad)
        E = ours.d_model
        if ref.in_proj_weight is not None:
            wq, wk, wv = ref.in_proj_weight.grad.split(E)
        else:
            wq, wk, wv = ref.q_proj_weight.grad, ref.k_proj_weight.grad, ref.v_proj_weight.grad
        torch.testing.assert_close(ours.q_proj.weight.grad, wq)
        torch.testing.assert_close(ours.k_proj.weight.grad, wk)
        torch.testing.assert_close(ours.v_proj.weight.grad, wv)
        torch.testing.assert_close(ours.out_proj.weight.grad, ref.out_proj.weight.grad)
        if ref.in_proj_bias is not None:
            torch.testing.assert_close(torch.cat([ours.q_proj.bias.grad, ours.k_proj.bias.grad,
                                                  ours.v_proj.bias.grad]), ref.in_proj_bias.grad)
    return out


@pytest.mark.parametrize("average", [True, False])
def test_mha_self_attention_matches_torch(average):
    ours, ref = _mha_pair()
    x = torch.randn(2, 5, 12, dtype=DT)
    _compare_mha(ours, ref, x, x, x, {"average_attn_weights": average}, {"average_attn_weights": average})


@pytest.mark.parametrize("kdim,vdim", [(None, None), (8, 10)])
def test_mha_cross_attention_with_padding_matches_torch(kdim, vdim):
    ours, ref = _mha_pair(kdim=kdim, vdim=vdim, seed=1)
    q = torch.randn(3, 4, 12, dtype=DT)
    mem_k = torch.randn(3, 6, kdim or 12, dtype=DT)
    mem_v = torch.randn(3, 6, vdim or 12, dtype=DT)
    kpm = padding_mask([6, 3, 1])  # True = pad, same convention as torch
    _compare_mha(ours, ref, q, mem_k, mem_v, {"key_padding_mask": kpm}, {"key_padding_mask": kpm})


def test_mha_attn_mask_conventions_against_torch():
    """Our bool attn_mask is True = allowed; nn.MultiheadAttention's is True = blocked: pass ~mask to torch."""
    ours, ref = _mha_pair(seed=2)
    x = torch.randn(2, 5, 12, dtype=DT)
    allowed = _random_bool_mask((5, 5), seed=7)
    _compare_mha(ours, ref, x, x, x, {"attn_mask": allowed}, {"attn_mask": ~allowed})
    # a causal mask plus padding: ours builds it from is_causal, torch gets the inverted boolean mask
    kpm = padding_mask([5, 4])
    _compare_mha(ours, ref, x, x, x, {"is_causal": True, "key_padding_mask": kpm},
                 {"attn_mask": ~causal_mask(5), "key_padding_mask": kpm})
    # float masks are additive in both
    fm = torch.randn(5, 5, dtype=DT)
    _compare_mha(ours, ref, x, x, x, {"attn_mask": fm}, {"attn_mask": fm})
    # torch's per-head 3-D form (N * H, L, S)
    per_head = _random_bool_mask((2 * 3, 5, 5), seed=8)
    _compare_mha(ours, ref, x, x, x, {"attn_mask": per_head}, {"attn_mask": ~per_head}, check_grads=False)


def test_mha_no_bias_unbatched_and_seq_first():
    ours, ref = _mha_pair(bias=False, seed=3)
    x = torch.randn(5, 12, dtype=DT)
    out, w = ours(x, x, x, need_weights=True)
    rout, rw = ref(x, x, x)
    torch.testing.assert_close(out, rout)
    torch.testing.assert_close(w, rw)
    seq_first = MultiHeadAttention(12, 3, bias=False, batch_first=False).to(DT).load_from_torch(ref)
    xb = torch.randn(2, 5, 12, dtype=DT)
    out_sf, _ = seq_first(xb.transpose(0, 1), xb.transpose(0, 1), xb.transpose(0, 1))
    torch.testing.assert_close(out_sf.transpose(0, 1), ref(xb, xb, xb)[0])


def test_mha_fused_equals_readable_and_fully_masked_rows_are_zero():
    ours, _ = _mha_pair(seed=4)
    x = torch.randn(2, 5, 12, dtype=DT)
    kpm = padding_mask([5, 0])  # second sequence: every key is padding
    slow, _ = ours(x, x, x, key_padding_mask=kpm, is_causal=True)
    fast, w = ours(x, x, x, key_padding_mask=kpm, is_causal=True, use_fused=True)
    assert w is None
    torch.testing.assert_close(fast, slow)
    # the fused self-attention packs q/k/v into one product: the same gradients reach the three projections
    grads = []
    for use_fused in (False, True):
        ours.zero_grad()
        ours(x, x, x, is_causal=True, use_fused=use_fused)[0].pow(2).sum().backward()
        grads.append([p.grad.clone() for p in ours.parameters()])
    for g_slow, g_fast in zip(*grads):
        torch.testing.assert_close(g_fast, g_slow)
    # no allowed key -> attention output 0 -> the layer returns out_proj's bias (nn.MultiheadAttention gives NaN)
    torch.testing.assert_close(slow[1], ours.out_proj.bias.expand(5, 12))


def test_mha_dropout_off_in_eval():
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3, dropout=0.5).to(DT)
    x = torch.randn(2, 5, 12, dtype=DT)
    mha.train()
    a, b = mha(x, x, x)[0], mha(x, x, x)[0]
    assert not torch.allclose(a, b)
    mha.eval()
    torch.testing.assert_close(mha(x, x, x)[0], mha(x, x, x)[0])
    mha.dropout = 0.0
    ref = mha(x, x, x)[0]
    mha.dropout = 0.5
    torch.testing.assert_close(mha(x, x, x)[0], ref)


def test_mha_errors():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(12, 3)
    x = torch.randn(2, 5, 12)
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(x, x, x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="features"):
        mha(x, x[..., :8], x)
    with pytest.raises(ValueError, match="n_heads"):
        mha(x, x, x, attn_mask=torch.ones(4, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mismatch"):
        mha.load_from_torch(nn.MultiheadAttention(12, 4))


# ---------------------------------------------------------------------------- positional encodings
@pytest.mark.parametrize("d_model", [8, 7])
def test_sinusoidal_pe_matches_formula(d_model):
    pe_mod = SinusoidalPositionalEncoding(d_model, max_len=50).to(DT)
    assert "pe" in dict(pe_mod.named_buffers()) and not list(pe_mod.parameters())
    x = torch.zeros(2, 20, d_model, dtype=DT)
    y = pe_mod(x)
    for pos in (0, 1, 7, 19):
        for dim in range(d_model):
            i = dim // 2
            angle = pos / (10000 ** (2 * i / d_model))
            want = math.sin(angle) if dim % 2 == 0 else math.cos(angle)
            assert abs(float(y[1, pos, dim]) - want) < 1e-6, (pos, dim)
    x = torch.randn(3, 20, d_model, dtype=DT)
    torch.testing.assert_close(pe_mod(x) - x, y[:1].expand(3, -1, -1))  # the same vector added to every example


def test_positional_errors_and_dropout():
    pe = SinusoidalPositionalEncoding(8, max_len=10, dropout=0.5)
    with pytest.raises(ValueError, match="max_len=10"):
        pe(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="expects"):
        pe(torch.zeros(1, 5, 6))
    x = torch.randn(2, 10, 8)
    pe.eval()
    torch.testing.assert_close(pe(x), x + pe.pe[:10])
    pe.train()
    assert not torch.allclose(pe(x), x + pe.pe[:10])
    lpe = LearnedPositionalEmbedding(6, 8)
    with pytest.raises(ValueError, match="max_len=6"):
        lpe(torch.zeros(2, 7, 8))


def test_learned_positional_embedding_adds_a_trainable_row_per_position():
    lpe = LearnedPositionalEmbedding(10, 4).to(DT)
    assert [n for n, _ in lpe.named_parameters()] == ["weight"]
    x = torch.randn(2, 6, 4, dtype=DT)
    y = lpe(x)
    torch.testing.assert_close(y, x + lpe.weight[:6].unsqueeze(0))
    y.sum().backward()
    torch.testing.assert_close(lpe.weight.grad[:6], torch.full((6, 4), 2.0, dtype=DT))  # 2 examples each
    assert (lpe.weight.grad[6:] == 0).all()
