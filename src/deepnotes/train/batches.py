"""Batch sources: what the Trainer iterates over, in an order that depends only on (seed, epoch).

The Trainer asks a source for the batches of epoch ``e`` (``source.epoch(e)``) and for how many updates an
epoch has (``len(source)``). Nothing about the order depends on history, so a run resumed at epoch ``e`` draws
exactly the batches an uninterrupted run would have drawn. A batch is whatever the task's ``training_step``
takes: a tuple of tensors here; a lab may write its own source (e.g. token-bucketed translation batches).

* :class:`TensorBatches`: shuffled mini-batches of tensors held in memory (one pass, a fixed number of
  updates per epoch, or draws weighted per example), each process taking its share.
* :class:`EvalBatches`: the same tensors in order, for evaluation, each process taking its share.
* :class:`ChunkedBatches`: another source's batches in lists of ``size`` consecutive ones, one list per update
  (for a task that steps through several batches at once, e.g. word2vec's Hogwild! workers).

Source: ML2021 lecture 2 (batch and epoch: shuffle after every epoch).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Protocol, Sequence

import torch

from deepnotes.train.distributed import DistInfo


def seed_for(*parts: int) -> int:
    """A generator seed derived from integers (seed, epoch, rank, ...), stable across runs and platforms."""
    h = 0
    for p in parts:
        h = (h * 1_000_003 + int(p) + 0x9E3779B9) % (2**63 - 1)
    return h


class BatchSource(Protocol):
    """What :class:`deepnotes.train.Trainer` trains on."""

    def __len__(self) -> int:
        """Updates per epoch."""

    def epoch(self, epoch: int) -> Iterable[Any]:
        """This process's batches of epoch ``epoch`` (0-based), a function of (seed, epoch) only."""


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors, indexed together along dim 0.

    Args:
        tensors: tensors with the same first dimension N (e.g. ``(x, y)``); a batch is the tuple of their rows.
        batch_size: examples per update, summed over all processes.
        seed: with the epoch, the only input of the order.
        info: this process's rank and the world size: each process takes every ``world_size``-th row of a batch.
        steps_per_epoch: updates per epoch; default None = one pass, ``ceil(N / batch_size)``. Smaller: a fixed
            number of updates on batches drawn without replacement from a seeded permutation (a language model's
            evaluation interval); larger: several permutations chained.
        sample_weights: (N,) non-negative weights; given, each epoch draws ``steps_per_epoch * batch_size`` rows
            with replacement, row i with probability ``w_i / sum(w)`` (re-balances groups of unequal size).

    Raises:
        ValueError: tensors of different lengths, ``steps_per_epoch < 1``, or weights of the wrong length, negative,
            not finite or all zero.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, seed: int, info: DistInfo = DistInfo(),
                 steps_per_epoch: int | None = None, sample_weights: torch.Tensor | None = None):
        self.tensors = tuple(tensors)
        n = len(self.tensors[0])
        if any(len(t) != n for t in self.tensors):
            raise ValueError(f"tensors must share their first dimension, got {[len(t) for t in self.tensors]}")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if sample_weights is not None:
            sample_weights = torch.as_tensor(sample_weights, dtype=torch.float64).flatten()
            if len(sample_weights) != n:
                raise ValueError(f"sample_weights has {len(sample_weights)} entries for {n} examples")
            if not bool(torch.isfinite(sample_weights).all()) or bool((sample_weights < 0).any()) \
                    or float(sample_weights.sum()) <= 0:
                raise ValueError("sample_weights must be finite, >= 0 and not all 0")
        self.n, self.batch_size, self.seed, self.info = n, batch_size, seed, info
        self.sample_weights = sample_weights
        self.steps_per_epoch = steps_per_epoch or math.ceil(n / batch_size)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def indices(self, epoch: int) -> Iterator[torch.Tensor]:
        """Row indices of this process's share of each batch of ``epoch``."""
        B, N, steps = self.batch_size, self.n, self.steps_per_epoch
        need = steps * B
        share = slice(self.info.rank, None, self.info.world_size)
        if self.sample_weights is not None:
            g = torch.Generator().manual_seed(seed_for(self.seed, epoch))
            drawn = torch.multinomial(self.sample_weights, need, replacement=True, generator=g)
            for b in range(steps):
                yield drawn[b * B : (b + 1) * B][share]
            return
        perms = [torch.randperm(N, generator=torch.Generator().manual_seed(seed_for(self.seed, epoch)))]
        while sum(len(p) for p in perms) < need:  # more updates than one pass: chain further permutations
            g = torch.Generator().manual_seed(seed_for(self.seed, epoch, len(perms)))
            perms.append(torch.randperm(N, generator=g))
        perm = torch.cat(perms) if len(perms) > 1 else perms[0]
        for b in range(steps):
            yield perm[b * B : min((b + 1) * B, need)][share]

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        for idx in self.indices(epoch):
            yield tuple(t[idx] for t in self.tensors)


class EvalBatches:
    """In-memory tensors in their order, ``batch_size`` rows at a time, this process taking every
    ``world_size``-th row; iterate it as often as needed.

    Args:
        tensors: tensors with the same first dimension (e.g. ``(x, y)``).
        batch_size: rows per forward pass (default 1000).
        info: this process's rank and the world size.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int = 1000, info: DistInfo = DistInfo()):
        self.tensors, self.batch_size, self.info = tuple(tensors), batch_size, info

    def __len__(self) -> int:
        return math.ceil(len(self._rows()) / self.batch_size)

    def _rows(self) -> torch.Tensor:
        return torch.arange(len(self.tensors[0]))[self.info.rank :: self.info.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        rows = self._rows()
        for start in range(0, len(rows), self.batch_size):
            idx = rows[start : start + self.batch_size]
            yield tuple(t[idx] for t in self.tensors)


class ChunkedBatches:
    """Another batch source's batches grouped in lists of ``size`` consecutive ones: one list per Trainer update.

    Args:
        source: a :class:`BatchSource`.
        size: batches per list, >= 1 (the last list of an epoch may be shorter).

    Raises:
        ValueError: ``size`` < 1.
    """

    def __init__(self, source: BatchSource, size: int):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.source, self.size = source, size

    def __len__(self) -> int:
        return -(-len(self.source) // self.size)

    def epoch(self, epoch: int) -> Iterator[list[Any]]:
        chunk: list[Any] = []
        for batch in self.source.epoch(epoch):
            chunk.append(batch)
            if len(chunk) == self.size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
