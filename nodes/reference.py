"""Encode Reference and Face Locator Mask: the portrait, fitted and encoded once; where its face may move."""

from __future__ import annotations

import torch

from emo_models.face_region import CROP_MODES
from emo_models.validation import check_face_mask

from . import comfy_bridge
from .boundary import frames_to_image, image_to_model, mask_to_model
from .types import EncodedReference

CROPS = CROP_MODES


def _mask_on(mask, height: int, width: int) -> torch.Tensor:
    """A MASK input as (1, 1, height, width): the union of its batch, resized to the image (same aspect only)."""
    region = check_face_mask(mask_to_model(mask), height, width, "mask").amax(dim=0, keepdim=True)
    if tuple(region.shape[-2:]) != (height, width):
        region = torch.nn.functional.interpolate(region, size=(height, width), mode="bilinear")
    return region


class EncodeReference:
    """EMO_REFERENCE: the portrait fitted to the model's size, VAE-encoded, run once through the ReferenceNet."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("EMO_REFERENCE", "IMAGE")
    RETURN_NAMES = ("reference", "fitted_image")
    OUTPUT_TOOLTIPS = ("The encoded reference for EMO Sampler.", "The portrait as the model sees it.")
    FUNCTION = "encode"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "emo_model": ("EMO_MODEL",),
            "image": ("IMAGE", {"tooltip": "The portrait (the first image of a batch is used)."}),
            "crop": (list(CROPS), {"default": "center", "tooltip": "center: crop the middle; face: crop around "
                     "the detected face (or the mask's region); pad: keep everything, pad the borders; stretch: "
                     "ignore the aspect ratio."}),
            "face_expand": ("FLOAT", {"default": 2.5, "min": 1.0, "max": 8.0, "step": 0.1, "tooltip": "Face crop "
                            "only: the crop spans the face box grown by this factor (head and shoulders ~2.5)."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "The face region, instead of detecting it: centres the face crop, and is "
                     "the sampler's face region when its face_mask is not connected."}),
        }}

    def encode(self, emo_model, image, crop, face_expand, mask=None):
        from emo_models.face_region import frame_portrait, mask_box
        from emo_models.portrait_inputs import encode_portrait

        if crop not in CROPS:
            raise ValueError(f"crop: {crop!r}; choose one of {', '.join(CROPS)}")
        picture = image_to_model(image, "image")[:1]
        height, width = picture.shape[-2:]
        face = None if mask is None else mask_box(_mask_on(mask, height, width), "mask")
        pipeline = emo_model.loaded()
        portrait = frame_portrait(picture, *emo_model.size, crop=crop, face_box=face, crop_expand=face_expand,
                                  detect=pipeline.config.generation.detect_face)
        reference = EncodedReference(encode_portrait(pipeline, portrait), portrait)
        return reference.to(comfy_bridge.intermediate_device(), torch.float32), frames_to_image(portrait.image)


class FaceLocatorMask:
    """MASK of where the face may move: a given mask, a manual box, or the detected face box grown by expand."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("face_mask",)
    FUNCTION = "build"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The portrait (the same image Encode Reference gets)."}),
            "expand": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 4.0, "step": 0.05, "tooltip": "Grow the "
                       "detected face box by this factor: room for head motion. 0 = from the checkpoint (its "
                       "face_expand; connect emo_model), 1.5 without one."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Use this mask as the face region (wins over box and detection)."}),
            "box": ("STRING", {"default": "", "tooltip": "Manual face box x0,y0,x1,y1: fractions of the image "
                    "(all <= 1) or pixels. Empty: detect the face (none found: the checkpoint's default face region, with a "
                    "warning)."}),
            "emo_model": ("EMO_MODEL", {"tooltip": "The model whose face_expand an expand of 0 uses."}),
        }}

    def build(self, image, expand, mask=None, box="", emo_model=None):
        from emo_models.face_region import (
            box_mask,
            default_region,
            detect_face,
            face_region_box,
            parse_box,
            warn_default_region,
        )
        from emo_models.preset import GenerationPreset

        pictures = image_to_model(image, "image")
        height, width = pictures.shape[-2:]
        if mask is not None:
            return (_mask_on(mask, height, width)[:, 0].to(comfy_bridge.intermediate_device()),)
        preset = emo_model.pipeline.config.generation if emo_model is not None else GenerationPreset()
        if expand and not expand >= 1:
            raise ValueError(f"expand: {expand}; give 1 or more (how much to grow the face box), or 0 for the "
                             "checkpoint's")
        given = parse_box(box, "box")
        regions = []
        for picture in pictures:
            face = given.pixels(width, height) if given is not None else detect_face(picture)
            region = face_region_box(face, preset, width, height, given=given is not None, expand=expand or None)
            if region is None:
                warn_default_region(preset, width, height)
                regions.append(default_region(preset, height, width))
            else:
                regions.append(box_mask(region, height, width))
        union = torch.cat(regions).amax(dim=0, keepdim=True)
        return (union[:, 0].to(comfy_bridge.intermediate_device()),)
