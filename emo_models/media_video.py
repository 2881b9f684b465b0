"""Video out and in with PyAV (its bundled FFmpeg; no system ffmpeg): H.264 + AAC in mp4.

:func:`write_video` writes through :func:`~emo_models.atomic_output.atomic_file`: a hidden temporary
file beside the target, renamed onto it only when complete, so a failed or cancelled run (Ctrl-C,
SIGTERM) leaves nothing half-written. :func:`check_video_output` is the same writer's preflight, for
callers to run before any heavy work.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import av
import numpy as np
import torch

from .atomic_output import OutputError, atomic_file, check_output_file
from .media_audio import decode_audio_stream, resample
from .validation import channels_first

# Software H.264 encoders in order of preference; "h264" is whatever FFmpeg registers as default.
H264_ENCODERS = ("libx264", "libopenh264", "h264")
# Containers this writer fills with H.264 + AAC that common players open (PyAV picks the muxer by extension).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
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
    raise OutputError(
        f"video: none of the H.264 encoders {H264_ENCODERS} works in PyAV {av.__version__}'s FFmpeg; "
        "install the PyAV wheel from PyPI (pip install --force-reinstall av), which bundles libx264"
    )


def check_video_output(path: str | os.PathLike, inputs=(), force: bool = False, option: str = "out") -> str:
    """Refuse, before any heavy work, a video path :func:`write_video` could not or must not write.

    Checks: a file name ending in one of :data:`VIDEO_SUFFIXES`, not a folder, not one of ``inputs``, a
    folder that is (or can be created) writable, nothing there already unless ``force``, an H.264
    encoder in this PyAV. Raises :class:`~emo_models.atomic_output.OutputError` naming ``option``;
    returns the path.
    """
    checked = str(check_output_file(path, suffixes=VIDEO_SUFFIXES, inputs=inputs, force=force, option=option,
                                    kind="video"))
    h264_encoder()
    return checked


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


def _iter_frames(frames, first_index: int = 0) -> Iterator[np.ndarray]:
    """Frames from a (F, H, W, 3) array/tensor or any iterable of (H, W, 3) frames, as uint8."""
    if isinstance(frames, (np.ndarray, torch.Tensor)) and (frames.ndim != 4 or frames.shape[-1] != 3):
        raise ValueError(
            f"frames: shape {tuple(frames.shape)}; expected (F, H, W, 3) "
            "(convert (F, 3, H, W) with permute(0, 2, 3, 1))"
        )
    for index, frame in enumerate(frames, start=first_index):
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
    wave = channels_first(audio, "audio")
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


class VideoWriter:
    """An H.264/AAC video fed frames as they are made, that appears at ``path`` only when complete.

    ::

        with VideoWriter("talk.mp4", fps=25, audio=wave, sample_rate=44100) as video:
            for clip in clips:           # e.g. each clip as soon as it is decoded
                video.write(clip)        # (F, H, W, 3) or one (H, W, 3) frame, uint8 or float in [0, 1]

    Frames go to a temporary file beside ``path`` (:func:`~emo_models.atomic_output.atomic_file`); the
    audio is muxed alongside, up to the end of each frame. When the block ends cleanly the streams are
    flushed and the file renamed onto ``path``; on any error, Ctrl-C or SIGTERM (which raises while
    the block runs) it is removed and ``path`` is left as it was. Formats as :func:`write_video`.
    """

    def __init__(self, path: str | os.PathLike, fps: float, audio=None, sample_rate: int = 16000, crf: int = 18,
                 force: bool = False, option: str = "out"):
        self.path = os.fspath(path)
        if not fps or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"video: fps {fps} must be a positive number, e.g. 25")
        check_video_output(self.path, force=force, option=option)
        self.force, self.option, self.crf, self.frames = force, option, crf, 0
        self.rate = Fraction(fps).limit_denominator(1001)  # 25 -> 25/1, 29.97 -> 2997/100
        self.audio, self.sample_rate, self.layout = (None, sample_rate, None) if audio is None else \
            _audio_for_video(audio, sample_rate)
        self._stack = contextlib.ExitStack()
        self._container = self._video = self._sound = self._shape = None
        self._muxed = 0  # audio samples muxed so far

    def __enter__(self) -> VideoWriter:
        partial = self._stack.enter_context(atomic_file(self.path, force=self.force, option=self.option))
        mp4_like = os.path.splitext(self.path)[1].lower() in (".mp4", ".mov", ".m4v")
        try:
            self._container = av.open(partial, "w", options={"movflags": "+faststart"} if mp4_like else {})
        except BaseException as err:
            self._abort(err)
        return self

    def write(self, frames) -> None:
        """Append frames: (F, H, W, 3), one (H, W, 3) frame, or an iterable of frames."""
        if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 3:
            frames = frames[None]
        for frame in _iter_frames(frames, first_index=self.frames):
            self._put(frame)

    def _put(self, frame: np.ndarray) -> None:
        if self._video is None:
            self._shape = frame.shape
            self._video = _add_video_stream(self._container, h264_encoder(), self.rate, _even(frame), self.crf)
            if self.audio is not None:
                self._sound = self._container.add_stream("aac", rate=self.sample_rate, layout=self.layout)
                self._sound.codec_context.time_base = Fraction(1, self.sample_rate)
        elif frame.shape != self._shape:
            first = self._shape
            raise ValueError(f"frames: frame {self.frames} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is "
                             f"{first[1]}x{first[0]}; every frame must have the same size")
        out = av.VideoFrame.from_ndarray(_even(frame), format="rgb24")
        out = out.reformat(format="yuv420p", dst_colorspace="itu709", dst_color_range="MPEG")
        out.pts, out.time_base = self.frames, 1 / self.rate
        self._container.mux(self._video.encode(out))
        self.frames += 1
        if self._sound is not None:  # audio up to the end of this frame, so the streams interleave
            end = math.floor(Fraction(self.frames) / self.rate * self.sample_rate + Fraction(1, 2))
            if end > self._muxed:
                piece = _audio_piece(self.audio, self._muxed, end, self.layout, self.sample_rate)
                self._container.mux(self._sound.encode(piece))
            self._muxed = end

    def __exit__(self, kind, err, traceback) -> bool:
        if kind is not None:
            self._close_quietly()
            return self._stack.__exit__(kind, err, traceback)
        try:
            if self.frames == 0:
                raise ValueError("frames: no frames to write; give at least one (H, W, 3) frame")
            self._container.mux(self._video.encode(None))
            if self._sound is not None:
                self._container.mux(self._sound.encode(None))
            self._container.close()
        except BaseException as failure:
            self._abort(failure)
        return self._stack.__exit__(None, None, None)

    def _close_quietly(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is being thrown away; the first error is the one to report
                pass

    def _abort(self, failure: BaseException):
        """Remove the temporary file and raise ``failure`` (or the clearer OutputError the cleanup raises)."""
        self._close_quietly()
        self._stack.__exit__(type(failure), failure, failure.__traceback__)
        raise failure


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | torch.Tensor | Iterable,
    fps: float,
    audio: np.ndarray | torch.Tensor | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
    force: bool = True,
) -> str:
    """Write frames (and audio) as an H.264/AAC video; return ``path``.

    frames: (F, H, W, 3) uint8, or float in [0, 1] (numpy or torch), or an iterable of (H, W, 3)
    frames (e.g. a generator, so long videos need not sit in memory; :class:`VideoWriter` takes them
    pushed instead). An odd H or W is padded by one repeated pixel. audio: (T,), (C, T) or (B, C, T)
    at ``sample_rate``, cut or zero-padded to the video's duration, muxed as AAC. crf: libx264 quality
    (0 lossless .. 51; 18 is visually lossless). The file appears at ``path`` only when complete: on
    any error, Ctrl-C or SIGTERM the temporary file is removed and whatever was at ``path`` before is
    left as it was. path: a file name ending in one of :data:`VIDEO_SUFFIXES`; force: replace an
    existing file (False: refuse, see :func:`check_video_output`). The first frame is checked before
    anything is created.
    """
    frame_iter = _iter_frames(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError("frames: no frames to write; give at least one (H, W, 3) frame")
    with VideoWriter(path, fps, audio=audio, sample_rate=sample_rate, crf=crf, force=force) as video:
        video.write(first)
        for frame in frame_iter:
            video.write(frame)
    return os.fspath(path)


def _add_video_stream(container, encoder: str, rate: Fraction, first: np.ndarray, crf: int):
    """The H.264 stream of ``container``: yuv420p, BT.709 limited range, crf (libx264) or ~1 bit/pixel."""
    video = container.add_stream(encoder, rate=rate)
    video.height, video.width = first.shape[:2]
    video.pix_fmt = "yuv420p"
    video.codec_context.time_base = 1 / rate
    ctx = video.codec_context
    ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
    ctx.color_range = _MPEG_RANGE
    if encoder == "libx264":
        video.options = {"crf": str(crf)}
    else:
        video.bit_rate = video.width * video.height * math.ceil(rate)  # ~1 bit per pixel per frame
    return video


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
