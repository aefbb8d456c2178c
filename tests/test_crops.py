"""Storage window (SBI large margin) and margin crops (fixed / random per side), in crop coordinates."""

from __future__ import annotations

import numpy as np
import pytest

from unmask.data.crops import draw_margins, margin_crop, storage_crop, storage_window


def _square_landmarks(x0, y0, x1, y1, n=68):
    """68 points whose bounding box is exactly (x0, y0, x1, y1)."""
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    pts[0] = (x0, y0)
    pts[1] = (x1, y1)
    return pts.astype(np.float32)


def test_storage_window_uses_sbi_margins_away_from_borders():
    lm = _square_landmarks(400, 300, 500, 400)  # w = h = 100
    assert storage_window(lm, (1000, 1000, 3)) == (350, 200, 550, 440)  # w/2 left/right, h above, 0.4h below


def test_storage_window_is_clamped_to_the_frame():
    lm = _square_landmarks(10, 20, 110, 120)
    x0, y0, x1, y1 = storage_window(lm, (150, 140, 3))
    assert (x0, y0) == (0, 0) and x1 == 140 and y1 == 150


def test_storage_window_covers_the_detector_box_with_margin():
    lm = _square_landmarks(400, 300, 500, 400)
    box = np.array([380, 330, 520, 470], np.float32)  # tall box reaching below the landmarks
    x0, y0, x1, y1 = storage_window(lm, (1000, 1000, 3), box=box)
    assert x0 <= 380 - 0.25 * 140 and x1 >= 520 + 0.25 * 140
    assert y1 >= 470 + 0.25 * 140 and y0 <= 300 - 100


def test_margin_crop_fixed_margin_and_coordinates():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    box = np.array([100, 80, 180, 200], np.float32)  # 80 x 120
    lm = np.array([[120.0, 100.0], [170.0, 190.0], [140.0, 150.0]], np.float32)
    mc = margin_crop(img, box, lm, 0.125)
    assert mc.window == (90, 65, 190, 215)
    assert mc.image.shape == (150, 100, 3)
    np.testing.assert_allclose(mc.box, [10, 15, 90, 135])
    # Same pixel under each landmark in the crop and in the image.
    for (x, y), (cx, cy) in zip(lm.astype(int), mc.landmarks.astype(int)):
        assert (mc.image[cy, cx] == img[y, x]).all()


def test_margin_crop_random_margins_are_seeded_and_in_range():
    img = np.zeros((500, 500, 3), np.uint8)
    box = np.array([200, 200, 300, 300], np.float32)
    a = margin_crop(img, box, None, (0.04, 0.20), rng=np.random.default_rng(7))
    b = margin_crop(img, box, None, (0.04, 0.20), rng=np.random.default_rng(7))
    c = margin_crop(img, box, None, (0.04, 0.20), rng=np.random.default_rng(8))
    assert a.window == b.window and a.margins == b.margins
    assert a.margins != c.margins
    assert all(0.04 <= m <= 0.20 for m in a.margins)
    x0, y0, x1, y1 = a.window
    assert 180 <= x0 <= 196 and 180 <= y0 <= 196 and 304 <= x1 <= 320 and 304 <= y1 <= 320
    # Different sides get different draws.
    assert len(set(np.round(a.margins, 6))) > 1


def test_margin_crop_needs_rng_for_random_margins():
    with pytest.raises(ValueError, match="rng"):
        draw_margins((0.04, 0.2), None)
    assert draw_margins(0.125, None) == (0.125,) * 4


def test_margin_crop_clamps_at_the_image_border():
    img = np.zeros((100, 120, 3), np.uint8)
    box = np.array([-5, 60, 50, 110], np.float32)  # partly outside
    mc = margin_crop(img, box, np.array([[0.0, 70.0]]), 0.2)
    assert mc.window[0] == 0 and mc.window[3] == 100
    assert mc.image.shape[:2] == (mc.window[3] - mc.window[1], mc.window[2] - mc.window[0])
    np.testing.assert_allclose(mc.landmarks[0], [0.0, 70.0 - mc.window[1]])


@pytest.mark.parametrize("box, want", [
    ((10.2, 20.7, 50.1, 60.0), (10, 20, 51, 60)),  # floor the start, ceil the end
    ((-30.0, -1e9, 500.0, 99.5), (0, 0, 120, 100)),  # clamped to the image
    ((119.9, 99.9, 119.95, 99.95), (119, 99, 120, 100)),  # never empty, even at the last pixel
    ((-np.inf, 5.0, np.inf, 6.0), (0, 5, 120, 6)),  # an infinite side clamps to the edge
])
def test_clamp_window_floors_ceils_and_clamps(box, want):
    from unmask.data.crops import _clamp_window

    assert _clamp_window(*box, (100, 120)) == want


def test_clamp_window_rejects_nan():
    from unmask.data.crops import _clamp_window

    with pytest.raises(ValueError):
        _clamp_window(float("nan"), 0.0, 10.0, 10.0, (100, 120))


def test_storage_crop_caps_the_longest_side_and_scales_coordinates():
    h, w = 1080, 1920
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.dstack([xx % 256, yy % 256, (xx // 256 + yy // 256) * 20]).astype(np.uint8)
    lm68 = _square_landmarks(800, 300, 1300, 800)  # a 500 px face -> window 1000 x ~1200
    lm81 = np.concatenate([lm68, lm68[:13]])
    box = np.array([820, 350, 1280, 810], np.float32)
    mask = np.zeros((h, w), np.uint8)
    mask[400:700, 900:1200] = 255
    sc = storage_crop(img, box, lm81, max_side=512, mask=mask)
    assert max(sc.image.shape[:2]) == 512
    assert sc.mask.shape == sc.image.shape[:2]
    assert sc.scale < 1
    x0, y0 = sc.origin
    # Coordinates follow the scale: a frame point p maps to (p - origin) * scale.
    np.testing.assert_allclose(sc.box[:2], (box[:2] - [x0, y0]) * sc.scale, atol=1.0)
    np.testing.assert_allclose(sc.landmarks[1], (lm81[1] - [x0, y0]) * sc.scale, atol=1.0)
    # The mask rectangle lands where its frame rectangle maps to.
    ys, xs = np.nonzero(sc.mask)
    assert abs(xs.min() - (900 - x0) * sc.scale) <= 1.5 and abs(ys.min() - (400 - y0) * sc.scale) <= 1.5


def test_storage_then_margin_crop_round_trip_on_a_real_face(astronaut_rgb):
    from unmask.data.faces import build_face_detector

    face = build_face_detector("dlib_hog").detect(astronaut_rgb)[0]
    sc = storage_crop(astronaut_rgb, face.box, face.landmarks81)
    assert sc.scale == 1.0  # small face: no downscaling
    direct = margin_crop(astronaut_rgb, face.box, face.landmarks81, 0.125)
    via_store = margin_crop(sc.image, sc.box, sc.landmarks, 0.125)
    # The test-time crop from the stored crop equals the one from the full frame (box + 12.5% fits inside).
    assert via_store.image.shape == direct.image.shape
    assert (via_store.image == direct.image).all()
    np.testing.assert_allclose(via_store.landmarks, direct.landmarks, atol=1e-4)
