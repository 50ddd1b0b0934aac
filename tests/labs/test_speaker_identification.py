"""The speaker-identification lab: the fast preset end to end on the small synthesized speaker set (every rung,
closed-set accuracy, open-set EER, report), the HW4 folder reader wired in, resume of finished rungs, bad flags. The
modules it wires are tested in tests/nn/test_conformer.py, tests/nn/test_speaker.py, tests/metrics/test_verification.py
and tests/data/test_hw4.py; the speaker set's build in tests/data/test_speaker_build.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepnotes.errors import DataError, UserError
from deepnotes.experiment import RunContext, get_lab
from deepnotes.labs.speaker_identification import EVAL_FRAMES, RUNGS, build_rung

LAB = get_lab("speaker-identification")


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "deepnotes", *args], capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def small_build():
    from deepnotes.data.speaker_build import SPEAKER_UTTERANCES_SMALL

    try:
        root = SPEAKER_UTTERANCES_SMALL.build(progress=False)
    except DataError as e:
        pytest.skip(f"the speech engines or the KJV text are missing: {e}")
    skipped = json.loads((root / "manifest.json").read_text())["skipped"]
    if skipped:
        pytest.skip(f"voices missing here (sudo make system-speech): {', '.join(skipped)}")
    return root


@pytest.fixture(scope="module")
def fast_run(small_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("spk")
    proc = _cli("run", "speaker-identification", "--preset", "fast", "--no-progress", "--out", str(out))
    (run_dir,) = list((out / "speaker-identification").iterdir())
    return run_dir, proc.stdout


def test_fast_preset_trains_every_rung_and_reports_accuracy_and_eer(fast_run):
    run_dir, stdout = fast_run
    res = json.loads((run_dir / "results.json").read_text())
    data = json.loads((run_dir / "data.json").read_text())
    assert data["counts"] == {"train": 21, "validation": 14, "test": 7, "open": 24}
    assert len(data["classes"]) == 7 and len(data["open_set_voices"]) == 4
    assert not set(data["classes"]) & set(data["open_set_voices"])
    assert set(res["rungs"]) == set(RUNGS)
    for rung, r in res["rungs"].items():
        # accuracy over 2 segments of each of the 7 test utterances: a multiple of 1/14
        assert 0 <= r["test_acc"] <= 1 and round(r["test_acc"] * 14, 6) == round(r["test_acc"] * 14)
        assert 0 <= r["eer"] <= 1 and r["n_trials"] > r["n_target_trials"] > 0
        assert (run_dir / rung / "model.safetensors").is_file() and (run_dir / rung / "det.npz").is_file()
    assert res["rungs"]["simple"]["train_segment_frames"] == 64 and res["rungs"]["boss"]["train_segment_frames"] == 96
    assert isinstance(res["ladder_holds"], bool)
    report = (run_dir / "report.md").read_text()
    for text in ("The ladder", "det.png", "60.82%", "86.50%", "open-set EER", "Learning curves: boss"):
        assert text in report
    assert report.index("| simple") < report.index("| medium") < report.index("| strong") < report.index("| boss")
    assert (run_dir / "det.png").is_file() and "[boss]" in stdout


def test_eval_repeats_the_run_s_numbers(fast_run):
    run_dir, _ = fast_run
    res = json.loads((run_dir / "results.json").read_text())["rungs"]
    proc = _cli("eval", str(run_dir))
    ev = json.loads((run_dir / "eval" / "speaker-utterances-small.json").read_text())
    for rung in RUNGS:
        assert ev[f"{rung}_test_acc"] == pytest.approx(res[rung]["test_acc"])
        assert ev[f"{rung}_val_acc"] == pytest.approx(res[rung]["val_acc"])
        assert ev[f"{rung}_eer"] == pytest.approx(res[rung]["eer"])
    assert "boss_eer" in proc.stdout


def test_resume_keeps_finished_rungs(fast_run, tmp_path):
    run_dir, _ = fast_run
    before = (run_dir / "simple" / "results.json").read_text()
    proc = _cli("run", "speaker-identification", "--resume", str(run_dir), "--no-progress")
    assert "[simple] finished in an earlier session; kept" in proc.stdout
    assert (run_dir / "simple" / "results.json").read_text() == before


def test_hw4_folder_trains_with_a_per_speaker_split(tmp_path):
    """A tiny folder in the course's HW4 layout (mapping.json, metadata.json, uttr-*.pt)."""
    gen = torch.Generator().manual_seed(0)
    speakers = {f"id{k:05d}": [] for k in range(3)}
    for k, spk in enumerate(speakers):
        for u in range(10):
            feats = torch.randn(150 + 7 * u, 40, generator=gen) + 3 * k  # each speaker its own mean
            name = f"uttr-{k}-{u}.pt"
            torch.save(feats, tmp_path / name)
            speakers[spk].append({"feature_path": name, "mel_len": feats.shape[0]})
    ids = {spk: i for i, spk in enumerate(speakers)}
    mapping = {"speaker2id": ids, "id2speaker": {str(i): s for s, i in ids.items()}}
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    (tmp_path / "metadata.json").write_text(json.dumps({"n_mels": 40, "speakers": speakers}))
    out = tmp_path / "runs"
    _cli("run", "speaker-identification", "--preset", "fast", "--hw4-dir", str(tmp_path), "--rungs", "simple,xvector",
         "--epochs", "8", "--no-progress", "--out", str(out))
    (run_dir,) = list((out / "speaker-identification").iterdir())
    data = json.loads((run_dir / "data.json").read_text())
    assert data["counts"] == {"train": 24, "validation": 3, "test": 3, "open": 0}
    res = json.loads((run_dir / "results.json").read_text())["rungs"]
    assert "eer" not in res["simple"]  # no open set in HW4's files
    assert res["simple"]["test_acc"] == 1.0  # three speakers three standard deviations apart
    assert 0 <= res["xvector"]["test_acc"] <= 1


@pytest.mark.parametrize("kwargs, match", [
    ({"rungs": ("simple", "simple")}, "--rungs"),
    ({"rungs": ("ultra",)}, "--rungs"),
    ({"kernel_size": 4}, "--kernel-size"),
    ({"d_model": 100, "n_heads": 3}, "multiple of --n-heads"),
    ({"dataset": "speech-keywords"}, "--dataset must be one of"),
])
def test_bad_config_is_a_user_error(kwargs, match, tmp_path):
    with pytest.raises(UserError, match=match):
        LAB.run(LAB.config_cls(**kwargs), RunContext(tmp_path, torch.device("cpu")))


def test_a_missing_build_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    with pytest.raises(UserError, match="deepnotes data build speaker-utterances-small"):
        LAB.run(LAB.config_cls(dataset="speaker-utterances-small"), RunContext(tmp_path / "r", torch.device("cpu")))
    proc = _cli("run", "speaker-identification", "--preset", "fast", "--hw4-dir", str(tmp_path / "none"), "--out",
                str(tmp_path), check=False)
    assert proc.returncode == 2 and "none is not a folder" in proc.stderr and "Traceback" not in proc.stderr


def test_each_rung_embeds_and_classifies_two_second_segments():
    cfg = LAB.config_cls()
    x = torch.randn(2, EVAL_FRAMES, 40)
    for rung in RUNGS:
        model = build_rung(cfg, rung, 44, 40).eval()
        assert model(x).shape == (2, 44), rung
        assert model.embed(x).ndim == 2, rung
    boss = build_rung(cfg, "boss", 44, 40)
    assert boss.head_name == "am-softmax" and boss.pooling_name == "attention" and boss.encoder_name == "conformer"
    assert boss.subsampling == 4 and build_rung(cfg, "strong", 44, 40).subsampling == 4
    simple = build_rung(cfg, "simple", 44, 40)
    assert simple.encoder_name == "transformer" and simple.d_model == 80 and np.isclose(len(simple.encoder.layers), 1)
