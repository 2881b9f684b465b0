"""The demo: the bundled model runs out of the box, fits its size limit, and its recipe runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emo_models.cli import main
from emo_models.demo import DEMO_AUDIO, DEMO_MODEL, DEMO_PORTRAIT
from emo_models.demo.data import HELD_OUT_BASE, held_out_seed, train_seed
from emo_models.media import load_audio, probe_video


def test_bundled_checkpoint_is_package_data_safetensors_under_25_mb_and_loads():
    import emo_models

    assert DEMO_MODEL.is_relative_to(Path(emo_models.__file__).parent)  # inside the package: installed with it
    files = sorted(DEMO_MODEL.iterdir())
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert weights and all(f.suffix in (".safetensors", ".json") for f in files)
    assert sum(f.stat().st_size for f in files) <= 25 * 2**20
    from emo_models.demo import load_demo_pipeline

    pipeline = load_demo_pipeline()
    assert pipeline.config.name == "demo" and pipeline.dtype == torch.float32
    metadata = json.loads((DEMO_MODEL / "metadata.json").read_text())
    assert "train-demo" in metadata["command"] and "seed" in metadata


def test_demo_with_no_arguments_but_steps_writes_every_frame_and_the_audio(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--steps", "1"]) == 0
    info = probe_video(tmp_path / "out" / "demo.mp4")
    seconds = len(load_audio(DEMO_AUDIO, 16000)) / 16000
    assert info["frames"] == round(seconds * 25) and info["has_audio"] and info["codec"] == "h264"


def test_the_demo_samples_as_it_was_trained_with_its_checkpoints_preset():
    from emo_models.config import EMOConfig, demo_config

    preset = EMOConfig.load(DEMO_MODEL / "config.json").generation
    assert preset == demo_config().generation
    assert (preset.steps, preset.guidance, preset.guidance_reference, preset.first_clip_motion) == (10, 2.0, 1.0,
                                                                                                   "reference")
    face_box = json.loads((DEMO_MODEL / "metadata.json").read_text())["face_box"]  # pixels at 64x64
    assert preset.face_box == tuple(v / 64 for v in face_box) and not preset.detect_face


def test_demo_takes_your_own_image_and_audio(tmp_path):
    import soundfile as sf
    from PIL import Image

    Image.open(DEMO_PORTRAIT).resize((100, 80)).convert("RGBA").save(tmp_path / "me.png")
    t = np.arange(int(0.8 * 44100)) / 44100
    sf.write(tmp_path / "me.wav", (0.3 * np.sin(2 * np.pi * 150 * t) * (t % 0.25 < 0.15)).astype(np.float32), 44100)
    out = tmp_path / "mine.mp4"
    assert main(["demo", "--image", str(tmp_path / "me.png"), "--audio", str(tmp_path / "me.wav"), "--out", str(out),
                 "--steps", "1", "--seed", "3", "--speed", "1.0", "--upscale", "1"]) == 0
    info = probe_video(out)
    assert info["frames"] == 20 and (info["width"], info["height"]) == (64, 64) and info["has_audio"]


def test_held_out_seeds_never_overlap_training_seeds():
    assert train_seed(99_999, run_seed=HELD_OUT_BASE // 100_000 - 1) < HELD_OUT_BASE <= held_out_seed(0)
    with pytest.raises(ValueError, match="held-out"):
        train_seed(0, run_seed=HELD_OUT_BASE // 100_000)


def test_train_demo_runs_every_phase_on_a_tiny_budget(tmp_path):
    """data -> autoencoder -> init -> stages 1, 2, 3 -> fp16 export that the demo loads (a few steps each)."""
    from emo_models.demo import load_demo_pipeline
    from emo_models.demo.recipe import DemoRecipe, train_demo

    recipe = DemoRecipe(minutes=0.05, clips=2, seconds=1.0, ae_batch=4, stage_batch=(2, 1, 1))
    run = train_demo(tmp_path / "run", seed=1, recipe=recipe, export=tmp_path / "assets" / "demo_model",
                     log=lambda *_: None, command="test")
    assert set(run.seconds) == {"data", "autoencoder", "stage1", "stage2", "stage3", "total"}
    assert run.checkpoint.name == "checkpoint-1" and Path(run.checkpoint).parent.name == "stage3"
    seeds = json.loads((tmp_path / "run" / "data" / "index.json").read_text())["seeds"]
    assert seeds == [100_000, 100_001]
    pipeline = load_demo_pipeline(run.exported)
    assert pipeline.config.vae["scaling_factor"] != 1.0  # fitted to the trained autoencoder's latents
    face_box = json.loads((run.exported / "metadata.json").read_text())["face_box"]
    assert pipeline.config.generation.face_box == tuple(v / 64 for v in face_box)  # the export writes the preset
    assert (tmp_path / "assets" / "demo_portrait.png").is_file() and (tmp_path / "assets" / "demo_audio.wav").is_file()
