"""The Perturbation Injection Module (paper 003 sec. III-D, Fig. 2, eq. 6-7), as a forward hook.

PIM sits at an arch's ``shallow_stage`` output f. Per sample and channel it takes the instance mean mu and std
sigma (over H x W, or over the tokens of a ViT's (B, N, C) output), normalizes, and de-normalizes with shifted
statistics: f' = (f - mu) / sigma * (sigma + d_sigma) + (mu + d_mu)  (eq. 7). d_mu, d_sigma are per channel and
**shared across the batch** (sec. III-D).

Computed as the same function in affine form, f' = f * (1 + d_sigma / sigma) + (d_mu - mu * d_sigma / sigma): one
full-size operation per pass (the step's cost target), and d = 0 gives f back bit-exactly (f * 1 + 0), so a clean
pass is the plain network's pass.

Why a hook and not a layer: PIM is part of the training loss, not of the network ("not involved in the
inference phase", sec. III-D). :meth:`FeatureStatPerturber.installed` hooks it for the duration of a step and
removes it, so validation, checkpoints, ``detect`` and ONNX export see the plain arch; the hook holds no
parameters or buffers.

Modes: ``off`` (no change), ``probe`` (d = 0 as leaf tensors that receive dL/dd; mu and sigma are detached
there, since at d = 0 their gradient paths are multiplied by 0), ``perturb`` (a fixed d, full gradient through mu and
sigma), ``scale`` (the probe of sec. III-A: mean x ``mean_factor``, variance x ``var_factor``, i.e. std x
sqrt(var_factor), per sample).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Literal

import torch
from torch import nn

Mode = Literal["off", "probe", "perturb", "scale"]
EPS = 1e-5  # added to the variance before the square root, as instance normalization does


def _layout(x: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(dims to reduce for instance statistics, shape that broadcasts a per-channel vector)."""
    if x.dim() == 4:  # (B, C, H, W)
        return (2, 3), (1, x.shape[1], 1, 1)
    if x.dim() == 3:  # ViT tokens (B, N, C), channels last
        return (1,), (1, 1, x.shape[2])
    raise ValueError(f"PIM expects a (B, C, H, W) map or (B, N, C) tokens, got shape {tuple(x.shape)}")


class FeatureStatPerturber:
    """Holds d = (d_mu, d_sigma) and the mode; ``installed(module)`` hooks it on ``module``'s output."""

    def __init__(self, mean_factor: float = 1.2, var_factor: float = 0.65) -> None:
        self.mode: Mode = "off"
        self.d_mu: torch.Tensor | None = None
        self.d_sigma: torch.Tensor | None = None
        self.mean_factor, self.var_factor = float(mean_factor), float(var_factor)
        self.last_shape: tuple[int, ...] | None = None

    # --- modes ---------------------------------------------------------------------------------------------
    def off(self) -> None:
        self.mode = "off"

    def probe(self) -> None:
        """Next forward: d = 0 as fresh leaves; after backward, ``grad()`` is dL/d(d_mu, d_sigma)."""
        self.mode, self.d_mu, self.d_sigma = "probe", None, None

    def perturb(self, d_mu: torch.Tensor, d_sigma: torch.Tensor) -> None:
        self.mode, self.d_mu, self.d_sigma = "perturb", d_mu.detach(), d_sigma.detach()

    def scale(self, mean_factor: float | None = None, var_factor: float | None = None) -> None:
        self.mode = "scale"
        if mean_factor is not None:
            self.mean_factor = float(mean_factor)
        if var_factor is not None:
            self.var_factor = float(var_factor)

    def grad(self) -> tuple[torch.Tensor, torch.Tensor]:
        """dL/d(d_mu), dL/d(d_sigma) left by the last probe pass's backward."""
        if self.d_mu is None or self.d_mu.grad is None or self.d_sigma.grad is None:
            raise RuntimeError("PIM: no gradient w.r.t. the feature statistics (was the shallow stage on the loss's "
                               "path, and did the probe pass run backward?)")
        return self.d_mu.grad, self.d_sigma.grad

    # --- the hook ------------------------------------------------------------------------------------------
    def __call__(self, module: nn.Module, inputs, output):
        if self.mode == "off":
            return None
        x = output
        dims, shape = _layout(x)
        self.last_shape = tuple(x.shape)
        xf = x.float()
        mu = xf.mean(dim=dims, keepdim=True)
        sigma = (xf.var(dim=dims, keepdim=True, unbiased=False) + EPS).sqrt()
        if self.mode == "scale":
            out = xf + (self.mean_factor - 1.0) * mu + (math.sqrt(self.var_factor) - 1.0) * (xf - mu)
            return out.to(x.dtype)
        if self.mode == "probe":
            c = shape[1] if x.dim() == 4 else shape[2]
            self.d_mu = torch.zeros(c, device=x.device, dtype=torch.float32, requires_grad=True)
            self.d_sigma = torch.zeros(c, device=x.device, dtype=torch.float32, requires_grad=True)
            mu, sigma = mu.detach(), sigma.detach()  # their gradient paths are multiplied by d_sigma = 0
        # eq. 7 as one affine map per sample and channel: f' = f * a + b with a = 1 + d_sigma / sigma and
        # b = d_mu - mu * d_sigma / sigma (one full-size op; at d = 0, a = 1 and b = 0 exactly, so f' = f)
        d_mu, d_sigma = self.d_mu.view(shape), self.d_sigma.view(shape)
        ratio = d_sigma / sigma
        out = torch.addcmul(d_mu - mu * ratio, xf, 1.0 + ratio)
        return out.to(x.dtype)

    @contextlib.contextmanager
    def installed(self, module: nn.Module) -> Iterator["FeatureStatPerturber"]:
        """Hook on ``module``'s output for the duration of the block (removed after it, even on error)."""
        handle = module.register_forward_hook(self)
        try:
            yield self
        finally:
            handle.remove()
            self.mode = "off"


__all__ = ["FeatureStatPerturber"]
