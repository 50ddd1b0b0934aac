"""pix2pix and CycleGAN objectives against torch's own losses and hand-computed values; cycle and identity losses
vanish for inverse and identity maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepnotes.nn.gan import GAN_LOSSES
from deepnotes.nn.image_translation import (TRANSLATION_LOSSES, cycle_consistency_loss, cyclegan_generator_loss,
                                            d_loss_least_squares, g_loss_least_squares, identity_loss, l1_distance,
                                            pix2pix_generator_loss)


def test_least_squares_losses_by_hand_and_against_mse():
    real, fake = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # D: mean((1-1)^2, (0-1)^2) + mean(0^2, 2^2) = 0.5 + 2
    assert d_loss_least_squares(real, fake).item() == pytest.approx(2.5)
    assert g_loss_least_squares(fake).item() == pytest.approx(1.0)  # mean((0-1)^2, (2-1)^2)
    r, f = torch.randn(3, 1, 7, 7), torch.randn(3, 1, 7, 7)  # patch maps: a mean over every patch
    ref = F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f))
    assert torch.allclose(d_loss_least_squares(r, f), ref)
    assert torch.allclose(g_loss_least_squares(f), F.mse_loss(f, torch.ones_like(f)))
    assert TRANSLATION_LOSSES["least-squares"] == (d_loss_least_squares, g_loss_least_squares)
    assert all(TRANSLATION_LOSSES[k] == v for k, v in GAN_LOSSES.items())  # nn.gan's losses reused, not copied


def test_l1_distance_is_torch_l1_loss_and_refuses_broadcasting():
    a, b = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    assert torch.allclose(l1_distance(a, b), F.l1_loss(a, b))
    assert l1_distance(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0])).item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="shapes differ"):
        l1_distance(torch.zeros(2, 1, 5, 5), torch.zeros(2, 3, 5, 5))


def test_pix2pix_objective_is_nonsaturating_gan_plus_weighted_l1():
    logits = torch.randn(4, 1, 7, 7)
    out, target = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    g = pix2pix_generator_loss(logits, out, target, l1_weight=100.0)
    adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # -E[log D(x, G(x))]
    assert torch.allclose(g.adversarial, adv) and torch.allclose(g.reconstruction, F.l1_loss(out, target))
    assert torch.allclose(g.total, adv + 100 * F.l1_loss(out, target))
    only = pix2pix_generator_loss(None, out, target, l1_weight=100.0)  # the L1-only ablation
    assert only.adversarial.item() == 0 and torch.allclose(only.total, 100 * F.l1_loss(out, target))
    ls = pix2pix_generator_loss(logits, out, target, 1.0, g_loss_least_squares)
    assert torch.allclose(ls.total, F.mse_loss(logits, torch.ones_like(logits)) + F.l1_loss(out, target))
    with pytest.raises(ValueError, match="l1_weight"):
        pix2pix_generator_loss(logits, out, target, l1_weight=-1)


def test_cycle_loss_vanishes_for_inverse_maps_only():
    a, b = torch.randn(3, 1, 28, 28), torch.randn(5, 3, 28, 28)
    G = lambda x: 2 * x + 1  # noqa: E731
    F_inv = lambda y: (y - 1) / 2  # noqa: E731
    assert cycle_consistency_loss(a, F_inv(G(a)), b, G(F_inv(b))).item() == pytest.approx(0.0, abs=1e-6)
    F_bad = lambda y: (y - 1) / 3  # noqa: E731
    loss = cycle_consistency_loss(a, F_bad(G(a)), b, G(F_bad(b)))
    assert torch.allclose(loss, F.l1_loss(F_bad(G(a)), a) + F.l1_loss(G(F_bad(b)), b)) and loss > 0.1
    with pytest.raises(ValueError, match="shapes differ"):
        cycle_consistency_loss(a, b, b, b)


def test_identity_loss_and_the_weighted_cyclegan_objective():
    a, b = torch.rand(2, 1, 4, 4), torch.rand(2, 3, 4, 4)
    assert identity_loss(a, a.clone(), b, b.clone()).item() == 0
    assert torch.allclose(identity_loss(a, a + 0.25, b, b - 0.5), torch.tensor(0.75))
    fb, fa = torch.tensor([0.0, 1.0]), torch.tensor([3.0])  # LSGAN G terms: mean(1, 0) = 0.5 and 4
    g = cyclegan_generator_loss(fb, fa, torch.tensor(0.2), torch.tensor(0.1), cycle_weight=10, identity_weight=5)
    assert g.adversarial.item() == pytest.approx(4.5) and g.total.item() == pytest.approx(4.5 + 2 + 0.5)
    no_id = cyclegan_generator_loss(fb, fa, torch.tensor(0.2), None)
    assert no_id.identity.item() == 0 and no_id.total.item() == pytest.approx(6.5)
    with pytest.raises(ValueError, match="weight"):
        cyclegan_generator_loss(fb, fa, torch.tensor(0.2), None, cycle_weight=-1)
