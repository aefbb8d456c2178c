"""The bbmg_nrs method on a real (random-init) network: Algorithm 1's schedule, memory and weighted loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unmask.errors import ConfigError
from unmask.methods import METHODS
from unmask.methods.nrs import min_cosine_distance, nrs_weights, weighted_ce
from unmask.train.config import load_train_config

from _train_fixtures import cpu_method, one_torch_thread, ToyPairs, toy_pair_collate  # noqa: F401 (autouse)


def _method(*overrides):
    cfg = load_train_config(None, ["method.name=bbmg_nrs", "method.nrs.start_epoch=2", "method.nrs.k_s=6",
                                   "method.nrs.k=2", "model.backbone=resnet18", "model.pretrained=null",
                                   "model.input_size=32", *overrides])
    method, model = cpu_method(cfg)
    return method, model


def _batch(epoch=0, n=8):
    ds = ToyPairs(n=n, size=32)
    ds.set_epoch(epoch)
    return toy_pair_collate([ds[i] for i in range(n)])


def test_every_registered_method_has_a_config_and_recipe():
    for name, cls in METHODS.items():
        cfg = load_train_config(None, [f"method.name={name}"])
        method = cls(cfg)
        assert method.data_recipe.kind in ("pairs", "real_fake")
        assert cfg.method.name == name


def test_data_recipe_follows_the_bbmg_switch():
    assert _method()[0].data_recipe.synthesizer == "bbmg"
    assert _method("method.bbmg=false")[0].data_recipe.synthesizer == "sbi"


def test_start_epoch_must_leave_an_epoch_for_the_centres():
    with pytest.raises(ConfigError, match="start_epoch"):
        load_train_config(None, ["method.name=bbmg_nrs", "method.nrs.start_epoch=1"])


def test_memory_collects_top_ks_reals_by_real_probability():
    method, model = _method()
    method.on_epoch_start(0)  # t = 1 = T_k - 1: collect, no weighting yet
    batch = _batch()
    with torch.no_grad():
        logits = model(batch["image"])
    method.loss(batch, True)
    p_real = logits.softmax(1)[:8, 0]
    want = batch["index"][:8][torch.argsort(p_real, descending=True)[:6]]
    assert method.memory.keys.tolist() == want.tolist()


def test_plain_ce_before_tk_then_weighted_ce_from_tk():
    method, model = _method()
    batch = _batch()
    method.on_epoch_start(0)
    loss0, m0 = method.loss(batch, True)
    with torch.no_grad():
        assert float(loss0) == pytest.approx(float(F.cross_entropy(model(batch["image"]), batch["label"])), rel=1e-5)
    assert "nrs_weight_fake" not in m0
    method.on_epoch_end(0)  # k-means over the memory -> centres for epoch t = 2 = T_k
    assert method.memory.centres is not None and method.memory.centres.shape == (2, model.num_features)
    method.on_epoch_start(1)
    loss1, m1 = method.loss(batch, True)
    with torch.no_grad():
        logits, feats = model(batch["image"], return_features=True)
        d = min_cosine_distance(feats, method.memory.centres)
        w = nrs_weights(d, batch["label"] == 1, 2, 0.5, 200.0)
        assert float(loss1) == pytest.approx(float(weighted_ce(logits, batch["label"], w)), rel=1e-5)
    assert "nrs_weight_fake" in m1


def test_nrs_switched_off_is_plain_ce_and_collects_nothing():
    method, model = _method("method.nrs.enabled=false")
    batch = _batch()
    for epoch in range(3):
        method.on_epoch_start(epoch)
        loss, metrics = method.loss(batch, True)
        assert "nrs_weight_fake" not in metrics
        method.on_epoch_end(epoch)
    assert method.memory.centres is None and len(method.memory) == 0


def test_state_dict_round_trip():
    method, _ = _method()
    method.on_epoch_start(0)
    method.loss(_batch(), True)
    method.on_epoch_end(0)
    other, _ = _method()
    other.load_state_dict(method.state_dict())
    assert torch.equal(other.memory.centres, method.memory.centres)
