"""ComfyUI types in and out: IMAGE (B, H, W, 3), MASK (B, H, W), AUDIO {"waveform": (B, C, T), ...}.

Conversions happen here and nowhere else; each check names the node input and says what to do.
"""

from __future__ import annotations

import torch

from . import comfy_bridge


def image_to_model(image, name: str = "image") -> torch.Tensor:
    """IMAGE (B, H, W, 3) in [0, 1] -> (B, 3, H, W) float32, refusing empty or misshapen batches."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name}: expected an IMAGE tensor (B, H, W, 3), got {type(image).__name__}; "
                         "connect an IMAGE output such as Load Image")
    if image.ndim == 4 and image.shape[0] == 0:
        raise ValueError(f"{name}: empty IMAGE batch (0 images); connect an IMAGE output with at least one picture")
    if image.ndim != 4 or image.shape[-1] != 3 or min(image.shape[1:3]) < 1:
        hint = " (that looks like a MASK: use Convert Mask to Image)" if image.ndim == 3 else ""
        raise ValueError(f"{name}: shape {tuple(image.shape)} is not an IMAGE (B, H, W, 3) with RGB channels"
                         f"{hint}; connect an IMAGE output")
    return image.to(torch.float32).clamp(0, 1).permute(0, 3, 1, 2).contiguous()


def frames_to_image(frames: torch.Tensor) -> torch.Tensor:
    """Frames (F, 3, H, W) in [0, 1] -> IMAGE (F, H, W, 3) float32 on ComfyUI's intermediate device."""
    return frames.permute(0, 2, 3, 1).to(comfy_bridge.intermediate_device(), torch.float32).contiguous()


def mask_to_model(mask, name: str = "mask") -> torch.Tensor:
    """MASK (B, H, W) or (H, W) -> (B, 1, H, W) float32 in [0, 1]."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3) or mask.numel() == 0:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name}: {shape} is not a MASK (B, H, W); connect a MASK output such as Face Locator Mask")
    mask = mask if mask.ndim == 3 else mask[None]
    return mask.to(torch.float32).clamp(0, 1)[:, None]


def audio_to_waveform(audio, name: str = "audio", silence_ok: bool = False) -> tuple[torch.Tensor, int]:
    """AUDIO -> (waveform (B, C, T) float32 on CPU, sample_rate), refusing empty (and all-zero) audio."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError(f"{name}: expected AUDIO (a waveform and a sample rate), got {type(audio).__name__}; "
                         "connect Load Audio or another AUDIO output")
    wave = torch.as_tensor(audio["waveform"]).detach().to("cpu", torch.float32)
    if wave.ndim == 2:
        wave = wave[None]
    if wave.ndim != 3:
        raise ValueError(f"{name}: waveform shape {tuple(wave.shape)}; expected (batch, channels, samples)")
    rate = int(audio["sample_rate"])
    if wave.shape[-1] == 0 or wave.shape[1] == 0:
        raise ValueError(f"{name}: zero length (0 samples); connect a clip with speech or singing")
    if rate <= 0:
        raise ValueError(f"{name}: sample rate {rate}; expected a positive rate such as 16000 or 44100")
    if not bool(torch.isfinite(wave).all()):
        raise ValueError(f"{name}: holds NaN or inf samples; re-decode or re-export the clip")
    if not silence_ok and not bool(wave.abs().amax() > 0):
        raise ValueError(f"{name}: all {wave.shape[-1]} samples are zero (silence); connect a clip with speech "
                         "or singing")
    return wave, rate
