"""Test-session reporting: which data and programs are missing (said up front, with the command that gets them),
and at the end every skip grouped by its reason, so a fresh machine knows what it did not test and why."""

from __future__ import annotations

import os
import shutil
from collections import Counter

# The command line picks one thread per idle core when OMP_NUM_THREADS is unset (deepnotes.runtime); tests that
# compare two runs started side by side need the same count in both, so the suite fixes it for its subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                             else os.cpu_count() or 1))

# Programs some tests need, and the command that installs them (Debian).
PROGRAMS = {
    "bible": "sudo apt-get install bible-kjv  (or: make system-data)",
    "espeak-ng": "make system-speech  (as root)",
    "flite": "make system-speech  (as root)",
    "festival": "make system-speech  (as root)",
    "sox": "make system-speech  (as root)",
    "mbrola": "make system-speech  (as root; adds Debian's contrib and non-free)",
    "pico2wave": "make system-speech  (as root; adds Debian's contrib and non-free)",
    "RHVoice-test": "make system-speech  (as root; adds Debian's contrib and non-free)",
    "pocketsphinx_batch": "make system-speech  (as root)",
    "dpkg-deb": "a Debian system (dpkg)",
}


def missing_requirements() -> list[str]:
    """One line per dataset or program that is absent here, with the command that makes it present."""
    lines = []
    try:
        from deepnotes.data.registry import all_datasets

        datasets = all_datasets()
    except Exception as e:  # noqa: BLE001 - the header must not stop the session; the tests will show the error
        return [f"cannot list the datasets: {e}"]
    for name, entry in datasets.items():
        try:
            status = entry.status()
        except Exception as e:  # noqa: BLE001
            status = f"missing ({e})"
        if status.startswith("missing") or "outdated" in status:
            lines.append(f"dataset {name}: {status.splitlines()[0]} -> deepnotes data build {name}")
    for program, how in PROGRAMS.items():
        if shutil.which(program) is None:
            lines.append(f"program {program}: not installed -> {how}")
    return lines


def pytest_sessionstart(session):
    """Say up front (also under -q) what is missing and the command that gets each."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    missing = missing_requirements()
    if not missing:
        reporter.write_line("deepnotes: every dataset and program the tests use is present")
        return
    reporter.write_line("deepnotes: tests that need these will skip (get each with the command shown):")
    for line in missing:
        reporter.write_line(f"  {line}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: Counter[str] = Counter()
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    terminalreporter.section("skipped tests, by reason")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:4d}  {reason}")
