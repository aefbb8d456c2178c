"""Drawing prepared faces so a person can check the pipeline: boxes, 68 + 13 landmarks, margins, captions.

Colours: detector box blue, 68 dlib landmarks red, the 13 constructed forehead points green, the test-time
crop (box + 12.5% per side) yellow, the mask (when stored) as a translucent magenta overlay.
"""

from __future__ import annotations

import numpy as np

BOX = (40, 120, 255)
LM68 = (255, 40, 40)
LM13 = (40, 220, 40)
MARGIN = (255, 220, 0)
MASK = (255, 0, 255)


def draw_face(rgb: np.ndarray, box: np.ndarray | None, landmarks: np.ndarray | None, *,
              mask: np.ndarray | None = None, test_margin: float | None = 0.125) -> np.ndarray:
    """A copy of ``rgb`` with the face annotations drawn (coordinates in ``rgb``'s pixels)."""
    import cv2

    img = np.ascontiguousarray(rgb.copy())
    scale = max(1, round(max(img.shape[:2]) / 400))
    if mask is not None and mask.shape[:2] == img.shape[:2]:
        alpha = (mask.astype(np.float32) / 255.0 * 0.45)[..., None]
        img = (img * (1 - alpha) + np.array(MASK, np.float32) * alpha).astype(np.uint8)
    if box is not None:
        b = np.asarray(box, dtype=np.float64)
        cv2.rectangle(img, (int(round(b[0])), int(round(b[1]))), (int(round(b[2])), int(round(b[3]))), BOX, scale)
        if test_margin:
            w, h = b[2] - b[0], b[3] - b[1]
            m = test_margin
            p0 = (int(round(b[0] - m * w)), int(round(b[1] - m * h)))
            p1 = (int(round(b[2] + m * w)), int(round(b[3] + m * h)))
            cv2.rectangle(img, p0, p1, MARGIN, max(1, scale // 2))
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        for i, (x, y) in enumerate(lm):
            cv2.circle(img, (int(round(x)), int(round(y))), scale + 1, LM68 if i < 68 else LM13, -1)
    return img


def fit_tile(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Letterbox ``rgb`` into a ``size`` x ``size`` tile (aspect kept, dark padding).

    Returns (tile, scale, (x0, y0)): a point p of ``rgb`` is at ``p * scale + (x0, y0)`` in the tile, so
    annotations can be drawn on the tile at its resolution (thin lines survive).
    """
    import cv2

    h, w = rgb.shape[:2]
    s = size / float(max(h, w))
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (nw, nh), interpolation=interp)
    tile = np.full((size, size, 3), 24, np.uint8)
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    tile[y0:y0 + nh, x0:x0 + nw] = small
    return tile, s, (x0, y0)


def annotated_tile(rgb: np.ndarray, size: int, faces: list[tuple[np.ndarray, np.ndarray]],
                   mask: np.ndarray | None = None, test_margin: float | None = 0.125) -> np.ndarray:
    """``rgb`` letterboxed to a tile with each (box, landmarks) drawn at the tile's resolution."""
    tile, s, (x0, y0) = fit_tile(rgb, size)
    tmask = None
    if mask is not None:
        tmask, _, _ = fit_tile(np.dstack([mask] * 3), size)
        tmask = tmask[..., 0] * (tmask[..., 0] != 24)
    off = np.array([x0, y0], np.float64)
    for box, lm in faces:
        b = None if box is None else (np.asarray(box, np.float64).reshape(2, 2) * s + off).reshape(4)
        p = None if lm is None else np.asarray(lm, np.float64) * s + off
        tile = draw_face(tile, b, p, mask=tmask, test_margin=test_margin)
        tmask = None
    return tile


def grid(tiles: list[np.ndarray], captions: list[str], cols: int = 4, caption_h: int = 34) -> np.ndarray:
    """Tiles (same size) in a grid with up to two caption lines under each."""
    import cv2

    if not tiles:
        raise ValueError("nothing to draw")
    size = tiles[0].shape[0]
    cols = max(1, min(cols, len(tiles)))
    rows = (len(tiles) + cols - 1) // cols
    canvas = np.full((rows * (size + caption_h), cols * size, 3), 255, np.uint8)
    for k, (tile, cap) in enumerate(zip(tiles, captions)):
        r, c = divmod(k, cols)
        y, x = r * (size + caption_h), c * size
        canvas[y:y + size, x:x + size] = tile
        for j, line in enumerate(cap.split("\n")[:2]):
            cv2.putText(canvas, line[:48], (x + 4, y + size + 13 + 15 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
