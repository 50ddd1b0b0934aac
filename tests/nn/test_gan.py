"""GAN losses against torch's binary cross-entropy and hand-computed values, the optimal discriminator's JS
relation (Goodfellow et al. 2014, Theorem 1) against scipy, weight clipping, and the gradient penalty on critics
whose input gradients are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from torch import nn

from deepnotes.nn.gan import (GAN_LOSSES, clip_weights_, critic_loss_wasserstein, d_loss_hinge, d_loss_minimax,
                              g_loss_hinge, g_loss_minimax, g_loss_nonsaturating, g_loss_wasserstein,
                              gradient_penalty, interpolates)

torch.manual_seed(0)


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def test_sigmoid_losses_equal_torch_bce_forms():
    real, fake = torch.randn(7) * 3, torch.randn(5) * 3
    assert torch.allclose(d_loss_minimax(real, fake), bce(real, 1.0) + bce(fake, 0.0), atol=1e-6)
    assert torch.allclose(g_loss_nonsaturating(fake), bce(fake, 1.0), atol=1e-6)  # -E log D(G(z))
    assert torch.allclose(g_loss_minimax(fake), -bce(fake, 0.0), atol=1e-6)  # E log(1 - D(G(z)))
    d = torch.sigmoid(fake.double())  # Fleuret's form on probabilities
    assert g_loss_minimax(fake.double()).item() == pytest.approx((1 - d).log().mean().item(), abs=1e-9)


def test_hand_values_and_extreme_logits():
    # D(x) = sigmoid(0) = 1/2 everywhere: -log 1/2 - log 1/2 = log 4; G's losses log 2 and -log 2
    zero = torch.zeros(4)
    assert d_loss_minimax(zero, zero).item() == pytest.approx(math.log(4), abs=1e-6)
    assert g_loss_nonsaturating(zero).item() == pytest.approx(math.log(2), abs=1e-6)
    assert g_loss_minimax(zero).item() == pytest.approx(-math.log(2), abs=1e-6)
    big = torch.tensor([1e4, -1e4])  # finite (log(sigmoid) gives -inf): real mean(0, 1e4) + fake mean(1e4, 0)
    assert torch.isfinite(d_loss_minimax(big, big)) and d_loss_minimax(big, big).item() == pytest.approx(1e4, rel=1e-6)
    # saturation: where D rejects the samples, the minimax G loss has a vanishing gradient, the non-saturating not
    rejected = torch.tensor([-10.0], requires_grad=True)
    (g_min,) = torch.autograd.grad(g_loss_minimax(rejected), rejected)
    (g_ns,) = torch.autograd.grad(g_loss_nonsaturating(rejected), rejected)
    assert abs(g_min.item()) < 1e-4 and g_ns.item() == pytest.approx(-1.0, abs=1e-4)


def test_hinge_and_wasserstein_hand_values():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - r): 0, 0.5, 2 -> mean 2.5/3; relu(1 + f): 0, 1, 2 -> mean 1
    assert d_loss_hinge(real, fake).item() == pytest.approx(2.5 / 3 + 1.0)
    assert g_loss_hinge(fake).item() == pytest.approx(1 / 3)
    assert critic_loss_wasserstein(real, fake).item() == pytest.approx(-1 / 3 - 0.5)
    assert g_loss_wasserstein(fake).item() == pytest.approx(1 / 3)
    assert set(GAN_LOSSES) == {"minimax", "nonsaturating", "hinge", "wasserstein"}


def test_optimal_discriminator_gives_log4_minus_2_js():
    """On a 3-point space, data p and generator q, each sample set holding every point in proportion to its
    probability: D* = p / (p + q) makes the discriminator's loss log 4 - 2 JS(p || q)."""
    p, q = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64), torch.tensor([0.125, 0.125, 0.75],
                                                                              dtype=torch.float64)
    real_pts = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])  # 8 samples in proportion to p
    fake_pts = torch.tensor([0, 1, 2, 2, 2, 2, 2, 2])  # 8 samples in proportion to q
    d_star = p / (p + q)
    logit = torch.log(d_star / (1 - d_star))
    js = jensenshannon(p.numpy(), q.numpy()) ** 2  # scipy returns the square root of JS, natural log
    loss = d_loss_minimax(logit[real_pts], logit[fake_pts]).item()
    assert loss == pytest.approx(math.log(4) - 2 * js, abs=1e-12)
    # any other discriminator does worse (D* minimizes the loss pointwise)
    for shift in (-0.3, 0.2):
        assert d_loss_minimax(logit[real_pts] + shift, logit[fake_pts] + shift).item() > loss


def test_clip_weights_clamps_every_parameter():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.linspace(-1, 1, p.numel()).view_as(p))
    before = [p.detach().clone() for p in net.parameters()]
    clip_weights_(net, 0.01)
    for b, p in zip(before, net.parameters()):
        assert torch.equal(p.detach(), b.clamp(-0.01, 0.01))
    with pytest.raises(ValueError, match="clip_value"):
        clip_weights_(net, 0.0)


def test_gradient_penalty_linear_critic_is_exact():
    """f(x) = w.x + b has input gradient w everywhere: the penalty is lambda (||w|| - 1)^2 at any x_hat."""
    critic = nn.Linear(5, 1)
    w_norm = critic.weight.detach().norm().item()
    real, fake = torch.randn(16, 5), torch.randn(16, 5)
    gp = gradient_penalty(critic, real, fake, weight=10.0, generator=torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx(10.0 * (w_norm - 1) ** 2, rel=1e-5)
    # the penalty's gradient reaches the weights: d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||
    gp.backward()
    expected = 2 * 10.0 * (w_norm - 1) * critic.weight.detach() / w_norm
    assert torch.allclose(critic.weight.grad, expected, atol=1e-5)
    assert critic.bias.grad is None or torch.all(critic.bias.grad == 0)


def test_gradient_penalty_quadratic_critic_and_interpolates():
    """f(x) = ||x||^2 / 2 has gradient x: the penalty is lambda mean((||x_hat|| - 1)^2) on the interpolates, which
    are eps x + (1 - eps) x_fake with one eps in [0, 1] per sample, drawn from the generator."""
    real, fake = torch.randn(8, 2, 3), torch.randn(8, 2, 3)  # non-flat samples: the norm is over all their entries

    def critic(x):
        return 0.5 * (x ** 2).flatten(1).sum(1)

    x_hat = interpolates(real, fake, torch.Generator().manual_seed(3))
    eps = torch.rand(8, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(x_hat, eps[:, None, None] * real + (1 - eps[:, None, None]) * fake, atol=1e-6)
    gp = gradient_penalty(critic, real, fake, weight=2.0, generator=torch.Generator().manual_seed(3))
    expected = 2.0 * ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)
    pts = torch.tensor([[3.0, 4.0], [0.6, 0.8]])  # ||x|| 5 and 1: (5 - 1)^2 and 0
    assert gradient_penalty(critic, pts, pts, weight=1.0, points=pts).item() == pytest.approx(8.0)
    with pytest.raises(ValueError, match="same shape"):
        interpolates(real, fake[:4])
    with pytest.raises(ValueError, match="weight"):
        gradient_penalty(critic, real, fake, weight=-1.0)
