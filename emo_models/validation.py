"""Inputs checked once, at the boundary, with errors that name the input, the value and the remedy.

Every entry point (CLI, ComfyUI nodes, the Python API) hands tensors and waveforms through these
checks before any model runs; a refusal is an :class:`InputError` (a ``ValueError``). Adapters that
convert media (``emo_models.media``, ``nodes/boundary.py``) raise it too, so "works or raises
InputError" is the whole contract (the property tests check exactly that).

Accepted on purpose rather than refused: portraits channels-last, unbatched, numpy or uint8 (the dtype
says 0..255; see :func:`image_tensor`); audio of any amplitude (wav2vec2 normalises it, so int16 PCM
works the same) and integer sample arrays; masks as bool, numpy, (H, W), (B, H, W) or (B, 1, H, W), and
at another size of the same aspect ratio (resized).
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


def image_tensor(image, name: str = "image") -> torch.Tensor:
    """One portrait as the Python API takes it -> (1, 3, H, W) float32 in [0, 1].

    Accepted: a torch tensor or numpy array (3, H, W), (1, 3, H, W), or channels-last (H, W, 3) /
    (1, H, W, 3) (a ComfyUI IMAGE, a PIL/numpy picture); float in [0, 1] or uint8 0..255 (divided by
    255: the dtype says its range). Refused (:class:`InputError`): other integer dtypes, floats outside
    [0, 1] (0..255 floats are ambiguous: divide them yourself), a batch of several images, and what
    :func:`check_image` refuses.
    """
    if isinstance(image, np.ndarray):
        if image.dtype == object or image.dtype.kind not in "biuf":
            raise InputError(f"{name}: a numpy array of {image.dtype}; give float in [0, 1] or uint8 pixels")
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor or numpy array (1, 3, H, W) in [0, 1], got "
                         f"{type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim == 4 and image.shape[1] != 3 and image.shape[-1] == 3:
        image = image.permute(0, 3, 1, 2)  # channels-last
    if image.ndim == 4 and image.shape[0] > 1:
        raise InputError(f"{name}: a batch of {image.shape[0]} images; give one portrait (1, 3, H, W)")
    if image.dtype == torch.uint8:
        image = image.to(torch.float32) / 255.0
    elif image.is_floating_point():
        image = image.to(torch.float32)
    else:
        raise InputError(f"{name}: {image.dtype} pixels; give float in [0, 1] or uint8 0..255")
    return check_image(image.contiguous(), name)


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


def check_face_mask(mask, height: int, width: int, name: str = "face_mask") -> torch.Tensor:
    """A face-locator mask drawn on a height x width image -> (B, 1, h, w) float32 in [0, 1].

    Accepts torch or numpy (h, w), (B, h, w) or (B, 1, h, w) (several masks: their union is used), float
    in [0, 1] or bool. Another size of the same aspect ratio (within 2%) is accepted, resized later
    (:meth:`~emo_models.face_region.PortraitFit.mask`); another aspect ratio is refused, as it would
    move the face region.
    """
    if isinstance(mask, np.ndarray) and mask.dtype.kind in "biuf":
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor (1, 1, H, W) in [0, 1], got {type(mask).__name__}")
    shape = tuple(mask.shape)
    if mask.ndim not in (2, 3, 4) or (mask.ndim == 4 and shape[1] != 1) or 0 in shape:
        raise InputError(f"{name}: shape {shape}; expected a mask (H, W), (B, H, W) or (B, 1, H, W)")
    h, w = shape[-2:]
    if abs((w / h) / (width / height) - 1) > 0.02:
        raise InputError(f"{name}: {w}x{h} pixels; it is drawn on the {width}x{height} image, so give it that "
                         "size (or the same aspect ratio)")
    if mask.dtype == torch.bool or mask.is_floating_point():
        mask = mask.to(torch.float32)
    else:
        raise InputError(f"{name}: {shape} of {mask.dtype}; expected float in [0, 1] or bool (divide 0..255 by 255)")
    if not torch.isfinite(mask).all():
        raise InputError(f"{name}: contains NaN or inf; check what produced it")
    if float(mask.min()) < -1e-3 or float(mask.max()) > 1 + 1e-3:
        raise InputError(f"{name}: values span [{float(mask.min()):.3g}, {float(mask.max()):.3g}]; expected "
                         "[0, 1] (divide 0..255 by 255)")
    return mask.reshape(-1, 1, h, w).clamp(0, 1)


def is_integer(value) -> bool:
    """True for ints and numpy integers, not for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
