"""E-FID's expression parameters, by a documented substitute: MediaPipe Face Landmarker blendshapes.

The EMO paper computes E-FID on the expression coefficients of a 3-D face reconstruction model that
is not available to us. The substitute is the 52 ARKit-style blendshape scores (jawOpen,
mouthSmileLeft, browInnerUp, ... ; the ``_neutral`` score is dropped) that MediaPipe's Face
Landmarker predicts per frame from ``face_landmarker_v2_with_blendshapes.task`` (the file Hallo's
``face_analysis/models`` already holds). Like 3DMM expression coefficients they describe the
expression apart from identity and head pose, but they live on another scale: E-FID figures from
this substitute are comparable with each other, not with the paper's 0.116. The report names it.
MediaPipe is optional: without it, or without the file, E-FID is skipped with a message. Its Tasks
API as called here was checked against mediapipe 1.2.3 (option names, image format); no .task file
is available offline, so the blendshape model itself has not been run here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUBSTITUTE = ("MediaPipe Face Landmarker blendshapes (52 ARKit-style scores per frame, _neutral dropped), "
              "in place of the paper's 3-D face reconstruction expression coefficients")


def mediapipe_problem() -> str | None:
    """Why the MediaPipe Tasks API cannot be used here, or None when it imports."""
    try:
        from mediapipe.tasks.python import vision  # noqa: F401
    except Exception as err:  # ImportError, or a native library that fails to load
        return (f"efid: skipped, MediaPipe's Tasks API does not import ({type(err).__name__}: {err}); "
                "install it with `pip install mediapipe` (it also installs opencv-contrib-python, another cv2 "
                "distribution, and matplotlib) to compute E-FID with the blendshape substitute")
    return None


class BlendshapeExtractor:
    """frames (F, H, W, 3) uint8 RGB -> blendshapes (F', 52) of the frames where a face is found."""

    def __init__(self, task_file: str | Path):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(task_file)),
                                               output_face_blendshapes=True, num_faces=1,
                                               running_mode=vision.RunningMode.IMAGE)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        rows = []
        for frame in frames:
            image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            result = self._landmarker.detect(image)
            if result.face_blendshapes:
                rows.append([c.score for c in result.face_blendshapes[0] if c.category_name != "_neutral"])
        return np.asarray(rows, np.float64).reshape(len(rows), -1)
