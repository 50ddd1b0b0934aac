"""From uint8 image batches to what a network trains on: normalization, augmentation, progressive resizing.

:class:`ImageBatchPreparer` is a ``prepare_batch(x, y, train, generator)`` for
:class:`deepnotes.train.ClassificationTask`: in training it draws a random rotation and scaling (``rotation``,
``scaling``; :mod:`deepnotes.data.affine`), a random crop (``padding``), a mirror image (``hflip``) and random
erasing from the Trainer's seeded generator, in that order (:mod:`deepnotes.data.augment`),
then normalizes ``(x / 255 - mean) / std`` with the training set's pixel statistics
(:func:`deepnotes.data.images.pixel_mean_std`);
evaluation only normalizes.

Progressive resizing (Howard's DAWNBench entry, 2018; Touvron et al., "Fixing the train-test resolution
discrepancy", 2019, on why the last epochs should see the test resolution): while ``epoch()`` is below
``low_res_epochs``, training batches are downscaled to ``low_res`` x ``low_res`` pixels after augmentation
(bilinear with antialiasing), so the early updates cost less; later epochs and every evaluation use full size.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from deepnotes.data.affine import random_affine
from deepnotes.data.augment import random_crop, random_erasing, random_hflip
from deepnotes.data.images import to_pixels


def pixel_preparer(device: torch.device) -> Callable[[torch.Tensor, torch.Tensor, bool, torch.Generator | None],
                                                       tuple[torch.Tensor, torch.Tensor]]:
    """``prepare_batch(x, y, train, generator)``: uint8 images -> pixels in [0, 1] (:func:`to_pixels`) and labels,
    on ``device``; no augmentation, no normalization (for models that normalize inside,
    :mod:`deepnotes.models.pixels`)."""
    return lambda x, y, train, generator: (to_pixels(x).to(device), y.to(device))


class ImageBatchPreparer:
    """uint8 batch -> augmented, normalized float batch on the device.

    Args:
        mean, std: pixel statistics of the training images in [0, 1] (:func:`~deepnotes.data.images.pixel_mean_std`).
        padding: random-crop padding in pixels (0 disables); also the shift of test-time augmentation.
        hflip: mirror training images with probability 0.5 (and add mirrors to test-time augmentation).
        device: where batches go.
        channels_last: NHWC memory layout.
        cpu_bf16: evaluation runs under bfloat16 autocast on the CPU (as training did). Default False.
        erasing: random-erasing probability per image (0 disables). Default 0.
        low_res, low_res_epochs: progressive resizing (see the module docstring; 0 disables). Default 0.
        rotation, scaling: turn each training image by up to ``rotation`` degrees and resize it by up to
            ``scaling`` (:func:`deepnotes.data.affine.random_affine`), before the crop; 0 and 0 (default) draw nothing.

    Attributes:
        epoch: ``epoch() -> int``, the 0-based epoch being trained (point it at the Trainer's counter);
            default always 0.

    Shapes:
        ``(x, y, train, generator)``: x (B, C, H, W) uint8, y (B,) -> x (B, C, H', W') float on the device, y.
    """

    def __init__(self, mean: float, std: float, padding: int, hflip: bool, device: torch.device, channels_last: bool,
                 cpu_bf16: bool = False, erasing: float = 0.0, low_res: int = 0, low_res_epochs: int = 0,
                 rotation: float = 0.0, scaling: float = 0.0):
        self.mean, self.std, self.padding, self.hflip, self.erasing = mean, std, padding, hflip, erasing
        self.rotation, self.scaling = rotation, scaling
        self.low_res, self.low_res_epochs = low_res, low_res_epochs
        self.epoch: Callable[[], int] = lambda: 0
        self.device = device
        self.cpu_bf16 = cpu_bf16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, C, H, W) -> ``(x / 255 - mean) / std`` on the device, in the memory layout."""
        x = x.to(self.device, non_blocking=True).float().div_(255.0)
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, train: bool,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        if train:
            x = random_affine(x, self.rotation, self.scaling, generator)
            x = random_crop(x, self.padding, generator)
            if self.hflip:
                x = random_hflip(x, 0.5, generator)
            if self.erasing > 0:
                x = random_erasing(x, self.erasing, generator=generator)
            if self.low_res and self.epoch() < self.low_res_epochs:
                x = F.interpolate(self.normalize(x), size=(self.low_res, self.low_res), mode="bilinear",
                                  antialias=True, align_corners=False)  # (B, C, low_res, low_res)
                return x.contiguous(memory_format=self.memory_format), y.to(self.device, non_blocking=True)
        return self.normalize(x), y.to(self.device, non_blocking=True)
