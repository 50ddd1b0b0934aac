"""Decoding (greedy, beam, sampling, Mask-Predict) and teacher forcing / scheduled sampling, on hand-built
step functions (Markov tables of next-token logits) with brute-force and hand-computed answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from deepnotes.nn.decoding import (
    LengthPredictor,
    ScheduledSampler,
    beam_search,
    block_repeated_ngrams,
    filter_logits,
    greedy_decode,
    length_normalizer,
    mask_predict,
    parallel_decode,
    sample,
    scheduled_sampling_inputs,
    shift_right,
    teacher_forcing_ratio,
)

NEG = -1e9  # "impossible" logit


def markov(table: torch.Tensor, calls: list | None = None):
    """step_fn of a Markov chain: table (B, V, V) [origin, last token] -> next-token logits."""

    def step_fn(tokens, origin):
        if calls is not None:
            calls.append((tokens.clone(), origin.clone()))
        return table[origin, tokens[:, -1]]

    return step_fn


def random_table(B, V, seed, bos=0, eos=1):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(B, V, V, generator=g, dtype=torch.float64) * 2
    table[:, :, bos] = NEG  # never generate BOS again
    return table


def strip(row: torch.Tensor, eos: int) -> list[int]:
    """A greedy/sample output row up to and including its first EOS (after the BOS at 0)."""
    out = []
    for i, w in enumerate(row.tolist()):
        out.append(w)
        if i > 0 and w == eos:
            break
    return out


def brute_force(step_fn, prompt, eos, V, max_len, alpha, penalty, origin=0, target_length=None):
    """Best (sequence, normalized score) over every sequence ending in EOS or reaching max_len; with
    ``target_length`` L* the score also gets the log brevity penalty min(1 - L* / |Y|, 0)."""
    best = [float("-inf"), None]

    def rec(prefix, logp):
        L = len(prefix) - len(prompt) + 1  # length after adding the next token
        lp = torch.log_softmax(step_fn(torch.tensor([prefix]), torch.tensor([origin]))[0].double(), -1)
        for w in range(V):
            s = logp + float(lp[w])
            if s == float("-inf") or s < -1e6:
                continue
            if w == eos or L == max_len:
                norm = s / length_normalizer(L, alpha, penalty)
                if target_length is not None:
                    norm += min(1.0 - target_length / L, 0.0)
                if norm > best[0]:
                    best[:] = [norm, prefix + [w]]
            else:
                rec(prefix + [w], s)

    rec(list(prompt), 0.0)
    return best[1], best[0]


# ----------------------------------------------------------------------------- greedy and beam search


def test_greedy_hand_case_and_layout():
    # tokens: 0 BOS, 1 EOS, 2 a, 3 b.  BOS -> a, a -> b, b -> EOS
    t = torch.full((1, 4, 4), NEG)
    t[0, 0, 2] = t[0, 2, 3] = t[0, 3, 1] = 0.0
    out = greedy_decode(markov(t), bos=0, eos=1, max_len=10)
    assert out.tolist() == [[0, 2, 3, 1]]  # BOS in front, stops after EOS
    out = greedy_decode(markov(t), bos=0, eos=None, max_len=2)
    assert out.tolist() == [[0, 2, 3]]  # no EOS: exactly max_len new tokens


def test_greedy_pads_finished_rows_and_skips_them():
    # origin 0: BOS -> EOS at once; origin 1: BOS -> a -> a -> ... (never EOS)
    t = torch.full((2, 3, 3), NEG)
    t[0, 0, 1] = 0.0
    t[1, 0, 2] = t[1, 2, 2] = 0.0
    calls = []
    out = greedy_decode(markov(t, calls), bos=0, eos=1, max_len=4, batch_size=2, pad_id=7)
    assert out.tolist() == [[0, 1, 7, 7, 7], [0, 2, 2, 2, 2]]
    assert [o.tolist() for _, o in calls] == [[0, 1], [1], [1], [1]]  # finished row 0 no longer computed


def test_beam_size_one_equals_greedy():
    B, V, eos = 6, 7, 1
    table = random_table(B, V, seed=0)
    greedy = greedy_decode(markov(table), bos=0, eos=eos, max_len=12, batch_size=B)
    seqs, scores = beam_search(markov(table), bos=0, eos=eos, beam_size=1, max_len=12, batch_size=B,
                               length_penalty=0.0)
    for b in range(B):
        assert seqs[b].tolist() == strip(greedy[b], eos)
        lp = torch.log_softmax(table[b], -1)
        s = seqs[b].tolist()
        expected = sum(float(lp[s[i], s[i + 1]]) for i in range(len(s) - 1))
        assert scores[b].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_beam_beats_greedy_where_greedy_is_not_optimal():
    # 0 BOS, 1 EOS, 2 a, 3 b. BOS -> a (0.6) | b (0.4); a -> EOS 0.34 | a 0.33 | b 0.33; b -> EOS 0.95 | a 0.05
    p = torch.full((1, 4, 4), 0.0, dtype=torch.float64)
    p[0, 0, 2], p[0, 0, 3] = 0.6, 0.4
    p[0, 2, 1], p[0, 2, 2], p[0, 2, 3] = 0.34, 0.33, 0.33
    p[0, 3, 1], p[0, 3, 2] = 0.95, 0.05
    p[0, 1, 1] = 1.0
    table = torch.log(p.clamp_min(1e-300))
    step = markov(table)
    assert greedy_decode(step, 0, 1, max_len=4).tolist() == [[0, 2, 1]]  # P = 0.204
    seqs, scores = beam_search(step, 0, 1, beam_size=2, max_len=4, length_penalty=0.0)
    assert seqs[0].tolist() == [0, 3, 1]  # P = 0.38
    assert scores[0].item() == pytest.approx(math.log(0.4 * 0.95))
    bf_seq, bf_score = brute_force(step, [0], 1, 4, 4, 0.0, "gnmt")
    assert seqs[0].tolist() == bf_seq and scores[0].item() == pytest.approx(bf_score)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha,penalty", [(0.0, "gnmt"), (1.0, "gnmt"), (0.6, "average"), (1.5, "average")])
def test_exhaustive_beam_equals_brute_force(seed, alpha, penalty):
    V, max_len = 3, 4  # 0 BOS, 1 EOS, 2 a: at most 3 * 2**3 = 24 candidates per step
    table = random_table(1, V, seed)
    table[0, :, 1] -= 1.0  # make EOS less likely so that long sequences compete
    step = markov(table)
    seqs, scores = beam_search(step, 0, 1, beam_size=24, max_len=max_len, length_penalty=alpha, penalty=penalty)
    bf_seq, bf_score = brute_force(step, [0], 1, V, max_len, alpha, penalty)
    assert seqs[0].tolist() == bf_seq
    assert scores[0].item() == pytest.approx(bf_score, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha,penalty", [(1.0, "average"), (0.6, "gnmt")])
def test_exhaustive_beam_with_target_length_equals_brute_force(seed, alpha, penalty):
    """BP-Norm (Yang et al. 2018): s / lp(|Y|) + min(1 - L* / |Y|, 0), one L* per example, by brute force."""
    V, max_len, B = 3, 4, 3
    table = random_table(B, V, seed + 40)
    table[:, :, 1] += 1.0  # EOS likely: short outputs win without the brevity penalty
    target = torch.tensor([0.0, 2.5, 4.0], dtype=torch.float64)
    seqs, scores = beam_search(markov(table), 0, 1, beam_size=24, max_len=max_len, batch_size=B,
                               length_penalty=alpha, penalty=penalty, target_length=target)
    for b in range(B):
        bf_seq, bf_score = brute_force(markov(table), [0], 1, V, max_len, alpha, penalty, origin=b,
                                       target_length=float(target[b]))
        assert seqs[b].tolist() == bf_seq
        assert scores[b].item() == pytest.approx(bf_score, rel=1e-9)


def test_target_length_zero_changes_nothing_and_longer_targets_never_shorten_the_answer():
    B, V, max_len = 8, 4, 6
    table = random_table(B, V, seed=5)
    table[:, :, 1] += 1.0
    plain, plain_scores = beam_search(markov(table), 0, 1, beam_size=5, max_len=max_len, batch_size=B,
                                      length_penalty=1.0, penalty="average")
    zero, zero_scores = beam_search(markov(table), 0, 1, beam_size=5, max_len=max_len, batch_size=B,
                                    length_penalty=1.0, penalty="average", target_length=torch.zeros(B))
    assert [s.tolist() for s in zero] == [s.tolist() for s in plain] and torch.equal(zero_scores, plain_scores)
    lengths = []
    for L in [0.0, 2.0, 4.0, 6.0]:  # exact search: a larger L* penalizes shorter outputs more
        seqs, _ = beam_search(markov(table), 0, 1, beam_size=V ** max_len, max_len=max_len, batch_size=B,
                              length_penalty=1.0, penalty="average", target_length=torch.full((B,), L))
        lengths.append([len(s) for s in seqs])
    for shorter, longer in zip(lengths, lengths[1:]):
        assert all(a <= b for a, b in zip(shorter, longer))
    assert lengths[-1] != lengths[0]  # and it does move some answers


def test_target_length_errors():
    table = random_table(2, 3, 0)
    with pytest.raises(ValueError, match="target_length must be"):
        beam_search(markov(table), 0, 1, beam_size=2, max_len=3, batch_size=2, target_length=torch.ones(3))
    with pytest.raises(ValueError, match="target_length must be"):
        beam_search(markov(table), 0, 1, beam_size=2, max_len=3, batch_size=2, target_length=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="target_length must be"):
        beam_search(markov(table), 0, 1, beam_size=2, max_len=3, batch_size=2,
                    target_length=torch.tensor([1.0, float("nan")]))


def test_block_repeated_ngrams_hand_cases():
    logits = torch.zeros(2, 8)
    tokens = torch.tensor([[0, 5, 6, 5], [0, 5, 6, 7]])
    out = block_repeated_ngrams(logits, tokens, 2)  # row 0 ends in 5 and "5 6" occurred: 6 banned; row 1: nothing
    assert out[0].isinf().nonzero().flatten().tolist() == [6] and not out[1].isinf().any()
    assert block_repeated_ngrams(logits, tokens, 1)[0].isinf().nonzero().flatten().tolist() == [0, 5, 6]
    assert not block_repeated_ngrams(logits, tokens, 3).isinf().any()  # "6 5 ?" never occurred
    rep = block_repeated_ngrams(logits[:1], torch.tensor([[0, 5, 6, 7, 5, 6]]), 3)
    assert rep[0].isinf().nonzero().flatten().tolist() == [7]  # "5 6 7" again
    assert block_repeated_ngrams(logits, tokens, 0) is logits  # off
    assert block_repeated_ngrams(logits, tokens, 5) is logits  # the prefix is shorter than one n-gram
    assert logits.eq(0).all()  # never in place
    with pytest.raises(ValueError, match="int >= 0"):
        block_repeated_ngrams(logits, tokens, -1)
    with pytest.raises(ValueError, match="same R"):
        block_repeated_ngrams(logits, tokens[:1], 2)


def _no_repeat(step_fn, n):
    return lambda tokens, origin: block_repeated_ngrams(step_fn(tokens, origin), tokens, n)


def _has_repeated_ngram(seq: list[int], n: int) -> bool:
    grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 3])
def test_beam_with_blocked_ngrams_never_repeats_and_is_exhaustive(seed, n):
    V, max_len = 4, 5  # 0 BOS, 1 EOS, 2..3: every long sequence repeats some n-gram
    table = random_table(1, V, seed)
    table[0, :, 1] -= 1.5
    step = _no_repeat(markov(table), n)
    seqs, scores = beam_search(step, 0, 1, beam_size=V ** max_len, max_len=max_len, length_penalty=0.6)
    bf_seq, bf_score = brute_force(step, [0], 1, V, max_len, 0.6, "gnmt")
    assert seqs[0].tolist() == bf_seq and scores[0].item() == pytest.approx(bf_score, rel=1e-9)
    assert not _has_repeated_ngram(seqs[0].tolist(), n)
    greedy = greedy_decode(step, bos=0, eos=1, max_len=12)[0].tolist()
    assert not _has_repeated_ngram(strip(torch.tensor(greedy), 1), n)


def test_blocking_breaks_a_loop():
    # 0 BOS, 1 EOS, 2 a, 3 b: a -> b and b -> a are likely, EOS unlikely: greedy loops "a b a b ..."
    t = torch.full((1, 4, 4), -2.0)
    t[0, 0, 2] = t[0, 2, 3] = t[0, 3, 2] = 2.0
    t[0, :, 0] = NEG
    plain = greedy_decode(markov(t), bos=0, eos=1, max_len=8)[0].tolist()
    assert plain == [0, 2, 3, 2, 3, 2, 3, 2, 3]
    blocked = greedy_decode(_no_repeat(markov(t), 2), bos=0, eos=1, max_len=8)[0].tolist()
    assert blocked[:3] == [0, 2, 3] and not _has_repeated_ngram(strip(torch.tensor(blocked), 1), 2)


def _attending(table: torch.Tensor, attention: torch.Tensor):
    """Markov step_fn that also returns an attention (R, S) read from ``attention[last token]``."""

    def step_fn(tokens, origin):
        return table[origin, tokens[:, -1]], attention[tokens[:, -1]]

    return step_fn


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beta", [0.0, 0.3, 2.0])
def test_exhaustive_beam_with_coverage_penalty_equals_brute_force(seed, beta):
    """GNMT's ranking s / lp(|Y|) + β Σ_i log(min(Σ_j a_ji, 1)) over real source positions i, by brute force."""
    V, S, max_len, alpha = 3, 4, 4, 0.6
    table = random_table(1, V, seed + 20)
    table[0, :, 1] -= 1.0
    g = torch.Generator().manual_seed(seed)
    attention = torch.softmax(torch.randn(V, S, generator=g, dtype=torch.float64) * 2, -1)
    real = torch.tensor([[True, True, True, False]])  # the last source position is padding
    step = _attending(table, attention)
    seqs, scores = beam_search(step if beta > 0 else markov(table), 0, 1, beam_size=24, max_len=max_len,
                               length_penalty=alpha, coverage_penalty=beta, source_mask=real)
    best = [float("-inf"), None]

    def rec(prefix, logp, cov):
        logits, att = step(torch.tensor([prefix]), torch.tensor([0]))
        lp, cov = torch.log_softmax(logits[0], -1), cov + att[0]  # this step's attention counts for its token
        for w in range(V):
            s_ = logp + float(lp[w])
            if s_ < -1e6:
                continue
            if w == 1 or len(prefix) == max_len:
                cp = beta * float(cov[:3].clamp(max=1.0).log().sum())
                norm = s_ / length_normalizer(len(prefix), alpha, "gnmt") + cp
                if norm > best[0]:
                    best[:] = [norm, prefix + [w]]
            else:
                rec(prefix + [w], s_, cov)

    rec([0], 0.0, torch.zeros(S, dtype=torch.float64))
    assert seqs[0].tolist() == best[1]
    assert scores[0].item() == pytest.approx(best[0], rel=1e-9)


def test_coverage_penalty_changes_some_answers_towards_more_coverage():
    changed = 0
    for seed in range(10):
        table = random_table(1, 3, seed + 20)
        table[0, :, 1] -= 1.0
        g = torch.Generator().manual_seed(seed)
        attention = torch.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64) * 2, -1)
        real = torch.ones(1, 4, dtype=torch.bool)
        plain, _ = beam_search(markov(table), 0, 1, beam_size=8, max_len=4, length_penalty=0.6)
        covered, _ = beam_search(_attending(table, attention), 0, 1, beam_size=8, max_len=4, length_penalty=0.6,
                                 coverage_penalty=2.0, source_mask=real)

        def cp(seq):
            cov = sum(attention[w] for w in seq[:-1].tolist())  # the attention of each step's input token
            return float(cov.clamp(max=1.0).log().sum())

        if plain[0].tolist() != covered[0].tolist():
            changed += 1
            assert cp(covered[0]) > cp(plain[0])  # the answer that wins covers the source better
    assert changed >= 1


def test_coverage_penalty_errors():
    table = random_table(1, 3, 0)
    with pytest.raises(ValueError, match="needs source_mask"):
        beam_search(markov(table), 0, 1, beam_size=2, max_len=3, coverage_penalty=0.5)
    with pytest.raises(ValueError, match="must return \\(logits \\(R, V\\), attention \\(R, S\\)\\)"):
        beam_search(markov(table), 0, 1, beam_size=2, max_len=3, coverage_penalty=0.5,
                    source_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="coverage_penalty must be"):
        beam_search(markov(table), 0, 1, beam_size=2, max_len=3, coverage_penalty=-1.0)


@pytest.mark.parametrize("seed", range(3))
def test_beam_with_length_penalty_zero_finds_the_most_probable_sequence(seed):
    V, max_len = 4, 4  # 0 BOS, 1 EOS, 2, 3
    table = random_table(1, V, seed + 10)
    step = markov(table)
    seqs, scores = beam_search(step, 0, 1, beam_size=27, max_len=max_len, length_penalty=0.0)
    # independent enumeration: every sequence of 1..max_len generated tokens
    lp = torch.log_softmax(table[0], -1)
    best = (float("-inf"), None)
    for L in range(1, max_len + 1):
        for body in itertools.product([2, 3], repeat=L - 1):
            for last in ([1] if L < max_len else [1, 2, 3]):
                s = [0, *body, last]
                logp = sum(float(lp[s[i], s[i + 1]]) for i in range(L))
                if logp > best[0]:
                    best = (logp, s)
    assert seqs[0].tolist() == best[1]
    assert scores[0].item() == pytest.approx(best[0], rel=1e-9)


def test_length_penalty_moves_the_choice_to_longer_outputs():
    # 0 BOS, 1 EOS, 2 a. BOS -> EOS 0.5 | a 0.5; a -> EOS 0.9 | a 0.1
    p = torch.zeros(1, 3, 3, dtype=torch.float64)
    p[0, 0, 1], p[0, 0, 2] = 0.5, 0.5
    p[0, 2, 1], p[0, 2, 2] = 0.9, 0.1
    p[0, 1, 1] = 1.0
    step = markov(torch.log(p.clamp_min(1e-300)))
    seqs, scores = beam_search(step, 0, 1, beam_size=2, max_len=5, length_penalty=0.0)
    assert seqs[0].tolist() == [0, 1] and scores[0].item() == pytest.approx(math.log(0.5))  # short wins
    seqs, scores = beam_search(step, 0, 1, beam_size=2, max_len=5, length_penalty=1.0, penalty="average")
    assert seqs[0].tolist() == [0, 2, 1] and scores[0].item() == pytest.approx(math.log(0.45) / 2)
    seqs, scores = beam_search(step, 0, 1, beam_size=2, max_len=5, length_penalty=2.0, penalty="gnmt")
    assert seqs[0].tolist() == [0, 2, 1] and scores[0].item() == pytest.approx(math.log(0.45) / (7 / 6) ** 2)


def test_early_stopping_keeps_a_hypothesis_that_wins_only_when_long():
    # 0 BOS, 1 EOS, 2..9 a chain. BOS -> EOS 0.8 | 2 (0.2); 2 -> 3 -> ... -> 9 -> EOS with probability 1.
    # Ranked by the mean log-probability, [2..9, EOS] (log 0.2 / 9) beats [EOS] (log 0.8), though after
    # one step its prefix looks hopeless (log 0.2 / 2 < log 0.8): stopping then would be wrong.
    V = 10
    table = torch.full((1, V, V), NEG, dtype=torch.float64)
    table[0, 0, 1], table[0, 0, 2] = math.log(0.8), math.log(0.2)
    for w in range(2, 9):
        table[0, w, w + 1] = 0.0
    table[0, 9, 1] = 0.0
    table[0, 1, 1] = 0.0
    step = markov(table)
    seqs, scores = beam_search(step, 0, 1, beam_size=2, max_len=10, length_penalty=1.0, penalty="average")
    assert seqs[0].tolist() == [0, *range(2, 10), 1]
    assert scores[0].item() == pytest.approx(math.log(0.2) / 9)
    bf_seq, bf_score = brute_force(step, [0], 1, V, 10, 1.0, "average")
    assert seqs[0].tolist() == bf_seq and scores[0].item() == pytest.approx(bf_score)
    seqs, _ = beam_search(step, 0, 1, beam_size=2, max_len=7, length_penalty=1.0, penalty="average")
    assert seqs[0].tolist() == [0, 1]  # cut at 7 tokens, the chain scores log 0.2 / 7 < log 0.8


def test_length_normalizer_formulas():
    assert length_normalizer(1, 1.0, "gnmt") == pytest.approx(1.0)
    assert length_normalizer(7, 0.5, "gnmt") == pytest.approx(math.sqrt(2.0))
    assert length_normalizer(4, 1.5, "average") == pytest.approx(8.0)
    assert length_normalizer(9, 0.0, "average") == 1.0
    with pytest.raises(ValueError, match="penalty"):
        length_normalizer(3, 1.0, "wu")


def test_batch_decoding_uses_origin_like_decoding_alone():
    B, V, K = 4, 6, 3
    table = random_table(B, V, seed=3)
    prompts = torch.tensor([[0, 2], [0, 3], [0, 4], [0, 5]])
    calls = []
    greedy = greedy_decode(markov(table), prompts, eos=1, max_len=8)
    beams, beam_scores = beam_search(markov(table, calls), prompts, eos=1, beam_size=K, max_len=8,
                                     length_penalty=0.6)
    temp0 = sample(markov(table), prompts, eos=1, max_len=8, temperature=0.0)
    for b in range(B):
        alone = markov(table[b: b + 1])  # the same source decoded alone: origin is always 0
        g1 = greedy_decode(alone, prompts[b: b + 1], eos=1, max_len=8)
        assert strip(greedy[b], 1) == strip(g1[0], 1)
        assert strip(temp0[b], 1) == strip(g1[0], 1)
        s1, sc1 = beam_search(alone, prompts[b: b + 1], eos=1, beam_size=K, max_len=8, length_penalty=0.6)
        assert beams[b].tolist() == s1[0].tolist()
        assert beam_scores[b].item() == pytest.approx(sc1[0].item(), rel=1e-12)
    for tokens, origin in calls:  # live prefixes only: never an EOS inside, at most B*K rows
        assert tokens.shape[0] == origin.shape[0] <= B * K
        assert not (tokens[:, 2:] == 1).any()
        assert (tokens[:, :2] == prompts[origin]).all()  # each row carries its own example's prompt


def test_beam_without_eos_runs_to_max_len():
    table = random_table(2, 5, seed=5)
    seqs, scores = beam_search(markov(table), 0, None, beam_size=3, max_len=4, batch_size=2, length_penalty=0.0)
    assert [len(s) for s in seqs] == [5, 5]
    for b in range(2):
        bf_seq, bf_score = brute_force(markov(table), [0], None, 5, 4, 0.0, "gnmt", origin=b)
        lp = torch.log_softmax(table[b], -1)
        s = seqs[b].tolist()
        assert scores[b].item() == pytest.approx(sum(float(lp[s[i], s[i + 1]]) for i in range(4)))
        assert scores[b].item() <= bf_score + 1e-12  # beam is a search, never better than the optimum


def test_decoding_errors():
    step = markov(random_table(1, 4, 0))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(step, 0, 1, beam_size=0, max_len=3)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(step, 0, 1, max_len=0)
    with pytest.raises(ValueError, match="prompt"):
        greedy_decode(step, torch.tensor([0, 1]), 1, max_len=3)
    with pytest.raises(ValueError, match="batch_size"):
        greedy_decode(step, torch.zeros(2, 1, dtype=torch.long), 1, max_len=3, batch_size=3)
    with pytest.raises(ValueError, match=r"\(R, V\)"):
        greedy_decode(lambda tok, org: torch.zeros(5), 0, 1, max_len=3)
    with pytest.raises(ValueError, match="temperature"):
        sample(step, 0, 1, max_len=3, temperature=-1.0)


# ----------------------------------------------------------------------------- filtering and sampling


def test_filter_logits_hand_cases():
    inf = float("-inf")
    x = torch.tensor([1.0, 3.0, 2.0, 0.5])
    assert filter_logits(x, top_k=1).tolist() == [inf, 3.0, inf, inf]
    assert filter_logits(x, top_k=3).tolist() == [1.0, 3.0, 2.0, inf]
    assert filter_logits(x, top_k=10).tolist() == x.tolist()
    ties = torch.tensor([1.0, 3.0, 3.0, 2.0])
    assert filter_logits(ties, top_k=1).tolist() == [inf, 3.0, 3.0, inf]  # tied with the k-th: kept
    probs = torch.tensor([0.5, 0.3, 0.2])
    lg = probs.log()
    assert filter_logits(lg, top_p=0.45).tolist() == [lg[0].item(), inf, inf]  # 0.5 >= 0.45
    assert filter_logits(lg, top_p=0.79).tolist() == [lg[0].item(), lg[1].item(), inf]  # 0.8 >= 0.79
    assert filter_logits(lg, top_p=0.81).tolist() == lg.tolist()
    assert filter_logits(lg, top_p=1.0).tolist() == lg.tolist()
    assert filter_logits(torch.tensor([0.2, 5.0, 4.9]), top_p=1e-9).tolist() == [inf, 5.0, inf]  # argmax only
    dyadic = torch.tensor([2.0, 1.0, 0.5, 0.5]).log()  # probabilities 1/2, 1/4, 1/8, 1/8 exactly
    assert torch.isfinite(filter_logits(dyadic, top_p=0.5)).tolist() == [True, False, False, False]  # reached
    assert torch.isfinite(filter_logits(dyadic, top_p=0.75)).tolist() == [True, True, False, False]
    tied_p = torch.tensor([0.4, 0.2, 0.4]).log()
    assert torch.isfinite(filter_logits(tied_p, top_p=0.3)).tolist() == [True, False, True]
    # top-k first, then top-p on the renormalized survivors: after k=2, probs 0.625 / 0.375
    assert filter_logits(lg, top_k=2, top_p=0.6).tolist() == [lg[0].item(), inf, inf]
    assert filter_logits(lg, top_k=2, top_p=0.7).tolist() == [lg[0].item(), lg[1].item(), inf]


def test_filter_logits_is_rowwise_and_does_not_modify_input():
    x = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    out = filter_logits(x, top_k=4, top_p=0.7)
    torch.testing.assert_close(x, before)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out[i, j], filter_logits(x[i, j], top_k=4, top_p=0.7))
    kept = torch.isfinite(out).sum(-1)
    assert (kept >= 1).all() and (kept <= 4).all()
    # nucleus: the kept set (of the top-k renormalized distribution) reaches p, and is minimal
    q = torch.softmax(filter_logits(x, top_k=4), -1)
    q_kept = torch.where(torch.isfinite(out), q, torch.zeros_like(q))
    mass = q_kept.sum(-1)
    least = q_kept.masked_fill(q_kept == 0, 2.0).amin(-1)
    assert (mass >= 0.7 - 1e-6).all() and (mass - least < 0.7).all()


def test_filter_logits_errors():
    with pytest.raises(ValueError, match="top_k"):
        filter_logits(torch.zeros(3), top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(torch.zeros(3), top_p=0.0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(torch.zeros(3), top_p=1.5)


def _fixed_logits_step(logits):
    return lambda tokens, origin: logits.expand(tokens.shape[0], -1)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (0.6, None, None), (2.0, None, None),
                                                     (1.0, 3, None), (1.0, None, 0.8)])
def test_sample_first_token_frequencies_match_the_distribution(temperature, top_k, top_p):
    logits = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0])
    n = 4000
    g = torch.Generator().manual_seed(0)
    out = sample(_fixed_logits_step(logits), bos=9, eos=None, max_len=1, temperature=temperature, top_k=top_k,
                 top_p=top_p, generator=g, batch_size=n)
    assert out.shape == (n, 2) and (out[:, 0] == 9).all()
    freq = torch.bincount(out[:, 1], minlength=5).double() / n
    expected = torch.softmax(filter_logits(logits / temperature, top_k, top_p).double(), -1)
    tol = 4 * torch.sqrt(expected * (1 - expected) / n) + 1e-12
    assert ((freq - expected).abs() <= tol).all(), (freq, expected)
    assert (freq[expected == 0] == 0).all()  # filtered tokens are never drawn
    if top_k is None and top_p is None:  # plain softmax of logits / T
        torch.testing.assert_close(expected, torch.softmax(logits.double() / temperature, -1))


def test_sampling_is_reproducible_with_a_generator():
    table = random_table(3, 6, seed=1)
    a = sample(markov(table), 0, 1, max_len=10, generator=torch.Generator().manual_seed(5), batch_size=3)
    b = sample(markov(table), 0, 1, max_len=10, generator=torch.Generator().manual_seed(5), batch_size=3)
    assert torch.equal(a, b)


def test_sampling_at_temperature_near_zero_is_greedy():
    B, V = 5, 6
    table = random_table(B, V, seed=2)
    best = table.argmax(-1, keepdim=True)
    table = table.scatter_add(-1, best, torch.full_like(best, 0.5, dtype=table.dtype))  # margin >= 0.5
    greedy = greedy_decode(markov(table), 0, 1, max_len=10, batch_size=B)
    for temperature in (1e-3, 0.0):
        out = sample(markov(table), 0, 1, max_len=10, temperature=temperature,
                     generator=torch.Generator().manual_seed(0), batch_size=B)
        assert torch.equal(out, greedy)
    hot = sample(markov(table), 0, 1, max_len=10, temperature=5.0, generator=torch.Generator().manual_seed(0),
                 batch_size=B)
    assert not torch.equal(hot, greedy)  # the comparison can fail


# ----------------------------------------------------------------------------- non-autoregressive


PAD, MASK = 0, 1


def contextual_predict_fn(target, calls=None):
    """A toy conditional masked LM with a fixed point at ``target`` (tokens 2..5).

    Even positions are easy (the right token, confident). An odd position's right token scores 2 + 4c,
    with c the fraction of correctly filled positions in the input, against a wrong token at 3: it is
    wrong (and unsure) until half the row is known, then right.
    """

    def predict_fn(tokens):
        if calls is not None:
            calls.append(tokens.clone())
        B, T = tokens.shape
        tgt = target[:, :T]
        valid = tokens != PAD
        c = ((tokens == tgt) & valid).sum(1, keepdim=True).double() / valid.sum(1, keepdim=True)  # (B, 1)
        logits = torch.zeros(B, T, 6, dtype=torch.float64)
        wrong = (tgt - 2 + 1) % 4 + 2
        odd = (torch.arange(T) % 2 == 1).expand(B, T)
        right_score = torch.where(odd, 2 + 4 * c, torch.full_like(c.expand(B, T), 5.0))
        logits.scatter_(2, tgt.unsqueeze(-1), right_score.unsqueeze(-1))
        logits.scatter_(2, wrong.unsqueeze(-1), torch.where(odd, 3.0, 0.0).double().unsqueeze(-1))
        logits[..., MASK] = 50.0  # mask_predict must never choose the mask or pad ids
        logits[..., PAD] = 50.0
        return logits

    return predict_fn


def test_mask_predict_converges_to_the_fixed_point_and_one_pass_does_not():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([8, 5, 1, 6])
    target = torch.randint(2, 6, (4, 8), generator=g)
    valid = torch.arange(8)[None] < lengths[:, None]
    expected = torch.where(valid, target, torch.full_like(target, PAD))
    for iterations in (2, 4, 10):
        out = mask_predict(contextual_predict_fn(target), lengths, MASK, PAD, iterations=iterations)
        assert torch.equal(out, expected), iterations
        # a fixed point: predicting from the output gives the output back
        again = contextual_predict_fn(target)(out)
        again[..., [MASK, PAD]] = float("-inf")
        assert torch.equal(again.argmax(-1)[valid], out[valid])
    one_pass = parallel_decode(contextual_predict_fn(target), lengths, MASK, PAD)
    assert torch.equal(one_pass[:, 0::2], expected[:, 0::2])  # even positions right
    odd_valid = valid[:, 1::2]
    assert (one_pass[:, 1::2][odd_valid] != target[:, 1::2][odd_valid]).all()  # odd ones wrong without context
    assert (one_pass[~valid] == PAD).all()


@pytest.mark.parametrize("iterations", [1, 3, 10])
def test_mask_predict_remasks_the_scheduled_number_and_keeps_padding(iterations):
    lengths = torch.tensor([12, 7, 3, 1])
    B, T = 4, 12
    g = torch.Generator().manual_seed(iterations)
    emb = torch.randn(6, 6, generator=g, dtype=torch.float64)
    pos = torch.randn(T, 6, generator=g, dtype=torch.float64)
    calls = []

    def predict_fn(tokens):  # context-dependent random logits: each row depends only on itself
        calls.append(tokens.clone())
        ctx = emb[tokens].mean(1, keepdim=True)  # (B, 1, 6)
        return 3 * torch.tanh(emb[tokens] + pos[: tokens.shape[1]] + 2 * ctx)

    out, probs = mask_predict(predict_fn, lengths, MASK, PAD, iterations=iterations, return_probs=True)
    valid = torch.arange(T)[None] < lengths[:, None]
    n_expected = [lengths.tolist()] + [[L * (iterations - t) // iterations for L in lengths.tolist()]
                                       for t in range(1, iterations)]
    n_expected = [n for n in n_expected if max(n) > 0]
    assert len(calls) == len(n_expected)
    for tokens, n in zip(calls, n_expected):
        assert (tokens[~valid] == PAD).all() and (tokens[valid] != PAD).all()
        assert (tokens == MASK).sum(1).tolist() == n
    assert (out[~valid] == PAD).all() and (out[valid] >= 2).all()
    assert (probs[~valid] == 0).all() and (probs[valid] > 0).all()
    # the reference, one row at a time in plain Python (Ghazvininejad et al. 2019, Algorithm)
    for b, L in enumerate(lengths.tolist()):
        def predict_row(row):
            lg = predict_fn(torch.tensor([row + [PAD] * (T - L)]))[0, :L].clone()
            lg[:, [MASK, PAD]] = float("-inf")
            p = torch.softmax(lg, -1)
            return p.max(-1).values.tolist(), p.argmax(-1).tolist()

        row = [MASK] * L
        p, row = predict_row(row)
        for t in range(1, iterations):
            n = L * (iterations - t) // iterations
            if n == 0:
                continue
            lowest = sorted(range(L), key=lambda i: (p[i], i))[:n]
            masked = [MASK if i in lowest else w for i, w in enumerate(row)]
            p_new, w_new = predict_row(masked)
            for i in lowest:
                row[i], p[i] = w_new[i], p_new[i]
        assert out[b, :L].tolist() == row, b
        torch.testing.assert_close(probs[b, :L].double(), torch.tensor(p, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_mask_predict_errors():
    fn = lambda tok: torch.zeros(*tok.shape, 5)  # noqa: E731
    with pytest.raises(ValueError, match="lengths"):
        mask_predict(fn, torch.tensor([3, 0]), MASK, PAD)
    with pytest.raises(ValueError, match="lengths"):
        mask_predict(fn, torch.tensor([3.0]), MASK, PAD)
    with pytest.raises(ValueError, match="iterations"):
        mask_predict(fn, torch.tensor([3]), MASK, PAD, iterations=0)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        mask_predict(lambda tok: torch.zeros(5), torch.tensor([3]), MASK, PAD)


def test_length_predictor_pools_only_real_positions():
    torch.manual_seed(0)
    lp = LengthPredictor(d_model=8, max_len=20)
    memory = torch.randn(3, 6, 8)
    lengths = torch.tensor([6, 4, 1])
    pad = torch.arange(6)[None] >= lengths[:, None]
    logits = lp(memory, pad)
    assert logits.shape == (3, 21)
    garbage = memory.masked_fill(pad.unsqueeze(-1), 1e3)  # changing padding changes nothing
    torch.testing.assert_close(lp(garbage, pad), logits)
    for b in range(3):  # equals the unpadded example alone, and the hand-written mean pool
        torch.testing.assert_close(lp(memory[b: b + 1, : lengths[b]]), logits[b: b + 1])
        torch.testing.assert_close(logits[b], lp.proj.weight @ memory[b, : lengths[b]].mean(0) + lp.proj.bias)
    with torch.no_grad():
        lp.proj.bias[0] = 1e4  # class 0 is never predicted
        lp.proj.bias[7] = 1e3
    assert lp.predict(memory, pad).tolist() == [7, 7, 7]
    top = lp.predict(memory, pad, k=3)
    assert top.shape == (3, 3) and (top[:, 0] == 7).all() and (top > 0).all()
    lp(memory, pad).sum().backward()
    assert lp.proj.weight.grad is not None and lp.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="padding_mask"):
        lp(memory, pad.long())
    with pytest.raises(ValueError, match="memory"):
        lp(torch.randn(3, 6, 5))


# ----------------------------------------------------------------------------- teacher forcing


def test_shift_right():
    y = torch.tensor([[5, 6, 7], [8, 9, 1]])
    assert shift_right(y, bos=2).tolist() == [[2, 5, 6], [2, 8, 9]]
    with pytest.raises(ValueError, match="targets"):
        shift_right(torch.tensor([1, 2]), bos=0)


def test_scheduled_sampling_inputs_mixes_by_the_ratio():
    g = torch.Generator().manual_seed(0)
    gold = torch.randint(0, 50, (100, 100), generator=g)
    predicted = gold + 50  # differs everywhere
    assert torch.equal(scheduled_sampling_inputs(gold, predicted, 1.0, generator=g), gold)
    assert torch.equal(scheduled_sampling_inputs(gold, predicted, 0.0, generator=g), predicted)
    for ratio in (0.5, 0.2):
        mix = scheduled_sampling_inputs(gold, predicted, ratio, generator=g)
        assert ((mix == gold) | (mix == predicted)).all()
        assert abs((mix == gold).double().mean().item() - ratio) < 0.02  # 4 sigma at n = 10^4
    a = scheduled_sampling_inputs(gold, predicted, 0.5, generator=torch.Generator().manual_seed(1))
    b = scheduled_sampling_inputs(gold, predicted, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="shape"):
        scheduled_sampling_inputs(gold, predicted[:, :5], 0.5)
    with pytest.raises(ValueError, match="teacher_forcing_ratio"):
        scheduled_sampling_inputs(gold, predicted, 1.5)


@pytest.mark.parametrize("schedule,kw", [("linear", {}), ("linear", {"k": 1.0, "c": 2e-4, "min_ratio": 0.1}),
                                         ("exponential", {}), ("exponential", {"k": 0.99}),
                                         ("inverse_sigmoid", {}), ("inverse_sigmoid", {"k": 500.0})])
def test_teacher_forcing_decays_are_monotone_from_one(schedule, kw):
    steps = range(0, 20001, 50)
    eps = [teacher_forcing_ratio(i, schedule, **kw) for i in steps]
    assert eps[0] >= 0.99
    assert all(a >= b for a, b in zip(eps, eps[1:]))
    assert eps[-1] < 0.5 * eps[0]  # it does decay
    assert all(kw.get("min_ratio", 0.0) <= e <= 1.0 for e in eps)


def test_teacher_forcing_formulas():
    assert teacher_forcing_ratio(100, "linear", k=1.0, c=1e-3) == pytest.approx(0.9)
    assert teacher_forcing_ratio(5000, "linear", k=1.0, c=1e-3, min_ratio=0.2) == pytest.approx(0.2)
    assert teacher_forcing_ratio(10, "exponential", k=0.9) == pytest.approx(0.9 ** 10)
    assert teacher_forcing_ratio(300, "inverse_sigmoid", k=100) == pytest.approx(100 / (100 + math.exp(3)))
    assert teacher_forcing_ratio(10 ** 7, "inverse_sigmoid", k=10) == 0.0  # no overflow
    with pytest.raises(ValueError, match="schedule"):
        teacher_forcing_ratio(1, "cosine")
    with pytest.raises(ValueError, match="k must be"):
        teacher_forcing_ratio(1, "exponential", k=1.5)
    with pytest.raises(ValueError, match="k must be"):
        teacher_forcing_ratio(1, "inverse_sigmoid", k=0.5)
    with pytest.raises(ValueError, match="only used"):
        teacher_forcing_ratio(1, "exponential", c=0.1)
    with pytest.raises(ValueError, match="step"):
        teacher_forcing_ratio(-1)


def _guesses_seven(tgt_in: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits (B, T, V) that always guess token 7."""
    logits = torch.zeros(*tgt_in.shape, 12)
    logits[..., 7] = 1.0
    return logits


def test_scheduled_sampler_mixes_gold_and_guessed_inputs_on_a_linear_schedule():
    BOS, PAD = 2, 0
    tgt_in = torch.tensor([[BOS, 4, 5, 6, 8, 9], [BOS, 4, 5, PAD, PAD, PAD]])
    sampler = ScheduledSampler(min_ratio=0.0, bos_id=BOS, pad_id=PAD)
    g = torch.Generator().manual_seed(0)
    assert sampler.ratio(0, 100) == 1.0 and torch.equal(sampler(_guesses_seven, tgt_in, 0, 100, g), tgt_in)  # all gold
    # the end of the schedule: every input is the model's guess, padding and BOS kept
    assert sampler.ratio(100, 100) == 0.0
    assert sampler(_guesses_seven, tgt_in, 100, 100, g).tolist() == [[BOS, 7, 7, 7, 7, 7], [BOS, 7, 7, PAD, PAD, PAD]]
    assert sampler.ratio(50, 100) == pytest.approx(0.5)
    big = torch.full((200, 50), 4)
    big[:, 0] = BOS
    share = (sampler(_guesses_seven, big, 50, 100, g)[:, 1:] == 7).float().mean().item()
    assert 0.45 < share < 0.55  # one coin flip per token
    # the ratio is a function of (update, total updates): the same generator state gives the same mix
    a = sampler(_guesses_seven, big, 30, 100, torch.Generator().manual_seed(5))
    assert torch.equal(a, sampler(_guesses_seven, big, 30, 100, torch.Generator().manual_seed(5)))
    assert ScheduledSampler(0.6, BOS, PAD).ratio(10**6, 10) == pytest.approx(0.6)  # the floor
    assert ScheduledSampler(0.6, BOS, PAD).ratio(5, 10) == pytest.approx(0.8)  # 1 - (1 - 0.6) * 5 / 10
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="min_ratio"):
            ScheduledSampler(bad, BOS, PAD)
    with pytest.raises(ValueError, match="total_steps"):
        sampler.ratio(0, 0)
