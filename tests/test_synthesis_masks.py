"""Mask generators and boundary blur: each knob of paper 000 Table 1 changes the mask the way the paper says.

Landmarks come from a real detection on the embedded astronaut portrait (dlib HOG + 68 points + forehead).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from unmask.synthesis import masks as M
from unmask.synthesis.blur import blur_once, boundary_blur, odd_kernel, to_unit
from unmask.synthesis.config import (HULL_TYPES, BBMGConfig, BlurConfig, DrawConfig, LALConfig, LocalConfig,
                                     MaskConfig)
from unmask.synthesis.landmarks import PARTS


@pytest.fixture(scope="module")
def face(astronaut_face_256):
    return astronaut_face_256


def _raw(generator, lm, rng, draw=DrawConfig(), elastic=None, **kw):
    cfg = MaskConfig()
    parts = dict(draw=draw, hull=cfg.hull, lal=cfg.lal, local=cfg.local, bbmg=cfg.bbmg)
    parts.update(kw)
    return M.generate_raw_mask(generator, lm, (256, 256), elastic=elastic, rng=rng, **parts)


# --- polygon geometry ------------------------------------------------------------------------------


def test_erode_and_dilate_polygon_are_exact_for_a_square():
    sq = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], np.float32)
    er = M.erode_polygon(sq, 10)
    assert er.min(axis=0) == pytest.approx([10, 10], abs=1e-4) and er.max(axis=0) == pytest.approx([90, 90], abs=1e-4)
    assert len(M.erode_polygon(sq, 60)) == 0  # vanishes
    area = cv2.contourArea(M.dilate_polygon(sq, 10))
    assert 100 * 100 + 4 * 100 * 10 + 0.95 * np.pi * 100 < area < 100 * 100 + 4 * 100 * 10 + np.pi * 100 + 1


def test_piecewise_affine_field_hits_control_points_and_is_linear_in_triangles():
    rng = np.random.default_rng(0)
    offs = rng.uniform(-5, 5, (4, 4, 2)).astype(np.float32)
    dx, dy = M.piecewise_affine_field((31, 31), offs)  # lattice nodes at 0, 10, 20, 30
    for j in range(4):
        for i in range(4):
            assert dx[10 * j, 10 * i] == pytest.approx(offs[j, i, 0], abs=1e-4)
            assert dy[10 * j, 10 * i] == pytest.approx(offs[j, i, 1], abs=1e-4)
    # Inside the lower triangle of cell (0, 0): the plane through d00, d10, d01.
    u, v = 0.3, 0.2
    want = offs[0, 0, 0] + u * (offs[0, 1, 0] - offs[0, 0, 0]) + v * (offs[1, 0, 0] - offs[0, 0, 0])
    assert dx[2, 3] == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("hull_type", ["facehull", "face68", "extended", "components"])
def test_every_hull_type_covers_the_face_centre(face, hull_type):
    _, lm = face
    polys = M.hull_polygons(lm, hull_type)
    m = M.draw_polygons((256, 256), polys, DrawConfig(line_type="LINE_8", dtype="uint8", value=1))
    nose_tip = lm[30].astype(int)
    assert m[nose_tip[1], nose_tip[0]] == 1
    assert 0.05 < m.mean() < 0.9


def test_hull_sizes_are_ordered(face):
    _, lm = face
    draw = DrawConfig(line_type="LINE_8", dtype="uint8", value=1)
    area = {t: M.draw_polygons((256, 256), M.hull_polygons(lm, t), draw).sum() for t in HULL_TYPES}
    assert area["face68"] < area["extended"] < area["facehull"]  # the forehead is added step by step
    assert 0.95 * area["face68"] < area["components"] <= area["face68"]  # 8 parts: the face below the brows
    assert 0.97 * area["face68"] < area["full"] <= area["face68"]  # DFL's 3-part full-face mask


# --- Table 3: line type, dtype, value ----------------------------------------------------------------


def test_line_type_aa_gives_partial_coverage_only_on_float32_or_255(face):
    _, lm = face
    polys = M.hull_polygons(lm, "facehull")
    vals = lambda d: np.unique(M.draw_polygons((256, 256), polys, d))  # noqa: E731
    assert set(vals(DrawConfig("LINE_8", "float32", 1)).tolist()) == {0.0, 1.0}
    assert len(vals(DrawConfig("LINE_AA", "float32", 1))) > 10  # edge coverage kept
    assert len(vals(DrawConfig("LINE_AA", "uint8", 255))) > 10
    assert set(vals(DrawConfig("LINE_AA", "uint8", 1)).tolist()) == {0, 1}  # uint8 of value 1 cannot hold it


def _profile_width(mask: np.ndarray) -> int:
    """Pixels strictly between 0.02 and 0.98 along the middle row: the width of the soft band (both edges)."""
    row = mask[mask.shape[0] // 2]
    return int(((row > 0.02) & (row < 0.98)).sum())


def test_float32_blur_keeps_a_soft_boundary_uint8_value1_rounds_it_hard(face):
    """Paper 000 Table 3 / Fig. 4: same hull, same Gaussian kernel; only the mask dtype differs."""
    _, lm = face
    polys = M.hull_polygons(lm, "facehull")
    cfg = BlurConfig(op="gaussian", kernel=(21, 21), passes=1)
    out = {}
    for dtype, value in (("float32", 1), ("uint8", 1), ("uint8", 255)):
        raw = M.draw_polygons((256, 256), polys, DrawConfig("LINE_8", dtype, value))
        out[(dtype, value)], _ = boundary_blur(raw, cfg, value, np.random.default_rng(0))
    soft, hard, u255 = out[("float32", 1)], out[("uint8", 1)], out[("uint8", 255)]
    assert _profile_width(soft) >= 10  # ~k/2 px of ramp on each side of the face
    assert _profile_width(hard) == 0  # rounding sends every blurred value back to 0 or 1
    assert set(np.unique(hard).tolist()) <= {0.0, 1.0}
    assert np.abs(u255 - soft).max() <= 1.0 / 255 + 1e-6  # value 255 keeps the ramp to 1/255


@pytest.mark.parametrize("op", ["gaussian", "average"])
def test_gaussian_and_average_blur_the_boundary_median_does_not(face, op):
    """Paper 000 Table 4: the median keeps the boundary hard; Gaussian/average soften it."""
    _, lm = face
    raw = M.draw_polygons((256, 256), M.hull_polygons(lm, "facehull"), DrawConfig("LINE_8", "float32", 1))
    soft, _ = boundary_blur(raw, BlurConfig(op=op, kernel=(15, 15), passes=1), 1, np.random.default_rng(0))
    med, _ = boundary_blur(raw, BlurConfig(op="median", kernel=(15, 15), passes=1), 1, np.random.default_rng(0))
    assert _profile_width(soft) >= 6
    assert _profile_width(med) == 0
    assert ((med > 0.02) & (med < 0.98)).mean() < 0.002  # (a few 1/255 steps from the 8-bit median at most)
    assert ((soft > 0.02) & (soft < 0.98)).mean() > 0.02


def test_boundary_mode_keeps_the_inside_at_one(face):
    """Paper 000 Fig. 5: blur with the mask's 1-region fixed; only the outer ramp is soft."""
    _, lm = face
    raw = M.draw_polygons((256, 256), M.hull_polygons(lm, "facehull"), DrawConfig("LINE_8", "float32", 1))
    full, _ = boundary_blur(raw, BlurConfig(kernel=(21, 21), passes=1, mode="full"), 1, np.random.default_rng(0))
    fixed, _ = boundary_blur(raw, BlurConfig(kernel=(21, 21), passes=1, mode="boundary"), 1, np.random.default_rng(0))
    inside = raw == 1
    assert (fixed[inside] == 1.0).all()
    assert (full[inside] < 0.99).any()  # the plain blur eats into the inside near the edge
    outside_ramp = (~inside) & (fixed > 0.02)
    assert outside_ramp.sum() > 100
    np.testing.assert_allclose(fixed[~inside], full[~inside], atol=1e-5)


def test_two_stage_blur_pulls_the_ramp_inside(face):
    _, lm = face
    raw = M.draw_polygons((256, 256), M.hull_polygons(lm, "facehull"), DrawConfig("LINE_8", "float32", 255))
    one, _ = boundary_blur(raw, BlurConfig(kernel=(15, 15), passes=1), 255, np.random.default_rng(0))
    two, rec = boundary_blur(raw, BlurConfig(kernel=(15, 15), passes=2), 255, np.random.default_rng(0))
    outside = raw == 0
    assert rec["kernels"] == [15, 15]
    assert two[outside].sum() < 0.5 * one[outside].sum()


def test_odd_kernel_draws_odd_sizes_in_range():
    rng = np.random.default_rng(0)
    ks = {odd_kernel(rng, (5, 13)) for _ in range(200)}
    assert ks == {5, 7, 9, 11, 13}


def test_median_on_float_masks_with_large_kernels_works():
    m = np.zeros((64, 64), np.float32)
    m[16:48, 16:48] = 255.0
    out = blur_once(m, "median", 15)  # OpenCV's float median stops at 5: 8-bit path
    assert out.dtype == np.float32 and out.max() == pytest.approx(255.0)
    assert to_unit(out, 255).max() == 1.0


# --- generators -------------------------------------------------------------------------------------


def test_lal_draws_every_hull_type_and_morphs(face):
    _, lm = face
    hulls, morphs = set(), []
    for seed in range(60):
        raw = _raw("lal", lm, np.random.default_rng(seed))
        hulls.add(raw.record["hull"])
        morphs.append(raw.record.get("morph_px", 0.0))
        assert raw.record["warp_px"] > 0
    assert hulls == set(LALConfig().types)
    assert min(morphs) < 0 < max(morphs)


def test_lal_warp_changes_the_mask_but_not_its_size_much(face):
    _, lm = face
    lal0 = LALConfig(types=("facehull",), p_morph=0.0, p_warp=0.0)
    lal1 = dataclasses.replace(lal0, p_warp=1.0)
    d = DrawConfig("LINE_8", "float32", 1)
    a = _raw("lal", lm, np.random.default_rng(3), draw=d, lal=lal0).mask
    b = _raw("lal", lm, np.random.default_rng(3), draw=d, lal=lal1).mask
    assert (a != b).mean() > 0.005
    assert abs(a.sum() - b.sum()) < 0.1 * a.sum()


def test_local_masks_are_random_non_empty_subsets_of_the_features(face):
    _, lm = face
    seen = set()
    for seed in range(40):
        raw = _raw("local", lm, np.random.default_rng(seed), draw=DrawConfig("LINE_8", "uint8", 1))
        parts = raw.record["parts"]
        assert 1 <= len(parts) <= 4 and len(set(parts)) == len(parts)
        seen.add(tuple(parts))
        for name in parts:  # each chosen feature's centre is in the mask
            cx, cy = lm[list(PARTS[name])].mean(axis=0).astype(int)
            assert raw.mask[cy, cx] == 1
        for name in set(PARTS) - set(parts):  # ... and the others are not (their hulls do not overlap)
            if name in ("left_eye", "right_eye"):
                cx, cy = lm[list(PARTS[name])].mean(axis=0).astype(int)
                assert raw.mask[cy, cx] == 0
    assert len(seen) >= 8  # many combinations


def test_bbmg_mask_is_max_of_blurred_global_and_local(face):
    """Paper 000 eq. 2-3: M_global = M_landmark - M_local; M_final = max(blur(M_global), blur(M_local))."""
    _, lm = face
    raw = _raw("bbmg", lm, np.random.default_rng(5), draw=DrawConfig("LINE_AA", "float32", 1))
    assert raw.local is not None and raw.local_fill is raw.local
    blur = lambda m: to_unit(cv2.GaussianBlur(m, (15, 15), 0, borderType=cv2.BORDER_REPLICATE), 1)  # noqa: E731
    final, g, loc = M.bbmg_combine(raw.mask, raw.local, raw.local_fill, blur, blur)
    want_global = np.clip(raw.mask - raw.local, 0, None)
    np.testing.assert_array_equal(final, np.maximum(blur(want_global), blur(raw.local)))
    # The features are cut out of the global mask and come back through the local one.
    for name in raw.record["parts"]:
        cx, cy = lm[list(PARTS[name])].mean(axis=0).astype(int)
        assert g[cy, cx] < 0.05 and final[cy, cx] > 0.95
    # The seam: where global and local meet, both blurred masks are below 1 -> the max dips.
    seam = (raw.local > 0.5) & (cv2.dilate((raw.local < 0.5).astype(np.uint8), np.ones((3, 3))) > 0)
    assert final[seam].mean() < 0.9


def test_bbmg_mask_forms_of_fig7(face):
    _, lm = face
    draw = DrawConfig("LINE_8", "float32", 1)
    local = LocalConfig(parts=("mouth",), min_parts=1, max_parts=1)
    blur = lambda m: to_unit(cv2.GaussianBlur(m, (9, 9), 0), 1)  # noqa: E731
    out = {}
    for form in ("full", "global_only", "scaled_local"):
        raw = _raw("bbmg", lm, np.random.default_rng(1), draw=draw, local=local, bbmg=BBMGConfig(form=form, local_scale=0.5))
        out[form] = M.bbmg_combine(raw.mask, raw.local, raw.local_fill, blur, blur)[0]
        out[form + "_local"] = raw.local
    cx, cy = lm[list(PARTS["mouth"])].mean(axis=0).astype(int)
    assert out["full"][cy, cx] > 0.95
    assert out["global_only"][cy, cx] < 0.05  # a hole where the mouth is
    assert out["scaled_local"][cy, cx] > 0.95  # the narrowed mouth is back ...
    ring = out["full_local"] > 0.5
    # ... but a ring between the narrowed local hull and the hole's edge stays (mostly) unblended.
    assert out["scaled_local"][ring].mean() < out["full"][ring].mean() - 0.2


def test_generators_draw_inside_the_image_for_a_face_at_the_edge(face):
    """A face half out of the crop: masks keep the image's shape, stay in [0, value], touch no wrapped side."""
    _, lm = face
    shifted = lm + np.array([90, 0], np.float32)  # right part of the face leaves the 256 px image
    for gen in ("hull", "lal", "local", "bbmg"):
        raw = _raw(gen, shifted, np.random.default_rng(2), elastic=(5.0, 20.0))
        assert raw.mask.shape == (256, 256)
        assert 0 <= raw.mask.min() and raw.mask.max() <= 255
        assert raw.mask[:, :40].max() == 0  # nothing wraps around to the far side

