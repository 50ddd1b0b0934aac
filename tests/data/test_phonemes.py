"""phoneme-frames: the 41-class inventory and festival's two phone maps (radio, mrpa), frame labelling on hand
cases, the grid (split by speaker), the festival script and its parsing, shard files, the course's HW2 files (read
by path, including damaged ones), and the small build (layout, labels against festival's segments, both phone sets,
determinism, resumability, an outdated build updated)."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from deepnotes.data.paths import data_root
from deepnotes.data.splits import hw2_train_val_split
from deepnotes.data.phonemes import (
    FESTIVAL_PHONE_MAP,
    GRID_FILE,
    HOP_LENGTH,
    MRPA_PHONE_MAP,
    N_PHONE_CLASSES,
    PHONEME_FRAMES_SMALL,
    PHONES,
    TEST_VOICES,
    VOICE_PHONESETS,
    FrameCorpus,
    PhonemeFramesInfo,
    PhonemeGrid,
    PhonemeVoice,
    default_grid,
    festival_script,
    frame_labels,
    load_hw2_libriphone,
    npz_bytes,
    parse_festival_segments,
    phone_class,
    read_phoneme_frames,
    read_shard,
    scheme_string,
    small_grid,
    verify_phoneme_frames,
    write_hw2_libriphone,
)
from deepnotes.errors import DataError


# ----------------------------------------------------------------------------------- the 41 classes
def test_inventory_is_41_distinct_classes_with_silence_first():
    assert N_PHONE_CLASSES == len(PHONES) == len(set(PHONES)) == 41
    assert PHONES[0] == "sil" and list(PHONES[1:]) == sorted(PHONES[1:])
    cmu39 = ("aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z "
             "zh").split()
    assert set(PHONES) == set(cmu39) | {"sil", "ax"}


def test_festival_phone_map_folds_radio_phones():
    assert set(FESTIVAL_PHONE_MAP.values()) <= set(PHONES)
    for p in PHONES[1:]:
        assert phone_class(p) == PHONES.index(p)
    folds = {"axr": "er", "el": "l", "em": "m", "en": "n", "nx": "n", "hv": "hh", "dx": "t", "pau": "sil",
             "h#": "sil", "brth": "sil"}
    for radio, cls in folds.items():
        assert phone_class(radio) == PHONES.index(cls), radio
    assert phone_class("ax", "radio") == phone_class("ax")  # radio is the default
    # kal_diphone's "the seventh day"
    said = "pau dh ax s eh v ax n th d ey pau".split()
    assert [PHONES[phone_class(p)] for p in said] == "sil dh ax s eh v ax n th d ey sil".split()
    with pytest.raises(DataError, match="'qq'.*FESTIVAL_PHONE_MAP"):
        phone_class("qq")


def test_mrpa_phone_map_covers_festivals_british_phone_set():
    # festival's mrpa_phones.scm: 20 vowels, 24 consonants, the silence #; every one is said on 400 KJV verses
    mrpa = ("uh e a o i u ii uu oo aa @@ ai ei oi au ou e@ i@ u@ @ p t k b d g s z sh zh f v th dh ch jh h m n ng "
            "l y r w #").split()
    assert len(mrpa) == 45 and set(MRPA_PHONE_MAP) == set(mrpa)
    assert set(MRPA_PHONE_MAP.values()) == set(PHONES)  # every class is reachable from British speech too
    vowels = {"a": "ae", "aa": "aa", "ai": "ay", "au": "aw", "e": "eh", "e@": "eh", "ei": "ey", "i": "ih",
              "i@": "ih", "ii": "iy", "o": "aa", "oi": "oy", "oo": "ao", "ou": "ow", "u": "uh", "u@": "uh",
              "uh": "ah", "uu": "uw", "@": "ax", "@@": "er", "h": "hh", "#": "sil"}
    for p in mrpa:
        assert PHONES[phone_class(p, "mrpa")] == vowels.get(p, p), p
    # rab_diphone's "the seventh day": # dh @ s e v @ n th d ei #
    said = "# dh @ s e v @ n th d ei #".split()
    assert [PHONES[phone_class(p, "mrpa")] for p in said] == "sil dh ax s eh v ax n th d ey sil".split()
    # the same name, another sound: radio's uh is FOOT, mrpa's STRUT; radio names are not mrpa phones
    assert PHONES[phone_class("uh", "radio")] == "uh" and PHONES[phone_class("uh", "mrpa")] == "ah"
    with pytest.raises(DataError, match="'pau' \\(phone set mrpa\\), which MRPA_PHONE_MAP"):
        phone_class("pau", "mrpa")
    with pytest.raises(ValueError, match="phoneset"):
        phone_class("a", "sampa")


def test_frame_labels_by_centre_on_hand_cases():
    # phones [0, 20 ms) sil, [20, 50) ax; frames centred at 0, 10, ..., 60 ms
    assert frame_labels([0.02, 0.05], [0, 6], 7).tolist() == [0, 0, 6, 6, 6, 6, 6]
    # a boundary exactly on a centre goes to the phone that starts there; a zero-length phone gets no frame
    assert frame_labels([0.01, 0.01, 0.03], [1, 2, 3], 4).tolist() == [1, 3, 3, 3]
    assert frame_labels([0.5], [4], 0).tolist() == []
    assert frame_labels([0.02, 0.05], [0, 6], 7).dtype == np.uint8
    with pytest.raises(ValueError, match="non-decreasing"):
        frame_labels([0.05, 0.02], [0, 1], 3)
    with pytest.raises(ValueError, match="one length"):
        frame_labels([0.05], [0, 1], 3)
    with pytest.raises(ValueError, match="n_frames"):
        frame_labels([0.05], [0], -1)


# ----------------------------------------------------------------------------------- the grid
def test_default_grid_counts_and_split_by_speaker():
    g = default_grid()
    assert g.n_utterances == 2646
    texts = [f"verse number {i} " + "x" * (i % 70) for i in range(20000)]
    shards = g.shards(texts)
    per = {s: sum(len(sh.verse_index) for sh in shards if sh.split == s) for s in ("train", "validation", "test")}
    assert per == {"train": 1890, "validation": 216, "test": 540}
    voices = {s: {sh.voice.name for sh in shards if sh.split == s} for s in per}
    assert voices["test"] == set(TEST_VOICES) == {"ked_diphone", "us2_mbrola", "en1_mbrola"}
    assert voices["train"] == voices["validation"] == {"kal_diphone", "cmu_us_slt_arctic_hts", "us1_mbrola",
                                                       "us3_mbrola", "rab_diphone", "don_diphone"}
    assert not voices["test"] & (voices["train"] | voices["validation"])  # no test speaker is heard in training
    for split in per:  # both phone sets on both sides of the split
        assert {VOICE_PHONESETS[v] for v in voices[split]} == {"radio", "mrpa"}, split
    for name in voices["train"] | voices["test"]:  # one speaker a voice, balanced within each split
        n = {s: sum(len(sh.verse_index) for sh in shards if sh.voice.name == name and sh.split == s) for s in per}
        assert n == ({"train": 315, "validation": 36, "test": 0} if name in voices["train"] else
                     {"train": 0, "validation": 0, "test": 180}), name
    all_verses = [v for sh in shards for v in sh.verse_index]
    assert len(all_verses) == len(set(all_verses))  # every verse said once
    assert all(30 <= len(texts[v]) <= 90 for v in all_verses)
    assert all(len(sh.verse_index) <= g.shard_size for sh in shards)
    assert [sh.verse_index for sh in g.shards(texts)] == [sh.verse_index for sh in shards]  # seeded
    with pytest.raises(DataError, match="needs 2646 verses"):
        g.shards(texts[:100])
    assert PhonemeGrid.from_json(json.loads(json.dumps(g.to_json()))) == g


def test_voice_and_grid_errors():
    with pytest.raises(ValueError, match="unknown festival voice"):
        PhonemeVoice("robot", "train", ((1.0, 100),), 1)
    with pytest.raises(ValueError, match="no map"):  # a festival voice whose (Czech) phones have no class table
        PhonemeVoice("czech_ph", "train", ((1.0, 100),), 1)
    assert PhonemeVoice("en1_mbrola", "test", ((1.0, 110),), 1).phoneset == "mrpa"
    with pytest.raises(ValueError, match="pitch"):
        PhonemeVoice("cmu_us_slt_arctic_hts", "train", ((1.0, 100),), 1)
    with pytest.raises(ValueError, match="validation"):
        PhonemeVoice("ked_diphone", "test", ((1.0, 100),), 1, 2)
    v = PhonemeVoice("kal_diphone", "train", ((1.0, 100),), 1)
    with pytest.raises(ValueError, match="distinct"):
        PhonemeGrid((v, v))
    with pytest.raises(ValueError, match="shard_size"):
        PhonemeGrid((v,), shard_size=0)
    with pytest.raises(ValueError, match="not a phoneme-frames grid"):
        PhonemeGrid.from_json({"voices": [{"name": "kal_diphone"}]})


def test_festival_script_and_segment_parsing():
    v = PhonemeVoice("kal_diphone", "train", ((1.15, 90),), 2)
    script = festival_script(v, 0, ['He said "go"', "Amen."], "/tmp/w")
    assert script.startswith("(voice_kal_diphone)\n(format t \"@@PHONESET %s\\n\" (Parameter.get 'PhoneSet))")
    assert "Duration_Stretch 1.15" in script and "target_f0_mean 90" in script
    assert '(SynthText "He said \\"go\\"")' in script and '"/tmp/w/1.wav"' in script
    hts = PhonemeVoice("cmu_us_slt_arctic_hts", "train", ((0.9, None),), 1)
    assert '"-r" 0.9' in festival_script(hts, 0, ["Amen."], "/tmp/w")
    assert scheme_string("a\\b  \n c") == '"a\\\\b c"'
    out = "noise\n@@UTT 0\n@@SEG pau 0.2\n@@SEG ax 0.31\n@@UTT 1\n@@SEG pau 0.1\n"
    assert parse_festival_segments(out, 2) == [(["pau", "ax"], [0.2, 0.31]), (["pau"], [0.1])]
    with pytest.raises(DataError, match=r"utterance\(s\) \[1\]"):
        parse_festival_segments("@@UTT 0\n@@SEG pau 0.2\n@@UTT 1\n", 2)


# ----------------------------------------------------------------------------------- shard files
def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {"features": rng.standard_normal((5, 39)).astype(np.float32), "labels": np.arange(5, dtype=np.uint8),
            "lengths": np.array([2, 3], dtype=np.int32), "utt_ids": np.array(["a", "b"])}


def test_npz_bytes_are_deterministic_and_read_back(tmp_path):
    a = _arrays()
    data = npz_bytes(a)
    assert data == npz_bytes(_arrays()) and data != npz_bytes(_arrays(1))
    (tmp_path / "s.npz").write_bytes(data)
    back = read_shard(tmp_path / "s.npz", tuple(a))
    for k in a:
        np.testing.assert_array_equal(back[k], a[k])


def test_read_shard_names_a_damaged_file(tmp_path):
    bad = _arrays()
    bad["labels"] = bad["labels"][:4]
    (tmp_path / "short.npz").write_bytes(npz_bytes(bad))
    with pytest.raises(DataError, match=r"short\.npz: labels has 4 rows but the lengths add up to 5"):
        read_shard(tmp_path / "short.npz", tuple(bad))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz: cannot read"):
        read_shard(tmp_path / "junk.npz", ("labels",))
    with pytest.raises(DataError, match=r"manifest\.json"):
        read_phoneme_frames(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        read_phoneme_frames(tmp_path, "dev")


# ----------------------------------------------------------------------------------- HW2's own files
def _corpus(n_utts, seed, ids_prefix, labels=True):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (n_utts,), generator=g)
    F = int(lengths.sum())
    return FrameCorpus(torch.randn(F, 39, generator=g),
                       torch.randint(0, 41, (F,), generator=g) if labels else None, lengths,
                       tuple(f"{ids_prefix}-{i:04d}" for i in range(n_utts)))


def test_hw2_split_is_the_sample_codes():
    ids = [f"u{i}" for i in range(25)]
    expected = list(ids)
    random.seed(1337)  # the 2022 sample code
    random.shuffle(expected)
    state = random.getstate()
    train, val = hw2_train_val_split(ids)
    assert (train, val) == (expected[:20], expected[20:])
    assert random.getstate() == state  # the caller's random state is left alone
    with pytest.raises(ValueError, match="train_ratio"):
        hw2_train_val_split(ids, 0.0)


def test_hw2_files_round_trip(tmp_path):
    train, test = _corpus(10, 0, "19-198-0000"), _corpus(4, 1, "1089-134686")
    folder = write_hw2_libriphone(tmp_path / "libriphone", train, test)
    assert (folder / "feat" / "train" / "19-198-0000-0003.pt").is_file()
    first = (folder / "train_labels.txt").read_text().splitlines()[0].split()
    assert first[0] == "19-198-0000-0000" and len(first) == 1 + int(train.lengths[0])
    tr, va, te = (load_hw2_libriphone(folder, s) for s in ("train", "validation", "test"))
    want_tr, want_va = hw2_train_val_split(train.utt_ids)
    assert tr.utt_ids == tuple(want_tr) and va.utt_ids == tuple(want_va) and len(tr) == 8
    for part in (tr, va):
        for i, u in enumerate(part.utt_ids):
            x, y = part.utterance(i)
            x0, y0 = train.utterance(train.utt_ids.index(u))
            torch.testing.assert_close(x, x0, rtol=0, atol=0)
            assert torch.equal(y, y0)
    assert te.labels is None and te.utt_ids == test.utt_ids
    torch.testing.assert_close(te.features, test.features, rtol=0, atol=0)


def test_hw2_reader_names_the_bad_file(tmp_path):
    folder = write_hw2_libriphone(tmp_path / "lp", _corpus(5, 0, "a"), _corpus(3, 1, "b"))
    bad = folder / "feat" / "test" / "b-0001.pt"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(DataError, match=r"b-0001\.pt: cannot read it as a tensor file"):
        load_hw2_libriphone(folder, "test")
    torch.save(torch.zeros(4, dtype=torch.int64), bad)
    with pytest.raises(DataError, match=r"b-0001\.pt: expected a \(T, 39\) float tensor, got \(4,\)"):
        load_hw2_libriphone(folder, "test")
    bad.unlink()
    with pytest.raises(DataError, match=r"b-0001\.pt is missing \(listed in test_split\.txt\)"):
        load_hw2_libriphone(folder, "test")

    labels = folder / "train_labels.txt"
    lines = labels.read_text().splitlines()
    u, *ys = lines[0].split()
    labels.write_text("\n".join([f"{u} {' '.join(ys[:-1])}"] + lines[1:]) + "\n")  # one label short
    with pytest.raises(DataError, match=rf"{u}: {len(ys) - 1} labels in train_labels.txt but {len(ys)} frames"):
        load_hw2_libriphone(folder, "train", train_ratio=1.0)
    labels.write_text("\n".join([f"{u} {' '.join(ys[:-1])} x"] + lines[1:]) + "\n")
    with pytest.raises(DataError, match=r"train_labels\.txt line 1: labels must be integers"):
        load_hw2_libriphone(folder, "train")
    labels.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match=rf"has no line for {u}"):
        load_hw2_libriphone(folder, "train", train_ratio=1.0)
    with pytest.raises(DataError, match="not a folder"):
        load_hw2_libriphone(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="split"):
        load_hw2_libriphone(folder, "dev")


# ----------------------------------------------------------------------------------- the small build
def _data_with_kjv(tmp_path_factory):
    """A data root for this test session holding the KJV text (linked from the user's, when built there)."""
    root = tmp_path_factory.getbasetemp() / "phoneme-data"
    if not root.is_dir():
        root.mkdir()
        kjv = data_root() / "kjv"
        if (kjv / "kjv.tsv").is_file():
            (root / "kjv").symlink_to(kjv)
    return root


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    if shutil.which("festival") is None:
        pytest.skip("needs Debian's festival and voices (sudo make system-speech system-data; the packages: "
                    "deepnotes.data.phonemes.PHONEME_PACKAGES)")
    data = _data_with_kjv(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPNOTES_DATA", str(data))
        try:
            root = PHONEME_FRAMES_SMALL.build(progress=False)
        except DataError as e:
            pytest.skip(f"festival or a voice is missing: {e}")
    return data, root


def test_small_build_layout_labels_and_manifest(small_build):
    data, root = small_build
    assert root == data / "phoneme-frames-small"
    manifest = json.loads((root / "manifest.json").read_text())
    assert verify_phoneme_frames(root) == []
    assert manifest["phones"] == list(PHONES)
    assert manifest["counts"]["train"]["utterances"] == 20 and manifest["counts"]["validation"]["utterances"] == 6
    assert manifest["counts"]["test"]["utterances"] == 10
    assert len(manifest["files"]) == 9 + 1  # shards + README.md
    assert json.loads((root / GRID_FILE).read_text()) == manifest["grid"]
    test = read_phoneme_frames(root, "test")
    assert {u.split("-")[0] for u in test.utt_ids} == {"ked_diphone", "us2_mbrola", "en1_mbrola"}
    train = read_phoneme_frames(root, "train")
    assert {u.split("-")[0] for u in train.utt_ids} == {"kal_diphone", "cmu_us_slt_arctic_hts", "don_diphone"}
    assert manifest["voice_phonesets"]["don_diphone"] == manifest["voice_phonesets"]["en1_mbrola"] == "mrpa"
    assert train.features.shape[1] == 39 and manifest["counts"]["train"]["frames"] == train.n_frames
    for rel in manifest["files"]:
        if not rel.endswith(".npz"):
            continue
        voice = rel.split("/")[-1].rsplit("_s", 1)[0]
        phoneset = VOICE_PHONESETS[voice]
        shard = read_shard(root / rel)
        # every phone festival said is one of its set's (mrpa: #, @, ...; radio: pau, ax, ...)
        assert set(shard["phones"].tolist()) <= set(MRPA_PHONE_MAP if phoneset == "mrpa" else FESTIVAL_PHONE_MAP)
        # frames: centred 10 ms hops (don_diphone's 10 kHz resampled to 16 kHz too)
        np.testing.assert_array_equal(shard["lengths"], 1 + shard["n_samples"] // HOP_LENGTH)
        o = np.concatenate([[0], np.cumsum(shard["lengths"])])
        p = np.concatenate([[0], np.cumsum(shard["phone_counts"])])
        for u in range(len(shard["lengths"])):
            names, ends = shard["phones"][p[u]: p[u + 1]], shard["phone_ends"][p[u]: p[u + 1]]
            silence = "#" if phoneset == "mrpa" else "pau"
            assert names[0] == silence and names[-1] == silence, rel  # festival pads every utterance with silence
            y = shard["labels"][o[u]: o[u + 1]]
            assert y[0] == 0 and y[-1] == 0
            # labels: the festival segment that holds each frame centre, mapped by the voice's phone set
            t = np.arange(len(y)) * 0.01
            ends = np.round(ends.astype(np.float64), 6)  # festival printed them with %f; the shard keeps float32
            j = np.minimum(np.searchsorted(ends, t + 1e-9, side="right"), len(ends) - 1)
            np.testing.assert_array_equal(y, [phone_class(str(names[i]), phoneset) for i in j])
    don = read_shard(root / "shards" / "train" / "don_diphone_s0_000.npz", ("phones",))["phones"].tolist()
    assert "@" in don and "pau" not in don  # British phones
    assert len(np.unique(train.labels)) >= 30  # most of the inventory is said
    feats = train.features.numpy()
    assert np.isfinite(feats).all() and feats[:, :13].std(0).min() > 0.1


def test_build_is_deterministic_across_builds(small_build, tmp_path, monkeypatch):
    data, root = small_build
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    (tmp_path / "kjv").symlink_to(data / "kjv")
    # the small grid's first voice alone: its validation shard says the same verses
    kal = small_grid().voices[0]
    tiny = PhonemeFramesInfo(name="tiny", grid=PhonemeGrid((PhonemeVoice(kal.name, "train", kal.settings, 1,
                                                                         kal.val_sentences),), shard_size=8))
    other = tiny.build(progress=False)
    rel = "shards/validation/kal_diphone_s0_000.npz"
    assert (other / rel).read_bytes() == (root / rel).read_bytes()
    assert json.loads((other / "manifest.json").read_text())["files"][rel] == \
        json.loads((root / "manifest.json").read_text())["files"][rel]


def test_interrupted_build_resumes_without_redoing_work(small_build, monkeypatch):
    data, root = small_build
    monkeypatch.setenv("DEEPNOTES_DATA", str(data))
    assert PHONEME_FRAMES_SMALL.status() == f"present at {root}"
    before = (root / "manifest.json").read_bytes()
    removed = root / "shards" / "validation" / "cmu_us_slt_arctic_hts_s0_000.npz"
    kept = root / "shards" / "test" / "ked_diphone_s0_000.npz"
    removed.unlink()
    (root / "manifest.json").unlink()
    leftover = root / "shards" / "train" / ".kal_diphone_s0_001.npz.tmp"
    leftover.write_bytes(b"half a shard")
    stale = root / "shards" / "train" / "kal_diphone_s9_000.npz"  # from another grid
    stale.write_bytes(b"old")
    stamp = kept.stat().st_mtime_ns
    assert PHONEME_FRAMES_SMALL.status().startswith("partly built")
    with pytest.raises(DataError, match="missing"):
        PHONEME_FRAMES_SMALL.load("test", build=False)
    PHONEME_FRAMES_SMALL.build(progress=False)
    assert (root / "manifest.json").read_bytes() == before  # same bytes: the redone shard is identical
    assert removed.is_file() and not leftover.exists() and not stale.exists() and not (root / ".work").exists()
    assert kept.stat().st_mtime_ns == stamp  # not redone


def test_an_outdated_build_is_reported_and_updated_keeping_unchanged_shards(small_build, tmp_path, monkeypatch):
    data, root = small_build
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    (tmp_path / "kjv").symlink_to(data / "kjv")
    copy = tmp_path / "phoneme-frames-small"
    shutil.copytree(root, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    # a build of the first version (kal and slt train, ked test; its grid JSON had no phone sets)
    first = PhonemeGrid((PhonemeVoice("kal_diphone", "train", ((1.0, 105),), 14, 4),
                         PhonemeVoice("cmu_us_slt_arctic_hts", "train", ((1.0, None),), 6, 2),
                         PhonemeVoice("ked_diphone", "test", ((1.0, 105),), 10)), shard_size=8).to_json()
    for v in first["voices"]:
        del v["phoneset"]
    (copy / "manifest.json").write_text(json.dumps(dict(manifest, grid=first)))
    (copy / GRID_FILE).unlink()
    assert PHONEME_FRAMES_SMALL.status().startswith(f"outdated at {copy}")
    with pytest.raises(DataError, match="outdated"):
        PHONEME_FRAMES_SMALL.load("test", build=False)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(root / GRID_FILE, copy / GRID_FILE)
    assert PHONEME_FRAMES_SMALL.status() == f"present at {copy}"
    # the same folder for a grid where only don_diphone's pitch differs: only its shards are redone
    voices = tuple(PhonemeVoice(v.name, v.split, ((1.0, 120),), v.sentences, v.val_sentences)
                   if v.name == "don_diphone" else v for v in small_grid().voices)
    changed = PhonemeFramesInfo(name="phoneme-frames-small", grid=PhonemeGrid(voices, shard_size=8))
    assert changed.status().startswith("outdated")
    stamps = {p: p.stat().st_mtime_ns for p in copy.glob("shards/*/*.npz")}
    changed.build(progress=False)
    assert changed.status() == f"present at {copy}" and verify_phoneme_frames(copy) == []
    assert PHONEME_FRAMES_SMALL.status().startswith("outdated")
    for p, stamp in stamps.items():
        redone = p.name.startswith("don_diphone")
        assert (p.stat().st_mtime_ns != stamp) == redone, p.name
        assert (p.read_bytes() != (root / p.relative_to(copy)).read_bytes()) == redone, p.name
