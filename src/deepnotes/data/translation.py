"""Machine-translation data: EN->ZH pairs from Debian's gettext catalogs, TED2020 text, subword tokenizers.

Source: ML2021/2022 homework 5, "Machine Translation" (a Transformer seq2seq model trained on the
TED2020 EN->ZH corpus, tokenized into subwords with sentencepiece, scored with BLEU); lecture
"Transformer" (Seq2seq: input and output are sequences whose output length the model decides).

Three parts:

1. ``deepnotes data build ui-translations`` (:data:`UI_TRANSLATIONS`): the zh_CN message catalogs of
   a fixed list of Debian packages (:data:`UI_PACKAGES`) become English -> Simplified Chinese sentence
   pairs. Each package's ``.deb`` is fetched with ``apt-get download`` into
   ``<data_root>/ui-translations/debs/`` (kept, so an interrupted build resumes), its file-system tar
   stream (``dpkg-deb --fsys-tarfile``) is read in Python without extracting anything to disk, and every
   ``usr/share/locale/zh_CN/LC_MESSAGES/*.mo`` is parsed (:func:`parse_mo`). The filters
   (:data:`FILTER_RULES`, :func:`catalog_pairs`, :func:`dedupe_pairs`) keep the message text without its
   msgctxt, only the first form of plural entries, zh sides that hold a CJK ideograph, English sides of
   at least 3 words; whitespace is collapsed, and each English source is kept once (the first package
   in :data:`UI_PACKAGES` order wins). Output: ``pairs.tsv`` (``package<TAB>en<TAB>zh``) and
   ``manifest.json``, written atomically. The domain is software messages (menus, errors, ``--help``
   text) with printf placeholders (``%s``, ``%1$s``), not TED talks; licenses are those of each package
   (mostly GPL/LGPL, see ``/usr/share/doc/PKG/copyright``).
   :func:`package_split` splits by source package so that no package's phrasing leaks from train into
   validation or test.
2. :func:`read_parallel_text`: the TED2020 files of HW5 (``train_dev.raw.en`` / ``train_dev.raw.zh``: one
   sentence a line, the same number of lines).
3. :func:`train_sentencepiece` and :class:`SubwordTokenizer`: BPE or unigram subwords (Sennrich et al.
   2016; Kudo 2018) through the ``sentencepiece`` library, with printf placeholders kept whole.
4. A corpus ready for training (:func:`load_translation_data` from a :class:`CorpusSpec`: splits, seeded subsets,
   the joint tokenizer of the training split, :func:`protect_spans`, the length filter) and its batches:
   :class:`TokenBatches` packs pairs of similar lengths into padded batches of at most ``max_tokens`` padded
   tokens (fairseq's ``--max-tokens``), shuffled per epoch from (seed, epoch) only, the Trainer's batch source;
   :func:`bpe_dropout_batch` re-segments a training batch with BPE-dropout (Provilkov et al. 2020).

Deliberate differences from HW5: the tokenizer defaults to byte fallback and no Unicode normalization
(``identity``), so ``decode(encode(s)) == s`` for whitespace-normalized text, rare characters included;
HW5 used sentencepiece's default NFKC normalization, which rewrites full-width Chinese punctuation
(``，`` -> ``,``) and so changes the references BLEU is computed against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from deepnotes.data.download import sha256_file
from deepnotes.data.paths import data_root
from deepnotes.data.splits import group_split
from deepnotes.data.subword import BPEDropout
from deepnotes.errors import DataError, UserError
from deepnotes.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from deepnotes.train.batches import seed_for
from deepnotes.train.task import IGNORE_INDEX

# ----------------------------------------------------------------------------------------------------------
# Gettext catalogs (.mo)
# ----------------------------------------------------------------------------------------------------------

#: The Debian packages whose zh_CN catalogs make the corpus, in priority order (the first package that
#: holds an English source keeps it). Each was checked to ship ``usr/share/locale/zh_CN/LC_MESSAGES/*.mo``
#: in Debian 12 (bookworm). Order: the list of ``shared/DATA.md`` and other GNU tools, libraries and
#: daemons with large catalogs (the first 33, ~37k pairs: the corpus until 2026-11-24), then more
#: command-line tools and system libraries, then desktop applications (~81k pairs in all). Added after the
#: lecture's "self-attention is more flexible than CNN/RNN, so it needs more data": the larger corpus lifts
#: both translation models on the test packages, the Transformer a little more (benchmarks/RESULTS.md).
UI_PACKAGES: tuple[str, ...] = (
    "postgresql-15", "git", "coreutils", "libgtk-3-common", "libglib2.0-data", "gettext", "dpkg", "apt",
    "bash", "tar", "grep", "sed", "findutils", "diffutils", "systemd", "iso-codes", "man-db",
    "util-linux-locales", "gnupg-l10n", "libc-l10n", "gcc-12-locales", "binutils-common", "network-manager",
    "sudo", "wget", "nano", "make", "cpio", "texinfo", "libgphoto2-l10n", "aspell", "bison", "flex",
    # command-line tools and system libraries
    "e2fsprogs-l10n", "mc-data", "lftp", "mutt", "login", "gawk", "sharutils", "wdiff", "recode", "debconf-i18n",
    "aptitude-common", "libparted-i18n", "procps", "psmisc", "libpam-runtime", "xz-utils", "libgpg-error-l10n",
    "cryptsetup-bin", "apt-utils", "subversion",
    # desktop applications
    "gnome-disk-utility", "filezilla-common", "synaptic", "system-config-printer-common", "network-manager-gnome",
    "pulseaudio", "gvfs-common", "polkitd", "packagekit", "gnome-software-common", "gimp-data", "inkscape",
    "vlc-l10n", "gnucash-common", "evolution-common", "gnome-control-center-data", "nautilus-data",
    "gnome-shell-common", "libgtk2.0-common", "libgtk-4-common", "gedit-common", "evince-common", "file-roller",
    "gnome-terminal-data", "seahorse", "remmina-common", "audacity-data", "pidgin-data", "hexchat-common",
    "geany-common", "poedit-common", "thunar-data", "xfce4-panel",
)

#: Default held-out packages of :func:`package_split` (3,685 test and 1,790 validation pairs, ~4.6 % and
#: ~2.2 % of the 80,841 built): command-line tools for test, a library's messages and an admin tool for validation.
DEFAULT_TEST_PACKAGES: tuple[str, ...] = ("coreutils", "dpkg", "tar", "wget")
DEFAULT_VAL_PACKAGES: tuple[str, ...] = ("libglib2.0-data", "sudo")

#: Minimum number of whitespace-separated English words of a kept pair.
MIN_EN_WORDS = 3

#: The filters, in the words the manifest records.
FILTER_RULES: tuple[str, ...] = (
    "catalogs: usr/share/locale/zh_CN/LC_MESSAGES/*.mo (regular files), in path order",
    "msgctxt dropped (the text before \\x04 in the msgid)",
    "plural entries: only the first form (msgid singular -> msgstr[0])",
    "untranslated entries (empty msgstr) and the header (empty msgid) dropped",
    "whitespace collapsed to single spaces, ends stripped (both sides)",
    f"English side has >= {MIN_EN_WORDS} whitespace-separated words",
    "zh side holds at least one CJK ideograph (U+3400-4DBF, U+4E00-9FFF, U+F900-FAFF, U+20000-3134F)",
    "deduplicated by English text: the first package in the fixed order wins, then the first catalog, "
    "then the first entry",
)

_MO_MAGIC = 0x950412DE
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_CHARSET = re.compile(r"charset=\s*([^\s;]+)", re.IGNORECASE)
_ZH_MO = re.compile(r"usr/share/locale/zh_CN/LC_MESSAGES/[^/]+\.mo")


@dataclass(frozen=True)
class CatalogEntry:
    """One message of a ``.mo`` catalog.

    ``msgctxt`` is None when the message has no context; ``msgid_plural`` is None for a non-plural
    message; ``msgstr`` holds the translation's forms (one for a non-plural message).
    """

    msgctxt: str | None
    msgid: str
    msgid_plural: str | None
    msgstr: tuple[str, ...]


def parse_mo(data: bytes, name: str = "<bytes>") -> list[CatalogEntry]:
    """Parse a GNU gettext ``.mo`` file (either byte order, revision 0 or 1) into its entries, in file order.

    The layout (GNU gettext manual, "The Format of GNU MO Files"): a 28-byte header (magic
    ``0x950412de``, revision, N strings, offsets O and T of the original and translation tables, hash
    table size and offset), then two tables of N ``(length, offset)`` pairs. An original is
    ``[msgctxt "\\x04"] msgid ["\\x00" msgid_plural]``; a translation holds its plural forms separated by
    ``"\\x00"``. Strings are decoded with the charset named in the header entry (empty msgid), UTF-8 when
    it names none. The header entry itself is returned too (``msgid == ""``).

    Args:
        data: the file's bytes.
        name: the file's name, for error messages.

    Returns:
        ``list[CatalogEntry]``, the same entries as ``gettext.GNUTranslations`` reads.

    Raises:
        DataError: not a .mo file, truncated, or not decodable with its charset (names ``name``).
    """
    if len(data) < 28:
        raise DataError(f"{name}: not a gettext .mo file (only {len(data)} bytes)")
    for order in "<>":
        if struct.unpack(order + "I", data[:4])[0] == _MO_MAGIC:
            break
    else:
        raise DataError(f"{name}: not a gettext .mo file (bad magic number {data[:4].hex()})")
    revision, n, o_off, t_off = struct.unpack(order + "4I", data[4:20])
    if revision >> 16 not in (0, 1):
        raise DataError(f"{name}: unsupported .mo major revision {revision >> 16}")

    def table(offset: int) -> list[bytes]:
        if offset + 8 * n > len(data):
            raise DataError(f"{name}: truncated .mo file (string table past the end)")
        out = []
        for i in range(n):
            length, start = struct.unpack_from(order + "II", data, offset + 8 * i)
            if start + length > len(data):
                raise DataError(f"{name}: truncated .mo file (string {i} past the end)")
            out.append(data[start:start + length])
        return out

    originals, translations = table(o_off), table(t_off)
    charset = "utf-8"
    for orig, trans in zip(originals, translations):
        if orig == b"":
            m = _CHARSET.search(trans.decode("ascii", errors="replace"))
            if m and m.group(1).upper() != "CHARSET":
                charset = m.group(1)
    entries = []
    for i, (orig, trans) in enumerate(zip(originals, translations)):
        try:
            o, t = orig.decode(charset), trans.decode(charset)
        except (UnicodeDecodeError, LookupError) as e:
            raise DataError(f"{name}: message {i} is not valid {charset} ({e})") from e
        ctxt = None
        if "\x04" in o:
            ctxt, o = o.split("\x04", 1)
        msgid, _, plural = o.partition("\x00")
        entries.append(CatalogEntry(ctxt, msgid, plural if "\x00" in o else None, tuple(t.split("\x00"))))
    return entries


def normalize_space(text: str) -> str:
    """``text`` with every run of whitespace (tabs, newlines, U+3000, ...) made one space, ends stripped."""
    return " ".join(text.split())


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds a CJK unified or compatibility ideograph (Chinese punctuation alone does not count)."""
    return _CJK.search(text) is not None


def catalog_pairs(entries: Iterable[CatalogEntry], min_en_words: int = MIN_EN_WORDS) -> list[tuple[str, str]]:
    """``(en, zh)`` pairs of catalog entries that pass the filters (:data:`FILTER_RULES`), in entry order.

    The context is left out (only the msgid is kept), a plural entry gives its singular msgid and its
    first form, both sides are whitespace-normalized; the header, untranslated entries, English sides
    of fewer than ``min_en_words`` words and zh sides without a CJK ideograph are dropped. Duplicates
    are kept (see :func:`dedupe_pairs`).
    """
    pairs = []
    for e in entries:
        en, zh = normalize_space(e.msgid), normalize_space(e.msgstr[0])
        if en and zh and len(en.split()) >= min_en_words and has_cjk(zh):
            pairs.append((en, zh))
    return pairs


@dataclass(frozen=True)
class Pair:
    """One sentence pair: the Debian ``package`` it came from, the English source ``en`` and its Chinese ``zh``."""

    package: str
    en: str
    zh: str


def dedupe_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """The pairs with each English text kept once: the first occurrence wins, order preserved."""
    seen: set[str] = set()
    out = []
    for p in pairs:
        if p.en not in seen:
            seen.add(p.en)
            out.append(p)
    return out


def read_deb_catalogs(deb: str | os.PathLike[str]) -> list[tuple[str, bytes]]:
    """The zh_CN ``.mo`` files of a ``.deb``: ``[(path inside the package, bytes)]``, sorted by path.

    Reads ``dpkg-deb --fsys-tarfile DEB`` as a tar stream; nothing is written to disk.

    Raises:
        DataError: ``dpkg-deb`` is missing, or the file is not a readable .deb (delete it and rebuild).
    """
    deb = Path(deb)
    exe = shutil.which("dpkg-deb")
    if exe is None:
        raise DataError("ui-translations: `dpkg-deb` is missing; it comes with Debian/Ubuntu's dpkg "
                        "(`sudo apt-get install dpkg`)")
    found = []
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([exe, "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=err)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|*") as tf:
                for member in tf:
                    path = member.name.removeprefix("./").lstrip("/")
                    if member.isfile() and _ZH_MO.fullmatch(path):
                        found.append((path, tf.extractfile(member).read()))
        except tarfile.TarError as e:
            proc.kill()
            proc.wait()
            raise DataError(f"{deb}: cannot read its file tree ({e}); delete it and run "
                            f"`deepnotes data build ui-translations` again") from e
        finally:
            proc.stdout.close()
        rc = proc.wait()
        if rc != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip().splitlines()
            raise DataError(f"{deb}: `dpkg-deb --fsys-tarfile` failed ({msg[-1] if msg else f'exit {rc}'}); "
                            f"delete it and run `deepnotes data build ui-translations` again")
    return sorted(found)


def deb_field(deb: str | os.PathLike[str], field: str) -> str:
    """A control field of a ``.deb`` (``dpkg-deb --field DEB FIELD``), e.g. ``Version``.

    Raises:
        DataError: ``dpkg-deb`` failed (names the file).
    """
    try:
        out = subprocess.run(["dpkg-deb", "--field", str(deb), field], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise DataError(f"{deb}: `dpkg-deb --field {field}` failed ({e}); delete it and rebuild") from e
    return out.stdout.decode().strip()


# ----------------------------------------------------------------------------------------------------------
# pairs.tsv
# ----------------------------------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()}
_ESCAPED = re.compile(r"\\[\\tnr]")


def escape_field(text: str) -> str:
    """A TSV field: backslash, tab, newline and carriage return written as ``\\\\``, ``\\t``, ``\\n``, ``\\r``."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def unescape_field(text: str) -> str:
    """The inverse of :func:`escape_field`."""
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(0)], text)


def format_pairs_tsv(pairs: Iterable[Pair]) -> str:
    """``package<TAB>en<TAB>zh`` lines (escaped), sorted by package, then English, then Chinese."""
    rows = sorted((p.package, p.en, p.zh) for p in pairs)
    return "".join("\t".join(escape_field(f) for f in row) + "\n" for row in rows)


@dataclass(frozen=True)
class UITranslationsInfo:
    """Where the EN->ZH UI-message pairs come from, whether they are here, and how to build them."""

    name: str = "ui-translations"
    description: str = (f"~81k EN->zh_CN software-message pairs from the gettext catalogs of {len(UI_PACKAGES)} "
                        f"Debian packages (machine translation)")
    source: str = "Debian packages' zh_CN gettext catalogs (apt-get download, dpkg-deb)"
    license: str = "per package, mostly GPL/LGPL: see /usr/share/doc/PKG/copyright"
    packages: tuple[str, ...] = UI_PACKAGES

    def cache_dir(self) -> Path:
        return data_root() / self.name

    def debs_dir(self) -> Path:
        return self.cache_dir() / "debs"

    def pairs_path(self) -> Path:
        return self.cache_dir() / "pairs.tsv"

    def built_packages(self) -> tuple[str, ...] | None:
        """The package list the present build was made from (its ``manifest.json``); None if unreadable."""
        try:
            manifest = json.loads((self.cache_dir() / "manifest.json").read_text(encoding="utf-8"))
            return tuple(r["package"] for r in manifest["packages"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_current(self) -> bool:
        """``pairs.tsv`` is there and was built from exactly :attr:`packages`, in that order."""
        return self.pairs_path().is_file() and self.built_packages() == tuple(self.packages)

    def stale_message(self) -> str:
        """Why a present build cannot be used, and the command that fixes it."""
        built = self.built_packages()
        what = "an unreadable manifest" if built is None else f"{len(built)} packages"
        return (f"{self.name} at {self.cache_dir()} was built from {what}, not the {len(self.packages)} packages "
                f"this version of deepnotes uses; update it with `deepnotes data build {self.name}` "
                f"(the .debs already downloaded are reused)")

    def status(self) -> str:
        if not self.pairs_path().is_file():
            return "missing"
        if not self.is_current():
            return f"outdated at {self.cache_dir()} (another package list): `deepnotes data build {self.name}` updates it"
        return f"present at {self.cache_dir()}"

    def how_to_get(self) -> str:
        return "\n".join([
            f"{self.name}: {self.description}",
            f"Built into {self.cache_dir()} (set DEEPNOTES_DATA to move it) from Debian packages:",
            f"  deepnotes data build {self.name}",
            "It runs `apt-get download PKG` (no root needed; if apt cannot find a package, run "
            "`sudo apt-get update` first) and `dpkg-deb`, on Debian or Ubuntu.",
            f"Packages: {' '.join(self.packages)}",
            f"Source: {self.source}. License: {self.license}.",
        ])

    def fetch_deb(self, package: str) -> Path:
        """The package's ``.deb`` in :meth:`debs_dir`, downloaded with ``apt-get download`` unless already there.

        The download goes into a temporary folder and is moved into place whole, so an interrupted
        download leaves nothing behind.

        Raises:
            DataError: apt-get is missing or the download failed (names the package and the command
                to retry), or several versions of the package are cached.
        """
        debs = self.debs_dir()
        cached = sorted(debs.glob(f"{package}_*.deb"))
        if len(cached) == 1:
            return cached[0]
        if len(cached) > 1:
            raise DataError(f"ui-translations: several .debs of {package} in {debs} "
                            f"({', '.join(p.name for p in cached)}); delete all but one and rebuild")
        exe = shutil.which("apt-get")
        if exe is None:
            raise DataError("ui-translations: `apt-get` is missing; the build needs Debian or Ubuntu "
                            "(apt-get download, dpkg-deb)")
        debs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{package}.", dir=debs) as tmp:
            try:
                proc = subprocess.run([exe, "download", package], cwd=tmp, capture_output=True, timeout=900)
                detail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
                detail = detail[-1] if detail else f"exit status {proc.returncode}"
                ok = proc.returncode == 0
            except (OSError, subprocess.SubprocessError) as e:
                ok, detail = False, str(e)
            got = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if not ok or len(got) != 1:
                n_kept = len(list(debs.glob("*.deb")))
                raise DataError(
                    f"ui-translations: `apt-get download {package}` failed ({detail}). If apt cannot locate "
                    f"the package or the download is not found, refresh its lists with `sudo apt-get update`; "
                    f"then run `deepnotes data build {self.name}` again (the {n_kept} .debs already in "
                    f"{debs} are kept)")
            final = debs / got[0].name
            os.replace(got[0], final)
        return final

    def build(self, force: bool = False) -> Path:
        """Download the packages, extract the pairs, write ``pairs.tsv`` and ``manifest.json``.

        Kept if already built from the same package list (unless ``force``); a build from another list
        (an older version of :data:`UI_PACKAGES`) is redone. Downloaded ``.deb`` files are always reused.
        A progress bar over packages shows on a terminal.

        Returns:
            :meth:`cache_dir`.

        Raises:
            DataError: a package could not be downloaded (names it and the retry command), a ``.deb``
                or catalog is unreadable (names the file), or no pair survived the filters.
        """
        out = self.pairs_path()
        if self.is_current() and not force:
            return self.cache_dir()
        all_pairs: list[Pair] = []
        records = []
        for package in tqdm(self.packages, desc=self.name, unit="pkg", file=sys.stderr, disable=None):
            deb = self.fetch_deb(package)
            catalogs = read_deb_catalogs(deb)
            n_entries = n_kept = 0
            for path, data in catalogs:
                entries = parse_mo(data, f"{deb.name}:{path}")
                kept = catalog_pairs(entries)
                n_entries += sum(1 for e in entries if e.msgid)
                n_kept += len(kept)
                all_pairs.extend(Pair(package, en, zh) for en, zh in kept)
            records.append({
                "package": package, "version": deb_field(deb, "Version"), "deb": deb.name,
                "sha256": sha256_file(deb), "catalogs": [p.rsplit("/", 1)[1] for p, _ in catalogs],
                "entries": n_entries, "filtered": n_kept,
            })
        pairs = dedupe_pairs(all_pairs)
        if not pairs:
            raise DataError(f"ui-translations: no pair survived the filters; delete {self.debs_dir()} and rebuild")
        counts: dict[str, int] = {}
        for p in pairs:
            counts[p.package] = counts.get(p.package, 0) + 1
        for r in records:
            r["pairs"] = counts.get(r["package"], 0)
        tsv = format_pairs_tsv(pairs)
        write_text_atomic(out, tsv)
        held_out = DEFAULT_VAL_PACKAGES + DEFAULT_TEST_PACKAGES
        split = package_split(pairs) if set(held_out) <= set(counts) else None
        write_json_atomic(self.cache_dir() / "manifest.json", {
            "dataset": self.name,
            "format": "pairs.tsv: package<TAB>en<TAB>zh, UTF-8, one pair a line, sorted; \\\\ \\t \\n \\r escaped",
            "packages": records,
            "filters": list(FILTER_RULES),
            "total_pairs": len(pairs),
            "default_split": None if split is None else {
                "val_packages": list(DEFAULT_VAL_PACKAGES), "test_packages": list(DEFAULT_TEST_PACKAGES),
                "n_train": len(split[0]), "n_val": len(split[1]), "n_test": len(split[2]),
            },
            "files": {"pairs.tsv": hashlib.sha256(tsv.encode("utf-8")).hexdigest()},
        })
        return self.cache_dir()


UI_TRANSLATIONS = UITranslationsInfo()


def load_ui_translations(path: str | os.PathLike[str] | None = None, build: bool = True) -> list[Pair]:
    """The EN->ZH pairs of ``pairs.tsv``, in file order (sorted by package, then English).

    Args:
        path: a ``pairs.tsv`` (``package<TAB>en<TAB>zh``, fields escaped); default the built one.
        build: build it first when the default file is missing or outdated (default True; downloads ~165 MB of .debs).

    Raises:
        DataError: the file is missing (says how to build it), the default one was built from another
            package list (says how to update it), unreadable, or a line is malformed (names file and line).
    """
    if path is None:
        if not UI_TRANSLATIONS.is_current():
            if not build:
                if UI_TRANSLATIONS.pairs_path().is_file():
                    raise DataError(UI_TRANSLATIONS.stale_message())
                raise DataError(f"ui-translations is missing; run `deepnotes data build {UI_TRANSLATIONS.name}`")
            UI_TRANSLATIONS.build()
        path = UI_TRANSLATIONS.pairs_path()
    path = Path(path)
    fix = f"rebuild it with `deepnotes data build {UI_TRANSLATIONS.name}`"
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}; {fix}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}); {fix}") from e
    if lines and lines[-1] == "":
        lines.pop()
    pairs = []
    for i, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) != 3 or not all(parts):
            raise DataError(f"{path} line {i}: expected 'package<TAB>en<TAB>zh', got {line[:60]!r}; {fix}")
        pairs.append(Pair(*(unescape_field(f) for f in parts)))
    if not pairs:
        raise DataError(f"{path} holds no pairs; {fix}")
    return pairs


def package_split(pairs: Sequence[Pair], val_packages: Iterable[str] = DEFAULT_VAL_PACKAGES,
                  test_packages: Iterable[str] = DEFAULT_TEST_PACKAGES) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Split pairs by source package: ``(train, val, test)``, each in input order.

    Every pair of a package in ``val_packages`` goes to validation, of one in ``test_packages`` to
    test, of any other package to train; no package is in two splits. The defaults
    (:data:`DEFAULT_VAL_PACKAGES`, :data:`DEFAULT_TEST_PACKAGES`) hold ~2.2 % and ~4.6 % of the built
    pairs. Deterministic (no randomness).

    Raises:
        UserError: a package is in both lists, or a named package has no pair (a typo, or other pairs;
            the message lists the packages present).
    """
    train, val, test = group_split([p.package for p in pairs], val_packages, test_packages, what="package")
    return [pairs[i] for i in train], [pairs[i] for i in val], [pairs[i] for i in test]


# ----------------------------------------------------------------------------------------------------------
# TED2020 (HW5) parallel text
# ----------------------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from e
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines = []
    for i, b in enumerate(raw, 1):
        try:
            line = b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path} line {i} is not UTF-8 ({e.reason} at byte {e.start}); "
                            f"convert the file, e.g. `iconv -f GB18030 -t UTF-8`") from e
        if i == 1:
            line = line.removeprefix("\ufeff")
        lines.append(line.removesuffix("\r"))
    return lines


def read_sentences(path: str | os.PathLike[str]) -> list[str]:
    """One sentence a line, as :func:`write_sentences` writes them; ``[]`` when the file is missing.

    Raises:
        DataError: unreadable, or not UTF-8.
    """
    return _read_lines(Path(path)) if Path(path).is_file() else []


def write_sentences(path: str | os.PathLike[str], sentences: Iterable[str]) -> None:
    """Write one sentence a line (a newline inside one becomes a space), atomically."""
    write_text_atomic(Path(path), "".join(s.replace("\n", " ") + "\n" for s in sentences))


def read_parallel_text(src_path: str | os.PathLike[str], tgt_path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Aligned sentence pairs from two raw text files with one sentence a line (TED2020 of HW5).

    Line ``i`` of ``src_path`` translates to line ``i`` of ``tgt_path``. Lines are split on ``"\\n"``
    only (a ``"\\r"`` before it and a leading BOM are dropped; other Unicode line separators inside a
    sentence are kept, so alignment holds); a final newline does not make an extra line. Empty lines
    are kept, to keep the alignment.

    Returns:
        ``[(src_line, tgt_line), ...]``.

    Raises:
        DataError: a file is unreadable, a line is not UTF-8 (names the file and line), or the two files
            have different line counts (names both files and both counts).
    """
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src, tgt = _read_lines(src_path), _read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
                        f"parallel files must be aligned line by line")
    return list(zip(src, tgt))


# ----------------------------------------------------------------------------------------------------------
# Subword tokenization (sentencepiece)
# ----------------------------------------------------------------------------------------------------------

#: Printf-style and brace placeholders made single, unsplittable pieces by default, so a translation
#: model can copy them through: ``%s``, ``%d``, the positional ``%1$s``, ... and ``{}``, ``{0}``, ...
PLACEHOLDER_SYMBOLS: tuple[str, ...] = (
    "%s", "%d", "%i", "%u", "%c", "%f", "%g", "%x", "%X", "%o", "%p", "%m", "%%",
    "%ld", "%lu", "%li", "%lld", "%llu", "%zu", "%zd", "%lf", "%.*s", "%-*s", "%*s", "%'d",
    "%1$s", "%2$s", "%3$s", "%4$s", "%5$s", "%1$d", "%2$d", "%3$d", "%4$d", "%1$u", "%2$u",
    "%1$lu", "%2$lu", "%1$ld", "%2$ld", "%1$c", "%2$c",
    "{}", "{0}", "{1}", "{2}", "{3}",
)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


# ----------------------------------------------------------------------------------------------------------
# Protected spans: placeholders, options and numbers replaced by sentinel tokens
# ----------------------------------------------------------------------------------------------------------

#: printf conversions: %s, %d, %5.2f, %-10s, %1$s, %lu, %zu, %%, ... (the space flag is left out: "50% done").
PLACEHOLDER_RE = re.compile(r"%(?:\d+\$)?[-+#0']*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|L|q|j|z|t)?"
                            r"[diouxXeEfFgGaAcspnm%]")

#: What :func:`protect_spans` replaces, tried in this order at each position: a printf placeholder; a
#: command-line option (``-R``, ``--rfc-email``, ``--block-size=SIZE``: one or two ASCII dashes, a letter,
#: not glued to a preceding ASCII letter, digit, ``_`` or ``-``); a number of at least two characters
#: (``5322``, ``02:34:56``, ``1.5``). The boundaries are ASCII-only so that a span may touch Chinese text.
PROTECT_RE = re.compile(rf"(?P<printf>{PLACEHOLDER_RE.pattern})"
                        r"|(?P<option>(?<![A-Za-z0-9_-])--?[A-Za-z][A-Za-z0-9_-]*(?:=[A-Za-z0-9_.:/+-]*)?)"
                        r"|(?P<number>(?<![A-Za-z0-9_.])\d+(?:[.:]\d+)*(?![A-Za-z0-9_]))")

#: The sentinels, one per protected span of a sentence, in order of first occurrence: Unicode
#: private-use characters U+E000.., which no catalog holds; they are user-defined (whole) pieces of the
#: tokenizer when the lab protects spans. A sentence with more distinct spans keeps the rest as text.
SENTINELS: tuple[str, ...] = tuple(chr(0xE000 + k) for k in range(32))


@dataclass(frozen=True)
class ProtectedText:
    """A sentence with its spans replaced by sentinels: ``text``, and ``spans[k]`` the string behind
    :data:`SENTINELS` ``[k]``."""

    text: str
    spans: tuple[str, ...]


def protect_spans(source: str) -> ProtectedText:
    """Replace the placeholders, option names and numbers of a source sentence by sentinel tokens.

    Software strings are full of text that must come out exactly as it went in (``%.250s``,
    ``--trust-server-names``, ``RFC 5322``) and that subword tokenizers cut into several pieces, which a
    model then has to copy in order. Replacing each such span by one sentinel token (the k-th distinct
    span of the sentence gets :data:`SENTINELS` ``[k]``; the same string always the same sentinel) turns
    that into copying a single token, and :func:`restore_spans` puts the strings back into the output.
    This is the placeholder (tag) handling of production NMT (e.g. Crego et al. 2016, SYSTRAN's Pure
    NMT, for numbers and named entities); what counts as a span is :data:`PROTECT_RE`.

    Args:
        source: one sentence.

    Returns:
        :class:`ProtectedText`; ``restore_spans(result.text, result.spans) == source`` always holds.

    Raises:
        ValueError: ``source`` already holds a sentinel character (U+E000..U+E01F), which would be
            ambiguous.

    Example::

        p = protect_spans("-R, --rfc-email output date in RFC 5322 format")
        p.text    # '\ue000, \ue001 output date in RFC \ue002 format'
        p.spans   # ('-R', '--rfc-email', '5322')
    """
    _check_no_sentinel(source, "source")
    spans: list[str] = []

    def repl(m: re.Match) -> str:
        span = m.group(0)
        if m.lastgroup == "number" and len(span) < 2:
            return span
        if span not in spans:
            if len(spans) == len(SENTINELS):
                return span
            spans.append(span)
        return SENTINELS[spans.index(span)]

    return ProtectedText(PROTECT_RE.sub(repl, source), tuple(spans))


def protect_target(target: str, spans: Sequence[str]) -> str:
    """The training target with the source's protected ``spans`` replaced by the same sentinels.

    A span of ``target`` (found by :data:`PROTECT_RE`, as in the source) equal to ``spans[k]`` becomes
    ``SENTINELS[k]``; spans the source does not hold stay text (the model has to write them).

    Raises:
        ValueError: ``target`` already holds a sentinel character.
    """
    _check_no_sentinel(target, "target")
    index = {span: k for k, span in enumerate(spans)}

    def repl(m: re.Match) -> str:
        k = index.get(m.group(0))
        return m.group(0) if k is None else SENTINELS[k]

    return PROTECT_RE.sub(repl, target)


def restore_spans(text: str, spans: Sequence[str]) -> str:
    """Undo :func:`protect_spans` on a model output: each sentinel k becomes ``spans[k]``; a sentinel with
    no span (k >= ``len(spans)``, one the model made up) is dropped."""
    return "".join(spans[ord(c) - 0xE000] if _is_sentinel(c) and ord(c) - 0xE000 < len(spans)
                   else "" if _is_sentinel(c) else c for c in text)


def _is_sentinel(c: str) -> bool:
    return 0xE000 <= ord(c) < 0xE000 + len(SENTINELS)


def _check_no_sentinel(text: str, what: str) -> None:
    if any(_is_sentinel(c) for c in text):
        raise ValueError(f"the {what} {text[:60]!r} already holds a sentinel character (U+E000..U+E01F) of protect_spans")


def train_sentencepiece(texts: Iterable[str], model_prefix_path: str | os.PathLike[str], vocab_size: int,
                        model_type: str = "bpe", character_coverage: float = 0.9995,
                        user_defined_symbols: Sequence[str] = PLACEHOLDER_SYMBOLS, byte_fallback: bool = True,
                        normalization_rule_name: str = "identity", seed: int = 0) -> Path:
    """Train a sentencepiece subword model on ``texts``; write ``PREFIX.model`` and ``PREFIX.vocab`` atomically.

    Ids: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, then ``user_defined_symbols`` (always whole
    pieces, never split or merged), then the learned pieces (and the 256 ``<0xNN>`` byte pieces with
    ``byte_fallback``). Deterministic for the same inputs: one thread, every sentence used in the given
    order (no sampling), a fixed random seed.

    Args:
        texts: training sentences, one per item (a list, or any iterable read once).
        model_prefix_path: output path without extension, e.g. ``runs/x/spm8000``; its folder is created.
        vocab_size: total number of pieces, special and byte pieces included.
        model_type: ``"bpe"`` (byte-pair merges, Sennrich et al. 2016, HW5's choice) or ``"unigram"``
            (Kudo 2018).
        character_coverage: fraction of characters covered by single-character pieces (default 0.9995,
            sentencepiece's advice for CJK; 1.0 for small alphabets). The rest become bytes or ``<unk>``.
        user_defined_symbols: strings kept as single pieces (default :data:`PLACEHOLDER_SYMBOLS`).
        byte_fallback: encode characters outside the vocabulary as UTF-8 byte pieces instead of
            ``<unk>``, so decoding is lossless (default True; needs ``vocab_size`` > ~260 + characters).
        normalization_rule_name: sentencepiece normalization; default ``"identity"`` (HW5 used the
            library's ``"nmt_nfkc"``, which rewrites full-width punctuation). Runs of spaces are
            always collapsed.
        seed: seed of sentencepiece's random generator.

    Returns:
        ``Path("PREFIX.model")``.

    Raises:
        ValueError: a bad ``model_type``, ``vocab_size`` or ``character_coverage``, or sentencepiece
            rejected the settings or the corpus (its message, e.g. a vocabulary too small for the
            characters, is included).

    Example::

        model = train_sentencepiece(en_lines + zh_lines, "runs/mt/spm8000", vocab_size=8000)
        tok = SubwordTokenizer.load(model)
    """
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
    if not isinstance(vocab_size, int) or vocab_size < 8:
        raise ValueError(f"vocab_size must be an integer >= 8, got {vocab_size!r}")
    if not 0 < character_coverage <= 1:
        raise ValueError(f"character_coverage must be in (0, 1], got {character_coverage}")
    prefix = Path(model_prefix_path)
    n_sentences = 0

    def sentences():
        nonlocal n_sentences
        for t in texts:
            n_sentences += 1
            yield t

    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, user_defined_symbols=list(user_defined_symbols),
            byte_fallback=byte_fallback, normalization_rule_name=normalization_rule_name,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
            num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, max_sentence_length=65536,
            minloglevel=2,
        )
    except (RuntimeError, OSError) as e:
        raise ValueError(f"sentencepiece training on {n_sentences} sentences failed: {e}") from e
    proto = model.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    vocab = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size()))
    model_path = prefix.with_name(prefix.name + ".model")
    write_bytes_atomic(model_path, proto)
    write_text_atomic(prefix.with_name(prefix.name + ".vocab"), vocab)
    return model_path


class SubwordTokenizer:
    """A trained sentencepiece model: text <-> subword ids.

    ``pad_id`` 0, ``unk_id`` 1, ``bos_id`` 2, ``eos_id`` 3 for models from :func:`train_sentencepiece`
    (read from the model, so others work too). Build with :meth:`load`.

    Example::

        tok = SubwordTokenizer.load("runs/mt/spm8000.model")
        ids = tok.encode("Cannot open %s", add_eos=True)
        tok.decode(ids)                      # 'Cannot open %s'
    """

    def __init__(self, processor) -> None:
        self.sp = processor

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SubwordTokenizer":
        """Load a ``.model`` file.

        Raises:
            DataError: the file is missing or not a sentencepiece model (names it).
        """
        import sentencepiece as spm

        path = Path(path)
        try:
            proto = path.read_bytes()
        except OSError as e:
            raise DataError(f"cannot read tokenizer model {path}: {e.strerror}; train one with "
                            f"train_sentencepiece()") from e
        sp = spm.SentencePieceProcessor()
        try:
            sp.load_from_serialized_proto(proto)
        except (RuntimeError, OSError) as e:
            raise DataError(f"{path} is not a sentencepiece model ({e})") from e
        return cls(sp)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    @property
    def unk_id(self) -> int:
        return self.sp.unk_id()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Subword ids of ``text``, with ``bos_id`` first / ``eos_id`` last when asked."""
        return self.sp.encode(text, add_bos=add_bos, add_eos=add_eos)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; pad, bos and eos ids are dropped."""
        skip = {self.pad_id, self.bos_id, self.eos_id}
        return self.sp.decode([int(i) for i in ids if int(i) not in skip])

    def pieces(self, text: str) -> list[str]:
        """The subword pieces of ``text`` (``"▁"`` marks a preceding space)."""
        return self.sp.encode(text, out_type=str)

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def piece_to_id(self, piece: str) -> int:
        """The id of ``piece``, ``unk_id`` if it is not in the vocabulary."""
        return self.sp.piece_to_id(piece)


# ----------------------------------------------------------------------------------------------------------
# A corpus ready for training: splits, subsets, the tokenizer, the length filter; batches of similar lengths
# ----------------------------------------------------------------------------------------------------------

IdPair = tuple[list[int], list[int]]  # (source ids + EOS, target ids)
Batch = tuple  # (src (B, S), tgt_in (B, T), tgt_out (B, T)[, the pairs' text])


@dataclass(frozen=True)
class CorpusSpec:
    """What :func:`load_translation_data` reads, named as the translation lab's flags (build it with :meth:`of`).

    ``data``: TED2020-format prefix (``PREFIX.en`` / ``PREFIX.zh``, split at random by ``val_fraction`` /
    ``test_fraction``), empty = ui-translations split by ``val_packages`` / ``test_packages``; ``limit_train``,
    ``limit_val``, ``max_test_sentences``, ``val_bleu_sentences``: seeded subsets (0 = all); ``vocab_size``,
    ``character_coverage``: the joint BPE model; ``max_len``: the length filter; ``protect_spans``: sentinels
    for placeholders, options and numbers (:func:`protect_spans`); ``seed``: every draw.
    """

    data: str
    val_packages: tuple[str, ...]
    test_packages: tuple[str, ...]
    val_fraction: float
    test_fraction: float
    limit_train: int
    limit_val: int
    max_test_sentences: int
    vocab_size: int
    character_coverage: float
    max_len: int
    protect_spans: bool
    val_bleu_sentences: int
    seed: int

    @classmethod
    def of(cls, cfg: object) -> "CorpusSpec":
        """The attributes of ``cfg`` (e.g. the lab's config) of these names."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


@dataclass
class TranslationData:
    """Tokenized splits: (source ids + EOS, target ids) per training and validation pair; the raw text of the
    decoded validation subset and of the scored test sentences; the training pairs as the model sees them."""

    tokenizer: SubwordTokenizer
    train: list[IdPair]
    val: list[IdPair]
    val_src: list[str]
    val_ref: list[str]
    test_src: list[str]
    test_ref: list[str]
    info: dict[str, Any]
    train_text: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def seeded_subset(items: Sequence, n: int, seed: int) -> list:
    """A seeded random subset of ``n`` items in their original order (all of them if n is 0 or >= len)."""
    if not n or n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def raw_splits(spec: CorpusSpec) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]], dict]:
    """(train, val, test) lists of (en, zh) before tokenization, and a description of where they came from.

    Raises:
        UserError: the dataset is missing (says how to build it), unknown packages, too few pairs.
        DataError: unreadable files.
    """
    if spec.data:
        pairs = [(en.strip(), zh.strip()) for en, zh in read_parallel_text(spec.data + ".en", spec.data + ".zh")]
        n_read = len(pairs)
        pairs = [(en, zh) for en, zh in pairs if en and zh]
        order = np.random.default_rng(spec.seed).permutation(len(pairs))
        n_val, n_test = int(round(spec.val_fraction * len(pairs))), int(round(spec.test_fraction * len(pairs)))
        if min(n_val, n_test, len(pairs) - n_val - n_test) < 1:
            raise UserError(f"--data {spec.data}: {len(pairs)} non-empty pairs are too few to split into train, "
                            f"validation and test")
        test = [pairs[i] for i in sorted(order[:n_test])]
        val = [pairs[i] for i in sorted(order[n_test:n_test + n_val])]
        train = [pairs[i] for i in sorted(order[n_test + n_val:])]
        source = {"dataset": f"{spec.data}.en/.zh", "split": f"random (seed {spec.seed}): {spec.val_fraction:g} val, "
                  f"{spec.test_fraction:g} test", "pairs_read": n_read, "empty_dropped": n_read - len(pairs),
                  "packages": None}
        return train, val, test, source
    if not UI_TRANSLATIONS.pairs_path().is_file():
        raise UserError(f"ui-translations is missing: run `deepnotes data build {UI_TRANSLATIONS.name}` "
                        f"(or pass --data PREFIX for TED2020-format files)")
    pairs = load_ui_translations(build=False)
    tr, va, te = package_split(pairs, spec.val_packages, spec.test_packages)
    packages = {name: [f"{k} ({v})" for k, v in sorted(Counter(p.package for p in split).items())]
                for name, split in (("train", tr), ("val", va), ("test", te))}
    source = {"dataset": "ui-translations", "split": "by package", "pairs_read": len(pairs), "empty_dropped": 0,
              "packages": packages}
    return [(p.en, p.zh) for p in tr], [(p.en, p.zh) for p in va], [(p.en, p.zh) for p in te], source


def protect_sources(protect: bool, sources: Sequence[str]) -> list[ProtectedText]:
    """Each source with its spans replaced by sentinels (:func:`protect_spans`) when ``protect``, else unchanged.

    Raises:
        UserError: a source already holds a sentinel character (U+E000..U+E01F).
    """
    if not protect:
        return [ProtectedText(s, ()) for s in sources]
    try:
        return [protect_spans(s) for s in sources]
    except ValueError as e:
        raise _sentinel_error(e) from e


def protect_pairs(protect: bool, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs as the model sees them: with ``protect``, sources and targets with sentinels (:func:`protect_target`).

    Raises:
        UserError: a source or target already holds a sentinel character.
    """
    if not protect:
        return pairs
    protected = protect_sources(protect, [en for en, _ in pairs])
    try:
        return [(p.text, protect_target(zh, p.spans)) for (_, zh), p in zip(pairs, protected)]
    except ValueError as e:
        raise _sentinel_error(e) from e


def _sentinel_error(e: ValueError) -> UserError:
    return UserError(f"--protect-spans: {e}; remove that character or run without --protect-spans")


def source_lengths(tok: SubwordTokenizer, sources: Sequence[str], protect: bool) -> list[int]:
    """Subword tokens of each source as the model sees it (protected with ``protect``), EOS not counted."""
    return [len(tok.encode(p.text)) for p in protect_sources(protect, sources)]


def joint_tokenizer(run_dir: Path, train: list[tuple[str, str]], spec: CorpusSpec, reuse: bool) -> SubwordTokenizer:
    """The joint BPE model ``run_dir/spm.model``: trained on the training pairs (both sides), or reused if there.

    The translation lab's 5,000 pieces: HW5 used 8,000 on ~12x more pairs, and low-resource NMT wants a smaller
    vocabulary (Sennrich & Zhang 2019). Printf placeholders (and with ``protect_spans`` the sentinels) are whole pieces.

    Raises:
        UserError: sentencepiece cannot train with ``spec.vocab_size`` on these pairs.
    """
    path = run_dir / "spm.model"
    if not (reuse and path.is_file()):
        try:
            symbols = PLACEHOLDER_SYMBOLS + (SENTINELS if spec.protect_spans else ())
            train_sentencepiece([en for en, _ in train] + [zh for _, zh in train], run_dir / "spm", spec.vocab_size,
                                model_type="bpe", character_coverage=spec.character_coverage,
                                user_defined_symbols=symbols, seed=spec.seed)
        except ValueError as e:
            raise UserError(f"the tokenizer could not be trained with --vocab-size {spec.vocab_size} on "
                            f"{len(train)} training pairs: {e}; change --vocab-size (or lower --character-coverage)") from e
    return SubwordTokenizer.load(path)


def read_eval_pairs(prefix: str, tok: SubwordTokenizer, max_len: int, protect: bool) -> tuple[list[tuple[str, str]], int]:
    """The pairs of ``PREFIX.en`` / ``PREFIX.zh`` (:func:`read_parallel_text`, stripped) with both sides non-empty and
    a source of at most ``max_len`` subword tokens (:func:`source_lengths`), and how many were skipped.

    Raises:
        DataError: unreadable or misaligned files.
        UserError: no pair is left.
    """
    pairs = [(en.strip(), zh.strip()) for en, zh in read_parallel_text(prefix + ".en", prefix + ".zh")]
    full = [(en, zh) for en, zh in pairs if en and zh]
    kept = [p for p, n in zip(full, source_lengths(tok, [en for en, _ in full], protect)) if n <= max_len]
    if not kept:
        raise UserError(f"--data {prefix}: no pair with both sides non-empty and a source of <= {max_len} tokens")
    return kept, len(pairs) - len(kept)


def load_translation_data(spec: CorpusSpec, run_dir: Path, reuse_tokenizer: bool = False) -> TranslationData:
    """Splits, seeded subsets, the tokenizer (trained on the training split only) and the length filter.

    Training and validation pairs with more than ``max_len`` subword tokens on either side are dropped, test
    pairs only when the source is longer (the references never choose test sentences). With ``protect_spans``
    the tokenizer, the token ids and the filter see the protected text; ``val_src`` / ``test_src`` and the
    references stay raw.

    Raises:
        UserError: see :func:`raw_splits` and :func:`joint_tokenizer`; a split empty after the filter.
    """
    train_raw, val_raw, test_raw, source = raw_splits(spec)
    n_raw = {"train": len(train_raw), "val": len(val_raw), "test": len(test_raw)}
    train_raw = seeded_subset(train_raw, spec.limit_train, spec.seed)
    val_raw = seeded_subset(val_raw, spec.limit_val, spec.seed)
    train_in = protect_pairs(spec.protect_spans, train_raw)  # what the tokenizer and the model see
    tok = joint_tokenizer(run_dir, train_in, spec, reuse_tokenizer)

    def encode(pairs):
        return [(tok.encode(en) + [EOS_ID], tok.encode(zh)) for en, zh in pairs]

    def keep(ids):  # both sides within the limit (the source's EOS not counted)
        return len(ids[0]) - 1 <= spec.max_len and len(ids[1]) <= spec.max_len

    train_kept = [(text, ids) for text, ids in zip(train_in, encode(train_in)) if keep(ids)]
    train = [ids for _, ids in train_kept]
    val_kept = [(raw, ids) for raw, ids in zip(val_raw, encode(protect_pairs(spec.protect_spans, val_raw))) if keep(ids)]
    val = [ids for _, ids in val_kept]
    val_decoded = seeded_subset([raw for raw, _ in val_kept], spec.val_bleu_sentences, spec.seed) \
        if spec.val_bleu_sentences else []
    test_lengths = source_lengths(tok, [en for en, _ in test_raw], spec.protect_spans)
    test_kept = [p for p, n in zip(test_raw, test_lengths) if n <= spec.max_len]
    test = seeded_subset(test_kept, spec.max_test_sentences, spec.seed)
    if not train or not val or not test:
        raise UserError(f"after the length filter (--max-len {spec.max_len}) a split is empty: {len(train)} train, "
                        f"{len(val)} val, {len(test)} test pairs; raise --max-len or the limits")
    info = {
        **source,
        "pairs_per_split": n_raw,
        "after_limits": {"train": len(train_raw), "val": len(val_raw)},
        "after_length_filter": {"train": len(train), "val": len(val), "test": len(test_kept)},
        "scored_test_pairs": len(test),
        "decoded_val_pairs": len(val_decoded),
        "test_subset": (f"a fixed seeded subset (seed {spec.seed}) of {len(test)} of {len(test_kept)}"
                        if len(test) < len(test_kept) else "all"),
        "vocab_size": tok.vocab_size,
        "mean_tokens": {"train_en": float(np.mean([len(s) - 1 for s, _ in train])),
                        "train_zh": float(np.mean([len(t) for _, t in train]))},
        "length_filter": f"train/val: <= {spec.max_len} subword tokens on both sides; test: source <= {spec.max_len}",
    }
    return TranslationData(tok, train, val, [s for s, _ in val_decoded], [r for _, r in val_decoded],
                           [s for s, _ in test], [r for _, r in test], info, [text for text, _ in train_kept])


def batch_groups(pairs: Sequence[IdPair], max_tokens: int, seed: int) -> list[list[int]]:
    """Indices of ``pairs`` packed into batches of similar lengths (fairseq's ``--max-tokens``).

    Pairs are sorted by target length, then source length, ties in a seeded random order; a batch grows while
    ``sentences x max(longest source, longest target + 1) <= max_tokens`` (a single longer pair forms its own).
    """
    tie = np.random.default_rng(seed).random(len(pairs))
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][1]), len(pairs[i][0]), tie[i]))
    groups: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        n = max(len(pairs[i][0]), len(pairs[i][1]) + 1)
        if cur and max(longest, n) * (len(cur) + 1) > max_tokens:
            groups.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        groups.append(cur)
    return groups


def pad_batch(pairs: Sequence[IdPair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(src (B, S), tgt_in (B, T), tgt_out (B, T))`` of (source ids + EOS, target ids) pairs: sources padded
    with ``PAD_ID``; ``tgt_in`` = BOS + target (padded with PAD), ``tgt_out`` = target + EOS (padded with
    ``IGNORE_INDEX``): teacher forcing."""
    S, T = max(len(s) for s, _ in pairs), max(len(t) for _, t in pairs) + 1
    src = torch.full((len(pairs), S), PAD_ID, dtype=torch.long)
    tin = torch.full((len(pairs), T), PAD_ID, dtype=torch.long)
    tout = torch.full((len(pairs), T), IGNORE_INDEX, dtype=torch.long)
    for r, (s, t) in enumerate(pairs):
        src[r, :len(s)] = torch.tensor(s)
        tin[r, :len(t) + 1] = torch.tensor([BOS_ID] + t)
        tout[r, :len(t) + 1] = torch.tensor(t + [EOS_ID])
    return src, tin, tout


class TokenBatches:
    """Translation pairs packed into padded batches of similar lengths (:func:`batch_groups`, :func:`pad_batch`):
    a batch source for :class:`deepnotes.train.Trainer` whose epoch order depends only on (seed, epoch).

    ``epoch(e)`` yields the batches in the order of ``torch.randperm`` seeded by ``seed_for(seed, e)``; iterating
    the object yields them in packing order (evaluation).

    Args:
        pairs: (source ids + EOS, target ids).
        max_tokens: padded tokens per batch, >= 1.
        seed: the packing's tie-break and the epochs' order.
        text: the pairs as text, in the order of ``pairs``; given, each batch carries its pairs' text as a fourth
            item, for :func:`bpe_dropout_batch`.
    """

    def __init__(self, pairs: Sequence[IdPair], max_tokens: int, seed: int,
                 text: Sequence[tuple[str, str]] | None = None):
        self.seed = seed
        self.groups = batch_groups(pairs, max_tokens, seed)
        self.batches: list[Batch] = [pad_batch([pairs[i] for i in g]) for g in self.groups]
        if text is not None:
            self.batches = [b + (tuple(text[i] for i in g),) for b, g in zip(self.batches, self.groups)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(seed_for(self.seed, epoch))
        for b in torch.randperm(len(self.batches), generator=g).tolist():
            yield self.batches[b]


def bpe_dropout_batch(batch: Batch, generator: torch.Generator | None, bpe: BPEDropout, p: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BPE-dropout (Provilkov et al. 2020) of a training batch of :class:`TokenBatches` built with ``text``: the
    same pairs segmented anew with merge-dropout probability ``p``, from a ``random.Random`` seeded by one draw of
    ``generator`` (the Trainer's, seeded by (seed, epoch): a resumed run sees the same segmentations)."""
    rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
    return pad_batch([(bpe.encode(en, p, rng) + [EOS_ID], bpe.encode(zh, p, rng)) for en, zh in batch[3]])
