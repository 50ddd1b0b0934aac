"""Universal perturbations: the projection, the fooling rate, and a linear model whose answer is known by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.attacks.universal import fooling_rate, project_perturbation, universal_perturbation


def _linear_two_class(d: int = 36, n: int = 20) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """f1 - f0 = w.x + b < 0 on every image (all class 0)."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 2))
    w = torch.randn(d, generator=g)
    x = 0.45 + 0.1 * torch.rand(n, 1, 6, 6, generator=g)
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(d), w]))
        margins = x.flatten(1) @ w
        model[1].bias.copy_(torch.tensor([0.0, -margins.max().item() - 0.01]))
    return model.eval(), x, w


def test_projection_onto_the_balls():
    v = torch.tensor([[0.3, -0.05], [-0.2, 0.01]])
    torch.testing.assert_close(project_perturbation(v, 0.1), torch.tensor([[0.1, -0.05], [-0.1, 0.01]]))
    projected = project_perturbation(v, 0.1, "l2")
    torch.testing.assert_close(projected.norm(), torch.tensor(0.1))
    torch.testing.assert_close(projected / projected.norm(), v / v.norm())
    torch.testing.assert_close(project_perturbation(v * 0.1, 0.1, "l2"), v * 0.1)  # inside: unchanged
    with pytest.raises(ValueError, match="norm"):
        project_perturbation(v, 0.1, "l1")


def test_fooling_rate_counts_changed_labels():
    model, x, w = _linear_two_class()
    assert fooling_rate(model, x, torch.zeros(1, 6, 6)) == 0.0
    big = 0.3 * w.sign().view(1, 6, 6)  # pushes w.x up by 0.3 ||w||_1: every image flips
    assert fooling_rate(model, x, big) == 1.0
    assert fooling_rate(model, x, -big) == 0.0
    with pytest.raises(ValueError, match="v must"):
        fooling_rate(model, x, torch.zeros(36))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_universal_perturbation_on_a_linear_model_follows_w(norm):
    # Every DeepFool step on a linear model is t_k w with t_k > 0. The L2 projection only rescales, so v is exactly
    # along w. The L-inf projection clips coordinates, and a clipped coordinate stays clipped as t grows, so
    # v = clip(T w, -eps, eps) for one scalar T = sum of the steps (the L-inf optimum eps * sign(w) as T grows).
    model, x, w = _linear_two_class()
    margins = -(x.flatten(1) @ w + model[1].bias[1]).detach()
    assert (margins > 0).all()
    # the smallest ball that contains a perturbation fooling every image, enlarged by half
    eps = 1.5 * margins.max().item() / (w.abs().sum() if norm == "linf" else w.norm()).item()
    if norm == "linf":  # the ball is small enough that v must clip: along w alone it cannot fool every image
        assert eps * w.dot(w) / w.abs().max() < margins.max()
    v = universal_perturbation(model, x, eps=eps, norm=norm, max_iter=20, target_fooling_rate=1.0,
                               generator=torch.Generator().manual_seed(0))
    assert v.shape == (1, 6, 6) and not v.requires_grad
    # L-inf: the clipped share of each DeepFool step is lost, so the hardest image approaches its boundary
    # geometrically without crossing it (overshoot 0.02 is too small to make up): "nearly all" images are fooled.
    assert fooling_rate(model, x, v) == pytest.approx(1.0 if norm == "l2" else 0.95)
    flat = v.flatten()
    if norm == "l2":
        assert flat.norm() <= eps + 1e-6
        torch.testing.assert_close(flat / flat.norm(), w / w.norm(), rtol=0, atol=1e-5)
    else:
        assert flat.abs().max() <= eps + 1e-7
        free = flat.abs() < eps - 1e-6
        assert free.any() and (~free).any()
        t = (flat[free] / w[free]).mean()
        torch.testing.assert_close(flat, (t * w).clamp(-eps, eps), rtol=0, atol=1e-6)


def test_universal_perturbation_respects_the_bound_and_stops_at_the_target(tiny_cnn):
    x = torch.rand(12, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    v = universal_perturbation(tiny_cnn, x, eps=0.1, max_iter=2, target_fooling_rate=0.3, deepfool_steps=10,
                               generator=torch.Generator().manual_seed(0))
    assert v.abs().max() <= 0.1 + 1e-7 and v.abs().max() > 0
    v_again = universal_perturbation(tiny_cnn, x, eps=0.1, max_iter=2, target_fooling_rate=0.3, deepfool_steps=10,
                                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(v, v_again, rtol=0, atol=0)
    with pytest.raises(ValueError, match="target_fooling_rate"):
        universal_perturbation(tiny_cnn, x, eps=0.1, target_fooling_rate=1.5)
