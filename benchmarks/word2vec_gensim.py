"""Benchmark of the word2vec lab's training against gensim's Word2Vec: wall time and pair AUC, side by side.

    OMP_NUM_THREADS=1 python benchmarks/word2vec_gensim.py     # 3 runs each, alternating ours x1, ours x2, gensim
    python benchmarks/word2vec_gensim.py --repeats 21 --workers 2

gensim 4.4 is a benchmark-only dependency (``pip install gensim``; the ``bench`` extra).

Both sides train on the same tokens, the lab's training verses (``deepnotes.labs.word2vec.prepare``: the KJV
tokenised, 95% of the verses, the words seen 5 times in them), with the same settings: CBOW, 100 dimensions,
window 4 (shrunk at random per target, as the C code and gensim do), 5 noise words from count^0.75, min count 5,
subsampling 1e-3, 8 epochs, a learning rate decaying linearly to 0. gensim runs as ``Word2Vec(sg=0, negative=5,
window=4, vector_size=100, min_count=5, sample=1e-3, epochs=8, workers=2)`` (its default start, 0.025;
``--gensim-alpha 0.05`` gives it ours). Ours is what ``deepnotes run word2vec`` trains: the Trainer with a
checkpoint and the validation loss after every epoch, word2vec's SGD on the rows a batch touches
(``--optimizer sgd``, 1,024 examples per update, lr 0.05 as word2vec.c's CBOW, groups of 16 examples sharing
their noise words), ``--threads`` torch threads (default 1, the lab's default), twice: with one worker (the lab's
default, deterministic) and with ``--workers`` Hogwild! workers (``deepnotes run word2vec --workers N``: that many
threads stepping through batches at once without locks, as word2vec.c's threads and gensim's workers do; 8 N batches
per Trainer update). gensim gets the same ``--workers`` (default 2).

Per run: the training wall time (ours: model, batches and ``Trainer.fit``; gensim: the ``Word2Vec(...)`` call,
vocabulary included), its CPU time (the process's, all threads: gensim's workers add up; under load it is the
steadier figure), the whole (the data prepared from the KJV file, training, scoring), and the pair AUC of both
scored with the lab's own ``embedding_metrics`` on the same pairs and random words (gensim's vectors put in our
vocabulary's order). Every run is printed with the load average before and after it. The table gives the median
and min-max of each column, then the ratios of the median training times.

Repeats: the issue's rule for speed figures is >= 21 repeats; a whole training takes 3-10 s here, so the default
is 3 runs of each (alternating, so both see the same machine), about a minute in all; ``--repeats 21`` for the
rule (10 minutes or more). Our runs with one worker are deterministic (same seed, same vectors); with several,
and gensim's with several, they are not (gensim's seed = run number).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from deepnotes.labs.word2vec import Word2VecConfig, batches, build_model, prepare, training
from deepnotes.metrics.embeddings import embedding_metrics
from deepnotes.report import markdown_table
from deepnotes.train import Trainer


def verses_as_words(corpus) -> list[list[str]]:
    """The training stream (in-vocabulary words, verse by verse) as gensim's list of token lists."""
    ids, segment = corpus.train
    cuts = torch.nonzero(segment[1:] != segment[:-1]).squeeze(1) + 1
    words = corpus.vocab.words
    return [[words[i] for i in chunk.tolist()] for chunk in torch.tensor_split(ids, cuts)]


def run_ours(cfg: Word2VecConfig) -> dict[str, float]:  # cfg.workers: 1 or the Hogwild! workers
    t0 = time.perf_counter()
    corpus = prepare(cfg)
    t1, c1 = time.perf_counter(), time.process_time()
    model = build_model(cfg, len(corpus.vocab))
    train, task = training(cfg, corpus, model)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg.train_config(), task, Path(run_dir), train,
                          {"val": batches(cfg, corpus, "val")}, torch.device("cpu"), log=lambda _m: None,
                          lr_schedule=cfg.lr_schedule())
        trainer.fit()
    t2, c2 = time.perf_counter(), time.process_time()
    auc = embedding_metrics(model.E.weight.detach(), corpus.vocab.words, cfg.reference_words, cfg.seed)["pair_auc"]
    return {"train_s": t2 - t1, "train_cpu_s": c2 - c1, "whole_s": time.perf_counter() - t0, "pair_auc": auc}


def run_gensim(cfg: Word2VecConfig, seed: int, workers: int, alpha: float) -> dict[str, float]:
    from gensim.models import Word2Vec

    t0 = time.perf_counter()
    corpus = prepare(cfg)
    sentences = verses_as_words(corpus)
    t1, c1 = time.perf_counter(), time.process_time()
    model = Word2Vec(sentences, sg=0, negative=cfg.negatives, window=cfg.window, vector_size=cfg.embedding_dim,
                     min_count=cfg.min_count, sample=cfg.subsample, epochs=cfg.epochs, workers=workers, seed=seed,
                     alpha=alpha)
    t2, c2 = time.perf_counter(), time.process_time()
    E = torch.from_numpy(model.wv[list(corpus.vocab.words)].copy())  # our vocabulary's order: most frequent first
    auc = embedding_metrics(E, corpus.vocab.words, cfg.reference_words, cfg.seed)["pair_auc"]
    return {"train_s": t2 - t1, "train_cpu_s": c2 - c1, "whole_s": time.perf_counter() - t0, "pair_auc": auc}


def spread(xs: list[float], fmt: str) -> str:
    xs = sorted(xs)
    return f"{xs[len(xs) // 2]:{fmt}} ({xs[0]:{fmt}}-{xs[-1]:{fmt}})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, alternating (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of ours (default 1, the lab's default)")
    ap.add_argument("--workers", type=int, default=2,
                    help="gensim's worker threads and ours in the second of our rows (default 2)")
    ap.add_argument("--gensim-alpha", type=float, default=0.025,
                    help="gensim's starting learning rate (default 0.025, gensim's default; ours is word2vec.c's 0.05)")
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"),
                    help="ours: sgd (the default, fast) or adam (the readable path, with --lr 3e-3 --schedule cosine)")
    args = ap.parse_args(argv)
    try:
        import gensim
    except ImportError:
        print("gensim is not installed: pip install gensim (the bench extra)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = replace(Word2VecConfig(), threads=args.threads, progress=False, optimizer=args.optimizer,
                  **({"lr": 3e-3, "schedule": "cosine"} if args.optimizer == "adam" else {}))
    print(f"torch {torch.__version__}, gensim {gensim.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; ours: {args.threads} thread(s), --optimizer {args.optimizer}, batch "
          f"{cfg.batch_size}; gensim: {args.workers} workers", flush=True)
    ours = f"ours x{args.workers}"
    rows: dict[str, list[dict[str, float]]] = {"ours x1": [], ours: [], "gensim": []}
    for r in range(args.repeats):
        for name in rows:
            before = os.getloadavg()
            out = (run_ours(replace(cfg, workers=1 if name == "ours x1" else args.workers)) if name != "gensim"
                   else run_gensim(cfg, seed=r + 1, workers=args.workers, alpha=args.gensim_alpha))
            after = os.getloadavg()
            out["load"] = max(before[0], after[0])
            rows[name].append(out)
            print(f"run {r + 1} {name:8s}: training {out['train_s']:6.2f} s ({out['train_cpu_s']:5.2f} CPU-s), "
                  f"whole {out['whole_s']:6.2f} s, "
                  f"pair AUC {out['pair_auc']:.4f}; load average {before[0]:.2f} before, {after[0]:.2f} after",
                  flush=True)
    table = [[name, spread([o["train_s"] for o in runs], ".2f"), spread([o["train_cpu_s"] for o in runs], ".2f"),
              spread([o["whole_s"] for o in runs], ".2f"),
              spread([o["pair_auc"] for o in runs], ".4f"), spread([o["load"] for o in runs], ".2f")]
             for name, runs in rows.items()]
    print()
    headers = ["", "training s, median (min-max)", "training CPU-s (all threads)", "whole s", "pair AUC",
               "load average (max of before/after)"]
    print(markdown_table(headers, table))
    med = {name: sorted(o["train_s"] for o in runs)[len(runs) // 2] for name, runs in rows.items()}
    cpu = {name: sorted(o["train_cpu_s"] for o in runs)[len(runs) // 2] for name, runs in rows.items()}
    print()
    for name in ("ours x1", ours):
        print(f"{name} / gensim x{args.workers}, median training time: {med[name] / med['gensim']:.2f}x wall, "
              f"{cpu[name] / cpu['gensim']:.2f}x CPU time ({args.repeats} runs each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
