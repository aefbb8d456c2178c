"""The exact fast paths of the synthesis masks (issue 8 item 10, second round): each must give the same bytes
as the straightforward computation it replaced, which these tests keep as the reference."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from unmask.synthesis import build_synthesizer
from unmask.synthesis import masks as M
from unmask.synthesis.pair_dataset import PairDataset
from unmask.synthesis.transforms import nonzero_box


def _numpy_clip_step(out: np.ndarray, d: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """One Sutherland-Hodgman clip with whole-array numpy steps (the clip before the fast path)."""
    d_next = np.roll(d, -1)
    cross = inside != (d_next >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cross, d / (d - d_next), 0.0)
    inter = out + t[:, None] * (np.roll(out, -1, axis=0) - out)
    return np.stack([out, inter], axis=1).reshape(-1, 2)[np.stack([inside, cross], axis=1).reshape(-1)]


def _erode_reference(poly: np.ndarray, radius: float) -> np.ndarray:
    """The erosion with the numpy clip step (the driver and half-planes are shared: only the step changed)."""
    return M.erode_polygon_with(poly, radius, _numpy_clip_step)


def test_erode_polygon_matches_the_array_reference_bit_for_bit():
    rng = np.random.default_rng(7)
    vanished = 0
    for _ in range(400):
        poly = M.convex_hull(rng.normal(200.0, 60.0, (int(rng.integers(3, 90)), 2)).astype(np.float32))
        radius = float(rng.uniform(0.0, 90.0))
        ours, ref = M.erode_polygon(poly, radius), _erode_reference(poly, radius)
        assert ours.shape == ref.shape and ours.tobytes() == ref.tobytes()
        vanished += len(ref) == 0
    assert 0 < vanished < 400  # both outcomes were exercised


def test_piecewise_affine_field_cached_lattice_is_the_direct_formula():
    rng = np.random.default_rng(3)
    for h, w in [(4, 4), (13, 17), (29, 9), (13, 17)]:  # the repeated size comes from the cache
        off = rng.uniform(-6.0, 6.0, (4, 4, 2)).astype(np.float32)
        gy = np.linspace(0.0, 3.0, h, dtype=np.float32)[:, None]
        gx = np.linspace(0.0, 3.0, w, dtype=np.float32)[None, :]
        i, j = np.minimum(gx.astype(np.int32), 2), np.minimum(gy.astype(np.int32), 2)
        u, v = gx - i, gy - j
        I, J = np.broadcast_to(i, (h, w)), np.broadcast_to(j, (h, w))
        U, V = np.broadcast_to(u, (h, w))[..., None], np.broadcast_to(v, (h, w))[..., None]
        d00, d10, d01, d11 = off[J, I], off[J, I + 1], off[J + 1, I], off[J + 1, I + 1]
        d = np.where((U + V) <= 1.0, d00 + U * (d10 - d00) + V * (d01 - d00),
                     d11 + (1 - U) * (d01 - d11) + (1 - V) * (d10 - d11))
        dx, dy = M.piecewise_affine_field((h, w), off)
        assert dx.tobytes() == d[..., 0].astype(np.float32).tobytes()
        assert dy.tobytes() == d[..., 1].astype(np.float32).tobytes()


@pytest.mark.parametrize("recipe", ["sbi", "bbmg", "bbmg_scaled_local", "sbi_lal"])
def test_the_box_synthesis_reports_is_the_masks_nonzero_box(recipe, astronaut_face_256):
    """SynthResult.box (searched inside the mask's support) and PairDataset's mirrored copy after a flip must
    be exactly the non-zero box of the mask they describe: the final augmentation trusts them."""
    img, lm = astronaut_face_256
    synth = build_synthesizer(recipe)
    for seed in range(16):
        res = synth.synth(img, lm, seed)
        assert res.box == nonzero_box(res.mask > 0)
    # Through PairDataset (flips included): the pair equals the one made from a measured box.
    face = SimpleNamespace(crop_path="astronaut", box=np.array([40.0, 40.0, 216.0, 216.0], np.float32),
                           landmarks=lm, identity="a")
    ds = PairDataset([face], synth, image_size=128, seed=0, augment=True, loader=lambda r: img)
    flips = 0
    for epoch in range(16):
        ds.set_epoch(epoch)
        p = ds.pair(0)
        flips += bool(p["record"].get("hflip"))
        measured = _measured_box_pair(ds, epoch)
        for k in ("real", "fake", "mask"):
            assert np.array_equal(p[k], measured[k]), (k, epoch)
    assert flips > 0


def _measured_box_pair(ds: PairDataset, epoch: int) -> dict:
    """The same pair with the synthesizer's box withheld, so PairDataset measures it from the mask."""
    orig = ds.synthesizer.synth

    def synth(*a, **k):
        res = orig(*a, **k)
        res.box = "unknown"
        return res

    ds.synthesizer.synth = synth  # type: ignore[method-assign]
    try:
        ds.set_epoch(epoch)
        return ds.pair(0)
    finally:
        del ds.synthesizer.synth
