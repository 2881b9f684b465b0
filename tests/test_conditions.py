"""Which conditions a training sample sees: guidance-dropout cases and motion-frame cases."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch

from emo_models.cli import build_parser
from emo_models.training.conditions import CONDITION, MOTION, MOTION_NOISE, ConditionCases
from emo_models.training.train import TrainOptions
from emo_models.training.train_batch import sample_randomness


def _case_shares(cases: ConditionCases, audio: bool, samples: int = 4000) -> dict[tuple, float]:
    """Share of samples per (keeps reference, keeps audio), over the draws training really makes."""
    uniform = sample_randomness(0, 1, list(range(samples)), (1,), 1000)["uniform"][:, CONDITION]
    keep_reference, keep_audio = cases.keep(uniform, audio)
    keep_reference = torch.ones(samples, dtype=torch.bool) if keep_reference is None else keep_reference
    keep_audio = torch.full((samples,), audio) if keep_audio is None else keep_audio
    counts = Counter(zip(keep_reference.tolist(), keep_audio.tolist()))
    return {case: count / samples for case, count in counts.items()}


def test_unconditional_case_is_trained_as_often_as_the_audio_dropped_case():
    shares = _case_shares(ConditionCases(), audio=True)
    assert shares[(False, False)] == pytest.approx(0.05, abs=0.01)  # independent 5% draws: 0.25%
    assert shares[(True, False)] == pytest.approx(0.05, abs=0.01)
    assert (False, True) not in shares  # no inference pass drops the reference alone (default 0)
    shares = _case_shares(ConditionCases(drop_both=0.1, drop_audio=0.1, drop_reference=0.1), audio=True)
    for case in [(False, False), (True, False), (False, True)]:
        assert shares[case] == pytest.approx(0.1, abs=0.015), case


def test_without_audio_both_reference_dropping_cases_drop_the_reference():
    keep_reference, keep_audio = ConditionCases(drop_both=0.1, drop_reference=0.2).keep(torch.rand(10), audio=False)
    assert keep_audio is None
    shares = _case_shares(ConditionCases(drop_both=0.1, drop_audio=0.1, drop_reference=0.2), audio=False)
    assert shares[(False, False)] == pytest.approx(0.3, abs=0.02)


def test_nothing_dropped_means_no_keep_masks():
    assert ConditionCases(drop_both=0.0, drop_audio=0.0).keep(torch.rand(4), audio=True) == (None, None)


def test_case_probabilities_must_leave_room_for_the_full_condition():
    with pytest.raises(ValueError, match="sum must stay below 1"):
        ConditionCases(drop_both=0.5, drop_audio=0.5)
    with pytest.raises(ValueError, match="first_clip: 1.5"):
        ConditionCases(first_clip=1.5)
    with pytest.raises(ValueError, match="motion_noise"):
        TrainOptions(motion_noise=-1.0)


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
