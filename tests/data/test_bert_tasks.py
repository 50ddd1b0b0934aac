"""The BERT lab's task data on small hand cases: splits, fortunes, punctuation labels, next-verse pairs, manual-page
options, SQuAD JSON, and SQuAD v1.1's answer normalisation, EM and F1 (the official script's definitions)."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from deepnotes.data import bert_tasks as bt
from deepnotes.data.text import Verse
from deepnotes.errors import DataError, UserError


def test_stratified_split_is_disjoint_stratified_and_seeded():
    labels = [0] * 50 + [1] * 20 + [2] * 10
    tr, va, te = bt.stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(80))
    y = np.array(labels)
    assert Counter(y[va].tolist()) == {0: 5, 1: 2, 2: 1} and Counter(y[te].tolist()) == {0: 5, 1: 2, 2: 1}
    again = bt.stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    assert not np.array_equal(va, bt.stratified_split(labels, (0.8, 0.1, 0.1), seed=4)[1])
    with pytest.raises(ValueError, match="fractions"):
        bt.stratified_split(labels, (0.5, 0.5))


def test_fortunes_are_read_and_duplicates_dropped(tmp_path):
    (tmp_path / "law").write_text("A lawyer\n  said so.\n%\nSame text\n%\n\n%\n")
    (tmp_path / "food").write_text("Eat\tyour greens.\n%\nSame text\n%\nPie.\n")
    assert bt.read_fortunes(tmp_path / "law") == ["A lawyer said so.", "Same text"]
    texts, labels = bt.load_topic(tmp_path, ("law", "food"))
    assert texts == ["A lawyer said so.", "Eat your greens.", "Pie."] and labels == [0, 1, 1]
    with pytest.raises(DataError, match="fortunes-min"):
        bt.load_topic(tmp_path, ("law", "sports"))


def test_punctuation_labels():
    words, labels = bt.punctuation_words("And God said, Let there be light: and there was light.")
    assert words == ["And", "God", "said", "Let", "there", "be", "light", "and", "there", "was", "light"]
    assert [bt.MARKS[i] for i in labels] == ["none"] * 2 + [","] + ["none"] * 3 + [":"] + ["none"] * 3 + ["."]
    words, labels = bt.punctuation_words("(for the LORD's sake;) he said, Who? Amen! burnt-offering ( .")
    assert words == ["for", "the", "LORD's", "sake", "he", "said", "Who", "Amen", "burnt-offering"]
    assert [bt.MARKS[i] for i in labels] == ["none", "none", "none", ";", "none", ",", "?", "!", "."]


def _verses() -> list[Verse]:
    out = []
    for book in ("Ruth", "Jude"):
        for ch in (1, 2, 3):
            out += [Verse(book, ch, v, f"{book} {ch}:{v}") for v in range(1, 9)]
    return out


def test_chapter_split_and_next_verse_pairs():
    verses = _verses()
    tr, va, te = bt.chapter_split(verses, seed=0)
    chapters = [{(verses[i].book, verses[i].chapter) for i in part} for part in (tr, va, te)]
    assert not (chapters[0] & chapters[1]) and not (chapters[0] & chapters[2]) and not (chapters[1] & chapters[2])
    assert sorted(tr + va + te) == list(range(len(verses)))
    pairs = bt.next_verse_pairs(verses, tr, seed=5)
    assert pairs == bt.next_verse_pairs(verses, tr, seed=5)
    by_text = {v.text: (i, v) for i, v in enumerate(verses)}
    assert len(pairs) == sum(1 for i in tr if i + 1 in set(tr) and verses[i + 1].chapter == verses[i].chapter)
    for a, b, label in pairs:
        (i, va_), (j, vb) = by_text[a], by_text[b]
        assert i in tr and j in tr and va_.book == vb.book  # negatives from the same book and split
        assert label == int(j == i + 1)
    assert 0.25 < np.mean([p[2] for p in pairs]) < 0.75


RENDERED = """NAME
       tool - does things

OPTIONS
       -a, --all
              do not ignore entries starting with .  Second sentence here.

       -c     with -lt: sort by ctime. Then more.

       --help Output a usage message and exit.

       -e PATTERNS, --regexp=PATTERNS
              Use PATTERNS as the patterns.

       -x
              first x

       -x
              second x (a duplicate tag: ambiguous, dropped)
"""


def test_parse_man_options_and_documents():
    opts = bt.parse_man_options(RENDERED)
    assert opts == [("-a, --all", "do not ignore entries starting with . Second sentence here."),
                    ("-c", "with -lt: sort by ctime. Then more."),
                    ("--help", "Output a usage message and exit."),
                    ("-e PATTERNS, --regexp=PATTERNS", "Use PATTERNS as the patterns.")]
    assert bt.first_sentence("Sort by time. Then more.") == "Sort by time."
    assert bt.first_sentence("see e.g. ls. fine") == "see e.g. ls. fine"
    docs = bt.man_page_documents("tool.1", opts, max_words=16)
    # 11 words; 11 + 8 > 16: a new context; 8 + 7 <= 16: together; + 8 > 16: a new one
    assert [d.context.count("\n") // 2 for d in docs] == [1, 2, 2, 1]
    for d in docs:
        (text, start), = d.answers
        assert d.context[start:start + len(text)] == text and d.question.startswith("tool.1: what does ")
    assert [d.answers[0][0] for d in docs] == ["do not ignore entries starting with .", "with -lt: sort by ctime.",
                                               "Output a usage message and exit.", "Use PATTERNS as the patterns."]


@pytest.mark.skipif(shutil.which("groff") is None or not (bt.MAN_DIR / "man1" / "ls.1.gz").is_file(),
                    reason="groff or ls.1.gz not installed")
def test_a_real_manual_page():
    opts = dict(bt.parse_man_options(bt.render_man_page(bt.MAN_DIR / "man1" / "ls.1.gz")))
    assert opts["-a, --all"] == "do not ignore entries starting with ."
    assert opts["-c"].startswith("with -lt: sort by, and show, ctime")


def test_squad_json_round_trip_and_errors(tmp_path):
    qa = {"id": "q1", "question": "Where did the cat sit?", "answers": [{"text": "on the mat", "answer_start": 12}]}
    obj = {"data": [{"title": "t1", "paragraphs": [{"context": "The cat sat on the mat.", "qas": [qa]}]}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(obj))
    (ex,) = bt.read_squad(path)
    assert (ex.qid, ex.title, ex.answers) == ("q1", "t1", (("on the mat", 12),))
    assert bt.parse_squad(bt.to_squad([ex])) == [ex]
    obj["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError, match="q1"):
        bt.read_squad(path)
    path.write_text('{"data": [{"paragraphs": [{"qas": []}]}]}')
    with pytest.raises(DataError, match="SQuAD"):
        bt.read_squad(path)
    with pytest.raises(UserError, match="no such file"):
        bt.read_squad(tmp_path / "missing.json")


def test_squad_normalisation_em_and_f1():
    # the official v1.1 script: lower, drop punctuation, drop articles, collapse white space
    assert bt.normalize_answer("The  Cat's hat!") == "cats hat"
    assert bt.normalize_answer("An apple, a day") == "apple day"
    assert bt.normalize_answer("theory of the-atom") == "theory of theatom"  # punctuation goes before articles
    assert bt.exact_match("An Apple.", ["apple"]) == 1.0 and bt.exact_match("apples", ["apple"]) == 0.0
    assert bt.f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)  # P = 2/2, R = 2/3
    assert bt.f1("cat cat", ["cat"]) == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts clipped: P = 1/2, R = 1
    assert bt.f1("dog", ["cat", "the dog"]) == 1.0  # the max over the gold answers
    assert bt.f1("", ["the"]) == 0.0  # nothing shared (the v1.1 script's convention)


def test_word_spans_follow_bert_pre_tokenization():
    text = "Don't re-use it, e.g. --block-size=M (x_y)."
    assert [text[a:b] for a, b in bt.word_spans(text)] == [
        "Don", "'", "t", "re", "-", "use", "it", ",", "e", ".", "g", ".", "-", "-", "block", "-", "size", "=", "M",
        "(", "x", "_", "y", ")", "."]
