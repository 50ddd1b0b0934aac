"""28x28 generators and discriminators: shapes, registry names, the projection term against its hand formula,
conditional batch norm against torch's batch norm, spectral normalization on every layer of the SN discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepnotes.errors import UserError
from deepnotes.models.gan import Discriminator28, Generator28, generate_pixels, interpolate_latents
from deepnotes.models.registry import create_model
from deepnotes.nn.conditional_gan import ConditionalBatchNorm2d, ProjectionHead, projection_logit
from deepnotes.nn.spectral import weight_matrix


@pytest.mark.parametrize("num_classes", [0, 10])
def test_generator_shapes_and_range(num_classes):
    torch.manual_seed(0)
    g = create_model("gan-generator", z_dim=16, width=8, num_classes=num_classes)
    z = torch.randn(5, 16)
    x = g(z, torch.arange(5)) if num_classes else g(z)
    assert x.shape == (5, 1, 28, 28) and float(x.detach().abs().max()) <= 1.0
    if num_classes:
        with pytest.raises(ValueError, match="G\\(z, y\\)"):
            g(z)
        assert g.fc.in_features == 16 + 10  # [z, one_hot(y)]
        g.eval()  # the class changes the image (through the one-hot input and the per-class scale and shift)
        assert not torch.allclose(g(z, torch.zeros(5, dtype=torch.long)), g(z, torch.ones(5, dtype=torch.long)))


@pytest.mark.parametrize("norm", ["batch", "none", "spectral"])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_discriminator_shapes(norm, num_classes):
    torch.manual_seed(0)
    d = create_model("gan-discriminator", width=8, norm=norm, num_classes=num_classes)
    x = torch.randn(6, 1, 28, 28)
    out = d(x, torch.arange(6)) if num_classes else d(x)
    assert out.shape == (6,) and d.features(x).shape == (6, 16 * 49)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    assert has_bn == (norm == "batch")  # the WGAN-GP critic and SN-GAN's D have no batch norm


def test_spectral_discriminator_normalizes_every_layer():
    torch.manual_seed(0)
    d = create_model("gan-discriminator", width=8, norm="spectral", num_classes=10,
                     generator=torch.Generator().manual_seed(1))
    layers = [d.conv1, d.conv2, d.head.psi, d.head.embed]
    d.eval()
    for layer in layers:
        assert hasattr(layer, "parametrizations"), type(layer).__name__
        # after the builder's power iterations on the initialized weights, the normalized weight has sigma ~ 1
        sigma = torch.linalg.matrix_norm(weight_matrix(layer.weight.detach()), ord=2)
        assert float(sigma) == pytest.approx(1.0, rel=5e-2)
    d.train()
    x, y = torch.randn(2, 1, 28, 28), torch.tensor([3, 4])
    with torch.no_grad():
        for _ in range(200):  # one power-iteration step per training forward pass: sigma converges
            d(x, y)
    for layer in layers:
        sigma = torch.linalg.matrix_norm(weight_matrix(layer.parametrizations.weight.original.detach()), ord=2)
        assert float(layer.parametrizations.weight[0].sigma(layer.parametrizations.weight.original).detach()) == \
            pytest.approx(float(sigma), rel=1e-3)
    plain = create_model("gan-discriminator", width=8, norm="none")
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())


def test_projection_term_equals_the_hand_formula():
    torch.manual_seed(0)
    d = Discriminator28(width=4, num_classes=3, norm="none").eval()
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 2, 1, 2])
    phi = d.features(x)  # (4, 392)
    psi_w, psi_b, v = d.head.psi.weight, d.head.psi.bias, d.head.embed.weight  # (1, 392), (1,), (3, 392)
    hand = torch.stack([phi[i] @ psi_w[0] + psi_b[0] + v[y[i]] @ phi[i] for i in range(4)])
    assert torch.allclose(d(x, y), hand, atol=1e-5)
    # the class term alone: the difference between two labels is (v_a - v_b)^T phi
    y2 = torch.zeros(4, dtype=torch.long)
    assert torch.allclose(d(x, y) - d(x, y2), ((v[y] - v[0]) * phi).sum(1), atol=1e-5)
    head = ProjectionHead(5, 2)
    f = torch.randn(3, 5)
    assert torch.allclose(head(f, torch.tensor([1, 0, 1])), projection_logit(f, torch.tensor([1, 0, 1]), head.psi,
                                                                              head.embed))
    with pytest.raises(ValueError, match="unconditional"):
        ProjectionHead(5, 0)(f, torch.tensor([0, 0, 0]))


def test_conditional_batch_norm_equals_batch_norm_with_per_class_affine():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(3, 4)
    with torch.no_grad():
        cbn.gamma.weight.copy_(torch.rand(4, 3) + 0.5)
        cbn.beta.weight.copy_(torch.randn(4, 3))
    bn = nn.BatchNorm2d(3, affine=False)
    x, y = torch.randn(8, 3, 5, 5), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = cbn(x, y)
    ref = bn(x) * cbn.gamma.weight[y][:, :, None, None] + cbn.beta.weight[y][:, :, None, None]
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(cbn.bn.running_mean, bn.running_mean)  # the same running statistics
    fresh = ConditionalBatchNorm2d(3, 4)  # starts as a plain batch norm
    assert torch.allclose(fresh(x, y), nn.BatchNorm2d(3)(x), atol=1e-6)


def test_bad_sizes_are_value_errors_and_user_errors_through_the_registry():
    with pytest.raises(ValueError, match="norm must be"):
        Discriminator28(norm="layer")
    with pytest.raises(ValueError, match="z_dim"):
        Generator28(z_dim=0)
    with pytest.raises(UserError, match="gan-generator"):
        create_model("gan-generator", width=0)
    with pytest.raises(ValueError, match="D\\(x, y\\)"):
        Discriminator28(width=4, num_classes=2)(torch.randn(2, 1, 28, 28))


def test_interpolate_latents_and_generate_pixels():
    z0, z1 = torch.zeros(2, 3), torch.tensor([[3.0, 0, 0], [0, 0, 6.0]])
    zi = interpolate_latents(z0, z1, 4)  # t = 0, 1/3, 2/3, 1
    assert zi.shape == (8, 3) and torch.equal(zi[0], z0[0]) and torch.equal(zi[3], z1[0])
    assert torch.allclose(zi[5], torch.tensor([0, 0, 2.0])) and torch.allclose(zi[6], torch.tensor([0, 0, 4.0]))
    with pytest.raises(ValueError, match="steps"):
        interpolate_latents(z0, z1, 1)
    torch.manual_seed(0)
    g = create_model("gan-generator", z_dim=3, width=4, num_classes=2).train()
    px = generate_pixels(g, zi, torch.tensor([0, 1] * 4), batch_size=3)
    assert px.shape == (8, 1, 28, 28) and 0 <= float(px.min()) and float(px.max()) <= 1 and g.training
    with torch.no_grad():  # eval mode, batch by batch: the same images as all at once, (tanh + 1) / 2
        ref = (g.eval()(zi, torch.tensor([0, 1] * 4)) + 1) / 2
    assert torch.allclose(px, ref, atol=1e-6)


@pytest.mark.parametrize("norm", ["none", "spectral"])
def test_auxiliary_classifier_reads_the_same_features(norm):
    """AC-GAN's head: forward_aux gives D(x, y) unchanged and aux(phi(x)) as class logits; spectral with SN-GAN's D;
    a discriminator built without it says so."""
    torch.manual_seed(0)
    d = create_model("gan-discriminator", width=4, norm=norm, num_classes=3, aux_classes=3,
                     generator=torch.Generator().manual_seed(1)).eval()
    x, y = torch.randn(5, 1, 28, 28), torch.tensor([0, 1, 2, 1, 0])
    logits, class_logits = d.forward_aux(x, y)
    assert class_logits.shape == (5, 3)
    torch.testing.assert_close(logits, d(x, y))
    torch.testing.assert_close(class_logits, d.aux(d.features(x)))
    assert hasattr(d.aux, "parametrizations") == (norm == "spectral")
    with pytest.raises(ValueError, match="auxiliary"):
        Discriminator28(width=4, num_classes=3).forward_aux(x, y)
    with pytest.raises(ValueError, match="aux_classes"):
        Discriminator28(width=4, aux_classes=-1)
