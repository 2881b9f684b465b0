"""The demo model's data: procedural talking faces written straight into the training-clip format.

Clips come from :func:`.synthetic.generate_clip` with their ground truth (face box, per-frame head
speed), so no detection or tracking runs. Audio features come from the demo checkpoint's own frozen
wav2vec2 and are cached per clip (``audio_features.npy``), as ``prepare`` does for real videos.

Training and held-out clips draw their seeds from disjoint ranges: training clip ``i`` of run seed
``s`` is ``s * TRAIN_STRIDE + i`` (< ``HELD_OUT_BASE``), held-out clip ``i`` is ``HELD_OUT_BASE + i``.
A held-out clip therefore has an identity and an audio never seen in training.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from ..audio import audio_features
from ..training.dataset import write_clip, write_index
from .synthetic import TalkingClip, generate_clip

TRAIN_STRIDE = 100_000  # training seeds of run seed s: s*TRAIN_STRIDE ... s*TRAIN_STRIDE + count - 1
HELD_OUT_BASE = 1_000_000_000  # held-out seeds: HELD_OUT_BASE + i (benchmark clips, bundled sample)
SAMPLE_INDEX = 100  # the held-out clip the bundled demo portrait and audio come from


def train_seed(index: int, run_seed: int = 0) -> int:
    """Seed of training clip ``index`` of a run; always below :data:`HELD_OUT_BASE`."""
    if not 0 <= index < TRAIN_STRIDE:
        raise ValueError(f"training clip index {index}: expected 0 <= index < {TRAIN_STRIDE}")
    seed = run_seed * TRAIN_STRIDE + index
    if seed >= HELD_OUT_BASE:
        raise ValueError(f"run seed {run_seed}: its training seeds reach the held-out range; use a seed < "
                         f"{HELD_OUT_BASE // TRAIN_STRIDE}")
    return seed


def held_out_seed(index: int) -> int:
    """Seed of held-out clip ``index`` (never used for training)."""
    return HELD_OUT_BASE + index


def held_out_clip(index: int, seconds: float = 4.0, size: int = 64, fps: float = 25.0,
                  speed: float | None = None) -> TalkingClip:
    """Held-out clip ``index``: a new identity saying new audio, (F, size, size, 3) frames."""
    return generate_clip(held_out_seed(index), seconds=seconds, fps=fps, size=size, speed_deg_per_frame=speed)


def clip_audio_features(audio_encoder: torch.nn.Module, clip: TalkingClip) -> np.ndarray:
    """The clip's wav2vec2 hidden states at its frame rate: (F, L, C) float32."""
    return audio_features(audio_encoder, clip.audio, len(clip.frames)).cpu().numpy()


def write_demo_dataset(root: str | Path, audio_encoder: torch.nn.Module, count: int, *, seconds: float = 4.0,
                       size: int = 64, fps: float = 25.0, run_seed: int = 0,
                       on_clip: Callable[[int, int], None] | None = None) -> Path:
    """Render ``count`` training clips into a dataset folder (``index.json`` + ``clips/``); returns it.

    Each clip: frames (F, size, size, 3) uint8, audio (T,) 16 kHz, per-frame head speed (F,) in
    degrees/frame, the clip's face box on every frame (F, 4), cached audio features (F, L, C).
    An existing folder is replaced only once the new one is complete.
    """
    root = Path(root)
    partial = root.with_name(f".{root.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    ids = []
    with torch.no_grad():
        for i in range(count):
            seed = train_seed(i, run_seed)
            clip = generate_clip(seed, seconds=seconds, fps=fps, size=size)
            boxes = np.tile(np.asarray(clip.face_box, np.float32), (len(clip.frames), 1))
            clip_id = f"{i:06d}"
            write_clip(partial, clip_id, clip.frames, clip.audio, clip.speed, boxes, fps,
                       source=f"synthetic seed {seed}", audio_features=clip_audio_features(audio_encoder, clip))
            ids.append(clip_id)
            if on_clip is not None:
                on_clip(i + 1, count)
    write_index(partial, fps, size, ids, source="emo_models.demo.data", run_seed=run_seed,
                seeds=[train_seed(i, run_seed) for i in range(count)])
    if root.exists():
        shutil.rmtree(root)
    os.replace(partial, root)
    return root


def dataset_frames(root: str | Path, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every ``every``-th frame of each clip of a dataset, for the autoencoder:
    frames (N, S, S, 3) uint8 and their face boxes (N, 4)."""
    root = Path(root)
    clips = json.loads((root / "index.json").read_text())["clips"]
    frames = [np.load(root / "clips" / c / "frames.npy")[::every] for c in clips]
    boxes = [np.load(root / "clips" / c / "boxes.npy")[::every] for c in clips]
    return np.concatenate(frames), np.concatenate(boxes)


def clips_seeds(root: str | Path) -> Iterable[int]:
    """The synthetic seeds a demo dataset was rendered from (to prove none is held out)."""
    return json.loads((Path(root) / "index.json").read_text()).get("seeds", [])
