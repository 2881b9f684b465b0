"""EMO's Table 1 metrics on the bundled demo model: generated vs held-out ground-truth clips.

Renders ``--clips`` held-out procedural clips (identities and voices never seen in training,
:mod:`emo_models.demo.data`) as the reference set, animates each clip's first frame with its audio
through the demo model as the generated set, and, as a scale for the figures, a control set: other
held-out identities (different faces, so FID/FVD of two independent ground-truth sets) carrying the
reference clip's audio (so their lips do not follow it); videos already in ``--out`` are reused unless ``--fresh``. Then runs ``python -m emo_models evaluate``
on both.

Metric weights: ``--weights DIR`` with the published files, or, by default (none can be had offline;
no PyPI wheel ships them), seeded *random-initialised* networks of the published architectures
written to ``OUT/random_metric_nets``. With random nets FID/FVD compare random-feature statistics
(they still separate image distributions, but the scale is not the paper's) and Sync-C/Sync-D carry
no lip-sync meaning (an untrained SyncNet has learned no audio-visual correspondence).

    python bench/evaluate_demo.py [--clips 10 --seconds 2 --steps 10 --out out/eval_demo --weights DIR]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_quality import portrait  # noqa: E402

from emo_models.cli import main as cli  # noqa: E402
from emo_models.demo import DEMO_MODEL, load_demo_pipeline  # noqa: E402
from emo_models.demo.data import held_out_clip  # noqa: E402
from emo_models.evaluation.i3d import InceptionI3d  # noqa: E402
from emo_models.evaluation.inception import FIDInceptionV3  # noqa: E402
from emo_models.evaluation.syncnet import SyncNet  # noqa: E402
from emo_models.evaluation.weights import WEIGHT_FILES  # noqa: E402
from emo_models.media import write_video  # noqa: E402


def write_random_metric_nets(folder: Path, seed: int) -> Path:
    """Published-architecture FID Inception, I3D and SyncNet, seeded He-normal weights (variance-keeping
    through ReLUs; torch's default init fades to constant features after ~90 layers), BatchNorm identity."""
    folder.mkdir(parents=True, exist_ok=True)
    for metric, build in (("fid", FIDInceptionV3), ("fvd", InceptionI3d), ("sync", SyncNet)):
        torch.manual_seed(seed)
        net = build()
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
        torch.save(net.state_dict(), folder / WEIGHT_FILES[metric].names[0])
    (folder / "README.txt").write_text("RANDOM-INITIALISED metric networks (bench/evaluate_demo.py), not the "
                                       "published weights: figures made with them are not comparable to papers.\n")
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEMO_MODEL))
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/eval_demo")
    parser.add_argument("--weights", default=None, help="folder with the published metric weight files")
    parser.add_argument("--frame-step", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="re-render and regenerate videos already in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.time()
    out = Path(args.out)
    pipeline = load_demo_pipeline(args.checkpoint)
    size = pipeline.config.width
    for i in range(args.clips):
        name = f"clip{i:02d}.mp4"
        if not args.fresh and all((out / role / name).is_file() for role in ("reference", "control", "generated")):
            continue  # made by an earlier run with the same --out
        clip, other = held_out_clip(i, args.seconds, size), held_out_clip(args.clips + i, args.seconds, size)
        write_video(out / "reference" / name, clip.frames, clip.fps, audio=clip.audio, sample_rate=clip.sample_rate)
        write_video(out / "control" / name, other.frames[: len(clip.frames)], clip.fps, audio=clip.audio,
                    sample_rate=clip.sample_rate)
        frames = pipeline.generate(portrait(clip), clip.audio, clip.sample_rate, steps=args.steps, seed=args.seed,
                                   speed=clip.speed_scale, face_box=clip.face_box)[: len(clip.frames)]
        write_video(out / "generated" / name, frames.permute(0, 2, 3, 1), clip.fps, audio=clip.audio,
                    sample_rate=clip.sample_rate)
        print(f"clip {i}: rendered and generated [{time.time() - started:.0f} s]", flush=True)
    weights = args.weights or str(write_random_metric_nets(out / "random_metric_nets", args.seed))
    print(f"metric weights: {weights}" + ("" if args.weights else " (RANDOM-INITIALISED, see the docstring)"))
    for role in ("generated", "control"):
        print(f"\n== {role} vs reference ==", flush=True)
        cli(["evaluate", "--generated", str(out / role), "--reference", str(out / "reference"), "--weights", weights,
             "--frame-step", str(args.frame_step), "--out", str(out / f"report_{role}.json")])
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.clips} held-out clips of {args.seconds:g} s at {size}x{size}, "
          f"{args.steps} DDIM steps; {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
