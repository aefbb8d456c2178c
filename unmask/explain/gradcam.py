"""Grad-CAM heat maps for a Detector, overlaid on the face crop and pasted back onto the frame.

Grad-CAM (Selvaraju et al., ICCV 2017) weighs the channels of a convolutional layer by the spatially
averaged gradient of a target and keeps the positive part; pytorch-grad-cam computes it. The target is the
fake-vs-real log-odds (logit_fake - logit_real), the quantity the score is a function of. The layer
is the detector's ``cam_layer`` (its last convolutional stage, chosen by ``unmask.models``), and the input
is the same [0, 1] crop the detector scores, so the map explains exactly the score ``detect`` prints.
``cam_target`` picks another quantity (``CAM_TARGETS``): ``fake_prob`` is paper 001's eq. 3 as printed (the
gradient of the predicted score y^ = softmax(logits)[fake]); for two logits y^ = sigmoid(log-odds), so its gradient
is y^(1 - y^) times the log-odds' -- a positive factor per face, which the ReLU and the per-face min-max scaling
remove: ``fake_prob`` and ``logodds`` give the same map, except that y^(1 - y^) underflows on confident faces, so
``logodds`` is the default everywhere (``unmask prle-maps`` included). ``fake_logit`` is the fake logit alone;
``predicted`` the log-odds of the class each face is called (|log-odds|: what makes a real face look real).
Each map is min-max scaled to [0, 1] per face (pytorch-grad-cam's convention): it shows *where* the
evidence is, not how strong it is -- the score says that.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from unmask.data.records import FAKE


class LogOddsTarget:
    """Grad-CAM target: the logit of ``cls`` minus the other one -- the log-odds the softmax turns into the
    score, so the map shows what pushes the fake probability up (the ``fake`` logit alone also moves with
    evidence common to both classes, and is often negative everywhere on a face called real)."""

    def __init__(self, cls: int = FAKE) -> None:
        self.cls = int(cls)

    def __call__(self, output):
        return output[..., self.cls] - output[..., 1 - self.cls]


class FakeLogitTarget:
    """Grad-CAM target: the logit of ``cls`` alone."""

    def __init__(self, cls: int = FAKE) -> None:
        self.cls = int(cls)

    def __call__(self, output):
        return output[..., self.cls]


class ProbTarget:
    """Grad-CAM target: the softmax probability of ``cls`` (paper 001 eq. 3's y^ for ``cls`` = fake)."""

    def __init__(self, cls: int = FAKE) -> None:
        self.cls = int(cls)

    def __call__(self, output):
        return output.float().softmax(-1)[..., self.cls]


class PredictedTarget:
    """Grad-CAM target: the log-odds of the class the face is called, |logit_fake - logit_real| (its gradient is
    the fake log-odds' for a face called fake and the real log-odds' for a face called real)."""

    def __call__(self, output):
        return (output[..., FAKE] - output[..., 1 - FAKE]).abs()


CAM_TARGETS = ("logodds", "fake_logit", "fake_prob", "predicted")


def cam_target_object(name: str, cls: int = FAKE):
    """The pytorch-grad-cam target for a ``CAM_TARGETS`` name (``cls`` = the class of the first three)."""
    if name == "logodds":
        return LogOddsTarget(cls)
    if name == "fake_logit":
        return FakeLogitTarget(cls)
    if name == "fake_prob":
        return ProbTarget(cls)
    if name == "predicted":
        return PredictedTarget()
    from unmask.errors import UnmaskError

    raise UnmaskError(f"unknown Grad-CAM target {name!r} (one of: {', '.join(CAM_TARGETS)})")


def gradcam_maps(detector, batch, target: int = FAKE, layer=None,
                 cam_target: str = "logodds") -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of class ``target``'s log-odds (or of ``cam_target``, see the module docstring) for a
    (B, 3, S, S) [0, 1] batch.

    Returns (maps (B, S, S) in [0, 1], fake probabilities (B,)). A map is all zero when nothing in the face
    pushes towards ``target``. The detector is put in eval mode (as pytorch-grad-cam does); one forward +
    backward per batch.
    """
    from unmask._compat.torchvision_ops import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torch
    from pytorch_grad_cam import GradCAM

    layer = layer if layer is not None else detector.cam_layer
    x = batch.detach().clone().requires_grad_(True)  # a graph exists even if the weights are frozen
    reshape = getattr(detector, "cam_reshape", None)  # token outputs (ViT) -> (B, C, h, w)
    with GradCAM(model=detector, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=x, targets=[cam_target_object(cam_target, target)] * x.shape[0])
        probs = torch.softmax(cam.outputs.detach().float(), dim=1)[:, FAKE].cpu().numpy()
    return np.asarray(maps, dtype=np.float32), probs.astype(np.float64)


def colorize(cam: np.ndarray) -> np.ndarray:
    """A [0, 1] map -> RGB uint8 with the JET colour map (blue = little evidence, red = much)."""
    import cv2

    u8 = np.clip(np.asarray(cam, dtype=np.float32) * 255.0, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(u8, cv2.COLORMAP_JET)[:, :, ::-1].copy()


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the colourized ``cam`` (any size; resized to the image) over an RGB uint8 ``image``."""
    import cv2

    h, w = image.shape[:2]
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != (h, w):
        cam = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = colorize(cam).astype(np.float32)
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def paste_back(frame: np.ndarray, patch: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """A copy of ``frame`` with ``patch`` resized into ``window`` = (x0, y0, x1, y1) (exclusive ends)."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in window)
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    if patch.shape[:2] != (y1 - y0, x1 - x0):
        patch = cv2.resize(patch, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    out[y0:y1, x0:x1] = patch
    return out


def annotate(frame: np.ndarray, box: Sequence[float], score: float | None, counted: bool = True,
             threshold: float = 0.5) -> np.ndarray:
    """Draw the face box (red = called fake, i.e. score > ``threshold``, green = real, grey = not counted) and its
    score, in place."""
    import cv2

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if not counted or score is None:
        color = (160, 160, 160)
    else:
        color = (230, 40, 40) if score > threshold else (40, 200, 60)
    thick = max(1, round(max(frame.shape[:2]) / 400))
    cv2.rectangle(frame, (x0, y0), (x1, y1), color, thick)
    if score is not None:
        text = f"fake {score:.2f}"
        scale = max(0.4, max(frame.shape[:2]) / 1400)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = max(th + 2, y0 - 4)
        cv2.rectangle(frame, (x0, ty - th - 2), (x0 + tw + 2, ty + base), color, -1)
        cv2.putText(frame, text, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return frame


def frame_heatmap(frame: np.ndarray, faces: Sequence[dict], alpha: float = 0.45, threshold: float = 0.5) -> np.ndarray:
    """The frame with each face's Grad-CAM overlay pasted over its crop window, boxes and scores drawn.

    ``faces``: dicts with ``crop`` (the RGB crop the model saw, before resizing), ``window`` (where that crop
    came from in the frame), ``cam`` (the map, any size), ``box``, ``score`` and ``counted`` (the half-size rule).
    """
    out = frame.copy()
    for f in faces:
        if float(np.max(f["cam"])) > 0:  # an all-zero map: no evidence for fake, leave the face as it is
            out = paste_back(out, overlay(f["crop"], f["cam"], alpha), f["window"])
    for f in faces:
        annotate(out, f["box"], f.get("score"), f.get("counted", True), threshold)
    return out
