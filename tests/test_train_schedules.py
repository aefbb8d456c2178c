"""LR schedules and the epoch sampler: the pure functions a resume relies on."""

from __future__ import annotations

import pytest

from unmask.train.config import ScheduleConfig
from unmask.train.schedules import lr_factor
from unmask.train.seeding import EpochSampler


def test_linear_decay_is_flat_until_decay_start_then_falls_linearly():
    cfg = ScheduleConfig(name="linear_decay", decay_start=75)
    f = [lr_factor(cfg, e * 10, 10, 100) for e in range(100)]
    assert f[:75] == [1.0] * 75
    drops = [a - b for a, b in zip(f[74:], f[75:])]
    assert all(d == pytest.approx(drops[0]) and d > 0 for d in drops)
    assert 0 < f[-1] < 0.05
    assert lr_factor(cfg, 755, 10, 100) == f[75]  # once per epoch, as SBI's scheduler


def test_exponential_and_warmup():
    cfg = ScheduleConfig(name="exponential", gamma=0.9)
    assert lr_factor(cfg, 3 * 50 + 7, 50, 10) == pytest.approx(0.9**3)
    warm = ScheduleConfig(name="constant", warmup_epochs=1)
    assert lr_factor(warm, 0, 10, 5) == pytest.approx(0.1) and lr_factor(warm, 10, 10, 5) == 1.0


def test_sampler_is_a_function_of_seed_and_epoch_and_skips_exactly():
    s = EpochSampler(10, batch_size=4, steps=5, seed=3)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 20 and sorted(full[:10]) == list(range(10))  # whole permutations, then the next
    s.set_start(8)
    assert list(s) == full[8:]
    s2 = EpochSampler(10, batch_size=4, steps=5, seed=3)
    s2.set_epoch(2)
    assert list(s2) == full
    s2.set_epoch(3)
    assert list(s2) != full


def test_sampler_ranks_partition_the_epoch():
    parts = []
    for rank in range(2):
        s = EpochSampler(16, batch_size=2, steps=4, seed=0, rank=rank, world_size=2)
        s.set_epoch(1)
        parts.append(list(s))
    assert len(parts[0]) == len(parts[1]) == 8
    assert sorted(parts[0] + parts[1]) == list(range(16))
