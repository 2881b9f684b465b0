"""EchoMimic's public weights through our model: layout, strict loading, audio framing, context windows,
and parity with EchoMimic's own code on a committed fixture."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emo_models.context_windows import context_windows
from emo_models.families.echomimic import echomimic_config, face_mask
from emo_models.loading import load_pipeline
from emo_models.render import RenderSettings, animate, render_clips
from emo_models.weights.echomimic import find_release, is_echomimic_release
from emo_models.weights.safe_load import WeightsError
from emo_models.whisper_audio import whisper_frame_count, whisper_windows

from .echomimic_files import key_list, small_echomimic_config, write_echomimic_release

FIXTURE = Path(__file__).parent / "fixtures" / "echomimic_tiny"
ROOT = Path(__file__).parents[1]


def full_echomimic_config():
    from emo_models.config import SD15_UNET, SD15_VAE

    whisper = dict(d_model=384, num_mel_bins=80, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                   max_source_positions=1500)
    return echomimic_config(dict(SD15_UNET), dict(SD15_VAE), whisper)


def test_full_size_model_has_exactly_echomimic_key_layout():
    from emo_models.model import EMOModel

    with torch.device("meta"):
        model = EMOModel(full_echomimic_config())
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    denoiser = {**shapes(model.backbone), **{k: v for k, v in shapes(model.temporal).items() if ".speed_" not in k}}
    denoiser.update({n.replace(".positions", ".pos_encoder.pe"): tuple(b.shape)
                     for n, b in model.temporal.named_buffers() if n.endswith(".positions")})
    assert denoiser == key_list("denoising_unet")
    assert shapes(model.reference_net) == key_list("reference_unet")
    assert shapes(model.face_locator) == key_list("face_locator")


def test_release_with_echomimic_key_names_loads_strictly_and_keeps_every_tensor(tmp_path):
    files = write_echomimic_release(tmp_path / "rel", seed=3)
    for name, listed in (("denoising_unet.pth", "denoising_unet"), ("reference_unet.pth", "reference_unet"),
                         ("face_locator.pth", "face_locator")):
        expected = set(key_list(listed)) - ({k for k in key_list(listed) if ".motion_modules." in k}
                                            if name == "denoising_unet.pth" else set())
        assert set(files[name]) == expected, name
    assert is_echomimic_release(tmp_path / "rel")
    pipeline, reports = load_pipeline(tmp_path / "rel")
    assert all(not r.unexpected for r in reports)
    model = pipeline.model
    assert torch.equal(model.backbone.state_dict()["conv_in.weight"], files["denoising_unet.pth"]["conv_in.weight"])
    key = "up_blocks.3.motion_modules.2.temporal_transformer.proj_out.weight"
    assert torch.equal(model.temporal.state_dict()[key], files["motion_module.pth"][key])
    assert torch.equal(pipeline.audio_encoder.state_dict()["layers.0.fc1.weight"], files["whisper"]["layers.0.fc1.weight"])
    assert all(b.attn2 is None for b in model.reference_net.modules() if hasattr(b, "attn2"))


def test_motion_modules_inside_denoising_unet_win_over_motion_module_file(tmp_path):
    files = write_echomimic_release(tmp_path / "rel", motion_in_denoiser=True)
    pipeline, _ = load_pipeline(tmp_path / "rel")
    key = "mid_block.motion_modules.0.temporal_transformer.proj_in.weight"
    assert torch.equal(pipeline.model.temporal.state_dict()[key], files["denoising_unet.pth"][key])


def test_missing_or_foreign_files_are_named(tmp_path):
    write_echomimic_release(tmp_path / "rel")
    (tmp_path / "rel" / "face_locator.pth").unlink()
    with pytest.raises(WeightsError, match="face_locator.pth"):
        find_release(tmp_path / "rel")
    write_echomimic_release(tmp_path / "bad")
    state = torch.load(tmp_path / "bad" / "reference_unet.pth")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad" / "reference_unet.pth")
    with pytest.raises(WeightsError, match=r"reference_unet\.pth.*extra\.weight"):
        load_pipeline(tmp_path / "bad")


def test_echomimic_files_given_where_sd15_is_expected_are_told_apart(tmp_path):
    from emo_models.config import tiny_config
    from emo_models.weights.inspect import describe
    from emo_models.weights.sd15 import load_unet_state_dict

    write_echomimic_release(tmp_path / "rel")
    for name, says in (("denoising_unet.pth", "EchoMimic's denoising_unet.pth"),
                       ("reference_unet.pth", "EchoMimic's reference_unet.pth")):
        with pytest.raises(WeightsError, match=says):
            load_unet_state_dict(tmp_path / "rel" / name, tiny_config().unet)
    assert "EchoMimic's face_locator.pth" in describe(tmp_path / "rel" / "face_locator.pth")
    assert "openai Whisper" in describe(tmp_path / "rel" / "audio_processor" / "whisper_tiny.pt")
    assert "EchoMimic release" in describe(tmp_path / "rel")


def test_whisper_frame_count_runs_one_chunk_past_the_audio_as_echomimic():
    # EchoMimic appends chunk i, then stops once int(i * 50 / fps) exceeds the feature count
    for features, fps in ((50, 24.0), (30, 24.0), (100, 25.0), (1500, 30.0), (7, 24.0)):
        i, chunks = 0, 0
        while True:
            chunks += 1
            if int(i * (50 / fps)) > features:
                break
            i += 1
        assert whisper_frame_count(features, fps) == chunks
    windows = whisper_windows(torch.arange(30.0)[:, None, None], 24.0)
    assert windows.shape == (16, 10, 1, 1)
    assert windows[0, :, 0, 0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 5]
    assert windows[15, :, 0, 0].tolist() == [27, 28, 29, 29, 29, 29, 29, 29, 29, 29]


def test_context_windows_overlap_wrap_and_shift():
    assert context_windows(16, 12, 3) == [list(range(12)), [9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4]]
    assert context_windows(16, 12, 3, shift=2)[0] == list(range(2, 14))
    assert context_windows(5, 12, 3, shift=2) == [[2, 3, 4, 0, 1]]
    with pytest.raises(ValueError, match="overlap"):
        context_windows(16, 12, 12)


def test_face_mask_is_the_box_dilated_by_a_tenth():
    mask = face_mask((20, 30, 60, 80), 128, 128)
    rows, cols = mask[0, 0].nonzero().T
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (25, 84, 16, 63)


def _small_release(tmp_path, **kwargs):
    write_echomimic_release(tmp_path / "rel", small_echomimic_config(layers_per_block=1), **kwargs)
    return load_pipeline(tmp_path / "rel")[0]


def test_small_release_renders_a_multi_window_video_through_the_render_path(tmp_path):
    pipeline = _small_release(tmp_path)
    preset = pipeline.config.generation
    assert (preset.sampler, preset.steps, preset.guidance, preset.uncond_drops, preset.noise_clamp) == \
        ("context_windows", 30, 2.5, ("reference", "audio", "face"), 1.5)
    settings = RenderSettings.from_config(pipeline.config, steps=2)
    assert settings.passes == 2 and settings.motion_frames == 0
    reference = pipeline.encode_reference(torch.rand(1, 3, 64, 64))
    audio = pipeline.encode_audio(torch.randn(8000).numpy() * 0.1, 16000)
    seen = []
    clips = list(render_clips(pipeline, reference, audio, face_mask((16, 16, 48, 48), 64, 64), settings,
                              on_step=lambda i, n, x: seen.append((i, n, tuple(x.shape)))))
    assert audio.frames == 14 and [(c.start, c.frames.shape[0]) for c in clips] == [(0, 12), (12, 2)]
    assert seen == [(1, 2, (14, 4, 8, 8)), (2, 2, (14, 4, 8, 8))]
    assert all(torch.isfinite(c.frames).all() for c in clips)


def test_every_entry_point_renders_echomimic_the_same(tmp_path):
    pipeline = _small_release(tmp_path)
    image, wave = torch.rand(1, 3, 64, 64), torch.randn(8000).numpy() * 0.1
    ours = pipeline.generate(image, wave, 16000, steps=1, seed=3, face_box=(16, 16, 48, 48))
    audio, clips = animate(pipeline, image, wave, 16000, RenderSettings.from_config(pipeline.config, steps=1, seed=3),
                           face_box=(16, 16, 48, 48))
    assert torch.equal(ours, torch.cat([c.frames for c in clips])) and ours.shape[0] == audio.frames


def test_context_window_settings_are_checked(tmp_path):
    pipeline = _small_release(tmp_path)
    with pytest.raises(ValueError, match="motion_frames: 2; the context_windows sampler"):
        RenderSettings.from_config(pipeline.config, motion_frames=2)
    with pytest.raises(ValueError, match="context_overlap: 12"):
        RenderSettings.from_config(pipeline.config, context_overlap=12)
    reference = pipeline.encode_reference(torch.rand(1, 3, 64, 64))
    audio = pipeline.encode_audio(torch.randn(8000).numpy() * 0.1, 16000)
    with pytest.raises(ValueError, match="cannot continue"):
        next(render_clips(pipeline, reference, audio, torch.ones(1, 1, 64, 64),
                          RenderSettings.from_config(pipeline.config, steps=1), previous_frames=torch.rand(4, 3, 64, 64)))


def test_frame_count_follows_echomimic_whisper_chunks_for_any_sample_rate(tmp_path):
    from emo_models.media_audio import frame_count

    for samples in (9600, 16000, 16001, 48000 * 3 + 7):
        assert frame_count(samples, 16000, 24.0, "whisper") == whisper_frame_count(samples // 320, 24.0)
    assert frame_count(44100, 44100, 24.0, "whisper") == whisper_frame_count(50, 24.0)
    assert frame_count(np.array([9600, 16000]), 16000, 24.0, "whisper").tolist() == \
        [whisper_frame_count(30, 24.0), whisper_frame_count(50, 24.0)]
    pipeline = _small_release(tmp_path)
    wave = np.random.default_rng(0).normal(size=22050).astype(np.float32) * 0.1
    assert pipeline.encode_audio(wave, 22050).frames == pipeline.count_frames(22050, 22050)[0] == \
        whisper_frame_count(16000 // 320, 24.0)


def test_fixture_matches_echomimic_own_outputs(tmp_path):
    fixture = _bench_module("echomimic_fixture")
    release = fixture.build_release(FIXTURE / "release.json", tmp_path / "release")
    parity = _bench_module("parity_echomimic")
    lines = []
    worst, compared, results = parity.run_parity(release, FIXTURE / "reference.safetensors", log=lines.append,
                                                 vae_float64=True)
    assert {"a.whisper_features", "b.noise_pred_cfg", "c.step1.latents_after", "c.video"} <= set(results)
    assert compared >= 9 and worst <= 1e-4, results
    note = [line for line in lines if line.startswith("parity_note: b.ref_latents")]  # both sides vs float64
    ours, theirs = (float(x.rsplit("=", 1)[1]) for x in note[0].split(", "))
    assert ours <= 1e-5 and theirs <= 1e-4, note


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folder_with_only_accelerated_weights_loads_them_with_their_preset(tmp_path):
    files = write_echomimic_release(tmp_path / "rel", small_echomimic_config(layers_per_block=1))
    for name in ("denoising_unet", "motion_module"):
        (tmp_path / "rel" / f"{name}.pth").rename(tmp_path / "rel" / f"{name}_acc.pth")
    pipeline, _ = load_pipeline(tmp_path / "rel")
    assert torch.equal(pipeline.model.backbone.state_dict()["conv_in.weight"], files["denoising_unet.pth"]["conv_in.weight"])
    assert (pipeline.config.generation.steps, pipeline.config.generation.guidance) == (6, 1.0)
    assert RenderSettings.from_config(pipeline.config).passes == 1


def test_family_registry_names_echomimic_releases_and_files(tmp_path):
    from emo_models.families import get_family, release_family, weights_family

    files = write_echomimic_release(tmp_path / "rel", small_echomimic_config(layers_per_block=1))
    assert release_family(tmp_path / "rel").name == "echomimic" and release_family(tmp_path) is None
    assert weights_family(files["face_locator.pth"]).name == "echomimic"
    assert weights_family({"conv_in.weight": torch.zeros(320, 4, 3, 3)}) is None
    with pytest.raises(ValueError, match="unknown family 'emo2'; choose one of echomimic"):
        get_family("emo2")


def write_fp16_release(folder: Path) -> None:
    """A small release whose every .pth is float16, as EchoMimic ships them (whisper_tiny.pt included)."""
    write_echomimic_release(folder, small_echomimic_config(layers_per_block=1))
    for path in folder.rglob("*.pt*"):
        state = torch.load(path, weights_only=True)
        half = lambda sd: {k: v.half() for k, v in sd.items()}  # noqa: E731
        torch.save({**state, "model_state_dict": half(state["model_state_dict"])} if "dims" in state else half(state),
                   path)


def test_convert_writes_a_native_folder_that_renders_exactly_as_the_release(tmp_path):
    from emo_models.cli import main

    write_fp16_release(tmp_path / "rel")
    assert main(["convert", "--from", "echomimic", str(tmp_path / "rel"), str(tmp_path / "native")]) == 0
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config["generation"]["sampler"] == "context_windows" and config["temporal_positions"] == "float16"
    image, wave = torch.rand(1, 3, 64, 64), torch.randn(8000).numpy() * 0.1
    pipelines = [load_pipeline(tmp_path / folder)[0] for folder in ("rel", "native")]
    # Whisper computes in float32 from either folder, whatever precision its weights are stored in
    assert [next(p.audio_encoder.parameters()).dtype for p in pipelines] == [torch.float32] * 2
    frames = [p.generate(image, wave, 16000, steps=1, face_box=(16, 16, 48, 48)) for p in pipelines]
    assert torch.equal(frames[0], frames[1])
    assert main(["convert", "--from", "echomimic", str(tmp_path / "rel"), str(tmp_path / "acc"), "--variant", "acc"]) == 2


def test_convert_keeps_the_precision_the_release_stores(tmp_path):
    from safetensors import safe_open

    from emo_models.loading import convert_release

    write_fp16_release(tmp_path / "rel")
    convert_release("echomimic", tmp_path / "rel", tmp_path / "native")
    stored = {}
    for path in sorted((tmp_path / "native").glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            stored[path.stem] = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
    # the .pth files' float16 throughout (temporal modules, Whisper, and the zero-initialised speed layers
    # EchoMimic lacks), the VAE's diffusers folder's float32: each tensor as the release stores it
    assert stored == {**{name: {"F16"} for name in stored}, "vae": {"F32"}}, stored
    assert {"temporal", "audio_encoder", "speed_encoder"} <= set(stored)


def test_inspect_reads_a_converted_folder_with_the_layout_its_config_builds(tmp_path):
    from emo_models.loading import convert_release
    from emo_models.weights.inspect import describe

    write_fp16_release(tmp_path / "rel")
    convert_release("echomimic", tmp_path / "rel", tmp_path / "native")
    text = describe(tmp_path / "native")
    lines = {line.split(":")[0].strip(): line for line in text.splitlines()}
    assert "config: echomimic" in text
    assert "without cross-attention and output layers (as the config builds it)" in text
    reference = text.split("reference_net:")[1].split("\n")[1]
    assert " 0 missing, 0 unexpected" in reference  # its absent attn2/norm2/conv_out are not "missing"
    assert "none (this config reads the audio features raw)" in lines["audio_projection"]
    audio = text.split("audio_encoder:")[1].splitlines()
    assert "(float16)" in audio[0]
    assert audio[1].strip().startswith("Whisper custom encoder: 1 layer, width 384, 6 heads, 80 mel bins")
    assert "WhisperEncoder: 22/22 keys match, 0 missing, 0 unexpected" in audio[2]
    assert "Wav2Vec2" not in text
    single = describe(tmp_path / "native" / "audio_encoder.safetensors")
    assert single.splitlines()[0].endswith("Whisper encoder file (transformers keys)") and "1 layer, width 384" in single
    openai = describe(tmp_path / "rel" / "audio_processor" / "whisper_tiny.pt")
    assert "openai Whisper" in openai and "Whisper custom encoder: 1 layer" in openai
