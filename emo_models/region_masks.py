"""Hallo's full/face/lip region masks and face-locator input, from a face box and a lip box.

Hallo (``hallo/utils/util.py get_mask`` + ``ImageProcessor``) draws each box as a 0/255 image at the
portrait's size, shrinks it to 64x64 (OpenCV bilinear), blurs it (Gaussian, 51 px for the face,
31 px for the lips, sigma from the kernel size), stretches it to 0..255; the ``full`` (pose) mask is
255 minus the face blur, ``face`` is face blur minus lip blur (saturating), ``lip`` is the lip blur.
Each is then resized per UNet depth to the latent size / 2^d (PIL bilinear, as torchvision's Resize
on an image) and scaled to [0, 1]. The face locator reads the plain face box at full size.

The boxes come from :mod:`emo_models.face_analysis` (``FaceAnalysis.regions``, grown as Hallo grows
them) or from the user; nothing here needs the face-analysis model files. OpenCV is used for the
64x64 steps so the rounding is OpenCV's, as in Hallo.
"""

from __future__ import annotations

import numpy as np
import torch

from .audio_modules import RegionMasks

Box = tuple[float, float, float, float]
BLUR_SIZE = 64
FACE_BLUR, LIP_BLUR = 51, 31


def box_image(box: Box, height: int, width: int) -> np.ndarray:
    """(height, width) uint8: 255 inside the whole-pixel box (x0, y0, x1, y1), x1/y1 exclusive."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box}: empty; give x0 < x1 and y0 < y1 in pixels of the {width}x{height} portrait")
    image = np.zeros((height, width), np.uint8)
    image[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 255
    return image


def blurred(mask: np.ndarray, kernel: int) -> np.ndarray:
    """Hallo's ``blur_mask``: 64x64 OpenCV bilinear, Gaussian blur, min-max stretch -> (64, 64) uint8."""
    cv2 = _opencv()
    small = cv2.GaussianBlur(cv2.resize(mask, (BLUR_SIZE, BLUR_SIZE)), (kernel, kernel), 0)
    return cv2.normalize(small, None, 0, 255, cv2.NORM_MINMAX)


def separated_masks(face_box: Box, lip_box: Box, height: int, width: int) -> dict[str, np.ndarray]:
    """The three 64x64 uint8 masks Hallo saves as ``*_sep_background/face/lip.png``: keys full, face, lip."""
    cv2 = _opencv()
    face = blurred(box_image(face_box, height, width), FACE_BLUR)
    lip = blurred(box_image(lip_box, height, width), LIP_BLUR)
    background = ((1.0 - face / 255.0) * 255).astype(np.uint8)
    return {"full": background, "face": cv2.subtract(face, lip), "lip": lip}


def depth_masks(mask: np.ndarray, latent_height: int, latent_width: int, depths: int) -> tuple[torch.Tensor, ...]:
    """A uint8 mask -> one (1, h_d·w_d) tensor in [0, 1] per depth d, h_d = latent_height / 2^d
    (PIL bilinear, the resize torchvision applies to Hallo's mask images)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(mask), "L")
    out = []
    for d in range(depths):
        size = (max(latent_width >> d, 1), max(latent_height >> d, 1))
        resized = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)
        out.append(torch.from_numpy(resized / np.float32(255)).reshape(1, -1))
    return tuple(out)


def region_masks(face_box: Box, lip_box: Box, height: int, width: int, depths: int = 4,
                 latent_scale: int = 8, weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> RegionMasks:
    """Hallo's audio-module masks for a ``height`` x ``width`` portrait from its face and lip boxes
    (pixels of that portrait, already grown: face x1.2, lips x2.0) -> RegionMasks with one video."""
    separated = separated_masks(face_box, lip_box, height, width)
    levels = {name: depth_masks(mask, height // latent_scale, width // latent_scale, depths)
              for name, mask in separated.items()}
    return RegionMasks(**levels, weights=tuple(float(w) for w in weights))


def face_region(face_box: Box, height: int, width: int, channels: int = 3) -> torch.Tensor:
    """The face locator's input: the face box as a (1, channels, height, width) mask in {0, 1}."""
    mask = torch.from_numpy(box_image(face_box, height, width)).float() / 255
    return mask.expand(1, channels, height, width).clone()


def _opencv():
    try:
        import cv2
    except ImportError as err:
        raise ImportError("region masks: OpenCV (cv2) is needed to blur Hallo's face/lip masks as Hallo does; "
                          "pip install opencv-python-headless") from err
    return cv2
