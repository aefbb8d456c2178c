"""Detection metrics in plain numpy: ROC, AUC, average precision, EER, accuracy, bootstrap CIs.

Why our own code and not scikit-learn's: the definitions below are the whole contract of every table
unmask prints, so they live here in a few readable lines (tests cross-check them against sklearn).

Conventions: ``labels`` are 0 = real, 1 = fake; ``scores`` are fake probabilities (higher = more fake).
An item is predicted fake when ``score > threshold`` (so at 0.5 a softmax argmax and a no-face video's
0.5 both count as real). Metrics that need both classes return ``nan`` when one is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _check(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


@dataclass
class Roc:
    """The ROC at every distinct score, highest threshold first (a point at (0, 0) is prepended)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # thresholds[i]: predict fake when score >= thresholds[i]; thresholds[0] = +inf
    tps: np.ndarray  # true positives counted at each point
    fps: np.ndarray  # false positives counted at each point


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> Roc:
    """ROC points: sort scores descending and count positives/negatives at or above each distinct score."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # index of the last item of each run of equal scores: one ROC point per distinct threshold
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1] if s.size else np.array([], dtype=np.int64)
    tps = np.cumsum(y)[last] if s.size else np.array([], dtype=np.int64)
    fps = (last + 1) - tps
    tps = np.r_[0, tps]
    fps = np.r_[0, fps]
    thresholds = np.r_[np.inf, s[last]] if s.size else np.array([np.inf])
    n_pos, n_neg = tps[-1], fps[-1]
    tpr = tps / n_pos if n_pos else np.full(tps.shape, np.nan)
    fpr = fps / n_neg if n_neg else np.full(fps.shape, np.nan)
    return Roc(fpr=fpr, tpr=tpr, thresholds=thresholds, tps=tps, fps=fps)


def auc_from_roc(roc: Roc) -> float:
    """Area under the ROC by the trapezoid rule (= Mann-Whitney U / (n_pos n_neg), ties counted half)."""
    if np.isnan(roc.fpr).any() or np.isnan(roc.tpr).any():
        return math.nan
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2.0))


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC: the probability that a random fake scores above a random real (ties count half)."""
    return auc_from_roc(roc_curve(labels, scores))


def average_precision_from_roc(roc: Roc) -> float:
    """AP = sum over thresholds of (recall_k - recall_{k-1}) * precision_k (step rule, no interpolation)."""
    n_pos = roc.tps[-1]
    if n_pos == 0 or roc.tps.size < 2:
        return math.nan
    tps, fps = roc.tps[1:], roc.fps[1:]
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision with fake as the positive class."""
    return average_precision_from_roc(roc_curve(labels, scores))


def eer_from_roc(roc: Roc) -> tuple[float, float]:
    """Equal error rate and its threshold: where the false-positive rate meets the false-negative rate.

    FNR - FPR decreases along the ROC; the EER is read where it crosses zero, linearly interpolated
    between the two ROC points around the crossing (both rates are linear there, so they meet at one value).
    The threshold returned is the score at the ROC point nearest the crossing.
    """
    if np.isnan(roc.fpr).any() or np.isnan(roc.tpr).any():
        return math.nan, math.nan
    fnr = 1.0 - roc.tpr
    d = fnr - roc.fpr
    i = int(np.argmax(d <= 0))  # d[-1] = -1 <= 0 always, so a crossing exists
    if d[i] == 0 or i == 0:
        return float(roc.fpr[i]), float(roc.thresholds[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    eer = roc.fpr[i - 1] + t * (roc.fpr[i] - roc.fpr[i - 1])
    j = i if t >= 0.5 else i - 1
    return float(eer), float(roc.thresholds[j])


def eer(labels: ArrayLike, scores: ArrayLike) -> float:
    """Equal error rate (see :func:`eer_from_roc`)."""
    return eer_from_roc(roc_curve(labels, scores))[0]


def accuracy(labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5) -> float:
    """Fraction correct when an item is called fake iff ``score > threshold``."""
    y, s = _check(labels, scores)
    if y.size == 0:
        return math.nan
    return float(np.mean((s > threshold).astype(np.int64) == y))


def choose_threshold(labels: ArrayLike, scores: ArrayLike, rule: str = "accuracy") -> float:
    """A decision threshold chosen on a *validation* set (never on the test set).

    ``rule="accuracy"``: the threshold maximizing accuracy; candidates are midpoints between consecutive
    distinct scores (plus one below the lowest and one above the highest); ties go to the candidate
    nearest 0.5. ``rule="eer"``: the EER threshold.
    """
    y, s = _check(labels, scores)
    if y.size == 0:
        raise ValueError("cannot choose a threshold on an empty set")
    if rule == "eer":
        return eer_from_roc(roc_curve(y, s))[1]
    if rule != "accuracy":
        raise ValueError(f"unknown threshold rule {rule!r} (accuracy or eer)")
    u = np.unique(s)
    cands = np.r_[u[0] - 1e-6, (u[1:] + u[:-1]) / 2.0, u[-1] + 1e-6]
    # correct(t) = #fakes with s > t + #reals with s <= t, for every candidate at once
    fake_sorted = np.sort(s[y == 1])
    real_sorted = np.sort(s[y == 0])
    correct = (fake_sorted.size - np.searchsorted(fake_sorted, cands, side="right")) + np.searchsorted(
        real_sorted, cands, side="right")
    best = np.flatnonzero(correct == correct.max())
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


# --- everything at once, with bootstrap confidence intervals ----------------------------------------------

POINT_METRICS = ("auc", "ap", "eer", "acc@0.5", "acc@thr")


def _point(y: np.ndarray, s: np.ndarray, threshold: float | None) -> dict[str, float]:
    roc = roc_curve(y, s)
    out = {
        "auc": auc_from_roc(roc),
        "ap": average_precision_from_roc(roc),
        "eer": eer_from_roc(roc)[0],
        "acc@0.5": accuracy(y, s, 0.5),
    }
    if threshold is not None:
        out["acc@thr"] = accuracy(y, s, threshold)
    return out


def _strata(y: np.ndarray, groups: np.ndarray | None) -> list[list[np.ndarray]]:
    """Per class, the resampling units: single items, or (with ``groups``) the items of each group."""
    strata = []
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        if idx.size == 0:
            continue
        if groups is None:
            strata.append([idx])  # one array of items: resample items
            continue
        _, inv = np.unique(groups[idx], return_inverse=True)
        order = np.argsort(inv, kind="mergesort")
        bounds = np.flatnonzero(np.diff(inv[order])) + 1
        strata.append(np.split(idx[order], bounds))
    return strata


def _resample_indices(strata: list[list[np.ndarray]], grouped: bool, rng: np.random.Generator) -> np.ndarray:
    """One stratified bootstrap draw: reals and fakes resampled separately (so both classes stay present).

    With groups (e.g. the video of each frame) whole groups are resampled -- a cluster bootstrap, since
    frames of one video are not independent samples.
    """
    parts = []
    for units in strata:
        if not grouped:
            parts.append(units[0][rng.integers(0, units[0].size, size=units[0].size)])
        else:  # same draw as above, over groups: k identical frames per video give the video-level CI
            pick = rng.integers(0, len(units), size=len(units))
            parts.append(np.concatenate([units[k] for k in pick]))
    return np.concatenate(parts) if parts else np.array([], dtype=np.int64)


def bootstrap_ci(labels: ArrayLike, scores: ArrayLike, statistic: Callable[[np.ndarray, np.ndarray], dict[str, float]],
                 n_boot: int = 1000, confidence: float = 0.95, seed: int | np.random.Generator = 0,
                 groups: Sequence | np.ndarray | None = None) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every value ``statistic(y, s)`` returns."""
    y, s = _check(labels, scores)
    g = None if groups is None else np.asarray(groups)
    if g is not None and g.shape[0] != y.shape[0]:
        raise ValueError("groups must have one entry per item")
    strata = _strata(y, g)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(int(n_boot)):
        idx = _resample_indices(strata, g is not None, rng)
        for k, v in statistic(y[idx], s[idx]).items():
            draws.setdefault(k, []).append(v)
    lo_q, hi_q = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100
    out = {}
    for k, vals in draws.items():
        arr = np.asarray(vals, dtype=np.float64)
        arr = arr[~np.isnan(arr)]
        out[k] = (float(np.percentile(arr, lo_q)), float(np.percentile(arr, hi_q))) if arr.size else (math.nan, math.nan)
    return out


def compute_metrics(labels: ArrayLike, scores: ArrayLike, threshold: float | None = None, n_boot: int = 1000,
                    confidence: float = 0.95, seed: int = 0, groups: Sequence | np.ndarray | None = None) -> dict:
    """AUC, AP, EER, accuracy at 0.5 (and at ``threshold`` when given), each with a bootstrap CI.

    ``threshold`` must come from a validation set (``choose_threshold``) or a checkpoint's metadata.
    Returns a JSON-able dict: counts, point values, ``ci`` (metric -> [lo, hi]), ``eer_threshold``.
    """
    y, s = _check(labels, scores)
    point = _point(y, s, threshold)
    out: dict = {"n": int(y.size), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}
    out.update(point)
    out["eer_threshold"] = eer_from_roc(roc_curve(y, s))[1] if y.size else math.nan
    out["threshold"] = threshold
    if n_boot and y.size and out["n_real"] and out["n_fake"]:
        ci = bootstrap_ci(y, s, lambda a, b: _point(a, b, threshold), n_boot=n_boot, confidence=confidence,
                          seed=seed, groups=groups)
        out["ci"] = {k: list(v) for k, v in ci.items()}
        out["ci_level"] = confidence
        out["n_boot"] = int(n_boot)
    return out
