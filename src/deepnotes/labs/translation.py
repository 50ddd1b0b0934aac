"""Lab ``translation``: English -> Chinese with an RNN seq2seq with attention and a Transformer; greedy vs beam; BLEU.

Source: ML2021/2022 homework 5 "Machine Translation" (sentencepiece subwords, BLEU; its "simple" baseline an RNN
seq2seq, its "strong" one a Transformer) and the lectures "Transformer" and the seq2seq tips (teacher forcing; beam
search for tasks with one right answer). This module is config, presets and wiring; the technique is in the library:

1. Data: :func:`deepnotes.data.translation.load_translation_data` (ui-translations split by package, or ``--data``
   TED2020-format files split at random; a joint BPE vocabulary of the training split; ``--protect-spans``; the
   ``--max-len`` filter), batched by length by :class:`~deepnotes.data.translation.TokenBatches` in an order drawn
   from (seed, epoch), ``--bpe-dropout`` by :func:`~deepnotes.data.translation.bpe_dropout_batch`.
2. Each model of ``--models`` (:func:`~deepnotes.models.seq2seq.model_from_flags`, through ``create_model``) is trained by
   :class:`deepnotes.train.Trainer` on a :class:`~deepnotes.models.seq2seq.Seq2SeqTask` (label-smoothed
   cross-entropy, AdamW; teacher forcing, or :class:`~deepnotes.nn.decoding.ScheduledSampler`; ``--ema-decay``: a
   running form of the Transformer paper's checkpoint averaging) in ``models/<name>/``, so ``--resume`` continues
   the interrupted model and keeps the finished ones.
3. Beam search's length penalty is chosen on validation BLEU (:func:`deepnotes.metrics.translation.choose_length_penalty`);
   the test set is decoded greedily and by beam search (:class:`~deepnotes.models.seq2seq.Translator`) and scored
   (:mod:`deepnotes.metrics.translation`: sacrebleu BLEU and chrF, placeholders kept, by length, looping outputs).
   ``deepnotes sample`` translates with the model of the best validation score (never the test set's).

Why this module is over 400 lines: one run trains and compares two models (each resumable in its own folder),
chooses beam search's length penalty on validation, scores the test split and other files, translates prompts, and
renders a report of six sections and three figures from the per-model results, beside a config of 53 flags.
"""

from __future__ import annotations

import functools
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepnotes.data.subword import BPEDropout
from deepnotes.data.translation import (BOS_ID, DEFAULT_TEST_PACKAGES, DEFAULT_VAL_PACKAGES, PAD_ID, CorpusSpec,
                                        SubwordTokenizer, TokenBatches, bpe_dropout_batch, load_translation_data,
                                        read_eval_pairs, read_sentences, source_lengths, write_sentences)
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunConfig, RunContext, flag, option
from deepnotes.metrics.translation import (best_on_validation, choose_length_penalty, length_breakdown,
                                          placeholder_accuracy)
from deepnotes.models.language import count_parameters
from deepnotes.models.seq2seq import Seq2SeqTask, Translator, copy_rates, model_from_flags
from deepnotes.nn.decoding import ScheduledSampler
from deepnotes.optim import NoamSchedule, WarmupDecay
from deepnotes.report import markdown_table, new_figure, plot_learning_curves, read_metrics_csv, save_figure
from deepnotes.train import Trainer, TrainConfig
from deepnotes.train.checkpoint import CHECKPOINT_DIR

NAME = "translation"
MODELS = ("rnn", "transformer")
MODEL_LABELS = {"rnn": "RNN seq2seq + attention (HW5 simple)", "transformer": "Transformer (HW5 strong)"}
DECODERS = ("greedy", "beam")
HW5_BASELINES = ("HW5's published baselines (BLEU on its TED2020 EN->zh-TW test set): not given in the notes "
                 "(the course notes in shared/seeds name homework 5 \"Machine Translation\" and BLEU, but no "
                 "baseline numbers). They would not be comparable anyway: other corpus, other domain, other script.")


COUNT, SIZE, LAYERS, PROB, NONNEG = "[0, 1000000000]", "[1, 1000000]", "[1, 1000]", "[0, 1)", "[0, inf)"


@dataclass(frozen=True)
class TranslationConfig(RunConfig):
    """The lab's flags (``deepnotes run translation --help``); each model's engine config is :func:`_train_config`."""

    models: tuple[str, ...] = option(MODELS, "models to train and compare, from: rnn, transformer", nonempty=True)
    data: str = option("", "TED2020-format files PREFIX.en / PREFIX.zh instead of ui-translations (random split)")
    val_packages: tuple[str, ...] = option(DEFAULT_VAL_PACKAGES, "ui-translations packages held out for validation")
    test_packages: tuple[str, ...] = option(DEFAULT_TEST_PACKAGES, "ui-translations packages held out for test")
    val_fraction: float = option(0.05, "with --data: share of the pairs held out for validation", range="(0, 0.5)")
    test_fraction: float = option(0.1, "with --data: share of the pairs held out for test", range="(0, 0.5)")
    limit_train: int = option(0, "train on a seeded subset of N training pairs (0 = all)", range=COUNT)
    limit_val: int = option(0, "validate on a seeded subset of N validation pairs (0 = all)", range=COUNT)
    max_test_sentences: int = option(0, "score a fixed seeded subset of N test pairs (0 = all)", range=COUNT)
    vocab_size: int = option(5000, "joint sentencepiece BPE vocabulary size (both languages)", range="[300, 1000000]")
    character_coverage: float = option(0.9995, "sentencepiece character coverage (rarer ones: bytes)", range="(0, 1]")
    max_len: int = option(64, "drop train/val pairs over N subword tokens a side, test pairs by source", range=SIZE)
    epochs: int = option(16, "passes over the training pairs, for every model", range="[1, 100000]")
    bpe_dropout: float = option(0.0, "BPE-dropout: probability of skipping each merge in training (0 = off)", range=PROB)
    min_teacher_forcing_ratio: float = option(1.0, "scheduled sampling: gold-input probability at the last update "
                                              "(1 = plain teacher forcing)", range="[0, 1]")
    max_tokens: int = option(1000, "padded tokens per batch (fairseq --max-tokens)", range="[1, 100000000]")
    schedule: Literal["cosine", "noam"] = option("cosine", "learning-rate decay after the linear warm-up")
    warmup: float = option(0.1, "share of the updates warming up the learning rate", range="(0, 1)")
    weight_decay: float = option(0.01, "AdamW's decoupled weight decay on weight matrices", range="[0, 10]")
    label_smoothing: float = option(0.1, "label smoothing of the cross-entropy (HW5: 0.1)", range=PROB)
    grad_clip: float = option(1.0, "clip the global gradient norm to this value (0 disables)", range=NONNEG)
    ema_decay: float = option(0.0, "decay of a weight average validated, decoded and saved (0 = off)", range=PROB)
    dropout: float = option(0.1, "dropout of both models", range=PROB)
    rnn_lr: float = option(2e-3, "peak learning rate of the RNN", range="(0, inf)")
    rnn_embedding_dim: int = option(128, "RNN token embedding size", range=SIZE)
    rnn_hidden_size: int = option(128, "RNN encoder hidden size per direction (the decoder's: twice)", range=SIZE)
    rnn_layers: int = option(1, "GRU layers of the RNN encoder and decoder", range=LAYERS)
    transformer_lr: float = option(3e-3, "peak learning rate of the Transformer", range="(0, inf)")
    d_model: int = option(128, "Transformer model size", range=SIZE)
    n_heads: int = option(4, "Transformer attention heads", range=LAYERS)
    encoder_layers: int = option(4, "Transformer encoder layers", range=LAYERS)
    decoder_layers: int = option(4, "Transformer decoder layers", range=LAYERS)
    dim_feedforward: int = option(512, "Transformer feed-forward hidden size", range=SIZE)
    norm_first: bool = option(True, "pre-norm Transformer layers (off: post-norm, as the paper)")
    copy: tuple[str, ...] = option(MODELS, "models given a copy mechanism (pointer-generator); \"\" = none")
    protect_spans: bool = option(False, "placeholders, options and numbers as sentinel tokens, restored in the outputs")
    copy_continuation: tuple[str, ...] = option((), "models whose copy attention favours the position after the last "
                                                "copied one (needs --copy)")
    selective_read: bool = option(False, "Transformer: CopyNet's selective read (needs --copy)")
    beam_size: int = option(5, "beams per sentence of beam search", range=LAYERS)
    no_repeat_ngram_size: int = option(0, "beam search: no output n-gram of N tokens twice (0 = off)", range="[0, 1000]")
    length_penalty: float = option(1.0, "GNMT length-penalty alpha when none is chosen on validation", range=NONNEG)
    length_penalty_grid: tuple[float, ...] = option((0.6, 1.0, 1.4, 1.6, 1.8, 2.0), "alphas tried on validation "
                                                    "(empty: --length-penalty)", range=NONNEG)
    coverage_penalty: float = option(0.0, "beta of GNMT's coverage penalty in beam search (0 = none)", range=NONNEG)
    val_bleu_sentences: int = option(500, "validation sentences decoded to choose alpha (0 = none)", range=COUNT)
    max_len_a: float = option(1.2, "decode at most a * |source| + b tokens: a", range="[0, 1000]")
    max_len_b: int = option(10, "decode at most a * |source| + b tokens: b", range=SIZE)
    decode_batch_size: int = option(64, "test sentences decoded together", range=SIZE)
    n_samples: int = option(10, "sample translations shown in the report", range=COUNT)
    cpu_bf16: Literal["auto", "on", "off"] = option("off", "bfloat16 autocast when training on the CPU")
    fused: bool = option(True, "fused kernels for the GRUs, attention and LayerNorm (off: the readable paths, "
                         "tested equal)")

    def check(self) -> None:
        for name in ("models", "copy", "copy_continuation"):
            for m in getattr(self, name):
                if m not in MODELS:
                    raise UserError(f"{flag(name)}: unknown model {m!r}; choose from {', '.join(MODELS)}")
        if len(set(self.models)) != len(self.models):
            raise UserError("--models: a model is named twice")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise UserError("--val-fraction and --test-fraction must sum below 0.9")
        if self.selective_read and "transformer" in self.models and "transformer" not in self.copy:
            raise UserError("--selective-read reads where the Transformer copied from; add transformer to --copy")
        if self.coverage_penalty > 0 and "transformer" in self.models and "transformer" not in self.copy:
            raise UserError("--coverage-penalty reads the Transformer's copy attention; add transformer to --copy or "
                            "set --coverage-penalty 0")
        for m in self.copy_continuation:
            if m not in self.copy:
                raise UserError(f"--copy-continuation {m}: the term belongs to the copy attention; add {m} to --copy "
                                f"(now {','.join(self.copy) or 'empty'})")
        if self.d_model % self.n_heads:
            raise UserError(f"--d-model {self.d_model} must be divisible by --n-heads {self.n_heads}")


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: 400 training pairs, a 1,500-piece vocabulary, tiny models, 2 epochs, 40 test sentences.
    "fast": {"limit_train": 400, "limit_val": 60, "max_test_sentences": 40, "vocab_size": 1500, "epochs": 2,
             "max_tokens": 600, "rnn_embedding_dim": 32, "rnn_hidden_size": 32, "d_model": 32, "n_heads": 2,
             "encoder_layers": 1, "decoder_layers": 1, "dim_feedforward": 64, "beam_size": 3, "n_samples": 5,
             "max_len_b": 5, "val_bleu_sentences": 30},
}


# ----------------------------------------------------------------------------------- wiring
def _train_config(name: str, cfg: TranslationConfig) -> TrainConfig:
    return TrainConfig(epochs=cfg.epochs, optimizer="adamw", lr=cfg.rnn_lr if name == "rnn" else cfg.transformer_lr,
                       momentum=0.9, weight_decay=cfg.weight_decay, schedule="cosine", warmup=cfg.warmup,
                       grad_clip=cfg.grad_clip, label_smoothing=cfg.label_smoothing, ema_decay=cfg.ema_decay,
                       cpu_bf16=cfg.cpu_bf16, seed=cfg.seed, device=cfg.device, progress=cfg.progress)


def make_lr_schedule(name: str, cfg: TranslationConfig, total_steps: int):
    """Linear warm-up over ``--warmup`` of the updates, then cosine decay to 0 or Noam's 1/sqrt(step) decay (its
    factor set so that it peaks at the model's learning rate)."""
    lr = _train_config(name, cfg).lr
    if cfg.schedule == "noam":
        w = max(1, int(round(cfg.warmup * total_steps)))
        d = cfg.d_model if name == "transformer" else 2 * cfg.rnn_hidden_size
        return NoamSchedule(d_model=d, warmup=w, factor=lr * math.sqrt(d * w))
    return WarmupDecay(lr, warmup_fraction=cfg.warmup, decay="cosine")


def _train_one(name: str, cfg: TranslationConfig, data, ctx: RunContext) -> dict[str, Any]:
    folder, log = ctx.run_dir / "models" / name, lambda m: ctx.log(f"[{name}] {m}")
    resuming = ctx.resume and (folder / CHECKPOINT_DIR).is_dir()
    if folder.exists() and not resuming:  # an unfinished model without a checkpoint: start it again
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = model_from_flags(name, cfg, data.tokenizer.vocab_size).to(ctx.device)
    dropout, sampling = cfg.bpe_dropout > 0, cfg.min_teacher_forcing_ratio < 1
    train = TokenBatches(data.train, cfg.max_tokens, cfg.seed, data.train_text if dropout else None)
    val = TokenBatches(data.val, cfg.max_tokens, cfg.seed)
    task = Seq2SeqTask(model, cfg.label_smoothing,
                       ScheduledSampler(cfg.min_teacher_forcing_ratio, BOS_ID, PAD_ID) if sampling else None,
                       functools.partial(bpe_dropout_batch, bpe=BPEDropout.from_tokenizer(data.tokenizer),
                                         p=cfg.bpe_dropout) if dropout else None)
    trainer = Trainer(_train_config(name, cfg), task, folder, train, {"val": val}, ctx.device, ctx.info,
                      lambda m: ctx.log(f"  [{name}] {m}"),
                      lr_schedule=make_lr_schedule(name, cfg, len(train) * cfg.epochs))
    label = MODEL_LABELS[name] + "".join(text for on, text in [
        (name in cfg.copy, " + copy (pointer-generator)"), (name in cfg.copy_continuation, " + copy continuation"),
        (name == "transformer" and cfg.selective_read, " + selective read"),
        (dropout, f" + BPE-dropout {cfg.bpe_dropout:g}"),
        (sampling, f" + scheduled sampling (teacher forcing 1 -> {cfg.min_teacher_forcing_ratio:g})")] if on)
    log(f"{label}: {count_parameters(model):,} parameters; {len(train)} batches of <= {cfg.max_tokens} tokens "
        f"x {cfg.epochs} epochs")
    if resuming:
        trainer.resume()
    trainer.fit()
    train_time = sum(float(r["epoch_time_s"]) for r in trainer.history)
    gate = copy_rates(model, val, ctx.device)
    log(f"trained in {train_time:.0f}s" + ("" if gate is None else f"; copy probability 1 - p_gen on validation "
        f"target tokens {_pct(gate['in_source'])} if in the source, else {_pct(gate['not_in_source'])}"))
    tr = Translator.of(model, data.tokenizer, ctx.device, cfg)
    alpha, val_scores = choose_length_penalty(functools.partial(tr.decode, data.val_src), data.val_src, data.val_ref,
                                              cfg.length_penalty_grid, cfg.length_penalty)
    if val_scores is not None:
        log(f"validation BLEU on {val_scores['n']} sentences: greedy {val_scores['greedy']['bleu']:.2f}; beam "
            f"{cfg.beam_size} by length-penalty alpha: " + ", ".join(f"{a} {m['bleu']:.2f}" for a, m in
                                                                     val_scores["beam"].items()) + f"; chose {alpha:g}")
    metrics, outputs = tr.scores(data.test_src, data.test_ref, alpha)
    for decoder, hyps in outputs.items():
        write_sentences(folder / f"test.{decoder}.zh", hyps)
    last = trainer.history[-1]
    result = {"model": name, "label": label, "parameters": count_parameters(model), "updates": trainer.step,
              "train_time_s": train_time, "final_train_loss": last["train_loss"], "final_val_loss": last["val_loss"],
              "final_val_acc": last["val_acc"], "copy_gate": gate, "length_penalty": alpha, "val": val_scores,
              "test": metrics}
    Run(ctx.run_dir).write_json(f"models/{name}/result.json", result)
    shutil.rmtree(folder / CHECKPOINT_DIR, ignore_errors=True)  # model.safetensors and result.json are kept
    for decoder, m in metrics.items():
        log(f"{decoder}: BLEU {m['bleu']:.2f}  chrF {m['chrf']:.1f}  placeholders {_pct(m['placeholder_acc'])}  "
            f"({m['time_s']:.1f}s, {m['sentences_per_s']:.1f} sentences/s)")
    return result


def run(cfg: TranslationConfig, ctx: RunContext) -> dict[str, Any]:
    """Train each model (skipping those a resumed run finished), score them on the test split, write the report."""
    if ctx.info.enabled:
        raise UserError("the translation lab trains its models one after another in one process; run it without torchrun")
    for path in (cfg.data + ".en", cfg.data + ".zh") if cfg.data else ():
        if not Path(path).is_file():
            raise UserError(f"--data {cfg.data}: {path} is missing; give the prefix of a pair of TED2020-format files "
                            f"PREFIX.en and PREFIX.zh")
    out, t0 = Run(ctx.run_dir), time.perf_counter()
    data = load_translation_data(CorpusSpec.of(cfg), ctx.run_dir, reuse_tokenizer=ctx.resume)
    out.write_json("data.json", data.info)
    write_sentences(out / "test.en", data.test_src)
    write_sentences(out / "test.zh", data.test_ref)
    a = data.info["after_length_filter"]
    ctx.log(f"{data.info['dataset']}: {a['train']:,} train / {a['val']:,} val pairs after the length filter, "
            f"{len(data.test_src):,} test pairs scored; joint BPE vocabulary {data.info['vocab_size']:,} "
            f"({time.perf_counter() - t0:.1f}s); device {ctx.device}")
    results = {}
    for name in cfg.models:
        if ctx.resume and (out / "models" / name / "result.json").is_file():
            results[name] = out.read_json(f"models/{name}/result.json")
            ctx.log(f"[{name}] already finished, kept")
        else:
            results[name] = _train_one(name, cfg, data, ctx)
    ref_acc, n_ph = placeholder_accuracy(data.test_src, data.test_ref)
    out.write_json("results.json", summary := {
        "models": results, "reference_placeholder_acc": ref_acc, "n_test": len(data.test_src),
        "n_test_with_placeholders": n_ph, "wall_time_s": time.perf_counter() - t0})
    ctx.log(f"report: {report(out)}")
    return summary


# ----------------------------------------------------------------------------------- eval, sample
def _finished(run: Run, cfg: TranslationConfig, device: torch.device) -> tuple[SubwordTokenizer, dict[str, Translator]]:
    """The run's tokenizer and a translator per finished model (its saved weights on ``device``, in eval mode)."""
    if not (run / "spm.model").is_file():
        raise UserError(f"{run / 'spm.model'} is missing; is {run.path} a finished translation run?")
    names = [m for m in cfg.models if (run / "models" / m / "result.json").is_file()]
    if not names:
        raise UserError(f"{run.path} has no finished model; resume it with --resume {run.path}")
    tok = SubwordTokenizer.load(run / "spm.model")
    load = lambda m: run.load_weights(model_from_flags(m, cfg, tok.vocab_size), f"models/{m}/model.safetensors")  # noqa: E731
    return tok, {m: Translator.of(load(m).to(device).eval(), tok, device, cfg) for m in names}


def _alpha(run: Run, name: str, cfg: TranslationConfig) -> float:
    """The alpha a finished model's test decoding used (chosen on validation), else ``--length-penalty``."""
    return float(run.read_json(f"models/{name}/result.json").get("length_penalty", cfg.length_penalty))


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: BLEU, chrF and placeholders kept of every finished model, greedy and beam, on the run's
    scored test sentences (``data`` None) or on TED2020-format files ``data.en`` / ``data.zh`` (pairs with an
    empty side or a source over ``--max-len`` tokens skipped); saved as ``eval/<name>.json``, outputs in ``eval/<name>/``.

    Raises:
        UserError: not a finished run of this lab, unreadable or misaligned files.
    """
    cfg = run.config
    tok, models = _finished(run, cfg, device)
    if data is None:
        name, sources, refs, skipped = "test", read_sentences(run / "test.en"), read_sentences(run / "test.zh"), 0
        if not sources or len(sources) != len(refs):
            raise UserError(f"{run.path}/test.en and test.zh are missing or differ in length; re-run the lab")
    else:
        kept, skipped = read_eval_pairs(data, tok, cfg.max_len, cfg.protect_spans)
        name, sources, refs = Path(data).name, [en for en, _ in kept], [zh for _, zh in kept]
    metrics: dict[str, Any] = {"data": name, "n": len(sources), "skipped": skipped}
    for m, tr in models.items():
        scores, outputs = tr.scores(sources, refs, _alpha(run, m, cfg))
        for decoder, s in scores.items():
            metrics.update({f"{m}_{decoder}_{k}": s[k] for k in ("bleu", "chrf", "placeholder_acc", "time_s")})
            write_sentences(run / "eval" / name / f"{m}.{decoder}.zh", outputs[decoder])
    metrics["reference_placeholder_acc"] = placeholder_accuracy(sources, refs)[0]
    run.write_eval(name, metrics)
    return metrics


def sample(run: Run, prompt: str, n_chars: int, temperature: float, top_k: int, top_p: float | None,
           seed: int, device: torch.device) -> str:
    """``deepnotes sample RUN --prompt TEXT``: TEXT translated by beam search with the model of the best validation
    score (:func:`~deepnotes.metrics.translation.best_on_validation`), deterministic (the sampling flags are
    ignored); ``n_chars`` (``--max-new-tokens``) caps the output in subword tokens.

    Raises:
        UserError: an empty prompt, a prompt much longer than the training sentences, an unfinished run.
    """
    if not prompt.strip():
        raise UserError("--prompt must not be empty: give the English text to translate")
    if n_chars == 0:
        return ""
    cfg = run.config
    tok, models = _finished(run, cfg, device)
    (n_tokens,) = source_lengths(tok, [prompt], cfg.protect_spans)
    if n_tokens > 4 * cfg.max_len:
        raise UserError(f"--prompt is {n_tokens} subword tokens; this run was trained on <= {cfg.max_len}: "
                        f"translate one sentence at a time")
    name = best_on_validation({m: run.read_json(f"models/{m}/result.json") for m in models})
    return models[name].decode([" ".join(prompt.split())], _alpha(run, name, cfg), max_new_tokens=n_chars)[0]


# ----------------------------------------------------------------------------------- report
def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _figures(run: Run, cfg: TranslationConfig, names: list[str], models: dict, dataset: str) -> None:
    """loss_curves.png (each model's metrics.csv), bleu.png (test BLEU), length_penalty.png (validation BLEU)."""
    rows: dict[int, dict[str, Any]] = {}
    for m in names:
        for r in read_metrics_csv(run / "models" / m / "metrics.csv"):
            rows.setdefault(r["epoch"], {"epoch": r["epoch"]}).update({f"{m} {k}": r[k] for k in
                                                                       ("train_loss", "val_loss", "val_acc")})
    plot_learning_curves(list(rows.values()), run / "loss_curves.png",
                         title=f"{dataset}: loss per target token (training: label-smoothed), token accuracy")
    ax = (fig := new_figure(6.8, 3.4)).add_subplot()
    for j, decoder in enumerate(DECODERS):
        bars = ax.bar([k + (j - 0.5) * 0.4 for k in range(len(names))],
                      [models[m]["test"][decoder]["bleu"] for m in names], 0.4, label=decoder)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set(xticks=range(len(names)), xticklabels=names, ylabel="test BLEU (sacrebleu, zh)",
           title="greedy decoding vs beam search")
    ax.legend(fontsize=8)
    save_figure(fig, run / "bleu.png")
    if not (validated := [m for m in names if models[m].get("val")]):
        return
    ax = (fig := new_figure(6.8, 3.6)).add_subplot()
    for i, m in enumerate(validated):
        v, c = models[m]["val"], f"C{i}"
        ax.plot([float(a) for a in v["beam"]], [b["bleu"] for b in v["beam"].values()], "o-", c=c, label=f"{m} beam")
        ax.axhline(v["greedy"]["bleu"], color=c, ls=":", label=f"{m} greedy")
        ax.plot([v["length_penalty"]], [v["beam"][f"{v['length_penalty']:g}"]["bleu"]], "*", ms=14, c=c)
    ax.set(xlabel="GNMT length-penalty alpha", ylabel="validation BLEU (sacrebleu, zh)",
           title="beam search's length penalty, chosen on validation (star)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, run / "length_penalty.png")


def report(run: Run | Path) -> Path:
    """Render ``report.md`` and its figures from a run folder; return the report's path."""
    run = run if isinstance(run, Run) else Run(run)
    cfg, info, res = run.config, run.read_json("data.json"), run.read_json("results.json")
    models = res["models"]
    names = [m for m in cfg.models if m in models]
    _figures(run, cfg, names, models, info["dataset"])
    beam = ([f"no repeated {cfg.no_repeat_ngram_size}-gram in an output"] if cfg.no_repeat_ngram_size else []) + (
        [f"GNMT coverage penalty beta {cfg.coverage_penalty:g}"] if cfg.coverage_penalty else [])
    rep = Report(run, f"{NAME}: English -> Chinese, RNN seq2seq with attention vs Transformer, greedy vs beam search",
                 "ML2021/2022 HW5 (Machine Translation); lectures: Transformer, seq2seq decoding (beam search). Data: "
                 f"{info['dataset']}, split {info['split']}; joint sentencepiece BPE vocabulary of {info['vocab_size']:,} "
                 f"pieces trained on the training split only ({info['length_filter']})." + (
                     " Protected spans (`--protect-spans`): every printf placeholder, option name and number of a source "
                     "became one sentinel token (in its training target too), put back into the outputs; scores are on "
                     "the restored text, losses over the protected tokens." if cfg.protect_spans else "")
                 + (" Beam search settings: " + "; ".join(beam) + "." if beam else ""))
    rows = []
    for m in names:
        for d, t in models[m]["test"].items():
            alpha = models[m].get("length_penalty", cfg.length_penalty)
            rows.append([m, "greedy" if d == "greedy" else f"beam {cfg.beam_size}, alpha {alpha:g}", f"{t['bleu']:.2f}",
                         f"{t['chrf']:.1f}", _pct(t["placeholder_acc"]), f"{t['time_s']:.1f}", f"{t['sentences_per_s']:.1f}"])
    rep.results(rows + [["reference translations", "-", "100", "100", _pct(res.get("reference_placeholder_acc")), "-",
                         "-"]], ["model", "decoding", "BLEU", "chrF", "placeholders", "time (s)", "sentences/s"],
                note=f"{res['n_test']:,} test sentences ({info['test_subset']} of the test pairs that pass the length "
                "filter), from packages never seen in training. BLEU: sacrebleu `corpus_bleu(hyps, [refs], tokenize="
                "\"zh\")`; chrF: sacrebleu; placeholders: share of the "
                f"{res['n_test_with_placeholders']} test sentences with a printf placeholder whose placeholders (as a "
                "multiset) come out as in the source; time: decoding the whole test set.\n\n"
                f"![test BLEU per model and decoder](bleu.png)\n\n{HW5_BASELINES}")
    if validated := {m: models[m]["val"] for m in names if models[m].get("val")}:
        grid = list(dict.fromkeys(a for v in validated.values() for a in v["beam"]))

        def cell(v: dict, a: str) -> str:  # the chosen alpha's BLEU in bold
            bleu = f"{v['beam'][a]['bleu']:.2f}" if a in v["beam"] else "-"
            return f"**{bleu}**" if a in v["beam"] and float(a) == v["length_penalty"] else bleu

        rep.section("Validation BLEU and the length penalty", "A fixed seeded subset of the validation split decoded "
                    f"greedily and by beam search ({cfg.beam_size} beams) with each GNMT length-penalty alpha "
                    "(log-probability / ((5 + |Y|) / 6) ** alpha); each model decodes the test set with the alpha of "
                    "its best validation BLEU (bold).",
                    markdown_table(["model", "sentences", "greedy", *[f"beam, alpha {a}" for a in grid], "chosen alpha"],
                                   [[m, v["n"], f"{v['greedy']['bleu']:.2f}", *[cell(v, a) for a in grid],
                                     f"{v['length_penalty']:g}"] for m, v in validated.items()]),
                    "![validation BLEU against the length penalty](length_penalty.png)")
    sources, refs = read_sentences(run / "test.en"), read_sentences(run / "test.zh")
    outputs = {(m, d): read_sentences(run / "models" / m / f"test.{d}.zh") for m in names for d in DECODERS}
    if splits := [(m, d, length_breakdown(sources, hyps, refs)) for (m, d), hyps in outputs.items()
                  if sources and len(hyps) == len(sources) == len(refs)]:
        rep.table("Test BLEU by source length", ["model", "decoding", f"<= {splits[0][2]['max_words']} words",
                                                 "longer", "looping outputs"],
                  [[m, d, *["-" if s[k]["n"] == 0 else f"{s[k]['bleu']:.2f} ({s[k]['n']:,}; BP {s[k]['bp']:.3f})"
                            for k in ("short", "long")], s["loops"]] for m, d, s in splits],
                  note="BLEU on the test sentences split by their source's length in words (sentences; sacrebleu's "
                  "brevity penalty); looping outputs repeat a unit of 2-12 characters 4+ times that the reference lacks.")
    rep.section("Training", markdown_table(
        ["model", "what", "parameters", "updates", "training time (s)", "final train loss", "final val loss",
         "val token accuracy"], [[m, r.get("label", MODEL_LABELS[m]), f"{r['parameters']:,}", r["updates"],
                                  f"{r['train_time_s']:.0f}", f"{r['final_train_loss']:.3f}",
                                  f"{r['final_val_loss']:.3f}", _pct(r["final_val_acc"])] for m in names
                                 for r in [models[m]]]),
                "Losses are per target token; the training loss includes label smoothing, the validation loss does "
                "not; training time includes each epoch's validation.", *[
                    f"Copy gate of the {m} (teacher-forced validation targets, EOS left out): it copies with probability "
                    f"1 - p_gen = {_pct(g['in_source'])} on the {g['n_in_source']:,} target tokens that occur in their "
                    f"source and {_pct(g['not_in_source'])} on the {g['n_not_in_source']:,} others."
                    for m in names if (g := models[m].get("copy_gate"))],
                "![train and validation loss per epoch](loss_curves.png)")
    n, after = info["pairs_per_split"], info["after_length_filter"]
    rep.table("Data", ["split", "pairs", "after --limit-*", "after the length filter", "packages (pairs)"],
              [[s, n[s], info.get("after_limits", {}).get(s, n[s]), after[s],
                ", ".join(info["packages"][s]) if info.get("packages") else info["split"]] for s in ("train", "val", "test")],
              note=f"Mean subword tokens per training pair: {info['mean_tokens']['train_en']:.1f} English, "
              f"{info['mean_tokens']['train_zh']:.1f} Chinese. `deepnotes sample {run.path} --prompt \"Cannot open "
              "file %s\"` translates with the model of the best validation score.")
    if sources and cfg.n_samples:
        picks = sorted(random.Random(cfg.seed).sample(range(len(sources)), min(cfg.n_samples, len(sources))))
        rep.table(f"{len(picks)} sample translations (seeded random test sentences)", ["source", "reference"] + [
            f"{m} (beam)" for m in names], [[sources[i], refs[i]] + [outputs[m, "beam"][i] if i < len(outputs[m, "beam"])
                                             else "" for m in names] for i in picks])
    return rep.write(eval_row=lambda e: {"data": e.get("data"), "sentences": e.get("n"), **{
        k.replace("_", " "): f"{v:.2f}" for k, v in e.items() if k.endswith(("_bleu", "_chrf"))}})


LAB = Lab(name=NAME, default_dataset="ui-translations", metric="test BLEU (sacrebleu, zh), chrF, placeholder accuracy",
            summary="EN->ZH translation: RNN seq2seq with attention vs Transformer, greedy vs beam search, BLEU",
            source="ML2021/2022 HW5 (Machine Translation), Transformer lectures",
            config_cls=TranslationConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS, sample=sample)
