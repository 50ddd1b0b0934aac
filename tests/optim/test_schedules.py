"""Schedules against hand-computed values and their torch.optim.lr_scheduler twins."""

from __future__ import annotations

import math

import pytest
import torch

from deepnotes.optim import ConstantLR, CosineDecay, NoamSchedule, StepDecay, WarmupDecay, lr_curve


def _torch_curve(make_scheduler, total: int, lr: float) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant():
    assert lr_curve(ConstantLR(0.3), 5) == [0.3] * 5


def test_step_decay_hand_values_and_steplr_twin():
    s = StepDecay(0.1, step_size=3, gamma=0.5)
    assert [s(i, 10) for i in (0, 2, 3, 5, 6, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])
    twin = _torch_curve(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 20, 0.1)
    assert lr_curve(s, 20) == pytest.approx(twin, rel=1e-12, abs=0)


@pytest.mark.parametrize("min_lr", [0.0, 0.01])
def test_cosine_hand_values_and_cosineannealinglr_twin(min_lr):
    s = CosineDecay(0.1, min_lr=min_lr)
    assert s(0, 100) == pytest.approx(0.1)
    assert s(50, 100) == pytest.approx(min_lr + (0.1 - min_lr) / 2)
    assert s(25, 100) == pytest.approx(min_lr + (0.1 - min_lr) * (1 + math.cos(math.pi / 4)) / 2)
    twin = _torch_curve(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=100, eta_min=min_lr), 100, 0.1)
    assert lr_curve(s, 100) == pytest.approx(twin, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_warmup_then_decay_hand_values(decay):
    s = WarmupDecay(1.0, warmup_steps=4, decay=decay, min_lr=0.0)
    assert [s(i, 14) for i in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert s(4, 14) == pytest.approx(1.0)  # decay starts at the peak
    mid = s(9, 14)  # p = 5/10
    assert mid == pytest.approx(0.5)  # both shapes pass through half the peak half-way
    quarter = s(4 + 10 // 4 + 0, 14)  # step 6: p = 0.2
    expected = 1 - 0.2 if decay == "linear" else (1 + math.cos(math.pi * 0.2)) / 2
    assert quarter == pytest.approx(expected)
    assert s(13, 14) > 0.0


def test_warmup_fraction_and_lambdalr_twin():
    s = WarmupDecay(0.2, warmup_fraction=0.25, decay="cosine", min_lr=0.02)
    assert s.warmup_for(40) == 10
    twin = _torch_curve(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda i: s(i, 40) / 0.2), 40, 0.2)
    assert lr_curve(s, 40) == pytest.approx(twin, rel=1e-12)
    assert max(lr_curve(s, 40)) == pytest.approx(0.2)


def test_noam_hand_values_and_lambdalr_twin():
    s = NoamSchedule(d_model=512, warmup=4000)
    # The paper's schedule: rises linearly, peaks at step n = warmup, then ~ 1/sqrt(n).
    assert s(0, 0) == pytest.approx(512**-0.5 * 1 * 4000**-1.5)
    assert s(3999, 0) == pytest.approx(512**-0.5 * 4000**-0.5) == pytest.approx(s.peak)
    assert s(15999, 0) == pytest.approx(512**-0.5 * 16000**-0.5)
    assert s(3999, 0) > s(3998, 0) and s(3999, 0) > s(4000, 0)
    small = NoamSchedule(d_model=64, warmup=10, factor=2.0)
    twin = _torch_curve(lambda o: torch.optim.lr_scheduler.LambdaLR(
        o, lambda e: 2.0 * 64**-0.5 * min((e + 1) ** -0.5, (e + 1) * 10**-1.5)), 50, 1.0)
    assert lr_curve(small, 50) == pytest.approx(twin, rel=1e-12)


def test_schedule_drives_the_optimizer_like_the_trainer_does():
    """Setting group['lr'] = schedule(step, total) before each step, as Trainer does."""
    from deepnotes.optim import SGD

    p = torch.nn.Parameter(torch.zeros(1))
    opt = SGD([p], lr=1.0)
    s = StepDecay(1.0, step_size=2, gamma=0.5)
    for step in range(4):
        for g in opt.param_groups:
            g["lr"] = s(step, 4)
        p.grad = torch.ones(1)
        opt.step()
    assert p.item() == pytest.approx(-(1 + 1 + 0.5 + 0.5))


@pytest.mark.parametrize("make,bad", [
    (lambda: ConstantLR(0.0), "lr"),
    (lambda: StepDecay(0.1, step_size=0), "step_size"),
    (lambda: StepDecay(0.1, step_size=2, gamma=1.5), "gamma"),
    (lambda: CosineDecay(0.1, min_lr=0.5), "min_lr"),
    (lambda: WarmupDecay(0.1, warmup_fraction=1.0), "warmup_fraction"),
    (lambda: WarmupDecay(0.1, decay="exp"), "decay"),
    (lambda: NoamSchedule(512, warmup=0), "warmup"),
    (lambda: NoamSchedule(0, warmup=10), "d_model"),
])
def test_bad_arguments_raise(make, bad):
    with pytest.raises(ValueError, match=bad):
        make()


def test_lr_curve_rejects_empty_run():
    with pytest.raises(ValueError, match="total_steps"):
        lr_curve(ConstantLR(0.1), 0)
