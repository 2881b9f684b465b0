"""What the model reads of a fitted portrait: its reference encoding with the face inputs the model needs,
and the face-locator region. Shared by ``animate`` (CLI, API) and the Encode Reference / sampler nodes.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .config import EMOConfig
from .face_region import Portrait, locator_mask
from .pipeline import EMOPipeline, ReferenceEncoding


@torch.no_grad()
def encode_portrait(pipeline: EMOPipeline, portrait: Portrait) -> ReferenceEncoding:
    """A fitted portrait -> its :class:`ReferenceEncoding` with the face inputs the model reads: none for
    EMO's; identity embedding, region masks and face-locator box for models with identity tokens (Hallo's,
    from the release's face-analysis files: :func:`emo_models.families.hallo.portrait_conditions`)."""
    if pipeline.model.identity_projection is None:
        return pipeline.encode_reference(portrait.image)
    from .families.hallo import portrait_conditions

    faces = portrait_conditions(pipeline, portrait.image)
    return replace(pipeline.encode_reference(portrait.image, faces.embedding, faces.regions), locator=faces.locator)


def face_locator_region(reference: ReferenceEncoding, portrait: Portrait, config: EMOConfig,
                        face_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The face-locator mask (1, 1, H, W): a given mask (drawn on the original image) wins; else the one found
    with the reference's face inputs (Hallo's); else :func:`~emo_models.face_region.locator_mask`'s policy."""
    if face_mask is None and reference.locator is not None:
        return reference.locator
    return locator_mask(portrait, config.generation, mask=face_mask)
