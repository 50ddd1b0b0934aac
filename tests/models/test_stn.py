"""Plain CNN and ST-CNN for distorted digits: shapes, gradients, identity start, and the same parameter budget."""

from __future__ import annotations

import pytest
import torch

from deepnotes.models.stn import DigitCNN, STCNN, count_parameters, digit_cnn_num_params, matched_cnn


@pytest.mark.parametrize("size", [28, 42, 60])
def test_forward_backward_shapes(size):
    torch.manual_seed(0)
    x = torch.rand(3, 1, size, size)
    st, plain = STCNN(image_size=size), matched_cnn(image_size=size)
    for model in (st, plain):
        logits = model(x)
        assert logits.shape == (3, 10)
        logits.sum().backward()
    assert st.transformer.last_theta.shape == (3, 2, 3)
    assert st.transformed(x).shape == (3, 1, size, size)
    # at the identity start only the regression layer (of the localization net) gets a gradient: its weights are 0
    assert st.transformer.regressor.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in plain.parameters())


@pytest.mark.parametrize("size,output_size,transform", [(28, None, "affine"), (42, None, "affine"),
                                                        (60, None, "affine"), (60, 30, "affine"),
                                                        (28, None, "projective"), (42, 28, "projective")])
def test_same_budget_within_ten_percent(size, output_size, transform):
    st = STCNN(image_size=size, output_size=output_size, transform=transform)
    plain = matched_cnn(image_size=size, output_size=output_size, transform=transform)
    n_st, n_plain = count_parameters(st), count_parameters(plain)
    assert abs(n_plain - n_st) / n_st < 0.10
    assert n_plain == digit_cnn_num_params(size, plain.channels)


def test_documented_counts():
    # the table in deepnotes.models.stn's docstring
    assert count_parameters(STCNN(image_size=28)) == 34_266
    assert count_parameters(STCNN(image_size=28).transformer) == 5_328
    assert (count_parameters(matched_cnn(image_size=28)), matched_cnn(image_size=28).channels) == (34_354, (18, 36))
    assert count_parameters(matched_cnn(image_size=60, output_size=30)) == 34_156


def test_st_cnn_starts_as_its_cnn_on_the_input():
    torch.manual_seed(0)
    st = STCNN(image_size=42)
    x = torch.rand(4, 1, 42, 42)
    torch.testing.assert_close(st(x), st.cnn(x), atol=1e-5, rtol=0)


def test_readable_sampler_gives_the_same_model():
    torch.manual_seed(0)
    fast = STCNN(image_size=28)
    torch.nn.init.normal_(fast.transformer.regressor.weight, std=0.05)
    slow = STCNN(image_size=28, fast=False)
    slow.load_state_dict(fast.state_dict())
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(fast(x), slow(x), atol=1e-5, rtol=0)


def test_bad_sizes():
    with pytest.raises(ValueError, match="28x28"):
        STCNN(image_size=28)(torch.rand(1, 1, 42, 42))
    with pytest.raises(ValueError, match="60x60"):
        DigitCNN(image_size=60)(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="image_size"):
        DigitCNN(image_size=2)
    with pytest.raises(ValueError, match="channels"):
        DigitCNN(channels=(0, 4))
