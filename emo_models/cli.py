"""``python -m emo_models``: every command in one table, shared option helpers, one entry point.

A command is one line of :data:`COMMANDS`: its name, ``"module:stem"`` and a one-line help. The module
defines ``add_<stem>_arguments(parser)`` and ``run_<stem>(args) -> int`` (heavy imports inside
``run_``). Only the chosen command's module is imported, so ``--help`` and every command start fast.
Options that the checkpoint decides by default (its :class:`~emo_models.preset.GenerationPreset` and
clip geometry) default to None and say "default: from the checkpoint"; the help of every other option
shows its default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from . import __version__

FROM_CHECKPOINT = "default: from the checkpoint"


@dataclass(frozen=True)
class Command:
    """One subcommand: ``target`` is ``"module:stem"`` (``add_<stem>_arguments`` and ``run_<stem>`` in it)."""

    name: str
    target: str
    help: str

    def function(self, prefix: str, suffix: str = ""):
        module, stem = self.target.split(":")
        return getattr(importlib.import_module(module), f"{prefix}{stem}{suffix}")


COMMANDS = (
    Command("generate", "emo_models.cli_generate:generate", "portrait + audio -> talking-portrait mp4 with the audio"),
    Command("demo", "emo_models.cli_generate:demo", "the bundled demo model animates its sample (or your portrait + audio)"),
    Command("init", "emo_models.cli_checkpoint:init", "assemble a native EMO checkpoint from SD-1.5/AnimateDiff/wav2vec2 parts"),
    Command("convert", "emo_models.cli_checkpoint:convert", "an open family's release (--from echomimic) -> a native EMO checkpoint"),
    Command("inspect", "emo_models.cli_checkpoint:inspect", "what a weights file or folder is, and how it differs from ours"),
    Command("prepare", "emo_models.training.prepare:prepare", "talking-head videos -> a clip dataset for `train`"),
    Command("train", "emo_models.training.cli:train", "train one stage (1 images, 2 video, 3 speed) with accelerate"),
    Command("evaluate", "emo_models.evaluation.command:evaluate", "FID, FVD, Sync-C/D, F-SIM, E-FID of generated vs reference videos"),
    Command("train-demo", "emo_models.demo.recipe:train_demo", "train the bundled demo model from scratch (30 min, 2 CPU cores)"),
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to every option's help that does not already say its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if "default" not in text and not action.required and not unset:
            text += " (default: %(default)s)"
        return text


# ---- shared option helpers -----------------------------------------------------------------------
FLAGS = {"first_clip_motion": "--first-clip"}  # where a flag is not the option's name with dashes


def flag(name: str) -> str:
    """How the CLI spells an option in errors: ``cfg_audio`` -> ``--cfg-audio``."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def add_option(group, name: str, default=None, **extra) -> None:
    """An option of the one range table (:data:`~emo_models.options.OPTIONS`): parsed and range-checked
    by argparse (an error names the flag, the value and the range), help from the table."""
    from .options import OPTIONS

    option = OPTIONS[name]
    group.add_argument(option.flag, type=option.parse, default=default, help=option.help(),
                       metavar=name.upper().split("_")[0], **extra)


def add_framing_options(parser: argparse.ArgumentParser) -> None:
    """How the portrait becomes the model's frame, and the video's frame rate (``generate`` and ``demo``)."""
    from .face_region import CROP_MODES

    g = parser.add_argument_group("framing")
    g.add_argument("--crop", default="center", choices=CROP_MODES,
                   help="center: the middle; face: centred on the face (given or detected) with room for head "
                        "and shoulders; pad: all of the image, borders padded; stretch: ignore the aspect")
    g.add_argument("--face-box", default=None, metavar="X0,Y0,X1,Y1",
                   help="the face region in the input image, as fractions (0.25,0.1,0.75,0.6) or pixels: the "
                        "face-locator mask (and the face crop). default: detect the face, else the checkpoint's "
                        "face box, with a warning")
    for name in ("fps", "width", "height"):
        add_option(g, name)


def add_render_options(parser: argparse.ArgumentParser) -> None:
    """Sampling options; each defaults to the checkpoint's preset (``generate`` and ``demo``)."""
    from .preset import FIRST_CLIP_MOTION, SAMPLERS
    from .schedulers import SCHEDULERS
    from .speed_presets import SPEED_HELP, speed_argument

    g = parser.add_argument_group("sampling")
    add_option(g, "steps")
    for name in ("cfg", "cfg_reference", "cfg_audio"):
        add_option(g, name)
    g.add_argument("--scheduler", default=None, choices=list(SCHEDULERS), help=f"sampler ({FROM_CHECKPOINT})")
    g.add_argument("--speed", type=speed_argument, default=None, metavar="DEG_PER_FRAME|PRESET",
                   help=f"{SPEED_HELP} ({FROM_CHECKPOINT})")
    for name in ("frames_per_clip", "motion_frames"):
        add_option(g, name)
    g.add_argument(flag("first_clip_motion"), dest="first_clip", default=None, choices=FIRST_CLIP_MOTION,
                   help=f"motion frames of the first clip: the reference repeated, or none ({FROM_CHECKPOINT})")
    g.add_argument("--sampler", default=None, choices=SAMPLERS,
                   help="motion_frames: clip by clip, each continuing the one before; context_windows: every step "
                        f"denoises the whole video in overlapping windows of frames-per-clip ({FROM_CHECKPOINT})")
    add_option(g, "context_overlap")
    add_option(g, "seed", default=0)


def add_audio_options(parser: argparse.ArgumentParser) -> None:
    """What the model hears (``generate`` and ``demo``): the audio as given, or its isolated vocals."""
    from .vocals import AUTO, BUILTIN, HALLO_FOLDER

    g = parser.add_argument_group("audio")
    g.add_argument("--isolate-vocals", nargs="?", const=AUTO, default=None, metavar="METHOD|PATH",
                   help="separate the vocals from the music first: the model hears the vocals, the video keeps the "
                        f"original mix. {AUTO} (the flag alone): an MDX-Net .onnx in the checkpoint's "
                        f"{HALLO_FOLDER}/ folder, else {BUILTIN}; {BUILTIN} (no weights); or the path of an "
                        "MDX-Net .onnx such as Kim_Vocal_2.onnx (needs onnxruntime). default: off, the model hears "
                        "the audio as given")


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Where the model runs and in what precision."""
    from .devices import DTYPES

    g = parser.add_argument_group("device")
    g.add_argument("--device", default="auto", help="auto (a CUDA GPU when present), cpu, cuda or cuda:N; one "
                   "that is not on this machine is refused before loading")
    g.add_argument("--dtype", default="auto", choices=["auto", *DTYPES], help="weights precision; auto: fp16 on a "
                   "GPU, fp32 on the CPU")


def add_force_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--force``: allow writing over what exists at ``--out`` (never deleting what this did not write)."""
    parser.add_argument("--force", action="store_true", help=f"replace {what} (without it, an existing one is an "
                        "error before any work)")


def render_settings(config, args):
    """The :class:`~emo_models.render.RenderSettings` of ``add_render_options``' options (errors name flags)."""
    from .render import RenderSettings

    return RenderSettings.from_config(
        config, steps=args.steps, scheduler=args.scheduler, cfg=args.cfg, cfg_reference=args.cfg_reference,
        cfg_audio=args.cfg_audio, frames_per_clip=args.frames_per_clip, motion_frames=args.motion_frames,
        first_clip_motion=args.first_clip, seed=args.seed, speed=args.speed, sampler=args.sampler,
        context_overlap=args.context_overlap, label=flag)


# ---- the parser and the entry point --------------------------------------------------------------
def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command; the options of ``only`` that one (None: all, importing every module)."""
    parser = argparse.ArgumentParser(prog="python -m emo_models", formatter_class=HelpFormatter,
                                     description="EMO (Emote Portrait Alive): portrait + speech or singing -> video.")
    parser.add_argument("--version", action="version", version=f"emo-comfy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help, formatter_class=HelpFormatter)
        if only is None or only == command.name:
            command.function("add_", "_arguments")(p)
            p.set_defaults(run=command.function("run_"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m emo_models``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(only=chosen if chosen in {c.name for c in COMMANDS} else "").parse_args(argv)
    _show_warnings()
    from .atomic_output import Terminated, stop_signals_as_exceptions

    try:
        with stop_signals_as_exceptions():  # SIGTERM/SIGHUP stop a command as cleanly as Ctrl-C does
            return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        signum = stop.signum if isinstance(stop, Terminated) else 2  # SIGINT
        print(f"interrupted ({'Ctrl-C' if signum == 2 else stop}): no partial output was left", file=sys.stderr)
        return 128 + signum


def _show_warnings() -> None:
    """Print the package's warnings (e.g. no face found) as ``warning: ...`` lines on stderr."""
    log = logging.getLogger("emo_models")
    if not any(getattr(h, "emo_cli", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler.emo_cli = True
        log.addHandler(handler)
