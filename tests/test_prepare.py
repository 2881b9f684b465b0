"""``prepare``: videos in, the clip dataset ``train`` reads out; faceless or silent videos reported
and skipped, never kept."""

from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from skimage import data

from emo_models.audio import build_wav2vec2
from emo_models.cli import build_parser
from emo_models.config import tiny_config
from emo_models.demo.synthetic import generate_clip, synthesize_speech, write_clip_video
from emo_models.media import load_audio, write_video
from emo_models.training.dataset import ClipDataset, read_index
from emo_models.training.prepare import prepare_videos, write_face_sidecar

FPS, SIZE, SR = 25.0, 64, 16000
ESPEAK = shutil.which("espeak-ng")


def _espeak(text: str, folder) -> np.ndarray:
    """espeak-ng's voice saying ``text``, (T,) float32 at 16 kHz, read through emo_models.media."""
    path = folder / "speech.wav"
    subprocess.run([ESPEAK, "-v", "en", "-s", "160", "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path, SR)


def _photo_video(path, wave: np.ndarray, side: int = 256) -> None:
    """The astronaut photo, slowly zoomed and panned, saying ``wave``."""
    image = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    count = int(len(wave) / SR * FPS)
    frames = []
    for i in range(count):
        t, s = i / max(count - 1, 1), 1.0 + 0.06 * i / max(count - 1, 1)
        shift = 0.02 * side * np.sin(2 * np.pi * t)
        warp = np.array([[s, 0, (1 - s) * side / 2 + shift], [0, s, (1 - s) * side / 2]], np.float32)
        frames.append(cv2.warpAffine(image, warp, (side, side), borderMode=cv2.BORDER_REFLECT))
    write_video(path, np.stack(frames), FPS, wave, SR)


@pytest.fixture(scope="module")
def encoder():
    return build_wav2vec2(tiny_config())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, encoder):
    """One prepare run over drawn faces, a real photo (numpy and, when installed, espeak-ng speech),
    a drawn face detection misses (with a sidecar box), a faceless video and a mute one."""
    videos, out = tmp_path_factory.mktemp("videos"), tmp_path_factory.mktemp("dataset")
    clip = generate_clip(2, seconds=2.0, size=128, speed_deg_per_frame=0.7)
    write_clip_video(clip, videos / "cartoon.mp4")
    missed = generate_clip(0, seconds=1.2, size=128)  # Haar finds no face in this identity
    write_clip_video(missed, videos / "cartoon_given.mp4")
    write_face_sidecar(videos / "cartoon_given.mp4", missed.face_box, missed.speed)
    numpy_speech, _ = synthesize_speech(1.6, SR, np.random.default_rng(1))
    _photo_video(videos / "photo_numpy.mp4", numpy_speech)
    if ESPEAK:
        _photo_video(
            videos / "photo_espeak.mp4",
            _espeak("Hello, how are you today?", tmp_path_factory.mktemp("speech")),
        )
    write_video(videos / "blank.mp4", np.full((30, 96, 96, 3), 120, np.uint8), FPS, numpy_speech, SR)
    write_video(videos / "mute.mp4", np.full((20, 96, 96, 3), 90, np.uint8), FPS, None)
    progress = []
    report = prepare_videos(videos, out, fps=FPS, size=SIZE, audio_encoder=encoder,
                            on_progress=lambda done, total: progress.append((done, total)))  # fmt: skip
    return report, out, progress, clip


def _clip(report, clip_id: str) -> dict:
    found = [c for c in report.clips if c["id"] == clip_id]
    assert found, f"{clip_id} not prepared; report: {report}"
    return found[0]


def _check_clip_files(out, clip_id: str) -> int:
    folder = out / "clips" / clip_id
    frames = np.load(folder / "frames.npy")
    count = len(frames)
    assert frames.shape == (count, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert abs(len(np.load(folder / "audio.npy")) - count / FPS * SR) <= 1
    assert np.load(folder / "speed.npy").shape == (count,)
    boxes = np.load(folder / "boxes.npy")
    assert boxes.shape == (count, 4) and boxes.min() >= 0 and boxes.max() <= SIZE
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    config = tiny_config()
    features = np.load(folder / "audio_features.npy")
    assert features.shape == (count, config.audio_layers, config.audio_channels)
    return count


def test_drawn_talking_face_becomes_a_clip_with_its_head_speed(prepared):
    report, out, _, clip = prepared
    entry = _clip(report, "cartoon-000")
    assert entry["frames"] == len(clip.frames) == _check_clip_files(out, "cartoon-000")
    assert entry["face_found"] == 1.0
    assert 0.35 < entry["mean_speed"] < 1.2  # drawn at 0.7 degrees/frame
    boxes = np.load(out / "clips" / "cartoon-000" / "boxes.npy")
    side = boxes[:, 2:] - boxes[:, :2]
    assert np.all(side > SIZE / 3)  # the face fills a good part of the 1.8x crop


def test_real_photo_with_numpy_speech_becomes_a_clip(prepared):
    report, out, _, _ = prepared
    entry = _clip(report, "photo_numpy-000")
    assert entry["frames"] == 40 == _check_clip_files(out, "photo_numpy-000")
    assert entry["mean_speed"] < 0.3  # a photo moved in 2-D: almost no head rotation


def test_real_photo_with_espeak_speech_becomes_a_clip(prepared):
    if not ESPEAK:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); numpy speech tested instead")
    report, out, _, _ = prepared
    _clip(report, "photo_espeak-000")
    assert _check_clip_files(out, "photo_espeak-000") > 20


def test_sidecar_box_and_speed_replace_detection(prepared):
    report, out, _, _ = prepared
    entry = _clip(report, "cartoon_given-000")
    _check_clip_files(out, "cartoon_given-000")
    speed = np.load(out / "clips" / "cartoon_given-000" / "speed.npy")
    truth = generate_clip(0, seconds=1.2, size=128).speed
    assert np.allclose(speed, truth, atol=1e-5)
    assert entry["mean_speed"] == pytest.approx(float(truth.mean()), abs=1e-3)


def test_video_without_a_face_is_reported_and_skipped(prepared):
    report, out, _, _ = prepared
    reasons = dict(report.skipped)
    assert "face found in 0%" in reasons["blank-000"]
    assert not (out / "clips" / "blank-000").exists()
    assert "blank-000" not in read_index(out)["clips"]


def test_video_without_audio_is_reported_and_skipped(prepared):
    report, out, _, _ = prepared
    mute = [reason for source, reason in report.skipped if source.endswith("mute.mp4")]
    assert mute and "no audio" in mute[0]
    assert not any(c["id"].startswith("mute") for c in report.clips)
    assert "skipped" in str(report) and "mute.mp4" in str(report)


def test_index_lists_the_clips_and_the_dataset_yields_training_items(prepared):
    report, out, progress, _ = prepared
    index = read_index(out)
    assert index["fps"] == FPS and index["size"] == SIZE
    assert index["clips"] == sorted(c["id"] for c in report.clips)
    assert progress[-1][0] == progress[-1][1] == len(progress)
    dataset = ClipDataset(out, frames=6)
    item = dataset[len(dataset) - 1]
    assert item["frames"].shape == (6, 3, SIZE, SIZE)
    assert item["speed"].shape == (6,) and item["face_mask"].shape == (1, SIZE, SIZE)
    assert item["audio_features"].shape[0] == 6 + 2 * 2
    assert 0 < item["face_mask"].mean() < 1


def test_clip_seconds_cuts_videos_and_face_box_option_skips_detection(tmp_path, encoder):
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = generate_clip(0, seconds=2.0, size=96)  # detection misses this one: the given box is used
    write_clip_video(clip, videos / "talk.mp4")
    report = prepare_videos(videos, tmp_path / "out", fps=FPS, size=SIZE, clip_seconds=1.0,
                            audio_encoder=encoder, face_box=clip.face_box)  # fmt: skip
    assert [c["id"] for c in report.clips] == ["talk-000", "talk-001"]
    assert [c["frames"] for c in report.clips] == [25, 25]


def test_cli_prepare_command_parses_face_box_and_writes_the_index(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    clip = generate_clip(0, seconds=0.8, size=96)
    write_clip_video(clip, videos / "talk.mp4")
    parser = build_parser(only="prepare")
    box = ",".join(str(v) for v in clip.face_box)
    args = parser.parse_args(["prepare", "--videos", str(videos), "--out", str(tmp_path / "ds"), "--size", "64",
                              "--face-box", box])  # fmt: skip
    assert args.run(args) == 0
    assert "1 clips written" in capsys.readouterr().out
    assert json.loads((tmp_path / "ds" / "index.json").read_text())["clips"] == ["talk-000"]
    bad = parser.parse_args(
        ["prepare", "--videos", str(videos), "--out", str(tmp_path / "x"), "--face-box", "1,2"]
    )
    with pytest.raises(ValueError, match="--face-box"):
        bad.run(bad)


def test_missing_videos_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="videos"):
        prepare_videos(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ValueError, match="no .mp4"):
        prepare_videos(tmp_path, tmp_path / "out")


def test_prepared_dataset_feeds_training(prepared, encoder, tmp_path):
    """prepare's output (drawn faces and real photos with speech) trains stage 2 for a step as it is."""
    from emo_models.loading import save_pipeline
    from emo_models.training.train import train

    from .conftest import build_tiny_pipeline

    _, out, _, _ = prepared
    pipeline = build_tiny_pipeline()
    pipeline.audio_encoder.load_state_dict(encoder.state_dict())  # the encoder that made the cached features
    save_pipeline(pipeline, tmp_path / "init")
    result = train(2, out, tmp_path / "init", tmp_path / "stage2", steps=2, batch_size=2, save_every=0,
                   progress_bar=False, cpu=True)
    assert result.steps == 2 and all(np.isfinite(loss) for loss in result.losses.values())
    assert (result.checkpoint / "config.json").is_file()
