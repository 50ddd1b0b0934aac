"""The phoneme-classification lab (HW2): the fast preset end to end on the small festival build, its report
files, ``deepnotes eval`` on the build and on HW2-format files, exact resume of an interrupted rung, bad flags
(exit status 2). Frame tables and batches are tested in tests/data/test_frames.py, the rungs in
tests/models/test_framewise.py."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepnotes.cli import main
from deepnotes.data.paths import data_root
from deepnotes.data.phonemes import PHONEME_FRAMES_SMALL, write_hw2_libriphone
from deepnotes.errors import DataError, UserError
from deepnotes.experiment import Run, RunContext, get_lab

LAB = get_lab("phoneme-classification")
PRESETS = LAB.presets
#: The course's baselines (HW2 hints, ML2022), as the report prints them.
HW2_BASELINES = {"simple": 0.45797, "medium": 0.69747, "strong": 0.75028, "boss": 0.82324}


def _cli(env_data: Path | None, *args, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if env_data is not None:
        env["DEEPNOTES_DATA"] = str(env_data)
    proc = subprocess.run([sys.executable, "-m", "deepnotes", *args], capture_output=True, text=True, timeout=600,
                          env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


# ----------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A data root holding phoneme-frames-small (built once per test session; KJV linked from the user's)."""
    if shutil.which("festival") is None:
        pytest.skip("needs Debian's festival and voices (sudo make system-speech system-data; the packages: "
                    "deepnotes.data.phonemes.PHONEME_PACKAGES)")
    root = tmp_path_factory.getbasetemp() / "phoneme-data"
    if not root.is_dir():
        root.mkdir()
        if (data_root() / "kjv" / "kjv.tsv").is_file():
            (root / "kjv").symlink_to(data_root() / "kjv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPNOTES_DATA", str(root))
        try:
            PHONEME_FRAMES_SMALL.build(progress=False)
        except DataError as e:
            pytest.skip(f"festival or a voice is missing: {e}")
    return root


@pytest.fixture(scope="module")
def fast_run(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ph")
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv("DEEPNOTES_DATA", str(small_data))
        status = main(["run", "phoneme-classification", "--preset", "fast", "--no-progress", "--out", str(out)])
    assert status == 0, stdout.getvalue()
    (run_dir,) = list((out / "phoneme-classification").iterdir())
    return run_dir, stdout.getvalue()


def test_fast_preset_end_to_end(fast_run):
    run_dir, stdout = fast_run
    for rung in ("simple", "medium", "strong", "boss"):
        assert f"[{rung}]" in stdout and "test accuracy" in stdout
        for name in ("metrics.csv", "model.safetensors", "results.json", "checkpoints/epoch-0001/state.json"):
            assert (run_dir / rung / name).is_file(), (rung, name)
    for name in ("report.md", "config.json", "data.json", "results.json", "ladder.png", "confusion_matrix.png",
                 "curves_simple.png", "curves_boss.png"):
        assert (run_dir / name).is_file(), name
    cfg = Run(run_dir).config
    assert cfg.dataset == "phoneme-frames-small" and cfg.context == PRESETS["fast"]["context"]
    data = json.loads((run_dir / "data.json").read_text())
    assert (data["n_train_utterances"], data["n_validation_utterances"], data["n_test_utterances"]) == (20, 6, 10)
    summary = json.loads((run_dir / "results.json").read_text())
    boss = json.loads((run_dir / "boss" / "results.json").read_text())
    assert boss["model"] == "FramewiseRNN" and boss["epochs"] == PRESETS["fast"]["rnn_epochs"]
    cm = np.asarray(boss["test"]["confusion_matrix"])
    assert cm.shape == (41, 41) and cm.sum() == data["n_test_frames"] == boss["test"]["n_frames"]
    assert np.trace(cm) / cm.sum() == pytest.approx(boss["test"]["acc"])
    assert summary["rungs"]["boss"]["test_acc"] == boss["test"]["acc"]
    medium = json.loads((run_dir / "medium" / "results.json").read_text())
    assert medium["model_config"]["context"] == 5
    assert medium["parameters"] == (5 * 39 * 32 + 32) + (32 * 32 + 32) + (32 * 41 + 41)
    report = (run_dir / "report.md").read_text()
    accs = [json.loads((run_dir / r / "results.json").read_text())["test"]["acc"]
            for r in ("simple", "medium", "strong", "boss")]
    holds = all(b > a for a, b in zip(accs, accs[1:]))  # each rung beats the one below it
    assert summary["ladder_holds"] == holds and f"on the test split: **{'yes' if holds else 'no'}**" in report
    for text in ("ladder.png", "confusion_matrix.png", "curves_boss.png", f"{HW2_BASELINES['boss']:.5f}",
                 f"{100 * boss['test']['acc']:.2f}%", "bi-LSTM 1 x 16"):
        assert text in report, text


def test_eval_on_the_build_and_on_hw2_files(fast_run, small_data, tmp_path, monkeypatch):
    run_dir, _ = fast_run
    monkeypatch.setenv("DEEPNOTES_DATA", str(small_data))
    torch.set_num_threads(1)
    m = LAB.evaluate(Run(run_dir), None, torch.device("cpu"))
    for rung in ("simple", "medium", "strong", "boss"):  # the run's own test split: the same accuracy
        res = json.loads((run_dir / rung / "results.json").read_text())
        assert m[f"{rung}_acc"] == pytest.approx(res["test"]["acc"], abs=1e-12)
    assert (run_dir / "eval" / "phoneme-frames-small-test.json").is_file()
    # the course's file layout, written from the small build: its validation split is scored
    train, test = PHONEME_FRAMES_SMALL.load("validation"), PHONEME_FRAMES_SMALL.load("test")
    folder = write_hw2_libriphone(tmp_path / "libriphone", train, test)
    ev = LAB.evaluate(Run(run_dir), str(folder), torch.device("cpu"))
    assert ev["data"] == "libriphone-validation" and ev["split"] == "validation"
    assert ev["n_frames"] == sum(int(n) for n in train.lengths[[train.utt_ids.index(u) for u in
                                                               _hw2_val_ids(train.utt_ids)]])
    assert all(0 <= ev[f"{r}_acc"] <= 1 for r in ("simple", "boss"))
    with pytest.raises(UserError, match="not a phoneme dataset"):
        LAB.evaluate(Run(run_dir), str(tmp_path / "nowhere"), torch.device("cpu"))
    assert main(["report", str(run_dir)]) == 0
    assert "libriphone-validation" in (run_dir / "report.md").read_text()


def _hw2_val_ids(ids):
    from deepnotes.data.splits import hw2_train_val_split

    return hw2_train_val_split(ids)[1]


def test_resume_finishes_an_interrupted_rung_as_the_uninterrupted_run(fast_run, small_data, tmp_path, monkeypatch):
    run_dir, _ = fast_run
    monkeypatch.setenv("DEEPNOTES_DATA", str(small_data))
    torch.set_num_threads(1)
    cut = tmp_path / "cut"
    shutil.copytree(run_dir, cut, ignore=shutil.ignore_patterns("eval", "tb"))
    # what a run killed during the boss rung's epoch 2 leaves behind
    shutil.rmtree(cut / "boss" / "checkpoints" / "epoch-0002")
    for name in ("boss/model.safetensors", "boss/results.json", "results.json", "report.md"):
        (cut / name).unlink()
    lines = (cut / "boss" / "metrics.csv").read_text().splitlines()
    (cut / "boss" / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
    stamp = (cut / "simple" / "results.json").stat().st_mtime_ns
    logs: list[str] = []
    cfg = Run(cut).config
    LAB.run(cfg, RunContext(cut, torch.device("cpu"), resume=True, log=logs.append))
    assert any("[simple] finished in an earlier session" in m for m in logs)
    assert (cut / "simple" / "results.json").stat().st_mtime_ns == stamp  # not retrained
    a = json.loads((run_dir / "boss" / "results.json").read_text())
    b = json.loads((cut / "boss" / "results.json").read_text())
    for split in ("validation", "test"):
        assert a[split]["acc"] == b[split]["acc"] and a[split]["confusion_matrix"] == b[split]["confusion_matrix"]
    strip = lambda text: [r.rsplit(",", 2)[0] for r in text.splitlines()]  # drop the timing columns
    assert strip((run_dir / "boss" / "metrics.csv").read_text()) == strip((cut / "boss" / "metrics.csv").read_text())
    assert (cut / "report.md").is_file()


# ----------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,match", [
    ({"rungs": ("simple", "wizard")}, "--rungs"),
    ({"rungs": ("simple", "simple")}, "--rungs"),
    ({"context": 4}, "--context"),
    ({"dropout": 1.0}, "--dropout"),
    ({"rnn_hidden": 0}, "--rnn-hidden"),
    ({"dataset": "mnist-subset"}, "--dataset"),
])
def test_bad_config_is_a_user_error_before_any_data_is_read(kwargs, match, tmp_path):
    with pytest.raises(UserError, match=match):
        LAB.run(LAB.config_cls(**kwargs), RunContext(tmp_path, torch.device("cpu")))


def test_missing_hw2_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        LAB.run(LAB.config_cls(hw2_dir=str(tmp_path / "nowhere")), RunContext(tmp_path, torch.device("cpu")))


def test_bad_flags_on_the_command_line(tmp_path, capsys):
    proc = _cli(None, "run", "phoneme-classification", "--rungs", "simple,wizard", "--out", str(tmp_path),
                check=False)
    assert proc.returncode == 2 and "--rungs" in proc.stderr and "Traceback" not in proc.stderr
    for flag, value in (("--rnn-cell", "transformer"), ("--context", "4"), ("--preset", "slow")):
        try:
            status = main(["run", "phoneme-classification", flag, value, "--out", str(tmp_path)])
        except SystemExit as e:  # argparse's own errors
            status = e.code
        assert status == 2, flag
        assert flag in capsys.readouterr().err
