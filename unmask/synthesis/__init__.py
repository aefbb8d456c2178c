"""Pseudo-fake synthesis: pure, seeded functions over a real face crop and its 81 landmarks.

``build_synthesizer(recipe)`` -> ``Synthesizer``; ``synth(image, landmarks81, rng) -> SynthResult(fake, mask,
record, real)``. Recipes (``SYNTHESIZERS``): sbi (as released), sbi_lal, bbmg (+ its Fig. 7 forms), xray_bi. ``PairDataset`` /
``pair_collate`` make training pairs (imported lazily: they need torch). See docs/synthesis.md.
"""

from __future__ import annotations

from typing import Any

from unmask.synthesis.config import FinalAugConfig, SynthConfig, load_synth_config
from unmask.synthesis.landmarks import SynthesisError
from unmask.synthesis.pool import DonorPool
from unmask.synthesis.recipes import (SYNTHESIZERS, SynthResult, Synthesizer, build_synthesizer, register_synthesizer,
                                      resolve_config)

__all__ = ["SYNTHESIZERS", "DonorPool", "FinalAugConfig", "PairDataset", "SynthConfig", "SynthResult",
           "SynthesisError", "Synthesizer", "build_synthesizer", "load_synth_config", "pair_collate",
           "register_synthesizer", "resolve_config"]


def __getattr__(name: str) -> Any:
    if name in ("PairDataset", "pair_collate"):
        from unmask.synthesis import pair_dataset

        return getattr(pair_dataset, name)
    raise AttributeError(f"module 'unmask.synthesis' has no attribute {name!r}")
