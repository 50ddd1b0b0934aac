"""A few natural photos that load offline, for the pretrained ImageNet classifier of the trustworthy-ML labs.

They come from scikit-image's ``skimage.data`` module, which ships them inside the installed package (no download).
Each function's docstring in ``skimage.data`` gives the image's origin and licence:

- ``astronaut``: Eileen Collins, NASA Great Images database; public domain.
- ``camera``: a photographer with a camera on a tripod, by Lav Varshney; CC0. Grayscale, replicated to RGB here.
- ``chelsea``: Chelsea the cat, by Stefan van der Walt; CC0.
- ``coffee``: a coffee cup, by Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0.
- ``motorcycle``: the left view of ``skimage.data.stereo_motorcycle()``, from the Middlebury 2014 stereo benchmark
  (Scharstein et al. 2014, "High-resolution stereo datasets with subpixel-accurate ground truth"), down-sampled 4x
  by scikit-image; no licence is stated beyond the request to cite that paper.
- ``rocket``: the DSCOVR launch on a Falcon 9, SpaceX; released into the public domain.

The other ``skimage.data`` images are either downloaded on first use (so not offline), or microscopy, astronomy and
texture images far from ImageNet's classes.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import skimage.data

_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skimage.data.astronaut,
    "camera": skimage.data.camera,
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
    "rocket": skimage.data.rocket,
}

#: Names accepted by :func:`load_photo`, sorted.
PHOTOS: tuple[str, ...] = tuple(_LOADERS)


def load_photo(name: str) -> np.ndarray:
    """The photo ``name`` (one of :data:`PHOTOS`) as uint8 RGB of shape (H, W, 3).

    Grayscale photos (``camera``) have their one channel repeated three times.

    Raises:
        ValueError: ``name`` is not in :data:`PHOTOS` (the message lists them).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown photo name {name!r}; choose one of: {', '.join(PHOTOS)}")
    image = np.asarray(_LOADERS[name]())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    return np.ascontiguousarray(image, dtype=np.uint8)


def load_photos(names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """``{name: load_photo(name)}`` for ``names`` (default: every name of :data:`PHOTOS`), in the given order.

    Raises:
        ValueError: a name is not in :data:`PHOTOS`.
    """
    return {name: load_photo(name) for name in (PHOTOS if names is None else names)}
