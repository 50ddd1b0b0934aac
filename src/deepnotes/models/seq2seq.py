r"""Sequence-to-sequence translation models: an RNN encoder-decoder with attention, and the Transformer.

Sources: ML2021/2022 homework 5 "Machine Translation" (EN->ZH; the "simple" baseline is an RNN
seq2seq, the "strong" one a Transformer), lectures "Transformer (上/下)" (encoder, decoder, cross
attention, the autoregressive decoder stopped by END) and "Seq2seq" tips (teacher forcing, beam
search); EE-559 12-2 (GRU). Papers: Bahdanau et al. 2015 (bidirectional RNN encoder, attention over
its states); Luong, Pham & Manning 2015 (global attention, the "general" score, attentional hidden
state); Vaswani et al. 2017 (the Transformer, embeddings scaled by sqrt(d_model), sinusoidal
positions); Press & Wolf 2017 (tying the output projection to the target embedding).

:class:`RNNSeq2Seq` (HW5's sample RNN model, written out)::

    encoder:  (e_1 .. e_S), h_S = BiGRU(Emb(x))                    e_s = [e→_s ; e←_s]   (2H)
    decoder:  o_t = GRU(Emb(y_{t-1}), o_{t-1}),  o_0 = [h→_S ; h←_1] per layer           (2H)
    score:    a_ts = softmax_s(o_t^T W_a e_s)                       Luong's "general" score
    context:  c_t = Σ_s a_ts e_s
    output:   h̃_t = tanh(W_c [c_t ; o_t]),  logits_t = E_tgt h̃_t  (tied) or W_out h̃_t + b

This is Luong's global attention *without input feeding* (h̃_{t-1} is not fed to the next decoder
step), which is also the layout of HW5's sample ``RNNDecoder`` (GRU over the whole target, then
an attention layer over the encoder outputs). Because the decoder GRU does not depend on the
attention, training runs it over the whole target in one call. (Bahdanau's additive attention
computes the context from o_{t-1} *before* the GRU step, which forces a Python loop over time.)

:class:`TransformerSeq2Seq`: ``Emb(x) * sqrt(d_model) + PE``, dropout, our
:class:`~deepnotes.nn.transformer.Transformer` (post- or pre-norm, final LayerNorms), and the
output projection tied to the target embedding. Source and target share one embedding matrix when
the vocabulary is joint (HW5 / fairseq ``share_all_embeddings``).

**Copy mechanism** (``copy=True`` in either config; the lectures' "Copy Mechanism" tip, See et al.
2017): the output becomes ``P(w) = p_gen softmax(logits)_w + (1 - p_gen) Σ_{s: src_s = w} a_ts``.
The RNN reuses its Luong attention a_ts; the Transformer gets one extra single-head attention of its
final decoder state over the encoder output. With one joint subword vocabulary every source token
is also a target token, so no extended vocabulary is needed; the model then returns
log-probabilities (which ``log_softmax`` and the cross-entropy leave unchanged) instead of logits.
With ``copy_continuation=True`` as well, the copy attention gets a location-aware term
(:class:`~deepnotes.nn.copy.CopyContinuation`, the lectures' "Guided Attention" tip): a learned bonus
``λ_t = w·h_t + b`` on the score of each source position s whose predecessor s - 1 holds the previous
output token, so spans of several pieces are copied in order. (For the RNN the copy attention is its
Luong attention, so the term moves the context vector too.)
After each forward pass or decoding step, ``model.last_copy_prob`` holds the copy probabilities
``1 - p_gen`` of that call, (B, T) or (R, 1), detached (None before the first; for inspection only).

**Decoding interface.** Both models have ``encode(src) -> EncoderOutput`` and
``step_logits(memory, tokens, origin) -> (R, V)``, the ``step_fn`` of :mod:`deepnotes.nn.decoding`
with the memory bound (``origin[r]`` = the example whose memory row r reads). ``step_logits``
recomputes the whole prefix (simple and exact); :meth:`Seq2SeqModel.step_fn` returns an
:class:`IncrementalStepFn` that caches each prefix's decoder state (the GRU state; the
Transformer's per-layer self-attention keys and values) and only runs the newest token, tested
equal to ``step_logits`` and to ``forward``. :meth:`Seq2SeqModel.generate` decodes a batch with
greedy search or beam search (several examples at once: beam rows are routed by ``origin``).

**Registry, training, translating.** ``create_model("rnn-seq2seq" | "transformer-seq2seq", ...)`` builds the two
models (:func:`model_from_flags` from the translation lab's flags); :class:`Seq2SeqTask` is their training contract
for :class:`deepnotes.train.Trainer` (token cross-entropy with label smoothing, AdamW with the Transformer paper's
betas, teacher forcing or scheduled sampling); :func:`translate` and :class:`Translator` turn sentences into
translations (subword encoding, protected spans, batches of similar lengths, greedy or beam search).

Deliberate differences: the incremental path runs the eval-mode computation (no dropout), so
decode under ``model.eval()`` (``generate`` does it); the Transformer's incremental step calls the
projections of our attention modules directly and attends with ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.data.translation import BOS_ID, EOS_ID, PAD_ID, SubwordTokenizer, protect_sources, restore_spans
from deepnotes.metrics.translation import score
from deepnotes.models.registry import register_model
from deepnotes.nn.attention import SinusoidalPositionalEncoding
from deepnotes.nn.copy import (CopyContinuation, PointerGenerator, continuation_mask, pointer_generator_log_probs,
                               selective_read)
from deepnotes.nn.decoding import ScheduledSampler, beam_search, block_repeated_ngrams, greedy_decode
from deepnotes.nn.recurrent import GRU
from deepnotes.nn.transformer import Transformer
from deepnotes.train.engine import optimizer_impl_kwargs
from deepnotes.train.task import IGNORE_INDEX, Step, StepOutput, Task, classification_sums, flatten_tokens

__all__ = ["EncoderOutput", "IncrementalStepFn", "RNNSeq2Seq", "RNNSeq2SeqConfig", "Seq2SeqModel", "Seq2SeqTask",
           "TransformerSeq2Seq", "TransformerSeq2SeqConfig", "Translator", "copy_rates", "model_from_flags",
           "rnn_seq2seq", "transformer_seq2seq", "translate"]

State = tuple[Tensor, ...]  # a decoder state: tensors whose first dimension is the row R


# ----------------------------------------------------------------------------------- shared pieces
@dataclass
class EncoderOutput:
    """What the encoder hands the decoder.

    Attributes:
        states: (B, S, C) encoder outputs (C = 2H for the RNN, d_model for the Transformer).
        padding_mask: (B, S) bool, True at source padding.
        init_state: the RNN decoder's initial state (num_layers, B, 2H); None for the Transformer.
        src: (B, S) the source token ids (the copy mechanism copies them); None when not needed.
        cache: per-memory values computed once for decoding (the Transformer's cross-attention keys
            and values), filled lazily.
    """

    states: Tensor
    padding_mask: Tensor
    init_state: Tensor | None = None
    src: Tensor | None = None
    cache: dict = field(default_factory=dict)

    def select(self, origin: Tensor) -> "EncoderOutput":
        """The memory of rows ``origin`` (R,): row r is example ``origin[r]`` (a batch of R)."""
        return EncoderOutput(self.states[origin], self.padding_mask[origin],
                             None if self.init_state is None else self.init_state[:, origin],
                             None if self.src is None else self.src[origin])


def _check_common(vocab_size: int, tgt_vocab_size: int | None, share_embeddings: bool, pad_id: int,
                  dropout: float, copy: bool = False, copy_continuation: bool = False,
                  selective_read: bool = False) -> None:
    if vocab_size < 1 or (tgt_vocab_size is not None and tgt_vocab_size < 1):
        raise ValueError(f"vocab sizes must be >= 1, got vocab_size={vocab_size}, tgt_vocab_size={tgt_vocab_size}")
    if share_embeddings and tgt_vocab_size not in (None, vocab_size):
        raise ValueError(f"share_embeddings needs one joint vocabulary, got vocab_size={vocab_size} and "
                         f"tgt_vocab_size={tgt_vocab_size}; pass share_embeddings=False")
    if not 0 <= pad_id < min(vocab_size, tgt_vocab_size or vocab_size):
        raise ValueError(f"pad_id={pad_id} must be a token id of both vocabularies")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if copy and tgt_vocab_size not in (None, vocab_size):
        raise ValueError(f"copy needs one joint vocabulary (a source id is a target id), got vocab_size={vocab_size} "
                         f"and tgt_vocab_size={tgt_vocab_size}")
    if copy_continuation and not copy:
        raise ValueError("copy_continuation is a term of the copy attention; it needs copy=True")
    if selective_read and not copy:
        raise ValueError("selective_read feeds the decoder where it copied from; it needs copy=True")


def _check_inputs(inputs, name: str) -> tuple[Tensor, Tensor]:
    if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
        raise ValueError(f"{name}.forward expects one argument (src, tgt_in), got {type(inputs).__name__}")
    src, tgt_in = inputs
    for n, t in (("src", src), ("tgt_in", tgt_in)):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.dtype != torch.long:
            shape = (t.dtype, tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name}: {n} must be a LongTensor (B, ·) of token ids, got {shape}")
    if src.shape[0] != tgt_in.shape[0]:
        raise ValueError(f"{name}: src and tgt_in have different batch sizes {src.shape[0]} and {tgt_in.shape[0]}")
    return src, tgt_in


class Seq2SeqModel(nn.Module):
    """Base of the two models: embeddings, the (tied) output projection, forward, decoding.

    Subclasses define ``encode(src) -> EncoderOutput``, ``decode(memory, tgt_in) -> logits (B, T, V)``,
    ``_initial_state(memory, origin) -> State`` and ``_extend(memory, state, token, origin) ->
    (logits (R, V), State)`` (one decoder step from a cached state).
    """

    pad_id: int
    last_copy_prob: Tensor | None = None  # 1 - p_gen of the latest call, (B, T); see the module docstring
    last_attention: Tensor | None = None  # the attention a_ts of the latest call, (B, T, S), detached: the RNN's
    # Luong attention, the Transformer's copy attention (None without copy); beam search's coverage penalty reads it

    @property
    def has_alignment(self) -> bool:
        """Whether the model has one attention over the source to read as an alignment (``last_attention``)."""
        return True

    def _build_embeddings(self, vocab_size: int, tgt_vocab_size: int | None, dim: int, share: bool, tie: bool,
                          out_dim: int) -> None:
        if tie and out_dim != dim:
            raise ValueError(f"a tied output projection needs its input size {out_dim} to equal the embedding size {dim}")
        V_tgt = tgt_vocab_size or vocab_size
        self.src_embed = nn.Embedding(vocab_size, dim, padding_idx=self.pad_id)
        # One Parameter is registered once only (a shared tensor under two names cannot be saved as safetensors).
        self.tgt_embed = None if share else nn.Embedding(V_tgt, dim, padding_idx=self.pad_id)
        for emb in (self.src_embed, self.tgt_embed):
            if emb is not None:
                nn.init.normal_(emb.weight, mean=0.0, std=dim**-0.5)  # fairseq's init; logits O(1) when tied
                with torch.no_grad():
                    emb.weight[self.pad_id].zero_()
        self.out_proj = None if tie else nn.Linear(out_dim, V_tgt)

    @property
    def target_embedding(self) -> nn.Embedding:
        return self.src_embed if self.tgt_embed is None else self.tgt_embed

    def _mix_copy(self, logits: Tensor, attention: Tensor, memory: EncoderOutput, gate_logit: Tensor) -> Tensor:
        """Pointer-generator output (See et al. 2017, eq. 9) over the joint vocabulary.

        ``P(w) = p_gen softmax(logits)_w + (1 - p_gen) Σ_{s: src_s = w} a_s``: with one subword vocabulary
        for both languages every source token has an id, so no extended vocabulary is needed.

        Shapes: logits (B, T, V), attention (B, T, S), gate_logit (B, T, 1) -> log-probabilities (B, T, V),
        which the cross-entropy and the decoders take as logits (``log_softmax`` leaves them unchanged).
        """
        if memory.src is None:
            raise ValueError(f"{type(self).__name__}: the copy mechanism needs the source ids in EncoderOutput.src")
        self.last_copy_prob = torch.sigmoid(-gate_logit.detach()).squeeze(-1)  # 1 - p_gen, for inspection
        return pointer_generator_log_probs(logits, attention, memory.src[:, None, :], gate_logit, n_oov=0)

    def project(self, h: Tensor) -> Tensor:
        """Output projection: (…, C) -> logits (…, V), through the target embedding when tied."""
        if self.out_proj is None:
            return F.linear(h, self.target_embedding.weight)
        return self.out_proj(h)

    def forward(self, inputs: tuple[Tensor, Tensor]) -> Tensor:
        """Teacher-forced logits: ``inputs = (src (B, S), tgt_in (B, T))`` -> logits (B, T, V).

        ``tgt_in`` is the target shifted right (BOS first); padding at its end only affects the
        logits of padded positions (the decoder is causal).
        """
        src, tgt_in = _check_inputs(inputs, type(self).__name__)
        return self.decode(self.encode(src), tgt_in)

    def encode(self, src: Tensor) -> EncoderOutput:
        raise NotImplementedError

    def decode(self, memory: EncoderOutput, tgt_in: Tensor) -> Tensor:
        raise NotImplementedError

    def _initial_state(self, memory: EncoderOutput, origin: Tensor) -> State:
        raise NotImplementedError

    def _extend(self, memory: EncoderOutput, state: State, token: Tensor, origin: Tensor) -> tuple[Tensor, State]:
        raise NotImplementedError

    def step_logits(self, memory: EncoderOutput, tokens: Tensor, origin: Tensor) -> Tensor:
        """Next-token logits of every prefix, recomputed from scratch (the exact, uncached step_fn).

        Shapes:
            tokens (R, T) prefixes (BOS first), origin (R,) example indices into ``memory`` -> (R, V).
        """
        return self.decode(memory.select(origin), tokens)[:, -1]

    def step_fn(self, memory: EncoderOutput) -> "IncrementalStepFn":
        """A cached ``step_fn(tokens, origin)`` for :mod:`deepnotes.nn.decoding` over ``memory``."""
        return IncrementalStepFn(self, memory)

    @torch.no_grad()
    def generate(self, src: Tensor, bos_id: int, eos_id: int, max_len: int, beam_size: int = 1,
                 length_penalty: float = 1.0, penalty: Literal["gnmt", "average"] = "gnmt",
                 cached: bool = True, min_len: int = 1, coverage_penalty: float = 0.0,
                 no_repeat_ngram_size: int = 0, length_ratio: float = 0.0) -> list[list[int]]:
        """Translate a batch: greedy (``beam_size=1``) or beam search; the model is put in eval mode meanwhile.

        Args:
            src: LongTensor (B, S), padded with ``pad_id``.
            bos_id, eos_id: start and end tokens of the target.
            max_len: most target tokens generated (EOS included), >= 1.
            beam_size: 1 = greedy decoding, else beam search with this many beams per example.
            length_penalty, penalty: the beam's length normalization (see
                :func:`deepnotes.nn.decoding.length_normalizer`).
            cached: use :class:`IncrementalStepFn` (default) or the uncached :meth:`step_logits`.
            min_len: EOS is forbidden until this many tokens have been generated (default 1: no empty
                output, fairseq's ``--min-len``); 0 allows an empty translation. PAD and BOS are never
                generated.
            coverage_penalty: β of GNMT's coverage penalty in beam search (see
                :func:`deepnotes.nn.decoding.beam_search`) over ``last_attention``; default 0 (none);
                ignored by greedy decoding.
            no_repeat_ngram_size: n > 0 forbids any output n-gram from occurring twice (greedy and beam; see
                :func:`deepnotes.nn.decoding.block_repeated_ngrams`); default 0 (off).
            length_ratio: r > 0 gives beam search's finished hypotheses BLEU's brevity penalty against the
                expected length r x (the source's non-padding tokens) (``target_length`` of
                :func:`deepnotes.nn.decoding.beam_search`; with ``penalty="average"`` and ``length_penalty=1``
                the BP-Norm of Yang et al. 2018); default 0 (off); ignored by greedy decoding.

        Raises:
            ValueError: ``coverage_penalty > 0`` for a model without an alignment (a Transformer without copy);
                ``length_ratio`` < 0.

        Returns:
            B token lists, without BOS and EOS.
        """
        if coverage_penalty > 0 and not self.has_alignment:
            raise ValueError(f"{type(self).__name__}: the coverage penalty reads one attention over the source; "
                             f"this model has none (build the Transformer with copy=True)")
        if not length_ratio >= 0:
            raise ValueError(f"length_ratio must be >= 0, got {length_ratio}")
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(src)
            B = src.shape[0]
            inner: Callable[[Tensor, Tensor], Tensor] = (
                self.step_fn(memory) if cached else (lambda tok, org: self.step_logits(memory, tok, org)))

            def step(tokens: Tensor, origin: Tensor) -> Tensor:
                logits = inner(tokens, origin).clone()
                logits[:, [self.pad_id, bos_id]] = float("-inf")  # never a target: never an output
                if tokens.shape[1] <= min_len:  # tokens holds BOS + the tokens generated so far
                    logits[:, eos_id] = float("-inf")
                return block_repeated_ngrams(logits, tokens, no_repeat_ngram_size)

            def step_with_attention(tokens: Tensor, origin: Tensor) -> tuple[Tensor, Tensor]:
                logits = step(tokens, origin)
                return logits, self.last_attention[:, -1]  # (R, S) of the newest position

            if beam_size == 1:
                out = greedy_decode(step, bos_id, eos_id, max_len, batch_size=B, device=src.device)
                rows = [r[1:].tolist() for r in out]
            else:
                cover = coverage_penalty > 0
                seqs, _ = beam_search(step_with_attention if cover else step, bos_id, eos_id, beam_size, max_len,
                                      batch_size=B, length_penalty=length_penalty, penalty=penalty, device=src.device,
                                      coverage_penalty=coverage_penalty,
                                      source_mask=(src != self.pad_id) if cover else None,
                                      target_length=(length_ratio * (src != self.pad_id).sum(1).double()
                                                     if length_ratio > 0 else None))
                rows = [s[1:].tolist() for s in seqs]
        finally:
            self.train(was_training)
        return [r[: r.index(eos_id)] if eos_id in r else r for r in rows]


class IncrementalStepFn:
    """``step_fn(tokens (R, T), origin (R,)) -> logits (R, V)`` that runs only the newest token of each prefix.

    It keeps the decoder state of every prefix of the previous call, keyed by ``(origin, prefix)``; a
    call whose rows all extend a prefix of the previous call by one token (what greedy decoding and
    beam search do) gathers those states (``state[parent_rows]``, so beams may be reordered or
    dropped) and runs one step. Otherwise (the first call, or a prefix it has not seen) it
    recomputes every row's state token by token. The state of a row must only depend on its prefix
    and origin, which holds for both models.

    Attributes:
        steps: calls answered from the cache; rebuilt: calls that recomputed the prefixes.
    """

    def __init__(self, model: Seq2SeqModel, memory: EncoderOutput):
        self.model, self.memory = model, memory
        self._keys: dict[bytes, int] = {}
        self._state: State | None = None
        self.steps = self.rebuilt = 0

    def __call__(self, tokens: Tensor, origin: Tensor) -> Tensor:
        R, T = tokens.shape
        rows = torch.cat([origin[:, None], tokens], dim=1).cpu().numpy()  # (R, 1 + T): the cache keys
        parents = [self._keys.get(row[:-1].tobytes()) for row in rows] if T > 1 else []
        if T > 1 and self._state is not None and all(p is not None for p in parents):
            idx = torch.tensor(parents, dtype=torch.long, device=self._state[0].device)
            state = tuple(s[idx] for s in self._state)
            self.steps += 1
        else:  # no usable cache: run the prefix (all but its last token) from the initial state
            state = self.model._initial_state(self.memory, origin)
            for t in range(T - 1):
                _, state = self.model._extend(self.memory, state, tokens[:, t], origin)
            self.rebuilt += 1
        logits, state = self.model._extend(self.memory, state, tokens[:, -1], origin)
        self._state = state
        self._keys = {row.tobytes(): r for r, row in enumerate(rows)}
        return logits


# ----------------------------------------------------------------------------------- RNN seq2seq
@dataclass(frozen=True)
class _SharedConfig:
    """The fields both models' configs have (documented with each config)."""

    vocab_size: int
    tgt_vocab_size: int | None = None
    dropout: float = 0.1
    share_embeddings: bool = True
    tie_output: bool = True
    pad_id: int = 0
    copy: bool = False
    copy_continuation: bool = False


@dataclass(frozen=True)
class RNNSeq2SeqConfig(_SharedConfig):
    """Sizes of :class:`RNNSeq2Seq` (HW5's sample RNN: embeddings 256, encoder hidden 512 per direction).

    Attributes:
        vocab_size: the source vocabulary (the joint one when ``tgt_vocab_size`` is None).
        tgt_vocab_size: a separate target vocabulary; None = one joint vocabulary.
        embedding_dim: E, token embedding size (also h̃'s size, for the tied projection).
        hidden_size: H per encoder direction; the decoder's state is 2H.
        num_layers: GRU layers of the encoder and of the decoder.
        dropout: on embeddings, between GRU layers and on h̃.
        share_embeddings: one embedding matrix for source and target (needs one vocabulary).
        tie_output: output projection = target embedding matrix.
        pad_id: padding token id.
        fused: run the GRUs with torch's fused kernel on their own parameters (the GRU's ``use_fused``; tested
            equal), instead of the step-by-step GRU.
        copy: a pointer-generator output (See et al. 2017): the attention weights a_ts double as a
            distribution for copying source tokens, mixed with the vocabulary softmax by the gate
            ``p_gen = σ(w_h·c_t + w_s·o_t + w_x·Emb(y_{t-1}) + b)``; the model then returns
            log-probabilities in place of logits. Needs one joint vocabulary.
        copy_continuation: add :class:`~deepnotes.nn.copy.CopyContinuation`'s bonus ``λ_t = w·o_t + b`` to
            the attention score of the source positions that follow a source copy of y_{t-1} (module
            docstring). Needs ``copy``.
    """

    embedding_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 1
    fused: bool = True


class RNNSeq2Seq(Seq2SeqModel):
    """GRU encoder-decoder with Luong "general" global attention (module docstring's equations).

    Args:
        cfg: :class:`RNNSeq2SeqConfig`.

    Shapes:
        forward((src (B, S), tgt_in (B, T))) -> logits (B, T, V); encode(src) -> EncoderOutput with
        states (B, S, 2H) and init_state (num_layers, B, 2H).

    Raises:
        ValueError: bad sizes; inputs not two LongTensors (B, ·) with the same B.

    Example::

        model = RNNSeq2Seq(RNNSeq2SeqConfig(vocab_size=8000))
        logits = model((src, tgt_in))                     # (B, T, 8000)
        hyps = model.generate(src, bos_id=2, eos_id=3, max_len=50, beam_size=5)
    """

    def __init__(self, cfg: RNNSeq2SeqConfig):
        super().__init__()
        _check_common(cfg.vocab_size, cfg.tgt_vocab_size, cfg.share_embeddings, cfg.pad_id, cfg.dropout, cfg.copy,
                      cfg.copy_continuation)
        if cfg.embedding_dim < 1 or cfg.hidden_size < 1 or cfg.num_layers < 1:
            raise ValueError(f"embedding_dim, hidden_size, num_layers must be >= 1, got {cfg.embedding_dim}, "
                             f"{cfg.hidden_size}, {cfg.num_layers}")
        self.cfg, self.pad_id = cfg, cfg.pad_id
        E, H, L = cfg.embedding_dim, cfg.hidden_size, cfg.num_layers
        between = cfg.dropout if L > 1 else 0.0
        self._build_embeddings(cfg.vocab_size, cfg.tgt_vocab_size, E, cfg.share_embeddings, cfg.tie_output, E)
        self.encoder = GRU(E, H, L, batch_first=True, bidirectional=True, dropout=between, use_fused=cfg.fused)
        self.decoder = GRU(E, 2 * H, L, batch_first=True, dropout=between, use_fused=cfg.fused)
        self.attn_score = nn.Linear(2 * H, 2 * H, bias=False)  # W_a of the "general" score
        self.attn_combine = nn.Linear(4 * H, E, bias=False)  # W_c: [c_t ; o_t] -> h̃_t
        self.dropout = nn.Dropout(cfg.dropout)
        self.pointer = PointerGenerator(2 * H, embed_size=E, context_size=2 * H) if cfg.copy else None
        self.continuation = CopyContinuation(2 * H) if cfg.copy_continuation else None

    def encode(self, src: Tensor) -> EncoderOutput:
        """BiGRU over the source: states (B, S, 2H), and the decoder's initial state per layer (L, B, 2H)."""
        pad = src == self.pad_id  # (B, S)
        lengths = (~pad).sum(dim=1)
        if int(lengths.min()) < 1:
            raise ValueError("RNNSeq2Seq.encode: a source row is all padding; every source needs >= 1 token")
        x = self.dropout(self.src_embed(src))  # (B, S, E)
        states, h_n = self.encoder(x, lengths=lengths)  # (B, S, 2H), (2L, B, H)
        L = self.cfg.num_layers
        h0 = h_n.view(L, 2, *h_n.shape[1:])  # (L, 2, B, H): forward final, backward final
        h0 = torch.cat([h0[:, 0], h0[:, 1]], dim=-1)  # (L, B, 2H)
        return EncoderOutput(states, pad, init_state=h0, src=src)

    def _attend(self, o: Tensor, memory: EncoderOutput, x: Tensor, tokens: Tensor) -> Tensor:
        """Luong attention and output: decoder states o (B, T, 2H), inputs x (B, T, E) embedding the input
        tokens (B, T) -> logits (B, T, V)."""
        scores = self.attn_score(o) @ memory.states.transpose(1, 2)  # (B, T, S) = o_t^T W_a^T e_s
        if self.continuation is not None:
            scores = self.continuation(scores, o, continuation_mask(memory.src, tokens, self.pad_id))
        scores = scores.masked_fill(memory.padding_mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        self.last_attention = weights.detach()
        context = weights @ memory.states  # (B, T, 2H)
        h_tilde = torch.tanh(self.attn_combine(torch.cat([context, o], dim=-1)))  # (B, T, E)
        logits = self.project(self.dropout(h_tilde))
        if self.pointer is None:
            return logits
        return self._mix_copy(logits, weights, memory, self.pointer.gate_logit(o, context, x))

    def decode(self, memory: EncoderOutput, tgt_in: Tensor) -> Tensor:
        """Teacher-forced decoder: tgt_in (B, T) -> logits (B, T, V)."""
        x = self.dropout(self.target_embedding(tgt_in))  # (B, T, E)
        o, _ = self.decoder(x, memory.init_state.contiguous())  # (B, T, 2H)
        return self._attend(o, memory, x, tgt_in)

    def _initial_state(self, memory: EncoderOutput, origin: Tensor) -> State:
        return (memory.init_state[:, origin].transpose(0, 1),)  # (R, L, 2H)

    def _extend(self, memory: EncoderOutput, state: State, token: Tensor, origin: Tensor) -> tuple[Tensor, State]:
        x = self.target_embedding(token)[:, None]  # (R, 1, E)
        h = state[0].transpose(0, 1).contiguous()  # (L, R, 2H)
        o, h = self.decoder(x, h)  # one step: (R, 1, 2H), (L, R, 2H)
        logits = self._attend(o, memory.select(origin), x, token[:, None])[:, 0]  # (R, V)
        return logits, (h.transpose(0, 1),)


# ----------------------------------------------------------------------------------- Transformer seq2seq
@dataclass(frozen=True)
class TransformerSeq2SeqConfig(_SharedConfig):
    """Sizes of :class:`TransformerSeq2Seq` (HW5's "strong" baseline is the Transformer-base layout:
    d_model 512, 8 heads, 6 + 6 layers, feed-forward 2048; the defaults here are a CPU-sized one).

    Attributes:
        vocab_size, tgt_vocab_size, share_embeddings, tie_output, pad_id: as :class:`RNNSeq2SeqConfig`.
        d_model, n_heads, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout, activation:
            as :class:`deepnotes.nn.transformer.Transformer`.
        norm_first: pre-norm layers (Xiong et al. 2020; easier to train) or post-norm (the paper).
        max_len: longest sequence the positional encoding covers.
        fused_attention: attention through ``F.scaled_dot_product_attention`` (tested equal to the readable path).
        copy: a pointer-generator output (See et al. 2017) on top of the decoder: one more single-head
            attention of the final decoder state h_t over the encoder output m_s,
            ``a_ts = softmax_s((W_q h_t)·(W_k m_s) / sqrt(d_model))``, ``c_t = Σ_s a_ts m_s``, gives the
            copy distribution, mixed with the vocabulary softmax by ``p_gen = σ(w_h·c_t + w_s·h_t +
            w_x·Emb(y_{t-1}) + b)``; the model then returns log-probabilities in place of logits.
            Needs one joint vocabulary.
        copy_continuation: add :class:`~deepnotes.nn.copy.CopyContinuation`'s bonus ``λ_t = w·h_t + b`` to
            the copy attention's score of the source positions that follow a source copy of y_{t-1}
            (module docstring). Needs ``copy``.
        selective_read: CopyNet's selective read (:func:`~deepnotes.nn.copy.selective_read`): the decoder's
            input at step t becomes ``Emb(y_{t-1}) sqrt(d) + PE_t + W_ζ ζ_t``, ζ_t the mean encoder state
            at the source positions holding y_{t-1}; ``W_ζ`` starts at 0. Needs ``copy``.
    """

    d_model: int = 256
    n_heads: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024
    activation: str = "relu"
    norm_first: bool = True
    max_len: int = 1024
    fused_attention: bool = True
    selective_read: bool = False


class TransformerSeq2Seq(Seq2SeqModel):
    """The encoder-decoder Transformer with token embeddings, sinusoidal positions and a tied output layer.

    ``x = Dropout(Emb(tokens) * sqrt(d_model) + PE)``; encoder with source key-padding mask; decoder
    with the causal mask and the memory key-padding mask; ``logits = LN(dec) @ E_tgt^T`` (tied).

    Args:
        cfg: :class:`TransformerSeq2SeqConfig`.

    Shapes:
        forward((src (B, S), tgt_in (B, T))) -> logits (B, T, V); S, T <= max_len.

    Raises:
        ValueError: bad sizes; inputs not two LongTensors (B, ·) with the same B; a sequence longer
            than ``max_len``.

    Example::

        model = TransformerSeq2Seq(TransformerSeq2SeqConfig(vocab_size=8000))
        logits = model((src, tgt_in))
    """

    def __init__(self, cfg: TransformerSeq2SeqConfig):
        super().__init__()
        _check_common(cfg.vocab_size, cfg.tgt_vocab_size, cfg.share_embeddings, cfg.pad_id, cfg.dropout, cfg.copy,
                      cfg.copy_continuation, cfg.selective_read)
        self.cfg, self.pad_id = cfg, cfg.pad_id
        d = cfg.d_model
        self.transformer = Transformer(d, cfg.n_heads, cfg.num_encoder_layers, cfg.num_decoder_layers,
                                       cfg.dim_feedforward, cfg.dropout, cfg.activation, cfg.norm_first,
                                       use_fused=cfg.fused_attention)
        self._build_embeddings(cfg.vocab_size, cfg.tgt_vocab_size, d, cfg.share_embeddings, cfg.tie_output, d)
        self.pos = SinusoidalPositionalEncoding(d, cfg.max_len, dropout=cfg.dropout)
        self.scale = math.sqrt(d)
        if cfg.copy:
            self.copy_q = nn.Linear(d, d, bias=False)  # W_q, W_k of the copy attention
            self.copy_k = nn.Linear(d, d, bias=False)
            self.pointer: PointerGenerator | None = PointerGenerator(d, embed_size=d, context_size=d)
        else:
            self.pointer = None
        self.continuation = CopyContinuation(d) if cfg.copy_continuation else None
        self.read_proj = nn.Linear(d, d, bias=False) if cfg.selective_read else None  # W_ζ
        if self.read_proj is not None:
            nn.init.zeros_(self.read_proj.weight)  # starts as the model without it

    def encode(self, src: Tensor) -> EncoderOutput:
        """src (B, S) -> memory (B, S, d_model) and its padding mask."""
        pad = src == self.pad_id
        x = self.pos(self.src_embed(src) * self.scale)  # (B, S, d)
        return EncoderOutput(self.transformer.encode(x, src_key_padding_mask=pad), pad, src=src)

    @property
    def has_alignment(self) -> bool:
        """Only with ``copy``: the copy attention is one distribution over the source (the decoder's
        cross-attention has several heads and layers)."""
        return self.pointer is not None

    def _copy_keys(self, memory: EncoderOutput) -> Tensor:
        """``W_k m`` (B, S, d), the copy attention's keys, computed once per memory."""
        if "copy_k" not in memory.cache:
            memory.cache["copy_k"] = self.copy_k(memory.states)
        return memory.cache["copy_k"]

    def _output(self, h: Tensor, memory: EncoderOutput, tgt_in: Tensor) -> Tensor:
        """Final decoder states h (B, T, d) -> logits (B, T, V), or with ``copy`` the pointer-generator's
        log-probabilities (the copy attention's keys ``W_k m`` are computed once per memory)."""
        logits = self.project(h)
        if self.pointer is None:
            return logits
        scores = self.copy_q(h) @ self._copy_keys(memory).transpose(1, 2) / self.scale  # (B, T, S)
        if self.continuation is not None:
            scores = self.continuation(scores, h, continuation_mask(memory.src, tgt_in, self.pad_id))
        weights = torch.softmax(scores.masked_fill(memory.padding_mask[:, None, :], float("-inf")), dim=-1)
        self.last_attention = weights.detach()
        context = weights @ memory.states  # (B, T, d)
        gate = self.pointer.gate_logit(h, context, self.target_embedding(tgt_in))  # (B, T, 1)
        return self._mix_copy(logits, weights, memory, gate)

    def decode(self, memory: EncoderOutput, tgt_in: Tensor) -> Tensor:
        """Teacher-forced decoder under the causal mask: tgt_in (B, T) -> logits (B, T, V)."""
        y = self.pos(self.target_embedding(tgt_in) * self.scale)  # (B, T, d)
        if self.read_proj is not None:
            y = y + self.read_proj(selective_read(memory.states, memory.src, tgt_in, self.pad_id))
        h = self.transformer.decode(y, memory.states, memory_key_padding_mask=memory.padding_mask,
                                    tgt_is_causal=True)
        return self._output(h, memory, tgt_in)

    # ---- incremental decoding: per layer, the self-attention keys/values of the prefix are the state
    def _cross_kv(self, memory: EncoderOutput) -> list[tuple[Tensor, Tensor]]:
        if "cross_kv" not in memory.cache:
            kv = []
            for layer in self.transformer.decoder.layers:
                a = layer.cross_attn
                kv.append((_heads(a, a.k_proj(memory.states)), _heads(a, a.v_proj(memory.states))))  # (B, H, S, D)
            memory.cache["cross_kv"] = kv
        return memory.cache["cross_kv"]

    def _initial_state(self, memory: EncoderOutput, origin: Tensor) -> State:
        R, dev, dt = origin.shape[0], memory.states.device, memory.states.dtype
        state = []
        for layer in self.transformer.decoder.layers:
            a = layer.self_attn
            empty = torch.zeros(R, a.n_heads, 0, a.head_dim, device=dev, dtype=dt)  # (R, H, 0, D)
            state += [empty, empty]
        return tuple(state)

    def _extend(self, memory: EncoderOutput, state: State, token: Tensor, origin: Tensor) -> tuple[Tensor, State]:
        t = state[0].shape[2]  # t tokens already in the prefix: this one is position t
        if t >= self.cfg.max_len:
            raise ValueError(f"TransformerSeq2Seq: decoding past max_len={self.cfg.max_len} positions")
        x = self.target_embedding(token)[:, None] * self.scale + self.pos.pe[t].to(memory.states.dtype)  # (R, 1, d)
        rows = memory.select(origin) if self.pointer is not None else None  # each row's memory (copy, selective read)
        if self.read_proj is not None:  # selective_read needs copy, so rows is set
            x = x + self.read_proj(selective_read(rows.states, rows.src, token[:, None], self.pad_id))
        allowed = ~memory.padding_mask[origin][:, None, None, :]  # (R, 1, 1, S) True = attend
        new_state: list[Tensor] = []
        for i, (layer, (mk, mv)) in enumerate(zip(self.transformer.decoder.layers, self._cross_kv(memory))):
            cache = (state[2 * i], state[2 * i + 1])
            if layer.norm_first:
                a, k, v = _self_attn_step(layer.self_attn, layer.norm1(x), *cache)
                x = x + a
                x = x + _cross_attn_step(layer.cross_attn, layer.norm2(x), mk[origin], mv[origin], allowed)
                x = x + layer.ff(layer.norm3(x))
            else:
                a, k, v = _self_attn_step(layer.self_attn, x, *cache)
                x = layer.norm1(x + a)
                x = layer.norm2(x + _cross_attn_step(layer.cross_attn, x, mk[origin], mv[origin], allowed))
                x = layer.norm3(x + layer.ff(x))
            new_state += [k, v]
        if self.transformer.decoder.norm is not None:
            x = self.transformer.decoder.norm(x)
        if self.pointer is None:
            return self.project(x[:, 0]), tuple(new_state)
        rows.cache["copy_k"] = self._copy_keys(memory)[origin]
        return self._output(x, rows, token[:, None])[:, 0], tuple(new_state)


def _heads(a: nn.Module, x: Tensor) -> Tensor:
    """(R, L, d_model) -> (R, H, L, D) for attention module ``a``."""
    return x.view(x.shape[0], x.shape[1], a.n_heads, a.head_dim).transpose(1, 2)


def _self_attn_step(a: nn.Module, h: Tensor, k_cache: Tensor, v_cache: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One query position h (R, 1, d) attending over the cached keys/values (R, H, t, D) and its own.

    Returns the attention output (R, 1, d) and the keys and values extended to (R, H, t + 1, D). No
    mask is needed: every cached position is in the past.
    """
    q, k, v = _heads(a, a.q_proj(h)), _heads(a, a.k_proj(h)), _heads(a, a.v_proj(h))  # (R, H, 1, D)
    k, v = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    out = F.scaled_dot_product_attention(q, k, v)  # (R, H, 1, D)
    return a.out_proj(out.transpose(1, 2).reshape(h.shape[0], 1, -1)), k, v


def _cross_attn_step(a: nn.Module, h: Tensor, mk: Tensor, mv: Tensor, allowed: Tensor) -> Tensor:
    """h (R, 1, d) attending over the memory's keys/values (R, H, S, D); allowed (R, 1, 1, S) True = attend."""
    q = _heads(a, a.q_proj(h))
    out = F.scaled_dot_product_attention(q, mk, mv, attn_mask=allowed)  # (R, H, 1, D)
    return a.out_proj(out.transpose(1, 2).reshape(h.shape[0], 1, -1))


# ----------------------------------------------------------------------------------- registry, task, translation
@register_model("rnn-seq2seq")
def rnn_seq2seq(vocab_size: int, embedding_dim: int = 256, hidden_size: int = 256, num_layers: int = 1,
                **kwargs) -> RNNSeq2Seq:
    """:class:`RNNSeq2Seq`; the other keywords are fields of :class:`RNNSeq2SeqConfig`.

    Raises:
        ValueError: see :class:`RNNSeq2Seq`.
    """
    return RNNSeq2Seq(RNNSeq2SeqConfig(vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
                                       num_layers=num_layers, **kwargs))


@register_model("transformer-seq2seq")
def transformer_seq2seq(vocab_size: int, d_model: int = 256, n_heads: int = 4, num_layers: int = 3,
                        num_decoder_layers: int | None = None, **kwargs) -> TransformerSeq2Seq:
    """:class:`TransformerSeq2Seq` with ``num_layers`` encoder layers and as many decoder layers (unless
    ``num_decoder_layers`` is given); the other keywords are fields of :class:`TransformerSeq2SeqConfig`.

    Raises:
        ValueError: see :class:`TransformerSeq2Seq`.
    """
    return TransformerSeq2Seq(TransformerSeq2SeqConfig(
        vocab_size, d_model=d_model, n_heads=n_heads, num_encoder_layers=num_layers,
        num_decoder_layers=num_layers if num_decoder_layers is None else num_decoder_layers, **kwargs))


def model_from_flags(name: Literal["rnn", "transformer"], flags: Any, vocab_size: int) -> Seq2SeqModel:
    """The translation lab's ``rnn`` or ``transformer`` (:func:`rnn_seq2seq`, :func:`transformer_seq2seq` through
    ``create_model``) over one joint vocabulary with tied embeddings and padding id ``PAD_ID``, from ``flags``: the
    lab's config or any object with its attributes ``dropout``, ``copy``, ``copy_continuation`` (model names),
    ``rnn_embedding_dim``, ``rnn_hidden_size``, ``rnn_layers``, ``d_model``, ``n_heads``, ``encoder_layers``,
    ``decoder_layers``, ``dim_feedforward``, ``norm_first``, ``selective_read``, ``max_len`` and ``max_len_b`` (the
    positions cover ``max(1024, 2 max_len + max_len_b + 2)``), and ``fused`` (the fused kernels, or the readable
    paths; True where absent, as in runs saved before the flag).

    Raises:
        UserError: sizes a model rejects (from ``create_model``).
    """
    from deepnotes.models.registry import create_model

    common = dict(vocab_size=vocab_size, dropout=flags.dropout, pad_id=PAD_ID, copy=name in flags.copy,
                  copy_continuation=name in flags.copy_continuation)
    fused = getattr(flags, "fused", True)
    if name == "rnn":
        return create_model("rnn-seq2seq", embedding_dim=flags.rnn_embedding_dim, hidden_size=flags.rnn_hidden_size,
                            num_layers=flags.rnn_layers, fused=fused, **common)
    return create_model("transformer-seq2seq", d_model=flags.d_model, n_heads=flags.n_heads,
                        num_layers=flags.encoder_layers, num_decoder_layers=flags.decoder_layers,
                        dim_feedforward=flags.dim_feedforward, norm_first=flags.norm_first,
                        max_len=max(1024, 2 * flags.max_len + flags.max_len_b + 2),
                        selective_read=flags.selective_read, fused_attention=fused, **common)


class Seq2SeqTask(Task):
    """Token cross-entropy of a seq2seq model, trained with teacher forcing or scheduled sampling.

    A batch is ``(src (B, S), tgt_in (B, T), tgt_out (B, T), ...)`` (:class:`deepnotes.data.translation.TokenBatches`);
    ``model((src, tgt_in))`` gives logits (B, T, V); targets equal to ``IGNORE_INDEX`` (padding) are ignored.
    Epoch metrics: ``loss`` (mean per target token) and ``acc`` (token accuracy).

    Args:
        model: a :class:`Seq2SeqModel`.
        label_smoothing: of the training loss (evaluation uses none), in [0, 1); default 0.
        sampler: a :class:`~deepnotes.nn.decoding.ScheduledSampler` (training batches only; its ratio comes from
            ``step.step`` and ``step.total_steps``); default None = teacher forcing.
        augment: ``augment(batch, generator) -> (src, tgt_in, tgt_out)`` of a training batch, drawn from the
            Trainer's seeded generator (e.g. :func:`deepnotes.data.translation.bpe_dropout_batch`); default None.
        beta2: AdamW's second-moment decay (default 0.98, the Transformer paper's; beta1 is ``cfg.momentum``).
    """

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0, sampler: ScheduledSampler | None = None,
                 augment: Callable[[tuple, torch.Generator | None], tuple] | None = None, beta2: float = 0.98):
        super().__init__(model)
        self.label_smoothing, self.sampler, self.augment, self.beta2 = label_smoothing, sampler, augment, beta2

    def configure_optimizers(self, cfg) -> torch.optim.Optimizer:
        """AdamW at ``cfg.lr``, betas ``(cfg.momentum, beta2)``, weight decay ``cfg.weight_decay`` on weight
        matrices only; its step is torch's fused kernel unless ``cfg.optimizer_impl`` says "foreach" or "for-loop"
        (as :func:`deepnotes.train.engine.make_optimizer`)."""
        params = list(self.model.parameters())
        impl = getattr(cfg, "optimizer_impl", "foreach")
        kw = optimizer_impl_kwargs(impl)
        return torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
                                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                                 lr=cfg.lr, betas=(cfg.momentum, self.beta2), **kw)

    def training_step(self, model: nn.Module, batch: tuple, step: Step) -> StepOutput:
        if step.train and self.augment is not None:
            batch = self.augment(batch, step.generator)
        device = next(self.model.parameters()).device
        src, tgt_in, tgt_out = (t.to(device) for t in batch[:3])
        if step.train and self.sampler is not None:
            tgt_in = self.sampler(lambda t: self.model((src, t)), tgt_in, step.step, step.total_steps, step.generator)
        with step.autocast():
            logits, y = flatten_tokens(model((src, tgt_in)), tgt_out)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing if step.train else 0.0,
                                   ignore_index=IGNORE_INDEX)
        return classification_sums(loss, logits.detach(), y)


def translate(model: Seq2SeqModel, tok: SubwordTokenizer, sources: Sequence[str], device: torch.device,
              beam_size: int = 1, *, protect: bool = False, batch_size: int = 64, max_len_a: float = 1.2,
              max_len_b: int = 10, max_new_tokens: int | None = None, length_penalty: float = 1.0,
              coverage_penalty: float = 0.0, no_repeat_ngram_size: int = 0, length_ratio: float = 0.0,
              penalty: Literal["gnmt", "average"] = "gnmt") -> list[str]:
    """Translate sentences (greedy if ``beam_size == 1``, else beam search), outputs in input order.

    Sources are encoded (with ``protect``, placeholders, options and numbers first replaced by sentinels, put
    back into the outputs: :func:`deepnotes.data.translation.protect_spans`), sorted by length and decoded
    ``batch_size`` at a time, at most ``max_len_a * |longest source| + max_len_b`` tokens (fairseq's
    ``max_len_a/b``), capped at ``max_new_tokens``. ``coverage_penalty`` and ``no_repeat_ngram_size`` apply to
    beam search only; ``length_penalty``, ``penalty`` and ``length_ratio`` as :meth:`Seq2SeqModel.generate`.
    """
    protected = protect_sources(protect, sources)
    ids = [tok.encode(p.text) + [EOS_ID] for p in protected]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    model.eval()
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        S = max(len(ids[i]) for i in chunk)
        src = torch.full((len(chunk), S), PAD_ID, dtype=torch.long)
        for r, i in enumerate(chunk):
            src[r, :len(ids[i])] = torch.tensor(ids[i])
        max_len = int(max_len_a * S + max_len_b)
        if max_new_tokens is not None:
            max_len = min(max_len, max_new_tokens)
        hyps = model.generate(src.to(device), BOS_ID, EOS_ID, max(1, max_len), beam_size=beam_size,
                              length_penalty=length_penalty, coverage_penalty=coverage_penalty if beam_size > 1 else 0.0,
                              no_repeat_ngram_size=no_repeat_ngram_size if beam_size > 1 else 0, penalty=penalty,
                              length_ratio=length_ratio)
        for r, i in enumerate(chunk):
            out[i] = restore_spans(tok.decode(hyps[r]), protected[i].spans)
    return out


@dataclass
class Translator:
    """A trained model with its tokenizer and decoding settings: sentences in, translations out.

    Attributes:
        model, tokenizer, device: what decodes, and where.
        beam_size, protect, batch_size, max_len_a, max_len_b, coverage_penalty, no_repeat_ngram_size: as
            :func:`translate` (defaults: 5, False, 64, 1.2, 10, 0, 0).
    """

    model: Seq2SeqModel
    tokenizer: SubwordTokenizer
    device: torch.device
    beam_size: int = 5
    protect: bool = False
    batch_size: int = 64
    max_len_a: float = 1.2
    max_len_b: int = 10
    coverage_penalty: float = 0.0
    no_repeat_ngram_size: int = 0

    @classmethod
    def of(cls, model: Seq2SeqModel, tokenizer: SubwordTokenizer, device: torch.device, flags: Any) -> "Translator":
        """With the translation lab's decoding flags: ``flags`` has ``beam_size``, ``protect_spans``,
        ``decode_batch_size``, ``max_len_a``, ``max_len_b``, ``coverage_penalty``, ``no_repeat_ngram_size``."""
        return cls(model, tokenizer, device, flags.beam_size, flags.protect_spans, flags.decode_batch_size,
                   flags.max_len_a, flags.max_len_b, flags.coverage_penalty, flags.no_repeat_ngram_size)

    def decode(self, sources: Sequence[str], alpha: float | None = None, **kwargs) -> list[str]:
        """Greedy decoding (``alpha`` None) or beam search with GNMT length penalty ``alpha``; ``kwargs`` go to
        :func:`translate` (``max_new_tokens``, ``penalty``, ``length_ratio``, or settings of this call)."""
        settings = {"protect": self.protect, "batch_size": self.batch_size, "max_len_a": self.max_len_a,
                    "max_len_b": self.max_len_b, "coverage_penalty": self.coverage_penalty,
                    "no_repeat_ngram_size": self.no_repeat_ngram_size, "length_penalty": alpha or 0.0}
        return translate(self.model, self.tokenizer, sources, self.device, 1 if alpha is None else self.beam_size,
                         **{**settings, **kwargs})

    def scores(self, sources: Sequence[str], refs: Sequence[str], alpha: float) -> tuple[dict, dict]:
        """``({"greedy": s, "beam": s}, {"greedy": outputs, "beam": outputs})``: each ``s`` is
        :func:`deepnotes.metrics.translation.score` with the decoding time ``time_s`` and ``sentences_per_s``;
        beam search with length penalty ``alpha``."""
        metrics, outputs = {}, {}
        for decoder, a in (("greedy", None), ("beam", alpha)):
            t0 = time.perf_counter()
            outputs[decoder] = hyps = self.decode(sources, a)
            seconds = time.perf_counter() - t0
            metrics[decoder] = {**score(sources, hyps, refs), "time_s": seconds, "sentences_per_s": len(hyps) / seconds}
        return metrics, outputs


@torch.no_grad()
def copy_rates(model: Seq2SeqModel, batches: Iterable[tuple], device: torch.device, eos_id: int = EOS_ID
               ) -> dict[str, Any] | None:
    """How much a copy model copies: the mean of ``1 - p_gen`` over teacher-forced target tokens.

    Args:
        model: a model built with ``copy=True`` (else the result is None).
        batches: ``(src (B, S), tgt_in (B, T), tgt_out (B, T))`` as :class:`~deepnotes.data.translation.TokenBatches`.
        device: where the model is.
        eos_id: the end token, left out with the padding.

    Returns:
        ``{"in_source", "not_in_source"}``: mean copy probability over target tokens that occur / do not occur in
        their own source, and ``{"n_in_source", "n_not_in_source"}`` their counts; None without a copy mechanism.
    """
    if not model.cfg.copy:
        return None
    model.eval()
    sums, counts = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
    for src, tgt_in, tgt_out, *_ in batches:
        src, tgt_in, tgt_out = src.to(device), tgt_in.to(device), tgt_out.to(device)
        model((src, tgt_in))
        p = model.last_copy_prob.double().cpu()
        keep = ((tgt_out != IGNORE_INDEX) & (tgt_out != eos_id)).cpu()
        in_src = (tgt_out[:, :, None] == src[:, None, :]).any(-1).cpu()
        for k, where in enumerate((keep & in_src, keep & ~in_src)):
            sums[k] += p[where].sum()
            counts[k] += int(where.sum())
    mean = [float(sums[k] / counts[k]) if counts[k] else None for k in range(2)]
    return {"in_source": mean[0], "not_in_source": mean[1], "n_in_source": int(counts[0]),
            "n_not_in_source": int(counts[1])}
