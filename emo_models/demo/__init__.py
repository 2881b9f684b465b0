"""``python -m emo_models demo``: the bundled demo model animates a portrait with a voice, out of the box.

With no arguments it reads the bundled sample (``assets/demo_portrait.png``, ``assets/demo_audio.wav``:
a procedural face and voice held out of training) and writes ``out/demo.mp4`` with the audio muxed in.
``--image``/``--audio`` take your own files; the demo model only knows drawn faces, so a photo is
fitted to 64x64 and comes out as the closest drawn face it can make. ``train-demo`` (registered here
too, see :mod:`.recipe`) retrains the bundled checkpoint with one command.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEMO_MODEL = ASSETS / "demo_model"
DEMO_PORTRAIT = ASSETS / "demo_portrait.png"
DEMO_AUDIO = ASSETS / "demo_audio.wav"
DEFAULT_FACE_BOX = (16.0, 10.0, 48.0, 50.0)  # x0, y0, x1, y1 at 64x64: where the training faces sit
DEFAULT_STEPS = 10  # DDIM steps per clip: the demo model's lips follow the audio from 10 on
DEFAULT_CFG_AUDIO = 2.0


def face_mask_for(pipeline, box: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """The face-locator mask (1, 1, H, W) of ``box`` (pixels at the model's size); default: the demo
    checkpoint's typical face region (``face_box`` in its metadata), else :data:`DEFAULT_FACE_BOX`."""
    from ..face_locator import box_mask

    cfg = pipeline.config
    box = box or getattr(pipeline, "demo_face_box", None) or DEFAULT_FACE_BOX
    return box_mask(tuple(float(v) for v in box), cfg.height, cfg.width)


def load_demo_pipeline(checkpoint: str | Path = DEMO_MODEL):
    """The demo checkpoint as an fp32 CPU pipeline (fp16 files are widened); ``demo_face_box`` attached."""
    from ..loading import load_pipeline
    from ..weights.native import read_metadata

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"demo model: no checkpoint at {checkpoint}; it ships in assets/demo_model "
                                f"(or retrain it: python -m emo_models train-demo --out runs/demo)")
    pipeline, _ = load_pipeline(checkpoint, device="cpu", dtype=torch.float32)
    pipeline.audio_encoder.float()
    pipeline.demo_face_box = read_metadata(checkpoint).get("face_box")
    return pipeline


@torch.no_grad()
def animate(pipeline, image: torch.Tensor, wave: np.ndarray, *, steps: int = DEFAULT_STEPS, seed: int = 0,
            speed: float = 0.5, cfg_audio: float = DEFAULT_CFG_AUDIO, cfg_reference: float = 1.0,
            face_box=None, scheduler: str = "ddim", on_step=None) -> torch.Tensor:
    """image (1, 3, H, W) in [0, 1] at the model's size; wave (T,) 16 kHz -> frames (F, 3, H, W) in [0, 1].

    The first clip's motion frames are the reference itself (n copies of its latent), as in training
    every clip follows real frames of the same face; later clips follow the generated ones.
    """
    from ..pipeline import Guidance

    reference = pipeline.encode_reference(image)
    audio = pipeline.encode_audio(wave)
    n = pipeline.config.motion_frames
    motion = reference.latent[:, None].expand(1, n, *reference.latent.shape[1:]) if n else None
    latents = pipeline.sample(reference, audio, steps=steps, scheduler=scheduler, seed=seed, speed=speed,
                              guidance=Guidance(reference=cfg_reference, audio=cfg_audio),
                              face_mask=face_mask_for(pipeline, face_box), motion_latents=motion,
                              on_step=on_step)
    return pipeline.decode(latents)


def run_demo(args) -> int:
    """Portrait + audio -> mp4 (upscaled for viewing) with the audio, using the bundled demo model."""
    from tqdm import tqdm

    from ..media import fit_image, load_audio, load_image, prepare_waveform, write_video

    started = time.time()
    torch.manual_seed(args.seed)
    pipeline = load_demo_pipeline(args.checkpoint)
    cfg = pipeline.config
    image = fit_image(load_image(args.image), cfg.width, cfg.height, mode="center")
    wave = prepare_waveform(load_audio(args.audio, cfg.audio_sample_rate), cfg.audio_sample_rate,
                            cfg.audio_sample_rate, name=f"audio {args.audio}")
    bar = tqdm(total=None, unit="step", desc="demo")

    def on_step(done, total, _latents):
        bar.total = total
        bar.update(done - bar.n)

    frames = animate(pipeline, image, wave, steps=args.steps, seed=args.seed, speed=args.speed,
                     cfg_audio=args.cfg_audio, on_step=on_step)
    bar.close()
    size = cfg.height * args.upscale, cfg.width * args.upscale
    frames = torch.nn.functional.interpolate(frames, size=size, mode="nearest") if args.upscale > 1 else frames
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    music = load_audio(args.audio, 44100)
    write_video(out, frames.permute(0, 2, 3, 1), cfg.fps, audio=music, sample_rate=44100)
    print(f"wrote {out}: {len(frames)} frames at {cfg.fps:g} fps, {size[1]}x{size[0]}, with audio, "
          f"{time.time() - started:.1f} s")
    return 0


def register(subparsers) -> None:
    """Add ``demo`` and ``train-demo`` to ``python -m emo_models``."""
    d = subparsers.add_parser("demo", help="animate the bundled sample (or your portrait + audio) with the demo model")
    d.add_argument("--image", default=str(DEMO_PORTRAIT), help="portrait (default: the bundled sample face)")
    d.add_argument("--audio", default=str(DEMO_AUDIO), help="speech audio (default: the bundled sample voice)")
    d.add_argument("--out", default="out/demo.mp4")
    d.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="denoising steps per clip (DDIM)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--speed", type=float, default=0.5, help="head motion, degrees/frame (0.1-1.3)")
    d.add_argument("--cfg-audio", type=float, default=DEFAULT_CFG_AUDIO, help="audio guidance scale")
    d.add_argument("--upscale", type=int, default=4, help="enlarge the 64x64 frames this many times in the mp4")
    d.add_argument("--checkpoint", default=str(DEMO_MODEL), help="demo checkpoint folder")
    d.set_defaults(func=run_demo)

    from .recipe import register as register_recipe

    register_recipe(subparsers)
