"""Boundary blur of a raw mask (paper 000 Table 1 "boundary-blurring operations"; Tables 3-4, Figs. 4-5).

The blur runs in the raw mask's own dtype, on purpose: OpenCV rounds a blurred uint8 image, so a uint8
mask of value 1 comes back with a hard {0, 1} edge while float32 keeps a smooth ramp -- the effect paper
000 measures in Table 3 / Fig. 4. Only afterwards is the mask converted to float32 in [0, 1].
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


def blur_once(mask: np.ndarray, op: str, k: int) -> np.ndarray:
    """One blur of size ``k`` in the mask's dtype.

    OpenCV's median filter takes float32 only up to k = 5; larger kernels run on an 8-bit copy
    (lossless for a binary mask, 1/255 steps otherwise) and are converted back.
    """
    if k <= 1:
        return mask
    if op == "gaussian":
        return cv2.GaussianBlur(mask, (k, k), 0, borderType=cv2.BORDER_REPLICATE)
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
    """Raw mask of peak ``value`` -> float32 in [0, 1].

    A mask whose blurred peak fell clearly below 1 (a thin part under a wide kernel) is renormalized to
    peak 1, as SBI divides by the max. Float kernel sums are 1 only to ~1e-7, so values are scaled by
    (1 + 2e-6) and clipped: a region that was exactly at ``value`` comes out exactly 1.
    """
    m = mask.astype(np.float32)
    peak = float(m.max()) / value
    scale = 1.0 / value
    if 0 < peak < 1.0 - 1e-3:
        scale /= peak
    m *= np.float32(scale * (1.0 + 2e-6))
    np.clip(m, 0.0, 1.0, out=m)
    return m


def boundary_blur(mask: np.ndarray, cfg: BlurConfig, value: float, rng: np.random.Generator,
                  passes: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Blur a raw mask per ``cfg`` and return (float32 mask in [0, 1], record of kernels drawn).

    passes = 2 (SBI): blur, keep only the saturated interior, blur again with a second kernel.
    mode = "boundary" (Fig. 5): the result is max(blurred, original), so wherever the mask was at its full
    value it stays exactly 1 and only the outer ramp is soft.
    """
    passes = cfg.passes if passes is None else passes
    kernels = []
    m = mask
    for i in range(passes):
        k = odd_kernel(rng, cfg.kernel)
        kernels.append(k)
        m = blur_once(m, cfg.op, k)
        if i < passes - 1:  # keep the saturated interior for the next pass
            peak = float(m.max())
            if peak > 0:  # float sums of kernel weights are 1 only up to rounding: compare with a tolerance
                _, m = cv2.threshold(m, peak * (1 - 1e-3) - 1e-6, peak, cv2.THRESH_BINARY)
    if cfg.mode == "boundary":
        m = np.maximum(m, mask)
    return to_unit(m, value), {"op": cfg.op, "kernels": kernels, "mode": cfg.mode}
