"""Synthesizers end to end: the registry contract, seeding, Table 1 knobs through a whole recipe, Face X-ray BI,
degenerate inputs and the YAML configs of configs/synthesis/."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from unmask.errors import ConfigError
from unmask.synthesis import SYNTHESIZERS, DonorPool, SynthesisError, build_synthesizer
from unmask.synthesis.blend import draw_ratio
from unmask.synthesis.config import BlendConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "synthesis").glob("*.yaml"))


@pytest.fixture(scope="module")
def face(astronaut_rgb, astronaut_face_256):
    """(crop 256x256, 81 landmarks, a donor pool with another 'identity') from the astronaut portrait."""
    from unmask.data.faces import build_face_detector

    img, lm = astronaut_face_256
    # A second "identity": the same portrait, mirrored and recoloured (mirrored landmarks re-detected).
    other = np.ascontiguousarray(cv2.cvtColor(astronaut_rgb[:, ::-1], cv2.COLOR_RGB2BGR))
    of = build_face_detector("dlib_hog").detect(other)[0]
    pool = DonorPool.from_arrays([other], [of.landmarks81], ["mirror"])
    return img, lm, pool


def _synth(name_or_cfg, face, overrides=None):
    img, lm, pool = face
    return build_synthesizer(name_or_cfg, pool=pool, overrides=overrides)


# --- the contract, over every registered recipe --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SYNTHESIZERS))
def test_registered_synthesizer_contract(face, name):
    img, lm, _ = face
    s = _synth(name, face)
    res = s.synth(img, lm, np.random.default_rng(0), identity="astronaut")
    assert res.fake.shape == img.shape and res.fake.dtype == np.uint8
    assert res.mask.shape == img.shape[:2] and res.mask.dtype == np.float32
    assert 0.0 <= res.mask.min() and res.mask.max() <= 1.0 and res.mask.max() > 0.2
    json.dumps(res.record)  # JSON-able
    assert res.record["recipe"] == s.config.name
    # Seeded: same seed -> same bytes; different seed -> different draws.
    again = s.synth(img, lm, np.random.default_rng(0), identity="astronaut")
    assert again.fake.tobytes() == res.fake.tobytes() and again.mask.tobytes() == res.mask.tobytes()
    other = s.synth(img, lm, np.random.default_rng(1), identity="astronaut")
    assert other.record != res.record and other.fake.tobytes() != res.fake.tobytes()
    # The input is never modified.
    assert s.synth(img.copy(), lm.copy(), 3).fake.shape == img.shape
    # The fake is the real outside the mask (no pixel changes where nothing is blended) unless the target
    # itself was transformed.
    if res.record["transforms"]["object"] == "source":
        out = res.mask == 0
        assert (res.fake[out] == img[out]).all()


def test_int_seed_equals_generator(face):
    img, lm, _ = face
    s = build_synthesizer("sbi")
    assert s.synth(img, lm, 7).fake.tobytes() == s.synth(img, lm, np.random.default_rng(7)).fake.tobytes()


# --- Table 1 knobs through a whole recipe -------------------------------------------------------------


FIXED_SOURCE = ["transforms.object=source", "transforms.color.p_rgb_shift=1.0", "transforms.color.p_hsv=0.0",
                "transforms.color.p_brightness_contrast=0.0", "transforms.frequency.enabled=false",
                "transforms.affine.enabled=false"]


def test_alpha_blend_has_ratio_one_and_pastes_the_source(face):
    img, lm, _ = face
    s = build_synthesizer("sbi", overrides=FIXED_SOURCE + ["blend.type=alpha"])
    for seed in range(5):
        res = s.synth(img, lm, seed)
        assert res.record["blend"] == {"type": "alpha", "ratio": 1.0}
        assert res.mask.max() == 1.0
        full = res.mask == 1.0
        assert full.sum() > 1000
        # Where the weight is 1 the fake is the RGB-shifted source: one constant offset per channel
        # (pixels the shift saturated aside), and the pair's real is the untouched target.
        assert res.real is img
        diff = res.fake[full].astype(int) - img[full].astype(int)
        inner = ((img[full] > 30) & (img[full] < 225)).all(axis=1)
        for c in range(3):
            assert len(np.unique(diff[inner, c])) == 1


def test_dynamic_blend_draws_sbi_ratios(face):
    img, lm, _ = face
    s = build_synthesizer("sbi", overrides=FIXED_SOURCE)
    ratios = [s.synth(img, lm, seed).record["blend"]["ratio"] for seed in range(60)]
    assert set(ratios) == {0.25, 0.5, 0.75, 1.0}
    assert ratios.count(1.0) > ratios.count(0.25)  # 1 is listed three times out of six
    res = next(s.synth(img, lm, seed) for seed in range(60) if s.synth(img, lm, seed).record["blend"]["ratio"] == 0.25)
    assert res.mask.max() == pytest.approx(0.25)
    rng = np.random.default_rng(0)
    assert {draw_ratio(BlendConfig(), rng) for _ in range(300)} == {0.25, 0.5, 0.75, 1.0}


def test_median_recipe_keeps_the_fake_boundary_hard_gaussian_does_not(face):
    img, lm, _ = face
    soft = build_synthesizer("sbi", overrides=["blur.passes=1", "blend.type=alpha"])
    hard = build_synthesizer(str(REPO / "configs/synthesis/sbi_median.yaml"), overrides=["blur.passes=1", "blend.type=alpha"])
    band = lambda m: float(((m > 0.02) & (m < 0.98)).mean())  # noqa: E731
    b_hard = np.mean([band(hard.synth(img, lm, s).mask) for s in range(6)])
    b_soft = np.mean([band(soft.synth(img, lm, s).mask) for s in range(6)])
    # What the median leaves is the 1-2 px of anti-aliasing, elastic and the resize to SBI's blur size and back.
    assert b_hard < 0.45 * b_soft


def test_uint8_changes_only_the_first_pass_erosion(face):
    """Table 3 / Fig. 4: a uint8 value-1 mask rounds its first blur (so its erosion keeps every pixel the blur
    left >= 0.5 instead of only the saturated ones), but after the first normalization it is float, as in SBI,
    so it still ends with a soft ramp."""
    img, lm, _ = face
    u8 = build_synthesizer(str(REPO / "configs/synthesis/sbi_global.yaml"), overrides=["blend.type=alpha"])
    f32 = build_synthesizer(str(REPO / "configs/synthesis/sbi_global.yaml"),
                            overrides=["blend.type=alpha", "mask.draw.dtype=float32"])
    band = lambda m: float(((m > 0.02) & (m < 0.98)).mean())  # noqa: E731
    for seed in range(4):
        a, b = u8.synth(img, lm, seed).mask, f32.synth(img, lm, seed).mask  # same seed: same kernels drawn
        assert len(np.unique(a)) > 20 and band(a) > 0.5 * band(b)
        assert (a > 0.5).sum() > (b > 0.5).sum()  # the rounded first pass erodes less


def test_generator_choice_follows_the_config(face):
    img, lm, _ = face
    s = build_synthesizer(str(REPO / "configs/synthesis/sbi_lal_local.yaml"))
    gens = {s.synth(img, lm, seed).record["mask"]["generator"] for seed in range(20)}
    assert gens == {"lal", "local"}


# --- Face X-ray BI ----------------------------------------------------------------------------------


def test_xray_bi_blends_a_donor_and_exposes_the_boundary_map(face):
    img, lm, pool = face
    s = _synth("xray_bi", face)
    res = s.synth(img, lm, 0, identity="astronaut")
    assert res.record["donor"]["identity"] == "mirror"
    assert res.record["blend"]["ratio"] == 1.0
    b = res.boundary
    np.testing.assert_allclose(b, 4 * res.mask * (1 - res.mask), atol=1e-6)
    assert b.max() > 0.9 and b[res.mask == 1].max() == 0 and b[res.mask == 0].max() == 0
    inside = res.mask > 0.99
    assert np.abs(res.fake[inside].astype(int) - img[inside].astype(int)).mean() > 5  # a different face


def test_xray_bi_without_another_identity_is_a_clear_error(face):
    img, lm, pool = face
    s = build_synthesizer("xray_bi", pool=pool)
    with pytest.raises(SynthesisError, match="another identity"):
        s.synth(img, lm, 0, identity="mirror")
    with pytest.raises(SynthesisError, match="donor pool"):
        build_synthesizer("xray_bi").synth(img, lm, 0)


def test_donor_pool_ranks_by_landmark_shape():
    base = np.array([[x, y] for x in range(10) for y in range(7)][:68], np.float32) * 10
    rng = np.random.default_rng(0)
    near = base + rng.normal(0, 0.5, base.shape)
    far = base + rng.normal(0, 6.0, base.shape)
    same_id = base * 2 + 3  # identical shape up to scale/position: distance 0, but same identity
    pool = DonorPool.from_arrays([None] * 4, [far, near, same_id, base], ["a", "b", "q", "c"])
    assert pool.nearest(base, identity="q").tolist() == [1, 0]  # excludes the query's identity and itself
    assert pool.nearest(base, identity="q", top_k=1).tolist() == [1]


# --- degenerate input ------------------------------------------------------------------------------


@pytest.mark.parametrize("case, message", [
    ("collinear", "collinear"),
    ("out_of_frame", "outside the image"),
    ("tiny", "too small"),
    ("nan", "NaN"),
    ("shape", "must be"),
])
def test_degenerate_landmarks_raise_a_clear_error(face, case, message):
    img, lm, _ = face
    bad = lm.copy()
    if case == "collinear":
        bad[:, 1] = 10.0 + 0.8 * bad[:, 0]  # a diagonal line: a large box, no area
    elif case == "out_of_frame":
        bad = bad + np.array([230, 0], np.float32)
    elif case == "tiny":
        bad = (bad - bad.mean(axis=0)) * 0.05 + 128
    elif case == "nan":
        bad[3] = np.nan
    elif case == "shape":
        bad = bad[:50]
    for name in ("sbi", "bbmg"):
        with pytest.raises(SynthesisError, match=message):
            build_synthesizer(name).synth(img, bad, 0)


def test_bad_image_is_a_clear_error(face):
    img, lm, _ = face
    with pytest.raises(SynthesisError, match="uint8 RGB"):
        build_synthesizer("sbi").synth(img.astype(np.float32), lm, 0)
    with pytest.raises(SynthesisError, match="uint8 RGB"):
        build_synthesizer("sbi").synth(img[..., 0], lm, 0)


def test_emptied_mask_falls_back_to_the_plain_hull_and_says_so(face):
    img, lm, _ = face
    s = build_synthesizer("sbi_lal", overrides=["mask.lal.p_morph=1.0", "mask.lal.morph_frac=[-0.5,-0.5]",
                                                "mask.lal.types=[components]"])  # erosion removes every part
    res = s.synth(img, lm, 0)
    assert "erosion" in res.record["mask"]["fallback"]
    assert res.mask.max() > 0.2


def test_local_parts_out_of_frame_fall_back_never_a_black_mask(face):
    img, lm, _ = face
    # Slide the face left until its (image-)left eye has left the frame; most of the face stays inside.
    shifted = lm - np.array([lm[36:42, 0].max() + 3, 0], np.float32)
    s = build_synthesizer(str(REPO / "configs/synthesis/sbi_local.yaml"),
                          overrides=["mask.local.parts=[left_eye]", "mask.local.grow_frac=0.0", "mask.elastic=false",
                                     "transforms.affine.enabled=false"])
    res = s.synth(img, shifted, 0)
    assert res.mask.max() > 0.2
    assert "fallback" in res.record["mask"] and res.record["mask"]["generator"] == "hull"


# --- configs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_yaml_config_builds_names_its_paper_row_and_matches_the_registry(face, path):
    from unmask.config import to_dict

    s = build_synthesizer(str(path), pool=face[2])
    assert s.config.name == path.stem
    assert "Table" in s.config.reproduces or "Fig." in s.config.reproduces
    if path.stem in SYNTHESIZERS:
        assert to_dict(s.config) == to_dict(SYNTHESIZERS[path.stem]())
    img, lm, _ = face
    assert s.synth(img, lm, 0, identity="astronaut").mask.max() > 0


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown synthesis recipe"):
        build_synthesizer("sbx")
    bad = tmp_path / "typo.yaml"
    bad.write_text("base: " + str(REPO / "configs/synthesis/sbi.yaml") + "\nblur: {kernal: [3, 5]}\n")
    with pytest.raises(ConfigError, match="kernal"):
        build_synthesizer(str(bad))
    with pytest.raises(ConfigError, match="odd"):
        build_synthesizer("sbi", overrides=["blur.kernel=[4,8]"])
    with pytest.raises(ConfigError, match="LINE_16|one of"):
        build_synthesizer("sbi", overrides=["mask.draw.line_type=LINE_16"])
    with pytest.raises(ConfigError, match="one of"):
        build_synthesizer("sbi", overrides=["mask.draw.value=128"])
