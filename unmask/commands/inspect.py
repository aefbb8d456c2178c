"""Render prepared faces (or faces found in an image/video) with boxes and landmarks to one PNG.

PATH may be a prepared store (the output of `unmask prepare`): a grid of stored crops, chosen evenly across
the store's faces, each with its detector box (blue), the test-time 12.5% margin crop (yellow), the 68 dlib
landmarks (red), the 13 forehead points (green) and the manipulation mask (magenta) when stored.
PATH may also be an image or a video: the same face pipeline runs on it (N evenly spaced frames) and the
whole frames are drawn. Without PATH, the embedded astronaut portrait (scikit-image) is used.

examples:
  unmask inspect prepared/ffpp_c40 --out inspect.png --n 12
  unmask inspect prepared/ffpp_c40 --method Deepfakes --split val --out df.png
  unmask inspect my_video.mp4 --n 4 --out faces.png
  unmask inspect --out astronaut.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from unmask.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", default=None,
                        help="prepared store, image or video (default: the embedded astronaut image)")
    parser.add_argument("--out", default="inspect.png", help="PNG to write (default inspect.png)")
    parser.add_argument("--n", type=int, default=8, help="faces (store) or frames (video) to draw (default 8)")
    parser.add_argument("--cols", type=int, default=4, help="grid columns (default 4)")
    parser.add_argument("--tile", type=int, default=256, help="tile size in pixels (default 256)")
    parser.add_argument("--item", default=None, help="store: only items whose key contains this text")
    parser.add_argument("--method", default=None, help="store: only this method (e.g. real, Deepfakes)")
    parser.add_argument("--split", default=None, help="store: only this split")
    parser.add_argument("--seed", type=int, default=None, help="store: pick faces at random with this seed")


def _pick(n_total: int, n: int, seed: int | None) -> list[int]:
    if n_total <= n:
        return list(range(n_total))
    if seed is None:
        return sorted({int(i) for i in np.round(np.linspace(0, n_total - 1, n))})
    return sorted(np.random.default_rng(seed).choice(n_total, n, replace=False).tolist())


def render_store(path: Path, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    from unmask.data.render import annotated_tile, grid
    from unmask.data.store import PreparedStore, load_mask, load_rgb

    store = PreparedStore(path)
    faces = store.faces(split=args.split, methods=[args.method] if args.method else None)
    if args.item:
        faces = [f for f in faces if args.item in f.item_key]
    if not faces:
        raise CommandError(f"no stored face in {path} matches the filters")
    tiles, caps = [], []
    for i in _pick(len(faces), args.n, args.seed):
        f = faces[i]
        rgb = load_rgb(f.crop_path)
        mask = load_mask(f.mask_path) if f.mask_path else None
        tiles.append(annotated_tile(rgb, args.tile, [(f.box, f.landmarks)], mask=mask))
        label = "fake" if f.label else "real"
        caps.append(f"{f.method} {f.video_id} fr {f.frame_index} face {f.face_index}\n"
                    f"{label} {f.split or '-'} score {f.score:.2f} {rgb.shape[1]}x{rgb.shape[0]}")
    s = store.summary()
    note = (f"{len(tiles)} of {len(faces)} faces; store: {s['items']} items, {s['faces']} faces, "
            f"{100 * s['face_frame_share']:.1f}% of frames with a face")
    return grid(tiles, caps, cols=args.cols), note


def render_media(path: Path | None, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    from unmask.data.media import is_image, is_video, load_image, sample_video_frames
    from unmask.data.prepare import FacePipeline
    from unmask.data.render import annotated_tile, grid

    if path is None:
        from skimage import data

        frames, name = [(0, np.ascontiguousarray(data.astronaut()))], "astronaut (skimage.data)"
    elif is_image(path):
        frames, name = [(0, load_image(path))], path.name
    elif is_video(path):
        frames, name = sample_video_frames(path, args.n).frames, path.name
    else:
        raise CommandError(f"{path} is not a prepared store, an image or a video")
    pipe = FacePipeline()
    tiles, caps, n_faces = [], [], 0
    for index, rgb in frames:
        faces = pipe.faces(rgb)
        n_faces += len(faces)
        tiles.append(annotated_tile(rgb, args.tile, [(f.box, f.landmarks81) for f in faces]))
        caps.append(f"{name} frame {index}\n{len(faces)} face(s)"
                    + (f", score {faces[0].score:.2f}" if faces else ": no face"))
    return grid(tiles, caps, cols=args.cols), f"{len(frames)} frame(s), {n_faces} face(s)"


def run(args: argparse.Namespace) -> int:
    from unmask.data.store import STORE_META
    from unmask.io import atomic_save_png

    if args.n < 1:
        raise CommandError("--n must be at least 1")
    path = Path(args.path).expanduser() if args.path else None
    if path is not None and not path.exists():
        raise CommandError(f"{path} does not exist")
    if path is not None and path.is_dir():
        if not (path / STORE_META).is_file():
            raise CommandError(f"{path} is not a prepared store (no {STORE_META}); run `unmask prepare` first")
        canvas, note = render_store(path, args)
    else:
        canvas, note = render_media(path, args)
    out = atomic_save_png(args.out, canvas, compression=3)
    print(f"wrote {out} ({canvas.shape[1]}x{canvas.shape[0]}): {note}")
    return 0
