"""Device profiles, the device inventory, and the device program's files.

Profiles (``jetson-nano``, ``jetson-xavier-nx``, ``jetson-orin-nano``) and the example inventory ship inside
the package as ``sqakd_edge._deploy`` (the repository's ``deploy/``); the device program as
``sqakd_edge._device`` (the repository's ``jetson/``). Both are read with :mod:`importlib.resources`, so an
installed, non-editable sqakd-edge finds them; in a source checkout that is not installed (``PYTHONPATH``
pointing at the repository) the repository folders are used instead.

A user inventory is a JSON file (``--inventory PATH``, else ``$SQAKD_EDGE_INVENTORY``, else
``~/.config/sqakd-edge/inventory.json``) in the format of ``deploy/inventory.example.json``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigError

_REPO = Path(__file__).resolve().parents[2]
PROFILE_SCHEMA = "sqakd-edge.device-profile"
INVENTORY_SCHEMA = "sqakd-edge.inventory"
# The files that make up the device program (uploaded together into one folder on the device).
DEVICE_PROGRAM_FILES = ("trt_bench.py", "trt_engine.py", "trtexec_runner.py", "cuda_mem.py", "platform_info.py",
                        "onnx_prep.py")
PROBE_FILE = "probe.py"


def _resource_root(package: str, source_dir: str) -> Any:
    """A Traversable for an installed data package, else the repository folder it is built from."""
    try:
        return importlib.resources.files(package)
    except ModuleNotFoundError:
        path = _REPO / source_dir
        if not path.is_dir():
            raise ConfigError(
                f"the sqakd-edge installation is incomplete: neither package {package} nor {path} exists; "
                "reinstall sqakd-edge"
            ) from None
        return path


def deploy_root() -> Any:
    """Where the profiles and the example inventory are (``sqakd_edge._deploy``)."""
    return _resource_root("sqakd_edge._deploy", "deploy")


def device_root() -> Any:
    """Where the device program is (``sqakd_edge._device``)."""
    return _resource_root("sqakd_edge._device", "jetson")


def device_module(name: str) -> ModuleType:
    """Import a device-program module (e.g. ``"trt_engine"``) from the package or the source checkout."""
    try:
        return importlib.import_module(f"sqakd_edge._device.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("sqakd_edge._device", f"sqakd_edge._device.{name}"):
            raise
        return importlib.import_module(f"jetson.{name}")


def device_program_files() -> dict[str, bytes]:
    """The device program's files by name, as they will be uploaded."""
    root = device_root()
    return {name: root.joinpath(name).read_bytes() for name in DEVICE_PROGRAM_FILES}


def probe_source() -> bytes:
    """The pre-flight probe sent to the device on stdin."""
    return device_root().joinpath(PROBE_FILE).read_bytes()


@dataclass(frozen=True)
class PowerMode:
    """One ``nvpmodel`` mode."""

    id: int
    name: str
    watts: float | None = None


@dataclass(frozen=True)
class DeviceProfile:
    """What a kind of device runs: JetPack/L4T, TensorRT, Python, GPU, precisions and power modes.

    Args:
        name: profile name, e.g. ``jetson-nano``.
        description: one line for humans.
        jetpack: JetPack version line, e.g. ``4.6.x``.
        l4t: L4T release line, e.g. ``R32.7.x``.
        tensorrt: TensorRT version(s) that JetPack ships.
        python: the system Python the TensorRT bindings are built for.
        sm: GPU compute capability, e.g. ``5.3``.
        int8: whether the GPU has fast INT8 (False on the Nano).
        fp16: whether the GPU has fast FP16.
        power_modes: the ``nvpmodel`` modes.
        bench_power_mode: the mode ``--setup`` selects before timing.
        docker_base_image: the base image of the matching device Dockerfile.
        remote_python: the interpreter to run on the device.
        cuda_binding_setup: the commands that install a working CUDA binding for this JetPack.
        max_onnx_opset: the highest ONNX opset the profile's TensorRT parses (None: not limited by us).
        raw: the whole profile document.
    """

    name: str
    description: str
    jetpack: str
    l4t: str
    tensorrt: str
    python: str
    sm: str
    int8: bool
    fp16: bool
    power_modes: tuple[PowerMode, ...]
    bench_power_mode: int
    docker_base_image: str | None
    remote_python: str = "python3"
    cuda_binding_setup: tuple[str, ...] = ()
    max_onnx_opset: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DeviceProfile:
        """Build a profile from its JSON document (raises ConfigError on a malformed one)."""
        try:
            if doc.get("schema") != PROFILE_SCHEMA:
                raise KeyError("schema")
            return cls(
                name=doc["name"], description=doc.get("description", ""), jetpack=doc["jetpack"], l4t=doc["l4t"],
                tensorrt=doc["tensorrt"], python=doc["python"], sm=doc["gpu"]["sm"],
                int8=bool(doc["precisions"]["int8"]), fp16=bool(doc["precisions"]["fp16"]),
                power_modes=tuple(PowerMode(int(m["id"]), m["name"], m.get("watts")) for m in doc["power_modes"]),
                bench_power_mode=int(doc["bench_power_mode"]),
                docker_base_image=(doc.get("docker") or {}).get("base_image"),
                remote_python=doc.get("remote_python", "python3"),
                cuda_binding_setup=tuple(str(c) for c in doc.get("cuda_binding_setup", ())),
                max_onnx_opset=int(doc["max_onnx_opset"]) if doc.get("max_onnx_opset") is not None else None,
                raw=doc,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"device profile {doc.get('name', '?')!r} is malformed (missing or bad {exc})") from None

    def power_mode(self, mode_id: int) -> PowerMode | None:
        """The mode with this id, if the profile lists it."""
        return next((m for m in self.power_modes if m.id == mode_id), None)

    @property
    def bench_power_mode_name(self) -> str:
        """The benchmark mode's name: what ``--setup`` looks up in the board's /etc/nvpmodel.conf."""
        mode = self.power_mode(self.bench_power_mode)
        if mode is None:
            raise ValueError(f"profile {self.name}: bench_power_mode {self.bench_power_mode} is not in power_modes")
        return mode.name


def list_profiles() -> list[str]:
    """Names of the shipped device profiles."""
    root = deploy_root().joinpath("profiles")
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def load_profile(name: str) -> DeviceProfile:
    """A shipped device profile by name.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    known = list_profiles()
    if name not in known:
        raise ConfigError(f"unknown device profile {name!r}; known profiles: {', '.join(known)}")
    doc = json.loads(deploy_root().joinpath("profiles", f"{name}.json").read_text())
    return DeviceProfile.from_dict(doc)


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


CACHE_DIR = ".cache/sqakd-edge"  # default; relative to the remote home directory, where ssh starts


@dataclass(frozen=True)
class RemoteTarget:
    """A device: which profile it is, how to reach it, and how to run there.

    The one record of a device: an inventory entry is one, and ``--device PROFILE --host ...`` makes one.

    Args:
        name: the device's name (its inventory name, or the profile's).
        profile: its shipped profile.
        ssh: how to reach it.
        remote_python: the interpreter on the device (None: the profile's).
        remote_cache: the cache folder on the device (relative paths start at the remote home).
        docker_image: run the device program in this image (``docker run --runtime nvidia``).
    """

    name: str
    profile: DeviceProfile
    ssh: SshTarget
    remote_python: str | None = None
    remote_cache: str = CACHE_DIR
    docker_image: str | None = None

    @property
    def python(self) -> str:
        """The interpreter the device program runs under."""
        return self.remote_python or self.profile.remote_python


def default_inventory_path() -> Path:
    """``$SQAKD_EDGE_INVENTORY`` or ``~/.config/sqakd-edge/inventory.json``."""
    env = os.environ.get("SQAKD_EDGE_INVENTORY")
    return Path(env) if env else Path.home() / ".config" / "sqakd-edge" / "inventory.json"


def example_inventory_text() -> str:
    """The shipped example inventory (a template to copy)."""
    return deploy_root().joinpath("inventory.example.json").read_text()


def _optional_text(spec: dict[str, Any], key: str, where: str) -> str | None:
    value = spec.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where} has a bad {key!r} (a non-empty string)")
    return value


def parse_inventory(text: str, source: str) -> dict[str, RemoteTarget]:
    """Parse an inventory document; ``source`` names it in error messages."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"inventory {source} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or doc.get("schema") != INVENTORY_SCHEMA or not isinstance(doc.get("devices"), dict):
        raise ConfigError(f"inventory {source} is not a sqakd-edge inventory (expected \"schema\": "
                          f"\"{INVENTORY_SCHEMA}\" and a \"devices\" object; see deploy/inventory.example.json)")
    known_profiles = set(list_profiles())
    entries = {}
    for name, spec in doc["devices"].items():
        where = f"inventory {source}: device {name!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("host"), str) or "profile" not in spec:
            raise ConfigError(f"{where} needs \"host\" and \"profile\"")
        if spec["profile"] not in known_profiles:
            raise ConfigError(f"{where} has unknown profile {spec['profile']!r}; "
                              f"known profiles: {', '.join(sorted(known_profiles))}")
        port = spec.get("port")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            raise ConfigError(f"{where} has an invalid port {port!r}")
        options = spec.get("ssh_options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) and "=" in o for o in options):
            raise ConfigError(f"{where} has bad \"ssh_options\" (a list of \"Key=Value\" strings, as for ssh -o)")
        ssh = SshTarget(host=spec["host"], port=port, identity_file=_optional_text(spec, "identity_file", where),
                        known_hosts_file=_optional_text(spec, "known_hosts_file", where),
                        extra_options=tuple(options))
        entries[name] = RemoteTarget(name=name, profile=load_profile(spec["profile"]), ssh=ssh,
                                     remote_python=_optional_text(spec, "remote_python", where),
                                     remote_cache=_optional_text(spec, "remote_cache", where) or CACHE_DIR,
                                     docker_image=_optional_text(spec, "docker_image", where))
    return entries


def load_inventory(path: str | os.PathLike[str] | None = None) -> dict[str, RemoteTarget]:
    """The user's inventory (empty when the default file does not exist).

    Raises:
        ConfigError: an explicitly given file that is missing, or a malformed inventory.
    """
    inv = Path(path) if path is not None else default_inventory_path()
    if not inv.exists():
        if path is not None:
            raise ConfigError(f"inventory file {inv} does not exist; copy deploy/inventory.example.json there")
        return {}
    return parse_inventory(inv.read_text(), str(inv))


def resolve_device(device: str, host: str | None = None, inventory: str | os.PathLike[str] | None = None,
                   port: int | None = None, *, identity_file: str | None = None,
                   known_hosts_file: str | None = None, accept_new_host_key: bool = False,
                   remote_python: str | None = None, docker_image: str | None = None) -> RemoteTarget:
    """Turn ``--device`` (+ ``--host`` and the other connection flags) into a target.

    ``device`` is either a profile name (then ``host`` is required: ``USER@HOST`` or an ``~/.ssh/config``
    alias) or a device name from the inventory; a flag given overrides the inventory's value.

    Raises:
        ConfigError: an unknown device, a profile given without a host, a malformed host or port.
    """
    entries = load_inventory(inventory)
    if device in entries:
        target = entries[device]
    elif device in list_profiles():
        if not host:
            raise ConfigError(f"--device {device} is a device profile: also give --host USER@HOST (or an "
                              "~/.ssh/config alias), or name a device from your inventory")
        target = RemoteTarget(name=device, profile=load_profile(device), ssh=SshTarget(host=host))
    else:
        names = sorted(entries)
        raise ConfigError(f"unknown device {device!r}; use a profile ({', '.join(list_profiles())}) with --host, "
                          f"or a device from your inventory ({', '.join(names) if names else 'none defined'})")
    ssh = replace(target.ssh, host=host or target.ssh.host, port=port if port is not None else target.ssh.port,
                  identity_file=identity_file or target.ssh.identity_file,
                  known_hosts_file=known_hosts_file or target.ssh.known_hosts_file,
                  strict_host_key_checking=not accept_new_host_key)
    return replace(target, ssh=ssh, remote_python=remote_python or target.remote_python,
                   docker_image=docker_image or target.docker_image)
