"""``python -m emo_models evaluate`` end to end on small videos with tiny metric nets in the real files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emo_models.cli import main
from emo_models.evaluation.weights import sha256
from emo_models.media import write_video
from tests.metric_files import write_metric_weights


def talking_video(path, seed: int, frames: int = 16, size: int = 64):
    """A procedural talking face with its voice, written as an H.264/AAC mp4."""
    from emo_models.demo.synthetic import generate_clip

    clip = generate_clip(seed, seconds=frames / 25, fps=25, size=size)
    write_video(path, clip.frames[:frames], 25, audio=clip.audio, sample_rate=clip.sample_rate)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for folder, seeds in (("reference", (1, 2)), ("generated", (3, 4))):
        (root / folder).mkdir()
        for name, seed in zip(("anna", "bert"), seeds):
            talking_video(root / folder / f"{name}.mp4", seed)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emo_metrics")
    return folder, write_metric_weights(folder)


def test_report_names_protocol_hashes_and_skipped_metrics(videos, weights, tmp_path, capsys):
    folder, files = weights
    out = tmp_path / "report.json"
    code = main(["evaluate", "--generated", str(videos / "generated"), "--reference", str(videos / "reference"),
                 "--weights", str(folder), "--out", str(out), "--device", "cpu", "--frame-step", "4"])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert report["pairs"] == 2 and set(report["per_video"]) == {"anna", "bert"}
    for metric in ("fid", "fvd", "sync"):
        assert report["weights"][metric]["sha256"] == sha256(files[metric])
        assert report["protocol"][metric]
    agg = report["aggregate"]
    assert agg["fid"] > 0 and agg["fvd"] > 0
    assert np.isfinite(agg["sync_c"]) and agg["sync_d"] > 0 and np.isfinite(agg["sync_c_reference"])
    assert -15 <= report["per_video"]["anna"]["sync"]["offset"] <= 15
    assert "face_landmarker_v2_with_blendshapes.task" in report["skipped"]["efid"] or "MediaPipe" in report["skipped"]["efid"]
    assert "fsim" in report["skipped"]
    assert "all (aggregate)" in printed and "EMO paper (HDTF)" in printed and "efid: skipped" in printed


def test_identical_videos_give_zero_fid_and_fvd(videos, weights, tmp_path):
    folder, _ = weights
    out = tmp_path / "same.json"
    assert main(["evaluate", "--generated", str(videos / "reference"), "--reference", str(videos / "reference"),
                 "--weights", str(folder), "--metrics", "fid,fvd", "--out", str(out), "--frame-step", "4"]) == 0
    agg = json.loads(out.read_text())["aggregate"]
    assert agg["fid"] == pytest.approx(0.0, abs=1e-6) and agg["fvd"] == pytest.approx(0.0, abs=1e-6)


def test_missing_weights_are_skipped_naming_file_and_folder(videos, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EMO_MODELS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    code = main(["evaluate", "--generated", str(videos / "generated"), "--reference", str(videos / "reference"),
                 "--weights", str(empty), "--metrics", "fid,sync"])
    err = capsys.readouterr()
    assert code == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in err.out and "syncnet_v2.model" in err.out
    assert str(empty) in err.out and str(tmp_path / "models" / "emo_metrics") in err.out
    assert "no metric can run" in err.err


def test_generated_video_without_reference_is_refused(videos, weights, tmp_path, capsys):
    folder, _ = weights
    extra = tmp_path / "carl.mp4"
    shutil.copy(videos / "generated" / "anna.mp4", extra)
    code = main(["evaluate", "--generated", str(videos / "generated"), str(extra),
                 "--reference", str(videos / "reference"), "--weights", str(folder)])
    assert code == 2 and "no reference video named carl" in capsys.readouterr().err


def test_weights_file_holding_pickled_objects_is_refused(videos, tmp_path, capsys):
    import torch

    torch.save({"model": object.__new__(torch.nn.Identity)}, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    code = main(["evaluate", "--generated", str(videos / "generated"), "--reference", str(videos / "reference"),
                 "--weights", str(tmp_path), "--metrics", "fid"])
    assert code == 2 and "only plain tensor state dicts" in capsys.readouterr().err


def test_unknown_metric_is_refused(videos, capsys):
    code = main(["evaluate", "--generated", str(videos / "generated"), "--reference", str(videos / "reference"),
                 "--metrics", "fid,lpips"])
    assert code == 2 and "lpips not known" in capsys.readouterr().err
