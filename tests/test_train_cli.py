"""`unmask train` end to end on the prepared shared FF++ sample (real crops, real synthesis, real network)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from unmask.cli import main
from unmask.models import load_detector
from unmask.train.config import load_train_config
from unmask.train.loop import train
from unmask.train.runlog import read_metrics

from _train_fixtures import one_torch_thread  # noqa: F401 (autouse)

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"

FAST = ["model.backbone=resnet18", "model.pretrained=null", "model.input_size=64", "epochs=1", "steps_per_epoch=2",
        "batch_size=4", "run.progress=false", "data.max_val_faces=40"]


def test_unmask_train_bbmg_nrs_writes_a_run_dir(prepared_ffpp, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--config", str(TINY / "bbmg_nrs.yaml"), f"data.store={prepared_ffpp}", "--out", str(out),
               *FAST])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2
    for name in ("config.yaml", "git.txt", "metrics.jsonl", "last.pt", "best.pt", "tensorboard"):
        assert (out / name).exists(), name
    assert yaml.safe_load((out / "config.yaml").read_text())["method"]["name"] == "bbmg_nrs"
    assert len((out / "git.txt").read_text().strip()) >= 7
    (val,) = read_metrics(out, "val")
    assert val["videos"] >= 2 and val["real_videos"] >= 1 and 0.0 <= val["video_auc"] <= 1.0
    det, meta = load_detector(out)
    assert meta["backbone"] == "resnet18" and meta["input_size"] == 64 and meta["val"]["video_auc"] == val["video_auc"]
    assert det(torch.rand(1, 3, 64, 64)).shape == (1, 2)
    # the same command again resumes: nothing left to do, no step repeated
    assert main(["train", "--config", str(TINY / "bbmg_nrs.yaml"), f"data.store={prepared_ffpp}", "--out",
                 str(out), *FAST]) == 0
    assert len(read_metrics(out, "train")) == 2
    # ... but a changed config is refused, naming the key
    assert main(["train", "--config", str(TINY / "bbmg_nrs.yaml"), f"data.store={prepared_ffpp}", "--out",
                 str(out), *FAST, "optim.lr=0.1"]) == 1
    assert "optim.lr" in capsys.readouterr().err


def test_baseline_recipe_trains_on_real_and_fake_faces(prepared_ffpp, tmp_path):
    cfg = load_train_config(TINY / "baseline.yaml", [f"data.store={prepared_ffpp}", *FAST,
                                                            "run.tensorboard=false"])
    result = train(cfg, tmp_path / "run")
    assert result.steps == 2 and all(l > 0 for l in result.losses)


def test_missing_store_is_a_one_line_error(tmp_path, capsys):
    rc = main(["train", "--config", str(TINY / "sbi.yaml"), f"data.store={tmp_path / 'nope'}", "--out",
               str(tmp_path / "run"), *FAST])
    assert rc == 1 and "prepared store not found" in capsys.readouterr().err
