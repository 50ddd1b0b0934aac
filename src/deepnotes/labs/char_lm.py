"""Labs ``char-gpt`` and ``lstm-lm``: next-character prediction on the King James Bible.

Source: ML2021/2022 "Transformer" and GPT ("predict the next token": a decoder-only Transformer under
a causal mask learns from every prefix of a window at once); EE-559 12-2 (LSTM); nanoGPT's
character-level CPU configuration (4 layers, 4 heads, 128 dims, block 64, batch 12, 2,000
iterations, dropout 0, AdamW lr 1e-3 with warm-up and cosine decay, gradient clipping at 1).

Data: the KJV text (``deepnotes data build kjv``), split by verse: 10% of the verses (seeded) are
held out for validation; each split's verses are joined with a newline. A training batch is
``batch_size`` windows of ``block_size + 1`` characters starting at offsets drawn without replacement
(the engine's ``steps_per_epoch`` makes an "epoch" one evaluation interval of updates). The
validation loss is over every non-overlapping window of the validation text.

Metrics: cross-entropy per character in nats (``loss``), bits per character (``loss / ln 2``) and
perplexity (``exp(loss)``), beside two count baselines fitted on the training text: unigram and
bigram (add-one smoothing) character models. The lstm-lm report also puts the newest char-gpt
run of the same output folder beside it (their parameter counts are close by default).

Files in the run folder: config.json, data.json (split sizes, vocabulary, baselines), metrics.csv,
checkpoints/, model.safetensors, results.json, samples.txt, report.md + PNGs.
``deepnotes sample RUN --prompt TEXT`` prints a continuation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes.data.splits import verse_split
from deepnotes.data.text import CharVocab, join_verses, load_kjv
from deepnotes.errors import UserError
from deepnotes.io import write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, load_run_weights, read_run_json
from deepnotes.models.language import GPT, GPTConfig, LSTMLanguageModel, LSTMLMConfig, count_parameters
from deepnotes.nn.decoding import sample as sample_tokens
from deepnotes.report import markdown_image, markdown_table, new_figure, read_metrics_csv, save_figure
from deepnotes.train import supervised_trainer
from deepnotes.train.config import TrainConfig, option, validate_train_config
from deepnotes.train.schedule import lr_at

LN2 = math.log(2.0)


@dataclass(frozen=True)
class CharLMConfig(TrainConfig):
    """Fields shared by both character language-model labs (data, schedule of evaluations, sampling)."""

    epochs: int = option(8, "evaluation intervals; the run makes epochs x steps-per-epoch updates")
    steps_per_epoch: int = option(250, "updates between two validation passes (nanoGPT's eval_interval)")
    batch_size: int = option(12, "windows per update")
    block_size: int = option(64, "characters of context per window")
    optimizer: str = option("adamw", "optimizer: SGD with (Nesterov) momentum, or AdamW")
    lr: float = option(1e-3, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum; beta1 for AdamW")
    weight_decay: float = option(0.1, "decoupled weight decay on weight matrices (AdamW)")
    schedule: str = option("cosine", "learning-rate schedule (warm-up then cosine decay)")
    warmup: float = option(0.05, "share of updates spent warming up (100 of 2,000 as nanoGPT)")
    grad_clip: float = option(1.0, "clip the global gradient norm to this value (0 disables)")
    val_fraction: float = option(0.1, "share of verses held out for validation")
    limit_chars: int = option(0, "use only the first N characters of each split (0 = all; for smoke runs)")
    prompt: str = option("In the beginning", "prompt of the report's samples")
    sample_chars: int = option(400, "characters generated per sample in the report")
    temperature: float = option(0.8, "sampling temperature of the report's samples")
    top_k: int = option(0, "sample only from the k most likely characters (0 = off)")


@dataclass(frozen=True)
class CharGPTConfig(CharLMConfig):
    """``char-gpt``: a decoder-only Transformer (nanoGPT's CPU character config by default)."""

    n_layers: int = option(4, "Transformer blocks")
    n_heads: int = option(4, "attention heads per block")
    d_model: int = option(128, "embedding and residual-stream size")
    dropout: float = option(0.0, "dropout on attention weights, residual branches and embeddings")
    fused_attention: bool = option(True, "attention via F.scaled_dot_product_attention (False: the readable path)")


@dataclass(frozen=True)
class LSTMLMLabConfig(CharLMConfig):
    """``lstm-lm``: an LSTM language model on the same windows (about char-gpt's parameter count)."""

    lr: float = option(3e-3, "peak learning rate")
    weight_decay: float = option(0.0, "decoupled weight decay on weight matrices (AdamW)")
    embedding_dim: int = option(128, "character embedding size")
    hidden_size: int = option(240, "LSTM hidden size")
    num_layers: int = option(2, "stacked LSTM layers")
    dropout: float = option(0.0, "dropout on embeddings, between layers and before the head")


FAST = {"epochs": 2, "steps_per_epoch": 15, "limit_chars": 60_000, "sample_chars": 60}
GPT_PRESETS = {"fast": {**FAST, "n_layers": 1, "d_model": 32, "n_heads": 2}}
LSTM_PRESETS = {"fast": {**FAST, "hidden_size": 32, "embedding_dim": 16, "num_layers": 1}}

# nanoGPT's published validation loss for the same model on tiny-Shakespeare (a different, smaller text).
NANOGPT_REFERENCE = ("nanoGPT README: this config (4 layers, 4 heads, 128 dims, block 64, batch 12, 2,000 iterations) "
                     "on tiny-Shakespeare, CPU", 1.88)


# ----------------------------------------------------------------------------------- data
@dataclass
class CharData:
    vocab: CharVocab
    train_ids: torch.Tensor  # (N_train,) int64
    val_ids: torch.Tensor  # (N_val,) int64
    info: dict[str, Any]


def load_data(cfg: CharLMConfig) -> CharData:
    """The KJV text split by verse, encoded with a vocabulary of every character in the corpus."""
    verses = load_kjv()
    tr_idx, val_idx = verse_split(len(verses), cfg.val_fraction, seed=0)  # the split is fixed, not cfg.seed
    train_text, val_text = join_verses(verses, tr_idx), join_verses(verses, val_idx)
    vocab = CharVocab.from_text(join_verses(verses))
    if cfg.limit_chars:
        train_text, val_text = train_text[: cfg.limit_chars], val_text[: max(cfg.limit_chars // 10, 4 * (cfg.block_size + 1))]
    train_ids = torch.from_numpy(vocab.encode(train_text))
    val_ids = torch.from_numpy(vocab.encode(val_text))
    info = {
        "dataset": "kjv", "n_verses_train": len(tr_idx), "n_verses_val": len(val_idx),
        "n_chars_train": len(train_ids), "n_chars_val": len(val_ids), "vocab": "".join(vocab.itos),
        "baselines": count_baselines(train_ids.numpy(), val_ids.numpy(), len(vocab)),
    }
    return CharData(vocab, train_ids, val_ids, info)


def count_baselines(train: np.ndarray, val: np.ndarray, V: int) -> dict[str, float]:
    """Validation cross-entropy (nats/char) of unigram and add-one bigram character models fitted on ``train``."""
    uni = (np.bincount(train, minlength=V) + 1.0) / (len(train) + V)
    big = np.ones((V, V))
    np.add.at(big, (train[:-1], train[1:]), 1.0)
    big /= big.sum(axis=1, keepdims=True)
    return {"unigram": float(-np.log(uni[val]).mean()), "bigram": float(-np.log(big[val[:-1], val[1:]]).mean())}


class WindowBatcher:
    """The engine's ``prepare_batch``: window start offsets -> (inputs, targets), each (B, block_size) on device."""

    def __init__(self, ids: dict[str, torch.Tensor], block_size: int, device: torch.device):
        self.ids, self.block_size, self.device = ids, block_size, device
        self.arange = torch.arange(block_size + 1)

    def __call__(self, offsets, split_code, train, generator):
        # split_code: 0 = train text, 1 = validation text (all rows of a batch come from one split)
        text = self.ids["train" if int(split_code[0]) == 0 else "val"]
        w = text[offsets[:, None] + self.arange]
        return w[:, :-1].to(self.device), w[:, 1:].to(self.device)


def window_offsets(n_chars: int, block_size: int, stride: int) -> torch.Tensor:
    """Start offsets of windows of ``block_size + 1`` characters, every ``stride`` characters."""
    if n_chars < block_size + 1:
        raise UserError(f"the text has {n_chars} characters, fewer than --block-size + 1 = {block_size + 1}")
    return torch.arange(0, n_chars - block_size, stride)


def build_model(cfg: CharLMConfig, vocab_size: int) -> torch.nn.Module:
    if isinstance(cfg, CharGPTConfig):
        if cfg.d_model % cfg.n_heads:
            raise UserError(f"--d-model {cfg.d_model} must be divisible by --n-heads {cfg.n_heads}")
        return GPT(GPTConfig(vocab_size, cfg.block_size, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.dropout,
                             cfg.fused_attention))
    return LSTMLanguageModel(LSTMLMConfig(vocab_size, cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, cfg.dropout))


def _validate(cfg: CharLMConfig) -> None:
    validate_train_config(cfg)
    checks = [
        (cfg.steps_per_epoch >= 1, "--steps-per-epoch must be >= 1"),
        (cfg.block_size >= 1, "--block-size must be >= 1"),
        (0 < cfg.val_fraction < 0.5, "--val-fraction must be in (0, 0.5)"),
        (cfg.limit_chars >= 0, "--limit-chars must be >= 0 (0 = all)"),
        (cfg.sample_chars >= 0, "--sample-chars must be >= 0"),
        (cfg.temperature >= 0, "--temperature must be >= 0 (0 = greedy)"),
        (cfg.top_k >= 0, "--top-k must be >= 0 (0 = off)"),
        (0 <= getattr(cfg, "dropout", 0.0) < 1, "--dropout must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    for name in ("n_layers", "n_heads", "d_model", "embedding_dim", "hidden_size", "num_layers"):
        if getattr(cfg, name, 1) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")


# ----------------------------------------------------------------------------------- evaluation and sampling
@torch.no_grad()
def text_loss(model: torch.nn.Module, ids: torch.Tensor, block_size: int, device: torch.device,
              batch_size: int = 256) -> dict[str, float]:
    """Mean next-character cross-entropy over every non-overlapping window of ``ids`` (and bpc, perplexity)."""
    model.eval()
    offsets = window_offsets(len(ids), block_size, block_size)
    ar = torch.arange(block_size + 1)
    total, count = 0.0, 0
    for start in range(0, len(offsets), batch_size):
        w = ids[offsets[start : start + batch_size, None] + ar].to(device)
        logits = model(w[:, :-1])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1), reduction="sum"))
        count += w[:, 1:].numel()
    loss = total / count
    return {"loss": loss, "bpc": loss / LN2, "perplexity": math.exp(loss), "n_chars": count}


def generate(model: torch.nn.Module, vocab: CharVocab, prompt: str, n_chars: int, temperature: float,
             top_k: int = 0, top_p: float | None = None, seed: int = 0, device: torch.device = torch.device("cpu")) -> str:
    """``prompt`` followed by ``n_chars`` sampled characters (temperature 0 = greedy).

    Raises:
        UserError: the prompt is empty or holds a character outside the vocabulary.
    """
    if not prompt:
        raise UserError("--prompt must not be empty")
    model.eval()
    ids = torch.from_numpy(vocab.encode(prompt))[None].to(device)
    if n_chars == 0:
        return prompt
    g = torch.Generator(device=device).manual_seed(seed)
    out = sample_tokens(lambda tokens, origin: model.step_logits(tokens), ids, eos=None, max_len=n_chars,
                        temperature=temperature, top_k=top_k or None, top_p=top_p, generator=g)
    return vocab.decode(out[0].tolist())


def _load_trained(run_dir: Path, device: torch.device):
    from deepnotes.experiment import load_config

    _, cfg = load_config(run_dir)
    info = read_run_json(run_dir / "data.json")
    vocab = CharVocab(tuple(info["vocab"]))
    model = load_run_weights(build_model(cfg, len(vocab)), run_dir / "model.safetensors", run_dir)
    return cfg, info, vocab, model.to(device)


def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: loss, bits per character and perplexity on the KJV validation verses or a UTF-8 text file.

    Raises:
        UserError: unreadable file, or characters the model's vocabulary lacks (named).
    """
    run_dir = Path(run_dir)
    cfg, info, vocab, model = _load_trained(run_dir, device)
    if data is None or data == "kjv":
        ids, name = load_data(cfg).val_ids, "kjv-val"
    else:
        path = Path(data)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--data {path}: cannot read it as UTF-8 text ({e})") from e
        try:
            ids = torch.from_numpy(vocab.encode(text))
        except UserError as e:
            raise UserError(f"--data {path}: {e}") from None
        name = path.name
    metrics = {"data": name, **text_loss(model, ids, cfg.block_size, device)}
    write_json_atomic(run_dir / "eval" / f"{name}.json", metrics)
    return metrics


def sample(run_dir: Path, prompt: str, n_chars: int, temperature: float, top_k: int, top_p: float | None,
           seed: int, device: torch.device) -> str:
    """``deepnotes sample``: a continuation of ``prompt`` by a finished run's model."""
    _, _, vocab, model = _load_trained(Path(run_dir), device)
    return generate(model, vocab, prompt, n_chars, temperature, top_k, top_p, seed, device)


# ----------------------------------------------------------------------------------- run
def _run(cfg: CharLMConfig, ctx: RunContext, lab_name: str) -> dict[str, Any]:
    _validate(cfg)
    log = ctx.log if ctx.info.is_main else (lambda _m: None)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg)
    if ctx.info.is_main:
        write_json_atomic(ctx.run_dir / "data.json", data.info)
    log(f"kjv: {data.info['n_chars_train']:,} training / {data.info['n_chars_val']:,} validation characters "
        f"({data.info['n_verses_train']:,} / {data.info['n_verses_val']:,} verses), vocabulary {len(data.vocab)}")
    model = build_model(cfg, len(data.vocab))
    n_params = count_parameters(model)
    log(f"{lab_name}: {n_params:,} parameters; device {ctx.device}; "
        f"{cfg.epochs * cfg.steps_per_epoch:,} updates of {cfg.batch_size} x {cfg.block_size} characters")
    train_offsets = window_offsets(len(data.train_ids), cfg.block_size, 1)
    val_offsets = window_offsets(len(data.val_ids), cfg.block_size, cfg.block_size)
    batcher = WindowBatcher({"train": data.train_ids, "val": data.val_ids}, cfg.block_size, ctx.device)
    train = (train_offsets, torch.zeros(len(train_offsets), dtype=torch.long))
    val = (val_offsets, torch.ones(len(val_offsets), dtype=torch.long))
    trainer = supervised_trainer(cfg, model, ctx.run_dir, train, batcher, {"val": val}, ctx.device, ctx.info, log,
                      steps_per_epoch=cfg.steps_per_epoch)
    if ctx.resume:
        trainer.resume()
    t0 = time.perf_counter()
    trainer.fit()
    session_time = time.perf_counter() - t0
    if not ctx.info.is_main:
        return {}
    val_metrics = text_loss(model, data.val_ids, cfg.block_size, ctx.device)
    t1 = time.perf_counter()
    text = generate(model, data.vocab, cfg.prompt, cfg.sample_chars, cfg.temperature, cfg.top_k, None, cfg.seed, ctx.device)
    sample_time = time.perf_counter() - t1
    train_time = sum(float(r["epoch_time_s"]) for r in trainer.history)
    tokens = cfg.epochs * cfg.steps_per_epoch * cfg.batch_size * cfg.block_size
    results = {
        "lab": lab_name, "val": val_metrics, "parameters": n_params, "train_time_s": train_time,
        "this_session_time_s": session_time, "updates": trainer.step,
        "train_tokens_per_s": tokens / max(train_time, 1e-9),
        "sample_chars_per_s": cfg.sample_chars / max(sample_time, 1e-9), "baselines": data.info["baselines"],
    }
    write_json_atomic(ctx.run_dir / "results.json", results)
    write_text_atomic(ctx.run_dir / "samples.txt", text + "\n")
    path = report(ctx.run_dir)
    log(f"validation loss {val_metrics['loss']:.4f} nats/char ({val_metrics['bpc']:.3f} bits/char, perplexity "
        f"{val_metrics['perplexity']:.2f}); trained in {train_time:.0f}s")
    log(f"sample: {text[:160]!r}")
    log(f"report: {path}")
    return results


def run_gpt(cfg: CharGPTConfig, ctx: RunContext) -> dict[str, Any]:
    """Train char-gpt, evaluate on the validation verses, sample, write the report."""
    return _run(cfg, ctx, "char-gpt")


def run_lstm(cfg: LSTMLMLabConfig, ctx: RunContext) -> dict[str, Any]:
    """Train lstm-lm, evaluate on the validation verses, sample, write the report."""
    return _run(cfg, ctx, "lstm-lm")


# ----------------------------------------------------------------------------------- report
def _newest_result(folder: Path) -> tuple[Path, dict] | None:
    runs = sorted(p for p in folder.glob("*/results.json")) if folder.is_dir() else []
    return (runs[-1].parent, read_run_json(runs[-1])) if runs else None


def report(run_dir: Path) -> Path:
    """Render ``report.md`` and its figures from a finished run folder; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    lab, cfg = load_config(run_dir)
    info = read_run_json(run_dir / "data.json")
    res = read_run_json(run_dir / "results.json")
    rows = read_metrics_csv(run_dir / "metrics.csv")
    samples = (run_dir / "samples.txt").read_text() if (run_dir / "samples.txt").is_file() else ""

    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    steps = [int(r["step"]) for r in rows]
    ax.plot(steps, [float(r["train_loss"]) for r in rows], "o-", label="train (running mean over the interval)")
    ax.plot(steps, [float(r["val_loss"]) for r in rows], "s-", label="validation (all windows)")
    for name, value in res["baselines"].items():
        ax.axhline(value, ls=":", c="grey")
        ax.annotate(f"{name} count model", (steps[0] if steps else 0, value), fontsize=8, va="bottom", color="grey")
    ax.set_xlabel("update")
    ax.set_ylabel("cross-entropy (nats / character)")
    ax.set_title(f"{lab.name} on the KJV text")
    ax.legend()
    save_figure(fig, run_dir / "loss_curves.png")

    total = int(rows[-1]["step"]) if rows else 1
    fig = new_figure(6.4, 3.0)
    ax = fig.add_subplot()
    ax.plot([lr_at(s, total, cfg.lr, cfg.schedule, cfg.warmup) for s in range(total)])
    ax.set_xlabel("update")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{cfg.schedule} schedule, {cfg.warmup:.0%} warm-up")
    save_figure(fig, run_dir / "lr_schedule.png")

    v = res["val"]
    b = res["baselines"]
    table = [
        [f"{lab.name} ({res['parameters']:,} parameters)", f"{v['loss']:.4f}", f"{v['bpc']:.3f}", f"{v['perplexity']:.2f}"],
        ["bigram count model (add-one), fitted on train", f"{b['bigram']:.4f}", f"{b['bigram'] / LN2:.3f}", f"{math.exp(b['bigram']):.2f}"],
        ["unigram count model, fitted on train", f"{b['unigram']:.4f}", f"{b['unigram'] / LN2:.3f}", f"{math.exp(b['unigram']):.2f}"],
    ]
    lines = [
        f"# {lab.name}: next-character prediction on the King James Bible", "",
        f"{lab.source}. Data: {info['n_chars_train']:,} training and {info['n_chars_val']:,} validation characters "
        f"({info['n_verses_train']:,} / {info['n_verses_val']:,} verses, split by verse), {len(info['vocab'])} distinct characters.",
        "", "## Validation", "",
        markdown_table(["model", "loss (nats/char)", "bits/char", "perplexity"], table), "",
        f"Trained {res['updates']:,} updates in {res['train_time_s']:.0f} s "
        f"({res['train_tokens_per_s']:,.0f} training characters/s, validation passes included in the time).", "",
        f"Reference, other text: {NANOGPT_REFERENCE[0]}: validation loss {NANOGPT_REFERENCE[1]}.", "",
    ]
    if lab.name == "lstm-lm":
        other = _newest_result(run_dir.parent.parent / "char-gpt")
        if other is None:
            lines += ["No char-gpt run in this output folder to compare with: run `deepnotes run char-gpt` with the same --out.", ""]
        else:
            o_dir, o = other
            lines += ["## Beside char-gpt", "", markdown_table(
                ["model", "parameters", "validation loss", "bits/char", "training time"],
                [["lstm-lm (this run)", f"{res['parameters']:,}", f"{v['loss']:.4f}", f"{v['bpc']:.3f}", f"{res['train_time_s']:.0f} s"],
                 [f"char-gpt ({o_dir.name})", f"{o['parameters']:,}", f"{o['val']['loss']:.4f}", f"{o['val']['bpc']:.3f}",
                  f"{o['train_time_s']:.0f} s"]]), ""]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        ev = [read_run_json(p) for p in evals]
        lines += ["## `deepnotes eval` results", "", markdown_table(
            ["data", "characters", "loss", "bits/char", "perplexity"],
            [[e["data"], e["n_chars"], f"{e['loss']:.4f}", f"{e['bpc']:.3f}", f"{e['perplexity']:.2f}"] for e in ev]), ""]
    lines += ["## Learning curves", "", markdown_image("train and validation loss", "loss_curves.png"), "",
              markdown_image("learning-rate schedule", "lr_schedule.png"), "",
              f"## Sample (temperature {cfg.temperature}, top-k {cfg.top_k or 'off'}, prompt {cfg.prompt!r})", "",
              "```", samples.rstrip("\n"), "```", "",
              f"More: `deepnotes sample {run_dir} --prompt \"And God said\"`.", "",
              "## Configuration", "",
              markdown_table(["field", "value"], [[k, v] for k, v in read_run_json(run_dir / "config.json")["config"].items()]), ""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB_GPT = Lab(
    name="char-gpt",
    summary="decoder-only Transformer (GPT) predicting the next character of the KJV text; samples",
    source="ML2021/2022 Transformer and GPT lectures; nanoGPT's character config",
    default_dataset="kjv",
    metric="validation loss (nats/char), bits/char",
    config_cls=CharGPTConfig,
    run=run_gpt,
    evaluate=evaluate,
    report=report,
    presets=GPT_PRESETS,
    sample=sample,
)

LAB_LSTM = Lab(
    name="lstm-lm",
    summary="LSTM language model on the same KJV windows, compared with char-gpt",
    source="EE-559 12-2 (LSTM); ML2021 RNN lecture",
    default_dataset="kjv",
    metric="validation loss (nats/char), bits/char",
    config_cls=LSTMLMLabConfig,
    run=run_lstm,
    evaluate=evaluate,
    report=report,
    presets=LSTM_PRESETS,
    sample=sample,
)
LABS = (LAB_GPT, LAB_LSTM)
