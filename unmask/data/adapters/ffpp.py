"""FaceForensics++ (Rössler et al., ICCV 2019) in the layout its official download script writes.

    <root>/original_sequences/youtube/<comp>/videos/<id>.mp4            real, 1000 YouTube videos
    <root>/original_sequences/actors/<comp>/videos/<name>.mp4           real, DeepFakeDetection originals
    <root>/manipulated_sequences/<Method>/<comp>/videos/<t>_<s>.mp4     fake: target t, face/expression of s
    <root>/manipulated_sequences/<Method>/masks/videos/<t>_<s>.mp4      optional manipulation masks
    <root>/splits/{train,val,test}.json                                 official splits: lists of pairs [a, b]

The official splits cover the YouTube part only: a pair [a, b] puts originals a and b and the fakes
a_b and b_a into that split, so one identity never straddles two splits. DeepFakeDetection items
(actors originals and their fakes) get split None.
"""

from __future__ import annotations

import logging
from pathlib import Path

from unmask.data.adapters import register_adapter
from unmask.data.adapters._common import list_dirs, list_files, nothing_found, read_json
from unmask.data.records import FAKE, REAL, SPLITS, ManifestRow
from unmask.errors import UnmaskError

log = logging.getLogger(__name__)

NAME = "ffpp"
COMPRESSIONS = ("raw", "c23", "c40")
METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
ORIGINAL_SUBSETS = ("youtube", "actors")
LAYOUT = (
    "original_sequences/youtube/<comp>/videos/*.mp4 and/or manipulated_sequences/<Method>/<comp>/videos/*.mp4"
)


def pair_id(a: str, b: str) -> str:
    """The identity shared by originals a, b and fakes a_b, b_a: the two ids sorted and joined."""
    return "_".join(sorted((a, b)))


def read_splits(root: Path) -> dict[str, tuple[str, str]]:
    """Original id -> (split, pair id) from ``splits/*.json``; warns once when split files are missing."""
    out: dict[str, tuple[str, str]] = {}
    missing = []
    for split in SPLITS:
        path = root / "splits" / f"{split}.json"
        if not path.is_file():
            missing.append(path.name)
            continue
        pairs = read_json(path, NAME)
        if not isinstance(pairs, list):
            raise UnmaskError(f"{NAME}: {path} must be a list of [a, b] pairs")
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise UnmaskError(f"{NAME}: {path} must be a list of [a, b] pairs, found {pair!r}")
            a, b = (str(x) for x in pair)
            for vid in (a, b):
                out[vid] = (split, pair_id(a, b))
    if missing:
        log.warning(
            "%s: no %s under %s; items of those splits get split None", NAME, ", ".join(missing), root / "splits"
        )
    return out


def _fake_names(stem: str) -> tuple[str, str] | None:
    """``"183_253"`` -> ("183", "253"); DeepFakeDetection ``"01_02__scene__CODE"`` -> ("01", "02")."""
    head = stem.split("__", 1)[0]
    parts = head.split("_")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


@register_adapter(NAME, methods=METHODS)
def list_ffpp(root: Path, compression: str = "c23") -> list[ManifestRow]:
    """Originals and fakes of FF++ at one compression (``raw``, ``c23`` — the common choice — or ``c40``)."""
    if compression not in COMPRESSIONS:
        raise UnmaskError(f"{NAME}: unknown compression {compression!r}; choose from {', '.join(COMPRESSIONS)}")
    originals = [
        (subset, path)
        for subset in ORIGINAL_SUBSETS
        for path in list_files(root / "original_sequences" / subset / compression / "videos")
    ]
    fakes: list[tuple[str, Path, str, str]] = []  # method, path, target, source
    for method_dir in list_dirs(root / "manipulated_sequences"):
        for path in list_files(method_dir / compression / "videos"):
            names = _fake_names(path.stem)
            if names is None:
                log.warning("%s: skipping %s (expected <target>_<source>.mp4)", NAME, path)
                continue
            fakes.append((method_dir.name, path, *names))
    if not originals and not fakes:
        found = sorted(
            {p.parent.name for p in root.glob("original_sequences/*/*/videos")}
            | {p.parent.name for p in root.glob("manipulated_sequences/*/*/videos")} - {"masks"}
        )
        if found:
            raise UnmaskError(
                f"{NAME}: no {compression} videos under {root} (found {', '.join(found)}); "
                f"choose compression {found[0]} or download {compression}"
            )
        raise nothing_found(NAME, root, LAYOUT)

    splits = read_splits(root)
    # Pair ids from the split files; where those are missing, from the fake names (a_b pairs a with b).
    pair_of = {vid: pid for vid, (_, pid) in splits.items()}
    for _, path, a, b in fakes:
        if "__" not in path.stem:  # YouTube fakes only: DeepFakeDetection names pair actors, not videos
            pair_of.setdefault(a, pair_id(a, b))
            pair_of.setdefault(b, pair_id(a, b))

    rows: list[ManifestRow] = []
    for subset, path in originals:
        vid = path.stem
        if subset == "youtube":
            split, identity = splits.get(vid, (None, None))[0], pair_of.get(vid)
        else:  # actors: "01__exit_phone_room" -> identity "01"; not in the official splits
            split, identity = None, vid.split("__", 1)[0]
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=vid, label=REAL, method="real", source=str(path), split=split,
                compression=compression, identity=identity, extra={"subset": subset},
            )
        )
    for method, path, a, b in fakes:
        mask = root / "manipulated_sequences" / method / "masks" / "videos" / path.name
        if "__" in path.stem:  # DeepFakeDetection: split None, identity = the target actor
            split, identity = None, a
        else:
            split = splits[a][0] if a in splits else (splits[b][0] if b in splits else None)
            identity = pair_id(a, b)
        rows.append(
            ManifestRow(
                dataset=NAME, video_id=path.stem, label=FAKE, method=method, source=str(path), split=split,
                compression=compression, identity=identity, mask_source=str(mask) if mask.is_file() else None,
                extra={"target": a, "source": b},
            )
        )
    return rows
