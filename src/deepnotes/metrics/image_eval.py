"""Scoring an image classifier on a split: accuracy, cross-entropy, confusion matrix, with and without TTA.

Test-time augmentation (TTA) averages the softmax over AlexNet's views (Krizhevsky et al. 2012, EE-559 8-2): the
centre, the four corner shifts by the crop padding, and their mirrors where a mirror keeps the class
(:func:`deepnotes.data.augment.tta_probabilities`). Loss: the mean of ``-log p(y | x)`` over the split (ML2021
lecture 3 and HW3's cross-entropy); accuracy: the share of ``argmax p == y``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.data.augment import tta_probabilities
from deepnotes.data.image_batches import ImageBatchPreparer
from deepnotes.data.images import ImageSplit
from deepnotes.metrics.classification import confusion_matrix, mistakes_first_order


@torch.no_grad()
def predict_probabilities(model: nn.Module, prep: ImageBatchPreparer, images: torch.Tensor, tta: bool,
                          batch_size: int = 500) -> torch.Tensor:
    """Class probabilities of ``model`` (put in eval mode) for uint8 ``images`` (N, C, H, W): (N, K) on the CPU;
    with ``tta`` averaged over the test-time views of ``prep.padding`` and ``prep.hflip``. Runs under bfloat16
    autocast on the CPU when ``prep.cpu_bf16``."""
    model.eval()
    out = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prep.cpu_bf16 and prep.device.type == "cpu"):
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            if tta:
                out.append(tta_probabilities(model, x, prep.padding, prep.hflip, prep.normalize).float().cpu())
            else:
                out.append(model(prep.normalize(x)).float().softmax(-1).cpu())
    return torch.cat(out)


def evaluate_images(model: nn.Module, prep: ImageBatchPreparer, split: ImageSplit,
                    tta: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Score ``model`` on ``split`` (at least one image), single view and (``tta``) with test-time augmentation.

    Returns:
        ``(metrics, arrays)``. metrics: ``n``, ``acc``, ``loss``, ``confusion_matrix`` (K x K list, rows true),
        ``eval_time_s``; with ``tta`` also ``acc_tta``, ``tta_views``, ``tta_time_s``. arrays: ``labels``, ``pred``
        (N,), ``pred_tta`` with ``tta``, and the 48 images shown in a report, mistakes first (``grid_images``,
        ``grid_labels``, ``grid_pred``).
    """
    y = split.labels
    t0 = time.perf_counter()
    probs = predict_probabilities(model, prep, split.images, tta=False)
    pred = probs.argmax(-1)
    metrics: dict[str, Any] = {
        "n": len(y),
        "acc": float((pred == y).float().mean()),
        "loss": float(F.nll_loss(probs.clamp_min(1e-12).log(), y)),
        "confusion_matrix": confusion_matrix(y.numpy(), pred.numpy(), len(split.classes)).tolist(),
        "eval_time_s": time.perf_counter() - t0,
    }
    arrays = {"labels": y, "pred": pred}
    if tta:
        t0 = time.perf_counter()
        pred_tta = predict_probabilities(model, prep, split.images, tta=True).argmax(-1)
        metrics["acc_tta"] = float((pred_tta == y).float().mean())
        metrics["tta_views"] = (5 if prep.padding > 0 else 1) * (2 if prep.hflip else 1)
        metrics["tta_time_s"] = time.perf_counter() - t0
        arrays["pred_tta"] = pred_tta
    idx = torch.from_numpy(np.ascontiguousarray(mistakes_first_order(y.numpy(), pred.numpy())[:48])).long()
    arrays.update(grid_images=split.images[idx].contiguous(), grid_labels=y[idx], grid_pred=pred[idx])
    return metrics, arrays


@torch.no_grad()
def mean_loss_accuracy(model: nn.Module, prepare: Callable, images: torch.Tensor, labels: torch.Tensor,
                       batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (put in eval mode) on ``images`` (N, ...) and ``labels`` (N,),
    ``batch_size`` at a time through ``prepare(x, y, False, None) -> (inputs, targets)`` (e.g. an
    :class:`ImageBatchPreparer`)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for s in range(0, len(labels), batch_size):
        xb, yb = prepare(images[s : s + batch_size], labels[s : s + batch_size], False, None)
        logits = model(xb).float()
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(-1) == yb).sum())
    return loss_sum / len(labels), correct / len(labels)
