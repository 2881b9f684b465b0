"""Long videos without motion frames: every step denoises the whole video in overlapping context windows.

EchoMimic's sampler (and AnimateDiff's "uniform" context schedule): windows of ``size`` frames start
every ``size − overlap`` frames and wrap around the end of the video; at step i all windows move by
``i · shift`` frames (mod the length), each window is one backbone batch, and a frame's predictions
are averaged over the windows that hold it before the scheduler step. A video of ``size`` frames or
fewer is a single window, rotated by the same shift. Guidance: two passes, the unconditional one
without reference keys/values, audio or face-locator residual.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .model import ClipCondition
from .pipeline import AudioEncoding, GenerationCancelled, ReferenceEncoding, make_scheduler


def context_windows(frames: int, size: int, overlap: int, shift: int = 0) -> list[list[int]]:
    """Frame indices of each window: starts 0, size−overlap, … < frames, wrapping, all moved by ``shift``."""
    if frames < 1 or size < 1 or not 0 <= overlap < size:
        raise ValueError(f"context windows: frames={frames}, size={size}, overlap={overlap}; "
                         "need frames >= 1, size >= 1 and 0 <= overlap < size")
    if frames <= size:
        starts, size = [0], frames
    else:
        starts = list(range(0, frames, size - overlap))
    return [[(s + k + shift) % frames for k in range(size)] for s in starts]


@torch.no_grad()
def sample_context_windows(pipeline, reference: ReferenceEncoding, audio: AudioEncoding, *,
                           face_mask: torch.Tensor | None, steps: int, guidance: float, seed: int,
                           context_frames: int = 12, context_overlap: int = 3, context_shift: int = 2,
                           noise_clamp: float = 0.0, scheduler: str = "ddim",
                           on_step: Callable[[int, int, torch.Tensor], None] | None = None,
                           should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """Denoise all of ``audio``'s frames together. face_mask: (1, 1, H, W) or None -> latents (F, 4, h, w).

    The initial noise is drawn as (1, 4, F, h, w) from ``seed`` (clamped to ±noise_clamp when > 0);
    ``guidance`` > 1 runs an unconditional pass beside the conditional one.
    """
    model, cfg = pipeline.model, pipeline.config
    device, dtype = pipeline.device, pipeline.dtype
    frames, (c, h, w) = audio.frames, reference.latent.shape[-3:]
    branches = ("uncond", "full") if guidance > 1.0 else ("full",)
    v = len(branches)
    on = torch.tensor([b == "full" for b in branches], device=device)
    face = None
    if face_mask is not None:
        face = model.encode_face(face_mask.to(device, dtype)).expand(v, -1, -1, -1) * on[:, None, None, None]
    tokens = model.encode_audio(audio.windows.to(device, dtype))  # (F, K, D)
    features = {k: x.to(device, dtype).expand(v, -1, -1) for k, x in reference.features.items()}

    generator = torch.Generator("cpu").manual_seed(int(seed))
    noise = torch.randn((1, c, frames, h, w), generator=generator, dtype=torch.float32)
    if noise_clamp > 0:
        noise = noise.clamp(-noise_clamp, noise_clamp)
    sched = make_scheduler(cfg, scheduler, steps)
    latents = (noise * sched.init_noise_sigma)[0].transpose(0, 1).to(device, dtype)  # (F, 4, h, w)
    total = len(sched.timesteps)
    for i, t in enumerate(sched.timesteps):
        prediction = torch.zeros((v, *latents.shape), device=device, dtype=dtype)
        counter = torch.zeros((frames, 1, 1, 1), device=device, dtype=dtype)
        for window in context_windows(frames, context_frames, context_overlap, i * context_shift):
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"generation cancelled at step {i + 1}/{total}")
            cond = ClipCondition(reference=features, face=face, use_reference=on,
                                 audio_tokens=tokens[window][None].expand(v, -1, -1, -1) * on[:, None, None, None].to(dtype))
            x = sched.scale_model_input(latents[window], t)[None].expand(v, -1, -1, -1, -1)
            prediction[:, window] += model.denoise(x, t, cond)
            counter[window] += 1
        prediction = prediction / counter
        eps = prediction[-1] if v == 1 else prediction[0] + guidance * (prediction[1] - prediction[0])
        latents = sched.step(eps, t, latents).prev_sample
        if on_step is not None:
            on_step(i + 1, total, latents)
    return latents
