"""Any length in flat memory: peak RSS and wall time of `generate` for 1 and 10 minutes of audio.

Each run is the real command (``python -m emo_models generate``) in its own process, on a tiny
random-weight checkpoint with few steps; its peak RSS is the kernel's (``os.wait4``'s ru_maxrss of that
child alone). Targets: the 10-minute run's peak RSS within 10% of the 1-minute run's, its wall time at
most 11x. The default frame rate and clip length keep the 10-minute run to minutes on 2 CPU cores; the
memory claim does not depend on them (give --fps 25 for the checkpoint's own rate).

    python bench/long_audio.py [--minutes 1 10] [--fps 1] [--frames-per-clip 30] [--steps 1]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_voice(path: Path, seconds: float, rate: int = 16000) -> None:
    """A voiced, amplitude- and pitch-modulated signal, written in one-second blocks (the bench stays small)."""
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="FLOAT") as out:
        for start in range(math.ceil(seconds)):
            t = start + np.arange(min(rate, round((seconds - start) * rate))) / rate
            pitch = 140 * t + 20 * np.sin(2 * np.pi * 0.3 * t)
            out.write((0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * pitch)).astype(np.float32))


def run(argv: list[str]) -> tuple[float, float]:
    """Run one command in a child process -> (wall seconds, that child's peak RSS in MiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    output = child.stdout.read().decode()
    child.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({os.waitstatus_to_exitcode(status)}): {output}")
    rss = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20  # KiB on Linux
    return wall, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs=2, default=(1.0, 10.0), help="the short and the long audio")
    parser.add_argument("--fps", type=float, default=1.0, help="video frame rate of both runs (default 1)")
    parser.add_argument("--frames-per-clip", type=int, default=30, help="frames per clip (default 30)")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps per clip (default 1)")
    args = parser.parse_args()

    from emo_models.demo import DEMO_PORTRAIT
    from emo_models.media import probe_video

    with tempfile.TemporaryDirectory(prefix="emo-long-") as folder:
        folder = Path(folder)
        checkpoint = folder / "tiny"
        subprocess.run([sys.executable, "-m", "emo_models", "init", "--config", "tiny", "--out", str(checkpoint)],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        results = []
        for minutes in args.minutes:
            audio, out = folder / f"voice_{minutes:g}min.wav", folder / f"talk_{minutes:g}min.mp4"
            write_voice(audio, minutes * 60)
            wall, rss = run([sys.executable, "-m", "emo_models", "generate", "--image", str(DEMO_PORTRAIT),
                             "--audio", str(audio), "--out", str(out), "--checkpoint", str(checkpoint),
                             "--steps", str(args.steps), "--cfg", "1", "--fps", f"{args.fps:g}",
                             "--frames-per-clip", str(args.frames_per_clip), "--face-box", "0.2,0.2,0.8,0.8"])
            frames = probe_video(out)["frames"]
            results.append((minutes, frames, wall, rss))
            print(f"{minutes:g} min of audio: {frames} frames at {args.fps:g} fps, wall {wall:.1f} s, "
                  f"peak RSS {rss:.0f} MiB", flush=True)
    (short, _, short_wall, short_rss), (long, _, long_wall, long_rss) = results
    rss_ratio, wall_ratio = long_rss / short_rss, long_wall / short_wall
    print(f"peak RSS {long:g} min / {short:g} min: {rss_ratio:.3f} (target <= 1.10: "
          f"{'met' if rss_ratio <= 1.10 else 'NOT met'})")
    print(f"wall time {long:g} min / {short:g} min: {wall_ratio:.2f}x (target <= 11x: "
          f"{'met' if wall_ratio <= 11 else 'NOT met'}; audio ratio {long / short:g}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
