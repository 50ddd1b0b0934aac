r"""Recurrent networks from the gate equations: Elman RNN, LSTM and GRU cells and stacked layers.

Source: EE-559 (Fleuret) 12-1 "RNN" and 12-2 "LSTM and GRU". A recurrent model keeps a state
:math:`h_t` updated from the input :math:`x_t` and the previous state. The Elman RNN (Elman 1990)::

    h_t = tanh(W_(xh) x_t + W_(hh) h_{t-1} + b_(h))

has a gradient w.r.t. old states that is a product of Jacobians and vanishes (or explodes). The
LSTM (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000) adds a cell state updated
additively, ``c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t``, so that the derivatives of the loss w.r.t. ``c_t``
do not vanish; the lecture's equations, in its notation::

    f_t = sigm(W_(xf) x_t + W_(hf) h_{t-1} + b_(f))      (forget gate)
    i_t = sigm(W_(xi) x_t + W_(hi) h_{t-1} + b_(i))      (input gate)
    g_t = tanh(W_(xc) x_t + W_(hc) h_{t-1} + b_(c))      (full cell state update)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                      (cell state)
    o_t = sigm(W_(xo) x_t + W_(ho) h_{t-1} + b_(o))      (output gate)
    h_t = o_t ⊙ tanh(c_t)                                (output state)

The GRU (Cho et al. 2014) merges the cell and output states and uses two gates::

    r_t = sigm(W_(xr) x_t + W_(hr) h_{t-1} + b_(r))                  (reset gate)
    z_t = sigm(W_(xz) x_t + W_(hz) h_{t-1} + b_(z))                  (update gate)
    n_t = tanh(W_(xn) x_t + b_(xn) + r_t ⊙ (W_(hn) h_{t-1} + b_(hn)))  (candidate state)
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

Layout, chosen so that ``state_dict`` loads to and from ``torch.nn.RNN/LSTM/GRU`` (and the
``*Cell`` twins) both ways: the input weights of all gates are stacked in ``weight_ih`` (G·H, H_in)
and the recurrent ones in ``weight_hh`` (G·H, H), gate order (i, f, g, o) for the LSTM and
(r, z, n) for the GRU, and each bias is split in two, ``bias_ih`` + ``bias_hh`` (so ``b_(f) =
b_if + b_hf``; redundant except for the GRU's candidate, where ``b_(hn)`` sits inside ``r_t ⊙ (·)``).
Initialization as torch: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)).

Two paths, same parameters, tested equal (outputs, final states, gradients). By default the step is a
Python loop over time, the equations above line by line (readable, not fast). ``use_fused=True`` runs the
same parameters through torch's fused kernels (``torch._VF.lstm``/``gru``/``rnn_tanh``/``rnn_relu``, what
``torch.nn.LSTM.forward`` calls: oneDNN or ATen on CPU, cuDNN on GPU): forward + backward 1.5x (GRU) to 11x
(LSTM) faster on the labs' sizes (``benchmarks/fused_paths.py``); the labs' models use it. ``to_torch()`` gives
the equivalent ``torch.nn`` module holding a copy of the weights.

Padded batches (``lengths=``) on the fused path: torch's own way, a ``PackedSequence``, steps through the
batch one time step at a time on CPU, hardly faster than the Python loop (phoneme-classification's 16
utterances of <= 400 frames, forward + backward: packed 2.6 s, readable 3.5 s, these segments 0.31 s; torch
2.13, one thread, ``benchmarks/fused_paths.py --packed``). So each layer and direction runs in segments:
rows sorted longest first, the kernel runs over the steps [l_(k-1), l_k) between consecutive distinct
lengths for the rows still inside their sequence (a prefix of the sorted batch), from the states the
previous segment left, and a row's final state is the one its last segment returns. The reverse direction
reads each sequence reversed within its own length (:func:`reverse_within_lengths`), so that it too starts
at the sequence's last real step. This is what packing computes, in one kernel call per distinct length
instead of one per time step.

Differences from torch: LSTM ``proj_size`` is not supported; padded batches are given as ``lengths=``
rather than as a ``PackedSequence``, and the output keeps the input's length L (zeros after each
sequence's end) where ``pad_packed_sequence`` would cut it to ``max(lengths)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]  # (h,) for RNN/GRU, (h, c) for LSTM

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
# torch's fused kernels by mode: fn(input, hx, flat_weights, has_biases, num_layers, dropout, train,
# bidirectional, batch_first) -> (output, h_n) or (output, h_n, c_n); hx = (h0, c0) for the LSTM.
_FUSED: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "RNN_TANH": torch._VF.rnn_tanh, "RNN_RELU": torch._VF.rnn_relu, "LSTM": torch._VF.lstm, "GRU": torch._VF.gru}
_CHUNK_WARNING = ".*contiguous chunk of memory.*"  # cuDNN: separate parameters are copied into one buffer


# ---------------------------------------------------------------------------------------------------
# One time step. `gi` is the input part W_ih x_t + b_ih of every gate, computed beforehand (a layer
# computes it for all time steps with one matrix product); the recurrent part is added here.
# ---------------------------------------------------------------------------------------------------

def _rnn_step(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, nonlinearity: str) -> Tensor:
    pre = gi + F.linear(h, weight_hh, bias_hh)  # (N, H): W_(xh) x + b_ih + W_(hh) h + b_hh
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def _lstm_step(gi: Tensor, h: Tensor, c: Tensor, weight_hh: Tensor, bias_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    gates = gi + F.linear(h, weight_hh, bias_hh)  # (N, 4H), stacked (i, f, g, o)
    i, f, g, o = gates.chunk(4, dim=-1)  # each (N, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g  # cell state: additive update
    h = o * torch.tanh(c)  # output state
    return h, c


def _gru_step(gi: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor | None) -> Tensor:
    gh = F.linear(h, weight_hh, bias_hh)  # (N, 3H), stacked (r, z, n)
    gi_r, gi_z, gi_n = gi.chunk(3, dim=-1)  # each (N, H)
    gh_r, gh_z, gh_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(gi_r + gh_r)  # reset gate
    z = torch.sigmoid(gi_z + gh_z)  # update gate
    n = torch.tanh(gi_n + r * gh_n)  # candidate: the reset gate scales W_(hn) h + b_(hn)
    return (1 - z) * n + z * h


# Public functional forms of one step (the cells are thin modules around them).

def rnn_cell(input: Tensor, hx: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None = None,
             bias_hh: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """One Elman RNN step ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, act = tanh or relu.

    Shapes: input (N, H_in), hx (N, H), weight_ih (H, H_in), weight_hh (H, H), biases (H,) -> (N, H).
    """
    _check_nonlinearity(nonlinearity)
    return _rnn_step(F.linear(input, weight_ih, bias_ih), hx, weight_hh, bias_hh, nonlinearity)


def lstm_cell(input: Tensor, hx: tuple[Tensor, Tensor], weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step (module docstring's equations); gates stacked (i, f, g, o) in the weights.

    Shapes: input (N, H_in), hx = (h, c) each (N, H), weight_ih (4H, H_in), weight_hh (4H, H),
    biases (4H,) -> (h', c') each (N, H).
    """
    h, c = hx
    return _lstm_step(F.linear(input, weight_ih, bias_ih), h, c, weight_hh, bias_hh)


def gru_cell(input: Tensor, hx: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None = None,
             bias_hh: Tensor | None = None) -> Tensor:
    """One GRU step (module docstring's equations); gates stacked (r, z, n) in the weights.

    Shapes: input (N, H_in), hx (N, H), weight_ih (3H, H_in), weight_hh (3H, H), biases (3H,) -> (N, H).
    """
    return _gru_step(F.linear(input, weight_ih, bias_ih), hx, weight_hh, bias_hh)


# ---------------------------------------------------------------------------------------------------
# Argument checks shared by cells and layers
# ---------------------------------------------------------------------------------------------------

def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_nonlinearity(nonlinearity) -> None:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def _check_state(name: str, t, expected: tuple[int, ...]) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a Tensor of shape {expected}, got {type(t).__name__}")
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


# ---------------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------------

class _UniformInit(nn.Module):
    """Initialization shared by the cells and the layers."""

    hidden_size: int

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), as torch (same order, so the same seed gives the same values)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -stdv, stdv)


class _CellBase(_UniformInit):
    _mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
        gate_size = _GATES[self._mode] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gate_size, input_size))  # stacked W_(x·)
        self.weight_hh = nn.Parameter(torch.empty(gate_size, hidden_size))  # stacked W_(h·)
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_size))
            self.bias_hh = nn.Parameter(torch.empty(gate_size))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        return s

    def _prepare(self, input: Tensor, hx, n_states: int) -> tuple[Tensor, State, bool]:
        """Check shapes, add a batch dim to unbatched input, build the zero state if ``hx`` is None."""
        if not isinstance(input, Tensor) or input.dim() not in (1, 2):
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"{type(self).__name__} expects input of shape (N, {self.input_size}) or "
                             f"({self.input_size},), got {shape}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}(input_size={self.input_size}) got input with "
                             f"{input.shape[-1]} features (shape {tuple(input.shape)})")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)  # (1, H_in)
        N = input.shape[0]
        if hx is None:
            zeros = input.new_zeros(N, self.hidden_size)
            return input, (zeros,) * n_states, batched
        states = tuple(hx) if n_states == 2 else (hx,)
        if n_states == 2 and len(states) != 2:
            raise ValueError(f"{type(self).__name__} expects hx = (h, c), got {len(states)} tensors")
        expected = (N, self.hidden_size) if batched else (self.hidden_size,)
        for name, s in zip(("h", "c") if n_states == 2 else ("hx",), states):
            _check_state(name, s, expected)
        if not batched:
            states = tuple(s.unsqueeze(0) for s in states)
        return input, states, batched


class RNNCell(_CellBase):
    r"""One step of an Elman RNN: ``h' = act(W_(xh) x + b_ih + W_(hh) h + b_hh)``, act = tanh or relu.

    Source: EE-559 12-1 "RNN"; Elman 1990. Parameters as ``torch.nn.RNNCell``.

    Args:
        input_size: H_in, features of x.
        hidden_size: H, features of the state.
        bias: learn ``bias_ih`` and ``bias_hh``. Default True.
        nonlinearity: ``"tanh"`` (default) or ``"relu"``.

    Shapes:
        input (N, H_in) or (H_in,); hx (N, H) or (H,), default zeros -> h' with hx's shape.

    Raises:
        ValueError: non-positive sizes, unknown nonlinearity, input or hx of the wrong shape.

    Example::

        cell = RNNCell(10, 20); h = cell(torch.randn(3, 10))  # (3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        _check_nonlinearity(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity!r}"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        h = rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)
        return h if batched else h.squeeze(0)


class LSTMCell(_CellBase):
    r"""One LSTM step (EE-559 12-2; Hochreiter & Schmidhuber 1997)::

        f = sigm(W_(xf) x + W_(hf) h + b_(f))    i = sigm(W_(xi) x + W_(hi) h + b_(i))
        g = tanh(W_(xc) x + W_(hc) h + b_(c))    o = sigm(W_(xo) x + W_(ho) h + b_(o))
        c' = f ⊙ c + i ⊙ g                        h' = o ⊙ tanh(c')

    ``weight_ih`` stacks [W_(xi); W_(xf); W_(xc); W_(xo)] (4H, H_in), ``weight_hh`` the W_(h·) (4H, H),
    and ``b_(·) = bias_ih + bias_hh``: the layout of ``torch.nn.LSTMCell``.

    Args:
        input_size: H_in.
        hidden_size: H.
        bias: learn the biases. Default True.

    Shapes:
        input (N, H_in) or (H_in,); hx = (h, c) each (N, H) or (H,), default zeros -> (h', c').

    Raises:
        ValueError: non-positive sizes, input or state of the wrong shape.

    Example::

        cell = LSTMCell(10, 20); h, c = cell(torch.randn(3, 10))  # each (3, 20)
    """

    _mode = "LSTM"

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        x, (h, c), batched = self._prepare(input, hx, 2)
        h, c = lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_CellBase):
    r"""One GRU step (EE-559 12-2; Cho et al. 2014)::

        r = sigm(W_(xr) x + W_(hr) h + b_(r))    z = sigm(W_(xz) x + W_(hz) h + b_(z))
        n = tanh(W_(xn) x + b_(xn) + r ⊙ (W_(hn) h + b_(hn)))
        h' = (1 - z) ⊙ n + z ⊙ h

    Weights stacked (r, z, n) as ``torch.nn.GRUCell``.

    Args:
        input_size: H_in.
        hidden_size: H.
        bias: learn the biases. Default True.

    Shapes:
        input (N, H_in) or (H_in,); hx (N, H) or (H,), default zeros -> h' with hx's shape.

    Raises:
        ValueError: non-positive sizes, input or hx of the wrong shape.

    Example::

        cell = GRUCell(10, 20); h = cell(torch.randn(3, 10))  # (3, 20)
    """

    _mode = "GRU"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        h = gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h if batched else h.squeeze(0)


# ---------------------------------------------------------------------------------------------------
# Stacked, optionally bidirectional layers
# ---------------------------------------------------------------------------------------------------

class _RNNBase(_UniformInit):
    """Shared code of :class:`RNN`, :class:`LSTM`, :class:`GRU`: parameters, checks, the loop over time."""

    _mode = "RNN_TANH"
    _torch_cls: type[nn.Module] = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 use_fused: bool = False):
        super().__init__()
        self.use_fused = bool(use_fused)
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
        _check_positive_int("num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout={dropout} has no effect with num_layers=1: dropout is applied between "
                          "layers, not after the last one", UserWarning, stacklevel=3)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bool(bias), bool(batch_first)
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        gate_size = _GATES[self._mode] * hidden_size
        # Registered in torch's order (layer, direction, w_ih, w_hh, b_ih, b_hh): same names, same init draws.
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                setattr(self, "weight_ih" + sfx, nn.Parameter(torch.empty(gate_size, layer_in)))
                setattr(self, "weight_hh" + sfx, nn.Parameter(torch.empty(gate_size, hidden_size)))
                if bias:
                    setattr(self, "bias_ih" + sfx, nn.Parameter(torch.empty(gate_size)))
                    setattr(self, "bias_hh" + sfx, nn.Parameter(torch.empty(gate_size)))
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.use_fused:
            s += ", fused"
        return s

    def _weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        return (getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx),
                getattr(self, "bias_ih" + sfx, None), getattr(self, "bias_hh" + sfx, None))

    def _step_fn(self) -> Callable[[Tensor, State, Tensor, Tensor | None], State]:
        raise NotImplementedError

    def _torch_kwargs(self) -> dict:
        return dict(input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
                    bidirectional=self.bidirectional)

    def to_torch(self) -> nn.Module:
        """The equivalent ``torch.nn`` module (fused kernels) holding a copy of these weights.

        Padded batches then go through ``nn.utils.rnn.pack_padded_sequence`` instead of ``lengths=``.
        """
        p = next(self.parameters())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the dropout-with-one-layer warning was already given
            m = self._torch_cls(**self._torch_kwargs()).to(device=p.device, dtype=p.dtype)
        m.load_state_dict(self.state_dict())
        return m.train(self.training)

    def _run(self, input: Tensor, states: State | None, lengths) -> tuple[Tensor, State]:
        """Shared forward; ``states`` = (h0,) or (h0, c0), each (D·num_layers, N, H) or (D·num_layers, H)."""
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.dim() not in (2, 3):
            shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
            layout = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
            raise ValueError(f"{name} expects input of shape {layout} or unbatched (L, H_in), got {shape}")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"{name}(input_size={self.input_size}) got input with {input.shape[-1]} features "
                             f"(shape {tuple(input.shape)})")
        batched = input.dim() == 3
        if not batched:
            x = input.unsqueeze(1)  # (L, 1, H_in)
        elif self.batch_first:
            x = input.transpose(0, 1)  # (N, L, H_in) -> (L, N, H_in)
        else:
            x = input
        L, N = x.shape[0], x.shape[1]
        if L == 0:
            raise ValueError(f"{name} got an empty sequence (length 0), input shape {tuple(input.shape)}")
        DL, H = self.num_directions * self.num_layers, self.hidden_size
        n_states = 2 if self._mode == "LSTM" else 1
        if states is None:
            states = (x.new_zeros(DL, N, H),) * n_states
        else:
            expected = (DL, N, H) if batched else (DL, H)
            for s_name, s in zip(("h0", "c0") if n_states == 2 else ("hx",), states):
                _check_state(s_name, s, expected)
            if not batched:
                states = tuple(s.unsqueeze(1) for s in states)  # (DL, 1, H)

        lengths_cpu = mask = None
        if lengths is not None:
            if not batched:
                raise ValueError(f"{name}: lengths= needs batched input (L, N, H_in) or (N, L, H_in)")
            lengths = torch.as_tensor(lengths)
            if lengths.dim() != 1 or lengths.numel() != N or lengths.is_floating_point() or lengths.is_complex():
                raise ValueError(f"{name}: lengths must be a 1-D integer tensor of N={N} sequence lengths, got "
                                 f"dtype {lengths.dtype}, shape {tuple(lengths.shape)}")
            if N and (int(lengths.min()) < 0 or int(lengths.max()) > L):
                raise ValueError(f"{name}: lengths must lie in [0, L={L}], got min {int(lengths.min())}, "
                                 f"max {int(lengths.max())}")
            if self.use_fused:
                lengths_cpu = lengths.to("cpu", torch.int64)
            else:
                t = torch.arange(L, device=x.device)
                mask = (t[:, None] < lengths.to(x.device)[None, :]).unsqueeze(-1)  # (L, N, 1): real step?

        if self.use_fused and lengths is None:
            output, h_n = self._fused_stack(x, states)
        else:
            output, h_n = self._layers(x, states, mask, lengths_cpu)
        if not batched:
            output = output.squeeze(1)
            h_n = tuple(s.squeeze(1) for s in h_n)
        elif self.batch_first:
            output = output.transpose(0, 1)  # (N, L, D·H)
        return output, h_n


    def _flat_weights(self) -> list[Tensor]:
        """Parameters in the order torch's kernels take them: per layer, per direction, w_ih, w_hh[, b_ih, b_hh]."""
        return [w for layer in range(self.num_layers) for d in range(self.num_directions)
                for w in self._weights(layer, d) if w is not None]

    def _fused_stack(self, x: Tensor, states: State) -> tuple[Tensor, State]:
        """All layers and directions in one fused kernel call (no lengths): x (L, N, H_in), states (D·layers, N, H)
        -> output (L, N, D·H) and final states (D·layers, N, H); dropout between layers as the readable path."""
        hx = states if self._mode == "LSTM" else states[0]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CHUNK_WARNING)
            out, *h_n = _FUSED[self._mode](x, hx, self._flat_weights(), self.bias, self.num_layers, self.dropout,
                                           self.training, self.bidirectional, False)
        return out, tuple(h_n)

    def _layers(self, x: Tensor, states: State, mask: Tensor | None, lengths: Tensor | None) -> tuple[Tensor, State]:
        """Layer by layer, direction by direction: the readable loop over time (``mask`` (L, N, 1) marks the real
        steps), or with ``use_fused`` the fused kernel in segments (``lengths`` (N,) int64 on the CPU).
        x (L, N, H_in); states (D·layers, N, H) -> output (L, N, D·H), final states (D·layers, N, H)."""
        step = self._step_fn()
        layer_input = x  # (L, N, H_in) for layer 0, (L, N, D·H) after
        finals: list[State] = []  # per (layer, direction), in torch's h_n order
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                weights, idx = self._weights(layer, d), layer * self.num_directions + d
                state = tuple(s[idx] for s in states)  # (N, H) each
                if self.use_fused:
                    out, final = _fused_segments(self._mode, layer_input, state, weights, lengths, d == 1,
                                                 self.training)
                else:
                    w_ih, w_hh, b_ih, b_hh = weights
                    gi = F.linear(layer_input, w_ih, b_ih)  # (L, N, G·H): input part of every gate, all steps at once
                    out, final = _scan(step, gi, state, w_hh, b_hh, mask, reverse=d == 1)
                outs.append(out)
                finals.append(final)
            layer_input = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]  # (L, N, D·H)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)  # between layers only
        return layer_input, tuple(torch.stack([f[k] for f in finals]) for k in range(len(states)))


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of a padded batch within its own length; padding stays where it is.

    Args:
        x: (B, T, C) batch-first padded sequences.
        lengths: (B,) int64 real lengths in [0, T].

    Returns:
        (B, T, C): ``out[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]``, else ``x[b, t]``.
        Applying it twice gives ``x`` back.

    Example::

        >>> reverse_within_lengths(torch.arange(4.).view(1, 4, 1), torch.tensor([3])).flatten().tolist()
        [2.0, 1.0, 0.0, 3.0]
    """
    T = x.shape[1]
    t = torch.arange(T, device=x.device)
    L = lengths.to(x.device)[:, None]
    idx = torch.where(t[None, :] < L, L - 1 - t[None, :], t[None, :])  # (B, T)
    return x.gather(1, idx[..., None].expand_as(x))


def _fused_segments(mode: str, x: Tensor, state: State, weights: tuple[Tensor, Tensor, Tensor | None, Tensor | None],
                    lengths: Tensor, reverse: bool, train: bool) -> tuple[Tensor, State]:
    """One layer and direction of a padded batch through the fused kernel; equal to ``_scan`` with the mask.

    x (L, N, I); state tensors (N, H); lengths (N,) int64 on the CPU. Rows sorted longest first, so that the rows
    still inside their sequence at any time are a prefix; the kernel runs once per distinct length, over the steps
    since the previous one, from the states the previous call left (module docstring). Returns the output
    (L, N, H), zero past each length, and the state after each row's last real step (its initial state if the
    length is 0), each (N, H).
    """
    if reverse:
        x = reverse_within_lengths(x.transpose(0, 1), lengths).transpose(0, 1)  # each sequence backwards
    L, N, H = x.shape[0], x.shape[1], state[0].shape[-1]
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order].tolist()
    order_dev = order.to(x.device)
    x_sorted = x.index_select(1, order_dev)  # (L, N, I), longest first
    initial = tuple(s.index_select(0, order_dev) for s in state)  # (N, H) each, longest first
    current = tuple(s[None] for s in initial)  # (1, n, H) each: the rows still inside their sequence
    params = [w for w in weights if w is not None]
    outs: list[Tensor] = []
    ended: list[State] = []  # final states of the rows that end at each distinct length, shortest first
    start = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CHUNK_WARNING)
        for end in sorted(set(sorted_lengths) - {0}):
            n = sum(length >= end for length in sorted_lengths)  # rows running over [start, end)
            hx = tuple(s[:, :n] for s in current)
            out, *current = _FUSED[mode](x_sorted[start:end, :n], hx if mode == "LSTM" else hx[0], params,
                                         len(params) == 4, 1, 0.0, train, False, False)
            outs.append(F.pad(out, (0, 0, 0, N - n)))  # (end - start, N, H): zeros for the rows already ended
            k = sum(length == end for length in sorted_lengths)
            ended.append(tuple(s[0, n - k:n] for s in current))  # the last k running rows end here
            start = end
    out = torch.cat(outs) if outs else x.new_zeros(0, N, H)
    out = F.pad(out, (0, 0, 0, 0, 0, L - start))  # (L, N, H): zeros after the longest sequence
    n_empty = sum(length == 0 for length in sorted_lengths)
    finals = tuple(torch.cat([e[k] for e in reversed(ended)] + [initial[k][N - n_empty:]]) for k in range(len(state)))
    inverse = torch.argsort(order).to(x.device)
    out = out.index_select(1, inverse)
    if reverse:
        out = reverse_within_lengths(out.transpose(0, 1), lengths).transpose(0, 1)  # back in time order
    return out, tuple(f.index_select(0, inverse) for f in finals)


def _scan(step, gi: Tensor, state: State, w_hh: Tensor, b_hh: Tensor | None, mask: Tensor | None,
          reverse: bool) -> tuple[Tensor, State]:
    """Run ``step`` over time. gi (L, N, G·H); state tensors (N, H); mask (L, N, 1) or None.

    Where ``mask`` is False (padding) the state is carried over unchanged and the output is zero, so the
    forward direction's final state is the one after each sequence's last real step, and the reverse
    direction starts from the initial state at each sequence's last real step.
    """
    L = gi.shape[0]
    outputs: list[Tensor | None] = [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        new = step(gi[t], state, w_hh, b_hh)
        if mask is None:
            state = new
            outputs[t] = new[0]
        else:
            m = mask[t]  # (N, 1)
            state = tuple(torch.where(m, n, s) for n, s in zip(new, state))
            outputs[t] = torch.where(m, new[0], torch.zeros_like(new[0]))
    return torch.stack(outputs), state  # (L, N, H)


_LAYER_DOC = """
    Args:
        input_size: H_in, features of each input step.
        hidden_size: H, features of the state.
        num_layers: stacked layers; layer k > 0 reads layer k-1's output. Default 1.
        bias: learn ``bias_ih_l*`` and ``bias_hh_l*``. Default True.
        batch_first: input and output are (N, L, ·) instead of (L, N, ·) (states are not affected).
            Default False, as torch.
        dropout: probability of dropout on each layer's output except the last, in training. Default 0.
        bidirectional: add a reverse-time direction per layer (``*_reverse`` parameters); outputs of
            both directions are concatenated. Default False.{extra_args}
        use_fused: keyword only; run torch's fused kernel on these parameters instead of the readable loop
            over time (module docstring; tested equal); an attribute, may be toggled. Default False.

    Forward args:
        input: (L, N, H_in), (N, L, H_in) if ``batch_first``, or unbatched (L, H_in).
        hx: initial state{hx_doc}; default zeros.
        lengths: optional (N,) integer tensor (or list) of real sequence lengths in a padded batch, in
            [0, L]. Steps t >= lengths[n] give zero output and leave the state unchanged: equal to torch
            with ``pack_padded_sequence(..., enforce_sorted=False)`` then ``pad_packed_sequence(...,
            total_length=L)``.

    Shapes (D = 2 if bidirectional else 1):
        output: (L, N, D·H) (or (N, L, D·H) with ``batch_first``; (L, D·H) unbatched): the last layer's
        states, both directions concatenated.
        {out_doc}

    Raises:
        ValueError: non-positive sizes, dropout outside [0, 1]{extra_raise}; input, hx or lengths of the
        wrong shape or range.
"""


class RNN(_RNNBase):
    __doc__ = r"""Elman RNN, stacked and optionally bidirectional: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    Source: EE-559 12-1 "RNN"; Elman 1990. Built on :func:`rnn_cell`'s step; parameter names, shapes and
    init are those of ``torch.nn.RNN``, so state dicts load either way.
""" + _LAYER_DOC.format(
        hx_doc=" h0 (D·num_layers, N, H) (unbatched: (D·num_layers, H))",
        out_doc="h_n: (D·num_layers, N, H), the final state of every layer and direction (index layer·D + d).",
        extra_raise=", unknown nonlinearity",
        extra_args='\n        nonlinearity: ``"tanh"`` (default) or ``"relu"``; 4th positional argument, as '
                   'torch.') + """
    Example::

        rnn = RNN(10, 20, num_layers=2, batch_first=True); out, h_n = rnn(torch.randn(3, 7, 10))  # (3, 7, 20)
"""

    _torch_cls = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 use_fused: bool = False):
        _check_nonlinearity(nonlinearity)
        self.nonlinearity = nonlinearity
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         use_fused=use_fused)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else s + f", nonlinearity={self.nonlinearity!r}"

    def _torch_kwargs(self) -> dict:
        return {**super()._torch_kwargs(), "nonlinearity": self.nonlinearity}

    def _step_fn(self):
        act = self.nonlinearity
        return lambda gi, s, w_hh, b_hh: (_rnn_step(gi, s[0], w_hh, b_hh, act),)

    def forward(self, input: Tensor, hx: Tensor | None = None, lengths: Tensor | Sequence[int] | None = None
                ) -> tuple[Tensor, Tensor]:
        output, (h_n,) = self._run(input, None if hx is None else (hx,), lengths)
        return output, h_n


class LSTM(_RNNBase):
    __doc__ = r"""LSTM, stacked and optionally bidirectional, from the gate equations of :class:`LSTMCell`.

    Source: EE-559 12-2 "LSTM and GRU"; Hochreiter & Schmidhuber 1997. Parameter names, shapes, gate
    order (i, f, g, o) and init are those of ``torch.nn.LSTM`` (``proj_size`` is not supported).
""" + _LAYER_DOC.format(
        hx_doc=" (h0, c0), each (D·num_layers, N, H) (unbatched: (D·num_layers, H))",
        out_doc="(h_n, c_n): each (D·num_layers, N, H), final output and cell states (index layer·D + d).",
        extra_raise="", extra_args="") + """
    Example::

        lstm = LSTM(10, 20, bidirectional=True); out, (h_n, c_n) = lstm(torch.randn(7, 3, 10))  # (7, 3, 40)
"""

    _mode = "LSTM"
    _torch_cls = nn.LSTM

    def _step_fn(self):
        return lambda gi, s, w_hh, b_hh: _lstm_step(gi, s[0], s[1], w_hh, b_hh)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None,
                lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError(f"LSTM expects hx = (h0, c0), got {type(hx).__name__}"
                             + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else ""))
        output, (h_n, c_n) = self._run(input, None if hx is None else tuple(hx), lengths)
        return output, (h_n, c_n)


class GRU(_RNNBase):
    __doc__ = r"""GRU, stacked and optionally bidirectional, from the gate equations of :class:`GRUCell`.

    Source: EE-559 12-2 "LSTM and GRU"; Cho et al. 2014. Parameter names, shapes, gate order (r, z, n)
    and init are those of ``torch.nn.GRU``.
""" + _LAYER_DOC.format(
        hx_doc=" h0 (D·num_layers, N, H) (unbatched: (D·num_layers, H))",
        out_doc="h_n: (D·num_layers, N, H), the final state of every layer and direction (index layer·D + d).",
        extra_raise="", extra_args="") + """
    Example::

        gru = GRU(10, 20, num_layers=2); out, h_n = gru(torch.randn(7, 3, 10))  # (7, 3, 20), (2, 3, 20)
"""

    _mode = "GRU"
    _torch_cls = nn.GRU

    def _step_fn(self):
        return lambda gi, s, w_hh, b_hh: (_gru_step(gi, s[0], w_hh, b_hh),)

    def forward(self, input: Tensor, hx: Tensor | None = None, lengths: Tensor | Sequence[int] | None = None
                ) -> tuple[Tensor, Tensor]:
        output, (h_n,) = self._run(input, None if hx is None else (hx,), lengths)
        return output, h_n
