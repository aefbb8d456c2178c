"""Validation for model selection: the validation split's real and fake videos, video-level AUC.

Same protocol as the papers' test time (paper 000 sec. 4.1), on the validation split so that the test sets
never choose a checkpoint: fixed 12.5% margin crop, fake probability per face, frame score = max over the
faces at least half the largest (``unmask.evaluate.aggregate.frame_score``), video score = mean over the
frames. Reports video AUC (the selection metric), frame AUC, the loss and accuracy at 0.5.

Which fakes: for pair methods the val reals' own pseudo-fakes (``unmask.train.data.PseudoFakeValSet``; paper 000
trains on reals only, so selecting on the split's real manipulations would use the supervision it claims not to
need), for the supervised baseline the split's manipulated videos. ``fakes`` (``pseudo`` | ``real``) and
``fake_source`` (``pseudo:<recipe>`` | ``store``) say which in the metrics, and so in the checkpoint's ``val``:
a threshold chosen on pseudo-fakes is labelled as such. The test on real fakes is ``unmask evaluate``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from unmask.data.records import FaceRecord
from unmask.evaluate.aggregate import frame_score
from unmask.evaluate.metrics import auc, choose_threshold
from unmask.models import Detector


def _auc(labels: list[int], scores: list[float]) -> float | None:
    return float(auc(labels, scores)) if len(set(labels)) == 2 else None


@torch.no_grad()
def predict_faces(detector: Detector, dataset, device: torch.device, batch_size: int = 32,
                  autocast=None) -> tuple[np.ndarray, float]:
    """Fake probability for every face of ``dataset`` (in order) and the mean CE loss."""
    was_training = detector.training
    detector.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    probs, loss_sum, n = [], 0.0, 0
    for batch in loader:
        x = batch["image"].to(device, non_blocking=True)
        y = batch["label"].to(device)
        if autocast is not None:
            with autocast():
                logits = detector(x).float()
        else:
            logits = detector(x).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
        probs.append(logits.softmax(1)[:, 1].cpu())
    detector.train(was_training)
    return torch.cat(probs).numpy() if probs else np.zeros(0), loss_sum / max(n, 1)


def video_metrics(faces: list[FaceRecord], scores: np.ndarray) -> dict[str, float | int | None]:
    """Frame = max over faces >= half the largest; video = mean over frames; AUCs at both levels."""
    frames: dict[tuple[str, int], list[tuple[float, float, float]]] = defaultdict(list)
    labels: dict[str, int] = {}
    for rec, s in zip(faces, scores):
        frames[(rec.item_key, rec.frame_index)].append((float(s), rec.box_size, float(rec.score)))
        labels[rec.item_key] = rec.label
    frame_scores: dict[str, list[float]] = defaultdict(list)
    frame_labels, frame_values = [], []
    for (item, _), pairs in sorted(frames.items()):
        fs = frame_score([p[0] for p in pairs], [p[1] for p in pairs], confidences=[p[2] for p in pairs])
        frame_scores[item].append(fs)
        frame_labels.append(labels[item])
        frame_values.append(fs)
    items = sorted(frame_scores)
    v_labels = [labels[i] for i in items]
    v_scores = [float(np.mean(frame_scores[i])) for i in items]
    # called fake when score > 0.5, the rule of unmask.evaluate.metrics (a 0.5 is "real", like argmax)
    acc = float(np.mean([(s > 0.5) == bool(y) for s, y in zip(v_scores, v_labels)])) if items else None
    return {
        "video_auc": _auc(v_labels, v_scores),
        "frame_auc": _auc(frame_labels, frame_values),
        "video_acc": acc,
        # the validation-chosen decision threshold (max video accuracy); saved in the checkpoint's ``val``, it is
        # what `unmask evaluate` reports Acc@thr with and what `unmask detect` calls a verdict with
        "threshold": choose_threshold(v_labels, v_scores) if len(set(v_labels)) == 2 else None,
        "videos": len(items),
        "real_videos": int(sum(1 for y in v_labels if y == 0)),
        "frames": len(frame_values),
    }


def improves(val: dict, best: dict | None) -> bool:
    """Does ``val`` beat ``best`` (the best epoch's metrics so far)? Higher video AUC; on a tie, lower loss.

    The tie-break matters for pseudo-fake validation: a detector soon separates the val reals from their
    pseudo-fakes completely, and an AUC stuck at 1.0 would otherwise freeze the choice at its first epoch.
    """
    if best is None:
        return True
    score, ref = val.get("video_auc"), best.get("video_auc")
    if score is None:
        return False
    if ref is None or score > ref:
        return True
    return score == ref and val.get("loss") is not None and best.get("loss") is not None \
        and val["loss"] < best["loss"]


def validate(detector: Detector, dataset, faces: list[FaceRecord], device: torch.device,
             batch_size: int = 32, autocast=None) -> dict[str, float | int | None]:
    scores, loss = predict_faces(detector, dataset, device, batch_size, autocast)
    out = video_metrics(faces, scores)
    out["loss"] = loss
    out["fakes"] = getattr(dataset, "fakes", "real")
    out["fake_source"] = getattr(dataset, "fake_source", "store")
    return out
