"""Speech-like audio for the procedural talking-face data set, and the mouth opening it implies.

A source-filter voice in numpy: a Rosenberg glottal pulse train at a gliding pitch (phrase declination
plus accents on stressed syllables) through three cascaded formant resonators whose formants move from
vowel to vowel, short noise bursts for consonants, and pauses between phrases. It is not language, but
it has what a lip-sync model must pick up: syllable rhythm (3-6 per second), silent pauses, changing
pitch and vowel colour.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

EnvelopeFn = Callable[[np.ndarray], np.ndarray]

# (F1, F2, F3) in Hz: Peterson & Barney averages for an adult voice.
VOWEL_FORMANTS = np.array(
    [
        (270, 2290, 3010),  # i   (beet)
        (390, 1990, 2550),  # I   (bit)
        (530, 1840, 2480),  # E   (bet)
        (660, 1720, 2410),  # ae  (bat)
        (730, 1090, 2440),  # a   (father)
        (570, 840, 2410),  # o   (bought)
        (440, 1020, 2240),  # U   (book)
        (300, 870, 2240),  # u   (boot)
        (640, 1190, 2390),  # V   (but)
        (490, 1350, 1690),  # er  (bird)
    ],
    dtype=np.float64,
)
FORMANT_BANDWIDTHS = np.array((80.0, 110.0, 160.0))
VOICED_BAND_HZ = (80.0, 900.0)  # where vowels carry their energy and consonant noise does not
_BLOCK = 64  # samples per step of the time-varying formant filters


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)


def _rosenberg_pulse_train(f0: np.ndarray, sample_rate: int) -> np.ndarray:
    """Glottal flow derivative for a per-sample pitch track. f0: (T,) Hz -> (T,)."""
    frac = np.cumsum(f0 / sample_rate) % 1.0
    opening, closing = 0.4, 0.16
    flow = np.where(
        frac < opening,
        0.5 * (1.0 - np.cos(np.pi * frac / opening)),
        np.where(frac < opening + closing, np.cos(0.5 * np.pi * (frac - opening) / closing), 0.0),
    )
    return np.diff(flow, prepend=flow[:1]) * sample_rate / f0  # lip radiation; level independent of f0


def _formant_filter(source: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cascade of Klatt resonators with time-varying centre frequencies.

    source: (T,); formants: (T, 3) Hz -> (T,). Coefficients change every ``_BLOCK`` samples and
    the filter state carries over, so formant glides are click-free.
    """
    out = source.astype(np.float64).copy()
    radius = np.exp(-np.pi * FORMANT_BANDWIDTHS / sample_rate)
    for k in range(formants.shape[1]):
        state = np.zeros(2)
        for start in range(0, len(out), _BLOCK):
            theta = 2.0 * np.pi * formants[start, k] / sample_rate
            b1, b2 = 2.0 * radius[k] * np.cos(theta), -(radius[k] ** 2)
            block = out[start : start + _BLOCK]
            out[start : start + _BLOCK], state = signal.lfilter(
                [1.0 - b1 - b2], [1.0, -b1, -b2], block, zi=state
            )
    return out


def _syllable_plan(seconds: float, rng: np.random.Generator) -> list[tuple[float, float, float, bool]]:
    """Phrases of syllables separated by pauses: [(start s, duration s, gain, phrase_start)]."""
    plan: list[tuple[float, float, float, bool]] = []
    t = rng.uniform(0.1, 0.35)
    while t < seconds - 0.25:
        rate = rng.uniform(3.0, 6.0)
        phrase_gain = rng.uniform(0.6, 1.0)
        for i in range(int(rng.integers(3, 11))):
            duration = rng.uniform(0.8, 1.2) / rate
            if t + duration > seconds - 0.05:
                break
            plan.append((t, duration, phrase_gain * rng.uniform(0.55, 1.0), i == 0))
            t += duration
        t += rng.uniform(0.25, 0.7)
    return plan


def synthesize_speech(
    seconds: float, sample_rate: int = 16000, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, EnvelopeFn]:
    """Speech-like audio: voiced syllables, consonant bursts and pauses, peak-normalised to 0.9.

    Returns ``(wave, envelope_fn)``: wave (T,) float32 with T = round(seconds * sample_rate);
    ``envelope_fn(t)`` maps times in seconds (any shape) to the voiced amplitude in [0, 1] (0 in
    pauses), the ground truth the mouth follows.
    """
    if seconds <= 0:
        raise ValueError(f"seconds: got {seconds}; give a positive duration")
    rng = _generator(rng)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    voiced_env = np.zeros(n)
    consonants = np.zeros(n)
    f0_base = rng.uniform(115.0, 200.0)
    f0 = np.full(n, f0_base)
    formants = np.tile(VOWEL_FORMANTS[4], (n, 1))
    plan = _syllable_plan(seconds, rng)
    phrase_starts = [i for i, p in enumerate(plan) if p[3]] + [len(plan)]
    for first, end in zip(phrase_starts[:-1], phrase_starts[1:]):
        p0, p1 = plan[first][0], plan[end - 1][0] + plan[end - 1][1]
        span = (t >= p0) & (t < p1)
        x = (t[span] - p0) / (p1 - p0)
        rise = rng.uniform(-0.15, 0.1) if rng.random() < 0.7 else rng.uniform(0.1, 0.3)  # question lilt
        f0[span] = f0_base * (rng.uniform(1.05, 1.2) - rng.uniform(0.2, 0.35) * x + rise * x**4)
    previous = VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))]
    for start, duration, gain, _ in plan:
        i0, i1 = int(start * sample_rate), min(n, int((start + duration) * sample_rate))
        onset = 0
        if rng.random() < 0.7:  # consonant: a band-passed noise burst before the vowel
            onset = int(rng.uniform(0.02, 0.06) * sample_rate)
            band = (3500.0, 7000.0) if rng.random() < 0.4 else (1500.0, 4500.0)
            sos = signal.butter(
                4, [band[0], min(band[1], 0.45 * sample_rate)], "bandpass", fs=sample_rate, output="sos"
            )
            burst = signal.sosfilt(sos, rng.standard_normal(onset + 64))[64:]
            decay = np.exp(-np.arange(onset) / (0.4 * onset)) * np.minimum(1.0, np.arange(onset) / 16.0)
            consonants[i0 : i0 + onset] += rng.uniform(0.15, 0.4) * gain * burst * decay
        v0 = min(i1, i0 + onset)
        x = np.linspace(0.0, 1.0, i1 - v0)
        peak = rng.uniform(0.25, 0.45)  # attack/decay asymmetry of the vowel
        shape = np.where(
            x < peak, np.sin(0.5 * np.pi * x / peak), np.cos(0.5 * np.pi * (x - peak) / (1 - peak))
        )
        voiced_env[v0:i1] = np.maximum(voiced_env[v0:i1], gain * np.clip(shape, 0.0, 1.0) ** 0.7)
        vowel = VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))] * rng.uniform(0.92, 1.08, size=3)
        glide = np.clip(x / 0.3, 0.0, 1.0)[:, None]  # coarticulation: slide from the previous vowel
        formants[v0:i1] = previous + (vowel - previous) * glide
        formants[i1:] = vowel
        accent = rng.uniform(0.0, 0.2) * gain
        f0[v0:i1] *= 1.0 + accent * np.sin(np.pi * x)
        previous = vowel
    wobble = signal.sosfiltfilt(signal.butter(2, 8.0, fs=sample_rate, output="sos"), rng.standard_normal(n))
    f0 = np.clip(f0 * (1.0 + 0.4 * wobble), 100.0, 250.0)
    source = _rosenberg_pulse_train(f0, sample_rate) + 0.08 * rng.standard_normal(n)  # breathiness
    voiced = _formant_filter(source * voiced_env, formants, sample_rate)
    voiced /= np.abs(voiced).max() + 1e-9
    wave = voiced + consonants
    wave *= 0.9 / (np.abs(wave).max() + 1e-9)
    envelope = voiced_env / (voiced_env.max() + 1e-9)
    return wave.astype(np.float32), _envelope_function(envelope, sample_rate)


def _envelope_function(envelope: np.ndarray, sample_rate: int) -> EnvelopeFn:
    grid = np.arange(len(envelope)) / sample_rate

    def envelope_fn(seconds: np.ndarray) -> np.ndarray:
        """Voiced amplitude in [0, 1] at the given times in seconds (same shape, 0 outside the clip)."""
        return np.interp(np.asarray(seconds, dtype=np.float64), grid, envelope, left=0.0, right=0.0)

    return envelope_fn


def voiced_rms(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS of the voiced band (80-900 Hz) in a Hann window of two frames around each frame's centre.

    wave: (T,) -> (num_frames,) float64, in the wave's units. Zero-phase filtered, so no lag.
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    low, high = VOICED_BAND_HZ[0], min(VOICED_BAND_HZ[1], 0.45 * sample_rate)
    sos = signal.butter(4, [low, high], "bandpass", fs=sample_rate, output="sos")
    power = signal.sosfiltfilt(sos, wave) ** 2 if len(wave) > 30 else wave**2
    width = max(3, int(round(2.0 * sample_rate / fps)))
    window = np.hanning(width + 2)[1:-1]
    smoothed = signal.fftconvolve(power, window / window.sum(), mode="same")
    centres = np.clip(((np.arange(num_frames) + 0.5) / fps * sample_rate).astype(np.int64), 0, len(wave) - 1)
    return np.sqrt(np.maximum(smoothed[centres], 0.0))


def mouth_opening_from_audio(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Ground-truth mouth opening per video frame from the voiced energy of the audio.

    wave: (T,) float -> (num_frames,) float32 in [0, 1]: the voiced-band RMS divided by its 95th
    percentile over the clip, with a noise gate (below 10 % of that level the mouth is closed), so
    pauses and consonant-only stretches give 0.
    """
    if num_frames <= 0:
        return np.zeros(0, dtype=np.float32)
    rms = voiced_rms(wave, sample_rate, fps, num_frames)
    level = float(np.percentile(rms, 95))
    if level < 1e-4:
        return np.zeros(num_frames, dtype=np.float32)
    return np.clip((rms / level - 0.1) / 0.9, 0.0, 1.0).astype(np.float32)


def espeak_speech(
    text: str,
    sample_rate: int = 16000,
    rng: np.random.Generator | int | None = None,
    voice: str = "en",
    words_per_minute: int = 160,
) -> tuple[np.ndarray, EnvelopeFn]:
    """Real synthetic speech of ``text`` from the ``espeak-ng`` binary, when it is installed.

    Returns ``(wave (T,) float32 peak 0.9, envelope_fn)`` like :func:`synthesize_speech`; the envelope
    is the normalised voiced-band RMS. Without espeak-ng (or if it fails) this silently falls back
    to :func:`synthesize_speech` for about the time the text would take to say.
    """
    binary = shutil.which("espeak-ng") or shutil.which("espeak")
    if binary is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "speech.wav"
            cmd = [binary, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=60)
                wave = _read_resampled(path, sample_rate)
            except (OSError, subprocess.SubprocessError, ValueError):
                wave = None
        if wave is not None and np.abs(wave).max() > 1e-4:
            wave = (wave * (0.9 / np.abs(wave).max())).astype(np.float32)
            hop_fps = 100.0
            rms = voiced_rms(wave, sample_rate, hop_fps, int(len(wave) / sample_rate * hop_fps))
            envelope = np.repeat(rms / (rms.max() + 1e-9), sample_rate // int(hop_fps))
            return wave, _envelope_function(np.resize(envelope, len(wave)), sample_rate)
    seconds = max(1.0, len(text.split()) * 60.0 / words_per_minute + 0.5)
    return synthesize_speech(seconds, sample_rate, rng)


def _read_resampled(path: Path, sample_rate: int) -> np.ndarray:
    import librosa
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != sample_rate:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate)
    return mono.astype(np.float32)
