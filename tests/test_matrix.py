"""The bad-input matrix (issue 14): what a new user can get wrong, through every entry point, each case with
its exact message and "nothing left behind, models unchanged" checked.

Categories (each a parametrized test below): numeric options on the command line, options the model
decides, output paths, devices, checkpoints, the Python API's inputs, the nodes' widgets, and signals at
each phase of a generation. What is accepted on purpose is a case too (``ACCEPTED``), with the reason.
"""

from __future__ import annotations

import hashlib
import os
import signal

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from emo_models.cli import main
from emo_models.validation import InputError


def run(argv) -> int:
    """main's exit status, whether returned or raised by argparse (options refused while parsing)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as stop:
        return stop.code


def listing(folder) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones too: a left-over .partial would show)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def inputs(tmp_path):
    """A 64x64 portrait and 0.3 s of speech in tmp_path/in; outputs go to tmp_path/out."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    image = tmp_path / "in" / "face.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(image)
    t = np.arange(4800) / 16000
    audio = tmp_path / "in" / "speech.wav"
    sf.write(audio, (0.4 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32),
             16000)
    return image, audio, tmp_path / "out"


def generate(checkpoint, inputs, *extra, out="talk.mp4"):
    image, audio, folder = inputs
    return ["generate", "--image", image, "--audio", audio, "--out", folder / out, "--checkpoint", checkpoint,
            "--steps", "1", "--cfg", "1", *extra]


# ---- 1. numeric options, refused while parsing ------------------------------------------------------
RANGE = {"fps": "It is the video frame rate in frames per second; give 1 to 120",
         "width": "It is the video width in pixels", "height": "It is the video height in pixels",
         "steps": "It is the denoising steps per clip", "cfg": "It is the guidance scale",
         "cfg-reference": "It is the guidance towards the reference identity",
         "cfg-audio": "It is the guidance towards the audio", "speed": "It is the head motion in degrees per frame",
         "seed": "It is the noise seed", "frames-per-clip": "It is the new frames per clip",
         "motion-frames": "It is the frames of the previous clip", "upscale": "It is the enlargement of the frames"}
OPTION_CASES = [  # (command, option, value, message after "argument --option: ")
    ("generate", "fps", "0", "0 is below the minimum 1."),
    ("generate", "fps", "1000", "1000 is above the maximum 120."),
    ("generate", "fps", "inf", "inf is not a finite number."),
    ("generate", "fps", "nan", "nan is not a number."),
    ("generate", "width", "0", "0 is below the minimum 16."),
    ("generate", "width", "4096", "4096 is above the maximum 1024."),
    ("generate", "height", "4096", "4096 is above the maximum 1024."),
    ("generate", "width", "64.5", "'64.5' is not a whole number."),
    ("generate", "steps", "0", "0 is below the minimum 1."),
    ("generate", "steps", "5000", "5000 is above the maximum 1000."),
    ("generate", "cfg", "-1", "-1 is below the minimum 1."),
    ("generate", "cfg", "nan", "nan is not a number."),
    ("generate", "cfg-reference", "0.5", "0.5 is below the minimum 1."),
    ("generate", "cfg-audio", "21", "21 is above the maximum 20."),
    ("generate", "speed", "1e30", "1e+30 is above the maximum 4."),
    ("generate", "speed", "-0.1", "-0.1 is below the minimum 0."),
    ("generate", "seed", str(2**70), f"{2**70} is above the maximum 18446744073709551615."),
    ("generate", "seed", "-1", "-1 is below the minimum 0."),
    ("generate", "frames-per-clip", "0", "0 is below the minimum 1."),
    ("generate", "motion-frames", "-1", "-1 is below the minimum 0."),
    ("generate", "upscale", "0", "0 is below the minimum 1."),
    ("demo", "upscale", "0", "0 is below the minimum 1."),
    ("demo", "fps", "0", "0 is below the minimum 1."),
]


@pytest.mark.parametrize("command,option,value,message", OPTION_CASES)
def test_options_out_of_range_are_refused_naming_option_value_and_range(tmp_path, capsys, command, option, value,
                                                                        message):
    out = tmp_path / "talk.mp4"
    argv = [command, "--out", out, f"--{option}", value]
    if command == "generate":
        argv += ["--image", "x.png", "--audio", "x.wav", "--checkpoint", "x"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert f"argument --{option}: {message} {RANGE[option]}" in err
    assert listing(tmp_path) == []


# ---- 2. options the model decides: after loading, before the first denoising step --------------------
MODEL_OPTION_CASES = [
    (("--width", "72"), "error: --width: 72 is not a multiple of 16 (this model's latent block); give e.g. 64 or 80"),
    (("--height", "40"), "error: --height: 40 is not a multiple of 16 (this model's latent block); give e.g. 32 or 48"),
    (("--frames-per-clip", "31"), "error: --frames-per-clip + --motion-frames: 31 + 2 frames exceed this model's "
                                  "temporal window of 32; lower one of them"),
    (("--motion-frames", "16", "--frames-per-clip", "20"), "error: --frames-per-clip + --motion-frames: 20 + 16 "
                                                           "frames exceed this model's temporal window of 32"),
]


@pytest.mark.parametrize("extra,message", MODEL_OPTION_CASES)
def test_options_the_model_decides_are_refused_before_any_denoising(checkpoint, inputs, capsys, monkeypatch, extra,
                                                                    message):
    from emo_models.model import EMOModel

    monkeypatch.setattr(EMOModel, "denoise", lambda *a, **k: pytest.fail("denoising started"))
    assert run(generate(checkpoint, inputs, *extra)) == 2
    assert message in capsys.readouterr().err and listing(inputs[2]) == []


# ---- 3. output paths: refused before the model loads ------------------------------------------------
def _make(kind, folder, inputs):
    """The --out path of each case, set up in ``folder``."""
    if kind == "existing":
        (folder / "talk.mp4").write_bytes(b"an earlier video")
        return folder / "talk.mp4"
    if kind == "folder":
        (folder / "clip.mp4").mkdir()
        return folder / "clip.mp4"
    if kind == "input":
        return inputs[1]
    if kind == "under-a-file":
        (folder / "notes").write_text("x")
        return folder / "notes" / "talk.mp4"
    return folder / {"no-extension": "talk", "gif": "talk.gif", "webm": "talk.webm", "txt": "talk.txt"}[kind]


OUTPUT_CASES = [
    ("existing", r"--out: {out} already exists; give --force \(force=True\) to replace it, or choose another path"),
    ("folder", r"--out: {out} is a folder; give a file path inside it, e.g. {out}/out.mp4"),
    ("no-extension", r"--out: {out} has no extension; the video writer makes .mp4, .m4v, .mov, .mkv files, end the "
                     r"name with one of them"),
    ("gif", r"--out: {out} has extension '.gif'; the video writer makes .mp4, .m4v, .mov, .mkv files"),
    ("webm", r"--out: {out} has extension '.webm'; the video writer makes .mp4, .m4v"),
    ("txt", r"--out: {out} has extension '.txt'; the video writer makes .mp4, .m4v"),
    ("under-a-file", r"--out: {out} cannot be created: .*notes is a file, not a folder"),
]


@pytest.mark.parametrize("kind,message", OUTPUT_CASES)
def test_output_paths_are_refused_before_the_model_loads(checkpoint, inputs, capsys, monkeypatch, kind, message):
    import re

    import emo_models.loading

    folder = inputs[2]
    out = _make(kind, folder, inputs)
    before = listing(folder)
    monkeypatch.setattr(emo_models.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    argv = generate(checkpoint, inputs)
    argv[argv.index("--out") + 1] = out
    assert run(argv) == 2
    assert re.search("error: " + message.format(out=re.escape(str(out))), capsys.readouterr().err)
    assert listing(folder) == before
    if kind == "existing":
        assert out.read_bytes() == b"an earlier video"


def test_the_inputs_own_path_is_refused_even_with_force(checkpoint, inputs, capsys):
    image, audio, folder = inputs
    speech = audio.with_suffix(".mp4")  # a speech file named .mp4: a valid --out name, and the input
    audio.rename(speech)
    argv = generate(checkpoint, (image, speech, folder), "--force")
    argv[argv.index("--out") + 1] = speech
    assert run(argv) == 2
    assert f"error: --out: {speech} is also an input of this run; write to another path" in capsys.readouterr().err
    assert speech.exists() and speech.stat().st_size > 1000


def test_a_folder_that_cannot_be_written_is_refused_before_loading(checkpoint, inputs, capsys, monkeypatch):
    """A read-only folder, simulated (the suite may run as root, who may write anywhere): creating the
    probe file there fails with EACCES, as it does for a user in a read-only folder."""
    import errno

    folder = inputs[2]
    real_open = os.open

    def denied(path, *args, **kwargs):
        if os.path.dirname(os.fspath(path)) == str(folder):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    assert run(generate(checkpoint, inputs)) == 2
    assert f"error: --out: cannot write in {folder} (it is not writable by you); choose a folder you can write to" \
        in capsys.readouterr().err
    assert listing(folder) == []


def test_force_replaces_an_existing_video_with_normal_permissions(checkpoint, inputs):
    folder = inputs[2]
    (folder / "talk.mp4").write_bytes(b"an earlier video")
    old = os.umask(0o022)
    try:
        assert run(generate(checkpoint, inputs, "--force")) == 0
    finally:
        os.umask(old)
    assert listing(folder) == ["talk.mp4"] and (folder / "talk.mp4").stat().st_size > 1000
    assert (folder / "talk.mp4").stat().st_mode & 0o777 == 0o644  # the umask's, not a temp file's 0600


# ---- 4. devices -------------------------------------------------------------------------------------
DEVICE_CASES = [
    ("gpu", "error: --device: 'gpu' is not a device; give auto, cpu, cuda, cuda:N, mps or xpu"),
    ("cuda:x", "error: --device: 'cuda:x' is not a device; give auto, cpu, cuda, cuda:N, mps or xpu"),
    ("meta", "error: --device: 'meta' is not a device this package runs on"),
    ("cuda", "error: --device: 'cuda' asked for, but this machine has no usable cuda device"),
    ("cuda:3", "error: --device: 'cuda:3' asked for, but this machine has no usable cuda device"),
]


@pytest.mark.parametrize("device,message", DEVICE_CASES)
def test_devices_that_are_not_there_are_refused_before_loading(checkpoint, inputs, capsys, monkeypatch, device,
                                                               message):
    import emo_models.loading

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    monkeypatch.setattr(emo_models.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    assert run(generate(checkpoint, inputs, "--device", device)) == 2
    assert message in capsys.readouterr().err and listing(inputs[2]) == []


# ---- 5. checkpoints ---------------------------------------------------------------------------------
def _broken_checkpoint(kind, checkpoint, folder):
    """A copy of the tiny checkpoint, broken as ``kind`` says; returns its folder."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    copy = folder / "broken"
    shutil.copytree(checkpoint, copy)
    config = copy / "config.json"
    if kind == "nan-weights":
        state = load_file(copy / "temporal.safetensors")
        name = next(iter(state))
        state[name] = torch.full_like(state[name], float("nan"))
        save_file(state, copy / "temporal.safetensors")
    elif kind == "empty-config":
        config.write_text("{}")
    elif kind == "unet-5":
        config.write_text(json.dumps({**json.loads(config.read_text()), "unet": 5}))
    elif kind == "not-json":
        config.write_text("{not json")
    elif kind == "missing-part":
        (copy / "vae.safetensors").unlink()
    elif kind == "fps-0":
        config.write_text(json.dumps({**json.loads(config.read_text()), "fps": 0}))
    elif kind == "guidance-nan":
        data = json.loads(config.read_text())
        config.write_text(json.dumps({**data, "generation": {**data.get("generation", {}), "guidance": "nan"}}))
    return copy


CHECKPOINT_CASES = [
    ("nan-weights", r"non-finite|NaN", "temporal"),
    ("empty-config", r"config.json: missing fields \['unet', 'vae', 'audio_encoder'\]", "config.json"),
    ("unet-5", r"config.json: field 'unet' is 5 \(int\); expected an object of UNet2DConditionModel arguments",
     "config.json"),
    ("not-json", r"config.json: cannot be read as JSON", "config.json"),
    ("missing-part", r"vae", "vae"),
    ("fps-0", r"config.json: field 'fps' is 0 \(int\); expected a positive number", "config.json"),
    ("guidance-nan", r"config generation.guidance: 'nan' is not a number", "config.json"),
]


@pytest.mark.parametrize("kind,message,names", CHECKPOINT_CASES)
def test_a_broken_checkpoint_is_refused_naming_the_file_before_any_denoising(checkpoint, inputs, capsys, kind,
                                                                             message, names):
    import re

    broken = _broken_checkpoint(kind, checkpoint, inputs[2].parent)
    argv = generate(broken, inputs)
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and names in err and "Traceback" not in err
    assert listing(inputs[2]) == []


def test_inspect_still_lists_a_folder_whose_config_json_is_broken(checkpoint, tmp_path, capsys):
    broken = _broken_checkpoint("not-json", checkpoint, tmp_path)
    assert run(["inspect", broken]) == 0
    text = capsys.readouterr().out
    assert "unknown folder" not in text and "config.json" in text and "cannot be read as JSON" in text


def test_a_checkpoint_whose_unpickling_would_run_code_never_runs_it(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'CANARY'}",)

    path = tmp_path / "mm_sd_v15_v2.ckpt"
    torch.save({"down_blocks.0.motion_modules.0.x": torch.zeros(1), "x": Payload()}, path)
    assert run(["inspect", path]) == 2
    err = capsys.readouterr().err
    assert "contains code that is not allowed to run" in err and "truncated or corrupt" not in err
    assert run(["init", "--config", "tiny", "--motion-module", path, "--out", tmp_path / "ckpt"]) == 2
    assert not (tmp_path / "CANARY").exists() and not (tmp_path / "ckpt").exists()


INIT_CASES = [  # (what is at --out, --force?, exit code, message)
    ("a-run", False, 2, "already exists and is not empty; give --force (force=True) to replace the files this "
                        "writes there (other files in it are kept)"),
    ("a-run", True, 0, "wrote EMO checkpoint"),
    ("a-file", False, 2, "is a file, not a folder; give a folder path"),
    ("empty-folder", False, 0, "wrote EMO checkpoint"),
]


@pytest.mark.parametrize("present,force,code,message", INIT_CASES)
def test_init_never_deletes_what_it_did_not_write(tmp_path, capsys, present, force, code, message):
    out = tmp_path / "mine"
    if present == "a-run":
        (out / "checkpoint-100").mkdir(parents=True)
        (out / "checkpoint-100" / "optimizer.bin").write_bytes(b"state")
        (out / "notes.txt").write_text("keep me")
    elif present == "a-file":
        out.write_text("keep me")
    else:
        out.mkdir()
    before = listing(tmp_path)
    assert run(["init", "--config", "tiny", "--out", out, *(["--force"] if force else [])]) == code
    text = capsys.readouterr()
    assert message in (text.out if code == 0 else text.err)
    after = listing(tmp_path)
    assert set(before) <= set(after) and not any(".partial" in p for p in after)
    if present == "a-run":
        assert (out / "notes.txt").read_text() == "keep me" and (out / "checkpoint-100" / "optimizer.bin").exists()
    if code == 0:
        assert "parts never trained" in text.out  # init's parts stay random: said loudly


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


# ---- 8. signals at each phase of a generation -------------------------------------------------------
PHASES = {  # phase -> (object, attribute) whose call the signal interrupts
    "audio features": ("emo_models.audio_encoding", "audio_features"),
    "reference encode": ("emo_models.pipeline.EMOPipeline", "encode_reference"),
    "a clip": ("emo_models.model.EMOModel", "denoise"),
    "decode": ("emo_models.pipeline.EMOPipeline", "decode"),
    "mux": ("emo_models.media_video.VideoWriter", "_put"),
}
SIGNAL_CASES = [(phase, signum) for phase in PHASES for signum in (signal.SIGTERM, signal.SIGINT)]


@pytest.mark.parametrize("phase,signum", SIGNAL_CASES, ids=[f"{p}-{s.name}" for p, s in SIGNAL_CASES])
def test_a_signal_at_any_phase_stops_cleanly_and_leaves_nothing(checkpoint, inputs, capsys, monkeypatch, phase,
                                                                signum):
    import importlib

    path, attribute = PHASES[phase]
    module, _, cls = path.rpartition(".") if path.split(".")[-1][0].isupper() else (path, "", "")
    owner = getattr(importlib.import_module(module), cls) if cls else importlib.import_module(module)
    original = getattr(owner, attribute)

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signum)  # delivered to this (main) thread before the call returns
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, interrupted)
    assert run(generate(checkpoint, inputs)) == 128 + signum
    assert "no partial output was left" in capsys.readouterr().err
    assert listing(inputs[2]) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
