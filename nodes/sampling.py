"""Speed Condition, EMO Sampler and Extend With Motion Frames: the clip-by-clip denoising loop in ComfyUI.

Progress goes to ComfyUI's ProgressBar once per denoising step, with a cheap preview (the 4 latent
channels through SD-1.5's fixed latent->RGB matrix, as ComfyUI's Latent2RGB previewer); a cancel stops
the pipeline before its next step and surfaces as ComfyUI's InterruptProcessingException.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

from emo_models.preset import FIRST_CLIP_MOTION
from emo_models.schedulers import SCHEDULERS as SCHEDULER_TABLE

from . import comfy_bridge
from .boundary import frames_to_image, image_to_model, mask_to_model
from .types import SpeedSchedule

FROM_CHECKPOINT = "checkpoint"  # a choice meaning "what the checkpoint was trained for"
SCHEDULERS = (FROM_CHECKPOINT, *SCHEDULER_TABLE)
FIRST_CLIP = (FROM_CHECKPOINT, *FIRST_CLIP_MOTION)
SD15_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
                   (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))
PREVIEW_SIZE = 512

SAMPLER_SETTINGS = {
    "steps": ("INT", {"default": 0, "min": 0, "max": 200, "tooltip": "Denoising steps per clip; 0 = from the "
              "checkpoint (the paper: 40 with ddim; fewer than 20 gives artifacts)."}),
    "cfg": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1, "round": 0.01, "tooltip": "Guidance "
            "scale, unconditional vs full (2 model passes per step); 1 = off; 0 = from the checkpoint."}),
    "reference_cfg": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1, "round": 0.01,
                      "tooltip": "Separate guidance towards the reference identity; unequal reference and audio "
                      "scales cost a 3rd pass. 0 = from the checkpoint (or cfg when set)."}),
    "audio_cfg": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1, "round": 0.01,
                  "tooltip": "Separate guidance towards the audio: lip sync and expression strength. 0 = from "
                  "the checkpoint (or cfg when set)."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
             "tooltip": "Noise seed; the same seed and inputs give the same video."}),
    "scheduler": (list(SCHEDULERS), {"default": FROM_CHECKPOINT, "tooltip": "ddim as the paper; dpmpp_2m for "
                  "fewer steps; euler; checkpoint = the one it was trained for."}),
    "frames_per_clip": ("INT", {"default": 0, "min": 0, "max": 32, "tooltip": "New frames per clip (paper: "
                        "12); 0 = from the checkpoint. frames_per_clip + motion_frames must fit the model's "
                        "temporal window."}),
    "motion_frames": ("INT", {"default": -1, "min": -1, "max": 16, "tooltip": "Frames of the previous clip each "
                      "clip continues from (paper: 4); -1 = from the checkpoint."}),
}
FIRST_CLIP_SETTING = {
    "first_clip": (list(FIRST_CLIP), {"default": FROM_CHECKPOINT, "tooltip": "Motion frames of the first clip: "
                   "reference = the portrait repeated, zeros = none; checkpoint = what it was trained for."}),
}
CONDITIONS = {
    "face_mask": ("MASK", {"tooltip": "Where the face may move (Face Locator Mask), drawn on the portrait. "
                  "Unconnected: the reference's face (given or detected), else the checkpoint's face region."}),
    "speed": ("EMO_SPEED", {"tooltip": "Head-motion speed (Speed Condition); default: the checkpoint's."}),
}


def latent_preview(latent: torch.Tensor) -> Image.Image:
    """One latent frame (4, h, w) -> an RGB preview image (h, w), without the VAE."""
    factors = torch.tensor(SD15_LATENT_RGB)
    rgb = torch.einsum("chw,cr->hwr", latent.detach().float().cpu(), factors)
    return Image.fromarray(((rgb + 1) / 2).clamp(0, 1).mul(255).byte().numpy())


def render_settings(config, frames: int, *, steps, cfg, reference_cfg, audio_cfg, seed, scheduler, frames_per_clip,
                    motion_frames, first_clip=FROM_CHECKPOINT, speed=None):
    """The widgets' values as RenderSettings: 0 (-1 for motion_frames, "checkpoint" for choices) = the checkpoint's."""
    from emo_models.render import RenderSettings

    def given(value, unset):
        return None if value == unset else value

    return RenderSettings.from_config(
        config, steps=given(steps, 0), scheduler=given(scheduler, FROM_CHECKPOINT), cfg=given(cfg, 0),
        cfg_reference=given(reference_cfg, 0), cfg_audio=given(audio_cfg, 0),
        frames_per_clip=given(frames_per_clip, 0), motion_frames=None if motion_frames < 0 else motion_frames,
        first_clip_motion=given(first_clip, FROM_CHECKPOINT), seed=seed,
        speed=None if speed is None else speed.per_frame(frames))


def render_video(emo_model, reference, audio, *, face_mask=None, speed=None, previous_frames=None, **widgets):
    """The one render path with ComfyUI's progress (a preview per step) and cancel -> Rendered (frames, latents)."""
    from emo_models.pipeline import GenerationCancelled
    from emo_models.render import face_locator_region, render

    pipeline = emo_model.loaded()
    settings = render_settings(pipeline.config, audio.frames, speed=speed, **widgets)
    mask = None if face_mask is None else mask_to_model(face_mask, "face_mask")
    region = face_locator_region(reference.encoding, reference.portrait, pipeline.config, mask)
    bar = comfy_bridge.progress_bar(math.ceil(audio.frames / settings.frames_per_clip) * settings.steps)

    def on_step(done, total, latents):
        bar.update_absolute(done, total, ("JPEG", latent_preview(latents[0]), PREVIEW_SIZE))

    try:
        return render(pipeline, reference.to(pipeline.device, pipeline.dtype).encoding, audio, region, settings,
                      previous_frames=previous_frames, on_step=on_step,
                      should_stop=comfy_bridge.processing_interrupted)
    except GenerationCancelled:
        comfy_bridge.throw_exception_if_processing_interrupted()
        raise


class SpeedCondition:
    """EMO_SPEED: head-motion speed in degrees/frame, constant or scheduled per frame."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("EMO_SPEED",)
    RETURN_NAMES = ("speed",)
    FUNCTION = "build"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "speed": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 2.0, "step": 0.05, "tooltip": "Degrees per "
                      "frame: 0.1-1.0 for speech, 1.0-1.3 for singing; above 1.5 jitters."}),
        }, "optional": {
            "schedule": ("STRING", {"default": "", "multiline": True, "tooltip": "Per-frame speeds '0.4, 0.6, "
                         "0.8' or keyframes 'frame:speed' like '0:0.3, 48:1.0' (linear between, held after). "
                         "Empty: the constant speed."}),
        }}

    def build(self, speed, schedule=""):
        return (SpeedSchedule.parse(speed, schedule),)


class EMOSampler:
    """Talking-portrait frames from a reference and audio features, clip by clip (IMAGE + LATENT)."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("frames", "latent")
    OUTPUT_TOOLTIPS = ("The video frames, for CreateVideo.", "The frames' latents (F, 4, h, w).")
    FUNCTION = "sample"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"emo_model": ("EMO_MODEL",), "reference": ("EMO_REFERENCE",),
                             "emo_audio": ("EMO_AUDIO",), **SAMPLER_SETTINGS, **FIRST_CLIP_SETTING},
                "optional": CONDITIONS}

    def sample(self, emo_model, reference, emo_audio, face_mask=None, speed=None, **widgets):
        rendered = render_video(emo_model, reference, emo_audio, face_mask=face_mask, speed=speed, **widgets)
        latents = rendered.latents.to(comfy_bridge.intermediate_device(), torch.float32)
        return frames_to_image(rendered.frames), {"samples": latents}


class ExtendWithMotionFrames:
    """A longer video: continue the frames so far over more audio, from their last motion frames.

    Given an EMO Sampler's frames and the audio that follows, it gives exactly what one longer run makes."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The frames so far followed by the new ones.",)
    FUNCTION = "extend"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "emo_model": ("EMO_MODEL",), "reference": ("EMO_REFERENCE",),
            "frames": ("IMAGE", {"tooltip": "The video so far (an EMO Sampler's frames)."}),
            "emo_audio": ("EMO_AUDIO", {"tooltip": "The audio the new frames follow (the next span)."}),
            **SAMPLER_SETTINGS,
        }, "optional": CONDITIONS}

    def extend(self, emo_model, reference, frames, emo_audio, face_mask=None, speed=None, **widgets):
        previous = image_to_model(frames, "frames")
        height, width = reference.encoding.image.shape[-2:]
        if tuple(previous.shape[-2:]) != (height, width):
            raise ValueError(f"frames: {previous.shape[-1]}x{previous.shape[-2]} pixels; the model makes "
                             f"{width}x{height}: connect the EMO Sampler's frames before any resize")
        rendered = render_video(emo_model, reference, emo_audio, face_mask=face_mask, speed=speed,
                                previous_frames=previous, **widgets)
        new = frames_to_image(rendered.frames)
        return (torch.cat([frames.to(new.device, torch.float32), new]),)
