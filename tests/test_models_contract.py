"""The architecture contract, tested over every registered arch (timm's tests/test_models.py pattern).

A new network registers itself with ``@register_arch`` and adds one small build config to ``SMALL`` below;
these tests then check everything the stages after training rely on: forward/backward, one-pass features,
a bit-identical save -> load round trip, ONNX export with ONNX Runtime parity, a Grad-CAM map of the input's
size, and a ``shallow_stage`` on the forward path where PIM-style hooks fire.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unmask.models import ARCHS, build_arch, load_detector, save_checkpoint
from unmask.models.checkpoint import CHECKPOINT_FORMAT

# Small, fast builds per arch (random init). Every registered arch must have one.
SMALL: dict[str, dict] = {
    "timm_classifier": {"backbone": "resnet18", "input_size": 64},
    "f3net": {"input_size": 64},
    "sola": {"backbone": "resnet18", "input_size": 64},
    "l2m_student": {"backbone": "resnet18", "input_size": 64, "mlp_hidden": 32},
}

ARCH_NAMES = sorted(ARCHS)


def test_every_registered_arch_has_a_small_build():
    missing = sorted(set(ARCHS) - set(SMALL))
    assert not missing, f"add a small build config for {missing} to SMALL"


@pytest.fixture(scope="module", params=ARCH_NAMES)
def model(request):
    torch.manual_seed(0)
    return build_arch(request.param, pretrained=None, **SMALL[request.param])


def _batch(model, n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, model.input_size, model.input_size, generator=g)


def test_forward_backward(model):
    model.train()
    x = _batch(model)
    logits = model(x)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    model.zero_grad()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:1]) and any(float(g.abs().sum()) > 0 for g in grads if g is not None)
    model.zero_grad()
    model.eval()


def test_features_come_from_the_same_pass(model):
    model.eval()
    x = _batch(model)
    with torch.no_grad():
        logits, feats = model(x, return_features=True)
        assert torch.equal(logits, model(x))
        assert torch.allclose(feats, model.features(x), atol=1e-6)
    assert feats.ndim == 2 and feats.shape[0] == 2


def test_feature_maps_are_shallow_to_deep(model):
    with torch.no_grad():
        maps = model.feature_maps(_batch(model))
    assert len(maps) >= 2
    sizes = [m.shape[-1] for m in maps if m.ndim == 4]
    assert sizes == sorted(sizes, reverse=True)


def test_meta_is_json_and_round_trips_bit_identically(model, tmp_path):
    model.eval()
    meta = model.meta()
    assert meta["arch"] == model.arch and json.loads(json.dumps(meta)) == meta
    save_checkpoint(tmp_path / "best.pt", model)
    loaded, lmeta = load_detector(tmp_path)
    assert type(loaded) is type(model) and lmeta["arch"] == model.arch
    x = _batch(model)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_onnx_export_matches_torch(model, tmp_path):
    from unmask.export import check_agreement, export_onnx

    model.eval()
    path = export_onnx(model, tmp_path / "m.onnx", meta={"arch": model.arch})
    check = check_agreement(model, path)
    assert check["max_abs_diff_prob"] < 1e-4 and check["max_abs_diff_logits"] < 1e-3, check


def test_gradcam_map_has_the_input_size(model):
    from unmask.explain.gradcam import gradcam_maps

    maps, probs = gradcam_maps(model, _batch(model))
    assert maps.shape == (2, model.input_size, model.input_size)
    assert np.all((maps >= 0) & (maps <= 1)) and probs.shape == (2,)


def test_shallow_stage_is_on_the_forward_path(model):
    """A PIM-style hook (re-scale the shallow features' statistics) fires once per forward and moves the logits."""
    model.eval()
    x = _batch(model)
    calls = []

    def perturb(_module, _inputs, out):
        calls.append(tuple(out.shape))
        return out * 1.5 + 0.1

    with torch.no_grad():
        clean = model(x)
        handle = model.shallow_stage.register_forward_hook(perturb)
        try:
            perturbed = model(x)
        finally:
            handle.remove()
        again = model(x)
    assert len(calls) == 1 and calls[0][0] == 2
    assert not torch.allclose(clean, perturbed) and torch.equal(clean, again)


# --- timm families: shallow stage and Grad-CAM per family (small members, same code paths) -------------------

FAMILIES = {  # family -> (small timm model, expected shallow-stage output rank, stride of the shallow stage)
    "resnet": ("resnet18", 4, 4),
    "convnext": ("convnext_atto", 4, 4),
    "efficientnet": ("efficientnet_b0", 4, 4),
    "xception": ("legacy_xception", 4, 16),
    "vgg": ("vgg11", 4, 4),
    "vit": ("vit_tiny_patch16_224", 3, None),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_timm_family_shallow_stage_and_gradcam(family):
    from unmask.explain.gradcam import gradcam_maps

    name, rank, stride = FAMILIES[family]
    size = 64
    det = build_arch("timm_classifier", backbone=name, pretrained=None, input_size=size).eval()
    assert det.family == family
    seen = []
    handle = det.shallow_stage.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        with torch.no_grad():
            det(torch.rand(1, 3, size, size))
    finally:
        handle.remove()
    assert len(seen) == 1 and len(seen[0]) == rank
    if stride:
        assert seen[0][-1] == size // stride
    maps, _ = gradcam_maps(det, torch.rand(1, 3, size, size))
    assert maps.shape == (1, size, size)


def test_a_pre_registry_checkpoint_still_loads(tmp_path):
    """Checkpoints written before the registry have no ``arch`` in their meta (and drop_rate under timm_kwargs)."""
    torch.manual_seed(0)
    det = build_arch("timm_classifier", backbone="resnet18", pretrained=None, input_size=64).eval()
    old_meta = {"backbone": "resnet18", "timm_name": "resnet18", "input_size": 64, "mean": list(det.mean_values),
                "std": list(det.std_values), "num_classes": 2, "pretrained": None, "timm_kwargs": {"drop_rate": 0.0}}
    torch.save({"format": CHECKPOINT_FORMAT, "detector": old_meta, "model": det.state_dict(), "config": None,
                "val": None, "epoch": 1, "step": 1, "training": None}, tmp_path / "best.pt")
    loaded, meta = load_detector(tmp_path)
    assert loaded.arch == "timm_classifier"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), det(x))
