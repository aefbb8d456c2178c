"""Reading images and sampling video frames, as 8-bit RGB.

Images: PNG / JPEG / WebP / BMP / TIFF through OpenCV, converted to HxWx3 uint8 RGB (grayscale expanded,
alpha dropped, 16-bit scaled to 8-bit, EXIF orientation applied). Images over ``max_pixels`` are decoded
at a reduced size (OpenCV's 1/2, 1/4, 1/8 decoders) so a 12000x9000 photo does not take 324 MB per copy.

Videos (PyAV): ``VideoSampler(path, N)`` streams N evenly spaced frames, one at a time, without decoding the
whole video when it can avoid it; ``sample_video_frames(path, N)`` returns them all at once:

1. Demux the stream once (packets only, no decoding: ~2 ms for a 400-frame c40 video) to get every frame's
   timestamp and the keyframes. The real frame count is the number of packets -- container headers can lie
   (missing or wrong ``nb_frames``, truncated files), so ``stream.frames`` is only reported, never trusted.
   Frame index = rank of the frame's timestamp in presentation order, which stays right for variable
   frame rate video (``round(pts * fps)`` does not).
2. Targets = ``round(linspace(0, count - 1, N))`` (unique).
3. For each target, seek to the last keyframe at or before it -- but only when that keyframe lies beyond
   the decoder's current position; otherwise keep decoding forward (a seek would decode the same packets
   again). This decodes the minimum number of packets given the keyframe layout.
4. While decoding towards a target, non-reference frames that are not targets are skipped by the decoder
   (``skip_frame = NONREF``): nothing references them, so the targets decode identically, and H.264 video
   with B-frames (x264's default) decodes ~40% faster. With one decoder thread, H.264 NAL units are parsed
   in place (``_fast_nal_parsing``: same pictures, ~10% less decoding time).
5. Only the kept frames are converted to RGB (``frame_to_rgb``): planar 8-bit YUV (4:2:0 / 4:2:2 / 4:4:4,
   BT.601 or BT.709, limited or full range) by one OpenCV matrix multiply, ~7x cheaper than FFmpeg's
   generic swscale path for the 4:4:4 video FF++ ships; anything else through swscale.
6. Rotation (display-matrix side data) is applied so faces come out upright.

Fallbacks: a stream whose packets carry no timestamps is decoded sequentially (two passes: count, then
keep); a target the seek path fails to produce (broken index) is retried by one sequential pass from the
start, and so is a seek after which not one frame comes out (MPEG-TS). Targets that still cannot be decoded
(truncated file) are reported in ``missing``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from unmask.errors import UnmaskError

# The one list of readable media types: every adapter, `prepare` and `detect` use it (a type is listed only once a
# file of it was encoded and decoded by the functions below: tests/test_media_types.py). .gif is a video (PyAV reads
# animated and still GIFs); MPEG-TS (.ts .mts .m2ts) seeks land nowhere, so those decode in one sequential pass.
# Not listed: .ogv (no Theora encoder here to test it with).
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp",
                        ".asf", ".f4v", ".gif", ".ts", ".mts", ".m2ts"})
MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS
DEFAULT_MAX_PIXELS = 40_000_000  # ~8K; larger images decode at 1/2, 1/4 or 1/8 size


class MediaError(UnmaskError):
    """A file that cannot be read as an image or a video; the message is the one-line reason."""


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def is_media(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTS


# --- listing folders without silent drops ----------------------------------------------------------------


@dataclass(frozen=True)
class SkippedEntry:
    """A folder entry that is not read as an item, and why (every listing reports these instead of hiding them)."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def link_problem(path: Path) -> str | None:
    """Why a symlink cannot be followed (loop, missing target), or None when it can. Valid links are followed."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno == errno.ENOENT:
            return f"broken symlink (target {os.readlink(path)!r} does not exist)"
        return f"unreadable symlink ({exc.strerror or exc})"
    return None


def scan_folder(folder: str | os.PathLike, *, recursive: bool = False, exts: frozenset[str] | tuple[str, ...] = MEDIA_EXTS,
                skipped: list[SkippedEntry] | None = None, dir_reason: str = "directory (not descended into)",
                ) -> list[Path]:
    """The files of ``folder`` (sorted; all levels when ``recursive``) whose type is in ``exts``; every other entry
    is appended to ``skipped`` with its reason: hidden name, unsupported type, symlink loop, broken symlink, a
    directory when not recursive, not a regular file, a folder that cannot be listed.

    Valid symlinks are followed (to files and, when recursive, to folders); a link to a folder being walked or to
    one above it is a loop and is skipped, so the walk always ends. Zero-byte and corrupt files *are* returned: reading them gives
    the item its own reason.
    """
    sink: list[SkippedEntry] = skipped if skipped is not None else []
    out: list[Path] = []
    wanted = {e.lower() for e in exts}

    def walk(d: Path, ancestors: frozenset[str]) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            sink.append(SkippedEntry(str(d), f"cannot list folder ({exc.strerror or exc})"))
            return
        for e in entries:
            p = Path(e.path)
            if e.name.startswith("."):
                sink.append(SkippedEntry(str(p), "hidden entry"))
                continue
            if e.is_symlink():
                problem = link_problem(p)
                if problem:
                    sink.append(SkippedEntry(str(p), problem))
                    continue
            try:
                is_dir = e.is_dir()  # follows a valid link
                is_file = e.is_file()
            except OSError as exc:
                sink.append(SkippedEntry(str(p), f"unreadable entry ({exc.strerror or exc})"))
                continue
            if is_dir:
                real = os.path.realpath(p)
                if not recursive:
                    sink.append(SkippedEntry(str(p), dir_reason))
                elif real in ancestors or any(a.startswith(real.rstrip(os.sep) + os.sep) for a in ancestors):
                    sink.append(SkippedEntry(str(p), f"symlink loop (leads back to {real})"))
                else:
                    walk(p, ancestors | {real})
            elif not is_file:
                sink.append(SkippedEntry(str(p), "not a regular file"))
            elif p.suffix.lower() not in wanted and p.suffix.lower() in MEDIA_EXTS:
                sink.append(SkippedEntry(str(p), f"{p.suffix.lower()!r} files are not items of this layout"))
            elif p.suffix.lower() not in wanted:
                sink.append(SkippedEntry(str(p), f"unsupported file type {p.suffix.lower() or '(no extension)'!r}"))
            else:
                out.append(p)

    top = Path(folder)
    walk(top, frozenset({os.path.realpath(top)}))
    return sorted(out)


def _check_file(path: Path) -> None:
    if path.is_symlink() and (problem := link_problem(path)):
        raise MediaError(problem)
    if not path.exists():
        raise MediaError(f"file not found: {path}")
    if not path.is_file():
        raise MediaError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise MediaError("empty file (0 bytes)")


# --- images --------------------------------------------------------------------------------------------


@dataclass
class LoadedImage:
    rgb: np.ndarray
    original_size: tuple[int, int]  # (width, height) of the file
    scale: float  # rgb pixels per file pixel (< 1 when a huge image was decoded reduced)


def _to_rgb8(arr: np.ndarray) -> np.ndarray:
    """Any OpenCV decode result (gray / BGR / BGRA, 8/16-bit, float) -> HxWx3 uint8 RGB."""
    import cv2

    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)  # full 16-bit range -> 8-bit (0..65535 -> 0..255)
    elif arr.dtype in (np.float32, np.float64):
        hi = float(np.nanmax(arr)) if arr.size else 1.0
        arr = np.clip(np.nan_to_num(arr) * (255.0 if hi <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise MediaError(f"unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    if arr.shape[2] == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding pixels (None when PIL cannot tell)."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we handle huge images ourselves
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode an image file to RGB uint8, reducing huge ones; see the module docstring."""
    import cv2

    path = Path(path)
    _check_file(path)
    size = _image_size(path)
    reduce = 1
    if size is not None and max_pixels and size[0] * size[1] > max_pixels:
        for r in (2, 4, 8):
            reduce = r
            if size[0] * size[1] / (r * r) <= max_pixels:
                break
        else:
            raise MediaError(f"image too large: {size[0]}x{size[1]} pixels")
    data = np.fromfile(str(path), dtype=np.uint8)
    if reduce == 1:
        arr = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_UNCHANGED)
        if arr is not None and arr.ndim == 3 and arr.shape[2] in (3, 4):
            # IMREAD_UNCHANGED ignores EXIF orientation; re-decode oriented when the file has one.
            oriented = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
            if oriented is not None and oriented.shape[:2] != arr.shape[:2]:
                arr = oriented
    else:
        flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
        arr = cv2.imdecode(data, flag)
    if arr is None:
        kind = path.suffix.lower() or "no extension"
        raise MediaError(f"cannot decode image ({kind}, {path.stat().st_size} bytes): corrupt or unsupported format")
    rgb = np.ascontiguousarray(_to_rgb8(arr))
    if size is None:
        size = (rgb.shape[1] * reduce, rgb.shape[0] * reduce)
    return LoadedImage(rgb=rgb, original_size=(int(size[0]), int(size[1])), scale=rgb.shape[1] / float(size[0]))


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (see ``read_image`` for the size/scale it was decoded at)."""
    return read_image(path, max_pixels=max_pixels).rgb


# --- videos --------------------------------------------------------------------------------------------


@dataclass
class SampledVideo:
    """Frames kept from a video plus what it cost: ``frames_decoded`` counts every frame the decoder produced."""

    frames: list[tuple[int, np.ndarray]]  # (frame index in presentation order, RGB uint8), sorted by index
    frames_decoded: int
    frame_count: int  # real number of frames (from the demuxed packets)
    fps: float
    rotation: int  # degrees counter-clockwise applied to every frame (0, 90, 180, 270)
    targets: list[int] = field(default_factory=list)  # the indices asked for
    missing: list[int] = field(default_factory=list)  # targets that could not be decoded
    container_frame_count: int = 0  # what the container header claimed (0 = nothing)
    seeks: int = 0
    warning: str | None = None  # e.g. "truncated file (last packet incomplete)"
    width: int = 0
    height: int = 0

    def decode_warning(self) -> str | None:
        """One line for reports when the file was only partly readable (truncated, frames lost), else None."""
        return decode_warning(self.warning, self.frame_count, self.container_frame_count, self.missing, self.targets)


def decode_warning(warning: str | None, frame_count: int, container_frame_count: int, missing, targets) -> str | None:
    """What a partly decodable video lost, in one line (``SampledVideo`` fields, or a prepared item's record).

    Reported by ``detect``, ``evaluate`` and ``prepare`` so a truncated file never passes as a whole one.
    """
    parts = [warning] if warning else []
    if container_frame_count and frame_count and container_frame_count > frame_count:
        parts.append(f"{frame_count} of the {container_frame_count} frames its header claims are readable")
    if missing:
        parts.append(f"{len(missing)} of {len(targets or missing)} sampled frames undecodable")
    return "; ".join(parts) or None


def even_indices(count: int, num: int) -> list[int]:
    """``num`` evenly spaced frame indices over ``0..count-1`` (first and last included), unique."""
    if count <= 0 or num <= 0:
        return []
    if num == 1:
        return [(count - 1) // 2]
    return sorted(set(int(i) for i in np.round(np.linspace(0, count - 1, num)).astype(int)))


# YUV -> RGB for decoded frames. (Kr, Kb) luma weights by the frame's AVColorSpace code; "unspecified" (2) is
# BT.601, as swscale assumes. Other matrices (FCC, SMPTE 240M, BT.2020, ...) go through swscale.
_KR_KB = {1: (0.2126, 0.0722), 2: (0.299, 0.114), 5: (0.299, 0.114), 6: (0.299, 0.114)}
# Planar 8-bit YUV formats converted here: name -> (chroma x subsampling, chroma y subsampling).
_PLANAR_YUV = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv422p": (2, 1), "yuvj422p": (2, 1),
               "yuv444p": (1, 1), "yuvj444p": (1, 1)}
_YUV_MATRICES: dict[tuple[float, float, bool], np.ndarray] = {}


def yuv_to_rgb_matrix(kr: float, kb: float, full_range: bool) -> np.ndarray:
    """3x4 float32 matrix M with ``rgb = M @ (y, u, v, 1)`` (ITU-R BT.601/BT.709 form, any (Kr, Kb)).

    Limited range: Y in 16..235 and Cb/Cr in 16..240 are stretched to 0..255; full range: only Cb/Cr are
    centred on 128.
    """
    key = (kr, kb, bool(full_range))
    if key not in _YUV_MATRICES:
        kg = 1.0 - kr - kb
        ys, cs, y0 = (1.0, 1.0, 0.0) if full_range else (255.0 / 219.0, 255.0 / 224.0, 16.0)
        m = np.array([[ys, 0.0, 2 * (1 - kr) * cs],
                      [ys, -2 * (1 - kb) * kb / kg * cs, -2 * (1 - kr) * kr / kg * cs],
                      [ys, 2 * (1 - kb) * cs, 0.0]])
        offset = -m[:, 0] * y0 - (m[:, 1] + m[:, 2]) * 128.0
        _YUV_MATRICES[key] = np.hstack([m, offset[:, None]]).astype(np.float32)
    return _YUV_MATRICES[key]


def _plane(p) -> np.ndarray:
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]


def frame_to_rgb(frame) -> np.ndarray:
    """A decoded PyAV video frame as HxWx3 uint8 RGB.

    Planar 8-bit YUV (the formats in ``_PLANAR_YUV``, BT.601/BT.709, limited or full range) is converted by one
    ``cv2.transform`` with the standard matrix, chroma upsampled by pixel replication as swscale does: 0.5 ms
    for a 720p 4:4:4 frame where swscale takes ~3.5 ms, within 1 of swscale's value for 4:4:4 (its 4:2:0 path
    rounds more coarsely: within 3). Other pixel formats and colour matrices go through swscale.
    """
    import cv2

    sub = _PLANAR_YUV.get(frame.format.name)
    krkb = _KR_KB.get(int(frame.colorspace))
    if sub is None or krkb is None:
        return frame.reformat(format="rgb24", threads=1).to_ndarray()
    full = frame.format.name.startswith("yuvj") or int(frame.color_range) == 2  # AVCOL_RANGE_JPEG
    y, u, v = (_plane(p) for p in frame.planes[:3])
    h, w = y.shape
    if sub != (1, 1):
        size = (u.shape[1] * sub[0], u.shape[0] * sub[1])
        u = cv2.resize(u, size, interpolation=cv2.INTER_NEAREST)[:h, :w]
        v = cv2.resize(v, size, interpolation=cv2.INTER_NEAREST)[:h, :w]
    return cv2.transform(cv2.merge([y, u, v]), yuv_to_rgb_matrix(*krkb, full))


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _frame_rotation(frame) -> int:
    try:
        return int(round(float(frame.rotation or 0)))
    except Exception:
        return 0


def _open(path: Path):
    import av

    _check_file(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as exc:  # av.error.* (InvalidDataError, ...)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MediaError(f"cannot open video: {msg}") from None
    if not container.streams.video:
        container.close()
        raise MediaError("no video stream")
    return container


def _index_packets(container, stream) -> tuple[list[int | None], list[bool], list[int], str | None]:
    """(pts per packet in decode order, is-keyframe per packet, byte positions, error) without decoding."""
    pts, key, pos, corrupt = [], [], [], []
    error = None
    try:
        for p in container.demux(stream):
            if p.size == 0 and p.pts is None:
                continue  # the flush packet at the end
            pts.append(p.pts)
            key.append(bool(p.is_keyframe))
            pos.append(p.pos if p.pos is not None else -1)
            corrupt.append(bool(p.is_corrupt))
    except Exception as exc:  # a truncated or corrupt file: keep the packets read so far
        error = f"demux stopped: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    while corrupt and corrupt[-1]:  # a truncated file ends in a partial packet: not a frame
        for lst in (pts, key, pos, corrupt):
            lst.pop()
        error = error or "truncated file (last packet incomplete)"
    return pts, key, pos, error


class _Decoder:
    """Decodes packets of one stream, counting frames, skipping non-reference frames that are not wanted."""

    def __init__(self, container, stream, skip_nonref: bool) -> None:
        self.container = container
        self.stream = stream
        self.cc = stream.codec_context
        self.skip_nonref = skip_nonref
        self.decoded = 0
        self.errors = 0
        self._skip: str | None = None

    def decode(self, packet, wanted: bool):
        if self.skip_nonref:
            skip = "DEFAULT" if wanted else "NONREF"
            if skip != self._skip:  # setting it costs an enum lookup: only on a change
                self.cc.skip_frame = self._skip = skip
        try:
            frames = self.cc.decode(packet)
        except Exception:  # a corrupt packet: keep going, the target may still decode
            self.errors += 1
            return []
        self.decoded += len(frames)
        return frames


def _fast_nal_parsing(cc) -> None:
    """FFmpeg's FLAG2_FAST, single-threaded decoding only. In the H.264 decoder it then (a) parses NAL units in
    place instead of copying each into a padded buffer (~10% of decoding time on FF++ c40) and (b) skips
    deblocking across slice boundaries -- but only with several slice threads, hence never with one. Checked
    bit-identical on all 23,330 frames (every plane) of the FF++ sample; the tests compare against a plain decode.
    """
    try:
        import av

        if cc.name == "h264":
            cc.flags2 |= av.codec.context.Flags2.fast
    except Exception:  # an older PyAV without the flag: decode normally
        pass


class VideoSampler:
    """Streams the sampled frames of a video: ``(index, rgb)`` pairs in increasing index order (see the module
    docstring for how they are found), one at a time.

    Opening indexes the packets, so ``info`` (a ``SampledVideo`` with ``frames`` left empty) has the frame count,
    fps and ``targets`` before anything is decoded; ``frames_decoded``, ``seeks``, ``missing``, ``rotation`` and
    the size are final once the iteration ends. A consumer that handles each frame before asking for the next
    holds one RGB frame at a time instead of N: a prepare worker's memory stays flat, and the allocator reuses
    the same pages instead of faulting in fresh ones (~2 ms of kernel time per kept 720p frame otherwise).
    Iterating raises ``MediaError`` at the end when no frame could be decoded. Iterate once; the file is closed
    when the iteration ends (or by ``close()`` / ``with``).
    """

    def __init__(self, path: str | os.PathLike, num_frames: int, *, indices: list[int] | None = None,
                 skip_nonref: bool = True, threads: int = 0) -> None:
        self.path = Path(path)
        self._container = _open(self.path)
        self._indices = indices
        self._skip_nonref = skip_nonref
        self._started = False
        try:
            self._setup(num_frames, threads)
        except BaseException:
            self._container.close()
            raise

    def _setup(self, num_frames: int, threads: int) -> None:
        container = self._container
        stream = container.streams.video[0]
        cc = stream.codec_context
        if threads:
            cc.thread_count = int(threads)
        if threads != 1:
            cc.thread_type = "SLICE"  # frame threading would delay the per-packet skip_frame switch
        else:
            _fast_nal_parsing(cc)
        claimed = int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        pts_list, key_list, _, demux_error = _index_packets(container, stream)
        if not pts_list:
            raise MediaError(demux_error or "video has no frames")
        self.info = SampledVideo(frames=[], frames_decoded=0, frame_count=len(pts_list),
                                 fps=float(rate) if rate else 0.0, rotation=0, container_frame_count=claimed,
                                 warning=demux_error)
        self._stream = stream
        self._pts, self._keys = pts_list, key_list
        self._have_pts = len(set(p for p in pts_list if p is not None)) == len(pts_list)
        self._num_frames = num_frames
        if self._have_pts:
            self.info.targets = _targets(len(pts_list), num_frames, self._indices)
        # (without timestamps the targets are only known after a counting pass)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._started:
            raise RuntimeError("a VideoSampler can be iterated only once")
        self._started = True
        info = self.info
        kept: set[int] = set()
        try:
            if self._have_pts:
                frames = _sample_by_seeking(self._container, self._stream, self._pts, self._keys, self._num_frames,
                                            self._indices, self._skip_nonref, info)
            else:
                frames = _sample_sequential(self._container, self._stream, len(self._pts), self._num_frames,
                                            self._indices, info)
            for index, frame in frames:
                rot = _frame_rotation(frame)
                info.rotation = int(round(rot / 90.0)) % 4 * 90
                rgb = _rotate(frame_to_rgb(frame), rot)
                del frame
                if not kept:
                    info.height, info.width = rgb.shape[:2]
                kept.add(index)
                yield index, rgb
            if self._indices is not None:
                info.targets = sorted({int(i) for i in self._indices})
            info.missing = [i for i in info.targets if i not in kept]
            if not kept:
                raise MediaError(f"cannot decode video: {info.warning or 'no frame could be decoded'}")
        finally:
            self.close()

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sample_video_frames(path: str | os.PathLike, num_frames: int, *, indices: list[int] | None = None,
                        skip_nonref: bool = True, threads: int = 0, max_side: int = 0) -> SampledVideo:
    """``num_frames`` evenly spaced frames of a video as RGB uint8, all in memory (see the module docstring;
    ``VideoSampler`` streams them one at a time).

    ``indices``: explicit frame indices instead (e.g. the frames kept from the video a mask video belongs
    to); indices past the real end are reported in ``missing``.
    ``threads``: decoder threads (0 = FFmpeg's choice; 1 when several worker processes share the cores).
    ``max_side``: if > 0, kept frames are downscaled so their longest side is at most this (after rotation).
    """
    import cv2

    with VideoSampler(path, num_frames, indices=indices, skip_nonref=skip_nonref, threads=threads) as sampler:
        frames = []
        for idx, rgb in sampler:
            h, w = rgb.shape[:2]
            s = max_side / float(max(h, w)) if max_side else 1.0
            if s < 1:
                rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            frames.append((idx, rgb))
    result = sampler.info
    result.frames = sorted(frames, key=lambda t: t[0])
    result.height, result.width = result.frames[0][1].shape[:2]
    return result


def _targets(count: int, num_frames: int, indices: list[int] | None) -> list[int]:
    if indices is None:
        return even_indices(count, num_frames)
    return sorted({int(i) for i in indices if 0 <= int(i) < count})


def _sample_by_seeking(container, stream, pts_list, key_list, num_frames, indices, skip_nonref,
                       result: SampledVideo) -> Iterator[tuple[int, Any]]:
    """Yields (index, decoded frame) for the targets, in increasing order (then any a bad seek lost)."""
    order = sorted(pts_list)  # presentation order
    targets = _targets(len(order), num_frames, indices)
    decode_pos = {p: i for i, p in enumerate(pts_list)}  # packet pts -> position in decode order
    key_pos = [i for i, k in enumerate(key_list) if k] or [0]
    key_pts_sorted = sorted((pts_list[i], i) for i in key_pos)

    def seek_key(target_pts: int) -> int:
        """Decode position of the last keyframe whose pts <= target (the first keyframe if none)."""
        best = key_pts_sorted[0][1]
        for kp, pos in key_pts_sorted:
            if kp <= target_pts:
                best = pos
            else:
                break
        return best

    wanted = {order[t]: t for t in targets}
    remaining = sorted(wanted)  # target pts in presentation order
    dec = _Decoder(container, stream, skip_nonref)
    cur = None  # decode position of the last packet fed
    it = None
    got: set[int] = set()
    eof_missed: set[int] = set()
    try:
        while remaining:
            target = remaining[0]
            kpos = seek_key(target)
            if cur is None or kpos > cur:
                container.seek(int(pts_list[kpos]), stream=stream, backward=True, any_frame=False)
                result.seeks += 1
                it = container.demux(stream)
                cur = kpos - 1
            passed = False
            out = []
            decoded_before = dec.decoded
            try:
                for packet in it:
                    if packet.pts is not None and packet.pts in decode_pos:
                        cur = decode_pos[packet.pts]
                    for frame in dec.decode(packet, wanted=packet.pts in wanted or packet.pts is None):
                        if frame.pts in wanted and frame.pts not in got:
                            got.add(frame.pts)
                            out.append(frame)
                        if frame.pts is not None and frame.pts >= target:
                            passed = True
                    if passed:
                        break
            except Exception:  # read error mid-file (truncated): stop this pass
                pass
            for frame in sorted(out, key=lambda f: f.pts):
                yield wanted[frame.pts], frame
            del out
            if not passed:  # end of stream (or a read error) before the target: the rest cannot decode ...
                if dec.decoded == decoded_before:
                    break  # ... unless not one frame came out: the seek landed nowhere (MPEG-TS): a sequential pass
                eof_missed.update(p for p in remaining if p not in got)
                break
            remaining = [p for p in remaining if p not in got and p > target]
            # Targets at or before `target` that did not come out were lost to a bad seek: retried below.
    finally:
        result.frames_decoded += dec.decoded
    missed = [p for p in wanted if p not in got and p not in eof_missed]
    if missed:  # lost to a seek that landed elsewhere (broken index): one sequential pass
        yield from _sequential_pass(container, stream, set(missed), wanted, got, result)


def _sequential_pass(container, stream, missed: set[int], wanted, got, result) -> Iterator[tuple[int, Any]]:
    """One pass from the start for targets the seek path did not produce."""
    try:
        container.seek(0, stream=stream, backward=True, any_frame=False)
    except Exception:
        return
    result.seeks += 1
    dec = _Decoder(container, stream, skip_nonref=False)
    out = []
    try:
        for packet in container.demux(stream):
            for frame in dec.decode(packet, wanted=True):
                if frame.pts in missed and frame.pts not in got:
                    got.add(frame.pts)
                    out.append(frame)
            if all(p in got for p in missed):
                break
    except Exception:
        pass
    result.frames_decoded += dec.decoded
    for frame in sorted(out, key=lambda f: f.pts):
        yield wanted[frame.pts], frame


def _sample_sequential(container, stream, packet_count: int, num_frames: int, indices,
                       result: SampledVideo) -> Iterator[tuple[int, Any]]:
    """No usable timestamps: decode in order, frame index = output order. Re-targets if fewer frames decode
    (so the frames are yielded only after the pass that counted them)."""
    targets = _targets(packet_count, num_frames, indices)
    for attempt in range(2):
        container.seek(0, stream=stream, backward=True, any_frame=False)  # the index pass read to the end
        result.seeks += 1
        want = set(targets)
        kept: list[tuple[int, Any]] = []
        n = 0
        try:
            for frame in container.decode(stream):
                if n in want:
                    kept.append((n, frame))
                n += 1
        except Exception:
            pass
        result.frames_decoded += n
        if n >= packet_count or attempt == 1 or n == 0:
            result.targets, result.frame_count = targets, max(n, 1)
            yield from kept
            return
        targets = _targets(n, num_frames, indices)  # the packets over-counted: sample what really decodes


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in natural order (``2.png`` before ``10.png``)."""
    import re

    def natural(p: Path):
        return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]

    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"not a folder: {folder}")
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image(p) and not p.name.startswith(".")),
                  key=natural)


def sample_frame_folder(folder: str | os.PathLike, num_frames: int, *, indices: list[int] | None = None,
                        max_pixels: int = DEFAULT_MAX_PIXELS) -> SampledVideo:
    """A folder of frame images treated as a video: N evenly spaced files (natural order) as RGB.

    Unreadable files are reported in ``missing``; only the kept files are decoded.
    """
    files = list_frame_files(folder)
    if not files:
        raise MediaError("frame folder has no images")
    targets = _targets(len(files), num_frames, indices)
    result = SampledVideo(frames=[], frames_decoded=0, frame_count=len(files), fps=0.0, rotation=0,
                          targets=targets, container_frame_count=len(files))
    for i in targets:
        try:
            result.frames.append((i, load_image(files[i], max_pixels=max_pixels)))
            result.frames_decoded += 1
        except MediaError:
            result.missing.append(i)
    if not result.frames:
        raise MediaError("no frame of the folder could be decoded")
    result.height, result.width = result.frames[0][1].shape[:2]
    return result
