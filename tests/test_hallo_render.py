"""A Hallo release through the one render path: its preset, its guidance branches, its face inputs.

Releases are tiny random-weight files in Hallo's on-disk layout (tests/hallo_files.py) with ONNX
stand-ins for the face-analysis files (tests/face_analysis_files.py), loaded by ``load_pipeline``.
Numerical agreement with Hallo's own generation is bench/parity_hallo.py's job (--only generate).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from emo_models.families.hallo import PRESET, face_conditions
from emo_models.loading import load_pipeline
from emo_models.model import ClipCondition
from emo_models.render import RenderSettings
from tests.face_analysis_files import write_hallo_face_analysis, write_scrfd_constant
from tests.hallo_files import write_hallo_release
from tests.test_nodes import load_pack, models_dir, run_node, speech  # noqa: F401  (models_dir: a fixture)

FACE = dict(stride=32, row=7, col=9, anchor=0, score=0.9, box=[2.0, 2.5, 2.0, 2.5],
            kps=[-1.0, -1.0, 1.0, -1.0, 0.0, 0.0, -0.8, 1.2, 0.8, 1.2])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hallo-render") / "pretrained_models"
    write_hallo_release(folder)
    write_hallo_face_analysis(folder, detector=lambda p: write_scrfd_constant(p, [FACE]), landmarker=False)
    return load_pipeline(folder)[0]


def portrait(size: int) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3))


def test_hallos_preset_travels_with_the_release(pipeline):
    config = pipeline.config
    assert config.generation == PRESET and (config.fps, config.frames_per_clip, config.motion_frames) == (25.0, 16, 2)
    settings = RenderSettings.from_config(config)
    assert (settings.steps, settings.guidance.scale, settings.passes, settings.first_clip_motion) == (40, 3.5, 2, "reference")
    assert RenderSettings.from_config(config, steps=3, cfg=2.0).steps == 3  # the user overrides it


def test_the_context_windows_sampler_is_refused_before_any_work(pipeline):
    from emo_models.validation import InputError

    with pytest.raises(InputError, match="sampler: 'context_windows'.*use motion_frames"):
        RenderSettings.from_config(pipeline.config, sampler="context_windows")


def test_unconditional_branch_reads_the_projection_of_a_zero_embedding(pipeline):
    model = pipeline.model
    identity = model.encode_identity(torch.randn(1, 512))
    cond = ClipCondition(reference=None, identity=identity, audio_tokens=torch.ones(1, 2, 32, 32))
    batch = model.drop_conditions(cond.repeat(2), {"reference": torch.tensor([True, False]),
                                                   "audio": torch.tensor([True, False])})
    assert torch.equal(batch.identity[0], model.encode_identity(torch.zeros(1, 512))[0])
    assert torch.equal(batch.identity[1], identity[0]) and batch.use_reference.tolist() == [False, True]
    assert batch.audio_tokens[0].abs().sum() == 0 and torch.equal(batch.audio_tokens[1], cond.audio_tokens[0])


def test_audio_is_counted_with_ceil_and_read_padded_to_whole_clips(pipeline):
    wave = np.random.default_rng(0).standard_normal(16000 * 7 // 10).astype(np.float32)  # 0.7 s
    audio = pipeline.encode_audio(wave, 16000)
    assert audio.frames == math.ceil(0.7 * 25) == 18
    assert audio.padding == 14  # two whole clips of 16, as Hallo pads them
    padded = audio.windows(0, 32)
    assert padded.shape[0] == 32
    assert not torch.equal(padded[18:], padded[17:18].expand_as(padded[18:]))  # the last clip hears the silence
    with pytest.raises(ValueError, match="14 of padding"):
        audio.windows(0, 33)
    assert audio.span(16, 18).padding == 14 and audio.span(0, 16).padding == 0


def test_audio_longer_than_one_pass_is_padded_through_the_windowed_encoding(pipeline):
    from emo_models.audio_encoding import WindowedFeatures, encode_audio

    wave = np.random.default_rng(0).standard_normal(16000 * 7 // 10).astype(np.float32)
    config = pipeline.config
    held = encode_audio(pipeline.audio_encoder, wave, 18, 25.0, config.audio_window, 0.7, padding=14)
    windowed = encode_audio(pipeline.audio_encoder, wave, 18, 25.0, config.audio_window, 0.7, padding=14,
                            one_pass_seconds=0.4, overlap_seconds=0.1)
    assert isinstance(windowed.source, WindowedFeatures) and windowed.source.frames == 32
    assert (windowed.frames, windowed.padding) == (held.frames, held.padding) == (18, 14)
    assert windowed.windows(0, 32).shape == held.windows(0, 32).shape


def test_face_inputs_come_from_the_release_face_analysis_files(pipeline):
    from emo_models.face_analysis import FaceAnalysis

    analysis = FaceAnalysis.from_folder(pipeline.face_analysis_folders)
    faces = face_conditions(pipeline.config, portrait(128), analysis)
    assert faces.found and faces.embedding.abs().sum() > 0
    assert faces.locator.shape == (1, 1, 128, 128) and 0 < faces.locator.mean() < 1
    assert [m.shape[-1] for m in faces.regions.lip] == [16 * 16, 8 * 8, 4 * 4, 2 * 2]
    assert faces.regions.lip[0].max() > 0.5 and faces.regions.lip[0].min() < 0.1


def test_no_face_falls_back_to_the_whole_image_and_a_zero_embedding_as_hallo(pipeline, tmp_path):
    from emo_models.face_analysis import FaceAnalysis

    folder = write_hallo_face_analysis(tmp_path, detector=lambda p: write_scrfd_constant(p, []), landmarker=False)
    with pytest.warns(UserWarning, match="no face detected"):
        faces = face_conditions(pipeline.config, portrait(128), FaceAnalysis.from_folder(folder))
    assert not faces.found and faces.embedding.abs().sum() == 0 and faces.locator.min() == 1


def test_boxes_without_face_analysis_files_and_neither_is_an_error(pipeline):
    faces = face_conditions(pipeline.config, portrait(128), face_box=(30, 20, 100, 110), lip_box=(50, 80, 80, 100))
    assert faces.embedding.abs().sum() == 0 and faces.locator[0, 0, 50, 60] == 1 and faces.locator[0, 0, 5, 5] == 0
    with pytest.raises(ValueError, match="face_analysis/models"):
        face_conditions(pipeline.config, portrait(128))


def test_generate_renders_a_hallo_release_through_the_one_render_path(pipeline):
    wave = np.random.default_rng(1).standard_normal(16000 // 4).astype(np.float32)  # 0.25 s -> 7 frames
    steps = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = pipeline.generate(portrait(128), wave, 16000, steps=1, frames_per_clip=4, motion_frames=2,
                                   on_step=lambda done, total, latents: steps.append((done, total)))
    assert frames.shape == (7, 3, 128, 128) and torch.isfinite(frames).all()
    assert steps == [(1, 2), (2, 2)]  # 2 clips x 1 step


def test_nodes_list_a_hallo_release_in_models_emo_and_render_with_it(models_dir):  # noqa: F811 (the fixture)
    release = models_dir / "emo" / "hallo_tiny"
    write_hallo_release(release)
    write_hallo_face_analysis(release, detector=lambda p: write_scrfd_constant(p, [FACE]), landmarker=False)
    listed = load_pack().NODE_CLASS_MAPPINGS["EMOLoadModel"].INPUT_TYPES()["required"]["checkpoint"][0]
    assert "hallo_tiny" in listed and not any(name.startswith("hallo_tiny/") for name in listed)
    (model,) = run_node("EMOLoadModel", checkpoint="hallo_tiny")
    reference, fitted = run_node("EMOEncodeReference", emo_model=model, image=torch.rand(1, 150, 130, 3))
    assert reference.encoding.identity is not None and reference.encoding.locator.shape == (1, 1, 128, 128)
    audio, _, frames, fps = run_node("EMOAudioFeatures", emo_model=model, audio=speech(0.2))
    assert (frames, fps) == (5, 25.0)  # ceil(0.2 s x 25), the release's rule
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, _ = run_node("EMOSampler", emo_model=model, reference=reference, emo_audio=audio, steps=1,
                             frames_per_clip=4, motion_frames=2)
    assert images.shape == (5, 128, 128, 3) and torch.isfinite(images).all()


def test_missing_face_analysis_files_are_named_with_the_folders_searched(pipeline, tmp_path, monkeypatch):
    empty = tmp_path / "pretrained_models"
    (empty / "face_analysis" / "models").mkdir(parents=True)
    monkeypatch.setattr(pipeline, "face_analysis_folders", [empty])
    with pytest.raises(Exception, match=r"scrfd_10g_bnkps\.onnx[\s\S]*pretrained_models") as caught:
        pipeline.generate(portrait(128), np.zeros(4000, np.float32), 16000, steps=1)
    assert not isinstance(caught.value, (AttributeError, TypeError, KeyError))


def test_a_hallo_release_renders_with_the_network_unreachable(pipeline, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames = pipeline.generate(portrait(128), np.zeros(4000, np.float32) + 0.1, 16000, steps=1,
                                   frames_per_clip=4, motion_frames=2)
    assert frames.shape[0] == 7  # ceil(0.25 s x 25)
