"""Checkpoints: save -> load_detector round trip from a file and from a run directory; clear errors."""

from __future__ import annotations

import pytest
import torch

from unmask.errors import UnmaskError, WeightsNotFoundError
from unmask.models import build_detector, load_detector, save_checkpoint


def test_round_trip_file_and_run_dir(tmp_path):
    torch.manual_seed(0)
    det = build_detector("resnet18", pretrained=None, input_size=96).eval()
    with torch.no_grad():  # make the weights differ from a fresh random init
        det.net.fc.bias.add_(3.0)
    x = torch.rand(2, 3, 96, 96)
    save_checkpoint(tmp_path / "best.pt", det, config={"seed": 1}, val={"video_auc": 0.75}, epoch=3, step=30)
    for where in (tmp_path / "best.pt", tmp_path):
        loaded, meta = load_detector(where)
        assert not loaded.training
        assert torch.allclose(loaded(x), det(x))
        assert meta["backbone"] == "resnet18" and meta["input_size"] == 96
        assert meta["val"] == {"video_auc": 0.75} and meta["config"] == {"seed": 1} and meta["epoch"] == 3
        assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_run_dir_without_best_uses_last(tmp_path):
    det = build_detector("resnet18", pretrained=None, input_size=64)
    save_checkpoint(tmp_path / "last.pt", det)
    _, meta = load_detector(tmp_path)
    assert meta["path"].endswith("last.pt")


def test_errors_name_the_path(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        load_detector(tmp_path / "missing.pt")
    with pytest.raises(WeightsNotFoundError, match="no checkpoint"):
        load_detector(tmp_path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UnmaskError, match="bad.pt"):
        load_detector(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UnmaskError, match="not an unmask checkpoint"):
        load_detector(foreign)
