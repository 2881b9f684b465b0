"""One frame count: exact for every clip length, and the same in every node, command and the sampler."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from emo_models.media_audio import frame_count

from .test_nodes import load_pack, models_dir, run_node  # noqa: F401 (fixture)

RATES = (16000, 22050, 44100, 48000)


@pytest.mark.parametrize("fps", [24, 25, 30])
@pytest.mark.parametrize("rate", RATES)
def test_frame_count_is_exact_for_every_sample_count_up_to_four_seconds(fps, rate):
    samples = np.arange(4 * rate + 1)
    # exact integer arithmetic: floor(n·fps/rate + 1/2) = floor((2·n·fps + rate) / (2·rate)); ceil likewise
    assert np.array_equal(frame_count(samples, rate, fps), (2 * samples * fps + rate) // (2 * rate))
    assert np.array_equal(frame_count(samples, rate, fps, "ceil"), -((-samples * fps) // rate))
    for n in np.random.default_rng(fps + rate).integers(0, 4 * rate, 200).tolist():  # Fractions, one at a time
        exact = Fraction(n * fps, rate)
        assert frame_count(n, rate, fps) == int(exact + Fraction(1, 2)) == frame_count(np.array([n]), rate, fps)[0]
        assert frame_count(n, rate, fps, "ceil") == -int(-exact // 1)


def test_frame_count_edge_cases():
    assert frame_count(9280, 16000, 25) == 15  # 14.5 frames: the float product gave 14 here before
    assert frame_count(48048, 48000, 30000 / 1001) == 30  # exactly 30 NTSC frames
    assert frame_count(10**12, 48000, 30000 / 1001) == 624375624  # 5,787 hours of audio: exact, no overflow
    assert frame_count(np.array([10**12]), 48000, 30000 / 1001)[0] == 624375624
    with pytest.raises(ValueError, match=r"^frame_rounding: 'floor'; choose one of nearest, ceil"):
        frame_count(1, 16000, 25, "floor")
    with pytest.raises(ValueError, match=r"^fps: 0; give a positive, finite frame rate"):
        frame_count(1, 16000, 0)


LENGTHS = [(9280, 16000, 25.0), (13230, 44100, 24.0), (17999, 48000, 30.0), (8820, 22050, 25.0)]


def test_every_node_the_command_line_and_the_sampler_count_the_same_frames(models_dir, tmp_path):  # noqa: F811
    from emo_models.cli import main

    (model,) = run_node("EMOLoadModel", checkpoint="tiny")
    reference, _ = run_node("EMOEncodeReference", emo_model=model, image=torch.rand(1, 64, 64, 3))
    image = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 90, 80)).save(image)
    for i, (samples, rate, fps) in enumerate(LENGTHS):
        t = np.arange(samples) / rate
        wave = (0.4 * np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        audio = {"waveform": torch.from_numpy(wave).repeat(1, 2, 1), "sample_rate": rate}
        expected = frame_count(samples, rate, fps)
        emo_audio, _, frames, _ = run_node("EMOAudioFeatures", emo_model=model, audio=audio, fps=fps)
        info, *_ = run_node("EMOAudioFrameInfo", emo_model=model, audio=audio, fps=fps)
        assert frames == info == emo_audio.frames == expected, (samples, rate, fps)
        sf.write(tmp_path / "speech.wav", np.stack([wave, wave], 1), rate, subtype="FLOAT")
        assert main(["generate", "--image", str(image), "--audio", str(tmp_path / "speech.wav"), "--out",
                     str(tmp_path / f"talk{i}.mp4"), "--checkpoint", str(models_dir / "emo" / "tiny"), "--fps", str(fps),
                     "--steps", "1", "--cfg", "1", "--frames-per-clip", "12", "--motion-frames", "0"]) == 0
        with av.open(str(tmp_path / f"talk{i}.mp4")) as video:  # the frames the mp4 holds
            assert sum(1 for _ in video.decode(video=0)) == expected, (samples, rate, fps)
    images, _ = run_node("EMOSampler", emo_model=model, reference=reference, emo_audio=emo_audio, steps=1, cfg=1.0,
                         frames_per_clip=12, motion_frames=0)
    assert images.shape[0] == frame_count(*LENGTHS[-1])
