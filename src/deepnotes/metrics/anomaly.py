"""Anomaly detection scored as ranking: the one-class protocol, AUROC, and the PCA reconstruction baseline.

Source: ML2021/2022 HW8 (anomaly detection: a model sees only normal images; at test time an anomaly score
``s(x)``, higher = more anomalous, is judged by the area under the ROC curve, so no threshold is chosen);
the one-class protocol of Ruff et al. 2018 and Golan & El-Yaniv 2018: each class of a labelled dataset in turn
is "normal", every other class is an anomaly; the mean AUROC over the classes summarizes a method.

The PCA baseline (the lecture's "auto-encoder with linear layers"): fit the principal subspace of the normal
training images; ``s(x) = ||x - x̂||²`` with ``x̂ = μ + W Wᵀ (x - μ)``, W the first ``n_components`` principal
directions. scikit-learn's :class:`~sklearn.decomposition.PCA` does the fitting (a library's job).

Inputs may be Python lists, numpy arrays or torch tensors; outputs are numpy / Python floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepnotes.metrics.classification import to_numpy

__all__ = ["auroc", "one_class_targets", "pca_reconstruction_scores"]


def one_class_targets(labels: Any, normal_class: int) -> np.ndarray:
    """``is_anomaly`` of each example under the one-class protocol: True where ``label != normal_class``.

    Shapes:
        labels (N,) -> (N,) bool.

    Raises:
        ValueError: ``normal_class`` does not occur in ``labels`` (no normal example: AUROC is undefined).
    """
    y = to_numpy(labels).astype(np.int64).ravel()
    if not (y == normal_class).any():
        raise ValueError(f"normal_class {normal_class} does not occur in the labels (classes present: "
                         f"{sorted(set(y.tolist()))[:20]})")
    return y != normal_class


def auroc(scores: Any, is_anomaly: Any) -> float:
    """Area under the ROC curve of anomaly ``scores`` (higher = more anomalous) against the truth ``is_anomaly``:
    the probability that a random anomaly scores above a random normal example (ties count one half).

    Computed by scikit-learn's ``roc_auc_score``; 0.5 is chance, 1.0 a perfect ranking.

    Shapes:
        scores (N,), is_anomaly (N,) bool.

    Raises:
        ValueError: different lengths, a non-finite score, or only one kind of example.
    """
    from sklearn.metrics import roc_auc_score

    s, t = to_numpy(scores).astype(np.float64).ravel(), to_numpy(is_anomaly).astype(bool).ravel()
    if s.shape != t.shape:
        raise ValueError(f"scores ({s.size}) and is_anomaly ({t.size}) must have the same length")
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite; {int((~np.isfinite(s)).sum())} are not")
    if t.all() or not t.any():
        raise ValueError("is_anomaly must hold both normal (False) and anomalous (True) examples")
    return float(roc_auc_score(t, s))


def pca_reconstruction_scores(train: Any, x: Any, n_components: int | float, seed: int = 0) -> np.ndarray:
    """Squared reconstruction error of each row of ``x`` by the PCA subspace of the (normal) ``train`` rows.

    Args:
        train: normal training examples, flattened (e.g. pixels in [0, 1]).
        x: examples to score, same width.
        n_components: principal directions kept: an int >= 1, or a float in (0, 1), the share of the training
            variance to keep (scikit-learn's convention).
        seed: of the randomized solver when scikit-learn picks it.

    Returns:
        ``||x - x̂||²`` per row (N,), float64.

    Shapes:
        train (M, D), x (N, D) -> (N,).

    Raises:
        ValueError: the widths differ, or ``n_components`` is out of range.
    """
    from sklearn.decomposition import PCA

    a, b = to_numpy(train).astype(np.float64), to_numpy(x).astype(np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"train {a.shape} and x {b.shape} must be 2-D with the same width (flatten the images)")
    whole = isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool)
    if not ((whole and 1 <= n_components <= min(a.shape)) or (not whole and isinstance(n_components, float)
                                                                and 0 < n_components < 1)):
        raise ValueError(f"n_components must be an int in [1, {min(a.shape)}] or a float in (0, 1), "
                         f"got {n_components!r}")
    pca = PCA(n_components=n_components, random_state=seed).fit(a)
    recon = pca.inverse_transform(pca.transform(b))
    return ((b - recon) ** 2).sum(axis=1)
