"""DFDC preview (Dolhansky et al., 2019): about 5,000 videos, two face-swap methods, one index file.

    <root>/dataset.json                     {"<relative path>.mp4": {"label": "real"|"fake",
                                                                     "set": "train"|"test", ...}, ...}
    <root>/original_videos/<id>/<...>.mp4   real
    <root>/method_A/<id>/<...>.mp4          fake, method "method_A"
    <root>/method_B/<id>/<...>.mp4          fake, method "method_B"

Label and split ("set") come from dataset.json; the method is the first folder of a fake's path; the
identity is the second folder (the filmed person's id). Listed videos not on disk are skipped.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import note_skipped, nothing_found, parse_label, read_json
from unmask.data.records import REAL, SPLITS, ManifestRow
from unmask.errors import UnmaskError

NAME = "dfdcp"
LAYOUT = "dataset.json beside original_videos/, method_A/, method_B/"


@register_adapter(NAME, methods=("method_A", "method_B"))
def list_dfdcp(root: Path) -> list[ManifestRow]:
    """Every video present that ``dataset.json`` lists."""
    index = root / "dataset.json"
    if not index.is_file():
        raise nothing_found(NAME, root, LAYOUT)
    meta = read_json(index, NAME)
    if not isinstance(meta, dict):
        raise UnmaskError(f"{NAME}: {index} must map video paths to entries")
    rows = []
    for rel, entry in meta.items():
        where = f"{NAME}: {index}: {rel}"
        if not isinstance(entry, dict) or "label" not in entry:
            raise UnmaskError(f"{where}: entry has no 'label'")
        rel_path = PurePosixPath(rel.replace("\\", "/"))
        path = root.joinpath(*rel_path.parts)
        if not path.is_file():
            note_skipped(path, f"listed in {index.name} but not a file on disk")
            continue
        label = parse_label(str(entry["label"]), where)
        split = entry.get("set")
        if split is not None and split not in SPLITS:
            raise UnmaskError(f"{where}: set {split!r} is not one of {', '.join(SPLITS)}")
        parts = rel_path.parts
        method = "real" if label == REAL else (parts[0] if len(parts) > 1 else "fake")
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=rel_path.stem, label=label, method=method, source=str(path),
                split=split, identity=parts[1] if len(parts) > 2 else None, extra={"path": rel},
            )
        )
    if meta and not rows:
        raise UnmaskError(f"{NAME}: {index} lists {len(meta)} videos but none is on disk under {root}")
    return rows
