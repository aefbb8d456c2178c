"""Run a paper's evaluation protocol and print its table: cross-dataset, cross-manipulation, robustness.

A protocol is a config in configs/protocols/ naming the paper table it reproduces (list them with
--list). Test sets are prepared stores looked up under --data-root (default: the config's, "prepared");
sets that are not there are skipped and named. Each cell's full report (scores, metrics with CIs, ROC)
is kept under --out and reused on a re-run, so an interrupted protocol resumes.

  unmask protocol cross_dataset_000_table8 --checkpoint runs/bbmg_effb4
  unmask protocol cross_manipulation --checkpoint DF=runs/df --checkpoint F2F=runs/f2f --checkpoint FS=runs/fs --checkpoint NT=runs/nt
  unmask protocol robustness --checkpoint runs/sbi --set FF++=prepared/sample --split val
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unmask.cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from unmask.commands.evaluate import add_model_arguments

    p.add_argument("protocol", nargs="?", help="protocol name (configs/protocols/<name>.yaml) or a YAML file")
    p.add_argument("--list", action="store_true", help="list the protocols and the paper tables they reproduce")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[LABEL=]RUN",
                   help="checkpoint file or run dir; repeat for several rows (LABEL= names the row)")
    p.add_argument("--data-root", help="folder holding the prepared test sets (default: the config's data_root)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=PATH",
                   help="use PATH for test set NAME (a new name adds a set); repeatable")
    p.add_argument("--only", help="comma-separated test set names to run (default: all present)")
    p.add_argument("--split", action="append", dest="splits", metavar="SPLIT", help="override every set's splits")
    p.add_argument("--level", choices=("video", "frame"), help="override the protocol's level")
    p.add_argument("--frames", type=int, help="override frames per video")
    p.add_argument("--n-boot", type=int, help="override bootstrap resamples")
    p.add_argument("--out", help="output folder (default: <first run dir>/protocols/<name>)")
    p.add_argument("--no-resume", action="store_true", help="recompute cells even when a matching report exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. eval.margin=0.2")
    add_model_arguments(p)


def _list() -> int:
    from unmask.evaluate.protocols import load_protocol, protocol_names

    for n in protocol_names():
        cfg = load_protocol(n)
        print(f"{n:<32} {cfg.kind:<19} {cfg.eval.aggregation.level:<6} {'; '.join(cfg.paper_tables)}")
    return 0


def run(args: argparse.Namespace) -> int:
    from unmask.evaluate.protocols import TestSet, load_protocol, run_protocol
    from unmask.evaluate.scoring import open_detector

    if args.list:
        return _list()
    if not args.protocol:
        raise CommandError("name a protocol (see --list)")
    cfg = load_protocol(args.protocol, args.overrides)
    for item in args.set:
        if "=" not in item:
            raise CommandError(f"--set {item!r} must look like NAME=PATH")
        name, path = item.split("=", 1)
        match = [t for t in cfg.test_sets if t.name == name]
        if match:
            match[0].path = path
        else:
            cfg.test_sets.append(TestSet(name=name, path=path))
    if args.only:
        keep = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in keep if n not in {t.name for t in cfg.test_sets}]
        if unknown:
            raise CommandError(f"--only: unknown test set {unknown[0]!r}; this protocol has "
                               f"{', '.join(t.name for t in cfg.test_sets)}")
        cfg.test_sets = [t for t in cfg.test_sets if t.name in keep]
    if args.splits:
        for t in cfg.test_sets:
            t.splits = list(args.splits)
    if args.level:
        cfg.eval.aggregation.level = args.level
    if args.frames is not None:
        cfg.eval.aggregation.num_frames = args.frames
    if args.n_boot is not None:
        cfg.eval.n_boot = args.n_boot
    specs = args.checkpoint or ([] if not args.untrained else ["untrained="])
    if not specs:
        raise CommandError("give at least one --checkpoint (or --untrained for a pipeline check)")
    models = {}
    first_path = None
    for spec in specs:
        label, _, path = spec.partition("=") if "=" in spec else ("", "", spec)
        det, meta = open_detector(path or None, untrained=args.untrained and not path, backbone=args.backbone,
                                  pretrained=None if args.pretrained in ("none", "") else args.pretrained,
                                  device=args.device, seed=args.seed)
        label = label or (Path(meta["path"]).parent.name if meta.get("path") else "untrained")
        if label in models:
            raise CommandError(f"two checkpoints with the row label {label!r}; name them LABEL=RUN")
        models[label] = (det, meta)
        first_path = first_path or meta.get("path")
    if args.out:
        out = Path(args.out)
    elif first_path:
        out = Path(first_path).parent / "protocols" / cfg.name
    else:
        raise CommandError("--out is required with --untrained")
    res = run_protocol(cfg, models, out, data_root=args.data_root, progress=not args.quiet,
                       reuse=not args.no_resume, log=lambda m: print(m, file=sys.stderr))
    print(res.markdown)
    print(f"wrote {out}/table.md, table.json and one report folder per cell")
    return 0
