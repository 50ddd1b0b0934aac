r"""Decoding a sequence model, and the training tricks around it: greedy, beam search, sampling
(temperature, top-k, top-p), non-autoregressive Mask-Predict, teacher forcing and scheduled sampling.

Source: ML2021/2022 Transformer lectures (seeds 001/002): the autoregressive decoder feeds its own
output back and stops at an END token ("Stop Token"); "Beam Search" (trying several possibilities:
a worse first step can lead to a better whole sequence; good for tasks with one right answer, while
open-ended tasks and TTS prefer some randomness, i.e. sampling); "Non-autoregressive (NAT)" (all
tokens in parallel, output length predicted or controlled); "Teacher Forcing" (train on the gold
prefix); "exposure bias" and "Scheduled Sampling" (feed some of the model's own mistakes in training).
Papers: Graves 2012 and Wu et al. 2016 (GNMT) for beam search with the length penalty
``lp(|Y|) = ((5 + |Y|) / 6) ** alpha``; Holtzman et al. 2019 (nucleus / top-p sampling); Bengio et al.
2015 (scheduled sampling and its three decays); Ghazvininejad et al. 2019 (Mask-Predict).

**The step-function interface.** Every autoregressive decoder here is model-agnostic: it only calls ::

    step_fn(tokens: LongTensor (R, T), origin: LongTensor (R,)) -> logits (R, V)

which returns the next-token logits for each of R prefixes. ``tokens[r]`` is a whole prefix (the
prompt or BOS, then what has been generated; all R prefixes have the same length T and none contains
EOS). ``origin[r]`` is the index, in ``0 .. batch_size - 1``, of the input example that row r belongs
to: an encoder-decoder indexes its encoder memory with it (``memory[origin]``), a conditional LM its
condition. R changes from call to call: rows that have finished are dropped, and beam search has up to
``batch_size * beam_size`` rows. A step_fn may recompute everything from ``tokens`` (simple, O(T²)),
or keep a cache keyed by the prefix; it must not assume R or the row order stay the same.

Deliberate differences from the papers: beam search keeps only the best finished hypothesis per
example (enough for decoding; no n-best lists) and stops early only when no live hypothesis can still
beat it, so its result equals running it to ``max_len``; EOS candidates are finalized only when they
rank among the top ``beam_size`` candidates (fairseq / Hugging Face convention), which makes
``beam_size=1`` exactly greedy. Mask-Predict never predicts ``mask_id`` or ``pad_id``.

Every decoder runs under ``torch.no_grad()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from deepnotes.nn.recurrent import _check_positive_int

StepFn = Callable[[Tensor, Tensor], Tensor]
PredictFn = Callable[[Tensor], Tensor]

__all__ = ["LengthPredictor", "ScheduledSampler", "beam_search", "block_repeated_ngrams", "filter_logits",
           "greedy_decode", "length_normalizer", "mask_predict", "parallel_decode", "sample",
           "scheduled_sampling_inputs", "shift_right", "teacher_forcing_ratio"]


# --------------------------------------------------------------------------- helpers


def _prompt(bos: int | Tensor, batch_size: int | None, device: torch.device | str | None) -> Tensor:
    """The start of every row as a (B, T0) LongTensor."""
    if isinstance(bos, Tensor):
        if bos.dim() != 2 or bos.shape[1] < 1 or bos.dtype != torch.long:
            raise ValueError(f"bos must be an int or a LongTensor prompt (B, T0) with T0 >= 1, "
                             f"got {bos.dtype} of shape {tuple(bos.shape)}")
        if batch_size is not None and batch_size != bos.shape[0]:
            raise ValueError(f"batch_size={batch_size} disagrees with the prompt's batch {bos.shape[0]}; "
                             f"leave batch_size=None when giving a prompt")
        return bos.to(device) if device is not None else bos
    if isinstance(bos, bool) or not isinstance(bos, int):
        raise ValueError(f"bos must be an int or a LongTensor prompt (B, T0), got {type(bos).__name__}")
    batch_size = 1 if batch_size is None else batch_size
    _check_positive_int("batch_size", batch_size)
    return torch.full((batch_size, 1), bos, dtype=torch.long, device=device)


def _call_step(step_fn: StepFn, tokens: Tensor, origin: Tensor) -> Tensor:
    logits = step_fn(tokens, origin)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != tokens.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"step_fn must return next-token logits of shape (R, V) = ({tokens.shape[0]}, V) "
                         f"for tokens of shape {tuple(tokens.shape)}, got {shape}")
    return logits


def _call_step_with_attention(step_fn: StepFn, tokens: Tensor, origin: Tensor, S: int) -> tuple[Tensor, Tensor]:
    out = step_fn(tokens, origin)
    R = tokens.shape[0]
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, Tensor) for o in out)
            and out[0].dim() == 2 and out[0].shape[0] == R and out[1].shape == (R, S)):
        got = tuple(tuple(o.shape) if isinstance(o, Tensor) else type(o).__name__ for o in out) \
            if isinstance(out, tuple) else type(out).__name__
        raise ValueError(f"with a coverage penalty, step_fn must return (logits (R, V), attention (R, S)) with "
                         f"R = {R}, S = {S}; got {got}")
    return out


def _autoregressive(step_fn: StepFn, prompt: Tensor, eos: int | None, max_len: int, pad_id: int | None,
                    choose: Callable[[Tensor], Tensor]) -> Tensor:
    """Shared loop of greedy decoding and sampling: only unfinished rows are passed to step_fn."""
    _check_positive_int("max_len", max_len)
    B, T0 = prompt.shape
    pad = pad_id if pad_id is not None else (eos if eos is not None else 0)
    out = prompt.new_full((B, T0 + max_len), pad)  # (B, T0 + max_len)
    out[:, :T0] = prompt
    active = torch.arange(B, device=prompt.device)  # rows still generating = their origin
    steps = 0
    for t in range(max_len):
        if active.numel() == 0:
            break
        logits = _call_step(step_fn, out[active, : T0 + t], active)  # (R, V)
        nxt = choose(logits)  # (R,)
        out[active, T0 + t] = nxt
        steps = t + 1
        if eos is not None:
            active = active[nxt != eos]
    return out[:, : T0 + steps]


# --------------------------------------------------------------------------- greedy


@torch.no_grad()
def greedy_decode(step_fn: StepFn, bos: int | Tensor, eos: int | None, max_len: int, batch_size: int | None = None,
                  pad_id: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Greedy decoding: at each step append ``argmax`` of the next-token logits.

    Args:
        step_fn: ``step_fn(tokens (R, T), origin (R,)) -> logits (R, V)``, see the module docstring.
        bos: the start token (int; every row starts with it) or a LongTensor prompt (B, T0).
        eos: the end token; a row stops after emitting it. None: every row runs ``max_len`` steps.
        max_len: the most tokens generated per row (EOS included), >= 1.
        batch_size: B when ``bos`` is an int. Default None = 1 (or the prompt's B).
        pad_id: written after a row's EOS. Default None = ``eos``.
        device: where an int ``bos`` starts; a prompt keeps its own device. Default CPU.

    Returns:
        LongTensor (B, T0 + L) *with* the prompt (or BOS) in front: ``L <= max_len`` is the length of
        the longest generated row (its EOS included); shorter rows are padded after their EOS.

    Raises:
        ValueError: a bad prompt, ``batch_size`` or ``max_len``; step_fn output not (R, V).

    Example::

        table = torch.randn(V, V)                                     # a Markov chain of logits
        out = greedy_decode(lambda tok, org: table[tok[:, -1]], bos=0, eos=1, max_len=20)
    """
    prompt = _prompt(bos, batch_size, device)
    return _autoregressive(step_fn, prompt, eos, max_len, pad_id, lambda logits: logits.argmax(dim=-1))


# --------------------------------------------------------------------------- sampling


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Top-k and nucleus (top-p) filtering: removed logits become ``-inf``, kept ones are unchanged.

    * top-k keeps the ``top_k`` largest logits of each row; logits tied with the k-th largest are kept
      too (no arbitrary tie-break), so a row may keep more than k. ``top_k >= V`` keeps everything.
    * top-p (Holtzman et al. 2019) keeps the smallest set of most probable tokens whose total
      probability (softmax of the logits, after top-k) reaches ``top_p``: token i of the sorted
      distribution is kept iff the probability of the tokens before it is < p, so the most probable
      token is always kept. Tokens tied with the least probable kept one are kept as well.
      ``top_p = 1`` keeps everything.

    Applied in the order top-k, then top-p (as Hugging Face's ``generate``).

    Args:
        logits: float tensor (..., V).
        top_k: int >= 1 or None (off). Default None.
        top_p: float in (0, 1] or None (off). Default None.

    Returns:
        A new tensor of the shape and dtype of ``logits``.

    Raises:
        ValueError: ``top_k < 1``, ``top_p`` outside (0, 1].

    Example::

        filter_logits(torch.tensor([2.0, 1.0, 0.0]), top_k=2)   # tensor([2., 1., -inf])
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    out = logits
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        probs = torch.softmax(out.float(), dim=-1)  # (..., V)
        sorted_p = probs.sort(dim=-1, descending=True).values
        before = torch.cat([torch.zeros_like(sorted_p[..., :1]), sorted_p.cumsum(-1)[..., :-1]], -1)  # exclusive
        keep = before < top_p  # the first is always kept
        threshold = sorted_p.masked_fill(~keep, float("inf")).amin(dim=-1, keepdim=True)  # least kept prob
        out = out.masked_fill(probs < threshold, float("-inf"))
    return out.clone() if out is logits else out


def block_repeated_ngrams(logits: Tensor, tokens: Tensor, n: int) -> Tensor:
    """No repeated n-gram (Paulus et al. 2017; fairseq / Hugging Face ``no_repeat_ngram_size``): a token
    that would complete an n-gram already present in its prefix gets the logit ``-inf``.

    With prefix ``tokens[r] = y_1 .. y_T`` and n >= 2, token w is banned for row r when
    ``(y_{T-n+2}, .., y_T, w) == (y_i, .., y_{i+n-1})`` for some i <= T - n + 1. With n = 1 no token of the
    prefix may occur again. The prefix counts whole (prompt or BOS included); beam search and greedy
    decoding apply it through their step_fn, so a blocked output cannot loop (``%s %s %s ...``). A row
    with every token banned has only ``-inf`` logits, which beam search treats as a dead hypothesis.
    Applied to the logits, the remaining tokens' probabilities are renormalized by the decoder's
    log-softmax (fairseq and Hugging Face set the log-probabilities themselves to ``-inf``: the same greedy
    output, but their beam scores are lower and may rank hypotheses differently).

    Args:
        logits: float tensor (R, V), the next-token logits of R prefixes.
        tokens: LongTensor (R, T), the prefixes (T >= 0).
        n: the n-gram size, >= 1; 0 returns ``logits`` unchanged (off).

    Returns:
        A new tensor (R, V) (``logits`` itself when nothing can be banned).

    Raises:
        ValueError: ``n`` < 0 or not an int; ``logits`` and ``tokens`` not (R, V) and (R, T).

    Example::

        block_repeated_ngrams(logits, torch.tensor([[0, 5, 6, 5]]), 2)   # bans 6 (it would repeat "5 6")
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n (no-repeat n-gram size) must be an int >= 0, got {n!r}")
    if logits.dim() != 2 or tokens.dim() != 2 or logits.shape[0] != tokens.shape[0]:
        raise ValueError(f"logits must be (R, V) and tokens (R, T) with the same R, got {tuple(logits.shape)} "
                         f"and {tuple(tokens.shape)}")
    R, T = tokens.shape
    if n == 0 or T < n or R == 0:
        return logits
    windows = tokens.unfold(1, n, 1)  # (R, T - n + 1, n): every n-gram of each prefix
    if n > 1:
        suffix = tokens[:, T - n + 1:]  # (R, n - 1): the last n - 1 tokens, the next n-gram's head
        match = (windows[:, :, :-1] == suffix[:, None, :]).all(dim=-1)  # (R, W) n-grams with that head
    else:
        match = torch.ones(windows.shape[:2], dtype=torch.bool, device=tokens.device)
    banned = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    banned[torch.arange(R, device=tokens.device)[:, None].expand_as(match)[match], windows[:, :, -1][match]] = True
    return logits.masked_fill(banned, float("-inf"))


@torch.no_grad()
def sample(step_fn: StepFn, bos: int | Tensor, eos: int | None, max_len: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
           batch_size: int | None = None, pad_id: int | None = None,
           device: torch.device | str | None = None) -> Tensor:
    """Ancestral sampling: draw each next token from ``softmax(filter_logits(logits / temperature))``.

    Temperature < 1 sharpens the distribution (-> greedy as it goes to 0), > 1 flattens it; the
    filters are applied after the temperature. The lectures' point: for open-ended generation some
    randomness beats the most probable path, which tends to repeat itself.

    Args:
        step_fn, bos, eos, max_len, batch_size, pad_id, device: as :func:`greedy_decode`.
        temperature: > 0, or exactly 0 for greedy (argmax). Default 1.0.
        top_k, top_p: see :func:`filter_logits`. Default None (off).
        generator: a ``torch.Generator`` (on the prompt's device) for reproducible draws. Default None.

    Returns:
        LongTensor (B, T0 + L), laid out as :func:`greedy_decode`'s.

    Raises:
        ValueError: ``temperature < 0``, bad filters, and :func:`greedy_decode`'s errors.

    Example::

        g = torch.Generator().manual_seed(0)
        out = sample(step_fn, bos=0, eos=1, max_len=50, temperature=0.8, top_p=0.9, generator=g, batch_size=4)
    """
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    filter_logits(torch.zeros(1), top_k, top_p)  # validate the filters before any step

    def choose(logits: Tensor) -> Tensor:
        if temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(filter_logits(logits.float() / temperature, top_k, top_p), dim=-1)  # (R, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    prompt = _prompt(bos, batch_size, device)
    return _autoregressive(step_fn, prompt, eos, max_len, pad_id, choose)


# --------------------------------------------------------------------------- beam search


def length_normalizer(length: int | Tensor, alpha: float = 1.0,
                      penalty: Literal["gnmt", "average"] = "gnmt") -> float | Tensor:
    """The length penalty lp(|Y|) that beam search divides a hypothesis' log-probability by.

    ``"gnmt"`` (Wu et al. 2016, eq. 14): ``((5 + |Y|) / 6) ** alpha``; ``"average"``: ``|Y| ** alpha``
    (alpha = 1 ranks by the mean log-probability per token). alpha = 0 gives 1 (raw log-probability,
    which favours short outputs since every token costs log-probability); larger alpha favours
    longer outputs.

    Args:
        length: |Y| >= 1, the number of generated tokens (EOS included, prompt excluded).
        alpha: the exponent. Default 1.0.
        penalty: ``"gnmt"`` or ``"average"``. Default ``"gnmt"``.

    Raises:
        ValueError: an unknown ``penalty``.
    """
    if penalty == "gnmt":
        return ((5 + length) / 6) ** alpha
    if penalty == "average":
        return length ** alpha
    raise ValueError(f"penalty must be 'gnmt' or 'average', got {penalty!r}")


@torch.no_grad()
def beam_search(step_fn: StepFn, bos: int | Tensor, eos: int | None, beam_size: int, max_len: int,
                batch_size: int | None = None, length_penalty: float = 1.0,
                penalty: Literal["gnmt", "average"] = "gnmt",
                device: torch.device | str | None = None, coverage_penalty: float = 0.0,
                source_mask: Tensor | None = None, target_length: Tensor | None = None
                ) -> tuple[list[Tensor], Tensor]:
    r"""Beam search: keep the ``beam_size`` most probable prefixes per example at every step.

    At each step every live hypothesis y (log-probability ``s(y)``) is extended by every token w to
    ``s(y) + log p(w | y)``; of these ``K * V`` candidates per example the ``2K`` best are taken
    (K = ``beam_size``). Candidates ending in EOS that rank among the first K are *finished*: set
    aside with the score ``s / lp(|Y|)`` (:func:`length_normalizer`, alpha = ``length_penalty``); the
    best K others stay live. At ``max_len`` the live hypotheses finish too (without EOS). The answer is
    the finished hypothesis with the highest normalized score. An example stops early once no live
    hypothesis can still beat its best finished one (``s / max lp`` over the lengths still reachable is
    an upper bound since log-probabilities only decrease), so the result is that of running to
    ``max_len``. The step_fn sees only the live rows of unfinished examples (``origin`` says whose).

    **Coverage penalty** (GNMT, Wu et al. 2016, eq. 14): with ``coverage_penalty`` β > 0, a finished
    hypothesis is ranked by ``s / lp(|Y|) + cp`` with ``cp = β Σ_i log(min(Σ_j a_ji, 1))`` over the real
    source positions i, where a_ji is the attention of output step j (EOS included) on source position
    i: a hypothesis that left part of the source unattended (dropped it, or looped over another part)
    loses score. The step_fn then returns ``(logits, attention (R, S))`` and ``source_mask`` says which
    source positions are real. cp <= 0, so the early stop stays exact.

    **Brevity penalty against an expected length** (the BP-Norm of Yang, Huang and Ma 2018, "Breaking the
    beam search curse"): with ``target_length`` L* (per example), a finished hypothesis also gets
    ``log bp = min(1 - L* / |Y|, 0)``, the log of BLEU's brevity penalty (Papineni et al. 2002) of |Y| against
    L*: no change at or past L*, a growing loss below it. With ``penalty="average"`` and ``length_penalty=1``
    this is BP-Norm exactly, ``log P / |Y| + log bp``; L* is usually a generation ratio times the source
    length. log bp <= 0, so the early stop stays exact.

    Args:
        step_fn: ``step_fn(tokens (R, T), origin (R,)) -> logits (R, V)``, R <= batch_size * beam_size.
        bos: start token (int) or LongTensor prompt (B, T0).
        eos: end token, or None (every hypothesis runs ``max_len`` steps).
        beam_size: K >= 1; K = 1 with ``length_penalty = 0`` is greedy decoding.
        max_len: the most tokens generated (EOS included), >= 1.
        batch_size: B when ``bos`` is an int. Default None = 1 (or the prompt's B).
        length_penalty: alpha of the length penalty. Default 1.0; 0 ranks by raw log-probability.
        penalty: ``"gnmt"`` (``((5 + len) / 6) ** alpha``) or ``"average"`` (``len ** alpha``). Default "gnmt".
        device: where an int ``bos`` starts. Default CPU.
        coverage_penalty: β >= 0 of the coverage penalty. Default 0.0 (none; step_fn returns logits only).
        source_mask: BoolTensor (B, S), True at real source positions; required when β > 0.
        target_length: float tensor (B,) of expected lengths L* >= 0 in generated tokens (EOS included), or
            None (default: no brevity penalty).

    Returns:
        ``(sequences, scores)``: a list of B LongTensors (T0 + len,), each the best hypothesis with
        its prompt in front and its EOS (if any) at the end; and a float64 tensor (B,) of their
        normalized scores ``log P(Y | prompt) / lp(|Y|)`` (``+ cp`` with a coverage penalty, ``+ log bp``
        with a target length).

    Raises:
        ValueError: bad ``beam_size``, ``max_len``, ``penalty``, prompt, ``coverage_penalty`` < 0 or
            without a ``source_mask`` of shape (B, S); ``target_length`` not (B,) finite and >= 0; step_fn
            output not (R, V) (with β > 0: not a pair of (R, V) logits and (R, S) attention).

    Example::

        seqs, scores = beam_search(step_fn, bos=0, eos=1, beam_size=4, max_len=30, batch_size=8,
                                   length_penalty=0.6)
    """
    _check_positive_int("beam_size", beam_size)
    _check_positive_int("max_len", max_len)
    length_normalizer(1, length_penalty, penalty)  # validate penalty
    prompt = _prompt(bos, batch_size, device)
    B, _ = prompt.shape
    K, dev = beam_size, prompt.device
    lp = lambda n: float(length_normalizer(n, length_penalty, penalty))  # noqa: E731

    beta = float(coverage_penalty)
    if beta < 0 or not math.isfinite(beta):
        raise ValueError(f"coverage_penalty must be a finite number >= 0, got {coverage_penalty!r}")
    if beta > 0 and (source_mask is None or source_mask.dim() != 2 or source_mask.shape[0] != B):
        got = None if source_mask is None else tuple(source_mask.shape)
        raise ValueError(f"coverage_penalty > 0 needs source_mask (B, S) = ({B}, S) of the real source positions, got {got}")

    if target_length is not None:
        L = torch.as_tensor(target_length, dtype=torch.float64, device=dev)
        if L.shape != (B,) or not bool(torch.isfinite(L).all()) or bool((L < 0).any()):
            raise ValueError(f"target_length must be a finite tensor (B,) = ({B},) of lengths >= 0, "
                             f"got shape {tuple(L.shape)}")
        log_bp = lambda n: (1.0 - L / n).clamp(max=0.0)[:, None]  # noqa: E731  (B, 1), BLEU's brevity penalty
    else:
        log_bp = lambda n: 0.0  # noqa: E731
    tokens = prompt.repeat_interleave(K, dim=0)  # (B*K, T) live prefixes, example-major
    origin_all = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,)
    if beta > 0:
        real = source_mask.to(dev).repeat_interleave(K, dim=0)  # (B*K, S)
        coverage = torch.zeros(real.shape, dtype=torch.float64, device=dev)  # Σ_j a_ji of each live beam
        tiny = torch.finfo(torch.float64).tiny  # log(0) of an unattended position stays finite

        def cp(cov: Tensor, rows: Tensor) -> Tensor:
            """β Σ_i log(min(cov_i, 1)) over the real positions of ``rows`` (any shape of row indices into cov)."""
            logs = cov[rows].clamp(min=tiny, max=1.0).log().masked_fill(~real[rows], 0.0)
            return beta * logs.sum(-1)
    scores = torch.full((B, K), float("-inf"), dtype=torch.float64, device=dev)  # log P of each live beam
    scores[:, 0] = 0.0  # one live beam at the start (the K copies would be duplicates)
    best_score = torch.full((B,), float("-inf"), dtype=torch.float64, device=dev)
    best_seq: list[Tensor | None] = [None] * B
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    example = torch.arange(B, device=dev)[:, None]  # (B, 1)

    t = 0
    for t in range(1, max_len + 1):  # t = number of generated tokens after this step
        live = torch.isfinite(scores).view(-1) & ~done.repeat_interleave(K)  # (B*K,)
        rows = live.nonzero().squeeze(1)
        if beta > 0:
            logits, attention = _call_step_with_attention(step_fn, tokens[rows], origin_all[rows], real.shape[1])
            coverage[rows] += attention.double()  # coverage after this step, per parent row
        else:
            logits = _call_step(step_fn, tokens[rows], origin_all[rows])  # (R, V)
        V = logits.shape[1]
        logp = torch.full((B * K, V), float("-inf"), dtype=torch.float64, device=dev)
        logp[rows] = torch.log_softmax(logits.double(), dim=-1)
        cand = (scores.view(-1, 1) + logp).view(B, K * V)  # (B, K*V) log P of every extension
        top_s, top_i = cand.topk(min(2 * K, K * V), dim=1)  # (B, 2K) best first (>= K since V >= 1)
        beam, tok = top_i // V, top_i % V  # which live beam, which token

        if eos is not None:
            is_eos = (tok == eos) & torch.isfinite(top_s)  # (B, 2K)
            fin = is_eos[:, :K]  # finalize only EOS ranked within the top K
            norm = top_s[:, :K] / lp(t) + log_bp(t)
            if beta > 0:
                norm = norm + cp(coverage, example * K + beam[:, :K])  # parents' coverage, this step included
            norm = torch.where(fin, norm, torch.full_like(norm, float("-inf")))
            m, j = norm.max(dim=1)  # (B,) the best newly finished hypothesis per example
            improved = m > best_score  # strict: ties keep the earlier (shorter) one
            for b in improved.nonzero().flatten().tolist():
                row = b * K + int(beam[b, j[b]])
                best_seq[b] = torch.cat([tokens[row], tokens.new_tensor([eos])])
            best_score = torch.where(improved, m, best_score)
        else:
            is_eos = torch.zeros_like(tok, dtype=torch.bool)

        # the next live beams: the K best candidates that do not end in EOS
        order = torch.argsort(is_eos.to(torch.uint8), dim=1, stable=True)[:, :K]  # non-EOS first, by rank
        new_scores = torch.where(is_eos, torch.full_like(top_s, float("-inf")), top_s).gather(1, order)
        src = (example * K + beam.gather(1, order)).view(-1)  # (B*K,) parent rows
        tokens = torch.cat([tokens[src], tok.gather(1, order).view(-1, 1)], dim=1)  # (B*K, T+1)
        scores = new_scores
        if beta > 0:
            coverage = coverage[src]

        if t == max_len:
            break
        # early stop: can any live hypothesis still beat the best finished one? (cp, log bp <= 0)
        bound = scores.max(dim=1).values / max(lp(t + 1), lp(max_len))  # lp is monotone in the length
        done |= bound <= best_score
        if bool(done.all()):
            break

    # live hypotheses (of examples not stopped early) finish at the last length reached
    norm = scores / lp(t) + log_bp(t)  # (B, K)
    if beta > 0:
        norm = norm + cp(coverage, torch.arange(B * K, device=dev)).view(B, K)
    m, j = norm.max(dim=1)
    improved = (m > best_score) & ~done
    for b in improved.nonzero().flatten().tolist():
        best_seq[b] = tokens[b * K + int(j[b])].clone()
    best_score = torch.where(improved, m, best_score)
    return [s for s in best_seq], best_score  # type: ignore[misc]


# --------------------------------------------------------------------------- non-autoregressive


class LengthPredictor(nn.Module):
    """Predicts the target length of a non-autoregressive decoder from the encoder output.

    Mean-pools the encoder states over the non-padding positions, then a linear layer classifies the
    length into ``0 .. max_len`` (Ghazvininejad et al. 2019 use a special LENGTH token in the encoder
    instead; the mean pool is the simpler classic). Train with cross-entropy on the gold lengths
    (clamped to ``max_len``).

    Args:
        d_model: the encoder state size D.
        max_len: the largest length predicted; there are ``max_len + 1`` classes (0 included).

    Shapes:
        memory: (B, S, D); padding_mask: (B, S) bool, True = padding (``key_padding_mask``
        convention), or None -> logits (B, max_len + 1).

    Raises:
        ValueError: ``d_model``/``max_len`` < 1; inputs of the wrong shape.

    Example::

        lp = LengthPredictor(256, max_len=100)
        loss = F.cross_entropy(lp(memory, src_pad), tgt_lengths.clamp(max=100))
        lengths = lp.predict(memory, src_pad)   # (B,) in 1 .. max_len
    """

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        _check_positive_int("d_model", d_model)
        _check_positive_int("max_len", max_len)
        self.d_model, self.max_len = d_model, max_len
        self.proj = nn.Linear(d_model, max_len + 1)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"

    def forward(self, memory: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if memory.dim() != 3 or memory.shape[2] != self.d_model:
            raise ValueError(f"memory must be (B, S, {self.d_model}), got shape {tuple(memory.shape)}")
        if padding_mask is None:
            pooled = memory.mean(dim=1)  # (B, D)
        else:
            if padding_mask.shape != memory.shape[:2] or padding_mask.dtype != torch.bool:
                raise ValueError(f"padding_mask must be a bool tensor (B, S) = {tuple(memory.shape[:2])}, "
                                 f"True at padding, got {padding_mask.dtype} {tuple(padding_mask.shape)}")
            keep = (~padding_mask).unsqueeze(-1).to(memory.dtype)  # (B, S, 1)
            pooled = (memory * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)  # (B, D)
        return self.proj(pooled)  # (B, max_len + 1)

    @torch.no_grad()
    def predict(self, memory: Tensor, padding_mask: Tensor | None = None, k: int | None = None) -> Tensor:
        """The most probable length in ``1 .. max_len`` (B,), or the ``k`` most probable (B, k), best first."""
        logits = self.forward(memory, padding_mask).clone()
        logits[:, 0] = float("-inf")  # a target has at least one token
        if k is None:
            return logits.argmax(dim=-1)
        _check_positive_int("k", k)
        return logits.topk(min(k, self.max_len), dim=-1).indices


def _predict_tokens(predict_fn: PredictFn, tokens: Tensor, mask_id: int, pad_id: int) -> tuple[Tensor, Tensor]:
    logits = predict_fn(tokens)
    if not isinstance(logits, Tensor) or logits.dim() != 3 or logits.shape[:2] != tokens.shape:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"predict_fn must return logits (B, T, V) for tokens {tuple(tokens.shape)}, got {shape}")
    logits = logits.float().clone()
    V = logits.shape[-1]
    for special in (mask_id, pad_id):  # never predict a special token
        if 0 <= special < V:
            logits[..., special] = float("-inf")
    probs, preds = torch.softmax(logits, dim=-1).max(dim=-1)  # (B, T) each
    return probs, preds


@torch.no_grad()
def mask_predict(predict_fn: PredictFn, lengths: Tensor, mask_id: int, pad_id: int, iterations: int = 10,
                 return_probs: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    r"""Mask-Predict (Ghazvininejad et al. 2019): non-autoregressive decoding refined by re-masking.

    Iteration 0 predicts every position from an all-``mask_id`` input (positions beyond a row's length
    hold ``pad_id``) and records each token's probability. Iteration t = 1 .. I-1 re-masks the
    ``n = floor(L * (I - t) / I)`` tokens of lowest probability in each row (L = that row's length;
    ties broken by position), calls ``predict_fn`` once on the partly masked batch, and replaces only
    the re-masked tokens and their probabilities; the others are kept. Iterations in which no row
    re-masks anything are skipped (n only shrinks). ``iterations=1`` is one-pass parallel decoding.

    Args:
        predict_fn: ``predict_fn(tokens (B, T)) -> logits (B, T, V)`` (a conditional masked LM with
            its source already bound).
        lengths: LongTensor (B,), each >= 1, e.g. from :meth:`LengthPredictor.predict`.
        mask_id, pad_id: the mask and padding ids; neither is ever predicted.
        iterations: I >= 1. Default 10 (the paper's setting for its best results).
        return_probs: also return the final per-token probabilities (0 at padding). Default False.

    Returns:
        tokens: LongTensor (B, max(lengths)), ``pad_id`` beyond each length; with ``return_probs``,
        ``(tokens, probs)``. The paper picks among several candidate lengths by the mean log-probability.

    Raises:
        ValueError: ``lengths`` not a 1-D LongTensor of values >= 1; ``iterations < 1``; predict_fn
        output of the wrong shape.

    Example::

        tokens = mask_predict(lambda tok: model(src, tok), lengths=lp.predict(memory), mask_id=3, pad_id=0)
    """
    if not isinstance(lengths, Tensor) or lengths.dim() != 1 or lengths.dtype != torch.long or lengths.numel() == 0:
        raise ValueError(f"lengths must be a non-empty 1-D LongTensor (B,), got {lengths!r}")
    if int(lengths.min()) < 1:
        raise ValueError(f"lengths must all be >= 1, got min {int(lengths.min())}")
    _check_positive_int("iterations", iterations)
    B, T, dev = lengths.shape[0], int(lengths.max()), lengths.device
    positions = torch.arange(T, device=dev)
    valid = positions[None, :] < lengths[:, None]  # (B, T)
    masked = torch.full((B, T), mask_id, dtype=torch.long, device=dev)
    tokens = torch.where(valid, masked, torch.full_like(masked, pad_id))
    probs, preds = _predict_tokens(predict_fn, tokens, mask_id, pad_id)  # iteration 0: predict everything
    tokens = torch.where(valid, preds, tokens)
    scores = torch.where(valid, probs, torch.full_like(probs, float("inf")))  # padding never re-masked
    for t in range(1, iterations):
        n = lengths * (iterations - t) // iterations  # (B,) tokens to re-mask per row
        if int(n.max()) == 0:
            break
        order = torch.argsort(scores, dim=1, stable=True)  # lowest probability first
        rank = torch.empty_like(order).scatter_(1, order, positions.expand(B, T).contiguous())  # (B, T)
        remask = rank < n[:, None]
        tokens = tokens.masked_fill(remask, mask_id)
        probs, preds = _predict_tokens(predict_fn, tokens, mask_id, pad_id)
        tokens = torch.where(remask, preds, tokens)
        scores = torch.where(remask, probs, scores)
    if return_probs:
        return tokens, torch.where(valid, scores, torch.zeros_like(scores))
    return tokens


def parallel_decode(predict_fn: PredictFn, lengths: Tensor, mask_id: int, pad_id: int) -> Tensor:
    """One-pass non-autoregressive decoding: :func:`mask_predict` with ``iterations=1``.

    Every position is predicted at once from an all-mask input, so the tokens are chosen
    independently (the "multi-modality" problem of NAT: e.g. a mix of two valid translations).
    """
    return mask_predict(predict_fn, lengths, mask_id, pad_id, iterations=1)  # type: ignore[return-value]


# --------------------------------------------------------------------------- teacher forcing


def shift_right(targets: Tensor, bos: int) -> Tensor:
    """Teacher forcing: the decoder input is the gold target shifted right by one, BOS in front.

    ``inputs[:, 0] = bos`` and ``inputs[:, t] = targets[:, t - 1]``, so the decoder predicts
    ``targets[:, t]`` from the gold prefix ``targets[:, :t]``.

    Shapes:
        targets: (B, T) -> (B, T) of the same dtype and device.

    Raises:
        ValueError: ``targets`` not 2-D.
    """
    if targets.dim() != 2:
        raise ValueError(f"targets must be (B, T), got shape {tuple(targets.shape)}")
    start = targets.new_full((targets.shape[0], 1), bos)
    return torch.cat([start, targets[:, :-1]], dim=1)


def scheduled_sampling_inputs(gold: Tensor, predicted: Tensor, teacher_forcing_ratio: float,
                              generator: torch.Generator | None = None) -> Tensor:
    """Scheduled sampling (Bengio et al. 2015): mix gold and model tokens in the decoder input.

    Each position independently takes the gold token with probability ``teacher_forcing_ratio``
    (a coin flip per token, as in the paper), else the model's own prediction, so that training sees
    some of its own mistakes (the lectures' "exposure bias"). The two must be aligned as decoder
    inputs: ``predicted[:, t]`` is the model's guess of the token ``gold[:, t]`` holds, e.g.
    ``shift_right(logits.argmax(-1), bos)`` from a teacher-forced pass (the paper samples from the
    model instead of taking the argmax; either can be passed).

    Args:
        gold: LongTensor (B, T), e.g. ``shift_right(targets, bos)``.
        predicted: LongTensor of the same shape.
        teacher_forcing_ratio: ε in [0, 1]; 1 = pure teacher forcing, 0 = always the model's tokens.
        generator: a ``torch.Generator`` for the coin flips. Default None.

    Returns:
        LongTensor of ``gold``'s shape.

    Raises:
        ValueError: shapes differ, ratio outside [0, 1].
    """
    if gold.shape != predicted.shape:
        raise ValueError(f"gold and predicted must have the same shape, got {tuple(gold.shape)} and "
                         f"{tuple(predicted.shape)}")
    if not 0 <= teacher_forcing_ratio <= 1:
        raise ValueError(f"teacher_forcing_ratio must be in [0, 1], got {teacher_forcing_ratio!r}")
    where = generator.device if generator is not None else gold.device  # a CPU generator draws on the CPU
    use_gold = torch.rand(gold.shape, generator=generator, device=where).to(gold.device) < teacher_forcing_ratio
    return torch.where(use_gold, gold, predicted)


def teacher_forcing_ratio(step: int | float,
                          schedule: Literal["linear", "exponential", "inverse_sigmoid"] = "inverse_sigmoid",
                          k: float | None = None, c: float | None = None, min_ratio: float = 0.0) -> float:
    r"""The probability ε_i of feeding the gold token at training step i (Bengio et al. 2015, 2.4).

    * ``"linear"``: ε_i = max(ε, k - c i) (offset k, default 1.0; slope c, default 1e-3).
    * ``"exponential"``: ε_i = k^i, 0 < k <= 1 (default 0.999).
    * ``"inverse_sigmoid"``: ε_i = k / (k + exp(i / k)), k >= 1 (default 100); starts at k / (k + 1).

    All three start at (about) 1 and decrease with i; the result is clipped to [``min_ratio``, 1]
    (the paper's ε floor, written for the linear decay, is applied to all three; default 0).

    Args:
        step: i >= 0.
        schedule: which decay. Default ``"inverse_sigmoid"``.
        k: the decay's parameter (meaning per schedule, above). Default None = the default above.
        c: the linear slope >= 0; only for ``"linear"``. Default None = 1e-3.
        min_ratio: ε in [0, 1). Default 0.0.

    Returns:
        A float in [min_ratio, 1].

    Raises:
        ValueError: unknown schedule, ``step < 0``, a ``k`` or ``c`` outside its range, ``c`` with a
        schedule other than linear.
    """
    if not step >= 0:
        raise ValueError(f"step must be >= 0, got {step!r}")
    if not 0 <= min_ratio < 1:
        raise ValueError(f"min_ratio must be in [0, 1), got {min_ratio!r}")
    if c is not None and schedule != "linear":
        raise ValueError(f"c (the slope) is only used by schedule='linear', got schedule={schedule!r}")
    if schedule == "linear":
        k = 1.0 if k is None else k
        c = 1e-3 if c is None else c
        if c < 0:
            raise ValueError(f"c (the slope of the linear decay) must be >= 0, got {c!r}")
        eps = k - c * step
    elif schedule == "exponential":
        k = 0.999 if k is None else k
        if not 0 < k <= 1:
            raise ValueError(f"k must be in (0, 1] for the exponential decay, got {k!r}")
        eps = k ** step
    elif schedule == "inverse_sigmoid":
        k = 100.0 if k is None else k
        if not k >= 1:
            raise ValueError(f"k must be >= 1 for the inverse sigmoid decay, got {k!r}")
        e = math.exp(-step / k)  # k / (k + exp(i/k)) written without overflow for large i
        eps = k * e / (k * e + 1.0)
    else:
        raise ValueError(f"schedule must be 'linear', 'exponential' or 'inverse_sigmoid', got {schedule!r}")
    return float(min(1.0, max(min_ratio, eps)))


class ScheduledSampler:
    """Scheduled sampling (Bengio et al. 2015) of a teacher-forced decoder, in two passes.

    A first pass without gradients, teacher-forced on the gold decoder input, gives the model's greedy guess
    of every target token; each gold input token is then kept with probability ε_i (one coin flip per token,
    :func:`scheduled_sampling_inputs`) and replaced by the guess otherwise, and the training pass reads this
    mix. The guesses of all positions come from one parallel pass, as Mihaylova and Martins (2019) do for the
    Transformer. ε_i decays linearly from 1 at update 0 to ``min_ratio`` at the last update
    (:func:`teacher_forcing_ratio`, ``"linear"``), a function of (update, total updates) only, so a resumed
    run mixes the same tokens. The first pass runs in the model's current (training) mode, dropout included.

    Args:
        min_ratio: ε at the last update, in [0, 1).
        bos_id: the start token (the first decoder input, never replaced).
        pad_id: padding of the decoder input (kept).

    Raises:
        ValueError: ``min_ratio`` outside [0, 1).

    Example::

        sampler = ScheduledSampler(0.5, bos_id=2, pad_id=0)
        tgt_in = sampler(lambda t: model((src, t)), tgt_in, step=100, total_steps=1000, generator=g)
    """

    def __init__(self, min_ratio: float, bos_id: int, pad_id: int):
        if not 0 <= min_ratio < 1:
            raise ValueError(f"min_ratio must be in [0, 1), got {min_ratio}")
        self.min_ratio, self.bos_id, self.pad_id = min_ratio, bos_id, pad_id

    def ratio(self, step: int, total_steps: int) -> float:
        """ε at update ``step`` of ``total_steps`` (>= 1): the probability of feeding a gold token.

        Raises:
            ValueError: ``total_steps`` < 1.
        """
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        return teacher_forcing_ratio(step, "linear", k=1.0, c=(1 - self.min_ratio) / total_steps,
                                     min_ratio=self.min_ratio)

    def __call__(self, logits_fn: Callable[[Tensor], Tensor], tgt_in: Tensor, step: int, total_steps: int,
                 generator: torch.Generator | None) -> Tensor:
        """The decoder input (B, T) of the training pass: gold and guessed tokens mixed, padding kept.

        ``logits_fn(tgt_in (B, T)) -> logits (B, T, V)`` is the teacher-forced model (source bound).
        """
        with torch.no_grad():
            guess = shift_right(logits_fn(tgt_in).argmax(-1), self.bos_id)  # guess[:, t] stands for tgt_in[:, t]
        mixed = scheduled_sampling_inputs(tgt_in, guess, self.ratio(step, total_steps), generator)
        return torch.where(tgt_in == self.pad_id, tgt_in, mixed)
