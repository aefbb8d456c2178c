"""PRLE static localization (paper 001 sec. III-B): fusing the zoo's attention maps into one primary-region map.

Pure numpy (it runs in data-loader workers, once per sample): no torch, no scipy.

Notation (paper 001): the map set A = {A_1 .. A_T}, one Grad-CAM map per zoo member normalized to [0, 1] (eq. 3),
all at one geometry (here the stored crop's, :mod:`unmask.data.map_sidecars`), stacked as ``maps`` (K, H, W).

* **Average fusion (eq. 6)**: s(x) = mean_j A_j(x); A^(x) = s(x) if s(x) > tau1 else 0.
* **Neighbouring fusion (eq. 7-8)**, N(x) = the 3x3 neighbourhood of x (x itself included, clipped at the image
  border, |N| the number of its pixels inside the image):

      g(x)  = 1{ exists j, k:  (1/|N|) sum_{a in N(x)} |A_j(x_a) - A_k(x)|  >  lambda }            (eq. 7)
      A^(x) = max_{j, n in N(x)} A_j(x_n)  where g(x) = 1                                            (eq. 8)

  j and k range over all ordered pairs of members, j = k included. Where g(x) = 0 eq. 8 writes 0; sec. III-B
  says the neighbouring method "expand[s] the regions based on the average fused maps with a higher tau1", and a
  literal 0 would hollow out every region the members agree on (there all differences are small and g = 0), so
  **where g(x) = 0 we keep the average-fused value of eq. 6 with tau1** (``tau1=None`` gives eq. 8's literal 0).
  Eq. 7 is implemented as printed (absolute difference: a point is of interest when some member's neighbourhood
  differs from some member's value at the point by more than lambda on average); the prose reading ("a
  neighbour receives more attention", signed: mean_N A_j - A_k(x) > lambda) is ``signed=True``.
  Defaults tau1 = 0.3, lambda = 0.15 (sec. IV-A).

**Binary mask M_b (eq. 4 applied to the fused map, sec. III-C)**: M_b(x) = 1 where A^(x) > 0, for both fusions.
For average fusion that is exactly s(x) > tau1 (tau1 >= 0); for neighbouring fusion it is g(x) = 1 (the
neighbourhood maximum is then > 0) or s(x) > tau1.

**Top-alpha masks (eq. 9-12)**: V = the pixels with A^ > 0 in descending order of A^; V_alpha = its first
floor(alpha |V|) pixels, ties at the cut included (alpha = 1: all of V, i.e. exactly M_b; alpha -> 0: none);
the masked image is I * (1 - V_alpha (.) M_b). :func:`top_alpha_mask` gives V_alpha (.) M_b as a bool HxW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAU1 = 0.3  # sec. IV-A: "the values of threshold tau1 and lambda used in Section III-B are set as 0.3 and 0.15"
LAMBDA = 0.15
FUSIONS = ("average", "neighbour")


@dataclass
class FusedMap:
    """A fused primary-region map: ``value`` A^ (HxW float32 in [0, 1]) and ``binary`` M_b = A^ > 0 (HxW bool)."""

    value: np.ndarray
    binary: np.ndarray


def _stack(maps: np.ndarray) -> np.ndarray:
    a = np.asarray(maps, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] < 1:
        raise ValueError(f"maps must be (K, H, W) (or one HxW map), got shape {np.shape(maps)}")
    return a


def average_fusion(maps: np.ndarray, tau1: float = TAU1) -> np.ndarray:
    """Eq. 6: the pixel-wise mean of the members' maps, zeroed where it is not above ``tau1``. HxW float32."""
    a = _stack(maps)
    s = a.mean(axis=0, dtype=np.float32) if a.shape[0] > 1 else a[0].copy()
    s[~(s > tau1)] = 0.0
    return s


def _neighbourhood(a: np.ndarray) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The 3x3 neighbourhood of every pixel of ``a`` (K, H, W) as 9 (shifted view (K, H, W), weight (H, W)) pairs
    over an edge-padded copy: weight 1 for a neighbour inside the image, 0 for a padded one (clipped windows),
    and |N(x)| per pixel (9 inside, 6 on an edge, 4 in a corner). Views, not copies: O(K H W) memory."""
    k, h, w = a.shape
    pad = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    valid = np.zeros((h + 2, w + 2), np.float32)
    valid[1:-1, 1:-1] = 1.0
    views = [(pad[:, dy:dy + h, dx:dx + w], valid[dy:dy + h, dx:dx + w]) for dy in range(3) for dx in range(3)]
    count = sum(v for _, v in views)
    return views, count


def neighbour_fusion(maps: np.ndarray, lam: float = LAMBDA, tau1: float | None = TAU1,
                     signed: bool = False) -> np.ndarray:
    """Eq. 7-8 on a 3x3 neighbourhood (see the module docstring for the exact definition). HxW float32 in [0, 1].

    ``tau1``: where g = 0 the value is the average fusion of eq. 6 with this threshold (None: 0, eq. 8 as printed).
    ``signed``: eq. 7 without the absolute value (a neighbourhood above the point by more than ``lam``)."""
    a = _stack(maps)
    k, h, w = a.shape
    views, count = _neighbourhood(a)
    nb_max = np.zeros((h, w), np.float32)  # eq. 8: max over members and N (maps are >= 0: a padded 0 never wins)
    for view, wt in views:
        np.maximum(nb_max, view.max(axis=0) * wt, out=nb_max)
    if signed:  # max over j, k of mean_N A_j - A_k(x)
        mean_nb = sum(view * wt for view, wt in views) / count
        score = mean_nb.max(axis=0) - a.min(axis=0)
    else:  # max over j, k of (1/|N|) sum_a |A_j(x_a) - A_k(x)|
        score = np.full((h, w), -np.inf, np.float32)
        acc = np.empty((k, h, w), np.float32)
        tmp = np.empty((k, h, w), np.float32)
        for kk in range(k):
            acc.fill(0.0)
            for view, wt in views:
                np.subtract(view, a[kk], out=tmp)
                np.abs(tmp, out=tmp)
                tmp *= wt
                acc += tmp
            np.maximum(score, acc.max(axis=0) / count, out=score)
    g = score > lam
    base = average_fusion(a, tau1) if tau1 is not None else np.zeros((h, w), np.float32)
    return np.where(g, nb_max, base).astype(np.float32, copy=False)


def fuse(maps: np.ndarray, method: str = "neighbour", tau1: float = TAU1, lam: float = LAMBDA,
         signed: bool = False) -> FusedMap:
    """The fused map A^ of ``method`` (``average``: eq. 6; ``neighbour``: eq. 7-8 over the eq. 6 base) and its
    binary mask M_b = A^ > 0 (eq. 4)."""
    name = str(method).lower()
    if name in ("average", "avg", "mean"):
        value = average_fusion(maps, tau1)
    elif name in ("neighbour", "neighbor", "neighbouring", "neighboring"):
        value = neighbour_fusion(maps, lam, tau1=tau1, signed=signed)
    else:
        raise ValueError(f"unknown PRLE fusion {method!r} (one of: {', '.join(FUSIONS)})")
    return FusedMap(value=value, binary=value > 0)


def top_alpha_mask(value: np.ndarray, binary: np.ndarray, alpha: float) -> np.ndarray:
    """V_alpha (.) M_b (eq. 9-12) as a bool HxW: the pixels of V = {A^ > 0} whose value is at least that of the
    n-th highest, n = floor(alpha |V|), kept where M_b is 1. alpha = 1 gives exactly M_b (for M_b = A^ > 0);
    alpha -> 0 (n = 0) gives nothing. Pixels tied with the n-th are all kept (so |V_alpha| >= n): stored maps are
    8-bit, so a cut inside a tie level would pick an arbitrary part of an iso-level ring (streaks in the mask);
    keeping whole levels makes the mask's edge an iso-contour of A^ and the result independent of pixel order."""
    v = np.asarray(value, dtype=np.float32)
    flat = v.ravel()
    vals = flat[flat > 0]
    n = int(np.floor(float(alpha) * vals.size + 1e-9))
    if n <= 0:
        out = np.zeros(v.shape, bool)
    elif n >= vals.size:
        out = v > 0
    else:
        cut = np.partition(vals, vals.size - n)[vals.size - n]  # the n-th highest value
        out = v >= cut
    return out & np.asarray(binary, dtype=bool)


def masked_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eq. 11: I * (1 - mask), for an HxWx3 (or HxW) image and a bool / [0, 1] HxW mask; same dtype as the image."""
    m = np.asarray(mask)
    keep = (~m) if m.dtype == bool else (1.0 - m.astype(np.float32))
    if image.ndim == 3:
        keep = keep[..., None]
    return (image * keep).astype(image.dtype, copy=False)
