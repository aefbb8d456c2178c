"""Small helpers shared by the adapters: listing media files (every skipped entry reported), reading index files
with one-line errors."""

from __future__ import annotations

import contextlib
import csv
import json
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from unmask.data import media
from unmask.data.media import SkippedEntry
from unmask.errors import UnmaskError

# The project's one list of readable types (unmask.data.media), as tuples for str.endswith.
VIDEO_EXTS = tuple(sorted(media.VIDEO_EXTS))
IMAGE_EXTS = tuple(sorted(media.IMAGE_EXTS))
MEDIA_EXTS = tuple(sorted(media.MEDIA_EXTS))

# Entries the adapter running now left out (``collect_skipped``); None when nobody is collecting.
_SKIPPED: ContextVar[list[SkippedEntry] | None] = ContextVar("unmask_adapter_skipped", default=None)


@contextlib.contextmanager
def collect_skipped() -> Iterator[list[SkippedEntry]]:
    """Collect every entry the adapters skip while the block runs (``list_items_report`` uses it), so adapters
    report skips without each threading a list through its helpers."""
    sink: list[SkippedEntry] = []
    token = _SKIPPED.set(sink)
    try:
        yield sink
    finally:
        _SKIPPED.reset(token)


def note_skipped(path: str | Path, reason: str) -> None:
    """Record an entry an adapter does not list as an item (kept only while someone collects)."""
    sink = _SKIPPED.get()
    if sink is not None:
        sink.append(SkippedEntry(str(path), reason))


def scan(folder: Path, exts: tuple[str, ...] = MEDIA_EXTS, recursive: bool = False,
         known: tuple[str, ...] = ()) -> list[Path]:
    """``media.scan_folder`` with the skipped entries noted; [] if the folder is absent.

    ``known``: names of entries the adapter reads some other way (e.g. a ``videos/`` sub-folder): not noted.
    """
    if not folder.is_dir():
        return []
    local: list[SkippedEntry] = []
    files = media.scan_folder(folder, recursive=recursive, exts=frozenset(exts), skipped=local)
    for e in local:
        if Path(e.path).parent != folder or Path(e.path).name not in known:
            note_skipped(e.path, e.reason)
    return files


def list_files(folder: Path, exts: tuple[str, ...] = VIDEO_EXTS, known: tuple[str, ...] = ()) -> list[Path]:
    """Files directly in ``folder`` with one of ``exts`` (case-insensitive), sorted; [] if it is absent.

    Valid symlinks are followed; hidden entries (``.name``, e.g. macOS ``._x.mp4`` resource forks), other types,
    sub-folders (except ``known`` ones), broken links and loops are skipped and noted with their reason
    (``collect_skipped``).
    """
    return scan(folder, exts, known=known)


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
