"""``unmask serve``'s content sniffing on real files of every readable type, and its upload sink's limits."""

from __future__ import annotations

import os

import numpy as np
import pytest

from unmask.data import media
from unmask.serve.limits import SNIFF_BYTES, UploadError, UploadSink, private_dir, sniff

from test_media_types import ENCODERS  # noqa: E402  (the container + encoder of every listed video type)


def _write_video(path, fmt, codec, n=6):
    import av

    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 176, 144, "yuv420p"
        for i in range(n):
            a = np.full((144, 176, 3), 20 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.mark.parametrize("ext", sorted(ENCODERS) + [".gif"])
def test_every_readable_video_type_sniffs_as_a_video_that_decodes(ext, tmp_path):
    path = tmp_path / f"clip{ext}"
    if ext == ".gif":
        from PIL import Image

        frames = [Image.fromarray(np.full((32, 32, 3), 30 * i, np.uint8)) for i in range(4)]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)
    else:
        _write_video(path, *ENCODERS[ext])
    s = sniff(path.read_bytes()[:SNIFF_BYTES])
    assert s is not None and s.kind == "video" and s.ext in media.VIDEO_EXTS
    renamed = tmp_path / f"upload{s.ext}"  # what the server does: the sniffed extension, never the client's
    os.replace(path, renamed)
    assert len(media.sample_video_frames(renamed, 2).frames) == 2


@pytest.mark.parametrize("ext", sorted(media.IMAGE_EXTS))
def test_every_readable_image_type_sniffs_as_an_image_that_decodes(ext, tmp_path, astronaut_rgb):
    import cv2

    path = tmp_path / f"face{ext}"
    assert cv2.imwrite(str(path), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    s = sniff(path.read_bytes()[:SNIFF_BYTES])
    assert s is not None and s.kind == "image" and s.ext in media.IMAGE_EXTS
    renamed = tmp_path / f"upload{s.ext}"
    os.replace(path, renamed)
    assert media.load_image(renamed).shape == astronaut_rgb.shape


@pytest.mark.parametrize("data", [b"", b"hello, this is text\n" * 60, b"%PDF-1.7\n" + bytes(2000),
                                  b"PK\x03\x04" + bytes(2000), b"BM" + bytes(40), b"\x00\x00\x00\x18ftypavif" + bytes(100),
                                  np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()],
                         ids=["empty", "text", "pdf", "zip", "bm-alone", "avif", "random"])
def test_other_content_is_refused(data):
    assert sniff(data) is None


def test_upload_sink_refuses_past_the_limit_and_wrong_types_early_and_cleans_up(tmp_path, astronaut_rgb):
    import cv2

    folder, owned = private_dir(tmp_path / "up", "x-")
    assert not owned and (folder.stat().st_mode & 0o777) == 0o700
    sink = UploadSink(folder, max_bytes=5000)
    assert (sink.path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(UploadError) as e:
        sink.write(b"plain text " * 200)  # over 1 KB of text: refused on the first write, before the limit
    assert e.value.status == 415
    sink.close()
    ok, png = cv2.imencode(".png", astronaut_rgb)
    sink = UploadSink(folder, max_bytes=5000)
    sink.write(png.tobytes()[:4000])
    with pytest.raises(UploadError) as e:
        sink.write(png.tobytes()[4000:8000])
    assert e.value.status == 413 and "5000 bytes" not in str(e.value) and "4.9 KB" in str(e.value)
    sink.close()
    sink = UploadSink(folder, max_bytes=len(png) + 1)
    sink.write(png.tobytes())
    final = sink.finish()
    assert final.suffix == ".png" and final.read_bytes() == png.tobytes()
    sink.close()
    assert os.listdir(folder) == []
