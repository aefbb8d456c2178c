"""Your own labelled data: a folder sorted into real/ and fake/, or a CSV file of (path, label).

Folder (root is a directory):

    <root>/[<split>/]real/.../<file>              label 0    (also: 0/, original/, pristine/)
    <root>/[<split>/]fake/.../<file>              label 1    (also: 1/, manipulated/, deepfake/)
    <root>/[<split>/]fake/<method>/.../<file>     label 1, method <method>

where <split> is an optional train/, val/ or test/ level and <file> is a video or an image. A folder of
images with no video or image beside it is not an item: every media file is one item.

CSV (root is a ``.csv`` file): a header line with ``path,label`` and optionally ``split``, ``method``,
``identity``; ``label`` is 0/1 or real/fake; relative paths are relative to the CSV's folder; a path may
be a video, an image or a folder of frames. Any other column is kept in the row's ``extra`` (with the path as
written, ``csv_path``), so reports can join back and group by it. Listed files that do not exist are skipped,
each with its line number.

Entries that are not items (unsupported types, hidden files, broken symlinks, symlink loops, stray files beside
the real/fake folders) are reported by ``list_items_report``; valid symlinks are followed.

Unlabelled media is not a dataset: score it with ``unmask detect``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import MEDIA_EXTS, note_skipped, nothing_found, parse_label, read_csv, scan
from unmask.data.media import link_problem
from unmask.data.records import FAKE, REAL, SPLITS, ManifestRow
from unmask.errors import UnmaskError

log = logging.getLogger(__name__)

NAME = "generic"
LAYOUT = "real/ and fake/ sub-folders (optionally under train/, val/, test/), or a .csv file with path,label"
ROW_COLUMNS = ("path", "label", "split", "method", "identity")  # CSV columns that become ManifestRow fields
LABEL_DIRS = {
    "real": REAL, "0": REAL, "original": REAL, "pristine": REAL,
    "fake": FAKE, "1": FAKE, "manipulated": FAKE, "deepfake": FAKE,
}


def _media_under(top: Path) -> list[Path]:
    """Every readable media file under ``top`` (links followed, loops cut); other entries are noted as skipped."""
    return scan(top, MEDIA_EXTS, recursive=True)


def _item_ids(rels: list[Path]) -> list[str]:
    """Item ids: the relative path without its extension (``fake/a.mp4`` -> ``fake/a``), except where two files
    differ only in their extension (``clip.3gp``, ``clip.mpg``): those keep it (``fake/clip.3gp``)."""
    stems = [r.with_suffix("").as_posix() for r in rels]
    count: dict[str, int] = {}
    for st in stems:
        count[st] = count.get(st, 0) + 1
    return [st if count[st] == 1 else r.as_posix() for st, r in zip(stems, rels)]


def _label_dirs(folder: Path) -> list[tuple[Path, int]]:
    return sorted(
        (d, LABEL_DIRS[d.name.lower()])
        for d in folder.iterdir()
        if d.is_dir() and d.name.lower() in LABEL_DIRS
    )


def _note_outside(folder: Path, known: set[str], what: str) -> None:
    """Entries of ``folder`` that the layout does not read (a stray file, an unknown sub-folder): noted as skipped."""
    for p in sorted(folder.iterdir()):
        if p.name.lower() not in known:
            note_skipped(p, f"not under a real/ or fake/ folder ({what})")


def _folder_rows(root: Path) -> list[ManifestRow]:
    groups: list[tuple[str | None, Path, int]] = [(None, d, lab) for d, lab in _label_dirs(root)]
    split_dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLITS)
    for split_dir in split_dirs:
        groups += [(split_dir.name.lower(), d, lab) for d, lab in _label_dirs(split_dir)]
    if not groups:
        raise nothing_found(NAME, root, LAYOUT)
    _note_outside(root, set(LABEL_DIRS) | set(SPLITS), "the dataset root")
    for split_dir in split_dirs:
        _note_outside(split_dir, set(LABEL_DIRS), f"split folder {split_dir.name}/")
    found = [(split, label_dir, label, path) for split, label_dir, label in groups for path in _media_under(label_dir)]
    ids = _item_ids([p.relative_to(root) for *_, p in found])
    rows = []
    for (split, label_dir, label, path), vid in zip(found, ids):
        rel = path.relative_to(label_dir)
        method = "real" if label == REAL else (rel.parts[0] if len(rel.parts) > 1 else "fake")
        rows.append(ManifestRow(dataset=NAME, video_id=vid, label=label, method=method, source=str(path), split=split))
    if not rows:
        raise UnmaskError(f"{NAME}: the real/fake folders under {root} hold no video or image files")
    return rows


def _csv_rows(csv_path: Path) -> list[ManifestRow]:
    table = read_csv(csv_path, NAME)
    if not table or not {"path", "label"} <= set(table[0]):
        raise UnmaskError(f"{NAME}: {csv_path} needs a header line with path,label (and at least one row)")
    base = csv_path.parent
    rows, missing = [], []
    rels: list[Path] = []
    for n, rec in enumerate(table, 2):
        where = f"{NAME}: {csv_path.name} line {n}"
        if not rec["path"]:
            raise UnmaskError(f"{where}: empty path")
        path = Path(rec["path"]).expanduser()
        # lexically normalized, links kept (a symlink loop would make resolve() raise): the path as the user named it
        path = Path(os.path.normpath(path if path.is_absolute() else base / path))
        label = parse_label(rec["label"], where)
        split = rec.get("split", "").lower() or None
        if split is not None and split not in SPLITS:
            raise UnmaskError(f"{where}: split {rec['split']!r} is not one of {', '.join(SPLITS)}")
        problem = link_problem(path) if path.is_symlink() else None
        if problem or not path.exists():
            missing.append(rec["path"])
            note_skipped(path, f"{csv_path.name} line {n}: {problem or 'file does not exist'}")
            continue
        method = rec.get("method") or ("real" if label == REAL else "fake")
        # every other column stays on the row (``unmask evaluate --group-by COLUMN``), the path as written too
        extra = {k: v for k, v in rec.items() if k not in ROW_COLUMNS}
        extra["csv_path"] = rec["path"]
        try:
            rels.append(path.relative_to(base))
        except ValueError:  # outside the CSV's folder
            rels.append(Path(path.as_posix().lstrip("/")))
        rows.append(
            ManifestRow(
                dataset=NAME, video_id="", label=label, method=method, source=str(path), split=split,
                identity=rec.get("identity") or None, extra=extra,
            )
        )
    rows = [replace(r, video_id=vid) for r, vid in zip(rows, _item_ids(rels))]
    if missing:
        log.warning("%s: %d paths in %s do not exist (first: %s); skipped", NAME, len(missing), csv_path, missing[0])
    if not rows:
        raise UnmaskError(f"{NAME}: none of the {len(table)} paths in {csv_path} exists")
    return rows


@register_adapter(NAME, accepts_file=True)
def list_generic(root: Path, face_crops: bool | str = False) -> list[ManifestRow]:
    """A labelled folder tree, or a CSV index when ``root`` is a ``.csv`` file.

    ``face_crops`` (``--option face_crops=true``): the images are face crops, so prepare may take a face-sized image
    in which no face was detected as its own face (recorded as a fallback; never without this option)."""
    if isinstance(face_crops, str):
        if face_crops.strip().lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise UnmaskError(f"{NAME}: face_crops must be true or false, got {face_crops!r}")
        face_crops = face_crops.strip().lower() in ("1", "true", "yes")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise UnmaskError(f"{NAME}: {root} is a file but not a .csv; pass a folder or a CSV index")
        rows = _csv_rows(root)
    else:
        rows = _folder_rows(root)
    if face_crops:
        rows = [replace(r, extra={**r.extra, "face_crops": True}) for r in rows]
    return rows
