"""Configs as plain JSON-able values and back (checkpoints, manifests, a run's recorded options)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from ..errors import ConfigError

C = TypeVar("C")


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Rebuild a config from :func:`to_dict`'s output, ignoring unknown keys from newer versions."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**kwargs)


def replace(config: C, **changes: Any) -> C:
    """A copy of ``config`` with ``changes``, validated again; unknown names are a ConfigError."""
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]
