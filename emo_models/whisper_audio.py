"""Whisper audio features, as EchoMimic feeds them to its denoiser's audio-attention.

``whisper_features`` runs a Whisper encoder (transformers' ``WhisperEncoder``, weights converted from
openai's ``whisper_tiny.pt`` by weights/whisper.py) on 30-s segments of the log-mel spectrogram and
keeps, at 50 Hz, the embedding output and every block's output before the final layer norm
→ ``(T50, L+1, C)``. ``whisper_windows`` gives each video frame the 2·(2m+1) whisper frames around
it (m = 2: frames −4..+5 around ``int(i·50/fps)``, edge-clamped) → ``(F, 2(2m+1), L+1, C)``; the
backbone reads them raw as 50 tokens × 384 (no audio projection). Frame count: EchoMimic's, one
chunk past the audio (:func:`whisper_frame_count`). Input: mono float waveform at 16 kHz
(resampling happens where audio is loaded); no ffmpeg.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
SEGMENT_MEL_FRAMES = 3000  # 30 s
FEATURE_RATE = 50  # whisper encoder frames per second


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> torch.Tensor:
    """Slaney mel filterbank (n_mels, 201) for 16 kHz and n_fft 400, the one openai Whisper ships."""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels))


def log_mel_spectrogram(wave: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Whisper's log-mel spectrogram of a whole clip. wave: (T,) 16 kHz -> (n_mels, T // 160).

    Clamped to 8 (log10) below its maximum over the clip and scaled to about [-1, 1].
    """
    window = torch.hann_window(N_FFT, device=wave.device)
    stft = torch.stft(wave, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[:, :-1].abs() ** 2
    log_spec = torch.clamp(mel_filters(n_mels).to(wave.device) @ power, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def _layer_call(layer: nn.Module):
    """Call a ``WhisperEncoderLayer`` the way this transformers version wants (4.x needs a head mask)."""
    takes_head_mask = "layer_head_mask" in inspect.signature(layer.forward).parameters

    def call(hidden: torch.Tensor) -> torch.Tensor:
        out = layer(hidden, None, layer_head_mask=None) if takes_head_mask else layer(hidden, None)
        return out[0] if isinstance(out, tuple) else out

    return call


def encoder_hidden_states(encoder: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """Embedding output and each block's output (before the final layer norm).

    mel: (b, n_mels, 3000) -> (b, 1500, L+1, C)
    """
    x = F.gelu(encoder.conv1(mel))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)
    hidden = x + encoder.embed_positions.weight[: x.shape[1]].to(x.dtype)
    states = [hidden]
    for layer in encoder.layers:
        hidden = _layer_call(layer)(hidden)
        states.append(hidden)
    return torch.stack(states, dim=2)


@torch.no_grad()
def whisper_features(encoder: nn.Module, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Whisper features at 50 Hz. wave: (T,) mono 16 kHz -> (T // 320, L+1, C), float32 on CPU.

    The log-mel of the whole clip is cut into 30-s segments, each zero-padded (in mel space) to
    3000 frames and encoded on its own; a segment of n mel frames keeps its first n // 2 outputs.
    """
    param = next(encoder.parameters())
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    if wave.ndim != 1 or wave.numel() < 2 * HOP_LENGTH * 2:
        raise ValueError(f"audio: {tuple(wave.shape)} samples; give a mono clip of at least 40 ms at 16 kHz")
    mel = log_mel_spectrogram(wave, encoder.config.num_mel_bins)
    pieces = []
    for start in range(0, mel.shape[1], SEGMENT_MEL_FRAMES):
        segment = mel[:, start:start + SEGMENT_MEL_FRAMES]
        keep = segment.shape[1] // 2
        segment = F.pad(segment, (0, SEGMENT_MEL_FRAMES - segment.shape[1]))
        states = encoder_hidden_states(encoder, segment[None].to(param.device, param.dtype))
        pieces.append(states[0, :keep].float().cpu())
    return torch.cat(pieces)


def whisper_frame_count(feature_frames: int, fps: float) -> int:
    """Video frames EchoMimic makes for ``feature_frames`` 50-Hz features: chunks are taken for
    i = 0, 1, … up to and including the first i with int(i·50/fps) > feature_frames."""
    step = FEATURE_RATE / fps  # EchoMimic's multiplier, and its float rounding
    i = 0
    while int(i * step) <= feature_frames:
        i += 1
    return i + 1


def whisper_windows(features: torch.Tensor, fps: float, window: int = 2, frames: int | None = None) -> torch.Tensor:
    """Whisper frames around each video frame: for frame i, centre c = int(i·50/fps), indices
    c − 2m … c + 2m + 1, clamped to the clip. features: (T50, L, C) -> (F, 2(2m+1), L, C).

    frames: F (default :func:`whisper_frame_count`).
    """
    if not fps > 0:
        raise ValueError(f"fps: {fps}; give a positive frame rate (24 for EchoMimic)")
    count = whisper_frame_count(features.shape[0], fps) if frames is None else frames
    centre = torch.tensor([int(i * FEATURE_RATE / fps) for i in range(count)])
    offsets = torch.arange(-2 * window, 2 * (window + 1))
    index = (centre[:, None] + offsets[None]).clamp(0, features.shape[0] - 1)
    return features[index]


def build_whisper_encoder(config: dict) -> nn.Module:
    """A randomly initialised transformers ``WhisperEncoder`` of the configured size (eval mode).

    config: ``WhisperConfig`` kwargs (d_model, encoder_layers, encoder_attention_heads, ...).
    """
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder(WhisperConfig(**config)).eval()
