"""The char-gpt and lstm-lm labs end to end through the CLI on the real KJV text (fast presets)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from deepnotes.cli import main
from deepnotes.data.text import KJV

pytestmark = pytest.mark.skipif(shutil.which("bible") is None and not KJV.tsv_path().is_file(),
                                reason="needs the KJV text: apt-get install bible-kjv (make system-data)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    found = {}
    for lab in ("char-gpt", "lstm-lm"):  # lstm-lm second: its report compares with the char-gpt run
        assert main(["run", lab, "--preset", "fast", "--out", str(out), "--no-progress"]) == 0
        (found[lab],) = list((out / lab).iterdir())
    return found


@pytest.mark.parametrize("lab", ["char-gpt", "lstm-lm"])
def test_run_folder_report_and_learning(runs, lab):
    run = runs[lab]
    for name in ("config.json", "data.json", "metrics.csv", "model.safetensors", "results.json", "samples.txt",
                 "report.md", "loss_curves.png", "lr_schedule.png"):
        assert (run / name).is_file(), name
    res = json.loads((run / "results.json").read_text())
    assert res["updates"] == 30
    v = res["val"]
    assert math.isclose(v["bpc"], v["loss"] / math.log(2)) and math.isclose(v["perplexity"], math.exp(v["loss"]))
    # 30 updates of a tiny model already beat a uniform guess over the 63 characters
    assert v["loss"] < math.log(63)
    assert res["baselines"]["bigram"] < res["baselines"]["unigram"] < math.log(63)
    report = (run / "report.md").read_text()
    assert "](loss_curves.png)" in report and "bigram count model" in report
    assert (run / "samples.txt").read_text().startswith("In the beginning")
    if lab == "lstm-lm":
        assert "## Beside char-gpt" in report and runs["char-gpt"].name in report


def test_eval_on_a_text_file_and_unknown_characters(runs, tmp_path, capsys):
    run = runs["char-gpt"]
    text = tmp_path / "psalm.txt"
    text.write_text("The LORD is my shepherd; I shall not want.\n" * 8)
    assert main(["eval", str(run), "--data", str(text)]) == 0
    saved = json.loads((run / "eval" / "psalm.txt.json").read_text())
    assert saved["n_chars"] == 64 * ((len(text.read_text()) - 1) // 64) and saved["loss"] > 0
    assert main(["report", str(run)]) == 0 and "psalm.txt" in (run / "report.md").read_text()
    bad = tmp_path / "greek.txt"
    bad.write_text("λόγος " * 40)
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(bad)]) == 2
    assert "greek.txt" in capsys.readouterr().err


def test_sample_command(runs, capsys):
    run = runs["lstm-lm"]
    assert main(["sample", str(run), "--prompt", "And God said", "--max-new-tokens", "25", "--seed", "1"]) == 0
    first = capsys.readouterr().out.rstrip("\n")
    assert first.startswith("And God said") and len(first) == len("And God said") + 25
    assert main(["sample", str(run), "--prompt", "And God said", "--max-new-tokens", "25", "--seed", "1"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == first  # seeded
    assert main(["sample", str(run), "--prompt", "Ωmega"]) == 2
    assert "'Ω' is not in the vocabulary" in capsys.readouterr().err


def test_sample_refuses_a_classifier_run(tmp_path, capsys):
    run = tmp_path / "image-classification" / "x"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"lab": "image-classification", "config": {}}))
    assert main(["sample", str(run), "--prompt", "x"]) == 2
    assert "does not generate text" in capsys.readouterr().err


def test_bad_flags(tmp_path, capsys):
    assert main(["run", "char-gpt", "--d-model", "30", "--n-heads", "4", "--out", str(tmp_path)]) == 2
    assert "--d-model 30 must be divisible by --n-heads 4" in capsys.readouterr().err
    assert main(["run", "lstm-lm", "--block-size", "0", "--out", str(tmp_path)]) == 2
    assert "--block-size must be in [1, 4096], got 0" in capsys.readouterr().err
    assert main(["run", "char-gpt", "--prompt", "", "--out", str(tmp_path)]) == 2
    assert "--prompt must not be empty" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no run folder for a bad flag


@pytest.mark.slow
def test_default_char_gpt_killed_and_resumed_ends_bit_equal(tmp_path):
    """The lab's defaults (torch.compile where a compiler is, bf16 where the CPU has it, fused AdamW) on two threads,
    shortened: a run killed after its first epoch and resumed ends with the uninterrupted run's weights, byte for
    byte. Without deterministic algorithms, compiled training on two threads differed from the first epoch."""
    import glob
    import hashlib
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    args = [sys.executable, "-m", "deepnotes", "run", "char-gpt", "--no-progress", "--epochs", "3",
            "--steps-per-epoch", "50", "--limit-chars", "300000", "--eval-windows", "40"]
    subprocess.run([*args, "--out", str(tmp_path / "full")], check=True, capture_output=True, env=env, timeout=900)
    killed = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=env)
    run, deadline = None, time.time() + 900
    while run is None and killed.poll() is None and time.time() < deadline:
        found = glob.glob(str(tmp_path / "killed" / "char-gpt" / "*" / "checkpoints" / "epoch-0001"))
        run = Path(found[0]).parent.parent if found else None
        time.sleep(0.01)
    assert run is not None and killed.poll() is None, "the run ended before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    resumed = subprocess.run([sys.executable, "-m", "deepnotes", "run", "char-gpt", "--resume", str(run),
                              "--no-progress"], capture_output=True, text=True, env=env, timeout=900)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr
    (full,) = list((tmp_path / "full" / "char-gpt").iterdir())

    def digest(path: Path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()

    def rows(path: Path) -> list[str]:  # without the timing columns
        return [line.rsplit(",", 2)[0] for line in (path / "metrics.csv").read_text().splitlines()]

    assert rows(full) == rows(run)
    assert digest(full / "model.safetensors") == digest(run / "model.safetensors")
