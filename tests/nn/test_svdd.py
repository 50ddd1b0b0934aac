"""Deep SVDD (Ruff et al. 2018): the centre rule, the two objectives against their equations, the radius line
search against numpy's quantile, the bias-free networks, and saving a scorer with its centre."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deepnotes.nn.svdd import (BiasFreeLeNet, BiasFreeLeNetAutoencoder, DeepSVDD, one_class_loss, soft_boundary_loss,
                               svdd_center, svdd_distances, svdd_radius)


def test_center_is_the_mean_with_small_entries_pushed_to_eps():
    f = torch.tensor([[0.02, 1.0, -0.05, 0.3], [0.0, 3.0, 0.01, -0.3]])  # means 0.01, 2.0, -0.02, 0.0
    assert torch.allclose(svdd_center(f, eps=0.1), torch.tensor([0.1, 2.0, -0.1, 0.1]))
    assert torch.allclose(svdd_center(f, eps=0.0), f.mean(0))


def test_distances_and_one_class_loss_equal_their_equations():
    g = torch.Generator().manual_seed(0)
    f, c = torch.randn(7, 5, generator=g), torch.randn(5, generator=g)
    d = svdd_distances(f, c)
    assert torch.allclose(d, torch.cdist(f, c[None]).squeeze(1) ** 2, atol=1e-5)
    assert torch.allclose(one_class_loss(f, c), d.mean())


def test_soft_boundary_loss_hand_case():
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])  # squared distances to 0: 0, 1, 9
    c = torch.zeros(2)
    # R = 2: R² + 1/(0.5) * mean(max(0, d - 4)) = 4 + 2 * (0 + 0 + 5) / 3
    assert soft_boundary_loss(f, c, 2.0, 0.5).item() == pytest.approx(4 + 2 * 5 / 3)
    assert soft_boundary_loss(f, c, 3.0, 0.5).item() == pytest.approx(9.0)  # everything inside: only R²


@pytest.mark.parametrize("nu", [0.05, 0.1, 0.5, 1.0])
def test_radius_is_the_quantile_of_the_distances(nu):
    d = torch.rand(1000, generator=torch.Generator().manual_seed(1)) * 10
    r = svdd_radius(d, nu)
    assert r ** 2 == pytest.approx(float(np.quantile(d.numpy(), 1 - nu)), rel=1e-5)
    assert (d > r ** 2).float().mean().item() <= nu + 1e-3  # at most a share nu outside the sphere


def test_lenet_and_autoencoder_shapes_and_no_bias_anywhere():
    x = torch.rand(3, 1, 28, 28)
    net = BiasFreeLeNet(1, 32)
    assert net(x).shape == (3, 32)
    ae = BiasFreeLeNetAutoencoder(1, 32)
    out = ae(x)
    assert out.shape == x.shape and torch.equal(out, ae.reconstruct(x))
    for model in (net, ae):
        assert not [n for n, _ in model.named_parameters() if "bias" in n]
    # the encoder of the auto-encoder is the same architecture: its weights load into a BiasFreeLeNet
    BiasFreeLeNet(1, 32).load_state_dict(ae.encoder.state_dict())


def test_deep_svdd_scores_are_distances_to_the_centre_and_survive_saving(tmp_path):
    torch.manual_seed(0)
    model = DeepSVDD(BiasFreeLeNet(1, 16))
    x = torch.rand(10, 1, 28, 28)
    c = model.init_center([x[:5], x[5:]])
    assert c.shape == (16,) and (c.abs() >= 0.1 - 1e-7).all()
    model.eval()
    with torch.no_grad():
        expected = ((model.net(x) - c) ** 2).sum(1)
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(model.loss(model.net(x)), expected.mean(), atol=1e-5)
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    loaded = DeepSVDD(BiasFreeLeNet(1, 16))
    loaded.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_soft_boundary_scores_subtract_r_squared():
    torch.manual_seed(0)
    model = DeepSVDD(BiasFreeLeNet(1, 16), objective="soft-boundary", nu=0.2)
    x = torch.rand(6, 1, 28, 28)
    model.init_center([x])
    model.eval()
    with torch.no_grad():
        d = svdd_distances(model.net(x), model.center)
        model.radius.fill_(svdd_radius(d, 0.2))
        assert torch.allclose(model(x), d - model.radius ** 2)


def test_one_class_training_pulls_normal_data_towards_the_centre():
    torch.manual_seed(0)
    normal = 0.5 + 0.05 * torch.randn(64, 1, 28, 28)
    model = DeepSVDD(BiasFreeLeNet(1, 16))
    model.init_center([normal])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        before = model.loss(model.net(normal)).item()
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(model.net(normal))
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * before


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="no bias terms.*bias"):
        DeepSVDD(torch.nn.Sequential(torch.nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="rep_dim"):
        DeepSVDD(torch.nn.Linear(4, 2, bias=False))
    with pytest.raises(ValueError, match="objective"):
        DeepSVDD(BiasFreeLeNet(), objective="hard")
    with pytest.raises(ValueError, match="nu"):
        svdd_radius(torch.ones(3), 0.0)
    with pytest.raises(ValueError, match="eps"):
        svdd_center(torch.ones(2, 2), eps=-1)
    with pytest.raises(ValueError, match="features"):
        svdd_center(torch.ones(3))
    with pytest.raises(ValueError, match="center must have shape"):
        svdd_distances(torch.ones(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="radius"):
        soft_boundary_loss(torch.ones(2, 2), torch.ones(2), -1.0, 0.1)
    with pytest.raises(RuntimeError, match="init_center"):
        DeepSVDD(BiasFreeLeNet())(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="28x28"):
        BiasFreeLeNet()(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        BiasFreeLeNetAutoencoder(rep_dim=20)
