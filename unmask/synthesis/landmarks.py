"""Landmark index groups of the 81-point layout, and the checks every synthesizer runs first.

Layout (``unmask.data.faces.landmarks_81``): dlib's 68 points followed by 13 forehead points.
"Left"/"right" are as seen in the image (``left_eye`` = points 36-41, on the image's left for a
frontal face), which is also how dlib numbers them.

Why validate: a pseudo-fake made from degenerate landmarks (collinear points, a face outside the frame,
a face a few pixels wide) is an all-zero mask, i.e. a "fake" identical to the real image -- a silent
label error. We raise :class:`SynthesisError` with the reason instead.
"""

from __future__ import annotations

import numpy as np

from unmask.errors import UnmaskError

JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))  # image-left brow (dlib numbering)
LEFT_BROW = tuple(range(22, 27))
NOSE = tuple(range(27, 36))  # bridge 27-30 + nostrils 31-35
LEFT_EYE = tuple(range(36, 42))  # image-left eye
RIGHT_EYE = tuple(range(42, 48))
MOUTH = tuple(range(48, 60))  # outer lip contour
FOREHEAD = tuple(range(68, 81))

# SLADD / BBMG local features (paper 000 sec. 3.3: "left eye, right eye, nose, and mouth").
PARTS: dict[str, tuple[int, ...]] = {
    "left_eye": LEFT_EYE,
    "right_eye": RIGHT_EYE,
    "nose": NOSE,
    "mouth": MOUTH,
}

MIN_FACE_PX = 16.0  # smallest landmark-box side we synthesize on (a blend on fewer pixels is noise)
MIN_INSIDE = 0.5  # at least this fraction of the face hull must lie inside the image


class SynthesisError(UnmaskError):
    """A pseudo-fake cannot be made from this input (degenerate landmarks, no donor, bad image)."""


def polygon_area(points: np.ndarray) -> float:
    """Area of the convex hull of ``points`` (shoelace on the hull), float64."""
    import cv2

    pts = np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)
    if len(pts) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(pts)))


def face_size(landmarks: np.ndarray) -> float:
    """Geometric mean of the 68-point box sides: the length unit for relative options (grow, warp)."""
    lm = np.asarray(landmarks, dtype=np.float64)[:68]
    w, h = lm.max(axis=0) - lm.min(axis=0)
    return float(np.sqrt(max(w, 0.0) * max(h, 0.0)))


def check_landmarks(landmarks: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    """Validate landmarks for an image of ``shape``; returns them as float32 (81, 2).

    ``shape=None`` skips the in-frame check (for screening stored faces before their image is loaded).
    68-point input is extended with the forehead construction of ``unmask.data.faces``. Raises
    :class:`SynthesisError` for non-finite, collinear, tiny or mostly out-of-frame faces.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.shape == (68, 2):
        from unmask.data.faces import landmarks_81

        lm = landmarks_81(lm)
    if lm.shape != (81, 2):
        raise SynthesisError(f"landmarks must be (81, 2) or (68, 2), got {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise SynthesisError("landmarks contain NaN or infinity")
    lo, hi = lm[:68].min(axis=0), lm[:68].max(axis=0)
    w, h = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    if min(w, h) < MIN_FACE_PX:
        raise SynthesisError(f"face too small to synthesize: landmark box {w:.0f}x{h:.0f} px "
                             f"(needs at least {MIN_FACE_PX:.0f} px per side)")
    area = polygon_area(lm[:68])
    if area < 0.05 * w * h:  # a real face hull fills ~70% of its box; collinear points fill ~0
        raise SynthesisError(f"landmarks are (nearly) collinear: hull area {area:.0f} px^2 in a {w:.0f}x{h:.0f} box")
    if shape is None:
        return lm
    H, W = int(shape[0]), int(shape[1])
    clipped = np.clip(lm[:68], [0, 0], [W, H])
    inside = polygon_area(clipped) / area if area > 0 else 0.0
    if inside < MIN_INSIDE:
        raise SynthesisError(f"face is mostly outside the image ({100 * inside:.0f}% of its hull inside a {W}x{H} image)")
    return lm
