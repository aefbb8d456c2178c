"""Small helpers shared by the adapters: listing media files, reading index files with one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from unmask.errors import UnmaskError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MEDIA_EXTS = VIDEO_EXTS + IMAGE_EXTS


def list_files(folder: Path, exts: tuple[str, ...] = VIDEO_EXTS) -> list[Path]:
    """Files directly in ``folder`` with one of ``exts`` (case-insensitive), sorted; [] if it is absent.

    Hidden files (``.name``, e.g. macOS ``._x.mp4`` resource forks) are skipped.
    """
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )


def list_dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``, sorted, hidden ones skipped; [] if it is absent."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON index file; a missing or broken file is a one-line ``UnmaskError`` naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UnmaskError(f"{what}: missing {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnmaskError(f"{what}: {path} is not valid JSON ({exc})") from None


def read_csv(path: Path, what: str) -> list[dict[str, str]]:
    """Rows of a CSV file with a header line, keys lower-cased and stripped."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            lines = [row for row in csv.reader(fh) if any(c.strip() for c in row)]
    except FileNotFoundError:
        raise UnmaskError(f"{what}: missing {path}") from None
    except UnicodeDecodeError as exc:
        raise UnmaskError(f"{what}: {path} is not UTF-8 text ({exc})") from None
    if not lines:
        raise UnmaskError(f"{what}: {path} is empty (expected a header line)")
    header = [c.strip().lower() for c in lines[0]]
    return [{k: (row[i].strip() if i < len(row) else "") for i, k in enumerate(header) if k} for row in lines[1:]]


def nothing_found(name: str, root: Path, layout: str) -> UnmaskError:
    """The error every adapter raises for a root without anything it recognizes."""
    return UnmaskError(f"{name}: nothing recognizable under {root}; expected {layout} (see docs/datasets.md)")


def parse_label(value: str, where: str) -> int:
    """``0/1``, ``real/fake``, ``original/manipulated`` (any case) -> 0/1; anything else is an error."""
    v = value.strip().lower()
    if v in ("0", "real", "original", "pristine", "genuine"):
        return 0
    if v in ("1", "fake", "manipulated", "deepfake", "forged", "synthesis"):
        return 1
    raise UnmaskError(f"{where}: label {value!r} is not one of 0/1, real/fake")
