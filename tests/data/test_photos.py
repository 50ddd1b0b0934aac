"""The offline natural photos: names, shapes, dtype, grayscale replication, bad names."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from deepnotes.data.photos import PHOTOS, load_photo, load_photos


def test_every_photo_is_uint8_rgb():
    photos = load_photos()
    assert tuple(photos) == PHOTOS
    assert set(PHOTOS) == {"astronaut", "camera", "chelsea", "coffee", "motorcycle", "rocket"}
    for name, image in photos.items():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert image.std() > 10, name  # a real photo, not a blank image
    assert photos["chelsea"].shape == (300, 451, 3)
    assert photos["coffee"].shape == (400, 600, 3)
    np.testing.assert_array_equal(photos["astronaut"], skimage.data.astronaut())


def test_grayscale_is_replicated():
    camera = load_photo("camera")
    assert camera.shape == (512, 512, 3)
    for c in range(3):
        np.testing.assert_array_equal(camera[:, :, c], skimage.data.camera())


def test_selection_and_bad_name():
    assert list(load_photos(["coffee", "chelsea"])) == ["coffee", "chelsea"]
    with pytest.raises(ValueError, match="unknown photo name 'dog'.*chelsea"):
        load_photo("dog")
    with pytest.raises(ValueError, match="cat"):
        load_photos(["cat"])
