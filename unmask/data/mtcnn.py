"""MTCNN face boxes (facenet-pytorch, MIT, weights in its wheel) + dlib's 68 landmarks: an optional detector.

facenet-pytorch 2.6's metadata pins torch < 2.3, so it cannot be a dependency of this project (torch 2.13); it is
installed by hand, without its dependencies: ``pip install --no-deps facenet-pytorch==2.6.0``. Two of its
imports would then fail, so neither runs: its package ``__init__`` (imports ``requests`` for the recognition
model's weight download) is bypassed by loading ``facenet_pytorch.models.mtcnn`` under a bare package module, and
its ``torchvision.ops.batched_nms`` (refuses to run without torchvision's compiled ops, which PyPI's CUDA build
cannot load against CPU torch) is replaced by the same offset trick over ``torch.ops.torchvision.nms``, which
``unmask._compat.torchvision_ops`` provides.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np

from unmask.errors import UnmaskError

INSTALL_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


class MissingOptionalDependency(UnmaskError):
    """An optional detector's package is not installed; the message says how to install it."""


def _load_mtcnn_class():
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MissingOptionalDependency(f"the mtcnn face detector needs facenet-pytorch: {INSTALL_HINT}")
    from unmask._compat.torchvision_ops import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torch

    if "facenet_pytorch" not in sys.modules:
        pkg = types.ModuleType("facenet_pytorch")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["facenet_pytorch"] = pkg
    from facenet_pytorch.models import mtcnn as mt
    from facenet_pytorch.models.utils import detect_face as dfm

    def batched_nms(boxes, scores, idxs, threshold):
        if boxes.numel() == 0:
            return torch.empty((0,), dtype=torch.int64, device=boxes.device)
        offsets = idxs.to(boxes) * (boxes.max() + 1)
        return torch.ops.torchvision.nms(boxes + offsets[:, None], scores, threshold)

    dfm.batched_nms = batched_nms
    return mt.MTCNN


class MtcnnDetector:
    """MTCNN boxes on a copy whose longest side is at most ``detect_max_side``; 68 landmarks by dlib's predictor
    on the full-resolution frame. ``min_score``: MTCNN's final-stage probability a box needs."""

    name = "mtcnn"

    def __init__(self, detect_max_side: int = 640, min_face_size: int = 20, min_score: float = 0.9) -> None:
        import torch

        from unmask.data.faces import _shape_predictor, dlib_model_path

        cls = _load_mtcnn_class()
        self.net = cls(keep_all=True, device="cpu", min_face_size=int(min_face_size))
        self.net.eval()
        self.detect_max_side = int(detect_max_side)
        self.min_score = float(min_score)
        self._predictor = _shape_predictor(dlib_model_path())
        self._torch = torch

    def detect(self, rgb: np.ndarray):
        import cv2

        from unmask.data.faces import Face, predict_landmarks68, sort_faces

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"detect needs an HxWx3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        s = min(1.0, self.detect_max_side / float(max(h, w))) if self.detect_max_side else 1.0
        img = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else rgb
        with self._torch.no_grad():
            boxes, probs = self.net.detect(np.ascontiguousarray(img))
        if boxes is None:
            return []
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        faces = []
        for b, p in zip(boxes, probs):
            if p is None or p < self.min_score:
                continue
            box = np.clip(np.asarray(b, np.float64) / s, [0, 0, 0, 0], [w, h, w, h]).astype(np.float32)
            if min(box[2] - box[0], box[3] - box[1]) < 2:
                continue
            faces.append(Face(box=box, score=float(p), landmarks68=predict_landmarks68(gray, box, self._predictor)))
        return sort_faces(faces)
