"""Blending (paper 000 eq. 1 / eq. 4) and the blend ratio (Table 7).

I_pf = M * I_s' + (1 - M) * I_t', where the effective mask M already includes the ratio: dynamic blending
(SBI) scales the blurred mask by a ratio drawn from {0.25, 0.5, 0.75, 1, 1, 1}; alpha blending uses 1.
"""

from __future__ import annotations

import cv2
import numpy as np

from unmask.synthesis.config import BlendConfig


def draw_ratio(cfg: BlendConfig, rng: np.random.Generator) -> float:
    """Dynamic: a ratio drawn uniformly from ``cfg.ratios`` (repeats weight it); alpha: 1."""
    if cfg.type == "alpha":
        return 1.0
    return float(cfg.ratios[int(rng.integers(len(cfg.ratios)))])


def blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray, rounding: str = "floor") -> np.ndarray:
    """``mask * source + (1 - mask) * target`` for uint8 RGB images and a float32 HxW mask in [0, 1].

    ``rounding="floor"`` truncates to uint8 as SBI's numpy cast does; ``"nearest"`` rounds (``cv2.blendLinear``,
    one pass without float copies). Either way a mask of exactly 0 or 1 reproduces the target or the source
    byte for byte.
    """
    m = np.ascontiguousarray(mask, dtype=np.float32)
    if rounding == "nearest":
        return cv2.blendLinear(source, target, m, np.float32(1.0) - m)
    # t + m (s - t) in float32, then numpy's truncating cast: exact at m = 0 and m = 1 (cv2.blendLinear on
    # floats divides by w1 + w2 + eps, which would floor a pure target pixel to one level below). The 1e-3
    # puts back on its integer a value that float32 left just below it (a mask of 1 - 6e-8 from the resize
    # back; SBI's float64 lands on the integer there).
    out = cv2.subtract(source, target, dtype=cv2.CV_32F)
    # The mask repeated per channel (one SIMD copy) makes the multiply contiguous: ~40% cheaper than numpy's
    # broadcast over a trailing axis of 3, the same float32 products.
    out *= cv2.cvtColor(m, cv2.COLOR_GRAY2RGB) if out.ndim == 3 and out.shape[2] == 3 else (
        m[..., None] if out.ndim == 3 else m)
    out += target
    out += np.float32(1e-3)
    return out.astype(np.uint8)


def xray_boundary(mask: np.ndarray) -> np.ndarray:
    """Face X-ray's boundary map B = 4 * M * (1 - M): 1 where the blend is half-half, 0 where pure."""
    m = mask.astype(np.float32)
    return np.float32(4.0) * m * (np.float32(1.0) - m)
