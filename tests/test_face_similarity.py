"""F-SIM (``evaluate --metrics fsim``): ArcFace cosine similarity, reference portrait vs generated frames,
on tiny ONNX stand-ins of the face-analysis files (a detector with fixed predictions, a random ArcFace)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from emo_models.cli import main  # noqa: E402
from emo_models.evaluation.evaluate import prepare_metrics  # noqa: E402
from emo_models.evaluation.videos import Video  # noqa: E402
from tests.face_analysis_files import write_arcface, write_scrfd, write_scrfd_constant  # noqa: E402
from tests.test_evaluate_cli import talking_video  # noqa: E402

# One face (a 16-px-stride detection centred at (96, 96)), found in every image whatever it shows.
FACE = [dict(stride=16, row=6, col=6, anchor=0, score=0.9, box=[3, 3, 3, 3], kps=[-1, -1, 1, -1, 0, 0, -1, 1, 1, 1])]


def face_files(folder: Path, detector=lambda p: write_scrfd_constant(p, FACE)) -> Path:
    detector(folder / "scrfd_10g_bnkps.onnx")
    write_arcface(folder / "glintr100.onnx")
    return folder


def fsim_metric(folder: Path):
    ready, skipped, weights = prepare_metrics(["fsim"], [folder])
    assert not skipped, skipped
    return ready["fsim"], weights


def video(frames: np.ndarray) -> Video:
    return Video("v", Path("v.mp4"), frames, 25.0, None)


def images(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 192, 192, 3), dtype=np.uint8)


def test_fsim_of_identical_faces_is_one(tmp_path):
    metric, weights = fsim_metric(face_files(tmp_path))
    portrait = images(0, 1)[0]
    row = metric(portrait, video(np.repeat(portrait[None], 5, axis=0)))
    assert row["fsim"] == pytest.approx(1.0, abs=1e-6) and row["fsim_faces"] == "5/5"
    assert weights["fsim"]["file"].endswith("glintr100.onnx") and len(weights["fsim"]["sha256"]) == 64


def test_fsim_of_other_faces_is_their_mean_cosine(tmp_path):
    metric, _ = fsim_metric(face_files(tmp_path))
    portrait, others = images(0, 1)[0], images(1, 3)
    faces = metric.faces
    unit = [faces.embed(im, faces.largest_face(im), normalize=True) for im in (portrait, *others)]
    expected = np.mean([np.dot(unit[0], e) for e in unit[1:]])
    row = metric(portrait, video(others))
    assert row["fsim"] == pytest.approx(expected, abs=1e-6) and row["fsim"] < 0.999


def test_fsim_without_faces_is_none_with_a_note(tmp_path):
    metric, _ = fsim_metric(face_files(tmp_path, detector=lambda p: write_scrfd(p, score_bias=-50.0)))
    row = metric(images(0, 1)[0], video(images(1, 2)))
    assert row["fsim"] is None and row["fsim_faces"] == "0/2" and "reference" in row["fsim_note"]


def test_fsim_needs_the_detector_beside_the_recogniser(tmp_path):
    write_arcface(tmp_path / "glintr100.onnx")
    ready, skipped, _ = prepare_metrics(["fsim"], [tmp_path])
    assert not ready and "scrfd_10g_bnkps.onnx" in skipped["fsim"] and str(tmp_path) in skipped["fsim"]


def test_evaluate_reports_fsim(tmp_path, capsys):
    for folder, seeds in (("reference", (1, 2)), ("generated", (1, 4))):
        (tmp_path / folder).mkdir()
        for name, seed in zip(("anna", "bert"), seeds):
            talking_video(tmp_path / folder / f"{name}.mp4", seed, frames=4)
    weights = face_files(tmp_path / "emo_metrics")
    out = tmp_path / "report.json"
    assert main(["evaluate", "--generated", str(tmp_path / "generated"), "--reference", str(tmp_path / "reference"),
                 "--metrics", "fsim", "--weights", str(weights), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    anna, bert = report["per_video"]["anna"], report["per_video"]["bert"]
    assert anna["fsim_faces"] == "4/4" and bert["fsim_faces"] == "4/4"
    assert anna["fsim"] > bert["fsim"]  # anna's generated video is her reference re-encoded; bert's another face
    assert report["aggregate"]["fsim"] == pytest.approx((anna["fsim"] + bert["fsim"]) / 2)
    assert "ArcFace" in report["protocol"]["fsim"]["score"]
    assert "fsim" in capsys.readouterr().out
