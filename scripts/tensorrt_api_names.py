#!/usr/bin/env python3
"""Build ``tests/data/tensorrt_api_names.json``: the Python names of the ``tensorrt`` module, per TensorRT version.

The names come from NVIDIA's own binding sources, read at each release tag of github.com/NVIDIA/TensorRT:
the pybind11 definitions in ``python/src/**/*.cpp`` (``py::class_<T, Bases...>(m, "Name")``,
``py::enum_<T>(m, "Name")`` and their chained ``.def("x"``, ``.def_property("x"``,
``.def_property_readonly("x"``, ``.def_readwrite("x"``, ``.def_readonly("x"``, ``.def_static("x"``,
``.value("X"``, ``.export_values()``; ``m.def("x"``, ``m.attr("x") =``, ``py::bind_vector<...>(m, "X")``)
plus the names the package's ``tensorrt/__init__.py`` adds in Python (``__version__``, ``volume``,
``nptype``, ``DataType.itemsize``, ``Logger.Severity``, ...). The C preprocessor conditions are evaluated for
the full ``tensorrt`` module (``EXPORT_ALL_BINDINGS`` 1, ``ENABLE_INETWORK_SERIALIZE`` 0, pybind11 >= 2.6),
so names of ``tensorrt_lean``/``tensorrt_dispatch``-only builds and internal options are not mixed in.

Cross-check: the real bindings wheels on PyPI (``tensorrt-bindings`` 8.6.1, ``tensorrt-cu12-bindings`` 10.3.0,
11.1.0.106 and the newest 11.x) hold an extension module whose strings contain every bound name. The script
checks that every name the sources give for 8.6 / 10.3 / 11 occurs among the strings of that wheel's
``tensorrt.so`` (names added in Python are checked against the wheel's own ``__init__.py``) and prints the
ones that do not; it also prints the members the wheel documents (its ``tensorrt::<X>Doc::<member>`` symbols)
that the source parser did not find. Wheels are downloaded to a temporary folder and never committed; only
the (small, sorted) names table is.

How the committed table was made (2 CPU cores, about a minute)::

    # the fetch tool: github:NVIDIA/TensorRT -> /work/.mirror/NVIDIA+TensorRT/repo (a bare git mirror)
    .venv/bin/python scripts/tensorrt_api_names.py --mirror /work/.mirror/NVIDIA+TensorRT/repo \
        --download-wheels --out tests/data/tensorrt_api_names.json

``--wheels DIR`` uses wheels already in DIR instead of downloading them (``--download-wheels`` downloads
into a temporary folder with ``pip download --no-deps --only-binary=:all:``). Without either, the table is
built from the sources alone and ``_sources`` says no wheel was checked.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# table row -> git ref in NVIDIA/TensorRT (release tags; 11.1 is the newest 11.x release in the mirror).
VERSIONS: dict[str, str] = {
    "8.0": "8.0.1",
    "8.2": "8.2.1",
    "8.5": "8.5.2",
    "8.6": "v8.6.1",
    "10.3": "v10.3.0",
    "11": "v11.1",
}

# table row -> wheels to cross-check it against (pip requirement, wheel file name prefix).
# The first wheel of a row is the same release as its sources; 11.4.0.106 (the newest 11.x on PyPI when the
# table was made) is checked too so names removed after 11.1 show up.
WHEELS: dict[str, list[str]] = {
    "8.6": ["tensorrt-bindings==8.6.1"],
    "10.3": ["tensorrt-cu12-bindings==10.3.0"],
    "11": ["tensorrt-cu12-bindings==11.1.0.106", "tensorrt-cu12-bindings==11.4.0.106"],
}

# C preprocessor values for the full ``tensorrt`` module as NVIDIA builds it.
MACROS: dict[str, int] = {
    "EXPORT_ALL_BINDINGS": 1,  # set when tensorrt_EXPORTS (the full module, not tensorrt_lean/_dispatch)
    "tensorrt_EXPORTS": 1,
    "ENABLE_INETWORK_SERIALIZE": 0,  # python/CMakeLists.txt option, off by default (internal serializer)
    "PYBIND11_VERSION_MAJOR": 2,
    "PYBIND11_VERSION_MINOR": 13,
    "__GLIBC__": 1,
}

MODULE = "<module>"
MODULE_VAR = "m"
MEMBER_METHODS = {
    "def",
    "def_static",
    "def_property",
    "def_property_readonly",
    "def_property_static",
    "def_property_readonly_static",
    "def_readwrite",
    "def_readonly",
    "def_readwrite_static",
    "def_readonly_static",
    "value",
}
BINDERS = {"py::class_": "class", "py::enum_": "enum", "pybind11::class_": "class", "pybind11::enum_": "enum"}
CONTAINER_BINDERS = {"py::bind_vector", "py::bind_map", "pybind11::bind_vector", "pybind11::bind_map"}
HOLDERS = ("std::unique_ptr", "std::shared_ptr", "py::nodelete", "unique_ptr", "shared_ptr")


# --------------------------------------------------------------------------------------------------------
# git


def git(mirror: Path, *args: str) -> str:
    """Run git on the mirror and return its stdout."""
    return subprocess.run(
        ["git", "-C", str(mirror), *args], check=True, capture_output=True, text=True, errors="replace"
    ).stdout


def git_files(mirror: Path, ref: str, prefix: str) -> list[str]:
    """Paths of the files under ``prefix`` at ``ref``."""
    out = git(mirror, "ls-tree", "-r", "--name-only", ref, prefix)
    return [line for line in out.splitlines() if line]


# --------------------------------------------------------------------------------------------------------
# C++: comments, preprocessor, tokens

_RAW_STRING = re.compile(r'(?:u8|u|U|L)?R"([^()\\\s]{0,16})\((.*?)\)\1"', re.S)


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments, leaving string, raw-string and character literals intact."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = _RAW_STRING.match(text, i)
            if m:
                out.append(m.group(0))
                i = m.end()
                continue
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\\":
                    j += 1
                elif text[j] == "\n":  # not a literal after all (e.g. a digit separator): stop at the line end
                    break
                j += 1
            out.append(text[i : j + 1])
            i = j + 1
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            # keep line structure so preprocessor lines stay on their own lines
            chunk = text[i : (n if j < 0 else j + 2)]
            out.append("\n" * chunk.count("\n") or " ")
            i = n if j < 0 else j + 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class _CondEval(ast.NodeVisitor):
    """Evaluate a preprocessor condition already rewritten into Python syntax (ints, and/or/not, compares)."""

    def value(self, node: ast.AST) -> int:
        return int(self.visit(node))

    def visit_Expression(self, node: ast.Expression) -> int:
        return self.value(node.body)

    def visit_BoolOp(self, node: ast.BoolOp) -> int:
        values = [self.value(v) for v in node.values]
        return int(all(values)) if isinstance(node.op, ast.And) else int(any(values))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> int:
        value = self.value(node.operand)
        if isinstance(node.op, ast.Not):
            return int(not value)
        if isinstance(node.op, ast.USub):
            return -value
        return value

    def visit_Compare(self, node: ast.Compare) -> int:
        left = self.value(node.left)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = self.value(comp)
            ok = {
                ast.Lt: left < right,
                ast.LtE: left <= right,
                ast.Gt: left > right,
                ast.GtE: left >= right,
                ast.Eq: left == right,
                ast.NotEq: left != right,
            }[type(op)]
            if not ok:
                return 0
            left = right
        return 1

    def visit_Constant(self, node: ast.Constant) -> int:
        if isinstance(node.value, bool | int):
            return int(node.value)
        raise ValueError(f"not an integer in a preprocessor expression: {node.value!r}")

    def generic_visit(self, node: ast.AST) -> int:
        raise ValueError(f"unsupported preprocessor expression: {ast.dump(node)}")


def eval_condition(expr: str, macros: dict[str, int]) -> bool:
    """Evaluate an ``#if`` expression with ``macros`` (unknown identifiers are 0, as in C)."""
    expr = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)", lambda m: str(int((m[1] or m[2]) in macros)), expr)
    expr = re.sub(r"[A-Za-z_]\w*", lambda m: str(macros.get(m[0], 0)), expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    return bool(_CondEval().value(ast.parse(expr.strip(), mode="eval")))


def preprocess(text: str, macros: dict[str, int]) -> str:
    """Drop comments and preprocessor lines, keeping only the code whose ``#if`` branches are taken."""
    text = strip_comments(text).replace("\\\n", " ")
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch active, some branch of this #if already taken)

    def active() -> bool:
        return all(a for a, _ in stack)

    for line in text.split("\n"):
        m = re.match(r"\s*#\s*(\w+)\s*(.*)", line)
        if not m:
            out.append(line if active() else "")
            continue
        word, rest = m[1], m[2].strip()
        if word in ("if", "ifdef", "ifndef"):
            if word == "if":
                cond = eval_condition(rest, macros)
            else:
                cond = (rest.split()[0] in macros) == (word == "ifdef")
            stack.append((cond, cond))
        elif word == "elif":
            _, taken = stack.pop()
            cond = not taken and eval_condition(rest, macros)
            stack.append((cond, taken or cond))
        elif word == "else":
            _, taken = stack.pop()
            stack.append((not taken, True))
        elif word == "endif":
            stack.pop()
        out.append("")
    return "\n".join(out)


_TOKEN = re.compile(
    r"""(?P<str>(?:u8|u|U|L)?R"(?P<delim>[^()\\\s]{0,16})\((?P<raw>.*?)\)(?P=delim)"|(?:u8|u|U|L)?"(?:\\.|[^"\\\n])*")
      |(?P<chr>'(?:\\.|[^'\\\n])*')
      |(?P<id>[A-Za-z_]\w*(?:::[A-Za-z_~]\w*)*)
      |(?P<num>\.?\d[\w.']*)
      |(?P<ws>\s+)
      |(?P<punct>::|->|.)""",
    re.S | re.X,
)


@dataclass
class Tok:
    """One C++ token: kind is ``str`` (value without quotes), ``id``, ``num``, ``chr`` or ``punct``."""

    kind: str
    value: str
    line: int


def tokenize(text: str) -> list[Tok]:
    """Split preprocessed C++ into tokens (adjacent string literals are not joined)."""
    toks: list[Tok] = []
    line = 1
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "punct"
        s = m.group(0)
        if kind in ("delim", "raw"):
            kind = "str"
        if kind == "str":
            value = m["raw"] if m["raw"] is not None else s[s.index('"') + 1 : -1]
            toks.append(Tok("str", value, line))
        elif kind != "ws":
            toks.append(Tok(kind, s, line))
        line += s.count("\n")
    return toks


def matching(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one at ``toks[i]`` (``(``, ``{``, ``[`` or ``<``)."""
    pairs = {"(": ")", "{": "}", "[": "]", "<": ">"}
    opening = toks[i].value
    closing = pairs[opening]
    depth = 0
    angle = opening == "<"
    for j in range(i, len(toks)):
        v = toks[j].value if toks[j].kind == "punct" else ""
        if v in ("(", "{", "[") or (angle and v == "<"):
            depth += 1
        elif v in (")", "}", "]") or (angle and v == ">"):
            depth -= 1
            if depth == 0:
                if v != closing:
                    raise ValueError(f"unbalanced {opening} at line {toks[i].line}")
                return j
    raise ValueError(f"unclosed {opening} at line {toks[i].line}")


def split_args(toks: list[Tok], start: int, end: int, angle: bool = False) -> list[list[Tok]]:
    """Split ``toks[start:end]`` at top-level commas (``<>`` counted as brackets only when ``angle``)."""
    args: list[list[Tok]] = [[]]
    depth = 0
    for t in toks[start:end]:
        v = t.value if t.kind == "punct" else ""
        if v in ("(", "{", "[") or (angle and v == "<"):
            depth += 1
        elif v in (")", "}", "]") or (angle and v == ">"):
            depth -= 1
        if v == "," and depth == 0:
            args.append([])
        else:
            args[-1].append(t)
    return [a for a in args if a]


# --------------------------------------------------------------------------------------------------------
# the pybind11 binding parser


@dataclass
class PyClass:
    """A bound Python class or enum: its name (dotted when nested), C++ type, base candidates and members."""

    name: str
    kind: str
    cpp: str
    others: list[str]
    members: set[str] = field(default_factory=set)
    values: set[str] = field(default_factory=set)
    exported: bool = False
    parent: str | None = None
    where: str = ""


@dataclass
class Bindings:
    """Everything one release's sources bind."""

    classes: dict[str, PyClass] = field(default_factory=dict)
    module: set[str] = field(default_factory=set)
    python_module: set[str] = field(default_factory=set)  # added by tensorrt/__init__.py
    python_members: dict[str, set[str]] = field(default_factory=dict)  # Class -> attributes added in Python
    warnings: list[str] = field(default_factory=list)

    def add_class(self, cls: PyClass) -> None:
        if cls.name in self.classes:
            old = self.classes[cls.name]
            old.members |= cls.members
            old.values |= cls.values
            old.others += [o for o in cls.others if o not in old.others]
            self.warnings.append(f"{cls.name} bound twice ({old.where} and {cls.where}): merged")
        else:
            self.classes[cls.name] = cls


def _cpp_last(name: str) -> str:
    name = re.sub(r"<.*", "", name).strip()
    return name.split("::")[-1]


def parse_cpp(text: str, path: str, out: Bindings) -> None:
    """Add the classes, enums and module-level names that one binding source defines to ``out``."""
    toks = tokenize(preprocess(text, MACROS))
    variables: dict[str, str] = {}  # C++ variable holding a py::class_/enum_ -> Python class name
    n = len(toks)

    def chain(k: int, cls: PyClass) -> int:
        while k + 2 < n and toks[k].value == "." and toks[k + 1].kind == "id" and toks[k + 2].value == "(":
            method = toks[k + 1].value
            close = matching(toks, k + 2)
            args = split_args(toks, k + 3, close)
            if method in MEMBER_METHODS and args and args[0][0].kind == "str" and len(args[0]) == 1:
                (cls.values if method == "value" and cls.kind == "enum" else cls.members).add(args[0][0].value)
            elif method == "export_values":
                cls.exported = True
            k = close + 1
        return k

    i = 0
    while i < n:
        t = toks[i]
        nxt = toks[i + 1].value if i + 1 < n else ""
        if t.kind == "id" and t.value in BINDERS and nxt == "<":
            tclose = matching(toks, i + 1)
            targs = [" ".join(x.value for x in a).replace(" ", "") for a in split_args(toks, i + 2, tclose, True)]
            j = tclose + 1
            var = None
            if toks[j].kind == "id":
                var = toks[j].value
                j += 1
            elif i >= 2 and toks[i - 1].value == "=" and toks[i - 2].kind == "id":
                var = toks[i - 2].value
            if toks[j].value not in ("(", "{"):
                i = j
                continue
            close = matching(toks, j)
            args = split_args(toks, j + 1, close)
            if len(args) < 2 or args[1][0].kind != "str" or len(args[1]) != 1:
                out.warnings.append(f"{path}:{t.line}: {t.value} without a literal name: skipped")
                i = close + 1
                continue
            scope = "".join(x.value for x in args[0])
            name = args[1][0].value
            parent = None
            if scope != MODULE_VAR:
                if scope not in variables:
                    out.warnings.append(f"{path}:{t.line}: {t.value} {name!r} in unknown scope {scope!r}")
                    i = close + 1
                    continue
                parent = variables[scope]
                name = parent + "." + name
            cls = PyClass(name, BINDERS[t.value], targs[0], targs[1:], parent=parent, where=f"{path}:{t.line}")
            if var:
                variables[var] = name
            k = chain(close + 1, cls)
            out.add_class(cls)
            i = max(k, close + 1)
            continue
        if t.kind == "id" and t.value in CONTAINER_BINDERS and nxt == "<":
            tclose = matching(toks, i + 1)
            if toks[tclose + 1].value == "(":
                close = matching(toks, tclose + 1)
                args = split_args(toks, tclose + 2, close)
                if len(args) >= 2 and args[1][0].kind == "str" and "".join(x.value for x in args[0]) == MODULE_VAR:
                    out.add_class(PyClass(args[1][0].value, "container", "", [], where=f"{path}:{t.line}"))
                i = close + 1
                continue
        prev = toks[i - 1].value if i else ";"
        if t.kind == "id" and nxt == "." and prev not in (".", "->", "::"):
            if t.value == MODULE_VAR and i + 3 < n and toks[i + 3].value == "(" and toks[i + 2].kind == "id":
                method = toks[i + 2].value
                close = matching(toks, i + 3)
                args = split_args(toks, i + 4, close)
                if args and len(args[0]) == 1 and args[0][0].kind == "str":
                    after = toks[close + 1].value if close + 1 < n else ""
                    after2 = toks[close + 2].value if close + 2 < n else ""
                    if method == "def" or (method == "attr" and after == "=" and after2 != "="):
                        out.module.add(args[0][0].value)
                i = close + 1
                continue
            if t.value in variables:
                i = chain(i + 1, out.classes[variables[t.value]])
                continue
        i += 1


# --------------------------------------------------------------------------------------------------------
# Python: tensorrt/__init__.py


def fill_template(text: str) -> str:
    """Replace ``##NAME##`` placeholders of NVIDIA's packaging templates so the file parses."""
    text = text.replace("##TENSORRT_MODULE##", "tensorrt").replace("##TENSORRT_NVINFER_NAME##", "nvinfer")
    text = re.sub(r"##TENSORRT_PLUGIN_DISABLED##", "False", text)
    return re.sub(r"##[A-Z0-9_]+##", "0", text)


def _const_compare(test: ast.expr) -> bool | None:
    """The value of an ``if`` test that compares string constants only (e.g. ``"tensorrt" == "tensorrt"``)."""
    if isinstance(test, ast.BoolOp):
        parts = [_const_compare(v) for v in test.values]
        if any(p is None for p in parts):
            return None
        return all(parts) if isinstance(test.op, ast.And) else any(parts)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right = test.left, test.comparators[0]
        if isinstance(left, ast.Constant) and isinstance(right, ast.Constant):
            if isinstance(test.ops[0], ast.Eq):
                return bool(left.value == right.value)
            if isinstance(test.ops[0], ast.NotEq):
                return bool(left.value != right.value)
    return None


def parse_init(text: str, out_module: set[str], out_members: dict[str, set[str]], notes: list[str]) -> None:
    """Names that ``tensorrt/__init__.py`` defines at module level and attributes it sets on classes.

    Imports and ``for``-loop variables are left out; an ``if`` on a runtime condition (Windows DLL loading)
    is taken as false, one comparing constants (the module-name template) is evaluated.
    """
    deleted: set[str] = set()

    def walk(body: Iterable[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                out_module.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for tgt in ast.walk(target):
                        if isinstance(tgt, ast.Name) and isinstance(tgt.ctx, ast.Store):
                            out_module.add(tgt.id)
                        elif isinstance(tgt, ast.Attribute) and isinstance(tgt.value, ast.Name):
                            out_members.setdefault(tgt.value.id, set()).add(tgt.attr)
            elif isinstance(node, ast.Delete):
                deleted.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.If):
                value = _const_compare(node.test)
                if value is None:
                    notes.append(f"__init__.py:{node.lineno}: `if {ast.unparse(node.test)}` taken as false")
                    walk(node.orelse)
                else:
                    walk(node.body if value else node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                walk(node.orelse)
                walk(node.finalbody)

    walk(ast.parse(text).body)
    out_module.difference_update(deleted)


# --------------------------------------------------------------------------------------------------------
# one release


def init_path(files: list[str]) -> str | None:
    """Where the ``tensorrt`` package's ``__init__.py`` template is at a release."""
    for candidate in ("python/packaging/bindings_wheel/tensorrt/__init__.py", "python/packaging/tensorrt/__init__.py"):
        if candidate in files:
            return candidate
    return None


def read_release(mirror: Path, ref: str) -> tuple[Bindings, list[str]]:
    """Parse the binding sources and ``__init__.py`` of one release; returns the bindings and the files read."""
    out = Bindings()
    files = git_files(mirror, ref, "python")
    sources = sorted(f for f in files if f.startswith("python/src/") and f.endswith(".cpp"))
    for path in sources:
        parse_cpp(git(mirror, "show", f"{ref}:{path}"), path, out)
    init = init_path(files)
    if init:
        parse_init(fill_template(git(mirror, "show", f"{ref}:{init}")), out.python_module,
                   out.python_members, out.warnings)
        sources.append(init)
    else:
        out.warnings.append(f"no tensorrt/__init__.py at {ref}")
    return out, sources


def build_row(b: Bindings) -> dict[str, list[str]]:
    """The table row of one release: ``<module>``, one sorted list per class, and ``_bases``."""
    by_cpp: dict[str, str] = {}
    for cls in b.classes.values():
        if cls.kind == "class" and cls.parent is None:
            by_cpp.setdefault(_cpp_last(cls.cpp), cls.name)
    row: dict[str, set[str]] = {MODULE: set(b.module) | set(b.python_module)}
    bases: dict[str, list[str]] = {}
    for cls in b.classes.values():
        members = set(cls.members) | set(cls.values)
        row.setdefault(cls.name, set()).update(members)
        scope = cls.parent or MODULE
        row.setdefault(scope, set()).add(cls.name.split(".")[-1])
        if cls.exported:
            row[scope].update(cls.values)
        found = []
        for other in cls.others:
            if other.startswith(HOLDERS):
                continue
            base = by_cpp.get(_cpp_last(other))
            if base and base != cls.name:
                found.append(base)
        if found:
            bases[cls.name] = found
    for cls_name, attrs in b.python_members.items():
        if cls_name in row:
            row[cls_name].update(attrs)
        else:
            b.warnings.append(f"__init__.py sets attributes on {cls_name}, which is not a bound class")
    table: dict[str, list[str]] = {k: sorted(v) for k, v in sorted(row.items())}
    table["_bases"] = {k: v for k, v in sorted(bases.items())}  # type: ignore[assignment]
    return table


# --------------------------------------------------------------------------------------------------------
# wheels


def sha256_file(path: Path) -> str:
    """The sha256 of a file, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheels(dest: Path) -> None:
    """``pip download`` every wheel of WHEELS into ``dest`` (no dependencies, binary only)."""
    for reqs in WHEELS.values():
        for req in reqs:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                 "3.10", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                 "-d", str(dest), req],
                check=True,
            )


def find_wheel(folder: Path, req: str) -> Path | None:
    """The wheel in ``folder`` for a ``name==version`` requirement."""
    name, version = req.split("==")
    for whl in sorted(folder.glob("*.whl")):
        parts = whl.name.split("-")
        if parts[0] == name.replace("-", "_") and parts[1] == version:
            return whl
    return None


@dataclass
class WheelStrings:
    """What a bindings wheel shows: the extension module's strings, its Doc symbols and ``__init__.py`` names."""

    whole: set[str]
    blob: bytes
    doc_members: set[str]
    init_module: set[str]
    init_members: dict[str, set[str]]

    def has(self, name: str) -> str:
        """``"exact"`` (a string of its own), ``"tail"`` (the end of a longer, linker-merged string) or ``""``."""
        if name in self.whole:
            return "exact"
        if name.encode() + b"\0" in self.blob:
            return "tail"
        return ""


_DOC_SYMBOL = re.compile(rb"_ZN8tensorrt(\d+)")


def _doc_members(blob: bytes) -> set[str]:
    """Member names of the ``tensorrt::<X>Doc::<member>`` docstring constants (mangled symbol names)."""
    names: set[str] = set()
    for m in _DOC_SYMBOL.finditer(blob):
        pos = m.end()
        length = int(m[1])
        outer = blob[pos : pos + length]
        pos += length
        if not outer.endswith((b"Doc", b"DOC")):
            continue
        if blob[pos : pos + 1] == b"L":
            pos += 1
        lm = re.match(rb"(\d+)", blob[pos : pos + 4])
        if not lm:
            continue
        start = pos + len(lm[1])
        member = blob[start : start + int(lm[1])]
        if re.fullmatch(rb"[A-Za-z_]\w*", member) and blob[start + int(lm[1]) : start + int(lm[1]) + 1] == b"E":
            names.add(member.decode())
    names.discard("descr")
    return names


def read_wheel(whl: Path) -> WheelStrings:
    """Read the extension module and ``__init__.py`` of a bindings wheel (nothing is imported or run)."""
    with zipfile.ZipFile(whl) as zf:
        so = [n for n in zf.namelist() if re.search(r"/tensorrt[^/]*\.so$", n) or n.endswith(".pyd")]
        init = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/__init__.py")]
        blob = zf.read(so[0])
        init_text = zf.read(init[0]).decode("utf-8") if init else ""
    whole = {s.decode("latin-1") for s in blob.split(b"\0") if 0 < len(s) < 200}
    mod: set[str] = set()
    members: dict[str, set[str]] = {}
    parse_init(init_text, mod, members, [])
    return WheelStrings(whole, blob, _doc_members(blob), mod, members)


def check_removals(row: dict[str, list[str]], previous: dict[str, list[str]], wheel: WheelStrings, label: str) -> None:
    """Print the members the sources drop since the previous row and whether the wheel still has such a string.

    A dropped name the wheel has as a string of its own may be a parser miss, or just the same word used
    elsewhere (another class, a docstring fragment); one the wheel lacks confirms the removal.
    """
    dropped = sorted(
        f"{cls}.{name}"
        for cls, names in previous.items()
        if cls not in ("_bases", MODULE) and cls in row
        for name in set(names) - set(row[cls])
    )
    still = [d for d in dropped if wheel.has(d.rsplit(".", 1)[1]) == "exact"]
    print(f"{label}: {len(dropped)} members dropped since the previous row; {len(dropped) - len(still)} of those "
          f"names are not in the wheel at all; the rest occur as strings (possibly for other classes): "
          f"{', '.join(still) or 'none'}")


def cross_check(row: dict[str, list[str]], b: Bindings, wheel: WheelStrings, label: str) -> list[str]:
    """Print and return the table's names that the wheel lacks; print what the wheel documents beyond them."""
    py_members = {(c, a) for c, attrs in b.python_members.items() for a in attrs}
    missing: list[str] = []
    tails = 0
    checked = 0
    for cls, names in row.items():
        if cls == "_bases":
            continue
        if cls != MODULE and "." not in cls:
            checked += 1
            if not wheel.has(cls):
                missing.append(cls)
        for name in names:
            checked += 1
            if (cls == MODULE and name in b.python_module) or (cls, name) in py_members:
                ok = name in wheel.init_module if cls == MODULE else name in wheel.init_members.get(cls, set())
                if not ok:
                    missing.append(f"{cls}.{name} (Python layer)")
                continue
            how = wheel.has(name)
            tails += how == "tail"
            if not how:
                missing.append(f"{cls}.{name}")
    everything = {n for k, v in row.items() if k != "_bases" for n in v}
    # Doc constants named in C++ style (camelCase plugin-method docs, *_descr class docs) or after an overload
    # (``get_binding_shape_str``) are not Python names; the rest would point at something the parser missed.
    undocumented = sorted(
        d for d in wheel.doc_members - everything
        if not re.search(r"[a-z][A-Z]|_descr$|^k[A-Z]", d)
        and re.sub(r"_(str|iplugincreator)$", "", d) not in everything
        and d != "init"
    )
    print(f"{label}: {checked} names checked, {len(missing)} missing from the wheel "
          f"({tails} found only as the tail of a longer string)")
    for name in missing:
        print(f"  not in wheel: {name}")
    print(f"  wheel documents {len(wheel.doc_members)} members (tensorrt::*Doc symbols); not in the source table: "
          f"{', '.join(undocumented) or 'none'}")
    return missing


# --------------------------------------------------------------------------------------------------------
# output


def dump(table: object) -> str:
    """JSON with one line per class (small and diff-friendly)."""

    def lines(obj: object, indent: int) -> Iterator[str]:
        pad = " " * indent
        if isinstance(obj, dict) and obj:
            items = list(obj.items())
            yield "{"
            for n, (k, v) in enumerate(items):
                sub = list(lines(v, indent + 1))
                comma = "," if n + 1 < len(items) else ""
                yield f"{pad} {json.dumps(k)}: {sub[0]}" + ("" if len(sub) > 1 else comma)
                if len(sub) > 1:
                    yield from sub[1:-1]
                    yield sub[-1] + comma
            yield pad + "}"
        else:
            yield json.dumps(obj, ensure_ascii=True)

    return "\n".join(lines(table, 0)) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Build the table (see the module docstring); exit status 1 if a wheel lacks a name of its version's row."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mirror", type=Path, required=True, help="git dir of a NVIDIA/TensorRT mirror")
    ap.add_argument("--wheels", type=Path, help="folder holding the bindings wheels to cross-check against")
    ap.add_argument("--download-wheels", action="store_true", help="pip download the wheels to a temp folder")
    ap.add_argument("--out", type=Path, default=Path("tests/data/tensorrt_api_names.json"))
    args = ap.parse_args(argv)

    tmp: tempfile.TemporaryDirectory[str] | None = None
    wheel_dir = args.wheels
    if wheel_dir is None and args.download_wheels:
        tmp = tempfile.TemporaryDirectory(prefix="trtwheels-")
        wheel_dir = Path(tmp.name)
        download_wheels(wheel_dir)

    sources: dict[str, str] = {}
    versions: dict[str, dict[str, list[str]]] = {}
    problems = 0
    previous: dict[str, list[str]] | None = None
    for row_name, ref in VERSIONS.items():
        commit = git(args.mirror, "rev-parse", ref + "^{commit}").strip()
        bindings, files = read_release(args.mirror, ref)
        row = build_row(bindings)
        versions[row_name] = row
        classes = [k for k in row if k not in (MODULE, "_bases")]
        names = sum(len(v) for k, v in row.items() if k != "_bases")
        print(f"{row_name}: NVIDIA/TensorRT@{ref} ({commit[:12]}): {len(classes)} classes/enums, {names} names, "
              f"{len(row[MODULE])} module-level")
        for w in bindings.warnings:
            print(f"  note: {w}")
        srcs = sorted({re.sub(r"/[^/]+$", "/", f) for f in files if f.endswith(".cpp")})
        text = "github.com/NVIDIA/TensorRT@{} (commit {}): {}*.cpp + {}".format(
            ref, commit, "*.cpp, ".join(srcs), next((f for f in files if f.endswith("__init__.py")), "-"))
        checked = []
        for req in WHEELS.get(row_name, []) if wheel_dir else []:
            whl = find_wheel(wheel_dir, req)
            if whl is None:
                print(f"  {req}: wheel not found in {wheel_dir}")
                continue
            strings = read_wheel(whl)
            missing = cross_check(row, bindings, strings, f"  {row_name} vs {whl.name}")
            if previous is not None:
                check_removals(row, previous, strings, f"  {row_name} vs {whl.name}")
            problems += len(missing) if req == WHEELS[row_name][0] else 0
            checked.append("{} (sha256 {}): {}".format(whl.name, sha256_file(whl),
                                                  "all names found" if not missing else
                                                  f"{len(missing)} names not found: {', '.join(missing)}"))
        if checked:
            text += "; cross-checked against the strings of " + "; ".join(checked)
        elif row_name in WHEELS:
            text += "; no wheel cross-check in this run"
        else:
            text += "; no bindings wheel of this version on PyPI: sources only"
        sources[row_name] = text
        previous = row

    table = {
        "_about": "Python names of the tensorrt module per TensorRT version, from NVIDIA's pybind11 sources; "
        "made by scripts/tensorrt_api_names.py. '<module>' lists module-level names; '_bases' lists the "
        "Python base classes of a class (walk them for inherited members); nested classes are 'Outer.Inner'.",
        "_sources": sources,
        "versions": versions,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(table), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if tmp is not None:
        tmp.cleanup()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
