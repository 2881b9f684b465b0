"""One training step's data and maths, made a pure function of (seed, step, sample position).

- :class:`StepSampler`: the global batch of step s is positions ``(s-1)·G … s·G-1`` of an endless
  sequence of per-epoch permutations (``G`` = batch per process × processes); process r takes the r-th
  slice. So a step's samples do not depend on how many processes share them, or on a resume.
- :func:`sample_randomness`: timestep, noise, condition case and motion-frame noise of one sample
  (:mod:`.conditions`), drawn from a generator seeded by (seed, step, position) — never from global RNG state.
- :class:`StageDenoiser`: the module DDP wraps; ``EMOModel``'s training forward plus per-video removal of
  conditions for classifier-free guidance through ``EMOModel.drop_conditions``, the method that builds
  the pipeline's guidance branches.
- :func:`diffusion_loss`: MSE at random timesteps of the config's DDPM schedule, against the target its
  ``prediction_type`` names (epsilon as SD-1.5; v_prediction or sample for models trained from scratch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..model import ClipCondition, EMOModel
from .conditions import CONDITION, UNIFORMS, ConditionCases
from .stages import Stage


class StepSampler:
    """Batch sampler yielding this process's dataset indices for steps ``first+1 … last``.

    The sequence of samples is fixed by ``seed`` alone: epoch e is ``default_rng([seed, e]).permutation``.
    """

    def __init__(self, size: int, batch_size: int, processes: int, rank: int, seed: int, first: int, last: int):
        self.size, self.batch_size, self.processes, self.rank = size, batch_size, processes, rank
        self.seed, self.first, self.last = seed, first, last
        self._epochs: dict[int, np.ndarray] = {}

    def positions(self, step: int) -> list[int]:
        """Global positions of this process's samples at ``step`` (1-based)."""
        start = (step - 1) * self.batch_size * self.processes + self.rank * self.batch_size
        return list(range(start, start + self.batch_size))

    def index(self, position: int) -> int:
        """Dataset index at a global position."""
        epoch, offset = divmod(position, self.size)
        if epoch not in self._epochs:
            self._epochs = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return int(self._epochs[epoch][offset])

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.first + 1, self.last + 1):
            yield [self.index(p) for p in self.positions(step)]


def sample_randomness(seed: int, step: int, positions: list[int], latent_shape: tuple[int, ...],
                      timesteps: int, motion_shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """Per-sample timestep (b,), noise (b, *latent_shape), uniforms (b, 3) choosing the condition case, the
    motion-frame case and the motion-noise level (:mod:`.conditions`), and with ``motion_shape`` the
    motion frames' noise (b, *motion_shape)."""
    t, noise, u, motion = [], [], [], []
    for position in positions:
        state = np.random.SeedSequence([seed, step, position]).generate_state(2, np.uint32)
        g = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        t.append(torch.randint(0, timesteps, (1,), generator=g))
        u.append(torch.rand(UNIFORMS, generator=g))
        noise.append(torch.randn(latent_shape, generator=g))
        if motion_shape is not None:
            motion.append(torch.randn(motion_shape, generator=g))
    out = {"timesteps": torch.cat(t), "noise": torch.stack(noise), "uniform": torch.stack(u)}
    if motion_shape is not None:
        out["motion_noise"] = torch.stack(motion)
    return out


def target_audio_windows(features: torch.Tensor, window: int, motion_frames: int) -> torch.Tensor:
    """features (b, k + 2m, L, C) rows for frames start-m … end+m -> windows (b, k - n, 2m+1, L, C) of the
    f target frames (the same windows ``audio.audio_windows`` gives inside a whole clip)."""
    windows = features.unfold(1, 2 * window + 1, 1).movedim(-1, 2)  # (b, k, 2m+1, L, C)
    return windows[:, motion_frames:]


class StageDenoiser(nn.Module):
    """EMOModel's training forward with per-video removal of conditions for classifier-free guidance.

    latents (v, f, 4, h, w); reference_latents (v, 4, h, w); audio_windows (v, f, 2m+1, L, C) or None;
    speed (v, f) or None; face_mask (v, 1, H, W); motion_latents (v, n, 4, h, w) or None;
    dropped: condition name -> (v,) bool, removed by :meth:`EMOModel.drop_conditions` exactly as inference
    builds its guidance branches; zero_motion: (v,) bool, videos given no motion context (as
    :meth:`EMOModel.zero_motion`) -> predicted noise (v, f, 4, h, w)
    """

    def __init__(self, model: EMOModel, stage: Stage):
        super().__init__()
        self.model, self.stage = model, stage

    def forward(self, latents, timestep, reference_latents, face_mask, audio_windows=None, speed=None,
                motion_latents=None, dropped=None, zero_motion=None) -> torch.Tensor:
        model, video = self.model, self.stage.video
        motion = model.encode_motion(motion_latents) if video and motion_latents is not None else None
        if motion is not None and zero_motion is not None:
            keep = (~zero_motion).reshape(-1, 1, 1, 1, 1)
            motion = {k: x * keep.to(x.dtype) for k, x in motion.items()}
        cond = ClipCondition(
            reference=model.encode_reference(reference_latents),
            motion=motion,
            audio_tokens=model.encode_audio(audio_windows) if audio_windows is not None else None,
            speed_tokens=model.encode_speed(speed) if video and speed is not None else None,
            face=model.encode_face(face_mask),
            temporal=video,
        )
        if dropped:
            cond = model.drop_conditions(cond, dropped)
        return model.denoise(latents, timestep, cond)


@torch.no_grad()
def encode_batch(batch: dict[str, torch.Tensor], vae_encode, stage: Stage, config,
                 round_trip=None) -> dict[str, torch.Tensor]:
    """A dataset batch -> clean latents and conditions. vae_encode: images (b, 3, H, W) [0,1] -> latents.

    round_trip: latents (b·n, 4, h, w) -> the same decoded and encoded again; given, the motion frames'
    round trip is added as ``motion_round_trip`` (b, n, 4, h, w) (what generation feeds a continuing clip).
    """
    frames = batch["frames"]
    b, k = frames.shape[:2]
    n = stage.motion_frames(config)
    latents = rearrange(vae_encode(rearrange(frames, "b k c h w -> (b k) c h w")).float(),
                        "(b k) c h w -> b k c h w", b=b)
    out = {"target": latents[:, n:], "reference_latents": vae_encode(batch["reference"]).float(),
           "face_mask": batch["face_mask"], "motion_latents": latents[:, :n] if n else None,
           "audio_windows": None, "speed": None}
    if n and round_trip is not None:
        trip = round_trip(rearrange(latents[:, :n], "b n c h w -> (b n) c h w")).float()
        out["motion_round_trip"] = rearrange(trip.to(latents.device), "(b n) c h w -> b n c h w", b=b)
    if stage.audio:
        out["audio_windows"] = target_audio_windows(batch["audio_features"], config.audio_window, n)
    if stage.speed:
        out["speed"] = batch["speed"][:, n:]
    return out


LIP_REGION = ((0.25, 0.75), (0.6, 0.95))  # (x, y) fractions of a face box holding the lips


def mask_boxes(face_mask: torch.Tensor) -> torch.Tensor:
    """face_mask (v, 1, H, W) -> each mask's bounding box (v, 4) as pixel edges x0, y0, x1, y1
    (the whole image where a mask is empty)."""
    from ..face_region import mask_box

    v, _, height, width = face_mask.shape
    boxes = torch.tensor([[0.0, 0.0, width, height]]).repeat(v, 1)
    for i, mask in enumerate(face_mask[:, 0]):
        if bool((mask > 0.5).any()):
            boxes[i] = torch.tensor(mask_box(mask))
    return boxes


def region_weights(boxes: torch.Tensor, height: int, width: int, face: float, lip: float) -> torch.Tensor:
    """Per-pixel loss weights (v, 1, height, width): 1 outside the face box (v, 4) x0, y0, x1, y1, ``face``
    inside it and ``lip`` over its :data:`LIP_REGION`, so the lips, a few pixels of the frame, get weight."""
    ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
    weights = torch.ones(len(boxes), 1, height, width)
    (lx0, lx1), (ly0, ly1) = LIP_REGION
    for w, (x0, y0, x1, y1) in zip(weights, boxes.float().cpu().tolist()):
        bw, bh = x1 - x0, y1 - y0
        inside = lambda a0, a1, b0, b1: (xs >= a0) & (xs < a1) & (ys >= b0) & (ys < b1)  # noqa: E731
        w[0][inside(x0, x1, y0, y1)] = face
        w[0][inside(x0 + lx0 * bw, x0 + lx1 * bw, y0 + ly0 * bh, y0 + ly1 * bh)] = lip
    return weights


def latent_loss_weights(face_mask: torch.Tensor, latent_size: tuple[int, int], face: float,
                        lip: float) -> torch.Tensor | None:
    """:func:`region_weights` of the face masks (v, 1, H, W), area-averaged to the latents' (h, w):
    (v, 1, 1, h, w), or None when both weights are 1 (plain MSE)."""
    if face == 1.0 and lip == 1.0:
        return None
    pixels = region_weights(mask_boxes(face_mask.cpu()), *face_mask.shape[-2:], face, lip)
    return F.adaptive_avg_pool2d(pixels, latent_size)[:, None].to(face_mask.device)


NO_DROPOUT = ConditionCases(drop_reference=0.0, drop_audio=0.0, drop_both=0.0, first_clip=0.0)


def diffusion_loss(denoiser: nn.Module, noise_scheduler, inputs: dict[str, torch.Tensor],
                   randomness: dict[str, torch.Tensor], cases: ConditionCases = NO_DROPOUT,
                   face_weight: float = 1.0, lip_weight: float = 1.0) -> torch.Tensor:
    """MSE between the denoiser's prediction and the schedule's target (noise, velocity or clean latents)
    at the sample's random timestep, in the sample's condition and motion-frame case (``cases``), weighted
    ``face_weight`` inside the face box and ``lip_weight`` over its lip region (1, 1: plain MSE, as the paper)."""
    target = inputs["target"]
    device = target.device
    noise = randomness["noise"].to(device, target.dtype)
    timesteps = randomness["timesteps"].to(device)
    noisy = noise_scheduler.add_noise(target, noise, timesteps)
    inputs = cases.motion_inputs(inputs, randomness)
    available = ("reference", "face") + (("audio",) if inputs["audio_windows"] is not None else ())
    prediction = denoiser(
        noisy, timesteps, inputs["reference_latents"], inputs["face_mask"],
        audio_windows=inputs["audio_windows"], speed=inputs["speed"], motion_latents=inputs["motion_latents"],
        dropped=cases.dropped(randomness["uniform"][:, CONDITION].to(device), available) or None,
        zero_motion=inputs.get("zero_motion"),
    )
    error = (prediction.float() - prediction_target(noise_scheduler, target, noise, timesteps).float()).square()
    weights = latent_loss_weights(inputs["face_mask"], tuple(target.shape[-2:]), face_weight, lip_weight)
    return error.mean() if weights is None else (error * weights).mean() / weights.mean()


def prediction_target(noise_scheduler, latents: torch.Tensor, noise: torch.Tensor,
                      timesteps: torch.Tensor) -> torch.Tensor:
    """What the denoiser learns to output for clean ``latents`` (b, f, c, h, w) noised with ``noise`` at
    ``timesteps`` (b,): the noise (epsilon), the velocity (v_prediction) or the latents (sample)."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"scheduler prediction_type {kind!r}: expected epsilon, v_prediction or sample")


def enable_gradient_checkpointing(model: EMOModel) -> None:
    """Checkpoint both UNets' blocks (diffusers' own switch) with a function that re-enters the model's
    per-call state (reference features, clip condition) when a block is recomputed during backward."""

    @contextmanager
    def state(snapshot):
        bank = model.bank
        saved = (model._condition, model._frames, bank.reference, bank.frames, bank.use_reference)
        (model._condition, model._frames, bank.reference, bank.frames, bank.use_reference) = snapshot
        try:
            yield
        finally:
            (model._condition, model._frames, bank.reference, bank.frames, bank.use_reference) = saved

    def checkpoint_with_state(module, *args):
        bank = model.bank
        snapshot = (model._condition, model._frames, bank.reference, bank.frames, bank.use_reference)

        def run(*inputs):
            with state(snapshot):
                return module(*inputs)

        return checkpoint(run, *args, use_reentrant=False)

    for unet in (model.backbone, model.reference_net):
        unet.enable_gradient_checkpointing(checkpoint_with_state)
