"""Step cost of paper 003's PIM and DualFlat against a plain step (and SAM), side by side, on the same batch.

Targets (issue 12): PIM <= 2.05x a plain step (one extra forward/backward, plus the statistics), DualFlat <= 3.1x
(two extra passes). Every method starts from the same weights and steps on the same fixed batch; their steps
are interleaved (plain, pim, dualflat, sam, plain, ...) so that a busy machine slows all alike, and the ratios
are medians of per-round ratios. On CPU the ratios use each step's process CPU time (``time.process_time``, one
torch thread), which other jobs on a shared machine do not inflate; wall times are printed too. Plain / PIM / DualFlat use SGD; SAM is the SAM optimizer over SGD. DualFlat runs
with a non-zero clean coefficient (alpha 0.5, beta 0.3) so that all three gradients are kept.

    .venv/bin/python benchmarks/pim_step.py                                 # CPU: resnet18@224, lite0@224
    .venv/bin/python benchmarks/pim_step.py --models convnext_base@224 --batch 32 --device cuda --steps 10
"""

from __future__ import annotations

import argparse

METHODS = {
    "plain": ["method.name=baseline", "optim.name=sgd"],
    "pim": ["method.name=pim", "optim.name=sgd"],
    "dualflat": ["method.name=dualflat", "method.alpha=0.5", "method.beta=0.3", "optim.name=sgd"],
    "sam": ["method.name=baseline", "optim.name=sam"],
}


def measure(backbone: str, size: int, batch: int, steps: int, device: str) -> tuple[dict, dict]:
    """Per-method step times over ``steps`` interleaved rounds: (wall seconds, process CPU seconds)."""
    import torch

    from _interleaved import build_runs, interleaved_steps

    dev = torch.device(device)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * batch, 3, size, size, generator=g).to(dev)
    b = {"image": x, "label": torch.cat([torch.zeros(batch), torch.ones(batch)]).long().to(dev)}
    runs = build_runs(METHODS, [f"model.backbone={backbone}", "model.pretrained=null", f"model.input_size={size}",
                                "optim.lr=0.001"], dev)
    wall, cpu = interleaved_steps(runs, b, steps, dev, rotate=False)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18@224", "tf_efficientnet_lite0@224"], help="backbone@size")
    ap.add_argument("--batch", type=int, default=8, help="real images per step (as many fakes are added)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    targets = {"pim": 2.05, "dualflat": 3.1, "sam": None}
    print(f"device {args.device}, batch {args.batch}+{args.batch}, {args.steps} interleaved rounds after a warm-up, "
          f"torch threads {torch.get_num_threads()}")
    for spec in args.models:
        backbone, size = spec.split("@")
        wall, cpu = measure(backbone, int(size), args.batch, args.steps, args.device)
        times = cpu if args.device == "cpu" else wall
        clock = "CPU s" if args.device == "cpu" else "s"
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        wmed = {k: sorted(v)[len(v) // 2] for k, v in wall.items()}
        cells = [f"plain {med['plain']:.3f} {clock}"]
        for name in ("pim", "dualflat", "sam"):
            ratios = sorted(t / p for t, p in zip(times[name], times["plain"]))
            r = ratios[len(ratios) // 2]
            tgt = targets[name]
            verdict = "" if tgt is None else (f" (target <= {tgt}: {'ok' if r <= tgt else 'OVER'})")
            cells.append(f"{name} {med[name]:.3f} {clock} = {r:.2f}x{verdict}")
        print(f"{spec:<26} " + " | ".join(cells), flush=True)
        print(f"{'':<26} wall medians: " + ", ".join(f"{k} {v:.3f} s" for k, v in wmed.items()), flush=True)


if __name__ == "__main__":
    main()
