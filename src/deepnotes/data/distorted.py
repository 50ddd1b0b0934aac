"""Distorted MNIST of Jaderberg et al. 2015 ("Spatial Transformer Networks", section 4.1 and appendix A), from real
digits: rotated (R), rotated-translated-scaled (RTS), projective (P), elastic (E) and translated-cluttered (TC).

Every warp here is done by :mod:`scipy.ndimage` (``affine_transform``, ``map_coordinates``, ``gaussian_filter``) with
bilinear interpolation (``order=1``), never by :mod:`deepnotes.nn.spatial`, so the data does not depend on the
module it is used to test. Deterministic from an integer seed (one ``numpy.random.Generator`` per call).

The distortions (our reading of the paper's description; the ranges below are its, the rest our choices):

- ``R``: rotation by an angle uniform in [-90, 90] degrees about the image centre; 28x28.
- ``RTS``: rotation uniform in [-45, 45] degrees, scale uniform in [0.7, 1.2], then a random position in a 42x42
  canvas; the position is drawn so the whole (transformed) digit stays inside the canvas.
- ``P``: scale uniform in [0.75, 1.0] about the centre, then a projective warp that moves each of the four image
  corners by a Gaussian offset (std :data:`P_CORNER_STD` pixels per coordinate); 28x28.
- ``E``: Simard, Steinkraus and Platt 2003 ("Best practices for convolutional neural networks applied to visual
  document analysis"): per-pixel displacements uniform in [-1, 1], smoothed by a Gaussian of std
  :data:`ELASTIC_SIGMA` pixels and scaled by :data:`ELASTIC_ALPHA` pixels; 28x28. (The paper's E set used
  random thin-plate-spline control-point displacements; Simard's fields are the classic elastic distortion.)
- ``TC``: the untouched digit at a random position of a 60x60 canvas, plus :data:`TC_CLUTTER` random 6x6 crops of
  other digits of the same batch (cropped inside their digit's bounding box, so they are not blank) at random
  positions, merged by a pixel-wise maximum.

Anchors (:data:`JADERBERG_TABLE1`, :data:`JADERBERG_TC`): the paper's test errors, trained on the full 60,000
MNIST digits; our sets come from the 4,000/1,000 digit ``mnist-subset``, so expect higher errors here.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from deepnotes.data.images import ImageSplit

#: The distortion kinds, in the paper's order (TC last).
DISTORTIONS: tuple[str, ...] = ("R", "RTS", "P", "E", "TC")

#: Side S of the (S, S) output images of each kind, for 28x28 inputs.
OUTPUT_SIZE: dict[str, int] = {"R": 28, "RTS": 42, "P": 28, "E": 28, "TC": 60}

#: Ranges of the random transforms (degrees, scale factors), from the paper's appendix A.
R_MAX_ANGLE = 90.0
RTS_MAX_ANGLE = 45.0
RTS_SCALE = (0.7, 1.2)
P_SCALE = (0.75, 1.0)
#: Std of the projective corner offsets, pixels (our choice: about a tenth of the 28-pixel side).
P_CORNER_STD = 2.5
#: Simard et al.'s elastic field: Gaussian std and displacement scale, pixels (the values usual for MNIST).
ELASTIC_SIGMA = 4.0
ELASTIC_ALPHA = 34.0
#: Number and side of the clutter crops of TC.
TC_CLUTTER = 6
TC_CLUTTER_SIZE = 6

#: Jaderberg et al. 2015, Table 1 (left): test error (%) on distorted MNIST, per model and distortion.
#: Aff / Proj / TPS: the spatial transformer's transform (affine, projective, 16-point thin plate spline).
#: Section 4.1's text repeats the RTS column (CNN 0.8, ST-FCN 0.8, ST-CNN 0.5 and 0.6).
JADERBERG_TABLE1: dict[str, dict[str, float]] = {
    "FCN": {"R": 2.1, "RTS": 5.2, "P": 3.1, "E": 3.2},
    "CNN": {"R": 1.2, "RTS": 0.8, "P": 1.5, "E": 1.4},
    "ST-FCN Aff": {"R": 1.2, "RTS": 0.8, "P": 1.5, "E": 2.7},
    "ST-FCN Proj": {"R": 1.3, "RTS": 0.9, "P": 1.4, "E": 2.6},
    "ST-FCN TPS": {"R": 1.1, "RTS": 0.8, "P": 1.4, "E": 2.4},
    "ST-CNN Aff": {"R": 0.7, "RTS": 0.5, "P": 0.8, "E": 1.2},
    "ST-CNN Proj": {"R": 0.8, "RTS": 0.6, "P": 0.8, "E": 1.3},
    "ST-CNN TPS": {"R": 0.7, "RTS": 0.5, "P": 0.8, "E": 1.1},
}

#: Jaderberg et al. 2015, section 4.1: test error (%) on 60x60 translated cluttered MNIST.
JADERBERG_TC: dict[str, float] = {"FCN": 13.2, "CNN": 3.5, "ST-FCN": 2.0, "ST-CNN": 1.7}


def _rotation(angle_deg: float) -> np.ndarray:
    """2x2 rotation in (row, col) coordinates, counter-clockwise on screen for a positive angle (rows point down)."""
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def rotate_scale_translate(image: np.ndarray, angle: float, scale: float = 1.0, out_size: int | None = None,
                           center: tuple[float, float] | None = None) -> np.ndarray:
    """Rotate ``image`` about its centre, scale it, and put its centre at ``center`` of an ``out_size`` canvas.

    The forward map of a point ``p = (row, col)`` is ``p' = scale * R(angle) (p - c_in) + center`` with
    ``c_in = ((H - 1) / 2, (W - 1) / 2)``; scipy's ``affine_transform`` samples the inverse map, bilinearly, with
    zeros outside.

    Args:
        image: (H, W) float array.
        angle: degrees, counter-clockwise on screen (as ``scipy.ndimage.rotate`` and ``np.rot90``).
        scale: size factor (> 0). Default 1.
        out_size: side of the square output; default the larger of H, W.
        center: (row, col) of the output where the input's centre lands; default the output's centre.

    Returns:
        (out_size, out_size) float64 array.

    Raises:
        ValueError: ``image`` is not 2-D, or ``scale <= 0``.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {image.shape}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    size = out_size if out_size is not None else max(image.shape)
    c_in = (np.array(image.shape, dtype=float) - 1) / 2
    c_out = np.full(2, (size - 1) / 2) if center is None else np.asarray(center, dtype=float)
    inverse = _rotation(-angle) / scale  # output -> input
    offset = c_in - inverse @ c_out
    return ndimage.affine_transform(image.astype(np.float64), inverse, offset, output_shape=(size, size), order=1,
                                    mode="constant", cval=0.0)


def _random_position(image: np.ndarray, angle: float, scale: float, size: int, rng: np.random.Generator,
                     margin: float = 2.0) -> np.ndarray:
    """A uniformly random output position of the input's centre such that every lit pixel (plus ``margin`` pixels
    for the interpolation's spread) lands inside the ``size`` canvas; the canvas centre if it cannot fit."""
    c_in = (np.array(image.shape, dtype=float) - 1) / 2
    lit = np.argwhere(image > 0).astype(float)  # (K, 2) (row, col)
    if lit.size == 0:
        return np.full(2, (size - 1) / 2)
    moved = (lit - c_in) @ (scale * _rotation(angle)).T  # (K, 2), relative to the landing point
    low, high = moved.min(axis=0) - margin, moved.max(axis=0) + margin
    lo, hi = -low, size - 1 - high  # allowed range of the landing point, per axis
    centred = (size - 1) / 2 - (low + high) / 2
    return np.where(lo <= hi, rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi)), centred)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 matrix H (h33 = 1) with ``H (src_i, 1) ~ (dst_i, 1)`` for four point pairs (direct linear transform)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    h = np.linalg.solve(np.array(rows), np.array(rhs))
    return np.append(h, 1.0).reshape(3, 3)


def _projective(image: np.ndarray, scale: float, corner_noise: np.ndarray) -> np.ndarray:
    """Warp so the image's corners, scaled about the centre and moved by ``corner_noise`` (4, 2), are the new ones."""
    n = image.shape[0]
    corners = np.array([[0, 0], [0, n - 1], [n - 1, 0], [n - 1, n - 1]], dtype=float)  # (row, col)
    centre = (n - 1) / 2
    target = (corners - centre) * scale + centre + corner_noise
    inverse = _homography(target, corners)  # output (row, col) -> input (row, col)
    rr, cc = np.mgrid[0:n, 0:n].astype(float)
    points = inverse @ np.stack([rr.ravel(), cc.ravel(), np.ones(n * n)])  # (3, n*n)
    coords = points[:2] / points[2]
    return ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0).reshape(n, n)


def _elastic(image: np.ndarray, rng: np.random.Generator, sigma: float, alpha: float) -> np.ndarray:
    """Simard et al.'s elastic distortion: smoothed random displacement fields, sampled bilinearly."""
    fields = rng.uniform(-1.0, 1.0, size=(2, *image.shape))
    dr, dc = (alpha * ndimage.gaussian_filter(f, sigma, mode="constant", cval=0.0) for f in fields)
    rr, cc = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(float)
    return ndimage.map_coordinates(image, [rr + dr, cc + dc], order=1, mode="constant", cval=0.0)


def _clutter_crop(image: np.ndarray, rng: np.random.Generator, side: int) -> np.ndarray:
    """A random ``side`` x ``side`` crop whose top-left corner lies inside the digit's bounding box."""
    lit = np.argwhere(image > 0)
    n = image.shape[0]
    if lit.size == 0:
        r, c = rng.integers(0, n - side + 1, size=2)
    else:
        (r0, c0), (r1, c1) = lit.min(axis=0), lit.max(axis=0)
        r = min(int(rng.integers(r0, r1 + 1)), n - side)
        c = min(int(rng.integers(c0, c1 + 1)), n - side)
    return image[r:r + side, c:c + side]


def _translated_cluttered(images: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    n, side = images.shape[0], images.shape[1]
    out = np.zeros((n, size, size))
    for i in range(n):
        for _ in range(TC_CLUTTER):
            other = int(rng.integers(0, n - 1))
            other += other >= i  # any digit but this one
            crop = _clutter_crop(images[other], rng, TC_CLUTTER_SIZE)
            r, c = rng.integers(0, size - TC_CLUTTER_SIZE + 1, size=2)
            out[i, r:r + TC_CLUTTER_SIZE, c:c + TC_CLUTTER_SIZE] = crop
        r, c = rng.integers(0, size - side + 1, size=2)
        window = out[i, r:r + side, c:c + side]
        np.maximum(window, images[i], out=window)
    return out


def distort(images: torch.Tensor | np.ndarray, kind: str, seed: int) -> torch.Tensor:
    """Jaderberg et al.'s distorted version ``kind`` of every image (see the module docstring).

    Args:
        images: (N, 1, 28, 28) uint8 digits, 0-255 (e.g. ``ImageSplit.images``); TC needs N >= 2 (its clutter
            comes from the other digits).
        kind: one of :data:`DISTORTIONS`.
        seed: seed of the ``numpy.random.Generator`` that draws every random choice; the same seed and images
            give the same output.

    Returns:
        (N, 1, S, S) uint8 tensor with ``S = OUTPUT_SIZE[kind]``.

    Raises:
        ValueError: unknown ``kind``; ``images`` not uint8 (N, 1, 28, 28); TC with fewer than 2 images.

    Example::

        train = get_image_dataset("mnist-subset").load("train")
        rts = distort(train.images, "RTS", seed=0)  # (4000, 1, 42, 42) uint8
    """
    if kind not in DISTORTIONS:
        raise ValueError(f"kind must be one of {', '.join(DISTORTIONS)}, got {kind!r}")
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != (1, 28, 28):
        raise ValueError(f"images must be uint8 (N, 1, 28, 28), got {array.dtype} {array.shape}")
    if kind == "TC" and array.shape[0] < 2:
        raise ValueError("TC clutters each digit with crops of the others: images needs N >= 2")
    rng = np.random.default_rng(seed)
    digits = array[:, 0].astype(np.float64)  # (N, 28, 28)
    n, size = digits.shape[0], OUTPUT_SIZE[kind]
    if kind == "TC":
        out = _translated_cluttered(digits, rng, size)
    elif kind == "R":
        angles = rng.uniform(-R_MAX_ANGLE, R_MAX_ANGLE, n)
        out = np.stack([rotate_scale_translate(d, a, 1.0, size) for d, a in zip(digits, angles)])
    elif kind == "RTS":
        angles = rng.uniform(-RTS_MAX_ANGLE, RTS_MAX_ANGLE, n)
        scales = rng.uniform(*RTS_SCALE, n)
        out = np.stack([rotate_scale_translate(d, a, s, size, _random_position(d, a, s, size, rng))
                        for d, a, s in zip(digits, angles, scales)])
    elif kind == "P":
        scales = rng.uniform(*P_SCALE, n)
        noise = rng.normal(0.0, P_CORNER_STD, size=(n, 4, 2))
        out = np.stack([_projective(d, s, e) for d, s, e in zip(digits, scales, noise)])
    else:  # "E"
        out = np.stack([_elastic(d, rng, ELASTIC_SIGMA, ELASTIC_ALPHA) for d in digits])
    pixels = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return torch.from_numpy(pixels[:, None])  # (N, 1, S, S)


def distort_split(split: ImageSplit, kind: str, seed: int) -> ImageSplit:
    """:func:`distort` applied to an :class:`ImageSplit`: same labels and classes, distorted (N, 1, S, S) images.

    Raises:
        ValueError: as :func:`distort`.
    """
    images = distort(split.images, kind, seed)
    return ImageSplit(images, split.labels, split.classes, f"{split.source}, distortion {kind} (seed {seed})")
