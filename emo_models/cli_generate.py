"""``generate`` and ``demo``: a portrait + audio -> an H.264 mp4 with the audio, through the one render path.

``demo`` is ``generate`` with other defaults: the bundled demo model, its sample portrait and voice, and
frames enlarged 4x for viewing. Both stream: each clip's frames go to the video as they are decoded.
"""

from __future__ import annotations

import argparse

from .cli import (
    add_audio_options,
    add_device_options,
    add_force_option,
    add_framing_options,
    add_option,
    add_render_options,
    flag,
    render_settings,
)


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
    add_option(parser, "upscale", default=upscale)
    add_force_option(parser, "an existing --out file")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``generate``."""
    parser.description = (f"{parser.description}. Sampling, size and frame rate default to the checkpoint's "
                          "trained-for settings; every option below overrides one.")
    _add_io_options(parser, None, upscale=1)
    add_framing_options(parser)
    add_audio_options(parser)
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
    add_audio_options(parser)
    add_render_options(parser)
    add_device_options(parser)


def run_generate(args) -> int:
    """Portrait + audio -> mp4 with the audio muxed in, written atomically, frames streamed clip by clip.

    Everything checkable is checked before the model loads (the output path, container and encoder, the
    device, the inputs) or before the first denoising step (the settings against the model's config).
    Memory stays flat with the audio's length: the audio is encoded as the clips ask for it, each clip's
    frames are written as they are decoded, the soundtrack is muxed piece by piece beside them.
    """
    import math
    import time

    import torch
    from tqdm import tqdm

    from .devices import resolve_device, resolve_dtype
    from .face_region import parse_box
    from .loading import checkpoint_report, load_pipeline
    from .media import VideoWriter, check_video_output, load_image, read_audio
    from .options import check_frame_size
    from .render import animate
    from .vocals import vocals_to_hear

    started = time.time()
    out = check_video_output(args.out, inputs=(args.image, args.audio), force=args.force, option="--out")
    face_box = parse_box(args.face_box, "--face-box")
    device = resolve_device(args.device, "--device")
    dtype = resolve_dtype(args.dtype, device)
    image = load_image(args.image)
    waveform, rate = read_audio(args.audio)
    pipeline, reports = load_pipeline(args.checkpoint, device=device, dtype=dtype)
    print(checkpoint_report(args.checkpoint, pipeline, reports))
    settings = render_settings(pipeline.config, args)
    width, height = check_frame_size(pipeline.config, args.width, args.height, flag)
    bar = tqdm(total=None, unit="frame", desc="EMO")
    try:
        heard = vocals_to_hear(waveform, rate, args.isolate_vocals, args.checkpoint, name=f"audio {args.audio}")
        audio, clips = animate(pipeline, image, heard, rate, settings, crop=args.crop, face_box=face_box,
                               width=width, height=height, fps=args.fps, audio_name=f"audio {args.audio}")
        count = math.ceil(audio.frames / settings.frames_per_clip)
        bar.reset(total=audio.frames)
        bar.set_postfix_str(f"clip 0/{count}")
        # the soundtrack is the song as given, not the vocals the model heard
        with VideoWriter(out, audio.fps, audio=waveform, sample_rate=rate, force=args.force, option="--out") as video:
            for clip in clips:  # frames written and time left on the bar; nothing but this clip is held
                frames = clip.frames
                if args.upscale > 1:
                    frames = torch.nn.functional.interpolate(frames, scale_factor=args.upscale, mode="nearest")
                video.write(frames.permute(0, 2, 3, 1))
                bar.set_postfix_str(f"clip {clip.index + 1}/{count}", refresh=False)
                bar.update(clip.frames.shape[0])
    finally:
        bar.close()
    print(f"wrote {out}: {audio.frames} frames at {audio.fps:g} fps, {width * args.upscale}x{height * args.upscale}, "
          f"{time.time() - started:.1f} s")
    return 0


run_demo = run_generate  # the same path; only the defaults differ
