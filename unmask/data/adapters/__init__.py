"""Dataset adapters: a benchmark's official directory layout -> a sorted list of ``ManifestRow``.

An adapter only lists files (it never decodes media), so it is fast and works on any part of a
benchmark that is present. Each adapter is a function ``fn(root: Path, **options) -> list[ManifestRow]``
registered under its benchmark's name with ``@register_adapter(name)``; ``list_items`` is the one entry
point other stages call. Two options are common to every adapter and handled here, after listing:

- ``splits``: keep only rows whose split is in the list (rows with no split are then dropped);
- ``methods``: keep only rows whose method is in the list (case-insensitive; ``"real"`` selects originals).

Expected layouts are documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from unmask.data.adapters._common import collect_skipped
from unmask.data.media import SkippedEntry
from unmask.data.records import SPLITS, ManifestRow
from unmask.errors import UnmaskError

log = logging.getLogger(__name__)

Adapter = Callable[..., list[ManifestRow]]

# name -> adapter function
ADAPTERS: dict[str, Adapter] = {}
# name -> the method names the benchmark is known to contain (used to reject typos in ``methods``)
KNOWN_METHODS: dict[str, tuple[str, ...]] = {}
# names of adapters whose root may also be a file (the generic adapter's CSV)
_FILE_ROOTS: set[str] = set()
# names of adapters whose items are face crops (WildDeepfake): only there may prepare take a face-sized image
# in which no face was detected as its own face (``items_are_face_crops``, ``faces.whole_image_face``)
FACE_CROP_ADAPTERS: set[str] = set()

_COMMON_OPTIONS = ("splits", "methods")


def register_adapter(
    name: str, methods: Iterable[str] = (), accepts_file: bool = False, face_crops: bool = False
) -> Callable[[Adapter], Adapter]:
    """Register ``fn(root, **options)`` as the adapter for benchmark ``name``.

    ``methods`` lists the method names the benchmark may contain (besides ``"real"``); when given, a
    ``methods`` filter naming anything else is an error instead of silently selecting nothing.
    ``accepts_file``: the root may be a file (an index) as well as a directory.
    ``face_crops``: the benchmark's items are face crops (see ``items_are_face_crops``).
    """

    def deco(fn: Adapter) -> Adapter:
        if name in ADAPTERS:
            raise ValueError(f"adapter {name!r} is already registered")
        ADAPTERS[name] = fn
        KNOWN_METHODS[name] = tuple(methods)
        if accepts_file:
            _FILE_ROOTS.add(name)
        if face_crops:
            FACE_CROP_ADAPTERS.add(name)
        return fn

    return deco


def items_are_face_crops(row: ManifestRow) -> bool:
    """Whether this item's images are face crops: its adapter says so (``face_crops=True``), or the row does
    (``extra["face_crops"]`` true, set by the generic adapter's ``face_crops`` option, or a CSV column of that
    name reading 1 / true / yes)."""
    flag = row.extra.get("face_crops")
    return row.dataset in FACE_CROP_ADAPTERS or flag is True or str(flag).strip().lower() in ("1", "true", "yes")


def adapter_names() -> list[str]:
    """Registered adapter names, sorted."""
    return sorted(ADAPTERS)


def adapter_options(name: str) -> list[str]:
    """The options ``list_items(name, ...)`` accepts, adapter-specific ones first."""
    fn = _get(name)
    own = [p for p in list(inspect.signature(fn).parameters)[1:] if p not in _COMMON_OPTIONS]
    return own + list(_COMMON_OPTIONS)


def _get(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise UnmaskError(f"unknown dataset {name!r}; choose from {', '.join(adapter_names())}")
    return ADAPTERS[name]


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    """``None`` -> None; ``"a,b"`` or ``["a", "b"]`` -> ["a", "b"] (so CLI strings work as they are)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    out = [str(v).strip() for v in value if str(v).strip()]
    return out or None


@dataclass
class Listing:
    """What an adapter found: the items, and every entry it left out with the reason (no silent drops)."""

    rows: list[ManifestRow]
    skipped: list[SkippedEntry] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, int]:
        """Reason -> count, the reason's details (link targets) folded away, most common first."""
        counts: dict[str, int] = {}
        for e in self.skipped:
            key = e.reason.split(" (", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def list_items(name: str, root: str | os.PathLike, **opts) -> list[ManifestRow]:
    """List benchmark ``name`` found under ``root`` as manifest rows, in a deterministic order.

    Raises ``UnmaskError`` (one line) for an unknown dataset or option, a missing root, a root with
    nothing recognizable in it, or a missing required index file. A filter that selects nothing
    returns an empty list: that is the caller's call to make. Entries left out are logged as one warning;
    ``list_items_report`` returns them.
    """
    listing = list_items_report(name, root, **opts)
    if listing.skipped:
        counts = ", ".join(f"{n} {r}" for r, n in listing.skipped_by_reason().items())
        log.warning("%s: %d entries under %s are not items (%s)", name, len(listing.skipped), root, counts)
    return listing.rows


def list_items_report(name: str, root: str | os.PathLike, **opts) -> Listing:
    """``list_items`` plus the entries left out (unsupported type, symlink loop, broken link, listed but missing,
    ...) each with its reason; commands print them in their summaries."""
    fn = _get(name)
    root = Path(root).expanduser()
    if not root.exists():
        raise UnmaskError(f"{name}: dataset root {str(root)!r} does not exist")
    if not root.is_dir() and name not in _FILE_ROOTS:
        raise UnmaskError(f"{name}: dataset root {str(root)!r} is not a directory")
    root = root.resolve()

    splits = _as_list(opts.pop("splits", None))
    methods = _as_list(opts.pop("methods", None))
    allowed = adapter_options(name)
    unknown = sorted(k for k in opts if k not in allowed)
    if unknown:
        raise UnmaskError(f"{name}: unknown option {unknown[0]!r}; options: {', '.join(allowed)}")
    if splits is not None:
        bad = [s for s in splits if s not in SPLITS]
        if bad:
            raise UnmaskError(f"{name}: unknown split {bad[0]!r}; choose from {', '.join(SPLITS)}")
    if methods is not None:
        known = ("real",) + KNOWN_METHODS[name]
        if KNOWN_METHODS[name]:
            lower = {m.lower() for m in known}
            bad = [m for m in methods if m.lower() not in lower]
            if bad:
                raise UnmaskError(f"{name}: unknown method {bad[0]!r}; choose from {', '.join(known)}")

    with collect_skipped() as skipped:
        rows = fn(root, **opts)

    if splits is not None:
        rows = [r for r in rows if r.split in splits]
    if methods is not None:
        wanted = {m.lower() for m in methods}
        rows = [r for r in rows if r.method.lower() in wanted]
    rows = sorted(rows, key=lambda r: (r.label, r.method, r.video_id, r.source))
    seen: dict[str, str] = {}
    for r in rows:
        if r.key in seen:
            raise UnmaskError(f"{name}: two items share the id {r.key!r}: {seen[r.key]} and {r.source}")
        seen[r.key] = r.source
    return Listing(rows, sorted(set(skipped), key=lambda e: e.path))


# Each module registers itself on import; import them explicitly (no import-time discovery).
from unmask.data.adapters import (  # noqa: E402,F401
    celebdf,
    deeperforensics,
    dfdc,
    dfdcp,
    ffiw,
    ffpp,
    generic,
    wilddeepfake,
)
