"""The one render path: an encoded portrait + encoded audio + settings -> decoded frames, clip by clip.

``generate``, ``demo``, EMO Sampler and Extend With Motion Frames all call :func:`render_clips` (or
:func:`render`, which collects it). It is a generator: per clip it denoises f new frames that continue
the n motion frames before them, decodes them and yields a :class:`RenderedClip`, holding nothing of
earlier clips but the last n frames, so a caller can stream a video of any length.

The policies of continuing a video live here and nowhere else:
- motion frames: every clip continues the VAE encoding of the last n *decoded* frames before it. The
  first clip of a video continues what the checkpoint's ``first_clip_motion`` says: ``reference`` (the
  video is preceded by n copies of the portrait: its latent repeated n times) or ``zeros`` (no motion
  context). A video continued from its frames (``previous_frames``) gets exactly the motion frames one
  longer run would have had;
- noise: the clip that starts at frame t of the video draws its initial noise from (seed, t), so a
  continued video also gets a longer run's noise: continuing at a clip boundary is bit-identical;
- guidance: :class:`~emo_models.guidance.Guidance` picks the backbone passes, the model builds them
  (:meth:`~emo_models.model.EMOModel.guidance_batch`) from the checkpoint's ``uncond_drops``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .config import EMOConfig
from .face_region import FaceBox, Portrait, frame_portrait, locator_mask
from .guidance import Guidance
from .model import ClipCondition
from .pipeline import AudioEncoding, EMOPipeline, GenerationCancelled, ReferenceEncoding
from .preset import FIRST_CLIP_MOTION
from .schedulers import SCHEDULERS, make_scheduler

OnStep = Callable[[int, int, torch.Tensor], None]  # (steps done, steps in all, latents (f, 4, h, w))


@dataclass(frozen=True)
class RenderSettings:
    """How to sample, resolved from a checkpoint's preset and the user's overrides (:meth:`from_config`).

    speed: degrees/frame, a constant or a per-frame schedule (a short one holds its last value).
    """

    steps: int
    scheduler: str
    guidance: Guidance
    uncond_drops: tuple[str, ...]
    frames_per_clip: int
    motion_frames: int
    first_clip_motion: str
    seed: int = 0
    speed: float | np.ndarray = 0.5

    @classmethod
    def from_config(cls, config: EMOConfig, *, steps: int | None = None, scheduler: str | None = None,
                    cfg: float | None = None, cfg_reference: float | None = None, cfg_audio: float | None = None,
                    frames_per_clip: int | None = None, motion_frames: int | None = None,
                    first_clip_motion: str | None = None, seed: int = 0,
                    speed: float | np.ndarray | None = None) -> RenderSettings:
        """The checkpoint's trained-for settings (``config.generation`` and its clip geometry), each value
        given here overriding it (None: the checkpoint's). An explicit ``cfg`` replaces the checkpoint's
        whole guidance setting; ``cfg_reference``/``cfg_audio`` alone replace just that scale."""
        preset = config.generation
        if cfg is not None:
            guidance = Guidance(cfg, cfg_reference, cfg_audio)
        else:
            guidance = Guidance(preset.guidance,
                                preset.guidance_reference if cfg_reference is None else cfg_reference,
                                preset.guidance_audio if cfg_audio is None else cfg_audio)
        settings = cls(
            steps=preset.steps if steps is None else steps,
            scheduler=preset.scheduler if scheduler is None else scheduler,
            guidance=guidance, uncond_drops=preset.uncond_drops,
            frames_per_clip=config.frames_per_clip if frames_per_clip is None else frames_per_clip,
            motion_frames=config.motion_frames if motion_frames is None else motion_frames,
            first_clip_motion=preset.first_clip_motion if first_clip_motion is None else first_clip_motion,
            seed=seed, speed=preset.speed if speed is None else speed,
        )
        settings.check(config)
        return settings

    def check(self, config: EMOConfig) -> None:
        """Refuse settings this model cannot run, naming the setting and what to give."""
        whole = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)  # noqa: E731
        f, n, window = self.frames_per_clip, self.motion_frames, config.temporal_max_frames
        if not whole(self.steps) or self.steps < 1:
            raise ValueError(f"steps: {self.steps!r}; give a whole number of denoising steps >= 1 (the paper uses 40)")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if not whole(f) or not whole(n) or f < 1 or n < 0 or f + n > window:
            raise ValueError(f"frames_per_clip {f!r}, motion_frames {n!r}: give f >= 1 and n >= 0 with f + n <= "
                             f"{window} (the model's temporal window); the checkpoint's are "
                             f"{config.frames_per_clip} and {config.motion_frames}")
        if self.first_clip_motion not in FIRST_CLIP_MOTION:
            raise ValueError(f"first_clip_motion: {self.first_clip_motion!r}; choose one of "
                             f"{', '.join(FIRST_CLIP_MOTION)}")
        if not whole(self.seed) or not 0 <= self.seed < 2**64:
            raise ValueError(f"seed: {self.seed!r}; give a whole number from 0 to 2**64 - 1")
        speed_per_frame(self.speed, 1)
        self.guidance.branches(self.uncond_drops)

    @property
    def passes(self) -> int:
        """Backbone passes per denoising step (the guidance branches, batched into one call)."""
        return len(self.guidance.branches(self.uncond_drops))


@dataclass(frozen=True)
class RenderedClip:
    """One clip's new frames. index: the clip's number in this render; start: its first frame's index in
    this render; latents: (k, 4, h, w); frames: (k, 3, H, W) in [0, 1], float32 on CPU (k <= f: the
    last clip is cut to the audio's length)."""

    index: int
    start: int
    latents: torch.Tensor
    frames: torch.Tensor


@dataclass(frozen=True)
class Rendered:
    """A whole render. frames: (F, 3, H, W) in [0, 1], float32 on CPU; latents: (F, 4, h, w)."""

    frames: torch.Tensor
    latents: torch.Tensor


def speed_per_frame(speed: float | np.ndarray | torch.Tensor, frames: int) -> torch.Tensor:
    """A constant or a per-frame schedule -> (frames,) degrees/frame (a short schedule holds its last value)."""
    s = torch.as_tensor(np.asarray(speed, dtype=np.float32)).reshape(-1)
    if s.numel() == 0 or not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError(f"speed: {speed!r}; give a number or per-frame schedule in degrees/frame >= 0 "
                         "(0.1-1.3 typical)")
    if s.numel() < frames:
        s = torch.cat([s, s[-1:].expand(frames - s.numel())])
    return s[:frames]


def clip_noise(seed: int, first_frame: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Initial noise (float32, CPU) of the clip starting at video frame ``first_frame``: a function of
    (seed, first_frame) alone, so any render of that clip, continued or not, starts from it."""
    state = np.random.SeedSequence([int(seed), int(first_frame)]).generate_state(2, np.uint32)
    generator = torch.Generator("cpu").manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def _clip_windows(windows: torch.Tensor, start: int, frames: int) -> torch.Tensor:
    """Audio windows (F, ...) of frames [start, start + frames): a final partial clip repeats the last one."""
    span = windows[start:start + frames]
    if span.shape[0] == frames:
        return span
    return torch.cat([span, windows[-1:].expand(frames - span.shape[0], *windows.shape[1:])])


@torch.no_grad()
def render_clips(pipeline: EMOPipeline, reference: ReferenceEncoding, audio: AudioEncoding, face_mask: torch.Tensor,
                 settings: RenderSettings, *, previous_frames: torch.Tensor | None = None,
                 on_step: OnStep | None = None, should_stop: Callable[[], bool] | None = None,
                 initial_noise: Callable[[int, tuple[int, ...]], torch.Tensor] | None = None) -> Iterator[RenderedClip]:
    """Render ``audio.frames`` frames of the portrait, one :class:`RenderedClip` per clip as it is done.

    face_mask: (1, 1, H, W) face-locator mask on the model's frame (always given: see
    :func:`emo_models.face_region.locator_mask`). previous_frames: (k, 3, H, W) in [0, 1], the video so
    far (k >= n; only its last n frames are read), to continue it. on_step(done, total, latents) after
    every denoising step; should_stop() before each, raising :class:`GenerationCancelled` when it says so.
    initial_noise(first_frame, shape): a clip's starting noise (default :func:`clip_noise` of the seed),
    e.g. to replay another implementation's noise in a parity check.
    """
    model = pipeline.model
    f, n = settings.frames_per_clip, settings.motion_frames
    (c, h, w), (height, width) = reference.latent.shape[-3:], reference.image.shape[-2:]
    if face_mask.ndim != 4 or tuple(face_mask.shape[:2]) != (1, 1) or tuple(face_mask.shape[-2:]) != (height, width):
        raise ValueError(f"face_mask: shape {tuple(face_mask.shape)}; expected (1, 1, {height}, {width}), the "
                         "reference's frame (emo_models.face_region.locator_mask builds it)")
    device, dtype = pipeline.device, pipeline.dtype
    total = audio.frames
    clips = math.ceil(total / f)
    speeds = speed_per_frame(settings.speed, clips * f)
    branches = settings.guidance.branches(settings.uncond_drops)
    condition = ClipCondition(reference={k: x.to(device, dtype) for k, x in reference.features.items()},
                              face=model.encode_face(face_mask.to(device, dtype)), identity=reference.identity,
                              regions=reference.regions)
    start_frame, tail, motion_latents = 0, None, None  # tail: the last n decoded frames, (<= n, 3, H, W)
    if previous_frames is not None:
        if tuple(previous_frames.shape[1:]) != (3, height, width):
            raise ValueError(f"frames: shape {tuple(previous_frames.shape)}; expected (k, 3, {height}, {width}), "
                             "the frames of a render with this reference")
        if previous_frames.shape[0] < n:
            raise ValueError(f"frames: {previous_frames.shape[0]} frames to continue but motion_frames is {n}; "
                             "give a longer video or lower motion_frames")
        start_frame, tail = previous_frames.shape[0], previous_frames[-n:].float().cpu() if n else None
        motion_latents = pipeline.vae_encode(tail)[None] if n else None
    elif n and settings.first_clip_motion == "reference":
        tail = reference.image.float().cpu().expand(n, -1, -1, -1)
        motion_latents = reference.latent[:, None].expand(1, n, c, h, w)
    steps_per_clip = len(make_scheduler(pipeline.config.scheduler, settings.scheduler, settings.steps).timesteps)
    done = 0
    for clip in range(clips):
        span = slice(clip * f, (clip + 1) * f)
        sources = None
        if model.reads_clip_sources:  # reference + motion latents read in one pass in guidance_batch
            sources = reference.latent[:, None] if not n or motion_latents is None else \
                torch.cat([reference.latent[:, None], motion_latents], dim=1)
            sources = sources.to(device, dtype)
        if sources is None and n and motion_latents is not None:
            motion = model.encode_motion(motion_latents.to(device, dtype))
        else:
            motion = model.zero_motion(1, h, w, device, dtype, frames=n) if n else None
        cond = ClipCondition(
            reference=condition.reference, face=condition.face, motion=motion, identity=condition.identity,
            regions=condition.regions, sources=sources,
            audio_tokens=model.encode_audio(_clip_windows(audio.windows, clip * f, f)[None].to(device, dtype)),
            speed_tokens=model.encode_speed(speeds[span][None].to(device)),
        )
        batch = model.guidance_batch(cond, [drops for _, drops in branches])
        scheduler = make_scheduler(pipeline.config.scheduler, settings.scheduler, settings.steps)
        first_frame = start_frame + clip * f
        noise = (initial_noise or partial(clip_noise, settings.seed))(first_frame, (1, f, c, h, w))
        latents = (noise * scheduler.init_noise_sigma).to(device, dtype)
        for t in scheduler.timesteps:
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"generation cancelled at clip {clip + 1}/{clips}, step {done}")
            x = scheduler.scale_model_input(latents, t).expand(len(branches), -1, -1, -1, -1)
            eps = model.denoise(x, t, batch)
            eps = settings.guidance.combine({name: eps[i:i + 1] for i, (name, _) in enumerate(branches)})
            latents = scheduler.step(eps, t, latents).prev_sample
            done += 1
            if on_step is not None:
                on_step(done, clips * steps_per_clip, latents[0])
        frames = pipeline.decode(latents[0])
        keep = min(f, total - clip * f)
        yield RenderedClip(index=clip, start=clip * f, latents=latents[0, :keep], frames=frames[:keep])
        if n and clip + 1 < clips:
            tail = frames[-n:] if tail is None or f >= n else torch.cat([tail, frames])[-n:]
            motion_latents = pipeline.vae_encode(tail)[None]


def render(pipeline: EMOPipeline, reference: ReferenceEncoding, audio: AudioEncoding, face_mask: torch.Tensor,
           settings: RenderSettings, **kwargs) -> Rendered:
    """:func:`render_clips` collected: the whole video's frames and latents (kwargs as there)."""
    clips = list(render_clips(pipeline, reference, audio, face_mask, settings, **kwargs))
    return Rendered(frames=torch.cat([c.frames for c in clips]), latents=torch.cat([c.latents for c in clips]))


@torch.no_grad()
def encode_portrait(pipeline: EMOPipeline, portrait: Portrait) -> ReferenceEncoding:
    """A fitted portrait -> its :class:`ReferenceEncoding` with the face inputs the model reads: none for
    EMO's; identity embedding, region masks and face-locator box for models with identity tokens (Hallo's,
    from the release's face-analysis files: :func:`emo_models.families.hallo.portrait_conditions`)."""
    if pipeline.model.identity_projection is None:
        return pipeline.encode_reference(portrait.image)
    from dataclasses import replace

    from .families.hallo import portrait_conditions

    faces = portrait_conditions(pipeline, portrait.image)
    return replace(pipeline.encode_reference(portrait.image, faces.embedding, faces.regions), locator=faces.locator)


def face_locator_region(reference: ReferenceEncoding, portrait: Portrait, config: EMOConfig,
                        face_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The face-locator mask (1, 1, H, W): a given mask (drawn on the original image) wins; else the one found
    with the reference's face inputs (Hallo's); else :func:`~emo_models.face_region.locator_mask`'s policy."""
    if face_mask is None and reference.locator is not None:
        return reference.locator
    return locator_mask(portrait, config.generation, mask=face_mask)


@torch.no_grad()
def animate(pipeline: EMOPipeline, image: torch.Tensor, waveform, sample_rate: int, settings: RenderSettings, *,
            crop: str = "center", face_box: FaceBox | tuple | None = None, face_mask: torch.Tensor | None = None,
            width: int | None = None, height: int | None = None, fps: float | None = None, audio_name: str = "audio",
            on_step: OnStep | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[AudioEncoding, Iterator[RenderedClip]]:
    """A portrait and a waveform as decoded -> (the audio's encoding, the video's clips as they render).

    image: (1, 3, h, w) in [0, 1], any size, fitted to width x height (default: the checkpoint's) by
    ``crop`` (:func:`~emo_models.face_region.frame_portrait`); face_box / face_mask: the face region on
    that image (default: detected, else the checkpoint's face box); waveform: (T,), (C, T) or (B, C, T)
    at ``sample_rate``; fps: default the checkpoint's. This is what ``generate``, ``demo`` and
    :meth:`EMOPipeline.generate` run; the nodes run the same steps one node each.
    """
    config = pipeline.config
    portrait = frame_portrait(image, config.width if width is None else width, config.height if height is None else height,
                              crop=crop, face_box=face_box, detect=config.generation.detect_face)
    reference = encode_portrait(pipeline, portrait)
    mask = face_locator_region(reference, portrait, config, face_mask)
    audio = pipeline.encode_audio(waveform, sample_rate, fps=fps, name=audio_name)
    return audio, render_clips(pipeline, reference, audio, mask, settings, on_step=on_step, should_stop=should_stop)
