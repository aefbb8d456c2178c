"""Scoring faces with a Detector: from a prepared store, or from raw images/videos (``detect``, evaluate).

Both paths feed the model the same thing: the detector box widened by a fixed 12.5% per side (paper 000
sec. 4.1: "we fixed the cropping margin at 12.5%" at test time; ``unmask.data.crops.margin_crop``), resized
to the detector's input size, as [0, 1] NCHW floats. Faces are batched through the model; nothing is
decoded twice (a video's frames are sampled once by seeking, ``unmask.data.media.sample_video_frames``).

Robustness distortions (``unmask.evaluate.distortions``) are applied to the *raw frame* before face
detection and cropping, as paper 000 does. A prepared store has no raw frames, only SBI's large-margin crop
of each face (a crop of the raw frame, at most downscaled); there the distortion is applied to that stored
crop before the 12.5% re-crop -- the closest equivalent (see ``docs/evaluation.md`` for what differs).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from unmask.data.records import REAL
from unmask.evaluate.aggregate import FaceScore, ItemInfo, counted_faces, evenly_spaced, video_score

TEST_MARGIN = 0.125  # paper 000 sec. 4.1
Distortion = Callable[[np.ndarray], np.ndarray]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A face crop -> ``size`` x ``size`` RGB uint8, exactly as training resizes it (``crops.resize_face``)."""
    from unmask.data.crops import resize_face

    return resize_face(crop, size)


def to_batch(crops: Sequence[np.ndarray], size: int):
    """RGB uint8 crops (any size) -> float32 tensor (B, 3, size, size) in [0, 1]."""
    import torch

    arr = np.stack([resize_crop(c, size) for c in crops]) if crops else np.zeros((0, size, size, 3), np.uint8)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def predict_logits_tensor(detector, x, batch_size: int = 32, device: str | None = None) -> np.ndarray:
    """Logits (N, 2) as float64 of a (N, 3, S, S) [0, 1] tensor, ``batch_size`` images per pass."""
    import torch

    device = device or next(detector.parameters()).device
    out = []
    detector.eval()
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            out.append(detector(x[i:i + batch_size].to(device)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 2), np.float64)


def logits_to_probability(logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
    """Fake probability softmax(logits / T)[:, 1] in float64 (T None: the raw softmax)."""
    from unmask.evaluate.calibration import calibrated_probability

    return calibrated_probability(logits, temperature) if len(logits) else np.zeros(0, np.float64)


def predict_tensor(detector, x, batch_size: int = 32, device: str | None = None,
                   temperature: float | None = None) -> np.ndarray:
    """Fake probability (softmax(logits / T)[:, 1]; T None = raw) of a (N, 3, S, S) [0, 1] tensor."""
    return logits_to_probability(predict_logits_tensor(detector, x, batch_size, device), temperature)


def predict(detector, crops: Sequence[np.ndarray], batch_size: int = 32, device: str | None = None,
            temperature: float | None = None) -> np.ndarray:
    """Fake probability of every RGB crop (resized to the detector's input), ``batch_size`` per pass;
    calibrated with ``temperature`` when given (``unmask.evaluate.calibration``)."""
    return logits_to_probability(predict_logits(detector, crops, batch_size, device), temperature)


def predict_logits(detector, crops: Sequence[np.ndarray], batch_size: int = 32,
                   device: str | None = None) -> np.ndarray:
    """Logits (N, 2) of every RGB crop (resized to the detector's input), ``batch_size`` per pass."""
    out = [predict_logits_tensor(detector, to_batch(crops[i:i + batch_size], detector.input_size), batch_size,
                                 device)
           for i in range(0, len(crops), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 2), np.float64)


def box_size(box: Sequence[float]) -> float:
    """Geometric mean of the box sides (the size the half-size rule compares; ``FaceRecord.box_size``)."""
    w = max(float(box[2]) - float(box[0]), 0.0)
    h = max(float(box[3]) - float(box[1]), 0.0)
    return (w * h) ** 0.5


# --- raw media -------------------------------------------------------------------------------------------


@dataclass
class FaceResult:
    face_index: int
    box: list[float]  # (x0, y0, x1, y1) in frame pixels
    detector_score: float
    size: float
    window: tuple[int, int, int, int]  # the 12.5%-margin crop window in the frame
    score: float | None = None  # fake probability (calibrated when the model is; an ensemble's: mean of members')
    counted: bool = True  # passes the half-size rule of its frame
    score_raw: float | None = None  # the uncalibrated softmax (ensemble: mean of members' raw probabilities)
    per_model: list[float] = field(default_factory=list)  # each member's (calibrated) probability, in model order


@dataclass
class FrameResult:
    index: int
    faces: list[FaceResult] = field(default_factory=list)
    score: float | None = None  # frame score (max over counted faces); None when no face
    per_model: list[float | None] = field(default_factory=list)  # each member's own frame score


@dataclass
class MediaResult:
    """Everything ``detect`` reports about one file."""

    path: str
    kind: str  # "image" | "video" | "unknown"
    status: str  # "ok" | "no_face" | "error"
    reason: str | None = None
    warning: str | None = None  # a partly decodable video (truncated, frames lost): scored, but say so
    fake_probability: float | None = None  # calibrated (ensemble: see MediaScorer.ensemble)
    frames: list[FrameResult] = field(default_factory=list)
    probability_raw: float | None = None  # the same aggregation of the uncalibrated probabilities
    # one dict per model: model_id, probability (calibrated), probability_raw, threshold, temperature
    per_model: list[dict] = field(default_factory=list)
    width: int = 0
    height: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    # kept only when asked (heat maps): frame index -> RGB frame, and (frame, face) -> the crop the model saw
    frame_images: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    crops: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "warning": self.warning,
            "fake_probability": _r6(self.fake_probability),
            "probability_raw": _r6(self.probability_raw),
            "per_model": [{**m, "probability": _r6(m.get("probability")),
                           "probability_raw": _r6(m.get("probability_raw"))} for m in self.per_model],
            "width": self.width,
            "height": self.height,
            "frames": [
                {"index": fr.index,
                 "score": _r6(fr.score),
                 "per_model": [_r6(v) for v in fr.per_model],
                 "faces": [{"box": [round(float(v), 1) for v in f.box],
                            "score": _r6(f.score),
                            "score_raw": _r6(f.score_raw),
                            "per_model": [_r6(v) for v in f.per_model],
                            "detector_score": round(float(f.detector_score), 4),
                            "counted": bool(f.counted)} for f in fr.faces]}
                for fr in self.frames
            ],
        }


def _r6(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


# --- the models a MediaScorer runs --------------------------------------------------------------------------


def model_id(meta: dict) -> str:
    """A stable, readable id of a checkpoint: ``<run name>-<first 10 hex of the file's SHA-256>``.

    The run name is the run directory for ``best.pt`` / ``last.pt`` (else the file stem). The hash is of the
    file as loaded, so a recalibrated ``best.pt`` (``unmask calibrate``) gets a new id. An untrained model:
    ``untrained-<backbone>-seed<seed>``. The id is cached in ``meta["model_id"]`` once computed.
    """
    import hashlib

    if meta.get("model_id"):
        return str(meta["model_id"])
    path = meta.get("path")
    kind = meta.get("backbone") or meta.get("arch") or "model"
    if meta.get("untrained"):
        return f"untrained-{kind}-seed{meta.get('seed', 0)}"
    if not path:
        return f"{kind}-unsaved"  # a network never written to a file (tests, notebooks)
    p = Path(path)
    name = p.parent.name if p.name in ("best.pt", "last.pt") and p.parent.name else p.stem
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    meta["model_id"] = f"{name}-{h.hexdigest()[:10]}"
    return meta["model_id"]


@dataclass
class ScoringModel:
    """One detector as a MediaScorer runs it: its meta, id, temperature (None: uncalibrated), threshold.

    ``threshold`` is on the probability this model reports: the calibrated validation threshold when the
    checkpoint is calibrated, else its validation threshold, else 0.5 (``decision_threshold``).
    """

    detector: object
    meta: dict
    model_id: str
    temperature: float | None
    threshold: float

    @classmethod
    def from_meta(cls, detector, meta: dict | None) -> "ScoringModel":
        from unmask.evaluate.calibration import checkpoint_calibration

        meta = dict(meta) if meta is not None else dict(getattr(detector, "meta", dict)())
        cal = checkpoint_calibration(meta)
        return cls(detector=detector, meta=meta, model_id=model_id(meta),
                   temperature=None if cal is None else float(cal.temperature), threshold=decision_threshold(meta))

    def describe(self) -> dict:
        """What ``detect --format json`` and the server say about this model."""
        from unmask.evaluate.calibration import checkpoint_calibration

        cal = checkpoint_calibration(self.meta)
        return {"model_id": self.model_id, "checkpoint": self.meta.get("path"), "backbone": self.meta.get("backbone"),
                "arch": self.meta.get("arch"), "input_size": self.meta.get("input_size"),
                "untrained": bool(self.meta.get("untrained")), "threshold": self.threshold,
                "temperature": self.temperature, "calibration": None if cal is None else cal.to_meta()}


def ensemble_threshold(models: Sequence[ScoringModel]) -> float:
    """An ensemble's decision threshold: the mean of its members' thresholds.

    Each member's threshold is on its own calibrated probability (validation-chosen, or 0.5), and the ensemble
    probability is the mean of those probabilities, so the mean threshold is where the members' average
    verdict flips; for one model it is that model's threshold.
    """
    return float(np.mean([m.threshold for m in models])) if models else 0.5


def _error_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return msg or exc.__class__.__name__


class MediaScorer:
    """Face detection + 12.5% crops + batched Detector on images, videos and frame folders.

    One object per process (it holds the loaded networks). ``score(path)`` never raises for a bad file:
    the result says ``status="error"`` with a one-line reason, so a batch goes on.

    ``MediaScorer(detector, meta=meta)``: one model; with a calibrated checkpoint's meta the probabilities are
    calibrated (``score_raw`` / ``probability_raw`` keep the softmax). ``MediaScorer.ensemble([(det, meta),
    ...])``: several models; faces are found once per frame and every model scores the same crops.
    """

    def __init__(self, detector, face_detector=None, *, meta: dict | None = None, margin: float = TEST_MARGIN,
                 num_frames: int = 32, batch_size: int = 32, min_face_fraction: float = 0.5,
                 device: str | None = None, distortion: Distortion | None = None, max_side: int = 0,
                 models: Sequence[ScoringModel] | None = None) -> None:
        if face_detector is None:
            from unmask.data.faces import build_face_detector

            face_detector = build_face_detector("dlib_hog")
        self.models: list[ScoringModel] = list(models) if models else [ScoringModel.from_meta(detector, meta)]
        self.detector = self.models[0].detector  # the first model (Grad-CAM heat maps are drawn from it)
        self.face_detector = face_detector
        self.margin = float(margin)
        self.num_frames = int(num_frames)
        self.batch_size = int(batch_size)
        self.min_face_fraction = float(min_face_fraction)
        self.device = device or str(next(self.detector.parameters()).device)
        self.distortion = distortion
        self.max_side = int(max_side)

    @classmethod
    def ensemble(cls, members: Sequence[tuple[object, dict | None]], face_detector=None, **options) -> "MediaScorer":
        """A scorer over several (detector, meta) pairs: one face detection per frame, each model on the same
        crops. A face's probability is the mean of the members' calibrated probabilities, and frames and the
        file aggregate it like any detector's (frame = max over counted faces, file = mean over frames); each
        member's own file probability is in ``MediaResult.per_model`` (with one face per frame, the file
        probability is exactly their mean). The threshold is :func:`ensemble_threshold`."""
        from unmask.errors import UnmaskError

        if not members:
            raise UnmaskError("an ensemble needs at least one checkpoint")
        models = [ScoringModel.from_meta(d, m) for d, m in members]
        ids = [m.model_id for m in models]
        if len(set(ids)) < len(ids):
            raise UnmaskError(f"the same checkpoint is given twice ({', '.join(i for i in ids if ids.count(i) > 1)})")
        return cls(models[0].detector, face_detector, models=models, **options)

    @property
    def threshold(self) -> float:
        """The decision threshold of what ``score`` reports (one model: its own; an ensemble: the mean)."""
        return ensemble_threshold(self.models)

    def model_ids(self) -> list[str]:
        return [m.model_id for m in self.models]

    def load_frames(self, path: Path) -> tuple[str, list[tuple[int, np.ndarray]], str | None]:
        """(kind, frames, decode warning) of an image, video or frame folder; unreadable input -> MediaError."""
        from unmask.data.media import (MediaError, is_image, is_video, load_image, sample_frame_folder,
                                       sample_video_frames)

        if path.is_dir():  # a folder of frames (some benchmarks ship frames, e.g. WildDeepfake)
            sv = sample_frame_folder(path, self.num_frames)
            return "video", sv.frames, sv.decode_warning()
        if is_image(path):
            return "image", [(0, load_image(path))], None
        if is_video(path):
            sv = sample_video_frames(path, self.num_frames, max_side=self.max_side)
            return "video", sv.frames, sv.decode_warning()
        if not path.exists():
            raise MediaError(f"file not found: {path}")
        raise MediaError(f"not an image or video ({path.suffix or 'no extension'})")

    def score(self, path: str | os.PathLike, keep_images: bool = False) -> MediaResult:
        from unmask.data.crops import margin_crop
        from unmask.data.prepare import faces_for_frame
        from unmask.data.media import MediaError, is_image, is_video

        path = Path(path)
        kind = "image" if is_image(path) else "video" if (is_video(path) or path.is_dir()) else "unknown"
        res = MediaResult(path=str(path), kind=kind, status="error")
        t = {"decode": 0.0, "faces": 0.0, "crop": 0.0, "model": 0.0}
        res.timings = t
        t0 = time.perf_counter()
        try:
            kind, frames, res.warning = self.load_frames(path)
        except MediaError as exc:
            res.reason = _error_line(exc)
            return res
        except Exception as exc:  # an unexpected decoder failure is still one file's problem
            res.reason = f"cannot read: {_error_line(exc)}"
            return res
        res.kind = kind
        t["decode"] = time.perf_counter() - t0
        res.height, res.width = frames[0][1].shape[:2]
        crops: list[np.ndarray] = []
        owners: list[FaceResult] = []
        for index, rgb in frames:
            if self.distortion is not None:
                tc = time.perf_counter()
                rgb = self.distortion(rgb)
                t["decode"] += time.perf_counter() - tc
            tf = time.perf_counter()
            faces = faces_for_frame(rgb, self.face_detector)  # the same code `unmask prepare` runs
            t["faces"] += time.perf_counter() - tf
            tc = time.perf_counter()
            fr = FrameResult(index=int(index))
            keep = counted_faces([box_size(f.box) for f in faces], self.min_face_fraction, [f.score for f in faces])
            for j, face in enumerate(faces):
                mc = margin_crop(rgb, face.box, None, self.margin)
                fres = FaceResult(face_index=j, box=[float(v) for v in face.box], detector_score=float(face.score),
                                  size=box_size(face.box), window=tuple(int(v) for v in mc.window),
                                  counted=bool(keep[j]))
                fr.faces.append(fres)
                crops.append(mc.image)
                owners.append(fres)
                if keep_images:
                    res.crops[(fr.index, j)] = mc.image
            res.frames.append(fr)
            if keep_images:
                res.frame_images[fr.index] = rgb
            t["crop"] += time.perf_counter() - tc
        cal, raw = [], []  # per model: (n_faces,) calibrated and raw probabilities
        batches: dict[int, object] = {}
        for m in self.models:
            size = int(m.detector.input_size)
            tc = time.perf_counter()
            if size not in batches:
                batches[size] = to_batch(crops, size)  # resize + [0, 1] tensor: part of cropping
            t["crop"] += time.perf_counter() - tc
            tm = time.perf_counter()
            logits = predict_logits_tensor(m.detector, batches[size], self.batch_size, self.device)
            t["model"] += time.perf_counter() - tm
            raw.append(logits_to_probability(logits, None))
            cal.append(logits_to_probability(logits, m.temperature) if m.temperature is not None else raw[-1])
        cal_mean = np.mean(cal, axis=0) if owners else np.zeros(0)
        raw_mean = np.mean(raw, axis=0) if owners else np.zeros(0)
        for k, f in enumerate(owners):
            f.score, f.score_raw = float(cal_mean[k]), float(raw_mean[k])
            f.per_model = [float(c[k]) for c in cal]
        owner_index = {id(f): k for k, f in enumerate(owners)}

        def frame_of(values: np.ndarray, fr: FrameResult) -> float | None:
            counted = [float(values[owner_index[id(f)]]) for f in fr.faces if f.counted]
            return max(counted) if counted else None

        for fr in res.frames:
            if fr.faces:
                fr.score = frame_of(cal_mean, fr)
                fr.per_model = [frame_of(c, fr) for c in cal]
        score, n = video_score([fr.score for fr in res.frames], no_face_score=0.5)
        if n == 0:
            res.status = "no_face"
            res.reason = f"no face found in {len(frames)} frame{'s' if len(frames) != 1 else ''}"
            return res
        res.status = "ok"
        res.fake_probability = score
        res.probability_raw = video_score([frame_of(raw_mean, fr) if fr.faces else None for fr in res.frames],
                                          no_face_score=0.5)[0]
        for j, m in enumerate(self.models):
            res.per_model.append({
                "model_id": m.model_id,
                "probability": video_score([frame_of(cal[j], fr) if fr.faces else None for fr in res.frames],
                                           no_face_score=0.5)[0],
                "probability_raw": video_score([frame_of(raw[j], fr) if fr.faces else None for fr in res.frames],
                                               no_face_score=0.5)[0],
                "threshold": m.threshold, "temperature": m.temperature})
        return res


def media_face_scores(result: MediaResult, item: str) -> list[FaceScore]:
    """A MediaResult's faces as FaceScores (for evaluation's aggregation)."""
    return [FaceScore(item=item, frame_index=fr.index, face_index=f.face_index, size=f.size, score=float(f.score),
                      detector_score=f.detector_score, score_raw=f.score_raw)
            for fr in result.frames for f in fr.faces if f.score is not None]


# --- prepared store ---------------------------------------------------------------------------------------


@dataclass
class Scored:
    """Per-face scores of an evaluation set, every item that should be scored, and the items that failed."""

    faces: list[FaceScore]
    items: list[ItemInfo]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item key, one-line reason)
    failed_items: list[ItemInfo] = field(default_factory=list)  # the same items, with their details (scores.csv)
    skipped: list = field(default_factory=list)  # adapter entries that are not items (media.SkippedEntry), raw data


def select_records(records: Sequence, num_frames: int) -> list:
    """Keep at most ``num_frames`` evenly spaced frames (all their faces) per item."""
    by_item: dict[str, dict[int, list]] = {}
    for r in records:
        by_item.setdefault(r.item_key, {}).setdefault(int(r.frame_index), []).append(r)
    out = []
    for key in by_item:
        for idx in evenly_spaced(list(by_item[key]), num_frames):
            out.extend(by_item[key][idx])
    return out


def probe_frame_size(source: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of a video or image from its header (no decoding); None if it cannot be read."""
    from unmask.data.media import is_image

    try:
        if is_image(source):
            from PIL import Image

            with Image.open(source) as im:
                return int(im.size[0]), int(im.size[1])
        import av

        with av.open(str(source), metadata_errors="ignore") as c:
            st = c.streams.video[0]
            w, h = int(st.codec_context.width), int(st.codec_context.height)
            return (w, h) if w and h else None
    except Exception:
        return None


def stored_frame_size(outcome) -> tuple[int, int] | None:
    """A stored item's frame size: from its record when prepare wrote it, else from the source's header."""
    rec = getattr(outcome, "record", {}) or {}
    size = rec.get("size")  # [width, height] of the decoded frames (unmask.data.prepare)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(size):
        return int(size[0]), int(size[1])
    return probe_frame_size(outcome.row.source)


def distort_stored_crop(crop: np.ndarray, kind: str, params: dict, crop_scale: float,
                        crop_origin: tuple[int, int], frame_size: tuple[int, int] | None) -> np.ndarray:
    """Apply a raw-frame distortion to a stored face crop as closely as the crop allows.

    The stored crop is a window of the raw frame at ``crop_scale`` (crop px per frame px, <= 1). It is
    brought back to frame resolution (bicubic) and put at its place in a frame-sized canvas whose outside is
    the crop's edge replicated; the distortion runs on that canvas -- so ``resize`` sees the W x H -> s x s
    geometry and JPEG its 8x8 / 16x16 block grid exactly where the frame had them -- and the window is cut
    back out and brought back to the stored size. Measured on FF++ frames (480p, 720p): for a crop stored at
    full resolution the result is within 0.05 grey levels (mean abs) of the same window of the distorted
    frame; for one the store downscaled (x0.7) within 0.1-0.5, against 0.4-3 for no distortion. What cannot be reproduced: detail the store lost when it downscaled large faces, pixels near
    the window's edge (they see replicated padding), and that faces were detected on the undistorted frame.
    Without ``frame_size`` the crop is only padded to the block grid (``resize`` then needs the frame size).
    """
    import cv2

    from unmask.errors import UnmaskError
    from unmask.evaluate.distortions import build_distortion

    if kind == "raw":
        return crop
    h, w = crop.shape[:2]
    scaled = abs(crop_scale - 1.0) > 1e-3
    img = cv2.resize(crop, (max(1, round(w / crop_scale)), max(1, round(h / crop_scale))),
                     interpolation=cv2.INTER_CUBIC) if scaled else crop
    ih, iw = img.shape[:2]
    x0, y0 = int(crop_origin[0]), int(crop_origin[1])
    fn = build_distortion(kind, **params)
    if frame_size is not None:
        fw, fh = int(frame_size[0]), int(frame_size[1])
        canvas = cv2.copyMakeBorder(img, y0, max(fh - y0 - ih, 0), x0, max(fw - x0 - iw, 0), cv2.BORDER_REPLICATE)
        out = fn(canvas)[y0:y0 + ih, x0:x0 + iw]
    elif kind == "resize":
        raise UnmaskError("the resize distortion needs the frame size of a stored item (source not readable)")
    else:
        px, py = x0 % 16, y0 % 16  # JPEG's chroma blocks are 16x16 with 4:2:0 subsampling
        out = fn(cv2.copyMakeBorder(img, py, 0, px, 0, cv2.BORDER_REPLICATE))[py:, px:]
    if scaled:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out)


def _crop_scale(r) -> float:
    fw = float(r.frame_box[2] - r.frame_box[0])
    return float(r.box[2] - r.box[0]) / fw if fw > 0 else 1.0


def score_records(detector, records: Sequence, *, margin: float = TEST_MARGIN, batch_size: int = 32,
                  device: str | None = None, distortion: tuple[str, dict] | None = None,
                  frame_sizes: dict[str, tuple[int, int] | None] | None = None,
                  load_rgb: Callable[[str], np.ndarray] | None = None, progress: bool = False,
                  desc: str = "scoring", temperature: float | None = None) -> list[FaceScore]:
    """Score stored face records: (distort the stored crop) -> 12.5% crop around the box -> model.

    ``distortion``: ``(kind, params)`` of ``unmask.evaluate.distortions``, applied via ``distort_stored_crop``.
    ``temperature``: the checkpoint's calibration; ``FaceScore.score`` is then calibrated and ``score_raw``
    keeps the softmax (without it both are the softmax).
    """
    from unmask.data.crops import margin_crop

    if load_rgb is None:
        from unmask.data.store import load_rgb
    out: list[FaceScore] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc=desc, unit="face", leave=False)
    try:
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            crops = []
            for r in chunk:
                img = load_rgb(r.crop_path)
                if distortion is not None and distortion[0] != "raw":
                    img = distort_stored_crop(img, distortion[0], distortion[1], _crop_scale(r), r.crop_origin,
                                              (frame_sizes or {}).get(r.item_key))
                crops.append(margin_crop(img, r.box, None, margin).image)
            logits = predict_logits(detector, crops, batch_size, device)
            probs_raw = logits_to_probability(logits, None)
            probs = logits_to_probability(logits, temperature) if temperature is not None else probs_raw
            for r, p, q in zip(chunk, probs, probs_raw):
                out.append(FaceScore(item=r.item_key, frame_index=int(r.frame_index), face_index=int(r.face_index),
                                     size=box_size(r.frame_box), score=float(p), detector_score=float(r.score),
                                     score_raw=float(q)))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return out


def _row_matches(row, splits, methods, datasets) -> bool:
    if splits is not None and row.split not in splits:
        return False
    if methods is not None and int(row.label) != REAL and str(row.method).lower() not in {m.lower() for m in methods}:
        return False  # ``methods`` selects fakes; reals are always evaluated against them
    if datasets is not None and row.dataset not in datasets:
        return False
    return True


def display_source(row, root: str | os.PathLike | None = None) -> str:
    """The item's source as the user can join it back: the path as written in their CSV, else relative to the
    dataset root, else the absolute path."""
    extra = getattr(row, "extra", None) or {}
    if extra.get("csv_path"):
        return str(extra["csv_path"])
    if root is not None:
        base = Path(root)
        base = base.parent if base.is_file() else base
        try:
            return Path(row.source).relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return str(row.source)


def row_columns(row) -> dict:
    """Every groupable column of a row: its fields and the adapter's extra columns (a CSV's own columns)."""
    cols = {"dataset": row.dataset, "method": row.method, "label": int(row.label), "split": row.split,
            "compression": row.compression, "identity": row.identity}
    cols.update({k: v for k, v in (getattr(row, "extra", None) or {}).items()
                 if k != "csv_path" and isinstance(v, (str, int, float, bool, type(None)))})
    return cols


def item_info(row, key: str | None = None, *, root: str | os.PathLike | None = None, status: str = "ok",
              reason: str | None = None, warning: str | None = None, frames_sampled: int | None = None,
              frames_with_face: int | None = None) -> ItemInfo:
    """An item for evaluation, carrying what ``scores.csv`` reports about it (``ItemInfo.extra``)."""
    extra = {"source": display_source(row, root), "status": status, "reason": reason, "warning": warning,
             "frames_sampled": frames_sampled, "frames_with_face": frames_with_face, "columns": row_columns(row)}
    return ItemInfo(key=key or row.key, label=int(row.label), method=row.method, dataset=row.dataset,
                    video_id=row.video_id, extra=extra)


def _stored_item_info(o) -> ItemInfo:
    """ItemInfo of a prepared item, with its outcome and decode warning from the item record."""
    from unmask.data.media import decode_warning
    from unmask.data.store import FAILED, OK

    rec = o.record or {}
    warning = decode_warning(rec.get("warning"), int(rec.get("frame_count") or 0),
                             int(rec.get("container_frame_count") or 0), rec.get("missing"), rec.get("targets"))
    reason = rec.get("reason") if o.status == FAILED else (None if o.status == OK else o.outcome)
    return item_info(o.row, o.key, status=o.status, reason=reason, warning=warning, frames_sampled=o.frames_kept,
                     frames_with_face=o.frames_with_face)


def score_store(detector, store, *, splits: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                datasets: Sequence[str] | None = None, num_frames: int = 32, margin: float = TEST_MARGIN,
                batch_size: int = 32, device: str | None = None, distortion: tuple[str, dict] | None = None,
                progress: bool = False, desc: str = "scoring", temperature: float | None = None) -> Scored:
    """Score a prepared store's faces; every selected item is listed (no-face ones too), failed ones apart.

    ``methods`` selects fake methods (reals are always kept: a metric needs both classes).
    """
    from unmask.data.store import FAILED

    outcomes = [o for o in store.items() if _row_matches(o.row, splits, methods, datasets)]
    items = [_stored_item_info(o) for o in outcomes if o.status != FAILED]
    failed = [(o.key, o.outcome) for o in outcomes if o.status == FAILED]
    failed_items = [_stored_item_info(o) for o in outcomes if o.status == FAILED]
    keys = {i.key for i in items}
    records = [r for r in store.faces(split=splits, datasets=datasets) if r.item_key in keys]
    records = select_records(records, num_frames)
    frame_sizes = None
    if distortion is not None and distortion[0] != "raw":
        frame_sizes = {o.key: stored_frame_size(o) for o in outcomes}
    faces = score_records(detector, records, margin=margin, batch_size=batch_size, device=device,
                          distortion=distortion, frame_sizes=frame_sizes, progress=progress, desc=desc,
                          temperature=temperature)
    return Scored(faces=faces, items=items, failed=failed, failed_items=failed_items)


def media_status(res: MediaResult) -> tuple[str, str | None]:
    """A MediaResult as a store-style outcome: (ok | partial | no_face | failed, reason)."""
    if res.status == "error":
        return "failed", res.reason or "error"
    n, with_face = len(res.frames), sum(1 for fr in res.frames if fr.faces)
    if with_face == 0:
        return "no_face", res.reason or f"no face in {n} of {n} frames"
    if with_face < n:
        return "partial", f"no face in {n - with_face} of {n} frames"
    return "ok", None


def score_rows(scorer: "MediaScorer", rows: Sequence, *, root: str | os.PathLike | None = None,
               progress: bool = False, desc: str = "scoring") -> Scored:
    """Score raw media listed by a dataset adapter (``ManifestRow``s) with a MediaScorer.

    ``root``: the dataset root (or CSV) the rows came from; ``scores.csv`` shows sources relative to it.
    """
    faces: list[FaceScore] = []
    items: list[ItemInfo] = []
    failed: list[tuple[str, str]] = []
    failed_items: list[ItemInfo] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc=desc, unit="item", leave=False)
    try:
        for row in rows:
            res = scorer.score(row.source)
            status, reason = media_status(res)
            info = item_info(row, root=root, status=status, reason=reason, warning=res.warning,
                             frames_sampled=len(res.frames), frames_with_face=sum(1 for fr in res.frames if fr.faces))
            if res.status == "error":
                failed.append((row.key, res.reason or "error"))
                failed_items.append(info)
            else:
                items.append(info)
                faces.extend(media_face_scores(res, row.key))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return Scored(faces=faces, items=items, failed=failed, failed_items=failed_items)


# --- the model a command scores with -----------------------------------------------------------------------

UNTRAINED_NOTE = "untrained model (--untrained): ImageNet/random weights, the scores are meaningless"


def open_detector(checkpoint: str | None, *, untrained: bool = False, backbone: str = "tf_efficientnet_lite0",
                  pretrained: str | None = "efficientnet_lite0_pypi", device: str | None = None, seed: int = 0):
    """(Detector, meta) from a checkpoint, or an untrained one when explicitly asked for.

    Without a checkpoint a score means nothing, so that is an error unless ``untrained`` is set; the
    untrained meta carries ``untrained: True`` and a note every report repeats. The untrained model's random
    weights (the head, and everything with ``pretrained=None``) are drawn from ``seed`` on a forked torch RNG,
    so the same seed gives the same model (and scores) every run without touching the global RNG.
    """
    from unmask.errors import UnmaskError

    device = device or default_device()
    if checkpoint:
        from unmask.models import load_detector

        det, meta = load_detector(checkpoint, device=device)
        meta = dict(meta)
        meta["untrained"] = False
        return det, meta
    if not untrained:
        raise UnmaskError("no --checkpoint given; pass a trained checkpoint (file or run dir), or --untrained to "
                          "run an untrained backbone whose scores are meaningless")
    import torch

    from unmask.models import build_detector

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        det = build_detector(backbone, pretrained=pretrained)
    det.to(device).eval()
    meta = dict(det.meta())
    meta.update({"untrained": True, "note": UNTRAINED_NOTE, "path": None, "seed": int(seed)})
    return det, meta


def decision_threshold(meta: dict, calibrated: bool = True) -> float:
    """The threshold a verdict on this checkpoint's probability uses.

    Calibrated probabilities (``calibrated`` and the checkpoint has a calibration): the calibration's own
    validation-chosen threshold on calibrated video scores, else 0.5 (a calibrated probability's natural
    threshold; the raw threshold would be on the wrong scale). Raw probabilities: ``checkpoint_threshold``,
    else 0.5.
    """
    from unmask.evaluate.calibration import checkpoint_calibration

    cal = checkpoint_calibration(meta) if calibrated else None
    if cal is not None:
        return float(cal.threshold) if cal.threshold is not None else 0.5
    t = checkpoint_threshold(meta)
    return 0.5 if t is None else t


def threshold_source(meta: dict) -> str:
    """Where a checkpoint's decision threshold was chosen, in words, for reports: a pair method's is chosen on
    real faces and pseudo-fakes made from them (``data.val_fakes: pseudo``), which is not the same as a threshold
    chosen on real forgeries, and a reader of Acc@thr needs to know which."""
    val = meta.get("val") if isinstance(meta.get("val"), dict) else {}
    split = (meta.get("config") or {}).get("data", {}).get("val_split") if isinstance(meta.get("config"), dict) else None
    where = f"the {split} split" if split else "the validation split"
    if val.get("fakes") == "pseudo":
        recipe = str(val.get("fake_source", "pseudo")).partition(":")[2] or "the training recipe"
        return f"chosen on {where}'s real faces and fixed-seed {recipe} pseudo-fakes of them (data.val_fakes=pseudo)"
    if val.get("fakes") == "real":
        return f"chosen on {where}'s real and manipulated videos (data.val_fakes=real)"
    return f"chosen on {where} when the checkpoint was trained"


def checkpoint_threshold(meta: dict) -> float | None:
    """The validation-chosen decision threshold a checkpoint records, if any."""
    for holder in (meta, meta.get("val") or {}):
        for key in ("threshold", "val_threshold", "best_threshold"):
            v = holder.get(key) if isinstance(holder, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
    return None
