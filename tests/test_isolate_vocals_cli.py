"""--isolate-vocals on generate and demo: the model hears the vocals, the video keeps the original mix."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emo_models.cli import main
from emo_models.demo.data import held_out_clip
from emo_models.demo.synthetic_band import mix_voice, synthetic_band
from tests.separation_files import write_mdx_onnx, write_model_data


@pytest.fixture
def song(tmp_path):
    """A held-out demo voice over the synthetic band at 0 dB: 1 s stereo wav at 16 kHz, and the voice."""
    voice = held_out_clip(2, seconds=1.0).audio
    mix = mix_voice(voice, synthetic_band(len(voice) / 16000, 16000, seed=2), 0.0)
    sf.write(tmp_path / "song.wav", mix.T, 16000)
    return tmp_path / "song.wav", voice


@pytest.fixture
def heard(monkeypatch):
    """Records the waveform the pipeline encodes (channels averaged)."""
    from emo_models import pipeline

    waves = []
    encode = pipeline.EMOPipeline.encode_audio
    def record(self, wave, sample_rate, *args, **kwargs):
        waves.append(np.asarray(wave).reshape(-1, np.shape(wave)[-1]).mean(axis=0))  # mono, as the model hears it
        assert sample_rate == 16000  # the file's own rate: nothing resampled before the model's encoder
        return encode(self, wave, sample_rate, *args, **kwargs)

    monkeypatch.setattr(pipeline.EMOPipeline, "encode_audio", record)
    return waves


def _generate(checkpoint, song, out, *extra):
    from PIL import Image
    from skimage import data

    face = song.parent / "face.png"
    Image.fromarray(data.astronaut()).resize((64, 64)).save(face)
    return main(["generate", "--image", str(face), "--audio", str(song), "--out", str(out),
                 "--checkpoint", str(checkpoint), "--steps", "1", "--cfg", "1", *extra])


def test_the_model_hears_the_vocals_and_the_video_keeps_the_mix(checkpoint, song, heard, tmp_path, capsys):
    from emo_models.media import load_audio
    from emo_models.vocals import si_sdr

    path, voice = song
    assert _generate(checkpoint, path, tmp_path / "sung.mp4", "--isolate-vocals") == 0
    assert "vocals isolated with built-in separation" in capsys.readouterr().out
    assert _generate(checkpoint, path, tmp_path / "plain.mp4") == 0
    isolated, plain = heard
    assert si_sdr(isolated[: len(voice)], voice) > si_sdr(plain[: len(voice)], voice) + 6.0
    soundtrack = load_audio(tmp_path / "sung.mp4", 16000)
    original = load_audio(path, 16000)
    n = min(len(soundtrack), len(original))
    assert np.corrcoef(soundtrack[:n], original[:n])[0, 1] > 0.95  # the song, band included, not the vocals


def test_auto_uses_the_separator_beside_the_checkpoint(checkpoint, song, heard, tmp_path, capsys):
    model = write_mdx_onnx(checkpoint / "audio_separator" / "Kim_Vocal_2.onnx", gain=1.0)
    write_model_data(model)
    try:
        assert _generate(checkpoint, song[0], tmp_path / "sung.mp4", "--isolate-vocals") == 0
        assert "vocals isolated with MDX-Net Kim_Vocal_2.onnx" in capsys.readouterr().out
        assert _generate(checkpoint, song[0], tmp_path / "b.mp4", "--isolate-vocals", "built-in") == 0
        assert "with built-in separation" in capsys.readouterr().out
    finally:
        for file in model.parent.iterdir():
            file.unlink()
        model.parent.rmdir()


def test_music_only_input_fails_with_a_message_and_writes_nothing(checkpoint, tmp_path, capsys):
    sf.write(tmp_path / "band.wav", synthetic_band(1.0, 16000, seed=4).T, 16000)
    out = tmp_path / "out" / "band.mp4"
    assert _generate(checkpoint, tmp_path / "band.wav", out, "--isolate-vocals") == 2
    assert "no singing or speech found" in capsys.readouterr().err and not out.parent.exists()


def test_demo_takes_the_flag(tmp_path, heard, song, capsys):
    path, _ = song
    assert main(["demo", "--audio", str(path), "--out", str(tmp_path / "demo.mp4"), "--steps", "1",
                 "--isolate-vocals", "built-in"]) == 0
    assert "vocals isolated with built-in separation" in capsys.readouterr().out and len(heard) == 1
