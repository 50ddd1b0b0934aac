"""Benchmark of char-gpt's training update against nanoGPT's, alternating in one process, and the matmul ceiling.

    python benchmarks/char_gpt.py --nanogpt PATH      # PATH: a checkout of karpathy/nanoGPT (its model.py is imported)
    python benchmarks/char_gpt.py                     # ours only, when no nanoGPT checkout is at hand
    python benchmarks/char_gpt.py --repeats 41 --threads 1

One update = forward, cross-entropy, backward, gradient clipping at 1, the optimizer step, on a batch of 12 windows of
64 characters (vocabulary 63, the KJV text's), exactly as each trains:

* ours: the ``char-gpt`` lab's defaults (:class:`deepnotes.labs.char_lm.CharGPTConfig`): the model it builds, the
  optimizer :func:`deepnotes.train.engine.make_optimizer` makes from the config, bfloat16 autocast when the
  config and CPU ask for it (``--cpu-bf16 auto``) and ``torch.compile`` where a compiler is (``--compile auto``;
  compiled during the warm-up). ``--ours-fp32`` adds a row in float32 without compiling, ``--ablate`` one without
  each of the two;
* nanoGPT: ``GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False, dropout=0))`` and its own
  ``configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")``, in float32 (train.py's context on the CPU).

After ``--warmup`` untimed updates of each, the timed updates alternate (ours, nanoGPT, ours, ...) so that drifts of
the machine hit both; reported: median and min-max of ``--repeats`` updates, tokens/s at the median, and the ratio.
The ceiling is the best of 10 timings of an (n, n) fp32 matmul (2 n^3 FLOP) taken in the same run; the share of it
uses nanoGPT's FLOPs per token (``estimate_mfu``: 6 N + 12 L T d, N the non-embedding parameters). The load average
is printed before and after: run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from deepnotes.labs.char_lm import CharGPTConfig
from deepnotes.report import markdown_table
from deepnotes.train.engine import make_optimizer, maybe_compile, use_cpu_bf16

VOCAB = 63  # distinct characters of the KJV text


def matmul_flops(n: int, repeats: int = 10) -> float:
    """Best FLOP/s of an fp32 (n, n) @ (n, n) matmul over ``repeats`` timings."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def ours(cfg: CharGPTConfig) -> tuple[Callable[[torch.Tensor, torch.Tensor], None], int]:
    """One char-gpt update as the lab trains it, and the model's non-embedding parameter count."""
    torch.manual_seed(0)
    model = cfg.model(VOCAB).train()
    opt = make_optimizer(model, cfg)
    bf16 = use_cpu_bf16(cfg, torch.device("cpu"))
    forward = maybe_compile(model, cfg.compile, torch.device("cpu"))

    def update(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("pos_emb"))
    return update, n


def nanogpt(path: Path, cfg: CharGPTConfig) -> tuple[Callable[[torch.Tensor, torch.Tensor], None], int]:
    """One update of nanoGPT's model and optimizer (imported from ``path``/model.py), as its train.py does on a CPU."""
    sys.path.insert(0, str(path))
    try:
        from model import GPT, GPTConfig  # nanoGPT's
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=cfg.block_size, vocab_size=VOCAB, n_layer=cfg.n_layers, n_head=cfg.n_heads,
                          n_embd=cfg.d_model, dropout=0.0, bias=False)).train()
    opt = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.momentum, 0.99), "cpu")

    def update(x: torch.Tensor, y: torch.Tensor) -> None:
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return update, model.get_num_params()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nanogpt", type=Path, help="a karpathy/nanoGPT checkout (the folder holding model.py)")
    p.add_argument("--repeats", type=int, default=41, help="timed updates of each (median reported; >= 21)")
    p.add_argument("--warmup", type=int, default=10, help="untimed updates of each first")
    p.add_argument("--matmul-size", type=int, default=1024, help="n of the n x n fp32 matmul that gives the ceiling")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--ours-fp32", action="store_true", help="also time ours in float32 and eager (--cpu-bf16 off "
                   "--compile off)")
    p.add_argument("--ablate", action="store_true", help="also time ours without compile, and without bf16")
    args = p.parse_args(argv)
    if args.nanogpt is not None and not (args.nanogpt / "model.py").is_file():
        p.error(f"--nanogpt {args.nanogpt}: no model.py there; pass the folder of a karpathy/nanoGPT checkout")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    cfg = CharGPTConfig()
    contestants: dict[str, tuple[Callable, int]] = {"deepnotes char-gpt": ours(cfg)}
    if args.ours_fp32:
        contestants["deepnotes char-gpt, --cpu-bf16 off --compile off"] = ours(
            dataclasses.replace(cfg, cpu_bf16="off", compile="off"))
    if args.ablate:
        contestants["deepnotes char-gpt, --compile off"] = ours(dataclasses.replace(cfg, compile="off"))
        contestants["deepnotes char-gpt, --cpu-bf16 off"] = ours(dataclasses.replace(cfg, cpu_bf16="off"))
    if args.nanogpt is not None:
        contestants["nanoGPT (float32, its CPU path)"] = nanogpt(args.nanogpt, cfg)
    torch.manual_seed(1)
    data = torch.randint(0, VOCAB, (cfg.batch_size, cfg.block_size + 1))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    times: dict[str, list[float]] = {k: [] for k in contestants}
    for _ in range(args.warmup):
        for update, _n in contestants.values():
            update(x, y)
    for _ in range(args.repeats):
        for name, (update, _n) in contestants.items():
            t = time.perf_counter()
            update(x, y)
            times[name].append(time.perf_counter() - t)
    ceiling = matmul_flops(args.matmul_size)
    load1 = os.getloadavg()
    tokens = cfg.batch_size * cfg.block_size
    rows, medians = [], {}
    for name, (_update, n_params) in contestants.items():
        med = medians[name] = statistics.median(times[name])
        flops = (6 * n_params + 12 * cfg.n_layers * cfg.d_model * cfg.block_size) * tokens / med
        rows.append([name, f"{med * 1000:.1f} ms", f"{min(times[name]) * 1000:.1f}-{max(times[name]) * 1000:.1f} ms",
                     f"{tokens / med:,.0f}", f"{flops / 1e9:.1f}", f"{100 * flops / ceiling:.0f}%"])
    print(f"char-gpt config: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}, "
          f"block {cfg.block_size}, batch {cfg.batch_size}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; {args.repeats} alternating updates each after "
          f"{args.warmup} warm-up; load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; fp32 matmul ceiling (n={args.matmul_size}) "
          f"{ceiling / 1e9:.0f} GFLOP/s")
    print(f"command: python benchmarks/char_gpt.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print()
    print(markdown_table(["update", "median", "min-max", "tokens/s", "GFLOP/s", "share of fp32 ceiling"], rows))
    ref = [k for k in medians if k.startswith("nanoGPT")]
    if ref:
        print()
        for name in medians:
            if name != ref[0]:
                print(f"{name}: {medians[ref[0]] / medians[name]:.2f}x nanoGPT's tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
