"""The stable-learning lab: the weighted-loss task (ERM is plain cross-entropy; StableNet's weights upweight the
minority of a correlated toy; a resumed run learns the same weights), the data's settings, and the lab end to end
through the CLI (fast preset): files, results agree with the saved models, eval, report re-render, resume keeps
finished models, a run stopped after an epoch ends like an uninterrupted one, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from deepnotes.cli import main
from deepnotes.labs.stable_learning import (SmallCNN, StableLearningConfig, StableNetTask, accuracy, build_sets,
                                            class_biases, compose, load_objects, stable_weights)
from deepnotes.nn.stable import FeatureMemory
from deepnotes.train.task import Step

LAB = "stable-learning"


def _step(seed: int = 0, step: int = 0) -> Step:
    return Step(epoch=0, step=step, total_steps=10, generator=torch.Generator().manual_seed(seed))


def test_erm_task_is_plain_cross_entropy():
    torch.manual_seed(0)
    model = SmallCNN(feature_dim=8)
    x = torch.randint(0, 256, (6, 3, 28, 28), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    prepare = lambda images: (images.float() / 255 - 0.5) / 0.25  # noqa: E731
    out = StableNetTask(model, prepare).training_step(model, (x, y, y, torch.arange(6)), _step())
    expected = F.cross_entropy(model(prepare(x)), y)
    torch.testing.assert_close(out.loss, expected)
    assert out.sums["ess"] == pytest.approx(6) and out.sums["weighted_own"] == out.sums["own"] == 6
    # StableNet before its start step is ERM too, and leaves the memory unwritten
    model.memory = FeatureMemory(6, 8)
    task = StableNetTask(model, prepare, weight_steps=5, weight_penalty=1.0, start_step=3)
    torch.testing.assert_close(task.training_step(model, (x, y), _step(step=2)).loss, expected)
    assert model.memory.global_features is None
    after = task.training_step(model, (x, y), _step(step=3))
    assert model.memory.global_features is not None and not torch.allclose(after.loss, expected)


def _toy(n: int = 400, minority: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [object, background] of a binary task where the background equals the object in 90% of the rows,
    with a little noise; ``own`` marks those rows."""
    g = torch.Generator().manual_seed(seed)
    obj = torch.randint(0, 2, (n,), generator=g).float()
    flip = torch.rand(n, generator=g) < minority
    bg = torch.where(flip, 1 - obj, obj)
    z = torch.stack([obj, bg], 1) + 0.1 * torch.randn(n, 2, generator=g)
    return z, ~flip


def test_stable_weights_upweight_the_minority_of_a_correlated_toy():
    z, own = _toy()
    w = stable_weights(z, None, 50, 0.1, 5, 1.0, 0.0, torch.Generator().manual_seed(0))
    assert w.shape == (400,) and float(w.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(w[~own].mean()) > 2 * float(w[own].mean())  # the 10% whose background disagrees count more
    # with the memory: the weights still favour the minority, and the memory holds the batch
    memory = FeatureMemory(400, 2)
    stable_weights(z, memory, 50, 0.1, 5, 1.0, 0.0, torch.Generator().manual_seed(0))
    z2, own2 = _toy(seed=1)
    w2 = stable_weights(z2, memory, 50, 0.1, 5, 1.0, 0.0, torch.Generator().manual_seed(1))
    assert float(w2[~own2].mean()) > 1.5 * float(w2[own2].mean())
    # no correlation, no preference: weights stay near uniform
    z3, own3 = _toy(minority=0.5, seed=2)
    w3 = stable_weights(z3, None, 50, 0.1, 5, 1.0, 0.0, torch.Generator().manual_seed(0))
    assert abs(float(w3[~own3].mean()) - float(w3[own3].mean())) < 0.3


def test_settings_draw_the_backgrounds_they_promise():
    cfg = StableLearningConfig(limit_train=400, limit_test=100, flexible_bias=(0.6, 0.95))
    objects = load_objects(cfg)
    biases = class_biases(cfg, "flexible", 10)
    assert len(set(biases)) == 10 and all(0.6 <= b <= 0.95 for b in biases)
    assert biases == class_biases(cfg, "flexible", 10) and class_biases(cfg, "unbalanced", 10) == [0.9] * 10
    sets = build_sets(objects, cfg, "unbalanced")
    x, y, bg = sets["train"]
    assert x.shape == (len(objects.train), 3, 28, 28) and torch.equal(y, objects.train.labels)
    assert 0.82 < float((bg == y).float().mean()) < 0.97
    assert torch.equal(sets["reversed"][2], (objects.test.labels + 1) % 10)
    assert float((sets["random"][2] == objects.test.labels).float().mean()) < 0.25
    assert not torch.equal(sets["val reversed"][0][:5], sets["reversed"][0][:5])  # validation objects, not test
    # per-class shares: class c keeps its own background with probability biases[c]
    labels = torch.arange(10).repeat_interleave(300)
    _, bg = compose(torch.zeros(3000, 1, 28, 28, dtype=torch.uint8), labels, [0.1 * c for c in range(10)],
                    "aligned", 0)
    shares = [(bg[labels == c] == c).float().mean().item() for c in range(10)]
    assert all(abs(s - 0.1 * c) < 0.08 for c, s in enumerate(shares))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", LAB, "--preset", "fast", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    (run,) = list((out / LAB).iterdir())
    return run


def test_files_report_and_results_agree_with_the_saved_models(run_dir):
    for name in ("config.json", "data.json", "results.json", "report.md", "accuracy.png", "samples.png",
                 "weights.png", "saliency_unbalanced.png", "saliency_flexible.png"):
        assert (run_dir / name).is_file(), name
    report = (run_dir / "report.md").read_text()
    for section in ("## Results", "target met", "## The paper's settings", "## Does StableNet upweight the minority?",
                    "## Object or background? Saliency, flexible", "## Validation accuracy", "](samples.png)"):
        assert section in report, section
    res = json.loads((run_dir / "results.json").read_text())
    assert set(res["settings"]) == {"unbalanced", "flexible"} and res["seeds"] == [0]
    for setting, row in res["settings"].items():
        for label in ("ERM", "StableNet"):
            for key in ("test in-distribution", "test random", "test reversed", "val reversed"):
                assert 0 <= row[label][key]["mean"] <= 1 and row[label][key]["std"] == 0
            assert 0 <= row[label]["object_share"][0] <= 1
        gain = row["StableNet"]["test reversed"]["mean"] - row["ERM"]["test reversed"]["mean"]
        assert row["reversed_gain"] == pytest.approx(gain)
        assert row["target_met"] == (gain >= 0.03 - 1e-12 and row["in_distribution_loss"] <= 0.01 + 1e-12)
    # a saved StableNet, re-scored on the reversed test set rebuilt from the config, gives its recorded accuracy
    cfg = StableLearningConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in
                                  json.loads((run_dir / "config.json").read_text())["config"].items()})
    sets = build_sets(load_objects(cfg), cfg, "flexible")
    model = SmallCNN(cfg.feature_dim, memory=FeatureMemory(cfg.batch_size, cfg.feature_dim, cfg.memory_alphas))
    model.load_state_dict(load_file(str(run_dir / "models" / "flexible" / "stablenet-seed0" / "model.safetensors")))
    assert int(model.memory.counts.max()) > 0  # the saved global features travel with the weights
    acc = accuracy(model, *sets["reversed"][:2], torch.device("cpu"))
    assert acc == pytest.approx(res["settings"]["flexible"]["StableNet"]["test reversed"]["values"][0], abs=1e-9)
    weights = load_file(str(run_dir / "models" / "flexible" / "stablenet-seed0" / "sample_weights.safetensors"))
    assert weights["weights"].shape == sets["train"][1].shape and float(weights["weights"].std()) > 0


def test_eval_report_and_resume(run_dir, capsys):
    assert main(["eval", str(run_dir)]) == 0
    fresh = json.loads((run_dir / "eval" / "fresh-draw.json").read_text())
    assert fresh["images"] == 100 and 0 <= fresh["unbalanced StableNet reversed"] <= 1
    assert main(["eval", str(run_dir), "--data", "new-backgrounds"]) == 0
    new = json.loads((run_dir / "eval" / "new-backgrounds.json").read_text())
    assert {"unbalanced ERM new backgrounds", "flexible StableNet new backgrounds"} <= set(new)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", "mnist-m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data mnist-m" in err[0]
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "new backgrounds" in (run_dir / "report.md").read_text()
    weights = run_dir / "models" / "unbalanced" / "stablenet-seed0" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["run", LAB, "--resume", str(run_dir), "--no-progress"]) == 0
    assert weights.read_bytes() == before


def test_run_stopped_after_an_epoch_ends_like_an_uninterrupted_one(tmp_path):
    args = ["run", LAB, "--preset", "fast", "--settings", "unbalanced", "--epochs", "3", "--no-progress",
            "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    (full,) = list((tmp_path / "full" / LAB).iterdir())
    stopped = tmp_path / "stopped"
    shutil.copytree(full, stopped)
    folder = stopped / "models" / "unbalanced" / "stablenet-seed0"  # as if killed after its second epoch
    for name in ("result.json", "model.safetensors"):
        (folder / name).unlink()
    shutil.rmtree(folder / "checkpoints" / "epoch-0003")
    (stopped / "results.json").unlink()
    assert main(["run", LAB, "--resume", str(stopped), "--no-progress"]) == 0
    for name in ("model.safetensors", "sample_weights.safetensors"):  # the weights learned anew are the same
        assert (folder / name).read_bytes() == (full / folder.relative_to(stopped) / name).read_bytes(), name
    resumed, uninterrupted = (json.loads((d / "results.json").read_text())["settings"]["unbalanced"]
                              for d in (stopped, full))
    for label in ("ERM", "StableNet"):
        for key in ("test in-distribution", "test random", "test reversed", "val reversed", "object_share"):
            assert resumed[label][key] == uninterrupted[label][key], (label, key)


@pytest.mark.parametrize("flag,value", [("--dataset", "cifar-10"), ("--bias", "1.5"), ("--bias", "0.05"),
                                        ("--settings", "adversarial"), ("--flexible-bias", "0.9,0.8"),
                                        ("--seeds", "1,1"), ("--weight-warmup", "5")])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value):
    try:
        code = main(["run", LAB, "--preset", "fast", flag, value, "--out", str(tmp_path)])
    except SystemExit as e:  # argparse refuses a value outside a flag's choices (--dataset) itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag.lstrip("-").split("-")[0] in err[0]
    assert not (tmp_path / LAB).exists()
