"""Reproduce a paper's table: train the study's missing rows, evaluate each, and put our numbers beside the paper's.

A study (configs/studies/<paper>_<table>.yaml; --list shows them) names the table's rows (a training config +
overrides, or another row's run), the evaluation protocol(s) and the published numbers. --data NAME=STORE names
the prepared stores: the training store is "train" (unless the study says otherwise), and a protocol's test set
is its own name (CDF=prepared/celebdf_test, FF++=prepared/ffpp_c23). Runs go to --runs DIR, one directory per
config + overrides (shared across studies); a finished row is skipped, a half-finished one resumes. A row that
fails is recorded in the table with its reason, and the other rows go on.

Outputs (--out, default <runs>/studies/<study>): table.md, table.csv, table.json (our number, the paper's, the
difference and the 95% bootstrap CI per cell, plus every row's provenance and the protocols' exact settings) and
table.png (ours vs paper). Each run dir holds provenance.json (packages, git commit, store fingerprint, hardware);
--compare A B names what differs between two runs or two study reports.

  unmask reproduce --list
  unmask reproduce 000_table11 --dry-run --data train=prepared/ffpp_c23 --runs runs
  unmask reproduce 000_table11 --data train=prepared/ffpp_c23 --data CDF=prepared/celebdf_test --runs runs
  unmask reproduce tiny_demo --data train=prepared/sample --data FF++=prepared/sample --runs runs/tiny --rows sbi
  unmask reproduce --compare runs/bbmg_nrs__table11_row1_none runs/bbmg_nrs__table11_row4_bbmg_nrs
  unmask reproduce 000_table11 --data train=prepared/ffpp_c23 --launcher torchrun --nproc-per-node 4
  unmask reproduce 000_table11 --data train=prepared/ffpp_c23 --launcher slurm --nproc-per-node 4 \
      --slurm-partition gpu --slurm-time 2-00:00:00 --prepare train="ffpp /data/FF++ --compression c23 --frames 8"
  unmask reproduce 000_table11 --data train=prepared/ffpp_c23 --collect     # when the jobs have ended
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unmask.cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", nargs="?", help="study name (configs/studies/<name>.yaml) or a study YAML file")
    p.add_argument("--list", action="store_true", help="list the studies and the paper tables they reproduce")
    p.add_argument("--data", action="append", default=[], metavar="NAME=STORE",
                   help="a prepared store: train=STORE (training), or a protocol test set's name (CDF=STORE); repeatable")
    p.add_argument("--runs", default="runs", help="parent folder of the run directories (default: %(default)s)")
    p.add_argument("--rows", help="comma-separated row ids to run (default: all; a row using another brings it)")
    p.add_argument("--out", help="report folder (default: <runs>/studies/<study>)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan: runs, status, epochs, images, estimated time here and on one GPU; run nothing")
    p.add_argument("--no-train", action="store_true", help="train nothing: evaluate the rows already trained, build the table")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="print what differs between two run dirs (provenance.json) or two study reports (table.json)")
    p.add_argument("--all", action="store_true", help="--compare: also show volatile keys (time written, pid, argv)")
    from unmask.reproduce.launchers import add_launcher_arguments

    add_launcher_arguments(p)  # --launcher torchrun|slurm, --nproc-per-node, --slurm-*, --prepare, --submit, --collect


def _list() -> int:
    from unmask.reproduce.study import load_study, study_names

    for name in study_names():
        s = load_study(name, validate=False)
        print(f"{name:<28} paper {s.paper} {s.table:<24} {len(s.rows):>3} rows  {s.title}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.compare:
        from unmask.reproduce.provenance import compare_text

        text, _ = compare_text(args.compare[0], args.compare[1], include_volatile=args.all)
        print(text, end="")
        return 0
    if args.list:
        return _list()
    if not args.study:
        raise CommandError("name a study (see --list), or give --compare A B")
    from unmask.reproduce.plan import make_plan
    from unmask.reproduce.runner import dry_run_text, parse_data, run_study
    from unmask.reproduce.study import load_study

    study = load_study(args.study)
    data = parse_data(args.data)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    runs = Path(args.runs)
    plan = make_plan(study, data, runs, rows)
    if args.dry_run:
        print(dry_run_text(study, plan, runs), end="")
        return 0
    from unmask.reproduce.launchers import launch

    if args.collect:  # the table from the run dirs as they are (no --data needed), unfinished rows named
        return launch(study, plan, args, Path(args.out) if args.out else runs / "studies" / study.name, lambda: plan)
    if study.train_data not in data and not args.no_train and any(r.status != "done" and r.uses is None for r in plan):
        raise CommandError(f"--data {study.train_data}=STORE is required to train (the prepared training store); "
                           "--dry-run shows the plan")
    out = Path(args.out) if args.out else runs / "studies" / study.name
    handled = launch(study, plan, args, out, replan=lambda: make_plan(study, data, runs, rows))  # torchrun, slurm
    if handled is not None:
        return handled
    report = run_study(study, plan, out, train=not args.no_train)
    from unmask.reproduce.runner import report_markdown

    print(report_markdown(report), end="")
    print(f"wrote {out}/table.md, table.csv, table.json, table.png")
    failed = [r for r in report["rows"] if r["error"]]
    if failed:
        print(f"{len(failed)} of {len(report['rows'])} rows failed or are incomplete (reasons above)", file=sys.stderr)
    return 0 if len(failed) < len(report["rows"]) else 1
