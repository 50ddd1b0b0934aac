"""Passive defenses against scipy.ndimage (blur, median), Pillow round trips (JPEG), and their randomness."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from deepnotes.attacks.defenses import Defended, gaussian_blur, jpeg_compress, median_filter, random_resize_pad
from deepnotes.attacks.gradient import loss_gradient, pgd

MODES = ["reflect", "mirror", "nearest", "wrap", "constant"]


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sigma, kernel_size", [(0.8, None), (1.7, None), (1.0, 3), (4.0, None)])
def test_gaussian_blur_matches_scipy(images, mode, sigma, kernel_size):
    # sigma 4 has radius 16 > the image: the border extension must repeat as scipy's does.
    radius = int(4 * sigma + 0.5) if kernel_size is None else kernel_size // 2
    expected = ndi.gaussian_filter(images.double().numpy(), sigma=(0, 0, sigma, sigma), mode=mode, radius=radius)
    ours = gaussian_blur(images.double(), sigma, kernel_size, mode=mode)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gaussian_blur(images, sigma, kernel_size, mode=mode).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [1, 3, 5])
def test_median_filter_matches_scipy(images, mode, size):
    expected = ndi.median_filter(images.numpy(), size=(1, 1, size, size), mode=mode)
    np.testing.assert_array_equal(median_filter(images, size, mode=mode).numpy(), expected)


def test_median_filter_removes_salt_noise():
    x = torch.full((1, 1, 7, 7), 0.3)
    noisy = x.clone()
    noisy[0, 0, 3, 3] = 1.0
    torch.testing.assert_close(median_filter(noisy), x, rtol=0, atol=0)


def test_jpeg_changes_pixels_and_quality_100_is_near_identity():
    g = torch.Generator().manual_seed(0)
    smooth = gaussian_blur(torch.rand(2, 3, 32, 32, generator=g), 1.5)  # photo-like: little high frequency
    low = jpeg_compress(smooth, quality=10)
    assert (low - smooth).abs().mean() > 0.005
    assert torch.equal(low, (low * 255).round() / 255)  # decoded uint8 values
    for x, options in ((smooth[:, :1], {}), (smooth, {"subsampling": 0})):
        high = jpeg_compress(x, quality=100, **options)
        assert (high - x).abs().max() < 5 / 255  # the uint8 rounding and the RGB <-> YCbCr conversion
        assert (high - x).abs().mean() < 1 / 255
    default = jpeg_compress(smooth, quality=100)  # Pillow's 4:2:0 chroma at every quality
    assert (default - smooth).abs().mean() > (jpeg_compress(smooth, 100, subsampling=0) - smooth).abs().mean()


def test_jpeg_matches_a_pillow_round_trip_and_passes_gradients_straight_through():
    import io

    from PIL import Image

    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    buffer = io.BytesIO()
    Image.fromarray((x[0, 0].numpy() * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=50)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).astype(np.float32) / 255
    xg = x.clone().requires_grad_(True)
    out = jpeg_compress(xg, 50)
    np.testing.assert_allclose(out[0, 0].detach().numpy(), expected, atol=1e-6)
    (grad,) = torch.autograd.grad((out * torch.arange(256.0).view(1, 1, 16, 16)).sum(), xg)
    torch.testing.assert_close(grad, torch.arange(256.0).view(1, 1, 16, 16))


def test_random_resize_pad_shape_randomness_and_reproducibility():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.5  # no zero pixels
    outs = [random_resize_pad(x, generator=torch.Generator().manual_seed(s)) for s in range(6)]
    assert all(o.shape == x.shape for o in outs)
    assert len({o.numpy().tobytes() for o in outs}) > 1  # random across seeds
    torch.testing.assert_close(outs[3], random_resize_pad(x, generator=torch.Generator().manual_seed(3)),
                               rtol=0, atol=0)
    for o in outs:  # zeros come only from the padding: a border band, never all of it
        zero_rows = (o[0, 0] == 0).all(dim=1)
        assert zero_rows.sum() < 28 // 4 and not zero_rows[8:20].any()
    with pytest.raises(ValueError, match="max_scale"):
        random_resize_pad(x, max_scale=1.01)


def test_random_resize_pad_by_hand():
    # 4x4, max_scale 1.5 -> 6: resize to r in [4, 6), pad to 6, back to 4 (nearest). Replay the draws.
    x = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4) / 16
    g = torch.Generator().manual_seed(7)
    out = random_resize_pad(x, max_scale=1.5, generator=g)
    g.manual_seed(7)
    r = int(torch.randint(4, 6, (1,), generator=g))
    top = int(torch.randint(0, 6 - r, (1,), generator=g))
    left = int(torch.randint(0, 6 - r, (1,), generator=g))
    canvas = torch.zeros(6, 6)
    src = (torch.arange(r) * 4 / r).floor().long()  # nearest-neighbour source index of each resized row
    canvas[top:top + r, left:left + r] = x[0, 0][src][:, src]
    back = (torch.arange(4) * 6 / 4).floor().long()
    torch.testing.assert_close(out[0, 0], canvas[back][:, back], rtol=0, atol=0)


def test_defended_applies_the_transform_and_draws_from_its_generator(tiny_cnn, batch):
    x, y = batch
    blurred = Defended(tiny_cnn, functools.partial(gaussian_blur, sigma=1.0))
    torch.testing.assert_close(blurred(x), tiny_cnn(gaussian_blur(x, 1.0)))
    transform = functools.partial(random_resize_pad, max_scale=1.5)
    randomized = Defended(tiny_cnn, transform, generator=torch.Generator().manual_seed(0))
    outputs = [randomized(x) for _ in range(3)]
    assert not (torch.allclose(outputs[0], outputs[1]) and torch.allclose(outputs[0], outputs[2]))  # fresh draws
    randomized.generator.manual_seed(0)
    torch.testing.assert_close(randomized(x), outputs[0], rtol=0, atol=0)
    torch.testing.assert_close(outputs[0], tiny_cnn(transform(x, generator=torch.Generator().manual_seed(0))))
    # attackable end to end, with EOT averaging over the random draws
    grad, _ = loss_gradient(randomized, x, y, eot_samples=4)
    assert grad.abs().sum() > 0
    x_adv = pgd(Defended(tiny_cnn, jpeg_compress), x, y, 0.05, 0.01, 3, random_start=False)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6 and (x_adv != x).any()


def test_defenses_reject_bad_arguments(images):
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(images, 0.0)
    with pytest.raises(ValueError, match="kernel_size"):
        gaussian_blur(images, 1.0, 4)
    with pytest.raises(ValueError, match="mode"):
        gaussian_blur(images, 1.0, mode="edge")
    with pytest.raises(ValueError, match="size"):
        median_filter(images, 2)
    with pytest.raises(ValueError, match="quality"):
        jpeg_compress(images, 0)
    with pytest.raises(ValueError, match="channels"):
        jpeg_compress(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match="x must"):
        median_filter(images + 1)
