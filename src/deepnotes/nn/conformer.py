"""The Conformer encoder: macaron feed-forward, relative-position self-attention, convolution, from the equations.

Sources: ML2022 HW4 (speaker classification; the "boss" hint: replace the Transformer encoder by a
Conformer). Papers: Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech
Recognition", Interspeech 2020, §2 and Figures 1-3 (the block, eq. 1); Dai et al. 2019,
"Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context", §3.3 (relative positional
encodings, the score decomposition (a)-(d) and the learned biases u, v); the "relative shift" trick is
Transformer-XL's appendix B, in the two-sided form of ESPnet's ``RelPositionMultiHeadedAttention``.

One block (Gulati et al. eq. 1), read bottom-up in this file::

    x = x + ½ FFN(x)                         FeedForwardModule: LN, Linear d->4d, Swish, Dropout, Linear, Dropout
    x = x + Dropout(MHSA_rel(LN(x)))         RelPositionMultiHeadAttention
    x = x + Conv(x)                          ConvolutionModule: LN, pointwise 2d, GLU, depthwise k, BN, Swish, pointwise
    x = x + ½ FFN(x)
    y = LN(x)

Relative-position attention scores of query i and key j in one head (D = d_model / H, r_d the sinusoid of
distance d): ``[(q_i + u)·k_j + (q_i + v)·(W_pos r_{i-j})] / sqrt(D)``, content terms then position terms.

Padding: ``key_padding_mask`` (N, T) is True at padded frames (as in :mod:`deepnotes.nn.attention`); padded
keys are ignored and padded frames are zeroed before the depthwise convolution, so in eval mode the outputs at
real frames do not depend on how much padding follows them.

Deliberate differences from the papers:

* In training, the convolution module's BatchNorm takes its statistics over every frame of the batch, padded
  ones included; in eval mode (running statistics) padding has no effect.
* ``causal=True`` makes the whole block causal (streaming): the depthwise convolution looks only back and the
  self-attention is causally masked. The paper's block is non-causal.
* Scores are divided by sqrt(D), as in the Transformer-XL and ESPnet code (the paper's equations omit it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConformerBlock", "ConformerEncoder", "ConvSubsampling", "ConvolutionModule", "FeedForwardModule",
           "RelPositionMultiHeadAttention", "RelativePositionalEncoding", "relative_shift"]


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


# ----------------------------------------------------------------------------- relative positions
class RelativePositionalEncoding(nn.Module):
    r"""Sinusoidal encodings of the relative distances T-1, T-2, ..., -(T-1) (Transformer-XL's R).

    ::

        R[m, 2c]   = sin(d_m / 10000^(2c / d_model))          d_m = T - 1 - m,  m = 0 .. 2T-2
        R[m, 2c+1] = cos(d_m / 10000^(2c / d_model))

    The sinusoid of :class:`~deepnotes.nn.attention.SinusoidalPositionalEncoding` at a *distance* i - j (negative
    too: an encoder looks both ways), in the row order :func:`relative_shift` expects. Computed in float64 on each
    call (cheap), no parameters: the learned part is ``W_pos`` in the attention.

    Args:
        d_model: feature size (odd allowed: the last dimension is a sine).

    Shapes:
        forward(T) -> (2T - 1, d_model).

    Raises:
        ValueError: d_model < 1 or T < 1.

    Example::

        r = RelativePositionalEncoding(8)(5)   # (9, 8); r[4] is distance 0: [0, 1, 0, 1, ...]
    """

    def __init__(self, d_model: int):
        super().__init__()
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        self.d_model = d_model

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"

    def forward(self, T: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
        if T < 1:
            raise ValueError(f"sequence length T must be >= 1, got {T}")
        distance = torch.arange(T - 1, -T, -1, dtype=torch.float64, device=device)[:, None]  # (2T-1, 1)
        two_c = torch.arange(0, self.d_model, 2, dtype=torch.float64, device=device)  # 0, 2, 4, ...
        angle = distance / 10000.0 ** (two_c / self.d_model)  # (2T-1, ceil(d/2))
        r = torch.zeros(2 * T - 1, self.d_model, dtype=torch.float64, device=device)
        r[:, 0::2] = torch.sin(angle)
        r[:, 1::2] = torch.cos(angle[:, : self.d_model // 2])
        return r.to(torch.get_default_dtype() if dtype is None else dtype)


def relative_shift(x: Tensor) -> Tensor:
    """Turn scores indexed by (query i, distance row m) into scores indexed by (query i, key j).

    ``x[..., i, m]`` is the score of query i against the encoding of distance ``d_m = T - 1 - m``
    (:class:`RelativePositionalEncoding`'s row order). The pair (i, j) needs distance i - j, i.e. row
    ``m = T - 1 - i + j``: each query row must be read from a different offset. Transformer-XL's trick does
    it with one pad and two reshapes instead of a gather::

        pad a zero column on the left          (..., T, 2T-1) -> (..., T, 2T)
        read the rows as one strip, re-cut it  (..., 2T, T), and drop the first T values
        re-cut the rest as (..., T, 2T-1), keep the first T columns

    Output row i starts T + i (2T-1) = 2T·i + (T - i) values into the strip: column T - i of padded row i,
    which is original column T - 1 - i; so output column j is original column T - 1 - i + j, as wanted.

    Args:
        x: (..., T, 2T - 1).

    Returns:
        (..., T, T) with ``out[..., i, j] = x[..., i, T - 1 - i + j]``.

    Raises:
        ValueError: the last dim is not 2T - 1.
    """
    *batch, T, M = x.shape
    if M != 2 * T - 1:
        raise ValueError(f"relative_shift expects (..., T, 2T-1), got shape {tuple(x.shape)}")
    padded = F.pad(x, (1, 0))  # (..., T, 2T): a zero column on the left
    padded = padded.reshape(*batch, 2 * T, T)  # the same T * 2T values, re-cut into rows of T
    return padded[..., 1:, :].reshape(*batch, T, 2 * T - 1)[..., :T]  # (..., T, T)


class RelPositionMultiHeadAttention(nn.Module):
    r"""Multi-head self-attention with Transformer-XL relative positions (Dai et al. 2019 §3.3), as in Conformer.

    ::

        q, k, v = x W_qᵀ + b_q, x W_kᵀ + b_k, x W_vᵀ + b_v        split into H heads of D    (N, H, T, D)
        p       = R W_posᵀ                                          (no bias)                 (H, 2T-1, D)
        ac      = (q + u) kᵀ                                        content terms (a) + (c)   (N, H, T, T)
        bd      = relative_shift((q + v) pᵀ)                        position terms (b) + (d)  (N, H, T, T)
        weights = softmax_j((ac + bd) / sqrt(D))    (padded keys, and j > i when causal, get -inf)
        output  = concat_h(weights v) W_oᵀ + b_o                                              (N, T, d_model)

    ``u`` (``pos_bias_u``) and ``v`` (``pos_bias_v``) are learned (H, D) biases shared by all queries: u says
    which keys matter whatever the query, v which distances do. A query row with every key masked outputs
    zeros (as :func:`~deepnotes.nn.attention.scaled_dot_product_attention`).

    Fast path (``use_fused=True``): ``F.scaled_dot_product_attention(q + u, k, v, attn_mask=bd / sqrt(D))``,
    the position term passed as an additive mask; tested equal to the readable path.

    Args:
        d_model: model size (divisible by ``n_heads``).
        n_heads: H.
        dropout: dropout on the attention weights in training. Default 0.
        bias: biases in the q/k/v/output projections. Default True.

    Init: Xavier-uniform q/k/v/pos weights and u, v (as ESPnet), zero biases.

    Shapes:
        x (N, T, d_model), pos_emb (2T-1, d_model) from :class:`RelativePositionalEncoding`,
        key_padding_mask (N, T) bool True = padding -> output (N, T, d_model), weights (N, H, T, T) or None.

    Raises:
        ValueError: bad arguments, or inputs of the wrong shape.

    Example::

        attn = RelPositionMultiHeadAttention(64, 4)
        y, _ = attn(x, RelativePositionalEncoding(64)(x.shape[1]), key_padding_mask=padding_mask(lengths))
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model < 1 or n_heads < 1 or d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be a positive multiple of n_heads={n_heads}")
        _check_dropout(dropout)
        self.d_model, self.n_heads, self.head_dim, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.pos_proj = nn.Linear(d_model, d_model, bias=False)  # W_pos (Transformer-XL's W_{k,R})
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.pos_bias_u = nn.Parameter(torch.empty(n_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(n_heads, self.head_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.pos_proj):
            nn.init.xavier_uniform_(lin.weight)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, dropout={self.dropout}"

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor | None = None, is_causal: bool = False,
                need_weights: bool = False, use_fused: bool = False) -> tuple[Tensor, Tensor | None]:
        """Self-attention over ``x``; see the class docstring for shapes. ``need_weights`` returns the (N, H, T, T)
        weights (forces the readable path); ``is_causal`` lets query i see keys j <= i only."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (N, T, {self.d_model}), got shape {tuple(x.shape)}")
        N, T, _ = x.shape
        if tuple(pos_emb.shape) != (2 * T - 1, self.d_model):
            raise ValueError(f"pos_emb must be (2T-1={2 * T - 1}, {self.d_model}), got {tuple(pos_emb.shape)}")
        H, D = self.n_heads, self.head_dim
        q = self.q_proj(x).view(N, T, H, D)  # (N, T, H, D)
        k = self.k_proj(x).view(N, T, H, D).transpose(1, 2)  # (N, H, T, D)
        v = self.v_proj(x).view(N, T, H, D).transpose(1, 2)  # (N, H, T, D)
        p = self.pos_proj(pos_emb.to(x.dtype)).view(2 * T - 1, H, D).transpose(0, 1)  # (H, 2T-1, D)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (N, H, T, D)
        q_v = (q + self.pos_bias_v).transpose(1, 2)  # (N, H, T, D)
        bd = relative_shift(q_v @ p.transpose(-2, -1)) / math.sqrt(D)  # (N, H, T, 2T-1) -> (N, H, T, T)

        allowed = self._allowed(key_padding_mask, is_causal, N, T, x.device)  # (N, 1, T or 1, T) or None
        p_drop = self.dropout if self.training else 0.0
        if use_fused and not need_weights:
            mask = bd if allowed is None else bd.masked_fill(~allowed, float("-inf"))
            out, weights = F.scaled_dot_product_attention(q_u, k, v, attn_mask=mask, dropout_p=p_drop), None
        else:
            scores = q_u @ k.transpose(-2, -1) / math.sqrt(D) + bd  # (N, H, T, T)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            blocked = torch.isneginf(scores).all(dim=-1, keepdim=True)  # rows with no key left
            weights = torch.softmax(scores.masked_fill(blocked, 0.0), dim=-1).masked_fill(blocked, 0.0)
            weights = F.dropout(weights, p=p_drop, training=p_drop > 0)
            out = weights @ v  # (N, H, T, D)
        out = self.out_proj(out.transpose(1, 2).reshape(N, T, self.d_model))  # (N, T, d_model)
        return out, weights if need_weights else None

    @staticmethod
    def _allowed(key_padding_mask: Tensor | None, is_causal: bool, N: int, T: int,
                 device: torch.device) -> Tensor | None:
        """True = may attend, broadcastable to (N, H, T, T)."""
        allowed = None
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, T) or key_padding_mask.dtype != torch.bool:
                raise ValueError(f"key_padding_mask must be bool (N={N}, T={T}) with True = padding, got "
                                 f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
            allowed = ~key_padding_mask[:, None, None, :]  # (N, 1, 1, T)
        if is_causal:
            causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)
            allowed = causal if allowed is None else allowed & causal
        return allowed


# ---------------------------------------------------------------------------------- convolution
class ConvolutionModule(nn.Module):
    r"""Conformer's convolution module (Gulati et al. 2020, §2.2 and Figure 2), residual not included.

    ::

        LayerNorm -> pointwise Conv1d d -> 2d -> GLU (back to d) -> zero padded frames
        -> depthwise Conv1d (kernel k, one filter per channel) -> BatchNorm -> Swish -> pointwise Conv1d d -> d
        -> Dropout

    Time padding of the depthwise convolution: ``causal=True`` pads k-1 zeros on the left only (output t sees
    inputs t-k+1 .. t); otherwise (k-1)/2 on both sides (centred; k must be odd). Either way the output has
    as many frames as the input.

    Args:
        d_model: channels C.
        kernel_size: k of the depthwise convolution (the paper's best: 32 for a 15 M model; odd here unless
            causal). Default 31.
        dropout: after the last pointwise convolution. Default 0.1.
        causal: look only at past frames. Default False.
        eps: LayerNorm and BatchNorm epsilon. Default 1e-5.

    Shapes:
        x (N, T, d_model), key_padding_mask (N, T) bool True = padding -> (N, T, d_model).

    Raises:
        ValueError: kernel_size < 1, an even kernel_size with ``causal=False``, bad dropout or input shape.

    Example::

        conv = ConvolutionModule(64, kernel_size=15)
        y = x + conv(x, key_padding_mask=padding_mask(lengths))
    """

    def __init__(self, d_model: int, kernel_size: int = 31, dropout: float = 0.1, causal: bool = False,
                 eps: float = 1e-5):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        if not causal and kernel_size % 2 == 0:
            raise ValueError(f"a non-causal ConvolutionModule needs an odd kernel_size (the same number of frames "
                             f"on each side), got {kernel_size}; use {kernel_size - 1} or {kernel_size + 1}, "
                             f"or causal=True")
        _check_dropout(dropout)
        self.d_model, self.kernel_size, self.causal = d_model, kernel_size, causal
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model)
        self.batch_norm = nn.BatchNorm1d(d_model, eps=eps)
        self.pointwise2 = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, kernel_size={self.kernel_size}, causal={self.causal}"

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (N, T, {self.d_model}), got shape {tuple(x.shape)}")
        h = self.norm(x).transpose(1, 2)  # (N, C, T)
        h = F.glu(self.pointwise1(h), dim=1)  # (N, 2C, T) -> (N, C, T): first half * sigmoid(second half)
        if key_padding_mask is not None:
            h = h.masked_fill(key_padding_mask[:, None, :], 0.0)  # padded frames must not leak into real ones
        k = self.kernel_size
        h = F.pad(h, (k - 1, 0) if self.causal else ((k - 1) // 2, (k - 1) // 2))  # (N, C, T + k - 1)
        h = self.depthwise(h)  # (N, C, T)
        h = F.silu(self.batch_norm(h))  # Swish(x) = x * sigmoid(x)
        h = self.dropout(self.pointwise2(h))  # (N, C, T)
        return h.transpose(1, 2)  # (N, T, C)


class FeedForwardModule(nn.Module):
    """Conformer's feed-forward module (Gulati et al. 2020, §2.3), residual and ½ not included.

    ``Dropout(Linear(Dropout(Swish(Linear(LayerNorm(x))))))``, hidden size ``ff_mult * d_model``. The block
    uses two, as macaron halves (Lu et al. 2019): ``x + ½ FFN(x)`` before attention and after the convolution.

    Args:
        d_model: features C.
        ff_mult: hidden size / d_model. Default 4.
        dropout: after the activation and after the output layer. Default 0.1.
        eps: LayerNorm epsilon. Default 1e-5.

    Shapes:
        (N, T, d_model) -> (N, T, d_model).

    Raises:
        ValueError: d_model or ff_mult < 1, dropout outside [0, 1).
    """

    def __init__(self, d_model: int, ff_mult: int = 4, dropout: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if d_model < 1 or ff_mult < 1:
            raise ValueError(f"d_model and ff_mult must be >= 1, got {d_model}, {ff_mult}")
        _check_dropout(dropout)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.linear1 = nn.Linear(d_model, ff_mult * d_model)
        self.linear2 = nn.Linear(ff_mult * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.linear2(self.dropout(F.silu(self.linear1(self.norm(x))))))


# ------------------------------------------------------------------------------------ the block
class ConformerBlock(nn.Module):
    r"""One Conformer block (Gulati et al. 2020, eq. 1): FFN/2, relative-position MHSA, convolution, FFN/2, LN.

    ::

        x = x + ½ FFN1(x)
        x = x + Dropout(MHSA_rel(LN(x)))
        x = x + Conv(x)
        x = x + ½ FFN2(x)
        y = LN(x)

    Args:
        d_model: model size.
        n_heads: attention heads (divide ``d_model``).
        ff_mult: feed-forward hidden size / d_model. Default 4.
        kernel_size: depthwise convolution kernel (odd unless causal). Default 31.
        dropout: in the feed-forward and convolution modules, on the attention weights and after attention.
            Default 0.1.
        causal: causal convolution and causally masked attention (output t depends on inputs <= t). Default False.
        eps: LayerNorm / BatchNorm epsilon. Default 1e-5.
        use_fused: attention through ``F.scaled_dot_product_attention`` (an attribute; may be toggled). Default False.

    Shapes:
        x (N, T, d_model), key_padding_mask (N, T) bool True = padding, pos_emb (2T-1, d_model) (computed if not
        given) -> (N, T, d_model). Outputs at padded frames are finite but meaningless.

    Raises:
        ValueError: bad arguments or input shapes.

    Example::

        block = ConformerBlock(64, 4, kernel_size=15)
        y = block(x, key_padding_mask=padding_mask(lengths))   # x (N, T, 64)
    """

    def __init__(self, d_model: int, n_heads: int, ff_mult: int = 4, kernel_size: int = 31, dropout: float = 0.1,
                 causal: bool = False, eps: float = 1e-5, use_fused: bool = False):
        super().__init__()
        self.d_model, self.causal, self.use_fused = d_model, causal, use_fused
        self.ff1 = FeedForwardModule(d_model, ff_mult, dropout, eps)
        self.norm_attn = nn.LayerNorm(d_model, eps=eps)
        self.self_attn = RelPositionMultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.dropout_attn = nn.Dropout(dropout)
        self.conv = ConvolutionModule(d_model, kernel_size, dropout, causal, eps)
        self.ff2 = FeedForwardModule(d_model, ff_mult, dropout, eps)
        self.norm_out = nn.LayerNorm(d_model, eps=eps)
        self.pos_enc = RelativePositionalEncoding(d_model)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, pos_emb: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (N, T, {self.d_model}), got shape {tuple(x.shape)}")
        if pos_emb is None:
            pos_emb = self.pos_enc(x.shape[1], device=x.device, dtype=x.dtype)
        x = x + 0.5 * self.ff1(x)
        attn, _ = self.self_attn(self.norm_attn(x), pos_emb, key_padding_mask=key_padding_mask,
                                 is_causal=self.causal, use_fused=self.use_fused)
        x = x + self.dropout_attn(attn)
        x = x + self.conv(x, key_padding_mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm_out(x)


def subsample_mask(key_padding_mask: Tensor) -> Tensor:
    """The key padding mask (N, T) after one 3-wide, stride-2 convolution without padding: (N, (T - 1) // 2); an
    output frame is padding when any of its three input frames is (padding is at the end)."""
    return key_padding_mask[:, 2::2][:, :(key_padding_mask.shape[1] - 1) // 2]


class ConvSubsampling(nn.Module):
    """The Conformer's convolutional subsampling (Gulati et al. 2020, Fig. 1): two 3x3 ``Conv2d`` with stride 2,
    each followed by ReLU, over the (time, frequency) plane of the frames, then a Linear to ``d_model``. T frames
    become ((T - 1) // 2 - 1) // 2, about T / 4 (40 ms a frame at a 10 ms hop): the encoder's cost falls about 4x.

    Args:
        n_mels: features per input frame (>= 7).
        d_model: output width.
        channels: the convolutions' channels. Default None = ``d_model``.

    Shapes:
        x (N, T, n_mels), T >= 7; key_padding_mask (N, T) bool, True = padding -> (N, T', d_model) and (N, T').

    Raises:
        ValueError: n_mels < 7, or fewer than 7 frames.
    """

    def __init__(self, n_mels: int, d_model: int, channels: int | None = None):
        super().__init__()
        if n_mels < 7:
            raise ValueError(f"n_mels must be >= 7 for two stride-2 3x3 convolutions, got {n_mels}")
        c = channels or d_model
        self.conv = nn.Sequential(nn.Conv2d(1, c, 3, 2), nn.ReLU(), nn.Conv2d(c, c, 3, 2), nn.ReLU())
        self.out = nn.Linear(c * (((n_mels - 1) // 2 - 1) // 2), d_model)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if x.dim() != 3 or x.shape[1] < 7:
            raise ValueError(f"x must be (N, T >= 7, n_mels), got shape {tuple(x.shape)}")
        h = self.conv(x.unsqueeze(1))  # (N, c, T', F')
        n, c, t, f = h.shape
        h = self.out(h.permute(0, 2, 1, 3).reshape(n, t, c * f))  # (N, T', d_model)
        if key_padding_mask is not None:
            key_padding_mask = subsample_mask(subsample_mask(key_padding_mask))
        return h, key_padding_mask


class ConformerEncoder(nn.Module):
    """A stack of ``num_layers`` :class:`ConformerBlock` s (independent inits) sharing one relative-position table.

    The paper's encoder also has a convolutional subsampling front end and a linear layer before the blocks;
    here the caller supplies (N, T, d_model) features (e.g. :class:`deepnotes.nn.speaker.SpeakerClassifier`'s
    linear prelude on log-mel frames).

    Args:
        num_layers: blocks (>= 1).
        d_model, n_heads, ff_mult, kernel_size, dropout, causal, eps, use_fused: as :class:`ConformerBlock`
            (defaults 4, 31, 0.1, False, 1e-5, False); each block's ``use_fused`` attribute may be toggled.

    Shapes:
        x (N, T, d_model), key_padding_mask (N, T) bool True = padding -> (N, T, d_model).

    Raises:
        ValueError: num_layers < 1, or as :class:`ConformerBlock`.

    Example::

        enc = ConformerEncoder(2, d_model=80, n_heads=2, kernel_size=15)
        h = enc(x, key_padding_mask=padding_mask(lengths))
    """

    def __init__(self, num_layers: int, d_model: int, n_heads: int, ff_mult: int = 4, kernel_size: int = 31,
                 dropout: float = 0.1, causal: bool = False, eps: float = 1e-5, use_fused: bool = False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.d_model, self.num_layers = d_model, num_layers
        self.pos_enc = RelativePositionalEncoding(d_model)
        self.layers = nn.ModuleList(ConformerBlock(d_model, n_heads, ff_mult, kernel_size, dropout, causal, eps,
                                                   use_fused) for _ in range(num_layers))

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (N, T, {self.d_model}), got shape {tuple(x.shape)}")
        pos_emb = self.pos_enc(x.shape[1], device=x.device, dtype=x.dtype)  # (2T-1, d_model), once for all blocks
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask, pos_emb=pos_emb)
        return x
