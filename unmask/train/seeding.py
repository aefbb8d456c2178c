"""Reproducibility: seeding, DataLoader worker seeding, RNG state capture/restore, the epoch sampler.

Why a sampler of our own: exact resume from a mid-epoch checkpoint needs the order of an epoch to be a pure
function of (seed, epoch) and the position inside it to be skippable. Data randomness is per sample from
(seed, epoch, index) in the datasets, and model randomness (dropout) comes from torch's global generator,
whose state every checkpoint saves.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from unmask.process import exit_with_parent


def seed_everything(seed: int) -> None:
    """Seed python, numpy's legacy global RNG (for third-party code) and torch (CPU + CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader workers: derive numpy/python seeds from torch's per-worker seed (base seed + worker id), and
    end with the trainer (a kill -9 of ``unmask train`` must not leave its loader workers behind). torch's own
    worker loop also polls its parent, every 5 s between batches; this makes it immediate and mid-batch."""
    exit_with_parent()
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def capture_rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`, also after a checkpoint round trip (which stores numpy's key
    array as a tensor and tuples as lists: checkpoints hold plain data only, see ``unmask.models.checkpoint``)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, key, pos, has_gauss, cached = state["numpy"]
    key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((name, key.astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class EpochSampler(Sampler[int]):
    """Per-rank indices of one epoch: ``steps * batch_size`` of them, from permutations seeded by (seed, epoch).

    The global order concatenates fresh permutations of the dataset until ``steps * batch_size * world_size``
    indices exist (so ``steps_per_epoch`` may exceed one pass); rank r takes every world_size-th index from r.
    ``set_epoch`` picks the epoch (as DistributedSampler), ``set_start`` skips the first n indices of this
    rank (resuming mid-epoch).

    ``labels`` (one per dataset index) makes the draw **class-balanced** (``data.balanced``): every class fills an
    equal share of the epoch from its own fresh permutations (a minority class repeats, a majority class is
    subsampled), interleaved by one more seeded permutation, so any window of the order is ~1:1 and the
    order stays a pure function of (seed, epoch).
    """

    def __init__(self, dataset_size: int, batch_size: int, steps: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, labels=None) -> None:
        if dataset_size <= 0:
            raise ValueError("the training set is empty")
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and self.labels.shape != (dataset_size,):
            raise ValueError(f"labels: one per sample expected ({dataset_size}), got {self.labels.shape}")
        self.n = dataset_size
        self.batch_size = batch_size
        self.steps = steps
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def epoch_indices(self) -> list[int]:
        total = self.steps * self.batch_size * self.world_size
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.labels is not None:
            return self._balanced(total, gen)[self.rank :: self.world_size]
        order: list[int] = []
        while len(order) < total:
            order += torch.randperm(self.n, generator=gen).tolist() if self.shuffle else list(range(self.n))
        return order[:total][self.rank :: self.world_size]

    def _balanced(self, total: int, gen: torch.Generator) -> list[int]:
        classes = np.unique(self.labels)
        share = -(-total // len(classes))  # ceil: every class the same count
        picked: list[int] = []
        for c in classes:
            members = np.flatnonzero(self.labels == c)
            order: list[int] = []
            while len(order) < share:
                order += members[torch.randperm(members.size, generator=gen).numpy()].tolist()
            picked += order[:share]
        mix = torch.randperm(len(picked), generator=gen).tolist()
        return [picked[i] for i in mix][:total]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start :])

    def __len__(self) -> int:
        return self.steps * self.batch_size - self.start
