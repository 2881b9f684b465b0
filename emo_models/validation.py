"""Inputs checked once, at the boundary, with errors that name the input, the value and the remedy.

Every entry point (CLI, ComfyUI nodes, the Python API) hands tensors and waveforms through these
checks before any model runs; a refusal is an :class:`InputError` (a ``ValueError``). Adapters that
convert media (``emo_models.media``, ``nodes/boundary.py``) raise it too, so "works or raises
InputError" is the whole contract (the property tests check exactly that).

Accepted on purpose rather than refused: audio of any amplitude (wav2vec2 normalises it, so int16
PCM passed as float works the same) and integer sample arrays; masks given as bool or as (H, W),
(1, H, W) or (1, 1, H, W).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

MIN_IMAGE_SIZE = 16
SILENCE_PEAK = 1e-4  # a clip whose absolute peak is below this is refused as silent
MIN_AUDIO_SECONDS = 0.025  # wav2vec2's receptive field: 400 samples at 16 kHz make its first feature


class InputError(ValueError):
    """An input (image, audio, mask, option) the models cannot use; the message says what to give."""


def check_image(image: torch.Tensor, name: str = "image", overshoot: float = 1e-3) -> torch.Tensor:
    """Check that ``image`` is a (B, 3, H, W) float tensor in [0, 1] with H, W >= 16; return it unchanged.

    overshoot: how far outside [0, 1] values may stray (resampling rings a little) before refusal."""
    if not isinstance(image, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor (B, 3, H, W) in [0, 1], got {type(image).__name__}")
    shape = tuple(image.shape)
    if image.ndim != 4 or shape[1] != 3:
        hint = " (a ComfyUI IMAGE is (B, H, W, 3): use image.permute(0, 3, 1, 2))" if shape[-1:] == (3,) else ""
        raise InputError(f"{name}: expected shape (B, 3, H, W), got {shape}{hint}")
    if not image.is_floating_point():
        raise InputError(f"{name}: expected a float tensor in [0, 1], got {image.dtype} (divide uint8 by 255)")
    if image.numel() == 0:
        raise InputError(f"{name}: empty tensor of shape {shape}; give at least one image")
    if min(shape[2:]) < MIN_IMAGE_SIZE:
        raise InputError(f"{name}: {shape[3]}x{shape[2]} pixels is too small; give an image of at least "
                         f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}")
    if not torch.isfinite(image).all():
        raise InputError(f"{name}: contains NaN or inf; check what produced it")
    lo, hi = float(image.min()), float(image.max())
    if lo < -overshoot or hi > 1 + overshoot:
        raise InputError(f"{name}: values span [{lo:.3g}, {hi:.3g}]; expected [0, 1] "
                         "(use from_model_range for [-1, 1] images, divide by 255 for 0..255)")
    return image


def check_portrait(image: torch.Tensor, height: int, width: int, name: str = "image") -> torch.Tensor:
    """A single portrait for generation: (1, 3, height, width) in [0, 1] (see :func:`check_image`)."""
    check_image(image, name)
    if image.shape[0] != 1:
        raise InputError(f"{name}: a batch of {image.shape[0]} images; give one portrait (1, 3, H, W)")
    if tuple(image.shape[-2:]) != (height, width):
        raise InputError(f"{name}: {image.shape[-1]}x{image.shape[-2]} pixels; the video is {width}x{height}: "
                         "fit the portrait first with emo_models.media.fit_image(image, width, height)")
    return image


def size_multiple(config) -> int:
    """Pixels a video's width and height must be a multiple of: one latent cell of the deepest UNet level."""
    return config.vae_scale * 2 ** (len(config.unet["block_out_channels"]) - 1)


def channels_first(waveform, name: str = "audio") -> np.ndarray:
    """(T,), (C, T) or (B, C, T) numpy/torch of any real dtype -> (C, T) float32 numpy (first batch item)."""
    if isinstance(waveform, torch.Tensor):
        if waveform.is_complex():
            raise InputError(f"{name}: complex samples; give real-valued audio")
        waveform = waveform.detach().to("cpu", torch.float32).numpy()
    try:
        wave = np.asarray(waveform, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: expected a waveform array (T,), (C, T) or (B, C, T), got "
                         f"{type(waveform).__name__} ({err})") from None
    if wave.ndim == 3:
        if wave.shape[0] == 0:
            raise InputError(f"{name}: an empty batch {tuple(wave.shape)}; give one clip")
        wave = wave[0]
    elif wave.ndim == 1:
        wave = wave[None]
    elif wave.ndim != 2:
        raise InputError(f"{name}: expected a waveform shaped (T,), (C, T) or (B, C, T), got {tuple(wave.shape)}")
    if wave.shape[0] == 0:
        raise InputError(f"{name}: 0 channels in shape {tuple(wave.shape)}; give at least one channel")
    if wave.shape[0] > 64 and wave.shape[1] <= 64:
        raise InputError(f"{name}: shape {tuple(wave.shape)} looks like (T, C); expected (C, T), transpose the "
                         "waveform (wave.T)")
    return wave


def check_samples(wave: np.ndarray, name: str = "audio") -> np.ndarray:
    """Refuse (C, T) samples that are empty, non-finite or silent; return them unchanged."""
    if wave.shape[-1] == 0:
        raise InputError(f"{name}: empty (0 samples); give a clip with speech or singing")
    finite = np.isfinite(wave)
    if not finite.all():
        raise InputError(f"{name}: {int((~finite).sum())} samples are NaN or inf; re-export or re-decode the clip")
    peak = float(np.abs(wave.mean(axis=0)).max())
    if peak < SILENCE_PEAK:
        raise InputError(f"{name}: silent (peak {peak:.2g}); give a clip with speech or singing")
    return wave


def check_duration(samples: int, sample_rate: int, name: str = "audio") -> None:
    """Refuse audio shorter than :data:`MIN_AUDIO_SECONDS` (too short for the audio encoder)."""
    if samples < math.ceil(MIN_AUDIO_SECONDS * sample_rate):
        raise InputError(f"{name}: {samples} samples at {sample_rate} Hz ({samples / sample_rate * 1000:.3g} ms) is too "
                         f"short; give at least {MIN_AUDIO_SECONDS * 1000:g} ms of speech or singing")


def check_waveform(wave, name: str = "audio", sample_rate: int = 16000) -> np.ndarray:
    """The mono waveform the audio encoder reads: (T,) at the model's ``sample_rate`` -> float32 numpy (T,).

    Refuses other shapes (a (T, 2) or (2, T) stereo array: mix it with
    ``emo_models.media.prepare_waveform(wave, sample_rate)``), NaN/inf, silent audio and audio shorter
    than :data:`MIN_AUDIO_SECONDS`.
    """
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu()
    shape = tuple(getattr(wave, "shape", ()))
    if len(shape) != 1:
        if len(shape) == 2 and 1 in shape:
            hint = " (a single channel: flatten it with wave.reshape(-1))"
        else:
            hint = " (stereo or batched: mix and resample it with emo_models.media.prepare_waveform(wave, rate))"
        raise InputError(f"{name}: expected a mono waveform (T,), got shape {shape}{hint}")
    mono = check_samples(channels_first(wave, name), name)[0]
    check_duration(mono.shape[-1], sample_rate, name)
    return mono


def check_face_mask(mask, height: int, width: int, name: str = "face_mask") -> torch.Tensor:
    """A face-locator mask -> (1, 1, height, width) float32 in [0, 1].

    Accepts (H, W), (1, H, W) or (1, 1, H, W), float in [0, 1] or bool. The mask is drawn on the fitted
    portrait, so it must have the video's size.
    """
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor (1, 1, H, W) in [0, 1], got {type(mask).__name__}")
    shape = tuple(mask.shape)
    if mask.ndim not in (2, 3, 4) or (mask.ndim > 2 and math.prod(shape[:-2]) != 1):
        raise InputError(f"{name}: shape {shape}; expected one mask (H, W) or (1, 1, H, W)")
    if shape[-2:] != (height, width):
        raise InputError(f"{name}: {shape[-1]}x{shape[-2]} pixels; expected the video's {width}x{height} (fit it "
                         "like the portrait, e.g. emo_models.media.fit_image on the mask, or build it with "
                         "emo_models.face_locator.box_mask)")
    mask = mask.to(torch.float32) if mask.dtype == torch.bool or mask.is_floating_point() else None
    if mask is None:
        raise InputError(f"{name}: {shape} of integers; expected float in [0, 1] or bool (divide 0..255 by 255)")
    if not torch.isfinite(mask).all():
        raise InputError(f"{name}: contains NaN or inf; check what produced it")
    if float(mask.min()) < -1e-3 or float(mask.max()) > 1 + 1e-3:
        raise InputError(f"{name}: values span [{float(mask.min()):.3g}, {float(mask.max()):.3g}]; expected "
                         "[0, 1] (divide 0..255 by 255)")
    return mask.reshape(1, 1, height, width).clamp(0, 1)


DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu")


def check_device(name: str, label: str = "device") -> torch.device:
    """``auto`` (the first accelerator, else the CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``xpu`` ->
    a device that exists on this machine; anything else is an :class:`InputError` naming ``label``."""
    choices = "auto, cpu, cuda, cuda:N, mps or xpu"
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InputError(f"{label}: {name!r} is not a device; give {choices}") from None
    if device.type not in DEVICE_KINDS:
        raise InputError(f"{label}: {name!r} is not a device this package runs on; give {choices}")
    available = {"cpu": lambda: 1,
                 "cuda": lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0,
                 "mps": lambda: int(torch.backends.mps.is_available()),
                 "xpu": lambda: torch.xpu.device_count() if hasattr(torch, "xpu") and torch.xpu.is_available() else 0,
                 }[device.type]()
    if available == 0:
        build = f"torch {torch.__version__}" + (", a CPU-only build" if device.type == "cuda" and not torch.version.cuda
                                                 else "")
        raise InputError(f"{label}: {name!r} asked for, but this machine has no usable {device.type} device ({build}); "
                         "use cpu or auto, or install a torch build for your GPU")
    if device.index is not None and device.index >= available:
        raise InputError(f"{label}: {name!r} asked for, but there {'is' if available == 1 else 'are'} only "
                         f"{available} {device.type} device{'s' if available > 1 else ''} (0 to {available - 1})")
    return device


def is_integer(value) -> bool:
    """True for ints and numpy integers, not for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
