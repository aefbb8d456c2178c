"""Boundary blur of a raw mask at SBI's scale (paper 000 Table 1 "boundary-blurring operations"; Tables 3-4,
Figs. 4-5; BBMG eq. 2-3).

SBI blurs its mask at a fixed scale, not at the crop's: the mask is resized to a random height and width
(192-256 px each), blurred there, and resized back, so a kernel size means the same thing whatever the
crop size -- and so do paper 000's kernel knobs (Fig. 5) and BBMG's blur, which use the same convention.
SBI's two passes: blur (odd kernel 5-25, automatic sigma), divide by the maximum, set every value below 1 to
0 (an erosion: the soft band ends up inside the hull), blur again (odd kernel 5-25, integer sigma 5-45),
divide by the maximum. The first blur runs in the raw mask's own dtype, on purpose: OpenCV rounds a blurred
uint8 image, so a uint8 mask changes the first-pass erosion (Table 3 / Fig. 4); after the first
normalization the mask is float, as in SBI (numpy division), so uint8 still ends with a soft ramp.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from unmask.synthesis.config import BlurConfig


def odd_kernel(rng: np.random.Generator, kernel: tuple[int, int]) -> int:
    """An odd size drawn uniformly from the odd integers in the inclusive range ``kernel``."""
    lo, hi = kernel
    return int(lo + 2 * rng.integers(0, (hi - lo) // 2 + 1))


def draw_scale(cfg: BlurConfig, shape: tuple[float, float], rng: np.random.Generator) -> tuple[float, float] | None:
    """SBI's blur scale for a reference crop of ``shape`` (h, w): (x, y) factors to a height and width drawn
    independently from ``cfg.resize`` (None when ``cfg.resize`` is None: blur at the crop's own size)."""
    if cfg.resize is None:
        return None
    lo, hi = cfg.resize
    sh, sw = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    return sw / float(shape[1]), sh / float(shape[0])


def reach(cfg: BlurConfig, passes: int) -> int:
    """How far (pixels of the blurred mask) the blur can carry mass beyond the raw mask."""
    return (int(cfg.kernel[1]) // 2) * passes + 2


def blur_once(mask: np.ndarray, op: str, k: int, sigma: float = 0.0) -> np.ndarray:
    """One blur of size ``k`` in the mask's dtype (Gaussian: ``sigma`` 0 = OpenCV's automatic sigma).

    OpenCV's median filter takes float32 only up to k = 5; larger kernels run on an 8-bit copy
    (lossless for a binary mask, 1/255 steps otherwise) and are converted back.
    """
    if k <= 1:
        return mask
    if op == "gaussian":
        return cv2.GaussianBlur(mask, (k, k), sigma, borderType=cv2.BORDER_REPLICATE)
    if op == "average":
        return cv2.blur(mask, (k, k), borderType=cv2.BORDER_REPLICATE)
    if op == "median":
        if mask.dtype == np.uint8 or k <= 5:
            return cv2.medianBlur(mask, k)
        peak = float(mask.max()) or 1.0
        m8 = np.clip(np.rint(mask * (255.0 / peak)), 0, 255).astype(np.uint8)
        return cv2.medianBlur(m8, k).astype(np.float32) * np.float32(peak / 255.0)
    raise ValueError(f"unknown blur op {op!r}")


def to_unit(mask: np.ndarray, value: float) -> np.ndarray:
    """Raw mask of full value ``value`` -> float32 in [0, 1] (renormalized to peak 1 when its peak fell
    clearly below ``value``, as SBI divides by the max); values at ``value`` come out exactly 1."""
    m = mask.astype(np.float32)
    peak = float(m.max()) / value
    scale = 1.0 / value
    if 0 < peak < 1.0 - 1e-3:
        scale /= peak
    m *= np.float32(scale * (1.0 + 2e-6))
    np.clip(m, 0.0, 1.0, out=m)
    return m


def _normalize(m: np.ndarray) -> np.ndarray:
    """float32 copy divided by its maximum (SBI), clipped to [0, 1]; an all-zero mask stays zero."""
    m = m.astype(np.float32)
    peak = float(m.max())
    if peak > 0:
        m *= np.float32(1.0 / peak)
        np.clip(m, 0.0, 1.0, out=m)
    return m


def boundary_blur(mask: np.ndarray, cfg: BlurConfig, value: float, rng: np.random.Generator,
                  passes: int | None = None, scale: tuple[float, float] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Blur a raw mask per ``cfg`` and return (float32 mask in [0, 1] of the same shape, record of draws).

    ``scale`` = (x, y) factors from ``draw_scale``: the mask is resized by them (linear), blurred, and resized
    back (linear). passes = 2 (SBI): blur, normalize, keep only the pixels at the maximum, blur again with
    an integer sigma from ``cfg.sigma2``, normalize. mode = "boundary" (Fig. 5): the result is
    max(blurred, raw), so wherever the raw mask was at its full value it stays exactly 1 and only the outer
    ramp is soft. ``value`` (the raw mask's full value) is kept for the caller's interface; the result is
    normalized by its maximum as SBI does.
    """
    del value
    passes = cfg.passes if passes is None else passes
    full_h, full_w = mask.shape[:2]
    m = mask
    if scale is not None:
        size = (max(1, int(round(full_w * scale[0]))), max(1, int(round(full_h * scale[1]))))
        m = cv2.resize(m, size, interpolation=cv2.INTER_LINEAR)
    raw = m
    kernels: list[int] = []
    sigma = 0
    for i in range(passes):
        k = odd_kernel(rng, cfg.kernel)
        kernels.append(k)
        if i == 1 and cfg.sigma2 is not None and cfg.op == "gaussian":
            sigma = int(rng.integers(cfg.sigma2[0], cfg.sigma2[1] + 1))
        m = blur_once(m, cfg.op, k, float(sigma) if i == 1 else 0.0)
        if i < passes - 1:
            m = _normalize(m)
            # "every value below 1 set to 0": float kernel sums are 1 only to ~1e-7, so the saturated
            # interior is found with a small tolerance (a uint8 first pass is exact).
            _, m = cv2.threshold(m, 1.0 - 1e-4, 1.0, cv2.THRESH_BINARY)
    if cfg.mode == "boundary":
        m = np.maximum(_normalize(m), _normalize(raw))
    m = _normalize(m)
    if scale is not None:
        m = cv2.resize(m, (full_w, full_h), interpolation=cv2.INTER_LINEAR)
        np.clip(m, 0.0, 1.0, out=m)
    rec: dict[str, Any] = {"op": cfg.op, "kernels": kernels, "mode": cfg.mode}
    if passes == 2 and cfg.sigma2 is not None and cfg.op == "gaussian":
        rec["sigma2"] = sigma
    if scale is not None:
        rec["size"] = [int(round(full_h * scale[1])), int(round(full_w * scale[0]))]
    return m, rec
