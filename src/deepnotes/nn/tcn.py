r"""Temporal convolutional networks: causal dilated 1-D convolutions with residual blocks.

Source: EE-559 (Fleuret) 12-1 "RNN", "Temporal Convolutions": the simplest approach to sequence
processing is a stack of 1-D convolutions over time; with dilated convolutions the model size is
O(log T) for a context of T steps, memory and computation O(T log T). Paper: Bai, Kolter & Koltun
2018, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks for Sequence
Modeling", section 3 (causal convolutions, dilations, residual blocks; their Figure 1).

A causal convolution with kernel size k and dilation d computes, per output channel o::

    y[o, t] = b[o] + Σ_c Σ_{j=0}^{k-1} W[o, c, j] · x[c, t - (k-1-j)·d]        (x[·, s] = 0 for s < 0)

so ``y[t]`` sees only ``x[<= t]``: it is an ordinary convolution after (k-1)·d zeros are padded on
the left, and the output has the input's length. A temporal block (Bai et al. Fig. 1b) is::

    z = Dropout(ReLU(CausalConv_d(x)));  z = Dropout(ReLU(CausalConv_d(z)))
    out = ReLU(z + (x if C_in == C_out else Conv1x1(x)))

and block i of a TCN uses dilation 2**i. Each causal conv adds (k-1)·d past steps to the receptive
field, so n blocks of two convs see ``1 + 2 (k-1)(2**n - 1)`` steps (:func:`receptive_field`).

Differences from Bai et al.'s code: left padding instead of symmetric padding followed by a
"chomp" of the right end (same result, tested); weight normalization is optional (``weight_norm=True``,
through ``torch.nn.utils.parametrizations.weight_norm``; off by default); the weights keep torch's
default Conv1d init unless :meth:`TemporalBlock.init_weights` is called (theirs: N(0, 0.01)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from deepnotes.nn.recurrent import _check_positive_int


def _check_dropout(dropout) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")


def _check_input(name: str, x: Tensor, in_channels: int) -> None:
    if not isinstance(x, Tensor) or x.dim() not in (2, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects input of shape (N, C_in, L) or unbatched (C_in, L), got {shape}")
    if x.shape[-2] != in_channels:
        raise ValueError(f"{name}(in_channels={in_channels}) got {x.shape[-2]} channels in dim -2 "
                         f"(input shape {tuple(x.shape)})")


def receptive_field(kernel_size: int, n_blocks: int, convs_per_block: int = 2) -> int:
    """Receptive field (in time steps) of ``n_blocks`` blocks with dilations 1, 2, 4, ..., 2**(n_blocks-1).

    ``1 + convs_per_block · (kernel_size - 1) · (2**n_blocks - 1)``: each causal conv of dilation d
    reaches (k-1)·d steps further back, and the dilations sum to 2**n - 1. The 1x1 residual
    convolutions do not widen it.

    Args:
        kernel_size: k >= 1.
        n_blocks: number of blocks n >= 0 (0 gives 1: the identity sees one step).
        convs_per_block: causal convolutions per block, 2 in Bai et al. Default 2.

    Returns:
        int: the number of input steps x[t-R+1 .. t] that output y[t] depends on.

    Raises:
        ValueError: kernel_size or convs_per_block < 1, n_blocks < 0, or not ints.

    Example::

        receptive_field(kernel_size=2, n_blocks=4)  # 1 + 2 * 1 * 15 = 31
    """
    _check_positive_int("kernel_size", kernel_size)
    _check_positive_int("convs_per_block", convs_per_block)
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
        raise ValueError(f"n_blocks must be an int >= 0, got {n_blocks!r}")
    return 1 + convs_per_block * (kernel_size - 1) * (2 ** n_blocks - 1)


class CausalConv1d(nn.Conv1d):
    r"""1-D convolution over time whose output at t depends on inputs at times <= t only.

    Pads ``(kernel_size - 1) · dilation`` zeros on the left of the time axis, then convolves with
    stride 1 and no other padding, so the output has the input's length. Parameters ``weight``
    (C_out, C_in, k) and ``bias`` (C_out,) as ``nn.Conv1d`` (same init, same state-dict keys).

    Source: EE-559 12-1 "Temporal Convolutions"; Bai et al. 2018, section 3.2 (their Fig. 1a).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: k, taps per channel.
        dilation: d, spacing between taps in time steps. Default 1.
        bias: learn a bias per output channel. Default True.

    Shapes:
        x: (N, C_in, L) or (C_in, L) -> (N, C_out, L) or (C_out, L).

    Raises:
        ValueError: non-positive or non-int sizes; input of the wrong rank or channel count.

    Example::

        conv = CausalConv1d(4, 8, kernel_size=3, dilation=2)
        y = conv(torch.randn(2, 4, 50))  # (2, 8, 50); y[..., t] uses x[..., t-4], x[..., t-2], x[..., t]
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("kernel_size", kernel_size), ("dilation", dilation)):
            _check_positive_int(name, v)
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=dilation, bias=bias)
        self.left_padding = (kernel_size - 1) * dilation

    def extra_repr(self) -> str:
        return super().extra_repr() + f", left_padding={self.left_padding}"

    def forward(self, x: Tensor) -> Tensor:
        _check_input(type(self).__name__, x, self.in_channels)
        x = F.pad(x, (self.left_padding, 0))  # (N, C_in, (k-1)d + L): zeros before t = 0
        return super().forward(x)  # (N, C_out, L)


class TemporalBlock(nn.Module):
    r"""Residual block of two causal dilated convolutions (Bai et al. 2018, Fig. 1b)::

        z = Dropout(ReLU(conv1(x)));  z = Dropout(ReLU(conv2(z)));  out = ReLU(z + res(x))

    with ``res`` the identity, or a 1x1 convolution (``downsample``) when C_in != C_out.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: k of both causal convolutions.
        dilation: d of both causal convolutions.
        dropout: drop probability after each ReLU inside the block, in [0, 1). Default 0.
        weight_norm: reparametrize conv1/conv2 weights as g · v / ||v|| (Salimans & Kingma 2016), as
            Bai et al. Default False.

    Shapes:
        x: (N, C_in, L) or (C_in, L) -> (N, C_out, L) or (C_out, L).

    Raises:
        ValueError: bad sizes or dropout; input of the wrong rank or channel count.

    Example::

        block = TemporalBlock(4, 8, kernel_size=3, dilation=2); y = block(torch.randn(2, 4, 50))  # (2, 8, 50)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float = 0.0,
                 weight_norm: bool = False):
        super().__init__()
        _check_dropout(dropout)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.dilation = kernel_size, dilation
        self.conv1 = CausalConv1d(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = CausalConv1d(out_channels, out_channels, kernel_size, dilation)
        if weight_norm:
            self.conv1 = _weight_norm(self.conv1)
            self.conv2 = _weight_norm(self.conv2)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def init_weights(self, std: float = 0.01) -> None:
        """Bai et al.'s init: conv weights ~ N(0, std) (the weight-norm direction v, if used); biases kept."""
        for conv in (self.conv1, self.conv2, self.downsample):
            if conv is None:
                continue
            weight = conv.parametrizations.weight.original1 if hasattr(conv, "parametrizations") else conv.weight
            nn.init.normal_(weight, 0.0, std)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(type(self).__name__, x, self.in_channels)
        z = self.dropout1(F.relu(self.conv1(x)))  # (N, C_out, L)
        z = self.dropout2(F.relu(self.conv2(z)))  # (N, C_out, L)
        res = x if self.downsample is None else self.downsample(x)  # (N, C_out, L)
        return F.relu(z + res)


class TCN(nn.Module):
    r"""Temporal convolutional network: ``len(channels)`` :class:`TemporalBlock` s, block i with dilation 2**i.

    Block i maps ``channels[i-1]`` (``in_channels`` for i = 0) to ``channels[i]`` channels. The output at
    time t depends on the last :attr:`receptive_field` inputs, ``1 + 2 (k-1)(2**n - 1)`` for n blocks.

    Source: EE-559 12-1 "Temporal Convolutions"; Bai et al. 2018 (their ``TemporalConvNet``).

    Args:
        in_channels: C_in, features per time step.
        channels: output channels of each block (non-empty); C_out = channels[-1].
        kernel_size: k of every causal convolution. Default 2.
        dropout: dropout probability inside the blocks, in [0, 1). Default 0.
        weight_norm: weight normalization on the block convolutions. Default False.

    Shapes:
        x: (N, C_in, L) or (C_in, L) -> (N, C_out, L) or (C_out, L); channels first, as ``nn.Conv1d``.

    Raises:
        ValueError: empty or non-positive channels, bad kernel_size or dropout; input of the wrong
        rank or channel count.

    Example::

        tcn = TCN(1, [16, 16, 16, 16], kernel_size=2)  # receptive field 31 steps
        y = tcn(torch.randn(8, 1, 100))  # (8, 16, 100); y[..., t] sees x[..., t-30 : t+1]
    """

    def __init__(self, in_channels: int, channels: Sequence[int], kernel_size: int = 2, dropout: float = 0.0,
                 weight_norm: bool = False):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("kernel_size", kernel_size)
        _check_dropout(dropout)
        if isinstance(channels, (int, str)) or not isinstance(channels, Sequence) or len(channels) == 0:
            raise ValueError(f"channels must be a non-empty sequence of positive ints (one per block), got "
                             f"{channels!r}")
        for i, c in enumerate(channels):
            _check_positive_int(f"channels[{i}]", c)
        self.in_channels, self.channels, self.kernel_size = in_channels, tuple(channels), kernel_size
        self.out_channels = self.channels[-1]
        blocks, c_in = [], in_channels
        for i, c_out in enumerate(self.channels):
            blocks.append(TemporalBlock(c_in, c_out, kernel_size, dilation=2 ** i, dropout=dropout,
                                        weight_norm=weight_norm))
            c_in = c_out
        self.network = nn.Sequential(*blocks)

    @property
    def receptive_field(self) -> int:
        """Input steps that one output step depends on: ``1 + 2 (k-1)(2**len(channels) - 1)``."""
        return receptive_field(self.kernel_size, len(self.channels), convs_per_block=2)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(type(self).__name__, x, self.in_channels)
        return self.network(x)
