"""ONNX export: ONNX Runtime and torch agree on a real face crop, batch size is dynamic, the CLI checks it."""

import json

import numpy as np
import onnx
import pytest
import torch

from unmask.cli import main
from unmask.export import check_agreement, export_onnx, onnx_logits, reference_crop


@pytest.fixture(scope="module")
def small_detector():
    from unmask.models import build_detector

    torch.manual_seed(1)
    return build_detector("resnet18", pretrained=None, input_size=96).eval()


def test_onnx_agrees_with_torch_on_the_astronaut_face(small_detector, tmp_path):
    path = export_onnx(small_detector, tmp_path / "m.onnx", meta={"backbone": "resnet18"})
    crop = reference_crop(96)
    assert crop.shape == (96, 96, 3)
    # the crop is a face, not the fallback: dlib finds the astronaut's face
    check = check_agreement(small_detector, path)
    assert check["batch"] == 2
    assert check["max_abs_diff_logits"] < 1e-4
    assert check["max_abs_diff_prob"] < 1e-5
    # the two crops (face and mirrored face) give different logits: the check compares real outputs
    t = np.array(check["torch_logits"])
    assert np.abs(t[0] - t[1]).max() > 1e-6
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["input_size"] == "96" and json.loads(props["labels"]) == ["real", "fake"]
    assert props["backbone"] == "resnet18"


def test_batch_axis_is_dynamic(small_detector, tmp_path):
    path = export_onnx(small_detector, tmp_path / "m.onnx")
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        ref = small_detector(x).numpy()
    got = onnx_logits(path, x.numpy())
    assert got.shape == (3, 2)
    assert np.abs(got - ref).max() < 1e-4


def test_export_command_on_a_checkpoint(small_detector, tmp_path, capsys):
    from unmask.models import save_checkpoint

    ck = save_checkpoint(tmp_path / "run" / "best.pt", small_detector)
    assert main(["export", "--checkpoint", str(ck.parent), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["onnx"] == str(tmp_path / "run" / "best.onnx")
    assert (tmp_path / "run" / "best.onnx").is_file()
    assert out["max_abs_diff_logits"] < 1e-4


def test_export_without_checkpoint_is_a_one_line_error(capsys):
    assert main(["export", "--output", "x.onnx"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("unmask export: error: no --checkpoint given") and "\n" not in err
