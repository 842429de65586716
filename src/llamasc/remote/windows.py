r"""Windows hosts over Win32-OpenSSH (default shell cmd.exe).

Everything a session starts dies with the session (OpenSSH puts it in a kill-on-close job
object), so the server is started by the Task Scheduler instead:

1. SFTP-upload ``start.cmd`` (the full command line, quoted for MSVC argv rules and cmd.exe);
2. ``schtasks /Create /TN <name> /TR "<start.cmd>" /SC ONCE /ST 00:00 /F`` and ``/Run``;
3. wait for ``/health`` through the SSH port forward (or for ``exit.txt``: it died);
4. find the PID by its listening port (``Get-NetTCPConnection``);
5. stop: ``taskkill /PID <pid> /T /F``, ``schtasks /End`` and ``/Delete``, then confirm the
   process is gone (``schtasks /End`` alone would leave llama-server.exe running).

PowerShell snippets go through ``-EncodedCommand`` (base64 UTF-16LE): no quoting layers.
"""

from __future__ import annotations

import base64
import logging
import ntpath
import time
from collections.abc import Sequence
from typing import Any

from llamasc.errors import LlamascError, RemoteError
from llamasc.process.environment import SCRUBBED_NAMES, SCRUBBED_PREFIXES
from llamasc.remote._base import RemoteLauncher
from llamasc.remote.launch import (
    LaunchSpec,
    RunningServer,
    env_lines,
    parse_pid_column,
    server_argv,
)
from llamasc.remote.quoting import cmd_escape, cmd_join, msvc_quote, windows_sftp_path

log = logging.getLogger(__name__)

TR_LIMIT = 261  # schtasks: "Value for '/tr' option cannot be more than 261 character(s)"


def powershell(script: str) -> str:
    """A cmd.exe line running a PowerShell snippet with no quoting to get wrong."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"powershell -NoProfile -NonInteractive -EncodedCommand {encoded}"


def pid_by_port_script(port: int) -> str:
    return (
        f"(Get-NetTCPConnection -LocalPort {int(port)} -State Listen -ErrorAction "
        "SilentlyContinue | Select-Object -First 1).OwningProcess"
    )


def process_alive_script(pid: int) -> str:
    return (
        f"if (Get-Process -Id {int(pid)} -ErrorAction SilentlyContinue) "
        "{ 'alive' } else { 'gone' }"
    )


def command_line_script(pid: int) -> str:
    return (
        f'(Get-CimInstance Win32_Process -Filter "ProcessId={int(pid)}" '
        "-ErrorAction SilentlyContinue).CommandLine"
    )


def _batch_path(path: str) -> str:
    return cmd_escape(msvc_quote(path), batch=True)


def scrub_lines(keep: Sequence[str] = ()) -> list[str]:
    """Batch lines that clear what would steer llama-server from the task's environment
    block, as the daemon's children are scrubbed (:mod:`llamasc.process.environment`), minus
    ``keep`` (names are checked against ``[A-Za-z_][A-Za-z0-9_]*``, so nothing to escape)."""
    kept = {name.upper() for name in keep}
    lines = [f'set "{name}="' for name in sorted(SCRUBBED_NAMES) if name not in kept]
    unless = "".join(f'if /i not "%%V"=="{name}" ' for name in sorted(kept))
    prefixes = " ".join(SCRUBBED_PREFIXES)
    lines.append(
        f"for %%P in ({prefixes}) do for /f \"delims==\" %%V in ('set %%P 2^>nul') "
        f'do {unless}set "%%V="'
    )
    return lines


def start_cmd(spec: LaunchSpec, server: RunningServer) -> str:
    """The ``start.cmd`` wrapper (CRLF line ends, UTF-8 with ``chcp 65001``)."""
    wd = server.workdir
    lines = [
        "@echo off",
        "setlocal DisableDelayedExpansion",
        "chcp 65001 >nul",
        f"cd /d {_batch_path(wd)}",
    ]
    lines += scrub_lines(spec.keep_env)
    for key, value in env_lines(spec.env):
        if any(c in value for c in "\r\n\0"):
            raise RemoteError(f"environment variable {key} has a line break; cmd.exe cannot set it")
        # set "K=V": the quotes keep cmd metacharacters in V literal; % must still double.
        lines.append("set " + cmd_escape(f'"{key}={value}"', batch=True))
    lines.append(
        f"{cmd_join(server_argv(spec, server.port), batch=True)} "
        f"<nul >{_batch_path(ntpath.join(wd, 'server.log'))} 2>&1"
    )
    # Redirection first: "echo 1> file" would redirect stream 1 and echo nothing.
    lines.append(f">{_batch_path(ntpath.join(wd, 'exit.txt'))} echo %ERRORLEVEL%")
    return "\r\n".join(lines) + "\r\n"


def create_task_command(task: str, script_path: str) -> str:
    command = cmd_join(
        [
            "schtasks",
            "/Create",
            "/TN",
            task,
            "/TR",
            f'"{script_path}"',
            "/SC",
            "ONCE",
            "/ST",
            "00:00",
            "/F",
        ],
        batch=False,
    )
    if len(script_path) + 2 > TR_LIMIT:
        raise RemoteError(
            f"the launch script path is too long for schtasks /TR ({len(script_path)} chars); "
            "use a shorter --remote-dir"
        )
    return command


class WindowsLauncher(RemoteLauncher):
    """Windows hosts whose OpenSSH default shell is cmd.exe."""

    os_name = "windows"
    _profile: str | None = None

    def profile_dir(self) -> str:
        if self._profile is None:
            res = self.run("echo %OS%;%USERPROFILE%")
            first = res.stdout.strip().splitlines()[0] if res.stdout.strip() else ""
            os_tag, _, profile = first.partition(";")
            if os_tag != "Windows_NT":
                raise RemoteError(
                    f"the SSH shell on {self.host} is not cmd.exe (got {first[:60]!r}); "
                    r"set HKLM\SOFTWARE\OpenSSH\DefaultShell back to cmd.exe"
                )
            if not profile or "%" in profile or '"' in profile:
                raise RemoteError(f"cannot use the profile directory {profile!r} on {self.host}")
            self._profile = profile.strip()
        return self._profile

    def base_dir(self) -> str:
        return self._remote_dir or ntpath.join(self.profile_dir(), ".llamasc-bench")

    def join(self, *parts: str) -> str:
        return ntpath.join(*parts)

    def sftp_path(self, path: str) -> str:
        return windows_sftp_path(path)

    def environ_command(self) -> str:
        return "set"

    def version_command(self, binary: str) -> str:
        return cmd_join([binary, "--version"], batch=False)

    def task_name(self, server: RunningServer) -> str:
        return server.launch_id

    def _spawn(self, spec: LaunchSpec, server: RunningServer) -> None:
        script = self.join(server.workdir, "start.cmd")
        server.task_name = self.task_name(server)
        self.transport.write_file(self.sftp_path(script), start_cmd(spec, server).encode("utf-8"))
        for command in (
            create_task_command(server.task_name, script),
            cmd_join(["schtasks", "/Run", "/TN", server.task_name], batch=False),
        ):
            res = self.run(command, timeout=60.0, retry=False)
            if not res.ok:
                raise RemoteError(
                    f"schtasks failed on {self.host} (exit {res.exit_code}): "
                    f"{res.output.strip()[:300]}"
                )

    def _ps(self, script: str, *, timeout: float = 60.0) -> str:
        return self.run(powershell(script), timeout=timeout).stdout.strip()

    def pid_by_port(self, port: int) -> int | None:
        out = self._ps(pid_by_port_script(port))
        digits = [int(tok) for tok in out.split() if tok.isdigit()]
        return digits[0] if digits else None

    def _after_ready(self, server: RunningServer) -> None:
        server.pid = self.pid_by_port(server.port)

    def _is_alive(self, pid: int) -> bool:
        return self._ps(process_alive_script(pid)) == "alive"

    def _stop_process(self, server: RunningServer) -> None:
        self._kill(server)
        self._wait_vram_freed(server)
        try:
            self._remove_workdir(server)
        except LlamascError as exc:  # leftovers are cleaned by the next reap
            log.warning("could not remove %s on %s: %s", server.workdir, self.host, exc)

    def _wait_vram_freed(self, server: RunningServer) -> None:
        if server.pid is None:
            return
        deadline = time.monotonic() + self.vram_timeout
        while True:
            holders = self._gpu_pids()
            if holders is None or server.pid not in holders:
                return
            if time.monotonic() >= deadline:
                raise RemoteError(
                    f"llama-server pid {server.pid} on {self.host} still holds GPU memory "
                    f"{self.vram_timeout:.0f}s after it was stopped"
                )
            time.sleep(0.5)

    def _kill(self, server: RunningServer) -> None:
        pid = server.pid
        if pid is None and server.base_url:
            pid = server.pid = self.pid_by_port(server.port)
        if pid is not None:
            self.run(cmd_join(["taskkill", "/PID", str(pid), "/T", "/F"], batch=False))
        if server.task_name:
            self.run(cmd_join(["schtasks", "/End", "/TN", server.task_name], batch=False))
            self.run(cmd_join(["schtasks", "/Delete", "/TN", server.task_name, "/F"], batch=False))
        if pid is None:
            return
        deadline = time.monotonic() + self.stop_timeout
        while self._is_alive(pid):
            if time.monotonic() >= deadline:
                raise RemoteError(f"llama-server pid {pid} on {self.host} survived taskkill")
            time.sleep(0.2)

    def _gpu_pids(self) -> list[int] | None:
        res = self.run("nvidia-smi --query-compute-apps=pid --format=csv,noheader")
        if not res.ok:
            return None
        return parse_pid_column(res.stdout)

    def _remove_workdir(self, server: RunningServer) -> None:
        if server.launch_id and server.workdir.endswith(server.launch_id):
            self.run(cmd_join(["rmdir", "/S", "/Q", server.workdir], batch=False))

    def _reap_one(self, launch_id: str, meta: dict[str, Any]) -> bool:
        port = int(meta.get("port") or 0)
        server = RunningServer(
            launch_id=launch_id,
            host=self.host,
            port=port,
            argv=list(meta.get("argv") or []),
            workdir=self.join(self.base_dir(), launch_id),
            task_name=launch_id,
        )
        pid = self.pid_by_port(port) if port else None
        ours = False
        if pid is not None:
            # Whatever listens there now must be the server we started, not a newcomer.
            ours = f"--port {port}" in self._ps(command_line_script(pid))
        server.pid = pid if ours else None
        if ours:
            log.warning("stopping llama-server pid %s left running on %s", pid, self.host)
        self._kill(server)
        self._remove_workdir(server)
        return ours


__all__ = [
    "WindowsLauncher",
    "command_line_script",
    "create_task_command",
    "pid_by_port_script",
    "powershell",
    "process_alive_script",
    "start_cmd",
]
