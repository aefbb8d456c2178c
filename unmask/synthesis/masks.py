"""Mask generators: landmark hulls (SBI), Face X-ray's landmark augmentation library (LAL), SLADD local
masks, and the raw parts of BBMG (paper 000 sec. 3.3).

Geometry is done on polygons where it is exact and cheap (hull choice, affine moves, dilation as a
Minkowski sum with a disk, erosion as half-plane clipping), then rasterized once; deformations that are
not affine (Face X-ray's piecewise-affine grid warp, SBI's elastic deformation) become one displacement
field applied with a single ``cv2.remap`` on the face's region of interest only.

Every generator returns the *raw* mask in the dtype/value of :class:`DrawConfig` (blurring and
normalization live in ``blur.py``), so the dtype/value knobs of paper 000 Table 3 act exactly where the
paper says they matter: in the blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from unmask.synthesis import landmarks as L
from unmask.synthesis.config import BBMGConfig, DrawConfig, HullConfig, LALConfig, LocalConfig

_DIRS = np.stack([np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))], axis=1)
_DIRS32 = _DIRS.astype(np.float32)


# --- polygons ------------------------------------------------------------------------------------------


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of ``points`` as an (N, 2) float32 polygon, counter-clockwise in image coordinates."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)
    return cv2.convexHull(pts).reshape(-1, 2)


# The hull families SBI draws through its optional Face X-ray library (DeepFaceLab / faceswap masks), as part
# groups over dlib's 68 points: each group's convex hull is one polygon, the mask is their union.
# ``components`` (8 parts): the two jaw halves (jaw line to the chin, each with its outer brow point), the two
# cheeks (outer brow to the chin), the brow centre to the chin, the two eye regions (brow, nose bridge top,
# nostrils, chin) and the nose; ``extended`` is the same with the brows raised. ``full`` (DFL's full-face mask,
# 3 parts): the jaw line with the mouth, the nose ridge with the nose tip, and the brows with the jaw tops,
# the nose bridge top and the nose tip. Both cover the face below the brows (``full`` ~ the 68-point hull),
# with small concave notches where the jaw meets the temples instead of one convex outline.
_CHIN = (8,)
_COMPONENT_PARTS = (
    tuple(range(0, 9)) + (17,),  # right jaw half (image left) with the outer brow point
    tuple(range(8, 17)) + (26,),  # left jaw half
    (17, 18, 19) + _CHIN,  # right cheek: outer brow to the chin
    (24, 25, 26) + _CHIN,  # left cheek
    tuple(range(19, 25)) + _CHIN,  # brow centre / nose ridge to the chin
    tuple(range(17, 22)) + (27,) + tuple(range(31, 36)) + _CHIN,  # right eye region
    tuple(range(22, 27)) + (27,) + tuple(range(31, 36)) + _CHIN,  # left eye region
    tuple(range(27, 36)),  # nose
)
_DFL_FULL_PARTS = (
    tuple(range(0, 17)) + tuple(range(48, 68)),  # jaw line + mouth
    (27, 28, 29, 30, 33),  # nose ridge + nose tip
    tuple(range(17, 27)) + (0, 27, 16, 33),  # brows + jaw tops, nose bridge top, nose tip
)


def _raised_brows(lm68: np.ndarray) -> np.ndarray:
    """The 68 points with each brow point moved away from the eye point below it by half their distance
    (the "extended" hull): the eye references run from a point a quarter of the way from the outer eye
    corner to the face side, along the upper lid."""
    p = lm68.astype(np.float32).copy()
    q_r = (3.0 * p[36] + p[0]) / 4.0
    q_l = (3.0 * p[45] + p[16]) / 4.0
    eye_r = np.stack([q_r, p[36], p[37], p[38], p[39]])
    eye_l = np.stack([p[42], p[43], p[44], p[45], q_l])
    p[17:22] += 0.5 * (p[17:22] - eye_r)
    p[22:27] += 0.5 * (p[22:27] - eye_l)
    return p


def hull_polygons(lm: np.ndarray, hull_type: str) -> list[np.ndarray]:
    """The convex polygon(s) of one hull type over 81 (or 68) landmarks (see ``HullConfig``).

    ``facehull`` is the convex hull of all the points given (pass ``lm[:68]`` for SBI's 68-point draws).
    """
    lm = np.asarray(lm, dtype=np.float32)
    if hull_type == "facehull":
        return [convex_hull(lm)]
    if hull_type == "face68":
        return [convex_hull(lm[:68])]
    if hull_type == "full":
        return [convex_hull(lm[list(g)]) for g in _DFL_FULL_PARTS]
    if hull_type in ("extended", "components"):
        p = _raised_brows(lm[:68]) if hull_type == "extended" else lm[:68]
        return [convex_hull(p[list(g)]) for g in _COMPONENT_PARTS]
    raise ValueError(f"unknown hull type {hull_type!r}")


def dilate_polygon(poly: np.ndarray, radius: float) -> np.ndarray:
    """Minkowski sum of a convex polygon with a disk (16-gon): the exact dilation of a convex region."""
    pts = poly[:, None, :] + radius * _DIRS32[None, :, :]
    return convex_hull(pts.reshape(-1, 2))


def inward_half_planes(poly: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(unit inward normals n_i, offsets o_i) of a convex float64 polygon's edges moved inward by ``radius``:
    the eroded region is {x : x . n_i >= o_i for every i}. Normals point towards the centroid, whatever the
    vertex order; degenerate (zero-length) edges are left out."""
    c = poly.mean(axis=0)
    edges = np.roll(poly, -1, axis=0) - poly
    normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
    lengths = np.linalg.norm(normals, axis=1)
    keep = lengths > 1e-9
    normals, starts = normals[keep] / lengths[keep, None], poly[keep]
    flip = np.einsum("ij,ij->i", c - starts, normals) < 0
    normals[flip] *= -1
    return normals, np.einsum("ij,ij->i", starts, normals) + radius


ClipStep = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def erode_polygon(poly: np.ndarray, radius: float) -> np.ndarray:
    """Erosion of a convex polygon by a disk: clip it by each edge's line moved inward by ``radius``.

    Returns an empty (0, 2) array when the polygon vanishes.
    """
    return erode_polygon_with(poly, radius, _clip_step_floats)


def erode_polygon_with(poly: np.ndarray, radius: float, clip_step: ClipStep) -> np.ndarray:
    """Sutherland-Hodgman erosion, one inward half-plane at a time, with ``clip_step(vertices, d, inside)`` doing
    one clip (``d`` the vertices' signed distances to the line, ``inside`` = d >= 0). One driver for the fast
    step and the whole-array numpy step ``tests/test_synthesis_exact_paths.py`` checks it against."""
    poly = np.asarray(poly, dtype=np.float64)
    if len(poly) < 3:
        return np.zeros((0, 2), np.float32)
    normals, offsets = inward_half_planes(poly, radius)
    out = poly
    for nrm, off in zip(normals, offsets):
        if len(out) == 0:
            break
        d = out @ nrm - off
        inside = d >= 0
        if inside.all():
            continue
        out = clip_step(out, d, inside)
    if len(out) < 3:
        return np.zeros((0, 2), np.float32)
    return out.astype(np.float32)


def _clip_step_floats(out: np.ndarray, d: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """One clip in Python floats: a polygon has ~20 vertices, where numpy's per-call overhead was most of the
    cost; the same IEEE double operations (t = d_i / (d_i - d_j), p_i + t (p_j - p_i), each rounded), so the
    same vertices bit for bit."""
    dl, pl, ins = d.tolist(), out.tolist(), inside.tolist()
    n_out = len(dl)
    kept: list[list[float]] = []
    for i in range(n_out):
        j = i + 1 if i + 1 < n_out else 0
        if ins[i]:
            kept.append(pl[i])
        if ins[i] != ins[j]:  # the edge (i, i+1) crosses the line
            t = dl[i] / (dl[i] - dl[j])
            (xi, yi), (xj, yj) = pl[i], pl[j]
            kept.append([xi + t * (xj - xi), yi + t * (yj - yi)])
    return np.array(kept, dtype=np.float64).reshape(-1, 2)


def morph_polygons(polys: Sequence[np.ndarray], radius: float) -> list[np.ndarray]:
    """Dilate (radius > 0) or erode (radius < 0) each convex polygon; vanished polygons are dropped."""
    if radius == 0:
        return list(polys)
    if radius > 0:
        return [dilate_polygon(p, radius) for p in polys]
    out = [erode_polygon(p, -radius) for p in polys]
    return [p for p in out if len(p) >= 3]


def scale_polygon(poly: np.ndarray, factor: float) -> np.ndarray:
    c = poly.mean(axis=0, keepdims=True)
    return (c + factor * (poly - c)).astype(np.float32)


def affine_points(points: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    if matrix is None:
        return np.asarray(points, dtype=np.float32)
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


# --- rasterization -----------------------------------------------------------------------------------

_SHIFT = 4  # sub-pixel bits for OpenCV drawing


def draw_polygons(shape: tuple[int, int], polys: Sequence[np.ndarray], draw: DrawConfig) -> np.ndarray:
    """Rasterize the union of convex polygons in ``draw.dtype`` with value ``draw.value``.

    LINE_AA coverage is drawn on an 8-bit canvas (OpenCV anti-aliases only 8-bit images) and converted:
    float32 keeps it (value * coverage / 255); uint8 with value 1 rounds it to {0, 1}.
    """
    h, w = shape
    scale = float(1 << _SHIFT)
    ipolys = [np.round(np.asarray(p, np.float64) * scale).astype(np.int32) for p in polys if len(p) >= 3]
    if draw.line_type == "LINE_AA":
        canvas = np.zeros((h, w), np.uint8)
        for p in ipolys:
            cv2.fillConvexPoly(canvas, p, 255, cv2.LINE_AA, _SHIFT)
        if draw.dtype == "float32":
            m = canvas.astype(np.float32)
            m *= np.float32(draw.value / 255.0)
            return m
        if draw.value == 255:
            return canvas
        return (canvas >= 128).astype(np.uint8)
    canvas = np.zeros((h, w), np.float32 if draw.dtype == "float32" else np.uint8)
    for p in ipolys:
        cv2.fillConvexPoly(canvas, p, float(draw.value) if draw.dtype == "float32" else int(draw.value),
                           cv2.LINE_8, _SHIFT)
    return canvas


# --- non-affine deformations (one displacement field, one remap) ------------------------------------


def _roi(polys: Sequence[np.ndarray], shape: tuple[int, int], pad: float) -> tuple[int, int, int, int]:
    pts = np.concatenate([np.asarray(p, np.float32) for p in polys if len(p)])
    x0, y0 = pts.min(axis=0) - pad
    x1, y1 = pts.max(axis=0) + pad
    h, w = shape
    ix0, iy0 = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
    ix1, iy1 = int(min(w, np.ceil(x1))), int(min(h, np.ceil(y1)))
    return ix0, iy0, max(ix1, ix0 + 1), max(iy1, iy0 + 1)


@lru_cache(maxsize=512)
def _lattice(h: int, w: int, g: int) -> tuple[np.ndarray, ...]:
    """The (h, w) lattice's cell indices, in-cell coordinates and triangle choice over a g x g grid; cached
    (read-only) because the coarse lattices of ``deformation_field`` take few sizes and building them was
    most of the field's cost."""
    gy = np.linspace(0.0, g - 1.0, h, dtype=np.float32)[:, None]
    gx = np.linspace(0.0, g - 1.0, w, dtype=np.float32)[None, :]
    i = np.minimum(gx.astype(np.int32), g - 2)
    j = np.minimum(gy.astype(np.int32), g - 2)
    u, v = gx - i, gy - j
    I, J = np.broadcast_to(i, (h, w)), np.broadcast_to(j, (h, w))
    U, V = np.broadcast_to(u, (h, w))[..., None], np.broadcast_to(v, (h, w))[..., None]
    lower = (U + V) <= 1.0
    for a in (i, j, u, v, lower):
        a.flags.writeable = False
    return I, J, U, V, lower


def piecewise_affine_field(size: tuple[int, int], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Displacement (dx, dy) sampled on an (h, w) lattice spanning a region, from control-point ``offsets``
    (g, g, 2) on a regular g x g grid over the same region.

    Each grid cell is split into two triangles and the offsets are interpolated linearly inside each
    triangle: a piecewise-affine map (Face X-ray's "piecewise affine transform" of a 4x4 grid). Callers
    evaluate it on a coarse lattice and upsample (a piecewise-linear field survives that almost exactly).
    """
    I, J, U, V, lower = _lattice(int(size[0]), int(size[1]), int(offsets.shape[0]))
    d00, d10 = offsets[J, I], offsets[J, I + 1]
    d01, d11 = offsets[J + 1, I], offsets[J + 1, I + 1]
    d = np.where(lower, d00 + U * (d10 - d00) + V * (d01 - d00), d11 + (1 - U) * (d01 - d11) + (1 - V) * (d10 - d11))
    return d[..., 0].astype(np.float32), d[..., 1].astype(np.float32)


ELASTIC_STEP = 2  # lattice step (px) of the elastic noise; see ``elastic_field``


def elastic_field(size: tuple[int, int], alpha: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """albumentations' ElasticTransform displacement (SBI: alpha 50, sigma 7) over an (h, w) region, (h, w, 2)
    (a view into a slightly larger array).

    The definition is per-pixel uniform(-1, 1) noise, Gaussian-smoothed with ``sigma`` (truncated at 4 sigma,
    like scipy's ``gaussian_filter``), times ``alpha``. That field is band-limited to ~1/sigma, so it is drawn
    on a lattice of step ``ELASTIC_STEP`` (2 px) with sigma / step (white noise on a coarser lattice has step^2
    times the variance after the same smoothing, so it is divided by step), and upsampled linearly: the same
    Gaussian random field (same covariance up to the lattice) for a quarter of the noise and the filtering.
    """
    h, w = size
    s = ELASTIC_STEP if sigma >= 2 * ELASTIC_STEP else 1
    ch, cw = -(-h // s) + 1, -(-w // s) + 1
    d = rng.random((ch, cw, 2), dtype=np.float32)
    d = d * np.float32(2.0) - np.float32(1.0)
    sc = sigma / s
    k = 2 * int(4.0 * sc + 0.5) + 1
    d = cv2.GaussianBlur(d, (k, k), sc, borderType=cv2.BORDER_REFLECT)
    d *= np.float32(alpha / s)
    if s == 1:
        return d[:h, :w]
    big = cv2.resize(d, (cw * s, ch * s), interpolation=cv2.INTER_LINEAR)
    return big[:h, :w]  # a view: ``deformation_field`` adds it into its own array


def deformation_field(roi_size: tuple[int, int], warp: np.ndarray | None, elastic: tuple[float, float] | None,
                      rng: np.random.Generator) -> np.ndarray:
    """LAL grid warp + SBI elastic deformation as one dense (h, w, 2) displacement over the ROI."""
    rh, rw = roi_size
    # The first term is the array itself (0 + x = x; a -0.0 there is +0.0 once the pixel grid is added).
    disp: np.ndarray | None = None
    if warp is not None:
        ch, cw = max(4, int(np.ceil(rh / 16.0)) + 1), max(4, int(np.ceil(rw / 16.0)) + 1)
        wx, wy = piecewise_affine_field((ch, cw), warp)
        disp = cv2.resize(np.dstack([wx, wy]), (rw, rh), interpolation=cv2.INTER_CUBIC)
    if elastic is not None and elastic[0] > 0:
        e = elastic_field((rh, rw), elastic[0], elastic[1], rng)
        if disp is None:
            disp = np.array(e, dtype=np.float32, order="C")
        else:
            disp += e
    return np.zeros((rh, rw, 2), np.float32) if disp is None else disp


def remap_roi(mask: np.ndarray, roi: tuple[int, int, int, int], disp: np.ndarray) -> np.ndarray:
    """Sample ``mask`` at (x, y) + ``disp`` (h, w, 2) inside ``roi``; outside it the mask is unchanged.

    Writes into ``mask`` (callers pass a freshly drawn mask) and uses ``disp`` as scratch space.
    """
    x0, y0, x1, y1 = roi
    disp[..., 0] += np.arange(x0, x1, dtype=np.float32)[None, :]
    disp[..., 1] += np.arange(y0, y1, dtype=np.float32)[:, None]
    # Replicate: where the face leaves the image the mask continues to the edge instead of fading to 0.
    mask[y0:y1, x0:x1] = cv2.remap(mask, disp, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return mask


# --- generators ----------------------------------------------------------------------------------------


@dataclass
class RawMask:
    """A raw (unblurred) mask and what was drawn. BBMG also carries its local part separately."""

    mask: np.ndarray  # dtype/value of DrawConfig; for bbmg: the landmark mask M_landmark
    record: dict[str, Any]
    local: np.ndarray | None = None  # bbmg: M_local (full size, subtracted from M_landmark)
    local_fill: np.ndarray | None = None  # bbmg: the local mask that is blurred and merged back (may be scaled)
    roi: tuple[int, int, int, int] | None = None  # region of the image the mask lives in


def _choose(rng: np.random.Generator, options: Sequence[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def lal_polygons(lm: np.ndarray, cfg: LALConfig, rng: np.random.Generator,
                 record: dict[str, Any]) -> tuple[list[np.ndarray], float]:
    """LAL step 1-2: a random hull type, then with ``p_morph`` an erode/dilate.

    Returns (polygons, erosion radius still to apply in pixels). Dilation distributes over a union, so it is
    done on each polygon (exact); erosion does not -- eroding the parts of a multi-part hull one by one would
    open holes along their shared edges -- so a multi-part hull is eroded as a raster (``generate_raw_mask``),
    a single convex hull exactly as a polygon. ``lm`` may be 68 points (SBI's 68-point draws), which makes
    ``facehull`` the 68-point hull."""
    hull_type = _choose(rng, cfg.types)
    polys = hull_polygons(lm, hull_type)
    record["hull"] = hull_type
    if rng.random() < cfg.p_morph:
        radius = float(rng.uniform(*cfg.morph_frac)) * L.face_size(lm)
        if radius < 0 and len(polys) > 1:
            record["morph_px"] = round(radius, 1)
            return polys, -radius
        morphed = morph_polygons(polys, radius)
        if morphed:
            polys = morphed
            record["morph_px"] = round(radius, 1)
        else:
            record["morph_px"] = 0.0  # erosion would remove the whole mask: documented fallback, keep the hull
            record["fallback"] = "erosion emptied the hull; kept it unmorphed"
    return polys, 0.0


def local_polygons(lm: np.ndarray, cfg: LocalConfig, rng: np.random.Generator,
                   record: dict[str, Any]) -> list[np.ndarray]:
    """SLADD local parts: a random non-empty subset of ``cfg.parts`` (size in [min_parts, max_parts])."""
    parts = list(cfg.parts)
    k_hi = min(cfg.max_parts, len(parts))
    k_lo = min(cfg.min_parts, k_hi)
    k = int(rng.integers(k_lo, k_hi + 1))
    chosen = sorted(rng.choice(len(parts), size=k, replace=False).tolist())
    names = [parts[i] for i in chosen]
    grow = cfg.grow_frac * L.face_size(lm)
    polys = [dilate_polygon(convex_hull(lm[list(L.PARTS[n])]), grow) if grow > 0 else convex_hull(lm[list(L.PARTS[n])])
             for n in names]
    record["parts"] = names
    return polys


def generate_raw_mask(generator: str, lm: np.ndarray, shape: tuple[int, int], *, draw: DrawConfig,
                      hull: HullConfig, lal: LALConfig, local: LocalConfig, bbmg: BBMGConfig,
                      elastic: tuple[float, float] | None, rng: np.random.Generator,
                      matrix: np.ndarray | None = None,
                      raster: tuple[float, float, float, float] | None = None) -> RawMask:
    """One raw mask of ``generator`` over landmarks ``lm`` (moved by the affine ``matrix`` if given).

    ``raster`` = (fx, fy, ox, oy): the canvas of ``shape`` is a scaled copy of the image, canvas = image *
    (fx, fy) + (ox, oy). The geometry (hulls, erode/dilate) is done in image coordinates and only the finished
    polygons are mapped, so drawing straight onto SBI's small blur canvas is the same mask as drawing at full
    size and resizing, at a fraction of the cost; warp offsets and the elastic field are mapped likewise
    (a Gaussian field scaled by f has sigma * f and, per albumentations' alpha, alpha * f^2).

    ``elastic`` = (alpha_px, sigma_px) adds SBI's elastic deformation of the mask (None = off). For ``bbmg``
    the landmark mask (LAL) gets the warps; the local features are cut out of it afterwards (eq. 2).
    Hull draws use only the 68 points with probability ``hull.p_68`` (SBI: 25%).
    """
    lm = affine_points(lm, matrix)
    fs = L.face_size(lm)
    record: dict[str, Any] = {"generator": generator}
    local_polys: list[np.ndarray] | None = None
    warp_px = 0.0
    erode_px = 0.0
    if generator in ("hull", "lal", "bbmg"):
        hull_lm = lm
        if rng.random() < hull.p_68:
            hull_lm = lm[:68]
            record["points"] = 68
    if generator == "hull":
        ht = _choose(rng, hull.types)
        polys = hull_polygons(hull_lm, ht)
        record["hull"] = ht
    elif generator == "lal" or generator == "bbmg":
        polys, erode_px = lal_polygons(hull_lm, lal, rng, record)
        if rng.random() < lal.p_warp:
            warp_px = lal.warp_frac * fs
        if generator == "bbmg":
            local_polys = local_polygons(lm, local, rng, record)
            record["form"] = bbmg.form
    elif generator == "local":
        polys = local_polygons(lm, local, rng, record)
    else:
        raise ValueError(f"unknown mask generator {generator!r}")

    if elastic and elastic[0] > 0:
        record["elastic"] = [round(float(elastic[0]), 1), round(float(elastic[1]), 1)]
    fxy = np.ones(2, np.float32)
    if raster is not None:
        fxy = np.array(raster[:2], np.float32)
        off = np.array(raster[2:], np.float32)
        polys = [p * fxy + off for p in polys]
        if local_polys is not None:
            local_polys = [p * fxy + off for p in local_polys]
        f = float(np.sqrt(fxy[0] * fxy[1]))
        if elastic:
            elastic = (elastic[0] * f * f, elastic[1] * f)
    mask = draw_polygons(shape, polys, draw)
    if erode_px > 0:  # a multi-part hull's erosion, as a raster (an elliptical element, canvas pixels)
        rx, ry = (max(1, int(round(erode_px * float(v)))) for v in fxy)
        eroded = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rx + 1, 2 * ry + 1)))
        if float(eroded.max()) > 0:
            mask = eroded
        else:
            record["morph_px"] = 0.0  # erosion would remove the whole mask: documented fallback
            record["fallback"] = "erosion emptied the hull; kept it unmorphed"
    # Bound on the elastic |d|: the field's std is ~0.16 alpha / sigma (uniform noise smoothed in 2-D); 1.2
    # alpha / sigma is > 7 std.
    amp = 1.2 * elastic[0] / elastic[1] if elastic else 0.0
    roi = _roi(polys, shape, pad=warp_px * float(fxy.max()) + amp + 4)
    if warp_px > 0 or amp > 0:
        warp = None
        if warp_px > 0:
            g = lal.warp_grid
            warp = (rng.uniform(-warp_px, warp_px, size=(g, g, 2)) * fxy).astype(np.float32)
            record["warp_px"] = round(warp_px, 1)
        disp = deformation_field((roi[3] - roi[1], roi[2] - roi[0]), warp, elastic, rng)
        mask = remap_roi(mask, roi, disp)

    out = RawMask(mask=mask, record=record, roi=roi)
    if local_polys is not None:
        out.local = draw_polygons(shape, local_polys, draw)
        if bbmg.form == "scaled_local":
            out.local_fill = draw_polygons(shape, [scale_polygon(p, bbmg.local_scale) for p in local_polys], draw)
            # (scaling about a polygon's centre commutes with the canvas mapping)
            record["local_scale"] = bbmg.local_scale
        elif bbmg.form == "full":
            out.local_fill = out.local
    return out


def subtract_masks(landmark: np.ndarray, local: np.ndarray) -> np.ndarray:
    """M_global = M_landmark - M_local (paper 000 eq. 2), saturated at 0, in the masks' dtype."""
    if landmark.dtype == np.uint8:
        return cv2.subtract(landmark, local)
    d = landmark - local
    return np.maximum(d, 0.0, out=d)


def bbmg_combine(landmark: np.ndarray, local: np.ndarray, local_fill: np.ndarray | None,
                 blur_global, blur_local) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """BBMG (paper 000 eq. 2-3): M_global = M_landmark - M_local; M_final = max(blur(M_global), blur(M_local)).

    ``blur_global`` / ``blur_local`` map a raw mask to a float32 [0, 1] mask (each draws its own kernel).
    ``local_fill`` is the local mask merged back (None: global only, the first form of Fig. 7).
    Returns (M_final, blurred global, blurred local or None).
    """
    g = blur_global(subtract_masks(landmark, local))
    if local_fill is None:
        return g, g, None
    lb = blur_local(local_fill)
    return np.maximum(g, lb), g, lb
