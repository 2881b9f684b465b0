"""Face analysis from placed files: SCRFD decoding, NMS, ArcFace alignment and embeddings, file refusals.

The detector and recogniser files are tiny ONNX models with the real files' interfaces
(tests/face_analysis_files.py), loaded through the same code as the real ones.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from emo_models.face_analysis import DetectedFace, FaceAnalysis, NoFaceError, find_face_analysis_files
from emo_models.face_analysis_onnx import (
    ARCFACE_TEMPLATE,
    align_face,
    anchor_centres,
    letterbox_blob,
    nms,
    similarity_transform,
)
from tests.face_analysis_files import (
    write_arcface,
    write_hallo_face_analysis,
    write_scrfd,
    write_scrfd_constant,
)

# Three chosen predictions (distances and offsets in strides) and the faces they are in closed form.
CHOSEN = [
    dict(stride=8, row=30, col=40, anchor=1, score=0.9, box=[5, 6, 7, 8], kps=[-2, -1, 2, -1, 0, 1, -1.5, 3, 1.5, 3]),
    dict(stride=16, row=10, col=30, anchor=0, score=0.5, box=[2, 2, 2, 2], kps=[-1, -1, 1, -1, 0, 0, -1, 1, 1, 1]),
    dict(stride=32, row=15, col=2, anchor=1, score=0.49, box=[1, 1, 1, 1], kps=[0] * 10),  # below 0.5: dropped
]


def expected_face(d, scale: float = 1.0):
    """Closed form: centre (col·s, row·s); box = centre -/+ distances·s; keypoints = centre + offsets·s."""
    s, cx, cy = d["stride"], d["col"] * d["stride"], d["row"] * d["stride"]
    left, top, right, bottom = (v * s for v in d["box"])
    box = np.array([cx - left, cy - top, cx + right, cy + bottom]) / scale
    kps = (np.array([cx, cy]) + np.array(d["kps"]).reshape(5, 2) * s) / scale
    return box, kps


@pytest.fixture(scope="module")
def recognizer_file(tmp_path_factory):
    return write_arcface(tmp_path_factory.mktemp("rec") / "glintr100.onnx")


def analysis(tmp_path, recognizer_file, detections=CHOSEN) -> FaceAnalysis:
    return FaceAnalysis.from_files(write_scrfd_constant(tmp_path / "scrfd_10g_bnkps.onnx", detections), recognizer_file)


def test_detector_outputs_decode_to_the_chosen_boxes_and_keypoints(tmp_path, recognizer_file):
    faces = analysis(tmp_path, recognizer_file).detect(np.zeros((640, 640, 3), np.uint8))
    assert len(faces) == 2  # the 0.49 prediction is under the 0.5 threshold; 0.5 itself counts
    by_score = sorted(faces, key=lambda f: -f.score)
    for face, chosen in zip(by_score, CHOSEN[:2]):
        box, kps = expected_face(chosen)
        np.testing.assert_allclose(face.box, box, atol=1e-4)
        np.testing.assert_allclose(face.keypoints, kps, atol=1e-4)
        assert face.score == pytest.approx(chosen["score"])
        assert face.keypoints.shape == (5, 2) and face.keypoints.dtype == np.float32


@pytest.mark.parametrize("height, width", [(960, 1280), (1280, 960), (320, 320)])
def test_detections_are_mapped_back_through_the_letterbox_scale(tmp_path, recognizer_file, height, width):
    face = analysis(tmp_path, recognizer_file, CHOSEN[:1]).detect(np.zeros((height, width, 3), np.uint8))[0]
    scale = 640 / max(height, width)  # the longer side fills the 640 canvas
    box, kps = expected_face(CHOSEN[0], scale)
    np.testing.assert_allclose(face.box, box, rtol=1e-5)
    np.testing.assert_allclose(face.keypoints, kps, rtol=1e-5)


def test_letterbox_blob_is_rgb_normalised_and_padded_black_below_and_right():
    rgb = np.zeros((320, 600, 3), np.uint8)
    rgb[...] = (255, 0, 127)
    blob, scale = letterbox_blob(rgb, (640, 640))
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32
    rows = int(640 * 320 / 600)  # 341 rows of image, the rest black
    assert scale == rows / 320  # as InsightFace: the scale of the rounded-down side
    np.testing.assert_allclose(blob[0, :, :rows, :].reshape(3, -1).mean(1), [127.5 / 128, -127.5 / 128, -0.5 / 128])
    np.testing.assert_allclose(blob[0, :, rows:, :], -127.5 / 128)


def test_anchor_centres_are_row_major_cell_corners_each_repeated_per_anchor():
    centres = anchor_centres(2, 3, 8)
    assert centres.tolist() == [[x, y] for y in (0, 8) for x in (0, 8, 16) for _ in range(2)]


def test_nms_suppresses_only_overlaps_above_iou_0_4_in_pixel_inclusive_areas():
    # 100x100-pixel boxes (inclusive), shifted by dx: IoU = o / (200 - o), o = 100 - dx; > 0.4 iff dx < 42.86
    base = [0, 0, 99, 99]
    for dx, kept in ((42, [0]), (43, [0, 1])):
        boxes = np.array([base, [dx, 0, 99 + dx, 99]], np.float32)
        assert nms(boxes, np.array([0.9, 0.8], np.float32)) == kept
    boxes = np.array([base, [10, 0, 109, 99], [500, 500, 599, 599]], np.float32)
    assert nms(boxes, np.array([0.7, 0.9, 0.6], np.float32)) == [1, 2]  # best first; the far box stays


def test_overlapping_detections_keep_the_higher_score(tmp_path, recognizer_file):
    twin = dict(CHOSEN[0], anchor=0, score=0.8)  # same cell, same box, lower score
    faces = analysis(tmp_path, recognizer_file, [CHOSEN[0], twin]).detect(np.zeros((640, 640, 3), np.uint8))
    assert [f.score for f in faces] == [pytest.approx(0.9)]


def test_faces_come_largest_first_whatever_their_scores(tmp_path, recognizer_file):
    small = dict(CHOSEN[0], score=0.95, box=[1, 1, 1, 1])
    large = dict(CHOSEN[1], score=0.6, box=[4, 4, 4, 4])
    faces = analysis(tmp_path, recognizer_file, [small, large]).detect(np.zeros((640, 640, 3), np.uint8))
    assert [f.score for f in faces] == [pytest.approx(0.6), pytest.approx(0.95)]


def test_similarity_transform_recovers_a_known_rotation_scale_and_shift():
    angle, scale, shift = np.deg2rad(30), 2.5, np.array([40.0, -12.0])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints = ARCFACE_TEMPLATE @ (scale * turn).T + shift
    matrix = similarity_transform(keypoints, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(keypoints @ matrix[:, :2].T + matrix[:, 2], ARCFACE_TEMPLATE, atol=1e-9)
    np.testing.assert_allclose(matrix[:, :2], np.linalg.inv(scale * turn), atol=1e-12)


def test_similarity_transform_is_the_least_squares_fit_skimage_computes():
    from skimage.transform import SimilarityTransform  # InsightFace's norm_crop uses this estimate

    rng = np.random.default_rng(0)
    for _ in range(20):
        points = ARCFACE_TEMPLATE * rng.uniform(0.5, 4) + rng.uniform(0, 500, 2) + rng.normal(0, 3, (5, 2))
        if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
            reference = SimilarityTransform.from_estimate(points, ARCFACE_TEMPLATE)
        else:
            reference = SimilarityTransform()
            reference.estimate(points, ARCFACE_TEMPLATE)
        np.testing.assert_allclose(similarity_transform(points, ARCFACE_TEMPLATE), reference.params[:2], atol=1e-9)


def test_alignment_puts_the_five_keypoints_on_the_arcface_template():
    angle, scale, shift = np.deg2rad(-20), 2.0, np.array([150.0, 90.0])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints = ARCFACE_TEMPLATE @ (scale * turn).T + shift
    image = np.zeros((480, 520, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    ys, xs = np.mgrid[:480, :520]
    for (x, y), colour in zip(keypoints, colours):
        image[(xs - x) ** 2 + (ys - y) ** 2 <= 5**2] = colour  # radius 5 px -> 2.5 px in the crop
    crop = align_face(image, keypoints)
    assert crop.shape == (112, 112, 3)
    for (x, y), colour in zip(ARCFACE_TEMPLATE, colours):
        assert tuple(crop[int(round(y)), int(round(x))]) == colour


def test_embedding_is_the_network_output_on_the_aligned_normalised_crop(tmp_path, recognizer_file):
    import onnxruntime

    fa = analysis(tmp_path, recognizer_file)
    image = np.random.default_rng(1).integers(0, 256, (200, 240, 3), dtype=np.uint8)
    face = DetectedFace((0.0, 0.0, 112.0, 112.0), 0.9, ARCFACE_TEMPLATE.astype(np.float32))  # crop = image[:112, :112]
    blob = (image[:112, :112].astype(np.float32) - 127.5) / 127.5
    expected = onnxruntime.InferenceSession(str(recognizer_file)).run(None, {"input.1": blob.transpose(2, 0, 1)[None]})
    embedding = fa.embed(image, face)
    assert embedding.shape == (512,) and embedding.dtype == np.float32
    np.testing.assert_allclose(embedding, expected[0][0], rtol=1e-5, atol=1e-5)
    unit = fa.embed(image, face, normalize=True)
    assert np.linalg.norm(unit) == pytest.approx(1.0) and np.dot(unit, embedding) == pytest.approx(np.linalg.norm(embedding))


def test_identical_face_gives_identical_embedding_wherever_it_sits(tmp_path, recognizer_file):
    fa = analysis(tmp_path, recognizer_file)
    rng = np.random.default_rng(2)
    image = np.zeros((300, 300, 3), np.uint8)
    image[60:220, 50:210] = rng.integers(0, 256, (160, 160, 3))
    keypoints = (ARCFACE_TEMPLATE * 1.3 + [60, 70]).astype(np.float32)
    face = DetectedFace((50.0, 60.0, 210.0, 220.0), 0.9, keypoints)
    moved = np.roll(image, (17, -23), axis=(0, 1))
    moved_face = DetectedFace(face.box, 0.9, keypoints + np.array([-23, 17], np.float32))
    np.testing.assert_array_equal(fa.embed(image, face), fa.embed(image.copy(), face))
    np.testing.assert_allclose(fa.embed(moved, moved_face), fa.embed(image, face), rtol=1e-5, atol=1e-4)


def test_images_as_tensors_and_arrays_give_the_same_faces(tmp_path, recognizer_file):
    fa = analysis(tmp_path, recognizer_file)
    array = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    for image in (tensor, tensor[None]):
        a, b = fa.face_inputs(image, regions="keypoints"), fa.face_inputs(array, regions="keypoints")
        assert a.face_box == b.face_box and a.lip_box == b.lip_box
        np.testing.assert_array_equal(a.embedding, b.embedding)


def test_hallo_release_layout_loads_and_gives_face_inputs(tmp_path, monkeypatch):
    release = tmp_path / "models" / "emo" / "hallo"
    write_hallo_face_analysis(release, detector=lambda p: write_scrfd_constant(p, CHOSEN))
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # not importable: regions from keypoints
    fa = FaceAnalysis.from_folder(release)
    assert fa.files.landmarker is not None and not fa.has_landmarker
    inputs = fa.face_inputs(torch.rand(3, 640, 640))
    largest = fa.detect(np.zeros((640, 640, 3), np.uint8))[0]
    assert inputs.regions == "keypoints" and inputs.face.box == largest.box
    assert inputs.embedding.shape == (512,) and inputs.embedding.dtype == np.float32
    assert all(0 <= v <= 640 for v in inputs.face_box + inputs.lip_box)


def test_random_detector_runs_on_any_image_size_and_orders_faces_by_area(tmp_path, recognizer_file):
    fa = FaceAnalysis.from_files(write_scrfd(tmp_path / "scrfd_10g_bnkps.onnx", score_bias=-0.5), recognizer_file)
    rng = np.random.default_rng(4)
    for height, width in ((480, 600), (1000, 300), (97, 131)):
        faces = fa.detect(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        assert faces, "a score bias of -0.5 lets some random anchors pass"
        areas = [f.area for f in faces]
        assert areas == sorted(areas, reverse=True)
        assert all(f.keypoints.shape == (5, 2) and 0.5 <= f.score <= 1 for f in faces)


def test_no_face_is_an_error_naming_the_input_and_the_remedy(tmp_path, recognizer_file):
    fa = FaceAnalysis.from_files(write_scrfd(tmp_path / "scrfd_10g_bnkps.onnx", score_bias=-20), recognizer_file)
    with pytest.raises(NoFaceError, match=r"image: no face found in the 200x100 image .*connect a face MASK"):
        fa.face_inputs(np.zeros((100, 200, 3), np.uint8))
    assert fa.detect(np.zeros((100, 200, 3), np.uint8)) == []


def test_missing_files_are_named_with_every_folder_searched(tmp_path):
    (tmp_path / "face_analysis" / "models").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"scrfd_10g_bnkps.onnx and glintr100.onnx.*face_analysis/models"):
        FaceAnalysis.from_folder(tmp_path)
    write_scrfd(tmp_path / "face_analysis" / "models" / "scrfd_10g_bnkps.onnx")
    with pytest.raises(FileNotFoundError, match=r"face_analysis/models lacks glintr100.onnx"):
        find_face_analysis_files([tmp_path / "elsewhere", tmp_path])


def test_first_folder_holding_both_files_wins(tmp_path, recognizer_file):
    write_hallo_face_analysis(tmp_path / "b", landmarker=False)
    write_scrfd(tmp_path / "a" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    write_arcface(tmp_path / "a" / "models" / "antelopev2" / "glintr100.onnx")
    files = find_face_analysis_files([tmp_path / "none", tmp_path / "a", tmp_path / "b"])
    assert files.detector == tmp_path / "a" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx"
    assert files.landmarker is None


def test_foreign_files_are_refused_naming_the_file_and_folder(tmp_path, recognizer_file):
    folder = tmp_path / "face_analysis" / "models"
    detector, recognizer = folder / "scrfd_10g_bnkps.onnx", folder / "glintr100.onnx"
    write_arcface(recognizer)
    detector.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ValueError, match=rf"scrfd_10g_bnkps.onnx in {folder} is not a readable ONNX model"):
        FaceAnalysis.from_folder(tmp_path)
    write_arcface(detector)  # an ONNX file, but a recogniser where the detector belongs
    with pytest.raises(ValueError, match=rf"scrfd_10g_bnkps.onnx in {folder} is not the face detector.*1 outputs"):
        FaceAnalysis.from_folder(tmp_path)
    write_scrfd(detector)
    write_scrfd(recognizer)
    with pytest.raises(ValueError, match=rf"glintr100.onnx in {folder} is not the face recogniser.*input.1\[1, 3"):
        FaceAnalysis.from_folder(tmp_path)
    write_arcface(recognizer, size=96)  # wrong input size
    with pytest.raises(ValueError, match=r"glintr100.onnx .* expected one \(N, 3, 112, 112\) image input"):
        FaceAnalysis.from_folder(tmp_path)


def test_missing_onnxruntime_is_an_error_naming_the_package(tmp_path, recognizer_file, monkeypatch):
    write_hallo_face_analysis(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install onnxruntime.*onnxruntime-gpu"):
        FaceAnalysis.from_folder(tmp_path)
