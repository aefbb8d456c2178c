"""Learning-rate schedules of the papers, as a per-step multiplier of the base LR.

* ``linear_decay`` (SBI, used by paper 000): constant until epoch ``decay_start`` (75 of 100), then linear
  down to ``min_lr_factor`` at the end; changes once per epoch like SBI's epoch-level scheduler.
* ``exponential`` (learning-to-mask, 004): LR * gamma^epoch, once per epoch.
* ``cosine``: per-step cosine to ``min_lr_factor``. ``constant``: 1.
Optional linear warm-up over ``warmup_epochs`` (per step) for any of them.

The multiplier is a pure function of the global step, so resuming restores it from the step counter alone.
"""

from __future__ import annotations

import math

import torch

from unmask.train.config import ScheduleConfig


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based)."""
    steps_per_epoch = max(1, steps_per_epoch)
    epoch = step // steps_per_epoch
    progress = step / (steps_per_epoch * max(1, epochs))
    if cfg.name == "constant":
        factor = 1.0
    elif cfg.name == "linear_decay":
        if epoch < cfg.decay_start or epochs <= cfg.decay_start:
            factor = 1.0
        else:
            span = epochs - cfg.decay_start
            factor = 1.0 - (1.0 - cfg.min_lr_factor) * (epoch - cfg.decay_start + 1) / (span + 1)
    elif cfg.name == "exponential":
        factor = cfg.gamma**epoch
    elif cfg.name == "cosine":
        factor = cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    else:  # pragma: no cover - Literal-typed config
        raise ValueError(cfg.name)
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        factor *= (step + 1) / warm
    return float(factor)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int, epochs: int):
    """A LambdaLR stepped once per optimizer step (on SAM's base optimizer, which shares its param groups)."""
    target = getattr(optimizer, "base_optimizer", optimizer)
    return torch.optim.lr_scheduler.LambdaLR(target, lambda step: lr_factor(cfg, step, steps_per_epoch, epochs))
