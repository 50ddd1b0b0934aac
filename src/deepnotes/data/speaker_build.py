"""``deepnotes data build speaker-utterances``: KJV verses said by every voice of speech-keywords, as log-mel frames.

Source: ML2022 (Hung-yi Lee) HW4, speaker classification: VoxCeleb utterances given as 40-dim mel-spectrogram frames
(25 ms window, 10 ms hop), one speaker label per utterance; the model sees random 2-second segments. VoxCeleb cannot
be had offline, so this set makes one of the same shape from the recorded speakers behind Debian's synthesizers
(:mod:`deepnotes.data.speech_build`: flite, festival, MBROLA through espeak-ng, SVOX Pico, RHVoice; and espeak-ng's
formant variants).

**Speakers.** A class is one *voice* (``"rhvoice:slt"``, ``"festival:us2_mbrola"``, ``"espeak-ng:en-gb+m3"``): the
same recorded speaker behind two engines sounds different, and so does one espeak-ng variant in two accents; a
speaker-identification model must tell them apart. Every voice of :func:`deepnotes.data.speech_build.default_grid`
is in: 94 voices (42 of recorded speakers, 52 espeak-ng variant-accent pairs). Each says verses at 3 of its
keyword-set settings (rate, pitch): the settings at a quarter, half and three quarters of its list.

**Splits.** *Closed set*: the voices of the keyword set's training and validation speakers (80); the utterances of
their first and last settings are for training, those of the middle setting alternate validation and test, so a
speaker is identified at a rate and pitch it was never heard at. (Measured with the sample code's model on a first
version with 44 closed-set voices, espeak-ng in en-us only: 100 % test accuracy with every setting in training,
98.8 % at the held-out setting; hence the harder set.) *Open set*: every utterance of the keyword set's test
speakers (14 voices: awb, ked, us2 through two engines, de3, fr1, hu1, bdl, lyubov, Pico en-GB, espeak-ng m7 in 4
accents), for speaker verification on speakers never heard in training.

**Texts.** King James Bible verses (``deepnotes data build kjv``) of 60 to 160 characters (about 4 to 10 s); each
voice says its own seeded draw of verses (no two utterances of one voice share a verse), so what is said does not
give the speaker away.

**Features.** Each engine's WAV goes through ``sox -R -D IN -r 16000 -c 1 -b 16 OUT`` with the keyword set's silence
trim (:data:`deepnotes.data.speech_build.SOX_TRIM`); :class:`deepnotes.audio.features.LogMelSpectrogram` (n_fft 400
= 25 ms Hann window, hop 160 = 10 ms, 40 HTK mel bands, dB) gives (frames, 40) float32.

**Files** (``<data_root>/speaker-utterances/``): ``shards/<voicehash>_s<k>.npz``, one per voice setting, each a zip of
``.npy`` arrays (:func:`deepnotes.data.phonemes.npz_bytes`: fixed dates, no pickle): ``features`` (F, 40),
``lengths`` (U,) frames per utterance, ``n_samples`` (U,), ``verse_index`` (U,) into
:func:`deepnotes.data.text.load_kjv` (the split of an utterance follows from its voice and setting:
:func:`utterance_split`). ``manifest.json``
(written last) holds the grid, the engine versions, the counts and the SHA-256 of every shard. The build is
deterministic, resumable (shards are written to a temporary name and renamed) and runs two shards at a time, with a
progress bar on a terminal. A voice whose package is missing is skipped with a warning in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from deepnotes.audio.features import LogMelSpectrogram
from deepnotes.data.download import sha256_file
from deepnotes.data.phonemes import npz_bytes, read_shard as read_npz_shard
from deepnotes.data.speech import SAMPLE_RATE
from deepnotes.data.speech_build import (SOX_TRIM, SPEAKER_SPLITS, SPEAKERS, SPEECH_PACKAGES, BuiltDatasetStatus,
                                         SpeechGrid, SynthVoice, _run, changed_voices, check_engines, default_grid,
                                         engine_versions, run_jobs, synthesize)
from deepnotes.data.text import load_kjv
from deepnotes.errors import DataError
from deepnotes.io import write_json_atomic, write_text_atomic

N_MELS = 40
#: Verse lengths said (characters): about 4 to 10 s of speech.
MIN_CHARS, MAX_CHARS = 60, 160
#: The keyword set's test speakers: every utterance of theirs is in the open set.
OPEN_SET_SPEAKERS: frozenset[str] = frozenset(s for s, side in SPEAKER_SPLITS.items() if side == "test")
SHARD_KEYS = ("features", "lengths", "n_samples", "verse_index")


def utterance_split(voice: SynthVoice, k: int, j: int) -> str:
    """The split of the ``j``-th utterance said at setting ``k`` of ``voice``: ``open`` for the open-set voices;
    for the others, ``train`` at every setting but the middle one, whose utterances alternate ``validation`` and
    ``test`` (a closed-set speaker is tested at a rate and pitch it was never heard at)."""
    if voice_split(voice) == "open":
        return "open"
    if k != len(voice.settings) // 2:
        return "train"
    return "validation" if j % 2 == 0 else "test"


def _spread(settings: Sequence, n: int = 3) -> tuple:
    """``n`` settings at a quarter, half and three quarters of the list (all of them when there are at most n)."""
    if len(settings) <= n:
        return tuple(settings)
    picks = sorted({min(len(settings) - 1, (len(settings) * (i + 1)) // (n + 1)) for i in range(n)})
    return tuple(settings[i] for i in picks)


def default_voices() -> tuple[SynthVoice, ...]:
    """The 94 voices of :mod:`this module <deepnotes.data.speaker_build>` (every voice of the keyword set), each with
    3 settings."""
    return tuple(SynthVoice(v.engine, v.name, v.variant, _spread(v.settings)) for v in default_grid().voices)


@dataclass(frozen=True)
class UtteranceGrid:
    """The voices and how many verses each says at each of its settings.

    Raises:
        ValueError: no voice, two alike, or ``per_setting`` < 1.
    """

    voices: tuple[SynthVoice, ...]
    per_setting: int = 20

    def __post_init__(self):
        if not self.voices or len({v.voice_id for v in self.voices}) != len(self.voices):
            raise ValueError("an utterance grid needs distinct voices")
        if self.per_setting < 1:
            raise ValueError(f"per_setting must be >= 1, got {self.per_setting}")

    def shards(self) -> list[tuple[SynthVoice, int]]:
        return [(v, k) for v in self.voices for k in range(len(v.settings))]

    def to_json(self) -> dict:
        return {"per_setting": self.per_setting, "min_chars": MIN_CHARS, "max_chars": MAX_CHARS, "n_mels": N_MELS,
                "split": "closed-set voices: the middle setting's utterances alternate validation and test, the "
                         "others train; open-set voices: open", "voices": [v.to_json() for v in self.voices]}


def voice_split(voice: SynthVoice) -> str:
    """``"open"`` for the voices of the keyword set's test speakers, else ``"closed"``."""
    return "open" if voice.speaker in OPEN_SET_SPEAKERS else "closed"


def verse_draw(voice: SynthVoice, pool: Sequence[int], n: int) -> list[int]:
    """``n`` distinct verse indices from ``pool`` for ``voice``, seeded by its voice id (deterministic)."""
    if n > len(pool):
        raise DataError(f"speaker-utterances: {voice.voice_id} needs {n} verses, the pool has only {len(pool)}")
    seed = int(hashlib.sha256(voice.voice_id.encode()).hexdigest()[:8], 16)
    return [int(pool[i]) for i in np.random.default_rng(seed).choice(len(pool), n, replace=False)]


def to_samples(raw: str | Path) -> np.ndarray:
    """An engine's WAV as 16 kHz mono int16 samples with the silence at both ends trimmed (``sox``).

    Raises:
        DataError: sox failed, or less than 0.2 s is left (names the file).
    """
    cmd = ["sox", "-R", "-D", str(raw), "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
           "-e", "signed-integer", "-L", "-", *SOX_TRIM]
    x = np.frombuffer(_run(cmd, f"converting {raw}").stdout, dtype="<i2").astype(np.int16)
    if len(x) < SAMPLE_RATE // 5:
        raise DataError(f"speaker-utterances: {raw}: the engine's output is (almost) silent ({len(x)} samples)")
    return x


def log_mel(samples: np.ndarray, mel: LogMelSpectrogram | None = None) -> np.ndarray:
    """(frames, 40) float32 log-mel (dB) of int16 samples: 25 ms Hann window, 10 ms hop, 40 HTK mel bands."""
    mel = mel or LogMelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=N_MELS)
    with torch.no_grad():
        x = torch.from_numpy(samples.astype(np.float32) / 32768.0)
        return mel(x).T.contiguous().numpy().astype(np.float32)


def read_shard(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of one shard (no pickle; :func:`deepnotes.data.phonemes.read_shard`), features 2-D.

    Raises:
        DataError: missing, not an npz, a key missing, or rows that do not add up (names the file and the fix).
    """
    out = read_npz_shard(path, SHARD_KEYS, "speaker-utterances")
    if out["features"].ndim != 2:
        raise DataError(f"{path}: features of shape {out['features'].shape} are not (frames, mel bands); delete "
                        "the file and rebuild")
    return out


@dataclass(frozen=True)
class SpeakerUtterancesInfo(BuiltDatasetStatus):
    """Where the speaker set lives, whether it is built, and how to build it (``deepnotes data``)."""

    name: str = "speaker-utterances"
    description: str = ("KJV verses said by 94 synthesizer voices (34 recorded speakers, espeak-ng's variants in 4 "
                        "accents), as 40-dim log-mel frames; closed set of 80 voices, open set of 14 (HW4 speaker ID)")
    grid: UtteranceGrid = field(default_factory=lambda: UtteranceGrid(default_voices()), repr=False)
    source: str = "Debian text-to-speech engines (as speech-keywords) saying King James Bible verses; sox"
    license: str = "generated here; the voices' licences: see speech-keywords' README.md"

    def how_to_get(self) -> str:
        return self.build_instructions("text-to-speech engines", SPEECH_PACKAGES,
                                       f"{len(self.grid.shards()) * self.grid.per_setting} utterances",
                                       "deepnotes.data.speaker_build.read_speaker_utterances")

    def is_current(self) -> bool:
        return self.built_grid() == self.grid.to_json()

    def status(self) -> str:
        if self.manifest_path().is_file() and not self.is_current():
            return (f"outdated at {self.cache_dir()} (built from another grid): `deepnotes data build {self.name}` "
                    "updates it")
        return super().status()

    def build(self, force: bool = False, workers: int | None = None, progress: bool | None = None) -> Path:
        """Synthesize every missing shard, then write README.md and manifest.json.

        Raises:
            DataError: no engine, no KJV text (says how to build it), or an engine failed (names voice and text).
        """
        root = self.cache_dir()
        if force and root.exists():
            shutil.rmtree(root)
        if self.is_current():
            return root
        verses = load_kjv()
        pool = [i for i, v in enumerate(verses) if MIN_CHARS <= len(v.text) <= MAX_CHARS]
        skipped = check_engines(SpeechGrid(self.grid.voices, ("yes",), 1))
        for voice_id, why in skipped.items():
            print(f"warning: {self.name}: skipping {voice_id}: {why}", file=sys.stderr)
        voices = [v for v in self.grid.voices if v.voice_id not in skipped]
        per = self.grid.per_setting
        draws = {v.voice_id: verse_draw(v, pool, per * len(v.settings)) for v in voices}
        shard_dir = root / "shards"
        shard_dir.mkdir(parents=True, exist_ok=True)
        # a voice whose audio changed since the last build: the same shard names would now mean other audio
        for v in changed_voices((self.built_grid() or {}).get("voices"), voices):
            for p in shard_dir.glob(f"{v.voice_hash}_s*.npz"):
                p.unlink()
        self.manifest_path().unlink(missing_ok=True)
        for p in shard_dir.glob(".*.tmp"):
            p.unlink()
        jobs = [(v, k) for v in voices for k in range(len(v.settings))]
        names = {f"{v.voice_hash}_s{k}.npz" for v, k in jobs}
        for p in shard_dir.glob("*.npz"):
            if p.name not in names:  # of an older grid
                p.unlink()
        todo = [(v, k) for v, k in jobs if not (shard_dir / f"{v.voice_hash}_s{k}.npz").is_file()]
        workroot = root / ".work"
        shutil.rmtree(workroot, ignore_errors=True)
        workroot.mkdir()
        mel = LogMelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=N_MELS)

        def run_job(voice: SynthVoice, k: int) -> int:
            rows = list(range(k * per, (k + 1) * per))
            index = [draws[voice.voice_id][j] for j in rows]
            with tempfile.TemporaryDirectory(dir=workroot) as tmp:
                raws = synthesize(voice, k, {f"u{j}": verses[i].text for j, i in zip(rows, index)}, Path(tmp))
                samples = [to_samples(raws[f"u{j}"]) for j in rows]
            feats = [log_mel(x, mel) for x in samples]
            data = npz_bytes({"features": np.concatenate(feats), "lengths": np.array([len(f) for f in feats], np.int32),
                              "n_samples": np.array([len(x) for x in samples], np.int32),
                              "verse_index": np.array(index, np.int32)})
            path = shard_dir / f"{voice.voice_hash}_s{k}.npz"
            tmp_path = path.with_name(f".{path.name}.tmp")
            tmp_path.write_bytes(data)
            tmp_path.replace(path)
            return per

        total = len(jobs) * per
        bar = tqdm(total=total, initial=total - len(todo) * per, desc=self.name, unit="utt", file=sys.stderr,
                   disable=(None if progress is None else not progress))
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # two jobs at a time, each one feature thread
        try:
            run_jobs(todo, run_job, workers, bar, workroot)
        finally:
            torch.set_num_threads(torch_threads)
        counts = {s: 0 for s in ("train", "validation", "test", "open")}
        for v, k in jobs:
            for j in range(per):
                counts[utterance_split(v, k, j)] += 1
        write_text_atomic(root / "README.md", self.readme(voices, counts, skipped))
        files = sorted(f"shards/{n}" for n in names) + ["README.md"]
        write_json_atomic(self.manifest_path(), {
            "dataset": self.name, "grid": self.grid.to_json(), "engines": engine_versions(), "skipped": skipped,
            "features": f"sox -R -D IN -r {SAMPLE_RATE} -c 1 -b 16 OUT {' '.join(SOX_TRIM)}; log-mel dB, n_fft 400 "
                        f"(Hann), hop 160, {N_MELS} HTK mel bands",
            "counts": counts, "files": {rel: sha256_file(root / rel) for rel in files}})
        return root

    def readme(self, voices: Sequence[SynthVoice], counts: dict[str, int], skipped: dict[str, str]) -> str:
        lines = [f"# {self.name}", "", "King James Bible verses said by Debian's synthesizers, as 40-dim log-mel "
                 "frames (25 ms window, 10 ms hop): ML2022 HW4's speaker classification, offline. Built by "
                 f"`deepnotes data build {self.name}`; manifest.json holds the grid and the SHA-256 of every shard.",
                 "", "Utterances: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + ".", "",
                 "| voice | speaker | sex, accent | set | settings |", "|---|---|---|---|---|"]
        for v in voices:
            sex, accent = SPEAKERS.get(v.speaker, ("-", "formant synthesis"))
            lines.append(f"| {v.voice_id} | {v.speaker} | {sex}, {accent} | {voice_split(v)} | {len(v.settings)} |")
        if skipped:
            lines += ["", "Skipped here (packages missing):", ""] + [f"- {k}: {w}" for k, w in skipped.items()]
        return "\n".join(lines) + "\n"


@dataclass
class SpeakerCorpus:
    """Utterances in memory: ``features[i]`` (L_i, n_mels) float32, ``voices[i]`` the voice (speaker) id,
    ``splits[i]`` ``train`` / ``validation`` / ``test`` / ``open``, ``utt_ids[i]``, and the folder."""

    features: list[torch.Tensor]
    voices: list[str]
    splits: list[str]
    utt_ids: list[str]
    root: Path

    def where(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]


def read_speaker_utterances(root: str | Path) -> SpeakerCorpus:
    """Every utterance of a built ``speaker-utterances`` folder, in grid order.

    Raises:
        DataError: no manifest (says how to build it) or a bad shard (names it).
    """
    root = Path(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{root / 'manifest.json'}: cannot read it ({e}); run `deepnotes data build "
                        "speaker-utterances`") from e
    feats, voices, splits, ids = [], [], [], []
    for v in manifest["grid"]["voices"]:
        if v["voice_id"] in manifest.get("skipped", {}):
            continue
        voice = SynthVoice(v["engine"], v["name"], v["variant"], tuple((s["rate"], s["pitch"]) for s in v["settings"]))
        for k in range(len(v["settings"])):
            shard = read_shard(root / "shards" / f"{v['voice_hash']}_s{k}.npz")
            offsets = np.concatenate([[0], np.cumsum(shard["lengths"])])
            for j in range(len(shard["lengths"])):
                feats.append(torch.from_numpy(shard["features"][offsets[j]:offsets[j + 1]].copy()))
                voices.append(v["voice_id"])
                splits.append(utterance_split(voice, k, j))
                ids.append(f"{v['voice_id']}-s{k}-v{int(shard['verse_index'][j])}")
    return SpeakerCorpus(feats, voices, splits, ids, root)


SPEAKER_UTTERANCES = SpeakerUtterancesInfo()
SPEAKER_UTTERANCES_SMALL = SpeakerUtterancesInfo(
    name="speaker-utterances-small",
    description="a 66-utterance speaker-utterances (11 voices of all 6 engines, 2 settings x 3 verses; for tests)",
    grid=UtteranceGrid(tuple(SynthVoice(v.engine, v.name, v.variant, _spread(v.settings, 2)) for v in default_voices()
                             if v.voice_id in ("flite:kal16", "flite:rms", "festival:rab_diphone", "mbrola:mb-de1-en",
                                               "rhvoice:clb", "espeak-ng:en-us+m1", "pico:en-US", "flite:awb",
                                               "mbrola:mb-us2", "festival:ked_diphone", "rhvoice:bdl")),
                       per_setting=3),
)
