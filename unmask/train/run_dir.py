"""The run directory: everything one training run leaves behind.

```
<run>/config.yaml      the full, validated config (defaults filled in) -- `unmask train --config <run>/config.yaml`
<run>/git.txt          the code's git commit (and "dirty" when the tree had uncommitted changes), or "unknown"
<run>/provenance.json  packages, git, config, seed, store fingerprint, hardware (written by `unmask train`:
                       unmask.reproduce.provenance; every session also in provenance_history.jsonl)
<run>/metrics.jsonl    train / val metric lines (unmask.train.runlog)
<run>/tensorboard/     the same scalars for TensorBoard
<run>/last.pt          the latest checkpoint: every epoch, and every run.save_every_steps steps (resume point)
<run>/best.pt          the checkpoint with the best validation video AUC (what evaluate / detect load)
```
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from unmask.errors import UnmaskError
from unmask.io import atomic_write_text
from unmask.train.config import config_diff, config_to_dict, train_config_from_dict

CONFIG_NAME = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"


def git_commit() -> str:
    """``<sha>`` or ``<sha>-dirty`` of the checkout this package runs from; "unknown" outside git."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha or "unknown"


def prepare_run_dir(run_dir: Path, config: dict[str, Any], allow_config_change: bool = False) -> bool:
    """Create ``run_dir`` or check it for a resume. Returns True when a run is there to resume.

    A run directory that holds another config is refused (naming the first differing keys) unless
    ``allow_config_change``: resuming with silently different settings would make the run meaningless.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    snapshot = run_dir / CONFIG_NAME
    resuming = (run_dir / LAST).is_file()
    if resuming and snapshot.is_file():
        old = yaml.safe_load(snapshot.read_text()) or {}
        try:  # a key added to the config since that run was started takes its default there: no change
            old = config_to_dict(train_config_from_dict(old))
        except UnmaskError:
            pass  # a snapshot this version cannot read: compare as written
        diff = config_diff(old, config)
        if diff and not allow_config_change:
            raise UnmaskError(
                f"{run_dir} holds a run with another config ({'; '.join(diff[:3])}); "
                "use a new --out, or --allow-config-change to resume with the new settings"
            )
    atomic_write_text(snapshot, yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(run_dir / "git.txt", git_commit() + "\n")
    return resuming
