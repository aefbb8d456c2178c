"""`unmask prle-maps` (paper 001 sec. III-B): map sidecars, a real run with a tiny random-init zoo of three
archs on a small store, resumability, shards, failures, the gallery, and the Grad-CAM target option."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unmask.cli import main
from unmask.data.map_sidecars import (crop_shape, load_maps, map_set_members, sidecar_path, write_map_manifest,
                                      write_member_map)
from unmask.data.store import PreparedStore
from unmask.errors import UnmaskError

ZOO = {  # member name -> (timm backbone, extra timm options): three families, all small at 64 px
    "lite0": ("tf_efficientnet_lite0", {}),
    "r10": ("resnet10t", {}),
    "vgg": ("vgg11", {"mlp_ratio": 1 / 64}),  # VGG's 4096-wide pre-logits MLP narrowed: 11 M parameters, not 133 M
}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _write_store(root: Path, astronaut: np.ndarray) -> Path:
    """A real prepared store (store.json + item records + PNG crops) of the astronaut: 2 real and 2 fake items, 2
    frames each, crops of different, non-square sizes (the map geometry must follow each crop)."""
    from unmask.data.faces import build_face_detector
    from unmask.data.store import encode_png
    from unmask.io import atomic_write_bytes, atomic_write_json

    face = build_face_detector("dlib_hog").detect(astronaut)[0]
    x0, y0, x1, y1 = face.box
    atomic_write_json(root / "store.json", {"format": "unmask-prepared", "version": 1, "options": {}})
    windows = [(40, 10, 420, 400), (60, 0, 400, 460), (20, 30, 470, 380), (80, 20, 360, 420)]
    for n, (label, method) in enumerate([(0, "real"), (0, "real"), (1, "Deepfakes"), (1, "FaceSwap")]):
        key = f"generic/{method}/na/v{n}"
        frames = []
        for fi in range(2):
            wx0, wy0, wx1, wy1 = windows[(n + fi) % len(windows)]
            crop = np.ascontiguousarray(astronaut[wy0:wy1, wx0:wx1])
            if fi:
                crop = np.ascontiguousarray(crop[:, ::-1])  # a second frame that differs
            rel = f"crops/{key}/{fi:06d}_0.png"
            atomic_write_bytes(root / rel, encode_png(crop))
            box = [x0 - wx0, y0 - wy0, x1 - wx0, y1 - wy0]
            if fi:
                w = crop.shape[1]
                box = [w - box[2], box[1], w - box[0], box[3]]
            frames.append({"index": fi, "faces": [{
                "face_index": 0, "crop": rel, "mask": None, "score": 1.0, "box": [float(v) for v in box],
                "landmarks": np.zeros((81, 2)).tolist(), "frame_box": [float(v) for v in face.box],
                "crop_origin": [wx0, wy0]}]})
        row = {"dataset": "generic", "video_id": f"v{n}", "label": label, "method": method, "source": f"/x/v{n}.mp4",
               "split": "train", "compression": None, "identity": None, "mask_source": None, "extra": {}}
        atomic_write_json(root / "items" / f"{key}.json", {"format_version": 1, "key": key, "row": row,
                                                             "frames": frames, "status": "ok", "outcome": "ok"})
    return root


@pytest.fixture(scope="module")
def zoo_runs(tmp_path_factory) -> dict[str, Path]:
    from unmask.models import build_detector, save_checkpoint

    out = tmp_path_factory.mktemp("zoo")
    runs = {}
    for i, (name, (backbone, opts)) in enumerate(ZOO.items()):
        torch.manual_seed(i)
        det = build_detector(backbone, pretrained=None, input_size=64, **opts).eval()
        runs[name] = save_checkpoint(out / name / "best.pt", det).parent
    return runs


@pytest.fixture()
def store(tmp_path, astronaut_rgb) -> Path:
    return _write_store(tmp_path / "store", astronaut_rgb)


def _zoo_args(zoo_runs, names=None):
    return [f"{n}={zoo_runs[n]}" for n in (names or ZOO)]


def _summary(store: Path, map_set: str = "zoo", shard: str = "0-of-1") -> dict:
    return json.loads((store / "maps" / map_set / "summaries" / f"shard-{shard}.json").read_text())


# --- sidecars -------------------------------------------------------------------------------------------


def test_sidecar_round_trip_geometry_and_layout(store):
    faces = PreparedStore(store).faces()
    rec = faces[3]
    import cv2

    h, w = crop_shape(rec)
    assert (h, w) == cv2.imread(rec.crop_path).shape[:2] and h != w  # from the PNG header, no decode
    rng = np.random.default_rng(0)
    cam = rng.random((h, w)).astype(np.float32)
    write_map_manifest(store, "s", ["a", "b"], [{"name": "a"}, {"name": "b"}], "logodds")
    p = write_member_map(store, "s", rec, "a", cam)
    write_member_map(store, "s", rec, "b", 1.0 - cam)
    # the layout mirrors the crop path: crops/<key>/<frame>_<face>.png -> maps/<set>/<member>/<key>/<frame>_<face>.png
    rel = Path(rec.crop_path).relative_to(store)
    assert p == store / "maps" / "s" / "a" / rel.relative_to("crops")
    assert p == sidecar_path(store, "s", rec, "a")
    raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.shape == (h, w)  # lossless single-channel 8-bit at the crop's geometry
    maps = load_maps(store, "s", rec)
    assert maps.shape == (2, h, w) and maps.dtype == np.float32
    assert np.abs(maps[0] - cam).max() <= 0.5 / 255 + 1e-6  # round(255 v) / 255
    assert np.abs(maps[1] - (1 - cam)).max() <= 0.5 / 255 + 1e-6
    assert map_set_members(store, "s") == ["a", "b"]
    assert load_maps(store, "s", rec, ["b"]).shape == (1, h, w)
    # wrong geometry, missing map, unknown set, unclean names: one-line errors
    with pytest.raises(UnmaskError, match="crop's geometry"):
        write_member_map(store, "s", rec, "a", cam[:, :-1])
    with pytest.raises(UnmaskError, match="run `unmask prle-maps"):
        load_maps(store, "s", faces[0])
    with pytest.raises(UnmaskError, match="no PRLE map set 'other'.*map sets in this store: s"):
        map_set_members(store, "other")
    with pytest.raises(UnmaskError, match="not a clean name"):
        sidecar_path(store, "s", rec, "../x")
    with pytest.raises(UnmaskError, match="another zoo"):
        write_map_manifest(store, "s", ["a", "c"], [{}, {}], "logodds")


# --- the command ----------------------------------------------------------------------------------------


def test_prle_maps_real_run_three_archs_resume_and_gallery(store, zoo_runs, tmp_path, capsys):
    """A real run: each member's map of each training face equals Grad-CAM of that member on the face's 20% margin
    window, pasted back at the crop geometry; a rerun writes nothing; a deleted map is the only one redone."""
    from unmask.data.crops import margin_crop
    from unmask.data.store import load_rgb
    from unmask.evaluate.scoring import to_batch
    from unmask.explain.gradcam import gradcam_maps
    from unmask.models import load_detector

    gallery = tmp_path / "g.png"
    rc = main(["prle-maps", "--zoo", *_zoo_args(zoo_runs), "--data", str(store), "--device", "cpu", "--no-progress",
               "--gallery", str(gallery), "--gallery-count", "4", "--batch-size", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    faces = PreparedStore(store).faces(split="train")
    assert len(faces) == 8
    s = _summary(store)
    assert s["written_faces"] == 8 and s["maps_written"] == 24 and s["failed_faces"] == 0 and s["already_done"] == 0
    man = json.loads((store / "maps" / "zoo" / "manifest.json").read_text())
    assert man["members"] == list(ZOO) and man["cam_target"] == "logodds"
    assert [z["cam_layer"] for z in man["zoo"]] == ["net.bn2", "net.layer4", "net.features.19"]  # VGG: its last conv ReLU
    nonzero = 0
    for i, rec in enumerate(faces):
        maps = load_maps(store, "zoo", rec)
        img = load_rgb(rec.crop_path)
        assert maps.shape[1:] == img.shape[:2]
        assert maps.min() >= 0 and maps.max() <= 1
        x0, y0, x1, y1 = margin_crop(img, rec.box, None, 0.2).window
        outside = np.ones(img.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert not maps[:, outside].any()  # 0 outside the window the zoo saw
        nonzero += int((maps.reshape(3, -1).max(1) > 0).sum())
        if i in (0, 5):  # recompute two faces independently: Grad-CAM on the window, resized into it
            import cv2

            for k, name in enumerate(ZOO):
                det, _ = load_detector(zoo_runs[name])
                cam = gradcam_maps(det, to_batch([img[y0:y1, x0:x1]], 64))[0][0]
                ref = cv2.resize(cam, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
                assert np.abs(maps[k, y0:y1, x0:x1] - ref).max() <= 0.5 / 255 + 1e-4
    assert nonzero >= 8  # the random-init members do have evidence somewhere (an all-zero map is legal, not all)
    # the gallery: header + 4 rows; columns face | 3 members | average | neighbour | 10 alphas, 112 px tiles
    import cv2

    g = cv2.imread(str(gallery))
    assert g.shape[1] == 112 * (1 + 3 + 2 + 10) and g.shape[0] == 16 + 4 * (112 + 2)
    # resume: nothing to do, no file rewritten
    stamps = {p: p.stat().st_mtime_ns for p in (store / "maps" / "zoo").rglob("*.png")}
    assert len(stamps) == 24
    assert main(["prle-maps", "--zoo", *_zoo_args(zoo_runs), "--data", str(store), "--device", "cpu",
                 "--no-progress"]) == 0
    s = _summary(store)
    assert s["already_done"] == 8 and s["maps_written"] == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # one deleted map: exactly that one is made again
    victim = sidecar_path(store, "zoo", faces[2], "vgg")
    victim.unlink()
    assert main(["prle-maps", "--zoo", *_zoo_args(zoo_runs), "--data", str(store), "--device", "cpu",
                 "--no-progress"]) == 0
    s = _summary(store)
    assert s["already_done"] == 7 and s["written_faces"] == 1 and s["maps_written"] == 1 and victim.is_file()
    # another zoo into the same map set is refused in one line
    capsys.readouterr()
    assert main(["prle-maps", "--zoo", *_zoo_args(zoo_runs, ["lite0"]), "--data", str(store), "--device", "cpu",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another zoo" in err[0]
    assert main(["prle-maps", "--zoo", *_zoo_args(zoo_runs), "--data", str(store), "--split", "test"]) == 1
    assert "no stored faces in split(s) test" in capsys.readouterr().err


def test_shards_partition_the_faces_and_failures_are_recorded(store, zoo_runs, capsys):
    faces = PreparedStore(store).faces(split="train")
    bad = faces[1]
    Path(bad.crop_path).write_bytes(b"not a png")  # one unreadable crop
    args = ["prle-maps", "--zoo", *_zoo_args(zoo_runs, ["lite0", "r10"]), "--data", str(store), "--device", "cpu",
            "--no-progress", "--map-set", "two"]
    assert main([*args, "--shard", "0/2"]) == 0
    assert main([*args, "--shard", "1/2"]) == 0
    s0, s1 = _summary(store, "two", "0-of-2"), _summary(store, "two", "1-of-2")
    assert s0["faces"] + s1["faces"] == 8 and s0["faces"] and s1["faces"]
    assert s0["failed_faces"] + s1["failed_faces"] == 1
    fails = s0["failures"] + s1["failures"]
    assert len(fails) == 1 and fails[0]["crop"] == bad.crop_path and "cannot read stored crop" in fails[0]["reason"]
    assert "failed:" in capsys.readouterr().out
    for rec in faces:
        assert all(sidecar_path(store, "two", rec, m).is_file() for m in ("lite0", "r10")) == (rec is not bad)


def test_prle_maps_on_the_ffpp_sample(prepared_ffpp, zoo_runs, tmp_path):
    """The same command on real FF++ crops (two items of the shared sample's train split, copied: the cached test
    store is shared and must not be written to)."""
    src = PreparedStore(prepared_ffpp)
    train = [o for o in src.items() if o.row.split == "train"]
    pick = [next(o for o in train if o.row.label == 0), next(o for o in train if o.row.label == 1)]
    dst = tmp_path / "ffpp"
    dst.mkdir()
    shutil.copy(prepared_ffpp / "store.json", dst / "store.json")
    for o in pick:
        (dst / "items" / o.key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(prepared_ffpp / "items" / f"{o.key}.json", dst / "items" / f"{o.key}.json")
        shutil.copytree(prepared_ffpp / "crops" / o.key, dst / "crops" / o.key)
    assert main(["prle-maps", "--zoo", *_zoo_args(zoo_runs, ["lite0", "vgg"]), "--data", str(dst), "--device",
                 "cpu", "--no-progress", "--cam-target", "predicted"]) == 0
    faces = PreparedStore(dst).faces(split="train")
    assert len(faces) == 8
    for rec in faces:
        assert load_maps(dst, "zoo", rec).shape == (2, *crop_shape(rec))
    assert json.loads((dst / "maps" / "zoo" / "manifest.json").read_text())["cam_target"] == "predicted"


def test_help_examples_parse():
    from unmask.cli import build_parser, parse_command

    _, parser = build_parser("prle-maps")
    text = parser.format_help().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("unmask prle-maps")]
    assert len(lines) == 3
    # and the README / docs lines (tests/test_doc_commands.py's pattern does not match a hyphenated command name)
    import shlex

    repo = Path(__file__).resolve().parents[1]
    for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for raw in doc.read_text(encoding="utf-8").splitlines():
            if raw.strip().startswith("unmask prle-maps "):
                lines.append(raw.strip())
    assert len(lines) >= 5
    for ln in lines:
        lexer = shlex.shlex(ln, posix=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        tokens = [t for t in lexer if t != "..."]
        try:
            parse_command(parser, tokens[2:])
        except SystemExit:
            pytest.fail(f"`{ln}` does not parse")


# --- Grad-CAM targets -----------------------------------------------------------------------------------


def test_cam_targets_fake_prob_equals_logodds_and_predicted_follows_the_call(astronaut_rgb):
    """Eq. 3 differentiates the fake score y^ = sigmoid(log-odds): the normalized map equals the log-odds map.
    ``predicted`` is the fake log-odds map for a face called fake and the real one for a face called real."""
    from unmask.data.records import REAL
    from unmask.evaluate.scoring import to_batch
    from unmask.explain.gradcam import gradcam_maps
    from unmask.models import build_detector

    torch.manual_seed(3)
    det = build_detector("resnet10t", pretrained=None, input_size=64).eval()
    crops = [astronaut_rgb[0:256, 0:256], astronaut_rgb[100:400, 150:450], astronaut_rgb[256:, 256:],
             astronaut_rgb[::2, ::2]]
    x = to_batch(crops, 64)
    lo, probs = gradcam_maps(det, x)
    fp, _ = gradcam_maps(det, x, cam_target="fake_prob")
    assert np.abs(lo - fp).max() < 1e-3
    pred, _ = gradcam_maps(det, x, cam_target="predicted")
    real, _ = gradcam_maps(det, x, target=REAL)
    for i, p in enumerate(probs):
        ref = lo[i] if p > 0.5 else real[i]
        assert np.abs(pred[i] - ref).max() < 1e-4
    fl, _ = gradcam_maps(det, x, cam_target="fake_logit")
    assert fl.shape == lo.shape and fl.min() >= 0
    with pytest.raises(UnmaskError, match="unknown Grad-CAM target"):
        gradcam_maps(det, x, cam_target="nope")


# --- zoo configs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("member,backbone", [("xception", "xception"), ("efficientnet", "efficientnet_b4"),
                                             ("vgg", "vgg16")])
def test_zoo_configs_are_the_papers_zoo_and_their_tiny_profiles(member, backbone):
    """Sec. IV-B: Xception, EfficientNet, VGG trained with the supervised baseline on FF++, class-balanced (issue 16);
    sec. IV-A: 256 px; sec. IV-B: batch 64. The tiny profiles run the same method and sampler at toy scale."""
    from unmask.train.config import load_train_config

    root = Path(__file__).resolve().parents[1] / "configs"
    full = load_train_config(root / "prle" / f"zoo_{member}.yaml")
    assert full.paper.startswith("001 sec. IV-B model zoo")
    assert (full.method.name, full.model.backbone, full.model.input_size, full.batch_size) == ("baseline", backbone,
                                                                                                256, 64)
    assert full.data.balanced and full.data.dataset == "ffpp" and full.data.train_split == "train"
    tiny = load_train_config(root / "tiny" / f"zoo_{member}.yaml")
    assert tiny.paper.startswith("tiny profile of 001 sec. IV-B") and tiny.method.name == "baseline"
    assert tiny.data.balanced and tiny.epochs * tiny.steps_per_epoch <= 10


def test_rewriting_a_member_map_drops_that_faces_cached_fusions(store):
    """prle caches each face's fused map; a member map written again (prle-maps after a deleted map, a new
    zoo run into the same set) must not be fused from the cache's stale copy."""
    from unmask.methods.prle import PRLEAugment

    faces = PreparedStore(store).faces()
    rec, other = faces[1], faces[2]
    h, w = crop_shape(rec)
    write_map_manifest(store, "fz", ["a", "b"], [{"name": "a"}, {"name": "b"}], "logodds")
    for r in (rec, other):
        hh, ww = crop_shape(r)
        write_member_map(store, "fz", r, "a", np.full((hh, ww), 0.8, np.float32))
        write_member_map(store, "fz", r, "b", np.full((hh, ww), 0.6, np.float32))
    aug = PRLEAugment(fusion="average", tau1=0.3, map_set_name="fz")
    first = aug.load_maps(store, rec)
    cached = sorted((store / "maps" / "fz" / "_fused").rglob("*.png"))
    assert len(cached) == 1 and np.allclose(first, 0.7, atol=1 / 255)
    aug.load_maps(store, other)
    assert len(sorted((store / "maps" / "fz" / "_fused").rglob("*.png"))) == 2

    write_member_map(store, "fz", rec, "a", np.full((h, w), 0.2, np.float32))
    left = sorted((store / "maps" / "fz" / "_fused").rglob("*.png"))
    assert len(left) == 1 and cached[0] not in left  # only this face's cache went
    again = aug.load_maps(store, rec)
    expected = aug.fuse(load_maps(store, "fz", rec))
    assert np.allclose(again[0], expected, atol=1 / 255) and not np.allclose(again, first, atol=0.05)
