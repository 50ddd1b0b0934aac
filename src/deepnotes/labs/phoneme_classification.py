"""Lab ``phoneme-classification``: HW2's frame-wise phoneme classification ladder (ML2021/2022).

Source: ML2021/2022 (Hung-yi Lee) HW2 (seed 002): classify every 10 ms frame (a 39-dim MFCC vector) into one of 41
phoneme classes; the hints give four baselines on the course's LibriSpeech data, each a change of the model: simple
0.45797 (the sample code), medium 0.69747 (concatenate n frames, add layers), strong 0.75028 (+ batch norm, dropout),
boss 0.82324 (sequence labelling with an RNN). The lab trains the four rungs of :mod:`deepnotes.models.framewise`
(by name, ``hw2-<rung>``) one after the other, each from the same seed and data order, and reports each one's frame
accuracy beside the course's number (context, not targets: LibriSpeech is not available offline).

Data: ``phoneme-frames`` (:mod:`deepnotes.data.phonemes`, split by speaker: six festival voices, kal, slt, us1, us3,
rab and don, for training and validation; three speakers never heard in training, ked, us2 (US) and en1 (British),
for the test) or the course's ``libriphone/`` files (``--hw2-dir``; its unlabelled test split gives
``<rung>/prediction.csv`` in Kaggle's ``Id,Class``); frame windows and padded utterance batches from
:mod:`deepnotes.data.frames`. The defaults keep the run near 20 minutes on a 2-core CPU (README.md). The run folder
holds data.json, ``<rung>/`` (metrics.csv, checkpoints/, model.safetensors, results.json), results.json and
report.md; ``--resume RUN`` skips finished rungs and continues an interrupted one.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from deepnotes.data.frames import FrameTable, IndexBatches, frame_table, predict_frames
from deepnotes.data.phonemes import N_PHONE_CLASSES, PHONEME_DATASETS, PHONES, FrameCorpus, load_hw2_libriphone
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import write_text_atomic
from deepnotes.metrics.speech import frame_metrics
from deepnotes.models.framewise import RUNGS, is_sequence_model
from deepnotes.models.registry import create_model
from deepnotes.report import (markdown_image, new_figure, plot_confusion_matrix, plot_learning_curves, read_metrics_csv,
                              save_figure)
from deepnotes.train import ClassificationTask, Trainer
from deepnotes.train.checkpoint import list_checkpoints
from deepnotes.train.config import TrainConfig, option

NAME = "phoneme-classification"

#: The course's baselines (HW2 hints, ML2022; LibriSpeech, Kaggle private leaderboard).
HW2_BASELINES: dict[str, float] = {"simple": 0.45797, "medium": 0.69747, "strong": 0.75028, "boss": 0.82324}
#: Each rung's model options (create_model keyword -> config field).
RUNG_OPTIONS: dict[str, dict[str, str]] = {
    "simple": {"hidden_dim": "simple_hidden"},
    "medium": {"context": "context", "hidden_dim": "medium_hidden", "num_layers": "medium_layers"},
    "strong": {"context": "context", "hidden_dim": "strong_hidden", "num_layers": "strong_layers", "dropout": "dropout"},
    "boss": {"cell": "rnn_cell", "hidden_size": "rnn_hidden", "num_layers": "rnn_layers", "dropout": "rnn_dropout",
             "fused": "fused_rnn"},
}


@dataclass(frozen=True)
class PhonemeConfig(TrainConfig):
    # Engine fields (epochs, batch size, optimizer, lr, schedule) apply to the MLP rungs; sized for ~20 min on 2 cores.
    epochs: int = option(1, "passes over the training frames (MLP rungs)")
    batch_size: int = option(512, "frames per update (MLP rungs), as HW2's sample code")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate (MLP rungs)")
    weight_decay: float = option(0.01, "decoupled weight decay on weight matrices")
    schedule: Literal["constant", "step", "cosine", "onecycle"] = option("cosine", "learning-rate schedule")
    warmup: float = option(0.05, "share of updates spent warming up the learning rate")
    dataset: str = option("phoneme-frames", "built dataset: phoneme-frames or phoneme-frames-small")
    hw2_dir: str | None = option(None, "the course's libriphone/ folder (train_labels.txt, train_split.txt, "
                                       "test_split.txt, feat/); read instead of --dataset")
    cmvn: bool = option(True, "normalize each utterance's features to zero mean, unit variance (off: global train stats)")
    limit_train: int = option(0, "use only N training utterances, spread evenly over the voices (0 = all)", range="[0, 1e8]")
    limit_eval: int = option(0, "use only N validation and N test utterances, spread evenly (0 = all)", range="[0, 1e8]")
    rungs: tuple[str, ...] = option(RUNGS, "rungs to train, in order (comma-separated)", nonempty=True)
    simple_hidden: int = option(256, "simple: width of its one hidden layer (the sample code's 256)", range="[1, 65536]")
    context: int = option(11, "medium, strong: frames per example, odd (11 = 5 each side, 429 inputs)", range="[1, 1001]")
    medium_hidden: int = option(512, "medium: hidden width", range="[1, 65536]")
    medium_layers: int = option(3, "medium: hidden layers", range="[1, 100]")
    strong_hidden: int = option(512, "strong: hidden width", range="[1, 65536]")
    strong_layers: int = option(4, "strong: hidden layers (each Linear, ReLU, BatchNorm1d, Dropout)", range="[1, 100]")
    dropout: float = option(0.25, "strong: dropout after each block", range="[0, 1)")
    rnn_cell: Literal["lstm", "gru"] = option("lstm", "boss: recurrent cell")
    rnn_hidden: int = option(128, "boss: state size of each direction", range="[1, 65536]")
    rnn_layers: int = option(2, "boss: stacked bidirectional layers", range="[1, 100]")
    rnn_dropout: float = option(0.2, "boss: dropout between layers and before the output layer", range="[0, 1)")
    rnn_epochs: int = option(5, "boss: passes over the training utterances", range="[1, 100000]")
    rnn_batch_size: int = option(16, "boss: utterances per update", range="[1, 1000000]")
    rnn_lr: float = option(2e-3, "boss: peak learning rate", range="(0, inf)")
    fused_rnn: bool = option(True, "boss: torch.nn.LSTM/GRU kernels (off: the readable Python loop, much slower)")

    def check(self) -> None:
        super().check()
        if not self.hw2_dir and self.dataset not in PHONEME_DATASETS:
            raise UserError(f"--dataset must be one of {', '.join(PHONEME_DATASETS)} (or give --hw2-dir), "
                            f"got {self.dataset!r}")
        if any(r not in RUNGS for r in self.rungs) or len(set(self.rungs)) != len(self.rungs):
            raise UserError(f"--rungs must be distinct names among {','.join(RUNGS)}, got {','.join(self.rungs)}")
        if self.context % 2 == 0:
            raise UserError("--context must be a positive odd number")


PRESETS: dict[str, dict[str, Any]] = {
    # A seconds-long smoke run of the whole pipeline on the 36-utterance build.
    "fast": {"dataset": "phoneme-frames-small", "epochs": 1, "batch_size": 256, "rnn_epochs": 2, "rnn_batch_size": 4,
             "simple_hidden": 32, "medium_hidden": 32, "medium_layers": 2, "strong_hidden": 32, "strong_layers": 2,
             "rnn_hidden": 16, "rnn_layers": 1, "context": 5, "threads": 1},
}


def load_corpora(cfg: PhonemeConfig, splits: tuple[str, ...] = ("train", "validation", "test")) -> dict[str, FrameCorpus]:
    """The corpora of ``--dataset`` or ``--hw2-dir``, each of ``--limit-*`` utterances spread evenly (0 = all)."""
    if cfg.hw2_dir:
        corpora = {s: load_hw2_libriphone(Path(cfg.hw2_dir), s) for s in splits}
    else:
        corpora = {s: PHONEME_DATASETS[cfg.dataset].load(s) for s in splits}
    for s, c in corpora.items():
        n = cfg.limit_train if s == "train" else cfg.limit_eval
        if n and n < len(c):
            corpora[s] = c.subset(np.linspace(0, len(c) - 1, n).round().astype(int).tolist())
    return corpora


def build_rung(cfg: PhonemeConfig, rung: str, input_dim: int) -> torch.nn.Module:
    """The rung's model by name (``hw2-<rung>``) with the lab's flags."""
    return create_model(f"hw2-{rung}", in_channels=input_dim, **{k: getattr(cfg, f) for k, f in RUNG_OPTIONS[rung].items()})


def _predict(model: torch.nn.Module, table: FrameTable, split: str, device: torch.device) -> torch.Tensor:
    return predict_frames(model, table, split, device, getattr(model.cfg, "context", 1), is_sequence_model(model))


def _train_rung(cfg: PhonemeConfig, rung: str, table: FrameTable, ctx: RunContext, log) -> dict[str, Any]:
    rdir = ctx.run_dir / rung
    rdir.mkdir(parents=True, exist_ok=True)
    # the boss rung takes the --rnn-* epochs, batch size and lr
    rcfg = dataclasses.replace(cfg, epochs=cfg.rnn_epochs, batch_size=cfg.rnn_batch_size, lr=cfg.rnn_lr) \
        if rung == "boss" else cfg
    torch.manual_seed(cfg.seed)  # every rung starts from the same seed, whatever ran before it
    model = build_rung(cfg, rung, table.features.shape[1])
    n_params = sum(p.numel() for p in model.parameters())
    if is_sequence_model(model):  # whole utterances, or windows of frames
        rows, unit, eval_bs = table.utt_split, "utterances", 32
        make = lambda u: table.utterance_batch(u, ctx.device)  # noqa: E731
    else:
        rows, unit, eval_bs = {s: table.frames(s) for s in ("train", "validation")}, "frames", 4096
        make = lambda i: table.window_batch(i, model.cfg.context, ctx.device)  # noqa: E731
    evals = {"val": IndexBatches(rows["validation"], make, eval_bs, info=ctx.info, shuffle=False)} \
        if len(rows["validation"]) and table.labelled["validation"] else {}
    log(f"[{rung}] {type(model).__name__}: {n_params:,} parameters; {rcfg.epochs} epochs over "
        f"{len(rows['train']):,} {unit}, {rcfg.batch_size} a batch")
    trainer = Trainer(rcfg, ClassificationTask(model, label_smoothing=rcfg.label_smoothing), rdir,
                      IndexBatches(rows["train"], make, rcfg.batch_size, rcfg.seed, ctx.info), evals, ctx.device,
                      ctx.info, log)
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
        if not len(table.utt_split[split]):
            continue
        pred = _predict(model, table, split, ctx.device)
        if table.labelled[split]:
            res[split] = frame_metrics(pred, table.labels[table.frames(split)], N_PHONE_CLASSES)
        else:  # HW2's Kaggle file: Id,Class, one line per test frame
            write_text_atomic(rdir / "prediction.csv",
                              "Id,Class\n" + "".join(f"{i},{int(c)}\n" for i, c in enumerate(pred.tolist())))
            res[f"{split}_predictions"] = "prediction.csv"
    res["eval_time_s"] = time.perf_counter() - t1
    Run(rdir).write_json("results.json", res)
    acc = {s: f"{100 * res[s]['acc']:.2f}%" for s in ("validation", "test") if s in res}
    log(f"[{rung}] " + ", ".join(f"{s} accuracy {a}" for s, a in acc.items()) + f"; trained in {res['train_time_s']:.0f} s")
    return res


def run(cfg: PhonemeConfig, ctx: RunContext) -> dict[str, Any]:
    """Train every rung of ``--rungs`` in turn, evaluate each on validation and test, write the report."""
    log = ctx.main_log
    corpora = load_corpora(cfg)
    table = frame_table(corpora, cfg.cmvn)
    i = {"source": f"the course's HW2 files in {cfg.hw2_dir} (validation: the sample code's 20 % of train_split.txt)"
         if cfg.hw2_dir else f"{cfg.dataset} ({PHONEME_DATASETS[cfg.dataset].cache_dir()}): "
         f"{PHONEME_DATASETS[cfg.dataset].description}",
         "dataset": cfg.dataset if not cfg.hw2_dir else "hw2", "classes": list(PHONES),
         "normalization": "per-utterance CMVN" if cfg.cmvn else "global train mean/std", "stats": table.stats,
         "labelled": table.labelled, **{f"n_{s}_utterances": len(c) for s, c in corpora.items()},
         **{f"n_{s}_frames": c.n_frames for s, c in corpora.items()}}
    if table.labelled["train"]:
        counts = torch.bincount(corpora["train"].labels, minlength=N_PHONE_CLASSES)
        i["train_class_share"] = (counts.double() / counts.sum()).tolist()
    if ctx.info.is_main:
        Run(ctx.run_dir).write_json("data.json", i)
    log(f"{i['dataset']}: {i['n_train_utterances']:,} train / {i['n_validation_utterances']:,} validation / "
        f"{i['n_test_utterances']:,} test utterances ({i['n_train_frames']:,} / {i['n_validation_frames']:,} / "
        f"{i['n_test_frames']:,} frames); {i['normalization']}; device {ctx.device}")
    results = {}
    for rung in cfg.rungs:
        done = ctx.run_dir / rung / "results.json"
        if ctx.resume and done.is_file():
            results[rung] = Run(ctx.run_dir).read_json(f"{rung}/results.json")
            log(f"[{rung}] finished in an earlier session; kept")
            continue
        results[rung] = _train_rung(cfg, rung, table, ctx, log)
    if not ctx.info.is_main:
        return {}
    summary = {r: {k: v for k, v in res.items() if k not in ("validation", "test")} |
               {f"{s}_acc": res[s]["acc"] for s in ("validation", "test") if s in res} for r, res in results.items()}
    Run(ctx.run_dir).write_json("results.json", {"rungs": summary, "ladder_holds": ladder_holds(results)})
    log(f"report: {report(Run(ctx.run_dir))}")
    return summary


def ladder_holds(results: dict[str, dict[str, Any]], split: str = "test") -> bool | None:
    """Whether each rung's ``split`` accuracy beats the rung before it (None: fewer than two rungs with it)."""
    accs = [res[split]["acc"] for res in results.values() if split in res]
    return all(b > a for a, b in zip(accs, accs[1:])) if len(accs) >= 2 else None


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: frame accuracy of every trained rung on the run's own test split (``data`` None), a
    phoneme dataset's test split, or the course's ``libriphone/`` folder (its labelled validation split);
    ``{"data": name, "split", "n_frames", "<rung>_acc", ...}``, also saved as ``eval/<name>.json``.

    Raises:
        UserError: no trained rung, an unknown dataset, or unreadable files.
    """
    cfg, info = run.config, run.read_json("data.json")
    rungs = [r for r in cfg.rungs if (run / r / "model.safetensors").is_file()]
    if not rungs:
        raise UserError(f"{run.path} has no trained rung (no <rung>/model.safetensors); resume it with --resume {run.path}")
    if data is None:
        ecfg, split, name = cfg, "test", f"{info['dataset']}-test"
    elif data in PHONEME_DATASETS:
        ecfg, split, name = dataclasses.replace(cfg, dataset=data, hw2_dir=None), "test", f"{data}-test"
    elif Path(data).is_dir():
        ecfg, split = dataclasses.replace(cfg, hw2_dir=str(data)), "validation"
        name = f"{Path(data).resolve().name}-validation"
    else:
        raise UserError(f"--data {data}: not a phoneme dataset ({', '.join(PHONEME_DATASETS)}) nor a libriphone/ folder")
    corpora = load_corpora(dataclasses.replace(ecfg, limit_train=0, limit_eval=0), (split,))
    if corpora[split].labels is None:
        raise UserError(f"--data {data}: its {split} split has no labels to score against")
    table = frame_table(corpora, cfg.cmvn, None if cfg.cmvn else tuple(info["stats"]))
    metrics: dict[str, Any] = {"data": name, "split": split, "n_frames": corpora[split].n_frames}
    for rung in rungs:
        model = run.load_weights(build_rung(cfg, rung, table.features.shape[1]), f"{rung}/model.safetensors").to(device)
        metrics[f"{rung}_acc"] = frame_metrics(_predict(model, table, split, device), table.labels[table.frames(split)],
                                               N_PHONE_CLASSES)["acc"]
    run.write_eval(name, metrics)
    return metrics


def _plot_ladder(results: dict[str, dict], path: Path) -> None:
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    rungs = list(results)
    x = np.arange(len(rungs))
    w = 0.27
    for j, (split, label) in enumerate((("validation", "validation (seen voices)"), ("test", "test (unseen voices)"))):
        vals = [100 * results[r][split]["acc"] if split in results[r] else np.nan for r in rungs]
        ax.bar_label(ax.bar(x + (j - 1) * w, vals, w, label=label), fmt="%.1f", fontsize=7)
    course = [100 * HW2_BASELINES[r] for r in rungs]
    ax.bar_label(ax.bar(x + w, course, w, label="course baseline (LibriSpeech)", color="lightgrey"), fmt="%.1f", fontsize=7)
    ax.set_xticks(x, rungs)
    ax.set_ylabel("frame accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("HW2 ladder")
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def report(run: Run) -> Path:
    """Render ``report.md`` and its figures from the files of a run folder; return the report's path."""
    cfg, info = run.config, run.read_json("data.json")
    results = {r: run.read_json(f"{r}/results.json") for r in cfg.rungs if (run / r / "results.json").is_file()}
    if not results:
        raise UserError(f"{run.path} has no finished rung (no <rung>/results.json); resume it with --resume {run.path}")
    _plot_ladder(results, run / "ladder.png")

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
    holds, holds_val = ladder_holds(results), ladder_holds(results, "validation")
    rep = Report(run, f"{NAME}: HW2's frame-wise phoneme classification ladder",
                 f"ML2021/2022 HW2 (Hung-yi Lee). Data: {info['source']}. {info['n_train_utterances']:,} train / "
                 f"{info['n_validation_utterances']:,} validation / {info['n_test_utterances']:,} test utterances "
                 f"({info['n_train_frames']:,} / {info['n_validation_frames']:,} / {info['n_test_frames']:,} frames "
                 f"of 39 MFCC features); {info['normalization']}; 41 classes.")
    rep.results(rows, ["rung", "model", "parameters", "epochs", "validation acc", "test acc",
                       "course baseline (LibriSpeech)", "training time"],
                note="The course's baselines were measured on LibriSpeech (read audiobooks, many speakers), which is "
                     "not available offline; they are context, not targets. "
                     + ("" if holds is None else "On this data each rung beats the one below it on the test split: "
                        f"**{'yes' if holds else 'no'}**")
                     + ("" if holds_val is None else f" (validation: {'yes' if holds_val else 'no'})") + ".\n\n"
                     + markdown_image("accuracy of each rung", "ladder.png"))
    top = next((r for r in reversed(list(results)) if "test" in results[r] or "validation" in results[r]), None)
    if top is not None:
        split = "test" if "test" in results[top] else "validation"
        res = results[top][split]
        plot_confusion_matrix(np.asarray(res["confusion_matrix"]), list(PHONES), run / "confusion_matrix.png",
                              title=f"{top}, {split}")
        worst = sorted(((rc, PHONES[k]) for k, rc in enumerate(res["recall"]) if rc is not None))[:8]
        rep.section(f"Confusion matrix ({top}, {split})", markdown_image("confusion matrix", "confusion_matrix.png"),
                    "Classes recalled least: " + ", ".join(f"{p} {100 * rc:.1f}%" for rc, p in worst) + ".")
    curves = []
    for r in results:
        if metrics := read_metrics_csv(run / r / "metrics.csv"):
            plot_learning_curves(metrics, run / f"curves_{r}.png", title=f"{r}: {results[r]['model']}")
            curves.append(markdown_image(f"{r} learning curves", f"curves_{r}.png"))
    rep.section("Learning curves", *curves)
    return rep.write(eval_row=lambda e: {"data": e["data"], "frames": e["n_frames"], **{
        r: f"{100 * e[f'{r}_acc']:.2f}%" if f"{r}_acc" in e else "-" for r in results}})


LAB = Lab(name=NAME, default_dataset="phoneme-frames", metric="frame accuracy",
            summary="HW2 ladder: frame MLP, 11-frame MLP, + batch norm and dropout, bidirectional LSTM; 41 phoneme classes",
            source="ML2021/2022 HW2 (framewise phoneme classification); EE-559 12-2 (LSTM)",
            config_cls=PhonemeConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
