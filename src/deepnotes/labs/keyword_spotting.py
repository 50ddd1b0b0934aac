"""Lab ``keyword-spotting``: which of 35 words was said, on voices never heard in training (seed 000).

The curriculum's "Audio Classification with Spectrogram" exercise (seed 000: a clip's waveform at several sample
rates, its spectrogram, mel spectrogram and MFCC, then a CNN on the (201, 81) spectrogram; train 91 %, validation
90 %) on ``speech-keywords`` (the 35 Speech Commands v2 words said by Debian's synthesizers, split by voice) or any
Speech Commands folder (``--data-dir``). ``--model`` (:mod:`deepnotes.models.kws`, by name): ``bcresnet`` (default,
BC-ResNet-2 on 40 log-mels, Kim et al. 2021), ``cnn`` (the exercise's CNN) or ``m5`` (M5 on the waveform).

Wiring only: features and augmentation (drawn per batch from the Trainer's seeded generator, so a resumed run
repeats them) are :mod:`deepnotes.audio.frontend` / :mod:`deepnotes.audio.augment`; splits, noise and engine
weights :mod:`deepnotes.data.speech`; metrics and the pocketsphinx baseline :mod:`deepnotes.metrics.speech`; the
exercise's pictures :mod:`deepnotes.audio.figures`. The run folder holds data.json, test_metrics.json,
predictions.safetensors (test labels and predictions, the example clip clean and augmented) and report.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from deepnotes.audio.figures import plot_accuracy_bars, plot_features, plot_inputs, plot_waveforms
from deepnotes.audio.frontend import BatchPreparer, FeatureExtractor, SpeechAugment, feature_stats, predict
from deepnotes.data.speech import (TESTING_LIST_V1, SpeechSplit, engine_weights, engines_of, load_eval_folder,
                                   load_noise, load_split, read_split_list, speech_folder)
from deepnotes.data.speech_build import ENGINES, SPEAKERS
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import atomic_path
from deepnotes.metrics.speech import keyword_metrics, pocketsphinx_baseline
from deepnotes.models.kws import SPOTTERS, keyword_spotter
from deepnotes.report import markdown_image, markdown_table, plot_confusion_matrix, plot_lr_schedule, read_metrics_csv
from deepnotes.train import supervised_trainer
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.engine import use_cpu_bf16
from deepnotes.train.schedule import lr_at

NAME = "keyword-spotting"
#: The exercise's published figures (seed 000), on real Speech Commands recordings.
EXERCISE_TRAIN_ACC, EXERCISE_VAL_ACC = 0.91, 0.90
#: What each --model reads, for the report.
INPUTS = {"bcresnet": "{n_mels} log-mel bands (30 ms windows, 10 ms hop)",
          "cnn": "the (201, 81) dB spectrogram (n_fft 400, hop 200)", "m5": "the raw 16 kHz waveform"}


@dataclass(frozen=True)
class KeywordSpottingConfig(TrainConfig):
    batch_size: int = option(64, "examples per update, summed over all processes")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(0.003, "peak learning rate")
    weight_decay: float = option(1e-2, "weight decay on weights (not on biases or norm scales)")
    dataset: str = option("speech-keywords", "speech-keywords or speech-keywords-small (see `deepnotes data list`)")
    data_dir: str | None = option(None, "a Speech Commands-layout folder to read instead of --dataset")
    model: Literal["bcresnet", "cnn", "m5"] = option("bcresnet", "BC-ResNet on log-mels, the exercise's CNN on the "
                                                     "spectrogram, or M5 on the waveform")
    width: float = option(2.0, "BC-ResNet: width multiplier tau (channels 8 tau ... 32 tau)", range="(0, 64]")
    n_mels: int = option(40, "BC-ResNet: mel bands of the log-mel input (40 or 80)", range="[1, 512]")
    dropout: float = option(0.1, "BC-ResNet: dropout in each block; the CNN: its two dropouts", range="[0, 1)")
    speed_perturb: float = option(0.1, "augmentation: speed factor in [1 - x, 1 + x] (0 disables)", range="[0, 0.5)")
    vtlp: float = option(0.1, "augmentation: VTLP frequency warp in [1 - x, 1 + x] (0 disables)", range="[0, 0.5)")
    eq_db: float = option(0.0, "augmentation: a random smooth equalizer of up to this many dB (0 disables)",
                          range="[0, 60]")
    tta_warps: tuple[float, ...] = option((), "test-time augmentation: VTLP factors to average over (empty = off)",
                                          range="[0.5, 1.5]")
    feature_norm: Literal["global", "utterance", "band"] = option(
        "utterance", "normalization: training-set mean/std, each clip's mean/std, or per frequency band (CMVN)")
    engine_power: float = option(1.0, "re-balance the synthesizers: share of draws ~ clip count ** this (1 = off)",
                                 range="[0, 1]")
    time_shift_ms: float = option(100.0, "augmentation: shift by up to this many ms (0 disables)", range="[0, 1000]")
    noise_prob: float = option(0.5, "augmentation: share of clips mixed with background noise", range="[0, 1]")
    snr_db: tuple[float, ...] = option((5.0, 30.0), "augmentation: noise SNR range in dB (low,high)", range="[-100, 100]")
    freq_masks: int = option(1, "SpecAugment: frequency masks per clip (0 disables)", range="[0, 100]")
    max_freq_mask: float = option(0.15, "SpecAugment: widest frequency mask, share of the bins", range="[0, 1]")
    time_masks: int = option(1, "SpecAugment: time masks per clip (0 disables)", range="[0, 100]")
    max_time_mask: float = option(0.2, "SpecAugment: widest time mask, share of the frames", range="[0, 1]")
    noisy_test_snr: float = option(10.0, "also test with background noise at this SNR (dB)", range="[-100, 100]")
    noisy_test_snr_low: float = option(0.0, "and at this lower SNR (dB)", range="[-100, 100]")
    leave_out_engine: str | None = option(None, "leave-one-engine-out: train and validate without any clip of this "
                                          f"synthesizer ({', '.join(ENGINES)}), test on all its clips")
    pocketsphinx: bool = option(True, "baseline: Debian's pocketsphinx on the test split (35-word grammar), if installed")
    pocketsphinx_max_files: int = option(1000, "pocketsphinx: at most this many test clips (0 = all)", range="[0, 1e8]")
    limit_train: int = option(0, "train on only N clips spread over the training split (0 = all)", range="[0, 1e8]")
    limit_test: int = option(0, "evaluate on only N clips spread over the test split (0 = all)", range="[0, 1e8]")
    channels_last: bool = option(True, "NHWC memory layout for the 2-D models (faster depthwise convolutions on CPU)")

    def check(self) -> None:
        super().check()
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise UserError("--snr-db must be two values low,high with low <= high")
        if self.model == "m5" and self.feature_norm == "band":
            raise UserError("--feature-norm band needs a spectrogram model (--model bcresnet or cnn); use global or "
                            "utterance with m5")
        if self.model == "m5" and self.tta_warps:
            raise UserError("--tta-warps warps a spectrogram: use --model bcresnet or cnn")
        if self.leave_out_engine is not None and self.leave_out_engine not in ENGINES:
            raise UserError(f"--leave-out-engine must be one of {', '.join(ENGINES)}; got {self.leave_out_engine!r}")
        with torch.device("meta"):  # bad model options fail here, before any run folder (no memory, no random draws)
            build_model(self, 35)


# The default augmentation until 2026-12-07: noise on 80% of the clips, two frequency and two time masks. The lighter
# one that replaced it scored 89.78% on the validation voices against 86.60% (means of 3 seeds; benchmarks/RESULTS.md).
OLD_AUGMENTATION = {"noise_prob": 0.8, "freq_masks": 2, "time_masks": 2}

PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long run of the whole pipeline on the 350-clip build (the tests run it).
    "fast": {"dataset": "speech-keywords-small", "epochs": 2, "batch_size": 32, "pocketsphinx_max_files": 35},
    # The exercise's network and optimizer (Adam); it trains several times slower than the default on a CPU.
    # Both keep the training set's one mean/std: the per-clip default was chosen with BC-ResNet-2 only.
    # Both keep the augmentation they were measured with (heavier than today's default, chosen later on validation).
    "exercise": {"model": "cnn", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "dropout": 0.5,
                 "batch_size": 64, "epochs": 6, "feature_norm": "global", **OLD_AUGMENTATION},
    # M5 as in the tutorial (Adam, lr 0.01, weight decay 1e-4).
    "m5": {"model": "m5", "optimizer": "adamw", "lr": 0.01, "weight_decay": 1e-4, "epochs": 20,
           "feature_norm": "global", **OLD_AUGMENTATION},
}


def build_model(cfg: KeywordSpottingConfig, num_classes: int) -> torch.nn.Module:
    try:
        return keyword_spotter(cfg.model, num_classes, cfg.width, cfg.n_mels, cfg.dropout, cfg.channels_last)
    except UserError as e:
        raise UserError(f"--width/--n-mels/--dropout: {e}") from e


def leave_out(engine: str, train: SpeechSplit, val: SpeechSplit, test: SpeechSplit) -> tuple[SpeechSplit, ...]:
    """Leave-one-engine-out: ``(train, val, test)`` without ``engine``'s clips, and every clip of ``engine`` from
    the three splits as the new test split (no voice of it was heard, whichever split it was built into).

    Raises:
        UserError: the folder has no speech-keywords manifest, or no clip of ``engine``.
    """
    kept, out = [], []
    for split in (train, val, test):
        engines = engines_of(split.root, split.files)
        if engines is None:
            raise UserError(f"--leave-out-engine needs {split.root / 'manifest.json'} (a `deepnotes data build "
                            "speech-keywords` folder) to know each clip's synthesizer")
        mask = torch.tensor([e == engine for e in engines], dtype=torch.bool)
        kept.append(split.select(~mask))
        out.append(split.select(mask))
    test_all = SpeechSplit.concat(out)
    if not len(test_all.labels):
        raise UserError(f"--leave-out-engine {engine}: {train.root} has no clip of it")
    return kept[0], kept[1], test_all


def v1_accuracy(split: SpeechSplit, pred: torch.Tensor) -> tuple[float, int] | None:
    """Accuracy on the clips of the split listed in its folder's ``testing_list_v1.txt`` (the first build's test
    voices), and their number; None without that list or without such a clip in ``split``."""
    path = split.root / TESTING_LIST_V1
    if not path.is_file():
        return None
    listed = set(read_split_list(path))
    rows = [i for i, f in enumerate(split.files) if f in listed]
    if not rows:
        return None
    return float((pred[rows] == split.labels[rows]).double().mean()), len(rows)


def batch_preparer(cfg: KeywordSpottingConfig, noise: list[torch.Tensor], device: torch.device, mean: float = 0.0,
                   std: float = 1.0) -> BatchPreparer:
    """The features of ``--model`` (``mean``/``std``: the global normalization's) and the augmentation of ``cfg``."""
    features = FeatureExtractor(SPOTTERS[cfg.model][1], cfg.n_mels, mean, std, cfg.feature_norm)
    return BatchPreparer(features, SpeechAugment.of(cfg), noise, device, use_cpu_bf16(cfg, device), cfg.channels_last)


def evaluate(run: Run, data: str | None, device: torch.device, skip_bad: bool = False) -> dict[str, Any]:
    """``deepnotes eval``: accuracy on the run's test split (``data`` None), another built dataset's test split, or
    a Speech Commands folder (its test split, else every WAV of its word folders; ``skip_bad``: leave out, and
    name, the files that cannot be read); saved as ``eval/<name>.json``.

    Raises:
        UserError: not a finished run (no data.json or model.safetensors); a folder whose words are not the run's
            classes; a dataset not built.
    """
    cfg, info = run.config, run.read_json("data.json")
    classes = info["classes"]
    model = run.load_weights(build_model(cfg, len(classes))).to(device)
    noise = load_noise(info["root"], lambda _m: None) if Path(info["root"]).is_dir() else []
    prep = batch_preparer(cfg, noise, device, info["feature_mean"], info["feature_std"])
    if data is None:
        split, name = load_split(Path(info["root"]), "test", classes), "test"
    elif Path(data).is_dir():
        split, name = load_eval_folder(Path(data), classes, skip_bad), Path(data).resolve().name
    else:
        split, name = load_split(speech_folder(data), "test", classes), data
    metrics, _ = keyword_metrics(model, prep, split, (cfg.noisy_test_snr, cfg.noisy_test_snr_low), cfg.seed,
                                 cfg.tta_warps)
    metrics.update(data=name, source=str(split.root))
    run.write_eval(name, metrics)
    return metrics


def run(cfg: KeywordSpottingConfig, ctx: RunContext) -> dict[str, Any]:
    """Train, evaluate on the test split (clean, per word, per engine, with noise), run the baseline, write the report."""
    log = ctx.main_log
    torch.manual_seed(cfg.seed)
    root = speech_folder(cfg.dataset, cfg.data_dir)
    t_load = time.perf_counter()
    train = load_split(root, "train")
    classes = train.classes
    val = load_split(root, "validation", classes)
    test = load_split(root, "test", classes)
    if cfg.leave_out_engine:
        train, val, test = leave_out(cfg.leave_out_engine, train, val, test)
        log(f"leave-one-engine-out: no {cfg.leave_out_engine} clip in training or validation; the test split is all "
            f"{len(test.labels)} of its clips")
    train, test = train.subset(cfg.limit_train), test.subset(cfg.limit_test)
    noise = load_noise(root, log)
    mean, std = feature_stats(FeatureExtractor(SPOTTERS[cfg.model][1], cfg.n_mels), train.clips)
    ex = next((i for i, f in enumerate(test.files) if f.startswith("yes/")), 0)  # the exercise's word, if there
    info = {"root": str(root.resolve()), "dataset": cfg.data_dir or cfg.dataset, "classes": classes,
            "n_train": len(train.labels), "n_val": len(val.labels), "n_test": len(test.labels), "noise": len(noise),
            "feature_mean": mean, "feature_std": std, "example_file": test.files[ex],
            "load_time_s": time.perf_counter() - t_load}
    folder = Run(ctx.run_dir)
    if ctx.info.is_main:
        folder.write_json("data.json", info)
    log(f"{info['dataset']}: {len(train.labels)} train / {len(val.labels)} val / {len(test.labels)} test clips, "
        f"{len(classes)} words, {len(noise)} noise recordings, from {root}")
    model = build_model(cfg, len(classes))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {cfg.model}: {n_params:,} parameters; device {ctx.device}"
        + (f"; {ctx.info.world_size} processes" if ctx.info.enabled else ""))
    prep = batch_preparer(cfg, noise, ctx.device, mean, std)
    weights = None
    if cfg.engine_power != 1.0:
        weights, shares = engine_weights(root, train.files, cfg.engine_power)
        log("training draws per engine: " + ", ".join(f"{e} {100 * v:.1f}%" for e, v in shares.items()))
    trainer = supervised_trainer(cfg, model, ctx.run_dir, (train.clips, train.labels), prep,
                                 {"val": (val.clips, val.labels)}, ctx.device, ctx.info, log, eval_batch_size=256,
                                 sample_weights=weights)
    if ctx.resume:
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit()
    session_time = time.perf_counter() - t0
    if not ctx.info.is_main:
        return {}
    metrics, arrays = keyword_metrics(model, prep, test, (cfg.noisy_test_snr, cfg.noisy_test_snr_low), cfg.seed,
                                      cfg.tta_warps)
    v1 = v1_accuracy(test, arrays["pred"])
    if v1 is not None and not cfg.leave_out_engine:
        metrics["acc_v1"], metrics["n_v1"] = v1
    if cfg.tta_warps:  # the validation voices, to judge the test-time augmentation without the test set
        for key, warps in (("val_acc", ()), ("val_acc_tta", cfg.tta_warps)):
            metrics[key] = float((predict(model, prep, val.clips, warps=warps).argmax(-1) == val.labels).double().mean())
    metrics.update(train_time_s=sum(row["epoch_time_s"] for row in trainer.history), this_session_time_s=session_time,
                   parameters=n_params)
    if cfg.pocketsphinx:
        log("pocketsphinx baseline on the test split ...")
        metrics["pocketsphinx"] = pocketsphinx_baseline(test, arrays["pred"], cfg.pocketsphinx_max_files, cfg.seed)
    folder.write_json("test_metrics.json", metrics)
    with torch.no_grad():  # the report's example clip, clean and one training draw of it
        w = prep.wave(test.clips[ex:ex + 1])
        arrays.update(example_wave=test.clips[ex].float() / 32768.0, example_input=prep.inputs(w).float().cpu(),
                      example_augmented=prep.augmented(w, torch.Generator().manual_seed(cfg.seed)).float().cpu())
    with atomic_path(ctx.run_dir / "predictions.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in arrays.items()}, str(tmp))
    report_path = report(folder)
    engines = ", ".join(f"{e} {100 * a:.2f}%" for e, a in metrics.get("per_engine_acc", {}).items())
    log(f"test accuracy {100 * metrics['acc']:.2f}%{f' ({engines})' if engines else ''}; trained in "
        f"{metrics['train_time_s']:.0f}s")
    if "acc_v1" in metrics:
        log(f"on the first build's test voices ({TESTING_LIST_V1}, {metrics['n_v1']} clips): "
            f"{100 * metrics['acc_v1']:.2f}%")
    if "acc_tta" in metrics:
        log(f"with the probabilities averaged over VTLP warps {', '.join(f'{a:g}' for a in cfg.tta_warps)}: test "
            f"{100 * metrics['acc_tta']:.2f}% (validation {100 * metrics['val_acc_tta']:.2f}% vs "
            f"{100 * metrics['val_acc']:.2f}%)")
    ps = metrics.get("pocketsphinx", {})
    if "acc" in ps:
        log(f"pocketsphinx on {ps['n']} test clips: {100 * ps['acc']:.2f}% (the model on the same clips: "
            f"{100 * ps['model_acc_same_clips']:.2f}%)")
    log(f"report: {report_path}")
    return metrics


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else ""


def report(run: Run) -> Path:
    """Render ``report.md`` and its PNG figures from the files of a run folder; return the report's path."""
    cfg, info, m = run.config, run.read_json("data.json"), run.read_json("test_metrics.json")
    classes, rows = info["classes"], read_metrics_csv(run / "metrics.csv")
    arrays = load_file(str(run / "predictions.safetensors"))
    model_name = {"bcresnet": f"BC-ResNet-{cfg.width:g}", "cnn": "the exercise's CNN", "m5": "M5"}[cfg.model]
    steps = int(rows[-1]["step"]) if rows else 1
    plot_lr_schedule([lr_at(s, steps, cfg.lr, cfg.schedule, cfg.warmup) for s in range(steps)],
                     run / "lr_schedule.png", title=f"{cfg.schedule} schedule")
    plot_confusion_matrix(np.asarray(m["confusion_matrix"]), classes, run / "confusion_matrix.png", title="test split")
    plot_accuracy_bars(m["per_word_acc"], run / "per_word_accuracy.png")
    plot_waveforms(arrays["example_wave"].numpy(), run / "waveforms.png")
    plot_features(arrays["example_wave"].numpy(), run / "features.png")
    plot_inputs(arrays["example_input"], arrays["example_augmented"], run / "augmentation.png", cfg.model != "m5")

    results: list[list[Any]] = [["test accuracy (unseen voices)", _pct(m["acc"])]]
    results += [[f"test accuracy, {e} voices", _pct(a)] for e, a in m.get("per_engine_acc", {}).items()]
    if "acc_tta" in m:
        warps = ", ".join(f"{a:g}" for a in m["tta_warps"])
        results.append([f"test accuracy, probabilities averaged over VTLP warps {warps} (TTA)", _pct(m["acc_tta"])])
        results += [[f"test accuracy with TTA, {e} voices", _pct(a)] for e, a in m.get("per_engine_acc_tta", {}).items()]
        if "val_acc_tta" in m:
            results.append(["validation accuracy without / with TTA (final weights)",
                            f"{_pct(m['val_acc'])} / {_pct(m['val_acc_tta'])}"])
    if "acc_v1" in m:
        results.insert(1, [f"test accuracy on the first build's test voices ({TESTING_LIST_V1}, {m['n_v1']} clips)",
                           _pct(m["acc_v1"])])
    if "noisy_acc_by_snr" in m:
        results += [[f"test accuracy with background noise at {snr} dB SNR", _pct(a)]
                    for snr, a in m["noisy_acc_by_snr"].items()]
    elif "noisy_acc" in m:
        results.append([f"test accuracy with background noise at {m['noisy_snr_db']:g} dB SNR", _pct(m["noisy_acc"])])
    if rows and rows[-1].get("val_acc") is not None:
        results += [["validation accuracy, last epoch (unseen voices)", _pct(float(rows[-1]["val_acc"]))],
                    ["training accuracy, last epoch (augmented clips)", _pct(float(rows[-1]["train_acc"]))]]
    results += [["test loss", f"{m['loss']:.4f}"], ["test clips", m["n"]],
                ["training time (all epochs)", f"{m['train_time_s']:.0f} s"], ["parameters", f"{m['parameters']:,}"]]
    baselines: list[list[Any]] = [["the exercise (seed 000): CNN on (201, 81) spectrogram images of real Speech "
                                   "Commands recordings",
                                   f"train {_pct(EXERCISE_TRAIN_ACC)}, validation {_pct(EXERCISE_VAL_ACC)}"]]
    ps = m.get("pocketsphinx", {})
    if "acc" in ps:
        baselines += [[f"Debian pocketsphinx (CMU Sphinx en-us, grammar of the {len(classes)} words), {ps['n']} test "
                       f"clips ({ps['subset']})", _pct(ps["acc"])],
                      [f"this model on the same {ps['n']} clips", _pct(ps["model_acc_same_clips"])]]
    intro = ("The Speech Commands exercise of the curriculum notes (seed 000: waveform, spectrogram, mel spectrogram "
             "and MFCC, then a CNN on the spectrogram; train 91%, validation 90%). "
             f"Data: {info['root']} ({info['n_train']} train / {info['n_val']} validation / {info['n_test']} test "
             f"clips, {len(classes)} words). In the synthesized speech-keywords set, validation and test are voices "
             f"never heard in training. "
             + (f"Leave-one-engine-out: no {cfg.leave_out_engine} clip in training or validation, and the test split "
                f"is every {cfg.leave_out_engine} clip of the build. " if cfg.leave_out_engine else "")
             + f"Model input: {INPUTS[cfg.model].format(n_mels=cfg.n_mels)}. "
             f"Augmentation: {SpeechAugment.of(cfg).describe(cfg.model != 'm5', info['noise'])}.")
    worst = sorted((a, w) for w, a in m["per_word_acc"].items() if a is not None)[:5]
    by_engine = [[e, ", ".join(f"{r['word']} {_pct(r['acc'])}" + (f" (-> {r['confused_with']})" if r["confused_with"]
                                                                    else "") for r in ws)]
                 for e, ws in m.get("per_engine_worst_words", {}).items()]
    rep = Report(run, f"{NAME}: {model_name} on {info['dataset']}", intro).results(results)
    rep.baselines(baselines, ("baseline", "accuracy"), note="Baselines:")
    if ps.get("per_engine_acc"):
        rep.table("pocketsphinx per engine", ["engine", "pocketsphinx", "this model"], [
            [e, _pct(a), _pct(ps["model_per_engine_acc"].get(e))] for e, a in ps["per_engine_acc"].items()])
    elif "skipped" in ps:
        rep.section("pocketsphinx", f"pocketsphinx baseline skipped: {ps['skipped']}.")
    if m.get("per_speaker_acc"):
        rep.table("Accuracy per test speaker", ["speaker", "sex, accent", "accuracy"], [
            [spk, ", ".join(SPEAKERS.get(spk, ("-", "formant synthesis"))), _pct(a)]
            for spk, a in m["per_speaker_acc"].items()])
    rep.section("The exercise's pictures", f"One test clip ({info['example_file']}) at several sample rates, and its "
                "features:", markdown_image("waveform at several sample rates", "waveforms.png"),
                markdown_image("spectrogram, mel spectrogram, MFCC", "features.png"),
                "What the model sees, clean and augmented:", markdown_image("augmentation", "augmentation.png"))
    rep.section("Accuracy per word", "Hardest words: " + ", ".join(f"{w} ({_pct(a)})" for a, w in worst) + ".",
                *(["Hardest words per engine (accuracy over that engine's test clips of the word; most frequent "
                   "wrong answer):", markdown_table(["engine", "words"], by_engine)] if by_engine else []),
                markdown_image("per-word accuracy", "per_word_accuracy.png"),
                markdown_table(["word", "test accuracy"], [[w, _pct(a)] for w, a in m["per_word_acc"].items()]))
    rep.figure("Confusion matrix (test)", "confusion_matrix.png").figure("Learning-rate schedule", "lr_schedule.png")
    return rep.write(f"{model_name} on {info['dataset']}", lambda e: {"data": e.get("data", e["file"]), "clips": e["n"],
                     "accuracy": _pct(e["acc"]), "with noise": _pct(e.get("noisy_acc"))})


LAB = Lab(name=NAME, default_dataset="speech-keywords", metric="test accuracy",
            summary="35 spoken words on unseen voices: BC-ResNet on log-mels, the exercise's spectrogram CNN, or M5 on "
            "waveforms; shift/noise/SpecAugment augmentation; pocketsphinx baseline",
            source="seed 000 Speech Commands exercise; Kim et al. 2021 (BC-ResNet); PyTorch M5 tutorial",
            config_cls=KeywordSpottingConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
