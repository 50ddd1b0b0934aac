"""Text corpora: the King James Bible (KJV) for character- and word-level language models.

``deepnotes data build kjv`` runs Debian's ``bible`` program (packages ``bible-kjv bible-kjv-text``;
public-domain text) once, parses its 31,102 verses and writes ``<data_root>/kjv/kjv.tsv``
(``book<TAB>chapter<TAB>verse<TAB>text``, one verse a line, UTF-8) and ``manifest.json`` (package
versions, verse and character counts, SHA-256), both written atomically. Loading reads the TSV;
the ``bible`` program is needed only for the build.

Splits are verse-level (:func:`verse_split`): each verse goes wholly to train or validation, chosen by
a seeded permutation, so a model is validated on verses it never saw (the text around them it did).
:class:`CharVocab` maps characters to ids for the char-level labs (char-gpt, lstm-lm).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from deepnotes.data.paths import data_root
from deepnotes.errors import DataError, UserError
from deepnotes.io import write_json_atomic, write_text_atomic

KJV_PACKAGES = ("bible-kjv", "bible-kjv-text")
KJV_N_VERSES = 31102
_VERSE_LINE = re.compile(r"^\s+(\d+) (.*)$")
_HEADING = re.compile(r"^(\S.*) (\d+)$")


@dataclass(frozen=True)
class Verse:
    """One verse: ``book`` (e.g. ``"1 Samuel"``), ``chapter`` and ``verse`` numbers (from 1), and its ``text``."""

    book: str
    chapter: int
    verse: int
    text: str


def parse_bible_output(text: str) -> list[Verse]:
    """Verses from the output of ``COLUMNS=100000 bible 'gen1:1-rev22:21'``.

    The program prints a heading ``Book N`` before each chapter and each verse as ``  K text`` on one
    line (with a wide COLUMNS). Blank lines are ignored.

    Raises:
        DataError: a verse line before any heading, or a line that is neither (names the line number).
    """
    verses: list[Verse] = []
    book, chapter = None, None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _VERSE_LINE.match(line)
        if m:
            if book is None:
                raise DataError(f"bible output line {lineno}: a verse before any 'Book chapter' heading")
            verses.append(Verse(book, chapter, int(m.group(1)), m.group(2).strip()))
            continue
        h = _HEADING.match(line.strip())
        if not h:
            raise DataError(f"bible output line {lineno}: neither a heading nor a verse: {line[:60]!r}")
        book, chapter = h.group(1), int(h.group(2))
    return verses


@dataclass(frozen=True)
class KJVInfo:
    """Where the KJV text comes from, whether it is here, and how to build it (``deepnotes data``)."""

    name: str = "kjv"
    description: str = "King James Bible, 31,102 verses, ~4.1 M characters (char/word language models)"
    source: str = "Debian packages bible-kjv + bible-kjv-text (the `bible` program)"
    license: str = "public domain"

    def cache_dir(self) -> Path:
        return data_root() / self.name

    def tsv_path(self) -> Path:
        return self.cache_dir() / "kjv.tsv"

    def status(self) -> str:
        return f"present at {self.cache_dir()}" if self.tsv_path().is_file() else "missing"

    def how_to_get(self) -> str:
        return "\n".join([
            f"{self.name}: {self.description}",
            f"Built into {self.cache_dir()} (set DEEPNOTES_DATA to move it) from the `bible` program:",
            f"  sudo apt-get install {' '.join(KJV_PACKAGES)}",
            f"  deepnotes data build {self.name}",
            f"Source: {self.source}. License: {self.license}.",
        ])

    def build(self, force: bool = False) -> Path:
        """Write ``kjv.tsv`` and ``manifest.json`` into :meth:`cache_dir` (kept if already there).

        Raises:
            DataError: the ``bible`` program is missing (names the apt packages) or failed, or its
                output does not hold the expected 31,102 verses.
        """
        out = self.tsv_path()
        if out.is_file() and not force:
            return self.cache_dir()
        exe = shutil.which("bible")
        if exe is None:
            raise DataError(f"kjv: the `bible` program is missing; install it with "
                            f"`sudo apt-get install {' '.join(KJV_PACKAGES)}`, then `deepnotes data build kjv`")
        env = dict(os.environ, COLUMNS="100000")
        try:
            proc = subprocess.run([exe, "gen1:1-rev22:21"], env=env, capture_output=True, timeout=300, check=True)
        except (subprocess.SubprocessError, OSError) as e:
            raise DataError(f"kjv: running `{exe} gen1:1-rev22:21` failed: {e}") from e
        verses = parse_bible_output(proc.stdout.decode("utf-8"))
        if len(verses) != KJV_N_VERSES:
            raise DataError(f"kjv: `bible` printed {len(verses)} verses, expected {KJV_N_VERSES}; "
                            f"reinstall {' '.join(KJV_PACKAGES)}")
        tsv = "".join(f"{v.book}\t{v.chapter}\t{v.verse}\t{v.text}\n" for v in verses)
        write_text_atomic(out, tsv)
        write_json_atomic(self.cache_dir() / "manifest.json", {
            "dataset": self.name,
            "packages": {p: _deb_version(p) for p in KJV_PACKAGES},
            "command": "COLUMNS=100000 bible gen1:1-rev22:21",
            "n_verses": len(verses),
            "n_chars": sum(len(v.text) for v in verses),
            "files": {"kjv.tsv": hashlib.sha256(tsv.encode("utf-8")).hexdigest()},
        })
        return self.cache_dir()


KJV = KJVInfo()


def _deb_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, timeout=30)
        return out.stdout.decode().strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def load_kjv(path: str | os.PathLike[str] | None = None, build: bool = True) -> list[Verse]:
    """The KJV verses in canonical order (Genesis 1:1 ... Revelation 22:21).

    Args:
        path: a ``kjv.tsv`` file (``book<TAB>chapter<TAB>verse<TAB>text``); default the built one.
        build: build it first when the default file is missing (default True).

    Raises:
        DataError: the file is missing (says how to build it) or a line is malformed (names file and line).
    """
    if path is None:
        if not KJV.tsv_path().is_file():
            if not build:
                raise DataError(f"kjv is missing; run `deepnotes data build kjv` ({KJV.how_to_get().splitlines()[2].strip()})")
            KJV.build()
        path = KJV.tsv_path()
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}; rebuild it with `deepnotes data build kjv`") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}); rebuild it with `deepnotes data build kjv`") from e
    verses = []
    for i, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
            raise DataError(f"{path} line {i}: expected 'book<TAB>chapter<TAB>verse<TAB>text', got {line[:60]!r}")
        verses.append(Verse(parts[0], int(parts[1]), int(parts[2]), parts[3]))
    if not verses:
        raise DataError(f"{path} holds no verses; rebuild it with `deepnotes data build kjv`")
    return verses


def join_verses(verses: Sequence[Verse], index: Iterable[int] | None = None) -> str:
    """The texts of ``verses[index]`` (all by default), one verse a line (``"\\n"`` after each)."""
    chosen = verses if index is None else [verses[i] for i in index]
    return "".join(v.text + "\n" for v in chosen)


@dataclass(frozen=True)
class CharVocab:
    """Character vocabulary: ``itos`` (id -> character, sorted) and the inverse ``stoi``.

    ``encode`` raises :class:`UserError` on a character outside the vocabulary (e.g. in a prompt),
    naming it and listing the known ones.
    """

    itos: tuple[str, ...]
    stoi: dict = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if len(set(self.itos)) != len(self.itos) or any(len(c) != 1 for c in self.itos):
            raise ValueError("itos must be distinct single characters")
        object.__setattr__(self, "stoi", {c: i for i, c in enumerate(self.itos)})

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(tuple(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:
        """``(len(text),)`` int64 ids."""
        try:
            return np.fromiter((self.stoi[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as e:
            known = "".join(c for c in self.itos if c.isprintable())
            raise UserError(f"character {e.args[0]!r} is not in the vocabulary; use only: {known!r}") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.itos[int(i)] for i in ids)
