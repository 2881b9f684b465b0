"""The ComfyUI nodes, called as ComfyUI calls them: INPUT_TYPES -> FUNCTION with widget defaults.

ComfyUI is not installed here, so the pack runs on its bridge's fallbacks (CPU, a folder registry stub,
a no-op progress bar). The pack is imported from the repo root's ``__init__.py`` the way ComfyUI's
loader does, on a tiny native EMO checkpoint written into a temporary models folder.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACK = "emo_comfy_pack"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
FAST = {"steps": 2, "frames_per_clip": 4, "motion_frames": 2}  # 2 clips of 4 frames for 0.3 s at 25 fps
ONE_PASS = {**FAST, "cfg": 1.0}  # no guidance: one model pass per step


def load_pack():
    """Import the repo root as a package, as ComfyUI's custom-node loader does."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK]


def bridge():
    return sys.modules[f"{PACK}.nodes.comfy_bridge"]


def widgets(cls) -> list[tuple[str, tuple]]:
    """The widget inputs of a node class in UI order (required, then optional)."""
    spec = cls.INPUT_TYPES()
    items = [*spec["required"].items(), *spec.get("optional", {}).items()]
    return [(name, s) for name, s in items if isinstance(s[0], list) or s[0] in WIDGET_TYPES]


def widget_default(spec: tuple):
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(spec[0], list):
        return options.get("default", spec[0][0])
    return options.get("default", {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[spec[0]])


def run_node(name: str, **inputs):
    """Call a node by its NODE_CLASS_MAPPINGS key: widget defaults, overridden by ``inputs``."""
    cls = load_pack().NODE_CLASS_MAPPINGS[name]
    spec = cls.INPUT_TYPES()
    known = {**spec["required"], **spec.get("optional", {})}
    unknown = set(inputs) - set(known)
    assert not unknown, f"{name} has no inputs {unknown}"
    kwargs = {n: widget_default(s) for n, s in widgets(cls)}
    kwargs.update(inputs)
    missing = set(spec["required"]) - set(kwargs)
    assert not missing, f"{name}: required inputs {missing} not given"
    out = getattr(cls(), cls.FUNCTION)(**kwargs)
    assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES)
    return out


def speech(seconds: float = 0.3, rate: int = 44100, channels: int = 2) -> dict:
    """AUDIO: a voiced, amplitude-modulated tone, (1, channels, T) at ``rate``."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 140 * t + 3 * np.sin(2 * np.pi * 5 * t))
    return {"waveform": torch.tensor(wave, dtype=torch.float32).repeat(1, channels, 1), "sample_rate": rate}


def astronaut(size: int = 128) -> torch.Tensor:
    """IMAGE (1, size, size, 3): scikit-image's bundled portrait photo (a real, detectable face)."""
    from skimage.data import astronaut as photo

    image = torch.tensor(photo()).permute(2, 0, 1)[None].float() / 255
    return torch.nn.functional.interpolate(image, size=(size, size), mode="area").permute(0, 2, 3, 1).contiguous()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """A models folder holding the tiny EMO checkpoint at models/emo/tiny, registered with the bridge."""
    from emo_models.loading import save_pipeline
    from tests.conftest import build_tiny_pipeline

    root = tmp_path_factory.mktemp("models")
    save_pipeline(build_tiny_pipeline(), root / "emo" / "tiny")
    load_pack()
    folders = {name: [str(root / name)] for name in bridge().STUB_FOLDERS}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bridge(), "_stub_folders", folders)
        yield root


@pytest.fixture(scope="session")
def emo_model(models_dir):
    (model,) = run_node("EMOLoadModel", checkpoint="tiny")
    return model


@pytest.fixture(scope="session")
def encoded(emo_model):
    """(EMO_REFERENCE, EMO_AUDIO) for a random 80x100 image and 0.3 s of stereo 44.1 kHz speech."""
    reference, _ = run_node("EMOEncodeReference", emo_model=emo_model, image=torch.rand(1, 80, 100, 3))
    audio, *_ = run_node("EMOAudioFeatures", emo_model=emo_model, audio=speech())
    return reference, audio


class RecordingBar:
    """A ProgressBar stand-in that records every update; ``cancel_at`` presses Cancel at that step."""

    def __init__(self, log: list, cancel_at: int | None = None):
        self.log, self.cancel_at = log, cancel_at

    def update_absolute(self, value, total=None, preview=None):
        self.log.append((value, total, preview))
        if value == self.cancel_at:
            bridge().interrupt_current_processing()


def sample(emo_model, encoded, **settings):
    reference, audio = encoded
    return run_node("EMOSampler", emo_model=emo_model, reference=reference, emo_audio=audio, **{**ONE_PASS, **settings})


# ---- the pack as ComfyUI sees it -------------------------------------------------------------------
def test_importing_the_pack_loads_no_model_code():
    code = (f"import importlib.util, sys; s = importlib.util.spec_from_file_location('p', {str(ROOT / '__init__.py')!r}, "
            f"submodule_search_locations=[{str(ROOT)!r}]); m = importlib.util.module_from_spec(s); sys.modules['p'] = m; "
            "s.loader.exec_module(m); heavy = [n for n in ('diffusers', 'transformers', 'librosa', 'emo_models.pipeline') "
            "if n in sys.modules]; print(len(m.NODE_CLASS_MAPPINGS), heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["10", "[]"]


def test_every_node_declares_category_types_defaults_and_tooltips(models_dir):
    pack = load_pack()
    assert set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "EMO" and callable(getattr(cls, cls.FUNCTION)), name
        assert all(isinstance(t, str) for t in cls.RETURN_TYPES), name
        for widget, spec in widgets(cls):
            options = spec[1]
            assert options.get("tooltip"), f"{name}.{widget} has no tooltip"
            value = widget_default(spec)
            if isinstance(spec[0], list):
                assert value in spec[0], f"{name}.{widget}"
            elif spec[0] in ("INT", "FLOAT"):
                assert options["min"] <= value <= options["max"], f"{name}.{widget}"


# ---- loading -------------------------------------------------------------------------------------
def test_load_model_lists_native_checkpoints_and_refuses_other_names(models_dir):
    cls = load_pack().NODE_CLASS_MAPPINGS["EMOLoadModel"]
    assert "tiny" in cls.INPUT_TYPES()["required"]["checkpoint"][0]
    with pytest.raises(ValueError, match=r"checkpoint: 'missing' is not in models/emo"):
        run_node("EMOLoadModel", checkpoint="missing")
    with pytest.raises(ValueError, match=r"checkpoint: '\.\./\.\./etc/x' points outside the models folders"):
        run_node("EMOLoadModel", checkpoint="../../etc/x")
    with pytest.raises(ValueError, match=r"vae: '/etc/passwd' points outside"):
        run_node("EMOLoadModel", checkpoint="(assemble from parts)", vae="/etc/passwd", config="tiny")
    with pytest.raises(ValueError, match=r"checkpoint: 'tiny' is a complete EMO checkpoint but parts are set"):
        run_node("EMOLoadModel", checkpoint="tiny", vae="x.safetensors")


def test_load_model_reports_what_it_loaded(models_dir, caplog):
    with caplog.at_level("INFO", logger="emo-comfy"):
        run_node("EMOLoadModel", checkpoint="tiny", dtype="fp32")
    lines = caplog.text.splitlines()
    assert any(f"EMO loaded {models_dir / 'emo' / 'tiny'}: EMO native checkpoint, config tiny (64x64, 25 fps), "
               "float32" in line for line in lines)
    assert any("backbone: 208 loaded, 0 missing, 0 unexpected" in line for line in lines)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_load_model_assembles_from_files_in_comfyui_model_folders(models_dir, caplog):
    from emo_models.config import tiny_config
    from tests.weight_files import (
        write_animatediff_motion_module,
        write_sd15_single_file,
        write_wav2vec2_single_file,
    )

    config = tiny_config()
    write_sd15_single_file(models_dir / "checkpoints" / "sd15.safetensors", config)
    write_animatediff_motion_module(models_dir / "animatediff_models" / "mm.ckpt", config)
    write_wav2vec2_single_file(models_dir / "audio_encoders" / "w2v.safetensors", config)
    with caplog.at_level("INFO", logger="emo-comfy"):
        (model,) = run_node("EMOLoadModel", checkpoint="(assemble from parts)",
                            base_model="checkpoints/sd15.safetensors", motion_module="mm.ckpt",
                            audio_encoder="w2v.safetensors", config="tiny", dtype="fp32")
    assert model.size == (64, 64) and "sd15.safetensors" in model.source
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings[0].startswith("EMO WARNING: ") and "parts never trained: audio, face_locator, speed." in warnings[0]


def test_model_modules_accept_the_device_attribute_comfyui_sets(emo_model):
    modules = emo_model.patcher.model
    modules.device = torch.device("cpu")  # ModelPatcher.load does this; diffusers' own .device is read-only
    assert {p.device.type for p in modules.parameters()} == {"cpu"}


def test_model_folders_extend_existing_entries_without_replacing_them(monkeypatch, tmp_path):
    class FolderPaths:
        models_dir = str(tmp_path)
        yaml_dir = str(tmp_path / "from_yaml")
        folder_names_and_paths = {"emo": ([yaml_dir], set()), "vae": ([str(tmp_path / "vae")], {".pt"})}

        @classmethod
        def add_model_folder_path(cls, name, path, is_default=False):
            cls.folder_names_and_paths.setdefault(name, ([], set()))[0].append(path)

    monkeypatch.setattr(bridge(), "_folder_paths", FolderPaths)
    monkeypatch.setattr(bridge(), "HAVE_COMFY", True)
    bridge().register_model_folders()
    table = FolderPaths.folder_names_and_paths
    assert table["emo"][0] == [FolderPaths.yaml_dir, str(tmp_path / "emo")]
    assert table["animatediff_models"][0] == [str(tmp_path / "animatediff_models")]
    assert ".safetensors" in table["animatediff_models"][1] and table["vae"][1] == {".pt"}
    assert table["face_analysis"] == ([str(tmp_path / "face_analysis")], {".onnx", ".task"})


def test_face_analysis_files_are_found_in_the_registered_folder(models_dir):
    from emo_models.face_analysis import find_face_analysis_files
    from tests.face_analysis_files import write_arcface, write_scrfd

    write_scrfd(models_dir / "face_analysis" / "scrfd_10g_bnkps.onnx")
    write_arcface(models_dir / "face_analysis" / "glintr100.onnx")
    assert bridge().model_files("face_analysis") == ["glintr100.onnx", "scrfd_10g_bnkps.onnx"]
    files = find_face_analysis_files(bridge().model_roots("face_analysis"))
    assert files.detector == models_dir / "face_analysis" / "scrfd_10g_bnkps.onnx"


# ---- the chain -----------------------------------------------------------------------------------
def test_chain_of_nodes_makes_one_frame_per_audio_frame(emo_model):
    audio = speech(0.3)
    reference, fitted = run_node("EMOEncodeReference", emo_model=emo_model, image=torch.rand(2, 80, 100, 3), crop="pad")
    emo_audio, span, frames, fps = run_node("EMOAudioFeatures", emo_model=emo_model, audio=audio, fps=25.0)
    (mask,) = run_node("EMOFaceLocatorMask", image=torch.rand(1, 80, 100, 3), box="0.2,0.1,0.8,0.9")
    (speed,) = run_node("EMOSpeedCondition", speed=0.8, schedule="0:0.2, 6:1.0")
    images, latent = run_node("EMOSampler", emo_model=emo_model, reference=reference, emo_audio=emo_audio,
                              face_mask=mask, speed=speed, **FAST)
    info = run_node("EMOAudioFrameInfo", emo_model=emo_model, audio=span, fps=fps)
    assert fitted.shape == (1, 64, 64, 3) and mask.shape == (1, 80, 100)
    assert frames == info[0] == 8 and fps == 25.0 and info[1] == pytest.approx(0.3, abs=1e-4)
    assert span["waveform"].shape == (1, 2, 13230) and span["sample_rate"] == 44100
    assert images.shape == (8, 64, 64, 3) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    assert latent["samples"].shape == (8, 4, 8, 8)


def test_audio_span_is_trimmed_before_encoding(emo_model):
    _, span, frames, _ = run_node("EMOAudioFeatures", emo_model=emo_model, audio=speech(1.0, 16000, 1),
                                  start=0.2, duration=0.4)
    assert frames == 10 and span["waveform"].shape[-1] == 6400


def test_progress_is_reported_once_per_denoising_step_with_a_preview(emo_model, encoded, monkeypatch):
    log = []
    monkeypatch.setattr(bridge(), "progress_bar", lambda total: RecordingBar(log))
    sample(emo_model, encoded, steps=3)
    assert [(value, total) for value, total, _ in log] == [(i, 6) for i in range(1, 7)]  # 2 clips x 3 steps
    fmt, image, _ = log[0][2]
    assert fmt == "JPEG" and image.size == (8, 8)


def test_cancel_stops_within_one_step_and_the_next_run_matches_a_clean_one(emo_model, encoded, monkeypatch):
    clean, _ = sample(emo_model, encoded)
    log = []
    monkeypatch.setattr(bridge(), "progress_bar", lambda total: RecordingBar(log, cancel_at=3))
    with pytest.raises(bridge().InterruptProcessingException):
        sample(emo_model, encoded)
    assert [value for value, _, _ in log] == [1, 2, 3]  # cancelled during clip 2's first step: no 4th step
    assert not bridge().processing_interrupted()
    monkeypatch.setattr(bridge(), "progress_bar", lambda total: RecordingBar([]))
    again, _ = sample(emo_model, encoded)
    assert torch.equal(again, clean)


def test_extend_continues_from_the_last_frames_and_returns_the_whole_video(emo_model, encoded):
    reference, audio = encoded
    first, _ = sample(emo_model, encoded)
    (longer,) = run_node("EMOExtendWithMotionFrames", emo_model=emo_model, reference=reference, frames=first,
                         emo_audio=audio, **ONE_PASS)
    assert longer.shape == (16, 64, 64, 3) and torch.equal(longer[:8], first)
    with pytest.raises(ValueError, match=r"frames: 128x128 pixels; the model makes 64x64"):
        run_node("EMOExtendWithMotionFrames", emo_model=emo_model, reference=reference,
                 frames=torch.rand(4, 128, 128, 3), emo_audio=audio, **FAST)
    with pytest.raises(ValueError, match=r"frames: 1 frames to continue but motion_frames is 2"):
        run_node("EMOExtendWithMotionFrames", emo_model=emo_model, reference=reference, frames=first[:1],
                 emo_audio=audio, **FAST)


def test_extending_a_samplers_frames_gives_exactly_one_longer_run(emo_model, encoded):
    reference, audio = encoded  # 8 frames: two clips of 4
    whole, _ = run_node("EMOSampler", emo_model=emo_model, reference=reference, emo_audio=audio, **FAST)
    first, _ = run_node("EMOSampler", emo_model=emo_model, reference=reference, emo_audio=audio.span(0, 4), **FAST)
    (extended,) = run_node("EMOExtendWithMotionFrames", emo_model=emo_model, reference=reference, frames=first,
                           emo_audio=audio.span(4, 8), **FAST)
    assert torch.equal(extended, whole)


# ---- faces and masks -----------------------------------------------------------------------------
def test_face_locator_mask_detects_the_face_grows_it_and_prefers_a_given_mask():
    portrait = astronaut()
    (tight,) = run_node("EMOFaceLocatorMask", image=portrait, expand=1.0)
    (grown,) = run_node("EMOFaceLocatorMask", image=portrait, expand=2.0)
    assert tight.shape == (1, 128, 128) and 0 < tight.sum() < grown.sum()
    assert tight[0, 25, 55] == 1 and tight[0, 120, 10] == 0  # the face (x 43-68, y 17-42), not the corner
    given = torch.zeros(1, 64, 64)
    given[:, :8, :8] = 1
    (mask,) = run_node("EMOFaceLocatorMask", image=portrait, mask=given, box="0.5,0.5,0.9,0.9")
    assert mask.shape == (1, 128, 128) and mask[0, 2, 2] == 1 and mask[0, 100, 100] == 0


def test_no_face_gives_the_checkpoints_default_region_with_a_warning(emo_model, caplog):
    noise = torch.rand(1, 64, 80, 3)
    with caplog.at_level("WARNING"):
        (mask,) = run_node("EMOFaceLocatorMask", image=noise, emo_model=emo_model)
    x0, y0, x1, y1 = emo_model.pipeline.config.generation.face_box
    expected = torch.zeros(1, 64, 80)
    expected[:, round(y0 * 64):round(y1 * 64), round(x0 * 80):round(x1 * 80)] = 1
    assert torch.equal(mask, expected) and "using the checkpoint's default face region" in caplog.text


def test_no_face_for_a_face_crop_is_an_error_that_says_what_to_give(emo_model):
    noise = torch.rand(1, 64, 64, 3)
    with pytest.raises(ValueError, match=r"image: no face found.*give the face region.*or crop 'center' or 'pad'"):
        run_node("EMOEncodeReference", emo_model=emo_model, image=noise, crop="face")


def test_face_crop_centres_the_detected_face(emo_model):
    _, fitted = run_node("EMOEncodeReference", emo_model=emo_model, image=astronaut(), crop="face", face_expand=2.0)
    _, centre = run_node("EMOEncodeReference", emo_model=emo_model, image=astronaut(), crop="center")
    assert fitted.shape == (1, 64, 64, 3) and not torch.allclose(fitted, centre)


def test_face_mask_is_fitted_to_the_reference_like_the_image(emo_model):
    full = torch.ones(1, 80, 100)
    for crop, border in (("center", 1.0), ("pad", 0.0)):
        reference, _ = run_node("EMOEncodeReference", emo_model=emo_model, image=torch.rand(1, 80, 100, 3), crop=crop)
        fitted = reference.portrait.fit.mask(full[:, None])
        assert fitted.shape == (1, 1, 64, 64) and fitted[0, 0, 32, 32] == pytest.approx(1)
        assert fitted[0, 0, 0, 32] == pytest.approx(border)


# ---- speed ---------------------------------------------------------------------------------------
def test_speed_schedule_accepts_values_or_keyframes():
    (constant,) = run_node("EMOSpeedCondition", speed=0.7)
    (values,) = run_node("EMOSpeedCondition", schedule="0.2, 0.4,\n0.6")
    (keys,) = run_node("EMOSpeedCondition", schedule="0:0.0, 10:1.0")
    assert constant.per_frame(3).tolist() == pytest.approx([0.7] * 3)
    assert values.per_frame(5).tolist() == pytest.approx([0.2, 0.4, 0.6, 0.6, 0.6])
    assert keys.per_frame(12)[[0, 5, 10, 11]].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])
    for bad in ("0:0.2, 0.5", "fast", "0:-1"):
        with pytest.raises(ValueError, match=r"^schedule(\[\d+\])?: "):
            run_node("EMOSpeedCondition", schedule=bad)


# ---- bad inputs name the input -------------------------------------------------------------------
@pytest.mark.parametrize("image, message", [
    (torch.zeros(0, 64, 64, 3), r"image: empty IMAGE batch"),
    (torch.rand(1, 3, 64, 64), r"image: shape \(1, 3, 64, 64\) is not an IMAGE \(B, H, W, 3\)"),
])
def test_bad_images_are_refused_naming_the_input(emo_model, image, message):
    with pytest.raises(ValueError, match=message):
        run_node("EMOEncodeReference", emo_model=emo_model, image=image)
    with pytest.raises(ValueError, match=message):
        run_node("EMOFaceLocatorMask", image=image, box="0,0,10,10")


@pytest.mark.parametrize("waveform, message", [
    (torch.zeros(1, 1, 0), r"audio: zero length"),
    (torch.zeros(1, 2, 16000), r"audio: all 16000 samples are zero"),
])
def test_bad_audio_is_refused_naming_the_input(emo_model, waveform, message):
    with pytest.raises(ValueError, match=message):
        run_node("EMOAudioFeatures", emo_model=emo_model, audio={"waveform": waveform, "sample_rate": 16000})


def test_an_audio_span_past_the_end_or_silent_is_refused(emo_model):
    with pytest.raises(ValueError, match=r"audio: 5 s to the end holds no samples"):
        run_node("EMOAudioFeatures", emo_model=emo_model, audio=speech(0.3), start=5.0)
    quiet = speech(1.0, 16000, 1)
    quiet["waveform"][..., 8000:] = 0
    with pytest.raises(ValueError, match=r"audio \(0.6 s \+ rest\): silent"):
        run_node("EMOAudioFeatures", emo_model=emo_model, audio=quiet, start=0.6)
