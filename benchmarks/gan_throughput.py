"""Benchmark of the gan lab: images/s of each variant's training update, and the time of FID for 10k samples.

    python benchmarks/gan_throughput.py                       # the lab's sizes, batch 64, 2 threads, 11 rounds
    python benchmarks/gan_throughput.py --threads 1 --repeats 2 --updates 1 --fid-samples 1000   # a smoke run

One update = what :class:`deepnotes.train.gan.GANTask` runs per Trainer step: ``n_critic`` discriminator updates
(each: G forward on a batch of z, D on the real and the generated batch, the loss, for WGAN-GP the gradient penalty
with its double backward, Adam) and one generator update, with the lab's default networks
(:mod:`deepnotes.models.gan`: z 64, widths 32, 28x28 grey images; random pixels, timings do not depend on them).
The rounds alternate the variants, ``--updates`` updates each per round after one warm-up round; reported: the median
and min-max over ``--repeats`` rounds of generated images/s (batch x generator updates per second) and real images/s
(x n_critic). Then FID: features of ``--fid-samples`` generated images from the judge (the lab's default
``lenet5-wide``, untrained: the time does not depend on its weights), their mean and covariance and the Frechet
distance to a reference of the same size (:mod:`deepnotes.metrics.generative`), timed as a whole and by part.
Load average before and after.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from typing import Callable

import torch

from deepnotes.labs.gan import VARIANTS, GanConfig, build_gan, critic_updates, variant_of
from deepnotes.metrics.generative import classifier_features, frechet_distance, gaussian_stats
from deepnotes.models.gan import generate_pixels
from deepnotes.models.pixels import build_pixel_model
from deepnotes.report import markdown_table
from deepnotes.train.gan import GANTask
from deepnotes.train.task import Step
from timing import alternating_rates, load_average



def gan_step(name: str, cfg: GanConfig) -> tuple[Callable[[], None], int]:
    """One Trainer update of variant ``name`` and its real images per update."""
    v = variant_of(cfg, name)
    model = build_gan(cfg, name, 0, 10)
    task = GANTask(model, v, cfg.z_dim, cfg.lr, cfg.momentum, gp_weight=cfg.gp_weight, num_classes=10)
    n_critic = critic_updates(cfg, v)
    x = torch.rand(n_critic, cfg.batch_size, 1, 28, 28) * 2 - 1
    batch = (x, torch.randint(10, (n_critic, cfg.batch_size)))
    step = Step(0, 0, 1, generator=torch.Generator().manual_seed(0), optimizers=task.configure_optimizers(cfg))
    return (lambda: task.training_step(model, batch, step)), n_critic


def time_fid(n: int, cfg: GanConfig) -> dict[str, float]:
    torch.manual_seed(0)
    judge = build_pixel_model(cfg.classifier, 10, 0.29, 0.35).eval()
    g = build_gan(cfg, "dcgan", 0, 10)["generator"]
    z = torch.randn(n, cfg.z_dim)
    ref = torch.randn(n, 4 * 84)
    t0 = time.perf_counter()
    pixels = generate_pixels(g, z)
    t1 = time.perf_counter()
    feats, _ = classifier_features(judge, pixels)
    t2 = time.perf_counter()
    d = frechet_distance(*gaussian_stats(feats), *gaussian_stats(ref[:, :feats.shape[1]]))
    t3 = time.perf_counter()
    assert d >= 0
    return {"generate": t1 - t0, "features": t2 - t1, "statistics + Frechet distance": t3 - t2, "total": t3 - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="images per update (default 64, the lab's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=11, help="timed rounds (median reported)")
    p.add_argument("--updates", type=int, default=3, help="updates of each variant per round (default 3)")
    p.add_argument("--fid-samples", type=int, default=10000, help="samples of the timed FID (default 10,000)")
    args = p.parse_args(argv)
    if min(args.batch, args.threads, args.repeats, args.updates) < 1 or args.fid_samples < 2:
        print("gan_throughput: --batch, --threads, --repeats, --updates must be >= 1, --fid-samples >= 2",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = GanConfig(batch_size=args.batch)
    steps = {name: gan_step(name, cfg) for name in VARIANTS}
    rates = alternating_rates({name: step for name, (step, _) in steps.items()}, args.repeats, args.updates, args.batch)
    fid_times = time_fid(args.fid_samples, cfg)
    print(f"load average (1, 5, 15 min) after the FID timing: {load_average()}")
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}; batch "
          f"{args.batch}, {args.updates} updates per round, median of {args.repeats} alternating rounds\n")
    rows = [[VARIANTS[n].label, steps[n][1], f"{statistics.median(r):,.0f}", f"{min(r):,.0f}-{max(r):,.0f}",
             f"{steps[n][1] * statistics.median(r):,.0f}", f"{1000 * args.batch / statistics.median(r):.0f}"]
            for n, r in rates.items()]
    print(markdown_table(["variant", "D updates per G update", "generated images/s (median)", "min-max",
                          "real images/s", "ms per G update"], rows))
    print()
    print(markdown_table([f"FID of {args.fid_samples:,} samples ({cfg.classifier} features)", "seconds"],
                         [[k, f"{v:.2f}"] for k, v in fid_times.items()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
