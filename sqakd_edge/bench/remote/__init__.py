"""Benchmark on a remote device (a Jetson) over SSH: the ``--device NAME`` backend of ``sqakd-edge bench``.

The system OpenSSH client does the transport, always through argument lists, so ``~/.ssh/config`` aliases,
agents and ProxyJump work and no password ever appears on a command line (``BatchMode=yes``: it never
prompts). Host keys are checked strictly by default. One run is four steps:

1. **probe** — a stdlib-only script (``jetson/probe.py``) is sent on stdin to the remote Python; it reports
   the Python version, which of numpy/tensorrt/pycuda/cuda-python/onnx/onnxruntime import, and the sha256
   of the files we would upload, so a missing dependency is named before anything is copied;
2. **upload** — the device program and the graphs go into ``~/.cache/sqakd-edge`` (``program/<hash>/``,
   ``graphs/<sha256>.onnx``) in one tar stream, skipping files whose sha256 already matches;
3. **setup** (``--setup`` only) — ``nvpmodel -m <profile's mode>`` and ``jetson_clocks``, after recording the
   previous mode and clocks, which are restored afterwards;
4. **run** — the device program builds and times the engines, streaming progress on stderr, and prints one
   JSON document (``sqakd-edge.device-results`` v1), turned here into the bench's measurements.

Every failure (closed port, refused key, unknown host key, missing remote Python or TensorRT, a crashing
device program, a dropped connection) is a one-line :class:`~sqakd_edge.errors.RemoteError`. Nothing is
written locally here; the bench writes its outputs only after the device returned a complete document.

The device record (profile, :class:`SshTarget`, Python, cache, docker image) is
:class:`~sqakd_edge.bench.devices.RemoteTarget`. Modules: :mod:`.ssh` (the transport), :mod:`.upload`,
:mod:`.power` (``--setup``), :mod:`.run` (one run: probe, upload, program), :mod:`.document` (validating and
reading the device's answer), :mod:`.backend`.
"""

from __future__ import annotations

from ...config import RemoteOptions  # noqa: F401 -- run_device_bench's options, named here too
from ..devices import CACHE_DIR, RemoteTarget, SshTarget  # noqa: F401
from .backend import RemoteBackend, check_graphs_for_device, device_block, device_notes, make_backend  # noqa: F401
from .document import (  # noqa: F401
                      DEVICE_SCHEMA,
                      DEVICE_SCHEMA_VERSION,
                      _parse_document,
                      comparisons_from_document,
                      document_problem,
                      measurements_from_document,
                      notes_from_document,
                      precision_ran,
)
from .run import DeviceRun, _probe_problem, run_device_bench  # noqa: F401
from .ssh import (  # noqa: F401
                      MAX_STDERR_LINE,
                      MAX_STDERR_LINES,
                      MAX_STDOUT_BYTES,
                      Progress,
                      RemoteSession,
                      _Completed,
                      clean_line,
)
from .upload import Upload, prepare_upload  # noqa: F401
