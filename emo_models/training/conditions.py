"""What one training sample is conditioned on: its guidance-dropout case and its motion frames.

Classifier-free guidance (:mod:`emo_models.guidance`) contrasts the full prediction with branches made on
fewer conditions: ``uncond`` (the checkpoint's ``generation.uncond_drops`` removed; EMO: the reference and
the audio) and, when the reference and audio scales differ, ``reference`` (the same without removing the
reference). Each sample trains exactly one case, drawn from one uniform, and removes its conditions with
the model's own :meth:`~emo_models.model.EMOModel.drop_conditions`, as inference builds the branches:

==================  ===================  =========================================================
case                probability          removes (trains the inference pass)
==================  ===================  =========================================================
unconditional       ``drop_both``        ``uncond_drops`` (the other pass of every guided step)
reference branch    ``drop_audio``       ``uncond_drops`` but the reference (the middle pass)
no reference        ``drop_reference``   the reference only (none; a regulariser, 0 by default)
full                the rest             nothing (the conditional pass)
==================  ===================  =========================================================

Independent 5% draws (the open EMO-family trainers) would train the unconditional case on 0.25% of
samples, the one every guided step extrapolates from. Stage 1 has no audio: there the reference branch
removes nothing the sample has.

Motion frames (stages 2 and 3), from a second uniform:

- with probability ``first_clip`` the sample is a video's *first* clip as every entry point makes it:
  the reference is the frame just before the targets, and the motion frames follow the checkpoint's
  ``generation.first_clip_motion``: that reference repeated n times (``reference``, as Hallo does) or
  no motion context at all (``zeros``);
- otherwise it continues a video: the n real frames before the targets, through the VAE and back when
  ``round_trip`` was given to :func:`.train_batch.encode_batch` (generation feeds the previous clip's
  decoded frames re-encoded), plus Gaussian noise of a level drawn uniformly up to ``motion_noise``
  (latent units; the latents have unit variance), so the model learns to take identity from the
  reference rather than copy its own errors forward from clip to clip (drift).

The face mask is always given (the dataset's face region), as every entry point gives one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..preset import FIRST_CLIP_MOTION, GenerationPreset

CONDITION, MOTION, MOTION_NOISE = 0, 1, 2  # columns of sample_randomness()["uniform"]
UNIFORMS = 3


@dataclass(frozen=True)
class ConditionCases:
    """Probabilities of the guidance-dropout cases and the motion-frame cases (see the module notes), with
    the checkpoint's ``uncond_drops`` and ``first_clip_motion`` (:class:`~emo_models.preset.GenerationPreset`)."""

    drop_reference: float = 0.0
    drop_audio: float = 0.05
    drop_both: float = 0.05
    first_clip: float = 0.1
    motion_noise: float = 0.0
    uncond_drops: tuple[str, ...] = GenerationPreset.uncond_drops
    first_clip_motion: str = GenerationPreset.first_clip_motion

    def __post_init__(self):
        for name in ("drop_reference", "drop_audio", "drop_both", "first_clip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: {getattr(self, name)}; give a probability in [0, 1]")
        if self.drop_reference + self.drop_audio + self.drop_both >= 1.0:
            raise ValueError(f"drop_reference + drop_audio + drop_both = "
                             f"{self.drop_reference + self.drop_audio + self.drop_both:g}: the cases are exclusive, "
                             f"so their sum must stay below 1 (some samples must keep every condition)")
        if not self.motion_noise >= 0.0:
            raise ValueError(f"motion_noise: {self.motion_noise}; give a noise level >= 0 (0: clean motion frames)")
        if self.first_clip_motion not in FIRST_CLIP_MOTION:
            raise ValueError(f"first_clip_motion: {self.first_clip_motion!r}; choose one of {', '.join(FIRST_CLIP_MOTION)}")

    @classmethod
    def for_preset(cls, preset: GenerationPreset, **probabilities) -> ConditionCases:
        """The cases a checkpoint with this generation preset is trained on (probabilities: the fields above)."""
        return cls(uncond_drops=tuple(preset.uncond_drops), first_clip_motion=preset.first_clip_motion,
                   **probabilities)

    def branches(self) -> tuple[tuple[float, frozenset[str]], ...]:
        """(probability, conditions removed) of each dropping case, in the order the uniform is cut."""
        uncond = frozenset(self.uncond_drops)
        return ((self.drop_both, uncond), (self.drop_audio, uncond - {"reference"}),
                (self.drop_reference, frozenset({"reference"})))

    @property
    def drops_reference(self) -> bool:
        """Whether any sample trains without the reference."""
        return any(p > 0 and "reference" in drops for p, drops in self.branches())

    def dropped(self, uniform: torch.Tensor, available: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """uniform (b,) -> condition name -> (b,) bool, True where that sample trains without it, for
        :meth:`~emo_models.model.EMOModel.drop_conditions`; only the ``available`` conditions that some
        case removes are named (empty: every sample keeps everything)."""
        out, low = {}, 0.0
        for probability, drops in self.branches():
            in_case = (uniform >= low) & (uniform < low + probability)
            for name in drops & set(available):
                if probability > 0:
                    out[name] = out.get(name, torch.zeros_like(in_case)) | in_case
            low += probability
        return out

    def motion_inputs(self, inputs: dict, randomness: dict) -> dict:
        """inputs with each sample's motion case applied to reference_latents (b, 4, h, w) and motion_latents
        (b, n, 4, h, w); ``motion_round_trip`` (b, n, 4, h, w), when present, replaces continuing frames.
        With ``first_clip_motion = "zeros"``, ``zero_motion`` (b,) bool marks the first-clip samples."""
        motion = inputs.get("motion_latents")
        if motion is None:
            return inputs
        device = motion.device
        uniform = randomness["uniform"].to(device)
        continued = inputs.get("motion_round_trip")
        continued = motion if continued is None else continued
        if self.motion_noise > 0:
            level = (uniform[:, MOTION_NOISE] * self.motion_noise).to(motion.dtype)
            continued = continued + level[:, None, None, None, None] * randomness["motion_noise"].to(device, motion.dtype)
        first = uniform[:, MOTION] < self.first_clip
        last = motion[:, -1]
        reference = torch.where(first[:, None, None, None], last, inputs["reference_latents"])
        motion = torch.where(first[:, None, None, None, None], last[:, None].expand_as(motion), continued)
        out = {**inputs, "reference_latents": reference, "motion_latents": motion}
        if self.first_clip_motion == "zeros":
            out["zero_motion"] = first
        return out
