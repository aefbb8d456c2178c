"""Training-time estimates for a plan, from measured step times only (``benchmarks/train_step.py --json``).

Every ``benchmarks/results/train_step_*.json`` file holds one machine's figures (host, device, GPU name) and rows of
``(backbone, size, method, optim, batch) -> img_s`` for ``method.step`` alone (forward, backward, optimizer on a
fixed batch: no data loading, no validation). A row's estimate is ``images still to process / img_s`` of the
closest measurement: the same backbone and input size, preferring the same method and optimizer (SAM's two passes
double a step). No measurement for a backbone at a size means "no measurement", never a guess.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@dataclass
class Measurement:
    machine: dict[str, Any]
    row: dict[str, Any]
    exact: bool  # same method and optimizer as the row estimated

    @property
    def img_s(self) -> float:
        return float(self.row["img_s"])

    def describe(self) -> str:
        r = self.row
        tag = "" if self.exact else f", measured with {r['method']}/{r['optim']}"
        return f"{self.img_s:.3g} img/s ({r['backbone']}@{r['size']}, batch {r['batch']}{tag})"


def load_results(results_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every results file: ``[{"machine": {...}, "rows": [...], "path": ...}]`` (unreadable files are skipped)."""
    d = Path(results_dir) if results_dir else RESULTS_DIR
    out = []
    for p in sorted(d.glob("train_step_*.json")) if d.is_dir() else []:
        try:
            data = json.loads(p.read_text())
            if isinstance(data, dict) and isinstance(data.get("rows"), list):
                out.append({**data, "path": str(p)})
        except (OSError, ValueError):
            continue
    return out


def find(results: list[dict[str, Any]], backbone: str, size: int, method: str, optim: str,
         device: str, host: str | None = None) -> Measurement | None:
    """The best measurement of ``backbone@size`` on ``device`` ("cpu": this host only; "cuda": any GPU)."""
    best: Measurement | None = None
    best_rank = -1
    for res in results:
        m = res.get("machine") or {}
        if m.get("device") != device:
            continue
        if device == "cpu" and host is not None and m.get("host") != host:
            continue
        for r in res["rows"]:
            if str(r.get("backbone")) != backbone or int(r.get("size", -1)) != int(size):
                continue
            rank = 2 * (r.get("optim") == optim) + (r.get("method") == method)
            # equal rank: the fastest measured setting (e.g. channels_last / torch.compile on a GPU) is what one runs
            if rank > best_rank or (rank == best_rank and best is not None and float(r["img_s"]) > best.img_s):
                best, best_rank = Measurement(m, r, exact=rank == 3), rank
    if best is not None and best.row.get("optim") != optim:
        # SAM runs two forward/backward passes per step: scale a measurement across that boundary, and say so
        factor = 0.5 if optim == "sam" else 2.0 if best.row.get("optim") == "sam" else 1.0
        best.row = {**best.row, "img_s": best.img_s * factor, "optim": f"{best.row['optim']} x{factor:g}"}
    return best


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "no measurement"
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def estimate(images: int | None, backbone: str, size: int, method: str, optim: str, device: str,
             results: list[dict[str, Any]] | None = None) -> tuple[float | None, Measurement | None]:
    """(seconds, the measurement used) for ``images`` images; (None, None) without a measurement."""
    results = load_results() if results is None else results
    m = find(results, backbone, size, method, optim, device, host=platform.node())
    if m is None or images is None:
        return None, m
    return images / max(m.img_s, 1e-9), m
