"""Pointer-generator copy mechanism: the mixture against a hand-written probability-space reference, its two
limits (p_gen -> 1: the vocabulary softmax; p_gen -> 0: the scattered attention), gradients, the extended
vocabulary helpers, and a small learning check on copying unseen placeholders."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.nn.copy import (
    CopyContinuation,
    PointerGenerator,
    continuation_mask,
    ext_ids_to_tokens,
    extend_vocab,
    pointer_generator_log_probs,
    target_to_ext_ids,
    to_vocab_ids,
)

N, S, V, N_OOV, H, E, C = 5, 7, 11, 3, 6, 4, 8


def _inputs(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(N, H, generator=g, dtype=dtype)
    context = torch.randn(N, C, generator=g, dtype=dtype)
    x = torch.randn(N, E, generator=g, dtype=dtype)
    logits = torch.randn(N, V, generator=g, dtype=dtype) * 2
    attention = torch.softmax(torch.randn(N, S, generator=g, dtype=dtype) * 2, -1)
    src = torch.randint(0, V + N_OOV, (N, S), generator=g)
    src[:, 1] = src[:, 4]  # a repeated id in every row
    src[0, 2] = V + 1  # make sure OOV ids occur
    return state, context, x, logits, attention, src


def _module(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    pg = PointerGenerator(H, embed_size=E, context_size=C).to(dtype)
    with torch.no_grad():
        pg.bias.fill_(0.3)
    return pg


def _copy_reference(attention, src, width):
    """Σ_{i: src_i = w} a_i with explicit loops."""
    out = torch.zeros(attention.shape[0], width, dtype=attention.dtype)
    for n in range(attention.shape[0]):
        for i in range(attention.shape[1]):
            out[n, src[n, i]] += attention[n, i]
    return out


def test_matches_the_probability_space_formula():
    pg = _module()
    state, context, x, logits, attention, src = _inputs()
    log_p = pg(state, context, x, logits, attention, src, n_oov=N_OOV)
    assert log_p.shape == (N, V + N_OOV)
    z = context @ pg.w_h.weight[0] + state @ pg.w_s.weight[0] + x @ pg.w_x.weight[0] + pg.bias  # (N,)
    p_gen = torch.sigmoid(z)[:, None]
    copy = _copy_reference(attention, src, V + N_OOV)
    expected = p_gen * F.pad(torch.softmax(logits, -1), (0, N_OOV)) + (1 - p_gen) * copy
    torch.testing.assert_close(log_p.exp(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(N, dtype=torch.float64))
    assert torch.isfinite(log_p).all()


@pytest.mark.parametrize("seed", range(3))
def test_output_is_a_distribution_for_random_inputs(seed):
    pg = _module(seed, torch.float32)
    state, context, x, logits, attention, src = _inputs(seed, torch.float32)
    log_p = pg(state, context, x, logits * 10, attention, src, n_oov=N_OOV + 2)  # spare, unused OOV ids
    assert torch.isfinite(log_p).all() and (log_p <= 1e-6).all()
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(N), rtol=0, atol=1e-5)


def test_p_gen_one_is_the_vocabulary_softmax_padded_with_zeros():
    pg = _module()
    with torch.no_grad():
        for lin in (pg.w_h, pg.w_s, pg.w_x):
            lin.weight.zero_()
        pg.bias.fill_(40.0)  # sigmoid(40) = 1 - 4e-18
    state, context, x, logits, attention, src = _inputs(1)
    log_p = pg(state, context, x, logits, attention, src, n_oov=N_OOV)
    torch.testing.assert_close(log_p.exp(), F.pad(torch.softmax(logits, -1), (0, N_OOV)), rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(log_p[:, :V], torch.log_softmax(logits, -1), rtol=1e-9, atol=1e-12)


def test_p_gen_zero_is_the_attention_scattered_onto_source_ids():
    pg = _module()
    with torch.no_grad():
        for lin in (pg.w_h, pg.w_s, pg.w_x):
            lin.weight.zero_()
        pg.bias.fill_(-40.0)
    state, context, x, logits, attention, src = _inputs(2)
    log_p = pg(state, context, x, logits, attention, src, n_oov=N_OOV)
    expected = _copy_reference(attention, src, V + N_OOV)
    torch.testing.assert_close(log_p.exp(), expected, rtol=1e-9, atol=1e-15)
    n, i, j = 0, 1, 4  # the repeated id gets the sum of both positions' attention
    assert log_p[n, src[n, i]].exp().item() == pytest.approx((attention[n, i] + attention[n, j]).item(), rel=1e-9)


def test_gradients_reach_every_parameter_and_input_and_are_finite():
    pg = _module()
    state, context, x, logits, attention, src = _inputs(3)
    inputs = [t.clone().requires_grad_() for t in (state, context, x, logits, attention)]
    log_p = pg(*inputs[:3], inputs[3], inputs[4], src, n_oov=N_OOV + 2)
    target = torch.tensor([0, V, V + 1, 3, 4])
    loss = F.nll_loss(log_p, target) + log_p.sum() * 1e-3  # touches the zero-probability entries too
    loss.backward()
    for name, p in pg.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    for t in inputs:
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_broadcast_source_over_decoder_steps_equals_each_step():
    pg = _module()
    g = torch.Generator().manual_seed(4)
    B, T = 2, 3
    state = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    context = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    x = torch.randn(B, T, E, generator=g, dtype=torch.float64)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    attention = torch.softmax(torch.randn(B, T, S, generator=g, dtype=torch.float64), -1)
    src = torch.randint(0, V + N_OOV, (B, S), generator=g)
    out = pg(state, context, x, logits, attention, src.unsqueeze(1), n_oov=N_OOV)  # (B, T, V + n_oov)
    for t in range(T):
        torch.testing.assert_close(out[:, t], pg(state[:, t], context[:, t], x[:, t], logits[:, t], attention[:, t],
                                                  src, n_oov=N_OOV))


def test_without_input_embedding_and_inferred_n_oov():
    torch.manual_seed(0)
    pg = PointerGenerator(H).double()  # context_size = hidden_size, no w_x
    assert pg.w_x is None and pg.w_h.in_features == H
    g = torch.Generator().manual_seed(5)
    s, h = torch.randn(2, H, generator=g, dtype=torch.float64), torch.randn(2, H, generator=g, dtype=torch.float64)
    logits = torch.randn(2, V, generator=g, dtype=torch.float64)
    attention = torch.softmax(torch.randn(2, 3, generator=g, dtype=torch.float64), -1)
    src = torch.tensor([[2, V + 1, 5], [V, 1, 1]])
    out = pg(s, h, None, logits, attention, src)
    assert out.shape == (2, V + 2)  # n_oov = max id + 1 - V
    z = pointer_generator_log_probs(logits, attention, src, pg.gate_logit(s, h))
    torch.testing.assert_close(out, z)


def test_errors():
    pg = _module()
    state, context, x, logits, attention, src = _inputs()
    with pytest.raises(ValueError, match="n_oov"):
        pg(state, context, x, logits, attention, src, n_oov=1)  # ids up to V + 2 need n_oov >= 3
    with pytest.raises(ValueError, match="input_embedding"):
        pg(state, context, None, logits, attention, src)
    with pytest.raises(ValueError, match="state"):
        pg(context, context, x, logits, attention, src)
    with pytest.raises(ValueError, match="leading dims"):
        pg(state, context, x, logits[:2], attention, src)
    with pytest.raises(ValueError, match="broadcast"):
        pg(state, context, x, logits, attention, src[:, :3])
    with pytest.raises(ValueError, match="embed_size"):
        PointerGenerator(4, embed_size=0)
    with pytest.raises(ValueError, match="no w_x"):
        PointerGenerator(H, context_size=C).double()(state, context, x, logits, attention, src)


# ----------------------------------------------------------------------------- the extended vocabulary


VOCAB = {"<pad>": 0, "<unk>": 1, "open": 2, "the": 3, "file": 4, "now": 5}


def test_extend_vocab_and_targets_hand_case():
    src = [["open", "%s", "now", "%s", "a.txt"], ["the", "file"]]
    ext, oovs = extend_vocab(src, VOCAB, pad_id=0)
    assert ext.tolist() == [[2, 6, 5, 6, 7], [3, 4, 0, 0, 0]]  # a repeated OOV keeps its id; padded
    assert oovs == [["%s", "a.txt"], []]
    tgt = [["open", "a.txt", "b.txt", "%s"], ["a.txt", "now"]]
    ids = target_to_ext_ids(tgt, VOCAB, oovs, unk_id=1, pad_id=-100)
    assert ids.tolist() == [[2, 7, 1, 6], [1, 5, -100, -100]]  # b.txt not in the source; a.txt not in row 1's
    assert to_vocab_ids(ext, len(VOCAB), unk_id=1).tolist() == [[2, 1, 5, 1, 1], [3, 4, 0, 0, 0]]
    itos = ["<pad>", "<unk>", "open", "the", "file", "now"]
    assert ext_ids_to_tokens(ext[0], itos, oovs[0]) == src[0]
    assert ext_ids_to_tokens([2, 7, 6], VOCAB, oovs[0]) == ["open", "a.txt", "%s"]
    with pytest.raises(ValueError, match="outside"):
        ext_ids_to_tokens([8], itos, oovs[0])
    with pytest.raises(ValueError, match="one entry per example"):
        target_to_ext_ids(tgt, VOCAB, oovs[:1], unk_id=1)


# ----------------------------------------------------------------------------- learning to copy

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]
WORDS = [f"w{i}" for i in range(8)]
TOY_VOCAB = {w: i for i, w in enumerate(SPECIALS + WORDS)}
TV, UNK, BOS = len(TOY_VOCAB), 1, 2


def _copy_task(n, rng):
    """Source: 5 known words and one placeholder never seen before; target: the placeholder, then EOS."""
    src, tgt = [], []
    for _ in range(n):
        placeholder = f"%{rng.randrange(10 ** 9)}.txt"
        tokens = [rng.choice(WORDS) for _ in range(5)]
        tokens.insert(rng.randrange(6), placeholder)
        src.append(tokens)
        tgt.append([placeholder, "<eos>"])
    ext, oovs = extend_vocab(src, TOY_VOCAB)
    tgt_ext = target_to_ext_ids(tgt, TOY_VOCAB, oovs, unk_id=UNK)  # (n, 2)
    dec_in = F.pad(to_vocab_ids(tgt_ext, TV, UNK)[:, :-1], (1, 0), value=BOS)  # teacher forcing: [BOS, UNK]
    return ext, dec_in, tgt_ext, src, oovs


class _ToyCopier(nn.Module):
    """One attention layer over embedded source words and a pointer-generator on top."""

    def __init__(self, d=16):
        super().__init__()
        self.emb = nn.Embedding(TV, d)
        self.key, self.query, self.state = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(2 * d, TV)
        self.pg = PointerGenerator(d, embed_size=d, context_size=d)

    def forward(self, src_ext, dec_in):
        src = self.emb(to_vocab_ids(src_ext, TV, UNK))  # (N, S, d): the placeholder reads as UNK
        x = self.emb(dec_in)  # (N, T, d)
        s = torch.tanh(self.state(x))  # (N, T, d)
        attention = torch.softmax(self.query(s) @ self.key(src).transpose(1, 2), dim=-1)  # (N, T, S)
        context = attention @ src  # (N, T, d)
        logits = self.out(torch.cat([s, context], -1))  # (N, T, V)
        return self.pg(s, context, x, logits, attention, src_ext.unsqueeze(1), n_oov=1)  # (N, T, V + 1)


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread avoids the (large) cost of threads fighting for shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_pointer_generator_learns_to_copy_unseen_placeholders(one_thread):
    torch.manual_seed(0)
    rng = random.Random(0)
    model = _ToyCopier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    seen = set()
    for _ in range(300):
        ext, dec_in, tgt, src, oovs = _copy_task(64, rng)
        seen.update(o[0] for o in oovs)
        loss = F.nll_loss(model(ext, dec_in).flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    ext, dec_in, tgt, src, oovs = _copy_task(500, rng)
    assert not seen & {o[0] for o in oovs}  # held-out placeholders are new strings
    assert (tgt[:, 0] >= TV).all()  # a fixed-vocabulary softmax (ids < V) could never be right here
    with torch.no_grad():
        pred = model(ext, dec_in).argmax(-1)  # (500, 2)
    accuracy = (pred == tgt).all(dim=1).double().mean().item()
    assert accuracy > 0.9, accuracy
    words = [ext_ids_to_tokens(p, SPECIALS + WORDS, o) for p, o in zip(pred[:20], oovs[:20])]
    assert sum(w[0] == o[0] for w, o in zip(words, oovs[:20])) >= 18  # the placeholder string itself


def test_continuation_mask_marks_the_successors_of_the_previous_tokens_source_copies():
    src = torch.tensor([[5, 6, 7, 6, 9, 0, 0], [8, 8, 8, 0, 0, 0, 0]])
    prev = torch.tensor([[2, 6, 9, 0], [2, 8, 0, 0]])  # BOS first, padding at the end
    mask = continuation_mask(src, prev, pad_id=0)
    # by the definition, loop by loop: src[s - 1] == prev[t], s >= 1, src[s] and prev[t] not padding
    ref = torch.zeros(2, 4, 7, dtype=torch.bool)
    for b in range(2):
        for t in range(4):
            for s in range(1, 7):
                ref[b, t, s] = bool(src[b, s - 1] == prev[b, t] and src[b, s] != 0 and prev[b, t] != 0)
    assert mask.equal(ref)
    assert mask[0, 1].nonzero().flatten().tolist() == [2, 4]  # 6 occurs at 1 and 3: both successors
    assert not mask[0, 2].any()  # 9 is last before padding: no successor
    assert mask[1, 1].nonzero().flatten().tolist() == [1, 2]
    with pytest.raises(ValueError, match="same B"):
        continuation_mask(src, prev[:1])


def test_copy_continuation_adds_the_state_set_bonus_on_masked_positions_only():
    torch.manual_seed(0)
    term = CopyContinuation(4).double()
    scores, state = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    mask = torch.rand(2, 3, 5) > 0.5
    torch.testing.assert_close(term(scores, state, mask), scores)  # starts at 0
    with torch.no_grad():
        term.proj.weight.normal_()
        term.proj.bias.fill_(0.3)
    beta = state @ term.proj.weight[0] + 0.3  # (2, 3)
    torch.testing.assert_close(term(scores, state, mask), torch.where(mask, scores + beta[..., None], scores))
    with pytest.raises(ValueError, match="state must be"):
        term(scores, state[..., :3], mask)
    with pytest.raises(ValueError, match="mask"):
        term(scores, state, mask[..., :4])
    with pytest.raises(ValueError, match="hidden_size"):
        CopyContinuation(0)
