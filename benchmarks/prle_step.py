"""PRLE's cost over the supervised baseline (paper 001 Table VIII: < 3% training time on Xception), in one run.

Two parts, side by side for each backbone:

1. **Train step** on the same batch: ``baseline``, ``prle`` and a second ``baseline`` (the A/A control: what two
   identical steps differ by on this machine) start from the same weights and step on the same images,
   interleaved with the order rotated every round so a busy machine slows all alike; the prle batch carries
   the loader's flags (half the samples augmented), so its step adds only eq. 13's per-sample weighting. The
   overhead is the median of per-round ratios (process CPU time on CPU, wall time on CUDA).
2. **Loader work per sample** (one core, numpy, in the data-loader workers): a plain ``FaceDataset`` item vs the
   ``prle`` recipe's item (the cached fused map decoded, cut by the same window, resized, flipped, top-alpha
   mask, masking; in the first epoch also the 3 zoo maps decoded and fused by neighbouring fusion at the stored
   crop's geometry, then cached) on a temporary store of crops at FF++ c40 stored-crop size (about 470x420 px,
   noise images and blob maps; the decode / fusion cost does not depend on content), interleaved the same way.

The end-to-end figure adds the loader's extra work per step (p x batch masked samples) to the step overhead:
serial (``num_workers = 0``, the worst case: relative to step + the plain loading) and with ``--workers``
loader processes working in parallel with the step (the extra hides entirely when the workers keep up; the
printed figure spreads it over them, relative to the step).

    .venv/bin/python benchmarks/prle_step.py                                    # CPU: resnet50@256, xception@256
    .venv/bin/python benchmarks/prle_step.py --models xception@256 --batch 64 --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _median(v: list[float]) -> float:
    return sorted(v)[len(v) // 2]


def measure_step(arch_spec: str, size: int, batch: int, steps: int, device: str) -> tuple[dict, dict, list[float]]:
    import torch

    from _interleaved import build_runs, interleaved_steps

    arch, _, backbone = arch_spec.rpartition(":")
    dev = torch.device(device)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    b = {"image": torch.rand(batch, 3, size, size, generator=g).to(dev),
         "label": (torch.arange(batch) % 2).long().to(dev),
         "prle_aug": (torch.arange(batch) % 4 < 2).float().to(dev)}
    common = [f"model.arch={arch or 'timm_classifier'}", f"model.backbone={backbone}", "model.pretrained=null",
              f"model.input_size={size}", "optim.name=adam", "optim.lr=0.0002"]
    methods = {"baseline": ["method.name=baseline"], "prle": ["method.name=prle"],
               "baseline_b": ["method.name=baseline"]}
    wall, cpu = interleaved_steps(build_runs(methods, common, dev), b, steps, dev)  # rotated order
    times = cpu if dev.type == "cpu" else wall
    ratios = {k: [p / q for p, q in zip(times[k], times["baseline"])] for k in ("prle", "baseline_b")}
    return wall, cpu, ratios


def measure_loss_ops(batch: int, reps: int = 2000) -> tuple[float, float]:
    """Seconds per call, forward + backward on (batch, 2) logits: baseline's mean CE vs eq. 13 (per-sample CE
    weighted by gamma on the masked samples) with its metrics: the whole of what prle adds to a step."""
    import torch
    import torch.nn.functional as F

    from unmask.methods.prle import prle_loss

    logits = torch.randn(batch, 2, requires_grad=True)
    labels = torch.arange(batch) % 2
    aug = (torch.arange(batch) % 4 < 2).float()

    def ce():
        F.cross_entropy(logits.float(), labels).backward()

    def eq13():
        loss, per = prle_loss(logits, labels, aug, 1.0)
        loss.backward()
        a = aug > 0.5
        float(per.detach()[a].mean()), float(per.detach()[~a].mean()), float(a.float().mean())

    out = []
    for fn in (ce, eq13):
        fn()
        t = time.process_time()
        for _ in range(reps):
            fn()
        out.append((time.process_time() - t) / reps)
    return out[0], out[1]


def synthetic_store(root: Path, n: int, shape=(472, 420), members=("xception", "efficientnet_b4", "vgg16")):
    """``n`` stored crops (noise) with a map per member (a Gaussian blob around the face centre)."""
    import cv2
    import numpy as np

    from unmask.data.map_sidecars import write_map_manifest, write_member_map
    from unmask.data.records import FAKE, REAL, FaceRecord

    rng = np.random.default_rng(0)
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    records = []
    for i in range(n):
        label = REAL if i % 2 == 0 else FAKE
        key = f"bench/{'real' if label == REAL else 'Fake'}/na/v{i}"
        path = root / "crops" / key / "0_0.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        box = np.array([w * 0.25, h * 0.3, w * 0.75, h * 0.85], np.float32)
        rec = FaceRecord(item_key=key, dataset="bench", video_id=f"v{i}", label=label,
                         method="real" if label == REAL else "Fake", split="train", frame_index=0, face_index=0,
                         crop_path=str(path), box=box, landmarks=np.zeros((81, 2), np.float32), score=1.0,
                         frame_box=box, crop_origin=(0, 0))
        for j, m in enumerate(members):
            cx, cy = w * (0.45 + 0.05 * j), h * (0.55 + 0.03 * j)
            write_member_map(root, "zoo", rec, m, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.1 * w) ** 2)))
        records.append(rec)
    write_map_manifest(root, "zoo", list(members), [{"name": m} for m in members], "logodds")
    return records


def measure_loader(size: int, samples: int, rounds: int) -> dict[str, float]:
    """Per-sample process CPU seconds of a plain vs a PRLE (p = 1: every sample masked) FaceDataset item: medians
    over ``rounds`` epochs after the first, and the first epoch's (``prle_first``: it fuses and caches the maps)."""
    from unmask.methods.prle import PRLEAugment
    from unmask.train.data import FaceDataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        records = synthetic_store(root, samples)
        sets = {"plain": FaceDataset(records, size, (0.04, 0.20), augment=True),
                "prle_p1": FaceDataset(records, size, (0.04, 0.20), augment=True, face_aug=PRLEAugment(p=1.0),
                                       store_root=str(root))}
        sets["plain"][0]
        out: dict[str, list[float]] = {k: [] for k in sets}
        for r in range(rounds + 1):
            for name, ds in sets.items():
                ds.set_epoch(r)
                c = time.process_time()
                for i in range(len(ds)):
                    ds[i]
                out[name].append((time.process_time() - c) / len(ds))
    return {"prle_first": out["prle_p1"][0], **{k: _median(v[1:]) for k, v in out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50@256", "xception@256"],
                    help="[arch:]backbone@size, e.g. xception@256, f3net:xception@256")
    ap.add_argument("--batch", type=int, default=8, help="images per step")
    ap.add_argument("--steps", type=int, default=5, help="interleaved rounds after a warm-up")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--samples", type=int, default=24, help="loader items per round")
    ap.add_argument("--workers", type=int, default=4, help="loader processes assumed for the parallel figure")
    ap.add_argument("--p", type=float, default=0.5, help="PRLE's p: the share of samples that pay the masking")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = "CPU s" if args.device == "cpu" else "s"
    print(f"device {args.device}, batch {args.batch}, {args.steps} interleaved rounds after a warm-up, torch threads "
          f"{torch.get_num_threads()}; PRLE p = {args.p}; Table VIII target: < 3%")
    sizes = sorted({int(s.rpartition("@")[2]) for s in args.models})
    loader = {s: measure_loader(s, args.samples, 3) for s in sizes}
    for s, d in loader.items():
        extra = d["prle_p1"] - d["plain"]
        print(f"loader @{s}: plain item {1e3 * d['plain']:.2f} ms, masked item {1e3 * d['prle_p1']:.2f} ms "
              f"(+{1e3 * extra:.2f} ms per masked sample, one core); first epoch, fusing and caching the maps: "
              f"{1e3 * d['prle_first']:.2f} ms per item", flush=True)
    ce, eq13 = measure_loss_ops(args.batch)
    print(f"loss ops (forward + backward + metrics, batch {args.batch}): baseline CE {1e6 * ce:.0f} us, prle eq. 13 "
          f"{1e6 * eq13:.0f} us: +{1e3 * (eq13 - ce):.3f} ms per step, all prle adds to the step itself", flush=True)
    for spec in args.models:
        arch_bb, _, size = spec.rpartition("@")
        size = int(size)
        wall, cpu, ratios = measure_step(arch_bb, size, args.batch, args.steps, args.device)
        times = cpu if args.device == "cpu" else wall
        base, prle = _median(times["baseline"]), _median(times["prle"])
        step_over = _median(ratios["prle"]) - 1.0
        noise = _median(ratios["baseline_b"]) - 1.0
        d = loader[size]
        extra_batch = args.p * args.batch * (d["prle_p1"] - d["plain"])  # loader seconds a step adds, one core
        serial = step_over + extra_batch / (base + args.batch * d["plain"])
        parallel = step_over + extra_batch / args.workers / base
        verdict = "ok" if parallel < 0.03 else "OVER"
        print(f"{spec:<22} step: baseline {base:.3f} {clock}, prle {prle:.3f} {clock} = {100 * step_over:+.2f}% "
              f"(A/A control: {100 * noise:+.2f}%) | + loader: {100 * serial:+.2f}% serial (0 workers), "
              f"{100 * parallel:+.2f}% with {args.workers} workers ({verdict})", flush=True)


if __name__ == "__main__":
    main()
