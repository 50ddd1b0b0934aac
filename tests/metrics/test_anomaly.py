"""Anomaly metrics: AUROC against its pair-counting definition, the one-class targets, and the PCA score against
a projection computed by hand with numpy's SVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepnotes.metrics.anomaly import auroc, one_class_targets, pca_reconstruction_scores


def _pair_auroc(s: np.ndarray, t: np.ndarray) -> float:
    pos, neg = s[t], s[~t]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auroc_equals_the_share_of_correctly_ordered_pairs_with_ties_halved():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    t = rng.random(200) < 0.3
    assert auroc(s, t) == pytest.approx(_pair_auroc(s, t))
    assert auroc([0.1, 0.2, 0.9, 0.8], [False, False, True, True]) == 1.0
    assert auroc(torch.tensor([0.9, 0.8, 0.1]), torch.tensor([False, False, True])) == 0.0


def test_one_class_targets():
    assert one_class_targets(torch.tensor([0, 3, 3, 1]), 3).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="normal_class 7 does not occur"):
        one_class_targets([0, 1], 7)


def test_pca_score_is_the_residual_off_the_principal_subspace():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(3, 10))
    train = rng.normal(size=(500, 3)) @ basis + 0.01 * rng.normal(size=(500, 10))
    x = rng.normal(size=(20, 10))
    scores = pca_reconstruction_scores(train, x, 3)
    mu = train.mean(0)
    _, _, vt = np.linalg.svd(train - mu, full_matrices=False)
    w = vt[:3].T  # (10, 3)
    recon = mu + (x - mu) @ w @ w.T
    assert np.allclose(scores, ((x - recon) ** 2).sum(1), rtol=1e-6)
    # points of the subspace score ~0, points off it score high
    on = rng.normal(size=(5, 3)) @ basis
    assert pca_reconstruction_scores(train, on, 3).max() < 0.01 < scores.min()
    # a share of the variance picks the number of directions
    assert np.allclose(pca_reconstruction_scores(train, x, 0.99), scores, rtol=1e-3)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="same length"):
        auroc([1, 2], [True])
    with pytest.raises(ValueError, match="both normal"):
        auroc([1, 2], [True, True])
    with pytest.raises(ValueError, match="finite"):
        auroc([1, np.nan], [True, False])
    with pytest.raises(ValueError, match="same width"):
        pca_reconstruction_scores(np.zeros((5, 3)), np.zeros((2, 4)), 1)
    with pytest.raises(ValueError, match="n_components"):
        pca_reconstruction_scores(np.zeros((5, 3)), np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="n_components"):
        pca_reconstruction_scores(np.zeros((5, 3)), np.zeros((2, 3)), 1.5)
