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
