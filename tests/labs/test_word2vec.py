"""The word2vec lab end to end through the CLI on the real KJV (fast preset): files, metrics vs the untrained
baseline, eval on the KJV and on another file, report re-render, resume (finished: no retraining; interrupted:
the same weights as uninterrupted), and one-line errors for bad flags."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data.text import KJV
from deepnotes.experiment import get_lab

PRESETS = get_lab("word2vec").presets
DEFAULT_WORDS = get_lab("word2vec").config_cls().words

pytestmark = pytest.mark.skipif(
    not KJV.tsv_path().is_file() and shutil.which("bible") is None,
    reason="the KJV is not built and the `bible` program (apt bible-kjv bible-kjv-text) is missing",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "word2vec", "--preset", "fast", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    (run,) = list((out / "word2vec").iterdir())
    return run


def test_run_folder_has_report_plots_and_checkpoints(run_dir):
    for name in ("config.json", "vocab.json", "metrics.csv", "model.safetensors", "results.json", "report.md",
                 "loss.png", "map.png"):
        assert (run_dir / name).is_file(), name
    for png in ("loss.png", "map.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in (run_dir / "report.md").read_text()
    epochs = PRESETS["fast"]["epochs"]
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 1 + epochs
    assert (run_dir / "checkpoints" / f"epoch-{epochs:04d}").is_dir()
    report = (run_dir / "report.md").read_text()
    assert "3000 of 31102 verses" in report and "| god" in report


def test_trained_beats_untrained(run_dir):
    res = json.loads((run_dir / "results.json").read_text())
    tr, un = res["trained"], res["untrained"]
    assert res["metric"] == "pair_auc" and res["pair_auc"] == tr["pair_auc"]
    assert un["val_loss"] == pytest.approx(6 * math.log(2), rel=1e-6)  # M = 0 before training, Q = 5
    assert tr["val_loss"] < un["val_loss"] - 1.0
    assert abs(un["pair_auc"] - 0.5) < 0.15  # random vectors: related pairs are no closer than random words
    assert tr["pair_auc"] > un["pair_auc"] + 0.2
    assert tr["cos_gap"] > 0.1
    assert len(tr["pairs"]) >= 10  # most of our pairs occur in the first 3000 verses
    vocab = json.loads((run_dir / "vocab.json").read_text())
    assert res["corpus"]["vocab_size"] == len(vocab["words"]) and min(vocab["counts"]) >= 3
    neighbours = tr["neighbours"]
    assert set(neighbours) == set(DEFAULT_WORDS)
    assert neighbours["jesus"] is None and neighbours["david"] is None  # not in Genesis/Exodus: reported, not an error
    assert len(neighbours["egypt"]) == 8 and all(-1 <= s <= 1 for _, s in neighbours["egypt"])
    assert len(res["history"]) == PRESETS["fast"]["epochs"] and len(res["curve"]) > 10


def test_hogwild_workers_train_as_well(run_dir, tmp_path):
    """--workers 2: two threads step through 16 batches per update without locks; same data, the vectors as good
    (not equal: the threads' timing decides the order of the additions)."""
    assert main(["run", "word2vec", "--preset", "fast", "--workers", "2", "--out", str(tmp_path), "--no-progress",
                 "--device", "cpu"]) == 0
    (run,) = list((tmp_path / "word2vec").iterdir())
    one, two = (json.loads((r / "results.json").read_text()) for r in (run_dir, run))
    assert two["trained"]["pair_auc"] > two["untrained"]["pair_auc"] + 0.2
    assert abs(two["trained"]["pair_auc"] - one["trained"]["pair_auc"]) < 0.05
    assert two["trained"]["val_loss"] < one["trained"]["val_loss"] + 0.1
    batches = [row["step"] for row in two["history"]]  # updates of 16 batches: about a sixteenth as many
    assert batches[-1] == pytest.approx(one["history"][-1]["step"] / 16, abs=len(batches))


def test_eval_recomputes_the_metrics_and_report_shows_them(run_dir, tmp_path):
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    res = json.loads((run_dir / "results.json").read_text())
    ev = json.loads((run_dir / "eval" / "kjv.json").read_text())
    for key in ("trained_pair_auc", "trained_val_loss", "untrained_pair_auc", "trained_analogy_top5"):
        assert ev[key] == pytest.approx(res[key], rel=1e-9), key
    # another file of the kjv.tsv format: its own validation verses, the run's vocabulary
    lines = KJV.tsv_path().read_text(encoding="utf-8").splitlines()[3000:3400] if KJV.tsv_path().is_file() else []
    if lines:
        other = tmp_path / "leviticus.tsv"
        other.write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert main(["eval", str(run_dir), "--data", str(other), "--device", "cpu"]) == 0
        ev2 = json.loads((run_dir / "eval" / "leviticus.json").read_text())
        assert "400 verses" in ev2["data"] and ev2["trained_val_loss"] < ev2["untrained_val_loss"]
    assert main(["report", str(run_dir)]) == 0
    assert "`deepnotes eval` results" in (run_dir / "report.md").read_text()


def test_report_draws_a_tsne_map_when_the_config_asks(run_dir, tmp_path):
    copy = tmp_path / "tsne"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["config"]["projection"] = "tsne"
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["report", str(copy)]) == 0
    assert "t-SNE (cosine, scikit-learn)" in (copy / "report.md").read_text()
    assert (copy / "map.png").read_bytes() != (run_dir / "map.png").read_bytes()


def test_eval_with_unknown_data_is_a_one_line_error(run_dir, capsys):
    assert main(["eval", str(run_dir), "--data", "mnist", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "--data 'mnist'" in err and "kjv.tsv format" in err and "Traceback" not in err


def test_resume_of_a_finished_run_does_not_retrain(run_dir, capsys):
    before = (run_dir / "model.safetensors").read_bytes()
    mtime = (run_dir / "model.safetensors").stat().st_mtime_ns
    assert main(["run", "word2vec", "--resume", str(run_dir), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "epoch 1/" not in out
    assert (run_dir / "model.safetensors").stat().st_mtime_ns == mtime
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_interrupted_run_resumes_to_the_same_weights(run_dir, tmp_path, capsys):
    epochs = PRESETS["fast"]["epochs"]
    cut = tmp_path / "cut"
    shutil.copytree(run_dir, cut)
    for name in ("model.safetensors", "results.json", "report.md"):
        (cut / name).unlink()
    shutil.rmtree(cut / "checkpoints" / f"epoch-{epochs:04d}")  # as if killed during the last epoch
    assert main(["run", "word2vec", "--resume", str(cut), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and f"epoch {epochs}/{epochs}" in out and "epoch 1/" not in out
    a, b = load_file(str(run_dir / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    for key in ("E.weight", "M.weight"):
        assert (a[key] == b[key]).all(), key
    full, resumed = (json.loads((d / "results.json").read_text()) for d in (run_dir, cut))
    assert resumed["curve"] == full["curve"] and resumed["trained_pair_auc"] == full["trained_pair_auc"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
    assert len((cut / "metrics.csv").read_text().strip().splitlines()) == 1 + epochs


@pytest.mark.parametrize(
    "flags, message",
    [(["--window", "0"], "--window"), (["--negatives", "0"], "--negatives"),
     (["--val-fraction", "1"], "--val-fraction"),
     (["--lr", "0"], "--lr"), (["--min-count", "0"], "--min-count"), (["--subsample", "-1"], "--subsample"),
     (["--max-verses", "-5"], "--max-verses"), (["--min-count", "100000"], "--min-count"),
     (["--share-negatives", "0"], "--share-negatives"), (["--workers", "0"], "--workers"),
     (["--workers", "2", "--optimizer", "adam"], "--workers 2 needs --optimizer sgd"),
     (["--words", ""], "--words")],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["run", "word2vec", "--preset", "fast", "--out", str(tmp_path), "--device", "cpu", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
