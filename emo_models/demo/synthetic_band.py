"""A synthetic pop band in numpy (drums, bass, chords) to sing over, and mixing a voice into it.

Used to measure singing over music without recordings: :func:`synthetic_band` plays a seeded
four-chord loop (I-V-vi-IV in a random key) at 90-130 bpm, with a kick on beats 1 and 3, a snare on
2 and 4, eighth-note hi-hats, a bass on the chord roots and sustained chords in the voice's own
range (200-700 Hz), each instrument panned as in a studio mix. Velocities and timing vary slightly
from hit to hit, so the band repeats like a played one, not sample for sample.
:func:`mix_voice` puts a voice on top at a chosen voice-to-band ratio in dB.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)  # semitones of the scale degrees above the key's root
PROGRESSION = (0, 4, 5, 3)  # I - V - vi - IV, as scale degrees
PAN = {"kick": 0.0, "snare": 0.0, "bass": 0.0, "hats": 0.45}  # -1 left .. 1 right
LEVELS = {"kick": 1.0, "snare": 0.5, "hats": 0.25, "bass": 0.7, "chords": 0.6}  # RMS of each instrument
CHORD_SPREAD = 0.012  # seconds the right channel's chords lag the left's: a wide stereo pad


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _decay(n: int, seconds: float, sample_rate: int) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * sample_rate))


def _kick(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A sine sweeping 110 -> 45 Hz with a 0.18 s decay and a click."""
    n = int(0.35 * sample_rate)
    t = np.arange(n) / sample_rate
    freq = 45.0 + 65.0 * np.exp(-t / 0.03)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * _decay(n, 0.18, sample_rate)
    click = rng.standard_normal(n) * _decay(n, 0.004, sample_rate) * 0.3
    return body + click


def _snare(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Band-passed noise (1-5 kHz) over a 190 Hz tone, 0.12 s decay."""
    n = int(0.25 * sample_rate)
    high = min(5000.0, 0.45 * sample_rate)
    sos = signal.butter(2, [1000.0, high], "bandpass", fs=sample_rate, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(n)) * _decay(n, 0.12, sample_rate) * 1.6
    tone = np.sin(2 * np.pi * 190.0 * np.arange(n) / sample_rate) * _decay(n, 0.06, sample_rate) * 0.5
    return noise + tone


def _hat(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """High-passed noise (above 6 kHz, or the top of the band at low rates), 0.035 s decay."""
    n = int(0.08 * sample_rate)
    cutoff = min(6000.0, 0.35 * sample_rate)
    sos = signal.butter(4, cutoff, "highpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n)) * _decay(n, 0.035, sample_rate) * 0.8


def _tone(freq: float, n: int, sample_rate: int, harmonics: int, rolloff: float, phase: float) -> np.ndarray:
    """A harmonic tone: partial k at amplitude rolloff**(k-1), partials above Nyquist left out."""
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    for k in range(1, harmonics + 1):
        if k * freq < 0.45 * sample_rate:
            out += rolloff ** (k - 1) * np.sin(2 * np.pi * k * freq * t + phase * k)
    return out


def _place(track: np.ndarray, hit: np.ndarray, start: int, gain: float) -> None:
    end = min(len(track), start + len(hit))
    if 0 <= start < end:
        track[start:end] += gain * hit[: end - start]


def synthetic_band(seconds: float, sample_rate: int = 16000, seed: int = 0, stereo: bool = True) -> np.ndarray:
    """A seeded band loop: drums, bass and chords.

    Returns (2, T) float32 (left, right) when ``stereo``, else (T,), T = round(seconds * sample_rate),
    peak-normalised to 0.9. The same seed gives the same samples.
    """
    if seconds <= 0 or sample_rate <= 0:
        raise ValueError(f"synthetic_band: {seconds} s at {sample_rate} Hz; give a positive length and rate")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBA4D]))
    n = int(round(seconds * sample_rate))
    beat = 60.0 / rng.uniform(90.0, 130.0)
    key = int(rng.integers(0, 12))
    tracks = {name: np.zeros(n) for name in LEVELS}
    kick, snare, hat = _kick(sample_rate, rng), _snare(sample_rate, rng), _hat(sample_rate, rng)
    beats = int(np.ceil(seconds / beat)) + 1
    for b in range(beats):
        jitter = lambda: int(rng.normal(0.0, 0.004) * sample_rate)  # noqa: E731 (a played, not quantised, band)
        at = int(b * beat * sample_rate)
        _place(tracks["kick" if b % 2 == 0 else "snare"], kick if b % 2 == 0 else snare, at + jitter(),
               rng.uniform(0.8, 1.0))
        for half in (0, 1):
            _place(tracks["hats"], hat, at + int(half * beat / 2 * sample_rate) + jitter(), rng.uniform(0.4, 0.8))
    bar = 4 * beat
    for i in range(int(np.ceil(seconds / bar)) + 1):
        degree = PROGRESSION[i % len(PROGRESSION)]
        root = 48 + key + MAJOR_SCALE[degree]  # the chord's root, C3 .. B3
        chord = [root + MAJOR_SCALE[(degree + k) % 7] - MAJOR_SCALE[degree] + 12 * ((degree + k) // 7)
                 for k in (0, 2, 4)]
        start, length = int(i * bar * sample_rate), int(bar * sample_rate)
        envelope = np.minimum(1.0, np.arange(length) / (0.05 * sample_rate)) * _decay(length, 3.0, sample_rate)
        pad = sum(_tone(_hz(note + 12), length, sample_rate, 6, 0.55, rng.uniform(0, 2 * np.pi)) for note in chord)
        _place(tracks["chords"], pad * envelope, start, 0.35)
        bass_note = _hz(root - 24)
        for eighth in range(8):
            at = start + int(eighth * beat / 2 * sample_rate)
            length8 = int(beat / 2 * sample_rate)
            pluck = _tone(bass_note, length8, sample_rate, 4, 0.5, 0.0) * _decay(length8, 0.25, sample_rate)
            _place(tracks["bass"], pluck, at, rng.uniform(0.7, 0.9))
    left, right = np.zeros(n), np.zeros(n)
    for name, track in tracks.items():
        track = track / (np.sqrt(np.mean(track**2)) + 1e-9) * LEVELS[name]
        if name == "chords":
            left += track * np.sqrt(0.5)
            right += np.roll(track, int(CHORD_SPREAD * sample_rate)) * np.sqrt(0.5)
        else:
            left += track * np.sqrt(0.5 * (1 - PAN[name]))
            right += track * np.sqrt(0.5 * (1 + PAN[name]))
    band = np.stack([left, right])
    band *= 0.9 / (np.abs(band).max() + 1e-9)
    return (band if stereo else band.mean(axis=0)).astype(np.float32)


def mix_voice(voice: np.ndarray, band: np.ndarray, voice_to_band_db: float) -> np.ndarray:
    """The voice (T,) centred over the band (T,) or (C, T), RMS ratio ``voice_to_band_db`` dB.

    Returns the mix shaped like ``band`` (the voice on every channel), float32, peak <= 0.95.
    """
    voice = np.asarray(voice, np.float64).reshape(-1)
    band = np.asarray(band, np.float64)
    if band.shape[-1] != voice.shape[0]:
        raise ValueError(f"mix_voice: voice has {voice.shape[0]} samples, band {band.shape[-1]}; give equal lengths")
    band_rms = np.sqrt(np.mean(band.mean(axis=0) ** 2 if band.ndim == 2 else band**2))
    voice_rms = np.sqrt(np.mean(voice**2))
    scaled = band * (voice_rms / (band_rms + 1e-12)) * 10.0 ** (-voice_to_band_db / 20.0)
    mix = scaled + voice
    return (mix * min(1.0, 0.95 / (np.abs(mix).max() + 1e-12))).astype(np.float32)
