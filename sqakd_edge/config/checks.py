"""The value checks every config shares, so a bad value reads the same wherever it comes from."""

from __future__ import annotations

import math

from ..errors import ConfigError


def one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """``value`` is one of ``allowed`` (the message lists them)."""
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")


def check_fraction(name: str, value: float) -> None:
    """A share or agreement threshold in [0, 1] (finite); the one check every config uses."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must lie in [0, 1], got {value!r}")


def positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """A finite number above zero (or at least zero)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {value}")
