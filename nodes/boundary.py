"""ComfyUI types in and out: IMAGE (B, H, W, 3), MASK (B, H, W), AUDIO {"waveform": (B, C, T), ...}.

Conversions happen here and nowhere else; each check names the node input and says what to do, and
every refusal is an :class:`~emo_models.validation.InputError`. Accepted on purpose: IMAGE and MASK
values overshooting [0, 1] by up to :data:`OVERSHOOT` (bicubic resizes do that) are clamped; more than
that (0..255 data) is refused.
"""

from __future__ import annotations

import math

import torch

from emo_models.validation import InputError, check_image

from . import comfy_bridge

OVERSHOOT = 0.1


def image_to_model(image, name: str = "image") -> torch.Tensor:
    """IMAGE (B, H, W, 3) in [0, 1] -> (B, 3, H, W) float32, refusing empty or misshapen batches."""
    if not isinstance(image, torch.Tensor):
        raise InputError(f"{name}: expected an IMAGE tensor (B, H, W, 3), got {type(image).__name__}; "
                         "connect an IMAGE output such as Load Image")
    if image.ndim == 4 and image.shape[0] == 0:
        raise InputError(f"{name}: empty IMAGE batch (0 images); connect an IMAGE output with at least one picture")
    if image.ndim != 4 or image.shape[-1] != 3 or min(image.shape[1:3]) < 1:
        hint = " (that looks like a MASK: use Convert Mask to Image)" if image.ndim == 3 else ""
        raise InputError(f"{name}: shape {tuple(image.shape)} is not an IMAGE (B, H, W, 3) with RGB channels"
                         f"{hint}; connect an IMAGE output")
    if image.is_complex() or image.dtype == torch.bool:
        raise InputError(f"{name}: {image.dtype} values; an IMAGE holds float32 in [0, 1]")
    pixels = image.to(torch.float32).permute(0, 3, 1, 2)
    check_image(pixels, name, overshoot=OVERSHOOT)
    return pixels.clamp(0, 1).contiguous()


def frames_to_image(frames: torch.Tensor) -> torch.Tensor:
    """Frames (F, 3, H, W) in [0, 1] -> IMAGE (F, H, W, 3) float32 on ComfyUI's intermediate device."""
    return frames.permute(0, 2, 3, 1).to(comfy_bridge.intermediate_device(), torch.float32).contiguous()


def mask_to_model(mask, name: str = "mask") -> torch.Tensor:
    """MASK (B, H, W) or (H, W) -> (B, 1, H, W) float32 in [0, 1]."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3) or mask.numel() == 0 or mask.is_complex():
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"{name}: {shape} is not a MASK (B, H, W); connect a MASK output such as Face Locator Mask")
    mask = (mask if mask.ndim == 3 else mask[None]).to(torch.float32)
    if not bool(torch.isfinite(mask).all()):
        raise InputError(f"{name}: contains NaN or inf; check the node that made it")
    lo, hi = float(mask.min()), float(mask.max())
    if lo < -OVERSHOOT or hi > 1 + OVERSHOOT:
        raise InputError(f"{name}: values span [{lo:.3g}, {hi:.3g}]; a MASK holds [0, 1]")
    return mask.clamp(0, 1)[:, None]


def audio_to_waveform(audio, name: str = "audio", silence_ok: bool = False) -> tuple[torch.Tensor, int]:
    """AUDIO -> (waveform (B, C, T) float32 on CPU, sample_rate), refusing empty (and all-zero) audio."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(f"{name}: expected AUDIO (a waveform and a sample rate), got {type(audio).__name__}; "
                         "connect Load Audio or another AUDIO output")
    try:
        wave = torch.as_tensor(audio["waveform"]).detach().to("cpu", torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"{name}: the waveform is not an array of samples ({err}); connect an AUDIO output") from None
    if wave.ndim == 2:
        wave = wave[None]
    if wave.ndim != 3:
        raise InputError(f"{name}: waveform shape {tuple(wave.shape)}; expected (batch, channels, samples)")
    rate = audio["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate != int(rate):
        raise InputError(f"{name}: sample rate {rate!r}; expected a whole number of Hz such as 16000 or 44100")
    rate = int(rate)
    if wave.shape[-1] == 0 or wave.shape[1] == 0 or wave.shape[0] == 0:
        raise InputError(f"{name}: zero length (0 samples); connect a clip with speech or singing")
    if rate <= 0:
        raise InputError(f"{name}: sample rate {rate}; expected a positive rate such as 16000 or 44100")
    if not bool(torch.isfinite(wave).all()):
        raise InputError(f"{name}: holds NaN or inf samples; re-decode or re-export the clip")
    if not silence_ok and not bool(wave.abs().amax() > 0):
        raise InputError(f"{name}: all {wave.shape[-1]} samples are zero (silence); connect a clip with speech "
                         "or singing")
    return wave, rate
