"""One contract test over every registered training method (timm-style): a method must build a registered arch,
declare its data recipe, train a few real steps through the trainer, checkpoint, and reload for inference."""

from __future__ import annotations

import math

import pytest
import torch

from unmask.methods import METHODS, build_method
from unmask.models import Arch, load_detector
from unmask.train.config import load_train_config
from unmask.train.loop import train

from _train_fixtures import one_torch_thread, toy_prle_data, toy_train_data  # noqa: F401 (autouse)

TINY = ["model.backbone=resnet18", "model.pretrained=null", "model.input_size=32", "run.progress=false",
        "run.tensorboard=false", "data.num_workers=0", "optim.name=sam", "optim.lr=0.01", "epochs=2",
        "batch_size=4", "steps_per_epoch=3", "run.log_every=1"]
EXTRA = {"bbmg_nrs": ["method.nrs.start_epoch=2", "method.nrs.k_s=6", "method.nrs.k=2"],
         # PIM / DualFlat perturb the weights themselves (DualFlat's SAM direction): a plain optimizer
         "pim": ["optim.name=sgd"], "dualflat": ["optim.name=sgd"],
         # L2M: a small teacher ViT (the default is paper 004's 6 blocks x 2048 wide)
         "l2m": ["method.teacher.depth=1", "method.teacher.latent_dim=48", "method.teacher.mlp_dim=64"]}
# Methods whose batches carry more than the pair format: their own toy data (prle: faces masked in the loader)
DATA = {"prle": toy_prle_data}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_registered_method_contract(name, tmp_path):
    cfg = load_train_config(None, [f"method.name={name}", *TINY, *EXTRA.get(name, [])])
    method = build_method(cfg)
    assert method.data_recipe.kind in ("pairs", "real_fake")
    assert isinstance(method.detector(method.build()), Arch)  # a registered network (timm_classifier, sola, ...)

    torch.manual_seed(0)
    result = train(cfg, tmp_path / "run", data=DATA.get(name, toy_train_data)(n=12))
    assert result.steps == 6 and all(math.isfinite(v) for v in result.losses)

    detector, meta = load_detector(tmp_path / "run")
    assert meta["backbone"] == "resnet18" and detector.input_size == 32
    with torch.no_grad():
        p = detector.eval().predict_proba(torch.rand(2, 3, 32, 32))
    assert p.shape == (2,) and bool(((p >= 0) & (p <= 1)).all())
