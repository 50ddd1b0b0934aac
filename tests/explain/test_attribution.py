"""Attribution maps against captum 0.9.0 on the same model and input, plus hand-computed cases and model hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepnotes.explain.attribution import (grad_cam, guided_backprop, integrated_gradients, lime, occlusion,
                                           saliency, smoothgrad)
from deepnotes.models.registry import create_model

captum_attr = pytest.importorskip("captum.attr")

TIGHT = dict(rtol=1e-9, atol=1e-12)  # float64 models: only the order of float sums differs
# captum rounds the integrated-gradient quadrature weights to float32 (torch.tensor(step_sizes).float()), ours stay
# in the input's dtype: a relative difference of float32's epsilon where a weight is not a power of two.
CAPTUM_IG = dict(rtol=2e-7, atol=1e-12)


def tiny_cnn(in_channels: int = 1, num_classes: int = 5, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """(B, C, 8, 8) -> (B, K); inplace ReLUs after the convolutions, a plain one in the classifier."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 16, 16), nn.ReLU(), nn.Linear(16, num_classes),
    ).to(dtype).eval()


def images(batch: int = 3, channels: int = 1, size: int = 8, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)


TARGETS = torch.tensor([0, 3, 4])


class Linear(nn.Module):
    """logits = x.flatten() @ W: every gradient-based map has a closed form."""

    def __init__(self, shape: tuple[int, ...], num_classes: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(int(np.prod(shape)), num_classes, dtype=torch.float64,
                                               generator=torch.Generator().manual_seed(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight


# ---- saliency -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("use_abs", [True, False])
def test_saliency_matches_captum(use_abs):
    model, x = tiny_cnn(), images()
    ours = saliency(model, x, TARGETS, abs=use_abs)
    ref = captum_attr.Saliency(model).attribute(x.clone().requires_grad_(), target=TARGETS, abs=use_abs)
    assert ours.shape == x.shape and not ours.requires_grad
    torch.testing.assert_close(ours, ref, **TIGHT)
    assert ours.abs().sum() > 0


def test_saliency_of_a_linear_model_is_its_weight_row():
    x = images(2, 2, 4)
    model = Linear(x.shape[1:])
    ours = saliency(model, x, 1, abs=False)
    torch.testing.assert_close(ours, model.weight[:, 1].detach().view(1, 2, 4, 4).expand(2, -1, -1, -1), **TIGHT)


def test_saliency_on_lenet5_with_inplace_relus_and_small_batches():
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10).eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ref = captum_attr.Saliency(model).attribute(x.clone().requires_grad_(), target=7)
    torch.testing.assert_close(saliency(model, x, 7, batch_size=2), ref, rtol=1e-5, atol=1e-7)


# ---- SmoothGrad -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("squared, nt_type", [(False, "smoothgrad"), (True, "smoothgrad_sq")])
def test_smoothgrad_matches_captum_noise_tunnel_with_the_same_noise(squared, nt_type):
    # captum draws its noise from the global RNG with torch.normal(0, std) over (B * n, C, H, W); ours draws
    # standard normals of the same shape from the generator: the same seed gives the same numbers.
    model, x = tiny_cnn(dtype=torch.float32), images(dtype=torch.float32)
    ours = smoothgrad(model, x, TARGETS, n_samples=7, sigma=0.2, relative=False, squared=squared,
                      generator=torch.Generator().manual_seed(5), batch_size=4)
    torch.manual_seed(5)
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
        x, nt_type=nt_type, nt_samples=7, stdevs=0.2, target=TARGETS)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    plain = saliency(model, x, TARGETS)
    assert not torch.allclose(ours, plain**2 if squared else plain, rtol=1e-2)  # the noise did something


def test_smoothgrad_relative_sigma_is_a_fraction_of_the_image_range():
    model = tiny_cnn(dtype=torch.float32)
    x = images(1, dtype=torch.float32) * 3 - 1
    ours = smoothgrad(model, x, 2, n_samples=5, sigma=0.1, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(3)
    std = 0.1 * float(x.max() - x.min())
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(x, nt_samples=5, stdevs=std, target=2)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_smoothgrad_is_reproducible_and_zero_noise_gives_saliency():
    model, x = tiny_cnn(), images()
    a = smoothgrad(model, x, TARGETS, n_samples=4, generator=torch.Generator().manual_seed(0))
    b = smoothgrad(model, x, TARGETS, n_samples=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(smoothgrad(model, x, TARGETS, n_samples=3, sigma=0.0), saliency(model, x, TARGETS),
                               **TIGHT)


# ---- integrated gradients ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre", "riemann_left", "riemann_middle",
                                    "riemann_right"])
def test_integrated_gradients_matches_captum(method):
    model, x = tiny_cnn(), images()
    baseline = torch.full_like(x, 0.25)
    ours, delta = integrated_gradients(model, x, TARGETS, baseline=baseline, steps=16, method=method,
                                       batch_size=10, return_delta=True)
    ref, ref_delta = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=baseline, target=TARGETS, n_steps=16, method=method, return_convergence_delta=True)
    torch.testing.assert_close(ours, ref, **CAPTUM_IG)
    torch.testing.assert_close(delta, ref_delta, rtol=2e-7, atol=1e-9)


def test_integrated_gradients_default_baseline_is_zeros():
    model, x = tiny_cnn(), images()
    # (captum's default method is gausslegendre, ours riemann_trapezoid: Sundararajan et al.'s Riemann sum)
    ref = captum_attr.IntegratedGradients(model).attribute(x, target=2, n_steps=10, method="riemann_trapezoid")
    torch.testing.assert_close(integrated_gradients(model, x, 2, steps=10), ref, **CAPTUM_IG)


def test_integrated_gradients_is_exact_for_a_linear_model_and_converges_on_a_cnn():
    x = images(2, 1, 4)
    model = Linear(x.shape[1:])
    ig, delta = integrated_gradients(model, x, 2, baseline=0.5, steps=3, method="gausslegendre", return_delta=True)
    torch.testing.assert_close(ig, (x - 0.5) * model.weight[:, 2].detach().view(1, 1, 4, 4), **TIGHT)
    torch.testing.assert_close(delta, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    # Completeness on a nonlinear model: the Gauss-Legendre error shrinks as steps grow.
    cnn, x = tiny_cnn(), images()
    errors = [integrated_gradients(cnn, x, TARGETS, steps=s, method="gausslegendre", return_delta=True)[1].abs().max()
              for s in (2, 64)]
    assert errors[1] < errors[0] and errors[1] < 1e-3


# ---- occlusion ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window, stride, captum_window, captum_stride", [
    (3, 2, (3, 3, 3), (1, 2, 2)),  # the last window clipped at the border (8 = 0, 2, 4, 6 + 3 - 1)
    ((1, 4, 4), (1, 3, 3), (1, 4, 4), (1, 3, 3)),  # per channel, overlapping
    ((2, 2), None, (3, 2, 2), (3, 2, 2)),  # tiles
])
def test_occlusion_matches_captum(window, stride, captum_window, captum_stride):
    model, x = tiny_cnn(3), images(channels=3)
    ours = occlusion(model, x, TARGETS, window=window, stride=stride, baseline=0.5, batch_size=7)
    ref = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=captum_window, strides=captum_stride,
                                                 baselines=0.5, target=TARGETS)
    # captum divides a float32 copy of its float64 sums by the counts (format_result: .float() / weight)
    assert ref.dtype == torch.float32
    torch.testing.assert_close(ours, ref.double(), rtol=1e-6, atol=1e-9)
    assert ours.abs().sum() > 0


def test_occlusion_of_single_pixels_of_a_linear_model():
    x = images(2, 1, 4)
    model = Linear(x.shape[1:])
    ours = occlusion(model, x, 0, window=1, stride=1, baseline=0.3)
    torch.testing.assert_close(ours, (x - 0.3) * model.weight[:, 0].detach().view(1, 1, 4, 4), **TIGHT)


def test_occlusion_rejects_bad_windows_and_strides():
    model, x = tiny_cnn(), images()
    with pytest.raises(ValueError, match="window"):
        occlusion(model, x, 0, window=9)
    with pytest.raises(ValueError, match="stride"):
        occlusion(model, x, 0, window=2, stride=3)


# ---- guided backprop ---------------------------------------------------------------------------------------------

CAPTUM_RELU_WARNING = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")


@CAPTUM_RELU_WARNING
def test_guided_backprop_matches_captum_with_inplace_relus():
    model, x = tiny_cnn(), images()
    ours = guided_backprop(model, x, TARGETS, batch_size=2)
    ref = captum_attr.GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=TARGETS)
    torch.testing.assert_close(ours, ref, **TIGHT)
    assert not torch.allclose(ours, saliency(model, x, TARGETS, abs=False))  # it is not the plain gradient


@CAPTUM_RELU_WARNING
def test_guided_backprop_on_lenet5():
    torch.manual_seed(1)
    model = create_model("lenet5", in_channels=1, num_classes=10).double().eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = captum_attr.GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=3)
    torch.testing.assert_close(guided_backprop(model, x, 3), ref, **TIGHT)


def test_guided_backprop_of_one_hidden_unit_by_hand():
    # y = v * relu(w x): the guided gradient is v w where w x > 0 and v > 0, else 0.
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 1, bias=False), nn.ReLU(), nn.Linear(1, 2, bias=False)).double()
    with torch.no_grad():
        model[1].weight.fill_(2.0)
        model[3].weight.copy_(torch.tensor([[3.0], [-3.0]]))
    x = torch.tensor([1.0, -1.0], dtype=torch.float64).view(2, 1, 1, 1)
    got = guided_backprop(model, x, 0).flatten().tolist()
    assert got == [6.0, 0.0]
    assert guided_backprop(model, x, 1).flatten().tolist() == [0.0, 0.0]  # negative gradient blocked
    assert saliency(model, x, 1, abs=False).flatten().tolist() == [-6.0, 0.0]


def test_guided_backprop_needs_relu_modules():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.Tanh())
    with pytest.raises(ValueError, match="nn.ReLU"):
        guided_backprop(model, images(dtype=torch.float32), 0)


# ---- Grad-CAM ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_index", [2, 3, 4])  # a conv followed by an inplace ReLU, the ReLU, the pooling
def test_grad_cam_matches_captum_layer_grad_cam(layer_index):
    model, x = tiny_cnn(), images()
    layer = model[layer_index]
    ours = grad_cam(model, layer, x, TARGETS, upsample=False)
    ref = captum_attr.LayerGradCam(model, layer).attribute(x, target=TARGETS, relu_attributions=True)
    assert ours.shape == ref.shape == (3, 1, *ref.shape[2:])
    torch.testing.assert_close(ours, ref, **TIGHT)
    assert ours.sum() > 0
    up = grad_cam(model, layer, x, TARGETS)
    assert up.shape == (3, 1, 8, 8)
    torch.testing.assert_close(up, captum_attr.LayerAttribution.interpolate(ref, (8, 8), "bilinear"), **TIGHT)


def test_grad_cam_by_hand_on_a_global_average_pool_model():
    # y_k = sum_c V[k, c] mean_ij A_cij with A = the input: dy/dA_cij = V[k, c] / (h w), so the map is
    # relu(sum_c V[k, c] A_c) / (h w), the class activation map of Zhou et al. 2016.
    pool = nn.Identity()
    model = nn.Sequential(pool, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2, bias=False)).double()
    x = images(2, 3, 4)
    v = model[3].weight.detach()
    expected = torch.relu(torch.einsum("c,bchw->bhw", v[1], x))[:, None] / 16
    torch.testing.assert_close(grad_cam(model, pool, x, 1, upsample=False), expected, **TIGHT)


def test_grad_cam_rejects_a_foreign_layer():
    with pytest.raises(ValueError, match="submodule"):
        grad_cam(tiny_cnn(), nn.Conv2d(1, 1, 1), images(), 0)


# ---- LIME --------------------------------------------------------------------------------------------------------

def test_lime_matches_captum_lime_on_the_same_samples():
    from captum._utils.models.linear_model import SkLearnRidge

    model = tiny_cnn(3, dtype=torch.float32)
    image = images(1, 3, dtype=torch.float32)[0]
    blocks = torch.arange(8)[:, None] // 4 * 4 + torch.arange(8)[None] // 2  # 2 x 4 blocks of 4 x 2 pixels
    ours = lime(model, image, 4, segments=blocks * 3 + 5, n_samples=60, generator=torch.Generator().manual_seed(0),
                batch_size=16)
    seg = ours.segments
    n_seg = int(seg.max()) + 1
    assert ours.map.shape == image.shape and ours.weights.shape == (n_seg,) and n_seg == 8
    torch.testing.assert_close(ours.map, ours.weights[seg].expand_as(image), rtol=0, atol=0)
    # captum's Lime with our masks (row 0 all ones), our kernel, a ridge of alpha 1, hidden segments at their mean.
    masks = ours.samples.long()
    assert masks[0].eq(1).all() and 0 < masks[1:].float().mean() < 1

    def perturb(original, **kwargs):
        yield from (row[None] for row in masks)

    def similarity(original, perturbed, interpretable, **kwargs):
        d = 1 - torch.sqrt(interpretable.float().sum() / n_seg)
        return torch.sqrt(torch.exp(-d**2 / 0.25**2))

    means = torch.stack([torch.stack([image[c][seg == s].mean() for s in range(n_seg)])[seg] for c in range(3)])
    explainer = captum_attr.Lime(lambda x: model(x).softmax(dim=1), interpretable_model=SkLearnRidge(alpha=1.0),
                                 similarity_func=similarity, perturb_func=perturb)
    ref = explainer.attribute(image[None], target=4, baselines=means[None], feature_mask=seg[None, None],
                              n_samples=len(masks), perturbations_per_eval=8)
    # captum fits the ridge on float32 copies of the samples, ours on float64: float32-level agreement
    torch.testing.assert_close(ours.map[None], ref, rtol=1e-5, atol=1e-9)
    assert ref.abs().max() > 1e-4
    # The probabilities and kernel weights the surrogate saw, recomputed by hand for a few samples.
    for i in (0, 7, 33):
        shown = masks[i][seg].bool()
        perturbed = torch.where(shown, image, means)
        p = model(perturbed[None]).softmax(dim=1)[0, 4]
        torch.testing.assert_close(ours.probs[i], p, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours.sample_weights[i], similarity(None, None, masks[i]), rtol=1e-6, atol=0)


def test_lime_without_penalty_is_the_weighted_least_squares_solution():
    model = tiny_cnn(dtype=torch.float32)
    image = images(1, dtype=torch.float32)[0]
    segments = torch.arange(64).view(8, 8) // 16  # four horizontal bands
    res = lime(model, image, 1, segments=segments, n_samples=40, alpha=0.0, baseline=0.0,
               generator=torch.Generator().manual_seed(1))
    z = np.hstack([np.ones((40, 1)), res.samples.double().numpy()])
    w = np.sqrt(res.sample_weights.double().numpy())[:, None]
    solution = np.linalg.lstsq(z * w, res.probs.double().numpy() * w[:, 0], rcond=None)[0]
    np.testing.assert_allclose(res.intercept, solution[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.weights.double().numpy(), solution[1:], rtol=1e-4, atol=1e-7)


class SegmentMeans(nn.Module):
    """Two classes with p(class 0) = c + sum_s a_s * mean of segment s (logits = log p, log(1 - p))."""

    def __init__(self, segments: torch.Tensor, coefficients: torch.Tensor, offset: float):
        super().__init__()
        self.segments, self.coefficients, self.offset = segments, coefficients, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.coefficients)
        sums = x.new_zeros(len(x), n).index_add_(1, self.segments.flatten(), x[:, 0].flatten(1))
        means = sums / torch.bincount(self.segments.flatten(), minlength=n)
        p = self.offset + means @ self.coefficients
        return torch.stack([p.log(), (1 - p).log()], dim=1)


def test_lime_recovers_the_ranking_of_segments_of_a_linear_model():
    # Hiding segment s (baseline 0) changes p by -a_s m_s: the surrogate's weights must rank the segments so.
    segments = (torch.arange(16)[:, None] // 4 * 4 + torch.arange(16)[None] // 4)  # 16 blocks of 4x4
    image = 0.2 + 0.8 * images(1, 1, 16, dtype=torch.float32)[0]
    coefficients = torch.linspace(-0.04, 0.05, 16)[torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    model = SegmentMeans(segments, coefficients, offset=0.4)
    res = lime(model, image, 0, segments=segments, n_samples=400, baseline=0.0,
               generator=torch.Generator().manual_seed(0))
    block_means = torch.stack([image[0][segments == s].mean() for s in range(16)])
    truth = coefficients * block_means
    assert torch.equal(torch.argsort(res.weights), torch.argsort(truth))
    torch.testing.assert_close(res.weights, truth, rtol=0.1, atol=2e-3)  # ridge shrinks a little


def test_lime_segments_by_slic_cover_the_image_and_are_reproducible():
    model = tiny_cnn(dtype=torch.float32)
    image = torch.zeros(1, 8, 8)
    image[:, :, 4:] = 1.0
    a = lime(model, image, 0, n_segments=4, n_samples=10, generator=torch.Generator().manual_seed(0))
    b = lime(model, image, 0, n_segments=4, n_samples=10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.weights, b.weights)
    labels = a.segments.unique().tolist()
    assert labels == list(range(len(labels))) and len(labels) >= 2
    for s in labels:  # SLIC follows the edge: no superpixel straddles the two halves
        assert image[0][a.segments == s].unique().numel() == 1


# ---- argument checks and model hygiene ---------------------------------------------------------------------------

def _snapshot(model: nn.Module):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])


def _assert_clean(model: nn.Module, snapshot) -> None:
    assert _snapshot(model) == snapshot
    assert all(p.grad is None for p in model.parameters())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


METHODS = {
    "saliency": lambda m, x, t: saliency(m, x, t),
    "smoothgrad": lambda m, x, t: smoothgrad(m, x, t, n_samples=2),
    "integrated_gradients": lambda m, x, t: integrated_gradients(m, x, t, steps=3, return_delta=True),
    "occlusion": lambda m, x, t: occlusion(m, x, t, window=4),
    "guided_backprop": lambda m, x, t: guided_backprop(m, x, t),
    "grad_cam": lambda m, x, t: grad_cam(m, m[3], x, t),
    "lime": lambda m, x, t: lime(m, x[0], t if isinstance(t, int) else int(t[0]), segments=torch.zeros(8, 8,
                                 dtype=torch.long) + (torch.arange(8) >= 4), n_samples=4),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_methods_leave_the_model_as_they_found_it_even_on_error(name):
    model = tiny_cnn()
    model.train()
    model[4].eval()  # mixed modes survive
    model[0].weight.requires_grad_(False)
    before = _snapshot(model)
    x = images(1)
    METHODS[name](model, x, 1)
    _assert_clean(model, before)
    with pytest.raises(ValueError, match="target"):
        METHODS[name](model, x, 99)  # fails inside the forward pass, after any hook is set
    _assert_clean(model, before)


def test_eval_mode_is_used_inside():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(64, 3)).double().train()
    x = images(2)
    torch.testing.assert_close(saliency(model, x, 0), saliency(model.eval(), x, 0), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(x=torch.zeros(8, 8)), "x must be"),
    (dict(target=torch.tensor([0, 1])), "target must be"),
    (dict(target=-1), "target must be"),
    (dict(target=torch.tensor([0.0, 1.0, 2.0])), "target must be"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    args = dict(x=images(), target=0) | kwargs
    with pytest.raises(ValueError, match=match):
        saliency(tiny_cnn(), args["x"], args["target"])


def test_bad_method_arguments():
    model, x = tiny_cnn(), images()
    with pytest.raises(ValueError, match="method"):
        integrated_gradients(model, x, 0, method="simpson")
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(model, x, 0, steps=1)
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, x, 0, baseline=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="n_samples"):
        smoothgrad(model, x, 0, n_samples=0)
    with pytest.raises(ValueError, match="image"):
        lime(model, x, 0)
    with pytest.raises(ValueError, match="segments"):
        lime(model, x[0], 0, segments=torch.zeros(4, 4, dtype=torch.long))
