"""Deepfake Detection Challenge (DFDC, Dolhansky et al., 2020): the full release's training parts and its
public test set.

    <root>/dfdc_train_part_<N>/metadata.json    {"<file>.mp4": {"label": "FAKE"|"REAL", "split": "train",
                                                                "original": "<real file>.mp4"|null}, ...}
    <root>/dfdc_train_part_<N>/<file>.mp4
    <root>/<test folder>/labels.csv             header "filename,label", label 1 = fake, 0 = real
    <root>/<test folder>/<file>.mp4             (or <test folder>/videos/<file>.mp4)

A ``metadata.json`` or ``labels.csv`` directly in ``<root>`` works too (one part, or the test set alone).
Training parts give split "train" (or the entry's own ``split``); the labels.csv set gives "test" —
the 5,000-video public test set that cross-dataset papers report. Videos listed but not on disk are
skipped (a partial download works); videos on disk but in no index are ignored.
A fake and its original share ``identity`` (the original's name).
"""

from __future__ import annotations

import logging
from pathlib import Path

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import list_dirs, note_skipped, nothing_found, parse_label, read_csv, read_json
from unmask.data.records import FAKE, REAL, SPLITS, ManifestRow
from unmask.errors import UnmaskError

log = logging.getLogger(__name__)

NAME = "dfdc"
LAYOUT = "dfdc_train_part_*/metadata.json with their .mp4, and/or a test folder with labels.csv and its .mp4"


def _metadata_label(entry: dict, where: str) -> int:
    if "label" in entry:
        return parse_label(str(entry["label"]), where)
    if "is_fake" in entry:
        return parse_label(str(int(entry["is_fake"])), where)
    raise UnmaskError(f"{where}: entry has neither 'label' nor 'is_fake'")


def _folder_split(folder: Path) -> str:
    name = folder.name.lower()
    return "test" if "test" in name else ("val" if "val" in name else "train")


def _part_rows(part: Path) -> tuple[list[ManifestRow], int]:
    meta_path = part / "metadata.json"
    meta = read_json(meta_path, NAME)
    if not isinstance(meta, dict):
        raise UnmaskError(f"{NAME}: {meta_path} must map file names to entries")
    rows, listed = [], 0
    for fname, entry in meta.items():
        listed += 1
        if not isinstance(entry, dict):
            raise UnmaskError(f"{NAME}: {meta_path}: entry for {fname!r} is not an object")
        path = part / fname
        if not path.is_file():
            note_skipped(path, f"listed in {meta_path.name} but not a file on disk")
            continue
        label = _metadata_label(entry, f"{NAME}: {meta_path}: {fname}")
        split = entry.get("split") if entry.get("split") in SPLITS else _folder_split(part)
        original = entry.get("original") or None
        identity = Path(original).stem if (label == FAKE and original) else path.stem
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=path.stem, label=label, method="real" if label == REAL else "fake",
                source=str(path), split=split, identity=identity,
                extra={"part": part.name, **({"original": original} if original else {})},
            )
        )
    return rows, listed


def _test_rows(folder: Path) -> tuple[list[ManifestRow], int]:
    labels_path = folder / "labels.csv"
    table = read_csv(labels_path, NAME)
    if table and not {"filename", "label"} <= set(table[0]):
        raise UnmaskError(f"{NAME}: {labels_path} needs the header 'filename,label'")
    video_dir = folder / "videos" if (folder / "videos").is_dir() else folder
    rows = []
    for n, rec in enumerate(table, 2):
        path = video_dir / rec["filename"]
        if not path.is_file():
            note_skipped(path, f"listed in {labels_path.name} but not a file on disk")
            continue
        label = parse_label(rec["label"], f"{NAME}: {labels_path} line {n}")
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=path.stem, label=label, method="real" if label == REAL else "fake",
                source=str(path), split="test", extra={"part": folder.name},
            )
        )
    return rows, len(table)


@register_adapter(NAME, methods=("fake",))
def list_dfdc(root: Path) -> list[ManifestRow]:
    """Every video present that a ``metadata.json`` or ``labels.csv`` under root (or one level down) labels."""
    folders = [root, *list_dirs(root)]
    parts = [f for f in folders if (f / "metadata.json").is_file()]
    tests = [f for f in folders if (f / "labels.csv").is_file()]
    if not parts and not tests:
        raise nothing_found(NAME, root, LAYOUT)
    rows: list[ManifestRow] = []
    listed = 0
    for part in parts:
        r, n = _part_rows(part)
        rows += r
        listed += n
    for folder in tests:
        r, n = _test_rows(folder)
        rows += r
        listed += n
    if listed and not rows:
        raise UnmaskError(f"{NAME}: the index files under {root} list {listed} videos but none is on disk")
    if len(rows) < listed:
        log.info("%s: %d of %d listed videos are present under %s", NAME, len(rows), listed, root)
    return rows
