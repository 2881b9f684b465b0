"""One generation path: ``generate``, ``demo``, the Python API and the ComfyUI nodes give identical frames."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from emo_models.cli import main

from .test_nodes import models_dir, run_node  # noqa: F401 (fixture)

STEPS, SEED = "2", 5


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 100x80 portrait (PNG) and 0.5 s of stereo 44.1 kHz speech (float WAV): lossless files."""
    folder = tmp_path_factory.mktemp("inputs")
    g = torch.Generator().manual_seed(11)
    small = torch.rand(1, 3, 10, 12, generator=g)
    image = torch.nn.functional.interpolate(small, size=(80, 100), mode="bilinear")[0].permute(1, 2, 0)
    Image.fromarray((image.numpy() * 255).round().astype(np.uint8)).save(folder / "face.png")
    t = np.arange(int(0.5 * 44100)) / 44100
    wave = 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 140 * t)
    sf.write(folder / "speech.wav", np.stack([wave, 0.7 * wave], 1).astype(np.float32), 44100, subtype="FLOAT")
    return folder / "face.png", folder / "speech.wav"


def command_frames(command, inputs, checkpoint, monkeypatch, extra=()) -> torch.Tensor:
    """The frames a command hands to the video writer, (F, H, W, 3)."""
    from emo_models import media

    captured = []

    class Capture:  # media.VideoWriter's interface, keeping the frames instead of encoding them
        def __init__(self, path, fps, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, frames):
            captured.extend(frames if frames.ndim == 4 else [frames])

    monkeypatch.setattr(media, "VideoWriter", Capture)
    image, audio = inputs
    assert main([command, "--image", str(image), "--audio", str(audio), "--out", "unused.mp4", "--checkpoint",
                 str(checkpoint), "--steps", STEPS, "--seed", str(SEED), "--upscale", "1", *extra]) == 0
    return torch.stack(captured)


def node_frames(inputs, box: str) -> torch.Tensor:
    """The frames of the node chain, as a ComfyUI user wires it, (F, H, W, 3)."""
    from emo_models.media import load_image, read_audio

    image_file, audio_file = inputs
    image = load_image(image_file).permute(0, 2, 3, 1)
    waveform, rate = read_audio(audio_file)
    (model,) = run_node("EMOLoadModel", checkpoint="tiny")
    reference, _ = run_node("EMOEncodeReference", emo_model=model, image=image)
    emo_audio, *_ = run_node("EMOAudioFeatures", emo_model=model,
                             audio={"waveform": torch.from_numpy(waveform)[None], "sample_rate": rate})
    mask = run_node("EMOFaceLocatorMask", image=image, box=box)[0] if box else None
    frames, _ = run_node("EMOSampler", emo_model=model, reference=reference, emo_audio=emo_audio,
                         face_mask=mask, steps=int(STEPS), seed=SEED)
    return frames


@pytest.mark.parametrize("box", ["0.2,0.1,0.8,0.9", ""], ids=["given-box", "default-region"])
def test_generate_demo_python_api_and_nodes_make_identical_frames(models_dir, inputs, monkeypatch, tmp_path, box):  # noqa: F811
    from emo_models.face_region import parse_box
    from emo_models.loading import load_pipeline
    from emo_models.media import load_image, read_audio

    monkeypatch.chdir(tmp_path)
    checkpoint = models_dir / "emo" / "tiny"
    extra = ["--face-box", box] if box else []
    generate = command_frames("generate", inputs, checkpoint, monkeypatch, extra)
    demo = command_frames("demo", inputs, checkpoint, monkeypatch, extra)
    nodes = node_frames(inputs, box)
    pipeline, _ = load_pipeline(checkpoint)
    waveform, rate = read_audio(inputs[1])
    api = pipeline.generate(load_image(inputs[0]), waveform, rate, face_box=parse_box(box), steps=int(STEPS),
                            seed=SEED).permute(0, 2, 3, 1)
    assert generate.shape == (13, 64, 64, 3)  # 0.5 s at the checkpoint's 25 fps, rounded half up
    assert torch.equal(generate, demo) and torch.equal(generate, nodes) and torch.equal(generate, api)
