"""Decoding settings of a finished translation run, re-decoded from its saved weights (no retraining).

    python benchmarks/translation_decoding.py RUN_DIR MODEL [--alphas 1.0,1.4] [--ngrams 0,3,4] [--betas 0,0.1]
        [--bp-norm] [--all-val]

For every combination of GNMT length penalty alpha, no-repeat n-gram size and coverage penalty beta (and,
with ``--bp-norm``, of BP-Norm in place of alpha: ``log P / |Y|`` plus the log brevity penalty against the
training pairs' target/source length ratio times the source length, Yang et al. 2018) it decodes the run's
own validation sentences (the lab's seeded ``--val-bleu-sentences`` subset; ``--all-val``: every validation
pair) by beam search, picks the best combination on validation BLEU, then decodes the scored test sentences with it and
with the run's own settings (the alpha the lab chose, the run's blocking and coverage penalty), so the test
set chooses nothing. Prints a Markdown table to paste into benchmarks/RESULTS.md with the command that produced it.
One thread by default (``--threads``); a 500-sentence validation pass takes ~10 s on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from deepnotes.data.translation import CorpusSpec, load_translation_data
from deepnotes.experiment import Run
from deepnotes.metrics.translation import score
from deepnotes.models.seq2seq import Translator, model_from_flags
from deepnotes.report import markdown_table


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a finished `deepnotes run translation` folder")
    ap.add_argument("model", help="rnn or transformer (a model of that run)")
    ap.add_argument("--alphas", default="", help="length-penalty alphas, comma-separated (default: the run's choice)")
    ap.add_argument("--ngrams", default="0", help="no-repeat n-gram sizes, comma-separated (0 = off)")
    ap.add_argument("--betas", default="0", help="coverage-penalty betas, comma-separated (0 = off)")
    ap.add_argument("--bp-norm", action="store_true", help="also try BP-Norm (Yang et al. 2018) in place of each alpha")
    ap.add_argument("--all-val", action="store_true", help="decode every validation pair, not the lab's subset")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Run(args.run_dir)
    cfg = run.config
    chosen = float(run.read_json(f"models/{args.model}/result.json")["length_penalty"])
    alphas = _floats(args.alphas) or [chosen]
    norms = [*alphas, "bp"] if args.bp_norm else alphas  # a number = GNMT alpha, "bp" = BP-Norm (last: ties keep alpha)
    grid = list(itertools.product(norms, [int(n) for n in args.ngrams.split(",")], _floats(args.betas)))
    if args.all_val:
        cfg = dataclasses.replace(cfg, val_bleu_sentences=10 ** 9)
    tmp = Path(tempfile.mkdtemp())
    try:  # the lab's data with the run's own tokenizer (load_translation_data writes into the folder it is given)
        shutil.copy(run / "spm.model", tmp / "spm.model")
        data = load_translation_data(CorpusSpec.of(cfg), tmp, reuse_tokenizer=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    device = torch.device("cpu")
    model = run.load_weights(model_from_flags(args.model, cfg, data.tokenizer.vocab_size),
                             f"models/{args.model}/model.safetensors").eval()
    translator = Translator.of(model, data.tokenizer, device, cfg)
    ratio = sum(len(t) + 1 for _, t in data.train) / sum(len(s) for s, _ in data.train)  # EOS on both sides

    def decode(sources, refs, alpha, n, beta):
        t0 = time.perf_counter()
        bp = alpha == "bp"
        hyps = translator.decode(sources, 1.0 if bp else alpha, penalty="average" if bp else "gnmt",
                                 length_ratio=ratio if bp else 0.0, coverage_penalty=beta, no_repeat_ngram_size=n)
        return score(sources, hyps, refs), time.perf_counter() - t0

    val = {}
    for alpha, n, beta in grid:
        val[(alpha, n, beta)], secs = decode(data.val_src, data.val_ref, alpha, n, beta)
        print(f"validation alpha {alpha} n {n} beta {beta:g}: BLEU {val[(alpha, n, beta)]['bleu']:.2f} ({secs:.0f} s)",
              file=sys.stderr, flush=True)
    best = max(val, key=lambda k: val[k]["bleu"])  # max keeps the first of equals
    rows = []
    own = (chosen, cfg.no_repeat_ngram_size, cfg.coverage_penalty)
    for key in dict.fromkeys([own, best]):
        test, _ = decode(data.test_src, data.test_ref, *key)
        v = val.get(key) or decode(data.val_src, data.val_ref, *key)[0]
        ph = "n/a" if test["placeholder_acc"] is None else f"{100 * test['placeholder_acc']:.1f}%"
        rows.append([("the run's own" if key == own else "best on validation"),
                     str(key[0]) if key[0] == "bp" else f"{key[0]:g}", str(key[1]), f"{key[2]:g}",
                     f"{v['bleu']:.2f}", f"{test['bleu']:.2f}",
                     f"{test['chrf']:.1f}", ph])
    print(f"`python benchmarks/translation_decoding.py {run.path} {args.model} --alphas {','.join(f'{a:g}' for a in alphas)} "
          f"--ngrams {args.ngrams} --betas {args.betas}{' --bp-norm' if args.bp_norm else ''}"
          f"{' --all-val' if args.all_val else ''}` ({len(data.val_src)} validation, {len(data.test_src)} test "
          f"sentences, beam {cfg.beam_size}):\n")
    print(f"BP-Norm's target/source length ratio (training pairs): {ratio:.3f}\n" if args.bp_norm else "", end="")
    print(markdown_table(["setting", "alpha (bp = BP-Norm)", "no-repeat n", "beta", "val BLEU", "test BLEU", "test chrF",
                          "placeholders kept"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
