"""``python -m deepnotes`` (also what ``torchrun -m deepnotes`` runs)."""

from deepnotes.cli import entry

entry()
