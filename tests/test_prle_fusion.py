"""Paper 001 sec. III-B / III-C fusion math (unmask.methods.prle_fusion) against maps computed by hand."""

import numpy as np
import pytest

from unmask.methods.prle_fusion import FusedMap, average_fusion, fuse, masked_image, neighbour_fusion, top_alpha_mask


def test_average_fusion_is_the_mean_thresholded_at_tau1_eq6():
    a = np.array([[[0.2, 0.8], [0.0, 0.6]],
                  [[0.2, 0.4], [1.0, 0.1]]], np.float32)
    # means: [[0.2, 0.6], [0.5, 0.35]]; > 0.3 kept (0.2 dropped), > 0.5 keeps 0.6 only (0.5 is not above)
    assert np.allclose(average_fusion(a, 0.3), [[0.0, 0.6], [0.5, 0.35]])
    assert np.allclose(average_fusion(a, 0.5), [[0.0, 0.6], [0.0, 0.0]])
    f = fuse(a, "average", tau1=0.3)
    assert isinstance(f, FusedMap) and f.value.dtype == np.float32
    assert f.binary.tolist() == [[False, True], [True, True]]  # eq. 4 on the fused map: A^ > 0


def test_neighbour_fusion_single_peak_hand_computed_eq7_8():
    """One member with a single 1.0 at (1, 1) of a 4x4 map, the other all zero; lambda = 0.15, no eq. 6 base.

    Eq. 7 at x: max over ordered pairs (j, k) of (1/|N|) sum_{a in N(x)} |A_j(x_a) - A_k(x)|, N = 3x3 clipped.
    * (1, 1): j = zero map, k = peak map: |0 - 1| at all 9 neighbours -> 1 > 0.15 -> max over N = 1.
    * (0, 0) corner, |N| = 4, N holds the peak: j = peak, k = either: 1/4 = 0.25 > 0.15 -> 1.
    * (0, 2) top edge, |N| = 6, holds the peak: 1/6 = 0.167 > 0.15 -> 1. Likewise (2, 0).
    * (0, 1), (1, 0): edge, |N| = 6 -> 1/6 -> 1.
    * (1, 2), (2, 1), (2, 2): interior, |N| = 9 -> 1/9 = 0.111 < 0.15 -> 0 (eq. 8: 0 where g = 0).
    * anything whose window misses the peak: all differences 0 -> 0.
    """
    a = np.zeros((2, 4, 4), np.float32)
    a[0, 1, 1] = 1.0
    expected = np.array([[1, 1, 1, 0],
                         [1, 1, 0, 0],
                         [1, 0, 0, 0],
                         [0, 0, 0, 0]], np.float32)
    assert np.array_equal(neighbour_fusion(a, 0.15, tau1=None), expected)
    # lambda between 1/6 and 1/4: only the corner (1/4) and the peak itself (1) stay
    only = np.zeros((4, 4), np.float32)
    only[0, 0] = only[1, 1] = 1.0
    assert np.array_equal(neighbour_fusion(a, 0.2, tau1=None), only)
    # signed reading: the neighbourhood must be above the point, so the peak itself (its neighbours are lower
    # in the peak map, and the zero map's point is 0 but its neighbourhood mean is 0) is kept only through the
    # pair (j = peak map, k = zero map): mean_N A_peak - A_zero(x) = 1/9 at (1, 1) -> below 0.15 -> 0
    signed = neighbour_fusion(a, 0.15, tau1=None, signed=True)
    assert signed[1, 1] == 0 and signed[0, 0] == 1 and signed[0, 2] == 1 and signed[2, 2] == 0


def test_neighbour_value_is_the_neighbourhood_max_over_all_members_eq8():
    a = np.zeros((3, 5, 5), np.float32)
    a[0, 2, 2] = 0.9
    a[1, 1, 2] = 0.5
    a[2, 3, 3] = 0.7
    out = neighbour_fusion(a, 0.05, tau1=None)
    # (2, 2): its 3x3 window holds 0.9, 0.5 and 0.7 (from three different members): the max is 0.9
    assert out[2, 2] == pytest.approx(0.9)
    # (0, 2): window rows 0-1, cols 1-3 holds only member 1's 0.5 (|N| = 6): g = 0.5/6 = 0.083 > 0.05
    assert out[0, 2] == pytest.approx(0.5)
    # (4, 4) corner: window rows 3-4, cols 3-4 holds member 2's 0.7: 0.7/4 > 0.05 -> 0.7
    assert out[4, 4] == pytest.approx(0.7)
    assert out[0, 0] == 0  # nothing in its window


def test_neighbour_fusion_keeps_the_average_base_where_members_agree():
    """A region where all members agree (differences 0, g = 0) keeps its eq. 6 value instead of eq. 8's literal 0."""
    a = np.zeros((3, 7, 7), np.float32)
    a[:, 1:6, 1:6] = 0.8  # a flat consensus square
    literal = neighbour_fusion(a, 0.15, tau1=None)
    assert literal[3, 3] == 0  # interior: every |difference| is 0 -> g = 0 -> hollow under eq. 8 as printed
    assert literal[1, 1] == pytest.approx(0.8)  # the square's corner: 4 of 9 window pixels at 0.8 differ by 0.8
    with_base = neighbour_fusion(a, 0.15, tau1=0.3)
    assert with_base[3, 3] == pytest.approx(0.8) and with_base[1, 1] == pytest.approx(0.8)
    # the ring just outside the square: its window reaches 0.8 of the square -> g = 1 -> expanded to 0.8
    assert with_base[0, 3] == pytest.approx(0.8) and with_base[3, 0] == pytest.approx(0.8)
    f = fuse(a, "neighbour", tau1=0.3, lam=0.15)
    assert f.binary.sum() == 49  # the 5x5 square grown by one pixel on every side fills the 7x7 map
    assert fuse(a, "average", tau1=0.3).binary.sum() == 25


def test_single_map_and_input_checks():
    m = np.zeros((4, 4), np.float32)
    m[1:3, 1:3] = 0.5
    assert np.array_equal(average_fusion(m, 0.3), m)  # one HxW map is a zoo of one
    assert neighbour_fusion(m, 0.15).shape == (4, 4)
    with pytest.raises(ValueError, match="unknown PRLE fusion"):
        fuse(m, "median")
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        fuse(np.zeros((2, 2, 2, 2)))


def test_top_alpha_mask_alpha_one_is_mb_and_alpha_to_zero_is_nothing():
    rng = np.random.default_rng(0)
    value = np.where(rng.random((32, 32)) > 0.5, rng.random((32, 32)), 0).astype(np.float32)
    binary = value > 0
    assert np.array_equal(top_alpha_mask(value, binary, 1.0), binary)  # eq. 12 with V_1 = V: exactly M_b
    assert not top_alpha_mask(value, binary, 1e-6).any()  # floor(alpha |V|) = 0
    half = top_alpha_mask(value, binary, 0.5)
    n = int(np.floor(0.5 * binary.sum()))
    assert half.sum() == n  # random floats: no ties
    assert value[half].min() >= value[binary & ~half].max()  # the highest values are the ones kept
    assert not (half & ~binary).any()
    # eq. 12: outside M_b nothing is masked even if V_alpha holds the pixel
    assert not top_alpha_mask(value, np.zeros_like(binary), 1.0).any()


def test_top_alpha_mask_keeps_whole_tie_levels():
    value = np.array([[0.9, 0.5, 0.5], [0.5, 0.2, 0.0]], np.float32)  # V = 5 pixels
    b = value > 0
    assert top_alpha_mask(value, b, 0.2).tolist() == [[True, False, False], [False, False, False]]  # n = 1
    assert top_alpha_mask(value, b, 0.4).sum() == 4  # n = 2 cuts inside the 0.5 level: all three 0.5 kept
    assert top_alpha_mask(value, b, 0.8).sum() == 4


def test_masked_image_zeroes_the_region_eq11():
    img = np.full((4, 4, 3), 200, np.uint8)
    m = np.zeros((4, 4), bool)
    m[0, :2] = True
    out = masked_image(img, m)
    assert out.dtype == np.uint8 and (out[0, :2] == 0).all() and (out[1:] == 200).all()
    soft = masked_image(img.astype(np.float32), np.full((4, 4), 0.25, np.float32))
    assert np.allclose(soft, 150.0)
