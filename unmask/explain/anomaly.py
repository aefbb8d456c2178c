"""SOLA's anomaly maps as heat maps (paper 002, Fig. 1): the second-order local anomaly maps over the face.

Why next to Grad-CAM: Grad-CAM shows where the classifier's evidence lies; SOLA's maps are what the network itself
predicts as locally anomalous (one value per 16 px patch at 256 px). Unlike Grad-CAM the maps are not rescaled
per image: they are probabilities, and a real face's maps are near zero by training (eq. 12), so a rescaled map
would paint a real face as anomalous as a fake.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def has_anomaly_maps(detector) -> bool:
    """True for archs that predict anomaly maps (``anomaly_maps(x) -> (B, K, h, w)`` in [0, 1])."""
    return callable(getattr(detector, "anomaly_maps", None))


@torch.no_grad()
def anomaly_heatmaps(detector, batch: torch.Tensor) -> np.ndarray:
    """``(B, 3, S, S)`` in [0, 1] -> ``(B, S, S)`` float32 in [0, 1]: the max over the K maps per patch,
    upsampled bilinearly to the input size."""
    was_training = detector.training
    detector.eval()
    try:
        maps = detector.anomaly_maps(batch).float().amax(dim=1, keepdim=True)
    finally:
        detector.train(was_training)
    up = F.interpolate(maps, size=batch.shape[-2:], mode="bilinear", align_corners=False)
    return up[:, 0].clamp(0, 1).cpu().numpy().astype(np.float32)


__all__ = ["anomaly_heatmaps", "has_anomaly_maps"]
