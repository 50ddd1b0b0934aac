"""The image batch preparer: normalization, augmentation draws, progressive resizing."""

import torch
import torch.nn.functional as F

from deepnotes.data.affine import random_affine
from deepnotes.data.augment import random_crop, random_hflip
from deepnotes.data.image_batches import ImageBatchPreparer


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g), torch.arange(n)


def test_evaluation_only_normalizes_and_training_augments_in_a_fixed_order():
    x, y = _batch()
    prep = ImageBatchPreparer(0.25, 0.5, padding=2, hflip=True, device=torch.device("cpu"), channels_last=False)
    xe, ye = prep(x, y, False, None)
    torch.testing.assert_close(xe, (x.float() / 255 - 0.25) / 0.5)
    assert torch.equal(ye, y) and xe.dtype == torch.float32
    got, _ = prep(x, y, True, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    want = prep.normalize(random_hflip(random_crop(x, 2, g), 0.5, g))  # crop, then flip, from one generator
    torch.testing.assert_close(got, want)


def test_rotation_and_scaling_come_first_from_the_same_generator():
    x, y = _batch()
    prep = ImageBatchPreparer(0.25, 0.5, padding=2, hflip=False, device=torch.device("cpu"), channels_last=False,
                              rotation=10.0, scaling=0.1)
    got, _ = prep(x, y, True, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    want = prep.normalize(random_crop(random_affine(x, 10.0, 0.1, g), 2, g))  # turn and resize, then crop
    torch.testing.assert_close(got, want)
    assert not torch.equal(got, prep.normalize(random_crop(x, 2, torch.Generator().manual_seed(7))))


def test_no_augmentation_draws_nothing_from_the_generator():
    x, y = _batch()
    prep = ImageBatchPreparer(0.1, 0.3, padding=0, hflip=False, device=torch.device("cpu"), channels_last=False)
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    torch.testing.assert_close(prep(x, y, True, g)[0], prep.normalize(x))
    assert torch.equal(g.get_state(), state)  # the training order of random draws is the engine's alone


def test_progressive_resizing_downscales_only_early_training_batches():
    prep = ImageBatchPreparer(72.9, 90.0, padding=0, hflip=False, device=torch.device("cpu"), channels_last=True,
                              low_res=16, low_res_epochs=2)
    x, y = _batch()
    epoch = 0
    prep.epoch = lambda: epoch
    small, yy = prep(x, y, True, torch.Generator().manual_seed(0))
    assert small.shape == (4, 1, 16, 16) and torch.equal(yy, y)
    assert small.is_contiguous(memory_format=torch.channels_last)
    want = F.interpolate(prep.normalize(x), size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(small, want)
    assert prep(x, y, False, None)[0].shape == (4, 1, 28, 28)  # evaluation always at full size
    epoch = 2
    full, _ = prep(x, y, True, torch.Generator().manual_seed(0))
    torch.testing.assert_close(full, prep.normalize(x))  # padding 0, no flip: the normalized images themselves


def test_pixel_preparer_scales_to_unit_range_without_normalizing():
    from deepnotes.data.image_batches import pixel_preparer

    x = torch.tensor([[[[0, 51], [255, 128]]]], dtype=torch.uint8)
    px, y = pixel_preparer(torch.device("cpu"))(x, torch.tensor([3]), True, None)
    torch.testing.assert_close(px, torch.tensor([[[[0.0, 0.2], [1.0, 128 / 255]]]]))
    assert px.dtype == torch.float32 and y.tolist() == [3]
