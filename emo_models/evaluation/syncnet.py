"""SyncNet's lip-sync scores, Sync-C (confidence) and Sync-D (distance), as its authors compute them.

Protocol of joonson/syncnet_python (``run_pipeline.py`` + ``SyncNetInstance.evaluate``), followed step
by step: video at 25 fps and audio at 16 kHz; the face crop is the detected face box, median-filtered
over 13 frames, grown by ``crop_scale`` 0.4 and shifted down to hold the mouth, padded with grey 110
and resized to 224x224; frames are BGR 0..255. Audio: 16-bit samples -> 13 MFCCs at 100 Hz
(python_speech_features defaults). Each of the first ``min(frames, samples // 640) - 5`` frames starts
a 5-frame window (lip branch) and a 20-MFCC window (audio branch); for every audio offset in
``[-15, 15]`` frames the mean embedding distance over all windows is taken; Sync-D is the smallest
mean distance, Sync-C is ``median - min`` of those 31 means, the offset is where the minimum lies.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .weights import channels, published_sizes

SYNC_FPS = 25
SYNC_SAMPLE_RATE = 16000
SYNC_CROP_SIZE = 224
CROP_SCALE = 0.4
VSHIFT = 15
WINDOW = 5  # video frames per lip window; 20 MFCC frames per audio window


def _bn_relu(kind, n):
    return [kind(n), nn.ReLU(inplace=True)]


class SyncNet(nn.Module):
    """joonson/syncnet_python's ``S``, same layer indices (``netcnnlip.0.weight`` ...).

    lips (N, 3, 5, 224, 224) BGR 0..255 -> (N, D); mfcc (N, 1, 13, 20) -> (N, D); D = 1024 published.
    """

    def __init__(self, embedding_dim: int = 1024, width: float = 1.0):
        super().__init__()
        c = lambda n: channels(n, width)  # noqa: E731
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, c(64), 3, 1, 1), *_bn_relu(nn.BatchNorm2d, c(64)), nn.MaxPool2d(1, 1),
            nn.Conv2d(c(64), c(192), 3, 1, 1), *_bn_relu(nn.BatchNorm2d, c(192)), nn.MaxPool2d(3, (1, 2)),
            nn.Conv2d(c(192), c(384), 3, padding=1), *_bn_relu(nn.BatchNorm2d, c(384)),
            nn.Conv2d(c(384), c(256), 3, padding=1), *_bn_relu(nn.BatchNorm2d, c(256)),
            nn.Conv2d(c(256), c(256), 3, padding=1), *_bn_relu(nn.BatchNorm2d, c(256)), nn.MaxPool2d(3, 2),
            nn.Conv2d(c(256), c(512), (5, 4)), *_bn_relu(nn.BatchNorm2d, c(512)),
        )
        self.netfcaud = nn.Sequential(nn.Linear(c(512), c(512)), nn.BatchNorm1d(c(512)), nn.ReLU(),
                                      nn.Linear(c(512), embedding_dim))
        self.netfclip = nn.Sequential(nn.Linear(c(512), c(512)), nn.BatchNorm1d(c(512)), nn.ReLU(),
                                      nn.Linear(c(512), embedding_dim))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, c(96), (5, 7, 7), (1, 2, 2)), *_bn_relu(nn.BatchNorm3d, c(96)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(c(96), c(256), (1, 5, 5), (1, 2, 2), (0, 1, 1)), *_bn_relu(nn.BatchNorm3d, c(256)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(nn.BatchNorm3d, c(256)),
            nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(nn.BatchNorm3d, c(256)),
            nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), *_bn_relu(nn.BatchNorm3d, c(256)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(c(256), c(512), (1, 6, 6)), *_bn_relu(nn.BatchNorm3d, c(512)),
        )

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> SyncNet:
        """The module whose widths fit a syncnet_v2.model-layout state dict."""
        width, dim = published_sizes(state_dict, "SyncNet", "syncnet_v2.model (joonson/syncnet_python)",
                                     ("netcnnaud.0.weight", 64), "netfclip.3.weight")
        return cls(embedding_dim=dim, width=width)

    def forward_lip(self, lips: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(lips).flatten(1))

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))


def mfcc(wave: np.ndarray) -> np.ndarray:
    """16 kHz mono float (T,) in [-1, 1] -> (13, T // 160 ish) MFCCs of its 16-bit samples, as the authors'.

    python_speech_features.mfcc with its defaults (25 ms windows every 10 ms, 26 filters, energy as c0).
    """
    try:
        import python_speech_features
    except ImportError as err:
        raise ImportError("sync: SyncNet's MFCC front end needs python_speech_features; run "
                          "`pip install python_speech_features`") from err
    samples = np.clip(np.round(np.asarray(wave, np.float64) * 32768.0), -32768, 32767)
    return python_speech_features.mfcc(samples, SYNC_SAMPLE_RATE).T.astype(np.float32)


def resample_frames(frames: np.ndarray, fps: float, target: float = SYNC_FPS) -> np.ndarray:
    """(F, ...) at ``fps`` -> frames at ``target`` fps, each the frame shown at that instant."""
    if abs(fps - target) < 1e-3:
        return frames
    count = max(1, math.floor(len(frames) * target / fps))
    index = np.minimum(np.floor(np.arange(count) * fps / target + 1e-6).astype(int), len(frames) - 1)
    return frames[index]


def sync_crops(frames: np.ndarray, boxes) -> np.ndarray:
    """Face crops SyncNet reads: frames (F, H, W, 3) RGB uint8, boxes F x (x0, y0, x1, y1) -> (F, 224, 224, 3) BGR.

    run_pipeline.py's crop_video: box half-size and centre median-filtered over 13 frames (fewer in
    shorter clips); rows
    ``cy - s .. cy + s(1 + 2·0.4)``, columns ``cx ± s(1 + 0.4)`` of the frame padded with 110.
    """
    import cv2
    from scipy.signal import medfilt

    b = np.asarray(boxes, np.float64)
    # scipy's medfilt zero-pads, as in the authors' code; a clip under 13 frames gets the largest odd
    # kernel it holds, so the zeros never outnumber its boxes (identical from 13 frames on)
    kernel = min(13, len(b) - 1 + len(b) % 2)
    size = medfilt(np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2, kernel)
    cy, cx = medfilt((b[:, 1] + b[:, 3]) / 2, kernel), medfilt((b[:, 0] + b[:, 2]) / 2, kernel)
    crops = []
    for frame, s, y, x in zip(frames, size, cy, cx):
        pad = int(s * (1 + 2 * CROP_SCALE))
        padded = np.pad(frame[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        my, mx = y + pad, x + pad
        face = padded[int(my - s):int(my + s * (1 + 2 * CROP_SCALE)), int(mx - s * (1 + CROP_SCALE)):int(mx + s * (1 + CROP_SCALE))]
        crops.append(cv2.resize(np.ascontiguousarray(face), (SYNC_CROP_SIZE, SYNC_CROP_SIZE)))
    return np.stack(crops)


@torch.no_grad()
def sync_embeddings(net: SyncNet, crops: np.ndarray, wave: np.ndarray, batch: int = 20):
    """Lip and audio embeddings of every window: crops (F, 224, 224, 3) BGR uint8 at 25 fps, wave (T,) 16 kHz
    -> (video (N, D), audio (N, D)), N = min(F, T // 640) - 5 (the authors' window count)."""
    coefficients = torch.from_numpy(mfcc(wave))  # (13, M)
    windows = min(len(crops), len(wave) // 640) - WINDOW
    if windows < 1:
        raise ValueError(f"sync: {len(crops)} frames / {len(wave) / SYNC_SAMPLE_RATE:.2f} s of audio; SyncNet needs "
                         f"more than {WINDOW} frames (0.2 s) of both")
    video = torch.from_numpy(np.ascontiguousarray(crops)).float().permute(3, 0, 1, 2)  # (3, F, H, W)
    device = next(net.parameters()).device
    lips, audio = [], []
    for start in range(0, windows, batch):
        idx = range(start, min(windows, start + batch))
        lips.append(net.forward_lip(torch.stack([video[:, i:i + WINDOW] for i in idx]).to(device)).cpu())
        audio.append(net.forward_aud(torch.stack([coefficients[None, :, 4 * i:4 * i + 20] for i in idx]).to(device)).cpu())
    return torch.cat(lips), torch.cat(audio)


def sync_scores(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> dict:
    """Offset, Sync-D and Sync-C from window embeddings (N, D) each, as SyncNetInstance.evaluate.

    Returns ``dict(offset, sync_d, sync_c, mean_distances)``; offset k means the video shows at frame
    i what the audio says at frame i - k (positive: the picture lags the sound).
    """
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    span = 2 * vshift + 1
    dists = torch.stack([torch.nn.functional.pairwise_distance(video[[i]].repeat(span, 1), padded[i:i + span])
                         for i in range(len(video))], 1)  # (span, N)
    mean = dists.mean(dim=1)
    minval, minidx = torch.min(mean, 0)
    return dict(offset=int(vshift - minidx), sync_d=float(minval), sync_c=float(torch.median(mean) - minval),
                mean_distances=mean.tolist())
