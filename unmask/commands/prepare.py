"""Turn a benchmark's videos (or a folder of your own images/videos) into face crops + landmarks.

For every item the dataset adapter lists, N evenly spaced frames are decoded (by seeking, not by
decoding the whole video), every face is detected with 68 landmarks (+13 forehead points = 81), and a
large-margin crop per face is stored with its box and landmarks in crop coordinates, so training can
take random margins and evaluation a fixed one without decoding the video again.

The job is parallel (--workers), sharded for clusters (--shard i/n: run shard i of n anywhere, into the
same --out), and resumable (finished items are skipped; an interrupted run leaves no half-written file).
Every item gets an outcome (ok / no face in k of N frames / failed: reason) and the run ends with a
summary that accounts for every entry the adapter saw: items by outcome, videos that decode only in part
(truncated: warning), and entries that are not items (unsupported type, hidden, symlink loop, broken symlink,
listed in an index but missing), each with its reason. Valid symlinks are followed. Layout and formats:
docs/prepare.md.

Exit code: 0 when at least one item of the shard has a face in the store, or the shard holds no item (items
that failed are listed in the summary and their records; rerun with --retry-failed); 1 when the shard's items
all failed or had no face, or on an error; 2 for a usage error; 130 when interrupted (rerunning resumes).

examples:
  unmask prepare ffpp /data/FaceForensics++ --out prepared/ffpp_c23 --compression c23 --frames 32
  unmask prepare ffpp /data/FaceForensics++ --out prepared/ffpp_c23 --compression c23 --shard 3/16
  unmask prepare generic my_videos/ --out prepared/mine --frames 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from unmask.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset adapter name (ffpp, celebdf, dfdc, ..., generic)")
    parser.add_argument("root", help="the dataset's root folder (generic: a folder with real/ and fake/, or a CSV)")
    parser.add_argument("--out", required=True, help="store folder (created; an existing one is resumed)")
    parser.add_argument("--frames", type=int, default=32, help="evenly spaced frames per video (default 32)")
    parser.add_argument("--split", default=None,
                        help="only these splits, comma-separated: train,val,test (default: all)")
    parser.add_argument("--methods", default=None,
                        help="only these methods, comma-separated, e.g. real,Deepfakes (default: all)")
    parser.add_argument("--compression", default=None, help="dataset compression, e.g. c23 or c40 (FF++)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="another adapter option (repeatable), e.g. --option subset=actors")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)),
                        help="worker processes (default: one per CPU core)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="process shard I of N (default 0/1: all)")
    parser.add_argument("--detector", default="dlib_hog",
                        help="face detector: dlib_hog (default), dlib_hog_cnn (CNN where HOG finds none: "
                             "turned faces, slow on faceless frames), dlib_cnn, mtcnn (optional install)")
    parser.add_argument("--detect-max-side", type=int, default=None,
                        help="longest side of the frame copy the detector sees (default 640; 0 = full size)")
    parser.add_argument("--no-adaptive-detect", action="store_true",
                        help="detect every frame at the normal scale (default: within a video, frames between "
                             "every 8th are detected on a copy scaled to the previous frame's faces; faster)")
    parser.add_argument("--max-crop-side", type=int, default=640,
                        help="longest side of a stored crop; larger faces are downscaled (default 640)")
    parser.add_argument("--retry-failed", action="store_true", help="redo items whose record says failed")
    parser.add_argument("--limit", type=int, default=None, help="only the first N listed items (a quick trial)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _adapter_opts(args: argparse.Namespace) -> dict:
    opts: dict = {}
    if args.compression:
        opts["compression"] = args.compression
    if args.split:
        opts["splits"] = args.split
    if args.methods:
        opts["methods"] = args.methods
    for kv in args.option:
        if "=" not in kv:
            raise CommandError(f"--option needs KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        opts[k.strip()] = v.strip()
    return opts


def _warnings(out: str, keys: set[str]) -> dict[str, str]:
    """Item key -> decode warning (truncated / partly decodable video) for the shard's items in the store."""
    from unmask.data.media import decode_warning
    from unmask.data.store import PreparedStore

    found = {}
    for o in PreparedStore(out).items():
        rec = o.record or {}
        if o.key in keys:
            w = decode_warning(rec.get("warning"), int(rec.get("frame_count") or 0),
                               int(rec.get("container_frame_count") or 0), rec.get("missing"), rec.get("targets"))
            if w:
                found[o.key] = w
    return found


def format_summary(s: dict) -> str:
    t = s["timing"]
    lines = [
        f"store: {s['store']}  (shard {s['shard']}, {s['workers']} workers)",
        f"items: {s['items_in_shard']} in shard, {s['skipped_done']} already done, {s['processed']} processed: "
        f"{s['ok']} ok, {s['partial']} with frames without a face, {s['no_face']} with no face, {s['failed']} failed",
        f"frames: {s['frames']} kept ({s['frames_decoded']} decoded), {s['frames_with_face']} with a face "
        f"({100 * s['face_frame_share']:.1f}%), {s['faces']} faces",
        f"time: {s['wall_s']:.1f} s wall, {s['frames_per_s']:.1f} frames/s; "
        f"worker seconds: decode {t['decode_s']:.1f}, detect {t['detect_s']:.1f}, landmarks {t['landmarks_s']:.1f}, write {t['write_s']:.1f}",
    ]
    whole = s.get("shard_store")
    if whole:
        lines.append(f"store (this shard's items): {whole['items']} done: {whole['ok']} ok, "
                     f"{whole['partial']} partial, {whole['no_face']} no face, {whole['failed']} failed; {whole['faces']} faces, "
                     f"{100 * whole['face_frame_share']:.1f}% of frames with a face")
    for key, outcome in list(s.get("failures", {}).items())[:20]:
        lines.append(f"  {key}: {outcome}")
    if len(s.get("failures", {})) > 20:
        lines.append(f"  ... {len(s['failures']) - 20} more failures (see the item records)")
    warned = s.get("decode_warnings", {})
    if warned:
        lines.append(f"partly decodable (kept the frames that decode): {len(warned)}")
        lines += [f"  {k}: {w}" for k, w in list(warned.items())[:20]]
    skipped = s.get("skipped_entries", [])
    counts = s.get("skipped_by_reason", {})
    lines.append(f"not items (skipped by the adapter): {len(skipped)}"
                 + (" -- " + ", ".join(f"{n} {r}" for r, n in counts.items()) if counts else ""))
    lines += [f"  {e['path']}: {e['reason']}" for e in skipped[:20]]
    if len(skipped) > 20:
        lines.append(f"  ... {len(skipped) - 20} more (see --json or summaries/ in the store)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from unmask.data.adapters import list_items_report
    from unmask.data.prepare import PrepareOptions, in_shard, parse_shard, run_prepare

    if args.frames < 1:
        raise CommandError("--frames must be at least 1")
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    shard = parse_shard(args.shard)
    listing = list_items_report(args.dataset, args.root, **_adapter_opts(args))
    rows = listing.rows
    if args.limit is not None:
        rows = rows[: args.limit]
    if not rows:
        why = "; ".join(f"{e.path}: {e.reason}" for e in listing.skipped[:3])
        raise CommandError(f"{args.dataset}: no items under {args.root} match the filters"
                           + (f" ({len(listing.skipped)} entries skipped: {why}{' ...' if len(listing.skipped) > 3 else ''})"
                              if listing.skipped else ""))
    det_opts = {}
    if args.detect_max_side is not None:
        det_opts["detect_max_side"] = args.detect_max_side
    opts = PrepareOptions(frames=args.frames, detector=args.detector, detector_opts=det_opts,
                          max_crop_side=args.max_crop_side, workers=args.workers, shard=shard,
                          retry_failed=args.retry_failed, adaptive_detect=not args.no_adaptive_detect)

    def log(msg: str) -> None:
        if args.no_progress:
            print(msg, file=sys.stderr)

    summary = run_prepare(rows, args.out, opts, progress=not args.no_progress, log=log)
    summary["skipped_entries"] = [e.to_json() for e in listing.skipped]
    summary["skipped_by_reason"] = listing.skipped_by_reason()
    summary["decode_warnings"] = _warnings(summary["store"], {r.key for r in rows if in_shard(r.key, shard)})
    from pathlib import Path

    from unmask.io import atomic_write_json

    # the store's copy of the summary gets the listing's part too (run_prepare wrote it without)
    atomic_write_json(Path(summary["store"]) / "summaries" / f"shard-{shard[0]}-of-{shard[1]}.json", summary)
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    whole = summary.get("shard_store") or {}
    if whole.get("items", 0) and not (whole.get("ok", 0) + whole.get("partial", 0)):  # an empty shard is no failure
        raise CommandError(f"no item succeeded: of the {whole.get('items', 0)} items of this shard in the store, "
                           f"{whole.get('failed', 0)} failed and {whole.get('no_face', 0)} have no face")
    return 0
