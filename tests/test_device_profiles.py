"""Device profiles, inventories, and that an installed (non-editable) wheel carries them and the device program."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sqakd_edge.bench import devices
from sqakd_edge.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_jetson_nano_profile_matches_the_facts():
    nano = devices.load_profile("jetson-nano")
    assert (nano.jetpack, nano.l4t, nano.tensorrt, nano.python, nano.sm) == ("4.6.x", "R32.7.x", "8.2.1", "3.6", "5.3")
    assert nano.int8 is False and nano.fp16 is True
    assert nano.raw["cuda"] == "10.2"
    assert nano.power_mode(0).name == "MAXN" and nano.power_mode(0).watts == 10
    assert nano.power_mode(1).name == "5W" and nano.bench_power_mode == 0
    assert nano.docker_base_image == "nvcr.io/nvidia/l4t-base:r32.7.1"


@pytest.mark.parametrize("name,l4t,python,sm,trt", [
    ("jetson-xavier-nx", "R35", "3.8", "7.2", "8.5"),
    ("jetson-orin-nano", "R36", "3.10", "8.7", "8.6"),
])
def test_int8_capable_profiles(name, l4t, python, sm, trt):
    profile = devices.load_profile(name)
    assert profile.int8 is True and profile.l4t.startswith(l4t) and profile.python == python and profile.sm == sm
    assert trt in profile.tensorrt
    assert profile.power_mode(profile.bench_power_mode) is not None
    assert f":r{l4t[1:]}" in profile.docker_base_image


def test_unknown_profile_is_a_one_line_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as info:
        devices.load_profile("jetson-tx2")
    assert str(info.value) == ("unknown device profile 'jetson-tx2'; known profiles: jetson-nano, jetson-orin-nano, "
                               "jetson-xavier-nx")


def test_example_inventory_parses():
    entries = devices.parse_inventory(devices.example_inventory_text(), "example")
    assert entries["nano-lab"].ssh.host == "jetson@192.168.1.50" and entries["nano-lab"].ssh.port == 22
    assert entries["xavier-bench"].ssh.port is None  # an ~/.ssh/config alias keeps its own port
    assert entries["orin-desk"].docker_image == "sqakd-edge-device:jp6"
    # an inventory entry is the device record itself: its profile is loaded, its python defaults to the profile's
    assert entries["nano-lab"].profile.name == "jetson-nano" and entries["nano-lab"].python == "python3"


@pytest.mark.parametrize("text,message", [
    ("{", "inventory inv.json is not valid JSON"),
    ('{"devices": {}}', "is not a sqakd-edge inventory"),
    ('{"schema": "sqakd-edge.inventory", "devices": {"a": {"host": "h"}}}',
     "device 'a' needs \"host\" and \"profile\""),
    ('{"schema": "sqakd-edge.inventory", "devices": {"a": {"host": "h", "profile": "jetson-tx2"}}}',
     "device 'a' has unknown profile 'jetson-tx2'"),
    ('{"schema": "sqakd-edge.inventory", "devices": {"a": {"host": "h", "profile": "jetson-nano", "port": 0}}}',
     "invalid port 0"),
    ('{"schema": "sqakd-edge.inventory", "devices": {"a": {"host": "h", "profile": "jetson-nano", "port": true}}}',
     "invalid port True"),
    ('{"schema": "sqakd-edge.inventory", "devices": {"a": {"host": "-oProxyCommand=x", "profile": "jetson-nano"}}}',
     "is not a host"),
    ('{"schema": "sqakd-edge.inventory", "devices": {"a": {"host": "h", "profile": "jetson-nano", '
     '"remote_python": 3}}}', "device 'a' has a bad 'remote_python'"),
])
def test_bad_inventories_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        devices.parse_inventory(text, "inv.json")
    assert "\n" not in str(info.value)


def test_resolve_device_by_profile_or_inventory_name(tmp_path, monkeypatch):
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps({"schema": "sqakd-edge.inventory", "schema_version": 1, "devices": {
        "lab": {"host": "me@10.0.0.5", "port": 2200, "profile": "jetson-nano", "remote_python": "/usr/bin/python3"}}}))
    target = devices.resolve_device("lab", inventory=inv)
    assert (target.ssh.host, target.ssh.port, target.profile.name, target.python) == (
        "me@10.0.0.5", 2200, "jetson-nano", "/usr/bin/python3")
    assert target.ssh.strict_host_key_checking
    # a flag overrides the inventory's value, field by field; what is not given stays the inventory's
    other = devices.resolve_device("lab", host="other", inventory=inv, identity_file="/k", accept_new_host_key=True,
                                   docker_image="img")
    assert (other.ssh.host, other.ssh.port, other.ssh.identity_file, other.ssh.strict_host_key_checking,
            other.docker_image, other.python) == ("other", 2200, "/k", False, "img", "/usr/bin/python3")
    assert devices.resolve_device("jetson-orin-nano", host="orin", inventory=inv).profile.int8 is True
    with pytest.raises(ConfigError, match="also give --host"):
        devices.resolve_device("jetson-nano", inventory=inv)
    with pytest.raises(ConfigError, match=r"unknown device 'nope'.*inventory \(lab\)"):
        devices.resolve_device("nope", inventory=inv)
    with pytest.raises(ConfigError, match="does not exist"):
        devices.resolve_device("lab", inventory=tmp_path / "missing.json")
    monkeypatch.setenv("SQAKD_EDGE_INVENTORY", str(inv))
    assert devices.resolve_device("lab").ssh.host == "me@10.0.0.5"


def test_an_installed_wheel_finds_profiles_inventory_and_device_program(tmp_path):
    """Build the wheel from a copy of the sources, install it into a bare folder, and use it from elsewhere."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, src / name)
    (src / "README.md").write_text("readme")
    for folder in ("sqakd_edge", "jetson", "deploy"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)]
    # offline with the venv's setuptools when it can build wheels; else pip's isolated build (from PyPI)
    if subprocess.run([*wheel, "--no-build-isolation"], capture_output=True, timeout=300).returncode != 0:
        subprocess.run(wheel, check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    *map(str, wheels.glob("*.whl"))], check=True, capture_output=True, timeout=300)
    code = (
        "from sqakd_edge.bench import devices as d; "
        "print(d.list_profiles()); print(sorted(d.device_program_files())); "
        "print(d.device_module('trt_engine').__name__); print(len(d.probe_source()) > 0); "
        "print(sorted(d.parse_inventory(d.example_inventory_text(), 'x')))"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['jetson-nano', 'jetson-orin-nano', 'jetson-xavier-nx']"
    assert lines[1] == str(sorted(devices.DEVICE_PROGRAM_FILES))
    assert lines[2] == "sqakd_edge._device.trt_engine"  # the packaged copy, not a source checkout
    assert lines[3] == "True"
    assert lines[4] == "['nano-lab', 'orin-desk', 'xavier-bench']"


def test_every_profile_names_its_bench_power_mode_and_its_cuda_binding_setup():
    for name in devices.list_profiles():
        profile = devices.load_profile(name)
        assert profile.bench_power_mode_name  # what --setup looks up by name in /etc/nvpmodel.conf
        assert profile.cuda_binding_setup and all(isinstance(c, str) for c in profile.cuda_binding_setup)
    assert devices.load_profile("jetson-nano").max_onnx_opset == 13
    assert devices.load_profile("jetson-orin-nano").bench_power_mode_name == "15W"
