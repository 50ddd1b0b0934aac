"""Lab ``speaker-identification``: HW4's speaker classification ladder with self-attention and the Conformer.

Source: ML2022 (Hung-yi Lee) lecture 4 (self-attention) and HW4: predict the speaker of an utterance of 40-dim
mel frames from random segments; the hints give four baselines on VoxCeleb: simple 0.60824 (the sample code: a
Transformer encoder layer, mean pooling), medium 0.70375 (tune the Transformer), strong 0.77750 (the Conformer,
Gulati et al. 2020), boss 0.86500 (self-attention pooling and additive-margin softmax). The lab trains the rungs of
``--rungs`` one after another, each from the same seed, plus an x-vector TDNN (Snyder et al. 2018) as the
classic baseline, and measures each on the closed set (test accuracy over random 2-second segments) and on the
open set (speaker verification of voices never heard in training: cosine scores of the embeddings, equal error
rate, DET curve).

Data: ``speaker-utterances`` (:mod:`deepnotes.data.speaker_build`: KJV verses said by 94 synthesizer voices; 80 in
the closed set, 14 held out) or the course's HW4 folder (``--hw4-dir``: mapping.json, metadata.json, uttr-*.pt;
:mod:`deepnotes.data.hw4`), whose utterances are split per speaker 8:1:1 with no open set. Modules:
:mod:`deepnotes.nn.speaker` (the ladder's model, pooling, AM-softmax, TDNN), :mod:`deepnotes.nn.conformer`,
:mod:`deepnotes.metrics.verification`. The run folder holds data.json, ``<rung>/`` (metrics.csv, checkpoints/,
model.safetensors, results.json), results.json, report.md and its figures; ``--resume RUN`` skips finished rungs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes.data.hw4 import load_hw4_folder, random_segment
from deepnotes.data.speaker_build import SPEAKER_UTTERANCES, SPEAKER_UTTERANCES_SMALL, SpeakerCorpus, \
    read_speaker_utterances
from deepnotes.errors import DataError, UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.metrics.verification import cosine_trials, det_curve, equal_error_rate
from deepnotes.nn.speaker import TDNN, SpeakerClassifier
from deepnotes.report import new_figure, plot_learning_curves, read_metrics_csv, save_figure
from deepnotes.train import ClassificationTask, Trainer
from deepnotes.train.batches import EvalBatches, TensorBatches
from deepnotes.train.checkpoint import list_checkpoints
from deepnotes.train.config import TrainConfig, option
from deepnotes.train.task import classification_sums

NAME = "speaker-identification"
DATASETS = {d.name: d for d in (SPEAKER_UTTERANCES, SPEAKER_UTTERANCES_SMALL)}
#: The course's baselines (HW4 hints, ML2022; VoxCeleb, Kaggle): context, not targets.
HW4_BASELINES: dict[str, float] = {"simple": 0.60824, "medium": 0.70375, "strong": 0.77750, "boss": 0.86500}
LADDER = ("simple", "medium", "strong", "boss")
RUNGS = (*LADDER, "xvector")
#: 2 s of 10 ms frames: the closed-set test segments.
EVAL_FRAMES = 200


@dataclass(frozen=True)
class SpeakerConfig(TrainConfig):
    epochs: int = option(20, "passes over the training utterances (one random segment of each a pass)")
    batch_size: int = option(32, "utterances per update, as HW4's sample code")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer (HW4: AdamW)")
    lr: float = option(1e-3, "peak learning rate (HW4: 1e-3)")
    weight_decay: float = option(0.01, "decoupled weight decay on weight matrices")
    schedule: Literal["constant", "step", "cosine", "onecycle"] = option("cosine", "schedule (HW4: warm-up, cosine)")
    warmup: float = option(0.1, "share of updates spent warming up")
    dataset: str = option("speaker-utterances", "built dataset: speaker-utterances or speaker-utterances-small")
    hw4_dir: str | None = option(None, "the course's HW4 Dataset folder (mapping.json, metadata.json, uttr-*.pt)")
    rungs: tuple[str, ...] = option(RUNGS, "rungs to train, in order (comma-separated)", nonempty=True)
    simple_segment: int = option(128, "simple: training segment in frames (the sample code's 128)", range="[8, 10000]")
    segment: int = option(200, "medium, strong, boss, xvector: training segment in frames", range="[8, 10000]")
    simple_d_model: int = option(80, "simple: d_model (the sample code's 80)", range="[8, 4096]")
    d_model: int = option(128, "medium: d_model", range="[8, 4096]")
    conformer_d_model: int = option(144, "strong, boss: d_model (the paper's Conformer-S: 144)", range="[8, 4096]")
    subsampling_channels: int = option(32, "strong, boss: channels of the Conformer's convolutional subsampling "
                                       "(4x fewer frames)", range="[1, 4096]")
    num_layers: int = option(2, "medium, strong, boss: encoder layers", range="[1, 64]")
    n_heads: int = option(4, "medium, strong, boss: attention heads", range="[1, 64]")
    kernel_size: int = option(15, "strong, boss: the Conformer's depthwise kernel (odd)", range="[1, 255]")
    margin: float = option(0.2, "boss: AM-softmax margin m", range="[0, 1]")
    scale: float = option(30.0, "boss: AM-softmax scale s", range="(0, 1000]")
    dropout: float = option(0.1, "dropout in every encoder", range="[0, 1)")
    tdnn_channels: int = option(128, "xvector: frame-layer channels", range="[8, 4096]")
    test_segments: int = option(20, "closed set: random 2-s segments scored per validation and test utterance "
                                "(3 could not tell rungs 0.04 points apart)", range="[1, 1000]")
    eval_segments: int = option(3, "open set: random 2-s segments averaged into each utterance's embedding",
                                range="[1, 100]")
    max_trials: int = option(20000, "open set: at most this many verification trials (half same-speaker)",
                             range="[2, 1e9]")

    def check(self) -> None:
        super().check()
        if not self.hw4_dir and self.dataset not in DATASETS:
            raise UserError(f"--dataset must be one of {', '.join(DATASETS)} (or give --hw4-dir), got {self.dataset!r}")
        if any(r not in RUNGS for r in self.rungs) or len(set(self.rungs)) != len(self.rungs):
            raise UserError(f"--rungs must be distinct names among {','.join(RUNGS)}, got {','.join(self.rungs)}")
        if self.kernel_size % 2 == 0:
            raise UserError("--kernel-size must be odd (the Conformer's non-causal convolution is centred)")
        for name in ("d_model", "conformer_d_model"):
            if getattr(self, name) % self.n_heads:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)} must be a multiple of --n-heads "
                                f"{self.n_heads}")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of every rung on the 66-utterance build (the tests run it).
    "fast": {"dataset": "speaker-utterances-small", "epochs": 2, "batch_size": 8, "simple_segment": 64, "segment": 96,
             "simple_d_model": 16, "d_model": 16, "conformer_d_model": 16, "subsampling_channels": 4, "n_heads": 2,
             "num_layers": 1, "kernel_size": 5, "tdnn_channels": 16, "eval_segments": 2, "test_segments": 2,
             "threads": 1},
}


def build_rung(cfg: SpeakerConfig, rung: str, num_classes: int, n_mels: int) -> torch.nn.Module:
    """The rung's model: simple = the HW4 sample (1 Transformer layer, d_model 80, mean pooling); medium = a deeper,
    wider Transformer; strong = Conformer blocks after the paper's 4x convolutional subsampling; boss = strong +
    self-attention pooling + AM-softmax."""
    if rung == "xvector":
        c = cfg.tdnn_channels
        return TDNN(n_mels, num_classes, channels=c, stats_channels=3 * c, embed_dim=c)
    if rung == "simple":
        return SpeakerClassifier(num_classes, n_mels, d_model=cfg.simple_d_model, num_layers=1, n_heads=2,
                                 dim_feedforward=256, dropout=cfg.dropout)
    if rung == "medium":
        return SpeakerClassifier(num_classes, n_mels, encoder="transformer", d_model=cfg.d_model,
                                 num_layers=cfg.num_layers, n_heads=cfg.n_heads, dim_feedforward=2 * cfg.d_model,
                                 dropout=cfg.dropout)
    conformer = dict(encoder="conformer", d_model=cfg.conformer_d_model, num_layers=cfg.num_layers,
                     n_heads=cfg.n_heads, kernel_size=cfg.kernel_size, dropout=cfg.dropout, subsampling=4,
                     subsampling_channels=cfg.subsampling_channels)
    if rung == "strong":
        return SpeakerClassifier(num_classes, n_mels, **conformer)
    return SpeakerClassifier(num_classes, n_mels, pooling="attention", head="am-softmax", margin=cfg.margin,
                             scale=cfg.scale, **conformer)


class SpeakerTask(ClassificationTask):
    """Cross-entropy on the speaker; an AM-softmax head gets the labels in training (its margin logits)."""

    def training_step(self, model, batch, step):
        x, y = self.prepare_batch(batch[0], batch[1], step.train, step.generator)
        with step.autocast():
            margin = step.train and getattr(model, "head_name", "") == "am-softmax"
            logits = model(x, labels=y) if margin else model(x)
            loss = F.cross_entropy(logits.float(), y)
        return classification_sums(loss, logits.detach(), y)


@dataclass
class SpeakerData:
    """Normalized utterances, the closed-set speakers (class = index) and each utterance's split."""

    features: list[torch.Tensor]
    voices: list[str]
    splits: list[str]
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor

    def rows(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]

    def labels(self, rows: list[int]) -> torch.Tensor:
        return torch.tensor([self.classes.index(self.voices[i]) for i in rows], dtype=torch.int64)


def load_data(cfg: SpeakerConfig) -> tuple[SpeakerData, str]:
    """The corpus of ``--dataset`` or ``--hw4-dir``, each mel band standardized with the training mean/std."""
    if cfg.hw4_dir:
        hw4 = load_hw4_folder(cfg.hw4_dir)
        gen = torch.Generator().manual_seed(cfg.seed)
        splits = [""] * len(hw4)
        for spk in hw4.speaker_ids.unique().tolist():  # 8:1:1 of each speaker's utterances, seeded
            rows = (hw4.speaker_ids == spk).nonzero().flatten()
            rows = rows[torch.randperm(len(rows), generator=gen)].tolist()
            n_val = n_test = max(1, len(rows) // 10) if len(rows) >= 3 else 0
            for j, r in enumerate(rows):
                splits[r] = "validation" if j < n_val else "test" if j < n_val + n_test else "train"
        corpus = SpeakerCorpus(list(hw4.features), [hw4.id2speaker[int(s)] for s in hw4.speaker_ids], splits,
                               list(hw4.paths), Path(cfg.hw4_dir))
        source = f"the course's HW4 files in {cfg.hw4_dir} (each speaker's utterances split 8:1:1, seed {cfg.seed})"
    else:
        info = DATASETS[cfg.dataset]
        if not info.is_current():  # also False without a manifest
            raise UserError(f"{cfg.dataset} is {info.status()}: run `deepnotes data build {cfg.dataset}` (after "
                            "`sudo make system-speech` and `deepnotes data build kjv`)")
        corpus = read_speaker_utterances(info.cache_dir())
        source = f"{cfg.dataset} ({info.cache_dir()}): {info.description}"
    train = [i for i, s in enumerate(corpus.splits) if s == "train"]
    if not train:
        raise DataError(f"{corpus.root}: no training utterance")
    frames = torch.cat([corpus.features[i] for i in train])
    mean, std = frames.mean(0), frames.std(0).clamp_min(1e-5)
    classes = sorted({corpus.voices[i] for i in train})
    feats = [(f - mean) / std for f in corpus.features]
    return SpeakerData(feats, corpus.voices, corpus.splits, classes, mean, std), source


def segments(data: SpeakerData, rows: list[int], frames: int, generator: torch.Generator) -> torch.Tensor:
    """One random segment of ``frames`` frames of each utterance of ``rows``: (B, frames, n_mels). A shorter
    utterance is padded with zeros (the training mean after standardization), as HW4's sample code pads, with no
    mask."""
    return torch.stack([random_segment(data.features[i], frames, generator, pad_value=0.0)[0] for i in rows])


@torch.no_grad()
def embeddings(model: torch.nn.Module, data: SpeakerData, rows: list[int], n_segments: int, seed: int,
               device: torch.device) -> torch.Tensor:
    """Each utterance's embedding: the mean of the model's embeddings of ``n_segments`` seeded 2-s segments."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(n_segments):
        part = []
        for b in range(0, len(rows), 64):
            part.append(model.embed(segments(data, rows[b:b + 64], EVAL_FRAMES, g).to(device)).float().cpu())
        out.append(torch.cat(part))
    return torch.stack(out).mean(0)


@torch.no_grad()
def closed_set_accuracy(model: torch.nn.Module, data: SpeakerData, rows: list[int], n_segments: int, seed: int,
                        device: torch.device) -> float:
    """Accuracy over ``n_segments`` seeded random 2-s segments of each utterance of ``rows``."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    y = data.labels(rows)
    correct = 0
    for s in range(n_segments):
        for b in range(0, len(rows), 64):
            pred = model(segments(data, rows[b:b + 64], EVAL_FRAMES, g).to(device)).argmax(-1).cpu()
            correct += int((pred == y[b:b + 64]).sum())
    return correct / (n_segments * len(rows))


def _train_rung(cfg: SpeakerConfig, rung: str, data: SpeakerData, ctx: RunContext, log) -> dict[str, Any]:
    rdir = ctx.run_dir / rung
    rdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build_rung(cfg, rung, len(data.classes), data.features[0].shape[1]).to(ctx.device)
    n_params = sum(p.numel() for p in model.parameters())
    frames = cfg.simple_segment if rung == "simple" else cfg.segment
    train, val = data.rows("train"), data.rows("validation")
    xv = segments(data, val, EVAL_FRAMES, torch.Generator().manual_seed(cfg.seed + 1)) if val else None

    def prepare(x, y, train_mode, generator):
        if not train_mode:  # one fixed 2-s segment of each validation utterance; x holds their positions
            return xv[x.long()].to(ctx.device), y.to(ctx.device)
        return segments(data, [train[int(i)] for i in x], frames, generator).to(ctx.device), y.to(ctx.device)

    task = SpeakerTask(model, prepare)
    batches = TensorBatches((torch.arange(len(train)), data.labels(train)), cfg.batch_size, cfg.seed, ctx.info)
    evals = {"val": EvalBatches((torch.arange(len(val)), data.labels(val)), 256, ctx.info)} if val else {}
    log(f"[{rung}] {type(model).__name__}: {n_params:,} parameters; {cfg.epochs} epochs of {len(train)} random "
        f"{frames}-frame segments, {cfg.batch_size} a batch")
    trainer = Trainer(cfg, task, rdir, batches, evals, ctx.device, ctx.info, log)
    if ctx.resume and list_checkpoints(rdir):
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit()
    res: dict[str, Any] = {"rung": rung, "model": type(model).__name__, "parameters": n_params,
                           "train_segment_frames": frames, "this_session_time_s": time.perf_counter() - t0,
                           "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history)}
    test = data.rows("test")
    if test:
        res["test_acc"] = closed_set_accuracy(model, data, test, cfg.test_segments, cfg.seed + 2, ctx.device)
    if val:
        res["val_acc"] = closed_set_accuracy(model, data, val, cfg.test_segments, cfg.seed + 3, ctx.device)
    open_rows = data.rows("open")
    if open_rows:
        emb = embeddings(model, data, open_rows, cfg.eval_segments, cfg.seed + 4, ctx.device)
        scores, labels = cosine_trials(emb, [data.voices[i] for i in open_rows], cfg.max_trials, cfg.seed)
        res["eer"], res["eer_threshold"] = equal_error_rate(scores, labels)
        far, frr, _ = det_curve(scores, labels)
        res["n_trials"], res["n_target_trials"] = int(len(labels)), int(labels.sum())
        np.savez(rdir / "det.npz", far=far, frr=frr)
    Run(rdir).write_json("results.json", res)
    shown = ", ".join(f"{k} {100 * res[k]:.2f}%" for k in ("test_acc", "val_acc", "eer") if k in res)
    log(f"[{rung}] {shown}; trained in {res['train_time_s']:.0f} s")
    return res


def run(cfg: SpeakerConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every rung of ``--rungs``; closed-set accuracy, open-set EER; write the report."""
    log = ctx.main_log
    data, source = load_data(cfg)
    counts = {s: len(data.rows(s)) for s in ("train", "validation", "test", "open")}
    info = {"source": source, "classes": data.classes, "counts": counts, "n_mels": int(data.features[0].shape[1]),
            "open_set_voices": sorted({data.voices[i] for i in data.rows("open")}),
            "mean_frames": float(np.mean([len(f) for f in data.features]))}
    if ctx.info.is_main:
        Run(ctx.run_dir).write_json("data.json", info)
    log(f"{len(data.classes)} closed-set speakers: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f" utterances ({info['mean_frames']:.0f} frames on average); {len(info['open_set_voices'])} open-set voices")
    results = {}
    for rung in cfg.rungs:
        if ctx.resume and (ctx.run_dir / rung / "results.json").is_file():
            results[rung] = Run(ctx.run_dir).read_json(f"{rung}/results.json")
            log(f"[{rung}] finished in an earlier session; kept")
            continue
        results[rung] = _train_rung(cfg, rung, data, ctx, log)
    if not ctx.info.is_main:
        return {}
    ladder = [results[r]["test_acc"] for r in LADDER if r in results and "test_acc" in results[r]]
    holds = all(b > a for a, b in zip(ladder, ladder[1:])) if len(ladder) >= 2 else None
    Run(ctx.run_dir).write_json("results.json", {"rungs": results, "ladder_holds": holds})
    log(f"the ladder {'holds' if holds else 'does not hold' if holds is False else 'needs two rungs'}; "
        f"report: {report(Run(ctx.run_dir))}")
    return {"rungs": results, "ladder_holds": holds}


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else ""


def report(run: Run) -> Path:
    """Render report.md (the ladder table, learning curves, the DET curves) from the run folder's files."""
    cfg, info, res = run.config, run.read_json("data.json"), run.read_json("results.json")
    rungs = {r: res["rungs"][r] for r in RUNGS if r in res["rungs"]}  # ladder order (the JSON keeps keys sorted)
    rows = [[r, rungs[r]["model"], f"{rungs[r]['parameters']:,}", rungs[r]["train_segment_frames"],
             _pct(rungs[r].get("val_acc")), _pct(rungs[r].get("test_acc")), _pct(rungs[r].get("eer")),
             _pct(HW4_BASELINES.get(r)), f"{rungs[r]['train_time_s']:.0f} s"] for r in rungs]
    fig = new_figure(5, 5)
    ax = fig.add_subplot()
    for r in rungs:
        det = run / r / "det.npz"
        if det.is_file():
            z = np.load(det)
            ax.plot(100 * z["far"], 100 * z["frr"], label=f"{r} (EER {_pct(rungs[r]['eer'])})")
    if ax.lines:
        ax.plot([0, 100], [0, 100], "k:", lw=0.8)
        ax.set(xscale="log", yscale="log", xlim=(0.1, 100), ylim=(0.1, 100), xlabel="false accept (%)",
               ylabel="false reject (%)", title="open set: speaker verification (DET)")
        ax.legend(fontsize=8)
        save_figure(fig, run / "det.png")
    for r in rungs:
        if (run / r / "metrics.csv").is_file():
            plot_learning_curves(read_metrics_csv(run / r / "metrics.csv"), run / r / "learning_curves.png",
                                 title=f"{r}")
    holds = res.get("ladder_holds")
    intro = (f"ML2022 HW4 (speaker classification) on {info['source']}: {len(info['classes'])} closed-set speakers, "
             + ", ".join(f"{info['counts'][s]} {s}" for s in ("train", "validation", "test", "open"))
             + " utterances. Closed set: accuracy over "
             f"{cfg.test_segments} random 2-second segments of each test utterance. Open set: verification of "
             f"{len(info['open_set_voices'])} voices never heard in training, cosine score of utterance embeddings "
             f"(the mean over {cfg.eval_segments} random 2-second segments), equal error rate (EER). The course's "
             "numbers are on VoxCeleb (not comparable). "
             + ("The ladder holds: each rung beats the one below on closed-set test accuracy." if holds
                else "The ladder does not hold on this run." if holds is False else ""))
    rep = Report(run, f"{NAME}: the HW4 ladder", intro)
    rep.table("The ladder (x-vector: the classic baseline, outside the ladder)",
              ["rung", "model", "parameters", "training segment (frames)", "validation", "test", "open-set EER",
               "HW4 baseline (VoxCeleb)", "training time"], rows)
    if (run / "det.png").is_file():
        rep.figure("Open set: DET curves", "det.png")
    for r in rungs:
        if (run / r / "learning_curves.png").is_file():
            rep.figure(f"Learning curves: {r}", f"{r}/learning_curves.png")
    return rep.write("learning curves")


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: closed-set test and validation accuracy (``--test-segments`` segments per utterance; a run
    made before that option scores with its default) and open-set EER of every trained rung on the run's data
    (``data`` None) or another built speaker set; saved as ``eval/<name>.json``.

    Raises:
        UserError: no trained rung, or a dataset that is not a speaker set.
    """
    cfg = run.config
    if data is not None and data not in DATASETS:
        raise UserError(f"--data must be one of {', '.join(DATASETS)}, got {data!r}")
    cfg = dataclasses.replace(cfg, dataset=data or cfg.dataset)
    info = run.read_json("data.json")
    loaded, _ = load_data(cfg)
    loaded = dataclasses.replace(loaded, classes=info["classes"])
    out: dict[str, Any] = {"data": data or cfg.dataset}
    done = [r for r in cfg.rungs if (run / r / "model.safetensors").is_file()]
    if not done:
        raise UserError(f"{run.path}: no trained rung (model.safetensors) to evaluate")
    for r in done:
        model = Run(run / r).load_weights(build_rung(cfg, r, len(info["classes"]), info["n_mels"])).to(device)
        for split, key, offset in (("test", "test", 2), ("validation", "val", 3)):  # the run's own scoring seeds
            rows = [i for i in loaded.rows(split) if loaded.voices[i] in info["classes"]]
            if rows:
                out[f"{r}_{key}_acc"] = closed_set_accuracy(model, loaded, rows, cfg.test_segments,
                                                            cfg.seed + offset, device)
        open_rows = loaded.rows("open")
        if open_rows:
            emb = embeddings(model, loaded, open_rows, cfg.eval_segments, cfg.seed + 4, device)
            scores, labels = cosine_trials(emb, [loaded.voices[i] for i in open_rows], cfg.max_trials, cfg.seed)
            out[f"{r}_eer"] = equal_error_rate(scores, labels)[0]
    run.write_eval(out["data"], out)
    return out


LAB = Lab(name=NAME, default_dataset="speaker-utterances", metric="closed-set test accuracy",
          summary="HW4 speaker identification: Transformer, Conformer, self-attention pooling + AM-softmax, x-vector; "
          "closed-set accuracy on 2-s segments and open-set EER",
          source="ML2022 lecture 4 and HW4; Gulati et al. 2020 (Conformer); Wang et al. 2018 (AM-softmax); "
          "Snyder et al. 2018 (x-vectors)",
          config_cls=SpeakerConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
