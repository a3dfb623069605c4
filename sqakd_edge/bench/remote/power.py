"""``--setup``: the benchmark power mode and pinned clocks, recorded before and restored after.

The mode is looked up by name in the board's /etc/nvpmodel.conf (ids are renumbered between releases).
"""

from __future__ import annotations

from typing import Any

from ...errors import RemoteError
from .. import devices
from .ssh import RemoteSession, _one_line


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
    platform_info = devices.device_module("platform_info")
    before = platform_info.nvpmodel_mode(query.stdout.decode("utf-8", "replace"))
    mode_id, name = _bench_mode_id(session, profile, platform_info)
    session.check(["mkdir", "-p", cache], "preparing the cache folder")
    session.check([*sudo, "jetson_clocks", "--store", state], "recording the clocks (jetson_clocks --store)")
    set_mode = session.check([*sudo, "nvpmodel", "-m", str(mode_id)],
                             f"setting power mode {name} (nvpmodel -m {mode_id})")
    session.check([*sudo, "jetson_clocks"], "pinning the clocks (jetson_clocks)")
    said = _one_line(set_mode.stdout.decode("utf-8", "replace") + " ".join(set_mode.stderr))
    return {"previous_mode": before, "bench_mode": {"name": name, "id": mode_id, "source": NVPMODEL_CONF},
            "clocks_state_file": state, "nvpmodel_said": said or None, "restored": False}


NVPMODEL_CONF = "/etc/nvpmodel.conf"


def _bench_mode_id(session: RemoteSession, profile: devices.DeviceProfile, platform_info: Any) -> tuple[int, str]:
    """The id of the profile's benchmark power mode on this board, looked up by name in /etc/nvpmodel.conf.

    Ids are renumbered between releases (JetPack 6.2's Orin Nano modes); names are what the profile means.
    """
    name = profile.bench_power_mode_name
    conf = session.run(["cat", NVPMODEL_CONF])
    modes = platform_info.nvpmodel_conf_modes(conf.stdout.decode("utf-8", "replace")) if conf.rc == 0 else []
    if not modes:
        raise RemoteError(f"--setup cannot read the power modes from {NVPMODEL_CONF} on {session.ssh.where} "
                          f"({conf.last_error or 'no POWER_MODEL lines'}); set the mode by hand (sudo nvpmodel -m "
                          "ID) and drop --setup")
    for mode_id, mode_name in modes:
        if mode_name == name:
            return mode_id, name
    listed = ", ".join(f"{n} ({i})" for i, n in modes)
    raise RemoteError(f"power mode {name!r} of profile {profile.name} is not in {NVPMODEL_CONF} on "
                      f"{session.ssh.where} (it has {listed}); set one by hand (sudo nvpmodel -m ID) and drop --setup")


def _restore_power(session: RemoteSession, report: dict[str, Any], setup: dict[str, Any]) -> None:
    sudo = _sudo(report)
    previous = (setup.get("previous_mode") or {}).get("id")
    if previous is not None:
        session.check([*sudo, "nvpmodel", "-m", str(previous)], f"restoring power mode {previous}")
    session.check([*sudo, "jetson_clocks", "--restore", setup["clocks_state_file"]], "restoring the clocks")
    setup["restored"] = True
