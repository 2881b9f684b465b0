"""Named speeds for speech and singing, as the CLI and the Speed Condition node take them."""

from __future__ import annotations

import pytest

from emo_models.speed_presets import JITTER_ABOVE, SPEED_PRESETS, speed_value
from tests.test_nodes import run_node


def test_presets_sit_in_the_papers_ranges():
    for name, value in SPEED_PRESETS.items():
        low, high = (1.0, 1.3) if name.startswith("singing") else (0.1, 1.0)
        assert low <= value <= high < JITTER_ABOVE, name
    assert list(SPEED_PRESETS.values()) == sorted(SPEED_PRESETS.values())


def test_speed_value_takes_a_name_or_a_number_and_names_the_presets_otherwise():
    assert speed_value("singing") == SPEED_PRESETS["singing"] and speed_value(" Speech ") == SPEED_PRESETS["speech"]
    assert speed_value("0.75") == 0.75 and speed_value(1.2) == 1.2
    for bad in ("fast", "-0.2", "nan", float("inf")):
        with pytest.raises(ValueError, match=r"speed: .*speech-calm=0.3, speech=0.6, singing=1.1, singing-lively=1.3"):
            speed_value(bad)


@pytest.mark.parametrize("command", ["generate", "demo"])
def test_cli_speed_takes_presets(command):
    from emo_models.cli import build_parser

    required = ["--image", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--checkpoint", "c"]
    argv = [command, *(required if command == "generate" else []), "--speed"]
    assert build_parser().parse_args([*argv, "singing-lively"]).speed == SPEED_PRESETS["singing-lively"]
    assert build_parser().parse_args([*argv, "0.4"]).speed == 0.4
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "fast"])


def test_speed_condition_node_takes_a_preset_and_preset_keyframes():
    (sung,) = run_node("EMOSpeedCondition", speed=0.2, preset="singing")
    assert sung.per_frame(2).tolist() == pytest.approx([SPEED_PRESETS["singing"]] * 2)
    (custom,) = run_node("EMOSpeedCondition", speed=0.2)
    assert custom.per_frame(1).tolist() == pytest.approx([0.2])
    (keys,) = run_node("EMOSpeedCondition", schedule="0:speech, 10:singing")
    assert keys.per_frame(11)[[0, 10]].tolist() == pytest.approx([SPEED_PRESETS["speech"], SPEED_PRESETS["singing"]])
    with pytest.raises(ValueError, match=r"^schedule: .*presets \(speech-calm=0.3"):
        run_node("EMOSpeedCondition", schedule="0:speech, 10:loud")


def test_render_settings_take_a_preset_name_through_the_same_table():
    from emo_models.config import EMOConfig
    from emo_models.render import RenderSettings, speed_per_frame

    settings = RenderSettings.from_config(EMOConfig(), speed="singing-lively")
    assert speed_per_frame(settings.speed, 3).tolist() == pytest.approx([SPEED_PRESETS["singing-lively"]] * 3)
    with pytest.raises(ValueError, match=r"speed: 'loud' is neither a number .* nor a preset"):
        RenderSettings.from_config(EMOConfig(), speed="loud")
