"""How far a keyword-spotting run gets when combined with Debian's pocketsphinx (system combination).

    python benchmarks/kws_pocketsphinx_fusion.py RUN_DIR            # RUN_DIR: a finished keyword-spotting run

pocketsphinx (CMU Sphinx en-us, an acoustic model trained on many real speakers, restricted by a JSGF grammar to
the 35 words) picks one word per clip. The fused decision adds ``weight`` to the model's probability of that word:

    word = argmax_k  p_model(k | clip) + weight * [k == pocketsphinx's word]

so pocketsphinx overrules the model unless the model's probability of its own choice exceeds that of
pocketsphinx's word by more than ``weight`` (0: the model alone; >= 1: pocketsphinx wherever it heard a word).
The weight is chosen on the validation voices; the test voices are only measured. Also printed: the "oracle"
(either system right), an upper bound on any per-clip choice between the two.

Needs ``sudo apt-get install pocketsphinx pocketsphinx-en-us``. Decodes every validation and test clip (about
40 s a split with one worker). Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from deepnotes.audio.frontend import BatchPreparer, FeatureExtractor, SpeechAugment, predict
from deepnotes.data.speech import engines_of, load_split
from deepnotes.data.speech_build import pocketsphinx_recognize
from deepnotes.experiment import Run
from deepnotes.models.kws import SPOTTERS, keyword_spotter
from deepnotes.report import markdown_table
from deepnotes.train.engine import use_cpu_bf16

WEIGHTS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0)


def accuracy(correct: torch.Tensor, engines: list[str] | None) -> str:
    """``"89.41% (espeak-ng 98.93 / festival 88.10 / flite 85.96)"``: overall, then per engine."""
    text = f"{100 * correct.double().mean().item():.2f}%"
    if engines:
        parts = [f"{e} {100 * correct[[i for i, x in enumerate(engines) if x == e]].double().mean().item():.2f}"
                 for e in sorted(set(engines))]
        text += " (" + " / ".join(parts) + ")"
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a finished `deepnotes run keyword-spotting` folder")
    p.add_argument("--workers", type=int, default=2, help="pocketsphinx processes (default 2)")
    args = p.parse_args()
    run, device = Run(args.run_dir), torch.device("cpu")
    cfg, info = run.config, run.read_json("data.json")
    model = run.load_weights(keyword_spotter(cfg.model, len(info["classes"]), cfg.width, cfg.n_mels, cfg.dropout,
                                             cfg.channels_last))
    features = FeatureExtractor(SPOTTERS[cfg.model][1], cfg.n_mels, info["feature_mean"], info["feature_std"],
                                cfg.feature_norm)
    prep = BatchPreparer(features, SpeechAugment(), [], device, use_cpu_bf16(cfg, device), cfg.channels_last)
    classes = info["classes"]
    root = Path(info["root"])
    rows = {}
    for split in ("validation", "test"):
        data = load_split(root, split, classes)
        probs = predict(model, prep, data.clips)
        hyps = pocketsphinx_recognize([root / f for f in data.files], classes, args.workers)
        heard = torch.tensor([classes.index(h) if h is not None else -1 for h in hyps])
        vote = torch.zeros_like(probs)
        vote[heard >= 0, heard[heard >= 0]] = 1.0
        engines = engines_of(root, data.files)
        y = data.labels
        rows[split] = {
            "model": (probs.argmax(-1) == y, engines),
            "pocketsphinx": (heard == y, engines),
            "oracle": ((probs.argmax(-1) == y) | (heard == y), engines),
            **{w: ((probs + w * vote).argmax(-1) == y, engines) for w in WEIGHTS},
        }
    best = max(WEIGHTS, key=lambda w: (rows["validation"][w][0].double().mean().item(), -w))
    table = []
    for key in ("model", "pocketsphinx", "oracle", *WEIGHTS):
        label = key if isinstance(key, str) else f"fused, weight {key:g}" + (" (chosen on validation)" if key == best else "")
        table.append([label, accuracy(*rows["validation"][key]), accuracy(*rows["test"][key])])
    print(f"run {args.run_dir} (model {cfg.model}, seed {cfg.seed}); {len(rows['test']['model'][0])} test clips")
    print(markdown_table(["decision", "validation", "test"], table))


if __name__ == "__main__":
    main()
