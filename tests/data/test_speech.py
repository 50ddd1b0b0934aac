"""Speech Commands data: the WAV header checks (against Python's ``wave``), the folder loader on files the
tests write, and the offline ``speech-keywords`` build (small grid; skipped without the Debian engines)."""

from __future__ import annotations

import json
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from deepnotes.data.speech import (
    SPEECH_COMMANDS_V2_WORDS,
    engine_weights,
    engines_of,
    fit_length,
    load_background_noise,
    load_eval_folder,
    load_noise,
    load_speech_commands,
    load_split,
    parse_wav,
    read_split_list,
    read_wav,
    speech_commands_files,
    speech_folder,
    wav_bytes,
)
from deepnotes.data import speech_build
from deepnotes.data.speech_build import (
    ENGINES,
    ESPEAK_HELD_OUT_ACCENTS,
    PHONE_MAPS,
    SPEECH_KEYWORDS_SMALL,
    SPEAKERS,
    SPEECH_PACKAGES,
    V1_TEST_VOICES,
    SpeechGrid,
    SpeechKeywordsInfo,
    SynthVoice,
    check_engines,
    cmu_pronunciations,
    czech_voices,
    default_grid,
    lexicon_entry,
    missing_voices,
    pocketsphinx_recognize,
    run_jobs,
    small_grid,
    synthesize,
    split_counts,
    to_clip,
    verify_manifest,
)
from deepnotes.errors import DataError, UserError

ENGINES_PRESENT = all(shutil.which(p) for p in ("espeak-ng", "mbrola", "flite", "festival", "pico2wave",
                                                "RHVoice-test", "sox"))
needs_engines = pytest.mark.skipif(not ENGINES_PRESENT, reason="needs Debian's espeak-ng mbrola flite festival "
                                   "pico2wave RHVoice-test sox (sudo make system-speech)")
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox (apt-get install sox)")


def write_wave(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1, width: int = 2) -> Path:
    """A WAV file written by Python's own ``wave`` module (the reference writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples).tobytes())
    return path


def tone(n: int, freq: float, rate: int = 16000, amp: float = 0.5) -> np.ndarray:
    return (amp * 32767 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.int16)


# ----------------------------------------------------------------------------------------------------------
# WAV header checks
# ----------------------------------------------------------------------------------------------------------


def test_wav_bytes_round_trip_agrees_with_python_wave(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-32768, 32768, size=1234).astype(np.int16)
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(x, 22050))
    with wave.open(str(path)) as w:  # the reference reader
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 22050, 1234)
        ref = np.frombuffer(w.readframes(1234), "<i2")
    y, rate = read_wav(path)
    assert rate == 22050 and y.dtype == np.float32 and y.shape == (1234,)
    np.testing.assert_array_equal(y * 32768, ref.astype(np.float32))
    with pytest.raises(ValueError, match="int16"):
        wav_bytes(np.array([40000]))


def test_parse_wav_walks_extra_chunks():
    x = tone(100, 440)
    base = wav_bytes(x)
    # insert an odd-sized LIST chunk (with its pad byte) between fmt and data
    extra = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\x00"
    data = base[:36] + extra + base[36:]
    data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
    y, rate = parse_wav(data, "x.wav")
    assert rate == 16000
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("case, match", [
    ("magic", r"bad\.wav: not a WAV file: expected 'RIFF'"),
    ("wave", r"bad\.wav: RIFF file of type b'AVI ', not 'WAVE'"),
    ("stereo", r"bad\.wav: 2 channels; expected mono"),
    ("8bit", r"bad\.wav: 8-bit samples; expected 16-bit"),
    ("float", r"bad\.wav: audio format 3 \(IEEE float\) is not PCM"),
    ("truncated", r"bad\.wav: truncated: the data chunk declares 32000 bytes but only 1000 follow"),
    ("nodata", r"bad\.wav: no 'data' chunk"),
    ("blockalign", r"bad\.wav: inconsistent header"),
])
def test_read_wav_names_the_file_and_the_problem(tmp_path, case, match):
    path = tmp_path / "bad.wav"
    good = wav_bytes(tone(16000, 300))
    if case == "magic":
        path.write_bytes(b"RIFX" + good[4:])
    elif case == "wave":
        path.write_bytes(good[:8] + b"AVI " + good[12:])
    elif case == "stereo":
        write_wave(path, np.repeat(tone(100, 300), 2), channels=2)
    elif case == "8bit":
        write_wave(path, np.full(100, 128, np.uint8), width=1)
    elif case == "float":
        path.write_bytes(good[:20] + struct.pack("<H", 3) + good[22:])
    elif case == "truncated":
        path.write_bytes(good[:44 + 1000])
    elif case == "nodata":
        path.write_bytes(b"RIFF" + struct.pack("<I", 28) + good[8:36])
    elif case == "blockalign":
        path.write_bytes(good[:32] + struct.pack("<H", 4) + good[34:])
    with pytest.raises(DataError, match=match):
        read_wav(path)


def test_fit_length_pads_at_the_end_and_cuts():
    x = np.arange(1, 6, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 8), [1, 2, 3, 4, 5, 0, 0, 0])
    np.testing.assert_array_equal(fit_length(x, 3), [1, 2, 3])


# ----------------------------------------------------------------------------------------------------------
# The folder loader
# ----------------------------------------------------------------------------------------------------------


def make_folder(root: Path) -> dict[str, np.ndarray]:
    """A tiny Speech Commands folder: yes/no by speakers aaaa (train), bbbb (validation), cccc (test)."""
    clips = {}
    for wi, word in enumerate(("no", "yes")):
        for si, spk in enumerate(("aaaa", "bbbb", "cccc")):
            n = 8000 + 4000 * si  # 0.5 s, 0.75 s, 1 s
            x = tone(n, 200 + 100 * wi + 30 * si)
            rel = f"{word}/{spk}_nohash_0.wav"
            write_wave(root / rel, x)
            clips[rel] = x
    (root / "validation_list.txt").write_text("no/bbbb_nohash_0.wav\nyes/bbbb_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/cccc_nohash_0.wav\n\nyes/cccc_nohash_0.wav\n")
    write_wave(root / "_background_noise_" / "white_noise.wav", tone(48000, 1000))
    (root / "README.md").write_text("not a class")
    return clips


def test_loader_splits_labels_and_padding(tmp_path):
    clips = make_folder(tmp_path)
    x, y, classes, files = load_speech_commands(tmp_path, "train")
    assert classes == ["no", "yes"] and files == ["no/aaaa_nohash_0.wav", "yes/aaaa_nohash_0.wav"]
    assert x.shape == (2, 16000) and x.dtype == torch.float32 and y.tolist() == [0, 1]
    ref = clips["yes/aaaa_nohash_0.wav"].astype(np.float32) / 32768
    np.testing.assert_array_equal(x[1, :8000].numpy(), ref)
    assert torch.all(x[1, 8000:] == 0)  # zero-padded at the end
    _, yv, _, fv = load_speech_commands(tmp_path, "validation")
    _, yt, _, ft = load_speech_commands(tmp_path, "test")
    assert fv == ["no/bbbb_nohash_0.wav", "yes/bbbb_nohash_0.wav"] and ft[0] == "no/cccc_nohash_0.wav"
    assert set(files).isdisjoint(fv) and set(files).isdisjoint(ft) and yt.tolist() == [0, 1]
    # a subset of words, in the caller's label order
    _, ys, cs, fs = load_speech_commands(tmp_path, "test", words=["yes"])
    assert cs == ["yes"] and fs == ["yes/cccc_nohash_0.wav"] and ys.tolist() == [0]
    with pytest.raises(DataError, match="no folder for the word"):
        load_speech_commands(tmp_path, words=["yes", "maybe"])
    with pytest.raises(ValueError, match="split must be one of"):
        load_speech_commands(tmp_path, "dev")
    noise = load_background_noise(tmp_path)
    assert list(noise) == ["white_noise"] and noise["white_noise"].shape == (48000,)


def test_loader_cuts_long_clips_and_resamples_other_rates(tmp_path):
    make_folder(tmp_path)
    long = tone(20000, 500)
    write_wave(tmp_path / "no" / "dddd_nohash_0.wav", long)
    rate = 44100
    write_wave(tmp_path / "yes" / "eeee_nohash_0.wav", tone(rate, 440, rate), rate=rate)
    x, y, classes, files = load_speech_commands(tmp_path, "train")
    i_long, i_res = files.index("no/dddd_nohash_0.wav"), files.index("yes/eeee_nohash_0.wav")
    np.testing.assert_array_equal(x[i_long].numpy(), long[:16000].astype(np.float32) / 32768)
    res = x[i_res].numpy()
    assert res.shape == (16000,) and np.abs(res[-200:]).max() > 0.3  # 1 s at 44.1 kHz -> exactly 16000 samples
    spectrum = np.abs(np.fft.rfft(res * np.hanning(16000)))
    assert abs(np.argmax(spectrum) - 440) <= 1  # the tone keeps its frequency (1 Hz bins)


def test_bad_files_raise_or_are_skipped_and_logged(tmp_path):
    make_folder(tmp_path)
    write_wave(tmp_path / "yes" / "ffff_nohash_0.wav", np.repeat(tone(100, 300), 2), channels=2)
    (tmp_path / "no" / "gggg_nohash_0.wav").write_bytes(wav_bytes(tone(16000, 300))[:500])
    with pytest.raises(DataError, match=r"gggg_nohash_0\.wav: truncated"):
        load_speech_commands(tmp_path, "train")
    logged = []
    x, y, classes, files = load_speech_commands(tmp_path, "train", skip_bad=True, log=logged.append)
    assert files == ["no/aaaa_nohash_0.wav", "yes/aaaa_nohash_0.wav"] and x.shape == (2, 16000)
    assert len(logged) == 2 and "gggg_nohash_0.wav: truncated" in logged[0]
    assert "ffff_nohash_0.wav: 2 channels" in logged[1]
    # a listed file that is not there
    with open(tmp_path / "testing_list.txt", "a") as f:
        f.write("yes/zzzz_nohash_0.wav\n")
    with pytest.raises(DataError, match=r"testing_list\.txt names yes/zzzz_nohash_0\.wav"):
        speech_commands_files(tmp_path, "test")
    logged.clear()
    files, _ = speech_commands_files(tmp_path, "test", skip_bad=True, log=logged.append)
    assert len(files) == 2 and "zzzz" in logged[0]


def test_missing_folder_and_lists(tmp_path):
    with pytest.raises(DataError, match="is not a folder.*deepnotes data build speech-keywords"):
        load_speech_commands(tmp_path / "absent")
    make_folder(tmp_path)
    (tmp_path / "validation_list.txt").unlink()
    with pytest.raises(DataError, match=r"validation_list\.txt is missing"):
        load_speech_commands(tmp_path)
    (tmp_path / "validation_list.txt").write_text("yes\n")
    with pytest.raises(DataError, match=r"validation_list\.txt line 1: expected 'word/file\.wav'"):
        read_split_list(tmp_path / "validation_list.txt")


def test_splits_in_memory_eval_folders_and_noise(tmp_path):
    clips = make_folder(tmp_path)
    train = load_split(tmp_path, "train")
    assert train.clips.dtype == torch.int16 and train.classes == ["no", "yes"] and train.root == tmp_path
    ref = np.round(clips["yes/aaaa_nohash_0.wav"].astype(np.float32) / 32768 * 32768).astype(np.int16)
    np.testing.assert_array_equal(train.clips[1, :8000].numpy(), ref)  # int16 samples come back exactly
    test = load_split(tmp_path, "test", ["yes", "no"])  # the caller's label order
    assert test.files == ["no/cccc_nohash_0.wav", "yes/cccc_nohash_0.wav"] and test.labels.tolist() == [1, 0]
    assert test.subset(1).files == ["no/cccc_nohash_0.wav"] and test.subset(0) is test and test.subset(5) is test
    # an eval folder: its test split (testing_list.txt), labels in the run's class order
    ev = load_eval_folder(tmp_path, ["yes", "no", "up"])
    assert ev.files == test.files and ev.labels.tolist() == [1, 0] and torch.equal(ev.clips, test.clips)
    (tmp_path / "testing_list.txt").unlink()  # without the list: every WAV of its word folders
    assert len(load_eval_folder(tmp_path, ["no", "yes"]).files) == 6
    with pytest.raises(UserError, match="yes are not among"):
        load_eval_folder(tmp_path, ["no", "up"])
    logged: list[str] = []
    assert [len(n) for n in load_noise(tmp_path, logged.append)] == [48000] and not logged
    shutil.rmtree(tmp_path / "_background_noise_")
    assert load_noise(tmp_path, logged.append) == [] and "augmentation is off" in logged[0]


def test_engines_of_reads_the_manifest_and_engine_weights_give_each_engine_its_share(tmp_path):
    voices = [SynthVoice("flite", "kal"), SynthVoice("flite", "rms"), SynthVoice("espeak-ng", "en-us", "m1")]
    files = [voices[i].clip_path("yes", 0) for i in (0, 0, 1, 1, 1, 2)] + ["yes/unknown_nohash_0.wav"]
    assert engines_of(tmp_path, files) is None  # no manifest.json: a real Speech Commands folder
    with pytest.raises(UserError, match="manifest.json"):
        engine_weights(tmp_path, files, 0.5)
    (tmp_path / "manifest.json").write_text(json.dumps({"grid": SpeechGrid(tuple(voices)).to_json()}))
    engines = engines_of(tmp_path, files)
    assert engines == ["flite"] * 5 + ["espeak-ng", "other"]
    counts = {"flite": 5, "espeak-ng": 1, "other": 1}
    for power in (0.0, 0.5, 1.0):
        w, shares = engine_weights(tmp_path, files, power)
        want = {e: n ** power / sum(m ** power for m in counts.values()) for e, n in counts.items()}
        for e in counts:
            got = sum(float(wi) for wi, ei in zip(w, engines) if ei == e) / float(w.sum())
            assert got == pytest.approx(want[e]) and shares[e] == pytest.approx(want[e])


def test_speech_folder_names_the_fix(tmp_path):
    assert speech_folder("speech-keywords", str(tmp_path)) == tmp_path  # --data-dir wins
    with pytest.raises(UserError, match="--data-dir .* is not a folder"):
        speech_folder("speech-keywords", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="not a speech dataset"):
        speech_folder("mnist-subset")
    with pytest.raises(UserError, match="unknown dataset"):
        speech_folder("no-such-set")


def test_run_jobs_counts_results_and_cleans_up_after_a_failure(tmp_path):
    class Bar:
        n, closed = 0, False

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    bar, work = Bar(), tmp_path / ".work"
    work.mkdir()
    run_jobs([(1,), (2,), (3,)], lambda k: k, 2, bar, work)
    assert bar.n == 6 and bar.closed and not work.exists()

    def fail(k):
        if k == 2:
            raise DataError("job 2 failed")
        return k

    bar = Bar()
    work.mkdir()
    with pytest.raises(DataError, match="job 2"):
        run_jobs([(1,), (2,)], fail, 1, bar, work)
    assert bar.closed and not work.exists()


# ----------------------------------------------------------------------------------------------------------
# The grid (no engines needed)
# ----------------------------------------------------------------------------------------------------------


def test_default_grid_size_and_voice_split():
    grid = default_grid()
    assert grid.n_clips >= 25000 and grid.words == SPEECH_COMMANDS_V2_WORDS
    split_of_speaker: dict[str, str] = {}
    for v in grid.voices:
        assert split_of_speaker.setdefault(v.speaker, v.split) == v.split  # a speaker is in one split
    # the same recorded speaker behind several engines stays on one side
    assert {v.engine for v in grid.voices if v.speaker == "slt"} == {"flite", "festival", "rhvoice"}
    assert {v.split for v in grid.voices if v.speaker == "us2"} == {"test"}
    assert {v.engine for v in grid.voices if v.speaker == "us2"} == {"mbrola", "festival"}
    counts = split_counts(grid)
    assert sum(c["clips"] for c in counts.values()) == grid.n_clips
    for split, lo, hi in (("train", 0.6, 0.7), ("validation", 0.12, 0.2), ("test", 0.15, 0.25)):
        assert lo <= counts[split]["clips"] / grid.n_clips <= hi
    assert all(counts["train"]["by_engine"][e] > 0 and counts["test"]["by_engine"][e] > 0 for e in ENGINES)
    recorded = {v.speaker: v for v in grid.voices if v.engine != "espeak-ng"}
    for split in ("train", "validation", "test"):
        mine = [s for s, v in recorded.items() if v.split == split]
        assert {SPEAKERS[s][0] for s in mine} == {"male", "female"}
        accents = {SPEAKERS[s][1] for s in mine}
        assert accents & {"US", "British", "Scottish"} and accents - {"US", "British", "Scottish"}
    test_speakers = {v.speaker for v in grid.voices if v.split == "test" and v.engine != "espeak-ng"}
    assert len(test_speakers) >= 8 and len({v.engine for v in grid.voices if v.split == "test"}) >= 4
    # the first build's test voices are still there with their settings: its test clips are unchanged
    old = {"flite:awb": 35, "festival:ked_diphone": 24, **{f"espeak-ng:{a}+m7": 4 for a in ESPEAK_HELD_OUT_ACCENTS}}
    assert set(V1_TEST_VOICES) == set(old)
    assert {v.voice_id: len(v.settings) for v in grid.voices if v.voice_id in old} == old
    paths = [p for p, _ in grid.clips()]
    assert len(set(paths)) == len(paths) == grid.n_clips
    assert SynthVoice("flite", "kal16").voice_hash == "acc1726f"  # sha256("flite:kal16")[:8]
    with pytest.raises(ValueError, match="variant is required"):
        SynthVoice("espeak-ng", "en-us")
    with pytest.raises(ValueError, match="unknown pico voice 'en-AU'"):
        SynthVoice("pico", "en-AU")
    with pytest.raises(ValueError, match="distinct"):
        SpeechGrid((SynthVoice("flite", "kal"), SynthVoice("flite", "kal")))


def test_czech_voices_train_only_with_their_own_pitch_units():
    czech = czech_voices()
    assert [v.speaker for v in czech] == ["machac", "ph"] and {v.split for v in czech} == {"train"}
    assert {v.kind for v in czech} == {"festival-mapped"} and all(len(v.settings) == 24 for v in czech)
    assert not {v.voice_id for v in czech} & {v.voice_id for v in default_grid().voices}
    grid = SpeechGrid(default_grid().voices + czech)
    assert split_counts(grid)["train"]["clips"] == split_counts(default_grid())["train"]["clips"] + 2 * 24 * 35


def test_lexicon_entry_maps_cmu_phones_onto_the_voice():
    three = ((("th", "r", "iy"), 1),)
    assert lexicon_entry("three", three, "czech_machac") == "(lex.add.entry '(\"three\" nil (((f r i:) 1))))"
    sheila = ((("sh", "iy"), 1), (("l", "ax"), 0))
    assert lexicon_entry("sheila", sheila, "czech_ph") == "(lex.add.entry '(\"sheila\" nil (((s~ i:) 1) ((l e) 0))))"
    # Italian marks the stressed vowel on the phone; /h/ is dropped
    house = ((("hh", "aw", "s"), 1),)
    assert lexicon_entry("house", house, "pc_diphone") == "(lex.add.entry '(\"house\" nil (((a1 w s) 1))))"
    arpabet = set("aa ae ah ao aw ax ay eh er ey ih iy ow oy uh uw b ch d dh f g hh jh k l m n ng p r s sh t th v w y "
                  "z zh".split())  # the 39 phones of CMUdict plus festival's schwa ax
    for voice, (table, _) in PHONE_MAPS.items():
        assert set(table) == arpabet, voice
    with pytest.raises(KeyError):
        lexicon_entry("three", three, "kal_diphone")


def _festival_has(voice: str) -> bool:
    if shutil.which("festival") is None:
        return False
    import subprocess

    out = subprocess.run(["festival", "-b", "(print (voice.list))"], capture_output=True, timeout=120).stdout
    return voice.encode() in out


@needs_engines
def test_cmu_pronunciations_from_festlex_cmu():
    prons = cmu_pronunciations(("sheila", "three"))
    assert prons["sheila"] == ((("sh", "iy"), 1), (("l", "ax"), 0))
    assert prons["three"] == ((("th", "r", "iy"), 1),)


@needs_engines
@pytest.mark.skipif(shutil.which("pocketsphinx_batch") is None, reason="needs pocketsphinx pocketsphinx-en-us")
def test_czech_voice_says_the_english_words(tmp_path, monkeypatch):
    """The mapped lexicon makes czech_machac intelligible to pocketsphinx (83 % measured; its own Czech
    letter-to-sound rules: 51 %), and the builder's pitch setting moves its F0."""
    if not _festival_has("czech_machac"):
        pytest.skip("needs festvox-czech-machac")
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    voice = SynthVoice("festival", "czech_machac", "", ((1.0, 75), (1.0, 150)))
    info = SpeechKeywordsInfo(name="czech", grid=SpeechGrid((voice,), noise_seconds=1))
    root = info.build(progress=False)
    words = list(SPEECH_COMMANDS_V2_WORDS)
    hyps = pocketsphinx_recognize([root / voice.clip_path(w, 0) for w in words], words)
    assert sum(h == w for h, w in zip(hyps, words)) >= 25

    def f0(path):  # autocorrelation peak over 50-400 Hz in the loudest 40 ms
        x = read_wav(path)[0].astype(np.float64)
        n = 640
        start = int(np.argmax([np.sum(x[i:i + n] ** 2) for i in range(0, len(x) - n, n)])) * n
        seg = x[start:start + n]
        ac = np.correlate(seg, seg, "full")[n - 1:]
        return 16000 / (40 + int(np.argmax(ac[40:320])))

    low, high = f0(root / voice.clip_path("seven", 0)), f0(root / voice.clip_path("seven", 1))
    assert 1.5 < high / low < 2.5


def test_missing_sox_names_the_apt_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match=r"missing `sox` \(package sox libsox-fmt-all\).*sudo make system-speech"):
        check_engines(small_grid())


def test_a_voice_whose_program_or_data_is_missing_is_named_with_its_package(tmp_path, monkeypatch):
    hidden = {"pico2wave", "flite", "festival", "espeak-ng", "mbrola"}
    monkeypatch.setattr(shutil, "which", lambda p: None if p in hidden else f"/usr/bin/{p}")
    monkeypatch.setattr(speech_build, "RHVOICE_DATA", tmp_path)  # no voice folders there
    missing = missing_voices(small_grid())
    assert len(missing) == len(small_grid().voices)
    assert missing["pico:en-US"] == "no `pico2wave` (package libttspico-utils)"
    assert missing["mbrola:mb-us2"] == "no `espeak-ng` (package espeak-ng)"
    assert missing["rhvoice:clb"] == f"no {tmp_path / 'clb'} (package rhvoice-english)"
    with pytest.raises(DataError, match="none of the 17 voices can be made"):
        check_engines(small_grid())


def test_espeak_voices_name_the_voice_file_where_the_language_name_drops_the_variant():
    gb = SynthVoice("espeak-ng", "en-gb", "m3", ((160, 50),))
    assert gb.espeak_voice == "gmw/en+m3" and SynthVoice("espeak-ng", "en-us", "m3").espeak_voice == "en-us+m3"
    assert SynthVoice("flite", "kal").espeak_voice is None and "espeak_voice" not in SynthVoice("flite", "kal").to_json()
    # a manifest of the first builds (no espeak_voice): its en-gb clips are redone, other voices are kept
    older = {k: v for k, v in gb.to_json().items() if k != "espeak_voice"}
    assert speech_build.audio_key(older) != speech_build.audio_key(gb.to_json())
    flite = SynthVoice("flite", "kal").to_json()
    assert speech_build.audio_key({**flite, "split": "test", "packages": []}) == speech_build.audio_key(flite)
    kal = SynthVoice("flite", "kal")
    built = [older, {**kal.to_json(), "split": "test"}, "not a voice"]
    assert speech_build.changed_voices(built, [gb, kal, SynthVoice("flite", "awb")]) == [gb]  # awb: not built yet
    assert speech_build.changed_voices(None, [gb]) == [] and speech_build.changed_voices([gb.to_json()], [gb]) == []


@needs_engines
def test_every_espeak_variant_says_its_own_audio(tmp_path):
    clips = {}
    for accent in ESPEAK_HELD_OUT_ACCENTS:
        for variant in ("m1", "f5"):
            v = SynthVoice("espeak-ng", accent, variant, ((160, 50),))
            (tmp_path / v.voice_hash).mkdir()
            clips[v.voice_id] = synthesize(v, 0, ["up"], tmp_path / v.voice_hash)["up"].read_bytes()
    assert len(set(clips.values())) == len(clips) == 8


@needs_sox
def test_to_clip_centres_short_words_and_compresses_long_ones(tmp_path):
    quiet = np.zeros(1600, np.int16)
    short = tmp_path / "short.wav"
    short.write_bytes(wav_bytes(np.concatenate([quiet, tone(4000, 300), quiet])))
    clip, squeezed = to_clip(short)
    nz = np.flatnonzero(clip)
    assert clip.shape == (16000,) and clip.dtype == np.int16 and not squeezed
    assert abs(nz[0] - (15999 - nz[-1])) <= 2 and 3900 < nz[-1] - nz[0] + 1 < 5000  # trimmed, centred
    long = tmp_path / "long.wav"
    long.write_bytes(wav_bytes(tone(24000, 300)))
    clip, squeezed = to_clip(long)
    assert squeezed and clip.shape == (16000,)
    assert np.abs(clip[:200]).max() == 0 and np.abs(clip[8000:8400]).max() > 0


# ----------------------------------------------------------------------------------------------------------
# The build (small grid)
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    if not ENGINES_PRESENT:
        pytest.skip(f"needs Debian's speech engines (sudo make system-speech: {' '.join(SPEECH_PACKAGES)})")
    data = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPNOTES_DATA", str(data))
        root = SPEECH_KEYWORDS_SMALL.build(progress=False)
    return data, root


@needs_engines
def test_small_build_layout_format_and_manifest(small_build):
    data, root = small_build
    grid = small_grid()
    assert root == data / "speech-keywords-small"
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert words == sorted(SPEECH_COMMANDS_V2_WORDS)
    wavs = sorted(root.glob("*/*_nohash_*.wav"))
    assert len(wavs) == grid.n_clips == 595
    for p in wavs[::7]:
        with wave.open(str(p)) as w:  # 16 kHz mono 16-bit, 1.000 s
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, 16000)
        x, _ = read_wav(p)
        assert np.abs(x).max() > 0.01  # not silent
    val, test = read_split_list(root / "validation_list.txt"), read_split_list(root / "testing_list.txt")
    hashes = {s: {r.split("/")[1].split("_nohash_")[0] for r in rels} for s, rels in (("val", val), ("test", test))}
    train_files, _ = speech_commands_files(root, "train")
    hashes["train"] = {r.split("/")[1].split("_nohash_")[0] for r in train_files}
    assert not (hashes["train"] & hashes["val"]) and not (hashes["train"] & hashes["test"])
    assert not (hashes["val"] & hashes["test"])
    assert (len(train_files), len(val), len(test)) == (280, 140, 175)
    assert hashes["test"] == {v.voice_hash for v in grid.voices if v.split == "test"}
    manifest = json.loads((root / "manifest.json").read_text())
    assert len(manifest["files"]) == 595 + 3 + 4 and verify_manifest(root) == [] and manifest["skipped"] == {}
    assert manifest["counts"]["validation"]["by_engine"] == {"espeak-ng": 35, "mbrola": 0, "flite": 35,
                                                             "festival": 35, "pico": 0, "rhvoice": 35}
    v1 = read_split_list(root / "testing_list_v1.txt")
    old = {v.voice_hash for v in grid.voices if v.voice_id in V1_TEST_VOICES}
    assert len(v1) == 105 and set(v1) < set(test) and {r.split("/")[1].split("_nohash_")[0] for r in v1} == old
    readme = (root / "README.md").read_text()
    assert "| `13fdc4ec` | pico:en-US | pico-en-US | female, US | 1 | libttspico-utils |" in readme
    assert manifest["engines"]["sox"].startswith("SoX v")
    x, y, classes, files = load_speech_commands(root, "validation")
    assert x.shape == (140, 16000) and classes == sorted(SPEECH_COMMANDS_V2_WORDS) and files == sorted(val)
    noise = load_background_noise(root)
    assert sorted(noise) == ["brown_noise", "pink_noise", "white_noise"] and noise["pink_noise"].shape == (5 * 16000,)


@needs_engines
def test_interrupted_build_resumes_without_redoing_work(small_build, monkeypatch):
    data, root = small_build
    monkeypatch.setenv("DEEPNOTES_DATA", str(data))
    assert SPEECH_KEYWORDS_SMALL.status() == f"present at {root}"
    before = (root / "manifest.json").read_bytes()
    removed = sorted(root.glob("*/*_nohash_*.wav"))[::97]
    kept = sorted(root.glob("*/*_nohash_*.wav"))[1]
    for p in removed:
        p.unlink()
    (root / "manifest.json").unlink()
    leftover = root / "yes" / f".{removed[0].name}.tmp"
    leftover.write_bytes(b"half a clip")
    stamp = kept.stat().st_mtime_ns
    assert SPEECH_KEYWORDS_SMALL.status().startswith("partly built")
    SPEECH_KEYWORDS_SMALL.build(progress=False)
    assert (root / "manifest.json").read_bytes() == before  # same bytes: the redone clips are identical
    assert all(p.is_file() for p in removed) and not leftover.exists() and not (root / ".work").exists()
    assert kept.stat().st_mtime_ns == stamp  # not redone


@needs_engines
def test_build_is_deterministic_across_runs(small_build, tmp_path, monkeypatch):
    _, root = small_build
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    full = small_grid().voices
    tiny = SpeechKeywordsInfo(name="tiny", grid=SpeechGrid((full[0], full[2], full[3], full[6], full[8]),
                                                           words=("up", "visual"), noise_seconds=5))
    other = tiny.build(progress=False)
    first = json.loads((root / "manifest.json").read_text())["files"]
    second = json.loads((other / "manifest.json").read_text())["files"]
    shared = [k for k in second if k.endswith(".wav")]
    assert len(shared) == 5 * 2 + 3
    assert {k: second[k] for k in shared} == {k: first[k] for k in shared}


@needs_engines
def test_a_build_from_another_grid_is_updated_not_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    kept = SynthVoice("espeak-ng", "en-us", "m1", ((160, 50),))
    changed = SynthVoice("espeak-ng", "en-us", "m2", ((160, 50),))
    old = SpeechKeywordsInfo(name="kw", grid=SpeechGrid((kept, changed), words=("up", "no"), noise_seconds=1))
    root = old.build(progress=False)
    stamp = (root / kept.clip_path("up", 0)).stat().st_mtime_ns
    before = (root / changed.clip_path("up", 0)).read_bytes()
    added = SynthVoice("espeak-ng", "en-gb", "m3", ((160, 50),))
    new = SpeechKeywordsInfo(name="kw", grid=SpeechGrid(
        (kept, SynthVoice("espeak-ng", "en-us", "m2", ((100, 20),)), added), words=("up", "no"), noise_seconds=1))
    assert old.is_current() and not new.is_current() and new.status().startswith("outdated")
    assert new.build(progress=False) == root and new.is_current() and not old.is_current()
    assert (root / kept.clip_path("up", 0)).stat().st_mtime_ns == stamp  # kept, not redone
    assert (root / changed.clip_path("up", 0)).read_bytes() != before  # same file name, new settings: redone
    assert (root / added.clip_path("no", 0)).is_file() and verify_manifest(root) == []


@needs_engines
def test_a_voice_missing_here_is_skipped_with_a_warning_then_added_once_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path / "data"))
    espeak, pico = SynthVoice("espeak-ng", "en-us", "m1", ((160, 50),)), SynthVoice("pico", "en-GB", "", ((100, 100),))
    info = SpeechKeywordsInfo(name="kw", grid=SpeechGrid((espeak, pico), words=("up", "no"), noise_seconds=1))
    monkeypatch.setattr(speech_build, "PICO_DATA", tmp_path)  # as if libttspico-data were not installed
    root = info.build(progress=False)
    assert "warning: kw: skipping pico:en-GB" in capsys.readouterr().err
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["skipped"] == {"pico:en-GB": f"no {tmp_path / 'en-GB_ta.bin'} (package libttspico-data)"}
    assert not (root / pico.clip_path("up", 0)).exists() and verify_manifest(root) == []
    assert read_split_list(root / "testing_list.txt") == []  # the test voice was skipped
    assert info.status().startswith(f"present at {root} without 1 of its 2 voices")
    assert "pico:en-GB: no " in (root / "README.md").read_text()
    stamp = (root / espeak.clip_path("up", 0)).stat().st_mtime_ns
    assert info.build(progress=False) == root and (root / "manifest.json").is_file()  # still missing: as is
    monkeypatch.setattr(speech_build, "PICO_DATA", Path("/usr/share/pico/lang"))  # installed now
    info.build(progress=False)
    assert json.loads((root / "manifest.json").read_text())["skipped"] == {}
    assert (root / pico.clip_path("up", 0)).is_file() and info.status() == f"present at {root}"
    assert read_split_list(root / "testing_list.txt") == sorted(pico.clip_path(w, 0) for w in ("up", "no"))
    assert (root / espeak.clip_path("up", 0)).stat().st_mtime_ns == stamp  # kept, not redone


@needs_engines
@pytest.mark.skipif(shutil.which("pocketsphinx_batch") is None, reason="needs pocketsphinx pocketsphinx-en-us")
def test_pocketsphinx_hears_the_flite_voice(small_build):
    _, root = small_build
    awb = [v for v in small_grid().voices if v.voice_id == "flite:awb"][0]
    words = list(SPEECH_COMMANDS_V2_WORDS)
    hyps = pocketsphinx_recognize([root / awb.clip_path(w, 0) for w in words], words)
    assert len(hyps) == 35 and sum(h == w for h, w in zip(hyps, words)) >= 28
    with pytest.raises(DataError, match="Failed to open"):
        pocketsphinx_recognize([root / "yes" / "absent.wav"], words)
