"""What this device is: board, L4T/JetPack, power mode, clocks, temperatures, tegrastats power (Python 3.6+).

Every probe is best-effort: a value that cannot be read is ``None`` (never a guess), so the same code runs
on a Jetson, a desktop GPU and a CPU-only test machine.
"""

import glob
import os
import platform
import re
import subprocess
import sys
import threading

# L4T major release -> JetPack line, from NVIDIA's release notes; used only when the nvidia-jetpack
# package is not installed (e.g. a minimal L4T image), and then reported as derived.
L4T_TO_JETPACK = {"32": "4.x", "35": "5.1.x", "36": "6.x"}
L4T_32_MINOR_TO_JETPACK = {"32.7": "4.6.x", "32.6": "4.6", "32.5": "4.5.x", "32.4": "4.4.x"}


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip("\0\n ")
    except (IOError, OSError):
        return None


def _run(argv, timeout=10):
    """stdout of a command, or None if it is missing or fails (Python 3.6: no capture_output)."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except (OSError, ValueError):
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    if proc.returncode != 0:
        return None
    return out.decode("utf-8", "replace").strip()


def l4t_release(text=None):
    """``"R32.7.1"`` from /etc/nv_tegra_release ("# R32 (release), REVISION: 7.1, ..."), else None."""
    text = _read("/etc/nv_tegra_release") if text is None else text
    if not text:
        return None
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    return "R%s.%s" % (match.group(1), match.group(2))


def jetpack_version(l4t):
    """(version, source): from the nvidia-jetpack package if installed, else derived from L4T."""
    version = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    if version:
        return version.split("-")[0].split("+")[0], "dpkg nvidia-jetpack"
    if not l4t:
        return None, None
    major_minor = l4t[1:].split(".")
    key = ".".join(major_minor[:2])
    if key in L4T_32_MINOR_TO_JETPACK:
        return L4T_32_MINOR_TO_JETPACK[key], "derived from L4T " + l4t
    if major_minor[0] in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[major_minor[0]], "derived from L4T " + l4t
    return None, None


def nvpmodel_mode(text=None):
    """``{"name": "MAXN", "id": 0}`` from ``nvpmodel -q`` ("NV Power Mode: MAXN" then the id), else None."""
    text = _run(["nvpmodel", "-q"]) if text is None else text
    if not text:
        return None
    name = re.search(r"NV Power Mode:\s*(\S+)", text)
    ids = [line.strip() for line in text.splitlines() if line.strip().isdigit()]
    if not name and not ids:
        return None
    return {"name": name.group(1) if name else None, "id": int(ids[-1]) if ids else None}


def nvpmodel_conf_modes(text=None):
    """``[(id, name), ...]`` from /etc/nvpmodel.conf lines ``< POWER_MODEL ID=0 NAME=MAXN >``.

    Mode ids are not stable across releases (JetPack 6.2 renumbers the Orin Nano's), names are: a mode is
    looked up here by name before ``nvpmodel -m``.
    """
    text = _read("/etc/nvpmodel.conf") if text is None else text
    modes = []
    for match in re.finditer(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)", text or ""):
        modes.append((int(match.group(1)), match.group(2)))
    return modes


def gpu_clocks():
    """GPU devfreq clocks (Hz) and whether they are pinned (what ``jetson_clocks`` does), else None."""
    for path in sorted(glob.glob("/sys/class/devfreq/*")):
        name = os.path.basename(os.path.realpath(path))
        if not any(key in name for key in ("gpu", "gv11b", "ga10b", "gp10b", "gm20b")):
            continue
        cur, lo, hi = (_read(os.path.join(path, f)) for f in ("cur_freq", "min_freq", "max_freq"))
        if not (cur and lo and hi):
            continue
        lo_i, hi_i = int(lo), int(hi)
        available = (_read(os.path.join(path, "available_frequencies")) or "").split()
        top = max([int(f) for f in available] or [hi_i])
        return {"devfreq": name, "cur_hz": int(cur), "min_hz": lo_i, "max_hz": hi_i,
                "pinned_at_max": lo_i == hi_i == top}
    return None


def jetson_clocks_show():
    """``jetson_clocks --show`` output (needs root; tried with ``sudo -n`` so it never prompts), else None."""
    argv = ["jetson_clocks", "--show"]
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        argv = ["sudo", "-n"] + argv
    return _run(argv, timeout=15)


def temperatures():
    """``{zone type: degrees C}`` from /sys/class/thermal."""
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        kind, milli = _read(os.path.join(zone, "type")), _read(os.path.join(zone, "temp"))
        try:
            temps[kind or os.path.basename(zone)] = round(int(milli) / 1000.0, 1)
        except (TypeError, ValueError):
            continue
    return temps


def base_report():
    """Everything that does not need TensorRT or CUDA."""
    l4t = l4t_release()
    jetpack, jetpack_source = jetpack_version(l4t)
    return {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "device_model": _read("/proc/device-tree/model"),
        "l4t": l4t,
        "jetpack": jetpack,
        "jetpack_source": jetpack_source,
        "nvpmodel": nvpmodel_mode(),
        "gpu_clocks": gpu_clocks(),
        "jetson_clocks": jetson_clocks_show(),
        "temperatures_c": temperatures(),
    }


# tegrastats rails: Nano "POM_5V_IN 3094/2718" (mW, current/average); Xavier/Orin "VDD_IN 4038mW/4038mW".
_RAIL = re.compile(r"\b(POM_5V_IN|VDD_IN)\s+(\d+)(?:mW)?/(\d+)(?:mW)?")


def parse_tegrastats_power(line):
    """(rail, current mW) from one tegrastats line, or None."""
    match = _RAIL.search(line)
    if not match:
        return None
    return match.group(1), int(match.group(2))


class TegrastatsSampler(object):
    """Samples board input power from ``tegrastats`` while a block runs (``with sampler: ...``)."""

    def __init__(self, interval_ms=100, command="tegrastats"):
        self.interval_ms = interval_ms
        self.command = command
        self.samples = []
        self.rail = None
        self.error = None
        self._proc = None
        self._thread = None

    def __enter__(self):
        try:
            self._proc = subprocess.Popen([self.command, "--interval", str(self.interval_ms)],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.error = "tegrastats not available: %s" % exc
            return self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self):
        for raw in iter(self._proc.stdout.readline, b""):
            parsed = parse_tegrastats_power(raw.decode("utf-8", "replace"))
            if parsed:
                self.rail = parsed[0]
                self.samples.append(parsed[1])

    def __exit__(self, *exc_info):
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._thread is not None:
                self._thread.join(timeout=5)
        return False

    def summary(self):
        """``{"rail", "mean_mw", "max_mw", "samples"}``, or ``{"error": ...}`` when nothing was read."""
        if not self.samples:
            return {"error": self.error or "tegrastats printed no input-power rail (POM_5V_IN / VDD_IN)"}
        return {"rail": self.rail, "mean_mw": round(sum(self.samples) / float(len(self.samples)), 1),
                "max_mw": max(self.samples), "samples": len(self.samples)}
