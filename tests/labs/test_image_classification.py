"""The image-classification lab end to end: kill + resume equals an uninterrupted run; the demo target."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["run", "image-classification", "--epochs", "3", "--limit-train", "2500", "--limit-test", "500",
        "--no-progress", "--seed", "3"]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepnotes", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _only_run(out: Path) -> Path:
    (run_dir,) = list((out / "image-classification").iterdir())
    return run_dir


def test_killed_run_resumed_ends_like_uninterrupted(tmp_path):
    full = _start(*ARGS, "--out", str(tmp_path / "full"))
    assert full.wait(timeout=600) == 0, full.stderr.read()

    killed = _start(*ARGS, "--out", str(tmp_path / "killed"))
    deadline = time.time() + 300
    run_dir = None
    while time.time() < deadline and killed.poll() is None:
        dirs = list((tmp_path / "killed" / "image-classification").glob("*/checkpoints/epoch-0001"))
        if dirs:
            run_dir = dirs[0].parent.parent
            break
        time.sleep(0.02)
    assert run_dir is not None and killed.poll() is None, "the run ended before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)  # no clean-up handlers run, as with a power cut
    killed.wait()
    assert not (run_dir / "model.safetensors").exists()

    resumed = _start("run", "image-classification", "--resume", str(run_dir))
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "resumed from" in out

    a = json.loads((_only_run(tmp_path / "full") / "test_metrics.json").read_text())
    b = json.loads((run_dir / "test_metrics.json").read_text())
    for key in ("acc", "acc_tta", "loss", "confusion_matrix"):
        assert a[key] == b[key], key
    rows_a = (_only_run(tmp_path / "full") / "metrics.csv").read_text().splitlines()
    rows_b = (run_dir / "metrics.csv").read_text().splitlines()
    strip = lambda rows: [r.rsplit(",", 2)[0] for r in rows]  # drop the timing columns
    assert strip(rows_a) == strip(rows_b)


@pytest.mark.slow
def test_demo_reaches_target_on_mnist_subset(tmp_path):
    """README's target: the default run (what `make demo` runs) reaches >= 97.5% test accuracy."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "deepnotes", "run", "image-classification", "--no-progress",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((_only_run(tmp_path) / "test_metrics.json").read_text())
    print(f"demo: test accuracy {metrics['acc']:.4f} in {time.time() - t0:.0f} s")
    assert metrics["acc"] >= 0.975
