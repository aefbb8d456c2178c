"""DeeperForensics-1.0 (Jiang et al., CVPR 2020): 11,000 DF-VAE face swaps onto the FF++ YouTube videos.

    <root>/manipulated_videos/<variant>/<target>_<source>.mp4   fake; <target> = FF++ YouTube id,
                                                                <source> = actor id (e.g. 000_M101.mp4)
    <root>/lists/splits/{train,val,test}.txt                    one fake file name per line
    <root>/target_videos/<target>.mp4                           optional: the real part (see below)

<variant> is one of ``end_to_end`` (the raw swaps of the paper's standard set), ``reenact_postprocess``,
``end_to_end_level_<1..5>``, ``end_to_end_random_level``, ``end_to_end_mix_<2..4>_distortions``; it
becomes the row's ``method``, so ``methods=["end_to_end"]`` selects the standard set.

The real part of the benchmark is FF++'s 1,000 c23 YouTube originals, which DeeperForensics does not
redistribute: put (or symlink) them into ``<root>/target_videos/`` to list them as reals. A real video
gets the split of the fakes made from it. ``identity`` is the target id, shared by a real and its fakes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import list_dirs, list_files, nothing_found
from unmask.data.records import FAKE, REAL, SPLITS, ManifestRow

log = logging.getLogger(__name__)

NAME = "deeperforensics"
VARIANTS = (
    "end_to_end",
    "reenact_postprocess",
    *(f"end_to_end_level_{i}" for i in range(1, 6)),
    "end_to_end_random_level",
    *(f"end_to_end_mix_{j}_distortions" for j in range(2, 5)),
)
LAYOUT = "manipulated_videos/<variant>/*.mp4 (and lists/splits/{train,val,test}.txt)"


def read_split_lists(root: Path) -> dict[str, str]:
    """Fake file stem -> split from lists/splits/*.txt; warns once when the lists are missing."""
    out: dict[str, str] = {}
    missing = []
    for split in SPLITS:
        path = root / "lists" / "splits" / f"{split}.txt"
        if not path.is_file():
            missing.append(path.name)
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
            if name:
                out[Path(name).stem] = split
    if missing:
        log.warning("%s: no %s under %s; those videos get split None", NAME, ", ".join(missing), root / "lists/splits")
    return out


@register_adapter(NAME, methods=VARIANTS)
def list_deeperforensics(root: Path) -> list[ManifestRow]:
    """Fakes of every variant folder present, plus reals from target_videos/ when it is there."""
    fakes = [(d.name, p) for d in list_dirs(root / "manipulated_videos") for p in list_files(d)]
    reals = list_files(root / "target_videos")
    if not fakes and not reals:
        raise nothing_found(NAME, root, LAYOUT)
    splits = read_split_lists(root)
    rows = []
    target_split: dict[str, str] = {}
    for variant, path in fakes:
        target, _, source = path.stem.partition("_")
        split = splits.get(path.stem)
        if split is not None:
            target_split.setdefault(target, split)
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=path.stem, label=FAKE, method=variant, source=str(path), split=split,
                identity=target, extra={"target": target, "source": source},
            )
        )
    # Targets named in the lists count even when their fakes are not downloaded.
    for stem, split in splits.items():
        target_split.setdefault(stem.partition("_")[0], split)
    for path in reals:
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=path.stem, label=REAL, method="real", source=str(path),
                split=target_split.get(path.stem), identity=path.stem,
            )
        )
    return rows
