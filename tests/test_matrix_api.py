"""The bad-input matrix (issue 14), Python API and node side: what the API refuses (the loaded model unchanged
after each refusal), what it accepts on purpose and why, and the nodes' widgets carrying the one range table.
The command-line side (options, outputs, devices, checkpoints, signals) is in test_matrix.py.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from emo_models.validation import InputError


# ---- 6. the Python API's inputs ---------------------------------------------------------------------
def _state_hash(pipeline) -> str:
    digest = hashlib.sha256()
    for module in (pipeline.model, pipeline.vae, pipeline.audio_encoder):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _wave(seconds=0.2, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _image():
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


API_REFUSED = [  # (what, call arguments, message)
    ("0-255 float image", dict(image=_image() * 255), r"^image: values span \[.*\]; expected \[0, 1\]"),
    ("int32 image", dict(image=(_image() * 255).int()), r"^image: torch.int32 pixels; give float in \[0, 1\]"),
    ("batch of 2", dict(image=_image().expand(2, -1, -1, -1)), r"^image: a batch of 2 images; give one portrait"),
    ("NaN image", dict(image=_image().masked_fill(_image() > 0.5, float("nan"))), r"^image: contains NaN or inf"),
    ("a path as image", dict(image="face.png"), r"^image: expected a torch.Tensor or numpy array"),
    ("(T, 2) waveform", dict(waveform=np.stack([_wave(), _wave()], axis=1)), r"^audio: shape \(3200, 2\) looks like "
                                                                             r"\(T, C\); expected \(C, T\)"),
    ("NaN waveform", dict(waveform=np.full(3200, np.nan, np.float32)), r"^audio: 3200 samples are NaN or inf"),
    ("silent waveform", dict(waveform=np.zeros(3200, np.float32)), r"^audio: silent \(peak 0\)"),
    ("10 ms waveform", dict(waveform=_wave(0.01)), r"^audio: 160 samples at 16000 Hz \(10 ms\) is too short"),
    ("rate 0", dict(sample_rate=0), r"^audio: sample rate 0 must be positive"),
    ("wrong-aspect mask", dict(face_mask=torch.ones(1, 1, 32, 64)), r"^face_mask: 64x32 pixels; it is drawn on the "
                                                                    r"64x64 image"),
    ("0-255 mask", dict(face_mask=torch.full((1, 1, 64, 64), 255.0)), r"^face_mask: values span \[255, 255\]"),
    ("fps 0", dict(fps=0), r"^fps: 0 is below the minimum 1"),
    ("fps inf", dict(fps=float("inf")), r"^fps: inf is not a finite number"),
    ("cfg -1", dict(cfg=-1), r"^cfg: -1 is below the minimum 1"),
    ("cfg nan", dict(cfg=float("nan")), r"^cfg: nan is not a number"),
    ("steps 0", dict(steps=0), r"^steps: 0 is below the minimum 1"),
    ("speed 1e30", dict(speed=1e30), r"^speed: 1e\+30 is above the maximum 4"),
    ("seed 2**70", dict(seed=2**70), r"^seed: 1180591620717411303424 is above the maximum"),
    ("crop zoom", dict(crop="zoom"), r"^crop: 'zoom'; choose one of"),
]


@pytest.mark.parametrize("what,kwargs,message", API_REFUSED, ids=[c[0] for c in API_REFUSED])
def test_the_python_api_refuses_what_it_cannot_use_and_the_model_is_unchanged(tiny_pipeline, monkeypatch, what,
                                                                             kwargs, message):
    from emo_models.model import EMOModel

    before = _state_hash(tiny_pipeline)
    monkeypatch.setattr(EMOModel, "denoise", lambda *a, **k: pytest.fail("denoising started"))
    call = {"image": _image(), "waveform": _wave(), "sample_rate": 16000, "steps": 1, "cfg": 1.0, **kwargs}
    with pytest.raises(InputError, match=message):
        tiny_pipeline.generate(call.pop("image"), call.pop("waveform"), call.pop("sample_rate"), **call)
    assert _state_hash(tiny_pipeline) == before


ACCEPTED = [  # (what, call arguments, why it is accepted rather than refused)
    ("channels-last image", dict(image=_image().permute(0, 2, 3, 1)), "(1, H, W, 3) is unambiguous: ComfyUI's and "
                                                                      "PIL's layout, permuted"),
    ("uint8 image", dict(image=(_image() * 255).to(torch.uint8)), "uint8 says its range is 0..255: divided by 255"),
    ("unbatched numpy image", dict(image=_image()[0].numpy()), "(3, H, W) numpy is one portrait"),
    ("stereo (C, T) waveform", dict(waveform=np.stack([_wave(), _wave()])), "channels first: mixed to mono"),
    ("int16 PCM waveform", dict(waveform=(_wave() * 20000).astype(np.int16)), "any amplitude: wav2vec2 normalises"),
    ("half-size mask", dict(face_mask=torch.ones(1, 1, 32, 32)), "the same aspect ratio: resized to the image"),
]


@pytest.mark.parametrize("what,kwargs,why", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_the_python_api_accepts_what_is_unambiguous(tiny_pipeline, what, kwargs, why):
    call = {"image": _image(), "waveform": _wave(), "sample_rate": 16000, "steps": 1, "cfg": 1.0, **kwargs}
    frames = tiny_pipeline.generate(call.pop("image"), call.pop("waveform"), call.pop("sample_rate"), **call)
    assert frames.shape == (5, 3, 64, 64) and torch.isfinite(frames).all()


# ---- 7. the nodes: widgets carry the table's ranges, and refuse the same -----------------------------
NODE_WIDGETS = [  # (node, widget, option, value below the range meaning "from the checkpoint")
    ("EMOSampler", "steps", "steps", 0), ("EMOSampler", "cfg", "cfg", 0.0),
    ("EMOSampler", "reference_cfg", "cfg_reference", 0.0), ("EMOSampler", "audio_cfg", "cfg_audio", 0.0),
    ("EMOSampler", "seed", "seed", None), ("EMOSampler", "frames_per_clip", "frames_per_clip", 0),
    ("EMOSampler", "motion_frames", "motion_frames", -1), ("EMOExtendWithMotionFrames", "steps", "steps", 0),
    ("EMOAudioFeatures", "fps", "fps", 0.0), ("EMOAudioFeatures", "start", "start", None),
    ("EMOAudioFeatures", "duration", "duration", None), ("EMOAudioFrameInfo", "fps", "fps", 0.0),
    ("EMOSpeedCondition", "speed", "speed", None),
]


@pytest.mark.parametrize("node,widget,option,unset", NODE_WIDGETS)
def test_node_widgets_take_their_ranges_from_the_one_table(node, widget, option, unset):
    from emo_models.options import OPTIONS
    from tests.test_nodes import load_pack

    spec = load_pack().NODE_CLASS_MAPPINGS[node].INPUT_TYPES()
    kind, limits = {**spec["required"], **spec.get("optional", {})}[widget]
    table = OPTIONS[option]
    assert kind == ("INT" if table.kind is int else "FLOAT") and limits["max"] == table.maximum
    assert limits["min"] == (table.minimum if unset is None else unset)


NODE_REFUSED = [  # widgets within the UI's limits but outside the table, e.g. typed into a workflow's JSON
    (dict(cfg=0.5), r"^cfg: 0.5 is below the minimum 1"),
    (dict(reference_cfg=0.5, audio_cfg=2.0), r"^reference_cfg: 0.5 is below the minimum 1"),
    (dict(steps=2000), r"^steps: 2000 is above the maximum 1000"),
]


@pytest.mark.parametrize("widgets,message", NODE_REFUSED)
def test_the_sampler_node_refuses_values_outside_the_table_naming_the_widget(widgets, message):
    import importlib

    from emo_models.config import tiny_config
    from tests.test_nodes import load_pack

    sampling = importlib.import_module(f"{load_pack().__name__}.nodes.sampling")
    values = {"steps": 0, "cfg": 0.0, "reference_cfg": 0.0, "audio_cfg": 0.0, "seed": 0, "scheduler": "checkpoint",
              "frames_per_clip": 0, "motion_frames": -1, **widgets}
    with pytest.raises(InputError, match=message):
        sampling.render_settings(tiny_config(), 8, **values)
