"""Face-detector recall and speed on the kinds of face prepare meets: frontal frames, tight crops, small faces,
turned faces (proxies).

    .venv/bin/python benchmarks/face_detectors.py                      # 10 originals + 8 fakes, 3 frames each
    .venv/bin/python benchmarks/face_detectors.py --videos 4 --fakes 0 --frames 2 --detectors hog_before,hog
    .venv/bin/python benchmarks/face_detectors.py --write-generic /tmp/crops   # also write tight/small crops as
                                                                    # a generic dataset (real/ and fake/ folders)

Images, all made from frames of the shared FF++ c40 sample (research-only: nothing made here may be committed):

- ``frontal``: the frame as decoded (mostly frontal faces, 480p-1080p);
- ``tight``: a square cut around the face (centre jittered by 5% of the box), side 0.75-1.1x the reference box:
  the face fills it and touches its borders, as in WildDeepfake and many DFDC / Celeb-DF derivatives; 256 px;
- ``small``: a square cut of side 1.2-1.6x the box, resized to 64-112 px (a 40-90 px face);
- ``rotated``: a square of side 2.2x the box rotated in-plane by 30-60 degrees (random sign), 320 px: a proxy
  for roll only;
- ``squeezed``: a cut of side 1.5x the box squeezed horizontally to 0.55 of its width, 256 px high: a crude proxy
  for yaw (a turned face is narrower); real profile views also hide one half of the face, which this does not.

The reference box of a frame is the largest confident face dlib HOG finds on the full-resolution frame (no
downscale, one pyramid upsampling): frames where it finds none are not used, so ``frontal`` recall is relative to
that reference (biased towards HOG, say so when quoting it). A detection counts when a box overlaps the reference
box mapped into the image with IoU > 0.3 (for ``rotated``: the box of the reference's side around its rotated
centre). Time: CPU milliseconds per image, one thread (``time.thread_time``), models loaded beforehand. ``lm err``:
for tight / small images, the mean distance of the matched face's 68 landmarks from the reference landmarks, in %
of the reference box side (how usable the face is for masks, not only whether it was found).

Detectors (``--detectors``): ``hog_before`` (dlib HOG as before the context retry: ``pad=0, small_side=0``),
``hog`` (the default: context retry on), ``cnn`` (dlib MMOD, context retry on), ``hog+cnn`` (``dlib_hog_cnn``:
CNN only where HOG found nothing), ``mtcnn`` (facenet-pytorch, installed by hand; skipped when missing), ``haar``
(OpenCV's frontal + profile cascades, landmarks by the dlib predictor), ``whole_image`` (the face-crop fallback:
the image as the box; tight / small only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

KINDS = ("frontal", "tight", "small", "rotated", "squeezed")
DETECTORS = ("hog_before", "hog", "cnn", "hog+cnn", "mtcnn", "haar", "whole_image")


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def sample_frames(root: Path, videos: int, fakes: int, frames: int) -> list[tuple[str, str, int, np.ndarray]]:
    """(label, video name, frame index, rgb): ``videos`` originals and ``fakes`` manipulated videos spread over
    the methods present, ``frames`` evenly spaced frames each."""
    from unmask.data.media import sample_video_frames

    out = []
    orig = sorted((root / "original_sequences" / "youtube" / "c40" / "videos").glob("*.mp4"))[:videos]
    methods = sorted(p for p in (root / "manipulated_sequences").glob("*") if (p / "c40" / "videos").is_dir())
    fake_vids: list[Path] = []
    per = [sorted((m / "c40" / "videos").glob("*.mp4")) for m in methods]
    k = 0
    while len(fake_vids) < fakes and any(per):
        lst = per[k % len(per)]
        if lst:
            fake_vids.append(lst.pop(0))
        k += 1
    for label, vids in (("real", orig), ("fake", fake_vids)):
        for v in vids:
            name = v.stem if label == "real" else f"{v.parent.parent.parent.name}/{v.stem}"
            for index, rgb in sample_video_frames(v, frames).frames:
                out.append((label, name, index, rgb))
    return out


def _warp(rgb, center, scale_xy, angle, out_wh):
    """Affine cut: ``center`` -> the output's centre, scaled by (sx, sy) and rotated by ``angle`` degrees."""
    import cv2

    sx, sy = scale_xy
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) @ np.diag([sx, sy])
    ow, oh = out_wh
    t = np.array([ow / 2.0, oh / 2.0]) - rot @ np.asarray(center, np.float64)
    m = np.hstack([rot, t[:, None]])
    img = cv2.warpAffine(rgb, m, (ow, oh), flags=cv2.INTER_AREA if max(sx, sy) < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return img, m


def make_kind(kind: str, rgb: np.ndarray, box: np.ndarray, lm: np.ndarray, rng: np.random.Generator):
    """(image, reference box in it, reference 68 landmarks in it) for one kind of face."""
    c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    side = float(max(box[2] - box[0], box[3] - box[1]))
    if kind == "frontal":
        return rgb, box.astype(np.float64), lm
    if kind == "rotated":
        out, cut, angle, sxy = (320, 320), 2.2 * side, float(rng.uniform(30, 60) * rng.choice([-1, 1])), None
        s = out[0] / cut
        sxy = (s, s)
    elif kind == "squeezed":
        cut, angle = 1.5 * side, 0.0
        s = 256 / cut
        sxy, out = (0.55 * s, s), (round(0.55 * 256), 256)
    else:
        lo, hi = (0.75, 1.1) if kind == "tight" else (1.2, 1.6)
        px = 256 if kind == "tight" else int(rng.integers(64, 113))
        cut, angle = float(rng.uniform(lo, hi)) * side, 0.0
        c = c + rng.uniform(-0.05, 0.05, 2) * side  # the face is not always centred
        s = px / cut
        sxy, out = (s, s), (px, px)
    img, m = _warp(rgb, c, sxy, angle, out)
    pts = np.hstack([lm, np.ones((len(lm), 1))]) @ m.T
    cc = m @ np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.0])
    hw, hh = (box[2] - box[0]) / 2 * sxy[0], (box[3] - box[1]) / 2 * sxy[1]
    if kind == "rotated":
        hw = hh = side / 2 * sxy[0]
    return np.ascontiguousarray(img), np.array([cc[0] - hw, cc[1] - hh, cc[0] + hw, cc[1] + hh]), pts.astype(np.float32)


class Haar:
    """OpenCV's Haar cascades (frontal, then profile both ways), landmarks by the dlib predictor."""

    def __init__(self):
        import cv2

        from unmask.data.faces import _shape_predictor, dlib_model_path

        d = cv2.data.haarcascades
        self.frontal = cv2.CascadeClassifier(os.path.join(d, "haarcascade_frontalface_default.xml"))
        self.profile = cv2.CascadeClassifier(os.path.join(d, "haarcascade_profileface.xml"))
        self.pred = _shape_predictor(dlib_model_path())

    def detect(self, rgb):
        import cv2

        from unmask.data.faces import Face, downscale, predict_landmarks68

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        small, s, _ = downscale(gray, min(1.0, 640 / max(gray.shape)))
        found = list(self.frontal.detectMultiScale(small, 1.1, 5, minSize=(30, 30)))
        if not found:
            found = list(self.profile.detectMultiScale(small, 1.1, 5, minSize=(30, 30)))
        if not found:
            fl = small[:, ::-1].copy()
            found = [(fl.shape[1] - x - w, y, w, h) for x, y, w, h in self.profile.detectMultiScale(fl, 1.1, 5,
                                                                                                   minSize=(30, 30))]
        out = []
        for x, y, w, h in found:
            b = np.array([x, y, x + w, y + h], np.float32) / s
            out.append(Face(box=b, score=1.0, landmarks68=predict_landmarks68(gray, b, self.pred)))
        return out


class WholeImage:
    def detect(self, rgb):
        from unmask.data.faces import whole_image_face

        f = whole_image_face(rgb)
        return [f] if f is not None else []


def build(name: str):
    from unmask.data.faces import build_face_detector
    from unmask.errors import UnmaskError

    if name == "hog_before":
        return build_face_detector("dlib_hog", pad=0, small_side=0)
    if name == "hog":
        return build_face_detector("dlib_hog")
    if name == "cnn":
        return build_face_detector("dlib_cnn")
    if name == "hog+cnn":
        return build_face_detector("dlib_hog_cnn")
    if name == "mtcnn":
        try:
            return build_face_detector("mtcnn")
        except UnmaskError as exc:
            print(f"mtcnn skipped: {exc}", file=sys.stderr)
            return None
    if name == "haar":
        return Haar()
    if name == "whole_image":
        return WholeImage()
    raise SystemExit(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")


def write_generic(images: list[tuple[str, str, str, int, np.ndarray]], out: Path) -> None:
    """tight / small images as a generic dataset: ``out/real/<kind>_...png`` and ``out/fake/<method>/...png``."""
    from unmask.io import atomic_save_png

    for kind, label, name, index, img in images:
        parts = name.split("/")
        folder = out / "real" if label == "real" else out / "fake" / parts[0]
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save_png(folder / f"{kind}_{parts[-1]}_{index:04d}.png", img)
    print(f"wrote {len(images)} images under {out} (real/, fake/<method>/): unmask prepare generic {out} ...")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.environ.get("UNMASK_FFPP_SAMPLE", str(REPO.parent / "shared" / "data" /
                                                                              "ffpp_sample")))
    ap.add_argument("--videos", type=int, default=10, help="original videos")
    ap.add_argument("--fakes", type=int, default=8, help="manipulated videos (spread over the methods)")
    ap.add_argument("--frames", type=int, default=3, help="frames per video")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--detectors", default=",".join(DETECTORS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-generic", default=None, metavar="DIR",
                    help="also write the tight and small images as a generic dataset into DIR")
    args = ap.parse_args()

    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from unmask.data.faces import build_face_detector

    root = Path(args.root)
    if not (root / "original_sequences").is_dir():
        raise SystemExit(f"shared FF++ sample not found at {root} (--root or UNMASK_FFPP_SAMPLE)")
    kinds = [k for k in args.kinds.split(",") if k]
    names = [d for d in args.detectors.split(",") if d]
    rng = np.random.default_rng(args.seed)
    ref_det = build_face_detector("dlib_hog", detect_max_side=0, upsample=1, pad=0, small_side=0)
    frames = sample_frames(root, args.videos, args.fakes, args.frames)
    cases: dict[str, list] = {k: [] for k in kinds}
    generic = []
    used = 0
    for label, name, index, rgb in frames:
        faces = [f for f in ref_det.detect(rgb) if f.score >= 0.1]
        if not faces:
            continue
        used += 1
        f = faces[0]
        for k in kinds:
            img, box, lm = make_kind(k, rgb, f.box, f.landmarks68, rng)
            cases[k].append((img, box, lm))
            if k in ("tight", "small"):
                generic.append((k, label, name, index, img))
    print(f"{len(frames)} frames from {args.videos} originals + {args.fakes} fakes, {used} with a reference face; "
          f"{used} images per kind")
    if args.write_generic:
        write_generic(generic, Path(args.write_generic))

    results: dict[tuple[str, str], tuple[float, float, float | None]] = {}
    for dname in names:
        det = build(dname)
        if det is None:
            continue
        for k in kinds:
            if dname == "whole_image" and k not in ("tight", "small"):
                continue
            hits, t, errs = 0, 0.0, []
            for img, box, lm in cases[k]:
                c0 = time.thread_time()
                got = det.detect(img)
                t += time.thread_time() - c0
                best = max(got, key=lambda g: iou(g.box, box), default=None)
                if best is not None and iou(best.box, box) > 0.3:
                    hits += 1
                    if k in ("tight", "small"):
                        side = max(box[2] - box[0], box[3] - box[1])
                        errs.append(float(np.linalg.norm(best.landmarks68 - lm, axis=1).mean() / side))
            n = max(len(cases[k]), 1)
            results[(dname, k)] = (hits / n, 1000 * t / n, float(np.median(errs)) if errs else None)
        print(f"  {dname}: done", file=sys.stderr)

    print()
    print("| detector | " + " | ".join(f"{k} recall | ms" for k in kinds) + " | lm err tight / small (% box) |")
    print("| --- | " + " | ".join("--- | ---" for _ in kinds) + " | --- |")
    for dname in names:
        if not any((dname, k) in results for k in kinds):
            continue
        cells = []
        for k in kinds:
            r = results.get((dname, k))
            cells.append("-- | --" if r is None else f"{r[0]:.3f} | {r[1]:.1f}")
        errs = [results.get((dname, k), (0, 0, None))[2] for k in ("tight", "small")]
        err = " / ".join("--" if e is None else f"{100 * e:.1f}" for e in errs)
        print(f"| {dname} | " + " | ".join(cells) + f" | {err} |")


if __name__ == "__main__":
    main()
