"""Real text with real labels for the four BERT fine-tuning cases of the lecture, and SQuAD's evaluation.

Source: ML2021 "Self-supervised learning" (BERT slides, seed 004): the four cases (sequence -> class, sequence ->
labels, pair -> class, document + question -> span) and HW7 (extractive QA with start/end positions, a maximum
answer length and a document stride over long documents; DRCD/SQuAD JSON; exact match).

* ``topic`` (sequence -> class): fortunes of Debian's ``fortunes`` package, 8 clean categories (:data:`TOPICS`);
  every fortune whose text occurs twice is dropped (so no text is on both sides of a split); stratified
  train/val/test split (:func:`stratified_split`).
* ``punctuation`` (sequence -> labels): KJV verses (:func:`deepnotes.data.text.load_kjv`) with punctuation removed,
  each word labelled with the mark that followed it (:func:`punctuation_words`, :data:`MARKS`).
* ``next-verse`` (pair -> class): verse A and either the next verse (label 1) or a random verse of the same book
  (label 0), 50/50; chapters go wholly to train, val or test (:func:`next_verse_pairs`).
* ``qa`` (document + question -> span): the option lists of Debian's manual pages, rendered by ``groff``
  (:func:`man_page_documents`): the context is a run of consecutive options, the question names one option,
  the answer is the first sentence of its description (real text, a real span); split by manual page.
  Any SQuAD-format JSON (SQuAD v1.1, DRCD) is read by :func:`read_squad`.
* SQuAD v1.1's official evaluation: :func:`normalize_answer` (lower case, punctuation, articles a/an/the,
  white space), :func:`exact_match`, :func:`f1` (token overlap), each the max over the gold answers.

Word pieces: :func:`word_spans` splits text the way BERT's pre-tokenizer does (runs of letters/digits, and every
other non-space character alone), so the word pieces of each span, encoded alone, are those of the whole text.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import string
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepnotes.data.text import Verse
from deepnotes.errors import DataError, UserError

FORTUNE_DIR = Path("/usr/share/games/fortunes")
TOPICS = ("computers", "science", "law", "food", "sports", "startrek", "politics", "love")
MARKS = ("none", ",", ".", ";", ":", "?", "!")  # the punctuation labels; "none" = no mark after the word
MAN_DIR = Path("/usr/share/man")

_WORD = re.compile(r"[^\W_]+|\S")


# ------------------------------------------------------------------------------------------- splits
def stratified_split(labels: Sequence[int], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted index arrays (train, val, test): in each class, a seeded permutation cut at ``round(f * n_c)``.

    Raises:
        ValueError: fractions not three positive numbers summing to 1.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three positive shares summing to 1, got {tuple(fractions)}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_tr = int(round(fractions[0] * len(idx)))
        n_va = int(round(fractions[1] * len(idx)))
        for part, chunk in zip(parts, (idx[:n_tr], idx[n_tr:n_tr + n_va], idx[n_tr + n_va:])):
            part.append(chunk)
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in parts)  # type: ignore[return-value]


def group_split_by_seed(groups: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                        seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Row indices (train, val, test), whole groups to one side: the sorted distinct groups are permuted with
    ``seed`` and cut at the shares ``fractions`` (at least one group in val and in test).

    Raises:
        UserError: fewer than 3 groups.
    """
    names = sorted(set(groups))
    if len(names) < 3:
        raise UserError(f"a split by group needs >= 3 groups, got {len(names)}")
    perm = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_va = max(1, int(round(fractions[1] * len(names))))
    n_te = max(1, int(round(fractions[2] * len(names))))
    val, test = set(perm[:n_va]), set(perm[n_va:n_va + n_te])
    out: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, g in enumerate(groups):
        out[1 if g in val else 2 if g in test else 0].append(i)
    return out


# ------------------------------------------------------------------------------------------- topic
def read_fortunes(path: str | Path) -> list[str]:
    """The entries of one fortune file (split by lines holding only ``%``), white space collapsed, empty ones
    dropped.

    Raises:
        DataError: the file is missing (says which Debian packages hold it) or unreadable.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read the fortunes ({e.strerror}); install them with "
                        f"`sudo apt-get install fortunes fortunes-min`") from e
    entries = re.split(r"^%\s*$", raw, flags=re.MULTILINE)
    return [t for t in (" ".join(e.split()) for e in entries) if t]


@dataclass(frozen=True)
class FortunesDataset:
    """The fortunes of Debian's ``fortunes`` and ``fortunes-min`` packages, as ``deepnotes data`` shows them (the
    ``topic`` task of the bert lab reads the :data:`TOPICS` categories of ``root``)."""

    name: str = "fortunes"
    description: str = ("Debian's fortunes: short texts in 43 categories; the bert lab's topic task reads 8 of them "
                        "(" + ", ".join(TOPICS) + ")")
    root: Path = FORTUNE_DIR

    def missing(self) -> list[str]:
        return [c for c in TOPICS if not (self.root / c).is_file()]

    def status(self) -> str:
        if self.missing():
            return "missing (sudo apt-get install fortunes fortunes-min)"
        return f"present at {self.root}"

    def how_to_get(self) -> str:
        return "\n".join([f"{self.name}: {self.description}", f"Read from {self.root}/<category>:",
                          "  sudo apt-get install fortunes fortunes-min   (or, as root: make system-data)"])

    def build(self) -> Path:
        """The folder of the fortunes (a Debian package installs it).

        Raises:
            DataError: a category file is missing (the message names the apt command).
        """
        if self.missing():
            raise DataError(f"{self.root}: missing {', '.join(self.missing())}; install the fortunes with "
                            "`sudo apt-get install fortunes fortunes-min` (or, as root, `make system-data`)")
        return self.root


FORTUNES = FortunesDataset()


def load_topic(root: str | Path = FORTUNE_DIR, categories: Sequence[str] = TOPICS) -> tuple[list[str], list[int]]:
    """``(texts, labels)`` of the fortunes of ``categories`` (label = index in ``categories``), in file order,
    every text occurring more than once (in one category or several) dropped.

    Raises:
        DataError: a category file is missing.
    """
    rows = [(t, c) for c, name in enumerate(categories) for t in read_fortunes(Path(root) / name)]
    counts = Counter(t for t, _ in rows)
    kept = [(t, c) for t, c in rows if counts[t] == 1]
    return [t for t, _ in kept], [c for _, c in kept]


# ----------------------------------------------------------------------------------------- punctuation
def punctuation_words(text: str) -> tuple[list[str], list[int]]:
    """A verse without punctuation: its words and, per word, the index in :data:`MARKS` of the mark after it.

    Words are split on white space; a word's label is the last of ``, . ; : ? !`` among the characters after its
    last letter or digit; brackets and those marks are removed (apostrophes and hyphens inside a word stay). A
    token with no letter or digit (a lone bracket or mark) gives its mark to the word before it.

    Example::

        punctuation_words("And God said, Let there be light: and there was light.")
        # (['And', 'God', 'said', 'Let', 'there', 'be', 'light', 'and', 'there', 'was', 'light'],
        #  [0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 2])
    """
    words: list[str] = []
    labels: list[int] = []
    for token in text.split():
        core = re.sub(r"[()\[\],.;:?!]", "", token).strip("'-")
        tail = re.sub(r"^.*[^\W_]", "", token) if re.search(r"[^\W_]", token) else token
        marks = [ch for ch in tail if ch in MARKS]
        if not core or not re.search(r"[^\W_]", core):
            if marks and labels:
                labels[-1] = MARKS.index(marks[-1])
            continue
        words.append(core)
        labels.append(MARKS.index(marks[-1]) if marks else 0)
    return words, labels


def chapter_split(verses: Sequence[Verse], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Verse indices (train, val, test), whole chapters to one side (:func:`group_split_by_seed`)."""
    return group_split_by_seed([f"{v.book} {v.chapter}" for v in verses], fractions, seed)


# ------------------------------------------------------------------------------------------ next verse
def next_verse_pairs(verses: Sequence[Verse], indices: Sequence[int], seed: int) -> list[tuple[str, str, int]]:
    """Pairs ``(A, B, label)`` among the verses ``indices`` (one split): label 1 when B is the verse after A,
    0 when B is a random other verse of A's book (of the same split), each with probability 1/2.

    Every verse whose successor (same book and chapter, next number) is also in ``indices`` becomes an A, in order.
    The draws come from ``numpy.random.default_rng(seed)``: the same arguments give the same pairs.
    """
    rng = np.random.default_rng(seed)
    chosen = sorted(set(indices))
    by_book: dict[str, list[int]] = {}
    for i in chosen:
        by_book.setdefault(verses[i].book, []).append(i)
    present = set(chosen)
    pairs = []
    for i in chosen:
        a, j = verses[i], i + 1
        if j not in present or verses[j].book != a.book or verses[j].chapter != a.chapter:
            continue
        pool = by_book[a.book]
        if rng.random() < 0.5 or len(pool) < 3:
            pairs.append((a.text, verses[j].text, 1))
            continue
        k = i
        while k in (i, j):
            k = pool[int(rng.integers(len(pool)))]
        pairs.append((a.text, verses[k].text, 0))
    return pairs


# ------------------------------------------------------------------------------------------ QA: SQuAD
@dataclass(frozen=True)
class QAExample:
    """One question: ``qid``, ``title`` (its document; the split's group), ``context``, ``question`` and the gold
    ``answers`` as ``(text, start)`` with ``context[start:start + len(text)] == text``."""

    qid: str
    title: str
    context: str
    question: str
    answers: tuple[tuple[str, int], ...]


def parse_squad(obj: object, source: str = "<json>") -> list[QAExample]:
    """Questions from a SQuAD-format object (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
    "question", "answers": [{"text", "answer_start"}]}]}]}]}``; SQuAD v1.1 and DRCD use it).

    Raises:
        DataError: a missing key or an answer that is not at its ``answer_start`` in the context (names the id).
    """
    out = []
    try:
        for d, doc in enumerate(obj["data"]):  # type: ignore[index]
            title = str(doc.get("title", f"document {d}"))
            for p, para in enumerate(doc["paragraphs"]):
                context = para["context"]
                for qa in para["qas"]:
                    qid = str(qa["id"])
                    answers = []
                    for a in qa["answers"]:
                        text, start = a["text"], int(a["answer_start"])
                        if context[start:start + len(text)] != text:
                            raise DataError(f"{source}: question {qid}: the answer {text[:40]!r} is not at "
                                            f"answer_start {start} of its context")
                        answers.append((text, start))
                    if not answers:
                        raise DataError(f"{source}: question {qid} has no answer (SQuAD 2.0's unanswerable "
                                        f"questions are not supported)")
                    out.append(QAExample(qid, title, context, qa["question"],
                                         tuple(answers)))
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{source}: not SQuAD-format JSON ({type(e).__name__}: {e}); expected "
                        f"data[].paragraphs[].qas[].answers[].text/answer_start") from e
    if not out:
        raise DataError(f"{source}: no questions")
    return out


def read_squad(path: str | Path) -> list[QAExample]:
    """The questions of a SQuAD-format JSON file (:func:`parse_squad`).

    Raises:
        UserError: the file is missing. DataError: not JSON or not SQuAD format.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass a SQuAD-format JSON file (SQuAD v1.1, DRCD)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e})") from e
    return parse_squad(obj, str(path))


def to_squad(examples: Sequence[QAExample]) -> dict:
    """The SQuAD-format object of ``examples`` (one paragraph per distinct (title, context)); inverse of
    :func:`parse_squad`."""
    docs: dict[str, dict[str, list]] = {}
    for ex in examples:
        paras = docs.setdefault(ex.title, {})
        paras.setdefault(ex.context, []).append(
            {"id": ex.qid, "question": ex.question,
             "answers": [{"text": t, "answer_start": s} for t, s in ex.answers]})
    return {"version": "deepnotes-1", "data": [
        {"title": t, "paragraphs": [{"context": c, "qas": q} for c, q in paras.items()]} for t, paras in docs.items()]}


def normalize_answer(s: str) -> str:
    """SQuAD v1.1's official normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0 (SQuAD v1.1)."""
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in gold))


def f1(prediction: str, gold: Sequence[str]) -> float:
    """SQuAD v1.1's F1: token overlap of the normalised strings, ``2PR / (P + R)``, the max over gold answers
    (0 when nothing is shared, empty strings included, as the official script)."""
    def one(pred: str, truth: str) -> float:
        p, t = normalize_answer(pred).split(), normalize_answer(truth).split()
        same = sum((Counter(p) & Counter(t)).values())
        if same == 0:
            return 0.0
        precision, recall = same / len(p), same / len(t)
        return 2 * precision * recall / (precision + recall)
    return max((one(prediction, g) for g in gold), default=0.0)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of BERT's pre-tokens: runs of letters and digits, and every other
    non-space character on its own (punctuation, symbols)."""
    return [m.span() for m in _WORD.finditer(text)]


# ------------------------------------------------------------------------------------------ QA: man pages
_TAG = re.compile(r"^ {7}(-\S.*)$")


def parse_man_options(text: str) -> list[tuple[str, str]]:
    """``(tag, first paragraph of the description)`` of every option of a manual page rendered by
    ``groff -mandoc -Tutf8`` with long lines (one paragraph a line): a line indented 7 columns that starts with
    ``-`` is an option's tag; its description follows on lines indented 14 (or on the same line from column 14
    when the tag is short, groff's ``.TP`` layout). Tags seen twice are dropped (ambiguous questions)."""
    lines = text.splitlines()
    found: list[tuple[str, str]] = []
    for n, line in enumerate(lines):
        m = _TAG.match(line)
        if not m:
            continue
        following = next((x for x in lines[n + 1:] if x.strip()), "")
        if following.startswith(" " * 14) and not following.startswith(" " * 15):
            tag, desc = m.group(1).strip(), following.strip()
        elif (len(line) > 15 and line[13] == " " and line[14] not in " -" and " " not in line[7:13].strip()
              and not line[7:13].strip().endswith(",")):
            tag, desc = line[7:13].strip(), line[14:].strip()
        else:
            continue
        found.append((" ".join(tag.split()), " ".join(desc.split())))
    counts = Counter(t for t, _ in found)
    return [(t, d) for t, d in found if counts[t] == 1 and d]


def first_sentence(text: str) -> str:
    """The text up to its first ``. `` (period and space) followed by a capital, or all of it."""
    m = re.search(r"\.\s+(?=[A-Z])", text)
    return text[:m.start() + 1] if m else text


def man_page_documents(page: str, options: Sequence[tuple[str, str]], max_words: int = 300,
                       max_answer_words: int = 30) -> list[QAExample]:
    """QA examples from one page's options: consecutive options are joined into contexts of at most about
    ``max_words`` words (``tag\\ndescription\\n`` each); each option whose first sentence has at most
    ``max_answer_words`` words asks ``"<page>: what does <tag> do?"`` with that sentence as its answer."""
    out: list[QAExample] = []
    chunk: list[tuple[str, str]] = []

    def flush() -> None:
        if not chunk:
            return
        parts, context, starts = [], "", []
        for tag, desc in chunk:
            starts.append(len(context) + len(tag) + 1)
            context += f"{tag}\n{desc}\n"
            parts.append((tag, desc))
        for (tag, desc), start in zip(parts, starts):
            answer = first_sentence(desc)
            if 0 < len(answer.split()) <= max_answer_words:
                out.append(QAExample(f"{page}/{tag}", page, context, f"{page}: what does {tag} do?",
                                     ((answer, start),)))
        chunk.clear()

    words = 0
    for tag, desc in options:
        n = len(tag.split()) + len(desc.split())
        if chunk and words + n > max_words:
            flush()
            words = 0
        chunk.append((tag, desc))
        words += n
    flush()
    return out


def render_man_page(path: Path, width: int = 3000) -> str:
    """A manual page (``.gz`` or plain roff) as text: ``groff -mandoc -Tutf8`` with ``width``-column lines, no
    formatting codes.

    Raises:
        DataError: groff is missing or fails.
    """
    groff = shutil.which("groff")
    if groff is None:
        raise DataError("groff is missing; install it with `sudo apt-get install groff-base`")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        out = subprocess.run([groff, "-mandoc", "-Tutf8", f"-rLL={width}n", "-P-cbou"], input=raw,
                             capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise DataError(f"{path}: cannot render the manual page ({e})") from e
    return out.stdout.decode("utf-8", errors="replace")


def man_pages(man_dir: Path = MAN_DIR, sections: Sequence[str] = ("1", "8"),
              exclude: tuple[str, ...] = ("gcloud",)) -> list[Path]:
    """The English manual pages of ``sections`` (real files, not links), sorted by name, without the names that
    start with ``exclude`` (default: Google Cloud SDK's ~16,000 generated ``gcloud_*`` pages, one template).

    Raises:
        DataError: no page found (man pages not installed, or a container that strips them).
    """
    pages = []
    for s in sections:
        folder = man_dir / f"man{s}"
        if folder.is_dir():
            pages += [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()
                      and not p.name.startswith(exclude)]
    if not pages:
        raise DataError(f"{man_dir}: no manual pages in sections {', '.join(sections)}; install man pages "
                        f"(`sudo apt-get install man-db manpages`) or pass --qa-json")
    return sorted(pages, key=lambda p: p.name)


def build_man_qa(pages: Sequence[Path], render: Callable[[Path], str] = render_man_page) -> list[QAExample]:
    """QA examples of every page of ``pages`` that has options (``render`` turns a path into text); a page whose
    option list equals an earlier page's is skipped."""
    out, seen = [], set()
    for path in pages:
        page = path.name.removesuffix(".gz")
        options = parse_man_options(render(path))
        key = tuple(options)
        if options and key not in seen:  # a page under two names (openssl's req and openssl-req) counts once
            seen.add(key)
            out += man_page_documents(page, options)
    return out
