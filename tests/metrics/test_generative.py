"""FID, the Inception-style score, the class histogram, nearest neighbours and classifier features: hand cases, the
scipy reference for the matrix square root, invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from deepnotes.metrics.generative import (
    class_histogram,
    classifier_features,
    fid,
    frechet_distance,
    gaussian_stats,
    inception_score,
    memorization_stats,
    nearest_neighbours,
    sqrtm_psd,
    trace_sqrt_product,
)


def random_cov(c: int, rank: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(c, rank))
    return a @ a.T / rank


# ------------------------------------------------------------------------------------------------ FID
def test_gaussian_stats_match_numpy():
    x = np.random.default_rng(0).normal(size=(50, 4))
    mu, sigma = gaussian_stats(torch.from_numpy(x).float())
    assert np.allclose(mu, x.mean(0), atol=1e-6) and np.allclose(sigma, np.cov(x, rowvar=False), atol=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))


@pytest.mark.parametrize("rank", [8, 3])  # full rank and singular (rank-deficient, as with few samples)
def test_sqrtm_psd_equals_scipy(rank):
    s = random_cov(8, rank, 1)
    r = sqrtm_psd(s)
    ref = np.real(scipy.linalg.sqrtm(s))
    assert np.allclose(r, r.T) and np.allclose(r @ r, s, atol=1e-8)
    assert np.allclose(r, ref, atol=1e-5)


@pytest.mark.parametrize("rank2", [6, 2])
def test_trace_sqrt_product_equals_scipy_on_the_unsymmetric_product(rank2):
    s1, s2 = random_cov(6, 6, 2), random_cov(6, rank2, 3)
    ref = np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2)))  # S1 S2 is not symmetric: scipy's general Schur route
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-6)
    assert trace_sqrt_product(s2, s1) == pytest.approx(ref, rel=1e-6)  # Tr is symmetric in S1, S2


def test_frechet_distance_equals_the_scipy_formula():
    rng = np.random.default_rng(4)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = random_cov(5, 5, 5), random_cov(5, 5, 6)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_hand_cases():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)
    # diagonal covariances: sum over coordinates of (sqrt(a) - sqrt(b))^2
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    assert frechet_distance(np.zeros(3), a, np.zeros(3), b) == pytest.approx(1 + 0 + 4)
    # a pure shift of the mean by d: FID = ||d||^2 whatever the (shared) covariance
    s = random_cov(4, 4, 7)
    assert frechet_distance(np.zeros(4), s, np.full(4, 0.5), s) == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(ValueError, match="same size"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_fid_of_identical_sets_is_zero_and_grows_with_a_shift():
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(0))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid(x, x + 1.0) == pytest.approx(6.0, rel=1e-6)  # ||(1, ..., 1)||^2; covariances equal
    y = torch.randn(300, 6, generator=torch.Generator().manual_seed(1))
    assert 0 < fid(x, y) < fid(x, y * 3)  # same mean, wider spread: farther


# ------------------------------------------------------------------------------------------------ Inception score
def test_inception_score_hand_cases():
    k = 10
    one_hot_uniform = torch.eye(k).repeat(7, 1)  # every sample certain, every class equally often
    assert inception_score(one_hot_uniform)[0] == pytest.approx(k, rel=1e-9)
    one_class = torch.zeros(50, k)
    one_class[:, 3] = 1  # collapse: every sample the same class
    assert inception_score(one_class)[0] == pytest.approx(1.0)
    assert inception_score(torch.full((20, k), 1 / k))[0] == pytest.approx(1.0)  # no sample is recognisable
    # two classes, p(y|x) = (0.9, 0.1) and (0.1, 0.9) half each: p(y) uniform, KL = log 2 - H(0.9)
    p = torch.tensor([[0.9, 0.1], [0.1, 0.9]], dtype=torch.float64).repeat(5, 1)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert inception_score(p)[0] == pytest.approx(math.exp(math.log(2) - h), rel=1e-9)


def test_inception_score_splits_and_errors():
    p = torch.cat([torch.eye(4).repeat(5, 1), torch.eye(4)[[0]].repeat(20, 1)])  # first half diverse, second not
    mean, std = inception_score(p, splits=2)
    assert mean == pytest.approx((4 + 1) / 2) and std == pytest.approx(1.5)
    with pytest.raises(ValueError, match="summing to 1"):
        inception_score(torch.ones(3, 2))
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.eye(3), splits=4)


# ------------------------------------------------------------------------------------------------ histogram
def test_class_histogram_hand_cases():
    h = class_histogram(torch.arange(10).repeat(3), 10)
    assert h["counts"] == [3] * 10 and h["covered"] == 10 and h["tv"] == pytest.approx(0.0)
    assert h["effective_classes"] == pytest.approx(10.0) and h["entropy"] == pytest.approx(math.log(10))
    collapsed = class_histogram(torch.full((40,), 2), 10)
    assert collapsed["covered"] == 1 and collapsed["effective_classes"] == pytest.approx(1.0)
    assert collapsed["tv"] == pytest.approx(0.9)
    # 100 samples: class 0 has 91, classes 1-9 one each (a share of 0.01, a tenth of the fair 0.1)
    pred = torch.tensor([0] * 91 + list(range(1, 10)))
    assert class_histogram(pred, 10, min_share=0.05)["covered"] == 10
    assert class_histogram(pred, 10, min_share=0.2)["covered"] == 1
    ref = class_histogram(pred, 10, reference=[0.91] + [0.01] * 9)
    assert ref["tv"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="class indices"):
        class_histogram(torch.tensor([0, 10]), 10)


# ------------------------------------------------------------------------------------------------ neighbours
def test_nearest_neighbours_equal_brute_force():
    g = torch.Generator().manual_seed(0)
    q, r = torch.rand(37, 1, 5, 5, generator=g), torch.rand(101, 1, 5, 5, generator=g)
    d, i = nearest_neighbours(q, r, k=3, batch_size=8)
    full = torch.cdist(q.flatten(1).double(), r.flatten(1).double())  # (37, 101)
    ref_d, ref_i = full.topk(3, dim=1, largest=False)
    assert torch.equal(i, ref_i) and torch.allclose(d.double(), ref_d, atol=1e-4)
    d0, i0 = nearest_neighbours(r[:5], r)  # a reference image is its own nearest neighbour
    assert torch.equal(i0[:, 0], torch.arange(5)) and float(d0.max()) < 1e-2
    with pytest.raises(ValueError, match="same size"):
        nearest_neighbours(torch.zeros(2, 3), torch.zeros(2, 4))


def test_memorization_stats():
    m = memorization_stats(torch.tensor([0.0, 0.0, 4.0]), torch.tensor([2.0, 4.0, 6.0]))
    assert m["sample_median"] == 0.0 and m["real_median"] == 4.0 and m["ratio"] == 0.0
    assert m["share_closer"] == pytest.approx(2 / 3)
    assert memorization_stats(torch.tensor([3.0, 5.0]), torch.tensor([2.0, 4.0]))["share_closer"] == 0.0


# ------------------------------------------------------------------------------------------------ features
def test_classifier_features_are_the_last_linear_layers_input():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Dropout(0.5), nn.Linear(7, 3)).train()
    x = torch.randn(11, 3, 4)
    feats, logits = classifier_features(net, x, batch_size=4)
    assert feats.shape == (11, 7) and logits.shape == (11, 3)
    with torch.no_grad():
        ref = torch.relu(net[1](x.flatten(1)))  # eval mode: dropout off
    assert torch.allclose(feats, ref, atol=1e-6) and torch.allclose(logits, net[4](ref), atol=1e-6)
    assert net.training  # the mode is restored
    with pytest.raises(ValueError, match="nn.Linear"):
        classifier_features(nn.Sequential(nn.Flatten(), nn.Identity()).requires_grad_(), x, device="cpu")
