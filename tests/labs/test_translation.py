"""The translation lab end to end through the CLI on the real ui-translations pairs (fast preset), and its parts."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from deepnotes.cli import main
from deepnotes.data.subword import BPEDropout
from deepnotes.data.translation import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SENTINELS,
    UI_TRANSLATIONS,
    SubwordTokenizer,
    protect_spans,
    train_sentencepiece,
)
from deepnotes.experiment import load_config
from deepnotes.labs.translation import (
    BatchLookup,
    DropoutBatchLookup,
    ScheduledSampler,
    TranslationConfig,
    batch_groups,
    best_model,
    choose_length_penalty,
    copy_rates,
    length_breakdown,
    looping_outputs,
    make_batches,
    pad_batch,
    placeholder_accuracy,
    placeholders,
    score,
    translate,
)

needs_data = pytest.mark.skipif(not UI_TRANSLATIONS.is_current(),
                                reason="needs the ui-translations pairs, built and current: deepnotes data build ui-translations")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    if not UI_TRANSLATIONS.is_current():
        pytest.skip("needs the ui-translations pairs, built and current: deepnotes data build ui-translations")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, two intra-op threads mostly wait for each other
    try:
        out = tmp_path_factory.mktemp("runs")
        # the copy-continuation term on one model, so eval / sample / resume rebuild it from config.json, the
        # weight average (the seeded retraining in the resume test must reproduce it), the coverage penalty,
        # n-gram blocking and protected spans (eval and sample must protect and restore as the run did), and
        # BPE-dropout and scheduled sampling (the resume test's retraining must draw the same segmentations and mixes)
        assert main(["run", "translation", "--preset", "fast", "--copy-continuation", "transformer", "--ema-decay", "0.9",
                     "--coverage-penalty", "0.1", "--no-repeat-ngram-size", "3", "--protect-spans", "--bpe-dropout", "0.1",
                     "--min-teacher-forcing-ratio", "0.5", "--out", str(out), "--no-progress"]) == 0
        (found,) = list((out / "translation").iterdir())
        yield found
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------- pure parts
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


def test_make_batches_respects_the_token_budget_and_shifts_targets():
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(57):
        s, t = int(torch.randint(1, 20, (1,), generator=g)), int(torch.randint(1, 20, (1,), generator=g))
        pairs.append((torch.randint(4, 100, (s,), generator=g).tolist() + [EOS_ID],
                       torch.randint(4, 100, (t,), generator=g).tolist()))
    batches = make_batches(pairs, max_tokens=80, seed=0)
    seen = []
    for src, tin, tout in batches:
        assert src.shape[0] * max(src.shape[1], tin.shape[1]) <= 80 or src.shape[0] == 1
        assert tin.shape == tout.shape and (tin[:, 0] == BOS_ID).all()
        for r in range(src.shape[0]):
            s = src[r][src[r] != PAD_ID].tolist()
            t = tout[r][tout[r] != -100].tolist()
            assert t[-1] == EOS_ID and tin[r, 1:len(t)].tolist() == t[:-1]  # teacher forcing: shifted by one
            assert (tin[r, len(t):] == PAD_ID).all()
            seen.append((s, t[:-1]))
    assert sorted(seen) == sorted(pairs)  # every pair exactly once
    assert make_batches(pairs, 80, seed=0)[3][0].equal(batches[3][0])  # deterministic


def test_dropout_batches_hold_the_same_pairs_segmented_anew(tmp_path):
    corpus = [f"open the file number {i} for {w}" for i, w in enumerate(("reading", "writing", "renaming") * 20)]
    zh = [f"打开第 {i} 个文件" for i in range(len(corpus))]
    tok = SubwordTokenizer.load(train_sentencepiece(corpus + zh, tmp_path / "spm", vocab_size=370))
    text = list(zip(corpus, zh))
    pairs = [(tok.encode(en) + [EOS_ID], tok.encode(z)) for en, z in text]
    groups = batch_groups(pairs, 120, seed=0)
    batches = [pad_batch([pairs[i] for i in g]) for g in groups]
    val = make_batches(pairs[:5], 120, seed=0)
    lookup = DropoutBatchLookup(batches + val, torch.device("cpu"), len(batches), groups, text,
                                BPEDropout.from_tokenizer(tok), 0.5)

    def draw(b, train=True, seed=0):
        (src, tin), tout = lookup(torch.tensor([b]), None, train, torch.Generator().manual_seed(seed) if train else None)
        return src, tin, tout

    def texts(src, tout):
        return sorted((tok.decode(s.tolist()), tok.decode(t[t != -100].tolist())) for s, t in zip(src, tout))

    for b in range(len(batches)):
        src, tin, tout = draw(b)
        assert texts(src, tout) == sorted(text[i] for i in groups[b])  # the same pairs, as text
        assert (tin[:, 0] == BOS_ID).all() and (src == EOS_ID).sum() == len(groups[b])
    longer = sum(draw(b)[0].ne(PAD_ID).sum().item() for b in range(len(batches)))
    assert longer > sum(len(s) for s, _ in pairs)  # dropout gave finer segmentations
    assert draw(0, seed=1)[0].equal(draw(0, seed=1)[0]) and not draw(0, seed=1)[0].equal(draw(0, seed=2)[0])
    assert draw(len(batches), train=False)[0].equal(val[0][0])  # evaluation batches are left alone


class _CountingTokenizer:
    """Words in, CJK characters out: enough of SubwordTokenizer for translate()."""

    def encode(self, text):
        return [5] * len(text.split())

    def decode(self, ids):
        return "".join(chr(0x4E00 + i) for i in ids)


class _LengthModel:
    """A stand-in model whose beam output grows with the length penalty: 2 + 4 * alpha tokens (greedy: 1)."""

    def eval(self):
        return self

    def generate(self, src, bos_id, eos_id, max_len, beam_size=1, length_penalty=0.0, coverage_penalty=0.0,
                 no_repeat_ngram_size=0, penalty="gnmt", length_ratio=0.0):
        # the config's defaults reach the model
        assert coverage_penalty == 0.0 and no_repeat_ngram_size == 0 and penalty == "gnmt" and length_ratio == 0.0
        n = 1 if beam_size == 1 else int(round(2 + 4 * length_penalty))
        return [list(range(n)) for _ in range(src.shape[0])]


class _Guesser(torch.nn.Module):
    """Teacher-forced logits (B, T, V) that always guess token 7."""

    def forward(self, inputs):
        src, tgt_in = inputs
        logits = torch.zeros(*tgt_in.shape, 12)
        logits[..., 7] = 1.0
        return logits


def test_scheduled_sampler_mixes_gold_and_guessed_inputs_on_a_linear_schedule():
    tgt_in = torch.tensor([[BOS_ID, 4, 5, 6, 8, 9], [BOS_ID, 4, 5, PAD_ID, PAD_ID, PAD_ID]])
    src = torch.tensor([[4, EOS_ID], [5, EOS_ID]])
    sampler = ScheduledSampler(_Guesser(), min_ratio=0.0, total_steps=100)
    g = torch.Generator().manual_seed(0)
    assert sampler.ratio() == 1.0 and torch.equal(sampler(src, tgt_in, g), tgt_in)  # update 0: all gold
    sampler.step = 100  # the end of the schedule: every input is the model's guess, padding and BOS kept
    assert sampler.ratio() == 0.0
    assert sampler(src, tgt_in, g).tolist() == [[BOS_ID, 7, 7, 7, 7, 7], [BOS_ID, 7, 7, PAD_ID, PAD_ID, PAD_ID]]
    sampler.step = 50
    assert sampler.ratio() == pytest.approx(0.5)
    big = torch.full((200, 50), 4)
    big[:, 0] = BOS_ID
    share = (sampler(big[:, :2], big, g)[:, 1:] == 7).float().mean().item()
    assert 0.45 < share < 0.55  # one coin flip per token
    half = ScheduledSampler(_Guesser(), min_ratio=0.6, total_steps=10)
    half.step = 10**6
    assert half.ratio() == pytest.approx(0.6)  # the floor
    for bad in ({"min_ratio": 1.0, "total_steps": 5}, {"min_ratio": -0.1, "total_steps": 5},
                {"min_ratio": 0.5, "total_steps": 0}):
        with pytest.raises(ValueError):
            ScheduledSampler(_Guesser(), **bad)


def test_batch_lookup_samples_training_batches_only():
    batch = (torch.tensor([[4, EOS_ID]]), torch.tensor([[BOS_ID, 4, 5]]), torch.tensor([[4, 5, EOS_ID]]))
    lookup = BatchLookup([batch, batch], torch.device("cpu"))
    lookup.sampler = ScheduledSampler(_Guesser(), min_ratio=0.0, total_steps=1)
    lookup.sampler.step = 1
    g = torch.Generator().manual_seed(0)
    (_, tin), tout = lookup(torch.tensor([0]), None, True, g)
    assert tin.tolist() == [[BOS_ID, 7, 7]] and torch.equal(tout, batch[2])  # targets stay gold
    (_, tin), _ = lookup(torch.tensor([1]), None, False, None)
    assert torch.equal(tin, batch[1])  # evaluation: teacher forcing


def test_choose_length_penalty_keeps_the_alpha_of_the_best_validation_bleu():
    tok, model = _CountingTokenizer(), _LengthModel()
    sources = ["open the file", "remove it now", "show help"]
    refs = [tok.decode(range(8))] * 3  # what alpha 1.5 produces
    cfg = TranslationConfig(beam_size=3, length_penalty=0.3, length_penalty_grid=(0.5, 2.0, 1.5, 1.0))
    alpha, val = choose_length_penalty(model, tok, sources, refs, cfg, torch.device("cpu"))
    assert alpha == 1.5 and val["length_penalty"] == 1.5 and val["n"] == 3
    assert list(val["beam"]) == ["0.5", "2", "1.5", "1"]  # every alpha of the grid, in order
    assert val["beam"]["1.5"]["bleu"] == pytest.approx(100.0)
    assert max(b["bleu"] for a, b in val["beam"].items() if a != "1.5") < 100 and val["greedy"]["bleu"] < 100
    # ties go to the first alpha of the grid; an empty grid scores --length-penalty alone; no sentences: no choice
    tie = TranslationConfig(beam_size=3, length_penalty_grid=(1.6, 1.5))  # both round to 8 tokens
    assert choose_length_penalty(model, tok, sources, refs, tie, torch.device("cpu"))[0] == 1.6
    alone = TranslationConfig(beam_size=3, length_penalty=0.3, length_penalty_grid=())
    assert list(choose_length_penalty(model, tok, sources, refs, alone, torch.device("cpu"))[1]["beam"]) == ["0.3"]
    assert choose_length_penalty(model, tok, [], [], cfg, torch.device("cpu")) == (0.3, None)


class _CharTokenizer:
    """One id per character (offset past the special ids)."""

    def encode(self, text):
        return [ord(c) + 10 for c in text]

    def decode(self, ids):
        return "".join(chr(i - 10) for i in ids)


class _EchoModel:
    """A stand-in model that outputs its source (EOS and padding dropped) and records what it was given."""

    def __init__(self):
        self.seen = []

    def eval(self):
        return self

    def generate(self, src, bos_id, eos_id, max_len, beam_size=1, length_penalty=0.0, coverage_penalty=0.0,
                 no_repeat_ngram_size=0, penalty="gnmt", length_ratio=0.0):
        rows = [[int(i) for i in r if int(i) not in (PAD_ID, EOS_ID)] for r in src]
        self.seen += rows
        return rows


def test_translate_protects_sources_and_restores_outputs():
    sources = ["cannot open %.250s: use --block-size=SIZE", "RFC 5322 and -R, --rfc-email", "no spans"]
    tok = _CharTokenizer()
    for protect in (False, True):
        model = _EchoModel()
        cfg = TranslationConfig(protect_spans=protect, max_len_a=2.0)
        assert translate(model, tok, sources, cfg, 1, torch.device("cpu")) == sources  # restored exactly
        seen = {tok.decode(r) for r in model.seen}
        if protect:  # the model saw sentinels, not the spans
            assert seen == {protect_spans(s).text for s in sources}
            assert all("%.250s" not in t and "5322" not in t for t in seen)
        else:
            assert seen == set(sources)


class _FixedGateModel:
    """A stand-in copy model whose forward records fixed copy probabilities."""

    cfg = TranslationConfig()  # anything with a truthy .copy

    def __init__(self, prob):
        self.prob = prob

    def eval(self):
        return self

    def __call__(self, inputs):
        self.last_copy_prob = self.prob[: inputs[1].shape[0]]


def test_copy_rates_split_target_tokens_by_whether_their_source_has_them():
    src = torch.tensor([[7, 8, EOS_ID], [9, EOS_ID, PAD_ID]])
    tgt_out = torch.tensor([[7, 9, EOS_ID, -100], [9, 9, 4, EOS_ID]])
    tgt_in = torch.full_like(tgt_out, BOS_ID)
    prob = torch.tensor([[0.9, 0.2, 0.5, 0.4], [0.6, 0.8, 0.1, 0.3]])
    rates = copy_rates(_FixedGateModel(prob), [(src, tgt_in, tgt_out)], torch.device("cpu"))
    # in source: 7 (row 0), 9 and 9 (row 1); not: 9 (row 0, its source has no 9), 4; EOS and padding left out
    assert rates["n_in_source"] == 3 and rates["n_not_in_source"] == 2
    assert rates["in_source"] == pytest.approx((0.9 + 0.6 + 0.8) / 3)
    assert rates["not_in_source"] == pytest.approx((0.2 + 0.1) / 2)


# ----------------------------------------------------------------------------------- end to end
@needs_data
def test_run_folder_results_and_report(run):
    for name in ("config.json", "data.json", "spm.model", "spm.vocab", "test.en", "test.zh", "results.json",
                 "report.md", "loss_curves.png", "bleu.png", "length_penalty.png"):
        assert (run / name).is_file(), name
    data = json.loads((run / "data.json").read_text())
    assert data["split"] == "by package" and data["vocab_size"] == 1500 and data["after_limits"]["train"] == 400
    pk = {s: {p.split(" (")[0] for p in data["packages"][s]} for s in ("train", "val", "test")}
    assert pk["test"] == {"coreutils", "dpkg", "tar", "wget"} and pk["val"] == {"libglib2.0-data", "sudo"}
    assert not pk["train"] & (pk["val"] | pk["test"])
    sources = (run / "test.en").read_text().split("\n")[:-1]
    refs = (run / "test.zh").read_text().split("\n")[:-1]
    assert len(sources) == len(refs) == data["scored_test_pairs"] == 40
    res = json.loads((run / "results.json").read_text())
    assert set(res["models"]) == {"rnn", "transformer"} and res["n_test"] == 40
    # --protect-spans: the tokenizer holds the sentinels whole; the saved outputs hold none (restored)
    tok = SubwordTokenizer.load(run / "spm.model")
    assert all(tok.piece_to_id(c) != tok.unk_id for c in SENTINELS)
    assert not any(c in (run / "models" / m / f"test.{d}.zh").read_text() for c in SENTINELS
                   for m in res["models"] for d in ("greedy", "beam"))
    for m, r in res["models"].items():
        assert "BPE-dropout 0.1" in r["label"] and "scheduled sampling (teacher forcing 1 -> 0.5)" in r["label"]
        folder = run / "models" / m
        assert (folder / "model.safetensors").is_file() and not (folder / "checkpoints").exists()
        rows = (folder / "metrics.csv").read_text().splitlines()
        assert len(rows) == 1 + 2  # header + 2 epochs
        val = [float(row.split(",")[rows[0].split(",").index("val_loss")]) for row in rows[1:]]
        assert val[1] < val[0] < math.log(1500) + 1  # it learns something
        gate = r["copy_gate"]  # both models copy by default: how much, measured on the validation targets
        assert 0 < gate["in_source"] < 1 and 0 < gate["not_in_source"] < 1 and gate["n_in_source"] > 0
        assert f"Copy gate of the {m}" in (run / "report.md").read_text()
        v = r["val"]  # validation decoding chose the beam's length penalty
        assert v["n"] == data["decoded_val_pairs"] == 30 and list(v["beam"]) == ["0.6", "1", "1.4", "1.6", "1.8", "2"]
        assert r["length_penalty"] == v["length_penalty"] == float(max(v["beam"], key=lambda a: v["beam"][a]["bleu"]))
        for decoder in ("greedy", "beam"):
            hyps = (folder / f"test.{decoder}.zh").read_text().split("\n")[:-1]
            assert len(hyps) == 40
            t = r["test"][decoder]
            recomputed = score(sources, hyps, refs)  # the saved outputs give the recorded scores
            assert t["bleu"] == pytest.approx(recomputed["bleu"]) and t["chrf"] == pytest.approx(recomputed["chrf"])
            assert t["placeholder_acc"] == recomputed["placeholder_acc"] and t["time_s"] > 0
    report = (run / "report.md").read_text()
    for m, r in res["models"].items():
        assert f"beam 3, alpha {r['length_penalty']:g}" in report
    for text in ("## Test results", "| rnn", "| transformer", "## Validation BLEU and the length penalty",
                 "](length_penalty.png)", "not given in the notes",
                 "](loss_curves.png)", "](bleu.png)", "## 5 sample translations", "coreutils (", "reference translations",
                 "Protected spans (`--protect-spans`)", "no repeated 3-gram in an output; GNMT coverage penalty beta 0.1",
                 "## Test BLEU by source length"):
        assert text in report, text
    by_length = report.split("## Test BLEU by source length")[1].split("##")[0]
    assert all(re.search(rf"\| {m} +\| {d} +\| [\d.]+ \(\d+; BP [\d.]+\)", by_length) for m in res["models"]
               for d in ("greedy", "beam"))


@needs_data
def test_eval_on_the_test_split_and_on_ted2020_files_then_report(run, tmp_path):
    assert main(["eval", str(run)]) == 0
    again = json.loads((run / "eval" / "test.json").read_text())
    res = json.loads((run / "results.json").read_text())
    for m in ("rnn", "transformer"):  # deterministic decoding: the same scores as the run's
        for decoder in ("greedy", "beam"):
            assert again[f"{m}_{decoder}_bleu"] == pytest.approx(res["models"][m]["test"][decoder]["bleu"])
    prefix = tmp_path / "train_dev.raw"
    en = ["Cannot open file %s", "", "Permission denied", "word " * 200, "Show this help", "%d files removed"]
    zh = ["无法打开文件 %s", "空", "权限不够", "很长", "显示此帮助", "已删除 %d 个文件"]
    (tmp_path / "train_dev.raw.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    (tmp_path / "train_dev.raw.zh").write_text("\n".join(zh) + "\n", encoding="utf-8")
    assert main(["eval", str(run), "--data", str(prefix)]) == 0
    ted = json.loads((run / "eval" / "train_dev.raw.json").read_text())
    assert ted["n"] == 4 and ted["skipped"] == 2  # the empty line and the over-long source
    assert len((run / "eval" / "train_dev.raw" / "transformer.beam.zh").read_text().splitlines()) == 4
    assert 0 <= ted["rnn_beam_bleu"] <= 100 and ted["reference_placeholder_acc"] == 1.0
    (run / "report.md").unlink()
    assert main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    assert "## `deepnotes eval` results" in report and "train_dev.raw" in report
    (tmp_path / "bad.zh").write_text("只有一行\n", encoding="utf-8")
    (tmp_path / "bad.en").write_text("one\ntwo\n", encoding="utf-8")
    assert main(["eval", str(run), "--data", str(tmp_path / "bad")]) == 2


@needs_data
def test_sample_translates_with_beam_search(run, capsys):
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "Cannot open file %s"]) == 0
    first = capsys.readouterr().out
    assert first.endswith("\n") and first.count("\n") == 1  # one translation (the fast models are weak)
    res = json.loads((run / "results.json").read_text())["models"]
    assert best_model(run, load_config(run)[1]) == max(res, key=lambda m: res[m]["test"]["beam"]["bleu"])
    # beam search is deterministic: the sampling flags do not change it
    assert main(["sample", str(run), "--prompt", "Cannot open file %s", "--seed", "7", "--temperature", "1.5"]) == 0
    assert capsys.readouterr().out == first
    assert main(["sample", str(run), "--prompt", "   "]) == 2
    assert "--prompt must not be empty" in capsys.readouterr().err


@needs_data
def test_resume_keeps_finished_models_and_retrains_an_unfinished_one(run, capsys):
    rnn_metrics = (run / "models" / "rnn" / "metrics.csv").read_text()
    rnn_result = (run / "models" / "rnn" / "result.json").read_text()
    capsys.readouterr()
    assert main(["run", "translation", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[rnn] already finished, kept" in out and "[transformer] already finished, kept" in out
    assert "epoch 1/2" not in out  # nothing retrained
    assert (run / "models" / "rnn" / "metrics.csv").read_text() == rnn_metrics
    # an interrupted transformer (no result, no checkpoint) is trained again; the rnn is kept
    before = json.loads((run / "models" / "transformer" / "result.json").read_text())
    (run / "models" / "transformer" / "result.json").unlink()
    assert main(["run", "translation", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[rnn] already finished, kept" in out and "[transformer] epoch 2/2" in out
    after = json.loads((run / "models" / "transformer" / "result.json").read_text())
    assert after["test"]["beam"]["bleu"] == pytest.approx(before["test"]["beam"]["bleu"])  # seeded: same model
    assert after["final_val_loss"] == pytest.approx(before["final_val_loss"], rel=1e-9)
    assert (run / "models" / "rnn" / "result.json").read_text() == rnn_result
    assert main(["run", "translation", "--resume", str(run), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--models", "rnn,lstm"], "--models: unknown model 'lstm'"),
    (["--copy", "gru"], "--copy: unknown model 'gru'"),
    (["--copy", "transformer", "--copy-continuation", "rnn"], "--copy-continuation rnn: the term belongs to the copy "
                                                               "attention; add rnn to --copy"),
    (["--d-model", "30", "--n-heads", "4"], "--d-model 30 must be divisible by --n-heads 4"),
    (["--beam-size", "0"], "--beam-size must be >= 1"),
    (["--no-repeat-ngram-size", "-1"], "--no-repeat-ngram-size must be >= 0"),
    (["--ema-decay", "-0.1"], "--ema-decay must be in [0, 1)"),
    (["--coverage-penalty", "-1"], "--coverage-penalty must be a number >= 0"),
    (["--copy", "rnn", "--selective-read"], "--selective-read reads where the Transformer copied from"),
    (["--copy", "rnn", "--coverage-penalty", "0.2"], "--coverage-penalty reads the Transformer's copy attention"),
    (["--warmup", "1.5"], "--warmup must be in (0, 1)"),
    (["--bpe-dropout", "1"], "--bpe-dropout must be in [0, 1)"),
    (["--min-teacher-forcing-ratio", "1.5"], "--min-teacher-forcing-ratio must be in [0, 1]"),
    (["--length-penalty-grid", "1,-0.5"], "--length-penalty and --length-penalty-grid must be >= 0"),
    (["--val-bleu-sentences", "-1"], "--val-bleu-sentences must be >= 0"),
    (["--data", "/nonexistent/train_dev.raw"], "/nonexistent/train_dev.raw.en is missing"),
])
def test_bad_flags_exit_2_with_a_message(tmp_path, capsys, flags, message):
    assert main(["run", "translation", *flags, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_unparsable_flag_values_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "translation", "--vocab-size", "many", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--vocab-size" in capsys.readouterr().err
