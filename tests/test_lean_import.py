"""``import sqakd_edge`` and ``sqakd-edge --help`` load none of the heavy or optional dependencies."""

import json
import subprocess
import sys

HEAVY = ["onnx", "onnxruntime", "tensorrt", "pycuda", "matplotlib", "torch"]

PROBE = """
import json, sys
{stmt}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded(stmt: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt, heavy=HEAVY)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_package_is_lean():
    assert _loaded("import sqakd_edge, sqakd_edge.errors, sqakd_edge.config") == []


def test_help_is_lean():
    stmt = ("from sqakd_edge.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "for cmd in list(main.commands):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass")
    assert _loaded(stmt) == []


def test_bench_package_never_imports_torch_at_import():
    assert "torch" not in _loaded("import sqakd_edge.bench")
