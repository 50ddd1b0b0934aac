"""Train / validation / test splits, all in one place: which rows go where, and why nothing leaks.

* :func:`stratified_holdout`: a share of each class held out (image classification's validation split).
* :func:`verse_split`: a seeded verse-level split of the KJV text (no verse on both sides).
* :func:`chronological_split`, :func:`contiguous_folds`: time-ordered blocks and cross-validation folds
  (seattle-weather windows: validation and test lie after training).
* :func:`random_split`: the same proportions on a seeded permutation (HW1's rows, no time order).
* :func:`group_split`: whole groups to one side (translation pairs by source package, clips by speaker).
* :func:`hw2_train_val_split`: HW2's sample-code split of the utterance ids.

Source: ML2021 lecture 1 and HW1 (validation set, N-fold cross validation), lecture 2 (why the test set must
not choose anything).
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

import numpy as np
import torch

from deepnotes.errors import UserError

HW2_TRAIN_RATIO = 0.8  # HW2's sample code: train_ratio
HW2_SPLIT_SEED = 1337  # HW2's sample code: seed of random.shuffle over the training ids


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with ``round(fraction * n_c)`` examples of each class c in val."""
    g = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(fraction * len(idx)))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values


def verse_split(n_verses: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Verse-level train/validation split: sorted index arrays ``(train, val)`` of a seeded permutation.

    Raises:
        UserError: ``val_fraction`` not in (0, 1) or too small to give one validation verse.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    n_val = int(round(n_verses * val_fraction))
    if n_val < 1 or n_val >= n_verses:
        raise UserError(f"--val-fraction {val_fraction} of {n_verses} verses leaves an empty split")
    perm = np.random.default_rng(seed).permutation(n_verses)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def chronological_split(n: int, fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> tuple[np.ndarray, ...]:
    """Index arrays (train, valid, test) of ``n`` rows in time order: three contiguous blocks.

    The first ``round(f0 * n)`` rows train, the next ``round(f1 * n)`` validate, the rest test, so
    every validation row is later than every training row and every test row later than both.

    Raises:
        UserError: fractions not positive or not summing to 1, or a block would be empty.
    """
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UserError(f"split fractions must be three positive numbers summing to 1 (got {tuple(fractions)})")
    n_tr = int(round(fractions[0] * n))
    n_va = int(round(fractions[1] * n))
    if n_tr < 1 or n_va < 1 or n - n_tr - n_va < 1:
        raise UserError(f"{n} rows are too few for a train/valid/test split of {tuple(fractions)}")
    idx = np.arange(n)
    return idx[:n_tr], idx[n_tr : n_tr + n_va], idx[n_tr + n_va :]


def contiguous_folds(n: int, k: int, gap: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """N-fold cross-validation with folds contiguous in time.

    Rows ``0..n-1`` are cut into ``k`` consecutive blocks of near-equal size; fold ``i`` validates
    on block ``i`` and trains on the other rows except the ``gap`` rows on each side of the block
    (windows of ``gap + 1`` days that share a day with a validation window; use ``days - 1``).

    Returns:
        k pairs ``(train_idx, valid_idx)``.

    Raises:
        UserError: ``k`` < 2 or more folds than rows.
    """
    if k < 2:
        raise UserError(f"--folds must be >= 2 for cross-validation (0 turns it off), got {k}")
    if k > n:
        raise UserError(f"--folds {k} is more than the {n} rows to split")
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    idx = np.arange(n)
    folds = []
    for i in range(k):
        lo, hi = bounds[i], bounds[i + 1]
        train = idx[(idx < lo - gap) | (idx >= hi + gap)]
        folds.append((train, idx[lo:hi]))
    return folds


def random_split(n: int, fractions: Sequence[float], seed: int) -> tuple[np.ndarray, ...]:
    """Like :func:`chronological_split` but on a seeded permutation (rows with no time order, e.g. HW1)."""
    tr, va, te = chronological_split(n, fractions)
    perm = np.random.default_rng(seed).permutation(n)
    return tuple(np.sort(perm[part]) for part in (tr, va, te))


def hw2_train_val_split(ids: Sequence[str], train_ratio: float = HW2_TRAIN_RATIO,
                        seed: int = HW2_SPLIT_SEED) -> tuple[list[str], list[str]]:
    """HW2's sample-code split of ``train_split.txt``: ``random.seed(seed); random.shuffle(ids)``, the
    first ``int(len * train_ratio)`` train, the rest validation (the same ids as the course's notebook).

    Raises:
        ValueError: ``train_ratio`` outside (0, 1].
    """
    if not 0 < train_ratio <= 1:
        raise ValueError(f"train_ratio must be in (0, 1], got {train_ratio}")
    ids = list(ids)
    state = random.getstate()
    try:
        random.seed(seed)
        random.shuffle(ids)
    finally:
        random.setstate(state)
    n = int(len(ids) * train_ratio)
    return ids[:n], ids[n:]


def group_split(groups: Sequence[str], val_groups: Iterable[str], test_groups: Iterable[str],
                what: str = "group") -> tuple[list[int], list[int], list[int]]:
    """Row indices ``(train, val, test)`` by group: every row of a group in ``val_groups`` validates, of one in
    ``test_groups`` tests, of any other group trains; no group is on two sides. Deterministic, in input order.

    Args:
        groups: the group of each row (e.g. a pair's source package, a clip's speaker).
        val_groups, test_groups: the held-out groups.
        what: the word for a group in error messages (default "group"; e.g. "package").

    Raises:
        UserError: a group in both lists, or a named group without rows (the message lists those present).
    """
    val, test = set(val_groups), set(test_groups)
    if val & test:
        raise UserError(f"{what}s in both the validation and the test list: {', '.join(sorted(val & test))}")
    present = set(groups)
    missing = (val | test) - present
    if missing:
        raise UserError(f"validation/test {what}s without any row: {', '.join(sorted(missing))}; "
                        f"the rows come from: {', '.join(sorted(present))}")
    train, val_idx, test_idx = [], [], []
    for i, g in enumerate(groups):
        (val_idx if g in val else test_idx if g in test else train).append(i)
    return train, val_idx, test_idx
