"""Window decode of stored crops (``store.decode_png_window`` / ``load_rgb_window``): the same pixels as decoding
the whole PNG and cutting it, for the store's own PNGs and for any other PNG (old stores, other writers), and
training pairs byte-identical to the full-decode path."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from unmask.data.store import decode_png_fast, decode_png_window, encode_png, load_rgb, load_rgb_window
from unmask.errors import UnmaskError
from unmask.io import atomic_write_bytes


def _image(h: int = 97, w: int = 83, seed: int = 0) -> np.ndarray:
    """A smooth image plus noise: rows differ, so a wrong unfilter shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(yy * 2 + xx) % 256, (xx * 3) % 256, (yy * 5) % 256], axis=2)
    return (base + rng.integers(0, 40, (h, w, 3))).astype(np.uint8)


def _png_mixed_filters(img: np.ndarray, none_rows: set[int]) -> bytes:
    """A PNG whose rows use "up" except ``none_rows`` (filter 0), as another writer could produce."""
    import struct
    import zlib

    h, w = img.shape[:2]
    rows = img.reshape(h, -1)
    scan = np.empty((h, rows.shape[1] + 1), np.uint8)
    for r in range(h):
        if r in none_rows or r == 0:
            scan[r, 0], scan[r, 1:] = (0, rows[r]) if r in none_rows else (2, rows[r])
        else:
            scan[r, 0] = 2
            scan[r, 1:] = rows[r] - rows[r - 1]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(scan.tobytes(), 6)) + chunk(b"IEND", b""))


WINDOWS = [(0, 0, 83, 97), (0, 0, 1, 1), (82, 96, 83, 97), (10, 20, 50, 60), (0, 40, 83, 41), (30, 0, 31, 97)]


@pytest.mark.parametrize("window", WINDOWS)
def test_window_decode_is_the_cut_of_the_full_decode(window):
    img = _image()
    x0, y0, x1, y1 = window
    for data in (encode_png(img), _png_mixed_filters(img, {5, 20, 21, 60})):
        cut, size = decode_png_window(data, window)
        assert size == (97, 83) and cut is not None
        assert np.array_equal(cut, img[y0:y1, x0:x1]) and cut.shape == (y1 - y0, x1 - x0, 3)
    assert np.array_equal(decode_png_fast(encode_png(img)), img)


def test_other_pngs_fall_back_to_a_full_read(tmp_path):
    """libpng's adaptive filters (an old store, another writer) and grey PNGs: no window decode, the reader
    falls back to OpenCV and cuts -- same pixels; an unreadable crop is a one-line error naming it."""
    img = _image(seed=1)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))  # adaptive filters (sub/paeth/...)
    path = tmp_path / "old.png"
    atomic_write_bytes(path, buf.tobytes())
    cut, size = decode_png_window(buf.tobytes(), (1, 2, 30, 40))
    assert size == (97, 83) and cut is None  # sub/paeth rows: not the store's format
    seen = []
    cut, size = load_rgb_window(path, lambda hw: seen.append(hw) or (1, 2, 30, 40))
    assert seen == [(97, 83)] and size == (97, 83) and np.array_equal(cut, img[2:40, 1:30])
    assert np.array_equal(load_rgb(path), img)
    gray = tmp_path / "gray.png"
    atomic_write_bytes(gray, encode_png(img[..., 0]))
    assert decode_png_window(gray.read_bytes(), (0, 0, 5, 5))[0] is None
    (tmp_path / "broken.png").write_bytes(encode_png(img)[:200])
    with pytest.raises(UnmaskError, match="broken.png"):
        load_rgb_window(tmp_path / "broken.png", lambda hw: (0, 0, 5, 5))
    with pytest.raises(UnmaskError, match="missing.png"):
        load_rgb_window(tmp_path / "missing.png", lambda hw: (0, 0, 5, 5))


def test_pairs_from_stored_pngs_match_the_full_decode(astronaut_rgb, tmp_path):
    """PairDataset's own reader (window decode) and a loader that decodes whole crops give the same bytes."""
    from unmask.data.crops import storage_crop
    from unmask.data.faces import build_face_detector
    from unmask.data.records import FaceRecord
    from unmask.synthesis import PairDataset

    f = build_face_detector("dlib_hog").detect(astronaut_rgb)[0]
    sc = storage_crop(astronaut_rgb, f.box, f.landmarks81)
    path = tmp_path / "astro.png"
    atomic_write_bytes(path, encode_png(sc.image))
    faces = [FaceRecord(item_key=f"a{i}", dataset="embedded", video_id="astronaut", label=0, method="real",
                        split="train", frame_index=i, face_index=0, crop_path=str(path), box=sc.box,
                        landmarks=sc.landmarks, score=1.0, frame_box=f.box, crop_origin=sc.origin) for i in range(6)]
    for recipe in ("sbi", "bbmg"):
        own = PairDataset(faces, recipe, image_size=128, seed=3)
        full = PairDataset(faces, recipe, image_size=128, seed=3, loader=lambda r: load_rgb(r.crop_path))
        for i in range(len(faces)):
            a, b = own.pair(i), full.pair(i)
            assert a["record"]["window"] == b["record"]["window"]
            for k in ("real", "fake", "mask"):
                same = hashlib.sha256(a[k].tobytes()).digest() == hashlib.sha256(b[k].tobytes()).digest()
                assert same, (recipe, i, k)
