"""Trained-for defaults travel with the checkpoint: config.json's ``generation``, with EMO's defaults for older files."""

from __future__ import annotations

import json

import pytest

from emo_models.config import CONFIGS, EMOConfig, tiny_config
from emo_models.preset import GenerationPreset


def test_the_preset_round_trips_through_config_json(tmp_path):
    config = tiny_config()
    config.generation = GenerationPreset(steps=25, scheduler="dpmpp_2m", guidance=2.5, guidance_audio=4.0,
                                         uncond_drops=("audio", "face"), first_clip_motion="zeros",
                                         frame_rounding="ceil", face_box=(0.1, 0.2, 0.9, 0.8), detect_face=False)
    config.save(tmp_path / "config.json")
    assert EMOConfig.load(tmp_path / "config.json") == config


def test_a_config_json_without_a_preset_gets_emos_defaults_and_a_partial_one_is_completed(tmp_path):
    data = tiny_config().to_dict()
    del data["generation"]  # a checkpoint written before presets existed
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert EMOConfig.load(tmp_path / "config.json").generation == GenerationPreset()
    data["generation"] = {"steps": 12}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert EMOConfig.load(tmp_path / "config.json").generation == GenerationPreset(steps=12)


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, r"generation.steps: 0 is below the minimum 1"),
    ("scheduler", "plms", r"generation.scheduler: 'plms'; expected one of ddim, dpmpp_2m, euler"),
    ("guidance", -1, r"generation.guidance: -1 is below the minimum 1"),
    ("uncond_drops", ["identity"], r"generation.uncond_drops: \('identity',\); expected a non-empty list of"),
    ("first_clip_motion", "noise", r"generation.first_clip_motion: 'noise'; expected one of reference, zeros"),
    ("frame_rounding", "floor", r"generation.frame_rounding: 'floor'; expected one of nearest, ceil"),
    ("face_box", [0.5, 0.5, 0.4, 0.9], r"generation.face_box: \(0.5, 0.5, 0.4, 0.9\); expected x0, y0, x1, y1 as"),
    ("stepz", 3, r"config generation: unknown fields \['stepz'\]"),
])
def test_bad_preset_values_are_refused_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        EMOConfig.from_dict({**tiny_config().to_dict(), "generation": {field: value}})


def test_every_named_config_has_a_valid_preset():
    presets = {name: make().generation for name, make in CONFIGS.items()}
    assert presets["full"] == presets["tiny"] == GenerationPreset()  # EMO's: 40 DDIM steps, one scale of 3.5
    assert presets["full"].steps == 40 and presets["full"].guidance == 3.5 and presets["full"].guidance_reference is None
    assert presets["demo"].steps == 10 and not presets["demo"].detect_face
