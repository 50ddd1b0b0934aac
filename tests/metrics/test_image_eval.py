"""Scoring an image classifier: accuracy, loss, confusion matrix, TTA, against hand computations."""

import pytest
import torch
import torch.nn.functional as F

from deepnotes.data.augment import tta_views
from deepnotes.data.image_batches import ImageBatchPreparer
from deepnotes.data.images import ImageSplit
from deepnotes.metrics.image_eval import evaluate_images, mean_loss_accuracy, predict_probabilities


def _setup(n=30, k=3):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, k, (n,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, k))
    prep = ImageBatchPreparer(0.5, 0.25, padding=1, hflip=True, device=torch.device("cpu"), channels_last=False)
    return model, prep, ImageSplit(images, labels, tuple("abc"[:k]), "test"), k


def test_single_view_metrics_match_a_direct_computation():
    model, prep, split, k = _setup()
    metrics, arrays = evaluate_images(model, prep, split, tta=False)
    logits = model(prep.normalize(split.images)).detach()
    pred = logits.argmax(-1)
    assert metrics["n"] == 30 and "acc_tta" not in metrics
    assert metrics["acc"] == pytest.approx(float((pred == split.labels).float().mean()))
    assert metrics["loss"] == pytest.approx(float(F.cross_entropy(logits, split.labels)), rel=1e-5)
    cm = torch.zeros(k, k, dtype=torch.long)
    for t, p in zip(split.labels, pred):
        cm[t, p] += 1
    assert metrics["confusion_matrix"] == cm.tolist()
    assert torch.equal(arrays["pred"], pred) and len(arrays["grid_images"]) == 30
    wrong = (arrays["grid_pred"] != arrays["grid_labels"]).tolist()
    assert wrong == sorted(wrong, reverse=True)  # mistakes first


def test_tta_averages_the_softmax_over_the_views():
    model, prep, split, _ = _setup()
    metrics, arrays = evaluate_images(model, prep, split, tta=True)
    assert metrics["tta_views"] == 10  # centre + 4 shifts, and their mirrors
    views = tta_views(split.images, 1, True)
    probs = torch.stack([model(prep.normalize(v)).softmax(-1) for v in views]).mean(0)
    torch.testing.assert_close(predict_probabilities(model, prep, split.images, tta=True, batch_size=7), probs)
    assert torch.equal(arrays["pred_tta"], probs.argmax(-1))
    assert metrics["acc_tta"] == pytest.approx(float((probs.argmax(-1) == split.labels).float().mean()))


def test_mean_loss_accuracy_over_batches_equals_one_pass():
    model, prep, split, _ = _setup()
    loss, acc = mean_loss_accuracy(model, prep, split.images, split.labels, batch_size=7)
    logits = model(prep.normalize(split.images)).detach()
    assert loss == pytest.approx(float(F.cross_entropy(logits, split.labels)), rel=1e-5)
    assert acc == pytest.approx(float((logits.argmax(-1) == split.labels).float().mean()))
    assert not model.training
