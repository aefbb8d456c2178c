"""Face crops: the large stored crop, and the margin crop training and evaluation take from it.

Two crops, following SBI (Shiohara & Yamasaki, CVPR 2022, sec. 3.3 / their data pipeline) and the BBMG paper
(000, sec. 4.1: "random margins of 4-20%" in training, a fixed 12.5% at test time):

1. ``storage_window``: what ``unmask prepare`` stores per face -- the 68-landmark box widened by w/2 left
   and right, h above and 0.4h below (SBI's large margin, which leaves room for the forehead, for the
   blending transforms and for any later margin), clamped to the frame. It also covers the detector box
   widened by ``box_margin`` so every later margin crop fits inside the stored image.
2. ``margin_crop``: the final crop around the *detector* box widened by a margin per side (a fraction of the
   box width left/right, of its height top/bottom): a float = fixed margin, a ``(lo, hi)`` pair = a uniform
   random margin drawn per side. Landmarks and box come back in the crop's coordinates.

Windows are integer ``(x0, y0, x1, y1)`` pixel bounds, exclusive at the right/bottom, inside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MarginSpec = float | tuple[float, float] | Sequence[float]


def _clamp_window(x0: float, y0: float, x1: float, y1: float, shape: Sequence[int]) -> tuple[int, int, int, int]:
    # Python scalars, not np.clip (~6 us a call on a scalar; this runs per training pair). NaN raises as
    # int(nan) did; an infinite side clamps to the edge as np.clip did.
    h, w = int(shape[0]), int(shape[1])
    ix0 = int(min(max(_floor(x0), 0), max(w - 1, 0)))
    iy0 = int(min(max(_floor(y0), 0), max(h - 1, 0)))
    ix1 = int(min(max(-_floor(-x1), ix0 + 1), w))
    iy1 = int(min(max(-_floor(-y1), iy0 + 1), h))
    return ix0, iy0, ix1, iy1


def _floor(v: float) -> float:
    """``np.floor`` of a scalar as Python does it: NaN raises, an infinity passes through to be clamped."""
    v = float(v)
    if v != v:
        raise ValueError("cannot convert float NaN to integer")
    return math.floor(v) if math.isfinite(v) else v


def storage_window(landmarks68: np.ndarray, frame_shape: Sequence[int], box: np.ndarray | None = None,
                   box_margin: float = 0.25) -> tuple[int, int, int, int]:
    """SBI's large-margin window around a face, clamped to the frame (``frame_shape`` = (H, W, ...)).

    From the 68-landmark box (w, h): w/2 left and right, h above, 0.4h below. When the detector ``box`` is
    given the window is grown to cover it widened by ``box_margin`` per side (default 25% > BBMG's 20%).
    """
    lm = np.asarray(landmarks68, dtype=np.float64)[:68]
    x0, y0 = lm.min(axis=0)
    x1, y1 = lm.max(axis=0)
    w, h = x1 - x0, y1 - y0
    wx0, wy0, wx1, wy1 = x0 - w / 2, y0 - h, x1 + w / 2, y1 + 0.4 * h
    if box is not None:
        b = np.asarray(box, dtype=np.float64)
        bw, bh = b[2] - b[0], b[3] - b[1]
        wx0 = min(wx0, b[0] - box_margin * bw)
        wy0 = min(wy0, b[1] - box_margin * bh)
        wx1 = max(wx1, b[2] + box_margin * bw)
        wy1 = max(wy1, b[3] + box_margin * bh)
    return _clamp_window(wx0, wy0, wx1, wy1, frame_shape)


@dataclass
class MarginCrop:
    """A crop of ``image[window]``; ``box`` / ``landmarks`` are in the crop's coordinates."""

    image: np.ndarray | None  # None from ``margin_window`` (the window only, for readers that decode just it)
    box: np.ndarray  # (4,) float32
    landmarks: np.ndarray | None  # (N, 2) float32
    window: tuple[int, int, int, int]  # (x0, y0, x1, y1) in the input image
    margins: tuple[float, float, float, float]  # (left, top, right, bottom) fractions used


def draw_margins(margin: MarginSpec, rng: np.random.Generator | int | None) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) margins: a float -> fixed; ``(lo, hi)`` -> uniform per side from ``rng``."""
    if isinstance(margin, (int, float)):
        m = float(margin)
        return (m, m, m, m)
    lo, hi = (float(v) for v in margin)
    if hi < lo:
        raise ValueError(f"margin range must be (lo, hi) with lo <= hi, got {margin}")
    if rng is None:
        raise ValueError("a random margin range needs an explicit rng (np.random.Generator or seed)")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    left, top, right, bottom = gen.uniform(lo, hi, size=4)
    return (float(left), float(top), float(right), float(bottom))


def margin_crop(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None, margin: MarginSpec,
                rng: np.random.Generator | int | None = None) -> MarginCrop:
    """Crop around the detector ``box`` widened by ``margin`` per side, clamped to the image.

    ``margin`` is a fraction of the box width (left/right) and height (top/bottom): 0.125 = 12.5% per side
    (test time), ``(0.04, 0.20)`` = drawn uniformly per side from ``rng`` (training, BBMG sec. 4.1).
    ``landmarks`` (any (N, 2): 68 or 81 points) and the box are shifted into the crop's coordinates.
    """
    mc = margin_window(image.shape, box, landmarks, margin, rng)
    x0, y0, x1, y1 = mc.window
    mc.image = image[y0:y1, x0:x1]
    return mc


def margin_window(shape: Sequence[int], box: np.ndarray, landmarks: np.ndarray | None, margin: MarginSpec,
                  rng: np.random.Generator | int | None = None) -> MarginCrop:
    """``margin_crop`` for an image of ``shape`` without its pixels (``image`` None; same draws, same window):
    what a reader that decodes only the window needs first (``unmask.data.store.load_rgb_window``)."""
    b = np.asarray(box, dtype=np.float64)
    left, top, right, bottom = draw_margins(margin, rng)
    bw, bh = b[2] - b[0], b[3] - b[1]
    window = _clamp_window(b[0] - left * bw, b[1] - top * bh, b[2] + right * bw, b[3] + bottom * bh, shape)
    x0, y0 = window[0], window[1]
    shift = np.array([x0, y0], dtype=np.float64)
    new_box = (b - np.concatenate([shift, shift])).astype(np.float32)
    new_lm = None
    if landmarks is not None:
        new_lm = (np.asarray(landmarks, dtype=np.float64) - shift).astype(np.float32)
    return MarginCrop(image=None, box=new_box, landmarks=new_lm, window=window,
                      margins=(left, top, right, bottom))


@dataclass
class StoredCrop:
    """What prepare writes per face: the storage-window crop, scaled so its longest side <= max_side."""

    image: np.ndarray
    box: np.ndarray  # (4,) in crop pixels
    landmarks: np.ndarray  # (81, 2) in crop pixels
    origin: tuple[int, int]  # window's top-left corner in the frame
    window: tuple[int, int, int, int]
    scale: float  # crop pixels per frame pixel (<= 1)
    mask: np.ndarray | None = None  # HxW uint8, same size as image


def resize_face(img: np.ndarray, size: int) -> np.ndarray:
    """A face crop -> ``size`` x ``size``: area-averaging when shrinking, bilinear when enlarging.

    The one resize between a crop and the network, shared by training pairs, training/validation faces and
    test-time scoring: a detector keyed to high-frequency traces must see the same resampling at test time
    as in training.
    """
    import cv2

    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def _resize(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    import cv2

    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(img, size, interpolation=interp)


def storage_crop(frame: np.ndarray, box: np.ndarray, landmarks81: np.ndarray, max_side: int = 640,
                 mask: np.ndarray | None = None) -> StoredCrop:
    """Cut the storage window out of ``frame`` (and ``mask``), downscaling large faces to ``max_side``.

    The default, 640, keeps the native pixels of 95% of the faces in 720p video (FF++ sample: window median
    460 px, 95th percentile 606) -- resampling would blur the very artefacts detectors learn -- while 1080p
    faces (windows of 800-1200 px) are reduced to a size whose training crop (box + 20%, ~0.6 of the window)
    is still about 380 px, the SBI/BBMG input size.
    """
    lm81 = np.asarray(landmarks81, dtype=np.float64)
    window = storage_window(lm81[:68], frame.shape, box=box)
    x0, y0, x1, y1 = window
    crop = frame[y0:y1, x0:x1]
    mcrop = None if mask is None else mask[y0:y1, x0:x1]
    h, w = crop.shape[:2]
    scale = 1.0
    if max_side and max(h, w) > max_side:
        scale = max_side / float(max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # Exact per-axis scale so coordinates map onto the resized pixel grid.
        sx, sy = size[0] / float(w), size[1] / float(h)
        crop = _resize(crop, size)
        if mcrop is not None:
            mcrop = _resize(mcrop, size, nearest=True)
    else:
        sx = sy = 1.0
    s = np.array([sx, sy])
    origin = np.array([x0, y0], dtype=np.float64)
    b = np.asarray(box, dtype=np.float64).reshape(2, 2)
    new_box = ((b - origin) * s).reshape(4).astype(np.float32)
    new_lm = ((lm81 - origin) * s).astype(np.float32)
    return StoredCrop(image=np.ascontiguousarray(crop), box=new_box, landmarks=new_lm, origin=(x0, y0),
                      window=window, scale=float(scale),
                      mask=None if mcrop is None else np.ascontiguousarray(mcrop))
