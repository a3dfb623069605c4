"""Look-ups in ``tests/data/tensorrt_api_names.json``: the tensorrt module's Python names per TensorRT version.

The table is built by ``scripts/tensorrt_api_names.py`` from NVIDIA's pybind11 binding sources at each release
tag of github.com/NVIDIA/TensorRT, cross-checked against the strings of the PyPI bindings wheels (its
``_sources`` says which, per row). Rows: ``8.0`` (8.0.1), ``8.2`` (8.2.1), ``8.5`` (8.5.2), ``8.6`` (8.6.1),
``10.3`` (10.3.0), ``11`` (11.1).

    has("8.2", "Builder.platform_has_fast_int8")           # a member, inherited ones included
    has("11", "NetworkDefinitionCreationFlag.STRONGLY_TYPED")
    has("10.3", "OnnxParser") or has("10.3", "<module>.OnnxParser")   # module-level names
    has("8.2", "ILogger.Severity.WARNING")                 # nested classes
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).resolve().parent / "data" / "tensorrt_api_names.json"
MODULE = "<module>"


@functools.lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The whole table: ``{"_sources": {...}, "versions": {row: {class: [names], "_bases": {...}}}}``."""
    with open(TABLE_PATH, encoding="utf-8") as fh:
        table: dict[str, Any] = json.load(fh)
    return table


def versions() -> list[str]:
    """The table's rows, oldest first."""
    return sorted(load()["versions"], key=lambda v: tuple(int(p) for p in v.split(".")))


def table_version(trt_version: str) -> str:
    """The table row for a full TensorRT version: "8.2.1" -> "8.2", "8.5.2" -> "8.5", "10.3.0" -> "10.3".

    8.0 / 8.2 / 8.5 / 8.6 have rows of their own (8.1 -> 8.0, 8.3/8.4 -> 8.2 would be guesses: refused); any
    10.x -> "10.3" (the one 10.x row, what JetPack 6.1/6.2 ship); any 11.x -> "11" (built from 11.1; 11.0 lacks
    only ``IBuilderConfig.build_route`` / ``all_build_routes``, added in 11.1).
    """
    parts = [int(p) for p in re.findall(r"\d+", str(trt_version))[:2]]
    if not parts:
        raise ValueError(f"not a TensorRT version: {trt_version!r}")
    major, minor = parts[0], parts[1] if len(parts) > 1 else 0
    if major == 10:
        return "10.3"
    if major == 11:
        return "11"
    row = f"{major}.{minor}"
    if row in load()["versions"]:
        return row
    raise ValueError(f"no table row for TensorRT {trt_version} (rows: {', '.join(versions())})")


def _row(version: str) -> dict[str, Any]:
    rows = load()["versions"]
    if version not in rows:
        version = table_version(version)
    row: dict[str, Any] = rows[version]
    return row


def mro(version: str, cls: str) -> list[str]:
    """``cls`` and its Python base classes (walking ``_bases``), nearest first."""
    bases = _row(version).get("_bases", {})
    out: list[str] = []
    todo = [cls]
    while todo:
        c = todo.pop(0)
        if c not in out:
            out.append(c)
            todo.extend(bases.get(c, []))
    return out


def members(version: str, cls: str) -> set[str]:
    """Every name on class ``cls`` at ``version``, inherited ones included (empty if there is no such class)."""
    row = _row(version)
    names: set[str] = set()
    for c in mro(version, cls):
        names.update(row.get(c, []))
    return names


def _nested(version: str, cls: str, name: str) -> str | None:
    """The table key of class ``cls``'s attribute ``name`` when that attribute is itself a class."""
    row = _row(version)
    for c in mro(version, cls):
        if name in row.get(c, []):
            for owner in mro(version, c):
                if f"{owner}.{name}" in row:
                    return f"{owner}.{name}"
    # e.g. Logger.Severity, set in Python to ILogger.Severity: look for the class among the bases' nested ones
    for c in mro(version, cls):
        if f"{c}.{name}" in row:
            return f"{c}.{name}"
    return None


def has(version: str, dotted: str) -> bool:
    """Whether ``tensorrt.<dotted>`` exists in a table row (``version`` is a row or a full version).

    ``dotted`` is a module-level name (``"OnnxParser"``, ``"<module>.OnnxParser"``), a class member
    (``"Builder.build_serialized_network"``, walking base classes) or a chain through nested classes
    (``"ILogger.Severity.WARNING"``). A chain that goes on past a member that is not a class cannot be
    followed (the table has no types) and answers False.
    """
    row = _row(version)
    parts = dotted.split(".")
    if parts[0] == MODULE:
        parts = parts[1:]
    if not parts or parts[0] not in row.get(MODULE, []):
        return False
    if len(parts) == 1:
        return True
    cls: str | None = parts[0]
    if cls not in row:
        return False  # a module-level function or constant: nothing to follow
    for i, name in enumerate(parts[1:], start=1):
        assert cls is not None
        if name not in members(version, cls):
            return False
        if i == len(parts) - 1:
            return True
        cls = _nested(version, cls, name)
        if cls is None:
            return False
    return True


def versions_with(dotted: str) -> list[str]:
    """The table rows in which ``tensorrt.<dotted>`` exists."""
    return [v for v in versions() if has(v, dotted)]


def sources() -> dict[str, str]:
    """Where each row's names came from (release tag and commit, wheels and their sha256)."""
    return dict(load()["_sources"])
