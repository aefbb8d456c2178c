"""Celeb-DF (v2, also v1) (Li et al., CVPR 2020) as its authors distribute it.

    <root>/Celeb-real/id<i>_<nnnn>.mp4                 real: celebrity interviews
    <root>/YouTube-real/<nnnnn>.mp4                    real: extra YouTube videos
    <root>/Celeb-synthesis/id<i>_id<j>_<nnnn>.mp4      fake: video of id<i> with the face of id<j>
    <root>/List_of_testing_videos.txt                  "<1|0> <folder>/<file>.mp4", 1 = real, 0 = fake

The benchmark's test set is the testing list (the cross-dataset protocol scores it); every other video
is "train". Labels come from the folder; the list's number is only checked against it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import list_files, nothing_found
from unmask.data.records import FAKE, REAL, ManifestRow
from unmask.errors import UnmaskError

log = logging.getLogger(__name__)

NAME = "celebdf"
FOLDERS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}
TEST_LISTS = ("List_of_testing_videos.txt", "CDFv1_testing_videos.txt")  # v2, v1
LAYOUT = "Celeb-real/, YouTube-real/ and/or Celeb-synthesis/ folders of .mp4"


def read_test_list(path: Path) -> dict[str, int]:
    """``"<folder>/<file>"`` -> the list's label (1 = real, 0 = fake, as the list writes it)."""
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise UnmaskError(f"{NAME}: {path.name} line {n}: expected '<1|0> <folder>/<file>.mp4', got {line!r}")
        out[parts[1].replace("\\", "/")] = int(parts[0])
    return out


@register_adapter(NAME, methods=("fake",))
def list_celebdf(root: Path) -> list[ManifestRow]:
    """Every video of the three folders; split "test" for the testing list, "train" for the rest."""
    found = [(folder, label, p) for folder, label in FOLDERS.items() for p in list_files(root / folder)]
    if not found:
        raise nothing_found(NAME, root, LAYOUT)
    list_path = next((root / n for n in TEST_LISTS if (root / n).is_file()), None)
    if list_path is None:
        log.warning("%s: no %s under %s; all videos get split None", NAME, TEST_LISTS[0], root)
        tests: dict[str, int] | None = None
    else:
        tests = read_test_list(list_path)

    rows = []
    for folder, label, path in found:
        rel = f"{folder}/{path.name}"
        if tests is None:
            split = None
        elif rel in tests:
            split = "test"
            if (tests[rel] == 1) != (label == REAL):
                log.warning("%s: %s says %s is %s; using its folder's label", NAME, list_path.name, rel,
                            "real" if tests[rel] == 1 else "fake")
        else:
            split = "train"
        stem = path.stem
        if folder == "YouTube-real":
            identity = None  # one unnamed person per YouTube video
        else:  # "id0_0000" -> "id0"; "id0_id16_0000" -> "id0" (the first id of the name)
            identity = stem.split("_", 1)[0]
        extra: dict = {"subset": folder}
        if label == FAKE and stem.count("_") >= 2:
            extra["ids"] = stem.split("_")[:2]  # the two celebrities of a synthesis video
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=stem, label=label, method="real" if label == REAL else "fake",
                source=str(path), split=split, identity=identity, extra=extra,
            )
        )
    return rows
