"""Face detection + 68-point landmarks, and the 81-point layout SBI-style masks need.

The default detector runs offline: dlib's HOG frontal-face detector (inside the dlib-bin wheel) and the
68-point shape predictor shipped in the face-recognition-models wheel. That package's ``__init__`` imports
``pkg_resources`` (removed from new setuptools), so the ``.dat`` files are located with
``importlib.util.find_spec`` without importing it.

Speed (the field's reference preprocessing spends 68% of its time in HOG at full 720p with upsampling):
the detector runs on a copy of the frame downscaled so its longest side is at most ``detect_max_side``
(default 640, no upsampling), and the 68-point predictor then runs on the full-resolution frame inside
the rescaled box. If nothing is found at the small scale, one retry at a larger scale catches small faces
(``fallback_max_side``, default 2560: full resolution up to 1440p). Within a video the caller can hint the
size and place of the previous frame's faces (``detect(rgb, min_face=..., near=[boxes])``): HOG then scans only
the region around them on a smaller copy, falling back to the whole frame when that looks wrong. Models are
loaded once per process; build one detector per worker process.

Faces HOG cannot see as they are (issue 8, item 7): a face filling a tight crop has no background around it
(HOG's 80 px window includes a margin of context), and a face in a ~100 px image is below HOG's ~80 px minimum.
When every pass above finds nothing, one *context retry* pads the frame by ``pad`` of its side on every side
(replicated border) and upsamples the padded copy until its longest side is ``small_side`` px; boxes and
landmarks are mapped back to the frame (a box is clipped to it, landmarks are not). A frame with a face costs
nothing more. ``whole_image_face`` is the last resort for datasets whose items *are* face crops (the adapter
says so): the whole image as the box, 68 landmarks from the predictor on it, marked ``fallback="whole_image"``.

Another detector plugs in by name: decorate a factory with ``@register_face_detector("name")`` that returns
an object with ``detect(rgb) -> list[Face]`` (sorted by box area, largest first).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from unmask.errors import UnmaskError, WeightsNotFoundError

# --- the 81-point layout -----------------------------------------------------------------------------

NUM_FOREHEAD_POINTS = 13
# Semi-height of the forehead arc as a fraction of the distance from the jaw-top midpoint to the chin.
# Classic facial thirds: hairline-to-brow ~= brow-to-nose-base ~= nose-base-to-chin; the jaw tops (points 0
# and 16) sit about at eye level, so the hairline lies ~0.7 of the eye-to-chin distance above them.
FOREHEAD_HEIGHT = 0.7


def landmarks_81(lm68: np.ndarray) -> np.ndarray:
    """68 dlib landmarks -> 81: the 68 followed by 13 forehead points (indices 68..80).

    Construction (no learned model, so every mask generator can use it on any 68-point face):
    - ``c`` = midpoint of the jaw tops (points 0 and 16); ``u`` = unit vector from point 0 to point 16
      (the face's horizontal axis, so the arc follows in-plane head rotation);
    - ``v`` = unit normal to ``u`` pointing away from the chin (point 8);
    - semi-axes ``a = |p16 - p0| / 2`` and ``b = FOREHEAD_HEIGHT * ((c - p8) . v)``;
    - point k (k = 0..12) = ``c - a cos(t_k) u + b sin(t_k) v`` with ``t_k = pi (k + 1) / 14``: a half
      ellipse over the forehead from just above point 0, through the top, to just above point 16 --
      the same left-to-right order as dlib's 81-point model after SBI's reordering.
    The construction is equivariant to translation, rotation and scale, and mirrors under horizontal flips.
    """
    lm = np.asarray(lm68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks_81 needs (68, 2) landmarks, got {lm.shape}")
    p0, p16, p8 = lm[0], lm[16], lm[8]
    c = (p0 + p16) / 2.0
    span = p16 - p0
    width = float(np.hypot(*span))
    if width < 1e-6:
        # Degenerate input (all points equal): put the forehead points on the face.
        return np.concatenate([lm, np.repeat(c[None], NUM_FOREHEAD_POINTS, 0)]).astype(np.float32)
    u = span / width
    v = np.array([u[1], -u[0]])  # perpendicular to u
    if np.dot(c - p8, v) < 0:  # make v point away from the chin
        v = -v
    a = width / 2.0
    b = FOREHEAD_HEIGHT * max(float(np.dot(c - p8, v)), 0.0)
    t = np.pi * (np.arange(NUM_FOREHEAD_POINTS) + 1) / (NUM_FOREHEAD_POINTS + 1)
    forehead = c[None] - a * np.cos(t)[:, None] * u[None] + b * np.sin(t)[:, None] * v[None]
    return np.concatenate([lm, forehead]).astype(np.float32)


# --- faces -------------------------------------------------------------------------------------------


@dataclass
class Face:
    """One detected face in frame coordinates: box (x0, y0, x1, y1), detector score, 68 landmarks."""

    box: np.ndarray  # (4,) float32
    score: float
    landmarks68: np.ndarray  # (68, 2) float32
    _lm81: np.ndarray | None = field(default=None, repr=False, compare=False)
    # None for a detection; "whole_image" when the image was taken as its own face crop (``whole_image_face``)
    fallback: str | None = None

    @property
    def landmarks81(self) -> np.ndarray:
        if self._lm81 is None:
            self._lm81 = landmarks_81(self.landmarks68)
        return self._lm81

    @property
    def area(self) -> float:
        return max(float(self.box[2] - self.box[0]), 0.0) * max(float(self.box[3] - self.box[1]), 0.0)

    def scaled(self, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> "Face":
        """This face with coordinates mapped by ``p * scale + offset``."""
        off = np.asarray(offset, dtype=np.float32)
        box = self.box.astype(np.float32) * scale + np.concatenate([off, off])
        return Face(box=box.astype(np.float32), score=self.score,
                    landmarks68=(self.landmarks68 * scale + off).astype(np.float32), fallback=self.fallback)


# Detections scoring below this are ranked after every surer one, whatever their size: HOG's rare false
# positives (a patch of clothing, ~0.01) must not become "face 0" beside a real face (typically 0.2-2.5).
WEAK_SCORE = 0.1
# With a ``min_face`` hint, HOG runs on a copy where that face box is this many pixels. Measured on FF++
# c40 frames: HOG finds 240 of 240 faces scaled to a 72 px box, 234 at 64 px, 156 at 56 px.
ADAPTIVE_FACE_PX = 72.0
# With a ``near`` hint (the boxes of the previous kept frame), the hinted pass scans only the region covering
# each box widened by this many box sides per side (faces move little between kept frames ~0.5 s apart), unless
# that region is most of the frame anyway (> ROI_MAX_SHARE of its area). Measured on the 1,600 frames of the
# FF++ sample (32 per video): at 0.5, 7 of 1,395 region passes found a face at the region's edge and were
# redone on the whole frame; detection + landmarks took 6.5 ms per frame (0.75: 7.4 ms; 1.0: 9.1 ms; no region:
# 12.0 ms).
ROI_MARGIN = 0.5
ROI_MAX_SHARE = 0.6
# The context retry (module docstring): padding per side as a fraction of the frame's side, and the longest side
# the padded copy is upsampled to. Measured by benchmarks/face_detectors.py (docs/prepare.md, "Faces HOG misses").
CONTEXT_PAD = 0.25
SMALL_SIDE = 400
# ``whole_image_face`` only takes an image as its own face crop when it is face-shaped: width / height within
# these bounds and no side over FACE_CROP_MAX_SIDE px (a whole video frame is not a face crop).
FACE_CROP_ASPECT = (0.5, 2.0)
FACE_CROP_MAX_SIDE = 1024


def sort_faces(faces: list[Face], weak_score: float = WEAK_SCORE) -> list[Face]:
    """Largest box first -- face index 0 is the main face -- with weak detections (score < ``weak_score``)
    after the confident ones. A frame whose only detections are weak keeps them, largest first."""
    return sorted(faces, key=lambda f: (f.score < weak_score, -f.area, -f.score))


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face in an HxWx3 uint8 RGB frame, largest first."""
        ...


FACE_DETECTORS: dict[str, Callable[..., FaceDetector]] = {}


def register_face_detector(name: str) -> Callable[[Callable[..., FaceDetector]], Callable[..., FaceDetector]]:
    def deco(factory: Callable[..., FaceDetector]) -> Callable[..., FaceDetector]:
        if name in FACE_DETECTORS:
            raise ValueError(f"face detector {name!r} registered twice")
        FACE_DETECTORS[name] = factory
        return factory

    return deco


def build_face_detector(name: str = "dlib_hog", **opts) -> FaceDetector:
    """Build a registered face detector by name (``FACE_DETECTORS``); ``opts`` go to its factory."""
    if name not in FACE_DETECTORS:
        raise UnmaskError(f"unknown face detector {name!r}; choose from {', '.join(sorted(FACE_DETECTORS))}")
    return FACE_DETECTORS[name](**opts)


def check_face_detector(name: str) -> None:
    """One-line error now, without loading a model, for an unknown detector or one whose optional package is not
    installed: a parallel job would otherwise only find out inside each worker, item by item."""
    if name not in FACE_DETECTORS:
        raise UnmaskError(f"unknown face detector {name!r}; choose from {', '.join(sorted(FACE_DETECTORS))}")
    if name == "mtcnn" and importlib.util.find_spec("facenet_pytorch") is None:
        from unmask.data.mtcnn import INSTALL_HINT, MissingOptionalDependency

        raise MissingOptionalDependency(f"the mtcnn face detector needs facenet-pytorch: {INSTALL_HINT}")


# --- dlib ----------------------------------------------------------------------------------------------

_MODEL_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "mmod": "mmod_human_face_detector.dat",
}


def dlib_model_path(kind: str = "landmarks68") -> Path:
    """Path of a dlib model file shipped in face-recognition-models (located without importing it).

    ``UNMASK_DLIB_MODELS`` (a folder) overrides the location.
    """
    fname = _MODEL_FILES[kind]
    env = os.environ.get("UNMASK_DLIB_MODELS")
    candidates: list[Path] = []
    if env:
        candidates.append(Path(env) / fname)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "models" / fname)
    for c in candidates:
        if c.is_file():
            return c
    raise WeightsNotFoundError(
        f"dlib model {fname} not found (install face-recognition-models or set UNMASK_DLIB_MODELS to a folder with it)"
    )


_PREDICTOR_CACHE: dict[str, object] = {}


def _shape_predictor(path: Path):
    """One loaded 68-point predictor per process (loading it takes ~0.7 s and ~100 MB)."""
    import dlib

    key = str(path)
    if key not in _PREDICTOR_CACHE:
        _PREDICTOR_CACHE[key] = dlib.shape_predictor(key)
    return _PREDICTOR_CACHE[key]


def _dlib_face_detector(kind: str):
    """One HOG / MMOD detector per process (building the HOG one takes ~0.5 s)."""
    import dlib

    key = f"detector:{kind}"
    if key not in _PREDICTOR_CACHE:
        _PREDICTOR_CACHE[key] = (dlib.get_frontal_face_detector() if kind == "hog"
                                 else dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod"))))
    return _PREDICTOR_CACHE[key]


def downscale(gray: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """Fast anti-aliased downscale for detection; returns (image, x scale, y scale) relative to ``gray``.

    OpenCV's area resampling is fast only for integer factors (0.03 ms for 720p / 2, ~1.9 ms otherwise), so the
    integer part k of the reduction is done by area averaging -- after trimming fewer than k pixels off the
    right/bottom edges, which leaves coordinates unchanged -- and the rest, a factor in (0.5, 1], bilinearly.
    """
    import cv2

    if scale >= 1.0:
        return gray, 1.0, 1.0
    h, w = gray.shape[:2]
    k = int(1.0 / scale)
    tw, th = (w // k * k, h // k * k) if k >= 2 else (w, h)
    nw, nh = max(1, round(tw * scale)), max(1, round(th * scale))
    img = gray
    if k >= 2:
        img = cv2.resize(gray[:th, :tw], (tw // k, th // k), interpolation=cv2.INTER_AREA)
    if (nw, nh) != (img.shape[1], img.shape[0]):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return img, nw / float(tw), nh / float(th)


def search_region(near: list[np.ndarray], shape: tuple[int, int], margin: float | None = None,
                  max_share: float | None = None) -> tuple[int, int, int, int] | None:
    """The integer region (x0, y0, x1, y1) covering every box in ``near`` widened by ``margin`` box sides per
    side, clamped to the frame (``shape`` = (H, W)); None when it would cover more than ``max_share`` of the frame
    (then scanning it all costs about the same)."""
    margin = ROI_MARGIN if margin is None else margin
    max_share = ROI_MAX_SHARE if max_share is None else max_share
    h, w = int(shape[0]), int(shape[1])
    b = np.asarray(near, dtype=np.float64).reshape(-1, 4)
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])[:, None] * margin
    lo = np.floor((b[:, :2] - side).min(axis=0))
    hi = np.ceil((b[:, 2:] + side).max(axis=0))
    x0, y0 = int(max(lo[0], 0)), int(max(lo[1], 0))
    x1, y1 = int(min(hi[0], w)), int(min(hi[1], h))
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) > max_share * w * h:
        return None
    return x0, y0, x1, y1


def _cut_by_region(box: np.ndarray, region: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Whether ``box`` reaches (within 10% of its side) an edge of ``region`` that is not a frame edge."""
    h, w = shape
    x0, y0, x1, y1 = region
    tol = 0.1 * max(box[2] - box[0], box[3] - box[1])
    return bool((x0 > 0 and box[0] - x0 < tol) or (y0 > 0 and box[1] - y0 < tol)
                or (x1 < w and x1 - box[2] < tol) or (y1 < h and y1 - box[3] < tol))


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def is_face_sized(shape: tuple[int, ...]) -> bool:
    """Whether an image of this shape can be a face crop (``FACE_CROP_ASPECT``, ``FACE_CROP_MAX_SIDE``)."""
    h, w = int(shape[0]), int(shape[1])
    lo, hi = FACE_CROP_ASPECT
    return min(h, w) >= 16 and max(h, w) <= FACE_CROP_MAX_SIDE and lo <= w / float(h) <= hi


def pad_and_scale(gray: np.ndarray, pad: float, small_side: int,
                  base: float = 1.0) -> tuple[np.ndarray, float, int, int]:
    """``gray`` padded by ``pad`` of its width / height on each side (border replicated), then resized by
    ``s = max(base, small_side / longest padded side)``; returns (image, s, pad_x, pad_y): frame point ``p``
    is at ``(p + (pad_x, pad_y)) * s`` in the image."""
    import cv2

    h, w = gray.shape[:2]
    px, py = int(round(pad * w)), int(round(pad * h))
    img = cv2.copyMakeBorder(gray, py, py, px, px, cv2.BORDER_REPLICATE) if (px or py) else gray
    s = max(float(base), small_side / float(max(img.shape[:2]))) if small_side else float(base)
    if s > 1.0:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_LINEAR)
        s = img.shape[1] / float(w + 2 * px)
    elif s < 1.0:
        img, sx, _ = downscale(img, s)
        s = sx
    return np.ascontiguousarray(img), s, px, py


def predict_landmarks68(gray: np.ndarray, box, predictor=None) -> np.ndarray:
    """The 68 dlib landmarks of the face in ``box`` (x0, y0, x1, y1; may reach outside ``gray``), float32."""
    import dlib

    predictor = predictor or _shape_predictor(dlib_model_path())
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    shape = predictor(gray, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def whole_image_face(rgb: np.ndarray, detector: object | None = None) -> Face | None:
    """The image taken as its own face crop: box = the whole image, 68 landmarks from the predictor on that box
    (the detector's, if it has one), score 0, ``fallback="whole_image"``; None when the image is not face-sized.

    Only for items a dataset adapter declares to be face crops (``adapters.items_are_face_crops``): anywhere else
    it would invent a face in every faceless frame."""
    if not is_face_sized(rgb.shape):
        return None
    h, w = rgb.shape[:2]
    box = np.array([0, 0, w, h], np.float32)
    lm = predict_landmarks68(_to_gray(rgb), box, getattr(detector, "_predictor", None))
    return Face(box=box, score=0.0, landmarks68=lm, fallback="whole_image")


class DlibDetector:
    """dlib HOG (or MMOD CNN) detection on a downscaled frame + 68 landmarks at full resolution.

    Options: ``detect_max_side`` longest side the detector sees (0 = full resolution), ``upsample``
    (dlib's pyramid upsampling), ``fallback_max_side`` retry scale when nothing is found (0 = no retry),
    ``threshold`` (HOG ``adjust_threshold``; higher = fewer, surer faces), ``min_size`` (drop boxes with a
    side smaller than this many frame pixels), ``pad`` / ``small_side`` (the context retry when still nothing
    is found: padding per side as a fraction of the frame, longest side the padded copy is upsampled to;
    ``pad=0, small_side=0`` turns it off).
    """

    def __init__(self, kind: str = "hog", detect_max_side: int = 640, upsample: int = 0,
                 fallback_max_side: int = 2560, threshold: float = 0.0, min_size: float = 0.0,
                 predictor_path: str | os.PathLike | None = None, pad: float = CONTEXT_PAD,
                 small_side: int = SMALL_SIDE) -> None:
        import dlib  # noqa: F401 - fail here, at construction, when dlib is missing

        self.kind = kind
        self.name = f"dlib_{kind}"
        self.detect_max_side = int(detect_max_side)
        self.upsample = int(upsample)
        self.fallback_max_side = int(fallback_max_side)
        self.threshold = float(threshold)
        self.min_size = float(min_size)
        self.pad = float(pad)
        self.small_side = int(small_side)
        if kind not in ("hog", "cnn"):
            raise UnmaskError(f"unknown dlib detector kind {kind!r} (hog or cnn)")
        if not 0.0 <= self.pad <= 2.0 or self.small_side < 0:
            raise UnmaskError(f"pad must be in [0, 2] and small_side >= 0, got {pad} and {small_side}")
        self._det = _dlib_face_detector(kind)
        self._predictor = _shape_predictor(Path(predictor_path) if predictor_path else dlib_model_path())
        self.stats = {"detect_s": 0.0, "landmarks_s": 0.0, "detect_cpu_s": 0.0, "landmarks_cpu_s": 0.0,
                      "frames": 0, "retries": 0, "context_retries": 0, "context_found": 0}

    def _run(self, img: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Raw detector boxes (x0, y0, x1, y1) and scores in ``img``'s own pixels."""
        import cv2

        out = []
        if self.kind == "hog":
            rects, scores, _ = self._det.run(img, self.upsample, self.threshold)
            for r, s in zip(rects, scores):
                out.append((np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64), float(s)))
        else:
            for d in self._det(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), self.upsample):
                r = d.rect
                out.append((np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64),
                            float(d.confidence)))
        return out

    def _boxes(self, gray: np.ndarray, scale: float,
               region: tuple[int, int, int, int] | None = None) -> list[tuple[np.ndarray, float]]:
        """Detector boxes (frame coordinates) on ``gray`` -- or its ``region`` (x0, y0, x1, y1) -- resized by
        ``scale`` (<= 1)."""
        x0 = y0 = 0
        if region is not None:
            x0, y0, x1, y1 = region
            gray = gray[y0:y1, x0:x1]
        small, sx, sy = downscale(gray, scale)
        inv = np.array([1 / sx, 1 / sy, 1 / sx, 1 / sy])
        off = np.array([x0, y0, x0, y0], np.float64)
        return [(b * inv + off, s) for b, s in self._run(np.ascontiguousarray(small))]

    def _context_faces(self, gray: np.ndarray, base: float) -> list[Face]:
        """The context retry: detect on a padded (and, for small frames, upsampled) copy; landmarks there too
        (an upsampled small face gives the predictor more pixels), everything mapped back to the frame."""
        h, w = gray.shape[:2]
        img, s, px, py = pad_and_scale(gray, self.pad, self.small_side, base)
        off = np.array([px, py], np.float32)
        faces = []
        for box, score in self._run(img):
            fb = box / s - np.concatenate([off, off])
            x0, y0, x1, y1 = np.clip(fb, [0, 0, 0, 0], [w, h, w, h])
            if min(x1 - x0, y1 - y0) < max(self.min_size, 2.0) or (x1 - x0) * (y1 - y0) < 0.25 * (
                    (fb[2] - fb[0]) * (fb[3] - fb[1])):
                continue  # mostly in the padding: a face of replicated border pixels
            lm = predict_landmarks68(img, box, self._predictor) / s - off
            faces.append(Face(box=np.array([x0, y0, x1, y1], np.float32), score=score,
                              landmarks68=lm.astype(np.float32)))
        return faces

    def _scale_for(self, max_side: int, longest: int) -> float:
        return 1.0 if max_side <= 0 else min(1.0, max_side / float(longest))

    def detect(self, rgb: np.ndarray, min_face: float | None = None,
               near: list[np.ndarray] | None = None) -> list[Face]:
        """Faces in ``rgb``, largest first.

        Hints from the caller (e.g. the faces of the previous kept frame of the same video), used together:
        ``min_face`` (frame pixels): no face smaller than this matters here, so the detector may run on a smaller
        copy -- one where ``min_face`` maps to ``ADAPTIVE_FACE_PX`` pixels; ``near`` (boxes, frame pixels): the
        faces are expected around these, so only the region covering each widened by ``ROI_MARGIN`` box sides is
        scanned. The hinted pass falls back to the normal scale and the whole frame when it finds nothing or a
        face cut by the region's edge. Without hints, every face the normal scale can resolve is returned; when
        there is none, the context retry (padded, upsampled copy) runs once.
        """
        import time

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"detect needs an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        t0, c0 = time.perf_counter(), time.thread_time()
        gray = _to_gray(rgb)
        base = self._scale_for(self.detect_max_side, max(h, w))
        boxes: list = []
        if min_face and self.kind == "hog":
            adapted = min(base, ADAPTIVE_FACE_PX / float(min_face))
            region = search_region(near, (h, w)) if near else None
            if adapted < 0.9 * base or region is not None:
                self.stats["adapted"] = self.stats.get("adapted", 0) + 1
                boxes = self._boxes(gray, adapted, region)
                if region is not None:
                    self.stats["roi"] = self.stats.get("roi", 0) + 1
                    if any(_cut_by_region(b, region, (h, w)) for b, _ in boxes):
                        self.stats["roi_rejected"] = self.stats.get("roi_rejected", 0) + 1
                        boxes = []  # a face at the region's inner edge may be cut: look at the whole frame
        if not boxes:
            boxes = self._boxes(gray, base)
        fallback = self._scale_for(self.fallback_max_side, max(h, w))
        if not boxes and self.fallback_max_side and fallback > base:
            self.stats["retries"] += 1
            boxes = self._boxes(gray, fallback)
        context: list[Face] = []
        if not boxes and (self.pad > 0 or self.small_side > max(h, w)):
            self.stats["context_retries"] += 1
            context = self._context_faces(gray, base)  # landmarks included (on the padded copy)
            self.stats["context_found"] += bool(context)
        t1, c1 = time.perf_counter(), time.thread_time()
        faces = context
        for box, score in boxes:
            x0, y0, x1, y1 = np.clip(box, [0, 0, 0, 0], [w, h, w, h])
            if min(x1 - x0, y1 - y0) < max(self.min_size, 2.0):
                continue
            lm = predict_landmarks68(gray, (x0, y0, x1, y1), self._predictor)
            faces.append(Face(box=np.array([x0, y0, x1, y1], np.float32), score=score, landmarks68=lm))
        self.stats["detect_s"] += t1 - t0
        self.stats["landmarks_s"] += time.perf_counter() - t1
        self.stats["detect_cpu_s"] += c1 - c0
        self.stats["landmarks_cpu_s"] += time.thread_time() - c1
        self.stats["frames"] += 1
        return sort_faces(faces)


@register_face_detector("dlib_hog")
def _dlib_hog(**opts) -> DlibDetector:
    return DlibDetector(kind="hog", **opts)


@register_face_detector("dlib_cnn")
def _dlib_cnn(**opts) -> DlibDetector:
    """dlib's MMOD CNN detector: more robust to pose, ~1 s per 640 px frame on one CPU core."""
    opts.setdefault("fallback_max_side", 0)
    return DlibDetector(kind="cnn", **opts)


class FallbackChain:
    """``first`` on every frame; ``second`` only on a full (unhinted) pass where ``first`` found no face -- so a
    slow, pose-robust detector costs nothing on the frames the fast one handles. Hints go to ``first`` only
    (a hinted pass that finds fewer faces is redone unhinted by ``FacePipeline``, and then ``second`` may run)."""

    def __init__(self, first: DlibDetector, second: FaceDetector) -> None:
        self.first, self.second = first, second
        self.name = f"{first.name}+{second.name}"
        self.fallbacks = 0

    @property
    def _predictor(self):  # for whole_image_face
        return self.first._predictor

    @property
    def stats(self) -> dict:
        """The two detectors' timing figures added up (what prepare reports per stage)."""
        a, b = self.first.stats, getattr(self.second, "stats", {})
        out = {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b) if isinstance(a.get(k, b.get(k)), (int, float))}
        out["second_runs"] = self.fallbacks
        return out

    def detect(self, rgb: np.ndarray, min_face: float | None = None,
               near: list[np.ndarray] | None = None) -> list[Face]:
        faces = self.first.detect(rgb, min_face=min_face, near=near)
        if faces or min_face or near:
            return faces
        self.fallbacks += 1
        return self.second.detect(rgb)


@register_face_detector("dlib_hog_cnn")
def _dlib_hog_cnn(**opts) -> FallbackChain:
    """HOG (with its context retry) on every frame, dlib's CNN only where HOG found nothing: the CNN's recall on
    turned faces at HOG's cost on frames HOG handles (options go to both). The CNN pads no frame (HOG's retry
    already looked at the padded copy; a padded CNN pass would add ~3 s to every faceless 720p frame) but still
    upsamples small images."""
    cnn_opts = {**opts, "pad": 0.0}
    return FallbackChain(DlibDetector(kind="hog", **opts), _dlib_cnn(**cnn_opts))


@register_face_detector("mtcnn")
def _mtcnn(**opts):
    """MTCNN boxes (facenet-pytorch, an optional by-hand install: see ``unmask.data.mtcnn``) + dlib landmarks."""
    from unmask.data.mtcnn import MtcnnDetector

    return MtcnnDetector(**opts)
