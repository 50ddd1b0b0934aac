"""A training-loss curve finer than one point per epoch, recorded by a :class:`deepnotes.train.Callback`.

The mean training loss over each chunk of ``every`` updates within an epoch (an epoch's last, partial chunk is
dropped). The points are written to a JSON file at the end of every epoch and read back when the run resumes,
up to the resumed update, so a resumed run's curve equals an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepnotes.io import write_json_atomic
from deepnotes.train.engine import Callback


class LossCurve(Callback):
    """Points ``[update, mean loss of the last `every` updates]``; also adds the epoch's example count to its row
    (``examples``).

    Args:
        path: the JSON file of the points (e.g. ``run_dir / "curve.json"``), rewritten after every epoch.
        every: updates per point (>= 1).
    """

    def __init__(self, path: str | Path, every: int):
        self.path, self.every = Path(path), max(1, every)
        self._points: list[list[float]] | None = None
        self._sum, self._n, self._examples = 0.0, 0, 0

    def points(self, until: int) -> list[list[float]]:
        """The points up to update ``until`` (those recorded here, else those of the file)."""
        if self._points is None:
            saved = json.loads(self.path.read_text()) if self.path.is_file() else []
            self._points = [p for p in saved if p[0] <= until]
        return self._points

    def on_step_end(self, trainer: Any, step: Any, out: Any) -> None:
        points = self.points(step.step)  # the first call after a resume: step.step = the resumed update
        self._sum += float(out.loss.detach())
        self._n += 1
        self._examples += int(out.count)
        if self._n == self.every:
            points.append([step.step + 1, self._sum / self._n])
            self._sum, self._n = 0.0, 0

    def on_epoch_end(self, trainer: Any, row: dict[str, Any]) -> None:
        row["examples"] = self._examples
        self._sum, self._n, self._examples = 0.0, 0, 0
        write_json_atomic(self.path, self.points(trainer.step))
