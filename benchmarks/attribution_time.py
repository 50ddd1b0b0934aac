"""Benchmark of the attribution methods: seconds per image, ours (deepnotes.explain) against captum 0.9.0.

    python benchmarks/attribution_time.py                      # LeNet-5, 28x28 inputs, 8 images, 21 repeats
    python benchmarks/attribution_time.py --images 1 --repeats 2 --quick   # a smoke run (fewer samples/steps)

Both sides get the same settings (samples, steps, windows, the same LIME masks and kernel) on an untrained LeNet-5
(timings do not depend on the weights). For each method, after one untimed warm-up call of each side, ours and
captum's calls alternate ``--repeats`` times (default 21); the table gives the median and the spread (min-max) of
the seconds per image of each, and the ratio of the medians. Prints the load average (1, 5, 15 min) before and
after and the torch thread count, since the numbers are wall-clock: run it on an otherwise idle machine, and paste
the Markdown table into benchmarks/RESULTS.md with the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Callable

import torch

from deepnotes.explain import (grad_cam, guided_backprop, integrated_gradients, lime, occlusion, saliency,
                               smoothgrad)
from deepnotes.models.registry import create_model
from deepnotes.report import format_number, markdown_table


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def alternating_times(ours: Callable[[], object], theirs: Callable[[], object], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call, ``ours`` then ``theirs`` in every one of the ``repeats`` rounds (no warm-up here)."""
    times: dict[str, list[float]] = {"ours": [], "captum": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("captum", theirs)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _spread(seconds: list[float], images: int) -> str:
    """``median (min-max)`` of the seconds per image, 3 significant digits."""
    per_image = [t / images for t in seconds]
    return (f"{format_number(statistics.median(per_image), 3)} "
            f"({format_number(min(per_image), 3)}-{format_number(max(per_image), 3)})")


def lime_pair(model: torch.nn.Module, x: torch.Tensor, n_samples: int) -> tuple[Callable, Callable]:
    """Ours and captum's LIME on every image, captum fed our segments, masks, kernel and ridge."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    def ours() -> list:
        return [lime(model, image, 0, n_samples=n_samples, generator=torch.Generator().manual_seed(0)) for image in x]

    references = ours()

    def captum() -> None:
        for image, ref in zip(x, references):
            masks, n_seg = ref.samples.long(), len(ref.weights)

            def perturb(original, **kwargs):
                yield from (row[None] for row in masks)

            def similarity(original, perturbed, interpretable, **kwargs):
                d = 1 - torch.sqrt(interpretable.float().sum() / n_seg)
                return torch.sqrt(torch.exp(-d**2 / 0.25**2))

            seg = ref.segments
            sums = torch.zeros(n_seg).index_add_(0, seg.flatten(), image[0].flatten())
            means = (sums / torch.bincount(seg.flatten(), minlength=n_seg))[seg]
            explainer = Lime(lambda z: model(z).softmax(dim=1), interpretable_model=SkLearnRidge(alpha=1.0),
                             similarity_func=similarity, perturb_func=perturb)
            explainer.attribute(image[None], target=0, baselines=means[None, None], feature_mask=seg[None, None],
                                n_samples=n_samples, perturbations_per_eval=64)

    return ours, captum


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8, help="images per call (LIME: one call per image)")
    p.add_argument("--repeats", type=int, default=21,
                   help="alternating timed calls of each side per method; median and min-max reported (default 21)")
    p.add_argument("--quick", action="store_true", help="5 SmoothGrad samples, 5 IG steps, 50 LIME samples")
    args = p.parse_args()
    if args.images < 1 or args.repeats < 1:
        p.error("--images and --repeats must be >= 1")
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # captum GuidedBackprop, every call
    import captum
    import captum.attr as ca

    n_noise, n_steps, n_lime = (5, 5, 50) if args.quick else (50, 50, 1000)
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10).eval()
    x = torch.rand(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    target = 3
    layer = model.features[4]  # the second convolution's ReLU: (B, 16, 10, 10)

    def captum_smoothgrad() -> None:
        ca.NoiseTunnel(ca.Saliency(model)).attribute(x, nt_samples=n_noise, nt_samples_batch_size=64, stdevs=0.15,
                                                     target=target)

    ours_lime, captum_lime = lime_pair(model, x, n_lime)
    methods = {
        "saliency": (lambda: saliency(model, x, target),
                     lambda: ca.Saliency(model).attribute(x.clone().requires_grad_(), target=target)),
        f"smoothgrad ({n_noise} samples)": (
            lambda: smoothgrad(model, x, target, n_samples=n_noise, sigma=0.15, relative=False), captum_smoothgrad),
        f"integrated gradients ({n_steps} steps)": (
            lambda: integrated_gradients(model, x, target, steps=n_steps),
            lambda: ca.IntegratedGradients(model).attribute(x, target=target, n_steps=n_steps,
                                                            method="riemann_trapezoid", internal_batch_size=64)),
        "occlusion (4x4 window, stride 2)": (
            lambda: occlusion(model, x, target, window=4, stride=2),
            lambda: ca.Occlusion(model).attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2),
                                                  target=target, perturbations_per_eval=max(1, 64 // len(x)))),
        "guided backprop": (lambda: guided_backprop(model, x, target),
                            lambda: ca.GuidedBackprop(model).attribute(x.clone().requires_grad_(), target=target)),
        "grad-cam (upsampled)": (
            lambda: grad_cam(model, layer, x, target),
            lambda: ca.LayerAttribution.interpolate(ca.LayerGradCam(model, layer).attribute(
                x, target=target, relu_attributions=True), (28, 28), "bilinear")),
        f"lime ({n_lime} samples)": (ours_lime, captum_lime),
    }
    print(f"load average (1, 5, 15 min) before: {_load()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    rows = []
    for name, (ours, theirs) in methods.items():
        ours(), theirs()  # untimed warm-up of each side
        times = alternating_times(ours, theirs, args.repeats)
        ratio = statistics.median(times["captum"]) / statistics.median(times["ours"])
        rows.append([name, _spread(times["ours"], len(x)), _spread(times["captum"], len(x)), ratio])
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"load average (1, 5, 15 min) after: {_load()}")
    print(f"torch {torch.__version__}, captum {captum.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; LeNet-5 on {len(x)} images of 28x28, median (min-max) of "
          f"{args.repeats} alternating calls of each after one warm-up\n")
    print(markdown_table(["method", "ours s/image median (min-max)", "captum s/image median (min-max)",
                          "captum / ours"], rows, digits=3))


if __name__ == "__main__":
    main()
