"""Sharpness-Aware Minimization (Foret et al., ICLR 2021, Algorithm 1), as an optimizer wrapper.

SAM minimizes the loss at the worst point of a rho-ball around the weights. Per step:

1. gradient g at w (first forward/backward);
2. ``first_step``: e(w) = rho * g / ||g||_2 (eq. 2; "adaptive" = ASAM's element-wise |w|^2 scaling), w <- w + e(w);
3. gradient at w + e(w) (second forward/backward);
4. ``second_step``: restore w exactly (a saved copy, not w + e - e) and take the base optimizer's step with
   the second gradient.

Under DDP both backward passes all-reduce their gradients (no ``no_sync``), so every rank computes the same
e(w) and the same update: the ranks stay identical, which the DDP test checks.
"""

from __future__ import annotations

from typing import Any

import torch


class SAM(torch.optim.Optimizer):
    """``SAM(params, torch.optim.SGD, rho=0.05, lr=1e-3, momentum=0.9)``: the base optimizer does the update."""

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, **base_kwargs: Any) -> None:
        if rho < 0:
            raise ValueError(f"SAM rho must be >= 0, got {rho}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # One list of groups for both, so LR schedulers that edit SAM's groups drive the base optimizer.
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _grad_norm(self) -> torch.Tensor:
        norms = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.float()
                if group["adaptive"]:
                    g = g * p.detach().abs().float()
                norms.append(g.norm(2))
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(2)

    @torch.no_grad()
    def first_step(self) -> None:
        """Move to the sharpest nearby point w + e(w); keep w to restore it exactly."""
        norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                e_w = p.grad * scale.to(p.grad.dtype)
                if group["adaptive"]:
                    e_w = e_w * p.detach().pow(2)
                p.add_(e_w)

    @torch.no_grad()
    def second_step(self) -> None:
        """Restore w and update it with the gradient taken at w + e(w)."""
        for group in self.param_groups:
            for p in group["params"]:
                old = self.state[p].pop("old_p", None)
                if old is not None:
                    p.copy_(old)
        self.base_optimizer.step()

    def step(self, closure=None):  # type: ignore[override]
        """Both halves with a closure that re-evaluates the loss and calls backward (for generic callers)."""
        if closure is None:
            raise RuntimeError("SAM.step needs a closure; methods call first_step / second_step themselves")
        self.first_step()
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            closure()
        self.second_step()

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        # The moment buffers live in the base optimizer; SAM itself keeps nothing between steps.
        return {"base": self.base_optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups
