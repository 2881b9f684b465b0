"""``python -m emo_models``: generate, inspect and init (training commands register themselves too).

Every command is a function of parsed arguments; heavy imports happen inside them, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _box(text: str | None):
    if not text:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--face-box: {text!r}; give pixels as x0,y0,x1,y1") from None
    return x0, y0, x1, y1


def run_generate(args) -> int:
    """Portrait + audio -> mp4 with the audio muxed in, written atomically."""
    from tqdm import tqdm

    from .face_locator import box_mask
    from .loading import load_pipeline
    from .media import fit_image, load_audio, load_image, prepare_waveform, write_video
    from .pipeline import Guidance

    device = _device(args.device)
    pipeline, _ = load_pipeline(args.checkpoint, device=device, dtype=_dtype(args.dtype, device))
    config = pipeline.config
    width, height = args.width or config.width, args.height or config.height
    image = load_image(args.image)
    box = _box(args.face_box)
    fitted = fit_image(image, width, height, mode=args.crop, box=box if args.crop == "center" else None)
    wave = prepare_waveform(load_audio(args.audio, config.audio_sample_rate), config.audio_sample_rate,
                            config.audio_sample_rate, name=f"audio {args.audio}")
    face_mask = None
    if box is not None:
        # the box is in the input image's pixels; map it through the same fit by fitting a mask image
        mask = box_mask(box, image.shape[-2], image.shape[-1]).expand(1, 3, -1, -1)
        face_mask = fit_image(mask, width, height, mode=args.crop, box=box if args.crop == "center" else None)[:, :1]
    cfg_ref = args.cfg if args.cfg_reference is None else args.cfg_reference
    cfg_audio = args.cfg if args.cfg_audio is None else args.cfg_audio
    started = time.time()
    reference = pipeline.encode_reference(fitted)
    audio = pipeline.encode_audio(wave, args.fps)
    bar = tqdm(total=None, unit="step", desc="EMO")

    def on_step(done, total, _latents):
        bar.total = total
        bar.update(done - bar.n)

    latents = pipeline.sample(reference, audio, steps=args.steps, scheduler=args.scheduler,
                              guidance=Guidance(cfg_ref, cfg_audio), seed=args.seed, speed=args.speed,
                              face_mask=face_mask, on_step=on_step)
    bar.close()
    frames = (f.permute(1, 2, 0) for chunk in latents.split(8) for f in pipeline.decode(chunk))
    music = load_audio(args.audio, 44100)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_video(args.out, frames, audio.fps, audio=music, sample_rate=44100)
    print(f"wrote {args.out}: {audio.frames} frames at {audio.fps:g} fps, {width}x{height}, "
          f"{time.time() - started:.1f} s")
    return 0


def run_inspect(args) -> int:
    """Describe a weights file or folder."""
    from .weights.inspect import describe

    print(describe(args.path))
    return 0


def run_init(args) -> int:
    """Write a native EMO checkpoint assembled from SD-1.5, AnimateDiff and wav2vec2 parts."""
    import torch

    from .config import get_config
    from .loading import assemble, save_pipeline

    torch.manual_seed(args.seed)
    pipeline, reports = assemble(get_config(args.config), base=args.base, vae=args.vae,
                                 motion_module=args.motion_module, audio_encoder=args.audio_encoder)
    for report in reports:
        print(report)
    sources = {k: str(v) for k, v in (("base", args.base), ("vae", args.vae), ("motion_module", args.motion_module),
                                      ("audio_encoder", args.audio_encoder)) if v}
    save_pipeline(pipeline, args.out, metadata={"created_by": "emo_models init", "config": args.config,
                                                "sources": sources, "seed": args.seed})
    print(f"wrote EMO checkpoint {args.out} ({args.config})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emo_models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="portrait + audio -> talking-portrait mp4")
    g.add_argument("--image", required=True)
    g.add_argument("--audio", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--checkpoint", required=True, help="native EMO checkpoint folder")
    g.add_argument("--steps", type=int, default=40)
    g.add_argument("--cfg", type=float, default=3.5, help="guidance scale for reference and audio")
    g.add_argument("--cfg-reference", type=float, default=None)
    g.add_argument("--cfg-audio", type=float, default=None)
    g.add_argument("--fps", type=float, default=None, help="default: the checkpoint's")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--speed", type=float, default=0.5, help="head motion, degrees/frame (0.1-1.3)")
    g.add_argument("--width", type=int, default=None)
    g.add_argument("--height", type=int, default=None)
    g.add_argument("--scheduler", default="ddim", choices=["ddim", "dpmpp_2m", "euler"])
    g.add_argument("--crop", default="center", choices=["center", "pad", "stretch"])
    g.add_argument("--face-box", default=None, help="x0,y0,x1,y1 in input pixels: face locator mask + crop")
    g.add_argument("--device", default="auto")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    g.set_defaults(func=run_generate)

    i = sub.add_parser("inspect", help="what a weights file or folder is, and how it differs from ours")
    i.add_argument("path")
    i.set_defaults(func=run_inspect)

    n = sub.add_parser("init", help="assemble a native EMO checkpoint from SD-1.5/AnimateDiff/wav2vec2 parts")
    n.add_argument("--config", default="full", choices=["tiny", "full", "demo"])
    n.add_argument("--out", required=True)
    n.add_argument("--base", default=None, help="SD-1.5 single file or diffusers folder")
    n.add_argument("--vae", default=None)
    n.add_argument("--motion-module", default=None, help="AnimateDiff mm_sd_v15_v2 .ckpt/.safetensors")
    n.add_argument("--audio-encoder", default=None, help="wav2vec2 folder or .safetensors")
    n.add_argument("--seed", type=int, default=0)
    n.set_defaults(func=run_init)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Commands defined elsewhere (training, demo) that add their own subparsers."""
    import importlib

    found = []
    for module, attr in (("emo_models.training.cli", "register"), ("emo_models.training.prepare", "register"),
                         ("emo_models.demo", "register"), ("emo_models.evaluation", "register")):
        try:
            found.append(getattr(importlib.import_module(module), attr))
        except ModuleNotFoundError as err:
            if err.name not in (module, module.rsplit(".", 1)[0]):
                raise
    return found


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m emo_models``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
