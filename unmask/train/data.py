"""Training and validation sets from a prepared store, as a method's data recipe asks.

* ``pairs`` recipe -> ``unmask.synthesis.PairDataset`` over the store's **real** training faces (each real
  and its pseudo-fake; ``pair_collate`` batches B reals then their B fakes).
* ``real_fake`` recipe -> :class:`FaceDataset` over real **and** fake training faces (supervised baseline).
* validation (fixed 12.5% margin, no augmentation; see :mod:`unmask.train.validation`), by ``data.val_fakes``:
  ``pseudo`` (the default of pair methods) -> :class:`PseudoFakeValSet`, the validation split's **real** faces
  and one pseudo-fake of each from the method's own synthesizer, drawn with a fixed seed (the same images every
  epoch, as SBI validates): a method that trains without real fakes also selects its epoch without them;
  ``real`` (the default of ``real_fake`` methods) -> :class:`FaceDataset` over the split's real and fake faces.

Every sample's randomness is drawn from ``np.random.default_rng((seed, epoch, index))``: the same sample of
the same epoch is the same image whatever the worker, process count or resume point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from unmask.data.crops import margin_crop, resize_face
from unmask.data.records import FAKE, REAL, FaceRecord
from unmask.data.store import load_rgb
from unmask.errors import ConfigError, UnmaskError
from unmask.evaluate.aggregate import pick_evenly

# Seed of the validation pseudo-fakes: fixed (not the run's seed), so runs that differ only in their training
# seed are selected on the same images.
VAL_PSEUDO_SEED = 0


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1] (the Detector normalizes)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


class FaceDataset(Dataset):
    """Store faces -> margin crop resized to ``image_size``; random margin + flip when ``augment``.

    Items: ``{"image": (3, S, S) float [0, 1], "label": long, "index": long}``; with ``masks`` also ``"mask"``
    ``(1, S, S)`` float in [0, 1] (the stored manipulation mask, cut by the same window, resized by area
    averaging and flipped with the face; zeros for a real face) and ``"mask_valid"`` (0 for a fake without a
    stored mask, whose zeros would be a wrong target).
    """

    def __init__(self, faces: Sequence[FaceRecord], image_size: int, margin: float | tuple[float, float],
                 seed: int = 0, augment: bool = False, masks: bool = False) -> None:
        self.faces = list(faces)
        self.image_size = int(image_size)
        self.margin = margin
        self.seed = int(seed)
        self.augment = augment
        self.masks = bool(masks)
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
        cut = margin_crop(img, rec.box, None, margin, rng=rng)
        crop = resize_face(cut.image, self.image_size)
        flip = self.augment and rng.random() < 0.5
        if flip:
            crop = crop[:, ::-1]
        item = {"image": to_tensor(crop), "label": torch.tensor(rec.label, dtype=torch.long),
                "index": torch.tensor(index, dtype=torch.long)}
        if self.masks:
            item.update(self._mask(rec, img.shape[:2], cut.window, flip))
        return item

    def _mask(self, rec: FaceRecord, shape: tuple[int, int], window: tuple[int, int, int, int],
              flip: bool) -> dict[str, torch.Tensor]:
        import cv2

        from unmask.data.store import load_mask

        s = self.image_size
        if rec.mask_path is None:
            return {"mask": torch.zeros(1, s, s), "mask_valid": torch.tensor(float(rec.label == REAL))}
        m = load_mask(rec.mask_path)
        if m.shape != tuple(shape):
            raise UnmaskError(f"stored mask {rec.mask_path} is {m.shape[1]}x{m.shape[0]}, its crop "
                              f"{shape[1]}x{shape[0]}")
        x0, y0, x1, y1 = window
        m = (m[y0:y1, x0:x1] > 127).astype(np.float32)  # binary forgery mask (compressed mask videos are noisy)
        m = cv2.resize(m, (s, s), interpolation=cv2.INTER_AREA)
        if flip:
            m = m[:, ::-1]
        return {"mask": torch.from_numpy(np.ascontiguousarray(m))[None], "mask_valid": torch.tensor(1.0)}


class PseudoFakeValSet(Dataset):
    """Validation without real fakes: each real face, then its pseudo-fake (items 2i and 2i + 1).

    The pair comes from a :class:`~unmask.synthesis.PairDataset` at the fixed validation margin, without
    augmentation, at epoch 0 of ``seed``: face i's pseudo-fake is the same image every epoch and every run. The
    real of item 2i is the pair's real (the image the fake was blended onto). ``records`` lists a FaceRecord per
    item in the same order, for :func:`unmask.train.validation.video_metrics`: a pseudo-fake's record is its real's
    with ``label`` FAKE, ``method`` ``pseudo:<recipe>`` and ``item_key`` ``<real item>#pseudo``, so each real
    video has a pseudo-fake twin video. ``fakes = "pseudo"`` is what validation records in the checkpoint.
    """

    fakes = "pseudo"

    def __init__(self, faces: Sequence[FaceRecord], synthesizer: str, image_size: int, margin: float,
                 seed: int = VAL_PSEUDO_SEED) -> None:
        from unmask.synthesis import PairDataset

        self.pairs = PairDataset(list(faces), synthesizer, image_size=image_size, margin=float(margin), seed=seed,
                                 augment=False)
        self.fake_source = f"pseudo:{self.pairs.synthesizer.name}"
        self.records: list[FaceRecord] = []
        for rec in self.pairs.faces:  # faces with degenerate landmarks are left out by PairDataset
            self.records += [rec, replace(rec, label=FAKE, method=self.fake_source, item_key=f"{rec.item_key}#pseudo")]
        self._cached: tuple[int, dict[str, Any]] | None = None  # the last pair: items 2i, 2i + 1 come in a row

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index) // 2
        if self._cached is None or self._cached[0] != i:
            self._cached = (i, self.pairs.pair(i))
        pair = self._cached[1]
        img, label = (pair["fake"], FAKE) if index % 2 else (pair["real"], REAL)
        return {"image": to_tensor(img), "label": torch.tensor(label, dtype=torch.long),
                "index": torch.tensor(index, dtype=torch.long)}


def resolve_val_fakes(val_fakes: str | None, recipe) -> str:
    """``data.val_fakes`` -> ``pseudo`` | ``real``; unset = pseudo for pair methods, real for ``real_fake``."""
    chosen = val_fakes or ("pseudo" if recipe.kind == "pairs" else "real")
    if chosen == "pseudo" and not recipe.synthesizer:
        raise ConfigError("data.val_fakes=pseudo needs a method that trains on pseudo-fakes (this method's data "
                          "recipe has no synthesizer): use data.val_fakes=real")
    return chosen


@dataclass
class TrainData:
    train: Dataset
    collate: Callable
    val: Dataset | None
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
        train = FaceDataset(faces, size, tuple(d.margin), seed=cfg.seed, augment=d.augment,
                            masks=getattr(recipe, "masks", False))
        collate, per_sample = default_collate, 1
    val, val_faces = None, []
    if d.val_split:
        # Every face of a frame (the frame score is the max over faces).
        if resolve_val_fakes(d.val_fakes, recipe) == "pseudo":
            reals = pick_evenly(_store_faces(store, d.val_split, [REAL], None, d.dataset, False), d.max_val_faces)
            if reals:
                val = PseudoFakeValSet(reals, recipe.synthesizer, size, float(d.val_margin))
                val_faces = val.records
        else:  # the split's real manipulations, all methods
            val_faces = pick_evenly(_store_faces(store, d.val_split, [REAL, FAKE], None, d.dataset, False),
                                    d.max_val_faces)
            if val_faces:
                val = FaceDataset(val_faces, size, float(d.val_margin), seed=0, augment=False)
    return TrainData(train=train, collate=collate, val=val, val_faces=val_faces, images_per_sample=per_sample)
