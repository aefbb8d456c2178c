"""Robustness distortions of paper 000 (sec. 4.3 "Robustness Study", Table 10), as pure image transforms.

Each distortion maps an HxWx3 uint8 RGB image to a new one of the same shape and never touches its input:

- ``resize`` (s): "downsampling the original image to an s x s size and then upsampling it back to the
  original image size" (s = 128, 256). Down with area interpolation (the anti-aliased choice), up bilinear.
- ``gaussian_blur`` (k): Gaussian blur with a k x k kernel (k = 3, 5). The paper gives only k, so sigma is
  OpenCV's default for k (``sigma=0``): for k <= 7 that is the binomial kernel ([1 2 1]/4, [1 4 6 4 1]/16,
  the discrete Gaussians of sigma ~0.71 and 1.0), as albumentations' GaussianBlur also gives.
- ``jpeg`` (q): JPEG compression with quality factor q (q = 50, 100), OpenCV's libjpeg encoder (4:2:0
  chroma subsampling, so even q = 100 changes the image slightly, as a real JPEG save does).
- ``raw``: no change (Table 10's "Raw" row).

The paper applies them to the raw test frames, before face cropping; ``unmask.evaluate.scoring`` does that
for raw media and takes the closest equivalent on a prepared store (see ``docs/evaluation.md``).
Registry + factory (``DISTORTIONS``, ``build_distortion``) like the other registries of unmask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from unmask.errors import UnmaskError

Distortion = Callable[[np.ndarray], np.ndarray]
DISTORTIONS: dict[str, Callable[..., Distortion]] = {}


def register_distortion(kind: str) -> Callable[[Callable[..., Distortion]], Callable[..., Distortion]]:
    def deco(factory: Callable[..., Distortion]) -> Callable[..., Distortion]:
        if kind in DISTORTIONS:
            raise ValueError(f"distortion {kind!r} registered twice")
        DISTORTIONS[kind] = factory
        return factory

    return deco


def _check_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"distortions take HxWx3 uint8 RGB images, got {img.shape} {img.dtype}")
    return img


def resize(img: np.ndarray, s: int, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Down to ``s`` x ``s`` (area), back up (bilinear) to ``out_size`` = (w, h), default the input size."""
    import cv2

    _check_rgb(img)
    h, w = img.shape[:2]
    small = cv2.resize(img, (int(s), int(s)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, out_size or (w, h), interpolation=cv2.INTER_LINEAR)


def gaussian_blur(img: np.ndarray, k: int) -> np.ndarray:
    """k x k Gaussian blur (k odd), sigma derived from k by OpenCV (binomial kernel for k <= 7)."""
    import cv2

    _check_rgb(img)
    k = int(k)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd and positive, got {k}")
    return cv2.GaussianBlur(img, (k, k), 0)


def jpeg(img: np.ndarray, q: int) -> np.ndarray:
    """Encode as JPEG at quality ``q`` (0-100) and decode again."""
    import cv2

    _check_rgb(img)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


@register_distortion("raw")
def _raw() -> Distortion:
    return lambda img: _check_rgb(img).copy()


@register_distortion("resize")
def _resize(s: int) -> Distortion:
    if int(s) < 1:
        raise ValueError(f"resize size must be positive, got {s}")
    return lambda img: resize(img, int(s))


@register_distortion("gaussian_blur")
def _blur(k: int) -> Distortion:
    if int(k) < 1 or int(k) % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd and positive, got {k}")
    return lambda img: gaussian_blur(img, int(k))


@register_distortion("jpeg")
def _jpeg(q: int) -> Distortion:
    if not 0 <= int(q) <= 100:
        raise ValueError(f"JPEG quality must be in 0..100, got {q}")
    return lambda img: jpeg(img, int(q))


@dataclass
class DistortionSpec:
    """One row of a robustness table: a display name, a registered kind and its parameters."""

    name: str = "Raw"
    kind: str = "raw"
    params: dict[str, float] = field(default_factory=dict)


def build_distortion(kind: str, **params) -> Distortion:
    """The registered distortion ``kind`` with ``params`` (e.g. ``build_distortion("jpeg", q=50)``)."""
    if kind not in DISTORTIONS:
        raise UnmaskError(f"unknown distortion {kind!r}; choose from {', '.join(sorted(DISTORTIONS))}")
    try:
        return DISTORTIONS[kind](**{k: int(v) if float(v).is_integer() else v for k, v in params.items()})
    except TypeError as exc:
        raise UnmaskError(f"distortion {kind!r}: {exc}") from None
    except ValueError as exc:
        raise UnmaskError(f"distortion {kind!r}: {exc}") from None


# Paper 000 Table 10, in its row order.
TABLE10: tuple[DistortionSpec, ...] = (
    DistortionSpec("Raw", "raw", {}),
    DistortionSpec("Resize(s=128)", "resize", {"s": 128}),
    DistortionSpec("Resize(s=256)", "resize", {"s": 256}),
    DistortionSpec("GaussianBlur(k=3)", "gaussian_blur", {"k": 3}),
    DistortionSpec("GaussianBlur(k=5)", "gaussian_blur", {"k": 5}),
    DistortionSpec("JPEGCompress(q=50)", "jpeg", {"q": 50}),
    DistortionSpec("JPEGCompress(q=100)", "jpeg", {"q": 100}),
)
