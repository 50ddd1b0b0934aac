"""Benchmarks of the image-classification lab: training throughput and time to accuracy.

    python benchmarks/image_classification.py throughput            # images/s of one training update, per model
    python benchmarks/image_classification.py time-to-accuracy -- --preset fashion-mnist --monitor-test
                                                                     # a full lab run; when accuracy passed thresholds

Both print a Markdown table to paste into benchmarks/RESULTS.md with the command that produced it.
Run them on an otherwise idle machine: the numbers are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from deepnotes.models.registry import create_model
from deepnotes.report import markdown_table, read_metrics_csv

RESNET = dict(widths=(32, 64, 128), blocks=(2, 2, 2), stem_channels=32, expansion=2)  # the lab's defaults
MODELS = {  # name -> (registered model, its arguments)
    "lenet5": ("lenet5", {}),
    "resnet (default: widths 32,64,128, blocks 2,2,2)": ("resnet", RESNET),
    "resnet, stem pool, widths 64,128,256, blocks 1,1,1": ("resnet", {**RESNET, "stem_pool": True,
                                                                      "widths": (64, 128, 256), "blocks": (1, 1, 1)}),
    "resnet, stem pool, widths 128,256,512, stem 64, expansion 4": ("resnet", dict(
        stem_pool=True, widths=(128, 256, 512), blocks=(1, 1, 1), stem_channels=64, expansion=4)),
    "airbench, widths 32,128,128 (the fashion-mnist preset)": ("airbench", dict(widths=(32, 128, 128))),
}


def throughput(batch_size: int, steps: int, warmup: int) -> None:
    """Images/s of one training update of each model in three variants (NCHW fp32, NHWC fp32, NHWC bf16 autocast),
    the variants of a model alternating update by update after ``warmup`` untimed updates each; median and min-max
    of ``steps`` timed updates, and the load average before and after."""
    rows = []
    load0 = os.getloadavg()
    for name, (model_name, kwargs) in MODELS.items():
        variants = []
        for channels_last, bf16 in ((False, False), (True, False), (True, True)):
            torch.manual_seed(0)
            model = create_model(model_name, in_channels=1, num_classes=10, **kwargs)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            x = torch.randn(batch_size, 1, 28, 28).contiguous(memory_format=fmt)
            y = torch.randint(0, 10, (batch_size,))

            def update(model=model, opt=opt, x=x, y=y, bf16=bf16) -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # --cpu-bf16 on
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            params = sum(p.numel() for p in model.parameters())
            variants.append(("NHWC" if channels_last else "NCHW", "bf16 autocast" if bf16 else "fp32", params, update))
        for _ in range(warmup):
            for *_, update in variants:
                update()
        times: list[list[float]] = [[] for _ in variants]
        for _ in range(steps):
            for k, (*_, update) in enumerate(variants):
                t0 = time.perf_counter()
                update()
                times[k].append(time.perf_counter() - t0)
        for (layout, precision, params, _), ts in zip(variants, times):
            med = statistics.median(ts)
            rows.append([name, layout, precision, f"{params:,}", f"{batch_size / med:,.0f}",
                         f"{batch_size / max(ts):,.0f}-{batch_size / min(ts):,.0f}"])
            print(rows[-1], file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"batch {batch_size}, {steps} timed updates of each variant, alternating, after {warmup} warm-up updates; "
          f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f}\n")
    print(markdown_table(["model", "layout", "precision", "parameters", "training images/s (median)", "min-max"],
                         rows))


def time_to_accuracy(lab_args: list[str], thresholds: list[float]) -> None:
    from deepnotes.cli import main

    out = Path("runs/benchmarks")
    t0 = time.perf_counter()
    code = main(["run", "image-classification", "--out", str(out), "--no-progress", *lab_args])
    wall = time.perf_counter() - t0
    if code != 0:
        sys.exit(code)
    run_dir = sorted((out / "image-classification").iterdir())[-1]
    rows = read_metrics_csv(run_dir / "metrics.csv")
    elapsed, table = 0.0, []
    reached = {t: None for t in thresholds}
    column = "test_acc" if rows and rows[0].get("test_acc") is not None else "val_acc"
    for r in rows:
        elapsed += r["epoch_time_s"]
        for t in thresholds:
            if reached[t] is None and r[column] >= t:
                reached[t] = (r["epoch"], elapsed)
    for t in thresholds:
        e = reached[t]
        table.append([f"{100 * t:.1f}%", "not reached" if e is None else f"epoch {e[0]}, {e[1]:.0f} s"])
    import json

    m = json.loads((run_dir / "test_metrics.json").read_text())
    print(f"run {run_dir}: {len(rows)} epochs, training {m['train_time_s']:.0f} s, whole command {wall:.0f} s; "
          f"test accuracy {100 * m['acc']:.2f}%" + (f", with TTA {100 * m['acc_tta']:.2f}%" if "acc_tta" in m else ""))
    print(markdown_table([f"{column} (after each epoch)", "first reached at (epoch, elapsed time incl. evaluation)"], table))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--steps", type=int, default=21)
    t.add_argument("--warmup", type=int, default=5)
    a = sub.add_parser("time-to-accuracy")
    a.add_argument("--thresholds", default="0.929,0.935,0.94")
    a.add_argument("lab_args", nargs=argparse.REMAINDER, help="flags for `deepnotes run image-classification`, after --")
    args = p.parse_args()
    if args.what == "throughput":
        throughput(args.batch_size, args.steps, args.warmup)
    else:
        lab_args = [x for x in args.lab_args if x != "--"]
        time_to_accuracy(lab_args, [float(x) for x in args.thresholds.split(",")])


if __name__ == "__main__":
    main()
