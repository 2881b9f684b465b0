"""Every numeric generation option in one table: its type, documented range, meaning and default.

The CLI, the ComfyUI nodes and the Python API all take their ranges from :data:`OPTIONS` and check values
with :func:`check_option`, so ``--fps 0``, an ``fps`` widget at 0 and ``fps=0`` in Python are refused
with the same message, naming the option as the caller spells it. Nothing outside a range is ever
replaced by a default: 0 is a value, not "unset" (``None`` is unset).
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .validation import InputError, is_integer, size_multiple


@dataclass(frozen=True)
class OptionRange:
    """One option: ``kind`` int or float, inclusive ``minimum``..``maximum``, ``meaning`` (with its unit),
    ``default`` (None: taken from ``default_from``, e.g. the checkpoint's config)."""

    name: str
    kind: type
    minimum: float
    maximum: float
    meaning: str
    default: float | int | None = None
    default_from: str = ""

    @property
    def flag(self) -> str:
        """How the CLI spells it: ``--cfg-audio``."""
        return "--" + self.name.replace("_", "-")

    def show(self, value) -> str:
        """A value as this option's kind: whole numbers exactly, others compactly."""
        return str(int(value)) if self.kind is int else f"{value:g}"

    def describe_default(self) -> str:
        return self.show(self.default) if self.default is not None else self.default_from

    def help(self) -> str:
        """CLI help / node tooltip text: meaning, range and default."""
        return (f"{self.meaning}; {self.show(self.minimum)} to {self.show(self.maximum)} "
                f"(default: {self.describe_default()})")

    def node_input(self, default=None, **extra) -> tuple[str, dict]:
        """A ComfyUI input declaration with this range: ``("INT"|"FLOAT", {default, min, max, tooltip})``."""
        default = self.default if default is None else default
        spec = {"default": default if default is not None else self.minimum, "min": self.minimum,
                "max": self.maximum, "tooltip": self.help(), **extra}
        return ("INT" if self.kind is int else "FLOAT"), spec

    def parse(self, text: str):
        """argparse ``type=``: the text as this option's kind, checked; errors name the flag."""
        try:
            value = int(text, 0) if self.kind is int else float(text)
        except ValueError:
            what = "a whole number" if self.kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}. {self._span()}") from None
        try:
            return check_option(self.name, value, label=self.flag)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix(f"{self.flag}: ")) from None

    def _span(self) -> str:
        example = f", e.g. {self.show(self.default)}" if self.default is not None else ""
        return f"It is the {self.meaning}; give {self.show(self.minimum)} to {self.show(self.maximum)}{example}"


OPTIONS: dict[str, OptionRange] = {o.name: o for o in (
    OptionRange("steps", int, 1, 1000, "denoising steps per clip (paper: 40; at most the scheduler's 1000 "
                "training timesteps)", 40),
    OptionRange("cfg", float, 1.0, 20.0, "guidance scale for reference and audio (1 = off)", 3.5),
    OptionRange("cfg_reference", float, 1.0, 20.0, "guidance towards the reference identity (1 = off)",
                default_from="--cfg"),
    OptionRange("cfg_audio", float, 1.0, 20.0, "guidance towards the audio: lip sync and expression (1 = off)",
                default_from="--cfg"),
    OptionRange("fps", float, 1.0, 120.0, "video frame rate in frames per second",
                default_from="the checkpoint's config (25 or 30)"),
    OptionRange("seed", int, 0, 2**64 - 1, "noise seed (the same seed and inputs give the same video)", 0),
    OptionRange("speed", float, 0.0, 4.0, "head motion in degrees per frame (speech 0.1-1.0, singing 1.0-1.3)", 0.5),
    OptionRange("width", int, 16, 1024, "video width in pixels, a multiple of the model's latent block (64 at "
                "SD-1.5 size; up to twice the 512 it was trained at)", default_from="the checkpoint's"),
    OptionRange("height", int, 16, 1024, "video height in pixels, a multiple of the model's latent block (64 at "
                "SD-1.5 size; up to twice the 512 it was trained at)", default_from="the checkpoint's"),
    OptionRange("frames_per_clip", int, 1, 32, "new frames per clip (paper: 12); with motion_frames within the "
                "model's temporal window", default_from="the checkpoint's"),
    OptionRange("motion_frames", int, 0, 16, "frames of the previous clip each clip continues from (paper: 4)",
                default_from="the checkpoint's"),
    OptionRange("start", float, 0.0, 86400.0, "start of the audio span in seconds", 0.0),
    OptionRange("duration", float, 0.0, 86400.0, "length of the audio span in seconds (0 = to the end)", 0.0),
    OptionRange("upscale", int, 1, 16, "enlargement of the demo's frames in the mp4 (4: 64x64 becomes 256x256)", 4),
)}


def check_option(name: str, value, label: str | None = None):
    """``value`` checked against :data:`OPTIONS[name] <OPTIONS>` and returned as its kind (int or float).

    Refused with an :class:`InputError` naming ``label`` (default: ``name``; the CLI passes ``--fps``):
    a bool, a non-number, NaN, infinity, a fraction for a whole-number option, anything out of range.
    """
    option = OPTIONS[name]
    label = label or name
    span = option._span()  # "It is the <meaning>; give <min> to <max>, e.g. <default>"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{label}: {value!r} is not a number. {span}")
    if not is_integer(value) and math.isnan(value):
        raise InputError(f"{label}: nan is not a number. {span}")
    if not is_integer(value) and math.isinf(value):
        raise InputError(f"{label}: {float(value)} is not a finite number. {span}")
    if option.kind is int:
        if not is_integer(value) and not float(value).is_integer():
            raise InputError(f"{label}: {value!r} is not a whole number. {span}")
        value = int(value)
    else:
        value = float(value)
    if value < option.minimum:
        raise InputError(f"{label}: {option.show(value)} is below the minimum {option.show(option.minimum)}. {span}")
    if value > option.maximum:
        raise InputError(f"{label}: {option.show(value)} is above the maximum {option.show(option.maximum)}. {span}")
    return value


def check_generation(config, values: Mapping[str, object], label: Callable[[str], str] = str) -> dict[str, object]:
    """Check a whole set of generation options against the table and ``config``, before any heavy work.

    values: option name -> value (``None``: unset, the caller's default applies; it stays ``None``).
    label: how the caller spells an option in errors (the CLI: ``lambda n: OPTIONS[n].flag``).
    Beyond each range: width and height multiples of the model's latent block, ``frames_per_clip +
    motion_frames`` within the temporal window, ``steps`` within the scheduler's training timesteps.
    Returns the checked values (as their kinds).
    """
    checked = {name: None if value is None else check_option(name, value, label(name))
               for name, value in values.items()}
    width, height = checked.get("width"), checked.get("height")
    multiple = size_multiple(config)
    for name, value in (("width", width), ("height", height)):
        if value is not None and value % multiple:
            lower = max(multiple, value // multiple * multiple)
            raise InputError(f"{label(name)}: {value} is not a multiple of {multiple} (this model's latent block); "
                             f"give e.g. {lower} or {lower + multiple}")
    f = checked.get("frames_per_clip") or config.frames_per_clip
    n = checked.get("motion_frames")
    n = config.motion_frames if n is None else n
    if f + n > config.temporal_max_frames:
        raise InputError(f"{label('frames_per_clip')} + {label('motion_frames')}: {f} + {n} frames exceed this model's "
                         f"temporal window of {config.temporal_max_frames}; lower one of them")
    limit = int(config.scheduler.get("num_train_timesteps", OPTIONS["steps"].maximum))
    if checked.get("steps") is not None and checked["steps"] > limit:
        raise InputError(f"{label('steps')}: {checked['steps']} is more than this model's {limit} training timesteps; "
                         f"give 1 to {limit}")
    return checked


def markdown_table() -> str:
    """The table as Markdown, for the README (a test keeps the two equal)."""
    rows = ["| option | range | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS.values():
        rows.append(f"| `{o.flag}` | {o.show(o.minimum)} to {o.show(o.maximum)} | {o.describe_default()} | "
                    f"{o.meaning} |")
    return "\n".join(rows)
