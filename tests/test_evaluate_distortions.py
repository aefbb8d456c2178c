"""Each robustness distortion of paper 000 Table 10 changes the image as specified, and only a copy."""

import numpy as np
import pytest

from unmask.errors import UnmaskError
from unmask.evaluate.distortions import DISTORTIONS, TABLE10, build_distortion

# JPEG standard luminance quantization table (ITU T.81 Annex K); libjpeg uses it unscaled at quality 50.
LUMA_Q50 = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float64)


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    c = np.sqrt(2 / 8) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16)
    c[0] /= np.sqrt(2)
    return c


def _natural_gray(astronaut_rgb) -> np.ndarray:
    g = astronaut_rgb.mean(axis=2).round().astype(np.uint8)
    return np.repeat(g[:256, 128:384, None], 3, axis=2)  # R = G = B: JPEG's Y channel is this exactly


@pytest.mark.parametrize("spec", TABLE10, ids=lambda s: s.name)
def test_every_table10_row_keeps_shape_and_input(spec, astronaut_rgb):
    img = astronaut_rgb[:300, :400].copy()
    before = img.copy()
    out = build_distortion(spec.kind, **spec.params)(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before)  # pure: the input is untouched
    if spec.kind == "raw":
        assert np.array_equal(out, img)
    else:
        assert not np.array_equal(out, img)


def test_resize_removes_detail_finer_than_s():
    # 1-pixel checkerboard at 256 x 256: down to 128 x 128 averages it away; at s = 256 nothing changes
    board = ((np.indices((256, 256)).sum(0) % 2) * 200 + 20).astype(np.uint8)
    img = np.repeat(board[:, :, None], 3, axis=2)
    out128 = build_distortion("resize", s=128)(img)
    assert out128.std() < 1.0 and abs(float(out128.mean()) - 120.0) < 1.0
    assert np.array_equal(build_distortion("resize", s=256)(img), img)
    # a non-square frame goes to s x s and back to its own size
    assert build_distortion("resize", s=128)(np.zeros((480, 640, 3), np.uint8)).shape == (480, 640, 3)


@pytest.mark.parametrize("k", [3, 5])
def test_gaussian_blur_spreads_an_impulse_over_k_by_k(k):
    img = np.zeros((21, 21, 3), np.uint8)
    img[10, 10] = 255
    out = build_distortion("gaussian_blur", k=k)(img)[:, :, 0].astype(np.float64)
    ys, xs = np.nonzero(out)
    assert ys.min() == 10 - k // 2 and ys.max() == 10 + k // 2 and xs.min() == 10 - k // 2 and xs.max() == 10 + k // 2
    assert np.allclose(out, out.T) and np.allclose(out, out[::-1, ::-1])  # symmetric
    # OpenCV's kernel for sigma = 0 and k <= 7 is the binomial one: [1 2 1] / 4, [1 4 6 4 1] / 16
    b = np.array({3: [1, 2, 1], 5: [1, 4, 6, 4, 1]}[k], np.float64)
    b /= b.sum()
    expected = 255 * np.outer(b, b)
    assert np.abs(out[10 - k // 2:11 + k // 2, 10 - k // 2:11 + k // 2] - expected).max() <= 0.5 + 1e-9


def test_jpeg_q50_quantizes_luma_with_the_standard_table(astronaut_rgb):
    img = _natural_gray(astronaut_rgb)
    c = _dct_matrix()

    def frac_on_grid(x: np.ndarray) -> float:
        """Share of the clearly non-zero low-frequency luma DCT coefficients that sit on the q=50 grid."""
        y = x[:, :, 0].astype(np.float64) - 128
        hits = []
        for by in range(0, 256, 8):
            for bx in range(0, 256, 8):
                r = (c @ y[by:by + 8, bx:bx + 8] @ c.T / LUMA_Q50)[:4, :4]
                hits.extend((np.abs(r - np.round(r)) < 0.2)[np.abs(r) >= 0.75].tolist())
        return float(np.mean(hits))

    # measured: q=50 0.97, q=55 0.58, q=100 0.46, untouched 0.45 (chance: 0.4)
    assert frac_on_grid(build_distortion("jpeg", q=50)(img)) > 0.9
    assert frac_on_grid(build_distortion("jpeg", q=55)(img)) < 0.75  # another quality: another grid
    assert frac_on_grid(img) < 0.6


def test_jpeg_quality_orders_the_error(astronaut_rgb):
    img = astronaut_rgb[:256, :256]

    def err(q):
        return np.abs(build_distortion("jpeg", q=q)(img).astype(int) - img).mean()

    assert 0 < err(100) < err(50) < err(10)
    assert err(100) < 2.0


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(UnmaskError, match="odd"):
        build_distortion("gaussian_blur", k=4)
    with pytest.raises(UnmaskError, match="0..100"):
        build_distortion("jpeg", q=120)
    with pytest.raises(UnmaskError, match="unknown distortion"):
        build_distortion("sharpen")
    assert set(DISTORTIONS) >= {"raw", "resize", "gaussian_blur", "jpeg"}
