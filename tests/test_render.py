"""The one render path: guidance passes per step, the motion-frame and noise policies, settings from the checkpoint."""

from __future__ import annotations

import pytest
import torch

from emo_models.config import tiny_config
from emo_models.face_region import box_mask
from emo_models.guidance import Guidance
from emo_models.preset import GenerationPreset
from emo_models.render import RenderSettings, clip_noise, render, render_clips

MASK = box_mask((16, 16, 48, 48), 64, 64)


@pytest.fixture(scope="module")
def encoded(tiny_pipeline):
    """(reference, audio) of a smooth random portrait and 1.2 s of speech-like audio (30 frames at 25 fps)."""
    import numpy as np

    g = torch.Generator().manual_seed(3)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear")
    t = np.arange(int(1.2 * 16000)) / 16000
    wave = (0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 140 * t)).astype(np.float32)
    return tiny_pipeline.encode_reference(image), tiny_pipeline.encode_audio(wave, 16000)


@pytest.mark.parametrize("scales, passes", [
    ({}, 2),  # the checkpoint's one scale: unconditional vs full
    ({"cfg": 5.0}, 2),
    ({"cfg": 1.0, "cfg_reference": 1.0, "cfg_audio": 2.5}, 2),  # reference-only vs full
    ({"cfg_reference": 2.0, "cfg_audio": 3.0}, 3),  # unequal scales: all three branches
    ({"cfg": 1.0}, 1),  # no guidance
])
def test_a_step_makes_two_backbone_passes_by_default_and_three_for_unequal_scales(tiny_pipeline, encoded, scales,
                                                                                    passes):
    reference, audio = encoded
    f = tiny_pipeline.config.frames_per_clip
    batches = []
    hook = tiny_pipeline.model.backbone.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        settings = RenderSettings.from_config(tiny_pipeline.config, steps=3, **scales)
        render(tiny_pipeline, reference, audio.span(0, f), MASK, settings)
    finally:
        hook.remove()
    assert settings.passes == passes
    assert batches == [passes * f] * 3  # one backbone call per step, carrying every pass's f frames


def test_extending_a_render_from_its_frames_is_bit_identical_to_one_longer_render(tiny_pipeline, encoded):
    reference, audio = encoded
    settings = RenderSettings.from_config(tiny_pipeline.config, steps=2, seed=3)
    whole = render(tiny_pipeline, reference, audio, MASK, settings)
    first = render(tiny_pipeline, reference, audio.span(0, 8), MASK, settings)  # two clips of 4
    as_image = first.frames.permute(0, 2, 3, 1).contiguous()  # frames as they come back from an IMAGE or a file
    rest = render(tiny_pipeline, reference, audio.span(8, audio.frames), MASK, settings,
                  previous_frames=as_image.permute(0, 3, 1, 2))
    assert whole.frames.shape == (30, 3, 64, 64)
    assert torch.equal(torch.cat([first.frames, rest.frames]), whole.frames)
    assert torch.equal(torch.cat([first.latents, rest.latents]), whole.latents)


def test_clips_stream_out_as_they_are_rendered(tiny_pipeline, encoded):
    reference, audio = encoded
    steps_seen = []
    settings = RenderSettings.from_config(tiny_pipeline.config, steps=2)
    clips = render_clips(tiny_pipeline, reference, audio, MASK, settings, on_step=lambda d, t, x: steps_seen.append(d))
    first = next(clips)
    assert steps_seen == [1, 2] and first.index == 0 and first.start == 0  # only the first clip was denoised
    rest = list(clips)
    assert [c.start for c in rest] == list(range(4, 30, 4)) and rest[-1].frames.shape[0] == 2  # 30 = 7 x 4 + 2
    assert all(c.frames.dtype == torch.float32 and c.frames.device.type == "cpu" for c in [first, *rest])


def test_each_clips_noise_depends_on_the_seed_and_its_first_frame_only():
    assert torch.equal(clip_noise(7, 8, (1, 4, 4, 8, 8)), clip_noise(7, 8, (1, 4, 4, 8, 8)))
    assert not torch.equal(clip_noise(7, 8, (4,)), clip_noise(7, 12, (4,)))
    assert not torch.equal(clip_noise(7, 8, (4,)), clip_noise(8, 8, (4,)))
    assert clip_noise(2**64 - 1, 0, (2,)).shape == (2,)


def test_settings_default_to_the_checkpoint_preset_and_every_value_overrides_it():
    config = tiny_config()
    config.generation = GenerationPreset(steps=7, scheduler="euler", guidance=2.0, guidance_reference=1.0,
                                         speed=0.8, first_clip_motion="zeros")
    s = RenderSettings.from_config(config)
    assert (s.steps, s.scheduler, s.guidance, s.speed, s.first_clip_motion) == (7, "euler", Guidance(2.0, 1.0), 0.8,
                                                                                 "zeros")
    assert (s.frames_per_clip, s.motion_frames, s.uncond_drops) == (4, 2, ("reference", "audio"))
    o = RenderSettings.from_config(config, steps=3, scheduler="ddim", cfg=4.0, frames_per_clip=6, motion_frames=0,
                                   first_clip_motion="reference", seed=9, speed=0.2)
    assert o.steps == 3 and o.guidance == Guidance(4.0)  # an explicit cfg replaces the whole guidance setting
    assert (o.scheduler, o.frames_per_clip, o.motion_frames, o.first_clip_motion, o.seed, o.speed) == (
        "ddim", 6, 0, "reference", 9, 0.2)
    assert RenderSettings.from_config(config, cfg_audio=3.0).guidance == Guidance(2.0, 1.0, 3.0)


@pytest.mark.parametrize("override, message", [
    ({"steps": 0}, r"^steps: 0 is below the minimum 1\. It is the denoising steps per clip"),
    ({"scheduler": "plms"}, r"^scheduler: 'plms'; choose one of ddim, dpmpp_2m, euler"),
    ({"frames_per_clip": 31}, r"^frames_per_clip \+ motion_frames: 31 \+ 2 frames exceed this model's temporal "
                              r"window of 32"),
    ({"motion_frames": -1}, r"^motion_frames: -1 is below the minimum 0"),
    ({"first_clip_motion": "noise"}, r"^first_clip_motion: 'noise'; choose one of reference, zeros"),
    ({"seed": -1}, r"^seed: -1 is below the minimum 0"),
    ({"speed": float("nan")}, r"^speed: nan is not a number"),
    ({"cfg": -2.0}, r"^cfg: -2 is below the minimum 1"),
    ({"cfg_audio": float("inf")}, r"^cfg_audio: inf is not a finite number"),
])
def test_bad_settings_are_refused_naming_the_setting(override, message):
    with pytest.raises(ValueError, match=message):
        RenderSettings.from_config(tiny_config(), **override)


def test_face_mask_must_be_the_frames_shape(tiny_pipeline, encoded):
    reference, audio = encoded
    settings = RenderSettings.from_config(tiny_pipeline.config, steps=1)
    with pytest.raises(ValueError, match=r"face_mask: shape \(1, 1, 32, 32\); expected \(1, 1, 64, 64\)"):
        next(render_clips(tiny_pipeline, reference, audio, torch.ones(1, 1, 32, 32), settings))
    with pytest.raises(ValueError, match=r"frames: 1 frames to continue but motion_frames is 2"):
        next(render_clips(tiny_pipeline, reference, audio, MASK, settings, previous_frames=torch.rand(1, 3, 64, 64)))


def test_a_clips_starting_noise_can_be_supplied(tiny_pipeline, encoded):
    reference, audio = encoded
    settings = RenderSettings.from_config(tiny_pipeline.config, steps=1, seed=4)
    asked = []

    def noise(first_frame, shape):
        asked.append(first_frame)
        return clip_noise(4, first_frame, shape)

    supplied = render(tiny_pipeline, reference, audio.span(0, 8), MASK, settings, initial_noise=noise)
    assert asked == [0, 4]
    assert torch.equal(supplied.frames, render(tiny_pipeline, reference, audio.span(0, 8), MASK, settings).frames)


def test_full_size_frames_go_through_the_vae_one_at_a_time_equal_to_a_batched_call(tiny_pipeline, monkeypatch):
    from emo_models.pipeline import vae_slice_frames

    assert [vae_slice_frames(n, n, most=4) for n in (512, 256, 64)] == [1, 4, 4]
    assert [vae_slice_frames(n, n) for n in (512, 256, 64)] == [1, 4, 64]  # encoding: only full size is sliced
    pipeline, scale = tiny_pipeline, tiny_pipeline.config.vae_scale
    latents = torch.randn(3, 4, 512 // scale, 512 // scale, generator=torch.Generator().manual_seed(0))
    batches, decode = [], pipeline.vae.decode
    monkeypatch.setattr(pipeline.vae, "decode", lambda z, *a, **k: batches.append(z.shape[0]) or decode(z, *a, **k))
    frames = pipeline.decode(latents)  # 512x512 frames: one per decoder call
    assert batches == [1, 1, 1] and frames.shape == (3, 3, 512, 512)
    # the same frames as one batched call, to rounding: oneDNN picks other convolution kernels for another batch
    # size (seen: 9.6e-5 here); a tenth of one 8-bit level bounds it
    assert (frames - pipeline.decode(latents, slice_size=3)).abs().max() <= 0.1 / 255
    encode = pipeline.vae.encode
    monkeypatch.setattr(pipeline.vae, "encode", lambda x, *a, **k: batches.append(x.shape[0]) or encode(x, *a, **k))
    batches.clear()
    assert pipeline.vae_encode(frames).shape == latents.shape and batches == [1, 1, 1]
