"""The command line end to end on a tiny checkpoint: init -> generate -> mp4 with audio; inspect."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from emo_models.cli import main
from emo_models.media import probe_video


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    assert main(["init", "--config", "tiny", "--out", str(folder)]) == 0
    return folder


def _photo(path, mode, size):
    from skimage import data

    Image.fromarray(data.astronaut()).resize(size).convert(mode).save(path)
    return path


def _speech(path, seconds, rate, channels):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 150 * t)
    sf.write(path, np.stack([wave * (1 - 0.3 * c) for c in range(channels)], 1).astype(np.float32), rate)
    return path


@pytest.mark.parametrize("mode,size,rate,channels", [
    ("RGB", (512, 512), 16000, 1),
    ("RGBA", (400, 512), 44100, 2),
    ("L", (300, 200), 22050, 1),
])
def test_generate_writes_an_mp4_with_every_frame_and_the_audio(checkpoint, tmp_path, mode, size, rate, channels):
    image = _photo(tmp_path / "face.png", mode, size)
    audio = _speech(tmp_path / "speech.wav", 1.0, rate, channels)
    out = tmp_path / "out" / "talk.mp4"
    assert main(["generate", "--image", str(image), "--audio", str(audio), "--out", str(out),
                 "--checkpoint", str(checkpoint), "--steps", "1", "--cfg", "1"]) == 0
    info = probe_video(out)
    assert info["frames"] == round(1.0 * 25) and info["has_audio"] and info["codec"] == "h264"
    assert (info["width"], info["height"]) == (64, 64)
    assert [p.name for p in out.parent.iterdir()] == ["talk.mp4"]


def test_failed_generation_leaves_nothing_at_out(checkpoint, tmp_path, capsys):
    image = _photo(tmp_path / "face.png", "RGB", (64, 64))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    out = tmp_path / "talk.mp4"
    assert main(["generate", "--image", str(image), "--audio", str(silent), "--out", str(out),
                 "--checkpoint", str(checkpoint), "--steps", "1"]) == 2
    assert "silent" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "silent.wav"]


def test_interrupted_generation_leaves_nothing_at_out(checkpoint, tmp_path, monkeypatch):
    from emo_models import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.EMOPipeline, "sample", interrupted)
    image = _photo(tmp_path / "face.png", "RGB", (64, 64))
    audio = _speech(tmp_path / "speech.wav", 0.5, 16000, 1)
    out = tmp_path / "talk.mp4"
    assert main(["generate", "--image", str(image), "--audio", str(audio), "--out", str(out),
                 "--checkpoint", str(checkpoint), "--steps", "1"]) == 130
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "speech.wav"]


def test_missing_checkpoint_names_the_folder(tmp_path, capsys):
    assert main(["generate", "--image", "x.png", "--audio", "y.wav", "--out", str(tmp_path / "o.mp4"),
                 "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_inspect_names_a_native_checkpoint(checkpoint, capsys):
    assert main(["inspect", str(checkpoint)]) == 0
    text = capsys.readouterr().out.lower()
    assert "emo" in text and "backbone" in text
