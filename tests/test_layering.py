"""The package's shape, guarded: which subpackage may import which, and how long a module may grow.

The table follows the module table of ``../shared/DESIGN.md``: ground-floor modules import nothing of the
package but ``errors``; quantization never reaches export, training or the bench; export never the bench;
the bench loads no torch when it is imported (it runs on machines with only numpy and onnxruntime). Every
module of every subpackage is walked, not just the ``__init__``, and lazy imports (inside functions) are
held to the "never" rules too. A failure names the module, the line and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sqakd_edge"
GROUND = {"errors", "config", "hashing", "atomic", "stale", "safeload", "ort_session", "graph", "manifest"}

# unit -> package units it may import at module level (a unit is a subpackage or a top-level module)
MODULE_LEVEL = {
    "errors": set(),
    "config": {"errors"},
    "hashing": {"errors"},
    "atomic": {"errors"},
    "stale": {"errors"},
    "safeload": {"errors"},
    "ort_session": {"errors"},
    "manifest": {"errors"},
    "graph": {"errors"},
    "checkpoint": {"atomic", "config", "errors", "hashing", "safeload"},
    "models": {"config", "errors", "safeload", "graph"},
    "data": {"config", "errors"},
    "quant": {"config", "errors", "graph"},
    "train": {"config", "errors", "hashing", "atomic", "stale", "safeload", "graph", "models", "data", "quant",
              "checkpoint"},
    "export": {"config", "errors", "hashing", "atomic", "stale", "graph", "ort_session", "manifest", "models", "quant",
               "checkpoint"},
    "bench": {"config", "errors", "hashing", "atomic", "ort_session", "manifest"},
    "engine": {"config", "errors"},
}
# unit -> package units it must never import, not even inside a function
NEVER = {
    **{unit: {"models", "data", "quant", "train", "export", "bench", "engine", "cli", "demo", "api"} - {"graph"}
       for unit in GROUND},
    "checkpoint": {"data", "train", "export", "bench", "engine", "cli", "demo", "api"},
    "models": {"data", "quant", "train", "export", "bench", "engine", "cli", "demo", "api", "checkpoint"},
    "data": {"models", "quant", "train", "export", "bench", "engine", "cli", "demo", "api"},
    "quant": {"data", "train", "export", "bench", "engine", "cli", "demo", "api", "checkpoint"},
    "train": {"export", "bench", "engine", "cli", "demo", "api"},
    "export": {"bench", "engine", "cli", "demo", "api"},
    "bench": {"cli", "demo", "api"},
    "engine": {"cli", "demo", "api"},
}
NEVER["graph"] = NEVER["errors"] | {"quant"}
# third-party modules a unit must not import at module level
HEAVY_AT_IMPORT = {
    "bench": {"torch", "torchvision", "onnx", "matplotlib"},
    **{unit: {"torch", "torchvision", "numpy", "onnx", "onnxruntime", "matplotlib", "click"}
       for unit in GROUND - {"graph"}},
}


MAX_LINES = 450
SIZE_REASON = "Size:"  # a module above MAX_LINES says why in its docstring, in a paragraph starting so


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, imported module, at module level)`` for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join(base + [node.module])] if node.module else \
                    [".".join(base + [alias.name]) for alias in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        found += [(node.lineno, name, id(node) in top) for name in names]
    return found


def _package_unit(name: str) -> str | None:
    """The unit an import reaches; ``__init__`` for the package root and names defined there (``__version__``)."""
    parts = name.split(".")
    if parts[0] != "sqakd_edge":
        return None
    if len(parts) == 1 or not ((PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()):
        return "__init__"
    return parts[1]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layering(path):
    unit = _unit(path)
    problems = []
    for line, name, top_level in _imports(path):
        target = _package_unit(name)
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        if target is None:
            if top_level and name.split(".")[0] in HEAVY_AT_IMPORT.get(unit, set()):
                problems.append(f"{where} at module level ({unit} must stay importable without it)")
            continue
        if target in (unit, "__init__"):  # the root holds only __version__ and lazy names: free to import
            continue
        if target in NEVER.get(unit, set()):
            problems.append(f"{where} ({unit} never imports {target})")
        elif top_level and unit in MODULE_LEVEL and target not in MODULE_LEVEL[unit]:
            problems.append(f"{where} at module level ({unit} may import {sorted(MODULE_LEVEL[unit])} there)")
    assert not problems, "\n".join(problems)


def test_every_unit_is_in_the_table():
    """A new subpackage or module gets its row in the table (and in DESIGN.md) when it is added."""
    units = {_unit(p) for p in _modules()} - {"__init__", "__main__", "cli", "cli_options", "api", "demo"}
    assert units <= set(MODULE_LEVEL), sorted(units - set(MODULE_LEVEL))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_long_module_says_why(path):
    lines = path.read_text().count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert any(paragraph.startswith(SIZE_REASON) for paragraph in doc.split("\n\n")), (
        f"{path.relative_to(PACKAGE.parent)} has {lines} lines (> {MAX_LINES}): split it, or say why it is one "
        f"module in a docstring paragraph starting {SIZE_REASON!r}")


def test_the_layering_test_sees_a_forbidden_import(tmp_path):
    """The walker itself: a lazy import of export from quant is found, with its line."""
    module = tmp_path / "sqakd_edge" / "quant" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text("import torch\n\n\ndef f():\n    from ..export import api\n")
    found = [(line, name, top) for line, name, top in _imports_at(module, tmp_path / "sqakd_edge")]
    assert (5, "sqakd_edge.export", False) in found and (1, "torch", True) in found


def _imports_at(path: Path, package: Path) -> list[tuple[int, str, bool]]:
    global PACKAGE
    saved, PACKAGE = PACKAGE, package
    try:
        return _imports(path)
    finally:
        PACKAGE = saved
