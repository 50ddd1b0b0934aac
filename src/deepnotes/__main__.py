"""``python -m deepnotes`` (also what ``torchrun -m deepnotes`` runs)."""

from deepnotes._launch import entry

entry()
