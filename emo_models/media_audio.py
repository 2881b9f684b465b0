"""Audio in: decode any speech or singing file to mono float32, check it, trim it, count its frames.

Decoding tries soundfile (wav/flac/ogg/mp3), then librosa, then PyAV (mp4/m4a/webm/... containers);
resampling is soxr's, as in librosa. Everything returns a mono ``(T,)`` float32 numpy array; loudness is
judged by :func:`prepare_waveform`, not by the loaders, so data preparation can read any file.
"""

from __future__ import annotations

import math
import os
import warnings
from fractions import Fraction

import av
import librosa
import numpy as np
import soundfile
import soxr
import torch

SILENCE_PEAK = 1e-4  # a clip whose absolute peak is below this is refused as silent


def decode_audio_stream(container: av.container.InputContainer) -> tuple[np.ndarray, int] | None:
    """The first audio stream of an open PyAV container as ``((C, T) float32, sample_rate)``, or None."""
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format="fltp")  # planar float, channel layout and rate kept
    chunks = []
    for frame in container.decode(stream):
        chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    if not chunks:
        return np.zeros((1, 0), np.float32), int(stream.rate)
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), int(stream.rate)


def _decode(path: str) -> tuple[np.ndarray, int]:
    """Decode ``path`` to ``((C, T) float32, rate)`` with soundfile, librosa, then PyAV."""
    errors = []
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (T, C)
        return data.T, int(rate)
    except Exception as e:  # any decoder failure: try the next decoder
        errors.append(f"soundfile: {e}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns when it falls back to audioread
            data, rate = librosa.load(path, sr=None, mono=False, dtype=np.float32)
        return np.atleast_2d(data), int(rate)
    except Exception as e:
        errors.append(f"librosa: {e}")
    try:
        with av.open(path) as container:
            decoded = decode_audio_stream(container)
        if decoded is None:
            raise ValueError("the file has no audio stream")
        return decoded
    except Exception as e:
        errors.append(f"PyAV: {e}")
    raise ValueError(
        f"audio: could not decode {path} ({'; '.join(errors)}); give a wav, flac, ogg, mp3 or m4a file"
    )


def resample(wave: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Resample float32 audio along the last axis: (..., T) -> (..., T').

    soxr "HQ", the resampler librosa uses by default, called directly (librosa's first call costs
    seconds of lazy imports).
    """
    if sample_rate == target_rate:
        return wave
    flat = np.ascontiguousarray(wave.reshape(-1, wave.shape[-1]).T, dtype=np.float32)  # (T, channels)
    out = soxr.resample(flat, sample_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(out.T).reshape(*wave.shape[:-1], -1)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode an audio (or video) file as it is: ``((C, T) float32, sample rate)``, no mixing or resampling.

    path: wav/flac/ogg/mp3 (soundfile), anything librosa reads, or a container PyAV reads (mp4, m4a,
    webm, mkv, ...). Frame counts are taken from this (:func:`frame_count`); loudness is not checked
    here; :func:`prepare_waveform` does that.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"audio: {path} does not exist or is not a file; give the path of an audio file")
    data, rate = _decode(path)
    if data.shape[-1] == 0:
        raise ValueError(f"audio: {path} decodes to 0 samples; give a clip with speech or singing")
    return data, rate


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode an audio (or video) file (see :func:`read_audio`) to mono float32 ``(T,)`` at ``sample_rate``.

    All channels are averaged. Loudness is not checked here; use :func:`prepare_waveform` before generating.
    """
    if sample_rate <= 0:
        raise ValueError(f"audio: sample_rate {sample_rate} must be positive, e.g. 16000")
    data, rate = read_audio(path)
    return resample(data.mean(axis=0), rate, sample_rate)


def _as_channels_first(waveform: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """(T,), (C, T) or (B, C, T) numpy/torch -> (C, T) float32 numpy (first batch item)."""
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().to("cpu", torch.float32).numpy()
    wave = np.asarray(waveform, dtype=np.float32)
    if wave.ndim == 3:
        wave = wave[0]
    elif wave.ndim == 1:
        wave = wave[None]
    elif wave.ndim != 2:
        raise ValueError(
            f"{name}: expected a waveform shaped (T,), (C, T) or (B, C, T), got {tuple(wave.shape)}"
        )
    if wave.shape[0] > 64 and wave.shape[1] <= 64:
        raise ValueError(
            f"{name}: shape {tuple(wave.shape)} looks like (T, C); expected (C, T), transpose the waveform"
        )
    return wave


def all_finite(wave: np.ndarray, chunk: int = 1 << 20) -> bool:
    """True when no sample of (..., T) ``wave`` is NaN or inf, checked in chunks (no whole-audio temporary)."""
    return all(np.isfinite(wave[..., i:i + chunk]).all() for i in range(0, wave.shape[-1], chunk))


def prepare_waveform(
    waveform: np.ndarray | torch.Tensor, sample_rate: int, target_rate: int = 16000, name: str = "audio"
) -> np.ndarray:
    """Check a waveform and turn it into the mono ``(T,)`` float32 the audio encoder reads.

    waveform: (T,), (C, T) or (B, C, T) (ComfyUI AUDIO; the first batch item is used), numpy or torch,
    at ``sample_rate``. Channels are averaged, then resampled to ``target_rate``. Refuses (ValueError
    naming ``name``) a non-positive rate, 0 samples, NaN/inf and silence (peak below 1e-4).
    """
    if sample_rate is None or sample_rate <= 0:
        raise ValueError(f"{name}: sample rate {sample_rate} must be positive (e.g. 16000 or 44100)")
    if target_rate <= 0:
        raise ValueError(f"{name}: target rate {target_rate} must be positive (e.g. 16000)")
    wave = _as_channels_first(waveform, name)
    if wave.shape[-1] == 0:
        raise ValueError(f"{name}: empty (0 samples); give a clip with speech or singing")
    if not all_finite(wave):
        bad = int((~np.isfinite(wave)).sum())
        raise ValueError(f"{name}: {bad} samples are NaN or inf; re-export or re-decode the clip")
    mono = wave[0] if wave.shape[0] == 1 else wave.mean(axis=0)  # the same values; no copy of a long mono clip
    peak = max(float(mono.max()), -float(mono.min()))
    if peak < SILENCE_PEAK:
        raise ValueError(f"{name}: silent (peak {peak:.2g}); give a clip with speech or singing")
    return resample(mono, int(sample_rate), int(target_rate))


def trim_audio(wave, sample_rate: int, start: float = 0.0, duration: float = 0.0):
    """Cut ``[start, start + duration)`` seconds out of a waveform; ``duration=0`` keeps the rest.

    wave: (..., T) numpy or torch (cut along the last axis) -> (..., T'). A span reaching past the end
    is cut at the end; a span with no samples in it is refused, naming the span and the clip length.
    """
    if sample_rate <= 0:
        raise ValueError(f"audio: sample rate {sample_rate} must be positive")
    if start < 0 or duration < 0:
        raise ValueError(
            f"audio: start {start} s and duration {duration} s must be >= 0 (duration 0 = to the end)"
        )
    length = wave.shape[-1]
    first = int(math.floor(start * sample_rate + 0.5))
    last = length if duration == 0 else min(length, first + int(math.floor(duration * sample_rate + 0.5)))
    if last <= first:
        span = f"{start:g} s to {'the end' if duration == 0 else f'{start + duration:g} s'}"
        raise ValueError(
            f"audio: {span} holds no samples of the {length / sample_rate:.3f} s clip; "
            "lower start (and check duration)"
        )
    return wave[..., first:last]


def frame_count(num_samples, sample_rate: int, fps: float, rounding: str = "nearest"):
    """Video frames covering ``num_samples`` of audio at ``sample_rate``: the one frame count of the package.

    ``rounding`` is the checkpoint's rule (``config.generation.frame_rounding``): ``nearest`` =
    floor(seconds x fps + 1/2) (halves round up, 2.5 -> 3, unlike Python's ``round``), ``ceil`` = the
    frames needed to cover every sample. Computed exactly in integers from ``fps`` as a fraction, so a
    clip of exactly N frames' worth of samples always gives N. Count from the audio as given (before
    any resampling). num_samples: an int, or an integer array of counts (-> an int64 array, same shape).
    """
    from .preset import FRAME_ROUNDING

    if rounding not in FRAME_ROUNDING:
        raise ValueError(f"frame_rounding: {rounding!r}; choose one of {', '.join(FRAME_ROUNDING)}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"audio: sample rate {sample_rate!r}; give a positive whole number of samples per second")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: {fps!r}; give a positive, finite frame rate (25 or 30 typical)")
    rate = Fraction(fps)
    num, den = rate.numerator, rate.denominator * int(sample_rate)  # frames = samples x num / den
    if np.ndim(num_samples) == 0:
        samples = int(num_samples)
        return (2 * samples * num + den) // (2 * den) if rounding == "nearest" else -(-samples * num // den)
    samples = np.asarray(num_samples)
    if not np.issubdtype(samples.dtype, np.integer):
        raise ValueError(f"frame_count: sample counts of dtype {samples.dtype}; give whole numbers")
    big = samples.size and (int(np.abs(samples).max()) * 2 * num + den) >= 2**62
    samples = samples.astype(object if big else np.int64)  # Python integers where int64 could overflow
    frames = (2 * samples * num + den) // (2 * den) if rounding == "nearest" else -(-samples * num // den)
    return frames.astype(np.int64)
