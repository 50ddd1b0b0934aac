"""Frame-level phoneme data: ``deepnotes data build phoneme-frames`` and a reader of the course's HW2 files.

Source: ML2021/2022 (Hung-yi Lee) HW2, "framewise phoneme prediction from speech" (seed 002): every
10 ms frame of an utterance is a 39-dim MFCC vector (13 coefficients + delta + delta-delta, 25 ms
window) and is labelled with one of 41 phoneme classes. The course's own data (LibriSpeech, features
and Kaldi alignments prepared by the TAs) cannot be had offline, so this module makes a set of the same
shape from text-to-speech, where the phone boundaries are known exactly: the synthesizer decided them.

**Building** (``deepnotes data build phoneme-frames``): Debian's festival says King James Bible verses
(``deepnotes data build kjv``) of 30 to 90 characters (about 2 to 6 s) with nine voices; for every
utterance festival's own ``Segment`` relation gives each phone's end time (``(item.feat seg "end")``,
seconds), the waveform is resampled to 16 kHz (``utt.wave.resample``; don_diphone speaks at 10 kHz), dithered
as Kaldi's front end does (Gaussian noise of one int16 step, seeded by the utterance id: synthetic pauses are
digital zeros) and :func:`deepnotes.audio.mfcc_with_deltas` computes (n_frames, 39) features: 25 ms Hamming
window, 10 ms hop, centred frames (frame i is centred at t = i * 10 ms, n_frames = 1 + n_samples // 160).
Frame i gets the class of the phone whose interval [start, end) holds t (:func:`frame_labels`).

**The 41 classes** (:data:`PHONES`, label = index). The seeds give HW2's count (41, labels 0-40) but not
its list; Kaldi's LibriSpeech recipe has 39 CMU phones + silence + spoken noise. Synthetic speech has no
spoken noise, so the 41st class here is the schwa ``ax``, which festival's US lexicon keeps apart from
``ah`` (and which is the most frequent vowel it says)::

    0 sil   1 aa   2 ae   3 ah   4 ao   5 aw   6 ax   7 ay   8 b    9 ch  10 d   11 dh  12 eh  13 er
   14 ey   15 f   16 g   17 hh  18 ih  19 iy  20 jh  21 k   22 l   23 m   24 n   25 ng  26 ow  27 oy
   28 p   29 r   30 s   31 sh  32 t   33 th  34 uh  35 uw  36 v   37 w   38 y   39 z   40 zh

festival's voices speak one of two phone sets (:data:`VOICE_PHONESETS`, checked against festival's
``PhoneSet`` parameter at every shard); :data:`PHONE_MAPS` maps each onto the classes:

- US voices (kal, ked, slt, us1, us2, us3; CMU lexicon): the "radio" (DARPA) set, :data:`FESTIVAL_PHONE_MAP`:
  each of the 39 CMU phones and ``ax`` to itself; the radio extras folded as in the TIMIT 39-phone folding
  (Lee & Hon 1989) where it applies: ``axr -> er``, ``el -> l``, ``em -> m``, ``en -> n``, ``nx -> n``,
  ``hv -> hh``, ``dx`` (flap) ``-> t``; the silences ``pau``, ``h#``, ``brth`` -> ``sil``.
- British voices (rab, don, en1; Oxford Advanced Learner's lexicon, non-rhotic): the "mrpa" set (45 phones,
  all said on 400 verses), :data:`MRPA_PHONE_MAP`, by the sound, which for most vowels is also the class the
  US lexicon gives the same words::

      a   -> ae  (TRAP)        aa -> aa  (PALM, BATH)    ai -> ay     au -> aw     e  -> eh
      e@  -> eh  (SQUARE)      ei -> ey                  i  -> ih     i@ -> ih  (NEAR)
      ii  -> iy                o  -> aa  (LOT)           oi -> oy     oo -> ao  (THOUGHT, NORTH)
      ou  -> ow                u  -> uh  (FOOT)          u@ -> uh  (CURE)          uh -> ah  (STRUT)
      uu  -> uw                @  -> ax                  @@ -> er  (NURSE)         h  -> hh     # -> sil

  and the 23 other consonants by name (p t k b d g s z sh zh f v th dh ch jh m n ng l r w y). Choices: LOT's
  rounded /ɒ/ has no class of its own; ``aa`` is both the nearest open back vowel and the US class of the
  same words ("God", "not"). The centring diphthongs ``e@ i@ u@`` stand where US speech says vowel + /r/
  ("there", "here", "sure"); with no /r/ said, a frame of them is labelled with the diphthong's first vowel.
  ``aa`` in BATH words ("after", "ask") stays ``aa``: the label is the sound said, not the US pronunciation.
  Mind ``uh``: radio's is FOOT (-> uh), mrpa's is STRUT (-> ah).

A phone outside its set's table stops the build with a :class:`~deepnotes.errors.DataError` naming it.

**Split by speaker** (:func:`default_grid`). Each festival voice is one real recorded speaker: ``kal_diphone``
(kal, US male), ``cmu_us_slt_arctic_hts`` (slt, US female, statistical parametric synthesis), ``us1_mbrola``
(US female), ``us3_mbrola`` (US male), ``rab_diphone`` and ``don_diphone`` (British males) for training;
``ked_diphone`` (ked, US male), ``us2_mbrola`` (US male) and ``en1_mbrola`` (British male) for the **test**:
three speakers never heard in training, saying verses never said in training, so the test measures new voices
(two accents, three synthesis methods: diphone LPC, MBROLA, and HTS in training only) rather than one speaker's
accent. **validation** holds other unseen verses said by the training voices (every voice setting keeps its
first few verses apart): it measures generalization to new sentences, the test to new speakers too. Rate and
pitch variants make each voice several "speakers": diphone and MBROLA voices ``Duration_Stretch`` (> 1 slower;
the same three values for every voice, replacing each voice's own default of 0.95-1.1) x ``target_f0_mean`` of
the linear-regression intonation model (Hz, three values around each voice's own mean); the HTS voice its
engine's speed ``-r`` (> 1 faster; it has no pitch option). Every verse is said once, by one voice setting.
Default grid: 2,646 utterances (train 1,890 / validation 216 / test 540; 315 / 36 / 180 a speaker).

**Files** (``<data_root>/phoneme-frames/``): ``shards/<split>/<voice>_s<k>_<chunk>.npz``, one per (voice
setting, block of at most ``shard_size`` verses), each a zip of ``.npy`` arrays (no pickle; read with
:func:`read_shard`): ``features`` (F, 39) float32, ``labels`` (F,) uint8, ``lengths`` (U,) int32 frames
per utterance, ``n_samples`` (U,) int32, ``utt_ids`` (U,) str ``<voice>-s<k>-v<verse index>``, ``text``
(U,) str, ``verse_index`` (U,) int32 (into :func:`deepnotes.data.text.load_kjv`), ``phones`` (P,) str
and ``phone_ends`` (P,) float32 festival's segments of all utterances, ``phone_counts`` (U,) int32.
``manifest.json`` (written last) holds the grid, the phone table, festival's version, the counts and
the SHA-256 of every shard; ``README.md`` says the same in words.

The build is deterministic (zip entries carry a fixed date; same festival, numpy and torch builds ->
same bytes), resumable (a shard is written to a temporary name and renamed; ``.grid.json``, written before
the first shard, records the grid the shards belong to) and runs ``workers`` festival processes at a time
(one per shard: festival's start-up is paid once per shard), with a tqdm progress bar on a terminal. A
folder built from another grid (an older version's: its manifest's grid differs) is reported ``outdated``
by ``deepnotes data list``; building it again keeps each shard whose voice, setting, split and verses are
unchanged and redoes the others.

**HW2's own files** (:func:`load_hw2_libriphone`): the course's ``libriphone/`` folder
(``train_labels.txt``: ``<utt_id> <label> <label> ...`` a line; ``train_split.txt`` and
``test_split.txt``: one utterance id a line; ``feat/train/<id>.pt`` and ``feat/test/<id>.pt``: a
(T, 39) float tensor each) is read by path, with the sample code's train/validation split (Python
``random.seed(1337); random.shuffle(ids)``, first 80 % train). :func:`write_hw2_libriphone` writes a
:class:`FrameCorpus` in that layout, so the course's own notebook runs on the synthesized set.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from deepnotes.audio import MFCCWithDeltas
from deepnotes.data.download import sha256_file
from deepnotes.data.speech import read_wav
from deepnotes.data.speech_build import (FESTIVAL_VOICE_PACKAGES, BuiltDatasetStatus, engine_versions, run_jobs,
                                         verify_manifest)
from deepnotes.data.splits import HW2_SPLIT_SEED, HW2_TRAIN_RATIO, hw2_train_val_split
from deepnotes.errors import DataError
from deepnotes.io import write_bytes_atomic, write_json_atomic, write_text_atomic

# ----------------------------------------------------------------------------------------------------------
# The 41 classes
# ----------------------------------------------------------------------------------------------------------

#: The 41 phoneme classes, label = index: silence, the 39 CMU phones (alphabetical) with the schwa ``ax``
#: inserted at its alphabetical place.
PHONES: tuple[str, ...] = (
    "sil", "aa", "ae", "ah", "ao", "aw", "ax", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh",
    "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v",
    "w", "y", "z", "zh",
)
N_PHONE_CLASSES = len(PHONES)  # 41, as HW2
#: festival's radio phone (its US voices) -> class name (see the module docstring).
FESTIVAL_PHONE_MAP: dict[str, str] = {
    **{p: p for p in PHONES if p != "sil"},
    "axr": "er", "el": "l", "em": "m", "en": "n", "nx": "n", "hv": "hh", "dx": "t",
    "pau": "sil", "h#": "sil", "brth": "sil",
}
#: festival's British mrpa phone (rab, don, en1; OALD lexicon) -> class name (see the module docstring).
MRPA_PHONE_MAP: dict[str, str] = {
    "a": "ae", "aa": "aa", "ai": "ay", "au": "aw", "e": "eh", "e@": "eh", "ei": "ey", "i": "ih", "i@": "ih",
    "ii": "iy", "o": "aa", "oi": "oy", "oo": "ao", "ou": "ow", "u": "uh", "u@": "uh", "uh": "ah", "uu": "uw",
    "@": "ax", "@@": "er",
    **{c: c for c in "p t k b d g s z sh zh f v th dh ch jh m n ng l r w y".split()},
    "h": "hh", "#": "sil",
}
#: Phone set (festival's ``PhoneSet`` parameter) -> its phone map.
PHONE_MAPS: dict[str, dict[str, str]] = {"radio": FESTIVAL_PHONE_MAP, "mrpa": MRPA_PHONE_MAP}
#: The festival voices a grid may use -> the phone set they speak.
VOICE_PHONESETS: dict[str, str] = {
    "kal_diphone": "radio", "ked_diphone": "radio", "cmu_us_slt_arctic_hts": "radio", "us1_mbrola": "radio",
    "us2_mbrola": "radio", "us3_mbrola": "radio", "rab_diphone": "mrpa", "don_diphone": "mrpa", "en1_mbrola": "mrpa",
}
SAMPLE_RATE = 16000
HOP_LENGTH = 160  # 10 ms at 16 kHz
#: Standard deviation of the Gaussian dither added before the MFCCs, in int16 steps (Kaldi's default 1.0).
DITHER = 1.0

#: Debian packages of the build; festvox-rablpc16k, -don, -us1..3, -en1 and mbrola-* are in contrib and non-free.
PHONEME_PACKAGES: tuple[str, ...] = (
    "festival", "festlex-cmu", "festlex-oald", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts",
    "festvox-rablpc16k", "festvox-don", "festvox-us1", "festvox-us2", "festvox-us3", "festvox-en1", "mbrola",
    "mbrola-us1", "mbrola-us2", "mbrola-us3", "mbrola-en1", "bible-kjv", "bible-kjv-text")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: The grid the shards of a folder belong to, written before the first shard (a resumed build reads it).
GRID_FILE = ".grid.json"
#: What ``rate`` and ``pitch`` of a voice setting mean.
SETTING_UNITS: dict[str, dict[str, str]] = {
    "diphone": {"rate": "(Parameter.set 'Duration_Stretch x) (>1 slower)",
                "pitch": "int_lr_params target_f0_mean, Hz (diphone LPC and MBROLA voices)"},
    "hts": {"rate": "hts_engine_params -r speed (>1 faster)", "pitch": "null (no pitch option)"},
}


def phone_class(phone: str, phoneset: str = "radio") -> int:
    """The class (0-40) of a festival phone of ``phoneset`` (``"radio"`` or ``"mrpa"``), via :data:`PHONE_MAPS`.

    Raises:
        ValueError: an unknown phone set.
        DataError: a phone the set's table does not know (names it).

    Example::

        >>> PHONES[phone_class("uh")], PHONES[phone_class("uh", "mrpa")]   # FOOT in radio, STRUT in mrpa
        ('uh', 'ah')
    """
    if phoneset not in PHONE_MAPS:
        raise ValueError(f"phoneset must be one of {', '.join(PHONE_MAPS)}, got {phoneset!r}")
    table = PHONE_MAPS[phoneset]
    try:
        return PHONES.index(table[phone])
    except KeyError:
        name = "FESTIVAL_PHONE_MAP" if phoneset == "radio" else "MRPA_PHONE_MAP"
        raise DataError(f"phoneme-frames: festival gave the phone {phone!r} (phone set {phoneset}), which {name} "
                        f"does not map to a class; known: {' '.join(sorted(table))}") from None


def frame_labels(phone_ends: Sequence[float], classes: Sequence[int], n_frames: int,
                 hop_s: float = HOP_LENGTH / SAMPLE_RATE) -> np.ndarray:
    """Label each frame with the class of the phone that holds its centre.

    The phones tile the utterance from 0 s: phone j covers ``[end[j-1], end[j])`` (``end[-1] = 0``).
    Frame i is centred at ``t_i = i * hop_s`` (centred STFT frames); its label is ``classes[j]`` for the
    first j with ``end[j] > t_i``. Frames past the last end (a waveform a few ms longer than its last
    segment) take the last phone's class.

    Args:
        phone_ends: (P,) end times in seconds, non-decreasing.
        classes: (P,) class of each phone.
        n_frames: frames to label (>= 0).
        hop_s: seconds between frame centres. Default 0.010.

    Returns:
        (n_frames,) uint8.

    Raises:
        ValueError: no phones, lengths that differ, ends that decrease, or a negative ``n_frames``.

    Example::

        >>> frame_labels([0.02, 0.05], [0, 6], 7).tolist()   # centres 0, 10, ..., 60 ms
        [0, 0, 6, 6, 6, 6, 6]
    """
    ends = np.asarray(phone_ends, dtype=np.float64)
    cls = np.asarray(classes)
    if ends.ndim != 1 or len(ends) == 0 or cls.shape != ends.shape:
        raise ValueError(f"phone_ends and classes must be 1-D, non-empty and of one length; got shapes "
                         f"{ends.shape} and {cls.shape}")
    if np.any(np.diff(ends) < 0):
        raise ValueError("phone_ends must be non-decreasing")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    t = np.arange(n_frames) * hop_s
    j = np.minimum(np.searchsorted(ends, t + 1e-9, side="right"), len(ends) - 1)
    return cls[j].astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhonemeVoice:
    """One festival voice (one recorded speaker), its (rate, pitch) settings and how many verses each setting says.

    Attributes:
        name: a voice of :data:`VOICE_PHONESETS`: ``"kal_diphone"``, ``"cmu_us_slt_arctic_hts"``, ``"us2_mbrola"``,
            ``"rab_diphone"``, ...
        split: ``"train"`` (its held-out verses are the validation split) or ``"test"``.
        settings: ``(rate, pitch)`` pairs, meaning per :data:`SETTING_UNITS`; pitch None for HTS.
        sentences: verses each setting says for the voice's split.
        val_sentences: further verses each setting says for validation (train voices only). Default 0.

    Raises:
        ValueError: an unknown voice or split, empty or repeated settings, a pitch on the HTS voice,
            non-positive rates, fewer than one sentence, or validation verses on a test voice.
    """

    name: str
    split: str
    settings: tuple[tuple[float, float | None], ...]
    sentences: int
    val_sentences: int = 0

    def __post_init__(self):
        if self.name not in VOICE_PHONESETS:
            raise ValueError(f"unknown festival voice {self.name!r} (or one whose phones have no map); known: "
                             f"{', '.join(VOICE_PHONESETS)}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test' (validation comes from train voices), "
                             f"got {self.split!r}")
        if not self.settings or len(set(self.settings)) != len(self.settings):
            raise ValueError(f"{self.name}: settings must be non-empty and distinct")
        for rate, pitch in self.settings:
            if not rate > 0:
                raise ValueError(f"{self.name}: rates must be > 0, got {rate}")
            if (pitch is None) != (self.kind == "hts"):
                raise ValueError(f"{self.name}: pitch must be None for the HTS voice and a number (Hz) for diphone "
                                 "and MBROLA voices")
        if self.sentences < 1 or self.val_sentences < 0:
            raise ValueError(f"{self.name}: sentences must be >= 1 and val_sentences >= 0")
        if self.split == "test" and self.val_sentences:
            raise ValueError(f"{self.name}: a test voice takes no validation verses (val_sentences must be 0)")

    @property
    def kind(self) -> str:
        """``"hts"`` or ``"diphone"`` (key of :data:`SETTING_UNITS`; the MBROLA voices are diphone voices too)."""
        return "hts" if self.name.endswith("_hts") else "diphone"

    @property
    def phoneset(self) -> str:
        """``"radio"`` or ``"mrpa"`` (key of :data:`PHONE_MAPS`)."""
        return VOICE_PHONESETS[self.name]

    @property
    def n_utterances(self) -> int:
        return len(self.settings) * (self.sentences + self.val_sentences)

    def to_json(self) -> dict:
        return {"name": self.name, "split": self.split, "kind": self.kind, "phoneset": self.phoneset,
                "sentences": self.sentences,
                "val_sentences": self.val_sentences,
                "settings": [{"k": k, "rate": r, "pitch": p} for k, (r, p) in enumerate(self.settings)]}


@dataclass(frozen=True)
class Shard:
    """One file of the build: a block of verses said by one voice setting, all of one split."""

    path: str  # relative to the dataset folder
    voice: PhonemeVoice
    k: int  # setting index
    split: str
    verse_index: tuple[int, ...]


@dataclass(frozen=True)
class PhonemeGrid:
    """The voices of a build, which verses they say, and the shard size.

    Attributes:
        voices: the voices (distinct names).
        min_chars, max_chars: verses of this many characters are eligible. Defaults 30 and 90.
        seed: seed of the permutation of eligible verses; setting after setting takes the next block.
        shard_size: most utterances in one shard file. Default 40.

    Raises:
        ValueError: no voices, a repeated voice, a bad length range or shard size.
    """

    voices: tuple[PhonemeVoice, ...]
    min_chars: int = 30
    max_chars: int = 90
    seed: int = 0
    shard_size: int = 40

    def __post_init__(self):
        if not self.voices:
            raise ValueError("a grid needs at least one voice")
        if len({v.name for v in self.voices}) != len(self.voices):
            raise ValueError("voices must be distinct")
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError(f"need 1 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")

    @property
    def n_utterances(self) -> int:
        return sum(v.n_utterances for v in self.voices)

    def eligible(self, texts: Sequence[str]) -> np.ndarray:
        """Indices of the eligible verses in the seeded order in which settings take them."""
        idx = np.array([i for i, t in enumerate(texts) if self.min_chars <= len(t) <= self.max_chars], dtype=np.int64)
        return idx[np.random.default_rng(self.seed).permutation(len(idx))]

    def shards(self, texts: Sequence[str]) -> list[Shard]:
        """Every shard of the build, in grid order (voice, setting, validation block then main block).

        Raises:
            DataError: fewer eligible verses than the grid says.
        """
        pool = self.eligible(texts)
        if len(pool) < self.n_utterances:
            raise DataError(f"phoneme-frames: the grid needs {self.n_utterances} verses of {self.min_chars}-"
                            f"{self.max_chars} characters, the text has {len(pool)}")
        out, pos = [], 0
        for v in self.voices:
            for k in range(len(v.settings)):
                blocks = [("validation", v.val_sentences), (v.split, v.sentences)]
                for split, n in blocks:
                    verses = [int(i) for i in pool[pos: pos + n]]
                    pos += n
                    for c in range(0, n, self.shard_size):
                        out.append(Shard(f"shards/{split}/{v.name}_s{k}_{c // self.shard_size:03d}.npz", v, k, split,
                                         tuple(verses[c: c + self.shard_size])))
        return out

    def to_json(self) -> dict:
        return {"min_chars": self.min_chars, "max_chars": self.max_chars, "seed": self.seed,
                "shard_size": self.shard_size, "setting_units": SETTING_UNITS,
                "voices": [v.to_json() for v in self.voices]}

    @classmethod
    def from_json(cls, d: dict) -> "PhonemeGrid":
        """The grid of :meth:`to_json` (an older version's too, whose voices had no phone set).

        Raises:
            ValueError: ``d`` is not such a grid.
        """
        try:
            voices = tuple(PhonemeVoice(v["name"], v["split"], tuple((s["rate"], s["pitch"]) for s in v["settings"]),
                                        v["sentences"], v.get("val_sentences", 0)) for v in d["voices"])
            return cls(voices, d["min_chars"], d["max_chars"], d["seed"], d["shard_size"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a phoneme-frames grid ({type(e).__name__}: {e})") from e


def shard_key(shard: Shard) -> tuple:
    """What a shard's bytes depend on besides the code: voice, (rate, pitch), split and verses."""
    return shard.voice.name, shard.voice.settings[shard.k], shard.split, shard.verse_index


#: Duration_Stretch of every diphone and MBROLA voice's settings in the default grid (> 1 slower).
GRID_RATES: tuple[float, ...] = (0.9, 1.0, 1.15)
#: target_f0_mean (Hz) of each diphone and MBROLA voice's settings: three around the voice's own mean (kal, ked,
#: rab, us3 105; don 135; us1 160; us2 90; en1 110).
GRID_PITCHES: dict[str, tuple[int, ...]] = {
    "kal_diphone": (90, 110, 130), "us1_mbrola": (135, 160, 190), "us3_mbrola": (85, 105, 125),
    "rab_diphone": (85, 105, 125), "don_diphone": (110, 135, 160),
    "ked_diphone": (90, 110, 130), "us2_mbrola": (75, 90, 110), "en1_mbrola": (90, 110, 130),
}
#: The speakers never heard in training.
TEST_VOICES: tuple[str, ...] = ("ked_diphone", "us2_mbrola", "en1_mbrola")


def default_grid() -> PhonemeGrid:
    """The grid of ``deepnotes data build phoneme-frames``: 2,646 utterances, split by speaker.

    train (each voice 315 verses + 36 for validation): kal_diphone, us1_mbrola, us3_mbrola, rab_diphone,
    don_diphone, each :data:`GRID_RATES` x its :data:`GRID_PITCHES` (9 settings x 35 verses, + 4 each for
    validation); cmu_us_slt_arctic_hts, speed 0.9, 1.0, 1.1 (3 x 105, + 12 each for validation). test
    (:data:`TEST_VOICES`, 180 verses each): ked_diphone, us2_mbrola, en1_mbrola, 9 settings x 20 verses.
    """
    def diphone(name: str, split: str, sentences: int, val_sentences: int = 0) -> PhonemeVoice:
        return PhonemeVoice(name, split, tuple(itertools.product(GRID_RATES, GRID_PITCHES[name])), sentences,
                            val_sentences)

    return PhonemeGrid((
        diphone("kal_diphone", "train", 35, 4),
        PhonemeVoice("cmu_us_slt_arctic_hts", "train", ((0.9, None), (1.0, None), (1.1, None)), 105, 12),
        diphone("us1_mbrola", "train", 35, 4),
        diphone("us3_mbrola", "train", 35, 4),
        diphone("rab_diphone", "train", 35, 4),
        diphone("don_diphone", "train", 35, 4),
        *(diphone(name, "test", 20) for name in TEST_VOICES),
    ))


def small_grid() -> PhonemeGrid:
    """36 utterances in 9 shards (``phoneme-frames-small``, for tests and smoke runs), one setting a voice: train
    kal_diphone 8 + 2 validation, cmu_us_slt_arctic_hts 6 + 2, don_diphone 6 + 2 (British mrpa phones, 10 kHz);
    test ked_diphone 4, us2_mbrola 3, en1_mbrola 3 (MBROLA, radio and mrpa phones)."""
    return PhonemeGrid((
        PhonemeVoice("kal_diphone", "train", ((1.0, 105),), 8, 2),
        PhonemeVoice("cmu_us_slt_arctic_hts", "train", ((1.0, None),), 6, 2),
        PhonemeVoice("don_diphone", "train", ((1.0, 135),), 6, 2),
        PhonemeVoice("ked_diphone", "test", ((1.0, 105),), 4),
        PhonemeVoice("us2_mbrola", "test", ((1.0, 90),), 3),
        PhonemeVoice("en1_mbrola", "test", ((1.0, 110),), 3),
    ), shard_size=8)


# ----------------------------------------------------------------------------------------------------------
# festival
# ----------------------------------------------------------------------------------------------------------


def _install_hint() -> str:
    return (f"install them with `sudo make system-speech system-data` (or `sudo apt-get install "
            f"{' '.join(PHONEME_PACKAGES)}` after adding contrib and non-free to the apt sources)")


def check_festival(voices: Sequence[str]) -> None:
    """Fail early when festival or one of ``voices`` is missing.

    Raises:
        DataError: names the missing program or voice, its Debian package and the install command.
    """
    if shutil.which("festival") is None:
        raise DataError(f"phoneme-frames: `festival` is missing; {_install_hint()}")
    try:
        out = subprocess.run(["festival", "-b", "(print (voice.list))"], capture_output=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise DataError(f"phoneme-frames: running festival failed ({e}); {_install_hint()}") from e
    known = set(re.findall(r"[A-Za-z0-9_]+", out.decode(errors="replace")))
    lost = [f"{v} (package {FESTIVAL_VOICE_PACKAGES[v]})" for v in voices if v not in known]
    if lost:
        raise DataError(f"phoneme-frames: festival voice(s) missing: {', '.join(lost)}; {_install_hint()}")


def scheme_string(text: str) -> str:
    """``text`` as a Scheme string literal: ``"..."`` with ``\\`` and ``"`` escaped, white space made single
    spaces."""
    text = " ".join(text.split())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_script(voice: PhonemeVoice, k: int, texts: Sequence[str], wav_dir: str | os.PathLike[str]) -> str:
    """The Scheme program that says ``texts`` with ``voice`` at setting ``k`` in one festival process.

    It first prints ``@@PHONESET <festival's PhoneSet parameter>``; for utterance i it prints ``@@UTT i`` then one
    ``@@SEG <phone> <end seconds>`` line per segment, and saves the waveform, resampled to 16 kHz, as
    ``wav_dir/<i>.wav``.
    """
    rate, pitch = voice.settings[k]
    lines = [f"(voice_{voice.name})", "(format t \"@@PHONESET %s\\n\" (Parameter.get 'PhoneSet))"]
    if voice.kind == "hts":
        lines.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {rate}))))')
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch {rate})")
        lines.append(f"(set! int_lr_params (cons (list 'target_f0_mean {pitch}) int_lr_params))")
    for i, text in enumerate(texts):
        wav = scheme_string(str(Path(wav_dir) / f"{i}.wav"))
        lines += [f"(set! utt1 (SynthText {scheme_string(text)}))",
                  f'(format t "@@UTT {i}\\n")',
                  "(mapcar (lambda (s) (format t \"@@SEG %s %f\\n\" (item.name s) (item.feat s \"end\"))) "
                  "(utt.relation.items utt1 'Segment))",
                  "(utt.wave.resample utt1 16000)",
                  f"(utt.save.wave utt1 {wav} 'riff)"]
    return "\n".join(lines) + "\n"


def parse_festival_segments(stdout: str, n: int) -> list[tuple[list[str], list[float]]]:
    """``(phones, ends)`` of each of ``n`` utterances from the output of :func:`festival_script`.

    Raises:
        DataError: an utterance is missing or has no segments.
    """
    out: list[tuple[list[str], list[float]]] = [([], []) for _ in range(n)]
    seen = set()
    cur = None
    for line in stdout.splitlines():
        if line.startswith("@@UTT "):
            cur = int(line.split()[1])
            seen.add(cur)
        elif line.startswith("@@SEG ") and cur is not None:
            _, name, end = line.split()
            out[cur][0].append(name)
            out[cur][1].append(float(end))
    lost = [i for i in range(n) if i not in seen or not out[i][0]]
    if lost:
        raise DataError(f"phoneme-frames: festival gave no segments for utterance(s) {lost[:5]}")
    return out


def synthesize_shard(shard: Shard, texts: Sequence[str], workdir: Path, mfcc: MFCCWithDeltas | None = None,
                     dither: float = DITHER) -> dict[str, np.ndarray]:
    """Say the shard's verses with festival and return the arrays of its ``.npz`` (see the module docstring).

    ``dither`` (int16 steps, default :data:`DITHER`) of Gaussian noise seeded by the utterance id is added
    to each waveform before the MFCCs, as Kaldi's front end does: synthetic pauses are digital zeros.

    Raises:
        DataError: festival failed, wrote no audio, spoke another phone set than :data:`VOICE_PHONESETS` says,
            or gave a phone outside its set's table (:data:`PHONE_MAPS`).
    """
    v, k = shard.voice, shard.k
    sentences = [texts[i] for i in shard.verse_index]
    script = workdir / "say.scm"
    script.write_text(festival_script(v, k, sentences, workdir))
    what = f"{v.name} setting {k} ({shard.path})"
    try:
        proc = subprocess.run(["festival", "-b", str(script)], capture_output=True, timeout=1200)
    except (OSError, subprocess.SubprocessError) as e:
        raise DataError(f"phoneme-frames: festival failed on {what} ({e}); {_install_hint()}") from e
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"phoneme-frames: festival exited with status {proc.returncode} on {what} "
                        f"({err[-1] if err else 'no message'})")
    stdout = proc.stdout.decode(errors="replace")
    said = re.search(r"^@@PHONESET (\S+)", stdout, re.M)
    if said is None or said.group(1) != v.phoneset:
        got = repr(said.group(1)) if said else "(none printed)"
        raise DataError(f"phoneme-frames: festival's {v.name} speaks the phone set {got}, VOICE_PHONESETS says "
                        f"{v.phoneset!r} ({what})")
    segments = parse_festival_segments(stdout, len(sentences))
    mfcc = mfcc or MFCCWithDeltas(SAMPLE_RATE)
    ids = [f"{v.name}-s{k}-v{i:05d}" for i in shard.verse_index]
    feats, labels, lengths, n_samples, phones, ends, counts = [], [], [], [], [], [], []
    for i, (names, seg_ends) in enumerate(segments):
        wav = workdir / f"{i}.wav"
        if not wav.is_file():
            raise DataError(f"phoneme-frames: festival wrote no audio for utterance {i} of {what}")
        x, sr = read_wav(wav)
        if sr != SAMPLE_RATE:
            raise DataError(f"phoneme-frames: {wav} is at {sr} Hz, expected {SAMPLE_RATE} (utt.wave.resample failed)")
        x = x.astype(np.float64)
        if dither:  # Kaldi's dither: Gaussian noise of `dither` int16 steps, seeded by the utterance id
            rng = np.random.default_rng(zlib.crc32(ids[i].encode()))
            x = x + rng.standard_normal(len(x)) * (dither / 32768.0)
        with torch.no_grad():
            f = mfcc(torch.from_numpy(x))  # (39, n_frames)
        f = f.T.contiguous().numpy().astype(np.float32)  # (n_frames, 39)
        feats.append(f)
        labels.append(frame_labels(seg_ends, [phone_class(p, v.phoneset) for p in names], len(f)))
        lengths.append(len(f))
        n_samples.append(len(x))
        phones += names
        ends += seg_ends
        counts.append(len(names))
    return {"features": np.concatenate(feats), "labels": np.concatenate(labels),
            "lengths": np.asarray(lengths, dtype=np.int32), "n_samples": np.asarray(n_samples, dtype=np.int32),
            "utt_ids": np.asarray(ids), "text": np.asarray([" ".join(s.split()) for s in sentences]),
            "verse_index": np.asarray(shard.verse_index, dtype=np.int32),
            "phones": np.asarray(phones), "phone_ends": np.asarray(ends, dtype=np.float32),
            "phone_counts": np.asarray(counts, dtype=np.int32)}


# ----------------------------------------------------------------------------------------------------------
# Shard files
# ----------------------------------------------------------------------------------------------------------


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (deflated zip of ``.npy``) whose bytes depend only on the arrays: every entry carries
    the date 1980-01-01, unlike ``np.savez`` (which stamps the current time). No object arrays."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


SHARD_KEYS = ("features", "labels", "lengths", "n_samples", "utt_ids", "text", "verse_index", "phones",
              "phone_ends", "phone_counts")


def read_shard(path: str | os.PathLike[str], keys: Sequence[str] = SHARD_KEYS,
               dataset: str = "phoneme-frames") -> dict[str, np.ndarray]:
    """The arrays ``keys`` of one shard file of ``dataset`` (no pickle), checked for consistent lengths: with
    ``lengths`` among the keys, ``features`` and ``labels`` have as many rows as the lengths add up to.

    Raises:
        DataError: the file is missing, not an npz, lacks a key, or its arrays disagree (names the file and says to
            rebuild ``dataset``).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: cannot read this {dataset} shard ({e}); delete it and run "
                        f"`deepnotes data build {dataset}` again to remake it") from e
    if "lengths" in out:
        n_frames = int(out["lengths"].sum())
        for k in ("features", "labels"):
            if k in out and len(out[k]) != n_frames:
                raise DataError(f"{path}: {k} has {len(out[k])} rows but the lengths add up to {n_frames}; "
                                "delete the file and rebuild")
    return out


# ----------------------------------------------------------------------------------------------------------
# The corpus in memory
# ----------------------------------------------------------------------------------------------------------


@dataclass
class FrameCorpus:
    """Utterances of frame features with (optional) frame labels, all frames concatenated.

    Attributes:
        features: (F, C) float32, the frames of every utterance one after the other.
        labels: (F,) int64 class per frame, or None (HW2's test split has none).
        lengths: (U,) int64 frames per utterance.
        utt_ids: U utterance ids.
        source: where it was read from (for reports).

    Raises:
        ValueError: shapes that disagree.
    """

    features: torch.Tensor
    labels: torch.Tensor | None
    lengths: torch.Tensor
    utt_ids: tuple[str, ...]
    source: str = ""

    def __post_init__(self):
        if self.features.ndim != 2:
            raise ValueError(f"features must be (F, C), got shape {tuple(self.features.shape)}")
        if self.lengths.ndim != 1 or len(self.lengths) != len(self.utt_ids):
            raise ValueError(f"lengths (U,) and utt_ids must agree, got {tuple(self.lengths.shape)} and "
                             f"{len(self.utt_ids)}")
        if int(self.lengths.sum()) != len(self.features):
            raise ValueError(f"lengths add up to {int(self.lengths.sum())}, features have {len(self.features)} frames")
        if self.labels is not None and self.labels.shape != (len(self.features),):
            raise ValueError(f"labels must be (F,) = ({len(self.features)},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def n_frames(self) -> int:
        return len(self.features)

    @property
    def offsets(self) -> torch.Tensor:
        """(U + 1,) int64: utterance u holds frames ``offsets[u]:offsets[u + 1]``."""
        return torch.cat([torch.zeros(1, dtype=torch.int64), self.lengths.cumsum(0)])

    def utterance(self, u: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features (T, C), labels (T,) or None)`` of utterance ``u``."""
        o = self.offsets
        s, e = int(o[u]), int(o[u + 1])
        return self.features[s:e], None if self.labels is None else self.labels[s:e]

    def subset(self, index: Sequence[int] | torch.Tensor) -> "FrameCorpus":
        """The utterances ``index`` (in that order) as a new corpus."""
        index = [int(i) for i in index]
        o = self.offsets
        if index:
            frames = torch.cat([torch.arange(int(o[u]), int(o[u + 1])) for u in index])
        else:
            frames = torch.zeros(0, dtype=torch.int64)
        return FrameCorpus(self.features[frames], None if self.labels is None else self.labels[frames],
                           self.lengths[index] if index else torch.zeros(0, dtype=torch.int64),
                           tuple(self.utt_ids[u] for u in index), self.source)


def read_phoneme_frames(root: str | os.PathLike[str], split: str) -> FrameCorpus:
    """One split (``"train"``, ``"validation"``, ``"test"``) of a built phoneme-frames folder.

    Raises:
        ValueError: an unknown split.
        DataError: no manifest (the build did not finish), or a shard is missing or unreadable.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = Path(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{root / 'manifest.json'}: cannot read it ({e}); the build did not finish: run "
                        f"`deepnotes data build {root.name}`") from e
    shards = [rel for rel in sorted(manifest["files"]) if rel.startswith(f"shards/{split}/")]
    if not shards:
        raise DataError(f"{root}: no {split} shards in manifest.json; rebuild with `deepnotes data build {root.name}`")
    feats, labels, lengths, ids = [], [], [], []
    for rel in shards:
        z = read_shard(root / rel, ("features", "labels", "lengths", "utt_ids"))
        feats.append(torch.from_numpy(z["features"]))
        labels.append(torch.from_numpy(z["labels"].astype(np.int64)))
        lengths.append(torch.from_numpy(z["lengths"].astype(np.int64)))
        ids += [str(u) for u in z["utt_ids"]]
    return FrameCorpus(torch.cat(feats), torch.cat(labels), torch.cat(lengths), tuple(ids), f"{root.name} ({split})")


# ----------------------------------------------------------------------------------------------------------
# The dataset entry
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhonemeFramesInfo(BuiltDatasetStatus):
    """Where the synthesized phoneme set lives, whether it is here, how to build and read it (``deepnotes data``)."""

    name: str = "phoneme-frames"
    description: str = ("KJV verses said by 9 festival voices, split by speaker: kal, slt, us1, us3, rab, don (train, "
                        "validation), ked, us2, en1 (test, never heard in training): 39-dim MFCC frames labelled "
                        "with 41 phoneme classes from festival's own timing (HW2)")
    grid: PhonemeGrid = field(default_factory=default_grid, repr=False)
    source: str = ("Debian festival (voices kal_diphone, cmu_us_slt_arctic_hts, us1_mbrola, us3_mbrola, rab_diphone, "
                   "don_diphone, ked_diphone, us2_mbrola, en1_mbrola) + KJV text")
    license: str = ("generated here; festival's voices and the KJV text are free, the MBROLA voices (us1-us3, en1) "
                    "free to use and share but not for sale (see /usr/share/doc/PKG/copyright)")

    def how_to_get(self) -> str:
        return self.build_instructions("festival", PHONEME_PACKAGES, f"{self.grid.n_utterances} utterances",
                                       "deepnotes.data.phonemes.read_phoneme_frames")

    def built_grid(self) -> dict | None:
        """The grid JSON of the manifest (:meth:`PhonemeGrid.to_json`); None without a readable one."""
        return _grid_json(self.manifest_path(), "grid")

    def is_current(self) -> bool:
        """A manifest is there and its grid is this version's (the documentation of the setting units it also
        holds does not count)."""
        built = self.built_grid()
        return built is not None and _same_grid(built, self.grid.to_json())

    def status(self) -> str:
        if self.manifest_path().is_file() and not self.is_current():
            return (f"outdated at {self.cache_dir()} (built from another grid of voices): `deepnotes data build "
                    f"{self.name}` updates it, keeping the shards that did not change")
        return super().status()

    def load(self, split: str, build: bool = True) -> FrameCorpus:
        """One split, building the set first when it is missing or outdated and ``build`` (default True).

        Raises:
            DataError: missing or outdated and not ``build``, or as :meth:`build` and :func:`read_phoneme_frames`.
        """
        if not self.manifest_path().is_file() or not self.is_current():
            if not build and self.manifest_path().is_file():
                raise DataError(f"{self.name} is {self.status()}")  # outdated at ...: run ...
            if not build:
                raise DataError(f"{self.name} is missing; run `deepnotes data build {self.name}`")
            self.build()
        return read_phoneme_frames(self.cache_dir(), split)

    def build(self, force: bool = False, workers: int | None = None, progress: bool | None = None) -> Path:
        """Synthesize every missing shard, then write README.md and manifest.json.

        Args:
            force: delete the folder and build from scratch (default False: keep what is there; a
                folder whose manifest has this grid is returned as is; in one built, or partly built, from
                another grid the shards whose voice, setting, split and verses did not change are kept).
            workers: festival processes at a time (default ``min(2, os.cpu_count())``).
            progress: show a tqdm bar (default: only on a terminal).

        Returns:
            :meth:`cache_dir`.

        Raises:
            DataError: festival or a voice is missing (names the apt packages) or failed (names the
                shard), or the KJV text cannot be built.
        """
        from deepnotes.data.text import load_kjv

        root = self.cache_dir()
        if force and root.exists():
            shutil.rmtree(root)
        if self.is_current():
            return root
        grid = self.grid
        check_festival([v.name for v in grid.voices])
        verses = load_kjv()
        texts = [v.text for v in verses]
        shards = grid.shards(texts)
        keep = self._reusable_shards(texts, shards)
        root.mkdir(parents=True, exist_ok=True)
        self.manifest_path().unlink(missing_ok=True)  # an older grid's: the folder is about to change
        workroot = root / ".work"
        shutil.rmtree(workroot, ignore_errors=True)
        for p in list(root.glob("shards/*/.*.tmp")):  # left by a killed build
            p.unlink()
        for p in list(root.glob("shards/*/*.npz")):  # not in this grid, or changed (an older build)
            if p.relative_to(root).as_posix() not in keep:
                p.unlink()
        write_json_atomic(root / GRID_FILE, grid.to_json())  # the grid the shards belong to, before the first
        todo = [s for s in shards if not (root / s.path).is_file()]
        workroot.mkdir()
        mfcc = MFCCWithDeltas(SAMPLE_RATE)

        def run_job(shard: Shard) -> int:
            with tempfile.TemporaryDirectory(dir=workroot) as tmp:
                arrays = synthesize_shard(shard, texts, Path(tmp), mfcc)
            write_bytes_atomic(root / shard.path, npz_bytes(arrays))
            return len(shard.verse_index)

        bar = tqdm(total=grid.n_utterances, initial=grid.n_utterances - sum(len(s.verse_index) for s in todo),
                   desc=self.name, unit="utt", file=sys.stderr,
                   disable=(None if progress is None else not progress))
        run_jobs([(s,) for s in todo], run_job, workers, bar, workroot)

        counts = shard_counts(root, shards)
        write_text_atomic(root / "README.md", self.readme(counts))
        files = sorted(s.path for s in shards) + ["README.md"]
        versions = {k: v for k, v in engine_versions().items() if k.removeprefix("deb:") in PHONEME_PACKAGES}
        write_json_atomic(self.manifest_path(), {
            "dataset": self.name,
            "format": "shards/<split>/<voice>_s<k>_<chunk>.npz: zip of .npy arrays (see deepnotes.data.phonemes)",
            "features": "deepnotes.audio.mfcc_with_deltas: 13 MFCC + delta + delta-delta, 25 ms Hamming window, "
                        f"10 ms hop, centred frames, 16 kHz; dither {DITHER} int16 steps seeded by zlib.crc32(utt_id)",
            "labels": "class of the festival Segment holding each frame centre t = 10 ms * i",
            "phones": list(PHONES),
            "voice_phonesets": {v.name: v.phoneset for v in grid.voices},
            "festival_phone_maps": PHONE_MAPS,
            "engines": versions,
            "grid": grid.to_json(),
            "counts": counts,
            "files": {rel: sha256_file(root / rel) for rel in files},
        })
        return root

    def _reusable_shards(self, texts: Sequence[str], shards: Sequence[Shard]) -> set[str]:
        """The paths of ``shards`` whose file in the folder can be kept: all when the folder's recorded grid
        (``.grid.json``, else the manifest's) is this one; with another grid, those whose :func:`shard_key` is
        the same under both; none when no grid is recorded (a folder of unknown shards)."""
        root = self.cache_dir()
        recorded = _grid_json(root / GRID_FILE) or self.built_grid()
        if recorded is None:
            return set()
        if _same_grid(recorded, self.grid.to_json()):
            return {s.path for s in shards}
        try:
            old = {s.path: shard_key(s) for s in PhonemeGrid.from_json(recorded).shards(texts)}
        except (ValueError, DataError):
            return set()
        return {s.path for s in shards if old.get(s.path) == shard_key(s)}

    def readme(self, counts: dict[str, dict[str, int]]) -> str:
        """The dataset folder's README.md: what it is, the voices of each split, the counts."""
        lines = [f"# {self.name}", "",
                 "King James Bible verses said by Debian's festival; every 10 ms frame is a 39-dim MFCC vector "
                 "(13 + delta + delta-delta, 25 ms window) labelled with one of 41 phoneme classes taken from "
                 "festival's own phone timing (the Segment relation). The frame-level phoneme classification "
                 f"set of ML2021/2022 HW2, made offline. Built by `deepnotes data build {self.name}`; "
                 "manifest.json holds festival's version, the grid and the SHA-256 of every shard.", "",
                 "Classes (label = index): " + " ".join(f"{i}:{p}" for i, p in enumerate(PHONES)), "",
                 *(f"festival's {ps} phones ({', '.join(v.name for v in self.grid.voices if v.phoneset == ps)}) "
                   "-> class: " + " ".join(f"{a}:{c}" for a, c in PHONE_MAPS[ps].items()) + "\n"
                   for ps in PHONE_MAPS if any(v.phoneset == ps for v in self.grid.voices)),
                 "Split by speaker (one recorded speaker a voice): the test speakers are never heard in training; "
                 "validation holds other verses said by the training voices.", ""]
        for split in SPLITS:
            c = counts[split]
            lines.append(f"## {split}: {c['utterances']} utterances, {c['frames']} frames")
            lines.append("")
            for v in self.grid.voices:
                if v.split == split or (split == "validation" and v.val_sentences):
                    per = v.val_sentences if split == "validation" else v.sentences
                    lines.append(f"- {v.name}: {len(v.settings)} setting(s) x {per} verses; (rate, pitch) = "
                                 + ", ".join(f"({r}, {p})" for r, p in v.settings))
            lines.append("")
        return "\n".join(lines)


def _grid_json(path: Path, key: str | None = None) -> dict | None:
    """The grid JSON in ``path`` (under ``key``); None without a readable one."""
    try:
        d = json.loads(path.read_text())
        grid = d[key] if key else d
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return grid if isinstance(grid, dict) else None


def _same_grid(a: dict, b: dict) -> bool:
    """Two grid JSONs say the same build (the setting units are documentation)."""
    return {k: v for k, v in a.items() if k != "setting_units"} == {k: v for k, v in b.items() if k != "setting_units"}


def shard_counts(root: Path, shards: Sequence[Shard]) -> dict[str, dict[str, int]]:
    """Utterances and frames of each split, read from the shard files."""
    out = {s: {"utterances": 0, "frames": 0} for s in SPLITS}
    for s in shards:
        lengths = read_shard(root / s.path, ("lengths",))["lengths"]
        out[s.split]["utterances"] += len(lengths)
        out[s.split]["frames"] += int(lengths.sum())
    return out


PHONEME_FRAMES = PhonemeFramesInfo()
PHONEME_FRAMES_SMALL = PhonemeFramesInfo(
    name="phoneme-frames-small",
    description="a 36-utterance phoneme-frames (6 voices, one setting each: both phone sets, diphone, HTS and "
                "MBROLA voices; for tests and smoke runs)",
    grid=small_grid(),
)
#: The built phoneme sets by name (the lab's ``--dataset``).
PHONEME_DATASETS: dict[str, PhonemeFramesInfo] = {d.name: d for d in (PHONEME_FRAMES, PHONEME_FRAMES_SMALL)}


def verify_phoneme_frames(root: str | os.PathLike[str]) -> list[str]:
    """The files of ``root/manifest.json`` whose SHA-256 differs or that are missing (empty: all good).

    Raises:
        DataError: no readable manifest.
    """
    return verify_manifest(root)


# ----------------------------------------------------------------------------------------------------------
# HW2's own files
# ----------------------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror}); pass the course's libriphone/ folder") from e


def load_hw2_libriphone(folder: str | os.PathLike[str], split: str, train_ratio: float = HW2_TRAIN_RATIO,
                        seed: int = HW2_SPLIT_SEED) -> FrameCorpus:
    """One split of the course's HW2 files (``libriphone/``), by path.

    Args:
        folder: holds ``train_labels.txt``, ``train_split.txt``, ``test_split.txt`` and ``feat/{train,test}/
            <utt_id>.pt`` (a (T, 39) float tensor each, read with ``torch.load(weights_only=True)``).
        split: ``"train"`` or ``"validation"`` (:func:`hw2_train_val_split` of ``train_split.txt``, with
            labels), ``"test"`` (``test_split.txt``, no labels: ``labels`` is None).
        train_ratio, seed: of the split; defaults 0.8 and 1337, the 2022 sample code's.

    Raises:
        ValueError: an unknown split.
        DataError: a missing file, a feature file that is not a 2-D float tensor, a missing label line,
            or a label count that differs from the frame count (each names the file and utterance).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; pass the course's libriphone/ folder")
    mode = "test" if split == "test" else "train"
    ids = _read_lines(folder / f"{mode}_split.txt")
    labels: dict[str, list[int]] | None = None
    if mode == "train":
        ids = hw2_train_val_split(ids, train_ratio, seed)[0 if split == "train" else 1]
        labels = {}
        label_path = folder / "train_labels.txt"
        for lineno, line in enumerate(_read_lines(label_path), 1):
            parts = line.split()
            try:
                labels[parts[0]] = [int(p) for p in parts[1:]]
            except ValueError:
                raise DataError(f"{label_path} line {lineno}: labels must be integers") from None
    feats, labs, lengths = [], [], []
    for u in ids:
        path = folder / "feat" / mode / f"{u}.pt"
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise DataError(f"{path} is missing (listed in {mode}_split.txt)") from None
        except Exception as e:  # torch raises several kinds for a damaged or non-tensor file
            raise DataError(f"{path}: cannot read it as a tensor file ({type(e).__name__}: {e})") from e
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
            raise DataError(f"{path}: expected a (T, 39) float tensor, got "
                            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if feats and x.shape[1] != feats[0].shape[1]:
            raise DataError(f"{path}: {x.shape[1]} features a frame, the others have {feats[0].shape[1]}")
        if labels is not None:
            if u not in labels:
                raise DataError(f"{folder / 'train_labels.txt'} has no line for {u}")
            y = labels[u]
            if len(y) != len(x):
                raise DataError(f"{u}: {len(y)} labels in train_labels.txt but {len(x)} frames in {path}")
            if y and not 0 <= min(y) <= max(y) < N_PHONE_CLASSES:
                raise DataError(f"{u}: labels must lie in 0..{N_PHONE_CLASSES - 1}")
            labs.append(torch.tensor(y, dtype=torch.int64))
        feats.append(x.float())
        lengths.append(len(x))
    if not ids:
        raise DataError(f"{folder}: the {split} split is empty")
    return FrameCorpus(torch.cat(feats), torch.cat(labs) if labels is not None else None,
                       torch.tensor(lengths, dtype=torch.int64), tuple(ids), f"{folder.name} ({split})")


def write_hw2_libriphone(folder: str | os.PathLike[str], train: FrameCorpus, test: FrameCorpus) -> Path:
    """Write ``train`` (with labels) and ``test`` in HW2's ``libriphone/`` layout (see :func:`load_hw2_libriphone`).

    Raises:
        ValueError: ``train`` has no labels, or an utterance id holds white space or a path separator.
    """
    if train.labels is None:
        raise ValueError("train must have labels")
    folder = Path(folder)
    for mode, corpus in (("train", train), ("test", test)):
        bad = [u for u in corpus.utt_ids if re.search(r"[\s/\\]", u)]
        if bad:
            raise ValueError(f"utterance ids must not hold white space or slashes, e.g. {bad[0]!r}")
        d = folder / "feat" / mode
        d.mkdir(parents=True, exist_ok=True)
        for u in range(len(corpus)):
            x, _ = corpus.utterance(u)
            torch.save(x.clone(), d / f"{corpus.utt_ids[u]}.pt")
        write_text_atomic(folder / f"{mode}_split.txt", "".join(f"{u}\n" for u in corpus.utt_ids))
    write_text_atomic(folder / "train_labels.txt", "".join(
        f"{u} {' '.join(str(int(v)) for v in train.utterance(i)[1])}\n" for i, u in enumerate(train.utt_ids)))
    return folder

