"""The KJV corpus: parsing `bible` output, the TSV reader's errors, the verse split and the char vocabulary."""

import shutil

import numpy as np
import pytest

from deepnotes.data.splits import verse_split
from deepnotes.data.text import KJV, CharVocab, join_verses, load_kjv, parse_bible_output
from deepnotes.errors import DataError, UserError

SAMPLE = """
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void.

1 Samuel 3

  10 And the LORD came, and stood, and called as at other times, Samuel, Samuel.
"""


def test_parse_bible_output_books_with_numbers_and_verse_numbers():
    verses = parse_bible_output(SAMPLE)
    assert [(v.book, v.chapter, v.verse) for v in verses] == [("Genesis", 1, 1), ("Genesis", 1, 2), ("1 Samuel", 3, 10)]
    assert verses[1].text == "And the earth was without form, and void."
    with pytest.raises(DataError, match="line 1: a verse before any"):
        parse_bible_output("  1 orphan verse\n")
    with pytest.raises(DataError, match="line 2: neither a heading nor a verse"):
        parse_bible_output("Genesis 1\nGenesis\n")


def test_load_kjv_names_the_malformed_line(tmp_path):
    path = tmp_path / "kjv.tsv"
    path.write_text("Genesis\t1\t1\tIn the beginning\nGenesis\t1\ttwo\tAnd the earth\n")
    with pytest.raises(DataError, match=r"kjv.tsv line 2: expected"):
        load_kjv(path)
    path.write_text("Genesis\t1\t1\tIn the beginning\n")
    assert load_kjv(path)[0].text == "In the beginning"
    with pytest.raises(DataError, match="cannot read"):
        load_kjv(tmp_path / "absent.tsv")


def test_verse_split_is_a_seeded_partition():
    train, val = verse_split(1000, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    again, _ = verse_split(1000, 0.1, seed=3)
    other, _ = verse_split(1000, 0.1, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    with pytest.raises(UserError, match="--val-fraction"):
        verse_split(1000, 1.5)


def test_char_vocab_round_trip_and_unknown_character():
    vocab = CharVocab.from_text("abcab\n")
    assert vocab.itos == ("\n", "a", "b", "c") and len(vocab) == 4
    ids = vocab.encode("cab\n")
    assert ids.tolist() == [3, 1, 2, 0] and vocab.decode(ids) == "cab\n"
    with pytest.raises(UserError, match="'z' is not in the vocabulary"):
        vocab.encode("az")


@pytest.mark.skipif(shutil.which("bible") is None, reason="needs Debian's bible-kjv (apt-get install bible-kjv)")
def test_build_real_kjv(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    folder = KJV.build()
    assert folder == tmp_path / "kjv" and (folder / "manifest.json").is_file()
    verses = load_kjv(build=False)
    assert len(verses) == 31102
    assert (verses[0].book, verses[0].text) == ("Genesis", "In the beginning God created the heaven and the earth.")
    assert (verses[-1].book, verses[-1].chapter, verses[-1].verse) == ("Revelation", 22, 21)
    text = join_verses(verses)
    assert 4_000_000 < len(text) < 4_300_000 and len(set(text)) < 80
