"""All image, audio and video I/O of emo_models, free of ComfyUI.

Images live here: files are read as ``(1, 3, H, W)`` float32 in [0, 1], checked, and fitted to the
model's size; :func:`to_model_range` gives the [-1, 1] the models read. Audio (``media_audio``) and
video (``media_video``) are re-exported, so callers import everything from ``emo_models.media``.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .media_audio import (
    frame_count,
    load_audio,
    prepare_waveform,
    read_audio,
    resample,
    trim_audio,
)
from .media_video import (
    VIDEO_SUFFIXES,
    VideoWriter,
    check_video_output,
    h264_encoder,
    probe_video,
    read_video,
    write_video,
)
from .validation import SILENCE_PEAK, InputError, check_image

__all__ = [
    "load_image", "image_size", "check_image", "fit_image", "fit_geometry", "to_model_range", "from_model_range",
    "load_audio", "read_audio", "prepare_waveform", "trim_audio", "frame_count", "resample", "SILENCE_PEAK",
    "write_video", "VideoWriter", "check_video_output", "VIDEO_SUFFIXES", "read_video", "probe_video",
    "h264_encoder",
]  # fmt: skip

FIT_MODES = ("center", "pad", "stretch")
MAX_IMAGE_PIXELS = 160_000_000  # files above this are refused from their header, before decoding
MAX_IMAGE_SIDE = 4096  # larger images are reduced by a whole factor while decoding (a portrait needs less)
_REDUCIBLE_MODES = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "I", "F")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one, else Pillow's plain formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: fall back to the plain conversion
    return im.convert("RGB")


def _to_rgb(im: Image.Image, source_mode: str | None = None) -> np.ndarray:
    """Any Pillow image -> (H, W, 3) float32 in [0, 1]; transparency composited onto white.

    source_mode: the file's mode when ``im`` was converted for reducing (16-bit stays 16-bit)."""
    source_mode = source_mode or im.mode
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit integer or float grayscale
        gray = np.asarray(im, dtype=np.float32)
        peak = float(gray.max()) if gray.size else 0.0
        if source_mode.startswith("I;16") or (im.mode == "I" and peak > 255):
            scale = 65535.0
        elif im.mode == "F" and peak <= 1.0:
            scale = 1.0
        else:
            scale = 255.0
        return np.repeat(np.clip(gray / scale, 0.0, 1.0)[..., None], 3, axis=-1)
    if im.mode == "CMYK":
        im = _cmyk_to_rgb(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _decode_reduced(im: Image.Image, path: str) -> tuple[Image.Image, str]:
    """Decode ``im``; an image over :data:`MAX_IMAGE_SIDE` on its longest side is reduced by the smallest
    whole factor that fits while decoding (JPEG: in the DCT, never at full size; other formats: right
    after decoding, as 8/16-bit pixels, not float), with a warning saying so. Ctrl-C stops the decode.
    Returns the decoded image and the file's mode (which a conversion for reducing may have changed)."""
    width, height = im.size
    factor = math.ceil(max(width, height) / MAX_IMAGE_SIDE)
    if factor <= 1:
        im.load()
        return im, im.mode
    if im.format == "JPEG":
        im.draft(im.mode, (math.ceil(width / factor), math.ceil(height / factor)))
    im.load()
    info, mode = dict(im.info), im.mode
    if im.mode not in _REDUCIBLE_MODES:
        im = im.convert("I" if im.mode.startswith("I;16") else "RGBA" if _has_alpha(im) else "RGB")
    factor = math.ceil(max(im.size) / MAX_IMAGE_SIDE)
    reduced = im.reduce(factor) if factor > 1 else im
    reduced.info.update(info)  # keeps the EXIF orientation for exif_transpose
    warnings.warn(f"image: {path} is {width}x{height}; read at {reduced.width}x{reduced.height} (images are "
                  f"reduced while decoding to at most {MAX_IMAGE_SIDE} pixels on their longest side)", stacklevel=3)
    return reduced, mode


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as ``(1, 3, H, W)`` float32 RGB in [0, 1].

    Any format Pillow reads; EXIF orientation is applied; transparency (RGBA, LA, palette) is
    composited onto white; grayscale (8/16/32-bit, float) and CMYK become RGB; animated files give
    their first frame. Size bounds: a file whose header says more than :data:`MAX_IMAGE_PIXELS` is
    refused before decoding; one longer than :data:`MAX_IMAGE_SIDE` on a side is reduced by a whole
    factor while decoding (with a warning), so a 12000x12000 PNG is read as 4000x4000 in well under
    1 GB. :func:`image_size` gives the file's own size, to map pixel boxes onto the result.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(
            f"image: {path} does not exist or is not a file; give the path of a PNG or JPEG file"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own bound is below
            with Image.open(path) as im:
                _refuse_too_many_pixels(path, *im.size)
                decoded, mode = _decode_reduced(im, path)
                rgb = _to_rgb(ImageOps.exif_transpose(decoded), mode)
    except Image.DecompressionBombError as e:
        raise InputError(f"image: {path} is above the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels this reads ({e}); "
                         f"downscale it to at most {MAX_IMAGE_SIDE} pixels on its longest side") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"image: could not read {path} ({e}); give a PNG, JPEG or WebP file") from e
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].contiguous()


def _refuse_too_many_pixels(path: str, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"image: {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels), above the "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels this reads; downscale it to at most "
                         f"{MAX_IMAGE_SIDE} pixels on its longest side (a portrait needs no more)")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file as :func:`load_image` orients it (EXIF applied), from its
    header alone. ``load_image(path).shape[-1] / image_size(path)[0]`` is the decode's scale."""
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise InputError(f"image: could not read {path} ({e}); give a PNG, JPEG or WebP file") from e
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic, antialiased resize of (B, 3, h, w) to (B, 3, height, width), clamped to [0, 1]."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    x = F.interpolate(
        image.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )
    return x.clamp_(0.0, 1.0).to(image.dtype)


def _crop_box(w: int, h: int, aspect: float, box) -> tuple[int, int, int, int]:
    """Pixel crop (x0, y0, x1, y1) of the target aspect: the largest centred one, or one around ``box``."""
    if box is None:
        cx, cy, cw, ch = w / 2, h / 2, float(w), float(h)
    else:
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError) as e:
            raise InputError(f"box: expected 4 numbers (x0, y0, x1, y1) in pixels, got {box!r}") from e
        if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 <= x0 or y1 <= y0:
            raise InputError(f"box: {box!r} is not a box; expected x0 < x1 and y0 < y1 in pixels")
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise InputError(f"box: {box!r} lies outside the {w}x{h} image; give the face box in its pixels")
        cx, cy, cw, ch = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if cw / ch < aspect:  # grow the short side to reach the target aspect
        cw = ch * aspect
    else:
        ch = cw / aspect
    shrink = min(1.0, w / cw, h / ch)  # then fit inside the image
    cw = min(w, max(1, round(cw * shrink)))
    ch = min(h, max(1, round(ch * shrink)))
    left = min(max(0, round(cx - cw / 2)), w - cw)
    top = min(max(0, round(cy - ch / 2)), h - ch)
    return left, top, left + cw, top + ch


def _edge_mean(image: torch.Tensor) -> torch.Tensor:
    """Mean colour of the outermost rows and columns: (B, 3, H, W) -> (B, 3, 1, 1)."""
    edges = torch.cat([image[..., 0, :], image[..., -1, :], image[..., :, 0], image[..., :, -1]], dim=-1)
    return edges.mean(dim=-1)[..., None, None]


def fit_geometry(source_size: tuple[int, int], width: int, height: int, mode: str = "center",
                 box=None) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Where :func:`fit_image` takes its pixels and puts them: ``(crop, place)`` rectangles (x0, y0, x1, y1).

    source_size: (H, W) of the image; crop: the part of it that is kept, in its pixels; place: where that
    part lands in the width x height result (the whole frame, except the inner rectangle of ``pad``).
    """
    if int(width) < 1 or int(height) < 1:
        raise InputError(f"fit_image: target size {width}x{height} must be positive, e.g. 512x512")
    width, height = int(width), int(height)
    if mode not in FIT_MODES:
        raise InputError(f"fit_image: mode {mode!r} is not one of {FIT_MODES}")
    if box is not None and mode != "center":
        raise InputError(f"fit_image: a box crops, so it needs mode 'center', not {mode!r}")
    h, w = source_size
    frame = (0, 0, width, height)
    if mode == "stretch":
        return (0, 0, w, h), frame
    if mode == "center":
        return _crop_box(w, h, width / height, box), frame
    scale = min(width / w, height / h)
    inner_w, inner_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    top, left = (height - inner_h) // 2, (width - inner_w) // 2
    return (0, 0, w, h), (left, top, left + inner_w, top + inner_h)


def fit_image(
    image: torch.Tensor, width: int, height: int, mode: str = "center", box=None, fill: str = "edge"
) -> torch.Tensor:
    """Fit (B, 3, H, W) in [0, 1] to (B, 3, height, width).

    mode: "center" scales to cover and crops the middle; "pad" scales to fit and pads with the mean
    colour of the image's edges (``fill="edge"``) or white (``fill="white"``); "stretch" ignores the
    aspect ratio. box: (x0, y0, x1, y1) in pixels, e.g. a face detector's box grown by a margin,
    with mode "center": the crop is centred on the box, grown to the target aspect and kept inside
    the image (the "face" crop). Resizing is bicubic with antialiasing, deterministic on CPU.
    :func:`fit_geometry` gives the rectangles used.
    """
    check_image(image)
    if fill not in ("edge", "white"):
        raise InputError(f"fit_image: fill {fill!r} is not 'edge' or 'white'")
    (x0, y0, x1, y1), (left, top, right, bottom) = fit_geometry(tuple(image.shape[-2:]), width, height, mode, box)
    inner = _resize(image[:, :, y0:y1, x0:x1], bottom - top, right - left)
    if (right - left, bottom - top) == (int(width), int(height)):
        return inner
    colour = _edge_mean(image) if fill == "edge" else torch.ones_like(image[:, :, :1, :1])
    out = colour.expand(-1, -1, int(height), int(width)).clone()
    out[:, :, top:bottom, left:right] = inner
    return out


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range the VAE and models read. Any shape."""
    return x * 2.0 - 1.0


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (decoded images overshoot a little). Any shape."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)
