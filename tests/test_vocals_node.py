"""The Isolate Vocals node, called as ComfyUI calls it (see test_nodes.py for the harness)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo_models.demo.data import held_out_clip
from emo_models.demo.synthetic_band import mix_voice, synthetic_band
from tests.separation_files import write_mdx_onnx, write_model_data
from tests.test_nodes import load_pack, models_dir, run_node  # noqa: F401 (models_dir is a fixture)


def song(rate: int = 44100, seconds: float = 1.5, batch: int = 1, channels: int = 2) -> dict:
    """AUDIO: a held-out demo voice over the synthetic band at 0 dB, (batch, channels, T) at ``rate``."""
    from emo_models.media import resample

    voice = held_out_clip(1, seconds=seconds).audio
    mix = mix_voice(voice, synthetic_band(len(voice) / 16000, 16000, seed=1), 0.0)
    mix = resample(mix, 16000, rate)[:channels] if channels <= 2 else np.repeat(resample(mix, 16000, rate)[:1],
                                                                                channels, axis=0)
    return {"waveform": torch.tensor(mix)[None].repeat(batch, 1, 1), "sample_rate": rate}


def test_isolate_vocals_is_registered_with_its_display_name():
    pack = load_pack()
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["EMOIsolateVocals"] == "Isolate Vocals"
    assert pack.NODE_CLASS_MAPPINGS["EMOIsolateVocals"].RETURN_NAMES == ("vocals", "accompaniment")


@pytest.mark.parametrize("rate,batch,channels", [(44100, 1, 2), (16000, 2, 1), (22050, 1, 1)])
def test_outputs_keep_the_input_length_rate_channels_and_batch(models_dir, rate, batch, channels):  # noqa: F811 (the imported fixture)
    audio = song(rate, batch=batch, channels=channels)
    vocals, rest = run_node("EMOIsolateVocals", audio=audio)
    for out in (vocals, rest):
        assert out["sample_rate"] == rate and out["waveform"].shape == audio["waveform"].shape
        assert out["waveform"].dtype == torch.float32
    torch.testing.assert_close(vocals["waveform"] + rest["waveform"], audio["waveform"], atol=1e-5, rtol=0)


def test_silent_or_music_only_input_gets_a_clear_message(models_dir):  # noqa: F811 (the imported fixture)
    silent = {"waveform": torch.zeros(1, 2, 44100), "sample_rate": 44100}
    with pytest.raises(ValueError, match=r"audio: all 44100 samples are zero \(silence\)"):
        run_node("EMOIsolateVocals", audio=silent)
    band = {"waveform": torch.tensor(synthetic_band(2.0, 16000, seed=3))[None], "sample_rate": 16000}
    with pytest.raises(ValueError, match=r"audio: no singing or speech found.*music only"):
        run_node("EMOIsolateVocals", audio=band)


def test_separation_models_are_listed_from_both_folders_and_run(models_dir):  # noqa: F811 (the imported fixture)
    placed = write_mdx_onnx(models_dir / "audio_separation" / "Kim_Vocal_2.onnx", gain=0.5)
    write_model_data(placed)
    hallo = write_mdx_onnx(models_dir / "emo" / "hallo" / "audio_separator" / "Kim_Vocal_2.onnx", gain=1.0)
    write_model_data(hallo)
    choices = load_pack().NODE_CLASS_MAPPINGS["EMOIsolateVocals"].INPUT_TYPES()["required"]["method"][0]
    assert choices == ["built-in (no weights)", "audio_separation/Kim_Vocal_2.onnx",
                       "emo/hallo/audio_separator/Kim_Vocal_2.onnx"]
    audio = song(44100)
    whole, _ = run_node("EMOIsolateVocals", audio=audio, method="emo/hallo/audio_separator/Kim_Vocal_2.onnx")
    half, _ = run_node("EMOIsolateVocals", audio=audio, method="audio_separation/Kim_Vocal_2.onnx")
    torch.testing.assert_close(half["waveform"], 0.5 * whole["waveform"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"method: 'elsewhere.onnx' is not in models/audio_separation"):
        run_node("EMOIsolateVocals", audio=audio, method="elsewhere.onnx")
