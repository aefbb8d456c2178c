"""Images and video frame sampling on real files (FF++ sample + small videos written with PyAV)."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from conftest import decode_index, write_index_video
from unmask.data.media import (MediaError, VideoSampler, even_indices, frame_to_rgb, is_image, is_video,
                               load_image, read_image, sample_video_frames)


@pytest.mark.parametrize("count,num", [(390, 32), (501, 32), (10, 32), (33, 32), (1000, 8), (2, 1), (7, 7)])
def test_even_indices_are_evenly_spaced(count, num):
    idx = even_indices(count, num)
    assert idx == sorted(set(idx))
    assert len(idx) == min(count, num)
    if num > 1:
        assert idx[0] == 0 and idx[-1] == count - 1
        gaps = np.diff(idx)
        assert gaps.max() - gaps.min() <= 1  # as even as integers allow
    assert all(0 <= i < count for i in idx)


@pytest.mark.parametrize("threads", [0, 1])  # 1: a prepare worker's single-threaded decoder (fast NAL parsing)
def test_sampled_ffpp_frames_are_the_right_frames(ffpp_root, threads):
    """Seek-based sampling returns exactly the frames a full decode has at the evenly spaced indices."""
    path = ffpp_root / "original_sequences" / "youtube" / "c40" / "videos" / "183.mp4"
    sv = sample_video_frames(path, 32, threads=threads)
    with av.open(str(path)) as c:
        every = [frame_to_rgb(f) for f in c.decode(video=0)]
    assert sv.frame_count == len(every)
    assert [i for i, _ in sv.frames] == even_indices(len(every), 32) == sv.targets
    for i, rgb in sv.frames:
        assert rgb.dtype == np.uint8 and rgb.shape == every[i].shape
        assert np.array_equal(rgb, every[i]), f"frame {i} differs"
    assert sv.missing == [] and sv.rotation == 0 and abs(sv.fps - 30) < 1e-6
    assert sv.frames_decoded < sv.frame_count  # non-reference frames between targets were skipped


def _colour_video(path, pix_fmt, colorspace=None, color_range=None, n=4):
    """A short H.264 video of the astronaut (sharp colour edges) in the given pixel format / colour tags."""
    from skimage import data

    img = cv2.resize(data.astronaut(), (320, 182))  # odd chroma height for 4:2:0
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 320, 182, pix_fmt
    if colorspace is not None:
        s.codec_context.colorspace = colorspace
    if color_range is not None:
        s.codec_context.color_range = color_range
    for i in range(n):
        for p in s.encode(av.VideoFrame.from_ndarray(np.roll(img, 5 * i, axis=1), format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


@pytest.mark.parametrize("pix_fmt,colorspace,color_range,tol", [
    ("yuv444p", None, None, 1), ("yuv444p", 1, None, 1),  # BT.601 (untagged) and BT.709, limited range
    ("yuv420p", None, None, 3), ("yuv420p", 1, None, 3), ("yuv422p", None, None, 3),
    ("yuv420p", None, 2, 3), ("yuvj420p", None, None, 3),  # full range, by tag and by pixel format
])
def test_frame_to_rgb_matches_swscale(tmp_path, pix_fmt, colorspace, color_range, tol):
    """The fast YUV -> RGB conversion agrees with FFmpeg's (which rounds 4:2:0 / 4:2:2 more coarsely)."""
    path = _colour_video(tmp_path / "c.mp4", pix_fmt, colorspace, color_range)
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            assert f.format.name.replace("yuvj", "yuv") == pix_fmt.replace("yuvj", "yuv")
            diff = np.abs(frame_to_rgb(f).astype(int) - f.to_ndarray(format="rgb24").astype(int))
            assert diff.max() <= tol and diff.mean() < 1.5, (diff.max(), diff.mean())


def test_frame_to_rgb_falls_back_to_swscale_for_other_colour_matrices(tmp_path):
    path = _colour_video(tmp_path / "bt2020.mp4", "yuv420p", colorspace=9)  # BT.2020: not converted here
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
        assert f.colorspace == 9
        assert np.array_equal(frame_to_rgb(f), f.to_ndarray(format="rgb24"))


def test_frame_to_rgb_on_ffpp_is_within_one_of_swscale(ffpp_root):
    path = ffpp_root / "original_sequences" / "youtube" / "c40" / "videos" / "866.mp4"  # 1920x1080 4:4:4
    with av.open(str(path)) as c:
        f = next(c.decode(video=0))
    diff = np.abs(frame_to_rgb(f).astype(int) - f.to_ndarray(format="rgb24").astype(int))
    assert diff.max() <= 1


def test_video_sampler_streams_the_same_frames(tmp_path):
    """The streaming sampler knows the targets before decoding, yields the frames in order, then the figures."""
    path = write_index_video(tmp_path / "idx.mp4", 120, gop=30)
    ref = sample_video_frames(path, 7)
    sampler = VideoSampler(path, 7)
    assert sampler.info.frame_count == 120 and sampler.info.targets == even_indices(120, 7)
    assert sampler.info.frames_decoded == 0
    got = []
    for i, rgb in sampler:
        assert decode_index(rgb) == i
        got.append(i)
    assert got == [i for i, _ in ref.frames] == ref.targets
    assert sampler.info.frames_decoded == ref.frames_decoded and sampler.info.missing == []
    assert (sampler.info.width, sampler.info.height) == (160, 32)
    with pytest.raises(RuntimeError, match="once"):
        list(sampler)
    with VideoSampler(path, 7) as early:  # stopping early closes the file without error
        assert next(iter(early))[0] == 0


def test_few_frames_decode_far_less_than_the_video(ffpp_root):
    path = ffpp_root / "original_sequences" / "youtube" / "c40" / "videos" / "878.mp4"  # 736 frames, 3 GOPs
    sv = sample_video_frames(path, 3)
    assert [i for i, _ in sv.frames] == even_indices(736, 3) == [0, 368, 735]
    assert sv.frames_decoded < 0.6 * sv.frame_count
    assert sv.seeks >= 2


def test_frame_index_by_content(tmp_path):
    """The frame returned for index i really is frame i (the video shows its frame number)."""
    path = write_index_video(tmp_path / "idx.mp4", 200, gop=30)
    sv = sample_video_frames(path, 9)
    assert sv.frame_count == 200
    assert [decode_index(rgb) for _, rgb in sv.frames] == [i for i, _ in sv.frames] == even_indices(200, 9)


def test_variable_frame_rate(tmp_path):
    """Irregular timestamps: index = position in presentation order, not pts * fps."""
    rng = np.random.default_rng(0)
    pts = np.concatenate([[0], np.cumsum(rng.choice([10, 20, 50], 149))])
    path = write_index_video(tmp_path / "vfr.mkv", 150, pts=pts, time_base=Fraction(1, 1000))
    sv = sample_video_frames(path, 8)
    assert sv.frame_count == 150
    assert [decode_index(rgb) for _, rgb in sv.frames] == even_indices(150, 8)


def test_container_without_frame_count(tmp_path):
    """Matroska stores no frame count (header says 0): the real count comes from the packets."""
    path = write_index_video(tmp_path / "nocount.mkv", 77)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0
    sv = sample_video_frames(path, 5)
    assert sv.frame_count == 77 and sv.container_frame_count == 0
    assert [decode_index(rgb) for _, rgb in sv.frames] == even_indices(77, 5)


def test_truncated_video_header_lies(bad_inputs):
    """A faststart mp4 cut in half: the header still claims 120 frames; sampling uses what is there."""
    sv = sample_video_frames(bad_inputs["truncated_mp4"], 8)
    assert sv.container_frame_count == 120
    assert 0 < sv.frame_count < 120
    assert sv.warning and "truncated" in sv.warning
    assert [decode_index(rgb) for _, rgb in sv.frames] == [i for i, _ in sv.frames]
    assert [i for i, _ in sv.frames] == [t for t in sv.targets if t not in sv.missing]
    assert len(sv.frames) >= 7


@pytest.mark.parametrize("rotation,k", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path, rotation, k):
    path = write_index_video(tmp_path / f"rot{rotation}.mp4", 20, size=(160, 48), rotation=rotation)
    sv = sample_video_frames(path, 2)
    assert sv.rotation == rotation % 360
    _, rgb = sv.frames[-1]
    upright = np.rot90(rgb, -k)  # undo the display rotation: the drawn frame comes back
    assert upright.shape == (48, 160, 3)
    assert decode_index(upright) == 19
    assert upright[:12, -16:, 0].mean() > 200 and upright[:12, -16:, 1].mean() < 60  # red corner top-right


def test_max_side_downscales_kept_frames(ffpp_root):
    path = ffpp_root / "original_sequences" / "youtube" / "c40" / "videos" / "866.mp4"  # 1920x1080
    sv = sample_video_frames(path, 2, max_side=640)
    assert all(max(rgb.shape[:2]) == 640 for _, rgb in sv.frames)


@pytest.mark.parametrize("name,reason", [
    ("zero_byte", "empty file"),
    ("text_mp4", "cannot open video"),
    ("truncated_no_index", "cannot open video"),
])
def test_bad_videos_raise_media_error_with_reason(bad_inputs, name, reason):
    with pytest.raises(MediaError, match=reason):
        sample_video_frames(bad_inputs[name], 4)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        sample_video_frames(tmp_path / "nope.mp4", 4)
    with pytest.raises(MediaError, match="not found"):
        load_image(tmp_path / "nope.png")


def test_extension_predicates():
    assert is_image("a/B.JPG") and is_image("x.webp") and not is_image("x.mp4")
    assert is_video("a/b.MP4") and is_video("c.mkv") and not is_video("d.png")


# --- images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gray", "rgba", "rgb16", "gray16", "webp", "no_face"])
def test_images_become_8bit_rgb(bad_inputs, astronaut_rgb, name):
    rgb = load_image(bad_inputs[name])
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    if name == "no_face":
        return
    assert rgb.shape[:2] == astronaut_rgb.shape[:2]
    ref = astronaut_rgb.astype(np.int16)
    if name in ("gray", "gray16"):
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY).astype(np.int16)
        assert np.abs(rgb[..., 0] - gray).max() <= 1
    elif name == "webp":
        assert np.abs(rgb.astype(np.int16) - ref).mean() < 6  # lossy
    else:  # rgba, rgb16: exact (16-bit values were v * 257 -> v)
        assert np.array_equal(rgb, astronaut_rgb)


def test_jpeg_png_roundtrip_is_rgb_not_bgr(tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = 250  # pure red in RGB
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "red.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    for f in ("red.png", "red.jpg"):
        rgb = load_image(tmp_path / f)
        assert rgb[..., 0].mean() > 230 and rgb[..., 2].mean() < 20


def test_huge_image_is_decoded_reduced(bad_inputs):
    li = read_image(bad_inputs["huge"])
    assert li.original_size == (12000, 9000)
    assert li.scale == 0.5 and li.rgb.shape == (4500, 6000, 3)


@pytest.mark.parametrize("name", ["zero_byte", "text_mp4", "unsupported"])
def test_bad_images_raise_media_error(bad_inputs, name):
    with pytest.raises(MediaError):
        load_image(bad_inputs[name])
