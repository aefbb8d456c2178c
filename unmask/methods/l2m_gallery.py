"""See paper 004's masks: a gallery of face | teacher attention (eq. 2) | per-head maps (eq. 1) | masked positions
(eq. 4), from an ``l2m`` run's ``last.pt`` (the teacher lives only there), and the diversity between heads printed.

    .venv/bin/python -m unmask.methods.l2m_gallery --checkpoint RUN --data STORE [--split val] [--n 6] --out l2m.png

Faces are the store's split, half real and half fake (evenly spaced), cropped as validation crops them.
Printed per face: the label, the teacher's (ViT branch) fake probability, the mean pairwise cosine similarity of
the last block's heads (d_ij of eq. 3, i != j: 0 = disjoint heads, 1 = identical) and the diversity loss.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unmask.errors import UnmaskError


def load_l2m_module(run: str | Path):
    """The whole training module (teacher + student) and its config, from ``RUN/last.pt``."""
    from unmask.methods import build_method
    from unmask.models.checkpoint import load_checkpoint
    from unmask.train.config import train_config_from_dict

    path = Path(run)
    path = path / "last.pt" if path.is_dir() else path
    state = load_checkpoint(path)
    cfg = train_config_from_dict(state["config"])
    module_state = (state.get("training") or {}).get("module")
    if cfg.method.name != "l2m" or module_state is None:
        raise UnmaskError(f"{path} is not an l2m training checkpoint with its teacher (use the run's last.pt)")
    cfg.model.pretrained, cfg.method.teacher.pretrained = None, None  # the weights come from the checkpoint
    module = build_method(cfg).build()
    module.load_state_dict(module_state)
    return module.eval(), cfg


def pairwise_head_similarity(head_maps: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity d_ij over i != j of (B, h, N) head maps -> (B,)."""
    a = F.normalize(head_maps.float(), dim=-1)
    d = a @ a.transpose(1, 2)
    h = d.shape[-1]
    off = ~torch.eye(h, dtype=torch.bool)
    return d[:, off].mean(dim=-1)


def gallery(run: str | Path, store: str | Path, out: str | Path, split: str = "val", n: int = 6) -> list[dict]:
    from matplotlib import pyplot as plt

    from unmask.data.store import PreparedStore
    from unmask.models.l2m import attention_mask, diversity_loss
    from unmask.train.data import FaceDataset

    module, cfg = load_l2m_module(run)
    faces = PreparedStore(store).faces(split=split, largest_only=True, datasets=cfg.data.dataset)
    reals = [f for f in faces if f.label == 0]
    fakes = [f for f in faces if f.label == 1]
    if not reals and not fakes:
        raise UnmaskError(f"no faces in split {split!r} of {store}")
    pick = [reals[i] for i in np.linspace(0, len(reals) - 1, min(len(reals), (n + 1) // 2)).astype(int)] if reals else []
    pick += [fakes[i] for i in np.linspace(0, len(fakes) - 1, min(len(fakes), n - len(pick))).astype(int)] if fakes else []
    ds = FaceDataset(pick, module.student.input_size, float(cfg.data.val_margin), augment=False)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        t = module.teacher(x)
    o = cfg.method
    heads = t["head_maps"].shape[1]
    gh, gw = module.teacher.grid
    scores = torch.from_numpy(np.random.default_rng(0).random((len(pick), gh * gw))) if o.strategy == "random" else None
    mask = attention_mask(t["attention"], o.mask_ratio, o.strategy, scores)  # on the teacher's grid
    sim = pairwise_head_similarity(t["head_maps"])
    prob = t["logits_vit"].softmax(1)[:, 1]
    cols = 3 + heads
    fig, axes = plt.subplots(len(pick), cols, figsize=(1.6 * cols, 1.7 * len(pick)), squeeze=False)
    rows = []
    for i, rec in enumerate(pick):
        img = x[i].permute(1, 2, 0).numpy()
        panels = [("face", img, None), ("mean (eq. 2)", t["attention"][i].numpy(), "viridis")]
        panels += [(f"head {j + 1}", t["head_maps"][i, j].view(gh, gw).numpy(), "viridis") for j in range(heads)]
        masked = img.copy()
        m = F.interpolate(mask[i].view(1, 1, gh, gw), size=img.shape[:2], mode="nearest")[0, 0].numpy()
        masked[m == 0] = masked[m == 0] * 0.25
        panels.append((f"masked ({o.strategy})", masked, None))
        for ax, (title, arr, cmap) in zip(axes[i], panels):
            ax.imshow(arr, cmap=cmap)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        label = "fake" if rec.label == 1 else "real"
        axes[i][0].set_title(f"{label} p={float(prob[i]):.2f}", fontsize=7)
        row = {"label": label, "method": getattr(rec, "method", None), "p_fake_teacher": float(prob[i]),
               "head_similarity": float(sim[i]), "diversity_loss": float(diversity_loss(t["head_maps"][i:i + 1], o.diversity))}
        rows.append(row)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="an l2m run directory (or its last.pt)")
    ap.add_argument("--data", required=True, help="a prepared store")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", default="l2m_attention.png")
    args = ap.parse_args(argv)
    try:
        rows = gallery(args.checkpoint, args.data, args.out, args.split, args.n)
    except UnmaskError as exc:
        print(f"l2m_gallery: error: {exc}", file=sys.stderr)
        return 1
    print("| face | method | teacher p(fake) | mean head cosine (i != j) | diversity loss |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['label']} | {r['method']} | {r['p_fake_teacher']:.3f} | {r['head_similarity']:.3f} | "
              f"{r['diversity_loss']:.3f} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
