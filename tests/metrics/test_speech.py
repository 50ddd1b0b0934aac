"""Speech metrics: accuracy per group, the worst words per engine, keyword metrics of a model on a split, the
pocketsphinx baseline's bookkeeping, frame accuracy and per-class recall."""

from __future__ import annotations

import shutil

import pytest
import torch

from deepnotes.audio.frontend import BatchPreparer, FeatureExtractor, SpeechAugment
from deepnotes.data.speech import SpeechSplit
from deepnotes.metrics.speech import (
    accuracy_by,
    frame_metrics,
    keyword_metrics,
    pocketsphinx_baseline,
    worst_words_by_engine,
)


def test_accuracy_by_groups():
    assert accuracy_by(["b", "a", "b", "b"], torch.tensor([1.0, 0.0, 0.0, 1.0])) == {"a": 0.0, "b": pytest.approx(2 / 3)}


def test_worst_words_by_engine_counts_each_engine_apart():
    classes = ["yes", "no", "up"]
    engines = ["a"] * 6 + ["b"] * 3
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2])
    pred = torch.tensor([0, 0, 2, 2, 2, 1, 1, 1, 2])
    worst = worst_words_by_engine(engines, labels, pred, classes, k=2)
    assert worst == {"a": [{"word": "no", "acc": 0.0, "n": 2, "confused_with": "up"},
                           {"word": "up", "acc": 0.5, "n": 2, "confused_with": "no"}],
                     "b": [{"word": "yes", "acc": 0.0, "n": 1, "confused_with": "no"},
                           {"word": "no", "acc": 1.0, "n": 1, "confused_with": None}]}


class _Loudness(torch.nn.Module):
    """Class 1 when a clip's mean waveform is above 0, else class 0 (so the answers are known)."""

    def forward(self, x):
        s = x.mean(dim=1, keepdim=True)
        return torch.cat([-s, s], dim=1) * 1e4


def _split(tmp_path):
    clips = torch.stack([torch.full((16000,), v, dtype=torch.int16) for v in (100, -100, 200, 300)])
    return SpeechSplit(clips, torch.tensor([1, 0, 0, 1]), ["down", "up"], [f"w/{i}.wav" for i in range(4)], tmp_path)


def test_keyword_metrics_of_a_known_model(tmp_path):
    prep = BatchPreparer(FeatureExtractor("waveform"), SpeechAugment(), [], torch.device("cpu"))
    m, arrays = keyword_metrics(_Loudness(), prep, _split(tmp_path), noisy_snr=10.0)
    assert arrays["pred"].tolist() == [1, 0, 1, 1]
    assert m["n"] == 4 and m["acc"] == 0.75 and m["per_word_acc"] == {"down": 0.5, "up": 1.0}
    assert m["confusion_matrix"] == [[1, 1], [0, 2]] and m["loss"] > 1
    assert "per_engine_acc" not in m and "noisy_acc" not in m  # no manifest.json, no noise recordings


def test_pocketsphinx_baseline_says_why_it_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert "not installed" in pocketsphinx_baseline(_split(tmp_path), torch.zeros(4), 2, 0)["skipped"]


def test_frame_metrics():
    pred, labels = torch.tensor([0, 1, 1, 2, 2]), torch.tensor([0, 1, 2, 2, 2])
    m = frame_metrics(pred, labels, 4)
    assert m["acc"] == 0.8 and m["n_frames"] == 5
    assert m["recall"] == [1.0, 1.0, pytest.approx(2 / 3), None]  # class 3 has no frame
    assert m["confusion_matrix"][2] == [0, 1, 2, 0]
