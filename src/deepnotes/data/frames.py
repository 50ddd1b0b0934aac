"""Frame-wise classification data (ML2021/2022 HW2): every split's frames in one normalized table, and batches
drawn from it by index: windows of 2k + 1 frames (the MLP rungs) or whole padded utterances (the RNN rung).

* :func:`normalize_utterances`: per-utterance cepstral mean and variance normalization (CMVN).
* :func:`frame_table`: one :class:`FrameTable` of the train, validation and test corpora, normalized per
  utterance or with the training frames' global mean and std.
* :class:`FrameTable`: ``window_batch`` (HW2's ``concat_feat``: frames before the first or after the last repeat
  the utterance's edge frames) and ``utterance_batch`` (zero-padded, targets -100 on padding).
* :class:`IndexBatches`: a batch source over row indices (the order of :class:`deepnotes.train.TensorBatches`,
  a function of (seed, epoch) only), each index batch turned into a batch by the table.
* :func:`predict_frames`: the predicted class of every frame of a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterator, Mapping

import torch

from deepnotes.data.phonemes import FrameCorpus
from deepnotes.models.framewise import context_index
from deepnotes.train.batches import EvalBatches, TensorBatches
from deepnotes.train.distributed import DistInfo

IGNORE_INDEX = -100  # the target of padding and of frames without a label (as deepnotes.train.IGNORE_INDEX)


def normalize_utterances(corpus: FrameCorpus) -> torch.Tensor:
    """Per-utterance CMVN: each utterance's features to zero mean and unit variance per dimension (std floored
    at 1e-5), computed in float64. Returns (F, C) float32."""
    out = torch.empty_like(corpus.features)
    o = corpus.offsets.tolist()
    for u in range(len(corpus)):
        x = corpus.features[o[u]: o[u + 1]].double()
        out[o[u]: o[u + 1]] = ((x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-5)).float()
    return out


@dataclass
class FrameTable:
    """Every split's frames in one table (global frame and utterance indices), normalized.

    Attributes:
        features: (F, C) float32. labels: (F,) int64, -100 where a split has no labels.
        offsets: (U + 1,) int64: utterance u holds frames ``offsets[u]:offsets[u + 1]``.
        utt_split: split -> (U_split,) global utterance indices. labelled: split -> whether it has labels.
        stats: (mean, std) lists of the global normalization, or None (CMVN).
    """

    features: torch.Tensor
    labels: torch.Tensor
    offsets: torch.Tensor
    utt_split: dict[str, torch.Tensor]
    labelled: dict[str, bool]
    stats: tuple[list[float], list[float]] | None = None

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def frames(self, split: str) -> torch.Tensor:
        """(F_split,) global frame indices of a split's utterances, in order."""
        u = self.utt_split[split]
        if len(u) == 0:
            return torch.zeros(0, dtype=torch.int64)
        return torch.cat([torch.arange(int(self.offsets[i]), int(self.offsets[i + 1])) for i in u.tolist()])

    @cached_property
    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        utt_of_frame = torch.repeat_interleave(torch.arange(len(self.lengths)), self.lengths)
        return self.offsets[utt_of_frame], self.offsets[utt_of_frame + 1]  # (F,) start and end of each frame's utterance

    def window_batch(self, idx: torch.Tensor, context: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``idx`` (B,) -> (x (B, context * C), labels (B,)) on ``device``; windows never cross an
        utterance's edge."""
        start, end = self._bounds
        win = context_index(idx, start[idx], end[idx], context)  # (B, context)
        x = self.features[win].flatten(1)  # (B, context * C)
        return x.to(device, non_blocking=True), self.labels[idx].to(device, non_blocking=True)

    def utterance_batch(self, u: torch.Tensor, device: torch.device) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                                             torch.Tensor]:
        """Utterances ``u`` (B,) -> ((x (B, T, C) zero-padded to the longest, lengths (B,) on the CPU),
        targets (B, T) with -100 on padding)."""
        lengths = self.lengths[u]  # (B,)
        T = int(lengths.max())
        t = torch.arange(T)
        mask = t[None, :] < lengths[:, None]  # (B, T)
        idx = torch.where(mask, self.offsets[u][:, None] + t[None, :], torch.zeros((), dtype=torch.int64))
        x = self.features[idx] * mask[..., None]  # (B, T, C)
        y = torch.where(mask, self.labels[idx], torch.full((), IGNORE_INDEX, dtype=torch.int64))  # (B, T)
        return (x.to(device, non_blocking=True), lengths), y.to(device, non_blocking=True)


def frame_table(corpora: Mapping[str, FrameCorpus], cmvn: bool = True,
                stats: tuple[list[float], list[float]] | None = None) -> FrameTable:
    """One normalized table of the corpora (split -> :class:`FrameCorpus`, in order).

    Args:
        cmvn: normalize each utterance (:func:`normalize_utterances`); False: ``(x - mean) / std`` with
            ``stats``, by default the training frames' mean and std (std floored at 1e-5).
        stats: (mean, std) lists of length C for ``cmvn=False`` (e.g. a trained run's).
    """
    if not cmvn and stats is None:
        f = corpora["train"].features.double()
        stats = (f.mean(0).tolist(), f.std(0).clamp_min(1e-5).tolist())
    feats, labels, lengths, utt_split, labelled, u0 = [], [], [], {}, {}, 0
    for split, c in corpora.items():
        if cmvn:
            feats.append(normalize_utterances(c))
        else:
            mean, std = (torch.tensor(s, dtype=torch.float64) for s in stats)
            feats.append(((c.features.double() - mean) / std).float())
        labelled[split] = c.labels is not None
        labels.append(c.labels if c.labels is not None else torch.full((c.n_frames,), IGNORE_INDEX, dtype=torch.int64))
        lengths.append(c.lengths)
        utt_split[split] = torch.arange(u0, u0 + len(c))
        u0 += len(c)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cat(lengths).cumsum(0)])
    return FrameTable(torch.cat(feats), torch.cat(labels), offsets, utt_split, labelled, stats)


class IndexBatches:
    """Batches ``make(idx)`` of row indices ``index`` (1-D): shuffled as :class:`TensorBatches` (``len`` and
    ``epoch(e)``, a training batch source) or, with ``shuffle=False``, in order as :class:`EvalBatches` (iterate
    it: an evaluation set)."""

    def __init__(self, index: torch.Tensor, make: Callable[[torch.Tensor], Any], batch_size: int, seed: int = 0,
                 info: DistInfo = DistInfo(), shuffle: bool = True):
        self.make = make
        self.rows = TensorBatches((index,), batch_size, seed, info) if shuffle else EvalBatches((index,), batch_size, info)

    def __len__(self) -> int:
        return len(self.rows)

    def epoch(self, epoch: int) -> Iterator[Any]:
        return (self.make(idx) for (idx,) in self.rows.epoch(epoch))

    def __iter__(self) -> Iterator[Any]:
        return (self.make(idx) for (idx,) in self.rows)


@torch.no_grad()
def predict_frames(model: torch.nn.Module, table: FrameTable, split: str, device: torch.device, context: int = 1,
                   sequence: bool = False) -> torch.Tensor:
    """Predicted class of every frame of ``split`` (in :meth:`FrameTable.frames` order), (F_split,) int64: from
    windows of ``context`` frames, or with ``sequence`` from whole utterances (32 at a time)."""
    model.eval()
    out = []
    if sequence:
        for (x, lengths), _ in IndexBatches(table.utt_split[split], lambda u: table.utterance_batch(u, device), 32,
                                            shuffle=False):
            pred = model(x, lengths).argmax(-1).cpu()  # (B, T)
            out += [pred[i, : int(n)] for i, n in enumerate(lengths)]
    else:
        for x, _ in IndexBatches(table.frames(split), lambda i: table.window_batch(i, context, device), 8192,
                                 shuffle=False):
            out.append(model(x).argmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)
