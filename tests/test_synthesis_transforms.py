"""Source/target transforms (paper 000 Table 5: colour, frequency, affine; Table 6: transform object)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from unmask.synthesis import transforms as T
from unmask.synthesis.config import AffineConfig, ColorConfig, FrequencyConfig, TransformConfig


@pytest.fixture(scope="module")
def img(astronaut_rgb):
    return np.ascontiguousarray(astronaut_rgb[:192, 128:320])


def _hf_energy(x: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())


def test_rgb_shift_adds_per_channel_and_saturates(img):
    out = T.rgb_shift(img, (30.0, 0.0, -30.0))
    want_r = np.clip(img[..., 0].astype(int) + 30, 0, 255)
    want_b = np.clip(img[..., 2].astype(int) - 30, 0, 255)
    np.testing.assert_array_equal(out[..., 0], want_r)
    np.testing.assert_array_equal(out[..., 1], img[..., 1])
    np.testing.assert_array_equal(out[..., 2], want_b)


def test_brightness_contrast_is_affine_per_pixel(img):
    out = T.brightness_contrast(img, 0.1, 0.2)
    want = np.clip(np.rint(img.astype(np.float64) * 1.2 + 25.5), 0, 255)
    assert np.abs(out.astype(int) - want).max() <= 1


def test_hsv_shift_changes_hue_and_is_near_identity_at_zero(img):
    same = T.hsv_shift(img, 0, 0, 0)
    assert np.abs(same.astype(int) - img.astype(int)).mean() < 2.0  # 8-bit HSV round trip only
    shifted = T.hsv_shift(img, 60, 0, 0)
    h0 = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 0].astype(int)
    h1 = cv2.cvtColor(shifted, cv2.COLOR_RGB2HSV)[..., 0].astype(int)
    sat = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1] > 60
    diff = (h1 - h0) % 180
    assert np.median(diff[sat]) == pytest.approx(30, abs=2)  # 60 degrees = 30 OpenCV hue units


def test_hsv_shift_below_one_level_is_the_round_trip_only_when_positive(img):
    """SBI's +-0.3 limits: a positive draw truncates to no shift (the table is skipped, the 8-bit round trip
    stays, as in albumentations 1.3.1); a negative one lowers hue, saturation and value by one level."""
    trip = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2HSV), cv2.COLOR_HSV2RGB)
    np.testing.assert_array_equal(T.hsv_shift(img, 0.29, 0.29, 0.29), trip)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(int)
    want = np.stack([(hsv[..., 0] - 1) % 180, np.maximum(hsv[..., 1] - 1, 0), np.maximum(hsv[..., 2] - 1, 0)], -1)
    lowered = cv2.cvtColor(want.astype(np.uint8), cv2.COLOR_HSV2RGB)
    np.testing.assert_array_equal(T.hsv_shift(img, -0.2, -0.2, -0.2), lowered)


def _table_reference(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    return cv2.LUT(img, table.reshape(256, 1, 3))


@pytest.mark.parametrize("limit", [0.3, 1.5, 20.0, 120.0, 255.0])
def test_shifts_as_saturating_adds_equal_their_lookup_tables(limit):
    """rgb_shift and hsv_shift replace their 3-channel tables by saturating adds (and a hue-only table):
    byte-identical to the table for every value, negative and positive shifts, hues wrapping past 0 and 180,
    and shifts large enough to clip."""
    rng = np.random.default_rng(int(limit * 10))
    img = rng.integers(0, 256, (40, 300, 3), dtype=np.uint8)
    for c in range(3):
        img[c, :256, c] = np.arange(256)  # every level in every channel
    hsv_img = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    for _ in range(60):
        shifts = rng.uniform(-limit, limit, size=3).astype(np.float32)
        rgb_table = np.clip(T._RAMP[:, None] + shifts[None, :], 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(T.rgb_shift(img, tuple(float(v) for v in shifts)),
                                      _table_reference(img, rgb_table))
        hue = float(rng.uniform(-min(2 * limit, 180), min(2 * limit, 180)))
        hsv_table = np.stack([np.mod(T._RAMP + np.float32(hue / 2), 180.0), np.clip(T._RAMP + shifts[1], 0, 255),
                              np.clip(T._RAMP + shifts[2], 0, 255)], axis=1).astype(np.uint8)
        want = cv2.cvtColor(_table_reference(hsv_img, hsv_table), cv2.COLOR_HSV2RGB)
        np.testing.assert_array_equal(T.hsv_shift(img, hue, float(shifts[1]), float(shifts[2])), want)


def test_rgb_shift_returns_a_new_array_when_nothing_moves(img):
    out = T.rgb_shift(img, (0.4, 0.2, 0.9))  # every table truncates to the identity
    np.testing.assert_array_equal(out, img)
    assert out is not img and not np.shares_memory(out, img)


def test_downscale_removes_and_sharpen_adds_high_frequencies(img):
    e = _hf_energy(img)
    assert _hf_energy(T.downscale(img, 0.3)) < 0.6 * e
    assert _hf_energy(T.sharpen(img, 0.5)) > 1.3 * e
    assert T.downscale(img, 0.3).shape == img.shape


def test_jpeg_round_trip_loses_detail_at_low_quality(img):
    lo, hi = T.jpeg(img, 20), T.jpeg(img, 100)
    err = lambda x: np.abs(x.astype(int) - img.astype(int)).mean()  # noqa: E731
    assert err(hi) < 1.5 < err(lo)


def test_affine_moves_the_face_centre_by_the_translation():
    rng = np.random.default_rng(0)
    m, rec = T.affine_random(AffineConfig(translate=(0.05, 0.05), scale=(0.9, 1.1)), (200, 300), np.array([150.0, 100.0]), rng)
    c = m @ np.array([150.0, 100.0, 1.0])
    np.testing.assert_allclose(c - [150, 100], rec["shift_px"], atol=0.06)
    assert all(0.9 <= s <= 1.1 for s in rec["scale"])
    assert T.affine_random(AffineConfig(enabled=False), (10, 10), np.zeros(2), rng) == (None, {})


ALWAYS = TransformConfig(color=ColorConfig(p_rgb_shift=1.0, p_hsv=0.0, p_brightness_contrast=0.0),
                         frequency=FrequencyConfig(enabled=False))


@pytest.mark.parametrize("obj", ["source", "target", "both"])
def test_transform_object_decides_which_image_changes(img, obj):
    import dataclasses

    cfg = dataclasses.replace(ALWAYS, object=obj)
    src, tgt, rec = T.source_target_random(img, cfg, np.random.default_rng(1))
    assert rec["object"] == obj
    assert (src is img) == (obj == "target")
    assert (tgt is img) == (obj == "source")
    if obj == "both":
        assert rec["source"] != rec["target"]  # independent draws


def test_either_picks_source_or_target_about_half_the_time(img):
    import dataclasses

    cfg = dataclasses.replace(ALWAYS, object="either")
    picks = [T.source_target_random(img, cfg, np.random.default_rng(s))[2]["object"] for s in range(200)]
    assert set(picks) == {"source", "target"}
    assert 70 < picks.count("source") < 130


def test_colour_probabilities_are_respected(img):
    cfg = ColorConfig(p_rgb_shift=0.3, p_hsv=0.0, p_brightness_contrast=1.0)
    counts = {"rgb": 0, "hsv": 0, "bc": 0}
    for s in range(200):
        _, done = T.color_random(img[:8, :8], cfg, np.random.default_rng(s))
        for d in done:
            counts[d.split("(")[0]] += 1
    assert counts["hsv"] == 0 and counts["bc"] == 200
    assert 35 < counts["rgb"] < 85
