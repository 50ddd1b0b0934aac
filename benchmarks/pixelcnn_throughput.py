"""Benchmark of PixelCNN training: images/s of one update of the pixelcnn lab's models, alternating.

    python benchmarks/pixelcnn_throughput.py                      # the lab's sizes, batch 64, 1 thread, 11 rounds
    python benchmarks/pixelcnn_throughput.py --threads 2 --channels 64
    python benchmarks/pixelcnn_throughput.py --repeats 3 --updates 2   # a quick look

One update = forward, Bernoulli NLL, backward, AdamW step on a batch of random binary 28x28 images (timings do not
depend on the pixels): the gated PixelCNN (:class:`deepnotes.nn.pixelcnn.GatedPixelCNN`, the lab's defaults: 32
channels, 1 + 6 layers, first kernel 7, then 3) in float32 and under bfloat16 autocast (what the lab uses where the
CPU has native bf16, or ``--bf16 on``), the plain PixelCNN of the same width, and the FVSBN (the baseline). The
rounds alternate the models, ``--updates`` updates each per round after one warm-up round; reported: the median and
min-max of images/s over ``--repeats`` rounds, and each one's ratio to the gated PixelCNN's float32 median. Load
average before and after: on a shared machine, say what else ran.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
from typing import Callable

import torch

from deepnotes.nn.autoencoder import bernoulli_nll
from deepnotes.nn.pixelcnn import FVSBN, GatedPixelCNN, PixelCNN
from deepnotes.report import markdown_table
from deepnotes.train.engine import cpu_has_native_bf16
from timing import alternating_rates, rate_rows



def update(model: torch.nn.Module, batch: int, bf16: bool, device: torch.device) -> Callable[[], None]:
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    x = (torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float().to(device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            logits = model(x)
        bernoulli_nll(logits.float(), x, "mean").backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="images per update (default 64, the lab's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--channels", type=int, default=32, help="PixelCNN channels (default 32, the lab's)")
    p.add_argument("--num-layers", type=int, default=6, help="PixelCNN layers after the first (default 6)")
    p.add_argument("--repeats", type=int, default=11, help="timed rounds (median reported)")
    p.add_argument("--updates", type=int, default=3, help="updates of each model per round (default 3)")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="also time bf16 autocast: auto = where the CPU has native bf16 (or on CUDA)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = p.parse_args(argv)
    if min(args.batch, args.threads, args.channels, args.repeats, args.updates) < 1 or args.num_layers < 0:
        print("pixelcnn_throughput: --batch, --threads, --channels, --repeats and --updates must be >= 1, "
              "--num-layers >= 0", file=sys.stderr)
        return 2
    if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        print(f"pixelcnn_throughput: --device {args.device}: use cpu, or cuda where a GPU is visible", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and (device.type == "cuda" or cpu_has_native_bf16()))
    torch.manual_seed(0)
    size = dict(channels=args.channels, num_layers=args.num_layers)
    steps = {"gated PixelCNN, float32 (baseline)": update(GatedPixelCNN(**size), args.batch, False, device)}
    if bf16:
        steps["gated PixelCNN, bf16 autocast"] = update(GatedPixelCNN(**size), args.batch, True, device)
    steps["PixelCNN (masked convs), float32"] = update(PixelCNN(**size), args.batch, False, device)
    steps["FVSBN, float32"] = update(FVSBN(), args.batch, False, device)
    rates = alternating_rates(steps, args.repeats, args.updates, args.batch)
    rows = rate_rows(rates, "gated PixelCNN, float32 (baseline)")
    where = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {device.type}, {args.threads} threads, {where}; batch {args.batch}, "
          f"{args.channels} channels, 1 + {args.num_layers} layers; {args.updates} updates per round, median of "
          f"{args.repeats} alternating rounds\n")
    print(markdown_table(["update", "images/s (median)", "min-max", "vs gated float32"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
