"""Training and validation sets from a prepared store, as a method's data recipe asks.

* ``pairs`` recipe -> ``unmask.synthesis.PairDataset`` over the store's **real** training faces (each real
  and its pseudo-fake; ``pair_collate`` batches B reals then their B fakes).
* ``real_fake`` recipe -> :class:`FaceDataset` over real **and** fake training faces (supervised baseline);
  ``data.balanced`` draws reals and fakes 1:1 (:class:`unmask.train.seeding.EpochSampler` ``labels``),
  ``data.light_aug`` adds colour / JPEG / noise (:func:`light_augment`), and a method's ``DataRecipe.face_aug``
  (PRLE's masking) runs per sample with the store's map sidecars cut like the face.
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


def to_float_images(batch: dict[str, Any]) -> dict[str, Any]:
    """The one place a batch's uint8 ``image`` (pair datasets: ``pair_collate``) becomes float32 in [0, 1];
    float images pass through. Called by the training loop after the batch is on the device, so the loader
    workers and the host -> device copy move 4x fewer bytes; every method then sees float32 in [0, 1]."""
    img = batch.get("image")
    if torch.is_tensor(img) and img.dtype == torch.uint8:
        batch = dict(batch)
        batch["image"] = img.float().div_(255.0)
    return batch


class FaceDataset(Dataset):
    """Store faces -> margin crop resized to ``image_size``; random margin + flip when ``augment``.

    Items: ``{"image": (3, S, S) float [0, 1], "label": long, "index": long}``; with ``masks`` also ``"mask"``
    ``(1, S, S)`` float in [0, 1] (the stored manipulation mask, cut by the same window, resized by area
    averaging and flipped with the face; zeros for a real face) and ``"mask_valid"`` (0 for a fake without a
    stored mask, whose zeros would be a wrong target).

    ``light_aug`` (a :class:`~unmask.train.config.LightAugConfig`, used when ``augment``) follows the flip.
    ``face_aug`` (a method's ``DataRecipe.face_aug``) comes last, on the uint8 crop: with its ``map_set`` the
    face's maps under ``store_root`` (``face_aug.load_maps(store_root, record)``, at the stored crop's geometry:
    PRLE's fused map of the zoo's sidecars) are cut by the same window, resized by :func:`resize_face` and
    flipped with the face, so a map stays on the pixels it was computed for; its extra items (floats) join the
    item as tensors.
    """

    def __init__(self, faces: Sequence[FaceRecord], image_size: int, margin: float | tuple[float, float],
                 seed: int = 0, augment: bool = False, masks: bool = False, light_aug: Any = None,
                 face_aug: Any = None, store_root: str | None = None) -> None:
        self.faces = list(faces)
        self.image_size = int(image_size)
        self.margin = margin
        self.seed = int(seed)
        self.augment = augment
        self.masks = bool(masks)
        self.light_aug = light_aug if light_aug is not None and light_aug.enabled else None
        self.face_aug = face_aug
        if face_aug is not None and face_aug.map_set and not store_root:
            raise UnmaskError("PRLE maps need the prepared store's root (store_root)")
        self.store_root = store_root
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
        fa = self.face_aug
        cut = margin_crop(img, rec.box, rec.landmarks if fa is not None and fa.uses_landmarks else None, margin,
                          rng=rng)
        crop = resize_face(cut.image, self.image_size)
        flip = self.augment and rng.random() < 0.5
        if flip:
            crop = crop[:, ::-1]
        if self.light_aug is not None and self.augment:
            crop = light_augment(crop, self.light_aug, rng)
        extra: dict[str, Any] = {}
        if fa is not None:
            maps = self._maps(rec, img.shape[:2], cut.window, flip) if fa.map_set else None
            lm = None
            if cut.landmarks is not None:
                h, w = cut.image.shape[:2]
                lm = cut.landmarks * np.array([self.image_size / w, self.image_size / h], np.float32)
                if flip:
                    lm[:, 0] = self.image_size - lm[:, 0]
            crop, extra = fa(np.ascontiguousarray(crop), maps, lm, rng)
        item = {"image": to_tensor(crop), "label": torch.tensor(rec.label, dtype=torch.long),
                "index": torch.tensor(index, dtype=torch.long)}
        item.update({k: torch.tensor(v, dtype=torch.float32) for k, v in extra.items()})
        if self.masks:
            item.update(self._mask(rec, img.shape[:2], cut.window, flip))
        return item

    def _maps(self, rec: FaceRecord, shape: tuple[int, int], window: tuple[int, int, int, int],
              flip: bool) -> np.ndarray:
        """The face_aug's (K, S, S) maps of the face cut by ``window``, resized like the face, flipped with it."""
        maps = self.face_aug.load_maps(self.store_root, rec)
        if maps.shape[1:] != tuple(shape):  # load_maps checks the PNG header; this is the decoded crop
            raise UnmaskError(f"PRLE maps of {rec.crop_path} are {maps.shape[2]}x{maps.shape[1]}, the crop "
                              f"{shape[1]}x{shape[0]}")
        x0, y0, x1, y1 = window
        cut = np.ascontiguousarray(maps[:, y0:y1, x0:x1].transpose(1, 2, 0))  # HxWxK for OpenCV
        out = resize_face(cut, self.image_size).reshape(self.image_size, self.image_size, -1)
        out = out.transpose(2, 0, 1)
        return np.ascontiguousarray(out[:, :, ::-1] if flip else out)

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


def light_augment(img: np.ndarray, cfg, rng: np.random.Generator) -> np.ndarray:
    """``data.light_aug`` on a uint8 RGB face: colour (RGB shift, HSV, brightness/contrast; their own
    probabilities), then JPEG with ``p_jpeg`` at a quality in ``jpeg_quality``, then Gaussian noise with ``p_noise``
    (sigma in ``noise_sigma``, 0-255 units). The transforms are ``unmask.synthesis.transforms``'."""
    from unmask.synthesis.transforms import color_random, jpeg

    out = np.ascontiguousarray(img)
    if cfg.color.enabled:
        out, _ = color_random(out, cfg.color, rng)
    if rng.random() < cfg.p_jpeg:
        lo, hi = cfg.jpeg_quality
        out = jpeg(out, int(rng.integers(lo, hi + 1)))
    if rng.random() < cfg.p_noise:
        sigma = float(rng.uniform(*cfg.noise_sigma))
        noise = rng.standard_normal(out.shape, dtype=np.float32) * sigma
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return out


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
    balance_labels: list[int] | None = None  # one label per training sample: the sampler draws classes 1:1


def _store_faces(store, split: str | None, labels, methods, dataset: str | None,
                 largest_only: bool) -> list[FaceRecord]:
    return store.faces(split=split, labels=labels, methods=methods, largest_only=largest_only, datasets=dataset)


def build_train_data(cfg, recipe) -> TrainData:
    """Datasets for ``cfg`` (a TrainConfig) and a method's DataRecipe, from the prepared store ``cfg.data.store``."""
    from pathlib import Path

    from unmask.data.store import PreparedStore

    d = cfg.data
    balance = None
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
        face_aug = getattr(recipe, "face_aug", None)
        if face_aug is not None and face_aug.map_set:
            _check_map_set(d.store, face_aug)
        train = FaceDataset(faces, size, tuple(d.margin), seed=cfg.seed, augment=d.augment,
                            masks=getattr(recipe, "masks", False), light_aug=d.light_aug, face_aug=face_aug,
                            store_root=d.store)
        collate, per_sample = default_collate, 1
        if d.balanced:
            balance = [f.label for f in faces]
            if len(set(balance)) < 2:
                raise UnmaskError(f"data.balanced: split {d.train_split!r} of {d.store} holds one class only")
    val, val_faces = build_val_set(cfg, recipe, store, d.val_split) if d.val_split else (None, [])
    return TrainData(train=train, collate=collate, val=val, val_faces=val_faces, images_per_sample=per_sample,
                     balance_labels=balance)


def build_val_set(cfg, recipe, store, split: str) -> tuple[Any, list[FaceRecord]]:
    """(validation dataset or None, its face records) of ``split``, as training selects epochs on it.

    By ``data.val_fakes``: the split's reals and fixed-seed pseudo-fakes of them, or its real manipulations;
    every face of a frame (the frame score is the max over faces). ``unmask calibrate`` fits on the same set.
    """
    d, size = cfg.data, cfg.model.input_size
    if resolve_val_fakes(d.val_fakes, recipe) == "pseudo":
        reals = pick_evenly(_store_faces(store, split, [REAL], None, d.dataset, False), d.max_val_faces)
        if not reals:
            return None, []
        val = PseudoFakeValSet(reals, recipe.synthesizer, size, float(d.val_margin))
        return val, val.records
    faces = pick_evenly(_store_faces(store, split, [REAL, FAKE], None, d.dataset, False), d.max_val_faces)
    if not faces:  # the split's real manipulations, all methods
        return None, []
    return FaceDataset(faces, size, float(d.val_margin), seed=0, augment=False), faces


def _check_map_set(store: str, face_aug) -> None:
    """Before any worker starts: the map set exists and holds the members asked for (one-line errors)."""
    from unmask.data.map_sidecars import map_set_members

    have = map_set_members(store, face_aug.map_set)
    missing = [m for m in (face_aug.members or ()) if m not in have]
    if missing:
        raise UnmaskError(f"map set {face_aug.map_set!r} of {store} has no member {', '.join(map(repr, missing))} "
                          f"(its members: {', '.join(have)})")
