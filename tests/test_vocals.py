"""Vocal isolation: the built-in method, MDX-Net ONNX files in the real layout, chunking and refusals."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest
import torch

from emo_models.demo.data import held_out_clip
from emo_models.demo.synthetic_band import mix_voice, synthetic_band
from emo_models.vocals import (
    BUILTIN,
    find_separation_models,
    isolate_vocals,
    load_separator,
    resolve_method,
    separate_chunks,
    si_sdr,
)
from emo_models.vocals.mdx import HASH_BYTES, uvr_hash
from tests.separation_files import write_mdx_onnx, write_model_data


@pytest.fixture(scope="module")
def voice_and_band():
    """A held-out demo voice (2 s, 16 kHz) and a synthetic band of the same length, (T,) and (2, T)."""
    clip = held_out_clip(0, seconds=2.0)
    return clip.audio, synthetic_band(2.0, 16000, seed=0)


def tone(seconds: float, rate: int, channels: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * freq * t) * (c + 1) / channels for c in range(channels)]).astype(np.float32)


# ---- the built-in method ------------------------------------------------------------------------
def test_builtin_isolation_recovers_the_voice_from_a_band_mix(voice_and_band):
    voice, band = voice_and_band
    mix = mix_voice(voice, band.mean(axis=0), 0.0)
    result = isolate_vocals(mix, 16000)
    assert result.method.startswith("built-in")
    assert si_sdr(result.vocals[0], voice) > si_sdr(mix, voice) + 6.0


def test_builtin_uses_the_centre_of_a_stereo_mix(voice_and_band):
    voice, band = voice_and_band
    hard_panned = np.stack([band[0], np.zeros_like(band[0])])  # the whole band on the left only
    mix = mix_voice(voice, hard_panned, -3.0)
    centred = isolate_vocals(mix, 16000).vocals
    mono = isolate_vocals(mix.mean(axis=0), 16000).vocals
    assert si_sdr(centred[0], voice) > si_sdr(mono[0], voice) + 3.0
    assert np.array_equal(centred[0], centred[1])  # the centre estimate on both channels


@pytest.mark.parametrize("shape,rate", [((1,), 16000), ((2,), 44100), ((3,), 22050), ((1, 2), 48000)])
def test_outputs_keep_channels_length_and_rate_and_sum_to_the_input(voice_and_band, shape, rate):
    voice, _ = voice_and_band
    from emo_models.media import resample

    wave = np.broadcast_to(resample(voice, 16000, rate), (*shape, int(round(len(voice) * rate / 16000))))
    wave = torch.tensor(wave.copy()) if len(shape) == 2 else wave.copy()
    result = isolate_vocals(wave, rate)
    channels = shape[-1]
    assert result.vocals.shape == result.accompaniment.shape == (channels, wave.shape[-1])
    assert result.sample_rate == rate and result.vocals.dtype == np.float32
    np.testing.assert_allclose(result.vocals + result.accompaniment, np.asarray(wave).reshape(channels, -1), atol=1e-6)


def test_silent_input_is_refused_by_name():
    with pytest.raises(ValueError, match=r"song: silent \(peak 0\).*no vocals to isolate"):
        isolate_vocals(np.zeros((2, 16000), np.float32), 16000, name="song")
    with pytest.raises(ValueError, match=r"song: empty \(0 samples\)"):
        isolate_vocals(np.zeros((2, 0), np.float32), 16000, name="song")
    with pytest.raises(ValueError, match=r"song: holds NaN"):
        isolate_vocals(np.full(100, np.nan, np.float32), 16000, name="song")


def test_music_without_a_voice_is_refused_with_a_clear_message(voice_and_band):
    _, band = voice_and_band
    with pytest.raises(ValueError, match=r"song: no singing or speech found: built-in .* dB under the mix "
                                         r"\(music only\?\)"):
        isolate_vocals(band, 16000, name="song")


# ---- chunking -----------------------------------------------------------------------------------
class HalfGain:
    description = "half gain"

    def vocals(self, mix, sample_rate):
        return mix * 0.5


def test_chunks_tile_the_input_and_cross_fade_without_seams():
    wave = np.random.default_rng(0).standard_normal((2, 10_007)).astype(np.float32)
    pieces = list(separate_chunks(wave, 1000, HalfGain(), chunk_seconds=2.0, overlap_seconds=0.3))
    assert len(pieces) == 6
    np.testing.assert_array_equal(np.concatenate([m for _, m in pieces], axis=1), wave)
    np.testing.assert_allclose(np.concatenate([v for v, _ in pieces], axis=1), 0.5 * wave, atol=1e-6)


def test_cancel_stops_between_chunks_and_progress_counts_samples():
    from emo_models.pipeline import GenerationCancelled

    wave = np.ones((1, 5000), np.float32)
    seen = []
    stream = separate_chunks(wave, 1000, HalfGain(), chunk_seconds=2.0, overlap_seconds=0.5,
                             on_progress=lambda done, total: seen.append((done, total)), should_stop=lambda: True)
    with pytest.raises(GenerationCancelled):
        list(stream)
    assert seen == [(2000, 5000)]


def _peak_working_memory(minutes: float, rate: int) -> int:
    """Peak bytes numpy allocates while streaming the built-in separation of ``minutes`` of noise."""
    wave = (0.1 * np.random.default_rng(0).standard_normal((1, int(minutes * 60 * rate)))).astype(np.float32)
    separator = load_separator(BUILTIN)
    tracemalloc.start()
    try:
        for _ in separate_chunks(wave, rate, separator):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_working_memory_of_ten_minutes_is_that_of_one():
    rate = 2000  # the same code path as 44.1 kHz, at a rate that keeps the test quick
    load_separator(BUILTIN).vocals(np.zeros((1, rate), np.float32), rate)  # warm librosa's caches first
    one, ten = _peak_working_memory(1, rate), _peak_working_memory(10, rate)
    assert ten <= 1.1 * one, f"peak {ten / 1e6:.1f} MB for 10 min vs {one / 1e6:.1f} MB for 1 min"


# ---- MDX-Net ONNX -------------------------------------------------------------------------------
@pytest.mark.parametrize("channels,rate", [(2, 44100), (1, 16000), (2, 48000)])
def test_mdx_model_reads_and_writes_its_spectrogram_layout(tmp_path, channels, rate):
    model = write_mdx_onnx(tmp_path / "audio_separator" / "Kim_Vocal_2.onnx", gain=0.5)
    write_model_data(model, compensate=1.0)
    wave = tone(1.5, rate, channels)
    result = isolate_vocals(wave, rate, model)
    assert result.method == "MDX-Net Kim_Vocal_2.onnx" and result.vocals.shape == wave.shape
    inner = slice(rate // 10, -rate // 10)  # the first/last 0.1 s see the zero padding
    np.testing.assert_allclose(result.vocals[:, inner], 0.5 * wave[:, inner], atol=5e-3)


def test_mdx_random_weight_model_runs_in_chunks_with_the_compensated_rest(tmp_path):
    model = write_mdx_onnx(tmp_path / "random.onnx", body="random")
    write_model_data(model, compensate=1.03, name="model_data.json")
    wave = tone(2.5, 22050, 2)
    pieces = list(separate_chunks(wave, 22050, load_separator(model), chunk_seconds=1.0, overlap_seconds=0.2))
    vocals = np.concatenate([v for v, _ in pieces], axis=1)
    assert vocals.shape == wave.shape and np.isfinite(vocals).all() and np.abs(vocals).max() > 0


def test_mdx_instrumental_model_gives_the_mix_minus_its_stem(tmp_path):
    model = write_mdx_onnx(tmp_path / "inst.onnx", gain=0.25)
    write_model_data(model, compensate=1.0, primary_stem="Instrumental")
    wave = tone(1.0, 44100, 2)
    vocals = load_separator(model).vocals(wave, 44100)
    np.testing.assert_allclose(vocals[:, 4410:-4410], 0.75 * wave[:, 4410:-4410], atol=5e-3)


def test_unknown_mdx_file_asks_for_its_model_data(tmp_path):
    model = write_mdx_onnx(tmp_path / "mystery.onnx")
    with pytest.raises(ValueError, match=r"mystery.onnx \(UVR hash [0-9a-f]{32}\) is not an MDX-Net model we know "
                                         r".*mdx_model_data.json beside it"):
        load_separator(model)


def test_mdx_file_whose_graph_does_not_match_its_parameters_is_refused(tmp_path):
    model = write_mdx_onnx(tmp_path / "Kim_Vocal_2.onnx", dim_f=32)
    write_model_data(model, dim_f=64)
    with pytest.raises(ValueError, match=r"Kim_Vocal_2.onnx takes .*32, 16.*not an MDX-Net spectrogram "
                                         r"\(batch, 4, 64, 16\)"):
        load_separator(model)


def test_foreign_and_missing_files_are_refused_naming_the_folder(tmp_path):
    (tmp_path / "notes.onnx").write_bytes(b"not a model")
    write_model_data(tmp_path / "notes.onnx")
    with pytest.raises(ValueError, match=r"notes.onnx is not a readable ONNX model .*models/audio_separation"):
        load_separator(tmp_path / "notes.onnx")
    (tmp_path / "vocals.pth").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"vocals.pth is not an MDX-Net .onnx model; models/audio_separation"):
        load_separator(tmp_path / "vocals.pth")
    with pytest.raises(ValueError, match=r"'gone.onnx' is neither 'built-in' nor a model file; put an MDX-Net "
                                         r".onnx .* in models/audio_separation"):
        load_separator("gone.onnx")


def test_missing_onnxruntime_is_named_with_its_install_command(tmp_path, monkeypatch):
    model = write_mdx_onnx(tmp_path / "Kim_Vocal_2.onnx")
    write_model_data(model)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ValueError, match=r"needs onnxruntime: pip install onnxruntime"):
        load_separator(model)


def test_uvr_hash_is_md5_of_the_last_10000_kib(tmp_path):
    import hashlib

    small, large = tmp_path / "small.onnx", tmp_path / "large.onnx"
    small.write_bytes(b"abc")
    data = np.random.default_rng(0).bytes(HASH_BYTES + 12345)
    large.write_bytes(data)
    assert uvr_hash(small) == hashlib.md5(b"abc").hexdigest()
    assert uvr_hash(large) == hashlib.md5(data[-HASH_BYTES:]).hexdigest()


def test_auto_picks_a_placed_model_else_the_builtin(tmp_path):
    assert resolve_method("auto", [tmp_path]) == BUILTIN
    model = write_mdx_onnx(tmp_path / "hallo" / "audio_separator" / "Kim_Vocal_2.onnx")
    assert find_separation_models([tmp_path / "hallo"]) == [model]
    assert resolve_method("auto", [tmp_path / "hallo"]) == model
    assert resolve_method("built-in", [tmp_path / "hallo"]) == BUILTIN
