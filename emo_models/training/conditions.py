"""What one training sample is conditioned on: its guidance-dropout case and its motion frames.

Classifier-free guidance contrasts the full prediction with one made on fewer conditions: ``uncond``
(no reference, no audio) for the single guidance scale, and ``reference`` (no audio) as well when the
reference and audio scales differ. Each sample falls in exactly one case, drawn from one uniform:

======================  ===================  ===================================================
case                    probability          the inference pass it trains
======================  ===================  ===================================================
no reference, no audio  ``drop_both``        the unconditional pass of every guided generation
reference, no audio     ``drop_audio``       the middle pass of separate reference/audio scales
no reference, audio     ``drop_reference``   none (a regulariser only; 0 by default)
both                    the rest             the conditional pass
======================  ===================  ===================================================

Independent 5% draws (the open EMO-family trainers) would train the unconditional case on 0.25% of
samples, the one every guided step extrapolates from. Stage 1 has no audio: there the first and third
cases both mean "no reference".

Motion frames (stages 2 and 3), from a second uniform:

- with probability ``first_clip`` the sample is a video's *first* clip as every entry point makes it:
  the reference is the frame just before the targets and the n motion frames are that reference
  repeated (the checkpoint's default first-clip policy, as Hallo does);
- otherwise it continues a video: the n real frames before the targets, through the VAE and back when
  ``round_trip`` was given to :func:`.train_batch.encode_batch` (generation feeds the previous clip's
  decoded frames re-encoded), plus Gaussian noise of a level drawn uniformly up to ``motion_noise``
  (latent units; the latents have unit variance), so the model learns to take identity from the
  reference rather than copy its own errors forward from clip to clip (drift).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CONDITION, MOTION, MOTION_NOISE = 0, 1, 2  # columns of sample_randomness()["uniform"]
UNIFORMS = 3


@dataclass(frozen=True)
class ConditionCases:
    """Probabilities of the guidance-dropout cases and the motion-frame cases (see the module notes)."""

    drop_reference: float = 0.0
    drop_audio: float = 0.05
    drop_both: float = 0.05
    first_clip: float = 0.1
    motion_noise: float = 0.0

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

    @property
    def drops_reference(self) -> bool:
        """Whether any sample trains without the reference."""
        return self.drop_reference + self.drop_both > 0

    def keep(self, uniform: torch.Tensor, audio: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """uniform (b,) -> keep_reference, keep_audio: (b,) bool each, None where nothing is ever dropped."""
        no_audio = self.drop_both + self.drop_audio  # [0, drop_both): neither; then the reference alone
        keep_audio = uniform >= no_audio
        keep_reference = (uniform >= self.drop_both) & ~(keep_audio & (uniform < no_audio + self.drop_reference))
        return (keep_reference if self.drops_reference else None,
                keep_audio if audio and no_audio > 0 else None)

    def motion_inputs(self, inputs: dict, randomness: dict) -> dict:
        """inputs with each sample's motion case applied to reference_latents (b, 4, h, w) and motion_latents
        (b, n, 4, h, w); ``motion_round_trip`` (b, n, 4, h, w), when present, replaces continuing frames."""
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
        return {**inputs, "reference_latents": reference, "motion_latents": motion}
