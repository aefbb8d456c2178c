"""Sharpness-Aware Minimization (Foret et al., ICLR 2021, Algorithm 1), as an optimizer wrapper.

SAM minimizes the loss at the worst point of a rho-ball around the weights. Per step:

1. gradient g at w (first forward/backward);
2. ``first_step``: e(w) = rho * g / ||g||_2 (eq. 2; "adaptive" = ASAM's element-wise |w|^2 scaling), w <- w + e(w);
3. gradient at w + e(w) (second forward/backward);
4. ``second_step``: restore w exactly (a saved copy, not w + e - e) and take the base optimizer's step with
   the second gradient.

Steps 2 and 4's restore are :class:`unmask.train.multipass.WeightPerturbation` (``SAM.perturbation``): training
methods run SAM as one case of the multi-pass step there (``Method.optimize``), with PIM and DualFlat.

Under DDP both backward passes all-reduce their gradients (no ``no_sync``), so every rank computes the same
e(w) and the same update: the ranks stay identical, which the DDP test checks.
"""

from __future__ import annotations

from typing import Any

import torch

from unmask.train.multipass import WeightPerturbation


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
        self._perturbation = WeightPerturbation(self.param_groups)

    @property
    def perturbation(self) -> WeightPerturbation:
        """The weight direction e(w) as a :class:`~unmask.train.multipass.Perturbation` (the multi-pass step's
        building block; DualFlat uses the same class with its own radius)."""
        return self._perturbation

    def _grad_norm(self) -> torch.Tensor:
        return self._perturbation.grad_norm()

    def first_step(self) -> None:
        """Move to the sharpest nearby point w + e(w) (e from the gradients in ``p.grad``); keep w to restore it."""
        self._perturbation.prepare()
        self._perturbation.apply()

    def restore(self) -> None:
        """Put back the w saved by ``first_step``."""
        self._perturbation.restore()

    def second_step(self) -> None:
        """Restore w and update it with the gradient taken at w + e(w)."""
        self.restore()
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
        self._perturbation = WeightPerturbation(self.param_groups)
