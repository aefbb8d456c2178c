"""PRLE map sidecars: one Grad-CAM map per stored face crop and zoo member, cached beside the prepared store.

Paper 001 sec. III-B computes the zoo's attention maps once, offline ("the above process can be performed in an
offline way"); training then reads them per sample, cut by the same random-margin window and flip as the image.
So a map has EXACTLY the stored crop's height and width (the geometry every training window is cut from), and
lives beside the store::

    <store>/maps/<map_set>/manifest.json                      {"format", "members", "zoo", "cam_target", "created", ...}
    <store>/maps/<map_set>/<member>/<item key>/<frame>_<face>.png

The second line mirrors the crop's store-relative path ``crops/<item key>/<frame>_<face>.png`` with its leading
``crops/`` replaced by the member's folder. Each map is a lossless single-channel uint8 PNG: value v in [0, 1]
is stored as round(255 v) and read back as q / 255 (a quantization error of at most 1/510). Writes are atomic
(:mod:`unmask.io`), so a run killed mid-way leaves whole files only and a rerun skips what exists (resumable).

``unmask prle-maps`` (:mod:`unmask.commands.prle_maps`) writes them; ``load_maps`` is what a data-loader worker
calls (no torch: numpy + the store's fast PNG decoder).
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unmask.errors import UnmaskError

MAPS_DIR = "maps"
MAP_MANIFEST = "manifest.json"
MAP_FORMAT = "unmask-prle-maps/1"
# <store>/maps/<set>/_fused/<fusion key>/...: the fused-map cache the prle method writes (no member name starts
# with "_"). Writing a member's map deletes that face's fused maps, so a recomputed map never meets a stale fusion.
FUSED_DIR = "_fused"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(name: str, what: str) -> str:
    """A map-set or member name as one clean path component (letters, digits, ``._-``), so no name read from a
    command line or a manifest can make a read or write leave ``<store>/maps``."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise UnmaskError(f"{what} {name!r} is not a clean name (letters, digits, '.', '_', '-'; no '/')")
    return name


def map_set_dir(store_root: str | os.PathLike, map_set: str) -> Path:
    """``<store>/maps/<map_set>``."""
    return Path(store_root).expanduser().resolve() / MAPS_DIR / check_name(map_set, "map set")


def crop_relpath_of(store_root: str | os.PathLike, record) -> str:
    """The crop's path relative to the store (``crops/<key>/<frame>_<face>.png``) for a FaceRecord, or a store-
    relative crop path given as a string."""
    root = Path(store_root).expanduser().resolve()
    crop = Path(getattr(record, "crop_path", record))
    if crop.is_absolute():
        try:
            rel = crop.relative_to(root)
        except ValueError:
            try:
                rel = crop.resolve().relative_to(root)
            except ValueError:
                raise UnmaskError(f"crop {crop} is not inside the store {root}") from None
    else:
        rel = crop
    text = rel.as_posix()
    if any(p in ("", ".", "..") for p in text.split("/")):
        raise UnmaskError(f"crop path {text!r} is not a clean store-relative path")
    return text


def sidecar_path(store_root: str | os.PathLike, map_set: str, record, member: str) -> Path:
    """Where member ``member``'s map of ``record``'s crop lives (see the module docstring for the layout)."""
    rel = crop_relpath_of(store_root, record)
    parts = rel.split("/")
    if parts[0] == "crops" and len(parts) > 1:
        parts = parts[1:]
    return map_set_dir(store_root, map_set) / check_name(member, "zoo member") / "/".join(parts)


def png_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of a PNG from its IHDR chunk (24 bytes read, no decoding): the crop geometry check."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        raise UnmaskError(f"cannot read {path}") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise UnmaskError(f"{path} is not a PNG file")
    w, h = struct.unpack(">II", head[16:24])
    return int(h), int(w)


def crop_shape(record) -> tuple[int, int]:
    """(H, W) of a stored face crop (from its PNG header)."""
    return png_size(record.crop_path)


def quantize(cam: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 0..255 (round to nearest; values outside [0, 1] are clipped, NaN becomes 0)."""
    a = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_member_map(store_root: str | os.PathLike, map_set: str, record, member: str, cam: np.ndarray,
                     check_geometry: bool = True) -> Path:
    """Store ``cam`` (float HxW in [0, 1], exactly the crop's HxW) as ``member``'s map of ``record``; atomic."""
    from unmask.data.store import encode_png
    from unmask.io import atomic_write_bytes

    cam = np.asarray(cam)
    if cam.ndim != 2:
        raise UnmaskError(f"a PRLE map must be a single-channel HxW array, got shape {cam.shape}")
    if check_geometry and hasattr(record, "crop_path"):
        shape = crop_shape(record)
        if tuple(cam.shape) != shape:
            raise UnmaskError(f"map of {record.crop_path} is {cam.shape[1]}x{cam.shape[0]}, its crop "
                              f"{shape[1]}x{shape[0]} (maps are stored at the crop's geometry)")
    path = sidecar_path(store_root, map_set, record, member)
    atomic_write_bytes(path, encode_png(quantize(cam)))
    drop_fused(store_root, map_set, record)
    return path


def fused_relpath(store_root: str | os.PathLike, record) -> str:
    """The face's path below ``<set>/_fused/<fusion key>/`` (its crop path below ``crops/``)."""
    return crop_relpath_of(store_root, record).split("/", 1)[-1]


def drop_fused(store_root: str | os.PathLike, map_set: str, record) -> int:
    """Delete ``record``'s cached fused maps of every fusion key (its member maps changed); returns how many."""
    fused_root = map_set_dir(store_root, map_set) / FUSED_DIR
    if not fused_root.is_dir():
        return 0
    rel, n = fused_relpath(store_root, record), 0
    for key_dir in fused_root.iterdir():
        try:
            (key_dir / rel).unlink()
            n += 1
        except (FileNotFoundError, NotADirectoryError):
            pass
    return n


def read_map_png(path: str | os.PathLike) -> np.ndarray:
    """A stored map PNG as HxW uint8 (the store's fast decoder, OpenCV otherwise)."""
    from unmask.data.store import load_gray

    return load_gray(path, "PRLE map")


def _missing(store_root, map_set: str, record, member: str) -> UnmaskError:
    root = Path(store_root).expanduser().resolve()
    return UnmaskError(f"no PRLE map of zoo member {member!r} for {crop_relpath_of(root, record)} in map set "
                       f"{map_set!r}: run `unmask prle-maps --zoo RUN [RUN ...] --data {root} --map-set {map_set}` "
                       "(it resumes: only missing maps are computed)")


def load_maps(store_root: str | os.PathLike, map_set: str, record,
              members: Sequence[str] | None = None) -> np.ndarray:
    """(K, H, W) float32 in [0, 1]: the maps of ``record``'s crop from ``members`` (default: every member of the
    map set, in manifest order). H, W are the crop's; a missing map is a one-line error saying what to run."""
    names = list(members) if members is not None else map_set_members(store_root, map_set)
    if not names:
        raise UnmaskError(f"map set {map_set!r} has no members")
    out = None
    for i, m in enumerate(names):
        path = sidecar_path(store_root, map_set, record, m)
        if not path.is_file():
            raise _missing(store_root, map_set, record, m)
        u8 = read_map_png(path)
        if out is None:
            out = np.empty((len(names), *u8.shape), np.float32)
        elif u8.shape != out.shape[1:]:
            raise UnmaskError(f"PRLE map {path} is {u8.shape[1]}x{u8.shape[0]}, the other members' "
                              f"{out.shape[2]}x{out.shape[1]}: the map set is damaged (delete and rerun prle-maps)")
        np.multiply(u8, np.float32(1.0 / 255.0), out=out[i], casting="unsafe")
    if hasattr(record, "crop_path"):
        shape = crop_shape(record)
        if tuple(out.shape[1:]) != shape:
            raise UnmaskError(f"PRLE maps of {record.crop_path} are {out.shape[2]}x{out.shape[1]}, the crop "
                              f"{shape[1]}x{shape[0]}: the store was re-prepared; rerun prle-maps into a new map set")
    return out


def has_maps(store_root: str | os.PathLike, map_set: str, record, members: Sequence[str]) -> bool:
    """True when every member's map of ``record`` exists (the resume test of ``prle-maps``)."""
    return all(sidecar_path(store_root, map_set, record, m).is_file() for m in members)


# --- manifest ---------------------------------------------------------------------------------------------


def manifest_path(store_root: str | os.PathLike, map_set: str) -> Path:
    return map_set_dir(store_root, map_set) / MAP_MANIFEST


def read_map_manifest(store_root: str | os.PathLike, map_set: str) -> dict[str, Any]:
    """The map set's manifest; a one-line error when the map set does not exist or the file is damaged."""
    path = manifest_path(store_root, map_set)
    if not path.is_file():
        root = Path(store_root).expanduser().resolve()
        have = available_map_sets(root)
        hint = f" (map sets in this store: {', '.join(have)})" if have else ""
        raise UnmaskError(f"no PRLE map set {map_set!r} in {root}{hint}: run `unmask prle-maps --zoo RUN [RUN ...] "
                          f"--data {root} --map-set {map_set}`")
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UnmaskError(f"cannot read PRLE map manifest {path}") from None
    if not isinstance(man, dict) or not isinstance(man.get("members"), list):
        raise UnmaskError(f"{path} is not a PRLE map manifest (no 'members' list)")
    for m in man["members"]:
        check_name(m, f"zoo member in {path}")
    return man


def map_set_members(store_root: str | os.PathLike, map_set: str) -> list[str]:
    """The member names of a map set, in the order ``load_maps`` stacks them."""
    return list(read_map_manifest(store_root, map_set)["members"])


def available_map_sets(store_root: str | os.PathLike) -> list[str]:
    base = Path(store_root) / MAPS_DIR
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / MAP_MANIFEST).is_file())


def write_map_manifest(store_root: str | os.PathLike, map_set: str, members: Sequence[str],
                       zoo: Sequence[dict[str, Any]], cam_target: str, **extra: Any) -> Path:
    """Write (atomically) the map set's manifest: members, each member's checkpoint info, the CAM target, when.

    A map set belongs to one zoo: when a manifest exists with other members or checkpoints, this is a one-line
    error (maps of two zoos would mix); the same zoo (another shard, a resumed run) keeps the existing file."""
    import datetime

    from unmask.io import atomic_write_json

    names = [check_name(m, "zoo member") for m in members]
    if len(set(names)) != len(names):
        raise UnmaskError(f"zoo member names must be unique, got {names}")
    path = manifest_path(store_root, map_set)
    if path.is_file():
        old = read_map_manifest(store_root, map_set)
        same = (old.get("members") == names and old.get("cam_target") == cam_target
                and [z.get("checkpoint_sha256") for z in old.get("zoo", [])]
                == [z.get("checkpoint_sha256") for z in zoo])
        if not same:
            raise UnmaskError(f"map set {map_set!r} in {path.parent.parent.parent} was made by another zoo or CAM "
                              f"target (members {old.get('members')}, target {old.get('cam_target')}): choose another "
                              "--map-set, or delete that folder to rebuild it")
        return path
    man = {"format": MAP_FORMAT, "members": names, "zoo": list(zoo), "cam_target": cam_target,
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra}
    return atomic_write_json(path, man)
