"""The keyword-spotting lab: augmentations against their definitions, the fast preset end to end on the small
synthesized build, ``deepnotes eval`` on a Speech Commands folder the test writes, exact resume, bad flags."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepnotes.data.speech import load_clip, read_wav, resample, wav_bytes
from deepnotes.errors import DataError, UserError
from deepnotes.experiment import RunContext
from deepnotes.labs.keyword_spotting import (
    BatchPreparer,
    FeatureExtractor,
    KeywordSpottingConfig,
    engine_weights,
    engines_of,
    load_eval_folder,
    mix_noise,
    predict,
    run,
    worst_words_by_engine,
    spec_augment,
    speed_perturb,
    time_shift,
    vtlp_warp,
)


# ----------------------------------------------------------------------------------- augmentation
def test_time_shift_moves_each_clip_by_its_draw_zero_filled():
    x = torch.arange(1, 41, dtype=torch.float32).view(4, 10)
    y = time_shift(x, 3, torch.Generator().manual_seed(5))
    shifts = torch.randint(-3, 4, (4, 1), generator=torch.Generator().manual_seed(5)).flatten().tolist()
    for row, s in zip(range(4), shifts):
        expected = torch.zeros(10)
        if s >= 0:
            expected[s:] = x[row, :10 - s]
        else:
            expected[:10 + s] = x[row, -s:]
        torch.testing.assert_close(y[row], expected)
    assert len(set(shifts)) > 1
    torch.testing.assert_close(time_shift(x, 0), x)
    with pytest.raises(ValueError, match="max_shift"):
        time_shift(x, -1)


def test_speed_perturb_is_linear_interpolation_about_the_centre():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 301, generator=g, dtype=torch.float64)
    y = speed_perturb(x, 0.2, torch.Generator().manual_seed(7))
    r = 1 + 0.2 * (2 * torch.rand(3, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64) - 1)
    grid = np.arange(-1, 302)  # zeros one sample beyond each end
    for b in range(3):
        src = 150 + (np.arange(301) - 150) * float(r[b])
        expected = np.interp(src, grid, np.concatenate([[0.0], x[b].numpy(), [0.0]]), left=0.0, right=0.0)
        np.testing.assert_allclose(y[b].numpy(), expected, atol=1e-12)
    torch.testing.assert_close(speed_perturb(x, 0.0), x)
    with pytest.raises(ValueError, match="max_change"):
        speed_perturb(x, 1.0)


def test_speed_perturb_scales_a_tone_frequency():
    t = torch.arange(16000, dtype=torch.float64) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t).unsqueeze(0).repeat(64, 1)
    y = speed_perturb(tone, 0.1, torch.Generator().manual_seed(1))
    r = 1 + 0.1 * (2 * torch.rand(64, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1)
    peak = torch.fft.rfft(y[:, 4000:12000]).abs().argmax(-1).double() * 2  # 8000-sample window: 2 Hz bins
    assert (peak - 1000 * r.flatten()).abs().max() <= 2.0  # a 1 kHz tone played r times faster is r kHz


def test_mix_noise_reaches_the_drawn_snr():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 400, generator=g) * torch.linspace(0.1, 1.0, 6).unsqueeze(1)
    noise = [torch.randn(1000, generator=g), torch.randn(700, generator=g) * 3]
    y = mix_noise(x, noise, (12.0, 12.0), 1.0, torch.Generator().manual_seed(1))
    n = y - x
    snr = 10 * torch.log10(x.pow(2).mean(1) / n.pow(2).mean(1))
    torch.testing.assert_close(snr, torch.full((6,), 12.0), atol=1e-3, rtol=0)
    # every added signal is a scaled crop of one recording: cosine similarity 1 with some crop
    for row in n:
        best = max(float(torch.cosine_similarity(rec.unfold(0, 400, 1), row.unsqueeze(0), dim=1).max()) for rec in noise)
        assert best > 1 - 1e-5
    torch.testing.assert_close(mix_noise(x, noise, (0.0, 20.0), 0.0), x)  # prob 0: unchanged
    silent = mix_noise(torch.zeros(2, 400), noise, (5.0, 5.0), 1.0)
    assert silent.abs().max() == 0  # a silent clip stays silent
    with pytest.raises(ValueError, match="at least T"):
        mix_noise(x, [torch.randn(100)], (5.0, 5.0), 1.0)
    with pytest.raises(ValueError, match="low <= high"):
        mix_noise(x, noise, (20.0, 5.0), 1.0)


def test_spec_augment_masks_whole_rows_and_columns():
    feats = torch.rand(8, 1, 40, 101) + 1.0  # no zeros before masking
    y = spec_augment(feats, 2, 6, 2, 20, torch.Generator().manual_seed(3))
    assert y.shape == feats.shape
    masked = y[:, 0] == 0
    for b in range(8):
        rows = masked[b].all(dim=1)  # frequency bins masked at every frame
        cols = masked[b].all(dim=0)  # frames masked at every bin
        assert rows.sum() <= 12 and cols.sum() <= 40
        # every masked cell lies in a fully masked row or column; the rest is untouched
        assert (masked[b] == (rows.unsqueeze(1) | cols.unsqueeze(0))).all()
        torch.testing.assert_close(y[b, 0][~masked[b]], feats[b, 0][~masked[b]])
    assert masked.any()
    torch.testing.assert_close(spec_augment(feats, 0, 6, 0, 20), feats)
    same = spec_augment(feats, 2, 6, 2, 20, torch.Generator().manual_seed(3))
    torch.testing.assert_close(same, y)  # seeded: the same draws
    with pytest.raises(ValueError, match="exceed"):
        spec_augment(feats, 1, 41, 1, 5)


def test_vtlp_warp_reads_each_bin_from_the_inverse_warp():
    # a spectrum equal to its own frequency axis, f_k, comes back as phi^-1(f_k): linear interpolation is exact
    K, nyq, b = 257, 8000.0, 4800.0
    f = torch.linspace(0, nyq, K, dtype=torch.float64)
    spec = f.view(1, K, 1).repeat(3, 1, 2)
    alpha = torch.tensor([0.9, 1.0, 1.1], dtype=torch.float64)
    y = vtlp_warp(spec, alpha)
    for i, a in enumerate(alpha.tolist()):
        expected = torch.where(f <= b, f / a, b / a + (f - b) * (nyq - b / a) / (nyq - b))
        torch.testing.assert_close(y[i, :, 0], expected.clamp(0, nyq))
    torch.testing.assert_close(y[1], spec[1])  # alpha 1: unchanged
    assert y[0, -1, 0] == nyq and y[2, -1, 0] == nyq  # the band stays [0, Nyquist]


def test_vtlp_warp_moves_a_formant_by_alpha():
    K = 257
    spec = torch.zeros(2, K, 1)
    spec[:, 64] = 1.0  # 2 kHz, below the boundary
    y = vtlp_warp(spec, torch.tensor([1.1, 0.9]))
    peak = (y[:, :, 0] * torch.arange(K)).sum(1) / y[:, :, 0].sum(1)  # centre of mass, in bins
    torch.testing.assert_close(peak, torch.tensor([64 * 1.1, 64 * 0.9]), atol=0.6, rtol=0)
    with pytest.raises(ValueError, match="alpha"):
        vtlp_warp(spec, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="alpha"):
        vtlp_warp(spec, torch.ones(3))
    with pytest.raises(ValueError, match="boundary_hz"):
        vtlp_warp(spec, torch.ones(2), boundary_hz=9000.0)


def test_feature_extractor_vtlp_path_matches_the_plain_log_mel():
    w = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    for model in ("bcresnet", "cnn"):
        fe = FeatureExtractor(model)
        torch.testing.assert_close(fe.raw(w, torch.ones(3)), fe.raw(w), atol=1e-3, rtol=1e-4)
        assert not torch.allclose(fe.raw(w, torch.full((3,), 1.1)), fe.raw(w), atol=1e-2)
    with pytest.raises(ValueError, match="m5"):
        FeatureExtractor("m5").raw(w, torch.ones(3))


def test_predict_averages_the_probabilities_over_the_warps():
    torch.manual_seed(0)
    cfg = KeywordSpottingConfig(channels_last=False)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40 * 101, 35)).eval()  # log-mel (1, 40, 101) in
    prep = BatchPreparer(cfg, FeatureExtractor("bcresnet"), [], torch.device("cpu"))
    clips = (torch.randn(5, 16000, generator=torch.Generator().manual_seed(2)) * 3000).to(torch.int16)
    plain = predict(model, prep, clips)
    torch.testing.assert_close(predict(model, prep, clips, warps=(1.0,)), plain)
    with torch.no_grad():
        w = prep.wave(clips)
        manual = sum(model(prep.inputs(w, torch.full((5,), a))).softmax(-1) for a in (0.9, 1.1)) / 2
    both = predict(model, prep, clips, warps=(0.9, 1.1))
    torch.testing.assert_close(both, manual)
    assert (both - plain).abs().max() > 1e-3  # the warps change the answer


def test_worst_words_by_engine_counts_each_engine_apart():
    classes = ["yes", "no", "up"]
    engines = ["a"] * 6 + ["b"] * 3
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2])
    pred = torch.tensor([0, 0, 2, 2, 2, 1, 1, 1, 2])
    worst = worst_words_by_engine(engines, labels, pred, classes, k=2)
    assert worst == {"a": [{"word": "no", "acc": 0.0, "n": 2, "confused_with": "up"},
                           {"word": "up", "acc": 0.5, "n": 2, "confused_with": "no"}],
                     "b": [{"word": "yes", "acc": 0.0, "n": 1, "confused_with": "no"},
                           {"word": "no", "acc": 1.0, "n": 1, "confused_with": None}]}


def test_per_utterance_normalizations():
    w = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    utt, band = FeatureExtractor("bcresnet", norm="utterance"), FeatureExtractor("bcresnet", norm="band")
    u, b = utt(w), band(w)
    torch.testing.assert_close(u.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(u.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(b.mean(dim=-1), torch.zeros(2, 1, 40), atol=1e-4, rtol=0)
    torch.testing.assert_close(b.std(dim=-1, unbiased=False), torch.ones(2, 1, 40), atol=1e-3, rtol=0)
    # a louder clip (+6 dB everywhere above the floor) gives the same features; the global normalization does not
    torch.testing.assert_close(utt(2 * w), u, atol=1e-3, rtol=0)
    torch.testing.assert_close(band(2 * w), b, atol=1e-3, rtol=0)
    glob = FeatureExtractor("bcresnet", mean=-40.0, std=20.0)
    assert (glob(2 * w) - glob(w)).mean() > 0.2
    with pytest.raises(ValueError, match="norm"):
        FeatureExtractor("m5", norm="band")
    with pytest.raises(ValueError, match="norm"):
        FeatureExtractor("bcresnet", norm="cmvn")


def test_feature_extractor_shapes():
    w = torch.randn(2, 16000) * 0.1
    assert FeatureExtractor("bcresnet")(w).shape == (2, 1, 40, 101)
    assert FeatureExtractor("cnn")(w).shape == (2, 1, 201, 81)  # the exercise's (201, 81)
    assert FeatureExtractor("m5")(w).shape == (2, 16000)


# ----------------------------------------------------------------------------------- end to end
def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "deepnotes", *args], capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def small_build():
    """The 350-clip speech-keywords-small build (in the data folder; kept between test runs)."""
    from deepnotes.data.speech_build import SPEECH_KEYWORDS_SMALL

    try:
        return SPEECH_KEYWORDS_SMALL.build(progress=False)
    except DataError as e:
        pytest.skip(f"the speech engines are not installed: {e}")


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
    assert data["n_train"] == 140 and data["n_val"] == 105 and data["n_test"] == 105  # 4 / 3 / 3 voices x 35
    assert len(m["per_word_acc"]) == 35 and m["n"] == 105
    assert set(m["per_engine_acc"]) == {"espeak-ng", "flite", "festival"}
    cm = np.asarray(m["confusion_matrix"])
    assert cm.sum() == 105 and np.trace(cm) / 105 == pytest.approx(m["acc"])
    assert 0 <= m["noisy_acc"] <= 1
    assert m["tta_warps"] == [0.9, 1.0, 1.1] and 0 <= m["acc_tta"] <= 1 and 0 <= m["val_acc_tta"] <= 1
    assert set(m["per_engine_acc_tta"]) == set(m["per_engine_worst_words"]) == {"espeak-ng", "flite", "festival"}
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
                 "Hardest words per engine"):
        assert text in report


def test_eval_on_a_speech_commands_folder(fast_run, small_build, tmp_path):
    run_dir, _ = fast_run
    data = json.loads((run_dir / "data.json").read_text())
    arrays = load_file(str(run_dir / "predictions.safetensors"))
    test_files = (small_build / "testing_list.txt").read_text().split()
    picked = [f for f in test_files if f.split("/")[0] in ("yes", "no")]  # 3 test voices each
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
    assert len(split.labels) == len(picked) + 2 == 8
    assert split.clips.shape == (8, 16000)
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
    ({"tta_warps": (0.9, 2.0)}, "--tta-warps must be factors"),
    ({"model": "m5", "tta_warps": (0.9,)}, "--tta-warps warps a spectrogram"),
    ({"model": "m5", "feature_norm": "band"}, "--feature-norm"),
    ({"dataset": "mnist-subset"}, "not a speech dataset"),
    ({"dataset": "no-such-set"}, "unknown dataset"),
    ({"data_dir": "/no/such/folder"}, "--data-dir"),
])
def test_bad_config_is_a_user_error(kwargs, match, tmp_path):
    ctx = RunContext(tmp_path, torch.device("cpu"))
    with pytest.raises(UserError, match=match):
        run(KeywordSpottingConfig(**kwargs), ctx)


def test_an_outdated_build_is_refused_with_the_command_that_updates_it(tmp_path, monkeypatch):
    from deepnotes.data.speech_build import SPEECH_KEYWORDS_SMALL, SynthVoice

    monkeypatch.setenv("DEEPNOTES_DATA", str(tmp_path))
    ctx = RunContext(tmp_path / "runs", torch.device("cpu"))
    with pytest.raises(UserError, match="is not built yet.*deepnotes data build speech-keywords-small"):
        run(KeywordSpottingConfig(dataset="speech-keywords-small"), ctx)
    root = tmp_path / "speech-keywords-small"
    root.mkdir()
    grid = SPEECH_KEYWORDS_SMALL.grid.to_json()
    grid["voices"] = grid["voices"][1:] + [SynthVoice("flite", "kal").to_json()]  # another grid
    (root / "manifest.json").write_text(json.dumps({"grid": grid}))
    assert SPEECH_KEYWORDS_SMALL.status().startswith("outdated")
    with pytest.raises(UserError, match="older grid.*deepnotes data build speech-keywords-small.*festvox-us-slt-hts"):
        run(KeywordSpottingConfig(dataset="speech-keywords-small"), ctx)
    grid = SPEECH_KEYWORDS_SMALL.grid.to_json()
    grid["setting_units"] = {"flite": "documentation of an older version"}  # does not make it outdated
    (root / "manifest.json").write_text(json.dumps({"grid": grid}))
    assert SPEECH_KEYWORDS_SMALL.is_current() and SPEECH_KEYWORDS_SMALL.status().startswith("present")


def test_bad_model_options_are_user_errors_before_any_data_is_read(tmp_path):
    ctx = RunContext(tmp_path, torch.device("cpu"))
    with pytest.raises(UserError, match="n_mels=64"):
        run(KeywordSpottingConfig(data_dir="/no/such/folder", n_mels=64), ctx)


def test_bad_flags_on_the_command_line(tmp_path):
    proc = _cli("run", "keyword-spotting", "--model", "lstm", check=False)
    assert proc.returncode == 2 and "--model" in proc.stderr
    proc = _cli("run", "keyword-spotting", "--snr-db", "30,5", "--out", str(tmp_path), check=False)
    assert proc.returncode == 2 and "--snr-db" in proc.stderr and "Traceback" not in proc.stderr


def test_engines_of_reads_the_manifest(small_build, tmp_path):
    files = (small_build / "testing_list.txt").read_text().split()
    engines = engines_of(small_build, files)
    assert set(engines) == {"espeak-ng", "flite", "festival"} and len(engines) == len(files)
    assert engines_of(tmp_path, files) is None  # no manifest.json: a real Speech Commands folder


def test_engine_weights_give_each_engine_its_share(small_build, tmp_path):
    files = sorted(str(f.relative_to(small_build)) for f in small_build.glob("*/*_nohash_*.wav"))
    engines = engines_of(small_build, files)
    counts = Counter(engines)
    assert len(set(counts.values())) > 1  # unequal engines, or the test proves nothing
    for power in (0.0, 0.5, 1.0):
        w, shares = engine_weights(small_build, files, power)
        total = {e: sum(float(wi) for wi, ei in zip(w, engines) if ei == e) for e in counts}
        want = {e: n ** power for e, n in counts.items()}
        for e in counts:
            assert total[e] / sum(total.values()) == pytest.approx(want[e] / sum(want.values()))
            assert shares[e] == pytest.approx(want[e] / sum(want.values()))  # the shares it reports
    with pytest.raises(UserError, match="manifest.json"):
        engine_weights(tmp_path, files, 0.5)
