"""Synthesizers: a :class:`SynthConfig` turned into ``synth(image, landmarks81, rng) -> SynthResult``.

The pipeline is paper 000's Fig. 2 for every recipe:

1. source: a copy of the input (SBI, BBMG) or a donor of another identity, aligned by a similarity
   transform on the 68 landmarks and colour-corrected (Face X-ray BI);
2. affine move of the source (SBI: independent x/y scale about the face + translation) -- the mask
   is drawn at the moved position, so the blended face mismatches its surroundings;
3. mask: hull / LAL / SLADD local / BBMG (``masks.py``), elastic deformation, boundary blur (``blur.py``);
4. colour + frequency transforms on the source, the target, both or either (``transforms.py``);
5. blend with ratio 1 (alpha) or a ratio from {0.25, 0.5, 0.75, 1, 1, 1} (dynamic).

The returned mask is the per-pixel weight of the source actually used (ratio included), float32 in [0, 1];
``SynthResult.real`` is the image the fake was blended onto (the transformed target when the target was
transformed, as in SBI), so a pair differs only where the mask is non-zero; ``SynthResult.boundary`` is Face
X-ray's 4 * M * (1 - M). ``record`` lists every option drawn (JSON-able).

Registry: ``SYNTHESIZERS`` maps a recipe name to a function returning its default config;
``build_synthesizer`` accepts a name, a YAML path, a mapping or a config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from unmask.errors import ConfigError
from unmask.synthesis import masks as M
from unmask.synthesis.blend import blend, draw_ratio, xray_boundary
from unmask.synthesis.blur import boundary_blur, draw_scale, reach
from unmask.synthesis.config import (AffineConfig, BBMGConfig, BlendConfig, BlurConfig, ColorConfig, DonorConfig,
                                     FrequencyConfig, MaskConfig, SynthConfig, TransformConfig, load_synth_config,
                                     synth_config_from_dict)
from unmask.synthesis.landmarks import SynthesisError, check_landmarks, polygon_area
from unmask.synthesis.pool import DonorPool, mean_std_transfer, similarity_transform
from unmask.synthesis.transforms import affine_random, nonzero_box, source_target_random, warp_affine

MIN_MASK_FRACTION = 0.002  # a mask smaller than 0.2% of the face hull (a single eye is ~2%) counts as empty
MIN_MASK_PX = 16.0


@dataclass
class SynthResult:
    """A pseudo-fake: ``fake`` HxWx3 uint8 RGB, ``mask`` HxW float32 in [0, 1], ``record`` of options drawn,
    ``real`` the image it was blended onto (the training pair's real; None only if built by hand)."""

    fake: np.ndarray
    mask: np.ndarray
    record: dict[str, Any]
    real: np.ndarray | None = None
    # (x0, y0, x1, y1) bounding mask > 0 (None: the mask is empty; "unknown": not given, measure it)
    box: tuple[int, int, int, int] | None | str = "unknown"

    @property
    def boundary(self) -> np.ndarray:
        """Face X-ray's boundary map 4 * M * (1 - M) of the blend mask."""
        return xray_boundary(self.mask)


def as_rng(rng: np.random.Generator | int | np.random.SeedSequence | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise ValueError("synthesis needs an explicit rng (np.random.Generator or an int seed)")
    return np.random.default_rng(rng)


class Synthesizer:
    """A configured pseudo-fake recipe. Pure apart from the explicit ``rng``: same seed, same bytes."""

    def __init__(self, config: SynthConfig, pool: DonorPool | None = None) -> None:
        self.config = config
        self.pool = pool  # needed by donor recipes only; PairDataset attaches one built from its faces

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def needs_pool(self) -> bool:
        return self.config.source == "donor"

    def with_pool(self, pool: DonorPool) -> "Synthesizer":
        return Synthesizer(self.config, pool)

    def __call__(self, image: np.ndarray, landmarks81: np.ndarray, rng: np.random.Generator | int,
                 identity: Any = None) -> SynthResult:
        return self.synth(image, landmarks81, rng, identity=identity)

    # -- pieces -----------------------------------------------------------------------------------------

    def _donor(self, target: np.ndarray, lm: np.ndarray, identity: Any,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(donor aligned onto the target, where the donor has pixels (HxW float32), record)."""
        if self.pool is None or len(self.pool) == 0:
            raise SynthesisError(f"recipe {self.name!r} blends another identity and needs a donor pool "
                                 "(prepared faces of at least two identities, e.g. `unmask synth --store DIR`)")
        i = self.pool.draw(lm, identity, self.config.donor.top_k, rng)
        donor = self.pool.image(i)
        dlm = np.asarray(self.pool.landmarks(i), np.float64)
        if donor.ndim != 3 or donor.shape[2] != 3 or donor.dtype != np.uint8:
            raise SynthesisError(f"donor image {i} is not HxWx3 uint8 RGB")
        mat = similarity_transform(dlm[:68], lm[:68])
        h, w = target.shape[:2]
        aligned = cv2.warpAffine(donor, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Where the donor crop has no pixels (its frame edge), blend nothing: invented border pixels
        # would be an artefact no real face swap has.
        valid = cv2.warpAffine(np.ones(donor.shape[:2], np.float32), mat, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        valid[valid > 0.999] = 1.0  # fixed-point interpolation weights sum to 1 - 1e-7
        return aligned, valid, {"index": i, "identity": self.pool.identity(i), "face": self.pool.name(i)}

    def _mask(self, generator: str, lm: np.ndarray, shape: tuple[int, int], matrix: np.ndarray | None,
              rng: np.random.Generator, plain: bool = False, ref: tuple[float, float] | None = None,
              px: float = 1.0) -> tuple[np.ndarray, dict[str, Any], tuple[int, int, int, int] | None]:
        """The blurred float mask for an image of ``shape``, its record, and a box (x0, y0, x1, y1) outside
        which it is exactly 0 (None: anywhere), so its non-zero box is searched there only.

        It is made on a canvas padded by the blur's reach on every side and then cut: the hull beyond the
        image edge is real geometry (a chin leaving the crop), so blurring and warping see it as if the
        image continued -- the same mask as synthesizing on a larger crop and cutting afterwards, instead of
        the artefacts a replicated or zero border leaves at the edge.
        """
        cfg = self.config
        passes = 1 if generator == "bbmg" else cfg.blur.passes
        h, w = shape
        scale = draw_scale(cfg.blur, ref or shape, rng)  # SBI: the mask is blurred at a 192-256 px size
        pad = reach(cfg.blur, passes)  # the blur's reach, in pixels of the blurred mask
        if scale is not None:
            # Drawn, deformed and blurred straight on the small canvas (the window at SBI's blur scale, padded
            # by the blur's reach), then mapped back onto the window: the same as drawing at full size,
            # resizing down and back up (pixel centres kept), without the full-size canvas.
            fx, fy = scale
            ox, oy = 0.5 * fx - 0.5 + pad, 0.5 * fy - 0.5 + pad
            small = (int(np.ceil(h * fy)) + 2 * pad, int(np.ceil(w * fx)) + 2 * pad)
            m_small, rec = self._padded_mask(generator, lm, small, matrix, rng, plain, None, (fx, fy, ox, oy), px)
            mask = np.zeros((h, w), np.float32)
            support: tuple[int, int, int, int] | None = (0, 0, 0, 0)
            nz = nonzero_box(m_small > 0)
            if nz is not None:  # map back only the part of the window the non-zero pixels reach
                X0 = max(0, int(np.floor((nz[0] - 1 - ox) / fx)))
                Y0 = max(0, int(np.floor((nz[1] - 1 - oy) / fy)))
                X1 = min(w, int(np.ceil((nz[2] + 1 - ox) / fx)) + 1)
                Y1 = min(h, int(np.ceil((nz[3] + 1 - oy) / fy)) + 1)
                if X1 > X0 and Y1 > Y0:
                    back = np.array([[fx, 0.0, ox + fx * X0], [0.0, fy, oy + fy * Y0]], np.float64)
                    part = mask[Y0:Y1, X0:X1]  # warped straight into the window (no temporary)
                    cv2.warpAffine(m_small, back, (X1 - X0, Y1 - Y0), dst=part,
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
                    np.clip(part, 0.0, 1.0, out=part)
                    support = (X0, Y0, X1, Y1)
            rh, rw = ref or shape
            rec["blur"]["size"] = [int(round(rh * fy)), int(round(rw * fx))]  # the size drawn for the reference
            return mask, rec, support
        lm = lm + np.float32(pad)
        if matrix is not None:  # conjugate by the shift: x' = M (x - pad) + pad
            matrix = matrix.copy()
            matrix[:, 2] += pad - matrix[:, :2].sum(axis=1) * pad
        mask, rec = self._padded_mask(generator, lm, (h + 2 * pad, w + 2 * pad), matrix, rng, plain, None, None, px)
        return np.ascontiguousarray(mask[pad:pad + h, pad:pad + w]), rec, None

    def _padded_mask(self, generator: str, lm: np.ndarray, shape: tuple[int, int], matrix: np.ndarray | None,
                     rng: np.random.Generator, plain: bool, scale: tuple[float, float] | None,
                     raster: tuple[float, float, float, float] | None = None,
                     px: float = 1.0) -> tuple[np.ndarray, dict[str, Any]]:
        cfg = self.config
        mc = cfg.mask
        elastic = None
        if mc.elastic and not plain:
            # alpha and sigma are pixels of the picture the face was cut from (SBI: its crop at the frame's
            # resolution); ``px`` synthesis pixels per such pixel: displacement scales with px, so alpha by px^2.
            elastic = (mc.elastic_alpha * px * px, mc.elastic_sigma * px)
        lal = mc.lal
        if plain:  # fallback: the un-augmented hull
            lal = dataclasses.replace(lal, p_morph=0.0, p_warp=0.0)
        raw = M.generate_raw_mask(generator, lm, shape, draw=mc.draw, hull=mc.hull, lal=lal, local=mc.local,
                                  bbmg=mc.bbmg, elastic=elastic, rng=rng, matrix=matrix, raster=raster)
        value = float(mc.draw.value)
        rec = dict(raw.record)
        if generator == "bbmg":
            blur_recs: list[dict[str, Any]] = []

            def _blur(m: np.ndarray) -> np.ndarray:  # global and local share the pair's blur scale
                out, r = boundary_blur(m, cfg.blur, value, rng, passes=1, scale=scale)
                blur_recs.append(r)
                return out

            mask, _, _ = M.bbmg_combine(raw.mask, raw.local, raw.local_fill, _blur, _blur)
            rec["blur"] = {"op": cfg.blur.op, "mode": cfg.blur.mode,
                           "kernels": [k for r in blur_recs for k in r["kernels"]]}
        else:
            mask, rec["blur"] = boundary_blur(raw.mask, cfg.blur, value, rng, scale=scale)
        return mask, rec

    # -- the recipe ----------------------------------------------------------------------------------

    def synth(self, image: np.ndarray, landmarks81: np.ndarray, rng: np.random.Generator | int,
              identity: Any = None, bounds: tuple[float, float, float, float] | None = None,
              pixel_scale: float | None = None) -> SynthResult:
        """Make one pseudo-fake of ``image`` (HxWx3 uint8 RGB) from its landmarks (81 or 68 points).

        ``bounds``: the rectangle (x0, y0, x1, y1, in this image's coordinates) of the picture the face was
        cut from (``PairDataset``: the stored crop), which bounds SBI's crop (``sbi_crop_box``); None: unbounded.
        ``pixel_scale``: pixels of this image per pixel of that picture (``PairDataset``: the window's resize
        factor), so the elastic field's alpha / sigma act in the picture's pixels as SBI's do in its crop's;
        None: 1 (this image is the picture).
        """
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
            raise SynthesisError(f"synthesis needs an HxWx3 uint8 RGB image, got {got}")
        lm = check_landmarks(landmarks81, image.shape)
        rng = as_rng(rng)
        cfg = self.config
        h, w = image.shape[:2]
        record: dict[str, Any] = {"recipe": cfg.name}

        source, valid = image, None
        if cfg.source == "donor":
            source, valid, record["donor"] = self._donor(image, lm, identity, rng)

        sx0, sy0, sx1, sy1 = sbi_crop_box(lm, bounds)
        sbi_shape, sbi_centre = (sy1 - sy0, sx1 - sx0), np.array([(sx0 + sx1) / 2, (sy0 + sy1) / 2])
        ac = cfg.transforms.affine
        if ac.reference == "sbi_crop":
            matrix, arec = affine_random(ac, sbi_shape, sbi_centre, rng)
        else:
            matrix, arec = affine_random(ac, (h, w), lm[:68].mean(axis=0), rng)
        if arec:
            record["affine"] = arec

        gens = cfg.mask.generators
        generator = str(gens[int(rng.integers(len(gens)))])
        ref = sbi_shape if cfg.blur.reference == "sbi_crop" else None
        px = 1.0 if pixel_scale is None else float(pixel_scale)
        mask, record["mask"], support = self._mask(generator, lm, (h, w), matrix, rng, ref=ref, px=px)
        hull_area = polygon_area(np.clip(lm, [0, 0], [w, h]))
        min_sum = max(MIN_MASK_PX, MIN_MASK_FRACTION * float(hull_area))
        if float(mask.sum()) < min_sum:
            # Documented fallback: augmentations (erosion, local parts out of frame) emptied the mask.
            mask, record["mask"], support = self._mask("hull", lm, (h, w), matrix, rng, plain=True, ref=ref, px=px)
            record["mask"]["fallback"] = f"{generator} mask was empty; used the plain face hull"
            if float(mask.sum()) < min_sum:
                raise SynthesisError("the blending mask is empty (face hull outside the image)")

        if valid is not None:
            mask = mask * valid
        if cfg.source == "donor" and cfg.donor.color_correction == "mean_std":
            source = mean_std_transfer(source, image, mask)
            record["donor"]["color"] = "mean_std"

        source, target, record["transforms"] = source_target_random(image, cfg.transforms, rng, source=source)

        ratio = draw_ratio(cfg.blend, rng)
        record["blend"] = {"type": cfg.blend.type, "ratio": ratio}
        if ratio != 1.0:
            mask *= np.float32(ratio)  # the mask is this call's own array (``_mask`` or the donor product)
        # Per pixel, the fake is the target wherever the mask is 0: warp and blend only the mask's box
        # (searched inside the support ``_mask`` reports: outside it the mask is 0, and stays 0 times anything).
        fake = target.copy()
        if support is None:
            box = nonzero_box(mask > 0)
        else:
            sx0, sy0, sx1, sy1 = support
            box = nonzero_box(mask[sy0:sy1, sx0:sx1] > 0) if sx1 > sx0 and sy1 > sy0 else None
            if box is not None:
                box = (box[0] + sx0, box[1] + sy0, box[2] + sx0, box[3] + sy0)
        if box is not None:
            x0, y0, x1, y1 = box
            src = warp_affine(source, matrix, box) if matrix is not None else source[y0:y1, x0:x1]
            fake[y0:y1, x0:x1] = blend(src, target[y0:y1, x0:x1], mask[y0:y1, x0:x1], cfg.blend.rounding)
        return SynthResult(fake=fake, mask=mask, record=record, real=target, box=box)


def sbi_crop_box(lm: np.ndarray, bounds: tuple[float, float, float, float] | None) -> tuple[float, float, float, float]:
    """SBI's blending canvas in this image's coordinates: the 68-landmark box widened by w/2 left and right,
    h above and 0.4h below (SBI's training crop; unmask's stored crop), cut by ``bounds`` (the picture's edge)."""
    p = np.asarray(lm, np.float64)[:68]
    x0, y0 = p.min(axis=0)
    x1, y1 = p.max(axis=0)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    box = [x0 - bw / 2, y0 - bh, x1 + bw / 2, y1 + 0.4 * bh]
    if bounds is not None:
        box = [max(box[0], bounds[0]), max(box[1], bounds[1]), min(box[2], bounds[2]), min(box[3], bounds[3])]
        box[2], box[3] = max(box[2], box[0] + bw), max(box[3], box[1] + bh)  # never smaller than the face
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


# --- registry --------------------------------------------------------------------------------------

SYNTHESIZERS: dict[str, Callable[[], SynthConfig]] = {}


def register_synthesizer(name: str) -> Callable[[Callable[[], SynthConfig]], Callable[[], SynthConfig]]:
    def deco(fn: Callable[[], SynthConfig]) -> Callable[[], SynthConfig]:
        if name in SYNTHESIZERS:
            raise ValueError(f"synthesizer {name!r} registered twice")
        SYNTHESIZERS[name] = fn
        return fn

    return deco


@register_synthesizer("sbi")
def sbi_config() -> SynthConfig:
    """Self-blended images (Shiohara & Yamasaki, CVPR 2022) as released, with its optional Face X-ray hull
    library: one of four hull families (25% of draws on the 68 points), source affine + mask-only elastic,
    the mask blurred twice at a 192-256 px size, source/target group on either image, dynamic blending.
    No erode/dilate or grid warp (that is the LAL knob: ``sbi_lal``)."""
    return SynthConfig(
        name="sbi", mask=MaskConfig(generators=("hull",)),
        reproduces="SBI as released (its Face X-ray hull families) = paper 000's SBI baseline: Table 2 row 2 / "
                   "Table 3 last row / Table 8 'SBI' (the same cited figures), first rows of Tables 4-7")


@register_synthesizer("sbi_lal")
def sbi_lal_config() -> SynthConfig:
    """SBI plus Face X-ray's landmark augmentation (erode/dilate, piecewise-affine warp) on its hulls."""
    return SynthConfig(name="sbi_lal", mask=MaskConfig(generators=("lal",)),
                       reproduces="the LAL knob (paper 000 Table 2 'w/ LAL' as issue 8 reads it): SBI + Face "
                                  "X-ray's erode/dilate and grid warp of the hull")


@register_synthesizer("bbmg")
def bbmg_config() -> SynthConfig:
    """Boundary Blur Mask Generator (paper 000 sec. 3.3) on SBI's source/target pipeline."""
    return SynthConfig(
        name="bbmg", reproduces="paper 000 sec. 3.3, Table 11 (BBMG row), Table 12 row 3, Fig. 7 third column",
        mask=MaskConfig(generators=("bbmg",)),
        blur=BlurConfig(op="gaussian", kernel=(5, 31), passes=1, sigma2=None),
    )


@register_synthesizer("bbmg_global_only")
def bbmg_global_only_config() -> SynthConfig:
    cfg = bbmg_config()
    return dataclasses.replace(cfg, name="bbmg_global_only", reproduces="paper 000 Table 12 row 1, Fig. 7 first column",
                               mask=dataclasses.replace(cfg.mask, bbmg=BBMGConfig(form="global_only")))


@register_synthesizer("bbmg_scaled_local")
def bbmg_scaled_local_config() -> SynthConfig:
    cfg = bbmg_config()
    return dataclasses.replace(cfg, name="bbmg_scaled_local",
                               reproduces="paper 000 Table 12 row 2, Fig. 7 second column",
                               mask=dataclasses.replace(cfg.mask, bbmg=BBMGConfig(form="scaled_local")))


@register_synthesizer("xray_bi")
def xray_bi_config() -> SynthConfig:
    """Face X-ray blended images (Li et al., CVPR 2020): a donor of another identity with a near landmark
    shape, aligned and colour-corrected, blended into the target through a LAL mask with alpha blending."""
    return SynthConfig(
        name="xray_bi", reproduces="Face X-ray + BI (paper 000 Table 8 row 'Face X-ray + BI', Table 2 LAL masks)",
        source="donor",
        mask=MaskConfig(generators=("lal",), elastic=False),
        blur=BlurConfig(op="gaussian", kernel=(5, 31), passes=1, sigma2=None),
        transforms=TransformConfig(object="source", color=ColorConfig(enabled=False),
                                   frequency=FrequencyConfig(enabled=False), affine=AffineConfig(enabled=False)),
        blend=BlendConfig(type="alpha"),
        donor=DonorConfig(top_k=100, color_correction="mean_std"),
    )


def resolve_config(recipe: str | Path | dict[str, Any] | SynthConfig,
                   overrides: list[str] | None = None) -> SynthConfig:
    """A registered name, a YAML file, a mapping or a config (+ ``key=value`` overrides) -> SynthConfig."""
    if isinstance(recipe, SynthConfig):
        if not overrides:
            return recipe
        from unmask.config import to_dict

        return synth_config_from_dict(to_dict(recipe), overrides)
    if isinstance(recipe, dict):
        return synth_config_from_dict(recipe, overrides)
    text = str(recipe)
    if text in SYNTHESIZERS:
        base = SYNTHESIZERS[text]()
        if not overrides:
            return base
        from unmask.config import to_dict

        return synth_config_from_dict(to_dict(base), overrides)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_synth_config(path, overrides)
    raise ConfigError(f"unknown synthesis recipe {text!r}; choose from {', '.join(sorted(SYNTHESIZERS))} "
                      "or give a YAML file")


def build_synthesizer(recipe_or_config: str | Path | dict[str, Any] | SynthConfig, pool: DonorPool | None = None,
                      overrides: list[str] | None = None) -> Synthesizer:
    """Factory: ``build_synthesizer("sbi")``, ``build_synthesizer("configs/synthesis/bbmg.yaml")``, ..."""
    return Synthesizer(resolve_config(recipe_or_config, overrides), pool=pool)


__all__ = ["SYNTHESIZERS", "SynthResult", "Synthesizer", "build_synthesizer", "register_synthesizer",
           "resolve_config"]
