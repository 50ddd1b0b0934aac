"""The gan-toy lab end to end through the CLI (fast preset: the ring, five variants, one seed, two short epochs):
files, results that agree with the saved generators and snapshots, the protocol's metrics on hand cases, the
mixtures' constants and sampling, eval and report re-render, resume of a finished run and of a run stopped after
an epoch (bit-equal weights), one-line errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.data.toy2d import MIXTURES, grid_means, mode_metrics, ring_means, sample_mixture
from deepnotes.labs.gan_toy import VARIANTS, GanToyConfig, build_gan, fixed_noise, variant_of

LAB = "gan-toy"
FAST = ["run", LAB, "--preset", "fast", "--no-progress", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(FAST + ["--out", str(out)]) == 0
    (run,) = list((out / LAB).iterdir())
    return run


# ------------------------------------------------------------------------------------------------ the protocol
def test_mixture_constants_and_sampling():
    ring, grid = MIXTURES["ring"], MIXTURES["grid"]
    assert ring.std == 0.02 and grid.std == 0.05
    assert torch.allclose(ring.means.norm(dim=1), torch.full((8,), 2.0))  # radius 2
    assert torch.allclose(ring.means[2], torch.tensor([0.0, 2.0]), atol=1e-6)  # 2 pi k / 8
    assert grid.means.shape == (25, 2) and sorted(set(grid.means[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    x, k = sample_mixture(grid, 20000, torch.Generator().manual_seed(0))
    x2, _ = sample_mixture(grid, 20000, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # the generator decides everything
    resid = x - grid.means[k]
    assert resid.std().item() == pytest.approx(0.05, rel=0.03) and resid.mean().abs().max() < 0.003
    assert torch.bincount(k, minlength=25).min() > 20000 / 25 * 0.8  # components drawn uniformly
    assert torch.equal(ring_means(4, 1.0).round(), torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]]))
    assert grid_means(2, 2.0).tolist() == [[-1, -1], [-1, 1], [1, -1], [1, 1]]


def test_metrics_hand_cases():
    ring = MIXTURES["ring"]
    at_modes = ring.means.repeat(10, 1)  # 80 samples exactly at the 8 modes
    m = mode_metrics(at_modes, ring.means, ring.std)
    assert m["modes"] == 8 and m["high_quality"] == 1.0 and m["counts"] == [10] * 8
    assert m["effective_modes"] == pytest.approx(8.0)
    one = mode_metrics(ring.means[3].repeat(50, 1), ring.means, ring.std)  # all samples at one mode: collapse
    assert one["modes"] == 1 and one["high_quality"] == 1.0 and one["effective_modes"] == pytest.approx(1.0)
    far = mode_metrics(torch.full((30, 2), 10.0), ring.means, ring.std)
    assert far["modes"] == 0 and far["high_quality"] == 0.0 and far["effective_modes"] == 0.0
    # 3 std is the edge: 2.9 std from a mode counts, 3.1 does not; NaN samples count as neither
    edge = ring.means[0] + torch.tensor([[2.9 * 0.02, 0.0], [3.1 * 0.02, 0.0], [math.nan, 0.0]])
    m = mode_metrics(edge, ring.means, ring.std)
    assert m["modes"] == 1 and m["high_quality"] == pytest.approx(1 / 3)
    # min_count: a mode with a single stray high-quality sample is not captured when 2 are required
    mixed = torch.cat([ring.means[0].repeat(5, 1), ring.means[1:2]])
    assert mode_metrics(mixed, ring.means, ring.std)["modes"] == 2
    assert mode_metrics(mixed, ring.means, ring.std, min_count=2)["modes"] == 1
    with pytest.raises(ValueError, match="samples"):
        mode_metrics(torch.zeros(0, 2), ring.means, ring.std)


# ------------------------------------------------------------------------------------------------ the lab
def test_files_and_report(run_dir):
    for name in ("config.json", "results.json", "report.md", "snapshots_ring.png", "modes_over_training.png"):
        assert (run_dir / name).is_file(), name
    for variant in VARIANTS:
        folder = run_dir / "models" / "ring" / f"{variant}-seed0"
        for name in ("model.safetensors", "result.json", "metrics.csv", "snapshots/epoch-001.safetensors",
                     "snapshots/epoch-002.safetensors"):
            assert (folder / name).is_file(), (variant, name)
    report = (run_dir / "report.md").read_text()
    for section in ("## Results", "modes captured", "high-quality samples", "mode collapse visible and measured",
                    "fewer dropped modes with WGAN-GP", "fewer dropped modes with SN-GAN",
                    "## Density snapshots over training: ring", "](snapshots_ring.png)", "## Per seed"):
        assert section in report, section


def test_results_agree_with_saved_generators(run_dir):
    res = json.loads((run_dir / "results.json").read_text())
    cfg = GanToyConfig(**{**json.loads((run_dir / "config.json").read_text())["config"]})
    row = res["datasets"]["ring"]
    assert set(row["variants"]) == set(VARIANTS) and row["n_modes"] == 8
    ring = MIXTURES["ring"]
    for variant, v in row["variants"].items():
        result = json.loads((run_dir / "models" / "ring" / f"{variant}-seed0" / "result.json").read_text())
        # the saved generator, rebuilt and fed the run's fixed z, gives the recorded numbers and the last snapshot
        model = build_gan(cfg, variant, 0)
        model.load_state_dict(load_file(str(run_dir / "models" / "ring" / f"{variant}-seed0" / "model.safetensors")))
        with torch.no_grad():
            x = model["generator"](fixed_noise(cfg, 0))
        snap = load_file(str(run_dir / "models" / "ring" / f"{variant}-seed0" / "snapshots" / "epoch-002.safetensors"))
        assert torch.allclose(x, snap["samples"], atol=1e-6) and x.shape == (500, 2)
        m = mode_metrics(x, ring.means, ring.std)
        assert (m["modes"], m["high_quality"]) == (result["modes"], result["high_quality"])
        assert v["modes"] == [m["modes"]] and v["modes_mean"] == m["modes"] and v["modes_std"] == 0
        assert len(v["curve_modes"]) == 2 and result["generator_updates"] == 30
        # the fast preset's --n-critic 2 (the WGANs) and --sn-n-critic 3 (sngan)
        n_critic = 2 if VARIANTS[variant].repeat_critic else 3 if variant == "sngan" else 1
        assert result["discriminator_updates"] == 30 * n_critic
    mm = row["variants"]["minimax"]
    assert row["minimax_collapse"] == (mm["modes_mean"] < 8 or mm["collapse_runs"] > 0)
    assert row["wgan-gp_fewer_dropped"] == (row["variants"]["wgan-gp"]["modes_mean"] > mm["modes_mean"])
    # spectral normalization is on SN-GAN's discriminator only, and its power-iteration vectors are saved
    sn = load_file(str(run_dir / "models" / "ring" / "sngan-seed0" / "model.safetensors"))
    plain = load_file(str(run_dir / "models" / "ring" / "nonsaturating-seed0" / "model.safetensors"))
    assert any(k.endswith("_u") for k in sn) and not any(k.endswith("_u") for k in plain)


def test_sn_loss_flag_changes_only_the_spectral_variant():
    cfg = GanToyConfig(sn_loss="nonsaturating", sn_betas=(0.5, 0.999))
    assert variant_of(cfg, "sngan").loss == "nonsaturating" and variant_of(cfg, "sngan").spectral
    assert variant_of(cfg, "sngan").betas == (0.5, 0.999)
    assert variant_of(cfg, "minimax").loss == "minimax" and variant_of(cfg, "minimax").betas is None
    assert variant_of(GanToyConfig(), "sngan").loss == "hinge" and variant_of(GanToyConfig(), "sngan").betas == (0, 0.9)


def test_wgan_clip_weights_stay_clipped(run_dir):
    weights = load_file(str(run_dir / "models" / "ring" / "wgan-clip-seed0" / "model.safetensors"))
    critic = [v for k, v in weights.items() if k.startswith("discriminator.")]
    assert critic and all(v.abs().max() <= 0.01 + 1e-7 for v in critic)


def test_eval_report_and_resume_of_a_finished_run(run_dir, capsys):
    assert main(["eval", str(run_dir)]) == 0
    metrics = json.loads((run_dir / "eval" / "fresh-z.json").read_text())
    assert metrics["samples"] == 500 and 0 <= metrics["ring minimax modes"] <= 8
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", "grid"]) == 2  # the run never learned the grid
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data grid" in err[0]
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "fresh z" in (run_dir / "report.md").read_text()
    weights = run_dir / "models" / "ring" / "wgan-gp-seed0" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["run", LAB, "--resume", str(run_dir), "--no-progress"]) == 0
    assert weights.read_bytes() == before


def test_run_stopped_after_an_epoch_ends_like_an_uninterrupted_one(tmp_path):
    args = FAST + ["--variants", "wgan-gp,sngan"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    (full,) = list((tmp_path / "full" / LAB).iterdir())
    stopped = tmp_path / "stopped"
    shutil.copytree(full, stopped)
    for variant in ("wgan-gp", "sngan"):  # as if killed after the first epoch of each
        folder = stopped / "models" / "ring" / f"{variant}-seed0"
        for name in ("result.json", "model.safetensors", "snapshots/epoch-002.safetensors"):
            (folder / name).unlink()
        shutil.rmtree(folder / "checkpoints" / "epoch-0002")
    (stopped / "results.json").unlink()
    assert main(["run", LAB, "--resume", str(stopped), "--no-progress"]) == 0
    for variant in ("wgan-gp", "sngan"):
        rel = Path("models") / "ring" / f"{variant}-seed0" / "model.safetensors"
        assert (stopped / rel).read_bytes() == (full / rel).read_bytes(), variant
    resumed, uninterrupted = (json.loads((d / "results.json").read_text())["datasets"]["ring"] for d in (stopped, full))
    for variant in ("wgan-gp", "sngan"):
        for key in ("modes", "high_quality", "curve_modes", "effective_modes_mean"):  # all but the timings
            assert resumed["variants"][variant][key] == uninterrupted["variants"][variant][key], (variant, key)


@pytest.mark.parametrize("flag,value", [("--datasets", "ring,spiral"), ("--variants", "dcgan"), ("--seeds", "1,1"),
                                        ("--n-critic", "0"), ("--clip-value", "0"), ("--n-samples", "5")])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value):
    assert main(["run", LAB, "--preset", "fast", flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag.lstrip("-").split("-")[0] in err[0]
    assert not (tmp_path / LAB).exists()


@pytest.mark.parametrize("impl", ["fused", "foreach", "for-loop"])
def test_optimizers_follow_optimizer_impl(impl):
    """Adam follows the config's --optimizer-impl (foreach by default), RMSprop (no fused kernel) foreach unless for-loop."""
    from deepnotes.labs.gan_toy import GANTask

    cfg = GanToyConfig(optimizer_impl=impl)
    for name, variant in VARIANTS.items():
        task = GANTask(build_gan(cfg, name, 0), variant, cfg.z_dim, cfg.lr, cfg.momentum, cfg.clip_value,
                       cfg.gp_weight)
        for opt in task.configure_optimizers(cfg).values():
            fused, foreach = bool(opt.defaults.get("fused")), bool(opt.defaults.get("foreach"))
            if isinstance(opt, torch.optim.RMSprop):
                assert variant.optimizer == "rmsprop" and not fused and foreach is (impl != "for-loop")
            else:
                assert isinstance(opt, torch.optim.Adam) and (fused, foreach) == (impl == "fused", impl == "foreach")
    assert GanToyConfig().optimizer_impl == "foreach"
