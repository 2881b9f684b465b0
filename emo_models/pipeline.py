"""Generation: audio → per-frame features → clips of f frames, each continuing the n last frames before it.

:class:`EMOPipeline` holds the EMO model, the VAE and wav2vec2. Work is split where it is done once:
``encode_reference`` (VAE + ReferenceNet, once per video), ``encode_audio`` (wav2vec2, once per audio),
``sample`` (the clip loop; the ReferenceNet runs once per clip on the motion frames), ``decode`` (VAE,
in slices). ``generate`` chains them. Progress and cancel are callbacks, so this file knows nothing of
ComfyUI: ``on_step(done, total, latents)`` after every denoising step, ``should_stop()`` before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from .audio import audio_features, audio_windows
from .config import EMOConfig
from .model import ClipCondition, EMOModel

SCHEDULERS = {
    "ddim": (DDIMScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": (EulerDiscreteScheduler, {}),
}


class GenerationCancelled(RuntimeError):
    """Raised when ``should_stop()`` returns True; the models are left exactly as they were."""


@dataclass(frozen=True)
class ReferenceEncoding:
    """A reference portrait, encoded once. latent: (1, 4, h, w); features: attn1 name -> (1, hw, c)."""

    latent: torch.Tensor
    features: dict[str, torch.Tensor]
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], at the model's size


@dataclass(frozen=True)
class AudioEncoding:
    """Audio features at the video frame rate. windows: (F, 2m+1, L, C); fps; frames = F."""

    windows: torch.Tensor
    fps: float
    seconds: float

    @property
    def frames(self) -> int:
        """F: frames this audio implies, round(seconds × fps)."""
        return int(self.windows.shape[0])


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance scales; 1.0 for both means a single unguided pass."""

    reference: float = 1.0
    audio: float = 1.0

    def branches(self) -> tuple[str, ...]:
        """Which passes are needed: 'uncond' (no reference, no audio), 'reference' (no audio), 'full'."""
        if self.reference == 1.0 and self.audio == 1.0:
            return ("full",)
        if self.reference == 1.0:
            return ("reference", "full")
        return ("uncond", "reference", "full")

    def combine(self, eps: dict[str, torch.Tensor]) -> torch.Tensor:
        """eps_u + s_ref·(eps_ref − eps_u) + s_audio·(eps_full − eps_ref), each (1, f, 4, h, w)."""
        if "reference" not in eps:
            return eps["full"]
        out = eps["reference"] + self.audio * (eps["full"] - eps["reference"])
        if "uncond" in eps:
            out = out + (self.reference - 1.0) * (eps["reference"] - eps["uncond"])
        return out


def make_scheduler(config: EMOConfig, name: str, steps: int):
    """A fresh diffusers scheduler (``ddim`` as the paper, ``dpmpp_2m`` for fewer steps, ``euler``)."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler: unknown {name!r}; choose one of {sorted(SCHEDULERS)}")
    if steps < 1:
        raise ValueError(f"steps: {steps}; give at least 1 denoising step (the paper uses 40)")
    cls, extra = SCHEDULERS[name]
    scheduler = cls.from_config({**config.scheduler, **extra})
    scheduler.set_timesteps(steps)
    return scheduler


def speed_per_frame(speed: float | np.ndarray | torch.Tensor, frames: int) -> torch.Tensor:
    """A constant or a per-frame schedule → (frames,) degrees/frame (a short schedule holds its last value)."""
    s = torch.as_tensor(np.asarray(speed, dtype=np.float32)).reshape(-1)
    if s.numel() == 0 or not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError("speed: give a non-negative number or schedule in degrees/frame (0.1-1.3 typical)")
    if s.numel() < frames:
        s = torch.cat([s, s[-1:].expand(frames - s.numel())])
    return s[:frames]


class EMOPipeline:
    """The EMO model with its VAE and wav2vec2, on one device and dtype."""

    def __init__(self, model: EMOModel, vae, audio_encoder, config: EMOConfig | None = None):
        self.model, self.vae, self.audio_encoder = model.eval(), vae.eval(), audio_encoder.eval()
        self.config = config or model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device=None, dtype=None) -> EMOPipeline:
        """Move every part; wav2vec2 stays float32 unless on an accelerator."""
        self.model.to(device=device, dtype=dtype)
        self.vae.to(device=device)
        if dtype is not None and dtype != self.vae.dtype:
            self.vae.to(dtype=dtype)
        self.audio_encoder.to(device=device)
        return self

    # ---- once per video / per audio ----------------------------------------------------------------
    @torch.no_grad()
    def vae_encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: (b, 3, H, W) in [0, 1] -> latents (b, 4, H/8, W/8), the distribution's mean (deterministic)."""
        x = (images * 2 - 1).to(self.device, self.dtype)
        return self.vae.encode(x).latent_dist.mode() * self.vae.config.scaling_factor

    @torch.no_grad()
    def encode_reference(self, image: torch.Tensor) -> ReferenceEncoding:
        """image: (1, 3, H, W) in [0, 1] at the model's size -> latent + ReferenceNet features (one run)."""
        h, w = image.shape[-2:]
        scale = self.config.vae_scale * 2 ** (len(self.config.unet["block_out_channels"]) - 1)
        if h % scale or w % scale:
            raise ValueError(f"image: {w}x{h} pixels; the model needs width and height multiples of {scale}")
        latent = self.vae_encode(image)
        return ReferenceEncoding(latent=latent, features=self.model.encode_reference(latent), image=image)

    @torch.no_grad()
    def encode_audio(self, wave: np.ndarray, fps: float | None = None) -> AudioEncoding:
        """wave: (T,) mono at the config's sample rate -> windows (F, 2m+1, L, C), F = round(seconds × fps)."""
        fps = float(fps or self.config.fps)
        if not fps > 0:
            raise ValueError(f"fps: {fps}; give a positive frame rate (25 or 30 typical)")
        seconds = len(wave) / self.config.audio_sample_rate
        frames = int(math.floor(seconds * fps + 0.5))
        features = audio_features(self.audio_encoder, wave, frames)
        return AudioEncoding(audio_windows(features, self.config.audio_window), fps, seconds)

    # ---- the clip loop ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, reference: ReferenceEncoding, audio: AudioEncoding, *, steps: int = 40,
               scheduler: str = "ddim", guidance: Guidance = Guidance(), seed: int = 0,
               speed: float | np.ndarray = 0.5, face_mask: torch.Tensor | None = None,
               motion_latents: torch.Tensor | None = None, frames_per_clip: int | None = None,
               motion_frames: int | None = None,
               on_step: Callable[[int, int, torch.Tensor], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
        """Denoise the whole audio clip by clip. face_mask: (1, 1, H, W); motion_latents: (1, n, 4, h, w)
        to continue an earlier video (None: zeros for the first clip) -> latents (F, 4, h, w)."""
        model, cfg = self.model, self.config
        f = int(frames_per_clip or cfg.frames_per_clip)
        n = int(motion_frames if motion_frames is not None else cfg.motion_frames)
        if f < 1 or n < 0 or f + n > cfg.temporal_max_frames:
            raise ValueError(f"frames_per_clip={f}, motion_frames={n}: need f >= 1, n >= 0 and f + n <= "
                             f"{cfg.temporal_max_frames}")
        total, (c, h, w) = audio.frames, reference.latent.shape[-3:]
        clips = math.ceil(total / f)
        speeds = speed_per_frame(speed, clips * f)
        windows = audio_windows_padded(audio.windows, clips * f)
        branches = guidance.branches()
        v = len(branches)
        device, dtype = self.device, self.dtype
        generator = torch.Generator("cpu").manual_seed(int(seed))
        face = None if face_mask is None else model.encode_face(face_mask.to(device, dtype)).expand(v, -1, -1, -1)
        use_reference = torch.tensor([b != "uncond" for b in branches], device=device)
        features = {k: x.to(device, dtype).expand(v, -1, -1) for k, x in reference.features.items()}
        previous = None if motion_latents is None else motion_latents.to(device, dtype)
        out, done = [], 0
        for clip in range(clips):
            span = slice(clip * f, (clip + 1) * f)
            if previous is not None and n > 0:
                motion = model.encode_motion(previous[:, -n:])
                motion = {k: x.expand(v, *x.shape[1:]) for k, x in motion.items()}
            else:
                motion = model.zero_motion(v, h, w, device, dtype) if n > 0 else None
            tokens = model.encode_audio(windows[span][None].to(device, dtype))
            audio_on = torch.tensor([b == "full" for b in branches], device=device, dtype=dtype)
            cond = ClipCondition(
                reference=features, motion=motion, face=face, use_reference=use_reference,
                audio_tokens=tokens.expand(v, -1, -1, -1) * audio_on[:, None, None, None],
                speed_tokens=model.encode_speed(speeds[span][None].to(device)).expand(v, -1, -1, -1),
            )
            sched = make_scheduler(cfg, scheduler, steps)
            noise = torch.randn((1, f, c, h, w), generator=generator, dtype=torch.float32)
            latents = (noise * sched.init_noise_sigma).to(device, dtype)
            for t in sched.timesteps:
                if should_stop is not None and should_stop():
                    raise GenerationCancelled(f"generation cancelled at clip {clip + 1}/{clips}, step {done}")
                x = sched.scale_model_input(latents, t).expand(v, -1, -1, -1, -1)
                eps = model.denoise(x, t, cond)
                eps = guidance.combine({b: eps[i:i + 1] for i, b in enumerate(branches)})
                latents = sched.step(eps, t, latents).prev_sample
                done += 1
                if on_step is not None:
                    on_step(done, clips * len(sched.timesteps), latents[0])
            previous = latents
            out.append(latents[0])
        return torch.cat(out)[:total]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, slice_size: int = 4) -> torch.Tensor:
        """latents: (F, 4, h, w) -> frames (F, 3, H, W) in [0, 1], float32 on CPU, decoded in slices."""
        frames = []
        for chunk in latents.split(slice_size):
            x = self.vae.decode(chunk.to(self.device, self.dtype) / self.vae.config.scaling_factor).sample
            frames.append(((x.float() + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(frames)

    def generate(self, image: torch.Tensor, wave: np.ndarray, *, fps: float | None = None, **sample_kwargs):
        """image: (1, 3, H, W) in [0, 1] at the model's size; wave: (T,) mono 16 kHz
        -> frames (F, 3, H, W) in [0, 1], F = round(seconds × fps)."""
        reference = self.encode_reference(image)
        audio = self.encode_audio(wave, fps)
        return self.decode(self.sample(reference, audio, **sample_kwargs))


def audio_windows_padded(windows: torch.Tensor, frames: int) -> torch.Tensor:
    """Repeat the last frame's window so a final partial clip has audio. (F, ...) -> (frames, ...)."""
    if windows.shape[0] >= frames:
        return windows[:frames]
    pad = windows[-1:].expand(frames - windows.shape[0], *windows.shape[1:])
    return torch.cat([windows, pad])
