"""SOLA training (paper 002 sec. 3.4): the ``sola`` arch on real + fake faces, weakly or mask supervised.

* ``supervision: weak`` (eq. 12, the paper's default): ``alpha * CE + L_A`` with the single-side loss
  ``L_A = sum_* beta * |M_*|_1 + gamma * |M'_*|_1`` over **real** faces only (targets all zero), fakes' anomaly
  maps left free. ``|.|_1`` is taken as the mean over the map's cells and channels (the sum's scale would tie
  beta / gamma to the map size and patch-size variant), and the per-image losses are averaged over the batch (a
  fake contributes 0).
* ``supervision: mask`` (eq. 9-11): the store's manipulation masks (``FaceRecord.mask_path``, from the
  benchmark's ``masks/`` videos) cut and resized with the face; eq. 9a / 9b targets per direction
  (:func:`unmask.models.sola.anomaly_targets`), the first-order target repeated over the 64 maps, and
  ``L_A = beta * sum_* BCE(M_*, a_*) + gamma * sum_* BCE(M'_*, a'_*)`` (mean BCE per map), over the faces with a
  valid mask (reals: all-zero; a fake without a stored mask is left out of L_A and counted in ``no_mask``).
* ``L_cls``: eq. 11's BCE on one logit is cross-entropy on the arch's two logits (softmax CE of ``(z0, z1)`` is the
  BCE of ``z1 - z0``), as every unmask arch outputs.
* **alpha, beta, gamma**: the paper gives no values. Defaults ``alpha = 1`` (classification), ``beta = gamma = 1``:
  the anomaly terms are means of [0, 1] maps (L1) or of BCEs, the same order as the CE at the start (0.69), so
  no term dominates; config keys ``method.alpha`` / ``method.beta`` / ``method.gamma``.
* ``after_step`` re-imposes ASRM's constraint (eq. 4) after every optimizer step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from unmask.data.records import REAL
from unmask.errors import ConfigError
from unmask.methods.base import DataRecipe, Method, MethodConfig, accuracy
from unmask.methods.registry import register_method
from unmask.models.arch import build_arch
from unmask.models.sola import DIRECTIONS, SOLA, anomaly_targets


@dataclass
class SOLAConfig(MethodConfig):
    name: str = "sola"
    supervision: Literal["weak", "mask"] = "weak"  # eq. 12 (image labels only) or eq. 9-11 (forgery masks)
    alpha: float = 1.0  # weight of the classification loss (eq. 11); not given by the paper
    beta: float = 1.0  # weight of the first-order anomaly terms (eq. 10 / 12); not given by the paper
    gamma: float = 1.0  # weight of the second-order anomaly terms (eq. 10 / 12); not given by the paper


def single_side_loss(out: dict, labels: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """Eq. 12 per batch: L1 of real faces' first- and second-order maps to zero, averaged over the batch."""
    real = (labels == REAL).float()
    per_image = torch.zeros_like(real)
    for d in DIRECTIONS:
        per_image = per_image + beta * torch.sigmoid(out["first"][d].float()).mean(dim=(1, 2, 3))
        per_image = per_image + gamma * torch.sigmoid(out["second"][d].float()).mean(dim=(1, 2, 3))
    return (per_image * real).sum() / max(labels.numel(), 1)


def mask_loss(out: dict, mask: torch.Tensor, valid: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """Eq. 10: BCE of the first- / second-order maps against eq. 9a / 9b targets, over faces with a valid mask."""
    grid = out["anomaly"].shape[-1]
    targets = anomaly_targets(mask, grid)
    per_image = torch.zeros(mask.shape[0], device=mask.device)
    for d in DIRECTIONS:
        first_t, second_t = targets[d]
        first = out["first"][d].float()
        per_image = per_image + beta * F.binary_cross_entropy_with_logits(
            first, first_t.expand_as(first), reduction="none").mean(dim=(1, 2, 3))
        per_image = per_image + gamma * F.binary_cross_entropy_with_logits(
            out["second"][d].float(), second_t, reduction="none").mean(dim=(1, 2, 3))
    valid = valid.float()
    return (per_image * valid).sum() / valid.sum().clamp(min=1.0)


def _sola(module) -> SOLA:
    net = getattr(module, "module", module)  # DDP
    if not isinstance(net, SOLA):
        raise ConfigError("method sola needs model.arch: sola")
    return net


@register_method
class SOLAMethod(Method):
    name = "sola"
    Config = SOLAConfig

    @property
    def data_recipe(self) -> DataRecipe:
        return DataRecipe("real_fake", masks=self.options.supervision == "mask")

    def build(self):
        """The ``sola`` arch whatever ``model.arch`` says (the method is the network's losses)."""
        m = self.cfg.model
        if m.arch not in ("sola", "timm_classifier"):  # timm_classifier = the config default, i.e. unset
            raise ConfigError(f"method sola trains model.arch: sola, not {m.arch!r}")
        return build_arch("sola", backbone=m.backbone, pretrained=m.pretrained, input_size=m.input_size,
                          drop_rate=m.drop_rate, drop_path_rate=m.drop_path_rate, **dict(m.options))

    def loss(self, batch, first_pass):
        out = self.model(batch["image"], return_all=True)  # through the (DDP) wrapper: synchronized gradients
        labels = batch["label"]
        cls = F.cross_entropy(out["logits"].float(), labels)
        o = self.options
        if o.supervision == "mask":
            anomaly = mask_loss(out, batch["mask"], batch["mask_valid"], o.beta, o.gamma)
        else:
            anomaly = single_side_loss(out, labels, o.beta, o.gamma)
        loss = o.alpha * cls + anomaly
        metrics = {"loss": float(loss.detach()), "loss_cls": float(cls.detach()),
                   "loss_anomaly": float(anomaly.detach()), "acc": accuracy(out["logits"].detach(), labels)}
        if o.supervision == "mask":
            metrics["no_mask"] = float((batch["mask_valid"] == 0).sum())
        return loss, metrics

    def after_step(self) -> None:
        """Eq. 4 after every optimizer step: ASRM's centre back to -1, its other weights to sum 1."""
        _sola(self.model).constrain_()
