"""The typed config loader: strict keys, types, overrides, base files."""

from dataclasses import dataclass, field

import pytest

from unmask.config import dump_yaml, from_dict, load_config
from unmask.errors import ConfigError


@dataclass
class Optim:
    name: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Root:
    optim: Optim = field(default_factory=Optim)
    epochs: int = 10
    note: str | None = None


def test_typo_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        from_dict(Root, {"optim": {"lrr": 0.1}})


def test_wrong_type_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"epochs.*integer"):
        from_dict(Root, {"epochs": "many"})


def test_overrides_and_base(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: 3\noptim:\n  name: sgd\n  lr: 0.1\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\noptim:\n  lr: 0.01\n")
    cfg = load_config(Root, tmp_path / "child.yaml", ["optim.betas=[0.5, 0.6]", "note=hi"])
    assert cfg.optim == Optim(name="sgd", lr=0.01, betas=(0.5, 0.6))
    assert cfg.epochs == 3 and cfg.note == "hi"
    assert "lr: 0.01" in dump_yaml(cfg)


def test_override_unknown_key_fails():
    with pytest.raises(ConfigError, match="unknown config key optim.momentum"):
        load_config(Root, None, ["optim.momentum=0.9"])


def test_exponent_without_dot_is_a_float():
    """PyYAML reads 1e-3 as a string; a float field must still take it (and reject real words)."""
    assert load_config(Root, None, ["optim.lr=5e-4"]).optim.lr == 5e-4
    with pytest.raises(ConfigError, match="optim.lr.*number"):
        load_config(Root, None, ["optim.lr=fast"])
