"""Lab ``word2vec``: CBOW word embeddings with negative sampling, trained on the King James Bible.

Source: EE-559 (Fleuret) 12-3 "Word embeddings and translation": CBOW predicts a word from the average input
embedding of its 2C neighbours; negative sampling replaces the W-way softmax by one true word against Q noise
words (:mod:`deepnotes.nn.word2vec`). Words of the same kind should end up close together: the lab checks that
against the same embeddings before training (:mod:`deepnotes.metrics.embeddings`).

Data (:mod:`deepnotes.data.text`): the KJV verses tokenised, a vocabulary of the words seen ``--min-count``
times in the training verses, ``--val-fraction`` of the verses for a validation loss; each epoch subsamples
frequent words afresh and cuts every (context, target) window inside a verse
(:class:`~deepnotes.data.text.CBOWBatches`).
Training: :class:`deepnotes.train.Trainer` with :class:`~deepnotes.nn.word2vec.NegativeSamplingTask`, exact
resumption. By default word2vec's own recipe, the fast path: plain SGD on the rows a batch touches
(:func:`~deepnotes.nn.word2vec.cbow_sgd_step`), the learning rate decaying linearly, the C code's random window;
``--optimizer adam`` (or ``sparse_adam``) trains the readable path, autograd on :class:`~deepnotes.nn.word2vec.CBOW`
(use ``--lr 3e-3 --schedule cosine`` with it). :class:`~deepnotes.metrics.curves.LossCurve` keeps the loss every
chunk of updates. Resuming a finished run re-renders the report without training.

Run folder: config.json, vocab.json, metrics.csv, curve.json, checkpoints/, model.safetensors (E and M),
results.json (trained and untrained metrics, neighbours, loss curve, corpus), report.md + PNGs, eval/.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from deepnotes.data.text import KJV_N_VERSES, CBOWBatches, WordCorpus, WordVocab, load_kjv, word_corpus
from deepnotes.errors import UserError
from deepnotes.experiment import Lab, Report, Run, RunConfig, RunContext, option
from deepnotes.metrics.curves import LossCurve
from deepnotes.metrics.embeddings import content_words, embedding_metrics, neighbour_table, project_2d
from deepnotes.models.registry import create_model
from deepnotes.nn.word2vec import CBOW, NegativeSamplingTask, noise_distribution, subsample_keep_prob, word2vec_lr
from deepnotes.report import markdown_table, new_figure, save_figure
from deepnotes.train import TrainConfig, Trainer
from deepnotes.train.batches import ChunkedBatches, seed_for
from deepnotes.train.checkpoint import list_checkpoints

DEFAULT_WORDS = ("god", "king", "jesus", "david", "egypt", "water", "gold", "son", "israel", "sheep", "bread")


@dataclass(frozen=True)
class Word2VecConfig(RunConfig):
    """Corpus, model, training and evaluation settings of the word2vec lab."""

    embedding_dim: int = option(100, "D, the size of each word vector (E and M)", range="[1, 4096]")
    window: int = option(4, "C, context words on each side of the target (within one verse)", range="[1, 50]")
    negatives: int = option(5, "Q, noise words per target (negative sampling)", range="[1, 100]")
    min_count: int = option(5, "rarer words (in the training verses) are dropped from the text",
                            range="[1, 1000000000]")
    subsample: float = option(1e-3, "t of the subsampling of frequent words, keep (sqrt(f/t)+1)t/f (0 disables)",
                              range="[0, 1]")
    noise_power: float = option(0.75, "noise distribution count^power (0.75: Mikolov et al.; 1: unigram)",
                                range="[0, 10]")
    max_verses: int = option(0, "use only the first N verses in canonical order (0: all 31,102)",
                             range="[0, 1000000000]")
    val_fraction: float = option(0.05, "share of the verses held out for the validation loss", range="(0, 1)")
    epochs: int = option(8, "passes over the (freshly subsampled) training windows", range="[1, 100000]")
    shrink_window: bool = option(True, "the C code's random window: each target's reach drawn in 1..C (near "
                                 "neighbours count more); --no-shrink-window: always C")
    share_negatives: int = option(16, "G: each run of G examples of a batch shares its Q noise words (still Q draws "
                                  "per example; the sgd path gathers them once per group); 1: independent draws",
                                  range="[1, 4096]")
    batch_size: int = option(1024, "examples per update", range="[1, 1000000]")
    optimizer: Literal["sgd", "adam", "sparse_adam"] = option(
        "sgd", "sgd: word2vec's closed-form SGD on the rows a batch touched (fast); adam: autograd and Adam "
        "(readable); sparse_adam: SparseAdam")
    lr: float = option(0.05, "peak learning rate (0.05: word2vec.c's for CBOW, with sgd; adam wants about 3e-3)",
                       range="(0, inf)")
    schedule: Literal["linear", "constant", "cosine"] = option(
        "linear", "learning rate over the updates: linear decay to 0 (word2vec's), constant, or cosine decay")
    words: tuple[str, ...] = option(DEFAULT_WORDS, "query words of the nearest-neighbour table (comma-separated)",
                                    nonempty=True)
    neighbours: int = option(8, "nearest neighbours shown per query word", range="[1, 1000]")
    reference_words: int = option(1000, "random pairs and the pair AUC use the N most frequent words",
                                  range="[10, 1000000000]")
    map_words: int = option(150, "the most frequent content words drawn on the 2-D map", range="[5, 100000]")
    projection: Literal["pca", "tsne"] = option("pca", "2-D map of the word vectors: PCA or t-SNE (scikit-learn)")
    threads: int = option(1, "CPU threads of torch (0: torch's default); the operations are small, so 1 is fastest")
    workers: int = option(1, "threads updating the vectors at once without locks (Hogwild!, as word2vec.c and "
                          "gensim's workers; sgd only): 2 on 2 cores trains faster; 1 is reproducible", range="[1, 64]")

    def train_config(self) -> TrainConfig:
        """The Trainer's settings: this lab's epochs, lr and schedule (no warm-up), full precision."""
        schedule = "constant" if self.schedule == "linear" else self.schedule  # linear: lr_schedule() below
        return TrainConfig(seed=self.seed, device=self.device, progress=self.progress, threads=self.threads,
                           epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, schedule=schedule,
                           warmup=0.0, amp=False)

    def lr_schedule(self) -> Callable[[int, int], float] | None:
        """The Trainer's ``lr_schedule``: word2vec's linear decay (:func:`~deepnotes.nn.word2vec.word2vec_lr`), or
        None for the Trainer's own constant and cosine schedules."""
        return (lambda step, total: word2vec_lr(step, total, self.lr)) if self.schedule == "linear" else None


PRESETS: dict[str, dict[str, Any]] = {"fast": {"max_verses": 3000, "embedding_dim": 32, "min_count": 3, "epochs": 3,
                                               "batch_size": 256, "lr": 0.1, "reference_words": 300, "map_words": 60}}


def prepare(cfg: Word2VecConfig, path: str | None = None, vocab: WordVocab | None = None) -> WordCorpus:
    """The KJV (``path``: another file of its format, all its verses) split and encoded; UserError when too small."""
    verses = load_kjv(path)
    if path is None and cfg.max_verses:  # --max-verses cuts the KJV only
        verses = verses[: cfg.max_verses]
    if len(verses) < 20:
        raise UserError(f"{len(verses)} verses are too few for a train/validation split; raise --max-verses")
    corpus = word_corpus(verses, cfg.val_fraction, cfg.seed, cfg.min_count, vocab)
    if len(corpus.vocab) < 20:
        raise UserError(f"only {len(corpus.vocab)} words occur --min-count {cfg.min_count} times; lower --min-count "
                        "or raise --max-verses")
    source = (f"the KJV (deepnotes data build kjv), {len(verses)} of {KJV_N_VERSES} verses" if path is None
              else f"{path}, {len(verses)} verses")
    corpus.stats = {"source": source, **corpus.stats}
    return corpus


def build_model(cfg: Word2VecConfig, vocab_size: int) -> CBOW:
    """The CBOW model with its seeded initial vectors (the untrained baseline is this, before any update)."""
    return create_model("cbow", vocab_size=vocab_size, embedding_dim=cfg.embedding_dim,
                        sparse=cfg.optimizer == "sparse_adam", init_seed=seed_for(cfg.seed, 7))


def batches(cfg: Word2VecConfig, corpus: WordCorpus, split: str) -> CBOWBatches:
    """Training (``split="train"``) or validation batches of the corpus."""
    counts = torch.tensor(corpus.vocab.counts)
    noise, keep_prob = noise_distribution(counts, cfg.noise_power), subsample_keep_prob(counts, cfg.subsample)
    ids, segment = corpus.train if split == "train" else corpus.val
    return CBOWBatches(ids, segment, keep_prob, noise, cfg.window, cfg.negatives,
                       cfg.batch_size if split == "train" else 4096, cfg.seed, train=split == "train",
                       shrink=cfg.shrink_window, share_negatives=cfg.share_negatives if split == "train" else 1)


HOGWILD_BATCHES_PER_WORKER = 8  # with --workers N, one Trainer update is 8 N batches split among the workers


def training(cfg: Word2VecConfig, corpus: WordCorpus, model: CBOW, device: torch.device | str = "cpu"
             ) -> tuple[CBOWBatches | ChunkedBatches, NegativeSamplingTask]:
    """The training batch source and task of ``cfg``: with ``workers`` > 1, lists of
    ``HOGWILD_BATCHES_PER_WORKER * workers`` batches, each stepped through by the workers at once
    (:func:`~deepnotes.nn.word2vec.cbow_hogwild_steps`), at the lr of its Trainer update.

    Raises:
        UserError: ``workers`` > 1 without ``optimizer="sgd"``.
    """
    if cfg.workers > 1 and cfg.optimizer != "sgd":
        raise UserError(f"--workers {cfg.workers} needs --optimizer sgd (the Hogwild! workers run word2vec's own "
                        f"update); use --workers 1 with --optimizer {cfg.optimizer}")
    train: CBOWBatches | ChunkedBatches = batches(cfg, corpus, "train")
    if cfg.workers > 1:
        train = ChunkedBatches(train, HOGWILD_BATCHES_PER_WORKER * cfg.workers)
    task = NegativeSamplingTask(model, device, update="sgd" if cfg.optimizer == "sgd" else "autograd",
                                shared_negatives=cfg.share_negatives, workers=cfg.workers)
    return train, task


def all_metrics(model: CBOW, cfg: Word2VecConfig, corpus: WordCorpus, device: torch.device
                ) -> tuple[dict[str, Any], dict[str, float]]:
    """Embedding metrics, validation loss and neighbours of the trained model and of the untrained one (the same
    seed before any update), and the headline numbers ``trained_pair_auc``, ``untrained_val_loss``, ..."""
    words, out = corpus.vocab.words, {}
    for name, m in (("trained", model), ("untrained", build_model(cfg, len(words)))):
        E = m.E.weight.detach().cpu()
        out[name] = embedding_metrics(E, words, cfg.reference_words, cfg.seed)
        out[name]["val_loss"] = NegativeSamplingTask(m, device).mean_loss(batches(cfg, corpus, "val"))
        out[name]["neighbours"] = neighbour_table(E, words, cfg.words, cfg.neighbours)
    keys = ("val_loss", "pair_auc", "related_cos", "random_cos", "cos_gap", "analogy_top1", "analogy_top5")
    return out, {f"{name}_{k}": out[name][k] for name in out for k in keys}


def _load(run: Run) -> tuple[Word2VecConfig, WordVocab, CBOW]:
    try:
        vocab = WordVocab(*(tuple(run.read_json("vocab.json")[k]) for k in ("words", "counts")))
    except (KeyError, TypeError) as e:
        raise UserError(f"{run / 'vocab.json'} is malformed ({e}); re-run the lab") from e
    return run.config, vocab, run.load_weights(build_model(run.config, len(vocab)))


def run(cfg: Word2VecConfig, ctx: RunContext) -> dict[str, Any]:
    """Tokenise, train (or resume), evaluate against the untrained vectors, write results and report."""
    if ctx.info.world_size > 1:
        raise UserError("the word2vec lab runs in one process; launch it without torchrun")
    folder = Run(ctx.run_dir)
    if ctx.resume and (folder / "results.json").is_file() and (folder / "model.safetensors").is_file():
        ctx.log(f"{folder.path} already finished ({cfg.epochs} epochs); nothing to train, report re-rendered")
        ctx.log(f"report: {report(folder)}")
        return folder.read_json("results.json")
    t_start = time.perf_counter()
    corpus = prepare(cfg)
    s = corpus.stats
    ctx.log(f"kjv: {s['verses']} verses, {s['tokens']} words, {s['distinct_words']} distinct; vocabulary "
            f"{s['vocab_size']} words with count >= {cfg.min_count}; {s['train_verses']} training verses, "
            f"{s['val_verses']} validation")
    folder.write_json("vocab.json", {
        "tokenisation": "lowercase; possessive 's dropped; words = maximal runs of a-z",
        "min_count": cfg.min_count, "words": list(corpus.vocab.words), "counts": list(corpus.vocab.counts)})
    model = build_model(cfg, len(corpus.vocab))
    train, task = training(cfg, corpus, model, ctx.device)
    curve = LossCurve(folder / "curve.json", max(1, len(train) // 25))  # about 25 points per epoch
    trainer = Trainer(cfg.train_config(), task, folder.path, train, {"val": batches(cfg, corpus, "val")}, ctx.device,
                      ctx.info, ctx.log, lr_schedule=cfg.lr_schedule(), callbacks=[curve])
    if ctx.resume and list_checkpoints(folder.path):  # else (killed before its first epoch ended): from the start
        trainer.resume()
    trainer.fit()
    train_time = time.perf_counter() - t_start
    metrics, headline = all_metrics(model, cfg, corpus, ctx.device)
    results = {"metric": "pair_auc", "pair_auc": metrics["trained"]["pair_auc"], **headline,
               "corpus": corpus.stats, "untrained_loss_formula": (1 + cfg.negatives) * math.log(2),
               "history": trainer.history, "curve": curve.points(trainer.step), "time_s": train_time, **metrics}
    folder.write_json("results.json", results)
    tr, un = metrics["trained"], metrics["untrained"]
    ctx.log(f"pair AUC {tr['pair_auc']:.3f} (untrained {un['pair_auc']:.3f}); related-pair cosine "
            f"{tr['related_cos']:.3f} vs random {tr['random_cos']:.3f}; analogies top-1 {tr['analogy_top1']:.3f}, "
            f"top-5 {tr['analogy_top5']:.3f}; val loss {tr['val_loss']:.4f} (untrained {un['val_loss']:.4f})")
    ctx.log(f"report: {report(folder)}")
    return results


def evaluate(run: Run, data: str | None, device: torch.device) -> dict[str, Any]:
    """``deepnotes eval``: recompute every metric from ``model.safetensors`` and ``vocab.json``.

    Args:
        data: None or ``"kjv"`` (the built KJV, cut to the run's ``--max-verses``), or a file in ``kjv.tsv``
            format (``book<TAB>chapter<TAB>verse<TAB>text``, all its verses): its validation verses (same split
            rule and seed as the run) give the validation loss; the run's vocabulary is kept.
    Returns:
        Headline numbers (trained and untrained), also saved with the details as ``eval/<name>.json``.
    Raises:
        UserError: not a finished run of this lab, or unreadable data.
    """
    cfg, vocab, model = _load(run := Run(run))
    path = None if data in (None, "kjv") else data
    if path is not None and not Path(path).is_file():
        raise UserError(f"--data {data!r}: expected `kjv` or a file in kjv.tsv format "
                        "(book<TAB>chapter<TAB>verse<TAB>text, one verse a line)")
    corpus = prepare(cfg, path, vocab)
    metrics, headline = all_metrics(model, cfg, corpus, device)
    out = {"data": corpus.stats["source"], **headline, "details": metrics}
    run.write_eval("kjv" if path is None else re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem), out)
    return out


def _plot_loss(results: dict, cfg: Word2VecConfig, path: Path) -> None:
    fig = new_figure(7.5, 4)
    ax = fig.subplots()
    curve, hist = np.array(results["curve"], dtype=float).reshape(-1, 2), results["history"]
    per_epoch = hist[0]["step"] if hist else 1
    if len(curve):
        ax.plot(curve[:, 0] / per_epoch, curve[:, 1], color="tab:blue", lw=1, label="training loss (chunks of updates)")
    ax.plot([h["step"] / per_epoch for h in hist], [h["val_loss"] for h in hist], "o-", color="tab:orange",
            label="validation loss (end of epoch)")
    ax.axhline(results["untrained_loss_formula"], color="gray", ls=":",
               label=f"untrained: (1 + Q) log 2 = {results['untrained_loss_formula']:.3f}")
    ax.set(xlabel="epoch", ylabel="negative-sampling loss per word",
           title=f"CBOW on the KJV: D={cfg.embedding_dim}, C={cfg.window}, Q={cfg.negatives}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_map(E: torch.Tensor, words: tuple[str, ...], cfg: Word2VecConfig, path: Path) -> str:
    """2-D PCA (or t-SNE) of the unit vectors of the most frequent content words; returns a caption."""
    ids = content_words(words, cfg.map_words)
    Y, how = project_2d(torch.nn.functional.normalize(E[ids].double(), dim=1).numpy(), cfg.projection, cfg.seed)
    fig = new_figure(11, 9)
    ax = fig.subplots()
    ax.scatter(Y[:, 0], Y[:, 1], s=6, color="tab:blue", alpha=0.5)
    for (x, y), i in zip(Y, ids):
        query = words[i] in cfg.words
        ax.annotate(words[i], (x, y), fontsize=9 if query else 8, color="tab:red" if query else "black",
                    xytext=(2, 2), textcoords="offset points")
    ax.set(title=f"the {len(ids)} most frequent content words, unit word vectors E, {how}", xticks=[], yticks=[])
    save_figure(fig, path)
    return how


def _neighbour_rows(table: dict[str, Any], words: tuple[str, ...]) -> list[list[str]]:
    return [[w, ", ".join(f"{n} {s:.2f}" for n, s in table[w]) if table.get(w) else "(not in the vocabulary)"]
            for w in words]


def report(run: Run) -> Path:
    """Render ``report.md``, ``loss.png`` and ``map.png``; return the report's path."""
    cfg, vocab, model = _load(run := Run(run))
    results = run.read_json("results.json")
    _plot_loss(results, cfg, run / "loss.png")
    how = _plot_map(model.E.weight.detach(), vocab.words, cfg, run / "map.png")
    tr, un, c = results["trained"], results["untrained"], results["corpus"]
    rep = Report(run, "word2vec: CBOW word embeddings with negative sampling on the King James Bible",
                 "EE-559 12-3 (word embeddings): h = mean of the input embeddings E of the 2C neighbours, "
                 "loss = -log σ(M_w·h) - Σ_q log σ(-M_{n_q}·h) over Q noise words drawn from count^0.75. "
                 f"Data: {c['source']}; {c['tokens']} words ({c['distinct_words']} distinct; lowercase, possessive "
                 f"'s dropped, words = runs of a-z); vocabulary: the {c['vocab_size']} words seen {cfg.min_count} "
                 f"times in the {c['train_verses']} training verses ({c['val_verses']} held out); "
                 f"{results['time_s']:.0f} s from tokenising to the end of training (settings: see Configuration).")
    rep.results([
        ["validation loss (negative sampling)", tr["val_loss"], un["val_loss"], "lower is better"],
        ["pair AUC (related pair vs random frequent word)", tr["pair_auc"], un["pair_auc"], "0.5 = chance, 1 = best"],
        ["mean cosine of related pairs", tr["related_cos"], un["related_cos"], f"{len(tr['pairs'])} pairs"],
        ["mean cosine of random pairs", tr["random_cos"], un["random_cos"],
         f"among the {tr['reference_words']} most frequent words"],
        ["related minus random cosine", tr["cos_gap"], un["cos_gap"], ""],
        ["analogy top-1 accuracy", tr["analogy_top1"], un["analogy_top1"], f"{len(tr['analogies'])} questions (ours)"],
        ["analogy top-5 accuracy", tr["analogy_top5"], un["analogy_top5"], ""],
    ], headers=["measure", "trained", "untrained", "note"],
        note="The baseline is the same model before its first update (E uniform in ±0.5/D, M = 0). The pairs and "
             "analogies are our own hand-written lists, not a standard benchmark.")
    rep.figure("Loss curve", "loss.png")
    rep.section("Nearest neighbours (cosine of E)",
                markdown_table(["word", "trained: nearest words and cosine"],
                               _neighbour_rows(tr["neighbours"], cfg.words)),
                "Untrained, for comparison (random vectors):",
                markdown_table(["word", "untrained: nearest words and cosine"],
                               _neighbour_rows(un["neighbours"],
                                               tuple(w for w in cfg.words if un["neighbours"].get(w))[:3])))
    rep.figure("Map of the frequent content words", "map.png", "2-D map of word vectors",
               note=f"{how}; query words in red. Stop words (scikit-learn's English list plus archaic KJV words such "
                    "as thee, hath, unto) are left out.")
    un_pairs = {(p["a"], p["b"]): p for p in un["pairs"]}
    rep.table("Related pairs", ["pair", "cosine", "AUC", "untrained cosine", "untrained AUC"],
              [[f"{p['a']} / {p['b']}", p["cos"], p["auc"], *(un_pairs[(p["a"], p["b"])][k] for k in ("cos", "auc"))]
               for p in tr["pairs"]],
              note="AUC: share of the random frequent words w with cos(a, w) < cos(a, b), averaged over both "
                   "directions.")
    missing = tr["missing_pairs"] + tr["missing_analogies"]
    rep.section("Analogies (3CosAdd: nearest to b - a + c, a, b, c excluded)", markdown_table(
        ["question", "answer", "top 5", "correct"],
        [[" : ".join(a["question"][:2]) + " :: " + a["question"][2] + " : ?", a["question"][3], ", ".join(a["top5"]),
          "yes" if a["top1_ok"] else ("top-5" if a["top5_ok"] else "no")] for a in tr["analogies"]]),
        *([f"Left out (a word not in this run's vocabulary): {'; '.join('/'.join(m) for m in missing)}."]
          if missing else []))
    return rep.write(eval_row=lambda e: {"data": e["data"], "val loss": e["trained_val_loss"],
                                         "untrained val loss": e["untrained_val_loss"],
                                         "pair AUC": e["trained_pair_auc"], "analogy top-1": e["trained_analogy_top1"]})


LAB = Lab(name="word2vec", default_dataset="kjv", metric="related-pair AUC vs random words (untrained = 0.5)",
            summary="CBOW word2vec with negative sampling on the KJV: neighbours, related-pair "
          "similarity, analogies, 2-D map",
            source="EE-559 12-3 word embeddings (CBOW, negative sampling)",
            config_cls=Word2VecConfig, run=run, evaluate=evaluate, report=report, presets=PRESETS)
