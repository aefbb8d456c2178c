"""A contact sheet of pseudo-fakes, so a person can judge the blends: rows of (real | mask | fake) + caption.

The caption spells out the options drawn for that sample (the synthesizer's ``record``), so an odd-looking
blend can be traced to the knob that made it.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    return str(v)


def caption_lines(record: dict[str, Any]) -> list[str]:
    """Three short lines: mask (+ blur), source/target transforms, blend (+ donor / final augmentations)."""
    m = record.get("mask", {})
    gen = m.get("generator", "?")
    parts = [gen]
    if "hull" in m:
        parts.append(m["hull"])
    if "parts" in m:
        parts.append("+".join(p.replace("_eye", "E").replace("left", "l").replace("right", "r") for p in m["parts"]))
    if "form" in m and m["form"] != "full":
        parts.append(m["form"])
    if m.get("points") == 68:
        parts.append("68pt")
    for key, tag in (("morph_px", "morph"), ("warp_px", "warp"), ("elastic", "el")):
        if key in m:
            parts.append(f"{tag}{_fmt(m[key])}")
    b = m.get("blur", {})
    line1 = " ".join(parts) + f" | {b.get('op', '?')} k={_fmt(b.get('kernels', []))}"
    if "sigma2" in b:
        line1 += f" s={b['sigma2']}"
    if "size" in b:
        line1 += f" @{_fmt(b['size'])}"
    if b.get("mode") == "boundary":
        line1 += " (boundary)"
    if "fallback" in m:
        line1 += " | FALLBACK"
    t = record.get("transforms", {})
    obj = t.get("object", "-")
    applied = t.get("source", []) + t.get("target", []) if obj == "both" else t.get(obj, [])
    line2 = f"{obj}: {' '.join(applied) or 'none'}"
    if "affine" in record:
        a = record["affine"]
        line2 += f" | aff s={_fmt(a['scale'])} t={_fmt(a['shift_px'])}"
    bl = record.get("blend", {})
    line3 = f"{bl.get('type', '?')} r={_fmt(bl.get('ratio', '?'))}"
    if "donor" in record:
        line3 += f" | donor {record['donor'].get('face', record['donor'].get('identity'))}"
    if record.get("hflip"):
        line3 += " | flip"
    if record.get("final"):
        line3 += f" | final {' '.join(record['final'])}"
    return [line1, line2, line3]


def _text(img: np.ndarray, lines: Sequence[str], x: int, y: int, scale: float, width: int) -> None:
    step = int(22 * scale / 0.45)
    for i, line in enumerate(lines):
        # Trim to the cell width so long records never spill into the neighbouring column.
        while line and cv2.getTextSize(line, _FONT, scale, 1)[0][0] > width:
            line = line[:-2]
        cv2.putText(img, line, (x, y + (i + 1) * step), _FONT, scale, (20, 20, 20), 1, cv2.LINE_AA)


def render_gallery(samples: Sequence[dict[str, Any]], title: str = "", tile: int = 192,
                   columns: int = 2) -> np.ndarray:
    """``samples``: dicts with ``real``, ``fake`` (HxWx3 uint8), ``mask`` (HxW float in [0, 1]), ``record``.

    Returns an RGB uint8 image: ``columns`` groups of (real | mask | fake) per row, each with its caption.
    """
    if not samples:
        raise ValueError("render_gallery needs at least one sample")
    scale = 0.36 * tile / 192
    cap_h = int(3 * 22 * scale / 0.45) + 8
    gap = 8
    cell_w = 3 * tile
    rows = (len(samples) + columns - 1) // columns
    head = 30 if title else 0
    H = head + rows * (tile + cap_h + gap)
    W = columns * cell_w + (columns - 1) * gap * 2
    canvas = np.full((H, W, 3), 255, np.uint8)
    if title:
        _text(canvas, [title], 6, -4, 0.5, W - 12)
    for k, s in enumerate(samples):
        r, c = divmod(k, columns)
        y = head + r * (tile + cap_h + gap)
        x = c * (cell_w + 2 * gap)
        mask = np.clip(np.asarray(s["mask"], np.float32), 0, 1)
        mask_rgb = np.repeat((mask * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
        for j, img in enumerate((s["real"], mask_rgb, s["fake"])):
            canvas[y:y + tile, x + j * tile:x + (j + 1) * tile] = cv2.resize(
                np.ascontiguousarray(img), (tile, tile), interpolation=cv2.INTER_AREA)
        _text(canvas, caption_lines(s.get("record", {})), x + 2, y + tile - 4, scale, cell_w - 4)
    return canvas
