"""The values behind the pack's custom types: small frozen objects, never dicts.

EMO_MODEL -> :class:`EMOModelHandle`; EMO_REFERENCE -> :class:`EncodedReference`; EMO_AUDIO ->
``emo_models.pipeline.AudioEncoding``; EMO_SPEED -> :class:`SpeedSchedule`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from emo_models.options import check_option, check_values
from emo_models.speed_presets import describe_presets, speed_value

from . import comfy_bridge

if TYPE_CHECKING:
    from emo_models.face_region import Portrait
    from emo_models.pipeline import EMOPipeline, ReferenceEncoding


@dataclass(frozen=True, eq=False)
class EMOModelHandle:
    """EMO_MODEL: a pipeline, the ModelPatcher ComfyUI moves it with, and where it came from."""

    pipeline: EMOPipeline
    patcher: object
    source: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels the model generates."""
        return int(self.pipeline.config.width), int(self.pipeline.config.height)

    def loaded(self) -> EMOPipeline:
        """The pipeline, after ComfyUI moved it onto its torch device (evicting others if needed)."""
        comfy_bridge.load_models([self.patcher])
        return self.pipeline


@dataclass(frozen=True, eq=False)
class EncodedReference:
    """EMO_REFERENCE: the encoded portrait, and the portrait itself: fitted image, how it was fitted (so
    a face mask drawn on the input image is fitted the same way) and its face, as given or detected."""

    encoding: ReferenceEncoding
    portrait: Portrait

    def to(self, device: torch.device, dtype: torch.dtype) -> EncodedReference:
        """A copy with the encoding's tensors on ``device``/``dtype``."""
        e = self.encoding
        moved = dataclasses.replace(e, latent=e.latent.to(device, dtype), image=e.image.to(device, torch.float32),
                                    features={k: v.to(device, dtype) for k, v in e.features.items()},
                                    identity=None if e.identity is None else e.identity.to(device, dtype),
                                    regions=None if e.regions is None else e.regions.to(device, dtype),
                                    locator=None if e.locator is None else e.locator.to(device, torch.float32))
        return dataclasses.replace(self, encoding=moved)


_KEYFRAME = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*:\s*([-+0-9.eE]+|[a-z-]+)\s*$")


@dataclass(frozen=True)
class SpeedSchedule:
    """EMO_SPEED: head-motion speed in degrees/frame, one value or keyframes (frame, speed).

    Between keyframes the speed is interpolated linearly; before the first and after the last it holds.
    """

    constant: float = 0.5
    keyframes: tuple[tuple[float, float], ...] = ()

    def per_frame(self, frames: int) -> np.ndarray:
        """(frames,) float32 speeds for a video of ``frames`` frames."""
        if not self.keyframes:
            return np.full(frames, self.constant, np.float32)
        at, value = np.array(self.keyframes, np.float32).T
        return np.interp(np.arange(frames, dtype=np.float32), at, value).astype(np.float32)

    @classmethod
    def parse(cls, speed: float, schedule: str = "") -> SpeedSchedule:
        """``schedule``: "" (use ``speed``), per-frame values "0.4, 0.6, 0.8", or keyframes "0:0.3, 48:1.0";
        a value may be a preset name ("0:speech, 48:singing", see ``emo_models.speed_presets``)."""
        speed = check_option("speed", speed)
        items = [item for item in re.split(r"[,;\n]+", schedule or "") if item.strip()]
        if not items:
            return cls(float(speed))
        keyed = [_KEYFRAME.match(item) for item in items]
        try:
            if all(keyed):
                keyframes = sorted((float(m.group(1)), speed_value(m.group(2), "schedule")) for m in keyed)
            elif not any(":" in item for item in items):
                keyframes = [(float(i), speed_value(item, "schedule")) for i, item in enumerate(items)]
            else:
                raise ValueError("mixed")
        except ValueError:
            raise ValueError(f"schedule: {schedule!r} is neither comma-separated speeds ('0.4, 0.6, 0.8') nor "
                             "keyframes ('0:0.3, 48:1.0'); speeds are degrees/frame >= 0 or presets "
                             f"({describe_presets()}); use one form throughout") from None
        frames = [at for at, _ in keyframes]
        if len(set(frames)) != len(frames):
            raise ValueError(f"schedule: frame numbers repeat in {schedule!r}; give each keyframe once")
        check_values("speed", [v for _, v in keyframes], "schedule")
        return cls(float(speed), tuple(keyframes))
