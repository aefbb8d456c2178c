"""Source/target preprocessing transforms (paper 000 sec. 4.2, Table 5): colour, frequency, affine.

Pure functions of (image, parameters); ``draw_*`` functions draw a parameter set from an explicit
``np.random.Generator`` and ``apply_*`` apply one set to any number of images (a training pair gets one
final-augmentation draw applied to its real and its fake). ``*_random`` = draw + apply on one image.
Implemented with OpenCV/numpy only (albumentations is not a dependency): per-channel colour changes are one
256-entry lookup table, HSV shifts are lookup tables in OpenCV's 8-bit HSV space (a table that is a plain
saturating shift is applied as one, the same bytes), so each transform costs well under a millisecond at
380 px. Lookup tables truncate to uint8 as albumentations 1.3.1 does (the library SBI's figures were
measured with), and the sharpen kernel is albumentations' (alpha, lightness) one.
"""

from __future__ import annotations

import functools
from typing import Any

import cv2
import numpy as np

from unmask.synthesis.config import AffineConfig, ColorConfig, FrequencyConfig, TransformConfig

_RAMP = np.arange(256, dtype=np.float32)
_RAMP_I16 = np.arange(256, dtype=np.int16)


def _lut_u8(values: np.ndarray) -> np.ndarray:
    """Clip and truncate to uint8 (albumentations 1.3.1's lookup tables truncate, they do not round)."""
    return np.clip(values, 0, 255).astype(np.uint8)


def rgb_shift(img: np.ndarray, shifts: tuple[float, float, float]) -> np.ndarray:
    """Add a constant per channel (R, G, B), saturating at 0 and 255."""
    lut = _lut_u8(_RAMP[:, None] + np.asarray(shifts, np.float32)[None, :])
    ks = [_saturating_offset(lut[:, c]) for c in range(3)]
    if None not in ks:  # every table is "+ k, saturated" (k = floor(shift)): the same bytes ~4x cheaper
        return _add_saturating(img, (ks[0], ks[1], ks[2]))
    return cv2.LUT(img, lut.reshape(256, 1, 3))


def _saturating_offset(table: np.ndarray) -> int | None:
    """k when the 256-entry uint8 ``table`` is ``clip(v + k, 0, 255)`` for every v (None otherwise).

    A truncated table of a fractional shift s is almost always this with k = floor(s); checking the table
    itself (not s) keeps the add that replaces it byte-identical in float32's edge cases too.
    """
    k = int(table[128]) - 128  # the middle entry is never clipped for |k| < 128
    return k if table.tobytes() == _offset_table_bytes(k) else None


@functools.lru_cache(maxsize=None)
def _offset_table_bytes(k: int) -> bytes:
    """The bytes of the table ``clip(v + k, 0, 255)`` (cached: comparing bytes costs ~1 us, numpy ~7)."""
    return np.clip(_RAMP_I16 + k, 0, 255).astype(np.uint8).tobytes()


def _add_saturating(img: np.ndarray, ks: tuple[int, int, int]) -> np.ndarray:
    """``clip(img + k, 0, 255)`` per channel as a new array. OpenCV's uint8 add of a scalar with a negative
    entry takes a slow wide path (0.11 ms at 380 px): the positive parts are added and the negative ones
    subtracted, each saturating, ~0.02 ms a call."""
    up, down = tuple(max(k, 0) for k in ks), tuple(max(-k, 0) for k in ks)
    out = cv2.add(img, (*up, 0)) if any(up) else img
    out = cv2.subtract(out, (*down, 0)) if any(down) else out
    return out.copy() if out is img else out


def brightness_contrast(img: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """``img * (1 + contrast) + brightness * 255`` (brightness and contrast as fractions), saturated."""
    lut = _lut_u8(_RAMP * (1.0 + contrast) + brightness * 255.0)
    return cv2.LUT(img, lut)


def hsv_shift(img: np.ndarray, hue_deg: float, sat: float, val: float) -> np.ndarray:
    """Shift hue (degrees, wrapping), saturation and value (0-255 units, saturating) in OpenCV's HSV."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # 8-bit: H in [0, 180)
    lut = np.stack([
        np.mod(_RAMP + np.float32(hue_deg / 2.0), 180.0),
        np.clip(_RAMP + np.float32(sat), 0, 255),
        np.clip(_RAMP + np.float32(val), 0, 255),
    ], axis=1).astype(np.uint8)  # truncation, as albumentations (SBI's +-0.3: -1 level on a negative draw)
    return cv2.cvtColor(_apply_hsv_table(hsv, lut), cv2.COLOR_HSV2RGB)


def _apply_hsv_table(hsv: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``cv2.LUT(hsv, lut)`` for an 8-bit HSV image (hue 0-179) and its (256, 3) table, byte for byte.

    A 3-channel table costs OpenCV 0.2 ms at 380 px. A shift's saturation and value tables are
    ``clip(v + k, 0, 255)``, so they become saturating adds, and the hue gets its own 1-channel table only
    when it moves: nothing at all for SBI's +-0.3 with every draw >= 0, ~0.1 ms when the hue moves. Any other
    table goes through ``cv2.LUT``.
    """
    ks, kv = _saturating_offset(lut[:, 1]), _saturating_offset(lut[:, 2])
    if ks is None or kv is None:
        return cv2.LUT(hsv, lut.reshape(256, 1, 3))
    out = _add_saturating(hsv, (0, ks, kv)) if ks or kv else hsv
    if lut[:180, 0].tobytes() != _offset_table_bytes(0)[:180]:  # hue only takes 0-179: the rest is never read
        out = out.copy() if out is hsv else out
        cv2.insertChannel(cv2.LUT(cv2.extractChannel(hsv, 0), lut[:, 0]), out, 0)
    return out


def downscale(img: np.ndarray, scale: float) -> np.ndarray:
    """Down-sample (nearest, to int(size * scale)) then up-sample (linear) back: SBI's RandomDownScale."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def sharpen(img: np.ndarray, alpha: float, lightness: float = 1.0) -> np.ndarray:
    """albumentations' Sharpen: the 3x3 kernel (1 - alpha) * identity + alpha * [8-neighbour Laplacian with
    centre 8 + lightness]; it sums to 1 - alpha + alpha * lightness (lightness < 1 also darkens a little)."""
    k = np.full((3, 3), -1.0, np.float32)
    k[1, 1] = 8.0 + lightness
    k *= np.float32(alpha)
    k[1, 1] += np.float32(1.0 - alpha)
    return cv2.filter2D(img, -1, k)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG encode + decode at ``quality``, channels passed through in the order given.

    Like albumentations' ImageCompression (SBI's final augmentation), the RGB array goes to the encoder as
    is, so the codec's luma/chroma weights see R and B swapped; that is the artefact SBI trained on, and it
    saves two colour conversions per call.
    """
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


MCU = 16  # JPEG's minimum coded unit with 4:2:0 chroma (OpenCV's default)


def jpeg_like(img: np.ndarray, quality: int, ref_in: np.ndarray, ref_out: np.ndarray,
              box: tuple[int, int, int, int] | None) -> np.ndarray:
    """``jpeg(img, quality)`` when ``img`` equals ``ref_in`` outside ``box`` (x0, y0, x1, y1) and
    ``ref_out = jpeg(ref_in, quality)``: only the 16-px MCUs around ``box`` plus one MCU of margin are
    re-encoded and pasted onto ``ref_out``. JPEG codes each MCU on its own (4:2:0 downsampling within 2x2
    pixels); only the decoder's chroma upsampling reads one chroma sample across an MCU edge, so the changed
    MCUs reach 1-2 px into their neighbours, and the margin MCU gives those pixels their true context --
    byte-identical to the full re-encode (a test checks it), at the cost of the box. ``box`` None: nothing differs, ``ref_out`` is returned."""
    if box is None:
        return ref_out
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    ex0, ey0 = max(0, (x0 // MCU - 1) * MCU), max(0, (y0 // MCU - 1) * MCU)
    ex1, ey1 = min(w, (-(-x1 // MCU) + 1) * MCU), min(h, (-(-y1 // MCU) + 1) * MCU)
    if (ex1 - ex0) * (ey1 - ey0) > 0.7 * h * w:
        return jpeg(img, quality)
    part = jpeg(np.ascontiguousarray(img[ey0:ey1, ex0:ex1]), quality)
    # Paste the changed MCUs and the 2 px of the margin MCUs next to them (their chroma is upsampled from
    # the changed MCU's samples); the rest of a margin MCU is right in ``ref_out`` already.
    r = 2
    px0, py0 = (ex0 + MCU - r if ex0 > 0 else 0), (ey0 + MCU - r if ey0 > 0 else 0)
    px1, py1 = (ex1 - MCU + r if ex1 < w else w), (ey1 - MCU + r if ey1 < h else h)
    out = ref_out.copy()
    out[py0:py1, px0:px1] = part[py0 - ey0:py1 - ey0, px0 - ex0:px1 - ex0]
    return out


def warp_affine(img: np.ndarray, matrix: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``img`` moved by the 2x3 ``matrix`` (source -> output); with ``box`` (x0, y0, x1, y1) only that part of
    the output is computed (the blend needs the source only where its mask is non-zero)."""
    h, w = img.shape[:2]
    m = matrix.astype(np.float64)
    if box is not None:
        m = m.copy()
        m[:, 2] -= (box[0], box[1])
        w, h = box[2] - box[0], box[3] - box[1]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def nonzero_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) bounding the non-zero pixels of a 2-D array (None when there are none)."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask, dtype=np.uint8) if mask.dtype != np.uint8 else mask)
    return None if w == 0 or h == 0 else (x, y, x + w, y + h)


# --- random wrappers --------------------------------------------------------------------------------


Op = tuple[str, tuple[float, ...]]  # (name, parameters): one drawn transform


def draw_color(cfg: ColorConfig, rng: np.random.Generator) -> list[Op]:
    """RGBShift, HueSaturationValue, RandomBrightnessContrast in that order, each with its probability."""
    ops: list[Op] = []
    if not cfg.enabled:
        return ops
    if rng.random() < cfg.p_rgb_shift:
        ops.append(("rgb", tuple(float(v) for v in rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, size=3))))
    if rng.random() < cfg.p_hsv:
        ops.append(("hsv", (float(rng.uniform(-cfg.hue_shift, cfg.hue_shift)),
                            float(rng.uniform(-cfg.sat_shift, cfg.sat_shift)),
                            float(rng.uniform(-cfg.val_shift, cfg.val_shift)))))
    if rng.random() < cfg.p_brightness_contrast:
        ops.append(("bc", (float(rng.uniform(-cfg.brightness, cfg.brightness)),
                           float(rng.uniform(-cfg.contrast, cfg.contrast)))))
    return ops


def draw_frequency(cfg: FrequencyConfig, rng: np.random.Generator) -> list[Op]:
    """With probability ``p``: exactly one of downscale (a factor from the set) or sharpen, 50/50."""
    if not cfg.enabled or rng.random() >= cfg.p:
        return []
    if rng.random() < 0.5:
        return [("down", (float(cfg.downscale[int(rng.integers(len(cfg.downscale)))]),))]
    return [("sharp", (float(rng.uniform(*cfg.sharpen_alpha)), float(rng.uniform(*cfg.sharpen_lightness))))]


def apply_op(img: np.ndarray, op: Op) -> np.ndarray:
    name, a = op
    if name == "rgb":
        return rgb_shift(img, (a[0], a[1], a[2]))
    if name == "hsv":
        return hsv_shift(img, a[0], a[1], a[2])
    if name == "bc":
        return brightness_contrast(img, a[0], a[1])
    if name == "down":
        return downscale(img, a[0])
    if name == "sharp":
        return sharpen(img, a[0], a[1])
    if name == "jpeg":
        return jpeg(img, int(a[0]))
    raise ValueError(f"unknown transform {name!r}")


def apply_ops(img: np.ndarray, ops: list[Op]) -> np.ndarray:
    for op in ops:
        img = apply_op(img, op)
    return img


def describe(ops: list[Op]) -> list[str]:
    """Short captions of drawn transforms (gallery and records)."""
    fmt = {"rgb": "rgb({:+.0f},{:+.0f},{:+.0f})", "hsv": "hsv({:+.1f},{:+.1f},{:+.1f})", "bc": "bc({:+.2f},{:+.2f})",
           "down": "down({:.2f})", "sharp": "sharp({:.2f},{:.2f})", "jpeg": "jpeg({:.0f})"}
    return [fmt[n].format(*a) for n, a in ops]


def color_random(img: np.ndarray, cfg: ColorConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Draw a colour parameter set and apply it to ``img`` (see ``draw_color``)."""
    ops = draw_color(cfg, rng)
    return apply_ops(img, ops), describe(ops)


def frequency_random(img: np.ndarray, cfg: FrequencyConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Draw a frequency transform and apply it to ``img`` (see ``draw_frequency``)."""
    ops = draw_frequency(cfg, rng)
    return apply_ops(img, ops), describe(ops)


def affine_random(cfg: AffineConfig, shape: tuple[int, int], center: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray | None, dict[str, Any]]:
    # ``shape`` (h, w) is the size the translation is relative to, ``center`` the point scaled about.
    """SBI's source move: scale x and y independently about the face ``center``, then translate
    (x by up to ``translate[0]`` of the width, y by up to ``translate[1]`` of the height).

    Returns the 2x3 matrix (None when disabled) and its record.
    """
    if not cfg.enabled:
        return None, {}
    h, w = (float(v) for v in shape)
    sx, sy = (float(v) for v in rng.uniform(*cfg.scale, size=2))
    lim = np.asarray(cfg.translate, np.float64)
    tx, ty = (float(v) for v in rng.uniform(-lim, lim) * np.array([w, h]))
    cx, cy = float(center[0]), float(center[1])
    m = np.array([[sx, 0.0, cx - sx * cx + tx], [0.0, sy, cy - sy * cy + ty]], np.float64)
    return m, {"scale": [round(sx, 3), round(sy, 3)], "shift_px": [round(tx, 1), round(ty, 1)]}


def source_target_random(image: np.ndarray, cfg: TransformConfig, rng: np.random.Generator,
                         source: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Colour then frequency transforms, as one group, on the object(s) ``cfg.object`` names (paper 000
    Table 6; SBI: ``either`` = the whole group on the source with p 0.5, otherwise on the target).

    ``source`` defaults to a copy of ``image`` (SBI); the target is always ``image``. Returns
    (source', target', record).
    """
    src = image if source is None else source
    tgt = image
    obj = cfg.object
    if obj == "either":
        obj = "source" if rng.random() < 0.5 else "target"
    rec: dict[str, Any] = {"object": obj}
    for name in (("source", "target") if obj == "both" else (obj,)):
        img = src if name == "source" else tgt
        img, c = color_random(img, cfg.color, rng)
        img, f = frequency_random(img, cfg.frequency, rng)
        if name == "source":
            src = img
        else:
            tgt = img
        rec[name] = c + f
    return src, tgt, rec
