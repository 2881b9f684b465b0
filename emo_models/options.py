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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .validation import InputError, is_integer, size_multiple

FROM_CHECKPOINT = "from the checkpoint"  # the default of options the checkpoint's config and preset decide


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

    def unset_to_none(self, value, unset):
        """A node widget's value -> None when it is exactly ``unset`` (the "from the checkpoint" value below
        the range, see :meth:`node_input`); any other value, in range or not, is kept for the check."""
        return None if value == unset else value

    def help(self) -> str:
        """CLI help / node tooltip text: meaning, range and default."""
        return (f"{self.meaning}; {self.show(self.minimum)} to {self.show(self.maximum)} "
                f"(default: {self.describe_default()})")

    def node_input(self, default=None, unset=None, **extra) -> tuple[str, dict]:
        """A ComfyUI input declaration with this range: ``("INT"|"FLOAT", {default, min, max, tooltip})``.

        unset: a widget value below the range that means "from the checkpoint" (ComfyUI widgets cannot be
        empty); it becomes the widget's minimum and its default unless ``default`` is given. Nodes turn it
        into None with :func:`unset_to_none`.
        """
        default = (unset if unset is not None else self.default) if default is None else default
        lowest = self.minimum if unset is None else unset
        tooltip = (self.help() if unset is None else f"{self.meaning}; {self.show(self.minimum)} to "
                   f"{self.show(self.maximum)}; {self.show(unset)} = {self.default_from}")
        spec = {"default": default if default is not None else self.minimum, "min": lowest,
                "max": self.maximum, "tooltip": tooltip, **extra}
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
                "training timesteps)", default_from=FROM_CHECKPOINT),
    OptionRange("cfg", float, 1.0, 20.0, "guidance scale, unconditional vs full: 2 passes per step (1 = off)",
                default_from=FROM_CHECKPOINT),
    OptionRange("cfg_reference", float, 1.0, 20.0, "guidance towards the reference identity (1 = off)",
                default_from=f"{FROM_CHECKPOINT} or --cfg; unequal scales cost a 3rd pass"),
    OptionRange("cfg_audio", float, 1.0, 20.0, "guidance towards the audio: lip sync and expression (1 = off)",
                default_from=f"{FROM_CHECKPOINT} or --cfg"),
    OptionRange("fps", float, 1.0, 120.0, "video frame rate in frames per second",
                default_from=FROM_CHECKPOINT),
    OptionRange("seed", int, 0, 2**64 - 1, "noise seed (the same seed and inputs give the same video)", 0),
    OptionRange("speed", float, 0.0, 4.0, "head motion in degrees per frame (speech 0.1-1.0, singing 1.0-1.3)",
                default_from=FROM_CHECKPOINT),
    OptionRange("width", int, 16, 1024, "video width in pixels, a multiple of the model's latent block (64 at "
                "SD-1.5 size; up to twice the 512 it was trained at)", default_from=FROM_CHECKPOINT),
    OptionRange("height", int, 16, 1024, "video height in pixels, a multiple of the model's latent block (64 at "
                "SD-1.5 size; up to twice the 512 it was trained at)", default_from=FROM_CHECKPOINT),
    OptionRange("frames_per_clip", int, 1, 32, "new frames per clip (paper: 12); with motion_frames within the "
                "model's temporal window", default_from=FROM_CHECKPOINT),
    OptionRange("motion_frames", int, 0, 16, "frames of the previous clip each clip continues from (paper: 4)",
                default_from=FROM_CHECKPOINT),
    OptionRange("context_overlap", int, 0, 31, "context_windows sampler: frames neighbouring windows share (below "
                "frames_per_clip; EchoMimic: 3)", default_from=FROM_CHECKPOINT),
    OptionRange("start", float, 0.0, 86400.0, "start of the audio span in seconds", 0.0),
    OptionRange("duration", float, 0.0, 86400.0, "length of the audio span in seconds (0 = to the end)", 0.0),
    OptionRange("upscale", int, 1, 16, "enlargement of the frames in the mp4, nearest neighbour (4: 64x64 becomes "
                "256x256)", default_from="1 for generate, 4 for demo"),
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


def check_frame_size(config, width, height, label: Callable[[str], str] = str) -> tuple[int, int]:
    """The video's (width, height): each given one checked against the table and made a multiple of the
    model's latent block (None: the checkpoint's). label: how the caller spells an option in errors."""
    multiple = size_multiple(config)
    sizes = []
    for name, value in (("width", width), ("height", height)):
        value = getattr(config, name) if value is None else check_option(name, value, label(name))
        if value % multiple:
            lower = max(multiple, value // multiple * multiple)
            raise InputError(f"{label(name)}: {value} is not a multiple of {multiple} (this model's latent block); "
                             f"give e.g. {lower} or {lower + multiple}")
        sizes.append(value)
    return sizes[0], sizes[1]


def check_values(name: str, values, label: str | None = None):
    """A number or a per-frame schedule (any array-like) with every value checked like :func:`check_option`."""
    array = np.asarray(values)
    if array.ndim == 0:
        return check_option(name, values.item() if isinstance(values, np.ndarray) else values, label)
    if array.size == 0:
        raise InputError(f"{label or name}: an empty schedule; give a number or one value per frame")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"{label or name}: a schedule of {array.dtype}; give numbers. {OPTIONS[name]._span()}")
    flat = array.astype(np.float64).reshape(-1)
    worst = np.flatnonzero(~np.isfinite(flat) | (flat < OPTIONS[name].minimum) | (flat > OPTIONS[name].maximum))
    if worst.size:
        check_option(name, float(flat[worst[0]]), f"{label or name}[{int(worst[0])}]")
    return values


def markdown_table() -> str:
    """The table as Markdown, for the README (a test keeps the two equal)."""
    rows = ["| option | range | default | meaning |", "|---|---|---|---|"]
    for o in OPTIONS.values():
        rows.append(f"| `{o.flag}` | {o.show(o.minimum)} to {o.show(o.maximum)} | {o.describe_default()} | "
                    f"{o.meaning} |")
    return "\n".join(rows)
