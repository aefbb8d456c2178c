"""One mechanism for multi-pass steps: perturb, re-evaluate, combine gradients.

SAM (Foret et al. 2021), PIM (paper 003, Algorithm 1) and DualFlat (paper 003, eq. 14) are the same step:

1. a clean forward/backward gives g1 (and whatever the perturbations read from it; when g1 has coefficient 0 and
   no perturbation reads it, only the gradients the perturbations need: PIM with alpha = 1 skips the weights);
2. each :class:`Perturbation` computes its direction from that pass (``prepare``), is applied for one more
   forward/backward (``apply`` ... ``restore``), which gives g_k;
3. the update uses g = c_0 g1 + sum_k c_k g_k (:class:`GradientStore`).

SAM is ``[(weights, 1)]`` with c_0 = 0; PIM ``[(feature statistics, alpha)]`` with c_0 = 1 - alpha; DualFlat
``[(feature statistics, alpha), (weights, beta)]`` with c_0 = 1 - alpha - beta. A pass whose coefficient is 0
is not run (alpha = 0 is the plain step).

BatchNorm running statistics: every re-evaluation pass still normalizes with its batch's statistics (train
mode), but the running mean / var / counter are snapshotted before the pass and copied back after it
(:func:`frozen_bn_stats`), so they move once per step, from the clean pass -- as a single-pass step would.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn


class Perturbation:
    """A direction to re-evaluate the loss in. The step calls, in order: ``begin`` (before the clean pass),
    ``prepare`` (after its backward), ``apply`` / ``restore`` (around the perturbed pass), ``end``."""

    name: str = "perturbed"
    # Does ``prepare`` read the clean pass's weight gradients? When no pass does and the clean coefficient is 0
    # (PIM with alpha = 1), the clean backward only differentiates w.r.t. ``grad_inputs()``: no weight gradients,
    # no backward through the layers below them.
    needs_weight_grads: bool = True

    def grad_inputs(self) -> list[torch.Tensor]:
        """Tensors (made by the clean forward) whose gradient ``prepare`` reads when weight gradients are skipped."""
        return []

    def begin(self) -> None:
        """Before the clean pass (e.g. install a hook that records the gradient the direction needs)."""

    def prepare(self) -> None:
        """After the clean backward: compute the direction from the gradients it left."""

    def apply(self) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """After the step (remove hooks); must be safe when the step failed half-way."""


class WeightPerturbation(Perturbation):
    """SAM's ascent step (Foret et al. 2021, eq. 2): e(w) = rho * g / ||g||_2 over all parameters of the groups
    (``adaptive``: ASAM's element-wise |w| scaling, e = rho * |w|^2 g / || |w| g ||); ``restore`` copies the saved
    w back (exactly, not w + e - e). Groups are optimizer-style dicts with ``params``, ``rho``, ``adaptive``."""

    name = "weights"

    def __init__(self, param_groups: Sequence[dict]) -> None:
        self.param_groups = param_groups
        self._saved: dict[nn.Parameter, torch.Tensor] = {}
        self._e: dict[nn.Parameter, torch.Tensor] = {}

    def grad_norm(self) -> torch.Tensor:
        norms = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.float()
                if group.get("adaptive", False):
                    g = g * p.detach().abs().float()
                norms.append(g.norm(2))
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(2)

    @torch.no_grad()
    def prepare(self) -> None:
        """e(w) from the gradients in ``p.grad`` now (the clean pass's)."""
        norm = self.grad_norm()
        self._e = {}
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = p.grad * scale.to(p.grad.dtype)
                if group.get("adaptive", False):
                    e_w = e_w * p.detach().pow(2)
                self._e[p] = e_w

    @torch.no_grad()
    def apply(self) -> None:
        """w <- w + e(w), keeping w."""
        for p, e_w in self._e.items():
            self._saved[p] = p.detach().clone()
            p.add_(e_w)
        self._e = {}

    @torch.no_grad()
    def restore(self) -> None:
        for p, old in self._saved.items():
            p.copy_(old)
        self._saved.clear()

    def end(self) -> None:
        self._e = {}
        if self._saved:  # a failed pass: never leave the weights perturbed
            self.restore()


class GradientStore:
    """g = sum_k c_k g_k over passes, kept outside ``p.grad`` while the next pass's backward runs.

    ``add(c)`` takes the gradients the last backward left in ``p.grad``; the first contribution with c = 1 is
    kept as is (no copy, no multiply: SAM's update is bit-identical to a plain two-pass SAM step)."""

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        self.params = list(params)
        self.acc: list[torch.Tensor | None] | None = None

    @torch.no_grad()
    def add(self, coef: float) -> None:
        grads = [p.grad for p in self.params]
        if self.acc is None:
            self.acc = [None if g is None else (g if coef == 1.0 else g * coef) for g in grads]
            return
        for i, g in enumerate(grads):
            if g is None:
                continue
            if self.acc[i] is None:
                self.acc[i] = g * coef
            else:
                self.acc[i].add_(g, alpha=coef)

    def write(self) -> None:
        """Put the combined gradient into ``p.grad`` (for clipping and the optimizer)."""
        if self.acc is None:
            return
        for p, a in zip(self.params, self.acc):
            p.grad = a


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Run a pass without moving BatchNorm running statistics (snapshot + copy back; see the module doc)."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training:
            saved.append((m, [b.detach().clone() if b is not None else None
                              for b in (m.running_mean, m.running_var, m.num_batches_tracked)]))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in saved:
                for buf, old in ((m.running_mean, mean), (m.running_var, var), (m.num_batches_tracked, count)):
                    if buf is not None and old is not None:
                        buf.copy_(old)


@dataclass
class Pass:
    """One re-evaluation pass: its perturbation, its coefficient c_k, and the metric name of its loss."""

    perturbation: Perturbation
    coef: float
    metric: str


@dataclass
class PassPlan:
    """The passes of a step: c_0 for the clean gradient, then the perturbed passes (coefficient 0: skipped)."""

    clean_coef: float = 1.0
    passes: tuple[Pass, ...] = ()

    def active(self) -> list[Pass]:
        return [p for p in self.passes if p.coef != 0.0]

    @property
    def single_pass(self) -> bool:
        return not self.active()


def run_passes(plan: PassPlan, *, loss_fn: Callable[[bool], tuple[torch.Tensor, dict[str, float]]],
               backward: Callable[[torch.Tensor], None], zero_grad: Callable[[], None],
               params: Iterable[nn.Parameter], model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
    """The perturb / re-evaluate / combine step up to (not including) clipping and the optimizer update.

    ``loss_fn(first_pass)`` runs a forward pass; ``backward(loss)`` its backward; ``zero_grad`` must set the
    gradients to None (the store keeps the previous pass's tensors). Leaves the combined gradient in
    ``p.grad`` and returns the clean loss and its metrics (plus each pass's loss under its metric name)."""
    active = plan.active()
    perts = [p.perturbation for p in active]
    try:
        for pert in perts:
            pert.begin()
        zero_grad()
        need_w = plan.clean_coef != 0.0 or any(p.perturbation.needs_weight_grads for p in active)
        if active and not need_w:
            # DDP: a forward whose backward skips the weights must not arm the gradient all-reduce.
            sync_off = model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()
            with sync_off:
                loss, metrics = loss_fn(True)
            leaves = [t for p in active for t in p.perturbation.grad_inputs()]
            for t, g in zip(leaves, torch.autograd.grad(loss, leaves)):
                t.grad = g
        else:
            loss, metrics = loss_fn(True)
            backward(loss)
        if not active:
            return loss, metrics
        for pert in perts:
            pert.prepare()
        store = GradientStore(params)
        if plan.clean_coef != 0.0:
            store.add(plan.clean_coef)
        for p in active:
            zero_grad()
            p.perturbation.apply()
            try:
                with frozen_bn_stats(model):
                    loss_k, _ = loss_fn(False)
                    backward(loss_k)
            finally:
                p.perturbation.restore()
            store.add(p.coef)
            metrics[p.metric] = float(loss_k.detach())
        store.write()
        return loss, metrics
    finally:
        for pert in perts:
            pert.end()


__all__ = ["GradientStore", "Pass", "PassPlan", "Perturbation", "WeightPerturbation", "frozen_bn_stats", "run_passes"]
