"""Networks: the architecture registry (``arch``), the timm backbone factory, the registered archs, checkpoints.

Each arch module is imported here explicitly, which registers it (no import-time discovery)."""

from unmask.models.arch import ARCHS, Arch, arch_from_meta, build_arch, register_arch
from unmask.models.backbones import PAPER_BACKBONES, PAPER_NAMES, PRETRAINED_SOURCES, build_backbone, resolve_name
from unmask.models.checkpoint import load_checkpoint, load_detector, resolve_checkpoint, save_checkpoint
from unmask.models.detector import Detector, build_detector, detector_from_meta
from unmask.models import f3net as _f3net  # noqa: F401,E402 (registers the "f3net" arch)
from unmask.models import sola as _sola  # noqa: F401,E402 (registers the "sola" arch)
from unmask.models import l2m as _l2m  # noqa: F401,E402 (registers the "l2m_student" arch)

__all__ = [
    "ARCHS",
    "Arch",
    "arch_from_meta",
    "build_arch",
    "register_arch",
    "PAPER_BACKBONES",
    "PAPER_NAMES",
    "PRETRAINED_SOURCES",
    "Detector",
    "build_backbone",
    "build_detector",
    "detector_from_meta",
    "load_checkpoint",
    "load_detector",
    "resolve_checkpoint",
    "resolve_name",
    "save_checkpoint",
]
