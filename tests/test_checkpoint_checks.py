"""Checkpoints that must not be used are refused before anything runs, each naming the file, the part
and what to do: pickled code (which never runs), pipes and devices, broken config.json fields, NaN
weights; and checkpoints whose parts were never trained are reported loudly."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import shutil
import subprocess
import threading

import pytest
import torch

from emo_models.config import tiny_config
from emo_models.loading import build_pipeline, checkpoint_report, load_pipeline, save_pipeline
from emo_models.weights.animatediff import load_motion_module_state_dict
from emo_models.weights.inspect import describe
from emo_models.weights.safe_load import WEIGHT_SUFFIXES, WeightsError, read_state_dict
from emo_models.weights.sanity import PARTS, still_untrained, untrained_after_init, untrained_parts
from tests.conftest import wake_zero_initialised_layers

CODE = "contains code that is not allowed to run"


class Payload:
    """Unpickling this calls ``function(*args)``: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _canary_payloads(canary):
    return {
        "os.system": Payload(os.system, f"touch {canary}"),
        "subprocess.call": Payload(subprocess.call, ["touch", str(canary)]),
        "builtins.exec": Payload(builtins.exec, f"open({str(canary)!r}, 'w').close()"),
        "builtins.eval": Payload(builtins.eval, f"open({str(canary)!r}, 'w')"),
    }


@pytest.mark.parametrize("payload", ["os.system", "subprocess.call", "builtins.exec", "builtins.eval"])
def test_a_pickle_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, payload):
    canary = tmp_path / "CANARY"
    path = tmp_path / "mm_sd_v15_v2.ckpt"
    torch.save({"down_blocks.0.motion_modules.0.x": torch.zeros(1), "x": _canary_payloads(canary)[payload]}, path)
    for load in (read_state_dict, describe, load_motion_module_state_dict):
        with pytest.raises(WeightsError, match=rf"mm_sd_v15_v2.ckpt: {CODE} \(loading it would import and call "
                                               rf".*\); nothing in it was run") as err:
            load(path)
        assert "truncated or corrupt" not in str(err.value)
    assert not canary.exists()


def test_a_plain_python_pickle_is_named_as_such_and_never_runs(tmp_path):
    canary = tmp_path / "CANARY"
    path = tmp_path / "weights.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": _canary_payloads(canary)["os.system"]}, f, protocol=4)
    with pytest.raises(WeightsError, match=r"a plain Python pickle, not a torch checkpoint; nothing in it was run"):
        read_state_dict(path)
    assert not canary.exists()


def _returns_promptly(function, *args):
    """Run ``function`` in a thread; fail (rather than hang the suite) if it blocks."""
    outcome = []

    def call():
        try:
            outcome.append(function(*args))
        except Exception as err:  # the refusal is the expected outcome
            outcome.append(err)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert outcome, f"{function.__name__}{args} blocked"
    return outcome[0]


@pytest.mark.parametrize("make,kind", [
    (lambda d: os.mkfifo(d / "pipe.safetensors") or d / "pipe.safetensors", "a named pipe (FIFO)"),
    (lambda d: os.mkfifo(d / "pipe") or d / "pipe", "a named pipe (FIFO)"),
    (lambda d: "/dev/zero", "a character device"),
])
def test_inspect_on_a_pipe_or_device_returns_at_once_with_a_clear_error(tmp_path, make, kind):
    path = make(tmp_path)
    error = _returns_promptly(describe, path)
    assert isinstance(error, WeightsError) and str(error) == (
        f"{path}: is {kind}, not a file; expected a weights file ({', '.join(WEIGHT_SUFFIXES)})")


# ---- config.json -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny native checkpoint as init writes it (no parts given): random, untrained."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    torch.manual_seed(0)
    save_pipeline(build_pipeline(tiny_config()), folder, metadata={"created_by": "emo_models init", "sources": {}})
    return folder


def _with_config(saved, tmp_path, text):
    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    (folder / "config.json").write_text(text)
    return folder


def _config_text(saved, **changes):
    return json.dumps({**json.loads((saved / "config.json").read_text()), **changes})


@pytest.mark.parametrize("text,message", [
    (lambda s: "{}", r"config.json: missing fields \['unet', 'vae', 'audio_encoder'\]; an EMO config.json"),
    (lambda s: _config_text(s, unet=5), r"config.json: field 'unet' is 5 \(int\); expected an object of "
                                        r"UNet2DConditionModel arguments"),
    (lambda s: _config_text(s, width=0), r"config.json: field 'width' is 0 \(int\); expected a whole number >= 1"),
    (lambda s: _config_text(s, fps="25"), r"config.json: field 'fps' is \"25\" \(str\); expected a positive number"),
    (lambda s: _config_text(s, fps=float("nan")), r"config.json: field 'fps' is NaN \(float\); expected a positive number"),
    (lambda s: _config_text(s, face_locator_channels=[8, -1]), r"field 'face_locator_channels' is \[8, -1\]"),
    (lambda s: _config_text(s, unet={**json.loads(_config_text(s))["unet"], "block_out_channels": 7}),
     r"config.json: field 'unet' does not describe a UNet2DConditionModel \(TypeError"),
    (lambda s: _config_text(s, audio_encoder={**json.loads(_config_text(s))["audio_encoder"], "num_attention_heads": 3}),
     r"field 'audio_encoder' does not describe a Wav2Vec2Config \(ValueError: hidden_size 32 is not a multiple"),
    (lambda s: "[1, 2]", r"config.json: holds a JSON list; expected an object with the model's fields"),
    (lambda s: "{not json", r"config.json: cannot be read as JSON \(Expecting property name"),
])
def test_a_broken_config_json_is_blamed_with_the_field_named(saved, tmp_path, text, message):
    folder = _with_config(saved, tmp_path, text(saved))
    with pytest.raises(WeightsError, match=message) as err:
        load_pipeline(folder)
    assert str(err.value).startswith(str(folder / "config.json"))
    report = describe(folder)
    assert report.splitlines()[0] == f"{folder}: native EMO checkpoint"
    assert "config.json is broken, the checkpoint will not load" in report and "backbone: 208 tensors" in report


# ---- weights ---------------------------------------------------------------------------------------

def test_nan_weights_are_refused_at_load_naming_component_and_key(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    state = load_file(folder / "temporal.safetensors")
    key = next(k for k in state if k.endswith("proj_in.weight"))
    state[key][0, 0] = float("nan")
    save_file(state, folder / "temporal.safetensors")
    with pytest.raises(WeightsError, match=rf"ckpt: NaN or infinite weights in temporal {key} \(1 values\): "
                                           r"the checkpoint is damaged"):
        load_pipeline(folder)


def test_weights_too_large_for_float16_are_named_as_a_cast_problem(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    shutil.copytree(saved, folder)
    state = load_file(folder / "speed_encoder.safetensors")
    state["mlp.0.weight"][0, 0] = 1e6
    save_file(state, folder / "speed_encoder.safetensors")
    load_pipeline(folder)  # fine in float32
    with pytest.raises(WeightsError, match=r"speed_encoder mlp.0.weight \(1 values\) after casting to float16: "
                                           r"some weights are too large for it, load in float32 or bfloat16"):
        load_pipeline(folder, dtype=torch.float16)


def test_a_checkpoint_init_made_without_parts_reports_every_part_untrained(saved):
    pipeline, reports = load_pipeline(saved)
    report = checkpoint_report(saved, pipeline, reports)
    assert sorted(report.untrained) == sorted(PARTS)
    text = str(report)
    assert text.splitlines()[0] == f"loaded {saved}: EMO native checkpoint, config tiny (64x64, 25 fps), float32"
    assert "  backbone: 208 loaded, 0 missing, 0 unexpected" in text.splitlines()
    assert (f"WARNING: {saved}: parts never trained: audio, audio_encoder, backbone, face_locator, reference_net, "
            "speed, temporal, vae. Their weights are random") in text


def test_untrained_parts_follow_init_sources_and_training_stages():
    assert untrained_after_init({"base": "sd15.safetensors", "motion_module": "mm.ckpt"}) == [
        "face_locator", "audio", "speed", "audio_encoder"]
    after_init = untrained_after_init({})
    stage1 = still_untrained(after_init, ("backbone", "reference_net", "face_locator"))
    stage2 = still_untrained(stage1, ("backbone", "reference_net", "face_locator", "temporal", "audio"))
    assert still_untrained(stage2, ("temporal", "speed")) == ["vae", "audio_encoder"]


def test_still_zero_output_layers_betray_untrained_parts_without_metadata(tiny_pipeline):
    fresh = build_pipeline(tiny_config()).model
    states = {"face_locator": fresh.face_locator.state_dict(), "temporal": fresh.temporal.state_dict()}
    assert sorted(untrained_parts({}, states)) == ["face_locator", "speed", "temporal"]
    wake_zero_initialised_layers(fresh)
    states = {"face_locator": fresh.face_locator.state_dict(), "temporal": fresh.temporal.state_dict()}
    assert untrained_parts({}, states) == {}


def test_the_bundled_demo_model_loads_without_warnings():
    from emo_models.demo import DEMO_MODEL

    pipeline, reports = load_pipeline(DEMO_MODEL)
    report = checkpoint_report(DEMO_MODEL, pipeline, reports)
    assert report.untrained == {} and report.warnings == []
