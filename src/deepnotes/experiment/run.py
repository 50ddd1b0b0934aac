"""A run folder, ``runs/<lab>/<timestamp>/``, as an object: its config, JSON files, weights and eval results.

The command line makes a :class:`Run` for ``deepnotes eval`` and ``deepnotes report`` and hands it to the lab;
a lab reads and writes its files through it, so every read error is one line naming the file and the fix.
A :class:`Run` is path-like: ``run / "data.json"`` and ``Path(run)`` work.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from deepnotes.errors import UserError
from deepnotes.io import write_json_atomic


class Run:
    """One run folder.

    Args:
        path: the folder (``runs/<lab>/<timestamp>``).

    Example::

        run = Run("runs/image-classification/20261206-101500")
        lab, cfg = run.lab, run.config
        info = run.read_json("data.json")
        model = run.load_weights(build(cfg))
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._loaded: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ path-like
    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, out: str | os.PathLike[str], lab_name: str, config: Any) -> "Run":
        """A new folder ``out/<lab>/<timestamp>`` (a suffix when two runs start in the same second) with config.json.

        Raises:
            UserError: ``out`` names a file, or the folder cannot be made (the message names it).
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file; give a folder (default: runs)")
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = out / lab_name / stamp
        path, n = base, 1
        while True:
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                n += 1
                path = base.with_name(f"{stamp}-{n}")
            except OSError as e:
                raise UserError(f"cannot make the run folder {path}: {e.strerror}; choose another --out") from e
        run = cls(path)
        write_json_atomic(path / "config.json", {"lab": lab_name, "config": dataclasses.asdict(config)})
        return run

    def remove_if_empty(self) -> bool:
        """Delete the folder when it holds nothing but config.json and cpu.json (a run stopped by a user's mistake
        before it produced anything), and the ``<lab>`` and ``--out`` folders above it when that leaves them empty.
        Returns whether the run folder was removed."""
        if not self.path.is_dir() or {p.name for p in self.path.iterdir()} - {"config.json", "cpu.json"}:
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        for parent in (self.path.parent, self.path.parent.parent):
            try:
                parent.rmdir()  # only succeeds when empty
            except OSError:
                break
        return True

    # ------------------------------------------------------------------ reading
    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from deepnotes.experiment.registry import get_lab

            path = self.path / "config.json"
            if not path.is_file():
                raise UserError(f"{self.path} is not a run folder (no config.json); pass a folder under runs/<lab>/")
            data = self.read_json("config.json")
            try:
                lab = get_lab(data["lab"])
                fields = {f.name for f in dataclasses.fields(lab.config_cls)}
                values = {k: v for k, v in data["config"].items() if k in fields}
            except (KeyError, TypeError, AttributeError) as e:
                raise UserError(f"cannot read {path}: missing {e}; re-run or restore that file") from e
            try:
                self._loaded = (lab, lab.config_cls(**values))
            except UserError as e:
                raise UserError(f"{path}: {e}; re-run or restore that file") from e
        return self._loaded

    @property
    def lab(self) -> Any:
        """The :class:`~deepnotes.experiment.registry.Lab` that made this run."""
        return self._load()[0]

    @property
    def config(self) -> Any:
        """The run's config dataclass, read back from config.json and validated.

        Raises:
            UserError: no config.json, not JSON, an unknown lab, or a field value the lab rejects.
        """
        return self._load()[1]

    def read_json(self, name: str) -> Any:
        """The JSON content of ``name`` in the run folder (``data.json``, ``test_metrics.json``, ...).

        Raises:
            UserError: missing or unreadable file, or not valid JSON (the message names it and the fix).
        """
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror}; is this a finished run folder?") from e
        except ValueError as e:
            raise UserError(f"{path} is not valid JSON ({e}); re-run or restore that file") from e

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as JSON to ``name`` in the run folder, atomically; returns the path."""
        path = self.path / name
        write_json_atomic(path, obj)
        return path

    def load_weights(self, model: torch.nn.Module, name: str = "model.safetensors") -> torch.nn.Module:
        """Load the safetensors file ``name`` of this run into ``model`` (returned).

        Raises:
            UserError: the file is missing (the run did not finish: resume it), or it cannot be read or does not
                fit ``model`` (damaged, or from another model or config).
        """
        path = self.path / name
        if not path.is_file():
            raise UserError(f"{path} is missing: the run did not finish; resume it with --resume {self.path}")
        try:
            model.load_state_dict(load_file(str(path)))
        except (OSError, RuntimeError, SafetensorError) as e:
            raise UserError(f"cannot load {path}: {e}; the file is damaged or from another model") from e
        return model

    def eval_results(self) -> list[dict[str, Any]]:
        """Every ``eval/*.json`` written by ``deepnotes eval``, sorted by file name (unreadable ones skipped)."""
        folder = self.path / "eval"
        results = []
        for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                results.append({"file": p.name, **json.loads(p.read_text())})
            except (OSError, ValueError):
                continue
        return results

    def write_eval(self, name: str, metrics: dict[str, Any]) -> Path:
        """Save ``deepnotes eval`` results as ``eval/<name>.json``; returns the path."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "eval"
        return self.write_json(f"eval/{safe}.json", metrics)

