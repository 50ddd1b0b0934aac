"""The gan lab end to end through the CLI on Fashion-MNIST (fast preset: four variants, one seed, two short epochs):
files, results that agree with the per-model files, the networks each variant saved, report re-render, eval, resume
of a finished run and of a run stopped after an epoch (bit-equal weights), one-line errors for bad flags."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data import get_image_dataset
from deepnotes.data.images import load_held_out

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None,
                                reason="Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)")

LAB = "gan"
FAST = ["run", LAB, "--preset", "fast", "--no-progress", "--device", "cpu", "--threads", "1"]
VARIANTS = ("dcgan", "wgan-gp", "sn-gan", "cgan")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(FAST + ["--out", str(out)]) == 0
    (run,) = list((out / LAB).iterdir())
    return run


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_files_and_report(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "samples.png", "interpolations.png",
                 "class_histograms.png", "fid_curves.png", "neighbours.png", "models/classifier/model.safetensors",
                 "models/classifier/result.json"):
        assert (run_dir / name).is_file(), name
    for v in VARIANTS:
        for name in ("model.safetensors", "result.json", "metrics.csv", "samples.safetensors"):
            assert (run_dir / "models" / f"{v}-seed0" / name).is_file(), (v, name)
    text = (run_dir / "report.md").read_text()
    for part in ("## Results", "real test half B", "(floor)", "WGAN-GP's mean FID below DCGAN's",
                 "SN-GAN's mean FID below DCGAN's", "judged the class asked for", "](samples.png)",
                 "](interpolations.png)", "](class_histograms.png)", "](fid_curves.png)", "](neighbours.png)",
                 "## FID per seed", "## cGAN: share judged as the class asked for", "the judge on real test images"):
        assert part in text, part


def test_results_agree_with_the_model_files(run_dir):
    res = read(run_dir / "results.json")
    judge = read(run_dir / "models/classifier/result.json")
    assert res["classifier"]["test_acc"] == judge["test_acc"] and 0 <= judge["test_acc"] <= 1
    labels = load_held_out("fashion-mnist", None, 600, 200, 0.0, 0).test.labels  # the fast preset's 200 test images
    counts = torch.bincount(labels, minlength=10).double()  # the per-class accuracies,
    assert sum(c * a for c, a in zip(counts.tolist(), judge["test_acc_per_class"])) / counts.sum() == pytest.approx(
        judge["test_acc"], abs=1e-6)  # weighted by class size, give the overall accuracy
    assert judge["features"] == 84  # the fast preset's judge: LeNet-5, whose penultimate layer has 84 units
    assert res["half_size"] == 100 and res["n_samples"] == 100  # --limit-test 200 cut in two; --n-samples 100
    assert res["floor"]["fid"] >= 0 and res["floor"]["n"] == 100
    for v in VARIANTS:
        model = read(run_dir / "models" / f"{v}-seed0" / "result.json")
        row = res["variants"][v]
        assert row["fid"] == [model["fid"]] and row["fid_mean"] == model["fid"] and row["fid_std"] == 0
        assert math.isfinite(model["fid"]) and model["fid"] > res["floor"]["fid"]  # six updates do not fool the judge
        assert 1 <= model["is_mean"] <= 10 and sum(model["histogram"]["counts"]) == 100
        assert model["generator_updates"] == 6  # --epochs 2 x --steps-per-epoch 3
        # --n-critic 2 for wgan-gp, --sn-n-critic 3 for sn-gan and cgan, 1 for dcgan
        assert model["discriminator_updates"] == {"wgan-gp": 12, "sn-gan": 18, "cgan": 18}.get(v, 6)
        assert len(model["curve_fid"]) == 2 and all(math.isfinite(f) for f in model["curve_fid"])
        assert model["nn"]["real_median"] > 0 and model["nn"]["ratio"] > 0
    cgan = read(run_dir / "models/cgan-seed0/result.json")
    assert 0 <= cgan["asked_share"] <= 1 and len(cgan["asked_share_per_class"]) == 10
    assert res["checks"]["cgan_asked_class"] == (cgan["asked_share"] >= 0.9)
    assert res["checks"]["wgan-gp_beats_dcgan"] == (res["variants"]["wgan-gp"]["fid_mean"]
                                                   < res["variants"]["dcgan"]["fid_mean"])
    assert "asked_share" not in read(run_dir / "models/dcgan-seed0/result.json")


def test_each_variant_saved_its_own_networks_and_samples(run_dir):
    w = {v: load_file(str(run_dir / "models" / f"{v}-seed0" / "model.safetensors")) for v in VARIANTS}
    spectral = {v: any(".parametrizations.weight.original" in k and k.startswith("discriminator.") for k in w[v])
                for v in VARIANTS}
    assert spectral == {"dcgan": False, "wgan-gp": False, "sn-gan": True, "cgan": True}
    d_bn = {v: any(k.startswith("discriminator.bn.") for k in w[v]) for v in VARIANTS}
    assert d_bn == {"dcgan": True, "wgan-gp": False, "sn-gan": False, "cgan": False}  # the critic has no batch norm
    assert "discriminator.head.embed.parametrizations.weight.original" in w["cgan"]  # the projection's embedding
    assert "generator.bn0.gamma.weight" in w["cgan"] and "generator.bn0.weight" in w["dcgan"]  # conditional BN
    for v in VARIANTS:
        s = load_file(str(run_dir / "models" / f"{v}-seed0" / "samples.safetensors"))
        assert s["grid"].shape == ((80 if v == "cgan" else 64), 1, 28, 28)  # cGAN: a row of 8 per class
        assert s["interpolations"].shape == (36, 1, 28, 28)  # 4 rows of 9 steps
        assert 0 <= float(s["grid"].min()) <= float(s["grid"].max()) <= 1
        d = s["nn_distances"]  # (4, 3): each shown sample's 3 nearest training images, nearest first
        assert s["nn_images"].shape == (12, 1, 28, 28) and d.shape == (4, 3) and torch.all(d[:, 1:] >= d[:, :-1])


def test_report_rerenders_and_eval_rescores(run_dir):
    (run_dir / "report.md").unlink()
    (run_dir / "samples.png").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").is_file() and (run_dir / "samples.png").is_file()
    assert main(["eval", str(run_dir), "--device", "cpu"]) == 0
    ev = read(run_dir / "eval" / "fashion-mnist-fresh-z.json")
    res = read(run_dir / "results.json")
    assert ev["floor fid"] == pytest.approx(res["floor"]["fid"], rel=1e-9)  # the same judge and test halves
    for v in VARIANTS:
        assert math.isfinite(ev[f"{v} fid"]) and ev[f"{v} fid"] > ev["floor fid"]
        assert math.isfinite(ev[f"{v} fid vs train"]) and ev[f"{v} fid vs train"] > 0
    assert 0 <= ev["cgan asked class"] <= 1
    assert main(["report", str(run_dir)]) == 0
    assert "fashion-mnist (fresh z)" in (run_dir / "report.md").read_text()  # the eval history in the report


def test_resume_of_a_finished_run_retrains_nothing(run_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    assert len(before) == 5
    capsys.readouterr()
    assert main(["run", LAB, "--resume", str(run_dir), "--no-progress", "--threads", "1"]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (run_dir / "models").glob("*/model.safetensors")}
    out = capsys.readouterr().out
    assert "epoch 1/" not in out and "finished in an earlier session" in out


def test_run_stopped_after_an_epoch_ends_like_an_uninterrupted_one(tmp_path):
    args = FAST + ["--variants", "wgan-gp,cgan"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    (full,) = list((tmp_path / "full" / LAB).iterdir())
    stopped = tmp_path / "stopped"
    shutil.copytree(full, stopped)
    for v in ("wgan-gp", "cgan"):  # as if killed after the first epoch of each
        folder = stopped / "models" / f"{v}-seed0"
        for name in ("result.json", "model.safetensors", "samples.safetensors"):
            (folder / name).unlink()
        shutil.rmtree(folder / "checkpoints" / "epoch-0002")
    (stopped / "results.json").unlink()
    assert main(["run", LAB, "--resume", str(stopped), "--no-progress", "--threads", "1"]) == 0
    for v in ("wgan-gp", "cgan"):
        rel = Path("models") / f"{v}-seed0"
        assert (stopped / rel / "model.safetensors").read_bytes() == (full / rel / "model.safetensors").read_bytes(), v
        a, b = read(stopped / rel / "result.json"), read(full / rel / "result.json")
        for key in ("fid", "is_mean", "histogram", "curve_fid", "asked_share"):
            assert a.get(key) == b.get(key), (v, key)


@pytest.mark.parametrize("flag, value, message", [
    ("--variants", "dcgan,biggan", "--variants: unknown biggan"),
    ("--seeds", "1,1", "must not repeat"),
    ("--n-critic", "0", "--n-critic"),
    ("--limit-test", "10", "--limit-test 10"),
    ("--asked-share", "1.5", "--asked-share"),
    ("--min-share", "0", "--min-share"),
])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value, message):
    assert main(["run", LAB, "--preset", "fast", flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / LAB).exists()
