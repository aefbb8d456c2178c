"""WildDeepfake (Zi et al., ACM MM 2020): 7,314 face sequences cut from 707 videos found on the internet.

The release is four folders of ``<n>.tar.gz`` archives; each archive holds folders of face images, one
folder per face sequence (image names are frame numbers). Extract every archive in place first:

    <root>/real_train/<n>/.../<sequence>/<frame>.png     real   ("real train" with a space also works)
    <root>/real_test/<n>/.../<sequence>/<frame>.png
    <root>/fake_train/<n>/.../<sequence>/<frame>.png     fake
    <root>/fake_test/<n>/.../<sequence>/<frame>.png

An item is a sequence folder (any folder directly holding images); ``source`` is that folder. Split is
train/test from the folder name; ``identity`` is the archive number (sequences of one source video).
"""

from __future__ import annotations

import os
from pathlib import Path

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import IMAGE_EXTS, nothing_found
from unmask.data.records import FAKE, REAL, ManifestRow
from unmask.errors import UnmaskError

NAME = "wilddeepfake"
LAYOUT = "real_train/, real_test/, fake_train/, fake_test/ holding extracted folders of face images"
CLASS_DIRS = {("real", "train"): REAL, ("real", "test"): REAL, ("fake", "train"): FAKE, ("fake", "test"): FAKE}


def _class_dir(root: Path, kind: str, split: str) -> Path | None:
    for sep in ("_", " ", "-"):
        d = root / f"{kind}{sep}{split}"
        if d.is_dir():
            return d
    return None


def _sequences(top: Path) -> list[Path]:
    """Folders under ``top`` that directly hold image files, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(f.lower().endswith(IMAGE_EXTS) and not f.startswith(".") for f in filenames):
            out.append(Path(dirpath))
    return sorted(out)


@register_adapter(NAME, methods=("fake",), face_crops=True)  # its items are face-sequence crops
def list_wilddeepfake(root: Path) -> list[ManifestRow]:
    """Every extracted face-sequence folder of the four class/split folders present."""
    rows = []
    archives = 0
    present = False
    for (kind, split), label in CLASS_DIRS.items():
        top = _class_dir(root, kind, split)
        if top is None:
            continue
        present = True
        archives += sum(1 for p in top.iterdir() if p.name.endswith((".tar.gz", ".tgz", ".tar")))
        for seq in _sequences(top):
            rel = seq.relative_to(top).parts
            rows.append(
                ManifestRow(
                    dataset=NAME, video_id="/".join((split, *rel)), label=label, method=kind,
                    source=str(seq), split=split, identity=f"{kind}_{split}/{rel[0]}" if rel else None,
                    extra={"archive": rel[0] if rel else None},
                )
            )
    if not present:
        raise nothing_found(NAME, root, LAYOUT)
    if not rows:
        if archives:
            raise UnmaskError(
                f"{NAME}: {archives} archives under {root} but no extracted image folders; extract each "
                f"<n>.tar.gz in place first (see docs/datasets.md)"
            )
        raise nothing_found(NAME, root, LAYOUT)
    return rows
