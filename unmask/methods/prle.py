"""PRLE dynamic exploitation (paper 001: Cheng et al., "Towards Generalizable Deepfake Detection by Primary Region
Regularization", sec. III-C and III-D, Algorithm 1).

The static stage (sec. III-B: the zoo's Grad-CAM maps, cached per stored crop by ``unmask prle-maps``, and their
fusion, :mod:`unmask.methods.prle_fusion`) gives each training face a fused map A^. Per training sample:

1. with probability ``p`` (Algorithm 1 line 3: Rand(0, 1) <= p) the face is augmented, else it is used as is;
2. alpha ~ U(0, 1] per sample (line 5; sec. IV-B), V = the pixels with A^ > 0 sorted by value, descending (eq. 9),
   V_alpha = the first floor(alpha |V|) of them (eq. 10; pixels tied with the last one are kept too, so the
   mask's edge is an iso-contour of the 8-bit map: :func:`unmask.methods.prle_fusion.top_alpha_mask`), and the
   image becomes I * (1 - V_alpha (.) M_b) (eq. 11-12), M_b = [A^ > 0] (eq. 4). alpha = 1 masks exactly M_b;
   alpha -> 0 masks nothing;
3. the loss is eq. 13: the mean over the batch of q_i l(I_i) + (1 - q_i) gamma l(I^_i), i.e. cross-entropy
   with weight gamma on the augmented samples (1 on the others). Defaults p = 0.5, gamma = 1 (sec. IV-B).

Steps 1-2 run where they are cheapest: in the data-loader workers, in numpy, on the uint8 crop
(:class:`PRLEAugment`, handed to :class:`unmask.train.data.FaceDataset` through ``DataRecipe.face_aug``, which cuts
the fused map by the same random-margin window, resize and flip as the image). The fusion is static (sec. III-B:
"performed in an offline way"): each face's fused map A^ is computed once, at the stored crop's geometry (the
zoo maps' own: the face's 12.5%-margin window there spans about 220-430 px on FF++ c40, so eq. 7's 3x3
neighbourhood has about the scale of the paper's 256 px faces), and cached as an 8-bit PNG beside the zoo maps
(``<store>/maps/<set>/_fused/<fusion key>/...``, written atomically by whichever worker needs it first; a
read-only store recomputes it each time), so an epoch after the first decodes one map per face instead of K and
fuses nothing. The train step only weights the loss, so
it costs what ``baseline``'s does (Table VIII: < 3% on Xception; ``benchmarks/prle_step.py``), and nothing of
PRLE is in the model: ``best.pt`` is the plain backbone, inference is identical.

Ablations (paper 001 sec. IV-D), each a config key:

* ``mask_source`` (Table IV): ``zoo`` (the primary-region maps), ``random`` ("randomly selected rectangular regions
  within the image", sec. IV-D1) or ``landmarks`` ("facial regions indicated by landmarks, such as the mouth or
  nose, are randomly selected and masked", sec. IV-D1). The paper gives neither shape; chosen here:
  ``random``: one axis-aligned rectangle of area alpha x ``random_area`` of the image, ``random_area`` = 0.17 (the
  mean primary-region share of Table I: 11-21% over the zoo and the five subsets), aspect ratio log-uniform in
  [1/2, 2], position uniform inside the image (so the rectangle may miss the face: the weakness sec. IV-D1
  names); ``landmarks``: SLADD's local parts (a random non-empty subset of left eye, right eye, nose, mouth hulls
  from the 68 landmarks, each grown by 4% of the face size; ``unmask.synthesis.masks.local_polygons``), masked
  whole (a binary part mask has no value order for alpha to act on).
* ``fusion`` / ``tau1`` / ``lam`` (Table V): neighbouring (eq. 7-8) or average (eq. 6) fusion.
* ``members`` (Table VI): maps of one zoo member only (default: every member of the map set).
* ``dynamic: false`` (Table VII): no dynamic exploitation, the fused map's binary mask M_b itself (alpha = 1).
* ``alpha_min`` / ``fill``: the authors' release differs from the paper (alpha ~ U(0.5, 1), a random colour in
  the masked pixels, ``../shared/DESIGN.md``); offered as options, the defaults are the paper's (0, ``zero``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from unmask.errors import ConfigError, UnmaskError
from unmask.methods.base import CrossEntropyMethod, DataRecipe, MethodConfig, accuracy
from unmask.methods.registry import register_method

# Mean primary-region share of the image in paper 001 Table I (Xception / EfficientNet / VGG on the five FF++
# subsets: 10.6-20.8%, mean 16.8%): the area of Table IV's random rectangle at alpha = 1.
RANDOM_AREA = 0.17


@functools.lru_cache(maxsize=16)
def _members(store_root: str, map_set: str) -> tuple[str, ...]:
    from unmask.data.map_sidecars import map_set_members

    return tuple(map_set_members(store_root, map_set))


@dataclass
class PRLEConfig(MethodConfig):
    name: str = "prle"
    p: float = 0.5  # probability that a sample is augmented (Algorithm 1 line 3; sec. IV-B)
    gamma: float = 1.0  # weight of the augmented samples' loss (eq. 13; sec. IV-B)
    map_set: str = "zoo"  # <store>/maps/<map_set>, written by `unmask prle-maps --map-set`
    members: list[str] | None = None  # zoo members whose maps are fused (Table VI: [xception]); null = all
    fusion: Literal["neighbour", "average"] = "neighbour"  # eq. 7-8 (the paper's) or eq. 6 (Table V)
    tau1: float = 0.3  # eq. 6 threshold (sec. IV-B)
    lam: float = 0.15  # eq. 7 lambda (sec. IV-B)
    mask_source: Literal["zoo", "random", "landmarks"] = "zoo"  # Table IV
    dynamic: bool = True  # False: the binary mask M_b as is (Table VII "w/o exploitation")
    alpha_min: float = 0.0  # alpha ~ U(alpha_min, 1]; the paper: (0, 1]; the authors' release: 0.5
    fill: Literal["zero", "colour"] = "zero"  # eq. 11 zeroes the pixels; the release fills a random colour
    random_area: float = RANDOM_AREA  # Table IV random rectangles: area fraction at alpha = 1 (see module doc)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"method.p must lie in [0, 1], got {self.p}")
        if self.gamma < 0:
            raise ConfigError(f"method.gamma must be >= 0, got {self.gamma}")
        if not 0.0 <= self.alpha_min < 1.0:
            raise ConfigError(f"method.alpha_min must lie in [0, 1), got {self.alpha_min}")
        if not 0.0 < self.random_area <= 1.0:
            raise ConfigError(f"method.random_area must lie in (0, 1], got {self.random_area}")
        if not 0.0 <= self.tau1 < 1.0 or self.lam < 0:
            raise ConfigError(f"method.tau1 must lie in [0, 1) and method.lam be >= 0 (got {self.tau1}, {self.lam})")
        if self.members is not None and not self.members:
            raise ConfigError("method.members: give at least one zoo member, or null for all of them")


# --- eq. 9-12, in numpy ----------------------------------------------------------------------------------------


def random_rectangle(shape: tuple[int, int], area: float, rng: np.random.Generator) -> np.ndarray:
    """Table IV's random mask: one axis-aligned rectangle of ``area`` (fraction of the image), aspect ratio
    log-uniform in [1/2, 2], placed uniformly inside the image (see the module docstring)."""
    h, w = shape
    ratio = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # width / height
    a = max(float(area), 0.0) * h * w
    rw = int(round(min(w, np.sqrt(a * ratio))))
    rh = int(round(min(h, a / max(rw, 1))))
    out = np.zeros((h, w), dtype=bool)
    if rw <= 0 or rh <= 0:
        return out
    x0 = int(rng.integers(0, w - rw + 1))
    y0 = int(rng.integers(0, h - rh + 1))
    out[y0:y0 + rh, x0:x0 + rw] = True
    return out


def landmark_parts(shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Table IV's landmark mask: SLADD's local parts (random non-empty subset of eyes, nose, mouth hulls, grown by
    4% of the face size; :func:`unmask.synthesis.masks.local_polygons`) filled at ``shape``."""
    import cv2

    from unmask.synthesis.config import LocalConfig
    from unmask.synthesis.masks import local_polygons

    polys = local_polygons(np.asarray(landmarks, np.float32), LocalConfig(), rng, {})
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(p).astype(np.int32) for p in polys], 1)
    return canvas.astype(bool)


@dataclass(frozen=True)
class PRLEAugment:
    """Algorithm 1 lines 3-8 for one sample, in a data-loader worker (picklable, numpy only).

    :class:`unmask.train.data.FaceDataset` calls :meth:`load_maps` for the face (its fused map A^ at the stored
    crop's geometry, ``(1, H, W)``; only when ``map_set`` is not None), cuts, resizes and flips that like the face,
    and calls the object with it (``(1, S, S)`` float32 in [0, 1]) and, when ``uses_landmarks``, the landmarks in
    the same coordinates. It returns the (possibly masked) uint8 image and the items the loss needs: ``prle_aug``
    (1 = augmented: 1 - q of eq. 13), ``prle_alpha``, ``prle_area`` (fraction of the image masked).
    """

    p: float = 0.5
    dynamic: bool = True
    alpha_min: float = 0.0
    fusion: str = "neighbour"
    tau1: float = 0.3
    lam: float = 0.15
    mask_source: str = "zoo"
    map_set_name: str = "zoo"
    members: tuple[str, ...] | None = None
    fill: str = "zero"
    random_area: float = RANDOM_AREA

    @classmethod
    def from_config(cls, o: PRLEConfig) -> "PRLEAugment":
        return cls(p=o.p, dynamic=o.dynamic, alpha_min=o.alpha_min, fusion=o.fusion, tau1=o.tau1, lam=o.lam,
                   mask_source=o.mask_source, map_set_name=o.map_set,
                   members=tuple(o.members) if o.members else None, fill=o.fill, random_area=o.random_area)

    @property
    def map_set(self) -> str | None:
        """The map set the dataset must cut with the face (None: this mask source reads no maps)."""
        return self.map_set_name if self.mask_source == "zoo" else None

    @property
    def uses_landmarks(self) -> bool:
        return self.mask_source == "landmarks"

    def draw_alpha(self, rng: np.random.Generator) -> float:
        """alpha ~ U(alpha_min, 1] (1 - U[0, 1) lies in (0, 1]); 1 without dynamic exploitation (Table VII)."""
        if not self.dynamic:
            return 1.0
        return float(self.alpha_min + (1.0 - self.alpha_min) * (1.0 - rng.random()))

    # --- the static stage's result, per face ------------------------------------------------------------------
    def fuse(self, maps: np.ndarray) -> np.ndarray:
        """The zoo maps (K, H, W) -> the fused map A^ (H, W) of this config (eq. 6 or eq. 7-8)."""
        from unmask.methods.prle_fusion import fuse

        return fuse(maps, method=self.fusion, tau1=self.tau1, lam=self.lam).value

    def fused_key(self, store_root) -> str:
        """Folder name of this fusion's cache: method, tau1, lambda and the members fused."""
        members = list(self.members) if self.members else _members(str(store_root), self.map_set_name)
        lam = f"-l{self.lam:g}" if self.fusion == "neighbour" else ""
        return f"{self.fusion}-t{self.tau1:g}{lam}-" + "__".join(members)

    def load_maps(self, store_root, record) -> np.ndarray:
        """(1, H, W) float32: ``record``'s fused map at the stored crop's geometry, from the cache (written on
        first use) or fused from the zoo maps (:func:`unmask.data.map_sidecars.load_maps`)."""
        from unmask.data.map_sidecars import FUSED_DIR, crop_shape, fused_relpath, map_set_dir, read_map_png
        from unmask.data.map_sidecars import load_maps as load_zoo_maps

        rel = fused_relpath(store_root, record)
        path = map_set_dir(store_root, self.map_set_name) / FUSED_DIR / self.fused_key(store_root) / rel
        if path.is_file():
            u8 = read_map_png(path)
            if tuple(u8.shape) == crop_shape(record):
                return (u8.astype(np.float32) * np.float32(1.0 / 255.0))[None]
        value = self.fuse(load_zoo_maps(store_root, self.map_set_name, record, self.members))
        try:
            from unmask.data.map_sidecars import quantize
            from unmask.data.store import encode_png
            from unmask.io import atomic_write_bytes

            u8 = quantize(value)
            atomic_write_bytes(path, encode_png(u8))
            value = u8.astype(np.float32) * np.float32(1.0 / 255.0)  # the cached value, every epoch alike
        except OSError:  # a read-only store: fuse again next time
            pass
        return value[None]

    # --- per sample -------------------------------------------------------------------------------------------
    def region(self, shape: tuple[int, int], fused: np.ndarray | None, landmarks: np.ndarray | None, alpha: float,
               rng: np.random.Generator) -> np.ndarray:
        """The HxW bool mask to remove: V_alpha (.) M_b of the fused map ``fused`` (HxW or (1, H, W); eq. 9-12,
        M_b = A^ > 0, eq. 4), or Table IV's alternatives."""
        if self.mask_source == "random":
            return random_rectangle(shape, alpha * self.random_area, rng)
        if self.mask_source == "landmarks":
            if landmarks is None:
                raise UnmaskError("PRLE mask_source=landmarks needs the face's landmarks")
            return landmark_parts(shape, landmarks, rng)
        if fused is None:
            raise UnmaskError(f"PRLE mask_source=zoo needs the face's maps of map set {self.map_set_name!r}")
        from unmask.methods.prle_fusion import top_alpha_mask

        value = np.asarray(fused, np.float32).reshape(shape)
        return top_alpha_mask(value, value > 0, alpha)

    def __call__(self, image: np.ndarray, fused: np.ndarray | None, landmarks: np.ndarray | None,
                 rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
        if not rng.random() < self.p:  # Algorithm 1 lines 6-7: the original image
            return image, {"prle_aug": 0.0, "prle_alpha": 0.0, "prle_area": 0.0}
        alpha = self.draw_alpha(rng)
        region = self.region(image.shape[:2], fused, landmarks, alpha, rng)
        out = mask_image(image, region, self.fill, rng)
        return out, {"prle_aug": 1.0, "prle_alpha": alpha, "prle_area": float(region.mean())}


def mask_image(image: np.ndarray, region: np.ndarray, fill: str = "zero",
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Eq. 11: I * (1 - region) on a uint8 HxWx3 image (``fill="colour"``: one random RGB colour instead of 0)."""
    out = np.array(image, copy=True)
    if fill == "colour":
        rng = rng if rng is not None else np.random.default_rng()
        out[region] = rng.integers(0, 256, size=3, dtype=np.uint8)
    else:
        out[region] = 0
    return out


# --- eq. 13 ----------------------------------------------------------------------------------------------------


def prle_loss(logits: torch.Tensor, labels: torch.Tensor, augmented: torch.Tensor,
              gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 13 over a batch: (1/n) sum_i [q_i l_i + (1 - q_i) gamma l_i], q_i = 1 - ``augmented[i]``;
    also returns the per-sample cross-entropies."""
    per = F.cross_entropy(logits.float(), labels, reduction="none")
    aug = augmented.to(per.dtype)
    weights = (1.0 - aug) + float(gamma) * aug
    return (weights * per).mean(), per


@register_method
class PRLE(CrossEntropyMethod):
    """Supervised CE on real + fake faces (the ``baseline`` recipe) with PRLE's masked samples weighted by gamma."""

    name = "prle"
    Config = PRLEConfig

    @property
    def data_recipe(self) -> DataRecipe:
        return DataRecipe("real_fake", face_aug=PRLEAugment.from_config(self.options))

    def loss(self, batch: dict[str, torch.Tensor], first_pass: bool) -> tuple[torch.Tensor, dict[str, float]]:
        if "prle_aug" not in batch:
            raise UnmaskError("method prle: the batch has no PRLE flags (prle_aug); it trains on its own data recipe "
                              "(FaceDataset with the method's face_aug)")
        logits = self.model(batch["image"])
        labels, aug = batch["label"], batch["prle_aug"]
        loss, per = prle_loss(logits, labels, aug, self.options.gamma)
        per, aug_b = per.detach(), aug.detach() > 0.5
        metrics: dict[str, Any] = {"loss": float(loss.detach()), "acc": accuracy(logits.detach(), labels),
                                   "aug_frac": float(aug_b.float().mean())}
        if bool(aug_b.any()):
            metrics["loss_aug"] = float(per[aug_b].mean())
            if "prle_area" in batch:
                metrics["mask_area"] = float(batch["prle_area"][aug_b].float().mean())
        if bool((~aug_b).any()):
            metrics["loss_clean"] = float(per[~aug_b].mean())
        return loss, metrics
