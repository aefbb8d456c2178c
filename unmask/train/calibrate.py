"""Temperature scaling of a trained checkpoint on its validation set (end of training, ``unmask calibrate``).

The fit is :mod:`unmask.evaluate.calibration` (Guo et al. 2017): the logits of every validation face at the
fixed 12.5% margin, T minimizing their NLL. The set is the one training selects its epoch on
(``unmask.train.data``): for pair methods the val split's reals and their fixed-seed pseudo-fakes
(``data.val_fakes: pseudo``), for the supervised baseline the split's real and fake faces; ``fitted_on`` says
which. The result is written into ``best.pt`` as the plain-data section ``"calibration"``; the weights and
every other section are written back unchanged (atomically: a crash leaves the old file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from unmask.evaluate.calibration import CALIBRATION_KEY, Calibration, calibrated_probability, fit_calibration
from unmask.errors import UnmaskError


@torch.no_grad()
def dataset_logits(detector, dataset, device: torch.device | str, batch_size: int = 32,
                   autocast=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, 2) float64, labels (N,)) of every item of a validation dataset, in order."""
    was_training = detector.training
    detector.eval()
    out, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        x = batch["image"].to(device)
        if autocast is not None:
            with autocast():
                logits = detector(x)
        else:
            logits = detector(x)
        out.append(logits.float().cpu().numpy())
        labels.append(batch["label"].numpy())
    detector.train(was_training)
    if not out:
        raise UnmaskError("the calibration set is empty")
    return np.concatenate(out).astype(np.float64), np.concatenate(labels).astype(np.int64)


def describe_set(dataset, faces: list, where: str) -> str:
    """``fitted_on`` in words: which split, which fakes, how many faces."""
    reals = sum(1 for r in faces if int(r.label) == 0)
    fakes = len(faces) - reals
    source = getattr(dataset, "fake_source", "store")
    kind = (f"{reals} real faces + their {source} pseudo-fakes" if getattr(dataset, "fakes", "real") == "pseudo"
            else f"{reals} real + {fakes} fake faces (the store's manipulations)")
    return f"{where}: {kind}"


def calibrate_on(detector, dataset, faces: list, device, fitted_on: str, batch_size: int = 32,
                 autocast=None) -> Calibration:
    """Fit T on a validation set and add the calibrated video-level threshold (same rule as ``val.threshold``)."""
    from unmask.train.validation import video_metrics

    logits, labels = dataset_logits(detector, dataset, device, batch_size, autocast)
    cal = fit_calibration(logits, labels, fitted_on)
    cal.threshold = video_metrics(faces, calibrated_probability(logits, cal.temperature))["threshold"]
    return cal


def val_set(cfg, store_path: str | Path, split: str) -> tuple[Any, list]:
    """The validation set of ``split`` exactly as training builds it for ``cfg`` (``train.data.build_val_set``)."""
    from unmask.data.store import PreparedStore
    from unmask.methods import build_method
    from unmask.train.data import build_val_set, resolve_val_fakes

    if not Path(store_path).is_dir():
        raise UnmaskError(f"prepared store not found: {store_path}")
    recipe = build_method(cfg).data_recipe
    ds, faces = build_val_set(cfg, recipe, PreparedStore(store_path), split)
    if ds is None:
        what = "real faces" if resolve_val_fakes(cfg.data.val_fakes, recipe) == "pseudo" else "faces"
        raise UnmaskError(f"no {what} in split {split!r} of {store_path}")
    return ds, faces


def write_calibration(path: str | Path, calibration: Calibration) -> Path:
    """Rewrite a checkpoint with its ``"calibration"`` section (everything else as read), atomically."""
    from unmask.io import atomic_torch_save
    from unmask.models.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    target = Path(state.pop("path"))
    state[CALIBRATION_KEY] = calibration.to_meta()
    return atomic_torch_save(target, state)


def calibrate_checkpoint(checkpoint: str | Path, store: str | Path | None = None, split: str | None = None,
                         device: str = "cpu", batch_size: int = 32) -> tuple[Path, Calibration]:
    """Fit a run's (or checkpoint file's) temperature on a split of a store and write it into the file.

    ``store`` / ``split`` default to the run's own ``data.store`` / ``data.val_split``; the validation set is
    built from the checkpoint's config (its method's data recipe, ``data.val_fakes``, sizes and margins).
    """
    from unmask.models import load_detector
    from unmask.train.config import train_config_from_dict

    detector, meta = load_detector(checkpoint, device=device)
    if not isinstance(meta.get("config"), dict):
        raise UnmaskError(f"{meta['path']} holds no training config: cannot rebuild its validation set")
    try:
        cfg = train_config_from_dict(meta["config"])
    except UnmaskError:
        raise
    except Exception as exc:
        raise UnmaskError(f"{meta['path']}: its training config does not load: {exc}") from None
    store = store or cfg.data.store
    split = split or cfg.data.val_split or "val"
    if not store:
        raise UnmaskError("no --data given and the run records no data.store")
    dataset, faces = val_set(cfg, store, split)
    cal = calibrate_on(detector, dataset, faces, device, describe_set(dataset, faces, f"{split} split of {store}"),
                       batch_size)
    return write_calibration(meta["path"], cal), cal


def calibrate_best(best_path: str | Path, dataset, faces: list, device, fitted_on: str, batch_size: int = 32,
                   autocast=None) -> Calibration:
    """End of training: fit T for the weights in ``best.pt`` (the selected epoch, not the last one) on the
    run's validation set and write it into ``best.pt``."""
    from unmask.models import load_detector

    detector, _ = load_detector(best_path, device=device)
    cal = calibrate_on(detector, dataset, faces, device, fitted_on, batch_size, autocast)
    write_calibration(best_path, cal)
    return cal


def calibrate_at_end(cfg, best_path: Path, data, device, autocast=None, logger=None, step: int = 0) -> Calibration:
    """The train loop's last act (rank 0, when there is a validation set and a ``best.pt``): temperature scaling
    of the selected weights on the run's validation set, logged as a ``calibration`` entry and printed."""
    from tqdm import tqdm

    where = f"{cfg.data.val_split} split of {cfg.data.store}" if cfg.data.store else f"{cfg.data.val_split} split"
    cal = calibrate_best(best_path, data.val, data.val_faces, device, describe_set(data.val, data.val_faces, where),
                         batch_size=cfg.batch_size * 2, autocast=autocast)
    if logger is not None:
        logger.log("calibration", cfg.epochs, step, cal.to_meta())
    tqdm.write(f"calibration of {best_path.name}: {cal.summary()}")
    return cal
