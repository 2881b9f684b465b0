"""InsightFace's SCRFD detector and ArcFace recogniser, run from their ``.onnx`` files with onnxruntime.

The maths InsightFace's ``FaceAnalysis`` wraps around these two files, in our own code, so users need
neither the ``insightface`` package (a native build) nor its model downloads:

- **SCRFD** (``scrfd_10g_bnkps.onnx``): the image is scaled to fit a 640x640 canvas (aspect kept, pasted
  top-left, zeros elsewhere), normalised as ``(rgb - 127.5) / 128``. Per stride s in (8, 16, 32) the
  network scores 2 anchors at every cell centre ``(j·s, i·s)`` and predicts, in units of s, the
  distances from that centre to the box's left/top/right/bottom and the offsets of 5 keypoints. Anchors
  scoring >= 0.5 are decoded, mapped back to the image and thinned by non-maximum suppression (IoU > 0.4
  with a higher-scored box, in InsightFace's +1-pixel box convention, suppresses).
- **ArcFace** (``glintr100.onnx``): the 5 keypoints are mapped by the least-squares similarity transform
  (Umeyama) onto the ArcFace template in a 112x112 crop; the crop, ``(rgb - 127.5) / 127.5``, gives a
  512-d embedding, returned as the network outputs it (not normalised). InsightFace fits the transform
  in float32 (scikit-image keeps the keypoints' dtype), we in float64: the matrices differ by ~1e-4 px,
  enough to move some of OpenCV's 1/32-pixel sampling steps, so embeddings match to ~1e-3, not bitwise.

Images here are (H, W, 3) uint8 RGB arrays; boxes (x0, y0, x1, y1) floats in pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "SCRFDDetector", "ArcFaceRecognizer", "letterbox_blob", "anchor_centres", "decode_distances",
    "nms", "similarity_transform", "align_face", "ARCFACE_TEMPLATE",
]  # fmt: skip

# The 5 keypoints' places in ArcFace's 112x112 crop: eyes, nose tip, mouth corners (image left, right).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
ARCFACE_SIZE = 112
DET_SIZE = (640, 640)  # (width, height) the detector sees when its file leaves the size open
DET_THRESHOLD = 0.5
NMS_IOU = 0.4
STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


def _ort():
    """The onnxruntime module; missing is an error naming the packages to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            "face analysis: the optional package onnxruntime is not installed; run `pip install onnxruntime` "
            "(or `pip install onnxruntime-gpu` for CUDA, not both) to run the face-analysis .onnx files"
        ) from e
    return onnxruntime


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise ImportError(
            "face analysis: OpenCV is not installed; run `pip install 'opencv-python-headless<5'`"
        ) from e
    return cv2


def open_model(path: Path, role: str, providers: list[str] | None = None):
    """(onnxruntime session, its inputs, its outputs) for ``path``; a file onnxruntime cannot read is
    refused, naming it and the folder. ``providers`` default: CUDA when available, then CPU."""
    ort = _ort()
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own classes for unreadable protobufs and graphs
        raise ValueError(
            f"face analysis: {path.name} in {path.parent} is not a readable ONNX model ({type(e).__name__}: "
            f"{str(e).strip()[:200]}); expected the {role}: place the original file there"
        ) from None
    return session, session.get_inputs(), session.get_outputs()


def _refuse(path: Path, role: str, found: str, expected: str):
    return ValueError(
        f"face analysis: {path.name} in {path.parent} is not the {role}: it has {found}, expected {expected}; "
        "place the original file from Hallo's face_analysis/models/ there"
    )


def _describe(nodes) -> str:
    return ", ".join(f"{n.name}{list(n.shape)}" for n in nodes) or "none"


def letterbox_blob(rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 RGB -> ((1, 3, h, w) float32 detector input, scale image pixels -> input pixels).

    ``size`` is (w, h). The image is resized (bilinear) to fit with its aspect ratio, pasted top-left on
    black, and normalised as (x - 127.5) / 128 (so the black margin reads -0.996).
    """
    cv2 = _cv2()
    width, height = size
    image_ratio = float(rgb.shape[0]) / rgb.shape[1]
    if image_ratio > float(height) / width:
        new_height, new_width = height, int(height / image_ratio)
    else:
        new_width, new_height = width, int(width * image_ratio)
    scale = float(new_height) / rgb.shape[0]
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:new_height, :new_width] = cv2.resize(rgb, (new_width, new_height))
    blob = (canvas.astype(np.float32) - 127.5) * np.float32(1.0 / 128.0)
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), scale


def anchor_centres(rows: int, cols: int, stride: int, anchors: int = ANCHORS_PER_CELL) -> np.ndarray:
    """(rows·cols·anchors, 2) float32 anchor centres (x, y) = (j·stride, i·stride), row-major, each repeated."""
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


def decode_distances(centres: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, stride: int):
    """Anchor centres (N, 2), box distances (N, 4) and keypoint offsets (N, 10), in strides ->
    boxes (N, 4) as x0, y0, x1, y1 and keypoints (N, 5, 2), in input pixels."""
    d = boxes * stride
    decoded = np.concatenate([centres - d[:, :2], centres + d[:, 2:]], axis=1)
    points = centres[:, None, :] + keypoints.reshape(-1, keypoints.shape[1] // 2, 2) * stride
    return decoded, points


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first.

    A box is dropped when it overlaps a kept, higher-scored box by IoU > ``iou``; areas count pixels
    inclusively, (x1 - x0 + 1)·(y1 - y0 + 1), as InsightFace does.
    """
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(scores)[::-1]  # numpy's default sort, reversed, as InsightFace: tied scores keep its order
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return keep


class SCRFDDetector:
    """SCRFD with keypoints (3 strides x 2 anchors, 9 outputs: scores, boxes, keypoints per stride)."""

    role = "face detector (SCRFD with 5 keypoints, e.g. scrfd_10g_bnkps.onnx)"

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        self.path = Path(path)
        self.session, inputs, outputs = open_model(self.path, self.role, providers)
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            raise _refuse(self.path, self.role, f"inputs {_describe(inputs)}", "one (1, 3, H, W) image input")
        if len(outputs) != 3 * len(STRIDES):
            raise _refuse(self.path, self.role, f"{len(outputs)} outputs ({_describe(outputs)})",
                          "9: scores, boxes and keypoints for strides 8, 16, 32")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in outputs]
        height, width = inputs[0].shape[2:]
        fixed = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
        self.size = (width, height) if fixed else DET_SIZE

    def _levels(self, outs: list[np.ndarray]):
        """Raw outputs -> per stride (scores (N,), boxes (N, 4), keypoints (N, 10)), shapes checked."""
        width, height = self.size
        levels = []
        for k, stride in enumerate(STRIDES):
            parts = [o[0] if o.ndim == 3 else o for o in (outs[k], outs[k + 3], outs[k + 6])]
            rows = (height // stride) * (width // stride) * ANCHORS_PER_CELL
            if [p.shape for p in parts] != [(rows, 1), (rows, 4), (rows, 10)]:
                raise _refuse(self.path, self.role, f"output shapes {[p.shape for p in parts]} at stride {stride}",
                              f"{[(rows, 1), (rows, 4), (rows, 10)]} for a {width}x{height} input")
            levels.append((parts[0][:, 0], parts[1], parts[2]))
        return levels

    def detect(self, rgb: np.ndarray, threshold: float = DET_THRESHOLD):
        """(H, W, 3) uint8 RGB -> boxes (K, 4), scores (K,), keypoints (K, 5, 2) in image pixels,
        after NMS, best score first."""
        blob, scale = letterbox_blob(rgb, self.size)
        outs = self.session.run(self.output_names, {self.input_name: blob})
        boxes, scores, points = [], [], []
        for stride, (score, distance, offset) in zip(STRIDES, self._levels(outs)):
            width, height = self.size
            centres = anchor_centres(height // stride, width // stride, stride)
            hit = score >= threshold
            decoded, kps = decode_distances(centres[hit], distance[hit], offset[hit], stride)
            boxes.append(decoded)
            scores.append(score[hit])
            points.append(kps)
        boxes, scores, points = np.concatenate(boxes) / scale, np.concatenate(scores), np.concatenate(points) / scale
        for _ in range(2):  # InsightFace sorts twice before NMS sorts again; same sorts, same order of ties
            order = np.argsort(scores)[::-1]
            boxes, scores, points = boxes[order], scores[order], points[order]
        keep = nms(boxes, scores)
        return boxes[keep], scores[keep], points[keep]


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of the rotation + uniform scale + translation taking ``source`` (N, 2) points
    closest to ``target`` (N, 2) in least squares (Umeyama 1991, no reflection)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mean_s, mean_t = source.mean(0), target.mean(0)
    src, dst = source - mean_s, target - mean_t
    spread = (src**2).sum() / len(src)
    if spread <= 1e-12:
        raise ValueError(f"keypoints: all at {source[0].tolist()}; give 5 distinct face keypoints")
    u, sigma, vt = np.linalg.svd(dst.T @ src / len(src))
    sign = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) > 0 else -1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / spread)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_t - scale * rotation @ mean_s
    return matrix


def align_face(rgb: np.ndarray, keypoints: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """(H, W, 3) uint8 + (5, 2) keypoints -> (size, size, 3) uint8 crop with the keypoints on the ArcFace
    template (bilinear, black outside the image)."""
    matrix = similarity_transform(keypoints, ARCFACE_TEMPLATE * (size / ARCFACE_SIZE))
    return _cv2().warpAffine(rgb, matrix, (size, size), borderValue=0.0)


class ArcFaceRecognizer:
    """ArcFace identity embedding from a (N, 3, 112, 112) RGB input normalised to [-1, 1]."""

    role = "face recogniser (ArcFace, e.g. glintr100.onnx)"

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        self.path = Path(path)
        self.session, inputs, outputs = open_model(self.path, self.role, providers)
        expected = f"one (N, 3, {ARCFACE_SIZE}, {ARCFACE_SIZE}) image input"
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, ARCFACE_SIZE, ARCFACE_SIZE]:
            raise _refuse(self.path, self.role, f"inputs {_describe(inputs)}", expected)
        if len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise _refuse(self.path, self.role, f"outputs {_describe(outputs)}", "one (N, D) embedding output")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name

    def embed(self, rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB + the face's (5, 2) keypoints -> (D,) float32 embedding, unnormalised."""
        crop = align_face(rgb, keypoints)
        blob = (crop.astype(np.float32) - 127.5) / np.float32(127.5)
        out = self.session.run([self.output_name], {self.input_name: blob.transpose(2, 0, 1)[None].copy()})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)
