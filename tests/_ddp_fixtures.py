"""One two-process DDP session (gloo, CPU, torch.multiprocessing spawn) for every DDP test of the suite.

Each spawned rank is a fresh interpreter that imports torch, unmask and this module before it trains anything:
on a loaded 2-core machine that start-up, not the 2-4 tiny steps, was most of each DDP test's time (measured
Dec 2, load ~6: three tests spawning a pair each, 54-58 s; one spawn training the three jobs, 21 s). So the
ranks join one process group once and train every job below in turn (``train`` reuses an initialized group),
saving each job's per-rank results; each test then asserts on its own job's files, as it did when it spawned
its own pair. A job's run is the one the test ran before: same config, same data, seeded afresh by ``train``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

TINY = ["model.backbone=resnet18", "model.pretrained=null", "model.input_size=32", "run.progress=false",
        "run.tensorboard=false", "data.num_workers=0"]

# job name -> (config overrides, toy data size, what of the method's state to save besides weights and losses)
DDP_JOBS: dict[str, tuple[list[str], int, str]] = {
    # tests/test_train_loop.py: bbmg_nrs with SAM, NRS from epoch 2 (centres gathered across ranks)
    "bbmg_nrs": (["method.name=bbmg_nrs", "method.nrs.start_epoch=2", "method.nrs.k_s=4", "method.nrs.k=2", *TINY,
                  "optim.name=sam", "optim.lr=0.01", "epochs=2", "batch_size=2", "steps_per_epoch=2",
                  "schedule.name=constant"], 16, "centres"),
    # tests/test_methods_pim.py: PIM (alpha 1: clean pass without weight gradients) and DualFlat, one d per step
    **{name: ([f"method.name={name}", "method.recipe=sbi", *TINY, "optim.name=sgd", "optim.lr=0.01", "epochs=1",
               "batch_size=2", "steps_per_epoch=2", "schedule.name=constant"], 16, "d")
       for name in ("pim", "dualflat")},
}


def _extra(method, what: str):
    import torch

    if what == "centres":
        return method.memory.centres
    return torch.cat([method.stats.d_mu, method.stats.d_sigma])


def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: join the group, train every job of DDP_JOBS under ``out/<job>/run``, save ``rank<r>.pt`` each."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)

    from _train_fixtures import toy_train_data, train_capturing_method
    from unmask.train.config import load_train_config

    for name, (overrides, n, what) in DDP_JOBS.items():
        job = Path(out) / name
        result, method = train_capturing_method(load_train_config(None, overrides), job / "run", toy_train_data(n=n))
        torch.save({"weights": method.model.module.state_dict(), "extra": _extra(method, what),
                    "losses": result.losses}, job / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="session")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``<job>/rank0.pt``, ``<job>/rank1.pt`` and ``<job>/run/`` for every job of DDP_JOBS."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_worker, args=(2, port, str(out)), nprocs=2, join=True)
    return out


def ddp_ranks(out: Path, job: str) -> tuple[dict, dict]:
    """(rank 0's, rank 1's) saved results of ``job``."""
    import torch

    return (torch.load(out / job / "rank0.pt", weights_only=True), torch.load(out / job / "rank1.pt", weights_only=True))
