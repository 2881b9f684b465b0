"""Does the demo model's output follow the audio, keep the identity and move with the speed asked for?

On held-out procedural clips (identities and voices never seen in training, :mod:`demo_data`):
- lip_r: Pearson r between the mouth opening measured in the generated frames and the clip's
  ground-truth opening (target >= 0.6), mean over clips;
- shuffled_r: the same with each portrait driven by another clip's audio (target <= 0.2: the audio,
  not chance or a learned rhythm, drives the lips);
- identity_err: mean |skin, hair, background colour of generated frames - the reference's| in [0, 1];
- motion: mean optical-flow head motion (pixels/frame) at speed 0.2, 0.7, 1.3 degrees/frame (must rise);
- drift: on longer held-out clips (20 s), identity_err of the last 2 s minus that of the first 2 s: how much
  the identity degrades as each clip continues from the previous clip's generated frames;
- vae_err: identity_err of the references only encoded and decoded by the model's VAE, no generation:
  the part of identity_err the autoencoder alone causes (its colour shift on the bundled portrait is
  printed too).
The ground truth's own figures (rendered clips measured the same way) are printed beside them.

    python bench/demo_quality.py [--checkpoint emo_models/demo/assets/demo_model --clips 20 --seconds 2 --steps 10
                                  --motion-clips 8 --drift-clips 4 --drift-seconds 20]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emo_models.demo import DEMO_MODEL, DEMO_PORTRAIT, load_demo_pipeline  # noqa: E402
from emo_models.demo.autoencoder import reconstruct  # noqa: E402
from emo_models.demo.data import held_out_clip  # noqa: E402
from emo_models.demo.synthetic import (  # noqa: E402
    face_colours,
    identity_error,
    measure_head_motion,
    measure_mouth_opening,
)

SPEEDS = (0.2, 0.7, 1.3)
DRIFT_WINDOW = 2.0  # seconds compared at the start and the end of a long clip


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two (F,) series; 0 when either is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [0, 1] -> (F, H, W, 3) uint8."""
    return (frames.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def portrait(clip) -> torch.Tensor:
    """A clip's first frame as the reference image (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].float() / 255


def identity_track(frames: np.ndarray, clip) -> np.ndarray:
    """Per-frame identity error (F,) of frames (F, H, W, 3) uint8 against the clip's first frame."""
    reference = face_colours(clip.frames[0], clip.face_box)
    return np.array([identity_error(face_colours(f, clip.face_box), reference) for f in frames])


def start_and_end(errors: np.ndarray, fps: float, window: float = DRIFT_WINDOW) -> tuple[float, float]:
    """Mean identity error (F,) over the first and over the last ``window`` seconds; drift = end - start."""
    k = max(1, int(round(window * fps)))
    return float(errors[:k].mean()), float(errors[-k:].mean())


def vae_round_trip(vae, image: np.ndarray) -> str:
    """How the VAE alone changes a portrait (H, W, 3) uint8: mean colour, background colour, PSNR."""
    out = reconstruct(vae, image[None])[0]
    rgb = lambda a: ",".join(f"{v:.3f}" for v in a.reshape(-1, 3).mean(0) / 255)  # noqa: E731
    border = max(1, image.shape[0] // 16)
    mse = np.mean((out.astype(np.float64) - image) ** 2)
    return (f"mean rgb {rgb(image)} -> {rgb(out)}, background {rgb(image[:border])} -> {rgb(out[:border])}, "
            f"PSNR {10 * np.log10(255**2 / max(mse, 1e-9)):.1f} dB")


def add_held_out_arguments(parser: argparse.ArgumentParser, clips: int, seconds: float) -> None:
    """The options of a bench that renders held-out demo clips with the demo model (this one, singing.py)."""
    parser.add_argument("--checkpoint", default=str(DEMO_MODEL))
    parser.add_argument("--clips", type=int, default=clips)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--steps", type=int, default=None, help="default: from the checkpoint")
    parser.add_argument("--scheduler", default=None, help="default: from the checkpoint (e.g. dpmpp_2m for few steps)")
    parser.add_argument("--cfg-audio", type=float, default=None, help="default: from the checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)


def held_out_renderer(args):
    """(the demo pipeline, render) for :func:`add_held_out_arguments`' options (``args.steps`` resolved);
    render(clip, audio (T,), sample_rate, speed) -> (F, H, W, 3) uint8 frames, cut to the clip's length."""
    torch.set_num_threads(args.threads)
    pipeline = load_demo_pipeline(args.checkpoint)
    args.steps = pipeline.config.generation.steps if args.steps is None else args.steps
    args.scheduler = pipeline.config.generation.scheduler if args.scheduler is None else args.scheduler

    def render(clip, audio, sample_rate: int, speed) -> np.ndarray:
        frames = pipeline.generate(portrait(clip), audio, sample_rate, face_box=clip.face_box, steps=args.steps,
                                   scheduler=args.scheduler, seed=args.seed, speed=speed, cfg_audio=args.cfg_audio)
        return to_uint8(frames)[: len(clip.frames)]

    return pipeline, render


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_held_out_arguments(parser, clips=20, seconds=2.0)
    parser.add_argument("--motion-clips", type=int, default=8, help="clips per speed (0: all --clips)")
    parser.add_argument("--drift-clips", type=int, default=4, help="long clips for the drift figure (0: skip it)")
    parser.add_argument("--drift-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    started = time.time()
    pipeline, render = held_out_renderer(args)
    preset = pipeline.config.generation
    size = pipeline.config.width
    clips = [held_out_clip(i, seconds=args.seconds, size=size) for i in range(args.clips)]

    def generate(clip, audio_clip, speed):
        return render(clip, audio_clip.audio, audio_clip.sample_rate, speed)

    vae_err = np.mean([identity_track(reconstruct(pipeline.vae, c.frames[:1]), c)[0] for c in clips])
    print(f"VAE round trip of {Path(DEMO_PORTRAIT).name}: "
          f"{vae_round_trip(pipeline.vae, np.array(Image.open(DEMO_PORTRAIT).convert('RGB')))}; "
          f"identity err of the {len(clips)} references after the round trip {vae_err:.3f}", flush=True)

    lip, shuffled, identity, truth_lip = [], [], [], []
    for i, clip in enumerate(clips):
        frames = generate(clip, clip, clip.speed_scale)
        lip.append(pearson(measure_mouth_opening(frames, clip.face_box), clip.mouth_open))
        truth_lip.append(pearson(measure_mouth_opening(clip.frames, clip.face_box), clip.mouth_open))
        identity.append(identity_track(frames, clip).mean())
        other = clips[(i + 1) % len(clips)]
        frames = generate(clip, other, clip.speed_scale)
        shuffled.append(pearson(measure_mouth_opening(frames, clip.face_box), clip.mouth_open))
        print(f"clip {i:2d}: lip r {lip[-1]:+.3f} (ground truth frames {truth_lip[-1]:+.3f}), shuffled r "
              f"{shuffled[-1]:+.3f}, identity err {identity[-1]:.3f}  [{time.time() - started:.0f} s]", flush=True)

    motion, truth_motion = [], []
    for speed in SPEEDS:
        chosen = clips[: args.motion_clips or len(clips)]
        motion.append(np.mean([measure_head_motion(generate(c, c, speed), c.face_box) for c in chosen]))
        rendered = [held_out_clip(i, seconds=args.seconds, size=size, speed=speed) for i in range(len(chosen))]
        truth_motion.append(np.mean([measure_head_motion(c.frames, c.face_box) for c in rendered]))
        print(f"speed {speed}: head motion {motion[-1]:.3f} px/frame (ground truth {truth_motion[-1]:.3f})", flush=True)

    drifts, truth_drifts = [], []
    for i in range(args.drift_clips):
        clip = held_out_clip(i, seconds=args.drift_seconds, size=size)
        first, last = start_and_end(identity_track(generate(clip, clip, clip.speed_scale), clip), clip.fps)
        truth = start_and_end(identity_track(clip.frames, clip), clip.fps)
        drifts.append(last - first)
        truth_drifts.append(truth[1] - truth[0])
        print(f"long clip {i}: identity err first {DRIFT_WINDOW:g} s {first:.3f}, last {DRIFT_WINDOW:g} s {last:.3f}, "
              f"drift {drifts[-1]:+.3f} (ground truth frames {truth_drifts[-1]:+.3f})  [{time.time() - started:.0f} s]",
              flush=True)

    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.clips} held-out clips of {args.seconds:g} s, {args.drift_clips} "
          f"of {args.drift_seconds:g} s for drift, {args.steps} {args.scheduler} steps, audio guidance "
          f"{preset.guidance_audio or preset.guidance if args.cfg_audio is None else args.cfg_audio:g}; "
          f"{time.time() - started:.0f} s")
    print(f"compare: ground-truth frames give lip_r={np.mean(truth_lip):.3f}, identity_err=0, "
          f"motion={','.join(f'{m:.3f}' for m in truth_motion)}, drift={np.mean(truth_drifts or [np.nan]):.3f}; "
          f"targets lip_r>=0.6, shuffled_r<=0.2, motion rising")
    print(f"demo_quality: lip_r={np.mean(lip):.3f} shuffled_r={np.mean(shuffled):.3f} "
          f"identity_err={np.mean(identity):.3f} motion={','.join(f'{m:.3f}' for m in motion)} "
          f"drift={np.mean(drifts or [np.nan]):.3f} vae_err={vae_err:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
