"""The training-clip format ``prepare`` writes and ``train`` streams.

A dataset is a folder::

    index.json                 {"format": "emo-clips-1", "fps": 25.0, "size": 64, "clips": ["000000", ...]}
    clips/<id>/frames.npy      (F, S, S, 3) uint8, cropped around the clip's face region (memory-mapped)
    clips/<id>/audio.npy       (T,) float32 mono at 16 kHz
    clips/<id>/speed.npy       (F,) float32 head-rotation speed, degrees/frame
    clips/<id>/boxes.npy       (F, 4) float32 face boxes (x0, y0, x1, y1) in the cropped frame's pixels
    clips/<id>/audio_features.npy  (F, L, C) float16 wav2vec2 hidden states per frame (optional cache)
    clips/<id>/meta.json       {"source": ..., "frames": F, "fps": ...}

Nothing is loaded whole: frames are ``np.load(mmap_mode="r")`` slices.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

FORMAT = "emo-clips-1"


def write_clip(root: str | Path, clip_id: str, frames: np.ndarray, audio: np.ndarray, speed: np.ndarray,
               boxes: np.ndarray, fps: float, source: str = "", audio_features: np.ndarray | None = None) -> Path:
    """Write one clip (frames (F,S,S,3) uint8, audio (T,) 16 kHz, speed (F,), boxes (F,4)) atomically."""
    root = Path(root)
    folder, partial = root / "clips" / clip_id, root / "clips" / f".{clip_id}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    f = len(frames)
    if not (len(speed) == len(boxes) == f) or frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"clip {clip_id}: frames {frames.shape} {frames.dtype}, speed {len(speed)}, boxes "
                         f"{len(boxes)}; expected (F,S,S,3) uint8 with one speed and box per frame")
    np.save(partial / "frames.npy", frames)
    np.save(partial / "audio.npy", np.asarray(audio, np.float32))
    np.save(partial / "speed.npy", np.asarray(speed, np.float32))
    np.save(partial / "boxes.npy", np.asarray(boxes, np.float32))
    if audio_features is not None:
        np.save(partial / "audio_features.npy", np.asarray(audio_features, np.float16))
    (partial / "meta.json").write_text(json.dumps({"source": source, "frames": f, "fps": fps}))
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(partial, folder)
    return folder


def write_index(root: str | Path, fps: float, size: int, clips: list[str], **extra) -> None:
    """Write ``index.json`` listing the clips (call once all clips are written)."""
    data = {"format": FORMAT, "fps": fps, "size": size, "clips": sorted(clips), **extra}
    Path(root, "index.json").write_text(json.dumps(data, indent=1))


def read_index(root: str | Path) -> dict:
    """The dataset's ``index.json``; a clear error when the folder is not a prepared dataset."""
    path = Path(root) / "index.json"
    if not path.is_file():
        raise ValueError(f"dataset {root}: no index.json; make one with `python -m emo_models prepare`")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"dataset {root}: format {data.get('format')!r}, expected {FORMAT!r}")
    return data


class ClipDataset(Dataset):
    """Samples of ``frames`` consecutive frames (n motion + f target; 1 for stage 1) with their conditions.

    item: reference (3,S,S) [0,1] (another frame of the clip), frames (k,3,S,S) [0,1],
    audio_features (k + 2m, L, C) float32 (±m context), speed (k,), face_mask (1,S,S) (union of the boxes).
    Indices are (clip, start) pairs, fixed for a seed, so a resumed run sees the same order.
    """

    def __init__(self, root: str | Path, frames: int, audio_window: int = 2, stride: int | None = None):
        self.root, self.frames, self.window = Path(root), frames, audio_window
        index = read_index(root)
        self.fps, self.size = index["fps"], index["size"]
        self.items = []
        for clip in index["clips"]:
            n = json.loads((self.root / "clips" / clip / "meta.json").read_text())["frames"]
            self.items += [(clip, s) for s in range(0, n - frames + 1, stride or frames)]
        if not self.items:
            raise ValueError(f"dataset {root}: no clip has {frames} frames; prepare longer clips")

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, clip: str, name: str) -> np.ndarray:
        return np.load(self.root / "clips" / clip / f"{name}.npy", mmap_mode="r")

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip, start = self.items[i]
        frames, end = self._load(clip, "frames"), start + self.frames
        total = len(frames)
        ref_index = (start + total // 2 + i * 7919) % total  # a fixed, different frame of the same clip
        features = self._load(clip, "audio_features")
        rows = np.clip(np.arange(start - self.window, end + self.window), 0, len(features) - 1)
        boxes = np.asarray(self._load(clip, "boxes"))
        mask = torch.zeros(1, self.size, self.size)
        x0, y0 = np.floor(boxes[:, :2].min(0)).astype(int).clip(0, self.size)
        x1, y1 = np.ceil(boxes[:, 2:].max(0)).astype(int).clip(0, self.size)
        mask[:, y0:y1, x0:x1] = 1
        to_tensor = lambda a: torch.from_numpy(np.array(a)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
        return {
            "reference": to_tensor(frames[ref_index:ref_index + 1])[0],
            "frames": to_tensor(frames[start:end]),
            "audio_features": torch.from_numpy(np.asarray(features[rows], dtype=np.float32)),
            "speed": torch.from_numpy(np.array(self._load(clip, "speed")[start:end], dtype=np.float32)),
            "face_mask": mask,
        }


def missing_audio_features(root: str | Path) -> list[str]:
    """Clips of a dataset without an ``audio_features.npy`` cache."""
    root = Path(root)
    return [c for c in read_index(root)["clips"] if not (root / "clips" / c / "audio_features.npy").is_file()]


def write_audio_features(root: str | Path, clip: str, features: np.ndarray) -> None:
    """Cache a clip's wav2vec2 features (F, L, C) as float16, atomically."""
    path = Path(root) / "clips" / clip / "audio_features.npy"
    partial = path.with_name(".audio_features.partial.npy")
    np.save(partial, np.asarray(features, np.float16))
    os.replace(partial, path)
