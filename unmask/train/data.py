"""Training and validation sets from a prepared store, as a method's data recipe asks.

* ``pairs`` recipe -> ``unmask.synthesis.PairDataset`` over the store's **real** training faces (each real
  and its pseudo-fake; ``pair_collate`` batches B reals then their B fakes).
* ``real_fake`` recipe -> :class:`FaceDataset` over real **and** fake training faces (supervised baseline).
* validation -> :class:`FaceDataset` over the validation split's real and fake faces, fixed 12.5% margin, no
  augmentation (see :mod:`unmask.train.validation`).

Every sample's randomness is drawn from ``np.random.default_rng((seed, epoch, index))``: the same sample of
the same epoch is the same image whatever the worker, process count or resume point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from unmask.data.crops import margin_crop, resize_face
from unmask.data.records import FAKE, REAL, FaceRecord
from unmask.data.store import load_rgb
from unmask.errors import UnmaskError
from unmask.evaluate.aggregate import pick_evenly


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1] (the Detector normalizes)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


class FaceDataset(Dataset):
    """Store faces -> margin crop resized to ``image_size``; random margin + flip when ``augment``.

    Items: ``{"image": (3, S, S) float [0, 1], "label": long, "index": long}``.
    """

    def __init__(self, faces: Sequence[FaceRecord], image_size: int, margin: float | tuple[float, float],
                 seed: int = 0, augment: bool = False) -> None:
        self.faces = list(faces)
        self.image_size = int(image_size)
        self.margin = margin
        self.seed = int(seed)
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.faces[index]
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        img = load_rgb(rec.crop_path)
        margin = self.margin if self.augment else (
            self.margin if isinstance(self.margin, float) else float(np.mean(self.margin))
        )
        crop = margin_crop(img, rec.box, None, margin, rng=rng).image
        crop = resize_face(crop, self.image_size)
        if self.augment and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return {"image": to_tensor(crop), "label": torch.tensor(rec.label, dtype=torch.long),
                "index": torch.tensor(index, dtype=torch.long)}


@dataclass
class TrainData:
    train: Dataset
    collate: Callable
    val: FaceDataset | None
    val_faces: list[FaceRecord]
    images_per_sample: int  # 2 for pair datasets (a real and its pseudo-fake), else 1


def _store_faces(store, split: str | None, labels, methods, dataset: str | None,
                 largest_only: bool) -> list[FaceRecord]:
    return store.faces(split=split, labels=labels, methods=methods, largest_only=largest_only, datasets=dataset)


def build_train_data(cfg, recipe) -> TrainData:
    """Datasets for ``cfg`` (a TrainConfig) and a method's DataRecipe, from the prepared store ``cfg.data.store``."""
    from pathlib import Path

    from unmask.data.store import PreparedStore

    d = cfg.data
    if not d.store:
        raise UnmaskError("data.store is not set: give the prepared store (unmask prepare) as data.store=PATH")
    if not Path(d.store).is_dir():
        raise UnmaskError(f"prepared store not found: {d.store}")
    store = PreparedStore(d.store)
    size = cfg.model.input_size
    if recipe.kind == "pairs":
        from unmask.synthesis import PairDataset, build_synthesizer, pair_collate

        faces = pick_evenly(_store_faces(store, d.train_split, [REAL], None, d.dataset, d.largest_only), d.max_faces)
        if not faces:
            raise UnmaskError(f"no real faces in split {d.train_split!r} of {d.store}")
        train = PairDataset(faces, build_synthesizer(recipe.synthesizer), image_size=size, margin=tuple(d.margin),
                            seed=cfg.seed, augment=d.augment)
        collate, per_sample = pair_collate, 2
    else:
        faces = _store_faces(store, d.train_split, [REAL, FAKE], d.fake_methods and ["real", *d.fake_methods],
                             d.dataset, d.largest_only)
        faces = pick_evenly(faces, d.max_faces)
        if not faces:
            raise UnmaskError(f"no faces in split {d.train_split!r} of {d.store}")
        train = FaceDataset(faces, size, tuple(d.margin), seed=cfg.seed, augment=d.augment)
        collate, per_sample = default_collate, 1
    val, val_faces = None, []
    if d.val_split:
        # Every face of a frame (the frame score is the max over faces), all manipulation methods.
        val_faces = pick_evenly(_store_faces(store, d.val_split, [REAL, FAKE], None, d.dataset, False),
                                  d.max_val_faces)
        if val_faces:
            val = FaceDataset(val_faces, size, float(d.val_margin), seed=0, augment=False)
    return TrainData(train=train, collate=collate, val=val, val_faces=val_faces, images_per_sample=per_sample)
