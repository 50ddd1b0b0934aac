"""Autoregressive image models: exact causality in raster order (by gradients), the plain PixelCNN's blind spot and
the gated one's cure, masks A and B on a hand case, FVSBN and NADE against hand loops, the Bernoulli NLL against
torch, the independent model's closed form, sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepnotes.nn.autoencoder import bernoulli_nll
from deepnotes.nn.pixelcnn import (FVSBN, NADE, GatedBlock, GatedPixelCNN, IndependentBernoulli, MaskedConv2d,
                                   PixelCNN, bits_per_dim, causal_mask, sample)

DT = torch.float64
H = W = 7


def _models():
    torch.manual_seed(0)
    return {
        "masked-conv stack": nn.Sequential(MaskedConv2d(1, 4, 3, "A"), nn.ReLU(), MaskedConv2d(4, 4, 3, "B"),
                                           nn.ReLU(), MaskedConv2d(4, 1, 3, "B")),
        "pixelcnn": PixelCNN(channels=4, num_layers=3, kernel_size=5, hidden_kernel_size=3),
        "gated-pixelcnn": GatedPixelCNN(channels=4, num_layers=3, kernel_size=3, hidden_kernel_size=3),
        "gated-pixelcnn k5": GatedPixelCNN(channels=3, num_layers=2, kernel_size=5, hidden_kernel_size=5),
        "fvsbn": FVSBN((H, W)),
        "nade": NADE((H, W), hidden=6),
    }


def _input_grad(model: nn.Module, x: torch.Tensor, r: int, c: int) -> torch.Tensor:
    """d logit(r, c) / d x, summed over the batch: (H, W)."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 0, r, c].sum(), x)
    return grad.abs().sum((0, 1))


@pytest.mark.parametrize("name", list(_models()))
def test_logit_at_pixel_i_has_zero_gradient_from_pixels_at_or_after_i(name):
    model = _models()[name].to(DT)
    if name == "fvsbn":  # zero-initialized weights would make the check vacuous
        nn.init.normal_(model.weight)
    x = torch.randn(2, 1, H, W, dtype=DT)
    for i in range(H * W):
        r, c = divmod(i, W)
        grad = _input_grad(model, x, r, c).flatten()  # raster order
        assert grad[i:].max() == 0, f"{name}: logit at pixel {i} reads pixel {i + int(grad[i:].argmax())}"
        if i > 0:
            assert grad[i - 1] > 0 or grad[:i].max() > 0  # it does read the past (the check is not vacuous)
    assert _input_grad(model, x, 4, 3).flatten()[4 * W + 2] > 0  # the pixel just left of (4, 3) is read


def test_plain_pixelcnn_has_a_blind_spot_that_the_gated_one_does_not():
    torch.manual_seed(0)
    plain = PixelCNN(channels=4, num_layers=4, kernel_size=3, hidden_kernel_size=3).to(DT)
    gated = GatedPixelCNN(channels=4, num_layers=4, kernel_size=3, hidden_kernel_size=3).to(DT)
    x = torch.randn(2, 1, H, W, dtype=DT)
    r, c = 4, 2
    g_plain, g_gated = _input_grad(plain, x, r, c), _input_grad(gated, x, r, c)
    # 3x3 mask-B layers step at most one column right per row up: (r-1, c+2..) stays unseen however deep
    assert g_plain[r - 1, c + 2:].max() == 0 and g_plain[r - 2, c + 3:].max() == 0
    assert g_plain[r - 1, c + 1] > 0  # one column right is reachable
    # the vertical stack sees every column within its reach in every row above
    assert (g_gated[r - 1, c + 2:c + 5] > 0).all() and (g_gated[r - 2, c + 3:c + 5] > 0).all()
    assert (g_gated[:r, :].flatten() > 0).sum() > (g_plain[:r, :].flatten() > 0).sum()


def test_causal_masks_by_hand():
    assert causal_mask(3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert causal_mask(1, "A").tolist() == [[0]] and causal_mask(1, "B").tolist() == [[1]]
    assert int(causal_mask(7, "A").sum()) == 3 * 7 + 3


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_on_a_single_on_pixel(mask_type):
    conv = MaskedConv2d(1, 1, 3, mask_type, bias=False).to(DT)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 5, 5, dtype=DT)
    x[0, 0, 2, 2] = 1
    expected = torch.zeros(5, 5, dtype=DT)
    expected[3, 1:4] = 1  # the row below reads the pixel as "above"
    expected[2, 3] = 1  # the pixel to its right reads it as "left"
    if mask_type == "B":
        expected[2, 2] = 1  # B keeps the centre
    torch.testing.assert_close(conv(x)[0, 0], expected)


def test_masked_conv_equals_conv2d_with_premasked_weights():
    torch.manual_seed(0)
    ours = MaskedConv2d(3, 5, 5, "B").to(DT)
    ref = nn.Conv2d(3, 5, 5, padding=2).to(DT)
    with torch.no_grad():
        ref.weight.copy_(ours.weight * causal_mask(5, "B").to(DT))
        ref.bias.copy_(ours.bias)
    x = torch.randn(2, 3, 9, 9, dtype=DT)
    torch.testing.assert_close(ours(x), ref(x))
    assert set(ours.state_dict()) == {"weight", "bias"}  # the mask is rebuilt, not saved


def test_gated_block_shapes_and_gate():
    block = GatedBlock(4, 4, 3, "B")
    v, h = torch.randn(2, 4, 6, 5), torch.randn(2, 4, 6, 5)
    v2, h2 = block(v, h)
    assert v2.shape == h2.shape == (2, 4, 6, 5)
    assert v2.abs().max() < 1  # tanh(a) * sigmoid(b) lies in (-1, 1)


def test_fvsbn_equals_a_loop_over_pixels_and_ignores_the_upper_triangle():
    torch.manual_seed(0)
    model = FVSBN((3, 4)).to(DT)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.normal_()
    x = (torch.rand(2, 1, 3, 4) < 0.5).to(DT)
    flat = x.flatten(1)
    expected = torch.stack([model.bias[i] + (model.weight[i, :i] * flat[:, :i]).sum(1) for i in range(12)], 1)
    torch.testing.assert_close(model(x).flatten(1), expected)


def test_nade_equals_a_loop_over_pixels():
    torch.manual_seed(0)
    model = NADE((3, 3), hidden=5).to(DT)
    with torch.no_grad():
        model.c.normal_()
        model.b.normal_()
    x = (torch.rand(2, 1, 3, 3) < 0.5).to(DT)
    flat = x.flatten(1)
    cols = []
    for i in range(9):
        h = torch.sigmoid(model.c + flat[:, :i] @ model.W[:, :i].t())  # (B, hidden)
        cols.append(model.b[i] + h @ model.V[i])
    torch.testing.assert_close(model(x).flatten(1), torch.stack(cols, 1))


def test_bits_per_dim():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_independent_bernoulli_closed_form():
    x = torch.zeros(3, 1, 2, 2)
    x[0, 0, 0, 0] = 1  # pixel (0, 0) on in 1 of 3 images
    x[:, 0, 1, 1] = 1  # pixel (1, 1) on in all 3
    model = IndependentBernoulli((2, 2)).fit(x, alpha=1.0)
    expected = torch.tensor([[math.log(2 / 3), math.log(1 / 4)], [math.log(1 / 4), math.log(4 / 1)]])
    torch.testing.assert_close(model.logits[0, 0], expected.float())
    assert model(torch.zeros(5, 1, 2, 2)).shape == (5, 1, 2, 2)


def test_independent_bernoulli_without_smoothing_is_the_maximum_likelihood():
    torch.manual_seed(0)
    x = (torch.rand(50, 1, 4, 4) < torch.linspace(0.1, 0.9, 16).view(1, 1, 4, 4)).double()
    x[0], x[1] = 0, 1  # every pixel both on and off somewhere: a finite maximum
    model = IndependentBernoulli((4, 4)).to(DT).fit(x, alpha=0.0)
    torch.testing.assert_close(torch.sigmoid(model.logits[0]), x.mean(0))
    loss = bernoulli_nll(model(x), x, "mean")
    (grad,) = torch.autograd.grad(loss, model.logits)
    assert grad.abs().max() < 1e-10  # a stationary point of the likelihood


def test_sampling_shapes_determinism_and_conditioning():
    torch.manual_seed(0)
    model = GatedPixelCNN(channels=4, num_layers=1, kernel_size=3)
    a = sample(model, 3, (1, 5, 4), torch.Generator().manual_seed(7))
    b = sample(model, 3, (1, 5, 4), torch.Generator().manual_seed(7))
    c = sample(model, 3, (1, 5, 4), torch.Generator().manual_seed(8))
    assert a.shape == (3, 1, 5, 4) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training  # restored
    # an FVSBN that copies the previous pixel: the first pixel decides the whole image
    chain = FVSBN((3, 3))
    with torch.no_grad():
        chain.weight.copy_(torch.diag(torch.full((8,), 40.0), -1))
        chain.bias.fill_(-20.0)
    for first, value in ((40.0, 1.0), (-40.0, 0.0)):
        with torch.no_grad():
            chain.bias[0] = first
        assert (sample(chain, 4, (1, 3, 3), torch.Generator().manual_seed(0)) == value).all()


def test_independent_samples_follow_the_pixel_probabilities():
    model = IndependentBernoulli((2, 2))
    with torch.no_grad():
        model.logits.copy_(torch.logit(torch.tensor([[0.1, 0.5], [0.9, 0.02]])).view(1, 1, 2, 2))
    x = sample(model, 4000, (1, 2, 2), torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0)[0], torch.tensor([[0.1, 0.5], [0.9, 0.02]]), atol=0.03, rtol=0)


@pytest.mark.parametrize("build, message", [
    (lambda: MaskedConv2d(1, 1, 4, "A"), "kernel_size must be odd"),
    (lambda: MaskedConv2d(1, 1, 3, "C"), "mask_type must be 'A'"),
    (lambda: GatedBlock(1, 4, 3, "B"), "in_channels \\(1\\) must equal channels \\(4\\)"),
    (lambda: GatedPixelCNN(channels=0), "channels must be an integer >= 1"),
    (lambda: PixelCNN(hidden_kernel_size=2), "hidden_kernel_size must be odd"),
    (lambda: FVSBN((28,)), "shape must be \\(H, W\\)"),
    (lambda: NADE(hidden=0), "hidden must be"),
    (lambda: IndependentBernoulli((2, 2)).fit(torch.zeros(3, 1, 2, 2), alpha=-1), "alpha must be >= 0"),
    (lambda: FVSBN((4, 4))(torch.zeros(2, 1, 5, 5)), "built for 4x4 images"),
    (lambda: GatedPixelCNN()(torch.zeros(2, 3, 8, 8)), "expects images x of shape \\(B, 1, H, W\\)"),
    (lambda: bernoulli_nll(torch.zeros(2, 4), torch.zeros(2, 5)), "same shape"),
    (lambda: bernoulli_nll(torch.zeros(2, 4), torch.zeros(2, 4), "avg"), "reduction must be"),
    (lambda: sample(FVSBN((2, 2)), 0, (1, 2, 2)), "n must be an integer >= 1"),
    (lambda: sample(FVSBN((2, 2)), 1, (3, 2, 2)), "shape must be \\(1, H, W\\)"),
])
def test_errors_name_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_gated_pixelcnn_reach_matches_its_docstring():
    torch.manual_seed(0)
    model = GatedPixelCNN(channels=4, num_layers=6, kernel_size=7, hidden_kernel_size=3).to(DT)  # the lab's shape
    r, c = 20, 14
    seen = _input_grad(model, torch.randn(1, 1, 28, 28, dtype=DT), r, c) > 0
    rows = seen.any(1).nonzero().flatten()
    assert (rows.min() - r, rows.max() - r) == (-10, 0)  # 3 + 6 + 1 rows up
    cols = seen[:r].any(0).nonzero().flatten()
    assert (cols.min() - c, cols.max() - c) == (-9, 9)  # 3 + 6 columns either side
    left = seen[r].nonzero().flatten()
    assert (left.min() - c, left.max() - c) == (-10, -1)  # 4 + 6 pixels to the left, not the pixel itself
