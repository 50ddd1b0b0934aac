"""Benchmark of deepnotes.audio feature extraction against librosa's batched call, alternating in one process.

    python benchmarks/audio_features.py                       # 256 one-second 16 kHz clips, float32, 2 threads
    python benchmarks/audio_features.py --repeats 41 --threads 1 --batch 64

Two features, with the same settings on both sides (checked to agree before timing):

* log-mel: 64 mels, 25 ms Hann frames (n_fft 400) every 10 ms, HTK mel scale, no area norm,
  power_to_db with top_db 80 -> (64, 101) per clip;
* MFCC-39 (ML2022 HW2): 13 MFCCs from 40 mels (Hamming window, otherwise as above) + deltas +
  delta-deltas (width 5, delta of delta) -> (39, 101) per clip.

Rows, all on the same (B, T) float32 batch on the CPU:

* deepnotes, fast path: ``LogMelSpectrogram`` / ``MFCCWithDeltas`` as built (``fast=True``, the default);
* librosa, one call on (B, T): its multichannel mode, the fair peer (its top_db floor then uses the whole
  batch's maximum, ours each clip's; the cost is the same);
* deepnotes, readable path (``fast=False``) and librosa looping over the clips: for information.

``--threads`` (default 2) is set before torch starts its thread pool (OMP_NUM_THREADS, MKL_NUM_THREADS,
torch.set_num_threads). librosa's FFT runs on one thread whatever the setting; its one BLAS call (the mel
einsum) runs on ``--blas-threads`` (OPENBLAS_NUM_THREADS for numpy's OpenBLAS, default 1): with 2 it was
no faster here idle (batched log-mel 98 vs 97 ms, MFCC-39 157 vs 107 ms, 2026-12-07) and 2x slower on a busy
machine (OpenBLAS's pthreads spin between calls, against torch's OpenMP ones), so 1 is librosa's best on
these two cores. ``--openmp`` picks how torch's idle OpenMP threads wait: the fast path runs ~100 short
parallel loops a call, so beside busy processes libgomp's default spinning can make it slower than the
readable path (log-mel, load ~2 from other jobs: 548 ms vs 156 ms; with GOMP_SPINCOUNT=10000, 84 vs 125 ms;
with OMP_WAIT_POLICY=passive, 24 vs 94 ms); ``cli`` is what the deepnotes command sets. After
``--warmup`` untimed calls of each, every repeat times each row once, in turn (ours, librosa's batched call,
ours readable, librosa's loop, then again), so that drifts of the machine hit all rows alike. Reported:
median, interquartile range and min-max of ``--repeats`` timings, clips/s at the median, the speed-up over
librosa's batched call as the ratio of medians and as the median (IQR) of the per-repeat ratios, and the
load average before and after. Run on an otherwise idle machine; prints a Markdown table for
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys

SR = 16000
LOGMEL = dict(n_fft=400, hop_length=160, n_mels=64)
MFCC = dict(n_mfcc=13, n_fft=400, hop_length=160, n_mels=40, window="hamming")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256, help="clips per batch (one second each at 16 kHz)")
    p.add_argument("--repeats", type=int, default=21, help="timed calls per row, alternating (>= 21 for RESULTS)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per row first")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--blas-threads", type=int, default=1, help="numpy's OpenBLAS threads for librosa (default 1)")
    p.add_argument("--openmp", choices=["default", "cli", "passive"], default="default",
                   help="torch's OpenMP waiting: libgomp's default (spin 300,000 turns before sleeping), the "
                        "deepnotes command line's (GOMP_SPINCOUNT=10000) or OMP_WAIT_POLICY=passive")
    p.add_argument("--no-loop", action="store_true", help="leave out librosa's loop over clips (the slowest row)")
    return p.parse_args(argv)


def quartiles(v: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of v, linear interpolation between order statistics."""
    import statistics

    q1, med, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, med, q3


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if min(args.threads, args.blas_threads, args.batch) < 1 or args.repeats < 3:
        print("--threads, --blas-threads and --batch must be >= 1, --repeats >= 3", file=sys.stderr)
        return 2
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before the pools start
        os.environ[var] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    if args.openmp == "cli":
        from deepnotes.runtime import configure_openmp  # imports no torch

        configure_openmp()
    elif args.openmp == "passive":
        os.environ["OMP_WAIT_POLICY"] = "passive"

    import time

    import numpy as np
    import torch

    from deepnotes.audio import LogMelSpectrogram, MFCCWithDeltas
    from deepnotes.report import markdown_table

    try:
        import librosa
    except ImportError:
        print("librosa is needed for the comparison: pip install -e '.[test]'", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)

    def librosa_logmel(y: np.ndarray) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=y, sr=SR, **LOGMEL, htk=True, norm=None)
        return librosa.power_to_db(mel, top_db=80.0)

    def librosa_mfcc39(y: np.ndarray) -> np.ndarray:
        c = librosa.feature.mfcc(y=y, sr=SR, **MFCC, htk=True, mel_norm=None)
        d1 = librosa.feature.delta(c, width=5)
        d2 = librosa.feature.delta(d1, width=5)
        return np.concatenate([c, d1, d2], axis=-2)

    x = torch.randn(args.batch, SR, generator=torch.Generator().manual_seed(0)) * 0.1  # (B, T) float32, 1 s each
    x_np = x.numpy()
    features = [
        ("log-mel (64 mels)", LogMelSpectrogram(SR, top_db=80.0, **LOGMEL),
         LogMelSpectrogram(SR, top_db=80.0, **LOGMEL, fast=False), librosa_logmel),
        ("MFCC-39 (13 + deltas + delta-deltas)", MFCCWithDeltas(SR), MFCCWithDeltas(SR, fast=False), librosa_mfcc39),
    ]
    rows = []
    load0 = os.getloadavg()
    with torch.inference_mode():
        for name, fast, readable, ref in features:
            # the same numbers first: ours (both paths) vs librosa clip by clip, on the first clips
            want = np.stack([ref(y) for y in x_np[:4]])
            err = max(float(np.abs(m(x[:4]).numpy() - want).max() / np.abs(want).max()) for m in (fast, readable))
            if err > 1e-4:
                raise SystemExit(f"{name}: ours and librosa differ (max error {err:.2e} of the largest value)")
            impls = {"deepnotes, fast path (B, T)": lambda m=fast: m(x),
                     "librosa, one call on (B, T)": lambda r=ref: r(x_np),
                     "deepnotes, readable path (B, T)": lambda m=readable: m(x)}
            if not args.no_loop:
                impls["librosa, loop over clips"] = lambda r=ref: [r(y) for y in x_np]
            times: dict[str, list[float]] = {k: [] for k in impls}
            for _ in range(args.warmup):
                for fn in impls.values():
                    fn()
            for _ in range(args.repeats):
                for k, fn in impls.items():
                    t = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t)
            peer = times["librosa, one call on (B, T)"]
            for k, v in times.items():
                q1, med, q3 = quartiles(v)
                r1, r_med, r3 = quartiles([p / t for p, t in zip(peer, v)])
                rows.append([name, k, f"{med * 1000:.1f} ms", f"{q1 * 1000:.1f}-{q3 * 1000:.1f}",
                             f"{min(v) * 1000:.1f}-{max(v) * 1000:.1f}", f"{args.batch / med:,.0f}",
                             f"{quartiles(peer)[1] / med:.2f}x", f"{r_med:.2f}x ({r1:.2f}-{r3:.2f})"])
            rows[-len(impls)][1] += f" (max rel. diff {err:.0e})"
    load1 = os.getloadavg()
    print(f"{args.batch} clips x 1 s at 16 kHz, float32, CPU ({cpu_name()}, "
          f"{os.cpu_count()} cores); torch {torch.__version__} ({torch.get_num_threads()} threads), librosa "
          f"{librosa.__version__}, numpy {np.__version__}; OMP/MKL_NUM_THREADS={args.threads}, "
          f"OPENBLAS_NUM_THREADS={args.blas_threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}; "
          f"{args.repeats} repeats alternating after {args.warmup} warm-up; load average before "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(f"command: python benchmarks/audio_features.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print()
    print(markdown_table(["feature", "implementation", f"median, batch of {args.batch}", "IQR", "min-max",
                          "clips/s", "vs librosa batched (medians)", "per-repeat ratio, median (IQR)"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
