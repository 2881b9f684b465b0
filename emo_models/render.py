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
  (:meth:`~emo_models.model.EMOModel.guidance_batch`) from the checkpoint's ``uncond_drops``;
- speed: each clip's steps share one :meth:`~emo_models.model.EMOModel.clip_cache`, so what is constant
  over the clip (reference, motion-frame and audio key/value projections) is computed once per clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .config import EMOConfig
from .face_region import FaceBox, frame_portrait
from .guidance import Guidance
from .model import ClipCondition
from .options import check_frame_size, check_option, check_values
from .pipeline import AudioEncoding, EMOPipeline, GenerationCancelled, ReferenceEncoding
from .portrait_inputs import encode_portrait, face_locator_region
from .preset import FIRST_CLIP_MOTION, SAMPLERS
from .schedulers import SCHEDULERS, make_scheduler
from .speed_presets import speed_value
from .validation import InputError, image_tensor

OnStep = Callable[[int, int, torch.Tensor], None]  # (steps done, steps in all, latents (f, 4, h, w))


@dataclass(frozen=True)
class RenderSettings:
    """How to sample, resolved from a checkpoint's preset and the user's overrides (:meth:`from_config`).

    speed: degrees/frame, a constant, a preset name ("singing", see :mod:`emo_models.speed_presets`) or a
    per-frame schedule (a short one holds its last value).
    sampler: ``motion_frames`` (clip by clip) or ``context_windows`` (the whole video at every step, in
    windows of frames_per_clip overlapping by context_overlap, moved context_shift frames per step:
    emo_models/context_windows.py); noise_clamp > 0 clamps the initial noise to +-noise_clamp.
    """

    steps: int
    scheduler: str
    guidance: Guidance
    uncond_drops: tuple[str, ...]
    frames_per_clip: int
    motion_frames: int
    first_clip_motion: str
    seed: int = 0
    speed: float | str | np.ndarray = 0.5
    sampler: str = "motion_frames"
    context_overlap: int = 3
    context_shift: int = 2
    noise_clamp: float = 0.0

    @classmethod
    def from_config(cls, config: EMOConfig, *, steps: int | None = None, scheduler: str | None = None,
                    cfg: float | None = None, cfg_reference: float | None = None, cfg_audio: float | None = None,
                    frames_per_clip: int | None = None, motion_frames: int | None = None,
                    first_clip_motion: str | None = None, seed: int = 0,
                    speed: float | str | np.ndarray | None = None, sampler: str | None = None,
                    context_overlap: int | None = None, label: Callable[[str], str] = str) -> RenderSettings:
        """The checkpoint's trained-for settings (``config.generation`` and its clip geometry), each value
        given here overriding it (None: the checkpoint's). An explicit ``cfg`` replaces the checkpoint's
        whole guidance setting; ``cfg_reference``/``cfg_audio`` alone replace just that scale. The
        ``context_windows`` sampler runs without motion frames unless ``motion_frames`` is given. Every value
        is checked (:meth:`check`; 0 is a value, not "unset"), errors naming it as ``label`` spells it."""
        overrides = {"steps": steps, "cfg": cfg, "cfg_reference": cfg_reference, "cfg_audio": cfg_audio,
                     "frames_per_clip": frames_per_clip, "motion_frames": motion_frames, "seed": seed}
        checked = {name: None if value is None else check_option(name, value, label(name))
                   for name, value in overrides.items()}  # as the option's kind: steps=40.0 -> 40
        steps, cfg, cfg_reference, cfg_audio, frames_per_clip, motion_frames, seed = checked.values()
        preset = config.generation
        sampler = preset.sampler if sampler is None else sampler
        if motion_frames is None:
            motion_frames = 0 if sampler == "context_windows" else config.motion_frames
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
            motion_frames=motion_frames,
            first_clip_motion=preset.first_clip_motion if first_clip_motion is None else first_clip_motion,
            seed=seed, speed=preset.speed if speed is None else speed, sampler=sampler,
            context_overlap=preset.context_overlap if context_overlap is None else context_overlap,
            context_shift=preset.context_shift, noise_clamp=preset.noise_clamp,
        )
        settings.check(config, label)
        return settings

    def check(self, config: EMOConfig, label: Callable[[str], str] = str) -> None:
        """Refuse settings this model cannot run, naming the setting (as ``label`` spells it: the CLI's
        ``--cfg``) and what to give: each number against :data:`~emo_models.options.OPTIONS`, then together
        against the model (the temporal window, the scheduler's training timesteps)."""
        for name in ("steps", "frames_per_clip", "motion_frames", "seed"):
            check_option(name, getattr(self, name), label(name))
        scales = {"cfg": self.guidance.scale, "cfg_reference": self.guidance.reference, "cfg_audio": self.guidance.audio}
        for name, value in scales.items():
            if value is not None:
                check_option(name, value, label(name))
        check_values("speed", speed_value(self.speed) if isinstance(self.speed, str) else self.speed, label("speed"))
        f, n, window = self.frames_per_clip, self.motion_frames, config.temporal_max_frames
        if f + n > window:
            raise InputError(f"{label('frames_per_clip')} + {label('motion_frames')}: {f} + {n} frames exceed this "
                             f"model's temporal window of {window}; lower one of them (the checkpoint's are "
                             f"{config.frames_per_clip} + {config.motion_frames})")
        timesteps = int(config.scheduler.get("num_train_timesteps", 1000))
        if self.steps > timesteps:
            raise InputError(f"{label('steps')}: {self.steps} is more than this model's {timesteps} training "
                             f"timesteps; give 1 to {timesteps}")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"{label('scheduler')}: {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if self.sampler not in SAMPLERS:
            raise InputError(f"{label('sampler')}: {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.sampler == "context_windows":
            if config.identity_tokens or config.audio_modules:
                raise InputError(f"{label('sampler')}: 'context_windows'; this model (Hallo's) reads identity tokens, "
                                 "region masks and each clip's motion frames, which that sampler does not give: "
                                 "use motion_frames (the checkpoint's)")
            if n:
                raise InputError(f"{label('motion_frames')}: {n}; the context_windows sampler denoises the whole "
                                 "video together and uses no motion frames: give 0")
            if check_option("context_overlap", self.context_overlap, label("context_overlap")) >= f:
                raise InputError(f"{label('context_overlap')}: {self.context_overlap!r}; give a whole number of "
                                 f"frames from 0 to frames_per_clip - 1 ({f - 1})")
        if self.first_clip_motion not in FIRST_CLIP_MOTION:
            raise InputError(f"{label('first_clip_motion')}: {self.first_clip_motion!r}; choose one of "
                             f"{', '.join(FIRST_CLIP_MOTION)}")
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


def speed_per_frame(speed: float | str | np.ndarray | torch.Tensor, frames: int) -> torch.Tensor:
    """A constant, a preset name (:data:`~emo_models.speed_presets.SPEED_PRESETS`) or a per-frame schedule
    -> (frames,) degrees/frame (a short schedule holds its last value)."""
    if isinstance(speed, str):
        speed = speed_value(speed)
    check_values("speed", speed)
    s = torch.as_tensor(np.asarray(speed, dtype=np.float32)).reshape(-1)
    if s.numel() < frames:
        s = torch.cat([s, s[-1:].expand(frames - s.numel())])
    return s[:frames]


def clip_noise(seed: int, first_frame: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Initial noise (float32, CPU) of the clip starting at video frame ``first_frame``: a function of
    (seed, first_frame) alone, so any render of that clip, continued or not, starts from it."""
    state = np.random.SeedSequence([int(seed), int(first_frame)]).generate_state(2, np.uint32)
    generator = torch.Generator("cpu").manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def start_latents(settings: RenderSettings, scheduler, first_frame: int, shape: tuple[int, ...],
                  initial_noise: Callable[[int, tuple[int, ...]], torch.Tensor] | None = None) -> torch.Tensor:
    """The starting latents (1, f, 4, h, w) of the frames from ``first_frame``: their noise (``initial_noise``
    or :func:`clip_noise` of the seed), clamped to +-noise_clamp when set, times the scheduler's sigma."""
    noise = (initial_noise or partial(clip_noise, settings.seed))(first_frame, shape)
    if settings.noise_clamp > 0:
        noise = noise.clamp(-settings.noise_clamp, settings.noise_clamp)
    return noise * scheduler.init_noise_sigma


def _checked_mask(face_mask: torch.Tensor, reference: ReferenceEncoding) -> torch.Tensor:
    """face_mask if it is (1, 1, H, W) on the reference's frame, else a ValueError saying what to give."""
    height, width = reference.image.shape[-2:]
    if face_mask.ndim != 4 or tuple(face_mask.shape[:2]) != (1, 1) or tuple(face_mask.shape[-2:]) != (height, width):
        raise ValueError(f"face_mask: shape {tuple(face_mask.shape)}; expected (1, 1, {height}, {width}), the "
                         "reference's frame (emo_models.face_region.locator_mask builds it)")
    return face_mask


def _clip_windows(audio: AudioEncoding, start: int, frames: int) -> torch.Tensor:
    """Audio windows (frames, 2m+1, L, C) of frames [start, start + frames): a final partial clip reads the
    encoding's padding (Hallo's silence), else repeats the last frame's. Only this span is asked of the
    encoding (long audio is encoded as its clips come)."""
    span = audio.windows(start, min(start + frames, audio.frames + audio.padding))
    if span.shape[0] == frames:
        return span
    return torch.cat([span, span[-1:].expand(frames - span.shape[0], *span.shape[1:])])


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
    e.g. to replay another implementation's noise in a parity check. ``settings.sampler ==
    "context_windows"`` denoises all frames together (one "clip" of F frames for the noise) and then yields
    the decoded frames in clips of f; it cannot continue ``previous_frames``.
    """
    if settings.sampler == "context_windows":
        from .context_windows import render_context_windows

        if previous_frames is not None:
            raise ValueError("frames: the context_windows sampler denoises a whole video at once and cannot continue "
                             "earlier frames; render the whole audio in one run")
        yield from render_context_windows(pipeline, reference, audio, _checked_mask(face_mask, reference), settings,
                                          on_step=on_step, should_stop=should_stop, initial_noise=initial_noise)
        return
    model = pipeline.model
    f, n = settings.frames_per_clip, settings.motion_frames
    (c, h, w), (height, width) = reference.latent.shape[-3:], reference.image.shape[-2:]
    face_mask = _checked_mask(face_mask, reference)
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
            audio_tokens=model.encode_audio(_clip_windows(audio, clip * f, f)[None].to(device, dtype)),
            speed_tokens=model.encode_speed(speeds[span][None].to(device)),
        )
        batch = model.guidance_batch(cond, [drops for _, drops in branches])
        cache = model.clip_cache()  # the clip's constant projections, computed on its first step
        pipeline.release_clip_parts()
        scheduler = make_scheduler(pipeline.config.scheduler, settings.scheduler, settings.steps)
        first_frame = start_frame + clip * f
        latents = start_latents(settings, scheduler, first_frame, (1, f, c, h, w), initial_noise).to(device, dtype)
        for t in scheduler.timesteps:
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"generation cancelled at clip {clip + 1}/{clips}, step {done}")
            x = scheduler.scale_model_input(latents, t).expand(len(branches), -1, -1, -1, -1)
            eps = model.denoise(x, t, batch, cache=cache)
            eps = settings.guidance.combine({name: eps[i:i + 1] for i, (name, _) in enumerate(branches)})
            latents = scheduler.step(eps, t, latents).prev_sample
            done += 1
            if on_step is not None:
                on_step(done, clips * steps_per_clip, latents[0])
        del cache
        frames = pipeline.decode(latents[0])
        keep = min(f, total - clip * f)
        yield RenderedClip(index=clip, start=clip * f, latents=latents[0, :keep], frames=frames[:keep])
        if n and clip + 1 < clips:
            tail = frames[-n:] if tail is None or f >= n else torch.cat([tail, frames])[-n:]
            motion_latents = pipeline.vae_encode(tail)[None]


def render(pipeline: EMOPipeline, reference: ReferenceEncoding, audio: AudioEncoding, face_mask: torch.Tensor,
           settings: RenderSettings, **kwargs) -> Rendered:
    """:func:`render_clips` collected: the whole video's frames and latents (kwargs as there)."""
    return collect(render_clips(pipeline, reference, audio, face_mask, settings, **kwargs))


def collect(clips: Iterable[RenderedClip]) -> Rendered:
    """Clips -> one :class:`Rendered` (the whole video in memory: for short videos and graph work)."""
    clips = list(clips)
    return Rendered(frames=torch.cat([c.frames for c in clips]), latents=torch.cat([c.latents for c in clips]))


@torch.no_grad()
def animate(pipeline: EMOPipeline, image: torch.Tensor, waveform, sample_rate: int, settings: RenderSettings, *,
            crop: str = "center", face_box: FaceBox | tuple | None = None, face_mask: torch.Tensor | None = None,
            width: int | None = None, height: int | None = None, fps: float | None = None, audio_name: str = "audio",
            on_step: OnStep | None = None,
            should_stop: Callable[[], bool] | None = None) -> tuple[AudioEncoding, Iterator[RenderedClip]]:
    """A portrait and a waveform as decoded -> (the audio's encoding, the video's clips as they render).

    image: (1, 3, h, w) in [0, 1] (or what :func:`~emo_models.validation.image_tensor` accepts), any size, fitted to width x height (default: the checkpoint's) by
    ``crop`` (:func:`~emo_models.face_region.frame_portrait`); face_box / face_mask: the face region on
    that image (default: detected, else the checkpoint's face box); waveform: (T,), (C, T) or (B, C, T)
    at ``sample_rate``; fps: default the checkpoint's. This is what ``generate``, ``demo`` and
    :meth:`EMOPipeline.generate` run; the nodes run the same steps one node each.
    """
    config = pipeline.config
    image = image_tensor(image)
    width, height = check_frame_size(config, width, height)
    portrait = frame_portrait(image, width, height, crop=crop, face_box=face_box, detect=config.generation.detect_face)
    reference = encode_portrait(pipeline, portrait)
    mask = face_locator_region(reference, portrait, config, face_mask)
    audio = pipeline.encode_audio(waveform, sample_rate, fps=fps, name=audio_name)
    return audio, render_clips(pipeline, reference, audio, mask, settings, on_step=on_step, should_stop=should_stop)
