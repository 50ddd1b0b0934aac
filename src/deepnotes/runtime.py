"""How many CPU threads a command uses, and how long they spin: chosen before torch starts OpenMP.

PyTorch's CPU build runs its parallel loops on GNU OpenMP threads. By default a thread that finishes its share of a
loop *spins* (keeps its core busy polling) for a while before it sleeps, which is fastest on an idle machine. Beside
another busy process it is a disaster: the spinning thread holds a core that the other process, or our own
straggling thread, needs; a char-gpt epoch ran 16x slower next to one single-threaded job (issue #29).

The command line therefore, unless the user chose otherwise:

* picks the number of threads from the cores that are idle *now* (:func:`idle_cores`, two samples of
  ``/proc/stat``), so a run started beside a busy process takes the free core instead of fighting for both
  (:func:`choose_threads`);
* shortens the spin before a waiting thread sleeps, ``GOMP_SPINCOUNT=10000`` (libgomp's default is 300,000), set
  before torch is imported (:func:`configure_openmp`): as fast as the default on an idle machine, and half the
  slowdown when another job starts while we run. ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once) was measured too: a
  third slower on an idle machine.

``--threads N`` and ``OMP_NUM_THREADS`` always win over the automatic count; ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` set by the user are left alone. The measurements are in benchmarks/RESULTS.md ("Shared cores"),
from ``python benchmarks/shared_cores.py``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import MutableMapping

SPIN_COUNT = "10000"


def configure_openmp(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``GOMP_SPINCOUNT=10000`` in ``environ`` (default ``os.environ``) unless the user set a wait policy.

    Must run before torch is imported (OpenMP reads the variable once, when it starts); later it has no effect.
    Returns True when it set the variable, False when ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` was already there.
    """
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return False
    env["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True


def _cpu_times(stat_path: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together, from the first line of ``/proc/stat``."""
    with open(stat_path) as f:
        fields = f.readline().split()
    if not fields or fields[0] != "cpu":
        raise OSError(f"{stat_path}: no 'cpu' line")
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def idle_from_samples(first: tuple[int, int], second: tuple[int, int], n_cpus: int) -> float | None:
    """Idle cores between two ``(busy, total)`` jiffy samples of all ``n_cpus`` CPUs; None when no time passed."""
    busy = second[0] - first[0]
    total = second[1] - first[1]
    if total <= 0 or n_cpus <= 0:
        return None
    return n_cpus * (1.0 - busy / total)


def idle_cores(interval: float = 0.1, stat_path: str = "/proc/stat") -> float | None:
    """How many of this machine's cores were idle over the next ``interval`` seconds (a float, e.g. 1.02).

    Reads the whole machine's busy and total CPU time twice from ``stat_path``. Returns None where the file cannot
    be read (not Linux), so callers fall back to all cores.
    """
    try:
        first = _cpu_times(stat_path)
        time.sleep(interval)
        second = _cpu_times(stat_path)
        with open(stat_path) as f:
            n_cpus = sum(1 for line in f if line.startswith("cpu") and line[3:4].isdigit())
    except (OSError, ValueError, IndexError):
        return None
    return idle_from_samples(first, second, n_cpus)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def choose_threads(requested: int = 0, environ: MutableMapping[str, str] | None = None,
                   idle: float | None = None) -> tuple[int | None, str]:
    """The torch thread count for a command, and why.

    Args:
        requested: ``--threads``; a positive value wins.
        environ: where ``OMP_NUM_THREADS`` is looked up (default ``os.environ``); when set, torch already uses it and
            this returns ``(None, reason)``: leave torch as it is.
        idle: idle cores measured by the caller (default: :func:`idle_cores` now).

    Returns:
        ``(threads, reason)``: ``threads`` is the number of the idle cores rounded to the nearest whole core, at
        least 1 and at most :func:`available_cores`; ``reason`` is a short sentence for the run's log.
    """
    env = os.environ if environ is None else environ
    if requested > 0:
        return requested, f"{requested} thread(s), as --threads asked"
    if env.get("OMP_NUM_THREADS"):
        return None, f"{env['OMP_NUM_THREADS']} thread(s), from OMP_NUM_THREADS"
    cores = available_cores()
    if idle is None:
        idle = idle_cores()
    if idle is None:
        return cores, f"{cores} thread(s): all cores (their load could not be read)"
    threads = max(1, min(cores, math.floor(idle + 0.5)))
    busy = max(0.0, cores - idle)
    return threads, (f"{threads} thread(s): {idle:.1f} of {cores} cores idle"
                     + (f" ({busy:.1f} busy with other work; --threads N overrides)" if threads < cores else ""))
