"""The translation lab end to end through the CLI on the real ui-translations pairs (fast preset); its parts are
tested with the library modules they live in (tests/data, tests/metrics, tests/models, tests/nn)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from deepnotes.cli import main
from deepnotes.data.translation import SENTINELS, UI_TRANSLATIONS, SubwordTokenizer
from deepnotes.experiment import Run
from deepnotes.metrics.translation import best_on_validation, score

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
    for text in ("## Results", "| rnn", "| transformer", "## Validation BLEU and the length penalty",
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
    # beam search is deterministic: the sampling flags do not change it
    assert main(["sample", str(run), "--prompt", "Cannot open file %s", "--seed", "7", "--temperature", "1.5"]) == 0
    assert capsys.readouterr().out == first
    assert main(["sample", str(run), "--prompt", "   "]) == 2
    assert "--prompt must not be empty" in capsys.readouterr().err


@needs_data
def test_sample_uses_the_model_chosen_on_validation_never_on_test(run, capsys, tmp_path):
    prompt = "%lu package was automatically installed and is no longer required."
    (tmp_path / "p.en").write_text(prompt + "\n", encoding="utf-8")
    (tmp_path / "p.zh").write_text("参考\n", encoding="utf-8")
    assert main(["eval", str(run), "--data", str(tmp_path / "p")]) == 0  # each model's beam translation of it
    beam = {m: (run / "eval" / "p" / f"{m}.beam.zh").read_text(encoding="utf-8") for m in ("rnn", "transformer")}
    assert beam["rnn"] != beam["transformer"]  # so the output tells which model translated
    results = {m: json.loads((run / "models" / m / "result.json").read_text()) for m in beam}
    chosen = best_on_validation(results)
    assert chosen == max(results, key=lambda m: results[m]["val"]["beam"][f"{results[m]['length_penalty']:g}"]["bleu"])
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", prompt]) == 0
    assert capsys.readouterr().out == beam[chosen]
    # the other model made best on validation and worst on test: sample follows validation
    other = next(m for m in beam if m != chosen)
    saved = {m: (run / "models" / m / "result.json").read_text() for m in beam}
    try:
        for m, r in results.items():
            r["val"]["beam"][f"{r['length_penalty']:g}"]["bleu"] = 99.0 if m == other else 1.0
            r["test"]["beam"]["bleu"] = 1.0 if m == other else 99.0
            Run(run).write_json(f"models/{m}/result.json", r)
        assert main(["sample", str(run), "--prompt", prompt]) == 0
        assert capsys.readouterr().out == beam[other]
    finally:
        for m, text in saved.items():
            (run / "models" / m / "result.json").write_text(text)


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
    (["--models", "rnn,rnn"], "--models: a model is named twice"),
    (["--models", ""], "--models needs at least one value"),
    (["--copy", "gru"], "--copy: unknown model 'gru'"),
    (["--copy", "transformer", "--copy-continuation", "rnn"], "--copy-continuation rnn: the term belongs to the copy "
                                                               "attention; add rnn to --copy"),
    (["--d-model", "30", "--n-heads", "4"], "--d-model 30 must be divisible by --n-heads 4"),
    (["--beam-size", "0"], "--beam-size must be in [1, 1000], got 0"),
    (["--no-repeat-ngram-size", "-1"], "--no-repeat-ngram-size must be in [0, 1000], got -1"),
    (["--ema-decay", "-0.1"], "--ema-decay must be in [0, 1), got -0.1"),
    (["--coverage-penalty", "-1"], "--coverage-penalty must be in [0, inf), got -1.0"),
    (["--copy", "rnn", "--selective-read"], "--selective-read reads where the Transformer copied from"),
    (["--copy", "rnn", "--coverage-penalty", "0.2"], "--coverage-penalty reads the Transformer's copy attention"),
    (["--warmup", "1.5"], "--warmup must be in (0, 1), got 1.5"),
    (["--bpe-dropout", "1"], "--bpe-dropout must be in [0, 1), got 1.0"),
    (["--min-teacher-forcing-ratio", "1.5"], "--min-teacher-forcing-ratio must be in [0, 1], got 1.5"),
    (["--length-penalty-grid", "1,-0.5"], "each value of --length-penalty-grid must be in [0, inf), got -0.5"),
    (["--val-bleu-sentences", "-1"], "--val-bleu-sentences must be in [0, 1000000000], got -1"),
    (["--val-fraction", "0.45", "--test-fraction", "0.45"], "--val-fraction and --test-fraction must sum below 0.9"),
    (["--vocab-size", "100"], "--vocab-size must be in [300, 1000000], got 100"),
    (["--data", "/nonexistent/train_dev.raw"], "/nonexistent/train_dev.raw.en is missing"),
])
def test_bad_flags_exit_2_with_a_message_and_leave_no_run_folder(tmp_path, capsys, flags, message):
    assert main(["run", "translation", *flags, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs" / "translation").exists()


def test_unparsable_flag_values_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "translation", "--vocab-size", "many", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--vocab-size" in capsys.readouterr().err


def test_fused_flag_picks_the_models_paths():
    """--fused (default) and --no-fused reach both models: the GRUs' kernel, attention and LayerNorm paths."""
    from deepnotes.labs.translation import TranslationConfig
    from deepnotes.models.seq2seq import model_from_flags

    for fused in (True, False):
        cfg = TranslationConfig(fused=fused)
        rnn, transformer = model_from_flags("rnn", cfg, 300), model_from_flags("transformer", cfg, 300)
        assert rnn.encoder.use_fused is rnn.decoder.use_fused is fused
        assert transformer.cfg.fused_attention is fused
        assert {m.use_fused for m in transformer.modules() if hasattr(m, "use_fused")} == {fused}
    assert TranslationConfig().fused
