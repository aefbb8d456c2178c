"""The prepared store: face crops + landmarks + boxes (+ masks) written by ``unmask prepare``.

Layout of a store folder (paths inside records are relative to the store root, so a store can be moved)::

    store.json                          format version + the options that shaped the crops (frames, detector, ...)
    items/<item key>.json               one record per item (video / image / frame folder): its outcome, every
                                        kept frame (with or without faces) and every face. Written atomically,
                                        LAST, after the item's crops: its presence means the item is done.
    crops/<item key>/<frame>_<face>.png RGB crop (SBI large-margin window, longest side <= max_crop_side)
    masks/<item key>/<frame>_<face>.png manipulation-mask crop (8-bit gray, same size), where the dataset has one
    manifest.jsonl                      one line per face, rebuilt at the end of every run (a convenience for
                                        other tools; readers here use the item records, so a stale one is harmless)
    summaries/shard-<i>-of-<n>.json     the last run's summary per shard

``<item key>`` is ``ManifestRow.key`` (``dataset/method/compression/video_id``), ``<frame>`` the 6-digit frame
index in the source video, ``<face>`` the face index in that frame (0 = largest).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from unmask.data.records import FaceRecord, ManifestRow
from unmask.errors import UnmaskError

STORE_FORMAT = "unmask-prepared"
STORE_VERSION = 1
ITEMS_DIR = "items"
CROPS_DIR = "crops"
MASKS_DIR = "masks"
MANIFEST = "manifest.jsonl"
STORE_META = "store.json"

# Item statuses. "partial": faces in some kept frames only; "no_face": in none; "failed": nothing usable.
OK, PARTIAL, NO_FACE, FAILED = "ok", "partial", "no_face", "failed"


def check_key(key: str) -> str:
    """An item key as a relative path: no empty, "." or ".." part, not absolute -- so that no key (from an
    adapter's file names or a record on disk) can make a read or write land outside the store."""
    parts = str(key).replace("\\", "/").split("/")
    if not key or str(key).startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UnmaskError(f"item key {key!r} is not a clean relative path (empty, '.' or '..' parts)")
    return str(key)


def item_record_path(root: Path, key: str) -> Path:
    return Path(root) / ITEMS_DIR / f"{check_key(key)}.json"


def crop_relpath(key: str, frame_index: int, face_index: int, kind: str = CROPS_DIR) -> str:
    return f"{kind}/{check_key(key)}/{frame_index:06d}_{face_index}.png"


def resolve_in_store(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` for a path read from a record, refused unless it stays inside the store: a record is data
    from a file and must not point a reader (or a training job's loader) at ``/etc`` or ``../../``."""
    text = str(rel).replace("\\", "/")
    parts = text.split("/")
    if not text or text.startswith("/") or os.path.isabs(text) or any(p in ("", ".", "..") for p in parts):
        raise UnmaskError(f"{where}: path {rel!r} in the record leaves the store or is not clean; "
                          "the store is damaged or was tampered with")
    return Path(root) / text  # lexical check only: a symlink the store's owner made inside it is theirs


@dataclass
class ItemOutcome:
    """What happened to one item: ``outcome`` is the human line ("ok", "no face in 3 of 32 frames", "failed: ...")."""

    key: str
    row: ManifestRow
    status: str
    outcome: str
    frames_kept: int
    frames_with_face: int
    faces: int
    record: dict[str, Any] = field(repr=False)


def _outcome_from_record(rec: dict[str, Any]) -> ItemOutcome:
    frames = rec.get("frames", [])
    return ItemOutcome(
        key=rec["key"], row=ManifestRow.from_json(rec["row"]), status=rec["status"], outcome=rec["outcome"],
        frames_kept=len(frames), frames_with_face=sum(1 for f in frames if f["faces"]),
        faces=sum(len(f["faces"]) for f in frames), record=rec,
    )


def read_item_record(path: Path) -> dict[str, Any] | None:
    """A finished item's record, or None when it is absent or unreadable (then the item is not done)."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format_version") != STORE_VERSION or "key" not in rec:
        return None
    return rec


# --- crops: lossless PNG -------------------------------------------------------------------------------------
#
# Crops stay lossless: forgery traces must not get a second lossy compression. Writing: every scanline gets
# PNG's "up" filter (difference to the row above, one numpy subtraction) and the result is deflated by ISA-L
# (the ``isal`` package) at its level 1 -- 1.5 ms for a 460x390 face crop where libpng/zlib at level 1 with
# the same filter takes ~5 ms, and the file is a little smaller (~156 vs ~162 KB). Without ``isal`` the same
# filter + zlib's RLE strategy run through OpenCV. Either way a standard PNG that any reader decodes to the
# same pixels. Reading (~2.5 ms per crop, most of it zlib's inflate inside libpng) does not depend on which
# writer made the file; stored (level 0) files decode in 0.8 ms but are 3.7x larger.

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_DEFLATE_LEVEL = 1  # ISA-L level (0-3): 1 measured fastest with the smallest files on face crops


def _isal_zlib():
    try:
        from isal import isal_zlib
    except ImportError:  # optional speed-up; OpenCV's encoder is used without it
        return None
    return isal_zlib


def _png_chunk(kind: bytes, data, crc32) -> bytes:
    import struct

    return struct.pack(">I", len(data)) + kind + bytes(data) + struct.pack(">I", crc32(data, crc32(kind)) & 0xFFFFFFFF)


def encode_png(img: np.ndarray, deflate_level: int = PNG_DEFLATE_LEVEL) -> bytes:
    """An RGB (HxWx3) or gray (HxW) uint8 image as lossless PNG bytes, fast (see the section comment)."""
    import struct

    arr = np.asarray(img)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"encode_png needs an HxW or HxWx3 uint8 image, got {arr.shape} {arr.dtype}")
    isal_zlib = _isal_zlib()
    if isal_zlib is None:
        return _encode_png_cv2(arr)
    h, w = arr.shape[:2]
    rows = np.ascontiguousarray(arr).reshape(h, -1)
    scan = np.empty((h, rows.shape[1] + 1), np.uint8)
    scan[:, 0] = 2  # filter type "up"
    scan[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=scan[1:, 1:])  # uint8 arithmetic wraps: PNG's modulo-256 difference
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if arr.ndim == 3 else 0, 0, 0, 0)
    crc = isal_zlib.crc32
    return b"".join([_PNG_SIGNATURE, _png_chunk(b"IHDR", ihdr, crc),
                     _png_chunk(b"IDAT", isal_zlib.compress(scan, deflate_level), crc), _png_chunk(b"IEND", b"", crc)])


def _encode_png_cv2(arr: np.ndarray) -> bytes:
    """The same filter through OpenCV (libpng + zlib, RLE strategy): ~2.5x faster than libpng's adaptive
    filtering at level 1 for about the same size."""
    import cv2

    bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER,
                                         cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_STRATEGY,
                                         cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def _png_parts(data: bytes) -> tuple[tuple[int, ...], bytes] | None:
    """(IHDR fields, the joined IDAT payload) of an 8-bit RGB or gray, non-interlaced PNG; None otherwise."""
    import struct

    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos, idat, hdr = 8, [], None
    try:
        while pos + 8 <= len(data):
            n, kind = struct.unpack_from(">I4s", data, pos)
            if kind == b"IHDR":
                hdr = struct.unpack_from(">IIBBBBB", data, pos + 8)
            elif kind == b"IDAT":
                idat.append(data[pos + 8:pos + 8 + n])
            elif kind == b"IEND":
                break
            pos += 12 + n
    except struct.error:
        return None
    if hdr is None or hdr[2] != 8 or hdr[3] not in (0, 2) or hdr[6] != 0:
        return None
    return hdr, b"".join(idat)


def decode_png_fast(data: bytes) -> np.ndarray | None:
    """Decode a PNG written by ``encode_png`` (8-bit RGB or gray, not interlaced, rows filtered "none" or
    "up") with ISA-L's inflate and a row-wise numpy unfilter; None for anything else (the caller falls back
    to OpenCV). Same pixels as any PNG reader, in about half of libpng's time on face crops (1.3 vs 2.6 ms
    for ~550x510: ISA-L inflates ~2.5x faster than zlib; ``benchmarks/synthesis_speed.py`` measures it)."""
    isal_zlib = _isal_zlib()
    parts = _png_parts(data) if isal_zlib is not None else None
    if parts is None:
        return None
    (w, h, _, ctype, _, _, _), idat = parts
    ch = 3 if ctype == 2 else 1
    try:
        raw = isal_zlib.decompress(idat)
    except isal_zlib.error:
        return None
    if len(raw) != h * (w * ch + 1):
        return None
    scan = np.frombuffer(raw, np.uint8).reshape(h, w * ch + 1)
    filters = scan[:, 0]
    if not np.all((filters == 0) | (filters == 2)):
        return None
    rows = scan[:, 1:]
    out = np.empty((h, w * ch), np.uint8)
    out[0] = rows[0]  # "up" on the first row adds the zero row above
    for r in range(1, h):  # uint8 addition wraps: PNG's modulo-256 sum
        if filters[r] == 2:
            np.add(out[r - 1], rows[r], out=out[r])
        else:
            out[r] = rows[r]
    return out.reshape(h, w, ch) if ch == 3 else out.reshape(h, w)


def decode_png_window(data: bytes, window: tuple[int, int, int, int] | None = None,
                      ) -> tuple[np.ndarray | None, tuple[int, int] | None]:
    """(``image[y0:y1, x0:x1]`` of an RGB PNG written by ``encode_png``, its (h, w)), decoding only what the
    window needs: rows below ``y1`` are never inflated (``max_length``), and the "up" unfilter runs only on
    the window's columns -- one vectorized modulo-256 sum for the rows above ``y0``, then row by row.
    ``window`` None: only the size is read (from IHDR). The image is None for anything ``decode_png_fast``
    would not decode (the caller falls back to a full read); the size is None when the header is unreadable.

    Why: a training pair's window covers ~43% of SBI's large stored crop (FF++ sample: 63% of its rows, 68% of
    its columns, ending at 85% of its height), so this is the same pixels as decoding the whole crop and
    cutting it, for ~0.9 instead of ~1.3 ms per pair (``benchmarks/synthesis_speed.py``).
    """
    isal_zlib = _isal_zlib()
    parts = _png_parts(data) if isal_zlib is not None else None
    if parts is None or parts[0][3] != 2:
        return None, _png_size(data)
    (w, h, *_), idat = parts
    if window is None:
        return None, (h, w)
    x0, y0, x1, y1 = (int(v) for v in window)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        return None, (h, w)
    stride = 3 * w + 1
    try:
        raw = isal_zlib.decompressobj().decompress(idat, y1 * stride)
    except isal_zlib.error:
        return None, (h, w)
    if len(raw) != y1 * stride:
        return None, (h, w)
    scan = np.frombuffer(raw, np.uint8).reshape(y1, stride)
    filters = scan[:, 0]
    if not np.all((filters == 0) | (filters == 2)):
        return None, (h, w)
    rows = scan[:, 1 + 3 * x0:1 + 3 * x1]
    out = np.empty((y1 - y0, 3 * (x1 - x0)), np.uint8)
    nz = np.flatnonzero(filters[:y0 + 1] == 0)  # the last "none" row at or above y0 restarts the sum
    start = int(nz[-1]) if len(nz) else 0
    np.add.reduce(rows[start:y0 + 1], axis=0, dtype=np.uint8, out=out[0])  # uint8 sums wrap: modulo 256
    for r in range(1, y1 - y0):
        if filters[y0 + r] == 2:
            np.add(out[r - 1], rows[y0 + r], out=out[r])
        else:
            out[r] = rows[y0 + r]
    return out.reshape(y1 - y0, x1 - x0, 3), (h, w)


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(h, w) from a PNG's IHDR (the first chunk), None when ``data`` is not a PNG."""
    import struct

    if not data.startswith(_PNG_SIGNATURE) or len(data) < 24 or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack_from(">II", data, 16)
    return int(h), int(w)


def _read_stored(path: str | os.PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        raise UnmaskError(f"cannot read {what} {path}") from None


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """A stored crop as HxWx3 uint8 RGB: the store's own PNGs through ``decode_png_fast``, anything else
    through OpenCV (decoded straight to RGB where it can: no BGR copy)."""
    return _decode_rgb(_read_stored(path, "stored crop"), path)


def _decode_rgb(data: bytes, path: str | os.PathLike) -> np.ndarray:
    """``load_rgb`` on bytes already read (``path`` names them in errors)."""
    import cv2

    fast = decode_png_fast(data)
    if fast is not None and fast.ndim == 3:
        return fast
    if not data:
        raise UnmaskError(f"cannot read stored crop {path} (empty file)")
    flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flag is None else flag)
    if img is None:
        raise UnmaskError(f"cannot read stored crop {path}")
    return img if flag is not None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_rgb_window(path: str | os.PathLike, window_of) -> tuple[np.ndarray, tuple[int, int]]:
    """(``image[window]`` of a stored crop, the crop's (h, w)), where ``window_of((h, w))`` names the
    window (x0, y0, x1, y1) once the size is known (``margin_window``): the store's own PNGs decode only the
    window (``decode_png_window``); anything else is read whole (``load_rgb``) and cut. Same pixels either way."""
    data = _read_stored(path, "stored crop")
    size = _png_size(data)
    if size is not None:
        window = window_of(size)
        img, _ = decode_png_window(data, window)
        if img is not None:
            return img, size
    full = _decode_rgb(data, path)  # not the store's own PNG: decode the bytes already read, whole
    hw = (int(full.shape[0]), int(full.shape[1]))
    if size is None:
        window = window_of(hw)
    x0, y0, x1, y1 = window
    return full[y0:y1, x0:x1], hw


def load_gray(path: str | os.PathLike, what: str = "stored mask") -> np.ndarray:
    """A stored single-channel PNG (a manipulation mask, a PRLE map) as HxW uint8: the fast decoder for the
    store's own PNGs, OpenCV otherwise."""
    import cv2

    data = _read_stored(path, what)
    arr = decode_png_fast(data)
    if arr is None or arr.ndim != 2:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) if data else None
        if arr is None:
            raise UnmaskError(f"cannot decode {what} {path}")
    return arr


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A stored manipulation-mask crop as HxW uint8 (0 = untouched)."""
    return load_gray(path, "stored mask")


class PreparedStore:
    """Read access to a prepared store (the per-item records are the source of truth)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        meta = self.root / STORE_META
        if not meta.is_file():
            raise UnmaskError(f"{self.root} is not a prepared store (no {STORE_META}); run `unmask prepare` first")
        self.meta = json.loads(meta.read_text(encoding="utf-8"))
        if self.meta.get("format") != STORE_FORMAT:
            raise UnmaskError(f"{meta} is not an unmask prepared-store file")
        self._records: list[dict[str, Any]] | None = None

    def _load(self) -> list[dict[str, Any]]:
        if self._records is None:
            recs = []
            items = self.root / ITEMS_DIR
            if items.is_dir():
                for p in sorted(items.rglob("*.json")):
                    if p.name.startswith("."):
                        continue  # a temp file of a write in progress
                    rec = read_item_record(p)
                    if rec is not None:
                        recs.append(rec)
            self._records = recs
        return self._records

    def refresh(self) -> None:
        self._records = None

    def items(self) -> list[ItemOutcome]:
        """Every finished item (ok, partial, no face, failed), sorted by key."""
        return [_outcome_from_record(r) for r in self._load()]

    def faces(self, split: str | Iterable[str] | None = None, labels: Iterable[int] | int | None = None,
              methods: Iterable[str] | str | None = None, largest_only: bool = False,
              datasets: Iterable[str] | str | None = None) -> list[FaceRecord]:
        """Stored faces, filtered; ``largest_only`` keeps face 0 of each frame. Order: item key, frame, face."""
        splits = _as_set(split)
        labs = None if labels is None else ({int(labels)} if isinstance(labels, int) else {int(x) for x in labels})
        meths = _as_set(methods, lower=True)
        dsets = _as_set(datasets)
        out: list[FaceRecord] = []
        for rec in self._load():
            row = rec["row"]
            if splits is not None and row.get("split") not in splits:
                continue
            if labs is not None and int(row["label"]) not in labs:
                continue
            if meths is not None and str(row["method"]).lower() not in meths:
                continue
            if dsets is not None and row["dataset"] not in dsets:
                continue
            for fr in rec.get("frames", []):
                for face in fr["faces"]:
                    if largest_only and face["face_index"] != 0:
                        continue
                    out.append(self._face_record(rec, row, fr["index"], face))
        return out

    def _face_record(self, rec: dict[str, Any], row: dict[str, Any], frame_index: int,
                     face: dict[str, Any]) -> FaceRecord:
        mask = face.get("mask")
        where = f"item record {rec['key']}"
        crop = resolve_in_store(self.root, face["crop"], where)
        mask_path = resolve_in_store(self.root, mask, where) if mask else None
        return FaceRecord(
            item_key=rec["key"], dataset=row["dataset"], video_id=row["video_id"], label=int(row["label"]),
            method=row["method"], split=row.get("split"), frame_index=int(frame_index),
            face_index=int(face["face_index"]), crop_path=str(crop),
            box=np.asarray(face["box"], dtype=np.float32), landmarks=np.asarray(face["landmarks"], dtype=np.float32),
            score=float(face["score"]), frame_box=np.asarray(face["frame_box"], dtype=np.float32),
            crop_origin=(int(face["crop_origin"][0]), int(face["crop_origin"][1])),
            mask_path=str(mask_path) if mask_path else None, identity=row.get("identity"),
            fallback=face.get("fallback"),
        )

    def summary(self) -> dict[str, Any]:
        """Counts by status plus frames / faces totals (what ``unmask prepare`` prints at the end)."""
        return summarize_outcomes(self.items())


def summarize_outcomes(items: list[ItemOutcome]) -> dict[str, Any]:
    counts = {OK: 0, PARTIAL: 0, NO_FACE: 0, FAILED: 0}
    for it in items:
        counts[it.status] = counts.get(it.status, 0) + 1
    frames = sum(i.frames_kept for i in items)
    with_face = sum(i.frames_with_face for i in items)
    return {
        "items": len(items), **counts,
        "frames": frames, "frames_with_face": with_face,
        "face_frame_share": (with_face / frames) if frames else 0.0,
        "faces": sum(i.faces for i in items),
    }


def write_manifest(root: Path, store: PreparedStore | None = None) -> Path:
    """Rebuild ``manifest.jsonl`` (one line per face) atomically from the item records."""
    from unmask.io import atomic_write_text

    store = store or PreparedStore(root)
    store.refresh()
    lines = []
    for f in store.faces():
        lines.append(json.dumps({
            "item_key": f.item_key, "dataset": f.dataset, "video_id": f.video_id, "label": f.label,
            "method": f.method, "split": f.split, "frame_index": f.frame_index, "face_index": f.face_index,
            "crop": os.path.relpath(f.crop_path, store.root), "score": round(f.score, 4),
            "box": [round(float(v), 2) for v in f.box],
            "mask": os.path.relpath(f.mask_path, store.root) if f.mask_path else None,
        }))
    return atomic_write_text(Path(root) / MANIFEST, "\n".join(lines) + ("\n" if lines else ""))


def _as_set(value, lower: bool = False) -> set[str] | None:
    if value is None:
        return None
    vals = [value] if isinstance(value, str) else list(value)
    return {str(v).lower() if lower else str(v) for v in vals}
