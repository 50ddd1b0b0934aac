"""Run folders, the report builder and the lab registry."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from deepnotes.errors import UserError
from deepnotes.experiment import Report, Run, all_labs, get_lab
from deepnotes.experiment.registry import LAB_MODULES
from deepnotes.report import append_metrics_row
from deepnotes.train import TrainConfig


def _run(tmp_path, lab="image-classification") -> Run:
    cfg = get_lab(lab).config_cls()
    return Run.create(tmp_path / "runs", lab, cfg)


def test_create_names_folders_by_lab_and_time_and_writes_the_config(tmp_path):
    a, b = _run(tmp_path), _run(tmp_path)
    assert a.path.parent == tmp_path / "runs" / "image-classification" and a.path != b.path  # same second: suffix
    assert json.loads((a / "config.json").read_text())["lab"] == "image-classification"
    assert a.lab.name == "image-classification" and a.config == get_lab("image-classification").config_cls()
    assert a.name == a.path.name


def test_out_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="--out .* is a file; give a folder"):
        Run.create(tmp_path / "f", "image-classification", TrainConfig())


def test_remove_if_empty_takes_the_empty_parents_too(tmp_path):
    run = _run(tmp_path)
    assert run.remove_if_empty()
    assert not (tmp_path / "runs").exists()  # neither runs/image-classification/ nor runs/ stays behind
    kept = _run(tmp_path)
    (kept / "metrics.csv").write_text("epoch\n1\n")
    assert not kept.remove_if_empty() and kept.path.is_dir()


@pytest.mark.parametrize("content, message", [
    (None, "not a run folder"),
    ("{not json", "is not valid JSON"),
    ('{"config": {}}', "missing 'lab'"),
    ('{"lab": "nope", "config": {}}', "unknown lab 'nope'"),
    ('{"lab": "image-classification", "config": {"widths": "abc"}}', "--widths must be comma-separated int values"),
    ('{"lab": "image-classification", "config": {"epochs": 0}}', "--epochs must be in"),
])
def test_unreadable_configs_are_one_line_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(UserError, match=message) as e:
        Run(tmp_path).config
    assert "\n" not in str(e.value)


def test_an_older_config_with_unknown_and_missing_fields_still_loads(tmp_path):
    """A run folder written before a field was added (or after one was dropped) still evaluates."""
    old = {"lab": "image-classification", "config": {"epochs": 3, "some_dropped_flag": 1}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = Run(tmp_path).config
    assert cfg.epochs == 3 and cfg.threads == 0


def test_weights_and_json_errors_name_the_file(tmp_path):
    run = _run(tmp_path)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match="model.safetensors is missing: the run did not finish; resume it"):
        run.load_weights(model)
    save_file({"weight": torch.zeros(3, 3)}, str(run / "model.safetensors"))
    with pytest.raises(UserError, match="damaged or from another model"):
        run.load_weights(model)
    with pytest.raises(UserError, match="cannot read .*data.json"):
        run.read_json("data.json")
    run.write_json("data.json", {"a": 1})
    assert run.read_json("data.json") == {"a": 1}


def test_eval_results_and_the_report_builder(tmp_path):
    run = _run(tmp_path)
    run.write_eval("fashion mnist", {"data": "fashion-mnist", "acc": 0.9, "confusion_matrix": [[1]]})
    assert (run / "eval" / "fashion_mnist.json").is_file()
    for epoch in (1, 2):
        append_metrics_row(run / "metrics.csv", {"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": 0.5 + epoch / 10})
    path = (Report(run, "toy report", intro="What ran.")
            .results([["test accuracy", "90.00%"]])
            .baselines([["a baseline", "80%"]])
            .figure("A figure", "fig.png")
            .write())
    text = path.read_text()
    order = ["# toy report", "What ran.", "## Results", "a baseline", "## `deepnotes eval` results", "## A figure",
             "## Learning curves", "## Per-epoch metrics", "## Configuration"]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    assert "confusion_matrix" not in text  # lists and dicts of eval results stay out of the table
    assert (run / "learning_curves.png").stat().st_size > 0


def test_registry_lists_every_lab_module_once():
    names = [lab.name for lab in all_labs()]
    assert len(names) == len(set(names)) and len(names) >= len(LAB_MODULES)
    with pytest.raises(UserError, match="unknown lab 'nope'; `deepnotes list` shows the labs"):
        get_lab("nope")
