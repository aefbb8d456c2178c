"""Dataset adapters: the FF++ adapter on the shared real sample, every other adapter on a tiny layout built
in tmp_path (adapters only list files, so empty files stand in for videos), and the registry contract."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from unmask.data.adapters import ADAPTERS, adapter_names, list_items
from unmask.data.records import FAKE, REAL
from unmask.errors import UnmaskError

SAMPLE_SPLITS = {  # from ../shared/README.md
    "train": [("481", "469"), ("878", "866"), ("253", "183")],
    "val": [("720", "672"), ("599", "585")],
}
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


def touch(root: Path, *paths: str) -> None:
    for p in paths:
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")


# --------------------------------------------------------------------------------------------- FF++


def test_ffpp_sample_finds_originals_and_fakes_with_labels_methods_splits(ffpp_root):
    rows = list_items("ffpp", ffpp_root, compression="c40", methods=None, splits=None)
    reals = [r for r in rows if r.label == REAL]
    fakes = [r for r in rows if r.label == FAKE]
    assert len(reals) == 10 and len(fakes) == 40
    assert {r.method for r in reals} == {"real"}
    assert Counter(r.method for r in fakes) == {m: 10 for m in FFPP_METHODS}
    expected_split = {}
    for split, pairs in SAMPLE_SPLITS.items():
        for a, b in pairs:
            expected_split.update({a: split, b: split, f"{a}_{b}": split, f"{b}_{a}": split})
    for r in rows:
        assert r.split == expected_split[r.video_id], r
        assert r.compression == "c40" and r.dataset == "ffpp"
        assert Path(r.source).is_file() and Path(r.source).is_absolute()
        assert r.mask_source is None  # the sample ships no masks
    # An original and its fakes share one identity (the sorted pair), so splitting by identity never leaks.
    by_id = {r.video_id: r for r in rows}
    assert by_id["183"].identity == by_id["253"].identity == by_id["253_183"].identity == "183_253"
    assert by_id["183_253"].extra == {"target": "183", "source": "253"}
    assert Path(by_id["672_720"].source).parent.parent.parent.name in FFPP_METHODS
    assert not any(r.split == "test" for r in rows)
    assert len({r.key for r in rows}) == 50


def test_ffpp_sample_filters_and_determinism(ffpp_root):
    a = list_items("ffpp", ffpp_root, compression="c40")
    assert a == list_items("ffpp", str(ffpp_root), compression="c40")
    val_real = list_items("ffpp", ffpp_root, compression="c40", methods=["real"], splits=["val"])
    assert [r.video_id for r in val_real] == ["585", "599", "672", "720"]
    df = list_items("ffpp", ffpp_root, compression="c40", methods="deepfakes,real", splits=["train"])
    assert Counter(r.method for r in df) == {"real": 6, "Deepfakes": 6}
    assert list_items("ffpp", ffpp_root, compression="c40", splits=["test"]) == []


def test_ffpp_sample_wrong_compression_and_bad_options_are_one_line_errors(ffpp_root):
    with pytest.raises(UnmaskError, match=r"no c23 videos .*found c40"):
        list_items("ffpp", ffpp_root)  # default c23; the sample has c40 only
    with pytest.raises(UnmaskError, match="unknown compression"):
        list_items("ffpp", ffpp_root, compression="c99")
    with pytest.raises(UnmaskError, match="unknown method 'DeepFake'"):
        list_items("ffpp", ffpp_root, compression="c40", methods=["DeepFake"])
    with pytest.raises(UnmaskError, match="unknown split"):
        list_items("ffpp", ffpp_root, compression="c40", splits=["validation"])
    with pytest.raises(UnmaskError, match="unknown option 'compresion'"):
        list_items("ffpp", ffpp_root, compresion="c40")


def test_ffpp_partial_layout_actors_masks_and_missing_splits(tmp_path, caplog):
    touch(
        tmp_path,
        "original_sequences/youtube/c23/videos/000.mp4",
        "original_sequences/actors/c23/videos/01__exit_phone_room.mp4",
        "manipulated_sequences/FaceShifter/c23/videos/000_003.mp4",
        "manipulated_sequences/FaceShifter/c23/videos/003_000.mp4",
        "manipulated_sequences/FaceShifter/masks/videos/000_003.mp4",
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__meeting_serious__YVGY8LOK.mp4",
        "manipulated_sequences/DeepFakeDetection/c40/videos/01_03__walking__ABCDEFGH.mp4",
    )
    with caplog.at_level(logging.WARNING, logger="unmask.data.adapters.ffpp"):
        rows = list_items("ffpp", tmp_path)
    assert sum("split None" in rec.getMessage() for rec in caplog.records) == 1
    by_id = {r.video_id: r for r in rows}
    assert set(by_id) == {"000", "01__exit_phone_room", "000_003", "003_000", "01_02__meeting_serious__YVGY8LOK"}
    assert all(r.split is None for r in rows)
    assert by_id["000"].identity == by_id["003_000"].identity == "000_003"  # pairing from the fake names
    assert by_id["01__exit_phone_room"].identity == "01" and by_id["01__exit_phone_room"].method == "real"
    dfd = by_id["01_02__meeting_serious__YVGY8LOK"]
    assert (dfd.label, dfd.method, dfd.identity) == (FAKE, "DeepFakeDetection", "01")
    assert by_id["000_003"].mask_source == str(tmp_path / "manipulated_sequences/FaceShifter/masks/videos/000_003.mp4")
    assert by_id["003_000"].mask_source is None


def test_ffpp_split_files_assign_pairs(tmp_path):
    touch(
        tmp_path,
        "original_sequences/youtube/raw/videos/010.mp4",
        "original_sequences/youtube/raw/videos/020.mp4",
        "original_sequences/youtube/raw/videos/030.mp4",
        "manipulated_sequences/Deepfakes/raw/videos/020_010.mp4",
    )
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits/train.json").write_text(json.dumps([["010", "020"]]))
    (tmp_path / "splits/val.json").write_text("[]")
    (tmp_path / "splits/test.json").write_text(json.dumps([["030", "040"]]))
    rows = {r.video_id: r for r in list_items("ffpp", tmp_path, compression="raw")}
    assert {k: r.split for k, r in rows.items()} == {"010": "train", "020": "train", "030": "test", "020_010": "train"}
    assert rows["030"].identity == "030_040"
    (tmp_path / "splits/val.json").write_text("{not json")
    with pytest.raises(UnmaskError, match="val.json is not valid JSON"):
        list_items("ffpp", tmp_path, compression="raw")


# ------------------------------------------------------------------------------------------ Celeb-DF


def test_celebdf_labels_from_folders_and_test_list(tmp_path, caplog):
    touch(
        tmp_path,
        "Celeb-real/id0_0000.mp4",
        "Celeb-real/id1_0003.mp4",
        "YouTube-real/00170.mp4",
        "Celeb-synthesis/id0_id16_0000.mp4",
        "Celeb-synthesis/id1_id0_0007.mp4",
    )
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id1_id0_0007.mp4\n\n1 Celeb-real/id9_0001.mp4\n"
    )
    with caplog.at_level(logging.WARNING):
        rows = {r.video_id: r for r in list_items("celebdf", tmp_path)}
    assert caplog.text == ""  # the list agrees with the folders: 1 = real, 0 = fake
    assert {k: (r.label, r.method, r.split) for k, r in rows.items()} == {
        "id0_0000": (REAL, "real", "train"),
        "id1_0003": (REAL, "real", "train"),
        "00170": (REAL, "real", "test"),
        "id0_id16_0000": (FAKE, "fake", "train"),
        "id1_id0_0007": (FAKE, "fake", "test"),
    }
    assert rows["id0_id16_0000"].identity == rows["id0_0000"].identity == "id0"
    assert [r.video_id for r in list_items("celebdf", tmp_path, splits=["test"])] == ["00170", "id1_id0_0007"]
    # A list whose number contradicts the folder: the folder wins, with a warning.
    (tmp_path / "List_of_testing_videos.txt").write_text("0 YouTube-real/00170.mp4\n")
    with caplog.at_level(logging.WARNING):
        assert {r.video_id: r.label for r in list_items("celebdf", tmp_path)}["00170"] == REAL
    assert "using its folder's label" in caplog.text
    (tmp_path / "List_of_testing_videos.txt").write_text("YouTube-real/00170.mp4\n")
    with pytest.raises(UnmaskError, match="line 1"):
        list_items("celebdf", tmp_path)
    (tmp_path / "List_of_testing_videos.txt").unlink()
    assert {r.split for r in list_items("celebdf", tmp_path)} == {None}


# ---------------------------------------------------------------------------------------------- DFDC


def test_dfdc_parts_and_test_set_partial(tmp_path):
    touch(tmp_path, "dfdc_train_part_0/aaa.mp4", "dfdc_train_part_0/bbb.mp4", "test/videos/ccc.mp4", "test/ddd.mp4")
    meta = {
        "aaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "zzz.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},  # not downloaded
    }
    (tmp_path / "dfdc_train_part_0/metadata.json").write_text(json.dumps(meta))
    (tmp_path / "test/labels.csv").write_text("filename,label\nccc.mp4,1\nyyy.mp4,0\n")
    rows = {r.video_id: r for r in list_items("dfdc", tmp_path)}
    assert {k: (r.label, r.split, r.identity) for k, r in rows.items()} == {
        "aaa": (REAL, "train", "aaa"),
        "bbb": (FAKE, "train", "aaa"),
        "ccc": (FAKE, "test", None),
    }
    assert rows["ccc"].source == str(tmp_path / "test/videos/ccc.mp4")
    (tmp_path / "test/labels.csv").write_text("name,label\nccc.mp4,1\n")
    with pytest.raises(UnmaskError, match="filename,label"):
        list_items("dfdc", tmp_path)


def test_dfdc_index_without_videos_is_an_error(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"aaa.mp4": {"label": "REAL"}}))
    with pytest.raises(UnmaskError, match="list 1 videos but none is on disk"):
        list_items("dfdc", tmp_path)


# -------------------------------------------------------------------------------------- DFDC preview


def test_dfdcp_dataset_json(tmp_path):
    index = {
        "original_videos/643049/643049_A_001.mp4": {"label": "real", "set": "train"},
        "method_A/643049/643049_A/1955256_643049_A_001.mp4": {"label": "fake", "set": "train"},
        "method_B/1224068/1224068_C/2072011_1224068_C_002.mp4": {"label": "fake", "set": "test"},
        "method_B/1224068/1224068_C/missing.mp4": {"label": "fake", "set": "test"},
    }
    touch(tmp_path, *list(index)[:3])
    (tmp_path / "dataset.json").write_text(json.dumps(index))
    rows = list_items("dfdcp", tmp_path)
    assert [(r.label, r.method, r.split, r.identity) for r in rows] == [
        (REAL, "real", "train", "643049"),
        (FAKE, "method_A", "train", "643049"),
        (FAKE, "method_B", "test", "1224068"),
    ]
    assert [r.method for r in list_items("dfdcp", tmp_path, methods=["method_b"])] == ["method_B"]


# ------------------------------------------------------------------------------------------ FFIW-10K


def test_ffiw_source_target_splits(tmp_path):
    touch(
        tmp_path,
        "FFIW10K-v1-release/source/val/videos/00001.mp4",
        "FFIW10K-v1-release/target/val/videos/00001.mp4",
        "FFIW10K-v1-release/source/train/00002.mp4",
        "FFIW10K-v1-release/target/train/00002.mp4",
        "FFIW10K-v1-release/target/train/notes.txt",
    )
    rows = list_items("ffiw", tmp_path)
    assert [(r.video_id, r.label, r.split) for r in rows] == [
        ("train_00002", REAL, "train"),
        ("val_00001", REAL, "val"),
        ("train_00002", FAKE, "train"),
        ("val_00001", FAKE, "val"),
    ]
    assert len(list_items("ffiw", tmp_path / "FFIW10K-v1-release", splits=["val"])) == 2


# ------------------------------------------------------------------------------------- WildDeepfake


def test_wilddeepfake_sequence_folders(tmp_path):
    touch(
        tmp_path,
        "real_train/0/real/0/0.png",
        "real_train/0/real/0/12.png",
        "real_train/0/real/1/3.png",
        "fake test/5/fake/2/7.png",
        "fake test/5/fake/3/readme.txt",
    )
    rows = list_items("wilddeepfake", tmp_path)
    assert [(r.video_id, r.label, r.method, r.split, r.identity) for r in rows] == [
        ("train/0/real/0", REAL, "real", "train", "real_train/0"),
        ("train/0/real/1", REAL, "real", "train", "real_train/0"),
        ("test/5/fake/2", FAKE, "fake", "test", "fake_test/5"),
    ]
    assert all(Path(r.source).is_dir() for r in rows)


def test_wilddeepfake_unextracted_archives_say_so(tmp_path):
    touch(tmp_path, "real_train/0.tar.gz", "fake_train/0.tar.gz")
    with pytest.raises(UnmaskError, match="extract"):
        list_items("wilddeepfake", tmp_path)


# -------------------------------------------------------------------------------- DeeperForensics-1.0


def test_deeperforensics_variants_lists_and_targets(tmp_path, caplog):
    touch(
        tmp_path,
        "manipulated_videos/end_to_end/000_M101.mp4",
        "manipulated_videos/end_to_end/001_W102.mp4",
        "manipulated_videos/end_to_end_level_5/000_M101.mp4",
        "target_videos/000.mp4",
        "target_videos/002.mp4",
    )
    (tmp_path / "lists/splits").mkdir(parents=True)
    (tmp_path / "lists/splits/train.txt").write_text("000_M101.mp4\n")
    (tmp_path / "lists/splits/val.txt").write_text("")
    (tmp_path / "lists/splits/test.txt").write_text("001_W102.mp4\n002_M005.mp4\n")
    rows = list_items("deeperforensics", tmp_path)
    assert [(r.video_id, r.label, r.method, r.split, r.identity) for r in rows] == [
        ("000", REAL, "real", "train", "000"),
        ("002", REAL, "real", "test", "002"),
        ("000_M101", FAKE, "end_to_end", "train", "000"),
        ("001_W102", FAKE, "end_to_end", "test", "001"),
        ("000_M101", FAKE, "end_to_end_level_5", "train", "000"),
    ]
    std = list_items("deeperforensics", tmp_path, methods=["real", "end_to_end"], splits=["test"])
    assert [r.video_id for r in std] == ["002", "001_W102"]
    with pytest.raises(UnmaskError, match="unknown method"):
        list_items("deeperforensics", tmp_path, methods=["end2end"])
    for f in (tmp_path / "lists/splits").iterdir():
        f.unlink()
    with caplog.at_level(logging.WARNING):
        assert {r.split for r in list_items("deeperforensics", tmp_path)} == {None}
    assert caplog.text.count("get split None") == 1


# ------------------------------------------------------------------------------------------- generic


def test_generic_folder_with_splits_and_methods(tmp_path):
    touch(
        tmp_path,
        "real/a.mp4",
        "fake/b.jpg",
        "train/real/c.png",
        "train/fake/Deepfakes/d.mp4",
        "test/1/e.mp4",
        "test/1/notes.txt",
        "other/f.mp4",
    )
    rows = list_items("generic", tmp_path)
    assert [(r.video_id, r.label, r.method, r.split) for r in rows] == [
        ("real/a", REAL, "real", None),
        ("train/real/c", REAL, "real", "train"),
        ("train/fake/Deepfakes/d", FAKE, "Deepfakes", "train"),
        ("fake/b", FAKE, "fake", None),
        ("test/1/e", FAKE, "fake", "test"),
    ]


def test_generic_csv(tmp_path, caplog):
    touch(tmp_path, "vids/a.mp4", "vids/b.mp4", "frames/c/0001.png")
    csv = tmp_path / "index.csv"
    csv.write_text("path,label,split,method\nvids/a.mp4,real,train,\nvids/b.mp4,1,test,FaceSwap\nframes/c,0,,\n"
                   "vids/gone.mp4,1,,\n")
    with caplog.at_level(logging.WARNING):
        rows = list_items("generic", csv)
    assert "1 paths" in caplog.text and "gone.mp4" in caplog.text
    assert [(r.video_id, r.label, r.method, r.split) for r in rows] == [
        ("frames/c", REAL, "real", None),
        ("vids/a", REAL, "real", "train"),
        ("vids/b", FAKE, "FaceSwap", "test"),
    ]
    assert rows[0].source == str(tmp_path / "frames/c")
    csv.write_text("path,label\nvids/a.mp4,maybe\n")
    with pytest.raises(UnmaskError, match="line 2: label 'maybe'"):
        list_items("generic", csv)
    csv.write_text("file,label\nvids/a.mp4,0\n")
    with pytest.raises(UnmaskError, match="path,label"):
        list_items("generic", csv)
    csv.write_text("path,label\nvids/a.mp4,0\nvids/a.mp4,0\n")
    with pytest.raises(UnmaskError, match="share the id"):
        list_items("generic", csv)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnmaskError, match="not a .csv"):
        list_items("generic", tmp_path / "notes.txt")


def test_generic_folder_reports_every_entry_it_does_not_list(tmp_path):
    """No silent drops: stray files, unknown folders, unsupported types, hidden files, broken links and loops are
    reported with a reason; valid links are followed; two files differing only in extension stay two items."""
    import os

    from unmask.data.adapters import list_items_report

    touch(tmp_path, "real/a.mp4", "real/clip.3gp", "real/clip.mpg", "real/anim.gif", "real/notes.txt",
          "real/._a.mp4", "fake/x/b.wmv", "README.md", "other/f.mp4", "train/misc.txt")
    (tmp_path / "train" / "real").mkdir()
    os.symlink(tmp_path / "real" / "a.mp4", tmp_path / "fake" / "link.mp4")
    os.symlink(tmp_path / "real" / "gone.mp4", tmp_path / "fake" / "broken.mp4")
    os.symlink(tmp_path, tmp_path / "fake" / "x" / "loop")
    listing = list_items_report("generic", tmp_path)
    assert sorted(r.video_id for r in listing.rows) == [
        "fake/link", "fake/x/b", "real/a", "real/anim", "real/clip.3gp", "real/clip.mpg"]
    assert {r.source for r in listing.rows if r.video_id == "fake/link"} == {str(tmp_path / "fake" / "link.mp4")}
    why = {os.path.relpath(e.path, tmp_path): e.reason for e in listing.skipped}
    assert why["real/notes.txt"] == "unsupported file type '.txt'" and why["real/._a.mp4"] == "hidden entry"
    assert why["fake/broken.mp4"].startswith("broken symlink") and why["fake/x/loop"].startswith("symlink loop")
    assert why["README.md"].startswith("not under a real/ or fake/ folder") and "other" in why
    assert why["train/misc.txt"] == "not under a real/ or fake/ folder (split folder train/)"
    assert len(why) == 7
    assert listing.skipped_by_reason()["not under a real/ or fake/ folder"] == 3


def test_generic_csv_keeps_its_own_columns_and_reports_missing_paths(tmp_path):
    from unmask.data.adapters import list_items_report

    touch(tmp_path, "v/a.mp4", "v/b.mp4")
    csv = tmp_path / "my.csv"
    csv.write_text("path,label,split,method,manipulation,Source\nv/a.mp4,real,test,,none,yt\n"
                   "v/b.mp4,fake,test,Deepfakes,faceswap,yt\nv/gone.mp4,fake,,,x,y\n")
    listing = list_items_report("generic", csv)
    a, b = sorted(listing.rows, key=lambda r: r.video_id)
    assert a.extra == {"manipulation": "none", "source": "yt", "csv_path": "v/a.mp4"}
    assert b.extra["manipulation"] == "faceswap" and b.method == "Deepfakes"
    (gone,) = listing.skipped
    assert gone.path == str(tmp_path / "v" / "gone.mp4") and gone.reason == "my.csv line 4: file does not exist"
    import os

    os.symlink("l2.mp4", tmp_path / "v" / "l1.mp4")
    os.symlink("l1.mp4", tmp_path / "v" / "l2.mp4")
    os.symlink("a.mp4", tmp_path / "v" / "link.mp4")
    csv.write_text("path,label\nv/l1.mp4,real\nv/link.mp4,fake\n")  # a loop is a skipped line, not a traceback
    listing = list_items_report("generic", csv)
    assert [(r.video_id, r.source) for r in listing.rows] == [("v/link", str(tmp_path / "v" / "link.mp4"))]
    assert [e.reason for e in listing.skipped] == ["my.csv line 2: symlink loop"]


def test_ffpp_reports_entries_beside_its_videos(ffpp_root, tmp_path):
    import os

    from unmask.data.adapters import list_items_report

    for sub in ("original_sequences", "manipulated_sequences", "splits"):
        os.symlink(ffpp_root / sub, tmp_path / sub) if sub != "original_sequences" else None
    vids = tmp_path / "original_sequences" / "youtube" / "c40" / "videos"
    vids.mkdir(parents=True)
    for f in sorted((ffpp_root / "original_sequences/youtube/c40/videos").iterdir()):
        os.symlink(f, vids / f.name)  # valid links: followed
    os.symlink(vids / "999.mp4", vids / "dangling.mp4")
    (vids / "list.txt").write_text("x")
    listing = list_items_report("ffpp", tmp_path, compression="c40")
    assert len(listing.rows) == 50
    assert [(os.path.basename(e.path), e.reason.split(" (")[0]) for e in listing.skipped] == [
        ("dangling.mp4", "broken symlink"), ("list.txt", "unsupported file type '.txt'")]


# ------------------------------------------------------------------------------------ registry contract


def test_registry_lists_every_benchmark():
    assert adapter_names() == sorted(
        ["ffpp", "celebdf", "dfdc", "dfdcp", "ffiw", "wilddeepfake", "deeperforensics", "generic"]
    )
    with pytest.raises(UnmaskError, match="unknown dataset 'ff\\+\\+'"):
        list_items("ff++", ".")


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_every_adapter_rejects_an_empty_or_missing_root_in_one_line(name, tmp_path):
    with pytest.raises(UnmaskError) as err:
        list_items(name, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{name}: ") and str(tmp_path) in msg
    (tmp_path / "unrelated").mkdir()
    touch(tmp_path, "unrelated/readme.txt")
    with pytest.raises(UnmaskError):
        list_items(name, tmp_path)
    with pytest.raises(UnmaskError, match="does not exist"):
        list_items(name, tmp_path / "nope")
    with pytest.raises(UnmaskError, match="unknown option 'bogus'"):
        list_items(name, tmp_path, bogus=1)
