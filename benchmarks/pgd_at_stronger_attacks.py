"""The adversarial-attack lab's PGD-AT model under attacks the lab does not run (a check for gradient masking).

    python benchmarks/pgd_at_stronger_attacks.py runs/adversarial-attack/<run>

On the run's own 1,000 attacked test images (``HeldOutImages.sample`` with the run's seed, as the lab draws them): PGD-100 with step 0.01 from 3 random starts (an image counts as robust only if every start fails) and
MI-FGSM with 50 steps, both at the run's ``--at-eps``. A model that only masks its gradients loses much more here
than under the lab's PGD-20; a robust one stays close.
"""

from __future__ import annotations

import argparse
import time

import torch

from deepnotes.attacks import mifgsm, pgd
from deepnotes.data.images import load_held_out
from deepnotes.experiment import Run
from deepnotes.models.pixels import build_pixel_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a finished adversarial-attack run folder")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = Run(args.run)
    cfg, d = run.config, run.read_json("data.json")
    model = run.load_weights(build_pixel_model(cfg.at_model, len(d["classes"]), d["mean"], d["std"]),
                             "models/pgd-at/model.safetensors").eval()
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, 0, cfg.val_fraction, cfg.seed)
    x, y = data.sample(cfg.attack_images, cfg.seed)["test"]  # the images the lab attacked
    eps, t0 = cfg.at_eps, time.perf_counter()
    robust = torch.ones(len(y), dtype=torch.bool)
    for r in range(3):
        gen = torch.Generator().manual_seed(100 + r)
        adv = torch.cat([pgd(model, x[i:i + 250], y[i:i + 250], eps, 0.01, 100, generator=gen)
                         for i in range(0, len(y), 250)])
        with torch.no_grad():
            robust &= model(adv).argmax(-1) == y
        print(f"PGD-100, eps {eps:g}, after {r + 1} random start(s): {100 * robust.float().mean():.1f}% robust")
    adv = torch.cat([mifgsm(model, x[i:i + 250], y[i:i + 250], eps, 0.01, 50) for i in range(0, len(y), 250)])
    with torch.no_grad():
        acc = (model(adv).argmax(-1) == y).float().mean()
    print(f"MI-FGSM-50, eps {eps:g}: {100 * acc:.1f}%; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
