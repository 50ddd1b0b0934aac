"""Speaker classification and embeddings: pooling over time, the additive-margin softmax, the x-vector TDNN,
and the configurable classifier of ML2022 HW4.

Source: ML2022 (Hung-yi Lee) HW4, "speaker classification": log-mel frames (T, 40) of one utterance ->
one of 600 speakers. The sample code: a linear "prenet" 40 -> d_model=80, one Transformer encoder layer
(2 heads, feed-forward 256), mean pooling over time, a two-layer prediction head. The hints of the
"boss" baseline: a Conformer (:mod:`deepnotes.nn.conformer`), self-attention pooling, the additive-margin
softmax. Papers:

* Safari, India & Hernando 2020, "Self-attention encoding and pooling for speaker recognition",
  Interspeech 2020 (the pooling of the HW4 hint): frame weights ``w_t = softmax_t(vᵀ x_t)``.
* Wang, Cheng, Liu & Liu 2018, "Additive Margin Softmax for Face Verification", IEEE SPL 25(7), eq. 6:
  ``ψ(θ) = cos θ - m``, with normalized features and weights and a scale s.
* Snyder, Garcia-Romero, Sell, Povey & Khudanpur 2018, "X-vectors: robust DNN embeddings for speaker
  recognition", ICASSP 2018, Table 1 (the TDNN and its statistics pooling).

Every module takes batch-first frames (N, T, C) and an optional ``key_padding_mask`` (N, T), True at padded
frames (the :mod:`deepnotes.nn.attention` convention); padded frames never change a result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.nn.conformer import ConformerEncoder, ConvSubsampling
from deepnotes.nn.transformer import TransformerEncoder, TransformerEncoderLayer

__all__ = ["AMSoftmax", "MeanPooling", "SelfAttentionPooling", "SpeakerClassifier", "TDNN", "masked_mean",
           "statistics_pooling"]


def _check_frames(x: Tensor, key_padding_mask: Tensor | None, C: int | None = None) -> None:
    if x.dim() != 3 or (C is not None and x.shape[-1] != C):
        raise ValueError(f"x must be (N, T, {'C' if C is None else C}), got shape {tuple(x.shape)}")
    if key_padding_mask is not None and (tuple(key_padding_mask.shape) != tuple(x.shape[:2])
                                         or key_padding_mask.dtype != torch.bool):
        raise ValueError(f"key_padding_mask must be bool (N, T) = {tuple(x.shape[:2])} with True = padding, got "
                         f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")


# ------------------------------------------------------------------------------------------- pooling
def masked_mean(x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
    """Mean over time of the non-padded frames: ``Σ_t keep_t x_t / Σ_t keep_t``.

    Args:
        x: (N, T, C) frames.
        key_padding_mask: (N, T) bool, True = padding; None = no padding.

    Returns:
        (N, C). A sequence with no real frame gives zeros.

    Raises:
        ValueError: wrong shapes or mask dtype.
    """
    _check_frames(x, key_padding_mask)
    if key_padding_mask is None:
        return x.mean(dim=1)
    keep = (~key_padding_mask).unsqueeze(-1).to(x.dtype)  # (N, T, 1)
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)  # (N, C)


def statistics_pooling(x: Tensor, key_padding_mask: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """The x-vector's statistics pooling (Snyder et al. 2018): [mean, standard deviation] over non-padded frames.

    ``μ = mean_t x_t``, ``σ = sqrt(max(mean_t (x_t - μ)², eps))`` (biased variance; the floor keeps the gradient
    finite for a constant channel).

    Args:
        x: (N, T, C).
        key_padding_mask: (N, T) bool, True = padding.
        eps: variance floor. Default 1e-5.

    Returns:
        (N, 2C): ``cat([μ, σ], dim=-1)``.

    Raises:
        ValueError: wrong shapes or mask dtype.
    """
    mean = masked_mean(x, key_padding_mask)  # (N, C)
    var = masked_mean((x - mean[:, None, :]) ** 2, key_padding_mask)  # (N, C)
    return torch.cat([mean, var.clamp(min=eps).sqrt()], dim=-1)


class MeanPooling(nn.Module):
    """Mean over the non-padded frames (the HW4 sample code's ``out.mean(dim=1)``, made padding-aware).

    Shapes:
        x (N, T, C), key_padding_mask (N, T) bool True = padding -> (N, C).
    """

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return masked_mean(x, key_padding_mask)


class SelfAttentionPooling(nn.Module):
    r"""Self-attention pooling (Safari et al. 2020, §2.2; the ML2022 HW4 boss hint).

    ::

        e_t = vᵀ x_t + b                      one score per frame            (N, T)
        w_t = softmax_t(e_t)                  over the non-padded frames     (N, T)
        y   = Σ_t w_t x_t                                                    (N, C)

    A learned ``v`` lets the model weigh frames (voiced speech over silence) instead of averaging them; with
    all scores equal it is :class:`MeanPooling`. (The bias b cancels in the softmax; it is kept so that the
    layer is a plain ``nn.Linear(d_model, 1)``.)

    Args:
        d_model: frame features C.

    Shapes:
        x (N, T, d_model), key_padding_mask (N, T) bool True = padding -> (N, d_model). A sequence with no real
        frame gives zeros.

    Raises:
        ValueError: wrong shapes or mask dtype.

    Example::

        pool = SelfAttentionPooling(80)
        emb = pool(h, key_padding_mask=padding_mask(lengths))   # h (N, T, 80) -> (N, 80)
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.score = nn.Linear(d_model, 1)

    def weights(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """The frame weights w (N, T): each row sums to 1 over its real frames, 0 at padding."""
        _check_frames(x, key_padding_mask, self.d_model)
        scores = self.score(x).squeeze(-1)  # (N, T)
        if key_padding_mask is None:
            return torch.softmax(scores, dim=-1)
        scores = scores.masked_fill(key_padding_mask, float("-inf"))
        empty = key_padding_mask.all(dim=-1, keepdim=True)  # (N, 1): no real frame
        return torch.softmax(scores.masked_fill(empty, 0.0), dim=-1).masked_fill(key_padding_mask, 0.0)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        w = self.weights(x, key_padding_mask)  # (N, T)
        return (w.unsqueeze(-1) * x).sum(dim=1)  # (N, d_model)


# ------------------------------------------------------------------------------------------- AM-softmax
class AMSoftmax(nn.Module):
    r"""Additive-margin softmax logits (Wang et al. 2018, eq. 6); feed them to ``F.cross_entropy``.

    ::

        cos θ_j = (x / ||x||) · (W_j / ||W_j||)                      (N, num_classes)
        logits_j = s (cos θ_j - m [j = y])        with labels y (training)
        logits_j = s cos θ_j                      without labels (scoring, prediction)

    Subtracting m from the true class's cosine only makes training harder: the embedding must beat every
    other class by a margin in angle, which packs each speaker's embeddings tighter (good for verification by
    cosine similarity). With m = 0 it is a cosine classifier with temperature 1/s.

    Args:
        d_embed: embedding size.
        num_classes: classes (speakers).
        margin: m >= 0. Default 0.2 (the paper uses 0.35 for faces; 0.2 is common for speakers).
        scale: s > 0. Default 30.0.

    Init: Xavier-uniform ``weight`` (num_classes, d_embed).

    Shapes:
        embeddings (N, d_embed), labels (N,) int64 -> logits (N, num_classes).

    Raises:
        ValueError: margin < 0, scale <= 0, bad sizes, embeddings or labels of the wrong shape.

    Example::

        head = AMSoftmax(80, 600)
        loss = F.cross_entropy(head(emb, labels), labels)   # training
        pred = head(emb).argmax(-1)                          # prediction
    """

    def __init__(self, d_embed: int, num_classes: int, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        if d_embed < 1 or num_classes < 1:
            raise ValueError(f"d_embed and num_classes must be >= 1, got {d_embed}, {num_classes}")
        if margin < 0 or scale <= 0:
            raise ValueError(f"need margin >= 0 and scale > 0, got margin={margin}, scale={scale}")
        self.d_embed, self.num_classes, self.margin, self.scale = d_embed, num_classes, margin, scale
        self.weight = nn.Parameter(torch.empty(num_classes, d_embed))
        nn.init.xavier_uniform_(self.weight)

    def extra_repr(self) -> str:
        return f"d_embed={self.d_embed}, num_classes={self.num_classes}, margin={self.margin}, scale={self.scale}"

    def cosine(self, embeddings: Tensor) -> Tensor:
        """cos θ (N, num_classes) between each embedding and each class weight."""
        if embeddings.dim() != 2 or embeddings.shape[-1] != self.d_embed:
            raise ValueError(f"embeddings must be (N, {self.d_embed}), got shape {tuple(embeddings.shape)}")
        return F.normalize(embeddings, dim=-1) @ F.normalize(self.weight, dim=-1).T

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        cos = self.cosine(embeddings)  # (N, num_classes)
        if labels is None:
            return self.scale * cos
        if tuple(labels.shape) != (embeddings.shape[0],):
            raise ValueError(f"labels must be (N={embeddings.shape[0]},), got shape {tuple(labels.shape)}")
        margin = self.margin * F.one_hot(labels.long(), self.num_classes).to(cos.dtype)  # m at the true class
        return self.scale * (cos - margin)


# ------------------------------------------------------------------------------------------------ TDNN
class TDNN(nn.Module):
    """The x-vector network (Snyder et al. 2018, Table 1): dilated 1-D convolutions, statistics pooling, segment
    layers.

    ::

        frame1  context [t-2, t+2]       Conv1d kernel 5, dilation 1   n_mels   -> channels
        frame2  context {t-2, t, t+2}    Conv1d kernel 3, dilation 2   channels -> channels
        frame3  context {t-3, t, t+3}    Conv1d kernel 3, dilation 3   channels -> channels
        frame4  {t}                      Conv1d kernel 1               channels -> channels
        frame5  {t}                      Conv1d kernel 1               channels -> stats_channels
        stats   [mean, std] over the real frames                        -> 2 stats_channels
        segment6  Linear -> embedding ("embedding a")                   -> embed_dim
        segment7  ReLU, BN, Linear                                      -> embed_dim
        output    ReLU, BN, Linear                                      -> num_classes

    Each frame layer is Conv -> ReLU -> BatchNorm (Kaldi's order). The embedding is segment6's affine output,
    before its nonlinearity, as in the paper.

    Differences from the paper: the frame convolutions are zero-padded to keep T frames (Kaldi's network
    has no padding: T shrinks by 14), and padded frames are zeroed before every convolution and ignored by
    the pooling, so a padded batch gives the embeddings of its unpadded utterances (in eval mode).
    The paper's widths (the defaults: 512, 1500, 512) are for thousands of speakers and GPUs; for HW4 on a
    CPU, e.g. ``channels=128, stats_channels=384, embed_dim=128``.

    Args:
        n_mels: input features per frame. Default 40 (HW4).
        num_classes: speakers. Default 600 (HW4).
        channels: frame layers 1-4 width. Default 512.
        stats_channels: frame layer 5 width. Default 1500.
        embed_dim: segment layers width = embedding size. Default 512.

    Shapes:
        x (N, T, n_mels) log-mel frames, key_padding_mask (N, T) bool True = padding -> embed: (N, embed_dim),
        forward: logits (N, num_classes).

    Raises:
        ValueError: a width < 1, or inputs of the wrong shape.
    """

    FRAME_LAYERS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))  # (kernel, dilation) of frame1..frame5

    def __init__(self, n_mels: int = 40, num_classes: int = 600, channels: int = 512, stats_channels: int = 1500,
                 embed_dim: int = 512):
        super().__init__()
        if min(n_mels, num_classes, channels, stats_channels, embed_dim) < 1:
            raise ValueError(f"every size must be >= 1, got n_mels={n_mels}, num_classes={num_classes}, "
                             f"channels={channels}, stats_channels={stats_channels}, embed_dim={embed_dim}")
        self.n_mels, self.num_classes, self.embed_dim = n_mels, num_classes, embed_dim
        widths = [n_mels, channels, channels, channels, channels, stats_channels]
        self.frames = nn.ModuleList(nn.Conv1d(c_in, c_out, k, dilation=d)
                                    for (k, d), c_in, c_out in zip(self.FRAME_LAYERS, widths[:-1], widths[1:]))
        self.frame_norms = nn.ModuleList(nn.BatchNorm1d(c) for c in widths[1:])
        self.segment6 = nn.Linear(2 * stats_channels, embed_dim)
        self.segment7 = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(embed_dim), nn.Linear(embed_dim, embed_dim))
        self.output = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(embed_dim), nn.Linear(embed_dim, num_classes))

    def embed(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """The x-vector (segment6's affine output), (N, T, n_mels) -> (N, embed_dim)."""
        _check_frames(x, key_padding_mask, self.n_mels)
        h = x.transpose(1, 2)  # (N, C, T)
        pad = None if key_padding_mask is None else key_padding_mask[:, None, :]  # (N, 1, T)
        for conv, norm in zip(self.frames, self.frame_norms):
            if pad is not None:
                h = h.masked_fill(pad, 0.0)  # padded frames must not reach real ones
            half = conv.dilation[0] * (conv.kernel_size[0] - 1) // 2
            h = norm(F.relu(conv(F.pad(h, (half, half)))))  # (N, C', T)
        return self.segment6(statistics_pooling(h.transpose(1, 2), key_padding_mask))  # (N, embed_dim)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        return self.output(self.segment7(self.embed(x, key_padding_mask)))  # (N, num_classes)


# ----------------------------------------------------------------------------------- the HW4 classifier
ENCODERS = ("transformer", "conformer")
POOLINGS = ("mean", "attention")
HEADS = ("linear", "mlp", "am-softmax")


class SpeakerClassifier(nn.Module):
    """The ML2022 HW4 model, configurable along its ladder: prelude, encoder, pooling, head.

    ::

        h = Linear(n_mels -> d_model)(x)                                  (N, T, d_model)   the sample's "prenet"
        h = encoder(h, key_padding_mask)                                  (N, T, d_model)
            "transformer": deepnotes TransformerEncoder of post-norm layers (the sample code's
                           nn.TransformerEncoderLayer: ReLU, feed-forward dim_feedforward, no positional encoding)
            "conformer":   ConformerEncoder (relative positions, convolution kernel_size)
        e = pooling(h, key_padding_mask)                                  (N, d_model)      embed() returns e
            "mean" | "attention" (SelfAttentionPooling)
        logits = head(e)                                                  (N, num_classes)
            "linear": Linear;  "mlp": Linear, ReLU, Linear (the sample code's pred_layer);
            "am-softmax": AMSoftmax (margin logits when labels are passed to forward)

    Args:
        num_classes: speakers (600 in HW4).
        n_mels: features per frame. Default 40.
        d_model: model size. Default 80 (the sample code).
        encoder: ``"transformer"`` or ``"conformer"``. Default ``"transformer"``.
        num_layers: encoder layers. Default 1 (the sample code).
        n_heads: attention heads. Default 2.
        dim_feedforward: Transformer feed-forward size. Default 256.
        ff_mult: Conformer feed-forward size / d_model. Default 4.
        kernel_size: Conformer convolution kernel (odd). Default 31.
        dropout: inside the encoder. Default 0.1.
        pooling: ``"mean"`` or ``"attention"``. Default ``"mean"``.
        head: ``"linear"``, ``"mlp"`` or ``"am-softmax"``. Default ``"mlp"``.
        margin, scale: AM-softmax m and s. Default 0.2, 30.0.
        use_fused: fused attention kernels in the encoder. Default False.
        subsampling: 1 (a Linear prelude, as HW4's sample) or 4 (the Conformer paper's
            :class:`~deepnotes.nn.conformer.ConvSubsampling`: the encoder sees about T / 4 frames). Default 1.
        subsampling_channels: the subsampling convolutions' channels. Default None = d_model.

    Shapes:
        x (N, T, n_mels), key_padding_mask (N, T) bool True = padding, labels (N,) -> logits (N, num_classes);
        embed: (N, d_model).

    Raises:
        ValueError: an unknown encoder / pooling / head (the message lists the choices), or bad sizes.

    Example::

        model = SpeakerClassifier(600, encoder="conformer", num_layers=2, pooling="attention", head="am-softmax")
        logits = model(mels, key_padding_mask=padding_mask(lengths), labels=speakers)   # training
        loss = F.cross_entropy(logits, speakers)
    """

    def __init__(self, num_classes: int, n_mels: int = 40, d_model: int = 80, encoder: str = "transformer",
                 num_layers: int = 1, n_heads: int = 2, dim_feedforward: int = 256, ff_mult: int = 4,
                 kernel_size: int = 31, dropout: float = 0.1, pooling: str = "mean", head: str = "mlp",
                 margin: float = 0.2, scale: float = 30.0, use_fused: bool = False, subsampling: int = 1,
                 subsampling_channels: int | None = None):
        super().__init__()
        for name, value, choices in (("encoder", encoder, ENCODERS), ("pooling", pooling, POOLINGS),
                                     ("head", head, HEADS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
        if min(num_classes, n_mels, d_model, num_layers) < 1:
            raise ValueError(f"num_classes, n_mels, d_model, num_layers must be >= 1, got {num_classes}, {n_mels}, "
                             f"{d_model}, {num_layers}")
        self.n_mels, self.d_model, self.num_classes = n_mels, d_model, num_classes
        self.encoder_name, self.pooling_name, self.head_name = encoder, pooling, head
        if subsampling not in (1, 4):
            raise ValueError(f"subsampling must be 1 (a Linear prelude) or 4 (ConvSubsampling), got {subsampling}")
        self.subsampling = subsampling
        self.prelude = nn.Linear(n_mels, d_model) if subsampling == 1 else \
            ConvSubsampling(n_mels, d_model, subsampling_channels)
        if encoder == "transformer":
            self.encoder = TransformerEncoder(lambda: TransformerEncoderLayer(
                d_model, n_heads, dim_feedforward=dim_feedforward, dropout=dropout, use_fused=use_fused), num_layers)
        else:
            self.encoder = ConformerEncoder(num_layers, d_model, n_heads, ff_mult=ff_mult, kernel_size=kernel_size,
                                            dropout=dropout, use_fused=use_fused)
        self.pooling = MeanPooling() if pooling == "mean" else SelfAttentionPooling(d_model)
        if head == "linear":
            self.head = nn.Linear(d_model, num_classes)
        elif head == "mlp":
            self.head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, num_classes))
        else:
            self.head = AMSoftmax(d_model, num_classes, margin=margin, scale=scale)

    def embed(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """The pooled utterance embedding, (N, T, n_mels) -> (N, d_model)."""
        _check_frames(x, key_padding_mask, self.n_mels)
        if self.subsampling == 1:
            h = self.prelude(x)  # (N, T, d_model)
        else:
            h, key_padding_mask = self.prelude(x, key_padding_mask)  # (N, T', d_model), T' ~ T / 4
        if self.encoder_name == "transformer":
            h = self.encoder(h, src_key_padding_mask=key_padding_mask)
        else:
            h = self.encoder(h, key_padding_mask=key_padding_mask)
        return self.pooling(h, key_padding_mask)  # (N, d_model)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Logits (N, num_classes); ``labels`` only matter for the AM-softmax head (margin logits in training)."""
        e = self.embed(x, key_padding_mask)
        return self.head(e, labels) if isinstance(self.head, AMSoftmax) else self.head(e)
