"""Bad-training-set probabilities: hand-computed tiny cases, a loop reference, and the bound on real data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepnotes.analysis.generalization import (
    bad_probability_stderr,
    hoeffding_union_bound,
    sample_counts,
    simulate,
    threshold_grid,
    threshold_losses,
)

X = torch.tensor([1.0, 2.0, 3.0, 4.0])
Y = torch.tensor([0, 0, 1, 1])


def test_threshold_grid_and_losses_by_hand():
    t = threshold_grid(X, 4)  # K = 2 cell centres of [1, 4]
    torch.testing.assert_close(t, torch.tensor([1.75, 3.25], dtype=torch.float64))
    M = threshold_losses(X, Y, t)
    # h(1.75,+) predicts 0,1,1,1; h(3.25,+) predicts 0,0,0,1; then the flipped ones
    expected = torch.tensor([[0, 0, 1, 1], [1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.float32)
    torch.testing.assert_close(M, expected)


def test_simulate_by_hand():
    M = threshold_losses(X, Y, threshold_grid(X, 4))  # L(h, D_all) = 0.25, 0.25, 0.75, 0.75
    counts = torch.tensor([[2.0, 0, 0, 0],   # D_train = {x0, x0}: losses 0, 0, 1, 1
                           [0, 1, 1, 0],     # {x1, x2}: 0.5 each
                           [0, 1, 0, 0]])    # {x1}: 1, 0, 0, 1
    res = simulate(M, counts)
    torch.testing.assert_close(res.sup_gap, torch.tensor([0.25, 0.25, 0.75], dtype=torch.float64))
    assert res.erm_index.tolist() == [0, 0, 1]  # first hypothesis on ties
    torch.testing.assert_close(res.erm_train, torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(res.erm_all, torch.tensor([0.25, 0.25, 0.25], dtype=torch.float64))
    assert res.best_all == 0.25
    assert res.bad_share(0.2) == 1.0
    assert res.bad_share(0.25) == pytest.approx(1 / 3)  # strictly greater than eps
    assert res.bad_share(0.75) == 0.0


def test_bound_by_hand():
    assert float(hoeffding_union_bound(10, 100, 0.1)) == 1.0  # 20 e^-2 = 2.7 > 1
    assert float(hoeffding_union_bound(10, 500, 0.1)) == pytest.approx(20 * math.exp(-10))
    b = hoeffding_union_bound(2, torch.tensor([0, 1000]), 0.05)
    torch.testing.assert_close(b, torch.tensor([1.0, 4 * math.exp(-5)], dtype=torch.float64))
    assert bad_probability_stderr(0.5, 100) == pytest.approx(0.05)


def test_sample_counts_rows_sum_to_size_and_are_seeded():
    a = sample_counts(7, 5, 50, torch.Generator().manual_seed(0))
    b = sample_counts(7, 5, 50, torch.Generator().manual_seed(0))
    assert a.shape == (50, 7) and torch.equal(a, b)
    assert torch.all(a.sum(1) == 5) and torch.all(a >= 0)


def test_vectorized_matches_a_loop_over_training_sets_and_hypotheses():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, generator=g, dtype=torch.float64)
    y = (x + 0.8 * torch.randn(40, generator=g, dtype=torch.float64) > 0).long()
    t = threshold_grid(x, 12)
    idx = torch.randint(40, (25, 9), generator=g)  # 25 training sets of 9 examples, with replacement
    counts = torch.zeros(25, 40).scatter_add_(1, idx, torch.ones(25, 9))
    res = simulate(threshold_losses(x, y, t), counts)
    hyps = [(float(tk), s) for s in (+1, -1) for tk in t]

    def loss(h, xs, ys):
        tk, s = h
        pred = [(v > tk) if s > 0 else (v <= tk) for v in xs.tolist()]
        return sum(int(p) != int(c) for p, c in zip(pred, ys.tolist())) / len(pred)

    for j in range(25):
        xs, ys = x[idx[j]], y[idx[j]]
        gaps = [abs(loss(h, xs, ys) - loss(h, x, y)) for h in hyps]
        assert float(res.sup_gap[j]) == pytest.approx(max(gaps), abs=1e-12)
        train = [loss(h, xs, ys) for h in hyps]
        assert float(res.erm_train[j]) == pytest.approx(min(train), abs=1e-12)
        assert float(res.erm_all[j]) == pytest.approx(loss(hyps[int(np.argmin(train))], x, y), abs=1e-12)


def test_empirical_probability_of_a_bad_training_set_stays_under_the_bound_on_real_data():
    from vega_datasets import local_data

    d = local_data.seattle_weather()
    x = torch.tensor(d["temp_max"].to_numpy(), dtype=torch.float64)
    y = torch.tensor((d["precipitation"] > 0).to_numpy()).long()
    g = torch.Generator().manual_seed(0)
    trials, eps = 2000, 0.1
    for n in (100, 250, 400):
        counts = sample_counts(len(x), n, trials, g)
        for h in (2, 10, 100):
            p = simulate(threshold_losses(x, y, threshold_grid(x, h)), counts).bad_share(eps)
            bound = float(hoeffding_union_bound(h, n, eps))
            assert p <= bound + 3 * bad_probability_stderr(bound, trials) + 1 / trials, (n, h, p, bound)
    # the share is a real measurement, not zero everywhere: small N makes bad sets common
    counts = sample_counts(len(x), 20, trials, g)
    assert simulate(threshold_losses(x, y, threshold_grid(x, 10)), counts).bad_share(eps) > 0.1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: threshold_grid(X, 3), "even number"),
        (lambda: threshold_grid(X, 0), "even number"),
        (lambda: threshold_grid(torch.ones(4), 4), "two different values"),
        (lambda: threshold_losses(X, Y[:3], torch.tensor([2.0])), "same length"),
        (lambda: threshold_losses(X, torch.tensor([0, 2, 1, 1]), torch.tensor([2.0])), "binary"),
        (lambda: simulate(torch.zeros(4, 2), torch.zeros(3, 5)), "counts"),
        (lambda: simulate(torch.zeros(4, 2), torch.zeros(1, 4)), "at least one example"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_training_sets_cells_and_classes_on_a_toy_population():
    from deepnotes.analysis.generalization import above_bound, bad_training_sets

    x = torch.arange(20, dtype=torch.float64)
    y = (x >= 10).long()  # separable at t = 9.5: the best threshold is perfect
    out = bad_training_sets(x, y, hypotheses=(2, 20), sizes=(5, 200), trials=300, eps=0.2, seed=0)
    assert [c["hypotheses"] for c in out["classes"]] == [2, 20]
    cells = {(c["hypotheses"], c["n"]): c for c in out["cells"]}
    assert set(cells) == {(2, 5), (20, 5), (2, 200), (20, 200)}
    assert out["classes"][0]["best_all_loss"] == 0.0  # the one threshold of |H| = 2 lies mid-range: at 9.5
    assert cells[(20, 200)]["bad_share"] <= cells[(20, 5)]["bad_share"]  # more data: fewer bad sets
    for c in out["cells"]:
        assert c["bound"] == pytest.approx(float(hoeffding_union_bound(c["hypotheses"], c["n"], 0.2)))
        assert c["excess_mean"] >= 0 and not above_bound(c, 300)
    again = bad_training_sets(x, y, hypotheses=(2, 20), sizes=(5, 200), trials=300, eps=0.2, seed=0)
    assert again == out  # seeded
    assert above_bound({"bad_share": 0.5, "bound": 0.01}, 300) and not above_bound({"bad_share": 0.0, "bound": 0.0}, 300)
