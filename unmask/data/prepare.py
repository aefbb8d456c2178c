"""The prepare job: manifest rows -> sampled frames -> faces -> stored crops + one record per item.

Per item (a video, an image or a frame folder):

1. sample N evenly spaced frames (``media``; an image is one frame, index 0);
2. detect every face in each kept frame with 68 landmarks, derive the 81 (``faces``);
3. cut each face's SBI large-margin window, capped at ``max_crop_side`` (``crops``), and the same window
   of the manipulation mask when the dataset ships one (sampled at the same frame indices);
4. write the crops (atomic PNGs), then the item record (atomic JSON) LAST: a record's presence means the
   item is finished, so a killed run resumes by skipping items that have one, and redoes the rest from
   scratch (an unfinished item's old crops are removed first). No write is ever visible half-done:
   ``unmask.io`` writes a dot-prefixed temp file and renames it; stale temp files of unfinished items are
   removed when the item is redone.

Every kept frame is in the record, with its faces or with none: a frame with no face is recorded, never
silently dropped. Outcomes: ``ok`` (a face in every kept frame), ``partial`` ("no face in k of N frames"),
``no_face`` (none at all), ``failed`` (with the reason: unreadable file, ...). A failing item never stops
the batch.

Parallelism: ``workers`` processes (spawn, so it is safe with any parent), each loading the face models
once. Sharding for clusters: shard ``i`` of ``n`` takes the items whose key hashes to ``i`` mod ``n``
(stable across runs and machines), so any scheduler can run the shards independently into one store.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from unmask.data import store as st
from unmask.data.crops import storage_crop
from unmask.data.faces import (WEAK_SCORE, Face, FaceDetector, build_face_detector, check_face_detector,
                                whole_image_face)
from unmask.data.media import (DEFAULT_MAX_PIXELS, MediaError, SampledVideo, VideoSampler, is_image, is_video,
                               read_image, sample_frame_folder)
from unmask.data.adapters import items_are_face_crops
from unmask.data.records import ManifestRow
from unmask.data.shard_lock import shard_lock
from unmask.data.store import encode_png
from unmask.errors import UnmaskError
from unmask.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from unmask.process import exit_with_parent

RUNNING_DIR = ".running"  # <shard>/<worker pid>.txt -> key of the item in progress (names a crash's culprit)


def _running_dir(root: Path, opts: "PrepareOptions") -> Path:
    """Per shard (and host): shards running at once into one store must not see each other's markers."""
    import socket

    return Path(root) / RUNNING_DIR / f"{opts.shard[0]}-of-{opts.shard[1]}-{socket.gethostname()}"


@dataclass
class PrepareOptions:
    """Options of a prepare run. ``store_options()`` are the ones that shape the stored data."""

    frames: int = 32
    detector: str = "dlib_hog"
    detector_opts: dict[str, Any] = field(default_factory=dict)
    max_crop_side: int = 640
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    retry_failed: bool = False
    image_max_pixels: int = DEFAULT_MAX_PIXELS
    decode_threads: int = 0  # 0 = 1 thread per worker when workers > 1, else FFmpeg's choice
    adaptive_detect: bool = True  # face-size hint within a video (see FacePipeline)

    def store_options(self) -> dict[str, Any]:
        return {"frames": int(self.frames), "detector": self.detector, "detector_opts": dict(self.detector_opts),
                "adaptive_detect": bool(self.adaptive_detect),
                "max_crop_side": int(self.max_crop_side), "image_max_pixels": int(self.image_max_pixels)}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise UnmaskError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UnmaskError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    i, n = shard
    if n == 1:
        return True
    h = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big")
    return h % n == i


# --- the per-frame face pipeline (shared with `unmask detect`) -------------------------------------------


class FacePipeline:
    """Detector + landmarks + storage crops for one frame; build once per process (models load once).

    Within one video (``start_video()``), the detector is told the size of the smallest face of the previous
    kept frame (``min_face`` = 0.85 x that) and where its faces were (``near``), so it can scan only the region
    around them, on a smaller copy -- HOG's cost grows with the pixels it scans, and a 250 px face needs no 640 px
    copy of the whole frame. Every ``refresh``-th kept frame, and whenever the hinted pass finds fewer faces than
    the previous frame, the whole frame is detected at the normal scale again, so a new face (smaller, or away
    from the others) is missed for at most ``refresh - 1`` kept frames. ``adaptive=False`` turns this off; a
    detector whose ``detect`` takes no ``min_face`` / ``near`` gets no hints.
    """

    def __init__(self, detector: str | FaceDetector = "dlib_hog", max_crop_side: int = 640, adaptive: bool = True,
                 refresh: int = 8, **detector_opts) -> None:
        self.detector = build_face_detector(detector, **detector_opts) if isinstance(detector, str) else detector
        self.max_crop_side = int(max_crop_side)
        self.adaptive = adaptive
        self.refresh = max(1, int(refresh))
        self._video: dict[str, Any] | None = None
        try:
            params = inspect.signature(self.detector.detect).parameters
        except (TypeError, ValueError):
            params = {}
        self._hint_args = [a for a in ("min_face", "near") if a in params]

    def start_video(self) -> None:
        """The next frames come from one video, in order (enables the face-size hint)."""
        hinted = self.adaptive and "min_face" in self._hint_args
        self._video = {"since_full": 0, "min_face": None, "count": 0, "boxes": []} if hinted else None

    def end_video(self) -> None:
        self._video = None

    def faces(self, rgb: np.ndarray, face_crop: bool = False) -> list[Face]:
        """Every face in the frame, largest first, with 68 (+81) landmarks in frame coordinates.

        ``face_crop``: the frame is a face crop (its adapter says so, ``adapters.items_are_face_crops``): when no
        face is detected and the frame is face-sized, the whole frame is returned as the face, marked
        ``fallback="whole_image"`` (``faces.whole_image_face``). Never on by default: elsewhere it would invent
        faces."""
        faces = self._detect(rgb)
        if not faces and face_crop:
            whole = whole_image_face(rgb, self.detector)
            if whole is not None:
                faces = [whole]
        return faces

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        v = self._video
        if v is None:
            return self.detector.detect(rgb)
        faces: list[Face] | None = None
        if v["min_face"] and v["since_full"] < self.refresh - 1:
            hints = {"min_face": 0.85 * v["min_face"], "near": v["boxes"]}
            faces = self.detector.detect(rgb, **{a: hints[a] for a in self._hint_args})
            v["since_full"] += 1
            if len(faces) < v["count"]:
                faces = None  # lost a face: look again at the normal scale
        if faces is None:
            faces = self.detector.detect(rgb)
            v["since_full"] = 0
        sides = [min(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces if f.score >= WEAK_SCORE]
        v["min_face"] = float(min(sides)) if sides else None
        v["count"] = len(faces)
        v["boxes"] = [f.box for f in faces]
        return faces

    def crops(self, rgb: np.ndarray, faces: list[Face], mask: np.ndarray | None = None):
        """The stored crop of each face (see ``crops.storage_crop``)."""
        return [storage_crop(rgb, f.box, f.landmarks81, max_side=self.max_crop_side, mask=mask) for f in faces]


def faces_for_frame(rgb: np.ndarray, detector: "FaceDetector | FacePipeline", face_crop: bool = False) -> list[Face]:
    """Every face in an RGB frame, largest first (the same code prepare runs); ``face_crop``: see
    ``FacePipeline.faces``."""
    if isinstance(detector, FacePipeline):
        return detector.faces(rgb, face_crop=face_crop)
    faces = detector.detect(rgb)
    if not faces and face_crop:
        whole = whole_image_face(rgb, detector)
        faces = [whole] if whole is not None else []
    return faces


# --- one item ------------------------------------------------------------------------------------------------


def _round(a: np.ndarray, nd: int = 2) -> list:
    return np.round(np.asarray(a, dtype=np.float64), nd).tolist()


def _open_frames(row: ManifestRow, opts: PrepareOptions,
                 threads: int) -> tuple[str, SampledVideo, Iterable[tuple[int, np.ndarray]], float]:
    """(kind, info, frames, image scale) for a row's source; unreadable input -> MediaError.

    ``frames`` yields (index, RGB) in index order. A video's are streamed by a ``VideoSampler`` (one decoded frame
    in memory at a time; ``info``'s decode figures are final once it is exhausted); images and frame folders are
    read at once.
    """
    try:
        return _open_frames_unchecked(row, opts, threads)
    except OSError as exc:  # permissions, I/O errors on the input: the item's problem, not the store's
        raise MediaError(f"cannot read {row.source}: {exc.strerror or exc}") from None


def _open_frames_unchecked(row: ManifestRow, opts: PrepareOptions,
                           threads: int) -> tuple[str, SampledVideo, Iterable[tuple[int, np.ndarray]], float]:
    src = Path(row.source)
    if src.is_dir():
        sv = sample_frame_folder(src, opts.frames, max_pixels=opts.image_max_pixels)
        return "frames", sv, sv.frames, 1.0
    if is_image(src):
        li = read_image(src, max_pixels=opts.image_max_pixels)
        h, w = li.rgb.shape[:2]
        sv = SampledVideo(frames=[(0, li.rgb)], frames_decoded=1, frame_count=1, fps=0.0, rotation=0,
                          targets=[0], width=w, height=h)
        return "image", sv, sv.frames, li.scale
    if is_video(src):
        sampler = VideoSampler(src, opts.frames, threads=threads)
        return "video", sampler.info, sampler, 1.0
    if not src.exists():
        raise MediaError(f"file not found: {src}")
    raise MediaError(f"unsupported file type {src.suffix or '(no extension)'!r}")


def _timed_frames(frames: Iterable[tuple[int, np.ndarray]], timing: dict[str, float],
                  source: str) -> Iterator[tuple[int, np.ndarray]]:
    """``frames`` with the time spent producing them added to ``timing["decode_s"]``; an I/O error while reading
    the input becomes a MediaError (the item's problem, not the store's)."""
    it = iter(frames)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            timing["decode_s"] += time.perf_counter() - t
            return
        except OSError as exc:
            raise MediaError(f"cannot read {source}: {exc.strerror or exc}") from None
        timing["decode_s"] += time.perf_counter() - t
        yield item


def _load_masks(row: ManifestRow, kind: str, indices: list[int], opts: PrepareOptions,
                threads: int) -> tuple[dict[int, np.ndarray], str | None]:
    """Mask frames at ``indices`` as HxW uint8 (max over the channels), or a reason they are missing."""
    if not row.mask_source:
        return {}, None
    src = Path(row.mask_source)
    out: dict[int, np.ndarray] = {}
    try:
        if kind == "image" and is_image(src):
            frames: Iterable[tuple[int, np.ndarray]] = [(0, read_image(src, max_pixels=opts.image_max_pixels).rgb)]
        elif src.is_dir():
            frames = sample_frame_folder(src, len(indices), indices=indices).frames
        else:
            frames = VideoSampler(src, len(indices), indices=indices, threads=threads)
        for i, rgb in frames:  # one channel each as they come: a mask video never sits in memory as RGB
            out[i] = rgb.max(axis=2)
    except (MediaError, OSError) as exc:
        return {}, f"mask unreadable: {exc}"
    missing = [i for i in indices if i not in out]
    return out, (f"mask missing for frames {missing[:5]}" if missing else None)


def _mask_for(masks: dict[int, np.ndarray], index: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """The mask of frame ``index`` at the frame's size (nearest-neighbour if the mask video's size differs)."""
    import cv2

    m = masks.get(index)
    if m is not None and m.shape != tuple(shape[:2]):
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m


class CropWriter:
    """Encodes and writes crops (PNG, atomic, fsync'ed) on one background thread while the caller goes on with
    the next frame: the fsync waits (a few ms per file on a busy disk) then overlap decoding and detection instead
    of stalling the worker. CPU time is the same. ``wait()`` -- before the item's record is written -- returns
    once every crop is on disk and re-raises the first error; ``drain()`` waits and drops errors (an item that
    failed anyway, before its crops are removed).
    """

    def __init__(self) -> None:
        self._pool = None
        self._pending: list = []

    def submit(self, path: Path, img: np.ndarray) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unmask-crop-writer")
        self._pending.append(self._pool.submit(_write_png, path, img))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for fut in pending:
            fut.result()

    def drain(self) -> None:
        pending, self._pending = self._pending, []
        for fut in pending:
            try:
                fut.result()
            except Exception:
                pass

    def close(self) -> None:
        """Drain, then stop the thread."""
        self.drain()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _write_png(path: Path, img: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(img))


def process_item(row: ManifestRow, root: Path, opts: PrepareOptions, pipeline: FacePipeline,
                 threads: int = 0, writer: CropWriter | None = None) -> dict[str, Any]:
    """Prepare one item into the store at ``root`` and return its record (already written).

    ``writer``: where crops are written (a ``CropWriter`` of the worker; by default one for this item).
    """
    t0 = time.perf_counter()
    own_writer = writer is None
    writer = writer or CropWriter()
    key = row.key
    root = Path(root)
    _clear_item(root, key)
    det_stats = getattr(pipeline.detector, "stats", None)
    s0 = dict(det_stats) if det_stats else {}
    rec: dict[str, Any] = {"format_version": st.STORE_VERSION, "key": key, "row": row.to_json(),
                           "frames_requested": opts.frames}
    timing = {"decode_s": 0.0, "detect_s": 0.0, "landmarks_s": 0.0, "write_s": 0.0}
    frames: Iterable[tuple[int, np.ndarray]] = []
    sampler = None
    try:
        kind, sv, frames, img_scale = _open_frames(row, opts, threads)
        sampler = frames if isinstance(frames, VideoSampler) else None
        timing["decode_s"] = time.perf_counter() - t0
        masks: dict[int, np.ndarray] = {}
        if row.mask_source:
            if not sv.targets:  # a video without timestamps: its targets are known only once decoded
                frames = list(_timed_frames(frames, timing, row.source))
            indices = [i for i, _ in frames] if isinstance(frames, list) else list(sv.targets)
            masks, mask_warning = _load_masks(row, kind, indices, opts, threads)
            if mask_warning:
                rec["mask_warning"] = mask_warning
        frames_out = []
        t_write = 0.0
        face_crop = items_are_face_crops(row)  # only then may a whole image be taken as its face
        if kind != "image":
            pipeline.start_video()
        for index, rgb in _timed_frames(frames, timing, row.source):
            faces = pipeline.faces(rgb, face_crop=face_crop)
            crops = pipeline.crops(rgb, faces, mask=_mask_for(masks, index, rgb.shape))
            tw = time.perf_counter()
            face_recs = []
            for fi, (face, crop) in enumerate(zip(faces, crops)):
                rel = st.crop_relpath(key, index, fi)
                writer.submit(root / rel, crop.image)
                mrel = None
                if crop.mask is not None:
                    mrel = st.crop_relpath(key, index, fi, kind=st.MASKS_DIR)
                    writer.submit(root / mrel, crop.mask)
                face_recs.append({
                    "face_index": fi, "crop": rel, "mask": mrel, "score": round(float(face.score), 4),
                    "box": _round(crop.box), "landmarks": _round(crop.landmarks),
                    "frame_box": _round(face.box), "crop_origin": list(crop.origin), "crop_scale": crop.scale,
                    "crop_size": [int(crop.image.shape[1]), int(crop.image.shape[0])],
                })
            t_write += time.perf_counter() - tw
            for face, fr in zip(faces, face_recs):
                if face.fallback:  # only then: records of detected faces stay as they were
                    fr["fallback"] = face.fallback
            frames_out.append({"index": int(index), "faces": face_recs})
        pipeline.end_video()
        tw = time.perf_counter()
        writer.wait()  # every crop on disk before the record says the item is done
        t_write += time.perf_counter() - tw
        frames_out.sort(key=lambda f: f["index"])
        rec.update({"kind": kind, "frame_count": sv.frame_count, "frames_decoded": sv.frames_decoded,
                    "container_frame_count": sv.container_frame_count, "fps": sv.fps, "rotation": sv.rotation,
                    "size": [sv.width, sv.height], "image_scale": img_scale, "targets": sv.targets,
                    "missing": sv.missing, "seeks": sv.seeks, "warning": sv.warning})
        if "mask_warning" in rec:  # keep the record's key order: mask_warning after the decode figures
            rec["mask_warning"] = rec.pop("mask_warning")
        rec["frames"] = frames_out
        timing["write_s"] = t_write
        n_kept = len(frames_out)
        n_face = sum(1 for f in frames_out if f["faces"])
        if n_face == n_kept:
            rec["status"], rec["outcome"] = st.OK, "ok"
        elif n_face == 0:
            rec["status"], rec["outcome"] = st.NO_FACE, f"no face in {n_kept} of {n_kept} frames"
        else:
            rec["status"], rec["outcome"] = st.PARTIAL, f"no face in {n_kept - n_face} of {n_kept} frames"
        n_whole = sum(1 for f in frames_out if any(fr.get("fallback") for fr in f["faces"]))
        if n_whole:
            rec["fallback_frames"] = n_whole  # frames whose face is the whole image (face-crop datasets)
        if sv.missing:
            rec["outcome"] += f" ({len(sv.missing)} of {len(sv.targets)} frames undecodable)"
    except MediaError as exc:
        pipeline.end_video()
        writer.drain()
        _clear_item(root, key)
        rec.update({"status": st.FAILED, "outcome": f"failed: {exc}", "reason": str(exc), "frames": []})
    except OSError:  # the store cannot be written (disk full, permissions): stop the job, mark nothing failed
        pipeline.end_video()
        writer.drain()
        raise
    except Exception as exc:  # a bug or a native-library error: record it, the batch goes on
        pipeline.end_video()
        writer.drain()
        _clear_item(root, key)
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        rec.update({"status": st.FAILED, "outcome": f"failed: {msg}", "reason": msg, "frames": [],
                    "traceback": traceback.format_exc(limit=8)})
    finally:
        if sampler is not None:
            sampler.close()
        if own_writer:
            writer.close()
    s1 = dict(det_stats) if det_stats else {}
    timing["detect_s"] = s1.get("detect_s", 0.0) - s0.get("detect_s", 0.0)
    timing["landmarks_s"] = s1.get("landmarks_s", 0.0) - s0.get("landmarks_s", 0.0)
    timing["total_s"] = time.perf_counter() - t0
    rec["timing"] = {k: round(v, 4) for k, v in timing.items()}
    rec["store_options"] = opts.store_options()
    rec["finished_at"] = time.time()
    write_item_record(root, rec)  # LAST: marks the item done
    return rec


def write_item_record(root: Path, rec: dict[str, Any]) -> None:
    """Compact JSON (one line): Python's indenting encoder is pure Python and cost 16% of prepare's CPU."""
    atomic_write_text(st.item_record_path(root, rec["key"]), json.dumps(rec, separators=(",", ":")) + "\n")


def _clear_item(root: Path, key: str) -> None:
    """Remove what an interrupted earlier attempt at this item left: crops, masks, temp files."""
    for d in (st.CROPS_DIR, st.MASKS_DIR):
        shutil.rmtree(root / d / key, ignore_errors=True)
    rec = st.item_record_path(root, key)
    if rec.parent.is_dir():
        for tmp in rec.parent.glob(f".{rec.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def is_done(root: Path, key: str, retry_failed: bool = False) -> bool:
    rec = st.read_item_record(st.item_record_path(root, key))
    if rec is None:
        return False
    return not (retry_failed and rec.get("status") == st.FAILED)


# --- workers -------------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(opts_json: dict[str, Any], root: str) -> None:
    opts = PrepareOptions(**{**opts_json, "shard": tuple(opts_json["shard"])})
    _WORKER["opts"] = opts
    _WORKER["root"] = Path(root)
    _WORKER["running"] = _running_dir(Path(root), opts)
    _WORKER["pipeline"] = FacePipeline(opts.detector, max_crop_side=opts.max_crop_side,
                                       adaptive=opts.adaptive_detect, **opts.detector_opts)
    threads = opts.decode_threads or (1 if opts.workers > 1 else 0)
    _WORKER["threads"] = threads
    _WORKER["writer"] = CropWriter()
    try:  # decoding and cv2 inside a worker: one thread each, the pool provides the parallelism
        import cv2

        if opts.workers > 1:
            cv2.setNumThreads(1)
    except Exception:
        pass


def _init_pool_worker(opts_json: dict[str, Any], root: str, parent_pid: int) -> None:
    exit_with_parent(parent_pid)  # kill -9 of `unmask prepare` must not leave workers behind
    _init_worker(opts_json, root)


def _work(row_json: dict[str, Any]) -> dict[str, Any]:
    root: Path = _WORKER["root"]
    row = ManifestRow.from_json(row_json)
    marker = _WORKER["running"] / f"{os.getpid()}.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(row.key)
    crash_on = os.environ.get("UNMASK_PREPARE_FAULT")  # fault injection for the crash-recovery test
    if crash_on and crash_on in row.key:
        os._exit(3)
    rec = process_item(row, root, _WORKER["opts"], _WORKER["pipeline"], threads=_WORKER["threads"],
                       writer=_WORKER["writer"])
    marker.unlink(missing_ok=True)
    return _brief(rec)


def _brief(rec: dict[str, Any]) -> dict[str, Any]:
    frames = rec.get("frames", [])
    return {"key": rec["key"], "status": rec["status"], "outcome": rec["outcome"], "frames": len(frames),
            "frames_with_face": sum(1 for f in frames if f["faces"]), "faces": sum(len(f["faces"]) for f in frames),
            "frames_decoded": rec.get("frames_decoded", 0), "timing": rec.get("timing", {})}


# --- the job -------------------------------------------------------------------------------------------------


def init_store(root: Path, opts: PrepareOptions) -> None:
    """Create the store (or check an existing one was made with the same data-shaping options)."""
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / st.STORE_META
    want = opts.store_options()
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != st.STORE_FORMAT:
            raise UnmaskError(f"{root} holds a {st.STORE_META} that is not an unmask store")
        have = meta.get("options", {})
        diff = [k for k in want if have.get(k) != want[k]]
        if diff:
            k = diff[0]
            raise UnmaskError(f"store {root} was prepared with {k}={have.get(k)!r}, this run asks for {want[k]!r}; "
                              "use another --out (a store holds one set of options)")
        return
    atomic_write_json(meta_path, {"format": st.STORE_FORMAT, "version": st.STORE_VERSION, "options": want,
                                  "created_at": time.time()})


def run_prepare(rows: Iterable[ManifestRow], out: str | os.PathLike, opts: PrepareOptions | None = None,
                progress: bool = True, log=None) -> dict[str, Any]:
    """Prepare ``rows`` into the store ``out`` (resumable, sharded, parallel); returns the run's summary.

    A second run of the same shard into the same store is refused (:class:`~unmask.data.shard_lock.ShardLockedError`,
    naming the holder) without touching the store."""
    opts = opts or PrepareOptions()
    check_face_detector(opts.detector)  # before any worker starts or anything is written
    root = Path(out).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnmaskError(f"cannot create the store {root}: {exc.strerror or exc}") from None
    with shard_lock(root, opts.shard):  # one writer per shard; refused before anything is written
        return _run_prepare_locked(rows, root, opts, progress, log)


def _run_prepare_locked(rows: Iterable[ManifestRow], root: Path, opts: PrepareOptions, progress: bool,
                        log) -> dict[str, Any]:
    from tqdm import tqdm

    init_store(root, opts)
    rows = list(rows)
    shard_rows = [r for r in rows if in_shard(r.key, opts.shard)]
    todo = [r for r in shard_rows if not is_done(root, r.key, opts.retry_failed)]
    skipped = len(shard_rows) - len(todo)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    interrupted = False
    bar = tqdm(total=len(todo), desc="prepare", unit="item", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)

    def on_result(res: dict[str, Any]) -> None:
        results.append(res)
        bar.update(1)
        frames = sum(r["frames"] for r in results)
        bar.set_postfix(ok=sum(r["status"] == st.OK for r in results),
                        noface=sum(r["status"] in (st.PARTIAL, st.NO_FACE) for r in results),
                        failed=sum(r["status"] == st.FAILED for r in results),
                        fps=f"{frames / max(time.perf_counter() - t0, 1e-9):.1f}")
        if log is not None and res["status"] != st.OK:
            log(f"{res['key']}: {res['outcome']}")

    try:
        if opts.workers <= 1:
            _init_worker(_opts_json(opts), str(root))
            for r in todo:
                on_result(_work(r.to_json()))
        else:
            _run_pool(todo, root, opts, on_result)
    except KeyboardInterrupt:
        interrupted = True
    except OSError as exc:
        raise UnmaskError(f"cannot write to the store {root}: {exc.strerror or exc}") from None
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    shutil.rmtree(_running_dir(root, opts), ignore_errors=True)
    summary = _summarize(results, wall)
    summary.update({"items_listed": len(rows), "items_in_shard": len(shard_rows), "skipped_done": skipped,
                    "shard": f"{opts.shard[0]}/{opts.shard[1]}", "workers": opts.workers, "interrupted": interrupted,
                    "store": str(root)})
    store = st.PreparedStore(root)
    shard_keys = {r.key for r in shard_rows}
    summary["shard_store"] = st.summarize_outcomes([i for i in store.items() if i.key in shard_keys])
    st.write_manifest(root, store)
    atomic_write_json(root / "summaries" / f"shard-{opts.shard[0]}-of-{opts.shard[1]}.json", summary)
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _opts_json(opts: PrepareOptions) -> dict[str, Any]:
    d = asdict(opts)
    d["shard"] = list(opts.shard)
    return d


def _run_pool(todo: list[ManifestRow], root: Path, opts: PrepareOptions, on_result) -> None:
    """Run items on a spawn pool. A worker that dies (OOM, native crash) breaks the pool: the items it was
    running are charged a crash, the rest are resubmitted; an item that crashes twice is recorded as failed."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    pending = list(todo)
    crashes: dict[str, int] = {}
    running = _running_dir(root, opts)
    fruitless = 0  # pool breaks in a row that finished nothing and named no culprit
    while pending:
        shutil.rmtree(running, ignore_errors=True)
        ex = ProcessPoolExecutor(max_workers=opts.workers, mp_context=ctx, initializer=_init_pool_worker,
                                 initargs=(_opts_json(opts), str(root), os.getpid()))
        procs: dict[int, Any] = {}
        try:
            futs = [ex.submit(_work, r.to_json()) for r in pending]
            procs = dict(getattr(ex, "_processes", None) or {})  # pid -> Process (spawned by the submits)
            for fut in as_completed(futs):
                on_result(fut.result())
            pending = []
            ex.shutdown(wait=True)
        except KeyboardInterrupt:  # stop now: the items in flight have no record and are redone next time
            procs = list(getattr(ex, "_processes", {}).values())
            ex.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
            raise
        except BrokenProcessPool:
            ex.shutdown(wait=False, cancel_futures=True)
            culprits = set()
            if running.is_dir():
                culprits = {m.read_text().strip() for m in running.glob("*.txt")
                            if _died_by_itself(procs.get(_pid_of(m)))}
            for key in culprits:
                crashes[key] = crashes.get(key, 0) + 1
            left = [r for r in pending if not is_done(root, r.key)]
            fruitless = fruitless + 1 if (len(left) == len(pending) and not culprits) else 0
            pending = []
            for r in left:
                if crashes.get(r.key, 0) >= 2 or fruitless >= 3:
                    on_result(_brief(_record_crash(root, r, opts)))
                else:
                    pending.append(r)
    shutil.rmtree(running, ignore_errors=True)


def _pid_of(marker: Path) -> int | None:
    try:
        return int(marker.stem)
    except ValueError:
        return None


def _died_by_itself(proc, timeout: float = 30.0) -> bool:
    """Whether a worker is the culprit of a broken pool. When one worker dies (OOM kill, native crash), the pool
    terminates the others (SIGTERM) mid-item: those bystanders' items are redone without being charged a crash.
    A worker still alive after ``timeout`` (a loaded machine: the pool has not reached it yet) did not die by
    itself either. An unknown pid cannot be cleared and counts as the culprit."""
    import signal

    if proc is None:
        return True
    proc.join(timeout)
    return proc.exitcode is not None and proc.exitcode != -signal.SIGTERM


def _record_crash(root: Path, row: ManifestRow, opts: PrepareOptions) -> dict[str, Any]:
    _clear_item(root, row.key)
    reason = "worker process died twice on this item (out of memory or a crash in a native library)"
    rec = {"format_version": st.STORE_VERSION, "key": row.key, "row": row.to_json(), "frames_requested": opts.frames,
           "status": st.FAILED, "outcome": f"failed: {reason}", "reason": reason, "frames": [],
           "store_options": opts.store_options(), "finished_at": time.time()}
    write_item_record(root, rec)
    return rec


def _summarize(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    counts = {st.OK: 0, st.PARTIAL: 0, st.NO_FACE: 0, st.FAILED: 0}
    for r in results:
        counts[r["status"]] += 1
    frames = sum(r["frames"] for r in results)
    with_face = sum(r["frames_with_face"] for r in results)
    timing = {k: round(sum(r["timing"].get(k, 0.0) for r in results), 3)
              for k in ("decode_s", "detect_s", "landmarks_s", "write_s", "total_s")}
    return {
        "processed": len(results), **counts, "frames": frames, "frames_with_face": with_face,
        "face_frame_share": round(with_face / frames, 4) if frames else 0.0,
        "faces": sum(r["faces"] for r in results), "frames_decoded": sum(r["frames_decoded"] for r in results),
        "wall_s": round(wall, 3), "frames_per_s": round(frames / wall, 2) if wall > 0 else 0.0,
        "timing": timing,
        "failures": {r["key"]: r["outcome"] for r in results if r["status"] == st.FAILED},
    }
