"""Every dataset ``deepnotes data list | info | build`` knows, by name.

A dataset entry has ``name``, ``description``, ``status() -> str`` ("present at ..." or "missing"),
``how_to_get() -> str`` (multi-line instructions) and ``build() -> Path`` (make it present; return the
folder or file). Image datasets live in :mod:`deepnotes.data.images`, text corpora in :mod:`deepnotes.data.text`
and :mod:`deepnotes.data.translation`, speech in :mod:`deepnotes.data.speech_build` and
:mod:`deepnotes.data.phonemes`, small tables shipped in pip packages in :mod:`deepnotes.data.tabular`.
Every lab's ``default_dataset`` is one of these names. An ImportError of one of these modules is a bug or a
missing dependency: it is raised, not hidden.
"""

from __future__ import annotations

from typing import Any

from deepnotes.errors import UserError


def all_datasets() -> dict[str, Any]:
    """Name -> dataset entry: images, text, translation, speech, phonemes, tables, fortunes, 2-D mixtures."""
    from deepnotes.data.bert_tasks import FORTUNES
    from deepnotes.data.images import IMAGE_DATASETS
    from deepnotes.data.phonemes import PHONEME_FRAMES, PHONEME_FRAMES_SMALL
    from deepnotes.data.speaker_build import SPEAKER_UTTERANCES, SPEAKER_UTTERANCES_SMALL
    from deepnotes.data.speech_build import SPEECH_KEYWORDS, SPEECH_KEYWORDS_SMALL
    from deepnotes.data.tabular import DIABETES, SEATTLE_WEATHER
    from deepnotes.data.text import KJV
    from deepnotes.data.toy2d import MIXTURES
    from deepnotes.data.translation import UI_TRANSLATIONS

    entries: dict[str, Any] = dict(IMAGE_DATASETS)
    for entry in (KJV, UI_TRANSLATIONS, SPEECH_KEYWORDS, SPEECH_KEYWORDS_SMALL, PHONEME_FRAMES, PHONEME_FRAMES_SMALL,
                  SPEAKER_UTTERANCES, SPEAKER_UTTERANCES_SMALL, SEATTLE_WEATHER, DIABETES, FORTUNES, *MIXTURES.values()):
        entries[entry.name] = entry
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
