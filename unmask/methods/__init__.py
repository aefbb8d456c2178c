"""Training methods: one module per method, registered in METHODS by name.

Each module is imported here explicitly (no import-time discovery), which fills the registry.
"""

from unmask.methods.base import DataRecipe, Method, MethodConfig
from unmask.methods.registry import METHODS, build_method, register_method

from unmask.methods import baseline, bbmg_nrs, l2m, pim, prle, sbi, sola  # noqa: E402,F401  (registration)

__all__ = ["METHODS", "DataRecipe", "Method", "MethodConfig", "build_method", "register_method"]
