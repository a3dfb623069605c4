"""The SSH remote against a real OpenSSH server on 127.0.0.1 (started per module with throwaway keys).

What is real here: the ssh client and server, host-key checking, key authentication, the upload and its
sha256 cache, the remote pre-flight check, the device program (which finds no TensorRT on this machine and
falls back to ONNX Runtime, saying so), its JSON and the error mapping. What is not: TensorRT and a Jetson.
The remote Python is this test's own interpreter, which has onnxruntime (the system python3 may not).
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sqakd_edge.bench import devices, remote
from sqakd_edge.errors import RemoteError

from .tiny_graphs import write_tiny_graphs

SSHD = Path("/usr/sbin/sshd")
pytestmark = [
    pytest.mark.sshd,
    pytest.mark.skipif(not SSHD.exists(), reason="needs openssh-server (run scripts/ensure-sshd)"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    port: int
    key: Path
    known_hosts: Path
    pid: int
    folder: Path

    def target(self, **changes) -> remote.SshTarget:
        values = {"host": f"{getpass.getuser()}@127.0.0.1", "port": self.port, "identity_file": str(self.key),
                  "known_hosts_file": str(self.known_hosts), "connect_timeout_s": 5}
        values.update(changes)
        return remote.SshTarget(**values)

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:
                pids.append(int(stat.parent.name))
        return pids


FAKE_IMAGE = "sqakd-edge-device:test"


def _install_fake_docker(bin_dir: Path) -> None:
    """A stand-in ``docker`` on the remote PATH: it records its arguments and runs the entry point without a
    container (there is no Docker engine here). It proves the argument list we send, not the image."""
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open({str(bin_dir / 'docker.log')!r}, "a") as fh:
    fh.write(json.dumps(args) + "\\n")
assert args[0] == "run", args
i, valued = 1, {{"--runtime", "--network", "-v", "--entrypoint", "-e", "-w", "--user", "-u"}}
while args[i].startswith("-"):
    i += 2 if args[i] in valued else 1
if args[i] != {FAKE_IMAGE!r}:
    sys.stderr.write("Unable to find image '%s' locally\\n" % args[i])
    sys.exit(125)
os.execv(sys.executable, [sys.executable] + args[i + 1:])
""")
    script.chmod(0o755)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key", "other_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    _install_fake_docker(folder / "bin")
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "PermitRootLogin prohibit-password", "ClientAliveInterval 5",
        f"SetEnv PATH={folder / 'bin'}:/usr/local/bin:/usr/bin:/bin", "",
    ]))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    log = open(folder / "sshd.log", "wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    host_pub = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    yield Sshd(port, folder / "client_key", folder / "known_hosts", proc.pid, folder)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, Path]:
    """Tiny FP32 and QDQ graphs (opset 13, input `input`, output `logits`)."""
    return write_tiny_graphs(tmp_path_factory.mktemp("graphs"))


def _target(sshd, tmp_path: Path, profile: str = "jetson-orin-nano", ssh=None, **changes) -> devices.RemoteTarget:
    """The loopback sshd as a device of ``profile``; ``changes`` set the target's own fields."""
    values = {"remote_python": sys.executable, "remote_cache": str(tmp_path / "remote-cache"), **changes}
    return devices.RemoteTarget(name="loopback", profile=devices.load_profile(profile), ssh=ssh or sshd.target(),
                                **values)


def _bench(sshd, graphs, tmp_path, *, ssh=None, profile="jetson-orin-nano", progress=None, setup=False,
           **target_changes):
    return remote.run_device_bench(graphs, _target(sshd, tmp_path, profile, ssh, **target_changes),
                                   remote.RemoteOptions(setup=setup), batches=(1, 2), warmup_iters=2, iters=5,
                                   progress=progress)


# --- end to end -------------------------------------------------------------------------------------------


def test_remote_bench_end_to_end_and_cache_reuse(sshd, graphs, tmp_path):
    lines: list[str] = []
    run = _bench(sshd, graphs, tmp_path, progress=lines.append)
    doc = run.document
    assert doc["schema"] == "sqakd-edge.device-results" and doc["runtime"] == "onnxruntime-fallback"
    assert "not importable" in doc["fallback_reason"]
    assert any("TensorRT is not importable" in n for n in doc["workstation_notes"])  # the pre-flight check said it
    assert any("not TensorRT on its GPU" in n for n in remote.device_notes(run, _target(sshd, tmp_path)))
    assert run.probe["python_executable"] == sys.executable and run.probe["modules"]["onnxruntime"]["ok"]
    # every file went up: 6 program files + 2 graphs, under the cache folder, by content hash
    assert len(run.uploaded) == 8 and run.skipped == []
    cache = tmp_path / "remote-cache"
    for rel in run.uploaded:
        assert (cache / rel).is_file()
    assert not list(cache.glob(".incoming-*"))  # the staging folder is gone
    # progress streamed from the device program's stderr, as it ran
    assert any(line.startswith("[trt_bench] batch 2, int8 graph") for line in lines)
    records = remote.measurements_from_document(doc)
    keys = sorted((r["name"], r["batch"]) for r in records)
    assert keys == [("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)]
    int8 = next(r for r in records if r["name"] == "int8")
    assert int8["label"] == "ORT INT8 on the device CPU" and int8["runtime"] == "onnxruntime"
    assert len(int8["samples_ms"]) == 5 and int8["extra_samples_ms"] == {}
    assert remote.comparisons_from_document(doc) == [("fp32", "int8")]
    block = remote.device_block(run, _target(sshd, tmp_path))
    assert block["runtime"] == "onnxruntime-fallback" and block["details"]["upload"]["uploaded"] == run.uploaded
    assert block["upload"] == "8 file(s) uploaded, 0 already there" and block["gpu"] is None
    json.dumps(block)

    again = _bench(sshd, graphs, tmp_path)
    assert again.uploaded == [] and sorted(again.skipped) == sorted(run.uploaded)  # a re-run uploads nothing

    # a changed file is uploaded again (hash mismatch), the rest is reused
    victim = cache / next(rel for rel in run.uploaded if rel.endswith("trt_engine.py"))
    victim.write_text("# corrupted\n")
    third = _bench(sshd, graphs, tmp_path)
    assert [Path(p).name for p in third.uploaded] == ["trt_engine.py"] and len(third.skipped) == 7


def test_a_device_without_int8_gets_the_stripped_student_uploaded(sshd, graphs, tmp_path):
    run = _bench(sshd, graphs, tmp_path, profile="jetson-nano")
    assert set(run.prepared) == {"fp32", "int8", "int8-stripped"}
    assert run.prepared["int8-stripped"]["qdq_stripped"] == {"weights": 1, "activations": 1}
    assert len([p for p in run.uploaded if p.startswith("graphs/")]) == 3
    assert set(run.document["graphs"]) == {"fp32", "int8", "int8-stripped"}


# --- failures: each a one-line RemoteError, nothing left behind locally -----------------------------------


@pytest.fixture
def local_tmp(tmp_path, monkeypatch):
    """Route local temporary files to a folder we can check is empty afterwards."""
    import tempfile

    folder = tmp_path / "local-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _fails(sshd, graphs, tmp_path, local_tmp, match, **kwargs) -> str:
    with pytest.raises(RemoteError, match=match) as info:
        _bench(sshd, graphs, tmp_path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    assert list(local_tmp.iterdir()) == []
    return message


def test_closed_port(sshd, graphs, tmp_path, local_tmp):
    _fails(sshd, graphs, tmp_path, local_tmp, "connection refused", ssh=sshd.target(port=_free_port()))


def test_refused_key(sshd, graphs, tmp_path, local_tmp):
    msg = _fails(sshd, graphs, tmp_path, local_tmp, "refused the SSH key",
                 ssh=sshd.target(identity_file=str(sshd.folder / "other_key")))
    assert "authorized_keys" in msg


def test_unknown_host_key_is_refused_by_default(sshd, graphs, tmp_path, local_tmp):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    _fails(sshd, graphs, tmp_path, local_tmp, "not in your known_hosts", ssh=sshd.target(known_hosts_file=str(empty)))
    assert empty.read_text() == ""  # nothing was accepted silently


def test_changed_host_key_is_refused(sshd, graphs, tmp_path, local_tmp):
    wrong = tmp_path / "known_hosts"
    other = (sshd.folder / "other_key.pub").read_text().split()
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    _fails(sshd, graphs, tmp_path, local_tmp, "has CHANGED", ssh=sshd.target(known_hosts_file=str(wrong)))


def test_accept_new_host_key_records_it(sshd, graphs, tmp_path):
    fresh = tmp_path / "known_hosts"
    fresh.write_text("")
    run = _bench(sshd, graphs, tmp_path, ssh=sshd.target(known_hosts_file=str(fresh), strict_host_key_checking=False))
    assert run.document["runtime"] == "onnxruntime-fallback"
    assert (sshd.folder / "host_key.pub").read_text().split()[1] in fresh.read_text()  # (host name may be hashed)


def test_remote_python_missing(sshd, graphs, tmp_path, local_tmp):
    msg = _fails(sshd, graphs, tmp_path, local_tmp, "was not found", remote_python="/nonexistent/python3")
    assert "--remote-python" in msg


def _wrapper(tmp_path: Path, body: str) -> str:
    """A remote "python" that runs the real one for the pre-flight check (stdin script) and ``body`` otherwise."""
    path = tmp_path / "python-wrapper"
    path.write_text(f'#!/bin/sh\nif [ "$1" = "-" ]; then exec {sys.executable} "$@"; fi\n{body}\n')
    path.chmod(0o755)
    return str(path)


def test_device_program_crashing_mid_run(sshd, graphs, tmp_path, local_tmp):
    crash = _wrapper(tmp_path, 'echo "[trt_bench] building engines" >&2\n'
                               "printf '{\"schema\": \"sqakd-edge.device-results\", \"runs\": ['\n"
                               "kill -SEGV $$")
    _fails(sshd, graphs, tmp_path, local_tmp, r"device program on .* (was killed|exited|cut off)", remote_python=crash)


def test_device_program_printing_garbage(sshd, graphs, tmp_path, local_tmp):
    garbage = _wrapper(tmp_path, 'echo "not json"')
    _fails(sshd, graphs, tmp_path, local_tmp, "returned no complete results", remote_python=garbage)


def test_connection_dropping_mid_run(sshd, graphs, tmp_path, local_tmp):
    slow = _wrapper(tmp_path, 'echo "[trt_bench] started" >&2\nsleep 30')
    started = threading.Event()

    def progress(line: str) -> None:
        if "[trt_bench] started" in line:
            started.set()

    def cut() -> None:
        if started.wait(30):
            for pid in sshd.session_pids():  # the per-connection sshd processes, children of ours
                os.kill(pid, signal.SIGKILL)

    cutter = threading.Thread(target=cut)
    cutter.start()
    try:
        msg = _fails(sshd, graphs, tmp_path, local_tmp, "dropped", remote_python=slow, progress=progress)
    finally:
        cutter.join()
    assert "re-run reuses" in msg


def test_docker_option_runs_the_program_through_docker_run(sshd, graphs, tmp_path):
    log = sshd.folder / "bin" / "docker.log"
    log.unlink(missing_ok=True)
    run = _bench(sshd, graphs, tmp_path, docker_image=FAKE_IMAGE)
    assert run.document["runtime"] == "onnxruntime-fallback"
    assert run.probe["modules_source"] == f"docker image {FAKE_IMAGE}"
    probe, bench = [json.loads(line) for line in log.read_text().splitlines()]
    cache = str(tmp_path / "remote-cache")
    assert probe == ["run", "--rm", "-i", "--runtime", "nvidia", "--entrypoint", "python3", FAKE_IMAGE, "-", cache]
    # as the cache owner (a root container would leave root-owned engines in the user's cache)
    owner = ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"]
    assert bench[:14] == ["run", "--rm", "--runtime", "nvidia", "--network", "none", *owner, "-v", f"{cache}:{cache}",
                          "--entrypoint", "python3"]
    assert bench[14] == FAKE_IMAGE and bench[15].startswith(f"{cache}/program/") and bench[16] == "bench"
    graph_args = [arg for arg in bench if arg.startswith(("fp32=", "int8="))]
    assert len(graph_args) == 2 and all(arg.split("=", 1)[1].startswith(f"{cache}/graphs/") for arg in graph_args)


def test_docker_image_missing_on_the_device(sshd, graphs, tmp_path, local_tmp):
    _fails(sshd, graphs, tmp_path, local_tmp, "docker image 'no-such-image' cannot run", docker_image="no-such-image")


def test_setup_on_a_machine_without_nvpmodel(sshd, graphs, tmp_path, local_tmp):
    _fails(sshd, graphs, tmp_path, local_tmp, "--setup needs nvpmodel and jetson_clocks", setup=True)


# --- the bench backend (needs the bench package's run_bench) ----------------------------------------------


def _export_dir(graphs: dict[str, Path], folder: Path) -> Path:
    import hashlib
    import shutil

    folder.mkdir()
    entries = {}
    for role, path in graphs.items():
        shutil.copy(path, folder / path.name)
        data = path.read_bytes()
        entries[role] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    entries["int8"].update({"wbits": 8, "abits": 8})
    manifest = {
        "schema": "sqakd-edge.export-manifest", "schema_version": 1, "created": "2026-11-26T12:00:00Z",
        "model": {"name": "tiny", "num_classes": 10, "in_channels": 1, "input_size": 8},
        "input": {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32", "mean": [0.5], "std": [0.5],
                  "layout": "NCHW"},
        "output": {"name": "logits", "shape": ["batch", 10]}, "target": "tensorrt", "opset": 13,
        "graphs": entries, "quant": None, "checkpoint": None, "data": {"spec": "embedded"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _loopback_inventory(sshd, tmp_path, profile: str) -> Path:
    """An inventory file naming the loopback sshd as device ``loop`` of ``profile``."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"schema": "sqakd-edge.inventory", "schema_version": 1, "devices": {"loop": {
        "host": f"{getpass.getuser()}@127.0.0.1", "port": sshd.port, "profile": profile,
        "identity_file": str(sshd.key), "known_hosts_file": str(sshd.known_hosts),
        "remote_python": sys.executable, "remote_cache": str(tmp_path / "remote-cache")}}}))
    return inventory


def test_bench_cli_on_the_loopback_device_writes_a_report(sshd, graphs, tmp_path):
    pytest.importorskip("sqakd_edge.bench.api", reason="needs the bench package (run_bench) merged")
    from click.testing import CliRunner

    from sqakd_edge.cli import main

    export = _export_dir(graphs, tmp_path / "export")
    inventory = _loopback_inventory(sshd, tmp_path, "jetson-nano")
    out = tmp_path / "bench"
    env = {"SQAKD_EDGE_INVENTORY": str(inventory)}
    result = CliRunner().invoke(main, ["bench", str(export), "--device", "loop", "--iters", "5", "--warmup", "1",
                                       "--batch", "1,2", "--out", str(out), "--no-plot", "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["device"] == "loop" and doc["device"]["runtime"] == "onnxruntime-fallback"
    assert doc["device"]["profile"] == "jetson-nano"
    assert {m["name"] for m in doc["models"]} == {"fp32", "int8"}
    assert any("not TensorRT on its GPU" in n for n in doc["notes"])
    report = (out / "report.md").read_text()
    assert "ORT INT8 on the device CPU" in report

    # the same command against a closed port: one line, exit 2, no results written
    inventory.write_text(inventory.read_text().replace(str(sshd.port), str(_free_port())))
    out2 = tmp_path / "bench2"
    failed = CliRunner().invoke(main, ["bench", str(export), "--device", "loop", "--iters", "5", "--out", str(out2),
                                       "--no-plot", "--quiet"], env=env)
    assert failed.exit_code == 2 and "connection refused" in failed.output
    assert not (out2 / "results.json").exists()


def test_device_lines_lose_terminal_escapes_and_stay_bounded():
    from sqakd_edge.bench.remote import MAX_STDERR_LINE, clean_line

    hostile = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m done\x08\x07"
    assert clean_line(hostile) == "red done"
    assert len(clean_line("x" * (MAX_STDERR_LINE * 3))) < MAX_STDERR_LINE + 10


def test_two_runs_in_a_row_on_a_device_python_without_onnx(sshd, graphs, tmp_path):
    """A stock JetPack has numpy but no `onnx` package: the device program must not need it, first run or second."""
    site = tmp_path / "no-onnx"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['onnx'] = None  # import onnx -> ImportError\n")
    python = tmp_path / "python-without-onnx"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    first = _bench(sshd, graphs, tmp_path, remote_python=str(python))
    second = _bench(sshd, graphs, tmp_path, remote_python=str(python))
    assert first.probe["modules"]["onnx"]["ok"] is False  # the probe ran under that interpreter
    for run in (first, second):
        statuses = {(r["graph"], r["precision"], r["batch"]): r["status"] for r in run.document["runs"]}
        assert statuses and all(s in ("ok", "skipped") for s in statuses.values()), statuses
    assert "skipped" in second.document["graphs"]["fp32"].get("identity_check", "")
    assert second.uploaded == [] and second.skipped  # the second run found everything in the device's cache


def test_three_way_parity_on_real_inputs_sent_with_the_job(sshd, graphs, tmp_path):
    """With --data, the device runs each graph on the same real images and returns its outputs; here they are
    compared with ONNX Runtime on the workstation (the device's fallback is ONNX Runtime too: agreement 100 %)."""
    from click.testing import CliRunner

    from sqakd_edge.cli import main

    export = _export_dir(graphs, tmp_path / "export")
    inventory = _loopback_inventory(sshd, tmp_path, "jetson-xavier-nx")
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", str(export), "--device", "loop", "--iters", "3", "--warmup", "1",
                                       "--data", "embedded", "--out", str(out), "--no-plot", "--quiet"],
                                env={"SQAKD_EDGE_INVENTORY": str(inventory)})
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    models = {m["name"]: m for m in doc["models"]}
    for name in ("fp32", "int8"):
        parity = models[name]["info"]["parity"]
        assert parity["n"] > 0 and parity["vs_onnxruntime"]["reference"] == f"ort:{name}"
        assert parity["vs_onnxruntime"]["top1_agreement"] == 1.0, parity
        assert parity["vs_onnxruntime"]["max_abs_dlogit"] < 1e-4, parity
        assert models[name]["accuracy"]["n"] == parity["n"]
    assert any("on the device, " in n and "vs ONNX Runtime: top-1 agreement 100.0 %" in n for n in doc["notes"])


def test_graphs_a_tensorrt_device_would_misread_are_refused_before_upload(graphs, tmp_path):
    import onnx

    from sqakd_edge.errors import ConfigError

    nano = devices.load_profile("jetson-nano")
    manifest = {"target": "onnxruntime"}
    with pytest.raises(ConfigError, match="exported for 'onnxruntime', not TensorRT.*--target tensorrt"):
        remote.check_graphs_for_device(manifest, graphs, nano)
    model = onnx.load(str(graphs["int8"]))
    model.opset_import[0].version = 17
    newer = tmp_path / "opset17.onnx"
    onnx.save(model, str(newer))
    with pytest.raises(ConfigError, match="opset 17 is above 13.*--opset 13"):
        remote.check_graphs_for_device({"target": "tensorrt"}, {"int8": newer}, nano)
    remote.check_graphs_for_device({"target": "tensorrt"}, {"int8": newer}, devices.load_profile("jetson-orin-nano"))
