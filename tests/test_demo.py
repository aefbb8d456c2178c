"""README command 1 (`unmask demo`) runs every stage on the embedded face and leaves its outputs."""

import json
import re
import subprocess
import sys

import cv2
import pytest


def test_demo_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    args = [sys.executable, "-m", "unmask.cli", "demo", "--out", str(out), "--steps", "2", "--epochs", "2",
            "--frames", "6", "--fakes", "1"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for png in ("faces.png", "synth_bbmg.png", "heatmaps/astronaut_png.png", "heatmaps/astronaut_bbmg_pseudofake1_png.png",
                "heatmaps/grace_hopper_png.png", "heatmaps/grace_hopper_sbi_pseudofake1_png.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.std() > 5, png  # a real picture, not a blank
    assert (out / "run" / "last.pt").is_file()
    rows = {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^((?:astronaut|grace_hopper)\S*\.png)\s.*?\s(\d\.\d{3})\s+(?:\d\.\d{3}|-)\s+(?:real|fake)",
                        proc.stdout, flags=re.M)}
    assert set(rows) == {"grace_hopper.png", "grace_hopper_sbi_pseudofake1.png", "grace_hopper_bbmg_pseudofake1.png",
                         "astronaut.png", "astronaut_sbi_pseudofake1.png", "astronaut_bbmg_pseudofake1.png"}
    assert all(0.0 <= p <= 1.0 for p in rows.values())
    summary = json.loads((out / "demo.json").read_text())
    assert summary["scored"] == 6 and summary["auc_grace_hopper"] is not None and 0 <= summary["auc_all"] <= 1
    assert {r["image"]: r["fake_probability"] for r in summary["images"]} == pytest.approx(rows, abs=6e-4)
    # trained with a validation clip: best.pt is calibrated, and the demo says so
    cal = summary["model"]["calibration"]
    assert cal["temperature"] > 0 and "val split" in cal["fitted_on"] and "calibrated (T = " in proc.stdout
    assert re.search(r"^AUC, reals vs pseudo-fakes: Grace Hopper [0-9.]+", proc.stdout, flags=re.M)
    # a second run resumes: nothing is prepared again. In-process (the same `main` the subprocess ran; the
    # command line itself was tested above): a second interpreter start-up only cost time (~5 s, loaded 2 cores)
    from unmask.cli import main

    capsys.readouterr()
    assert main(args[3:]) == 0, capsys.readouterr().err[-2000:]
    assert "2 already done, 0 processed" in capsys.readouterr().out


def test_freeze_bn_stats_keeps_the_pretrained_statistics(tmp_path):
    """model.freeze_bn_stats (the demo's one-face training): BatchNorm's running statistics stay as built while
    the weights, BN's affine ones included, learn; without it the statistics move."""
    import torch

    from _train_fixtures import toy_train_data
    from unmask.models.checkpoint import load_checkpoint
    from unmask.train.config import load_train_config
    from unmask.train.loop import train

    base = ["method.name=sbi", "model.backbone=resnet18", "model.pretrained=null", "model.input_size=32",
            "run.progress=false", "run.tensorboard=false", "data.num_workers=0", "epochs=1", "steps_per_epoch=2",
            "batch_size=4", "optim.name=adam", "optim.lr=1e-2"]
    torch.manual_seed(0)
    runs = {}
    for frozen in (True, False):
        torch.manual_seed(0)
        train(load_train_config(None, base + [f"model.freeze_bn_stats={str(frozen).lower()}"]), tmp_path / str(frozen),
              data=toy_train_data(n=8))
        runs[frozen] = load_checkpoint(tmp_path / str(frozen) / "last.pt")["model"]
    stats = [k for k in runs[True] if k.endswith("running_mean")]
    assert stats
    # a fresh resnet18's BN running mean is 0 and var 1: frozen keeps them, unfrozen moves them
    assert all(torch.equal(runs[True][k], torch.zeros_like(runs[True][k])) for k in stats)
    assert not all(torch.equal(runs[False][k], torch.zeros_like(runs[False][k])) for k in stats)
    weights = [k for k in runs[True] if k.endswith("bn1.weight")]
    assert any(not torch.equal(runs[True][k], torch.ones_like(runs[True][k])) for k in weights)  # affine learns
