"""The environment block of every bench result: what machine and software produced the numbers.

Nothing here imports torch or onnxruntime: versions come from the installed package metadata.
Nothing here fails: a fact that cannot be found is recorded as None.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__

# ISA extensions that decide integer-kernel speed: ONNX Runtime's int8 GEMMs use AVX2 on older
# x86, AVX-512 VNNI / AVX-VNNI (u8 x s8 dot products) and AMX where present; on ARM the dot
# product extension (asimddp) and i8mm.
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "avx_vnni_int8", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve",
)


def _read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, core counts and the ISA flags that matter for inference speed.

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (read when None; empty off Linux).

    Returns:
        ``{"model", "logical_cores", "physical_cores", "isa": {flag: bool}, "flags_source"}``.
    """
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    model = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("model name", "Hardware", "Model") and model is None and value:
            model = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
    return {
        "model": model or platform.processor() or platform.machine() or None,
        "architecture": platform.machine() or None,
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "isa": {flag: flag in flags for flag in ISA_FLAGS} if flags else None,
        "flags_source": "/proc/cpuinfo" if flags else None,
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def git_state(start: Path | None = None) -> dict[str, Any]:
    """The git commit of the sqakd-edge checkout this package runs from, if it runs from one.

    Args:
        start: a folder inside the checkout (default: the package's folder).

    Returns:
        ``{"commit": sha or None, "dirty": bool or None}``; never raises.
    """
    folder = Path(start) if start is not None else Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(folder)]
    try:
        top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5)
        # Only a checkout of this project counts, not some repository the package happens to sit in.
        if top.returncode != 0 or not (Path(top.stdout.strip()) / "sqakd_edge").is_dir():
            return {"commit": None, "dirty": None}
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {
        "commit": commit.stdout.strip() or None if commit.returncode == 0 else None,
        "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None,
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other work competing for the CPU), None where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def collect_environment(threads: int) -> dict[str, Any]:
    """The environment block for a result file.

    Args:
        threads: the intra-op thread count the bench used.

    Returns:
        A JSON-able dict: cpu, os, python, library versions, threads, sqakd-edge version and commit.
    """
    git = git_state()
    return {
        "cpu": cpu_facts(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "sqakd_edge": __version__,
            "numpy": _version("numpy"),
            "onnxruntime": _version("onnxruntime"),
            "onnx": _version("onnx"),
            "torch": _version("torch"),
        },
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "threads": threads,
        "load_average": load_average(),
    }
