"""What the throughput scripts of this folder share: the load average, and rounds that alternate the timed steps.

``python benchmarks/<script>.py`` puts this folder first on ``sys.path``, so the scripts ``from timing import ...``.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as ``"0.12, 0.30, 0.41"``."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def alternating_rates(steps: dict[str, Callable[[], None]], repeats: int, updates: int,
                      batch: int) -> dict[str, list[float]]:
    """Items per second of each step over ``repeats`` rounds; each round runs every step ``updates`` times in turn
    (so a change in the machine's load falls on all of them), after one warm-up round. Prints the load average
    before and after."""
    print(f"load average (1, 5, 15 min) before: {load_average()}", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(repeats + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(updates):
                step()
            if round_:  # round 0 warms up
                rates[name].append(updates * batch / (time.perf_counter() - start))
    print(f"load average (1, 5, 15 min) after: {load_average()}")
    return rates


def rate_rows(rates: dict[str, list[float]], baseline: str) -> list[list[str]]:
    """Table rows: name, median items/s, min-max, the median's ratio to ``baseline``'s median."""
    base = statistics.median(rates[baseline])
    return [[name, f"{statistics.median(r):,.0f}", f"{min(r):,.0f}-{max(r):,.0f}", f"{statistics.median(r) / base:.2f}"]
            for name, r in rates.items()]
