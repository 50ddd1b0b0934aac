"""deepnotes.runtime: OpenMP's wait policy before torch starts, and the thread count from the idle cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from deepnotes import runtime
from deepnotes.cli import _set_threads


def test_configure_openmp_shortens_the_spin_only_when_the_user_did_not_choose():
    env: dict[str, str] = {}
    assert runtime.configure_openmp(env) is True and env == {"GOMP_SPINCOUNT": "10000"}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        env = dict(mine)
        assert runtime.configure_openmp(env) is False and env == mine


def test_cpu_times_and_idle_from_samples_on_a_hand_made_stat_file(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\n")
    assert runtime._cpu_times(str(stat)) == (150, 1000)
    # 200 more jiffies, 150 of them busy -> 25% idle of 2 CPUs = 0.5 idle cores
    assert runtime.idle_from_samples((150, 1000), (300, 1200), 2) == pytest.approx(0.5)
    assert runtime.idle_from_samples((150, 1000), (150, 1000), 2) is None
    stat.write_text("intr 1 2 3\n")
    assert runtime.idle_cores(0.0, str(stat)) is None
    assert runtime.idle_cores(0.0, str(tmp_path / "missing")) is None


def test_idle_cores_reads_this_machine():
    idle = runtime.idle_cores(0.05)
    if idle is None:
        pytest.skip("/proc/stat unreadable here")
    assert -0.05 <= idle <= (os.cpu_count() or 1) + 0.05


@pytest.mark.parametrize("idle, expected", [(0.0, 1), (0.3, 1), (1.4, 1), (1.6, 2), (7.0, 2)])
def test_choose_threads_takes_the_idle_cores_rounded(monkeypatch, idle, expected):
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    threads, why = runtime.choose_threads(0, {}, idle=idle)
    assert threads == expected
    assert ("busy with other work" in why) == (expected < 2)


def test_threads_flag_and_omp_num_threads_win(monkeypatch):
    assert runtime.choose_threads(3, {"OMP_NUM_THREADS": "1"}, idle=0.0)[0] == 3
    threads, why = runtime.choose_threads(0, {"OMP_NUM_THREADS": "4"}, idle=0.0)
    assert threads is None and "OMP_NUM_THREADS" in why
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    assert runtime.choose_threads(0, {}, idle=None)[0] in (1, 2)  # measured now


def test_set_threads_gives_torch_the_count_and_leaves_it_under_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert "--threads" in _set_threads(1) and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert "OMP_NUM_THREADS" in _set_threads(0) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_console_entry_sets_the_spin_count_before_torch_is_imported():
    code = """
import os, sys
from deepnotes import runtime
orig, seen = runtime.configure_openmp, {}
def spy(environ=None):
    seen["torch"] = "torch" in sys.modules
    return orig(environ)
runtime.configure_openmp = spy
sys.argv = ["deepnotes", "--version"]
from deepnotes import _launch
try:
    _launch.entry()
except SystemExit:
    pass
print(seen["torch"], os.environ.get("GOMP_SPINCOUNT"))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["False", "10000"]


def test_a_resumed_run_takes_the_thread_count_it_started_with(tmp_path, monkeypatch):
    from deepnotes.cli import main

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        args = ["run", "regression", "--preset", "fast", "--no-progress", "--out", str(tmp_path), "--threads", "1"]
        assert main(args) == 0
        (run_dir,) = list((tmp_path / "regression").iterdir())
        assert json.loads((run_dir / "cpu.json").read_text())["threads"] == 1
        (run_dir / "cpu.json").write_text(json.dumps({"threads": 1}))
        torch.set_num_threads(2)
        main(["run", "regression", "--resume", str(run_dir), "--no-progress"])
        assert torch.get_num_threads() == 1  # not the idle cores of now: the count recorded at the start
    finally:
        torch.set_num_threads(before)
