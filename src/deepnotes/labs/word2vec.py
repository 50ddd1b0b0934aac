"""Lab ``word2vec``: CBOW word embeddings with negative sampling, trained on the King James Bible.

Source: EE-559 (Fleuret) 12-3 "Word embeddings and translation": the CBOW version of word2vec
predicts a word from the average input embedding of its 2C neighbours, and negative sampling
replaces the W-way softmax by one true word against Q noise words (:mod:`deepnotes.nn.word2vec`).
The embedding's geometry should put words of the same kind close together ("cat"/"tiger",
"red"/"blue"): this lab checks that on the KJV, against the same embeddings before training.

Data: the KJV (:func:`deepnotes.data.text.load_kjv`, 31,102 verses, ~790 k words). Tokenisation
(:func:`tokenize`): lowercase; the possessive ``'s`` is dropped (``Lord's`` -> ``lord``); every
maximal run of the letters a-z is a word, anything else (digits, punctuation, hyphens) separates
words. The vocabulary is every word seen at least ``--min-count`` times in the training verses,
ordered by count; rarer words are removed from the text before the windows are built (as the
word2vec C code does). A verse-level split (:func:`deepnotes.data.text.verse_split`) keeps
``--val-fraction`` of the verses for a validation loss. Each epoch draws a fresh subsampling of
frequent words (:func:`deepnotes.nn.word2vec.subsample_keep_prob`), then every remaining position
with at least one neighbour in its verse is one (context, target) example; contexts never cross a
verse boundary.

Training: our own explicit loop (not :class:`deepnotes.train.Trainer`, which is written for
classification with cross-entropy over (x, y) tensors; here an example is a context, a target and
freshly drawn noise words). Adam (default; dense, 7x faster than SparseAdam on a CPU here) or
SparseAdam, cosine learning-rate decay, a checkpoint per epoch (``checkpoints/epoch-NNNN``), exact
resumption with ``--resume RUN`` (the subsampling, data order and noise words of epoch e come from
generators seeded with (seed, e)). Resuming a finished run re-renders the report without training.

Evaluation, always beside the untrained embeddings (same seed, before any update) as the baseline:

* nearest neighbours (cosine of the input embeddings E) of the ``--words``;
* related pairs (our hand-written list :data:`RELATED_PAIRS`, every word checked to occur in the
  KJV): their mean cosine against that of random pairs of frequent words, and the *pair AUC*: the
  share of random frequent words w with cos(a, w) < cos(a, b), averaged over both directions of each
  pair (0.5 for unrelated vectors, 1 when b is closer to a than every random word);
* analogies a : b :: c : d (our tiny list :data:`ANALOGIES`, 3CosAdd, a, b, c excluded): top-1 and
  top-5 accuracy. It is ours, not a standard benchmark, and small: read it as an illustration;
* the validation negative-sampling loss (the untrained model's is exactly (1 + Q) log 2).

Files it leaves in the run folder (beside config.json):
    vocab.json              the words (by count) and their training counts, and the tokenisation
    metrics.csv             one row per epoch: train and validation loss, time
    checkpoints/            the last two epochs (weights, optimizer moments, run state)
    model.safetensors       E (``E.weight``) and M (``M.weight``) after training
    results.json            metrics (trained and untrained), neighbours, loss curve, corpus numbers
    report.md + *.png       the report: loss curve, 2-D map of frequent content words
    eval/<data>.json        from ``deepnotes eval``
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from tqdm import tqdm

from deepnotes.data.splits import verse_split
from deepnotes.data.text import KJV_N_VERSES, Verse, load_kjv
from deepnotes.errors import UserError
from deepnotes.io import atomic_path, write_json_atomic, write_text_atomic
from deepnotes.experiment import Lab, RunContext, read_run_json
from deepnotes.nn.word2vec import (
    CBOW,
    analogy,
    cbow_windows,
    cosine_neighbours,
    noise_distribution,
    sample_negatives,
    subsample_keep_prob,
)
from deepnotes.report import append_metrics_row, markdown_image, markdown_table, new_figure, save_figure
from deepnotes.train.checkpoint import cpu_state_dict, list_checkpoints, load_checkpoint, save_checkpoint
from deepnotes.train.config import option
from deepnotes.train.schedule import lr_at

NAME = "word2vec"

DEFAULT_WORDS = ("god", "king", "jesus", "david", "egypt", "water", "gold", "son", "israel", "sheep", "bread")

# Ours, hand-written for this lab; every word occurs in the KJV (counts in the comments, whole text).
RELATED_PAIRS: tuple[tuple[str, str], ...] = (
    ("father", "mother"),  # 979, 245
    ("son", "daughter"),  # 2370, 324
    ("sons", "daughters"),
    ("brother", "sister"),  # 367, 109
    ("man", "woman"),  # 2614, 360
    ("men", "women"),
    ("king", "queen"),  # 2256, 54
    ("king", "prince"),
    ("gold", "silver"),  # 417, 320
    ("silver", "brass"),
    ("sheep", "goats"),  # 187, 97
    ("oxen", "sheep"),
    ("bread", "wine"),  # 361, 231
    ("bread", "water"),
    ("heaven", "earth"),  # 582, 987
    ("day", "night"),  # 1734, 307
    ("morning", "evening"),
    ("sun", "moon"),
    ("north", "south"),
    ("east", "west"),
    ("sword", "spear"),
    ("horses", "chariots"),
    ("moses", "aaron"),  # 847, 319
    ("david", "saul"),
    ("peter", "john"),
    ("priest", "levites"),
    ("jerusalem", "zion"),
    ("egypt", "babylon"),
)

# Ours: a : b :: c : d. Gender, number, tense, KJV pronoun case and two geographic relations.
ANALOGIES: tuple[tuple[str, str, str, str], ...] = (
    ("man", "woman", "king", "queen"),
    ("father", "mother", "son", "daughter"),
    ("brother", "sister", "son", "daughter"),
    ("man", "woman", "brother", "sister"),
    ("he", "she", "himself", "herself"),
    ("he", "she", "him", "her"),
    ("son", "sons", "daughter", "daughters"),
    ("man", "men", "woman", "women"),
    ("king", "kings", "priest", "priests"),
    ("brother", "brethren", "man", "men"),
    ("go", "went", "come", "came"),
    ("give", "gave", "take", "took"),
    ("say", "said", "speak", "spake"),
    ("thou", "thee", "ye", "you"),
    ("thou", "thy", "ye", "your"),
    ("north", "south", "east", "west"),
    ("jerusalem", "judah", "samaria", "israel"),
)

# Function words left out of the 2-D map: scikit-learn's English stop words plus the KJV's archaic ones.
ARCHAIC_STOP_WORDS = frozenset("""
    thee thou thy thine ye hath hast doth dost art shalt wilt unto saith yea lo behold didst hadst wast
    wert shouldest wouldest couldest mayest canst o shall said let thereof therefore wherefore whereof
    thereto therein hither thither whither whence wherein verily nay aught
""".split())


@dataclass(frozen=True)
class Word2VecConfig:
    embedding_dim: int = option(100, "D, the size of each word vector (E and M)")
    window: int = option(4, "C, context words on each side of the target (within one verse)")
    negatives: int = option(5, "Q, noise words per target (negative sampling)")
    min_count: int = option(5, "rarer words (in the training verses) are dropped from the text")
    subsample: float = option(1e-3, "t of the subsampling of frequent words, keep (sqrt(f/t)+1)t/f (0 disables)")
    noise_power: float = option(0.75, "noise distribution count^power (0.75: Mikolov et al.; 1: unigram)")
    max_verses: int = option(0, "use only the first N verses in canonical order (0: all 31,102)")
    val_fraction: float = option(0.05, "share of the verses held out for the validation loss")
    epochs: int = option(8, "passes over the (freshly subsampled) training windows")
    batch_size: int = option(1024, "examples per update")
    optimizer: Literal["adam", "sparse_adam"] = option(
        "adam", "Adam on the full tables, or SparseAdam on the rows a batch touched (sparse gradients; slower on CPU)")
    lr: float = option(3e-3, "peak learning rate")
    schedule: Literal["constant", "cosine"] = option("cosine", "learning rate over the updates: constant or cosine decay")
    words: tuple[str, ...] = option(DEFAULT_WORDS, "query words of the nearest-neighbour table (comma-separated)")
    neighbours: int = option(8, "nearest neighbours shown per query word")
    reference_words: int = option(1000, "random pairs and the pair AUC use the N most frequent words")
    map_words: int = option(150, "the most frequent content words drawn on the 2-D map")
    projection: Literal["pca", "tsne"] = option("pca", "2-D map of the word vectors: PCA or t-SNE (scikit-learn)")
    threads: int = option(1, "CPU threads of torch during the run (0: torch's default); the operations are small, "
                          "and on a busy 2-core machine 1 thread ran 15x faster than 2")
    seed: int = option(0, "random seed (initial vectors, split, subsampling, order, noise words)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where to train: auto picks CUDA when available")
    progress: bool = option(True, "show a progress bar (only on a terminal)")


PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"max_verses": 3000, "embedding_dim": 32, "min_count": 3, "epochs": 3, "batch_size": 256, "lr": 0.02,
             "reference_words": 300, "map_words": 60},
}


def _validate(cfg: Word2VecConfig) -> None:
    checks = [
        (cfg.embedding_dim >= 1, "--embedding-dim must be >= 1, e.g. 100"),
        (cfg.window >= 1, "--window must be >= 1 (context words on each side), e.g. 4"),
        (cfg.negatives >= 1, "--negatives must be >= 1, e.g. 5"),
        (cfg.min_count >= 1, "--min-count must be >= 1, e.g. 5"),
        (cfg.subsample >= 0, "--subsample must be >= 0 (0 disables subsampling), e.g. 1e-3"),
        (cfg.noise_power >= 0, "--noise-power must be >= 0, e.g. 0.75"),
        (cfg.max_verses >= 0, "--max-verses must be >= 0 (0 uses all verses)"),
        (0 < cfg.val_fraction < 1, "--val-fraction must be in (0, 1), e.g. 0.05"),
        (cfg.epochs >= 1, "--epochs must be >= 1"),
        (cfg.batch_size >= 1, "--batch-size must be >= 1"),
        (cfg.lr > 0 and math.isfinite(cfg.lr), "--lr must be > 0, e.g. 3e-3"),
        (cfg.neighbours >= 1, "--neighbours must be >= 1"),
        (cfg.reference_words >= 10, "--reference-words must be >= 10"),
        (cfg.map_words >= 5, "--map-words must be >= 5"),
        (len(cfg.words) >= 1, "--words needs at least one word, e.g. god,king"),
        (cfg.threads >= 0, "--threads must be >= 0 (0: torch's default)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


# ----------------------------------------------------------------------------------- data
_POSSESSIVE = re.compile(r"'s\b")
_WORD = re.compile(r"[a-z]+")


def tokenize(text: str) -> list[str]:
    """Lowercase words of a text: the possessive ``'s`` dropped, then every maximal run of a-z.

    Example: ``tokenize("And the LORD's anger was kindled.")`` -> ``['and', 'the', 'lord', 'anger', 'was', 'kindled']``.
    """
    return _WORD.findall(_POSSESSIVE.sub("", text.lower()))


@dataclass(frozen=True)
class Vocab:
    """Words ordered by training count (ties alphabetically), their counts, and the inverse map."""

    words: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def stoi(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]], min_count: int) -> "Vocab":
        c = Counter(w for toks in token_lists for w in toks)
        kept = sorted(((w, n) for w, n in c.items() if n >= min_count), key=lambda x: (-x[1], x[0]))
        return cls(tuple(w for w, _ in kept), tuple(n for _, n in kept))


def load_verses(max_verses: int, path: str | None = None) -> tuple[list[Verse], str]:
    """The KJV verses (default the built ``kjv.tsv``; ``path`` another file of its format), first ``max_verses``."""
    verses = load_kjv(path)
    if max_verses:
        verses = verses[:max_verses]
    if len(verses) < 20:
        raise UserError(f"{len(verses)} verses are too few for a train/validation split; raise --max-verses")
    if path is None:
        return verses, f"the KJV (deepnotes data build kjv), {len(verses)} of {KJV_N_VERSES} verses"
    return verses, f"{path}, {len(verses)} verses"


def encode(token_lists: Sequence[Sequence[str]], vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-vocabulary words of each verse as one stream: (N,) ids and (N,) verse numbers (out-of-vocabulary words dropped)."""
    stoi = vocab.stoi
    ids, seg = [], []
    for v, toks in enumerate(token_lists):
        for w in toks:
            i = stoi.get(w)
            if i is not None:
                ids.append(i)
                seg.append(v)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(seg, dtype=torch.long)


def _seed(*parts: int) -> int:
    h = 0
    for p in parts:
        h = (h * 1_000_003 + int(p) + 0x9E3779B9) % (2**63 - 1)
    return h


def epoch_windows(ids: torch.Tensor, seg: torch.Tensor, keep_prob: torch.Tensor, window: int, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Subsample the stream (each token kept with ``keep_prob[id]``, seeded) and cut its CBOW windows."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(len(ids), generator=g, dtype=torch.float64) < keep_prob[ids]
    return cbow_windows(ids[keep], seg[keep], window)


@dataclass
class Corpus:
    vocab: Vocab
    train: tuple[torch.Tensor, torch.Tensor]  # ids, verse numbers
    val: tuple[torch.Tensor, torch.Tensor]
    stats: dict[str, Any]


def prepare(cfg: Word2VecConfig, path: str | None = None, vocab: Vocab | None = None) -> Corpus:
    """Tokenise, split by verse, build (or reuse) the vocabulary and encode both splits."""
    verses, source = load_verses(cfg.max_verses if path is None else 0, path)  # --max-verses cuts the KJV only
    tokens = [tokenize(v.text) for v in verses]
    tr_idx, va_idx = verse_split(len(verses), cfg.val_fraction, cfg.seed)
    tr_tokens = [tokens[i] for i in tr_idx]
    va_tokens = [tokens[i] for i in va_idx]
    if vocab is None:
        vocab = Vocab.build(tr_tokens, cfg.min_count)
        if len(vocab) < 20:
            raise UserError(f"only {len(vocab)} words occur --min-count {cfg.min_count} times; lower --min-count "
                            "or raise --max-verses")
    train, val = encode(tr_tokens, vocab), encode(va_tokens, vocab)
    stats = {
        "source": source, "verses": len(verses), "train_verses": len(tr_idx), "val_verses": len(va_idx),
        "tokens": sum(map(len, tokens)), "distinct_words": len({w for t in tokens for w in t}),
        "vocab_size": len(vocab), "train_tokens_in_vocab": len(train[0]), "val_tokens_in_vocab": len(val[0]),
    }
    return Corpus(vocab, train, val, stats)


# ----------------------------------------------------------------------------------- training
def make_optimizer(cfg: Word2VecConfig, model: CBOW) -> torch.optim.Optimizer:
    if cfg.optimizer == "sparse_adam":
        return torch.optim.SparseAdam(list(model.parameters()), lr=cfg.lr)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def build_model(cfg: Word2VecConfig, vocab_size: int) -> CBOW:
    """The CBOW model with its seeded initial vectors (the untrained baseline is this, before any update)."""
    model = CBOW(vocab_size, cfg.embedding_dim, sparse=cfg.optimizer == "sparse_adam")
    model.reset_parameters(torch.Generator().manual_seed(_seed(cfg.seed, 7)))
    return model


@torch.no_grad()
def validation_loss(model: CBOW, cfg: Word2VecConfig, corpus: Corpus, noise: torch.Tensor, keep_prob: torch.Tensor,
                    device: torch.device, batch_size: int = 4096) -> float:
    """Mean negative-sampling loss on the validation verses, with fixed subsampling and noise words (seeded)."""
    ctx, mask, tgt = epoch_windows(*corpus.val, keep_prob, cfg.window, _seed(cfg.seed, 99))
    if len(tgt) == 0:
        return float("nan")
    g = torch.Generator().manual_seed(_seed(cfg.seed, 98))
    total = 0.0
    for s in range(0, len(tgt), batch_size):
        neg = sample_negatives(noise, (len(tgt[s:s + batch_size]), cfg.negatives), g)
        loss = model(ctx[s:s + batch_size].to(device), tgt[s:s + batch_size].to(device), neg.to(device),
                     mask[s:s + batch_size].to(device), reduction="sum")
        total += float(loss)
    return total / len(tgt)


def train(cfg: Word2VecConfig, ctx: RunContext, corpus: Corpus, model: CBOW) -> dict[str, Any]:
    """The explicit loop: per epoch subsample, window, shuffle; per update draw noise words, step; checkpoint."""
    device = ctx.device
    counts = torch.tensor(corpus.vocab.counts)
    noise = noise_distribution(counts, cfg.noise_power)
    keep_prob = subsample_keep_prob(counts, cfg.subsample)
    model.to(device)
    optimizer = make_optimizer(cfg, model)
    # every epoch has about the same number of windows; the schedule needs a total before training
    n_est = len(epoch_windows(*corpus.train, keep_prob, cfg.window, _seed(cfg.seed, 0, 0))[2])
    steps_per_epoch = max(1, math.ceil(n_est / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "curve": []}
    checkpoints = list_checkpoints(ctx.run_dir)
    if ctx.resume and checkpoints:
        state = load_checkpoint(checkpoints[-1], model, optimizer, device)
        state = {k: state[k] for k in ("epoch", "step", "history", "curve")}
        (ctx.run_dir / "metrics.csv").unlink(missing_ok=True)
        for row in state["history"]:
            append_metrics_row(ctx.run_dir / "metrics.csv", row)
        ctx.log(f"resumed from {checkpoints[-1]} (epoch {state['epoch']}/{cfg.epochs}, update {state['step']})")
    elif ctx.resume:
        ctx.log(f"{ctx.run_dir} has no checkpoint yet (no finished epoch): training from the start")
    show = cfg.progress and sys.stderr.isatty()
    log_every = max(1, steps_per_epoch // 25)  # about 25 points of the loss curve per epoch
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        t0 = time.perf_counter()
        context, mask, target = epoch_windows(*corpus.train, keep_prob, cfg.window, _seed(cfg.seed, epoch, 0))
        g = torch.Generator().manual_seed(_seed(cfg.seed, epoch, 1))
        perm = torch.randperm(len(target), generator=g)
        model.train()
        loss_sum, count, chunk_sum, chunk_n = 0.0, 0, 0.0, 0
        bar = tqdm(total=math.ceil(len(target) / cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not show, leave=False)
        for s in range(0, len(target), cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            lr = lr_at(state["step"], total_steps, cfg.lr, cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            neg = sample_negatives(noise, (len(idx), cfg.negatives), g)  # (B, Q)
            loss = model(context[idx].to(device), target[idx].to(device), neg.to(device), mask[idx].to(device))
            if not torch.isfinite(loss):
                raise UserError(f"the training loss became {float(loss):.4g} at epoch {epoch + 1}, update "
                                f"{state['step'] + 1}; lower --lr (now {cfg.lr:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            value = float(loss.detach())
            loss_sum += value * len(idx)
            count += len(idx)
            chunk_sum += value
            chunk_n += 1
            if chunk_n == log_every:
                state["curve"].append([state["step"], chunk_sum / chunk_n])
                chunk_sum, chunk_n = 0.0, 0
            if show:
                bar.set_postfix(loss=f"{loss_sum / count:.4f}", lr=f"{lr:.3g}")
            bar.update(1)
        bar.close()
        train_time = time.perf_counter() - t0
        model.eval()
        val = validation_loss(model, cfg, corpus, noise, keep_prob, device)
        row = {"epoch": epoch + 1, "step": state["step"], "lr": lr, "train_loss": loss_sum / max(count, 1),
               "val_loss": val, "examples": count, "epoch_time_s": time.perf_counter() - t0,
               "examples_per_s": count / train_time}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        append_metrics_row(ctx.run_dir / "metrics.csv", row)
        save_checkpoint(ctx.run_dir, model, optimizer, state)
        ctx.log(f"epoch {epoch + 1}/{cfg.epochs}  train_loss {row['train_loss']:.4f}  val_loss {val:.4f}  "
                f"{count} windows  {row['examples_per_s']:.0f} windows/s  {row['epoch_time_s']:.1f}s")
    return state


# ----------------------------------------------------------------------------------- evaluation
def _present(vocab: Vocab, groups: Sequence[Sequence[str]]) -> tuple[list[Sequence[str]], list[Sequence[str]]]:
    stoi = vocab.stoi
    ok = [g for g in groups if all(w in stoi for w in g)]
    return ok, [g for g in groups if not all(w in stoi for w in g)]


def embedding_metrics(E: torch.Tensor, vocab: Vocab, cfg: Word2VecConfig) -> dict[str, Any]:
    """Related-pair cosine vs random pairs, the pair AUC and the analogy accuracy of word vectors E (W, D)."""
    stoi = vocab.stoi
    unit = torch.nn.functional.normalize(E.double(), dim=1)
    n_ref = min(cfg.reference_words, len(vocab))
    g = torch.Generator().manual_seed(_seed(cfg.seed, 11))
    ref = torch.arange(n_ref)  # the most frequent words (ids are ordered by count)
    a_rand, b_rand = torch.randint(n_ref, (2, 4000), generator=g)
    distinct = a_rand != b_rand
    random_cos = (unit[a_rand[distinct]] * unit[b_rand[distinct]]).sum(1)
    pairs, missing_pairs = _present(vocab, RELATED_PAIRS)
    pair_rows = []
    for a, b in pairs:
        ia, ib = stoi[a], stoi[b]
        cos = float(unit[ia] @ unit[ib])
        aucs = []
        for x, y in ((ia, ib), (ib, ia)):
            others = ref[(ref != x) & (ref != y)]
            aucs.append(float(((unit[others] @ unit[x]) < float(unit[x] @ unit[y])).double().mean()))
        pair_rows.append({"a": a, "b": b, "cos": cos, "auc": sum(aucs) / 2})
    quads, missing_quads = _present(vocab, ANALOGIES)
    analogy_rows = []
    if quads:
        ids = torch.tensor([[stoi[w] for w in q] for q in quads])
        top = analogy(E, ids[:, 0], ids[:, 1], ids[:, 2], k=min(5, len(vocab) - 3))
        for q, row in zip(quads, top.tolist()):
            analogy_rows.append({"question": list(q), "top5": [vocab.words[i] for i in row],
                                 "top1_ok": row[0] == stoi[q[3]], "top5_ok": stoi[q[3]] in row})
    mean = (lambda xs: float(np.mean(xs)) if xs else float("nan"))
    return {
        "related_cos": mean([r["cos"] for r in pair_rows]),
        "random_cos": float(random_cos.mean()),
        "random_cos_std": float(random_cos.std()),
        "cos_gap": mean([r["cos"] for r in pair_rows]) - float(random_cos.mean()),
        "pair_auc": mean([r["auc"] for r in pair_rows]),
        "analogy_top1": mean([r["top1_ok"] for r in analogy_rows]),
        "analogy_top5": mean([r["top5_ok"] for r in analogy_rows]),
        "pairs": pair_rows, "missing_pairs": [list(p) for p in missing_pairs],
        "analogies": analogy_rows, "missing_analogies": [list(q) for q in missing_quads],
        "reference_words": n_ref,
    }


def neighbour_table(E: torch.Tensor, vocab: Vocab, words: Sequence[str], k: int) -> dict[str, Any]:
    """``{word: [[neighbour, cosine], ...]}`` for the query words in the vocabulary (looked up lowercased, as
    tokenised); ``None`` for the others."""
    stoi = vocab.stoi
    present = [w for w in words if w.lower() in stoi]
    out: dict[str, Any] = {w: None for w in words}
    if present:
        ids, sims = cosine_neighbours(E, torch.tensor([stoi[w.lower()] for w in present]), min(k, len(vocab) - 1))
        for w, row_i, row_s in zip(present, ids.tolist(), sims.tolist()):
            out[w] = [[vocab.words[i], s] for i, s in zip(row_i, row_s)]
    return out


def _all_metrics(model: CBOW, untrained: CBOW, cfg: Word2VecConfig, corpus: Corpus, device: torch.device
                 ) -> dict[str, Any]:
    counts = torch.tensor(corpus.vocab.counts)
    noise = noise_distribution(counts, cfg.noise_power)
    keep_prob = subsample_keep_prob(counts, cfg.subsample)
    out = {}
    for name, m in (("trained", model), ("untrained", untrained)):
        m.to(device).eval()
        E = m.E.weight.detach().cpu()
        out[name] = embedding_metrics(E, corpus.vocab, cfg)
        out[name]["val_loss"] = validation_loss(m, cfg, corpus, noise, keep_prob, device)
        out[name]["neighbours"] = neighbour_table(E, corpus.vocab, cfg.words, cfg.neighbours)
    return out


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    keys = ("val_loss", "pair_auc", "related_cos", "random_cos", "cos_gap", "analogy_top1", "analogy_top5")
    return {f"{name}_{k}": metrics[name][k] for name in ("trained", "untrained") for k in keys}


def _save_weights(model: CBOW, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(cpu_state_dict(model), str(tmp))


def _load_trained(run_dir: Path, cfg: Word2VecConfig, vocab_size: int) -> CBOW:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{weights} is missing: the run did not finish; resume it with "
                        f"`deepnotes run {NAME} --resume {run_dir}`")
    model = build_model(cfg, vocab_size)
    try:
        model.load_state_dict(load_file(str(weights)))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise UserError(f"cannot read {weights}: {e}; re-run the lab") from e
    return model


def _read_vocab(run_dir: Path) -> Vocab:
    data = read_run_json(run_dir / "vocab.json")
    try:
        return Vocab(tuple(data["words"]), tuple(data["counts"]))
    except (KeyError, TypeError) as e:
        raise UserError(f"{run_dir / 'vocab.json'} is malformed ({e}); re-run the lab") from e


def run(cfg: Word2VecConfig, ctx: RunContext) -> dict[str, Any]:
    """Tokenise, train (or resume), evaluate against the untrained vectors, write results and report."""
    _validate(cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, ctx)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Word2VecConfig, ctx: RunContext) -> dict[str, Any]:
    if ctx.info.world_size > 1:
        raise UserError("the word2vec lab runs in one process; launch it without torchrun")
    run_dir = ctx.run_dir
    if ctx.resume and (run_dir / "results.json").is_file() and (run_dir / "model.safetensors").is_file():
        ctx.log(f"{run_dir} already finished ({cfg.epochs} epochs); nothing to train, report re-rendered")
        ctx.log(f"report: {report(run_dir)}")
        return read_run_json(run_dir / "results.json")
    t_start = time.perf_counter()
    corpus = prepare(cfg)
    s = corpus.stats
    ctx.log(f"kjv: {s['verses']} verses, {s['tokens']} words, {s['distinct_words']} distinct; vocabulary "
            f"{s['vocab_size']} words with count >= {cfg.min_count}; {s['train_verses']} training verses, "
            f"{s['val_verses']} validation")
    write_json_atomic(run_dir / "vocab.json", {
        "tokenisation": "lowercase; possessive 's dropped; words = maximal runs of a-z",
        "min_count": cfg.min_count, "words": list(corpus.vocab.words), "counts": list(corpus.vocab.counts)})
    model = build_model(cfg, len(corpus.vocab))
    state = train(cfg, ctx, corpus, model)
    train_time = time.perf_counter() - t_start
    _save_weights(model, run_dir / "model.safetensors")
    metrics = _all_metrics(model, build_model(cfg, len(corpus.vocab)), cfg, corpus, ctx.device)
    results = {
        "metric": "pair_auc", "pair_auc": metrics["trained"]["pair_auc"], **_headline(metrics),
        "corpus": corpus.stats, "untrained_loss_formula": (1 + cfg.negatives) * math.log(2),
        "history": state["history"], "curve": state["curve"], "time_s": train_time, **metrics,
    }
    write_json_atomic(run_dir / "results.json", results)
    tr, un = metrics["trained"], metrics["untrained"]
    ctx.log(f"pair AUC {tr['pair_auc']:.3f} (untrained {un['pair_auc']:.3f}); related-pair cosine "
            f"{tr['related_cos']:.3f} vs random {tr['random_cos']:.3f}; analogies top-1 {tr['analogy_top1']:.3f}, "
            f"top-5 {tr['analogy_top5']:.3f}; val loss {tr['val_loss']:.4f} (untrained {un['val_loss']:.4f})")
    ctx.log(f"report: {report(run_dir)}")
    return results


def evaluate(run_dir: Path, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: recompute every metric from ``model.safetensors`` and ``vocab.json``.

    Args:
        data: None or ``"kjv"`` (the built KJV, cut to the run's ``--max-verses``), or a path to a file
            in ``kjv.tsv`` format (``book<TAB>chapter<TAB>verse<TAB>text``, all its verses); its
            validation verses give the validation loss (same split rule and seed as the run), the
            run's vocabulary is kept.
    Returns:
        Headline numbers (trained and untrained), also saved with the details as ``eval/<name>.json``.
    Raises:
        UserError: not a finished run of this lab, or unreadable data.
    """
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    vocab = _read_vocab(run_dir)
    model = _load_trained(run_dir, cfg, len(vocab))
    path = None if data in (None, "kjv") else data
    if path is not None and not Path(path).is_file():
        raise UserError(f"--data {data!r}: expected `kjv` or a file in kjv.tsv format "
                        "(book<TAB>chapter<TAB>verse<TAB>text, one verse a line)")
    corpus = prepare(cfg, path, vocab)
    metrics = _all_metrics(model, build_model(cfg, len(vocab)), cfg, corpus, device)
    out = {"data": corpus.stats["source"], **_headline(metrics), "details": metrics}
    name = "kjv" if path is None else re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)
    write_json_atomic(run_dir / "eval" / f"{name}.json", out)
    return out


# ----------------------------------------------------------------------------------- report
def plot_loss(results: dict, cfg: Word2VecConfig, path: Path) -> None:
    """Training loss (mean over chunks of updates), validation loss per epoch, and the untrained loss."""
    fig = new_figure(7.5, 4)
    ax = fig.subplots()
    curve = np.array(results["curve"], dtype=float).reshape(-1, 2)
    hist = results["history"]
    steps_per_epoch = hist[0]["step"] if hist else 1
    if len(curve):
        ax.plot(curve[:, 0] / steps_per_epoch, curve[:, 1], color="tab:blue", lw=1, label="training loss (chunks of updates)")
    ax.plot([h["step"] / steps_per_epoch for h in hist], [h["val_loss"] for h in hist], "o-", color="tab:orange",
            label="validation loss (end of epoch)")
    ax.axhline(results["untrained_loss_formula"], color="gray", ls=":",
               label=f"untrained: (1 + Q) log 2 = {results['untrained_loss_formula']:.3f}")
    ax.set(xlabel="epoch", ylabel="negative-sampling loss per word",
           title=f"CBOW on the KJV: D={cfg.embedding_dim}, C={cfg.window}, Q={cfg.negatives}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def content_words(vocab: Vocab, n: int) -> list[int]:
    """Ids of the ``n`` most frequent words that are not stop words (scikit-learn's list + archaic KJV ones)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stop = ENGLISH_STOP_WORDS | ARCHAIC_STOP_WORDS
    return [i for i, w in enumerate(vocab.words) if w not in stop and len(w) > 1][:n]


def plot_map(E: torch.Tensor, vocab: Vocab, cfg: Word2VecConfig, path: Path) -> str:
    """2-D PCA (or t-SNE) of the unit word vectors of the most frequent content words; returns a caption."""
    ids = content_words(vocab, cfg.map_words)
    X = torch.nn.functional.normalize(E[ids].double(), dim=1).numpy()
    if cfg.projection == "tsne":
        from sklearn.manifold import TSNE

        Y = TSNE(n_components=2, perplexity=min(30.0, (len(ids) - 1) / 3), init="pca", metric="cosine",
                 random_state=cfg.seed).fit_transform(X)
        how = "t-SNE (cosine, scikit-learn)"
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=cfg.seed).fit(X)
        Y = pca.transform(X)
        how = f"PCA (scikit-learn), {100 * pca.explained_variance_ratio_.sum():.1f}% of the variance"
    fig = new_figure(11, 9)
    ax = fig.subplots()
    ax.scatter(Y[:, 0], Y[:, 1], s=6, color="tab:blue", alpha=0.5)
    queries = set(cfg.words)
    for (x, y), i in zip(Y, ids):
        w = vocab.words[i]
        ax.annotate(w, (x, y), fontsize=8 if w not in queries else 9, color="tab:red" if w in queries else "black",
                    xytext=(2, 2), textcoords="offset points")
    ax.set(title=f"the {len(ids)} most frequent content words, unit word vectors E, {how}", xticks=[], yticks=[])
    fig.tight_layout()
    save_figure(fig, path)
    return how


def _neighbour_rows(table: dict[str, Any], words: Sequence[str]) -> list[list[str]]:
    """Rows in the order of ``words`` (results.json stores the table with sorted keys)."""
    return [[w, "(not in the vocabulary)" if table.get(w) is None else ", ".join(f"{n} {s:.2f}" for n, s in table[w])]
            for w in words]


def report(run_dir: Path) -> Path:
    """Render ``report.md``, ``loss.png`` and ``map.png``; return the report's path."""
    from deepnotes.experiment import load_config

    run_dir = Path(run_dir)
    _, cfg = load_config(run_dir)
    results = read_run_json(run_dir / "results.json")
    vocab = _read_vocab(run_dir)
    model = _load_trained(run_dir, cfg, len(vocab))
    plot_loss(results, cfg, run_dir / "loss.png")
    how = plot_map(model.E.weight.detach(), vocab, cfg, run_dir / "map.png")
    tr, un = results["trained"], results["untrained"]
    c = results["corpus"]
    hist = results["history"]
    headline = [
        ["validation loss (negative sampling)", tr["val_loss"], un["val_loss"], "lower is better"],
        ["pair AUC (related pair vs random frequent word)", tr["pair_auc"], un["pair_auc"], "0.5 = chance, 1 = best"],
        ["mean cosine of related pairs", tr["related_cos"], un["related_cos"], f"{len(tr['pairs'])} pairs"],
        ["mean cosine of random pairs", tr["random_cos"], un["random_cos"],
         f"among the {tr['reference_words']} most frequent words"],
        ["related minus random cosine", tr["cos_gap"], un["cos_gap"], ""],
        ["analogy top-1 accuracy", tr["analogy_top1"], un["analogy_top1"], f"{len(tr['analogies'])} questions (ours)"],
        ["analogy top-5 accuracy", tr["analogy_top5"], un["analogy_top5"], ""],
    ]
    un_pairs = {(p["a"], p["b"]): p for p in un["pairs"]}
    pair_rows = [[f"{p['a']} / {p['b']}", p["cos"], p["auc"], un_pairs[(p["a"], p["b"])]["cos"],
                  un_pairs[(p["a"], p["b"])]["auc"]] for p in tr["pairs"]]
    analogy_rows = [[" : ".join(a["question"][:2]) + " :: " + a["question"][2] + " : ?", a["question"][3],
                     ", ".join(a["top5"]), "yes" if a["top1_ok"] else ("top-5" if a["top5_ok"] else "no")]
                    for a in tr["analogies"]]
    missing = tr["missing_pairs"] + tr["missing_analogies"]
    lines = [
        f"# {NAME}: CBOW word embeddings with negative sampling on the King James Bible",
        "",
        "EE-559 12-3 (word embeddings): h = mean of the input embeddings E of the 2C neighbours, "
        "loss = -log σ(M_w·h) - Σ_q log σ(-M_{n_q}·h) over Q noise words drawn from count^0.75. "
        f"Data: {c['source']}; {c['tokens']} words ({c['distinct_words']} distinct), tokenised as: lowercase, "
        "possessive 's dropped, words = runs of a-z. "
        f"Vocabulary: the {c['vocab_size']} words seen at least {cfg.min_count} times in the {c['train_verses']} "
        f"training verses ({c['val_verses']} verses held out). Subsampling t = {cfg.subsample:g}, "
        f"D = {cfg.embedding_dim}, C = {cfg.window}, Q = {cfg.negatives}, {cfg.epochs} epochs of batches of "
        f"{cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g} ({cfg.schedule}); {results['time_s']:.0f} s from "
        "tokenising to the end of training.",
        "",
        "## Trained vs untrained embeddings",
        "",
        "The baseline is the same model before its first update (E uniform in ±0.5/D, M = 0). The pairs and "
        "analogies are our own hand-written lists, not a standard benchmark.",
        "",
        markdown_table(["measure", "trained", "untrained", "note"], headline),
        "",
        markdown_image("loss curve", "loss.png"),
        "",
        "## Nearest neighbours (cosine of E)",
        "",
        markdown_table(["word", "trained: nearest words and cosine"], _neighbour_rows(tr["neighbours"], cfg.words)),
        "",
        "Untrained, for comparison (random vectors):",
        "",
        markdown_table(["word", "untrained: nearest words and cosine"],
                       _neighbour_rows(un["neighbours"], [w for w in cfg.words if un["neighbours"].get(w)][:3])),
        "",
        "## Map of the frequent content words",
        "",
        f"{how}; query words in red. Stop words (scikit-learn's English list plus archaic KJV words such as "
        "thee, hath, unto) are left out.",
        "",
        markdown_image("2-D map of word vectors", "map.png"),
        "",
        "## Related pairs",
        "",
        "AUC: share of the random frequent words w with cos(a, w) < cos(a, b), averaged over both directions.",
        "",
        markdown_table(["pair", "cosine", "AUC", "untrained cosine", "untrained AUC"], pair_rows),
        "",
        "## Analogies (3CosAdd: nearest to b - a + c, a, b, c excluded)",
        "",
        markdown_table(["question", "answer", "top 5", "correct"], analogy_rows),
        "",
    ]
    if missing:
        lines += [f"Left out (a word not in this run's vocabulary): {'; '.join('/'.join(m) for m in missing)}.", ""]
    lines += ["## Epochs", "",
              markdown_table(["epoch", "updates", "train loss", "val loss", "windows", "windows/s", "time (s)"],
                             [[h["epoch"], h["step"], h["train_loss"], h["val_loss"], h["examples"],
                               h["examples_per_s"], h["epoch_time_s"]] for h in hist]), ""]
    evals = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    if evals:
        rows = []
        for p in evals:
            e = json.loads(p.read_text())
            rows.append([e["data"], e["trained_val_loss"], e["untrained_val_loss"], e["trained_pair_auc"],
                         e["trained_analogy_top1"]])
        lines += ["## `deepnotes eval` results", "",
                  markdown_table(["data", "val loss", "untrained val loss", "pair AUC", "analogy top-1"], rows), ""]
    config_rows = [[k, ",".join(map(str, v)) if isinstance(v, list) else v]
                   for k, v in json.loads((run_dir / "config.json").read_text())["config"].items()]
    lines += ["## Configuration", "", markdown_table(["field", "value"], config_rows), ""]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


LAB = Lab(
    name=NAME,
    summary="CBOW word2vec with negative sampling on the KJV: neighbours, related-pair similarity, analogies, 2-D map",
    source="EE-559 12-3 word embeddings (CBOW, negative sampling)",
    default_dataset="kjv",
    metric="related-pair AUC vs random words (untrained = 0.5)",
    config_cls=Word2VecConfig,
    run=run,
    evaluate=evaluate,
    report=report,
    presets=PRESETS,
)
