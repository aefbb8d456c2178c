"""The records that flow between unmask's stages: adapters -> prepare -> store -> training/evaluation.

Kept in one small module with no heavy imports so that every stage (and every test) agrees on them.
Coordinates are pixels, (x, y), float32; boxes are (x0, y0, x1, y1).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

REAL = 0
FAKE = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    """One item of a benchmark (a video, an image or a frame folder) as a dataset adapter sees it."""

    dataset: str  # adapter name, e.g. "ffpp"
    video_id: str  # e.g. "183" (FF++ original) or "183_253" (FF++ manipulated: target_source)
    label: int  # REAL (0) or FAKE (1)
    method: str  # "real" for originals, else the manipulation method ("Deepfakes", ...)
    source: str  # absolute path to the video file, image file or frame folder
    split: str | None = None  # "train" / "val" / "test", or None when the benchmark has no official split
    compression: str | None = None  # "raw" / "c23" / "c40" where the benchmark has it
    identity: str | None = None  # identity or pair id, e.g. "183_253" for both 183 and its fakes
    mask_source: str | None = None  # manipulation-mask video/folder where the benchmark ships one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable, filesystem-safe id of the item inside a prepared store."""
        parts = [self.dataset, self.method, self.compression or "na", self.video_id]
        return "/".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in parts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ManifestRow":
        return cls(**d)


@dataclass
class FaceRecord:
    """One stored face crop and everything training / evaluation needs about it.

    ``box`` and ``landmarks`` are in the coordinates of the stored crop. The crop is SBI's large-margin
    crop (landmark box widened by w/2 left and right, h above, 0.4h below, clamped to the frame), so
    training can re-crop from ``box`` with random margins and evaluation with a fixed one.
    """

    item_key: str
    dataset: str
    video_id: str
    label: int
    method: str
    split: str | None
    frame_index: int  # index of the frame in the source video (0 for images)
    face_index: int  # 0 = largest face in the frame
    crop_path: str  # absolute path to the crop PNG (RGB)
    box: np.ndarray  # (4,) detector box in crop coordinates
    landmarks: np.ndarray  # (81, 2) landmarks in crop coordinates (68 dlib points + 13 forehead points)
    score: float  # detector confidence
    frame_box: np.ndarray  # (4,) detector box in frame coordinates
    crop_origin: tuple[int, int]  # (x, y) of the crop's top-left corner in the frame
    mask_path: str | None = None  # manipulation mask crop PNG (uint8, same size as the crop) when known
    identity: str | None = None
    fallback: str | None = None  # "whole_image": no face was detected, the face-crop item is its own face

    @property
    def box_size(self) -> float:
        """Geometric mean of the detector box sides in *frame* pixels, for the "at least half the largest
        face" rule: crops of one frame may be stored at different scales, frame boxes never are."""
        w = float(self.frame_box[2] - self.frame_box[0])
        h = float(self.frame_box[3] - self.frame_box[1])
        return max(w, 0.0) ** 0.5 * max(h, 0.0) ** 0.5
