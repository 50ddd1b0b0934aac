"""Translation metrics: BLEU and chrF (against sacrebleu and the BLEU equations), placeholders kept, looping outputs,
the split by source length, and the choices made on validation (length penalty, sampling model)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import sacrebleu

from deepnotes.metrics.translation import (
    best_on_validation,
    choose_length_penalty,
    length_breakdown,
    looping_outputs,
    placeholder_accuracy,
    placeholders,
    score,
)


def test_placeholders_and_their_accuracy():
    text = "cannot stat %s: %1$s %2$d %.250s %-10s %lu %zu 100%% %c, 50% done"
    assert placeholders(text) == Counter(["%s", "%1$s", "%2$d", "%.250s", "%-10s", "%lu", "%zu", "%%", "%c"])
    sources = ["open %s failed: %s", "%1$s to %2$s", "no placeholder here", "%d files"]
    outputs = ["打开 %s 失败：%s", "%2$s 到 %1$s", "没有", "%s 个文件"]  # reordering is fine, %d -> %s is not
    acc, n = placeholder_accuracy(sources, outputs)
    assert (acc, n) == (2 / 3, 3)
    assert placeholder_accuracy(["none"], ["无"]) == (None, 0)


def test_score_uses_sacrebleu_zh_tokenization():
    refs = ["无法打开文件 %s", "权限不够"]
    perfect = score(["open %s", "x"], refs, refs)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    # Chinese is scored per character: a hypothesis without spaces still gets partial credit
    partial = score(["open %s", "x"], ["无法打开 %s", "权限"], refs)
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100 and partial["placeholder_acc"] == 1.0
    assert partial["bleu"] == sacrebleu.corpus_bleu(["无法打开 %s", "权限"], [refs], tokenize="zh").score
    assert partial["chrf"] == sacrebleu.corpus_chrf(["无法打开 %s", "权限"], [refs]).score


def _bleu_from_the_equations(hyps: list[str], refs: list[str]) -> float:
    """Papineni et al. 2002 on characters: exp(mean log p_n, n = 1..4) x min(1, exp(1 - r / c)), in percent."""
    log_p = 0.0
    for n in range(1, 5):
        matched = total = 0
        for h, r in zip(hyps, refs):
            hn = Counter(h[i:i + n] for i in range(len(h) - n + 1))
            rn = Counter(r[i:i + n] for i in range(len(r) - n + 1))
            matched += sum(min(c, rn[g]) for g, c in hn.items())  # clipped counts
            total += sum(hn.values())
        log_p += math.log(matched / total) / 4
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    return 100 * math.exp(log_p) * min(1.0, math.exp(1 - r / c))


def test_bleu_on_chinese_text_is_the_character_level_bleu_of_the_equations():
    refs = ["无法打开文件夹中的文件", "权限不够无法删除该文件", "显示此帮助信息然后退出"]
    hyps = ["无法打开文件中的文件夹", "权限不够不能删除文件", "显示帮助信息并退出"]  # shorter: a brevity penalty
    assert score(["a", "b", "c"], hyps, refs)["bleu"] == pytest.approx(_bleu_from_the_equations(hyps, refs), rel=1e-9)


def test_looping_outputs_count_runs_the_reference_lacks():
    hyps = ["%12) %12) %12) %12) 结束", "正常的输出", "--------", "ab ab ab ab ab", "kill kill kill"]
    refs = ["%12)", "正常的输出", "--------", "ab", "kill"]
    # 1: a 5-character unit 4 times; 2: none; 3: the reference holds the same run; 4: "ab " 4 times; 5: only 3 times
    assert looping_outputs(hyps, refs) == 2
    assert looping_outputs([], []) == 0


def test_length_breakdown_scores_each_part_like_score_on_that_part():
    sources = ["open file", "a much longer source sentence that has more than ten words in it", "close", "x y"]
    refs = ["打开文件", "一个更长的源句子，其中包含十个以上的词语", "关闭", "某某"]
    hyps = ["打开文件", "一个更长的源句子", "关闭", "某"]  # the long one cut short
    d = length_breakdown(sources, hyps, refs, max_words=10)
    short = [i for i in range(4) if i != 1]
    assert d["short"]["n"] == 3 and d["long"]["n"] == 1 and d["loops"] == 0
    assert d["short"]["bleu"] == pytest.approx(score([sources[i] for i in short], [hyps[i] for i in short],
                                                     [refs[i] for i in short])["bleu"])
    assert d["long"]["bleu"] == pytest.approx(score(sources[1:2], hyps[1:2], refs[1:2])["bleu"])
    assert d["long"]["bp"] < 1 and d["long"]["ratio"] == pytest.approx(8 / 20)  # zh tokens are characters
    assert length_breakdown(sources, refs, refs)["long"]["bleu"] == pytest.approx(100.0)
    empty = length_breakdown(sources, hyps, refs, max_words=100)["long"]
    assert empty == {"n": 0, "bleu": None, "bp": None, "ratio": None}


def _decode_by_length(alpha):
    """A stand-in decoder whose beam output grows with the length penalty: 2 + 4 * alpha characters (greedy: 1)."""
    n = 1 if alpha is None else int(round(2 + 4 * alpha))
    return ["".join(chr(0x4E00 + i) for i in range(n))] * 3


def test_choose_length_penalty_keeps_the_alpha_of_the_best_validation_bleu():
    sources, refs = ["open the file", "remove it now", "show help"], _decode_by_length(1.5)  # what alpha 1.5 produces
    alpha, val = choose_length_penalty(_decode_by_length, sources, refs, (0.5, 2.0, 1.5, 1.0), 0.3)
    assert alpha == 1.5 and val["length_penalty"] == 1.5 and val["n"] == 3
    assert list(val["beam"]) == ["0.5", "2", "1.5", "1"]  # every alpha of the grid, in order
    assert val["beam"]["1.5"]["bleu"] == pytest.approx(100.0)
    assert max(b["bleu"] for a, b in val["beam"].items() if a != "1.5") < 100 and val["greedy"]["bleu"] < 100
    # ties go to the first alpha of the grid; an empty grid scores the default alone; no sentences: no choice
    assert choose_length_penalty(_decode_by_length, sources, refs, (1.6, 1.5), 0.3)[0] == 1.6  # both: 8 characters
    assert list(choose_length_penalty(_decode_by_length, sources, refs, (), 0.3)[1]["beam"]) == ["0.3"]
    assert choose_length_penalty(_decode_by_length, [], [], (0.5,), 0.3) == (0.3, None)


def _result(val_bleu, test_bleu, val_loss=2.0, alpha=1.4):
    return {"final_val_loss": val_loss, "length_penalty": alpha, "test": {"beam": {"bleu": test_bleu}},
            "val": {"length_penalty": alpha, "beam": {"1": {"bleu": 0.0}, f"{alpha:g}": {"bleu": val_bleu}}}}


def test_best_on_validation_never_looks_at_test():
    results = {"rnn": _result(val_bleu=30.0, test_bleu=10.0), "transformer": _result(val_bleu=20.0, test_bleu=90.0)}
    assert best_on_validation(results) == "rnn"
    # the beam BLEU of the chosen alpha counts, not another alpha's
    results["transformer"]["val"]["beam"]["1"]["bleu"] = 99.0
    assert best_on_validation(results) == "rnn"
    # without validation decoding: the lowest validation loss
    no_val = {"rnn": {**_result(0, 90, val_loss=3.0), "val": None}, "transformer": {**_result(0, 1, 2.5), "val": None}}
    assert best_on_validation(no_val) == "transformer"
    with pytest.raises(ValueError, match="empty"):
        best_on_validation({})
