"""Frame-wise phoneme classifiers: the four rungs of ML2021/2022 HW2 (simple, medium, strong, boss).

Source: ML2021/2022 (Hung-yi Lee) HW2 "framewise phoneme classification" (seed 002): each 10 ms frame is a
39-dim MFCC vector; a network maps it, or a window of neighbouring frames, to one of 41 phoneme classes.
The course's hints name four baselines, each a change of the model:

=======  ==========================================  ================================================
rung     what changes (the hint)                     here (the lab's defaults)
=======  ==========================================  ================================================
simple   the sample code                             one frame, one hidden layer of 256
medium   "concat n frames, add layers"               11 frames (429 inputs), 3 x 512
strong   "concat n, batchnorm, dropout, add layers"  11 frames, 4 x 512, BN, dropout 0.25
boss     "sequence labeling (using RNN)"             bidirectional LSTM over the utterance, 2 x 128
=======  ==========================================  ================================================

The MLP block follows the seed's sample (``Linear -> ReLU -> BatchNorm1d -> Dropout``, the last two only in
the strong rung). Frame concatenation follows the sample code's ``concat_feat``: the 2k + 1 frames
``t - k .. t + k`` side by side, oldest first, where frames before the first (after the last) repeat the
first (last) frame of the utterance (:func:`concat_frames`, :func:`context_index`).

The boss rung reads a whole utterance: a stacked bidirectional LSTM or GRU (EE-559 12-2) from
:mod:`deepnotes.nn.recurrent`, then a linear layer on each time step's two directions, so every frame's
prediction sees the whole sentence. Padded batches pass ``lengths``. Two paths, as everywhere in this
package, on the same parameters (tested equal): ``fused=True`` (default) runs torch's LSTM/GRU kernels
(the recurrent layer's ``use_fused``), ``fused=False`` the readable Python loop over time.

By name (:func:`deepnotes.models.create_model`): ``"hw2-simple"``, ``"hw2-medium"``, ``"hw2-strong"``,
``"hw2-boss"``, each :data:`LADDER`'s config with ``in_channels``, ``num_classes``, ``num_layers`` and any of
its fields replaced (a ``ValueError`` for a field the rung does not have or a value it rejects).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from deepnotes.models.registry import register_model
from deepnotes.nn.recurrent import GRU, LSTM
from deepnotes.nn.recurrent import reverse_within_lengths as reverse_within_lengths  # moved there; kept importable

RUNGS: tuple[str, ...] = ("simple", "medium", "strong", "boss")


# ---------------------------------------------------------------------------------------------- frame windows
def context_index(frame: Tensor, start: Tensor, end: Tensor, context: int) -> Tensor:
    """Indices of the ``context`` frames centred on each frame, clamped to its utterance.

    Args:
        frame: (N,) int64 frame indices into a table of concatenated utterances.
        start, end: (N,) int64 first and one-past-last frame of each frame's utterance.
        context: odd window size 2k + 1 (1 = the frame alone).

    Returns:
        (N, context) int64: ``clamp(frame + j, start, end - 1)`` for ``j = -k .. k``.

    Raises:
        ValueError: ``context`` not a positive odd number, or shapes that differ.

    Example::

        >>> context_index(torch.tensor([0, 4]), torch.tensor([0, 0]), torch.tensor([5, 5]), 3).tolist()
        [[0, 0, 1], [3, 4, 4]]
    """
    if not isinstance(context, int) or context < 1 or context % 2 == 0:
        raise ValueError(f"context must be a positive odd number of frames (2k + 1), got {context!r}")
    if not (frame.shape == start.shape == end.shape) or frame.ndim != 1:
        raise ValueError(f"frame, start and end must be (N,) of one shape, got {tuple(frame.shape)}, "
                         f"{tuple(start.shape)}, {tuple(end.shape)}")
    k = context // 2
    offsets = torch.arange(-k, k + 1, device=frame.device)
    idx = frame[:, None] + offsets  # (N, context)
    return torch.maximum(torch.minimum(idx, (end - 1)[:, None]), start[:, None])


def concat_frames(x: Tensor, context: int) -> Tensor:
    """HW2's ``concat_feat``: each frame with its k = context // 2 neighbours on each side, side by side.

    Args:
        x: (T, C) one utterance, or (B, T, C) utterances of one length.
        context: odd window size 2k + 1.

    Returns:
        (T, context * C) (or (B, T, context * C)); row t is ``[x[t-k], ..., x[t], ..., x[t+k]]`` with
        indices clamped to [0, T - 1] (the first and last frames repeat at the edges).

    Raises:
        ValueError: ``x`` not 2-D or 3-D, or ``context`` not a positive odd number.

    Example::

        >>> concat_frames(torch.tensor([[1.], [2.], [3.]]), 3).tolist()
        [[1.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 3.0]]
    """
    if x.ndim not in (2, 3):
        raise ValueError(f"x must be (T, C) or (B, T, C), got shape {tuple(x.shape)}")
    T = x.shape[-2]
    t = torch.arange(T, device=x.device)
    idx = context_index(t, torch.zeros_like(t), torch.full_like(t, T), context)  # (T, context)
    out = x[..., idx, :]  # (..., T, context, C)
    return out.flatten(-2)  # (..., T, context * C)


# ---------------------------------------------------------------------------------------------- MLP rungs
@dataclass(frozen=True)
class FramewiseMLPConfig:
    """Sizes of :class:`FramewiseMLP`.

    Attributes:
        input_dim: features of one frame (39).
        context: frames per example, odd (1 = the frame alone).
        hidden_dim: width of each hidden layer.
        hidden_layers: number of hidden blocks (>= 1).
        batch_norm: ``BatchNorm1d`` after each block's ReLU.
        dropout: dropout after each block, in [0, 1).
        n_classes: output classes (41).
    """

    input_dim: int = 39
    context: int = 1
    hidden_dim: int = 256
    hidden_layers: int = 1
    batch_norm: bool = False
    dropout: float = 0.0
    n_classes: int = 41

    def __post_init__(self):
        for name in ("input_dim", "context", "hidden_dim", "hidden_layers", "n_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.context % 2 == 0:
            raise ValueError(f"context must be odd (2k + 1 frames centred on the labelled one), got {self.context}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class FramewiseMLP(nn.Module):
    """HW2's classifier: ``hidden_layers`` blocks (Linear -> ReLU [-> BatchNorm1d] [-> Dropout]) then Linear.

    Shapes:
        x: (B, context * input_dim), the frames of :func:`concat_frames` -> logits (B, n_classes).

    Raises:
        ValueError: an input whose last dimension is not ``context * input_dim``.

    Example::

        model = FramewiseMLP(FramewiseMLPConfig(context=11, hidden_dim=512, hidden_layers=3))
        logits = model(torch.randn(8, 429))   # (8, 41)
    """

    def __init__(self, cfg: FramewiseMLPConfig = FramewiseMLPConfig()):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        d = cfg.context * cfg.input_dim
        for _ in range(cfg.hidden_layers):
            layers += [nn.Linear(d, cfg.hidden_dim), nn.ReLU()]
            if cfg.batch_norm:
                layers.append(nn.BatchNorm1d(cfg.hidden_dim))
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            d = cfg.hidden_dim
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(d, cfg.n_classes)

    @property
    def in_features(self) -> int:
        return self.cfg.context * self.cfg.input_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"FramewiseMLP expects (B, {self.in_features}) = (B, context * input_dim), "
                             f"got {tuple(x.shape)}")
        return self.head(self.blocks(x))  # (B, n_classes)


# ---------------------------------------------------------------------------------------------- boss rung
@dataclass(frozen=True)
class FramewiseRNNConfig:
    """Sizes of :class:`FramewiseRNN`.

    Attributes:
        input_dim: features of one frame (39).
        hidden_size: state size of each direction.
        num_layers: stacked bidirectional layers.
        cell: ``"lstm"`` or ``"gru"``.
        dropout: between recurrent layers and before the output layer, in [0, 1).
        n_classes: output classes (41).
        fused: run torch's LSTM/GRU kernels on the parameters (the recurrent layer's ``use_fused``); False:
            the readable loop of :mod:`deepnotes.nn.recurrent`. Same parameters either way.
    """

    input_dim: int = 39
    hidden_size: int = 192
    num_layers: int = 2
    cell: Literal["lstm", "gru"] = "lstm"
    dropout: float = 0.2
    n_classes: int = 41
    fused: bool = True

    def __post_init__(self):
        for name in ("input_dim", "hidden_size", "num_layers", "n_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {self.cell!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class FramewiseRNN(nn.Module):
    """Sequence labelling: a stacked bidirectional LSTM/GRU over an utterance, a class for every frame.

    The parameters live in ``self.rnn``, a bidirectional :class:`deepnotes.nn.recurrent.LSTM` (or
    :class:`~deepnotes.nn.recurrent.GRU`), named as ``torch.nn.LSTM``'s, called with ``lengths=``. Two forward
    paths (``cfg.fused``, the layer's ``use_fused``): its readable loop over time, or torch's kernels (oneDNN on
    CPU, cuDNN on GPU) on those same parameters, run in segments of equal length rather than through
    ``pack_padded_sequence`` (8x slower forward + backward on CPU here; :mod:`deepnotes.nn.recurrent`).

    Shapes:
        x: (B, T, input_dim) padded utterances; lengths: (B,) int64 real lengths (default: all T).
        -> logits (B, T, n_classes); steps past an utterance's length see zero recurrent outputs (as
        ``pad_packed_sequence``) and should be ignored (targets -100).

    ``forward((x, lengths))`` works too: the training engine passes a tuple of inputs as one argument.

    Raises:
        ValueError: input of the wrong rank or feature size, or lengths outside [1, T].

    Example::

        model = FramewiseRNN(FramewiseRNNConfig(hidden_size=64))
        logits = model(torch.randn(2, 50, 39), torch.tensor([50, 31]))   # (2, 50, 41)
    """

    def __init__(self, cfg: FramewiseRNNConfig = FramewiseRNNConfig()):
        super().__init__()
        self.cfg = cfg
        cls = LSTM if cfg.cell == "lstm" else GRU
        self.rnn = cls(cfg.input_dim, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True,
                       dropout=cfg.dropout if cfg.num_layers > 1 else 0.0, bidirectional=True, use_fused=cfg.fused)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_size, cfg.n_classes)

    def with_path(self, fused: bool) -> "FramewiseRNN":
        """A copy of this model on the other path (``fused`` or readable), holding the same weights."""
        p = next(self.parameters())
        other = FramewiseRNN(replace(self.cfg, fused=fused)).to(device=p.device, dtype=p.dtype)
        other.load_state_dict(self.state_dict())
        return other.train(self.training)

    def forward(self, x: Tensor | tuple[Tensor, Tensor], lengths: Tensor | None = None) -> Tensor:
        if isinstance(x, (tuple, list)):
            x, lengths = x
        if x.ndim != 3 or x.shape[-1] != self.cfg.input_dim:
            raise ValueError(f"FramewiseRNN expects (B, T, {self.cfg.input_dim}), got {tuple(x.shape)}")
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.int64)
        lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
        if lengths.shape != (B,) or (B and (int(lengths.min()) < 1 or int(lengths.max()) > T)):
            raise ValueError(f"lengths must be (B,) = ({B},) values in [1, T={T}], got {lengths.tolist()}")
        out, _ = self.rnn(x, lengths=lengths)  # (B, T, 2H), zeros past each length
        return self.head(self.drop(out))  # (B, T, n_classes)


# ---------------------------------------------------------------------------------------------- the ladder
#: Default sizes of each rung (see the module docstring); the lab overrides some from its flags.
LADDER: dict[str, FramewiseMLPConfig | FramewiseRNNConfig] = {
    "simple": FramewiseMLPConfig(context=1, hidden_dim=256, hidden_layers=1),
    "medium": FramewiseMLPConfig(context=11, hidden_dim=512, hidden_layers=3),
    "strong": FramewiseMLPConfig(context=11, hidden_dim=512, hidden_layers=4, batch_norm=True, dropout=0.25),
    "boss": FramewiseRNNConfig(hidden_size=128, num_layers=2, cell="lstm", dropout=0.2),
}


def _rung_builder(rung: str):
    base = LADDER[rung]
    layers = "hidden_layers" if isinstance(base, FramewiseMLPConfig) else "num_layers"

    def build(in_channels: int = 39, num_classes: int = 41, num_layers: int | None = None, **overrides) -> nn.Module:
        if num_layers is not None:
            overrides[layers] = num_layers
        try:
            cfg = replace(base, input_dim=in_channels, n_classes=num_classes, **overrides)
        except TypeError as e:
            raise ValueError(f"{rung}: {e}") from None
        return FramewiseMLP(cfg) if isinstance(cfg, FramewiseMLPConfig) else FramewiseRNN(cfg)

    build.__name__ = f"hw2_{rung}"
    build.__doc__ = (f"HW2's {rung} rung: :data:`LADDER`'s config with ``input_dim=in_channels``, "
                     f"``n_classes=num_classes``, ``{layers}=num_layers`` and the other ``overrides`` replaced.")
    return build


for _rung in RUNGS:  # create_model("hw2-medium", in_channels=39, hidden_dim=256): 11 frames, 3 x 256
    register_model(f"hw2-{_rung}")(_rung_builder(_rung))


def is_sequence_model(model: nn.Module) -> bool:
    """True for the boss rung (whole utterances in, a class per frame out)."""
    return isinstance(model, FramewiseRNN)
