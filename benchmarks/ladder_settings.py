"""HW10's medium and strong rungs under other settings, on disjoint draws of 1,000 validation images.

Loads a finished ``adversarial-attack`` run (its sources, held-out target and data split), then for each setting of
a group prints the held-out model's accuracy on each draw, the mean, and the gap to the medium rung (I-FGSM on the
ensemble, the group's first row): mean and worst draw. Only validation images are used: this is how the ladder's
settings are chosen, never on test.

    python benchmarks/ladder_settings.py RUN --group di        # input-diversity settings at the run's eps
    python benchmarks/ladder_settings.py RUN --group alpha     # step sizes
    python benchmarks/ladder_settings.py RUN --group steps20   # HW10's 20 iterations
    python benchmarks/ladder_settings.py RUN --group seeds --draws 6   # diversity seeds at step 2 eps / steps
    python benchmarks/ladder_settings.py RUN --group eps --eps 0.1     # the ladder at another budget
    python benchmarks/ladder_settings.py RUN --group hw10 --eps 0.1    # all four rungs, HW10's 20 x eps/10
    python benchmarks/ladder_settings.py RUN --group ensemble --eps 0.1   # other ensembles for I-FGSM
    python benchmarks/ladder_settings.py RUN --group medium --eps 0.1     # larger and fewer I-FGSM steps vs FGSM
    python benchmarks/ladder_settings.py RUN --group boss --eps 0.1       # boss candidates above 5 x eps/2
    python benchmarks/ladder_settings.py RUN --group boss2 --eps 0.1      # TI, VMI, SI-NI transfer attacks as boss
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

from deepnotes.attacks import Ensemble, fgsm, ifgsm, mifgsm
from deepnotes.data.images import load_held_out, to_pixels
from deepnotes.experiment import Run
from deepnotes.labs.adversarial_attack import load_model
from deepnotes.metrics.robustness import accuracy, attack_images


def di(p: float, rr: float, seed: int = 0, **kw) -> dict:
    return dict(diversity_prob=p, resize_rate=rr, generator=torch.Generator().manual_seed(seed), **kw)


class LogSoftmaxEnsemble(Ensemble):
    """The members' mean log-probabilities instead of their mean logits (each member's scale no longer counts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).log_softmax(dim=-1) for m in self.models]).mean(dim=0)


def groups(eps: float, n: int) -> dict[str, dict]:
    mi = functools.partial(functools.partial, mifgsm, eps=eps, steps=n)
    medium = functools.partial(ifgsm, eps=eps, alpha=eps / n, steps=n)

    def strong5(**kw) -> functools.partial:  # the strong rung (5 x eps/2, p .3) with transfer options
        return functools.partial(mifgsm, eps=eps, alpha=eps / 2, steps=5, **di(.3, .9), **kw)

    return {
        "di": {"medium": medium,
               "strong p.5 rr.9 (the lab's)": mi(alpha=eps / n, **di(.5, .9)),
               "MI only": mi(alpha=eps / n),
               "p1 rr.9": mi(alpha=eps / n, **di(1., .9)),
               "p.5 rr.8": mi(alpha=eps / n, **di(.5, .8)),
               "p1 rr.8": mi(alpha=eps / n, **di(1., .8)),
               "p.5 rr.9 alpha2": mi(alpha=2 * eps / n, **di(.5, .9)),
               "p.5 rr.9 decay.5": mi(alpha=eps / n, decay=.5, **di(.5, .9)),
               "p1 rr.8 eot2": mi(alpha=eps / n, eot_samples=2, **di(1., .8))},
        "alpha": {"medium": medium,
                  "medium alpha2": functools.partial(ifgsm, eps=eps, alpha=2 * eps / n, steps=n),
                  "medium alpha2.5": functools.partial(ifgsm, eps=eps, alpha=2.5 * eps / n, steps=n),
                  **{f"MI a{a} p{p}": mi(alpha=a * eps / n, **di(p, .9)) for a in (1.5, 2, 3) for p in (0., .3, .5)},
                  "MI a1 decay2": mi(alpha=eps / n, decay=2.0)},
        "steps20": {"medium": functools.partial(ifgsm, eps=eps, alpha=eps / 10, steps=20),
                    "medium s10": medium,
                    **{f"MI s20 p{p}": functools.partial(mifgsm, eps=eps, alpha=eps / 10, steps=20, **di(p, .9))
                       for p in (0., .3, .5, .7)}},
        "seeds": {"medium": medium,
                  "medium a2": functools.partial(ifgsm, eps=eps, alpha=2 * eps / n, steps=n),
                  "MI a2 p0": mi(alpha=2 * eps / n),
                  **{f"MI a2 p{p} seed{s}": mi(alpha=2 * eps / n, **di(p, .9, seed=s)) for p in (.3, .5)
                     for s in (0, 1, 2)}},
        "hw10": {"medium: I-FGSM, 20 x eps/10": functools.partial(ifgsm, eps=eps, alpha=eps / 10, steps=20),
                 "simple: FGSM on the first source": "fgsm",
                 "strong: MI-DI, 20 x eps/10": functools.partial(mifgsm, eps=eps, alpha=eps / 10, steps=20,
                                                                  **di(.5, .9)),
                 "boss A: MI-DI, 50 x eps/10": functools.partial(mifgsm, eps=eps, alpha=eps / 10, steps=50,
                                                                  **di(.5, .9))},
        "ensemble": {"medium: I-FGSM on mean logits": medium,
                     "simple: FGSM on the first source": "fgsm",
                     "I-FGSM on mean log-softmax": ("log-softmax", medium),
                     "I-FGSM on the CNN sources only": ("cnns", medium)},
        "medium": {"medium: I-FGSM, n x eps/n": medium,
                   "simple: FGSM on the first source": "fgsm",
                   "FGSM on the ensemble": ("ensemble-fgsm", None),
                   "I-FGSM, n x 2 eps/n": functools.partial(ifgsm, eps=eps, alpha=2 * eps / n, steps=n),
                   "I-FGSM, n x 3 eps/n": functools.partial(ifgsm, eps=eps, alpha=3 * eps / n, steps=n),
                   "I-FGSM, 5 x eps/2": functools.partial(ifgsm, eps=eps, alpha=eps / 2, steps=5),
                   "I-FGSM, 3 x eps/2": functools.partial(ifgsm, eps=eps, alpha=eps / 2, steps=3),
                   "MI-DI, n x 2 eps/n, p .3": mi(alpha=2 * eps / n, **di(.3, .9)),
                   "MI-DI, 5 x eps/2, p .3": functools.partial(mifgsm, eps=eps, alpha=eps / 2, steps=5,
                                                                **di(.3, .9))},
        "boss": {"medium: I-FGSM, 5 x eps/2": functools.partial(ifgsm, eps=eps, alpha=eps / 2, steps=5),
                 "strong: MI-DI, 5 x eps/2, p .3": functools.partial(mifgsm, eps=eps, alpha=eps / 2, steps=5,
                                                                      **di(.3, .9)),
                 "MI-DI, 5 x eps/2, p .5": functools.partial(mifgsm, eps=eps, alpha=eps / 2, steps=5, **di(.5, .9)),
                 "MI-DI, 5 x eps/2, p .3, EOT 4": functools.partial(mifgsm, eps=eps, alpha=eps / 2, steps=5,
                                                                     eot_samples=4, **di(.3, .9)),
                 "MI-DI, 10 x eps/4, p .3": functools.partial(mifgsm, eps=eps, alpha=eps / 4, steps=10, **di(.3, .9)),
                 "MI-DI, 20 x eps/4, p .3": functools.partial(mifgsm, eps=eps, alpha=eps / 4, steps=20, **di(.3, .9)),
                 "MI-DI, 50 x eps/10, p .5 (boss A)": functools.partial(mifgsm, eps=eps, alpha=eps / 10, steps=50,
                                                                         **di(.5, .9))},
        "boss2": {"medium: I-FGSM, 5 x eps/2": functools.partial(ifgsm, eps=eps, alpha=eps / 2, steps=5),
                  "strong: MI-DI, 5 x eps/2, p .3": strong5(),
                  "TI5-MI-DI (sigma .67)": strong5(ti_kernel=5),
                  "TI7-MI-DI (sigma 1)": strong5(ti_kernel=7),
                  "VMI-DI, N 5": strong5(variance_samples=5),
                  "SI-NI-DI, m 5": strong5(nesterov=True, scales=5),
                  "VMI-TI5-DI, N 5": strong5(variance_samples=5, ti_kernel=5),
                  "VNI-DI, N 5": strong5(variance_samples=5, nesterov=True),
                  "SI-MI-DI, m 3": strong5(scales=3),
                  "VMI-DI, N 5, beta .75": strong5(variance_samples=5, variance_bound=.75),
                  "VMI-DI, N 5, beta 3": strong5(variance_samples=5, variance_bound=3.),
                  "VMI-MI (no DI), N 5": functools.partial(mifgsm, eps=eps, alpha=eps / 2, steps=5,
                                                           variance_samples=5),
                  "VMI-DI, N 10": strong5(variance_samples=10),
                  "VMI-MI (no DI), N 20 (the paper's)": functools.partial(mifgsm, eps=eps, alpha=eps / 2, steps=5,
                                                                          variance_samples=20),
                  "VMI-DI, N 5, 10 x eps/4": functools.partial(mifgsm, eps=eps, alpha=eps / 4, steps=10,
                                                               variance_samples=5, **di(.3, .9))},
        "eps": {"medium": medium,
                "strong p.5 rr.9 (the lab's)": mi(alpha=eps / n, **di(.5, .9)),
                "MI a1 p0": mi(alpha=eps / n),
                "medium a2": functools.partial(ifgsm, eps=eps, alpha=2 * eps / n, steps=n),
                "MI a2 p.5": mi(alpha=2 * eps / n, **di(.5, .9)),
                "boss A (50 steps a1 p.5)": functools.partial(mifgsm, eps=eps, alpha=eps / n, steps=50,
                                                              **di(.5, .9))},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a finished adversarial-attack run folder")
    ap.add_argument("--group", default="di",
                    choices=("di", "alpha", "steps20", "seeds", "eps", "hw10", "ensemble", "medium", "boss",
                             "boss2"))
    ap.add_argument("--draws", type=int, default=4, help="disjoint draws of 1,000 validation images")
    ap.add_argument("--eps", type=float, default=None, help="L-inf budget (default: the run's --eps)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Run(args.run)
    cfg = run.config
    sources = [load_model(run, s, s) for s in cfg.sources]
    ensemble = Ensemble(sources).eval()
    target = load_model(run, "target", cfg.target)
    data = load_held_out(cfg.dataset, cfg.data_dir, cfg.limit_train, 0, cfg.val_fraction, cfg.seed)
    perm = torch.randperm(len(data.val), generator=torch.Generator().manual_seed(1234))
    draws = [perm[i * 1000:(i + 1) * 1000] for i in range(args.draws)]
    res: dict[str, list[float]] = {}
    for name, attack in groups(args.eps or cfg.eps, cfg.steps)[args.group].items():
        t0 = time.perf_counter()
        surrogate = sources[0] if attack == "fgsm" else ensemble
        if isinstance(attack, tuple) and attack[0] == "ensemble-fgsm":
            attack = functools.partial(fgsm, eps=args.eps or cfg.eps)
        elif isinstance(attack, tuple):  # (which surrogate, attack)
            kind, attack = attack
            surrogate = (LogSoftmaxEnsemble(sources) if kind == "log-softmax" else
                         Ensemble([m for m, s in zip(sources, cfg.sources) if s != "mlp"]).eval())
        attack = functools.partial(fgsm, eps=args.eps or cfg.eps) if attack == "fgsm" else attack
        accs = [accuracy(target, attack_images(attack, surrogate, to_pixels(data.val.images[i]), data.val.labels[i]),
                         data.val.labels[i]) for i in draws]
        res[name] = accs
        gaps = [a - m for a, m in zip(accs, next(iter(res.values())))]
        print(f"{name:28s} " + " ".join(f"{100 * a:5.1f}" for a in accs) + f" | mean {100 * sum(accs) / len(accs):5.2f}"
              f" | vs medium {100 * sum(gaps) / len(gaps):+5.2f} worst {100 * max(gaps):+5.2f}"
              f" | {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
