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

from unmask.evaluate.aggregate import ItemInfo, UnitScore
from unmask.evaluate.metrics import compute_metrics, roc_curve
from unmask.io import atomic_write_bytes, atomic_write_json, atomic_write_text

UNIT_COLUMNS = ("item", "dataset", "method", "label", "frame_index", "score", "n_frames", "n_faces", "no_face")
# scores.csv joins back to the user's data: ``path``, the source as written in their CSV (else relative to the dataset root;
# absolute for a prepared store of non-CSV data), the item's outcome and why, a decode warning (truncated file),
# the frames sampled / with a face; failed items are rows too (empty score). ``--group-by`` columns follow.
SCORE_COLUMNS = ("item", "path", "dataset", "method", "label", "status", "reason", "warning", "frame_index",
                 "score", "n_frames", "n_faces", "no_face", "frames_sampled", "frames_with_face")


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


def score_rows(units: Iterable[UnitScore], items: Sequence[ItemInfo] = (), failed: Sequence[ItemInfo] = (),
               columns: Sequence[str] = (), skipped: Sequence = ()) -> list[dict]:
    """Rows of scores.csv: one per unit (with its item's details), then one per failed item (no score), then one
    per entry the adapter skipped (status ``skipped``: a CSV line whose file is missing, an unsupported file)."""
    info = {i.key: i for i in list(items) + list(failed)}

    def details(key: str) -> dict:
        i = info.get(key)
        if i is None:
            return {}
        e = i.extra or {}
        d = {k: e.get(k) for k in ("status", "reason", "warning", "frames_sampled", "frames_with_face")}
        d["path"] = e.get("source")
        d.update({c: group_value(i, c) for c in columns})
        return d

    rows = [{**r, **details(r["item"])} for r in unit_rows(units)]
    for i in failed:
        rows.append({"item": i.key, "dataset": i.dataset, "method": i.method, "label": i.label, **details(i.key)})
    rows += [{"path": e.path, "status": "skipped", "reason": e.reason} for e in skipped]
    return rows


def write_scores_csv(path: str | Path, units: Iterable[UnitScore], items: Sequence[ItemInfo] = (),
                     failed: Sequence[ItemInfo] = (), columns: Sequence[str] = (), skipped: Sequence = ()) -> Path:
    extra_cols = [c for c in columns if c not in SCORE_COLUMNS]
    return atomic_write_text(path, csv_text(score_rows(units, items, failed, extra_cols, skipped),
                                            list(SCORE_COLUMNS) + extra_cols))


def group_value(info: ItemInfo, column: str):
    """The value of ``column`` for an item: a row field (method, split, compression, ...) or a CSV's own column."""
    if column in ("method", "dataset", "label"):
        return getattr(info, column)
    cols = (info.extra or {}).get("columns") or {}
    return cols.get(column)


def group_columns(items: Sequence[ItemInfo]) -> list[str]:
    """The columns ``--group-by`` accepts for these items."""
    names: list[str] = []
    for i in items:
        for k in ["dataset", "method", "label", *((i.extra or {}).get("columns") or {})]:
            if k not in names:
                names.append(k)
    return names


def per_group(units: Sequence[UnitScore], items: Sequence[ItemInfo], column: str, threshold: float | None = None,
              n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Metrics per value of ``column`` (``unmask evaluate --group-by``), two ways:

    - within the group (its reals against its fakes): AUC n/a, with the reason, when the group holds one class;
    - its fakes against all the reals of the set (``vs_all_reals``; the FF++ per-manipulation convention), so a
      column that only fakes carry (generator, manipulation) still gets an AUC per value.

    An item without the column is in the group "(empty)".
    """
    by_key = {i.key: i for i in items}

    def value(u: UnitScore) -> str:
        i = by_key.get(u.item)
        v = None if i is None else group_value(i, column)
        return "(empty)" if v is None or v == "" else str(v)

    groups: dict[str, list[UnitScore]] = {}
    for u in units:
        groups.setdefault(value(u), []).append(u)
    reals = [u for u in units if u.label == 0]
    out: dict[str, dict] = {}
    for name in sorted(groups):
        sub = groups[name]
        m = group_metrics(sub, threshold, n_boot, seed)
        if not m["n_real"] or not m["n_fake"]:
            m["auc_note"] = f"n/a: only {'fake' if m['n_real'] == 0 else 'real'} items in this group"
        fakes = [u for u in sub if u.label == 1]
        if fakes and reals:
            m["vs_all_reals"] = group_metrics(reals + fakes, threshold, n_boot, seed)
        out[name] = m
    return out


def group_markdown(table: Mapping[str, Mapping], column: str, level: str | None = None) -> str:
    """The per-group table: counts, AUC within the group [CI], AUC of its fakes against all reals [CI], note."""
    lines = [f"### By {column}", ""]
    if level:
        lines += [f"Level: {level}. AUC in %; brackets: 95% bootstrap CI. 'vs all reals': the group's fakes against "
                  f"every real of the set.", ""]
    lines.append(f"| {column} | real | fake | no face | AUC (within) | AUC (fakes vs all reals) | note |")
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for name, m in table.items():
        within = "n/a" if m.get("auc_note") else _pct_ci(m, "auc")
        vs = m.get("vs_all_reals")
        vs_s = _pct_ci(vs, "auc") + f" (n={vs.get('n_real', 0)}+{vs.get('n_fake', 0)})" if vs else "n/a"
        lines.append(f"| {name} | {m.get('n_real', 0)} | {m.get('n_fake', 0)} | {m.get('no_face', 0)} | {within} | "
                     f"{vs_s} | {m.get('auc_note', '')} |")
    return "\n".join(lines) + "\n"


PLACEHOLDER_METHOD = "fake"  # the generic adapter's method for fakes that name none


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
    """Metrics of every fake method against all reals (the FF++ per-manipulation protocol), plus "all".

    Fakes whose method is only the placeholder ``"fake"`` (a CSV without a method column, a plain ``fake/`` folder)
    get no row of their own when they are the only method: it would repeat "all" under a made-up name.
    """
    out = {"all": group_metrics(units, threshold, n_boot, seed)}
    reals = [u for u in units if u.label == 0]
    methods = sorted({u.method for u in units if u.label == 1})
    if methods == [PLACEHOLDER_METHOD]:
        methods = []
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
                     meta: Mapping, title: str = "Evaluation", items: Sequence[ItemInfo] = (),
                     failed: Sequence[ItemInfo] = (), groups: Mapping[str, Mapping[str, Mapping]] | None = None,
                     skipped: Sequence = ()) -> dict[str, Path]:
    """scores.csv, metrics.json, metrics.md and roc.png (all + one curve per method) under ``out_dir``.

    ``items`` / ``failed``: the items' details for scores.csv; ``groups``: column -> ``per_group`` table.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = dict(groups or {})
    paths = {"scores": write_scores_csv(out / "scores.csv", units, items, failed, columns=list(groups),
                                        skipped=skipped)}
    doc = {"meta": dict(meta), "metrics": table}
    if groups:
        doc["groups"] = groups
    paths["metrics_json"] = atomic_write_json(out / "metrics.json", jsonable(doc))
    md = metrics_markdown(table, title=title, level=meta.get("level"))
    for column, gtable in groups.items():
        md += "\n" + group_markdown(gtable, column, level=meta.get("level"))
    notes = meta.get("notes") or []
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    paths["metrics_md"] = atomic_write_text(out / "metrics.md", md)
    reals = [u for u in units if u.label == 0]
    curves = {"all": ([u.label for u in units], [u.score for u in units])}
    for m in [k for k in table if k != "all"]:
        sub = reals + [u for u in units if u.label == 1 and u.method == m]
        curves[m] = ([u.label for u in sub], [u.score for u in sub])
    paths["roc"] = plot_roc(curves, out / "roc.png", title=title)
    return paths
