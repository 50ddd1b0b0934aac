"""Datasets: readers for the real file formats, where files come from, and builders.

Public API::

    data_root()                                   # paths: $DEEPNOTES_DATA or the user cache dir
    read_idx(path), write_idx(path, array)        # idx: MNIST's binary format, raw or .gz
    sha256_file(path), download(url, dest, sha256)  # download: verified, atomic
    ImageSplit, ImageDatasetInfo, IMAGE_DATASETS, get_image_dataset, load_idx_folder  # images

User-fixable problems (missing or corrupt files, failed downloads, unknown names) raise
:class:`deepnotes.errors.DataError` / :class:`~deepnotes.errors.UserError`.
"""

from deepnotes.data.download import download, sha256_file
from deepnotes.data.idx import read_idx, write_idx
from deepnotes.data.images import IMAGE_DATASETS, ImageDatasetInfo, ImageSplit, get_image_dataset, load_idx_folder
from deepnotes.data.paths import data_root

__all__ = ["IMAGE_DATASETS", "ImageDatasetInfo", "ImageSplit", "data_root", "download", "get_image_dataset",
           "load_idx_folder", "read_idx", "sha256_file", "write_idx"]
