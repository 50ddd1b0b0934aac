"""The loss-curve callback: means of chunks of updates within an epoch, saved per epoch, cut at a resumed update."""

import json
from types import SimpleNamespace

import torch

from deepnotes.metrics.curves import LossCurve


def _step(curve, trainer, step, loss, count=4):
    curve.on_step_end(trainer, SimpleNamespace(step=step), SimpleNamespace(loss=torch.tensor(loss), count=count))
    trainer.step = step + 1


def test_chunk_means_per_epoch_and_resume_cut(tmp_path):
    path = tmp_path / "curve.json"
    curve, trainer = LossCurve(path, 2), SimpleNamespace(step=0)
    for s, loss in enumerate([1.0, 3.0, 5.0]):  # epoch 1: one chunk, the partial one dropped
        _step(curve, trainer, s, loss)
    row = {}
    curve.on_epoch_end(trainer, row)
    assert row == {"examples": 12} and json.loads(path.read_text()) == [[2, 2.0]]
    for s, loss in zip((3, 4), [4.0, 8.0]):  # epoch 2 starts a new chunk
        _step(curve, trainer, s, loss)
    assert curve.points(trainer.step) == [[2, 2.0], [5, 6.0]]
    resumed = LossCurve(path, 2)  # resumed at update 3: the file's points up to it
    path.write_text(json.dumps([[2, 2.0], [5, 6.0]]))
    _step(resumed, SimpleNamespace(step=3), 3, 7.0)
    assert resumed.points(4) == [[2, 2.0]]
