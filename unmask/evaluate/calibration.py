"""Calibrated fake probabilities: temperature scaling and the expected calibration error.

Why: a detector trained on pseudo-fakes separates its validation reals from their pseudo-fakes, but its softmax
is not a probability anyone can read (the tiny runs score every real above 0.5). Temperature scaling (Guo et
al., "On Calibration of Modern Neural Networks", ICML 2017, sec. 4.2) divides the logits by one scalar T > 0
fitted on the validation set by minimizing the negative log-likelihood; it is monotone, so AUC and the ranking
of faces do not change, only the probabilities.

ECE here is the *binary* expected calibration error on the fake probability (not Guo's confidence of the
argmax class): equal-width bins of ``p_fake`` over [0, 1], bin b = [b/M, (b+1)/M) with the last bin closed,
``ECE = sum_b |B_b| / N * |mean(y in B_b) - mean(p in B_b)|`` (Naeini et al. 2015; Guo et al. eq. 3 with the
fake probability in place of the confidence). M = 15 as Guo et al.

A checkpoint stores the fit as plain data under ``"calibration"`` (:meth:`Calibration.to_meta`), so it loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from unmask.errors import UnmaskError

CALIBRATION_KEY = "calibration"  # the checkpoint section (and meta key after load_detector)
DEFAULT_BINS = 15  # Guo et al. 2017 use M = 15
LOG_T_BOUNDS = (-6.0, 6.0)  # T in [0.0025, 403]: far beyond any fit seen; a fit at the bound says so


def _check_logits(logits: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 2:
        raise UnmaskError(f"calibration needs (N, 2) logits, got shape {tuple(z.shape)}")
    if not np.all(np.isfinite(z)):
        raise UnmaskError("calibration: logits contain NaN or inf")
    if labels is None:
        return z, None
    y = np.asarray(labels).astype(np.int64).ravel()
    if y.shape[0] != z.shape[0]:
        raise UnmaskError(f"calibration: {z.shape[0]} logits but {y.shape[0]} labels")
    if not np.isin(y, (0, 1)).all():
        raise UnmaskError("calibration: labels must be 0 (real) or 1 (fake)")
    return z, y


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)`` (Guo et al. sec. 4.2's objective)."""
    from scipy.special import logsumexp

    z, y = _check_logits(logits, labels)
    s = z / float(temperature)
    return float(np.mean(logsumexp(s, axis=1) - s[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimizing the NLL of ``softmax(logits / T)`` on (validation) ``labels``.

    A bounded 1-D minimization over log T (scipy's Brent-bounded method, x tolerance 1e-6 on log T): the NLL
    of temperature scaling is smooth and unimodal in log T for two classes. Needs both classes.
    """
    from scipy.optimize import minimize_scalar

    z, y = _check_logits(logits, labels)
    if len(y) < 2 or len(set(y.tolist())) < 2:
        raise UnmaskError(f"temperature scaling needs real and fake examples (got {int((y == 0).sum())} real, "
                          f"{int((y == 1).sum())} fake)")
    res = minimize_scalar(lambda lt: nll(z, y, float(np.exp(lt))), bounds=LOG_T_BOUNDS, method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def calibrated_probability(logits: np.ndarray, temperature: float | None = 1.0) -> np.ndarray:
    """Fake probability ``softmax(logits / T)[:, 1]`` (T = None or 1: the raw probability)."""
    from scipy.special import softmax

    z, _ = _check_logits(logits)
    t = 1.0 if temperature is None else float(temperature)
    if not t > 0:
        raise UnmaskError(f"temperature must be > 0, got {t}")
    return softmax(z / t, axis=1)[:, 1]


def expected_calibration_error(probs_fake: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """Binary ECE of the fake probability with ``n_bins`` equal-width bins (see the module docstring)."""
    p = np.asarray(probs_fake, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise UnmaskError(f"ECE: {p.size} probabilities but {y.size} labels")
    if p.size == 0:
        raise UnmaskError("ECE of an empty set")
    if n_bins < 1:
        raise UnmaskError("ECE needs at least one bin")
    b = np.minimum((np.clip(p, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    gap = np.abs(np.bincount(b, weights=y, minlength=n_bins) - np.bincount(b, weights=p, minlength=n_bins))
    return float(gap.sum() / p.size)  # sum_b n_b/N * |mean y - mean p| = sum_b |sum y - sum p| / N


@dataclass
class Calibration:
    """A temperature fit and what it did on the set it was fitted on.

    ``ece_before`` / ``ece_after``: face-level binary ECE of the raw / calibrated fake probability on that set.
    ``fitted_on``: which set, in words (e.g. ``val split of STORE: 40 real faces + their pseudo:sbi fakes``).
    ``threshold``: the validation-chosen decision threshold on the *calibrated* video scores (same rule as the
    checkpoint's ``val.threshold``, max accuracy; None when it was not chosen), what a verdict uses.
    """

    temperature: float
    ece_before: float
    ece_after: float
    fitted_on: str
    n: int
    nll_before: float | None = None
    nll_after: float | None = None
    threshold: float | None = None
    n_bins: int = DEFAULT_BINS

    def to_meta(self) -> dict[str, Any]:
        """Plain data for the checkpoint's ``"calibration"`` section."""
        return {k: (None if v is None else (v if isinstance(v, str) else (int(v) if k in ("n", "n_bins")
                                                                           else float(v))))
                for k, v in asdict(self).items()}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Calibration":
        if not isinstance(meta, dict):
            raise UnmaskError("checkpoint calibration section is not a mapping")
        names = {f.name for f in fields(cls)}
        try:
            cal = cls(**{k: v for k, v in meta.items() if k in names})
        except TypeError as exc:
            raise UnmaskError(f"checkpoint calibration section is incomplete: {exc}") from None
        if not (isinstance(cal.temperature, (int, float)) and cal.temperature > 0):
            raise UnmaskError(f"checkpoint calibration has an invalid temperature {cal.temperature!r}")
        return cal

    def summary(self) -> str:
        return (f"temperature {self.temperature:.4g}, ECE {self.ece_before:.4f} -> {self.ece_after:.4f} "
                f"({self.n} faces; {self.fitted_on})")


def fit_calibration(logits: np.ndarray, labels: np.ndarray, fitted_on: str,
                    n_bins: int = DEFAULT_BINS) -> Calibration:
    """Fit T on ``logits`` / ``labels`` and measure ECE and NLL before and after on the same set."""
    z, y = _check_logits(logits, labels)
    t = fit_temperature(z, y)
    return Calibration(temperature=t,
                       ece_before=expected_calibration_error(calibrated_probability(z, 1.0), y, n_bins),
                       ece_after=expected_calibration_error(calibrated_probability(z, t), y, n_bins),
                       fitted_on=str(fitted_on), n=int(len(y)), nll_before=nll(z, y, 1.0), nll_after=nll(z, y, t),
                       n_bins=int(n_bins))


def checkpoint_calibration(meta: dict[str, Any] | None) -> Calibration | None:
    """The calibration a checkpoint (or ``load_detector``'s meta) records, or None when it has none."""
    section = (meta or {}).get(CALIBRATION_KEY)
    return None if section is None else Calibration.from_meta(section)
