"""Classifier-free guidance: which backbone passes a step needs, and how their predictions combine.

Three nested conditions: *unconditional* (the checkpoint's ``uncond_drops`` removed: EMO drops the
reference and the audio), *reference* (only the audio removed) and *full*. With a reference scale
s_ref and an audio scale s_audio,

    eps = eps_uncond + s_ref * (eps_reference - eps_uncond) + s_audio * (eps_full - eps_reference)

One scale (s_ref = s_audio = s) reduces to ``eps_uncond + s * (eps_full - eps_uncond)``: two backbone
passes per step, the default. s_ref = 1 reduces to ``eps_reference + s_audio * (eps_full -
eps_reference)``: also two. Any other pair costs a third pass; both 1 is a single unguided pass. What
each branch removes is built in one place, :meth:`~emo_models.model.EMOModel.guidance_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .options import check_option


@dataclass(frozen=True)
class Guidance:
    """Guidance scales: one ``scale``, or separate ``reference`` / ``audio`` scales (None: equal to ``scale``)."""

    scale: float = 3.5
    reference: float | None = None
    audio: float | None = None

    def __post_init__(self):
        for name in ("scale", "reference", "audio"):
            if getattr(self, name) is not None:
                check_option("cfg" if name == "scale" else f"cfg_{name}", getattr(self, name))

    @property
    def scales(self) -> tuple[float, float]:
        """(s_ref, s_audio) after defaulting each to ``scale``."""
        pick = lambda s: float(self.scale if s is None else s)  # noqa: E731
        return pick(self.reference), pick(self.audio)

    def branches(self, uncond_drops: tuple[str, ...]) -> tuple[tuple[str, frozenset[str]], ...]:
        """The passes a step needs: (name, conditions that branch removes), in batch order.

        Names are ``uncond`` (removes ``uncond_drops``), ``reference`` (removes them but the reference)
        and ``full`` (removes nothing).
        """
        s_ref, s_audio = self.scales
        drops = frozenset(uncond_drops)
        if s_ref == s_audio == 1.0:
            return (("full", frozenset()),)
        if s_ref == s_audio:
            return (("uncond", drops), ("full", frozenset()))
        if "reference" not in drops:
            raise ValueError(f"cfg_reference: {s_ref:g} differs from cfg_audio {s_audio:g}, but this checkpoint's "
                             "unconditional branch keeps the reference; give one guidance scale (cfg)")
        reference = ("reference", drops - {"reference"})
        if s_ref == 1.0:
            return (reference, ("full", frozenset()))
        return (("uncond", drops), reference, ("full", frozenset()))

    def combine(self, eps: dict[str, torch.Tensor]) -> torch.Tensor:
        """The guided prediction from the branches' predictions (name -> tensor, any one shape)."""
        s_ref, s_audio = self.scales
        if set(eps) == {"full"}:
            return eps["full"]
        if "reference" not in eps:
            return eps["uncond"] + s_audio * (eps["full"] - eps["uncond"])
        out = eps["reference"] + s_audio * (eps["full"] - eps["reference"])
        if "uncond" in eps:
            out = out + (s_ref - 1.0) * (eps["reference"] - eps["uncond"])
        return out
