"""A reference-style SBI pair generator for side-by-side benchmark figures (not part of unmask).

Built from the released SBI training pipeline's documented behaviour (the facts listed in issue 8 items 2-3;
Shiohara & Yamasaki, CVPR 2022) on **albumentations 1.3.1**, the library the issue's SBI figures were measured
with, so ``benchmarks/synthesis_parity.py`` and ``benchmarks/synthesis_speed.py`` can measure a reference in
the same run as unmask instead of quoting a figure taken on another day. Order of operations, as released:
on the large-margin crop at the frame's resolution (unmask's stored crop) -- 68 points only with p 0.25, a hull
family mask, the source/target group on the source or the target (p 0.5), affine move of source + mask, elastic
deformation of the mask only, SBI's two-pass blur at a 192-256 px size, a ratio from {.25, .5, .75, 1, 1, 1},
float blend cast to uint8 -- then optionally one final-augmentation draw on both images, the detector box
widened by w/4 * U(0.2, 0.8) per side (h/4 likewise), resized to 380 px with bilinear interpolation.

The hull polygons come from ``unmask.synthesis.masks.hull_polygons`` (the four Face X-ray-library families);
everything else here is independent of unmask's synthesis code. Needs ``pip install albumentations==1.3.1``
(``pip install -e .[bench]``); ``unavailable()`` says why it cannot run.
"""

from __future__ import annotations

import random
from typing import Any

import cv2
import numpy as np

ALB_VERSION = "1.3.1"
HULL_TYPES = ("full", "extended", "components", "facehull")


def unavailable() -> str | None:
    """None when the reference can run, else the reason (one line)."""
    try:
        import albumentations
    except ImportError:
        return f"albumentations {ALB_VERSION} is not installed (pip install -e .[bench])"
    if albumentations.__version__ != ALB_VERSION:
        return f"albumentations {albumentations.__version__} is installed; the reference needs {ALB_VERSION}"
    return None


def seed(value: int) -> None:
    """The reference draws from the global ``random`` and ``np.random`` streams, as the released code does."""
    random.seed(value)
    np.random.seed(value)


class ReferenceSBI:
    """Pairs (real, fake, blend weight) the way the released SBI pipeline makes them; see the module docstring."""

    def __init__(self, size: int = 380, final_aug: bool = True) -> None:
        import albumentations as alb

        class _DownScale(alb.ImageOnlyTransform):  # SBI's RandomDownScale: nearest down by 2 or 4, bilinear up
            def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
                h, w = img.shape[:2]
                r = (2, 4)[np.random.randint(2)]
                small = cv2.resize(img, (int(w / r), int(h / r)), interpolation=cv2.INTER_NEAREST)
                return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

        self.size = int(size)
        self.source_target = alb.Compose([
            alb.Compose([alb.RGBShift((-20, 20), (-20, 20), (-20, 20), p=0.3),
                         alb.HueSaturationValue((-0.3, 0.3), (-0.3, 0.3), (-0.3, 0.3), p=1),
                         alb.RandomBrightnessContrast((-0.1, 0.1), (-0.1, 0.1), p=1)], p=1),
            alb.OneOf([_DownScale(p=1), alb.Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0), p=1)], p=1),
        ], p=1)
        self.affine = alb.Affine(translate_percent={"x": (-0.03, 0.03), "y": (-0.015, 0.015)},
                                 scale=[0.95, 1 / 0.95], fit_output=False, p=1)
        self.elastic = alb.ElasticTransform(alpha=50, sigma=7, alpha_affine=0, p=1)
        self.final = alb.Compose([
            alb.RGBShift((-20, 20), (-20, 20), (-20, 20), p=0.3),
            alb.HueSaturationValue((-0.3, 0.3), (-0.3, 0.3), (-0.3, 0.3), p=0.3),
            alb.RandomBrightnessContrast((-0.3, 0.3), (-0.3, 0.3), p=0.3),
            alb.ImageCompression(quality_lower=40, quality_upper=100, p=0.5),
        ], additional_targets={"image1": "image"}, p=1) if final_aug else None

    @staticmethod
    def hull_mask(lm: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """One of the four hull families (uniform), filled with 1.0 on a float mask (integer vertices, as the
        library draws them)."""
        from unmask.synthesis.masks import hull_polygons

        mask = np.zeros(shape[:2], np.float32)
        for poly in hull_polygons(lm, HULL_TYPES[random.randrange(4)]):
            cv2.fillConvexPoly(mask, np.round(poly).astype(np.int32), 1.0)
        return mask

    @staticmethod
    def blend_mask(mask: np.ndarray) -> np.ndarray:
        """SBI's two-pass blur at a random 192-256 px size (issue 8 item 2)."""
        h, w = mask.shape
        m = cv2.resize(mask, (np.random.randint(192, 257), np.random.randint(192, 257)))
        k1, k2 = random.randrange(5, 26, 2), random.randrange(5, 26, 2)
        m = cv2.GaussianBlur(m, (k1, k1), 0)
        m = m / m.max()
        m[m < 1] = 0
        m = cv2.GaussianBlur(m, (k2, k2), np.random.randint(5, 46))
        return cv2.resize(m / m.max(), (w, h))

    @staticmethod
    def large_crop(frame: np.ndarray, lm81: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SBI's training canvas from a whole frame: the 68-landmark box widened by w/2 left and right, h above and
        0.4h below, cut at the frame's edge (the crop unmask stores); landmarks and box moved into it."""
        p = lm81[:68]
        x0, y0 = p.min(axis=0)
        x1, y1 = p.max(axis=0)
        w, h = x1 - x0, y1 - y0
        fh, fw = frame.shape[:2]
        ya, yb = max(0, int(y0 - h)), min(fh, int(y1 + 0.4 * h) + 1)
        xa, xb = max(0, int(x0 - w / 2)), min(fw, int(x1 + w / 2) + 1)
        shift = np.array([xa, ya], np.float32)
        return frame[ya:yb, xa:xb], lm81 - shift, np.asarray(box, np.float32) - np.tile(shift, 2)

    def pair_from_frame(self, frame: np.ndarray, lm81: np.ndarray, box: np.ndarray, augment: bool = True) -> dict[str, Any]:
        """What the released pipeline does per item from a whole decoded frame: a horizontal flip of the frame
        with p 0.5 (landmarks and box mirrored; SBI also re-orders the landmark indices, which costs nothing and
        is left out), the large-margin crop, then :meth:`pair`."""
        if np.random.rand() < 0.5:
            w = frame.shape[1]
            frame = frame[:, ::-1].copy()
            lm81 = np.column_stack([w - lm81[:, 0], lm81[:, 1]]).astype(np.float32)
            box = np.array([w - box[2], box[1], w - box[0], box[3]], np.float32)
        crop, lm, bx = self.large_crop(frame, lm81, box)
        return self.pair(crop, lm, bx, augment=augment)

    def pair(self, crop: np.ndarray, lm81: np.ndarray, box: np.ndarray, augment: bool = True,
             keep_pre: bool = False) -> dict[str, Any]:
        """(real, fake) uint8 at ``size`` px and the blend weight (ratio included), cut by one window.

        ``augment``: one final-augmentation draw on both images; ``keep_pre``: also return the pair before it
        (``real_pre``, ``fake_pre``), cut by the same window."""
        img = np.ascontiguousarray(crop)
        lm = lm81[:68] if np.random.rand() < 0.25 else lm81
        mask = self.hull_mask(lm, img.shape)
        source = img.copy()
        if np.random.rand() < 0.5:
            source = self.source_target(image=source)["image"]
        else:
            img = self.source_target(image=img)["image"]
        moved = self.affine(image=source, mask=mask)
        source, mask = moved["image"], moved["mask"]
        mask = self.elastic(image=source, mask=mask)["mask"]
        weight = self.blend_mask(mask)
        ratio = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)[np.random.randint(6)]
        weight = weight * ratio
        fake = (weight[:, :, None] * source + (1 - weight[:, :, None]) * img).astype(np.uint8)
        real = img.astype(np.uint8)
        pre = (real, fake)
        if augment and self.final is not None:
            out = self.final(image=fake, image1=real)
            fake, real = out["image"], out["image1"]
        x0, y0, x1, y1 = (float(v) for v in box)
        bw, bh = x1 - x0, y1 - y0
        left, right = (bw / 4 * (np.random.rand() * 0.6 + 0.2) for _ in range(2))
        top, bottom = (bh / 4 * (np.random.rand() * 0.6 + 0.2) for _ in range(2))
        h, w = real.shape[:2]
        ya, yb = max(0, int(y0 - top)), min(h, int(y1 + bottom) + 1)
        xa, xb = max(0, int(x0 - left)), min(w, int(x1 + right) + 1)

        def cut(a: np.ndarray) -> np.ndarray:
            return cv2.resize(np.ascontiguousarray(a[ya:yb, xa:xb]), (self.size, self.size),
                              interpolation=cv2.INTER_LINEAR)

        out = {"real": cut(real), "fake": cut(fake), "mask": cut(weight.astype(np.float32)), "ratio": ratio}
        if keep_pre:
            out["real_pre"], out["fake_pre"] = cut(pre[0]), cut(pre[1])
        return out
