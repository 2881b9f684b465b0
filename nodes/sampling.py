"""Speed Condition, EMO Sampler and Extend With Motion Frames: the one render path in ComfyUI.

Progress goes to ComfyUI's ProgressBar once per denoising step, with a cheap preview (the 4 latent
channels through SD-1.5's fixed latent->RGB matrix, as ComfyUI's Latent2RGB previewer); a cancel stops
the pipeline before its next step and surfaces as ComfyUI's InterruptProcessingException.
"""

from __future__ import annotations

import contextlib
import math

import torch
from PIL import Image

from emo_models.options import OPTIONS
from emo_models.preset import FIRST_CLIP_MOTION, SAMPLERS
from emo_models.schedulers import SCHEDULERS as SCHEDULER_TABLE
from emo_models.speed_presets import SPEED_PRESETS, describe_presets, speed_value

from . import comfy_bridge
from .boundary import frames_to_image, image_to_model, mask_to_model
from .types import SpeedSchedule

FROM_CHECKPOINT = "checkpoint"  # a choice meaning "what the checkpoint was trained for"
SCHEDULERS = (FROM_CHECKPOINT, *SCHEDULER_TABLE)
FIRST_CLIP = (FROM_CHECKPOINT, *FIRST_CLIP_MOTION)
SAMPLER_CHOICES = (FROM_CHECKPOINT, *SAMPLERS)
SD15_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
                   (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))
PREVIEW_SIZE = 512

CFG = {"step": 0.1, "round": 0.01}
UNSET = {"steps": 0, "cfg": 0.0, "cfg_reference": 0.0, "cfg_audio": 0.0, "frames_per_clip": 0, "motion_frames": -1,
         "context_overlap": -1}
SAMPLER_SETTINGS = {  # ranges from the one table; UNSET, just below each range, = from the checkpoint
    "steps": OPTIONS["steps"].node_input(unset=UNSET["steps"]),
    "cfg": OPTIONS["cfg"].node_input(unset=UNSET["cfg"], **CFG),
    "reference_cfg": OPTIONS["cfg_reference"].node_input(unset=UNSET["cfg_reference"], **CFG),
    "audio_cfg": OPTIONS["cfg_audio"].node_input(unset=UNSET["cfg_audio"], **CFG),
    "seed": OPTIONS["seed"].node_input(control_after_generate=True),
    "scheduler": (list(SCHEDULERS), {"default": FROM_CHECKPOINT, "tooltip": "ddim as the paper; dpmpp_2m for "
                  "fewer steps; euler; checkpoint = the one it was trained for."}),
    "frames_per_clip": OPTIONS["frames_per_clip"].node_input(unset=UNSET["frames_per_clip"]),
    "motion_frames": OPTIONS["motion_frames"].node_input(unset=UNSET["motion_frames"]),
}
WIDGET_NAMES = {"cfg_reference": "reference_cfg", "cfg_audio": "audio_cfg", "first_clip_motion": "first_clip"}
FIRST_CLIP_SETTING = {
    "first_clip": (list(FIRST_CLIP), {"default": FROM_CHECKPOINT, "tooltip": "Motion frames of the first clip: "
                   "reference = the portrait repeated, zeros = none; checkpoint = what it was trained for."}),
    "sampler": (list(SAMPLER_CHOICES), {"default": FROM_CHECKPOINT, "tooltip": "motion_frames: clip by clip, each "
                "continuing the last frames of the one before (EMO); context_windows: every step denoises the whole "
                "video in overlapping windows of frames_per_clip, averaged (EchoMimic, no motion frames); "
                "checkpoint = the one it was trained for."}),
    "context_overlap": OPTIONS["context_overlap"].node_input(unset=UNSET["context_overlap"]),
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
                    motion_frames, first_clip=FROM_CHECKPOINT, sampler=FROM_CHECKPOINT, context_overlap=-1, speed=None):
    """The widgets' values as RenderSettings: below the range (0, -1 for motion_frames and context_overlap;
    "checkpoint" for choices) = the checkpoint's; errors name the widget."""
    from emo_models.render import RenderSettings

    def given(name, value):
        return OPTIONS[name].unset_to_none(value, UNSET[name])

    return RenderSettings.from_config(
        config, steps=given("steps", steps), scheduler=None if scheduler == FROM_CHECKPOINT else scheduler,
        cfg=given("cfg", cfg), cfg_reference=given("cfg_reference", reference_cfg),
        cfg_audio=given("cfg_audio", audio_cfg), frames_per_clip=given("frames_per_clip", frames_per_clip),
        motion_frames=given("motion_frames", motion_frames),
        first_clip_motion=None if first_clip == FROM_CHECKPOINT else first_clip, seed=seed,
        speed=None if speed is None else speed.per_frame(frames),
        sampler=None if sampler == FROM_CHECKPOINT else sampler, context_overlap=given("context_overlap", context_overlap),
        label=lambda name: WIDGET_NAMES.get(name, name))


def render_clips(emo_model, reference, audio, *, face_mask=None, speed=None, previous_frames=None, **widgets):
    """The one render path with ComfyUI's progress (a preview per step) and cancel -> (settings, the clips as
    they render). A cancel raises GenerationCancelled from the iterator (:func:`cancelled` turns it into
    ComfyUI's exception)."""
    from emo_models.portrait_inputs import face_locator_region
    from emo_models.render import render_clips as clips

    pipeline = emo_model.loaded()
    settings = render_settings(pipeline.config, audio.frames, speed=speed, **widgets)
    mask = None if face_mask is None else mask_to_model(face_mask, "face_mask")
    region = face_locator_region(reference.encoding, reference.portrait, pipeline.config, mask)
    windows = settings.sampler == "context_windows"  # all frames at every step: one step is one update
    bar = comfy_bridge.progress_bar(settings.steps * (1 if windows else math.ceil(audio.frames / settings.frames_per_clip)))

    def on_step(done, total, latents):
        bar.update_absolute(done, total, ("JPEG", latent_preview(latents[0]), PREVIEW_SIZE))

    return settings, clips(pipeline, reference.to(pipeline.device, pipeline.dtype).encoding, audio, region, settings,
                           previous_frames=previous_frames, on_step=on_step,
                           should_stop=comfy_bridge.processing_interrupted)


@contextlib.contextmanager
def cancelled():
    """Turn the render path's GenerationCancelled into ComfyUI's InterruptProcessingException."""
    from emo_models.pipeline import GenerationCancelled

    try:
        yield
    except GenerationCancelled:
        comfy_bridge.throw_exception_if_processing_interrupted()
        raise


def render_video(emo_model, reference, audio, **kwargs):
    """:func:`render_clips` collected -> Rendered (frames, latents) (kwargs as there)."""
    from emo_models.render import collect

    with cancelled():
        return collect(render_clips(emo_model, reference, audio, **kwargs)[1])


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
            "speed": OPTIONS["speed"].node_input(default=0.5, step=0.05),
        }, "optional": {
            "schedule": ("STRING", {"default": "", "multiline": True, "tooltip": "Per-frame speeds '0.4, 0.6, "
                         "0.8' or keyframes 'frame:speed' like '0:0.3, 48:1.0' or '0:speech, 48:singing' (linear "
                         "between, held after). Empty: the constant speed."}),
            "preset": (["custom", *SPEED_PRESETS], {"default": "custom", "tooltip": "A named speed instead of "
                       f"the number above: {describe_presets()} degrees/frame. custom: use the number."}),
        }}

    def build(self, speed, schedule="", preset="custom"):
        if preset != "custom":
            speed = speed_value(preset, "preset")
        return (SpeedSchedule.parse(speed, schedule),)


class EMOSampler:
    """Talking-portrait frames from a reference and audio features, clip by clip or in context windows
    (IMAGE + LATENT)."""

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
