"""One device run: probe, upload, optional power setup, the device program, its document."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...config import RemoteOptions
from ...errors import RemoteError
from .. import devices
from .document import _parse_document
from .power import _restore_power, _setup_power
from .ssh import Progress, RemoteSession, _ssh_failure
from .upload import _UNPACK, _sha256, _tar, prepare_upload


@dataclass
class DeviceRun:
    """What a remote run returned.

    Args:
        document: the device program's JSON document.
        probe: the pre-flight report (Python, modules, cache folder).
        uploaded: files copied this time (relative to the cache folder).
        skipped: files already there with the same sha256.
        setup: power-mode and clock changes made and restored (``--setup``), else None.
        prepared: what was done to each graph before upload.
    """

    document: dict[str, Any]
    probe: dict[str, Any]
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    setup: dict[str, Any] | None = None
    prepared: dict[str, Any] = field(default_factory=dict)


def _probe(session: RemoteSession, python: str, cache: str, relpaths: list[str],
           docker_image: str | None) -> dict[str, Any]:
    argv = [python, "-", cache, *relpaths]
    done = session.run(argv, stdin=devices.probe_source())
    error = _ssh_failure(done, session.ssh, "checking the device")
    if error is not None:
        raise error
    where = session.ssh.where
    if done.rc == 127 or (done.rc != 0 and "not found" in " ".join(done.stderr)):
        raise RemoteError(f"the remote Python {python!r} was not found on {where}; install python3 there or pass "
                          "--remote-python PATH")
    try:
        report = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RemoteError(f"{python!r} on {where} did not run the pre-flight check (exit {done.rc}): "
                          f"{done.last_error}") from None
    problem = _probe_problem(report)
    if problem:
        raise RemoteError(f"the pre-flight check on {where} returned an invalid report ({problem}); check that "
                          f"{python!r} is a plain CPython 3.6+ there")
    if docker_image:
        inner = session.run(["docker", "run", "--rm", "-i", "--runtime", "nvidia", "--entrypoint", "python3",
                             docker_image, "-", cache], stdin=devices.probe_source())
        error = _ssh_failure(inner, session.ssh, "checking the docker image")
        if error is not None:
            raise error
        if inner.rc != 0:
            raise RemoteError(f"docker image {docker_image!r} cannot run on {where} (exit {inner.rc}): "
                              f"{inner.last_error}")
        try:
            inner_report = json.loads(inner.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            inner_report = None
        problem = _probe_problem(inner_report)
        if problem:
            raise RemoteError(f"the pre-flight check in docker image {docker_image!r} on {where} returned an invalid "
                              f"report ({problem})")
        assert isinstance(inner_report, dict)
        report["modules"] = inner_report["modules"]
        report["modules_source"] = f"docker image {docker_image}"
    return report


def _probe_problem(report: Any) -> str | None:
    """The first thing in a probe report that cannot be used, else None."""
    if not isinstance(report, dict):
        return f"a {type(report).__name__}, not an object"
    modules = report.get("modules")
    if not isinstance(modules, dict) or not all(isinstance(v, dict) for v in modules.values()):
        return "modules is not an object of objects"
    files = report.get("files", {})
    if not isinstance(files, dict) or not all(v is None or isinstance(v, str) for v in files.values()):
        return "files is not an object of sha256 texts"
    for key in ("cache", "trtexec"):
        if report.get(key) is not None and not isinstance(report[key], str):
            return f"{key} is {report[key]!r}, not a path"
    for key in ("uid", "gid"):
        if report.get(key) is not None and (isinstance(report[key], bool) or not isinstance(report[key], int)):
            return f"{key} is {report[key]!r}, not an integer"
    return None


def _check_modules(report: dict[str, Any], where: str, python: str, profile: devices.DeviceProfile,
                   progress: Progress | None) -> list[str]:
    """Say plainly what is missing and which runner the device program will use; raise when none can run.

    The device program picks Python TensorRT with a CUDA binding, else ``trtexec`` (on every JetPack; it
    needs no CUDA binding), else ONNX Runtime on the device's CPU. Returns the notes for the report.
    """
    modules = report.get("modules", {})

    def ok(name: str) -> bool:
        return bool(modules.get(name, {}).get("ok"))

    def error(name: str) -> str:
        return str(modules.get(name, {}).get("error") or "not importable")

    source = report.get("modules_source", f"{python} (Python {report.get('python')})")
    if not ok("numpy"):
        raise RemoteError(f"{source} on {where} has no numpy, which the device program needs; install it "
                          "(JetPack: sudo apt install python3-numpy)")
    setup = "; ".join(profile.cuda_binding_setup) or "pip3 install pycuda, or cuda-python matching the CUDA driver"
    notes: list[str] = []
    if ok("tensorrt") and (ok("pycuda") or ok("cuda-python")):
        return notes
    if ok("tensorrt"):
        why = (f"{source} on {where} has TensorRT but no working CUDA binding (pycuda.driver: {error('pycuda')}; "
               f"cuda-python: {error('cuda-python')})")
    else:
        why = f"TensorRT is not importable by {source} on {where} ({error('tensorrt')})"
    if report.get("trtexec"):
        note = f"{why}; the device program builds and times with {report['trtexec']} instead"
        if ok("tensorrt"):
            note += f" (for the Python runner: {setup})"
    elif ok("onnxruntime"):
        note = (f"{why}, and there is no trtexec; the device program falls back to ONNX Runtime on the device's "
                "CPU, and the results say so")
    else:
        fix = setup if ok("tensorrt") else ("on a Jetson, TensorRT's Python bindings come with JetPack "
                                            "(python3-libnvinfer), or pass --remote-python to an interpreter "
                                            "that has them")
        raise RemoteError(f"{why}, there is no trtexec and no ONNX Runtime: nothing can run the graphs; {fix}")
    if progress is not None:
        progress(note)
    return [note]


def run_device_bench(
    graphs: dict[str, Path],
    target: devices.RemoteTarget,
    options: RemoteOptions,
    *,
    batches: Sequence[int] = (1,),
    warmup_iters: int = 20,
    iters: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
    inputs: Any = None,
    input_spec: str | None = None,
) -> DeviceRun:
    """Upload the device program and graphs, run it, and return its document.

    Args:
        graphs: ``{"fp32": path, "int8": path}`` from the export directory.
        target: the device: how to reach it, its Python, cache and docker image; its profile decides the power
            mode and whether to ship the stripped student.
        options: setup, tegrastats, workspace, timeout.
        batches: batch sizes.
        warmup_iters: untimed iterations per engine and batch.
        iters: timed iterations per engine and batch.
        seed: seed of the device's random inputs.
        inputs: float32 N x C x H x W real inputs (``--data``): each graph's outputs on them come back, for
            the three-way parity (device engine vs ONNX Runtime vs PyTorch).
        input_spec: ``NAME:CxHxW`` of the graphs' input (trtexec needs it for a dynamic batch).
        progress: receives one line at a time (the device program's stderr, and our own steps).

    Returns:
        The :class:`DeviceRun`.

    Raises:
        RemoteError: any failure of the transport, the device's software or the device program.
        ConfigError: graphs that cannot be prepared.
    """
    say = progress or (lambda line: None)
    python = target.python
    ssh = target.ssh
    upload, prepared = prepare_upload(graphs, strip_student=not target.profile.int8)
    inputs_rel = None
    if inputs is not None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(inputs, dtype=np.float32), allow_pickle=False)
        inputs_rel = f"inputs/{_sha256(buffer.getvalue())}.npy"
        upload.files[inputs_rel] = buffer.getvalue()
    session = RemoteSession(ssh, progress)
    where = ssh.where

    say(f"checking {where}")
    report = _probe(session, python, target.remote_cache, sorted(upload.files), target.docker_image)
    notes = _check_modules(report, where, python, target.profile, progress)
    have = report.get("files", {})
    needed = {rel: data for rel, data in upload.files.items() if have.get(rel) != _sha256(data)}
    skipped = sorted(set(upload.files) - set(needed))
    if needed:
        size_mb = sum(map(len, needed.values())) / 1e6
        say(f"uploading {len(needed)} file(s) ({size_mb:.1f} MB) to {where}:{target.remote_cache}")
        session.check(["sh", "-c", _UNPACK, "sh", target.remote_cache, secrets.token_hex(6)], "uploading files",
                      stdin=_tar(needed))
    else:
        say("everything is already on the device (same sha256); nothing to upload")

    cache = report.get("cache") if target.docker_image else target.remote_cache
    if not cache:
        raise RemoteError(f"the pre-flight check on {where} did not report its cache folder")
    argv = [f"{cache}/{upload.program_dir}/trt_bench.py", "bench", "--cache-dir", f"{cache}/engines",
            "--batch", ",".join(str(b) for b in batches), "--warmup", str(warmup_iters), "--iters", str(iters),
            "--seed", str(seed), "--workspace-mib", str(options.workspace_mib)]
    for role, rel in upload.graphs.items():
        argv += ["--graph", f"{role}={cache}/{rel}"]
    if options.tegrastats:
        argv.append("--tegrastats")
    if inputs_rel is not None:
        argv += ["--inputs", f"{cache}/{inputs_rel}"]
    if input_spec:
        argv += ["--input", input_spec]
    if target.docker_image:
        # as the user who owns the cache, so engines and timing caches a container wrote can later be replaced
        # by a bare-metal run (a root container would leave root-owned files in the user's cache)
        user = ["--user", f"{report['uid']}:{report['gid']}"] if report.get("uid") is not None and \
            report.get("gid") is not None else []
        argv = ["docker", "run", "--rm", "--runtime", "nvidia", "--network", "none", *user, "-e", "HOME=/tmp",
                "-v", f"{cache}:{cache}", "--entrypoint", "python3", target.docker_image, *argv]
    else:
        argv = [python, *argv]

    setup = _setup_power(session, report, target.profile, target.remote_cache) if options.setup else None
    try:
        say(f"running the device program on {where}")
        done = session.run(argv, stream=True, timeout_s=options.run_timeout_s)
    finally:
        if setup is not None:
            _restore_power(session, report, setup)
    error = _ssh_failure(done, ssh, "the device program was running", program_ran=True)
    if error is not None:
        raise error
    document = _parse_document(done, where)
    document["workstation_notes"] = notes  # the pre-flight check's notes, kept for the record
    return DeviceRun(document, report, sorted(needed), skipped, setup, prepared)
