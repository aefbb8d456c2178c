"""Where `unmask detect` spends its time on one video: decode, face detection, cropping, model.

A 10 s 720p H.264 video (25 fps, a keyframe every 2 s) is made in a temp folder -- from the shared FF++
sample's original 183.mp4 when it is beside the repo (re-encoded, looped to 10 s), else from skimage's
astronaut drifting and zooming across a 1280x720 canvas -- and scored at 32 evenly spaced frames by the
same code `unmask detect` runs (``MediaScorer``), on CPU, for each backbone (random init: speed does not
depend on the weights). The target: decode + faces + crop under half of the model's time.

    .venv/bin/python benchmarks/detect_speed.py [--repeats 3] [--threads N] [--backbones efficientnet_b4@380,resnet18@224]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FFPP_ORIGINAL = REPO.parent / "shared" / "data" / "ffpp_sample" / "original_sequences" / "youtube" / "c40" / "videos" / "183.mp4"


def _astronaut_frames(n: int, w: int = 1280, h: int = 720):
    import cv2
    from skimage import data

    face = data.astronaut()
    for i in range(n):
        t = i / max(n - 1, 1)
        size = int(360 + 120 * np.sin(2 * np.pi * t))
        img = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
        canvas = np.full((h, w, 3), 40, np.uint8)
        x = int((w - size) * (0.2 + 0.6 * t))
        y = (h - size) // 2
        canvas[y:y + size, x:x + size] = img
        yield canvas


def _ffpp_frames(n: int, w: int = 1280, h: int = 720):
    import av
    import cv2

    frames = []
    with av.open(str(FFPP_ORIGINAL)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) >= n:
                break
    for i in range(n):
        rgb = frames[i % len(frames)]
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
        yield rgb


def make_video(path: Path, seconds: float = 10.0, fps: int = 25, gop: int = 50) -> str:
    """Encode a 1280x720 H.264 video; returns where its frames came from."""
    import av

    n = int(seconds * fps)
    source = "FF++ 183.mp4 re-encoded" if FFPP_ORIGINAL.is_file() else "astronaut, moving and zooming"
    frames = _ffpp_frames(n) if FFPP_ORIGINAL.is_file() else _astronaut_frames(n)
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 1280, 720, "yuv420p"
        st.codec_context.gop_size = gop
        st.options = {"crf": "23", "preset": "veryfast"}
        for rgb in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return source


def run(backbones: list[tuple[str, int]], repeats: int, frames: int, detect_max_side: int) -> None:
    import torch

    from unmask.data.faces import build_face_detector
    from unmask.evaluate.scoring import MediaScorer
    from unmask.models import build_detector

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "clip_720p_10s.mp4"
        t0 = time.perf_counter()
        source = make_video(video)
        print(f"video: 1280x720, 10 s, 25 fps, keyframe every 2 s ({source}); encoded in {time.perf_counter() - t0:.1f} s")
        print(f"torch threads: {torch.get_num_threads()}, frames sampled: {frames}, "
              f"face detector: dlib HOG at longest side {detect_max_side}")
        faces = build_face_detector("dlib_hog", detect_max_side=detect_max_side)
        header = f"{'backbone':<22} {'decode':>8} {'faces':>8} {'crop':>8} {'model':>8} {'total':>8}  non-model/model  faces found"
        print(header)
        print("-" * len(header))
        for name, size in backbones:
            det = build_detector(name, pretrained=None, input_size=size).eval()
            scorer = MediaScorer(det, faces, num_frames=frames, batch_size=frames)
            scorer.score(video)  # warm-up (first forward allocates, the decoder opens)
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                res = scorer.score(video)
                total = time.perf_counter() - t
                runs.append({**res.timings, "total": total})
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            non_model = med["decode"] + med["faces"] + med["crop"]
            n_faces = sum(len(fr.faces) for fr in res.frames)
            print(f"{name + '@' + str(size):<22} {med['decode']:>7.2f}s {med['faces']:>7.2f}s {med['crop']:>7.2f}s "
                  f"{med['model']:>7.2f}s {med['total']:>7.2f}s  {non_model / med['model']:>14.2f}  "
                  f"{n_faces} in {len(res.frames)} frames")
        print("target: non-model / model < 0.5 (median of the repeats)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", default="efficientnet_b4@380,resnet18@224")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--detect-max-side", type=int, default=640, help="longest side the face detector sees")
    a = p.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    bbs = []
    for spec in a.backbones.split(","):
        name, _, size = spec.partition("@")
        bbs.append((name, int(size or 224)))
    run(bbs, a.repeats, a.frames, a.detect_max_side)
    return 0


if __name__ == "__main__":
    sys.exit(main())
