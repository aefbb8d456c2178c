"""Train a detector with one of the registered methods (sbi, bbmg_nrs, baseline, ...) from a YAML config.

The config names the method, backbone, data, optimizer and schedule (configs/<method>/*.yaml reproduce the
papers' experiments; configs/tiny/*.yaml are quick CPU profiles). Any key can be overridden after the
config as key=value. The run directory receives config.yaml, git.txt, provenance.json (package versions, git
commit, store fingerprint, hardware; `unmask reproduce --compare` diffs two), metrics.jsonl, tensorboard/,
last.pt (every epoch; resume point) and best.pt (best validation video AUC).

Running the same command again resumes from <run>/last.pt, exactly where it stopped.
Multi-GPU: torchrun --nproc_per_node=N -m unmask.cli train --config ... (batch_size is per process).

examples:
  unmask train --config configs/tiny/sbi.yaml data.store=prepared/ffpp_c40
  unmask train --config configs/bbmg_nrs/effb4_ffpp.yaml data.store=prepared/ffpp_c23 --out runs/bbmg_nrs
  unmask train --config configs/bbmg_nrs/table11_row3_nrs.yaml method.nrs.start_epoch=5 optim.lr=5e-4
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data.store=prepared/ffpp optim.lr=5e-4 epochs=10")
    parser.add_argument("--out", default=None,
                        help="run directory (default: <run.out>/<config file name>); an existing run is resumed")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume a run directory whose config.yaml differs from this config")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    # Let key=value overrides stand anywhere, also after options (`--out runs/x epochs=3`): plain parse_args
    # takes the positionals in one group only. This parser instance belongs to this command alone.
    parser.parse_args = parser.parse_intermixed_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    from unmask.config import dump_yaml
    from unmask.train.config import config_to_dict, load_train_config

    cfg = load_train_config(args.config, list(args.overrides))
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return 0

    from unmask.train.loop import train
    from unmask.train.run_dir import prepare_run_dir

    run_dir = Path(args.out) if args.out else Path(cfg.run.out) / Path(args.config).stem
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        resuming = prepare_run_dir(run_dir, config_to_dict(cfg), allow_config_change=args.allow_config_change)
        from unmask.reproduce.provenance import write_run_provenance

        write_run_provenance(run_dir, config_to_dict(cfg), resuming)  # packages, git, store fingerprint, hardware
        print(f"unmask train: {cfg.method.name} on {cfg.model.backbone} -> {run_dir}"
              + (" (resuming)" if resuming else "") + (f"  [{cfg.paper}]" if cfg.paper else ""), flush=True)
    result = train(cfg, run_dir)
    if rank == 0:
        summary = {
            "run_dir": str(run_dir),
            "steps": result.steps,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "best": {k: v for k, v in (result.best or {}).items() if k in ("epoch", "video_auc", "frame_auc")},
            "seconds": round(result.seconds, 1),
        }
        print(json.dumps(summary))
    return 0
