"""Face and lip boxes as Hallo draws them (MediaPipe landmarks), the keypoint substitute, and the
MediaPipe wiring (a stand-in ``mediapipe`` module records what our code asks of the tasks API)."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from emo_models.face_analysis import DetectedFace, FaceAnalysis
from emo_models.face_analysis_regions import (
    LIP_IDS,
    SILHOUETTE_IDS,
    expand_region,
    regions_from_keypoints,
    regions_from_landmarks,
)
from tests.face_analysis_files import write_hallo_face_analysis, write_scrfd_constant

FACE = dict(stride=16, row=20, col=20, anchor=0, score=0.9, box=[5, 6, 5, 7],
            kps=[-2, -1.5, 2, -1.5, 0, 0.5, -1.6, 3, 1.6, 3])  # face box (240, 224, 400, 432) in a 640 image


def mesh(face_box, lip_box, count: int = 478) -> np.ndarray:
    """(count, 2) landmarks: silhouette points spanning ``face_box``, lip points spanning ``lip_box``,
    everything else at the face's centre."""
    points = np.tile([(face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2], (count, 1))
    for ids, (x0, y0, x1, y1) in ((SILHOUETTE_IDS, face_box), (LIP_IDS, lip_box)):
        corners = [(x0, y0), (x1, y1)] + [((x0 + x1) / 2, (y0 + y1) / 2)] * (len(ids) - 2)
        points[list(ids)] = corners
    return points


def test_expand_region_grows_about_the_floored_middle_and_shifts_inside():
    # x: middle (100 + 301) // 2 = 200, half (201 · 1.2) // 2 = 120 -> 80..320; y likewise 50..351 -> 20..380
    assert expand_region((100, 50, 301, 351), 1.2, 640, 640) == (80.0, 20.0, 320.0, 380.0)
    # lips near the right/bottom edges: 2x grows past them, and the box slides back, keeping its size
    assert expand_region((600, 610, 630, 630), 2.0, 640, 640) == (580.0, 600.0, 640.0, 640.0)
    # near the left/top edges
    assert expand_region((4, 2, 24, 12), 2.0, 640, 640) == (0.0, 0.0, 40.0, 20.0)
    # grown wider than the image: clipped to it
    assert expand_region((10, 10, 630, 630), 1.2, 640, 640) == (0.0, 0.0, 640.0, 640.0)


def test_landmark_regions_are_the_rounded_silhouette_and_lip_boxes_grown_1_2_and_2_0():
    points = mesh((100.4, 50.5, 300.6, 350.5), (170.2, 280.0, 230.0, 300.0))  # np.round: 100, 50, 301, 350
    face, lips = regions_from_landmarks(points, 640, 640)
    assert face == (80.0, 20.0, 320.0, 380.0)  # y: middle 200, half (300 · 1.2) // 2 = 180
    assert lips == (140.0, 270.0, 260.0, 310.0)  # 170..230 x 2 about 200; 280..300 x 2 about 290
    with pytest.raises(ValueError, match="landmarks: 68 points"):
        regions_from_landmarks(points[:68], 640, 640)


def test_keypoint_substitute_lips_span_the_mouth_corners_and_half_as_tall():
    keypoints = np.array([[110, 120], [150, 120], [130, 150], [100, 200], [160, 200]], np.float32)
    face, lips = regions_from_keypoints((90, 80, 170, 230), keypoints, 640, 640, face_expand=1.0, lip_expand=1.0)
    assert face == (90.0, 80.0, 170.0, 230.0)
    assert lips == (100.0, 185.0, 160.0, 215.0)  # 60 px wide, 30 tall, about the corners' midpoint
    _, grown = regions_from_keypoints((90, 80, 170, 230), keypoints, 640, 640)
    assert grown == (70.0, 170.0, 190.0, 230.0)  # x 2.0 as Hallo grows the landmark lip box
    upright = keypoints.copy()
    upright[3:5] = [[130, 170], [130, 230]]  # head turned 90 degrees: the box turns with the corners
    _, turned = regions_from_keypoints((90, 80, 170, 230), upright, 640, 640, 1.0, 1.0)
    assert turned == (115.0, 170.0, 145.0, 230.0)


def fake_mediapipe(record: dict, faces: list[np.ndarray], width: int, height: int):
    """A stand-in for the ``mediapipe`` package's tasks API returning ``faces`` (pixel landmarks)."""

    class Landmarker:
        @classmethod
        def create_from_options(cls, options):
            record["options"] = options
            return cls()

        def detect(self, image):
            record["image"] = image
            marks = [[SimpleNamespace(x=x / width, y=y / height, z=0.0) for x, y in f] for f in faces]
            shapes = [[SimpleNamespace(category_name="jawOpen", score=0.25 * (i + 1))] for i in range(len(faces))]
            return SimpleNamespace(face_landmarks=marks, face_blendshapes=shapes)

        def close(self):
            record["closed"] = True

    vision = SimpleNamespace(FaceLandmarker=Landmarker, RunningMode=SimpleNamespace(IMAGE="image-mode"),
                             FaceLandmarkerOptions=lambda **kw: SimpleNamespace(**kw))
    tasks = SimpleNamespace(vision=vision, BaseOptions=lambda model_asset_path: SimpleNamespace(path=model_asset_path))
    image = lambda image_format, data: SimpleNamespace(format=image_format, data=data)  # noqa: E731
    return SimpleNamespace(tasks=tasks, Image=image, ImageFormat=SimpleNamespace(SRGB="srgb"))


@pytest.fixture
def release(tmp_path):
    return write_hallo_face_analysis(tmp_path, detector=lambda p: write_scrfd_constant(p, [FACE]))


def test_landmarks_come_from_the_placed_task_file_and_match_the_detected_face(release, monkeypatch):
    ours = mesh((250.4, 230.0, 390.0, 430.0), (300.0, 380.0, 340.0, 400.0))
    other = mesh((10.0, 10.0, 90.0, 100.0), (40.0, 70.0, 60.0, 80.0))  # a second, smaller face elsewhere
    record = {}
    monkeypatch.setitem(sys.modules, "mediapipe", fake_mediapipe(record, [other, ours], 640, 640))
    fa = FaceAnalysis.from_folder(release.parent.parent)
    image = np.random.default_rng(0).integers(0, 256, (640, 640, 3), dtype=np.uint8)
    assert fa.has_landmarker
    inputs = fa.face_inputs(image)
    options = record["options"]
    assert options.base_options.path == str(release / "face_landmarker_v2_with_blendshapes.task")
    assert options.running_mode == "image-mode" and options.output_face_blendshapes and options.num_faces > 1
    assert record["image"].format == "srgb"
    np.testing.assert_array_equal(record["image"].data, image)
    assert inputs.regions == "landmarks"
    assert (inputs.face_box, inputs.lip_box) == regions_from_landmarks(ours, 640, 640)
    assert fa.landmarks(image, inputs.face).blendshapes == {"jawOpen": 0.5}
    fa.close()
    assert record["closed"]


def test_landmarks_nowhere_near_the_detected_face_are_an_error(release, monkeypatch):
    elsewhere = mesh((10.0, 10.0, 90.0, 100.0), (40.0, 70.0, 60.0, 80.0))
    monkeypatch.setitem(sys.modules, "mediapipe", fake_mediapipe({}, [elsewhere], 640, 640))
    fa = FaceAnalysis.from_folder(release)
    with pytest.raises(ValueError, match="MediaPipe found no face landmarks on the detected face.*keypoints"):
        fa.face_inputs(np.zeros((640, 640, 3), np.uint8), regions="landmarks")


def test_without_mediapipe_landmarks_name_the_package_file_and_alternatives(release, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    fa = FaceAnalysis.from_folder(release)
    face = fa.detect(np.zeros((640, 640, 3), np.uint8))[0]
    task = rf"face_landmarker_v2_with_blendshapes.task in {release}"
    with pytest.raises(ImportError, match=rf"mediapipe is not installed, so {task} cannot run; `pip install "
                                          r"mediapipe`.*regions='keypoints'.*MASK"):
        fa.lip_box(np.zeros((640, 640, 3), np.uint8), face, source="landmarks")


def test_without_the_task_file_landmarks_name_the_file_and_folder(tmp_path, monkeypatch):
    folder = write_hallo_face_analysis(tmp_path, landmarker=False)
    monkeypatch.setitem(sys.modules, "mediapipe", fake_mediapipe({}, [], 640, 640))
    fa = FaceAnalysis.from_folder(tmp_path)
    assert not fa.has_landmarker
    face = DetectedFace((0.0, 0.0, 50.0, 50.0), 0.9, np.zeros((5, 2), np.float32))
    with pytest.raises(FileNotFoundError, match=rf"face_landmarker_v2_with_blendshapes.task is not in {folder}"):
        fa.landmarks(np.zeros((64, 64, 3), np.uint8), face)


def test_auto_regions_fall_back_to_keypoints_with_a_warning(release, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    fa = FaceAnalysis.from_folder(release)
    image = np.zeros((640, 640, 3), np.uint8)
    face = fa.detect(image)[0]
    with caplog.at_level(logging.WARNING):
        face_box, lip_box, source = fa.regions(image, face)
    assert source == "keypoints" and "approximated from the detector's keypoints" in caplog.text
    assert (face_box, lip_box) == regions_from_keypoints(face.box, face.keypoints, 640, 640)
    assert fa.lip_box(image, face, source="keypoints") == lip_box
    with pytest.raises(ValueError, match="regions: 'mesh'; choose one of auto, landmarks, keypoints"):
        fa.regions(image, face, source="mesh")
