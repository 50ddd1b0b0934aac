"""Tests for deepnotes.metrics.classification: confusion matrix and mistakes-first order."""

import numpy as np
import pytest
import torch

from deepnotes.metrics import confusion_matrix, mistakes_first_order


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], num_classes=3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_accepts_tensors_and_unseen_classes():
    cm = confusion_matrix(torch.tensor([1, 1]), torch.tensor([1, 0]), num_classes=4)
    assert cm.shape == (4, 4) and cm.sum() == 2 and cm[1, 1] == 1 and cm[1, 0] == 1


def test_confusion_matrix_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    true = rng.integers(0, 7, size=500)
    pred = np.where(rng.random(500) < 0.6, true, rng.integers(0, 7, size=500))
    ours = confusion_matrix(true, pred, num_classes=7)
    ref = metrics.confusion_matrix(true, pred, labels=list(range(7)))
    np.testing.assert_array_equal(ours, ref)


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], num_classes=2)
    with pytest.raises(ValueError, match="pred holds labels"):
        confusion_matrix([0, 1], [0, 2], num_classes=2)
    with pytest.raises(ValueError, match="true holds labels"):
        confusion_matrix([-1, 1], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix([0], [0], num_classes=0)
    with pytest.raises(ValueError, match="true must be 1-D"):
        confusion_matrix([[0]], [0], num_classes=2)


def test_mistakes_first_order_hand_computed():
    true = [3, 1, 4, 1, 5, 9, 2]
    pred = [3, 7, 4, 1, 0, 9, 6]
    # mistakes at 1, 4, 6 (in original order), then correct 0, 2, 3, 5
    assert mistakes_first_order(true, pred).tolist() == [1, 4, 6, 0, 2, 3, 5]
    assert mistakes_first_order([0, 1], [0, 1]).tolist() == [0, 1]
    assert mistakes_first_order([], []).tolist() == []
    with pytest.raises(ValueError, match="same length"):
        mistakes_first_order([0, 1], [0])
