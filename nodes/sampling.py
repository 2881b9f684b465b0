"""Speed Condition, EMO Sampler and Extend With Motion Frames: the clip-by-clip denoising loop in ComfyUI.

Progress goes to ComfyUI's ProgressBar once per denoising step, with a cheap preview (the 4 latent
channels through SD-1.5's fixed latent->RGB matrix, as ComfyUI's Latent2RGB previewer); a cancel stops
the pipeline before its next step and surfaces as ComfyUI's InterruptProcessingException.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

from . import comfy_bridge
from .boundary import frames_to_image, image_to_model, mask_to_model
from .types import SpeedSchedule

SCHEDULERS = ("ddim", "dpmpp_2m", "euler")
SD15_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
                   (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))
PREVIEW_SIZE = 512
DECODE_CHUNK = 8

SAMPLER_SETTINGS = {
    "steps": ("INT", {"default": 40, "min": 1, "max": 200, "tooltip": "Denoising steps per clip (paper: 40 "
              "with ddim; fewer than 20 gives artifacts)."}),
    "reference_cfg": ("FLOAT", {"default": 3.5, "min": 1.0, "max": 20.0, "step": 0.1, "round": 0.01,
                      "tooltip": "Guidance towards the reference identity (1 = off)."}),
    "audio_cfg": ("FLOAT", {"default": 3.5, "min": 1.0, "max": 20.0, "step": 0.1, "round": 0.01,
                  "tooltip": "Guidance towards the audio: lip sync and expression strength (1 = off)."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
             "tooltip": "Noise seed; the same seed and inputs give the same video."}),
    "scheduler": (list(SCHEDULERS), {"default": "ddim", "tooltip": "ddim as the paper; dpmpp_2m for fewer "
                  "steps; euler."}),
    "frames_per_clip": ("INT", {"default": 12, "min": 1, "max": 32, "tooltip": "New frames per clip (paper: "
                        "12); frames_per_clip + motion_frames must fit the model's temporal window."}),
    "motion_frames": ("INT", {"default": 4, "min": 0, "max": 16, "tooltip": "Frames of the previous clip each "
                      "clip continues from (paper: 4)."}),
}
CONDITIONS = {
    "face_mask": ("MASK", {"tooltip": "Where the face may move (Face Locator Mask), drawn on the portrait."}),
    "speed": ("EMO_SPEED", {"tooltip": "Head-motion speed (Speed Condition); default 0.5 degrees/frame."}),
}


def latent_preview(latent: torch.Tensor) -> Image.Image:
    """One latent frame (4, h, w) -> an RGB preview image (h, w), without the VAE."""
    factors = torch.tensor(SD15_LATENT_RGB)
    rgb = torch.einsum("chw,cr->hwr", latent.detach().float().cpu(), factors)
    return Image.fromarray(((rgb + 1) / 2).clamp(0, 1).mul(255).byte().numpy())


def denoise(emo_model, reference, audio, *, steps, reference_cfg, audio_cfg, seed, scheduler, frames_per_clip,
            motion_frames, face_mask=None, speed=None, motion_latents=None) -> torch.Tensor:
    """Run the pipeline's clip loop with ComfyUI progress and cancel -> latents (F, 4, h, w)."""
    from emo_models.pipeline import GenerationCancelled, Guidance

    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler: {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    pipeline = emo_model.loaded()
    mask = None if face_mask is None else reference.fit_mask(mask_to_model(face_mask, "face_mask"))
    bar = comfy_bridge.progress_bar(math.ceil(audio.frames / max(1, frames_per_clip)) * steps)

    def on_step(done, total, latents):
        bar.update_absolute(done, total, ("JPEG", latent_preview(latents[0]), PREVIEW_SIZE))

    try:
        return pipeline.sample(
            reference.to(pipeline.device, pipeline.dtype).encoding, audio, steps=steps, scheduler=scheduler,
            guidance=Guidance(reference_cfg, audio_cfg), seed=seed,
            speed=(speed or SpeedSchedule()).per_frame(audio.frames), face_mask=mask,
            motion_latents=motion_latents, frames_per_clip=frames_per_clip, motion_frames=motion_frames,
            on_step=on_step, should_stop=comfy_bridge.processing_interrupted)
    except GenerationCancelled:
        comfy_bridge.throw_exception_if_processing_interrupted()
        raise


def decode(pipeline, latents: torch.Tensor) -> torch.Tensor:
    """Latents (F, 4, h, w) -> IMAGE (F, H, W, 3), decoded in chunks with a cancel point between them."""
    frames = []
    for chunk in latents.split(DECODE_CHUNK):
        comfy_bridge.throw_exception_if_processing_interrupted()
        frames.append(frames_to_image(pipeline.decode(chunk)))
    return torch.cat(frames)


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
                             "emo_audio": ("EMO_AUDIO",), **SAMPLER_SETTINGS},
                "optional": CONDITIONS}

    def sample(self, emo_model, reference, emo_audio, **settings):
        latents = denoise(emo_model, reference, emo_audio, **settings)
        frames = decode(emo_model.pipeline, latents)
        return frames, {"samples": latents.to(comfy_bridge.intermediate_device(), torch.float32)}


class ExtendWithMotionFrames:
    """A longer video: continue the frames so far over more audio, from their last motion frames."""

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

    def extend(self, emo_model, reference, frames, emo_audio, **settings):
        previous = image_to_model(frames, "frames")
        width, height = emo_model.size
        if tuple(previous.shape[-2:]) != (height, width):
            raise ValueError(f"frames: {previous.shape[-1]}x{previous.shape[-2]} pixels; the model makes "
                             f"{width}x{height}: connect the EMO Sampler's frames before any resize")
        n = settings["motion_frames"]
        if previous.shape[0] < n:
            raise ValueError(f"frames: {previous.shape[0]} frames but motion_frames is {n}; lower motion_frames "
                             "or connect a longer video")
        motion = emo_model.loaded().vae_encode(previous[-n:])[None] if n > 0 else None
        latents = denoise(emo_model, reference, emo_audio, motion_latents=motion, **settings)
        new = decode(emo_model.pipeline, latents)
        return (torch.cat([frames.to(new.device, torch.float32), new]),)
