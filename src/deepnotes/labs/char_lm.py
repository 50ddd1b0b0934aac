"""Labs ``char-gpt`` and ``lstm-lm``: next-character prediction on the King James Bible.

Source: ML2021/2022 "Transformer" and GPT ("predict the next token": a decoder-only Transformer under
a causal mask learns from every prefix of a window at once); EE-559 12-2 (LSTM); nanoGPT's
character-level CPU configuration (4 layers, 4 heads, 128 dims, block 64, batch 12, 2,000
iterations, dropout 0, no biases, AdamW with beta2 0.99, warm-up and cosine decay to 1e-4, gradient clipping at
1), with a peak lr of 2e-3 instead of nanoGPT's 1e-3 (benchmarks/RESULTS.md, "char-gpt against nanoGPT").
char-gpt trains with fused kernels, bfloat16 autocast where the CPU has it and ``torch.compile`` where a compiler
is (``--no-fused``, ``--cpu-bf16 off``, ``--compile off`` for the readable, float32, eager paths).

Data: the KJV text (``deepnotes data build kjv``), split by verse: 10% of the verses (seeded) are
held out for validation; each split's verses are joined with a newline. A training batch is
``batch_size`` windows of ``block_size + 1`` characters starting at offsets drawn without replacement
(:class:`deepnotes.data.text.WindowBatches`; an "epoch" is one evaluation interval of updates). After each epoch
the validation loss is over a fixed sample of ``--eval-windows`` windows; the final one over every non-overlapping
window of the validation text.

Metrics (:mod:`deepnotes.metrics.language`): cross-entropy per character in nats (``loss``), bits per
character and perplexity, beside unigram and add-one bigram count models fitted on the training text. The
lstm-lm report also puts the newest char-gpt run of the same output folder beside it.

Files in the run folder: config.json, data.json (split sizes, vocabulary, baselines), metrics.csv,
checkpoints/, model.safetensors, results.json, samples.txt, report.md + PNGs.
``deepnotes sample RUN --prompt TEXT`` prints a continuation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepnotes.data.splits import verse_split
from deepnotes.data.text import CharVocab, EvalWindows, WindowBatches, join_verses, load_kjv
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunContext
from deepnotes.io import write_text_atomic
from deepnotes.metrics.language import LN2, count_baselines, text_loss
from deepnotes.models.language import count_parameters, generate
from deepnotes.models.registry import create_model
from deepnotes.report import new_figure, plot_lr_schedule, read_metrics_csv, save_figure
from deepnotes.train import ClassificationTask, TrainConfig, Trainer, option
from deepnotes.train.schedule import lr_at


@dataclass(frozen=True)
class CharLMConfig(TrainConfig):
    """Fields shared by both character language-model labs (data, schedule of evaluations, sampling)."""

    epochs: int = option(8, "evaluation intervals; the run makes epochs x steps-per-epoch updates")
    steps_per_epoch: int = option(250, "updates between two validation passes (nanoGPT's eval_interval)",
                                  range="[1, 10000000]")
    batch_size: int = option(12, "windows per update")
    block_size: int = option(64, "characters of context per window", range="[1, 4096]")
    optimizer: Literal["sgd", "adamw"] = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum; beta1 for AdamW")
    weight_decay: float = option(0.1, "decoupled weight decay on weight matrices (AdamW)")
    schedule: Literal["constant", "step", "cosine", "onecycle", "triangular"] = option(
        "cosine", "learning-rate schedule (warm-up then cosine decay)")
    warmup: float = option(0.05, "share of updates spent warming up (100 of 2,000 as nanoGPT)")
    grad_clip: float = option(1.0, "clip the global gradient norm to this value (0 disables)")
    val_fraction: float = option(0.1, "share of verses held out for validation", range="(0, 0.5)")
    limit_chars: int = option(0, "use only the first N characters of each split (0 = all; for smoke runs)",
                              range="[0, 1000000000]")
    eval_windows: int = option(240, "validation windows scored after each epoch, a fixed seeded sample (nanoGPT: "
                               "20 batches of 12); 0 = every window. The final loss always scores the whole text",
                               range="[0, 100000000]")
    prompt: str = option("In the beginning", "prompt of the report's samples")
    sample_chars: int = option(400, "characters generated per sample in the report", range="[0, 100000]")
    temperature: float = option(0.8, "sampling temperature of the report's samples (0 = greedy)", range="[0, 100]")
    top_k: int = option(0, "sample only from the k most likely characters (0 = off)", range="[0, 1000000]")

    def check(self) -> None:
        super().check()
        if not self.prompt:
            raise UserError("--prompt must not be empty")


@dataclass(frozen=True)
class CharGPTConfig(CharLMConfig):
    """``char-gpt``: a decoder-only Transformer (nanoGPT's CPU character config by default)."""

    n_layers: int = option(4, "Transformer blocks", range="[1, 256]")
    n_heads: int = option(4, "attention heads per block", range="[1, 256]")
    d_model: int = option(128, "embedding and residual-stream size", range="[1, 8192]")
    dropout: float = option(0.0, "dropout on attention weights, residual branches and embeddings", range="[0, 1)")
    lr: float = option(2e-3, "peak learning rate (nanoGPT's 1e-3 gave 1.463 over 3 seeds here, 2e-3 1.384)")
    bias: bool = option(False, "biases in the linear layers and LayerNorms (nanoGPT's character config has none)")
    fused: bool = option(True, "fused kernels: attention via F.scaled_dot_product_attention, LayerNorm via "
                         "F.layer_norm (False: the readable paths, tested equal)")
    beta2: float = option(0.99, "AdamW's beta2 (nanoGPT's character config: 0.99)", range="[0, 1)")
    min_lr: float = option(1e-4, "the cosine schedule's floor (nanoGPT's character config: 1e-4)", range="[0, inf)")
    optimizer_impl: Literal["fused", "foreach", "for-loop"] = option(
        "fused", "optimizer step: one fused AdamW kernel (1.6x instead of 1.5x nanoGPT's tokens/s; resumes "
        "bit-equal), foreach (one call per operation), or torch's loop")
    cpu_bf16: Literal["auto", "on", "off"] = option(
        "auto", "bfloat16 autocast on CPU (matmuls in bf16, attention and the loss in fp32); auto = only where the "
        "CPU has native bf16 (avx512_bf16, amx_bf16)")
    compile: Literal["auto", "on", "off"] = option(
        "auto", "torch.compile the training step (about 10-20 s to compile, then faster updates); auto = where a C++ "
        "compiler is found, else eager with one warning")

    def check(self) -> None:
        super().check()
        if self.d_model % self.n_heads:
            raise UserError(f"--d-model {self.d_model} must be divisible by --n-heads {self.n_heads}")

    def model(self, vocab_size: int) -> torch.nn.Module:
        return create_model("gpt", vocab_size=vocab_size, block_size=self.block_size, num_layers=self.n_layers,
                            n_heads=self.n_heads, d_model=self.d_model, dropout=self.dropout,
                            use_fused=self.fused, bias=self.bias)


@dataclass(frozen=True)
class LSTMLMLabConfig(CharLMConfig):
    """``lstm-lm``: an LSTM language model on the same windows (about char-gpt's parameter count)."""

    lr: float = option(3e-3, "peak learning rate")
    weight_decay: float = option(0.0, "decoupled weight decay on weight matrices (AdamW)")
    embedding_dim: int = option(128, "character embedding size", range="[1, 8192]")
    hidden_size: int = option(240, "LSTM hidden size", range="[1, 8192]")
    num_layers: int = option(2, "stacked LSTM layers", range="[1, 64]")
    dropout: float = option(0.0, "dropout on embeddings, between layers and before the head", range="[0, 1)")
    fused: bool = option(True, "the LSTM through torch's fused kernel (False: the readable loop over time, tested "
                         "equal)")

    def model(self, vocab_size: int) -> torch.nn.Module:
        return create_model("lstm-lm", vocab_size=vocab_size, embedding_dim=self.embedding_dim,
                            hidden_size=self.hidden_size, num_layers=self.num_layers, dropout=self.dropout,
                            use_fused=self.fused)


FAST = {"epochs": 2, "steps_per_epoch": 15, "limit_chars": 60_000, "sample_chars": 60}
GPT_PRESETS = {"fast": {**FAST, "n_layers": 1, "d_model": 32, "n_heads": 2, "compile": "off"}}
LSTM_PRESETS = {"fast": {**FAST, "hidden_size": 32, "embedding_dim": 16, "num_layers": 1}}

# nanoGPT's published validation loss for the same model on tiny-Shakespeare (a different, smaller text).
NANOGPT_REFERENCE = ("nanoGPT README: this config (4 layers, 4 heads, 128 dims, block 64, batch 12, 2,000 iterations) "
                     "on tiny-Shakespeare, CPU", 1.88)


def load_data(cfg: CharLMConfig) -> tuple[CharVocab, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The KJV split by verse, encoded with a vocabulary of every character in the corpus:
    ``(vocab, train ids, validation ids, data.json's info)``."""
    verses = load_kjv()
    tr_idx, val_idx = verse_split(len(verses), cfg.val_fraction, seed=0)  # the split is fixed, not cfg.seed
    train_text, val_text = join_verses(verses, tr_idx), join_verses(verses, val_idx)
    vocab = CharVocab.from_text(join_verses(verses))
    if cfg.limit_chars:
        train_text, val_text = train_text[: cfg.limit_chars], val_text[: max(cfg.limit_chars // 10, 4 * (cfg.block_size + 1))]
    train_ids, val_ids = torch.from_numpy(vocab.encode(train_text)), torch.from_numpy(vocab.encode(val_text))
    info = {"dataset": "kjv", "n_verses_train": len(tr_idx), "n_verses_val": len(val_idx),
            "n_chars_train": len(train_ids), "n_chars_val": len(val_ids), "vocab": "".join(vocab.itos),
            "baselines": count_baselines(train_ids.numpy(), val_ids.numpy(), len(vocab))}
    return vocab, train_ids, val_ids, info


def _load_trained(run: Run, device: torch.device) -> tuple[CharLMConfig, CharVocab, torch.nn.Module]:
    vocab = CharVocab(tuple(run.read_json("data.json")["vocab"]))
    return run.config, vocab, run.load_weights(run.config.model(len(vocab))).to(device)


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: loss, bits per character and perplexity on the KJV validation verses or a UTF-8 text file.

    Raises:
        UserError: unreadable file, or characters the model's vocabulary lacks (named).
    """
    cfg, vocab, model = _load_trained(run := Run(run), device)
    if data is None or data == "kjv":
        ids, name = load_data(cfg)[2], "kjv-val"
    else:
        path = Path(data)
        try:
            ids = torch.from_numpy(vocab.encode(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--data {path}: cannot read it as UTF-8 text ({e})") from e
        except UserError as e:
            raise UserError(f"--data {path}: {e}") from None
        name = path.name
    metrics = {"data": name, **text_loss(model, EvalWindows(ids, cfg.block_size, 256), device)}
    run.write_eval(name, metrics)
    return metrics


def sample(run: Run, prompt: str, n_chars: int, temperature: float, top_k: int, top_p: float | None,
           seed: int, device: torch.device) -> str:
    """``deepnotes sample``: a continuation of ``prompt`` by a finished run's model."""
    _, vocab, model = _load_trained(Run(run), device)
    return generate(model, vocab, prompt, n_chars, temperature, top_k, top_p, seed, device)


def run(cfg: CharLMConfig, ctx: RunContext) -> dict[str, Any]:
    """Train, evaluate on the validation verses, sample, write the report."""
    lab_name, log = "char-gpt" if isinstance(cfg, CharGPTConfig) else "lstm-lm", ctx.main_log
    torch.manual_seed(cfg.seed)
    vocab, train_ids, val_ids, info = load_data(cfg)
    log(f"kjv: {info['n_chars_train']:,} training / {info['n_chars_val']:,} validation characters "
        f"({info['n_verses_train']:,} / {info['n_verses_val']:,} verses), vocabulary {len(vocab)}")
    model = cfg.model(len(vocab))
    n_params = count_parameters(model)
    log(f"{lab_name}: {n_params:,} parameters; device {ctx.device}; "
        f"{cfg.epochs * cfg.steps_per_epoch:,} updates of {cfg.batch_size} x {cfg.block_size} characters")
    train = WindowBatches(train_ids, cfg.block_size, cfg.batch_size, cfg.seed, ctx.info, cfg.steps_per_epoch)
    val = EvalWindows(val_ids, cfg.block_size, 1000, ctx.info, sample=cfg.eval_windows, seed=0)
    if ctx.info.is_main:
        Run(ctx.run_dir).write_json("data.json", info)
    to_device = (lambda x, y, train, generator: (x.to(ctx.device), y.to(ctx.device)))
    task = ClassificationTask(model, to_device, label_smoothing=cfg.label_smoothing)
    trainer = Trainer(cfg, task, ctx.run_dir, train, {"val": val}, ctx.device, ctx.info, ctx.log)
    if ctx.resume:
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit()
    session_time = time.perf_counter() - t0
    if not ctx.info.is_main:
        return {}
    val_metrics = text_loss(model, EvalWindows(val_ids, cfg.block_size, 256), ctx.device)
    t1 = time.perf_counter()
    text = generate(model, vocab, cfg.prompt, cfg.sample_chars, cfg.temperature, cfg.top_k, None, cfg.seed, ctx.device)
    sample_time = time.perf_counter() - t1
    train_time = sum(float(r["epoch_time_s"]) for r in trainer.history)
    tokens = cfg.epochs * cfg.steps_per_epoch * cfg.batch_size * cfg.block_size
    results = {"lab": lab_name, "val": val_metrics, "parameters": n_params, "train_time_s": train_time,
               "this_session_time_s": session_time, "updates": trainer.step,
               "train_tokens_per_s": tokens / max(train_time, 1e-9),
               "sample_chars_per_s": cfg.sample_chars / max(sample_time, 1e-9), "baselines": info["baselines"]}
    Run(ctx.run_dir).write_json("results.json", results)
    write_text_atomic(ctx.run_dir / "samples.txt", text + "\n")
    path = report(Run(ctx.run_dir))
    log(f"validation loss {val_metrics['loss']:.4f} nats/char ({val_metrics['bpc']:.3f} bits/char, perplexity "
        f"{val_metrics['perplexity']:.2f}); trained in {train_time:.0f}s")
    log(f"sample: {text[:160]!r}")
    log(f"report: {path}")
    return results


def _plot_losses(run: Run, rows: list[dict[str, Any]], baselines: dict[str, float], title: str,
                 val_label: str = "validation (all windows)") -> None:
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    steps = [int(r["step"]) for r in rows]
    ax.plot(steps, [float(r["train_loss"]) for r in rows], "o-", label="train (running mean over the interval)")
    ax.plot(steps, [float(r["val_loss"]) for r in rows], "s-", label=val_label)
    for name, value in baselines.items():
        ax.axhline(value, ls=":", c="grey")
        ax.annotate(f"{name} count model", (steps[0] if steps else 0, value), fontsize=8, va="bottom", color="grey")
    ax.set(xlabel="update", ylabel="cross-entropy (nats / character)", title=title)
    ax.legend()
    save_figure(fig, run / "loss_curves.png")


def report(run: Run) -> Path:
    """Render ``report.md`` and its figures from a finished run folder; return the report's path."""
    run = Run(run)
    lab, cfg = run.lab, run.config
    info, res = run.read_json("data.json"), run.read_json("results.json")
    rows = read_metrics_csv(run / "metrics.csv")
    sample = getattr(cfg, "eval_windows", 0)
    _plot_losses(run, rows, res["baselines"], f"{lab.name} on the KJV text",
                 f"validation (a fixed sample of {sample:,} windows)" if sample else "validation (all windows)")
    total = int(rows[-1]["step"]) if rows else 1
    plot_lr_schedule([lr_at(s, total, cfg.lr, cfg.schedule, cfg.warmup, getattr(cfg, "min_lr", 0.0))
                      for s in range(total)],
                     run / "lr_schedule.png", title=f"{cfg.schedule} schedule, {cfg.warmup:.0%} warm-up")
    v, b = res["val"], res["baselines"]
    line = (lambda name, loss: [name, f"{loss:.4f}", f"{loss / LN2:.3f}", f"{math.exp(loss):.2f}"])
    rep = Report(run, f"{lab.name}: next-character prediction on the King James Bible",
                 f"{lab.source}. Data: {info['n_chars_train']:,} training and {info['n_chars_val']:,} validation "
                 f"characters ({info['n_verses_train']:,} / {info['n_verses_val']:,} verses, split by verse), "
                 f"{len(info['vocab'])} distinct characters.")
    rep.results([line(f"{lab.name} ({res['parameters']:,} parameters)", v["loss"]),
                 line("bigram count model (add-one), fitted on train", b["bigram"]),
                 line("unigram count model, fitted on train", b["unigram"])],
                headers=["model", "loss (nats/char)", "bits/char", "perplexity"],
                note=f"Validation. Trained {res['updates']:,} updates in {res['train_time_s']:.0f} s "
                     f"({res['train_tokens_per_s']:,.0f} training characters/s, validation passes included). "
                     f"Reference, other text: {NANOGPT_REFERENCE[0]}: validation loss {NANOGPT_REFERENCE[1]}.")
    if lab.name == "lstm-lm":
        found = sorted(run.path.parent.parent.glob("char-gpt/*/results.json"))
        if not found:
            rep.section("Beside char-gpt", "No char-gpt run in this output folder to compare with: run "
                        "`deepnotes run char-gpt` with the same --out.")
        else:
            o = Run(found[-1].parent).read_json("results.json")
            rep.table("Beside char-gpt", ["model", "parameters", "validation loss", "bits/char", "training time"],
                      [[f"{lab.name} (this run)", f"{res['parameters']:,}", f"{v['loss']:.4f}", f"{v['bpc']:.3f}",
                        f"{res['train_time_s']:.0f} s"],
                       [f"char-gpt ({found[-1].parent.name})", f"{o['parameters']:,}", f"{o['val']['loss']:.4f}",
                        f"{o['val']['bpc']:.3f}", f"{o['train_time_s']:.0f} s"]])
    rep.figure("Loss curves", "loss_curves.png", "train and validation loss")
    rep.figure("Learning-rate schedule", "lr_schedule.png")
    samples = (run / "samples.txt").read_text() if (run / "samples.txt").is_file() else ""
    rep.section(f"Sample (temperature {cfg.temperature}, top-k {cfg.top_k or 'off'}, prompt {cfg.prompt!r})",
                "```\n" + samples.rstrip("\n") + "\n```", f"More: `deepnotes sample {run.path} --prompt \"And God said\"`.")
    return rep.write(eval_row=lambda e: {"data": e["data"], "characters": e["n_chars"], "loss": f"{e['loss']:.4f}",
                                         "bits/char": f"{e['bpc']:.3f}", "perplexity": f"{e['perplexity']:.2f}"})


LAB_GPT = Lab(name="char-gpt", default_dataset="kjv", metric="validation loss (nats/char), bits/char",
                summary="decoder-only Transformer (GPT) predicting the next character of the KJV text; "
              "samples",
                source="ML2021/2022 Transformer and GPT lectures; nanoGPT's character config",
                config_cls=CharGPTConfig, run=run, evaluate=evaluate, report=report, presets=GPT_PRESETS, sample=sample)
LAB_LSTM = Lab(name="lstm-lm", default_dataset="kjv", metric="validation loss (nats/char), bits/char",
                 summary="LSTM language model on the same KJV windows, compared with char-gpt",
                 source="EE-559 12-2 (LSTM); ML2021 RNN lecture",
                 config_cls=LSTMLMLabConfig, run=run, evaluate=evaluate, report=report, presets=LSTM_PRESETS, sample=sample)
LABS = (LAB_GPT, LAB_LSTM)
