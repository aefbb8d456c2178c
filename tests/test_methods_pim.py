"""PIM and DualFlat (paper 003): the hook, the direction, the combined update, its approximation, DDP."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unmask.methods import build_method
from unmask.models import build_detector
from unmask.models.arch import Arch
from unmask.models.pim import FeatureStatPerturber
from unmask.methods.pim import StatPerturbation
from unmask.train.config import load_train_config
from unmask.train.multipass import PassPlan, Pass, run_passes

from _ddp_fixtures import ddp_ranks  # the ddp_runs fixture: tests/conftest.py
from _train_fixtures import one_torch_thread, ToyPairs, toy_pair_collate  # noqa: F401 (autouse)

TINY = ["model.backbone=resnet18", "model.pretrained=null", "model.input_size=32", "run.progress=false",
        "run.tensorboard=false", "data.num_workers=0"]


class TinyArch(Arch):
    """conv-BN-ReLU, the shallow conv (PIM's stage), pool, linear: small enough to check by hand.
    Not registered (the registry's contract test covers real archs)."""

    def __init__(self, dtype=torch.float32) -> None:
        super().__init__(input_size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.shallow = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, 2)
        self.to(dtype)

    def forward(self, x, return_features=False):
        f = torch.tanh(self.shallow(self.stem(self.normalize(x)))).mean((2, 3))
        logits = self.head(f)
        return (logits, f) if return_features else logits

    @property
    def shallow_stage(self):
        return self.shallow


def eq7_hook(d_mu, d_sigma):
    """Paper 003 eq. 6-7 written literally (the reference the module is checked against)."""

    def hook(module, inputs, f):
        dims, shape = ((2, 3), (1, -1, 1, 1)) if f.dim() == 4 else ((1,), (1, 1, -1))
        mu = f.mean(dims, keepdim=True)
        sigma = (f.var(dims, keepdim=True, unbiased=False) + 1e-5).sqrt()
        return (f - mu) / sigma * (sigma + d_sigma.view(shape)) + (mu + d_mu.view(shape))

    return hook


def _batch(n=4, size=32):
    ds = ToyPairs(n=n, size=size)
    return toy_pair_collate([ds[i] for i in range(n)])


def _pim_method(alpha=1.0, beta=0.0, r=0.1, model=None, extra=()):
    cfg = load_train_config(None, ["method.name=pim", f"method.alpha={alpha}", f"method.beta={beta}", f"method.r={r}",
                                   *TINY, "optim.name=sgd", "optim.lr=0.5", "optim.momentum=0.0", *extra])
    method = build_method(cfg)
    torch.manual_seed(0)
    model = model if model is not None else method.build()
    method.attach(model, device=torch.device("cpu"))
    return method, model, cfg


@pytest.mark.parametrize("backbone", ["resnet18", "vit_tiny_patch16_224"])
def test_d_zero_is_identity_and_eq7_elsewhere_and_the_hook_leaves_nothing(backbone):
    torch.manual_seed(0)
    det = build_detector(backbone, pretrained=None, input_size=32).eval()
    x = torch.rand(3, 3, 32, 32)
    keys = set(det.state_dict())
    with torch.no_grad():
        plain = det(x)
    pim = FeatureStatPerturber()
    with pim.installed(det.shallow_stage):
        pim.probe()
        probed = det(x)
        assert torch.equal(probed, plain)  # f + 0: the clean pass is the plain network's pass, bit for bit
        channels = pim.last_shape[1] if len(pim.last_shape) == 4 else pim.last_shape[2]
        assert pim.d_mu.shape == (channels,)
        pim.perturb(torch.zeros(channels), torch.zeros(channels))
        with torch.no_grad():
            assert torch.allclose(det(x), plain, atol=1e-5)
        g = torch.Generator().manual_seed(1)
        d_mu, d_sigma = torch.randn(channels, generator=g) * 0.3, torch.randn(channels, generator=g) * 0.3
        pim.perturb(d_mu, d_sigma)
        with torch.no_grad():
            ours = det(x)
    handle = det.shallow_stage.register_forward_hook(eq7_hook(d_mu, d_sigma))
    with torch.no_grad():
        ref = det(x)
    handle.remove()
    assert torch.allclose(ours, ref, atol=1e-4) and not torch.allclose(ours, plain, atol=1e-3)
    # removed after the block: no hooks left, no parameters or buffers added (the saved model is the plain arch)
    assert not det.shallow_stage._forward_hooks and set(det.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(det(x), plain)


def test_d_is_shared_across_the_batch_with_the_normalized_gradient_direction():
    method, model, _ = _pim_method(r=0.1)
    batch = _batch()
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    method.step(batch, opt, None)
    d_mu, d_sigma = method.stats.d_mu, method.stats.d_sigma
    assert d_mu.shape == d_sigma.shape == (64,)  # one value per channel of resnet18's layer1, for every sample
    # by hand: dL/d(d) through the literal eq. 7 at d = 0, summed over the batch by autograd
    z_mu, z_sigma = torch.zeros(64, requires_grad=True), torch.zeros(64, requires_grad=True)
    handle = ref.shallow_stage.register_forward_hook(eq7_hook(z_mu, z_sigma))
    F.cross_entropy(ref(batch["image"]), batch["label"]).backward()
    handle.remove()
    g = torch.cat([z_mu.grad, z_sigma.grad])
    expected = 0.1 * g / g.norm()
    got = torch.cat([d_mu, d_sigma])
    assert torch.allclose(got.norm(), torch.tensor(0.1), atol=1e-6)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4)


def _grads(model, x, y, hook=None):
    handle = model.shallow_stage.register_forward_hook(hook) if hook else None
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    if handle:
        handle.remove()
    return grads


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.0), (1.0, 0.0), (0.3, 0.5)])
def test_update_is_the_combination_of_the_pass_gradients(alpha, beta):
    torch.manual_seed(0)
    tiny = TinyArch()
    method, model, _ = _pim_method(alpha=alpha, beta=beta, r=0.2, model=tiny)
    ref = copy.deepcopy(model)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    lr = 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    method.step({"image": x, "label": y}, opt, None)

    params = list(ref.parameters())
    g1 = _grads(ref, x, y)
    z_mu, z_sigma = torch.zeros(6, requires_grad=True), torch.zeros(6, requires_grad=True)
    handle = ref.shallow_stage.register_forward_hook(eq7_hook(z_mu, z_sigma))
    F.cross_entropy(ref(x), y).backward()
    handle.remove()
    gd = torch.cat([z_mu.grad, z_sigma.grad])
    d = 0.2 * gd / gd.norm()
    g2 = _grads(ref, x, y, eq7_hook(d[:6], d[6:]))
    norm = torch.sqrt(sum((g ** 2).sum() for g in g1))
    with torch.no_grad():
        saved = [p.clone() for p in params]
        for p, g in zip(params, g1):
            p.add_(0.05 * g / norm)  # DualFlat's r' = 0.05 along g1 / ||g1||
    g3 = _grads(ref, x, y)
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    for p_new, p_old, a, b, c in zip(model.parameters(), params, g1, g2, g3):
        g = (1 - alpha - beta) * a + alpha * b + beta * c
        assert torch.allclose(p_new, p_old - lr * g, atol=1e-6), (alpha, beta)
    # and the passes differ, so the check can fail: g2 is not g1
    assert any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(g1, g2))


def test_alpha_zero_is_the_plain_step():
    method, model, cfg = _pim_method(alpha=0.0, extra=["model.drop_rate=0.0"])
    plain_cfg = load_train_config(None, ["method.name=baseline", *TINY, "optim.name=sgd"])
    plain = build_method(plain_cfg)
    plain_model = copy.deepcopy(model)
    plain.attach(plain_model, device=torch.device("cpu"))
    opt_a = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9)
    batch = _batch()
    for _ in range(2):
        ma = method.step(batch, opt_a, None)
        mb = plain.step(batch, opt_b, None)
        assert ma["loss"] == mb["loss"] and "loss_pim" not in ma
    a, b = model.state_dict(), plain_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights and BN statistics, bit for bit
    # with alpha > 0 the same start moves elsewhere
    method2, model2, _ = _pim_method(alpha=1.0)
    model2.load_state_dict(plain_model.state_dict())
    opt_c = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    opt_d = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9)
    m = method2.step(batch, opt_c, None)
    plain.step(batch, opt_d, None)
    assert "loss_pim" in m and not all(torch.equal(p, q) for p, q in zip(model2.parameters(), plain_model.parameters()))


def test_bn_running_stats_move_once_per_step():
    method, model, _ = _pim_method(alpha=1.0)
    ref = copy.deepcopy(model)
    batch = _batch()
    method.step(batch, torch.optim.SGD(model.parameters(), lr=0.0), None)  # lr 0: only BN statistics can change
    with torch.no_grad():
        ref(batch["image"])  # one train-mode forward = one BN update
    a, b = model.state_dict(), ref.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if "running" in k or "num_batches" in k)


def test_two_pass_gradient_approximates_the_regularized_loss_gradient():
    """Eq. 10: L(f') ~ L + r ||grad_(mu, sigma) L||, so the two-pass gradient g2 approximates the gradient of
    R(theta) = L + r ||grad_d L|| (the SAM-style approximation drops only O(r^2) terms). Checked against central
    finite differences of R along random directions, in float64."""
    torch.manual_seed(0)
    net = TinyArch(torch.float64).train()
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = torch.tensor([0, 1] * 4)
    r = 0.005
    params = list(net.parameters())

    def loss_fn(first_pass):
        return F.cross_entropy(net(x), y), {}

    def regularized() -> float:
        z = [torch.zeros(6, dtype=torch.float64, requires_grad=True) for _ in range(2)]
        handle = net.shallow_stage.register_forward_hook(eq7_hook(*z))
        loss = F.cross_entropy(net(x), y)
        gz = torch.autograd.grad(loss, z)
        handle.remove()
        return float(loss.detach()) + r * float(torch.cat(gz).norm())

    stats = StatPerturbation(net.shallow_stage, r)
    def zero():
        for p in params:
            p.grad = None
    run_passes(PassPlan(0.0, (Pass(stats, 1.0, "loss_pim"),)), loss_fn=loss_fn, backward=lambda l: l.backward(),
               zero_grad=zero, params=params, model=net)
    g2 = [p.grad.clone() for p in params]
    zero()
    F.cross_entropy(net(x), y).backward()
    g1 = [p.grad.clone() for p in params]

    gen = torch.Generator().manual_seed(7)
    eps = 1e-5
    errs_two_pass, errs_plain = [], []
    for _ in range(4):
        v = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(eps * vi)
        up = regularized()
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.sub_(2 * eps * vi)
        down = regularized()
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(eps * vi)
        fd = (up - down) / (2 * eps)
        dot2 = sum(float((g * vi).sum()) for g, vi in zip(g2, v))
        dot1 = sum(float((g * vi).sum()) for g, vi in zip(g1, v))
        errs_two_pass.append(abs(dot2 - fd))
        errs_plain.append(abs(dot1 - fd))
    # the regularizer's own gradient (what g1 misses) is much larger than the approximation's error, which is
    # O(r^2) (measured: halving r halves the ratio below)
    assert all(e2 < 0.05 * e1 for e2, e1 in zip(errs_two_pass, errs_plain)), (errs_two_pass, errs_plain)


@pytest.mark.parametrize("name", ["pim", "dualflat"])  # pim (alpha 1): clean pass without weight gradients
def test_two_process_ddp_ranks_agree(ddp_runs, name):
    """Two gloo ranks (the shared DDP session of _ddp_fixtures: DDP_JOBS[name]): one d, the same weights."""
    r0, r1 = ddp_ranks(ddp_runs, name)
    assert r0["losses"] != r1["losses"]  # different data on each rank ...
    assert torch.equal(r0["extra"], r1["extra"])  # ... one d from the all-reduced statistics gradient
    for k in r0["weights"]:
        if "running" in k or "num_batches" in k:
            continue  # BN statistics are per rank (no SyncBN)
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_paper_003_configs_load_and_carry_the_tables_numbers():
    paths = sorted(p for p in (CONFIGS / "pim").glob("*.yaml") if not p.name.startswith("_"))
    cfgs = {p.stem: load_train_config(p) for p in [*paths, CONFIGS / "tiny" / "pim.yaml"]}
    assert all(c.paper.startswith(("003", "tiny profile of 003")) for c in cfgs.values())
    assert {c.model.backbone: c.model.input_size for k, c in cfgs.items() if k.startswith("table4")} == {
        "convnext_base": 224, "xception": 299, "efficientnet_b4": 380, "resnet50": 224}
    assert sum(k.startswith("table4") for k in cfgs) == 16  # 4 backbones x +/- PIM x +/- augmentation
    assert sorted(c.method.r for k, c in cfgs.items() if k.startswith("table6")) == [0, 0.05, 0.1, 0.2]
    assert sorted(c.method.alpha for k, c in cfgs.items() if k.startswith("table7")) == [0, 0.25, 0.5, 0.75, 1]
    for table, recipe in (("table8", "supervised"), ("table9", "sbi")):
        grid = {(round(c.method.alpha + c.method.beta, 6), round(c.method.alpha / (c.method.alpha + c.method.beta), 6))
                for k, c in cfgs.items() if k.startswith(table) and c.method.recipe == recipe}
        assert grid == {(1.0, 1.0), (1.0, 0.0)} | {(s, a) for s in (1.0, 0.8, 0.5, 0.2) for a in (0.8, 0.5, 0.2)}
    main = cfgs["table4_convnext_b_noaug_pim"]
    assert (main.method.r, main.method.alpha, main.epochs, main.batch_size, main.optim.name) == (0.1, 1.0, 100, 64, "sgd")
    assert cfgs["table5_convnext_b_sbi_pim"].method.recipe == "sbi"


@pytest.mark.parametrize("shape", [(2, 5, 6, 7), (2, 9, 5)])
def test_probe_scaling_multiplies_each_samples_mean_and_variance(shape):
    """Sec. III-A's probe: per sample and channel, mean x 1.2 and variance x 0.65 (maps and ViT tokens)."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2)) * 2 + 1
    pim = FeatureStatPerturber(1.2, 0.65)
    pim.scale()
    out = pim(None, (), x)
    dims = (2, 3) if len(shape) == 4 else (1,)
    assert torch.allclose(out.mean(dims), 1.2 * x.mean(dims), atol=1e-5)
    assert torch.allclose(out.var(dims, unbiased=False), 0.65 * x.var(dims, unbiased=False), rtol=1e-4)
    pim.off()
    assert pim(None, (), x) is None  # off: the hook leaves the output alone


def test_a_sam_optimizer_is_refused_with_the_fix_named():
    from unmask.errors import ConfigError

    cfg = load_train_config(None, ["method.name=pim", *TINY, "optim.name=sam"])
    method = build_method(cfg)
    with pytest.raises(ConfigError, match="optim.name"):
        method.attach(method.build(), device=torch.device("cpu"))


def test_probe_command_on_stored_faces(prepared_ffpp, tmp_path):
    """``unmask probe`` on real stored faces: a row per manipulation and overall, its "before" scores are the
    evaluation scoring path's, the perturbation changes them, and the t-SNE PNG is written."""
    import json

    import numpy as np
    from PIL import Image

    from unmask.cli import main
    from unmask.commands.probe import probe_features
    from unmask.data.store import PreparedStore
    from unmask.evaluate.scoring import score_records, select_records
    from unmask.models import save_checkpoint

    torch.manual_seed(0)
    det = build_detector("resnet18", pretrained=None, input_size=64)
    ck = save_checkpoint(tmp_path / "run" / "best.pt", det)
    out = tmp_path / "probe"
    assert main(["probe", "--checkpoint", str(ck), "--data", str(prepared_ffpp), "--split", "val", "--frames", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    rep = json.loads((out / "probe.json").read_text())
    sets = [r["set"] for r in rep["rows"]]
    assert sets[-1] == "all" and len(sets) >= 2 and rep["shallow_stage"] == "net.layer1"
    assert Image.open(out / "tsne.png").size[0] > 500

    records = select_records(PreparedStore(prepared_ffpp).faces(split=["val"], largest_only=True), 2)
    p0, p1, f0, f1 = probe_features(det.eval(), records, 1.2, 0.65)
    ref = [f.score for f in score_records(det, records, device="cpu")]
    assert np.allclose(p0, ref, atol=1e-5)  # before = what unmask evaluate scores
    assert not np.allclose(p0, p1, atol=1e-4) and f0.shape == f1.shape == (len(records), det.num_features)
    assert not det.shallow_stage._forward_hooks
