"""Lab ``phoneme-classification``: HW2's frame-wise phoneme classification ladder (ML2021/2022).

Source: ML2021/2022 (Hung-yi Lee) HW2 (seed 002): classify every 10 ms frame (a 39-dim MFCC vector) into
one of 41 phoneme classes; the hints give four baselines measured on the course's LibriSpeech data,
each a change of the model: simple 0.45797 (the sample code), medium 0.69747 (concatenate n frames, add
layers), strong 0.75028 (+ batch norm, dropout, more layers), boss 0.82324 (sequence labelling with an
RNN). This lab trains the four rungs of :mod:`deepnotes.models.framewise` one after the other and reports
each one's frame accuracy beside the course's number.

Data: ``phoneme-frames`` (``deepnotes data build phoneme-frames``, :mod:`deepnotes.data.phonemes`):
festival voices kal and slt say KJV verses for training and validation, the voice ked (never heard in
training) says other verses for the test. LibriSpeech is not available offline, so the course's numbers
are context, not targets: synthetic speech is cleaner than read audiobooks, but our test is on an unseen
speaker from only two training speakers. ``--hw2-dir`` reads the course's own ``libriphone/`` files
instead (validation = the sample code's 20 %; its test split has no labels, so the run writes
``<rung>/prediction.csv`` in the Kaggle format ``Id,Class``).

Features are normalized per utterance (cepstral mean and variance normalization, ``--cmvn``; the usual
speaker normalization of speech front ends) or with the training set's global mean and std.

Default sizes (the course gives none for its hints): simple 1 x 256 on one frame (the sample code), medium
3 x 512 on 11 frames, strong 4 x 512 on 11 frames with batch norm and dropout 0.25, boss a 2-layer
bidirectional LSTM of 128 per direction. They, and one pass over the training frames for the MLP rungs,
keep the default run near 20 minutes on a 2-core CPU (README.md has the measured run); with a GPU or more
time, ``--epochs 4 --strong-hidden 1024 --rnn-hidden 192 --rnn-epochs 12`` are the larger settings.

Training: each MLP rung on single frames or 2k + 1-frame windows (``--context``) gathered on the fly
from the frame table (the engine's ``prepare_batch``; windows repeat the utterance's edge frames as HW2's
``concat_feat``), batch 512 frames, AdamW; the boss rung on whole utterances (padded batches, targets
-100 on padding, frame accuracy over real frames). The seed and the data order are the same for every rung.

Files in the run folder: config.json, data.json, ``<rung>/`` (metrics.csv, checkpoints/,
model.safetensors, results.json, and prediction.csv with ``--hw2-dir``), results.json (all rungs),
report.md + PNGs. ``--resume RUN`` skips finished rungs and continues an interrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepnotes.data.phonemes import (
    N_PHONE_CLASSES,
    PHONEME_DATASETS,
    PHONES,
    FrameCorpus,
    load_hw2_libriphone,
)
from deepnotes.errors import UserError
from deepnotes.io import write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, load_run_weights, read_run_json
from deepnotes.models.framewise import RUNGS, context_index, is_sequence_model, ladder_model
from deepnotes.metrics import confusion_matrix
from deepnotes.report import (
    markdown_image,
    markdown_table,
    new_figure,
    plot_confusion_matrix,
    plot_learning_curves,
    read_metrics_csv,
    save_figure,
)
from deepnotes.train import supervised_trainer
from deepnotes.train.checkpoint import list_checkpoints
from deepnotes.train.config import TrainConfig, option, validate_train_config
from deepnotes.train.engine import IGNORE_INDEX

NAME = "phoneme-classification"

#: The course's baselines (HW2 hints, ML2022; LibriSpeech, Kaggle private leaderboard).
HW2_BASELINES: dict[str, float] = {"simple": 0.45797, "medium": 0.69747, "strong": 0.75028, "boss": 0.82324}


@dataclass(frozen=True)
class PhonemeConfig(TrainConfig):
    # Defaults sized for a run of about 20 minutes on a 2-core CPU over the whole default set (857,744 training
    # frames): one pass for each MLP rung (1,675 updates of 512 frames), strong 4 x 512 rather than the model's
    # 4 x 1024, and a 2 x 128 bi-LSTM for 5 passes (595 updates of 16 utterances); see the module docstring.
    # Engine fields (epochs, batch size, optimizer, lr, schedule) apply to the MLP rungs.
    epochs: int = option(1, "passes over the training frames (MLP rungs)")
    batch_size: int = option(512, "frames per update (MLP rungs), as HW2's sample code")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate (MLP rungs)")
    momentum: float = option(0.9, "SGD momentum; beta1 for AdamW")
    weight_decay: float = option(0.01, "decoupled weight decay on weight matrices")
    schedule: Literal["constant", "step", "cosine", "onecycle"] = option("cosine", "learning-rate schedule")
    warmup: float = option(0.05, "share of updates spent warming up the learning rate")
    # Data.
    dataset: str = option("phoneme-frames", "built dataset: phoneme-frames or phoneme-frames-small")
    hw2_dir: str | None = option(None, "the course's libriphone/ folder (train_labels.txt, train_split.txt, "
                                       "test_split.txt, feat/); read instead of --dataset")
    cmvn: bool = option(True, "normalize each utterance's features to zero mean, unit variance (off: global train stats)")
    limit_train: int = option(0, "use only N training utterances, spread evenly over the voices (0 = all)")
    limit_eval: int = option(0, "use only N validation and N test utterances, spread evenly (0 = all)")
    # The ladder.
    rungs: tuple[str, ...] = option(RUNGS, "rungs to train, in order (comma-separated)")
    simple_hidden: int = option(256, "simple: width of its one hidden layer (the sample code's 256)")
    context: int = option(11, "medium, strong: frames per example, odd (11 = 5 each side, 429 inputs)")
    medium_hidden: int = option(512, "medium: hidden width")
    medium_layers: int = option(3, "medium: hidden layers")
    strong_hidden: int = option(512, "strong: hidden width")
    strong_layers: int = option(4, "strong: hidden layers (each Linear, ReLU, BatchNorm1d, Dropout)")
    dropout: float = option(0.25, "strong: dropout after each block")
    rnn_cell: Literal["lstm", "gru"] = option("lstm", "boss: recurrent cell")
    rnn_hidden: int = option(128, "boss: state size of each direction")
    rnn_layers: int = option(2, "boss: stacked bidirectional layers")
    rnn_dropout: float = option(0.2, "boss: dropout between layers and before the output layer")
    rnn_epochs: int = option(5, "boss: passes over the training utterances")
    rnn_batch_size: int = option(16, "boss: utterances per update")
    rnn_lr: float = option(2e-3, "boss: peak learning rate")
    threads: int = option(0, "CPU threads of torch (0 = torch's default); 1 is fastest on a machine busy with other jobs")
    fused_rnn: bool = option(True, "boss: torch.nn.LSTM/GRU kernels (off: the readable Python loop, much slower)")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline on the 36-utterance build.
    "fast": {"dataset": "phoneme-frames-small", "epochs": 1, "batch_size": 256, "rnn_epochs": 2, "rnn_batch_size": 4,
             "simple_hidden": 32, "medium_hidden": 32, "medium_layers": 2, "strong_hidden": 32, "strong_layers": 2,
             "rnn_hidden": 16, "rnn_layers": 1, "context": 5, "threads": 1},
}


# ----------------------------------------------------------------------------------- data
@dataclass
class PhonemeData:
    """Every split's frames in one table (global frame and utterance indices), normalized."""

    features: torch.Tensor  # (F, C) float32
    labels: torch.Tensor  # (F,) int64; IGNORE_INDEX where a split has no labels
    offsets: torch.Tensor  # (U + 1,) int64
    utt_split: dict[str, torch.Tensor]  # split -> (U_split,) global utterance indices
    labelled: dict[str, bool]
    info: dict[str, Any]

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def frames(self, split: str) -> torch.Tensor:
        """(F_split,) global frame indices of a split's utterances, in order."""
        u = self.utt_split[split]
        if len(u) == 0:
            return torch.zeros(0, dtype=torch.int64)
        return torch.cat([torch.arange(int(self.offsets[i]), int(self.offsets[i + 1])) for i in u.tolist()])


def normalize_utterances(corpus: FrameCorpus) -> torch.Tensor:
    """Per-utterance cepstral mean and variance normalization: each utterance's features to zero mean and
    unit variance per dimension (std floored at 1e-5). Returns (F, C) float32."""
    out = torch.empty_like(corpus.features)
    o = corpus.offsets.tolist()
    for u in range(len(corpus)):
        x = corpus.features[o[u]: o[u + 1]].double()
        out[o[u]: o[u + 1]] = ((x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-5)).float()
    return out


def _limit(corpus: FrameCorpus, n: int) -> FrameCorpus:
    """``n`` utterances spread evenly over the corpus (every voice setting keeps its share); 0 = all."""
    if not n or n >= len(corpus):
        return corpus
    return corpus.subset(np.linspace(0, len(corpus) - 1, n).round().astype(int).tolist())


def load_corpora(cfg: PhonemeConfig) -> tuple[dict[str, FrameCorpus], str]:
    """The train, validation and test corpora of ``--dataset`` or ``--hw2-dir``, and a description."""
    if cfg.hw2_dir:
        folder = Path(cfg.hw2_dir)
        corpora = {s: load_hw2_libriphone(folder, s) for s in ("train", "validation", "test")}
        desc = f"the course's HW2 files in {folder} (validation: the sample code's 20 % of train_split.txt)"
    else:
        info = PHONEME_DATASETS[cfg.dataset]
        corpora = {s: info.load(s) for s in ("train", "validation", "test")}
        desc = f"{cfg.dataset} ({info.cache_dir()}): {info.description}"
    corpora["train"] = _limit(corpora["train"], cfg.limit_train)
    corpora["validation"] = _limit(corpora["validation"], cfg.limit_eval)
    corpora["test"] = _limit(corpora["test"], cfg.limit_eval)
    return corpora, desc


def prepare_data(cfg: PhonemeConfig, corpora: dict[str, FrameCorpus], desc: str,
                 stats: tuple[list[float], list[float]] | None = None) -> PhonemeData:
    """One normalized frame table of all splits. ``stats`` = (mean, std) of the training frames when
    not ``--cmvn`` (default: computed from ``corpora["train"]``)."""
    if not cfg.cmvn and stats is None:
        f = corpora["train"].features.double()
        stats = (f.mean(0).tolist(), f.std(0).clamp_min(1e-5).tolist())
    feats, labels, lengths, utt_split, labelled, u0 = [], [], [], {}, {}, 0
    for split, c in corpora.items():
        if cfg.cmvn:
            feats.append(normalize_utterances(c))
        else:
            mean, std = (torch.tensor(s, dtype=torch.float64) for s in stats)
            feats.append(((c.features.double() - mean) / std).float())
        labelled[split] = c.labels is not None
        labels.append(c.labels if c.labels is not None else torch.full((c.n_frames,), IGNORE_INDEX, dtype=torch.int64))
        lengths.append(c.lengths)
        utt_split[split] = torch.arange(u0, u0 + len(c))
        u0 += len(c)
    all_lengths = torch.cat(lengths)
    info = {
        "source": desc, "dataset": cfg.dataset if not cfg.hw2_dir else "hw2", "classes": list(PHONES),
        "normalization": "per-utterance CMVN" if cfg.cmvn else "global train mean/std",
        "stats": stats, "labelled": labelled,
        **{f"n_{s}_utterances": len(c) for s, c in corpora.items()},
        **{f"n_{s}_frames": c.n_frames for s, c in corpora.items()},
    }
    if labelled.get("train"):  # `deepnotes eval` prepares a single split
        counts = torch.bincount(corpora["train"].labels, minlength=N_PHONE_CLASSES)
        info["train_class_share"] = (counts.double() / counts.sum()).tolist()
    return PhonemeData(torch.cat(feats), torch.cat(labels), torch.cat([torch.zeros(1, dtype=torch.int64),
                       all_lengths.cumsum(0)]), utt_split, labelled, info)


class FrameWindows:
    """The engine's ``prepare_batch`` for the MLP rungs: global frame indices -> (B, context * C) windows."""

    def __init__(self, data: PhonemeData, context: int, device: torch.device):
        self.context, self.device = context, device
        utt_of_frame = torch.repeat_interleave(torch.arange(len(data.lengths)), data.lengths)
        self.start = data.offsets[utt_of_frame]  # (F,)
        self.end = data.offsets[utt_of_frame + 1]  # (F,)
        self.features = data.features

    def __call__(self, idx, y, train, generator):
        win = context_index(idx, self.start[idx], self.end[idx], self.context)  # (B, context)
        x = self.features[win].flatten(1)  # (B, context * C)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class UtteranceBatches:
    """The engine's ``prepare_batch`` for the boss rung: global utterance indices -> ((x, lengths), targets).

    x (B, T, C) zero-padded to the longest utterance of the batch, lengths (B,) on the CPU, targets
    (B, T) with :data:`IGNORE_INDEX` on padding.
    """

    def __init__(self, data: PhonemeData, device: torch.device):
        self.data, self.device = data, device

    def __call__(self, u, _y, train, generator):
        d = self.data
        lengths = d.lengths[u]  # (B,)
        T = int(lengths.max())
        t = torch.arange(T)
        mask = t[None, :] < lengths[:, None]  # (B, T)
        idx = torch.where(mask, d.offsets[u][:, None] + t[None, :], torch.zeros((), dtype=torch.int64))
        x = d.features[idx] * mask[..., None]  # (B, T, C)
        y = torch.where(mask, d.labels[idx], torch.full((), IGNORE_INDEX, dtype=torch.int64))  # (B, T)
        return (x.to(self.device, non_blocking=True), lengths), y.to(self.device, non_blocking=True)


# ----------------------------------------------------------------------------------- models
def rung_overrides(cfg: PhonemeConfig, rung: str) -> dict[str, Any]:
    """The lab's flags as :func:`deepnotes.models.framewise.ladder_model` overrides for ``rung``."""
    if rung == "simple":
        return {"hidden_dim": cfg.simple_hidden}
    if rung == "medium":
        return {"context": cfg.context, "hidden_dim": cfg.medium_hidden, "hidden_layers": cfg.medium_layers}
    if rung == "strong":
        return {"context": cfg.context, "hidden_dim": cfg.strong_hidden, "hidden_layers": cfg.strong_layers,
                "dropout": cfg.dropout}
    return {"cell": cfg.rnn_cell, "hidden_size": cfg.rnn_hidden, "num_layers": cfg.rnn_layers,
            "dropout": cfg.rnn_dropout, "fused": cfg.fused_rnn}


def build_rung(cfg: PhonemeConfig, rung: str, input_dim: int) -> torch.nn.Module:
    try:
        return ladder_model(rung, input_dim=input_dim, **rung_overrides(cfg, rung))
    except ValueError as e:
        raise UserError(f"rung {rung}: {e}") from None


def rung_train_config(cfg: PhonemeConfig, rung: str) -> PhonemeConfig:
    """The engine's config of one rung: the boss rung takes ``--rnn-*`` epochs, batch size and lr."""
    if rung == "boss":
        return dataclasses.replace(cfg, epochs=cfg.rnn_epochs, batch_size=cfg.rnn_batch_size, lr=cfg.rnn_lr)
    return cfg


def _validate(cfg: PhonemeConfig) -> None:
    validate_train_config(cfg)
    if not cfg.hw2_dir and cfg.dataset not in PHONEME_DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(PHONEME_DATASETS)} (or give --hw2-dir), got {cfg.dataset!r}")
    if not cfg.rungs or any(r not in RUNGS for r in cfg.rungs) or len(set(cfg.rungs)) != len(cfg.rungs):
        raise UserError(f"--rungs must be distinct names among {','.join(RUNGS)}, got {','.join(cfg.rungs)}")
    checks = [
        (cfg.context >= 1 and cfg.context % 2 == 1, "--context must be a positive odd number"),
        (0 <= cfg.dropout < 1 and 0 <= cfg.rnn_dropout < 1, "--dropout and --rnn-dropout must be in [0, 1)"),
        (cfg.threads >= 0, "--threads must be >= 0 (0 = torch's default)"),
        (cfg.limit_train >= 0 and cfg.limit_eval >= 0, "--limit-train and --limit-eval must be >= 0 (0 = all)"),
        (cfg.rnn_epochs >= 1 and cfg.rnn_batch_size >= 1 and cfg.rnn_lr > 0,
         "--rnn-epochs and --rnn-batch-size must be >= 1, --rnn-lr > 0"),
    ]
    for name in ("simple_hidden", "medium_hidden", "medium_layers", "strong_hidden", "strong_layers",
                 "rnn_hidden", "rnn_layers"):
        checks.append((getattr(cfg, name) >= 1, f"--{name.replace('_', '-')} must be >= 1"))
    for ok, message in checks:
        if not ok:
            raise UserError(message)


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(model: torch.nn.Module, data: PhonemeData, split: str, device: torch.device,
            context: int = 1) -> torch.Tensor:
    """Predicted class of every frame of ``split`` (in :meth:`PhonemeData.frames` order), (F_split,) int64."""
    model.eval()
    out = []
    if is_sequence_model(model):
        batches = UtteranceBatches(data, device)
        utts = data.utt_split[split]
        for s in range(0, len(utts), 32):
            u = utts[s: s + 32]
            (x, lengths), _ = batches(u, u, False, None)
            pred = model(x, lengths).argmax(-1).cpu()  # (B, T)
            out += [pred[i, : int(n)] for i, n in enumerate(lengths)]
    else:
        windows = FrameWindows(data, context, device)
        frames = data.frames(split)
        for s in range(0, len(frames), 8192):
            idx = frames[s: s + 8192]
            x, _ = windows(idx, idx, False, None)
            out.append(model(x).argmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def split_metrics(pred: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Frame accuracy, per-class recall and the confusion matrix of predictions against labels."""
    cm = confusion_matrix(labels.numpy(), pred.numpy(), N_PHONE_CLASSES)
    support = cm.sum(1)
    recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return {"acc": float((pred == labels).double().mean()) if len(labels) else float("nan"),
            "n_frames": len(labels), "recall": [None if np.isnan(r) else float(r) for r in recall],
            "confusion_matrix": cm.tolist()}


def _context_of(model: torch.nn.Module) -> int:
    return getattr(getattr(model, "cfg", None), "context", 1)


def write_predictions(path: Path, pred: torch.Tensor) -> None:
    """HW2's Kaggle file: ``Id,Class`` then one line per test frame."""
    write_text_atomic(path, "Id,Class\n" + "".join(f"{i},{int(c)}\n" for i, c in enumerate(pred.tolist())))


# ----------------------------------------------------------------------------------- run
def _train_rung(cfg: PhonemeConfig, rung: str, data: PhonemeData, ctx: RunContext, log) -> dict[str, Any]:
    rdir = ctx.run_dir / rung
    rdir.mkdir(parents=True, exist_ok=True)
    rcfg = rung_train_config(cfg, rung)
    torch.manual_seed(cfg.seed)  # every rung starts from the same seed, whatever ran before it
    model = build_rung(cfg, rung, data.features.shape[1])
    n_params = sum(p.numel() for p in model.parameters())
    if is_sequence_model(model):
        prep = UtteranceBatches(data, ctx.device)
        train = (data.utt_split["train"], data.utt_split["train"])
        val = (data.utt_split["validation"], data.utt_split["validation"])
        unit = f"{len(train[0]):,} utterances, {rcfg.batch_size} a batch"
    else:
        prep = FrameWindows(data, _context_of(model), ctx.device)
        tr_frames, va_frames = data.frames("train"), data.frames("validation")
        train = (tr_frames, data.labels[tr_frames])
        val = (va_frames, data.labels[va_frames])
        unit = f"{len(tr_frames):,} frames, {rcfg.batch_size} a batch"
    eval_sets = {"val": val} if len(val[0]) and data.labelled["validation"] else {}
    log(f"[{rung}] {type(model).__name__}: {n_params:,} parameters; {rcfg.epochs} epochs over {unit}")
    trainer = supervised_trainer(rcfg, model, rdir, train, prep, eval_sets, ctx.device, ctx.info, log,
                      eval_batch_size=32 if is_sequence_model(model) else 4096)
    if ctx.resume and list_checkpoints(rdir):
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit()
    session = time.perf_counter() - t0
    res: dict[str, Any] = {"rung": rung, "model": type(model).__name__, "parameters": n_params,
                           "model_config": dataclasses.asdict(model.cfg), "epochs": rcfg.epochs,
                           "batch_size": rcfg.batch_size, "lr": rcfg.lr,
                           "train_time_s": sum(float(r["epoch_time_s"]) for r in trainer.history),
                           "this_session_time_s": session}
    t1 = time.perf_counter()
    for split in ("validation", "test"):
        if not len(data.utt_split[split]):
            continue
        pred = predict(model, data, split, ctx.device, _context_of(model))
        if data.labelled[split]:
            res[split] = split_metrics(pred, data.labels[data.frames(split)])
        else:
            write_predictions(rdir / "prediction.csv", pred)
            res[f"{split}_predictions"] = "prediction.csv"
    res["eval_time_s"] = time.perf_counter() - t1
    write_json_atomic(rdir / "results.json", res)
    acc = {s: f"{100 * res[s]['acc']:.2f}%" for s in ("validation", "test") if s in res}
    log(f"[{rung}] " + ", ".join(f"{s} accuracy {a}" for s, a in acc.items()) + f"; trained in {res['train_time_s']:.0f} s")
    return res


def run(cfg: PhonemeConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every rung of ``--rungs`` in turn, evaluate each on validation and test, write the report."""
    _validate(cfg)
    log = ctx.log if ctx.info.is_main else (lambda _m: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    corpora, desc = load_corpora(cfg)
    data = prepare_data(cfg, corpora, desc)
    if ctx.info.is_main:
        write_json_atomic(ctx.run_dir / "data.json", data.info)
    i = data.info
    log(f"{i['dataset']}: {i['n_train_utterances']:,} train / {i['n_validation_utterances']:,} validation / "
        f"{i['n_test_utterances']:,} test utterances ({i['n_train_frames']:,} / {i['n_validation_frames']:,} / "
        f"{i['n_test_frames']:,} frames); {i['normalization']}; device {ctx.device}")
    results = {}
    for rung in cfg.rungs:
        done = ctx.run_dir / rung / "results.json"
        if ctx.resume and done.is_file():
            results[rung] = read_run_json(done)
            log(f"[{rung}] finished in an earlier session; kept")
            continue
        results[rung] = _train_rung(cfg, rung, data, ctx, log)
    if not ctx.info.is_main:
        return {}
    summary = {r: {k: v for k, v in res.items() if k not in ("validation", "test")} |
               {f"{s}_acc": res[s]["acc"] for s in ("validation", "test") if s in res} for r, res in results.items()}
    write_json_atomic(ctx.run_dir / "results.json", {"rungs": summary, "ladder_holds": ladder_holds(results)})
    path = report(ctx.run_dir)
    log(f"report: {path}")
    return summary


def ladder_holds(results: dict[str, dict[str, Any]], split: str = "test") -> bool | None:
    """Whether each rung's ``split`` accuracy beats the rung before it (None: fewer than two rungs with it)."""
    accs = [res[split]["acc"] for res in results.values() if split in res]
    if len(accs) < 2:
        return None
    return all(b > a for a, b in zip(accs, accs[1:]))


# ----------------------------------------------------------------------------------- eval
def _load_rung(run_dir: Path, cfg: PhonemeConfig, rung: str, input_dim: int, device: torch.device):
    return load_run_weights(build_rung(cfg, rung, input_dim), run_dir / rung / "model.safetensors", run_dir).to(device)


def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: frame accuracy of every trained rung of a run.

    Args:
        data: None (the run's own test split), a phoneme dataset name (its test split), or the course's
            ``libriphone/`` folder (its labelled validation split: HW2's test split has no labels).

    Returns:
        ``{"data": name, "n_frames": F, "<rung>_acc": accuracy, ...}``, also saved as ``eval/<name>.json``.

    Raises:
        UserError: no trained rung, an unknown dataset, or unreadable files.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    info = read_run_json(run_dir / "data.json")
    rungs = [r for r in cfg.rungs if (run_dir / r / "model.safetensors").is_file()]
    if not rungs:
        raise UserError(f"{run_dir} has no trained rung (no <rung>/model.safetensors); resume it with --resume {run_dir}")
    if data is None:
        ecfg, split = cfg, "test"
        name = f"{info['dataset']}-test"
    elif data in PHONEME_DATASETS:
        ecfg, split, name = dataclasses.replace(cfg, dataset=data, hw2_dir=None), "test", f"{data}-test"
    elif Path(data).is_dir():
        ecfg, split = dataclasses.replace(cfg, hw2_dir=str(data)), "validation"
        name = f"{Path(data).resolve().name}-validation"
    else:
        raise UserError(f"--data {data}: not a phoneme dataset ({', '.join(PHONEME_DATASETS)}) nor a libriphone/ folder")
    if ecfg.hw2_dir:
        corpora = {split: load_hw2_libriphone(Path(ecfg.hw2_dir), split)}
    else:
        corpora = {split: PHONEME_DATASETS[ecfg.dataset].load(split)}
    if corpora[split].labels is None:
        raise UserError(f"--data {data}: its {split} split has no labels to score against")
    stats = None if cfg.cmvn else tuple(info["stats"])
    d = prepare_data(ecfg, corpora, name, stats)
    metrics: dict[str, Any] = {"data": name, "split": split, "n_frames": corpora[split].n_frames}
    for rung in rungs:
        model = _load_rung(run_dir, cfg, rung, d.features.shape[1], device)
        metrics[f"{rung}_acc"] = split_metrics(predict(model, d, split, device, _context_of(model)),
                                               d.labels[d.frames(split)])["acc"]
    write_json_atomic(run_dir / "eval" / f"{name}.json", metrics)
    return metrics


# ----------------------------------------------------------------------------------- report
def _plot_ladder(results: dict[str, dict], path: Path) -> None:
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    rungs = list(results)
    x = np.arange(len(rungs))
    w = 0.27
    for j, (split, label) in enumerate((("validation", "validation (seen voices)"), ("test", "test (unseen voice)"))):
        vals = [100 * results[r][split]["acc"] if split in results[r] else np.nan for r in rungs]
        bars = ax.bar(x + (j - 1) * w, vals, w, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    course = [100 * HW2_BASELINES[r] for r in rungs]
    bars = ax.bar(x + w, course, w, label="course baseline (LibriSpeech)", color="lightgrey")
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, rungs)
    ax.set_ylabel("frame accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("HW2 ladder")
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its figures from the files of a run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    info = read_run_json(run_dir / "data.json")
    results = {r: read_run_json(run_dir / r / "results.json") for r in cfg.rungs
               if (run_dir / r / "results.json").is_file()}
    if not results:
        raise UserError(f"{run_dir} has no finished rung (no <rung>/results.json); resume it with --resume {run_dir}")
    _plot_ladder(results, run_dir / "ladder.png")
    curves = []
    for r in results:
        rows = read_metrics_csv(run_dir / r / "metrics.csv")
        if rows:
            plot_learning_curves(rows, run_dir / f"curves_{r}.png", title=f"{r}: {results[r]['model']}")
            curves.append(r)
    top = next((r for r in reversed(list(results)) if "test" in results[r] or "validation" in results[r]), None)
    cm_split = None
    if top is not None:
        cm_split = "test" if "test" in results[top] else "validation"
        plot_confusion_matrix(np.asarray(results[top][cm_split]["confusion_matrix"]), list(PHONES),
                              run_dir / "confusion_matrix.png", title=f"{top}, {cm_split}")

    def pct(res: dict, split: str) -> str:
        return f"{100 * res[split]['acc']:.2f}%" if split in res else "-"

    rows = []
    for r, res in results.items():
        mc = res["model_config"]
        what = (f"{mc['context']} frame(s), {mc['hidden_layers']} x {mc['hidden_dim']}"
                + (", BN" if mc.get("batch_norm") else "") + (f", dropout {mc['dropout']}" if mc.get("dropout") else "")
                if res["model"] == "FramewiseMLP" else
                f"bi-{mc['cell'].upper()} {mc['num_layers']} x {mc['hidden_size']}, dropout {mc['dropout']}")
        rows.append([r, what, f"{res['parameters']:,}", res["epochs"], pct(res, "validation"), pct(res, "test"),
                     f"{HW2_BASELINES[r]:.5f}", f"{res['train_time_s']:.0f} s"])
    holds = ladder_holds(results)
    holds_val = ladder_holds(results, "validation")
    lines = [
        f"# {NAME}: HW2's frame-wise phoneme classification ladder", "",
        f"ML2021/2022 HW2 (Hung-yi Lee). Data: {info['source']}. {info['n_train_utterances']:,} train / "
        f"{info['n_validation_utterances']:,} validation / {info['n_test_utterances']:,} test utterances "
        f"({info['n_train_frames']:,} / {info['n_validation_frames']:,} / {info['n_test_frames']:,} frames of 39 "
        f"MFCC features); {info['normalization']}; 41 classes.", "",
        "## The ladder", "",
        markdown_table(["rung", "model", "parameters", "epochs", "validation acc", "test acc",
                        "course baseline (LibriSpeech)", "training time"], rows), "",
        "The course's baselines were measured on LibriSpeech (read audiobooks, many speakers), which is not "
        "available offline; they are context, not targets. "
        + ("" if holds is None else f"On this data each rung beats the one below it on the test split: "
           f"**{'yes' if holds else 'no'}**")
        + ("" if holds_val is None else f" (validation: {'yes' if holds_val else 'no'})") + ".", "",
        markdown_image("accuracy of each rung", "ladder.png"), "",
    ]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        ev = [read_run_json(p) for p in evals]
        lines += ["## `deepnotes eval` results", "", markdown_table(
            ["data", "frames"] + list(results),
            [[e["data"], e["n_frames"]] + [f"{100 * e[f'{r}_acc']:.2f}%" if f"{r}_acc" in e else "-" for r in results]
             for e in ev]), ""]
    if cm_split:
        res = results[top][cm_split]
        worst = sorted(((rc, PHONES[k]) for k, rc in enumerate(res["recall"]) if rc is not None))[:8]
        lines += [f"## Confusion matrix ({top}, {cm_split})", "", markdown_image("confusion matrix", "confusion_matrix.png"), "",
                  "Classes recalled least: " + ", ".join(f"{p} {100 * rc:.1f}%" for rc, p in worst) + ".", ""]
    lines += ["## Learning curves", ""]
    for r in curves:
        lines += [markdown_image(f"{r} learning curves", f"curves_{r}.png"), ""]
    lines += ["## Configuration", "",
              markdown_table(["field", "value"], [[k, v] for k, v in read_run_json(run_dir / "config.json")["config"].items()]), ""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="HW2 ladder: frame MLP, 11-frame MLP, + batch norm and dropout, bidirectional LSTM; 41 phoneme classes",
    source="ML2021/2022 HW2 (framewise phoneme classification); EE-559 12-2 (LSTM)",
    default_dataset="phoneme-frames",
    metric="frame accuracy",
    config_cls=PhonemeConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
