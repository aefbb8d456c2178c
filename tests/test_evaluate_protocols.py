"""Evaluating a prepared store, protocols and their tables, and distortions on stored crops."""

import json

import numpy as np
import pytest
import torch

from unmask.evaluate.distortions import DistortionSpec, build_distortion
from unmask.evaluate.protocols import EvalSettings, ProtocolConfig, TestSet, evaluate_set, load_protocol, protocol_names, run_protocol

METHODS = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]


@pytest.fixture(scope="module")
def tiny():
    from unmask.models import build_detector

    torch.manual_seed(0)
    det = build_detector("resnet18", pretrained=None, input_size=64).eval()
    return det, dict(det.meta(), path=None, untrained=True, note="random init (test)")


def _settings(**kw):
    s = EvalSettings(n_boot=20)
    for k, v in kw.items():
        setattr(s.aggregation, k, v)
    return s


def test_evaluate_store_video_and_frame_level(prepared_ffpp, tiny, tmp_path):
    from unmask.data.store import PreparedStore

    det, meta = tiny
    ts = TestSet(name="FF++ val", path=str(prepared_ffpp), splits=["val"])
    res = evaluate_set(det, meta, ts, _settings(), out_dir=tmp_path / "v")
    items = [o for o in PreparedStore(prepared_ffpp).items() if o.row.split == "val"]
    assert len(res.units) == len(items) == 20
    assert list(res.table) == ["all"] + METHODS
    for m in METHODS:
        assert (res.table[m]["n_real"], res.table[m]["n_fake"]) == (4, 4)
    assert {p.name for p in (tmp_path / "v").iterdir()} >= {"scores.csv", "metrics.json", "metrics.md", "roc.png"}
    meta_out = json.loads((tmp_path / "v" / "metrics.json").read_text())["meta"]
    assert meta_out["level"] == "video" and meta_out["no_face_items"] == 0 and "random init (test)" in meta_out["notes"]
    # a second run with the same inputs reuses the report; another level does not
    again = evaluate_set(det, meta, ts, _settings(), out_dir=tmp_path / "v")
    assert again.reused and again.table["all"]["auc"] == pytest.approx(res.table["all"]["auc"])
    frames = evaluate_set(det, meta, ts, _settings(level="frame"), out_dir=tmp_path / "f")
    n_frames = sum(o.frames_with_face for o in items)
    assert len(frames.units) == n_frames
    # video score = mean of that video's frame scores
    by_item = {}
    for u in frames.units:
        by_item.setdefault(u.item, []).append(u.score)
    for u in res.units:
        assert u.score == pytest.approx(np.mean(by_item[u.item]), abs=1e-9)


def test_methods_filter_keeps_reals(prepared_ffpp, tiny):
    det, meta = tiny
    ts = TestSet(name="df", path=str(prepared_ffpp), splits=["val"], methods=["Deepfakes"])
    res = evaluate_set(det, meta, ts, _settings())
    assert list(res.table) == ["all", "Deepfakes"] and res.table["all"]["n_real"] == 4


def _frame_and_face(ffpp_root):
    from unmask.data.faces import build_face_detector
    from unmask.data.media import sample_video_frames

    frame = sample_video_frames(ffpp_root / "original_sequences/youtube/c40/videos/183.mp4", 1).frames[0][1]
    face = build_face_detector("dlib_hog").detect(frame)[0]
    return frame, face


@pytest.mark.parametrize("kind,params", [("resize", {"s": 128}), ("gaussian_blur", {"k": 5}), ("jpeg", {"q": 50})])
def test_distorting_a_stored_crop_matches_distorting_the_frame(ffpp_root, kind, params):
    """A stored crop distorted 'as if in the frame' must match the same window of the distorted frame: almost
    exactly when the store kept full resolution, and far better than no distortion when it downscaled."""
    import cv2

    from unmask.data.crops import storage_crop
    from unmask.evaluate.scoring import distort_stored_crop

    frame, face = _frame_and_face(ffpp_root)
    h, w = frame.shape[:2]
    window_of_distorted = build_distortion(kind, **params)(frame)
    for max_side, bound in ((2048, 0.1), (384, None)):
        stored = storage_crop(frame, face.box, face.landmarks81, max_side=max_side)
        x0, y0, x1, y1 = stored.window
        target = window_of_distorted[y0:y1, x0:x1]
        if stored.scale < 1:
            target = cv2.resize(target, stored.image.shape[1::-1], interpolation=cv2.INTER_AREA)
        got = distort_stored_crop(stored.image, kind, params, stored.scale, stored.origin, (w, h))
        assert got.shape == stored.image.shape
        err = np.abs(got.astype(float) - target).mean()
        base = np.abs(stored.image.astype(float) - target).mean()
        if bound is not None:
            assert stored.scale == 1 and err < bound, err
        else:
            assert stored.scale < 0.8 and err < 0.5 * base, (err, base)  # downscaled by the store


def test_robustness_protocol_table(prepared_ffpp, tiny, tmp_path):
    det, meta = tiny
    cfg = ProtocolConfig(name="rob", kind="robustness", paper_tables=["000 Table 10"], eval=_settings(),
                         test_sets=[TestSet(name="FF++", path=str(prepared_ffpp), splits=["val"]),
                                    TestSet(name="CDF", path="not_prepared_here")],
                         distortions=[DistortionSpec("Raw", "raw", {}), DistortionSpec("GaussianBlur(k=5)", "gaussian_blur", {"k": 5})])
    res = run_protocol(cfg, {"tiny": (det, meta)}, tmp_path, progress=False, log=lambda m: None)
    assert res.columns == ["FF++"] and res.skipped == ["CDF"]
    raw, blur = res.grids["auc"]["Raw"]["FF++"], res.grids["auc"]["GaussianBlur(k=5)"]["FF++"]
    assert raw is not None and blur is not None
    raw_scores = (tmp_path / "tiny" / "Raw" / "FF++" / "scores.csv").read_text()
    blur_scores = (tmp_path / "tiny" / "GaussianBlur_k=5" / "FF++" / "scores.csv").read_text()
    assert raw_scores != blur_scores  # the distortion reached the model
    md = (tmp_path / "table.md").read_text()
    assert "Layout of: 000 Table 10." in md and "| Operation | FF++ |" in md and "GaussianBlur(k=5)" in md
    assert "Not present (skipped): CDF (not_prepared_here)" in md
    assert json.loads((tmp_path / "table.json").read_text())["grids"]["auc"]["Raw"]["FF++"] == pytest.approx(raw)


def test_cross_manipulation_columns_are_the_per_method_aucs(prepared_ffpp, tiny, tmp_path):
    det, meta = tiny
    cfg = ProtocolConfig(name="cm", kind="cross_manipulation", eval=_settings(),
                         test_sets=[TestSet(name="FF++", path=str(prepared_ffpp), splits=["val"])],
                         average_excludes=["FF++"])
    res = run_protocol(cfg, {"DF": (det, meta)}, tmp_path, progress=False, log=lambda m: None)
    assert res.columns == ["DF", "F2F", "FS", "NT", "FF++"]
    per = json.loads((tmp_path / "DF" / "FF++" / "metrics.json").read_text())["metrics"]
    assert res.grids["auc"]["DF"]["F2F"] == pytest.approx(per["Face2Face"]["auc"])
    assert res.grids["auc"]["DF"]["FF++"] == pytest.approx(per["all"]["auc"])
    row = [r for r in res.markdown.splitlines() if r.startswith("| DF |")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    avg = np.mean([res.grids["auc"]["DF"][c] for c in ("DF", "F2F", "FS", "NT")])
    assert cells[-1] == f"{100 * avg:.2f}"  # Avg over the four methods, FF++ left out


def test_every_protocol_config_loads_and_names_a_paper_table():
    names = protocol_names()
    assert {"cross_dataset", "cross_manipulation", "robustness"} <= set(names)
    for n in names:
        cfg = load_protocol(n)
        assert cfg.paper_tables and cfg.test_sets, n
        for d in cfg.distortions:
            build_distortion(d.kind, **d.params)
    t10 = load_protocol("robustness")
    assert [d.name for d in t10.distortions] == ["Raw", "Resize(s=128)", "Resize(s=256)", "GaussianBlur(k=3)",
                                                 "GaussianBlur(k=5)", "JPEGCompress(q=50)", "JPEGCompress(q=100)"]


def test_protocol_command_on_a_yaml_file(prepared_ffpp, tiny, tmp_path, capsys):
    from unmask.cli import main
    from unmask.evaluate.protocols import PROTOCOL_DIR
    from unmask.models import save_checkpoint

    ck = save_checkpoint(tmp_path / "run" / "best.pt", tiny[0])
    y = tmp_path / "p.yaml"
    y.write_text(f"base: {PROTOCOL_DIR / 'robustness.yaml'}\nname: mini\n"
                 "distortions:\n  - {name: Raw, kind: raw}\n  - {name: JPEG(q=50), kind: jpeg, params: {q: 50}}\n")
    rc = main(["protocol", str(y), "--checkpoint", f"r18={ck}", "--set", f"FF++={prepared_ffpp}", "--only", "FF++",
               "--split", "val", "--n-boot", "10", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "## mini: robustness" in out and "| r18/Raw/FF++ |" in out and "| Raw |" in out and "| JPEG(q=50) |" in out
    assert (tmp_path / "run" / "protocols" / "mini" / "table.md").is_file()  # default: beside the checkpoint


def test_evaluate_command_on_raw_media_with_labels_csv(ffpp_root, tiny, tmp_path, capsys):
    """--data labels.csv: videos decoded and faces detected on the fly (no prepared store)."""
    from unmask.cli import main
    from unmask.models import save_checkpoint

    ck = save_checkpoint(tmp_path / "run" / "best.pt", tiny[0])
    vids = ffpp_root / "original_sequences/youtube/c40/videos"
    fakes = ffpp_root / "manipulated_sequences/Deepfakes/c40/videos"
    (tmp_path / "labels.csv").write_text(
        "path,label,method\n"
        f"{vids / '183.mp4'},real,\n{vids / '253.mp4'},0,\n{fakes / '183_253.mp4'},fake,Deepfakes\n"
        f"{fakes / '253_183.mp4'},1,Deepfakes\n{tmp_path / 'broken.mp4'},1,Deepfakes\nmissing/gone.mp4,0,\n")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    rc = main(["evaluate", "--checkpoint", str(ck), "--data", str(tmp_path / "labels.csv"), "--frames", "2",
               "--n-boot", "10", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| all | 2 | 2 |" in out and "| Deepfakes | 2 | 2 |" in out
    assert "1 items failed and are not in the metrics" in out and "broken" in out
    import csv

    rows = list(csv.DictReader(open(tmp_path / "run" / "eval" / "labels_video" / "scores.csv")))
    assert len(rows) == 6  # 4 scored videos, then the failed one (no score, with its reason), then the missing one
    assert (rows[-1]["path"], rows[-1]["status"]) == ("missing/gone.mp4", "skipped")
    assert rows[-1]["reason"] == "labels.csv line 7: file does not exist"
    rows = rows[:-1]
    assert all(r["n_frames"] == "2" and r["frames_sampled"] == "2" for r in rows[:4])  # 2 frames per video
    assert [r["path"] for r in rows[:4]] == sorted([str(vids / "183.mp4"), str(vids / "253.mp4")]) + sorted(
        [str(fakes / "183_253.mp4"), str(fakes / "253_183.mp4")])  # as written in labels.csv: joins back
    assert {r["status"] for r in rows[:4]} <= {"ok", "partial"} and rows[-1]["status"] == "failed"
    assert rows[-1]["path"] == str(tmp_path / "broken.mp4") and rows[-1]["score"] == "" and rows[-1]["reason"]


def test_evaluate_group_by_a_csv_column(ffpp_root, tmp_path, capsys):
    """--group-by any column of the user's CSV: per-group AUC with CI and counts; one-class groups say n/a."""
    import csv

    from unmask.cli import main

    orig = ffpp_root / "original_sequences/youtube/c40/videos"
    lines = ["path,label,split,method,manipulation"]
    for vid in ("183", "253", "469", "481"):
        lines.append(f"{orig / (vid + '.mp4')},real,test,,none")
    for m, kind in (("Deepfakes", "faceswap"), ("FaceSwap", "faceswap"), ("Face2Face", "reenactment"),
                    ("NeuralTextures", "reenactment")):
        for pair in ("183_253", "253_183"):
            lines.append(f"{ffpp_root / 'manipulated_sequences' / m / 'c40/videos' / (pair + '.mp4')},fake,test,{m},{kind}")
    (tmp_path / "my.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval"
    rc = main(["evaluate", "--data", str(tmp_path / "my.csv"), "--group-by", "manipulation", "--untrained", "--seed", "0",
               "--backbone", "resnet18", "--pretrained", "none", "--frames", "2", "--n-boot", "20", "--out", str(out), "-q"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "### By manipulation" in text
    table = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
             for ln in text.splitlines() if ln.startswith("| ") and ln.count("|") == 8 and "---" not in ln}
    assert table["none"][:2] == ["4", "0"] and table["none"][3] == "n/a" and "only real items" in table["none"][5]
    assert table["faceswap"][:2] == ["0", "4"] and table["faceswap"][3] == "n/a" and "only fake items" in table["faceswap"][5]
    assert "[" in table["faceswap"][4] and "(n=4+4)" in table["faceswap"][4]  # its fakes vs all 4 reals, with a CI
    data = json.loads((out / "metrics.json").read_text())
    g = data["groups"]["manipulation"]
    assert (g["reenactment"]["n_real"], g["reenactment"]["n_fake"]) == (0, 4) and g["reenactment"]["auc"] is None
    assert g["reenactment"]["vs_all_reals"]["n_real"] == 4 and g["reenactment"]["vs_all_reals"]["ci"]["auc"]
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 12 and {r["manipulation"] for r in rows} == {"none", "faceswap", "reenactment"}
    # the per-method table has one row per named method and no "fake" pseudo-row
    assert "\n| fake |" not in text and "| Deepfakes | 4 | 2 |" in text
    assert main(["evaluate", "--data", str(tmp_path / "my.csv"), "--group-by", "colour", "--untrained",
                 "--backbone", "resnet18", "--pretrained", "none", "--frames", "1", "--n-boot", "0",
                 "--out", str(tmp_path / "e2"), "-q"]) == 1
    assert "--group-by 'colour': not a column of this set" in capsys.readouterr().err


def test_no_fake_pseudo_group_without_a_method_column():
    from unmask.evaluate.aggregate import UnitScore
    from unmask.evaluate.report import per_method

    units = [UnitScore(f"r{i}", 0, "real", "generic", 0.1 * i, None, 1, 1, False) for i in range(3)]
    units += [UnitScore(f"f{i}", 1, "fake", "generic", 0.2 + 0.1 * i, None, 1, 1, False) for i in range(3)]
    assert list(per_method(units, n_boot=0)) == ["all"]
    units.append(UnitScore("x", 1, "Deepfakes", "generic", 0.9, None, 1, 1, False))
    assert list(per_method(units, n_boot=0)) == ["all", "Deepfakes", "fake"]  # a real method name: rows kept


def test_raw_media_distortion_is_applied_to_the_frame_before_detection(tiny, astronaut_rgb, tmp_path):
    from unmask.evaluate.scoring import MediaScorer
    from unmask.io import atomic_save_png

    atomic_save_png(tmp_path / "a.png", astronaut_rgb)
    jpeg10 = build_distortion("jpeg", q=10)
    clean = MediaScorer(tiny[0]).score(tmp_path / "a.png", keep_images=True)
    dirty = MediaScorer(tiny[0], distortion=jpeg10).score(tmp_path / "a.png", keep_images=True)
    assert np.array_equal(dirty.frame_images[0], jpeg10(astronaut_rgb))
    assert np.array_equal(clean.frame_images[0], astronaut_rgb)
    x0, y0, x1, y1 = dirty.frames[0].faces[0].window
    assert np.array_equal(dirty.crops[(0, 0)], jpeg10(astronaut_rgb)[y0:y1, x0:x1])
    assert dirty.fake_probability != clean.fake_probability


def test_evaluate_exits_1_when_nothing_could_be_evaluated(tmp_path, capsys):
    from unmask.cli import main

    (tmp_path / "a.mp4").write_bytes(b"\x00" * 64)
    (tmp_path / "b.mp4").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("path,label\na.mp4,real\nb.mp4,fake\n")
    rc = main(["evaluate", "--data", str(tmp_path / "labels.csv"), "--untrained", "--backbone", "resnet18",
               "--pretrained", "none", "--out", str(tmp_path / "e"), "-q"])
    assert rc == 1
    assert "nothing to evaluate: all 2 items failed (first: generic/real/na/a: " in capsys.readouterr().err
