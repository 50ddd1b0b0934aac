"""Small pure helpers on classification outputs: confusion matrix and mistakes-first ordering.

Inputs may be Python lists, numpy arrays or torch tensors (any device); nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["confusion_matrix", "mistakes_first_order", "to_numpy"]


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(x: Any, name: str) -> np.ndarray:
    a = to_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,) class indices, got shape {tuple(a.shape)}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.mod(a, 1) == 0):
            raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype} with fractions")
    return a.astype(np.int64, copy=False)


def confusion_matrix(true: Any, pred: Any, num_classes: int) -> np.ndarray:
    """Count matrix ``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    Same convention as ``sklearn.metrics.confusion_matrix(true, pred, labels=range(K))``: rows
    are true classes, columns predictions. Computed with one ``np.bincount`` of ``K * true + pred``.

    Args:
        true: (N,) integer true labels in ``[0, num_classes)``.
        pred: (N,) integer predicted labels in ``[0, num_classes)``.
        num_classes: K, the number of classes (classes never seen still get a row and column).

    Returns:
        (K, K) ``int64`` array of counts; it sums to N.

    Raises:
        ValueError: ``true``/``pred`` are not 1-D, differ in length, or hold a label outside
            ``[0, num_classes)``; ``num_classes`` < 1.

    Example::

        >>> confusion_matrix([0, 1, 1], [0, 0, 1], num_classes=2).tolist()
        [[1, 0], [1, 1]]
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    k = int(num_classes)
    t = _labels(true, "true")
    p = _labels(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"true and pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    for name, a in (("true", t), ("pred", p)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} holds labels in [{a.min()}, {a.max()}], outside [0, {k}) for num_classes={k}")
    return np.bincount(k * t + p, minlength=k * k).reshape(k, k).astype(np.int64, copy=False)


def mistakes_first_order(true: Any, pred: Any) -> np.ndarray:
    """Indices that put the misclassified samples first, then the correct ones.

    The order inside each group is the original order (a stable sort), so the result is
    deterministic.

    Args:
        true: (N,) true labels.
        pred: (N,) predicted labels.

    Returns:
        (N,) ``int64`` permutation of ``range(N)``.

    Raises:
        ValueError: ``true`` and ``pred`` are not 1-D or differ in length.

    Example::

        >>> mistakes_first_order([0, 1, 2, 3], [0, 2, 2, 1]).tolist()
        [1, 3, 0, 2]
    """
    t = _labels(true, "true")
    p = _labels(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"true and pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    correct = (t == p).astype(np.int8)
    return np.argsort(correct, kind="stable").astype(np.int64)
