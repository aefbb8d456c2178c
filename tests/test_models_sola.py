"""The ``sola`` arch (paper 002): ASRM's initial kernels, eq. 9 targets, LEM locality, head shapes per patch size."""

from __future__ import annotations

import pytest
import torch

from unmask.errors import UnmaskError
from unmask.models import build_arch
from unmask.models.sola import ASRM, DIRECTIONS, LEM, anomaly_targets

from _train_fixtures import one_torch_thread  # noqa: F401 (autouse: one thread for these small models)


def test_initial_asrm_filters_are_the_quantized_srm_kernels():
    """Sec. 3.1: KV / 12, the 3x3 second-order residual / 4, the 1-D residual / 2, each repeated for R, G, B."""
    kv = torch.tensor([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
                       [-1, 2, -2, 2, -1]]) / 12
    sq = torch.zeros(5, 5)
    sq[1:4, 1:4] = torch.tensor([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4
    edge = torch.zeros(5, 5)
    edge[2, 1:4] = torch.tensor([1, -2, 1]) / 2
    w = ASRM("asrm").weight.detach()
    assert w.shape == (3, 3, 5, 5)
    for k, kernel in enumerate((kv, sq, edge)):
        for c in range(3):
            assert torch.allclose(w[k, c], kernel, atol=1e-7)
            assert w[k, c, 2, 2] == -1 and abs(float(w[k, c].sum() - w[k, c, 2, 2]) - 1.0) < 1e-6


def test_asrm_constraint_projection():
    """Eq. 4 on arbitrary weights: centre -1, the rest rescaled to sum 1; SRM / LSRM are left alone."""
    m = ASRM("asrm")
    with torch.no_grad():
        m.weight.add_(torch.randn_like(m.weight) * 0.05)
    m.constrain_()
    w = m.weight.detach()
    assert torch.all(w[:, :, 2, 2] == -1)
    assert torch.allclose(w.sum(dim=(2, 3)) + 1, torch.ones(3, 3), atol=1e-5)
    lsrm = ASRM("lsrm")
    with torch.no_grad():
        lsrm.weight.mul_(2)
    before = lsrm.weight.detach().clone()
    lsrm.constrain_()
    assert torch.equal(lsrm.weight, before) and not ASRM("srm").weight.requires_grad


def test_eq9_targets_on_a_hand_made_mask():
    """A 64 px mask, 16 px patches (4x4 grid): cells (1..2, 1) fully forged, (1..2, 2) half forged."""
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:32] = 1.0  # column 1 of rows 1-2: score 1
    mask[..., 16:48, 32:40] = 1.0  # column 2 of rows 1-2: score 0.5
    t = anomaly_targets(mask, 4)
    z = [0, 0, 0, 0]
    # v1: cell vs its left neighbour (the first column has none: compared with itself -> 0)
    assert t["v1"][0][0, 0].tolist() == [z, [0, 1, 1, 1], [0, 1, 1, 1], z]
    assert t["v1"][1][0, 0].tolist() == [z, [0, 1, 0, 0], [0, 1, 0, 0], z]  # 9b along the same direction
    # v2: vs the cell two to the left (missing ones: the border cell); scores 0, 1, 0.5, 0
    assert t["v2"][0][0, 0].tolist() == [z, [0, 1, 1, 1], [0, 1, 1, 1], z]
    # h1: vs the upper neighbour; column 1: scores 0, 1, 1, 0 down the rows
    assert t["h1"][0][0, 0].tolist() == [z, [0, 1, 1, 0], [0, 0, 0, 0], [0, 1, 1, 0]]
    assert t["h1"][1][0, 0].tolist() == [z, [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    assert t["h2"][0][0, 0].tolist() == [z, [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    # a real face (all-zero mask) has all-zero targets
    assert all(float(a.sum()) == 0 and float(b.sum()) == 0 for a, b in anomaly_targets(torch.zeros(2, 1, 64, 64), 4).values())


def test_lem_attends_inside_its_cells_only():
    torch.manual_seed(0)
    lem = LEM(8, grid=2).eval()
    x = torch.randn(1, 8, 8, 8)
    assert torch.equal(lem(x), x)  # lambda starts at 0: the plain backbone
    with torch.no_grad():
        lem.scale.fill_(1.0)
        y = lem(x)
        x2 = x.clone()
        x2[..., :4, :4] += 1.0  # change the top-left cell only
        y2 = lem(x2)
    changed = (y2 - y).abs().sum(dim=1)[0] > 1e-5
    assert changed[:4, :4].all() and not changed[4:, :].any() and not changed[:, 4:].any()


@pytest.mark.parametrize("patch", [8, 16, 32])
def test_head_output_shapes_per_patch_size(patch):
    """Table 7's variants at 64 px: 8x8 / 4x4 / 2x2 local maps; 64 first-order and 1 second-order map per direction."""
    torch.manual_seed(0)
    model = build_arch("sola", pretrained=None, input_size=64, patch_size=patch, noise="none").eval()  # noise: below
    g = 64 // patch
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64), return_all=True)
    assert out["logits"].shape == (2, 2) and out["pooled"].shape == (2, 64)
    assert out["anomaly"].shape == (2, 4, g, g) and bool(((out["anomaly"] >= 0) & (out["anomaly"] <= 1)).all())
    for d in DIRECTIONS:
        assert out["first"][d].shape == (2, 64, g, g) and out["second"][d].shape == (2, 1, g, g)
    assert model.feature_maps(torch.rand(1, 3, 64, 64))[-1].shape[-1] == g
    assert model.meta()["options"]["patch_size"] == patch


def test_variants_and_bad_options():
    plain = build_arch("sola", pretrained=None, input_size=64, noise="none", lem=False)
    assert plain.asrm is None and plain.lem is None and plain.dcam is None
    with pytest.raises(UnmaskError, match="patch_size"):
        build_arch("sola", pretrained=None, input_size=64, patch_size=12)
    with pytest.raises(UnmaskError, match="multiple of 32"):
        build_arch("sola", pretrained=None, input_size=80)
    with pytest.raises(UnmaskError, match="unknown sola option"):
        build_arch("sola", pretrained=None, input_size=64, patchsize=16)
    with pytest.raises(UnmaskError, match="ResNet"):
        build_arch("sola", backbone="efficientnet_b0", pretrained=None, input_size=64)


def test_anomaly_heatmaps_are_the_second_order_maps_upsampled():
    """What ``unmask detect --heatmaps`` draws for SOLA: per face the max over the 4 maps, input-sized, unscaled."""
    from unmask.explain.anomaly import anomaly_heatmaps, has_anomaly_maps

    torch.manual_seed(0)
    model = build_arch("sola", pretrained=None, input_size=64, noise="none").eval()
    x = torch.rand(2, 3, 64, 64)
    heat = anomaly_heatmaps(model, x)
    assert has_anomaly_maps(model) and heat.shape == (2, 64, 64)
    maps = model.anomaly_maps(x).amax(dim=1)  # (2, 4, 4)
    assert abs(float(heat.max()) - float(maps.max())) < 0.05 and abs(float(heat.min()) - float(maps.min())) < 0.05
    assert not has_anomaly_maps(build_arch("timm_classifier", backbone="resnet18", pretrained=None, input_size=64))


def test_imagenet_weights_from_a_local_file_initialize_both_branches(tmp_path):
    """``pretrained``: a ResNet-18 weights file (offline stand-in for timm's tv_in1k) goes into both branches."""
    from unmask.models import build_backbone

    torch.manual_seed(3)
    ref = build_backbone("resnet18", pretrained=None, num_classes=1000).net
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = build_arch("sola", pretrained=str(tmp_path / "resnet18.pth"), input_size=64)
    for branch in (model.rgb, model.noise_net):
        assert torch.equal(branch.conv1.weight, ref.conv1.weight)
        assert torch.equal(branch.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
    assert model.meta()["pretrained"] == str(tmp_path / "resnet18.pth")


def test_detect_heatmaps_write_the_anomaly_maps_of_a_sola_checkpoint(tmp_path, astronaut_rgb, capsys):
    import json

    import numpy as np

    from unmask.cli import main
    from unmask.data.store import load_rgb
    from unmask.io import atomic_save_png
    from unmask.models import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "run" / "best.pt", build_arch("sola", pretrained=None, input_size=64, noise="none").eval())
    atomic_save_png(tmp_path / "face.png", astronaut_rgb)
    rc = main(["detect", str(tmp_path / "face.png"), "--checkpoint", str(tmp_path / "run"), "--format", "json",
               "--heatmaps", str(tmp_path / "heat")])
    assert rc == 0
    written = json.loads(capsys.readouterr().out)["results"][0]["heatmaps"]
    names = sorted(p.rsplit("/", 1)[-1] for p in written)
    assert names == ["face_png.png", "face_png_anomaly.png"]
    anomaly = load_rgb(tmp_path / "heat" / "face_png_anomaly.png")
    assert anomaly.shape == astronaut_rgb.shape and not np.array_equal(anomaly, astronaut_rgb)  # the face is coloured
