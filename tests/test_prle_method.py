"""PRLE dynamic exploitation (paper 001 sec. III-C, Algorithm 1, eq. 9-13): method ``prle``, its loader-side
masking, the map sidecars cut like the face, the class-balanced sampler and the light augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from unmask.data.map_sidecars import write_map_manifest, write_member_map
from unmask.data.records import FAKE, REAL, FaceRecord
from unmask.methods.prle import PRLEAugment, PRLEConfig, mask_image, prle_loss, random_rectangle
from unmask.methods.prle_fusion import fuse
from unmask.train.config import load_train_config
from unmask.train.data import FaceDataset, light_augment
from unmask.train.seeding import EpochSampler

from _train_fixtures import cpu_method, one_torch_thread  # noqa: F401 (autouse)

TINY = ["method.name=prle", "model.backbone=resnet18", "model.pretrained=null", "model.input_size=32",
        "run.progress=false", "run.tensorboard=false", "data.num_workers=0", "optim.name=adam", "epochs=1",
        "batch_size=4", "steps_per_epoch=2", "run.log_every=1"]


def _blob_maps(size: int = 48) -> np.ndarray:
    """Three zoo maps: overlapping Gaussian blobs (values in [0, 1], many distinct values)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = []
    for cx, cy in ((20, 22), (24, 20), (22, 26)):
        out.append(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 6.0 ** 2)))
    return np.stack(out).astype(np.float32)


# --- eq. 9-12 -------------------------------------------------------------------------------------------------


def test_alpha_one_masks_exactly_the_binary_mask_and_alpha_near_zero_masks_nothing():
    maps = _blob_maps()
    aug = PRLEAugment(p=1.0)  # neighbouring fusion, tau1 0.3, lambda 0.15 (sec. IV-B)
    fused = fuse(maps, "neighbour", 0.3, 0.15)
    value = aug.fuse(maps)
    assert np.array_equal(value, fused.value)
    value = np.round(value * 255) / 255  # as the 8-bit fused-map cache gives it back: tie levels
    rng = np.random.default_rng(0)
    assert 50 < fused.binary.sum() < fused.binary.size  # a real region, not the whole image
    full = aug.region((48, 48), value, None, 1.0, rng)
    assert np.array_equal(full, fused.binary)  # alpha = 1: exactly M_b
    assert not aug.region((48, 48), value, None, 1e-9, rng).any()  # alpha -> 0: nothing
    # alpha = 0.3: the floor(0.3 |V|) hottest pixels (plus those tied with the last one), each hotter than every
    # pixel left in V
    fused.value = value
    part = aug.region((48, 48), value, None, 0.3, rng)
    n_v, n = int((fused.value > 0).sum()), int(np.floor(0.3 * int((fused.value > 0).sum())))
    cut = fused.value[part].min()
    assert n <= part.sum() <= n + int((fused.value == cut).sum())
    assert cut > fused.value[fused.binary & ~part].max() and 0 < n < n_v
    # average fusion (Table V) has its own M_b: s > tau1
    avg = PRLEAugment(p=1.0, fusion="average", tau1=0.5)
    s = maps.mean(0)
    assert np.array_equal(avg.region((48, 48), avg.fuse(maps), None, 1.0, rng), s > 0.5)


def test_masked_image_is_zero_exactly_on_the_region_and_untouched_elsewhere():
    maps = _blob_maps()
    img = np.random.default_rng(1).integers(1, 256, size=(48, 48, 3), dtype=np.uint8)  # no zero pixel
    aug = PRLEAugment(p=1.0, dynamic=False)  # Table VII: M_b itself
    out, extra = aug(img, aug.fuse(maps), None, np.random.default_rng(2))
    region = fuse(maps).binary
    assert extra["prle_aug"] == 1.0 and extra["prle_alpha"] == 1.0
    assert abs(extra["prle_area"] - region.mean()) < 1e-9
    assert np.array_equal((out == 0).all(-1), region)
    assert np.array_equal(out[~region], img[~region])
    assert not np.shares_memory(out, img) and (img > 0).all()  # the input is not changed
    # p = 0: never augmented (Algorithm 1 lines 6-7)
    same, extra0 = PRLEAugment(p=0.0)(img, aug.fuse(maps), None, np.random.default_rng(2))
    assert same is img and extra0["prle_aug"] == 0.0
    # colour fill (the authors' release): one colour on the region
    filled = mask_image(img, region, "colour", np.random.default_rng(3))
    assert len(np.unique(filled[region], axis=0)) == 1 and np.array_equal(filled[~region], img[~region])


def test_p_and_alpha_are_drawn_as_algorithm_1_says():
    maps = _blob_maps()
    img = np.full((48, 48, 3), 9, np.uint8)
    aug = PRLEAugment(p=0.5)
    rng = np.random.default_rng(0)
    value = aug.fuse(maps)
    draws = [aug(img, value, None, rng)[1] for _ in range(400)]
    flags = np.array([d["prle_aug"] for d in draws])
    alphas = np.array([d["prle_alpha"] for d in draws if d["prle_aug"]])
    assert 0.42 < flags.mean() < 0.58
    assert alphas.min() > 0 and alphas.max() <= 1 and 0.4 < alphas.mean() < 0.6  # U(0, 1]
    assert PRLEAugment(alpha_min=0.5).draw_alpha(rng) >= 0.5  # the release's U(0.5, 1)


def test_table_iv_random_rectangles_and_landmark_parts(astronaut_face_256):
    rng = np.random.default_rng(0)
    r = random_rectangle((100, 120), 0.17, rng)
    ys, xs = np.nonzero(r)
    assert abs(r.mean() - 0.17) < 0.02 and r.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)  # one filled rectangle
    aug = PRLEAugment(p=1.0, mask_source="random")
    assert aug.map_set is None and not aug.uses_landmarks
    out, extra = aug(np.full((64, 64, 3), 50, np.uint8), None, None, rng)
    assert 0 < extra["prle_area"] <= 0.17 + 0.02 and (out == 0).all(-1).mean() == extra["prle_area"]

    img, lm = astronaut_face_256
    la = PRLEAugment(p=1.0, mask_source="landmarks")
    assert la.uses_landmarks and la.map_set is None
    areas = []
    for seed in range(6):
        region = la.region(img.shape[:2], None, lm, 1.0, np.random.default_rng(seed))
        areas.append(region.mean())
        ys, xs = np.nonzero(region)
        # inside the face's landmark box: eyes, nose, mouth
        assert xs.min() >= lm[:68, 0].min() - 10 and xs.max() <= lm[:68, 0].max() + 10
        assert ys.min() >= lm[17:68, 1].min() - 10 and ys.max() <= lm[:68, 1].max() + 10
    assert min(areas) > 0.005 and len(set(np.round(areas, 4))) > 1  # parts differ between draws


# --- eq. 13 -----------------------------------------------------------------------------------------------------


def test_augmented_loss_weighting_matches_a_hand_computation():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 1])
    aug = torch.tensor([0.0, 1.0, 1.0, 0.0])
    p = torch.softmax(logits, 1)
    ce = [-float(torch.log(p[i, labels[i]])) for i in range(4)]
    for gamma in (1.0, 2.5, 0.0):
        hand = (ce[0] + gamma * ce[1] + gamma * ce[2] + ce[3]) / 4  # (1/n) sum q l + (1 - q) gamma l
        loss, per = prle_loss(logits, labels, aug, gamma)
        assert abs(float(loss) - hand) < 1e-6 and np.allclose(per.numpy(), ce, atol=1e-6)
    # gamma = 1 is plain cross-entropy over the batch
    assert abs(float(prle_loss(logits, labels, aug, 1.0)[0]) - float(torch.nn.functional.cross_entropy(
        logits, labels))) < 1e-6

    # the method's loss on a real model: the same weighting of the model's own logits
    cfg = load_train_config(None, [*TINY, "method.gamma=2.5"])
    method, model = cpu_method(cfg)
    batch = {"image": torch.rand(4, 3, 32, 32), "label": labels, "prle_aug": aug}
    with torch.no_grad():
        loss, metrics = method.loss(batch, True)
        out = model(batch["image"])
    q = torch.softmax(out, 1)
    ce = [-float(torch.log(q[i, labels[i]])) for i in range(4)]
    assert abs(float(loss) - (ce[0] + 2.5 * ce[1] + 2.5 * ce[2] + ce[3]) / 4) < 1e-5
    assert metrics["aug_frac"] == 0.5 and abs(metrics["loss_aug"] - (ce[1] + ce[2]) / 2) < 1e-5
    with pytest.raises(Exception, match="prle_aug"):
        method.loss({"image": batch["image"], "label": labels}, True)


# --- the sidecar cut with the face ---------------------------------------------------------------------------------


def _synthetic_store(root: Path, n: int = 6, shape=(150, 130), labels=None) -> list[FaceRecord]:
    """Crops (noise + a red square at a per-face place) inside ``root`` and a 1-member map set whose map is that
    same square: a face whose map is a known square."""
    rng = np.random.default_rng(0)
    h, w = shape
    records = []
    for i in range(n):
        label = (labels or [REAL, FAKE])[i % len(labels or [REAL, FAKE])]
        key = f"generic/{'real' if label == REAL else 'Synthetic'}/na/v{i}"
        rel = f"crops/{key}/0_0.png"
        img = rng.integers(60, 200, size=(h, w, 3), dtype=np.uint8)
        img[..., 0] = np.minimum(img[..., 0], 150)
        x0, y0 = 30 + 7 * i, 40 + 5 * i
        img[y0:y0 + 24, x0:x0 + 30] = (255, 0, 0)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img[..., ::-1])
        records.append(FaceRecord(
            item_key=key, dataset="generic", video_id=f"v{i}", label=label, method="real" if label == REAL
            else "Synthetic", split="train", frame_index=0, face_index=0, crop_path=str(root / rel),
            box=np.array([25, 30, 105, 125], np.float32), landmarks=np.zeros((81, 2), np.float32), score=1.0,
            frame_box=np.array([25, 30, 105, 125], np.float32), crop_origin=(0, 0)))
        cam = np.zeros((h, w), np.float32)
        cam[y0:y0 + 24, x0:x0 + 30] = 1.0
        write_member_map(root, "zoo", records[-1], "xception", cam)
    write_map_manifest(root, "zoo", ["xception"], [{"name": "xception"}], "logit")
    return records


def test_map_sidecar_is_cut_by_the_same_window_and_flip_as_the_image(tmp_path):
    """The map is the red square: with PRLE (alpha = 1, M_b of the one map) the masked pixels must be where the
    same sample's plain image shows the square, through random margins, the resize and both flips."""
    root = tmp_path / "store"
    records = _synthetic_store(root)
    aug = PRLEAugment(p=1.0, dynamic=False, fusion="average", tau1=0.5)  # M_b = the map's square
    plain = FaceDataset(records, 64, (0.04, 0.20), seed=3, augment=True)
    masked = FaceDataset(records, 64, (0.04, 0.20), seed=3, augment=True, face_aug=aug, store_root=str(root))
    flips = set()
    for epoch in range(3):
        plain.set_epoch(epoch)
        masked.set_epoch(epoch)
        for i in range(len(records)):
            a = (plain[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            b = masked[i]
            m = (b["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            red = (a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] < 60)
            hole = (m == 0).all(-1)
            assert float(b["prle_aug"]) == 1.0 and red.sum() > 30
            iou = (red & hole).sum() / (red | hole).sum()
            assert iou > 0.75, (epoch, i, iou)
            assert np.array_equal(m[~hole], a[~hole])  # everything else is the plain sample
            # the side the square lands on tells the flip, for squares well off the box centre (x 65): in any
            # window of 4-20% margins their centre (x 45 + 7i) stays on its side of the cut's middle
            if abs(45 + 7 * i - 65) >= 13:
                flips.add(bool(np.nonzero(red)[1].mean() > 32) != bool(45 + 7 * i > 65))
    assert len(flips) == 2  # both flipped and unflipped samples were checked
    # the fused maps were cached once per face (at the crop's geometry) and a fresh dataset reads the same masks
    cached = sorted((root / "maps" / "zoo" / "_fused").rglob("*.png"))
    keys = {p.relative_to(root / "maps" / "zoo" / "_fused").parts[0] for p in cached}
    assert len(cached) == len(records) and keys == {"average-t0.5-xception"}
    assert cv2.imread(str(cached[0]), cv2.IMREAD_UNCHANGED).shape == (150, 130)
    again = FaceDataset(records, 64, (0.04, 0.20), seed=3, augment=True, face_aug=aug, store_root=str(root))
    again.set_epoch(2)
    assert all(torch.equal(again[i]["image"], masked[i]["image"]) for i in range(len(records)))

    # a member the map set does not have, and a face without maps: one-line errors
    from unmask.errors import UnmaskError

    missing = FaceDataset(records, 64, 0.125, face_aug=PRLEAugment(p=1.0, members=("vgg",)), store_root=str(root))
    with pytest.raises(UnmaskError, match="vgg"):
        missing[0]


# --- the class-balanced sampler -----------------------------------------------------------------------------------


def test_balanced_sampler_draws_real_and_fake_one_to_one():
    labels = [REAL] * 20 + [FAKE] * 80  # FF++: 1 real : 4 fake
    s = EpochSampler(100, 16, 10, seed=0, labels=labels)
    idx = s.epoch_indices()
    lab = np.asarray(labels)[idx]
    assert len(idx) == 160 and (lab == REAL).sum() == 80  # exactly 1:1 over the epoch
    assert len(set(np.asarray(idx)[lab == REAL])) == 20  # every real face used (repeated 4x)
    # within batches it is about 1:1 too, and the order is a pure function of (seed, epoch)
    per_batch = [(lab[i:i + 16] == REAL).mean() for i in range(0, 160, 16)]
    assert 0.3 < min(per_batch) and max(per_batch) < 0.7
    assert EpochSampler(100, 16, 10, seed=0, labels=labels).epoch_indices() == idx
    s.set_epoch(1)
    assert s.epoch_indices() != idx
    # two DDP ranks split the same balanced order
    r0 = EpochSampler(100, 8, 10, seed=0, labels=labels, rank=0, world_size=2).epoch_indices()
    r1 = EpochSampler(100, 8, 10, seed=0, labels=labels, rank=1, world_size=2).epoch_indices()
    assert sorted(r0 + r1) == sorted(idx)
    # unbalanced: the natural 1:4
    plain = np.asarray(labels)[EpochSampler(100, 16, 10, seed=0).epoch_indices()]
    assert (plain == REAL).mean() < 0.3


def test_light_augmentation_changes_the_face_and_keeps_it_an_image():
    from unmask.train.config import LightAugConfig

    img = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    cfg = LightAugConfig(enabled=True, p_jpeg=1.0, p_noise=1.0)
    outs = [light_augment(img, cfg, np.random.default_rng(s)) for s in range(3)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert all(np.abs(o.astype(int) - img).mean() > 1 for o in outs)
    assert np.array_equal(light_augment(img, cfg, np.random.default_rng(1)), outs[1])  # seeded
    # every family off: the face unchanged
    none = LightAugConfig(enabled=True, p_jpeg=0.0, p_noise=0.0, color=type(cfg.color)(enabled=False))
    assert np.array_equal(light_augment(img, none, np.random.default_rng(0)), img)
    # the config default is off, and paper 003's with-augmentation rows turn it on
    assert not load_train_config(None, TINY).data.light_aug.enabled
    root = Path(__file__).resolve().parents[1] / "configs" / "pim"
    assert load_train_config(root / "table4_xception_aug.yaml").data.light_aug.enabled
    assert not load_train_config(root / "table4_xception_noaug.yaml").data.light_aug.enabled


# --- a tiny real run ------------------------------------------------------------------------------------------------


def test_tiny_prle_run_on_the_ffpp_sample_saves_a_plain_backbone(prepared_ffpp, tmp_path, astronaut_rgb):
    """The trainer's own data (FF++ sample store + a map set), balanced, a few steps; best.pt is the plain arch
    (no PRLE state) and ``unmask detect`` scores with it."""
    from unmask.cli import main
    from unmask.data.store import PreparedStore
    from unmask.models.arch import build_arch
    from unmask.models.checkpoint import load_checkpoint
    from unmask.train.data import build_train_data
    from unmask.train.loop import train

    store = tmp_path / "store"
    shutil.copytree(prepared_ffpp, store)
    faces = PreparedStore(store).faces(split="train", largest_only=True)
    for rec in faces:  # a stand-in zoo map: a blob on the nose and mouth (prle-maps would write Grad-CAM here)
        h, w = cv2.imread(rec.crop_path).shape[:2]
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        c = rec.landmarks[[30, 51, 57]].mean(0)
        cam = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * (0.08 * w) ** 2))
        write_member_map(store, "zoo", rec, "xception", cam)
        write_member_map(store, "zoo", rec, "vgg", np.roll(cam, 5, axis=1))
    write_map_manifest(store, "zoo", ["xception", "vgg"], [{"name": "xception"}, {"name": "vgg"}], "logit")

    cfg = load_train_config(Path("configs/tiny/prle.yaml"), [
        f"data.store={store}", "model.backbone=resnet18", "model.pretrained=null", "model.input_size=48",
        "epochs=1", "steps_per_epoch=3", "batch_size=8", "run.progress=false", "run.tensorboard=false",
        "data.max_val_faces=8", "run.save_every_steps=null"])
    assert cfg.method.name == "prle" and cfg.data.balanced
    method, _ = cpu_method(cfg)
    data = build_train_data(cfg, method.data_recipe)
    assert data.balance_labels is not None and sorted(set(data.balance_labels)) == [REAL, FAKE]
    item = data.train[0]
    assert {"prle_aug", "prle_alpha", "prle_area"} <= set(item) and item["image"].shape == (3, 48, 48)

    # Table VI: one member's maps only, fused into their own cache folder
    from unmask.data.map_sidecars import load_maps

    solo = PRLEAugment(p=1.0, members=("vgg",), fusion="average", tau1=0.3)
    got = solo.load_maps(store, faces[0])
    vgg = load_maps(store, "zoo", faces[0], ["vgg"])[0]
    assert got.shape == (1, *vgg.shape) and np.abs(got[0] - np.where(vgg > 0.3, vgg, 0)).max() <= 0.5 / 255 + 1e-6
    assert (store / "maps" / "zoo" / "_fused" / "average-t0.3-vgg").is_dir()

    result = train(cfg, tmp_path / "run")
    assert result.steps == 3 and all(np.isfinite(result.losses))
    state = load_checkpoint(tmp_path / "run" / "best.pt")
    plain = build_arch("timm_classifier", backbone="resnet18", pretrained=None, input_size=48)
    assert set(state["model"]) == set(plain.state_dict())  # the backbone's weights, nothing else
    assert not any("prle" in k.lower() for k in state["model"])

    cv2.imwrite(str(tmp_path / "astronaut.png"), astronaut_rgb[..., ::-1])
    rc = main(["detect", str(tmp_path / "astronaut.png"), "--checkpoint", str(tmp_path / "run"), "--format",
               "json", "--output", str(tmp_path / "det.json"), "--quiet", "--device", "cpu"])
    assert rc == 0 and '"fake_probability"' in (tmp_path / "det.json").read_text()


def test_prle_config_checks():
    from unmask.errors import ConfigError

    for bad in ("method.p=1.5", "method.gamma=-1", "method.alpha_min=1", "method.members=[]",
                "method.mask_source=boxes"):
        with pytest.raises(ConfigError):
            load_train_config(None, [*TINY, bad])
    assert PRLEConfig().p == 0.5 and PRLEConfig().gamma == 1.0 and PRLEConfig().tau1 == 0.3


def test_paper_001_configs_name_their_tables_and_keep_sec_iv_b_numbers():
    root = Path(__file__).resolve().parents[1] / "configs" / "prle"
    files = sorted(root.glob("table*.yaml"))
    tables = {p.name.split("_")[0] for p in files}
    assert tables == {"table2", "table3", "table4", "table5", "table6", "table7"}
    for p in files:
        cfg = load_train_config(p)
        assert cfg.paper.startswith("001 Table ") and cfg.method.name in ("prle", "baseline"), p
        assert cfg.model.input_size == 256 and cfg.batch_size == 64 and cfg.data.balanced, p
        if cfg.method.name == "prle":
            o = cfg.method
            assert (o.p, o.gamma, o.lam) == (0.5, 1.0, 0.15), p
            assert o.tau1 == 0.3 or p.name.startswith("table5"), p
    # the rows' own switches
    assert load_train_config(root / "table4_vgg_random.yaml").method.mask_source == "random"
    assert load_train_config(root / "table5_resnet50_average_low.yaml").method.tau1 < 0.3
    assert load_train_config(root / "table6_efficientnet_xception_only.yaml").method.members == ["xception"]
    assert load_train_config(root / "table7_resnet50_fixed.yaml").method.dynamic is False
    f3 = load_train_config(root / "table3_fsh_f3net_prle.yaml")
    assert f3.model.arch == "f3net" and f3.data.fake_methods == ["FaceShifter"]
    assert len([p for p in files if p.name.startswith("table2")]) == 10  # five backbones +- PRLE


@pytest.mark.slow
def test_prle_steps_f3net_whose_detector_is_the_plain_f3net():
    """Paper 001's fifth backbone: a prle-recipe batch steps F3-Net like any arch, and the network saved is the
    f3net arch itself (the masking is all in the loader)."""
    from torch.utils.data import default_collate

    from _train_fixtures import ToyPRLE

    from unmask.models.f3net import F3Net
    from unmask.train.optim import build_optimizer

    cfg = load_train_config(None, [*TINY, "model.arch=f3net", "model.backbone=xception", "model.input_size=64"])
    method, model = cpu_method(cfg)
    data = ToyPRLE(n=2, size=64)
    batch = default_collate([data[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 64, 64) and "prle_aug" in batch
    metrics = method.step(batch, build_optimizer(model.parameters(), cfg.optim), None)
    assert np.isfinite(metrics["loss"]) and isinstance(method.detector(model), F3Net)


def test_face_dataset_applies_light_augmentation_only_when_training_augments(tmp_path):
    from unmask.train.config import LightAugConfig

    records = _synthetic_store(tmp_path / "store", n=2)
    on = LightAugConfig(enabled=True, p_jpeg=1.0, p_noise=1.0)
    plain = FaceDataset(records, 48, (0.04, 0.20), seed=1, augment=True)[0]["image"]
    light = FaceDataset(records, 48, (0.04, 0.20), seed=1, augment=True, light_aug=on)[0]["image"]
    assert (light - plain).abs().mean() > 0.005  # same window and flip (drawn first), other pixels
    fixed = FaceDataset(records, 48, 0.125, augment=False)[0]["image"]
    assert torch.equal(FaceDataset(records, 48, 0.125, augment=False, light_aug=on)[0]["image"], fixed)
