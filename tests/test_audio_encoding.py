"""Audio of any length: one wav2vec2 pass up to a bound (bit-identical to the one-pass encode), overlapping
windows with cross-faded seams beyond it, produced span by span as the clip loop asks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo_models.audio import audio_features, audio_windows
from emo_models.audio_encoding import ONE_PASS_SECONDS, HeldFeatures, WindowedFeatures, encode_audio

FPS = 25.0


def voice(seconds: float, rate: int = 16000) -> np.ndarray:
    """A voiced, amplitude- and pitch-modulated signal: (T,) float32."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 * t + 20 * np.sin(2 * np.pi * 0.3 * t)
    return (0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * pitch)).astype(np.float32)


def windowed(pipeline, seconds: float, window: float = 1.0, overlap: float = 0.32):
    wave = voice(seconds)
    frames = pipeline.count_frames(wave.shape[0], 16000, FPS)[0]
    return encode_audio(pipeline.audio_encoder, wave, frames, FPS, pipeline.config.audio_window, seconds,
                        one_pass_seconds=window, overlap_seconds=overlap)


def test_audio_up_to_the_bound_is_one_pass_bit_identical_to_the_whole_audio_encode(tiny_pipeline, speech_wave):
    encoding = tiny_pipeline.encode_audio(speech_wave, 16000)
    assert isinstance(encoding.source, HeldFeatures) and encoding.frames == 30
    one_pass = audio_windows(audio_features(tiny_pipeline.audio_encoder, speech_wave, 30), 2)
    assert torch.equal(encoding.windows(0, 30), one_pass)
    assert torch.equal(encoding.windows(7, 19), one_pass[7:19])
    assert torch.equal(encoding.span(8, 30).windows(0, 4), one_pass[8:12])  # a span keeps the whole audio's context
    assert ONE_PASS_SECONDS >= 20  # wav2vec2 sees at most this much at once, the bound of today's one pass


def test_longer_audio_is_encoded_in_windows_only_as_its_spans_are_asked_for(tiny_pipeline, monkeypatch):
    encoding = windowed(tiny_pipeline, 6.0)  # 150 frames; windows of 25 frames overlapping by 8: hop 17
    source = encoding.source
    assert isinstance(source, WindowedFeatures) and encoding.frames == 150
    assert source.count == 9 and source.span_of(8) == (136, 150)
    encoded = []
    encode = WindowedFeatures.encode
    monkeypatch.setattr(WindowedFeatures, "encode", lambda self, j: encoded.append(j) or encode(self, j))
    assert encoding.windows(40, 44).shape == (4, 5, 2, 32)
    assert sorted(set(encoded)) == [1, 2]  # frames 38..46 lie in windows 1 (17..42) and 2 (34..59) only
    encoding.windows(140, 150)
    assert len(source._cache) <= 2  # never more than two windows held


def test_window_seams_are_cross_faded_continuously(tiny_pipeline):
    encoding = windowed(tiny_pipeline, 3.0)  # 75 frames: windows 0..24, 17..41, 34..58, 51..74
    source = encoding.source
    features = source(0, 75)
    a, b = source.encode(0), source.encode(1)  # window 0 alone (frames 0..24), window 1 alone (17..41)
    assert torch.equal(features[:17], a[:17])  # outside a seam: one window's features as they are
    ramp = (torch.arange(8) + 0.5) / 8
    blend = a[17:25] * ramp.flip(0)[:, None, None] + b[:8] * ramp[:, None, None]
    torch.testing.assert_close(features[17:25], blend)  # inside: weights sum to 1, fading from one to the next
    # continuous: entering and crossing the seam, each frame moves as the windows move plus at most
    # 1/overlap of their difference (a hard switch from one window to the next would jump by all of it)
    wb = torch.cat([torch.zeros(1), ramp])  # frames 16..24: window 1's weight
    own = wb[1:, None, None] * (b[:8] - torch.cat([a[16:17], b[:7]])) + (1 - wb[1:, None, None]) * (a[17:25] - a[16:24])
    extra = (features[17:25] - features[16:24]) - own
    assert extra.abs().max() <= (b[:8] - a[17:25]).abs().max() / 8 + 1e-5
    assert torch.isfinite(features).all() and features.shape == (75, 2, 32)


def test_windowed_spans_agree_with_the_whole_and_keep_the_audios_edges(tiny_pipeline):
    encoding = windowed(tiny_pipeline, 3.0)
    whole = encoding.windows(0, 75)
    torch.testing.assert_close(encoding.windows(30, 45), whole[30:45], rtol=0, atol=1e-6)
    torch.testing.assert_close(encoding.span(70, 75).windows(0, 5), whole[70:75], rtol=0, atol=1e-6)
    assert torch.equal(whole[0, 0], whole[0, 2])  # neighbours before the first frame clamp to it
    with pytest.raises(ValueError, match="frames 70..80"):
        encoding.windows(70, 80)
