"""Text corpora: the King James Bible (KJV) for character- and word-level language models.

``deepnotes data build kjv`` runs Debian's ``bible`` program (packages ``bible-kjv bible-kjv-text``;
public-domain text) once, parses its 31,102 verses and writes ``<data_root>/kjv/kjv.tsv``
(``book<TAB>chapter<TAB>verse<TAB>text``, one verse a line, UTF-8) and ``manifest.json`` (package
versions, verse and character counts, SHA-256), both written atomically. Loading reads the TSV;
the ``bible`` program is needed only for the build.

Splits are verse-level (:func:`deepnotes.data.splits.verse_split`): each verse goes wholly to train or
validation, chosen by a seeded permutation, so a model is validated on verses it never saw (the text around
them it did).

Characters (char-gpt, lstm-lm): :class:`CharVocab` maps characters to ids; :class:`WindowBatches` and
:class:`EvalWindows` cut a token stream into next-token windows ``x = ids[o : o+T]``, ``y = ids[o+1 : o+T+1]``
(ML2021/2022 GPT: every prefix of a window is one prediction). Words (word2vec): :func:`tokenize`,
:class:`WordVocab` (words seen ``min_count`` times, by count, as the word2vec C code), :func:`word_corpus`,
:func:`subsample` and :class:`CBOWBatches` (EE-559 12-3; Mikolov et al. 2013).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from deepnotes.data.paths import data_root
from deepnotes.data.splits import verse_split
from deepnotes.errors import DataError, UserError
from deepnotes.io import write_json_atomic, write_text_atomic
from deepnotes.nn.word2vec import alias_table, cbow_windows, sample_alias
from deepnotes.train.batches import EvalBatches, TensorBatches, seed_for
from deepnotes.train.distributed import DistInfo

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


# ----------------------------------------------------------------------------------- next-token windows
def window_offsets(n_tokens: int, block_size: int, stride: int) -> torch.Tensor:
    """Start offsets (K,) int64 of the windows of ``block_size + 1`` tokens, one every ``stride`` tokens.

    Raises:
        UserError: the text is shorter than ``block_size + 1`` tokens.
    """
    if n_tokens < block_size + 1:
        raise UserError(f"the text has {n_tokens} characters, fewer than --block-size + 1 = {block_size + 1}")
    return torch.arange(0, n_tokens - block_size, stride)


def next_token_windows(ids: torch.Tensor, offsets: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of the windows at ``offsets`` (B,): ``(x, y)``, both (B, block_size), ``y`` = ``x``
    shifted by one token."""
    w = ids[offsets[:, None] + torch.arange(block_size + 1)]  # (B, T + 1)
    return w[:, :-1], w[:, 1:]


class WindowBatches:
    """Training batches ``(x, y)`` of a token stream: ``batch_size`` windows per update, their start offsets (every
    position) drawn without replacement from a permutation seeded by (seed, epoch) (:class:`TensorBatches`).

    Args:
        ids: (N,) int64 token ids.
        block_size: T, tokens of context per window.
        batch_size, seed, info, steps_per_epoch: as for :class:`~deepnotes.train.batches.TensorBatches`
            (``steps_per_epoch``: updates between two evaluations; default one pass over the offsets).

    Raises:
        UserError: fewer than ``block_size + 1`` tokens.
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int, seed: int, info: DistInfo = DistInfo(),
                 steps_per_epoch: int | None = None):
        self.ids, self.block_size = ids, block_size
        self.offsets = window_offsets(len(ids), block_size, 1)
        self.order = TensorBatches((self.offsets,), batch_size, seed, info, steps_per_epoch)

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in self.order.indices(epoch):
            yield next_token_windows(self.ids, self.offsets[idx], self.block_size)


class EvalWindows:
    """Every non-overlapping window ``(x, y)`` of a token stream in order, ``batch_size`` windows at a time, this
    process taking every ``world_size``-th window; iterate it as often as needed.

    With ``sample`` > 0, only that many of the windows, drawn once (seeded by ``seed``) and kept in text order: a
    fixed sample that scores the same windows at every evaluation (nanoGPT scores ``eval_iters`` random batches).

    Raises:
        UserError: fewer than ``block_size + 1`` tokens.
    """

    def __init__(self, ids: torch.Tensor, block_size: int, batch_size: int = 1000, info: DistInfo = DistInfo(),
                 sample: int = 0, seed: int = 0):
        self.ids, self.block_size = ids, block_size
        offsets = window_offsets(len(ids), block_size, block_size)
        if 0 < sample < len(offsets):
            chosen = torch.randperm(len(offsets), generator=torch.Generator().manual_seed(seed))[:sample]
            offsets = offsets[chosen.sort().values]
        self.n_windows = len(offsets)
        self.rows = EvalBatches((offsets,), batch_size, info)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for (offsets,) in self.rows:
            yield next_token_windows(self.ids, offsets, self.block_size)


# ----------------------------------------------------------------------------------- words
_POSSESSIVE = re.compile(r"'s\b")
_WORD = re.compile(r"[a-z]+")


def tokenize(text: str) -> list[str]:
    """Lowercase words of a text: the possessive ``'s`` dropped, then every maximal run of a-z.

    Example: ``tokenize("And the LORD's anger was kindled.")`` -> ``['and', 'the', 'lord', 'anger', 'was', 'kindled']``.
    """
    return _WORD.findall(_POSSESSIVE.sub("", text.lower()))


@dataclass(frozen=True)
class WordVocab:
    """Words ordered by training count (ties alphabetically), their counts, and the inverse map ``stoi``."""

    words: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def stoi(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]], min_count: int) -> "WordVocab":
        """Every word seen at least ``min_count`` times in ``token_lists``."""
        c = Counter(w for toks in token_lists for w in toks)
        kept = sorted(((w, n) for w, n in c.items() if n >= min_count), key=lambda x: (-x[1], x[0]))
        return cls(tuple(w for w, _ in kept), tuple(n for _, n in kept))


def encode_words(token_lists: Sequence[Sequence[str]], vocab: WordVocab) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-vocabulary words of each sequence (verse) as one stream: (N,) ids and (N,) sequence numbers;
    out-of-vocabulary words are dropped (as the word2vec C code does) before any window is cut."""
    stoi = vocab.stoi
    ids, seg = [], []
    for v, toks in enumerate(token_lists):
        for w in toks:
            i = stoi.get(w)
            if i is not None:
                ids.append(i)
                seg.append(v)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(seg, dtype=torch.long)


@dataclass
class WordCorpus:
    """Verses tokenised, split by verse and encoded: ``train`` and ``val`` are ``(ids, verse numbers)``."""

    vocab: WordVocab
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    stats: dict[str, Any]


def word_corpus(verses: Sequence[Verse], val_fraction: float, seed: int, min_count: int,
                vocab: WordVocab | None = None) -> WordCorpus:
    """Tokenise (:func:`tokenize`), split by verse (seeded), build the vocabulary on the training verses (or keep
    ``vocab``) and encode both splits; ``stats`` counts verses, words and in-vocabulary tokens.

    Raises:
        UserError: ``val_fraction`` leaves an empty split (:func:`~deepnotes.data.splits.verse_split`).
    """
    tokens = [tokenize(v.text) for v in verses]
    tr_idx, va_idx = verse_split(len(verses), val_fraction, seed)
    tr_tokens = [tokens[i] for i in tr_idx]
    vocab = WordVocab.build(tr_tokens, min_count) if vocab is None else vocab
    train, val = encode_words(tr_tokens, vocab), encode_words([tokens[i] for i in va_idx], vocab)
    stats = {"verses": len(verses), "train_verses": len(tr_idx), "val_verses": len(va_idx),
             "tokens": sum(map(len, tokens)), "distinct_words": len({w for t in tokens for w in t}),
             "vocab_size": len(vocab), "train_tokens_in_vocab": len(train[0]), "val_tokens_in_vocab": len(val[0])}
    return WordCorpus(vocab, train, val, stats)


def subsample(ids: torch.Tensor, keep_prob: torch.Tensor, seed: int) -> torch.Tensor:
    """Mikolov's subsampling of frequent words: a (N,) bool mask keeping token t with probability
    ``keep_prob[ids[t]]`` (:func:`deepnotes.nn.word2vec.subsample_keep_prob`), drawn from a generator seeded
    with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(len(ids), generator=g, dtype=torch.float64) < keep_prob[ids]


class CBOWBatches:
    """CBOW examples ``(context, mask, target, negatives)`` of a word stream, for :class:`deepnotes.train.Trainer`.

    Training (``train=True``, ``epoch(e)``): the stream is subsampled afresh (seed ``(seed, e, 0)``), every window
    is cut (the windows of :func:`deepnotes.nn.word2vec.cbow_windows`, contexts inside one verse), the windows are
    shuffled, each example gets ``negatives`` noise words (Walker's alias method,
    :func:`~deepnotes.nn.word2vec.sample_alias`; with ``share_negatives`` = G, each run of G consecutive examples of
    a batch shares the same draws, see :func:`~deepnotes.nn.word2vec.cbow_sgd_step`) and, with ``shrink``, a reach
    ``C - b`` with b uniform in ``0..C-1`` (the C code's random window: neighbours further than the reach are
    masked out, so near neighbours count more), all from one generator seeded ``(seed, e, 1)``. ``len`` is the
    updates per epoch of epoch 0 (subsampling moves the count by a few windows; a schedule needs a total).
    Evaluation (``train=False``, iterate it): one fixed subsampling (seed ``(seed, 99)``) in stream order, the
    full window, noise words from ``(seed, 98)``, the same batches at every pass.

    The windows of a batch are cut when the batch is drawn, from the positions of its target words (the same
    windows as :meth:`windows`, never the whole epoch's (N, 2C) tables at once).

    Args:
        ids, segment: (N,) word ids and verse numbers (:func:`encode_words`).
        keep_prob: (W,) subsampling keep probabilities; noise: (W,) noise distribution.
        window: C, neighbours on each side; negatives: Q; batch_size: examples per batch; seed: the run's seed.
        train: training (shuffled, fresh per epoch) or evaluation batches.
        shrink: the C code's random window in training (default False: always C on each side).
        share_negatives: G, examples per group sharing their noise words (default 1: independent draws); the
            batch still holds one row per example (the rows of a group are equal).

    Shapes:
        a batch: context (B, 2C) int64 (0 where masked), mask (B, 2C) bool, target (B,) int64, negatives (B, Q) int64.
    """

    def __init__(self, ids: torch.Tensor, segment: torch.Tensor, keep_prob: torch.Tensor, noise: torch.Tensor,
                 window: int, negatives: int, batch_size: int, seed: int, train: bool = True, shrink: bool = False,
                 share_negatives: int = 1):
        if share_negatives < 1:
            raise ValueError(f"share_negatives must be >= 1, got {share_negatives}")
        self.ids, self.segment, self.keep_prob, self.noise = ids, segment, keep_prob, noise
        self.window, self.negatives, self.batch_size, self.seed, self.train = window, negatives, batch_size, seed, train
        self.shrink, self.share = shrink and train, share_negatives
        self.accept, self.alias = alias_table(noise)
        self.offsets = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)])  # (2C,) -C..-1, 1..C
        self._len: int | None = None

    def _keep(self, epoch: int) -> torch.Tensor:
        seed = seed_for(self.seed, epoch, 0) if self.train else seed_for(self.seed, 99)
        return subsample(self.ids, self.keep_prob, seed)

    def windows(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(context, mask, target)`` of the subsampled stream of ``epoch``, every window in stream order (full
        window; the readable definition the batches follow)."""
        keep = self._keep(epoch)
        return cbow_windows(self.ids[keep], self.segment[keep], self.window)

    def _stream(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The subsampled stream ``ids``, each token's verse ``[start, end)`` in it, and the positions that have a
        neighbour (the targets), in stream order."""
        kept = self._keep(epoch).nonzero().squeeze(1)
        ids = self.ids.index_select(0, kept)
        length = torch.unique_consecutive(self.segment.index_select(0, kept), return_counts=True)[1]  # per verse
        size = length.repeat_interleave(length)  # (N,) the length of each token's verse
        end = length.cumsum(0).repeat_interleave(length)  # (N,) one past the last token of each token's verse
        return ids, end - size, end, torch.nonzero(size > 1).squeeze(1)

    def __len__(self) -> int:
        if self._len is None:
            self._len = max(1, -(-len(self._stream(0)[3]) // self.batch_size))
        return self._len

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        ids, start, end, targets = self._stream(epoch)
        n, C, last = len(targets), self.window, max(len(ids) - 1, 0)
        if self.train:
            g = torch.Generator().manual_seed(seed_for(self.seed, epoch, 1))
            targets = targets.index_select(0, torch.randperm(n, generator=g))
        else:
            g = torch.Generator().manual_seed(seed_for(self.seed, 98))
        B, G = self.batch_size, self.share
        per_batch = -(-B // G)  # groups of a full batch; every batch starts a group
        negatives = sample_alias(self.accept, self.alias, ((n // B) * per_batch + -(-(n % B) // G), self.negatives), g)
        lo, hi = start.index_select(0, targets), end.index_select(0, targets)  # (n,) each target's verse [lo, hi)
        if self.shrink:  # the C code's window: a reach in 1..C on both sides, clipped to the verse
            reach = C - torch.randint(C, (n,), generator=g)
            lo, hi = torch.maximum(lo, targets - reach), torch.minimum(hi, targets + reach + 1)
        lo, hi, words = lo.unsqueeze(1), hi.unsqueeze(1), ids.index_select(0, targets)
        for i, s in enumerate(range(0, n, B)):
            pos = targets[s:s + B].unsqueeze(1) + self.offsets  # (B, 2C) neighbour positions in the stream
            mask = (pos >= lo[s:s + B]) & (pos < hi[s:s + B])
            context = ids.index_select(0, pos.clamp_(0, last).view(-1)).view(pos.shape) * mask
            noise = negatives[i * per_batch:(i + 1) * per_batch]  # (groups, Q)
            if G > 1:
                noise = noise.repeat_interleave(G, 0)[:len(mask)]  # (B, Q), a group's rows equal
            yield context, mask, words[s:s + B], noise

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.epoch(0)
