"""Pre-flight check run on the device before anything is uploaded (Python 3.6+, stdlib only).

The workstation sends this file on stdin (``ssh HOST -- python3 - CACHE_DIR RELPATH...``), so it works on a
device that has nothing of ours yet. It prints one JSON object: the Python version, which of the modules
the device program can use are importable (with versions), the absolute cache folder, and the sha256 of
each requested file under it (null when missing), so only what is missing or different is uploaded.
"""

import hashlib
import importlib
import json
import os
import platform
import sys

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"

# Report name -> importable module paths, tried in order (cuda-python moved its runtime module in 12.6).
# pycuda is probed at pycuda.driver: importing the package alone succeeds even when its compiled _driver
# does not (built against another numpy, or no libcuda), which is the failure that matters.
MODULES = (("numpy", ("numpy",)), ("tensorrt", ("tensorrt",)), ("pycuda", ("pycuda.driver",)),
           ("cuda-python", ("cuda.bindings.runtime", "cuda.cudart")), ("onnx", ("onnx",)),
           ("onnxruntime", ("onnxruntime",)))


def _module(paths):
    error = ""
    for path in paths:
        try:
            mod = importlib.import_module(path)
        except Exception as exc:  # ImportError, or a broken install raising something else
            error = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            continue
        version = ""
        for owner in (mod, sys.modules.get(path.rsplit(".", 1)[0]), sys.modules.get(path.split(".")[0])):
            version = str(getattr(owner, "__version__", getattr(owner, "VERSION_TEXT", "")) or "")
            if version:
                break
        return {"ok": True, "version": version}
    return {"ok": False, "error": error}


def _trtexec():
    """Where NVIDIA's trtexec is (every JetPack has it at JETPACK_TRTEXEC), else None."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, "trtexec")
        if folder and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return JETPACK_TRTEXEC if os.access(JETPACK_TRTEXEC, os.X_OK) else None


def _sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except (IOError, OSError):
        return None
    return digest.hexdigest()


def main(argv):
    cache = os.path.abspath(os.path.expanduser(argv[0])) if argv else None
    report = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "machine": platform.machine(),
        "home": os.path.expanduser("~"),
        "uid": os.getuid() if hasattr(os, "getuid") else None,
        "gid": os.getgid() if hasattr(os, "getgid") else None,
        "trtexec": _trtexec(),
        "cache": cache,
        "modules": dict((name, _module(paths)) for name, paths in MODULES),
        "files": dict((rel, _sha256(os.path.join(cache, rel))) for rel in argv[1:]) if cache else {},
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
