"""Training pairs (PairDataset + pair_collate) and the `unmask synth` gallery, on the embedded face and on the
prepared FF++ sample."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch

from unmask.cli import main as cli_main
from unmask.data.records import FaceRecord
from unmask.errors import UnmaskError
from unmask.synthesis import PairDataset, build_synthesizer, pair_collate
from unmask.train.data import to_float_images

SIZE = 96  # small training crops keep these tests fast; the pipeline is size-agnostic


@pytest.fixture(scope="module")
def astro_faces(astronaut_rgb):
    """The astronaut as stored faces (prepare's storage crop), and a loader that serves it from memory."""
    from unmask.data.crops import storage_crop
    from unmask.data.faces import build_face_detector

    f = build_face_detector("dlib_hog").detect(astronaut_rgb)[0]
    sc = storage_crop(astronaut_rgb, f.box, f.landmarks81)

    def rec(i: int) -> FaceRecord:
        return FaceRecord(item_key=f"astro{i}", dataset="embedded", video_id="astronaut", label=0, method="real",
                          split="train", frame_index=i, face_index=0, crop_path=f"astro{i}", box=sc.box,
                          landmarks=sc.landmarks, score=1.0, frame_box=f.box, crop_origin=sc.origin)

    return [rec(i) for i in range(6)], (lambda r: sc.image)


def _ds(faces_loader, recipe="sbi", **kw):
    faces, loader = faces_loader
    kw.setdefault("image_size", SIZE)
    return PairDataset(faces, build_synthesizer(recipe) if isinstance(recipe, str) else recipe, loader=loader, **kw)


def test_items_and_collate_follow_the_contract(astro_faces):
    ds = _ds(astro_faces, "bbmg")
    batch = pair_collate([ds[i] for i in range(4)])
    assert batch["image"].shape == (8, 3, SIZE, SIZE) and batch["image"].dtype == torch.uint8  # uint8 transport
    p = ds.pair(0)  # the batch holds the pair's bytes, channels first
    assert torch.equal(batch["image"][0], torch.from_numpy(p["real"]).permute(2, 0, 1))
    assert torch.equal(batch["image"][4], torch.from_numpy(p["fake"]).permute(2, 0, 1))
    x = to_float_images(batch)["image"]  # what the training loop hands the method
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x, batch["image"].float() / 255.0) and to_float_images({"image": x})["image"] is x
    assert batch["label"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert batch["mask"].shape == (8, 1, SIZE, SIZE)
    assert float(batch["mask"][:4].abs().sum()) == 0.0 and float(batch["mask"][4:].amax()) > 0.2
    assert batch["index"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_real_and_fake_share_the_same_window(astro_faces):
    """Without final augmentation and with source-only transforms, the fake equals the real wherever mask = 0."""
    synth = build_synthesizer("sbi", overrides=["transforms.object=source"])
    ds = _ds(astro_faces, synth, augment=False)
    for i in range(3):
        p = ds.pair(i)
        out = p["mask"] == 0
        assert out.mean() > 0.1
        assert (p["fake"][out] == p["real"][out]).all()
        assert p["real"].shape == (SIZE, SIZE, 3)


def test_seed_epoch_index_determine_the_sample(astro_faces):
    a, b = _ds(astro_faces, seed=3), _ds(astro_faces, seed=3)
    x, y = a[2], b[2]
    assert torch.equal(x["real"], y["real"]) and torch.equal(x["fake"], y["fake"]) and torch.equal(x["mask"], y["mask"])
    assert not torch.equal(a[2]["fake"], a[3]["fake"])  # index matters (same face, different draws)
    a.set_epoch(1)
    assert not torch.equal(a[2]["fake"], x["fake"])  # epoch matters
    a.set_epoch(0)
    assert torch.equal(a[2]["fake"], x["fake"])  # ... and going back reproduces it (resume)
    assert not torch.equal(_ds(astro_faces, seed=4)[2]["fake"], x["fake"])  # seed matters


def test_dataloader_workers_give_the_same_batches(astro_faces):
    ds = _ds(astro_faces, seed=1)
    kw = dict(batch_size=3, collate_fn=pair_collate, shuffle=False)
    main = [b["image"] for b in torch.utils.data.DataLoader(ds, num_workers=0, **kw)]
    work = [b["image"] for b in torch.utils.data.DataLoader(ds, num_workers=2, **kw)]
    assert all(torch.equal(m, w) for m, w in zip(main, work)) and len(main) == len(work) == 2


def test_one_final_augmentation_draw_per_pair(astro_faces):
    faces, loader = astro_faces
    ds = _ds((faces * 2, loader), seed=0)
    recs = [ds.pair(i)["record"] for i in range(12)]
    assert all(isinstance(r["final"], list) for r in recs) and any(r["final"] for r in recs)
    assert "final_real" not in recs[0] and "final_fake" not in recs[0]
    assert any(r.get("hflip") for r in recs) and not all(r.get("hflip") for r in recs)
    json.dumps(recs)


def test_degenerate_faces_are_left_out_with_a_warning(astro_faces):
    faces, loader = astro_faces
    bad = FaceRecord(**{**faces[0].__dict__, "crop_path": "bad", "landmarks": np.full((81, 2), 50.0, np.float32)})
    with pytest.warns(UserWarning, match="left out 1 of 3"):
        ds = PairDataset([faces[0], bad, faces[1]], build_synthesizer("sbi"), image_size=SIZE, loader=loader)
    assert len(ds) == 2 and ds.skipped[0][0] == "bad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UnmaskError, match="no usable faces"):
            PairDataset([bad], build_synthesizer("sbi"), image_size=SIZE, loader=loader)


def test_unreadable_crop_is_an_error_naming_it(astro_faces, tmp_path):
    faces, _ = astro_faces
    missing = FaceRecord(**{**faces[0].__dict__, "crop_path": str(tmp_path / "gone.png")})
    ds = PairDataset([missing], build_synthesizer("sbi"), image_size=SIZE)
    with pytest.raises(UnmaskError, match="gone.png"):
        ds[0]


# --- on the prepared FF++ sample ----------------------------------------------------------------------


def test_pairs_from_the_prepared_store_for_every_recipe(prepared_ffpp):
    from unmask.data.store import PreparedStore

    faces = PreparedStore(prepared_ffpp).faces(split="train", labels=[0])
    assert len({f.video_id for f in faces}) >= 2
    for recipe in ("sbi", "bbmg", "xray_bi"):
        ds = PairDataset(faces, build_synthesizer(recipe), image_size=SIZE, seed=0)
        batch = pair_collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // 3))])
        assert batch["image"].shape[1:] == (3, SIZE, SIZE)
        assert float(batch["mask"][batch["label"] == 1].amax()) > 0.2
        if recipe == "xray_bi":
            for i in range(3):
                r = ds.pair(i)["record"]
                assert r["donor"]["identity"] != (ds.faces[i].identity or ds.faces[i].video_id)


def test_synth_command_gallery_on_the_store(prepared_ffpp, tmp_path):
    out = tmp_path / "bbmg.png"
    assert cli_main(["synth", "--recipe", "xray_bi", "--store", str(prepared_ffpp), "--n", "4", "--size", "128",
                     "--tile", "96", "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 2 * 3 * 96 + 16


# --- the command on the embedded face -------------------------------------------------------------


def test_synth_command_runs_on_the_embedded_face(tmp_path, capsys):
    out = tmp_path / "g.png"
    assert cli_main(["synth", "--recipe", "bbmg", "--n", "3", "--size", "128", "--tile", "64", "--columns", "1",
                     "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img.shape[1] == 3 * 64 and img.shape[0] > 3 * 64
    assert "3 samples" in capsys.readouterr().out
    # Same seed, same bytes.
    out2 = tmp_path / "g2.png"
    cli_main(["synth", "--recipe", "bbmg", "--n", "3", "--size", "128", "--tile", "64", "--columns", "1",
              "--out", str(out2)])
    assert out.read_bytes() == out2.read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--recipe", "xray_bi"], "another identity"),
    (["--recipe", "nope"], "unknown synthesis recipe"),
    (["--set", "blur.op=mean"], "blur.op"),
    (["--store", "/nonexistent/store"], "not found"),
])
def test_synth_command_errors_are_one_line(tmp_path, capsys, args, message):
    assert cli_main(["synth", *args, "--n", "1", "--size", "96", "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("unmask synth: error:") and message in err and "\n" not in err
    assert not (tmp_path / "x.png").exists()
