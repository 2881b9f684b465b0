"""The videos an evaluation compares: found in folders or lists, paired by name, decoded once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media import read_video, resample

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
AUDIO_RATE = 16000


@dataclass(frozen=True)
class Video:
    """A decoded video: frames (F, H, W, 3) uint8 RGB, fps, audio (T,) float32 at 16 kHz or None."""

    name: str
    path: Path
    frames: np.ndarray
    fps: float
    audio: np.ndarray | None


def list_videos(entries: Sequence[str | os.PathLike], role: str) -> dict[str, Path]:
    """Video files named by ``entries`` (folders: every video file directly inside) -> {stem: path}."""
    found: dict[str, Path] = {}
    for entry in entries:
        entry = Path(entry)
        if entry.is_dir():
            files = sorted(p for p in entry.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not files:
                raise ValueError(f"--{role}: {entry} holds no video files ({', '.join(VIDEO_SUFFIXES)}); "
                                 "give a folder of videos or the video files themselves")
        elif entry.is_file():
            files = [entry]
        else:
            raise ValueError(f"--{role}: {entry} does not exist; give a folder of videos or video files")
        for path in files:
            if path.stem in found and found[path.stem] != path:
                raise ValueError(f"--{role}: two videos are named {path.stem!r} ({found[path.stem]}, {path}); "
                                 "videos are paired by name, so names must be unique")
            found[path.stem] = path
    return found


def pair_videos(generated: dict[str, Path], reference: dict[str, Path]) -> list[tuple[str, Path, Path]]:
    """(name, generated path, reference path) for every generated video; all must have a reference."""
    unmatched = sorted(set(generated) - set(reference))
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (f" (+{len(unmatched) - 5} more)" if len(unmatched) > 5 else "")
        raise ValueError(f"--generated: no reference video named {shown}; videos are paired by file name "
                         f"without extension (reference names: {', '.join(sorted(reference)[:5])})")
    return [(name, generated[name], reference[name]) for name in sorted(generated)]


def load_video(path: Path, name: str | None = None) -> Video:
    """Decode a video with emo_models.media.read_video; its audio mixed to mono and resampled to 16 kHz."""
    frames, fps, audio, rate = read_video(path)
    if audio is not None and len(audio):
        audio = resample(audio.astype(np.float32), int(rate), AUDIO_RATE)
    else:
        audio = None
    return Video(name or path.stem, Path(path), frames, float(fps or 25.0), audio)
