"""The architecture registry: every network unmask trains, saves, scores, explains and exports.

timm's pattern: each network is a module with ``@register_arch("name")`` on an :class:`Arch` subclass, and one
factory, :func:`build_arch`. A checkpoint's ``detector`` meta names its ``arch``; :func:`arch_from_meta` rebuilds
the network from it (meta without ``arch`` -- checkpoints written before the registry -- are
``timm_classifier``). A new network is one module plus its registration, and ``tests/test_models_contract.py``
tests it with every other.

The contract (what every stage after training relies on):

* ``forward(x)``: ``x`` float32 NCHW in **[0, 1]** (normalization happens inside) -> logits ``(B, 2)``;
  ``forward(x, return_features=True)`` -> ``(logits, features)`` from one pass;
* ``features(x)`` -> pooled ``(B, D)`` (the input of the classifier; NRS clusters these);
* ``feature_maps(x)`` -> list of stage maps, shallow to deep;
* ``cam_layer``: the module Grad-CAM hooks (``cam_reshape`` turns its output into ``(B, C, h, w)`` when it is
  a token sequence);
* ``shallow_stage``: the module whose output is the shallow feature map paper 003's PIM perturbs;
* ``meta()`` -> JSON-able dict with ``arch`` and what ``from_meta`` needs to rebuild an untrained copy.

Only what inference needs is an Arch (and goes into ``best.pt``): a teacher network that only trains lives
in its method's training module.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn

from unmask.errors import UnmaskError

DEFAULT_ARCH = "timm_classifier"  # what a checkpoint without an ``arch`` field holds


class Arch(nn.Module):
    """Base of every registered network: normalization inside ``forward``, the contract above as methods."""

    arch: ClassVar[str] = ""  # set by @register_arch
    num_classes: int = 2

    def __init__(self, *, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.mean_values = tuple(float(v) for v in mean)
        self.std_values = tuple(float(v) for v in std)
        # Non-persistent: the state dict holds only weights, the meta holds mean/std.
        self.register_buffer("mean", torch.tensor(self.mean_values, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(self.std_values, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    # --- the contract -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, return_features: bool = False):  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def cam_layer(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    cam_reshape: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def shallow_stage(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def arch_meta(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The arch's own fields of :meth:`meta` (JSON-able)."""
        raise NotImplementedError

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Arch":  # pragma: no cover - abstract
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """What :func:`arch_from_meta` needs to rebuild this network (JSON-able)."""
        return {"arch": self.arch, "input_size": self.input_size, "mean": list(self.mean_values),
                "std": list(self.std_values), "num_classes": int(self.num_classes), **self.arch_meta()}

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Fake probability per image, ``softmax(logits)[:, 1]``."""
        return self.forward(x).float().softmax(dim=1)[:, 1]


ARCHS: dict[str, type[Arch]] = {}


def register_arch(name: str) -> Callable[[type[Arch]], type[Arch]]:
    def deco(cls: type[Arch]) -> type[Arch]:
        if name in ARCHS:
            raise ValueError(f"architecture {name!r} registered twice")
        if not (isinstance(cls, type) and issubclass(cls, Arch)):
            raise TypeError(f"{cls!r} is not an Arch subclass")
        cls.arch = name
        ARCHS[name] = cls
        return cls

    return deco


def arch_class(name: str | None) -> type[Arch]:
    name = name or DEFAULT_ARCH
    if name not in ARCHS:
        raise UnmaskError(f"unknown architecture {name!r}; registered: {', '.join(sorted(ARCHS))}")
    return ARCHS[name]


def build_arch(name: str | None, **kwargs: Any) -> Arch:
    """Factory: ``build_arch("timm_classifier", backbone="resnet18")``, ``build_arch("f3net", ...)``.

    Every arch's ``build`` classmethod takes the model config's fields it understands (``backbone``,
    ``pretrained``, ``input_size``, ``drop_rate``, ``drop_path_rate``, plus its own options)."""
    cls = arch_class(name)
    return cls.build(**kwargs)  # type: ignore[attr-defined]


def arch_from_meta(meta: dict[str, Any]) -> Arch:
    """Rebuild an untrained network from a checkpoint's ``detector`` meta (no ``arch``: ``timm_classifier``)."""
    return arch_class(meta.get("arch")).from_meta(meta)


__all__ = ["ARCHS", "Arch", "DEFAULT_ARCH", "arch_class", "arch_from_meta", "build_arch", "register_arch"]
