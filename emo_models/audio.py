"""Audio features: wav2vec2 hidden states of all layers at the video frame rate, and their projection.

``audio_features`` runs the pretrained wav2vec2 once per audio: its convolutional features (50 per
second) are linearly resampled to the video's frame count *before* the transformer (as Hallo does),
and the outputs of every transformer layer are kept → ``(F, L, C)``. ``audio_windows`` stacks each
frame with its ±m neighbours (edge-clamped) → ``(F, 2m+1, L, C)``. :class:`AudioProjection` turns one
frame's window into the tokens the backbone's audio-attention reads.

One audio-encoder interface for every family: :func:`build_audio_encoder` and :func:`encode_audio_windows`
dispatch on ``config.audio_encoder_type`` (``wav2vec2`` here, ``whisper`` in whisper_audio.py), and
:func:`build_audio_projection` gives EMO's projection or raw window tokens (EchoMimic).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange
from torch import nn

from .clip_cache import constant_rows, cross_attention, project_keys_values
from .config import EMOConfig


def normalize_waveform(wave: torch.Tensor, stats: tuple[float, float] | None = None) -> torch.Tensor:
    """Zero mean, unit variance, as wav2vec2's feature extractor does. wave: (T,) -> (T,).

    stats: (mean, variance) to use instead of ``wave``'s own (a window of a longer audio is normalised
    with the whole audio's, so every window hears the same loudness)."""
    if stats is None:
        return (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
    mean, var = stats
    return (wave - mean) / float(np.sqrt(var + 1e-7))


@torch.no_grad()
def audio_features(wav2vec2: nn.Module, wave: np.ndarray | torch.Tensor, num_frames: int,
                   stats: tuple[float, float] | None = None, pad_samples: int = 0) -> torch.Tensor:
    """All transformer-layer outputs of wav2vec2, one row per video frame, in one pass.

    wave: (T,) mono at the encoder's sample rate (16 kHz) -> (num_frames, L, C), float32 on wav2vec2's
    device. stats: see :func:`normalize_waveform`. ``pad_samples`` zeros are appended to the normalised
    waveform (Hallo pads the audio to whole clips this way, which moves the interpolation grid;
    ``num_frames`` then counts the padded frames). Works with transformers 4.x and 5.x (the encoder
    layers are run one by one). Long audio is encoded in windows (:mod:`emo_models.audio_encoding`).
    """
    if num_frames < 1:
        raise ValueError(f"audio: {num_frames} video frames requested; the clip is too short for one frame")
    param = next(wav2vec2.parameters())
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32)).to(param.device)
    if wave.numel() < 400:
        raise ValueError(f"audio: {wave.numel()} samples is too short for wav2vec2; give at least 25 ms at 16 kHz")
    x = F.pad(normalize_waveform(wave, stats), (0, int(pad_samples)))[None].to(param.dtype)
    cnn = wav2vec2.feature_extractor(x)  # (1, C_cnn, T50)
    cnn = F.interpolate(cnn.float(), size=num_frames, mode="linear", align_corners=True).to(param.dtype)
    hidden, _ = wav2vec2.feature_projection(cnn.transpose(1, 2))
    encoder = wav2vec2.encoder
    hidden = hidden + encoder.pos_conv_embed(hidden)
    stable = bool(getattr(wav2vec2.config, "do_stable_layer_norm", False))
    if not stable:
        hidden = encoder.layer_norm(hidden)
    layers = []
    for layer in encoder.layers:
        out = layer(hidden)
        hidden = out[0] if isinstance(out, tuple) else out
        layers.append(hidden)
    if stable:
        layers[-1] = encoder.layer_norm(layers[-1])
    return torch.stack(layers, dim=2)[0].float()


def conv_geometry(wav2vec2: nn.Module) -> tuple[int, int]:
    """(stride, receptive field) in samples of wav2vec2's convolutional feature extractor (320, 400 for base)."""
    config = wav2vec2.config
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field


def audio_windows(features: torch.Tensor, window: int) -> torch.Tensor:
    """Stack every frame with its ±window neighbours, clamped at the edges.

    features: (F, L, C) -> (F, 2·window+1, L, C)
    """
    frames = features.shape[0]
    offsets = torch.arange(-window, window + 1, device=features.device)
    index = (torch.arange(frames, device=features.device)[:, None] + offsets[None]).clamp(0, frames - 1)
    return features[index]


class AudioProjection(nn.Module):
    """One frame's audio window → a few audio tokens (Hallo's ``audioproj`` layout).

    windows: (..., 2m+1, L, C) -> tokens (..., K, D), D = the audio-attention width.
    """

    def __init__(self, config: EMOConfig):
        super().__init__()
        in_dim = (2 * config.audio_window + 1) * config.audio_layers * config.audio_channels
        self.tokens, self.dim = config.audio_tokens, config.audio_token_dim
        self.proj1 = nn.Linear(in_dim, config.audio_hidden)
        self.proj2 = nn.Linear(config.audio_hidden, config.audio_hidden)
        self.proj3 = nn.Linear(config.audio_hidden, self.tokens * self.dim)
        self.norm = nn.LayerNorm(self.dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        lead = windows.shape[:-3]
        x = windows.reshape(*lead, -1).to(self.proj1.weight.dtype)
        x = self.proj3(F.relu(self.proj2(F.relu(self.proj1(x)))))
        return self.norm(rearrange(x, "... (k d) -> ... k d", k=self.tokens))


def build_wav2vec2(config: EMOConfig) -> nn.Module:
    """A randomly initialised wav2vec2 of the configured size (real weights come from weights/)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    return Wav2Vec2Model(Wav2Vec2Config(**config.audio_encoder)).eval()


class RawAudioTokens(nn.Module):
    """No projection: a frame's window of encoder states is its tokens (EchoMimic).

    windows: (..., W, L, C) -> tokens (..., W·L, C), window-major as EchoMimic's ``reshape(-1, 384)``.
    """

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return rearrange(windows, "... w l c -> ... (w l) c")


class AudioAttnProcessor(AttnProcessor2_0):
    """Audio-attention (the backbone's ``attn2``): its output multiplied by ``scale``, and with the clip's
    cache its keys/values of the audio tokens projected on the clip's first step only, and the output of
    frames whose audio tokens are all equal (a guidance branch without audio: zero tokens), which does
    not depend on the frame, computed then too.

    hidden: (b·f, hw, c); audio tokens: (b·f, K, D) -> scale · attention (b·f, hw, c). ``holder.cache``
    is the :class:`~emo_models.clip_cache.ClipCache` of the denoise call in progress (set by the model);
    without one (or with an attention mask) this is diffusers' ``AttnProcessor2_0`` times ``scale``.
    """

    def __init__(self, holder, scale: float = 1.0):
        super().__init__()
        self.holder = holder
        self.scale = float(scale)

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, *args, **kwargs) -> torch.Tensor:
        cache = self.holder.cache
        if cache is None or encoder_hidden_states is None or attention_mask is not None:
            out = super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        else:
            keys, values = cache.memo(attn, "context", (encoder_hidden_states,),
                                      lambda: project_keys_values(attn, encoder_hidden_states))
            constant = cache.memo(attn, "constant rows", (encoder_hidden_states,),
                                  lambda: constant_rows(attn, encoder_hidden_states, values))
            out = cross_attention(attn, hidden_states, keys, values, constant)
        return out if self.scale == 1.0 else out * self.scale


def install_audio_attention(backbone: nn.Module, holder, scale: float) -> None:
    """Put an :class:`AudioAttnProcessor` (reading ``holder.cache``, output times ``scale``) on every
    ``attn2`` of the backbone."""
    backbone.set_attn_processor({name: AudioAttnProcessor(holder, scale) if name.endswith("attn2.processor")
                                 else current for name, current in backbone.attn_processors.items()})


def build_audio_projection(config: EMOConfig) -> nn.Module:
    """EMO's :class:`AudioProjection` (``audio_projection="mlp"``) or :class:`RawAudioTokens` (``"none"``)."""
    if config.audio_projection == "none":
        return RawAudioTokens()
    if config.audio_projection != "mlp":
        raise ValueError(f"config: audio_projection {config.audio_projection!r}; expected 'mlp' or 'none'")
    return AudioProjection(config)


def build_audio_encoder(config: EMOConfig) -> nn.Module:
    """A randomly initialised audio encoder of the configured type and size (real weights come from weights/)."""
    if config.audio_encoder_type == "whisper":
        from .whisper_audio import build_whisper_encoder

        return build_whisper_encoder(config.audio_encoder)
    if config.audio_encoder_type != "wav2vec2":
        raise ValueError(f"config: audio_encoder_type {config.audio_encoder_type!r}; expected 'wav2vec2' or 'whisper'")
    return build_wav2vec2(config)


def settle_audio_encoder(encoder: nn.Module, config: EMOConfig) -> nn.Module:
    """The audio encoder at the precision it computes in, whatever its weights were stored in: Whisper in
    float32 (EchoMimic builds openai's model in float32 and copies the fp16 ``whisper_tiny.pt`` into it),
    wav2vec2 as its file stores it. Every loader calls this once the weights are in."""
    return encoder.float() if config.audio_encoder_type == "whisper" else encoder


def encode_audio_windows(config: EMOConfig, encoder: nn.Module, wave: np.ndarray, fps: float,
                         frames: int) -> torch.Tensor:
    """Per-video-frame audio windows. wave: (T,) mono at ``config.audio_sample_rate`` -> (F, W, L, C).

    frames: F, the caller's frame count (:meth:`~emo_models.pipeline.EMOPipeline.count_frames`; an
    EchoMimic checkpoint counts with ``frame_rounding="whisper"``, a frame or two past the audio).
    """
    if config.audio_encoder_type == "whisper":
        from .whisper_audio import whisper_features, whisper_windows

        return whisper_windows(whisper_features(encoder, wave), fps, config.audio_window, frames=frames)
    return audio_windows(audio_features(encoder, wave, frames), config.audio_window)
