"""Translation metrics: corpus BLEU and chrF (sacrebleu), placeholders kept, looping outputs, choices on validation.

Sources: ML2021/2022 HW5 (BLEU with sacrebleu; Chinese scored per character, ``tokenize="zh"``); Papineni et al.
2002 (BLEU: the geometric mean of modified 1-4-gram precisions times the brevity penalty
``BP = min(1, exp(1 - r / c))``); Popović 2015 (chrF); Post 2018 (sacrebleu, the reference implementation);
Wu et al. 2016 (GNMT: the length penalty's alpha tuned on a development set, never on test). A printf
placeholder (``%s``, ``%1$s``, ``%.250s``) must come out of a software-message translation as it went in; a
looping output repeats a unit the reference does not (the degenerate repetition of autoregressive decoders).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Sequence

from deepnotes.data.translation import PLACEHOLDER_RE

LOOP_RE = re.compile(r"(.{2,12}?)\1{3,}")  # a unit of 2-12 characters written 4 or more times in a row


def placeholders(text: str) -> Counter:
    """The multiset of printf placeholders in ``text`` (``%s``, ``%d``, ``%1$s``, ``%.250s``, ``%%``, ...)."""
    return Counter(PLACEHOLDER_RE.findall(text))


def placeholder_accuracy(sources: Sequence[str], outputs: Sequence[str]) -> tuple[float | None, int]:
    """Share of the sources holding a placeholder whose output has exactly the same multiset of them, and how
    many sources hold one; ``(None, 0)`` when none does."""
    pairs = [(s, o) for s, o in zip(sources, outputs) if placeholders(s)]
    if not pairs:
        return None, 0
    return sum(placeholders(s) == placeholders(o) for s, o in pairs) / len(pairs), len(pairs)


def score(sources: Sequence[str], hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU (sacrebleu, ``tokenize="zh"``), chrF and placeholder accuracy of ``hyps`` against one
    reference each.

    Returns:
        ``{"bleu", "chrf", "placeholder_acc", "n_with_placeholders", "bleu_detail", "n"}`` (BLEU and chrF in 0-100).
    """
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize="zh")
    chrf = sacrebleu.corpus_chrf(list(hyps), [list(refs)])
    acc, n_ph = placeholder_accuracy(sources, hyps)
    return {"bleu": float(bleu.score), "chrf": float(chrf.score), "placeholder_acc": acc, "n_with_placeholders": n_ph,
            "bleu_detail": str(bleu), "n": len(hyps)}


def looping_outputs(hyps: Sequence[str], refs: Sequence[str]) -> int:
    """How many outputs loop: hold a unit of 2-12 characters repeated 4+ times in a row that their reference lacks
    (``%12) %12) %12) %12)``); a run the reference also holds (``----``) is not counted."""
    return sum(1 for h, r in zip(hyps, refs) if (m := LOOP_RE.search(h)) and m.group(0) not in r)


def length_breakdown(sources: Sequence[str], hyps: Sequence[str], refs: Sequence[str],
                     max_words: int = 10) -> dict[str, Any]:
    """Corpus BLEU on the sources of at most / more than ``max_words`` whitespace words, with each part's brevity
    penalty and length ratio (output / reference length in sacrebleu's zh tokens), and the looping outputs.

    Returns:
        ``{"max_words", "short": {"n", "bleu", "bp", "ratio"}, "long": {...}, "loops"}``; a part with no
        sentence has ``n`` 0 and None scores.
    """
    import sacrebleu

    def part(keep: Callable[[int], bool]) -> dict[str, Any]:
        idx = [i for i, src in enumerate(sources) if keep(len(src.split()))]
        if not idx:
            return {"n": 0, "bleu": None, "bp": None, "ratio": None}
        b = sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]], tokenize="zh")
        return {"n": len(idx), "bleu": float(b.score), "bp": float(b.bp), "ratio": float(b.sys_len / max(b.ref_len, 1))}

    return {"max_words": max_words, "short": part(lambda n: n <= max_words), "long": part(lambda n: n > max_words),
            "loops": looping_outputs(hyps, refs)}


def choose_length_penalty(decode: Callable[[float | None], list[str]], sources: Sequence[str], refs: Sequence[str],
                          grid: Sequence[float], default: float) -> tuple[float, dict[str, Any] | None]:
    """Beam search's GNMT length-penalty alpha of the best validation BLEU (Wu et al. 2016 tuned it on a
    development set; the test set never chooses anything).

    Args:
        decode: ``decode(None)`` -> greedy outputs of ``sources``; ``decode(alpha)`` -> beam-search outputs.
        sources, refs: validation sentences and their references.
        grid: the alphas tried, in order (ties go to the first); empty = ``default`` alone.
        default: the alpha returned when there are no sentences.

    Returns:
        ``(alpha, {"n", "greedy": score, "beam": {f"{alpha:g}": score}, "length_penalty": alpha})`` with scores
        as :func:`score`; ``(default, None)`` without sentences.
    """
    if not sources:
        return default, None
    greedy = score(sources, decode(None), refs)
    beam = {a: score(sources, decode(a), refs) for a in dict.fromkeys(grid or (default,))}
    best = max(beam, key=lambda a: beam[a]["bleu"])  # max keeps the first of equals
    return best, {"n": len(sources), "greedy": greedy, "beam": {f"{a:g}": m for a, m in beam.items()},
                  "length_penalty": best}


def best_on_validation(results: dict[str, dict[str, Any]]) -> str:
    """The name of the model with the best validation score: beam BLEU at its chosen alpha (``result["val"]`` as
    :func:`choose_length_penalty` gives it), or, without validation decoding, the lowest ``final_val_loss``. The
    test set never chooses.

    Raises:
        ValueError: ``results`` is empty.
    """
    if not results:
        raise ValueError("results is empty: there is no model to choose")

    def key(name: str) -> float:
        r, v = results[name], results[name].get("val")
        return v["beam"][f"{v['length_penalty']:g}"]["bleu"] if v else -r["final_val_loss"]

    return max(results, key=key)
