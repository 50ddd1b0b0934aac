"""The explain lab end to end through the CLI on Fashion-MNIST (fast preset): files, the faithfulness table
holds every method and the random baseline, the sanity check starts at rank correlation 1, receptive fields equal
the measured ones, probing (when phoneme-frames-small is built), eval, report re-render, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepnotes.cli import main
from deepnotes.data import get_image_dataset

pytestmark = pytest.mark.skipif(get_image_dataset("fashion-mnist").locate() is None,
                                reason="Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)")
METHODS = {"saliency", "SmoothGrad", "integrated gradients", "occlusion", "guided backprop", "Grad-CAM", "LIME"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "explain", "--preset", "fast", "--photos", "--out", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    (run,) = list((out / "explain").iterdir())
    return run


def test_files_and_report(run_dir):
    for name in ("config.json", "data.json", "explain.json", "figures.safetensors", "model.safetensors", "report.md",
                 "maps.png", "sanity.png", "class_maximization.png", "filters.png", "embedding.png",
                 "photos_maps.png"):
        assert (run_dir / name).is_file(), name
    report = (run_dir / "report.md").read_text()
    for section in ("## Results", "## Maps", "## Sanity check", "## Receptive fields", "](maps.png)"):
        assert section in report, section


def test_numbers_are_consistent(run_dir):
    res = json.loads((run_dir / "explain.json").read_text())
    assert set(res["faithfulness"]) == METHODS | {"random"}
    for name, row in res["faithfulness"].items():
        assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1, name
    for name, rows in res["sanity"].items():
        assert rows[0][0] == "original", name
        if name != "SmoothGrad":  # deterministic maps: the untouched copy gives the same map (SmoothGrad: new noise)
            assert rows[0][1] == pytest.approx(1.0, abs=1e-6), name
        assert len(rows) > 3  # every parameterized layer of the LeNet, from the top
    for row in res["receptive_field"]:
        assert row["measured"] == row["rf"], row  # the recursion equals the measured field at every layer
    assert res["receptive_field"][-1]["rf"] == [16, 16]  # LeNet-5: conv5, pool2, conv5, pool2
    assert len(res["global"]["class_logit"]["with_prior"]) == 10
    photos = res["photos"]
    assert photos["top1"][photos["photos"].index("chelsea")] in {"tabby", "tiger cat", "Egyptian cat"}
    assert photos["top1"][photos["photos"].index("coffee")] == "espresso"
    assert set(photos["auc"]) == METHODS - {"guided backprop"} | {"random"}  # MobileNetV2: ReLU6, no guided rule
    if "skipped" not in res["keywords"]:
        assert set(res["keywords"]["auc"]) == METHODS - {"guided backprop", "LIME"} | {"random"}
        assert (run_dir / "keywords_maps.png").is_file() and 0 <= res["keywords"]["test_acc"] <= 1
    if "skipped" not in res["probing"]:
        assert set(res["probing"]["accuracy"]) == {"phoneme", "speaker"}
        assert res["probing"]["layers"][0] == "<input>" and res["probing"]["layers"][-1] == "head"


def test_eval_and_report(run_dir):
    assert main(["eval", str(run_dir)]) == 0
    (ev,) = list((run_dir / "eval").glob("*.json"))
    metrics = json.loads(ev.read_text())
    assert 0 < metrics["test_acc"] <= 1 and "saliency deletion" in metrics
    (run_dir / "maps.png").unlink()
    assert main(["report", str(run_dir)]) == 0 and (run_dir / "maps.png").is_file()


@pytest.mark.parametrize("flag,value", [("--model", "vgg"), ("--images", "0"), ("--prior-weight", "-1")])
def test_bad_flags_exit_2_without_a_run_folder(tmp_path, capsys, flag, value):
    try:
        status = main(["run", "explain", "--preset", "fast", flag, value, "--out", str(tmp_path)])
    except SystemExit as e:  # argparse rejects a value outside a flag's choices itself
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag.lstrip("-").split("-")[0] in err[0]
    assert not (tmp_path / "explain").exists()
