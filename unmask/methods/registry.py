"""The METHODS registry: ``method.name`` in a config -> Method class."""

from __future__ import annotations

METHODS: dict[str, type] = {}


def register_method(cls: type) -> type:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def build_method(cfg) -> "object":
    """TrainConfig -> the Method instance named by ``cfg.method.name``."""
    return METHODS[cfg.method.name](cfg)
