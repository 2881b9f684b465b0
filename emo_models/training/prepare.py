"""``python -m emo_models prepare``: talking-head videos -> the clip dataset ``train`` reads.

Per video (mp4, mov, mkv, webm, avi under VIDEOS, searched recursively; each decoded whole, in
memory): resample the frames to ``fps`` (nearest frame by timestamp) and the sound to 16 kHz mono,
cut into clips of ``clip_seconds`` (0: the whole video), and for each clip find the face in every
frame (:mod:`..face_detect`, 5 detections a second, the rest interpolated), crop a square around the
union of its boxes grown by ``expand`` (shifted to stay inside the frame, edge-padded only when it
cannot), resize to size x size, measure the head-rotation speed (:mod:`..head_pose`) and, given a
wav2vec2, cache its features. Videos without sound, silent clips and clips with a face in less than
half the frames searched are reported and skipped, never kept.

A face box may be given instead of detected (``--face-box`` for every video, or a sidecar
``<video>.face.json`` = {"box": [x0, y0, x1, y1] or one per frame, "speed": [per source frame]}),
for drawn faces Haar cascades miss; real footage should go through detection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..face_detect import detect_face_boxes, fill_missing_boxes, square_box, union_box
from ..face_region import FaceBox, parse_box
from ..head_pose import head_poses, rotation_speed
from ..media import SILENCE_PEAK, read_video, resample
from .dataset import write_clip, write_index

__all__ = ["VIDEO_SUFFIXES", "PrepareReport", "prepare_videos", "add_prepare_arguments", "write_face_sidecar"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
SAMPLE_RATE = 16000
MIN_FACE_FRACTION = 0.5  # a clip needs a face in at least this share of the frames searched
MIN_CLIP_FRAMES = 8


@dataclass
class PrepareReport:
    """What ``prepare_videos`` wrote and what it skipped (with why)."""

    clips: list[dict] = field(default_factory=list)  # {"id", "source", "frames", "face_found", "mean_speed"}
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (video or clip, reason)

    def __str__(self) -> str:
        lines = [f"{len(self.clips)} clips written, {len(self.skipped)} skipped"]
        lines += [f"  skipped {source}: {reason}" for source, reason in self.skipped]
        return "\n".join(lines)


def write_face_sidecar(video: str | Path, box, speed=None) -> Path:
    """Write ``<video>.face.json``: the face box(es) in source pixels and optionally the speed per
    source frame (degrees/frame), for videos whose faces detection cannot find (drawn faces)."""
    data = {"box": np.asarray(box, dtype=float).tolist()}
    if speed is not None:
        data["speed"] = np.asarray(speed, dtype=float).tolist()
    path = Path(f"{video}.face.json")
    path.write_text(json.dumps(data))
    return path


def _read_sidecar(video: Path) -> dict | None:
    path = Path(f"{video}.face.json")
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    box = np.asarray(data.get("box", []), dtype=np.float64)
    if box.shape[-1:] != (4,) or box.ndim > 2:
        raise ValueError(
            f"{path}: 'box' must be [x0, y0, x1, y1] or one such box per frame; got shape {box.shape}"
        )
    speed = data.get("speed")
    return {"box": box, "speed": None if speed is None else np.asarray(speed, dtype=np.float64)}


def _frame_indices(count: int, fps_in: float, fps_out: float) -> np.ndarray:
    """Source frame nearest to each output frame's timestamp: (round(count / fps_in * fps_out),)."""
    total = int(round(count / fps_in * fps_out))
    return np.clip(np.round(np.arange(total) * fps_in / fps_out).astype(np.int64), 0, count - 1)


def _crop_square(frames: np.ndarray, box, size: int) -> np.ndarray:
    """Crop (F, H, W, 3) to the square ``box`` (edge-padded where it leaves the frame) -> (F, size, size, 3)."""
    import cv2

    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    side = max(1, int(round(box[2] - box[0])))
    h, w = frames.shape[1:3]
    pads = (max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w))
    out = np.empty((len(frames), size, size, 3), np.uint8)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    for i, frame in enumerate(frames):
        piece = frame[max(0, y0) : y0 + side, max(0, x0) : x0 + side]
        if any(pads):
            piece = cv2.copyMakeBorder(piece, *pads, cv2.BORDER_REPLICATE)
        out[i] = cv2.resize(piece, (size, size), interpolation=interpolation)
    return out


def _crop_region(boxes, width: int, height: int, expand: float) -> tuple[float, float, float, float]:
    """Square around the union of the boxes grown by ``expand``: shifted inside the frame when it fits,
    else centred on the face (and padded by :func:`_crop_square`)."""
    union = union_box(boxes)
    cx, cy = (union[0] + union[2]) / 2, (union[1] + union[3]) / 2
    side = max(union[2] - union[0], union[3] - union[1]) * expand
    square = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    return square_box(square, width, height) if side <= min(width, height) else square


def _given_boxes(face_box, sidecar: dict | None, indices: np.ndarray, source_frames: int):
    """Boxes per output frame from --face-box or a sidecar, or None to detect."""
    if sidecar is not None:
        box = sidecar["box"]
        if box.ndim == 2:
            if len(box) != source_frames:
                raise ValueError(
                    f"face sidecar: {len(box)} boxes for {source_frames} frames; give one per frame"
                )
            return [tuple(b) for b in box[indices]]
        return [tuple(box)] * len(indices)
    if face_box is not None:
        return [tuple(float(v) for v in face_box)] * len(indices)
    return None


def _clip_ranges(total: int, fps: float, clip_seconds: float) -> list[tuple[int, int]]:
    """(start, end) output frames of each clip; a short tail joins the clip before it."""
    if clip_seconds <= 0:
        return [(0, total)]
    length = max(MIN_CLIP_FRAMES, int(round(clip_seconds * fps)))
    starts = list(range(0, total, length))
    if len(starts) > 1 and total - starts[-1] < length // 2:
        starts.pop()
    return [(s, starts[k + 1] if k + 1 < len(starts) else total) for k, s in enumerate(starts)]


def _clip_name(videos_dir: Path, video: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(video.relative_to(videos_dir).with_suffix("")))


def _prepare_video(video: Path, name: str, out_dir: Path, fps: float, size: int, clip_seconds: float,
                   expand: float, face_box, audio_encoder, report: PrepareReport) -> None:  # fmt: skip
    """Write the clips of one video into ``out_dir``; reasons to skip go into the report."""
    source, source_fps, audio, rate = read_video(video)
    if audio is None or rate is None:
        report.skipped.append((str(video), "no audio stream; EMO learns from speech, give videos with sound"))
        return
    if source_fps <= 0:
        report.skipped.append((str(video), "frame rate unknown; re-encode it with a constant frame rate"))
        return
    indices = _frame_indices(len(source), source_fps, fps)
    wave = resample(np.asarray(audio, np.float32), int(rate), SAMPLE_RATE)
    sidecar = _read_sidecar(video)
    height, width = source.shape[1:3]
    if isinstance(face_box, FaceBox):  # fractions are of each video's own size
        face_box = face_box.pixels(width, height)
    given = _given_boxes(face_box, sidecar, indices, len(source))
    sidecar_speed = None
    if sidecar is not None and sidecar["speed"] is not None:
        sidecar_speed = sidecar["speed"][np.clip(indices, 0, len(sidecar["speed"]) - 1)] * source_fps / fps
    every = max(1, int(round(fps / 5)))  # five detections a second; the rest are interpolated
    for k, (start, end) in enumerate(_clip_ranges(len(indices), fps, clip_seconds)):
        clip_id = f"{name}-{k:03d}"
        if end - start < MIN_CLIP_FRAMES:
            report.skipped.append((clip_id, f"{end - start} frames; a clip needs at least {MIN_CLIP_FRAMES}"))
            continue
        samples = slice(int(round(start * SAMPLE_RATE / fps)), int(round(end * SAMPLE_RATE / fps)))
        clip_wave = np.zeros(samples.stop - samples.start, np.float32)
        piece = wave[samples]
        clip_wave[: len(piece)] = piece
        if np.abs(clip_wave).max(initial=0.0) < SILENCE_PEAK:
            report.skipped.append((clip_id, "silent audio; EMO learns from speech, give clips with sound"))
            continue
        frames = source[indices[start:end]]
        if given is None:
            raw = detect_face_boxes(frames, every=every, fill=False)
            searched = len(set(range(0, len(frames), every)) | {len(frames) - 1})
            found = sum(b is not None for b in raw) / searched
            if found < MIN_FACE_FRACTION:
                report.skipped.append((clip_id, f"face found in {found:.0%} of the frames searched (needs "
                                                f"{MIN_FACE_FRACTION:.0%}); give talking-head footage"))  # fmt: skip
                continue
            boxes = fill_missing_boxes(raw)
        else:
            boxes, found = given[start:end], 1.0
        region = _crop_region(boxes, width, height, expand)
        crop = _crop_square(frames, region, size)
        scale = size / (region[2] - region[0])
        offset = np.array(region[:2] * 2)
        crop_boxes = np.clip((np.asarray(boxes, np.float64) - offset) * scale, 0, size).astype(np.float32)
        if sidecar_speed is not None:
            speed = sidecar_speed[start:end]
        else:
            speed = rotation_speed(head_poses(crop, [tuple(b) for b in crop_boxes]))
        features = None
        if audio_encoder is not None:
            from ..audio import audio_features

            features = audio_features(audio_encoder, clip_wave, num_frames=len(crop)).cpu().numpy()
        write_clip(out_dir, clip_id, crop, clip_wave, speed, crop_boxes, fps, source=str(video),
                   audio_features=features)  # fmt: skip
        report.clips.append({"id": clip_id, "source": str(video), "frames": len(crop),
                             "face_found": round(found, 3), "mean_speed": round(float(np.mean(speed)), 4)})  # fmt: skip


def prepare_videos(
    videos_dir: str | Path,
    out_dir: str | Path,
    fps: float = 25.0,
    size: int = 512,
    clip_seconds: float = 0.0,
    audio_encoder=None,
    on_progress: Callable[[int, int], None] | None = None,
    expand: float = 1.8,
    face_box: FaceBox | tuple[float, float, float, float] | None = None,
) -> PrepareReport:
    """Turn every video under ``videos_dir`` into clips of ``out_dir`` (see the module notes).

    audio_encoder: a wav2vec2 module (features cached per clip) or None; on_progress(done, total)
    after each video; face_box: one box for every video instead of detection, in source pixels or a
    :class:`~emo_models.face_region.FaceBox` (fractions are of each video's size).
    Returns the report; ``index.json`` lists the clips written by this call.
    """
    from tqdm.auto import tqdm

    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    if not videos_dir.is_dir():
        raise ValueError(f"videos: {videos_dir} is not a folder; give a folder of mp4/mov/mkv/webm/avi files")
    if fps <= 0 or size < 16 or size % 8:
        raise ValueError(
            f"fps {fps}, size {size}: give fps > 0 and a size that is a multiple of 8 (e.g. 512)"
        )
    videos = sorted(p for p in videos_dir.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise ValueError(f"videos: no {'/'.join(VIDEO_SUFFIXES)} file under {videos_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = PrepareReport()
    for done, video in enumerate(tqdm(videos, desc="prepare", unit="video"), start=1):
        try:
            _prepare_video(video, _clip_name(videos_dir, video), out_dir, fps, size, clip_seconds, expand,
                           face_box, audio_encoder, report)  # fmt: skip
        except ValueError as err:  # an unreadable file is reported, the rest still prepared
            report.skipped.append((str(video), str(err)))
        if on_progress is not None:
            on_progress(done, len(videos))
    for source, reason in report.skipped:
        print(f"prepare: skipped {source}: {reason}")
    write_index(out_dir, fps, size, [c["id"] for c in report.clips])
    return report


def run_prepare(args) -> int:
    """The ``prepare`` command: load the checkpoint's wav2vec2 when given, prepare, print the report."""
    encoder = None
    if args.checkpoint:
        from ..loading import load_pipeline

        pipeline, _ = load_pipeline(args.checkpoint)
        encoder = pipeline.audio_encoder.eval()
    report = prepare_videos(args.videos, args.out, fps=args.fps, size=args.size, clip_seconds=args.clip_seconds,
                            audio_encoder=encoder, expand=args.expand, face_box=parse_box(args.face_box, "--face-box"))  # fmt: skip
    print(report)
    if encoder is None:
        print("no --checkpoint: audio features not cached; `train` computes them with its wav2vec2")
    return 0 if report.clips else 1


def add_prepare_arguments(p) -> None:
    """Options of ``python -m emo_models prepare`` (listed in :data:`emo_models.cli.COMMANDS`)."""
    p.add_argument(
        "--videos", required=True, help="folder of mp4/mov/mkv/webm/avi files (searched recursively)"
    )
    p.add_argument("--out", required=True, help="dataset folder to write (index.json + clips/)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the clips (the model's fps)")
    p.add_argument("--size", type=int, default=512, help="square crop size in pixels (multiple of 8)")
    p.add_argument(
        "--clip-seconds", type=float, default=0.0, help="cut videos into clips this long; 0: whole"
    )
    p.add_argument("--checkpoint", default=None, help="EMO checkpoint whose wav2vec2 computes audio features "
                   "(default: none; `train` computes them)")
    p.add_argument("--expand", type=float, default=1.8, help="crop = union of face boxes grown by this")
    p.add_argument("--face-box", default="auto",
                   help="'auto' (detect) or x0,y0,x1,y1 for every video, as fractions of the video or pixels; "
                        "<video>.face.json overrides")  # fmt: skip
