"""The SSH transport: run commands on a device.

How to reach the device is :class:`~sqakd_edge.bench.devices.SshTarget`, part of the one device record;
:func:`_ssh_failure` tells ssh's own failures (closed port, refused key, host-key problems, a dropped
connection) from the program's.

Always the system OpenSSH client, always through argument lists; what the device prints is cleaned of
terminal control sequences and bounded before it is shown or kept.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import RemoteError
from ..devices import SshTarget

Progress = Callable[[str], None]


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    if done.rc != 255:  # ssh's own failures exit 255; other text on stderr is the remote program's
        return None
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
    if any(k in text for k in ("closed by remote host", "Connection reset", "Broken pipe", "Timeout, server",
                               "Connection closed", "connection closed")):
        return RemoteError(f"the connection to {host} dropped while {what}; nothing was written locally, and a "
                           "re-run reuses what was already uploaded")
    if program_ran:
        return None
    return RemoteError(f"ssh to {host} failed while {what}: {done.last_error}")


# What a device may send back: the results document (with per-run latency samples and, with --data, outputs)
# is far below this; more means something is wrong there, and is not read into memory.
MAX_STDOUT_BYTES = 256 << 20
MAX_STDERR_LINES = 20_000
MAX_STDERR_LINE = 4_000
# terminal control sequences (CSI/OSC escapes, other C0/C1 controls but tab): a device's stderr is printed here
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_line(text: str) -> str:
    """A device's line as it may be shown: no terminal escapes or control characters, bounded length."""
    cleaned = _CONTROL.sub("", text)
    return cleaned if len(cleaned) <= MAX_STDERR_LINE else cleaned[:MAX_STDERR_LINE] + " [...]"


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
            pipe = proc.stderr
            assert pipe is not None
            for raw in iter(lambda: pipe.readline(MAX_STDERR_LINE * 4), b""):
                line = clean_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if len(stderr) < MAX_STDERR_LINES:
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
            stdout = proc.stdout.read(MAX_STDOUT_BYTES + 1)
            if len(stdout) > MAX_STDOUT_BYTES:
                proc.kill()
                proc.wait()
                raise RemoteError(f"{self.ssh.where} sent more than {MAX_STDOUT_BYTES >> 20} MiB on stdout; the "
                                  "device program's answer is far smaller, so it was not read")
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
