"""Training configs: every shipped config loads; typos and wrong types are errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from unmask.errors import ConfigError
from unmask.train.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_CONFIGS = sorted(p for d in ("sbi", "bbmg_nrs", "baseline", "tiny") for p in (CONFIGS / d).glob("*.yaml")
                       if not p.name.startswith("_"))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_config_loads_and_names_its_paper(path):
    cfg = load_train_config(path)
    assert cfg.paper, f"{path} does not say which paper table it reproduces"


def test_paper_000_numbers():
    cfg = load_train_config(CONFIGS / "bbmg_nrs" / "effb4_ffpp.yaml")
    n = cfg.method.nrs
    assert (n.lam, n.beta, n.k, n.k_s) == (0.5, 200.0, 5, 500)
    assert (cfg.optim.name, cfg.optim.lr, cfg.batch_size, cfg.epochs) == ("sam", 0.001, 16, 100)
    assert cfg.model.input_size == 380 and tuple(cfg.data.margin) == (0.04, 0.20)
    rows = {p.stem: load_train_config(p).method for p in (CONFIGS / "bbmg_nrs").glob("table11_*.yaml")}
    assert {k: (m.bbmg, m.nrs.enabled) for k, m in rows.items()} == {
        "table11_row1_none": (False, False), "table11_row2_bbmg": (True, False),
        "table11_row3_nrs": (False, True), "table11_row4_bbmg_nrs": (True, True)}


@pytest.mark.parametrize("override, key", [
    ("optim.lrr=0.1", "optim.lrr"),
    ("method.nrs.lamda=0.3", "method.nrs.lamda"),
    ("modle.backbone=resnet18", "modle"),
    ("epochs=many", "epochs"),
])
def test_typos_are_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_train_config(CONFIGS / "tiny" / "bbmg_nrs.yaml", [override])


def test_unknown_method_lists_the_methods():
    with pytest.raises(ConfigError, match="bbmg_nrs"):
        load_train_config(None, ["method.name=sbii"])


def test_yaml11_exponent_floats_are_numbers():
    cfg = load_train_config(CONFIGS / "tiny" / "sbi.yaml", ["optim.lr=5e-4", "method.name=sbi"])
    assert cfg.optim.lr == 5e-4
