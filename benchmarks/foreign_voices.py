"""How intelligible Debian's non-English festival voices are when they say the 35 keywords (issue: more real
speakers for speech-keywords).

    sudo apt-get install festvox-czech-machac festvox-itapc16k pocketsphinx pocketsphinx-en-us
    python benchmarks/foreign_voices.py [--voices czech_machac,czech_ph,pc_diphone,lp_diphone] [--out DIR]

Each voice says every word twice: with its own language's letter-to-sound rules ("own"), and with the word's
English pronunciation from festival's CMU lexicon (festlex-cmu, the one kal_diphone uses) mapped phone by phone
onto the voice's phone set and added to its lexicon ("mapped", :data:`PHONE_MAPS`). Each clip goes through the
speech-keywords builder's own ``to_clip`` (16 kHz, trimmed, 1 s), then Debian's pocketsphinx picks one of the 35
words (``pocketsphinx_recognize``). The English diphone voices are scored the same way for scale. Prints a
Markdown table (share of the 35 words recognized) and the misrecognitions of the mapped clips.

The maps take the nearest phone of each language; English sounds the language lacks get the usual substitutes of
its speakers (/θ/ -> f, so that "three" does not become "tree"; /h/ dropped in Italian; /w/ -> u in Czech).
Not every voice takes a lexicon entry: msu_ru_nsh_clunits (Russian) ignores it, hy_fi_mv_diphone (Finnish) fails on
it, so they are not in :data:`PHONE_MAPS`.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from deepnotes.data.speech import SPEECH_COMMANDS_V2_WORDS, wav_bytes
from deepnotes.data.speech_build import _run, pocketsphinx_recognize, to_clip
from deepnotes.report import markdown_table

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
#: festival voice -> (CMU phone -> its phones, stressed-vowel renaming or None).
PHONE_MAPS: dict[str, tuple[dict[str, str], dict[str, str] | None]] = {
    "czech_machac": (_CZECH, None), "czech_ph": (_CZECH, None),
    "pc_diphone": (_ITALIAN, _ITALIAN_STRESSED), "lp_diphone": (_ITALIAN, _ITALIAN_STRESSED),
}
ENGLISH = ("kal_diphone", "ked_diphone")
_VOWELS = set("aa ae ah ao aw ax ay eh er ey ih iy ow oy uh uw".split())


def cmu_pronunciations(words: list[str]) -> dict[str, list[tuple[list[str], int]]]:
    """Each word's syllables ``(phones, stress)`` from festival's CMU lexicon (kal_diphone's)."""
    out = _run(["festival", "-b", "(voice_kal_diphone)", *[f'(print (lex.lookup "{w}"))' for w in words]],
               "looking up the CMU pronunciations", 600).stdout.decode()
    prons = {}
    for line in out.splitlines():
        m = re.match(r'\("([a-z]+)" \S+ (.*)\)$', line.strip())
        if m:
            prons[m.group(1)] = [(p.split(), int(s)) for p, s in re.findall(r"\(\(([a-z ]+)\) (\d)\)", m.group(2))]
    missing = [w for w in words if w not in prons]
    if missing:
        raise SystemExit(f"festival's CMU lexicon gave no pronunciation for {missing}; is festlex-cmu installed?")
    return prons


def lexicon_entry(word: str, syllables: list[tuple[list[str], int]], voice: str) -> str:
    """A festival ``lex.add.entry`` giving ``word`` the voice's phones for its English pronunciation."""
    table, stressed = PHONE_MAPS[voice]
    parts = []
    for phones, stress in syllables:
        out = []
        for p in phones:
            mapped = table[p].split()
            if stress and stressed and p in _VOWELS and mapped:
                mapped[0] = stressed.get(mapped[0], mapped[0])
            out += mapped
        parts.append(f"(({' '.join(out)}) {stress})")
    return f"(lex.add.entry '(\"{word}\" nil ({' '.join(parts)})))"


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
    prons = cmu_pronunciations(words)
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
