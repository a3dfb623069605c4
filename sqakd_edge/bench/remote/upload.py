"""What a run needs on the device, packed for one tar stream.

The device program and the graphs, prepared and hashed, and the fixed script that unpacks them there
without half-written files.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .. import devices

# A fixed script, run as ``sh -c SCRIPT sh CACHE TOKEN``: extract the tar from stdin into a staging folder,
# then move each file into place (a rename), so an interrupted upload never leaves a half-written file
# under its final name. CACHE and TOKEN arrive as positional parameters, never pasted into the script.
_UNPACK = (
    'set -e; mkdir -p "$1"; cd "$1"; stage=".incoming-$2"; rm -rf "$stage"; mkdir "$stage"; '
    'tar -xf - -C "$stage"; cd "$stage"; '
    'find . -type f | while IFS= read -r f; do mkdir -p "../$(dirname "$f")"; mv -f "$f" "../$f"; done; '
    'cd ..; rm -rf "$stage"'
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Upload:
    """The files a run needs on the device, by path relative to the cache folder."""

    files: dict[str, bytes]
    program_dir: str
    graphs: dict[str, str]  # role -> relative path


def prepare_upload(graphs: dict[str, Path], strip_student: bool) -> tuple[Upload, dict[str, Any]]:
    """Fold Identity initializers (TensorRT 8.x), add the Q/DQ-stripped student if asked, hash everything.

    Args:
        graphs: ``{"fp32": path, "int8": path}`` (either may be missing).
        strip_student: also ship ``int8-stripped`` (for a device without fast INT8).

    Returns:
        The upload and a record of what was done to each graph.

    Raises:
        ConfigError: no graph at all.
    """
    if not graphs:
        raise ConfigError("the export directory has no graphs to bench")
    prep = devices.device_module("onnx_prep")
    program = devices.device_program_files()
    program_hash = _sha256(b"".join(_sha256(program[name]).encode() for name in sorted(program)))[:16]
    program_dir = f"program/{program_hash}"
    files = {f"{program_dir}/{name}": data for name, data in program.items()}
    roles: dict[str, str] = {}
    record: dict[str, Any] = {}
    jobs = [(role, path, False) for role, path in graphs.items()]
    if strip_student and "int8" in graphs:
        jobs.append(("int8-stripped", graphs["int8"], True))
    with tempfile.TemporaryDirectory(prefix="sqakd-edge-upload-") as tmp:
        for role, path, strip in jobs:
            out = Path(tmp) / f"{role}.onnx"
            try:
                done = prep.prepare_file(str(path), str(out), strip=strip)
            except ValueError as exc:
                raise ConfigError(f"cannot prepare {Path(path).name} for the device: {exc}") from None
            data = out.read_bytes()
            sha = _sha256(data)
            roles[role] = f"graphs/{sha}.onnx"
            files[roles[role]] = data
            record[role] = {"file": Path(path).name, "sha256_uploaded": sha, **done}
    return Upload(files, program_dir, roles), record


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- one remote run ---------------------------------------------------------------------------------------
