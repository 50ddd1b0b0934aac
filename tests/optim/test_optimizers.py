"""Our optimizers against their torch.optim twins: 100 steps on the same model and data -> same parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepnotes import optim as ours

CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.5, weight_decay=1e-2)),
    ("Adagrad", dict(lr=0.05)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=1e-3, initial_accumulator_value=0.1, eps=1e-6)),
    ("RMSprop", dict(lr=0.005)),
    ("RMSprop", dict(lr=0.005, alpha=0.9, momentum=0.9, weight_decay=1e-3)),
    ("RMSprop", dict(lr=0.005, centered=True, eps=1e-6)),
    ("RMSprop", dict(lr=0.002, centered=True, momentum=0.5)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1)),
]


def _model_and_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(64, 5, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    return model, x, y


def _train(model, opt, x, y, steps: int) -> None:
    for i in range(steps):
        idx = torch.arange(i % 4 * 16, i % 4 * 16 + 16)  # four mini-batches in turn
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_torch_optim_over_100_steps(name, kwargs):
    model, x, y = _model_and_data()
    twin = copy.deepcopy(model)
    _train(model, getattr(ours, name)(model.parameters(), **kwargs), x, y, 100)
    _train(twin, getattr(torch.optim, name)(twin.parameters(), **kwargs), x, y, 100)
    start, _, _ = _model_and_data()
    moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), start.parameters()))
    assert moved > 1e-2  # the test would notice an optimizer that does nothing
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_parameter_groups_with_their_own_lr():
    model, x, y = _model_and_data()
    twin = copy.deepcopy(model)

    def groups(m):
        return [{"params": m[0].parameters(), "lr": 0.1}, {"params": m[2].parameters()}]

    _train(model, ours.SGD(groups(model), lr=0.01, momentum=0.9), x, y, 20)
    _train(twin, torch.optim.SGD(groups(twin), lr=0.01, momentum=0.9), x, y, 20)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
def test_state_dict_round_trip_continues_identically(name):
    kwargs = {"SGD": dict(lr=0.05, momentum=0.9), "RMSprop": dict(lr=0.005, momentum=0.5, centered=True)}.get(
        name, dict(lr=0.01))
    model, x, y = _model_and_data()
    opt = getattr(ours, name)(model.parameters(), **kwargs)
    _train(model, opt, x, y, 10)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _train(model, opt, x, y, 10)

    other, _, _ = _model_and_data(seed=1)
    other.load_state_dict(saved_model)
    opt2 = getattr(ours, name)(other.parameters(), **kwargs)
    opt2.load_state_dict(saved_opt)
    _train(other, opt2, x, y, 10)
    for p, q in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_closure_returns_loss():
    model, x, y = _model_and_data()
    opt = ours.Adam(model.parameters(), lr=0.01)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    assert torch.isfinite(opt.step(closure))


def test_parameters_without_grad_are_left_alone():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = ours.Adam([a, b], lr=0.1)
    (a**2).sum().backward()
    opt.step()
    assert torch.equal(b, torch.ones(3)) and not torch.equal(a, torch.ones(3))
    assert b not in opt.state


@pytest.mark.parametrize("name,kwargs,bad", [
    ("SGD", dict(lr=-1.0), "lr"),
    ("SGD", dict(lr=0.1, momentum=1.5), "momentum"),
    ("SGD", dict(lr=0.1, nesterov=True), "nesterov"),
    ("SGD", dict(lr=0.1, weight_decay=-1), "weight_decay"),
    ("Adagrad", dict(lr_decay=-0.1), "lr_decay"),
    ("Adagrad", dict(eps=-1.0), "eps"),
    ("RMSprop", dict(alpha=1.0), "alpha"),
    ("RMSprop", dict(momentum=-0.1), "momentum"),
    ("Adam", dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    ("Adam", dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    ("AdamW", dict(weight_decay=-0.1), "weight_decay"),
    ("AdamW", dict(lr=0.0), "lr"),
])
def test_bad_hyper_parameter_raises_value_error_naming_it(name, kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        getattr(ours, name)([nn.Parameter(torch.zeros(2))], **kwargs)


def test_adamw_decay_is_decoupled_from_adam_l2():
    """With zero gradient Adam's L2 step is ~lr*sign(θ) (normalized); AdamW's is θ*lr*λ exactly."""
    for cls, expected in [(ours.AdamW, 2.0 * (1 - 0.1 * 0.5)), (ours.Adam, 2.0 - 0.1)]:
        p = nn.Parameter(torch.tensor([2.0]))
        opt = cls([p], lr=0.1, weight_decay=0.5)
        p.grad = torch.zeros(1)
        opt.step()
        torch.testing.assert_close(p.detach(), torch.tensor([expected]), atol=1e-6, rtol=0)
