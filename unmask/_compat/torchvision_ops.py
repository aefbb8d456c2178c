"""Make ``import torchvision`` (and so ``import timm``) work against CPU torch.

PyPI's torchvision 0.28.0 is a CUDA build. Against the CPU build of torch 2.13.0 its compiled
extension fails to load, and ``import torchvision`` then dies in ``_meta_registrations`` with
"operator torchvision::nms does not exist". timm imports torchvision, so everything would fail.

:func:`ensure_torchvision_ops` registers the ``torchvision::nms`` schema with a pure-torch CPU
implementation, but **only** when torchvision's own ops could not be loaded: on a machine with a
matching torchvision build it does nothing.
"""

from __future__ import annotations

import importlib.util
import os

import torch

_STATE: dict[str, object] = {}


def _native_ops_loadable() -> bool:
    """True when torchvision's compiled ``_C`` library loads (its ops are then real)."""
    if _op_exists():
        return True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    pkg_dir = list(spec.submodule_search_locations)[0]
    for name in os.listdir(pkg_dir):
        if name.startswith("_C") and name.endswith((".so", ".pyd")):
            try:
                torch.ops.load_library(os.path.join(pkg_dir, name))
            except (OSError, RuntimeError):
                return False
            return _op_exists()
    return False


def _op_exists() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute lookup raises when missing
    except (AttributeError, RuntimeError):
        return False
    return True


def _nms_cpu(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over (x1, y1, x2, y2) boxes; same contract as torchvision.ops.nms."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep: list[int] = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for rank, idx in enumerate(order.tolist()):
        if suppressed[rank]:
            continue
        keep.append(idx)
        rest = order[rank + 1 :]
        xx1 = torch.maximum(x1[idx], x1[rest])
        yy1 = torch.maximum(y1[idx], y1[rest])
        xx2 = torch.minimum(x2[idx], x2[rest])
        yy2 = torch.minimum(y2[idx], y2[rest])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (areas[idx] + areas[rest] - inter).clamp(min=1e-12)
        suppressed[rank + 1 :] |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def ensure_torchvision_ops() -> str:
    """Return "native" when torchvision's ops load, "shim" when the CPU nms was registered."""
    if "mode" in _STATE:
        return str(_STATE["mode"])
    if _native_ops_loadable():
        _STATE["mode"] = "native"
        return "native"
    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - must stay alive
    # torchvision's _meta_registrations registers fake kernels for exactly these two schemas.
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", _nms_cpu, "CPU")
    _STATE["lib"] = lib
    _STATE["mode"] = "shim"
    return "shim"
