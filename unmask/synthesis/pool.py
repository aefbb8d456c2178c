"""The donor pool of Face X-ray blended images (BI): other identities' faces, searched by landmark shape.

Face X-ray (Li et al., CVPR 2020, sec. 4) blends a target face with a donor face of another identity whose
landmarks are close, so the blend is plausible: we normalize each face's 68 landmarks for position and
scale (centroid 0, RMS radius 1; pose and expression stay), take the ``top_k`` nearest shapes by Euclidean
distance among faces of a *different* identity, and draw one uniformly. Images are loaded on demand, so a
pool over a whole prepared store costs only its landmark matrix in memory.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import cv2
import numpy as np

from unmask.synthesis.landmarks import SynthesisError


def normalize_shape(landmarks: np.ndarray) -> np.ndarray:
    """68 landmarks -> a (136,) float32 shape vector with centroid 0 and RMS radius 1."""
    p = np.asarray(landmarks, dtype=np.float64)[:68]
    p = p - p.mean(axis=0)
    r = np.sqrt((p ** 2).sum(axis=1).mean())
    return (p / max(r, 1e-9)).reshape(-1).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` (Umeyama)."""
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    ms, md = s.mean(axis=0), d.mean(axis=0)
    s0, d0 = s - ms, d - md
    cov = d0.T @ s0 / len(s)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    var = (s0 ** 2).sum() / len(s)
    scale = float((sig * np.diag(sign)).sum() / max(var, 1e-12))
    t = md - scale * rot @ ms
    return np.concatenate([scale * rot, t[:, None]], axis=1)


def mean_std_transfer(donor: np.ndarray, target: np.ndarray, region: np.ndarray,
                      max_gain: float = 1.5) -> np.ndarray:
    """Colour-correct ``donor`` so its per-channel mean/std inside ``region`` match the target's (one LUT).

    The contrast gain is clamped to [1/max_gain, max_gain]: a flat donor region (or hair and background
    caught in the region) would otherwise blow the colours up.
    """
    sel = region > 0.5
    if int(sel.sum()) < 16:
        return donor
    d = donor[sel].astype(np.float32)
    t = target[sel].astype(np.float32)
    md, sd = d.mean(axis=0), d.std(axis=0) + 1e-3
    mt, st = t.mean(axis=0), t.std(axis=0)
    ramp = np.arange(256, dtype=np.float32)[:, None]
    gain = np.clip(st / sd, 1.0 / max_gain, max_gain)
    lut = np.clip(np.rint((ramp - md) * gain + mt), 0, 255).astype(np.uint8)
    return cv2.LUT(donor, lut.reshape(256, 1, 3))


class DonorPool:
    """Faces (landmarks + a way to load each image) that can serve as Face X-ray donors."""

    def __init__(self, landmarks: Sequence[np.ndarray], identities: Sequence[Any],
                 load: Callable[[int], np.ndarray], names: Sequence[str] | None = None) -> None:
        if len(landmarks) != len(identities):
            raise ValueError("landmarks and identities must have the same length")
        self._lm = [np.asarray(x, np.float32) for x in landmarks]
        self._shapes = (np.stack([normalize_shape(x) for x in self._lm]) if self._lm
                        else np.zeros((0, 136), np.float32))
        self._ids = np.array([str(i) if i is not None else f"#{k}" for k, i in enumerate(identities)], dtype=object)
        self._load = load
        self._names = list(names) if names is not None else [str(i) for i in self._ids]

    def __len__(self) -> int:
        return len(self._lm)

    @classmethod
    def from_arrays(cls, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray],
                    identities: Sequence[Any]) -> "DonorPool":
        imgs = list(images)
        return cls(landmarks, identities, lambda i: imgs[i])

    @classmethod
    def from_faces(cls, faces: Sequence[Any], loader: Callable[[Any], np.ndarray] | None = None) -> "DonorPool":
        """A pool over prepared ``FaceRecord`` s; identity = ``record.identity`` or its video id."""
        if loader is None:
            from unmask.data.store import load_rgb

            def loader(rec: Any) -> np.ndarray:
                return load_rgb(rec.crop_path)

        recs = list(faces)
        ids = [getattr(r, "identity", None) or getattr(r, "video_id", None) for r in recs]
        names = [f"{getattr(r, 'video_id', '?')}/{getattr(r, 'frame_index', 0)}" for r in recs]
        return cls([r.landmarks for r in recs], ids, lambda i: loader(recs[i]), names=names)

    def landmarks(self, index: int) -> np.ndarray:
        return self._lm[index]

    def identity(self, index: int) -> str:
        return str(self._ids[index])

    def name(self, index: int) -> str:
        """A human label of the face (video id / frame index) for records and gallery captions."""
        return self._names[index]

    def image(self, index: int) -> np.ndarray:
        return self._load(index)

    def nearest(self, landmarks: np.ndarray, identity: Any = None, top_k: int = 100) -> np.ndarray:
        """Indices of the ``top_k`` nearest shapes of other identities, nearest first.

        Faces of ``identity`` (and, when no identity is given, any face with exactly the query's shape --
        the query itself) are excluded.
        """
        if len(self) == 0:
            return np.zeros(0, np.int64)
        q = normalize_shape(landmarks)
        dist = np.sqrt(((self._shapes - q[None]) ** 2).sum(axis=1))
        ok = dist > 1e-6
        if identity is not None:
            ok &= self._ids != str(identity)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return idx
        order = idx[np.argsort(dist[idx], kind="stable")]
        return order[:top_k]

    def draw(self, landmarks: np.ndarray, identity: Any, top_k: int, rng: np.random.Generator) -> int:
        """One donor index, uniform among the ``top_k`` nearest; a clear error when the pool has none."""
        cand = self.nearest(landmarks, identity, top_k)
        if len(cand) == 0:
            raise SynthesisError(f"the donor pool has no face of another identity than {identity!r} "
                                 f"({len(self)} faces): Face X-ray BI needs at least two identities")
        return int(cand[int(rng.integers(len(cand)))])
