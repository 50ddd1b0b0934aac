"""Benchmark of MAE pre-training against supervised ViT training: images/s of one update each, alternating.

    python benchmarks/mae_throughput.py                     # the vit-mae lab's sizes, batch 256, 2 threads, 21 rounds
    python benchmarks/mae_throughput.py --threads 1 --repeats 5 --updates 2   # a quick look

One update = forward, loss, backward, AdamW step on a batch of random 28x28 grey images (timings do not depend on the
pixels), in float32 (the lab adds bf16 autocast where the CPU has it): the MAE (the lab's defaults: patch 4,
d_model 64, 4 blocks, 4 heads, decoder 32 wide with 2 blocks, 75% masked, :class:`deepnotes.nn.vit.MAE`) against
the ViT of the same encoder trained with cross-entropy (the baseline: what the scratch and finetune rungs run), and
the linear probe (encoder frozen, head only). The rounds
alternate the three, ``--updates`` updates each per round after one warm-up round; reported: the median and min-max
of images/s over ``--repeats`` rounds and each one's ratio to the ViT's median. The MAE's encoder sees a quarter of the
patches, so it should run faster than the ViT (He et al. 2022: "3x or more"). Load average before and after.
"""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Callable

import torch
import torch.nn.functional as F

from deepnotes.nn.vit import MAE, ViT
from deepnotes.report import markdown_table
from timing import alternating_rates, rate_rows



def mae_step(batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = MAE()
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-3, weight_decay=0.05)
    x, g = torch.randn(batch, 1, 28, 28), torch.Generator().manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x, generator=g)[0].backward()
        opt.step()
    return step


def vit_step(batch: int, probe: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = ViT()
    if probe:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head."))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256, help="images per update (default 256, the lab's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=21, help="timed rounds (median reported; >= 21 for RESULTS)")
    p.add_argument("--updates", type=int, default=3, help="updates of each model per round (default 3)")
    args = p.parse_args(argv)
    if min(args.batch, args.threads, args.repeats, args.updates) < 1:
        print("mae_throughput: --batch, --threads, --repeats and --updates must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    steps = {"ViT, supervised (baseline)": vit_step(args.batch, probe=False), "MAE pre-training": mae_step(args.batch),
             "linear probe (encoder frozen)": vit_step(args.batch, probe=True)}
    rates = alternating_rates(steps, args.repeats, args.updates, args.batch)
    rows = rate_rows(rates, "ViT, supervised (baseline)")
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}; batch "
          f"{args.batch}, {args.updates} updates per round, median of {args.repeats} alternating rounds\n")
    print(markdown_table(["update", "images/s (median)", "min-max", "vs ViT"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
