"""Networks: the backbone factory (timm + pretrained sources), the Detector and its checkpoints."""

from unmask.models.backbones import PAPER_BACKBONES, PAPER_NAMES, PRETRAINED_SOURCES, build_backbone, resolve_name
from unmask.models.checkpoint import load_checkpoint, load_detector, resolve_checkpoint, save_checkpoint
from unmask.models.detector import Detector, build_detector, detector_from_meta

__all__ = [
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
