"""Our TensorRT Python API use, checked against the names NVIDIA's bindings really have, per version.

``tests/data/tensorrt_api_names.json`` lists the Python names of the ``tensorrt`` module for TensorRT 8.0 (8.0.1),
8.2 (8.2.1), 8.5 (8.5.2), 8.6 (8.6.1), 10.3 (10.3.0) and 11 (11.1), parsed by ``scripts/tensorrt_api_names.py``
from the pybind11 sources (``python/src/**/*.cpp``) and ``tensorrt/__init__.py`` at those release tags of
github.com/NVIDIA/TensorRT; for 8.6, 10.3 and 11 every name was also found among the strings of the PyPI
bindings wheel of that version (``tensorrt-bindings`` 8.6.1, ``tensorrt-cu12-bindings`` 10.3.0 / 11.1.0.106 and
11.4.0.106). The table's ``_sources`` gives the commits and the wheels' sha256.

What this proves:

* (a) The table holds every row, and the API facts our code's version branches rest on hold in NVIDIA's
  sources (``build_serialized_network`` everywhere, ``build_engine`` gone in 10, ``set_memory_pool_limit``
  not before 8.4, ``platform_has_fast_int8`` / ``BuilderFlag.INT8`` / ``EXPLICIT_BATCH`` gone in 11,
  ``STRONGLY_TYPED`` from 10.x, no engine inspector or ``ProfilingVerbosity.DETAILED`` in 8.0, ...).
* (b) Every attribute chain in ``jetson/*.py`` rooted at a name the module binds to TensorRT (a parameter
  named ``trt``, ``import tensorrt [as x]``, or a name / ``self.x`` assigned from one) names something that
  exists in at least one table version: ``trt.Builder``, ``trt.BuilderFlag.INT8``,
  ``trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH``, ``getattr(trt.BuilderFlag, "INT8")``, ... An invented
  or misspelt name fails here. So do members used on a variable assigned straight from a TensorRT
  constructor in the same function (``builder = trt.Builder(logger)`` then ``builder.platform_has_fast_int8``),
  the one case where the class is known from the syntax.

What this does not prove:

* That a name exists in the version a branch runs on: a name present only in some versions passes (8.x-only
  ``EXPLICIT_BATCH`` under an 8.x branch is correct). Which branch runs on which version is the contract
  tests' job (``tests/test_trt_contract.py``); :func:`report` lists, per chain, the versions that lack it.
* Anything about method calls on objects whose class is not syntactically known: ``config`` from
  ``builder.create_builder_config()``, ``engine``, ``context``, ``inspector``, ``network``, ``parser``: the
  table has no return types, so ``config.set_memory_pool_limit`` or ``engine.get_tensor_mode`` are not checked
  here. Nor are argument counts, argument types, return values or behaviour; nor names built at run time
  (``getattr(trt.BuilderFlag, flag)`` with a variable ``flag``).
* The scan is per file, not per scope: a name counts as TensorRT anywhere in a file once it is bound to
  TensorRT somewhere in it. Dunder members of classes (``trt.ILogger.__init__``) are taken as present (every
  Python class has them).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import trt_api_names as names

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parent.parent
JETSON = ROOT / "jetson"
ALL = ["8.0", "8.2", "8.5", "8.6", "10.3", "11"]

# (dotted name, the rows that have it, where NVIDIA says so). Paths are in github.com/NVIDIA/TensorRT at the
# row's tag (8.0.1, 8.2.1, 8.5.2, v8.6.1, v10.3.0, v11.1); the wheels of 8.6.1 / 10.3.0 / 11.1.0.106 agree.
SPOT_CHECKS = [
    ("Builder.build_serialized_network", ALL,
     "python/src/infer/pyCore.cpp: Builder .def(\"build_serialized_network\")"),
    ("Builder.build_engine", ["8.0", "8.2", "8.5", "8.6"], "pyCore.cpp: removed in 10.0 (not in v10.3.0 / v11.1)"),
    ("IBuilderConfig.set_memory_pool_limit", ["8.5", "8.6", "10.3", "11"],
     "pyCore.cpp: added in 8.4 (tag 8.4.1), absent at 8.0.1 and 8.2.1"),
    ("IBuilderConfig.max_workspace_size", ["8.0", "8.2", "8.5", "8.6"], "pyCore.cpp: removed in 10.0"),
    ("EngineInspector.execution_context", ["8.2", "8.5", "8.6", "10.3", "11"],
     "pyCore.cpp: py::class_<IEngineInspector>(m, \"EngineInspector\") .def_property(\"execution_context\") from 8.2"),
    ("EngineInspector.context", [], "never existed: the attribute is execution_context"),
    ("Builder.platform_has_fast_int8", ["8.0", "8.2", "8.5", "8.6", "10.3"], "pyCore.cpp: removed in 11"),
    ("Builder.platform_has_fast_fp16", ["8.0", "8.2", "8.5", "8.6", "10.3"], "pyCore.cpp: removed in 11"),
    ("BuilderFlag.INT8", ["8.0", "8.2", "8.5", "8.6", "10.3"], "pyCore.cpp py::enum_<BuilderFlag>: removed in 11"),
    ("BuilderFlag.FP16", ["8.0", "8.2", "8.5", "8.6", "10.3"], "pyCore.cpp py::enum_<BuilderFlag>: removed in 11"),
    ("NetworkDefinitionCreationFlag.STRONGLY_TYPED", ["10.3", "11"],
     "pyCore.cpp: .value(\"STRONGLY_TYPED\") from 10.x (11.1: deprecated, always on)"),
    ("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", ["8.0", "8.2", "8.5", "8.6", "10.3"],
     "pyCore.cpp: deprecated in 10, removed in 11"),
    ("ProfilingVerbosity.DETAILED", ["8.2", "8.5", "8.6", "10.3", "11"],
     "pyCore.cpp: 8.0.1 has DEFAULT/NONE/VERBOSE only"),
    ("ICudaEngine.create_engine_inspector", ["8.2", "8.5", "8.6", "10.3", "11"], "pyCore.cpp: absent at 8.0.1"),
    ("IExecutionContext.execute_async_v3", ["8.5", "8.6", "10.3", "11"], "pyCore.cpp: name-based I/O from 8.5"),
    ("IExecutionContext.execute_async_v2", ["8.0", "8.2", "8.5", "8.6"], "pyCore.cpp: removed in 10.0"),
    ("ICudaEngine.get_tensor_mode", ["8.5", "8.6", "10.3", "11"], "pyCore.cpp: from 8.5"),
    ("ICudaEngine.num_bindings", ["8.0", "8.2", "8.5", "8.6"], "pyCore.cpp: removed in 10.0"),
    ("MemoryPoolType.WORKSPACE", ["8.5", "8.6", "10.3", "11"], "pyCore.cpp: py::enum_<MemoryPoolType> from 8.4"),
    ("TensorIOMode.INPUT", ["8.5", "8.6", "10.3", "11"], "pyCore.cpp: py::enum_<TensorIOMode> from 8.5"),
    ("LayerInformationFormat.JSON", ["8.2", "8.5", "8.6", "10.3", "11"], "pyCore.cpp: from 8.2"),
    ("OnnxParser", ALL, "python/src/parsers/pyOnnx.cpp: py::class_<IParser>(m, \"OnnxParser\")"),
    ("Logger.WARNING", ALL, "pyCore.cpp: Severity values exported into the logger class; Logger derives from ILogger"),
    ("__version__", ALL, "tensorrt/__init__.py: __version__ = ..."),
    ("nptype", ALL, "tensorrt/__init__.py: def nptype(trt_type)"),
]


# --------------------------------------------------------------------------------------------------------
# (a) the table


def test_every_version_row_is_there():
    table = names.load()
    assert names.versions() == ALL
    for row in ALL:
        assert "<module>" in table["versions"][row] and "Builder" in table["versions"][row], row
        assert "NVIDIA/TensorRT@" in table["_sources"][row], row
    for row in ("8.6", "10.3", "11"):  # the rows with a bindings wheel on PyPI
        assert ".whl (sha256 " in table["_sources"][row] and "all names found" in table["_sources"][row], row


@pytest.mark.parametrize("dotted,rows,cite", SPOT_CHECKS, ids=[c[0] for c in SPOT_CHECKS])
def test_nvidia_api_facts(dotted, rows, cite):
    assert names.versions_with(dotted) == rows, cite


def test_lookups():
    assert names.has("8.2", "Builder.platform_has_fast_int8")
    assert names.has("11", "NetworkDefinitionCreationFlag.STRONGLY_TYPED")
    assert names.has("10.3", "<module>.OnnxParser") and names.has("10.3", "OnnxParser")
    assert not names.has("10.3", "NoSuchClass") and not names.has("10.3", "Builder.no_such_member")
    assert "ILogger" in names.mro("10.3", "Logger")  # Logger's members include ILogger's
    assert names.has("8.2", "ILogger.Severity.WARNING") and names.has("10.3", "Logger.Severity.ERROR")
    assert not names.has("8.0", "ILogger.Severity")  # 8.0.1 nests Severity in Logger, not ILogger
    assert names.has("8.0.1", "Logger.Severity.INFO")  # a full version picks its row
    assert [names.table_version(v) for v in ("8.0.1", "8.2.1", "8.5.2", "8.6.2", "10.3.0", "10.7.0", "11.0.1")] == [
        "8.0", "8.2", "8.5", "8.6", "10.3", "10.3", "11"]
    with pytest.raises(ValueError):
        names.table_version("7.1.3")


# --------------------------------------------------------------------------------------------------------
# (b) the names jetson/*.py uses


@dataclass(frozen=True)
class Use:
    """One TensorRT name used in our code: ``dotted`` is relative to the module (``BuilderFlag.INT8``)."""

    path: str
    line: int
    dotted: str
    how: str  # "chain", "getattr" or "instance"


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a pure Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _trt_roots(tree: ast.AST) -> set[str]:
    """Names (and ``self.x`` paths) a file binds to the TensorRT module."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arguments):
            roots.update(a.arg for a in node.posonlyargs + node.args + node.kwonlyargs if a.arg == "trt")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tensorrt":
                    roots.add(alias.asname or "tensorrt")
    changed = True
    while changed:  # names / attributes assigned from a root: self.trt = trt; engine, ctx, trt = ..., self.trt
        changed = False
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign):
                continue
            pairs = []
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += list(zip(target.elts, node.value.elts, strict=False))
                else:
                    pairs.append((target, node.value))
            for target, value in pairs:
                t, v = _dotted(target), _dotted(value)
                if t and v in roots and t not in roots:
                    roots.add(t)
                    changed = True
    return roots


def _strip_root(dotted: str | None, roots: set[str]) -> str | None:
    if not dotted:
        return None
    for root in sorted(roots, key=len, reverse=True):
        if dotted.startswith(root + "."):
            return dotted[len(root) + 1 :]
    return None


def _all_classes() -> set[str]:
    table = names.load()["versions"]
    return {k for row in table.values() for k in row if not k.startswith(("_", "<"))}


def _literal_attr_call(node: ast.AST) -> tuple[ast.AST, str] | None:
    """``(obj, "name")`` for ``getattr(obj, "name"[, default])`` / ``hasattr(obj, "name")``."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)):
        return node.args[0], node.args[1].value
    return None


def _instances(scope: ast.AST, roots: set[str], classes: set[str]) -> dict[str, str]:
    """Variables assigned straight from a TensorRT constructor in ``scope``: ``builder = trt.Builder(...)``."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = _dotted(node.targets[0])
            if not target:
                continue
            value = node.value
            cls = _strip_root(_dotted(value.func), roots) if isinstance(value, ast.Call) else None
            found.setdefault(target, set()).add(cls if cls in classes else "")
    return {var: next(iter(c)) for var, c in found.items() if len(c) == 1 and "" not in c}


def scan(path: Path) -> list[Use]:
    """Every TensorRT name one file uses that can be resolved from the syntax (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = str(path.relative_to(ROOT))
    roots = _trt_roots(tree)
    classes = _all_classes()
    uses: list[Use] = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(parents.get(node), ast.Attribute):
            rest = _strip_root(_dotted(node), roots)
            if rest:
                uses.append(Use(rel, node.lineno, rest, "chain"))
        call = _literal_attr_call(node)
        if call:
            obj = _dotted(call[0])
            if obj in roots:
                uses.append(Use(rel, node.lineno, call[1], "getattr"))
            elif _strip_root(obj, roots):
                uses.append(Use(rel, node.lineno, f"{_strip_root(obj, roots)}.{call[1]}", "getattr"))
    # members of variables whose class the syntax gives; ``self.x`` across the file, plain names per function
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    self_types = {k: v for k, v in _instances(tree, roots, classes).items() if k.startswith("self.")}
    for func in functions:
        local = {k: v for k, v in _instances(func, roots, classes).items() if "." not in k}
        known = {**self_types, **local}
        for node in ast.walk(func):
            obj, member = None, None
            if isinstance(node, ast.Attribute):
                obj, member = _dotted(node.value), node.attr
            elif _literal_attr_call(node):
                call = _literal_attr_call(node)
                assert call is not None
                obj, member = _dotted(call[0]), call[1]
            if obj in known and member:
                use = Use(rel, node.lineno, f"{known[obj]}.{member}", "instance")
                if use not in uses:
                    uses.append(use)
    return uses


def jetson_uses() -> list[Use]:
    uses: list[Use] = []
    for path in sorted(JETSON.glob("*.py")):
        uses += scan(path)
    return sorted(set(uses), key=lambda u: (u.path, u.line, u.dotted))


def _exists(dotted: str) -> list[str]:
    parts = dotted.split(".")
    if len(parts) > 1 and parts[-1].startswith("__") and parts[-1].endswith("__"):
        dotted = ".".join(parts[:-1])  # dunders of a class: every Python class has them
    return names.versions_with(dotted)


def report() -> list[str]:
    """One line per TensorRT name used in jetson/*.py: where, and the versions that have / lack it."""
    lines = []
    for use in jetson_uses():
        rows = _exists(use.dotted)
        lacking = [v for v in ALL if v not in rows]
        where = "all versions" if not lacking else "absent in " + ", ".join(lacking)
        lines.append(f"{use.path}:{use.line}  {use.dotted}  [{use.how}]  {where}")
    return lines


def test_scan_finds_our_tensorrt_use():
    found = {u.dotted for u in jetson_uses()}
    # guard against a vacuous pass: these are used by jetson/trt_engine.py
    assert {"Builder", "OnnxParser", "Runtime"} <= found, sorted(found)
    assert any(d.startswith("Builder.") for d in found), "no member of a known Builder instance was checked"


def test_every_tensorrt_name_in_jetson_exists_in_some_version():
    invented = [f"{u.path}:{u.line} {u.dotted} ({u.how})" for u in jetson_uses() if not _exists(u.dotted)]
    assert not invented, "names in no TensorRT version's bindings (tests/data/tensorrt_api_names.json):\n" + "\n".join(
        invented)


if __name__ == "__main__":
    print("\n".join(report()))
