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
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import shlex
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RemoteError
from . import devices

CACHE_DIR = ".cache/sqakd-edge"  # default; relative to the remote home directory, where ssh starts
DEVICE_SCHEMA = "sqakd-edge.device-results"
DEVICE_SCHEMA_VERSION = 1
Progress = Callable[[str], None]

# A fixed script, run as ``sh -c SCRIPT sh CACHE TOKEN``: extract the tar from stdin into a staging folder,
# then move each file into place (a rename), so an interrupted upload never leaves a half-written file
# under its final name. CACHE and TOKEN arrive as positional parameters, never pasted into the script.
_UNPACK = (
    'set -e; mkdir -p "$1"; cd "$1"; stage=".incoming-$2"; rm -rf "$stage"; mkdir "$stage"; '
    'tar -xf - -C "$stage"; cd "$stage"; '
    'find . -type f | while IFS= read -r f; do mkdir -p "../$(dirname "$f")"; mv -f "$f" "../$f"; done; '
    'cd ..; rm -rf "$stage"'
)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class SshTarget:
    """How to reach a device with the system ``ssh``.

    Args:
        host: ``USER@HOST``, ``HOST`` or an ``~/.ssh/config`` alias (passed to ssh unchanged).
        port: SSH port; None leaves it to ``~/.ssh/config`` (default 22).
        identity_file: a private key (``-i``); None uses the agent / config / default keys.
        known_hosts_file: a known_hosts file instead of ``~/.ssh/known_hosts``.
        strict_host_key_checking: True refuses unknown host keys (the default); False accepts a new host
            key on first contact (``accept-new``) but still refuses a changed one.
        connect_timeout_s: seconds to wait for the TCP connection.
        extra_options: further ``-o Key=Value`` options.
    """

    host: str
    port: int | None = None
    identity_file: str | None = None
    known_hosts_file: str | None = None
    strict_host_key_checking: bool = True
    connect_timeout_s: int = 10
    extra_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise ConfigError(f"--host {self.host!r} is not a host: give USER@HOST or an ~/.ssh/config alias")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"SSH port must be 1-65535, got {self.port}")

    @property
    def where(self) -> str:
        """The host (and port) for messages."""
        return self.host if self.port is None else f"{self.host} port {self.port}"

    def argv(self, remote_argv: Sequence[str]) -> list[str]:
        """The local ``ssh`` argument list that runs ``remote_argv`` on the device.

        ssh hands the remote command to the remote shell as one string, so each argument is quoted with
        :func:`shlex.quote`; that keeps it one argument end to end (no word splitting, no globbing).
        """
        argv = ["ssh", "-o", "BatchMode=yes",
                "-o", f"StrictHostKeyChecking={'yes' if self.strict_host_key_checking else 'accept-new'}",
                "-o", f"ConnectTimeout={self.connect_timeout_s}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.identity_file:
            argv += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts_file:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
        for option in self.extra_options:
            argv += ["-o", option]
        return argv + ["--", self.host, shlex.join(list(remote_argv))]


@dataclass(frozen=True)
class RemoteOptions:
    """How to run on the device.

    Args:
        remote_python: the interpreter on the device (default: the profile's, ``python3``).
        docker_image: run the device program inside this image (``docker run --runtime nvidia``).
        setup: set the profile's benchmark power mode and ``jetson_clocks`` first, restore them after.
        tegrastats: sample board power with ``tegrastats`` while timing.
        workspace_mib: TensorRT builder workspace limit.
        run_timeout_s: give up on the device program after this many seconds (None: never).
        remote_cache: the cache folder on the device (relative paths start at the remote home).
    """

    remote_python: str | None = None
    docker_image: str | None = None
    setup: bool = False
    tegrastats: bool = False
    workspace_mib: int = 256
    run_timeout_s: float | None = None
    remote_cache: str = CACHE_DIR


@dataclass
class _Completed:
    rc: int
    stdout: bytes
    stderr: list[str]

    @property
    def last_error(self) -> str:
        lines = [line for line in self.stderr if line.strip()]
        return _one_line(lines[-1]) if lines else "(no message)"


def _ssh_hint(ssh: SshTarget) -> str:
    return f"ssh -p {ssh.port} {ssh.host}" if ssh.port is not None else f"ssh {ssh.host}"


def _ssh_failure(done: _Completed, ssh: SshTarget, what: str, program_ran: bool = False) -> RemoteError | None:
    """A one-line error for a failure of ssh itself (exit 255), or None if ssh worked.

    ``program_ran``: the command is one whose death by a signal ssh also reports as 255 (it then prints none
    of its own messages), so an unexplained 255 is left to the caller.
    """
    text = "\n".join(done.stderr)
    host = ssh.where
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return RemoteError(f"the host key of {host} has CHANGED since it was recorded in known_hosts; this may be an "
                           "attack or a reinstalled device: verify it, then remove the old key with ssh-keygen -R")
    if "Host key verification failed" in text or "host key is known" in text:
        return RemoteError(f"the host key of {host} is not in your known_hosts and strict host-key checking is on; "
                           f"connect once with '{_ssh_hint(ssh)}' and verify the fingerprint (or pass "
                           "--accept-new-host-key)")
    if "Permission denied" in text:
        return RemoteError(f"{host} refused the SSH key ({done.last_error}); add your public key to the device's "
                           "~/.ssh/authorized_keys or pass the right one with --identity")
    if "Connection refused" in text:
        return RemoteError(f"cannot connect to {host}: connection refused (is sshd running there, and is the port "
                           "right?)")
    if "Could not resolve hostname" in text or "Name or service not known" in text:
        return RemoteError(f"cannot resolve host name {ssh.host!r}; check --host or your ~/.ssh/config")
    if "timed out" in text.lower():
        return RemoteError(f"cannot connect to {host}: the connection timed out (is the device on and reachable?)")
    if done.rc != 255:
        return None
    if any(k in text for k in ("closed by remote host", "Connection reset", "Broken pipe", "Timeout, server",
                               "Connection closed", "connection closed")):
        return RemoteError(f"the connection to {host} dropped while {what}; nothing was written locally, and a "
                           "re-run reuses what was already uploaded")
    if program_ran:
        return None
    return RemoteError(f"ssh to {host} failed while {what}: {done.last_error}")


class RemoteSession:
    """Runs commands on one device through the system ssh client."""

    def __init__(self, ssh: SshTarget, progress: Progress | None = None) -> None:
        self.ssh = ssh
        self.progress = progress

    def run(self, remote_argv: Sequence[str], *, stdin: bytes | None = None, stream: bool = False,
            timeout_s: float | None = None) -> _Completed:
        """Run ``remote_argv`` on the device; stderr lines go to ``progress`` when ``stream`` is set."""
        argv = self.ssh.argv(remote_argv)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise RemoteError("the OpenSSH client 'ssh' is not installed here; install openssh-client") from None
        stderr: list[str] = []

        def pump_stderr() -> None:
            assert proc.stderr is not None
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                stderr.append(line)
                if stream and self.progress is not None:
                    self.progress(line)

        def feed_stdin() -> None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin or b"")
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass  # the remote side went away; the exit status tells why

        threads = [threading.Thread(target=pump_stderr, daemon=True)]
        if stdin is not None:
            threads.append(threading.Thread(target=feed_stdin, daemon=True))
        for thread in threads:
            thread.start()
        timer = threading.Timer(timeout_s, proc.kill) if timeout_s else None
        if timer is not None:
            timer.start()
        try:
            assert proc.stdout is not None
            stdout = proc.stdout.read()
            rc = proc.wait()
        except BaseException:  # Ctrl-C: do not leave ssh (and the remote program) running
            proc.kill()
            proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        for thread in threads:
            thread.join(timeout=10)
        return _Completed(rc, stdout, stderr)

    def check(self, remote_argv: Sequence[str], what: str, **kwargs: Any) -> _Completed:
        """Like :meth:`run`, but any failure is a one-line RemoteError."""
        done = self.run(remote_argv, **kwargs)
        error = _ssh_failure(done, self.ssh, what)
        if error is not None:
            raise error
        if done.rc != 0:
            raise RemoteError(f"{what} failed on {self.ssh.where} (exit {done.rc}): {done.last_error}")
        return done


# --- what is uploaded -------------------------------------------------------------------------------------


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
    if docker_image:
        inner = session.run(["docker", "run", "--rm", "-i", "--runtime", "nvidia", "--entrypoint", "python3",
                             docker_image, "-", cache], stdin=devices.probe_source())
        error = _ssh_failure(inner, session.ssh, "checking the docker image")
        if error is not None:
            raise error
        if inner.rc != 0:
            raise RemoteError(f"docker image {docker_image!r} cannot run on {where} (exit {inner.rc}): "
                              f"{inner.last_error}")
        report["modules"] = json.loads(inner.stdout.decode().strip().splitlines()[-1])["modules"]
        report["modules_source"] = f"docker image {docker_image}"
    return report


def _check_modules(report: dict[str, Any], where: str, python: str, progress: Progress | None) -> list[str]:
    """Say plainly what is missing; raise when the device program cannot run at all. Returns notes."""
    modules = report.get("modules", {})

    def ok(name: str) -> bool:
        return bool(modules.get(name, {}).get("ok"))

    source = report.get("modules_source", f"{python} (Python {report.get('python')})")
    if not ok("numpy"):
        raise RemoteError(f"{source} on {where} has no numpy, which the device program needs; install it "
                          "(JetPack: sudo apt install python3-numpy)")
    notes: list[str] = []
    if ok("tensorrt"):
        if not (ok("pycuda") or ok("cuda-python")):
            raise RemoteError(f"{source} on {where} has TensorRT but neither pycuda nor cuda-python; install pycuda "
                              "(JetPack 4.6: pip3 install pycuda==2022.1 with nvcc on PATH)")
        return notes
    missing = modules.get("tensorrt", {}).get("error", "not importable")
    if not ok("onnxruntime"):
        raise RemoteError(f"{source} on {where} has neither TensorRT ({missing}) nor ONNX Runtime; on a Jetson, "
                          "TensorRT's Python bindings come with JetPack (python3-libnvinfer), or pass "
                          "--remote-python to an interpreter that has them")
    note = (f"TensorRT is not importable by {source} on {where} ({missing}); the device program falls back to "
            "ONNX Runtime on the device's CPU, and the results say so")
    if progress is not None:
        progress(note)
    return [note]


def _sudo(report: dict[str, Any]) -> list[str]:
    return [] if report.get("uid") == 0 else ["sudo", "-n"]


def _setup_power(session: RemoteSession, report: dict[str, Any], profile: devices.DeviceProfile,
                 cache: str) -> dict[str, Any]:
    """Record the power mode and clocks, then set the profile's benchmark mode and ``jetson_clocks``."""
    sudo = _sudo(report)
    where = session.ssh.where
    state = f"{cache}/jetson_clocks.before"
    query = session.run([*sudo, "nvpmodel", "-q"])
    text = "\n".join(query.stderr) + query.stdout.decode("utf-8", "replace")
    if query.rc != 0:
        if "password" in text:
            raise RemoteError(f"--setup needs passwordless sudo for nvpmodel and jetson_clocks on {where} "
                              "(sudo -n asked for a password); add a sudoers rule or drop --setup")
        raise RemoteError(f"--setup needs nvpmodel and jetson_clocks (a Jetson) on {where}: "
                          f"{query.last_error or 'nvpmodel -q failed'}")
    before = devices.device_module("platform_info").nvpmodel_mode(query.stdout.decode("utf-8", "replace"))
    session.check(["mkdir", "-p", cache], "preparing the cache folder")
    session.check([*sudo, "jetson_clocks", "--store", state], "recording the clocks (jetson_clocks --store)")
    mode = profile.bench_power_mode
    set_mode = session.check([*sudo, "nvpmodel", "-m", str(mode)], f"setting power mode {mode} (nvpmodel -m)")
    session.check([*sudo, "jetson_clocks"], "pinning the clocks (jetson_clocks)")
    said = _one_line(set_mode.stdout.decode("utf-8", "replace") + " ".join(set_mode.stderr))
    return {"previous_mode": before, "bench_mode": mode, "clocks_state_file": state,
            "nvpmodel_said": said or None, "restored": False}


def _restore_power(session: RemoteSession, report: dict[str, Any], setup: dict[str, Any]) -> None:
    sudo = _sudo(report)
    previous = (setup.get("previous_mode") or {}).get("id")
    if previous is not None:
        session.check([*sudo, "nvpmodel", "-m", str(previous)], f"restoring power mode {previous}")
    session.check([*sudo, "jetson_clocks", "--restore", setup["clocks_state_file"]], "restoring the clocks")
    setup["restored"] = True


def run_device_bench(
    graphs: dict[str, Path],
    target: devices.RemoteTarget,
    ssh: SshTarget,
    options: RemoteOptions,
    *,
    batches: Sequence[int] = (1,),
    warmup_iters: int = 20,
    iters: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
) -> DeviceRun:
    """Upload the device program and graphs, run it, and return its document.

    Args:
        graphs: ``{"fp32": path, "int8": path}`` from the export directory.
        target: the resolved device (its profile decides the power mode and whether to ship the stripped student).
        ssh: how to reach it.
        options: remote Python, docker image, setup, tegrastats, workspace.
        batches: batch sizes.
        warmup_iters: untimed iterations per engine and batch.
        iters: timed iterations per engine and batch.
        seed: seed of the device's random inputs.
        progress: receives one line at a time (the device program's stderr, and our own steps).

    Returns:
        The :class:`DeviceRun`.

    Raises:
        RemoteError: any failure of the transport, the device's software or the device program.
        ConfigError: graphs that cannot be prepared.
    """
    say = progress or (lambda line: None)
    python = options.remote_python or target.remote_python or target.profile.remote_python
    upload, prepared = prepare_upload(graphs, strip_student=not target.profile.int8)
    session = RemoteSession(ssh, progress)
    where = ssh.where

    say(f"checking {where}")
    report = _probe(session, python, options.remote_cache, sorted(upload.files), options.docker_image)
    notes = _check_modules(report, where, python, progress)
    have = report.get("files", {})
    needed = {rel: data for rel, data in upload.files.items() if have.get(rel) != _sha256(data)}
    skipped = sorted(set(upload.files) - set(needed))
    if needed:
        size_mb = sum(map(len, needed.values())) / 1e6
        say(f"uploading {len(needed)} file(s) ({size_mb:.1f} MB) to {where}:{options.remote_cache}")
        session.check(["sh", "-c", _UNPACK, "sh", options.remote_cache, secrets.token_hex(6)], "uploading files",
                      stdin=_tar(needed))
    else:
        say("everything is already on the device (same sha256); nothing to upload")

    cache = report.get("cache") if options.docker_image else options.remote_cache
    if not cache:
        raise RemoteError(f"the pre-flight check on {where} did not report its cache folder")
    argv = [f"{cache}/{upload.program_dir}/trt_bench.py", "bench", "--cache-dir", f"{cache}/engines",
            "--batch", ",".join(str(b) for b in batches), "--warmup", str(warmup_iters), "--iters", str(iters),
            "--seed", str(seed), "--workspace-mib", str(options.workspace_mib)]
    for role, rel in upload.graphs.items():
        argv += ["--graph", f"{role}={cache}/{rel}"]
    if options.tegrastats:
        argv.append("--tegrastats")
    if options.docker_image:
        argv = ["docker", "run", "--rm", "--runtime", "nvidia", "--network", "none", "-v", f"{cache}:{cache}",
                "--entrypoint", "python3", options.docker_image, *argv]
    else:
        argv = [python, *argv]

    setup = _setup_power(session, report, target.profile, options.remote_cache) if options.setup else None
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
    document["workstation_notes"] = notes  # kept for the record; the device program says it again in its notes
    return DeviceRun(document, report, sorted(needed), skipped, setup, prepared)


def _parse_document(done: _Completed, where: str) -> dict[str, Any]:
    text = done.stdout.decode("utf-8", "replace").strip()
    if done.rc != 0:
        # a signal shows as 128+N from the remote shell, or as ssh's own 255 when ssh reports the signal
        cause = "was killed" if done.rc > 128 or done.rc < 0 else f"exited with status {done.rc}"
        raise RemoteError(f"the device program on {where} {cause} before finishing: {done.last_error}")
    try:
        document = json.loads(text.splitlines()[-1]) if text else None
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise RemoteError(f"the device program on {where} returned no complete results (its output was cut off); "
                          "nothing was written locally")
    if document.get("schema") != DEVICE_SCHEMA or document.get("schema_version") != DEVICE_SCHEMA_VERSION:
        raise RemoteError(f"the device program on {where} answered with schema {document.get('schema')!r} version "
                          f"{document.get('schema_version')!r}, not {DEVICE_SCHEMA} v{DEVICE_SCHEMA_VERSION}; "
                          "clear ~/.cache/sqakd-edge on the device and re-run")
    return document


# --- turning the device document into bench measurements --------------------------------------------------

# (graph role, precision) -> (measurement key, label suffix)
_KEYS = {
    ("fp32", "fp32"): ("fp32", ""),
    ("fp32", "fp16"): ("fp16", ""),
    ("int8", "int8"): ("int8", ""),
    ("int8-stripped", "fp32"): ("student-fp32", " (student, Q/DQ stripped)"),
    ("int8-stripped", "fp16"): ("student-fp16", " (student, Q/DQ stripped)"),
}


def _ran(run: dict[str, Any]) -> str:
    """A plain precision for what ran: INT8 only when the inspector saw INT8 layers (or ORT ran the QDQ graph)."""
    requested = run["precision"]
    counts = (run.get("layers") or {}).get("by_precision") or {}
    if run.get("runtime") != "tensorrt" or not counts:
        return requested
    if requested == "int8":
        return "int8" if "INT8" in counts else ("fp16" if "FP16" in counts else "fp32")
    if requested == "fp16":
        return "fp16" if "FP16" in counts else "fp32"
    return "fp32"


def measurements_from_document(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The device's successful runs as plain measurement records (the fields of ``bench.backend.Measurement``)."""
    out = []
    for run in document.get("runs", []):
        if run.get("status") != "ok" or (run["graph"], run["precision"]) not in _KEYS:
            continue
        key, suffix = _KEYS[(run["graph"], run["precision"])]
        ran = _ran(run)
        runtime = run.get("runtime", "tensorrt")
        short = "TRT" if runtime == "tensorrt" else "ORT"
        label = f"{short} {ran.upper()}{suffix}"
        if ran != run["precision"]:
            label += f" ({run['precision'].upper()} requested)"
        if runtime != "tensorrt":
            label += " on the device CPU"
        latency = run.get("latency_ms") or {}
        extra = {"gpu_compute": list(latency["gpu_compute"])} if latency.get("gpu_compute") else {}
        engine = run.get("engine") or {}
        info = {k: run[k] for k in ("layers", "io_api", "power", "max_abs_diff_vs_fp32", "top1_agreement_vs_fp32")
                if k in run}
        info["device_precision_ran"] = run.get("precision_ran")
        if engine:
            info["engine"] = {k: engine.get(k) for k in ("cache_hit", "build_s", "bytes", "cache_key")}
        out.append({
            "name": key, "label": label, "graph": run["graph"], "runtime": runtime,
            "precision_requested": run["precision"], "precision_ran": ran, "batch": int(run["batch"]),
            "samples_ms": list(latency.get("end_to_end") or []), "model_bytes": engine.get("bytes"),
            "info": info, "extra_samples_ms": extra,
        })
    return out


def comparisons_from_document(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(baseline, candidate) measurement keys the device's headline and reference comparisons name."""
    pairs: list[tuple[str, str]] = []
    for comparison in document.get("comparisons", [])[:1]:
        for entry in [comparison.get("headline"), *comparison.get("others", [])]:
            if not entry:
                continue
            base, cand = _KEYS.get(tuple(entry["baseline"])), _KEYS.get(tuple(entry["candidate"]))
            if base and cand and (base[0], cand[0]) not in pairs:
                pairs.append((base[0], cand[0]))
    return pairs


def device_block(run: DeviceRun, target: devices.RemoteTarget, ssh: SshTarget,
                 options: RemoteOptions) -> dict[str, Any]:
    """The results document's ``device`` block: a flat summary, and everything else under ``details``."""
    doc = run.document
    platform = doc.get("platform", {})
    gpu = platform.get("gpu") or {}
    mode = platform.get("nvpmodel") or {}
    not_run: list[str] = []
    for r in doc.get("runs", []):
        if r.get("status") != "ok":
            line = f"{r.get('graph')} graph in {str(r.get('precision')).upper()}: {r.get('status')} ({r.get('reason')})"
            if line not in not_run:
                not_run.append(line)
    return {
        "name": target.name,
        "profile": target.profile.name,
        "host": ssh.host,
        "port": ssh.port,
        "runtime": doc.get("runtime"),
        "fallback_reason": doc.get("fallback_reason"),
        "gpu": f"{gpu.get('name')} (sm {gpu.get('compute_capability')})" if gpu else None,
        "tensorrt": platform.get("tensorrt"),
        "jetpack": platform.get("jetpack"),
        "l4t": platform.get("l4t"),
        "power_mode": f"{mode.get('name')} ({mode.get('id')})" if mode else None,
        "fast_int8": platform.get("fast_int8"),
        "docker_image": options.docker_image,
        "not_run": not_run,
        "upload": f"{len(run.uploaded)} file(s) uploaded, {len(run.skipped)} already there",
        "details": {
            "platform": platform,
            "profile_expected": {"jetpack": target.profile.jetpack, "tensorrt": target.profile.tensorrt,
                                 "python": target.profile.python, "int8": target.profile.int8},
            "comparisons": doc.get("comparisons", []),
            "graphs": doc.get("graphs", {}),
            "prepared_on_workstation": run.prepared,
            "upload": {"cache": options.remote_cache, "uploaded": run.uploaded, "skipped": run.skipped},
            "setup": run.setup,
            "probe": {k: run.probe.get(k) for k in ("python", "python_executable", "machine", "modules")},
            "program": doc.get("program"),
            "device_results_schema": f"{doc.get('schema')} v{doc.get('schema_version')}",
        },
    }


def device_notes(run: DeviceRun, target: devices.RemoteTarget) -> list[str]:
    """Sentences for the report: the device's notes, refusals, and a mismatch with the profile."""
    doc = run.document
    notes = list(doc.get("notes", []))
    seen = set()
    for r in doc.get("runs", []):
        key = (r.get("graph"), r.get("precision"), r.get("status"))
        if r.get("status") in ("not-buildable", "failed") and key not in seen:
            seen.add(key)
            notes.append(f"{r['graph']} graph in {r['precision'].upper()}: {r['status']} on this device "
                         f"({r.get('reason')})")
    platform = doc.get("platform", {})
    if doc.get("runtime") == "tensorrt" and platform.get("fast_int8") is not None \
            and bool(platform["fast_int8"]) != target.profile.int8:
        notes.append(f"the device reports fast INT8 = {platform['fast_int8']}, but profile {target.profile.name} "
                     f"says {target.profile.int8}; the device's own answer was used")
    return notes


class RemoteBackend:
    """The ``bench`` backend that runs the graphs on a device over SSH (see the module docstring).

    Args:
        target: the resolved device.
        ssh: how to reach it.
        options: how to run there.
        progress: receives progress lines (default: print to stderr).
    """

    def __init__(self, target: devices.RemoteTarget, ssh: SshTarget, options: RemoteOptions,
                 progress: Progress | None = None) -> None:
        self.target = target
        self.ssh = ssh
        self.options = options
        self.name = target.name
        self.progress = progress if progress is not None else _print_progress
        self.last_run: DeviceRun | None = None

    def run(self, job: Any) -> Any:
        """Time the job's graphs on the device and return a ``bench.backend.BackendResult``.

        Raises:
            ConfigError: settings the device path does not support (``--duration``, ``--data``, eager).
            RemoteError: any failure on the way to or on the device.
        """
        import numpy as np

        from .backend import BackendResult, Measurement

        config = job.config
        if config.iters is None:
            raise ConfigError("--duration is not supported with a remote --device; give --iters N")
        if config.data is not None:
            raise ConfigError("--data (accuracy) is measured only with --device local; drop it for a device run")
        wanted = config.graphs or ("fp32", "int8")
        if "eager" in wanted and config.graphs is not None:
            raise ConfigError("the PyTorch eager model runs only with --device local; choose --graphs fp32,int8")
        graphs = {k: g.path for k, g in job.bundle.graphs.items() if k in wanted}
        run = run_device_bench(graphs, self.target, self.ssh, self.options, batches=config.batches,
                               warmup_iters=config.warmup_iters, iters=config.iters, seed=config.seed,
                               progress=self.progress)
        self.last_run = run
        measurements = [Measurement(**{**m, "samples_ms": np.asarray(m["samples_ms"], dtype=float)})
                        for m in measurements_from_document(run.document)]
        if not measurements:
            raise RemoteError(f"the device program on {self.ssh.where} timed nothing: "
                              + "; ".join(device_notes(run, self.target)))
        names = {m.name for m in measurements}
        comparisons = [p for p in comparisons_from_document(run.document) if p[0] in names and p[1] in names]
        return BackendResult(measurements, comparisons, {}, device_block(run, self.target, self.ssh, self.options),
                             device_notes(run, self.target))


def _print_progress(line: str) -> None:
    import sys

    sys.stderr.write(f"  [device] {line}\n")
    sys.stderr.flush()


def make_backend(
    device: str,
    host: str | None = None,
    setup: bool = False,
    *,
    inventory: str | None = None,
    port: int | None = None,
    identity_file: str | None = None,
    known_hosts_file: str | None = None,
    accept_new_host_key: bool = False,
    remote_python: str | None = None,
    docker_image: str | None = None,
    tegrastats: bool = False,
    progress: Progress | None = None,
) -> RemoteBackend:
    """The hook ``sqakd-edge bench --device NAME`` calls: resolve the device and build its backend.

    Args:
        device: a profile name (with ``host``) or a device name from the inventory.
        host: ``USER@HOST`` or an ``~/.ssh/config`` alias.
        setup: set the power mode and clocks first (needs passwordless sudo; restored afterwards).
        inventory: an inventory file (default ``$SQAKD_EDGE_INVENTORY`` or ``~/.config/sqakd-edge/inventory.json``).
        port: SSH port (default: the inventory's, else ssh's).
        identity_file: SSH private key.
        known_hosts_file: a known_hosts file to use instead of ``~/.ssh/known_hosts``.
        accept_new_host_key: accept an unknown host key on first contact (never a changed one).
        remote_python: the device's interpreter (default: inventory, then profile: ``python3``).
        docker_image: run the device program in this image on the device.
        tegrastats: sample power while timing.
        progress: progress sink (default: stderr).

    Returns:
        The :class:`RemoteBackend`.

    Raises:
        ConfigError: unknown device, a profile without a host, a malformed host.
    """
    target = devices.resolve_device(device, host=host, inventory=inventory, port=port)
    ssh = SshTarget(host=target.host, port=target.port, identity_file=identity_file or target.identity_file,
                    known_hosts_file=known_hosts_file or target.known_hosts_file,
                    strict_host_key_checking=not accept_new_host_key, extra_options=target.ssh_options)
    options = RemoteOptions(remote_python=remote_python or target.remote_python,
                            docker_image=docker_image or target.docker_image, setup=setup, tegrastats=tegrastats,
                            remote_cache=target.remote_cache or CACHE_DIR)
    return RemoteBackend(target, ssh, options, progress)
