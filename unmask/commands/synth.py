"""Gallery of pseudo-fakes for a synthesis recipe: rows of (real | mask | fake) with the options drawn.

Each sample goes through the exact training pipeline (random-margin window from the detector box, resized
to --size, then synthesized), without the final colour/JPEG augmentations, so what you see is what the
detector learns from. With no --store (and no --image) it runs on the embedded astronaut portrait
(scikit-image), detecting its face live -- no dataset needed.

  unmask synth                                         # sbi on the embedded face -> synth.png
  unmask synth --recipe bbmg --store prepared/ffpp --n 16 --out bbmg.png
  unmask synth --recipe configs/synthesis/sbi_global.yaml --set blur.op=median --out median.png
  unmask synth --recipe xray_bi --store prepared/ffpp   # needs faces of at least two identities

Recipes: sbi, bbmg, bbmg_global_only, bbmg_scaled_local, xray_bi, or a YAML file (configs/synthesis/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from unmask.cli import CommandError
from unmask.errors import UnmaskError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="sbi", help="registered recipe name or YAML config (default: sbi)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set blur.op=median (repeatable)")
    p.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--out", default="synth.png", help="output PNG (default: synth.png)")
    p.add_argument("--store", help="prepared store (unmask prepare); default: the embedded astronaut face")
    p.add_argument("--split", default="train", help="store split to draw real faces from (default: train)")
    p.add_argument("--image", help="use the largest face of this image instead of the embedded one")
    p.add_argument("--size", type=int, default=380, help="training crop size the blends are made at (default 380)")
    p.add_argument("--margin", type=float, nargs=2, default=(0.04, 0.20), metavar=("LO", "HI"),
                   help="random margin range per side, fraction of the box (default 0.04 0.20)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0); same seed, same gallery")
    p.add_argument("--tile", type=int, default=192, help="tile size in the gallery (default 192)")
    p.add_argument("--columns", type=int, default=2, help="(real | mask | fake) groups per row (default 2)")
    p.add_argument("--augment", action="store_true", help="also apply the final colour/JPEG augmentations and flip")


def _embedded_faces(image_path: str | None):
    """A one-face 'store' from the astronaut portrait (or --image): detect, then crop as prepare does."""
    from unmask.data.crops import storage_crop
    from unmask.data.faces import build_face_detector
    from unmask.data.records import REAL, FaceRecord

    if image_path:
        from unmask.data.media import load_image

        frame, name = load_image(image_path), Path(image_path).name
    else:
        from skimage import data

        frame, name = np.ascontiguousarray(data.astronaut()), "astronaut (embedded)"
    faces = build_face_detector("dlib_hog").detect(frame)
    if not faces:
        raise CommandError(f"no face found in {name}")
    face = faces[0]
    sc = storage_crop(frame, face.box, face.landmarks81)
    rec = FaceRecord(item_key=f"embedded/{name}", dataset="embedded", video_id=name, label=REAL, method="real",
                     split=None, frame_index=0, face_index=0, crop_path=name, box=sc.box, landmarks=sc.landmarks,
                     score=float(face.score), frame_box=face.box, crop_origin=sc.origin, identity=name)
    image = sc.image
    return [rec], (lambda _rec: image)


def run(args: argparse.Namespace) -> int:
    from unmask.io import atomic_save_png
    from unmask.synthesis import build_synthesizer
    from unmask.synthesis.gallery import render_gallery
    from unmask.synthesis.pair_dataset import PairDataset

    if args.n < 1:
        raise CommandError("--n must be at least 1")
    if args.tile < 16:
        raise CommandError("--tile must be at least 16 pixels")
    lo, hi = args.margin
    if not 0 <= lo <= hi:
        raise CommandError(f"--margin needs 0 <= LO <= HI, got {lo} {hi}")
    try:
        synth = build_synthesizer(args.recipe, overrides=args.overrides)
        loader = None
        if args.store:
            from unmask.data.records import REAL
            from unmask.data.store import PreparedStore

            if not Path(args.store).is_dir():
                raise CommandError(f"prepared store not found: {args.store}")
            faces = PreparedStore(args.store).faces(split=args.split, labels=[REAL])
            if not faces:
                raise CommandError(f"no real faces in split {args.split!r} of {args.store}")
            pick = np.linspace(0, len(faces) - 1, min(args.n, len(faces))).round().astype(int)
            pool_faces = faces
            shown = [faces[i] for i in pick]
        else:
            shown, loader = _embedded_faces(args.image)
            pool_faces = shown
        if synth.needs_pool:
            from unmask.synthesis.pool import DonorPool

            synth = synth.with_pool(DonorPool.from_faces(pool_faces, loader))
        # Repeat faces when there are fewer than --n: each index draws its own options.
        shown = [shown[i % len(shown)] for i in range(args.n)]
        ds = PairDataset(shown, synth, image_size=args.size, margin=tuple(args.margin), seed=args.seed,
                         augment=args.augment, loader=loader)
        samples = [ds.pair(i) for i in range(len(ds))]
    except UnmaskError as exc:
        raise CommandError(str(exc)) from None
    cfg = synth.config
    title = f"recipe {cfg.name}" + (f" -- {cfg.reproduces}" if cfg.reproduces else "")
    if args.overrides:
        title += " | " + " ".join(args.overrides)
    grid = render_gallery(samples, title=title, tile=args.tile, columns=max(1, args.columns))
    out = atomic_save_png(args.out, grid)
    print(f"wrote {out} ({len(samples)} samples, recipe {cfg.name}, {grid.shape[1]}x{grid.shape[0]})")
    return 0
