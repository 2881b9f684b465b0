"""The ``context_windows`` sampler of the render path: every step denoises the whole video in overlapping windows.

EchoMimic's sampler (and AnimateDiff's "uniform" context schedule), for checkpoints trained without
motion frames: windows of f frames start every f - overlap frames and wrap around the end of the video;
at step i all windows move by i x shift frames (mod the length); each window is one backbone batch of
the guidance branches, and a frame's predictions are averaged over the windows that hold it before the
scheduler steps the whole video. A video of f frames or fewer is a single window, rotated by the same
shift. :func:`emo_models.render.render_clips` runs it when ``settings.sampler == "context_windows"``;
the guidance branches, noise and face mask are the render path's own. The guidance batch of the
reference and face is built once per video and every window's batch shares its tensors, so one
:meth:`~emo_models.model.EMOModel.clip_cache` projects the reference's keys and values once per video
(each window's audio tokens are its own, so their keys and values are projected per window).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import torch

from .model import ClipCondition
from .pipeline import AudioEncoding, EMOPipeline, GenerationCancelled, ReferenceEncoding
from .render import OnStep, RenderedClip, RenderSettings, speed_per_frame, start_latents
from .schedulers import make_scheduler


def context_windows(frames: int, size: int, overlap: int, shift: int = 0) -> list[list[int]]:
    """Frame indices of each window: starts 0, size-overlap, ... < frames, wrapping, all moved by ``shift``."""
    if frames < 1 or size < 1 or not 0 <= overlap < size:
        raise ValueError(f"context windows: frames={frames}, size={size}, overlap={overlap}; "
                         "need frames >= 1, size >= 1 and 0 <= overlap < size")
    if frames <= size:
        starts, size = [0], frames
    else:
        starts = list(range(0, frames, size - overlap))
    return [[(s + k + shift) % frames for k in range(size)] for s in starts]


@torch.no_grad()
def render_context_windows(pipeline: EMOPipeline, reference: ReferenceEncoding, audio: AudioEncoding,
                           face_mask: torch.Tensor, settings: RenderSettings, *, on_step: OnStep | None = None,
                           should_stop: Callable[[], bool] | None = None,
                           initial_noise: Callable[[int, tuple[int, ...]], torch.Tensor] | None = None,
                           ) -> Iterator[RenderedClip]:
    """Denoise all ``audio.frames`` frames together, then yield them decoded in clips of f frames.

    face_mask: (1, 1, H, W). The starting noise is one draw for the whole video, (1, F, 4, h, w)
    (``initial_noise(0, shape)`` or the seed's); on_step(done, steps, latents (F, 4, h, w)) after each
    step; should_stop() before each window.
    """
    model, device, dtype = pipeline.model, pipeline.device, pipeline.dtype
    f, total = settings.frames_per_clip, audio.frames
    c, h, w = reference.latent.shape[-3:]
    branches = settings.guidance.branches(settings.uncond_drops)
    drops = [dropped for _, dropped in branches]
    video = model.guidance_batch(ClipCondition(reference={k: x.to(device, dtype) for k, x in reference.features.items()},
                                               face=model.encode_face(face_mask.to(device, dtype))), drops)
    tokens = model.encode_audio(audio.windows(0, total)[None].to(device, dtype))  # (1, F, K, D)
    speed = model.encode_speed(speed_per_frame(settings.speed, total)[None].to(device))  # (1, F, k, c_s)
    cache = model.clip_cache()  # the reference's keys/values, once for the video
    pipeline.release_clip_parts()
    scheduler = make_scheduler(pipeline.config.scheduler, settings.scheduler, settings.steps)
    latents = start_latents(settings, scheduler, 0, (1, total, c, h, w), initial_noise).to(device, dtype)
    steps = len(scheduler.timesteps)
    for i, t in enumerate(scheduler.timesteps):
        prediction = torch.zeros((len(branches), *latents.shape[1:]), device=device, dtype=dtype)
        counter = torch.zeros((total, 1, 1, 1), device=device, dtype=dtype)
        for window in context_windows(total, f, settings.context_overlap, i * settings.context_shift):
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"generation cancelled at step {i + 1}/{steps}")
            own = model.guidance_batch(ClipCondition(None, audio_tokens=tokens[:, window], speed_tokens=speed[:, window]),
                                       drops)
            cond = replace(video, audio_tokens=own.audio_tokens, speed_tokens=own.speed_tokens)
            x = scheduler.scale_model_input(latents[:, window], t).expand(len(branches), -1, -1, -1, -1)
            prediction[:, window] += model.denoise(x, t, cond, cache=cache)
            counter[window] += 1
        prediction = prediction / counter
        eps = settings.guidance.combine({name: prediction[k:k + 1] for k, (name, _) in enumerate(branches)})
        latents = scheduler.step(eps, t, latents).prev_sample
        if on_step is not None:
            on_step(i + 1, steps, latents[0])
    for index, start in enumerate(range(0, total, f)):
        span = latents[0, start:start + f]
        yield RenderedClip(index=index, start=start, latents=span, frames=pipeline.decode(span))
