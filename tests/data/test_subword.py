"""BPE-dropout (deepnotes.data.subword) against sentencepiece: plain BPE equal to its encoder, dropout's properties."""

from __future__ import annotations

import random

import pytest

from deepnotes.data.subword import BPEDropout
from deepnotes.data.translation import (
    PLACEHOLDER_SYMBOLS,
    UI_TRANSLATIONS,
    SubwordTokenizer,
    load_ui_translations,
    train_sentencepiece,
)

WORDS = ("open the file cannot read write directory user name not found error warning for with filename "
         "options optional unreadable rewrite 打开 文件 无法 读取 写入 目录 用户 名称 找不到 错误 警告").split()


def _corpus(n=600, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 10)))
            + rng.choice([" %s", ": %d", " %1$s and %2$s", " {name}", "。", "，{}"]) for _ in range(n)]


# texts the merges never saw: unknown characters, odd spacing, placeholders glued to words
ODD = ["unseen: 𠀀 Zebra ü", "  leading and   repeated   spaces  ", "open%sfile%d", "文件%s不存在：Ωμέγα",
       "aaaa aaaaa", "filenamefilename", "", " "]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    d = tmp_path_factory.mktemp("spm")
    with_bytes = SubwordTokenizer.load(train_sentencepiece(_corpus(), d / "a", vocab_size=420,
                                                           user_defined_symbols=PLACEHOLDER_SYMBOLS))
    no_bytes = SubwordTokenizer.load(train_sentencepiece(_corpus(), d / "b", vocab_size=160, byte_fallback=False,
                                                         character_coverage=0.98))
    return with_bytes, no_bytes


def test_without_dropout_it_is_sentencepiece_bpe(tokenizers):
    for tok in tokenizers:
        bpe = BPEDropout.from_tokenizer(tok)
        texts = _corpus(300, seed=1) + ODD
        for t in texts:
            assert bpe.encode(t) == tok.encode(t), t
        assert sum(len(tok.encode(t)) for t in texts) < sum(len(t) for t in texts)  # merges did happen


def test_unknown_characters_become_bytes_or_one_unk(tokenizers):
    with_bytes, no_bytes = tokenizers
    assert BPEDropout.from_tokenizer(with_bytes).pieces("x 𠀀") == ["▁", "x", "▁", "𠀀"]
    ids = BPEDropout.from_tokenizer(with_bytes).encode("𠀀")
    assert [with_bytes.id_to_piece(i) for i in ids][-4:] == ["<0xF0>", "<0xA0>", "<0x80>", "<0x80>"]
    ids = BPEDropout.from_tokenizer(no_bytes).encode("open 𠀀𠀁Ω")
    assert ids.count(no_bytes.unk_id) == 1 and ids == no_bytes.encode("open 𠀀𠀁Ω")


def test_full_dropout_leaves_characters_and_user_symbols_whole(tokenizers):
    bpe = BPEDropout.from_tokenizer(tokenizers[0])
    pieces = bpe.pieces("open %1$s 文件", p=1.0, rng=random.Random(0))
    assert pieces == ["▁", "o", "p", "e", "n", "▁", "%1$s", "▁", "文", "件"]


def test_dropout_samples_segmentations_of_the_same_text(tokenizers):
    tok = tokenizers[0]
    bpe = BPEDropout.from_tokenizer(tok)
    texts = _corpus(200, seed=2)
    plain = [bpe.encode(t) for t in texts]
    a = [bpe.encode(t, 0.1, random.Random(5)) for t in texts]
    b = [bpe.encode(t, 0.1, random.Random(5)) for t in texts]
    c = [bpe.encode(t, 0.1, random.Random(6)) for t in texts]
    assert a == b and a != c  # seeded, and the seed matters
    assert all(tok.decode(ids) == tok.decode(p) for ids, p in zip(a, plain))  # the same text
    assert sum(x != p for x, p in zip(a, plain)) > 50  # many sentences get another segmentation
    lengths = {p: sum(len(bpe.encode(t, p, random.Random(1))) for t in texts) for p in (0.0, 0.1, 0.5, 1.0)}
    assert lengths[0.0] < lengths[0.1] < lengths[0.5] < lengths[1.0]
    # the library's sampling (sentencepiece, enable_sampling) lengthens segmentations by a comparable amount
    lib = sum(len(tok.sp.encode(t, enable_sampling=True, alpha=0.1, nbest_size=-1)) for t in texts)
    assert lengths[0.0] < lib and abs(lib - lengths[0.1]) < 0.5 * (lengths[0.1] - lengths[0.0]) + 0.05 * lengths[0.0]


def test_errors(tokenizers, tmp_path):
    bpe = BPEDropout.from_tokenizer(tokenizers[0])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        bpe.encode("open", p=1.5, rng=random.Random(0))
    with pytest.raises(ValueError, match="needs rng"):
        bpe.encode("open", p=0.1)
    unigram = SubwordTokenizer.load(train_sentencepiece(_corpus(), tmp_path / "u", vocab_size=380, model_type="unigram"))
    with pytest.raises(ValueError, match="needs a BPE model"):
        BPEDropout.from_tokenizer(unigram)


@pytest.mark.skipif(not UI_TRANSLATIONS.is_current(),
                    reason="ui-translations not built or outdated (deepnotes data build ui-translations)")
def test_real_pairs_without_dropout_equal_sentencepiece(tmp_path):
    pairs = load_ui_translations(build=False)
    train = [t for p in pairs[::15] for t in (p.en, p.zh)]
    tok = SubwordTokenizer.load(train_sentencepiece(train, tmp_path / "spm", vocab_size=3000,
                                                    user_defined_symbols=PLACEHOLDER_SYMBOLS))
    bpe = BPEDropout.from_tokenizer(tok)
    held_out = [t for p in pairs[7::40] for t in (p.en, p.zh)]
    assert [bpe.encode(t) for t in held_out] == [tok.encode(t) for t in held_out]
