"""Procedural talking-face clips for training and benchmarking the demo EMO model, with no downloads.

A clip is one random person (:mod:`.synthetic_face`) saying speech-like audio (:mod:`.synthetic_audio`)
whose voiced energy drives the mouth, with blinks and a smooth head sway at a chosen rotation speed.
Everything is drawn from ``numpy.random.SeedSequence(seed)``, so a seed gives the same bytes on every
run. The measuring functions read mouth opening, head motion and identity colours back from pixels,
so a trained model's output can be scored against the clip it imitates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..head_pose import rotation_speed
from .synthetic_audio import espeak_speech, mouth_opening_from_audio, synthesize_speech
from .synthetic_face import FaceIdentity, face_box_for_pose, random_identity, render_face

__all__ = [
    "FaceIdentity",
    "TalkingClip",
    "espeak_speech",
    "face_colours",
    "generate_clip",
    "head_sway",
    "identity_error",
    "measure_head_motion",
    "measure_mouth_opening",
    "mouth_opening_from_audio",
    "random_identity",
    "render_face",
    "synthesize_speech",
    "write_clip_video",
]

SPEED_RANGE = (0.05, 1.5)  # degrees/frame, the clip-to-clip range of head-rotation speed
_AXIS_WEIGHTS = np.array([1.0, 0.6, 0.4])  # yaw, pitch, roll share of the sway
_SHIFT_PER_DEGREE = np.array([0.0025, 0.0015])  # head translation (image fraction) per degree yaw, pitch


@dataclass
class TalkingClip:
    """One procedural talking-face clip and its ground truth.

    frames (F, H, W, 3) uint8 RGB; audio (T,) float32 mono at ``sample_rate``; mouth_open (F,) in
    [0, 1]; head_pose (F, 3) yaw/pitch/roll in degrees; speed (F,) head-rotation speed in
    degrees/frame; blink (F,) in [0, 1]; face_box (x0, y0, x1, y1) pixels, the union of the face
    outline over the clip; speed_scale the clip's mean speed in degrees/frame.
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float
    mouth_open: np.ndarray
    head_pose: np.ndarray
    speed: np.ndarray
    blink: np.ndarray
    face_box: tuple[int, int, int, int]
    identity: FaceIdentity
    speed_scale: float


def head_sway(
    num_frames: int, fps: float, speed_deg_per_frame: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random head rotation whose mean speed is ``speed_deg_per_frame`` (to 1e-6 relative).

    Speed is :func:`..head_pose.rotation_speed`'s, the geodesic angle between consecutive head
    rotations, so demo clips and prepared real videos carry the same units. Each axis is a sum of three
    sinusoids (0.15-0.6 Hz before time scaling); faster clips get a larger sway (5-18 degrees of yaw)
    and a faster tempo. Returns (num_frames, 3) yaw/pitch/roll in degrees.
    """
    t = np.arange(num_frames) / fps
    freqs = rng.uniform(0.15, 0.6, size=(3, 3))
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(3, 3))
    weights = rng.uniform(0.5, 1.0, size=(3, 3))
    weights /= weights.sum(axis=1, keepdims=True)
    amplitude = float(np.clip(5.0 + 9.0 * speed_deg_per_frame, 5.0, 18.0))

    def sway(tempo: float) -> np.ndarray:
        waves = np.sin(2.0 * np.pi * tempo * freqs[None] * t[:, None, None] + phases[None])  # (F, axis, k)
        return amplitude * _AXIS_WEIGHTS * (weights[None] * waves).sum(axis=2)

    if num_frames < 2 or speed_deg_per_frame <= 0:
        return np.zeros((num_frames, 3))
    pose = sway(speed_deg_per_frame / max(rotation_speed(sway(1.0)).mean(), 1e-6))
    for _ in range(8):  # rescale the angles until the geodesic mean speed is the one asked for
        measured = max(rotation_speed(pose).mean(), 1e-9)
        if abs(measured / speed_deg_per_frame - 1.0) < 1e-7:
            break
        pose = pose * (speed_deg_per_frame / measured)
    return pose


def _blinks(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure per frame, (F,) in [0, 1]: a ~0.15 s blink every 2-5 s (peak within each frame)."""
    fine = 8
    t = np.arange(num_frames * fine) / (fps * fine)
    closure = np.zeros_like(t)
    start = rng.uniform(0.3, 2.5)
    while start < num_frames / fps:
        duration = rng.uniform(0.12, 0.18)
        inside = (t >= start) & (t <= start + duration)
        closure[inside] = np.sin(np.pi * (t[inside] - start) / duration)
        start += rng.uniform(2.0, 5.0)
    return closure.reshape(num_frames, fine).max(axis=1)


def generate_clip(
    seed: int,
    seconds: float = 4.0,
    fps: float = 25.0,
    size: int = 128,
    speed_deg_per_frame: float | None = None,
    sample_rate: int = 16000,
) -> TalkingClip:
    """Render one deterministic talking-face clip of ``round(seconds * fps)`` frames at size x size.

    The identity depends on the seed alone (not on length or size); the head's mean rotation speed is
    ``speed_deg_per_frame``, or drawn from ``SPEED_RANGE`` when None.
    """
    num_frames = int(round(seconds * fps))
    if num_frames < 1:
        raise ValueError(f"seconds * fps: {seconds} s at {fps} fps is no frame; give at least one frame")
    identity_seq, audio_seq, motion_seq = np.random.SeedSequence(seed).spawn(3)
    identity = random_identity(np.random.default_rng(identity_seq))
    audio, _ = synthesize_speech(num_frames / fps, sample_rate, np.random.default_rng(audio_seq))
    mouth = mouth_opening_from_audio(audio, sample_rate, fps, num_frames)
    motion = np.random.default_rng(motion_seq)
    speed_scale = (
        float(motion.uniform(*SPEED_RANGE)) if speed_deg_per_frame is None else float(speed_deg_per_frame)
    )
    pose = head_sway(num_frames, fps, speed_scale, motion)
    blink = _blinks(num_frames, fps, motion)
    shifts = pose[:, :2] * _SHIFT_PER_DEGREE
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    boxes = np.empty((num_frames, 4), np.int64)
    for i in range(num_frames):
        yaw, pitch, roll = (float(a) for a in pose[i])
        shift = (float(shifts[i, 0]), float(shifts[i, 1]))
        frames[i] = render_face(identity, size, float(mouth[i]), yaw, pitch, roll, shift, float(blink[i]))
        boxes[i] = face_box_for_pose(identity, size, yaw, pitch, roll, shift)
    face_box = (
        int(boxes[:, 0].min()),
        int(boxes[:, 1].min()),
        int(boxes[:, 2].max()),
        int(boxes[:, 3].max()),
    )
    return TalkingClip(
        frames=frames,
        audio=audio,
        sample_rate=sample_rate,
        fps=float(fps),
        mouth_open=mouth,
        head_pose=pose.astype(np.float32),
        speed=rotation_speed(pose).astype(np.float32),
        blink=blink.astype(np.float32),
        face_box=face_box,
        identity=identity,
        speed_scale=speed_scale,
    )


def write_clip_video(clip: TalkingClip, path: str | os.PathLike, crf: int = 18) -> Path:
    """Write the clip as an H.264 (yuv420p) + AAC mp4 with PyAV; returns the path.

    The file appears only when complete (written beside it, then renamed). Odd sizes are padded by
    one pixel, as yuv420p needs even dimensions.
    """
    import av

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial.mp4")
    frames = clip.frames
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "h264"
            video = container.add_stream(codec, rate=Fraction(clip.fps).limit_denominator(1001))
            video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            if codec == "libx264":
                video.options = {"crf": str(crf), "preset": "medium"}
            audio = container.add_stream("aac", rate=clip.sample_rate)
            audio.layout = "mono"
            for frame in frames:
                container.mux(
                    video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
                )
            container.mux(video.encode(None))
            chunk = 1024
            samples = np.asarray(clip.audio, dtype=np.float32)
            for start in range(0, len(samples), chunk):
                block = samples[start : start + chunk]
                audio_frame = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
                audio_frame.sample_rate, audio_frame.pts = clip.sample_rate, start
                container.mux(audio.encode(audio_frame))
            container.mux(audio.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _box_region(
    face_box: tuple[int, int, int, int],
    fx: tuple[float, float],
    fy: tuple[float, float],
    shape: tuple[int, int],
) -> tuple[slice, slice]:
    x0, y0, x1, y1 = face_box
    w, h = x1 - x0, y1 - y0
    ys = slice(max(0, int(round(y0 + fy[0] * h))), min(shape[0], max(int(round(y0 + fy[1] * h)), 1)))
    xs = slice(max(0, int(round(x0 + fx[0] * w))), min(shape[1], max(int(round(x0 + fx[1] * w)), 1)))
    return ys, xs


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


MOUTH_REGION = ((0.28, 0.72), (0.6, 0.94))  # (x, y) fractions of the face box that hold the mouth


def measure_mouth_opening(frames: np.ndarray, face_box: tuple[int, int, int, int]) -> np.ndarray:
    """Mouth opening read from pixels: dark mass in the lower-middle of the face box.

    frames (F, H, W, 3) uint8 RGB; face_box (x0, y0, x1, y1) -> (F,) float32, about 0 for closed
    lips and about 1 for a wide-open mouth. Per frame, each pixel's darkness relative to the
    region's median (the skin) is summed; this is linear in the pixels, so blur does not change it
    and noise adds only a constant. Compare with the ground truth by correlation.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected (F, H, W, 3) uint8 RGB, got shape {frames.shape}")
    ys, xs = _box_region(face_box, *MOUTH_REGION, frames.shape[1:3])
    luma = _luma(frames[:, ys, xs])
    skin = np.median(luma.reshape(len(frames), -1), axis=1)[:, None, None]
    darkness = np.clip(1.0 - luma / np.maximum(skin, 1.0), 0.0, None)
    box_area = max(1, (face_box[2] - face_box[0]) * (face_box[3] - face_box[1]))
    return (darkness.sum(axis=(1, 2)) / (0.02 * box_area)).astype(np.float32)


def measure_head_motion(frames: np.ndarray, face_box: tuple[int, int, int, int] | None = None) -> float:
    """Mean motion of the face in pixels/frame, from dense optical flow (Farneback).

    frames (F, H, W, 3) uint8 RGB -> float. Flow is averaged over the face box when given, else
    over the pixels that differ from the background colour (the median of the top border).
    """
    frames = np.asarray(frames)
    if len(frames) < 2:
        return 0.0
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    if face_box is not None:
        mask = np.zeros(frames.shape[1:3], bool)
        ys, xs = _box_region(face_box, (0.0, 1.0), (0.0, 1.0), frames.shape[1:3])
        mask[ys, xs] = True
    else:
        background = np.median(frames[:, 0].reshape(-1, 3), axis=0)
        mask = (np.abs(frames.astype(np.int16) - background).sum(axis=-1) > 40).any(axis=0)
    if not mask.any():
        return 0.0
    motion = []
    for prev, nxt in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        motion.append(float(np.linalg.norm(flow, axis=-1)[mask].mean()))
    return float(np.mean(motion))


def face_colours(frame: np.ndarray, face_box: tuple[int, int, int, int]) -> np.ndarray:
    """Identity descriptor: median skin, hair and background colours of one frame.

    frame (H, W, 3) uint8 RGB; face_box (x0, y0, x1, y1) -> (3, 3) float32 in [0, 1], rows skin,
    hair (just inside the top of the face box), background (top border).
    """
    frame = np.asarray(frame)
    regions = [
        _box_region(face_box, (0.25, 0.75), (0.5, 0.8), frame.shape[:2]),
        _box_region(face_box, (0.35, 0.65), (0.0, 0.1), frame.shape[:2]),
    ]
    patches = [frame[ys, xs].reshape(-1, 3) for ys, xs in regions]
    patches.append(frame[: max(1, frame.shape[0] // 16)].reshape(-1, 3))
    colours = [np.median(p, axis=0) if len(p) else np.zeros(3) for p in patches]
    return (np.stack(colours) / 255.0).astype(np.float32)


def identity_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two :func:`face_colours` descriptors, (k, 3) each -> [0, 1]."""
    return float(np.mean(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))
