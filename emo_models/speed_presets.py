"""Named head-motion speeds for speech and singing: the one table the CLI and the nodes read.

The speed layers take one head-rotation speed per clip, in degrees/frame. The paper drives them with
about 0.1-1.0 for speech and 1.0-1.3 for singing (singers move more), and notes that above 1.5 the
head jitters. A name picks a value from that range; a number is taken as it is.
"""

from __future__ import annotations

SPEED_PRESETS = {
    "speech-calm": 0.3,  # a newsreader: little head motion
    "speech": 0.6,  # conversation
    "singing": 1.1,  # a song
    "singing-lively": 1.3,  # an up-tempo song; the top of the paper's range
}
JITTER_ABOVE = 1.5


def describe_presets() -> str:
    """``"speech-calm=0.3, speech=0.6, ..."`` for help texts and errors."""
    return ", ".join(f"{name}={value:g}" for name, value in SPEED_PRESETS.items())


def speed_value(value: str | float, name: str = "speed") -> float:
    """A preset name (:data:`SPEED_PRESETS`) or a number -> degrees/frame (a finite number >= 0).

    Anything else is a ValueError naming ``name``, the value and the presets.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in SPEED_PRESETS:
            return SPEED_PRESETS[text]
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is neither a number of degrees/frame nor a preset "
                             f"({describe_presets()})") from None
    from .options import check_option

    try:
        return check_option("speed", value, name)  # the one range table's range
    except ValueError as err:
        raise type(err)(f"{err} Or a preset: {describe_presets()}") from None


def speed_argument(text: str) -> float:
    """``argparse`` type of ``--speed``: :func:`speed_value` with its message kept."""
    import argparse

    try:
        return speed_value(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("speed: ")) from None


SPEED_HELP = (f"head motion: degrees/frame (0.1-1.0 speech, 1.0-1.3 singing, jitters above {JITTER_ABOVE:g}) or a "
              f"preset: {describe_presets()}")
