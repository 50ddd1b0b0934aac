"""Batch normalization and layer normalization, written from the equations (no ``F.batch_norm``).

Source: ML2021/2022 lecture 2, "類神經網路訓練不起來怎麼辦 (五): 批次標準化 (Batch Normalization)":
feature normalization makes the error surface less elongated; in a network the statistics are
taken over the batch, and at test time the moving averages computed during training stand in for
them ("BN in test"). Papers: Ioffe & Szegedy 2015, Algorithm 1 and 2 (batch norm); Ba, Kiros &
Hinton 2016 (layer norm, used by the Transformer: statistics over the features of one example).

Both match ``torch.nn`` semantics and state-dict keys (``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``), so weights load either way; tests compare outputs,
running statistics and gradients with ``torch.nn.BatchNorm1d/2d`` and ``torch.nn.LayerNorm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _BatchNorm(nn.Module):
    r"""Batch normalization over every dimension except the channel dimension 1.

    Training (or ``track_running_stats=False``), per channel c, over the batch and spatial positions::

        μ_c = mean(x_c)                      σ²_c = mean((x_c - μ_c)²)        (biased, used to normalize)
        y = γ_c (x - μ_c) / sqrt(σ²_c + ε) + β_c
        running_mean ← (1 - m) running_mean + m μ_c
        running_var  ← (1 - m) running_var  + m σ²_c n / (n - 1)            (unbiased, n values per channel)

    with ``m = momentum`` (or ``1 / num_batches_tracked``, a cumulative average, when momentum is None).
    Evaluation: the same formula with ``running_mean`` and ``running_var`` in place of μ and σ².
    Note torch's ``momentum`` is the weight of the *new* batch (0.1), the opposite of the usual
    exponential-moving-average convention.
    """

    _expected_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1] or None (cumulative average), got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))  # γ
            self.bias = nn.Parameter(torch.zeros(num_features))  # β
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in self._expected_dims:
            raise ValueError(f"{type(self).__name__} expects a {' or '.join(f'{d}-D' for d in self._expected_dims)} "
                             f"input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels in dim 1 "
                             f"(input shape {tuple(x.shape)})")
        dims = [0] + list(range(2, x.dim()))  # every dim but the channels
        shape = [1, -1] + [1] * (x.dim() - 2)  # broadcast a (C,) vector over x: (1, C, 1, ...)
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            n = x.numel() // x.shape[1]  # values per channel
            if n < 2 and self.training:
                raise ValueError(f"expected more than 1 value per channel when training, got input shape {tuple(x.shape)}")
            mean = x.mean(dim=dims)  # (C,)
            var = (x - mean.view(shape)).pow(2).mean(dim=dims)  # (C,) biased: divide by n
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked += 1
                    m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                    self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                    self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)  # unbiased
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            x_hat = x_hat * self.weight.view(shape) + self.bias.view(shape)
        return x_hat


class BatchNorm1d(_BatchNorm):
    """Batch normalization of features (B, C) or sequences (B, C, L), per channel C.

    Args:
        num_features: C.
        eps: added to the variance under the square root. Default 1e-5.
        momentum: weight of the new batch in the running estimates, in [0, 1]; None = cumulative
            average over all batches. Default 0.1.
        affine: learnable per-channel scale γ (init 1) and shift β (init 0). Default True.
        track_running_stats: keep running_mean/running_var for evaluation; if False, batch
            statistics are used in eval mode too. Default True.

    Shapes:
        x: (B, C) or (B, C, L) -> same shape.

    Raises:
        ValueError: bad arguments; input of the wrong rank or channel count; one value per channel in training.

    Example::

        bn = BatchNorm1d(16); y = bn(torch.randn(32, 16))  # training mode: batch statistics
    """

    _expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of images (B, C, H, W), statistics per channel over B, H and W.

    Args: as :class:`BatchNorm1d`.

    Shapes:
        x: (B, C, H, W) -> (B, C, H, W).

    Raises:
        ValueError: bad arguments; input not 4-D or of the wrong channel count; one value per channel in training.
    """

    _expected_dims = (4,)


class LayerNorm(nn.Module):
    r"""Layer normalization: normalize each example over its last ``len(normalized_shape)`` dimensions.

    ::

        μ = mean(x[..., S])      σ² = mean((x - μ)²)      (biased; over the normalized dims S)
        y = γ (x - μ) / sqrt(σ² + ε) + β

    The same in training and evaluation (no running statistics). Source: Ba, Kiros & Hinton 2016.

    Args:
        normalized_shape: int or tuple, the trailing shape to normalize over (e.g. C, the feature size).
        eps: Default 1e-5.
        elementwise_affine: learnable γ (init 1) and β (init 0) of shape ``normalized_shape``. Default True.
        bias: learn β (only with ``elementwise_affine``). Default True.
        use_fused: compute with ``F.layer_norm`` (one fused kernel forward and backward, tested equal) instead of
            the readable elementwise path; an attribute, may be toggled. Default False. The Transformer layers set
            it with their own ``use_fused``; the labs' models use the fused path.

    Shapes:
        x: (*, *normalized_shape) -> same shape; e.g. (B, T, C) with normalized_shape C.

    Raises:
        ValueError: bad arguments, or the trailing dims of x differ from ``normalized_shape``.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, use_fused: bool = False):
        super().__init__()
        self.use_fused = use_fused
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape!r}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(shape))
            self.bias = nn.Parameter(torch.zeros(shape)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
                + (", fused" if self.use_fused else ""))

    def forward(self, x: Tensor) -> Tensor:
        k = len(self.normalized_shape)
        if tuple(x.shape[x.dim() - k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape} expects input ending in {self.normalized_shape}, "
                             f"got shape {tuple(x.shape)}")
        if self.use_fused:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        dims = tuple(range(-k, 0))
        mean = x.mean(dim=dims, keepdim=True)  # (*, 1, ..., 1)
        var = (x - mean).pow(2).mean(dim=dims, keepdim=True)  # biased
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y
