"""Throughput of our PGD (deepnotes.attacks.pgd) against torchattacks.PGD: adversarial images per second.

    python benchmarks/attack_throughput.py                      # PGD-20, eps 0.1, alpha 0.01, LeNet-5, batch 256
    python benchmarks/attack_throughput.py --threads 1 --repeats 3

Both attacks run the same PGD-20 (random start from the same seed, so they must give the same images; the
script checks it) on a LeNet-5 (``create_model("lenet5")``, eval mode) with a batch of random 28x28 images,
alternating ours and theirs ``--repeats`` times after one warm-up call each; the median time of each gives the
images/s. The load average is printed before and after: the numbers are wall-clock, so run it on an otherwise
idle machine. Prints a Markdown table to paste into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torchattacks

from deepnotes.attacks.gradient import pgd
from deepnotes.models.registry import create_model
from deepnotes.report import markdown_table


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=21, help="timed calls of each attack (default 21)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.01)
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10).eval()
    x = torch.rand(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    theirs_attack = torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=True)

    def ours() -> torch.Tensor:
        return pgd(model, x, y, args.eps, args.alpha, args.steps, generator=torch.Generator().manual_seed(0))

    def theirs() -> torch.Tensor:
        torch.manual_seed(0)
        return theirs_attack(x, y)

    print(f"load average before: {_load()}")
    difference = (ours() - theirs()).abs().max().item()  # also the warm-up call of each
    times: dict[str, list[float]] = {"ours": [], "torchattacks": []}
    for _ in range(args.repeats):
        for name, attack in (("ours", ours), ("torchattacks", theirs)):
            t0 = time.perf_counter()
            attack()
            times[name].append(time.perf_counter() - t0)
    print(f"load average after: {_load()}")
    rate = {name: args.batch_size / statistics.median(t) for name, t in times.items()}
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; PGD-{args.steps}, eps {args.eps}, alpha {args.alpha}, "
          f"LeNet-5, batch {args.batch_size}, median of {args.repeats} alternating calls; "
          f"max |ours - torchattacks| = {difference:.2e}\n")
    print(markdown_table(["attack", "adversarial images/s (median)", "min-max", "ratio to torchattacks"],
                         [[name, f"{r:.0f}", f"{args.batch_size / max(times[name]):.0f}-"
                           f"{args.batch_size / min(times[name]):.0f}", f"{r / rate['torchattacks']:.2f}"]
                          for name, r in rate.items()]))


if __name__ == "__main__":
    main()
