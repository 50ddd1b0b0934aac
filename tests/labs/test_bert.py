"""The bert lab end to end through the CLI on the fast preset (a 1-layer BERT of width 32, tiny data): topic's files,
its results agree with the saved model and the baseline, masked-LM pre-training feeding ``--init mlm``, QA on a
SQuAD file the test writes (and ``eval --data`` on another), resume of a finished run, report re-render, and bad
input -> one line, exit 2, no run folder. Plus the word-piece encoders against the tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from deepnotes.cli import main
from deepnotes.data import bert_tasks as bt
from deepnotes.data.text import KJV
from deepnotes.experiment import Run
from deepnotes.labs import bert as lab
from deepnotes.report import read_metrics_csv

LAB = "bert"
FAST = ["--preset", "fast", "--no-progress", "--device", "cpu", "--threads", "1"]
NEEDS_FORTUNES = pytest.mark.skipif(not (bt.FORTUNE_DIR / "computers").is_file(),
                                    reason="fortunes not installed: sudo apt-get install fortunes fortunes-min")
NEEDS_KJV = pytest.mark.skipif(not KJV.tsv_path().is_file() and shutil.which("bible") is None,
                               reason="KJV missing: sudo apt-get install bible-kjv, then deepnotes data build kjv")
WORDS = ["red", "green", "blue", "large", "small", "quiet", "verbose", "binary", "sorted", "hidden"]


def squad(n_titles: int, seed: int) -> dict:
    """A SQuAD-format set: per title a context of options, a question per option, the answer its description."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for t in range(n_titles):
        context, qas = "", []
        for j in range(6):
            w = [WORDS[int(i)] for i in torch.randint(len(WORDS), (3,), generator=g)]
            tag, desc = f"--opt{t}{j}", f"shows the {w[0]} and {w[1]} {w[2]} entries."
            start = len(context) + len(tag) + 1
            context += f"{tag} {desc} "
            qas.append({"id": f"{t}-{j}", "question": f"what does {tag} do?",
                        "answers": [{"text": desc, "answer_start": start}]})
        data.append({"title": f"page{t}", "paragraphs": [{"context": context.strip(), "qas": qas}]})
    return {"data": data}


@pytest.fixture(scope="module")
def topic_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", LAB, *FAST, "--losses", "ce,soft-f1", "--out", str(out)]) == 0
    (run,) = list((out / LAB).iterdir())
    return run


@NEEDS_FORTUNES
def test_topic_files_results_and_saved_model(topic_run):
    for name in ("config.json", "data.json", "results.json", "report.md", "curves.png"):
        assert (topic_run / name).is_file(), name
    res = json.loads((topic_run / "results.json").read_text())
    data = json.loads((topic_run / "data.json").read_text())
    assert data["labels"] == list(bt.TOPICS) and data["sizes"] == {"train": 48, "val": 24, "test": 24}
    m = res["models"]["random-ce"]
    assert res["ladder"] == [["baseline", res["baseline"]["macro_f1"]], ["random", m["test"]["macro_f1"]]]  # ce's
    assert set(res["models"]) == {"random-ce", "random-soft-f1"}
    rows = read_metrics_csv(topic_run / "models" / "random-soft-f1" / "metrics.csv")
    assert 0 <= float(rows[-1]["train_loss"]) <= 1  # the soft-F1 loss, 1 - macro soft F1
    assert res["ladder_holds"] == (res["ladder"][0][1] < res["ladder"][1][1])
    # the saved model, re-scored on the test split rebuilt from the config, gives the recorded metrics
    cfg = Run(topic_run).config
    tok = lab.tokenizer(cfg.max_length)
    task_data = lab.load_task(cfg, tok)
    model = lab.BertForTask(lab.build_encoder(cfg, "random", tok.vocab_size), "sequence", 8, cfg.dropout)
    Run(topic_run).load_weights(model, "models/random-ce/model.safetensors")
    again = lab.score(cfg, model, task_data, "test", torch.device("cpu"))
    assert again["macro_f1"] == pytest.approx(m["test"]["macro_f1"], abs=1e-12)
    assert again["per_class_f1"] == pytest.approx(m["test"]["per_class_f1"])
    assert lab.baseline(cfg, task_data)["macro_f1"] == pytest.approx(res["baseline"]["macro_f1"])
    report = (topic_run / "report.md").read_text()
    for part in ("## Results", "## Loss curves of the starting points", "## Per-class F1 (test)", "](curves.png)",
                 "## Soft-F1 vs cross-entropy (test)", "| random | soft-f1 |"):
        assert part in report, part


@NEEDS_FORTUNES
def test_resume_of_a_finished_run_and_report(topic_run):
    weights = topic_run / "models" / "random-ce" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["run", LAB, "--resume", str(topic_run), "--no-progress"]) == 0
    assert weights.read_bytes() == before
    (topic_run / "report.md").unlink()
    assert main(["report", str(topic_run)]) == 0
    assert "## Per-class F1 (test)" in (topic_run / "report.md").read_text()


@NEEDS_FORTUNES
@NEEDS_KJV
def test_pretrain_then_qa_from_random_and_mlm(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", LAB, *FAST, "--task", "pretrain", "--limit-train", "16", "--limit-eval", "8",
                 "--out", str(out / "pre")]) == 0
    (pre,) = list((out / "pre" / LAB).iterdir())
    assert json.loads((pre / "results.json").read_text())["updates"] == 2
    train_json, other_json = tmp_path / "train.json", tmp_path / "other.json"
    train_json.write_text(json.dumps(squad(10, 0)))
    other_json.write_text(json.dumps(squad(3, 1)))
    assert main(["run", LAB, *FAST, "--task", "qa", "--qa-json", str(train_json), "--init", "random,mlm",
                 "--mlm-checkpoint", str(pre), "--out", str(out / "qa")]) == 0
    (qa,) = list((out / "qa" / LAB).iterdir())
    res = json.loads((qa / "results.json").read_text())
    assert [r[0] for r in res["ladder"]] == ["baseline", "random", "mlm"] and res["metric"] == "em"
    for m in res["models"].values():
        assert 0 <= m["test"]["em"] <= m["test"]["f1"] <= 1
    assert 0 <= res["baseline"]["em"] <= res["baseline"]["f1"] <= 1
    assert main(["eval", str(qa), "--data", str(other_json)]) == 0
    metrics = json.loads((qa / "eval" / "other.json").read_text())
    assert metrics["examples"] == 18
    assert {"random-ce em", "random-ce f1", "mlm-ce em", "baseline em", "baseline f1"} <= set(metrics)
    capsys.readouterr()
    assert main(["eval", str(pre)]) == 2  # a pre-training run has nothing to evaluate
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_encoders_agree_with_the_tokenizer():
    tok = lab.tokenizer(64)
    cache = lab.PieceCache(tok)
    text = "Don't re-use it, e.g. --block-size=M (x_y). Unaffable!"
    pieces = [p for ps in cache([text[a:b] for a, b in bt.word_spans(text)]) for p in ps]
    assert pieces == tok(text)["input_ids"][0, 1:-1].tolist()  # words encoded alone = the whole text's pieces
    ids, types, mask, labels = lab.encode_words(cache, [["Unaffable", "light"]], [[2, 1]], 16)
    n = int(mask.sum())
    assert ids[0, :n].tolist() == tok("Unaffable light")["input_ids"][0].tolist() and types.sum() == 0
    n_first = len(cache(["Unaffable"])[0])
    assert labels[0, :n].tolist() == [-100, 2] + [-100] * (n_first - 1) + [1, -100]
    ex = bt.QAExample("q", "t", "alpha beta gamma delta epsilon zeta eta theta", "where?", (("beta gamma", 6),))
    feats = lab.qa_features([ex], cache, max_length=12, doc_stride=4, max_question_length=3)
    ids, _, _, pos = feats.tensors
    assert len(feats.example) > 1  # the context does not fit one window: strided windows
    for w in range(len(feats.example)):
        s, e = pos[w].tolist()
        if s:  # a window holding the whole answer points at its pieces
            assert tok.decode(ids[w, s:e + 1].tolist()) == "beta gamma"
    assert any(pos[w, 0] > 0 for w in range(len(feats.example))) and any(pos[w, 0] == 0 for w in range(
        len(feats.example)))


@NEEDS_FORTUNES
@NEEDS_KJV
def test_pretrain_with_next_sentence_prediction(tmp_path):
    """--nsp: pairs from documents (KJV chapters, fortunes' sentences), half of B's from another document; the
    run records masked-LM and NSP metrics, and its encoder (pooler and segment embeddings trained) starts
    next-verse."""
    docs = lab.pretrain_documents(0)
    texts = lab.pretrain_texts(0)
    kjv = [d for d in docs if len(d) > 1 and d[0] in texts[:40]]
    assert kjv and all(len(d) > 1 for d in kjv)  # chapters of verses, in order
    assert sum(len(d) for d in docs) > len(texts)  # fortunes split into sentences
    out = tmp_path / "runs"
    assert main(["run", LAB, *FAST, "--task", "pretrain", "--nsp", "--limit-train", "16", "--limit-eval", "8",
                 "--out", str(out / "pre")]) == 0
    (pre,) = list((out / "pre" / LAB).iterdir())
    res = json.loads((pre / "results.json").read_text())
    assert res["nsp"] and 0 <= res["val_nsp_acc"] <= 1 and res["texts"] == {"train": 16, "val": 8}
    rows = read_metrics_csv(pre / "metrics.csv")
    row = rows[-1]
    assert float(row["val_loss"]) == pytest.approx(float(row["val_mlm_loss"]) + float(row["val_nsp_loss"]),
                                                   rel=1e-5)
    assert main(["run", LAB, *FAST, "--task", "next-verse", "--init", "mlm", "--mlm-checkpoint", str(pre),
                 "--out", str(out / "nv")]) == 0


@pytest.mark.parametrize("args,flag", [
    (["--init", "random,bogus"], "init"), (["--init", "mlm"], "mlm-checkpoint"),
    (["--init", "mlm", "--mlm-checkpoint", "/nonexistent/run"], "mlm-checkpoint"),
    (["--task", "punctuation", "--losses", "soft-f1"], "losses"), (["--task", "qa", "--qa-json", "/no/file.json"],
                                                                   "qa-json"),
    (["--hidden", "30", "--heads", "4"], "hidden"), (["--epochs", "0"], "epochs"), (["--nsp"], "nsp")])
def test_bad_input_exits_2_with_one_line_and_no_run_folder(tmp_path, capsys, args, flag):
    assert main(["run", LAB, *FAST, *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err
    assert not (tmp_path / LAB).exists()


def test_bad_qa_json_content_exits_2_without_a_run_folder(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"title": "x", "paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q",'
                   ' "answers": [{"text": "zz", "answer_start": 0}]}]}]}]}')
    assert main(["run", LAB, *FAST, "--task", "qa", "--qa-json", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "answer_start" in err[0]
    assert not (tmp_path / "o" / LAB).exists()


def test_ladder_preset_asks_for_the_mlm_checkpoint(tmp_path, capsys):
    """The ladder preset fine-tunes random, mlm and minilm: without --mlm-checkpoint it stops before any work."""
    assert lab.PRESETS["ladder"]["init"] == ("random", "mlm", "minilm")
    assert lab.PRESETS["pretrain"]["task"] == "pretrain"
    assert main(["run", LAB, "--preset", "ladder", "--task", "punctuation", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlm-checkpoint" in err[0], err
    assert not (tmp_path / LAB).exists()
