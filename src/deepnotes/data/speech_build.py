"""``deepnotes data build speech-keywords``: the 35 Speech Commands v2 words, synthesized offline.

Source: the Speech Commands exercise of the curriculum notes (seed 000) and P. Warden, "Speech Commands:
A Dataset for Limited-Vocabulary Speech Recognition", arXiv:1804.03209 (2018), whose layout this set
copies so that :func:`deepnotes.data.speech.load_speech_commands` reads both. Facts about the engines:
``shared/DATA.md``, "Speech keywords in the Speech Commands layout".

Six Debian text-to-speech engines say every word over a grid of voices, rates and pitches:

- **espeak-ng** (formant synthesis): 4 English accents x 13 voice variants (``+m1..+m8``, ``+f1..+f5``),
  rate ``-s`` (words a minute) x pitch ``-p`` (0-99). ``en-gb`` is named by its voice file (``gmw/en+m3``):
  by language name espeak-ng drops the variant (:attr:`SynthVoice.espeak_voice`).
- **MBROLA** through espeak-ng (diphone databases of recorded speakers, Debian non-free): ``mb-us1..3``, ``mb-en1``
  (native) and 16 ``mb-XX-en`` voices (German, French, Greek, Hungarian, Dutch, Polish, Romanian, Swedish,
  Afrikaans speakers saying English); rate ``-s`` x pitch ``-p``.
- **flite** (diphone and clustergen voices of recorded speakers): ``kal``, ``kal16``, ``awb``, ``rms``,
  ``slt``; rate ``duration_stretch`` (>1 is slower) x pitch ``f0_shift`` (a factor on the F0 contour;
  ``rms`` ignores every pitch control, so it gets rates only).
- **festival**: ``kal_diphone``, ``ked_diphone``, ``rab_diphone``, ``don_diphone`` and the MBROLA voices
  ``us1_mbrola``..``us3_mbrola``, ``en1_mbrola`` (rate ``Duration_Stretch`` x mean F0 ``target_f0_mean`` in Hz)
  and ``cmu_us_slt_arctic_hts`` (HTS speed ``-r``, >1 is faster; festival's HTS module takes no pitch option).
  One festival process says all 35 words of a setting, so its start-up is paid once.
- **SVOX Pico** (``pico2wave``, en-US and en-GB): ``<speed level='R'>`` x ``<pitch level='P'>`` markup.
- **RHVoice** (``RHVoice-test``: alan, bdl, clb, evgeniy-eng, lyubov, slt): ``-r`` rate x ``-t`` pitch, in %.

The recorded speakers (:data:`SPEAKERS`: 34, with sex and accent) and each voice's licence
(:data:`VOICE_LICENCES`) go into the folder's README.md. A voice whose program or data is missing here is skipped
with a warning and listed in the manifest (:func:`missing_voices`); ``make system-speech`` installs them all.

Not in the default grid, but supported by the builder (:func:`czech_voices`): festival's Czech voices
``czech_machac`` and ``czech_ph`` (two more recorded speakers, for the training split) saying the English words:
each word's pronunciation from festival's CMU lexicon (festlex-cmu) mapped phone by phone onto the voice's
Czech phone set (:data:`PHONE_MAPS`, :func:`lexicon_entry`); rate ``Duration_Stretch`` x mean F0
``int_general_params f0_mean`` in Hz. pocketsphinx recognizes 83 % and 74 % of their 35 words (kal_diphone:
86 %, ked_diphone: 74 %; ``benchmarks/foreign_voices.py``), but adding them to the training split did not
raise keyword-spotting accuracy on the validation or the test voices (benchmarks/RESULTS.md), so the default
set stays without them.

Each engine's output goes through ``sox -R -D IN -r 16000 -c 1 -b 16 OUT silence 1 0.005 0.3% reverse
silence 1 0.005 0.3% reverse pad 0.02 0.02`` (trim silence at both ends, 20 ms margins; ``-R`` fixed
seed and ``-D`` no dither make it byte-identical run to run) and is centre-padded with zeros to exactly
16000 samples (1.000 s). A word still longer than 1 s after trimming (slow rates) is shortened with
``sox tempo -s`` (time-stretch without a pitch change) to 0.96 s; the manifest lists those files.

**Split by speaker, never by clip.** The split unit is the recorded speaker behind a voice, whatever the engine
(slt through flite, festival and RHVoice; us2 through MBROLA in espeak-ng and in festival), and for espeak-ng's
formant voices the variant (the same variant in another accent is the same "voice"); :data:`SPEAKER_SPLITS`:

- test: awb, ked, us2, de3, fr1, hu1, bdl, lyubov, Pico en-GB, espeak-ng m7 (all six engines; male and female,
  native and accented English);
- validation: slt, en1, sw2, gr2, alan, espeak-ng f4;
- train: every other speaker (kal, rms, rab, don, us1, us3, 11 accented MBROLA speakers, clb, evgeniy, Pico
  en-US, 11 espeak-ng variants).

so validation and test measure accuracy on speakers never heard in training. The default grid gives 27,020 clips
(63 % / 16 % / 21 %); :func:`small_grid` (registered as ``speech-keywords-small``) gives 595 clips for tests.
``testing_list_v1.txt`` lists the test clips of the first build's test voices (:data:`V1_TEST_VOICES`), kept with
their settings so that a model is also scored on the old test set.

File names follow Speech Commands: ``<word>/<voicehash>_nohash_<k>.wav`` where ``voicehash`` is the
first 8 hex digits of SHA-256 of the voice id (``"flite:kal16"``, ``"espeak-ng:en-us+m3"``) and ``k``
the index of the (rate, pitch) setting. ``validation_list.txt`` and ``testing_list.txt`` list relative
paths; ``_background_noise_/`` holds white, pink and brown noise from ``sox synth``.

The build is deterministic (same engine versions -> same bytes; the manifest holds no time stamps),
resumable (each clip is written to ``.NAME.tmp`` and renamed; clips already there are kept, leftover
temporary files removed; ``manifest.json`` is written last) and runs two jobs at a time (each job is one
voice setting: 35 words), with a tqdm progress bar on a terminal.

:func:`pocketsphinx_recognize` runs Debian's CMU pocketsphinx with a grammar of only the 35 words: a sanity
check of the generated set and a baseline for keyword-spotting models
(:func:`deepnotes.metrics.speech.pocketsphinx_baseline`).
"""

from __future__ import annotations

import functools
import hashlib
import html
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from deepnotes.data.download import sha256_file
from deepnotes.data.paths import data_root
from deepnotes.data.splits import group_split
from deepnotes.data.speech import (BACKGROUND_NOISE_DIR, SAMPLE_RATE, SPEECH_COMMANDS_V2_WORDS, TESTING_LIST,
                                   TESTING_LIST_V1, VALIDATION_LIST, wav_bytes)
from deepnotes.errors import DataError
from deepnotes.io import write_json_atomic, write_text_atomic

ENGINES: tuple[str, ...] = ("espeak-ng", "mbrola", "flite", "festival", "pico", "rhvoice")
#: Debian packages from ``main`` the build needs.
SPEECH_PACKAGES_MAIN: tuple[str, ...] = (
    "espeak-ng", "flite", "festival", "festlex-cmu", "festvox-kallpc16k", "festvox-kdlpc16k",
    "festvox-us-slt-hts", "sox", "libsox-fmt-all",
)
MBROLA_IDS: tuple[str, ...] = ("us1", "us2", "us3", "en1", "af1", "de1", "de2", "de3", "de4", "de5", "de6", "fr1",
                               "fr4", "gr2", "hu1", "nl2", "pl1", "ro1", "sw1", "sw2")
#: Debian packages from ``contrib`` and ``non-free`` (more recorded speakers; the apt sources must list those
#: components: ``make system-speech`` adds them).
SPEECH_PACKAGES_NONFREE: tuple[str, ...] = (
    "mbrola", *(f"mbrola-{i}" for i in MBROLA_IDS), "festvox-rablpc16k", "festvox-don", "festvox-us1", "festvox-us2",
    "festvox-us3", "festvox-en1", "libttspico-utils", "rhvoice", "rhvoice-english",
)
#: Every Debian package the build can use (the README's install line).
SPEECH_PACKAGES: tuple[str, ...] = SPEECH_PACKAGES_MAIN + SPEECH_PACKAGES_NONFREE
#: The program each engine runs, and the packages it comes from.
ENGINE_PROGRAMS: dict[str, str] = {"espeak-ng": "espeak-ng", "mbrola": "espeak-ng", "flite": "flite",
                                   "festival": "festival", "pico": "pico2wave", "rhvoice": "RHVoice-test"}
PROGRAM_PACKAGES: dict[str, tuple[str, ...]] = {
    "espeak-ng": ("espeak-ng",), "flite": ("flite",), "festival": ("festival", "festlex-cmu"),
    "sox": ("sox", "libsox-fmt-all"), "mbrola": ("mbrola",), "pico2wave": ("libttspico-utils",),
    "RHVoice-test": ("rhvoice", "rhvoice-english"),
}
FESTIVAL_VOICE_PACKAGES: dict[str, str] = {
    "kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts", "czech_machac": "festvox-czech-machac",
    "czech_ph": "festvox-czech-ph", "rab_diphone": "festvox-rablpc16k", "don_diphone": "festvox-don",
    "us1_mbrola": "festvox-us1", "us2_mbrola": "festvox-us2", "us3_mbrola": "festvox-us3", "en1_mbrola": "festvox-en1",
}
_VERSION_PACKAGES = ("espeak-ng", "espeak-ng-data", "flite", "libflite1", "festival", "festlex-cmu",
                     "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts", "festvox-rablpc16k", "festvox-don",
                     "festvox-us1", "festvox-us2", "festvox-us3", "festvox-en1", "mbrola",
                     *(f"mbrola-{i}" for i in MBROLA_IDS), "libttspico0", "libttspico-data",
                     "libttspico-utils", "rhvoice", "rhvoice-english", "sox", "libsox3")

CLIP_SAMPLES = SAMPLE_RATE
#: Words longer than this after trimming are time-compressed (``sox tempo -s``) to it: 0.96 s.
TEMPO_TARGET = 15360
SOX_TRIM = ("silence", "1", "0.005", "0.3%", "reverse", "silence", "1", "0.005", "0.3%", "reverse",
            "pad", "0.02", "0.02")
NOISE_COLOURS: tuple[str, ...] = ("white", "pink", "brown")

ESPEAK_ACCENTS: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                                   "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
#: espeak-ng accent -> its voice file, for the accents whose name does not take a ``+variant`` (see
#: :attr:`SynthVoice.espeak_voice`).
ESPEAK_VOICE_FILES: dict[str, str] = {"en-gb": "gmw/en"}
ESPEAK_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5")
#: The accents of every espeak-ng formant variant in the default grid (4 of the 8, to leave room for the
#: recorded speakers).
ESPEAK_HELD_OUT_ACCENTS: tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-029")

#: The speakers behind the voices: speaker -> (sex, accent of their English). The recorded speakers of flite,
#: festival, MBROLA, Pico and RHVoice; espeak-ng's formant variants are listed as ``espeak-ng+VARIANT``.
SPEAKERS: dict[str, tuple[str, str]] = {
    "kal": ("male", "US"), "ked": ("male", "US"), "awb": ("male", "Scottish"), "rms": ("male", "US"),
    "slt": ("female", "US"), "rab": ("male", "British"), "don": ("male", "British"),
    "us1": ("female", "US"), "us2": ("male", "US"), "us3": ("male", "US"), "en1": ("male", "British"),
    "af1": ("male", "Afrikaans"), "de1": ("female", "German"), "de2": ("male", "German"),
    "de3": ("female", "German"), "de4": ("male", "German"), "de5": ("female", "German"),
    "de6": ("male", "German"), "fr1": ("male", "French"), "fr4": ("female", "French"), "gr2": ("male", "Greek"),
    "hu1": ("female", "Hungarian"), "nl2": ("male", "Dutch"), "pl1": ("female", "Polish"),
    "ro1": ("male", "Romanian"), "sw1": ("male", "Swedish"), "sw2": ("female", "Swedish"),
    "pico-en-US": ("female", "US"), "pico-en-GB": ("female", "British"), "alan": ("male", "Scottish"),
    "bdl": ("male", "US"), "clb": ("female", "US"), "evgeniy": ("male", "Russian"), "lyubov": ("female", "Russian"),
    "machac": ("male", "Czech"), "ph": ("male", "Czech"),
}
#: The split of each speaker (recorded speaker, or ``espeak-ng+VARIANT``); the others: train. Every voice of a
#: speaker, whatever its engine, is on that speaker's side (slt: flite, festival and RHVoice; us2: MBROLA through
#: espeak-ng and festival). Test: 10 speakers from all 6 engines, male and female, native and accented English.
SPEAKER_SPLITS: dict[str, str] = {
    "slt": "validation", "en1": "validation", "sw2": "validation", "gr2": "validation", "alan": "validation",
    "espeak-ng+f4": "validation",
    "awb": "test", "ked": "test", "us2": "test", "de3": "test", "fr1": "test", "hu1": "test", "bdl": "test",
    "lyubov": "test", "pico-en-GB": "test", "espeak-ng+m7": "test",
}
#: The test voices of the first build (2026-11, 5 recorded speakers): their clips are still in the test split,
#: byte-identical, and ``testing_list_v1.txt`` lists them, so a model is also scored on the old test set.
V1_TEST_VOICES: tuple[str, ...] = ("flite:awb", "festival:ked_diphone", *(f"espeak-ng:{a}+m7" for a in
                                                                          ESPEAK_HELD_OUT_ACCENTS))
#: Voice (by engine) -> the recorded speaker behind it.
VOICE_SPEAKERS: dict[str, dict[str, str]] = {
    "flite": {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"},
    "festival": {"kal_diphone": "kal", "ked_diphone": "ked", "cmu_us_slt_arctic_hts": "slt",
                 "rab_diphone": "rab", "don_diphone": "don", "us1_mbrola": "us1", "us2_mbrola": "us2",
                 "us3_mbrola": "us3", "en1_mbrola": "en1", "czech_machac": "machac", "czech_ph": "ph"},
    "mbrola": {**{f"mb-{i}": i for i in ("us1", "us2", "us3", "en1")},
               **{f"mb-{i}-en": i for i in MBROLA_IDS if i not in ("us1", "us2", "us3", "en1")}},
    "pico": {"en-US": "pico-en-US", "en-GB": "pico-en-GB"},
    "rhvoice": {"alan": "alan", "bdl": "bdl", "clb": "clb", "evgeniy-eng": "evgeniy", "lyubov": "lyubov",
                "slt": "slt"},
}
#: Licence of each engine's voices (short form; the full text: /usr/share/doc/PACKAGE/copyright).
VOICE_LICENCES: dict[str, str] = {
    "espeak-ng": "GPL-3+", "flite": "BSD-style (CMU ARCTIC / CMU Flite licence)",
    "festival": "free, BSD-style (festvox licence; us1-us3/en1: the MBROLA databases' terms)",
    "mbrola": "MBROLA database licence: free to use and share with the MBROLA program, not for sale",
    "pico": "Apache-2.0", "rhvoice": "LGPL-2.1+ (evgeniy-eng: CC-BY-NC-SA-4.0, lyubov: CC-BY-NC-ND-4.0)",
}
#: What ``rate`` and ``pitch`` of a setting mean for each kind of voice.
SETTING_UNITS: dict[str, dict[str, str]] = {
    "espeak-ng": {"rate": "-s words a minute (default 175)", "pitch": "-p 0-99 (default 50)"},
    "flite": {"rate": "--setf duration_stretch (1 = normal, >1 slower)",
              "pitch": "--setf f0_shift (factor on F0; null: voice has no pitch control)"},
    "festival-diphone": {"rate": "(Parameter.set 'Duration_Stretch x) (>1 slower)",
                         "pitch": "int_lr_params target_f0_mean, Hz (voice defaults: kal, ked, rab, us3 105; "
                                  "don 135; us1 160; us2 90; en1 110)"},
    "festival-hts": {"rate": "hts_engine_params -r speed (>1 faster)", "pitch": "null (no pitch option)"},
    "festival-mapped": {"rate": "(Parameter.set 'Duration_Stretch x) (>1 slower)",
                        "pitch": "int_general_params f0_mean, Hz (czech_machac default 75, czech_ph 136)"},
    "mbrola": {"rate": "espeak-ng -s words a minute (default 175)", "pitch": "espeak-ng -p 0-99 (default 50)"},
    "pico": {"rate": "<speed level='R'> markup, % of normal (>100 faster)",
             "pitch": "<pitch level='P'> markup, % of normal"},
    "rhvoice": {"rate": "RHVoice-test -r, % (>100 faster; default 100)", "pitch": "RHVoice-test -t, % (default 100)"},
}

# Non-English festival voices saying the English words: the CMU pronunciation mapped onto their phones.
_CZECH = dict(aa="a:", ae="e", ah="a", ao="o:", aw="a u", ax="e", ay="a j", eh="e", er="e r", ey="e j", ih="i",
              iy="i:", ow="o u", oy="o j", uh="u", uw="u:", b="b", ch="c~", d="d", dh="d", f="f", g="g", hh="h",
              jh="dz~", k="k", l="l", m="m", n="n", ng="n", p="p", r="r", s="s", sh="s~", t="t", th="f", v="v",
              w="u", y="j", z="z", zh="z~")
_ITALIAN = dict(aa="a", ae="E", ah="a", ao="O", aw="a w", ax="a", ay="a j", eh="E", er="e r", ey="e j", ih="i",
                iy="i", ow="o w", oy="O j", uh="u", uw="u", b="b", ch="tS", d="d", dh="d", f="f", g="g", hh="",
                jh="dZ", k="k", l="l", m="m", n="n", ng="ng", p="p", r="r", s="s", sh="S", t="t", th="f", v="v",
                w="w", y="j", z="z", zh="Z")
#: Italian marks stress on the vowel phone itself (a1 = stressed a).
_ITALIAN_STRESSED = {"i": "i1", "e": "e1", "E": "E1", "a": "a1", "o": "o1", "O": "O1", "u": "u1"}
#: festival voice -> (CMU phone -> the voice's phones, renaming of stressed vowels or None). Each English
#: phone becomes the nearest phone of the language; sounds the language lacks get its speakers' usual
#: substitutes (/θ/ -> f so that "three" is not "tree"; /h/ dropped in Italian; /w/ -> u in Czech). The
#: Czech voices are :func:`czech_voices` (not in :func:`default_grid`); the Italian ones (pocketsphinx: 60 %)
#: are for the benchmark.
PHONE_MAPS: dict[str, tuple[dict[str, str], dict[str, str] | None]] = {
    "czech_machac": (_CZECH, None), "czech_ph": (_CZECH, None),
    "pc_diphone": (_ITALIAN, _ITALIAN_STRESSED), "lp_diphone": (_ITALIAN, _ITALIAN_STRESSED),
}
_CMU_VOWELS = frozenset("aa ae ah ao aw ax ay eh er ey ih iy ow oy uh uw".split())


# ----------------------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthVoice:
    """One synthetic voice and its (rate, pitch) settings.

    Attributes:
        engine: ``"espeak-ng"``, ``"flite"`` or ``"festival"``.
        name: espeak-ng accent (``"en-gb-scotland"``), flite voice (``"kal16"``) or festival voice
            (``"ked_diphone"``).
        variant: espeak-ng voice variant (``"m3"``); ``""`` for the others.
        settings: ``(rate, pitch)`` pairs, meaning per :data:`SETTING_UNITS`; ``pitch`` None where the
            voice has no pitch control. The index ``k`` of a setting is the ``_nohash_<k>`` of its files.
    """

    engine: str
    name: str
    variant: str = ""
    settings: tuple[tuple[float, float | None], ...] = ((1.0, None),)

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if (self.engine == "espeak-ng") != bool(self.variant):
            raise ValueError("variant is required for espeak-ng voices and only for them")
        if self.engine != "espeak-ng" and self.name not in VOICE_SPEAKERS[self.engine]:
            raise ValueError(f"unknown {self.engine} voice {self.name!r}; known: "
                             f"{', '.join(VOICE_SPEAKERS[self.engine])}")
        if not self.settings or len(set(self.settings)) != len(self.settings):
            raise ValueError(f"{self.voice_id}: settings must be non-empty and distinct")

    @property
    def voice_id(self) -> str:
        """``"espeak-ng:en-us+m3"``, ``"flite:kal16"``, ``"festival:ked_diphone"``."""
        return f"{self.engine}:{self.name}+{self.variant}" if self.variant else f"{self.engine}:{self.name}"

    @property
    def voice_hash(self) -> str:
        """First 8 hex digits of SHA-256 of :attr:`voice_id` (the Speech Commands "speaker id" of the files)."""
        return hashlib.sha256(self.voice_id.encode()).hexdigest()[:8]

    @property
    def speaker(self) -> str:
        """The split unit: the recorded speaker (:data:`SPEAKERS`) or ``"espeak-ng+VARIANT"``."""
        return f"espeak-ng+{self.variant}" if self.engine == "espeak-ng" else VOICE_SPEAKERS[self.engine][self.name]

    @property
    def split(self) -> str:
        return SPEAKER_SPLITS.get(self.speaker, "train")

    @property
    def kind(self) -> str:
        """Key of :data:`SETTING_UNITS`."""
        if self.engine == "festival":
            if self.name in PHONE_MAPS:
                return "festival-mapped"
            return "festival-hts" if self.name.endswith("_hts") else "festival-diphone"
        return self.engine

    @property
    def espeak_voice(self) -> str | None:
        """The ``-v`` argument of an espeak-ng formant voice: ``"en-us+m3"``, or for en-gb the voice *file* and the
        variant, ``"gmw/en+m3"`` (None for the other engines). By language name, ``-v en-gb+m3`` ignores the variant
        in espeak-ng 1.51 (every ``en-gb+VARIANT`` said the same bytes; the other accents honoured it), so the file is
        named instead."""
        if self.engine != "espeak-ng":
            return None
        return f"{ESPEAK_VOICE_FILES.get(self.name, self.name)}+{self.variant}"

    @property
    def packages(self) -> tuple[str, ...]:
        """The Debian packages this voice needs (besides sox)."""
        if self.engine == "festival":
            return (*PROGRAM_PACKAGES["festival"], FESTIVAL_VOICE_PACKAGES[self.name])
        if self.engine == "mbrola":
            return ("espeak-ng", "mbrola", f"mbrola-{self.speaker}")
        return PROGRAM_PACKAGES[ENGINE_PROGRAMS[self.engine]]

    def clip_path(self, word: str, k: int) -> str:
        """Relative path of the clip of ``word`` at setting ``k``: ``word/<voicehash>_nohash_<k>.wav``."""
        return f"{word}/{self.voice_hash}_nohash_{k}.wav"

    def to_json(self) -> dict:
        return {"voice_id": self.voice_id, "voice_hash": self.voice_hash, "engine": self.engine,
                "name": self.name, "variant": self.variant, "speaker": self.speaker, "split": self.split,
                "packages": list(self.packages), **({"espeak_voice": self.espeak_voice} if self.espeak_voice else {}),
                "settings": [{"k": k, "rate": r, "pitch": p} for k, (r, p) in enumerate(self.settings)]}


@dataclass(frozen=True)
class SpeechGrid:
    """The voices (each with its settings) and the words of a build.

    Raises:
        ValueError: two voices with the same id (or hash), an empty voice list, or words that are not
            distinct lower-case letters.
    """

    voices: tuple[SynthVoice, ...]
    words: tuple[str, ...] = SPEECH_COMMANDS_V2_WORDS
    noise_seconds: int = 60

    def __post_init__(self):
        if not self.voices:
            raise ValueError("a grid needs at least one voice")
        if len({v.voice_hash for v in self.voices}) != len(self.voices):
            raise ValueError("voices must be distinct (two voices share a voice id)")
        if not self.words or len(set(self.words)) != len(self.words) or \
                not all(re.fullmatch(r"[a-z]+", w) for w in self.words):
            raise ValueError(f"words must be distinct lower-case words, got {self.words}")
        if self.noise_seconds <= 0:
            raise ValueError(f"noise_seconds must be positive, got {self.noise_seconds}")

    @property
    def n_clips(self) -> int:
        return len(self.words) * sum(len(v.settings) for v in self.voices)

    def clips(self) -> list[tuple[str, SynthVoice]]:
        """Every ``(relative path, voice)`` of the build, in grid order."""
        return [(v.clip_path(w, k), v) for v in self.voices for k in range(len(v.settings)) for w in self.words]

    def to_json(self) -> dict:
        return {"words": list(self.words), "noise_seconds": self.noise_seconds, "setting_units": SETTING_UNITS,
                "voices": [v.to_json() for v in self.voices]}


def default_grid() -> SpeechGrid:
    """The grid of ``deepnotes data build speech-keywords``: 772 voice settings x 35 words = 27,020 clips.

    - espeak-ng formant variants: rates 140, 185 x pitches 35, 65, 13 variants x 4 accents
      (:data:`ESPEAK_HELD_OUT_ACCENTS`).
    - flite: duration_stretch 0.8 ... 1.5 (7) x f0_shift 0.8 ... 1.25 (5); rms 12 rates.
    - festival kal and ked diphones: Duration_Stretch 0.85 ... 1.6 (6) x target_f0_mean 85 ... 145 Hz (4);
      HTS slt: 10 speeds 0.7 ... 1.3; rab, don and the MBROLA speakers us1-us3, en1: Duration_Stretch 0.85,
      1.0, 1.2, 1.4 x 3 mean F0s around each voice's own.
    - MBROLA through espeak-ng (20 speakers): rates 130, 165, 200 x pitches 30, 50, 70.
    - Pico (en-US, en-GB): speed 75, 90, 100, 115, 130 % x pitch 85, 100, 115 %.
    - RHVoice (6 speakers): rate 75, 90, 105, 120 % x pitch 85, 100, 115 %.
    """
    voices = []
    espeak = tuple(itertools.product((140, 185), (35, 65)))
    for variant in ESPEAK_VARIANTS:
        for accent in ESPEAK_HELD_OUT_ACCENTS:
            voices.append(SynthVoice("espeak-ng", accent, variant, espeak))
    flite = tuple(itertools.product((0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5), (0.8, 0.9, 1.0, 1.12, 1.25)))
    for name in ("kal", "kal16", "awb", "slt"):
        voices.append(SynthVoice("flite", name, "", flite))
    voices.append(SynthVoice("flite", "rms", "", tuple(
        (r, None) for r in (0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5))))
    diphone = tuple(itertools.product((0.85, 1.0, 1.15, 1.3, 1.45, 1.6), (85, 105, 125, 145)))
    voices.append(SynthVoice("festival", "kal_diphone", "", diphone))
    voices.append(SynthVoice("festival", "ked_diphone", "", diphone))
    voices.append(SynthVoice("festival", "cmu_us_slt_arctic_hts", "", tuple(
        (r, None) for r in (0.7, 0.75, 0.8, 0.85, 0.9, 1.0, 1.1, 1.2, 1.25, 1.3))))
    for name, f0s in (("rab_diphone", (85, 105, 125)), ("don_diphone", (110, 135, 160)),
                      ("us1_mbrola", (135, 160, 190)), ("us2_mbrola", (75, 90, 110)),
                      ("us3_mbrola", (85, 105, 125)), ("en1_mbrola", (90, 110, 130))):
        voices.append(SynthVoice("festival", name, "", tuple(itertools.product((0.85, 1.0, 1.2, 1.4), f0s))))
    mbrola = tuple(itertools.product((130, 165, 200), (30, 50, 70)))
    voices += [SynthVoice("mbrola", name, "", mbrola) for name in VOICE_SPEAKERS["mbrola"]]
    pico = tuple(itertools.product((75, 90, 100, 115, 130), (85, 100, 115)))
    voices += [SynthVoice("pico", name, "", pico) for name in VOICE_SPEAKERS["pico"]]
    rhvoice = tuple(itertools.product((75, 90, 105, 120), (85, 100, 115)))
    voices += [SynthVoice("rhvoice", name, "", rhvoice) for name in VOICE_SPEAKERS["rhvoice"]]
    return SpeechGrid(tuple(voices))


def czech_voices() -> tuple[SynthVoice, SynthVoice]:
    """festival's two Czech voices as the twelfth session measured them in the training split (not in
    :func:`default_grid`: no gain, benchmarks/RESULTS.md): the diphone voices' 6 ``Duration_Stretch`` values
    0.85 ... 1.6 x ``f0_mean`` 80 ... 115 Hz (czech_machac; at 70 Hz festival crashes on slow words) or
    115 ... 160 Hz (czech_ph): 24 settings, 840 clips each. Needs ``apt-get install festvox-czech-machac
    festvox-czech-ph``. Use: ``SpeechGrid(default_grid().voices + czech_voices())``.
    """
    stretches = (0.85, 1.0, 1.15, 1.3, 1.45, 1.6)
    return (SynthVoice("festival", "czech_machac", "", tuple(itertools.product(stretches, (80, 90, 100, 115)))),
            SynthVoice("festival", "czech_ph", "", tuple(itertools.product(stretches, (115, 130, 145, 160)))))


def small_grid() -> SpeechGrid:
    """17 voices x 1 setting x 35 words = 595 clips (``speech-keywords-small``, for tests), every engine in
    training: flite kal16, rms, espeak-ng en-us+m1, festival kal_diphone and rab_diphone, MBROLA de1, Pico en-US,
    RHVoice clb; validation: flite slt, espeak-ng en-us+f4, festival cmu_us_slt_arctic_hts, RHVoice alan; test:
    flite awb, espeak-ng en-us+m7, festival ked_diphone, MBROLA us2, Pico en-GB. 5 s of each noise.
    """
    return SpeechGrid((
        SynthVoice("flite", "kal16", "", ((1.0, 1.0),)),
        SynthVoice("flite", "rms", "", ((1.0, None),)),
        SynthVoice("espeak-ng", "en-us", "m1", ((160, 50),)),
        SynthVoice("festival", "kal_diphone", "", ((1.0, 105),)),
        SynthVoice("festival", "rab_diphone", "", ((1.0, 105),)),
        SynthVoice("mbrola", "mb-de1-en", "", ((165, 50),)),
        SynthVoice("pico", "en-US", "", ((100, 100),)),
        SynthVoice("rhvoice", "clb", "", ((100, 100),)),
        SynthVoice("flite", "slt", "", ((1.0, 1.0),)),
        SynthVoice("espeak-ng", "en-us", "f4", ((160, 50),)),
        SynthVoice("festival", "cmu_us_slt_arctic_hts", "", ((1.0, None),)),
        SynthVoice("rhvoice", "alan", "", ((100, 100),)),
        SynthVoice("flite", "awb", "", ((1.0, 1.0),)),
        SynthVoice("espeak-ng", "en-us", "m7", ((160, 50),)),
        SynthVoice("festival", "ked_diphone", "", ((1.0, 105),)),
        SynthVoice("mbrola", "mb-us2", "", ((165, 50),)),
        SynthVoice("pico", "en-GB", "", ((100, 100),)),
    ), noise_seconds=5)


# ----------------------------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------------------------


def _install_hint() -> str:
    return ("install the engines with `sudo make system-speech` (or `sudo apt-get install PACKAGES` after adding "
            "contrib and non-free to the apt sources; the packages: deepnotes.data.speech_build.SPEECH_PACKAGES)")


def _run(cmd: list[str], what: str, timeout: float = 300, input: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input)
    except (OSError, subprocess.SubprocessError) as e:
        raise DataError(f"speech-keywords: {what}: running {cmd[0]} failed ({e}); {_install_hint()}") from e
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DataError(f"speech-keywords: {what}: `{' '.join(cmd[:6])} ...` exited with status {proc.returncode}"
                        f" ({err[-1] if err else 'no message'})")
    return proc


MBROLA_DATA = Path("/usr/share/mbrola")
PICO_DATA = Path("/usr/share/pico/lang")
RHVOICE_DATA = Path("/usr/share/RHVoice/voices")


def missing_voices(grid: SpeechGrid) -> dict[str, str]:
    """The voices of ``grid`` that cannot be made here, each with the reason and the package that brings it.

    A voice is missing when its program is not on the PATH (``espeak-ng``, ``mbrola``, ``flite``,
    ``festival``, ``pico2wave``, ``RHVoice-test``) or its voice data is not installed (flite's ``-lv``,
    festival's ``voice.list``, ``/usr/share/mbrola/ID/ID``, ``/usr/share/pico/lang/LANG_ta.bin``,
    ``/usr/share/RHVoice/voices/NAME``).

    Returns:
        ``{voice_id: "why (package P)"}``; empty when every voice can be made.

    Raises:
        DataError: ``sox`` is missing (every clip needs it), or flite or festival failed to list its voices.
    """
    if shutil.which("sox") is None:
        raise DataError(f"speech-keywords: missing `sox` (package {' '.join(PROGRAM_PACKAGES['sox'])}); "
                        f"{_install_hint()}")
    out: dict[str, str] = {}
    programs = {p: shutil.which(p) is not None for p in ("espeak-ng", "mbrola", "flite", "festival", "pico2wave",
                                                          "RHVoice-test")}
    engines = {v.engine for v in grid.voices}
    known_flite = set(_run(["flite", "-lv"], "listing flite voices", 60).stdout.decode().split()) \
        if "flite" in engines and programs["flite"] else set()
    known_festival: set[str] = set()
    if "festival" in engines and programs["festival"]:
        listed = _run(["festival", "-b", "(print (voice.list))"], "listing festival voices", 120).stdout.decode()
        known_festival = set(re.findall(r"[A-Za-z0-9_]+", listed))
    for v in grid.voices:
        program = ENGINE_PROGRAMS[v.engine]
        needs = [program] + (["mbrola"] if v.engine == "mbrola" else [])
        lost = [p for p in needs if not programs[p]]
        if lost:
            out[v.voice_id] = f"no `{lost[0]}` (package {' '.join(PROGRAM_PACKAGES[lost[0]])})"
        elif v.engine == "flite" and v.name not in known_flite:
            out[v.voice_id] = "flite does not list it (reinstall flite libflite1)"
        elif v.engine == "festival" and v.name not in known_festival:
            out[v.voice_id] = f"festival does not list it (package {FESTIVAL_VOICE_PACKAGES[v.name]})"
        elif v.engine == "mbrola" and not (MBROLA_DATA / v.speaker / v.speaker).is_file():
            out[v.voice_id] = f"no {MBROLA_DATA / v.speaker / v.speaker} (package mbrola-{v.speaker})"
        elif v.engine == "pico" and not (PICO_DATA / f"{v.name}_ta.bin").is_file():
            out[v.voice_id] = f"no {PICO_DATA / (v.name + '_ta.bin')} (package libttspico-data)"
        elif v.engine == "rhvoice" and not (RHVOICE_DATA / v.name).is_dir():
            out[v.voice_id] = f"no {RHVOICE_DATA / v.name} (package rhvoice-english)"
    return out


def check_engines(grid: SpeechGrid) -> dict[str, str]:
    """The voices of ``grid`` to skip (:func:`missing_voices`), after checking that some voice can be made.

    Raises:
        DataError: sox is missing, or no voice of the grid can be made (names the packages and the install
            command).
    """
    missing = missing_voices(grid)
    if len(missing) == len(grid.voices):
        reasons = sorted(set(missing.values()))
        raise DataError(f"speech-keywords: none of the {len(missing)} voices can be made: {'; '.join(reasons[:4])}; "
                        f"{_install_hint()}")
    return missing


def engine_versions() -> dict[str, str | None]:
    """The version line of each program (``--version``) and the Debian version of each package."""
    out: dict[str, str | None] = {}
    for prog, pattern in (("espeak-ng", r"eSpeak NG[^\n]*?(?=\s+Data at|$)"), ("flite", r"version:[^\n]*"),
                          ("festival", r"Festival Speech Synthesis System[^\n]*"), ("sox", r"SoX v[^\n]*")):
        try:
            text = subprocess.run([prog, "--version"], capture_output=True, timeout=60).stdout.decode(errors="replace")
            m = re.search(pattern, text, re.M)
            out[prog] = m.group(0).strip() if m else text.strip()[:200] or None
        except (OSError, subprocess.SubprocessError):
            out[prog] = None
    for package in _VERSION_PACKAGES:
        try:
            proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, timeout=30)
            out[f"deb:{package}"] = proc.stdout.decode().strip() or None if proc.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            out[f"deb:{package}"] = None
    return out


def scheme_string(text: str) -> str:
    """``text`` as a Scheme string literal for festival: ``"..."`` with ``\\`` and ``"`` escaped, white space made
    single spaces."""
    text = " ".join(text.split())
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize(voice: SynthVoice, k: int, words: Sequence[str] | Mapping[str, str], workdir: Path) -> dict[str, Path]:
    """Say each of ``words`` with ``voice`` at setting ``k``; the engine's own WAV files, in ``workdir``.

    Args:
        words: the words to say, each its own file name; or ``{name: text}`` for longer texts (sentences: white
            space and punctuation allowed; festival-mapped voices take single words only).

    Returns:
        ``{name: path}`` of ``workdir/<name>.wav``.

    Raises:
        DataError: the engine failed or wrote no file (names the voice and the word).
    """
    rate, pitch = voice.settings[k]
    texts = {w: " ".join(t.split()) for w, t in words.items()} if isinstance(words, Mapping) else {w: w for w in words}
    words = list(texts)
    out = {w: workdir / f"{w}.wav" for w in words}
    what = f"{voice.voice_id} setting {k}"
    if voice.engine == "espeak-ng":
        for w in words:
            _run(["espeak-ng", "-v", voice.espeak_voice, "-s", str(rate), "-p", str(pitch),
                  "-w", str(out[w]), "--", texts[w]], f"{what} word {w!r}")
    elif voice.engine == "mbrola":  # espeak-ng's front end, the MBROLA diphone database behind it
        for w in words:
            _run(["espeak-ng", "-v", voice.name, "-s", str(rate), "-p", str(pitch), "-w", str(out[w]), "--",
                  texts[w]], f"{what} word {w!r}")
    elif voice.engine == "pico":
        for w in words:
            _run(["pico2wave", "-l", voice.name, "-w", str(out[w]),
                  f"<speed level='{rate}'><pitch level='{pitch}'>{html.escape(texts[w])}</pitch></speed>"],
                 f"{what} word {w!r}")
    elif voice.engine == "rhvoice":
        for w in words:
            _run(["RHVoice-test", "-p", voice.name, "-r", str(rate), "-t", str(pitch), "-o", str(out[w])],
                 f"{what} word {w!r}", input=texts[w].encode())
    elif voice.engine == "flite":
        opts = ["--setf", f"duration_stretch={rate}"] + ([] if pitch is None else ["--setf", f"f0_shift={pitch}"])
        for w in words:
            _run(["flite", "-voice", voice.name, *opts, "-t", texts[w], "-o", str(out[w])], f"{what} word {w!r}")
    else:
        exprs = [f"(voice_{voice.name})"]
        if voice.kind == "festival-hts":
            exprs.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {rate}))))')
        elif voice.kind == "festival-mapped":
            prons = cmu_pronunciations(tuple(words))
            exprs += [lexicon_entry(w, prons[w], voice.name) for w in words]
            exprs.append(f"(Parameter.set 'Duration_Stretch {rate})")
            if pitch is not None:
                exprs.append(f"(set! int_general_params (cons (list 'f0_mean {pitch}) int_general_params))")
        else:
            exprs.append(f"(Parameter.set 'Duration_Stretch {rate})")
            if pitch is not None:
                exprs.append(f"(set! int_lr_params (cons (list 'target_f0_mean {pitch}) int_lr_params))")
        says = [f'(utt.save.wave (SynthText {scheme_string(texts[w])}) "{out[w]}" \'riff)' for w in words]
        if voice.kind == "festival-mapped":
            # One process per word: the Czech voices' waveform synthesis corrupts its heap after some
            # sequences of words in one process (festival 2.5 crashed on czech_machac at Duration_Stretch
            # 1.0 and f0_mean 100 after 20-odd words), which could also spoil the words said before. Alone,
            # every word of the grid was checked to synthesize cleanly.
            errs = [_run(["festival", "-b", *exprs, say], f"{what} word {w!r}", 120).stderr
                    for w, say in zip(words, says)]
        else:
            errs = [_run(["festival", "-b", *exprs, *says], what, 600).stderr]
        lost = [w for w in words if not out[w].is_file() or out[w].stat().st_size <= 44]
        if lost:
            err = errs[-1].decode(errors="replace").strip().splitlines()
            raise DataError(f"speech-keywords: festival ({what}) wrote no audio for {', '.join(lost)} "
                            f"({err[-1] if err else 'no message'}); {_install_hint()}")
    for w in words:
        if not out[w].is_file():
            raise DataError(f"speech-keywords: {voice.engine} ({what}) wrote no file for {w!r}")
    return out


@functools.lru_cache(maxsize=8)
def cmu_pronunciations(words: tuple[str, ...]) -> dict[str, tuple[tuple[tuple[str, ...], int], ...]]:
    """Each word's syllables ``((phones, stress), ...)`` from festival's CMU lexicon (festlex-cmu).

    Example: ``"sheila"`` -> ``((("sh", "iy"), 1), (("l", "ax"), 0))``.

    Raises:
        DataError: festival failed or the lexicon has no entry for a word (names the words).
    """
    out = _run(["festival", "-b", '(lex.select "cmu")', *[f'(print (lex.lookup "{w}"))' for w in words]],
               "looking up the CMU pronunciations", 600).stdout.decode()
    prons = {}
    for line in out.splitlines():
        m = re.match(r'\("([a-z]+)" \S+ (.*)\)$', line.strip())
        if m:
            prons[m.group(1)] = tuple((tuple(p.split()), int(st))
                                      for p, st in re.findall(r"\(\(([a-z ]+)\) (\d)\)", m.group(2)))
    missing = [w for w in words if not prons.get(w)]
    if missing:
        raise DataError(f"speech-keywords: festival's CMU lexicon gave no pronunciation for {', '.join(missing)}; "
                        f"{_install_hint()}")
    return prons


def lexicon_entry(word: str, syllables: Sequence[tuple[Sequence[str], int]], voice: str) -> str:
    """A festival ``lex.add.entry`` giving ``word`` the voice's phones for its English pronunciation.

    Args:
        word: lower-case word.
        syllables: its CMU syllables ``(phones, stress)`` (:func:`cmu_pronunciations`).
        voice: a festival voice of :data:`PHONE_MAPS`.

    Raises:
        KeyError: ``voice`` has no phone map.
    """
    table, stressed = PHONE_MAPS[voice]
    parts = []
    for phones, stress in syllables:
        out = []
        for p in phones:
            mapped = table[p].split()
            if stress and stressed and p in _CMU_VOWELS and mapped:
                mapped[0] = stressed.get(mapped[0], mapped[0])
            out += mapped
        parts.append(f"(({' '.join(out)}) {stress})")
    return f"(lex.add.entry '(\"{word}\" nil ({' '.join(parts)})))"


def to_clip(raw: str | os.PathLike[str]) -> tuple[np.ndarray, bool]:
    """An engine's WAV as one Speech Commands clip: ``((16000,) int16, time_compressed)``.

    ``sox -R -D`` converts to 16 kHz mono 16-bit, trims silence (0.3 % threshold) at both ends and adds
    20 ms margins; the result is centre-padded with zeros to 16000 samples. Longer than that, the sox
    run is repeated with ``tempo -s`` to :data:`TEMPO_TARGET` samples (``time_compressed`` True).

    Raises:
        DataError: sox failed, or the engine's output was all silence (names the file).
    """
    def sox(extra: Sequence[str] = ()) -> np.ndarray:
        cmd = ["sox", "-R", "-D", str(raw), "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
               "-e", "signed-integer", "-L", "-", *SOX_TRIM, *extra]
        return np.frombuffer(_run(cmd, f"converting {raw}").stdout, dtype="<i2").astype(np.int16)

    x = sox()
    if len(x) <= int(0.05 * SAMPLE_RATE):
        raise DataError(f"speech-keywords: {raw}: the engine's output is silent after trimming ({len(x)} samples)")
    compressed = len(x) > CLIP_SAMPLES
    if compressed:
        x = sox(["tempo", "-s", f"{len(x) / TEMPO_TARGET:.6f}"])
        if len(x) > CLIP_SAMPLES:  # tempo's length is approximate; cut the (silent) margins evenly
            cut = len(x) - CLIP_SAMPLES
            x = x[cut // 2: cut // 2 + CLIP_SAMPLES]
    left = (CLIP_SAMPLES - len(x)) // 2
    return np.pad(x, (left, CLIP_SAMPLES - len(x) - left)), compressed


def noise(colour: str, seconds: int) -> np.ndarray:
    """``seconds`` of ``colour`` noise (white, pink, brown) at 16 kHz from ``sox -R -n ... synth``, int16."""
    if colour not in NOISE_COLOURS:
        raise ValueError(f"colour must be one of {', '.join(NOISE_COLOURS)}; got {colour!r}")
    cmd = ["sox", "-R", "-D", "-n", "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
           "-e", "signed-integer", "-L", "-", "synth", str(seconds), f"{colour}noise"]
    return np.frombuffer(_run(cmd, f"making {colour} noise").stdout, dtype="<i2").astype(np.int16)


def _write_clip(path: Path, data: bytes) -> None:
    # Atomic without fsync: a killed build leaves either the whole file or a ``.NAME.tmp`` that the next
    # build deletes (fsync of ~20k small files would add minutes and guards only against power loss).
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------
# The dataset entry
# ----------------------------------------------------------------------------------------------------------


def run_jobs(jobs: Sequence[tuple], run_job: Callable[..., int], workers: int | None, bar: tqdm, workroot: Path) -> None:
    """``run_job(*job)`` for every job on ``workers`` threads (default ``min(2, os.cpu_count())``), advancing
    ``bar`` by each result; then the bar is closed and ``workroot`` removed (also when a job fails or the build is
    interrupted: the jobs not started are cancelled, those running are waited for)."""
    pool = ThreadPoolExecutor(max_workers=workers or min(2, os.cpu_count() or 1))
    try:
        for fut in as_completed([pool.submit(run_job, *job) for job in jobs]):
            bar.update(fut.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
        shutil.rmtree(workroot, ignore_errors=True)


class BuiltDatasetStatus:
    """``cache_dir``, ``manifest_path`` and ``status`` of a dataset built here into ``data_root()/name``, finished
    when its manifest.json exists (speech-keywords, phoneme-frames). The class using it has a ``name``."""

    name: str

    def cache_dir(self) -> Path:
        return data_root() / self.name

    def manifest_path(self) -> Path:
        return self.cache_dir() / "manifest.json"

    def built_grid(self) -> dict | None:
        """The grid JSON of the manifest (the grid's ``to_json``); None without a readable one."""
        try:
            grid = json.loads(self.manifest_path().read_text())["grid"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return grid if isinstance(grid, dict) else None

    def status(self) -> str:
        if self.manifest_path().is_file():
            return f"present at {self.cache_dir()}"
        if self.cache_dir().is_dir():
            return f"partly built at {self.cache_dir()} (run `deepnotes data build {self.name}` to finish)"
        return "missing"

    def build_instructions(self, by: str, packages: Sequence[str], size: str, reader: str) -> str:
        """``how_to_get``'s text: what the set is, the packages and command that build it, its ``size``, and the
        function that reads it. The class using it has ``description``, ``source`` and ``license``."""
        return "\n".join([
            f"{self.name}: {self.description}",
            f"Built into {self.cache_dir()} (set DEEPNOTES_DATA to move it) by {by}:",
            f"  sudo apt-get install {' '.join(packages)}",
            f"  deepnotes data build {self.name}",
            f"{size}; an interrupted build resumes where it stopped.",
            f"Read it with {reader}(folder, split).",
            f"Source: {self.source}. License: {self.license}.",
        ])


@dataclass(frozen=True)
class SpeechKeywordsInfo(BuiltDatasetStatus):
    """Where the synthesized keyword set lives, whether it is here, and how to build it (``deepnotes data``)."""

    name: str = "speech-keywords"
    description: str = ("the 35 Speech Commands v2 words said by 34 recorded speakers and 13 formant voices of "
                        "espeak-ng, MBROLA, flite, festival, Pico and RHVoice (27,020 clips, split by speaker; Speech "
                        "Commands layout)")
    grid: SpeechGrid = field(default_factory=default_grid, repr=False)
    source: str = "Debian text-to-speech engines espeak-ng, MBROLA, flite, festival, SVOX Pico, RHVoice; sox"
    license: str = ("generated here; each voice's licence is in the folder's README.md (MBROLA voices: not for sale; "
                    "two RHVoice voices: non-commercial)")

    def is_current(self) -> bool:
        """A manifest is there and its grid is this version's: the same words, noise length and voices with
        their settings and splits (an older build may lack voices or settings; the documentation of the
        setting units it also holds does not count)."""
        built = self.built_grid()
        return built is not None and all(built.get(k) == v for k, v in self.grid.to_json().items()
                                         if k in ("words", "noise_seconds", "voices"))

    def skipped(self) -> dict[str, str]:
        """The voices the finished build had to skip (``{voice_id: reason}``; empty without a manifest)."""
        try:
            skipped = json.loads(self.manifest_path().read_text()).get("skipped", {})
        except (OSError, ValueError, AttributeError):
            return {}
        return skipped if isinstance(skipped, dict) else {}

    def status(self) -> str:
        if self.manifest_path().is_file() and not self.is_current():
            return (f"outdated at {self.cache_dir()} (built from another grid of voices): `deepnotes data build "
                    f"{self.name}` updates it, keeping the clips that did not change")
        skipped = self.skipped()
        if skipped:
            return (f"present at {self.cache_dir()} without {len(skipped)} of its {len(self.grid.voices)} voices "
                    f"(packages missing; manifest.json lists them): install them, then `deepnotes data build "
                    f"{self.name}` adds them")
        return super().status()

    def how_to_get(self) -> str:
        return self.build_instructions("text-to-speech engines", SPEECH_PACKAGES, f"{self.grid.n_clips} clips",
                                       "deepnotes.data.speech.load_speech_commands")

    def build(self, force: bool = False, workers: int | None = None, progress: bool | None = None) -> Path:
        """Synthesize every missing clip, then write the noise, the split lists, README.md and manifest.json.

        Args:
            force: delete the folder and build from scratch (default False: keep what is there; a
                folder whose manifest has this grid is returned as is; one built from another grid is
                updated: the clips of new voices are made, those of voices no longer in the grid removed,
                and a voice whose settings changed is redone).
            workers: jobs at a time (default ``min(2, os.cpu_count())``); each job runs engine processes.
            progress: show a tqdm bar (default: only on a terminal).

        Returns:
            :meth:`cache_dir`.

        Raises:
            DataError: an engine is missing (names the apt packages) or failed (names the voice, setting
                and word).
        """
        root = self.cache_dir()
        if force and root.exists():
            shutil.rmtree(root)
        if self.is_current() and not self.skipped():
            return root
        skipped = check_engines(self.grid)
        if self.is_current() and set(skipped) == set(self.skipped()):  # nothing new can be made
            return root
        for voice_id, why in skipped.items():
            print(f"warning: {self.name}: skipping {voice_id}: {why}", file=sys.stderr)
        grid = SpeechGrid(tuple(v for v in self.grid.voices if v.voice_id not in skipped), self.grid.words,
                          self.grid.noise_seconds)
        if self.manifest_path().is_file():  # built from another grid: update it
            for v in changed_voices((self.built_grid() or {}).get("voices"), grid.voices):
                for p in root.glob(f"*/{v.voice_hash}_nohash_*.wav"):
                    p.unlink()
            # after the stale clips are gone, so that an interrupted update reads as partly built and a rerun
            # finds nothing stale left behind
            self.manifest_path().unlink()
        clips = grid.clips()
        expected = {rel for rel, _ in clips}
        root.mkdir(parents=True, exist_ok=True)
        workroot = root / ".work"
        shutil.rmtree(workroot, ignore_errors=True)
        for w in grid.words:
            (root / w).mkdir(exist_ok=True)
        for p in list(root.glob("*/.*.tmp")):  # left by a killed build
            p.unlink()
        for p in list(root.glob("*/*.wav")):  # not in this grid (an older build)
            if p.parent.name != BACKGROUND_NOISE_DIR and f"{p.parent.name}/{p.name}" not in expected:
                p.unlink()

        jobs = [(v, k) for v in grid.voices for k in range(len(v.settings))]
        todo = [(v, k, [w for w in grid.words if not (root / v.clip_path(w, k)).is_file()]) for v, k in jobs]
        todo = [t for t in todo if t[2]]
        workroot.mkdir()
        # Clips that needed ``tempo``: each is logged before its file is renamed into place, so after an
        # interruption the log holds every such clip present (and perhaps one still to be redone, which
        # is compressed again: the audio is deterministic).
        log_path = root / ".time_compressed.txt"
        log_lock = threading.Lock()

        def run_job(voice: SynthVoice, k: int, words: list[str]) -> int:
            with tempfile.TemporaryDirectory(dir=workroot) as tmp:
                raws = synthesize(voice, k, words, Path(tmp))
                for w in words:
                    clip, was_compressed = to_clip(raws[w])
                    if was_compressed:
                        with log_lock, open(log_path, "a") as f:
                            f.write(voice.clip_path(w, k) + "\n")
                    _write_clip(root / voice.clip_path(w, k), wav_bytes(clip))
            return len(words)

        bar = tqdm(total=grid.n_clips, initial=grid.n_clips - sum(len(t[2]) for t in todo), desc=self.name,
                   unit="clip", file=sys.stderr, disable=(None if progress is None else not progress))
        run_jobs(todo, run_job, workers, bar, workroot)

        noise_dir = root / BACKGROUND_NOISE_DIR
        noise_dir.mkdir(exist_ok=True)
        for colour in NOISE_COLOURS:
            path = noise_dir / f"{colour}_noise.wav"
            if not path.is_file():
                _write_clip(path, wav_bytes(noise(colour, grid.noise_seconds)))
        speakers = [voice.speaker for _, voice in clips]  # the split unit: every clip of a speaker on one side
        held = {split: [s for s, side in SPEAKER_SPLITS.items() if side == split and s in speakers]
                for split in ("validation", "test")}
        _, val, test = group_split(speakers, held["validation"], held["test"], what="speaker")
        for name, rows in ((VALIDATION_LIST, val), (TESTING_LIST, test)):
            write_text_atomic(root / name, "".join(f"{r}\n" for r in sorted(clips[i][0] for i in rows)))
        v1 = sorted(clips[i][0] for i in test if clips[i][1].voice_id in V1_TEST_VOICES)
        write_text_atomic(root / TESTING_LIST_V1, "".join(f"{r}\n" for r in v1))
        write_text_atomic(root / "README.md", self.readme(skipped))
        logged = set(log_path.read_text().split()) if log_path.is_file() else set()
        compressed = sorted(logged & expected)
        files = sorted(expected) + [f"{BACKGROUND_NOISE_DIR}/{c}_noise.wav" for c in NOISE_COLOURS] + \
            [VALIDATION_LIST, TESTING_LIST, TESTING_LIST_V1, "README.md"]
        write_json_atomic(self.manifest_path(), {
            "dataset": self.name,
            "format": "Speech Commands layout: WORD/VOICEHASH_nohash_K.wav, 16 kHz mono 16-bit PCM, 16000 samples",
            "engines": engine_versions(),
            "conversion": f"sox -R -D IN -r {SAMPLE_RATE} -c 1 -b 16 OUT {' '.join(SOX_TRIM)}; centre-padded "
                          f"with zeros to {CLIP_SAMPLES} samples; longer words: + tempo -s to {TEMPO_TARGET}",
            "noise": f"sox -R -D -n -r {SAMPLE_RATE} -b 16 OUT synth {grid.noise_seconds} COLOURnoise",
            "grid": self.grid.to_json(),  # the whole grid, skipped voices included (see "skipped")
            "counts": split_counts(grid),
            "skipped": skipped,
            "time_compressed": compressed,
            "files": {rel: sha256_file(root / rel) for rel in files},
        })
        return root

    def readme(self, skipped: dict[str, str] | None = None) -> str:
        """The dataset folder's README.md: what it is, every voice with its speaker, split, packages and licence,
        the counts, and the voices ``skipped`` (``{voice_id: reason}``) because their packages are missing."""
        skipped = skipped or {}
        grid = SpeechGrid(tuple(v for v in self.grid.voices if v.voice_id not in skipped), self.grid.words,
                          self.grid.noise_seconds)
        counts = split_counts(grid)
        lines = [f"# {self.name}", "", "The words of Speech Commands v2 said by Debian's text-to-speech engines "
                 f"({', '.join(ENGINES)}), in the Speech Commands layout. Built by "
                 f"`deepnotes data build {self.name}`; see manifest.json for the engine versions, the grid of "
                 "voices, rates and pitches, and the SHA-256 of every file.", "",
                 "Split by speaker (the recorded speaker behind flite, festival, MBROLA, Pico and RHVoice voices, the "
                 "variant for espeak-ng's formant voices): no validation or test speaker is heard in training, "
                 f"whatever the engine. `{TESTING_LIST_V1}` lists the test clips of the first build's test voices "
                 f"({', '.join(V1_TEST_VOICES[:2])}, espeak-ng m7), unchanged.", "",
                 "Licences of the voices (full texts: /usr/share/doc/PACKAGE/copyright): "
                 + "; ".join(f"{e}: {lic}" for e, lic in VOICE_LICENCES.items()) + ".", ""]
        for split in ("train", "validation", "test"):
            c = counts[split]
            per_engine = ", ".join(f"{e} {n}" for e, n in c["by_engine"].items() if n)
            lines += [f"## {split}: {c['clips']} clips ({per_engine})", "",
                      "| hash | voice | speaker | sex, accent | settings | packages |", "|---|---|---|---|---|---|"]
            for v in grid.voices:
                if v.split == split:
                    sex, accent = SPEAKERS.get(v.speaker, ("-", "formant synthesis"))
                    lines.append(f"| `{v.voice_hash}` | {v.voice_id} | {v.speaker} | {sex}, {accent} | "
                                 f"{len(v.settings)} | {' '.join(v.packages)} |")
            lines.append("")
        if skipped:
            lines += ["## skipped (packages missing here)", ""] + [f"- {k}: {why}" for k, why in skipped.items()]
            lines.append("")
        return "\n".join(lines)


def audio_key(voice_json: dict) -> tuple:
    """What decides a voice's audio in its manifest entry: the settings, and for espeak-ng the ``-v`` argument (older
    manifests have none: their en-gb clips ignored the variant and are redone)."""
    return (json.dumps(voice_json.get("settings"), sort_keys=True), voice_json.get("espeak_voice"))


def changed_voices(built_voices: object, voices: Sequence[SynthVoice]) -> list[SynthVoice]:
    """The voices of ``voices`` that a manifest's ``built_voices`` (its grid's ``"voices"`` list) holds with another
    :func:`audio_key`: their files, under the same names, now mean other audio and must be made again. A voice the
    manifest lacks, or a manifest without a readable list, gives none."""
    old = {v.get("voice_hash"): audio_key(v) for v in (built_voices if isinstance(built_voices, list) else [])
           if isinstance(v, dict)}
    return [v for v in voices if v.voice_hash in old and old[v.voice_hash] != audio_key(v.to_json())]


def split_counts(grid: SpeechGrid) -> dict[str, dict]:
    """Clips per split, and per engine within each split: ``{split: {"clips": n, "by_engine": {...}}}``."""
    out = {s: {"clips": 0, "by_engine": {e: 0 for e in ENGINES}} for s in ("train", "validation", "test")}
    for v in grid.voices:
        n = len(v.settings) * len(grid.words)
        out[v.split]["clips"] += n
        out[v.split]["by_engine"][v.engine] += n
    return out


SPEECH_KEYWORDS = SpeechKeywordsInfo()
SPEECH_KEYWORDS_SMALL = SpeechKeywordsInfo(
    name="speech-keywords-small",
    description="a 595-clip speech-keywords (17 voices of all 6 engines, one setting each; for tests and quick checks)",
    grid=small_grid(),
)
#: The built keyword sets (``deepnotes data build NAME``).
SPEECH_DATASETS: tuple[str, ...] = (SPEECH_KEYWORDS.name, SPEECH_KEYWORDS_SMALL.name)


def verify_manifest(root: str | os.PathLike[str]) -> list[str]:
    """The files of ``root/manifest.json`` whose SHA-256 differs or that are missing (empty: all good).

    Raises:
        DataError: no readable manifest.
    """
    root = Path(root)
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{root / 'manifest.json'}: cannot read it ({e}); rebuild the dataset") from e
    bad = []
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(rel)
    return bad


# ----------------------------------------------------------------------------------------------------------
# pocketsphinx baseline
# ----------------------------------------------------------------------------------------------------------

POCKETSPHINX_MODEL = Path("/usr/share/pocketsphinx/model/en-us")


def pocketsphinx_recognize(files: Sequence[str | os.PathLike[str]], words: Sequence[str],
                           workers: int | None = None) -> list[str | None]:
    """The word pocketsphinx hears in each file, choosing only among ``words`` (None: it heard nothing).

    Runs Debian's ``pocketsphinx_batch`` (CMU Sphinx, acoustic model en-us) with a JSGF grammar
    ``<kw> = word1 | word2 | ...`` (one word an utterance), on 16 kHz mono 16-bit WAV files with a
    44-byte header, in ``workers`` processes (default ``min(2, cpu_count)``).

    Raises:
        ValueError: a path holds white space.
        DataError: pocketsphinx or its model is missing (names the apt packages), a word is not in its
            dictionary, or it failed (e.g. could not open a file).
    """
    exe = shutil.which("pocketsphinx_batch")
    hmm, dic = POCKETSPHINX_MODEL / "en-us", POCKETSPHINX_MODEL / "cmudict-en-us.dict"
    if exe is None or not hmm.is_dir() or not dic.is_file():
        raise DataError("pocketsphinx is missing; install it with "
                        "`sudo apt-get install pocketsphinx pocketsphinx-en-us`")
    known = {line.split(" ", 1)[0] for line in dic.read_text(errors="replace").splitlines()}
    unknown = [w for w in words if w not in known]
    if unknown:
        raise DataError(f"pocketsphinx's dictionary {dic} lacks {', '.join(unknown)}")
    files = [Path(f).resolve() for f in files]
    spaced = [str(f) for f in files if re.search(r"\s", str(f))]
    if spaced:  # the control file separates fields by white space
        raise ValueError(f"pocketsphinx cannot read paths with white space, e.g. {spaced[0]!r}")
    if not files:
        return []
    n = min(workers or min(2, os.cpu_count() or 1), len(files))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "kw.gram").write_text("#JSGF V1.0;\ngrammar kw;\npublic <kw> = " + " | ".join(words) + ";\n")
        procs = []
        for i in range(n):
            part = files[i::n]
            (tmp / f"{i}.ctl").write_text("".join(f"{str(f)[:-4]} 0 -1 u{j}\n" for j, f in enumerate(part)))
            cmd = [exe, "-hmm", str(hmm), "-dict", str(dic), "-jsgf", str(tmp / "kw.gram"), "-adcin", "yes",
                   "-adchdr", "44", "-cepext", ".wav", "-ctl", str(tmp / f"{i}.ctl"), "-hyp", str(tmp / f"{i}.hyp"),
                   "-logfn", str(tmp / f"{i}.log")]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i, p in enumerate(procs):
            rc = p.wait()
            log_file = tmp / f"{i}.log"
            log = log_file.read_text(errors="replace").splitlines() if log_file.is_file() else []
            # A file it cannot open is skipped with an ERROR line only; "Final result does not match the
            # grammar" (also an ERROR line) just means no word was heard.
            errors = [line for line in log if line.startswith("FATAL") or "Failed to open" in line]
            if rc != 0 or errors:
                raise DataError(f"pocketsphinx_batch failed: {(errors or log or [f'exit status {rc}'])[-1]}")
        out: list[str | None] = [None] * len(files)
        for i in range(n):
            for line in (tmp / f"{i}.hyp").read_text().splitlines():
                m = re.fullmatch(r"(.*?)\s*\(u(\d+)\s+[-\d]+\)", line.strip())
                if m:
                    hyp = m.group(1).split()
                    out[i + n * int(m.group(2))] = hyp[0] if hyp else None
    return out

