"""Benchmark of char-gpt's training step: tokens/s, and the share of this machine's matmul FLOP/s it reaches.

    python benchmarks/char_gpt.py                  # default config (nanoGPT CPU char config), fp32 and bf16
    python benchmarks/char_gpt.py --steps 50 --matmul-size 2048

The ceiling is measured, not quoted: the best of several timings of a large square fp32 (and bf16) matmul,
2 n^3 FLOP each. The training step's FLOPs use the usual count (Kaplan et al. 2020; nanoGPT's
``estimate_mfu``): 6 N per token for the parameter matmuls (forward 2N, backward 4N) plus
12 L T d per token for attention scores and weighted sums (forward and backward), with N the
non-embedding parameters, L layers, T the block size, d = d_model. The "share" is achieved FLOP/s
over the matmul ceiling at the same dtype and thread count (an MFU). Prints a Markdown table for
benchmarks/RESULTS.md. Run on an otherwise idle machine: the numbers are wall-clock.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch
import torch.nn.functional as F

from deepnotes.models.language import GPTConfig
from deepnotes.models.registry import create_model
from deepnotes.report import markdown_table

BATCH_SIZE, LR = 12, 1e-3  # char-gpt's defaults (nanoGPT's CPU character config); the model: the builder's defaults


def matmul_flops(n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    """Best FLOP/s of an (n, n) @ (n, n) matmul in ``dtype`` over ``repeats`` timings."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def step_time(vocab: int, steps: int, warmup: int, bf16: bool) -> tuple[float, int, GPTConfig]:
    """Median seconds of one training update (forward, backward, AdamW), the non-embedding parameter count and
    the model's sizes."""
    torch.manual_seed(0)
    model = create_model("gpt", vocab_size=vocab).train()
    cfg = model.cfg
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    x = torch.randint(0, vocab, (BATCH_SIZE, cfg.block_size + 1))
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab).float(), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("tok_emb", "pos_emb")))
    return sorted(times)[len(times) // 2], n_params, cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed updates (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed updates first")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n matmul that gives the ceiling")
    p.add_argument("--vocab", type=int, default=63, help="vocabulary size (the KJV text has 63 characters)")
    args = p.parse_args(argv)
    rows = []
    for label, dtype, bf16 in (("fp32", torch.float32, False), ("bf16 autocast", torch.bfloat16, True)):
        ceiling = matmul_flops(args.matmul_size, dtype)
        dt, n_params, cfg = step_time(args.vocab, args.steps, args.warmup, bf16)
        tokens = BATCH_SIZE * cfg.block_size
        flops_per_token = 6 * n_params + 12 * cfg.num_layers * cfg.d_model * cfg.block_size
        achieved = flops_per_token * tokens / dt
        rows.append([label, f"{dt * 1000:.1f} ms", f"{tokens / dt:,.0f}", f"{achieved / 1e9:.2f}",
                     f"{ceiling / 1e9:.1f}", f"{100 * achieved / ceiling:.1f}%"])
    print(f"char-gpt default ({cfg.num_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}, block {cfg.block_size}, "
          f"batch {BATCH_SIZE}; {n_params:,} non-embedding parameters); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"command: python benchmarks/char_gpt.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print(markdown_table(["precision", "update", "tokens/s", "achieved GFLOP/s",
                          f"matmul ceiling GFLOP/s (n={args.matmul_size})", "share of ceiling"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
