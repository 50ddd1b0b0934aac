"""Transformer layers and the encoder-decoder against torch.nn twins with mapped weights (float64, dropout 0).

torch's boolean masks are True = blocked, ours True = allowed: the tests pass ``~mask`` to torch.
Both are run in training mode with dropout=0 so torch takes its plain Python path (its eval fast path
and nested tensors would zero padded positions instead of computing them).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.nn.attention import causal_mask, padding_mask
from deepnotes.nn.normalization import LayerNorm
from deepnotes.nn.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    copy_weights_from_torch,
)

DT = torch.float64
D, H, FF = 12, 3, 20
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")

CONFIGS = [(nf, act) for nf in (False, True) for act in ("relu", "gelu")]


def _perturb(module: nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (torch initialises biases to 0 and LayerNorm to 1/0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _grads_match(ours: nn.Module, ref: nn.Module) -> None:
    """Compare every parameter gradient; walks torch's names, splitting packed in_proj weights into q/k/v."""
    our_params = dict(ours.named_parameters())
    n_checked = 0
    for name, p in ref.named_parameters():
        mapped = (name.replace("multihead_attn", "cross_attn").replace("linear1", "ff.linear1")
                  .replace("linear2", "ff.linear2"))
        if mapped.endswith("in_proj_weight") or mapped.endswith("in_proj_bias"):
            prefix, kind = mapped.rsplit(".", 1)
            kind = kind.replace("in_proj_", "")
            ours_cat = torch.cat([our_params[f"{prefix}.{x}_proj.{kind}"].grad for x in "qkv"])
            torch.testing.assert_close(ours_cat, p.grad, msg=name)
        else:
            torch.testing.assert_close(our_params[mapped].grad, p.grad, msg=name)
        n_checked += 1
    assert n_checked == len(list(ref.parameters())) > 0


def _run_both(ours, ref, our_args, ref_args, our_kw, ref_kw):
    a_in = [t.clone().requires_grad_() for t in our_args]
    b_in = [t.clone().requires_grad_() for t in ref_args]
    out, rout = ours(*a_in, **our_kw), ref(*b_in, **ref_kw)
    torch.testing.assert_close(out, rout)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (rout * g).sum().backward()
    for a, b in zip(a_in, b_in):
        torch.testing.assert_close(a.grad, b.grad)
    _grads_match(ours, ref)
    return out


@pytest.mark.parametrize("norm_first,activation", CONFIGS)
def test_encoder_layer_matches_torch(norm_first, activation):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=FF, dropout=0.0, activation=activation, norm_first=norm_first)
    ref = nn.TransformerEncoderLayer(D, H, batch_first=True, dtype=DT, **kw)
    _perturb(ref, 1)
    ours = copy_weights_from_torch(TransformerEncoderLayer(D, H, **kw).to(DT), ref)
    x = torch.randn(3, 5, D, dtype=DT)
    kpm = padding_mask([5, 3, 2])
    _run_both(ours, ref, [x], [x], {"src_key_padding_mask": kpm}, {"src_key_padding_mask": kpm})
    ours.zero_grad(), ref.zero_grad()
    allowed = causal_mask(5)
    _run_both(ours, ref, [x], [x], {"is_causal": True, "src_key_padding_mask": kpm},
              {"src_mask": ~allowed, "src_key_padding_mask": kpm})


@pytest.mark.parametrize("norm_first,activation", CONFIGS)
def test_decoder_layer_matches_torch(norm_first, activation):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=FF, dropout=0.0, activation=activation, norm_first=norm_first)
    ref = nn.TransformerDecoderLayer(D, H, batch_first=True, dtype=DT, **kw)
    _perturb(ref, 2)
    ours = copy_weights_from_torch(TransformerDecoderLayer(D, H, **kw).to(DT), ref)
    tgt, mem = torch.randn(2, 4, D, dtype=DT), torch.randn(2, 6, D, dtype=DT)
    tgt_kpm, mem_kpm = padding_mask([4, 3]), padding_mask([6, 2])
    mem_allowed = torch.ones(4, 6, dtype=torch.bool)
    mem_allowed[0, 0] = False
    _run_both(ours, ref, [tgt, mem], [tgt, mem],
              {"tgt_is_causal": True, "tgt_key_padding_mask": tgt_kpm, "memory_key_padding_mask": mem_kpm,
               "memory_mask": mem_allowed},
              {"tgt_mask": ~causal_mask(4), "tgt_key_padding_mask": tgt_kpm, "memory_key_padding_mask": mem_kpm,
               "memory_mask": ~mem_allowed})


@pytest.mark.parametrize("norm_first,activation", CONFIGS)
def test_transformer_matches_torch(norm_first, activation):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=FF, dropout=0.0, activation=activation, norm_first=norm_first)
    ref = nn.Transformer(D, H, num_encoder_layers=2, num_decoder_layers=2, batch_first=True, dtype=DT, **kw)
    _perturb(ref, 3)
    ours = copy_weights_from_torch(Transformer(D, H, 2, 2, **kw).to(DT), ref)
    src, tgt = torch.randn(2, 6, D, dtype=DT), torch.randn(2, 4, D, dtype=DT)
    src_kpm, tgt_kpm = padding_mask([6, 4]), padding_mask([4, 2])
    float_tgt_mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=DT)  # additive in both
    tgt_kpm = torch.zeros(2, 4, dtype=DT).masked_fill(tgt_kpm, float("-inf"))  # float, as torch wants with a float mask
    _run_both(ours, ref, [src, tgt], [src, tgt],
              {"tgt_mask": float_tgt_mask, "src_key_padding_mask": src_kpm, "tgt_key_padding_mask": tgt_kpm,
               "memory_key_padding_mask": src_kpm},
              {"tgt_mask": float_tgt_mask, "src_key_padding_mask": src_kpm, "tgt_key_padding_mask": tgt_kpm,
               "memory_key_padding_mask": src_kpm})
    # tgt_is_causal builds the same mask
    with torch.no_grad():
        a = ours(src, tgt, tgt_is_causal=True, src_key_padding_mask=src_kpm, memory_key_padding_mask=src_kpm)
        b = ref(src, tgt, tgt_mask=float_tgt_mask, src_key_padding_mask=src_kpm, memory_key_padding_mask=src_kpm)
    torch.testing.assert_close(a, b)


def test_encoder_and_decoder_stacks_match_torch():
    torch.manual_seed(0)
    kw = dict(dim_feedforward=FF, dropout=0.0)
    ref_enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, batch_first=True, dtype=DT, **kw), 2,
                                    norm=nn.LayerNorm(D, dtype=DT), enable_nested_tensor=False)
    ref_dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, H, batch_first=True, dtype=DT, **kw), 3)
    _perturb(ref_enc, 4), _perturb(ref_dec, 5)
    enc = TransformerEncoder(TransformerEncoderLayer(D, H, **kw), 2, norm=LayerNorm(D))
    dec = TransformerDecoder(lambda: TransformerDecoderLayer(D, H, **kw), 3)
    enc, dec = enc.to(DT), dec.to(DT)
    copy_weights_from_torch(enc, ref_enc), copy_weights_from_torch(dec, ref_dec)
    src, tgt = torch.randn(2, 5, D, dtype=DT), torch.randn(2, 3, D, dtype=DT)
    mem = _run_both(enc, ref_enc, [src], [src], {}, {})
    _run_both(dec, ref_dec, [tgt, mem.detach()], [tgt, mem.detach()], {"tgt_is_causal": True},
              {"tgt_mask": ~causal_mask(3)})


def test_stack_copies_layer_or_calls_factory():
    layer = TransformerEncoderLayer(D, H, dim_feedforward=FF)
    enc = TransformerEncoder(layer, 3)
    w = [lay.ff.linear1.weight for lay in enc.layers]
    assert all(torch.equal(w[0], x) for x in w) and w[0] is not w[1]  # deep copies, same start
    dec = TransformerDecoder(lambda: TransformerDecoderLayer(D, H, dim_feedforward=FF), 2)
    assert not torch.equal(dec.layers[0].ff.linear1.weight, dec.layers[1].ff.linear1.weight)
    with pytest.raises(ValueError, match="num_layers"):
        TransformerEncoder(layer, 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_is_causal(norm_first):
    """Output at position t depends on tgt[:t+1] only (and on all of memory)."""
    torch.manual_seed(0)
    model = Transformer(D, H, 1, 2, dim_feedforward=FF, dropout=0.0, norm_first=norm_first).to(DT)
    src, tgt = torch.randn(2, 5, D, dtype=DT), torch.randn(2, 6, D, dtype=DT)
    out = model(src, tgt, tgt_is_causal=True)
    t = 2
    tgt2 = tgt.clone()
    tgt2[:, t + 1:] = torch.randn(2, 6 - t - 1, D, dtype=DT)
    out2 = model(src, tgt2, tgt_is_causal=True)
    torch.testing.assert_close(out[:, : t + 1], out2[:, : t + 1])
    assert not torch.allclose(out[:, t + 1:], out2[:, t + 1:])
    nc = model(src, tgt2)  # without the mask the past does see the future
    assert not torch.allclose(nc[:, : t + 1], out2[:, : t + 1])


def test_fused_path_equals_readable_path():
    torch.manual_seed(0)
    model = Transformer(D, H, 2, 2, dim_feedforward=FF, dropout=0.0).to(DT)
    fused = Transformer(D, H, 2, 2, dim_feedforward=FF, dropout=0.0, use_fused=True).to(DT)
    fused.load_state_dict(model.state_dict())
    src, tgt = torch.randn(2, 5, D, dtype=DT), torch.randn(2, 4, D, dtype=DT)
    kpm = padding_mask([5, 3])
    kw = dict(tgt_is_causal=True, src_key_padding_mask=kpm, memory_key_padding_mask=kpm)
    torch.testing.assert_close(fused(src, tgt, **kw), model(src, tgt, **kw))


def test_use_fused_reaches_the_layer_norms_and_bias_false_drops_every_bias():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(D, H, dim_feedforward=FF, dropout=0.0, norm_first=True, bias=False).to(DT)
    assert not any(name.endswith("bias") for name, _ in layer.named_parameters())
    assert not layer.norm1.use_fused
    x = torch.randn(2, 5, D, dtype=DT)
    readable = layer(x, is_causal=True)
    layer.use_fused = True
    assert layer.norm1.use_fused and layer.norm2.use_fused
    torch.testing.assert_close(layer(x, is_causal=True), readable)
    model = Transformer(D, H, 1, 1, dim_feedforward=FF, use_fused=True)
    assert all(m.use_fused for m in model.modules() if isinstance(m, LayerNorm))


def test_fused_attention_under_cpu_bf16_autocast_stays_close_to_float32(monkeypatch):
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, norm_first=True, use_fused=True)
    x = torch.randn(2, 9, 32, requires_grad=True)
    ref = layer(x, is_causal=True)
    seen, sdpa = [], torch.nn.functional.scaled_dot_product_attention

    def spy(q, *args, **kwargs):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return sdpa(q, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x, is_causal=True)
    assert seen == [(torch.float32, False)]  # the attention core ran in float32, outside autocast
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    out.float().sum().backward()  # the float32 attention core differentiates under autocast
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_dropout_only_in_training():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(D, H, dim_feedforward=FF, dropout=0.3).to(DT)
    x = torch.randn(2, 5, D, dtype=DT)
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_errors():
    with pytest.raises(ValueError, match="activation"):
        TransformerEncoderLayer(D, H, activation="tanh")
    with pytest.raises(ValueError, match="divisible"):
        TransformerDecoderLayer(10, 3)
    with pytest.raises(ValueError, match="norm_first mismatch"):
        copy_weights_from_torch(TransformerEncoderLayer(D, H, dim_feedforward=FF),
                                nn.TransformerEncoderLayer(D, H, dim_feedforward=FF, norm_first=True))
    with pytest.raises(ValueError, match="layer count"):
        copy_weights_from_torch(Transformer(D, H, 1, 1, FF), nn.Transformer(D, H, 2, 1, FF))
    with pytest.raises(ValueError, match="no weight mapping"):
        copy_weights_from_torch(Transformer(D, H, 1, 1, FF), nn.TransformerEncoderLayer(D, H))
    model = Transformer(D, H, 1, 1, FF)
    with pytest.raises(ValueError, match="same N"):
        model(torch.randn(2, 3, D), torch.randn(3, 3, D))
