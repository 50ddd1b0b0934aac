"""Benchmark of the keyword-spotting lab's training step: clips/s for each model, augmentation included.

    python benchmarks/keyword_spotting.py                       # batch 128, 2 threads, every model
    python benchmarks/keyword_spotting.py --threads 1 --models bcresnet --widths 1,2,3

One training step = what the lab's engine does per batch: int16 clips -> float, speed perturbation,
time shift, background noise, features (log-mel / dB spectrogram / none; with the lab's default VTLP warp on
the spectrogram models), SpecAugment, forward,
cross-entropy, backward, SGD update. Synthetic clips (random noise shaped like speech levels) are enough
for timing. Rows give the median and min-max wall time of ``--repeats`` steps (default 21) after one warm-up,
clips/s at the median, and the process CPU time per clip (a steadier figure than wall time on a shared machine);
the load average (1, 5, 15 min) is printed before and after. Prints a Markdown table.

On a machine shared with other busy processes, set ``OMP_WAIT_POLICY=PASSIVE``: PyTorch's OpenMP
threads otherwise spin while they wait for each other, and two of them on two busy cores ran ~15x
slower than one thread in our measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from deepnotes.audio.frontend import BatchPreparer, FeatureExtractor, SpeechAugment
from deepnotes.models.registry import create_model
from deepnotes.report import markdown_table

#: The lab's default augmentation (deepnotes run keyword-spotting --help).
AUGMENT = SpeechAugment(speed_perturb=0.1, vtlp=0.1, time_shift_ms=100.0, noise_prob=0.8, snr_db=(5.0, 30.0),
                        freq_masks=2, max_freq_mask=0.15, time_masks=2, max_time_mask=0.2)
#: --models name -> (registered model, its input features)
MODELS = {"bcresnet": ("bcresnet", "logmel"), "cnn": ("spectrogram-cnn", "spectrogram"), "m5": ("m5", "waveform")}


def step_times(model_name: str, width: float, augment: SpeechAugment, batch: int,
               repeats: int) -> tuple[list[float], float, int]:
    """(wall seconds of every timed step, median CPU seconds, parameters) of one training step of ``model_name``."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    clips = (torch.randn(batch, 16000, generator=g) * 3000).clamp(-32768, 32767).to(torch.int16)
    labels = torch.randint(35, (batch,), generator=g)
    noise = [torch.randn(5 * 16000, generator=g) * 0.1]
    name, kind = MODELS[model_name]
    prep = BatchPreparer(FeatureExtractor(kind, 40, mean=-40.0, std=25.0, norm="utterance"), augment, noise,
                         torch.device("cpu"))
    options = {"bcresnet": {"width": width}, "cnn": {"dropout": 0.5}}.get(model_name, {})
    model = create_model(name, num_classes=35, **options)
    if model_name != "m5":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    walls, cpus = [], []
    for i in range(repeats + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        x, y = prep(clips, labels, True, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step is a warm-up
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    return walls, statistics.median(cpus), sum(p.numel() for p in model.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=21, help="timed steps per model after one warm-up (default 21)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="bcresnet,cnn,m5", help="comma-separated: bcresnet, cnn, m5")
    p.add_argument("--widths", default="1,2", help="BC-ResNet widths tau to time (comma-separated)")
    p.add_argument("--speed-perturb", type=float, default=0.1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    augment = dataclasses.replace(AUGMENT, speed_perturb=args.speed_perturb)
    rows = []
    before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    for model in args.models.split(","):
        widths = [float(w) for w in args.widths.split(",")] if model == "bcresnet" else [1.0]
        for width in widths:
            walls, cpu, params = step_times(model, width, augment, args.batch, args.repeats)
            wall = statistics.median(walls)
            name = f"BC-ResNet-{width:g}" if model == "bcresnet" else {"cnn": "exercise CNN", "m5": "M5"}[model]
            rows.append([name, f"{params:,}", f"{1000 * wall:.0f}", f"{1000 * min(walls):.0f}-{1000 * max(walls):.0f}",
                         f"{args.batch / wall:.0f}", f"{1000 * cpu / args.batch:.2f}"])
            print(f"{name}: {args.batch / wall:.0f} clips/s", flush=True)
    after = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"batch {args.batch}, median of {args.repeats} steps; load average (1, 5, 15 min) {before} before, "
          f"{after} after\n")
    print(markdown_table(["model", "parameters", "ms / step (median)", "min-max", "clips / s", "CPU ms / clip"],
                         rows))


if __name__ == "__main__":
    main()
