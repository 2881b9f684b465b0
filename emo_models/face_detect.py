"""Offline face boxes from the Haar cascades that ship inside OpenCV 4.x wheels.

No download and no native build: ``cv2.data.haarcascades`` holds the cascade XML files in every
``opencv-python`` / ``-headless`` / ``-contrib`` 4.x wheel. Haar cascades find frontal and
near-frontal faces (roughly |yaw| < 30 degrees) reliably, miss strong profiles and occluded faces,
and give boxes that jitter by a few pixels between frames; :func:`detect_face_boxes` fills missed
frames from their neighbours. Boxes are ``(x0, y0, x1, y1)`` floats in pixels, x1/y1 exclusive.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "detect_face_box", "detect_face_boxes", "fill_missing_boxes", "expand_box", "union_box", "square_box",
]  # fmt: skip

Box = tuple[float, float, float, float]

# (cascade file, minNeighbors): tried in order; the first that finds a face wins.
_FRONTAL = (("haarcascade_frontalface_default.xml", 5), ("haarcascade_frontalface_alt2.xml", 3))
_PROFILE = ("haarcascade_profileface.xml", 3)
_MAX_SIDE = 640  # larger images are searched at this size (faster, same faces), boxes scaled back
_MIN_FACE = 0.08  # smallest face searched, as a fraction of the image's shorter side
_CASCADES: dict[str, object] = {}


def _cv2():
    """The cv2 module, checked for CascadeClassifier (OpenCV 5 removed it)."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError(
            "face detection: OpenCV is not installed; run `pip install 'opencv-python-headless<5'` "
            "or connect a face mask / give a face box instead of detecting"
        ) from e
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        raise ImportError(
            f"face detection: OpenCV {cv2.__version__} has no Haar CascadeClassifier (OpenCV 5 removed "
            "it); run `pip install 'opencv-python-headless<5'` or connect a face mask / give a face box"
        )
    return cv2


def _cascade(name: str):
    """Load a cascade from the wheel once; later calls reuse it."""
    if name not in _CASCADES:
        cv2 = _cv2()
        path = cv2.data.haarcascades + name
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise ImportError(
                f"face detection: {path} is missing or unreadable; reinstall "
                "`opencv-python-headless<5` (its wheel ships the Haar cascades)"
            )
        _CASCADES[name] = classifier
    return _CASCADES[name]


def _to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) / (1, 3, H, W) float tensor in [0, 1], or (H, W, 3) / (H, W) array -> (H, W, 3) uint8."""
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"image: tensor of shape {tuple(image.shape)}; give (3, H, W) float in [0, 1]")
        image = (t.clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"image: array of shape {array.shape}; give (H, W, 3) uint8 RGB")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


def _search_image(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """RGB uint8 -> equalised grayscale at most _MAX_SIDE on its longer side, and the scale used."""
    cv2 = _cv2()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, _MAX_SIDE / max(gray.shape))
    if scale < 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return cv2.equalizeHist(gray), scale


def _detect(gray: np.ndarray, name: str, neighbours: int, mirror: bool = False) -> list[Box]:
    """All boxes one cascade finds in ``gray`` (mirrored first when asked), in gray's pixels."""
    h, w = gray.shape
    side = max(20, int(_MIN_FACE * min(h, w)))
    image = gray[:, ::-1].copy() if mirror else gray
    found = _cascade(name).detectMultiScale(
        image, scaleFactor=1.1, minNeighbors=neighbours, minSize=(side, side)
    )
    boxes = []
    for x, y, bw, bh in np.asarray(found).reshape(-1, 4).tolist():
        x0 = w - (x + bw) if mirror else x
        boxes.append((float(x0), float(y), float(x0 + bw), float(y + bh)))
    return boxes


def _candidates(image: torch.Tensor | np.ndarray) -> list[Box]:
    """Face boxes from the first cascade that finds any (frontal, alt2, then profile both ways)."""
    gray, scale = _search_image(_to_uint8(image))
    boxes: list[Box] = []
    for name, neighbours in _FRONTAL:
        boxes = _detect(gray, name, neighbours)
        if boxes:
            break
    else:
        boxes = _detect(gray, *_PROFILE) + _detect(gray, *_PROFILE, mirror=True)
    return [tuple(v / scale for v in b) for b in boxes]


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: Box, b: Box) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / max(_area(a) + _area(b) - inter, 1e-9)


def detect_face_box(image: torch.Tensor | np.ndarray) -> Box | None:
    """Pixel box (x0, y0, x1, y1) of the largest face, or None when no cascade finds one.

    image: (3, H, W) float tensor in [0, 1] or (H, W, 3) uint8 RGB array. Deterministic.
    """
    boxes = _candidates(image)
    return max(boxes, key=_area) if boxes else None


def detect_face_boxes(frames: np.ndarray, every: int = 1, fill: bool = True) -> list[Box | None]:
    """Per-frame face boxes for a video; frames (F, H, W, 3) uint8 RGB -> F boxes.

    Detects on every ``every``-th frame (and the last), following one face: after the first hit (the
    largest face), each frame keeps the candidate overlapping the previous box most. With ``fill``,
    frames without a detection get boxes from :func:`fill_missing_boxes` (all None when no frame has
    a face); without it they stay None.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise ValueError(f"frames: array of shape {frames.shape}; give (F, H, W, 3) uint8 RGB")
    if every < 1:
        raise ValueError(f"every: {every}; give 1 (every frame) or more")
    count = len(frames)
    found: list[Box | None] = [None] * count
    previous: Box | None = None
    for i in sorted(set(range(0, count, every)) | ({count - 1} if count else set())):
        boxes = _candidates(frames[i])
        if not boxes:
            continue
        if previous is None:
            box = max(boxes, key=_area)
        else:
            box = max(boxes, key=lambda b: (_iou(b, previous), _area(b)))
        found[i] = previous = box
    return fill_missing_boxes(found) if fill else found


def fill_missing_boxes(boxes) -> list[Box | None]:
    """None entries -> boxes interpolated linearly between the detected neighbours, held at the ends.

    All None stays all None.
    """
    boxes = list(boxes)
    known = np.array([i for i, b in enumerate(boxes) if b is not None])
    if len(known) == 0:
        return boxes
    values = np.array([boxes[i] for i in known], dtype=np.float64)  # (K, 4)
    steps = np.arange(len(boxes))
    filled = np.stack([np.interp(steps, known, values[:, k]) for k in range(4)], axis=1)
    return [tuple(float(v) for v in row) for row in filled]


def expand_box(box: Box, factor: float, width: int, height: int) -> Box:
    """Grow a box by ``factor`` about its centre (both sides), clamped to the width x height image."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return (max(0.0, cx - hw), max(0.0, cy - hh), min(float(width), cx + hw), min(float(height), cy + hh))


def union_box(boxes) -> Box:
    """Smallest box holding every given box; None entries are skipped."""
    kept = [b for b in boxes if b is not None]
    if not kept:
        raise ValueError("boxes: no face box to unite; detect a face first or give a box")
    a = np.asarray(kept, dtype=np.float64)
    return (float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 2].max()), float(a[:, 3].max()))


def square_box(box: Box, width: int, height: int) -> Box:
    """The square of the box's longer side about its centre, shifted to lie inside the image.

    The side is capped at the image's shorter side, so the square always fits.
    """
    side = min(max(box[2] - box[0], box[3] - box[1]), float(width), float(height))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = min(max(cx - side / 2, 0.0), width - side)
    y0 = min(max(cy - side / 2, 0.0), height - side)
    return (x0, y0, x0 + side, y0 + side)
