"""RNNSeq2Seq and TransformerSeq2Seq: shapes, references (torch.nn), causality, padding, step paths, overfitting."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load, save
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepnotes.data.translation import TokenBatches, protect_spans
from deepnotes.errors import UserError
from deepnotes.models.registry import create_model
from deepnotes.models.seq2seq import (
    IncrementalStepFn,
    RNNSeq2Seq,
    RNNSeq2SeqConfig,
    Seq2SeqTask,
    TransformerSeq2Seq,
    TransformerSeq2SeqConfig,
    Translator,
    copy_rates,
    translate,
)
from deepnotes.nn.decoding import ScheduledSampler
from deepnotes.nn.transformer import copy_weights_from_torch
from deepnotes.train import Step, Trainer, TrainConfig
from deepnotes.train.checkpoint import list_checkpoints

V, PAD, BOS, EOS = 23, 0, 2, 3


def _rnn(vocab: int = V, **kw) -> RNNSeq2Seq:
    cfg = dict(embedding_dim=12, hidden_size=10, num_layers=2, dropout=0.0)
    return RNNSeq2Seq(RNNSeq2SeqConfig(vocab, **{**cfg, **kw}))


def _transformer(vocab: int = V, **kw) -> TransformerSeq2Seq:
    cfg = dict(d_model=16, n_heads=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=24, dropout=0.0)
    return TransformerSeq2Seq(TransformerSeq2SeqConfig(vocab, **{**cfg, **kw}))


MAKERS = {
    "rnn": _rnn,
    "rnn-readable": lambda **kw: _rnn(fused=False, **kw),
    "transformer-prenorm": _transformer,
    "transformer-postnorm": lambda **kw: _transformer(norm_first=False, **kw),
    "rnn-copy": lambda **kw: _rnn(copy=True, **kw),
    "transformer-copy": lambda **kw: _transformer(copy=True, **kw),
    "rnn-continuation": lambda **kw: _rnn(copy=True, copy_continuation=True, **kw),
    "transformer-continuation": lambda **kw: _transformer(copy=True, copy_continuation=True, **kw),
    "transformer-read": lambda **kw: _transformer(copy=True, selective_read=True, **kw),
}


def _model(name: str, **kw):
    torch.manual_seed(0)
    model = MAKERS[name](**kw).double().eval()
    if name.endswith("-continuation"):  # the term starts at 0; give it weights so the shared tests exercise it
        with torch.no_grad():
            model.continuation.proj.weight.normal_(0.0, 1.0)
            model.continuation.proj.bias.fill_(2.0)
    if name.endswith("-read"):  # W_ζ starts at 0; give it weights so the shared tests exercise it
        with torch.no_grad():
            model.read_proj.weight.normal_(0.0, 0.5)
    return model


def _batch(B=3, S=7, T=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (B, S), generator=g)
    src[1, 4:] = PAD  # a shorter source
    src[2, 2:] = PAD
    tgt = torch.randint(4, V, (B, T), generator=g)
    tgt[:, 0] = BOS
    return src, tgt


@pytest.mark.parametrize("name", list(MAKERS))
def test_shapes_and_finite(name):
    model = _model(name)
    src, tgt = _batch()
    logits = model((src, tgt))
    assert logits.shape == (3, 5, V) and torch.isfinite(logits).all()
    memory = model.encode(src)
    assert memory.padding_mask.equal(src == PAD)
    assert memory.states.shape[:2] == (3, 7)


@pytest.mark.parametrize("name", list(MAKERS))
def test_causal_logits_at_t_ignore_later_target_tokens(name):
    model = _model(name)
    src, tgt = _batch(T=6)
    logits = model((src, tgt))
    for t in range(5):
        changed = tgt.clone()
        changed[:, t + 1:] = torch.randint(4, V, changed[:, t + 1:].shape, generator=torch.Generator().manual_seed(t))
        other = model((src, changed))
        torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1])
        assert not torch.allclose(other[:, t + 1:], logits[:, t + 1:])  # later positions do see them


@pytest.mark.parametrize("name", list(MAKERS))
def test_extra_source_padding_changes_nothing(name):
    model = _model(name)
    src, tgt = _batch()
    padded = torch.cat([src, torch.full((3, 5), PAD)], dim=1)
    torch.testing.assert_close(model((padded, tgt)), model((src, tgt)))
    # and a real token where the padding was does change the output of that row
    changed = src.clone()
    changed[2, 2] = 5
    assert not torch.allclose(model((changed, tgt))[2], model((src, tgt))[2])


@pytest.mark.parametrize("name", list(MAKERS))
def test_step_logits_and_incremental_cache_equal_forward(name):
    model = _model(name)
    src, tgt = _batch(T=6)
    logits = model((src, tgt))
    memory = model.encode(src)
    origin = torch.tensor([2, 0, 1, 0])  # rows route to examples; example 0 twice, as beams do
    tokens = tgt[origin]
    tokens[3, 2:] = torch.tensor([7, 8, 9, 10])  # a second "beam" of example 0 with another prefix
    step = IncrementalStepFn(model, memory)
    for T in range(1, 7):
        exact = model.step_logits(memory, tokens[:, :T], origin)
        torch.testing.assert_close(step(tokens[:, :T], origin), exact)
        torch.testing.assert_close(exact[:3], logits[origin[:3], T - 1])  # == forward's position T-1
    assert (step.steps, step.rebuilt) == (5, 1)
    # beams reordered and one dropped, then extended: served from the cache
    keep = torch.tensor([3, 0, 2])
    ext = torch.cat([tokens[keep], torch.tensor([[4], [5], [6]])], dim=1)
    torch.testing.assert_close(step(ext, origin[keep]), model.step_logits(memory, ext, origin[keep]))
    assert (step.steps, step.rebuilt) == (6, 1)
    # a prefix it has not seen: rebuilt, still exact
    odd = ext.clone()
    odd[0, 3] = 11
    torch.testing.assert_close(step(odd, origin[keep]), model.step_logits(memory, odd, origin[keep]))
    assert step.rebuilt == 2


@pytest.mark.parametrize("name", ["rnn", "transformer-prenorm", "rnn-copy", "transformer-copy", "rnn-continuation",
                                  "transformer-continuation", "transformer-read"])
def test_generate_cached_equals_uncached(name):
    model = _model(name)
    src, _ = _batch()
    for beam in (1, 3):
        a = model.generate(src, BOS, EOS, max_len=8, beam_size=beam, length_penalty=0.6)
        b = model.generate(src, BOS, EOS, max_len=8, beam_size=beam, length_penalty=0.6, cached=False)
        assert a == b and len(a) == 3 and all(EOS not in r and BOS not in r for r in a)


def test_fused_rnn_equals_readable_rnn_with_gradients():
    src, tgt = _batch()
    fused, readable = _model("rnn"), _model("rnn-readable")
    readable.load_state_dict(fused.state_dict())
    a, b = fused((src, tgt)), readable((src, tgt))
    torch.testing.assert_close(a, b)
    w = torch.randn(a.shape, dtype=a.dtype, generator=torch.Generator().manual_seed(3))
    (a * w).sum().backward()
    (b * w).sum().backward()
    for (n, p), q in zip(fused.named_parameters(), readable.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_rnn_matches_torch_gru_and_luong_attention_by_hand():
    model = _model("rnn", tie_output=False)
    src, tgt = _batch()
    E, H, L = 12, 10, 2
    sd = model.state_dict()
    enc = nn.GRU(E, H, L, batch_first=True, bidirectional=True).double()
    enc.load_state_dict({k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")})
    dec = nn.GRU(E, 2 * H, L, batch_first=True).double()
    dec.load_state_dict({k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")})
    emb = sd["src_embed.weight"]
    lengths = (src != PAD).sum(1)
    out, h_n = enc(pack_padded_sequence(emb[src], lengths, batch_first=True, enforce_sorted=False))
    e, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, 2H)
    h0 = torch.stack([torch.cat([h_n[2 * layer], h_n[2 * layer + 1]], -1) for layer in range(L)])  # (L, B, 2H)
    o, _ = dec(emb[tgt], h0)  # (B, T, 2H)
    W_a, W_c = sd["attn_score.weight"], sd["attn_combine.weight"]
    expected = torch.empty(3, 5, V, dtype=torch.float64)
    for b in range(3):
        S_b = int(lengths[b])
        for t in range(5):
            score = torch.stack([(W_a @ o[b, t]) @ e[b, s] for s in range(S_b)])  # o^T W_a^T e_s
            a = torch.softmax(score, 0)
            c = sum(a[s] * e[b, s] for s in range(S_b))
            h_tilde = torch.tanh(W_c @ torch.cat([c, o[b, t]]))
            expected[b, t] = sd["out_proj.weight"] @ h_tilde + sd["out_proj.bias"]
    torch.testing.assert_close(model((src, tgt)), expected)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_matches_torch_transformer_with_scaled_embeddings_and_sinusoids(norm_first):
    model = _model("transformer-prenorm", norm_first=norm_first)
    d = 16
    torch.manual_seed(1)
    ref = nn.Transformer(d, 2, 2, 2, 24, dropout=0.0, batch_first=True, norm_first=norm_first).double()
    copy_weights_from_torch(model.transformer, ref)
    src, tgt = _batch()
    pos = torch.arange(10, dtype=torch.float64)[:, None]
    i2 = torch.arange(0, d, 2, dtype=torch.float64)
    pe = torch.zeros(10, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos / 10000 ** (i2 / d)), torch.cos(pos / 10000 ** (i2 / d))
    E = model.src_embed.weight.detach()
    pad = src == PAD
    y = ref(E[src] * math.sqrt(d) + pe[:7], E[tgt] * math.sqrt(d) + pe[:5], src_key_padding_mask=pad,
            memory_key_padding_mask=pad, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64))
    torch.testing.assert_close(model((src, tgt)), y @ E.T)  # the output projection is the tied embedding


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_shared_and_tied_weights_are_stored_once_and_save_as_safetensors(kind):
    model = _rnn() if kind == "rnn" else _transformer()
    names = [n for n, _ in model.named_parameters()]
    assert "src_embed.weight" in names and not any(n.startswith(("tgt_embed", "out_proj")) for n in names)
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})  # shared tensors would raise
    fresh = _rnn() if kind == "rnn" else _transformer()
    fresh.load_state_dict(load(blob))
    src, tgt = _batch()
    torch.testing.assert_close(fresh.eval()((src, tgt)), model.eval()((src, tgt)))
    # separate vocabularies: two embeddings and a projection of the target vocabulary size
    sep = (_rnn if kind == "rnn" else _transformer)(tgt_vocab_size=31, share_embeddings=False, tie_output=False)
    assert sep((src, tgt)).shape == (3, 5, 31) and sep.tgt_embed.num_embeddings == 31


@pytest.mark.parametrize("name", ["rnn-copy", "transformer-copy"])
def test_copy_outputs_are_the_pointer_generator_mixture(name):
    """With copy, the outputs are log-probabilities (rows sum to 1), and they equal
    p_gen softmax(vocabulary logits) + (1 - p_gen) Σ_{s: src_s = w} a_s: pushing the gate to "copy"
    puts all the mass on the row's source tokens, pushing it to "generate" gives the model without copy."""
    model = _model(name)
    src, tgt = _batch()
    out = model((src, tgt))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(3, 5, dtype=torch.float64))
    with torch.no_grad():
        model.pointer.bias.fill_(-60.0)  # p_gen ~ 0: copy only
    copied = model((src, tgt)).exp()
    assert model.last_copy_prob.shape == (3, 5) and (model.last_copy_prob > 0.999).all()  # 1 - p_gen, recorded
    for b in range(3):
        in_src = torch.zeros(V, dtype=torch.bool)
        in_src[src[b][src[b] != PAD]] = True
        torch.testing.assert_close(copied[b][:, in_src].sum(-1), torch.ones(5, dtype=torch.float64))
    with torch.no_grad():
        model.pointer.bias.fill_(60.0)  # p_gen ~ 1: the vocabulary softmax of the model without copy
    plain = _model(name.replace("-copy", "-readable" if name.startswith("rnn") else "-prenorm"))
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith(("pointer.", "copy_"))})
    torch.testing.assert_close(model((src, tgt)), torch.log_softmax(plain((src, tgt)), dim=-1))
    assert (model.last_copy_prob < 0.001).all()
    # the gate and the copy attention learn: they get gradients
    model.train()
    model.pointer.bias.data.zero_()
    model((src, tgt))[..., 5].sum().backward()
    for n, p in model.named_parameters():
        if n.startswith(("pointer.", "copy_")):
            assert p.grad is not None and p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("name", ["rnn-continuation", "transformer-continuation"])
def test_copy_continuation_starts_neutral_then_copies_spans_in_order(name):
    """The continuation term starts at 0 (the model equals the copy model without it); with a large
    bonus and the gate on "copy", the output at each step is spread over the source tokens that follow
    the previous token's source copies (continuation_mask), i.e. the next piece of the span."""
    model, plain = _model(name), _model(name.replace("-continuation", "-copy"))
    src = torch.tensor([[5, 6, 7, 8, 9, 6, 11], [4, 12, 13, 14, PAD, PAD, PAD]])
    tgt = torch.tensor([[BOS, 5, 6, 7, 20], [BOS, 4, 12, 13, 14]])
    with torch.no_grad():
        model.continuation.proj.weight.zero_()
        model.continuation.proj.bias.zero_()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("continuation.")})
    torch.testing.assert_close(model((src, tgt)), plain((src, tgt)))
    with torch.no_grad():
        model.continuation.proj.bias.fill_(60.0)
        model.pointer.bias.fill_(-60.0)  # p_gen ~ 0: copy only
    p = model((src, tgt)).exp()  # (2, 5, V)
    # row 0: after 5 -> 6; after 6 (at source positions 1 and 5) -> 7 or 11, shared by their own scores; after 7 -> 8
    torch.testing.assert_close(p[0, 1, 6], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(p[0, 2, [7, 11]].sum(), torch.tensor(1.0, dtype=torch.float64))
    assert (p[0, 2, [7, 11]] > 0.01).all()
    torch.testing.assert_close(p[0, 3, 8], torch.tensor(1.0, dtype=torch.float64))
    # row 1: 4 12 13 14 copied in order; after 14 the next position is padding, so no bonus applies
    for t, w in ((1, 12), (2, 13), (3, 14)):
        torch.testing.assert_close(p[1, t, w], torch.tensor(1.0, dtype=torch.float64))
    assert p[1, 4, 14] < 0.99 and p[0, 4, 20] < 0.5  # 20 is not in the source: nothing to continue
    # the term learns: its parameters get gradients from the loss
    model.train()
    with torch.no_grad():
        model.continuation.proj.bias.zero_()
        model.pointer.bias.zero_()
    model((src, tgt))[..., 7].sum().backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in model.continuation.parameters())


@pytest.mark.parametrize("name", ["rnn", "transformer-copy"])
def test_generate_with_length_ratio_penalizes_outputs_shorter_than_the_expected_length(name):
    """length_ratio r: BLEU's brevity penalty against r x (real source tokens) in beam search (BP-Norm)."""
    model = _model(name)
    src, _ = _batch()
    kw = dict(max_len=4, beam_size=3, length_penalty=1.0, penalty="average")
    plain = model.generate(src, BOS, EOS, **kw)
    assert model.generate(src, BOS, EOS, length_ratio=0.0, **kw) == plain
    assert model.generate(src, BOS, EOS, length_ratio=0.5, beam_size=1, max_len=4) == \
        model.generate(src, BOS, EOS, beam_size=1, max_len=4)  # greedy ignores it
    # an expected length far past max_len: every answer runs to max_len (log bp -> 1 - L*/4 beats 1 - L*/n, n < 4)
    assert all(len(row) == kw["max_len"] for row in model.generate(src, BOS, EOS, length_ratio=100.0, **kw))
    with pytest.raises(ValueError, match="length_ratio must be >= 0"):
        model.generate(src, BOS, EOS, length_ratio=-1.0, **kw)


@pytest.mark.parametrize("name", ["rnn", "transformer-copy", "transformer-continuation"])
def test_generate_with_coverage_penalty_reads_the_attention_cached_or_not(name):
    """The coverage penalty (GNMT) over the model's own attention: cached and uncached decoding agree,
    a large beta changes some outputs; a Transformer without the copy attention refuses it."""
    model = _model(name)
    src, _ = _batch()
    kw = dict(max_len=3, beam_size=3, length_penalty=0.6)  # short: the coverage stays below 1 and matters
    a = model.generate(src, BOS, EOS, coverage_penalty=1.0, **kw)
    b = model.generate(src, BOS, EOS, coverage_penalty=1.0, cached=False, **kw)
    assert a == b
    assert model.last_attention is not None and model.last_attention.shape[-1] == src.shape[1]
    plain = model.generate(src, BOS, EOS, **kw)
    assert plain == model.generate(src, BOS, EOS, coverage_penalty=0.0, **kw)
    strong = model.generate(src, BOS, EOS, coverage_penalty=50.0, **kw)

    def coverage_term(b: int, seq: list[int]) -> float:  # Σ_i log min(Σ_j a_ji, 1) of one output, teacher-forced
        inputs = [BOS] + (seq if len(seq) < kw["max_len"] else seq[:-1])  # shorter outputs ended with EOS
        model((src[b:b + 1], torch.tensor([inputs])))
        cov = model.last_attention[0].sum(0)[src[b] != PAD]
        return float(cov.clamp(max=1.0).log().sum())

    for b in range(3):  # with beta this large the coverage decides: never worse than without the penalty
        assert coverage_term(b, strong[b]) >= coverage_term(b, plain[b]) - 1e-9


def test_selective_read_starts_neutral_and_feeds_the_mean_state_of_the_matching_source_positions():
    model, plain = _model("transformer-read"), _model("transformer-copy")
    src, tgt = _batch()
    with torch.no_grad():
        model.read_proj.weight.zero_()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("read_proj.")})
    torch.testing.assert_close(model((src, tgt)), plain((src, tgt)))
    from deepnotes.nn.copy import selective_read

    memory = torch.arange(2 * 4 * 3, dtype=torch.float64).view(2, 4, 3)
    s = torch.tensor([[5, 6, 5, 0], [7, 7, 7, 7]])
    prev = torch.tensor([[2, 5, 6, 0], [7, 2, 2, 2]])
    z = selective_read(memory, s, prev, pad_id=0)
    torch.testing.assert_close(z[0, 0], torch.zeros(3, dtype=torch.float64))  # BOS is not in the source
    torch.testing.assert_close(z[0, 1], (memory[0, 0] + memory[0, 2]) / 2)  # 5 at positions 0 and 2
    torch.testing.assert_close(z[0, 2], memory[0, 1])
    torch.testing.assert_close(z[0, 3], torch.zeros(3, dtype=torch.float64))  # padding matches nothing
    torch.testing.assert_close(z[1, 0], memory[1].mean(0))
    with pytest.raises(ValueError, match="must fit"):
        selective_read(memory, s[:, :3], prev)
    with pytest.raises(ValueError, match="selective_read .* needs copy=True"):
        _transformer(selective_read=True)


def test_errors():
    with pytest.raises(ValueError, match="coverage penalty reads one attention"):
        _model("transformer-prenorm").generate(_batch()[0], BOS, EOS, max_len=4, beam_size=2, coverage_penalty=0.2)
    with pytest.raises(ValueError, match="copy_continuation .* needs copy=True"):
        RNNSeq2Seq(RNNSeq2SeqConfig(10, copy_continuation=True))
    with pytest.raises(ValueError, match="copy needs one joint vocabulary"):
        TransformerSeq2Seq(TransformerSeq2SeqConfig(10, d_model=8, n_heads=2, tgt_vocab_size=12,
                                                    share_embeddings=False, copy=True))
    with pytest.raises(ValueError, match="share_embeddings needs one joint vocabulary"):
        RNNSeq2Seq(RNNSeq2SeqConfig(10, tgt_vocab_size=12))
    with pytest.raises(ValueError, match="dropout must be in"):
        TransformerSeq2Seq(TransformerSeq2SeqConfig(10, d_model=8, n_heads=2, dropout=1.0))
    with pytest.raises(ValueError, match="divisible"):
        TransformerSeq2Seq(TransformerSeq2SeqConfig(10, d_model=10, n_heads=4))
    model = _model("rnn")
    src, tgt = _batch()
    with pytest.raises(ValueError, match=r"expects one argument \(src, tgt_in\)"):
        model(src)
    with pytest.raises(ValueError, match="tgt_in must be a LongTensor"):
        model((src, tgt.double()))
    with pytest.raises(ValueError, match="different batch sizes"):
        model((src, tgt[:2]))
    src[0] = PAD
    with pytest.raises(ValueError, match="all padding"):
        model((src, tgt))


def test_registered_builders_follow_the_constructor_convention():
    torch.manual_seed(0)
    rnn = create_model("rnn-seq2seq", vocab_size=V, embedding_dim=12, hidden_size=10, num_layers=2, dropout=0.0)
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(rnn.state_dict().values(), _rnn().state_dict().values()))
    t = create_model("transformer-seq2seq", vocab_size=V, d_model=16, n_heads=2, num_layers=3, num_decoder_layers=1,
                     copy=True)
    assert (t.cfg.num_encoder_layers, t.cfg.num_decoder_layers, t.cfg.d_model, t.cfg.n_heads, t.cfg.copy) == (3, 1, 16, 2, True)
    assert create_model("transformer-seq2seq", vocab_size=V, d_model=16, n_heads=2, num_layers=2).cfg.num_decoder_layers == 2
    with pytest.raises(UserError, match="model 'transformer-seq2seq': .*divisible"):
        create_model("transformer-seq2seq", vocab_size=V, d_model=10, n_heads=4)


@pytest.mark.parametrize("kind", ["rnn", "transformer", "transformer-copy"])
def test_tiny_overfit_then_greedy_and_beam_reproduce_the_targets(kind):
    """20 toy pairs (target = source reversed, +1 mod the symbols): 150 full-batch steps suffice (~75 needed)."""
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(20):
        n = int(torch.randint(3, 7, (1,), generator=g))
        s = torch.randint(4, V, (n,), generator=g).tolist()
        pairs.append((s + [EOS], [4 + (x - 4 + 1) % (V - 4) for x in reversed(s)]))
    S, T = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs) + 1
    src = torch.full((20, S), PAD)
    tin = torch.full((20, T), PAD)
    tout = torch.full((20, T), -100)
    for i, (s, t) in enumerate(pairs):
        src[i, :len(s)] = torch.tensor(s)
        tin[i, :len(t) + 1] = torch.tensor([BOS] + t)
        tout[i, :len(t) + 1] = torch.tensor(t + [EOS])
    torch.manual_seed(0)
    if kind == "rnn":
        model = RNNSeq2Seq(RNNSeq2SeqConfig(V, embedding_dim=32, hidden_size=32, dropout=0.0))
    else:
        model = TransformerSeq2Seq(TransformerSeq2SeqConfig(V, d_model=32, n_heads=2, num_encoder_layers=1,
                                                            num_decoder_layers=1, dim_feedforward=64, dropout=0.0,
                                                            copy=kind == "transformer-copy"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if kind == "rnn" else 3e-3)
    model.train()
    for _ in range(150):
        loss = F.cross_entropy(model((src, tin)).reshape(-1, V), tout.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    want = [t for _, t in pairs]
    assert model.generate(src, BOS, EOS, max_len=T + 2) == want
    assert model.generate(src, BOS, EOS, max_len=T + 2, beam_size=4) == want


# ----------------------------------------------------------------------------------- beam search on the models
def _translation_scores(model, src_row, hyps, max_len, alpha):
    """GNMT-normalized log P(hyp (+ EOS if it stopped before max_len) | src) of each hypothesis, under
    generate's masks (PAD and BOS never generated, EOS not first); one teacher-forced batch."""
    outs = [h + [EOS] if len(h) < max_len else h for h in hyps]
    T = max(map(len, outs))
    tin = torch.full((len(outs), T), PAD)
    for r, o in enumerate(outs):
        tin[r, :len(o)] = torch.tensor([BOS] + o[:-1])
    logits = model((src_row.expand(len(outs), -1), tin)).double().clone()  # (N, T, V), causal: padding is harmless
    logits[..., [PAD, BOS]] = float("-inf")
    logits[:, 0, EOS] = float("-inf")
    logp = torch.log_softmax(logits, dim=-1)
    return [sum(logp[r, t, o[t]].item() for t in range(len(o))) / ((5 + len(o)) / 6) ** alpha
            for r, o in enumerate(outs)]


def _brute_force_best(model, src_row, vocab, max_len, alpha):
    from itertools import product
    words = [w for w in range(vocab) if w not in (PAD, BOS, EOS)]
    hyps = [list(p) for n in range(1, max_len + 1) for p in product(words, repeat=n)]  # n < max_len: EOS follows
    scores = _translation_scores(model, src_row, hyps, max_len, alpha)
    return hyps[max(range(len(hyps)), key=scores.__getitem__)]


@pytest.mark.parametrize("name", ["rnn", "transformer-prenorm"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_exhaustive_beam_search_finds_the_best_translation(name, alpha):
    """With more beams than candidates, beam search must return the brute-force argmax of the normalized
    score (3 words + EOS, up to 4 tokens: 120 hypotheses per source); this checks its EOS handling,
    finished hypotheses, the length penalty and the early stop on the real models. An untied, sharpened
    output layer makes the search non-trivial: greedy decoding misses the best hypothesis somewhere."""
    vocab, max_len = 6, 4
    model = _model(name, vocab=vocab, tie_output=False)
    with torch.no_grad():
        model.out_proj.weight.mul_(3.0)
    g = torch.Generator().manual_seed(2)
    src = torch.randint(4, vocab, (6, 5), generator=g)
    src[:, -1] = EOS
    src[1, 1] = 1
    src[2, 1], src[2, 2:] = EOS, PAD
    src[4, 2], src[4, 3:] = EOS, PAD
    best = [_brute_force_best(model, src[b], vocab, max_len, alpha) for b in range(6)]
    assert model.generate(src, BOS, EOS, max_len=max_len, beam_size=110, length_penalty=alpha) == best
    assert model.generate(src, BOS, EOS, max_len=max_len, beam_size=1, length_penalty=alpha) != best


@pytest.mark.parametrize("name", ["rnn", "transformer-prenorm"])
def test_beam_scores_at_least_greedy_and_one_beam_is_greedy(name):
    """Beam search (K=4) scores every sentence at least as high as greedy decoding here (not a theorem:
    the greedy path can fall off the beam, but a gap on random models signals a bug); K=1 with
    alpha=0 is exactly greedy."""
    model = _model(name)
    g = torch.Generator().manual_seed(5)
    src = torch.randint(4, V, (8, 6), generator=g)
    src[:, -1] = EOS
    src[3, 3:] = PAD
    greedy = model.generate(src, BOS, EOS, max_len=9)
    assert model.generate(src, BOS, EOS, max_len=9, beam_size=1, length_penalty=0.0) == greedy
    for alpha in (0.0, 1.0):
        beam = model.generate(src, BOS, EOS, max_len=9, beam_size=4, length_penalty=alpha)
        gaps = [np.subtract(*_translation_scores(model, src[b], [beam[b], greedy[b]], 9, alpha)) for b in range(8)]
        assert min(gaps) >= -1e-9, gaps
        assert max(gaps) > 1e-6  # the search did find something better than greedy somewhere


@pytest.mark.parametrize("name", ["rnn", "transformer-prenorm"])
def test_generate_with_no_repeat_ngram_size_never_repeats_an_ngram(name):
    """Random small models loop; with ``no_repeat_ngram_size=n`` no output (greedy or beam) holds an n-gram twice."""
    model = _model(name)
    g = torch.Generator().manual_seed(3)
    src = torch.randint(4, V, (8, 6), generator=g)
    src[:, -1] = EOS

    def repeats(seq, n):
        grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
        return len(grams) != len(set(grams))

    plain = model.generate(src, BOS, EOS, max_len=20, min_len=20)
    assert any(repeats(s, 2) for s in plain)  # the test can fail: without blocking, outputs repeat bigrams
    for beam in (1, 3):
        out = model.generate(src, BOS, EOS, max_len=20, beam_size=beam, min_len=20, no_repeat_ngram_size=2)
        assert not any(repeats([BOS] + s, 2) for s in out)
        assert all(len(s) == 20 for s in out)  # blocking left enough tokens to reach max_len


# ----------------------------------------------------------------------------------- training task
class _Sevens(nn.Module):
    """Teacher-forced logits (B, T, 12) that always favour token 7; records the decoder inputs it is given."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, inputs):
        src, tgt_in = inputs
        self.seen.append(tgt_in.clone())
        logits = torch.zeros(*tgt_in.shape, 12)
        logits[..., 7] = 1.0
        return logits * self.w


def _toy_batch():
    src = torch.tensor([[4, EOS], [5, EOS]])
    tin = torch.tensor([[BOS, 4, 5], [BOS, 6, PAD]])
    tout = torch.tensor([[4, 5, EOS], [6, EOS, -100]])
    return src, tin, tout


def test_seq2seq_task_samples_and_augments_training_batches_only():
    model, calls = _Sevens(), []

    def augment(batch, generator):
        calls.append(generator)
        return batch[:3]

    task = Seq2SeqTask(model, label_smoothing=0.1, sampler=ScheduledSampler(0.0, BOS, PAD), augment=augment)
    src, tin, tout = _toy_batch()
    g = torch.Generator().manual_seed(0)
    out = task.training_step(model, (src, tin, tout, "text"), Step(epoch=0, step=10, total_steps=10, generator=g))
    # the end of the schedule: the training pass reads the model's guesses (BOS and padding kept), targets stay gold
    assert model.seen[-1].tolist() == [[BOS, 7, 7], [BOS, 7, PAD]] and calls == [g]
    logits = torch.zeros(5, 12)
    logits[:, 7] = 1.0
    y = tout[tout != -100]
    assert out.loss.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=0.1).item())
    assert out.count == 5 and out.sums["acc"] == 0 and out.sums["loss"] == pytest.approx(5 * out.loss.item())
    model.seen.clear()
    ev = task.evaluation_step(model, (src, tin, tout), Step(epoch=0, step=10, total_steps=10, train=False))
    assert len(model.seen) == 1 and torch.equal(model.seen[0], tin) and len(calls) == 1  # teacher forcing, as is
    assert ev.loss.item() == pytest.approx(F.cross_entropy(logits, y).item())  # no label smoothing
    model.seen.clear()
    Seq2SeqTask(model).training_step(model, (src, tin, tout), Step(epoch=0, step=10, total_steps=10))
    assert len(model.seen) == 1 and torch.equal(model.seen[0], tin)  # no sampler: plain teacher forcing


def test_seq2seq_task_optimizer_decays_weight_matrices_only():
    model = _rnn()
    opt = Seq2SeqTask(model).configure_optimizers(TrainConfig(lr=0.01, momentum=0.9, weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.98)
    decay, rest = opt.param_groups
    assert decay["weight_decay"] == 0.05 and rest["weight_decay"] == 0.0 and decay["lr"] == 0.01
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in rest["params"])
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))
    assert opt.defaults["foreach"]  # the configured default, optimizer_impl="foreach"


def test_seq2seq_task_optimizer_impls_take_equal_steps():
    """The fused and foreach (default) AdamW steps against torch's for-loop step, from the same gradients: equal to rounding."""
    torch.manual_seed(0)
    model = _rnn()
    grads = [torch.randn_like(p) for p in model.parameters()]
    after = {}
    for impl in ("fused", "foreach", "for-loop"):
        m = copy.deepcopy(model)
        opt = Seq2SeqTask(m).configure_optimizers(TrainConfig(lr=0.01, momentum=0.9, weight_decay=0.05,
                                                              optimizer_impl=impl))
        assert bool(opt.defaults["fused"]) is (impl == "fused") and bool(opt.defaults["foreach"]) is (impl == "foreach")
        for _ in range(3):
            for p, g in zip(m.parameters(), grads):
                p.grad = g.clone()
            opt.step()
        after[impl] = [p.detach() for p in m.parameters()]
    for impl in ("fused", "foreach"):
        for p, q in zip(after[impl], after["for-loop"]):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert not torch.equal(after["for-loop"][0], model.encoder.weight_ih_l0)  # the steps did move the weights


def _toy_pairs(n, seed):
    """Target = source reversed, +1 mod the symbols (as the overfitting test)."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        s = torch.randint(4, V, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
        pairs.append((s + [EOS], [4 + (x - 4 + 1) % (V - 4) for x in reversed(s)]))
    return pairs


class _Noise:
    """Training augmentation from the Trainer's seeded generator (a source token masked now and then, as
    BPE-dropout re-segments from it); raises KeyboardInterrupt at a chosen call to simulate a kill."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, batch, generator):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        src = batch[0].clone()
        mask = (torch.rand(src.shape, generator=generator) < 0.1) & (src != PAD) & (src != EOS)
        return src.masked_fill(mask, 1), batch[1], batch[2]


def _seq2seq_trainer(run_dir, noise, cfg):
    torch.manual_seed(0)
    model = create_model("transformer-seq2seq", vocab_size=V, d_model=16, n_heads=2, num_layers=1, dim_feedforward=24,
                         dropout=0.1, copy=True)
    train, val = TokenBatches(_toy_pairs(48, 0), 60, seed=0), TokenBatches(_toy_pairs(16, 1), 60, seed=0)
    task = Seq2SeqTask(model, cfg.label_smoothing, ScheduledSampler(0.5, BOS, PAD), noise)
    return Trainer(cfg, task, run_dir, train, {"val": val}, torch.device("cpu"), log=lambda m: None)


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny models train ~10x faster than with several threads on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_seq2seq_resume_after_kill_equals_uninterrupted(tmp_path, ema_decay, one_thread):
    """The seq2seq pattern (token-bucketed batches, augmentation and scheduled sampling from the step, dropout):
    killed inside epoch 3 and resumed, it ends with the same history and the same weights, bit for bit."""
    cfg = TrainConfig(epochs=4, optimizer="adamw", lr=3e-3, schedule="cosine", warmup=0.1, label_smoothing=0.1,
                      grad_clip=1.0, ema_decay=ema_decay, progress=False)
    full = _seq2seq_trainer(tmp_path / "full", _Noise(), cfg)
    hist_full = full.fit()
    n = full.steps_per_epoch
    assert n >= 4
    run = tmp_path / "killed"
    killed = _seq2seq_trainer(run, _Noise(fail_at=2 * n + 2), cfg)  # dies inside epoch 3
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert [p.name for p in list_checkpoints(run)] == ["epoch-0001", "epoch-0002"]
    torch.manual_seed(12345)  # the resumed process starts with another global RNG state
    resumed = _seq2seq_trainer(run, _Noise(), cfg)
    resumed.resume()
    assert resumed.epoch == 2 and resumed.step == 2 * n
    hist_resumed = resumed.fit()
    assert len(hist_full) == len(hist_resumed) == 4
    for a, b in zip(hist_full, hist_resumed):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "step"):
            assert a[key] == b[key], key
    for (k, v1), v2 in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert hist_full[-1]["val_loss"] < hist_full[0]["val_loss"]  # it learns


# ----------------------------------------------------------------------------------- translating text
class _CharTokenizer:
    """One id per character (offset past the special ids)."""

    def encode(self, text):
        return [ord(c) + 10 for c in text]

    def decode(self, ids):
        return "".join(chr(i - 10) for i in ids)


class _EchoModel:
    """A stand-in model that outputs its source (EOS and padding dropped) and records what it was given."""

    def __init__(self):
        self.seen, self.calls = [], []

    def eval(self):
        return self

    def generate(self, src, bos_id, eos_id, max_len, **kw):
        self.calls.append({"max_len": max_len, **kw})
        rows = [[int(i) for i in r if int(i) not in (PAD, EOS)] for r in src]
        self.seen += rows
        return rows


def test_translate_protects_sources_restores_outputs_and_keeps_the_order():
    sources = ["cannot open %.250s: use --block-size=SIZE", "RFC 5322 and -R, --rfc-email", "no spans"]
    tok = _CharTokenizer()
    for protect in (False, True):
        model = _EchoModel()
        assert translate(model, tok, sources, torch.device("cpu"), protect=protect, max_len_a=2.0) == sources
        seen = {tok.decode(r) for r in model.seen}
        if protect:  # the model saw sentinels, not the spans
            assert seen == {protect_spans(s).text for s in sources}
            assert all("%.250s" not in t and "5322" not in t for t in seen)
        else:
            assert seen == set(sources)
    model = _EchoModel()
    translate(model, tok, sources, torch.device("cpu"), batch_size=2, max_len_a=0.5, max_len_b=3, coverage_penalty=0.2,
              no_repeat_ngram_size=3, max_new_tokens=15)
    # sorted by length in batches of 2; at most a * |longest source| + b tokens, capped; greedy: no beam settings
    assert [c["max_len"] for c in model.calls] == [min(15, int(0.5 * 30 + 3)), min(15, int(0.5 * 42 + 3))]
    assert all(c["beam_size"] == 1 and c["coverage_penalty"] == 0 and c["no_repeat_ngram_size"] == 0
               for c in model.calls)


def test_translator_decodes_greedy_or_beam_and_scores_both():
    model, tok = _EchoModel(), _CharTokenizer()
    tr = Translator(model, tok, torch.device("cpu"), beam_size=4, coverage_penalty=0.1, no_repeat_ngram_size=2)
    assert tr.decode(["abc"]) == ["abc"] and model.calls[-1]["beam_size"] == 1
    tr.decode(["abc"], 1.4)
    assert {k: model.calls[-1][k] for k in ("beam_size", "length_penalty", "coverage_penalty", "no_repeat_ngram_size")} \
        == {"beam_size": 4, "length_penalty": 1.4, "coverage_penalty": 0.1, "no_repeat_ngram_size": 2}
    metrics, outputs = tr.scores(["无法打开", "权限"], ["无法打开", "权限"], 0.6)
    assert outputs == {"greedy": ["无法打开", "权限"], "beam": ["无法打开", "权限"]}
    assert metrics["beam"]["bleu"] == pytest.approx(100.0) and metrics["greedy"]["time_s"] > 0
    assert model.calls[-1]["length_penalty"] == 0.6


class _FixedGateModel:
    """A stand-in copy model whose forward records fixed copy probabilities."""

    class cfg:
        copy = True

    def __init__(self, prob):
        self.prob = prob

    def eval(self):
        return self

    def __call__(self, inputs):
        self.last_copy_prob = self.prob[: inputs[1].shape[0]]


def test_copy_rates_split_target_tokens_by_whether_their_source_has_them():
    src = torch.tensor([[7, 8, EOS], [9, EOS, PAD]])
    tgt_out = torch.tensor([[7, 9, EOS, -100], [9, 9, 4, EOS]])
    tgt_in = torch.full_like(tgt_out, BOS)
    prob = torch.tensor([[0.9, 0.2, 0.5, 0.4], [0.6, 0.8, 0.1, 0.3]])
    rates = copy_rates(_FixedGateModel(prob), [(src, tgt_in, tgt_out)], torch.device("cpu"))
    # in source: 7 (row 0), 9 and 9 (row 1); not: 9 (row 0, its source has no 9), 4; EOS and padding left out
    assert rates["n_in_source"] == 3 and rates["n_not_in_source"] == 2
    assert rates["in_source"] == pytest.approx((0.9 + 0.6 + 0.8) / 3)
    assert rates["not_in_source"] == pytest.approx((0.2 + 0.1) / 2)
    assert copy_rates(_rnn(), [(src, tgt_in, tgt_out)], torch.device("cpu")) is None  # no copy mechanism
