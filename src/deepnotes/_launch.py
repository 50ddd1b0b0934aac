"""The ``deepnotes`` console script: OpenMP's spin before sleeping is set before anything imports torch (deepnotes.runtime)."""

from __future__ import annotations


def entry() -> None:
    """Set ``GOMP_SPINCOUNT=10000`` unless the user chose a wait policy, then run the command line."""
    from deepnotes import runtime

    runtime.configure_openmp()
    from deepnotes.cli import entry as cli_entry

    cli_entry()
