"""FFIW-10K (Face Forensics in the Wild, Zhou et al., CVPR 2021): multi-person videos.

    <root>/source/<split>/<name>.mp4        real   (or source/<split>/videos/<name>.mp4)
    <root>/target/<split>/<name>.mp4        fake: some of the faces in source/<split>/<name>.mp4 swapped

<split> is train, val or test (the test release unpacks into the same source/ target/ folders).
``<root>`` may also be the folder that holds ``FFIW10K-v1-release*/``. Cross-dataset papers (e.g. SBI)
report the 250 + 250 videos of ``val``. A real video and its fake share ``identity`` (the file name).
"""

from __future__ import annotations

from pathlib import Path

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import list_dirs, list_files, nothing_found
from unmask.data.records import FAKE, REAL, SPLITS, ManifestRow

NAME = "ffiw"
LAYOUT = "source/<train|val|test>/*.mp4 and/or target/<train|val|test>/*.mp4"


def _releases(root: Path) -> list[Path]:
    """The folders holding source/ or target/: root itself, else its FFIW10K-* sub-folders."""
    if (root / "source").is_dir() or (root / "target").is_dir():
        return [root]
    return [d for d in list_dirs(root) if (d / "source").is_dir() or (d / "target").is_dir()]


@register_adapter(NAME, methods=("fake",))
def list_ffiw(root: Path) -> list[ManifestRow]:
    """Every video of source/ (real) and target/ (fake) in each split folder present."""
    rows = []
    for release in _releases(root):
        for kind, label in (("source", REAL), ("target", FAKE)):
            for split in SPLITS:
                folder = release / kind / split
                for path in list_files(folder / "videos") + list_files(folder, known=("videos",)):
                    rows.append(
                        ManifestRow(
                            dataset=NAME, video_id=f"{split}_{path.stem}", label=label,
                            method="real" if label == REAL else "fake", source=str(path), split=split,
                            identity=f"{split}_{path.stem}", extra={"release": release.name},
                        )
                    )
    if not rows:
        raise nothing_found(NAME, root, LAYOUT)
    return rows
