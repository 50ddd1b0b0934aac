"""DANN tries on one shift and one seed, through the domain-adaptation lab's own training function.

    python benchmarks/dann_tries.py SHIFT VARIANT UPDATES BATCH METHODS [ENTROPY_WEIGHT] [--bn mixed|separate]
        [--adabn] [--optimizer adamw --lr 0.001] [--seed K] [--domain-weight W] [--centre domain-mean|domain-std]

SHIFT e.g. mnist-subset:mnist-m; VARIANT a label, or ``deepdc`` for a deeper domain classifier (768-500-500-1);
METHODS comma-separated from source-only, dann, target. ``--bn`` puts batch normalization after each convolution
of G_f: ``mixed`` normalizes source and target as one batch, ``separate`` each domain with its own batch statistics
(Chang et al. 2019's domain-specific BN, in training); ``--adabn`` scores the target with G_f's statistics
re-estimated on the target's unlabelled training images (Li et al. 2016, AdaBN). Prints the target and source test
accuracy of each model. ``--domain-weight 2`` scales the domain loss as Ganin et al. 2016 sum the source and
target means (the lab takes one mean over both). ``--centre domain-mean`` subtracts each domain's own mean pixel
per channel (of its training images) instead of mapping [0, 1] to [-1, 1]; ``domain-std`` also divides by each
domain's own standard deviation. One thread. These set the lab's defaults; the lab's result is its full run.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.experiment import RunContext
from deepnotes.labs import domain_adaptation as da
from deepnotes.nn import domain
from deepnotes.nn.domain import DANN

BUILD = DANN.for_digits


def with_batch_norm(model: DANN) -> DANN:
    """Ganin's G_f with BatchNorm2d after each convolution."""
    model.feature_extractor.net = nn.Sequential(
        nn.Conv2d(3, 32, 5), nn.BatchNorm2d(32), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(32, 48, 5), nn.BatchNorm2d(48), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten())
    return model


def separate_losses(model, x_source, y_source, x_target, lambd, entropy_weight=0.0):
    """dann_losses with source and target through the network as two batches (domain-specific BN statistics)."""
    logits, dom_s = model(x_source, lambd=lambd)
    logits_t, dom_t = model(x_target, lambd=lambd)
    domain_logits = torch.cat([dom_s, dom_t])
    labels = torch.cat([torch.zeros(len(dom_s)), torch.ones(len(dom_t))]).to(domain_logits)
    label_loss = F.cross_entropy(logits, y_source)
    log_p = F.log_softmax(logits_t, -1)
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    domain_loss = F.binary_cross_entropy_with_logits(domain_logits, labels)
    with torch.no_grad():
        dacc = ((domain_logits > 0).to(labels) == labels).float().mean()
        sacc = (logits.argmax(-1) == y_source).float().mean()
    return {"label": label_loss, "domain": domain_loss, "entropy": entropy,
            "total": label_loss + domain_loss + entropy_weight * entropy, "domain_accuracy": dacc,
            "source_accuracy": sacc}


@torch.no_grad()
def adabn(model: DANN, images: torch.Tensor) -> DANN:
    """A copy of ``model`` whose BN statistics are the mean and variance over ``images`` (uint8)."""
    model = copy.deepcopy(model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for i in range(0, len(images), 500):
        model.feature_extractor(da.inputs(images[i:i + 500], torch.device("cpu")))
    return model.eval()


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    for name in ("shift", "variant", "updates", "batch", "methods"):
        p.add_argument(name)
    p.add_argument("entropy", nargs="?", type=float, default=0.0)
    p.add_argument("--bn", choices=("none", "mixed", "separate"), default="none")
    p.add_argument("--adabn", action="store_true")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domain-weight", type=float, default=1.0)
    p.add_argument("--centre", choices=("global", "domain-mean", "domain-std"), default="global")
    a = p.parse_args()
    updates, batch = int(a.updates), int(a.batch)
    cfg = da.DomainAdaptationConfig(shifts=(a.shift,), seeds=(a.seed,), epochs=updates // 100, steps_per_epoch=100,
                                    batch_size=batch, few_target=0, dg_domains=(), tsne_images=0, progress=False,
                                    entropy_weight=a.entropy, optimizer=a.optimizer, lr=a.lr)
    if a.centre != "global":
        load, to_inputs = da.load_domain, da.inputs

        def load_centred(name, cfg):
            out = load(name, cfg)
            x = out["train"][0].float() / 255  # (N, 3, H, W)
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            std = x.std(dim=(0, 2, 3), keepdim=True) if a.centre == "domain-std" else 0.5
            return {k: ((v[0].float() / 255 - mean) / std, v[1]) for k, v in out.items()}
        da.load_domain = load_centred
        da.inputs = lambda images, device: (images.to(device) if images.is_floating_point()
                                            else to_inputs(images, device))
    src, tgt = da.load_domain(a.shift.split(":")[0], cfg), da.load_domain(a.shift.split(":")[1], cfg)
    ctx = RunContext(Path(f"/tmp/dann_tries/{a.variant}-{updates}-{batch}-{time.time():.0f}"), torch.device("cpu"))
    if a.variant.startswith("deepdc"):
        def build(in_channels=3, num_classes=10, hidden=100, lambd=1.0):
            model = BUILD(in_channels, num_classes, hidden, lambd)
            model.domain_classifier = nn.Sequential(nn.Linear(768, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(),
                                                    nn.Linear(500, 1))
            return model
        da.DANN.for_digits = staticmethod(build)
    if a.bn != "none":
        da.DANN.for_digits = staticmethod(lambda *args, **kw: with_batch_norm(BUILD(*args, **kw)))
    if a.bn == "separate":
        domain.dann_losses = separate_losses
    if a.domain_weight != 1.0:
        losses = domain.dann_losses

        def weighted(*args, **kw):
            out = losses(*args, **kw)
            out["total"] = out["total"] + (a.domain_weight - 1) * out["domain"]
            return out
        domain.dann_losses = weighted
    t0 = time.time()
    for method in a.methods.split(","):
        train, val = (tgt["train"], tgt["val"]) if method == "target" else (src["train"], src["val"])
        model = da.train_model(cfg, ctx.run_dir / method, a.seed, train, val, tgt["train"][0], method == "dann", ctx)
        line = (f"{a.variant} {updates} {batch} centre={a.centre} bn={a.bn} dw={a.domain_weight} {a.optimizer} "
                f"lr={a.lr} seed={a.seed} {method} "
                f"target {100 * da.accuracy(model, *tgt['test'], ctx.device):.1f} "
                f"source {100 * da.accuracy(model, *src['test'], ctx.device):.1f}")
        if a.adabn and a.bn != "none":
            line += f" target-adabn {100 * da.accuracy(adabn(model, tgt['train'][0]), *tgt['test'], ctx.device):.1f}"
        print(line, f"{time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
