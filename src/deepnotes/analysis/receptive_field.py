"""Receptive field of a convolutional stack: by the layer recursion, and measured from input gradients.

Source: ML2021 "卷積神經網路 (CNN)" (seed 001, "Observation 1 //引出receptive field": a neuron of a hidden layer
looks at a small region of the image, its receptive field; kernel size, stride, overlap and padding set it) and
seed 004's recursion ("如何计算RF": from the top layer down to the input, a unit of layer n sees
``RF_{n-1} = (RF_n - 1) * stride + ksize`` units of layer n - 1). Here the same arithmetic runs forward, from the
input up, as in Dang Ha The Hien, "A guide to receptive field arithmetic for CNNs" (2017), which also tracks where
each unit's field sits. Per axis, with ``k_eff = d (k - 1) + 1`` the extent of a kernel of size ``k`` and dilation
``d``, stride ``s`` and padding ``p`` (the left or top one)::

    r_out = r_in + (k_eff - 1) * j_in           receptive field, in input pixels      (r_0 = 1)
    j_out = j_in * s                            jump: input pixels between neighbouring units (j_0 = 1)
    start_out = start_in + ((k_eff - 1) / 2 - p) * j_in
                                                centre of the first unit's field, as an input index (start_0 = 0)
    n_out = floor((n_in + 2 p - k_eff) / s) + 1 output size (ceil for pools with ceil_mode, as torch)

Unit ``i`` of a layer is centred on input index ``start + i * jump`` and spans ``rf`` pixels around it (part of
which may lie in the zero padding, outside the image). Dilation, and strides larger than the kernel, leave holes
inside that span; the receptive field here is the span (the bounding box of the pixels that reach the unit).

* :func:`receptive_fields`: the recursion over a feed-forward chain of ``Conv2d`` / ``MaxPool2d`` / ``AvgPool2d``
  (activations, batch norm and dropout pass through), one :class:`LayerRF` per layer.
* :func:`receptive_box` and :func:`empirical_receptive_field`: the pixels whose input gradient of one output
  unit is non-zero, measured on a copy of the model made linear and positive (all-ones weights, max pools as
  sums), in double precision, so that no path cancels another; the tests check the two agree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["LayerRF", "PASS_THROUGH", "empirical_receptive_field", "receptive_box", "receptive_fields"]

#: Modules that act on each pixel alone (in eval mode) and so leave the receptive field as it is.
PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, _BatchNorm, nn.Dropout, nn.Dropout2d,
    nn.AlphaDropout, nn.Identity,
)

Pair = tuple[int, int]


@dataclass(frozen=True)
class LayerRF:
    """The receptive field after one layer of a chain; every field is a (height, width) pair.

    Attributes:
        name: the module's name in the model (``named_modules``), e.g. ``"features.3"``.
        kind: the module's class name (``"Conv2d"``, ``"MaxPool2d"``, ``"ReLU"``, ...).
        kernel, stride, padding, dilation: the layer's geometry (pass-through layers: 1, 1, 0, 1);
            ``padding`` is the top/left one (``padding="same"`` pads ``d (k - 1) // 2`` there).
        rf: receptive field of one output unit, in input pixels (the span, holes included).
        jump: input pixels between two neighbouring output units.
        start: input index (row, column; may be fractional or negative) of the centre of unit (0, 0)'s field.
        size: the output's spatial size for the ``input_size`` given.
    """

    name: str
    kind: str
    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    rf: Pair
    jump: Pair
    start: tuple[float, float]
    size: Pair

    def region(self, row: int, col: int, input_size: int | Sequence[int] | None = None) -> tuple[int, int, int, int]:
        """Input rows and columns (top, bottom, left, right; inclusive) that reach output unit (row, col).

        Args:
            row, col: the unit's output indices.
            input_size: (H, W) or one int; when given, the region is clipped to the image (the rest lies in the
                padding). Default None: the full span.
        """
        top = round(self.start[0] + row * self.jump[0] - (self.rf[0] - 1) / 2)
        left = round(self.start[1] + col * self.jump[1] - (self.rf[1] - 1) / 2)
        bottom, right = top + self.rf[0] - 1, left + self.rf[1] - 1
        if input_size is None:
            return top, bottom, left, right
        h, w = _pair(input_size, "input_size")
        return max(top, 0), min(bottom, h - 1), max(left, 0), min(right, w - 1)


def _pair(value: int | Sequence[int], what: str) -> Pair:
    if isinstance(value, int):
        return value, value
    t = tuple(int(v) for v in value)
    if len(t) != 2:
        raise ValueError(f"{what} must be an int or a pair (height, width), got {value!r}")
    return t  # type: ignore[return-value]


def _geometry(module: nn.Module) -> tuple[Pair, Pair, Pair, Pair, bool]:
    """(kernel, stride, top/left padding, dilation, ceil_mode) of a Conv2d or pooling module."""
    kernel = _pair(module.kernel_size, "kernel_size")
    stride = _pair(module.stride if module.stride is not None else module.kernel_size, "stride")
    dilation = _pair(getattr(module, "dilation", 1), "dilation")
    padding = module.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return kernel, stride, _pair(padding, "padding"), dilation, bool(getattr(module, "ceil_mode", False))


def _output_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool, same: bool) -> int:
    """torch's output size of a convolution or pooling along one axis."""
    if same:
        return n
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside the input or the left padding
        out -= 1
    return out


def receptive_fields(model: nn.Module, input_size: int | Sequence[int], *,
                     unsupported: Literal["raise", "skip", "stop"] = "raise",
                     chains: tuple[type[nn.Module], ...] = ()) -> list[LayerRF]:
    """The receptive field, jump and start of every layer of a feed-forward chain, by the recursion.

    The model is read as a chain: the leaf modules of ``model`` in the order of ``named_modules``, where each one
    feeds the next. ``nn.Sequential`` containers (and the types in ``chains``) are walked into; ``Conv2d``,
    ``MaxPool2d`` and ``AvgPool2d`` change the field; :data:`PASS_THROUGH` modules (activations, batch norm in
    eval mode, dropout) keep it. Nothing checks that ``forward`` really is that chain: a residual block (e.g.
    :class:`deepnotes.models.cnn.Bottleneck`, whose shortcut is registered after its main path) is not one, which
    is why any other module, container or leaf (``Flatten``, ``Linear``, adaptive pools, a custom block), is
    *unsupported*. Zero padding is assumed (other ``padding_mode`` values wrap or mirror the border).

    Args:
        model: the chain, e.g. ``lenet.features`` (not the whole LeNet5: its forward is a custom container).
        input_size: (H, W) of the input, or one int for a square one (for the ``size`` column only).
        unsupported: what to do at an unsupported module: ``"raise"`` (default) a ValueError naming it;
            ``"skip"``: treat it as pass-through (listed with kernel 1), right only for modules that keep the
            geometry; ``"stop"``: return the layers before it (e.g. stop at the ``Flatten`` before a classifier).
        chains: further container types whose children run one after the other in registration order
            (e.g. :class:`deepnotes.models.cnn.ConvGroup`). Default none.

    Returns:
        One :class:`LayerRF` per leaf layer walked, in order; the last one is the chain's output.

    Raises:
        ValueError: an unsupported module (``unsupported="raise"``), a bad ``unsupported`` or ``input_size``,
            or a layer whose output would be empty for ``input_size``.

    Example::

        >>> lenet = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        ...                       nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        >>> last = receptive_fields(lenet, 28)[-1]
        >>> last.rf, last.jump, last.start, last.size
        ((16, 16), (4, 4), (5.5, 5.5), (5, 5))
    """
    if unsupported not in ("raise", "skip", "stop"):
        raise ValueError(f"unsupported must be 'raise', 'skip' or 'stop', got {unsupported!r}")
    size = _pair(input_size, "input_size")
    if min(size) < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    rf, jump, start = [1, 1], [1, 1], [0.0, 0.0]
    out: list[LayerRF] = []

    def walk(module: nn.Module, name: str) -> bool:  # False: stop
        nonlocal size
        if isinstance(module, nn.Sequential) or isinstance(module, chains):
            return all(walk(child, f"{name}.{n}" if name else n) for n, child in module.named_children())
        kind = type(module).__name__
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride, padding, dilation, ceil_mode = _geometry(module)
            same = getattr(module, "padding", None) == "same"
        elif isinstance(module, PASS_THROUGH) or unsupported == "skip":
            if not isinstance(module, PASS_THROUGH):
                kind += " (skipped)"
            kernel, stride, padding, dilation, ceil_mode, same = (1, 1), (1, 1), (0, 0), (1, 1), False, False
        elif unsupported == "stop":
            return False
        else:
            raise ValueError(f"receptive_fields: module {name or '(the model)'!r} ({kind}) is not a Conv2d, "
                             f"MaxPool2d, AvgPool2d, nn.Sequential or pass-through layer; the recursion needs a "
                             f"feed-forward chain: pass the chain itself (e.g. model.features), list chain "
                             f"containers in chains=, or use unsupported='stop' or 'skip'")
        new_size = tuple(_output_size(size[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode, same)
                         for a in range(2))
        if min(new_size) < 1:
            raise ValueError(f"receptive_fields: {name!r} ({kind}) gets a {size[0]}x{size[1]} input and would give "
                             f"an empty output; use a larger input_size")
        for a in range(2):
            k_eff = dilation[a] * (kernel[a] - 1) + 1
            start[a] += ((k_eff - 1) / 2 - padding[a]) * jump[a]
            rf[a] += (k_eff - 1) * jump[a]
            jump[a] *= stride[a]
        size = new_size  # type: ignore[assignment]
        out.append(LayerRF(name, kind, kernel, stride, padding, dilation, (rf[0], rf[1]), (jump[0], jump[1]),
                           (start[0], start[1]), size))
        return True

    walk(model, "")
    return out


# ---------------------------------------------------------------------------------------------- measured
class _SumPool(nn.Module):
    """A max pool's window as a sum (depthwise all-ones convolution): every input of a window gets gradient 1."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode = _geometry(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_out = [_output_size(x.shape[2 + a], self.kernel[a], self.stride[a], self.padding[a], self.dilation[a],
                              self.ceil_mode, False) for a in range(2)]
        # zero padding (the sum's neutral element) on top/left, and on bottom/right as much as the last window needs
        extra = [max(self.padding[a], (n_out[a] - 1) * self.stride[a] + self.dilation[a] * (self.kernel[a] - 1) + 1
                     - x.shape[2 + a] - self.padding[a]) for a in range(2)]
        x = F.pad(x, (self.padding[1], extra[1], self.padding[0], extra[0]))
        ones = x.new_ones(x.shape[1], 1, *self.kernel)
        y = F.conv2d(x, ones, stride=self.stride, dilation=self.dilation, groups=x.shape[1])
        return y[:, :, :n_out[0], :n_out[1]]


def _positive_linear_copy(model: nn.Module) -> nn.Module:
    """A float64 copy where every path from input to output carries a positive weight (see :func:`receptive_box`)."""
    m = copy.deepcopy(model).double().eval()
    for name, module in list(m.named_modules()):
        if not name:
            continue
        if isinstance(module, nn.MaxPool2d):
            m.set_submodule(name, _SumPool(module))
        elif isinstance(module, PASS_THROUGH):
            m.set_submodule(name, nn.Identity())
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            with torch.no_grad():
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
    return m


def receptive_box(model: nn.Module, input_shape: Sequence[int], *, channel: int = 0,
                  index: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """The input rows and columns whose gradient of one output unit is non-zero (measured).

    The model is copied (the original is not touched) and made linear and positive: ``Conv2d`` / ``Linear``
    weights set to 1 and biases to 0, :data:`PASS_THROUGH` modules replaced by the identity, ``MaxPool2d`` by the
    sum over its window (same kernel, stride, padding, dilation and ceil_mode; a max pool's gradient reaches only
    the maximum of each window, so one input would show only one path), in float64 and eval mode. The input is all
    ones. Every path from an input pixel to the unit then has weight > 0 and no two paths can cancel, so the
    gradient is non-zero exactly on the pixels connected to the unit: the receptive field (clipped to the image).
    Modules other than those are kept as they are: the measure is exact when they keep positive values positive
    and do not zero gradients (e.g. ``F.relu`` or the addition of a residual block, which the recursion of
    :func:`receptive_fields` cannot follow); an ``F.max_pool2d`` called inside ``forward`` shows only one path.

    Args:
        model: maps (1, C, H, W) to (1, C_out, H_out, W_out); e.g. a prefix of a CNN.
        input_shape: (C, H, W) or (1, C, H, W).
        channel: output channel of the unit. Default 0.
        index: (row, col) of the unit in the output; default the centre ``((H_out - 1) // 2, (W_out - 1) // 2)``.

    Returns:
        (top, bottom, left, right), inclusive input indices.

    Raises:
        ValueError: a bad ``input_shape``, an output that is not 4-D, ``channel`` or ``index`` out of range, or a
            unit that no input pixel reaches.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (1, C, H, W), got {tuple(input_shape)}")
    probe = _positive_linear_copy(model)
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    y = probe(x)
    if y.ndim != 4:
        raise ValueError(f"the model must map (1, C, H, W) to (1, C_out, H_out, W_out), got {tuple(y.shape)}")
    if not 0 <= channel < y.shape[1]:
        raise ValueError(f"channel must be in [0, {y.shape[1]}), got {channel}")
    row, col = index if index is not None else ((y.shape[2] - 1) // 2, (y.shape[3] - 1) // 2)
    if not (0 <= row < y.shape[2] and 0 <= col < y.shape[3]):
        raise ValueError(f"index must lie in the {y.shape[2]}x{y.shape[3]} output, got {(row, col)}")
    (grad,) = torch.autograd.grad(y[0, channel, row, col], x)
    hit = grad[0].abs().sum(0) > 0  # (H, W)
    if not bool(hit.any()):
        raise ValueError(f"no input pixel reaches output unit (channel {channel}, {row}, {col})")
    rows = hit.any(1).nonzero().flatten()
    cols = hit.any(0).nonzero().flatten()
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def empirical_receptive_field(model_prefix: nn.Module, input_shape: Sequence[int], *,
                              channel: int = 0) -> tuple[int, int]:
    """(height, width) of the input region that reaches the centre unit of ``model_prefix``'s output (measured).

    The bounding box of the non-zero input gradient (see :func:`receptive_box` for how no gradient is lost).
    Equal to :func:`receptive_fields`'s last ``rf`` when the input is large enough for the centre unit's field
    to lie inside the image; smaller when part of it lies in the padding.

    Args:
        model_prefix: the layers up to the one of interest (e.g. ``model.features[:4]``).
        input_shape: (C, H, W) or (1, C, H, W).
        channel: output channel of the unit. Default 0.

    Raises:
        ValueError: as :func:`receptive_box`.
    """
    top, bottom, left, right = receptive_box(model_prefix, input_shape, channel=channel)
    return bottom - top + 1, right - left + 1
