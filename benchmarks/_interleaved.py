"""Shared by the step benchmarks: several methods from the same weights, stepped on one fixed batch, interleaved.

Why one helper: a busy shared machine slows whatever runs while it is busy, so a fair comparison steps every
method in the same round, from the same starting weights, on the same batch (and rotates the order so none is
always first). ``pim_step.py`` and ``prle_step.py`` differ only in the methods and the batch they compare;
``synthesis_speed.py`` times unmask's pairs against the reference-style SBI pipeline with the same loop
(``interleaved_times``).
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


def interleaved_times(items: dict, rounds: int, block: int = 1, rotate: bool = True) -> tuple[dict, dict]:
    """One warm-up call each, then ``rounds`` rounds in which every item runs ``block`` times in a row (order
    rotated per round unless ``rotate`` is False): (wall s, process CPU s) per item and round. ``items`` maps a
    name to ``fn(k)``, ``k`` a running call number (items that cycle through data use it as an index)."""
    names = list(items)
    for name in names:  # warm-up
        items[name](0)
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    k = 0
    for r in range(rounds):
        for name in (names[r % len(names):] + names[:r % len(names)] if rotate else names):
            t, c = time.perf_counter(), time.process_time()
            for _ in range(block):
                k += 1
                items[name](k)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return wall, cpu


def interleaved_steps(runs: dict, batch: dict, steps: int, device, rotate: bool = True) -> tuple[dict, dict]:
    """One warm-up step each, then ``steps`` rounds of one step per method: (wall s, process CPU s) per method."""
    import torch

    dev = torch.device(device)

    def step(name: str):
        method, opt = runs[name]

        def run(_k: int) -> None:
            method.step(batch, opt, None)
            if dev.type == "cuda":
                torch.cuda.synchronize()
        return run

    return interleaved_times({name: step(name) for name in runs}, steps, rotate=rotate)
