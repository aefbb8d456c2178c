"""Shared pytest fixtures: the shared FF++ sample, the embedded astronaut face, a small prepared store.

``prepared_ffpp`` runs the real ``unmask prepare`` pipeline (real decoding, real dlib detection) on a small
subset of the shared FF++ sample once per session. The result is cached under
``~/.cache/unmask-tests/prepared_ffpp-<hash>`` keyed by a hash of the code that produces it and the options,
so repeated runs are fast; a fresh machine (or changed code) builds it again. ``UNMASK_TEST_CACHE=0``
disables the cache (the store is then built in a session tmp dir).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

# One OpenMP thread for torch in the test process and in every process a test starts (CLI subprocesses, DDP
# ranks, torchrun, loader workers inherit the environment). Set before anything imports torch. The suite runs
# small models on a shared 2-core machine, where a second intra-op thread makes them several times slower
# (measured, Dec 2, load ~6: `unmask demo` as test_demo runs it 58 s with torch's default 2 threads, 26 s
# with 1; see also _train_fixtures.one_torch_thread). What a test asserts does not depend on the thread
# count; set OMP_NUM_THREADS yourself to run the suite with more.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A quick exit after the summary: freeze what is alive once pytest's own end-of-run collection is done.

    Why: after the last test pytest runs a full ``gc.collect()`` in its unraisableexception plugin's
    ``pytest_unconfigure`` (to report ``__del__`` errors), another in that plugin's config cleanup, and the
    interpreter's shutdown runs more. Each one walks every tracked object: ~0.5 million after this suite (the
    code objects, functions and dicts of the ~4300 modules torch, timm, FastAPI etc. import), ~1 s a pass on
    an idle core and far more on a starved one (py-spy, Dec 2: 3.3 s of the 5.8 s exit of a 4-file run in
    ``gc_collect_main`` at shutdown; a minute after a full run on a loaded machine). ``trylast``: this runs after
    pytest's collection and its report of unraisable exceptions, so nothing that collection finds is hidden;
    ``gc.freeze()`` moves the survivors to the permanent generation, which later passes skip. It changes no
    exit status: what is frozen is only not cycle-collected at exit, when the process is ending anyway.
    """
    import gc

    gc.freeze()


REPO = Path(__file__).resolve().parents[1]
FFPP_SAMPLE = (REPO / ".." / "shared" / "data" / "ffpp_sample").resolve()

# The subset prepare_ffpp builds: train + val originals of the sample and their fakes, 4 frames each.
PREPARED_FFPP_OPTS = {"dataset": "ffpp", "compression": "c40", "splits": ["train", "val"], "frames": 4}


@pytest.fixture(scope="session")
def ffpp_root() -> Path:
    """The shared FaceForensics++ c40 sample (../shared/data/ffpp_sample beside the repo)."""
    root = Path(os.environ.get("UNMASK_FFPP_SAMPLE", FFPP_SAMPLE))
    if not (root / "original_sequences").is_dir():
        pytest.skip(f"shared FF++ sample not found at {root} (set UNMASK_FFPP_SAMPLE to its folder)")
    return root


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """scikit-image's public-domain astronaut portrait (512x512 RGB uint8, one frontal face)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def astronaut_face_256(astronaut_rgb) -> tuple[np.ndarray, np.ndarray]:
    """(256x256 RGB crop, its 81 landmarks) of the astronaut's face at a 15% margin, as the pair pipeline sees it."""
    import cv2

    from unmask.data.crops import margin_crop
    from unmask.data.faces import build_face_detector

    f = build_face_detector("dlib_hog").detect(astronaut_rgb)[0]
    mc = margin_crop(astronaut_rgb, f.box, f.landmarks81, 0.15)
    h, w = mc.image.shape[:2]
    img = cv2.resize(mc.image, (256, 256), interpolation=cv2.INTER_LINEAR)
    return img, (mc.landmarks * np.array([256 / w, 256 / h], np.float32)).astype(np.float32)


@pytest.fixture(scope="session")
def astronaut_face_records(astronaut_rgb):
    """(8 FaceRecords of the astronaut's stored crop, a loader returning that crop): a PairDataset's input with
    no store on disk (the records differ only in their keys, so each index draws its own pair)."""
    from unmask.data.crops import storage_crop
    from unmask.data.faces import build_face_detector
    from unmask.data.records import FaceRecord

    f = build_face_detector("dlib_hog").detect(astronaut_rgb)[0]
    sc = storage_crop(astronaut_rgb, f.box, f.landmarks81)
    recs = [FaceRecord(item_key=f"astro{i}", dataset="embedded", video_id="astronaut", label=0, method="real",
                       split="train", frame_index=i, face_index=0, crop_path=f"astro{i}", box=sc.box,
                       landmarks=sc.landmarks, score=1.0, frame_box=f.box, crop_origin=sc.origin) for i in range(8)]
    return recs, (lambda r: sc.image)


def _code_hash(extra: object) -> str:
    """Hash of the source files whose behaviour determines a prepared store (+ options)."""
    h = hashlib.sha256(repr(extra).encode())
    data_dir = REPO / "unmask" / "data"
    files = [data_dir / n for n in ("media.py", "faces.py", "crops.py", "store.py", "prepare.py", "records.py")]
    files += sorted((data_dir / "adapters").glob("*.py"))
    files.append(REPO / "unmask" / "io.py")
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _build_prepared(root: Path, out: Path) -> None:
    from unmask.data.adapters import list_items
    from unmask.data.prepare import PrepareOptions, run_prepare

    opts = PREPARED_FFPP_OPTS
    rows = list_items(opts["dataset"], root, compression=opts["compression"], splits=opts["splits"])
    summary = run_prepare(rows, out, PrepareOptions(frames=opts["frames"], workers=min(2, os.cpu_count() or 1)),
                          progress=False)
    if summary["failed"]:
        raise RuntimeError(f"prepared_ffpp fixture: {summary['failed']} items failed: {summary}")


def _prune(cache: Path, keep: Path, max_age_s: float = 6 * 3600) -> None:
    """Drop cached stores of other code versions not touched for hours (a running session keeps its own)."""
    import time

    for d in cache.glob("prepared_ffpp-*"):
        if d != keep and d.is_dir() and time.time() - d.stat().st_mtime > max_age_s:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def prepared_ffpp(ffpp_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a prepared store: FF++ sample train+val originals and their fakes, c40, 4 frames each."""
    if os.environ.get("UNMASK_TEST_CACHE", "1") == "0":
        out = tmp_path_factory.mktemp("prepared_ffpp")
        _build_prepared(ffpp_root, out)
        return out
    key = _code_hash((PREPARED_FFPP_OPTS, str(ffpp_root)))
    cache = Path(os.environ.get("UNMASK_TEST_CACHE_DIR", Path.home() / ".cache" / "unmask-tests"))
    final = cache / f"prepared_ffpp-{key}"
    if (final / "COMPLETE").is_file():
        os.utime(final)  # recently used: not pruned
        return final
    cache.mkdir(parents=True, exist_ok=True)
    _prune(cache, keep=final)
    building = Path(str(final) + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    _build_prepared(ffpp_root, building)
    (building / "COMPLETE").write_text("ok\n")
    try:
        os.replace(building, final)  # atomic: another session either sees the whole store or none
    except OSError:  # another session finished first
        shutil.rmtree(building, ignore_errors=True)
    return final


# One two-process DDP session shared by the suite's DDP tests (defined once here: a fixture imported into two test
# modules would be two fixtures, and spawn twice).
from _ddp_fixtures import ddp_runs  # noqa: E402,F401

# --- synthetic media ------------------------------------------------------------------------------------


def write_index_video(path: Path, num_frames: int, *, size=(160, 32), fps: int = 25, pts=None, time_base=None,
                      rotation: int = 0, gop: int = 50, options=None) -> Path:
    """A real H.264 video whose frame i shows i in binary (10 blocks of 16 px, white = 1).

    ``decode_index(rgb)`` reads the number back, so a test can check which frame a sampler returned.
    ``pts`` + ``time_base`` give variable frame rate; ``rotation`` sets the display matrix.
    """
    import av

    w, h = size
    out = av.open(str(path), "w", options=options or {})
    s = out.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.options = {"g": str(gop), "bf": "2"}
    if time_base is not None:
        s.time_base = time_base
    if rotation:
        s.set_display_rotation(rotation)
    for i in range(num_frames):
        a = np.zeros((h, w, 3), np.uint8)
        for b in range(10):
            if (i >> b) & 1:
                a[:, b * 16:(b + 1) * 16] = 255
        a[: h // 4, -16:] = (255, 0, 0)  # a red corner (top-right) to check orientation
        frame = av.VideoFrame.from_ndarray(a, format="rgb24")
        if pts is not None:
            frame.pts, frame.time_base = int(pts[i]), time_base
        for p in s.encode(frame):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def write_rgb_video(path: Path, frames, *, fps: int = 25, crf: int = 12) -> Path:
    """A real H.264 video (yuv420p, near-lossless ``crf``) of the given HxWx3 uint8 RGB frames."""
    import av

    frames = list(frames)
    h, w = frames[0].shape[:2]
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=fps)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.options = {"crf": str(crf)}
    for f in frames:
        for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def decode_index(rgb: np.ndarray) -> int:
    """The frame number ``write_index_video`` drew into an upright frame."""
    return sum(1 << b for b in range(10) if rgb[:, b * 16 + 4:(b + 1) * 16 - 4].mean() > 128)


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, astronaut_rgb: np.ndarray) -> dict[str, Path]:
    """Files that must each give a recorded reason (or a clean result), built once per session."""
    import cv2

    d = tmp_path_factory.mktemp("bad_inputs")
    files: dict[str, Path] = {}
    files["zero_byte"] = d / "zero.mp4"
    files["zero_byte"].write_bytes(b"")
    files["text_mp4"] = d / "notes.mp4"
    files["text_mp4"].write_text("this is not a video\n" * 20)
    good = write_index_video(d / "good_faststart.mp4", 120, options={"movflags": "faststart"})
    files["truncated_mp4"] = d / "truncated.mp4"
    files["truncated_mp4"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    moov_end = write_index_video(d / "good_moov_end.mp4", 60)
    files["truncated_no_index"] = d / "truncated_no_index.mp4"
    files["truncated_no_index"].write_bytes(moov_end.read_bytes()[: moov_end.stat().st_size // 2])
    files["unsupported"] = d / "clip.xyz"
    files["unsupported"].write_bytes(b"\x00" * 100)
    noface = np.full((240, 320, 3), 200, np.uint8)
    cv2.rectangle(noface, (50, 50), (200, 180), (30, 90, 160), -1)
    files["no_face"] = d / "no_face.png"
    cv2.imwrite(str(files["no_face"]), noface)
    bgr = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    files["gray"] = d / "gray.png"
    cv2.imwrite(str(files["gray"]), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    files["rgba"] = d / "rgba.png"
    cv2.imwrite(str(files["rgba"]), np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)]))
    files["rgb16"] = d / "rgb16.png"
    cv2.imwrite(str(files["rgb16"]), bgr.astype(np.uint16) * 257)
    files["gray16"] = d / "gray16.png"
    cv2.imwrite(str(files["gray16"]), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    files["webp"] = d / "face.webp"
    cv2.imwrite(str(files["webp"]), bgr, [cv2.IMWRITE_WEBP_QUALITY, 95])
    # A very large photo (12000 x 9000) with the astronaut scaled up 9x inside: decoded reduced, face still found.
    big = np.full((9000, 12000, 3), 120, np.uint8)
    big[2000:2000 + 4608, 3000:3000 + 4608] = cv2.resize(bgr, (4608, 4608), interpolation=cv2.INTER_LINEAR)
    files["huge"] = d / "huge.jpg"
    cv2.imwrite(str(files["huge"]), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    return files
