"""Shared by the step benchmarks: several methods from the same weights, stepped on one fixed batch, interleaved.

Why one helper: a busy shared machine slows whatever runs while it is busy, so a fair comparison steps every
method in the same round, from the same starting weights, on the same batch (and rotates the order so none is
always first). ``pim_step.py`` and ``prle_step.py`` differ only in the methods and the batch they compare.
"""

from __future__ import annotations

import copy
import time


def build_runs(method_overrides: dict[str, list[str]], common: list[str], device) -> dict:
    """name -> (method, optimizer), every model a copy of the first one built (same weights at the start)."""
    import torch

    from unmask.methods import build_method
    from unmask.train.config import load_train_config
    from unmask.train.optim import build_optimizer

    dev = torch.device(device)
    runs, start = {}, None
    for name, overrides in method_overrides.items():
        cfg = load_train_config(None, [*overrides, *common])
        method = build_method(cfg)
        if start is None:
            start = method.build()
        model = copy.deepcopy(start).to(dev)
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else None
        method.attach(model, device=dev, **({"autocast": autocast} if autocast else {}))
        runs[name] = (method, build_optimizer(model.parameters(), cfg.optim))
    return runs


def interleaved_steps(runs: dict, batch: dict, steps: int, device, rotate: bool = True) -> tuple[dict, dict]:
    """One warm-up step each, then ``steps`` rounds of one step per method: (wall s, process CPU s) per method."""
    import torch

    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for method, opt in runs.values():  # warm-up
        method.step(batch, opt, None)
    sync()
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(steps):
        order = names[r % len(names):] + names[:r % len(names)] if rotate else names
        for name in order:
            method, opt = runs[name]
            t, c = time.perf_counter(), time.process_time()
            method.step(batch, opt, None)
            sync()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return wall, cpu
