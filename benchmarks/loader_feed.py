"""Does the data loader keep the GPU fed? Training pairs per second from a prepared store with K workers.

The trainer's own input path (``unmask.train.data.build_train_data`` + the loop's DataLoader settings: EpochSampler,
collate, per-worker seeding, pinned memory on CUDA): decode the stored PNG crop, synthesize the pseudo-fake (SBI /
BBMG), random margin crop, resize to the config's size, augment, batch. No model runs, so the figure is what the
loader alone can deliver; compare it with the model's images/s from ``benchmarks/train_step.py`` (one pair = a real
and its fake = 2 images): the loader keeps up when pairs/s x 2 >= the step's images/s. ``--train-step-json`` does
that comparison for every backbone in that file.

    .venv/bin/python benchmarks/loader_feed.py --store prepared/ffpp_c23 --workers 0 2 4 8
    .venv/bin/python benchmarks/loader_feed.py --store S --config configs/bbmg_nrs/table11_row4_bbmg_nrs.yaml \\
        --workers 8 16 --json loader.json --train-step-json benchmarks/results/train_step_gpu_cuda.json

Default config: configs/sbi/effb4_ffpp.yaml (paper 000's SBI setting: 380 px, 16 reals + 16 fakes per step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(cfg, workers: int, batches: int, device: str) -> dict:
    """Pairs (samples) per second over ``batches`` batches after the first (worker start-up excluded)."""
    import torch
    from torch.utils.data import DataLoader

    from unmask.methods import build_method
    from unmask.train.data import build_train_data
    from unmask.train.seeding import EpochSampler, worker_init_fn

    method = build_method(cfg)
    data = build_train_data(cfg, method.data_recipe)
    b = cfg.batch_size
    sampler = EpochSampler(len(data.train), b, batches + 1, seed=cfg.seed)
    sampler.set_epoch(0)
    data.train.set_epoch(0)
    loader = DataLoader(data.train, batch_size=b, sampler=sampler, collate_fn=data.collate, drop_last=True,
                        num_workers=workers, worker_init_fn=worker_init_fn, pin_memory=device == "cuda",
                        persistent_workers=False, generator=torch.Generator().manual_seed(cfg.seed),
                        prefetch_factor=4 if workers else None)
    if workers:
        import cv2

        cv2.setNumThreads(1)  # as the trainer does before forking workers (unmask.train.loop._cv2_single_thread)
    it = iter(loader)
    t0 = time.perf_counter()
    first = next(it)
    t_first = time.perf_counter() - t0
    n = 0
    t1 = time.perf_counter()
    for batch in it:
        if device == "cuda":
            batch["image"].to("cuda", non_blocking=True)
        n += 1
    dt = time.perf_counter() - t1
    samples = n * b
    img = samples * data.images_per_sample
    return {"workers": workers, "batch": b, "batches": n, "size": cfg.model.input_size,
            "images_per_sample": data.images_per_sample, "samples_s": samples / dt, "img_s": img / dt,
            "first_batch_s": t_first, "train_faces": len(data.train), "image_shape": list(first["image"].shape),
            "method": cfg.method.name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="a prepared store (unmask prepare) with real training faces")
    ap.add_argument("--config", default=str(REPO / "configs" / "sbi" / "effb4_ffpp.yaml"), help="training config")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4], help="DataLoader worker counts to try")
    ap.add_argument("--batches", type=int, default=20, help="batches timed per worker count (after the first)")
    ap.add_argument("--device", default="cpu", help="cuda: pinned memory and a host-to-device copy per batch")
    ap.add_argument("--split", default=None, help="training split of the store (default: the config's)")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the figures to PATH")
    ap.add_argument("--train-step-json", default=None, metavar="PATH",
                    help="benchmarks/train_step.py --json output: say for each backbone whether the loader keeps up")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.input_size=256")
    args = ap.parse_args()

    from unmask._compat.torchvision_ops import ensure_torchvision_ops

    ensure_torchvision_ops()
    from unmask.train.config import load_train_config

    over = [f"data.store={args.store}", *(["data.train_split=" + args.split] if args.split else []), *args.overrides]
    cfg = load_train_config(args.config, over)
    rows = []
    for k in args.workers:
        r = measure(cfg, k, args.batches, args.device)
        rows.append(r)
        print(f"{cfg.method.name} @{r['size']} batch {r['batch']}: {k:>2} workers  {r['samples_s']:8.1f} pairs/s "
              f"= {r['img_s']:8.1f} img/s   (first batch {r['first_batch_s']:.1f} s, {r['train_faces']} faces)",
              flush=True)
    verdicts = []
    if args.train_step_json and Path(args.train_step_json).is_file():
        steps = json.loads(Path(args.train_step_json).read_text()).get("rows", [])
        best = max(rows, key=lambda r: r["img_s"])
        for s in steps:
            need = float(s["img_s"])
            v = {"backbone": s["backbone"], "size": s["size"], "optim": s.get("optim"), "step_img_s": need,
                 "loader_img_s": best["img_s"], "workers": best["workers"], "keeps_up": best["img_s"] >= need}
            verdicts.append(v)
            print(f"{s['backbone']}@{s['size']} {s.get('optim', '')}: the step takes {need:.1f} img/s; the loader gives "
                  f"{best['img_s']:.1f} with {best['workers']} workers at {best['size']} px: "
                  f"{'keeps up' if v['keeps_up'] else 'the GPU waits on data'}", flush=True)
    if args.json:
        import torch

        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"config": args.config, "store": args.store, "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "python": sys.version.split()[0], "rows": rows, "verdicts": verdicts,
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
