"""Self-Blended Images baseline (Shiohara & Yamasaki, CVPR 2022; the "-  -" row of paper 000 Table 11).

Each batch holds B real faces and the B pseudo-fakes blended from them (``pair_collate``); the loss is
plain cross-entropy over the 2B images.
"""

from __future__ import annotations

from dataclasses import dataclass

from unmask.methods.base import CrossEntropyMethod, DataRecipe, MethodConfig
from unmask.methods.registry import register_method


@dataclass
class SBIConfig(MethodConfig):
    name: str = "sbi"
    synthesizer: str = "sbi"  # any registered synthesis recipe


@register_method
class SBI(CrossEntropyMethod):
    name = "sbi"
    Config = SBIConfig

    @property
    def data_recipe(self) -> DataRecipe:
        return DataRecipe("pairs", synthesizer=self.options.synthesizer)
