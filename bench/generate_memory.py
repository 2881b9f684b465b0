"""Peak memory of a full-size `generate` on CPU: the real command in its own process, one clip.

A full-size native checkpoint (SD-1.5 at 512x512 with EMO's layers, random weights: memory does not
depend on the values) is assembled with ``python -m emo_models init --config full``, then
``python -m emo_models generate`` renders one clip of the checkpoint's own length (its frames_per_clip
at its fps: 12 frames at 30 fps for the full config) with its default guidance (2 backbone passes per
step). Peak RSS is the kernel's for that child alone (``os.wait4``'s ru_maxrss); ``init``'s own peak is
printed too. Steps do not change the peak (every step holds the same tensors), so the default is 1 step
to keep the run to minutes on 2 cores. Target (issue 13): <= 12 GB (12,288 MiB).

    python bench/generate_memory.py [--steps 1] [--checkpoint DIR]   # DIR: a native EMO checkpoint instead

Last line: ``generate_memory: peak_rss_mib=<MiB> frames=<frames> steps=<steps> wall_s=<seconds>``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from long_audio import run, write_voice  # noqa: E402

TARGET_MIB = 12 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (default 1: the peak is per step)")
    parser.add_argument("--checkpoint", default=None, help="a native EMO checkpoint folder (default: a random full one)")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default: one clip)")
    args = parser.parse_args()

    from emo_models.demo import DEMO_PORTRAIT
    from emo_models.media import probe_video

    with tempfile.TemporaryDirectory(prefix="emo-memory-") as folder:
        folder = Path(folder)
        checkpoint = Path(args.checkpoint) if args.checkpoint else folder / "full"
        if not args.checkpoint:
            wall, rss = run([sys.executable, "-m", "emo_models", "init", "--config", "full", "--out", str(checkpoint)])
            print(f"init --config full (build and save the random checkpoint): peak RSS {rss:.0f} MiB, wall {wall:.1f} s",
                  flush=True)
        audio, out = folder / "voice.wav", folder / "talk.mp4"
        if not (checkpoint / "config.json").is_file():
            raise SystemExit(f"--checkpoint: {checkpoint} has no config.json; give a native EMO checkpoint folder "
                             "(python -m emo_models init, or convert --from hallo|echomimic)")
        config = json.loads((checkpoint / "config.json").read_text())
        write_voice(audio, args.seconds or config["frames_per_clip"] / config["fps"])
        wall, rss = run([sys.executable, "-m", "emo_models", "generate", "--image", str(DEMO_PORTRAIT),
                         "--audio", str(audio), "--out", str(out), "--checkpoint", str(checkpoint),
                         "--steps", str(args.steps), "--face-box", "0.2,0.2,0.8,0.8"])
        frames = probe_video(out)["frames"]
    print(f"peak RSS {rss:.0f} MiB for {frames} frames at full size, {args.steps} step(s), wall {wall:.1f} s "
          f"(target <= {TARGET_MIB} MiB: {'met' if rss <= TARGET_MIB else 'NOT met'})")
    print(f"generate_memory: peak_rss_mib={rss:.0f} frames={frames} steps={args.steps} wall_s={wall:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
