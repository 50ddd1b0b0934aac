"""Translation data: the .mo reader (against Python's gettext), the pair filters, the ui-translations build
(offline, on .debs made here and a stand-in apt-get), pairs.tsv, package_split, TED2020 text, sentencepiece."""

from __future__ import annotations

import gettext
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess

import pytest
import torch

from deepnotes.data.subword import BPEDropout
from deepnotes.data.translation import (
    BOS_ID,
    DEFAULT_TEST_PACKAGES,
    DEFAULT_VAL_PACKAGES,
    EOS_ID,
    PAD_ID,
    SENTINELS,
    UI_TRANSLATIONS,
    Pair,
    CorpusSpec,
    SubwordTokenizer,
    TokenBatches,
    UITranslationsInfo,
    bpe_dropout_batch,
    catalog_pairs,
    dedupe_pairs,
    format_pairs_tsv,
    has_cjk,
    load_translation_data,
    load_ui_translations,
    package_split,
    parse_mo,
    protect_spans,
    protect_target,
    read_deb_catalogs,
    read_eval_pairs,
    read_parallel_text,
    read_sentences,
    restore_spans,
    train_sentencepiece,
    write_sentences,
)
from deepnotes.errors import DataError, UserError

HEADER = "Content-Type: text/plain; charset={charset}\nPlural-Forms: nplurals=1; plural=0;\n"


def make_mo(messages: dict[str, str], charset: str = "UTF-8", byteorder: str = "<") -> bytes:
    """A GNU .mo file of ``messages`` (original -> translation; ``ctxt\\x04id`` for a context,
    ``id\\x00plural`` with ``form0\\x00form1`` for plural entries), header entry added."""
    messages = {"": HEADER.format(charset=charset), **messages}
    keys = sorted(messages, key=lambda k: k.encode(charset))
    origs = [k.encode(charset) for k in keys]
    trans = [messages[k].encode(charset) for k in keys]
    n = len(keys)
    o_off, t_off = 28, 28 + 8 * n
    blob, pos = b"", 28 + 16 * n
    o_table, t_table = b"", b""
    for strings, which in ((origs, "o"), (trans, "t")):
        for s in strings:
            entry = struct.pack(byteorder + "II", len(s), pos)
            if which == "o":
                o_table += entry
            else:
                t_table += entry
            blob += s + b"\x00"
            pos += len(s) + 1
    head = struct.pack(byteorder + "7I", 0x950412DE, 0, n, o_off, t_off, 0, 0)
    return head + o_table + t_table + blob


CATALOG = {
    "Open the file now": "现在打开文件",
    "button\x04Save all the changes": "保存所有更改",
    "%d file was removed\x00%d files were removed": "删除了 %d 个文件\x00第二种形式 %d",
    "Only ASCII text here": "Only ASCII text here",
    "Two words": "两个词",
    "Spread\n  over\tlines here": "分布在\n多行\u3000上",
    "Untranslated message here": "",
    "Ideographic punctuation only": "。，！",
}


def _as_gettext_catalog(entries):
    """Our entries in the key layout of ``gettext.GNUTranslations._catalog``."""
    out = {}
    for e in entries:
        key = e.msgid if e.msgctxt is None else f"{e.msgctxt}\x04{e.msgid}"
        if e.msgid_plural is None:
            out[key] = e.msgstr[0]
        else:
            out.update({(key, i): s for i, s in enumerate(e.msgstr)})
    return out


@pytest.mark.parametrize("charset,byteorder", [("UTF-8", "<"), ("UTF-8", ">"), ("GB2312", "<")])
def test_parse_mo_agrees_with_python_gettext(charset, byteorder):
    data = make_mo(CATALOG, charset=charset, byteorder=byteorder)
    entries = parse_mo(data)
    assert _as_gettext_catalog(entries) == gettext.GNUTranslations(io.BytesIO(data))._catalog
    by_id = {e.msgid: e for e in entries}
    assert by_id["Save all the changes"].msgctxt == "button"
    plural = by_id["%d file was removed"]
    assert plural.msgid_plural == "%d files were removed" and plural.msgstr == ("删除了 %d 个文件", "第二种形式 %d")


def test_parse_mo_rejects_bad_files():
    with pytest.raises(DataError, match="x.mo: not a gettext .mo file .bad magic"):
        parse_mo(b"\x00" * 40, "x.mo")
    with pytest.raises(DataError, match="only 3 bytes"):
        parse_mo(b"abc", "x.mo")
    data = make_mo(CATALOG)
    with pytest.raises(DataError, match="x.mo: truncated"):
        parse_mo(data[: len(data) - 30], "x.mo")


def test_catalog_pairs_filters():
    pairs = catalog_pairs(parse_mo(make_mo(CATALOG)))
    assert sorted(pairs) == sorted([
        ("Open the file now", "现在打开文件"),
        ("Save all the changes", "保存所有更改"),  # msgctxt "button" left out
        ("%d file was removed", "删除了 %d 个文件"),  # singular and first form only
        ("Spread over lines here", "分布在 多行 上"),  # whitespace (tab, newline, U+3000) collapsed
    ])
    # dropped: the header, no CJK ideograph (ASCII, punctuation only), < 3 words, untranslated
    assert len(catalog_pairs(parse_mo(make_mo(CATALOG)), min_en_words=2)) == 5  # "Two words" comes back
    assert has_cjk("打") and has_cjk("\U00020000") and not has_cjk("。，！ abc")


def test_dedupe_pairs_keeps_the_first_occurrence():
    pairs = [Pair("a", "x y z", "一"), Pair("b", "x y z", "二"), Pair("b", "u v w", "三"), Pair("a", "u v w", "四")]
    assert dedupe_pairs(pairs) == [pairs[0], pairs[2]]


def test_pairs_tsv_round_trip_and_errors(tmp_path):
    pairs = [Pair("p", "tab\there and a \\n literal", "换行\n和\\反斜杠"), Pair("a", "plain three words", "纯文本")]
    path = tmp_path / "pairs.tsv"
    path.write_text(format_pairs_tsv(pairs), encoding="utf-8")
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    assert load_ui_translations(path) == sorted(pairs, key=lambda p: (p.package, p.en, p.zh))
    path.write_text("a\tthree words here\t三\nb\tonly two fields\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"pairs.tsv line 2: expected 'package<TAB>en<TAB>zh'"):
        load_ui_translations(path)
    with pytest.raises(DataError, match="cannot read"):
        load_ui_translations(tmp_path / "absent.tsv")


def test_package_split_is_by_package_and_deterministic():
    rng = random.Random(0)
    pairs = [Pair(f"pkg{rng.randrange(8)}", f"sentence number {i}", f"句子 {i}") for i in range(400)]
    train, val, test = package_split(pairs, val_packages=["pkg1"], test_packages=("pkg2", "pkg5"))
    assert len(train) + len(val) + len(test) == len(pairs)
    pk = [{p.package for p in s} for s in (train, val, test)]
    assert pk[1] == {"pkg1"} and pk[2] == {"pkg2", "pkg5"} and not pk[0] & (pk[1] | pk[2])
    assert [p for p in pairs if p in set(test)] == test  # input order kept
    assert package_split(list(reversed(pairs)), ["pkg1"], ["pkg2", "pkg5"])[2] == list(reversed(test))
    with pytest.raises(UserError, match="packages in both the validation and the test list: pkg1"):
        package_split(pairs, ["pkg1"], ["pkg1"])
    with pytest.raises(UserError, match="packages without any row: nope; the rows come from: pkg0"):
        package_split(pairs, ["nope"], ["pkg2"])
    assert not set(DEFAULT_VAL_PACKAGES) & set(DEFAULT_TEST_PACKAGES)


# --- the build, offline: .debs made with dpkg-deb, a stand-in apt-get that copies them ---

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")


def _make_deb(repo, package, version, catalogs):
    root = repo / f"root-{package}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        f"Description: test\n")
    for locale, name, messages in catalogs:
        folder = root / "usr/share/locale" / locale / "LC_MESSAGES"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(make_mo(messages))
    deb = repo / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    shutil.rmtree(root)
    return deb


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    repo, bindir = tmp_path / "repo", tmp_path / "bin"
    repo.mkdir(), bindir.mkdir()
    _make_deb(repo, "pkga", "1.0-1", [
        ("zh_CN", "a.mo", {"Open the file now": "现在打开文件", "Only in package a": "仅在甲包中"}),
        ("fr", "a.mo", {"French is not read": "Le français n'est pas lu"}),
        ("zh_TW", "a.mo", {"Traditional is not read": "不讀正體"}),
    ])
    _make_deb(repo, "pkgb", "2:3.1", [
        ("zh_CN", "b2.mo", {"Open the file now": "立即打开文件"}),
        ("zh_CN", "b1.mo", {"Close the file now": "现在关闭文件", "Two words": "两个词"}),
    ])
    log = tmp_path / "apt.log"
    script = bindir / "apt-get"
    script.write_text('#!/bin/sh\n[ "$1" = download ] || exit 2\necho "$2" >> "$FAKE_LOG"\n'
                      'for f in "$FAKE_REPO/$2"_*.deb; do\n'
                      '  [ -e "$f" ] || { echo "E: Unable to locate package $2" >&2; exit 100; }\n'
                      '  cp "$f" .\ndone\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_REPO", str(repo)), monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path / "data"))
    return repo, log


@needs_dpkg
def test_read_deb_catalogs_reads_only_zh_cn(fake_apt):
    repo, _ = fake_apt
    cats = read_deb_catalogs(next(repo.glob("pkga_*.deb")))
    assert [p for p, _ in cats] == ["usr/share/locale/zh_CN/LC_MESSAGES/a.mo"]
    assert {e.msgid for e in parse_mo(cats[0][1])} == {"", "Open the file now", "Only in package a"}
    bad = repo / "bad_1_all.deb"
    bad.write_bytes(b"not a deb")
    with pytest.raises(DataError, match="bad_1_all.deb: .*delete it"):
        read_deb_catalogs(bad)


@needs_dpkg
def test_build_downloads_dedupes_in_package_order_and_resumes(fake_apt, tmp_path):
    repo, log = fake_apt
    info = UITranslationsInfo(packages=("pkga", "pkgb"))
    assert info.status() == "missing"
    folder = info.build()
    assert folder == tmp_path / "data" / "ui-translations" and info.status().startswith("present")
    assert log.read_text().split() == ["pkga", "pkgb"]
    pairs = load_ui_translations(info.pairs_path())
    assert pairs == [
        Pair("pkga", "Only in package a", "仅在甲包中"),
        Pair("pkga", "Open the file now", "现在打开文件"),  # pkga is first: its translation wins
        Pair("pkgb", "Close the file now", "现在关闭文件"),
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    rec = {r["package"]: r for r in manifest["packages"]}
    assert rec["pkgb"]["version"] == "2:3.1" and rec["pkgb"]["catalogs"] == ["b1.mo", "b2.mo"]
    assert rec["pkga"]["sha256"] == hashlib.sha256(next(repo.glob("pkga_*.deb")).read_bytes()).hexdigest()
    assert (rec["pkga"]["pairs"], rec["pkgb"]["entries"], rec["pkgb"]["filtered"], rec["pkgb"]["pairs"]) == (2, 3, 2, 1)
    assert manifest["total_pairs"] == 3 and manifest["default_split"] is None
    assert manifest["files"]["pairs.tsv"] == hashlib.sha256(info.pairs_path().read_bytes()).hexdigest()

    # Rebuilt with the other order: the cached .debs are reused (no download) and pkgb now wins.
    UITranslationsInfo(packages=("pkgb", "pkga")).build(force=True)
    assert log.read_text().split() == ["pkga", "pkgb"]
    assert Pair("pkgb", "Open the file now", "立即打开文件") in load_ui_translations(info.pairs_path())


@needs_dpkg
def test_a_build_from_another_package_list_is_redone(fake_apt, tmp_path, monkeypatch):
    from deepnotes.data import translation as T
    repo, log = fake_apt
    old = UITranslationsInfo(packages=("pkga",))
    old.build()
    assert old.is_current() and old.status().startswith("present")
    new = UITranslationsInfo(packages=("pkga", "pkgb"))
    assert not new.is_current() and new.built_packages() == ("pkga",)
    assert new.status().startswith("outdated") and "deepnotes data build ui-translations" in new.status()
    # the default loader refuses an outdated build when it may not build, and says how to update it
    monkeypatch.setattr(T, "UI_TRANSLATIONS", new)
    with pytest.raises(DataError, match=r"built from 1 packages, not the 2 .*`deepnotes data build ui-translations`"):
        load_ui_translations(build=False)
    # building (or loading with build=True) redoes it, reusing pkga's .deb
    assert {p.package for p in load_ui_translations()} == {"pkga", "pkgb"}
    assert new.is_current() and log.read_text().split() == ["pkga", "pkgb"]
    new.build()  # current now: nothing is redone
    assert log.read_text().split() == ["pkga", "pkgb"]
    (new.cache_dir() / "manifest.json").write_text("{not json")
    assert not new.is_current() and "unreadable manifest" in new.stale_message()


@needs_dpkg
def test_build_names_a_package_that_fails_to_download(fake_apt, tmp_path):
    info = UITranslationsInfo(packages=("pkga", "pkgz"))
    with pytest.raises(DataError, match=r"`apt-get download pkgz` failed \(E: Unable to locate package pkgz\)"
                                        r".*sudo apt-get update.*deepnotes data build ui-translations.*1 .debs"):
        info.build()
    debs = tmp_path / "data" / "ui-translations" / "debs"
    assert [p.name for p in debs.iterdir()] == ["pkga_1.0-1_all.deb"]  # kept, no temporary left behind
    assert not info.pairs_path().exists()


# --- TED2020 text ---

def test_read_parallel_text(tmp_path):
    en, zh = tmp_path / "train_dev.raw.en", tmp_path / "train_dev.raw.zh"
    en.write_bytes(b"Thank you.\r\nLine\xe2\x80\xa8with a separator\n\nlast")  # no final newline
    zh.write_bytes("\ufeff谢谢。\n一行\n\n最后\n".encode())
    assert read_parallel_text(en, zh) == [("Thank you.", "谢谢。"), ("Line\u2028with a separator", "一行"),
                                          ("", ""), ("last", "最后")]
    zh.write_text("谢谢。\n一行\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train_dev.raw.en has 4 lines but .*train_dev.raw.zh has 2"):
        read_parallel_text(en, zh)
    zh.write_bytes("谢谢。\n".encode() + "一行\n".encode("gb18030") + b"x\nlast\n")
    with pytest.raises(DataError, match=r"train_dev.raw.zh line 2 is not UTF-8"):
        read_parallel_text(en, zh)
    with pytest.raises(DataError, match="cannot read .*absent"):
        read_parallel_text(en, tmp_path / "absent")


# --- sentencepiece ---

WORDS = ("open the file cannot read write directory user name not found error warning for with "
         "打开 文件 无法 读取 写入 目录 用户 名称 找不到 错误 警告").split()


def _corpus(n=400, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 10)))
            + rng.choice([" %s", ": %d", " %1$s and %2$s", " {name}", "。", "，{}"]) for _ in range(n)]


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_round_trip_special_ids_and_determinism(tmp_path, model_type):
    corpus = _corpus()
    path = train_sentencepiece(corpus, tmp_path / "a" / "spm", vocab_size=375, model_type=model_type)
    assert path == tmp_path / "a" / "spm.model" and (tmp_path / "a" / "spm.vocab").is_file()
    tok = SubwordTokenizer.load(path)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (PAD_ID, 1, 2, 3, 375)
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    for s in corpus[:50] + ["unseen: 𠀀 Zebra ü"]:  # byte fallback: characters never seen survive too
        assert tok.decode(tok.encode(s)) == s
    ids = tok.encode(corpus[0], add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and tok.decode(ids + [tok.pad_id]) == corpus[0]
    assert len(tok.encode("open the file")) < len("open the file")  # merges happened
    again = train_sentencepiece(iter(corpus), tmp_path / "b" / "spm", vocab_size=375, model_type=model_type)
    assert again.read_bytes() == path.read_bytes()


def test_sentencepiece_keeps_placeholders_whole(tmp_path):
    tok = SubwordTokenizer.load(train_sentencepiece(_corpus(), tmp_path / "spm", vocab_size=400))
    s = "cannot open %s: %d files in %1$s for {name} (%lu, %zu, {0})"
    assert tok.decode(tok.encode(s)) == s
    pieces = tok.pieces(s)
    for ph in ("%s", "%d", "%1$s", "%lu", "%zu", "{0}"):
        assert ph in pieces and tok.piece_to_id(ph) != tok.unk_id
    # without the placeholder symbols, "%1$s" is cut into pieces (so the test above can fail)
    plain = SubwordTokenizer.load(train_sentencepiece(_corpus(), tmp_path / "p", vocab_size=400,
                                                      user_defined_symbols=()))
    assert "%1$s" not in plain.pieces(s)


def test_protect_spans_replaces_placeholders_options_and_numbers_by_sentinels():
    s0, s1, s2, s3 = SENTINELS[:4]
    p = protect_spans("-R, --rfc-email output date in RFC 5322 format (e.g. %s), see -R")
    assert p.spans == ("-R", "--rfc-email", "5322", "%s")
    assert p.text == f"{s0}, {s1} output date in RFC {s2} format (e.g. {s3}), see {s0}"  # the same string, the same sentinel
    # what is not a span: a hyphen inside a word, a lone dash, one digit, the "% d" of "50% done" (the space
    # flag is left out; 50 is a number), digits glued to letters; options take their =VALUE
    p = protect_spans("a non-zero e-mail - 5 files, 50% done, x86 --block-size=1K and %.250s at 02:34:56")
    assert p.spans == ("50", "--block-size=1K", "%.250s", "02:34:56")
    assert p.text == f"a non-zero e-mail - 5 files, {s0}% done, x86 {s1} and {s2} at {s3}"
    assert protect_spans("no spans here").spans == ()
    # a span may touch Chinese text (the boundaries are ASCII-only)
    assert protect_target("以-R输出 %s，共 5322 项，--rfc-email", ("-R", "--rfc-email", "5322")) == f"以{s0}输出 %s，共 {s2} 项，{s1}"


def test_protect_then_restore_is_the_identity_and_made_up_sentinels_are_dropped():
    texts = ["%1$s to %2$s: %d of %d (%.1f%%)", "-a, --all   do not ignore entries starting with .",
             "tar: -f: option requires an argument -- 'f'", "version 1.35.2 (2023), see https://x.org/a-b",
             " ".join(f"--opt{k}" for k in range(40))]
    for t in texts:
        p = protect_spans(t)
        assert restore_spans(p.text, p.spans) == t
        assert restore_spans(protect_target(t, p.spans), p.spans) == t
    many = protect_spans(" ".join(f"--opt{k}" for k in range(40)))
    assert len(many.spans) == len(SENTINELS) == 32 and many.text.endswith("--opt39")  # the rest stay text
    p = protect_spans("copy %s to %d")
    assert restore_spans(f"把 {SENTINELS[0]} 复制到 {SENTINELS[1]}{SENTINELS[5]}", p.spans) == "把 %s 复制到 %d"
    with pytest.raises(ValueError, match="already holds a sentinel"):
        protect_spans(f"bad {SENTINELS[3]}")
    with pytest.raises(ValueError, match="already holds a sentinel"):
        protect_target(f"坏 {SENTINELS[0]}", ())


def test_sentencepiece_keeps_sentinels_whole(tmp_path):
    corpus = [protect_spans(s).text for s in _corpus()] + [protect_target(s, ()) for s in _corpus()]
    tok = SubwordTokenizer.load(train_sentencepiece(corpus, tmp_path / "spm", vocab_size=400,
                                                    user_defined_symbols=SENTINELS))
    s = f"open {SENTINELS[0]} and {SENTINELS[31]}{SENTINELS[2]} now"
    assert tok.decode(tok.encode(s)) == s
    assert {SENTINELS[0], SENTINELS[31], SENTINELS[2]} <= set(tok.pieces(s))


def test_sentencepiece_errors(tmp_path):
    with pytest.raises(ValueError, match="model_type must be 'bpe' or 'unigram'"):
        train_sentencepiece(_corpus(), tmp_path / "x", 400, model_type="word")
    with pytest.raises(ValueError, match="Vocabulary size is smaller than required_chars"):
        train_sentencepiece(_corpus(), tmp_path / "x", 100)  # byte fallback needs 256 byte pieces
    assert not list(tmp_path.iterdir())
    with pytest.raises(DataError, match="cannot read tokenizer model"):
        SubwordTokenizer.load(tmp_path / "none.model")
    (tmp_path / "bad.model").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.model is not a sentencepiece model"):
        SubwordTokenizer.load(tmp_path / "bad.model")


# --- a corpus ready for training, and its batches ---

def _id_pairs(n=57, seed=0):
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        s, t = int(torch.randint(1, 20, (1,), generator=g)), int(torch.randint(1, 20, (1,), generator=g))
        pairs.append((torch.randint(4, 100, (s,), generator=g).tolist() + [EOS_ID],
                      torch.randint(4, 100, (t,), generator=g).tolist()))
    return pairs


def test_token_batches_respect_the_budget_shift_targets_and_hold_every_pair_once():
    pairs = _id_pairs()
    batches = TokenBatches(pairs, max_tokens=80, seed=0)
    seen = []
    for src, tin, tout in batches:
        assert src.shape[0] * max(src.shape[1], tin.shape[1]) <= 80 or src.shape[0] == 1
        assert tin.shape == tout.shape and (tin[:, 0] == BOS_ID).all()
        for r in range(src.shape[0]):
            s = src[r][src[r] != PAD_ID].tolist()
            t = tout[r][tout[r] != -100].tolist()
            assert t[-1] == EOS_ID and tin[r, 1:len(t)].tolist() == t[:-1]  # teacher forcing: shifted by one
            assert (tin[r, len(t):] == PAD_ID).all()
            seen.append((s, t[:-1]))
    assert sorted(seen) == sorted(pairs)  # every pair exactly once
    lengths = [max(len(t) for t in (tout[r][tout[r] != -100] for r in range(len(tout)))) for _, _, tout in batches]
    assert lengths == sorted(lengths)  # packed by target length
    assert TokenBatches(pairs, 80, seed=0).batches[3][0].equal(batches.batches[3][0])  # deterministic


def test_token_batches_epoch_order_depends_only_on_seed_and_epoch():
    pairs = _id_pairs()
    a, b = TokenBatches(pairs, 80, seed=3), TokenBatches(pairs, 80, seed=3)
    order = {e: [id(x) for x in a.epoch(e)] for e in range(3)}
    index = {id(x): i for i, x in enumerate(a.batches)}
    assert all(sorted(index[i] for i in o) == list(range(len(a))) for o in order.values())  # each a permutation
    assert order[0] != order[1] != order[2]  # shuffled anew every epoch
    list(a.epoch(5))  # drawing other epochs changes nothing
    assert [id(x) for x in a.epoch(1)] == order[1]
    assert [index[id(x)] for x in a.epoch(2)] == [[y is x for y in b.batches].index(True) for x in b.epoch(2)]
    assert len(a) == len(a.batches) and list(a) == a.batches  # iterated: packing order (evaluation)


def test_dropout_batches_hold_the_same_pairs_segmented_anew(tmp_path):
    corpus = [f"open the file number {i} for {w}" for i, w in enumerate(("reading", "writing", "renaming") * 20)]
    zh = [f"打开第 {i} 个文件" for i in range(len(corpus))]
    tok = SubwordTokenizer.load(train_sentencepiece(corpus + zh, tmp_path / "spm", vocab_size=370))
    text = list(zip(corpus, zh))
    pairs = [(tok.encode(en) + [EOS_ID], tok.encode(z)) for en, z in text]
    batches = TokenBatches(pairs, 120, seed=0, text=text)
    plain = TokenBatches(pairs, 120, seed=0)
    bpe = BPEDropout.from_tokenizer(tok)

    def draw(b, seed=0, p=0.5):
        return bpe_dropout_batch(batches.batches[b], torch.Generator().manual_seed(seed), bpe, p)

    def texts(src, tout):
        return sorted((tok.decode(s.tolist()), tok.decode(t[t != -100].tolist())) for s, t in zip(src, tout))

    for b, group in enumerate(batches.groups):
        src, tin, tout = draw(b)
        assert texts(src, tout) == sorted(text[i] for i in group)  # the same pairs, as text
        assert (tin[:, 0] == BOS_ID).all() and (src == EOS_ID).sum() == len(group)
        assert all(x.equal(y) for x, y in zip(batches.batches[b][:3], plain.batches[b]))  # text rides along
        assert all(x.equal(y) for x, y in zip(draw(b, p=0.0), plain.batches[b]))  # p = 0: the plain segmentation
    longer = sum(draw(b)[0].ne(PAD_ID).sum().item() for b in range(len(batches)))
    assert longer > sum(len(s) for s, _ in pairs)  # dropout gave finer segmentations
    assert draw(0, seed=1)[0].equal(draw(0, seed=1)[0]) and not draw(0, seed=1)[0].equal(draw(0, seed=2)[0])


def test_sentences_round_trip_and_eval_pairs_are_filtered(tmp_path):
    write_sentences(tmp_path / "a.txt", ["one", "two\nlines", ""])
    assert read_sentences(tmp_path / "a.txt") == ["one", "two lines", ""]
    assert read_sentences(tmp_path / "missing.txt") == []
    tok = SubwordTokenizer.load(train_sentencepiece(_corpus(), tmp_path / "spm", vocab_size=400))
    (tmp_path / "d.en").write_text("open the file\n\n" + "word " * 50 + "\n  read the file  \n", encoding="utf-8")
    (tmp_path / "d.zh").write_text("打开文件\n空\n很长\n读取文件\n", encoding="utf-8")
    kept, skipped = read_eval_pairs(str(tmp_path / "d"), tok, max_len=20, protect=False)
    assert kept == [("open the file", "打开文件"), ("read the file", "读取文件")] and skipped == 2
    with pytest.raises(UserError, match="no pair with both sides non-empty"):
        read_eval_pairs(str(tmp_path / "d"), tok, max_len=1, protect=False)


def test_load_translation_data_from_ted2020_files(tmp_path):
    rng = random.Random(0)
    en = [" ".join(rng.choice(WORDS[:17]) for _ in range(rng.randrange(3, 9))) + " %s" for _ in range(300)]
    (tmp_path / "t.en").write_text("\n".join(en + [""]) + "\n", encoding="utf-8")
    (tmp_path / "t.zh").write_text("\n".join([e.replace("file", "文件") for e in en] + ["空"]) + "\n", encoding="utf-8")
    spec = CorpusSpec(data=str(tmp_path / "t"), val_packages=(), test_packages=(), val_fraction=0.1,
                      test_fraction=0.1, limit_train=0, limit_val=0, max_test_sentences=20, vocab_size=400,
                      character_coverage=1.0, max_len=64, protect_spans=True, val_bleu_sentences=10, seed=0)
    run = tmp_path / "run"
    run.mkdir()
    data = load_translation_data(spec, run)
    assert data.info["pairs_read"] == 301 and data.info["empty_dropped"] == 1
    assert data.info["after_length_filter"] == {"train": 240, "val": 30, "test": 30} and len(data.test_src) == 20
    assert len(data.val_src) == 10 and (run / "spm.model").is_file()
    assert all(s[-1] == EOS_ID for s, _ in data.train) and len(data.train_text) == len(data.train)
    assert SENTINELS[0] in data.train_text[0][0] and "%s" not in data.train_text[0][0]  # protected for the model
    assert all("%s" in s for s in data.test_src)  # raw text for decoding and scoring
    assert load_translation_data(spec, run, reuse_tokenizer=True).train == data.train
    with pytest.raises(UserError, match="a split is empty"):
        load_translation_data(CorpusSpec.of(type("Cfg", (), {**vars(spec), "max_len": 1})), run)
    with pytest.raises(UserError, match="too few to split"):
        (tmp_path / "s.en").write_text("a b c\n", encoding="utf-8")
        (tmp_path / "s.zh").write_text("甲\n", encoding="utf-8")
        load_translation_data(CorpusSpec.of(type("Cfg", (), {**vars(spec), "data": str(tmp_path / "s")})), run)


# --- the real corpus, when built ---

@pytest.mark.skipif(not UI_TRANSLATIONS.is_current(),
                    reason="ui-translations not built or outdated (deepnotes data build ui-translations)")
def test_real_ui_translations():
    pairs = load_ui_translations(build=False)
    assert len(pairs) > 20000
    assert all(has_cjk(p.zh) and len(p.en.split()) >= 3 for p in pairs)
    assert len({p.en for p in pairs}) == len(pairs)
    assert {p.package for p in pairs} <= set(UI_TRANSLATIONS.packages)
    train, val, test = package_split(pairs)
    packages = [{p.package for p in s} for s in (train, val, test)]
    assert not (packages[0] & packages[1] or packages[0] & packages[2] or packages[1] & packages[2])
    assert 0.04 < len(test) / len(pairs) < 0.06 and 0.015 < len(val) / len(pairs) < 0.03
    manifest = json.loads((UI_TRANSLATIONS.cache_dir() / "manifest.json").read_text())
    assert manifest["total_pairs"] == len(pairs)
    assert [r["package"] for r in manifest["packages"]] == list(UI_TRANSLATIONS.packages)
