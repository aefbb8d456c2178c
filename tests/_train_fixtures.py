"""Small in-memory datasets in the trainer's batch formats, for trainer tests that must not wait on a store.

``ToyPairs``: the pair format of ``unmask.synthesis.pair_collate`` (B reals then their B fakes). A "fake" is its
real with a bright square blended in at a random place: learnable, like a pseudo-fake's blending boundary.
Every sample is a pure function of (seed, epoch, index), as the real datasets are.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, default_collate

from unmask.train.data import TrainData


class ToyPairs(Dataset):
    def __init__(self, n: int = 32, size: int = 32, seed: int = 0) -> None:
        self.n, self.size, self.seed, self.epoch = n, size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + index)
        real = torch.rand(3, self.size, self.size, generator=g) * 0.5 + 0.25
        fake = real.clone()
        s = self.size // 3
        y, x = torch.randint(0, self.size - s, (2,), generator=g).tolist()
        fake[:, y : y + s, x : x + s] = 0.5 * fake[:, y : y + s, x : x + s] + 0.5
        return {"real": real, "fake": fake, "index": index}


def toy_pair_collate(items):
    reals = torch.stack([it["real"] for it in items])
    fakes = torch.stack([it["fake"] for it in items])
    idx = torch.tensor([it["index"] for it in items])
    b = len(items)
    return {"image": torch.cat([reals, fakes]), "label": torch.cat([torch.zeros(b), torch.ones(b)]).long(),
            "mask": torch.zeros(2 * b, 1, reals.shape[-2], reals.shape[-1]), "index": torch.cat([idx, idx])}


def toy_train_data(n: int = 32, size: int = 32, seed: int = 0) -> TrainData:
    return TrainData(train=ToyPairs(n, size, seed), collate=toy_pair_collate, val=None, val_faces=[],
                     images_per_sample=2)


class ToyPRLE(Dataset):
    """``ToyPairs``' reals and fakes as single faces (B of them, both classes), each through PRLE's own loader-side
    masking (``unmask.methods.prle.PRLEAugment``, random rectangles: no store, no maps), as the ``prle`` recipe
    yields them: image, label, index, prle_aug / prle_alpha / prle_area."""

    def __init__(self, n: int = 32, size: int = 32, seed: int = 0) -> None:
        from unmask.methods.prle import PRLEAugment

        self.pairs = ToyPairs(n, size, seed)
        self.aug = PRLEAugment(p=0.5, mask_source="random")

    def set_epoch(self, epoch: int) -> None:
        self.pairs.set_epoch(epoch)

    def __len__(self) -> int:
        return 2 * self.pairs.n

    def __getitem__(self, index: int):
        import numpy as np

        pair = self.pairs[index // 2]
        label = index % 2
        img = (pair["fake" if label else "real"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        rng = np.random.default_rng((self.pairs.seed, self.pairs.epoch, index))
        img, extra = self.aug(img, None, None, rng)
        item = {"image": torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255,
                "label": torch.tensor(label), "index": torch.tensor(index)}
        item.update({k: torch.tensor(v, dtype=torch.float32) for k, v in extra.items()})
        return item


def toy_prle_data(n: int = 32, size: int = 32, seed: int = 0) -> TrainData:
    return TrainData(train=ToyPRLE(n // 2, size, seed), collate=default_collate, val=None, val_faces=[],
                     images_per_sample=1)


def cpu_method(cfg):
    """(method, model): the config's method with its model built from torch seed 0 and attached on CPU, as the
    trainer would, for tests that drive ``method.step`` and the epoch hooks themselves."""
    from unmask.methods import build_method

    torch.manual_seed(0)
    method = build_method(cfg)
    model = method.build()
    method.attach(model, device=torch.device("cpu"))
    return method, model


def train_capturing_method(cfg, run_dir, data):
    """``unmask.train.loop.train`` that also returns the Method it built, for tests that inspect its state
    after training (DDP ranks comparing weights, NRS centres, PIM's d)."""
    from unmask.train import loop

    captured = {}
    real_build = loop.build_method

    def build(c):
        captured["method"] = real_build(c)
        return captured["method"]

    loop.build_method = build
    try:
        result = loop.train(cfg, run_dir, data=data)
    finally:
        loop.build_method = real_build
    return result, captured["method"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for these small models: on a shared 2-core machine, OpenMP's second thread makes
    small steps several times slower (measured: 25 resnet18@32 steps, 11 s with 1 thread vs 61 s with 2)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


__all__ = ["one_torch_thread", "ToyPairs", "ToyPRLE", "toy_pair_collate", "toy_train_data", "toy_prle_data",
           "default_collate"]
