"""Encode Reference and Face Locator Mask: the portrait, fitted and encoded once; where its face may move."""

from __future__ import annotations

import torch

from . import comfy_bridge
from .boundary import frames_to_image, image_to_model, mask_to_model
from .types import EncodedReference

CROPS = ("center", "face", "pad")
Box = tuple[float, float, float, float]


def detect_face(picture: torch.Tensor, input_name: str, remedy: str) -> Box:
    """The largest face's pixel box in (3, H, W); no face is an error naming the input and the remedy."""
    from emo_models.face_detect import detect_face_box

    box = detect_face_box(picture)
    if box is None:
        raise ValueError(f"{input_name}: no face found in the {picture.shape[-1]}x{picture.shape[-2]} image; "
                         f"{remedy}")
    return tuple(box)


def grow(box: Box, factor: float, width: int, height: int) -> Box:
    """The box scaled by ``factor`` about its centre, kept inside the image."""
    from emo_models.face_detect import expand_box

    return tuple(expand_box(box, factor, width, height))


def mask_box(mask: torch.Tensor, input_name: str) -> Box:
    """Pixel bounding box (x0, y0, x1, y1) of a (1, 1, H, W) mask's region above 0.5."""
    ys, xs = torch.nonzero(mask[0, 0] > 0.5, as_tuple=True)
    if ys.numel() == 0:
        raise ValueError(f"{input_name}: the mask is empty (nothing above 0.5); paint the face region")
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def parse_box(text: str, width: int, height: int) -> Box:
    """"x0,y0,x1,y1" as fractions of the image (all values <= 1) or as pixels -> a pixel box."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.replace(";", ",").split(","))
    except ValueError:
        raise ValueError(f"box: {text!r}; give four numbers x0,y0,x1,y1 as fractions (0.25,0.1,0.75,0.6) or "
                         "pixels (128,50,384,300)") from None
    if max(x0, y0, x1, y1) <= 1.0:
        x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
    if not (x0 < x1 and y0 < y1) or min(x0, y0) < 0 or x0 >= width or y0 >= height:
        raise ValueError(f"box: {text!r} is not a box inside the {width}x{height} image; "
                         "give x0 < x1 and y0 < y1, left/top corner inside the image")
    return x0, y0, min(x1, width), min(y1, height)


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
                     "the detected face (or the mask's region); pad: keep everything, pad the borders."}),
            "face_expand": ("FLOAT", {"default": 2.5, "min": 1.0, "max": 8.0, "step": 0.1, "tooltip": "Face crop "
                            "only: the crop spans the face box grown by this factor (head and shoulders ~2.5)."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Face crop only: use this region instead of detecting the face."}),
        }}

    def encode(self, emo_model, image, crop, face_expand, mask=None):
        from emo_models.media import fit_image

        if crop not in CROPS:
            raise ValueError(f"crop: {crop!r}; choose one of {', '.join(CROPS)}")
        picture = image_to_model(image, "image")[:1]
        height, width = picture.shape[-2:]
        box = None
        if crop == "face":
            remedy = "use crop center or pad, or connect a mask of the face"
            if mask is None:
                face = detect_face(picture[0], "image", remedy)
            else:
                face = mask_box(torch.nn.functional.interpolate(mask_to_model(mask)[:1], size=(height, width)), "mask")
            box = grow(face, face_expand, width, height)
        mode = "pad" if crop == "pad" else "center"
        fitted = fit_image(picture, *emo_model.size, mode=mode, box=box)
        encoding = emo_model.loaded().encode_reference(fitted)
        reference = EncodedReference(encoding, (int(height), int(width)), mode, box)
        return reference.to(comfy_bridge.intermediate_device(), torch.float32), frames_to_image(fitted)


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
            "expand": ("FLOAT", {"default": 1.5, "min": 1.0, "max": 4.0, "step": 0.05, "tooltip": "Grow the "
                       "detected face box by this factor: room for head motion."}),
        }, "optional": {
            "mask": ("MASK", {"tooltip": "Use this mask as the face region (wins over box and detection)."}),
            "box": ("STRING", {"default": "", "tooltip": "Manual face box x0,y0,x1,y1: fractions of the image "
                    "(all <= 1) or pixels. Empty: detect the face."}),
        }}

    def build(self, image, expand, mask=None, box=""):
        from emo_models.face_locator import box_mask

        pictures = image_to_model(image, "image")
        height, width = pictures.shape[-2:]
        if mask is not None:
            region = mask_to_model(mask).amax(dim=0, keepdim=True)
            if tuple(region.shape[-2:]) != (height, width):
                region = torch.nn.functional.interpolate(region, size=(height, width), mode="bilinear")
            return (region[:, 0].to(comfy_bridge.intermediate_device()),)
        if box and box.strip():
            boxes = [parse_box(box, width, height)]
        else:
            remedy = "connect a mask or set a manual box (x0,y0,x1,y1)"
            boxes = [grow(detect_face(p, "image", remedy), expand, width, height) for p in pictures]
        union = torch.stack([box_mask(b, height, width) for b in boxes]).amax(dim=0)
        return (union[:, 0].to(comfy_bridge.intermediate_device()),)
