"""Throughput of `unmask prle-maps` (paper 001 sec. III-B static localization) per CPU core, or on a GPU.

Paper 001 sec. IV-G: "this stage consumes ten images per second" (two RTX 3090s, its three-member zoo). Here the
whole per-face job of ``unmask.commands.prle_maps.compute_maps`` is timed -- stored-crop decode, 20% margin window,
resize, Grad-CAM forward + backward of every member, resize back, 8-bit PNG sidecar written atomically -- on real
PNG crops: a prepared store (--data, e.g. the shared FF++ sample's) or, without one, a synthetic store of the
embedded astronaut portrait at prepare's crop size. Members are random-init networks of the given backbones at the
given input size (Grad-CAM costs the same whatever the weights). On CPU, one torch thread and process CPU time
(``time.process_time``), which other jobs on a shared machine do not inflate: faces/s per core. Each member alone,
then the zoo together (a face's crop is decoded once for all members).

    .venv/bin/python benchmarks/prle_maps.py                                   # paper zoo @256, 8 synthetic faces
    .venv/bin/python benchmarks/prle_maps.py --zoo tf_efficientnet_lite0@128 resnet10t@128 --faces 32
    .venv/bin/python benchmarks/prle_maps.py --data prepared/ffpp_c23 --device cuda --faces 512 --batch-size 64
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

PAPER_ZOO = ["xception@256", "efficientnet_b4@256", "vgg16@256"]  # sec. IV-B zoo; sec. IV-A: 256 x 256 faces


def synthetic_store(root: Path, faces: int) -> Path:
    """A prepared store of ``faces`` astronaut crops (~ prepare's SBI large-margin crop of a 512 px portrait)."""
    import numpy as np
    from skimage import data

    from unmask.data.faces import build_face_detector
    from unmask.data.store import encode_png
    from unmask.io import atomic_write_bytes, atomic_write_json

    img = np.ascontiguousarray(data.astronaut())
    f = build_face_detector("dlib_hog").detect(img)[0]
    atomic_write_json(root / "store.json", {"format": "unmask-prepared", "version": 1, "options": {}})
    key = "generic/real/na/astronaut"
    frames = []
    for i in range(faces):
        dx = i % 5  # slightly different crops: no two faces are the same bytes
        crop = np.ascontiguousarray(img[0:480, 20 + dx:470 + dx])
        rel = f"crops/{key}/{i:06d}_0.png"
        atomic_write_bytes(root / rel, encode_png(crop))
        x0, y0, x1, y1 = (float(v) for v in f.box)
        frames.append({"index": i, "faces": [{"face_index": 0, "crop": rel, "mask": None, "score": 1.0,
                                              "box": [x0 - 20 - dx, y0, x1 - 20 - dx, y1],
                                              "landmarks": np.zeros((81, 2)).tolist(), "frame_box": [x0, y0, x1, y1],
                                              "crop_origin": [20 + dx, 0]}]})
    row = {"dataset": "generic", "video_id": "astronaut", "label": 0, "method": "real", "source": "astronaut",
           "split": "train", "compression": None, "identity": None, "mask_source": None, "extra": {}}
    atomic_write_json(root / "items" / f"{key}.json", {"format_version": 1, "key": key, "row": row, "frames": frames,
                                                       "status": "ok", "outcome": "ok"})
    return root


def build_member(spec: str, device: str):
    from unmask.commands.prle_maps import ZooMember
    from unmask.models import build_detector

    name, _, size = spec.partition("@")
    opts = {"mlp_ratio": 1 / 64} if name.startswith("vgg") and name.endswith("-narrow") else {}
    det = build_detector(name.removesuffix("-narrow"), pretrained=None, input_size=int(size or 256), **opts)
    return ZooMember(name.replace("@", "_"), det.to(device).eval(), {}, {})


def time_run(store: Path, faces, zoo, map_set: str, batch_size: int, device: str) -> tuple[float, float]:
    """(wall s, process CPU s) of computing ``zoo``'s maps of ``faces`` into a fresh map set."""
    import torch

    from unmask.commands.prle_maps import compute_maps

    shutil.rmtree(store / "maps" / map_set, ignore_errors=True)
    if device == "cuda":
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    res = compute_maps(store, faces, zoo, map_set, batch_size=batch_size, progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    assert res["counts"]["written_faces"] == len(faces), res["failures"][:3]
    return w, c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", nargs="+", default=PAPER_ZOO, metavar="BACKBONE@SIZE",
                    help="zoo members (timm backbone or paper name @ input size; vgg11-narrow = the tiny VGG)")
    ap.add_argument("--data", help="prepared store whose (train) faces are used (default: a synthetic store)")
    ap.add_argument("--faces", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1: figures per core)")
    args = ap.parse_args()

    import torch

    from unmask.data.store import PreparedStore

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="prle_maps_bench_"))
    try:
        if args.data:  # copy the chosen faces' store view: never write maps into the user's store
            src = PreparedStore(args.data)
            faces = src.faces(split="train")[: args.faces]
            store = tmp / "store"
            store.mkdir()
            shutil.copy(src.root / "store.json", store / "store.json")
            for key in sorted({f.item_key for f in faces}):
                (store / "items" / key).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src.root / "items" / f"{key}.json", store / "items" / f"{key}.json")
                shutil.copytree(src.root / "crops" / key, store / "crops" / key)
            faces = [f for f in PreparedStore(store).faces(split="train")][: args.faces]
        else:
            store = synthetic_store(tmp / "store", args.faces)
            faces = PreparedStore(store).faces()
        zoo = [build_member(s, args.device) for s in args.zoo]
        time_run(store, faces[:2], zoo, "warmup", args.batch_size, args.device)  # first-call costs
        unit = "per core" if args.device == "cpu" and args.threads == 1 else f"on {args.device}"
        print(f"prle-maps throughput ({len(faces)} faces, {'--data ' + args.data if args.data else 'synthetic store'}, "
              f"batch {args.batch_size}, {args.device}, {args.threads if args.device == 'cpu' else '-'} thread(s))")
        print(f"| zoo | faces/s {unit} (CPU time) | faces/s (wall) |")
        print("| --- | --- | --- |")
        rows = [[m] for m in zoo] + ([zoo] if len(zoo) > 1 else [])
        for members in rows:
            w, c = time_run(store, faces, members, "bench", args.batch_size, args.device)
            label = " + ".join(m.name for m in members)
            rate_c = len(faces) / c if args.device == "cpu" else float("nan")
            print(f"| {label} | {rate_c:.2f} | {len(faces) / w:.2f} |")
        print("paper 001 sec. IV-G: 10 images/s for the static stage (two RTX 3090s, Xception + EfficientNet + VGG)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
