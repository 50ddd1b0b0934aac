"""Every dataset ``deepnotes data list | info | build`` knows, by name.

A dataset entry has ``name``, ``description``, ``status() -> str`` ("present at ..." or "missing"),
``how_to_get() -> str`` (multi-line instructions) and ``build() -> Path`` (make it present; return the
folder). Image datasets live in :mod:`deepnotes.data.images`, text corpora in :mod:`deepnotes.data.text`
and :mod:`deepnotes.data.translation`.
"""

from __future__ import annotations

from typing import Any

from deepnotes.errors import UserError


def all_datasets() -> dict[str, Any]:
    """Name -> dataset entry, images first, then text."""
    from deepnotes.data.images import IMAGE_DATASETS
    from deepnotes.data.text import KJV

    entries: dict[str, Any] = dict(IMAGE_DATASETS)
    entries[KJV.name] = KJV
    try:  # the translation pairs (issue 5); optional while it is being written
        from deepnotes.data.translation import UI_TRANSLATIONS
    except ImportError:
        pass
    else:
        entries[UI_TRANSLATIONS.name] = UI_TRANSLATIONS
    try:  # synthesized spoken keywords in the Speech Commands layout (the speech chapter), and its small test grid
        from deepnotes.data.speech_build import SPEECH_KEYWORDS, SPEECH_KEYWORDS_SMALL
    except ImportError:
        pass
    else:
        entries[SPEECH_KEYWORDS.name] = SPEECH_KEYWORDS
        entries[SPEECH_KEYWORDS_SMALL.name] = SPEECH_KEYWORDS_SMALL
    try:  # HW2's frame-level phoneme set from festival (issue 10), and its small test grid
        from deepnotes.data.phonemes import PHONEME_FRAMES, PHONEME_FRAMES_SMALL
    except ImportError:
        pass
    else:
        entries[PHONEME_FRAMES.name] = PHONEME_FRAMES
        entries[PHONEME_FRAMES_SMALL.name] = PHONEME_FRAMES_SMALL
    return entries


def get_dataset(name: str) -> Any:
    """The dataset entry called ``name``.

    Raises:
        UserError: unknown name (the message lists the known ones).
    """
    entries = all_datasets()
    if name not in entries:
        raise UserError(f"unknown dataset {name!r}; `deepnotes data list` shows them: {', '.join(entries)}")
    return entries[name]
