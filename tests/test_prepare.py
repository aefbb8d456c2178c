"""The prepare job end to end on real files: store contents, bad inputs, masks, shards, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import PREPARED_FFPP_OPTS, write_rgb_video
from unmask.data.crops import margin_crop
from unmask.data.media import even_indices
from unmask.data.prepare import (FacePipeline, PrepareOptions, faces_for_frame, in_shard, init_store, parse_shard,
                                 run_prepare)
from unmask.data.records import FAKE, REAL, ManifestRow
from unmask.data.store import PreparedStore, load_mask, load_rgb
from unmask.errors import UnmaskError

REPO = Path(__file__).resolve().parents[1]


def _row(path: Path, label: int = REAL, method: str = "real", mask: Path | None = None, vid: str | None = None):
    return ManifestRow(dataset="generic", video_id=vid or path.name, label=label, method=method, source=str(path),
                       mask_source=str(mask) if mask else None)


# --- the prepared FF++ subset -------------------------------------------------------------------------------


def test_prepared_store_has_every_item_and_frame(prepared_ffpp, ffpp_root):
    store = PreparedStore(prepared_ffpp)
    items = store.items()
    assert len(items) == 50  # 10 originals + 40 fakes, all in train/val in the sample
    for it in items:
        rec = it.record
        assert it.status in ("ok", "partial"), it.outcome
        assert [f["index"] for f in rec["frames"]] == even_indices(rec["frame_count"], PREPARED_FFPP_OPTS["frames"])
        assert rec["frames_decoded"] < rec["frame_count"]  # seeking, not decoding everything
    s = store.summary()
    assert s["frames"] == 200 and s["face_frame_share"] > 0.95


def test_stored_faces_are_consistent(prepared_ffpp):
    store = PreparedStore(prepared_ffpp)
    faces = store.faces()
    assert len(faces) >= 195
    for f in faces[::7]:
        rgb = load_rgb(f.crop_path)
        h, w = rgb.shape[:2]
        assert max(h, w) <= 640
        assert f.landmarks.shape == (81, 2) and f.box.shape == (4,)
        assert 0 <= f.box[0] < f.box[2] <= w + 1 and 0 <= f.box[1] < f.box[3] <= h + 1
        inside = ((f.landmarks[:68, 0] >= 0) & (f.landmarks[:68, 0] < w)
                  & (f.landmarks[:68, 1] >= 0) & (f.landmarks[:68, 1] < h))
        assert inside.all()
        # The training margins (up to 20% per side) fit inside the stored crop unless the frame edge cut it.
        mc = margin_crop(rgb, f.box, f.landmarks, 0.2)
        x0, y0, x1, y1 = mc.window
        bw, bh = f.box[2] - f.box[0], f.box[3] - f.box[1]
        if f.crop_origin[0] > 0:
            assert x0 > 0 or f.box[0] - 0.2 * bw >= -1
        assert mc.image.shape[0] > 0.9 * 1.4 * bh or y0 == 0 or y1 == h
        assert f.split in ("train", "val") and f.label in (REAL, FAKE)


def test_store_filters(prepared_ffpp):
    store = PreparedStore(prepared_ffpp)
    val = store.faces(split="val")
    assert val and all(f.split == "val" for f in val)
    real = store.faces(labels=[REAL])
    assert real and all(f.label == REAL and f.method == "real" for f in real)
    df = store.faces(methods=["deepfakes"])
    assert df and all(f.method == "Deepfakes" for f in df)
    largest = store.faces(largest_only=True)
    assert all(f.face_index == 0 for f in largest)
    assert len(largest) == len({(f.item_key, f.frame_index) for f in store.faces()})


def test_manifest_lists_every_face(prepared_ffpp):
    lines = (prepared_ffpp / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == len(PreparedStore(prepared_ffpp).faces())
    first = json.loads(lines[0])
    assert (prepared_ffpp / first["crop"]).is_file()


# --- bad inputs ---------------------------------------------------------------------------------------------


def test_bad_inputs_are_recorded_and_the_batch_goes_on(bad_inputs, tmp_path):
    rows = [_row(p, vid=name) for name, p in sorted(bad_inputs.items())]
    rows.append(_row(tmp_path / "missing.mp4", vid="missing"))
    summary = run_prepare(rows, tmp_path / "store", PrepareOptions(frames=3, workers=1), progress=False)
    assert summary["processed"] == len(rows)
    rec = {it.row.video_id: it for it in PreparedStore(tmp_path / "store").items()}
    assert set(rec) == {r.video_id for r in rows}

    def failed(name, text):
        assert rec[name].status == "failed" and text in rec[name].outcome, rec[name].outcome

    failed("zero_byte", "empty file")
    failed("text_mp4", "cannot open video")
    failed("truncated_no_index", "cannot open video")
    failed("unsupported", "unsupported file type")
    failed("missing", "not found")
    # The half faststart mp4 decodes (its frames show no face): frames recorded, none dropped silently.
    t = rec["truncated_mp4"]
    assert t.status == "no_face" and t.frames_kept == 3 and t.outcome == "no face in 3 of 3 frames"
    assert t.record["warning"] and "truncated" in t.record["warning"]
    assert rec["no_face"].status == "no_face" and rec["no_face"].outcome == "no face in 1 of 1 frames"
    for name in ("gray", "rgba", "rgb16", "gray16", "webp"):
        assert rec[name].status == "ok" and rec[name].faces == 1, (name, rec[name].outcome)
    huge = rec["huge"]
    assert huge.status == "ok" and huge.faces == 1
    assert huge.record["image_scale"] == 0.5 and huge.record["size"] == [6000, 4500]
    assert max(load_rgb(tmp_path / "store" / huge.record["frames"][0]["faces"][0]["crop"]).shape[:2]) <= 640


# --- masks ----------------------------------------------------------------------------------------------------


def test_mask_video_is_cropped_with_the_face(tmp_path, astronaut_rgb):
    """A face video + a mask video (FF++ layout): the mask crop is stored beside each face crop, aligned."""
    frames, masks = [], []
    for i in range(12):
        dx = i * 2
        frames.append(np.ascontiguousarray(np.roll(astronaut_rgb, dx, axis=1)))
        m = np.zeros((512, 512, 3), np.uint8)
        m[90:150, 190 + dx:260 + dx] = 255  # the eyes-to-nose band of the moving face
        masks.append(m)
    write_rgb_video(tmp_path / "face.mp4", frames)
    write_rgb_video(tmp_path / "mask.mp4", masks)
    row = _row(tmp_path / "face.mp4", label=FAKE, method="Synthetic", mask=tmp_path / "mask.mp4", vid="face")
    run_prepare([row], tmp_path / "store", PrepareOptions(frames=3, workers=1), progress=False)
    faces = PreparedStore(tmp_path / "store").faces(largest_only=True)  # face 0: the astronaut (see sort_faces)
    assert len(faces) == 3
    for f in faces:
        assert f.mask_path is not None
        crop, mask = load_rgb(f.crop_path), load_mask(f.mask_path)
        assert mask.shape == crop.shape[:2]
        ys, xs = np.nonzero(mask > 128)
        dx = f.frame_index * 2
        ox, oy = f.crop_origin
        assert abs(xs.min() - (190 + dx - ox)) <= 2 and abs(ys.min() - (90 - oy)) <= 2
        # The stored landmarks and the mask agree: the eyes and the nose tip lie inside the masked band.
        eyes_y, (nose_x, nose_y) = f.landmarks[36:48, 1].mean(), f.landmarks[30]
        assert ys.min() < eyes_y < ys.max() and ys.min() < nose_y < ys.max() and xs.min() < nose_x < xs.max()


# --- stored crops: the PNG codec -------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["isal", "opencv"])
def test_crop_png_is_lossless_and_standard(tmp_path, astronaut_rgb, monkeypatch, writer):
    """Both writers give a standard PNG (PIL reads it too) that decodes to exactly the crop, RGB order kept."""
    from PIL import Image

    from unmask.data import store

    if writer == "isal" and store._isal_zlib() is None:
        pytest.skip("isal not installed (the OpenCV writer is used)")
    if writer == "opencv":
        monkeypatch.setattr(store, "_isal_zlib", lambda: None)
    rng = np.random.default_rng(0)
    rgb = np.ascontiguousarray(astronaut_rgb[40:301, 100:377])  # odd sizes
    rgb[:20] = rng.integers(0, 256, (20, rgb.shape[1], 3), dtype=np.uint8)  # noise: every byte value
    gray = np.ascontiguousarray(rgb[..., 1])
    for name, img in (("rgb.png", rgb), ("gray.png", gray)):
        data = store.encode_png(img)
        (tmp_path / name).write_bytes(data)
        with Image.open(tmp_path / name) as im:
            assert np.array_equal(np.asarray(im), img)
    assert np.array_equal(load_rgb(tmp_path / "rgb.png"), rgb)
    assert np.array_equal(load_mask(tmp_path / "gray.png"), gray)
    with pytest.raises(ValueError):
        store.encode_png(rgb.astype(np.float32))


def test_a_crop_that_cannot_be_written_stops_the_job_without_a_record(tmp_path, astronaut_rgb):
    """Crops are written on a background thread; its error still stops the job (the store is unusable) and the
    item gets no record, so a later run redoes it."""
    src = tmp_path / "astronaut.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    store = tmp_path / "store"
    init_store(store, PrepareOptions(frames=1))
    (store / "crops").write_text("a file where the crops folder should be")
    with pytest.raises(UnmaskError, match="cannot write to the store"):
        run_prepare([_row(src)], store, PrepareOptions(frames=1, workers=1), progress=False)
    assert PreparedStore(store).items() == []
    (store / "crops").unlink()
    summary = run_prepare([_row(src)], store, PrepareOptions(frames=1, workers=1), progress=False)
    assert summary["ok"] == 1 and len(PreparedStore(store).faces()) == 1


# --- options, shards, the CLI -------------------------------------------------------------------------------


def test_shards_partition_the_items():
    keys = [f"ffpp/real/c23/{i:03d}" for i in range(300)]
    parts = [{k for k in keys if in_shard(k, (i, 3))} for i in range(3)]
    assert set().union(*parts) == set(keys)
    assert sum(len(p) for p in parts) == len(keys)
    assert all(60 < len(p) < 140 for p in parts)
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "x", "1/0", "-1/3"):
        with pytest.raises(UnmaskError):
            parse_shard(bad)


def test_store_refuses_other_options(tmp_path):
    init_store(tmp_path, PrepareOptions(frames=4))
    init_store(tmp_path, PrepareOptions(frames=4, workers=3))  # workers do not shape the data
    with pytest.raises(UnmaskError, match="frames"):
        init_store(tmp_path, PrepareOptions(frames=8))


def test_face_pipeline_matches_the_detector(astronaut_rgb):
    pipe = FacePipeline()
    a = pipe.faces(astronaut_rgb)
    b = faces_for_frame(astronaut_rgb, pipe.detector)
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[0].landmarks68, b[0].landmarks68)
    crop = pipe.crops(astronaut_rgb, a)[0]
    assert crop.landmarks.shape == (81, 2)


def _unmask(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unmask.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, **kw)


def test_cli_prepare_generic_folder_and_errors(tmp_path, astronaut_rgb, bad_inputs):
    (tmp_path / "data" / "real").mkdir(parents=True)
    (tmp_path / "data" / "fake").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "data" / "real" / "astronaut.png"), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    (tmp_path / "data" / "fake" / "broken.mp4").write_bytes(bad_inputs["text_mp4"].read_bytes())
    out = _unmask("prepare", "generic", str(tmp_path / "data"), "--out", str(tmp_path / "store"), "--workers", "1",
                  "--frames", "2", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "1 ok" in out.stdout and "1 failed" in out.stdout and "cannot open video" in out.stdout
    bad = _unmask("prepare", "generic", str(tmp_path / "data"), "--out", str(tmp_path / "s2"), "--shard", "3/2")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("unmask prepare: error: --shard")
    usage = _unmask("prepare", "generic", str(tmp_path / "data"))  # --out missing: argparse's usage error
    assert usage.returncode == 2 and "the following arguments are required: --out" in usage.stderr


def test_cli_prepare_exits_nonzero_when_no_item_succeeded(tmp_path, bad_inputs):
    """Every item failed or had no face: the summary is still printed, then a one-line error and exit 1."""
    import shutil

    (tmp_path / "data" / "fake").mkdir(parents=True)
    (tmp_path / "data" / "real").mkdir(parents=True)
    shutil.copy(bad_inputs["text_mp4"], tmp_path / "data" / "fake" / "broken.mp4")
    shutil.copy(bad_inputs["zero_byte"], tmp_path / "data" / "real" / "zero.mp4")
    shutil.copy(bad_inputs["no_face"], tmp_path / "data" / "real" / "no_face.png")
    (tmp_path / "data" / "real" / "readme.txt").write_text("not media\n")
    os.symlink(tmp_path / "data" / "real" / "gone.mp4", tmp_path / "data" / "real" / "dangling.mp4")
    out = _unmask("prepare", "generic", str(tmp_path / "data"), "--out", str(tmp_path / "store"), "--workers", "1",
                  "--frames", "2", "--no-progress")
    assert out.returncode == 1, out.stdout
    assert "0 ok, 0 with frames without a face, 1 with no face, 2 failed" in out.stdout
    assert "not items (skipped by the adapter): 2" in out.stdout
    assert f"{tmp_path / 'data' / 'real' / 'readme.txt'}: unsupported file type '.txt'" in out.stdout
    assert f"{tmp_path / 'data' / 'real' / 'dangling.mp4'}: broken symlink" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == ("unmask prepare: error: no item succeeded: of the 3 items of this "
                                                   "shard in the store, 2 failed and 1 have no face")
    again = _unmask("prepare", "generic", str(tmp_path / "data"), "--out", str(tmp_path / "store"), "--workers", "1",
                    "--frames", "2", "--no-progress")  # a resumed run of the same hopeless shard says so again
    assert again.returncode == 1 and "3 already done" in again.stdout


def test_cli_prepare_summary_accounts_for_a_truncated_video(tmp_path, bad_inputs, astronaut_rgb):
    import json
    import shutil

    (tmp_path / "data" / "fake").mkdir(parents=True)
    (tmp_path / "data" / "real").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "data" / "real" / "astronaut.png"), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    shutil.copy(bad_inputs["truncated_mp4"], tmp_path / "data" / "fake" / "cut.mp4")
    out = _unmask("prepare", "generic", str(tmp_path / "data"), "--out", str(tmp_path / "store"), "--workers", "1",
                  "--frames", "4", "--no-progress", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    (key, warning), = s["decode_warnings"].items()
    assert key.endswith("fake_cut") and warning.startswith("truncated file")
    assert s["skipped_entries"] == [] and s["skipped_by_reason"] == {}


# --- resume after a kill -----------------------------------------------------------------------------------


def _records(store: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(store)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in (store / "items").rglob("*.json") if not p.name.startswith(".")}


def _comparable(rec: dict) -> dict:
    return {k: rec[k] for k in ("key", "status", "outcome", "frames", "frame_count", "targets")}


def test_resume_after_kill_redoes_nothing_finished(ffpp_root, prepared_ffpp, tmp_path):
    """SIGKILL a real prepare run mid-way; no half file is visible; the rerun skips what was finished and the
    result equals the uninterrupted run (the prepared_ffpp fixture has the same options)."""
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "unmask.cli", "prepare", "ffpp", str(ffpp_root), "--out", str(store),
           "--compression", "c40", "--split", "val", "--methods", "real,Deepfakes",
           "--frames", str(PREPARED_FFPP_OPTS["frames"]),
           "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (store / "items").is_dir() and len(_records(store)) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "prepare finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = _records(store)
    assert 3 <= len(before) < 8  # 8 items: the 4 val originals and their Deepfakes
    # Nothing half-written is visible: every record parses, every crop decodes; only finished items are listed.
    for _, data in before.values():
        json.loads(data)
    for png in (store / "crops").rglob("*.png"):
        if not png.name.startswith("."):
            assert cv2.imread(str(png)) is not None, png
    assert len(PreparedStore(store).items()) == len(before)

    # Resume in one process (the store does not depend on the worker count).
    cmd[cmd.index("--workers") + 1] = "1"
    out = subprocess.run(cmd + ["--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["skipped_done"] == len(before)
    assert summary["processed"] == 8 - len(before)
    after = _records(store)
    assert len(after) == 8
    for name, (mtime, data) in before.items():
        assert after[name] == (mtime, data), f"{name} was redone"
    leftovers = [p for p in store.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    # Same result as the uninterrupted fixture run.
    ref = {it.key: it.record for it in PreparedStore(prepared_ffpp).items()
           if it.row.split == "val" and it.row.method in ("real", "Deepfakes")}
    got = {it.key: it.record for it in PreparedStore(store).items()}
    assert set(got) == set(ref)
    for key in got:
        assert _comparable(got[key]) == _comparable(ref[key]), key
    f_got = PreparedStore(store).faces()[5]
    f_ref = next(f for f in PreparedStore(prepared_ffpp).faces()
                 if f.item_key == f_got.item_key and f.frame_index == f_got.frame_index)
    assert np.array_equal(load_rgb(f_got.crop_path), load_rgb(f_ref.crop_path))


def test_a_worker_crash_is_recorded_and_the_batch_goes_on(tmp_path, astronaut_rgb, monkeypatch):
    """A worker process that dies (here: os._exit on one item, as an OOM kill would) breaks the pool; the item
    is retried once, then recorded as failed, and every other item is still prepared."""
    paths = []
    for name in ("a_ok", "b_crashme", "c_ok"):
        p = tmp_path / f"{name}.png"
        cv2.imwrite(str(p), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
        paths.append(p)
    monkeypatch.setenv("UNMASK_PREPARE_FAULT", "crashme")
    rows = [_row(p, vid=p.stem) for p in paths]
    summary = run_prepare(rows, tmp_path / "store", PrepareOptions(frames=1, workers=2), progress=False)
    items = {it.row.video_id: it for it in PreparedStore(tmp_path / "store").items()}
    assert set(items) == {"a_ok", "b_crashme", "c_ok"}
    assert items["a_ok"].status == "ok" and items["c_ok"].status == "ok"
    assert items["b_crashme"].status == "failed" and "worker process died" in items["b_crashme"].outcome
    assert summary["failed"] == 1


def test_cli_prepare_an_empty_shard_is_not_a_failure(tmp_path, bad_inputs):
    import shutil

    from unmask.cli import main

    (tmp_path / "data" / "real").mkdir(parents=True)
    shutil.copy(bad_inputs["no_face"], tmp_path / "data" / "real" / "no_face.png")
    key = "generic/real/na/real_no_face"
    mine = 0 if in_shard(key, (0, 2)) else 1
    args = ["prepare", "generic", str(tmp_path / "data"), "--out", str(tmp_path / "store"), "--workers", "1",
            "--frames", "1", "--no-progress"]
    assert main(args + ["--shard", f"{1 - mine}/2"]) == 0  # holds no item
    assert main(args + ["--shard", f"{mine}/2"]) == 1  # its only item has no face
