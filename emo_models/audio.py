"""Audio features: wav2vec2 hidden states of all layers at the video frame rate, and their projection.

``audio_features`` runs the pretrained wav2vec2 once per audio: its convolutional features (50 per
second) are linearly resampled to the video's frame count *before* the transformer (as Hallo does),
and the outputs of every transformer layer are kept → ``(F, L, C)``. ``audio_windows`` stacks each
frame with its ±m neighbours (edge-clamped) → ``(F, 2m+1, L, C)``. :class:`AudioProjection` turns one
frame's window into the tokens the backbone's audio-attention reads.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import EMOConfig


def normalize_waveform(wave: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance, as wav2vec2's feature extractor does. wave: (T,) -> (T,)."""
    return (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)


@torch.no_grad()
def audio_features(wav2vec2: nn.Module, wave: np.ndarray | torch.Tensor, num_frames: int,
                   pad_samples: int = 0) -> torch.Tensor:
    """All transformer-layer outputs of wav2vec2, one row per video frame.

    wave: (T,) mono at the encoder's sample rate (16 kHz) -> (num_frames, L, C), float32 on wav2vec2's
    device. ``pad_samples`` zeros are appended to the normalised waveform first (Hallo pads the audio
    to whole clips this way, which moves the interpolation grid; ``num_frames`` then counts the padded
    frames). Works with transformers 4.x and 5.x (the encoder layers are run one by one).
    """
    if num_frames < 1:
        raise ValueError(f"audio: {num_frames} video frames requested; the clip is too short for one frame")
    param = next(wav2vec2.parameters())
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32)).to(param.device)
    if wave.numel() < 400:
        raise ValueError(f"audio: {wave.numel()} samples is too short for wav2vec2; give at least 25 ms at 16 kHz")
    x = F.pad(normalize_waveform(wave), (0, int(pad_samples)))[None].to(param.dtype)
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
