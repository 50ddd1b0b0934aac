r"""The copy mechanism: a pointer-generator that can output source tokens outside the vocabulary.

Source: ML2021/2022 Transformer lectures (seeds 001/002), "Copy Mechanism" among the tips for training
seq2seq: a chatbot or a summarizer copies words (names, placeholders such as ``%s``, file names)
from its input to its output; the earliest such model is the Pointer Network. Paper: See, Liu &
Manning 2017, "Get To The Point", eqs. (8)-(9)::

    p_gen = σ(w_h·h*_t + w_s·s_t + w_x·x_t + b)
    P(w)  = p_gen P_vocab(w) + (1 - p_gen) Σ_{i: w_i = w} a_t,i

over an *extended* vocabulary: the V fixed words plus the out-of-vocabulary words of this example's
source, numbered V, V+1, ... A fixed-vocabulary softmax can only say UNK for such a word; the copy
distribution puts the attention weight of its source position on its extended id.

Computed in log space: ``log P = logaddexp(log σ(z) + log_softmax(logits), log σ(-z) + log copy)``
with ``z`` the pre-sigmoid gate, and the zeros of either part (OOV ids for the vocabulary part, ids not
in the source for the copy part) replaced by the smallest positive float, so the log is finite and
its gradient never NaN (See et al. add 1e-10 instead, with the same intent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CopyContinuation", "PointerGenerator", "continuation_mask", "selective_read", "ext_ids_to_tokens",
           "extend_vocab", "pointer_generator_log_probs", "target_to_ext_ids", "to_vocab_ids"]


def pointer_generator_log_probs(vocab_logits: Tensor, attention: Tensor, src_ext_ids: Tensor, gate_logit: Tensor,
                                n_oov: int | None = None) -> Tensor:
    r"""``log P(w)`` of the pointer-generator mixture over the extended vocabulary (See et al. 2017, eq. 9).

    ``P(w) = p_gen softmax(vocab_logits)_w + (1 - p_gen) Σ_{i: src_ext_ids_i = w} attention_i``
    with ``p_gen = sigmoid(gate_logit)``; repeated source ids add their attention.

    Args:
        vocab_logits: (*, V) scores of the fixed vocabulary.
        attention: (*, S) attention weights over the source (rows sum to 1; 0 on padding).
        src_ext_ids: LongTensor (*, S), or anything that broadcasts to it such as (B, 1, S) against
            (B, T, S): the source ids in the extended vocabulary (see :func:`extend_vocab`).
        gate_logit: (*) or (*, 1) the pre-sigmoid gate z.
        n_oov: the number of extra ids (the batch's largest OOV count). Default None =
            ``max(src_ext_ids) + 1 - V`` (at least 0); pass it to get the same width at every step.

    Returns:
        (*, V + n_oov) log-probabilities; ``exp`` of each row sums to 1 (up to the smallest float
        standing in for the zeros).

    Raises:
        ValueError: shapes that do not fit; ids outside ``[0, V + n_oov)``.
    """
    V = vocab_logits.shape[-1]
    if attention.shape[:-1] != vocab_logits.shape[:-1]:
        raise ValueError(f"vocab_logits (*, V) and attention (*, S) must share the leading dims, got "
                         f"{tuple(vocab_logits.shape)} and {tuple(attention.shape)}")
    try:
        ids = src_ext_ids.expand(attention.shape)  # (*, S)
    except RuntimeError:
        raise ValueError(f"src_ext_ids {tuple(src_ext_ids.shape)} does not broadcast to the attention's shape "
                         f"{tuple(attention.shape)}") from None
    if gate_logit.shape == vocab_logits.shape[:-1]:
        gate_logit = gate_logit.unsqueeze(-1)  # (*, 1)
    if gate_logit.shape != vocab_logits.shape[:-1] + (1,):
        raise ValueError(f"gate_logit must be (*) or (*, 1) with * = {tuple(vocab_logits.shape[:-1])}, "
                         f"got {tuple(gate_logit.shape)}")
    lo, hi = (int(ids.min()), int(ids.max())) if ids.numel() else (0, -1)
    if n_oov is None:
        n_oov = max(0, hi + 1 - V)
    if n_oov < 0:
        raise ValueError(f"n_oov must be >= 0, got {n_oov}")
    if lo < 0 or hi >= V + n_oov:
        raise ValueError(f"src_ext_ids must lie in [0, V + n_oov) = [0, {V + n_oov}), got values in [{lo}, {hi}]; "
                         f"pass a larger n_oov")
    dtype = torch.promote_types(vocab_logits.dtype, attention.dtype)
    floor = torch.finfo(dtype).tiny  # stands in for probability 0
    copy = attention.new_zeros(attention.shape[:-1] + (V + n_oov,), dtype=dtype)
    copy = copy.scatter_add(-1, ids, attention.to(dtype))  # (*, V + n_oov) Σ of the attention per id
    log_vocab = F.pad(torch.log_softmax(vocab_logits.to(dtype), dim=-1), (0, n_oov), value=math.log(floor))
    log_copy = torch.log(copy.clamp_min(floor))
    z = gate_logit.to(dtype)
    return torch.logaddexp(F.logsigmoid(z) + log_vocab, F.logsigmoid(-z) + log_copy)


class PointerGenerator(nn.Module):
    r"""The pointer-generator output layer (See et al. 2017): mixes generating from the vocabulary with
    copying a source token, by a learned soft switch p_gen.

    ``p_gen = σ(w_h·h*_t + w_s·s_t + w_x·x_t + b)``, then :func:`pointer_generator_log_probs`.

    Args:
        hidden_size: size of the decoder state s_t.
        embed_size: size of the decoder input embedding x_t; None = no ``w_x`` term (then pass
            ``input_embedding=None``). Default None.
        context_size: size of the context vector h*_t (the attention-weighted encoder states, e.g.
            ``2 * hidden`` for a bidirectional encoder). Default None = ``hidden_size``.

    Parameters: ``w_h`` (Linear context_size -> 1, no bias), ``w_s`` (hidden_size -> 1, no bias),
    ``w_x`` (embed_size -> 1, no bias, or None), ``bias`` (1,), initialized to 0 (p_gen = 0.5 at
    zero inputs).

    Shapes:
        state (*, hidden_size), context (*, context_size), input_embedding (*, embed_size) or None,
        vocab_logits (*, V), attention (*, S), src_ext_ids (*, S) or broadcastable (e.g. (B, 1, S))
        -> log-probabilities (*, V + n_oov).

    Raises:
        ValueError: sizes < 1; inputs whose last dims do not match; see :func:`pointer_generator_log_probs`.

    Example::

        pg = PointerGenerator(hidden_size=256, embed_size=128, context_size=512)
        log_p = pg(s, h_star, x, vocab_logits, attn, src_ext_ids, n_oov=max(len(o) for o in oovs))
        loss = F.nll_loss(log_p.flatten(0, -2), tgt_ext_ids.flatten())
    """

    def __init__(self, hidden_size: int, embed_size: int | None = None, context_size: int | None = None):
        super().__init__()
        context_size = hidden_size if context_size is None else context_size
        for name, value in (("hidden_size", hidden_size), ("context_size", context_size)) + (
                (("embed_size", embed_size),) if embed_size is not None else ()):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.hidden_size, self.embed_size, self.context_size = hidden_size, embed_size, context_size
        self.w_h = nn.Linear(context_size, 1, bias=False)
        self.w_s = nn.Linear(hidden_size, 1, bias=False)
        self.w_x = nn.Linear(embed_size, 1, bias=False) if embed_size is not None else None
        self.bias = nn.Parameter(torch.zeros(1))

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, embed_size={self.embed_size}, context_size={self.context_size}"

    def gate_logit(self, state: Tensor, context: Tensor, input_embedding: Tensor | None = None) -> Tensor:
        """The pre-sigmoid gate ``z = w_h·h* + w_s·s + w_x·x + b``, shape (*, 1); ``p_gen = sigmoid(z)``."""
        if state.shape[-1] != self.hidden_size or context.shape[-1] != self.context_size:
            raise ValueError(f"state must be (*, {self.hidden_size}) and context (*, {self.context_size}), got "
                             f"{tuple(state.shape)} and {tuple(context.shape)}")
        z = self.w_h(context) + self.w_s(state) + self.bias
        if self.w_x is not None:
            if input_embedding is None or input_embedding.shape[-1] != self.embed_size:
                got = None if input_embedding is None else tuple(input_embedding.shape)
                raise ValueError(f"input_embedding must be (*, {self.embed_size}) (embed_size was given), got {got}")
            z = z + self.w_x(input_embedding)
        elif input_embedding is not None:
            raise ValueError("input_embedding was given but the module has no w_x; build it with embed_size=...")
        return z

    def forward(self, state: Tensor, context: Tensor, input_embedding: Tensor | None, vocab_logits: Tensor,
                attention: Tensor, src_ext_ids: Tensor, n_oov: int | None = None) -> Tensor:
        z = self.gate_logit(state, context, input_embedding)  # (*, 1)
        return pointer_generator_log_probs(vocab_logits, attention, src_ext_ids, z, n_oov)


# --------------------------------------------------------------------------- copying spans in order


def continuation_mask(src: Tensor, prev_tokens: Tensor, pad_id: int = 0) -> Tensor:
    """Which source positions would continue a copy of the previous output token.

    ``mask[b, t, s] = (src[b, s - 1] == prev_tokens[b, t]) and src[b, s] != pad_id`` for s >= 1 (False
    at s = 0 and where ``prev_tokens`` is padding): if the decoder's input at step t (the token it output
    at step t - 1) was copied from source position s - 1, position s holds the next piece of that span.

    Args:
        src: LongTensor (B, S) source ids, right-padded with ``pad_id``.
        prev_tokens: LongTensor (B, T) the decoder inputs (BOS, y_1, ..., y_{T-1}).
        pad_id: the padding id. Default 0.

    Returns:
        BoolTensor (B, T, S).

    Raises:
        ValueError: not two 2-D tensors with the same batch size.

    Example::

        continuation_mask(torch.tensor([[5, 6, 7, 0]]), torch.tensor([[2, 5, 6]]))
        # [[[F, F, F, F],    BOS: nothing to continue
        #   [F, T, F, F],    after 5, position 1 (6) continues the span
        #   [F, F, T, F]]]   after 6, position 2 (7)
    """
    if src.dim() != 2 or prev_tokens.dim() != 2 or src.shape[0] != prev_tokens.shape[0]:
        raise ValueError(f"src (B, S) and prev_tokens (B, T) must be 2-D with the same B, got "
                         f"{tuple(src.shape)} and {tuple(prev_tokens.shape)}")
    hit = src[:, None, :-1] == prev_tokens[:, :, None]  # (B, T, S - 1): src[s - 1] == y_{t-1}
    hit = hit & (src[:, None, 1:] != pad_id) & (prev_tokens[:, :, None] != pad_id)
    return F.pad(hit, (1, 0), value=False)  # position 0 continues nothing


def selective_read(memory: Tensor, src: Tensor, prev_tokens: Tensor, pad_id: int = 0) -> Tensor:
    """CopyNet's selective read (Gu et al. 2016, eq. 9), with uniform weights: for each decoder input
    y_{t-1}, the mean of the encoder states at the source positions that hold that token, 0 where none does.

    ``ζ_t = Σ_τ ρ_tτ m_τ`` with ``ρ_tτ = [x_τ = y_{t-1}] / #{τ': x_τ' = y_{t-1}}`` (CopyNet weights the
    matches by the previous step's copy probabilities, which makes decoding sequential; the uniform
    weights keep teacher-forced training parallel). Fed to the decoder with its input embedding, it tells
    the decoder *where* in the source the token it just wrote came from, so copying can move on from there.

    Args:
        memory: (B, S, D) encoder states.
        src: LongTensor (B, S) source ids, padded with ``pad_id``.
        prev_tokens: LongTensor (B, T) decoder inputs.
        pad_id: the padding id (padding never matches). Default 0.

    Returns:
        (B, T, D).

    Raises:
        ValueError: shapes that do not fit.
    """
    if memory.dim() != 3 or src.shape != memory.shape[:2] or prev_tokens.dim() != 2 or prev_tokens.shape[0] != src.shape[0]:
        raise ValueError(f"memory (B, S, D), src (B, S) and prev_tokens (B, T) must fit, got {tuple(memory.shape)}, "
                         f"{tuple(src.shape)} and {tuple(prev_tokens.shape)}")
    match = (src[:, None, :] == prev_tokens[:, :, None]) & (src[:, None, :] != pad_id)  # (B, T, S)
    rho = match.to(memory.dtype)
    rho = rho / rho.sum(-1, keepdim=True).clamp(min=1.0)
    return rho @ memory


class CopyContinuation(nn.Module):
    r"""A location-aware term for the copy attention: a learned bonus for the source position right after
    the one the previous output token was copied from, so multi-piece names are copied in order.

    ``score_ts <- score_ts + λ_t · mask_ts`` with ``λ_t = w·h_t + b`` (a bonus the decoder state h_t sets
    per step, so the model can choose when to continue a span) and ``mask`` from
    :func:`continuation_mask`. ``w`` and ``b`` start at 0: the attention is unchanged until they learn.

    Why: a content-based attention that has just copied ``--nocheck`` knows *what* it copied but not
    *where*; when the same piece occurs twice (``order``, ``-``) it can jump back and loop
    (``--nheck-order-order-order``). The lectures' seq2seq tips name the cure "Guided Attention"
    (monotonic, location-aware attention); CopyNet's "selective read" (Gu et al. 2016, "Incorporating
    Copying Mechanism in Sequence-to-Sequence Learning"; :func:`selective_read`) feeds the decoder the
    source positions matching y_{t-1} for the same reason. This term is the simplest
    form of both: the positions come from matching ids, the bonus goes to their successors.

    Args:
        hidden_size: size of the decoder state h_t.

    Shapes:
        scores (B, T, S) pre-softmax attention scores, state (B, T, hidden_size), mask (B, T, S) bool
        -> scores (B, T, S).

    Raises:
        ValueError: hidden_size < 1; a state whose last dim is not hidden_size; mask not the scores' shape.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"hidden_size must be an int >= 1, got {hidden_size!r}")
        self.hidden_size = hidden_size
        self.proj = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}"

    def forward(self, scores: Tensor, state: Tensor, mask: Tensor) -> Tensor:
        if state.shape[-1] != self.hidden_size:
            raise ValueError(f"state must be (*, {self.hidden_size}), got {tuple(state.shape)}")
        if mask.shape != scores.shape:
            raise ValueError(f"mask {tuple(mask.shape)} must have the scores' shape {tuple(scores.shape)}")
        return scores + self.proj(state) * mask.to(scores.dtype)  # λ_t (B, T, 1) broadcast over S


# --------------------------------------------------------------------------- the extended vocabulary


def _vocab_size(vocab: Mapping[str, int], vocab_size: int | None) -> int:
    if vocab_size is not None:
        return vocab_size
    if not vocab:
        raise ValueError("vocab is empty")
    return max(vocab.values()) + 1


def extend_vocab(src_tokens: Sequence[Sequence[str]], vocab: Mapping[str, int], pad_id: int = 0,
                 vocab_size: int | None = None) -> tuple[Tensor, list[list[str]]]:
    """Source ids in the extended vocabulary: each example's OOV words get ids V, V+1, ... in order of
    first appearance (a repeated OOV word keeps its id).

    The encoder, whose embedding table has only V rows, reads ``to_vocab_ids(src_ext_ids, V, unk_id)``
    (OOVs as UNK); the pointer-generator scatters attention onto ``src_ext_ids``.

    Args:
        src_tokens: N token lists.
        vocab: word -> id in ``[0, V)``.
        pad_id: written after the end of shorter sources (harmless: padding gets no attention). Default 0.
        vocab_size: V. Default None = ``max(vocab.values()) + 1``.

    Returns:
        ``(src_ext_ids, oovs)``: LongTensor (N, S_max) and, per example, its OOV words (``oovs[n][j]``
        has id ``V + j``).

    Example::

        ext, oovs = extend_vocab([["open", "%s", "now"]], {"<unk>": 0, "open": 1, "now": 2})
        # ext = [[1, 3, 2]], oovs = [["%s"]]
    """
    V = _vocab_size(vocab, vocab_size)
    rows, oovs = [], []
    for tokens in src_tokens:
        oov: dict[str, int] = {}
        ids = []
        for w in tokens:
            if w in vocab:
                ids.append(vocab[w])
            else:
                ids.append(V + oov.setdefault(w, len(oov)))
        rows.append(ids)
        oovs.append(list(oov))
    S = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), S), pad_id, dtype=torch.long)
    for n, ids in enumerate(rows):
        out[n, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out, oovs


def target_to_ext_ids(tgt_tokens: Sequence[Sequence[str]], vocab: Mapping[str, int], oovs: Sequence[Sequence[str]],
                      unk_id: int, pad_id: int = 0, vocab_size: int | None = None) -> Tensor:
    """Target ids in the extended vocabulary: in-vocabulary words keep their id, an OOV word that appears
    in the example's source gets its copy id ``V + j``, any other OOV word becomes ``unk_id``.

    Args:
        tgt_tokens: N token lists.
        vocab: word -> id in ``[0, V)``.
        oovs: the per-example OOV lists from :func:`extend_vocab`.
        unk_id: the id of an OOV word that cannot be copied.
        pad_id: after the end of shorter targets (e.g. -100 for ``ignore_index``). Default 0.
        vocab_size: V. Default None = ``max(vocab.values()) + 1``.

    Returns:
        LongTensor (N, T_max).

    Raises:
        ValueError: ``len(tgt_tokens) != len(oovs)``.
    """
    if len(tgt_tokens) != len(oovs):
        raise ValueError(f"tgt_tokens and oovs must have one entry per example, got {len(tgt_tokens)} and {len(oovs)}")
    V = _vocab_size(vocab, vocab_size)
    T = max((len(t) for t in tgt_tokens), default=0)
    out = torch.full((len(tgt_tokens), T), pad_id, dtype=torch.long)
    for n, (tokens, oov) in enumerate(zip(tgt_tokens, oovs)):
        copy_id = {w: V + j for j, w in enumerate(oov)}
        ids = [vocab[w] if w in vocab else copy_id.get(w, unk_id) for w in tokens]
        out[n, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def to_vocab_ids(ext_ids: Tensor, vocab_size: int, unk_id: int) -> Tensor:
    """Map extended ids back into the fixed vocabulary (ids >= V become ``unk_id``): the encoder's
    input, and the next decoder input after the model copied an OOV word (See et al. 2017)."""
    return ext_ids.masked_fill(ext_ids >= vocab_size, unk_id)


def ext_ids_to_tokens(ids: Sequence[int] | Tensor, itos: Sequence[str] | Mapping[str, int],
                      oov: Sequence[str]) -> list[str]:
    """Words of a sequence of extended ids: ``itos[i]`` for ``i < V``, ``oov[i - V]`` above.

    Args:
        ids: a 1-D sequence or LongTensor of extended ids.
        itos: id -> word list, or the word -> id dict (inverted here).
        oov: this example's OOV list from :func:`extend_vocab`.

    Raises:
        ValueError: an id beyond ``V + len(oov)``.
    """
    if isinstance(itos, Mapping):
        inverse = {i: w for w, i in itos.items()}
        V = max(inverse) + 1
        lookup = lambda i: inverse[i]  # noqa: E731
    else:
        V = len(itos)
        lookup = lambda i: itos[i]  # noqa: E731
    ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    words = []
    for i in ids:
        if 0 <= i < V:
            words.append(lookup(i))
        elif V <= i < V + len(oov):
            words.append(oov[i - V])
        else:
            raise ValueError(f"id {i} is outside the extended vocabulary [0, {V + len(oov)})")
    return words
