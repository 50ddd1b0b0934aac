"""Shift data: MNIST-M-style blends checked pixel by pixel against the photos, digits-8x8's framing and split,
the spurious-background benchmark's measured correlation, and the dataset entries' build/reload round trip."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from numpy.lib.stride_tricks import sliding_window_view

from deepnotes.data.download import sha256_file
from deepnotes.data.images import get_image_dataset, load_idx_folder
from deepnotes.data.shift import (BACKGROUND_SHORT_SIDE, DEFAULT_BACKGROUNDS, DEFAULT_PHOTOS, HELD_OUT_PHOTOS,
                                  HELD_OUT_SHIFT_DATASETS, PHOTO_SHORT_SIDE, SHIFT_DATASETS, SHIFT_PHOTOS,
                                  SPLIT_SEED_OFFSET,
                                  blend_with_photos, digits8_split_indices, digits_8x8,
                                  random_photo_crops, scaled_photo, shift_photo, spurious_backgrounds)
from deepnotes.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """300 real MNIST test digits and their labels (mnist-subset, no download)."""
    part = get_image_dataset("mnist-subset").load("test")
    return part.images[:300], part.labels[:300]


def _abs_diff(patches: np.ndarray, grey: np.ndarray) -> np.ndarray:
    return np.abs(patches.astype(np.int16) - grey.astype(np.int16)).astype(np.uint8)


def test_photo_lists_load_and_held_out_photos_are_disjoint_from_the_defaults():
    assert not set(HELD_OUT_PHOTOS) & set(DEFAULT_PHOTOS)
    assert not set(HELD_OUT_PHOTOS) & set(DEFAULT_BACKGROUNDS)
    assert len(set(DEFAULT_BACKGROUNDS)) == len(DEFAULT_BACKGROUNDS) >= 10
    for name in {*DEFAULT_PHOTOS, *HELD_OUT_PHOTOS, *DEFAULT_BACKGROUNDS}:
        photo = shift_photo(name)
        assert name in SHIFT_PHOTOS and photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    for entry in HELD_OUT_SHIFT_DATASETS.values():
        assert entry.photos == HELD_OUT_PHOTOS and entry.seed not in {e.seed for e in SHIFT_DATASETS.values()}
    with pytest.raises(ValueError, match="unknown photo name 'lena'"):
        shift_photo("lena")


def test_scaled_photo_has_the_short_side_and_keeps_the_colours():
    photo = scaled_photo("chelsea", 120)  # chelsea is 300 x 451
    assert photo.shape == (120, round(451 * 120 / 300), 3) and not photo.flags.writeable
    np.testing.assert_allclose(photo.reshape(-1, 3).mean(0), skimage.data.chelsea().reshape(-1, 3).mean(0), atol=2)
    assert scaled_photo("chelsea", 0).shape == (300, 451, 3)
    with pytest.raises(ValueError, match="short_side"):
        scaled_photo("chelsea", 20)


def test_blend_is_the_absolute_difference_with_a_crop_of_the_photo(digits):
    images, _ = digits
    out = blend_with_photos(images, seed=3)
    assert out.dtype == torch.uint8 and out.shape == (300, 3, 28, 28)
    crops = random_photo_crops(300, DEFAULT_PHOTOS, seed=3)
    np.testing.assert_array_equal(out.numpy(), _abs_diff(crops.images, images.numpy()))  # all channels, pixels
    assert set(np.unique(crops.photo)) == set(range(len(DEFAULT_PHOTOS)))
    for k in (0, 7, 123):  # each crop is the photo's pixels at its corner
        photo = scaled_photo(DEFAULT_PHOTOS[crops.photo[k]], PHOTO_SHORT_SIDE)
        top, left = crops.top[k], crops.left[k]
        np.testing.assert_array_equal(crops.images[k], photo[top:top + 28, left:left + 28].transpose(2, 0, 1))


def test_blend_by_hand_on_the_full_size_photo():
    """A 200-grey image over chelsea at full size: every pixel is |chelsea[top + i, left + j, c] - 200|."""
    grey = np.full((4, 1, 28, 28), 200, dtype=np.uint8)
    grey[:, 0, 10, 11] = 17
    out = blend_with_photos(grey, ["chelsea"], seed=5, short_side=0).numpy()
    crops = random_photo_crops(4, ["chelsea"], seed=5, short_side=0)
    cat = skimage.data.chelsea()
    for k in range(4):
        top, left = int(crops.top[k]), int(crops.left[k])
        assert 0 <= top <= 300 - 28 and 0 <= left <= 451 - 28
        for c in range(3):
            assert out[k, c, 10, 11] == abs(int(cat[top + 10, left + 11, c]) - 17)
            assert out[k, c, 0, 27] == abs(int(cat[top, left + 27, c]) - 200)


def test_blend_is_deterministic_and_the_seed_matters(digits):
    images, _ = digits
    a, b = blend_with_photos(images[:50], seed=1), blend_with_photos(images[:50], seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, blend_with_photos(images[:50], seed=2))
    assert not torch.equal(a, blend_with_photos(images[:50], HELD_OUT_PHOTOS, seed=1))


def test_blend_rejects_bad_input():
    with pytest.raises(ValueError, match=r"images must be uint8 of shape \(N, 1, 28, 28\)"):
        blend_with_photos(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="images must be uint8"):
        blend_with_photos(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="photos: unknown photo name"):
        blend_with_photos(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), ["bsds"])
    with pytest.raises(ValueError, match="at least one photo"):
        blend_with_photos(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), [])


def test_mnist_m_keeps_mnist_subset_labels_and_blends_its_digits():
    entry = SHIFT_DATASETS["mnist-m"]
    base = get_image_dataset("mnist-subset").load("test")
    part = entry.load("test")
    assert part.images.shape == (entry.n_test, 3, 28, 28) and part.images.dtype == torch.uint8
    assert torch.equal(part.labels, base.labels) and part.classes == base.classes
    crops = random_photo_crops(len(base), DEFAULT_PHOTOS, entry.seed + SPLIT_SEED_OFFSET["test"])
    np.testing.assert_array_equal(part.images.numpy(), _abs_diff(crops.images, base.images.numpy()))
    assert torch.equal(part.images, entry.load("test").images)
    assert entry.status().startswith("present")


@pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").exists(), reason="fashion-mnist not installed "
                    "(sudo apt-get install dataset-fashion-mnist)")
def test_fashion_m_test_split_is_fashion_mnist_blended():
    entry = SHIFT_DATASETS["fashion-m"]
    base = get_image_dataset("fashion-mnist").load("test")
    part = entry.load("test")
    assert part.images.shape == (10000, 3, 28, 28) and entry.n_test == 10000 and entry.hflip_ok
    assert torch.equal(part.labels, base.labels)
    crops = random_photo_crops(10000, DEFAULT_PHOTOS, entry.seed + SPLIT_SEED_OFFSET["test"])
    np.testing.assert_array_equal(part.images[:500].numpy(), _abs_diff(crops.images[:500], base.images[:500].numpy()))


def test_digits_8x8_framing_matches_mnist():
    from sklearn.datasets import load_digits
    from skimage.transform import resize

    images, labels = digits_8x8()
    ref = load_digits()
    assert images.shape == (1797, 1, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, ref.target)
    mass = images[:, 0].astype(np.float64)
    assert mass[:, 4:24, 4:24].sum() == mass.sum()  # everything inside the central 20x20 box
    assert mass[:, 4:24, 4:24].reshape(1797, -1).max(1).min() > 150  # every digit has bright strokes
    grid = np.arange(28)
    com_r = (mass.sum(2) * grid).sum(1) / mass.sum((1, 2))
    com_c = (mass.sum(1) * grid).sum(1) / mass.sum((1, 2))
    assert abs(com_r.mean() - 13.5) < 1.0 and abs(com_c.mean() - 13.5) < 1.0
    assert np.median(np.hypot(com_r - 13.5, com_c - 13.5)) < 2.0
    # Averaged back down to 8x8, the box is the original digit (0-16 scaled to 0-255).
    back = resize(mass[:, 4:24, 4:24], (1797, 8, 8), anti_aliasing=True) * 16 / 255
    assert np.corrcoef(back.ravel(), ref.images.ravel())[0, 1] > 0.97
    assert np.abs(back - ref.images).mean() < 1.0


def test_digits_8x8_split_is_fixed_stratified_and_disjoint():
    entry = SHIFT_DATASETS["digits-8x8"]
    train, test = entry.load("train"), entry.load("test")
    assert (len(train), len(test)) == (entry.n_train, entry.n_test) and len(train) + len(test) == 1797
    assert train.images.shape[1:] == (1, 28, 28)
    labels = digits_8x8()[1]
    idx = digits8_split_indices(labels)
    assert not set(idx["train"]) & set(idx["test"]) and len(set(idx["train"]) | set(idx["test"])) == 1797
    counts, test_counts = np.bincount(labels), np.bincount(test.labels.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts, np.rint(0.2 * counts))
    assert len(set(test.labels[:20].tolist())) >= 8  # shuffled: a prefix holds most classes
    assert torch.equal(test.images, entry.load("test").images)


@pytest.mark.parametrize("mode, share", [("aligned", 0.8), ("random", 0.1), ("reversed", 0.0)])
def test_spurious_backgrounds_measured_share_of_own_background(mode, share):
    n, k = 4000, len(DEFAULT_BACKGROUNDS)
    labels = torch.arange(n) % k
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    out, background = spurious_backgrounds(images, labels, bias=0.8, mode=mode, seed=11)
    assert out.shape == (n, 3, 28, 28) and out.dtype == torch.uint8 and background.dtype == torch.int64
    measured = (background == labels).float().mean().item()
    assert abs(measured - share) < 0.025  # 3.5 binomial standard deviations at n = 4000
    if mode == "reversed":
        assert torch.equal(background, (labels + 1) % k)
    if mode == "aligned":  # the others are spread uniformly over the k - 1 other backgrounds
        off = ((background - labels) % k)[background != labels]
        assert set(off.tolist()) == set(range(1, k)) and np.bincount(off.numpy()).max() < 2 * len(off) / (k - 1)
    if mode == "random":
        assert np.bincount(background.numpy(), minlength=k).min() > n / k * 0.8


def test_spurious_backgrounds_crops_come_from_the_named_photos(digits):
    images, labels = digits
    bg_only, background = spurious_backgrounds(torch.zeros_like(images[:12]), labels[:12], mode="random", seed=4)
    for k in range(12):
        name = DEFAULT_BACKGROUNDS[background[k]]
        photo = scaled_photo(name, BACKGROUND_SHORT_SIDE)
        windows = sliding_window_view(photo, (28, 28, 3))[:, :, 0]  # (H - 27, W - 27, 28, 28, 3)
        crop = bg_only[k].permute(1, 2, 0).numpy()
        assert (windows == crop).all(axis=(2, 3, 4)).any(), f"crop {k} is not a crop of {name}"


def test_spurious_backgrounds_composition_keeps_the_object(digits):
    images, labels = digits
    out, background = spurious_backgrounds(images, labels, bias=0.9, mode="aligned", seed=7)
    bg_only, same = spurious_backgrounds(torch.zeros_like(images), labels, bias=0.9, mode="aligned", seed=7)
    assert torch.equal(background, same)  # the draws do not depend on the pixels
    x = images.float()
    alpha = (x / 48).clamp(max=1)
    torch.testing.assert_close(out, torch.round(alpha * x + (1 - alpha) * bg_only.float()).to(torch.uint8), atol=1,
                               rtol=0)
    opaque = (images >= 48).expand(-1, 3, -1, -1)
    assert torch.equal(out[opaque], images.expand(-1, 3, -1, -1)[opaque])
    empty = (images == 0).expand(-1, 3, -1, -1)
    assert torch.equal(out[empty], bg_only[empty])
    again, _ = spurious_backgrounds(images, labels, bias=0.9, mode="aligned", seed=7)
    assert torch.equal(out, again)
    assert not torch.equal(out, spurious_backgrounds(images, labels, bias=0.9, mode="aligned", seed=8)[0])


def test_spurious_backgrounds_rejects_bad_arguments(digits):
    images, labels = digits
    with pytest.raises(ValueError, match="mode must be"):
        spurious_backgrounds(images, labels, mode="adversarial")
    with pytest.raises(ValueError, match="bias must be in"):
        spurious_backgrounds(images, labels, bias=1.5)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        spurious_backgrounds(images, labels, backgrounds=("brick", "grass", "gravel"))
    with pytest.raises(ValueError, match="distinct"):
        spurious_backgrounds(images[:2], torch.tensor([0, 1]), backgrounds=("brick", "brick"))
    with pytest.raises(ValueError, match="labels must be 300 integers"):
        spurious_backgrounds(images, labels[:5])


@pytest.mark.parametrize("name", ["mnist-m", "digits-8x8"])
def test_build_writes_files_whose_reload_equals_load(name, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    entry = SHIFT_DATASETS[name]
    assert entry.locate() is None and "computed on load" in entry.status()
    folder = entry.build()
    assert folder == tmp_path / name and entry.locate() == folder and "built copy at" in entry.status()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == entry.seed and manifest["numpy"] == np.__version__
    for fname, digest in manifest["sha256"].items():
        assert sha256_file(folder / fname) == digest
    for split in ("train", "test"):
        computed, read = entry.load(split), entry.load(split, data_dir=folder)
        assert torch.equal(computed.images, read.images) and torch.equal(computed.labels, read.labels)
    if name == "digits-8x8":  # one channel: MNIST's own layout, readable by the standard loader
        assert torch.equal(load_idx_folder(folder, "test").images, entry.load("test").images)
    else:
        assert manifest["photos"] == list(DEFAULT_PHOTOS) and "channels first" in manifest["image_layout"]
    before = {f: sha256_file(folder / f) for f in manifest["sha256"]}
    entry.build()  # byte-for-byte reproducible
    assert before == {f: sha256_file(folder / f) for f in manifest["sha256"]}


def test_held_out_variant_is_a_dataset_like_the_others():
    entry = dataclasses.replace(SHIFT_DATASETS["mnist-m"], name="mnist-m-mine", photos=HELD_OUT_PHOTOS[:1], seed=99)
    part = entry.load("test")
    assert part.images.shape == (1000, 3, 28, 28) and "motorcycle" in part.source
    assert not torch.equal(part.images, SHIFT_DATASETS["mnist-m"].load("test").images)


def test_load_from_a_missing_folder_names_it(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such folder .*t10k-images-idx3-ubyte.gz"):
        SHIFT_DATASETS["mnist-m"].load("test", tmp_path / "nowhere")
