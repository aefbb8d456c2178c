"""Run a study's plan on this machine and build its side-by-side table (ours | paper | difference | CI).

``run_study`` trains the rows that are not done (``unmask train`` argv of the plan, in this process; a finished
row is skipped, a half-finished one resumes from its last.pt), evaluates every row with the study's protocols
(``unmask protocol`` argv; cells are cached, so a re-run only scores what changed), then ``collect_report``
reads the protocols' ``table.json`` and cell reports and writes the study report: table.md, table.csv,
table.json (with every row's provenance and the protocols' exact settings) and table.png. A row that fails
(training or evaluation) is recorded with its one-line reason and the other rows go on.
``collect_report`` alone builds the table from finished runs (the slurm ``--collect`` step).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from unmask.errors import UnmaskError
from unmask.io import atomic_write_json, atomic_write_text
from unmask.reproduce.plan import EVAL_LABEL, RowRun, remaining_images
from unmask.reproduce.study import Study

REPORT_FILES = ("table.md", "table.csv", "table.json", "table.png")


def parse_data(items: list[str]) -> dict[str, str]:
    """``["train=prepared/ffpp_c23", "CDF=prepared/celebdf_test"]`` -> mapping (a repeated name is an error)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UnmaskError(f"--data {item!r} must look like NAME=STORE (e.g. train=prepared/ffpp_c23)")
        if name.strip() in out:
            raise UnmaskError(f"--data {name.strip()} given twice")
        out[name.strip()] = path.strip()
    return out


# --- dry run --------------------------------------------------------------------------------------------------


def dry_run_text(study: Study, plan: list[RowRun], runs_dir: Path, results: list[dict] | None = None) -> str:
    """The plan as a reader checks it before spending GPU days: runs, epochs, images, status, time estimates."""
    import platform

    from unmask.reproduce.estimate import estimate, fmt_duration, load_results

    results = load_results() if results is None else results
    host = platform.node()
    gpu_names = sorted({(r.get("machine") or {}).get("gpu") or "a GPU" for r in results
                        if (r.get("machine") or {}).get("device") == "cuda"})
    lines = [f"study {study.name}: paper {study.paper} {study.table}" + (f" -- {study.title}" if study.title else ""),
             f"protocols: " + "; ".join(_protocol_summary(study, i) for i in range(len(study.protocols))),
             f"runs under {runs_dir}", ""]
    head = ["row", "label", "status", "epochs", "images to process", "this machine (cpu)",
            "one GPU" + (f" ({', '.join(gpu_names)})" if gpu_names else ""), "run dir"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tot_cpu, tot_gpu, cpu_unknown, gpu_unknown, images_total = 0.0, 0.0, 0, 0, 0
    for rr in plan:
        left = remaining_images(rr)
        if rr.uses is not None:
            cells = [rr.row_id, rr.label, f"uses {rr.uses}", "-", "0", "-", "-", _short(rr.run_dir, runs_dir)]
        else:
            ep = f"{rr.done_epochs}/{rr.epochs}" if rr.status == "partial" else str(rr.epochs)
            if left is None:
                img = "unknown (steps per epoch = the store's faces; give --data)"
            else:
                img = f"{left:,}" + (f" of {rr.images:,}" if rr.status == "partial" and rr.images else "")
                images_total += left
            c_s, c_m = estimate(left, rr.backbone, rr.input_size, rr.method, rr.optim, "cpu", results)
            g_s, g_m = estimate(left, rr.backbone, rr.input_size, rr.method, rr.optim, "cuda", results)
            if left == 0:
                c_txt = g_txt = "0 (done)"
            else:
                c_txt = (fmt_duration(c_s) if c_s is not None or not c_m else "? (images unknown)") \
                    + (f" @ {c_m.describe()}" if c_m else "")
                g_txt = (fmt_duration(g_s) if g_s is not None or not g_m else "? (images unknown)") \
                    + (f" @ {g_m.describe()}" if g_m else "")
                tot_cpu += c_s or 0
                tot_gpu += g_s or 0
                cpu_unknown += c_s is None
                gpu_unknown += g_s is None
            cells = [rr.row_id, rr.label, rr.status, ep, img, c_txt, g_txt, _short(rr.run_dir, runs_dir)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    trained = [r for r in plan if r.uses is None]
    todo = [r for r in trained if r.status != "done"]
    lines.append(f"{len(plan)} rows, {len(trained)} runs ({len(todo)} to train or finish, "
                 f"{len(trained) - len(todo)} done), {images_total:,} images to process"
                 + (" (+ rows of unknown size)" if any(remaining_images(r) is None for r in todo) else ""))
    lines.append(f"estimated training time on this machine ({host}): {fmt_duration(tot_cpu) if tot_cpu else '-'}"
                 + (f" + {cpu_unknown} rows not estimated (no measurement, or size unknown)" if cpu_unknown else ""))
    if any((r.get("machine") or {}).get("device") == "cuda" for r in results):
        lines.append(f"estimated training time on one GPU: {fmt_duration(tot_gpu) if tot_gpu else '-'}"
                     + (f" + {gpu_unknown} rows not estimated (no measurement, or size unknown)" if gpu_unknown else ""))
    else:
        lines.append("one GPU: no measurement -- no GPU figure exists in benchmarks/results/ (this machine has no GPU); "
                     "run `python benchmarks/train_step.py --device cuda --json` on one")
    lines.append("estimates = images / measured img/s of method.step alone (benchmarks/train_step.py --json: forward, "
                 "backward, optimizer; no data loading, validation or evaluation); 'no measurement' = that backbone "
                 "at that size was never measured")
    notes = sorted({r.note for r in plan if r.note and r.uses is None})
    lines += [f"note: {n}" for n in notes]
    lines += ["", "commands:"]
    for rr in plan:
        if rr.train_argv and rr.status != "done":
            lines.append(f"  [{rr.row_id}] unmask {shlex.join(rr.train_argv)}")
        for argv in rr.eval_argv:
            lines.append(f"  [{rr.row_id}] unmask {shlex.join(argv)}")
    return "\n".join(lines) + "\n"


def _short(p: Path, root: Path) -> str:
    try:
        return str(Path(p).relative_to(root))
    except ValueError:
        return str(p)


def _protocol_summary(study: Study, i: int) -> str:
    from unmask.evaluate.protocols import load_protocol

    sp = study.protocols[i]
    cfg = load_protocol(sp.protocol, sp.overrides)
    agg = cfg.eval.aggregation
    level = sp.level or agg.level
    frames = sp.frames if sp.frames is not None else agg.num_frames
    sets = sp.only or [t.name for t in cfg.test_sets]
    return (f"{cfg.name} ({level} level, {frames} frames, margin {cfg.eval.margin:g}, sets {', '.join(sets)}"
            + (f", splits {', '.join(sp.splits)}" if sp.splits else "") + ")")


# --- running --------------------------------------------------------------------------------------------------


class _Tee(io.TextIOBase):
    """stderr that is also kept (its last lines become a failed row's reason)."""

    def __init__(self, stream) -> None:
        self.stream, self.buf = stream, []

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.buf.append(s)
        if len(self.buf) > 400:
            del self.buf[:200]
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return getattr(self.stream, "isatty", lambda: False)()

    def last_error(self) -> str:
        lines = [ln.strip() for ln in "".join(self.buf).replace("\r", "\n").splitlines() if ln.strip()]
        errs = [ln for ln in lines if ": error:" in ln or "Error" in ln]
        return (errs or lines or ["no message"])[-1]


def run_cli(argv: list[str], quiet_stdout: bool = False) -> tuple[int, str]:
    """Run ``unmask <argv>`` in this process; (exit code, the last error line). ``quiet_stdout``: drop its stdout."""
    from unmask.cli import main

    tee = _Tee(sys.stderr)
    try:
        with contextlib.redirect_stderr(tee), (contextlib.redirect_stdout(io.StringIO()) if quiet_stdout
                                               else contextlib.nullcontext()):
            rc = main(list(argv))
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code or 0) if isinstance(exc.code, int) else 2
    except Exception as exc:  # a bug or a resource failure in one row must not stop the others
        return 1, f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return rc, ("" if rc == 0 else tee.last_error())


@dataclass
class RowOutcome:
    row_id: str
    trained: str = ""  # "", "trained", "resumed", "skipped (done)", "failed"
    evaluated: str = ""
    error: str | None = None
    seconds: float = 0.0
    values: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_study(study: Study, plan: list[RowRun], out_dir: str | Path, *, train: bool = True,
              log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> dict[str, Any]:
    """Train what is missing, evaluate every row, write the report; returns the report (table.json's content)."""
    outcomes: dict[str, RowOutcome] = {rr.row_id: RowOutcome(rr.row_id) for rr in plan}
    by_dir: dict[Path, str] = {}  # run dir -> error of its training (a "uses" row inherits it)
    for rr in plan:
        if rr.uses is not None or not train:
            continue
        oc = outcomes[rr.row_id]
        if rr.status == "done":
            oc.trained = "skipped (done)"
            log(f"[{rr.row_id}] {rr.label}: trained already ({rr.epochs} epochs) in {rr.run_dir}")
            continue
        log(f"[{rr.row_id}] {rr.label}: {'resuming at epoch ' + str(rr.done_epochs + 1) if rr.status == 'partial' else 'training'}"
            f" -> {rr.run_dir}")
        t0 = time.time()
        rc, err = run_cli(rr.train_argv)
        oc.seconds += time.time() - t0
        if rc != 0:
            oc.trained, oc.error = "failed", f"training failed: {err}"
            by_dir[rr.run_dir] = oc.error
            log(f"[{rr.row_id}] {oc.error}")
        else:
            oc.trained = "resumed" if rr.status == "partial" else "trained"
    for rr in plan:
        oc = outcomes[rr.row_id]
        if rr.run_dir in by_dir:
            oc.error = oc.error or by_dir[rr.run_dir]
            continue
        if not (rr.run_dir / "best.pt").is_file():
            oc.error = oc.error or f"not trained: no {rr.run_dir / 'best.pt'}"
            continue
        t0 = time.time()
        for argv in rr.eval_argv:
            log(f"[{rr.row_id}] evaluating: unmask {shlex.join(argv[:2])} ...")
            rc, err = run_cli(argv, quiet_stdout=True)  # its table is in table.json; the study table says it all
            if rc != 0:
                oc.error = f"evaluation failed ({argv[1]}): {err}"
                log(f"[{rr.row_id}] {oc.error}")
                break
        oc.seconds += time.time() - t0
        oc.evaluated = "failed" if oc.error else "ok"
    return collect_report(study, plan, out_dir, outcomes=outcomes)


# --- the report -----------------------------------------------------------------------------------------------


def _metrics_ci(metrics: dict, key: str, metric: str) -> list[float] | None:
    m = metrics.get(key) or {}
    ci = (m.get("ci") or {}).get(metric)
    if not ci or ci[0] is None or not all(isinstance(c, (int, float)) and math.isfinite(c) for c in ci):
        return None
    return [float(ci[0]), float(ci[1])]


def read_eval(eval_dir: Path, metric: str) -> dict[str, dict[str, Any]]:
    """column -> {"ours": value in %, "ci": [lo, hi] in %} from one protocol output folder."""
    from unmask.evaluate.protocols import SHORT_NAMES

    table = json.loads((eval_dir / "table.json").read_text())
    grids = table.get("grids", {}).get(metric)
    if grids is None:
        raise UnmaskError(f"{eval_dir}/table.json has no {metric!r} grid (the protocol's metrics: "
                          f"{', '.join(table.get('grids', {}))}); add it to the protocol's metrics")
    out: dict[str, dict[str, Any]] = {}
    for row_name, cols in grids.items():
        for col, v in cols.items():
            name = col if row_name == EVAL_LABEL else f"{row_name} {col}"
            out[name] = {"ours": None if v is None else 100.0 * float(v), "ci": None}
    kind = table.get("kind")
    cfg = table.get("config") or {}
    for mf in sorted(eval_dir.rglob("metrics.json")):
        try:
            rep = json.loads(mf.read_text())
        except (OSError, ValueError):
            continue
        meta, metrics = rep.get("meta", {}), rep.get("metrics", {})
        if kind == "cross_manipulation":
            pairs = [(SHORT_NAMES.get(m, m), m) for m in cfg.get("manipulations", [])]
            if cfg.get("all_column"):
                pairs.append((cfg["all_column"], "all"))
        else:
            dist = (meta.get("distortion") or {}).get("name")
            col = meta.get("set", "") if kind != "robustness" else f"{dist} {meta.get('set', '')}"
            pairs = [(col, "all")]
        for col, key in pairs:
            ci = _metrics_ci(metrics, key, metric)
            if col in out and ci is not None:
                out[col]["ci"] = [100.0 * ci[0], 100.0 * ci[1]]
    return out


def _averages(study: Study, ours: dict[str, dict[str, Any]]) -> None:
    """Fill the paper's average columns ("Avg", "Avg w/o FF++", "<distortion> Avg") from our own columns."""
    avg = study.averages()
    for col in study.columns():
        if col in ours and ours[col].get("ours") is not None:
            continue
        members, prefix = None, ""
        if col in avg:
            members = avg[col]
        else:
            for name, cols in avg.items():
                if col.endswith(" " + name):
                    members, prefix = cols, col[: -len(name)]
                    break
        if not members:
            continue
        vals = [ours.get(prefix + c, {}).get("ours") for c in members]
        if vals and all(v is not None for v in vals):
            ours[col] = {"ours": sum(vals) / len(vals), "ci": None, "mean_of": [prefix + c for c in members]}


def collect_report(study: Study, plan: list[RowRun], out_dir: str | Path,
                   outcomes: dict[str, RowOutcome] | None = None) -> dict[str, Any]:
    """Read every row's protocol outputs and write table.md / .csv / .json / .png under ``out_dir``."""
    from unmask.evaluate.protocols import load_protocol
    from unmask.evaluate.report import jsonable
    from unmask.reproduce.provenance import collect, eval_settings, read_provenance

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = outcomes or {rr.row_id: RowOutcome(rr.row_id) for rr in plan}
    columns = study.columns()
    rows = []
    for rr in plan:
        oc = outcomes.get(rr.row_id) or RowOutcome(rr.row_id)
        srow = study.row(rr.row_id)
        ours: dict[str, dict[str, Any]] = {}
        error = oc.error
        if error is None:
            for d in rr.eval_dirs:
                if not (d / "table.json").is_file():
                    error = f"not evaluated: no {d / 'table.json'}"
                    break
                try:
                    ours.update(read_eval(d, study.metric))
                except (UnmaskError, OSError, ValueError, KeyError) as exc:
                    error = f"cannot read {d / 'table.json'}: {exc}"
                    break
        _averages(study, ours)
        values = {}
        for col in columns + [c for c in ours if c not in columns]:
            o = ours.get(col, {})
            paper = srow.paper.get(col)
            v = o.get("ours")
            values[col] = {"ours": v, "paper": paper, "diff": None if v is None or paper is None else v - paper,
                           "ci": o.get("ci"), **({"mean_of": o["mean_of"]} if "mean_of" in o else {})}
        rows.append({"id": rr.row_id, "label": rr.label, "status": rr.status, "trained": oc.trained,
                     "evaluated": oc.evaluated, "error": error, "run_dir": str(rr.run_dir),
                     "uses": rr.uses, "config": str(rr.config_path), "overrides": rr.overrides,
                     "epochs": rr.epochs, "seconds": round(oc.seconds, 1), "values": values,
                     "provenance": read_provenance(rr.run_dir)})
    protocols = []
    for sp in study.protocols:
        cfg = load_protocol(sp.protocol, sp.overrides)
        s = eval_settings(cfg)
        s.update({k: v for k, v in (("only", sp.only), ("splits", sp.splits), ("level", sp.level),
                                    ("frames", sp.frames), ("n_boot", sp.n_boot)) if v is not None})
        protocols.append(s)
    prov = collect()
    report = jsonable({
        "study": study.name, "paper": study.paper, "table": study.table, "title": study.title,
        "metric": study.metric, "columns": columns, "averages": study.averages(), "notes": study.notes,
        "protocols": protocols, "rows": rows, "written_at": prov.pop("written_at"),
        "provenance": {k: v for k, v in prov.items() if k not in ("argv", "pid")},
    })
    atomic_write_json(out / "table.json", report)
    atomic_write_text(out / "table.md", report_markdown(report))
    _write_csv(out / "table.csv", report)
    _plot(out / "table.png", report)
    return report


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def report_markdown(report: dict[str, Any]) -> str:
    metric = report["metric"].upper()
    lines = [f"## {report['study']}: paper {report['paper']} {report['table']}" +
             (f" -- {report['title']}" if report.get("title") else ""), ""]
    lines.append(f"{metric} (%), ours vs the paper's; diff = ours - paper; [95% bootstrap CI] of our number "
                 f"(averages: the mean of our columns, no CI).")
    for p in report["protocols"]:
        lines.append(f"- protocol {p['protocol']} ({'; '.join(p['paper_tables'])}): {p['level']} level, "
                     f"{p['frames']} frames, margin {p['margin']:g}, {p['face_rule']}, bootstrap {p['n_boot']}"
                     + (f", sets {', '.join(p['only'])}" if p.get("only") else "")
                     + (f", splits {', '.join(p['splits'])}" if p.get("splits") else ""))
    lines.append("")
    cols = report["columns"] + sorted({c for r in report["rows"] for c in r["values"]} - set(report["columns"]))
    lines.append("| row | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for r in report["rows"]:
        cells = []
        for c in cols:
            v = r["values"].get(c) or {}
            ours, paper, diff, ci = v.get("ours"), v.get("paper"), v.get("diff"), v.get("ci")
            s = _f(ours) + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")
            if paper is not None:
                s += f" / {paper:.2f}" + (f" ({diff:+.2f})" if diff is not None else "")
            cells.append(s if (ours is not None or paper is not None) else "-")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: ours [CI] / paper (diff).", ""]
    for r in report["rows"]:
        state = f"error: {r['error']}" if r["error"] else (r["trained"] or r["status"])
        lines.append(f"- {r['id']} ({r['label']}): {state}; run {r['run_dir']}"
                     + (f" (uses {r['uses']})" if r.get("uses") else ""))
    if report.get("notes"):
        lines += ["", report["notes"]]
    prov = report.get("provenance") or {}
    git = prov.get("git") or {}
    pk = prov.get("packages") or {}
    lines += ["", f"Report written {report['written_at']} at commit {git.get('commit', '?')}"
              + (" (dirty)" if git.get("dirty") else "") + f"; torch {pk.get('torch')}, timm {pk.get('timm')}, "
              f"numpy {pk.get('numpy')}; per-row provenance (packages, git, store fingerprint, hardware) in table.json."]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, report: dict[str, Any]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "label", "column", "ours", "paper", "diff", "ci_low", "ci_high", "status", "error", "run_dir"])
    for r in report["rows"]:
        for col, v in r["values"].items():
            ci = v.get("ci") or [None, None]
            w.writerow([r["id"], r["label"], col, *(("" if x is None else f"{x:.4f}") for x in
                                                    (v.get("ours"), v.get("paper"), v.get("diff"), ci[0], ci[1])),
                        r["trained"] or r["status"], r["error"] or "", r["run_dir"]])
    atomic_write_text(path, buf.getvalue())


def _plot(path: Path, report: dict[str, Any]) -> None:
    """Ours against the paper's number per cell, the diagonal = reproduced; bars = our bootstrap CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unmask.io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6.4, 6.0), dpi=100)
    pts = []
    for i, r in enumerate(report["rows"]):
        xs, ys, lo, hi, names = [], [], [], [], []
        for col, v in r["values"].items():
            if v.get("ours") is None or v.get("paper") is None:
                continue
            xs.append(v["paper"])
            ys.append(v["ours"])
            ci = v.get("ci")
            lo.append(v["ours"] - ci[0] if ci else 0.0)
            hi.append(ci[1] - v["ours"] if ci else 0.0)
            names.append(col)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=r["label"], color=f"C{i % 10}")
            for x, y, n in zip(xs, ys, names):
                ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            pts += xs + ys + [y - d for y, d in zip(ys, lo)]
    lo_lim = max(0.0, min(pts + [50.0]) - 2)
    ax.plot([lo_lim, 100], [lo_lim, 100], "k--", lw=0.8, label="ours = paper")
    ax.set_xlim(lo_lim, 100.5)
    ax.set_ylim(lo_lim, 100.5)
    ax.set_xlabel(f"paper {report['metric'].upper()} (%)")
    ax.set_ylabel(f"ours {report['metric'].upper()} (%)")
    ax.set_title(f"{report['study']}: paper {report['paper']} {report['table']}", fontsize=10)
    if not pts:
        ax.text(0.5, 0.5, "no cell with both numbers yet", ha="center", va="center", transform=ax.transAxes)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
