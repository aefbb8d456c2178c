"""Paper 004 (learning to mask): the teacher's attention, the top-k mask, the diversity loss, deep mixup, the
student at inference, and the checkpoint holding the student alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unmask.errors import ConfigError
from unmask.methods import build_method
from unmask.models import load_detector
from unmask.models.l2m import (L2MModule, L2MStudent, L2MTeacher, WeightedAttention, attention_mask, deep_mixup,
                               diversity_loss, num_masked, resize_attention)
from unmask.train.config import load_train_config
from unmask.train.loop import train

from _train_fixtures import one_torch_thread, toy_train_data  # noqa: F401 (autouse)

SMALL_TEACHER = ["method.teacher.depth=2", "method.teacher.latent_dim=48", "method.teacher.mlp_dim=64"]


def _small_pair(size: int = 64):
    torch.manual_seed(0)
    student = L2MStudent.build("resnet18", pretrained=None, input_size=size, mlp_hidden=16)
    teacher = L2MTeacher("resnet18", None, size, depth=2, heads=6, latent_dim=48, mlp_dim=32)
    return L2MModule(student, teacher)


# --- attention (eq. 1-2) ------------------------------------------------------------------------------------

def test_attention_returns_softmax_weights_per_head():
    torch.manual_seed(0)
    attn = WeightedAttention(dim=20, heads=6, head_dim=20 // 6)  # 20 is not divisible by 6: 6 x 3 = 18 inner
    x = torch.randn(2, 5, 20)
    out, w = attn(x)
    assert out.shape == (2, 5, 20) and w.shape == (2, 6, 5, 5)
    assert torch.allclose(w.sum(-1), torch.ones(2, 6, 5), atol=1e-6) and bool((w >= 0).all())
    # eq. 1 by hand for head 2: softmax(Q_2 K_2^T / sqrt(d_head))
    q, k, _ = attn.qkv(x).view(2, 5, 3, 6, 3).permute(2, 0, 3, 1, 4)
    ref = torch.softmax(q[:, 2] @ k[:, 2].transpose(-1, -2) / math.sqrt(3), dim=-1)
    assert torch.allclose(w[:, 2], ref, atol=1e-6)


def test_teacher_attention_map_is_the_mean_over_heads_of_the_class_row():
    module = _small_pair().eval()
    with torch.no_grad():
        t = module.teacher(torch.rand(3, 3, 64, 64))
    h, w = module.teacher.grid
    last = t["weights"][-1]  # (B, heads, 1 + h*w, 1 + h*w)
    assert last.shape == (3, 6, 1 + h * w, 1 + h * w) and len(t["weights"]) == 2
    assert torch.allclose(t["head_maps"], last[:, :, 0, 1:])
    assert torch.allclose(t["attention"], last[:, :, 0, 1:].mean(dim=1).view(3, h, w))
    assert t["logits_vit"].shape == (3, 2) and t["logits_cls"].shape == (3, 2)


# --- the mask (eq. 4, Table 4) --------------------------------------------------------------------------------

def test_high_mask_zeroes_exactly_the_top_k_positions():
    g = torch.Generator().manual_seed(3)
    attn = torch.rand(4, 7, 7, generator=g)
    mask = attention_mask(attn, 0.25, "high")
    k = num_masked(49, 0.25)
    assert k == 12 and mask.shape == (4, 49)
    assert torch.equal((mask == 0).sum(1), torch.full((4,), k))
    flat = attn.flatten(1)
    for i in range(4):
        top = set(torch.argsort(flat[i], descending=True)[:k].tolist())
        assert set(torch.nonzero(mask[i] == 0).flatten().tolist()) == top
        assert float(flat[i][mask[i] == 0].min()) > float(flat[i][mask[i] == 1].max())


def test_low_and_random_strategies_and_ties():
    attn = torch.tensor([[0.1, 0.5, 0.5, 0.5, 0.2, 0.3, 0.0, 0.9]])  # N = 8, k = 2
    assert torch.equal(attention_mask(attn, 0.25, "high"), torch.tensor([[1., 0., 1., 1., 1., 1., 1., 0.]]))
    assert torch.equal(attention_mask(attn, 0.25, "low"), torch.tensor([[0., 1., 1., 1., 1., 1., 0., 1.]]))
    ties = torch.full((1, 8), 0.125)  # all equal: the earliest positions, every time
    assert torch.equal(attention_mask(ties, 0.25, "high"), torch.tensor([[0., 0., 1., 1., 1., 1., 1., 1.]]))
    scores = torch.from_numpy(np.random.default_rng(0).random((1, 8)))
    rnd = attention_mask(attn, 0.25, "random", scores)
    assert int((rnd == 0).sum()) == 2 and torch.equal(rnd[0] == 0, torch.isin(torch.arange(8), scores[0].topk(2).indices))
    with pytest.raises(ConfigError):
        attention_mask(attn, 0.25, "middle")


def test_the_mask_zeroes_those_positions_before_pooling():
    fmap = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    mask = torch.tensor([[1., 0., 1., 1.], [0., 1., 1., 0.]])
    pooled = L2MStudent.pool(fmap, mask)
    ref = (fmap.flatten(2) * mask[:, None, :]).sum(-1) / 4
    assert torch.allclose(pooled, ref)
    visible = L2MStudent.pool(fmap, mask, "visible")
    assert torch.allclose(visible, (fmap.flatten(2) * mask[:, None, :]).sum(-1) / mask.sum(1, keepdim=True))
    assert torch.allclose(L2MStudent.pool(fmap), fmap.mean(dim=(2, 3)))


# --- diversity loss (eq. 3) -------------------------------------------------------------------------------------

def test_diversity_loss_extremes():
    h, n = 6, 12
    identical = torch.rand(1, n).expand(2, h, n).clone()
    orthogonal = torch.zeros(2, h, n)
    for i in range(h):
        orthogonal[:, i, 2 * i: 2 * i + 2] = 0.5  # disjoint supports: cosine 0
    assert float(diversity_loss(orthogonal)) == pytest.approx(0.0, abs=1e-6)
    assert float(diversity_loss(identical)) == pytest.approx((h - 1) / h, abs=1e-5)
    # eq. 3 as printed has the opposite extremes (it would reward identical heads)
    assert float(diversity_loss(identical, "as_printed")) == pytest.approx(-1 / h, abs=1e-5)
    assert float(diversity_loss(orthogonal, "as_printed")) == pytest.approx((h - 2) / h, abs=1e-5)
    partly = orthogonal.clone()
    partly[:, 1] = partly[:, 0]
    assert 0.0 < float(diversity_loss(partly)) < float(diversity_loss(identical))


# --- deep mixup (eq. 5-6) --------------------------------------------------------------------------------------

def test_deep_mixup_features_and_soft_labels():
    feats = torch.randn(4, 5)
    y = F.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    perm = torch.tensor([2, 0, 3, 1])
    mixed, soft = deep_mixup(feats, y, perm, 0.3)
    for i in range(4):
        j = int(perm[i])
        assert torch.allclose(mixed[i], 0.3 * feats[i] + 0.7 * feats[j])
        assert torch.allclose(soft[i], 0.3 * y[i] + 0.7 * y[j])
    assert torch.allclose(soft.sum(1), torch.ones(4))
    assert torch.allclose(soft[0], torch.tensor([0.3, 0.7]))  # real mixed with a fake


def test_training_forward_masks_and_mixes_inference_does_neither():
    module = _small_pair().eval()
    x = torch.rand(4, 3, 64, 64)
    y = F.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    with torch.no_grad():
        out = module(x, ratio=0.25, strategy="high", targets=y, perm=torch.tensor([1, 0, 3, 2]), lam=0.6)
        fmap = module.student.deep_map(x)
        attn = module.teacher(x)["attention"].flatten(1)
        mask = attention_mask(attn, 0.25, "high")
        assert torch.equal(out["mask"], mask)
        feats = L2MStudent.pool(fmap, mask)
        mixed, soft = deep_mixup(feats, y, torch.tensor([1, 0, 3, 2]), 0.6)
        assert torch.allclose(out["logits_s"], module.student.classify(mixed), atol=1e-5)
        assert torch.allclose(out["targets_s"], soft)
        # inference: the plain student, unmasked features, no mixup, and no teacher involved
        plain = module.student(x)
        assert torch.allclose(plain, module.student.classify(fmap.mean(dim=(2, 3))), atol=1e-6)
        assert not torch.allclose(plain, out["logits_s"])


def test_config_checks():
    with pytest.raises(ConfigError, match="strategy"):
        load_train_config(None, ["method.name=l2m", "method.strategy=middle"])
    with pytest.raises(ConfigError, match="mixup_alpha"):
        load_train_config(None, ["method.name=l2m", "method.mixup_alpha=0"])


# --- training: checkpoint holds the student alone ---------------------------------------------------------------

def test_l2m_trains_and_best_holds_only_the_student(tmp_path):
    cfg = load_train_config(None, ["method.name=l2m", *SMALL_TEACHER, "method.mlp_hidden=16", "model.backbone=resnet18",
                                   "model.pretrained=null", "model.input_size=64", "run.progress=false",
                                   "run.tensorboard=false", "optim.name=sgd", "optim.lr=0.01", "epochs=1",
                                   "batch_size=4", "steps_per_epoch=3", "run.log_every=1"])
    method = build_method(cfg)
    module = method.build()
    assert method.detector(module) is module.student
    torch.manual_seed(0)
    result = train(cfg, tmp_path / "run", data=toy_train_data(n=12, size=64))
    assert result.steps == 3 and all(math.isfinite(v) for v in result.losses)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "loss_div" in metrics and "loss_vit_t" in metrics and "lam" in metrics

    last = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    student_keys = set(module.student.state_dict())
    assert set(last["model"]) == student_keys  # the saved model (best.pt too) is the student
    assert not any("teacher" in k or "blocks" in k for k in last["model"])
    assert any(k.startswith("teacher.") for k in last["training"]["module"])  # last.pt: whole module for resume
    assert "rng" in last["training"]["method"]

    detector, meta = load_detector(tmp_path / "run")
    assert meta["arch"] == "l2m_student" and isinstance(detector, L2MStudent)
    n_student = sum(p.numel() for p in module.student.parameters())
    assert sum(p.numel() for p in detector.parameters()) == n_student
    with torch.no_grad():
        p = detector.eval().predict_proba(torch.rand(2, 3, 64, 64))
    assert p.shape == (2,) and bool(((p >= 0) & (p <= 1)).all())
    # ONNX export of the checkpoint: the student's weights only (BatchNorm may fold into the convolutions:
    # between the student's parameters and its parameters + buffers)
    import onnx

    from unmask.export import check_agreement, export_onnx

    path = export_onnx(detector, tmp_path / "l2m.onnx", meta=meta)
    n_onnx = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    n_student_all = n_student + sum(b.numel() for b in module.student.buffers())
    n_teacher = sum(p.numel() for p in module.teacher.parameters())
    assert n_teacher > n_student_all - n_student  # one teacher tensor set would break the upper bound below
    assert 0.99 * n_student <= n_onnx <= n_student_all
    assert check_agreement(detector, path)["max_abs_diff_prob"] < 1e-4


def test_attention_resized_to_a_student_grid_of_another_size():
    attn = torch.rand(2, 7, 7)
    assert resize_attention(attn, (7, 7)) is attn
    small = resize_attention(attn, (4, 4))
    assert small.shape == (2, 4, 4)
    assert torch.equal((attention_mask(small, 0.25, "high") == 0).sum(1), torch.full((2,), 4))


def test_sam_second_pass_reuses_the_draws_and_the_rng_state_resumes():
    cfg = load_train_config(None, ["method.name=l2m", *SMALL_TEACHER, "method.mlp_hidden=16", "method.strategy=random",
                                   "model.backbone=resnet18", "model.pretrained=null", "model.input_size=64"])
    method = build_method(cfg)
    torch.manual_seed(0)
    module = method.build().eval()  # eval: BatchNorm gives the same output for the same input
    method.attach(module, device=torch.device("cpu"))
    batch = {"image": torch.rand(4, 3, 64, 64), "label": torch.tensor([0, 1, 0, 1])}
    saved = method.state_dict()
    with torch.no_grad():
        first, m1 = method.loss(batch, True)
        second, m2 = method.loss(batch, False)  # SAM's re-evaluation: same lam, permutation and random mask
        third, m3 = method.loss(batch, True)  # a new step: new draws
    assert torch.equal(first, second) and m1["lam"] == m2["lam"] and m3["lam"] != m1["lam"]
    method.load_state_dict(saved)  # what a resume restores: the same draws again
    with torch.no_grad():
        again, m4 = method.loss(batch, True)
    assert torch.equal(again, first) and m4["lam"] == m1["lam"]


# --- the paper's configs ------------------------------------------------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted([*(CONFIGS / "l2m").glob("table*.yaml"), CONFIGS / "tiny" / "l2m.yaml"]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_l2m_configs_load_and_name_their_table(path):
    cfg = load_train_config(path)
    assert cfg.method.name == "l2m" and "004" in cfg.paper


def test_paper_004_numbers():
    cfg = load_train_config(CONFIGS / "l2m" / "table2_ffpp_c23.yaml")
    o, t = cfg.method, cfg.method.teacher
    assert (cfg.model.backbone, cfg.model.input_size, t.backbone) == ("xception", 224, None)  # sec. 4.1
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum) == ("sgd", 0.01, 0.9)
    assert (cfg.schedule.name, cfg.schedule.gamma, cfg.batch_size, cfg.steps_per_epoch) == ("exponential", 0.9, 32, 300)
    assert (t.depth, t.heads, t.latent_dim, o.mask_ratio, o.alpha, o.strategy) == (6, 6, 2048, 0.25, 0.1, "high")
    assert not cfg.data.augment and o.mixup
    assert load_train_config(CONFIGS / "l2m" / "table3_ffdf_nomixup.yaml").method.mixup is False
    assert load_train_config(CONFIGS / "l2m" / "table3_ffdf.yaml").data.fake_methods == ["Deepfakes"]
    assert {load_train_config(CONFIGS / "l2m" / f"table4_{s}.yaml").method.strategy for s in ("low", "random")} \
        == {"low", "random"}
    pair = load_train_config(CONFIGS / "l2m" / "table5_sresnet18_txception.yaml")
    assert (pair.model.backbone, pair.method.teacher.backbone) == ("resnet18", "xception")
