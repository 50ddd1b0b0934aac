"""How intelligible Debian's non-English festival voices are when they say the 35 keywords (issue: more real
speakers for speech-keywords).

    sudo apt-get install festvox-czech-machac festvox-itapc16k pocketsphinx pocketsphinx-en-us
    python benchmarks/foreign_voices.py [--voices czech_machac,czech_ph,pc_diphone,lp_diphone] [--out DIR]

Each voice says every word twice: with its own language's letter-to-sound rules ("own"), and with the word's
English pronunciation from festival's CMU lexicon (festlex-cmu, the one kal_diphone uses) mapped phone by phone
onto the voice's phone set and added to its lexicon ("mapped", ``deepnotes.data.speech_build.PHONE_MAPS``, the same
entries the speech-keywords build gives its Czech voices). Each clip goes through the
speech-keywords builder's own ``to_clip`` (16 kHz, trimmed, 1 s), then Debian's pocketsphinx picks one of the 35
words (``pocketsphinx_recognize``). The English diphone voices are scored the same way for scale. Prints a
Markdown table (share of the 35 words recognized) and the misrecognitions of the mapped clips.

Not every voice takes a lexicon entry: msu_ru_nsh_clunits (Russian) ignores it, hy_fi_mv_diphone (Finnish) fails on
it, so they are not in ``PHONE_MAPS``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from deepnotes.data.speech import SPEECH_COMMANDS_V2_WORDS, wav_bytes
from deepnotes.data.speech_build import (
    PHONE_MAPS,
    _run,
    cmu_pronunciations,
    lexicon_entry,
    pocketsphinx_recognize,
    to_clip,
)
from deepnotes.report import markdown_table

ENGLISH = ("kal_diphone", "ked_diphone")


def say(voice: str, words: list[str], entries: list[str], folder: Path) -> list[Path]:
    """Each word as a 1 s, 16 kHz clip (the builder's ``to_clip``) said by ``voice`` after ``entries``."""
    folder.mkdir(parents=True, exist_ok=True)
    _run(["festival", "-b", f"(voice_{voice})", *entries,
          *[f'(utt.save.wave (SynthText "{w}") "{folder}/{w}.raw.wav" \'riff)' for w in words]],
         f"festival {voice}", 600)
    clips = []
    for w in words:
        x, _ = to_clip(folder / f"{w}.raw.wav")
        (folder / f"{w}.wav").write_bytes(wav_bytes(x))
        clips.append(folder / f"{w}.wav")
    return clips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", default=",".join(PHONE_MAPS), help="festival voices with a phone map, comma-separated")
    ap.add_argument("--out", type=Path, default=None, help="keep the clips here (default: a temporary folder)")
    args = ap.parse_args(argv)
    voices = [v for v in args.voices.split(",") if v]
    unknown = [v for v in voices if v not in PHONE_MAPS]
    if unknown:
        raise SystemExit(f"--voices: no phone map for {unknown}; known: {', '.join(PHONE_MAPS)}")
    words = list(SPEECH_COMMANDS_V2_WORDS)
    prons = cmu_pronunciations(tuple(words))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        jobs = [(v, "own", []) for v in ENGLISH] + [
            (v, how, [] if how == "own" else [lexicon_entry(w, prons[w], v) for w in words])
            for v in voices for how in ("own", "mapped")]
        clips = {(v, how): say(v, words, entries, root / how / v) for v, how, entries in jobs}
        heard = pocketsphinx_recognize([c for cs in clips.values() for c in cs], words)
    rows, wrong, i = [], [], 0
    for (v, how), cs in clips.items():
        got = heard[i:i + len(cs)]
        i += len(cs)
        right = sum(h == w for h, w in zip(got, words))
        rows.append([v, "English (CMU lexicon)" if v in ENGLISH else how, f"{100 * right / len(words):.0f}% ({right})"])
        if how == "mapped":
            wrong += [f"{v}: {w} -> {h}" for h, w in zip(got, words) if h != w]
    print(markdown_table(["festival voice", "pronunciation", f"recognized of {len(words)} words"], rows))
    print("\nMisrecognized (mapped): " + "; ".join(wrong))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
