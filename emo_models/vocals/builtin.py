"""Weight-free vocal isolation: what is neither held nor percussive, above the bass, in the centre.

On a magnitude spectrogram (frames of 128 ms, hop 16 ms, at any sample rate):

- held notes (chords, pads, bass lines) are steady along time: a median over 1 s in each frequency
  bin estimates them; a sung syllable is shorter than that and its pitch moves, so it falls out;
- percussive hits are broadband and short: a median over 240 Hz in each frame estimates them
  (the harmonic/percussive split of Fitzgerald, 2010);
- the voice is what exceeds both: a Wiener-like soft mask ``V^2 / (V^2 + A^2)`` with V the excess
  and A the accompaniment estimate, times a low cut below :data:`LOW_CUT_HZ` (kick drum and bass
  live there, a voice's fundamental rarely does);
- stereo: vocals are mixed to the centre, so each bin is weighted by how alike (in level and phase)
  its left and right channels are before the mask is computed on the mid channel.

The medians run on spectrograms pooled by 2 along the axis they do not filter, which keeps them
4x cheaper at the same quality on the singing benchmark (bench/singing.py).
"""

from __future__ import annotations

import librosa
import numpy as np
from scipy import ndimage

FRAME_SECONDS = 0.128
HOP_FRACTION = 8  # hop = frame / 8
HELD_SECONDS = 1.0  # notes steady this long are accompaniment
PERCUSSIVE_HZ = 240.0  # hits broadband over this span are accompaniment
LOW_CUT_HZ = 100.0  # second-order Butterworth low cut, applied twice (zero phase), as a mask
POOL = 2


def _pool(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over pairs along ``axis`` (a trailing odd element kept as it is)."""
    n = x.shape[axis] // POOL * POOL
    head = np.take(x, np.arange(n), axis=axis)
    shape = list(head.shape)
    shape[axis:axis + 1] = [n // POOL, POOL]
    pooled = head.reshape(shape).mean(axis=axis + 1)
    rest = np.take(x, np.arange(n, x.shape[axis]), axis=axis)
    return np.concatenate([pooled, rest], axis=axis)


def _unpool(x: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Inverse of :func:`_pool` by repetition, cut to ``length``."""
    pairs = x.shape[axis] if length % POOL == 0 else x.shape[axis] - 1
    head = np.repeat(np.take(x, np.arange(pairs), axis=axis), POOL, axis=axis)
    return np.concatenate([head, np.take(x, np.arange(pairs, x.shape[axis]), axis=axis)], axis=axis)[
        (slice(None),) * axis + (slice(0, length),)]


def accompaniment_magnitude(magnitude: np.ndarray, sample_rate: int, hop: int, n_fft: int) -> np.ndarray:
    """Held + percussive estimate of a magnitude spectrogram. magnitude: (bins, frames) -> same."""
    bins, frames = magnitude.shape
    held_width = max(3, int(HELD_SECONDS * sample_rate / hop / POOL)) | 1
    held = ndimage.median_filter(_pool(magnitude, 1), size=(1, held_width), mode="reflect")
    hit_width = max(3, int(PERCUSSIVE_HZ * n_fft / sample_rate / POOL)) | 1
    hits = ndimage.median_filter(_pool(magnitude, 0), size=(hit_width, 1), mode="reflect")
    return _unpool(held, frames, 1) + _unpool(hits, bins, 0)


def low_cut(sample_rate: int, n_fft: int) -> np.ndarray:
    """(bins, 1) power response of a 2nd-order Butterworth high-pass at :data:`LOW_CUT_HZ`, run forward
    and backward: ``r^4 / (1 + r^4)``, r = f / f_c."""
    ratio = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft) / LOW_CUT_HZ
    return (ratio**4 / (1 + ratio**4))[:, None]


def centre_weight(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """How centred each bin is: ``2 Re(L R*) / (|L|^2 + |R|^2)`` clipped to [0, 1] (1: same level and
    phase on both sides, 0: one side only or opposite phase). (bins, frames) complex -> real."""
    power = np.abs(left) ** 2 + np.abs(right) ** 2
    return np.clip(2 * np.real(left * np.conj(right)) / np.maximum(power, 1e-20), 0.0, 1.0)


class MedianFilterSeparator:
    """The built-in method: no weights, any sample rate, mono or stereo (see the module docstring)."""

    description = "built-in separation (median-filter masks)"

    def vocals(self, mix: np.ndarray, sample_rate: int) -> np.ndarray:
        """mix (C, n) -> vocals (C, n): the centre estimate on every channel."""
        n_fft = 2 * max(16, int(round(FRAME_SECONDS * sample_rate / 2)))
        hop = n_fft // HOP_FRACTION
        length = mix.shape[-1]
        if length < n_fft:  # too short for one frame: zero-pad, separate, cut back
            padded = np.pad(mix, ((0, 0), (0, n_fft - length)))
            return self.vocals(padded, sample_rate)[:, :length]
        spectra = librosa.stft(mix.astype(np.float32), n_fft=n_fft, hop_length=hop)  # (C, bins, frames)
        centre = spectra.mean(axis=0)
        if len(spectra) == 2:
            centre = centre * centre_weight(spectra[0], spectra[1])
        magnitude = np.abs(centre)
        accompaniment = accompaniment_magnitude(magnitude, sample_rate, hop, n_fft)
        excess = np.maximum(magnitude - accompaniment, 0.0)
        mask = excess**2 / np.maximum(excess**2 + accompaniment**2, 1e-20) * low_cut(sample_rate, n_fft)
        voice = librosa.istft(centre * mask, hop_length=hop, n_fft=n_fft, length=length)
        return np.broadcast_to(voice.astype(np.float32), mix.shape).copy()
