"""The ``deepnotes`` console script: OpenMP's wait policy is set before anything imports torch (deepnotes.runtime)."""

from __future__ import annotations


def entry() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy, then run the command line."""
    from deepnotes import runtime

    runtime.configure_openmp()
    from deepnotes.cli import entry as cli_entry

    cli_entry()
