"""The keyword-spotting lab: the fast preset end to end on the small synthesized build, ``deepnotes eval`` on a
Speech Commands folder the test writes, exact resume, bad flags and settings (the techniques it wires are tested in
tests/audio, tests/data/test_speech.py, tests/metrics/test_speech.py and tests/models/test_kws.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepnotes.data.speech import load_clip, load_eval_folder, read_wav, resample, wav_bytes
from deepnotes.errors import DataError, UserError
from deepnotes.experiment import RunContext, get_lab

LAB = get_lab("keyword-spotting")


# ----------------------------------------------------------------------------------- end to end
def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "deepnotes", *args], capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def small_build():
    """The 595-clip speech-keywords-small build (in the data folder; kept between test runs)."""
    from deepnotes.data.speech_build import SPEECH_KEYWORDS_SMALL

    try:
        root = SPEECH_KEYWORDS_SMALL.build(progress=False)
    except DataError as e:
        pytest.skip(f"the speech engines are not installed: {e}")
    if SPEECH_KEYWORDS_SMALL.skipped():
        pytest.skip(f"voices missing here (sudo make system-speech): {', '.join(SPEECH_KEYWORDS_SMALL.skipped())}")
    return root


@pytest.fixture(scope="module")
def fast_run(small_build, tmp_path_factory):
    out = tmp_path_factory.mktemp("kws")
    proc = _cli("run", "keyword-spotting", "--preset", "fast", "--tta-warps", "0.9,1,1.1", "--no-progress",
                "--out", str(out))
    (run_dir,) = list((out / "keyword-spotting").iterdir())
    return run_dir, proc.stdout


def test_fast_preset_end_to_end(fast_run, small_build):
    run_dir, stdout = fast_run
    assert "test accuracy" in stdout
    for name in ("report.md", "config.json", "data.json", "metrics.csv", "model.safetensors", "test_metrics.json",
                 "predictions.safetensors", "learning_curves.png", "lr_schedule.png", "confusion_matrix.png",
                 "per_word_accuracy.png", "waveforms.png", "features.png", "augmentation.png"):
        assert (run_dir / name).is_file(), name
    m = json.loads((run_dir / "test_metrics.json").read_text())
    data = json.loads((run_dir / "data.json").read_text())
    assert data["n_train"] == 280 and data["n_val"] == 140 and data["n_test"] == 175  # 8 / 4 / 5 voices x 35
    assert len(m["per_word_acc"]) == 35 and m["n"] == 175
    test_engines = {"espeak-ng", "mbrola", "flite", "festival", "pico"}
    assert set(m["per_engine_acc"]) == test_engines
    assert set(m["per_speaker_acc"]) == {"awb", "espeak-ng+m7", "ked", "us2", "pico-en-GB"}
    cm = np.asarray(m["confusion_matrix"])
    assert cm.sum() == 175 and np.trace(cm) / 175 == pytest.approx(m["acc"])
    assert set(m["noisy_acc_by_snr"]) == {"10", "0"} and m["noisy_acc"] == m["noisy_acc_by_snr"]["10"]
    assert m["tta_warps"] == [0.9, 1.0, 1.1] and 0 <= m["acc_tta"] <= 1 and 0 <= m["val_acc_tta"] <= 1
    assert set(m["per_engine_acc_tta"]) == set(m["per_engine_worst_words"]) == test_engines
    # the first build's test voices (awb, ked, m7): a second line, scored on their clips of the test split
    arrays = load_file(str(run_dir / "predictions.safetensors"))
    files = sorted((small_build / "testing_list.txt").read_text().split())
    v1 = set((small_build / "testing_list_v1.txt").read_text().split())
    rows = [i for i, f in enumerate(files) if f in v1]
    assert m["n_v1"] == len(rows) == 105
    assert m["acc_v1"] == pytest.approx(float((arrays["pred"][rows] == arrays["labels"][rows]).double().mean()))
    assert f"{100 * m['acc_v1']:.2f}%" in stdout
    assert "with the probabilities averaged over VTLP warps 0.9, 1, 1.1" in stdout
    arrays = load_file(str(run_dir / "predictions.safetensors"))
    assert arrays["example_wave"].shape == (16000,) and arrays["example_input"].shape == (1, 1, 40, 101)
    assert float((arrays["pred"] == arrays["labels"]).double().mean()) == pytest.approx(m["acc"])
    ps = m["pocketsphinx"]
    report = (run_dir / "report.md").read_text()
    if shutil.which("pocketsphinx_batch"):
        assert ps["n"] == 35 and 0 <= ps["acc"] <= 1 and "seeded random subset" in ps["subset"]
        assert "pocketsphinx" in report
    else:
        assert "skipped" in ps
    for text in ("waveforms.png", "features.png", "Accuracy per word", "confusion_matrix.png", "91.00%",
                 "probabilities averaged over VTLP warps 0.9, 1, 1.1 (TTA)", "validation accuracy without / with TTA",
                 "Hardest words per engine", "first build's test voices", "noise at 0 dB SNR",
                 "Accuracy per test speaker"):
        assert text in report
    assert any(line.startswith("| us2 ") and "| male, US " in line for line in report.splitlines())


def test_leave_one_engine_out_trains_without_it_and_tests_on_all_its_clips(small_build, tmp_path):
    out = tmp_path / "runs"
    _cli("run", "keyword-spotting", "--preset", "fast", "--epochs", "1", "--leave-out-engine", "pico",
         "--no-pocketsphinx", "--no-progress", "--out", str(out))
    (run_dir,) = list((out / "keyword-spotting").iterdir())
    data = json.loads((run_dir / "data.json").read_text())
    m = json.loads((run_dir / "test_metrics.json").read_text())
    assert (data["n_train"], data["n_val"], data["n_test"]) == (280 - 35, 140, 70)  # pico: en-US train, en-GB test
    assert set(m["per_engine_acc"]) == {"pico"} and set(m["per_speaker_acc"]) == {"pico-en-US", "pico-en-GB"}
    assert "acc_v1" not in m and "Leave-one-engine-out: no pico clip" in (run_dir / "report.md").read_text()
    bad = _cli("run", "keyword-spotting", "--preset", "fast", "--leave-out-engine", "loquendo", "--out", str(out),
               check=False)
    assert bad.returncode == 2 and "--leave-out-engine must be one of" in bad.stderr


def test_eval_on_a_speech_commands_folder(fast_run, small_build, tmp_path):
    run_dir, _ = fast_run
    data = json.loads((run_dir / "data.json").read_text())
    arrays = load_file(str(run_dir / "predictions.safetensors"))
    test_files = (small_build / "testing_list.txt").read_text().split()
    picked = [f for f in test_files if f.split("/")[0] in ("yes", "no")]  # 5 test voices each
    folder = tmp_path / "my_words"
    for rel in picked:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(small_build / rel, folder / rel)
    # one clip at 8 kHz (resampled back to 16 kHz on reading), one shorter than 1 s (zero-padded)
    word = picked[0].split("/")[0]
    x, _ = read_wav(small_build / picked[0])
    low = np.round(resample(x, 16000, 8000) * 32767).astype(np.int16)
    (folder / word / "low_rate_nohash_0.wav").write_bytes(wav_bytes(low, 8000))
    (folder / word / "short_nohash_0.wav").write_bytes(wav_bytes((x[4000:12000] * 32767).astype(np.int16)))
    split = load_eval_folder(folder, data["classes"])
    assert len(split.labels) == len(picked) + 2 == 12
    assert split.clips.shape == (12, 16000)
    back = split.clips[split.files.index(f"{word}/low_rate_nohash_0.wav")].float() / 32768
    corr = np.corrcoef(back.numpy(), load_clip(small_build / picked[0]))[0, 1]
    assert corr > 0.9  # the 8 kHz copy, resampled to 16 kHz, still is the same word

    proc = _cli("eval", str(run_dir), "--data", str(folder), "--device", "cpu")
    assert "acc:" in proc.stdout
    ev = json.loads((run_dir / "eval" / "my_words.json").read_text())
    assert ev["n"] == len(picked) + 2 and ev["data"] == "my_words"
    # the copied 16 kHz clips get the predictions the run made on them
    ev_pred = np.asarray(ev["confusion_matrix"])
    run_files = sorted(f for f in test_files if f.split("/")[0] in data["classes"])
    run_idx = [run_files.index(f) for f in picked]
    expected = np.zeros_like(ev_pred)
    for i in run_idx:
        expected[int(arrays["labels"][i]), int(arrays["pred"][i])] += 1
    assert (ev_pred - expected >= 0).all() and (ev_pred - expected).sum() == 2
    _cli("report", str(run_dir))
    assert "my_words" in (run_dir / "report.md").read_text()

    (folder / word / "broken_nohash_0.wav").write_bytes(b"RIFF....WAVEjunk")
    bad = _cli("eval", str(run_dir), "--data", str(folder), check=False)
    assert bad.returncode != 0 and "broken_nohash_0.wav" in bad.stderr and "--skip-bad" in bad.stderr
    assert "Traceback" not in bad.stderr
    proc = _cli("eval", str(run_dir), "--data", str(folder), "--skip-bad", "--device", "cpu")
    assert "skipping" in proc.stdout + proc.stderr and "broken_nohash_0.wav" in proc.stdout + proc.stderr
    assert json.loads((run_dir / "eval" / "my_words.json").read_text())["n"] == len(picked) + 2
    (folder / word / "broken_nohash_0.wav").unlink()

    (folder / "zebra").mkdir()
    shutil.copy(small_build / picked[0], folder / "zebra" / "a_nohash_0.wav")
    bad = _cli("eval", str(run_dir), "--data", str(folder), check=False)
    assert bad.returncode == 2 and "zebra" in bad.stderr and "Traceback" not in bad.stderr


def test_resume_from_epoch_one_repeats_the_uninterrupted_run(fast_run, tmp_path):
    run_dir, _ = fast_run
    cut = tmp_path / "cut"
    shutil.copytree(run_dir, cut, ignore=shutil.ignore_patterns("eval", "tb"))
    # what a run killed during epoch 2 leaves: epoch 1's checkpoint and metrics row, no final files
    shutil.rmtree(cut / "checkpoints" / "epoch-0002")
    for name in ("model.safetensors", "test_metrics.json", "predictions.safetensors", "report.md"):
        (cut / name).unlink()
    lines = (cut / "metrics.csv").read_text().splitlines()
    (cut / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
    proc = _cli("run", "keyword-spotting", "--resume", str(cut), "--no-progress")
    assert "resumed from" in proc.stdout
    a = json.loads((run_dir / "test_metrics.json").read_text())
    b = json.loads((cut / "test_metrics.json").read_text())
    for key in ("acc", "loss", "confusion_matrix", "noisy_acc", "per_word_acc"):
        assert a[key] == b[key], key
    strip = lambda text: [r.rsplit(",", 2)[0] for r in text.splitlines()]  # drop the timing columns
    assert strip((run_dir / "metrics.csv").read_text()) == strip((cut / "metrics.csv").read_text())


# ----------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,match", [
    ({"snr_db": (30.0, 5.0)}, "--snr-db"),
    ({"noise_prob": 1.5}, "--noise-prob"),
    ({"time_shift_ms": -1.0}, "--time-shift-ms"),
    ({"width": 0.0}, "--width"),
    ({"max_time_mask": 2.0}, "--max-time-mask"),
    ({"vtlp": 0.6}, "--vtlp"),
    ({"engine_power": 1.5}, "--engine-power"),
    ({"tta_warps": (0.9, 2.0)}, "--tta-warps must be in"),
    ({"model": "m5", "tta_warps": (0.9,)}, "--tta-warps warps a spectrogram"),
    ({"model": "m5", "feature_norm": "band"}, "--feature-norm"),
    ({"dataset": "mnist-subset"}, "not a speech dataset"),
    ({"dataset": "no-such-set"}, "unknown dataset"),
    ({"data_dir": "/no/such/folder"}, "--data-dir"),
])
def test_bad_config_is_a_user_error(kwargs, match, tmp_path):
    ctx = RunContext(tmp_path, torch.device("cpu"))
    with pytest.raises(UserError, match=match):
        LAB.run(LAB.config_cls(**kwargs), ctx)


def test_an_outdated_build_is_refused_with_the_command_that_updates_it(tmp_path, monkeypatch):
    from deepnotes.data.speech_build import SPEECH_KEYWORDS_SMALL, SynthVoice

    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    ctx = RunContext(tmp_path / "runs", torch.device("cpu"))
    with pytest.raises(UserError, match="is not built yet.*deepnotes data build speech-keywords-small"):
        LAB.run(LAB.config_cls(dataset="speech-keywords-small"), ctx)
    root = tmp_path / "speech-keywords-small"
    root.mkdir()
    grid = SPEECH_KEYWORDS_SMALL.grid.to_json()
    grid["voices"] = grid["voices"][1:] + [SynthVoice("flite", "kal").to_json()]  # another grid
    (root / "manifest.json").write_text(json.dumps({"grid": grid}))
    assert SPEECH_KEYWORDS_SMALL.status().startswith("outdated")
    with pytest.raises(UserError, match="older grid.*deepnotes data build speech-keywords-small.*festvox-us-slt-hts"):
        LAB.run(LAB.config_cls(dataset="speech-keywords-small"), ctx)
    grid = SPEECH_KEYWORDS_SMALL.grid.to_json()
    grid["setting_units"] = {"flite": "documentation of an older version"}  # does not make it outdated
    (root / "manifest.json").write_text(json.dumps({"grid": grid}))
    assert SPEECH_KEYWORDS_SMALL.is_current() and SPEECH_KEYWORDS_SMALL.status().startswith("present")


def test_bad_model_options_are_user_errors_before_any_data_is_read(tmp_path):
    ctx = RunContext(tmp_path, torch.device("cpu"))
    with pytest.raises(UserError, match="n_mels=64"):
        LAB.run(LAB.config_cls(data_dir="/no/such/folder", n_mels=64), ctx)


def test_bad_flags_on_the_command_line(tmp_path):
    proc = _cli("run", "keyword-spotting", "--model", "lstm", check=False)
    assert proc.returncode == 2 and "--model" in proc.stderr
    proc = _cli("run", "keyword-spotting", "--snr-db", "30,5", "--out", str(tmp_path), check=False)
    assert proc.returncode == 2 and "--snr-db" in proc.stderr and "Traceback" not in proc.stderr
