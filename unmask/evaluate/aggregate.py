"""From per-face scores to the units a metric is computed on: frames or videos.

The rules follow paper 000 sec. 4.1 ("we extracted 32 frames from each video and selected the maximum
predicted value among all the faces in each frame as the prediction score for that frame. The average of
all frame prediction values was taken as the confidence score for the video ... for videos where no
faces were detected, we set the confidence score to 0.5") and paper 003 sec. IV-A-2 (32 frames at equal
intervals, frame scores averaged). They are explicit config fields, so a table says what it measured:

- frame score = max over the faces whose size is at least ``min_face_fraction`` (0.5) of the largest face
  in that frame (size = geometric mean of the box sides, ``FaceRecord.box_size``); tiny background faces
  do not get to decide a frame. Weak detections (detector score below ``unmask.data.faces.WEAK_SCORE``, HOG's
  rare false positives on clothing or background) count only in a frame with no surer face: a stored or
  detected false positive beside a real face must not decide the frame (it did, on the demo's pseudo-fake);
- video score = mean over the frames that have a face, at most ``num_frames`` (32) evenly spaced ones;
- a video with no face anywhere scores ``no_face_score`` (0.5) and is counted (``no_face``) in every report.

At frame level the unit is one frame with at least one face; items with no face have no frame to score,
so they are left out of frame-level metrics and reported in the ``no_face`` count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

import numpy as np

from unmask.data.faces import WEAK_SCORE


@dataclass
class AggregationConfig:
    """How per-face scores become the scored units (a field of every evaluation/protocol config)."""

    level: Literal["video", "frame"] = "video"
    num_frames: int = 32  # frames used per video (evenly spaced among the frames that have a face); 0 = all
    min_face_fraction: float = 0.5  # a face counts in its frame when size >= this * the largest face's size
    no_face_score: float = 0.5  # score of a video in which no face was found


@dataclass
class FaceScore:
    """The model's fake probability for one face of one frame of one item."""

    item: str  # item key (one video or image)
    frame_index: int
    face_index: int
    size: float  # face size in frame pixels (geometric mean of the box sides)
    score: float
    detector_score: float | None = None  # the face detector's confidence (None: unknown, counts as sure)
    score_raw: float | None = None  # the uncalibrated softmax when ``score`` is calibrated (None: same as score)


@dataclass
class ItemInfo:
    """What evaluation needs to know about an item besides its faces."""

    key: str
    label: int
    method: str = "unknown"
    dataset: str = ""
    video_id: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class UnitScore:
    """One scored unit: a video (level=video) or a frame (level=frame)."""

    item: str
    label: int
    method: str
    dataset: str
    score: float
    frame_index: int | None  # None at video level
    n_frames: int  # frames that contributed (0 for a no-face video)
    n_faces: int  # faces that contributed
    no_face: bool


def frame_score(scores: Sequence[float], sizes: Sequence[float], min_face_fraction: float = 0.5,
                confidences: Sequence[float | None] | None = None) -> float | None:
    """Max score over the counted faces (:func:`counted_faces`); None if no face."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return None
    if s.shape != np.asarray(sizes).shape:
        raise ValueError("scores and sizes differ in length")
    return float(s[counted_faces(sizes, min_face_fraction, confidences)].max())


def counted_faces(sizes: Sequence[float], min_face_fraction: float = 0.5,
                  confidences: Sequence[float | None] | None = None) -> np.ndarray:
    """Boolean mask of the faces the frame score considers: the sure faces when the frame has one (weak
    detections only when nothing surer was found), then the half-size rule among them."""
    z = np.asarray(sizes, dtype=np.float64)
    if z.size == 0:
        return np.zeros(0, dtype=bool)
    eligible = np.ones(z.shape, dtype=bool)
    if confidences is not None:
        sure = np.array([c is None or float(c) >= WEAK_SCORE for c in confidences], dtype=bool)
        if sure.shape != z.shape:
            raise ValueError("confidences and sizes differ in length")
        if sure.any():
            eligible = sure
    return eligible & (z >= min_face_fraction * z[eligible].max())


def video_score(frame_scores: Sequence[float | None], no_face_score: float = 0.5) -> tuple[float, int]:
    """(mean of the frame scores that exist, number of such frames); ``no_face_score`` when there are none."""
    vals = [float(v) for v in frame_scores if v is not None]
    if not vals:
        return float(no_face_score), 0
    return float(np.mean(vals)), len(vals)


def pick_evenly(items: Sequence, limit: int | None) -> list:
    """At most ``limit`` items spread evenly over ``items``, first and last included, in order (all of them
    when ``limit`` is 0/None or the list is short enough). Used for frames here and for faces in training."""
    items = list(items)
    if not limit or limit <= 0 or len(items) <= limit:
        return items
    picks = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


def evenly_spaced(values: Sequence[int], n: int) -> list[int]:
    """At most ``n`` evenly spaced elements of the sorted ``values`` (all of them when ``n`` <= 0 or enough)."""
    return pick_evenly(sorted(values), n)


def aggregate(faces: Iterable[FaceScore], items: Iterable[ItemInfo], cfg: AggregationConfig) -> list[UnitScore]:
    """Per-face scores + the list of items -> scored units (videos or frames), in the items' order.

    Every item in ``items`` yields at least one unit at video level (a no-face item scores
    ``cfg.no_face_score``); at frame level an item yields one unit per counted frame and none without faces.
    """
    by_item: dict[str, dict[int, list[FaceScore]]] = {}
    for f in faces:
        by_item.setdefault(f.item, {}).setdefault(int(f.frame_index), []).append(f)
    units: list[UnitScore] = []
    for info in items:
        frames = by_item.get(info.key, {})
        chosen = evenly_spaced(list(frames), cfg.num_frames)
        per_frame: list[tuple[int, float, int]] = []
        for idx in chosen:
            fs = frames[idx]
            sizes = [f.size for f in fs]
            conf = [f.detector_score for f in fs]
            keep = counted_faces(sizes, cfg.min_face_fraction, conf)
            sc = frame_score([f.score for f in fs], sizes, cfg.min_face_fraction, conf)
            per_frame.append((idx, sc, int(keep.sum())))
        if cfg.level == "frame":
            for idx, sc, nf in per_frame:
                units.append(UnitScore(item=info.key, label=info.label, method=info.method, dataset=info.dataset,
                                       score=sc, frame_index=idx, n_frames=1, n_faces=nf, no_face=False))
            continue
        score, n_frames = video_score([sc for _, sc, _ in per_frame], cfg.no_face_score)
        units.append(UnitScore(item=info.key, label=info.label, method=info.method, dataset=info.dataset,
                               score=score, frame_index=None, n_frames=n_frames,
                               n_faces=sum(nf for _, _, nf in per_frame), no_face=n_frames == 0))
    return units


def no_face_items(faces: Iterable[FaceScore], items: Iterable[ItemInfo]) -> list[str]:
    """Keys of the items that have no scored face at all."""
    seen = {f.item for f in faces}
    return [i.key for i in items if i.key not in seen]
