"""Benchmark of deepnotes.audio feature extraction: clips/s, ours batched in torch vs librosa.

    python benchmarks/audio_features.py                      # 256 one-second 16 kHz clips, float32
    python benchmarks/audio_features.py --batch 64 --repeats 3 --threads 1

Two features, with the same settings on both sides (checked to agree before timing):

* log-mel: 64 mels, 25 ms Hann frames (n_fft 400) every 10 ms, HTK mel scale, no area norm,
  power_to_db with top_db 80 -> (64, 101) per clip;
* MFCC-39 (ML2022 HW2): 13 MFCCs from 40 mels (Hamming window, otherwise as above) + deltas +
  delta-deltas (width 5, delta of delta) -> (39, 101) per clip.

Rows: ours (``LogMelSpectrogram`` / ``MFCCWithDeltas``) on the whole (B, T) float32 batch on the CPU;
librosa looping over the clips (the usual way, one ``librosa.feature.*`` call per clip); librosa on
the whole (B, T) array in one call (its multichannel mode; its top_db floor then uses the whole
batch's maximum, ours each clip's). Median of ``--repeats`` timings after one warm-up. Prints a
Markdown table for benchmarks/RESULTS.md; the numbers are wall-clock, so run on an idle machine.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from deepnotes.audio import LogMelSpectrogram, MFCCWithDeltas
from deepnotes.report import markdown_table

SR = 16000
LOGMEL = dict(n_fft=400, hop_length=160, n_mels=64)
MFCC = dict(n_mfcc=13, n_fft=400, hop_length=160, n_mels=40, window="hamming")


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocations, librosa's first-call set-up)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def librosa_logmel(librosa, y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SR, **LOGMEL, htk=True, norm=None)
    return librosa.power_to_db(mel, top_db=80.0)


def librosa_mfcc39(librosa, y: np.ndarray) -> np.ndarray:
    c = librosa.feature.mfcc(y=y, sr=SR, **MFCC, htk=True, mel_norm=None)
    d1 = librosa.feature.delta(c, width=5)
    d2 = librosa.feature.delta(d1, width=5)
    return np.concatenate([c, d1, d2], axis=-2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256, help="clips per batch (one second each at 16 kHz)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = p.parse_args(argv)
    try:
        import librosa
    except ImportError:
        print("librosa is needed for the comparison: pip install -e '.[test]'", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, SR) * 0.1  # (B, T) float32, one second each
    x_np = x.numpy()

    logmel = LogMelSpectrogram(SR, top_db=80.0, **LOGMEL)
    mfcc39 = MFCCWithDeltas(SR)
    features = [
        ("log-mel (64 mels)", lambda: logmel(x), lambda y: librosa_logmel(librosa, y)),
        ("MFCC-39 (13 + deltas + delta-deltas)", lambda: mfcc39(x), lambda y: librosa_mfcc39(librosa, y)),
    ]
    rows = []
    with torch.inference_mode():
        for name, ours, ref in features:
            # the same numbers first: ours vs librosa on the first clips (float32 both)
            got, want = ours()[:4].numpy(), np.stack([ref(y) for y in x_np[:4]])
            err = float(np.abs(got - want).max() / np.abs(want).max())
            if err > 1e-4:
                raise SystemExit(f"{name}: ours and librosa differ (max error {err:.2e} of the largest value)")
            t_ours = median_seconds(ours, args.repeats)
            t_loop = median_seconds(lambda: [ref(y) for y in x_np], max(1, args.repeats // 2))
            t_multi = median_seconds(lambda: ref(x_np), max(1, args.repeats // 2))
            for impl, t in (("deepnotes, batched torch (B, T)", t_ours), ("librosa, loop over clips", t_loop),
                            ("librosa, one call on (B, T)", t_multi)):
                rows.append([name, impl, f"{t * 1000:.0f} ms", f"{args.batch / t:,.0f}", f"{t_loop / t:.1f}x"])
            rows[-3][-1] += f" (max rel. diff {err:.0e})"
    print(f"{args.batch} clips x 1 s at 16 kHz, float32, CPU; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"librosa {librosa.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"command: python benchmarks/audio_features.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print()
    print(markdown_table(["feature", "implementation", f"batch of {args.batch}", "clips/s", "vs librosa loop"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
