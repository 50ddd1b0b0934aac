"""The autoencoder lab end to end through the CLI on Fashion-MNIST (fast preset): files, results per model, report
re-render, eval, resume of a finished run, and one-line errors for bad flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deepnotes.cli import main
from deepnotes.data import get_image_dataset

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None,
                                reason="Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)")
MODELS = ("ae", "dae", "vae", "vq-vae", "gumbel-vae")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "autoencoder", "--preset", "fast", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    (run,) = list((out / "autoencoder").iterdir())
    return run


def test_run_folder_results_and_report(run_dir):
    names = ["config.json", "data.json", "results.json", "figures.npz", "report.md", "reconstructions.png",
             "latent_pca.png", "latent_tsne.png", "interpolations.png", "samples.png", "loss_curves.png"]
    names += [f"models/{m}/{f}" for m in MODELS for f in ("model.safetensors", "metrics.csv")]
    for name in names:
        assert (run_dir / name).is_file(), name
    res = json.loads((run_dir / "results.json").read_text())
    for m in MODELS:
        r = res[m]
        assert 0 < r["mse"] < 0.25 and 0 < r["bce"] < 784 * math.log(2) * 1.5, m  # pixels in [0, 1]
        assert r["denoise_bce"] > 0, m
        assert 0.1 <= r["probe_acc"] <= 1.0 and r["train_time_s"] > 0 and r["parameters"] > 1000, m
    for m in ("vae", "vq-vae", "gumbel-vae"):
        assert res[m]["negative_elbo"] > 0, m
    assert "negative_elbo" not in res["ae"]
    assert res["vq-vae"]["negative_elbo"] == pytest.approx(res["vq-vae"]["bce"] + 16 * math.log(64), rel=1e-4)
    assert 1 <= res["vq-vae"]["perplexity"] <= res["vq-vae"]["codes_used"] <= 64
    assert res["ae"]["code_size"] == 16 and res["vq-vae"]["code_size"] == 16 * 16
    assert res["gumbel-vae"]["code_size"] == 16 * 64 and res["pixels"]["code_size"] == 784
    assert res["pixels"]["probe_acc"] > 0.5  # raw pixels of 10 clothing classes: far above chance
    text = (run_dir / "report.md").read_text()
    for piece in ("| gumbel-vae", "| raw pixels", "latent_tsne.png", "interpolations.png", "samples.png"):
        assert piece in text, piece


def test_report_rerenders_and_eval_rescores_every_model(run_dir):
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "report.md").is_file()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    ev = json.loads((run_dir / "eval" / "fashion-mnist.json").read_text())
    res = json.loads((run_dir / "results.json").read_text())
    assert ev["n"] == 10000  # eval scores the whole test split; the run scored its first 300
    for m in MODELS:
        assert abs(ev[f"{m}_mse"] - res[m]["mse"]) < 0.3 * res[m]["mse"], m  # the same model on more images
    assert "vae_negative_elbo" in ev and "vq-vae_perplexity" in ev


def test_resume_of_a_finished_run_keeps_every_model(run_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    assert main(["run", "autoencoder", "--resume", str(run_dir), "--no-progress", "--threads", "1"]) == 0
    after = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    assert before == after and len(after) == 5  # nothing retrained
    assert "epoch 1/" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--models", "ae,gan"], "--models"),
    (["--tau0", "0.4", "--tau-min", "0.5"], "--tau-min 0.5 must not exceed --tau0 0.4"),
    (["--noise-level", "2"], "--noise-level"),
    (["--vq-decay", "1"], "--vq-decay"),
    (["--width", "0"], "--width"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["run", "autoencoder", "--preset", "fast", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "autoencoder").exists() or not any((tmp_path / "autoencoder").iterdir())
