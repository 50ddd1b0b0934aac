"""The worked skeleton of docs/adding-a-lab.md runs as written: run, eval, report and a refused flag, through the CLI.

If the kit's API changes, this test fails until the guide is updated with it.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from deepnotes.cli import main
from deepnotes.experiment.registry import _registry
from deepnotes.models import registry as models

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "adding-a-lab.md"


@pytest.fixture
def spirals(monkeypatch):
    """The guide's module, loaded and registered for this test only."""
    block = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S).group(1)
    module = types.ModuleType("guide_spirals")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses and typing look the module up by name
    monkeypatch.setattr(models, "_BUILDERS", dict(models._BUILDERS))  # the guide's model stays out of later tests
    exec(compile(block, str(GUIDE), "exec"), module.__dict__)
    monkeypatch.setitem(_registry(), module.LAB.name, module.LAB)
    return module.LAB


def _code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_the_guide_skeleton_runs_evaluates_and_reports(spirals, tmp_path, capsys):
    out = tmp_path / "runs"
    assert _code(["run", spirals.name, "--preset", "fast", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    (run_dir,) = (out / spirals.name).iterdir()
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "report.md").is_file()
    assert _code(["eval", str(run_dir), "--device", "cpu"]) == 0
    assert _code(["report", str(run_dir)]) == 0
    text = (run_dir / "report.md").read_text()
    assert "## `deepnotes eval` results" in text and "## Learning curves" in text and "## Configuration" in text
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert _code(["run", spirals.name, "--epochs", "0", "--out", str(bad)]) == 2
    assert "--epochs" in capsys.readouterr().err and not bad.exists()
