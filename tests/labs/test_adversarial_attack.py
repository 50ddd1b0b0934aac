"""The adversarial-attack lab end to end through the CLI on Fashion-MNIST (fast preset): files, the studies'
numbers are consistent (white box at least as strong as clean, the ladder's boss chosen on validation, defenses and
PGD-AT measured), eval on the test split, report re-render, resume keeps finished models, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepnotes.cli import main
from deepnotes.data import get_image_dataset

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None,
                                reason="Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "adversarial-attack", "--preset", "fast", "--photos", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    (run,) = list((out / "adversarial-attack").iterdir())
    return run


def test_files_and_report(run_dir):
    for name in ("config.json", "data.json", "attacks.json", "examples.safetensors", "report.md", "white_box.png",
                 "ladder.png", "boss_examples.png", "photos_pgd.png", "universal.png"):
        assert (run_dir / name).is_file(), name
    for key in ("lenet5", "mlp", "target", "standard", "pgd-at"):
        assert (run_dir / "models" / key / "model.safetensors").is_file(), key
        assert (run_dir / "models" / key / "result.json").is_file(), key
    report = (run_dir / "report.md").read_text()
    for section in ("## Results", "## White box", "## Passive defenses", "## Adversarial training", "](ladder.png)"):
        assert section in report, section


def test_study_numbers_are_consistent(run_dir):
    res = json.loads((run_dir / "attacks.json").read_text())
    for model, row in res["white_box"]["models"].items():
        for attack in ("FGSM", "PGD-3"):
            assert all(0 <= a <= row["clean_acc"] + 1e-9 for a in row[attack]), (model, attack)
        assert row["PGD-3"][-1] <= row["PGD-3"][0] + 1e-9  # a larger ball never helps the model
    lad = res["ladder"]
    assert [r["rung"].split(":")[0] for r in lad["ladder"]] == ["simple", "medium", "strong", lad["ladder"][3]["rung"]
                                                                 .split(":")[0]]
    boss = lad["ladder"][3]
    assert boss["validation_acc"] == min(r["validation_acc"] for r in lad["rows"] if r["rung"].startswith("boss"))
    assert [d["defense"] for d in res["defenses"]] == ["none", "gaussian", "median", "jpeg", "resize-pad"]
    none = res["defenses"][0]
    assert none["transfer_acc"] == pytest.approx(boss["test_acc"])  # the same images on the same undefended model
    assert set(res["adversarial_training"]["rows"]) == {"PGD-AT", "standard"}
    photos = res["photos"]
    assert photos["clean"][photos["photos"].index("chelsea")][0][0] in {"tabby", "tiger cat", "Egyptian cat"}
    assert all(p["fooled"] for p in photos["attacks"]["8/255"])  # white-box PGD at 8/255 fools MobileNetV2 on each
    assert set(res["one_pixel"]["acc"]) == {"1"} and 0 <= res["one_pixel"]["acc"]["1"] <= res["one_pixel"]["clean_acc"]
    assert set(res["universal"]["fooling_rate"]) == {"lenet5", "mlp", "target"}


def test_eval_report_and_resume(run_dir, tmp_path):
    assert main(["eval", str(run_dir)]) == 0
    (ev,) = list((run_dir / "eval").glob("*.json"))
    metrics = json.loads(ev.read_text())
    assert {"simple", "medium", "strong", "target_clean_acc"} <= set(metrics)
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "report.md").is_file()
    before = (run_dir / "models" / "target" / "model.safetensors").read_bytes()
    assert main(["run", "adversarial-attack", "--resume", str(run_dir), "--no-progress"]) == 0
    assert (run_dir / "models" / "target" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("flag,value", [("--sources", "vgg"), ("--defense", "magic"), ("--eps", "0"),
                                        ("--attack-images", "0")])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value):
    assert main(["run", "adversarial-attack", "--preset", "fast", flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag.lstrip("-").split("-")[0] in err[0]
    assert not (tmp_path / "adversarial-attack").exists()
