"""Metrics of the speech labs: keyword accuracy per word, per synthesizer and under noise, the pocketsphinx
baseline on the same clips, and frame accuracy with per-class recall (phonemes).

* :func:`accuracy_by`: the mean of a 0/1 vector within each group (a clip's engine).
* :func:`worst_words_by_engine`: per engine, the words of lowest accuracy and what they were taken for.
* :func:`keyword_metrics`: everything the keyword-spotting lab reports on a split.
* :func:`pocketsphinx_baseline`: Debian's CMU pocketsphinx with a grammar of only the split's words, on a
  seeded subset, beside the model on the same clips.
* :func:`frame_metrics`: frame accuracy, per-class recall and the confusion matrix (ML2021/2022 HW2).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes.audio.frontend import BatchPreparer, predict
from deepnotes.data.speech import SpeechSplit, engines_of, voices_of
from deepnotes.errors import DataError
from deepnotes.metrics.classification import confusion_matrix


def accuracy_by(groups: Sequence[str], correct: torch.Tensor) -> dict[str, float]:
    """``{group: mean of correct over its rows}``, groups sorted. Shapes: groups (N,), correct (N,) of 0/1."""
    out: dict[str, list[float]] = {}
    for g, c in zip(groups, correct.tolist()):
        out.setdefault(g, []).append(c)
    return {g: sum(v) / len(v) for g, v in sorted(out.items())}


def worst_words_by_engine(engines: Sequence[str], labels: torch.Tensor, pred: torch.Tensor, classes: Sequence[str],
                          k: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Per engine, the ``k`` words of lowest accuracy (ties: alphabetical), each with its clip count and the
    word it was most often taken for: ``{engine: [{"word", "acc", "n", "confused_with"}, ...]}``. The voices of
    an engine say a word alike at every rate and pitch, so a voice tends to miss all clips of a word or none."""
    groups: dict[str, dict[int, list[int]]] = {}
    for e, t, p in zip(engines, labels.tolist(), pred.tolist()):
        groups.setdefault(e, {}).setdefault(t, []).append(p)
    out: dict[str, list[dict[str, Any]]] = {}
    for e, words in sorted(groups.items()):
        rows = []
        for t, preds in words.items():
            wrong = Counter(p for p in preds if p != t)
            rows.append({"word": classes[t], "acc": sum(p == t for p in preds) / len(preds), "n": len(preds),
                         "confused_with": classes[wrong.most_common(1)[0][0]] if wrong else None})
        out[e] = sorted(rows, key=lambda r: (r["acc"], r["word"]))[:k]
    return out


def keyword_metrics(model: torch.nn.Module, prep: BatchPreparer, split: SpeechSplit,
                    noisy_snr: float | Sequence[float] | None = None, seed: int = 0,
                    tta_warps: Sequence[float] = ()) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Accuracy, loss, per-word, per-engine and per-speaker accuracy and the confusion matrix of ``model`` on
    ``split``, and the arrays to keep (``labels``, ``pred``: (N,)).

    With ``tta_warps`` also ``acc_tta`` (and ``per_engine_acc_tta``): probabilities averaged over those VTLP
    warps; with ``noisy_snr`` (one SNR in dB or several; and noise recordings in ``prep``) ``noisy_acc_by_snr``
    (``{"10": acc, ...}``: every clip mixed with noise at that SNR, seeded by ``seed``) and ``noisy_acc``, the
    first SNR's.
    """
    y, K = split.labels, len(split.classes)
    t0 = time.perf_counter()
    probs = predict(model, prep, split.clips)
    pred = probs.argmax(-1)
    correct = (pred == y).double()
    cm = confusion_matrix(y.numpy(), pred.numpy(), K)
    rows = cm.sum(axis=1)
    metrics: dict[str, Any] = {
        "n": len(y),
        "acc": float(correct.mean()),
        "loss": float(F.nll_loss(probs.clamp_min(1e-12).log(), y)),
        "per_word_acc": {w: (float(cm[i, i] / rows[i]) if rows[i] else None) for i, w in enumerate(split.classes)},
        "confusion_matrix": cm.tolist(),
        "eval_time_s": time.perf_counter() - t0,
    }
    engines = engines_of(split.root, split.files)
    if engines is not None:
        metrics["per_engine_acc"] = accuracy_by(engines, correct)
        metrics["per_engine_worst_words"] = worst_words_by_engine(engines, y, pred, split.classes)
        metrics["per_speaker_acc"] = accuracy_by(voices_of(split.root, split.files, "speaker") or [], correct)
    if tta_warps:
        correct_tta = (predict(model, prep, split.clips, warps=tta_warps).argmax(-1) == y).double()
        metrics["tta_warps"] = list(tta_warps)
        metrics["acc_tta"] = float(correct_tta.mean())
        if engines is not None:
            metrics["per_engine_acc_tta"] = accuracy_by(engines, correct_tta)
    snrs = [] if noisy_snr is None else [float(noisy_snr)] if isinstance(noisy_snr, (int, float)) else list(noisy_snr)
    if snrs and prep.noise:
        by_snr = {}
        for snr in dict.fromkeys(snrs):
            noisy = predict(model, prep, split.clips, noise_snr=snr, seed=seed).argmax(-1)
            by_snr[f"{snr:g}"] = float((noisy == y).double().mean())
        metrics["noisy_snr_db"] = snrs[0]
        metrics["noisy_acc"] = by_snr[f"{snrs[0]:g}"]
        metrics["noisy_acc_by_snr"] = by_snr
    return metrics, {"labels": y, "pred": pred}


def pocketsphinx_baseline(split: SpeechSplit, pred: torch.Tensor, max_files: int, seed: int) -> dict[str, Any]:
    """Debian's pocketsphinx (a JSGF grammar of the split's words) on a seeded random subset of at most
    ``max_files`` clips (0 = all), and the model's accuracy (``pred``: (N,)) on the same clips;
    ``{"skipped": reason}`` when pocketsphinx is missing or fails."""
    from deepnotes.data.speech_build import pocketsphinx_recognize

    if shutil.which("pocketsphinx_batch") is None:
        return {"skipped": "pocketsphinx is not installed (sudo apt-get install pocketsphinx pocketsphinx-en-us)"}
    n = len(split.files)
    idx = torch.arange(n)
    subset = "all"
    if max_files and n > max_files:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_files].sort().values
        subset = f"seeded random subset ({max_files} of {n}, seed {seed})"
    files = [split.files[i] for i in idx]
    t0 = time.perf_counter()
    try:
        hyps = pocketsphinx_recognize([split.root / f for f in files], split.classes)
    except (DataError, ValueError) as e:
        return {"skipped": f"pocketsphinx failed: {e}"}
    truth = [f.split("/")[0] for f in files]
    ps_correct = torch.tensor([float(h == t) for h, t in zip(hyps, truth)], dtype=torch.float64)
    model_correct = (pred[idx] == split.labels[idx]).double()
    out: dict[str, Any] = {"n": len(files), "subset": subset, "acc": float(ps_correct.mean()),
                           "no_word": sum(h is None for h in hyps), "model_acc_same_clips": float(model_correct.mean()),
                           "time_s": time.perf_counter() - t0}
    engines = engines_of(split.root, files)
    if engines is not None:
        out["per_engine_acc"] = accuracy_by(engines, ps_correct)
        out["model_per_engine_acc"] = accuracy_by(engines, model_correct)
    return out


def frame_metrics(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Frame accuracy, per-class recall (None for a class without frames) and the confusion matrix.

    Shapes: pred (F,), labels (F,) class indices in [0, num_classes).
    """
    cm = confusion_matrix(labels.numpy(), pred.numpy(), num_classes)
    support = cm.sum(1)
    recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return {"acc": float((pred == labels).double().mean()) if len(labels) else float("nan"),
            "n_frames": len(labels), "recall": [None if np.isnan(r) else float(r) for r in recall],
            "confusion_matrix": cm.tolist()}
