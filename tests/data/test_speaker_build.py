"""The speaker-utterances build (HW4's speaker set from the synthesizers): its grid and split rules, the log-mel
features against librosa-equivalent settings, and the small build (skipped without Debian's engines or the KJV)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepnotes.audio.features import LogMelSpectrogram
from deepnotes.data.speaker_build import (OPEN_SET_SPEAKERS, SPEAKER_UTTERANCES, SPEAKER_UTTERANCES_SMALL, _spread,
                                          default_voices, log_mel, read_shard, read_speaker_utterances,
                                          utterance_split, verse_draw, voice_split)
from deepnotes.data.speech_build import SPEAKER_SPLITS
from deepnotes.errors import DataError


def test_default_voices_open_set_and_settings():
    voices = default_voices()
    assert len(voices) == 94 and len({v.voice_id for v in voices}) == 94
    assert all(len(v.settings) == 3 for v in voices)
    open_set = [v for v in voices if voice_split(v) == "open"]
    assert {v.speaker for v in open_set} == OPEN_SET_SPEAKERS == {s for s, x in SPEAKER_SPLITS.items() if x == "test"}
    assert len(open_set) == 14 and {v.engine for v in open_set} == {"espeak-ng", "mbrola", "flite", "festival",
                                                                     "pico", "rhvoice"}
    assert len({v.name for v in voices if v.engine == "espeak-ng"}) == 4
    assert _spread(tuple(range(10))) == (2, 5, 7) and _spread((1, 2)) == (1, 2)
    closed = next(v for v in voices if voice_split(v) == "closed")
    splits = [[utterance_split(closed, k, j) for j in range(4)] for k in range(3)]
    assert splits == [["train"] * 4, ["validation", "test"] * 2, ["train"] * 4]  # tested at an unheard setting
    assert {utterance_split(open_set[0], k, 0) for k in range(3)} == {"open"}


def test_verse_draw_is_seeded_by_the_voice_and_distinct():
    a, b = default_voices()[:2]
    pool = list(range(1000, 3000))
    first = verse_draw(a, pool, 60)
    assert first == verse_draw(a, pool, 60) and len(set(first)) == 60 and set(first) <= set(pool)
    assert first != verse_draw(b, pool, 60)
    with pytest.raises(DataError, match="needs 60 verses"):
        verse_draw(a, pool[:10], 60)


def test_log_mel_frames_are_25_ms_windows_every_10_ms():
    t = np.arange(16000) / 16000
    x = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    f = log_mel(x)
    assert f.shape == (101, 40) and f.dtype == np.float32
    ref = LogMelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=40, fast=False)(torch.from_numpy(x / 32768.0))
    np.testing.assert_allclose(f, ref.T.numpy(), rtol=1e-3, atol=1e-2)  # float32 vs the float64 readable path
    band = int(np.argmax(f[50]))  # the band of 1 kHz is the loudest
    assert 8 <= band <= 14


def test_read_shard_names_a_broken_file(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="x.npz.*speaker-utterances"):
        read_shard(bad)


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPNOTES_DATA", str(data))
        from deepnotes.data.text import KJV
        if not KJV.tsv_path().is_file():
            try:
                KJV.build()
            except DataError as e:
                pytest.skip(f"the KJV text is missing: {e}")
        try:
            root = SPEAKER_UTTERANCES_SMALL.build(progress=False)
        except DataError as e:
            pytest.skip(f"the speech engines are missing: {e}")
    skipped = json.loads((root / "manifest.json").read_text())["skipped"]
    if skipped:
        pytest.skip(f"voices missing here (sudo make system-speech): {', '.join(skipped)}")
    return data, root


def test_small_build_splits_features_and_determinism(small_build, monkeypatch):
    data, root = small_build
    corpus = read_speaker_utterances(root)
    assert len(corpus.features) == 66 and all(f.shape[1] == 40 and f.dtype == torch.float32 for f in corpus.features)
    assert all(len(f) >= 150 for f in corpus.features)  # verses of 60+ characters: 1.5 s and more
    by_split = {s: {corpus.voices[i] for i in corpus.where(s)} for s in ("train", "validation", "test", "open")}
    assert by_split["train"] == by_split["validation"] == by_split["test"] and len(by_split["train"]) == 7
    assert len(by_split["open"]) == 4 and not by_split["open"] & by_split["train"]
    assert [len(corpus.where(s)) for s in ("train", "validation", "test", "open")] == [21, 14, 7, 24]
    assert {u.split("-s")[-1][0] for i, u in enumerate(corpus.utt_ids) if corpus.splits[i] == "test"} == {"1"}
    assert len(set(corpus.utt_ids)) == 66
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 21, "validation": 14, "test": 7, "open": 24} and manifest["skipped"] == {}
    monkeypatch.setenv("DEEPNOTES_DATA", str(data))
    assert SPEAKER_UTTERANCES_SMALL.status() == f"present at {root}" and SPEAKER_UTTERANCES.status() == "missing"
    # resumable and deterministic: a removed shard comes back byte for byte
    shard = sorted((root / "shards").glob("*.npz"))[3]
    before = shard.read_bytes()
    shard.unlink()
    (root / "manifest.json").unlink()
    assert SPEAKER_UTTERANCES_SMALL.status().startswith("partly built")
    SPEAKER_UTTERANCES_SMALL.build(progress=False)
    assert shard.read_bytes() == before
    assert json.loads((root / "manifest.json").read_text())["files"] == manifest["files"]
    SPEAKER_UTTERANCES_SMALL.build(progress=False)  # an update with the manifest there (its voices compared): no change
    assert shard.read_bytes() == before
    assert json.loads((root / "manifest.json").read_text())["files"] == manifest["files"]
