"""Scaled dot-product attention, multi-head attention, masks and positional encodings, from the equations.

Sources: ML2021/2022 lectures 4-5, "自注意力機制 (Self-attention) 上/下" (every output b^i is a
softmax-weighted sum of values v^j, weights from the query-key dot products α'_{i,j} = softmax_j(q^i·k^j);
"multi-head self-attention": several (W^q, W^k, W^v) sets whose outputs are concatenated and mixed by W^o;
"positional encoding": a vector e^i added to a^i; "truncated self-attention" for speech: each frame
attends only to a window around it), "Transformer (下) Decoder" ("masked multi-head attention": b^i
may only look at a^1..a^i; "cross attention": queries from the decoder, keys and values from the
encoder output). EE-559 13-1 "Attention for memory and sequence translation": Y_j = Σ_i softmax_i(a(C_j,
V_i)) V_i. Paper: Vaswani et al. 2017, "Attention is all you need", §3.2 (eq. 1, multi-head) and §3.5
(sinusoidal positional encoding).

Mask conventions (the same as ``F.scaled_dot_product_attention``, used everywhere in deepnotes):

* ``attn_mask`` boolean: **True = may attend** (allowed); a float ``attn_mask`` is **added** to the
  scores (0 = allowed, -inf = blocked, any other value = a bias). Note: ``nn.MultiheadAttention`` and
  ``nn.Transformer`` use the opposite boolean convention (True = NOT allowed): pass ``~mask`` to them.
* ``key_padding_mask`` (N, S) boolean: **True = padding** (ignored key), the ``nn.MultiheadAttention``
  convention, because it is what a batch of lengths naturally gives (:func:`padding_mask`).

Deliberate differences from torch:

* A query row whose keys are all masked outputs zeros (and weights of zeros, zero gradients), never NaN.
  ``F.scaled_dot_product_attention`` (torch >= 2.5, CPU) does the same, so the readable and fused paths
  agree; ``nn.MultiheadAttention`` returns NaN for such rows.
* ``is_causal=True`` together with ``attn_mask`` is allowed (the masks are combined: allowed by both);
  ``F.scaled_dot_product_attention`` raises instead. ``is_causal`` always *builds* the causal mask (in
  ``nn.Transformer`` it is only a hint that the given mask is causal).
* :class:`MultiHeadAttention` keeps four ``nn.Linear`` layers (``q_proj``, ``k_proj``, ``v_proj``,
  ``out_proj``) instead of one packed ``in_proj_weight``; :meth:`MultiHeadAttention.load_from_torch`
  maps the weights. ``add_bias_kv`` and ``add_zero_attn`` are not supported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LearnedPositionalEmbedding", "MultiHeadAttention", "SinusoidalPositionalEncoding", "causal_mask",
           "padding_mask", "scaled_dot_product_attention", "window_mask"]


# --------------------------------------------------------------------------------------------- masks
def causal_mask(L: int, S: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean causal ("masked self-attention") mask: query i may attend key j iff j <= i.

    Aligned top-left like ``F.scaled_dot_product_attention(is_causal=True)`` (for S != L, row i still
    allows keys 0..i). Source: ML2021 "Masked multi-head attention" (b^2 cannot look at a^3, a^4).

    Args:
        L: number of queries (target length).
        S: number of keys; default L.
        device: where to create the mask.

    Returns:
        Bool tensor (L, S), True = allowed (``torch.ones(L, S).tril()``).

    Raises:
        ValueError: L or S negative.

    Example::

        causal_mask(3)  # [[T, F, F], [T, T, F], [T, T, T]]
    """
    S = L if S is None else S
    if L < 0 or S < 0:
        raise ValueError(f"causal_mask sizes must be >= 0, got L={L}, S={S}")
    return torch.ones(L, S, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: Tensor | Sequence[int], max_len: int | None = None) -> Tensor:
    """Key padding mask from sequence lengths: True where a position is padding (index >= length).

    The ``nn.MultiheadAttention`` ``key_padding_mask`` convention (True = PAD = ignored key), the
    opposite of a boolean ``attn_mask``.

    Args:
        lengths: (N,) integer lengths, each in [0, max_len].
        max_len: S, the padded length; default ``max(lengths)`` (0 for an empty batch).

    Returns:
        Bool tensor (N, S), True = padding.

    Raises:
        ValueError: lengths not 1-D or not integers, a negative length, or a length above ``max_len``.

    Example::

        padding_mask([3, 1])  # [[F, F, F], [F, T, T]]
    """
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (N,), got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_len is None:
        max_len = longest
    elif max_len < longest:
        raise ValueError(f"max_len={max_len} is shorter than the longest sequence ({longest}); "
                         "pass max_len >= max(lengths) or leave it None")
    positions = torch.arange(max_len, device=lengths.device)  # (S,)
    return positions[None, :] >= lengths[:, None]  # (N, S)


def window_mask(L: int, window: int, causal: bool = False, device: torch.device | str | None = None) -> Tensor:
    """Boolean mask for truncated (local, windowed) self-attention.

    Query i may attend key j iff ``|i - j| <= window``, or, with ``causal=True``, iff
    ``0 <= i - j <= window`` (only the ``window`` previous positions and itself). Source: ML2021/2022
    "Self-attention for speech: truncated self-attention" (a frame looks only at a neighbourhood).

    Args:
        L: sequence length (queries = keys).
        window: half-width (>= 0); ``window=0`` lets each position attend only to itself.
        causal: look only backwards. Default False.
        device: where to create the mask.

    Returns:
        Bool tensor (L, L), True = allowed.

    Raises:
        ValueError: L or window negative.
    """
    if L < 0:
        raise ValueError(f"window_mask length L must be >= 0, got {L}")
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    i = torch.arange(L, device=device)[:, None]  # (L, 1) query index
    j = torch.arange(L, device=device)[None, :]  # (1, L) key index
    d = i - j
    return (d >= 0) & (d <= window) if causal else d.abs() <= window


def _merge_masks(attn_mask: Tensor | None, is_causal: bool, L: int, S: int, dtype: torch.dtype,
                 device: torch.device) -> Tensor | None:
    """One mask from ``attn_mask`` and ``is_causal``: bool if both are bool, else additive float of ``dtype``."""
    masks = [] if attn_mask is None else [attn_mask]
    if is_causal:
        masks.append(causal_mask(L, S, device=device))
    if not masks:
        return None
    if all(m.dtype == torch.bool for m in masks):
        out = masks[0]
        for m in masks[1:]:
            out = out & m
        return out
    out = None
    for m in masks:
        m = _to_additive(m, dtype)
        out = m if out is None else out + m
    return out


def _to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """bool (True = allowed) -> 0 / -inf; float -> cast to ``dtype``."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def _check_mask(mask: Tensor, L: int, S: int, name: str) -> None:
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(f"{name} must be bool (True = allowed) or floating (added to the scores), got {mask.dtype}")
    if mask.dim() < 2 or mask.shape[-2] not in (1, L) or mask.shape[-1] not in (1, S):
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to the scores (..., L={L}, S={S})")


# --------------------------------------------------------------------------------- the attention op
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 is_causal: bool = False, dropout_p: float = 0.0, training: bool = True,
                                 use_fused: bool = False) -> tuple[Tensor, Tensor | None]:
    r"""Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(E) + M) V  (Vaswani et al. 2017, eq. 1).

    Readable path, step by step::

        scores  = Q Kᵀ / sqrt(E)                         (..., L, S)  α_{i,j} = q^i · k^j / sqrt(E)
        scores  = scores + M   or   -inf where bool M is False
        weights = softmax_j(scores)                      (..., L, S)  α'_{i,j}, each row sums to 1
        weights = dropout(weights)                        (training only)
        output  = weights V                               (..., L, Ev) b^i = Σ_j α'_{i,j} v^j

    A row with every key masked (all scores -inf) gets weights 0 and output 0, not NaN (0/0); this is
    also what ``F.scaled_dot_product_attention`` does on CPU in torch 2.13. The fused path calls
    ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU) and returns no weights.

    Args:
        query: (..., L, E).
        key: (..., S, E); batch dims broadcast with ``query``.
        value: (..., S, Ev).
        attn_mask: None, bool (True = allowed) or float (added to the scores), broadcastable to (..., L, S).
        is_causal: also apply :func:`causal_mask` (L, S); may be combined with ``attn_mask``. Default False.
        dropout_p: dropout probability on the attention weights, in [0, 1). Default 0.
        training: apply dropout only when True (pass ``self.training``). Default True.
        use_fused: call ``F.scaled_dot_product_attention`` instead of the readable path. Default False.

    Returns:
        ``(output, weights)``: output (..., L, Ev); weights (..., L, S) as used for the output (after
        dropout), or None on the fused path.

    Raises:
        ValueError: fewer than 2 dims, mismatched E or S, a mask of the wrong dtype or shape, dropout_p
        outside [0, 1).

    Example::

        q = k = v = torch.randn(2, 4, 10, 16)            # (B, H, T, D)
        out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    """
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise ValueError(f"query, key, value need at least 2 dims (..., T, E), got shapes {tuple(query.shape)}, "
                         f"{tuple(key.shape)}, {tuple(value.shape)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must share the feature size E, got {query.shape[-1]} and {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value must have the same length S, got {key.shape[-2]} and {value.shape[-2]}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    L, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
    if attn_mask is not None:
        _check_mask(attn_mask, L, S, "attn_mask")
    mask = _merge_masks(attn_mask, is_causal, L, S, query.dtype, query.device)
    p = dropout_p if training else 0.0

    if use_fused:
        if attn_mask is None and is_causal:
            mask = None  # the kernel's own causal path (same top-left alignment), no (L, S) mask built
        if query.device.type == "cpu" and query.dtype in (torch.bfloat16, torch.float16):
            # torch 2.13's CPU flash attention runs its backward about 4x slower in bfloat16 than in float32
            # (benchmarks/RESULTS.md, "char-gpt vs nanoGPT"): under CPU autocast the attention core stays float32
            if mask is not None and mask.dtype != torch.bool:
                mask = mask.float()
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(query.float(), key.float(), value.float(), attn_mask=mask,
                                                     dropout_p=p, is_causal=mask is None and is_causal)
            return out.to(query.dtype), None
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=p,
                                              is_causal=mask is None and is_causal), None

    scores = query @ key.transpose(-2, -1) / math.sqrt(E)  # (..., L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    blocked = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1) rows with nothing to attend to
    scores = scores.masked_fill(blocked, 0.0)  # keep softmax finite there; zeroed just below
    weights = torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)  # (..., L, S)
    if p > 0:
        weights = F.dropout(weights, p=p, training=True)
    return weights @ value, weights  # (..., L, Ev)


# ----------------------------------------------------------------------------- multi-head attention
class MultiHeadAttention(nn.Module):
    r"""Multi-head attention (Vaswani et al. 2017, §3.2.2), for self- and cross-attention.

    ::

        Q = query W_qᵀ + b_q     K = key W_kᵀ + b_k     V = value W_vᵀ + b_v      (N, T, d_model)
        split into H heads of D = d_model / H                                    (N, H, T, D)
        head_h = Attention(Q_h, K_h, V_h)                                         (N, H, L, D)
        output = concat_h(head_h) W_oᵀ + b_o                                      (N, L, d_model)

    Self-attention: ``query = key = value = x``; cross attention (decoder over encoder, ML2021
    "Cross Attention"): ``query`` from one sequence, ``key = value = memory`` from another.

    Args:
        d_model: model size (``embed_dim`` in torch); output size.
        n_heads: H, must divide ``d_model``.
        dropout: dropout on the attention weights in training. Default 0.
        bias: biases in the four projections. Default True.
        kdim: feature size of ``key``; default ``d_model``.
        vdim: feature size of ``value``; default ``d_model``.
        batch_first: inputs (N, T, C) if True (default) else (T, N, C).

    Init: Xavier-uniform projection weights and zero biases, as ``nn.MultiheadAttention`` (which applies
    Xavier to the packed (3 d_model, d_model) matrix, so the bounds differ slightly).

    Shapes:
        query (N, L, d_model), key (N, S, kdim), value (N, S, vdim) -> output (N, L, d_model);
        unbatched (L, d_model), (S, kdim), (S, vdim) also work. weights (N, L, S) averaged over heads,
        or (N, H, L, S).

    Raises:
        ValueError: bad arguments, or inputs / masks of the wrong shape.

    Example::

        mha = MultiHeadAttention(64, 8)
        y, _ = mha(x, x, x, key_padding_mask=padding_mask(lengths), is_causal=True)   # x (N, T, 64)
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = True):
        super().__init__()
        if d_model < 1 or n_heads < 1:
            raise ValueError(f"d_model and n_heads must be >= 1, got d_model={d_model}, n_heads={n_heads}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.kdim = d_model if kdim is None else kdim
        self.vdim = d_model if vdim is None else vdim
        self.dropout, self.batch_first = dropout, batch_first
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(self.kdim, d_model, bias=bias)
        self.v_proj = nn.Linear(self.vdim, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(lin.weight)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, dropout={self.dropout}, batch_first={self.batch_first}"

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` into this module; returns ``self``.

        torch packs W_q, W_k, W_v as the rows of ``in_proj_weight`` (3 d_model, d_model) (or keeps
        ``q/k/v_proj_weight`` when kdim/vdim differ) and the biases in ``in_proj_bias``.

        Raises:
            ValueError: different sizes, heads, bias setting, or ``add_bias_kv`` / ``add_zero_attn`` used.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise ValueError(f"expected a torch.nn.MultiheadAttention, got {type(mha).__name__}")
        if (mha.embed_dim, mha.num_heads, mha.kdim, mha.vdim) != (self.d_model, self.n_heads, self.kdim, self.vdim):
            raise ValueError(f"shape mismatch: torch (embed_dim, num_heads, kdim, vdim) = "
                             f"{(mha.embed_dim, mha.num_heads, mha.kdim, mha.vdim)}, ours "
                             f"{(self.d_model, self.n_heads, self.kdim, self.vdim)}")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn are not supported by MultiHeadAttention")
        if (mha.in_proj_bias is not None) != (self.q_proj.bias is not None):
            raise ValueError(f"bias mismatch: torch bias={mha.in_proj_bias is not None}, "
                             f"ours bias={self.q_proj.bias is not None}")
        E = self.d_model
        if mha.in_proj_weight is not None:  # packed: rows [W_q; W_k; W_v]
            wq, wk, wv = mha.in_proj_weight[:E], mha.in_proj_weight[E:2 * E], mha.in_proj_weight[2 * E:]
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        for lin, w in ((self.q_proj, wq), (self.k_proj, wk), (self.v_proj, wv)):
            lin.weight.copy_(w)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if self.q_proj.bias is not None:
            b = mha.in_proj_bias
            self.q_proj.bias.copy_(b[:E]), self.k_proj.bias.copy_(b[E:2 * E]), self.v_proj.bias.copy_(b[2 * E:])
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                attn_mask: Tensor | None = None, is_causal: bool = False, need_weights: bool = False,
                average_attn_weights: bool = True, use_fused: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: (N, L, d_model) (or (L, N, d_model) if not batch_first, or unbatched (L, d_model)).
            key: (N, S, kdim).
            value: (N, S, vdim).
            key_padding_mask: (N, S), bool True = padding (ignored key), or float added to the scores.
            attn_mask: bool True = allowed, or float added: (L, S), (N * H, L, S) as in torch, or
                broadcastable to (N, H, L, S).
            is_causal: also apply the causal mask (query i sees keys j <= i). Default False.
            need_weights: return the attention weights (forces the readable path). Default False.
            average_attn_weights: average the returned weights over heads. Default True.
            use_fused: use ``F.scaled_dot_product_attention`` when weights are not needed, and for self-attention
                (``query is key is value``) one packed q/k/v projection. Default False.

        Returns:
            ``(output, weights)``: output like ``query`` with d_model features; weights (N, L, S) or
            (N, H, L, S) (without N when unbatched), or None.
        """
        unbatched = query.dim() == 2
        if unbatched:
            if key.dim() != 2 or value.dim() != 2:
                raise ValueError(f"unbatched query (L, E) needs unbatched key and value, got {tuple(key.shape)}, "
                                 f"{tuple(value.shape)}")
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None and key_padding_mask.dim() == 1:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
            raise ValueError(f"query, key, value must be 3-D (batched) or 2-D (unbatched), got shapes "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        N, L, _ = query.shape
        S = key.shape[1]
        for name, x, dim in (("query", query, self.d_model), ("key", key, self.kdim), ("value", value, self.vdim)):
            if x.shape[-1] != dim:
                raise ValueError(f"{name} must have {dim} features, got shape {tuple(x.shape)}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != N:
            raise ValueError(f"key and value must be (N={N}, S, ·) with the same S, got {tuple(key.shape)}, "
                             f"{tuple(value.shape)}")

        H, D = self.n_heads, self.head_dim
        if use_fused and not need_weights and query is key and key is value:
            # self-attention, fused path: one (N L, d) x (d, 3 d) product with [W_q; W_k; W_v] instead of three
            q, k, v = self._packed_qkv(query).view(N, L, 3, H, D).permute(2, 0, 3, 1, 4)  # each (N, H, L, D)
        else:
            q = self.q_proj(query).view(N, L, H, D).transpose(1, 2)  # (N, H, L, D)
            k = self.k_proj(key).view(N, S, H, D).transpose(1, 2)  # (N, H, S, D)
            v = self.v_proj(value).view(N, S, H, D).transpose(1, 2)  # (N, H, S, D)

        mask = self._combined_mask(key_padding_mask, attn_mask, N, L, S, q.dtype)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                    dropout_p=self.dropout, training=self.training,
                                                    use_fused=use_fused and not need_weights)
        out = self.out_proj(out.transpose(1, 2).reshape(N, L, self.d_model))  # (N, L, d_model)

        if need_weights:
            weights = weights.mean(dim=1) if average_attn_weights else weights  # (N, L, S) or (N, H, L, S)
        else:
            weights = None
        if unbatched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _packed_qkv(self, x: Tensor) -> Tensor:
        """``x [W_q; W_k; W_v]ᵀ + [b_q; b_k; b_v]``: (N, L, d_model) -> (N, L, 3 d_model), one matmul (the weights
        stay three parameters; their concatenation is differentiated like any op)."""
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = None if self.q_proj.bias is None else torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        return F.linear(x, weight, bias)

    def _combined_mask(self, key_padding_mask: Tensor | None, attn_mask: Tensor | None, N: int, L: int, S: int,
                       dtype: torch.dtype) -> Tensor | None:
        """key_padding_mask (N, S) and attn_mask into one mask broadcastable to (N, H, L, S)."""
        masks = []
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S):
                raise ValueError(f"key_padding_mask must be (N={N}, S={S}), got {tuple(key_padding_mask.shape)}")
            if key_padding_mask.dtype == torch.bool:
                masks.append(~key_padding_mask[:, None, None, :])  # (N, 1, 1, S), True = allowed
            elif key_padding_mask.is_floating_point():
                masks.append(key_padding_mask[:, None, None, :])  # additive
            else:
                raise ValueError(f"key_padding_mask must be bool (True = pad) or float, got {key_padding_mask.dtype}")
        if attn_mask is not None:
            if attn_mask.dim() == 3:  # torch's (N * H, L, S)
                if attn_mask.shape[0] != N * self.n_heads:
                    raise ValueError(f"a 3-D attn_mask must be (N * n_heads={N * self.n_heads}, L, S), "
                                     f"got {tuple(attn_mask.shape)}")
                attn_mask = attn_mask.view(N, self.n_heads, *attn_mask.shape[1:])
            _check_mask(attn_mask, L, S, "attn_mask")
            masks.append(attn_mask)
        if not masks:
            return None
        if len(masks) == 1:
            return masks[0]
        if all(m.dtype == torch.bool for m in masks):
            return masks[0] & masks[1]
        return _to_additive(masks[0], dtype) + _to_additive(masks[1], dtype)


# ------------------------------------------------------------------------------ positional encodings
def _check_positions_args(d_model: int, max_len: int, dropout: float) -> None:
    if d_model < 1 or max_len < 1:
        raise ValueError(f"d_model and max_len must be >= 1, got d_model={d_model}, max_len={max_len}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class SinusoidalPositionalEncoding(nn.Module):
    r"""Adds the fixed sinusoidal positional encoding of Vaswani et al. 2017, §3.5, then dropout.

    ::

        PE[pos, 2i]   = sin(pos / 10000^(2i / d_model))
        PE[pos, 2i+1] = cos(pos / 10000^(2i / d_model))
        y = dropout(x + PE[:T])

    ML2021 "Positional Encoding": a hand-set vector e^i added to a^i so that self-attention, which
    ignores order, can see positions. The table is a buffer (moves with ``.to()``, not a parameter);
    it is not saved in the state dict since the formula rebuilds it. Odd ``d_model`` is allowed (the
    last dimension is a sine).

    Args:
        d_model: feature size C.
        max_len: longest sequence supported. Default 5000.
        dropout: dropout probability after the addition (training only). Default 0.

    Shapes:
        x: (B, T, d_model) or (T, d_model) -> same shape.

    Raises:
        ValueError: bad arguments; T > max_len or wrong feature size.
    """

    pe: Tensor

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        _check_positions_args(d_model, max_len, dropout)
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d/2),) = 0, 2, 4, ...
        angle = pos / 10000.0 ** (two_i / d_model)  # (max_len, ceil(d/2))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
        self.register_buffer("pe", pe.to(torch.get_default_dtype()), persistent=False)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"

    def forward(self, x: Tensor) -> Tensor:
        _check_positions(x, self.d_model, self.max_len, type(self).__name__)
        T = x.shape[-2]
        return self.dropout(x + self.pe[:T].to(x.dtype))


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned position vector to each time step (BERT, GPT-2, ViT), then dropout.

    ML2021 "Positional Encoding ... learned from data" (the later, dynamically generated schemes).
    ``weight`` (max_len, d_model) is initialised N(0, 0.02²) as in BERT / GPT-2.

    Args:
        max_len: longest sequence supported.
        d_model: feature size C.
        dropout: dropout probability after the addition (training only). Default 0.

    Shapes:
        x: (B, T, d_model) or (T, d_model) -> same shape.

    Raises:
        ValueError: bad arguments; T > max_len or wrong feature size.
    """

    def __init__(self, max_len: int, d_model: int, dropout: float = 0.0):
        super().__init__()
        _check_positions_args(d_model, max_len, dropout)
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.empty(max_len, d_model))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"

    def forward(self, x: Tensor) -> Tensor:
        _check_positions(x, self.d_model, self.max_len, type(self).__name__)
        return self.dropout(x + self.weight[: x.shape[-2]])


def _check_positions(x: Tensor, d_model: int, max_len: int, name: str) -> None:
    if x.dim() not in (2, 3) or x.shape[-1] != d_model:
        raise ValueError(f"{name} expects (B, T, {d_model}) or (T, {d_model}), got shape {tuple(x.shape)}")
    if x.shape[-2] > max_len:
        raise ValueError(f"{name}: sequence length {x.shape[-2]} exceeds max_len={max_len}; "
                         f"build it with a larger max_len")
