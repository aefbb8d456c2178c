"""The ``sola`` method (paper 002 sec. 3.4): single-side loss, mask loss, ASRM constraint through the trainer's
optimizer steps, and the stored-mask path from a mask video to the training batch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from unmask.data.records import FAKE, REAL
from unmask.methods.sola import mask_loss, single_side_loss
from unmask.models import load_detector
from unmask.models.sola import DIRECTIONS, srm_kernels
from unmask.train.config import load_train_config
from unmask.train.loop import train

from _train_fixtures import one_torch_thread, toy_train_data  # noqa: F401 (autouse)
from conftest import write_rgb_video

TINY = ["method.name=sola", "model.arch=sola", "model.backbone=resnet18", "model.pretrained=null",
        "model.input_size=32", "run.progress=false", "run.tensorboard=false", "data.num_workers=0",
        "optim.name=adam", "optim.lr=0.01", "epochs=1", "batch_size=2", "steps_per_epoch=3", "run.log_every=1"]


def _maps(b: int, g: int, fill: float | None = None) -> dict:
    gen = torch.Generator().manual_seed(0)

    def make(c):
        return torch.full((b, c, g, g), fill) if fill is not None else torch.randn(b, c, g, g, generator=gen)

    return {"first": {d: make(64) for d in DIRECTIONS}, "second": {d: make(1) for d in DIRECTIONS},
            "anomaly": torch.zeros(b, 4, g, g)}


def test_single_side_loss_is_zero_for_fakes_and_for_all_zero_maps():
    fakes = torch.full((4,), FAKE)
    reals = torch.full((4,), REAL)
    assert float(single_side_loss(_maps(4, 4), fakes, 1.0, 1.0)) == 0.0  # fakes: unconstrained
    assert float(single_side_loss(_maps(4, 4, fill=-1e4), reals, 1.0, 1.0)) == 0.0  # maps sigmoid(-1e4) = 0
    on_reals = float(single_side_loss(_maps(4, 4), reals, 1.0, 1.0))
    assert on_reals > 1.0  # 8 maps of mean ~0.5 each
    mixed = torch.tensor([REAL, REAL, FAKE, FAKE])
    assert abs(float(single_side_loss(_maps(4, 4), mixed, 1.0, 1.0)) - on_reals / 2) < 0.2
    only_first = float(single_side_loss(_maps(4, 4), reals, 1.0, 0.0))
    assert 0 < only_first < on_reals  # gamma weighs the second-order terms


def test_mask_loss_rewards_the_eq9_targets_and_skips_faces_without_a_mask():
    mask = torch.zeros(2, 1, 64, 64)
    mask[1, :, 16:48, 16:40] = 1.0
    from unmask.models.sola import anomaly_targets

    targets = anomaly_targets(mask, 4)
    good = {"first": {d: (targets[d][0] * 2 - 1).expand(2, 64, 4, 4) * 20 for d in DIRECTIONS},
            "second": {d: (targets[d][1] * 2 - 1) * 20 for d in DIRECTIONS}, "anomaly": torch.zeros(2, 4, 4, 4)}
    valid = torch.ones(2)
    assert float(mask_loss(good, mask, valid, 1.0, 1.0)) < 1e-6
    bad = _maps(2, 4, fill=0.0)
    assert abs(float(mask_loss(bad, mask, valid, 1.0, 1.0)) - 8 * np.log(2)) < 1e-4
    assert float(mask_loss(bad, mask, torch.zeros(2), 1.0, 1.0)) == 0.0


def test_asrm_constraint_holds_after_the_trainers_optimizer_steps(tmp_path):
    """Three Adam steps at lr 1e-2 move the ASRM kernels; after_step puts the centre back to exactly -1 and the
    rest to sum 1 (eq. 4). LSRM (no constraint) drifts off it."""
    torch.manual_seed(0)
    train(load_train_config(None, TINY), tmp_path / "asrm", data=toy_train_data(n=6))
    model, meta = load_detector(tmp_path / "asrm")
    assert meta["arch"] == "sola" and meta["options"]["noise"] == "asrm"
    w = model.asrm.weight.detach()
    init = srm_kernels()[:, None].repeat(1, 3, 1, 1)
    assert (w - init).abs().max() > 1e-3  # it learned
    assert torch.all(w[:, :, 2, 2] == -1.0)
    others = w.sum(dim=(2, 3)) - w[:, :, 2, 2]
    assert torch.allclose(others, torch.ones(3, 3), atol=1e-5)

    torch.manual_seed(0)
    train(load_train_config(None, [*TINY, "model.options.noise=lsrm"]), tmp_path / "lsrm", data=toy_train_data(n=6))
    lsrm, _ = load_detector(tmp_path / "lsrm")
    lw = lsrm.asrm.weight.detach()
    assert not torch.all(lw[:, :, 2, 2] == -1.0)


def test_stored_masks_reach_the_batch_aligned_with_the_face(tmp_path, astronaut_rgb):
    """A fake face video + its mask video (FF++ layout) -> unmask prepare -> the mask-supervised recipe's items:
    the mask is cut by the same window as the face, so the forged band lies on the eyes-to-nose rows."""
    from unmask.data.prepare import PrepareOptions, run_prepare
    from unmask.data.records import ManifestRow
    from unmask.data.store import PreparedStore
    from unmask.train.data import FaceDataset

    m = np.zeros((512, 512, 3), np.uint8)
    m[90:150, 190:260] = 255
    write_rgb_video(tmp_path / "face.mp4", [astronaut_rgb] * 4)
    write_rgb_video(tmp_path / "mask.mp4", [m] * 4)
    row = ManifestRow(dataset="generic", video_id="face", label=FAKE, method="Synthetic", split="train",
                      source=str(tmp_path / "face.mp4"), mask_source=str(tmp_path / "mask.mp4"))
    run_prepare([row], tmp_path / "store", PrepareOptions(frames=2, workers=1), progress=False)
    faces = PreparedStore(tmp_path / "store").faces(largest_only=True)
    assert faces and all(f.mask_path for f in faces)
    item = FaceDataset(faces, 64, 0.125, masks=True)[0]
    mask = item["mask"][0].numpy()
    assert item["mask"].shape == (1, 64, 64) and float(item["mask_valid"]) == 1.0
    ys, xs = np.nonzero(mask > 0.5)
    rec = faces[0]
    lm = rec.landmarks
    assert ys.size > 50
    # the forged band (frame rows 90-150) covers the eyes and the nose tip of the face in the 64 px crop
    from unmask.data.crops import margin_crop
    from unmask.data.store import load_rgb

    win = margin_crop(load_rgb(rec.crop_path), rec.box, None, 0.125).window
    sy = 64 / (win[3] - win[1])
    eyes_y = (lm[36:48, 1].mean() - win[1]) * sy
    nose_y = (lm[30, 1] - win[1]) * sy
    assert ys.min() < eyes_y < ys.max() and ys.min() < nose_y < ys.max()
    # a real face without a mask: zeros, valid; a fake without one: not valid
    real = FaceDataset([replace(rec, label=REAL, mask_path=None)], 64, 0.125, masks=True)[0]
    assert float(real["mask"].sum()) == 0 and float(real["mask_valid"]) == 1.0
    nomask = FaceDataset([replace(rec, mask_path=None)], 64, 0.125, masks=True)[0]
    assert float(nomask["mask_valid"]) == 0.0

    # the trainer's data for supervision=mask, and one mask-supervised step of the method on it
    from torch.utils.data import DataLoader

    from unmask.methods import build_method
    from unmask.train.data import build_train_data

    cfg = load_train_config(None, [*TINY, "method.supervision=mask", f"data.store={tmp_path / 'store'}",
                                   "data.val_split=null", "data.augment=false"])
    method = build_method(cfg)
    data = build_train_data(cfg, method.data_recipe)
    batch = next(iter(DataLoader(data.train, batch_size=2, collate_fn=data.collate)))
    assert batch["mask"].shape == (2, 1, 32, 32) and float(batch["mask"].sum()) > 0
    torch.manual_seed(0)
    model = method.build()
    method.attach(model, device=torch.device("cpu"))
    loss, metrics = method.loss(batch, True)
    assert torch.isfinite(loss) and metrics["loss_anomaly"] > 0 and metrics["no_mask"] == 0


def test_paper_002_configs_name_their_tables_and_keep_the_sec_4_1_numbers():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs" / "sola").glob("table*.yaml"))
    assert len(configs) == 27
    for path in configs:
        cfg = load_train_config(path)
        table = path.name.split("_")[0].replace("table", "Table ")
        assert cfg.paper.startswith(f"002 {table}"), path
        assert (cfg.model.arch, cfg.method.name, cfg.model.input_size) == ("sola", "sola", 256)
        assert (cfg.optim.name, cfg.optim.lr, tuple(cfg.optim.betas), cfg.batch_size, cfg.epochs) == \
            ("adam", 0.001, (0.9, 0.999), 32, 50)
        assert tuple(cfg.data.margin) == (0.8, 0.8) and cfg.data.val_margin == 0.8  # the 2.6x box
    sup = load_train_config(Path(configs[0]).parent / "table2_fs_sup.yaml")
    assert sup.method.supervision == "mask" and sup.data.fake_methods == ["FaceSwap"]
    p8 = load_train_config(Path(configs[0]).parent / "table7_row4_asrm_lem_p8.yaml").model.options
    assert (p8["noise"], p8["lem"], p8["patch_size"]) == ("asrm", True, 8)
    assert load_train_config(Path(configs[0]).parent / "table6_dfd_lsrm.yaml").model.options["noise"] == "lsrm"
