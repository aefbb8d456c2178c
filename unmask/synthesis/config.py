"""Typed, strict configuration of a pseudo-fake synthesizer: every knob of paper 000's Table 1.

One :class:`SynthConfig` describes a recipe end to end (mask generation -> boundary blur ->
source/target preprocessing -> blending, paper 000 Fig. 2). The named recipes (``sbi``, ``xray_bi``,
``bbmg``) are just configs; YAML files under ``configs/synthesis/`` set the defaults of a paper table row,
and any key can be overridden (``blur.op=median``). Unknown keys are errors (``unmask.config.from_dict``).

Units: kernel sizes are pixels of the image the synthesizer is given (the training pipeline synthesizes
on the final crop resized to ``image_size``, 380 px by default, where a face is ~300 px wide); sizes called
``*_frac`` are fractions of the face size (geometric mean of the 68-landmark box sides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unmask.config import apply_overrides, from_dict, load_yaml, to_dict
from unmask.errors import ConfigError

Generator = Literal["hull", "lal", "local", "bbmg"]
HullType = Literal["full", "extended", "components", "facehull", "face68"]
Part = Literal["left_eye", "right_eye", "nose", "mouth"]
HULL_TYPES: tuple[str, ...] = ("full", "extended", "components", "facehull", "face68")
SBI_HULLS: tuple[str, ...] = ("full", "extended", "components", "facehull")  # SBI's Face X-ray hull library
PARTS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth")


def _check_range(where: str, pair: tuple[float, float], lo: float | None = None, hi: float | None = None) -> None:
    a, b = pair
    if a > b:
        raise ConfigError(f"{where}: range must be (low, high) with low <= high, got {list(pair)}")
    if lo is not None and a < lo:
        raise ConfigError(f"{where}: must be >= {lo}, got {a}")
    if hi is not None and b > hi:
        raise ConfigError(f"{where}: must be <= {hi}, got {b}")


def _check_p(where: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{where}: a probability must be in [0, 1], got {p}")


@dataclass(frozen=True)
class DrawConfig:
    """How a hull is rasterized (Table 1 "parameter settings of mask", Table 3).

    ``dtype``/``value`` matter through the blur: a uint8 mask of value 1 quantizes the blurred ramp back to
    {0, 1} (a hard boundary), while float32 keeps it (Table 3, Fig. 4). OpenCV anti-aliases only 8-bit
    canvases, so LINE_AA coverage is drawn on uint8 and converted to the requested dtype and value.
    """

    line_type: Literal["LINE_8", "LINE_AA"] = "LINE_AA"
    dtype: Literal["uint8", "float32"] = "float32"
    value: Literal[1, 255] = 255


@dataclass(frozen=True)
class HullConfig:
    """Landmark hulls as SBI draws them: one type drawn uniformly from ``types`` per sample.

    The four DeepFaceLab-style families of SBI's (optional) Face X-ray hull library: ``full`` = DFL's full-face
    mask, the union of three part hulls over the 68 points (jaw line + mouth; nose ridge + tip; brows + jaw tops,
    bridge top and nose tip); ``components`` = the union of eight part hulls (both jaw halves, both cheeks, the
    brow centre and both eye regions down to the chin, the nose); ``extended`` = ``components`` with the brows
    raised by half their distance to the eyes; ``facehull`` = the plain convex hull of all points (81 with the
    forehead). ``full`` and ``components`` both cover the face below the brows. ``face68`` = the convex hull of
    the 68 points. With probability ``p_68``
    only the 68 points are used (SBI: 25% of draws), which turns ``facehull`` into ``face68``.
    """

    types: tuple[HullType, ...] = SBI_HULLS  # type: ignore[assignment]
    p_68: float = 0.25

    def __post_init__(self) -> None:
        if not self.types:
            raise ConfigError("mask.hull.types: needs at least one hull type")
        _check_p("mask.hull.p_68", self.p_68)


@dataclass(frozen=True)
class LALConfig:
    """The LAL knob: a hull family (as ``HullConfig``, drawn from ``types``) plus Face X-ray's erode/dilate and
    piecewise-affine grid warp. Not part of SBI as released (``sbi``); the ``lal`` generator (``sbi_lal``, BBMG)."""

    types: tuple[HullType, ...] = SBI_HULLS  # type: ignore[assignment]
    p_morph: float = 0.5  # probability of an erode or dilate
    morph_frac: tuple[float, float] = (-0.08, 0.08)  # structuring-element radius; negative = erode
    p_warp: float = 1.0
    warp_grid: int = 4  # control points per side (Face X-ray: a 4x4 grid)
    warp_frac: float = 0.04  # max control-point offset

    def __post_init__(self) -> None:
        if not self.types:
            raise ConfigError("mask.lal.types: needs at least one hull type")
        _check_p("mask.lal.p_morph", self.p_morph)
        _check_p("mask.lal.p_warp", self.p_warp)
        _check_range("mask.lal.morph_frac", self.morph_frac, -0.5, 0.5)
        if self.warp_grid < 2:
            raise ConfigError("mask.lal.warp_grid: must be >= 2")


@dataclass(frozen=True)
class LocalConfig:
    """SLADD-style local masks: a random non-empty subset of the facial features' hulls."""

    parts: tuple[Part, ...] = PARTS  # type: ignore[assignment]
    min_parts: int = 1
    max_parts: int = 4
    grow_frac: float = 0.04  # hulls are grown by this margin (a bare eye hull is a thin almond)

    def __post_init__(self) -> None:
        if not self.parts:
            raise ConfigError("mask.local.parts: needs at least one part")
        if not 1 <= self.min_parts <= self.max_parts:
            raise ConfigError("mask.local: needs 1 <= min_parts <= max_parts")
        if self.grow_frac < 0:
            raise ConfigError("mask.local.grow_frac: must be >= 0")


@dataclass(frozen=True)
class BBMGConfig:
    """Boundary Blur Mask Generator (paper 000 sec. 3.3, eq. 2-3) and its three mask forms (Fig. 7, Table 12).

    full = max(blur(global), blur(local)); global_only = blur(global); scaled_local = the local hulls
    shrunk about their centres by ``local_scale`` before blurring, while the hole cut from the landmark
    mask keeps full size ("narrowing M^b_local"), so a ring of target pixels separates the two.
    """

    form: Literal["full", "global_only", "scaled_local"] = "full"
    local_scale: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.local_scale <= 1.0:
            raise ConfigError("mask.bbmg.local_scale: must be in (0, 1]")


@dataclass(frozen=True)
class MaskConfig:
    """Mask generation. One generator is drawn uniformly from ``generators`` per sample (Table 2, last row)."""

    generators: tuple[Generator, ...] = ("lal",)
    draw: DrawConfig = field(default_factory=DrawConfig)
    hull: HullConfig = field(default_factory=HullConfig)
    lal: LALConfig = field(default_factory=LALConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    bbmg: BBMGConfig = field(default_factory=BBMGConfig)
    elastic: bool = True  # SBI: elastic deformation of the mask only
    # albumentations' ElasticTransform semantics (SBI: alpha 50, sigma 7): per-pixel uniform(-1, 1) noise,
    # Gaussian-smoothed with ``elastic_sigma`` px, times ``elastic_alpha`` px; pixels of the picture the face was
    # cut from (SBI: its crop at the frame's resolution; PairDataset: the stored crop), scaled onto the window.
    elastic_alpha: float = 50.0
    elastic_sigma: float = 7.0

    def __post_init__(self) -> None:
        if not self.generators:
            raise ConfigError("mask.generators: needs at least one generator")
        if self.elastic_alpha < 0 or self.elastic_sigma <= 0:
            raise ConfigError("mask: needs elastic_alpha >= 0 and elastic_sigma > 0")


@dataclass(frozen=True)
class BlurConfig:
    """Boundary blur (Table 1 "boundary-blurring operations", Table 4, Fig. 5).

    ``resize`` (SBI's scale): before blurring, the mask is resized to a height and a width drawn independently
    from this inclusive range (pixels, for the crop the synthesizer is given), blurred there, and resized back;
    kernel sizes are pixels of that resized mask, whatever the crop size (None: blur at the crop's own size).
    ``reference``: what the drawn size stands for -- ``sbi_crop`` (default) = SBI's own blending canvas, its
    large-margin crop (the 68-landmark box widened by w/2 left and right, h above and 0.4h below, cut at the
    picture's edge: the crop ``unmask prepare`` stores), so the blur has SBI's scale on the face although
    unmask synthesizes on the smaller final window; ``image`` = the image the synthesizer is given.
    ``kernel``: odd kernel sizes drawn uniformly from this inclusive range per pass (OpenCV's automatic sigma).
    ``passes=2`` is SBI's two-stage blur: the first blur is divided by its maximum and every value below 1 set
    to 0 (an erosion), then a second blur with an integer sigma drawn from ``sigma2`` (None: automatic) draws
    the final ramp, divided by its maximum again. After the first normalization the mask is float whatever
    its drawn dtype, so a uint8 mask changes only the first-pass erosion (Table 3, Fig. 4). ``mode="boundary"``
    (Fig. 5) keeps the mask at 1 wherever it was 1 before blurring: only the outside ramp is soft.
    Median does not soften a binary boundary at all (Table 4). BBMG blurs its global and local masks
    separately, one pass each, with kernels from this range.
    """

    op: Literal["gaussian", "average", "median"] = "gaussian"
    kernel: tuple[int, int] = (5, 25)
    passes: int = 2
    mode: Literal["full", "boundary"] = "full"
    resize: tuple[int, int] | None = (192, 256)
    sigma2: tuple[int, int] | None = (5, 45)
    reference: Literal["sbi_crop", "image"] = "sbi_crop"

    def __post_init__(self) -> None:
        lo, hi = self.kernel
        if lo < 1 or hi < lo or lo % 2 == 0 or hi % 2 == 0:
            raise ConfigError(f"blur.kernel: needs odd sizes 1 <= low <= high, got {list(self.kernel)}")
        if self.passes not in (1, 2):
            raise ConfigError("blur.passes: must be 1 or 2")
        if self.resize is not None:
            _check_range("blur.resize", self.resize, 8, 4096)
        if self.sigma2 is not None:
            _check_range("blur.sigma2", self.sigma2, 1, 1000)


@dataclass(frozen=True)
class ColorConfig:
    """Colour family (RGBShift, HueSaturationValue, RandomBrightnessContrast), each with its probability.

    Defaults are SBI's source/target group: RGB shift +-20 (p 0.3), HSV (p 1) with SBI's limits of +-0.3
    (OpenCV 8-bit units; hue 0.3 units = 0.6 degrees), brightness/contrast +-0.1 (p 1). Lookup tables truncate
    to uint8 like albumentations 1.3.1, so SBI's +-0.3 HSV draw is kept as it acts there: the 8-bit HSV round
    trip plus one level down on a channel whose draw is negative (nothing on a positive draw).
    """

    enabled: bool = True
    p_rgb_shift: float = 0.3
    rgb_shift: float = 20.0  # max |shift| per channel, 0-255 units
    p_hsv: float = 1.0
    hue_shift: float = 0.6  # degrees (0-360 scale)
    sat_shift: float = 0.3  # 0-255 units
    val_shift: float = 0.3
    p_brightness_contrast: float = 1.0
    brightness: float = 0.1  # +- fraction of 255
    contrast: float = 0.1  # +- fraction: gain = 1 + c

    def __post_init__(self) -> None:
        for name in ("p_rgb_shift", "p_hsv", "p_brightness_contrast"):
            _check_p(f"transforms.color.{name}", getattr(self, name))


@dataclass(frozen=True)
class FrequencyConfig:
    """Frequency family: with probability ``p`` exactly one of (50/50) a downscale by a factor drawn from
    ``downscale`` (nearest down, linear back up) or a sharpen (albumentations' kernel, ``sharpen_alpha``,
    ``sharpen_lightness``). SBI: p 1, factors 1/2 or 1/4, alpha 0.2-0.5, lightness 0.5-1.0."""

    enabled: bool = True
    p: float = 1.0
    downscale: tuple[float, ...] = (0.5, 0.25)
    sharpen_alpha: tuple[float, float] = (0.2, 0.5)
    sharpen_lightness: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        _check_p("transforms.frequency.p", self.p)
        if not self.downscale or any(not 0.05 <= f <= 1.0 for f in self.downscale):
            raise ConfigError("transforms.frequency.downscale: needs factors in [0.05, 1]")
        _check_range("transforms.frequency.sharpen_alpha", self.sharpen_alpha, 0.0, 1.0)
        _check_range("transforms.frequency.sharpen_lightness", self.sharpen_lightness, 0.0, 10.0)


@dataclass(frozen=True)
class AffineConfig:
    """Affine family on the source (SBI's resize + translate, so the blended face mismatches its frame).

    The source image and the mask move together; elastic deformation is a mask option
    (``mask.elastic``) because it shapes the blending boundary, not the face.
    """

    enabled: bool = True
    translate: tuple[float, float] = (0.03, 0.015)  # max |shift| as a fraction of the reference (x, y); SBI
    scale: tuple[float, float] = (0.95, 1 / 0.95)  # drawn per axis (SBI: x and y independently)
    # sbi_crop: translate relative to, and scale about the centre of, SBI's large-margin crop (BlurConfig);
    # image: relative to the synthesis image, about the face centre.
    reference: Literal["sbi_crop", "image"] = "sbi_crop"

    def __post_init__(self) -> None:
        _check_range("transforms.affine.scale", self.scale, 0.5, 2.0)


@dataclass(frozen=True)
class TransformConfig:
    """Source-target preprocessing (Table 1, Tables 5 and 6).

    ``object``: which image gets the colour + frequency transforms -- source, target, both (independent
    draws), or either (one of them with p = 0.5, SBI's choice and paper 000's best row).
    """

    object: Literal["source", "target", "both", "either"] = "either"
    color: ColorConfig = field(default_factory=ColorConfig)
    frequency: FrequencyConfig = field(default_factory=FrequencyConfig)
    affine: AffineConfig = field(default_factory=AffineConfig)


@dataclass(frozen=True)
class BlendConfig:
    """Blending (Table 7): dynamic = ratio drawn from ``ratios`` (SBI); alpha = ratio 1."""

    type: Literal["dynamic", "alpha"] = "dynamic"
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    # How the blended value becomes uint8: SBI as released blends in float and casts with numpy's astype(uint8),
    # which truncates ("floor": the fake is up to 1 grey level darker wherever 0 < mask < 1, which is also why
    # SBI's pairs differ by 0.02 grey levels just outside the 0.01 contour); "nearest" rounds.
    rounding: Literal["floor", "nearest"] = "floor"

    def __post_init__(self) -> None:
        if not self.ratios or any(not 0.0 < r <= 1.0 for r in self.ratios):
            raise ConfigError("blend.ratios: needs values in (0, 1]")


@dataclass(frozen=True)
class DonorConfig:
    """Face X-ray BI: the donor face is drawn among the ``top_k`` nearest landmark shapes of other identities."""

    top_k: int = 100
    color_correction: Literal["none", "mean_std"] = "mean_std"

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError("donor.top_k: must be >= 1")


@dataclass(frozen=True)
class SynthConfig:
    """A whole recipe. ``source``: ``self`` (SBI: source = a transformed copy of the input) or ``donor``
    (Face X-ray: another identity from a pool, aligned and colour-corrected)."""

    name: str = "custom"
    reproduces: str = ""  # the paper table / figure this config reproduces
    source: Literal["self", "donor"] = "self"
    mask: MaskConfig = field(default_factory=MaskConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    transforms: TransformConfig = field(default_factory=TransformConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    donor: DonorConfig = field(default_factory=DonorConfig)


@dataclass(frozen=True)
class FinalAugConfig:
    """Final augmentations of a training pair (paper 000 sec. 4.1: ImageCompression, RGBShift,
    HueSaturationValue, RandomBrightnessContrast; SBI's magnitudes), ONE draw per pair applied identically to
    the real and the fake -- so the two differ only where they were blended -- plus a horizontal flip of both."""

    color: ColorConfig = field(default_factory=lambda: ColorConfig(p_hsv=0.3, p_brightness_contrast=0.3,
                                                                   brightness=0.3, contrast=0.3))
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 100)
    p_hflip: float = 0.5

    def __post_init__(self) -> None:
        _check_p("p_jpeg", self.p_jpeg)
        _check_p("p_hflip", self.p_hflip)
        _check_range("jpeg_quality", self.jpeg_quality, 1, 100)


def synth_config_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> SynthConfig:
    """Strictly validated :class:`SynthConfig` from a plain mapping (+ ``key=value`` overrides)."""
    data = apply_overrides(dict(data), overrides or [])
    return from_dict(SynthConfig, data)


def load_synth_config(path: str | Path, overrides: list[str] | None = None) -> SynthConfig:
    """A YAML recipe file (``base:`` chains allowed) -> :class:`SynthConfig`."""
    return synth_config_from_dict(load_yaml(path), overrides)


def config_to_dict(cfg: SynthConfig) -> dict[str, Any]:
    return to_dict(cfg)
