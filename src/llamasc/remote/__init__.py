"""Running llama-server on a bench host: locally, or over SSH on Linux or Windows.

What running one means is :mod:`llamasc.process`'s (its ``LaunchSpec``, readiness rule,
``/health`` probe, free-port pick, lost-port retry, environment scrub and leftover owner
check); this package adds only how to reach the host: a :class:`Transport` (commands, small
files and port forwards; SSH in production), launchers that start a server detached from
the session and stop it for sure (:class:`PosixLauncher` with ``setsid``,
:class:`WindowsLauncher` with ``schtasks``; :class:`LocalLauncher` is the daemon's own
``LlamaServer``), and the quoting that gets argv through ``sh`` or ``cmd.exe`` intact.

paramiko is imported only when an SSH connection is made.
"""

from llamasc.remote.launch import HostLauncher, LaunchSpec, RunningServer
from llamasc.remote.local import LocalLauncher
from llamasc.remote.posix import PosixLauncher
from llamasc.remote.probe import LOCAL_HOSTS, detect_os, launcher_for
from llamasc.remote.ssh import SSHOptions, SSHTransport
from llamasc.remote.transport import CommandResult, Forward, Transport
from llamasc.remote.windows import WindowsLauncher

__all__ = [
    "LOCAL_HOSTS",
    "CommandResult",
    "Forward",
    "HostLauncher",
    "LaunchSpec",
    "LocalLauncher",
    "PosixLauncher",
    "RunningServer",
    "SSHOptions",
    "SSHTransport",
    "Transport",
    "WindowsLauncher",
    "detect_os",
    "launcher_for",
]
