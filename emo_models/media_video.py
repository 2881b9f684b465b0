"""Video out and in with PyAV (its bundled FFmpeg; no system ffmpeg): H.264 + AAC in mp4.

:func:`write_video` writes to a hidden temporary file beside the target and renames it onto the
target only when the file is complete, so a failed or cancelled run leaves nothing half-written.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from fractions import Fraction

import av
import numpy as np
import torch

from .media_audio import _as_channels_first, decode_audio_stream, resample

# Software H.264 encoders in order of preference; "h264" is whatever FFmpeg registers as default.
H264_ENCODERS = ("libx264", "libopenh264", "h264")
# BT.709 matrix, primaries and transfer, limited range: what players assume for web video.
_BT709, _MPEG_RANGE = 1, 1


@functools.cache
def h264_encoder() -> str:
    """Name of the first H.264 encoder in :data:`H264_ENCODERS` that this PyAV's FFmpeg can open."""
    for name in H264_ENCODERS:
        try:
            ctx = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 64, 64, "yuv420p", Fraction(1, 25)
            ctx.open()
            return ctx.codec.name
        except Exception:  # not built in, or cannot open here (e.g. a GPU encoder without a GPU)
            continue
    raise RuntimeError(
        f"video: none of the H.264 encoders {H264_ENCODERS} works in PyAV {av.__version__}'s FFmpeg; "
        "install the PyAV wheel from PyPI (pip install --force-reinstall av), which bundles libx264"
    )


def _frame_to_uint8(frame, index: int) -> np.ndarray:
    """One frame, (H, W, 3) uint8 or float in [0, 1] (numpy or torch) -> (H, W, 3) uint8 numpy."""
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu()
        frame = frame.numpy() if frame.dtype == torch.uint8 else frame.float().numpy()
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(
            f"frames: frame {index} has shape {tuple(frame.shape)}; expected (H, W, 3) RGB "
            "(convert (3, H, W) frames with permute(1, 2, 0))"
        )
    if frame.dtype == np.uint8:
        return frame
    if not np.issubdtype(frame.dtype, np.floating):
        raise ValueError(f"frames: frame {index} is {frame.dtype}; expected uint8 or float in [0, 1]")
    if not np.isfinite(frame).all():
        raise ValueError(f"frames: frame {index} contains NaN or inf; expected float values in [0, 1]")
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _iter_frames(frames) -> Iterator[np.ndarray]:
    """Frames from a (F, H, W, 3) array/tensor or any iterable of (H, W, 3) frames, as uint8."""
    if isinstance(frames, (np.ndarray, torch.Tensor)) and (frames.ndim != 4 or frames.shape[-1] != 3):
        raise ValueError(
            f"frames: shape {tuple(frames.shape)}; expected (F, H, W, 3) "
            "(convert (F, 3, H, W) with permute(0, 2, 3, 1))"
        )
    for index, frame in enumerate(frames):
        yield _frame_to_uint8(frame, index)


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by repeating the last row/column (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def _audio_for_video(audio, sample_rate: int) -> tuple[np.ndarray, int, str]:
    """Audio to mux: (C, T) float32 (the caller's array, not a copy, when it is float32 at an AAC rate), an
    AAC sample rate and a layout: stereo for 2 channels, else mono (:func:`_audio_piece` mixes more)."""
    from .media_audio import all_finite

    if sample_rate is None or sample_rate <= 0:
        raise ValueError(f"audio: sample rate {sample_rate} must be positive (e.g. 16000)")
    wave = _as_channels_first(audio, "audio")
    if not all_finite(wave):
        raise ValueError("audio: contains NaN or inf samples; re-decode the clip")
    if sample_rate not in av.codec.Codec("aac", "w").audio_rates:
        wave, sample_rate = resample(wave, int(sample_rate), 48000), 48000
    return wave, int(sample_rate), "stereo" if wave.shape[0] == 2 else "mono"


def _audio_piece(audio: np.ndarray, start: int, end: int, layout: str, sample_rate: int) -> av.AudioFrame:
    """Samples [start, end) of (C, T) audio as one encoder input frame: more than 2 channels mixed to one,
    clipped to [-1, 1], zero-padded past the end. Only this piece is copied, so the soundtrack streams."""
    chunk = audio[:, start:end]
    if layout == "mono" and chunk.shape[0] > 1:
        chunk = chunk.mean(axis=0, keepdims=True)
    chunk = np.clip(chunk, -1.0, 1.0)
    if chunk.shape[1] < end - start:
        chunk = np.pad(chunk, ((0, 0), (0, end - start - chunk.shape[1])))
    piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk, dtype=np.float32), format="fltp", layout=layout)
    piece.sample_rate = sample_rate
    piece.pts = start
    piece.time_base = Fraction(1, sample_rate)
    return piece


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | torch.Tensor | Iterable,
    fps: float,
    audio: np.ndarray | torch.Tensor | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> str:
    """Write frames (and audio) as an H.264/AAC video; return ``path``.

    frames: (F, H, W, 3) uint8, or float in [0, 1] (numpy or torch), or an iterable of (H, W, 3)
    frames (e.g. a generator, so long videos need not sit in memory). An odd H or W is padded by one
    repeated pixel. audio: (T,), (C, T) or (B, C, T) at ``sample_rate``, cut or zero-padded to the
    video's duration, muxed as AAC. crf: libx264 quality (0 lossless .. 51; 18 is visually lossless).
    The file appears at ``path`` only when complete: on any error, or Ctrl-C, the temporary file is
    removed and whatever was at ``path`` before is left as it was.
    """
    path = os.fspath(path)
    if not fps or fps <= 0:
        raise ValueError(f"video: fps {fps} must be positive, e.g. 25")
    stem, suffix = os.path.splitext(os.path.basename(path))
    if not stem or not suffix:
        raise ValueError(f"video: {path} needs a file name with an extension such as .mp4")
    rate = Fraction(fps).limit_denominator(1001)  # 25 -> 25/1, 29.97 -> 2997/100
    if audio is not None:
        audio, sample_rate, layout = _audio_for_video(audio, sample_rate)
    frame_iter = _iter_frames(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError("frames: no frames to write; give at least one (H, W, 3) frame")
    encoder = h264_encoder()

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{suffix}", dir=folder)
    os.close(fd)
    container = None
    try:
        mp4_like = suffix.lower() in (".mp4", ".mov", ".m4v")
        container = av.open(partial, "w", options={"movflags": "+faststart"} if mp4_like else {})
        video = container.add_stream(encoder, rate=rate)
        video.height, video.width = _even(first).shape[:2]
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = 1 / rate
        ctx = video.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
        ctx.color_range = _MPEG_RANGE
        if encoder == "libx264":
            video.options = {"crf": str(crf)}
        else:
            video.bit_rate = video.width * video.height * math.ceil(rate)  # ~1 bit per pixel per frame
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout=layout)
            sound.codec_context.time_base = Fraction(1, sample_rate)
        written = 0  # audio samples muxed so far
        for index, frame in enumerate(itertools.chain([first], frame_iter)):
            if frame.shape != first.shape:
                raise ValueError(
                    f"frames: frame {index} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is "
                    f"{first.shape[1]}x{first.shape[0]}; every frame must have the same size"
                )
            out = av.VideoFrame.from_ndarray(_even(frame), format="rgb24")
            out = out.reformat(format="yuv420p", dst_colorspace="itu709", dst_color_range="MPEG")
            out.pts, out.time_base = index, 1 / rate
            container.mux(video.encode(out))
            if sound is not None:  # audio up to the end of this frame, so the streams interleave
                end = math.floor(Fraction(index + 1) / rate * sample_rate + Fraction(1, 2))
                if end > written:
                    container.mux(sound.encode(_audio_piece(audio, written, end, layout, sample_rate)))
                written = end
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))
        container.close()
        container = None
        os.replace(partial, path)
    except BaseException:
        if container is not None:
            try:
                container.close()
            except Exception:  # the file is being thrown away; the first error is the one to report
                pass
        try:
            os.remove(partial)
        except FileNotFoundError:
            pass
        raise
    return path


def _open_video(path) -> av.container.InputContainer:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"video: {path} does not exist or is not a file; give the path of a video file")
    try:
        container = av.open(path)
    except Exception as e:
        raise ValueError(f"video: could not open {path} ({e}); give an mp4, mov, mkv or webm file") from e
    if not container.streams.video:
        container.close()
        raise ValueError(f"video: {path} has no video stream; give a video file, not an audio file")
    return container


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float, np.ndarray | None, int | None]:
    """Decode a whole video: ``(frames (F, H, W, 3) uint8, fps, audio (T,) float32 mono or None, sample_rate or None)``.

    Meant for tests and data preparation (everything is held in memory). Audio channels are averaged.
    """
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _fps(stream)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise ValueError(f"video: {path} has a video stream with no frames")
    with av.open(os.fspath(path)) as container:
        decoded = decode_audio_stream(container)
    audio, sample_rate = (None, None) if decoded is None else (decoded[0].mean(axis=0), decoded[1])
    return np.stack(frames), fps, audio, sample_rate


def probe_video(path: str | os.PathLike) -> dict:
    """Stream facts without decoding: ``dict(frames, fps, width, height, has_audio, audio_rate, duration, codec)``.

    frames comes from the container's count, or from counting packets when the container has none;
    duration is the video stream's length in seconds.
    """
    with _open_video(path) as container:
        stream = container.streams.video[0]
        fps = _fps(stream)
        frames = int(stream.frames)
        if frames <= 0:
            frames = sum(1 for p in container.demux(stream) if p.size > 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = frames / fps if fps else float(container.duration or 0) / av.time_base
        audio = container.streams.audio[0] if container.streams.audio else None
        return dict(
            frames=frames,
            fps=fps,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            has_audio=audio is not None,
            audio_rate=int(audio.rate) if audio is not None else None,
            duration=duration,
            codec=stream.codec_context.name,
        )
