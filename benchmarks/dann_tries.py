"""DANN tries on one shift and one seed, through the domain-adaptation lab's own training function.

    python benchmarks/dann_tries.py SHIFT VARIANT UPDATES BATCH METHODS [ENTROPY_WEIGHT]

SHIFT e.g. mnist-subset:mnist-m; VARIANT a label, or ``deepdc`` for a deeper domain classifier (768-500-500-1);
METHODS comma-separated from source-only, dann, target. Prints the target and source test accuracy of each model.
One thread. These set the lab's defaults; the lab's result is its full run.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

from deepnotes.experiment import RunContext
from deepnotes.labs import domain_adaptation as da
from deepnotes.nn.domain import DANN


def deep_domain_classifier(in_channels: int = 3, num_classes: int = 10, hidden: int = 100,
                           lambd: float = 1.0) -> DANN:
    """Ganin's digit DANN with a deeper domain classifier, 768-500-500-1."""
    model = BUILD(in_channels, num_classes, hidden, lambd)
    model.domain_classifier = nn.Sequential(nn.Linear(768, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(),
                                            nn.Linear(500, 1))
    return model


BUILD = DANN.for_digits


def main() -> None:
    torch.set_num_threads(1)
    shift, variant, updates, batch, methods = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    cfg = da.DomainAdaptationConfig(shifts=(shift,), seeds=(0,), epochs=updates // 100, steps_per_epoch=100,
                                    batch_size=batch, few_target=0, dg_domains=(), tsne_images=0, progress=False,
                                    entropy_weight=float(sys.argv[6]) if len(sys.argv) > 6 else 0.0)
    src, tgt = da.load_domain(shift.split(":")[0], cfg), da.load_domain(shift.split(":")[1], cfg)
    ctx = RunContext(Path(f"/tmp/dann_tries/{variant}-{updates}-{batch}-{time.time():.0f}"), torch.device("cpu"))
    if variant.startswith("deepdc"):
        da.DANN.for_digits = staticmethod(deep_domain_classifier)
    t0 = time.time()
    for method in methods.split(","):
        train, val = (tgt["train"], tgt["val"]) if method == "target" else (src["train"], src["val"])
        model = da.train_model(cfg, ctx.run_dir / method, 0, train, val, tgt["train"][0], method == "dann", ctx)
        print(variant, updates, batch, method, f"target {100 * da.accuracy(model, *tgt['test'], ctx.device):.1f}",
              f"source {100 * da.accuracy(model, *src['test'], ctx.device):.1f}", f"{time.time() - t0:.0f}s",
              flush=True)


if __name__ == "__main__":
    main()
