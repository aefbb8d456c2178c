"""Validation for model selection: the papers' aggregation, and a threshold that evaluate/detect pick up."""

import numpy as np
import pytest
import torch

from unmask.data.records import FAKE, REAL, FaceRecord
from unmask.evaluate.scoring import checkpoint_threshold
from unmask.train.validation import video_metrics

from _train_fixtures import one_torch_thread  # noqa: F401 (autouse)


def _rec(item, label, frame, side):
    box = np.array([0, 0, side, side], np.float32)
    return FaceRecord(item_key=item, dataset="d", video_id=item, label=label, method="m", split="val",
                      frame_index=frame, face_index=0, crop_path="x.png", box=box,
                      landmarks=np.zeros((81, 2), np.float32), score=1.0, frame_box=box, crop_origin=(0, 0))


def test_video_metrics_aggregate_and_choose_a_threshold():
    faces, scores = [], []
    # real video r1: frame 0 has a big face (0.2) and a tiny background face (0.9, ignored: < half the size)
    faces += [_rec("r1", REAL, 0, 100), _rec("r1", REAL, 0, 30), _rec("r1", REAL, 1, 100)]
    scores += [0.2, 0.9, 0.4]  # video = mean(0.2, 0.4) = 0.3
    faces += [_rec("r2", REAL, 0, 100)]
    scores += [0.55]  # a real above 0.5: the 0.5 threshold gets it wrong
    faces += [_rec("f1", FAKE, 0, 100), _rec("f1", FAKE, 1, 100)]
    scores += [0.7, 0.9]  # 0.8
    faces += [_rec("f2", FAKE, 0, 100)]
    scores += [0.6]
    m = video_metrics(faces, np.array(scores))
    assert m["videos"] == 4 and m["real_videos"] == 2 and m["frames"] == 6
    assert m["video_auc"] == 1.0
    assert m["video_acc"] == 0.75  # r2 (0.55) is called fake at 0.5
    assert 0.55 <= m["threshold"] < 0.6  # the accuracy-maximizing cut between r2 and f2
    assert checkpoint_threshold({"val": m}) == m["threshold"]


def test_no_threshold_without_both_classes():
    m = video_metrics([_rec("r1", REAL, 0, 100)], np.array([0.3]))
    assert m["threshold"] is None and m["video_auc"] is None


# --- which fakes choose the epoch (pseudo-fakes of the val reals for pair methods, real fakes for baseline) -------

TINY = ["model.backbone=resnet18", "model.pretrained=null", "model.input_size=64", "run.progress=false",
        "run.tensorboard=false", "data.num_workers=0", "data.dataset=ffpp"]


def _data(store, *args):
    from unmask.methods import build_method
    from unmask.train.config import load_train_config
    from unmask.train.data import build_train_data

    cfg = load_train_config(None, [*TINY, f"data.store={store}", *args])
    return cfg, build_train_data(cfg, build_method(cfg).data_recipe)


def test_pair_methods_validate_on_pseudo_fakes_of_the_val_reals(prepared_ffpp):
    from unmask.train.data import PseudoFakeValSet

    for method in ("sbi", "bbmg_nrs"):
        _, data = _data(prepared_ffpp, f"method.name={method}", "data.max_val_faces=6")
        assert isinstance(data.val, PseudoFakeValSet) and len(data.val) == len(data.val_faces) == 12
        reals, fakes = data.val_faces[0::2], data.val_faces[1::2]
        assert all(r.label == REAL and r.split == "val" for r in reals)  # no manipulated video of the store
        assert all(f.label == FAKE and f.method == data.val.fake_source for f in fakes)
        assert data.val.fake_source == f"pseudo:{'bbmg' if method == 'bbmg_nrs' else 'sbi'}"
        assert [f.item_key for f in fakes] == [f"{r.item_key}#pseudo" for r in reals]  # a twin video per real video
    a, b = data.val[0], data.val[1]
    assert (a["label"], b["label"]) == (REAL, FAKE) and a["image"].shape == (3, 64, 64)
    diff = (a["image"] - b["image"]).abs().amax(0)
    assert float(diff.max()) > 0.05  # the fake was blended ...
    assert float((diff > 0.02).float().mean()) < 0.9  # ... inside a face mask, not over the whole crop
    # the same pseudo-fakes every epoch (and in a new process: a pure function of the fixed seed and the face)
    data.train.set_epoch(3)
    _, again = _data(prepared_ffpp, "method.name=bbmg_nrs", "data.max_val_faces=6")
    assert torch.equal(again.val[1]["image"], b["image"]) and torch.equal(data.val[1]["image"], b["image"])


def test_baseline_and_an_explicit_choice_validate_on_real_fakes(prepared_ffpp):
    from unmask.train.data import FaceDataset

    for args in (["method.name=baseline"], ["method.name=sbi", "data.val_fakes=real"]):
        _, data = _data(prepared_ffpp, *args)
        assert isinstance(data.val, FaceDataset)
        assert {r.method for r in data.val_faces if r.label == FAKE} >= {"Deepfakes", "FaceSwap"}


def test_pseudo_validation_needs_a_synthesizer():
    from unmask.methods import build_method
    from unmask.train.config import load_train_config
    from unmask.errors import ConfigError
    from unmask.train.data import resolve_val_fakes

    cfg = load_train_config(None, [*TINY, "method.name=baseline", "data.val_fakes=pseudo"])
    with pytest.raises(ConfigError, match="val_fakes"):
        resolve_val_fakes(cfg.data.val_fakes, build_method(cfg).data_recipe)
    with pytest.raises(ConfigError, match="val_fakes"):
        load_train_config(None, [*TINY, "method.name=sbi", "data.val_fakes=both"])


def test_the_checkpoint_records_which_fakes_chose_it(prepared_ffpp, tmp_path):
    from unmask.models.checkpoint import load_checkpoint
    from unmask.train.loop import train

    cfg, data = _data(prepared_ffpp, "method.name=sbi", "data.max_val_faces=4", "data.max_faces=4", "epochs=1",
                      "batch_size=2", "steps_per_epoch=1", "optim.name=adam")
    result = train(cfg, tmp_path / "run", data=data)
    best = load_checkpoint(tmp_path / "run")
    assert best["val"]["fakes"] == "pseudo" and best["val"]["fake_source"] == "pseudo:sbi"
    assert best["val"]["videos"] == 2 * best["val"]["real_videos"]  # each real video and its pseudo-fake twin
    assert result.best["fakes"] == "pseudo"
    # and evaluation reports say so next to Acc@thr (a pseudo-fake threshold is not a real-forgery threshold)
    from unmask.evaluate.scoring import threshold_source

    assert threshold_source(best) == ("chosen on the val split's real faces and fixed-seed sbi pseudo-fakes of them "
                                      "(data.val_fakes=pseudo)")
    assert "manipulated videos" in threshold_source({"val": {"fakes": "real"}})


def test_best_epoch_is_higher_auc_then_lower_loss_on_a_tie():
    from unmask.train.validation import improves

    best = {"video_auc": 1.0, "loss": 0.60}
    assert improves({"video_auc": 1.0, "loss": 0.55}, best)  # saturated AUC: the loss still ranks epochs
    assert not improves({"video_auc": 1.0, "loss": 0.65}, best)
    assert not improves({"video_auc": 0.9, "loss": 0.10}, best)  # AUC first
    assert improves({"video_auc": 0.7, "loss": 0.9}, {"video_auc": None, "loss": 0.1})
    assert not improves({"video_auc": None, "loss": 0.1}, best) and improves({"video_auc": None}, None)
