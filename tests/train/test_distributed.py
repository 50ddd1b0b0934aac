"""Data parallelism through torchrun: 2 CPU processes (gloo) train the image lab like 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch.distributed as dist

LAB_ARGS = ["run", "image-classification", "--epochs", "2", "--limit-train", "1500", "--limit-test", "1000",
            "--batch-size", "64", "--no-progress", "--no-tta"]


def _run(prefix: list[str], out):
    """Run ``prefix + deepnotes run ...`` with its own output folder; return (stdout, run folder)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*prefix, *LAB_ARGS, "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = list((out / "image-classification").iterdir())
    return proc.stdout, run_dir


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_torchrun_two_cpu_processes_matches_one_process(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "deepnotes"]
    out2, run2 = _run(torchrun, tmp_path / "two")
    out1, run1 = _run([sys.executable, "-m", "deepnotes"], tmp_path / "one")
    assert "2 processes" in out2
    assert out2.count("run folder:") == 1  # only rank 0 speaks and writes
    assert len((run2 / "metrics.csv").read_text().splitlines()) == 3  # header + 2 epochs
    m1 = json.loads((run1 / "test_metrics.json").read_text())
    m2 = json.loads((run2 / "test_metrics.json").read_text())
    # Same data, global batch and schedule; only the batch-norm statistics (per process) differ.
    assert m1["acc"] > 0.85 and m2["acc"] > 0.85
    assert abs(m1["acc"] - m2["acc"]) < 0.03
