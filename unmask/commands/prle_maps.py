"""Paper 001 (PRLE) static localization, sec. III-B: the model zoo's Grad-CAM map of every stored training face.

Each --zoo run (a trained detector: checkpoint file or run directory; NAME=RUN names it, else its backbone does)
gives, for every stored face of the --split(s) (default: train), one Grad-CAM map (eq. 3; --cam-target, default
the fake log-odds, which after normalization is eq. 3's fake-score map; see unmask.explain.gradcam) on its
registered target layer (the last convolutional activation), normalized to [0, 1] per face. The detector sees
the face as training cuts it: the box widened by --margin per side (default 0.20, the largest training margin,
so every random training window lies inside), resized to its input size; the map is resized back into that
window of a map with exactly the stored crop's height and width (0 outside the window). Maps are cached beside
the crops as lossless 8-bit PNG sidecars (<store>/maps/<map set>/<member>/..., + manifest.json), so training
cuts them with the same random window and flip as the image (unmask.data.map_sidecars). The fusion of eq. 6-8
(average with tau1, neighbouring with lambda) happens at training time (unmask.methods.prle_fusion), so one map
set serves every fusion ablation. Nothing of this enters a trained detector's checkpoint.

Resumable (existing maps are skipped: a rerun computes only what is missing) and sharded like prepare (--shard
i/n by item key: run the shards anywhere, into the same store). Per-face failures are recorded in
<store>/maps/<map set>/summaries/shard-<i>-of-<n>.json and summarized; the exit code is 1 only when faces were
left to do and none succeeded.

--gallery OUT.png draws paper Fig. 3 / 4 / 7 for --gallery-count faces (reals and fakes): face | each zoo map |
average fused (tau1) | neighbour fused (lambda) | the image masked at alpha = 0.1 ... 1.0 (the top-alpha share of
the neighbour-fused map's non-zero pixels, eq. 9-12), at the --margin window.

  unmask prle-maps --zoo runs/zoo_xception runs/zoo_efficientnet runs/zoo_vgg --data prepared/ffpp_c23
  unmask prle-maps --zoo X=runs/zoo_xception E=runs/zoo_efficientnet --data prepared/ffpp_c23 --shard 3/8
  unmask prle-maps --zoo runs/zoo_xception runs/zoo_efficientnet runs/zoo_vgg --data prepared/ffpp_c23 \\
      --gallery prle_gallery.png --gallery-count 8
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unmask.cli import CommandError

DEFAULT_MAP_SET = "zoo"
MAP_MARGIN = 0.20  # the largest training margin (paper 000 sec. 4.1 / README: 4-20%): every training window fits
GALLERY_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from unmask.explain.gradcam import CAM_TARGETS
    from unmask.methods.prle_fusion import LAMBDA, TAU1

    p.add_argument("--zoo", nargs="+", required=True, metavar="RUN",
                   help="zoo detectors: checkpoint files or run directories, each optionally NAME=RUN (default name: "
                        "its backbone)")
    p.add_argument("--data", required=True, metavar="STORE", help="prepared store (unmask prepare)")
    p.add_argument("--map-set", default=DEFAULT_MAP_SET,
                   help=f"name of the map set under <store>/maps/ (default {DEFAULT_MAP_SET}); one zoo per map set")
    p.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                   help="store split(s) whose faces get maps (repeatable; default: train)")
    p.add_argument("--cam-target", default="logodds", choices=CAM_TARGETS,
                   help="what Grad-CAM differentiates (default logodds = eq. 3's fake score after normalization)")
    p.add_argument("--margin", type=float, default=MAP_MARGIN,
                   help=f"margin per side of the window the zoo sees, a fraction of the box (default {MAP_MARGIN})")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="process shard I of N (default 0/1: all)")
    p.add_argument("--batch-size", type=int, default=16, help="faces per Grad-CAM pass (default 16)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--gallery", metavar="OUT.png", help="also draw the gallery (paper Fig. 3/4/7) to this PNG")
    p.add_argument("--gallery-count", type=int, default=6, help="faces in the gallery (default 6, reals and fakes)")
    p.add_argument("--tau1", type=float, default=TAU1, help=f"gallery: average-fusion threshold (default {TAU1})")
    p.add_argument("--lam", type=float, default=LAMBDA, help=f"gallery: neighbouring-fusion lambda (default {LAMBDA})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# --- the zoo ------------------------------------------------------------------------------------------------


@dataclass
class ZooMember:
    name: str
    detector: Any
    meta: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _layer_name(model, layer) -> str:
    for name, mod in model.named_modules():
        if mod is layer:
            return name
    return type(layer).__name__


def parse_zoo(specs: Sequence[str]) -> list[tuple[str | None, str]]:
    """``["NAME=RUN" | "RUN", ...]`` -> [(name or None, run)]; a RUN path may itself contain '=' only with NAME=."""
    out = []
    for s in specs:
        name, sep, run = s.partition("=")
        if sep and name and "/" not in name and not Path(s).exists():
            out.append((name, run))
        else:
            out.append((None, s))
    return out


def load_zoo(specs: Sequence[str], device: str) -> list[ZooMember]:
    """Load every zoo detector (eval mode, on ``device``) with a unique member name and its checkpoint info."""
    from unmask.data.map_sidecars import check_name
    from unmask.models import load_detector

    members: list[ZooMember] = []
    used: set[str] = set()
    for name, run in parse_zoo(specs):
        det, meta = load_detector(run, device=device)
        base = name or str(meta.get("backbone") or meta.get("arch") or "member")
        base = "".join(c if (c.isalnum() or c in "._-") else "_" for c in base).strip("._-") or "member"
        unique, n = base, 2
        while unique in used:
            unique, n = f"{base}-{n}", n + 1
        if name and unique != name:
            raise CommandError(f"zoo member name {name!r} is used twice")
        check_name(unique, "zoo member")
        used.add(unique)
        info = {"name": unique, "checkpoint": str(meta.get("path")), "checkpoint_sha256": _sha256(meta["path"]),
                "arch": meta.get("arch", "timm_classifier"), "backbone": meta.get("backbone"),
                "input_size": int(det.input_size), "cam_layer": _layer_name(det, det.cam_layer),
                "epoch": meta.get("epoch"), "step": meta.get("step"), "val": meta.get("val"),
                "paper": (meta.get("config") or {}).get("paper")}
        members.append(ZooMember(unique, det, meta, info))
    return members


# --- maps -------------------------------------------------------------------------------------------------


def member_map(det, crops: Sequence[np.ndarray], cam_target: str, device) -> np.ndarray:
    """Grad-CAM maps (B, S, S) in [0, 1] of ``det`` for window crops (RGB uint8, any size)."""
    from unmask.evaluate.scoring import to_batch
    from unmask.explain.gradcam import gradcam_maps

    x = to_batch(list(crops), det.input_size).to(device)
    maps, _ = gradcam_maps(det, x, cam_target=cam_target)
    return np.clip(np.nan_to_num(maps, nan=0.0), 0.0, 1.0)


def paste_map(cam: np.ndarray, window: Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    """A model-size map -> a map of the crop's ``shape`` (H, W): resized (bilinear) into ``window`` = (x0, y0, x1,
    y1), zeros outside."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in window)
    out = np.zeros(shape, np.float32)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = np.clip(cv2.resize(np.asarray(cam, np.float32), (x1 - x0, y1 - y0),
                                               interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return out


def compute_maps(store_root: str | os.PathLike, faces: Sequence, zoo: Sequence[ZooMember], map_set: str, *,
                 cam_target: str = "logodds", margin: float = MAP_MARGIN, batch_size: int = 16,
                 progress: bool = True) -> dict[str, Any]:
    """Write every missing member map of ``faces``; returns counts and the per-face failures."""
    from unmask.data.crops import margin_crop
    from unmask.data.map_sidecars import sidecar_path, write_member_map
    from unmask.data.store import load_rgb

    names = [m.name for m in zoo]
    todo = [f for f in faces if not all(sidecar_path(store_root, map_set, f, n).is_file() for n in names)]
    counts = {"faces": len(faces), "already_done": len(faces) - len(todo), "written_faces": 0, "maps_written": 0,
              "failed_faces": 0}
    failures: list[dict[str, str]] = []
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="prle-maps", unit="face")
    bs = max(1, int(batch_size))
    for start in range(0, len(todo), bs):
        chunk, crops, windows, shapes = [], [], [], []
        for rec in todo[start:start + bs]:
            try:
                img = load_rgb(rec.crop_path)
                cut = margin_crop(img, rec.box, None, float(margin))
                if cut.image.size == 0:
                    raise ValueError("empty face window (degenerate box)")
            except Exception as exc:  # one unreadable crop must not stop the job
                failures.append({"crop": rec.crop_path, "member": "*", "reason": _reason(exc)})
                continue
            chunk.append(rec)
            crops.append(cut.image)
            windows.append(cut.window)
            shapes.append(img.shape[:2])
        failed = set()
        for m in zoo:
            need = [i for i, rec in enumerate(chunk) if not sidecar_path(store_root, map_set, rec, m.name).is_file()]
            if not need:
                continue
            try:
                cams = member_map(m.detector, [crops[i] for i in need], cam_target, next(m.detector.parameters()).device)
            except Exception as exc:
                for i in need:
                    failures.append({"crop": chunk[i].crop_path, "member": m.name, "reason": _reason(exc)})
                    failed.add(i)
                continue
            for j, i in enumerate(need):
                try:
                    write_member_map(store_root, map_set, chunk[i], m.name, paste_map(cams[j], windows[i], shapes[i]),
                                     check_geometry=False)
                    counts["maps_written"] += 1
                except Exception as exc:
                    failures.append({"crop": chunk[i].crop_path, "member": m.name, "reason": _reason(exc)})
                    failed.add(i)
        n_bad_load = len(todo[start:start + bs]) - len(chunk)
        counts["failed_faces"] += len(failed) + n_bad_load
        counts["written_faces"] += len(chunk) - len(failed)
        if bar is not None:
            bar.update(len(todo[start:start + bs]))
    if bar is not None:
        bar.close()
    return {"counts": counts, "failures": failures}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


# --- gallery ----------------------------------------------------------------------------------------------


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    import cv2

    band = np.full((16, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text[:18], (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile])


def gallery_rows(store_root, map_set: str, faces: Sequence, members: Sequence[str], *, tau1: float, lam: float,
                 margin: float = MAP_MARGIN, tile: int = 112,
                 alphas: Sequence[float] = GALLERY_ALPHAS) -> tuple[np.ndarray, list[str]]:
    """The gallery image (RGB uint8) and its column titles: per face, face | each member's map | average fused |
    neighbour fused | I * (1 - V_alpha (.) M_b) per alpha (``methods.prle``'s top-alpha masking of the neighbour-
    fused map), all cut by the face's ``margin`` window."""
    import cv2

    from unmask.data.crops import margin_crop, resize_face
    from unmask.data.map_sidecars import load_maps
    from unmask.data.store import load_rgb
    from unmask.explain.gradcam import overlay
    from unmask.methods.prle import mask_image  # the masking `prle` trains with (eq. 11, zero fill)
    from unmask.methods.prle_fusion import fuse, top_alpha_mask

    titles = ["face", *members, f"average t1={tau1:g}", f"neighbour l={lam:g}", *[f"a={a:g}" for a in alphas]]
    rows = []
    for rec in faces:
        img = load_rgb(rec.crop_path)
        maps = load_maps(store_root, map_set, rec, members)
        x0, y0, x1, y1 = margin_crop(img, rec.box, None, float(margin)).window
        face = img[y0:y1, x0:x1]
        cut = maps[:, y0:y1, x0:x1]
        # fused at the crop's geometry, then cut by the window: what `prle` trains with (its fused-map cache)
        avg = fuse(maps, "average", tau1=tau1, lam=lam).value[y0:y1, x0:x1]
        nb = fuse(maps, "neighbour", tau1=tau1, lam=lam).value[y0:y1, x0:x1]
        cells = [face] + [overlay(face, c) for c in cut] + [overlay(face, avg), overlay(face, nb)]
        cells += [mask_image(face, top_alpha_mask(nb, nb > 0, a)) for a in alphas]
        cells = [resize_face(np.ascontiguousarray(c), tile) for c in cells]
        label = f"fake {rec.method}" if rec.label == 1 else "real"
        cells[0] = cells[0].copy()
        cv2.putText(cells[0], label[:16], (3, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate(cells, axis=1))
    header = np.concatenate([_label(np.zeros((0, tile, 3), np.uint8), t) for t in titles], axis=1)
    sep = np.full((2, header.shape[1], 3), 255, np.uint8)
    parts = [header]
    for r in rows:
        parts += [r, sep]
    return np.concatenate(parts), titles


def pick_gallery_faces(faces: Sequence, count: int) -> list:
    """``count`` faces spread evenly over the reals and the fakes (half each where both exist)."""
    from unmask.evaluate.aggregate import pick_evenly

    reals = [f for f in faces if f.label == 0]
    fakes = [f for f in faces if f.label != 0]
    if not reals or not fakes:
        return pick_evenly(list(faces), count)
    n_real = max(1, count // 2)
    return pick_evenly(reals, n_real) + pick_evenly(fakes, max(1, count - n_real))


# --- the command ------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from unmask.data.map_sidecars import map_set_dir, sidecar_path, write_map_manifest
    from unmask.data.prepare import in_shard, parse_shard
    from unmask.data.store import PreparedStore
    from unmask.evaluate.scoring import default_device
    from unmask.io import atomic_save_png, atomic_write_json

    if not Path(args.data).is_dir():
        raise CommandError(f"prepared store not found: {args.data}")
    if not 0.0 <= args.margin <= 2.0:
        raise CommandError(f"--margin must be between 0 and 2 (a fraction of the box per side), got {args.margin}")
    if args.batch_size < 1 or args.gallery_count < 1:
        raise CommandError("--batch-size and --gallery-count must be at least 1")
    store = PreparedStore(args.data)
    shard = parse_shard(args.shard)
    splits = args.splits or ["train"]
    faces = [f for f in store.faces(split=splits) if in_shard(f.item_key, shard)]
    if not faces and shard[1] == 1:  # a shard of a larger job may be empty; the whole job may not
        raise CommandError(f"no stored faces in split(s) {','.join(splits)} of {store.root} (--split names the "
                           "store's splits: train, val, test)")
    device = args.device or default_device()
    zoo = load_zoo(args.zoo, device)
    names = [m.name for m in zoo]
    write_map_manifest(store.root, args.map_set, names, [m.info for m in zoo], args.cam_target,
                       margin=float(args.margin), splits=splits)
    result = compute_maps(store.root, faces, zoo, args.map_set, cam_target=args.cam_target, margin=args.margin,
                          batch_size=args.batch_size, progress=not args.no_progress)
    c = result["counts"]
    summary = {"store": str(store.root), "map_set": args.map_set, "members": names, "splits": splits,
               "shard": f"{shard[0]}/{shard[1]}", "cam_target": args.cam_target, "margin": float(args.margin),
               **c, "failures": result["failures"]}
    out_dir = map_set_dir(store.root, args.map_set)
    atomic_write_json(out_dir / "summaries" / f"shard-{shard[0]}-of-{shard[1]}.json", summary)
    print(f"prle-maps: map set {args.map_set!r} in {out_dir} (members: {', '.join(names)}; target {args.cam_target})")
    print(f"faces: {c['faces']} in splits {','.join(splits)} of shard {shard[0]}/{shard[1]}: {c['already_done']} "
          f"already done, {c['written_faces']} written ({c['maps_written']} maps), {c['failed_faces']} failed")
    for f in result["failures"][:10]:
        print(f"  failed: {f['crop']} [{f['member']}]: {f['reason']}")
    if len(result["failures"]) > 10:
        print(f"  ... {len(result['failures']) - 10} more in {out_dir / 'summaries'}")
    if args.gallery:
        done = [f for f in store.faces(split=splits)
                if all(sidecar_path(store.root, args.map_set, f, n).is_file() for n in names)]
        if not done:
            raise CommandError(f"no face of splits {','.join(splits)} has all maps of map set {args.map_set!r} yet: "
                               "run the remaining shards first")
        img, _ = gallery_rows(store.root, args.map_set, pick_gallery_faces(done, args.gallery_count), names,
                              tau1=args.tau1, lam=args.lam, margin=args.margin)
        atomic_save_png(args.gallery, img)
        print(f"gallery: {args.gallery} ({min(len(done), args.gallery_count)} faces; columns: face | "
              f"{' | '.join(names)} | average | neighbour | masks at alpha {GALLERY_ALPHAS[0]:g}..{GALLERY_ALPHAS[-1]:g})")
    todo = c["faces"] - c["already_done"]
    if todo and c["written_faces"] == 0:
        raise CommandError(f"no map could be made for the {todo} faces left to do (see {out_dir / 'summaries'})")
    return 0
