"""Vocal separation memory against song length: is the working memory of 10 minutes that of 1?

Streams the separation (emo_models.vocals.separate_chunks, as isolate_vocals and the Isolate Vocals
node run it) of seeded noise at a song's rate and channel count, and reports with tracemalloc the
peak bytes numpy and Python allocate beyond the input itself, and the seconds it took. The input
(and isolate_vocals' output, the same size) grow with the song by nature; the target is that the
working memory does not: 10 minutes within 10 % of 1 minute. onnxruntime's own buffers (MDX-Net
models) are not traced; they are those of one segment.

    python bench/separation_memory.py [--minutes 1 --minutes 10 --rate 44100 --channels 2 --method built-in]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emo_models.vocals import BUILTIN, CHUNK_SECONDS, load_separator, separate_chunks  # noqa: E402


def peak_working_memory(minutes: float, rate: int, channels: int, separator) -> tuple[int, float]:
    """(peak traced bytes while streaming the separation of ``minutes`` of noise, seconds taken)."""
    wave = (0.1 * np.random.default_rng(0).standard_normal((channels, int(minutes * 60 * rate)))).astype(np.float32)
    started = time.time()
    tracemalloc.start()
    try:
        for _ in separate_chunks(wave, rate, separator):
            pass
        return tracemalloc.get_traced_memory()[1], time.time() - started
    finally:
        tracemalloc.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, action="append", default=None, help="default: 1 and 10")
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--method", default=BUILTIN, help=f"{BUILTIN!r} or an MDX-Net .onnx path")
    args = parser.parse_args(argv)
    lengths = args.minutes or [1.0, 10.0]
    separator = load_separator(args.method)
    separator.vocals(np.zeros((args.channels, args.rate), np.float32), args.rate)  # warm librosa's caches
    peaks = []
    for minutes in lengths:
        peak, seconds = peak_working_memory(minutes, args.rate, args.channels, separator)
        peaks.append(peak)
        input_mb = minutes * 60 * args.rate * args.channels * 4 / 1e6
        print(f"{minutes:g} min: peak working memory {peak / 1e6:.1f} MB (input {input_mb:.0f} MB), "
              f"{seconds:.1f} s ({minutes * 60 / seconds:.0f}x real time)", flush=True)
    ratio = peaks[-1] / peaks[0]
    print(f"machine: {platform.processor() or platform.machine()}; {separator.description}, {args.channels} ch at "
          f"{args.rate} Hz, {CHUNK_SECONDS:g}-s chunks")
    print("compare: target <= 1.10 (working memory flat in length; the input and output grow with it)")
    print(f"separation_memory: {lengths[0]:g}min_mb={peaks[0] / 1e6:.1f} {lengths[-1]:g}min_mb={peaks[-1] / 1e6:.1f} "
          f"ratio={ratio:.3f}")
    return 0 if ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
