"""Prepare throughput: frames per second per core, and where the time goes (decode / detect / landmarks / write).

    .venv/bin/python benchmarks/prepare_speed.py                       # the shared FF++ sample's originals, c40
    .venv/bin/python benchmarks/prepare_speed.py --frames 32 --reference 2 --videos 10

Runs on ONE core (one decoder thread, OpenCV single-threaded), the unit a prepare worker gets. Times are CPU
seconds of this process (``time.thread_time``), so other jobs sharing the machine do not inflate them; wall
times are printed beside them.

1. ``stages``: for each original video, N evenly spaced frames through the same code prepare runs --
   ``sample_video_frames`` (seek + decode + RGB), the detector (HOG on a downscaled copy), the 68-point
   predictor (full resolution), the storage crop + PNG encode -- with per-stage CPU time.
2. ``prepare``: the whole job (``run_prepare``, workers=1) on the same videos into a temporary store:
   everything included (process start-up and model loading excepted), wall and CPU.
3. ``reference``: a reference-style pipeline on the first ``--reference`` videos for a same-machine,
   same-moment comparison: decode every frame to RGB and keep N, dlib HOG on the full-resolution frame with
   one upsampling, shape predictor reloaded per video (what the field's usual preprocessing script does;
   written here from that description, not from its code).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def _videos(root: Path, n: int) -> list[Path]:
    vids = sorted((root / "original_sequences" / "youtube" / "c40" / "videos").glob("*.mp4"))
    if not vids:
        raise SystemExit(f"no videos under {root}/original_sequences/youtube/c40/videos")
    return vids[:n]


def stage_split(videos: list[Path], frames: int, detector_opts: dict, adaptive: bool) -> dict:
    from unmask.data.media import sample_video_frames
    from unmask.data.prepare import FacePipeline, encode_png

    pipe = FacePipeline("dlib_hog", adaptive=adaptive, **detector_opts)
    det = pipe.detector
    tot = {"decode": 0.0, "write": 0.0, "wall": 0.0}
    kept = decoded = total_frames = faces = 0
    for v in videos:
        w0 = time.perf_counter()
        c0 = time.thread_time()
        sv = sample_video_frames(v, frames, threads=1)
        tot["decode"] += time.thread_time() - c0
        kept += len(sv.frames)
        decoded += sv.frames_decoded
        total_frames += sv.frame_count
        pipe.start_video()
        for _, rgb in sv.frames:
            fs = pipe.faces(rgb)
            faces += len(fs)
            c1 = time.thread_time()
            for crop in pipe.crops(rgb, fs):
                encode_png(crop.image)
            tot["write"] += time.thread_time() - c1
        pipe.end_video()
        tot["wall"] += time.perf_counter() - w0
    tot["detect"] = det.stats["detect_cpu_s"]
    tot["landmarks"] = det.stats["landmarks_cpu_s"]
    return {"kept": kept, "decoded": decoded, "frames_in_videos": total_frames, "faces": faces,
            "retries": det.stats["retries"], "adapted": det.stats.get("adapted", 0), **tot}


def whole_job(videos: list[Path], frames: int, adaptive: bool) -> dict:
    from unmask.data.prepare import PrepareOptions, run_prepare
    from unmask.data.records import REAL, ManifestRow

    rows = [ManifestRow(dataset="bench", video_id=v.stem, label=REAL, method="real", source=str(v)) for v in videos]
    with tempfile.TemporaryDirectory(prefix="unmask-bench-") as tmp:
        from unmask.data.prepare import _init_worker, _opts_json  # warm: load models before timing

        opts = PrepareOptions(frames=frames, workers=1, decode_threads=1, adaptive_detect=adaptive)
        _init_worker(_opts_json(opts), tmp)
        c0, w0 = time.process_time(), time.perf_counter()
        s = run_prepare(rows, Path(tmp) / "store", opts, progress=False)
        return {"kept": s["frames"], "faces": s["faces"], "cpu": time.process_time() - c0,
                "wall": time.perf_counter() - w0, "share": s["face_frame_share"]}


def reference_style(videos: list[Path], frames: int) -> dict:
    import av
    import cv2
    import dlib

    from unmask.data.faces import dlib_model_path
    from unmask.data.media import even_indices

    hog = dlib.get_frontal_face_detector()
    kept = decoded = faces = 0
    t = {"decode": 0.0, "detect": 0.0, "load": 0.0, "landmarks": 0.0}
    c_all, w0 = time.thread_time(), time.perf_counter()
    for v in videos:
        c = time.thread_time()
        predictor = dlib.shape_predictor(str(dlib_model_path()))
        t["load"] += time.thread_time() - c
        c = time.thread_time()
        with av.open(str(v)) as cont:
            s = cont.streams.video[0]
            s.codec_context.thread_count = 1
            every = [f.to_ndarray(format="rgb24") for f in cont.decode(s)]
        keep = [every[i] for i in even_indices(len(every), frames)]
        decoded += len(every)
        del every
        t["decode"] += time.thread_time() - c
        for rgb in keep:
            c = time.thread_time()
            rects = hog(rgb, 1)
            t["detect"] += time.thread_time() - c
            c = time.thread_time()
            for r in rects:
                predictor(rgb, r)
            t["landmarks"] += time.thread_time() - c
            faces += len(rects)
        kept += len(keep)
    return {"kept": kept, "decoded": decoded, "faces": faces, "cpu": time.thread_time() - c_all,
            "wall": time.perf_counter() - w0, **t}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(REPO / ".." / "shared" / "data" / "ffpp_sample"))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--videos", type=int, default=10, help="how many originals (default: all 10 of the sample)")
    ap.add_argument("--reference", type=int, default=2, help="videos for the reference-style run (0 = skip)")
    ap.add_argument("--detect-max-side", type=int, default=None)
    ap.add_argument("--no-adaptive", action="store_true", help="no face-size hint within a video")
    args = ap.parse_args()

    import cv2

    cv2.setNumThreads(1)
    videos = _videos(Path(args.root).resolve(), args.videos)
    det_opts = {} if args.detect_max_side is None else {"detect_max_side": args.detect_max_side}
    print(f"prepare_speed: {len(videos)} FF++ c40 originals, {args.frames} frames each, one core "
          f"(CPU seconds; {os.cpu_count()} cores on this machine, load {os.getloadavg()[0]:.1f})")

    s = stage_split(videos, args.frames, det_opts, adaptive=not args.no_adaptive)
    cpu = s["decode"] + s["detect"] + s["landmarks"] + s["write"]
    print(f"\n[stages] {s['kept']} frames kept, {s['decoded']} decoded of {s['frames_in_videos']} in the videos "
          f"({100 * s['decoded'] / s['frames_in_videos']:.0f}%), {s['faces']} faces; "
          f"detector: {s['adapted']} frames on a face-size-adapted copy, {s['retries']} full-size retries")
    for k in ("decode", "detect", "landmarks", "write"):
        print(f"  {k:<10} {s[k]:7.2f} s CPU  {1000 * s[k] / s['kept']:6.1f} ms/frame  {100 * s[k] / cpu:5.1f}%")
    print(f"  {'total':<10} {cpu:7.2f} s CPU  -> {s['kept'] / cpu:.1f} frames/s per core "
          f"(wall {s['wall']:.1f} s -> {s['kept'] / s['wall']:.1f} frames/s)")

    j = whole_job(videos, args.frames, adaptive=not args.no_adaptive)
    print(f"\n[prepare] run_prepare, workers=1: {j['kept']} frames, {j['faces']} faces, "
          f"{100 * j['share']:.1f}% of frames with a face; {j['cpu']:.2f} s CPU -> {j['kept'] / j['cpu']:.1f} "
          f"frames/s per core (wall {j['wall']:.1f} s -> {j['kept'] / j['wall']:.1f} frames/s)")

    if args.reference:
        r = reference_style(videos[: args.reference], args.frames)
        ref_fps = r["kept"] / r["cpu"]
        print(f"\n[reference] {args.reference} videos: decode all {r['decoded']} frames, HOG full size upsample=1, "
              f"predictor reloaded per video: {r['cpu']:.2f} s CPU -> {ref_fps:.2f} frames/s per core "
              f"({r['cpu'] / args.reference:.1f} s per video; decode {r['decode']:.1f} s, detect {r['detect']:.1f} s, "
              f"load {r['load']:.1f} s, landmarks {r['landmarks']:.2f} s)")
        print(f"\nspeed-up, same machine: stages {s['kept'] / cpu / ref_fps:.1f}x, whole job "
              f"{j['kept'] / j['cpu'] / ref_fps:.1f}x the reference-style pipeline "
              f"(target >= 10x; the field's reference measured 2.9 frames/s per core here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
