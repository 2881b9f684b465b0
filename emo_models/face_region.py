"""Where the face is and where it may move: boxes, masks, the portrait's fit, the face-locator mask.

One owner for each decision every entry point (``generate``, ``demo``, ``prepare``, the nodes) makes:
- :func:`parse_box`: the one box grammar, ``x0,y0,x1,y1`` as fractions of the image (all values <= 1)
  or as pixels (x1/y1 exclusive), or ``auto`` / empty for "detect";
- :func:`box_mask` (box -> mask) and :func:`mask_box` (mask -> box);
- :class:`PortraitFit`: the crop/scale/pad that brought a portrait to the model's frame, applied the
  same way to masks drawn on the portrait;
- :func:`frame_portrait`: a portrait fitted to the frame, with its face found (given or detected);
- :func:`locator_mask`: the face-locator mask the model always gets: a given mask, else the given face
  box, else the detected face grown by the checkpoint's ``face_expand``, else the checkpoint's default
  ``face_box`` (with a warning when a face was looked for and not found).
Boxes are ``(x0, y0, x1, y1)`` float pixels; masks ``(B, 1, H, W)`` in [0, 1]. Importing this module is
cheap (media I/O is imported when a portrait is fitted), so the ComfyUI nodes read its tables at import.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .face_detect import expand_box
from .preset import GenerationPreset
from .validation import InputError, check_face_mask

Box = tuple[float, float, float, float]
CROP_MODES = ("center", "face", "pad", "stretch")  # "face": a centre crop around the face
FACE_CROP_EXPAND = 2.5  # the "face" crop spans the face box grown by this (head and shoulders)
log = logging.getLogger("emo_models")


@dataclass(frozen=True)
class FaceBox:
    """A parsed face box: ``values`` as fractions of the image (``fractions``) or as pixels."""

    values: Box
    fractions: bool

    def pixels(self, width: int, height: int) -> Box:
        """The box in the pixels of a width x height image, clipped to it."""
        x0, y0, x1, y1 = self.values
        if self.fractions:
            x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        if x0 >= width or y0 >= height:
            raise InputError(f"face box {self}: its top-left corner lies outside the {width}x{height} image; "
                             "give a box inside the image, as fractions (0.25,0.1,0.75,0.6) or pixels")
        return max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in self.values)


def parse_box(text: str | None, name: str = "face box") -> FaceBox | None:
    """``"x0,y0,x1,y1"`` (fractions if all <= 1, else pixels) -> :class:`FaceBox`; ``""``/``"auto"`` -> None.

    ``name`` is the option or input the text came from, for the error message.
    """
    if text is None or not str(text).strip() or str(text).strip().lower() == "auto":
        return None
    try:
        values = tuple(float(v) for v in str(text).replace(";", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{name}: {text!r}; give four numbers x0,y0,x1,y1 as fractions of the image "
                         "(0.25,0.1,0.75,0.6) or pixels (128,50,384,300), or 'auto' to detect the face")
    x0, y0, x1, y1 = values
    if not (x0 < x1 and y0 < y1) or min(values) < 0:
        raise InputError(f"{name}: {text!r} is not a box; give x0 < x1 and y0 < y1, none negative")
    return FaceBox(values, fractions=max(values) <= 1.0)


def box_mask(box: Box, height: int, width: int) -> torch.Tensor:
    """A (1, 1, height, width) mask that is 1 inside the pixel box (x0, y0, x1, y1), clamped to the image."""
    x0, y0, x1, y1 = box
    mask = torch.zeros(1, 1, height, width)
    xa, xb = max(0, int(round(x0))), min(width, int(round(x1)))
    ya, yb = max(0, int(round(y0))), min(height, int(round(y1)))
    if xb <= xa or yb <= ya:
        raise InputError(f"face box {box}: empty inside a {width}x{height} image; give x0 < x1 and y0 < y1 in pixels")
    mask[..., ya:yb, xa:xb] = 1.0
    return mask


def mask_box(mask: torch.Tensor, name: str = "mask") -> Box:
    """Pixel bounding box (x0, y0, x1, y1) of a mask's region above 0.5; mask: (H, W) or (..., H, W)
    (the union over leading dimensions)."""
    region = (mask.reshape(-1, *mask.shape[-2:]) > 0.5).any(dim=0)
    ys, xs = torch.nonzero(region, as_tuple=True)
    if ys.numel() == 0:
        raise InputError(f"{name}: the mask is empty (nothing above 0.5); paint the face region")
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def detect_face(image: torch.Tensor) -> Box | None:
    """The largest face's pixel box in a (1, 3, H, W) / (3, H, W) image, or None (no face, or no detector:
    then a warning says which package to install)."""
    from .face_detect import detect_face_box

    try:
        box = detect_face_box(image[0] if image.ndim == 4 else image)
    except ImportError as err:
        log.warning("face detection unavailable: %s", err)
        return None
    return None if box is None else tuple(box)


@dataclass(frozen=True)
class PortraitFit:
    """How a portrait of ``source_size`` (H, W) was fitted to the frame ``size`` (H, W): fit_image's
    ``mode`` and crop ``box``. Masks drawn on the portrait go through the same fit with :meth:`mask`."""

    source_size: tuple[int, int]
    size: tuple[int, int]
    mode: str = "center"
    box: Box | None = None

    def image(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, *source_size) in [0, 1] -> (B, 3, *size)."""
        from .media import fit_image

        return fit_image(image, self.size[1], self.size[0], mode=self.mode, box=self.box)

    def mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Masks (B, 1, h, w) or (B, h, w) on the portrait -> their union (1, 1, *size) on the frame.

        A mask of another size than the portrait is first resized to it; outside the portrait (padding) is 0.
        """
        from .media import fit_geometry

        union = (mask if mask.ndim == 4 else mask[:, None]).float().amax(dim=0, keepdim=True).clamp(0, 1)
        if tuple(union.shape[-2:]) != self.source_size:
            union = F.interpolate(union, size=self.source_size, mode="bilinear", align_corners=False)
        (x0, y0, x1, y1), (left, top, right, bottom) = fit_geometry(self.source_size, self.size[1], self.size[0],
                                                                    self.mode, self.box)
        inner = union[..., y0:y1, x0:x1]
        if tuple(inner.shape[-2:]) != (bottom - top, right - left):
            inner = F.interpolate(inner, size=(bottom - top, right - left), mode="bilinear", align_corners=False,
                                  antialias=True)
        out = torch.zeros(1, 1, *self.size)
        out[..., top:bottom, left:right] = inner.clamp(0, 1)
        return out


@dataclass(frozen=True)
class Portrait:
    """A portrait fitted to the model's frame. image: (1, 3, H, W) in [0, 1]; face: its face box in the
    original image's pixels, as given (``face_given``) or detected, or None when none was found."""

    image: torch.Tensor
    fit: PortraitFit
    face: Box | None = None
    face_given: bool = False


def frame_portrait(image: torch.Tensor, width: int, height: int, *, crop: str = "center",
                   face_box: FaceBox | Box | None = None, detect: bool = True,
                   crop_expand: float = FACE_CROP_EXPAND) -> Portrait:
    """Fit a portrait (1, 3, h, w) in [0, 1] to width x height and find its face.

    crop: ``center`` (the middle), ``face`` (centred on the face box grown by ``crop_expand``), ``pad``
    (all of it, borders padded) or ``stretch``. face_box: the face, given (a :class:`FaceBox` or a pixel
    box); else it is detected when ``detect``. ``face`` crop without a face is an error saying what to give.
    """
    if crop not in CROP_MODES:
        raise InputError(f"crop: {crop!r}; choose one of {', '.join(CROP_MODES)}")
    source_h, source_w = (int(v) for v in image.shape[-2:])
    given = face_box is not None
    if isinstance(face_box, FaceBox):
        face = face_box.pixels(source_w, source_h)
    elif given:
        face = tuple(float(v) for v in face_box)
    else:
        face = detect_face(image) if detect or crop == "face" else None
    box = None
    if crop == "face":
        if face is None:
            raise InputError(f"image: no face found in the {source_w}x{source_h} image; give the face region "
                             "(--face-box, or a mask in ComfyUI) or crop 'center' or 'pad'")
        box = expand_box(face, crop_expand, source_w, source_h)
    mode = "center" if crop == "face" else crop
    fit = PortraitFit((source_h, source_w), (int(height), int(width)), mode, box)
    return Portrait(fit.image(image), fit, face, given)


def default_region(preset: GenerationPreset, height: int, width: int) -> torch.Tensor:
    """The checkpoint's default face region (``preset.face_box``, fractions) as a (1, 1, height, width) mask."""
    return box_mask(FaceBox(preset.face_box, fractions=True).pixels(width, height), height, width)


def face_region_box(face: Box | None, preset: GenerationPreset, width: int, height: int, *, given: bool = False,
                    expand: float | None = None) -> Box | None:
    """Where the face may move on a width x height image, in pixels: a given face box as it is, a detected
    one grown by ``expand`` (default ``preset.face_expand``); None when there is no face (the caller then
    uses the checkpoint's default region, :func:`default_region`, after :func:`warn_default_region`)."""
    if face is None:
        return None
    return tuple(face) if given else expand_box(face, expand or preset.face_expand, width, height)


def warn_default_region(preset: GenerationPreset, width: int, height: int) -> None:
    """Say that no face was found and the checkpoint's default region is used (when it expects faces found)."""
    if preset.detect_face:
        region = ",".join(f"{v:g}" for v in preset.face_box)
        log.warning("no face found in the %dx%d portrait; using the checkpoint's default face region %s "
                    "(fractions of the frame). Give a face box or mask to place it.", width, height, region)


def locator_mask(portrait: Portrait, preset: GenerationPreset, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The face-locator mask (1, 1, H, W) of a portrait: where its face may move.

    mask (B, 1, h, w) drawn on the original image, if given; else the portrait's face box as given, or
    as detected grown by ``preset.face_expand`` (:func:`face_region_box`); else the checkpoint's default
    ``preset.face_box``, with a warning when the checkpoint expects faces to be detected.
    """
    if mask is not None:
        return portrait.fit.mask(check_face_mask(mask, *portrait.fit.source_size))
    height, width = portrait.fit.source_size
    region = face_region_box(portrait.face, preset, width, height, given=portrait.face_given)
    if region is not None:
        return portrait.fit.mask(box_mask(region, height, width))
    warn_default_region(preset, width, height)
    return default_region(preset, *portrait.fit.size)
