"""Gradient reversal, Ganin's schedules and DANN: hand values, torch losses, alignment on rotated two moons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import make_moons
from torch import nn

from deepnotes.nn.domain import (DANN, DigitFeatureExtractor, GradientReversal, GradientReversalLayer, dann_losses,
                                 dann_lr, grad_reverse, grl_lambda)


@pytest.mark.parametrize("lambd", [0.0, 0.3, 1.0, 2.5])
def test_grad_reverse_is_identity_forward_and_minus_lambda_backward(lambd):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 5, generator=g, dtype=torch.float64)
    y = grad_reverse(x, lambd)
    torch.testing.assert_close(y, x.detach(), rtol=0, atol=0)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -lambd * upstream, rtol=0, atol=0)
    if lambd == 0.0:
        assert torch.count_nonzero(x.grad) == 0


def test_grad_reverse_in_a_chain_and_lambda_is_a_constant():
    # d/dx of sum(w * R(x)^2) = -lambd * 2 w x; without the reversal it would be +2 w x
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, 1.0, 2.0])
    lambd = torch.tensor(0.7, requires_grad=True)  # even a tensor that asks for one gets no gradient
    (w * GradientReversal.apply(x, lambd) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * 2 * w * x.detach())
    assert lambd.grad is None
    layer = GradientReversalLayer(0.7)
    x.grad = None
    (w * layer(x) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * 2 * w * x.detach())
    layer.lambd = 0.2
    x.grad = None
    (w * layer(x) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, -0.2 * 2 * w * x.detach())
    assert "lambd=0.2" in repr(layer)
    y = grad_reverse(x.detach(), 1.0)
    y.mul_(0)  # the output is a copy: an in-place op after the layer leaves the input alone
    assert torch.equal(x.detach(), torch.tensor([1.0, -2.0, 3.0]))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "1"])
def test_reversal_rejects_bad_lambda(bad):
    with pytest.raises(ValueError, match="lambd"):
        grad_reverse(torch.ones(2), bad)
    layer = GradientReversalLayer()
    with pytest.raises(ValueError, match="lambd"):
        layer.lambd = bad


def test_grl_lambda_schedule():
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert grl_lambda(1.0) == pytest.approx(0.9999092, abs=1e-7)
    assert grl_lambda(0.1) == pytest.approx(math.tanh(0.5))  # 2 / (1 + e^-x) - 1 = tanh(x / 2)
    assert grl_lambda(0.25, gamma=4.0) == pytest.approx(math.tanh(0.5))
    values = [grl_lambda(p) for p in np.linspace(0, 1, 11)]
    assert values == sorted(values)


def test_dann_lr_schedule():
    assert dann_lr(0.0) == 0.01
    assert dann_lr(1.0) == pytest.approx(0.01 / 11 ** 0.75)
    assert dann_lr(1.0) == pytest.approx(0.0016556, rel=1e-4)  # 11^0.75 = 6.0401
    assert dann_lr(0.5, lr0=0.1, alpha=2.0, beta=1.0) == pytest.approx(0.05)


@pytest.mark.parametrize("fn", [grl_lambda, dann_lr])
@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan")])
def test_schedules_reject_progress_outside_unit_interval(fn, p):
    with pytest.raises(ValueError, match=r"p \(training progress"):
        fn(p)


def test_schedules_reject_bad_constants():
    with pytest.raises(ValueError, match="gamma"):
        grl_lambda(0.5, gamma=0)
    with pytest.raises(ValueError, match="lr0"):
        dann_lr(0.5, lr0=-1)
    with pytest.raises(ValueError, match="beta"):
        dann_lr(0.5, beta=-1)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_dann_for_digits_shapes_and_feature_dim(in_channels):
    torch.manual_seed(0)
    model = DANN.for_digits(in_channels=in_channels, num_classes=10)
    x = torch.rand(5, in_channels, 28, 28)
    logits, domain = model(x)
    assert logits.shape == (5, 10) and domain.shape == (5,)
    assert model.feature_extractor(x).shape == (5, DigitFeatureExtractor.feature_dim) == (5, 768)
    with pytest.raises(ValueError, match=r"\(B, 3, 28, 28\)"):
        DigitFeatureExtractor(3)(torch.rand(2, 3, 32, 32))


def test_dann_losses_match_torch_and_reverse_only_the_feature_gradient():
    torch.manual_seed(0)
    model = DANN.for_digits(in_channels=1, num_classes=4, hidden=8)
    g = torch.Generator().manual_seed(1)
    xs, xt = torch.rand(6, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    ys = torch.randint(0, 4, (6,), generator=g)
    out = dann_losses(model, xs, ys, xt, lambd=0.5)
    logits_s = model.label_predictor(model.feature_extractor(xs))
    dom = torch.cat([model.domain_classifier(model.feature_extractor(xs)),
                     model.domain_classifier(model.feature_extractor(xt))]).squeeze(1)
    labels = torch.tensor([0.0] * 6 + [1.0] * 4)
    torch.testing.assert_close(out["label"], F.cross_entropy(logits_s, ys))
    torch.testing.assert_close(out["domain"], F.binary_cross_entropy_with_logits(dom, labels))
    torch.testing.assert_close(out["total"], out["label"] + out["domain"])
    torch.testing.assert_close(out["domain_accuracy"], ((dom > 0).float() == labels).float().mean())

    # gradients: G_d and G_y as for the plain losses; G_f gets grad(L_y) - lambd * grad(L_d)
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(out["total"], list(params.values()))
    got = dict(zip(params, grads))
    label_grads = dict(zip(params, torch.autograd.grad(F.cross_entropy(logits_s, ys), list(params.values()),
                                                       allow_unused=True)))
    domain_grads = dict(zip(params, torch.autograd.grad(F.binary_cross_entropy_with_logits(dom, labels),
                                                        list(params.values()), allow_unused=True)))
    for name in params:
        if name.startswith("feature_extractor"):
            expected = label_grads[name] - 0.5 * domain_grads[name]
        elif name.startswith("label_predictor"):
            expected = label_grads[name]
        else:
            expected = domain_grads[name]
        torch.testing.assert_close(got[name], expected, msg=name)


def test_target_entropy_term_matches_hand_computation():
    torch.manual_seed(0)
    model = DANN.for_digits(in_channels=1, num_classes=4, hidden=8)
    g = torch.Generator().manual_seed(2)
    xs, xt = torch.rand(5, 1, 28, 28, generator=g), torch.rand(3, 1, 28, 28, generator=g)
    ys = torch.randint(0, 4, (5,), generator=g)
    plain = dann_losses(model, xs, ys, xt, lambd=1.0)
    out = dann_losses(model, xs, ys, xt, lambd=1.0, entropy_weight=0.3)
    p = F.softmax(model.label_predictor(model.feature_extractor(xt)), dim=-1)
    entropy = -(p * p.log()).sum(dim=-1).mean()
    torch.testing.assert_close(out["entropy"], entropy)
    torch.testing.assert_close(out["total"], plain["total"] + 0.3 * entropy)
    assert 0 < float(entropy.detach()) <= math.log(4) + 1e-6
    with pytest.raises(ValueError, match="entropy_weight"):
        dann_losses(model, xs, ys, xt, 1.0, entropy_weight=-1.0)


def test_dann_losses_errors():
    model = DANN.for_digits(in_channels=1, num_classes=3, hidden=4)
    xs, ys = torch.rand(2, 1, 28, 28), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="y_source"):
        dann_losses(model, xs, torch.tensor([0]), xs, 1.0)
    with pytest.raises(ValueError, match="same shape after the batch"):
        dann_losses(model, xs, ys, torch.rand(2, 3, 28, 28), 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        dann_losses(model, xs, ys, xs[:0], 1.0)
    with pytest.raises(ValueError, match="lambd"):
        dann_losses(model, xs, ys, xs, -1.0)
    bad = DANN(nn.Identity(), nn.Linear(4, 2), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="one logit per example"):
        bad(torch.rand(3, 4))


def _moons(seed: int, angle_deg: float, n: int = 300):
    xs, ys = make_moons(n, noise=0.1, random_state=seed)
    xt, yt = make_moons(n, noise=0.1, random_state=seed + 1)
    xs, xt = xs - xs.mean(0), xt - xt.mean(0)
    a = math.radians(angle_deg)
    xt = xt @ np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]).T  # target: rotated moons
    as_float = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return as_float(xs), torch.tensor(ys), as_float(xt), torch.tensor(yt)


def _train_toy(adapt: bool, seed: int, steps: int = 400, hidden: int = 15) -> tuple[float, float]:
    """Target accuracy and final domain-classifier accuracy; ``adapt=False`` is source-only (lambd = 0)."""
    torch.manual_seed(seed)
    xs, ys, xt, yt = _moons(seed, 30.0)
    model = DANN(nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()),
                 nn.Linear(hidden, 2), nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(steps):
        out = dann_losses(model, xs, ys, xt, grl_lambda(step / steps) if adapt else 0.0)
        opt.zero_grad()
        out["total"].backward()
        opt.step()
    with torch.no_grad():
        target_acc = (model(xt)[0].argmax(1) == yt).float().mean().item()
    return target_acc, out["domain_accuracy"].item()


def test_dann_aligns_rotated_two_moons():
    # Ganin et al. 2016's inter-twinning moons (target rotated by 30 degrees), tiny MLPs, 3 seeds
    source_only = np.array([_train_toy(False, seed) for seed in range(3)])  # (3, 2): target acc, domain acc
    adapted = np.array([_train_toy(True, seed) for seed in range(3)])
    assert (adapted[:, 0] > source_only[:, 0]).all(), (source_only, adapted)
    assert adapted[:, 0].mean() > source_only[:, 0].mean() + 0.08
    assert source_only[:, 1].mean() > 0.75  # features separate the domains without adaptation ...
    assert adapted[:, 1].mean() < 0.68  # ... and much less with it (chance is 0.5)
