"""Shared fixtures: tiny random-weight EMO pipelines, built once per session where safe to share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def wake_zero_initialised_layers(model, std: float = 0.05, seed: int = 0) -> None:
    """Give the layers EMO starts at zero (temporal proj_out, speed and face-locator outputs) random
    weights, as training would, so tests can see their effect."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.abs().sum() == 0 and ("proj_out" in name or "to_out" in name or "conv_out" in name):
                p.copy_(torch.randn(p.shape, generator=generator) * std)


def build_tiny_pipeline(seed: int = 0, awake: bool = True):
    """A random tiny EMOPipeline (64x64, f=4, n=2)."""
    from diffusers import AutoencoderKL

    from emo_models.audio import build_wav2vec2
    from emo_models.config import tiny_config
    from emo_models.model import EMOModel
    from emo_models.pipeline import EMOPipeline

    config = tiny_config()
    torch.manual_seed(seed)
    model = EMOModel(config)
    if awake:
        wake_zero_initialised_layers(model, seed=seed)
    return EMOPipeline(model, AutoencoderKL(**config.vae), build_wav2vec2(config))


@pytest.fixture(scope="session")
def tiny_pipeline():
    """Shared, read-only: tests must not change its weights."""
    return build_tiny_pipeline()


@pytest.fixture
def speech_wave():
    """1.2 s of a voiced, amplitude-modulated signal at 16 kHz: (T,) float32."""
    t = np.arange(int(1.2 * 16000)) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.4 * envelope * np.sin(2 * np.pi * 140 * t + 3 * np.sin(2 * np.pi * 5 * t))).astype(np.float32)


@pytest.fixture
def portrait():
    """A smooth random 64x64 image (1, 3, 64, 64) in [0, 1]."""
    g = torch.Generator().manual_seed(3)
    small = torch.rand(1, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The tiny random checkpoint folder, written by ``python -m emo_models init`` as a user would."""
    from emo_models.cli import main

    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    assert main(["init", "--config", "tiny", "--out", str(folder)]) == 0
    return folder
