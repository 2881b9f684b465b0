"""Trained-for defaults: how a checkpoint expects to be sampled, stored with it in ``config.json``.

A :class:`GenerationPreset` is the ``generation`` field of :class:`~emo_models.config.EMOConfig`. Every
entry point (``generate``, ``demo``, the ComfyUI nodes, the Python API) starts from it and lets the user
override each value; none of them has defaults of its own. The clip geometry and frame rate the model
was trained with are the config's own fields (``fps``, ``frames_per_clip``, ``motion_frames``,
``width``, ``height``); the preset holds the rest. A ``config.json`` without a ``generation`` field (or
with only some of its keys) gets the EMO defaults below for what it lacks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .options import check_option
from .schedulers import SCHEDULERS

CONDITIONS = ("reference", "audio", "face")  # what an unconditional guidance branch can drop
FIRST_CLIP_MOTION = ("reference", "zeros")  # motion frames of a video's first clip
FRAME_ROUNDING = ("nearest", "ceil", "whisper")  # frames of an audio clip (media_audio.frame_count)
SAMPLERS = ("motion_frames", "context_windows")  # how a video longer than a clip is denoised (render.py)
AUDIO_PADDING = ("none", "clips")  # wav2vec2 reads the audio as given, or padded with silence to whole clips


@dataclass(frozen=True)
class GenerationPreset:
    """The sampling defaults a checkpoint was trained for (``config.json`` -> ``generation``).

    steps, scheduler: denoising steps per clip and the scheduler's name (:data:`SCHEDULERS`).
    guidance: one classifier-free guidance scale (unconditional vs full: 2 backbone passes per step);
    guidance_reference / guidance_audio: separate scales for the reference and the audio (None: equal to
    ``guidance``); unequal ones cost a third pass (:class:`~emo_models.guidance.Guidance`).
    uncond_drops: the conditions the unconditional branch removes (:data:`CONDITIONS`).
    first_clip_motion: the motion frames of a video's first clip: ``reference`` (the reference latent
    repeated n times, as Hallo and the demo train it) or ``zeros`` (no motion context).
    frame_rounding: frames of an audio clip, ``nearest`` = floor(seconds x fps + 1/2), ``ceil``, or
    ``whisper`` (EchoMimic's: one frame per chunk of its 50 Hz Whisper features, a frame or two past the end).
    sampler: ``motion_frames`` (clip by clip, each continuing the last frames of the one before: EMO) or
    ``context_windows`` (every step denoises the whole video in windows of ``frames_per_clip`` frames
    overlapping by ``context_overlap``, moved ``context_shift`` frames per step, predictions averaged:
    EchoMimic); noise_clamp > 0 clamps the initial noise to +-noise_clamp (EchoMimic: 1.5).
    speed: head-motion speed in degrees/frame when none is given.
    face_box: the face region (x0, y0, x1, y1 as fractions of the frame) used when no face is given or
    found; face_expand: how much a detected face box is grown to the region the face may move in;
    detect_face: look for the face in the portrait (False where the detector cannot see the training
    faces, e.g. the demo's drawn ones, which always sit in ``face_box``).
    audio_padding: ``none`` (wav2vec2 reads the audio as given) or ``clips`` (padded with silence to
    whole clips first, as Hallo does; this changes every frame's features, wav2vec2 attends globally).
    """

    steps: int = 40
    scheduler: str = "ddim"
    guidance: float = 3.5
    guidance_reference: float | None = None
    guidance_audio: float | None = None
    uncond_drops: tuple[str, ...] = ("reference", "audio")
    first_clip_motion: str = "reference"
    frame_rounding: str = "nearest"
    sampler: str = "motion_frames"
    context_overlap: int = 3
    context_shift: int = 2
    noise_clamp: float = 0.0
    speed: float = 0.5
    face_box: tuple[float, float, float, float] = (0.2, 0.2, 0.8, 0.8)
    face_expand: float = 1.5
    detect_face: bool = True
    audio_padding: str = "none"

    def __post_init__(self):
        def bad(field: str, expected: str):
            return ValueError(f"config generation.{field}: {getattr(self, field)!r}; expected {expected}")

        for name, option in (("steps", "steps"), ("guidance", "cfg"), ("guidance_reference", "cfg_reference"),
                             ("guidance_audio", "cfg_audio"), ("speed", "speed")):  # the options' own ranges
            if getattr(self, name) is not None:  # stored as the option's kind (40.0 in JSON -> 40)
                object.__setattr__(self, name, check_option(option, getattr(self, name), f"config generation.{name}"))
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"one of {', '.join(SCHEDULERS)}")
        if not isinstance(self.face_expand, (int, float)) or not math.isfinite(self.face_expand) or self.face_expand < 0:
            raise bad("face_expand", "a finite number >= 0")
        if not isinstance(self.noise_clamp, (int, float)) or not math.isfinite(self.noise_clamp) or self.noise_clamp < 0:
            raise bad("noise_clamp", "a finite number >= 0 (0: no clamp)")
        unknown = sorted(set(self.uncond_drops) - set(CONDITIONS))
        if unknown or not self.uncond_drops:
            raise bad("uncond_drops", f"a non-empty list of {', '.join(CONDITIONS)}")
        if self.first_clip_motion not in FIRST_CLIP_MOTION:
            raise bad("first_clip_motion", f"one of {', '.join(FIRST_CLIP_MOTION)}")
        if self.frame_rounding not in FRAME_ROUNDING:
            raise bad("frame_rounding", f"one of {', '.join(FRAME_ROUNDING)}")
        if self.audio_padding not in AUDIO_PADDING:
            raise bad("audio_padding", f"one of {', '.join(AUDIO_PADDING)}")
        if self.sampler not in SAMPLERS:
            raise bad("sampler", f"one of {', '.join(SAMPLERS)}")
        for name in ("context_overlap", "context_shift"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise bad(name, "a whole number of frames >= 0")
        x0, y0, x1, y1 = self.face_box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise bad("face_box", "x0, y0, x1, y1 as fractions of the frame, 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationPreset:
        """From ``config.json``'s ``generation`` object; missing keys take the defaults, unknown ones are refused."""
        if not isinstance(data, dict):
            raise ValueError(f"config generation: {data!r}; expected an object of sampling defaults")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config generation: unknown fields {unknown}; expected only {sorted(known)}")
        data = dict(data)
        for key in ("uncond_drops", "face_box"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)
