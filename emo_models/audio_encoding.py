"""Audio features of any length, produced span by span as the clip loop asks for them.

An :class:`AudioEncoding` is the audio's per-frame wav2vec2 features behind a *source*:
- :class:`HeldFeatures`: audio up to :data:`ONE_PASS_SECONDS` is encoded in one wav2vec2 pass, as
  it always was, and its ``(F, L, C)`` features are held (bit-identical to a one-pass encode);
- :class:`WindowedFeatures`: longer audio is encoded lazily in overlapping windows of
  :data:`ONE_PASS_SECONDS` that overlap by :data:`OVERLAP_SECONDS`, whose seams are cross-faded
  linearly; only the windows the current clip touches are held (at most two), so memory does not
  grow with the audio's length, and wav2vec2 never attends over more than it saw in training.
Each frame's window of ±m neighbours is stacked when a span is asked for (:meth:`AudioEncoding.windows`),
edge-clamped at the whole audio's ends, exactly as :func:`~emo_models.audio.audio_windows` does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import torch

from .audio import audio_features, conv_geometry

ONE_PASS_SECONDS = 30.0  # longer audio is encoded in windows this long (wav2vec2 pretrained on <= 15.6 s crops)
OVERLAP_SECONDS = 2.0  # consecutive windows share this much; their features are cross-faded over it
_CHUNK = 1 << 20  # samples per step of the chunked statistics (no whole-audio temporaries)


def wave_statistics(wave: np.ndarray) -> tuple[float, float]:
    """(mean, variance) of a (T,) waveform in float64, read in chunks (no copy of the whole audio)."""
    total = total_sq = 0.0
    for i in range(0, wave.shape[0], _CHUNK):
        chunk = wave[i:i + _CHUNK].astype(np.float64)
        total, total_sq = total + float(chunk.sum()), total_sq + float(np.square(chunk).sum())
    mean = total / wave.shape[0]
    return mean, max(total_sq / wave.shape[0] - mean * mean, 0.0)


class HeldFeatures:
    """Features of a whole audio, held: (F, L, C). Calling it with (start, stop) gives rows [start, stop)."""

    def __init__(self, features: torch.Tensor):
        self.features = features

    @property
    def frames(self) -> int:
        return int(self.features.shape[0])

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        return self.features[start:stop]

    def to(self, device) -> HeldFeatures:
        return HeldFeatures(self.features.to(device))


class HeldWindows(HeldFeatures):
    """Per-frame windows already stacked, held whole: (F, W, L, C) (EchoMimic's Whisper windows, which index
    50 Hz encoder frames rather than neighbouring video frames). :meth:`AudioEncoding.windows` slices them."""

    stacked = True

    def to(self, device) -> HeldWindows:
        return HeldWindows(self.features.to(device))


class WindowedFeatures:
    """Features of a long audio, encoded on demand in overlapping windows with cross-faded seams.

    wave: (T,) float32 mono at wav2vec2's rate (16 kHz), held; frames: F, the video frames of the
    audio; window, overlap: frames per window and frames two consecutive windows share (overlap <
    window). Window j covers frames [j·hop, j·hop + window), hop = window − overlap; its samples are the
    span of wav2vec2 frames the one-pass encode maps those video frames onto, normalised with the whole
    audio's statistics (``stats``: (mean, variance), default ``wave``'s own). Calling it with (start,
    stop) gives (stop − start, L, C) float32 on CPU.
    """

    def __init__(self, wav2vec2, wave: np.ndarray, frames: int, window: int, overlap: int, cache: int = 2,
                 stats: tuple[float, float] | None = None):
        if not 0 < overlap < window:
            raise ValueError(f"audio windows: overlap {overlap} frames must be above 0 and below the window, {window}")
        self.wav2vec2, self.wave, self.frames = wav2vec2, wave, int(frames)
        self.window, self.overlap, self.hop = int(window), int(overlap), int(window) - int(overlap)
        self.count = max(1, math.ceil((self.frames - self.overlap) / self.hop))
        self.stats = wave_statistics(wave) if stats is None else stats
        self.stride, self.field = conv_geometry(wav2vec2)
        positions = (wave.shape[0] - self.field) // self.stride + 1  # wav2vec2 frames of the whole audio
        self.scale = (positions - 1) / max(self.frames - 1, 1)  # video frame i -> wav2vec2 frame i·scale, as one pass
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_size = cache

    def span_of(self, j: int) -> tuple[int, int]:
        """Frames [a, b) of window j (the last one ends at the audio's last frame)."""
        a = j * self.hop
        return a, self.frames if j == self.count - 1 else a + self.window

    def weights(self, j: int) -> torch.Tensor:
        """(b − a,) cross-fade weights of window j: rising over its first ``overlap`` frames (but the first
        window's), falling over its last (but the last window's); the weights of a seam sum to 1."""
        a, b = self.span_of(j)
        w = torch.ones(b - a, dtype=torch.float32)
        ramp = (torch.arange(self.overlap, dtype=torch.float32) + 0.5) / self.overlap
        if j > 0:
            w[:self.overlap] = ramp
        if j < self.count - 1:
            w[-self.overlap:] = ramp.flip(0)
        return w

    def samples_of(self, j: int) -> tuple[int, int]:
        """Samples [s0, s1) window j reads: the wav2vec2 frames its video frames map onto, whole."""
        a, b = self.span_of(j)
        first, steps = a * self.scale, round((b - 1 - a) * self.scale)
        s0 = max(0, round(first * self.stride))
        s1 = s0 + steps * self.stride + self.field
        if s1 > self.wave.shape[0]:
            s0, s1 = max(0, s0 - (s1 - self.wave.shape[0])), self.wave.shape[0]
        return s0, s1

    def encode(self, j: int) -> torch.Tensor:
        """(b − a, L, C) features of window j alone, float32 on CPU (cached: the last ``cache`` windows)."""
        if j in self._cache:
            self._cache.move_to_end(j)
            return self._cache[j]
        a, b = self.span_of(j)
        s0, s1 = self.samples_of(j)
        features = audio_features(self.wav2vec2, self.wave[s0:s1], b - a, stats=self.stats).cpu()
        self._cache[j] = features
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return features

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        first, last = max(0, (start - self.window) // self.hop + 1), min(self.count - 1, (stop - 1) // self.hop)
        out = None
        for j in range(first, last + 1):
            a, b = self.span_of(j)
            lo, hi = max(a, start), min(b, stop)
            if lo >= hi:
                continue
            part = self.encode(j)[lo - a:hi - a] * self.weights(j)[lo - a:hi - a, None, None]
            if out is None:
                out = torch.zeros(stop - start, *part.shape[1:])
            out[lo - start:hi - start] += part
        return out

    def to(self, device) -> WindowedFeatures:
        return self  # computed where wav2vec2 is, handed out on CPU; the caller moves them


@dataclass(frozen=True)
class AudioEncoding:
    """Audio features at the video frame rate: frames [start, start + frames) of a feature ``source``.

    source: :class:`HeldFeatures` or :class:`WindowedFeatures` of the whole audio; window: m, the
    neighbours on each side stacked per frame; fps; seconds of this span. :meth:`windows` gives
    (k, 2m+1, L, C) for any span, so a clip loop asks only for its clip's frames. padding: frames of
    silence after this span's last frame that the source holds (Hallo's audio is encoded padded to
    whole clips: a final partial clip reads them, and the last frames' neighbours are that silence).
    """

    source: HeldFeatures | WindowedFeatures
    window: int
    fps: float
    seconds: float
    start: int = 0
    frames: int = -1
    padding: int = 0

    def __post_init__(self):
        if self.frames < 0:
            object.__setattr__(self, "frames", self.source.frames - self.start - self.padding)

    def windows(self, start: int, stop: int) -> torch.Tensor:
        """(stop − start, 2m+1, L, C) windows of this encoding's frames [start, stop) (stop up to frames +
        padding); neighbours come from the whole audio (clamped at its ends), so a span keeps the context of
        the audio it was cut from."""
        if not 0 <= start < stop <= self.frames + self.padding:
            raise ValueError(f"audio span: frames {start}..{stop} are not within the {self.frames} frames"
                             + (f" and {self.padding} of padding" if self.padding else ""))
        first, last = self.start + start, self.start + stop
        if getattr(self.source, "stacked", False):
            return self.source(first, last)
        total, m = self.source.frames, self.window
        lo, hi = max(0, first - m), min(total, last + m)
        index = (torch.arange(first, last)[:, None] + torch.arange(-m, m + 1)[None]).clamp(0, total - 1) - lo
        return self.source(lo, hi)[index]

    def span(self, start: int, stop: int) -> AudioEncoding:
        """Frames [start, stop) of this encoding (their windows keep the context of the whole audio)."""
        stop = min(stop, self.frames)
        if start < 0 or stop <= start:
            raise ValueError(f"audio span: frames {start}..{stop} hold nothing of the {self.frames} frames")
        return replace(self, start=self.start + start, frames=stop - start, seconds=(stop - start) / self.fps,
                       padding=self.padding if stop == self.frames else 0)

    def to(self, device) -> AudioEncoding:
        """This encoding with held features on ``device`` (windowed ones are made on demand)."""
        return replace(self, source=self.source.to(device))


def encode_audio(wav2vec2, wave: np.ndarray, frames: int, fps: float, window: int, seconds: float, *,
                 one_pass_seconds: float | None = None, overlap_seconds: float | None = None,
                 sample_rate: int = 16000, padding: int = 0) -> AudioEncoding:
    """wave: (T,) float32 mono at ``sample_rate`` (wav2vec2's) -> the :class:`AudioEncoding` of its ``frames``.

    Audio up to ``one_pass_seconds`` is encoded now, in one pass; longer audio gets a
    :class:`WindowedFeatures` of windows that long overlapping by ``overlap_seconds``, encoded as asked.
    None: :data:`ONE_PASS_SECONDS`, :data:`OVERLAP_SECONDS`. padding: frames of silence (sample_rate // fps
    samples each, zeros of the normalised waveform, as Hallo pads) encoded after the audio's frames.
    """
    one_pass_seconds = ONE_PASS_SECONDS if one_pass_seconds is None else one_pass_seconds
    overlap_seconds = OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
    pad = int(padding) * int(sample_rate // fps)
    if wave.shape[0] + pad <= one_pass_seconds * sample_rate:
        source = HeldFeatures(audio_features(wav2vec2, wave, frames + padding, pad_samples=pad))
    else:  # the silence as the whole audio's mean: zero once normalised with the audio's own statistics
        stats = wave_statistics(wave)
        if pad:
            wave = np.concatenate([wave, np.full(pad, stats[0], dtype=wave.dtype)])
        source = WindowedFeatures(wav2vec2, wave, frames + padding, window=max(2, round(one_pass_seconds * fps)),
                                  overlap=max(1, round(overlap_seconds * fps)), stats=stats)
    return AudioEncoding(source, window, fps, seconds, frames=frames, padding=int(padding))
