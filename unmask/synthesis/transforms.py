"""Source/target preprocessing transforms (paper 000 sec. 4.2, Table 5): colour, frequency, affine.

Pure functions of (image, parameters) plus ``*_random`` wrappers that draw the parameters from an explicit
``np.random.Generator`` and return a short record of what they drew. Implemented with OpenCV/numpy only
(no albumentations): per-channel colour changes are one 256-entry lookup table, HSV shifts are lookup
tables in OpenCV's 8-bit HSV space, so each transform costs well under a millisecond at 380 px.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from unmask.synthesis.config import AffineConfig, ColorConfig, FrequencyConfig, TransformConfig

_RAMP = np.arange(256, dtype=np.float32)


def _lut_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def rgb_shift(img: np.ndarray, shifts: tuple[float, float, float]) -> np.ndarray:
    """Add a constant per channel (R, G, B), saturating at 0 and 255."""
    lut = _lut_u8(_RAMP[:, None] + np.asarray(shifts, np.float32)[None, :])
    return cv2.LUT(img, lut.reshape(256, 1, 3))


def brightness_contrast(img: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """``img * (1 + contrast) + brightness * 255`` (brightness and contrast as fractions), saturated."""
    lut = _lut_u8(_RAMP * (1.0 + contrast) + brightness * 255.0)
    return cv2.LUT(img, lut)


def hsv_shift(img: np.ndarray, hue_deg: float, sat: float, val: float) -> np.ndarray:
    """Shift hue (degrees, wrapping), saturation and value (0-255 units, saturating) in OpenCV's HSV."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # 8-bit: H in [0, 180)
    lut = np.stack([
        np.mod(np.rint(_RAMP + hue_deg / 2.0), 180.0),
        np.clip(np.rint(_RAMP + sat), 0, 255),
        np.clip(np.rint(_RAMP + val), 0, 255),
    ], axis=1).astype(np.uint8)
    return cv2.cvtColor(cv2.LUT(hsv, lut.reshape(256, 1, 3)), cv2.COLOR_HSV2RGB)


def downscale(img: np.ndarray, scale: float) -> np.ndarray:
    """Down-sample (nearest) then up-sample (linear) back: removes high frequencies, adds aliasing."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def sharpen(img: np.ndarray, alpha: float) -> np.ndarray:
    """Add ``alpha`` times the 4-neighbour Laplacian: boosts high frequencies (kernel sums to 1)."""
    k = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32) * np.float32(alpha)
    k[1, 1] += 1.0
    return cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG encode + decode at ``quality`` (RGB in, RGB out)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def warp_affine(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpAffine(img, matrix.astype(np.float64), (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


# --- random wrappers --------------------------------------------------------------------------------


def color_random(img: np.ndarray, cfg: ColorConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """RGBShift, HueSaturationValue, RandomBrightnessContrast in that order, each with its probability."""
    done: list[str] = []
    if not cfg.enabled:
        return img, done
    if rng.random() < cfg.p_rgb_shift:
        s = rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, size=3)
        img = rgb_shift(img, tuple(s))
        done.append("rgb({:+.0f},{:+.0f},{:+.0f})".format(*s))
    if rng.random() < cfg.p_hsv:
        h = rng.uniform(-cfg.hue_shift, cfg.hue_shift)
        s = rng.uniform(-cfg.sat_shift, cfg.sat_shift)
        v = rng.uniform(-cfg.val_shift, cfg.val_shift)
        img = hsv_shift(img, h, s, v)
        done.append(f"hsv({h:+.0f},{s:+.0f},{v:+.0f})")
    if rng.random() < cfg.p_brightness_contrast:
        b = rng.uniform(-cfg.brightness, cfg.brightness)
        c = rng.uniform(-cfg.contrast, cfg.contrast)
        img = brightness_contrast(img, b, c)
        done.append(f"bc({b:+.2f},{c:+.2f})")
    return img, done


def frequency_random(img: np.ndarray, cfg: FrequencyConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """With probability ``p``: downscale or sharpen (one of them, 50/50)."""
    if not cfg.enabled or rng.random() >= cfg.p:
        return img, []
    if rng.random() < 0.5:
        s = float(rng.uniform(*cfg.downscale))
        return downscale(img, s), [f"down({s:.2f})"]
    a = float(rng.uniform(*cfg.sharpen_alpha))
    return sharpen(img, a), [f"sharp({a:.2f})"]


def affine_random(cfg: AffineConfig, shape: tuple[int, int], center: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray | None, dict[str, Any]]:
    """SBI's source move: scale x and y independently about the face ``center``, then translate.

    Returns the 2x3 matrix (None when disabled) and its record.
    """
    if not cfg.enabled:
        return None, {}
    h, w = shape
    sx, sy = (float(v) for v in rng.uniform(*cfg.scale, size=2))
    tx, ty = (float(v) for v in rng.uniform(-cfg.translate_frac, cfg.translate_frac, size=2) * np.array([w, h]))
    cx, cy = float(center[0]), float(center[1])
    m = np.array([[sx, 0.0, cx - sx * cx + tx], [0.0, sy, cy - sy * cy + ty]], np.float64)
    return m, {"scale": [round(sx, 3), round(sy, 3)], "shift_px": [round(tx, 1), round(ty, 1)]}


def source_target_random(image: np.ndarray, cfg: TransformConfig, rng: np.random.Generator,
                         source: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Colour + frequency transforms on the object(s) ``cfg.object`` names (paper 000 Table 6).

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
