"""StableNet pieces: RFF against scikit-learn's RBF kernel, weighted covariance against numpy.cov, the
decorrelation loss on independent and dependent features, learned weights on a correlated toy, the memory's update."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import rbf_kernel

from deepnotes.nn.stable import (FeatureMemory, decorrelation_loss, learn_sample_weights, per_dimension_rff,
                                 random_fourier_features, weighted_cross_covariance)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0])
def test_rff_approximates_rbf_kernel_better_with_more_features(sigma):
    x = torch.randn(40, 3, generator=_gen(0), dtype=torch.float64) * sigma
    exact = rbf_kernel(x.numpy(), gamma=1 / (2 * sigma**2))
    errors = {}
    for d in (200, 20000):
        z = random_fourier_features(x, d, sigma, _gen(1))
        assert z.shape == (40, d)
        errors[d] = np.abs((z @ z.T).numpy() - exact).max()
    assert errors[20000] < 0.05
    assert errors[20000] < errors[200] / 4  # error ~ 1 / sqrt(D): 10x fewer at 100x the features


def test_rff_same_seed_maps_every_batch_alike():
    x = torch.randn(10, 4, generator=_gen(0))
    whole = random_fourier_features(x, 64, 1.5, _gen(3))
    torch.testing.assert_close(random_fourier_features(x[:4], 64, 1.5, _gen(3)), whole[:4])


def test_per_dimension_rff_is_the_scalar_rbf_map():
    # mean over many functions of u_k(a) u_k(b) -> exp(-(a - b)^2 / (2 sigma^2)), dimension by dimension
    z = torch.tensor([[0.0, 1.0], [0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    u = per_dimension_rff(z, num_functions=50000, sigma=0.8, generator=_gen(0))
    assert u.shape == (3, 2, 50000)
    assert u.abs().max() <= math.sqrt(2) + 1e-12
    for i in range(2):
        approx = (u[:, i] @ u[:, i].T / 50000).numpy()
        exact = rbf_kernel(z[:, i : i + 1].numpy(), gamma=1 / (2 * 0.8**2))
        np.testing.assert_allclose(approx, exact, atol=0.02)


def test_weighted_cross_covariance_equals_numpy_cov_with_aweights():
    g = _gen(0)
    u = torch.randn(30, 3, generator=g, dtype=torch.float64)
    v = torch.randn(30, 2, generator=g, dtype=torch.float64) + u[:, :2]
    w = torch.rand(30, generator=g, dtype=torch.float64) * 3
    ref = np.cov(np.hstack([u.numpy(), v.numpy()]).T, aweights=w.numpy(), bias=True)[:3, 3:]
    np.testing.assert_allclose(weighted_cross_covariance(u, v, w).numpy(), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(weighted_cross_covariance(u, v, 7 * w).numpy(), ref, rtol=1e-12, atol=1e-14)
    plain = np.cov(np.hstack([u.numpy(), v.numpy()]).T, bias=True)[:3, 3:]
    np.testing.assert_allclose(weighted_cross_covariance(u, v).numpy(), plain, rtol=1e-12, atol=1e-14)


def test_weighted_cross_covariance_zero_weights_drop_samples_and_gradients_flow():
    g = _gen(1)
    u, v = torch.randn(20, 2, generator=g, dtype=torch.float64), torch.randn(20, 3, generator=g, dtype=torch.float64)
    w = torch.cat([torch.rand(12, generator=g, dtype=torch.float64) + 0.1, torch.zeros(8, dtype=torch.float64)])
    torch.testing.assert_close(weighted_cross_covariance(u, v, w), weighted_cross_covariance(u[:12], v[:12], w[:12]))
    positive = (w + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lambda w: weighted_cross_covariance(u, v, w), (positive,))


@pytest.mark.parametrize(("u", "v", "w", "match"), [
    (torch.randn(5, 2), torch.randn(4, 2), None, "same number of samples"),
    (torch.randn(5), torch.randn(5, 2), None, r"u must be a float tensor of shape \(N, C\)"),
    (torch.randn(5, 2), torch.randn(5, 2), torch.ones(4), r"weights must be a tensor of shape \(5,\)"),
    (torch.randn(5, 2), torch.randn(5, 2), -torch.ones(5), ">= 0"),
    (torch.randn(5, 2), torch.randn(5, 2), torch.zeros(5), "positive sum"),
])
def test_weighted_cross_covariance_errors(u, v, w, match):
    with pytest.raises(ValueError, match=match):
        weighted_cross_covariance(u, v, w)


def test_rff_errors():
    with pytest.raises(ValueError, match="num_features"):
        random_fourier_features(torch.randn(3, 2), 0)
    with pytest.raises(ValueError, match="sigma"):
        random_fourier_features(torch.randn(3, 2), 8, sigma=0.0)
    with pytest.raises(ValueError, match="num_functions"):
        per_dimension_rff(torch.randn(3, 2), num_functions=0)
    with pytest.raises(ValueError, match="features must be a float tensor"):
        per_dimension_rff(torch.ones(3, 2, dtype=torch.long))


def test_decorrelation_loss_is_the_sum_over_pairs_of_squared_frobenius_norms():
    g = _gen(0)
    z = torch.randn(50, 4, generator=g, dtype=torch.float64)
    w = torch.rand(50, generator=g, dtype=torch.float64)
    u = per_dimension_rff(z, 3, 1.0, _gen(5))  # the same draw as inside decorrelation_loss below
    brute = sum(weighted_cross_covariance(u[:, i], u[:, j], w).pow(2).sum() for i in range(4) for j in range(i + 1, 4))
    torch.testing.assert_close(decorrelation_loss(z, w, 3, 1.0, _gen(5)), brute)


def test_decorrelation_loss_zero_when_independent_positive_when_dependent():
    a = torch.randn(4000, 3, generator=_gen(0), dtype=torch.float64)
    linear = torch.stack([a[:, 0], a[:, 0] + 0.3 * a[:, 1], a[:, 2]], 1)
    squared = torch.stack([a[:, 0], a[:, 0] ** 2, a[:, 2]], 1)  # uncorrelated with a[:, 0], but dependent
    cov_linear = weighted_cross_covariance(linear[:, :1], linear[:, 1:2]).item()
    cov_squared = weighted_cross_covariance(squared[:, :1], squared[:, 1:2]).item()
    assert abs(cov_squared) < 0.2 * cov_linear  # the plain covariance barely sees x vs x^2 (0 in expectation)
    for seed in range(3):  # three RFF draws of 10 functions per dimension
        independent = decorrelation_loss(a, None, 10, 1.0, _gen(seed)).item()
        assert independent < 0.03  # sampling error only, ~ n_F^2 pairs / N
        assert decorrelation_loss(linear, None, 10, 1.0, _gen(seed)).item() > 20 * independent
        assert decorrelation_loss(squared, None, 10, 1.0, _gen(seed)).item() > 20 * independent


def _correlated_toy(n: int = 400, majority: float = 0.8) -> tuple[torch.Tensor, int]:
    """x2 = x1 + noise for the first ``majority`` of samples, x2 independent of x1 for the rest."""
    g = _gen(0)
    m = int(majority * n)
    x1, noise, other = (torch.randn(n, generator=g) for _ in range(3))
    x2 = torch.cat([x1[:m] + 0.3 * noise[:m], other[m:]])
    return torch.stack([x1, x2], 1), m


def test_learned_weights_decorrelate_and_upweight_the_minority():
    z, m = _correlated_toy()
    w = learn_sample_weights(z, steps=20, lr=0.1, generator=_gen(5))
    assert w.shape == (400,) and not w.requires_grad and (w > 0).all()
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    before = decorrelation_loss(z, None, 5, 1.0, _gen(7)).item()  # a fresh RFF draw, not the one optimised
    after = decorrelation_loss(z, w, 5, 1.0, _gen(7)).item()
    assert after < before / 4, (before, after)
    assert w[m:].mean() > 1.5 * w[:m].mean()  # the independent minority counts more
    # a penalty on mean(w^2) keeps the weights closer to uniform
    w_pen = learn_sample_weights(z, steps=20, lr=0.1, weight_penalty=1.0, generator=_gen(5))
    assert (w_pen**2).mean() < (w**2).mean()
    assert torch.equal(learn_sample_weights(z, steps=0), torch.ones(400))


def test_learned_weights_use_the_global_memory():
    z, m = _correlated_toy()
    # the saved global rows are the independent minority, fixed at weight 1: the batch (the correlated majority)
    # then needs less reweighting than alone
    alone = learn_sample_weights(z[:m], steps=20, generator=_gen(5))
    with_memory = learn_sample_weights(z[:m], steps=20, generator=_gen(5), global_features=z[m:],
                                       global_weights=torch.ones(400 - m))
    assert with_memory.shape == (m,)
    torch.testing.assert_close(with_memory.mean(), torch.tensor(1.0))
    assert not torch.allclose(alone, with_memory)
    with pytest.raises(ValueError, match="both global_features and global_weights"):
        learn_sample_weights(z, global_features=z)
    with pytest.raises(ValueError, match="global_features must be"):
        learn_sample_weights(z, global_features=z[:, :1], global_weights=torch.ones(400))
    with pytest.raises(ValueError, match="lr"):
        learn_sample_weights(z, lr=0)
    with pytest.raises(ValueError, match="steps"):
        learn_sample_weights(z, steps=-1)


def test_feature_memory_update_rule_on_hand_values():
    memory = FeatureMemory(size=2, num_features=1, alphas=(0.9, 0.3))
    assert memory.global_features is None and memory.global_weights is None
    memory.update(torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 1.0]))  # empty rows: copied in
    torch.testing.assert_close(memory.global_features, torch.tensor([[1.0], [2.0], [1.0], [2.0]]))
    memory.update(torch.tensor([[3.0], [5.0]]), torch.tensor([2.0, 0.5]))
    # warm-up: alpha_eff = min(alpha, 1/2): 0.5 for the first group, 0.3 for the second
    torch.testing.assert_close(memory.features[0, :, 0], torch.tensor([2.0, 3.5]))
    torch.testing.assert_close(memory.weights[0], torch.tensor([1.5, 0.75]))
    torch.testing.assert_close(memory.features[1, :, 0], torch.tensor([0.3 * 1 + 0.7 * 3, 0.3 * 2 + 0.7 * 5]))
    torch.testing.assert_close(memory.weights[1], torch.tensor([0.3 * 1 + 0.7 * 2, 0.3 * 1 + 0.7 * 0.5]))
    memory.update(torch.tensor([[0.0]]), torch.tensor([4.0]))  # a smaller batch updates the first row only
    torch.testing.assert_close(memory.features[0, :, 0], torch.tensor([2.0 * 2 / 3, 3.5]))
    torch.testing.assert_close(memory.weights[0], torch.tensor([1.5 * 2 / 3 + 4 / 3, 0.75]))
    assert memory.counts.tolist() == [3, 2]


def test_feature_memory_without_warmup_and_partial_rows():
    memory = FeatureMemory(size=3, num_features=2, alphas=(0.9,), warmup=False)
    memory.update(torch.ones(2, 2), torch.ones(2))
    assert memory.global_features.shape == (2, 2)  # the unwritten third row is left out
    memory.update(torch.zeros(3, 2), 2 * torch.ones(3))
    torch.testing.assert_close(memory.global_features, torch.tensor([[0.9, 0.9], [0.9, 0.9], [0.0, 0.0]]))
    torch.testing.assert_close(memory.global_weights, torch.tensor([1.1, 1.1, 2.0]))


def test_feature_memory_state_dict_round_trip():
    memory = FeatureMemory(size=4, num_features=3, alphas=(0.8, 0.5))
    g = _gen(0)
    for _ in range(3):
        memory.update(torch.randn(4, 3, generator=g), torch.rand(4, generator=g) + 0.5)
    fresh = FeatureMemory(size=4, num_features=3, alphas=(0.8, 0.5))
    fresh.load_state_dict(memory.state_dict())
    assert set(memory.state_dict()) == {"features", "weights", "counts"}
    torch.testing.assert_close(fresh.global_features, memory.global_features)
    torch.testing.assert_close(fresh.global_weights, memory.global_weights)
    assert torch.equal(fresh.counts, memory.counts)
    x, w = torch.randn(4, 3, generator=g), torch.rand(4, generator=g) + 0.5
    memory.update(x, w)
    fresh.update(x, w)
    torch.testing.assert_close(fresh.global_features, memory.global_features)


def test_feature_memory_errors():
    with pytest.raises(ValueError, match="alphas"):
        FeatureMemory(4, 2, alphas=(1.0,))
    with pytest.raises(ValueError, match="alphas"):
        FeatureMemory(4, 2, alphas=())
    memory = FeatureMemory(2, 3)
    with pytest.raises(ValueError, match=r"B <= size = 2"):
        memory.update(torch.randn(3, 3), torch.ones(3))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        memory.update(torch.randn(2, 4), torch.ones(2))
    with pytest.raises(ValueError, match="positive tensor"):
        memory.update(torch.randn(2, 3), torch.zeros(2))
