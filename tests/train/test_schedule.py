import math

import pytest

from deepnotes.train.schedule import lr_at


def test_constant_and_step():
    assert [lr_at(s, 8, 0.1, "constant") for s in (0, 7)] == [0.1, 0.1]
    got = [lr_at(s, 9, 1.0, "step") for s in range(9)]  # progress s/8: >=0.5 from s=4, >=0.75 from s=6
    assert got == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.01])


def test_onecycle_endpoints_and_peak():
    total, warm = 100, 0.2
    lrs = [lr_at(s, total, 0.4, "onecycle", warm) for s in range(total)]
    assert lrs[0] == pytest.approx(0.4 / 25)
    assert max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) == 20
    assert lrs[-1] == pytest.approx(0.4 / 1e4)
    # cosine half-way through the decay: (lr + end) / 2
    mid = 20 + (total - 1 - 20) / 2
    assert lr_at(int(mid), total, 0.4, "onecycle", warm) == pytest.approx((0.4 + 4e-5) / 2, rel=0.02)


def test_cosine_hand_computed():
    assert lr_at(0, 11, 1.0, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_at(5, 11, 1.0, "cosine", 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 11)))
    # with a floor: min_lr + (lr - min_lr) (1 + cos(pi t)) / 2, from lr down towards min_lr
    assert lr_at(5, 11, 1.0, "cosine", 0.0, min_lr=0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 11)))
    assert lr_at(0, 11, 1.0, "cosine", 0.0, min_lr=0.1) == pytest.approx(1.0)
    assert lr_at(10, 11, 1.0, "cosine", 0.0, min_lr=0.1) > 0.1


def test_errors():
    with pytest.raises(ValueError, match="unknown schedule 'exp'"):
        lr_at(0, 10, 0.1, "exp")
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(0, 0, 0.1, "constant")


def test_triangular_hand_computed():
    total, warm = 101, 0.2  # warm-up over updates 0-20.2, decay over the remaining 80.8 to update 100
    lrs = [lr_at(s, total, 2.0, "triangular", warm) for s in range(total)]
    assert lrs[0] == pytest.approx(0.4)  # 0.2 lr
    assert lrs[10] == pytest.approx(0.4 + 1.6 * 10 / 20.2)  # linear rise
    assert lrs[20] == pytest.approx(0.4 + 1.6 * 20 / 20.2)  # last update before the peak at 20.2
    assert lrs[21] == pytest.approx(2.0 + (0.14 - 2.0) * (21 - 20.2) / 79.8)  # first after it: linear decay
    assert lrs[-1] == pytest.approx(0.14)  # 0.07 lr at the last update
    assert all(a > b for a, b in zip(lrs[21:], lrs[22:]))  # strictly falling after the peak
