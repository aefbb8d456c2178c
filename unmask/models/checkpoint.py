"""Checkpoint files: a detector's weights + what is needed to rebuild and trust it.

One format for everything: ``best.pt`` (what evaluation and ``detect`` load) and ``last.pt`` (what
training resumes from; it also carries optimizer, scheduler, RNG and method state under ``"training"``).

Layout of the saved dict::

    format:   "unmask.checkpoint/1"
    detector: Arch.meta()  (arch, input_size, mean, std, num_classes + the arch's own: backbone, timm_name, ...)
    model:    the network's state dict
    config:   the run's config as a plain dict (or None)
    val:      validation metrics of these weights (or None)
    epoch, step: where training was when it was saved
    training: optional resume state (optimizer, scheduler, rng, method, ...)
    calibration: optional temperature-scaling fit (``unmask.evaluate.calibration.Calibration.to_meta``)

Loading never runs code from the file. ``torch.load`` unpickles, and a pickle can call any Python function
while it is read, so every checkpoint is read with ``weights_only=True``: torch's restricted unpickler, which
rebuilds tensors and plain containers (dict, list, tuple, str, int, float, bool, None) and refuses any other
global. Everything unmask saves is therefore plain data: :func:`plain_data` turns numpy values into tensors and
Python scalars before saving (the numpy RNG state of a resume, numpy floats in validation metrics).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unmask.errors import UnmaskError, WeightsNotFoundError
from unmask.io import atomic_torch_save
from unmask.models.arch import Arch, arch_from_meta

CHECKPOINT_FORMAT = "unmask.checkpoint/1"
CHECKPOINT_NAMES = ("best.pt", "last.pt")


def save_checkpoint(
    path: str | Path,
    detector: Arch,
    *,
    config: dict[str, Any] | None = None,
    val: dict[str, Any] | None = None,
    epoch: int | None = None,
    step: int | None = None,
    training: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash mid-write leaves the previous file intact)."""
    state = plain_data({
        "format": CHECKPOINT_FORMAT,
        "detector": detector.meta(),
        "model": {k: v.detach().cpu() for k, v in detector.state_dict().items()},
        "config": config,
        "val": val,
        "epoch": epoch,
        "step": step,
        "training": training,
        **(extra or {}),
    })
    return atomic_torch_save(path, state)


def plain_data(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars / Paths as Python values, recursively, so the
    saved file loads under ``weights_only=True``. Other types pass through (torch.save then writes them and a
    load refuses them: a bug shows at the first resume test, never as a silent pickle)."""
    if isinstance(obj, dict):
        return {k: plain_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [plain_data(v) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory -> its ``best.pt`` (``last.pt`` when no best was kept)."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise WeightsNotFoundError(f"no checkpoint in {path} (looked for {', '.join(CHECKPOINT_NAMES)})")
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict; a foreign or corrupt file is a one-line error naming it."""
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in str(exc) or "global" in str(exc).lower():
            raise UnmaskError(f"refusing to load {path}: it holds Python objects other than tensors and plain data, "
                              "which could run code when unpickled (unmask loads checkpoints with "
                              "weights_only=True)") from None
        raise UnmaskError(f"cannot read checkpoint {path}: {first or exc.__class__.__name__}") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnmaskError(f"cannot read checkpoint {path}: {exc.__class__.__name__}: {first}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UnmaskError(f"{path} is not an unmask checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    for key, kind in (("detector", dict), ("model", dict)):
        if not isinstance(state.get(key), kind):
            raise UnmaskError(f"{path} is an incomplete unmask checkpoint: no {key!r} section")
    state["path"] = str(path)
    return state


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> tuple[Arch, dict[str, Any]]:
    """Checkpoint file or run directory -> (network in eval mode on ``device``, meta).

    ``meta`` holds the detector meta (backbone, input_size, mean, std, ...) plus ``config``, ``val``,
    ``epoch``, ``step``, ``path`` (the file actually loaded) and ``calibration`` (None when not calibrated).
    """
    state = load_checkpoint(path)
    try:
        detector = arch_from_meta(state["detector"])
    except UnmaskError:
        raise
    except Exception as exc:  # a meta naming an unknown backbone or missing a field
        raise UnmaskError(f"checkpoint {state['path']} has an unusable detector description: "
                          f"{exc.__class__.__name__}: {exc}") from None
    try:
        detector.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UnmaskError(f"checkpoint {state['path']} does not match its recorded backbone: {exc}") from None
    detector.to(device).eval()
    meta = dict(state["detector"])
    meta.update({k: state.get(k) for k in ("config", "val", "epoch", "step", "path", "calibration")})
    return detector, meta
