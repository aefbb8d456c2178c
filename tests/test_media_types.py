"""The one list of readable media types (``unmask.data.media``): every listed type really decodes, and folder
scans account for every entry (valid symlinks followed; loops, broken links, unsupported types reported)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from unmask.data import media
from unmask.data.adapters import _common

# container format and encoder PyAV writes each listed video type with (.gif: written by PIL below)
ENCODERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".f4v": ("mp4", "libx264"),
            ".mov": ("mov", "libx264"), ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx"),
            ".avi": ("avi", "mpeg4"), ".mpg": ("mpeg", "mpeg1video"), ".mpeg": ("mpeg", "mpeg2video"),
            ".flv": ("flv", "flv"), ".wmv": ("asf", "wmv2"), ".asf": ("asf", "wmv2"), ".3gp": ("3gp", "h263"),
            ".ts": ("mpegts", "libx264"), ".mts": ("mpegts", "libx264"), ".m2ts": ("mpegts", "libx264")}


def _frames(n=30, size=(176, 144)):
    return [np.full((size[1], size[0], 3), 8 * i, np.uint8) for i in range(n)]


def test_every_listed_video_type_has_an_encoder_here():
    assert set(ENCODERS) | {".gif"} == set(media.VIDEO_EXTS)
    assert media.MEDIA_EXTS == media.IMAGE_EXTS | media.VIDEO_EXTS
    assert set(_common.MEDIA_EXTS) == set(media.MEDIA_EXTS)  # the adapters use the same list


@pytest.mark.parametrize("ext", sorted(ENCODERS))
def test_every_listed_video_type_decodes(ext, tmp_path):
    import av

    fmt, codec = ENCODERS[ext]
    path = tmp_path / f"clip{ext}"
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 176, 144, "yuv420p"
        for a in _frames():
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    sv = media.sample_video_frames(path, 5)
    assert media.is_video(path) and sv.frame_count == 30 and len(sv.frames) == 5 and not sv.missing
    assert [i for i, _ in sv.frames] == media.even_indices(30, 5)
    last = sv.frames[-1][1]
    assert last.shape == (144, 176, 3) and abs(float(last.mean()) - 8 * 29) < 12  # the last frame, not the first
    assert sv.decode_warning() is None


def test_gif_decodes_as_a_video(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(a) for a in _frames(20)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    sv = media.sample_video_frames(tmp_path / "a.gif", 4)
    assert sv.frame_count == 20 and [i for i, _ in sv.frames] == [0, 6, 13, 19]
    assert abs(float(sv.frames[-1][1].mean()) - 8 * 19) < 6


@pytest.mark.parametrize("ext", sorted(media.IMAGE_EXTS))
def test_every_listed_image_type_decodes(ext, tmp_path, astronaut_rgb):
    import cv2

    path = tmp_path / f"face{ext}"
    assert cv2.imwrite(str(path), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    rgb = media.load_image(path)
    assert media.is_image(path) and rgb.shape == astronaut_rgb.shape
    assert np.abs(rgb.astype(int) - astronaut_rgb).mean() < 8  # lossy formats are close, lossless exact


def test_scan_folder_accounts_for_every_entry(tmp_path):
    d = tmp_path / "d"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "a.mp4").write_bytes(b"x")
    (d / "zero.png").write_bytes(b"")  # kept: reading it gives the item its own reason
    (d / "notes.txt").write_text("x")
    (d / ".hidden.mp4").write_bytes(b"x")
    (d / "sub" / "b.MOV").write_bytes(b"x")
    (d / "sub" / "deeper" / "c.gif").write_bytes(b"x")
    os.symlink(d / "a.mp4", d / "link.mp4")  # valid: followed
    os.symlink(d / "missing.mp4", d / "broken.mp4")
    os.symlink("loop2.mp4", d / "loop1.mp4")
    os.symlink("loop1.mp4", d / "loop2.mp4")
    os.symlink(d, d / "sub" / "up")  # a folder link back up: a loop when walking
    os.symlink(d / "sub" / "deeper", d / "side")  # a valid folder link: walked
    skipped: list[media.SkippedEntry] = []
    flat = media.scan_folder(d, skipped=skipped)
    assert [p.name for p in flat] == ["a.mp4", "link.mp4", "zero.png"]
    why = {os.path.basename(e.path): e.reason for e in skipped}
    assert why == {".hidden.mp4": "hidden entry", "broken.mp4": why["broken.mp4"], "loop1.mp4": "symlink loop",
                   "loop2.mp4": "symlink loop", "notes.txt": "unsupported file type '.txt'",
                   "sub": "directory (not descended into)", "side": "directory (not descended into)"}
    assert why["broken.mp4"].startswith("broken symlink (target ")
    skipped = []
    deep = media.scan_folder(d, recursive=True, skipped=skipped)
    assert sorted(str(p.relative_to(d)) for p in deep) == ["a.mp4", "link.mp4", "side/c.gif", "sub/b.MOV",
                                                           "sub/deeper/c.gif", "zero.png"]
    why = {str(os.path.relpath(e.path, d)): e.reason for e in skipped}
    assert why["sub/up"].startswith("symlink loop (leads back to ")
    assert set(why) == {".hidden.mp4", "broken.mp4", "loop1.mp4", "loop2.mp4", "notes.txt", "sub/up"}


def test_decode_warning_of_a_truncated_video(bad_inputs):
    sv = media.sample_video_frames(bad_inputs["truncated_mp4"], 8)
    w = sv.decode_warning()
    assert w and w.startswith("truncated file") and f"of the {sv.container_frame_count} frames" in w


@pytest.mark.parametrize("ext", [".ts", ".m2ts"])
def test_mpeg_ts_gives_the_right_frames(ext, tmp_path):
    """MPEG-TS seeks land nowhere: the sampler falls back to one sequential pass, still the exact targets."""
    from conftest import decode_index, write_index_video

    sv = media.sample_video_frames(write_index_video(tmp_path / f"idx{ext}", 200, gop=25), 9)
    assert [decode_index(f) for _, f in sv.frames] == [i for i, _ in sv.frames] == media.even_indices(200, 9)
    assert not sv.missing
