"""Head rotation per frame and its speed (degrees/frame), the signal EMO's speed layers learn from.

No landmark model ships offline in a registry package that fits our dependencies (mediapipe pins
numpy < 2; face-alignment, dlib and YuNet wrappers download weights or need native builds), so the
landmarks here are *tracked points on a generic head*: corners found inside the face box
(``cv2.goodFeaturesToTrack``, mouth and jaw left out because they move on their own) are lifted onto
a generic ellipsoid head fitted to the box, followed with pyramidal Lucas-Kanade flow (forward-backward
checked), and each frame's rotation is solved with ``cv2.solvePnPRansac`` against those 3-D points.
Points are re-seeded when too few survive. Angles are smoothed over time (median 3 + Savitzky-Golay).

Accuracy, honestly: the angles are *relative to the first frame* (taken as frontal) and drift slowly
(a few degrees over a few seconds), so absolute yaw/pitch/roll are rough; frame-to-frame rotation, and
so the speed, is what this is for. On the procedural clips of :mod:`.demo.synthetic` (256 px,
4 s, 5 identities at each mean speed 0.2 / 0.7 / 1.3 degrees/frame) the measured speed correlates
with ground truth at r = 0.87 per clip on average (0.54 worst), the yaw track at r > 0.99, and the
clip means come out 0.26 / 0.82 / 1.38: slow heads read a little fast (tracking noise). A still
photo panned and zoomed in 2-D reads ~0.06 degrees/frame. Drawn faces are easy; on real footage
expect more noise from blinks, expressions, hair and occlusions, and a bias from the generic head.
Angles use the convention of ``synthetic.generate_clip``: yaw turns the face towards image right for
positive values, pitch nods down, roll tilts clockwise in the image.
"""

from __future__ import annotations

import numpy as np

__all__ = ["head_poses", "rotation_speed"]

_DEPTH = 1.0  # generic head: depth of the face ellipsoid / its half-width
_HEAD = (0.5, 0.55)  # ellipsoid half-axes as fractions of the face box width, height
_MOUTH_CUT = 0.15  # no points below box centre + this x box height (the mouth and jaw move alone)
_MAX_POINTS = 200
_MAX_STEP_DEG = 20.0  # a larger rotation between two frames is a tracking failure (or a cut): held
_LK = dict(winSize=(15, 15), maxLevel=3)


def _cv2():
    from .face_detect import _cv2 as checked_cv2

    return checked_cv2()


class _EllipsoidTracker:
    """Points on a generic ellipsoid head, followed frame to frame and solved with PnP.

    Camera: pinhole with focal length 2x the image's longer side, principal point at the centre;
    head coordinates in pixels, the face towards -z (the camera).
    """

    def __init__(self, height: int, width: int):
        self.cv2 = _cv2()
        self.size = (width, height)
        self.focal = 2.0 * max(height, width)
        self.camera = np.array([[self.focal, 0, width / 2], [0, self.focal, height / 2], [0, 0, 1]])
        self.points2d = np.empty((0, 2), np.float32)
        self.points3d = np.empty((0, 3), np.float64)
        self.rvec = np.zeros(3)
        self.tvec = np.zeros(3)
        self.seeded = 0

    def start(self, box) -> None:
        """Frontal head centred on the box, at the distance where 1 model pixel is 1 image pixel."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        self.rvec = np.zeros(3)
        self.tvec = np.array([cx - self.size[0] / 2, cy - self.size[1] / 2, self.focal])

    def _lift(self, points: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        """Image points -> their 3-D points on the ellipsoid at the current pose, and which hit it."""
        rotation, _ = self.cv2.Rodrigues(self.rvec)
        a = _HEAD[0] * (box[2] - box[0])
        radii = np.array([a, _HEAD[1] * (box[3] - box[1]), _DEPTH * a])
        rays = np.column_stack(
            [(points - np.array(self.size) / 2) / self.focal, np.ones(len(points))]
        )  # (n, 3) camera rays
        origin = rotation.T @ -self.tvec / radii  # camera centre in unit-sphere head coordinates
        direction = rays @ rotation / radii  # (n, 3)
        qa = (direction**2).sum(1)
        qb = 2 * direction @ origin
        qc = origin @ origin - 1.0
        disc = qb**2 - 4 * qa * qc
        hit = disc > 0
        near = (-qb - np.sqrt(np.clip(disc, 0, None))) / (2 * qa)  # first surface the ray meets
        return (origin + near[:, None] * direction) * radii, hit

    def seed(self, gray: np.ndarray, box) -> None:
        """New points: corners inside the head ellipse, above the mouth."""
        cv2 = self.cv2
        w, h = box[2] - box[0], box[3] - box[1]
        centre = (int(round((box[0] + box[2]) / 2)), int(round((box[1] + box[3]) / 2)))
        mask = np.zeros(gray.shape, np.uint8)
        cv2.ellipse(mask, centre, (int(_HEAD[0] * w), int(_HEAD[1] * h)), 0, 0, 360, 255, -1)
        mask[max(0, int(centre[1] + _MOUTH_CUT * h)) :] = 0
        found = cv2.goodFeaturesToTrack(gray, _MAX_POINTS, 0.01, max(3.0, w / 25), mask=mask)
        points = np.empty((0, 2), np.float32) if found is None else found.reshape(-1, 2)
        lifted, hit = self._lift(points.astype(np.float64), box)
        self.points2d, self.points3d = points[hit].astype(np.float32), lifted[hit]
        self.seeded = len(self.points2d)

    def follow(self, previous: np.ndarray, gray: np.ndarray, box) -> bool:
        """Track the points into ``gray`` and solve the pose; False (pose held) when that fails."""
        cv2 = self.cv2
        if len(self.points2d) < 6:
            return False
        p0 = self.points2d.reshape(-1, 1, 2)
        p1, ok1, _ = cv2.calcOpticalFlowPyrLK(previous, gray, p0, None, **_LK)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray, previous, p1, None, **_LK)
        good = (ok1.ravel() == 1) & (ok2.ravel() == 1)
        good &= np.linalg.norm((back - p0).reshape(-1, 2), axis=1) < 0.5
        self.points2d, self.points3d = p1.reshape(-1, 2)[good], self.points3d[good]
        if len(self.points2d) < 6:
            return False
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            self.points3d, self.points2d.astype(np.float64), self.camera, None,
            self.rvec.copy().reshape(3, 1), self.tvec.copy().reshape(3, 1), useExtrinsicGuess=True,
            reprojectionError=max(1.0, (box[2] - box[0]) / 150), flags=cv2.SOLVEPNP_ITERATIVE,
        )  # fmt: skip
        if not ok or inliers is None or len(inliers) < 6:
            return False
        step = cv2.Rodrigues(cv2.Rodrigues(rvec)[0] @ cv2.Rodrigues(self.rvec)[0].T)[0]
        if np.degrees(np.linalg.norm(step)) > _MAX_STEP_DEG:
            return False
        self.rvec, self.tvec = rvec.ravel(), tvec.ravel()
        return True

    def needs_seed(self) -> bool:
        return len(self.points2d) < max(12, 0.4 * self.seeded)


def _matrices(poses: np.ndarray) -> np.ndarray:
    """(F, 3) yaw, pitch, roll degrees -> (F, 3, 3) head -> camera rotations R = roll . pitch . yaw."""
    b, a, g = np.radians(poses * np.array([-1.0, 1.0, 1.0])).T  # the face looks along -z: yaw flips
    one, zero = np.ones_like(b), np.zeros_like(b)
    yaw = np.stack([np.cos(b), zero, np.sin(b), zero, one, zero, -np.sin(b), zero, np.cos(b)], -1)
    pitch = np.stack([one, zero, zero, zero, np.cos(a), -np.sin(a), zero, np.sin(a), np.cos(a)], -1)
    roll = np.stack([np.cos(g), -np.sin(g), zero, np.sin(g), np.cos(g), zero, zero, zero, one], -1)
    return roll.reshape(-1, 3, 3) @ pitch.reshape(-1, 3, 3) @ yaw.reshape(-1, 3, 3)


def _euler(rotations: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotations -> (F, 3) yaw, pitch, roll degrees (inverse of :func:`_matrices`)."""
    r = rotations
    pitch = np.arcsin(np.clip(r[:, 2, 1], -1.0, 1.0))
    yaw = -np.arctan2(-r[:, 2, 0], r[:, 2, 2])
    roll = np.arctan2(-r[:, 0, 1], r[:, 1, 1])
    return np.degrees(np.stack([yaw, pitch, roll], axis=1))


def _savgol(x: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing of (F, k) along F (scipy's mode="interp"), in numpy: scipy.signal
    takes seconds to import."""
    half = window // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    design = np.vander(offsets, order + 1, increasing=True)  # (window, order + 1)
    centre = np.linalg.pinv(design)[0]  # weights giving the fitted value at offset 0
    out = np.stack([np.convolve(x[:, k], centre[::-1], mode="same") for k in range(x.shape[1])], axis=1)
    for rows, at in (
        (slice(0, window), offsets[:half] + half),
        (slice(-window, None), offsets[half + 1 :] + half),
    ):
        fit = np.linalg.lstsq(np.vander(np.arange(window, dtype=np.float64), order + 1), x[rows], rcond=None)[
            0
        ]
        values = np.vander(at, order + 1) @ fit
        if rows.start == 0:
            out[:half] = values
        else:
            out[-half:] = values
    return out


def _smooth(poses: np.ndarray, window: int) -> np.ndarray:
    """Median of 3, then Savitzky-Golay (order 2) over ``window`` frames, per angle."""
    if len(poses) >= 3:
        stacked = np.stack([poses[:-2], poses[1:-1], poses[2:]])
        poses = np.concatenate([poses[:1], np.median(stacked, axis=0), poses[-1:]])
    window = min(window, len(poses) - (1 - len(poses) % 2))  # odd, at most F
    if window >= 5:
        poses = _savgol(poses, window)
    return poses


def head_poses(frames: np.ndarray, boxes, smooth: int = 11) -> np.ndarray:
    """Head rotation per frame: frames (F, H, W, 3) uint8 RGB, boxes F face boxes -> (F, 3) degrees.

    Columns yaw, pitch, roll, relative to the first frame (see the module notes on accuracy);
    ``smooth`` is the Savitzky-Golay window in frames (0 or 1: raw). A frame whose box is None, or
    where tracking fails, holds the pose before it and re-seeds points.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.dtype != np.uint8:
        raise ValueError(f"frames: array of shape {frames.shape} {frames.dtype}; give (F, H, W, 3) uint8 RGB")
    boxes = list(boxes)
    if len(boxes) != len(frames):
        raise ValueError(f"boxes: {len(boxes)} boxes for {len(frames)} frames; give one box per frame")
    if all(b is None for b in boxes):
        raise ValueError(
            "boxes: no face box in any frame; detect faces first (face_detect.detect_face_boxes)"
        )
    cv2 = _cv2()
    tracker = _EllipsoidTracker(frames.shape[1], frames.shape[2])
    rvecs = np.zeros((len(frames), 3))
    previous = None
    for i, (frame, box) in enumerate(zip(frames, boxes)):
        gray = cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
        if box is None:
            rvecs[i], previous = tracker.rvec, None
            continue
        if previous is None and not tracker.seeded:
            tracker.start(box)
        elif previous is not None and not tracker.follow(previous, gray, box):
            tracker.points2d = tracker.points2d[:0]  # failed: hold the pose, start over with new points
        if previous is None or tracker.needs_seed():
            tracker.seed(gray, box)
        rvecs[i], previous = tracker.rvec, gray
    poses = _euler(np.stack([cv2.Rodrigues(r)[0] for r in rvecs]))
    return _smooth(poses, smooth) if smooth > 1 else poses


def rotation_speed(poses: np.ndarray) -> np.ndarray:
    """(F, 3) yaw/pitch/roll degrees -> (F,) degrees/frame: the angle of the relative rotation
    between consecutive frames; frame 0 copies frame 1 (0 for a single frame)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 3:
        raise ValueError(f"poses: array of shape {poses.shape}; give (F, 3) yaw, pitch, roll in degrees")
    if len(poses) < 2:
        return np.zeros(len(poses))
    rotations = _matrices(poses)
    relative = np.swapaxes(rotations[:-1], 1, 2) @ rotations[1:]  # (F-1, 3, 3)
    cos = (np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0
    sin = np.linalg.norm(relative - np.swapaxes(relative, 1, 2), axis=(1, 2)) / (2.0 * np.sqrt(2.0))
    step = np.degrees(np.arctan2(sin, cos))
    return np.concatenate([step[:1], step])
