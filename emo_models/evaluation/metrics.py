"""One object per metric network: built from its placed weights, it turns a decoded video into the
features (FID, FVD, E-FID) or scores (Sync-C/D) the report aggregates, and states its protocol."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .i3d import FVD_CLIP_FRAMES, FVD_INPUT_SIZE, InceptionI3d
from .inception import FID_INPUT_SIZE, FIDInceptionV3
from .syncnet import (
    CROP_SCALE,
    SYNC_CROP_SIZE,
    SYNC_FPS,
    VSHIFT,
    SyncNet,
    resample_frames,
    sync_crops,
    sync_embeddings,
    sync_scores,
)
from .videos import Video
from .weights import load_metric_net


def _as_images(frames: np.ndarray, device) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0


class FIDFeatures:
    """Inception pool3 features of every ``frame_step``-th frame: video -> (N, 2048)."""

    def __init__(self, path, device, frame_step: int = 1, batch: int = 16):
        self.net = load_metric_net(path, FIDInceptionV3.from_state_dict, "FID Inception-v3").to(device)
        self.device, self.frame_step, self.batch = device, frame_step, batch
        self.protocol = dict(features="Inception-v3 pool3 (2048-d), pytorch-fid's FID network",
                             frames=f"frames 0, {frame_step}, {2 * frame_step}, ... of each video (--frame-step), "
                                    "whole frame",
                             resize=f"bilinear to {FID_INPUT_SIZE}x{FID_INPUT_SIZE} (pytorch-fid), RGB [0, 1] -> [-1, 1]")

    @torch.no_grad()
    def __call__(self, video: Video) -> np.ndarray:
        frames = video.frames[:: self.frame_step]
        out = [self.net(_as_images(frames[i:i + self.batch], self.device)).double().cpu()
               for i in range(0, len(frames), self.batch)]
        return torch.cat(out).numpy()


def fvd_clips(frames: np.ndarray, clip_frames: int = FVD_CLIP_FRAMES, size: int = FVD_INPUT_SIZE) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> non-overlapping clips (K, 3, clip_frames, size, size) in [-1, 1], K = F // clip_frames.

    VideoGPT's FVD preprocessing: shorter side scaled to ``size`` (bilinear), centre crop.
    """
    count = len(frames) // clip_frames
    x = _as_images(frames[: count * clip_frames], "cpu")
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    target = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
    x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size] * 2 - 1
    return x.reshape(count, clip_frames, 3, size, size).transpose(1, 2)


class FVDFeatures:
    """I3D logits of every non-overlapping 16-frame clip: video -> (K, 400)."""

    def __init__(self, path, device):
        self.net = load_metric_net(path, InceptionI3d.from_state_dict, "FVD I3D").to(device)
        self.device = device
        self.protocol = dict(features="I3D Kinetics-400 logits (400-d), averaged over time",
                             clips=f"non-overlapping {FVD_CLIP_FRAMES}-frame clips from the start of each video "
                                   "(a shorter remainder is dropped), native frame rate",
                             resize=f"shorter side bilinear to {FVD_INPUT_SIZE}, centre crop "
                                    f"{FVD_INPUT_SIZE}x{FVD_INPUT_SIZE} (VideoGPT), RGB [-1, 1]")

    @torch.no_grad()
    def __call__(self, video: Video) -> np.ndarray:
        if len(video.frames) < FVD_CLIP_FRAMES:
            return np.zeros((0, 0))  # no whole clip: the video adds nothing to FVD
        clips = fvd_clips(video.frames)
        out = [self.net(clip[None].to(self.device)).double().cpu() for clip in clips]
        return torch.cat(out).numpy()


class SyncScores:
    """SyncNet offset, Sync-C and Sync-D of a video with an audio track: video, audio -> dict."""

    def __init__(self, path, device):
        self.net = load_metric_net(path, SyncNet.from_state_dict, "SyncNet").to(device)
        self.device = device
        self.protocol = dict(protocol="joonson/syncnet_python run_pipeline + SyncNetInstance.evaluate",
                             frames=f"resampled to {SYNC_FPS} fps (frame shown at each instant)",
                             crop=f"face box (OpenCV Haar cascade, this package's detector, in place of S3FD), "
                                  f"median-filtered over 13 frames, crop_scale {CROP_SCALE}, "
                                  f"{SYNC_CROP_SIZE}x{SYNC_CROP_SIZE} BGR",
                             audio="16 kHz mono, 13 MFCCs (python_speech_features) of 16-bit samples",
                             offsets=f"+-{VSHIFT} frames, 5-frame windows; Sync-D = min mean distance, "
                                     "Sync-C = median - min")

    def __call__(self, video: Video, audio: np.ndarray) -> dict:
        from ..face_detect import detect_face_boxes

        frames = resample_frames(video.frames, video.fps)
        boxes = detect_face_boxes(frames)
        note = None
        if boxes[0] is None:
            h, w = frames.shape[1:3]
            boxes, note = [(0.0, 0.0, float(w), float(h))] * len(frames), "no face detected: whole frame used"
        with torch.no_grad():
            lips, sound = sync_embeddings(self.net, sync_crops(frames, boxes), audio)
        scores = sync_scores(lips, sound)
        scores.pop("mean_distances")
        return scores | ({"note": note} if note else {})


class ExpressionFeatures:
    """Blendshape substitute for E-FID's expression parameters: video -> (N, 52)."""

    def __init__(self, path, frame_step: int = 1):
        from .expression import SUBSTITUTE, BlendshapeExtractor

        self.extract, self.frame_step = BlendshapeExtractor(path), frame_step
        self.protocol = dict(substitute=SUBSTITUTE, frames=f"frames 0, {frame_step}, {2 * frame_step}, ... "
                                                           "(--frame-step) where a face is found")

    def __call__(self, video: Video) -> np.ndarray:
        return self.extract(video.frames[:: self.frame_step])


class FaceSimilarity:
    """F-SIM: cosine similarity of ArcFace embeddings, the reference portrait vs each generated frame.

    The largest face of the reference video's first frame (the portrait the video animates) is embedded
    once; every ``frame_step``-th generated frame's largest face is embedded and compared (unit-length
    embeddings, so cosine = dot product). Frames where the detector finds no face are left out and counted.
    """

    def __init__(self, recognizer, frame_step: int = 1):
        from ..face_analysis import FaceAnalysis, find_face_analysis_files

        files = find_face_analysis_files(Path(recognizer).parent)
        self.faces, self.frame_step = FaceAnalysis.from_files(files.detector, files.recognizer), frame_step
        self.protocol = dict(
            detector=files.detector.name, recognizer=files.recognizer.name,
            reference="largest face of the reference video's first frame",
            frames=f"generated frames 0, {frame_step}, {2 * frame_step}, ... (--frame-step); frames with no "
                   "face detected are left out and counted in fsim_faces",
            score="mean cosine similarity of unit-length 512-d ArcFace embeddings (x 1; the paper's 78.96 is x 100)")

    def _embedding(self, frame: np.ndarray) -> np.ndarray | None:
        from ..face_analysis import NoFaceError

        try:
            return self.faces.embed(frame, self.faces.largest_face(frame), normalize=True)
        except NoFaceError:
            return None

    def __call__(self, reference_frame: np.ndarray, generated: Video) -> dict:
        """reference_frame: (H, W, 3) uint8; generated: a decoded video -> {fsim, fsim_faces[, fsim_note]}."""
        frames = generated.frames[:: self.frame_step]
        reference = self._embedding(reference_frame)
        if reference is None:
            return dict(fsim=None, fsim_faces=f"0/{len(frames)}", fsim_note="no face in the reference's first frame")
        scores = [float(np.dot(reference, e)) for e in map(self._embedding, frames) if e is not None]
        row = dict(fsim=float(np.mean(scores)) if scores else None, fsim_faces=f"{len(scores)}/{len(frames)}")
        return row | ({} if scores else dict(fsim_note="no face found in any generated frame"))
