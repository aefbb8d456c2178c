"""Prepare throughput: frames per second per core, and where the time goes (decode / detect / landmarks / write).

    .venv/bin/python benchmarks/prepare_speed.py                       # the shared FF++ sample's originals, c40
    .venv/bin/python benchmarks/prepare_speed.py --frames 32 --reference 2 --videos 10

Runs on ONE core (one decoder thread, OpenCV single-threaded), the unit a prepare worker gets. Times are CPU
seconds of this process (``time.process_time``: user + system, every thread), so other jobs sharing the machine
inflate them far less than wall time; wall times are printed beside them. ``--repeat R`` runs each part R times
and keeps the fastest run (the least disturbed by other jobs).

1. ``stages``: for each original video, N evenly spaced frames through the same code prepare runs --
   ``VideoSampler`` (seek + decode + RGB, streamed), the detector (HOG on a region / downscaled copy), the
   68-point predictor (full resolution), the storage crop + PNG encode -- with per-stage CPU time.
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
    """The stages one by one, as ``process_item`` runs them (frames streamed from a ``VideoSampler``)."""
    from unmask.data.media import VideoSampler
    from unmask.data.prepare import FacePipeline
    from unmask.data.store import encode_png

    pipe = FacePipeline("dlib_hog", adaptive=adaptive, **detector_opts)
    det = pipe.detector
    tot = {"decode": 0.0, "write": 0.0, "wall": 0.0}
    kept = decoded = total_frames = faces = 0
    for v in videos:
        w0 = time.perf_counter()
        c0 = time.process_time()
        sampler = VideoSampler(v, frames, threads=1)
        it = iter(sampler)
        tot["decode"] += time.process_time() - c0
        pipe.start_video()
        while True:
            c0 = time.process_time()
            nxt = next(it, None)
            tot["decode"] += time.process_time() - c0
            if nxt is None:
                break
            rgb = nxt[1]
            kept += 1
            fs = pipe.faces(rgb)
            faces += len(fs)
            c1 = time.process_time()
            for crop in pipe.crops(rgb, fs):
                encode_png(crop.image)
            tot["write"] += time.process_time() - c1
        pipe.end_video()
        decoded += sampler.info.frames_decoded
        total_frames += sampler.info.frame_count
        tot["wall"] += time.perf_counter() - w0
    tot["detect"] = det.stats["detect_cpu_s"]
    tot["landmarks"] = det.stats["landmarks_cpu_s"]
    return {"kept": kept, "decoded": decoded, "frames_in_videos": total_frames, "faces": faces,
            "retries": det.stats["retries"], "adapted": det.stats.get("adapted", 0), "roi": det.stats.get("roi", 0),
            "roi_rejected": det.stats.get("roi_rejected", 0), **tot}


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
    import dlib

    from unmask.data.faces import dlib_model_path
    from unmask.data.media import even_indices

    hog = dlib.get_frontal_face_detector()
    kept = decoded = faces = 0
    t = {"decode": 0.0, "detect": 0.0, "load": 0.0, "landmarks": 0.0}
    c_all, w0 = time.process_time(), time.perf_counter()
    for v in videos:
        c = time.process_time()
        predictor = dlib.shape_predictor(str(dlib_model_path()))
        t["load"] += time.process_time() - c
        c = time.process_time()
        with av.open(str(v)) as cont:
            s = cont.streams.video[0]
            s.codec_context.thread_count = 1
            every = [f.reformat(format="rgb24", threads=1).to_ndarray() for f in cont.decode(s)]
        keep = [every[i] for i in even_indices(len(every), frames)]
        decoded += len(every)
        del every
        t["decode"] += time.process_time() - c
        for rgb in keep:
            c = time.process_time()
            rects = hog(rgb, 1)
            t["detect"] += time.process_time() - c
            c = time.process_time()
            for r in rects:
                predictor(rgb, r)
            t["landmarks"] += time.process_time() - c
            faces += len(rects)
        kept += len(keep)
    return {"kept": kept, "decoded": decoded, "faces": faces, "cpu": time.process_time() - c_all,
            "wall": time.perf_counter() - w0, **t}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(REPO / ".." / "shared" / "data" / "ffpp_sample"))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--videos", type=int, default=10, help="how many originals (default: all 10 of the sample)")
    ap.add_argument("--reference", type=int, default=2, help="videos for the reference-style run (0 = skip)")
    ap.add_argument("--repeat", type=int, default=1, help="run each part this many times (interleaved), keep the "
                                                         "fastest")
    ap.add_argument("--detect-max-side", type=int, default=None)
    ap.add_argument("--no-adaptive", action="store_true", help="no face-size / region hints within a video")
    args = ap.parse_args()

    import cv2

    cv2.setNumThreads(1)
    videos = _videos(Path(args.root).resolve(), args.videos)
    det_opts = {} if args.detect_max_side is None else {"detect_max_side": args.detect_max_side}
    print(f"prepare_speed: {len(videos)} FF++ c40 originals, {args.frames} frames each, one core "
          f"(CPU seconds; {os.cpu_count()} cores on this machine, load {os.getloadavg()[0]:.1f}), "
          f"best of {args.repeat}")

    def stage_cpu(x: dict) -> float:
        return x["decode"] + x["detect"] + x["landmarks"] + x["write"]

    runs_s, runs_j, runs_r = [], [], []
    for rep in range(max(1, args.repeat)):
        runs_s.append(stage_split(videos, args.frames, det_opts, adaptive=not args.no_adaptive))
        runs_j.append(whole_job(videos, args.frames, adaptive=not args.no_adaptive))
        if args.reference:
            runs_r.append(reference_style(videos[: args.reference], args.frames))
        line = (f"  run {rep + 1}: stages {runs_s[-1]['kept'] / stage_cpu(runs_s[-1]):.1f}, whole job "
                f"{runs_j[-1]['kept'] / runs_j[-1]['cpu']:.1f}")
        if runs_r:
            line += f", reference {runs_r[-1]['kept'] / runs_r[-1]['cpu']:.2f}"
        print(line + " frames/s per core", flush=True)

    s = min(runs_s, key=stage_cpu)
    cpu = stage_cpu(s)
    print(f"\n[stages] {s['kept']} frames kept, {s['decoded']} decoded of {s['frames_in_videos']} in the videos "
          f"({100 * s['decoded'] / s['frames_in_videos']:.0f}%), {s['faces']} faces; detector: {s['adapted']} "
          f"hinted frames ({s['roi']} scanned in a region around the previous faces, {s['roi_rejected']} of them "
          f"redone whole), {s['retries']} full-size retries")
    for k in ("decode", "detect", "landmarks", "write"):
        print(f"  {k:<10} {s[k]:7.2f} s CPU  {1000 * s[k] / s['kept']:6.1f} ms/frame  {100 * s[k] / cpu:5.1f}%")
    print(f"  {'total':<10} {cpu:7.2f} s CPU  -> {s['kept'] / cpu:.1f} frames/s per core "
          f"(wall {s['wall']:.1f} s -> {s['kept'] / s['wall']:.1f} frames/s)")

    j = min(runs_j, key=lambda x: x["cpu"])
    print(f"\n[prepare] run_prepare, workers=1: {j['kept']} frames, {j['faces']} faces, "
          f"{100 * j['share']:.1f}% of frames with a face; {j['cpu']:.2f} s CPU -> {j['kept'] / j['cpu']:.1f} "
          f"frames/s per core (wall {j['wall']:.1f} s -> {j['kept'] / j['wall']:.1f} frames/s)")

    if runs_r:
        r = min(runs_r, key=lambda x: x["cpu"])
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
