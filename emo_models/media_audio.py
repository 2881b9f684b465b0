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

from .validation import InputError, channels_first, check_duration, check_samples, is_integer

MAX_SAMPLE_RATE = 1_000_000  # Hz; any real recording is far below


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
    raise InputError(
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
        raise InputError(f"audio: {path} does not exist or is not a file; give the path of an audio file")
    data, rate = _decode(path)
    if data.shape[-1] == 0:
        raise InputError(f"audio: {path} decodes to 0 samples; give a clip with speech or singing")
    return data, rate


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode an audio (or video) file (see :func:`read_audio`) to mono float32 ``(T,)`` at ``sample_rate``.

    All channels are averaged. Loudness is not checked here; use :func:`prepare_waveform` before generating.
    """
    if sample_rate <= 0:
        raise InputError(f"audio: sample_rate {sample_rate} must be positive, e.g. 16000")
    data, rate = read_audio(path)
    return resample(data.mean(axis=0), rate, sample_rate)


def all_finite(wave: np.ndarray, chunk: int = 1 << 20) -> bool:
    """True when no sample of (..., T) ``wave`` is NaN or inf, checked in chunks (no whole-audio temporary)."""
    return all(np.isfinite(wave[..., i:i + chunk]).all() for i in range(0, wave.shape[-1], chunk))


def prepare_waveform(
    waveform: np.ndarray | torch.Tensor, sample_rate: int, target_rate: int = 16000, name: str = "audio"
) -> np.ndarray:
    """Check a waveform and turn it into the mono ``(T,)`` float32 the audio encoder reads.

    waveform: (T,), (C, T) or (B, C, T) (ComfyUI AUDIO; the first batch item is used), numpy or torch,
    at ``sample_rate``. Channels are averaged, then resampled to ``target_rate``. Refuses (InputError
    naming ``name``) a rate that is not a whole number of Hz in (0, 1 MHz], 0 samples, NaN/inf and
    silence (peak below 1e-4), and clips under 25 ms. Any amplitude is accepted (the encoder normalises it).
    """
    _check_rate(sample_rate, f"{name}: sample rate", "e.g. 16000 or 44100")
    _check_rate(target_rate, f"{name}: target rate", "e.g. 16000")
    wave = check_samples(channels_first(waveform, name), name)
    mono = resample(wave.mean(axis=0), int(sample_rate), int(target_rate))
    check_duration(mono.shape[-1], int(target_rate), name)
    return mono


def _check_rate(rate, label: str, example: str) -> None:
    """Refuse a sample rate that is not a positive whole number of Hz (up to 1 MHz)."""
    if not is_integer(rate) and not (isinstance(rate, float) and rate.is_integer()):
        raise InputError(f"{label} {rate!r} is not a whole number of Hz; give a positive rate ({example})")
    if not 0 < rate <= MAX_SAMPLE_RATE:
        raise InputError(f"{label} {rate} must be positive and at most {MAX_SAMPLE_RATE} Hz ({example})")


def trim_audio(wave, sample_rate: int, start: float = 0.0, duration: float = 0.0):
    """Cut ``[start, start + duration)`` seconds out of a waveform; ``duration=0`` keeps the rest.

    wave: (..., T) numpy or torch (cut along the last axis) -> (..., T'). A span reaching past the end
    is cut at the end; a span with no samples in it is refused, naming the span and the clip length.
    """
    if not sample_rate > 0:
        raise InputError(f"audio: sample rate {sample_rate} must be positive")
    if not (math.isfinite(start) and math.isfinite(duration) and start >= 0 and duration >= 0):
        raise InputError(
            f"audio: start {start} s and duration {duration} s must be finite and >= 0 (duration 0 = to the end)"
        )
    if getattr(wave, "ndim", 0) < 1:
        raise InputError(f"audio: a waveform needs a time axis, got shape {tuple(getattr(wave, 'shape', ()))}")
    length = wave.shape[-1]
    seconds = length / sample_rate
    first = int(math.floor(min(start, seconds) * sample_rate + 0.5))
    last = length if duration == 0 else min(length, first + int(math.floor(min(duration, seconds) * sample_rate + 0.5)))
    if last <= first:
        span = f"{start:g} s to {'the end' if duration == 0 else f'{start + duration:g} s'}"
        raise InputError(
            f"audio: {span} holds no samples of the {seconds:.3f} s clip; lower start (and check duration)"
        )
    return wave[..., first:last]


def frame_count(num_samples, sample_rate: int, fps: float, rounding: str = "nearest"):
    """Video frames covering ``num_samples`` of audio at ``sample_rate``: the one frame count of the package.

    ``rounding`` is the checkpoint's rule (``config.generation.frame_rounding``): ``nearest`` =
    floor(seconds x fps + 1/2) (halves round up, 2.5 -> 3, unlike Python's ``round``), ``ceil`` = the
    frames needed to cover every sample, ``whisper`` = EchoMimic's count, one frame per chunk of the 50 Hz
    Whisper features of the audio resampled to 16 kHz (a frame or two past the audio's end:
    :func:`~emo_models.whisper_audio.whisper_frame_count`). Computed exactly in integers from ``fps`` as a
    fraction, so a clip of exactly N frames' worth of samples always gives N (``nearest``, ``ceil``).
    Count from the audio as given (before any resampling). num_samples: an int, or an integer array of
    counts (-> an int64 array, same shape).
    """
    from .preset import FRAME_ROUNDING

    if rounding not in FRAME_ROUNDING:
        raise InputError(f"frame_rounding: {rounding!r}; choose one of {', '.join(FRAME_ROUNDING)}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"audio: sample rate {sample_rate!r}; give a positive whole number of samples per second")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps: {fps!r}; give a positive, finite frame rate (25 or 30 typical)")
    if rounding == "whisper":
        return _whisper_frame_count(num_samples, int(sample_rate), fps)
    rate = Fraction(fps)
    num, den = rate.numerator, rate.denominator * int(sample_rate)  # frames = samples x num / den
    if np.ndim(num_samples) == 0:
        samples = int(num_samples)
        return (2 * samples * num + den) // (2 * den) if rounding == "nearest" else -(-samples * num // den)
    samples = np.asarray(num_samples)
    if not np.issubdtype(samples.dtype, np.integer):
        raise InputError(f"frame_count: sample counts of dtype {samples.dtype}; give whole numbers")
    big = samples.size and (int(np.abs(samples).max()) * 2 * num + den) >= 2**62
    samples = samples.astype(object if big else np.int64)  # Python integers where int64 could overflow
    frames = (2 * samples * num + den) // (2 * den) if rounding == "nearest" else -(-samples * num // den)
    return frames.astype(np.int64)


def resampled_length(num_samples: int, sample_rate: int, target_rate: int) -> int:
    """Samples :func:`resample` gives for ``num_samples`` at ``sample_rate``: round(n x target / rate), halves up."""
    return (2 * int(num_samples) * int(target_rate) + int(sample_rate)) // (2 * int(sample_rate))


def _whisper_frame_count(num_samples, sample_rate: int, fps: float):
    """EchoMimic's frame count (``frame_rounding="whisper"``): int or integer array, as :func:`frame_count`."""
    from .whisper_audio import HOP_LENGTH, SAMPLE_RATE, whisper_frame_count

    def count(samples) -> int:
        return whisper_frame_count(resampled_length(samples, sample_rate, SAMPLE_RATE) // (2 * HOP_LENGTH), fps)

    if np.ndim(num_samples) == 0:
        return count(int(num_samples))
    samples = np.asarray(num_samples)
    if not np.issubdtype(samples.dtype, np.integer):
        raise ValueError(f"frame_count: sample counts of dtype {samples.dtype}; give whole numbers")
    return np.array([count(int(n)) for n in samples.reshape(-1)], dtype=np.int64).reshape(samples.shape)
