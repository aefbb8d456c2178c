"""Optimizers by config: SGD, Adam, AdamW, or SAM wrapping one of them."""

from __future__ import annotations

from typing import Iterable

import torch

from unmask.train.config import OptimConfig
from unmask.train.sam import SAM


def _base(name: str, cfg: OptimConfig) -> tuple[type[torch.optim.Optimizer], dict]:
    if name == "sgd":
        return torch.optim.SGD, dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                     nesterov=cfg.nesterov)
    if name == "adam":
        return torch.optim.Adam, dict(lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW, dict(lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sam":
        cls, kwargs = _base(cfg.base, cfg)
        return SAM(params, cls, rho=cfg.rho, adaptive=cfg.adaptive, **kwargs)
    cls, kwargs = _base(cfg.name, cfg)
    return cls(params, **kwargs)
