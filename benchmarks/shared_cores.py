"""Benchmark: char-gpt training beside another busy process, with torch's thread defaults and with the command line's.

    python benchmarks/shared_cores.py                  # 3 rounds, 8 s of training per measurement
    python benchmarks/shared_cores.py --rounds 5 --seconds 15

Each measurement is a fresh Python process (OpenMP reads its settings once, at start) that trains the char-gpt model
(the builder's defaults: 4 layers, 4 heads, 128 dims, block 64, batch 12, AdamW) for ``--seconds`` after 5 warm-up
updates and prints its tokens/s. Policies:

* ``torch-default``: nothing set; torch uses every core and GNU OpenMP's default (spinning) wait;
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE``, every core;
* ``one-thread``: ``torch.set_num_threads(1)``, default wait (what README told users to do by hand);
* ``spin-N``: ``GOMP_SPINCOUNT=N`` (a waiting thread spins N times, then sleeps), every core;
* ``deepnotes``: what ``deepnotes run`` does (:mod:`deepnotes.runtime`): ``GOMP_SPINCOUNT=10000`` and one thread per
  idle core, the cores' idleness sampled from /proc/stat when the process starts.

Each is measured on the idle machine and beside a competitor, a second process spinning one core in a Python loop
(started 1 s before). Rounds alternate the policies and both conditions, so slow drifts of the machine hit all
alike. "slowdown" = idle tokens/s / tokens/s beside the competitor (medians over rounds); the issue's target is
<= 2x for the command line's choice. The load averages before and after are printed. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

POLICIES = ("torch-default", "passive", "one-thread", "spin-10000", "deepnotes")


def worker(policy: str, seconds: float) -> None:
    """Train char-gpt for ``seconds`` under ``policy``; print one JSON line {tokens_per_s, threads, reason}."""
    reason = ""
    if policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    if policy.startswith("spin-"):
        os.environ["GOMP_SPINCOUNT"] = policy.split("-", 1)[1]
    if policy == "deepnotes":
        from deepnotes import runtime

        runtime.configure_openmp()
        threads, reason = runtime.choose_threads()
    import torch
    import torch.nn.functional as F

    from deepnotes.models.registry import create_model

    if policy == "one-thread":
        torch.set_num_threads(1)
    elif policy == "deepnotes" and threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    vocab, batch = 63, 12
    model = create_model("gpt", vocab_size=vocab).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, vocab, (batch, model.cfg.block_size + 1))

    def update() -> None:
        loss = F.cross_entropy(model(x[:, :-1]).reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        update()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        update()
        n += 1
    rate = n * batch * model.cfg.block_size / (time.perf_counter() - t0)
    print(json.dumps({"tokens_per_s": rate, "threads": torch.get_num_threads(), "reason": reason}), flush=True)


def measure(policy: str, seconds: float, competitor: bool) -> dict:
    """One worker process's result, beside a spinning competitor process when ``competitor``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    spinner = None
    if competitor:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", policy, "--seconds", str(seconds)],
                             env=env, check=True, capture_output=True, text=True).stdout
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="measurements per policy and condition (median reported)")
    p.add_argument("--seconds", type=float, default=8.0, help="seconds of training per measurement")
    p.add_argument("--policies", default=",".join(POLICIES),
                   help="comma-separated: " + ", ".join(POLICIES) + ", or spin-N")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seconds)
        return 0
    policies = [s for s in args.policies.split(",") if s]
    bad = [s for s in policies if s not in POLICIES and not (s.startswith("spin-") and s[5:].isdigit())]
    if bad:
        p.error(f"--policies: unknown {', '.join(bad)}; choose from {', '.join(POLICIES)}")
    load0 = os.getloadavg()
    results: dict[tuple[str, bool], list[dict]] = {(pol, c): [] for pol in policies for c in (False, True)}
    for r in range(args.rounds):
        for pol in policies:
            for comp in (False, True):
                res = measure(pol, args.seconds, comp)
                results[(pol, comp)].append(res)
                print(f"round {r + 1}: {pol:14s} {'beside competitor' if comp else 'idle':18s} "
                      f"{res['tokens_per_s']:8.0f} tokens/s, {res['threads']} thread(s) {res['reason']}",
                      file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.rounds} rounds of "
          f"{args.seconds:g} s; load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}\n")
    print("| policy | threads idle / beside | tokens/s idle (median, min-max) | tokens/s beside a busy process "
          "| slowdown |")
    print("|---|---|---|---|---|")
    for pol in policies:
        idle = [x["tokens_per_s"] for x in results[(pol, False)]]
        comp = [x["tokens_per_s"] for x in results[(pol, True)]]
        th = f"{results[(pol, False)][0]['threads']} / {results[(pol, True)][0]['threads']}"
        mi, mc = statistics.median(idle), statistics.median(comp)
        print(f"| {pol} | {th} | {mi:,.0f} ({min(idle):,.0f}-{max(idle):,.0f}) "
              f"| {mc:,.0f} ({min(comp):,.0f}-{max(comp):,.0f}) | {mi / mc:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
