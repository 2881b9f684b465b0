"""Which conditions a training sample sees: guidance-dropout cases and motion-frame cases."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import replace

import pytest
import torch

from emo_models.cli import build_parser
from emo_models.guidance import Guidance
from emo_models.model import ClipCondition
from emo_models.preset import GenerationPreset
from emo_models.training.conditions import CONDITION, MOTION, MOTION_NOISE, ConditionCases
from emo_models.training.stages import get_stage
from emo_models.training.train import TrainOptions
from emo_models.training.train_batch import StageDenoiser, sample_randomness

from .conftest import build_tiny_pipeline


def _case_shares(cases: ConditionCases, available=("reference", "audio", "face"), samples: int = 4000) -> dict:
    """Share of samples per set of removed conditions, over the draws training really makes."""
    uniform = sample_randomness(0, 1, list(range(samples)), (1,), 1000)["uniform"][:, CONDITION]
    dropped = cases.dropped(uniform, available)
    removed = [frozenset(name for name, mask in dropped.items() if mask[i]) for i in range(samples)]
    return {case: count / samples for case, count in Counter(removed).items()}


def test_unconditional_case_is_trained_as_often_as_the_reference_branch_case():
    shares = _case_shares(ConditionCases())
    uncond, reference_branch = frozenset({"reference", "audio"}), frozenset({"audio"})
    assert shares[uncond] == pytest.approx(0.05, abs=0.01)  # independent 5% draws: 0.25%
    assert shares[reference_branch] == pytest.approx(0.05, abs=0.01)
    assert set(shares) == {uncond, reference_branch, frozenset()}  # exclusive cases, nothing else
    shares = _case_shares(ConditionCases(drop_both=0.1, drop_audio=0.1, drop_reference=0.1))
    for case in (uncond, reference_branch, frozenset({"reference"}), frozenset()):
        assert shares[case] == pytest.approx(0.7 if case == frozenset() else 0.1, abs=0.015), case


def test_dropout_cases_remove_what_the_checkpoints_guidance_branches_remove():
    preset = GenerationPreset(uncond_drops=("reference", "audio", "face"))
    cases = TrainOptions(drop_both=0.2, drop_audio=0.2).cases(preset)
    branches = dict((name, drops) for name, drops in Guidance(2.0, reference=1.5).branches(preset.uncond_drops))
    shares = _case_shares(cases)
    assert shares[branches["uncond"]] == pytest.approx(0.2, abs=0.02)
    assert shares[branches["reference"]] == pytest.approx(0.2, abs=0.02)
    assert shares[branches["full"]] == pytest.approx(0.6, abs=0.02)


def test_without_audio_the_reference_branch_case_keeps_everything_the_sample_has():
    shares = _case_shares(ConditionCases(drop_both=0.1, drop_audio=0.1, drop_reference=0.2), ("reference", "face"))
    assert shares[frozenset({"reference"})] == pytest.approx(0.3, abs=0.02)
    assert shares[frozenset()] == pytest.approx(0.7, abs=0.02)


def test_nothing_dropped_means_no_masks():
    assert ConditionCases(drop_both=0.0, drop_audio=0.0).dropped(torch.rand(4), ("reference", "audio")) == {}


def test_case_probabilities_must_leave_room_for_the_full_condition():
    with pytest.raises(ValueError, match="sum must stay below 1"):
        ConditionCases(drop_both=0.5, drop_audio=0.5)
    with pytest.raises(ValueError, match="first_clip: 1.5"):
        ConditionCases(first_clip=1.5)
    with pytest.raises(ValueError, match="motion_noise"):
        TrainOptions(motion_noise=-1.0)
    with pytest.raises(ValueError, match="first_clip_motion: 'previous'"):
        ConditionCases(first_clip_motion="previous")


def _video_inputs(b: int = 3, n: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"reference_latents": torch.randn(b, 4, 8, 8, generator=g),
            "motion_latents": torch.randn(b, n, 4, 8, 8, generator=g),
            "motion_round_trip": torch.randn(b, n, 4, 8, 8, generator=g)}


def test_first_clip_sample_has_the_frame_before_its_targets_as_reference_and_as_every_motion_frame():
    inputs = _video_inputs()
    uniform = torch.tensor([[0.5, 0.05, 0.9], [0.5, 0.5, 0.9], [0.5, 0.5, 0.0]])
    out = ConditionCases(first_clip=0.1).motion_inputs(inputs, {"uniform": uniform})
    last = inputs["motion_latents"][0, -1]
    assert torch.equal(out["reference_latents"][0], last)
    assert all(torch.equal(frame, last) for frame in out["motion_latents"][0])
    # continuing samples: the reference stays, the motion frames are the round-tripped real ones
    assert torch.equal(out["reference_latents"][1:], inputs["reference_latents"][1:])
    assert torch.equal(out["motion_latents"][1:], inputs["motion_round_trip"][1:])


def test_first_clip_with_the_zeros_policy_is_marked_for_no_motion_context():
    inputs = _video_inputs()
    uniform = torch.tensor([[0.5, 0.05, 0.9], [0.5, 0.5, 0.9], [0.5, 0.0, 0.0]])
    out = ConditionCases(first_clip=0.1, first_clip_motion="zeros").motion_inputs(inputs, {"uniform": uniform})
    assert out["zero_motion"].tolist() == [True, False, True]
    assert torch.equal(out["reference_latents"][0], inputs["motion_latents"][0, -1])
    assert "zero_motion" not in ConditionCases(first_clip=0.1).motion_inputs(inputs, {"uniform": uniform})


def test_motion_noise_reaches_continuing_frames_only_at_the_drawn_level():
    inputs = _video_inputs()
    del inputs["motion_round_trip"]
    randomness = {"uniform": torch.tensor([[0.5, 0.0, 1.0], [0.5, 0.9, 1.0], [0.5, 0.9, 0.25]]),
                  "motion_noise": torch.ones(3, 2, 4, 8, 8)}
    out = ConditionCases(first_clip=0.1, motion_noise=0.2).motion_inputs(inputs, randomness)
    offset = out["motion_latents"] - torch.where(randomness["uniform"][:, MOTION, None, None, None, None] < 0.1,
                                                 inputs["motion_latents"][:, -1:], inputs["motion_latents"])
    assert offset[0].abs().max() == 0  # a first clip's motion frames are the clean reference
    torch.testing.assert_close(offset[1], torch.full_like(offset[1], 0.2))
    torch.testing.assert_close(offset[2], torch.full_like(offset[2], 0.2 * randomness["uniform"][2, MOTION_NOISE]))


def test_image_samples_have_no_motion_case():
    inputs = {"reference_latents": torch.randn(1, 4, 8, 8), "motion_latents": None}
    assert ConditionCases(first_clip=1.0).motion_inputs(inputs, {"uniform": torch.zeros(1, 3)}) is inputs


def test_train_command_defaults_are_the_train_options_defaults():
    args = build_parser().parse_args(["train", "--stage", "2", "--data", "d", "--out", "o"])
    for field in dataclasses.fields(TrainOptions):
        if hasattr(args, field.name):
            assert getattr(args, field.name) == field.default, field.name
    assert {"drop_both", "first_clip", "motion_noise", "motion_round_trip"} <= set(vars(args))


def _clip_inputs():
    g = torch.Generator().manual_seed(1)
    return dict(latents=torch.randn(1, 4, 4, 8, 8, generator=g), reference=torch.randn(1, 4, 8, 8, generator=g),
                face=torch.rand(1, 1, 64, 64, generator=g).round(), audio=torch.randn(1, 4, 5, 2, 32, generator=g),
                motion=torch.randn(1, 2, 4, 8, 8, generator=g))


@torch.no_grad()
def test_training_cases_see_exactly_the_conditions_of_the_inference_passes_they_train():
    """The unconditional case and the first clip without motion context are the conditions render_clips
    builds (guidance_batch, zero_motion), not look-alikes."""
    model, x, t = build_tiny_pipeline().model.eval(), _clip_inputs(), torch.tensor([500])
    denoiser = StageDenoiser(model, get_stage(2))
    cond = ClipCondition(reference=model.encode_reference(x["reference"]), motion=model.encode_motion(x["motion"]),
                         audio_tokens=model.encode_audio(x["audio"]), face=model.encode_face(x["face"]))
    for drops in (frozenset({"reference", "audio"}), frozenset({"audio", "face"})):
        trained = denoiser(x["latents"], t, x["reference"], x["face"], audio_windows=x["audio"],
                           motion_latents=x["motion"], dropped={name: torch.tensor([True]) for name in drops})
        inference = model.denoise(x["latents"], t, model.guidance_batch(cond, [drops]))
        torch.testing.assert_close(trained, inference, rtol=0, atol=0)
    first_clip = denoiser(x["latents"], t, x["reference"], x["face"], audio_windows=x["audio"],
                          motion_latents=x["motion"], zero_motion=torch.tensor([True]))
    no_context = replace(cond, motion=model.zero_motion(1, 8, 8, frames=2))
    torch.testing.assert_close(first_clip, model.denoise(x["latents"], t, no_context), rtol=0, atol=0)
