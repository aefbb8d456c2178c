"""The trainer on real (random-init) networks: learning, exact resume after a kill, DDP, run directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from unmask.train.config import load_train_config
from unmask.train.loop import KILL_ENV, train
from unmask.train.optim import build_optimizer
from unmask.train.runlog import read_metrics

from _ddp_fixtures import ddp_ranks  # the ddp_runs fixture: tests/conftest.py
from _train_fixtures import (cpu_method, one_torch_thread, ToyPairs, toy_pair_collate,  # noqa: F401 (autouse)
                             toy_train_data)

TESTS = Path(__file__).resolve().parent
TINY = ["model.backbone=resnet18", "model.pretrained=null", "model.input_size=32", "run.progress=false",
        "run.tensorboard=false", "data.num_workers=0"]


def test_overfits_one_batch():
    cfg = load_train_config(None, ["method.name=sbi", *TINY, "optim.name=adam", "optim.lr=1e-3"])
    method, model = cpu_method(cfg)
    opt = build_optimizer(model.parameters(), cfg.optim)
    ds = ToyPairs(n=4, size=32)
    batch = toy_pair_collate([ds[i] for i in range(4)])
    losses = [method.step(batch, opt, None)["loss"] for _ in range(25)]
    assert losses[0] > 0.3 and losses[-1] < 0.05, losses


# bbmg_nrs with NRS from epoch 2, SAM, dropout: every kind of state a resume must restore.
RESUME_ARGS = ["method.name=bbmg_nrs", "method.nrs.start_epoch=2", "method.nrs.k_s=8", "method.nrs.k=2",
               *TINY, "model.drop_rate=0.3", "optim.name=sam", "optim.lr=0.01", "schedule.name=cosine",
               "epochs=3", "batch_size=4", "steps_per_epoch=4", "run.log_every=1", "run.save_every_steps=3"]

_CHILD = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)  # as the in-process runs of the test (thread count changes float sums)
    sys.path.insert(0, {tests!r})
    from _train_fixtures import toy_train_data
    from unmask.train.config import load_train_config
    from unmask.train.loop import train
    train(load_train_config(None, {args!r}), {run!r}, data=toy_train_data(n=12))
    """
)


def test_kill_mid_epoch_and_resume_reproduces_the_losses(tmp_path):
    ref = train(load_train_config(None, RESUME_ARGS), tmp_path / "ref", data=toy_train_data(n=12))
    assert len(ref.losses) == 12

    run = tmp_path / "killed"
    env = {**os.environ, KILL_ENV: "7"}  # SIGKILL after step 7: last.pt is from step 6, mid-epoch 2
    code = _CHILD.format(tests=str(TESTS), args=RESUME_ARGS, run=str(run))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["training"]["step_in_epoch"] == 2  # a mid-epoch resume point

    resumed = train(load_train_config(None, RESUME_ARGS), run, data=toy_train_data(n=12))
    assert resumed.losses == ref.losses[6:]  # exactly, not approximately
    logged = [r["loss"] for r in read_metrics(run, "train")]
    assert logged == ref.losses  # the log reads as one uninterrupted run
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_ddp_ranks_agree(ddp_runs):
    """bbmg_nrs with SAM on two gloo ranks (the shared DDP session of _ddp_fixtures: DDP_JOBS["bbmg_nrs"])."""
    r0, r1 = ddp_ranks(ddp_runs, "bbmg_nrs")
    assert r0["weights"].keys() == r1["weights"].keys()
    for k in r0["weights"]:
        if "running" in k or "num_batches" in k:
            continue  # BN statistics are per rank (no SyncBN)
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k
    centres0, centres1 = r0["extra"], r1["extra"]
    assert centres0 is not None and torch.equal(centres0, centres1)  # NRS gathered across ranks
    assert r0["losses"] != r1["losses"]  # the ranks did see different data
    assert (ddp_runs / "bbmg_nrs" / "run" / "last.pt").is_file()
