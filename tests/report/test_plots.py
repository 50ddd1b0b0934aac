"""Tests for deepnotes.report.plots: every figure is a valid PNG, written atomically."""

import os

import matplotlib.image
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from deepnotes.report import (
    plot_confusion_matrix,
    plot_image_grid,
    plot_learning_curves,
    plot_lr_schedule,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    """A complete PNG that matplotlib reads back, and nothing else left in the directory."""
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


ROWS = [
    {"epoch": 1, "step": 10, "lr": 0.1, "train_loss": 1.2, "train_acc": 0.55, "val_loss": 1.0, "val_acc": 0.6},
    {"epoch": 2, "step": 20, "lr": 0.05, "train_loss": 0.8, "train_acc": 0.75, "val_loss": None, "val_acc": None},
    {"epoch": 3, "step": 30, "lr": 0.01, "train_loss": 0.5, "train_acc": 0.85, "val_loss": 0.6, "val_acc": 0.82},
]


def test_learning_curves_png(tmp_path):
    path = tmp_path / "curves.png"
    assert plot_learning_curves(ROWS, path, title="toy") == path
    assert_png(path)


def test_learning_curves_loss_only_and_repeated_epochs(tmp_path):
    rows = [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.7}]
    path = tmp_path / "loss.png"
    plot_learning_curves(rows, path)
    assert_png(path)


def test_learning_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="rows is empty"):
        plot_learning_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no numeric"):
        plot_learning_curves([{"epoch": 1, "note": "x"}], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_confusion_matrix_png(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]])  # last class has no samples
    path = tmp_path / "cm.png"
    plot_confusion_matrix(cm, ["cat", "dog", "a long class name"], path, title="toy")
    assert_png(path)


def test_confusion_matrix_errors(tmp_path):
    with pytest.raises(ValueError, match="cm must be a square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="classes has 1 names"):
        plot_confusion_matrix(np.eye(2), ["a"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="negative"):
        plot_confusion_matrix(-np.eye(2), ["a", "b"], tmp_path / "cm.png")


@pytest.mark.parametrize(
    "images",
    [
        np.random.default_rng(0).integers(0, 256, size=(10, 3, 8, 8), dtype=np.uint8),  # RGB uint8
        torch.randn(10, 1, 8, 8),  # normalized grayscale tensor, stretched per image
    ],
    ids=["rgb-uint8", "gray-float-tensor"],
)
def test_image_grid_png(tmp_path, images):
    true = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    pred = np.array([0, 2, 2, 0, 1, 0, 0, 1, 2, 1])
    path = tmp_path / "grid.png"
    plot_image_grid(images, true, pred, ["zero", "one", "two"], path, ncols=4, max_images=9, title="toy")
    assert_png(path)


def test_image_grid_errors(tmp_path):
    imgs = np.zeros((3, 1, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="true has 2 labels"):
        plot_image_grid(imgs, [0, 1], [0, 1, 1], None, tmp_path / "g.png")
    with pytest.raises(ValueError, match="pred has 4 labels"):
        plot_image_grid(imgs, [0, 1, 1], [0, 1, 1, 1], None, tmp_path / "g.png")
    with pytest.raises(ValueError, match="images must be"):
        plot_image_grid(np.zeros((3, 2, 4, 4)), [0, 1, 1], [0, 1, 1], None, tmp_path / "g.png")
    with pytest.raises(ValueError, match="images is empty"):
        plot_image_grid(np.zeros((0, 1, 4, 4)), [], [], None, tmp_path / "g.png")
    with pytest.raises(ValueError, match="ncols"):
        plot_image_grid(imgs, [0, 1, 1], [0, 1, 1], None, tmp_path / "g.png", ncols=0)


def test_lr_schedule_png(tmp_path):
    path = tmp_path / "lr.png"
    plot_lr_schedule([0.1 * min(1.0, (s + 1) / 10) for s in range(50)], path)
    assert_png(path)
    with pytest.raises(ValueError, match="lrs must be"):
        plot_lr_schedule([], tmp_path / "lr2.png")


def test_failed_savefig_keeps_previous_png(tmp_path, monkeypatch):
    path = tmp_path / "lr.png"
    plot_lr_schedule([0.1, 0.05], path)
    before = path.read_bytes()

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_SIGNATURE)  # half a file
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="killed"):
        plot_lr_schedule([0.1, 0.01], path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["lr.png"]
