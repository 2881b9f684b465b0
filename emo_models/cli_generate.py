"""``generate`` and ``demo``: a portrait + audio -> an H.264 mp4 with the audio, through the one render path.

``demo`` is ``generate`` with other defaults: the bundled demo model, its sample portrait and voice, and
frames enlarged 4x for viewing. Both stream: each clip's frames go to the video as they are decoded.
"""

from __future__ import annotations

import argparse

from .cli import add_device_options, add_framing_options, add_render_options, render_settings


def _add_io_options(parser: argparse.ArgumentParser, defaults: dict | None, upscale: int) -> None:
    """--image/--audio/--out/--checkpoint: required, or with the demo's bundled defaults."""
    helps = {"image": "portrait image, any size and mode (fitted by --crop)",
             "audio": "speech or singing, any format, rate and channel count",
             "out": "mp4 to write (it appears only when complete)",
             "checkpoint": "EMO checkpoint folder (config.json + one .safetensors per component), or a Hallo "
                           "release folder (pretrained_models/ as downloaded)"}
    for name, text in helps.items():
        if defaults is None:
            parser.add_argument(f"--{name}", required=True, help=text)
        else:
            parser.add_argument(f"--{name}", default=str(defaults[name]), help=text)
    parser.add_argument("--upscale", type=int, default=upscale, help="enlarge the frames this many times in the mp4 "
                        "(nearest neighbour, for viewing small models' output)")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``generate``."""
    parser.description = (f"{parser.description}. Sampling, size and frame rate default to the checkpoint's "
                          "trained-for settings; every option below overrides one.")
    _add_io_options(parser, None, upscale=1)
    add_framing_options(parser)
    add_render_options(parser)
    add_device_options(parser)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``demo``: those of ``generate``, defaulting to the bundled demo model and sample."""
    from .demo import DEMO_AUDIO, DEMO_MODEL, DEMO_PORTRAIT

    parser.description = (f"{parser.description}. The same command as `generate` with the bundled demo model "
                          f"({DEMO_MODEL.name}) as checkpoint; its options default to the checkpoint's settings.")
    defaults = {"image": DEMO_PORTRAIT, "audio": DEMO_AUDIO, "out": "out/demo.mp4", "checkpoint": DEMO_MODEL}
    _add_io_options(parser, defaults, upscale=4)
    add_framing_options(parser)
    add_render_options(parser)
    add_device_options(parser)


def run_generate(args) -> int:
    """Portrait + audio -> mp4 with the audio muxed in, written atomically, frames streamed clip by clip."""
    import time
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from .devices import resolve_device, resolve_dtype
    from .face_region import parse_box
    from .loading import load_pipeline
    from .media import load_image, read_audio, write_video
    from .render import animate

    started = time.time()
    face_box = parse_box(args.face_box, "--face-box")
    if args.upscale < 1:
        raise ValueError(f"--upscale: {args.upscale}; give 1 (as generated) or more")
    image = load_image(args.image)
    waveform, rate = read_audio(args.audio)
    device = resolve_device(args.device)
    pipeline, _ = load_pipeline(args.checkpoint, device=device, dtype=resolve_dtype(args.dtype, device))
    settings = render_settings(pipeline.config, args)
    bar = tqdm(total=None, unit="step", desc="EMO")

    def on_step(done, total, _latents):
        bar.total = total
        bar.update(done - bar.n)

    audio, clips = animate(pipeline, image, waveform, rate, settings, crop=args.crop, face_box=face_box,
                           width=args.width, height=args.height, fps=args.fps, audio_name=f"audio {args.audio}",
                           on_step=on_step)

    def frames():
        for clip in clips:
            pictures = clip.frames
            if args.upscale > 1:
                pictures = torch.nn.functional.interpolate(pictures, scale_factor=args.upscale, mode="nearest")
            yield from pictures.permute(0, 2, 3, 1)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    try:
        write_video(args.out, frames(), audio.fps, audio=waveform, sample_rate=rate)
    finally:
        bar.close()
    config = pipeline.config
    width = (config.width if args.width is None else args.width) * args.upscale
    height = (config.height if args.height is None else args.height) * args.upscale
    print(f"wrote {args.out}: {audio.frames} frames at {audio.fps:g} fps, {width}x{height}, "
          f"{time.time() - started:.1f} s")
    return 0


run_demo = run_generate  # the same path; only the defaults differ
