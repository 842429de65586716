"""Choosing the launcher for a host: ``localhost`` runs locally; anything else is reached
over SSH and probed (``uname -s``, then ``cmd /c ver``) to tell Linux from Windows.
"""

from __future__ import annotations

import logging

from llamasc.errors import RemoteError
from llamasc.remote.launch import HostLauncher
from llamasc.remote.transport import Transport

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"localhost"})


def detect_os(transport: Transport) -> str:
    """``"linux"``, ``"posix"`` (another Unix) or ``"windows"``."""
    res = transport.run("uname -s", timeout=30.0)
    name = res.stdout.strip()
    if res.ok and name:
        if name.upper().startswith(("MINGW", "MSYS", "CYGWIN")):
            return "windows"  # Git-for-Windows' uname on PATH; the shell is still cmd.exe
        return "linux" if name == "Linux" else "posix"
    res = transport.run("cmd /c ver", timeout=30.0)
    if "windows" in res.output.lower():
        return "windows"
    raise RemoteError(
        f"cannot tell the OS of {transport.host}: neither 'uname -s' nor 'cmd /c ver' worked"
    )


def launcher_for(transport: Transport, *, remote_dir: str | None = None) -> HostLauncher:
    """The launcher matching the OS behind ``transport``."""
    from llamasc.remote.posix import PosixLauncher
    from llamasc.remote.windows import WindowsLauncher

    os_name = detect_os(transport)
    log.info("%s runs %s", transport.host, os_name)
    if os_name == "windows":
        return WindowsLauncher(transport, remote_dir=remote_dir)
    launcher = PosixLauncher(transport, remote_dir=remote_dir)
    launcher.os_name = os_name
    return launcher


__all__ = ["LOCAL_HOSTS", "detect_os", "launcher_for"]
