"""The KJV corpus: parsing `bible` output, the TSV reader's errors, the verse split and the char vocabulary."""

import shutil

import numpy as np
import pytest

import torch

from deepnotes.data.splits import verse_split
from deepnotes.data.text import (
    KJV,
    CBOWBatches,
    CharVocab,
    EvalWindows,
    Verse,
    WindowBatches,
    WordVocab,
    join_verses,
    load_kjv,
    parse_bible_output,
    subsample,
    tokenize,
    word_corpus,
)
from deepnotes.errors import DataError, UserError
from deepnotes.nn.word2vec import cbow_windows, noise_distribution, subsample_keep_prob
from deepnotes.train.batches import TensorBatches, seed_for

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


def test_window_batches_draw_the_offsets_of_tensor_batches():
    """Training windows start at offsets drawn by TensorBatches over every offset (the draws char_lm always made):
    x = ids[o : o+T], y = ids[o+1 : o+T+1]."""
    ids = torch.arange(100) * 3
    T, B = 8, 5
    batches = WindowBatches(ids, T, B, seed=7, steps_per_epoch=4)
    reference = TensorBatches((torch.arange(100 - T),), B, 7, steps_per_epoch=4)
    assert len(batches) == 4
    for epoch in (0, 3):
        got = list(batches.epoch(epoch))
        want = list(reference.epoch(epoch))
        assert len(got) == len(want) == 4
        for (x, y), (offsets,) in zip(got, want):
            assert x.shape == y.shape == (B, T)
            assert torch.equal(x, ids[offsets[:, None] + torch.arange(T)])
            assert torch.equal(y, ids[offsets[:, None] + torch.arange(1, T + 1)])
    assert not torch.equal(next(iter(batches.epoch(0)))[0], next(iter(batches.epoch(1)))[0])
    with pytest.raises(UserError, match="fewer than --block-size"):
        WindowBatches(ids[:8], 8, 2, seed=0)


def test_eval_windows_cover_the_text_once_without_overlap():
    ids = torch.arange(50)
    batches = list(EvalWindows(ids, 8, batch_size=2))
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    assert [len(x) for x, _ in batches] == [2, 2, 2] and xs.shape == (6, 8)  # (50 - 1) // 8 windows
    assert torch.equal(xs.flatten(), ids[:48]) and torch.equal(ys.flatten(), ids[1:49])
    assert len(EvalWindows(ids, 8, batch_size=2)) == 3


def test_tokenize_lowercases_and_drops_possessives():
    assert tokenize("And the LORD's anger was kindled; (v. 3) well-watered") == [
        "and", "the", "lord", "anger", "was", "kindled", "v", "well", "watered"]
    v = WordVocab.build([["b", "a", "b"], ["c", "a", "b"]], min_count=2)
    assert v.words == ("b", "a") and v.counts == (3, 2) and v.stoi == {"b": 0, "a": 1}


def test_word_corpus_splits_by_verse_and_drops_rare_words():
    verses = [Verse("Genesis", 1, i + 1, "the lord said unto moses" if i % 2 else f"and rare{chr(97 + i // 2)} the") for i in range(40)]
    corpus = word_corpus(verses, 0.25, seed=0, min_count=2)
    assert corpus.vocab.words[0] == "the" and not any(w.startswith("rare") for w in corpus.vocab.words)
    assert corpus.stats["train_verses"] == 30 and corpus.stats["val_verses"] == 10
    ids, seg = corpus.train
    assert len(ids) == len(seg) == corpus.stats["train_tokens_in_vocab"] and bool((seg[1:] >= seg[:-1]).all())
    same = word_corpus(verses, 0.25, seed=0, min_count=9, vocab=corpus.vocab)
    assert same.vocab == corpus.vocab and torch.equal(same.val[0], corpus.val[0])


def test_subsample_keeps_tokens_with_their_probability():
    ids = torch.tensor([0, 1] * 5000)
    keep = subsample(ids, torch.tensor([1.0, 0.25], dtype=torch.float64), seed=3)
    assert bool(keep[ids == 0].all()) and abs(float(keep[ids == 1].double().mean()) - 0.25) < 0.02
    assert torch.equal(keep, subsample(ids, torch.tensor([1.0, 0.25], dtype=torch.float64), seed=3))


def _cbow(train, seed=0):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 12, (300,), generator=g)
    seg = torch.arange(300) // 10
    counts = torch.bincount(ids, minlength=12)
    return CBOWBatches(ids, seg, subsample_keep_prob(counts, 0.05), noise_distribution(counts), 2, 3, 16, seed,
                       train=train)


def test_cbow_batches_depend_only_on_seed_and_epoch():
    a, b = _cbow(True), _cbow(True)
    ctx, mask, tgt = a.windows(0)
    assert len(a) == -(-len(tgt) // 16)
    first = list(a.epoch(1))
    assert all(torch.equal(x, y) for p, q in zip(first, b.epoch(1)) for x, y in zip(p, q))
    assert not torch.equal(first[0][2], next(iter(a.epoch(2)))[2])
    context, m, target, negatives = first[0]
    assert context.shape == m.shape == (16, 4) and target.shape == (16,) and negatives.shape == (16, 3)
    # every example is one of the epoch's windows (shuffled)
    windows = {(tuple(c.tolist()), tuple(k.tolist()), int(t)) for c, k, t in zip(*a.windows(1))}
    assert all((tuple(c.tolist()), tuple(k.tolist()), int(t)) in windows for c, k, t in zip(context, m, target))
    assert sum(len(batch[2]) for batch in first) == len(a.windows(1)[2])


def test_cbow_eval_batches_are_the_same_at_every_pass_in_stream_order():
    val = _cbow(False)
    one, two = list(val), list(val)
    assert all(torch.equal(x, y) for p, q in zip(one, two) for x, y in zip(p, q))
    ctx, mask, tgt = val.windows(0)
    assert torch.equal(torch.cat([b[2] for b in one]), tgt)
    keep = subsample(val.ids, val.keep_prob, seed=seed_for(0, 99))
    assert torch.equal(tgt, cbow_windows(val.ids[keep], val.segment[keep], 2)[2])


def test_eval_windows_sample_is_a_fixed_ordered_subset_of_every_window():
    ids = torch.arange(1000)  # a window's first token is its offset
    full = EvalWindows(ids, 8, batch_size=1000)
    sample = EvalWindows(ids, 8, batch_size=7, sample=20, seed=3)
    starts = torch.cat([x[:, 0] for x, _ in sample])
    assert sample.n_windows == 20 and len(starts) == 20 and full.n_windows == (1000 - 8 - 1) // 8 + 1
    assert (starts % 8 == 0).all() and torch.equal(starts, starts.sort().values) and len(set(starts.tolist())) == 20
    again = torch.cat([x[:, 0] for x, _ in EvalWindows(ids, 8, batch_size=5, sample=20, seed=3)])
    other = torch.cat([x[:, 0] for x, _ in EvalWindows(ids, 8, batch_size=5, sample=20, seed=4)])
    assert torch.equal(starts, again) and not torch.equal(starts, other)
    assert EvalWindows(ids, 8, sample=10**6).n_windows == full.n_windows  # more than there are: every window
