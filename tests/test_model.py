"""The EMO model's structure, proven by running it: what runs once, what depends on what."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel

from emo_models.config import tiny_config
from emo_models.guidance import Guidance
from emo_models.model import ClipCondition
from emo_models.pipeline import GenerationCancelled
from emo_models.render import RenderSettings, render
from emo_models.temporal import motion_module_sites

STEPS = dict(steps=2, scheduler="ddim")


def count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    return calls


def test_reference_net_runs_once_per_video_and_once_per_clip_never_per_step(speech_wave, portrait):
    from emo_models.face_region import box_mask
    from tests.conftest import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    reference_calls, backbone_calls = count_calls(pipe.model.reference_net), count_calls(pipe.model.backbone)
    reference = pipe.encode_reference(portrait)
    audio = pipe.encode_audio(speech_wave, 16000)
    assert reference_calls == [1]
    settings = RenderSettings.from_config(pipe.config, steps=3, cfg=2.0)
    render(pipe, reference, audio, box_mask((16, 16, 48, 48), 64, 64), settings)
    clips = -(-audio.frames // pipe.config.frames_per_clip)
    # each clip (the first too: it continues the reference) runs the ReferenceNet once on its n motion frames
    assert reference_calls == [1] + [pipe.config.motion_frames] * clips
    assert len(backbone_calls) == clips * 3  # one batched call (the guidance branches) per step


def test_emo_layers_off_equals_stock_diffusers_unet_on_the_same_sd15_weights(tmp_path):
    from emo_models.loading import assemble
    from tests.weight_files import write_sd15_single_file

    config = tiny_config()
    source = write_sd15_single_file(tmp_path / "v1-5-pruned-emaonly.safetensors", config)
    pipeline, _ = assemble(config, base=tmp_path / "v1-5-pruned-emaonly.safetensors")
    model = pipeline.model
    stock = UNet2DConditionModel(**config.unet).eval()
    stock.load_state_dict(source["unet"])
    latents = torch.randn(2, 3, 4, 8, 8)
    context = torch.randn(6, 5, config.cross_attention_dim)
    with torch.no_grad(), model.emo_layers_off():
        ours = model.denoise(latents, 321, ClipCondition(reference=None), encoder_hidden_states=context)
        theirs = stock(latents.flatten(0, 1), 321, encoder_hidden_states=context).sample
        # the ReferenceNet got the same weights
        assert all(torch.equal(a, b) for a, b in zip(model.reference_net.state_dict().values(),
                                                      stock.state_dict().values()))
    assert (ours.flatten(0, 1) - theirs).abs().max().item() <= 1e-5
    # and switched on, the EMO layers do change the output (so the comparison above means something)
    with torch.no_grad():
        reference = model.encode_reference(torch.randn(2, 4, 8, 8))
        emo = model.denoise(latents, 321, ClipCondition(reference=reference, temporal=False))
    assert (emo.flatten(0, 1) - theirs).abs().max().item() > 1e-4  # 10x the equality tolerance


def test_temporal_modules_sit_where_animatediff_puts_them():
    sites = motion_module_sites(tiny_config().unet)
    assert [s[0] for s in sites] == [
        "down_blocks.0.motion_modules.0", "down_blocks.1.motion_modules.0", "mid_block.motion_modules.0",
        "up_blocks.0.motion_modules.0", "up_blocks.0.motion_modules.1",
        "up_blocks.1.motion_modules.0", "up_blocks.1.motion_modules.1",
    ]
    from emo_models.config import full_config

    full = motion_module_sites(full_config().unet)
    assert len(full) == 21 and full[0][1] == "down_blocks.0.attentions.0" and full[6][1] == "down_blocks.3.resnets.0"


def _frames(pipe, image, wave, **kw):
    return pipe.generate(image, wave, seed=7, **{**STEPS, **kw})


def test_changing_only_the_audio_changes_the_frames(tiny_pipeline, portrait, speech_wave):
    other = np.roll(speech_wave, 4000) * 0.5
    a, b = _frames(tiny_pipeline, portrait, speech_wave), _frames(tiny_pipeline, portrait, other)
    assert a.shape == b.shape
    assert (a - b).abs().mean() > 1e-4


def test_changing_only_the_reference_changes_the_frames(tiny_pipeline, portrait, speech_wave):
    a, b = _frames(tiny_pipeline, portrait, speech_wave), _frames(tiny_pipeline, portrait.flip(-1), speech_wave)
    assert (a - b).abs().mean() > 1e-4


def test_same_seed_same_frames_other_seed_other_frames(tiny_pipeline, portrait, speech_wave):
    a, b = _frames(tiny_pipeline, portrait, speech_wave), _frames(tiny_pipeline, portrait, speech_wave)
    assert torch.equal(a, b)
    c = tiny_pipeline.generate(portrait, speech_wave, seed=8, **STEPS)
    assert (a - c).abs().mean() > 1e-4


def test_motion_frames_make_each_clip_depend_on_the_one_before(tiny_pipeline, portrait, speech_wave):
    from emo_models.face_region import box_mask

    pipe, f = tiny_pipeline, tiny_pipeline.config.frames_per_clip
    reference, audio = pipe.encode_reference(portrait), pipe.encode_audio(speech_wave, 16000)
    mask = box_mask((16, 16, 48, 48), 64, 64)

    def frames(**kw):
        options = {k: kw.pop(k) for k in ("previous_frames",) if k in kw}
        return render(pipe, reference, audio, mask, RenderSettings.from_config(pipe.config, seed=1, steps=2, **kw),
                      **options).frames

    base = frames()
    earlier = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    continued = frames(previous_frames=earlier)
    assert (base[:f] - continued[:f]).abs().mean() > 1e-4  # clip 1 now follows other motion frames
    assert (base[:f] - frames(first_clip_motion="zeros")[:f]).abs().mean() > 1e-4  # the first-clip policy matters
    # and without motion frames (n = 0) no clip depends on what came before it
    assert torch.equal(frames(motion_frames=0), frames(motion_frames=0, first_clip_motion="zeros"))


def test_frame_count_is_seconds_times_fps_rounded(tiny_pipeline, portrait):
    wave = (0.3 * np.sin(np.arange(int(1.3 * 16000)) / 16000 * 2 * np.pi * 200)).astype(np.float32)
    for fps in (25.0, 30.0, 12.5):
        assert tiny_pipeline.encode_audio(wave, 16000, fps=fps).frames == int(np.floor(1.3 * fps + 0.5))
    frames = tiny_pipeline.generate(portrait, wave, fps=30.0, steps=1)
    assert frames.shape == (39, 3, 64, 64) and 0 <= frames.min() and frames.max() <= 1


def test_cancel_raises_and_leaves_the_model_unchanged(portrait, speech_wave):
    from tests.conftest import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    before = {k: v.clone() for k, v in pipe.model.state_dict().items()}
    clean = pipe.generate(portrait, speech_wave, seed=3, **STEPS)
    steps = []
    with pytest.raises(GenerationCancelled, match="cancelled"):
        pipe.generate(portrait, speech_wave, seed=3, should_stop=lambda: len(steps) >= 3,
                      on_step=lambda d, t, x: steps.append(d), **STEPS)
    assert len(steps) == 3  # stopped before the 4th step
    after = pipe.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert pipe.model.bank.reference is None and pipe.model._condition is None
    assert torch.equal(clean, pipe.generate(portrait, speech_wave, seed=3, **STEPS))


def test_progress_reports_every_step(tiny_pipeline, portrait, speech_wave):
    seen = []
    tiny_pipeline.generate(portrait, speech_wave, steps=3, on_step=lambda d, t, x: seen.append((d, t, x.shape)))
    clips = -(-tiny_pipeline.encode_audio(speech_wave, 16000).frames // tiny_pipeline.config.frames_per_clip)
    assert [d for d, _, _ in seen] == list(range(1, 3 * clips + 1))
    assert all(t == 3 * clips and shape == (4, 4, 8, 8) for _, t, shape in seen)


def test_speed_changes_the_frames_and_bad_speed_is_refused(tiny_pipeline, portrait, speech_wave):
    slow = _frames(tiny_pipeline, portrait, speech_wave, speed=0.1)
    fast = _frames(tiny_pipeline, portrait, speech_wave, speed=1.3)
    assert (slow - fast).abs().mean() > 1e-5
    schedule = np.linspace(0.1, 1.3, 10)
    assert _frames(tiny_pipeline, portrait, speech_wave, speed=schedule).shape == slow.shape
    with pytest.raises(ValueError, match="speed"):
        _frames(tiny_pipeline, portrait, speech_wave, speed=float("nan"))


def test_face_mask_changes_the_frames(portrait, speech_wave):
    from tests.conftest import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    with torch.no_grad():  # random small convs barely see the mask; a trained face locator does
        for name, p in pipe.model.face_locator.named_parameters():
            if not name.startswith("conv_out"):
                p.mul_(2)
    left, right = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    left[..., :32], right[..., 32:] = 1, 1
    assert (_frames(pipe, portrait, speech_wave, face_mask=left)
            - _frames(pipe, portrait, speech_wave, face_mask=right)).abs().mean() > 1e-5


@pytest.mark.parametrize("scheduler", ["dpmpp_2m", "euler"])
def test_other_schedulers_run(tiny_pipeline, portrait, speech_wave, scheduler):
    frames = tiny_pipeline.generate(portrait, speech_wave, steps=2, scheduler=scheduler)
    assert torch.isfinite(frames).all()


def test_guidance_branches_combine_as_documented():
    eps = {k: torch.full((1,), v) for k, v in (("uncond", 1.0), ("reference", 2.0), ("full", 4.0))}
    assert Guidance(1.0, reference=3.0, audio=2.0).combine(eps).item() == pytest.approx(1 + 3 * 1 + 2 * 2)
    assert Guidance(3.0).combine({"uncond": eps["uncond"], "full": eps["full"]}).item() == pytest.approx(1 + 3 * 3)
    assert Guidance(3.0).combine({"uncond": eps["uncond"], "full": eps["full"]}).item() == pytest.approx(
        Guidance(1.0, reference=3.0, audio=3.0).combine(eps).item())  # one scale: the middle branch cancels
    emo = ("reference", "audio")
    assert [name for name, _ in Guidance(1.0).branches(emo)] == ["full"]
    assert [name for name, _ in Guidance(3.5).branches(emo)] == ["uncond", "full"]
    assert [name for name, _ in Guidance(1.0, reference=1.0, audio=2.0).branches(emo)] == ["reference", "full"]
    assert dict(Guidance(1.0, reference=2.0, audio=3.0).branches(emo)) == {
        "uncond": {"reference", "audio"}, "reference": {"audio"}, "full": set()}
    with pytest.raises(ValueError, match="cfg_reference: 2 differs from cfg_audio 3.*keeps the reference"):
        Guidance(1.0, reference=2.0, audio=3.0).branches(("audio", "face"))
    with pytest.raises(ValueError, match=r"^cfg: nan is not a number"):
        Guidance(float("nan"))
