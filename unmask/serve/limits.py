"""What the server accepts: the file type read from the upload's first bytes, a size limit enforced while the
body streams in, and the upload written to a private temp dir.

Why sniff by hand: the readable types are ``unmask.data.media``'s one list, and the question is only "which of
those does this file claim to be" (the decoder is the real check: a file that sniffs as MP4 but does not
decode gets the same one-line reason as ``detect``). The signatures below are the containers' own (PNG, JPEG,
WebP, BMP, TIFF, ISO-BMFF ``ftyp``, EBML, RIFF AVI, MPEG-PS, MPEG-TS / M2TS sync bytes, FLV, ASF GUID, GIF).
The extension the client sent is never trusted; the saved file gets the extension of what was sniffed, so the
decoder picks by content.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from unmask.errors import UnmaskError

SNIFF_BYTES = 1024  # enough for every signature below (an M2TS needs 3 x 192 + 4 bytes)


class UploadError(UnmaskError):
    """A request the server refuses, with the HTTP status to answer (413, 415, 400, 408)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)


@dataclass(frozen=True)
class Sniffed:
    kind: str  # "image" | "video"
    ext: str  # the extension the saved file gets (one of unmask.data.media.MEDIA_EXTS)
    name: str  # what the content is, in words (for errors and the JSON)


def _ts_sync(head: bytes, offset: int, packet: int) -> bool:
    """MPEG transport stream: a 0x47 sync byte every ``packet`` bytes (3 packets checked)."""
    n = 0
    for i in range(3):
        j = offset + i * packet
        if j >= len(head):
            break
        if head[j] != 0x47:
            return False
        n += 1
    return n >= (3 if len(head) >= offset + 2 * packet + 1 else 1)


def sniff(head: bytes) -> Sniffed | None:
    """The media type of a file from its first bytes (at least ``SNIFF_BYTES`` when the file is that long);
    None when it is none of the types ``unmask`` reads."""
    h = bytes(head[:SNIFF_BYTES])
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", ".png", "PNG image")
    if h.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", ".jpg", "JPEG image")
    if h[:4] == b"RIFF" and h[8:12] == b"WEBP":
        return Sniffed("image", ".webp", "WebP image")
    if h[:4] == b"RIFF" and h[8:12] == b"AVI ":
        return Sniffed("video", ".avi", "AVI video")
    if h[:2] == b"BM" and len(h) >= 26 and h[14:18] in (b"\x0c\x00\x00\x00", b"\x28\x00\x00\x00", b"\x38\x00\x00\x00",
                                                          b"\x40\x00\x00\x00", b"\x6c\x00\x00\x00", b"\x7c\x00\x00\x00"):
        return Sniffed("image", ".bmp", "BMP image")  # "BM" + a known DIB header size: two bytes alone are too weak
    if h[:4] in (b"II*\x00", b"MM\x00*"):
        return Sniffed("image", ".tiff", "TIFF image")
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed("video", ".gif", "GIF animation")
    if h[4:8] == b"ftyp":
        brand = h[8:12]
        if brand == b"qt  ":
            return Sniffed("video", ".mov", "QuickTime video")
        if brand.startswith(b"3g"):
            return Sniffed("video", ".3gp", "3GP video")
        if brand.startswith((b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1")):
            return None  # still-image HEIF/AVIF: an ISO-BMFF file, but not a type unmask reads
        return Sniffed("video", ".mp4", "MP4 video")
    if h[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return Sniffed("video", ".mov", "QuickTime video")  # old QuickTime files start with an atom, no ftyp
    if h.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska or WebM (the DocType says which)
        return Sniffed("video", ".webm", "WebM video") if b"webm" in h[:64] else Sniffed("video", ".mkv", "Matroska video")
    if h.startswith(b"FLV\x01"):
        return Sniffed("video", ".flv", "FLV video")
    if h.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c"):
        return Sniffed("video", ".wmv", "ASF/WMV video")
    if h.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return Sniffed("video", ".mpg", "MPEG video")
    if len(h) >= 189 and _ts_sync(h, 0, 188):
        return Sniffed("video", ".ts", "MPEG transport stream")
    if len(h) >= 197 and _ts_sync(h, 4, 192):
        return Sniffed("video", ".m2ts", "MPEG-2 transport stream (M2TS)")
    return None


def describe_unknown(head: bytes) -> str:
    """A few words on what a refused upload looks like (for the 415 message)."""
    h = bytes(head[:SNIFF_BYTES])
    if not h:
        return "an empty file"
    if h.startswith(b"%PDF"):
        return "a PDF document"
    if h.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    try:
        h.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unrecognised binary data"


def private_dir(path: str | os.PathLike | None, prefix: str) -> tuple[Path, bool]:
    """A directory only this user can enter (mode 0700): ``path`` created/tightened, or a fresh temp dir.
    Returns (dir, whether we created it as a temp dir and so own its removal)."""
    if path is None:
        return Path(tempfile.mkdtemp(prefix=prefix)), True
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        os.chmod(p, 0o700)
    except OSError as exc:
        raise UnmaskError(f"cannot use {p} as a private directory: {exc.strerror or exc}") from None
    return p, False


class UploadSink:
    """One upload being written to a private temp file: counts bytes (over ``max_bytes`` -> 413 at once),
    sniffs the type from the first bytes (not a media type -> 415 at once), and deletes the file on ``close``."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        fd, name = tempfile.mkstemp(dir=folder, prefix="up-", suffix=".part")  # mode 0600
        self.path = Path(name)
        self._f = os.fdopen(fd, "wb")
        self.max_bytes = int(max_bytes)
        self.size = 0
        self._head = bytearray()
        self.sniffed: Sniffed | None = None
        self.field_seen = False

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise UploadError(413, f"upload larger than the limit of {format_bytes(self.max_bytes)}")
        if self.sniffed is None and len(self._head) < SNIFF_BYTES:
            self._head += data[:SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._decide()
        self._f.write(data)

    def _decide(self) -> None:
        self.sniffed = sniff(bytes(self._head))
        if self.sniffed is None:
            raise UploadError(415, f"not an image or video unmask reads (the content is {describe_unknown(bytes(self._head))}, "
                                   "whatever its name says)")

    def finish(self) -> Path:
        """End of the file part: decide the type if the file was short, and rename it to the sniffed extension."""
        self._f.close()
        if self.sniffed is None:
            self._decide()
        final = self.path.with_suffix(self.sniffed.ext)
        os.replace(self.path, final)
        self.path = final
        return final

    def close(self) -> None:
        """Close and delete the file (every path: done, refused, or the client went away)."""
        try:
            self._f.close()
        except Exception:
            pass
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} bytes"


__all__ = ["SNIFF_BYTES", "Sniffed", "UploadError", "UploadSink", "describe_unknown", "format_bytes", "private_dir",
           "sniff"]
