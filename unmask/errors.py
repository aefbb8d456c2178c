"""Expected failures. Each carries a one-line, user-facing reason; commands print it and exit 1."""


class UnmaskError(Exception):
    """Base class: bad input, a missing file, an invalid config. Never used for programming errors."""


class ConfigError(UnmaskError):
    """A config file or override is invalid (unknown key, wrong type)."""


class WeightsNotFoundError(UnmaskError):
    """Pretrained weights or a checkpoint are missing; the message names the file."""
