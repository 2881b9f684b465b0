"""Vocals isolated from music before the audio features, so the lips follow the singer, not the band.

wav2vec2 features of a full mix are dominated by drums, bass and chords. :func:`isolate_vocals` splits a
waveform into vocals and accompaniment (``vocals + accompaniment = mix``) with one of two methods:

- ``"built-in"`` (:mod:`.builtin`): needs no weights. Median-filter masks on the spectrogram (held notes
  and percussive hits are accompaniment, what is neither is the voice), a low cut below the singing
  range, and for stereo a centre-channel weighting (vocals are mixed to the centre).
- a separation model the user placed: an MDX-Net ONNX file such as Hallo's ``Kim_Vocal_2.onnx``, run
  with onnxruntime (:mod:`.mdx`). Nothing is downloaded.

Either runs chunk by chunk (:data:`CHUNK_SECONDS`, cross-faded over :data:`OVERLAP_SECONDS`), so the
working memory does not grow with the length of the song; :func:`separate_chunks` streams the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

BUILTIN = "built-in"
AUTO = "auto"
MODEL_FOLDER = "audio_separation"  # ComfyUI models/<this>; Hallo's release keeps it in audio_separator/
HALLO_FOLDER = "audio_separator"
MODEL_EXTENSIONS = (".onnx",)
CHUNK_SECONDS = 30.0
OVERLAP_SECONDS = 2.0
PRESENCE_FRAME_SECONDS = 0.05
NO_VOICE_DB = -11.0  # loudest 10 % of 50-ms frames: vocals this far below the mix = no voice found
AUDIBLE_RMS = 1e-4  # frames of the mix quieter than this are not judged


class VocalSeparator(Protocol):
    """A separation method: a chunk of a mix -> its vocals, same shape and rate."""

    description: str

    def vocals(self, mix: np.ndarray, sample_rate: int) -> np.ndarray:
        """mix: (C, n) float32 at ``sample_rate`` -> vocals (C, n) float32."""


@dataclass(frozen=True)
class Separation:
    """Vocals and accompaniment of one waveform: both (C, T) float32 at ``sample_rate``, summing to
    the input; ``presence_db``: how loud the vocals are against the mix in its loudest frames."""

    vocals: np.ndarray
    accompaniment: np.ndarray
    sample_rate: int
    method: str
    presence_db: float


def load_separator(method: str | Path = BUILTIN) -> VocalSeparator:
    """``"built-in"`` or the path of a separation model file (MDX-Net ``.onnx``) -> a separator.

    A missing file, or one that is not a separation model we run, is a ValueError naming it and the
    folders it belongs in.
    """
    if str(method) == BUILTIN:
        from .builtin import MedianFilterSeparator

        return MedianFilterSeparator()
    path = Path(method)
    if not path.is_file():
        raise ValueError(f"vocal separation: {str(method)!r} is neither {BUILTIN!r} nor a model file; put an "
                         f"MDX-Net .onnx (e.g. Kim_Vocal_2.onnx) in models/{MODEL_FOLDER} or give its path")
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"vocal separation: {path} is not an MDX-Net .onnx model; models/{MODEL_FOLDER} takes "
                         f"MDX-Net ONNX files such as Hallo's {HALLO_FOLDER}/Kim_Vocal_2.onnx")
    from .mdx import MDXNetSeparator

    return MDXNetSeparator(path)


def find_separation_models(folders: list[str | Path]) -> list[Path]:
    """Separation model files in ``folders`` and in their ``audio_separator/`` sub-folders (Hallo's
    release layout), sorted; missing folders are skipped."""
    found: set[Path] = set()
    for folder in map(Path, folders):
        for place in (folder, folder / HALLO_FOLDER):
            if place.is_dir():
                found.update(p for p in place.iterdir() if p.suffix.lower() in MODEL_EXTENSIONS and p.is_file())
    return sorted(found)


def resolve_method(method: str | Path | None, search: list[str | Path] = ()) -> str | Path:
    """``"auto"`` (or None) -> the first model in ``search`` (see :func:`find_separation_models`), else
    ``"built-in"``; anything else is returned as given."""
    if method is None or str(method) == AUTO:
        models = find_separation_models(list(search))
        return models[0] if models else BUILTIN
    return method


def vocals_to_hear(waveform, sample_rate: int, choice: str | Path | None, checkpoint: str | Path | None = None,
                   name: str = "audio", log: Callable[[str], None] = print):
    """What the model hears: ``waveform`` itself when ``choice`` is None, else its isolated vocals
    (``choice``: ``auto``, ``built-in`` or a model path; ``auto`` searches ``checkpoint``). (C, T) -> (C, T)."""
    if choice is None:
        return waveform
    result = isolate_vocals(waveform, sample_rate, resolve_method(choice, [checkpoint] if checkpoint else []),
                            name=name)
    log(f"{name}: vocals isolated with {result.method} (the video keeps the original mix)")
    return result.vocals


def _crossfade_chunks(mix: np.ndarray, sample_rate: int, separator: VocalSeparator, chunk: int, overlap: int,
                      on_chunk: Callable[[int], None]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of ``chunk`` samples overlapping by ``overlap``, linearly cross-faded; yields (vocals, mix)
    pieces in order that tile the input exactly."""
    total = mix.shape[-1]
    step = chunk - overlap
    tail = None
    start = 0
    while True:
        piece = mix[:, start:start + chunk]
        vocals = np.asarray(separator.vocals(piece, sample_rate), np.float32)
        if vocals.shape != piece.shape:
            raise RuntimeError(f"{separator.description}: returned {vocals.shape} for a {piece.shape} chunk")
        if tail is not None:
            n = tail.shape[-1]
            fade = np.linspace(0.0, 1.0, n + 2, dtype=np.float32)[1:-1]
            vocals[:, :n] = tail * (1 - fade) + vocals[:, :n] * fade
        on_chunk(min(total, start + chunk))
        if start + chunk >= total:
            yield vocals, piece
            return
        yield vocals[:, :step], piece[:, :step]
        tail = vocals[:, step:].copy()
        start += step


def separate_chunks(wave: np.ndarray, sample_rate: int, separator: VocalSeparator, *,
                    chunk_seconds: float = CHUNK_SECONDS, overlap_seconds: float = OVERLAP_SECONDS,
                    on_progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream (vocals, mix) pieces, each (C, n) float32, that tile ``wave`` (C, T) in order.

    Working memory is that of one chunk whatever T is. ``on_progress(done_samples, total)`` after each
    chunk; ``should_stop()`` True stops before the next chunk with ``GenerationCancelled``.
    """
    chunk = max(1, int(round(chunk_seconds * sample_rate)))
    overlap = min(chunk // 2, int(round(overlap_seconds * sample_rate)))
    total = wave.shape[-1]

    def on_chunk(done: int) -> None:
        if on_progress is not None:
            on_progress(done, total)
        if should_stop is not None and should_stop() and done < total:
            from ..pipeline import GenerationCancelled

            raise GenerationCancelled("vocal separation cancelled")

    yield from _crossfade_chunks(wave, sample_rate, separator, chunk, overlap, on_chunk)


def frame_presence(vocals: np.ndarray, mix: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per 50-ms frame, vocals RMS / mix RMS in dB (frames of near-silent mix left out). (C, n) -> (k,)."""
    hop = max(1, int(PRESENCE_FRAME_SECONDS * sample_rate))
    frames = vocals.shape[-1] // hop
    if frames == 0:
        return np.zeros(0, np.float32)

    def rms(x: np.ndarray) -> np.ndarray:
        x = x.mean(axis=0)[: frames * hop].reshape(frames, hop).astype(np.float64)
        return np.sqrt(np.mean(x**2, axis=1))

    v, m = rms(vocals), rms(mix)
    audible = m > AUDIBLE_RMS
    return (20 * np.log10(np.maximum(v[audible], 1e-12) / m[audible])).astype(np.float32)


def presence_db(ratios: np.ndarray) -> float:
    """The 90th percentile of :func:`frame_presence` ratios: how loud the vocals are where they sing."""
    return float(np.percentile(ratios, 90)) if ratios.size else -np.inf


def isolate_vocals(waveform, sample_rate: int, method: str | Path = BUILTIN, *, name: str = "audio",
                   on_progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> Separation:
    """Split a mix into vocals and accompaniment, keeping its channels, length and sample rate.

    waveform: (T,), (C, T) or (B, C, T) (first batch item) numpy or torch at ``sample_rate``;
    method: ``"built-in"`` or a model file (see :func:`load_separator`). Refuses silence, NaN/inf, and
    input with no voice in it (music only: vocals more than 11 dB under the mix), naming ``name``.
    """
    from ..validation import SILENCE_PEAK, channels_first

    if sample_rate is None or sample_rate <= 0:
        raise ValueError(f"{name}: sample rate {sample_rate} must be positive (e.g. 44100)")
    wave = channels_first(waveform, name)
    if wave.shape[-1] == 0:
        raise ValueError(f"{name}: empty (0 samples); give a clip with singing or speech")
    if not np.isfinite(wave).all():
        raise ValueError(f"{name}: holds NaN or inf samples; re-decode or re-export the clip")
    peak = float(np.abs(wave).max())
    if peak < SILENCE_PEAK:
        raise ValueError(f"{name}: silent (peak {peak:.2g}); there are no vocals to isolate, give a clip with "
                         "singing or speech")
    separator = load_separator(method)
    vocals = np.empty_like(wave)
    ratios, at = [], 0
    for piece_vocals, piece_mix in separate_chunks(wave, int(sample_rate), separator, on_progress=on_progress,
                                                   should_stop=should_stop):
        vocals[:, at:at + piece_vocals.shape[-1]] = piece_vocals
        ratios.append(frame_presence(piece_vocals, piece_mix, int(sample_rate)))
        at += piece_vocals.shape[-1]
    presence = presence_db(np.concatenate(ratios))
    if presence < NO_VOICE_DB:
        raise ValueError(f"{name}: no singing or speech found: {separator.description} leaves vocals "
                         f"{-presence:.0f} dB under the mix (music only?); connect a clip with a voice, or "
                         "skip vocal isolation")
    return Separation(vocals=vocals, accompaniment=wave - vocals, sample_rate=int(sample_rate),
                      method=separator.description, presence_db=presence)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB of ``estimate`` against ``reference`` (both (T,)):
    the share of the estimate explained by a scaled reference, against the rest (Le Roux et al., 2019)."""
    estimate = np.asarray(estimate, np.float64).reshape(-1)
    reference = np.asarray(reference, np.float64).reshape(-1)
    if estimate.shape != reference.shape:
        raise ValueError(f"si_sdr: estimate has {estimate.size} samples, reference {reference.size}; align them")
    estimate, reference = estimate - estimate.mean(), reference - reference.mean()
    target = reference * (estimate @ reference) / max(reference @ reference, 1e-20)
    return float(10 * np.log10(max(target @ target, 1e-20) / max((estimate - target) @ (estimate - target), 1e-20)))
