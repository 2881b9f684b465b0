"""What one denoising step reads: :class:`ClipCondition`, computed once per video or per clip."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .audio_modules import RegionMasks


@dataclass(frozen=True)
class ClipCondition:
    """Everything a denoising step reads, computed once per video or per clip (v videos).

    reference: attn1 name -> (v, hw, c), from :meth:`EMOModel.encode_reference`.
    motion: layer name -> (v, n, c, h, w) from :meth:`EMOModel.encode_motion`, or None (no context).
    audio_tokens: (v, f, K, D) or None (zeros: no audio). speed_tokens: (v, f, k, c_s) or None.
    face: (v, C0, h, w) face-locator residual or None. use_reference: (v,) bool or None (all True).
    temporal: run the temporal modules (False in stage-1 training on single frames).
    identity: (v, K_id, D) identity tokens for cross-attention (models with ``identity_tokens``).
    regions: full/face/lip masks weighting the audio modules (models with ``audio_modules``).
    sources: (v, 1+n, 4, h, w) the reference latent and the motion latents, for models whose ReferenceNet
    reads them in one pass per clip and guidance batch (``reference_pairing="alternating"``, Hallo):
    :meth:`EMOModel.guidance_batch` turns them into ``reference`` and ``motion``.
    """

    reference: dict[str, torch.Tensor] | None
    motion: dict[str, torch.Tensor] | None = None
    audio_tokens: torch.Tensor | None = None
    speed_tokens: torch.Tensor | None = None
    face: torch.Tensor | None = None
    use_reference: torch.Tensor | None = None
    temporal: bool = True
    identity: torch.Tensor | None = None
    regions: RegionMasks | None = None
    sources: torch.Tensor | None = None

    def select(self, index: torch.Tensor | slice) -> ClipCondition:
        """The condition of a subset of the v videos (e.g. one classifier-free-guidance branch)."""

        def pick(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v[index] for k, v in x.items()}
            return x[index]

        return replace(self, reference=pick(self.reference), motion=pick(self.motion),
                       audio_tokens=pick(self.audio_tokens), speed_tokens=pick(self.speed_tokens),
                       face=pick(self.face), use_reference=pick(self.use_reference),
                       identity=pick(self.identity), sources=pick(self.sources),
                       regions=None if self.regions is None else self.regions.select(index))

    def repeat(self, videos: int) -> ClipCondition:
        """The condition of one video (v = 1) for ``videos`` videos (expanded views, no copies)."""

        def grow(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: grow(v) for k, v in x.items()}
            return x.expand(videos, *x.shape[1:])

        return replace(self, reference=grow(self.reference), motion=grow(self.motion),
                       audio_tokens=grow(self.audio_tokens), speed_tokens=grow(self.speed_tokens),
                       face=grow(self.face), use_reference=grow(self.use_reference), identity=grow(self.identity),
                       sources=grow(self.sources),
                       regions=None if self.regions is None else self.regions.repeat(videos))
