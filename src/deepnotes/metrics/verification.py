"""Speaker verification metrics: the DET curve, the equal error rate, and cosine-scored trials from embeddings.

Source: ML2022 HW4 (speaker classification; embeddings from the pooled encoder output) and the verification
protocol of speaker recognition: a *trial* is a pair of utterances, scored by the cosine similarity of their
embeddings; *target* trials (label 1) have the same speaker, *non-target* trials (label 0) different ones.
A threshold t accepts a trial when its score >= t, and makes two kinds of error::

    FAR(t) = #{non-target scores >= t} / #non-target        false accepts (false-positive rate)
    FRR(t) = #{target scores     <  t} / #target            false rejects (miss rate, 1 - true-positive rate)

Raising t trades false accepts for false rejects; the **equal error rate** (EER) is the error where the two
are equal (Martin et al. 1997, "The DET curve in assessment of detection task performance", Eurospeech; the
metric of the NIST SRE and VoxCeleb evaluations). Both rates jump at the scores, so the EER is read where the
straight segment between the two curve points around the crossing has FAR = FRR (the same linear
interpolation as the common ``brentq`` recipe on scikit-learn's ``roc_curve``).

Inputs may be Python lists, numpy arrays or torch tensors; outputs are numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deepnotes.metrics.classification import to_numpy

__all__ = ["cosine_trials", "det_curve", "equal_error_rate"]


def _trials(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = to_numpy(scores).astype(np.float64)
    y = to_numpy(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D of the same length, got shapes {s.shape} and {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (no NaN or inf); check the embeddings for NaN")
    if y.size and not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 1 (target: same speaker) or 0 (non-target), got values {np.unique(y)[:5]}")
    y = y.astype(bool)
    n_target = int(y.sum())
    if n_target == 0 or n_target == y.size:
        raise ValueError(f"need both target (label 1) and non-target (label 0) trials to measure verification "
                         f"errors; got {n_target} target and {y.size - n_target} non-target trials "
                         "(with cosine_trials: give it utterances of at least two speakers, some with two or more)")
    return s, y


def det_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-accept and false-reject rates at every threshold (the points of the DET / ROC curve).

    Thresholds are the distinct scores in increasing order, then +inf (accept nothing), so the curve runs from
    (FAR 1, FRR 0) to (FAR 0, FRR 1). The same points as ``sklearn.metrics.roc_curve(labels, scores,
    drop_intermediate=False)`` in reverse order, with FAR = fpr and FRR = 1 - tpr (sklearn's first threshold
    is +inf too).

    Args:
        scores: (T,) trial scores, higher = more likely the same speaker.
        labels: (T,) 1 = target (same speaker), 0 = non-target.

    Returns:
        ``(far, frr, thresholds)``, each (K,): FAR non-increasing, FRR non-decreasing, thresholds increasing.

    Raises:
        ValueError: shapes differ or not 1-D, a non-finite score, a label outside {0, 1}, or only one kind of trial.

    Example::

        far, frr, t = det_curve([0.9, 0.8, 0.3, 0.5, 0.4], [1, 1, 1, 0, 0])
    """
    s, y = _trials(scores, labels)
    target, non_target = np.sort(s[y]), np.sort(s[~y])
    thresholds = np.append(np.unique(s), np.inf)  # (K,)
    far = 1.0 - np.searchsorted(non_target, thresholds, side="left") / non_target.size  # share of non-targets >= t
    frr = np.searchsorted(target, thresholds, side="left") / target.size  # share of targets < t
    return far, frr, thresholds


def equal_error_rate(scores: Any, labels: Any) -> tuple[float, float]:
    """The equal error rate and its threshold, where FAR = FRR on the DET curve (interpolated linearly).

    On the points of :func:`det_curve`, ``d_k = FAR_k - FRR_k`` falls from 1 to -1. At the first k with
    ``d_k <= 0`` the curves cross between points k-1 and k; with ``α = d_{k-1} / (d_{k-1} - d_k)``::

        EER       = FAR_{k-1} + α (FAR_k - FAR_{k-1})   ( = FRR_{k-1} + α (FRR_k - FRR_{k-1}) )
        threshold = t_{k-1} + α (t_k - t_{k-1})          (t_{k-1} when t_k is the +inf end point)

    Args:
        scores: (T,) trial scores, higher = more likely the same speaker.
        labels: (T,) 1 = target, 0 = non-target.

    Returns:
        ``(eer, threshold)``: eer in [0, 1] (0 = perfectly separated scores), threshold on the score scale.

    Raises:
        ValueError: as :func:`det_curve` (all labels the same: "need both target ... and non-target ...").

    Example::

        equal_error_rate([0.9, 0.8, 0.3, 0.5, 0.4], [1, 1, 1, 0, 0])   # (0.333..., 0.6)
    """
    far, frr, t = det_curve(scores, labels)
    d = far - frr
    k = int(np.argmax(d <= 0))  # the first point at or past the crossing (d[0] = 1 > 0, d[-1] = -1)
    if d[k] == 0:
        return float(far[k]), float(t[k])
    alpha = d[k - 1] / (d[k - 1] - d[k])
    eer = far[k - 1] + alpha * (far[k] - far[k - 1])
    threshold = t[k - 1] + alpha * (t[k] - t[k - 1]) if np.isfinite(t[k]) else t[k - 1]
    return float(eer), float(threshold)


def _pairs(ids: np.ndarray, max_trials: int | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j: all of them, or at most max_trials with up to half targets, drawn without replacement."""
    n = ids.size
    if max_trials is None or n * (n - 1) // 2 <= max_trials:
        return np.triu_indices(n, k=1)
    # targets: every same-speaker pair (they are few), then a random subset
    groups = [np.flatnonzero(ids == s) for s in np.unique(ids)]
    ti, tj = [], []
    for g in groups:
        a, b = np.triu_indices(g.size, k=1)
        ti.append(g[a]), tj.append(g[b])
    ti, tj = np.concatenate(ti), np.concatenate(tj)
    keep = rng.permutation(ti.size)[: min(ti.size, max_trials // 2)]
    ti, tj = ti[keep], tj[keep]
    # non-targets: random pairs of different speakers until there are enough distinct ones
    n_non = n * (n - 1) // 2 - int(sum(g.size * (g.size - 1) // 2 for g in groups))
    need = min(n_non, max_trials - ti.size)
    codes = np.zeros(0, np.int64)  # pair (i, j) coded as i * n + j
    while codes.size < need:
        i, j = rng.integers(0, n, size=(2, 2 * (need - codes.size) + 16))
        i, j = np.minimum(i, j), np.maximum(i, j)
        ok = ids[i] != ids[j]
        new = np.setdiff1d(i[ok] * n + j[ok], codes)  # sorted, distinct
        codes = np.concatenate([codes, rng.permutation(new)[: need - codes.size]])
    return np.concatenate([ti, codes // n]), np.concatenate([tj, codes % n])


def cosine_trials(embeddings: Any, speaker_ids: Sequence[Any] | Any, max_trials: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Verification trials from utterance embeddings: cosine similarity of pairs, labelled same speaker or not.

    All pairs (i < j) by default. With ``max_trials`` and more pairs than that, at most ``max_trials // 2``
    target pairs (chosen at random among all of them) and non-target pairs to fill up to ``max_trials``
    (distinct pairs, drawn at random): the EER does not depend on the ratio of the two kinds, and
    non-target pairs are far more numerous. The draw depends only on ``seed`` (numpy's PCG64).

    Args:
        embeddings: (U, d) one embedding per utterance (e.g. :meth:`SpeakerClassifier.embed`).
        speaker_ids: (U,) speaker of each utterance (ints or strings).
        max_trials: cap on the number of trials; None = all U (U - 1) / 2 pairs. Default None.
        seed: for the random subset. Default 0.

    Returns:
        ``(scores, labels)``: scores (P,) float64 cosine similarities in [-1, 1]; labels (P,) int64, 1 = same
        speaker. Targets first when subsampled, else pairs in (i, j) order.

    Raises:
        ValueError: embeddings not 2-D, fewer than 2 utterances, speaker_ids of another length, max_trials < 1.

    Example::

        scores, labels = cosine_trials(model.embed(mels, kpm), speakers, max_trials=100_000)
        eer, threshold = equal_error_rate(scores, labels)
    """
    E = to_numpy(embeddings).astype(np.float64)
    ids = to_numpy(speaker_ids)
    if E.ndim != 2 or E.shape[0] < 2:
        raise ValueError(f"embeddings must be (U >= 2, d), got shape {E.shape}")
    if ids.shape != (E.shape[0],):
        raise ValueError(f"speaker_ids must be ({E.shape[0]},) like the embeddings, got shape {ids.shape}")
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"max_trials must be >= 1 or None, got {max_trials}")
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)  # unit rows: dot product = cosine
    i, j = _pairs(ids, max_trials, np.random.default_rng(seed))
    scores = np.empty(i.size)
    for start in range(0, i.size, 1 << 16):  # in chunks: (chunk, d) at a time
        sl = slice(start, start + (1 << 16))
        scores[sl] = np.einsum("pd,pd->p", E[i[sl]], E[j[sl]])
    return scores, (ids[i] == ids[j]).astype(np.int64)
