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
from dataclasses import dataclass, field, fields
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
class DeviceEntry:
    """One device of an inventory: how to reach it and which profile it is.

    Args:
        name: the device's name in the inventory.
        host: ``USER@HOST`` or an ``~/.ssh/config`` alias.
        profile: a shipped profile name.
        port: SSH port (None: ssh's default or the alias's).
        identity_file: SSH private key.
        known_hosts_file: a known_hosts file instead of ``~/.ssh/known_hosts``.
        ssh_options: further ``-o Key=Value`` options.
        remote_python: the interpreter on the device.
        remote_cache: the cache folder on the device (default ``~/.cache/sqakd-edge``).
        docker_image: run the device program in this image.
    """

    name: str
    host: str
    profile: str
    port: int | None = None
    identity_file: str | None = None
    known_hosts_file: str | None = None
    ssh_options: tuple[str, ...] = ()
    remote_python: str | None = None
    remote_cache: str | None = None
    docker_image: str | None = None


def default_inventory_path() -> Path:
    """``$SQAKD_EDGE_INVENTORY`` or ``~/.config/sqakd-edge/inventory.json``."""
    env = os.environ.get("SQAKD_EDGE_INVENTORY")
    return Path(env) if env else Path.home() / ".config" / "sqakd-edge" / "inventory.json"


def example_inventory_text() -> str:
    """The shipped example inventory (a template to copy)."""
    return deploy_root().joinpath("inventory.example.json").read_text()


def parse_inventory(text: str, source: str) -> dict[str, DeviceEntry]:
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
        if not isinstance(spec, dict) or not isinstance(spec.get("host"), str) or "profile" not in spec:
            raise ConfigError(f"inventory {source}: device {name!r} needs \"host\" and \"profile\"")
        if spec["profile"] not in known_profiles:
            raise ConfigError(f"inventory {source}: device {name!r} has unknown profile {spec['profile']!r}; "
                              f"known profiles: {', '.join(sorted(known_profiles))}")
        port = spec.get("port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise ConfigError(f"inventory {source}: device {name!r} has an invalid port {port!r}")
        options = spec.get("ssh_options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) and "=" in o for o in options):
            raise ConfigError(f"inventory {source}: device {name!r} has bad \"ssh_options\" (a list of "
                              "\"Key=Value\" strings, as for ssh -o)")
        entries[name] = DeviceEntry(name=name, host=spec["host"], profile=spec["profile"], port=port,
                                    identity_file=spec.get("identity_file"),
                                    known_hosts_file=spec.get("known_hosts_file"), ssh_options=tuple(options),
                                    remote_python=spec.get("remote_python"), remote_cache=spec.get("remote_cache"),
                                    docker_image=spec.get("docker_image"))
    return entries


def load_inventory(path: str | os.PathLike[str] | None = None) -> dict[str, DeviceEntry]:
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


@dataclass(frozen=True)
class RemoteTarget:
    """A resolved device: its profile and how to reach it."""

    name: str
    profile: DeviceProfile
    host: str
    port: int | None = None
    identity_file: str | None = None
    known_hosts_file: str | None = None
    ssh_options: tuple[str, ...] = ()
    remote_python: str | None = None
    remote_cache: str | None = None
    docker_image: str | None = None


def resolve_device(device: str, host: str | None = None, inventory: str | os.PathLike[str] | None = None,
                   port: int | None = None) -> RemoteTarget:
    """Turn ``--device`` (+ ``--host``) into a target.

    ``device`` is either a profile name (then ``host`` is required: ``USER@HOST`` or an ``~/.ssh/config``
    alias) or a device name from the inventory (then ``host`` may override the inventory's).

    Raises:
        ConfigError: an unknown device, or a profile given without a host.
    """
    entries = load_inventory(inventory)
    if device in entries:
        entry = entries[device]
        # every connection field as the inventory has it (the two classes share their field names)
        values = {f.name: getattr(entry, f.name) for f in fields(entry)}
        values.update(name=device, profile=load_profile(entry.profile), host=host or entry.host,
                      port=port if port is not None else entry.port)
        return RemoteTarget(**values)
    profiles = list_profiles()
    if device in profiles:
        if not host:
            raise ConfigError(f"--device {device} is a device profile: also give --host USER@HOST (or an "
                              "~/.ssh/config alias), or name a device from your inventory")
        return RemoteTarget(name=device, profile=load_profile(device), host=host, port=port)
    names = sorted(entries)
    raise ConfigError(f"unknown device {device!r}; use a profile ({', '.join(profiles)}) with --host, "
                      f"or a device from your inventory ({', '.join(names) if names else 'none defined'})")
