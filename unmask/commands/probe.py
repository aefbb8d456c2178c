"""Probe a detector's sensitivity to its shallow feature statistics (paper 003 sec. III-A, Tables II-III, Fig. 1/3).

At the checkpoint's shallow stage (the module PIM perturbs; README "Networks"), every sample's per-channel mean
is scaled by --mean-factor (1.2) and its variance by --var-factor (0.65; the std by its square root), as the
paper does to "limit variation". The stored faces of --data are scored before and after, face by face (the
largest face of each of --frames evenly spaced frames per video, the evaluation crop: 12.5% margin), and the
command reports accuracy at 0.5, log loss and AUC per manipulation (its fakes against all reals) and over all.
It also draws the pooled features (the classifier's input) of real and fake faces before and after, in 2-D
with scikit-learn's t-SNE fitted once on both sets (so the two panels share one map), as Fig. 1 / Fig. 3.

Outputs in --out (default: <run dir>/probe): probe.md (the table), probe.json, tsne.png.

  unmask probe --checkpoint runs/pim --data prepared/ffpp_c23 --split test
  unmask probe --checkpoint runs/baseline --data prepared/ffpp_c23 --split test --frames 8 --out probe/baseline
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from unmask.cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    p.add_argument("--data", required=True, help="prepared store (unmask prepare)")
    p.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                   help="store split(s) to probe (repeatable; default: test)")
    p.add_argument("--frames", type=int, default=8, help="evenly spaced frames per video (default 8)")
    p.add_argument("--mean-factor", type=float, default=1.2, help="scale of the channel means (default 1.2)")
    p.add_argument("--var-factor", type=float, default=0.65, help="scale of the channel variances (default 0.65)")
    p.add_argument("--max-points", type=int, default=1500, help="faces drawn in the t-SNE plot (default 1500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the t-SNE and of the plotted subset (default 0)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", help="output folder (default: <run dir>/probe)")


def probe_features(detector, records, mean_factor: float, var_factor: float, batch_size: int = 32):
    """(probs_before, probs_after, feats_before, feats_after) of stored face records: the 12.5% evaluation crop,
    one forward per image without and one with the statistics scaled at ``detector.shallow_stage``."""
    import torch

    from unmask.data.crops import margin_crop
    from unmask.data.store import load_rgb
    from unmask.evaluate.scoring import TEST_MARGIN, to_batch
    from unmask.models.pim import FeatureStatPerturber

    device = next(detector.parameters()).device
    detector.eval()
    pim = FeatureStatPerturber(mean_factor, var_factor)
    out = {k: [] for k in ("p0", "p1", "f0", "f1")}
    with torch.inference_mode(), pim.installed(detector.shallow_stage):
        for i in range(0, len(records), batch_size):
            chunk = records[i:i + batch_size]
            x = to_batch([margin_crop(load_rgb(r.crop_path), r.box, None, TEST_MARGIN).image for r in chunk],
                         detector.input_size).to(device)
            for mode, pk, fk in (("off", "p0", "f0"), ("scale", "p1", "f1")):
                pim.off() if mode == "off" else pim.scale()
                logits, feats = detector(x, return_features=True)
                out[pk].append(logits.float().softmax(1)[:, 1].cpu().numpy())
                out[fk].append(feats.float().cpu().numpy())
    return tuple(np.concatenate(out[k]) for k in ("p0", "p1", "f0", "f1"))


def metric_row(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import log_loss

    from unmask.evaluate.metrics import accuracy, auc

    both = len(set(y.tolist())) == 2
    return {"n": int(len(y)), "acc": accuracy(y, p, 0.5),
            "logloss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
            "auc": auc(y, p) if both else None}


def probe_table(y: np.ndarray, methods: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> list[dict]:
    """Rows per manipulation (its fakes + all reals) and over all faces: metrics before and after."""
    rows = []
    fakes = sorted({m for m, lab in zip(methods, y) if lab == 1})
    for name in [*fakes, "all"]:
        sel = np.ones(len(y), bool) if name == "all" else ((y == 0) | (methods == name))
        rows.append({"set": name, "before": metric_row(y[sel], p0[sel]), "after": metric_row(y[sel], p1[sel])})
    return rows


def table_markdown(rows: list[dict], title: str) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    lines = [f"# {title}", "", "| set | faces | Acc before | Acc after | Logloss before | Logloss after | AUC before | "
             "AUC after |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        b, a = r["before"], r["after"]
        lines.append(f"| {r['set']} | {b['n']} | {f(b['acc'])} | {f(a['acc'])} ({a['acc'] - b['acc']:+.4f}) | "
                     f"{f(b['logloss'])} | {f(a['logloss'])} ({a['logloss'] - b['logloss']:+.4f}) | {f(b['auc'])} | "
                     f"{f(a['auc'])} |")
    return "\n".join(lines) + "\n"


def tsne_png(path: Path, f0: np.ndarray, f1: np.ndarray, y: np.ndarray, methods: np.ndarray, *, max_points: int,
             seed: int, title: str) -> None:
    """Fig. 1 / Fig. 3 style: one t-SNE of before + after features, drawn as two panels (real vs each fake)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from unmask.io import atomic_write_bytes

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(y), size=min(max_points, len(y)), replace=False))
    feats = np.concatenate([f0[idx], f1[idx]]).astype(np.float64)
    if feats.shape[1] > 50 and feats.shape[0] > 50:
        feats = PCA(n_components=50, random_state=seed).fit_transform(feats)
    perplexity = float(min(30.0, max(5.0, (len(feats) - 1) / 4)))
    emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(feats)
    n = len(idx)
    yy, mm = y[idx], methods[idx]
    names = ["real", *sorted({m for m, lab in zip(mm, yy) if lab == 1})]
    colours = {"real": "#1f77b4"}
    palette = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    colours.update({m: palette[i % len(palette)] for i, m in enumerate(names[1:])})
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharex=True, sharey=True)
    for ax, part, label in ((axes[0], emb[:n], "before"), (axes[1], emb[n:], "after (shallow statistics perturbed)")):
        for name in names:
            sel = (yy == 0) if name == "real" else ((yy == 1) & (mm == name))
            ax.scatter(part[sel, 0], part[sel, 1], s=7, alpha=0.7, c=colours[name], label=name, linewidths=0)
        ax.set_title(label, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="best", fontsize=8, markerscale=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    from unmask.data.store import PreparedStore
    from unmask.evaluate.report import jsonable
    from unmask.evaluate.scoring import open_detector, select_records
    from unmask.io import atomic_write_text

    if not (0 < args.var_factor) or not (args.frames > 0):
        raise CommandError("--var-factor must be > 0 and --frames > 0")
    data = Path(args.data)
    if not (data / "store.json").is_file():
        raise CommandError(f"{data} is not a prepared store (no store.json): run unmask prepare first")
    detector, meta = open_detector(args.checkpoint, device=args.device)
    splits = args.splits or ["test"]
    records = PreparedStore(data).faces(split=splits, largest_only=True)
    records = select_records(records, args.frames)
    if not records:
        raise CommandError(f"no stored faces in split(s) {', '.join(splits)} of {data}")
    y = np.array([int(r.label) for r in records])
    if len(set(y.tolist())) < 2:
        raise CommandError(f"split(s) {', '.join(splits)} of {data} hold only one class; the probe needs real and fake")
    methods = np.array([str(r.method) for r in records])
    p0, p1, f0, f1 = probe_features(detector, records, args.mean_factor, args.var_factor, args.batch_size)
    rows = probe_table(y, methods, p0, p1)
    ck = Path(meta.get("path") or args.checkpoint)
    out = Path(args.out) if args.out else (ck.parent if ck.is_file() else ck) / "probe"
    out.mkdir(parents=True, exist_ok=True)
    stage = next((n for n, m in detector.named_modules() if m is detector.shallow_stage),
                 type(detector.shallow_stage).__name__)  # e.g. net.blocks.1
    title = (f"{meta.get('backbone', meta.get('arch'))}: mean x{args.mean_factor:g}, variance x{args.var_factor:g} at "
             f"the shallow stage ({stage}); {', '.join(splits)} of {data.name}, {len(records)} faces")
    md = table_markdown(rows, title)
    atomic_write_text(out / "probe.md", md)
    atomic_write_text(out / "probe.json", json.dumps(jsonable({
        "checkpoint": str(ck), "data": str(data), "splits": splits, "frames": args.frames,
        "mean_factor": args.mean_factor, "var_factor": args.var_factor, "shallow_stage": stage, "rows": rows}),
        indent=1))
    tsne_png(out / "tsne.png", f0, f1, y, methods, max_points=args.max_points, seed=args.seed, title=title)
    print(md)
    print(f"wrote {out / 'probe.md'}, {out / 'probe.json'}, {out / 'tsne.png'}")
    return 0
