"""The command line end to end on a tiny checkpoint: init -> generate -> mp4 with audio; inspect; the command table."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from emo_models.cli import COMMANDS, HelpFormatter, build_parser, main
from emo_models.media import probe_video


def exit_code(argv) -> int:
    """main's exit status, whether it returns it or argparse exits with it (options refused while parsing)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


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
    from emo_models import render

    real = render.render_clips

    def interrupted(*args, **kwargs):
        clips = real(*args, **kwargs)
        yield next(clips)  # the first clip reaches the video being written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "render_clips", interrupted)
    image = _photo(tmp_path / "face.png", "RGB", (64, 64))
    audio = _speech(tmp_path / "speech.wav", 0.5, 16000, 1)
    out = tmp_path / "talk.mp4"
    assert main(["generate", "--image", str(image), "--audio", str(audio), "--out", str(out),
                 "--checkpoint", str(checkpoint), "--steps", "1"]) == 130
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "speech.wav"]


def test_missing_checkpoint_names_the_folder(tmp_path, capsys):
    image = _photo(tmp_path / "face.png", "RGB", (64, 64))
    audio = _speech(tmp_path / "speech.wav", 0.5, 16000, 1)
    assert main(["generate", "--image", str(image), "--audio", str(audio), "--out", str(tmp_path / "o.mp4"),
                 "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_inspect_names_a_native_checkpoint(checkpoint, capsys):
    assert main(["inspect", str(checkpoint)]) == 0
    text = capsys.readouterr().out.lower()
    assert "emo" in text and "backbone" in text


def test_every_option_of_every_command_has_help_that_shows_its_default():
    import argparse

    parser = build_parser()  # every command's options
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert list(commands) == [c.name for c in COMMANDS]
    for name, command in commands.items():
        for action in command._actions:
            if action.dest == "help" or not action.option_strings:
                continue
            where = f"{name} {action.option_strings[0]}"
            assert action.help, f"{where} has no help text"
            flag = action.nargs == 0
            text = HelpFormatter(name)._get_help_string(action)
            assert action.required or flag or "default" in text, f"{where}: help does not show its default"


def test_sampling_options_default_to_the_checkpoint(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--steps", "--cfg", "--scheduler", "--fps", "--width", "--speed", "--frames-per-clip"):
        assert f"{option} " in text
    assert text.count("default: from the checkpoint") >= 9


def test_version_is_the_packages(capsys):
    import re
    from pathlib import Path

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    version = re.search(r'^version = "(.+)"', pyproject, re.MULTILINE).group(1)
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"emo-comfy {version}"


def test_init_says_parts_not_given_stay_random_and_defaults_to_full_size(capsys):
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Every part you do not give stays randomly initialised" in text
    assert "(default: full)" in text and "full = SD-1.5 at 512x512" in text


@pytest.mark.parametrize("argv, absent", [
    (["--help"], ("torch", "diffusers", "emo_models.cli_generate", "emo_models.training.prepare")),
    (["generate", "--help"], ("diffusers", "transformers", "librosa", "emo_models.training.prepare",
                              "emo_models.demo.recipe")),
])
def test_help_imports_only_what_the_chosen_command_needs(argv, absent):
    import subprocess
    import sys

    code = (f"import sys; from emo_models.cli import main\ntry: main({argv!r})\nexcept SystemExit: pass\n"
            f"print([m for m in {absent!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("option, value, message", [
    ("--steps", "0", "argument --steps: 0 is below the minimum 1. It is the denoising steps per clip"),
    ("--fps", "0", "argument --fps: 0 is below the minimum 1. It is the video frame rate"),
    ("--face-box", "1,2", "--face-box: '1,2'; give four numbers x0,y0,x1,y1"),
    ("--cfg", "nan", "argument --cfg: nan is not a number. It is the guidance scale"),
    ("--upscale", "0", "argument --upscale: 0 is below the minimum 1. It is the enlargement of the frames"),
])
def test_bad_options_are_refused_naming_them_and_nothing_is_written(checkpoint, tmp_path, capsys, option, value,
                                                                    message):
    image = _photo(tmp_path / "face.png", "RGB", (64, 64))
    audio = _speech(tmp_path / "speech.wav", 0.5, 16000, 1)
    out = tmp_path / "talk.mp4"
    assert exit_code(["generate", "--image", str(image), "--audio", str(audio), "--out", str(out),
                      "--checkpoint", str(checkpoint), option, value]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_long_audio_streams_to_an_mp4_with_every_frame_and_the_whole_soundtrack(checkpoint, tmp_path, monkeypatch):
    from emo_models import audio_encoding
    from emo_models.media import read_video

    monkeypatch.setattr(audio_encoding, "ONE_PASS_SECONDS", 1.0)  # 2.2 s counts as long: windows of 1 s
    monkeypatch.setattr(audio_encoding, "OVERLAP_SECONDS", 0.3)
    windows = []
    encode = audio_encoding.WindowedFeatures.encode
    monkeypatch.setattr(audio_encoding.WindowedFeatures, "encode", lambda self, j: windows.append(j) or encode(self, j))
    audio = _speech(tmp_path / "song.wav", 2.2, 22050, 2)
    out = tmp_path / "song.mp4"
    assert main(["generate", "--image", str(_photo(tmp_path / "face.png", "RGB", (64, 64))), "--audio", str(audio),
                 "--out", str(out), "--checkpoint", str(checkpoint), "--steps", "1", "--cfg", "1", "--fps", "10",
                 "--frames-per-clip", "11"]) == 0
    assert sorted(set(windows)) == [0, 1, 2]  # 22 frames in windows of 10 overlapping by 3: 0..9, 7..16, 14..21
    frames, fps, sound, rate = read_video(out)
    assert frames.shape[0] == 22 and fps == 10 and rate == 22050
    original = sf.read(audio, dtype="float32")[0].mean(axis=1)
    assert abs(sound.shape[0] - original.shape[0]) < 0.05 * rate  # the whole soundtrack, to within AAC's padding
    lag = int(np.argmax(np.correlate(sound[:4096], original[:2048], mode="valid")))
    heard = sound[lag:lag + 22050 * 2]
    assert np.corrcoef(heard, original[:heard.shape[0]])[0, 1] > 0.95
