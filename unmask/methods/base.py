"""The Method contract: what a training method declares and does.

A method is the unit users pick (``method.name`` in a config). It

* declares its **data recipe** (``data_recipe``): pairs of reals + pseudo-fakes from a named synthesizer,
  or real + fake faces of a dataset (the supervised baseline);
* **builds** its trainable module (``build``) and names the registered network (an
  :class:`~unmask.models.arch.Arch`) used at inference (``detector``), which for most methods is the module itself;
* owns the **step**: ``step(batch, optimizer, scaler) -> metrics`` runs forward, backward and the optimizer
  itself, so methods with several passes per step (SAM, PIM, DualFlat) or several networks fit one loop;
* has **hooks**: ``after_step`` (e.g. SOLA's weight constraint), ``on_epoch_start`` / ``on_epoch_end``
  (e.g. NRS's memory and k-means), and ``state_dict`` / ``load_state_dict`` for state that must survive a
  resume.

Plain methods only write ``loss(batch, first_pass) -> (loss, metrics)``; :meth:`Method.optimize` does the
backward pass, the re-evaluation passes (SAM's; PIM / DualFlat add theirs through ``pass_plan``), gradient
clipping and AMP scaling for them, with one mechanism (:mod:`unmask.train.multipass`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from unmask.models.arch import Arch, build_arch
from unmask.train.multipass import Pass, PassPlan, run_passes
from unmask.train.sam import SAM


@dataclass
class MethodConfig:
    """Options common to every method; a method's own ``Config`` subclasses this."""

    name: str = ""


@dataclass(frozen=True)
class DataRecipe:
    """Which training set the trainer builds for a method.

    ``pairs``: each real face and a pseudo-fake made from it by ``synthesizer`` (batch = B reals then B fakes).
    ``real_fake``: real and fake faces of the store (supervised training on a benchmark's manipulations).
    ``masks``: ``real_fake`` items also carry the manipulation mask cropped like the face (``mask`` ``(1, S, S)``
    in [0, 1], zeros for reals; ``mask_valid`` 0 for a fake whose benchmark shipped no mask), e.g. for SOLA's
    mask-supervised losses.
    ``face_aug``: a picklable per-sample augmentation the ``real_fake`` dataset runs in its loader workers after
    the crop, resize and flip, ``face_aug(image uint8, maps, landmarks, rng) -> (image, extra items)``; its
    ``map_set`` (or None) names the map sidecars cut with the face, ``uses_landmarks`` asks for the landmarks
    (PRLE's masking, :class:`unmask.methods.prle.PRLEAugment`).
    """

    kind: Literal["pairs", "real_fake"]
    synthesizer: str | None = None
    masks: bool = False
    face_aug: Any = None


class Method:
    """Base class; subclasses set ``name``, ``Config``, ``data_recipe`` and implement ``loss`` (or ``step``)."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg  # the whole TrainConfig
        self.options = cfg.method  # this method's Config
        self.model: nn.Module | None = None  # the (possibly DDP-wrapped) training module, set by attach()
        self.device = torch.device("cpu")
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.grad_clip: float | None = None
        self.epoch = 0
        self.dist = None

    # --- what the trainer asks ------------------------------------------------------------------------
    @property
    def data_recipe(self) -> DataRecipe:
        raise NotImplementedError

    def build(self) -> nn.Module:
        """The trainable module. Default: the registered arch ``cfg.model.arch`` built from ``cfg.model``."""
        m = self.cfg.model
        return build_arch(m.arch, backbone=m.backbone, pretrained=m.pretrained, input_size=m.input_size,
                          drop_rate=m.drop_rate, drop_path_rate=m.drop_path_rate, **dict(m.options))

    def detector(self, module: nn.Module) -> Arch:
        """The inference network inside the (unwrapped) training module; saved as the checkpoint's model."""
        if not isinstance(module, Arch):
            raise TypeError(f"{type(self).__name__}.detector: {type(module).__name__} is not a registered Arch; a "
                            "method whose training module is larger must override detector()")
        return module

    def attach(self, model: nn.Module, *, device: torch.device, dist: Any = None,
               autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
               grad_clip: float | None = None) -> None:
        self.model, self.device, self.dist, self.autocast, self.grad_clip = model, device, dist, autocast, grad_clip

    # --- the step ---------------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor], first_pass: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward pass -> (scalar loss, metrics). ``first_pass`` is False on SAM's second pass."""
        raise NotImplementedError

    def step(self, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
        return self.optimize(batch, optimizer, scaler)

    def _backward(self, loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def _clip(self) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], self.grad_clip)

    def pass_plan(self, optimizer: torch.optim.Optimizer) -> PassPlan:
        """The passes of one step (:mod:`unmask.train.multipass`): by default one clean pass, or SAM's
        re-evaluation at w + e(w) with coefficient 1 (clean coefficient 0) when the optimizer is SAM.
        PIM / DualFlat return their own plan."""
        if isinstance(optimizer, SAM):
            return PassPlan(clean_coef=0.0, passes=(Pass(optimizer.perturbation, 1.0, "loss_sam"),))
        return PassPlan()

    def optimize(self, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler | None) -> dict[str, float]:
        """Backward + update for a ``loss``-only method: the clean pass, the perturbed passes of ``pass_plan``
        (SAM, PIM, DualFlat), their gradients combined, clipped, and one optimizer update."""
        plan = self.pass_plan(optimizer)
        if scaler is not None and not plan.single_pass:
            raise RuntimeError("multi-pass steps (SAM, PIM, DualFlat) with float16 loss scaling are not supported: "
                               "use amp_dtype=bfloat16")

        def forward(first_pass: bool):
            with self.autocast():
                return self.loss(batch, first_pass)

        params = [p for group in optimizer.param_groups for p in group["params"]]
        loss, metrics = run_passes(plan, loss_fn=forward, backward=lambda l: self._backward(l, scaler),
                                   zero_grad=lambda: optimizer.zero_grad(set_to_none=True), params=params,
                                   model=self.model)
        if scaler is not None:
            scaler.unscale_(optimizer)
            self._clip()
            scaler.step(optimizer)
            scaler.update()
        else:
            self._clip()
            # SAM's weights are back at w (the perturbation restored them): only the base update remains.
            (optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer).step()
        metrics.setdefault("loss", float(loss.detach()))
        return metrics

    # --- hooks ---------------------------------------------------------------------------------------------
    def after_step(self) -> None:
        """Called after every optimizer step (e.g. projecting constrained weights)."""

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


class CrossEntropyMethod(Method):
    """Binary cross-entropy on whatever the data recipe yields (the SBI and supervised baselines)."""

    def loss(self, batch, first_pass):
        logits = self.model(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        return loss, {"loss": float(loss.detach()), "acc": accuracy(logits.detach(), batch["label"])}
