"""LeNet-5 and the bottleneck ResNet: shapes, parameter counts by hand, residual structure."""

import pytest
import torch

from deepnotes.models import LeNet5, ResNet, ResNetConfig
from deepnotes.models.cnn import Bottleneck


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_lenet5_shapes_and_parameter_count():
    m = LeNet5()
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    # conv1 6*(1*25+1) + conv2 16*(6*25+1) + fc 400*120+120 + 120*84+84 + 84*10+10
    assert _count(m) == 156 + 2416 + 48120 + 10164 + 850
    with pytest.raises(ValueError, match="28x28"):
        m(torch.randn(1, 1, 32, 32))


def test_bottleneck_shapes_and_parameter_count():
    blk = Bottleneck(32, 64, stride=2, expansion=4)  # inner width 16
    assert blk(torch.randn(2, 32, 14, 14)).shape == (2, 64, 7, 7)
    convs = 32 * 16 + 16 * 16 * 9 + 16 * 64 + 32 * 64  # 1x1, 3x3, 1x1, projection 1x1
    bns = 2 * (16 + 16 + 64 + 64)
    assert _count(blk) == convs + bns
    assert isinstance(Bottleneck(64, 64).shortcut, torch.nn.Identity)


def test_bottleneck_is_residual():
    torch.manual_seed(0)
    blk = Bottleneck(8, 8).eval()
    x = torch.randn(2, 8, 5, 5)
    torch.nn.init.zeros_(blk.bn3.weight)
    torch.nn.init.zeros_(blk.bn3.bias)
    assert torch.allclose(blk(x), torch.relu(x))  # residual branch silenced: y = relu(x + 0)


def test_resnet_shapes_and_config_errors():
    m = ResNet(1, 10, ResNetConfig(widths=(16, 32), blocks=(1, 2), stem_channels=8, expansion=2))
    assert m(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(m.eval()(x), m.to(memory_format=torch.channels_last)(x.contiguous(
        memory_format=torch.channels_last)), atol=1e-5)
    with pytest.raises(ValueError, match="same length"):
        ResNet(config=ResNetConfig(widths=(16, 32), blocks=(1,)))


def test_patch_whitening_decorrelates_patches_against_numpy():
    import numpy as np

    from deepnotes.models.cnn import patch_whitening_filters

    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.avg_pool2d(torch.randn(64, 1, 12, 12, generator=g), 3, 1, 1) + 0.3  # correlated pixels
    eps = 1e-3
    w = patch_whitening_filters(images, kernel_size=2, eps=eps)
    assert w.shape == (8, 1, 2, 2) and torch.equal(w[4:], -w[:4])
    # the reference: patches by numpy's sliding windows, their second moment, its eigenvalues
    p = np.lib.stride_tricks.sliding_window_view(images.numpy()[:, 0], (2, 2), axis=(1, 2)).reshape(-1, 4)
    sigma = p.T.astype(np.float64) @ p / len(p)
    lam = np.linalg.eigvalsh(sigma)[::-1]
    f = w[:4].reshape(4, 4).double().numpy()
    np.testing.assert_allclose(f @ sigma @ f.T, np.diag(lam / (lam + eps)), atol=1e-4)  # uncorrelated, ~unit variance
    out = torch.nn.functional.conv2d(images, w[:4])  # the same through the convolution
    cov = out.permute(1, 0, 2, 3).reshape(4, -1)
    np.testing.assert_allclose((cov @ cov.T / cov.shape[1]).double().numpy(), np.diag(lam / (lam + eps)), atol=1e-4)
    with pytest.raises(ValueError, match="H, W >= 3"):
        patch_whitening_filters(torch.zeros(2, 1, 2, 2), kernel_size=3)


def test_scale_free_batch_norm_equals_torch_with_unit_scale():
    from deepnotes.models.cnn import ScaleFreeBatchNorm2d

    torch.manual_seed(0)
    ours, ref = ScaleFreeBatchNorm2d(5), torch.nn.BatchNorm2d(5, eps=1e-12, momentum=0.4)
    torch.nn.init.normal_(ours.bias)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(6, 5, 4, 4)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean, 0.4 * x.mean((0, 2, 3)))  # momentum 0.4 from a zero start
    assert not ours.weight.requires_grad and ours.bias.requires_grad


def test_dirac_conv_passes_its_input_through():
    from deepnotes.models.cnn import dirac_conv3x3

    x = torch.randn(2, 6, 7, 7)
    wide = dirac_conv3x3(6, 10)
    torch.testing.assert_close(wide(x)[:, :6], x)  # the first C_in filters are the identity
    assert not torch.allclose(wide(x)[:, 6:], torch.zeros(()))  # the rest are random
    torch.testing.assert_close(dirac_conv3x3(6, 4)(x), x[:, :4])


def test_airbench_net_shapes_parameters_and_frozen_whitening():
    from deepnotes.models import AirbenchConfig, AirbenchNet

    m = AirbenchNet(1, 10, AirbenchConfig(widths=(8, 16, 16)))
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)  # 28 -> 27 -> 13 -> 6 -> 3 pixels
    # whiten 8*4 + 8 bias; groups: conv 9*C_in*C_out twice + BN (scale and shift) per conv; head 16*10
    groups = sum(9 * a * b + 9 * b * b + 4 * b for a, b in ((8, 8), (8, 16), (16, 16)))
    assert _count(m) == 8 * 4 + 8 + groups + 160
    assert not m.whiten.weight.requires_grad
    images = torch.randn(10, 1, 28, 28)
    m.init_whitening(images)
    z = torch.nn.functional.conv2d(images, m.whiten.weight[:4])
    cov = z.permute(1, 0, 2, 3).reshape(4, -1)
    assert torch.allclose(cov @ cov.T / cov.shape[1], torch.eye(4), atol=0.02)


def test_registered_names_build_the_same_networks_as_the_classes():
    from deepnotes.models import AirbenchConfig, AirbenchNet
    from deepnotes.models.registry import create_model

    cases = [("lenet5", {"dropout": 0.2}, lambda: LeNet5(1, 7, dropout=0.2)),
             ("resnet", {"widths": (8, 16), "blocks": (1, 1), "stem_channels": 8, "expansion": 2},
              lambda: ResNet(1, 7, ResNetConfig(widths=(8, 16), blocks=(1, 1), stem_channels=8, expansion=2))),
             ("airbench", {"widths": (8, 16, 16)}, lambda: AirbenchNet(1, 7, AirbenchConfig(widths=(8, 16, 16))))]
    for name, kwargs, direct in cases:
        torch.manual_seed(0)
        a = create_model(name, in_channels=1, num_classes=7, **kwargs)
        torch.manual_seed(0)
        b = direct()
        assert type(a) is type(b) and a.state_dict().keys() == b.state_dict().keys(), name
        assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict()), name  # same draws


def test_registry_turns_bad_shapes_into_user_errors():
    from deepnotes.errors import UserError
    from deepnotes.models.registry import create_model

    with pytest.raises(UserError, match="3 widths"):
        create_model("airbench", widths=(8, 16))
    with pytest.raises(UserError, match="same length"):
        create_model("resnet", widths=(8, 16), blocks=(1,))


def test_image_mlp_keeps_the_layer_names_and_initial_weights_of_a_plain_sequential():
    from deepnotes.models.cnn import ImageMLP
    from deepnotes.models.registry import create_model

    torch.manual_seed(0)
    m = create_model("image-mlp", in_channels=1, num_classes=10)
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, 10))  # the batch-and-momentum lab's network
    assert isinstance(m, ImageMLP) and list(m.state_dict()) == list(ref.state_dict())  # old run folders still load
    assert all(torch.equal(m.state_dict()[k], ref.state_dict()[k]) for k in ref.state_dict())
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(m(x), ref(x))
    assert _count(ImageMLP(12, 3, hidden=(5,))) == 12 * 5 + 5 + 5 * 3 + 3


def test_batch_norm_shifts_are_every_norm_bias_and_nothing_else():
    from deepnotes.models.cnn import batch_norm_shifts

    m = ResNet(1, 10, ResNetConfig(widths=(8,), blocks=(1,), stem_channels=4, expansion=2))
    shifts = batch_norm_shifts(m)
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert len(shifts) == len(bns) == 5 and all(s is b.bias for s, b in zip(shifts, bns))
    assert batch_norm_shifts(LeNet5()) == []
