"""NRS (paper 000 eq. 5-6, 9, Algorithm 1): weights on hand-computed features, memory, k-means, the method."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unmask.methods.nrs import (RealFeatureMemory, alpha_pf, kmeans, min_cosine_distance, nrs_weights,
                                top_k_memory, weighted_ce)

CENTRES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_min_cosine_distance_by_hand():
    feats = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [-1.0, -1.0]])
    d = min_cosine_distance(feats, CENTRES)
    assert d.tolist() == pytest.approx([0.0, 1 - 1 / math.sqrt(2), 1.0, 1 + 1 / math.sqrt(2)], abs=1e-6)


def test_weights_below_and_above_lambda_and_for_reals():
    feats = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [3.0, 0.1], [1.0, 1.0]])
    is_fake = torch.tensor([True, True, True, False, False])
    d = min_cosine_distance(feats, CENTRES)
    t, beta, lam = 50, 200.0, 0.5
    w = nrs_weights(d, is_fake, t, lam, beta)
    r = t / beta
    d1 = 1 - 1 / math.sqrt(2)  # 0.2929 < lambda
    expected = [
        0.0 * r + (1 - r),  # fake on a centre: Dist 0 -> 1 - t/beta = 0.75
        d1 * r + (1 - r),  # fake at 45 degrees: below lambda -> eq. 6
        1.0,  # fake far from the reals (Dist 1 >= lambda) -> 1
        1.0,  # real on a centre -> 1 whatever its distance
        1.0,  # real below lambda -> 1
    ]
    assert w.tolist() == pytest.approx(expected, abs=1e-6)


def test_weights_follow_the_epoch_schedule():
    d = torch.tensor([0.1])
    fake = torch.tensor([True])
    # eq. 6: linear in t from 1 (t = 0) towards Dist (t = beta); t/beta capped at 1 beyond beta.
    assert float(nrs_weights(d, fake, 1, 0.5, 200)) == pytest.approx(0.1 / 200 + 199 / 200)
    assert float(nrs_weights(d, fake, 100, 0.5, 200)) == pytest.approx(0.1 * 0.5 + 0.5)
    assert float(nrs_weights(d, fake, 200, 0.5, 200)) == pytest.approx(0.1)
    assert float(nrs_weights(d, fake, 400, 0.5, 200)) == pytest.approx(0.1)
    ws = [float(alpha_pf(d, t, 200)) for t in range(1, 101)]
    assert all(a > b for a, b in zip(ws, ws[1:]))  # noise samples matter less as training goes on


def test_weighted_ce_is_mean_over_all_samples():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    w = torch.tensor([1.0, 0.5, 0.25])
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert float(weighted_ce(logits, labels, w)) == pytest.approx(float((w * ce).sum() / 3))


def test_memory_keeps_top_ks_by_real_probability_across_batches():
    torch.manual_seed(0)
    mem = RealFeatureMemory(k_s=5)
    probs = torch.rand(30)
    feats = torch.randn(30, 4)
    keys = torch.arange(30)
    for chunk in torch.arange(30).split(7):  # as if 5 steps of a training epoch
        mem.add(probs[chunk], feats[chunk], keys[chunk])
    want = torch.argsort(probs, descending=True)[:5]
    assert mem.keys.tolist() == want.tolist()
    assert torch.equal(mem.feats, feats[want])


def test_memory_ties_are_broken_by_key():
    p, f, k = top_k_memory(torch.tensor([0.9, 0.9, 0.5, 0.9]), torch.eye(4), torch.tensor([7, 3, 1, 5]), 2)
    assert k.tolist() == [3, 5]


def test_memory_merges_ranks_into_the_global_top_ks():
    a, b = RealFeatureMemory(3), RealFeatureMemory(3)
    a.add(torch.tensor([0.9, 0.2, 0.8]), torch.ones(3, 2), torch.tensor([0, 2, 4]))
    b.add(torch.tensor([0.95, 0.1]), torch.zeros(2, 2), torch.tensor([1, 3]))  # fewer than k_s: padded
    mems = [a, b]
    # a 2-rank all_gather: the same call happens on both ranks; simulate it with both memories' tensors.
    calls = {"i": 0}
    padded = []
    for m in mems:
        pad = m.k_s - len(m)
        padded.append([torch.cat([m.probs, torch.full((pad,), float("-inf"))]),
                       torch.cat([m.feats, m.feats.new_zeros((pad, 2))]),
                       torch.cat([m.keys, torch.full((pad,), -1, dtype=torch.long)])])

    def gather(t):
        i = calls["i"]
        calls["i"] += 1
        return torch.cat([padded[0][i], padded[1][i]])

    probs, feats, keys = a.gathered(gather)
    assert keys.tolist() == [1, 0, 4] and probs.tolist() == pytest.approx([0.95, 0.9, 0.8])


def test_kmeans_finds_separated_clusters_deterministically():
    g = torch.Generator().manual_seed(0)
    true = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(40, 2, generator=g) for c in true])
    c1 = kmeans(x, 3, seed=5)
    c2 = kmeans(x, 3, seed=5)
    assert torch.equal(c1, c2)
    # every true centre has a found centre within 0.1
    d = torch.cdist(true, c1)
    assert bool((d.min(dim=1).values < 0.1).all())
    assert kmeans(x[:2], 5).shape == (2, 2)  # k > N: one centre per point


# --- short schedules: beta scaled to the run's length (nrs.beta_per_epoch), per-epoch weight summaries ---------

from pathlib import Path  # noqa: E402

from _train_fixtures import cpu_method, one_torch_thread, ToyPairs, toy_pair_collate  # noqa: E402,F401 (autouse)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _cfg(path, *overrides):
    from unmask.train.config import load_train_config

    return load_train_config(path, list(overrides))


def test_tiny_profile_scales_beta_to_its_epochs_and_paper_configs_keep_200():
    from unmask.methods import build_method

    tiny = build_method(_cfg(CONFIGS / "tiny" / "bbmg_nrs.yaml"))
    assert tiny.beta == 2 * tiny.cfg.epochs == 8  # the paper's ratio, 200 / 100
    assert build_method(_cfg(CONFIGS / "tiny" / "bbmg_nrs.yaml", "epochs=6")).beta == 12  # follows an override
    for name in ("effb4_ffpp", "table11_row3_nrs", "table11_row4_bbmg_nrs"):
        paper = build_method(_cfg(CONFIGS / "bbmg_nrs" / f"{name}.yaml"))
        assert paper.options.nrs.beta_per_epoch is None and paper.beta == 200.0


def _run_epochs(*overrides, epochs=4, steps=3):
    """bbmg_nrs on a random-init resnet18 over toy pairs: the method's hooks as the trainer calls them."""
    from unmask.train.optim import build_optimizer

    cfg = _cfg(None, "method.name=bbmg_nrs", "method.nrs.start_epoch=2", "method.nrs.k_s=8", "method.nrs.k=2",
               "model.backbone=resnet18", "model.pretrained=null", "model.input_size=32", "optim.name=adam",
               f"epochs={epochs}", *overrides)
    method, model = cpu_method(cfg)
    opt = build_optimizer(model.parameters(), cfg.optim)
    ds = ToyPairs(n=8, size=32)
    epoch_rows, step_mins = [], []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        method.on_epoch_start(epoch)
        mins = []
        for s in range(steps):
            m = method.step(toy_pair_collate([ds[(4 * s + i) % 8] for i in range(4)]), opt, None)
            mins += [m["nrs_weight_min"]] if "nrs_weight_min" in m else []
        step_mins.append(mins)
        epoch_rows.append(method.on_epoch_end(epoch))
    return epoch_rows, step_mins


def test_epoch_weight_summary_shows_nrs_acting_only_when_beta_fits_the_schedule():
    scaled, step_mins = _run_epochs("method.nrs.beta_per_epoch=2")
    assert "nrs_epoch_weight_min" not in scaled[0]  # t = 1 < T_k: plain CE, nothing weighted yet
    for t in (2, 3, 4):
        row = scaled[t - 1]
        assert row["nrs_t_over_beta"] == pytest.approx(t / 8)
        assert row["nrs_epoch_weight_min"] == pytest.approx(min(step_mins[t - 1]))  # the summary is of the steps
        assert row["nrs_epoch_weight_min"] <= row["nrs_epoch_weight_mean"] <= 1.0
        # eq. 6: a noise sample's weight is at most 1 - (t / beta)(1 - lambda)
        if row["nrs_epoch_noise_frac"] > 0:
            assert row["nrs_epoch_weight_min"] <= 1 - (t / 8) * 0.5 + 1e-9
    assert scaled[-1]["nrs_epoch_noise_frac"] > 0 and scaled[-1]["nrs_epoch_weight_min"] < 0.8
    paper, _ = _run_epochs()  # beta 200 over 4 epochs: t / beta <= 0.02, every weight stays near 1
    assert all(r["nrs_epoch_weight_min"] > 0.97 for r in paper[1:])


def test_weight_summary_survives_a_mid_epoch_resume():
    from unmask.methods import build_method

    rows, _ = _run_epochs("method.nrs.beta_per_epoch=2", epochs=2, steps=1)
    cfg = _cfg(None, "method.name=bbmg_nrs", "method.nrs.beta_per_epoch=2", "epochs=2")
    method = build_method(cfg)
    method._stats = torch.tensor([4.0, 3.0, 2.0, 0.5], dtype=torch.float64)
    other = build_method(cfg)
    other.load_state_dict(method.state_dict())
    other.epoch = 1
    assert other.epoch_weight_stats() == pytest.approx({"nrs_epoch_weight_min": 0.5, "nrs_epoch_weight_mean": 0.75,
                                                        "nrs_epoch_noise_frac": 0.5, "nrs_t_over_beta": 0.5})
    assert "nrs_epoch_weight_min" in rows[1]
