"""Verification metrics against hand cases and scikit-learn's ROC: DET points, EER, cosine trials."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from deepnotes.metrics.verification import cosine_trials, det_curve, equal_error_rate


def test_det_curve_hand_case_and_sklearn():
    scores = [0.9, 0.8, 0.3, 0.5, 0.4]
    labels = [1, 1, 1, 0, 0]
    far, frr, t = det_curve(scores, labels)
    np.testing.assert_allclose(t, [0.3, 0.4, 0.5, 0.8, 0.9, np.inf])
    np.testing.assert_allclose(far, [1, 1, 0.5, 0, 0, 0])
    np.testing.assert_allclose(frr, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    fpr, tpr, thr = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, fpr[::-1])
    np.testing.assert_allclose(frr, 1 - tpr[::-1])
    np.testing.assert_allclose(t[:-1], thr[::-1][:-1])


def test_eer_hand_cases():
    # crossing exactly at a point: t = 0.6 gives FAR = 1/4 (0.6 >= 0.6) and FRR = 1/4 (0.3 < 0.6)
    eer, thr = equal_error_rate([0.9, 0.8, 0.7, 0.3, 0.6, 0.5, 0.4, 0.2], [1, 1, 1, 1, 0, 0, 0, 0])
    assert (eer, thr) == pytest.approx((0.25, 0.6))
    # crossing inside a segment: t = 0.5 (FAR 1/2, FRR 1/3) -> t = 0.8 (FAR 0, FRR 1/3); FAR = 1/3 a third of the way
    eer, thr = equal_error_rate([0.9, 0.8, 0.3, 0.5, 0.4], [1, 1, 1, 0, 0])
    assert (eer, thr) == pytest.approx((1 / 3, 0.6))
    assert equal_error_rate([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])[0] == 0.0  # separated
    assert equal_error_rate([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])[0] == 1.0  # reversed


def _sklearn_eer(labels, scores):
    """The common recipe: the crossing of FNR = 1 - TPR with FPR on scikit-learn's ROC, by root finding."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_sklearn_roc_recipe(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    labels[:2] = [0, 1]
    scores = rng.normal(size=200) + 1.2 * labels
    eer, thr = equal_error_rate(torch.from_numpy(scores), labels)
    assert eer == pytest.approx(_sklearn_eer(labels, scores), abs=1e-9)
    far = np.mean(scores[labels == 0] >= thr)
    frr = np.mean(scores[labels == 1] < thr)
    assert abs(far - eer) <= 1 / 50 and abs(frr - eer) <= 1 / 50  # the threshold really sits at the crossing


def test_eer_with_tied_scores():
    scores = np.round(np.random.default_rng(0).normal(size=300), 1)  # many ties
    labels = (np.random.default_rng(1).random(300) < 0.3).astype(int)
    scores = scores + 0.5 * labels
    assert equal_error_rate(scores, labels)[0] == pytest.approx(_sklearn_eer(labels, scores), abs=1e-9)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="need both target .* and non-target"):
        equal_error_rate([0.1, 0.5, 0.9], [1, 1, 1])
    with pytest.raises(ValueError, match="0 target and 2 non-target"):
        det_curve([0.1, 0.5], [0, 0])
    with pytest.raises(ValueError, match="same length"):
        equal_error_rate([0.1, 0.5], [0, 1, 1])
    with pytest.raises(ValueError, match="finite"):
        equal_error_rate([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="labels must be 1"):
        equal_error_rate([0.1, 0.2], [0, 2])


# ------------------------------------------------------------------------------------------ trials
def test_cosine_trials_all_pairs():
    E = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    ids = ["a", "a", "b", "b"]
    scores, labels = cosine_trials(E, ids)
    # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    np.testing.assert_allclose(scores, [1, 0, 2 ** -0.5, 0, 2 ** -0.5, 2 ** -0.5])
    assert labels.tolist() == [1, 0, 0, 0, 0, 1]
    assert labels.dtype == np.int64


def test_cosine_trials_subsample_is_deterministic_and_balanced():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(10), 6)  # 60 utterances: 150 target, 1620 non-target pairs
    E = rng.normal(size=(60, 4)) + 3 * rng.normal(size=(10, 4))[ids]
    s1, l1 = cosine_trials(torch.from_numpy(E), torch.from_numpy(ids), max_trials=200, seed=3)
    s2, l2 = cosine_trials(E, ids, max_trials=200, seed=3)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(l1, l2)
    assert s1.size == 200 and l1.sum() == 100
    s3, _ = cosine_trials(E, ids, max_trials=200, seed=4)
    assert not np.array_equal(np.sort(s1), np.sort(s3))
    # every returned score is the cosine of a real pair with the right label
    all_s, all_l = cosine_trials(E, ids)
    assert all_s.size == 60 * 59 // 2 and all_l.sum() == 150
    lookup = {round(s, 12): lab for s, lab in zip(all_s, all_l)}
    assert all(lookup[round(s, 12)] == lab for s, lab in zip(s1, l1))
    assert len(set(np.round(s1, 12))) == 200  # distinct pairs
    assert equal_error_rate(s1, l1)[0] < 0.2  # well-separated speakers


def test_cosine_trials_few_targets_fills_with_non_targets():
    ids = np.array([0, 0, 1, 2, 3, 4, 5, 6])  # one target pair, 27 non-target pairs
    E = np.random.default_rng(0).normal(size=(8, 3))
    s, lab = cosine_trials(E, ids, max_trials=20)
    assert s.size == 20 and lab.sum() == 1


def test_cosine_trials_errors():
    with pytest.raises(ValueError, match="U >= 2"):
        cosine_trials(np.zeros((1, 3)), [0])
    with pytest.raises(ValueError, match="speaker_ids"):
        cosine_trials(np.zeros((3, 3)), [0, 1])
    with pytest.raises(ValueError, match="max_trials"):
        cosine_trials(np.ones((3, 3)), [0, 1, 1], max_trials=0)
