"""Readable vs fused path of every module that has both, forward + backward on the labs' sizes, alternating.

    python benchmarks/fused_paths.py                        # every case, 21 alternating repeats each
    python benchmarks/fused_paths.py --packed               # + torch.nn.LSTM/GRU on a PackedSequence (lengths cases)
    python benchmarks/fused_paths.py --cases lstm-lm,layernorm --repeats 41 --threads 1

Each case builds one module twice with the same weights: the readable path (the equations line by line: LayerNorm
from means, attention from the softmax of scores, the recurrent layers' Python loop over time) and the fused path
(``use_fused=True``: ``F.layer_norm``, ``F.scaled_dot_product_attention``, torch's ``_VF.lstm``/``gru`` kernels),
on the input one update of a lab feeds it:

* ``layernorm``, ``attention``, ``encoder-layer``: char-gpt's defaults (batch 12, block 64, d_model 128, 4 heads,
  feed-forward 512, GELU, pre-norm, no biases, causal);
* ``lstm-lm``: lstm-lm's 2-layer LSTM (embedding 128, hidden 240) on 12 windows of 64 characters;
* ``phoneme-boss``: phoneme-classification's boss rung, a 2-layer bidirectional LSTM (39 -> 128 a direction) on 16
  padded utterances of up to 400 frames (lengths drawn in [200, 400]);
* ``translation-encoder``, ``translation-decoder``: translation's RNN seq2seq (embedding 128, hidden 128): the
  bidirectional GRU encoder on 48 padded sources of up to 20 subwords (lengths in [5, 20]) and the GRU decoder
  (hidden 256) from a given initial state on 48 x 20 target tokens.

One repeat = forward, then backward of a fixed random linear function of the output (gradients set to None between
repeats). After ``--warmup`` untimed repeats, the timed ones alternate (readable, fused, readable, ...) so that
drifts of the machine hit both paths; reported: median and min-max of ``--repeats`` repeats per path, the speed-up
of the medians, and the largest difference of the outputs (the tests compare outputs, states and gradients in
float64). The load average is printed before and after: time on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepnotes.nn.attention import MultiHeadAttention
from deepnotes.nn.normalization import LayerNorm
from deepnotes.nn.recurrent import GRU, LSTM
from deepnotes.nn.transformer import TransformerEncoderLayer
from deepnotes.report import markdown_table


@dataclass
class Case:
    """One module on one lab's input: ``paths`` maps a path's name to ``() -> output`` (forward only)."""

    module: str
    lab: str
    shape: str
    paths: dict[str, Callable[[], Tensor]]
    params: list[nn.Parameter]


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _lengths(n: int, low: int, high: int, seed: int) -> Tensor:
    lengths = torch.randint(low, high + 1, (n,), generator=torch.Generator().manual_seed(seed))
    lengths[0] = high  # the longest fills the padded length
    return lengths


def _twin(module: nn.Module) -> nn.Module:
    """A copy of the module (same weights) on the fused path."""
    other = copy.deepcopy(module)
    other.use_fused = True
    return other


def _packed(rnn: LSTM | GRU, x: Tensor, lengths: Tensor) -> Callable[[], Tensor]:
    """torch.nn's LSTM/GRU on a PackedSequence, holding the same weights (torch's own way to skip padding)."""
    ref = rnn.to_torch()

    def run() -> Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=x.shape[1])
        return out

    run.params = list(ref.parameters())  # type: ignore[attr-defined]
    return run


def build_cases(packed: bool) -> dict[str, Case]:
    """Every case, its modules seeded (same weights on both paths)."""
    torch.manual_seed(0)
    cases: dict[str, Case] = {}
    B, T, C = 12, 64, 128  # char-gpt: batch 12, block 64, d_model 128
    x = _randn(B, T, C, seed=1)

    norm = LayerNorm(C, bias=False)
    fused_norm = _twin(norm)
    cases["layernorm"] = Case("LayerNorm", "char-gpt", f"({B}, {T}, {C})",
                              {"readable": lambda: norm(x), "fused": lambda: fused_norm(x)},
                              list(norm.parameters()) + list(fused_norm.parameters()))

    mha = MultiHeadAttention(C, 4, bias=False)
    cases["attention"] = Case("MultiHeadAttention, causal", "char-gpt", f"({B}, {T}, {C}), 4 heads",
                              {"readable": lambda: mha(x, x, x, is_causal=True)[0],
                               "fused": lambda: mha(x, x, x, is_causal=True, use_fused=True)[0]},
                              list(mha.parameters()))

    layer = TransformerEncoderLayer(C, 4, dim_feedforward=4 * C, dropout=0.0, activation="gelu", norm_first=True,
                                    bias=False)
    fused_layer = _twin(layer)  # its use_fused sets its LayerNorms' too
    cases["encoder-layer"] = Case("TransformerEncoderLayer, causal", "char-gpt", f"({B}, {T}, {C}), ff 512",
                                  {"readable": lambda: layer(x, is_causal=True),
                                   "fused": lambda: fused_layer(x, is_causal=True)},
                                  list(layer.parameters()) + list(fused_layer.parameters()))

    lm = LSTM(128, 240, num_layers=2, batch_first=True)
    lm_fused = _twin(lm)
    cases["lstm-lm"] = Case("LSTM, 2 layers", "lstm-lm", "(12, 64, 128) -> 240",
                            {"readable": lambda: lm(x)[0], "fused": lambda: lm_fused(x)[0]},
                            list(lm.parameters()) + list(lm_fused.parameters()))

    frames, frame_lengths = _randn(16, 400, 39, seed=2), _lengths(16, 200, 400, seed=3)
    boss = LSTM(39, 128, num_layers=2, batch_first=True, bidirectional=True)
    boss_fused = _twin(boss)
    paths = {"readable": lambda: boss(frames, lengths=frame_lengths)[0],
             "fused": lambda: boss_fused(frames, lengths=frame_lengths)[0]}
    if packed:
        paths["torch.nn, packed"] = _packed(boss, frames, frame_lengths)
    cases["phoneme-boss"] = Case("LSTM, 2 layers, bidirectional, lengths", "phoneme-classification",
                                 "(16, <= 400, 39) -> 2 x 128", paths,
                                 list(boss.parameters()) + list(boss_fused.parameters()))

    src, src_lengths = _randn(48, 20, 128, seed=4), _lengths(48, 5, 20, seed=5)
    enc = GRU(128, 128, batch_first=True, bidirectional=True)
    enc_fused = _twin(enc)
    paths = {"readable": lambda: enc(src, lengths=src_lengths)[0],
             "fused": lambda: enc_fused(src, lengths=src_lengths)[0]}
    if packed:
        paths["torch.nn, packed"] = _packed(enc, src, src_lengths)
    cases["translation-encoder"] = Case("GRU, bidirectional, lengths", "translation (RNN)",
                                        "(48, <= 20, 128) -> 2 x 128", paths,
                                        list(enc.parameters()) + list(enc_fused.parameters()))

    tgt, h0 = _randn(48, 20, 128, seed=6), _randn(1, 48, 256, seed=7)
    dec = GRU(128, 256, batch_first=True)
    dec_fused = _twin(dec)
    cases["translation-decoder"] = Case("GRU, given h0", "translation (RNN)", "(48, 20, 128) -> 256",
                                        {"readable": lambda: dec(tgt, h0)[0], "fused": lambda: dec_fused(tgt, h0)[0]},
                                        list(dec.parameters()) + list(dec_fused.parameters()))
    for case in cases.values():
        for run in case.paths.values():
            case.params += getattr(run, "params", [])
    return cases


def time_case(case: Case, repeats: int, warmup: int) -> tuple[dict[str, list[float]], float]:
    """Alternating timings of forward + backward per path (seconds), and the largest output difference."""
    outs = {name: run().detach() for name, run in case.paths.items()}
    diff = max(float((o - outs["readable"]).abs().max()) for o in outs.values())
    upstream = _randn(*outs["readable"].shape, seed=8)

    def once(run: Callable[[], Tensor]) -> float:
        for p in case.params:
            p.grad = None
        t = time.perf_counter()
        run().backward(upstream)
        return time.perf_counter() - t

    times: dict[str, list[float]] = {name: [] for name in case.paths}
    for _ in range(warmup):
        for run in case.paths.values():
            once(run)
    for _ in range(repeats):
        for name, run in case.paths.items():
            times[name].append(once(run))
    return times, diff


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="all", help="comma-separated case names (default: all of them)")
    p.add_argument("--repeats", type=int, default=21, help="timed repeats of each path (median reported; >= 21)")
    p.add_argument("--warmup", type=int, default=2, help="untimed repeats of each path first")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--packed", action="store_true", help="also time torch.nn's kernels on a PackedSequence where "
                   "the case has lengths")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    cases = build_cases(args.packed)
    names = list(cases) if args.cases == "all" else [c.strip() for c in args.cases.split(",")]
    unknown = [n for n in names if n not in cases]
    if unknown:
        p.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(cases)}")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    rows = []
    for name in names:
        case = cases[name]
        times, diff = time_case(case, args.repeats, args.warmup)
        base = statistics.median(times["readable"])
        for path, ts in times.items():
            med = statistics.median(ts)
            rows.append([case.module if path == "readable" else "", case.lab if path == "readable" else "",
                         case.shape if path == "readable" else "", path, _ms(med), f"{_ms(min(ts))}-{_ms(max(ts))}",
                         "1" if path == "readable" else f"{base / med:.1f}x",
                         f"{diff:.1e}" if path == "readable" else ""])
        print(f"  {name}: done", file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
          f"; forward + backward, {args.repeats} alternating repeats per path after {args.warmup} warm-up; load "
          f"average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f}")
    print(f"command: python benchmarks/fused_paths.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print()
    print(markdown_table(["module", "lab", "input", "path", "median ms", "min-max ms", "speed-up",
                          "max |out diff|"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
