"""The EMO model with its VAE and wav2vec2, and the encoders that run once per video or per audio.

:class:`EMOPipeline` holds the parts. Work is split where it is done once: ``encode_reference`` (VAE +
ReferenceNet, once per video), ``encode_audio`` (wav2vec2, once per audio), ``decode`` (VAE, in
slices). The clip loop lives in :mod:`emo_models.render`; ``generate`` is a convenience over it.
This file knows nothing of ComfyUI; progress and cancel are callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .audio import encode_audio_windows
from .audio_encoding import AudioEncoding, HeldWindows, encode_audio
from .audio_modules import RegionMasks
from .config import EMOConfig
from .media_audio import frame_count, prepare_waveform
from .model import STEP_PARTS, EMOModel
from .options import check_option
from .residency import release_pages


class GenerationCancelled(RuntimeError):
    """Raised when ``should_stop()`` returns True; the models are left exactly as they were."""


@dataclass(frozen=True)
class ReferenceEncoding:
    """A reference portrait, encoded once. latent: (1, 4, h, w); features: attn1 name -> (1, hw, c).

    identity: (1, K, D) identity tokens and regions: the audio modules' full/face/lip masks, for models
    that read them (Hallo's: see :mod:`emo_models.families.hallo`), else None; locator: (1, 1, H, W) the
    face-locator mask found with them (used when no face mask is given), else None.
    """

    latent: torch.Tensor
    features: dict[str, torch.Tensor]
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], at the model's size
    identity: torch.Tensor | None = None
    regions: RegionMasks | None = None
    locator: torch.Tensor | None = None


class EMOPipeline:
    """The EMO model with its VAE and wav2vec2, on one device and dtype."""

    def __init__(self, model: EMOModel, vae, audio_encoder, config: EMOConfig | None = None):
        self.model, self.vae, self.audio_encoder = model.eval(), vae.eval(), audio_encoder.eval()
        self.config = config or model.config
        self.face_analysis_folders: list = []  # where a release's face-analysis files are (Hallo's loader sets it)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device=None, dtype=None) -> EMOPipeline:
        """Move every part; wav2vec2 keeps its dtype (float32 unless its file says otherwise)."""
        self.model.to(device=device, dtype=dtype)
        # torch's own Module.to: diffusers' override warns about float32-only modules on every dtype cast,
        # also for models that have none (diffusers 0.42), a notice users cannot act on
        torch.nn.Module.to(self.vae, device=device, dtype=dtype)
        self.audio_encoder.to(device=device)
        return self

    def release_clip_parts(self) -> int:
        """Before a clip's denoising steps: every part but those the steps read (:data:`~emo_models.model.STEP_PARTS`)
        hands back its weights' resident pages (:func:`~emo_models.residency.release_pages`: file-mapped CPU
        weights only, values unchanged, read back on their next use) -> bytes advised. At full size on the CPU
        that is the VAE, audio encoder and ReferenceNet, ~4 GB, for the whole step loop."""
        clip_parts = [module for name, module in self.model.named_children() if name not in STEP_PARTS]
        return release_pages(self.vae, self.audio_encoder, *clip_parts)

    # ---- once per video / per audio ----------------------------------------------------------------
    @torch.no_grad()
    def vae_encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: (b, 3, H, W) in [0, 1] -> latents (b, 4, H/8, W/8), the distribution's mean (deterministic).

        The input is made contiguous (NCHW) first: convolutions on another memory layout of the same values
        (decoded frames come back channels-last) round differently, and frames must encode the same however
        they travelled (IMAGE round trips included).
        Full-size frames go through the encoder in slices (:func:`vae_slice_frames`).
        """
        latents = []
        for chunk in images.split(vae_slice_frames(*images.shape[-2:])):
            x = (chunk * 2 - 1).to(self.device, self.dtype).contiguous()
            latents.append(self.vae.encode(x).latent_dist.mode() * self.vae.config.scaling_factor)
        return torch.cat(latents)

    @torch.no_grad()
    def encode_reference(self, image: torch.Tensor, identity: torch.Tensor | None = None,
                         regions: RegionMasks | None = None) -> ReferenceEncoding:
        """image: (1, 3, H, W) in [0, 1] at the model's size -> latent + ReferenceNet features (one run).

        identity: (1, 512) face-recognition embedding and regions: full/face/lip masks, required by
        models with identity tokens / audio modules (Hallo; ``families.hallo.face_conditions`` makes both).
        """
        h, w = image.shape[-2:]
        scale = self.config.vae_scale * 2 ** (len(self.config.unet["block_out_channels"]) - 1)
        if h % scale or w % scale:
            raise ValueError(f"image: {w}x{h} pixels; the model needs width and height multiples of {scale}")
        model = self.model
        if (identity is None) != (model.identity_projection is None) or (regions is None) != (model.audio_modules is None):
            raise ValueError("reference: this model reads identity tokens and region masks (Hallo's); give the face "
                             "embedding and masks (emo_models.families.hallo.face_conditions)" if identity is None else
                             "reference: this model has no identity tokens or region masks; give neither")
        latent = self.vae_encode(image)
        tokens = None if identity is None else model.encode_identity(identity.to(self.device, self.dtype))
        return ReferenceEncoding(latent=latent, features=model.encode_reference(latent, tokens), image=image,
                                 identity=tokens, regions=regions)

    def count_frames(self, samples: int, sample_rate: int, fps: float | None = None) -> tuple[int, float]:
        """(frames, fps) of ``samples`` audio samples at ``sample_rate``: fps defaults to the checkpoint's, the
        count follows its rounding (:func:`~emo_models.media_audio.frame_count`). What every entry point counts."""
        fps = self.config.fps if fps is None else check_option("fps", fps)
        return frame_count(int(samples), sample_rate, fps, self.config.generation.frame_rounding), float(fps)

    @torch.no_grad()
    def encode_audio(self, waveform, sample_rate: int, *, fps: float | None = None, name: str = "audio") -> AudioEncoding:
        """waveform: (T,), (C, T) or (B, C, T) at ``sample_rate``, as decoded -> its AudioEncoding, F frames
        whose windows (k, 2m+1, L, C) are given span by span.

        F is :meth:`count_frames` of the waveform as given (before mixing and resampling to the encoder's
        rate); fps: default the checkpoint's. ``name`` labels errors. Audio longer than
        :data:`~emo_models.audio_encoding.ONE_PASS_SECONDS` is encoded in windows as the clips ask for them.
        """
        wave = prepare_waveform(waveform, sample_rate, self.config.audio_sample_rate, name=name)
        samples = int(np.shape(waveform)[-1])  # counted as given (prepare_waveform accepted its layout)
        frames, fps = self.count_frames(samples, sample_rate, fps)
        if self.config.audio_encoder_type == "whisper":  # EchoMimic: windows of 50 Hz frames, held whole
            windows = encode_audio_windows(self.config, self.audio_encoder, wave, fps, frames)
            return AudioEncoding(HeldWindows(windows), self.config.audio_window, fps, samples / sample_rate)
        padding = 0
        if self.config.generation.audio_padding == "clips":  # Hallo: silence to whole clips before wav2vec2
            padding = -frames % self.config.frames_per_clip
        return encode_audio(self.audio_encoder, wave, frames, fps, self.config.audio_window, samples / sample_rate,
                            sample_rate=self.config.audio_sample_rate, padding=padding)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, slice_size: int | None = None) -> torch.Tensor:
        """latents: (F, 4, h, w) -> frames (F, 3, H, W) in [0, 1], float32 on CPU, decoded in slices of
        ``slice_size`` frames (default: up to 4, :func:`vae_slice_frames` of the frame size)."""
        frames = []
        scale = self.config.vae_scale
        for chunk in latents.split(slice_size or vae_slice_frames(*(n * scale for n in latents.shape[-2:]), most=4)):
            x = self.vae.decode(chunk.to(self.device, self.dtype) / self.vae.config.scaling_factor).sample
            frames.append(((x.float() + 1) / 2).clamp(0, 1).cpu().contiguous())
        return torch.cat(frames)

    def generate(self, image: torch.Tensor, waveform, sample_rate: int | None = None, *, fps: float | None = None,
                 crop: str = "center", face_box=None, face_mask: torch.Tensor | None = None, **settings) -> torch.Tensor:
        """image: (1, 3, h, w) in [0, 1] (fitted to the model's size by ``crop``); waveform: (T,) or (C, T) at
        ``sample_rate`` (default: the model's 16 kHz) -> frames (F, 3, H, W) in [0, 1], F = the audio's frames.

        face_box (a pixel box or :class:`~emo_models.face_region.FaceBox`) / face_mask (B, 1, h, w): the face
        region on ``image``; default: the face found in it, else the checkpoint's face box. settings: overrides
        of the checkpoint's preset (:meth:`emo_models.render.RenderSettings.from_config`) and the callbacks
        ``on_step``, ``should_stop``. The whole video is returned: for long audio stream
        :func:`emo_models.render.animate` instead.
        """
        from .render import RenderSettings, animate

        callbacks = {k: settings.pop(k) for k in ("on_step", "should_stop") if k in settings}
        _, clips = animate(self, image, waveform, self.config.audio_sample_rate if sample_rate is None else sample_rate,
                           RenderSettings.from_config(self.config, **settings), crop=crop, face_box=face_box,
                           face_mask=face_mask, fps=fps, **callbacks)
        return torch.cat([clip.frames for clip in clips])


def vae_slice_frames(height: int, width: int, most: int | None = None, pixels: int = 4 * 256 * 256) -> int:
    """Frames the VAE encodes or decodes per call at ``height`` x ``width`` pixels: as many as ``pixels``
    allows (at least one, at most ``most``), so its full-resolution activations stay near 0.5 GB per tensor
    (512x512: one frame per call; four would add ~1.5 GB to a full-size generate's peak)."""
    fit = max(1, pixels // (height * width))
    return fit if most is None else min(most, fit)
