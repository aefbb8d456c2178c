"""`unmask detect` end to end: real videos, images, a corrupt file and a file with no face in one folder."""

import csv
import io
import json
import os

import numpy as np
import pytest

from unmask.cli import main

MODEL = ["--untrained", "--backbone", "resnet18", "--pretrained", "none", "--quiet"]


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, ffpp_root, astronaut_rgb):
    from unmask.io import atomic_save_png

    d = tmp_path_factory.mktemp("mixed")
    os.symlink(ffpp_root / "original_sequences/youtube/c40/videos/183.mp4", d / "183.mp4")
    os.symlink(ffpp_root / "manipulated_sequences/Deepfakes/c40/videos/183_253.mp4", d / "183_253.mp4")
    atomic_save_png(d / "astronaut.png", astronaut_rgb)
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    atomic_save_png(d / "no_face.png", ramp)
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return d


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_mixed_folder_scores_what_it_can(mixed_folder, tmp_path, capsys):
    heat = tmp_path / "heat"
    rc = main(["detect", str(mixed_folder), "--format", "json", "--frames", "2", "--heatmaps", str(heat)] + MODEL)
    assert rc == 1  # corrupt.mp4 could not be read (the others are still scored and reported)
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1].startswith("unmask detect: error: 1 of 5 files could not be read")
    out = json.loads(captured.out)
    assert out["skipped"] == [] and out["summary"].startswith("5 entries: 3 scored, 1 with no face, 1 unreadable")
    assert out["model"]["untrained"] is True and "meaningless" in out["model"]["note"]
    by = {os.path.basename(r["path"]): r for r in out["results"]}
    assert sorted(by) == ["183.mp4", "183_253.mp4", "astronaut.png", "corrupt.mp4", "no_face.png"]
    for name in ("183.mp4", "183_253.mp4"):
        r = by[name]
        assert r["status"] == "ok" and r["kind"] == "video" and r["width"] == 1280
        assert [fr["index"] for fr in r["frames"]] == [0, r["frames"][1]["index"]] and r["frames"][1]["index"] > 300
        scores = [fr["score"] for fr in r["frames"]]
        assert r["fake_probability"] == pytest.approx(np.mean(scores), abs=1e-5)
        for fr in r["frames"]:
            counted = [f["score"] for f in fr["faces"] if f["counted"]]
            assert fr["score"] == pytest.approx(max(counted))
            x0, y0, x1, y1 = fr["faces"][0]["box"]
            assert 300 < x0 < x1 < 1000 and 0 <= y0 < y1 < 720  # the presenter's face, mid-frame
    assert by["astronaut.png"]["status"] == "ok" and len(by["astronaut.png"]["frames"]) == 1
    assert by["no_face.png"]["status"] == "no_face" and by["no_face.png"]["fake_probability"] is None
    assert by["no_face.png"]["reason"] == "no face found in 1 frame"
    bad = by["corrupt.mp4"]
    assert bad["status"] == "error" and bad["reason"] and "\n" not in bad["reason"]
    # heat maps: one PNG per scored frame, the size of the frame
    import cv2

    pngs = sorted(p.name for p in heat.iterdir())
    assert pngs == sorted(["183_mp4_f00000.png", f"183_mp4_f{by['183.mp4']['frames'][1]['index']:05d}.png",
                           "183_253_mp4_f00000.png", f"183_253_mp4_f{by['183_253.mp4']['frames'][1]['index']:05d}.png",
                           "astronaut_png.png"])
    assert cv2.imread(str(heat / "183_mp4_f00000.png")).shape == (720, 1280, 3)
    assert by["183.mp4"]["heatmaps"][0].endswith("183_mp4_f00000.png")


def test_csv_and_table_formats(mixed_folder, capsys):
    files = [str(mixed_folder / "astronaut.png"), str(mixed_folder / "corrupt.mp4")]
    assert main(["detect", *files, "--format", "csv"] + MODEL) == 1  # one file unreadable
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[0]["face_index"] == "0" and float(rows[0]["x1"]) > float(rows[0]["x0"])
    assert float(rows[0]["face_score"]) == pytest.approx(float(rows[0]["fake_probability"]))
    assert rows[1]["frame_index"] == "" and rows[1]["reason"]
    assert main(["detect", *files] + MODEL) == 1
    text = capsys.readouterr().out
    assert text.startswith("WARNING: untrained model") and "1 of 2 scored" in text
    assert main(["detect", files[0]] + MODEL) == 0  # every file read and scored


def test_nothing_scored_is_a_nonzero_exit_with_reasons(mixed_folder, capsys):
    rc = main(["detect", str(mixed_folder / "corrupt.mp4"), str(mixed_folder / "no_face.png"), "--format", "json"] + MODEL)
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("unmask detect: error: nothing could be scored (corrupt.mp4: ")
    assert "no_face.png: no face found in 1 frame" in err[-1]


def test_detect_needs_a_checkpoint_or_untrained(mixed_folder, capsys):
    assert main(["detect", str(mixed_folder / "astronaut.png")]) == 1
    assert "no --checkpoint given" in capsys.readouterr().err


def test_detect_with_a_checkpoint_file(mixed_folder, tmp_path, capsys):
    import torch

    from unmask.models import build_detector, save_checkpoint

    torch.manual_seed(0)
    det = build_detector("resnet18", pretrained=None, input_size=96)
    ck = save_checkpoint(tmp_path / "run" / "best.pt", det, val={"threshold": 0.3})
    assert main(["detect", str(mixed_folder / "astronaut.png"), "--checkpoint", str(tmp_path / "run"),
                 "--format", "json", "--quiet"]) == 0
    out = _json(capsys)
    assert out["model"]["checkpoint"] == str(ck) and out["model"]["untrained"] is False
    assert out["threshold"] == 0.3  # the checkpoint's validation threshold decides the verdict
    r = out["results"][0]
    assert r["verdict"] == ("fake" if r["fake_probability"] > 0.3 else "real")


# --- no silent drops: every folder entry accounted for ------------------------------------------------------


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory, ffpp_root, astronaut_rgb):
    """Symlink loop, valid link, broken link, unsupported type, sub-folder, zero-byte file, a real FF++ clip cut in
    half (index at the front: the container claims every frame), .3gp and .mpg clips of the astronaut."""
    import av

    from unmask.io import atomic_save_png

    d = tmp_path_factory.mktemp("bad_folder")
    atomic_save_png(d / "astronaut.png", astronaut_rgb)
    os.symlink(ffpp_root / "original_sequences/youtube/c40/videos/183.mp4", d / "valid_link.mp4")
    os.symlink(d / "nowhere.mp4", d / "broken_link.mp4")
    os.symlink("loop_b.mp4", d / "loop_a.mp4")
    os.symlink("loop_a.mp4", d / "loop_b.mp4")
    (d / "notes.txt").write_text("not media\n")
    (d / "zero.mp4").write_bytes(b"")
    (d / "sub").mkdir()
    atomic_save_png(d / "sub" / "inner.png", astronaut_rgb)
    src = ffpp_root / "original_sequences/youtube/c40/videos/253.mp4"
    whole = d / "sub" / "faststart.mp4"
    with av.open(str(src)) as inp, av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for p in inp.demux(ist):
            if p.dts is not None:
                p.stream = ost
                out.mux(p)
    data = whole.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    whole.unlink()
    for name, fmt, codec, size in (("clip.3gp", "3gp", "h263", (352, 288)), ("clip.mpg", "mpeg", "mpeg1video", (320, 320))):
        import cv2

        img = cv2.resize(astronaut_rgb, size, interpolation=cv2.INTER_AREA)
        with av.open(str(d / name), "w", format=fmt) as out:
            s = out.add_stream(codec, rate=25)
            s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
            for i in range(20):
                for pk in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(img, i, axis=1)), format="rgb24")):
                    out.mux(pk)
            for pk in s.encode():
                out.mux(pk)
    return d


def test_every_entry_of_a_bad_folder_is_accounted_for(bad_folder, capsys):
    rc = main(["detect", str(bad_folder), "--format", "json", "--frames", "3"] + MODEL)
    assert rc == 1  # zero.mp4 cannot be read
    out = _json(capsys)
    by = {os.path.basename(r["path"]): r for r in out["results"]}
    skipped = {os.path.basename(e["path"]): e["reason"] for e in out["skipped"]}
    entries = {p.name for p in bad_folder.iterdir()}
    assert set(by) | set(skipped) == entries and not set(by) & set(skipped)  # every entry, once
    assert skipped["loop_a.mp4"] == skipped["loop_b.mp4"] == "symlink loop"
    assert skipped["broken_link.mp4"].startswith("broken symlink")
    assert skipped["notes.txt"] == "unsupported file type '.txt'"
    assert skipped["sub"].startswith("directory")
    assert by["valid_link.mp4"]["status"] == "ok"  # a valid link is followed
    assert by["zero.mp4"]["status"] == "error" and by["zero.mp4"]["reason"] == "empty file (0 bytes)"
    for name in ("clip.3gp", "clip.mpg"):  # decoded (faces or not), not dropped
        assert by[name]["status"] in ("ok", "no_face") and len(by[name]["frames"]) == 3
    t = by["truncated.mp4"]
    assert t["status"] == "ok" and t["warning"] and "frames its header claims are readable" in t["warning"]
    assert by["valid_link.mp4"]["warning"] is None and by["astronaut.png"]["warning"] is None
    # the table shows the warning and the skipped entries; --recursive reads the sub-folder instead of skipping it
    assert main(["detect", str(bad_folder), "--frames", "3", "-r"] + MODEL) == 1
    text = capsys.readouterr().out
    assert "WARNING: truncated file" in text and "skipped: " + str(bad_folder / "loop_a.mp4") + ": symlink loop" in text
    assert "inner.png" in text and "skipped: " + str(bad_folder / "sub") not in text
    assert text.strip().splitlines()[-1].endswith("1 unreadable, 4 skipped (not read)")


def test_untrained_scores_are_the_same_every_run_for_a_seed(mixed_folder, capsys):
    args = ["detect", str(mixed_folder / "astronaut.png"), "--format", "json", "--untrained", "--quiet",
            "--backbone", "resnet18", "--pretrained", "none"]
    runs = []
    for seed in ("0", "0", "1"):
        assert main(args + ["--seed", seed]) == 0
        runs.append(_json(capsys)["results"][0]["fake_probability"])
    assert runs[0] == runs[1] and runs[0] != runs[2]
