"""Evaluation outputs: per-unit scores (CSV), metrics (JSON + markdown table), ROC curves (PNG).

Every file is written atomically (``unmask.io``), so an interrupted evaluation never leaves a half table.
Numbers in markdown tables are percentages with two decimals, as in the papers' tables; JSON keeps the
raw fractions (``NaN`` becomes ``null``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from unmask.evaluate.aggregate import UnitScore
from unmask.evaluate.metrics import compute_metrics, roc_curve
from unmask.io import atomic_write_bytes, atomic_write_json, atomic_write_text

UNIT_COLUMNS = ("item", "dataset", "method", "label", "frame_index", "score", "n_frames", "n_faces", "no_face")


def jsonable(obj):
    """NaN/inf -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def csv_text(rows: Iterable[Mapping], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def unit_rows(units: Iterable[UnitScore]) -> list[dict]:
    return [{"item": u.item, "dataset": u.dataset, "method": u.method, "label": u.label,
             "frame_index": u.frame_index, "score": f"{u.score:.6f}", "n_frames": u.n_frames,
             "n_faces": u.n_faces, "no_face": int(u.no_face)} for u in units]


def write_scores_csv(path: str | Path, units: Iterable[UnitScore]) -> Path:
    return atomic_write_text(path, csv_text(unit_rows(units), UNIT_COLUMNS))


def group_metrics(units: Sequence[UnitScore], threshold: float | None = None, n_boot: int = 1000,
                  seed: int = 0) -> dict:
    """Metrics over ``units`` (frame-level units are bootstrapped by video), plus the no-face count."""
    y = np.array([u.label for u in units], dtype=np.int64)
    s = np.array([u.score for u in units], dtype=np.float64)
    frame_level = any(u.frame_index is not None for u in units)
    groups = np.array([u.item for u in units]) if frame_level else None
    m = compute_metrics(y, s, threshold=threshold, n_boot=n_boot, seed=seed, groups=groups)
    m["no_face"] = int(sum(u.no_face for u in units))
    return m


def per_method(units: Sequence[UnitScore], threshold: float | None = None, n_boot: int = 1000,
               seed: int = 0) -> dict[str, dict]:
    """Metrics of every fake method against all reals (the FF++ per-manipulation protocol), plus "all"."""
    out = {"all": group_metrics(units, threshold, n_boot, seed)}
    reals = [u for u in units if u.label == 0]
    methods = sorted({u.method for u in units if u.label == 1})
    for m in methods:
        subset = reals + [u for u in units if u.label == 1 and u.method == m]
        out[m] = group_metrics(subset, threshold, n_boot, seed)
    return out


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100.0 * v:.2f}"


def _pct_ci(m: Mapping, key: str) -> str:
    v = m.get(key)
    ci = (m.get("ci") or {}).get(key)
    if ci is None or ci[0] is None or not all(isinstance(c, float) and math.isfinite(c) for c in ci):
        return _pct(v)
    return f"{_pct(v)} [{_pct(ci[0])}, {_pct(ci[1])}]"


def metrics_markdown(table: Mapping[str, Mapping], title: str | None = None, level: str | None = None) -> str:
    """One row per subset: counts, AUC / AP / EER / accuracy (%) with bootstrap CIs, no-face count."""
    has_thr = any(m.get("threshold") is not None for m in table.values())
    cols = ["subset", "real", "fake", "AUC", "AP", "EER", "Acc@0.5"] + (["Acc@thr"] if has_thr else []) + ["no face"]
    lines = []
    if title:
        lines += [f"### {title}", ""]
    if level:
        lines += [f"Level: {level}. Percentages; brackets: 95% bootstrap CI.", ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    for name, m in table.items():
        row = [name, str(m.get("n_real", 0)), str(m.get("n_fake", 0)), _pct_ci(m, "auc"), _pct_ci(m, "ap"),
               _pct_ci(m, "eer"), _pct_ci(m, "acc@0.5")]
        if has_thr:
            row.append(_pct_ci(m, "acc@thr"))
        row.append(str(m.get("no_face", 0)))
        lines.append("| " + " | ".join(row) + " |")
    if has_thr:
        thr = next(m.get("threshold") for m in table.values() if m.get("threshold") is not None)
        lines += ["", f"Acc@thr uses the validation-chosen threshold {thr:.4f} (an item is fake when score > threshold)."]
    return "\n".join(lines) + "\n"


def grid_markdown(rows: Mapping[str, Mapping[str, float | None]], columns: Sequence[str], corner: str = "",
                  avg: bool = True, avg_name: str = "Avg", avg_columns: Sequence[str] | None = None) -> str:
    """A paper-style grid (rows x columns, values in %), with an average over ``avg_columns`` (default all)."""
    cols = list(columns) + ([avg_name] if avg else [])
    over = list(columns) if avg_columns is None else list(avg_columns)
    lines = ["| " + " | ".join([corner] + cols) + " |", "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
    for name, vals in rows.items():
        cells = [_pct(vals.get(c)) for c in columns]
        if avg:
            present = [vals[c] for c in over if vals.get(c) is not None and math.isfinite(vals[c])]
            cells.append(_pct(float(np.mean(present))) if present else "-")
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines) + "\n"


def plot_roc(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: str | Path,
             title: str = "ROC") -> Path:
    """ROC curves (one per named (labels, scores) pair, AUC in the legend) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unmask.evaluate.metrics import auc_from_roc

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    try:
        drawn = 0
        for name, (y, s) in curves.items():
            roc = roc_curve(y, s)
            if np.isnan(roc.fpr).any() or np.isnan(roc.tpr).any():
                continue
            ax.plot(roc.fpr, roc.tpr, lw=1.6, label=f"{name} (AUC {100 * auc_from_roc(roc):.2f}%)")
            drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no ROC: the set holds one class only", ha="center", va="center")
        ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate (reals called fake)")
        ax.set_ylabel("true positive rate (fakes caught)")
        ax.set_title(title)
        if drawn:
            ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_evaluation(out_dir: str | Path, units: Sequence[UnitScore], table: Mapping[str, Mapping],
                     meta: Mapping, title: str = "Evaluation") -> dict[str, Path]:
    """scores.csv, metrics.json, metrics.md and roc.png (all + one curve per method) under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"scores": write_scores_csv(out / "scores.csv", units)}
    paths["metrics_json"] = atomic_write_json(out / "metrics.json", jsonable({"meta": dict(meta), "metrics": table}))
    md = metrics_markdown(table, title=title, level=meta.get("level"))
    notes = meta.get("notes") or []
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    paths["metrics_md"] = atomic_write_text(out / "metrics.md", md)
    reals = [u for u in units if u.label == 0]
    curves = {"all": ([u.label for u in units], [u.score for u in units])}
    for m in sorted({u.method for u in units if u.label == 1}):
        sub = reals + [u for u in units if u.label == 1 and u.method == m]
        curves[m] = ([u.label for u in sub], [u.score for u in sub])
    paths["roc"] = plot_roc(curves, out / "roc.png", title=title)
    return paths
