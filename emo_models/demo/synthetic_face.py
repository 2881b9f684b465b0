"""Procedural cartoon faces: a random identity and a renderer with mouth, blink and head pose.

The face is drawn with OpenCV's anti-aliased polygons at a supersampled size and shrunk with area
interpolation. Every feature is a polygon in face coordinates (u right, v down, in face half-widths;
the chin is at v = aspect) lifted onto a flattened ellipsoid, so head pose is a small 3-D rotation
followed by an orthographic projection: yaw slides the features sideways and narrows the face
outline, pitch slides them vertically, roll turns the whole face in the image plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

RGB = tuple[int, int, int]
HAIR_STYLES = ("short", "fringe", "side", "long", "bun", "bald")
SKIN_TONES: tuple[RGB, ...] = (
    (255, 229, 206),
    (250, 212, 182),
    (241, 194, 160),
    (234, 180, 140),
    (224, 168, 126),
    (208, 148, 108),
    (190, 130, 90),
    (160, 104, 68),
    (122, 80, 54),
    (92, 62, 44),
)
HAIR_COLOURS: tuple[RGB, ...] = (
    (22, 18, 16),
    (58, 38, 26),
    (106, 70, 40),
    (196, 158, 92),
    (150, 62, 30),
    (165, 165, 168),
    (232, 220, 190),
)
EYE_COLOURS: tuple[RGB, ...] = ((72, 46, 26), (58, 102, 160), (66, 118, 72), (112, 90, 56), (92, 102, 112))
MOUTH_INTERIOR: RGB = (48, 16, 22)
EYE_WHITE: RGB = (246, 244, 238)
LASH: RGB = (36, 26, 26)
_SUBPIXEL_BITS = 4
_FACE_DEPTH = 0.75  # depth of the face ellipsoid, in face half-widths


@dataclass(frozen=True)
class FaceIdentity:
    """Everything that makes one procedural person look like themselves, across all frames."""

    face_scale: float  # face half-width as a fraction of the image side
    face_aspect: float  # face half-height / half-width
    skin_rgb: RGB
    hair_rgb: RGB
    hair_style: str  # one of HAIR_STYLES
    eye_rgb: RGB
    background_rgb: RGB
    shirt_rgb: RGB
    eyebrow_thickness: float  # in face half-widths
    eye_spacing: float  # eye centre distance from the face midline, in face half-widths
    eye_size: float  # scale of the eyes (1 = average)
    mouth_width: float  # scale of the mouth (1 = average)
    nose_length: float  # scale of the nose (1 = average)


def _jitter(colour: RGB, rng: np.random.Generator, amount: int) -> RGB:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)  # type: ignore[return-value]


def _hsv_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> RGB:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0])  # type: ignore[return-value]


def _distance(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)))


def random_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw a random face: shape, skin, hair colour and style, eyes, background, shirt."""
    skin = _jitter(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], rng, 10)
    hair = _jitter(HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], rng, 12)
    background = _hsv_colour(rng, (0.15, 0.6), (0.6, 0.95))
    while _distance(background, skin) < 90 or _distance(background, hair) < 70:
        background = _hsv_colour(rng, (0.15, 0.6), (0.6, 0.95))
    return FaceIdentity(
        face_scale=float(rng.uniform(0.2, 0.25)),
        face_aspect=float(rng.uniform(1.14, 1.32)),
        skin_rgb=skin,
        hair_rgb=hair,
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        eye_rgb=_jitter(EYE_COLOURS[int(rng.integers(len(EYE_COLOURS)))], rng, 8),
        background_rgb=background,
        shirt_rgb=_hsv_colour(rng, (0.3, 0.8), (0.3, 0.85)),
        eyebrow_thickness=float(rng.uniform(0.035, 0.07)),
        eye_spacing=float(rng.uniform(0.36, 0.44)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        mouth_width=float(rng.uniform(0.85, 1.15)),
        nose_length=float(rng.uniform(0.85, 1.2)),
    )


def _shade(colour: RGB, factor: float, towards: RGB = (0, 0, 0)) -> RGB:
    return tuple(int(round(c * factor + t * (1 - factor))) for c, t in zip(colour, towards))  # type: ignore[return-value]


class _HeadProjection:
    """Face coordinates (u, v, depth) -> canvas pixels for one head pose."""

    def __init__(
        self,
        identity: FaceIdentity,
        canvas: int,
        yaw: float,
        pitch: float,
        roll: float,
        shift_xy: tuple[float, float],
    ):
        self.aspect = identity.face_aspect
        self.radius = identity.face_scale * canvas
        self.centre = np.array([(0.5 + shift_xy[0]) * canvas, (0.46 + shift_xy[1]) * canvas])
        y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
        self.cy, self.sy, self.cp, self.sp, self.cr, self.sr = (
            math.cos(y),
            math.sin(y),
            math.cos(p),
            math.sin(p),
            math.cos(r),
            math.sin(r),
        )

    def depth(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Height of the face surface above the outline plane at (u, v)."""
        return _FACE_DEPTH * np.sqrt(np.clip(1.0 - u**2 - (v / self.aspect) ** 2, 0.0, None))

    def __call__(self, uv: np.ndarray, z: np.ndarray | float | None = None) -> np.ndarray:
        """uv: (n, 2) face coordinates; z: depth (default: on the face surface) -> (n, 2) pixels."""
        u, v = uv[:, 0], uv[:, 1]
        z = self.depth(u, v) if z is None else np.broadcast_to(np.asarray(z, dtype=np.float64), u.shape)
        x = u * self.cy + z * self.sy
        z_turned = -u * self.sy + z * self.cy
        y = v * self.cp + z_turned * self.sp
        xr, yr = x * self.cr - y * self.sr, x * self.sr + y * self.cr
        return self.centre + self.radius * np.stack([xr, yr], axis=1)


def _ellipse(
    cu: float, cv: float, ru: float, rv: float, start: float = 0.0, stop: float = 360.0, n: int = 48
) -> np.ndarray:
    angles = np.radians(np.linspace(start, stop, n, endpoint=stop - start < 360.0))
    return np.stack([cu + ru * np.cos(angles), cv + rv * np.sin(angles)], axis=1)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)


def _fill(canvas: np.ndarray, points: np.ndarray, colour: RGB) -> None:
    cv2.fillPoly(canvas, [_fixed(points)], colour, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)


def _stroke(canvas: np.ndarray, points: np.ndarray, colour: RGB, width: float) -> None:
    thickness = max(1, int(round(width)))
    cv2.polylines(canvas, [_fixed(points)], False, colour, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)


def _hairline(style: str, aspect: float) -> np.ndarray:
    """Lower edge of the front hair across the forehead, from the right temple to the left."""
    u = np.linspace(0.97, -0.97, 41)
    if style == "fringe":
        v = -aspect * 0.34 + 0.03 * np.abs(np.sin(u * 14.0))
    elif style == "side":
        v = -aspect * (0.62 - 0.3 * ((0.97 - u) / 1.94) ** 1.5) + 0.25 * (np.abs(u) / 0.97) ** 6
    elif style == "long":
        v = -aspect * (0.66 - 0.42 * (np.abs(u) / 0.97) ** 0.8)
    else:
        v = -aspect * (0.62 - 0.5 * (np.abs(u) / 0.97) ** 2.5)
    return np.stack([u, v], axis=1)


def _draw_hair_back(canvas: np.ndarray, project: _HeadProjection, identity: FaceIdentity) -> None:
    a, colour = identity.face_aspect, _shade(identity.hair_rgb, 0.8)
    if identity.hair_style == "long":
        top = _ellipse(0.0, -0.05 * a, 1.22, 1.08 * a, 180.0, 360.0)
        sides = np.array([[1.3, 0.6 * a], [1.25, 1.55 * a], [-1.25, 1.55 * a], [-1.3, 0.6 * a]])
        _fill(canvas, project(np.concatenate([top, sides]), -0.3), colour)
    elif identity.hair_style == "bald":  # a fringe of hair above and behind the ears
        for side in (1.0, -1.0):
            _fill(canvas, project(_ellipse(side * 0.9, -0.05 * a, 0.16, 0.3 * a, n=24), -0.2), colour)
    else:
        _fill(canvas, project(_ellipse(0.0, -0.08 * a, 1.1, 1.06 * a), -0.3), colour)
    if identity.hair_style == "bun":
        _fill(canvas, project(_ellipse(0.0, -1.12 * a, 0.42, 0.36), -0.2), colour)


def _draw_hair_front(canvas: np.ndarray, project: _HeadProjection, identity: FaceIdentity) -> None:
    a = identity.face_aspect
    if identity.hair_style == "bald":
        return
    cap = _ellipse(0.0, -0.02 * a, 1.05, 1.07 * a, 175.0, 365.0)
    hairline = _hairline(identity.hair_style, a)
    edge = project(cap, 0.0)
    line = project(hairline, project.depth(hairline[:, 0], hairline[:, 1]) + 0.02)
    _fill(canvas, np.concatenate([edge, line]), identity.hair_rgb)


def _draw_eye(
    canvas: np.ndarray, project: _HeadProjection, identity: FaceIdentity, side: float, blink: float
) -> None:
    cu, cv, s = side * identity.eye_spacing, -0.14, identity.eye_size
    ru, rv = 0.16 * s, 0.095 * s
    openness = float(np.clip(1.0 - blink, 0.0, 1.0))
    width = 0.035 * project.radius
    if openness < 0.12:
        lid = _ellipse(cu, cv - 0.2 * rv, ru, 0.5 * rv, 180.0, 0.0, 24)  # closed: a lid line curving down
        _stroke(canvas, project(lid[::-1]), LASH, width)
        return
    top = _ellipse(cu, cv, ru, rv * openness, 180.0, 360.0, 24)
    bottom = _ellipse(cu, cv, ru, rv * (0.4 + 0.6 * openness), 0.0, 180.0, 24)
    _fill(canvas, project(np.concatenate([top, bottom])), EYE_WHITE)
    iris_r = 0.075 * s
    iris = _ellipse(cu, cv + 0.01, iris_r, min(iris_r, rv * openness), n=24)
    _fill(canvas, project(iris), identity.eye_rgb)
    pupil = _ellipse(cu, cv + 0.01, 0.4 * iris_r, min(0.4 * iris_r, 0.6 * rv * openness), n=16)
    _fill(canvas, project(pupil), (14, 10, 10))
    _stroke(canvas, project(top), LASH, width)


def _draw_mouth(
    canvas: np.ndarray, project: _HeadProjection, identity: FaceIdentity, mouth_open: float
) -> None:
    centre = 0.5 + 0.3 * (identity.face_aspect - 1.14)
    half_width = 0.3 * identity.mouth_width
    drop = 0.16 * float(np.clip(mouth_open, 0.0, 1.0))  # jaw drop, in face half-widths
    u = np.linspace(-half_width, half_width, 33)
    arc = np.sqrt(np.clip(1.0 - (u / half_width) ** 2, 0.0, None))
    upper = centre - 0.06 * arc + 0.02 * np.exp(-((u / 0.05) ** 2)) * arc  # cupid's bow
    lower = centre + (0.07 + 1.9 * drop) * arc
    lips = np.concatenate([np.stack([u, upper], 1), np.stack([u[::-1], lower[::-1]], 1)])
    lip = _shade(_shade(identity.skin_rgb, 0.72), 0.75, (200, 70, 80))
    _fill(canvas, project(lips), lip)
    inner_u = 0.85 * u
    inner_top = centre - 0.1 * drop * arc
    inner_bottom = centre + 1.9 * drop * arc
    inner = np.concatenate(
        [np.stack([inner_u, inner_top], 1), np.stack([inner_u[::-1], inner_bottom[::-1]], 1)]
    )
    if drop > 0.0:
        _fill(canvas, project(inner), MOUTH_INTERIOR)
    _stroke(
        canvas, project(np.stack([inner_u, inner_top + 0.004], 1)), MOUTH_INTERIOR, 0.025 * project.radius
    )


def _draw_nose(canvas: np.ndarray, project: _HeadProjection, identity: FaceIdentity) -> None:
    length = 0.3 * identity.nose_length
    tip = 0.02 + length
    ridge = np.array(
        [[0.0, 0.0], [0.05, tip - 0.05], [0.1, tip], [0.0, tip + 0.03], [-0.1, tip], [-0.05, tip - 0.05]]
    )
    lift = project.depth(ridge[:, 0], ridge[:, 1]) + np.array([0.02, 0.12, 0.1, 0.14, 0.1, 0.12])
    _fill(canvas, project(ridge, lift), _shade(identity.skin_rgb, 0.86))
    for side in (1.0, -1.0):
        nostril = _ellipse(side * 0.055, tip + 0.01, 0.03, 0.018, n=12)
        _fill(
            canvas,
            project(nostril, project.depth(nostril[:, 0], nostril[:, 1]) + 0.1),
            _shade(identity.skin_rgb, 0.5),
        )


def _supersampling(size: int) -> int:
    return max(1, math.ceil(256 / size))


def render_face(
    identity: FaceIdentity,
    size: int,
    mouth_open: float = 0.0,
    head_yaw_deg: float = 0.0,
    head_pitch_deg: float = 0.0,
    head_roll_deg: float = 0.0,
    head_shift_xy: tuple[float, float] = (0.0, 0.0),
    blink: float = 0.0,
) -> np.ndarray:
    """Draw one frame of a procedural portrait.

    mouth_open in [0, 1] (0 closed lips, 1 wide open); head angles in degrees (yaw turns, pitch
    nods down for positive values, roll tilts); head_shift_xy as fractions of the image side;
    blink in [0, 1] (1 = eyes shut). Returns (size, size, 3) uint8 RGB.
    """
    if size < 16:
        raise ValueError(f"size: got {size}; faces need at least 16x16 pixels")
    scale = _supersampling(size)
    side = size * scale
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = identity.background_rgb
    project = _HeadProjection(identity, side, head_yaw_deg, head_pitch_deg, head_roll_deg, head_shift_xy)
    a, skin = identity.face_aspect, identity.skin_rgb
    _draw_hair_back(canvas, project, identity)
    body_shift = project.centre - np.array([0.5 * side, 0.46 * side])
    shoulders = np.array([0.5 * side, 1.08 * side]) + 0.3 * body_shift
    shirt = _ellipse(0.0, 0.0, 0.46 * side, 0.24 * side)
    _fill(canvas, shirt + shoulders, identity.shirt_rgb)
    neck_top = project(np.array([[0.42, 0.55 * a], [-0.42, 0.55 * a]]), -0.2)
    neck_base = shoulders + np.array(
        [[-0.55 * project.radius, -0.2 * side], [0.55 * project.radius, -0.2 * side]]
    )
    _fill(canvas, np.concatenate([neck_top, neck_base]), _shade(skin, 0.82))
    for s in (1.0, -1.0):
        _fill(canvas, project(_ellipse(s * 0.98, 0.05, 0.14, 0.22, n=24), -0.05), _shade(skin, 0.9))
    outline = _ellipse(0.0, 0.0, 1.0, a, n=96)
    _fill(canvas, project(outline, 0.0), _shade(skin, 0.93))
    _fill(canvas, project(_ellipse(-0.03, -0.04, 0.93, 0.94 * a, n=96), 0.0), skin)
    for s in (1.0, -1.0):
        _fill(canvas, project(_ellipse(s * 0.55, 0.3, 0.17, 0.1, n=24)), _shade(skin, 0.88, (235, 120, 120)))
    _draw_hair_front(canvas, project, identity)
    brow = _shade(identity.hair_rgb, 0.7) if identity.hair_style != "bald" else _shade(skin, 0.45)
    for s in (1.0, -1.0):
        u = s * identity.eye_spacing + np.linspace(-0.17, 0.17, 17)
        v = -0.38 - 0.05 * (1.0 - ((u - s * identity.eye_spacing) / 0.17) ** 2)
        _stroke(canvas, project(np.stack([u, v], 1)), brow, identity.eyebrow_thickness * project.radius)
        _draw_eye(canvas, project, identity, s, blink)
    _draw_nose(canvas, project, identity)
    _draw_mouth(canvas, project, identity, mouth_open)
    if scale == 1:
        return canvas
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def face_box_for_pose(
    identity: FaceIdentity,
    size: int,
    head_yaw_deg: float = 0.0,
    head_pitch_deg: float = 0.0,
    head_roll_deg: float = 0.0,
    head_shift_xy: tuple[float, float] = (0.0, 0.0),
) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), x1/y1 exclusive, around the face outline (skin, not hair) of
    the frame :func:`render_face` draws with this pose."""
    project = _HeadProjection(identity, size, head_yaw_deg, head_pitch_deg, head_roll_deg, head_shift_xy)
    points = project(_ellipse(0.0, 0.0, 1.0, identity.face_aspect, n=96), 0.0)
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int)
    return int(max(0, x0)), int(max(0, y0)), int(min(size, x1)), int(min(size, y1))
