"""Canny edge maps of uint8 images: the library's own output, where edges fall on a known image, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.feature import canny

from deepnotes.data.edges import canny_edges


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth random blobs, uint8 (n, 1, 28, 28)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, 32, 32, generator=g), 5, 1)  # (n, 1, 28, 28)
    x = (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True))
    return (x * 255).round().to(torch.uint8)


def test_matches_skimage_canny_image_by_image():
    x = _images()
    edges = canny_edges(x, sigma=1.5, low_threshold=0.05, high_threshold=0.15)
    assert edges.shape == x.shape and edges.dtype == torch.uint8
    assert set(edges.unique().tolist()) <= {0, 255}
    for i in range(len(x)):
        ref = canny(x[i, 0].numpy() / 255.0, sigma=1.5, low_threshold=0.05, high_threshold=0.15)
        assert np.array_equal(edges[i, 0].numpy() == 255, ref)
    assert edges.float().mean() > 0  # the blobs have edges


def test_a_step_has_its_edge_at_the_step_only():
    x = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    x[..., 14:] = 200  # dark left half, bright right half: one vertical edge between columns 13 and 14
    cols = (canny_edges(x)[0, 0] == 255).nonzero()[:, 1]
    assert len(cols) > 0 and set(cols.tolist()) <= {13, 14}
    assert canny_edges(torch.full((2, 1, 28, 28), 77, dtype=torch.uint8)).sum() == 0  # a flat image has none


def test_accepts_numpy_and_rejects_bad_input():
    x = _images(2)
    assert torch.equal(canny_edges(x.numpy()), canny_edges(x))
    with pytest.raises(ValueError, match="uint8"):
        canny_edges(x.float())
    with pytest.raises(ValueError, match="uint8"):
        canny_edges(x.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="sigma"):
        canny_edges(x, sigma=-1)
    with pytest.raises(ValueError, match="thresholds"):
        canny_edges(x, low_threshold=0.3, high_threshold=0.2)
