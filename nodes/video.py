"""EMO Render Video: the sampler for long audio. Frames go to an mp4 clip by clip, never into one IMAGE batch.

It renders through the same path as EMO Sampler (``sampling.render_clips``) and writes each clip's
frames, with the soundtrack beside them, to an mp4 in ComfyUI's temp folder as they are decoded; the
output is core VIDEO (``VideoFromFile``), which Save Video stores without decoding it. Memory holds one
clip, whatever the length. Progress: ComfyUI's bar per denoising step, and a console line per clip
with frames written and the time left. Cancel stops within one step and leaves no file.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid

import torch

from . import comfy_bridge
from .boundary import audio_to_waveform
from .sampling import CONDITIONS, FIRST_CLIP_SETTING, SAMPLER_SETTINGS, cancelled, render_clips

log = logging.getLogger("emo-comfy")


def time_left(started: float, done: int, total: int) -> str:
    """'m:ss' (or 'h:mm:ss') left at the pace so far, after ``done`` of ``total`` units since ``started``."""
    seconds = round((time.monotonic() - started) / max(done, 1) * (total - done))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RenderVideo:
    """A talking-portrait video of any length: rendered clip by clip and written to an mp4 as it goes (VIDEO)."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("The mp4 with the soundtrack, for Save Video (no IMAGE batch is ever made).",)
    FUNCTION = "render"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "emo_model": ("EMO_MODEL",), "reference": ("EMO_REFERENCE",), "emo_audio": ("EMO_AUDIO",),
            "audio": ("AUDIO", {"tooltip": "The soundtrack: Audio Features' audio output (the same span)."}),
            **SAMPLER_SETTINGS, **FIRST_CLIP_SETTING,
        }, "optional": CONDITIONS}

    def render(self, emo_model, reference, emo_audio, audio, face_mask=None, speed=None, **widgets):
        from emo_models.media import write_video

        waveform, rate = audio_to_waveform(audio, "audio")
        settings, clips = render_clips(emo_model, reference, emo_audio, face_mask=face_mask, speed=speed, **widgets)
        count, total = math.ceil(emo_audio.frames / settings.frames_per_clip), emo_audio.frames
        started, written = time.monotonic(), 0

        def frames():
            nonlocal written
            for clip in clips:
                yield from clip.frames.permute(0, 2, 3, 1)
                written += clip.frames.shape[0]
                log.info("EMO Render Video: clip %d/%d, %d/%d frames written, %s left", clip.index + 1, count,
                         written, total, time_left(started, written, total))

        path = os.path.join(comfy_bridge.temp_directory(), f"emo_{uuid.uuid4().hex[:12]}.mp4")
        with cancelled(), torch.no_grad():
            write_video(path, frames(), emo_audio.fps, audio=waveform, sample_rate=rate)
        return (comfy_bridge.video_from_file(path),)
