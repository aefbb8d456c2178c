"""Supervised baseline: binary CE on real and fake faces of a benchmark (e.g. FF++ with all four methods).

The reference point every generalization paper compares against (paper 001 Table 1 backbones, paper 003's
"w/o PIM" rows): no pseudo-fakes, the manipulated videos themselves are the positives.
"""

from __future__ import annotations

from dataclasses import dataclass

from unmask.methods.base import CrossEntropyMethod, DataRecipe, MethodConfig
from unmask.methods.registry import register_method


@dataclass
class BaselineConfig(MethodConfig):
    name: str = "baseline"


@register_method
class Baseline(CrossEntropyMethod):
    name = "baseline"
    Config = BaselineConfig

    @property
    def data_recipe(self) -> DataRecipe:
        return DataRecipe("real_fake")
