"""Evaluation protocols: one config per paper table, one function per protocol kind.

A protocol is a YAML file under ``configs/protocols/`` (strict keys, ``base:`` inheritance) that names the
paper table it reproduces, the test sets (prepared stores, or raw data + adapter), the aggregation level
and the metrics of the table. Three kinds:

- ``cross_dataset``: one row per checkpoint (trained on FF++), one column per test set (CDF, DFDC, DFDCP,
  FFIW, WDF, DF-1.0, ... -- whichever are present), plus the average (paper 000 Table 8, 003 Table V,
  001 Table II);
- ``cross_manipulation``: one row per checkpoint (e.g. trained on one FF++ method), one column per FF++
  manipulation (reals vs that method), plus all of FF++ and the average (000 Table 9, 001 Table III);
- ``robustness``: one row per distortion of the raw test frames (000 Table 10), columns as cross_dataset.

Every (checkpoint, test set, distortion) cell is a full evaluation written under the output folder
(scores, metrics with bootstrap CIs, ROC) and reused on a re-run when nothing it depends on changed,
so an interrupted protocol resumes. Missing test sets are skipped and named in the table's notes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from unmask.config import find_named_yaml, load_config, to_dict, yaml_names
from unmask.errors import UnmaskError
from unmask.evaluate.aggregate import AggregationConfig, aggregate
from unmask.evaluate.distortions import TABLE10, DistortionSpec
from unmask.evaluate.report import grid_markdown, jsonable, per_method, write_evaluation
from unmask.evaluate.scoring import TEST_MARGIN, Scored
from unmask.io import atomic_write_json, atomic_write_text

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "configs" / "protocols"
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
SHORT_NAMES = {"Deepfakes": "DF", "Face2Face": "F2F", "FaceSwap": "FS", "NeuralTextures": "NT", "FaceShifter": "Fsh"}


@dataclass
class TestSet:
    """One evaluation set: a prepared store (default) or raw data read through a dataset adapter."""

    __test__ = False  # not a pytest test class, despite the name

    name: str = ""
    path: str = ""  # store folder, dataset root, labels.csv or real/fake folder; relative to data_root
    dataset: str | None = None  # adapter for raw data (e.g. "celebdf", "generic"); None = prepared store
    splits: list[str] | None = None
    methods: list[str] | None = None  # fake methods to keep (reals always kept)
    datasets: list[str] | None = None  # for a store holding several datasets
    options: dict[str, Any] = field(default_factory=dict)  # adapter options (e.g. compression: c23)


@dataclass
class EvalSettings:
    """How a set is scored and summarized (shared by ``unmask evaluate`` and every protocol)."""

    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    margin: float = TEST_MARGIN  # paper 000 sec. 4.1: fixed 12.5% test-time margin
    batch_size: int = 32
    n_boot: int = 1000  # bootstrap resamples for the confidence intervals (0 = none)
    confidence: float = 0.95
    seed: int = 0
    threshold: float | None = None  # validation-chosen decision threshold; None = the checkpoint's, if any
    face_detector: str = "dlib_hog"  # raw data only


@dataclass
class ProtocolConfig:
    name: str = ""
    kind: Literal["cross_dataset", "cross_manipulation", "robustness"] = "cross_dataset"
    paper_tables: list[str] = field(default_factory=list)  # e.g. ["000 Table 8"]: what this reproduces
    description: str = ""
    data_root: str = "prepared"  # relative test-set paths are resolved against this (and the cwd)
    eval: EvalSettings = field(default_factory=EvalSettings)
    metrics: list[str] = field(default_factory=lambda: ["auc"])  # table grids: auc, acc@0.5, acc@thr, ap, eer
    test_sets: list[TestSet] = field(default_factory=list)
    manipulations: list[str] = field(default_factory=lambda: list(FFPP_METHODS))  # cross_manipulation columns
    all_column: str = "FF++"  # cross_manipulation: the column over all manipulations ("" = none)
    distortions: list[DistortionSpec] = field(default_factory=lambda: [DistortionSpec(**asdict(d)) for d in TABLE10])
    average_excludes: list[str] = field(default_factory=list)  # columns left out of the average (e.g. FF++)
    average_name: str = "Avg"


def find_protocol(name_or_path: str) -> Path:
    """``cross_dataset`` -> configs/protocols/cross_dataset.yaml; a path is taken as it is."""
    return find_named_yaml(name_or_path, PROTOCOL_DIR, "protocol", UnmaskError)


def protocol_names() -> list[str]:
    return yaml_names(PROTOCOL_DIR)


def load_protocol(name_or_path: str, overrides: Sequence[str] = ()) -> ProtocolConfig:
    cfg = load_config(ProtocolConfig, find_protocol(name_or_path), list(overrides))
    if not cfg.name:
        cfg.name = Path(find_protocol(name_or_path)).stem
    for m in cfg.metrics:
        if m not in ("auc", "ap", "eer", "acc@0.5", "acc@thr"):
            raise UnmaskError(f"protocol {cfg.name}: unknown metric {m!r} (auc, ap, eer, acc@0.5, acc@thr)")
    return cfg


# --- one set ----------------------------------------------------------------------------------------------


def resolve_set_path(ts: TestSet, data_root: str | os.PathLike | None) -> Path | None:
    """The set's path: absolute, or relative to ``data_root``, or to the cwd; None when nothing is there."""
    p = Path(ts.path).expanduser()
    cands = [p] if p.is_absolute() else ([Path(data_root) / p] if data_root else []) + [p]
    for c in cands:
        if c.exists():
            return c.resolve()
    return None


def is_store(path: Path) -> bool:
    from unmask.data.store import STORE_META

    return path.is_dir() and (path / STORE_META).is_file()


@dataclass
class SetResult:
    name: str
    table: dict[str, dict]  # "all" + one entry per fake method -> metrics
    units: list
    failed: list[tuple[str, str]]
    out_dir: Path | None
    reused: bool = False
    seconds: float = 0.0
    groups: dict[str, dict] = field(default_factory=dict)  # --group-by column -> value -> metrics


def score_set(detector, ts: TestSet, path: Path, settings: EvalSettings, distortion: DistortionSpec | None = None,
              progress: bool = False, meta: dict | None = None) -> Scored:
    """Per-face scores of a test set (prepared store or raw data); calibrated when ``meta`` has a calibration
    (``FaceScore.score_raw`` keeps the softmax)."""
    from unmask.evaluate.calibration import checkpoint_calibration
    from unmask.evaluate.scoring import MediaScorer, score_rows, score_store

    cal = checkpoint_calibration(meta)

    desc = ts.name + (f" {distortion.name}" if distortion and distortion.kind != "raw" else "")
    if is_store(path) and ts.dataset is None:
        from unmask.data.store import PreparedStore

        return score_store(detector, PreparedStore(path), splits=ts.splits, methods=ts.methods, datasets=ts.datasets,
                           num_frames=settings.aggregation.num_frames, margin=settings.margin,
                           batch_size=settings.batch_size,
                           distortion=None if distortion is None else (distortion.kind, dict(distortion.params)),
                           progress=progress, desc=desc, temperature=None if cal is None else cal.temperature)
    from unmask.data.adapters import list_items_report
    from unmask.data.faces import build_face_detector
    from unmask.evaluate.distortions import build_distortion

    adapter = ts.dataset or ("generic" if path.suffix.lower() == ".csv" or path.is_dir() else None)
    if adapter is None:
        raise UnmaskError(f"{path}: not a prepared store; name its dataset adapter (e.g. --dataset celebdf)")
    opts = dict(ts.options)
    if ts.splits:
        opts["splits"] = list(ts.splits)
    listing = list_items_report(adapter, path, **opts)
    rows = listing.rows
    if ts.methods:
        keep = {m.lower() for m in ts.methods}
        rows = [r for r in rows if r.label == 0 or r.method.lower() in keep]
    dist = None if distortion is None or distortion.kind == "raw" else build_distortion(distortion.kind, **distortion.params)
    scorer = MediaScorer(detector, build_face_detector(settings.face_detector), meta=meta, margin=settings.margin,
                         num_frames=settings.aggregation.num_frames, batch_size=settings.batch_size,
                         min_face_fraction=settings.aggregation.min_face_fraction, distortion=dist)
    scored = score_rows(scorer, rows, root=path, progress=progress, desc=desc)
    base = path.parent if path.is_file() else path
    scored.skipped = [type(e)(os.path.relpath(e.path, base) if e.path.startswith(str(base) + os.sep) else e.path,
                              e.reason) for e in listing.skipped]
    return scored


def _cell_key(meta: dict, ts: TestSet, path: Path, settings: EvalSettings, distortion: DistortionSpec | None) -> str:
    """What a cached cell depends on: the weights file, the data, the settings, the distortion."""
    ck = meta.get("path")
    stamp = None
    if ck and Path(ck).is_file():
        st = Path(ck).stat()
        stamp = [st.st_size, int(st.st_mtime)]
    data_stamp = None
    if is_store(path):
        items = path / "items"
        data_stamp = int(items.stat().st_mtime) if items.exists() else None
    cal = meta.get("calibration") or {}
    blob = json.dumps(jsonable({"ck": ck, "stamp": stamp, "untrained": meta.get("untrained"), "set": asdict(ts),
                                "temperature": cal.get("temperature"),
                                "path": str(path), "data": data_stamp, "settings": to_dict(settings),
                                "distortion": None if distortion is None else asdict(distortion)}), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_set(detector, meta: dict, ts: TestSet, settings: EvalSettings, *, data_root: str | None = None,
                 out_dir: str | Path | None = None, distortion: DistortionSpec | None = None,
                 progress: bool = False, reuse: bool = True, title: str | None = None,
                 group_by: Sequence[str] = ()) -> SetResult:
    """Score one set, aggregate, compute metrics (overall and per method), write the report to ``out_dir``.

    ``group_by``: columns (a row field such as split or compression, or any column of a CSV dataset) to break the
    metrics down by (``report.per_group``); an unknown column is an error naming the known ones.
    """
    from unmask.evaluate.calibration import checkpoint_calibration
    from unmask.evaluate.report import group_columns, per_group
    from unmask.evaluate.scoring import checkpoint_threshold

    path = resolve_set_path(ts, data_root)
    if path is None:
        raise UnmaskError(f"test set {ts.name or ts.path}: {ts.path} not found")
    cal = checkpoint_calibration(meta)
    # a calibrated checkpoint reports calibrated probabilities: its threshold is the one chosen on calibrated scores
    default_thr = (cal.threshold if cal is not None else checkpoint_threshold(meta))
    threshold = settings.threshold if settings.threshold is not None else default_thr
    key = _cell_key(meta, ts, path, settings, distortion)
    out = Path(out_dir) if out_dir else None
    if out is not None and reuse and (out / "metrics.json").is_file():
        try:
            prev = json.loads((out / "metrics.json").read_text())
            if prev.get("meta", {}).get("key") == key:
                return SetResult(ts.name, prev["metrics"], [], [tuple(x) for x in prev["meta"].get("failed", [])],
                                 out, reused=True)
        except (OSError, ValueError, KeyError):
            pass
    t0 = time.perf_counter()
    scored = score_set(detector, ts, path, settings, distortion, progress, meta=meta)
    units = aggregate(scored.faces, scored.items, settings.aggregation)
    if not units:
        if scored.failed:
            k, r = scored.failed[0]
            raise UnmaskError(f"test set {ts.name or ts.path}: nothing to evaluate: all {len(scored.failed)} items "
                              f"failed (first: {k}: {r})")
        raise UnmaskError(f"test set {ts.name or ts.path}: nothing to evaluate (no items match the filters)")
    table = per_method(units, threshold, settings.n_boot, settings.seed)
    known = group_columns(scored.items + scored.failed_items)
    for col in group_by:
        if col not in known:
            raise UnmaskError(f"--group-by {col!r}: not a column of this set; choose from {', '.join(known)}")
    groups = {col: per_group(units, scored.items, col, threshold, settings.n_boot, settings.seed) for col in group_by}
    agg = settings.aggregation
    no_face = sum(1 for i in scored.items if i.key not in {f.item for f in scored.faces})
    notes = [
        f"{len(scored.items)} items scored; {no_face} with no face "
        + (f"(scored {agg.no_face_score} at video level)" if agg.level == "video" else "(left out at frame level)"),
        f"aggregation: frame = max over faces >= {agg.min_face_fraction:g} x the largest; "
        f"video = mean over <= {agg.num_frames} evenly spaced frames with a face",
        f"crop: detector box + {settings.margin:.1%} margin per side, resized to {getattr(detector, 'input_size', '?')} px",
    ]
    if scored.failed:
        notes.append(f"{len(scored.failed)} items failed and are not in the metrics (listed in scores.csv): "
                     + "; ".join(f"{k}: {r}" for k, r in scored.failed[:5]) + (" ..." if len(scored.failed) > 5 else ""))
    if distortion is not None and distortion.kind != "raw":
        notes.append(f"distortion {distortion.name} applied to "
                     + ("the stored large-margin crop at frame resolution (closest to the raw frame a store allows)"
                        if is_store(path) and ts.dataset is None else "the raw frames before face detection"))
    if threshold is not None:
        from unmask.evaluate.scoring import threshold_source

        notes.append(f"decision threshold {threshold:.4f}: " + ("given with --threshold" if settings.threshold is not None
                                                               else threshold_source(meta)))
    labels = {u.label for u in units}
    suggestion = None
    if labels == {0, 1}:
        from unmask.evaluate.metrics import choose_threshold

        suggestion = choose_threshold([u.label for u in units], [u.score for u in units])
        notes.append(f"accuracy-maximizing threshold on this set: {suggestion:.4f} (if this is a validation set, "
                     f"pass it as --threshold when evaluating test sets)")
    if scored.skipped:
        notes.append(f"{len(scored.skipped)} entries of the set are not items (rows with status skipped in scores.csv): "
                     + "; ".join(f"{e.path}: {e.reason}" for e in scored.skipped[:3])
                     + (" ..." if len(scored.skipped) > 3 else ""))
    warned = [i for i in scored.items if (i.extra or {}).get("warning")]
    if warned:
        notes.append(f"{len(warned)} items only partly decodable, scored on the frames that decode (warning column "
                     f"of scores.csv): " + "; ".join(f"{i.extra.get('source')}: {i.extra['warning']}" for i in warned[:3])
                     + (" ..." if len(warned) > 3 else ""))
    calibration = set_calibration(scored, units, cal, settings.aggregation)
    if calibration.get("ece_calibrated") is not None:
        notes.append(f"calibrated probabilities (temperature {cal.temperature:.4g}, fitted on {cal.fitted_on}); "
                     f"ECE on this set ({agg.level} level, binary, {cal.n_bins} bins): raw "
                     f"{calibration['ece_raw']:.4f} -> calibrated {calibration['ece_calibrated']:.4f}")
    elif calibration.get("ece_raw") is not None:
        notes.append(f"not calibrated (raw softmax; `unmask calibrate` fits a temperature): ECE on this set "
                     f"({agg.level} level, binary, 15 bins) {calibration['ece_raw']:.4f}")
    if meta.get("untrained"):
        notes.append(meta.get("note", "untrained model") + (f" (seed {meta['seed']})" if "seed" in meta else ""))
    run_meta = {
        "key": key, "set": ts.name, "path": str(path), "splits": ts.splits, "methods": ts.methods,
        "level": agg.level, "checkpoint": meta.get("path"), "backbone": meta.get("backbone"),
        "untrained": bool(meta.get("untrained")), "threshold": threshold,
        "distortion": None if distortion is None else asdict(distortion), "settings": to_dict(settings),
        "failed": [list(x) for x in scored.failed], "no_face_items": no_face, "threshold_on_this_set": suggestion,
        "calibration": calibration, "notes": notes,
    }
    if out is not None:
        write_evaluation(out, units, table, run_meta, title=title or ts.name or "evaluation", items=scored.items,
                         failed=scored.failed_items, groups=groups, skipped=scored.skipped)
    return SetResult(ts.name, table, units, scored.failed, out, seconds=time.perf_counter() - t0, groups=groups)


def set_calibration(scored: Scored, units: list, cal, agg: AggregationConfig) -> dict:
    """ECE of this set's units (its own labels) before and after the checkpoint's calibration.

    Raw units are the same aggregation (frame = max, video = mean) of the faces' uncalibrated ``score_raw``.
    """
    from dataclasses import replace

    from unmask.evaluate.calibration import DEFAULT_BINS, expected_calibration_error

    out: dict = {"temperature": None if cal is None else cal.temperature,
                 "fitted_on": None if cal is None else cal.fitted_on, "level": agg.level}
    if not units:
        return out
    bins = DEFAULT_BINS if cal is None else cal.n_bins
    labels = [u.label for u in units]
    ece = expected_calibration_error([u.score for u in units], labels, bins)
    if cal is None:
        return {**out, "ece_raw": ece, "ece_calibrated": None}
    raw_faces = [replace(f, score=f.score_raw) if f.score_raw is not None else f for f in scored.faces]
    raw = {(u.item, u.frame_index): u.score for u in aggregate(raw_faces, scored.items, agg)}
    ece_raw = expected_calibration_error([raw.get((u.item, u.frame_index), u.score) for u in units], labels, bins)
    return {**out, "ece_raw": ece_raw, "ece_calibrated": ece}


# --- protocols ----------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    """A folder name for a row/set label: ``FF++`` stays, ``GaussianBlur(k=5)`` -> ``GaussianBlur_k=5``."""
    return "".join(c if c.isalnum() or c in "-_.+=" else "_" for c in text).strip("_.") or "x"


@dataclass
class ProtocolResult:
    grids: dict[str, dict[str, dict[str, float | None]]]  # metric -> row -> column -> value
    columns: list[str]
    markdown: str
    skipped: list[str]
    out_dir: Path


def _value(table: dict, column_key: str, metric: str) -> float | None:
    m = table.get(column_key)
    if m is None:
        return None
    v = m.get(metric)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def run_protocol(cfg: ProtocolConfig, checkpoints: dict[str, Any], out_dir: str | Path, *,
                 data_root: str | None = None, progress: bool = True, reuse: bool = True,
                 log=print) -> ProtocolResult:
    """Run ``cfg`` for each ``row label -> (detector, meta)`` and write table.md / table.json to ``out_dir``.

    cross_dataset / robustness rows are checkpoints (robustness: checkpoint x distortion); columns are
    the test sets that are present. cross_manipulation columns are the manipulations of its (first) set.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = data_root if data_root is not None else cfg.data_root
    present, skipped = [], []
    for ts in cfg.test_sets:
        (present if resolve_set_path(ts, root) is not None else skipped).append(ts)
    if not present:
        raise UnmaskError(f"protocol {cfg.name}: none of its test sets is present "
                          f"({', '.join(f'{t.name}={t.path}' for t in cfg.test_sets)}; data_root={root})")
    grids: dict[str, dict[str, dict[str, float | None]]] = {m: {} for m in cfg.metrics}
    cells = []
    if cfg.kind == "cross_manipulation":
        ts = present[0]
        columns = [SHORT_NAMES.get(m, m) for m in cfg.manipulations] + ([cfg.all_column] if cfg.all_column else [])
        for label, (det, meta) in checkpoints.items():
            res = evaluate_set(det, meta, ts, cfg.eval, data_root=root, out_dir=out / _slug(label) / _slug(ts.name),
                               progress=progress, reuse=reuse, title=f"{label} on {ts.name}")
            cells.append((label, ts.name, None, res))
            for metric in cfg.metrics:
                row = {SHORT_NAMES.get(m, m): _value(res.table, m, metric) for m in cfg.manipulations}
                if cfg.all_column:
                    row[cfg.all_column] = _value(res.table, "all", metric)
                grids[metric][label] = row
            log(f"{label}: {', '.join(f'{k} {100 * v:.2f}' for k, v in grids[cfg.metrics[0]][label].items() if v is not None)}")
    else:
        columns = [ts.name for ts in present]
        dists: list[DistortionSpec | None] = list(cfg.distortions) if cfg.kind == "robustness" else [None]
        for label, (det, meta) in checkpoints.items():
            for d in dists:
                row_name = label if d is None else (d.name if len(checkpoints) == 1 else f"{label} {d.name}")
                for metric in cfg.metrics:
                    grids[metric].setdefault(row_name, {})
                for ts in present:
                    sub = out / _slug(label) / _slug(ts.name) if d is None else out / _slug(label) / _slug(d.name) / _slug(ts.name)
                    res = evaluate_set(det, meta, ts, cfg.eval, data_root=root, out_dir=sub, distortion=d,
                                       progress=progress, reuse=reuse, title=f"{row_name} on {ts.name}")
                    cells.append((row_name, ts.name, d, res))
                    for metric in cfg.metrics:
                        grids[metric][row_name][ts.name] = _value(res.table, "all", metric)
                    v = grids[cfg.metrics[0]][row_name][ts.name]
                    log(f"{row_name} / {ts.name}: {cfg.metrics[0]} "
                        f"{'-' if v is None else f'{100 * v:.2f}'}{' (cached)' if res.reused else ''}")
    md = _protocol_markdown(cfg, grids, columns, skipped, cells, checkpoints, out)
    atomic_write_text(out / "table.md", md)
    atomic_write_json(out / "table.json", jsonable({
        "protocol": cfg.name, "kind": cfg.kind, "paper_tables": cfg.paper_tables, "columns": columns,
        "grids": grids, "skipped": [asdict(s) for s in skipped], "config": to_dict(cfg),
        "checkpoints": {k: v[1].get("path") for k, v in checkpoints.items()},
    }))
    return ProtocolResult(grids, columns, md, [s.name for s in skipped], out)


METRIC_TITLES = {"auc": "AUC (%)", "ap": "AP (%)", "eer": "EER (%)", "acc@0.5": "ACC at 0.5 (%)",
                 "acc@thr": "ACC at the validation threshold (%)"}


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _protocol_markdown(cfg: ProtocolConfig, grids, columns, skipped, cells, checkpoints, out_dir: Path) -> str:
    lvl = cfg.eval.aggregation.level
    kind = cfg.kind.replace("_", "-")
    lines = [f"## {cfg.name}" + ("" if cfg.name.replace("_", "-") == kind else f": {kind}"), ""]
    if cfg.paper_tables:
        lines.append(f"Layout of: {'; '.join(cfg.paper_tables)}.")
    if cfg.description:
        lines.append(cfg.description.strip())
    lines += ["", f"Level: {lvl} ({'mean over <= %d frames, max over faces >= half the largest; no face = %g' % (cfg.eval.aggregation.num_frames, cfg.eval.aggregation.no_face_score) if lvl == 'video' else 'one score per frame with a face'}). "
              f"Margin {cfg.eval.margin:.1%}.", ""]
    avg_cols = [c for c in columns if c not in cfg.average_excludes]
    for metric in cfg.metrics:
        lines.append(f"### {METRIC_TITLES.get(metric, metric)}")
        lines.append("")
        corner = "Train" if cfg.kind == "cross_manipulation" else ("Operation" if cfg.kind == "robustness" else "Model")
        avg_name = cfg.average_name + (f" (w/o {', '.join(cfg.average_excludes)})" if cfg.average_excludes else "")
        grid = grid_markdown(grids[metric], columns, corner=corner, avg=len(avg_cols) > 1, avg_name=avg_name,
                             avg_columns=avg_cols)
        lines += [grid, ""]
    lines.append("### Cells (95% bootstrap CI of the AUC; counts)")
    lines.append("")
    lines.append("| row | set | real | fake | no face | failed | AUC [CI] | report |")
    lines.append("|---|---|---:|---:|---:|---:|---|---|")
    for row, set_name, _, res in cells:
        m = res.table.get("all", {})
        ci = (m.get("ci") or {}).get("auc")
        auc = m.get("auc")
        auc_s = "-" if auc is None else f"{100 * auc:.2f}" + (f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci and ci[0] is not None else "")
        lines.append(f"| {row} | {set_name} | {m.get('n_real', 0)} | {m.get('n_fake', 0)} | {m.get('no_face', 0)} | "
                     f"{len(res.failed)} | {auc_s} | {_rel(res.out_dir, out_dir)} |")
    lines.append("")
    if skipped:
        lines.append("Not present (skipped): " + ", ".join(f"{s.name} ({s.path})" for s in skipped) + ".")
    for label, (_, meta) in checkpoints.items():
        lines.append(f"- {label}: {meta.get('path') or 'untrained'} ({meta.get('backbone')})"
                     + (" -- UNTRAINED: scores are meaningless" if meta.get("untrained") else ""))
    return "\n".join(lines) + "\n"
