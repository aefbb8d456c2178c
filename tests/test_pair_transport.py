"""uint8 transport of training pairs: the loader moves uint8 images, the training loop turns them into float32
in [0, 1] on the device (``unmask.train.data.to_float_images``), and the method sees what it always saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unmask.train.config import load_train_config
from unmask.train.data import TrainData, to_float_images

from _train_fixtures import one_torch_thread  # noqa: F401 (autouse)


@pytest.fixture(scope="module")
def astro_pairs(astronaut_face_records):
    from unmask.synthesis import PairDataset

    faces, loader = astronaut_face_records
    return PairDataset(faces[:4], "sbi", image_size=48, seed=0, loader=loader)


def test_to_float_images_is_the_one_conversion():
    u8 = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    batch = {"image": u8, "label": torch.zeros(4, dtype=torch.long)}
    out = to_float_images(batch)
    assert out["image"].dtype == torch.float32 and torch.equal(out["image"] * 255.0, u8.float())
    assert out["label"] is batch["label"] and batch["image"] is u8  # the input batch is left as it was
    f = torch.rand(2, 3, 4, 4)
    assert to_float_images({"image": f})["image"] is f  # float datasets (FaceDataset) pass through


def test_the_loop_hands_methods_float_images_from_uint8_pairs(astro_pairs, tmp_path):
    """A real training run on PairDataset batches: the loader yields uint8, every method step gets float32 in
    [0, 1] equal to the pair's bytes / 255."""
    from unmask.synthesis import pair_collate
    from unmask.train import loop

    seen: list[torch.Tensor] = []
    real_build = loop.build_method

    def build(cfg):
        method = real_build(cfg)
        step = method.step

        def recording_step(batch, *a, **kw):
            seen.append(batch["image"].detach().clone())
            return step(batch, *a, **kw)

        method.step = recording_step
        return method

    cfg = load_train_config(None, ["method.name=sbi", "model.backbone=resnet18", "model.pretrained=null",
                                   "model.input_size=48", "run.progress=false", "run.tensorboard=false",
                                   "data.num_workers=0", "epochs=1", "batch_size=2", "steps_per_epoch=2",
                                   "schedule.name=constant"])
    data = TrainData(train=astro_pairs, collate=pair_collate, val=None, val_faces=[], images_per_sample=2)
    assert pair_collate([astro_pairs[0], astro_pairs[1]])["image"].dtype == torch.uint8
    loop.build_method = build
    try:
        result = loop.train(cfg, tmp_path / "run", data=data)
    finally:
        loop.build_method = real_build
    assert len(seen) == 2 and np.isfinite(result.losses).all()
    for x in seen:
        assert x.dtype == torch.float32 and x.shape == (4, 3, 48, 48)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        u8 = (x * 255.0).round()
        assert torch.allclose(x * 255.0, u8, atol=1e-3)  # exactly bytes / 255
    # The reals of the first step are pairs the sampler drew: each is one of the dataset's real images / 255.
    reals = {torch.from_numpy(astro_pairs.pair(i)["real"]).permute(2, 0, 1).float().div(255.0).sum().item()
             for i in range(len(astro_pairs))}
    assert all(any(abs(x[j].sum().item() - r) < 1e-2 for r in reals) for x in seen for j in range(2))


_FAULTS = """
import resource, sys
import cv2
cv2.setNumThreads(1)  # as in a loader worker
from unmask.data.store import PreparedStore
from unmask.synthesis import PairDataset
if sys.argv[2] == "keep":
    from unmask.process import keep_freed_memory
    assert keep_freed_memory()
ds = PairDataset(PreparedStore(sys.argv[1]).faces(split="train", labels=[0])[:4], "sbi", image_size=380, seed=0)
for i in range(4):
    ds[i]
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(12):
    ds.set_epoch(1 + i)
    ds[i % len(ds)]
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_workers_reuse_freed_image_buffers(prepared_ffpp):
    """keep_freed_memory (called in every PairDataset loader worker): the buffers a pair frees are reused by the
    next pair instead of being unmapped and zero-filled again -- counted as page faults, in fresh processes,
    on FF++ crops (measured: ~450 faults per 380 px sbi pair without it, ~0 with it)."""
    import subprocess
    import sys

    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, str(prepared_ffpp), mode], capture_output=True,
                             text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    fresh, kept = faults("plain"), faults("keep")
    assert kept * 10 < fresh and kept < 12 * 50, (fresh, kept)


def test_final_hsv_on_the_fakes_rows_equals_the_whole_image(astronaut_rgb):
    """apply_final_pair converts only the rows of the fake that differ when an HSV shift is drawn: OpenCV's
    8-bit HSV rounding depends on a pixel's column, never its row, so this is byte-identical (odd widths,
    bands at the edges)."""
    import cv2

    from unmask.synthesis.pair_dataset import apply_final_pair
    from unmask.synthesis.transforms import apply_ops

    rng = np.random.default_rng(5)
    for k in range(24):
        h, w = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        real = np.ascontiguousarray(cv2.resize(astronaut_rgb, (w, h)))
        fake = real.copy()
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
        fake[y0:y1, x0:x1] = cv2.GaussianBlur(fake, (7, 7), 0)[y0:y1, x0:x1] // 2 + 60
        ops = [("hsv", tuple(float(v) for v in rng.uniform(-20, 20, 3))), ("bc", (0.1, -0.2))]
        if k % 2:
            ops.append(("jpeg", (float(rng.integers(40, 101)),)))
        r, f = apply_final_pair(real, fake, ops)
        assert np.array_equal(r, apply_ops(real, ops)) and np.array_equal(f, apply_ops(fake, ops)), (h, w, y0, y1)
