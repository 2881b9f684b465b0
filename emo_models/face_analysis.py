"""Face inputs from the user's placed face-analysis files, offline: boxes, keypoints, identity, lip region.

Hallo's release ships InsightFace's and MediaPipe's models in ``face_analysis/models/``:
``scrfd_10g_bnkps.onnx`` (face detector: boxes + 5 keypoints), ``glintr100.onnx`` (ArcFace identity,
512-d) and ``face_landmarker_v2_with_blendshapes.task`` (MediaPipe face mesh), plus three files we do not
need (``1k3d68.onnx``, ``2d106det.onnx``, ``genderage.onnx``). :class:`FaceAnalysis` runs the two
``.onnx`` files with onnxruntime (optional dependency) and the ``.task`` file with MediaPipe when the
``mediapipe`` package is importable; neither the ``insightface`` package nor any download is needed.

What Hallo computes from a reference portrait, and what :meth:`FaceAnalysis.face_inputs` returns:
- the largest detected face (by box area);
- its ArcFace embedding as the network outputs it (not L2-normalised): Hallo feeds it to ``imageproj``;
- the face region: the face-mesh silhouette's box x 1.2 (``face_expand_ratio``) and the lip box x 2.0,
  from MediaPipe landmarks; without MediaPipe, a documented substitute from the detector's box and
  mouth-corner keypoints (:mod:`.face_analysis_regions`), reported in ``FaceInputs.regions``.
Hallo falls back to the whole image and a zero embedding when no face is found; here that is a
:class:`NoFaceError` (a ``ValueError``) the caller may catch to do the same.

Images: (3, H, W) float tensors in [0, 1] (or (1, 3, H, W)), or (H, W, 3) uint8 RGB arrays. Boxes:
(x0, y0, x1, y1) floats in that image's pixels, x1/y1 exclusive; keypoints (5, 2) pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .face_analysis_onnx import DET_THRESHOLD, ArcFaceRecognizer, SCRFDDetector
from .face_analysis_regions import (
    FaceLandmarks,
    MediaPipeLandmarker,
    regions_from_keypoints,
    regions_from_landmarks,
)
from .face_detect import _iou
from .face_detect import _to_uint8 as to_rgb_uint8

__all__ = [
    "FaceAnalysis", "FaceAnalysisFiles", "DetectedFace", "FaceInputs", "FaceLandmarks", "NoFaceError",
    "find_face_analysis_files",
    "DETECTOR_FILE", "RECOGNIZER_FILE", "LANDMARKER_FILE", "REGION_SOURCES",
]  # fmt: skip

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
DETECTOR_FILE = "scrfd_10g_bnkps.onnx"
RECOGNIZER_FILE = "glintr100.onnx"
LANDMARKER_FILE = "face_landmarker_v2_with_blendshapes.task"
# Where the files may sit below a given folder: the files themselves, Hallo's pretrained_models/
# face_analysis/ and release root, InsightFace's root (models/antelopev2/, as InstantID users have it).
LAYOUTS = ("", "models", "face_analysis/models", "models/antelopev2")
REGION_SOURCES = ("auto", "landmarks", "keypoints")


class NoFaceError(ValueError):
    """No face was detected in the image."""


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One SCRFD detection: box (x0, y0, x1, y1) px, score in [0, 1], keypoints (5, 2) px
    (eye, eye, nose tip, mouth corner, mouth corner; image-left first in each pair)."""

    box: Box
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True, eq=False)
class FaceInputs:
    """What Hallo needs from a portrait: face box, lip box, identity embedding (512,) float32 unnormalised,
    the face they belong to, and ``regions``: "landmarks" (MediaPipe, as Hallo) or "keypoints" (substitute)."""

    face_box: Box
    lip_box: Box
    embedding: np.ndarray
    face: DetectedFace
    regions: str


@dataclass(frozen=True)
class FaceAnalysisFiles:
    """The files a :class:`FaceAnalysis` reads; ``landmarker`` is None when the .task file is absent."""

    detector: Path
    recognizer: Path
    landmarker: Path | None


def find_face_analysis_files(folders) -> FaceAnalysisFiles:
    """The first of ``folders`` (a path or a list) holding the detector and recogniser, directly or in a
    known layout below it (``models/``, ``face_analysis/models/``, ``models/antelopev2/``).

    Missing files are an error naming them and every folder searched.
    """
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    searched, partial = [], []
    for folder in folders:
        for layout in LAYOUTS:
            here = Path(folder) / layout
            if not here.is_dir():
                continue
            searched.append(str(here))
            names = (DETECTOR_FILE, RECOGNIZER_FILE)
            missing = [name for name in names if not (here / name).is_file()]
            if not missing:
                task = here / LANDMARKER_FILE
                return FaceAnalysisFiles(here / DETECTOR_FILE, here / RECOGNIZER_FILE,
                                         task if task.is_file() else None)
            if len(missing) < len(names):
                partial.append(f"{here} lacks {missing[0]}")
    where = "; ".join(partial) if partial else f"not found in {', '.join(searched) or 'any existing folder'}"
    given = ", ".join(str(f) for f in folders) or "no folder"
    raise FileNotFoundError(
        f"face analysis: {DETECTOR_FILE} and {RECOGNIZER_FILE} are needed ({where}; folders given: {given}); "
        f"place Hallo's face_analysis/models/ files (with {LANDMARKER_FILE} for the lip region) in "
        "models/face_analysis/ or in the release's face_analysis/models/"
    )


class FaceAnalysis:
    """SCRFD detection, ArcFace identity and MediaPipe landmarks from placed files; see the module doc."""

    def __init__(self, files: FaceAnalysisFiles, providers: list[str] | None = None):
        self.files = files
        self.detector = SCRFDDetector(files.detector, providers)
        self.recognizer = ArcFaceRecognizer(files.recognizer, providers)
        self._landmarker: MediaPipeLandmarker | None = None

    @classmethod
    def from_folder(cls, folder, providers: list[str] | None = None) -> FaceAnalysis:
        """Load from a folder (or the first of a list of folders) holding the files; see
        :func:`find_face_analysis_files`. ``providers``: onnxruntime's, default CUDA when present, else CPU."""
        return cls(find_face_analysis_files(folder), providers)

    @classmethod
    def from_files(cls, detector, recognizer, landmarker=None, providers: list[str] | None = None) -> FaceAnalysis:
        """Load from explicit file paths (e.g. another SCRFD-with-keypoints or ArcFace file)."""
        return cls(FaceAnalysisFiles(Path(detector), Path(recognizer), Path(landmarker) if landmarker else None),
                   providers)

    # ---- detection and identity ----------------------------------------------------------------------
    def detect(self, image, threshold: float = DET_THRESHOLD) -> list[DetectedFace]:
        """All faces scoring >= ``threshold``, largest box first (ties: higher score first)."""
        boxes, scores, points = self.detector.detect(to_rgb_uint8(image), threshold)
        faces = [DetectedFace(tuple(float(v) for v in b), float(s), p.astype(np.float32))
                 for b, s, p in zip(boxes, scores, points)]
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def largest_face(self, image, input_name: str = "image") -> DetectedFace:
        """The largest face; none is a :class:`NoFaceError` naming ``input_name`` and the remedies."""
        rgb = to_rgb_uint8(image)
        faces = self.detect(rgb)
        if not faces:
            raise NoFaceError(
                f"{input_name}: no face found in the {rgb.shape[1]}x{rgb.shape[0]} image by {self.files.detector.name}; "
                "give a portrait with a visible, roughly frontal face, or connect a face MASK / give boxes"
            )
        return faces[0]

    def embed(self, image, face: DetectedFace, normalize: bool = False) -> np.ndarray:
        """(512,) float32 ArcFace embedding of ``face``; unnormalised as Hallo feeds it, or unit length
        with ``normalize`` (cosine similarity = dot product, e.g. for F-SIM)."""
        embedding = self.recognizer.embed(to_rgb_uint8(image), face.keypoints)
        if normalize:
            embedding = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
        return embedding.astype(np.float32)

    # ---- landmarks and regions -----------------------------------------------------------------------
    @property
    def has_landmarker(self) -> bool:
        """True when the .task file is placed and the mediapipe package is importable."""
        if self.files.landmarker is None:
            return False
        try:
            import mediapipe  # noqa: F401
        except ImportError:
            return False
        return True

    def landmarks(self, image, face: DetectedFace | None = None) -> FaceLandmarks:
        """MediaPipe's landmarks (478 points) of ``face`` (the landmark set overlapping its box most), or of
        MediaPipe's first face. Needs mediapipe and the .task file (errors say which is missing)."""
        rgb = to_rgb_uint8(image)
        if self._landmarker is None:
            task = self.files.landmarker or self.files.detector.parent / LANDMARKER_FILE
            self._landmarker = MediaPipeLandmarker(task)
        found = self._landmarker.detect(rgb)
        if face is not None and found:
            found = sorted(found, key=lambda marks: -_iou(marks.bounds(), face.box))
            found = found if _iou(found[0].bounds(), face.box) > 0 else []
        if not found:
            raise NoFaceError(
                f"image: MediaPipe found no face landmarks{' on the detected face' if face else ''} in the "
                f"{rgb.shape[1]}x{rgb.shape[0]} image; use regions='keypoints' or connect a face/lip MASK"
            )
        return found[0]

    def regions(self, image, face: DetectedFace, face_expand: float = 1.2, lip_expand: float = 2.0,
                source: str = "auto") -> tuple[Box, Box, str]:
        """(face box, lip box, source used) for ``face``, grown as Hallo grows them.

        source: "landmarks" (MediaPipe, as Hallo; errors when unavailable), "keypoints" (the substitute
        from the detector's box and mouth corners), or "auto" (landmarks when available, else keypoints,
        with a logged warning).
        """
        if source not in REGION_SOURCES:
            raise ValueError(f"regions: {source!r}; choose one of {', '.join(REGION_SOURCES)}")
        rgb = to_rgb_uint8(image)
        height, width = rgb.shape[:2]
        if source == "auto":
            source = "landmarks" if self.has_landmarker else "keypoints"
            if source == "keypoints":
                log.warning("face analysis: MediaPipe or %s unavailable; lip/face boxes approximated from the "
                            "detector's keypoints (pip install mediapipe and place the file for Hallo's own boxes)",
                            LANDMARKER_FILE)
        if source == "landmarks":
            points = self.landmarks(rgb, face).points
            return (*regions_from_landmarks(points, width, height, face_expand, lip_expand), source)
        return (*regions_from_keypoints(face.box, face.keypoints, width, height, face_expand, lip_expand), source)

    def lip_box(self, image, face: DetectedFace, expand: float = 2.0, source: str = "auto") -> Box:
        """The lip box of ``face`` grown by ``expand`` (see :meth:`regions` for ``source``)."""
        return self.regions(image, face, lip_expand=expand, source=source)[1]

    def face_inputs(self, image, face_expand: float = 1.2, lip_expand: float = 2.0,
                    regions: str = "auto") -> FaceInputs:
        """Hallo's face inputs for the image's largest face: boxes, embedding (512,) unnormalised.

        No face is a :class:`NoFaceError`; ``regions`` as ``source`` in :meth:`regions`.
        """
        rgb = to_rgb_uint8(image)
        face = self.largest_face(rgb)
        face_box, lip_box, used = self.regions(rgb, face, face_expand, lip_expand, regions)
        return FaceInputs(face_box, lip_box, self.embed(rgb, face), face, used)

    def close(self) -> None:
        """Release the MediaPipe landmarker (the onnxruntime sessions go with the object)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

