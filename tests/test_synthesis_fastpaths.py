"""The shortcuts the pair pipeline takes for speed give exactly what the plain computation gives: the
store's PNG decoder, the block-local JPEG re-encode of a fake, one final-augmentation draw on a pair."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from unmask.data.store import decode_png_fast, encode_png, load_rgb
from unmask.io import atomic_write_bytes
from unmask.synthesis.pair_dataset import apply_final_pair
from unmask.synthesis.transforms import apply_ops, jpeg, jpeg_like


def test_fast_png_decode_equals_opencv(tmp_path, astronaut_rgb):
    pytest.importorskip("isal")
    rng = np.random.default_rng(0)
    imgs = [astronaut_rgb, astronaut_rgb[13:300, 7:211], rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)]
    for i, img in enumerate(imgs):
        data = encode_png(np.ascontiguousarray(img))
        assert np.array_equal(decode_png_fast(data), img)
        path = atomic_write_bytes(tmp_path / f"{i}.png", data)
        assert np.array_equal(load_rgb(path), cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    assert np.array_equal(decode_png_fast(encode_png(gray)), gray)
    # PNGs from other writers (adaptive filters) are left to OpenCV, and still load.
    ok, buf = cv2.imencode(".png", cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    other = buf.tobytes()
    fast = decode_png_fast(other)
    assert fast is None or np.array_equal(fast, astronaut_rgb)
    path = atomic_write_bytes(tmp_path / "other.png", other)
    assert np.array_equal(load_rgb(path), astronaut_rgb)
    assert decode_png_fast(b"not a png") is None


def test_block_local_jpeg_equals_the_full_reencode(astronaut_rgb):
    rng = np.random.default_rng(1)
    base = np.ascontiguousarray(astronaut_rgb)
    for _ in range(60):
        h, w = int(rng.integers(64, 400)), int(rng.integers(64, 400))
        ref = np.ascontiguousarray(cv2.resize(base, (w, h)))
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = int(rng.integers(x0 + 1, min(w, x0 + 120) + 1)), int(rng.integers(y0 + 1, min(h, y0 + 120) + 1))
        img = ref.copy()
        img[y0:y1, x0:x1] = 255 - img[y0:y1, x0:x1]
        q = int(rng.integers(40, 101))
        assert np.array_equal(jpeg_like(img, q, ref, jpeg(ref, q), (x0, y0, x1, y1)), jpeg(img, q))


def test_one_draw_on_a_pair_equals_augmenting_both_in_full(astronaut_rgb):
    real = np.ascontiguousarray(cv2.resize(astronaut_rgb, (200, 200)))
    fake = real.copy()
    fake[60:130, 70:150] = cv2.GaussianBlur(fake[60:130, 70:150], (9, 9), 0)
    for ops in ([("rgb", (5.3, -7.9, 1.2)), ("bc", (0.2, -0.1)), ("jpeg", (55.0,))],
                [("hsv", (0.2, -0.1, 0.3)), ("jpeg", (90.0,))], [("bc", (-0.25, 0.3))], []):
        r, f = apply_final_pair(real, fake, ops)
        assert np.array_equal(r, apply_ops(real, ops)) and np.array_equal(f, apply_ops(fake, ops))
