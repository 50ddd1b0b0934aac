"""The Transformer encoder-decoder (Vaswani et al. 2017), assembled from our attention and LayerNorm.

Sources: ML2021/2022 lecture 5, "Transformer (上) Encoder" (a block = multi-head self-attention,
residual connection, layer norm, fully connected feed-forward, residual, layer norm; "this arrangement
is not necessarily the best": pre-norm, Xiong et al. 2020, "On Layer Normalization in the Transformer
Architecture") and "Transformer (下) Decoder" (masked multi-head self-attention, then cross attention
whose queries come from the decoder and keys/values from the encoder output, then feed-forward).
Paper: Vaswani et al. 2017, §3.1 and Figure 1.

Post-norm (the paper, default)::            Pre-norm (``norm_first=True``)::

    x = LN(x + Dropout(SelfAttn(x)))            x = x + Dropout(SelfAttn(LN(x)))
    x = LN(x + Dropout(CrossAttn(x, mem)))      x = x + Dropout(CrossAttn(LN(x), mem))   (decoder only)
    x = LN(x + Dropout(FF(x)))                  x = x + Dropout(FF(LN(x)))
    FF(x) = W_2 Dropout(act(W_1 x + b_1)) + b_2

Everything is batch-first: (N, L, d_model). Mask conventions are deepnotes' (see
:mod:`deepnotes.nn.attention`): a boolean attention mask is **True = allowed** (the opposite of
``nn.Transformer``, whose boolean masks are True = blocked; float masks are additive in both), and a
key padding mask is **True = padding** (the same as torch). ``is_causal=True`` / ``tgt_is_causal=True``
*builds* the causal mask (in torch it is only a hint about the mask you pass).

Like ``nn.Transformer``, :class:`Transformer` puts a final LayerNorm on the encoder and decoder outputs
(in both post- and pre-norm) and has no embeddings, positional encodings or output projection.
:func:`copy_weights_from_torch` maps the weights of every torch twin onto ours.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.attention import MultiHeadAttention
from deepnotes.nn.normalization import LayerNorm

__all__ = ["Transformer", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerEncoderLayer", "copy_weights_from_torch"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}


def _check_layer_args(d_model: int, n_heads: int, dim_feedforward: int, dropout: float, activation: str,
                      eps: float) -> None:
    if d_model < 1 or n_heads < 1 or dim_feedforward < 1:
        raise ValueError(f"d_model, n_heads, dim_feedforward must be >= 1, got {d_model}, {n_heads}, {dim_feedforward}")
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")


class _FeedForward(nn.Module):
    """Position-wise feed-forward: ``linear2(dropout(act(linear1(x))))``, (N, L, d_model) -> same."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float, activation: str, bias: bool = True):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(_ACTIVATIONS[self.activation](self.linear1(x))))


class _SelfAttentionSublayer(nn.Module):
    """What both blocks share: the argument checks and the self-attention sub-layer ``dropout1(self_attn(x, x, x))``
    (built first, so that a block's parameters are drawn in the order of torch's)."""

    dropout1: nn.Dropout

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int, dropout: float, activation: str,
                 norm_first: bool, eps: float, use_fused: bool, bias: bool = True):
        super().__init__()
        _check_layer_args(d_model, n_heads, dim_feedforward, dropout, activation, eps)
        self.d_model, self.n_heads, self.norm_first, self._use_fused = d_model, n_heads, norm_first, use_fused
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)

    @property
    def use_fused(self) -> bool:
        """Fused kernels (``F.scaled_dot_product_attention``, ``F.layer_norm``) instead of the readable paths;
        setting it sets the block's LayerNorms too."""
        return self._use_fused

    @use_fused.setter
    def use_fused(self, value: bool) -> None:
        self._use_fused = bool(value)
        for m in self.modules():
            if isinstance(m, LayerNorm):
                m.use_fused = self._use_fused

    def _sa(self, x: Tensor, mask: Tensor | None, kpm: Tensor | None, is_causal: bool) -> Tensor:
        out, _ = self.self_attn(x, x, x, key_padding_mask=kpm, attn_mask=mask, is_causal=is_causal,
                                use_fused=self.use_fused)
        return self.dropout1(out)


class TransformerEncoderLayer(_SelfAttentionSublayer):
    """One encoder block: self-attention then feed-forward, each with residual, dropout and LayerNorm.

    Args:
        d_model: model size.
        n_heads: attention heads (divides ``d_model``).
        dim_feedforward: hidden size of the feed-forward net. Default 2048.
        dropout: dropout on attention weights, after each sub-layer and inside the feed-forward. Default 0.1.
        activation: ``"relu"`` (the paper) or ``"gelu"`` (BERT). Default ``"relu"``.
        norm_first: pre-norm if True; post-norm (the paper) by default.
        eps: LayerNorm epsilon. Default 1e-5.
        use_fused: attention through ``F.scaled_dot_product_attention`` and LayerNorm through ``F.layer_norm``
            (an attribute; may be toggled). Default False: the readable paths.
        bias: biases in the linear layers and LayerNorms (nanoGPT's ``bias=False`` drops them). Default True.

    Shapes:
        src: (N, L, d_model) -> (N, L, d_model).

    Raises:
        ValueError: bad arguments (in attention: masks of the wrong shape).

    Example::

        layer = TransformerEncoderLayer(64, 4, dim_feedforward=128)
        y = layer(x, src_key_padding_mask=padding_mask(lengths))
    """

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, eps: float = 1e-5, use_fused: bool = False,
                 bias: bool = True):
        super().__init__(d_model, n_heads, dim_feedforward, dropout, activation, norm_first, eps, use_fused, bias)
        self.ff = _FeedForward(d_model, dim_feedforward, dropout, activation, bias)
        self.norm1, self.norm2 = LayerNorm(d_model, eps=eps, bias=bias), LayerNorm(d_model, eps=eps, bias=bias)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.use_fused = use_fused

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        """src (N, L, d_model); src_mask (L, S) bool True = allowed or float; src_key_padding_mask (N, L) True = pad."""
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self.dropout2(self.ff(self.norm2(x)))
        else:
            x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self.dropout2(self.ff(x)))
        return x


class TransformerDecoderLayer(_SelfAttentionSublayer):
    """One decoder block: masked self-attention, cross-attention over ``memory``, feed-forward.

    Args: as :class:`TransformerEncoderLayer`.

    Shapes:
        tgt: (N, L, d_model), memory: (N, S, d_model) -> (N, L, d_model).

    Raises:
        ValueError: bad arguments (in attention: masks of the wrong shape).

    Example::

        layer = TransformerDecoderLayer(64, 4, dim_feedforward=128)
        y = layer(tgt, memory, tgt_is_causal=True, memory_key_padding_mask=padding_mask(src_lengths))
    """

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, eps: float = 1e-5, use_fused: bool = False,
                 bias: bool = True):
        super().__init__(d_model, n_heads, dim_feedforward, dropout, activation, norm_first, eps, use_fused, bias)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)
        self.ff = _FeedForward(d_model, dim_feedforward, dropout, activation, bias)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(d_model, eps=eps, bias=bias) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.use_fused = use_fused

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                tgt_is_causal: bool = False) -> Tensor:
        """tgt (N, L, d_model), memory (N, S, d_model); tgt_mask (L, L), memory_mask (L, S): bool True =
        allowed or float; key padding masks (N, L) / (N, S) True = pad; tgt_is_causal adds the causal mask."""
        x = tgt
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._ca(self.norm2(x), memory, memory_mask, memory_key_padding_mask)
            x = x + self.dropout3(self.ff(self.norm3(x)))
        else:
            x = self.norm1(x + self._sa(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._ca(x, memory, memory_mask, memory_key_padding_mask))
            x = self.norm3(x + self.dropout3(self.ff(x)))
        return x

    def _ca(self, x: Tensor, memory: Tensor, mask: Tensor | None, kpm: Tensor | None) -> Tensor:
        out, _ = self.cross_attn(x, memory, memory, key_padding_mask=kpm, attn_mask=mask, use_fused=self.use_fused)
        return self.dropout2(out)


def _stack(layer: nn.Module | Callable[[], nn.Module], num_layers: int) -> nn.ModuleList:
    """num_layers deep copies of a module, or num_layers calls of a factory (independent inits)."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if isinstance(layer, nn.Module):
        return nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
    if callable(layer):
        return nn.ModuleList(layer() for _ in range(num_layers))
    raise ValueError(f"layer must be an nn.Module (copied) or a factory returning one, got {type(layer).__name__}")


class TransformerEncoder(nn.Module):
    """A stack of encoder layers, with an optional final norm.

    Args:
        layer: a :class:`TransformerEncoderLayer` (deep-copied ``num_layers`` times, as in torch: all
            copies start from the same weights) or a zero-argument factory (called ``num_layers`` times).
        num_layers: >= 1.
        norm: optional module applied to the output (pre-norm stacks need one).

    Shapes:
        src: (N, L, d_model) -> (N, L, d_model).
    """

    def __init__(self, layer: nn.Module | Callable[[], nn.Module], num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = _stack(layer, num_layers)
        self.num_layers, self.norm = num_layers, norm

    def forward(self, src: Tensor, mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        return x if self.norm is None else self.norm(x)


class TransformerDecoder(nn.Module):
    """A stack of decoder layers, each attending over the same ``memory``, with an optional final norm.

    Args: as :class:`TransformerEncoder` (with :class:`TransformerDecoderLayer`).

    Shapes:
        tgt: (N, L, d_model), memory: (N, S, d_model) -> (N, L, d_model).
    """

    def __init__(self, layer: nn.Module | Callable[[], nn.Module], num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = _stack(layer, num_layers)
        self.num_layers, self.norm = num_layers, norm

    def forward(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                tgt_is_causal: bool = False) -> Tensor:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal)
        return x if self.norm is None else self.norm(x)


class Transformer(nn.Module):
    """The encoder-decoder Transformer of Vaswani et al. 2017 (no embeddings), like ``nn.Transformer``.

    Args:
        d_model: model size. Default 512.
        n_heads: attention heads. Default 8.
        num_encoder_layers, num_decoder_layers: Default 6 each.
        dim_feedforward: Default 2048.
        dropout: Default 0.1.
        activation: ``"relu"`` or ``"gelu"``. Default ``"relu"``.
        norm_first: pre-norm layers. Default False (post-norm).
        eps: LayerNorm epsilon. Default 1e-5.
        use_fused: fused attention and LayerNorm kernels in every layer and final norm. Default False.

    Init: Xavier-uniform on every weight matrix (as ``nn.Transformer``); biases as their layers.

    Shapes:
        src (N, S, d_model), tgt (N, L, d_model) -> (N, L, d_model).

    Raises:
        ValueError: bad arguments, or src / tgt with different batch or feature sizes.

    Example::

        model = Transformer(d_model=64, n_heads=4, num_encoder_layers=2, num_decoder_layers=2)
        y = model(src, tgt, src_key_padding_mask=padding_mask(src_len), tgt_is_causal=True,
                  memory_key_padding_mask=padding_mask(src_len))
    """

    def __init__(self, d_model: int = 512, n_heads: int = 8, num_encoder_layers: int = 6, num_decoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1, activation: str = "relu", norm_first: bool = False,
                 eps: float = 1e-5, use_fused: bool = False):
        super().__init__()
        _check_layer_args(d_model, n_heads, dim_feedforward, dropout, activation, eps)
        self.d_model, self.n_heads = d_model, n_heads
        kw = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation, norm_first=norm_first,
                  eps=eps, use_fused=use_fused)
        self.encoder = TransformerEncoder(lambda: TransformerEncoderLayer(d_model, n_heads, **kw), num_encoder_layers,
                                          norm=LayerNorm(d_model, eps=eps, use_fused=use_fused))
        self.decoder = TransformerDecoder(lambda: TransformerDecoderLayer(d_model, n_heads, **kw), num_decoder_layers,
                                          norm=LayerNorm(d_model, eps=eps, use_fused=use_fused))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
               src_is_causal: bool = False) -> Tensor:
        """The encoder alone: src (N, S, d_model) -> memory (N, S, d_model)."""
        return self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)

    def decode(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor | None = None, memory_mask: Tensor | None = None,
               tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
               tgt_is_causal: bool = False) -> Tensor:
        """The decoder alone (e.g. step by step in greedy decoding): (N, L, d_model) -> (N, L, d_model)."""
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None, tgt_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                tgt_key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                src_is_causal: bool = False, tgt_is_causal: bool = False) -> Tensor:
        """Encode ``src``, decode ``tgt`` over it. Masks: bool True = allowed or float (src_mask (S, S),
        tgt_mask (L, L), memory_mask (L, S)); key padding masks True = pad ((N, S), (N, L), (N, S))."""
        if src.dim() != 3 or tgt.dim() != 3 or src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt must be (N, S, d_model) and (N, L, d_model) with the same N, got "
                             f"{tuple(src.shape)} and {tuple(tgt.shape)}")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"src and tgt must have d_model={self.d_model} features, got {tuple(src.shape)} and "
                             f"{tuple(tgt.shape)}")
        memory = self.encode(src, src_mask, src_key_padding_mask, src_is_causal)
        return self.decode(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask,
                           tgt_is_causal)


# ------------------------------------------------------------------------------- torch weight mapping
def _copy_linear(ours: nn.Linear, theirs: nn.Linear) -> None:
    if ours.weight.shape != theirs.weight.shape:
        raise ValueError(f"Linear shape mismatch: ours {tuple(ours.weight.shape)}, torch {tuple(theirs.weight.shape)}")
    ours.weight.copy_(theirs.weight)
    if (ours.bias is None) != (theirs.bias is None):
        raise ValueError("Linear bias mismatch between ours and torch")
    if ours.bias is not None:
        ours.bias.copy_(theirs.bias)


def _copy_norm(ours: LayerNorm, theirs: nn.LayerNorm) -> None:
    if ours.normalized_shape != tuple(theirs.normalized_shape) or ours.eps != theirs.eps:
        raise ValueError(f"LayerNorm mismatch: ours {ours.normalized_shape} eps={ours.eps}, torch "
                         f"{tuple(theirs.normalized_shape)} eps={theirs.eps}")
    for name in ("weight", "bias"):
        a, b = getattr(ours, name), getattr(theirs, name)
        if (a is None) != (b is None):
            raise ValueError(f"LayerNorm {name} mismatch between ours and torch")
        if a is not None:
            a.copy_(b)


def _torch_activation_name(layer: nn.Module) -> str:
    act = layer.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or isinstance(act, nn.GELU):
        return "gelu"
    raise ValueError(f"unsupported torch activation {act!r}; ours supports relu and gelu")


def _check_layer(ours: TransformerEncoderLayer | TransformerDecoderLayer, theirs: nn.Module) -> None:
    if ours.norm_first != theirs.norm_first:
        raise ValueError(f"norm_first mismatch: ours {ours.norm_first}, torch {theirs.norm_first}")
    if ours.ff.activation != _torch_activation_name(theirs):
        raise ValueError(f"activation mismatch: ours {ours.ff.activation!r}, torch {_torch_activation_name(theirs)!r}")


@torch.no_grad()
def copy_weights_from_torch(ours: nn.Module, theirs: nn.Module) -> nn.Module:
    """Copy every weight of a torch module into its deepnotes twin; returns ``ours``.

    Pairs: :class:`~deepnotes.nn.attention.MultiHeadAttention` <- ``nn.MultiheadAttention`` (the packed
    ``in_proj_weight`` split into q/k/v), :class:`TransformerEncoderLayer` <- ``nn.TransformerEncoderLayer``,
    :class:`TransformerDecoderLayer` <- ``nn.TransformerDecoderLayer`` (``multihead_attn`` ->
    ``cross_attn``), :class:`TransformerEncoder` / :class:`TransformerDecoder` <- their torch stacks,
    :class:`Transformer` <- ``nn.Transformer``. ``linear1/linear2`` -> ``ff.linear1/ff.linear2``; norms by name.

    Raises:
        ValueError: an unsupported pair, or a mismatch in sizes, heads, layers, norm_first, activation, eps
        or bias settings.

    Example::

        ref = nn.Transformer(64, 4, 2, 2, 128, batch_first=True)
        ours = copy_weights_from_torch(Transformer(64, 4, 2, 2, 128), ref)
    """
    if isinstance(ours, MultiHeadAttention) and isinstance(theirs, nn.MultiheadAttention):
        ours.load_from_torch(theirs)
    elif isinstance(ours, TransformerEncoderLayer) and isinstance(theirs, nn.TransformerEncoderLayer):
        _check_layer(ours, theirs)
        ours.self_attn.load_from_torch(theirs.self_attn)
        _copy_linear(ours.ff.linear1, theirs.linear1), _copy_linear(ours.ff.linear2, theirs.linear2)
        _copy_norm(ours.norm1, theirs.norm1), _copy_norm(ours.norm2, theirs.norm2)
    elif isinstance(ours, TransformerDecoderLayer) and isinstance(theirs, nn.TransformerDecoderLayer):
        _check_layer(ours, theirs)
        ours.self_attn.load_from_torch(theirs.self_attn)
        ours.cross_attn.load_from_torch(theirs.multihead_attn)
        _copy_linear(ours.ff.linear1, theirs.linear1), _copy_linear(ours.ff.linear2, theirs.linear2)
        _copy_norm(ours.norm1, theirs.norm1), _copy_norm(ours.norm2, theirs.norm2)
        _copy_norm(ours.norm3, theirs.norm3)
    elif (isinstance(ours, TransformerEncoder) and isinstance(theirs, nn.TransformerEncoder)) or (
            isinstance(ours, TransformerDecoder) and isinstance(theirs, nn.TransformerDecoder)):
        if len(ours.layers) != len(theirs.layers):
            raise ValueError(f"layer count mismatch: ours {len(ours.layers)}, torch {len(theirs.layers)}")
        if (ours.norm is None) != (theirs.norm is None):
            raise ValueError(f"final norm mismatch: ours {ours.norm is not None}, torch {theirs.norm is not None}")
        for a, b in zip(ours.layers, theirs.layers):
            copy_weights_from_torch(a, b)
        if ours.norm is not None:
            _copy_norm(ours.norm, theirs.norm)
    elif isinstance(ours, Transformer) and isinstance(theirs, nn.Transformer):
        copy_weights_from_torch(ours.encoder, theirs.encoder)
        copy_weights_from_torch(ours.decoder, theirs.decoder)
    else:
        raise ValueError(f"no weight mapping from torch {type(theirs).__name__} to {type(ours).__name__}; "
                         "pair MultiHeadAttention, TransformerEncoderLayer, TransformerDecoderLayer, "
                         "TransformerEncoder, TransformerDecoder or Transformer with its torch.nn twin")
    return ours
