"""The procedural talking-face data: deterministic, lip-synced, measurable from pixels."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from emo_models.demo import synthetic_audio
from emo_models.demo.synthetic import (
    espeak_speech,
    face_colours,
    generate_clip,
    identity_error,
    measure_head_motion,
    measure_mouth_opening,
    mouth_opening_from_audio,
    random_identity,
    render_face,
    synthesize_speech,
    write_clip_video,
)
from emo_models.head_pose import rotation_speed

SR = 16000


def _degrade(frames: np.ndarray, sigma: float, noise: float, seed: int = 0) -> np.ndarray:
    """What a diffusion model's output looks like to a measurement: blurred and noisy."""
    rng = np.random.default_rng(seed)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]).astype(np.float32)
    return np.clip(blurred + rng.normal(0.0, noise, frames.shape), 0, 255).astype(np.uint8)


def _pitch_track(wave: np.ndarray, sample_rate: int = SR) -> np.ndarray:
    """Autocorrelation pitch (Hz) of each loud 50 ms window."""
    hop, width = sample_rate // 50, sample_rate // 20
    loud = np.sqrt(np.mean(wave.astype(np.float64) ** 2))  # the clip's RMS, pauses included
    lo, hi = sample_rate // 400, sample_rate // 70
    pitches = []
    for start in range(0, len(wave) - width, hop):
        x = wave[start : start + width].astype(np.float64)
        if np.sqrt(np.mean(x**2)) < loud:
            continue
        x -= x.mean()
        ac = np.correlate(x, x, "full")[width - 1 :]
        pitches.append(sample_rate / (lo + int(np.argmax(ac[lo:hi]))))
    return np.array(pitches)


def _spectral_flatness(wave: np.ndarray, width: int = 1024) -> float:
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), width)[::width]
    loud = frames[np.sqrt((frames**2).mean(axis=1)) > 0.05]
    power = np.abs(np.fft.rfft(loud * np.hanning(width), axis=1)) ** 2 + 1e-12
    return float(np.mean(np.exp(np.log(power).mean(axis=1)) / power.mean(axis=1)))


def test_same_seed_gives_identical_clip_bytes():
    a, b = generate_clip(7, seconds=1.0, size=64), generate_clip(7, seconds=1.0, size=64)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.audio.tobytes() == b.audio.tobytes()
    assert np.array_equal(a.head_pose, b.head_pose) and np.array_equal(a.mouth_open, b.mouth_open)
    assert a.face_box == b.face_box and a.identity == b.identity
    assert generate_clip(8, seconds=1.0, size=64).frames.tobytes() != a.frames.tobytes()


def test_clip_shapes_and_identity_do_not_depend_on_length():
    clip = generate_clip(3, seconds=1.2, fps=25, size=64, speed_deg_per_frame=0.5)
    assert clip.frames.shape == (30, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (int(1.2 * SR),) and clip.audio.dtype == np.float32
    assert clip.mouth_open.shape == clip.speed.shape == clip.blink.shape == (30,)
    assert clip.head_pose.shape == (30, 3)
    assert clip.speed.mean() == pytest.approx(0.5, rel=1e-4)
    x0, y0, x1, y1 = clip.face_box
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert generate_clip(3, seconds=0.4, size=32).identity == clip.identity


def test_clip_speed_is_the_geodesic_rotation_speed_that_prepare_measures_on_real_videos():
    """Demo-trained and data-trained models learn the same units: degrees/frame of the rotation angle
    between consecutive head poses, not the norm of the Euler-angle steps (a few % apart)."""
    for speed in (0.2, 1.3):
        clip = generate_clip(4, seconds=4.0, size=32, speed_deg_per_frame=speed)
        np.testing.assert_allclose(clip.speed, rotation_speed(clip.head_pose), rtol=1e-5)
        assert clip.speed.mean() == pytest.approx(speed, rel=1e-5)
    euler = np.linalg.norm(np.diff(clip.head_pose.astype(np.float64), axis=0), axis=1)
    assert np.abs(clip.speed[1:] / euler - 1).max() > 0.01


def test_speech_has_varying_pitch_formant_colour_and_pauses():
    wave, _ = synthesize_speech(6.0, SR, np.random.default_rng(1))
    assert wave.dtype == np.float32 and wave.shape == (6 * SR,)
    assert np.abs(wave).max() == pytest.approx(0.9, abs=1e-3)
    pitch = _pitch_track(wave)
    assert len(pitch) > 20
    assert 90 <= np.median(pitch) <= 260 and pitch.std() > 8.0, "intonation: pitch must move"
    tone = (0.9 * np.sin(2 * np.pi * 150 * np.arange(SR) / SR)).astype(np.float32)
    assert _spectral_flatness(wave) > 20 * _spectral_flatness(tone), "a voice is not a pure tone"
    windows = wave[: len(wave) // 800 * 800].reshape(-1, 800)
    silent = np.sqrt((windows.astype(np.float64) ** 2).mean(axis=1)) < 0.01
    assert 0.1 < silent.mean() < 0.6, "speech has pauses between phrases, and speech between pauses"


def test_mouth_is_closed_in_pauses_and_opens_on_vowels():
    fps, seconds = 25.0, 6.0
    wave, envelope = synthesize_speech(seconds, SR, np.random.default_rng(2))
    mouth = mouth_opening_from_audio(wave, SR, fps, int(seconds * fps))
    assert mouth.min() >= 0.0 and mouth.max() <= 1.0
    centres = (np.arange(len(mouth)) + 0.5) / fps
    nearby = centres[:, None] + np.linspace(-1.5, 1.5, 31)[None] / fps
    pause = envelope(nearby).max(axis=1) < 1e-3
    assert pause.sum() >= 10
    assert mouth[pause].max() < 0.05
    assert mouth[~pause].max() > 0.9 and (mouth > 0.3).mean() > 0.2


def test_silence_keeps_the_mouth_shut():
    assert not mouth_opening_from_audio(np.zeros(SR, np.float32), SR, 25.0, 25).any()


@pytest.mark.parametrize("size", [64, 128])
def test_measured_mouth_opening_tracks_ground_truth(size):
    clip = generate_clip(11, seconds=3.0, size=size)
    measured = measure_mouth_opening(clip.frames, clip.face_box)
    assert measured.shape == clip.mouth_open.shape
    assert np.corrcoef(measured, clip.mouth_open)[0, 1] >= 0.95
    degraded = measure_mouth_opening(_degrade(clip.frames, sigma=size / 64, noise=8.0), clip.face_box)
    assert np.corrcoef(degraded, clip.mouth_open)[0, 1] >= 0.8


def test_measured_head_motion_grows_with_speed():
    motion = [
        measure_head_motion(generate_clip(5, seconds=2.0, size=64, speed_deg_per_frame=s).frames)
        for s in (0.2, 0.7, 1.3)
    ]
    assert motion[0] < motion[1] < motion[2]
    assert (
        measure_head_motion(np.repeat(render_face(random_identity(np.random.default_rng(0)), 64)[None], 3, 0))
        < 1e-3
    )


def test_identities_differ_between_seeds_and_hold_within_a_clip():
    a, b = generate_clip(20, seconds=1.0, size=64), generate_clip(21, seconds=1.0, size=64)
    assert a.identity != b.identity
    same = identity_error(face_colours(a.frames[0], a.face_box), face_colours(a.frames[-1], a.face_box))
    other = identity_error(face_colours(a.frames[0], a.face_box), face_colours(b.frames[0], b.face_box))
    assert 0.0 <= same < 0.02 and other > 0.05
    assert face_colours(a.frames[0], a.face_box).shape == (3, 3)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_rendered_mouth_and_eyes_follow_their_controls(size):
    identity = random_identity(np.random.default_rng(4))
    closed, wide = render_face(identity, size, mouth_open=0.0), render_face(identity, size, mouth_open=1.0)
    assert closed.shape == (size, size, 3) and closed.dtype == np.uint8
    dark = [(img.astype(int).sum(axis=-1) < 150).sum() for img in (closed, wide)]
    assert dark[1] > dark[0] + (size / 32) ** 2
    shut = render_face(identity, size, blink=1.0)
    assert np.abs(shut.astype(int) - closed.astype(int)).sum() > 0
    turned = render_face(identity, size, head_yaw_deg=20.0, head_roll_deg=10.0)
    assert np.abs(turned.astype(int) - closed.astype(int)).mean() > 1.0


def test_clip_video_is_h264_with_aac_and_every_frame(tmp_path):
    clip = generate_clip(9, seconds=1.0, fps=25, size=64)
    path = write_clip_video(clip, tmp_path / "clip.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.audio[0].rate == SR
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == len(clip.frames)
    assert np.abs(decoded[5].astype(int) - clip.frames[5].astype(int)).mean() < 4.0


def test_espeak_speech_falls_back_to_the_synthesizer_without_the_binary(monkeypatch):
    monkeypatch.setattr(synthetic_audio.shutil, "which", lambda name: None)
    wave, envelope = espeak_speech("a short sentence to say", SR, np.random.default_rng(0))
    assert wave.dtype == np.float32 and len(wave) >= SR
    assert envelope(np.array([-1.0])) == 0.0
