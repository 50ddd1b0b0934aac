"""receptive_fields (the recursion) against hand numbers, seed 004's top-down formula and measured input gradients."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from deepnotes.analysis.receptive_field import empirical_receptive_field, receptive_box, receptive_fields
from deepnotes.models.cnn import Bottleneck, LeNet5
from deepnotes.models.registry import create_model


def test_lenet5_by_hand():
    # conv5 p2 -> ReLU -> pool2 -> conv5 -> ReLU -> pool2: rf 5, 5, 6, 14, 14, 16; jump 1, 1, 2, 2, 2, 4.
    layers = receptive_fields(create_model("lenet5", in_channels=1, num_classes=10).features, 28)
    assert [l.name for l in layers] == ["0", "1", "2", "3", "4", "5"]
    assert [l.kind for l in layers] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d"]
    assert [l.rf[0] for l in layers] == [5, 5, 6, 14, 14, 16]
    assert [l.jump[0] for l in layers] == [1, 1, 2, 2, 2, 4]
    assert [l.size for l in layers] == [(28, 28), (28, 28), (14, 14), (10, 10), (10, 10), (5, 5)]
    # Unit (0, 0) of the last layer: pool2 unit 0 <- conv2 units 0..1 <- pool1 units 0..5 <- conv1 units 0..11
    # <- input rows -2..13 (conv1 pads 2): centre 5.5.
    assert layers[-1].start == (5.5, 5.5)
    assert layers[-1].region(0, 0) == (-2, 13, -2, 13)
    assert layers[-1].region(0, 0, 28) == (0, 13, 0, 13)


def test_lenet5_measured_with_its_max_pools():
    features = LeNet5().features
    before = [p.detach().clone() for p in features.parameters()]
    assert empirical_receptive_field(features, (1, 28, 28)) == (16, 16)
    # centre unit (2, 2): rows 5.5 + 2 * 4 -+ 7.5 = 6..21
    assert receptive_box(features, (1, 28, 28)) == (6, 21, 6, 21)
    assert receptive_box(features, (1, 28, 28), index=(0, 0)) == (0, 13, 0, 13)  # no holes: the clipped span
    assert all(torch.equal(a, b) for a, b in zip(before, features.parameters()))  # measured on a copy


def _seed004_top_down(layers) -> int:
    """Seed 004: from the top unit (RF 1) down to the input, RF_{n-1} = (RF_n - 1) * stride + ksize (dilated)."""
    r = 1
    for l in reversed(layers):
        r = (r - 1) * l.stride[0] + l.dilation[0] * (l.kernel[0] - 1) + 1
    return r


def _random_stack(rng: random.Random) -> nn.Sequential:
    mods: list[nn.Module] = []
    c = 1
    for _ in range(rng.randint(2, 4)):
        kind = rng.choice(["conv", "conv", "max", "avg"])
        if kind == "conv":
            k = (rng.randint(1, 5), rng.randint(1, 5))
            d = (rng.randint(1, 3), rng.randint(1, 3))
            mods.append(nn.Conv2d(c, 2, k, stride=(rng.randint(1, 3), rng.randint(1, 3)), dilation=d,
                                  padding=(rng.randint(0, 3), rng.randint(0, 3))))
            c = 2
        elif kind == "max":
            k, d = rng.randint(2, 3), rng.randint(1, 2)
            pad = rng.randint(0, k // 2)  # torch: at most half the kernel
            mods.append(nn.MaxPool2d(k, stride=rng.randint(1, 3), dilation=d, padding=pad,
                                     ceil_mode=rng.random() < 0.5))
        else:
            k = rng.randint(2, 3)
            mods.append(nn.AvgPool2d(k, stride=rng.randint(1, 3), padding=rng.randint(0, k // 2),
                                     ceil_mode=rng.random() < 0.5))
        if rng.random() < 0.4:
            mods.append(rng.choice([nn.ReLU(), nn.BatchNorm2d(c), nn.Dropout(0.5), nn.GELU()]))
    return nn.Sequential(*mods)


@pytest.mark.parametrize("seed", range(12))
def test_recursion_equals_measured_on_random_stacks(seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model = _random_stack(rng)
    big = receptive_fields(model, 400)[-1]
    checked = 0
    # a size where the centre unit's field lies inside the image, and small ones where it is clipped
    for size in (max(big.rf) * 2 + 7, max(big.rf) // 2 + 5, 9):
        try:
            last = receptive_fields(model, (size, size + 3))[-1]
        except ValueError:  # empty output for this size
            continue
        with torch.no_grad():
            out = model.eval()(torch.rand(1, 1, size, size + 3))
        assert tuple(out.shape[2:]) == last.size
        h, w = last.size
        # the unit centred nearest to the image's centre, the output's centre and two corners
        middle = tuple(min(range(n), key=lambda i: abs(last.start[a] + i * last.jump[a] - (full - 1) / 2))
                       for a, (n, full) in enumerate([(h, size), (w, size + 3)]))
        for index in [middle, ((h - 1) // 2, (w - 1) // 2), (0, 0), (h - 1, w - 1)]:
            span, clipped = last.region(*index), last.region(*index, (size, size + 3))
            if span == clipped:  # the field lies inside the image: its two ends are always taps
                assert receptive_box(model, (1, size, size + 3), index=index) == span, (model, size, index)
                checked += 1
            else:  # part of it in the padding; dilation holes may leave the clipped ends unreached
                try:
                    top, bottom, left, right = receptive_box(model, (1, size, size + 3), index=index)
                except ValueError:  # a unit whose taps all fall in the padding
                    continue
                assert clipped[0] <= top <= bottom <= clipped[1] and clipped[2] <= left <= right <= clipped[3]
    assert checked >= 1


@pytest.mark.parametrize("seed", range(6))
def test_recursion_equals_seed004_top_down(seed):
    layers = receptive_fields(_random_stack(random.Random(100 + seed)), 400)
    assert layers[-1].rf[0] == _seed004_top_down(layers)


def test_unpadded_field_measured_equals_rf():
    model = nn.Sequential(nn.Conv2d(1, 3, 3, dilation=2), nn.ReLU(), nn.MaxPool2d(3, stride=2, dilation=2),
                          nn.Conv2d(3, 2, (5, 3), stride=(2, 1)), nn.AvgPool2d(2))
    last = receptive_fields(model, 64)[-1]
    # by hand, rows: 1 + 2*2 = 5, + 2*2*1 = 9 (j 2), + 4*2 = 17 (j 4), + 1*4 = 21 (j 8);
    # columns: 5, 9 (j 2), + 2*2 = 13 (j 2), + 1*2 = 15 (j 4)
    assert last.rf == (21, 15) and last.jump == (8, 4)
    assert empirical_receptive_field(model, (1, 64, 64)) == last.rf


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_and_ceil_mode():
    # "same" pads d (k - 1) = 3 in all, 1 before and 2 after; the ceil-mode pool's last window sticks out
    model = nn.Sequential(nn.Conv2d(1, 1, 4, padding="same"), nn.MaxPool2d(2, ceil_mode=True))
    layers = receptive_fields(model, 7)
    assert layers[0].size == (7, 7) and layers[0].padding == (1, 1) and layers[0].rf == (4, 4)
    assert layers[1].size == (4, 4) and layers[1].start == (1.0, 1.0) and layers[1].region(3, 3, 7) == (5, 6, 5, 6)
    assert tuple(model(torch.rand(1, 1, 7, 7)).shape[2:]) == (4, 4)
    for index in [(0, 0), (3, 3), (1, 2)]:
        assert receptive_box(model, (1, 7, 7), index=index) == layers[1].region(*index, 7)
    dilated = nn.Sequential(nn.Conv2d(1, 1, 4, padding="same", dilation=2))
    (layer,) = receptive_fields(dilated, 15)
    assert layer.padding == (3, 3) and layer.rf == (7, 7) and layer.size == (15, 15)
    assert receptive_box(dilated, (1, 15, 15)) == layer.region(7, 7)


def test_unsupported_modules():
    block = nn.Sequential(Bottleneck(4, 4), nn.ReLU())
    with pytest.raises(ValueError, match="Bottleneck"):
        receptive_fields(block, 16)
    with pytest.raises(ValueError, match="Flatten"):
        receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten()), 8)
    lenet = LeNet5()
    with pytest.raises(ValueError, match="LeNet5"):
        receptive_fields(lenet, 28)
    stopped = receptive_fields(lenet, 28, chains=(LeNet5,), unsupported="stop")
    assert [l.name for l in stopped] == [f"features.{i}" for i in range(6)] and stopped[-1].rf == (16, 16)
    skipped = receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=1), nn.Conv2d(1, 1, 3)), 8,
                               unsupported="skip")
    assert [l.kind for l in skipped] == ["Conv2d", "Upsample (skipped)", "Conv2d"] and skipped[-1].rf == (5, 5)
    with pytest.raises(ValueError, match="unsupported"):
        receptive_fields(lenet.features, 28, unsupported="ignore")
    with pytest.raises(ValueError, match="larger input_size"):
        receptive_fields(lenet.features, 8)


def test_measured_follows_residual_blocks():
    # The recursion cannot read a residual block; the measurement can: two bottlenecks (1x1, 3x3, 1x1 each) -> 5.
    model = nn.Sequential(Bottleneck(4, 8), Bottleneck(8, 8))
    assert empirical_receptive_field(model, (4, 15, 15)) == (5, 5)
    assert empirical_receptive_field(nn.Sequential(Bottleneck(4, 8, stride=2), Bottleneck(8, 8)), (4, 15, 15)) == (7, 7)


def test_bad_arguments():
    model = nn.Sequential(nn.Conv2d(2, 3, 3))
    with pytest.raises(ValueError, match="input_shape"):
        receptive_box(model, (8, 8))
    with pytest.raises(ValueError, match="channel"):
        receptive_box(model, (2, 8, 8), channel=3)
    with pytest.raises(ValueError, match="index"):
        receptive_box(model, (2, 8, 8), index=(6, 0))
    with pytest.raises(ValueError, match="C_out, H_out"):
        receptive_box(nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten()), (2, 8, 8))
