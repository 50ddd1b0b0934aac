"""Edge maps of grey images (Canny's detector), the inputs of a paired image-to-image task: edges -> image.

Source: Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017, section 4
(edges -> photo: "edges ... generated using the HED edge detector" on shoes and handbags; here, on 28x28
Fashion-MNIST images, Canny's detector, J. Canny 1986, as scikit-image implements it: Gaussian smoothing, Sobel
gradients, non-maximum suppression, hysteresis between two thresholds). Edge detection is not what the course
teaches, so the library does it (:func:`skimage.feature.canny`).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.feature import canny

__all__ = ["canny_edges"]


def canny_edges(images: torch.Tensor | np.ndarray, sigma: float = 1.0, low_threshold: float = 0.1,
                high_threshold: float = 0.2) -> torch.Tensor:
    """Canny edge maps of grey images, one per image, paired with them index for index.

    Each image is scaled to [0, 1] (``/ 255``) and passed to ``skimage.feature.canny(image, sigma, low_threshold,
    high_threshold)``: a pixel is an edge where the gradient of the Gaussian-smoothed image is a local maximum
    across the edge and the hysteresis keeps it (above ``high_threshold``, or above ``low_threshold`` and connected
    to such a pixel). Thresholds are in units of the gradient magnitude of an image in [0, 1] (scikit-image's
    defaults for float images: 0.1 and 0.2 of the dtype's maximum, 1).

    Args:
        images: uint8 ``(N, 1, H, W)``, 0-255 (a tensor or an array).
        sigma: standard deviation of the Gaussian smoothing, in pixels (default 1.0: thin edges of 28x28 images;
            larger values keep only the coarse outline).
        low_threshold, high_threshold: hysteresis thresholds (defaults 0.1 and 0.2), ``0 <= low <= high``.

    Returns:
        uint8 tensor ``(N, 1, H, W)`` with values 0 (no edge) or 255 (edge): an image in the same units as
        ``images``, so the project's pixel helpers (:func:`deepnotes.data.images.to_pixels`) read both alike.

    Raises:
        ValueError: ``images`` not uint8 of shape (N, 1, H, W); ``sigma < 0``; thresholds negative or
            ``low_threshold > high_threshold``.
    """
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 1:
        raise ValueError(f"images must be uint8 of shape (N, 1, H, W), got {array.dtype} {array.shape}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if not 0 <= low_threshold <= high_threshold:
        raise ValueError(f"thresholds must satisfy 0 <= low <= high, got {low_threshold} and {high_threshold}")
    out = np.zeros(array.shape, dtype=np.uint8)
    for i, image in enumerate(array[:, 0]):
        edges = canny(image.astype(np.float64) / 255.0, sigma=sigma, low_threshold=low_threshold,
                      high_threshold=high_threshold)  # (H, W) bool
        out[i, 0][edges] = 255
    return torch.from_numpy(out)
