"""Training throughput of the distribution-shift chapter's models against their plain CNNs: images/s per update.

    python benchmarks/shift_throughput.py                  # torch's thread count, 21 repeats of 20 updates
    python benchmarks/shift_throughput.py --threads 1 --repeats 3

Pairs, each timed as the labs train them (forward, backward, optimizer step; random inputs of the labs' shapes):

* DANN (``DANN.for_digits``: G_f, G_y, the gradient reversal and G_d; ``--batch-size`` labelled source images plus
  as many target images per update, SGD with momentum as the domain-adaptation lab) against the same G_f + G_y
  trained on the source batch alone (cross-entropy; no target images, no domain classifier);
* ST-CNN (``st-cnn``: localization network, ``affine_grid``, ``grid_sample``, CNN) against ``st-cnn-plain`` (the
  CNN with the same parameter count), on 28x28 digits and on the 60x60 translated-cluttered ones (AdamW, as the
  spatial-transformer lab).

Images/s counts labelled images (the source batch for DANN: what an epoch of the source costs). The pairs alternate,
``--repeats`` times, after one warm-up; the median and the min-max of the rounds are printed. Wall-clock: run it on an otherwise idle machine; the
load average is printed before and after. Prints a Markdown table to paste into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.models.registry import create_model
from deepnotes.nn.domain import DANN, dann_losses
from deepnotes.report import markdown_table


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def dann_step(batch: int, adapt: bool) -> Callable[[], None]:
    """One update of DANN (``adapt``) or of its G_f + G_y alone on the source batch."""
    torch.manual_seed(0)
    model = DANN.for_digits(in_channels=3, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xs, xt = torch.rand(batch, 3, 28, 28) * 2 - 1, torch.rand(batch, 3, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if adapt:
            loss = dann_losses(model, xs, y, xt, lambd=0.5)["total"]
        else:
            loss = F.cross_entropy(model.label_predictor(model.feature_extractor(xs)), y)
        loss.backward()
        opt.step()
    return step


def stn_step(batch: int, name: str, size: int) -> Callable[[], None]:
    """One update of ``st-cnn`` or ``st-cnn-plain`` on ``size`` x ``size`` grey images."""
    torch.manual_seed(0)
    model: nn.Module = create_model(name, in_channels=1, num_classes=10, image_size=size)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x, y = torch.rand(batch, 1, size, size), torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def timed(step: Callable[[], None], updates: int) -> float:
    start = time.perf_counter()
    for _ in range(updates):
        step()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, default=21, help="timed rounds of each model (default 21)")
    p.add_argument("--updates", type=int, default=20, help="updates per timed round (default 20)")
    p.add_argument("--batch-size", type=int, default=64, help="labelled images per update (default 64, the labs')")
    args = p.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    b = args.batch_size
    pairs = [
        ("DANN, 28x28 RGB (+ as many target images)", dann_step(b, True), "G_f + G_y, source only",
         dann_step(b, False)),
        ("st-cnn, 28x28", stn_step(b, "st-cnn", 28), "st-cnn-plain, 28x28", stn_step(b, "st-cnn-plain", 28)),
        ("st-cnn, 60x60 (TC)", stn_step(b, "st-cnn", 60), "st-cnn-plain, 60x60", stn_step(b, "st-cnn-plain", 60)),
    ]
    print(f"load average before: {_load()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for name, model_step, base_name, base_step in pairs:
        model_step(), base_step()  # warm-up
        times: dict[str, list[float]] = {"model": [], "base": []}
        for _ in range(args.repeats):
            times["model"].append(timed(model_step, args.updates))
            times["base"].append(timed(base_step, args.updates))
        ips = {k: b * args.updates / statistics.median(v) for k, v in times.items()}
        spread = {k: f"{b * args.updates / max(v):.0f}-{b * args.updates / min(v):.0f}" for k, v in times.items()}
        rows.append([name, f"{ips['model']:.0f}", spread["model"], base_name, f"{ips['base']:.0f}", spread["base"],
                     f"{ips['model'] / ips['base']:.2f}"])
    print(f"load average after: {_load()}")
    print(markdown_table(["model", "images/s (median)", "min-max", "plain CNN", "images/s (median)", "min-max", "ratio"],
                         rows))


if __name__ == "__main__":
    main()
