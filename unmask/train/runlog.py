"""Run metrics: one JSON line per event in ``metrics.jsonl`` and the same scalars in TensorBoard.

JSONL lines look like ``{"kind": "train", "epoch": 0, "step": 10, "loss": 0.61, "lr": 0.001, "img_s": 41.2}``
and ``{"kind": "val", "epoch": 0, "step": 30, "video_auc": 0.83, ...}``. On resume, lines logged after the
checkpoint's step are dropped (they will be logged again), so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from unmask.io import atomic_write_text


class RunLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, enabled: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Keep only lines with ``step <= step`` (called when resuming from a checkpoint at ``step``)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:  # a line cut by a kill: drop it
                continue
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def log(self, kind: str, epoch: int, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"kind": kind, "epoch": epoch, "step": step, **values}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def read_metrics(run_dir: Path | str, kind: str | None = None) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]
