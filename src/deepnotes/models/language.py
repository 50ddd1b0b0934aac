"""Character language models: a decoder-only Transformer (GPT) and an LSTM, both ``(B, T) ids -> (B, T, V) logits``.

Sources: ML2021/2022 "Transformer" and "GPT: predict the next token" (a decoder without cross-attention,
trained on every prefix at once under a causal mask); Radford et al. 2018/2019 (pre-norm GPT-2 blocks,
learned positions, GELU, N(0, 0.02) init, residual projections scaled by 1/sqrt(2 num_layers)); nanoGPT
(Karpathy) for the character-level configuration. EE-559 12-2 for the LSTM language model.

Both are built from this package's layers: :class:`deepnotes.nn.transformer.TransformerEncoderLayer`
(pre-norm, causal) and :class:`deepnotes.nn.recurrent.LSTM`. Registered for
:func:`deepnotes.models.create_model` as ``"gpt"``, ``"lstm-lm"`` and ``"cbow"`` (word2vec,
:class:`deepnotes.nn.word2vec.CBOW`); :func:`generate` continues a prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.errors import UserError
from deepnotes.models.registry import register_model
from deepnotes.nn.attention import LearnedPositionalEmbedding
from deepnotes.nn.decoding import sample as sample_tokens
from deepnotes.nn.normalization import LayerNorm
from deepnotes.nn.recurrent import LSTM
from deepnotes.nn.transformer import TransformerEncoderLayer
from deepnotes.nn.word2vec import CBOW


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of :class:`GPT`; the defaults are nanoGPT's CPU character config."""

    vocab_size: int
    block_size: int = 64  # longest context (positions)
    num_layers: int = 4
    n_heads: int = 4
    d_model: int = 128
    dropout: float = 0.0
    use_fused: bool = True  # F.scaled_dot_product_attention and F.layer_norm (tested equal to the readable paths)
    bias: bool = True  # biases in linear layers and LayerNorms (nanoGPT's char config has none)


class GPT(nn.Module):
    """Decoder-only Transformer: token + position embeddings, ``num_layers`` pre-norm causal blocks, LayerNorm, head.

    The output head is the token embedding matrix (weight tying, as GPT-2): ``logits = LN(x) @ E^T``.

    Shapes:
        idx: (B, T) int64 with T <= block_size -> logits (B, T, vocab_size).

    Raises:
        ValueError: T > block_size (crop the context; :meth:`step_logits` does it for decoding).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = LearnedPositionalEmbedding(cfg.block_size, cfg.d_model, dropout=cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerEncoderLayer(cfg.d_model, cfg.n_heads, dim_feedforward=4 * cfg.d_model, dropout=cfg.dropout,
                                    activation="gelu", norm_first=True, use_fused=cfg.use_fused, bias=cfg.bias)
            for _ in range(cfg.num_layers)
        )
        self.norm = LayerNorm(cfg.d_model, bias=cfg.bias, use_fused=cfg.use_fused)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                std = 0.02
                if name.endswith(("out_proj.weight", "linear2.weight")):  # residual projections
                    std = 0.02 / math.sqrt(2 * self.cfg.num_layers)
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.cfg.block_size}")
        x = self.pos_emb(self.tok_emb(idx))
        for block in self.blocks:
            x = block(x, is_causal=True)
        return F.linear(self.norm(x), self.tok_emb.weight)  # the head is the embedding, transposed

    def step_logits(self, idx: Tensor) -> Tensor:
        """Next-token logits (B, V) from the last ``block_size`` tokens of ``idx`` (B, T)."""
        return self(idx[:, -self.cfg.block_size:])[:, -1]


@dataclass(frozen=True)
class LSTMLMConfig:
    """Sizes of :class:`LSTMLanguageModel`."""

    vocab_size: int
    embedding_dim: int = 128
    hidden_size: int = 240
    num_layers: int = 2
    dropout: float = 0.0
    use_fused: bool = True  # torch's LSTM kernel on the same parameters (tested equal to the readable loop)


class LSTMLanguageModel(nn.Module):
    """Embedding -> stacked LSTM -> linear logits, trained on the same windows as :class:`GPT`.

    Each window starts from a zero state (truncated back-propagation over the window), so both models
    see the same context length. Decoding (:meth:`step_logits`) runs over the whole prefix.

    Shapes:
        idx: (B, T) int64 -> logits (B, T, vocab_size).
    """

    def __init__(self, cfg: LSTMLMConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
        self.lstm = LSTM(cfg.embedding_dim, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True,
                         dropout=cfg.dropout if cfg.num_layers > 1 else 0.0, use_fused=cfg.use_fused)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        out, _ = self.lstm(self.drop(self.tok_emb(idx)))
        return self.head(self.drop(out))

    def step_logits(self, idx: Tensor) -> Tensor:
        """Next-token logits (B, V) after reading all of ``idx`` (B, T)."""
        return self(idx)[:, -1]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def next_token_step_fn(model: nn.Module):
    """A :mod:`deepnotes.nn.decoding` ``step_fn(tokens, origin) -> logits`` over ``model.step_logits``."""
    return lambda tokens, origin: model.step_logits(tokens)


@register_model("gpt")
def gpt(vocab_size: int, block_size: int = 64, num_layers: int = 4, n_heads: int = 4, d_model: int = 128,
        dropout: float = 0.0, use_fused: bool = True, bias: bool = True) -> GPT:
    """:class:`GPT` (defaults: nanoGPT's CPU character config).

    Raises:
        ValueError: ``d_model`` not divisible by ``n_heads``.
    """
    if d_model % n_heads:
        raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
    return GPT(GPTConfig(vocab_size, block_size, num_layers, n_heads, d_model, dropout, use_fused, bias))


@register_model("lstm-lm")
def lstm_lm(vocab_size: int, embedding_dim: int = 128, hidden_size: int = 240, num_layers: int = 2,
            dropout: float = 0.0, use_fused: bool = True) -> LSTMLanguageModel:
    """:class:`LSTMLanguageModel` (``use_fused``: torch's LSTM kernel; False: the readable loop over time)."""
    return LSTMLanguageModel(LSTMLMConfig(vocab_size, embedding_dim, hidden_size, num_layers, dropout, use_fused))


@register_model("cbow")
def cbow(vocab_size: int, embedding_dim: int = 100, sparse: bool = False, init_seed: int | None = None) -> CBOW:
    """:class:`~deepnotes.nn.word2vec.CBOW`, its initial vectors drawn from a generator seeded ``init_seed``
    (default None: torch's global generator)."""
    model = CBOW(vocab_size, embedding_dim, sparse=sparse)
    if init_seed is not None:
        model.reset_parameters(torch.Generator().manual_seed(init_seed))
    return model


def generate(model: nn.Module, vocab: Any, prompt: str, n_tokens: int, temperature: float, top_k: int = 0,
             top_p: float | None = None, seed: int = 0, device: torch.device = torch.device("cpu")) -> str:
    """``prompt`` followed by ``n_tokens`` sampled tokens (temperature 0 = greedy; ``top_k`` 0 = all tokens).

    Args:
        model: has ``step_logits(tokens (1, T)) -> (1, V)``; vocab: ``encode(str) -> ids``, ``decode(ids) -> str``.

    Raises:
        UserError: the prompt is empty, or ``vocab.encode`` rejects it (a character outside the vocabulary).
    """
    if not prompt:
        raise UserError("--prompt must not be empty")
    model.eval()
    ids = torch.as_tensor(vocab.encode(prompt))[None].to(device)
    if n_tokens == 0:
        return prompt
    g = torch.Generator(device=device).manual_seed(seed)
    out = sample_tokens(next_token_step_fn(model), ids, eos=None, max_len=n_tokens, temperature=temperature,
                        top_k=top_k or None, top_p=top_p, generator=g)
    return vocab.decode(out[0].tolist())
