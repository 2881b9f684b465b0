"""Face and lip regions as Hallo draws them: from MediaPipe's face-mesh landmarks, or approximated from
the detector's 5 keypoints when MediaPipe is not available.

Hallo takes the bounding box of the face-mesh silhouette (36 landmarks) and of the outer lip contour
(20 landmarks), rounds them to whole pixels and grows each about its centre (face x ``face_expand_ratio``
= 1.2, lips x 2.0), shifting a grown box back inside the image rather than cutting it. The landmarks
come from the ``face_landmarker_v2_with_blendshapes.task`` file through MediaPipe's tasks API
(:class:`MediaPipeLandmarker`; no download, the placed file only).

Without MediaPipe, :func:`regions_from_keypoints` gives a documented substitute: the detector's face box
for the silhouette box, and for the lips a box as wide as the mouth corners are apart and half as tall
(a closed mouth's outer lip contour spans about 0.4-0.6 of its width), turned with the corners' line.
Both then grow by the same rule. It is an approximation: an open mouth is taller than it assumes.

Boxes are (x0, y0, x1, y1) floats in pixels, x1/y1 exclusive (whole numbers here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SILHOUETTE_IDS", "LIP_IDS", "FaceLandmarks", "MediaPipeLandmarker", "expand_region",
    "regions_from_landmarks", "regions_from_keypoints", "LIP_HEIGHT_PER_WIDTH",
]  # fmt: skip

Box = tuple[float, float, float, float]

# MediaPipe face-mesh indices: the face oval (forehead, temples, jaw, chin) and the outer lip contour.
SILHOUETTE_IDS = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
                  152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
LIP_IDS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375)
LIP_HEIGHT_PER_WIDTH = 0.5  # keypoint substitute: lip box height / mouth-corner distance


def _grow_span(low: float, high: float, ratio: float, limit: int) -> tuple[float, float]:
    """One axis of :func:`expand_region`: floor-halved growth about the floored middle, shifted inside."""
    middle = (low + high) // 2
    half = ((high - low) * ratio) // 2
    low, high = middle - half, middle + half
    if low < 0:
        low, high = 0.0, high - low
    if high > limit:
        low, high = low - (high - limit), float(limit)
    return float(max(low, 0.0)), float(high)  # wider than the image: Hallo's slice would wrap; we clip


def expand_region(box: Box, ratio: float, width: int, height: int) -> Box:
    """Grow a whole-pixel box by ``ratio`` about its middle as Hallo does, then shift it inside the image.

    Per axis: middle = floor((lo + hi) / 2), half = floor((hi - lo) · ratio / 2), span = middle ± half;
    a span crossing an image edge is moved back inside (its size kept), not cut.
    """
    if ratio <= 0:
        raise ValueError(f"expand ratio: {ratio}; give a positive factor (Hallo: face 1.2, lips 2.0)")
    x0, x1 = _grow_span(box[0], box[2], ratio, width)
    y0, y1 = _grow_span(box[1], box[3], ratio, height)
    return (x0, y0, x1, y1)


def _rounded_bounds(points: np.ndarray) -> Box:
    low, high = np.round(points.min(axis=0)), np.round(points.max(axis=0))
    return (float(low[0]), float(low[1]), float(high[0]), float(high[1]))


def regions_from_landmarks(points: np.ndarray, width: int, height: int, face_expand: float = 1.2,
                           lip_expand: float = 2.0) -> tuple[Box, Box]:
    """Face-mesh landmarks (>= 468, 2) in pixels -> (face box, lip box) as Hallo draws its masks."""
    points = np.asarray(points, dtype=np.float64)[:, :2]
    if len(points) < 468:
        raise ValueError(f"landmarks: {len(points)} points; give MediaPipe's face mesh (468 or 478 points)")
    face = expand_region(_rounded_bounds(points[list(SILHOUETTE_IDS)]), face_expand, width, height)
    lips = expand_region(_rounded_bounds(points[list(LIP_IDS)]), lip_expand, width, height)
    return face, lips


def regions_from_keypoints(box: Box, keypoints: np.ndarray, width: int, height: int,
                           face_expand: float = 1.2, lip_expand: float = 2.0) -> tuple[Box, Box]:
    """Substitute without landmarks: detector box + (5, 2) keypoints -> (face box, lip box).

    Face: the detector box. Lips: a rectangle centred between the mouth corners (keypoints 3 and 4), as
    wide as they are apart and ``LIP_HEIGHT_PER_WIDTH`` as tall, turned with the corners' line; its
    axis-aligned bounds. Both are rounded and grown by :func:`expand_region` like the landmark boxes.
    """
    left, right = np.asarray(keypoints, dtype=np.float64)[3:5]
    across = right - left
    span = float(np.hypot(*across))
    if span <= 0:
        raise ValueError(f"keypoints: both mouth corners at {left.tolist()}; give a detected face's keypoints")
    cos, sin = abs(across[0]) / span, abs(across[1]) / span
    half_w, half_h = span / 2, span * LIP_HEIGHT_PER_WIDTH / 2
    reach = np.array([cos * half_w + sin * half_h, sin * half_w + cos * half_h])
    centre = (left + right) / 2
    lip_bounds = _rounded_bounds(np.stack([centre - reach, centre + reach]))
    face_bounds = _rounded_bounds(np.asarray(box, dtype=np.float64).reshape(2, 2))
    return (expand_region(face_bounds, face_expand, width, height),
            expand_region(lip_bounds, lip_expand, width, height))


@dataclass(frozen=True, eq=False)
class FaceLandmarks:
    """One face's MediaPipe landmarks: points (478, 2) in pixels; blendshapes {name: score} (52)."""

    points: np.ndarray
    blendshapes: dict[str, float]

    def bounds(self) -> Box:
        """Bounding box of all points."""
        low, high = self.points.min(axis=0), self.points.max(axis=0)
        return (float(low[0]), float(low[1]), float(high[0]), float(high[1]))


def _mediapipe(task: Path):
    try:
        import mediapipe
    except ImportError as e:
        raise ImportError(
            f"face landmarks: the optional package mediapipe is not installed, so {task.name} in {task.parent} "
            "cannot run; `pip install mediapipe`, or use the keypoint substitute (regions='keypoints'), or "
            "connect a face/lip MASK or give boxes"
        ) from e
    return mediapipe


class MediaPipeLandmarker:
    """MediaPipe's FaceLandmarker (tasks API, image mode) from a placed ``.task`` file; up to ``faces`` faces."""

    def __init__(self, task: str | Path, faces: int = 4):
        self.task = Path(task)
        if not self.task.is_file():
            raise FileNotFoundError(
                f"face landmarks: {self.task.name} is not in {self.task.parent}; place Hallo's "
                "face_analysis/models/face_landmarker_v2_with_blendshapes.task there, or use the keypoint "
                "substitute (regions='keypoints'), or connect a face/lip MASK or give boxes"
            )
        mp = _mediapipe(self.task)
        vision = mp.tasks.vision
        options = vision.FaceLandmarkerOptions(
            base_options=mp.tasks.BaseOptions(model_asset_path=str(self.task)),
            running_mode=vision.RunningMode.IMAGE, num_faces=faces, output_face_blendshapes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except Exception as e:  # mediapipe raises RuntimeError/ValueError for unreadable task files
            raise ValueError(
                f"face landmarks: {self.task.name} in {self.task.parent} is not a MediaPipe face-landmarker "
                f"task file ({type(e).__name__}: {str(e).strip()[:200]}); place Hallo's original file there"
            ) from None
        self._mp = mp

    def detect(self, rgb: np.ndarray) -> list[FaceLandmarks]:
        """(H, W, 3) uint8 RGB -> every face's landmarks, in MediaPipe's order."""
        height, width = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect(image)
        shapes = result.face_blendshapes or [[] for _ in result.face_landmarks]
        faces = []
        for marks, shape in zip(result.face_landmarks, shapes):
            points = np.array([[p.x * width, p.y * height] for p in marks], dtype=np.float64)
            faces.append(FaceLandmarks(points, {c.category_name: float(c.score) for c in shape}))
        return faces

    def close(self) -> None:
        self._landmarker.close()
