"""Pretraining the demo model's small ``AutoencoderKL`` on procedural faces, before the three EMO stages.

The demo VAE (3 levels: 64x64x3 pixels <-> 16x16x4 latents) starts from random weights, so it is
trained first on frames of the training clips: L1 + MSE reconstruction plus a tiny KL term (as SD's
VAE), then its ``scaling_factor`` is set to 1 / std of the latents so the diffusion model sees
unit-variance latents. :func:`mouth_fidelity` checks that the mouth survives the round trip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .synthetic import TalkingClip, measure_mouth_opening


@dataclass
class AutoencoderResult:
    """What pretraining did: per-step losses, steps run, the fitted scaling factor, seconds taken."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    scaling_factor: float = 1.0
    seconds: float = 0.0


def _to_model(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_autoencoder(vae, frames: np.ndarray, *, steps: int, batch_size: int = 32, lr: float = 1e-3,
                      kl_weight: float = 1e-6, seed: int = 0, weights: np.ndarray | None = None,
                      max_seconds: float | None = None,
                      on_step: Callable[[int, int, float], None] | None = None) -> AutoencoderResult:
    """Fit ``vae`` (an ``AutoencoderKL``, trained in place) to ``frames`` (N, H, W, 3) uint8.

    weights: (N, H, W) per-pixel loss weights (e.g. :func:`.train_batch.region_weights`), normalised per frame.

    Adam with a cosine decay over ``steps``; batches drawn with a generator seeded by ``seed``, so the
    run is reproducible. The decoder reads the posterior mean (the pipeline encodes with ``mode()``):
    sampling from a fresh VAE's unit-variance posterior drowns the latents in noise and stalls a short
    run; the KL term still keeps the latents near the origin. ``max_seconds`` stops early (the result then depends on machine speed).
    Sets ``vae.config.scaling_factor`` to :func:`latent_scaling_factor` at the end.
    """
    if len(frames) < batch_size:
        raise ValueError(f"autoencoder: {len(frames)} frames for batches of {batch_size}; render more clips")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))))
    result, started = AutoencoderResult(), time.monotonic()
    vae.train()
    for step in range(steps):
        index = np.sort(torch.randint(0, len(frames), (batch_size,), generator=generator).numpy())
        x = _to_model(frames[index])
        w = torch.ones(1, 1, 1, 1) if weights is None else torch.from_numpy(weights[index])[:, None]
        w = w / w.mean(dim=(-2, -1), keepdim=True)
        posterior = vae.encode(x).latent_dist
        error = vae.decode(posterior.mean).sample - x
        loss = (w * (error.abs() + error.square())).mean() + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        result.losses.append(loss.item())
        result.steps = step + 1
        if on_step is not None:
            on_step(step + 1, steps, result.losses[-1])
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            break
    vae.eval()
    result.scaling_factor = latent_scaling_factor(vae, frames)
    vae.register_to_config(scaling_factor=result.scaling_factor)
    result.seconds = time.monotonic() - started
    return result


@torch.no_grad()
def encode_frames(vae, frames: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> unscaled latent means (N, 4, H/s, W/s)."""
    return torch.cat([vae.encode(_to_model(frames[i:i + batch_size])).latent_dist.mean
                      for i in range(0, len(frames), batch_size)])


@torch.no_grad()
def reconstruct(vae, frames: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Encode (posterior mean) and decode: (N, H, W, 3) uint8 -> (N, H, W, 3) uint8."""
    out = []
    for i in range(0, len(frames), batch_size):
        x = vae.decode(vae.encode(_to_model(frames[i:i + batch_size])).latent_dist.mean).sample
        out.append(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def latent_scaling_factor(vae, frames: np.ndarray, samples: int = 512, seed: int = 0) -> float:
    """1 / std of the latents of up to ``samples`` frames (SD's 0.18215 was found the same way)."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(frames), size=min(samples, len(frames)), replace=False))
    return float(1.0 / encode_frames(vae, frames[index]).std().clamp_min(1e-6))


def mouth_fidelity(vae, clips: list[TalkingClip]) -> float:
    """Pearson r between the mouth opening measured in reconstructions and in the originals, all clips."""
    measured, original = [], []
    for clip in clips:
        measured.append(measure_mouth_opening(reconstruct(vae, clip.frames), clip.face_box))
        original.append(measure_mouth_opening(clip.frames, clip.face_box))
    return float(np.corrcoef(np.concatenate(measured), np.concatenate(original))[0, 1])
